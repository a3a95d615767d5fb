"""A real OTLP receiver (gRPC and HTTP) that records every ExportMetricsServiceRequest it gets.

It stands at the far end of the end-to-end tests: promotel → rotel (a real collector) → this sink.
Only what actually crossed the wire is recorded, decoded with the official protobuf classes.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as ms_grpc


class OTLPSink:
    """Records requests; ``status`` lets a test make it answer with an error (HTTP code or gRPC code)."""

    def __init__(self) -> None:
        self.requests: list[ms.ExportMetricsServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.grpc_port = 0
        self.http_port = 0
        self._grpc_server: grpc.Server | None = None
        self._http_server: ThreadingHTTPServer | None = None
        self.fail_with: tuple[int, dict[str, str]] | None = None   # (http status, headers) to answer instead
        self.grpc_fail_with: grpc.StatusCode | None = None

    # ── lifecycle ──
    def start(self, port: int = 0, http_port: int = 0) -> OTLPSink:
        """Serve on the given loopback ports (0 = a free one); a stopped sink can come back on its old ports."""
        sink = self

        class Servicer(ms_grpc.MetricsServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                if sink.grpc_fail_with is not None:
                    context.abort(sink.grpc_fail_with, "sink told to fail")
                sink._record(request, {k: v for k, v in context.invocation_metadata()})
                return ms.ExportMetricsServiceResponse()

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                             options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        ms_grpc.add_MetricsServiceServicer_to_server(Servicer(), server)
        self.grpc_port = server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        self._grpc_server = server

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if sink.fail_with is not None:
                    code, hdrs = sink.fail_with
                    self.send_response(code)
                    for k, v in hdrs.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                sink._record(ms.ExportMetricsServiceRequest.FromString(body), dict(self.headers.items()))
                out = ms.ExportMetricsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        http_server = ThreadingHTTPServer(("127.0.0.1", http_port), Handler)
        http_server.daemon_threads = True
        self.http_port = http_server.server_address[1]
        threading.Thread(target=http_server.serve_forever, daemon=True).start()
        self._http_server = http_server
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop serving; with ``grace``, RPCs in progress get that many seconds to finish first."""
        if self._grpc_server is not None:
            stopped = self._grpc_server.stop(grace=grace)
            if grace is not None:
                stopped.wait(timeout=grace + 5)
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()

    def _record(self, request: ms.ExportMetricsServiceRequest, headers: dict[str, str]) -> None:
        with self.lock:
            self.requests.append(request)
            self.headers.append(headers)

    # ── queries ──
    def snapshot(self) -> list[ms.ExportMetricsServiceRequest]:
        with self.lock:
            return list(self.requests)

    def metrics(self) -> Iterator[tuple[dict[str, Any], Any]]:
        """Yield (resource attributes as a dict, Metric) for everything received so far."""
        for req in self.snapshot():
            for rm in req.resource_metrics:
                res = {kv.key: _any_value(kv.value) for kv in rm.resource.attributes}
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        yield res, m

    def wait_for(self, predicate: Callable[[OTLPSink], bool], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return predicate(self)

    def metric_names(self) -> set[str]:
        return {m.name for _, m in self.metrics()}


def _any_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in kvs}
