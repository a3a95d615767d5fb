"""``promotel demo``: both simulators, the bridge with the Baseten and SambaNova mappings, and a
built-in OTLP sink with a compact live view of what arrives — one command, nothing to configure.

The sink is a real OTLP/gRPC receiver on loopback: the view shows what crossed the wire, decoded
with the official protobuf classes, not what the bridge meant to send.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from promotel.errors import ConfigError, PromotelError

# Demo intervals: Baseten allows 6 requests/minute per organization, so 10 s is its floor.
BASETEN_INTERVAL = "10s"
SAMBANOVA_INTERVAL = "5s"
DEMO_API_KEY = "demo-key-not-secret"


class SinkView:
    """Latest state per (resource service.name, metric): unit, kind, series count, last value."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], tuple[str, str, int, str]] = {}
        self.requests = 0
        self.points = 0

    def record(self, request: Any) -> None:
        self.requests += 1
        for rm in request.resource_metrics:
            service = next((kv.value.string_value for kv in rm.resource.attributes if kv.key == "service.name"), "")
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data") or "?"
                    points = list(getattr(m, kind).data_points) if kind != "?" else []
                    self.points += len(points)
                    live = [p for p in points if not (p.flags & 1)]
                    self.rows[(service, m.name)] = (m.unit, _kind_label(m, kind), len(live), _last_value(kind, live))

    def render(self, out: TextIO, title: str) -> None:
        width = max((len(name) for _, name in self.rows), default=20)
        out.write(f"\n{title}  ({self.requests} OTLP requests, {self.points} points received)\n")
        out.write(f"{'service':<17} {'metric':<{width}} {'unit':<11} {'instrument':<14} {'series':>6}  last value\n")
        for (service, name), (unit, kind, series, value) in sorted(self.rows.items()):
            out.write(f"{service:<17} {name:<{width}} {unit:<11} {kind:<14} {series:>6}  {value}\n")
        out.flush()


def _kind_label(metric: Any, kind: str) -> str:
    if kind == "sum":
        return "counter" if metric.sum.is_monotonic else "updowncounter"
    return kind


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
        return f"{v:.3e}"
    return f"{v:.4g}"


def _last_value(kind: str, points: Iterable[Any]) -> str:
    pts = list(points)
    if not pts:
        return "-"
    p = pts[-1]
    if kind in ("sum", "gauge"):
        return _fmt(p.as_double if p.HasField("as_double") else float(p.as_int))
    if kind == "histogram":
        mean = p.sum / p.count if p.count else 0.0
        return f"count={p.count} mean={_fmt(mean)}"
    if kind == "summary":
        q = {round(v.quantile, 3): v.value for v in p.quantile_values}
        return f"count={p.count} p50={_fmt(q.get(0.5, float('nan')))}"
    return "?"


async def _start_sink(view: SinkView) -> tuple[Any, int]:
    import grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms
    from opentelemetry.proto.collector.metrics.v1 import (
        metrics_service_pb2_grpc as ms_grpc,
    )

    class Servicer(ms_grpc.MetricsServiceServicer):
        async def Export(self, request: Any, context: Any) -> Any:
            view.record(request)
            return ms.ExportMetricsServiceResponse()

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    ms_grpc.add_MetricsServiceServicer_to_server(Servicer(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def demo_config(baseten_url: str, sambanova_url: str, sink_port: int, otlp_endpoint: str | None,
                state_dir: str) -> str:
    extra = ""
    if otlp_endpoint:
        protocol = "http/protobuf" if otlp_endpoint.rstrip("/").endswith("/v1/metrics") else "grpc"
        extra = f"""
  - name: your-collector
    endpoint: "{otlp_endpoint}"
    protocol: {protocol}
"""
    return f"""
sources:
  - name: baseten-demo
    mapping: baseten
    url: "{baseten_url}"
    interval: {BASETEN_INTERVAL}
    auth: {{api_key: "{DEMO_API_KEY}"}}
  - name: sambanova-demo
    mapping: sambanova
    url: "{sambanova_url}"
    interval: {SAMBANOVA_INTERVAL}
    users: pseudonymize
    pseudonymize_key: demo-pseudonymization-key
exporters:
  - name: demo-sink
    endpoint: "http://127.0.0.1:{sink_port}"
    protocol: grpc
{extra}
state_dir: "{state_dir}"
self_telemetry: {{enabled: false}}
"""


async def run_demo(duration: float | None, otlp_endpoint: str | None, out: TextIO = sys.stdout) -> int:
    from promotel.config import load_config
    from promotel.service import Bridge
    from promotel.simulate import start_simulator

    baseten = start_simulator("baseten", api_key=DEMO_API_KEY, seed=1)
    sambanova = start_simulator("sambanova", seed=2)
    view = SinkView()
    sink, sink_port = await _start_sink(view)
    out.write(f"Simulated Baseten endpoint:   {baseten.url}\n"
              f"Simulated SambaNova endpoint: {sambanova.url}\n"
              f"Built-in OTLP sink:           grpc://127.0.0.1:{sink_port}\n")
    if otlp_endpoint:
        out.write(f"Also sending to:              {otlp_endpoint}\n")
    out.write("Press Ctrl-C to stop.\n")
    out.flush()
    stop = asyncio.Event()
    with tempfile.TemporaryDirectory(prefix="promotel-demo-") as tmp:
        path = os.path.join(tmp, "demo.yaml")
        # A few hundred bytes on a local temporary directory, before anything else runs: no need for a thread.
        Path(path).write_text(demo_config(baseten.url, sambanova.url, sink_port, otlp_endpoint, tmp),  # noqa: ASYNC240
                              encoding="utf-8")
        os.chmod(path, 0o600)
        try:
            bridge = Bridge(load_config(path))
        except PromotelError:   # e.g. an --otlp-endpoint that is not a URL: stop what runs, then report
            await sink.stop(None)
            baseten.close()
            sambanova.close()
            raise
        runner = asyncio.create_task(bridge.run(stop))
        started = time.monotonic()
        shown = 0
        try:
            while duration is None or time.monotonic() - started < duration:
                await asyncio.sleep(0.5 if duration is None else min(0.5, max(0.0, duration - (time.monotonic() - started))))
                if view.requests != shown:
                    shown = view.requests
                    view.render(out, time.strftime("%H:%M:%S"))
        except asyncio.CancelledError:
            pass
        finally:
            stop.set()
            await runner
            await bridge.flush(5.0)
            await bridge.aclose()
            await sink.stop(None)
            baseten.close()
            sambanova.close()
    view.render(out, "final")
    return 0 if view.requests else 1


def cli_demo(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run_demo(args.duration, args.otlp_endpoint))
    except KeyboardInterrupt:
        return 0
    except ConfigError as exc:
        print(f"promotel demo: invalid --otlp-endpoint:\n{exc}", file=sys.stderr)
        return 2
    except PromotelError as exc:
        print(f"promotel demo: {exc}", file=sys.stderr)
        return 1
