"""What a sender is: one serialized ``ExportMetricsServiceRequest`` in, the backend's verdict out.

A sender either returns a ``SendOutcome`` (the backend accepted the request; ``rejected_points``
and ``message`` come from the response's ``partial_success``) or raises ``ExportError`` with
``retryable`` set by the OTLP specification's rules and ``retry_after`` from the server's
throttling hint. Retrying, backing off and spooling are the queue's job, not the sender's.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from promotel.export.presets import ResolvedExporter


class SendOutcome(NamedTuple):
    rejected_points: int = 0
    message: str = ""


class Sender(Protocol):
    async def send(self, request: bytes) -> SendOutcome: ...

    async def aclose(self) -> None: ...


def make_sender(resolved: ResolvedExporter) -> Sender:
    """The sender for the exporter's protocol (imports grpc only when it is used)."""
    if resolved.protocol == "grpc":
        from promotel.export.grpc_sender import GrpcSender

        return GrpcSender(resolved)
    from promotel.export.http_sender import HttpSender

    return HttpSender(resolved)


def parse_partial_success(body: bytes) -> SendOutcome:
    """``ExportMetricsServiceResponse.partial_success``: rejected points are data loss the server admits."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceResponse,
    )

    if not body:
        return SendOutcome()
    try:
        response = ExportMetricsServiceResponse.FromString(body)
    except DecodeError:
        return SendOutcome()   # a 2xx is success; an unreadable body cannot make it a failure
    return outcome_from_response(response)


def outcome_from_response(response: object) -> SendOutcome:
    partial = getattr(response, "partial_success", None)
    if partial is None:
        return SendOutcome()
    return SendOutcome(int(partial.rejected_data_points), str(partial.error_message))


def truncate(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["SendOutcome", "Sender", "make_sender"]
