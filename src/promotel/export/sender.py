"""What a sender is: one serialized ``ExportMetricsServiceRequest`` in, the backend's verdict out; and
``make_sender``, which picks the implementation for an exporter's protocol.

A sender either returns a ``SendOutcome`` (the backend accepted the request; ``rejected_points``
and ``message`` come from the response's ``partial_success``) or raises ``ExportError`` with
``retryable`` set by the OTLP specification's rules and ``retry_after`` from the server's
throttling hint. Retrying, backing off and spooling are the queue's job, not the sender's.

Imports go one way: this module → ``grpc_sender`` / ``http_sender`` → ``outcome`` (what they share),
so the factory can live here without an import cycle.
"""

from __future__ import annotations

from typing import Protocol

from promotel.export.outcome import (  # re-exported: these lived here in 0.1
    SendOutcome,
    outcome_from_response,
    parse_partial_success,
    truncate,
)
from promotel.export.presets import ResolvedExporter


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


__all__ = ["SendOutcome", "Sender", "make_sender", "outcome_from_response", "parse_partial_success", "truncate"]
