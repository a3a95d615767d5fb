"""OTLP/HTTP and OTLP/gRPC senders against real receivers on 127.0.0.1: status mapping per the OTLP spec."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import time

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from promotel.errors import ConfigError, ExportError
from promotel.export.grpc_sender import GrpcSender
from promotel.export.http_sender import HttpSender, parse_retry_after
from promotel.export.presets import ResolvedExporter, resolve_exporter
from promotel.export.sender import make_sender
from support.fake_intakes import (
    GrpcReceiver,
    HttpReceiver,
    TcpTap,
    encode_one,
    exporter_config,
    make_batch,
    partial_success,
    status_body,
)
from support.forward_proxy import ForwardProxy

REQUEST = encode_one(make_batch(counters=3))
BIG_REQUEST = encode_one(make_batch(counters=400, attrs=5))
# What protobuf itself serializes for the same message: the bytes gRPC puts on the wire uncompressed.
BIG_WIRE = ExportMetricsServiceRequest.FromString(BIG_REQUEST).SerializeToString()   # repetitive: gzip shrinks it a lot


def http_sender(url: str, **kw: object) -> HttpSender:
    return HttpSender(resolve_exporter(exporter_config(endpoint=url, protocol="http/protobuf", **kw), env={}))


def grpc_sender(endpoint: str, **kw: object) -> GrpcSender:
    return GrpcSender(resolve_exporter(exporter_config(endpoint=endpoint, protocol="grpc", **kw), env={}))


async def send_http(url: str, request: bytes = REQUEST, **kw: object) -> object:
    sender = http_sender(url, **kw)
    try:
        return await sender.send(request)
    finally:
        await sender.aclose()


# ─── HTTP ────────────────────────────────────────────────────────────────────────────────────

def test_http_posts_protobuf_with_gzip_and_headers() -> None:
    with HttpReceiver() as rx:
        outcome = asyncio.run(send_http(rx.url, compression="gzip", headers={"X-Tenant": "acme"}))
    assert outcome == (0, "")
    rec = rx.requests[0]
    assert rec.path == "/v1/metrics"                      # path added to an endpoint without one
    assert rec.headers["content-type"] == "application/x-protobuf"
    assert rec.headers["content-encoding"] == "gzip"
    assert gzip.decompress(rec.raw) == REQUEST            # really compressed, and losslessly
    assert len(rec.raw) != len(REQUEST)
    assert rec.headers["x-tenant"] == "acme"
    assert rec.message.resource_metrics[0].scope_metrics[0].metrics[0].name == "requests"


def test_http_without_compression_sends_plain_body() -> None:
    with HttpReceiver() as rx:
        asyncio.run(send_http(rx.url + "/custom/path", compression="none"))
    assert rx.requests[0].path == "/custom/path"
    assert "content-encoding" not in rx.requests[0].headers
    assert rx.requests[0].raw == REQUEST


@pytest.mark.parametrize("status", [200, 503])
def test_http_send_leaves_no_cycle_holding_the_request_body(status: int) -> None:
    """httpx responses and their streams refer to each other; an export must not leave the request (and so
    the encoded body, MBs for a large target) to the cyclic GC, or RSS grows by a body per export."""
    import gc

    import httpx

    outcome: list[object] = []
    with HttpReceiver() as rx:
        rx.script.append((status, {"Content-Type": "text/plain"}, b"answer"))
        sender = http_sender(rx.url)
        gc.collect()
        gc.disable()
        try:
            async def once() -> None:
                try:
                    outcome.append(await sender.send(BIG_REQUEST))
                except ExportError as exc:
                    outcome.append(exc.kind)
                await sender.aclose()

            asyncio.run(once())
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            stranded = [type(o).__name__ for o in gc.garbage if isinstance(o, (httpx.Request, httpx.Response))]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert outcome == [(0, "")] if status == 200 else outcome == ["http_503"]
    assert stranded == []


def test_http_partial_success_is_reported() -> None:
    with HttpReceiver() as rx:
        rx.script.append((200, {"Content-Type": "application/x-protobuf"}, partial_success(2, "2 points too old")))
        outcome = asyncio.run(send_http(rx.url))
    assert outcome == (2, "2 points too old")


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_http_retryable_statuses_with_retry_after_seconds(status: int) -> None:
    with HttpReceiver() as rx:
        rx.script.append((status, {"Retry-After": "7", "Content-Type": "text/plain"}, b"slow down"))
        with pytest.raises(ExportError) as info:
            asyncio.run(send_http(rx.url))
    assert info.value.retryable is True
    assert info.value.retry_after == 7.0
    assert info.value.kind == f"http_{status}"
    assert "slow down" in str(info.value)


def test_http_retry_after_as_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    with HttpReceiver() as rx:
        rx.script.append((503, {"Retry-After": when}, b""))
        with pytest.raises(ExportError) as info:
            asyncio.run(send_http(rx.url))
    assert info.value.retryable
    assert info.value.retry_after is not None and 27 <= info.value.retry_after <= 30


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0   # in the past
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 500])
def test_http_other_statuses_are_permanent_with_server_message(status: int) -> None:
    with HttpReceiver() as rx:
        rx.script.append((status, {"Content-Type": "text/plain"}, b"bad things: " + b"x" * 2000))
        with pytest.raises(ExportError) as info:
            asyncio.run(send_http(rx.url))
    assert info.value.retryable is False
    assert info.value.retry_after is None
    assert f"HTTP {status}: bad things" in str(info.value)
    assert len(str(info.value)) < 700                     # the body is truncated


def test_http_protobuf_status_body_is_decoded() -> None:
    with HttpReceiver() as rx:
        rx.script.append((400, {"Content-Type": "application/x-protobuf"}, status_body(3, "metric name is empty")))
        with pytest.raises(ExportError) as info:
            asyncio.run(send_http(rx.url))
    assert str(info.value).endswith("HTTP 400: metric name is empty")


def test_http_connection_refused_is_retryable() -> None:
    with HttpReceiver() as rx:
        url = rx.url
    with pytest.raises(ExportError) as info:     # the server is gone: nothing listens on the port
        asyncio.run(send_http(url))
    assert info.value.retryable
    assert info.value.kind == "connect"
    assert "connection refused" in str(info.value)


def test_http_timeout_is_retryable() -> None:
    with HttpReceiver() as rx:
        rx.stall = 1.0
        with pytest.raises(ExportError) as info:
            asyncio.run(send_http(rx.url, timeout=0.2))
    assert info.value.retryable
    assert info.value.kind == "timeout"


def test_http_error_messages_carry_no_credentials() -> None:
    with HttpReceiver() as rx:
        rx.script.append((403, {}, b"nope"))
        url = f"http://user:hunter2-password@127.0.0.1:{rx.port}/v1/metrics?token=sekrit-token"
        with pytest.raises(ExportError) as info:
            asyncio.run(send_http(url, headers={"authorization": "Bearer sekrit-header"}))
    text = str(info.value)
    assert "hunter2" not in text and "sekrit" not in text
    assert f"127.0.0.1:{rx.port}/v1/metrics" in text


# ─── gRPC ────────────────────────────────────────────────────────────────────────────────────

async def grpc_case(script: list[object], **kw: object) -> tuple[GrpcReceiver, object]:
    rx = await GrpcReceiver().start()
    rx.script.extend(script)  # type: ignore[arg-type]
    sender = grpc_sender(rx.endpoint, **kw)
    try:
        try:
            result: object = await sender.send(REQUEST)
        except ExportError as exc:
            result = exc
    finally:
        await sender.aclose()
        await rx.stop()
    return rx, result


async def tapped_send(compression: str) -> tuple[GrpcReceiver, TcpTap]:
    rx = await GrpcReceiver().start()
    tap = await TcpTap(rx.port).start()
    sender = grpc_sender(f"http://127.0.0.1:{tap.port}", compression=compression, headers={"X-Api-Key": "k1"})
    try:
        assert await sender.send(BIG_REQUEST) == (0, "")
    finally:
        await sender.aclose()
        await tap.stop()
        await rx.stop()
    return rx, tap


def test_grpc_sends_with_metadata_and_gzip() -> None:
    rx, tap = asyncio.run(tapped_send("gzip"))
    request, metadata = rx.requests[0]
    assert request == ExportMetricsServiceRequest.FromString(BIG_REQUEST)   # decompressed back exactly
    assert metadata["x-api-key"] == "k1"                # lowercased metadata key
    # On the wire: a gRPC message prefix with the "compressed" flag set, then gzip's magic bytes,
    # and none of the plain request.
    wire = bytes(tap.client_bytes)
    assert any(wire[i] == 1 and wire[i + 5:i + 7] == b"\x1f\x8b" for i in range(len(wire) - 7))
    assert BIG_WIRE[:200] not in wire
    assert len(wire) < len(BIG_WIRE) / 2


def test_grpc_without_compression_sends_plain_message() -> None:
    _, tap = asyncio.run(tapped_send("none"))
    assert BIG_WIRE[:200] in bytes(tap.client_bytes)


def test_grpc_partial_success() -> None:
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms

    response = ms.ExportMetricsServiceResponse(
        partial_success=ms.ExportMetricsPartialSuccess(rejected_data_points=1, error_message="dup"))
    _, outcome = asyncio.run(grpc_case([response]))
    assert outcome == (1, "dup")


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                                  grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
                                  grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.DATA_LOSS])
def test_grpc_retryable_codes(code: grpc.StatusCode) -> None:
    _, exc = asyncio.run(grpc_case([(code, "try later", None)]))
    assert isinstance(exc, ExportError)
    assert exc.retryable
    assert exc.kind == f"grpc_{code.name.lower()}"


def test_grpc_resource_exhausted_with_retry_info_is_retryable_with_delay() -> None:
    _, exc = asyncio.run(grpc_case([(grpc.StatusCode.RESOURCE_EXHAUSTED, "throttled", 2.5)]))
    assert isinstance(exc, ExportError)
    assert exc.retryable
    assert exc.retry_after == 2.5


def test_grpc_resource_exhausted_without_retry_info_is_permanent() -> None:
    _, exc = asyncio.run(grpc_case([(grpc.StatusCode.RESOURCE_EXHAUSTED, "message too large", None)]))
    assert isinstance(exc, ExportError)
    assert not exc.retryable
    assert "message too large" in str(exc)


@pytest.mark.parametrize("code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED,
                                  grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNIMPLEMENTED])
def test_grpc_other_codes_are_permanent(code: grpc.StatusCode) -> None:
    _, exc = asyncio.run(grpc_case([(code, "refused: bad request", None)]))
    assert isinstance(exc, ExportError)
    assert not exc.retryable
    assert "refused: bad request" in str(exc)


def test_grpc_connection_refused_is_retryable() -> None:
    async def go() -> ExportError:
        rx = await GrpcReceiver().start()
        endpoint = rx.endpoint
        await rx.stop()
        sender = grpc_sender(endpoint, timeout=2.0)
        try:
            with pytest.raises(ExportError) as info:
                await sender.send(REQUEST)
        finally:
            await sender.aclose()
        return info.value

    exc = asyncio.run(go())
    assert exc.retryable
    assert exc.kind == "grpc_unavailable"


# ─── HTTP: a response body httpx cannot decode ────────────────────────────────────────────────

def test_http_undecodable_response_body_is_an_export_error() -> None:
    # httpx.DecodingError is not a TransportError: before the fix it escaped the sender.
    async def go(url: str) -> BaseException | None:
        sender = http_sender(url)
        try:
            await sender.send(b"")
        except BaseException as exc:
            return exc
        finally:
            await sender.aclose()
        return None

    with HttpReceiver() as rx:
        rx.script.append((200, {"Content-Encoding": "gzip"}, b"this is not gzip"))
        exc = asyncio.run(go(rx.url))
    assert isinstance(exc, ExportError)
    assert exc.retryable is False and exc.kind == "bad_response"


# ─── "too large": HTTP 413 and gRPC messages over the server's limit ─────────────────────────

def test_http_413_is_too_large_naming_the_request_size_and_what_to_do() -> None:
    """A backend that refuses requests over 2 kB once decompressed, as an intake with a body limit does: 413
    is ``kind="too_large"`` (the queue splits such a request) and not retryable as it is."""
    def limit(recorded: object) -> tuple[int, dict[str, str], bytes] | None:
        body = recorded.body
        return (413, {"Content-Type": "text/plain"}, b"request body too large") if len(body) > 2000 else None

    with HttpReceiver(check=limit) as rx:
        assert asyncio.run(send_http(rx.url, REQUEST, compression="none")) == (0, "")      # under the limit
        with pytest.raises(ExportError) as info:
            asyncio.run(send_http(rx.url, BIG_REQUEST, compression="none", max_request_bytes=3_000_000))
        with pytest.raises(ExportError) as zipped:
            asyncio.run(send_http(rx.url, BIG_REQUEST, compression="gzip"))
    assert len(REQUEST) <= 2000 < len(BIG_REQUEST)
    exc = info.value
    assert exc.kind == "too_large" and exc.retryable is False and exc.retry_after is None
    text = str(exc)
    assert "HTTP 413: request body too large" in text and f"request of {len(BIG_REQUEST)} bytes" in text
    assert "lower max_request_bytes (now 3000000)" in text
    assert zipped.value.kind == "too_large" and "gzip-compressed" in str(zipped.value)
    assert len(rx.requests) == 1                        # only the small request was taken


async def _grpc_server_with_receive_limit(limit: int) -> tuple[grpc.aio.Server, int]:
    """A real gRPC OTLP server on 127.0.0.1 whose gRPC library refuses messages over ``limit`` bytes."""
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as ms_grpc

    class Servicer(ms_grpc.MetricsServiceServicer):  # type: ignore[misc]
        async def Export(self, request: object, context: object) -> object:
            return ms.ExportMetricsServiceResponse()

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit)])
    ms_grpc.add_MetricsServiceServicer_to_server(Servicer(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_grpc_message_over_the_servers_max_is_too_large(compression: str) -> None:
    async def go() -> tuple[object, ExportError]:
        server, port = await _grpc_server_with_receive_limit(2000)
        sender = grpc_sender(f"http://127.0.0.1:{port}", compression=compression, timeout=5.0)
        try:
            small = await sender.send(REQUEST)
            with pytest.raises(ExportError) as info:
                await sender.send(BIG_REQUEST)
        finally:
            await sender.aclose()
            await server.stop(grace=None)
        return small, info.value

    small, exc = asyncio.run(go())
    assert small == (0, "")
    assert exc.kind == "too_large" and exc.retryable is False and exc.retry_after is None
    text = str(exc)
    assert "RESOURCE_EXHAUSTED" in text and "larger than max" in text
    assert f"request of {len(BIG_REQUEST)} bytes" in text and "lower max_request_bytes" in text


@pytest.mark.parametrize("details", ["grpc: received message larger than max (5000000 vs. 4194304)",   # grpc-go
                                     "gRPC message exceeds maximum size 4194304: 5000000"])            # grpc-java
def test_grpc_too_large_in_other_libraries_words_is_too_large_even_with_retry_info(details: str) -> None:
    _, exc = asyncio.run(grpc_case([(grpc.StatusCode.RESOURCE_EXHAUSTED, details, 1.0)]))
    assert isinstance(exc, ExportError)
    assert exc.kind == "too_large" and not exc.retryable and exc.retry_after is None
    assert details in str(exc)


def test_grpc_other_resource_exhausted_keeps_the_specs_rule() -> None:
    """Only "message larger than the server's max" is too_large; any other RESOURCE_EXHAUSTED is retryable
    exactly when the server attached RetryInfo (OTLP specification, "OTLP/gRPC Throttling")."""
    _, throttled = asyncio.run(grpc_case([(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota exceeded", 0.5)]))
    _, refused = asyncio.run(grpc_case([(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota exceeded", None)]))
    assert isinstance(throttled, ExportError) and isinstance(refused, ExportError)
    assert throttled.kind == refused.kind == "grpc_resource_exhausted"
    assert throttled.retryable and throttled.retry_after == 0.5
    assert not refused.retryable


# ─── through a proxy (tests/support/forward_proxy.py: a real forward proxy on 127.0.0.1) ─────────
# The endpoints are named collector.test: only the proxy resolves that name, so a request that arrives went
# through it. Its credentials must never appear in an error or a log line.

PROXY_PASSWORD = "exp0rter-Pr0xy-pw"
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "grpc_proxy",
                   "GRPC_PROXY", "no_grpc_proxy", "NO_GRPC_PROXY")


@pytest.fixture
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def proxied(endpoint: str, protocol: str, env: dict[str, str] | None = None, **kw: object) -> ResolvedExporter:
    """The resolved exporter for ``endpoint``: with ``env`` None, the process environment is read."""
    return resolve_exporter(exporter_config(endpoint=endpoint, protocol=protocol, **kw), env=env)


async def send_through(resolved: ResolvedExporter, request: bytes = REQUEST) -> object:
    sender = make_sender(resolved)
    try:
        try:
            return await sender.send(request)
        except ExportError as exc:
            return exc
    finally:
        await sender.aclose()


def test_http_exporter_through_proxy_url_with_credentials() -> None:
    with HttpReceiver() as rx, ForwardProxy({"collector.test": "127.0.0.1"}, ("exporter", PROXY_PASSWORD)) as proxy:
        endpoint = f"http://collector.test:{rx.port}/v1/metrics"
        resolved = proxied(endpoint, "http/protobuf", {}, proxy_url=proxy.url("exporter", PROXY_PASSWORD))
        assert asyncio.run(send_through(resolved)) == (0, "")
    assert proxy.methods() == [("POST", endpoint)]                    # absolute URI to the proxy
    assert proxy.passed[0].headers["proxy-authorization"].startswith("Basic ")
    assert rx.requests[0].message == ExportMetricsServiceRequest.FromString(REQUEST)
    assert "proxy-authorization" not in rx.requests[0].headers        # the proxy's credentials stop there


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_http_exporter_through_the_environment(no_proxy_variables: pytest.MonkeyPatch, variable: str) -> None:
    with HttpReceiver() as rx, ForwardProxy({"collector.test": "127.0.0.1"}) as proxy:
        no_proxy_variables.setenv(variable, proxy.url())
        no_proxy_variables.setenv("HTTPS_PROXY", "http://127.0.0.1:9")     # for https:// only
        resolved = proxied(f"http://collector.test:{rx.port}", "http/protobuf")
        assert asyncio.run(send_through(resolved)) == (0, "")
        # NO_PROXY, loopback and proxy_from_environment: false go direct.
        no_proxy_variables.setenv("NO_PROXY", "collector.test")
        assert proxied(f"http://collector.test:{rx.port}", "http/protobuf").proxy is None
        no_proxy_variables.delenv("NO_PROXY")
        assert proxied(rx.url, "http/protobuf").proxy is None
        assert proxied(f"http://collector.test:{rx.port}", "http/protobuf",
                       proxy_from_environment=False).proxy is None
    assert proxy.methods() == [("POST", f"http://collector.test:{rx.port}/v1/metrics")]
    assert len(rx.requests) == 1


def test_http_exporter_proxy_407_is_permanent_and_hides_the_password() -> None:
    wrong = "wr0ng-" + PROXY_PASSWORD
    with HttpReceiver() as rx, ForwardProxy({"collector.test": "127.0.0.1"}, ("exporter", PROXY_PASSWORD)) as proxy:
        resolved = proxied(f"http://collector.test:{rx.port}", "http/protobuf", {"HTTP_PROXY": proxy.url("exporter", wrong)})
        err = asyncio.run(send_through(resolved))
    assert isinstance(err, ExportError)
    assert err.kind == "proxy" and not err.retryable
    assert "407 Proxy Authentication Required" in str(err) and "the HTTP_PROXY variable" in str(err)
    assert f"http://127.0.0.1:{proxy.port}" in str(err)
    assert wrong not in str(err) and PROXY_PASSWORD not in str(err)
    assert rx.requests == []


def test_http_exporter_proxy_down_is_retryable_and_named() -> None:
    with ForwardProxy() as gone:
        url = gone.url("exporter", PROXY_PASSWORD)
    err = asyncio.run(send_through(proxied("http://collector.test:4318", "http/protobuf", {}, proxy_url=url)))
    assert isinstance(err, ExportError)
    assert err.kind == "proxy" and err.retryable
    assert "connection to the proxy http://127.0.0.1:" in str(err) and "(proxy_url)" in str(err)
    assert PROXY_PASSWORD not in str(err)


async def grpc_through(proxy_env: dict[str, str] | None, **kw: object) -> tuple[GrpcReceiver, object]:
    rx = await GrpcReceiver().start()
    try:
        resolved = proxied(f"http://collector.test:{rx.port}", "grpc", proxy_env, **kw)
        result = await send_through(resolved)
    finally:
        await rx.stop()
    return rx, result


def test_grpc_exporter_through_a_connect_tunnel_with_proxy_url(capfd: pytest.CaptureFixture[str]) -> None:
    with ForwardProxy({"collector.test": "127.0.0.1"}, ("exporter", PROXY_PASSWORD)) as proxy:
        rx, result = asyncio.run(grpc_through({}, proxy_url=proxy.url("exporter", PROXY_PASSWORD),
                                              headers={"X-Api-Key": "k1"}))
    assert result == (0, "")
    assert proxy.methods() == [("CONNECT", f"collector.test:{rx.port}")]
    assert proxy.passed[0].headers["proxy-authorization"].startswith("Basic ")
    request, metadata = rx.requests[0]
    assert request == ExportMetricsServiceRequest.FromString(REQUEST)
    assert metadata["x-api-key"] == "k1"
    assert PROXY_PASSWORD not in capfd.readouterr().err


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "grpc_proxy"])
def test_grpc_exporter_through_the_environment(no_proxy_variables: pytest.MonkeyPatch, variable: str) -> None:
    with ForwardProxy({"collector.test": "127.0.0.1"}) as proxy:
        no_proxy_variables.setenv(variable, proxy.url())
        rx, result = asyncio.run(grpc_through(None))
    assert result == (0, "")
    assert proxy.methods() == [("CONNECT", f"collector.test:{rx.port}")]


def test_grpc_does_not_take_a_proxy_promotel_did_not_choose(no_proxy_variables: pytest.MonkeyPatch) -> None:
    # gRPC core would tunnel 127.0.0.1 through https_proxy on its own; promotel's rule (loopback goes direct,
    # as in Go) holds because the channel is told grpc.enable_http_proxy = 0.
    no_proxy_variables.setenv("https_proxy", "http://127.0.0.1:9")
    no_proxy_variables.setenv("grpc_proxy", "http://127.0.0.1:9")

    async def go() -> object:
        rx = await GrpcReceiver().start()
        try:
            resolved = proxied(rx.endpoint, "grpc", timeout=3.0)
            assert resolved.proxy is None
            return await send_through(resolved)
        finally:
            await rx.stop()

    assert asyncio.run(go()) == (0, "")


def test_grpc_exporter_proxy_407_is_permanent_and_hides_the_password(capfd: pytest.CaptureFixture[str]) -> None:
    wrong = "wr0ng-" + PROXY_PASSWORD
    with ForwardProxy({"collector.test": "127.0.0.1"}, ("exporter", PROXY_PASSWORD)) as proxy:
        rx, err = asyncio.run(grpc_through({"HTTPS_PROXY": proxy.url("exporter", wrong)}, timeout=3.0))
    assert isinstance(err, ExportError)
    assert err.kind == "proxy" and not err.retryable
    assert "407 Proxy Authentication Required" in str(err) and "the HTTPS_PROXY variable" in str(err)
    assert str(err).startswith(f"test: sending to collector.test:{rx.port} failed (UNAVAILABLE): the proxy ")
    assert rx.requests == []
    assert wrong not in str(err) and PROXY_PASSWORD not in str(err)
    assert wrong not in capfd.readouterr().err                  # nor in gRPC core's own log lines


def test_grpc_exporter_proxy_errors_name_the_proxy() -> None:
    with ForwardProxy({}) as proxy:               # knows no host: refuses every tunnel with 502
        _, refused = asyncio.run(grpc_through({}, proxy_url=proxy.url(), timeout=3.0))
    assert isinstance(refused, ExportError) and refused.kind == "proxy" and refused.retryable
    assert "refused to open a tunnel to collector.test:" in str(refused) and "HTTP 502" in str(refused)
    _, down = asyncio.run(grpc_through({}, proxy_url=proxy.url(), timeout=3.0))          # the proxy has stopped
    assert isinstance(down, ExportError) and down.kind == "proxy" and "refused" in str(down)
    _, dns = asyncio.run(grpc_through({}, proxy_url="http://proxy.invalid:3128", timeout=3.0))
    assert isinstance(dns, ExportError) and dns.kind == "dns"
    assert "DNS lookup of the proxy http://proxy.invalid:3128 (proxy_url) failed" in str(dns)


def test_grpc_refuses_an_https_proxy_before_sending() -> None:
    with pytest.raises(ConfigError) as info:
        proxied("https://otlp.example:4317", "grpc", {}, proxy_url=f"https://me:{PROXY_PASSWORD}@proxy.corp:3129")
    path, message = info.value.problems[0]
    assert path == "exporters[test].proxy_url"
    assert "gRPC reaches a proxy over plain HTTP only" in message and PROXY_PASSWORD not in message
    with pytest.raises(ConfigError) as info:
        proxied("https://otlp.example:4317", "grpc", {"HTTPS_PROXY": "https://proxy.corp:3129"})
    assert "the HTTPS_PROXY variable" in info.value.problems[0][1]
    # OTLP/HTTP can use an https:// proxy.
    resolved = proxied("https://otlp.example/v1/metrics", "http/protobuf", {}, proxy_url="https://proxy.corp:3129")
    assert resolved.proxy is not None and resolved.proxy.url == "https://proxy.corp:3129"


def test_a_proxy_problem_is_listed_with_the_other_preset_problems() -> None:
    from promotel.export.presets import preset_problems

    cfg = exporter_config(preset="datadog", protocol="grpc", proxy_url="https://proxy.corp:3129")
    found = dict(preset_problems(cfg, 0))
    assert "exporters[0].api_key" in found and "exporters[0].protocol" in found
    assert "exporters[0].proxy_url" not in found          # Datadog is OTLP/HTTP: an https:// proxy is fine there
    cfg = exporter_config(endpoint="https://otlp.example:4317", protocol="grpc", temporality="delta",
                          proxy_url="https://proxy.corp:3129", tls={"insecure_skip_verify": True})
    found = dict(preset_problems(cfg, 0))
    assert set(found) == {"exporters[0].tls.insecure_skip_verify", "exporters[0].proxy_url"}
