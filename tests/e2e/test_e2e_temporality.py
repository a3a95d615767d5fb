"""Per-exporter temporality end to end (issue #5): one bridge, a delta and a cumulative exporter.

The real CLI (``promotel run``) scrapes a SambaNova simulator and a target whose values the test sets,
and exports every round to two OTLP receivers: one with ``temporality: delta``, one cumulative. The
proof reads only what arrived on the wire:

* per series, the delta points summed over time equal the growth of the cumulative stream, computed
  from VALUES as Prometheus' ``rate()`` does (sum of increases; after a decrease, the new value) —
  exactly, bucket by bucket for histograms, across a counter reset, a series that vanishes and
  returns, and a SIGKILL of the bridge between rounds followed by a restart on the same state_dir;
* no delta is negative and deltas are contiguous (each starts where the series' previous one ended),
  including the first delta after the restart, which covers the gap;
* the same through rotel, a real collector that may re-batch (points are identified by resource +
  metric + attributes + time).
"""

from __future__ import annotations

import itertools
import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from support.bridge import PROMOTEL, start_bridge, stop_bridge
from support.collector import Rotel
from support.sink import OTLPSink, attrs
from support.target import ExpositionServer

pytestmark = pytest.mark.e2e

DELTA, CUMULATIVE = 1, 2           # AggregationTemporality enum values in the OTLP proto


# ─── what the target serves, phase by phase ──────────────────────────────────────────────────

class Phase(NamedTuple):
    jobs: dict[str, int]                     # jobs_total{queue=...}; a missing queue is a vanished series
    hist: tuple[tuple[int, int, int], float]  # (cumulative buckets le=0.5, le=2, +Inf), sum


def exposition(phase: Phase) -> str:
    lines = ["# HELP jobs_total Jobs done.", "# TYPE jobs_total counter"]
    lines += [f'jobs_total{{queue="{q}"}} {v}' for q, v in sorted(phase.jobs.items())]
    (b1, b2, inf), total = phase.hist
    lines += ["# HELP wait_seconds Wait.", "# TYPE wait_seconds histogram",
              f'wait_seconds_bucket{{le="0.5"}} {b1}', f'wait_seconds_bucket{{le="2"}} {b2}',
              f'wait_seconds_bucket{{le="+Inf"}} {inf}', f"wait_seconds_sum {total}", f"wait_seconds_count {inf}"]
    return "\n".join(lines) + "\n"


# Integer counters and sums in halves: every float here and every difference is exact.
BEFORE_KILL = [
    Phase({"a": 10, "b": 5, "c": 7}, ((1, 3, 4), 3.5)),
    Phase({"a": 17, "b": 9, "c": 8}, ((2, 5, 7), 6.0)),
    Phase({"a": 3, "b": 12}, ((2, 6, 9), 8.5)),                 # a reset (17 → 3); c vanished
    Phase({"a": 8, "c": 13}, ((4, 8, 11), 10.0)),                # b vanished; c returns higher: continues 8 → 13
    Phase({"a": 9, "b": 2, "c": 15}, ((1, 1, 2), 1.5)),           # b returns restarted (2 < 12); histogram reset
]
AFTER_KILL = [
    Phase({"a": 14, "b": 6, "c": 20}, ((3, 4, 6), 5.0)),
    Phase({"a": 30, "b": 6, "c": 26}, ((5, 9, 12), 12.5)),
]


# ─── reading the sinks ───────────────────────────────────────────────────────────────────────

SeriesId = tuple[str, str, tuple[tuple[str, Any], ...]]     # (service.instance.id, metric, attributes)


class Pt(NamedTuple):
    start: int
    time: int
    values: tuple[float, ...]      # Sum: (value,); Histogram: (count, sum, *bucket counts)
    bounds: tuple[float, ...]
    stale: bool


def points(sink: OTLPSink, temporality: int) -> dict[SeriesId, list[Pt]]:
    """Monotonic Sum and Histogram points of one temporality, per series, sorted by time, deduplicated by time
    (a collector may deliver a request twice; the same series at the same time is the same point)."""
    out: dict[SeriesId, dict[int, Pt]] = {}
    for res, m in sink.metrics():
        kind = m.WhichOneof("data")
        if kind == "sum":
            if not m.sum.is_monotonic or m.sum.aggregation_temporality != temporality:
                continue
            for p in m.sum.data_points:
                key = (res.get("service.instance.id", ""), m.name, tuple(sorted(attrs(p.attributes).items())))
                value = p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)
                out.setdefault(key, {})[p.time_unix_nano] = Pt(p.start_time_unix_nano, p.time_unix_nano, (value,),
                                                              (), bool(p.flags & 1))
        elif kind == "histogram":
            if m.histogram.aggregation_temporality != temporality:
                continue
            for p in m.histogram.data_points:
                key = (res.get("service.instance.id", ""), m.name, tuple(sorted(attrs(p.attributes).items())))
                vals = (float(p.count), p.sum, *(float(c) for c in p.bucket_counts))
                out.setdefault(key, {})[p.time_unix_nano] = Pt(p.start_time_unix_nano, p.time_unix_nano, vals,
                                                              tuple(p.explicit_bounds), bool(p.flags & 1))
    return {k: [v[t] for t in sorted(v)] for k, v in out.items()}


def cumulative_growth(series: list[Pt]) -> tuple[float, ...] | None:
    """Growth from values, as ``rate()`` computes it: staleness markers skipped, each increase added, and
    after a decrease (any field; or changed bounds) the whole new value. None when fewer than one value."""
    live = [p for p in series if not p.stale]
    if not live:
        return None
    total = [0.0] * len(live[0].values)
    for prev, cur in itertools.pairwise(live):
        reset = cur.bounds != prev.bounds or any(c < q for c, q in zip(cur.values, prev.values))
        for i, c in enumerate(cur.values):
            total[i] += c if reset else c - prev.values[i]
    return tuple(total)


def delta_total(series: list[Pt]) -> tuple[float, ...]:
    live = [p for p in series if not p.stale]
    if not live:
        return ()
    return tuple(sum(p.values[i] for p in live) for i in range(len(live[0].values)))


def check_streams(delta_sink: OTLPSink, cumulative_sink: OTLPSink, instances: set[str]) -> dict[str, Any]:
    """The core assertions; returns figures for the caller to check that the run exercised something."""
    deltas = points(delta_sink, DELTA)
    cumulative = points(cumulative_sink, CUMULATIVE)
    # Neither sink got the other temporality.
    assert not points(delta_sink, CUMULATIVE), sorted(points(delta_sink, CUMULATIVE))[:5]
    assert not points(cumulative_sink, DELTA), sorted(points(cumulative_sink, DELTA))[:5]
    mismatches = []
    compared = 0
    nonzero = 0
    for key, cum in cumulative.items():
        if key[0] not in instances:
            continue
        growth = cumulative_growth(cum)
        if growth is None:
            continue
        got = delta_total(deltas.get(key, []))
        if not got:
            got = tuple(0.0 for _ in growth)
        compared += 1
        nonzero += any(growth)
        if got != growth:
            mismatches.append((key, growth, got))
    assert not mismatches, "delta sums differ from the cumulative growth:\n" + "\n".join(
        f"  {k}: cumulative grew {g}, deltas add up to {d}\n    cumulative (start, time, values): "
        f"{[(p.start, p.time, p.values) for p in cumulative[k]]}\n    deltas: "
        f"{[(p.start, p.time, p.values) for p in deltas.get(k, [])]}" for k, g, d in mismatches[:3])
    # Every delta series also exists in the cumulative stream (nothing invented).
    extra = [k for k in deltas if k[0] in instances and k not in cumulative]
    assert not extra, extra[:5]
    # No negative delta; each delta starts where the previous one of its series ended.
    gaps = []
    for key, series in deltas.items():
        if key[0] not in instances:
            continue
        for p in series:
            assert all(v >= 0 for v in p.values), (key, p)
            assert p.start <= p.time, (key, p)
        live = [p for p in series if not p.stale]       # a staleness marker carries no value
        for prev, cur in itertools.pairwise(live):
            if cur.start != prev.time:
                gaps.append((key, prev, cur))
    assert not gaps, "deltas are not contiguous:\n" + "\n".join(f"  {k}: {p} then {c}" for k, p, c in gaps[:10])
    return {"compared": compared, "nonzero": nonzero, "delta_points": sum(len(v) for v in deltas.values())}


# ─── running the bridge ──────────────────────────────────────────────────────────────────────

def write_config(tmp_path: Path, sources: list[tuple[str, str, str]], delta_endpoint: str,
                 cumulative_endpoint: str) -> Path:
    src = "".join(f"  - name: {name}\n    url: \"{url}\"\n    mapping: {mapping}\n    interval: 1s\n    timeout: 0.8s\n"
                  for name, url, mapping in sources)
    text = (f"sources:\n{src}"
            "exporters:\n"
            f"  - name: delta\n    endpoint: \"{delta_endpoint}\"\n    temporality: delta\n"
            "    retry: {initial_interval: 0.1s, max_interval: 0.5s, max_elapsed: 20s}\n"
            f"  - name: cumulative\n    endpoint: \"{cumulative_endpoint}\"\n    temporality: cumulative\n"
            "    retry: {initial_interval: 0.1s, max_interval: 0.5s, max_elapsed: 20s}\n"
            f"state_dir: \"{tmp_path / 'state'}\"\n"
            "self_telemetry: {enabled: false}\n")
    path = tmp_path / "promotel.yaml"
    path.write_text(text)
    path.chmod(0o600)
    return path


class Bridge:
    """``promotel run -c CONFIG`` as a subprocess, its output in a log file (appended across restarts)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = start_bridge(self.config, self.log_path)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)       # no chance to flush or close anything
        self.proc.wait(timeout=10)

    def terminate(self) -> int:
        assert self.proc is not None
        return stop_bridge(self.proc)

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def latest_times(sink: OTLPSink, temporality: int, instance: str, metric: str) -> list[int]:
    return sorted({p.time for k, s in points(sink, temporality).items() if k[0] == instance and k[1] == metric
                   for p in s})


def cumulative_value(sink: OTLPSink, instance: str, queue: str) -> list[tuple[int, float]]:
    key = (instance, "jobs_total", (("queue", queue),))
    return [(p.time, p.values[0]) for p in points(sink, CUMULATIVE).get(key, []) if not p.stale]


def wait(predicate: Callable[[], bool], timeout: float, what: str, log: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    assert predicate(), f"timed out after {timeout} s waiting for {what}\n{log()[-3000:]}"


def settle(delta_sink: OTLPSink, cumulative_sink: OTLPSink, instance: str, metric: str,
           timeout: float = 10.0) -> None:
    """Wait until the collectors forwarded what the bridge handed them: a collector acknowledges a request
    before it exports it onwards, so the last round can reach one sink after the bridge exited. Done when both
    sinks have the same latest round of ``metric`` and took no request for 0.5 s (bounded; the comparison
    that follows says what differs if they never agree)."""
    deadline = time.monotonic() + timeout
    last_counts: tuple[int, int] | None = None
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        counts = (len(delta_sink.snapshot()), len(cumulative_sink.snapshot()))
        if counts != last_counts:
            last_counts, quiet_since = counts, time.monotonic()
        same = latest_times(delta_sink, DELTA, instance, metric)[-1:] == \
            latest_times(cumulative_sink, CUMULATIVE, instance, metric)[-1:]
        if same and time.monotonic() - quiet_since >= 0.5:
            return
        time.sleep(0.05)


def play(phases: list[Phase], target: ExpositionServer, delta_sink: OTLPSink, cumulative_sink: OTLPSink,
         instance: str, bridge: Bridge, scrapes: int = 1) -> None:
    """Serve each phase until both sinks received ``scrapes`` rounds of it (same scrape times at both)."""
    for phase in phases:
        target.body = exposition(phase)
        changed_ns = time.time_ns()

        def arrived(changed_ns: int = changed_ns) -> bool:
            cum = [t for t in latest_times(cumulative_sink, CUMULATIVE, instance, "wait_seconds") if t > changed_ns]
            dlt = set(latest_times(delta_sink, DELTA, instance, "wait_seconds"))
            # A scrape that started before the body changed may still see the old phase: skip the first one.
            # The delta sink has no point for a baseline round, so only the newest rounds must be there.
            return len(cum) >= scrapes + 1 and all(t in dlt for t in cum[-scrapes:])

        wait(arrived, 15, f"{scrapes} rounds of {phase} at both sinks", bridge.log)
        got = cumulative_value(cumulative_sink, instance, "a")
        assert got and got[-1][1] == phase.jobs["a"], (got[-3:], phase)


def committed_exports(db: Path) -> dict[str, int]:
    """Per target, the scrape time of the last round the delta exporter committed to its state database."""
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)
    try:
        rows = conn.execute("SELECT target, last_export_ns FROM delta_targets WHERE exporter = 'delta'").fetchall()
    except sqlite3.OperationalError:      # schema not created yet
        return {}
    finally:
        conn.close()
    # The target column is the target's key: its source name and the target's identity (delta.target_key).
    from promotel.export.delta import target_source

    return {target_source(str(t))[0]: int(ns) for t, ns in rows if ns is not None}


def kill_between_rounds(bridge: Bridge, delta_sink: OTLPSink, cumulative_sink: OTLPSink, db: Path,
                        keys: list[tuple[str, str, str]]) -> None:
    """SIGKILL between rounds: every target's latest round reached both sinks AND its delta state was committed
    (with the round's requests, before they are sent), and no target's next round (1 s interval)
    has started yet. Anything else would be a kill mid-round, which no design can make exactly-once."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        committed = committed_exports(db)
        now = time.time_ns()
        ok = True
        for instance, metric, source in keys:
            cum = latest_times(cumulative_sink, CUMULATIVE, instance, metric)
            dlt = latest_times(delta_sink, DELTA, instance, metric)
            if not cum or not dlt or cum[-1] != dlt[-1] or committed.get(source) != dlt[-1] \
                    or not 0.1e9 <= now - dlt[-1] <= 0.85e9:
                ok = False
                break
        if ok:
            bridge.kill()
            return
        time.sleep(0.02)
    raise AssertionError(f"found no moment between rounds to kill the bridge\n{bridge.log()[-3000:]}")


# ─── the tests ───────────────────────────────────────────────────────────────────────────────

@pytest.fixture()
def target() -> Iterator[ExpositionServer]:
    server = ExpositionServer(exposition(BEFORE_KILL[0])).start()
    yield server
    server.stop()


@pytest.fixture()
def sambanova() -> Iterator[Any]:
    from promotel.simulate import start_simulator

    # In process: the CLI's simulator has no refresh knob; 0.3 s makes every 1 s scrape see new traffic.
    sim = start_simulator("sambanova", seed=11, refresh_s=0.3)
    yield sim
    sim.close()


def run_scenario(tmp_path: Path, target: ExpositionServer, sambanova: Any, delta_sink: OTLPSink,
                 cumulative_sink: OTLPSink, delta_endpoint: str, cumulative_endpoint: str) -> dict[str, Any]:
    cfg = write_config(tmp_path, [("jobs", target.url, "passthrough"), ("sn", sambanova.url, "sambanova")],
                       delta_endpoint, cumulative_endpoint)
    instance = f"127.0.0.1:{target.port}"
    sn_instance = f"127.0.0.1:{sambanova.port}"
    bridge = Bridge(cfg, tmp_path / "promotel.log")
    bridge.start()
    try:
        play(BEFORE_KILL, target, delta_sink, cumulative_sink, instance, bridge)
        # The simulator's histogram is the marker of its rounds.
        sn_metric = "sambanova.router.request.duration"
        wait(lambda: len(latest_times(delta_sink, DELTA, sn_instance, sn_metric)) >= 2, 15,
             "simulator deltas", bridge.log)
        db = tmp_path / "state" / "exporter-delta.db"
        kill_between_rounds(bridge, delta_sink, cumulative_sink, db,
                            [(instance, "wait_seconds", "jobs"), (sn_instance, sn_metric, "sn")])
        killed_at = time.time_ns()
        time.sleep(1.5)            # the target and the simulator keep counting while the bridge is down
        bridge.start()
        play(AFTER_KILL, target, delta_sink, cumulative_sink, instance, bridge)
        wait(lambda: any(t > killed_at for t in latest_times(delta_sink, DELTA, sn_instance, sn_metric)), 15,
             "simulator deltas after the restart", bridge.log)
        assert bridge.terminate() == 0, bridge.log()[-3000:]
    finally:
        bridge.ensure_stopped()
    settle(delta_sink, cumulative_sink, sn_instance, sn_metric)
    figures = check_streams(delta_sink, cumulative_sink, {instance, sn_instance})
    figures["killed_at"] = killed_at
    figures["instance"] = instance
    figures["sn_instance"] = sn_instance
    return figures


def check_target_series(delta_sink: OTLPSink, cumulative_sink: OTLPSink, figures: dict[str, Any]) -> None:
    """The controlled target's numbers, computed by hand from the phases."""
    instance = figures["instance"]
    deltas = points(delta_sink, DELTA)

    def total(queue: str) -> float:
        return delta_total(deltas[(instance, "jobs_total", (("queue", queue),))])[0]

    # a: 10→17 (+7), reset to 3 (+3), →8 (+5), →9 (+1), →14 (+5), →30 (+16)
    assert total("a") == 37.0
    # b: 5→9 (+4), →12 (+3), vanished, returned restarted at 2 (+2), →6 (+4), →6 (+0)
    assert total("b") == 13.0
    # c: 7 → 26 without a reset, across its gap
    assert total("c") == 19.0
    hist = delta_total(deltas[(instance, "wait_seconds", ())])
    # count: 4→7→9→11, reset to 2, →6→12 = 7 + 2 + 4 + 6; sum 3.5→10 (+6.5), reset 1.5, →12.5 (+11)
    assert hist[:2] == (19.0, 19.0)
    # The first delta after the restart starts at the last delta before the kill: the gap is covered.
    killed_at = figures["killed_at"]
    for key, series in deltas.items():
        if key[0] != instance:
            continue
        live = [p for p in series if not p.stale]
        before = [p for p in live if p.time < killed_at]
        after = [p for p in live if p.time > killed_at]
        if before and after:
            assert after[0].start == before[-1].time, (key, before[-1], after[0])
    # Temporality enums on the wire.
    for res, m in delta_sink.metrics():
        if res.get("service.instance.id") == instance and m.name in ("jobs_total", "wait_seconds"):
            assert getattr(m, m.WhichOneof("data")).aggregation_temporality == DELTA
    for res, m in cumulative_sink.metrics():
        if res.get("service.instance.id") == instance and m.name in ("jobs_total", "wait_seconds"):
            assert getattr(m, m.WhichOneof("data")).aggregation_temporality == CUMULATIVE


def test_delta_sums_equal_cumulative_growth_across_reset_and_sigkill(
        tmp_path: Path, target: ExpositionServer, sambanova: Any) -> None:
    delta_sink = OTLPSink().start()
    cumulative_sink = OTLPSink().start()
    try:
        figures = run_scenario(tmp_path, target, sambanova, delta_sink, cumulative_sink,
                               f"http://127.0.0.1:{delta_sink.grpc_port}",
                               f"http://127.0.0.1:{cumulative_sink.grpc_port}")
        check_target_series(delta_sink, cumulative_sink, figures)
        assert figures["compared"] >= 10 and figures["nonzero"] >= 5, figures
    finally:
        delta_sink.stop()
        cumulative_sink.stop()


def test_same_pair_through_rotel(tmp_path: Path, target: ExpositionServer, sambanova: Any) -> None:
    delta_sink = OTLPSink().start()
    cumulative_sink = OTLPSink().start()
    rotel_delta = Rotel(delta_sink.grpc_port, tmp_path / "rotel-delta").start()
    rotel_cumulative = Rotel(cumulative_sink.grpc_port, tmp_path / "rotel-cumulative").start()
    try:
        figures = run_scenario(tmp_path, target, sambanova, delta_sink, cumulative_sink,
                               rotel_delta.grpc_endpoint, rotel_cumulative.grpc_endpoint)
        check_target_series(delta_sink, cumulative_sink, figures)
        assert figures["compared"] >= 10 and figures["nonzero"] >= 5, figures
    finally:
        rotel_delta.stop()
        rotel_cumulative.stop()
        delta_sink.stop()
        cumulative_sink.stop()


def test_map_delta_across_three_scrape_files_with_a_reset(tmp_path: Path) -> None:
    """``promotel map --temporality delta`` (the real CLI) over three files: baseline, growth, reset — and a
    series that is missing from the second file continues from its last value in the third."""
    from promotel.commands.map import MAP_EPOCH_NS, SCRAPE_STEP_NS

    files = []
    for i, phase in enumerate([Phase({"a": 10, "b": 5}, ((1, 3, 4), 3.5)),
                               Phase({"a": 15}, ((2, 5, 7), 6.0)),
                               Phase({"a": 4, "b": 9}, ((1, 1, 2), 1.5))], start=1):
        f = tmp_path / f"scrape{i}.prom"
        f.write_text(exposition(phase))
        files.append(str(f))
    proc = subprocess.run([*PROMOTEL, "map", "--mapping", "passthrough", "--temporality", "delta", *files],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    docs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(docs) == 3

    def metrics(doc: dict[str, Any]) -> dict[str, Any]:
        return {m["name"]: m for rm in doc.get("resourceMetrics", []) for sm in rm["scopeMetrics"]
                for m in sm["metrics"]}

    t = [MAP_EPOCH_NS + i * SCRAPE_STEP_NS for i in range(3)]
    first, second, third = (metrics(d) for d in docs)
    per_target = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"}
    for doc in (first, second, third):                # what run sends for every scrape: up and scrape_*, as gauges
        assert per_target <= set(doc) and all("gauge" in doc[name] for name in per_target)
    assert set(first) == per_target                   # baselines emit nothing (and passthrough adds nothing)

    def live(m: dict[str, Any]) -> dict[str, tuple[float, int, int]]:
        return {p["attributes"][0]["value"]["stringValue"]: (p["asDouble"], int(p["startTimeUnixNano"]),
                                                             int(p["timeUnixNano"]))
                for p in m["sum"]["dataPoints"] if not p.get("flags", 0) & 1}

    assert second["jobs_total"]["sum"]["aggregationTemporality"] == DELTA
    assert live(second["jobs_total"]) == {"a": (5.0, t[0], t[1])}
    # Third: a went down (reset: the new value); b was missing from the second file and continues (9 − 5).
    assert live(third["jobs_total"]) == {"a": (4.0, t[1], t[2]), "b": (4.0, t[0], t[2])}
    h2 = second["wait_seconds"]["histogram"]
    assert h2["aggregationTemporality"] == DELTA
    (p2,) = h2["dataPoints"]
    assert [int(c) for c in p2["bucketCounts"]] == [1, 1, 1] and int(p2["count"]) == 3 and p2["sum"] == 2.5
    (p3,) = third["wait_seconds"]["histogram"]["dataPoints"]            # reset: the whole new histogram
    assert [int(c) for c in p3["bucketCounts"]] == [1, 0, 1] and int(p3["count"]) == 2 and p3["sum"] == 1.5
    assert int(p3["startTimeUnixNano"]) == t[1]
