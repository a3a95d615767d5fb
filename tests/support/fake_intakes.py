"""Local stand-ins for OTLP intakes, for the export tests.

* ``HttpReceiver`` — a real HTTP server on 127.0.0.1 (a thread) that records every request, decodes
  it with the official protobuf classes (gunzipping first when the client said gzip) and answers
  from a script: ``(status, headers, body)`` per request, then 200 with an empty response.
* ``GrpcReceiver`` — a real ``grpc.aio`` server implementing ``MetricsServiceServicer``, scripted the
  same way with ``(StatusCode, details, retry_delay_or_None)`` or a partial-success response.
* ``*_intake`` — ``HttpReceiver``s that refuse what the real Datadog, Grafana Cloud, New Relic and
  Honeycomb intakes refuse (path, auth headers, content type, temporality, size, summaries,
  attribute count), with the HTTP status and message those backends document.

Also here: ``exporter_config`` (the real ``ExporterConfig`` when config.py has it, else a frozen
stand-in with the same field names) and ``make_batch``.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, Self

import grpc
import grpc.aio
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as ms_grpc
from opentelemetry.proto.metrics.v1 import metrics_pb2 as mpb

from promotel.model import (
    HistogramPoint,
    Kind,
    Metric,
    NumberPoint,
    SummaryPoint,
    TargetBatch,
    Temporality,
)

DELTA = mpb.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = mpb.AGGREGATION_TEMPORALITY_CUMULATIVE


# ─── config ──────────────────────────────────────────────────────────────────────────────────

def Retry(initial_interval: float = 0.01, max_interval: float = 0.05, max_elapsed: float = 5.0) -> dict[str, float]:
    """A fast ``retry:`` section (seconds)."""
    return {"initial_interval": initial_interval, "max_interval": max_interval, "max_elapsed": max_elapsed}


def exporter_config(**kw: Any) -> Any:
    """A validated ``promotel.config.ExporterConfig`` named ``test`` with fast retries unless told otherwise."""
    from promotel.config import ExporterConfig

    kw.setdefault("name", "test")
    kw.setdefault("retry", Retry())
    return ExporterConfig.model_validate(kw)


# ─── batches ─────────────────────────────────────────────────────────────────────────────────

def make_batch(target: str = "t", *, counters: int = 1, value: float = 1.0, scrape_ns: int = 1_700_000_000_000_000_000,
               histogram: bool = False, summary: bool = False, gauge: bool = False, attrs: int = 1,
               pad: str = "") -> TargetBatch:
    metrics: list[Metric] = []
    t = scrape_ns
    pts = tuple(NumberPoint(attributes=tuple(sorted([("i", str(i)), *[(f"a{j:03d}", f"v{pad}") for j in range(attrs - 1)]])),
                            value=value, start_ns=t - 10**9, time_ns=t) for i in range(counters))
    metrics.append(Metric("requests", "requests served", "{request}", Kind.SUM, pts, monotonic=True,
                          prom_type="counter"))
    if gauge:
        metrics.append(Metric("temperature", "", "Cel", Kind.GAUGE, (NumberPoint((), 21.5, time_ns=t),),
                              prom_type="gauge"))
    if histogram:
        hp = HistogramPoint((("route", "/"),), (0.1, 1.0), (1.0 * value, 2.0 * value, 0.0), 3.0 * value, 1.5 * value,
                            start_ns=t - 10**9, time_ns=t)
        metrics.append(Metric("latency", "", "s", Kind.HISTOGRAM, (hp,), prom_type="histogram"))
    if summary:
        sp = SummaryPoint((("route", "/"),), ((0.5, 0.2), (0.9, 0.8)), 10.0 * value, 3.0 * value,
                          start_ns=t - 10**9, time_ns=t)
        metrics.append(Metric("rpc_duration", "", "s", Kind.SUMMARY, (sp,), prom_type="summary"))
    return TargetBatch(target=target, resource=(("service.name", target),), metrics=tuple(metrics),
                       scrape_time_ns=scrape_ns)


def _kv(key: str, value: Any) -> Any:
    from opentelemetry.proto.common.v1 import common_pb2

    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=str(value)))


def _metric_proto(m: Metric, points: list[Any]) -> mpb.Metric:
    out = mpb.Metric(name=m.name, description=m.description, unit=m.unit)
    temp = DELTA if m.temporality is Temporality.DELTA else CUMULATIVE
    for p in points:
        attrs = [_kv(k, v) for k, v in p.attributes]
        if m.kind is Kind.GAUGE:
            out.gauge.data_points.add(attributes=attrs, as_double=p.value, time_unix_nano=p.time_ns)
        elif m.kind is Kind.SUM:
            out.sum.is_monotonic = m.monotonic
            out.sum.aggregation_temporality = temp
            out.sum.data_points.add(attributes=attrs, as_double=p.value, time_unix_nano=p.time_ns,
                                    start_time_unix_nano=p.start_ns)
        elif m.kind is Kind.HISTOGRAM:
            out.histogram.aggregation_temporality = temp
            out.histogram.data_points.add(attributes=attrs, count=int(p.count), sum=p.sum or 0.0,
                                          bucket_counts=[int(c) for c in p.counts], explicit_bounds=list(p.bounds),
                                          time_unix_nano=p.time_ns, start_time_unix_nano=p.start_ns)
        else:
            dp = out.summary.data_points.add(attributes=attrs, count=int(p.count), sum=p.sum,
                                             time_unix_nano=p.time_ns, start_time_unix_nano=p.start_ns)
            for q, v in p.quantiles:
                dp.quantile_values.add(quantile=q, value=v)
    return out


def encode_one(batch: TargetBatch, max_bytes: int = 1 << 22) -> bytes:
    """The batch as exactly one serialized request (the project's encoder)."""
    from promotel.export.encode import encode_requests

    requests = encode_requests(batch, max_bytes).requests
    assert len(requests) == 1
    return requests[0]


def request_points(req: ms.ExportMetricsServiceRequest) -> list[tuple[str, str, Any]]:
    """(metric name, data kind, point) for every point of a request."""
    out = []
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                for p in getattr(m, kind).data_points:
                    out.append((m.name, kind, p))
    return out


# ─── HTTP receiver ───────────────────────────────────────────────────────────────────────────

class Recorded(NamedTuple):
    path: str
    headers: dict[str, str]          # lowercased names
    raw: bytes                        # as received (maybe gzip)
    body: bytes                       # decompressed
    message: ms.ExportMetricsServiceRequest
    at: float                         # time.monotonic() on receipt


Reply = tuple[int, dict[str, str], bytes]


def status_body(code: int, message: str) -> bytes:
    return status_pb2.Status(code=code, message=message).SerializeToString()


def partial_success(rejected: int, message: str) -> bytes:
    return ms.ExportMetricsServiceResponse(
        partial_success=ms.ExportMetricsPartialSuccess(rejected_data_points=rejected, error_message=message),
    ).SerializeToString()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass    # a client that timed out and hung up is expected in these tests


class HttpReceiver:
    """Real HTTP server on 127.0.0.1:0. ``script`` answers requests in order; ``check`` may refuse any."""

    def __init__(self, check: Callable[[Recorded], Reply | None] | None = None) -> None:
        self.requests: list[Recorded] = []
        self.attempts = 0
        self.script: deque[Reply] = deque()
        self.check = check
        self.stall = 0.0               # seconds to wait before answering (bounded: tests set small values)
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpReceiver:
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                if len(raw) < length:
                    # The client went away mid-body (a killed bridge): a real intake never sees a request, and
                    # a cut body could even decode (an empty one is a valid empty message).
                    self.close_connection = True
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                body = gzip.decompress(raw) if headers.get("content-encoding") == "gzip" else raw
                if rec.stall:
                    time.sleep(rec.stall)
                with rec.lock:
                    rec.attempts += 1
                    reply = rec.script.popleft() if rec.script else None
                recorded = Recorded(self.path, headers, raw, body, ms.ExportMetricsServiceRequest.FromString(body),
                                    time.monotonic())
                if reply is None and rec.check is not None:
                    reply = rec.check(recorded)
                if reply is None:
                    with rec.lock:
                        rec.requests.append(recorded)
                    reply = (200, {"Content-Type": "application/x-protobuf"},
                             ms.ExportMetricsServiceResponse().SerializeToString())
                elif reply[0] == 200:
                    with rec.lock:
                        rec.requests.append(recorded)
                code, extra, payload = reply
                self.send_response(code)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ─── gRPC receiver (grpc.aio) ───────────────────────────────────────────────────────────────

GrpcReply = tuple[grpc.StatusCode, str, "float | None"]   # code, details, RetryInfo delay


class GrpcReceiver:
    """A ``grpc.aio`` OTLP metrics server on 127.0.0.1:0, in the test's event loop."""

    def __init__(self) -> None:
        self.requests: list[tuple[ms.ExportMetricsServiceRequest, dict[str, str]]] = []
        self.attempts = 0
        self.script: deque[GrpcReply | ms.ExportMetricsServiceResponse] = deque()
        self.port = 0
        self._server: grpc.aio.Server | None = None

    async def start(self) -> GrpcReceiver:
        rec = self

        class Servicer(ms_grpc.MetricsServiceServicer):  # type: ignore[misc]
            async def Export(self, request: Any, context: Any) -> Any:
                rec.attempts += 1
                reply = rec.script.popleft() if rec.script else None
                if isinstance(reply, tuple):
                    code, details, delay = reply
                    if delay is not None:
                        info = error_details_pb2.RetryInfo()
                        info.retry_delay.FromNanoseconds(int(delay * 1e9))
                        st = status_pb2.Status(code=code.value[0], message=details)
                        st.details.add().Pack(info)
                        context.set_trailing_metadata((("grpc-status-details-bin", st.SerializeToString()),))
                    await context.abort(code, details)
                rec.requests.append((request, {k: v for k, v in context.invocation_metadata()}))
                return reply if reply is not None else ms.ExportMetricsServiceResponse()

        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        ms_grpc.add_MetricsServiceServicer_to_server(Servicer(), server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server
        return self

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)


class TcpTap:
    """A loopback TCP proxy that keeps every byte the client sent (to see what really went on the wire)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.client_bytes = bytearray()
        self.port = 0
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> TcpTap:
        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, keep: bool) -> None:
            try:
                while data := await reader.read(65536):
                    if keep:
                        self.client_bytes.extend(data)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

        self._server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


# ─── vendor intakes ──────────────────────────────────────────────────────────────────────────

def _refuse(code: int, message: str) -> Reply:
    return code, {"Content-Type": "text/plain"}, message.encode()


def _common(rec: Recorded, path: str) -> Reply | None:
    if rec.path != path:
        return _refuse(404, f"404 page not found: {rec.path}")
    if rec.headers.get("content-type") != "application/x-protobuf":
        return _refuse(415, f"unsupported content type {rec.headers.get('content-type')!r}")
    return None


def _temporality_problem(req: ms.ExportMetricsServiceRequest, want: int) -> str | None:
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind == "sum" and m.sum.is_monotonic and m.sum.aggregation_temporality != want:
                    return f"metric {m.name}: invalid temporality and type combination"
                if kind == "histogram" and m.histogram.aggregation_temporality != want:
                    return f"metric {m.name}: invalid temporality and type combination"
    return None


def _has_summary(req: ms.ExportMetricsServiceRequest) -> bool:
    return any(kind == "summary" for _, kind, _ in request_points(req))


class IntakeLog:
    """What an intake refused, for assertions (an empty list means the real one would accept it all)."""

    def __init__(self) -> None:
        self.refusals: list[str] = []

    def refuse(self, code: int, message: str) -> Reply:
        self.refusals.append(f"{code} {message}")
        return _refuse(code, message)


def datadog_intake(api_key: str, log: IntakeLog) -> HttpReceiver:
    def check(rec: Recorded) -> Reply | None:
        if (bad := _common(rec, "/v1/metrics")) is not None:
            return log.refuse(bad[0], bad[2].decode())
        if rec.headers.get("dd-api-key") != api_key:
            return log.refuse(403, "Forbidden: invalid API key")
        if len(rec.body) > 500_000:
            return log.refuse(413, f"payload of {len(rec.body)} bytes exceeds 500 KB uncompressed")
        if (problem := _temporality_problem(rec.message, DELTA)) is not None:
            return log.refuse(400, f"{problem} (cumulative is not supported)")
        if _has_summary(rec.message):
            return log.refuse(400, "summaries are not supported")
        return None
    return HttpReceiver(check)


def grafana_intake(instance_id: str, token: str, log: IntakeLog) -> HttpReceiver:
    expected = "Basic " + base64.b64encode(f"{instance_id}:{token}".encode()).decode()

    def check(rec: Recorded) -> Reply | None:
        if (bad := _common(rec, "/otlp/v1/metrics")) is not None:
            return log.refuse(bad[0], bad[2].decode())
        if rec.headers.get("authorization") != expected:
            return log.refuse(401, "authentication error: invalid authentication credentials")
        if rec.headers.get("content-encoding") != "gzip":
            return log.refuse(400, "expected gzip (the preset should compress)")
        if (problem := _temporality_problem(rec.message, CUMULATIVE)) is not None:
            return log.refuse(400, problem)
        return None
    return HttpReceiver(check)


def newrelic_intake(api_key: str, log: IntakeLog) -> HttpReceiver:
    def check(rec: Recorded) -> Reply | None:
        if (bad := _common(rec, "/v1/metrics")) is not None:
            return log.refuse(bad[0], bad[2].decode())
        if rec.headers.get("api-key") != api_key:
            return log.refuse(403, "Forbidden")
        if len(rec.body) > 1_000_000:
            return log.refuse(413, "request larger than 1 MB")
        if (problem := _temporality_problem(rec.message, DELTA)) is not None:
            return log.refuse(400, f"{problem} (the preset should send delta)")
        if _has_summary(rec.message):
            return log.refuse(400, "summaries are not properly supported")
        for _, _, p in request_points(rec.message):
            if len(p.attributes) > 100:
                return log.refuse(400, f"a point has {len(p.attributes)} attributes (limit 100)")
        return None
    return HttpReceiver(check)


def honeycomb_intake(api_key: str, dataset: str, log: IntakeLog) -> HttpReceiver:
    def check(rec: Recorded) -> Reply | None:
        if (bad := _common(rec, "/v1/metrics")) is not None:
            return log.refuse(bad[0], bad[2].decode())
        if rec.headers.get("x-honeycomb-team") != api_key:
            return log.refuse(401, "unknown API key - check your credentials")
        if rec.headers.get("x-honeycomb-dataset") != dataset:
            return log.refuse(400, "missing x-honeycomb-dataset: data would land in unknown_metrics")
        return None
    return HttpReceiver(check)


__all__ = [
    "GrpcReceiver",
    "HttpReceiver",
    "IntakeLog",
    "Recorded",
    "TcpTap",
    "datadog_intake",
    "encode_one",
    "exporter_config",
    "grafana_intake",
    "honeycomb_intake",
    "make_batch",
    "newrelic_intake",
    "partial_success",
    "request_points",
    "status_body",
]
