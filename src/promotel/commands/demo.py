"""``promotel demo``: both simulators, the bridge with the Baseten and SambaNova mappings, and a
built-in OTLP sink with a live view of what arrives — one command, nothing to configure. On a terminal
the view is one table redrawn in place; elsewhere (CI, a pipe) the final table is printed at the end.

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
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from promotel.errors import ConfigError, PromotelError

# Demo intervals: Baseten allows 6 requests/minute per organization, so 10 s is its floor.
BASETEN_INTERVAL = "10s"
SAMBANOVA_INTERVAL = "5s"
DEMO_API_KEY = "demo-key-not-secret"


# What the value column shows, per instrument: each is well defined over all the series of a metric in one
# request (a counter's total is the sum of its series; a gauge has no meaningful sum, so its range is shown).
VALUE_LEGEND = ("value: counter/updowncounter = total over the series; gauge = min..max over the series; "
                "histogram/summary = observations (n) and their mean")


class Row(NamedTuple):
    unit: str
    instrument: str
    series: int
    value: str


class SinkView:
    """Latest state per (resource service.name, metric): unit, instrument, live series count and a value
    aggregated over those series (see ``VALUE_LEGEND``), from the last request that carried the metric."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Row] = {}
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
                    # Flag bit 1: "no recorded value" (a stale series); it has no value to aggregate.
                    live = [p for p in points if not (p.flags & 1)]
                    self.rows[(service, m.name)] = Row(m.unit, _kind_label(m, kind), len(live),
                                                       _aggregate(kind, live))

    def title(self, when: str) -> str:
        return f"{when}  ({self.requests} OTLP requests, {self.points} points received)"

    def render(self, out: TextIO, title: str) -> None:
        """The table as plain text, columns as wide as their widest cell (for logs and pipes)."""
        header = ("service", "metric", "unit", "instrument", "series", "value")
        cells = [(service, name, r.unit or "-", r.instrument, str(r.series), r.value)
                 for (service, name), r in sorted(self.rows.items())]
        widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(header)]

        def line(row: tuple[str, ...]) -> str:
            return "  ".join(c.rjust(w) if i == 4 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

        out.write(f"\n{self.title(title)}\n{VALUE_LEGEND}\n")
        out.write("\n".join(line(r) for r in [header, *cells]) + "\n")
        out.flush()

    def table(self, title: str) -> Any:
        """The table for the live view: fixed column widths, so a redraw never moves a column."""
        from rich.table import Table

        table = Table(title=self.title(title), caption=VALUE_LEGEND, title_justify="left", caption_justify="left")
        for header, width, least, justify in (("service", 15, 8, "left"), ("metric", 42, 20, "left"),
                                              ("unit", 13, 6, "left"), ("instrument", 13, 10, "left"),
                                              ("series", 6, 6, "right"), ("value", 30, 12, "left")):
            table.add_column(header, width=width, min_width=least, justify=justify,  # type: ignore[arg-type]
                             no_wrap=True, overflow="ellipsis")
        for (service, name), r in sorted(self.rows.items()):
            table.add_row(service, name, r.unit or "-", r.instrument, str(r.series), r.value)
        return table


def _kind_label(metric: Any, kind: str) -> str:
    if kind == "sum":
        return "counter" if metric.sum.is_monotonic else "updowncounter"
    if kind == "exponential_histogram":
        return "exp.histogram"
    return kind


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
        return f"{v:.3e}"
    return f"{v:.4g}"


def _number(p: Any) -> float:
    return float(p.as_double) if p.HasField("as_double") else float(p.as_int)


def _aggregate(kind: str, points: list[Any]) -> str:
    """The value column (``VALUE_LEGEND``) for the live points of one metric."""
    if not points:
        return "-"
    if kind == "sum":
        return f"total {_fmt(math.fsum(_number(p) for p in points))}"
    if kind == "gauge":
        values = [_number(p) for p in points]
        low, high = min(values), max(values)
        return _fmt(low) if low == high else f"{_fmt(low)}..{_fmt(high)}"
    if kind in ("histogram", "exponential_histogram", "summary"):
        count = sum(int(p.count) for p in points)
        total = math.fsum(float(p.sum) for p in points)
        return f"n={count} mean={_fmt(total / count)}" if count else "n=0"
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
        live = _live_view(out)
        started = time.monotonic()
        shown = 0
        try:
            while duration is None or time.monotonic() - started < duration:
                await asyncio.sleep(0.5 if duration is None else min(0.5, max(0.0, duration - (time.monotonic() - started))))
                if live is not None and view.requests != shown:
                    shown = view.requests
                    live.update(view.table(time.strftime("%H:%M:%S")), refresh=True)
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
            if live is not None:
                # The last frame stays on the terminal as the final table.
                live.update(view.table("final"), refresh=True)
                live.stop()
    if live is None:
        view.render(out, "final")
    return 0 if view.requests else 1


def _live_view(out: TextIO) -> Any:
    """A table redrawn in place on a terminal (``rich.live.Live``); None when ``out`` is not a terminal
    (CI, a pipe), where only the final table is printed."""
    if not out.isatty():
        return None
    from rich.console import Console
    from rich.live import Live

    live = Live(console=Console(file=out, highlight=False), auto_refresh=False, transient=False)
    live.start()
    return live


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
