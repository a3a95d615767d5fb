"""Parse speed and memory of promotel's exposition parser against prometheus_client, same input,
same process. Prints a Markdown table.

    python bench/bench_parse.py [--repeat N] [--deployments N] [--format prometheus|openmetrics|both]

* first scrape: a fresh ``ExpositionParser`` (best of N);
* steady state: one parser fed successive scrapes of the same target (values changed; best of N);
* memory: ``tracemalloc`` of the list ``parse_exposition`` returns (the parser itself dropped),
  divided by the size of the text.

The machine may be shared: the 1-minute load average before and after each format goes to
stderr, so a noisy run can be told apart (compare ratios, which share the same conditions).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gen_baseten import scrapes

from promotel.exposition import ExpositionParser, parse_exposition


def best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    out = float("inf")
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t0)
    return out


def bench(fmt: str, repeat: int, deployments: int) -> list[str]:
    load_before = os.getloadavg()[0]
    texts = scrapes(seed=1, fmt=fmt, count=repeat + 1, deployments=deployments)
    first = texts[0]
    n = sum(1 for line in first.split("\n") if line and not line.startswith("#"))
    ct = "application/openmetrics-text; version=1.0.0" if fmt == "openmetrics" else "text/plain; version=0.0.4"
    if fmt == "openmetrics":
        from prometheus_client.openmetrics.parser import (
            text_string_to_metric_families as baseline,
        )
    else:
        from prometheus_client.parser import text_string_to_metric_families as baseline

    t_base = best(lambda: list(baseline(first)), max(1, repeat // 2))
    t_first = best(lambda: ExpositionParser().parse(first, ct), repeat)
    parser = ExpositionParser()
    parser.parse(first, ct)
    steady = []
    for text in texts[1:]:
        gc.collect()
        t0 = time.perf_counter()
        parser.parse(text, ct)
        steady.append(time.perf_counter() - t0)
    t_steady = min(steady)

    gc.collect()
    tracemalloc.start()
    result = parse_exposition(first, ct)
    gc.collect()
    held, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result
    mem_ratio = held / len(first.encode())
    rows = [
        f"| {fmt} | prometheus_client | {t_base * 1000:.0f} ms | {n / t_base:,.0f} | 1.0× |",
        f"| {fmt} | promotel, first scrape | {t_first * 1000:.0f} ms | {n / t_first:,.0f} | {t_base / t_first:.1f}× |",
        f"| {fmt} | promotel, steady state | {t_steady * 1000:.0f} ms | {n / t_steady:,.0f} | {t_base / t_steady:.1f}× |",
        f"| {fmt} | result memory / text size | {held / 2**20:.1f} MiB / {len(first) / 2**20:.1f} MiB | | {mem_ratio:.2f} |",
    ]
    print(f"{fmt}: {n} samples, {len(first)} bytes; load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after (of {os.cpu_count()} CPUs)", file=sys.stderr)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description="promotel parser benchmark")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--deployments", type=int, default=200)
    p.add_argument("--format", choices=("prometheus", "openmetrics", "both"), default="both")
    args = p.parse_args()
    fmts = ("prometheus", "openmetrics") if args.format == "both" else (args.format,)
    rows = ["| format | parser | time | samples/s | vs prometheus_client |", "|---|---|---|---|---|"]
    for fmt in fmts:
        rows += bench(fmt, args.repeat, args.deployments)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
