"""Churn benchmark: is the per-series state bounded when series come and go? (Not a test.)

    python bench/bench_churn.py                          # 1,000,000 series, 10 targets, 50 rounds
    python bench/bench_churn.py --series 100000 --rounds 10
    python bench/bench_churn.py --delta                  # also run DeltaState.to_delta (in memory)
    python bench/bench_churn.py --series 100000 --rounds 5 --trace   # where the state's memory goes

Every round, for each target: build the mapped ``Metric`` objects of all its live series (90 % counters,
10 % histograms with 8 buckets; 4 attributes each, like a mapped inference-server metric), of which 10 %
are new series replacing the oldest 10 % (churn); run ``SeriesStore.convert`` (and with ``--delta`` the
delta state), then drop the round's inputs and outputs.

Measuring the state, not the inputs: RSS is read from /proc/self/status after the round's input and
output objects are deleted and ``gc.collect()`` ran, so what remains is the state the stages keep (the
attribute tuples used as series keys included: a store must keep its keys) plus whatever the allocator
did not give back. The baseline is the RSS before any store exists, measured after building and freeing
one round of inputs, so the interpreter's warm-up and the allocator's pools for one round of inputs are
in the baseline too. bytes/series = (RSS − baseline) / live series.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from promotel.model import HistogramPoint, Kind, Metric, NumberPoint, TargetBatch
from promotel.series.store import SeriesStore

COUNTER_NAMES = [f"inference.server.metric{i}.count" for i in range(18)]
HISTOGRAM_NAMES = ["inference.server.request.duration", "inference.server.ttft"]
BOUNDS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
ROUTES = [f"/v1/{p}" for p in ("chat/completions", "completions", "embeddings", "models", "rerank")]
MODELS = [f"model-{i}" for i in range(40)]


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def build_metrics(ids: range, round_no: int) -> tuple[Metric, ...]:
    """The mapped metrics of the series ``ids`` (series id i: metric i % 20, attributes from i)."""
    counters: dict[str, list[NumberPoint]] = {n: [] for n in COUNTER_NAMES}
    hists: dict[str, list[HistogramPoint]] = {n: [] for n in HISTOGRAM_NAMES}
    for i in ids:
        # Fresh strings and tuples every round, as the parser and mapping produce them.
        attrs = (("http.response.status_code", 200 + (i % 3)), ("http.route", ROUTES[i % 5]),
                 ("model", MODELS[(i // 5) % 40]), ("series.id", f"s{i}"))
        slot = i % 20
        if slot < 18:
            counters[COUNTER_NAMES[slot]].append(NumberPoint(attrs, float(round_no * (i % 97 + 1))))
        else:
            n = float(round_no * 10)
            hists[HISTOGRAM_NAMES[slot - 18]].append(
                HistogramPoint(attrs, BOUNDS, (n, n, n, n, n, n, n, n, n), 9 * n, 0.5 * n))
    out = [Metric(name, "", "1", Kind.SUM, tuple(pts), monotonic=True, prom_type="counter")
           for name, pts in counters.items() if pts]
    out += [Metric(name, "", "s", Kind.HISTOGRAM, tuple(pts), prom_type="histogram")
            for name, pts in hists.items() if pts]
    return tuple(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=1_000_000, help="live series in all (default 1,000,000)")
    ap.add_argument("--targets", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--churn", type=float, default=0.10, help="share of series replaced every round")
    ap.add_argument("--delta", action="store_true", help="also run an in-memory DeltaState after convert")
    ap.add_argument("--trace", action="store_true", help="tracemalloc: the biggest holders of state at the end")
    args = ap.parse_args(argv)

    per_target = args.series // args.targets
    replaced = int(per_target * args.churn)
    live = per_target * args.targets

    # Baseline: one round of inputs built and freed before any state exists.
    warm = build_metrics(range(per_target), 0)
    del warm
    gc.collect()
    baseline = rss_bytes()
    if args.trace:
        tracemalloc.start(1)

    stores = [SeriesStore(f"t{t}", max_series=per_target * 2) for t in range(args.targets)]
    delta: Any = None
    if args.delta:
        from promotel.export.delta import DeltaState

        delta = DeltaState("bench", None)
    first = [0] * args.targets          # each target's lowest live series id
    curve: list[tuple[int, int, float, float]] = []     # (round, state bytes, build s, convert s)
    print(f"{live:,} live series ({args.targets} targets × {per_target:,}), {replaced:,} replaced per target "
          f"per round, {args.rounds} rounds{', with delta state' if delta else ''}; baseline RSS "
          f"{baseline / 2**20:.1f} MiB")
    print("| round | state MiB | bytes/series | build s | convert s |")
    print("|---:|---:|---:|---:|---:|")
    for rnd in range(1, args.rounds + 1):
        build_s = convert_s = 0.0
        now = time.time_ns()
        for t, store in enumerate(stores):
            t0 = time.perf_counter()
            metrics = build_metrics(range(first[t], first[t] + per_target), rnd)
            t1 = time.perf_counter()
            result = store.convert(metrics, now)
            if delta is not None:
                out = delta.to_delta(TargetBatch(store.target, (("service.name", store.target),), result.metrics, now))
                delta.commit()
                del out
            convert_s += time.perf_counter() - t1
            build_s += t1 - t0
            del metrics, result
            first[t] += replaced        # next round: the oldest `replaced` series vanish, as many new ones appear
        gc.collect()
        state = rss_bytes() - baseline
        curve.append((rnd, state, build_s, convert_s))
        if rnd % 5 == 0 or rnd == 1 or rnd == args.rounds:
            print(f"| {rnd} | {state / 2**20:.1f} | {state / live:.0f} | {build_s:.2f} | {convert_s:.2f} |",
                  flush=True)
    assert sum(len(s) for s in stores) == live, "every live series is in a store"

    tail = [s for _, s, _, _ in curve[-20:]] if len(curve) >= 20 else [s for _, s, _, _ in curve[len(curve) // 2:]]
    spread = (max(tail) - min(tail)) / max(tail)
    final = curve[-1][1]
    print()
    print(f"bytes per live series (final): {final / live:.0f}  (limit 1024)")
    print(f"last {len(tail)} rounds: RSS within {spread * 100:.1f}% → "
          f"{'stopped growing' if spread <= 0.02 else 'STILL GROWING'}")
    print(f"time per round (all targets): build {sum(c[2] for c in curve) / len(curve):.2f} s, "
          f"convert{'+delta' if delta else ''} {sum(c[3] for c in curve) / len(curve):.2f} s")
    if args.trace:
        snap = tracemalloc.take_snapshot()
        print("\nBiggest holders of memory still allocated (tracemalloc, by line):")
        for stat in snap.statistics("lineno")[:8]:
            print(f"  {stat.size / live:7.0f} B/series  {stat.size / 2**20:8.1f} MiB  {stat.traceback}")
    ok = final / live <= 1024 and spread <= 0.02
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
