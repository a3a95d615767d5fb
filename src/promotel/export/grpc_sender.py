"""OTLP/gRPC sender: one ``grpc.aio`` channel per exporter and the official ``MetricsServiceStub``.

Protocol facts (OTLP specification, "OTLP/gRPC" → "Failures"):

* Retryable status codes: UNAVAILABLE, CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE,
  DATA_LOSS; RESOURCE_EXHAUSTED only when the server attached ``google.rpc.RetryInfo`` (it means
  "throttled, come back later"; without it the server may simply be unable to take the message).
* ``RetryInfo.retry_delay`` is the server's throttling hint. It travels in the
  ``grpc-status-details-bin`` trailer as a serialized ``google.rpc.Status`` whose ``details``
  hold ``Any`` messages.
* Everything else (INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, …) is permanent.
"""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio

from promotel.config import TLSConfig
from promotel.errors import ExportError
from promotel.export.outcome import SendOutcome, outcome_from_response, truncate
from promotel.export.presets import ResolvedExporter

RETRYABLE_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.DATA_LOSS,
})
STATUS_DETAILS_KEY = "grpc-status-details-bin"
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"


def retry_delay(trailing_metadata: Any) -> float | None:
    """The ``RetryInfo`` delay (seconds) from a call's trailing metadata, or None when there is none."""
    from google.protobuf.message import DecodeError
    from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]

    for key, value in trailing_metadata or ():
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            return None
        for detail in status.details:
            if detail.type_url == RETRY_INFO_TYPE:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None


def _read(path: str | None, what: str) -> bytes | None:
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ExportError(f"cannot read the TLS {what} {path!r}: {exc.strerror}; check the path and permissions.",
                          kind="tls") from exc


def channel_credentials(tls: TLSConfig | None) -> grpc.ChannelCredentials:
    """TLS (system CAs by default), with the configured CA and, for mTLS, the client certificate and key."""
    if tls is None:
        return grpc.ssl_channel_credentials()
    return grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca_file, "CA file"),
        private_key=_read(tls.key_file, "key file"),
        certificate_chain=_read(tls.cert_file, "certificate file"),
    )


class GrpcSender:
    """Sends to one OTLP/gRPC endpoint. The channel is created on first use, inside the event loop."""

    def __init__(self, resolved: ResolvedExporter) -> None:
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms

        self.resolved = resolved
        self.target = resolved.url
        self._request_type = ms.ExportMetricsServiceRequest
        # Metadata keys must be lowercase ASCII in gRPC; headers were lowercased when resolved.
        self.metadata = tuple((k.lower(), v) for k, v in resolved.headers.items())
        self.compression = grpc.Compression.Gzip if resolved.compression == "gzip" else grpc.Compression.NoCompression
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

    def _open(self) -> Any:
        from opentelemetry.proto.collector.metrics.v1 import (
            metrics_service_pb2_grpc as ms_grpc,
        )

        # The send limit sits well above the request limit: splitting is the encoder's job, and a
        # single oversize point must reach the server (and its verdict), not die in the client.
        limit = max(2 * self.resolved.max_request_bytes, 64 * 1024 * 1024)
        # gRPC's own reconnect backoff (up to 120 s by default) would keep failing calls long after the collector
        # is back: it follows the exporter's retry settings instead, so a probe finds a recovered collector.
        retry = self.resolved.retry
        options: list[tuple[str, Any]] = [("grpc.max_send_message_length", limit),
                                          ("grpc.max_receive_message_length", 16 * 1024 * 1024),
                                          ("grpc.initial_reconnect_backoff_ms", int(retry.initial_interval * 1000)),
                                          ("grpc.min_reconnect_backoff_ms", int(retry.initial_interval * 1000)),
                                          ("grpc.max_reconnect_backoff_ms", int(retry.max_interval * 1000))]
        from promotel import __version__

        options.append(("grpc.primary_user_agent", f"promotel/{__version__}"))
        tls = self.resolved.tls
        server_name = tls.server_name if tls is not None else None
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        if self.resolved.insecure:
            self._channel = grpc.aio.insecure_channel(self.target, options=options)
        else:
            self._channel = grpc.aio.secure_channel(self.target, channel_credentials(tls), options=options)
        self._stub = ms_grpc.MetricsServiceStub(self._channel)  # type: ignore[no-untyped-call]
        return self._stub

    async def send(self, request: bytes) -> SendOutcome:
        stub = self._stub or self._open()
        message = self._request_type.FromString(request)
        try:
            response = await stub.Export(message, timeout=self.resolved.timeout, metadata=self.metadata,
                                         compression=self.compression)
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from exc
        return outcome_from_response(response)

    def _error(self, exc: grpc.aio.AioRpcError) -> ExportError:
        code = exc.code()
        details = truncate(exc.details() or "")
        delay = retry_delay(exc.trailing_metadata())
        retryable = code in RETRYABLE_CODES or (code == grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None)
        name = code.name if code is not None else "UNKNOWN"
        if code == grpc.StatusCode.UNAVAILABLE and "connection refused" in details.lower():
            text = "connection refused"
        else:
            text = details or name
        return ExportError(f"{self.target} answered {name}: {text}", exporter=self.resolved.name,
                           retryable=retryable, retry_after=delay if retryable else None,
                           kind=f"grpc_{name.lower()}")

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None


__all__ = ["GrpcSender", "retry_delay"]
