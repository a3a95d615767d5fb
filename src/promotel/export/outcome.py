"""What a backend answered, as the senders report it: ``SendOutcome`` and the helpers both senders share.

An accepted OTLP request may still carry ``partial_success`` in its ``ExportMetricsServiceResponse``
(OTLP specification, "Partial Success"): ``rejected_data_points`` the server admits it dropped and an
``error_message``. Both senders (``http_sender``, ``grpc_sender``) read it here; ``sender`` (the protocol
and the factory that picks one of them) imports this module too, so the senders never import ``sender``.
"""

from __future__ import annotations

from typing import NamedTuple


class SendOutcome(NamedTuple):
    rejected_points: int = 0
    message: str = ""


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
    """A server's error text for a log line: whitespace collapsed, at most ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["SendOutcome", "outcome_from_response", "parse_partial_success", "truncate"]
