"""OTLP/gRPC sender: one ``grpc.aio`` channel per exporter and the official ``MetricsServiceStub``.

Protocol facts (OTLP specification, "OTLP/gRPC" → "Failures"):

* Retryable status codes: UNAVAILABLE, CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE,
  DATA_LOSS; RESOURCE_EXHAUSTED only when the server attached ``google.rpc.RetryInfo`` (it means
  "throttled, come back later"; without it the server may simply be unable to take the message).
* ``RetryInfo.retry_delay`` is the server's throttling hint. It travels in the
  ``grpc-status-details-bin`` trailer as a serialized ``google.rpc.Status`` whose ``details``
  hold ``Any`` messages.
* Everything else (INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, …) is permanent.
* A message over the server's receive limit is also RESOURCE_EXHAUSTED, with details in the words of the
  server's gRPC library: "Received message larger than max (N vs. M)" (gRPC core: C++, Python, …),
  "grpc: received message larger than max (N vs. M)" (grpc-go, so the OpenTelemetry Collector), "gRPC
  message exceeds maximum size M: N" (grpc-java). That one is reported as ``kind="too_large"`` and not
  retryable, RetryInfo or not: the same message would be refused again, the queue splits it instead.

Proxies: gRPC's C core tunnels through an HTTP CONNECT proxy given as the ``grpc.http_proxy`` channel
argument, else from its own variables (``grpc_proxy``, ``https_proxy``, ``http_proxy``; ``no_grpc_proxy``,
``no_proxy``; lower case only). promotel decides once (``ResolvedExporter.proxy``, the same rules as the
scraper and the HTTP sender, upper-case variables included) and tells the channel: ``grpc.http_proxy`` with
that proxy, or ``grpc.enable_http_proxy = 0`` for none, so gRPC does not decide differently on its own. (One
gap remains: with a proxy, gRPC still skips it for hosts in the lower-case ``no_grpc_proxy``/``no_proxy``
variables.) Credentials in the proxy URL go as ``Proxy-Authorization: Basic``, as gRPC core sends them.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import grpc
import grpc.aio

from promotel.config import TLSConfig
from promotel.config.secrets import redact_all
from promotel.errors import ExportError
from promotel.export.outcome import SendOutcome, outcome_from_response, truncate
from promotel.export.presets import ResolvedExporter

RETRYABLE_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.DATA_LOSS,
})
STATUS_DETAILS_KEY = "grpc-status-details-bin"
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
# RESOURCE_EXHAUSTED details that mean "the message is over the server's size limit" (see the docstring).
TOO_LARGE_DETAILS = re.compile(r"message larger than max|message exceeds maximum size", re.IGNORECASE)


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
        proxy = self.resolved.proxy
        if proxy is not None:
            options += [("grpc.enable_http_proxy", 1), ("grpc.http_proxy", proxy.url)]
        else:
            options.append(("grpc.enable_http_proxy", 0))
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
            raise self._error(exc, len(request)) from exc
        return outcome_from_response(response)

    def _error(self, exc: grpc.aio.AioRpcError, size: int = 0) -> ExportError:
        code = exc.code()
        details = truncate(exc.details() or "")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and TOO_LARGE_DETAILS.search(details):
            return ExportError(
                f"{self.target} answered RESOURCE_EXHAUSTED: {truncate(details, 200)} — the request of {size} bytes "
                f"is larger than the server accepts; lower max_request_bytes (now {self.resolved.max_request_bytes}) "
                "below the server's max receive message size", exporter=self.resolved.name, retryable=False,
                kind="too_large")
        delay = retry_delay(exc.trailing_metadata())
        retryable = code in RETRYABLE_CODES or (code == grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None)
        name = code.name if code is not None else "UNKNOWN"
        lowered = details.lower()
        kind = f"grpc_{name.lower()}"
        proxied = self._proxy_error(name, lowered) if self.resolved.proxy is not None else None
        lead = f"{self.target} answered {name}"
        if proxied is not None:
            # The endpoint never answered: say what failed on the way.
            text, kind, retryable = proxied
            lead = f"sending to {self.target} failed ({name})"
        elif code == grpc.StatusCode.UNAVAILABLE and "connection refused" in lowered:
            text = "connection refused"
        elif code == grpc.StatusCode.UNAVAILABLE and ("dns resolution failed" in lowered
                                                       or "errors resolving" in lowered):
            text, kind = f"DNS lookup failed ({details}) — check the host name", "dns"
        elif "wrong_version_number" in lowered or "tsi_protocol_failure" in lowered \
                or "tls handshake failed" in lowered:
            # OpenSSL read a non-TLS answer to its ClientHello: the server speaks plaintext.
            text, kind = (f"the TLS handshake failed ({truncate(details, 120)}): the server speaks plaintext — use "
                          f"endpoint: http://{self.target} (https:// or no scheme means TLS)"), "tls"
        elif "received http2 header with status" in lowered or "http1.x server" in lowered:
            # An HTTP/1.1 or plain HTTP endpoint (OTLP/HTTP's port) answered the gRPC call with an HTTP status.
            text, kind = (f"{details}: this port answers HTTP, not gRPC — is it the OTLP/HTTP port (4318 by "
                          "default)? use protocol: http/protobuf there, or the OTLP/gRPC port (4317)"), "protocol"
        else:
            text = details or name
        return ExportError(redact_all(f"{lead}: {text}"), exporter=self.resolved.name,
                           retryable=retryable, retry_after=delay if retryable else None, kind=kind)

    def _proxy_error(self, name: str, details: str) -> tuple[str, str, bool] | None:
        """``(text, kind, retryable)`` when gRPC's details say the proxy failed, else None. gRPC core words
        them "HTTP proxy returned response code N" (the CONNECT answer), "errors resolving <proxy host>"
        and, for a proxy that is down, "<proxy address>: Failed to connect … Connection refused"."""
        proxy = self.resolved.proxy
        assert proxy is not None
        where = f"the proxy {proxy.shown} ({proxy.origin})"
        status = re.search(r"http proxy returned response code (\d+)", details)
        if status is not None and status.group(1) == "407":
            return proxy.auth_refused(), "proxy", False        # wrong credentials, like a 401: not retried
        if status is not None:
            return (f"{where} refused to open a tunnel to {self.target} (HTTP {status.group(1)}); check that the "
                    "proxy may connect to the endpoint"), "proxy", True
        host = urllib.parse.urlsplit(proxy.url).hostname or ""
        if host and f"resolving {host}" in details:
            return f"DNS lookup of {where} failed — check the proxy's host name", "dns", True
        if "connection refused" in details and name == "UNAVAILABLE":
            return f"connection to {where} refused — is the proxy running, and is {proxy.origin} right?", "proxy", True
        return None

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None


__all__ = ["GrpcSender", "retry_delay"]
