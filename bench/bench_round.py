"""One full promotel round over loopback vs prometheus_client's parser alone, on the same ~150k-sample text.

Round = HTTP GET (httpx, 127.0.0.1) → parse (promotel.exposition) → map (``--mapping``: the
passthrough assemble, or a mapping plugin such as ``baseten`` bound to a default source) →
convert (series store) → encode (OTLP protobuf, split at 4 MiB). Measured in one process, median of
``--repeat`` steady-state rounds (the first scrape warms the caches and the series store, as a running
bridge is warm); each stage's median is printed. Also reports the series store's memory per series
(tracemalloc) and the RSS.

    .venv/bin/python bench/bench_round.py [--repeat 5] [--deployments 200] [--mapping baseten]
"""

from __future__ import annotations

import argparse
import http.server
import resource
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_baseten import generate

from promotel.mappings.assemble import passthrough_metrics
from promotel.series.store import SeriesStore
from promotel.export.encode import encode_requests
from promotel.exposition import ExpositionParser
from promotel.mappings import load_mapping
from promotel.model import Attributes, Metric, MetricFamily, TargetBatch

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def serve(bodies: list[bytes]) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A loopback server returning the next body on each GET (the last one repeats)."""
    state = {"i": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = bodies[min(state["i"], len(bodies) - 1)]
            state["i"] += 1
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/metrics"


MapFn = Callable[[Sequence[MetricFamily]], tuple[Sequence[Metric], Attributes]]


def mapper(name: str) -> MapFn:
    """The map stage: passthrough's assemble as the bridge runs it, or a plugin bound to a default source."""
    if name == "passthrough":
        return lambda families: (passthrough_metrics(families)[0], (("service.name", "bench"),))
    source = SimpleNamespace(name="bench", overrides={}, users="keep", pseudonymize_key=None,
                             unmapped="keep", service_name=None)
    bound = load_mapping(name).bind(source)

    def run(families: Sequence[MetricFamily]) -> tuple[Sequence[Metric], Attributes]:
        result = bound.map(families)
        return result.metrics, result.resource

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--deployments", type=int, default=200)
    ap.add_argument("--mapping", default="passthrough",
                    help="mapping plugin for the map stage (passthrough, baseten, sambanova)")
    ap.add_argument("--gc", choices=("service", "default"), default="service",
                    help="the bridge's GC policy (promotel.service.tune_gc, as `promotel run` applies it) or "
                         "CPython's defaults; the reference parser runs under the same policy")
    args = ap.parse_args()
    map_stage = mapper(args.mapping)
    if args.gc == "service":
        from promotel.service import tune_gc

        tune_gc()

    texts = [generate(seed=1, scrape=k, deployments=args.deployments) for k in range(args.repeat + 1)]
    bodies = [t.encode() for t in texts]
    server, url = serve(bodies)
    parser = ExpositionParser()
    store = SeriesStore("bench", max_series=1_000_000)
    stages: dict[str, list[float]] = {k: [] for k in ("get", "parse", "map", "convert", "encode", "round")}
    samples = points = 0
    with httpx.Client(timeout=30.0) as client:
        for k in range(args.repeat + 1):
            t0 = time.perf_counter()
            resp = client.get(url)
            resp.raise_for_status()
            t1 = time.perf_counter()
            families = parser.parse(resp.content, resp.headers.get("content-type"))
            t2 = time.perf_counter()
            metrics, res_attrs = map_stage(families)
            t3 = time.perf_counter()
            converted = store.convert(metrics, time.time_ns())
            t4 = time.perf_counter()
            batch = TargetBatch("bench", res_attrs, converted.metrics, time.time_ns())
            encoded = encode_requests(batch)
            t5 = time.perf_counter()
            if k == 0:
                samples = sum(len(f.samples) for f in families)
                points = encoded.points
                continue        # warm-up round
            for name, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0)):
                stages[name].append(dt)
    server.shutdown()

    ref = []
    for text in texts[1:]:
        t0 = time.perf_counter()
        for _family in text_string_to_metric_families(text):
            pass
        ref.append(time.perf_counter() - t0)

    # The series store's own memory per series, measured on a fresh store.
    metrics, _ = map_stage(parser.parse(bodies[0], CONTENT_TYPE))
    tracemalloc.start()
    fresh = SeriesStore("mem", max_series=1_000_000)
    before = tracemalloc.get_traced_memory()[0]
    fresh.convert(metrics, time.time_ns())
    per_series = (tracemalloc.get_traced_memory()[0] - before) / max(1, len(fresh))
    tracemalloc.stop()

    med = {k: statistics.median(v) for k, v in stages.items()}
    ref_med = statistics.median(ref)
    print(f"exposition: {samples} samples, {len(bodies[0]) / 1e6:.1f} MB, {points} OTLP points, {len(fresh)} series")
    print(f"map stage: {args.mapping}")
    for name in ("get", "parse", "map", "convert", "encode"):
        print(f"  {name:<9} {med[name] * 1000:8.1f} ms   (min {min(stages[name]) * 1000:.1f})")
    print(f"  {'round':<9} {med['round'] * 1000:8.1f} ms   (median of {args.repeat})")
    print(f"prometheus_client text_string_to_metric_families alone: {ref_med * 1000:.1f} ms")
    print(f"ratio: promotel full round is {ref_med / med['round']:.1f}x faster than prometheus_client's parse")
    print(f"series store: {per_series:.0f} bytes per series; process max RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
