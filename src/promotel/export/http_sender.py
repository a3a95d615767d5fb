"""OTLP/HTTP (protobuf) sender: one ``httpx.AsyncClient`` per exporter.

Protocol facts (OTLP specification, "OTLP/HTTP"):

* ``POST`` the binary protobuf with ``Content-Type: application/x-protobuf``; gzip is announced
  with ``Content-Encoding: gzip``.
* 2xx is success; the body is an ``ExportMetricsServiceResponse`` whose ``partial_success`` says how
  many points were rejected anyway.
* 429, 502, 503 and 504 are retryable, honouring ``Retry-After`` (delay-seconds or an HTTP-date);
  every other 4xx/5xx is permanent. Error bodies are a ``google.rpc.Status`` when the content type
  is protobuf. A connection that fails is retryable.
* 413 Payload Too Large is permanent for that request, but not for its data: it is reported as
  ``kind="too_large"`` so that the queue splits the request (``encode.split_request``) and sends the
  halves, instead of dropping it as any other permanent error.

Proxies (``ResolvedExporter.proxy``, decided by the preset resolution): an http:// endpoint is POSTed to
the proxy with its absolute URI, an https:// one goes through a CONNECT tunnel. httpx never reads the proxy
variables itself here (the transport is built explicitly), so the one decision holds. A proxy's 407 is
permanent, as a backend's 401 is; a proxy that cannot be reached is retryable, as a backend that cannot be.
"""

from __future__ import annotations

import gzip
import socket
import ssl

import httpx

from promotel.config import TLSConfig
from promotel.errors import ExportError
from promotel.export.outcome import SendOutcome, parse_partial_success, truncate
from promotel.export.presets import ResolvedExporter
from promotel.httpcommon import Proxy, parse_retry_after, safe_url
from promotel.httpcommon import ssl_context as _tls_context

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf")


def ssl_context(tls: TLSConfig | None) -> ssl.SSLContext | bool:
    """httpx's ``verify``: the system CAs, or a context with the configured CA, client cert and checks."""
    if tls is None:
        return True
    try:
        return _tls_context(tls)
    except (OSError, ssl.SSLError) as exc:
        raise ExportError(f"cannot load the TLS files (ca_file, cert_file, key_file): {exc}; "
                          "check the paths and that the files are PEM.", kind="tls") from exc


def error_message(response: httpx.Response) -> str:
    """The server's own words: a ``google.rpc.Status`` message for protobuf bodies, else the text."""
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    body = response.content
    if ctype in PROTOBUF_TYPES and body:
        from google.protobuf.message import DecodeError
        from google.rpc import status_pb2  # type: ignore[import-untyped]

        try:
            status = status_pb2.Status.FromString(body)
            if status.message:
                return truncate(status.message)
        except DecodeError:
            pass
    text = body.decode("utf-8", errors="replace").strip()
    return truncate(text) if text else response.reason_phrase


def describe_transport_error(exc: BaseException, proxy: Proxy | None = None) -> tuple[str, str]:
    """``(kind, message)`` for a failed connection, from the innermost cause (refused, TLS, DNS, timeout).
    With a ``proxy``, what fails before the request reaches the endpoint is the proxy's and says so."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 10:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    if proxy is not None:
        where = f"the proxy {proxy.shown} ({proxy.origin})"
        if isinstance(exc, httpx.ProxyError):
            # httpcore words a refused CONNECT "<status> <reason>".
            if str(exc).startswith("407"):
                return "proxy", proxy.auth_refused()
            return "proxy", f"{where} refused to open a tunnel to the endpoint ({truncate(str(exc), 120)})"
        if any(isinstance(e, socket.gaierror) for e in chain):
            return "dns", f"DNS lookup of {where} failed — check the proxy's host name"
        if any(isinstance(e, ConnectionRefusedError) or "connection refused" in str(e).lower() for e in chain):
            return "proxy", f"connection to {where} refused — is the proxy running, and is {proxy.origin} right?"
        if isinstance(exc, httpx.ConnectTimeout):
            return "timeout", f"no answer from {where} within the timeout"
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            return "tls", f"TLS certificate verification failed: {e.verify_message or e.reason}"
        if isinstance(e, ssl.SSLError):
            return "tls", f"TLS handshake failed: {e.reason or e}"
    for e in chain:
        if isinstance(e, socket.gaierror):
            # getaddrinfo failed: the host name does not resolve (or no resolver answered).
            return "dns", f"DNS lookup failed: {e.strerror or e} — check the host name"
    for e in chain:
        if isinstance(e, ConnectionRefusedError) or "connection refused" in str(e).lower():
            return "connect", "connection refused"
    if isinstance(exc, httpx.RemoteProtocolError):
        # An OTLP/gRPC port answers an HTTP/1.1 request with HTTP/2 frames (or nothing): h11 cannot read it.
        return "protocol", (f"the server did not answer HTTP/1.1 ({truncate(str(exc), 120)}): is this an OTLP/gRPC "
                            "port (4317 by default)? use protocol: grpc there, or the OTLP/HTTP port (4318)")
    if isinstance(exc, httpx.TimeoutException):
        return "timeout", f"no answer within the timeout ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return "connect", f"cannot connect: {truncate(str(exc), 200) or type(exc).__name__}"
    return "transport", f"{type(exc).__name__}: {truncate(str(exc), 200)}"


class HttpSender:
    """Sends to one OTLP/HTTP endpoint; ``client`` may be passed in (tests, shared transports)."""

    def __init__(self, resolved: ResolvedExporter, *, client: httpx.AsyncClient | None = None) -> None:
        self.resolved = resolved
        self.url = resolved.url
        self.shown_url = safe_url(resolved.url)
        self.gzip = resolved.compression == "gzip"
        from promotel import __version__

        self.headers = {"content-type": "application/x-protobuf", "user-agent": f"promotel/{__version__}"}
        if self.gzip:
            self.headers["content-encoding"] = "gzip"
        self.headers.update(resolved.headers)
        server_name = resolved.tls.server_name if resolved.tls is not None else None
        self.extensions = {"sni_hostname": server_name} if server_name else {}
        self._own_client = client is None
        if client is None:
            # The transport is explicit so httpx does not pick proxies from the environment itself (with
            # trust_env, as before, it still reads SSL_CERT_FILE / SSL_CERT_DIR when tls is not configured).
            proxy = resolved.proxy.url if resolved.proxy is not None else None
            transport = httpx.AsyncHTTPTransport(verify=ssl_context(resolved.tls), proxy=proxy)
            client = httpx.AsyncClient(transport=transport, timeout=resolved.timeout, follow_redirects=False)
        self.client = client

    async def send(self, request: bytes) -> SendOutcome:
        # Level 6 is gzip's own default: most of the ratio of level 9 for a fraction of the CPU.
        body = gzip.compress(request, compresslevel=6) if self.gzip else request
        try:
            response = await self.client.post(self.url, content=body, headers=self.headers,
                                              timeout=self.resolved.timeout, extensions=self.extensions)
        except httpx.TransportError as exc:
            kind, message = describe_transport_error(exc, self.resolved.proxy)
            # Wrong proxy credentials will not fix themselves, as a backend's 401 will not: not retried.
            permanent = isinstance(exc, httpx.ProxyError) and str(exc).startswith("407")
            raise ExportError(f"sending to {self.shown_url} failed: {message}", exporter=self.resolved.name,
                              retryable=not permanent, kind=kind) from exc
        except httpx.RequestError as exc:
            # Not a transport failure: the server answered but its body could not be decoded (e.g. a bad
            # Content-Encoding). The request may have been taken, so it is not retried.
            raise ExportError(f"sending to {self.shown_url} failed: the response could not be read "
                              f"({type(exc).__name__}: {truncate(str(exc), 200)})", exporter=self.resolved.name,
                              retryable=False, kind="bad_response") from exc
        # httpx: ``response.stream`` (a BoundAsyncStream) refers back to the response, a reference cycle
        # that keeps the request, the encoded body included, until a full GC collection — MBs per export
        # for a large target. ``post`` has read and closed the stream, so replacing it breaks the cycle and
        # the body is freed as soon as this call returns.
        response.stream = httpx.ByteStream(b"")
        code = response.status_code
        if 200 <= code < 300:
            return parse_partial_success(response.content)
        message = error_message(response)
        proxy = self.resolved.proxy
        if proxy is not None and code == 407:     # the forward proxy's answer (http:// endpoints)
            raise ExportError(f"sending to {self.shown_url} failed: {proxy.auth_refused()}",
                              exporter=self.resolved.name, retryable=False, kind="proxy")
        if proxy is not None and code in (502, 504):
            message += (f" (through the proxy {proxy.shown} ({proxy.origin}); if the proxy answered, it could not "
                        "reach the endpoint)")
        if code == 413:
            raise self._too_large(message, len(request), len(body))
        retryable = code in RETRYABLE_STATUS
        retry_after = parse_retry_after(response.headers.get("retry-after")) if retryable else None
        raise ExportError(f"{self.shown_url} answered HTTP {code}: {message}", exporter=self.resolved.name,
                          retryable=retryable, retry_after=retry_after, kind=f"http_{code}")

    def _too_large(self, message: str, size: int, sent: int) -> ExportError:
        compressed = f" ({sent} bytes gzip-compressed)" if self.gzip else ""
        return ExportError(
            f"{self.shown_url} answered HTTP 413: {truncate(message, 200)} — the request of {size} bytes{compressed} "
            f"is larger than the backend accepts; lower max_request_bytes (now {self.resolved.max_request_bytes}) "
            "below the backend's limit", exporter=self.resolved.name, retryable=False, kind="too_large")

    async def aclose(self) -> None:
        if self._own_client:
            await self.client.aclose()


__all__ = ["HttpSender", "parse_retry_after"]
