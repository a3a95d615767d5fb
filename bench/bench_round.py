"""One full promotel round over loopback vs prometheus_client's parser alone, on the same ~150k-sample text.

Round = HTTP GET (httpx, 127.0.0.1) → the service's own composition: ``TargetPipeline.process`` (parse,
map with ``--mapping``, convert) and ``.batch`` (resource, ``up``, ``scrape_*``), then an OTLP exporter's
``BatchPreparer.prepare`` (encode, split at 4 MiB) — the code ``promotel run`` runs, not a copy of it. With
``--gc service`` (default) the process policy of ``promotel.service.runtime`` applies, as in ``promotel run``:
``tune_gc`` at start and ``RoundMemory.round()`` around the CPU work. Measured in one process, median of
``--repeat`` steady-state rounds (the first scrape warms the caches and the series store, as a running
bridge is warm); the median of each part is printed. Also reports the series store's memory per series
(tracemalloc) and the RSS.

``--durable`` adds what a state_dir costs, in the same run: the write-ahead queue's ``persist`` (the round's
requests and, with ``--temporality delta``, the delta state after it, in ONE SQLite transaction committed with
``synchronous=FULL`` — ``ExporterStore.put``, as ``ExporterPipeline.submit`` calls it) and ``ack`` (deleting the
rows once the backend accepted them — ``ExporterStore.delete``), on a state database in a new directory under
the current one (the local disk; ``--state-dir`` to choose), reported in ms and as a share of the round.

    .venv/bin/python bench/bench_round.py [--repeat 5] [--deployments 200] [--mapping baseten]
    .venv/bin/python bench/bench_round.py --mapping baseten --durable [--temporality delta]

``--temporality delta --delta-own-file`` measures instead the delta state alone, in its own file, as 0.1 kept it
(``DeltaState.commit``, ``synchronous=NORMAL``; written in this version's format: the key text of new series and one
packed value row per target, where 0.1 wrote one row per series), to compare with.
"""

from __future__ import annotations

import argparse
import http.server
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_baseten import generate
from promotel.commands.map import MapSource, offline_exporter
from promotel.discovery.relabel import parse_relabel_configs
from promotel.export.delta import DeltaState
from promotel.export.prepare import BatchPreparer
from promotel.export.spool import ExporterStore
from promotel.pipeline import TargetPipeline
from promotel.series.store import SeriesStore
from promotel.service.runtime import RoundMemory, tune_gc

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--deployments", type=int, default=200)
    ap.add_argument("--mapping", default="passthrough",
                    help="mapping plugin for the map stage (passthrough, baseten, sambanova)")
    ap.add_argument("--gc", choices=("service", "default"), default="service",
                    help="the bridge's GC policy (promotel.service.tune_gc, as `promotel run` applies it) or "
                         "CPython's defaults; the reference parser runs under the same policy")
    ap.add_argument("--temporality", choices=("cumulative", "delta"), default="cumulative")
    ap.add_argument("--durable", action="store_true",
                    help="also persist each round's requests (and delta state) as a state_dir does, then ack them")
    ap.add_argument("--state-dir", help="where the state database goes with --durable (default: a new directory "
                                        "under the current one, removed afterwards)")
    ap.add_argument("--delta-own-file", action="store_true",
                    help="with --durable --temporality delta: persist only the delta state, in its own file, "
                         "as 0.1 kept it")
    ap.add_argument("--relabel", action="store_true",
                    help="a discovered target's case: a target label on every series and three "
                         "metric_relabel_configs (drop by name, labeldrop, replace) before mapping")
    args = ap.parse_args()
    memory: RoundMemory | None = None
    if args.gc == "service":
        tune_gc()
        memory = RoundMemory()

    texts = [generate(seed=1, scrape=k, deployments=args.deployments) for k in range(args.repeat + 1)]
    bodies = [t.encode() for t in texts]
    server, url = serve(bodies)
    relabel_rules = parse_relabel_configs([
        {"source_labels": ["__name__"], "regex": "bench_never_.*", "action": "drop"},
        {"regex": "tmp_.*", "action": "labeldrop"},
        {"source_labels": ["job", "instance"], "separator": "@", "target_label": "origin"},
    ]) if args.relabel else ()
    pipeline = TargetPipeline(MapSource(name="bench"), url=url, mapping=args.mapping, max_series=1_000_000,
                              target_labels={"env": "bench"} if args.relabel else None,
                              metric_relabel_configs=relabel_rules)
    exporter = offline_exporter(args.temporality)
    delta = DeltaState(exporter.name, None) if args.temporality == "delta" else None
    store: ExporterStore | None = None
    state_dir = None
    own_file = bool(args.durable and args.delta_own_file and delta is not None)
    if args.durable:
        state_dir = args.state_dir or tempfile.mkdtemp(prefix="promotel-bench-state-", dir=".")
        if own_file:
            delta = DeltaState(exporter.name, state_dir)
        else:
            store = ExporterStore(state_dir, exporter.name, max_bytes=exporter.spool.max_bytes)
            store.open()
            if delta is not None and store.db is not None:
                delta.attach(store.db, store.path)
    preparer = BatchPreparer(exporter, delta=delta)
    stages: dict[str, list[float]] = {k: [] for k in ("get", "process", "prepare", "round", "persist", "ack")}
    samples = points = 0
    first_process = 0.0
    with httpx.Client(timeout=30.0) as client:
        for k in range(args.repeat + 1):
            t0 = time.perf_counter()
            resp = client.get(url)
            resp.raise_for_status()
            t1 = time.perf_counter()
            now = time.time_ns()
            if memory is not None:
                with memory.round():
                    result = pipeline.process([resp.content], resp.headers.get("content-type"), now)
            else:
                result = pipeline.process([resp.content], resp.headers.get("content-type"), now)
            batch = pipeline.batch(result, t1 - t0, now)
            t2 = time.perf_counter()
            prepared = preparer.prepare(batch)
            t3 = time.perf_counter()
            if own_file:
                assert delta is not None
                delta.commit()
                if k:
                    stages["persist"].append(time.perf_counter() - t3)
                    stages["ack"].append(0.0)
            if store is not None:
                stored = store.put([(body, points, time.time()) for body, points in prepared.requests], delta=delta)
                t4 = time.perf_counter()
                store.delete([i for i in stored.ids if i is not None])
                t5 = time.perf_counter()
                if k:
                    stages["persist"].append(t4 - t3)
                    stages["ack"].append(t5 - t4)
            if k == 0:
                first_process = t2 - t1
                samples = result.samples
                points = sum(n for _, n in prepared.requests)
                continue        # warm-up round
            for name, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                stages[name].append(dt)
    server.shutdown()
    if store is not None:
        store.close()
    if own_file and delta is not None:
        delta.close()
    if state_dir is not None and not args.state_dir:
        shutil.rmtree(state_dir, ignore_errors=True)

    ref = []
    for text in texts[1:]:
        t0 = time.perf_counter()
        for _family in text_string_to_metric_families(text):
            pass
        ref.append(time.perf_counter() - t0)

    # The series store's own memory per series, measured on a fresh store.
    metrics = TargetPipeline(MapSource(name="mem"), url=None, mapping=args.mapping).mapper.map(
        pipeline.parser.parse(bodies[0], CONTENT_TYPE)).metrics
    tracemalloc.start()
    fresh = SeriesStore("mem", max_series=1_000_000)
    before = tracemalloc.get_traced_memory()[0]
    fresh.convert(metrics, time.time_ns())
    per_series = (tracemalloc.get_traced_memory()[0] - before) / max(1, len(fresh))
    tracemalloc.stop()

    med = {k: statistics.median(v) for k, v in stages.items() if v}
    ref_med = statistics.median(ref)
    print("process = parse + map + convert (TargetPipeline); prepare = encode (BatchPreparer)")
    print(f"exposition: {samples} samples, {len(bodies[0]) / 1e6:.1f} MB, {points} OTLP points, {len(fresh)} series")
    print(f"map stage: {args.mapping}" + (" (+ a target label and 3 metric_relabel_configs)" if args.relabel else ""))
    for name in ("get", "process", "prepare"):
        print(f"  {name:<9} {med[name] * 1000:8.1f} ms   (min {min(stages[name]) * 1000:.1f})")
    print(f"  {'round':<9} {med['round'] * 1000:8.1f} ms   (median of {args.repeat})")
    print(f"  first     {first_process * 1000:8.1f} ms   process of the first round (every series new)")
    if args.durable:
        size = sum(len(body) for body, _ in prepared.requests)
        what = "the delta state alone, own file" if own_file else args.temporality
        print(f"durability ({what}; {len(prepared.requests)} requests, {size / 1e6:.1f} MB per round, "
              "state database on the local disk):")
        for name in ("persist", "ack"):
            print(f"  {name:<9} {med[name] * 1000:8.1f} ms   (min {min(stages[name]) * 1000:.1f}, "
                  f"max {max(stages[name]) * 1000:.1f})")
        added = med["persist"] + med["ack"]
        print(f"  added     {added * 1000:8.1f} ms = {100 * added / med['round']:.1f} % of the round")
    print(f"prometheus_client text_string_to_metric_families alone: {ref_med * 1000:.1f} ms")
    print(f"ratio: promotel full round is {ref_med / med['round']:.1f}x faster than prometheus_client's parse")
    print(f"series store: {per_series:.0f} bytes per series; process max RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
