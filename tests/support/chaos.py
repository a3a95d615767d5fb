"""Loopback pieces for the reliability tests (tests/e2e/test_chaos.py, test_disk_full.py).

* ``SequenceTarget`` — a scrape target whose every answered GET carries the next sequence number (a gauge
  ``chaos_sequence`` and a counter ``chaos_scrapes_total``, both equal to it); it records when each answer
  was completely written.
* ``FlakyHttpCollector`` / ``FlakyGrpcCollector`` — OTLP receivers that go down and up on the same port and,
  at random (seeded), answer what a real collector or intake answers under stress and rotel cannot be made
  to: HTTP 503 and 429 with Retry-After, gRPC UNAVAILABLE and RESOURCE_EXHAUSTED with RetryInfo, connections
  reset before the request was read, and — the case that makes at-least-once visible — requests recorded
  and then answered with a reset or an error, so the sender must send them again.
* ``sequences`` — the sequence numbers (and delta points) a list of received requests carries.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

import grpc
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as ms_grpc

from support.loopback_http import LoopbackHttpServer, QuietHandler


class SequenceTarget(LoopbackHttpServer):
    """Answers every GET with the next sequence number; ``served`` holds ``(number, monotonic time the
    answer was completely written)``. A GET whose answer could not be written does not use a number.

    ``exposition`` renders the answer for a number (default: ``body`` with the ``filler`` given to ``start``)."""

    def __init__(self, exposition: Callable[[int], bytes] | None = None) -> None:
        self.served: list[tuple[int, float]] = []
        self.lock = threading.Lock()
        self.exposition = exposition

    @property
    def url(self) -> str:
        return f"http://{self.instance}/metrics"

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def last(self) -> int:
        """The last number answered (0 before the first)."""
        with self.lock:
            return self.served[-1][0] if self.served else 0

    @staticmethod
    def body(n: int, filler: int = 0) -> bytes:
        lines = ["# TYPE chaos_scrapes_total counter", f"chaos_scrapes_total {n}",
                 "# TYPE chaos_sequence gauge", f"chaos_sequence {n}"]
        if filler:
            lines.append("# TYPE chaos_filler gauge")
            lines += [f'chaos_filler{{i="{i}",pad="{"x" * 40}"}} {n}' for i in range(filler)]
        return ("\n".join(lines) + "\n").encode()

    def start(self, filler: int = 0) -> SequenceTarget:
        target = self
        exposition = self.exposition or (lambda n: self.body(n, filler))

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # http.server's naming
                with target.lock:
                    n = (target.served[-1][0] if target.served else 0) + 1
                    data = exposition(n)
                    try:
                        self.send_response(200)
                        self.send_header("Content-Type", "text/plain; version=0.0.4")
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        self.wfile.flush()
                    except OSError:
                        return              # the client went away: this number was not answered
                    target.served.append((n, time.monotonic()))

        self.serve(Handler)
        return self


class Faults(NamedTuple):
    """Probabilities of each misbehaviour per request (the rest is answered normally)."""

    unavailable: float = 0.12          # HTTP 503 / gRPC UNAVAILABLE, not recorded
    throttled: float = 0.08            # HTTP 429 + Retry-After / gRPC RESOURCE_EXHAUSTED + RetryInfo, not recorded
    reset: float = 0.05                # connection reset before the request is read / UNAVAILABLE
    lost_answer: float = 0.04          # recorded, then reset / UNAVAILABLE: the sender must send it again


SOME_FAULTS = Faults()


class _Collector:
    def __init__(self, faults: Faults, seed: int) -> None:
        self.faults = faults
        self.rng = random.Random(seed)
        self.requests: list[ms.ExportMetricsServiceRequest] = []
        self.lost_answers = 0           # requests recorded whose answer the sender never got
        self.downs = 0
        self.lock = threading.Lock()
        self.port = 0

    def _pick(self) -> str:
        with self.lock:
            x = self.rng.random()
        f = self.faults
        for name, p in (("unavailable", f.unavailable), ("throttled", f.throttled), ("reset", f.reset),
                        ("lost_answer", f.lost_answer)):
            if x < p:
                return name
            x -= p
        return "ok"

    def _record(self, request: ms.ExportMetricsServiceRequest, lost: bool = False) -> None:
        with self.lock:
            self.requests.append(request)
            if lost:
                self.lost_answers += 1

    def snapshot(self) -> list[ms.ExportMetricsServiceRequest]:
        with self.lock:
            return list(self.requests)


class FlakyHttpCollector(_Collector):
    """OTLP/HTTP on 127.0.0.1; ``stop`` closes the listener and every open connection (really down)."""

    def __init__(self, faults: Faults = SOME_FAULTS, seed: int = 0) -> None:
        super().__init__(faults, seed)
        self._server: ThreadingHTTPServer | None = None
        self._conns: set[socket.socket] = set()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/metrics"

    def start(self) -> FlakyHttpCollector:
        coll = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with coll.lock:
                    coll._conns.add(self.connection)

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    with coll.lock:
                        coll._conns.discard(self.connection)

            def _reset(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True

            def _answer(self, code: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # http.server's naming
                action = coll._pick()
                if action == "reset":
                    self._reset()
                    return
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    import gzip

                    raw = gzip.decompress(raw)
                if action == "unavailable":
                    self._answer(503, {"Content-Type": "text/plain"}, b"busy")
                elif action == "throttled":
                    self._answer(429, {"Retry-After": "0", "Content-Type": "text/plain"}, b"slow down")
                else:
                    coll._record(ms.ExportMetricsServiceRequest.FromString(raw), lost=action == "lost_answer")
                    if action == "lost_answer":
                        self._reset()
                        return
                    self._answer(200, {"Content-Type": "application/x-protobuf"},
                                 ms.ExportMetricsServiceResponse().SerializeToString())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass             # resets and clients killed mid-request are the point of this server

        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        with self.lock:
            conns = list(self._conns)
            self.downs += 1
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class FlakyGrpcCollector(_Collector):
    """OTLP/gRPC on 127.0.0.1, stopped and started again on the same port."""

    def __init__(self, faults: Faults = SOME_FAULTS, seed: int = 0) -> None:
        super().__init__(faults, seed)
        self._server: grpc.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FlakyGrpcCollector:
        coll = self

        class Servicer(ms_grpc.MetricsServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:  # grpc's naming
                action = coll._pick()
                if action in ("unavailable", "reset"):
                    context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
                if action == "throttled":
                    info = error_details_pb2.RetryInfo()
                    info.retry_delay.FromNanoseconds(50_000_000)
                    st = status_pb2.Status(code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], message="throttled")
                    st.details.add().Pack(info)
                    context.set_trailing_metadata((("grpc-status-details-bin", st.SerializeToString()),))
                    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "throttled")
                coll._record(request, lost=action == "lost_answer")
                if action == "lost_answer":
                    context.abort(grpc.StatusCode.UNAVAILABLE, "answer lost")
                return ms.ExportMetricsServiceResponse()

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        ms_grpc.add_MetricsServiceServicer_to_server(Servicer(), server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.stop(grace=0.2).wait(timeout=5)
        self._server = None
        with self.lock:
            self.downs += 1


class Received(NamedTuple):
    sequence: list[int]                                  # every chaos_sequence gauge value, duplicates included
    deltas: list[tuple[int, int, float]]                 # (start, time, value) of delta chaos_scrapes_total points


def sequences(requests: Iterable[ms.ExportMetricsServiceRequest], instance: str) -> Received:
    seq: list[int] = []
    deltas: list[tuple[int, int, float]] = []
    for req in requests:
        for rm in req.resource_metrics:
            attrs = {kv.key: kv.value.string_value for kv in rm.resource.attributes}
            if attrs.get("service.instance.id") != instance:
                continue
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == "chaos_sequence":
                        seq += [int(p.as_double) for p in m.gauge.data_points if not p.flags & 1]
                    elif m.name == "chaos_scrapes_total" and m.sum.aggregation_temporality == 1:
                        deltas += [(p.start_time_unix_nano, p.time_unix_nano, p.as_double)
                                   for p in m.sum.data_points if not p.flags & 1]
    return Received(seq, deltas)
