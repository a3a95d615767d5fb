"""Steady-state memory of the real bridge per tracked series.

Runs `promotel run` twice as a subprocess, each time scraping a loopback target every 2 s and exporting
to a loopback OTLP/HTTP endpoint that accepts everything:

  * baseline: a target with a handful of series;
  * loaded:   the Baseten-shaped generator exposition (~147k samples), a new scrape every round.

After ``--rounds`` rounds each, it reads VmRSS from /proc. (loaded − baseline) / series is what the
bridge holds per tracked series: parser caches, mapping caches, the series store, exporter state.
Both the Prometheus series count (one per sample line) and the OTLP series count (one per point) are
reported, and the peak (VmHWM: the high-water mark of a round, text and lines of two scrapes at once).

    .venv/bin/python bench/bench_rss.py [--rounds 8] [--deployments 200] [--mapping baseten]

With ``--mapping baseten`` the source uses the Baseten mapping plugin, whose minimum interval is 10 s
(Baseten's rate limit), so a round takes 10 s instead of 2 s.
"""

from __future__ import annotations

import argparse
import http.server
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms

from gen_baseten import BasetenTarget

OK_BODY = ms.ExportMetricsServiceResponse().SerializeToString()


class Server:
    """Loopback HTTP: GET /metrics serves ``render()``; POST /v1/metrics counts points and answers 200."""

    def __init__(self, render: object) -> None:
        self.render = render
        self.points = 0
        self.scrapes = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = outer.render().encode()  # type: ignore[operator]
                outer.scrapes += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers["Content-Length"]))
                req = ms.ExportMetricsServiceRequest.FromString(data)
                outer.points += sum(len(getattr(m, m.WhichOneof("data")).data_points)
                                    for rm in req.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(OK_BODY)))
                self.end_headers()
                self.wfile.write(OK_BODY)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


def status_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def run_bridge(render: object, rounds: int, workdir: Path, mapping: str) -> tuple[list[int], int, int, int]:
    server = Server(render)
    interval = 10 if mapping == "baseten" else 2
    cfg = workdir / "promotel.yaml"
    cfg.write_text(f"""
sources:
  - {{name: target, url: "http://127.0.0.1:{server.port}/metrics", interval: {interval}s, timeout: 1.9s,
     mapping: {mapping}}}
exporters:
  - {{name: sink, endpoint: "http://127.0.0.1:{server.port}/v1/metrics", protocol: http/protobuf}}
state_dir: "{workdir}"
self_telemetry: {{enabled: false}}
""")
    cfg.chmod(0o600)
    proc = subprocess.Popen([sys.executable, "-m", "promotel.cli", "run", "-c", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    curve: list[int] = []
    peak = 0
    try:
        deadline = time.monotonic() + rounds * interval + 60
        seen = 0
        while len(curve) < rounds and time.monotonic() < deadline:
            if server.scrapes > seen:
                seen = server.scrapes
                time.sleep(1.5)          # let the round finish (parse → export) before reading RSS
                curve.append(status_kib(proc.pid))
            time.sleep(0.05)
        peak = status_kib(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        server.close()
    return curve, server.scrapes, server.points, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--deployments", type=int, default=200)
    ap.add_argument("--mapping", default="passthrough", help="the source's mapping plugin")
    args = ap.parse_args()

    small = "# TYPE up_small gauge\n" + "".join(f'up_small{{i="{i}"}} 1\n' for i in range(10))
    target = BasetenTarget(seed=1, deployments=args.deployments)
    first = target.render("prometheus")
    samples = sum(1 for ln in first.splitlines() if ln and not ln.startswith("#"))

    def loaded() -> str:
        target.advance()
        return target.render("prometheus")

    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        base_curve, _, _, _ = run_bridge(lambda: small, min(args.rounds, 8), Path(a), "passthrough")
        curve, scrapes, points, peak = run_bridge(loaded, args.rounds, Path(b), args.mapping)
    otlp_series = points // max(1, scrapes)
    base = base_curve[-1]
    held = curve[-1] - base
    print(f"exposition: {samples} samples ({len(first) / 1e6:.1f} MB), ~{otlp_series} OTLP series per scrape; "
          f"mapping {args.mapping}")
    print(f"baseline bridge RSS (10 series): {base / 1024:.1f} MiB")
    print("loaded bridge RSS per round (MiB): " + ", ".join(f"{kb / 1024:.0f}" for kb in curve))
    print(f"held for the target: {held / 1024:.1f} MiB → {held * 1024 / samples:.0f} bytes per Prometheus series, "
          f"{held * 1024 / max(1, otlp_series):.0f} bytes per OTLP series")
    top = max(curve[len(curve) // 2:]) - base
    print(f"highest in the second half: {top / 1024:.1f} MiB → {top * 1024 / samples:.0f} bytes per Prometheus series")
    print(f"peak RSS of the process (VmHWM): {peak / 1024:.0f} MiB")
    growth = (curve[-1] - curve[len(curve) // 2]) / max(1, curve[len(curve) // 2]) * 100
    print(f"RSS change over the second half of the run: {growth:+.1f}%")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
