"""Parse speed and memory of promotel's exposition parser against prometheus_client, same input,
same process. Prints a Markdown table.

    python bench/bench_parse.py [--repeat N] [--deployments N] [--format prometheus|openmetrics|both]
                                [--strictness strict|scrape]

* first scrape: a fresh ``ExpositionParser`` (best of N);
* steady state: one parser fed successive scrapes of the same target (values changed; best of N);
* steady state with churn: the same, but in every scrape one deployment's series are gone and another
  deployment's appear again under a new id, after the original's (~1 % of the lines replaced, and
  the positions of most lines shifted), as a rollout does;
* steady state, shuffled (Prometheus text only): every scrape lists each family's series in a new random
  order (the format allows it; most exporters keep a stable order, some iterate hash maps);
* memory: ``tracemalloc`` of the list ``parse_exposition`` returns (the parser itself dropped),
  divided by the size of the text.

Every timed parse, promotel's and prometheus_client's alike, runs inside
``promotel.service.runtime.gc_paused()``: the parser leaves the GC alone and the service pauses it around
each round, so this measures what the service does, and the ratio compares like with like. A full
collection runs before each timed parse, outside the timing.

The machine may be shared: the 1-minute load average before and after each format goes to
stderr, so a noisy run can be told apart (compare ratios, which share the same conditions).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import re
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gen_baseten import scrapes
from promotel.exposition import ExpositionParser, Strictness, parse_exposition
from promotel.service.runtime import gc_paused

# The family rules' strictness of the timed parsers (--strictness): STRICT is the parsers' default,
# SCRAPE what the bridge's scrapes use.
STRICTNESS = Strictness.STRICT


def best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    out = float("inf")
    for _ in range(repeat):
        gc.collect()
        with gc_paused():
            t0 = time.perf_counter()
            fn()
            t = time.perf_counter() - t0
        out = min(out, t)
    return out


def churned(text: str, k: int) -> str:
    """``text`` with deployment k's lines dropped and deployment k+1's repeated under a new id."""
    ids = list(dict.fromkeys(re.findall(r'deployment_id="([^"]+)"', text)))
    gone, copied = ids[k % len(ids)], ids[(k + 1) % len(ids)]
    out: list[str] = []
    copies: list[str] = []           # a run of the copied deployment's lines, repeated after the run
    for line in text.split("\n"):
        if f'deployment_id="{gone}"' in line:
            continue
        if f'deployment_id="{copied}"' in line:
            copies.append(line.replace(copied, f"rollout{k:03d}"))
        elif copies:
            out += copies
            copies = []
        out.append(line)
    return "\n".join(out)


def shuffled(text: str, k: int) -> str:
    """``text`` with the sample lines of each family in a random order (seeded by ``k``)."""
    rng = random.Random(k)
    out: list[str] = []
    block: list[str] = []
    for line in text.split("\n"):
        if line.startswith("#") or not line:
            rng.shuffle(block)
            out += block
            block = []
            out.append(line)
        else:
            block.append(line)
    rng.shuffle(block)
    return "\n".join(out + block)


def steady(texts: list[str], ct: str) -> float:
    parser = ExpositionParser(strictness=STRICTNESS)
    with gc_paused():
        parser.parse(texts[0], ct)
    times = []
    for text in texts[1:]:
        gc.collect()
        with gc_paused():
            t0 = time.perf_counter()
            parser.parse(text, ct)
            times.append(time.perf_counter() - t0)
    return min(times)


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
    t_first = best(lambda: ExpositionParser(strictness=STRICTNESS).parse(first, ct), repeat)
    t_steady = steady(texts, ct)
    t_churn = steady([first] + [churned(t, k) for k, t in enumerate(texts[1:])], ct)
    t_shuffled = steady([shuffled(t, k) for k, t in enumerate(texts)], ct) if fmt == "prometheus" else None

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
        (f"| {fmt} | promotel, steady state, ~1 % of series replaced | {t_churn * 1000:.0f} ms | {n / t_churn:,.0f} "
         f"| {t_base / t_churn:.1f}× |"),
        *([(f"| {fmt} | promotel, steady state, series in a new order every scrape | {t_shuffled * 1000:.0f} ms "
            f"| {n / t_shuffled:,.0f} | {t_base / t_shuffled:.1f}× |")] if t_shuffled is not None else []),
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
    p.add_argument("--strictness", choices=[s.value for s in Strictness], default=Strictness.STRICT.value,
                   help="the family rules of the timed promotel parsers (default: strict)")
    args = p.parse_args()
    global STRICTNESS
    STRICTNESS = Strictness(args.strictness)
    fmts = ("prometheus", "openmetrics") if args.format == "both" else (args.format,)
    rows = ["| format | parser | time | samples/s | vs prometheus_client |", "|---|---|---|---|---|"]
    for fmt in fmts:
        rows += bench(fmt, args.repeat, args.deployments)
    print(f"Best of {args.repeat} (prometheus_client: {max(1, args.repeat // 2)}); every timed parse, both "
          "parsers', runs inside promotel.service.runtime.gc_paused(), as the service's rounds do; promotel "
          f"parses with Strictness.{STRICTNESS.name}.\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
