"""temporality: cumulative → delta with persisted state, and summaries for delta backends."""

from __future__ import annotations

import inspect
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from promotel.errors import ConfigError, StateError
from promotel.export.delta import (
    SCHEMA,
    DeltaState,
    series_key,
    series_text,
    stored_series,
    summaries_for_delta,
    target_key,
    target_source,
)
from promotel.mappings.assemble import assemble
from promotel.model import (
    HistogramPoint,
    Kind,
    Metric,
    NumberPoint,
    SummaryPoint,
    TargetBatch,
    Temporality,
)
from support.families import fam

S = 1_000_000_000
A = (("k", "a"),)
B = (("k", "b"),)


def counter(*points: NumberPoint) -> Metric:
    return Metric("c", "", "1", Kind.SUM, tuple(points), monotonic=True, prom_type="counter")


def batch(t: int, *metrics: Metric, target: str = "t") -> TargetBatch:
    return TargetBatch(target, (), tuple(metrics), t)


def cp(attrs: tuple[tuple[str, str], ...], value: float, start: int, t: int, **kw: object) -> NumberPoint:
    return NumberPoint(attrs, value, start_ns=start, time_ns=t, **kw)  # type: ignore[arg-type]


def hp(count: float, counts: tuple[float, ...], sum_: float | None, start: int, t: int,
       bounds: tuple[float, ...] = (1.0,)) -> HistogramPoint:
    return HistogramPoint(A, bounds, counts, count, sum_, start_ns=start, time_ns=t)


def test_baseline_then_contiguous_deltas_and_reset() -> None:
    d = DeltaState("e", None)
    assert d.to_delta(batch(10 * S, counter(cp(A, 5, S, 10 * S)))).metrics == ()     # baseline
    (m,) = d.to_delta(batch(20 * S, counter(cp(A, 8, S, 20 * S)))).metrics
    assert m.temporality is Temporality.DELTA and m.monotonic
    (p,) = m.points
    assert (p.value, p.start_ns, p.time_ns) == (3.0, 10 * S, 20 * S)  # type: ignore[union-attr]
    (m,) = d.to_delta(batch(30 * S, counter(cp(A, 2, 30 * S, 30 * S)))).metrics      # reset: all of it
    assert (m.points[0].value, m.points[0].start_ns) == (2.0, 20 * S)  # type: ignore[union-attr]
    # start time changed while the value grew (restart between scrapes, created known): still a reset
    (m,) = d.to_delta(batch(40 * S, counter(cp(A, 9, 35 * S, 40 * S, created_ns=35 * S)))).metrics
    assert m.points[0].value == 9.0  # type: ignore[union-attr]


def test_new_series_after_previous_export_counts_whole_value() -> None:
    d = DeltaState("e", None)
    d.to_delta(batch(10 * S, counter(cp(A, 5, S, 10 * S))))
    out = d.to_delta(batch(20 * S, counter(cp(A, 6, S, 20 * S), cp(B, 4, 15 * S, 20 * S, created_ns=15 * S))))
    vals = {p.attributes: (p.value, p.start_ns) for p in out.metrics[0].points}  # type: ignore[union-attr]
    assert vals == {A: (1.0, 10 * S), B: (4.0, 15 * S)}
    # A series whose start is before the previous export is a baseline.
    out2 = d.to_delta(batch(30 * S, counter(cp(A, 6, S, 30 * S), cp((("k", "c"),), 4, 5 * S, 30 * S))))
    assert [p.attributes for p in out2.metrics[0].points] == [A]


def test_gauges_and_non_monotonic_untouched() -> None:
    d = DeltaState("e", None)
    g = Metric("g", "", "1", Kind.GAUGE, (cp(A, 5, 0, S),))
    u = Metric("u", "", "1", Kind.SUM, (cp(A, 5, S, S),), monotonic=False)
    s = Metric("s", "", "1", Kind.SUMMARY, (SummaryPoint(A, (), 1.0, 1.0, start_ns=S, time_ns=S),))
    assert d.to_delta(batch(S, g, u, s)).metrics == (g, u, s)


def test_histogram_bucket_by_bucket_and_bounds_change() -> None:
    d = DeltaState("e", None)
    d.to_delta(batch(10 * S, Metric("h", "", "s", Kind.HISTOGRAM, (hp(5, (2, 3), 10.0, S, 10 * S),))))
    (m,) = d.to_delta(batch(20 * S, Metric("h", "", "s", Kind.HISTOGRAM, (hp(9, (3, 6), 12.5, S, 20 * S),)))).metrics
    p = m.points[0]
    assert isinstance(p, HistogramPoint) and m.temporality is Temporality.DELTA
    assert (p.counts, p.count, p.sum, p.start_ns, p.time_ns) == ((1, 3), 4, 2.5, 10 * S, 20 * S)
    (m,) = d.to_delta(batch(30 * S, Metric("h", "", "s", Kind.HISTOGRAM,
                                           (hp(10, (4, 6), 13.0, S, 30 * S, bounds=(2.0,)),)))).metrics
    q = m.points[0]
    assert (q.counts, q.count, q.sum) == ((4, 6), 10, 13.0)           # bounds changed: reset  # type: ignore[union-attr]
    (m,) = d.to_delta(batch(40 * S, Metric("h", "", "s", Kind.HISTOGRAM,
                                           (hp(11, (3, 8), 14.0, S, 40 * S, bounds=(2.0,)),)))).metrics
    r = m.points[0]
    assert (r.counts, r.count) == ((3, 8), 11)                          # a bucket went down: reset  # type: ignore[union-attr]


def test_staleness_marker_passes_and_the_returning_series_continues() -> None:
    d = DeltaState("e", None)
    d.to_delta(batch(10 * S, counter(cp(A, 5, S, 10 * S))))
    (m,) = d.to_delta(batch(20 * S, counter(cp(A, 0, S, 20 * S, no_recorded_value=True)))).metrics
    assert m.points[0].no_recorded_value and m.temporality is Temporality.DELTA
    # Back after the gap (new first-seen start time from the converter): continues from 5, as rate() does.
    (m,) = d.to_delta(batch(30 * S, counter(cp(A, 9, 30 * S, 30 * S)))).metrics
    assert (m.points[0].value, m.points[0].start_ns) == (4.0, 10 * S)  # type: ignore[union-attr]
    (m,) = d.to_delta(batch(40 * S, counter(cp(A, 12, 30 * S, 40 * S)))).metrics
    assert m.points[0].value == 3.0  # type: ignore[union-attr]
    # Gone again and back lower: it restarted, the new value is the delta.
    d.to_delta(batch(50 * S, counter(cp(A, 0, 30 * S, 50 * S, no_recorded_value=True))))
    (m,) = d.to_delta(batch(60 * S, counter(cp(A, 2, 60 * S, 60 * S)))).metrics
    assert (m.points[0].value, m.points[0].start_ns) == (2.0, 40 * S)  # type: ignore[union-attr]


def test_first_sighting_without_created_is_a_baseline() -> None:
    d = DeltaState("e", None)
    d.to_delta(batch(10 * S, counter(cp(A, 5, S, 10 * S))))
    # B first seen at 20 s: the converter's start time (20 s) is after the previous export, but only
    # ``_created`` proves the series started since then.
    out = d.to_delta(batch(20 * S, counter(cp(A, 6, S, 20 * S), cp(B, 4, 20 * S, 20 * S))))
    assert [p.attributes for p in out.metrics[0].points] == [A]


def test_targets_are_separate_and_state_is_bounded(tmp_path: Path) -> None:
    d = DeltaState("e", str(tmp_path), expire_after_rounds=2)
    assert d.path == str(tmp_path / "delta-e.db")
    d.to_delta(batch(10 * S, counter(cp(A, 5, S, 10 * S), cp(B, 1, S, 10 * S))))
    assert d.to_delta(batch(10 * S, counter(cp(A, 50, S, 10 * S)), target="other")).metrics == ()
    for r in range(2, 5):
        d.to_delta(batch(r * 10 * S, counter(cp(A, 5 + r, S, r * 10 * S))))
    d.commit()
    d.close()
    d2 = DeltaState("e", str(tmp_path))
    assert set(d2._targets) == {"t", "other"}
    assert [k[-1] for k in d2._targets["t"].series] == [A]          # B expired after 2 rounds unseen
    d2.close()


def test_unusable_database_raises_state_error(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.db"
    bad.write_bytes(b"this is not a sqlite database" * 100)
    with pytest.raises(StateError, match=r"corrupt\.db"):
        DeltaState("e", str(bad))
    with pytest.raises(StateError, match="state directory"):
        DeltaState("e", str(tmp_path / "missing-dir" / "x.db"))


# ─── the state file's series keys ────────────────────────────────────────────────────────────

TYPED = (("a_str", "1"), ("b_int", 1), ("c_float", 1.0), ("d_bool", True), ("e_big", 2**70), ("f_neg0", -0.0),
         ("g_tiny", 5e-324), ("h_exp", 1e16), ("i_inf", math.inf), ("j_uni", "ü\u2603\ud800\"\\,]"), ("k_false", False),
         ("l_zero", 0))


def typed(attrs: Any) -> list[tuple[str, type, str]]:
    """Attributes with their exact types (``1 == 1.0 == True`` in Python, so plain equality is not enough)."""
    return [(k, type(v), repr(v)) for k, v in attrs]


def test_series_key_text_is_versioned_json_and_keeps_every_attribute_type() -> None:
    key = ("http_requests", Kind.SUM, "lib", "1.2", TYPED)
    text = series_text(key)
    assert text.isascii() and json.loads(text)[:5] == [1, "http_requests", "sum", "lib", "1.2"]
    back = series_key(text)
    assert back[:4] == key[:4] and typed(back[4]) == typed(TYPED)
    assert series_text(back) == text                                   # stable: the text is the row's key
    nan = series_key(series_text(("m", Kind.HISTOGRAM, "", "", (("x", math.nan),))))[4][0][1]
    assert isinstance(nan, float) and math.isnan(nan)
    # Values equal in Python but of different types are different series, with different texts.
    texts = {series_text(("m", Kind.SUM, "", "", (("v", v),))) for v in (1, 1.0, True, "1")}
    assert len(texts) == 4
    assert series_text(("m", Kind.SUM, "", "", (("v", 1.0),))) == '[1,"m","sum","","",[["v",1.0]]]'
    for bad in ('[2,"m","sum","","",[]]', '[1,"m","nope","","",[]]', '[1,"m","sum","","",[["v",[1]]]]',
                '[1,"m","sum","",""]', '{"a": 1}', "not json", '("m", "sum", "", "", (("v", x),))'):
        with pytest.raises(ValueError):
            series_key(bad)


def _write_01_row(path: Path, exporter: str, target: str, name: str, kind: Kind, scope_name: str, scope_version: str,
                  attrs: Any, start: int, time_ns: int, value: float, round_: int, last_export: int) -> None:
    """A row as 0.1 wrote it: the series column is ``repr((name, kind.value, scope_name, scope_version, attrs))``."""
    import sqlite3

    db = sqlite3.connect(path)
    with db:
        db.execute("INSERT INTO delta_series VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (exporter, target, repr((name, kind.value, scope_name, scope_version, attrs)), start, time_ns,
                    value, None, None, None, round_))
        db.execute("INSERT OR REPLACE INTO delta_targets VALUES (?, ?, ?, ?)", (exporter, target, last_export, round_))
    db.close()


def test_a_state_file_written_by_0_1_loads_the_same_and_is_converted(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    import sqlite3

    attrs: Any = tuple(kv for kv in TYPED if kv[0] != "i_inf")   # 0.1's repr of inf (``inf``) never read back
    native_dir, old_dir = tmp_path / "native", tmp_path / "old"
    native_dir.mkdir()
    old_dir.mkdir()
    # The same round, once through this version (written in format 1) ...
    native = DeltaState("e", str(native_dir))
    assert native.to_delta(batch(10 * S, counter(cp(attrs, 5.0, S, 10 * S)))).metrics == ()   # baseline
    native.commit()
    native.close()
    # ... and once as 0.1 wrote it.
    DeltaState("e", str(old_dir)).close()                        # the schema, unchanged since 0.1
    old_file = old_dir / "delta-e.db"
    _write_01_row(old_file, "e", "t", "c", Kind.SUM, "", "", attrs, S, 10 * S, 5.0, 1, 10 * S)

    with caplog.at_level("INFO", logger="promotel.export.delta"):
        old = DeltaState("e", str(old_dir))
    assert "from the 0.1 format" in caplog.text
    reloaded_native = DeltaState("e", str(native_dir))
    for state in (old, reloaded_native):
        ((key, prev),) = state._targets["t"].series.items()
        assert key[:4] == ("c", Kind.SUM, "", "") and typed(key[4]) == typed(attrs)
        assert (prev.start_ns, prev.time_ns, prev.value, prev.round, prev.restored) == (S, 10 * S, 5.0, 1, True)
        assert (state._targets["t"].last_export_ns, state._targets["t"].round) == (10 * S, 1)
    # The key row now holds the format-1 text, the very row this version writes for that series, and the
    # 0.1 row is gone (converted to the packed format).
    rows = sqlite3.connect(old_file).execute("SELECT series FROM delta_keys").fetchall()
    native_rows = sqlite3.connect(native_dir / "delta-e.db").execute("SELECT series FROM delta_keys").fetchall()
    assert rows == native_rows == [(series_text(("c", Kind.SUM, "", "", attrs)),)]
    assert sqlite3.connect(old_file).execute("SELECT * FROM delta_series").fetchall() == []
    assert [r[1:] for r in stored_series(sqlite3.connect(old_file), "e")] == \
        [r[1:] for r in stored_series(sqlite3.connect(native_dir / "delta-e.db"), "e")]
    # And it continues exactly: the next round is the increase since the 0.1 value, contiguous.
    for state in (old, reloaded_native):
        (m,) = state.to_delta(batch(20 * S, counter(cp(attrs, 8.0, S, 20 * S)))).metrics
        assert [(p.value, p.start_ns, p.time_ns) for p in m.points] == [(3.0, 10 * S, 20 * S)]  # type: ignore[union-attr]
        state.commit()
        state.close()
    caplog.clear()
    with caplog.at_level("INFO", logger="promotel.export.delta"):
        again = DeltaState("e", str(old_dir))                    # converted once: nothing left to convert
    assert "0.1 format" not in caplog.text
    assert [typed(k[4]) for k in again._targets["t"].series] == [typed(attrs)]
    again.close()


def test_an_unreadable_series_row_becomes_a_new_baseline(tmp_path: Path) -> None:
    import sqlite3

    DeltaState("e", str(tmp_path)).close()
    _write_01_row(tmp_path / "delta-e.db", "e", "t", "c", Kind.SUM, "", "", A, S, 10 * S, 5.0, 1, 10 * S)
    db = sqlite3.connect(tmp_path / "delta-e.db")
    with db:
        db.execute("INSERT INTO delta_series VALUES ('e', 't', 'garbage(', 1, 2, 3.0, NULL, NULL, NULL, 1)")
    db.close()
    d = DeltaState("e", str(tmp_path))
    assert [k[4] for k in d._targets["t"].series] == [A]
    d.close()


def test_summaries_for_delta_policies() -> None:
    s = Metric("rt", "Latency.", "s", Kind.SUMMARY, (
        SummaryPoint(A, ((0.5, 1.0), (0.99, 2.0)), 10.0, 12.0, start_ns=S, time_ns=2 * S),
        SummaryPoint(B, (), 0.0, 0.0, start_ns=S, time_ns=2 * S, no_recorded_value=True)), prom_type="summary")
    g = Metric("g", "", "1", Kind.GAUGE, (cp(A, 1, 0, S),))
    b = batch(2 * S, s, g)
    assert summaries_for_delta(b, "keep") is b
    assert summaries_for_delta(b, "drop").metrics == (g,)
    out = {m.name: m for m in summaries_for_delta(b, "convert").metrics}
    assert set(out) == {"rt.sum", "rt.count", "rt.quantile", "g"}
    assert out["rt.sum"].kind is Kind.SUM and out["rt.sum"].monotonic and out["rt.sum"].unit == "s"
    assert [(p.attributes, p.value, p.no_recorded_value) for p in out["rt.count"].points] == [  # type: ignore[union-attr]
        (A, 10.0, False), (B, 0.0, True)]
    assert [(p.attributes, p.value) for p in out["rt.quantile"].points] == [  # type: ignore[union-attr]
        ((("k", "a"), ("quantile", "0.5")), 1.0), ((("k", "a"), ("quantile", "0.99")), 2.0)]
    assert out["rt.quantile"].kind is Kind.GAUGE
    # The converted sums then go through delta like any counter.
    d = DeltaState("e", None)
    d.to_delta(summaries_for_delta(b, "convert"))
    later = s._replace(points=(SummaryPoint(A, (), 15.0, 20.0, start_ns=S, time_ns=3 * S),))
    got = {m.name: m.points[0].value for m in d.to_delta(summaries_for_delta(batch(3 * S, later), "convert")).metrics}  # type: ignore[union-attr]
    assert got == {"rt.sum": 8.0, "rt.count": 5.0}
    with pytest.raises(ConfigError, match="convert"):
        summaries_for_delta(b, "bogus")


# ─── restart: SIGKILL between rounds, the deltas add up exactly ──────────────────────────────

CHILD = textwrap.dedent("""
    import json, sys
    from promotel.series.store import SeriesStore
    from promotel.model import HistogramPoint, Kind, Metric, NumberPoint, TargetBatch
    from promotel.export.delta import DeltaState
    from schedule import values

    state, results = sys.argv[1], sys.argv[2]
    store = SeriesStore("t")
    delta = DeltaState("exp", state)
    for line in sys.stdin:
        r = int(line)
        v = values(r)
        pts = tuple(NumberPoint(((("s", name),)), val) for name, val in v["counters"].items())
        hcount, hcounts, hsum = v["hist"]
        metrics = [Metric("c", "", "1", Kind.SUM, pts, monotonic=True),
                   Metric("h", "", "s", Kind.HISTOGRAM, (HistogramPoint((), (1.0,), hcounts, hcount, hsum),))]
        conv = store.convert(metrics, r * 10_000_000_000)
        out = delta.to_delta(TargetBatch("t", (), conv.metrics, r * 10_000_000_000))
        got = {}
        for m in out.metrics:
            for p in m.points:
                if m.kind is Kind.SUM:
                    got[p.attributes[0][1]] = p.value
                else:
                    got["h.count"] = p.count
                    got["h.b0"], got["h.b1"] = p.counts
                    got["h.sum"] = p.sum
        with open(results, "a") as f:
            f.write(json.dumps({"round": r, "delta": got}) + "\\n")
        delta.commit()
        print("ok", r, flush=True)
""")

def values(r: int) -> dict[str, object]:
    counters = {"a": 10.0 * r if r < 5 else 3.0 * (r - 4)}      # resets at round 5
    if r >= 3:
        counters["b"] = 7.0 * (r - 2)                            # appears at round 3
    return {"counters": counters, "hist": (5.0 * r, (2.0 * r, 3.0 * r), 1.5 * r)}


SCHEDULE = inspect.getsource(values)


def _expected(rounds: int) -> dict[str, float]:
    total: dict[str, float] = {}
    for r in range(2, rounds + 1):
        cur: dict[str, Any] = values(r)
        prev: dict[str, Any] = values(r - 1)
        for name, v in cur["counters"].items():
            p = prev["counters"].get(name)
            # A first sighting without ``_created`` is a baseline (0); a decrease is a reset.
            total[name] = total.get(name, 0.0) + (0.0 if p is None else v if v < p else v - p)
        total["h.count"] = total.get("h.count", 0.0) + cur["hist"][0] - prev["hist"][0]
        total["h.b0"] = total.get("h.b0", 0.0) + cur["hist"][1][0] - prev["hist"][1][0]
        total["h.b1"] = total.get("h.b1", 0.0) + cur["hist"][1][1] - prev["hist"][1][1]
        total["h.sum"] = total.get("h.sum", 0.0) + cur["hist"][2] - prev["hist"][2]
    return total


def test_sigkill_between_rounds_neither_loses_nor_double_counts(tmp_path: Path) -> None:
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "schedule.py").write_text(SCHEDULE)
    results = tmp_path / "results.jsonl"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    rounds = 9
    kill_after = {2, 4, 5, 7}
    r = 1
    while r <= rounds:
        child = subprocess.Popen([sys.executable, str(tmp_path / "child.py"), str(tmp_path), str(results)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        try:
            assert child.stdin is not None and child.stdout is not None
            while r <= rounds:
                child.stdin.write(f"{r}\n")
                child.stdin.flush()
                assert child.stdout.readline().split() == ["ok", str(r)]
                r += 1
                if r - 1 in kill_after:
                    child.send_signal(signal.SIGKILL)           # no chance to close anything
                    break
        finally:
            if child.poll() is None and r > rounds:
                child.stdin.close()  # type: ignore[union-attr]
            child.wait(timeout=20)
    lines = [json.loads(x) for x in results.read_text().splitlines()]
    assert [x["round"] for x in lines] == list(range(1, rounds + 1))
    assert lines[0]["delta"] == {}                                # the baseline emits nothing
    total: dict[str, float] = {}
    for x in lines:
        for k, v in x["delta"].items():
            assert v >= 0
            total[k] = total.get(k, 0.0) + v
    assert total == pytest.approx(_expected(rounds))
    assert (tmp_path / "delta-exp.db").exists()


# ─── summaries for delta: quantiles at and outside the ends of [0, 1] ─────────────────────────

T0 = 1_700_000_000_000_000_000


def test_summary_quantile_outside_unit_interval_is_dropped_and_delta_conversion_survives() -> None:
    # OpenMetrics and OTLP both say a quantile lies in [0, 1]. Before the fix quantile="+Inf" was kept,
    # and summaries_for_delta (Datadog / New Relic presets) died with OverflowError in int(inf),
    # an exception the exporter's worker does not catch.
    f = fam("lat", "summary",
            ("lat", {"m": "a", "quantile": "0.5"}, 1.0), ("lat", {"m": "a", "quantile": "+Inf"}, 9.0),
            ("lat_count", {"m": "a"}, 3.0), ("lat_sum", {"m": "a"}, 4.0),
            ("lat", {"m": "b", "quantile": "1.5"}, 2.0),
            ("lat_count", {"m": "b"}, 1.0), ("lat_sum", {"m": "b"}, 2.0),
            ("lat", {"m": "c", "quantile": "0.9"}, 2.0),
            ("lat_count", {"m": "c"}, 1.0), ("lat_sum", {"m": "c"}, 2.0))
    a = assemble(f)
    assert a.kind is Kind.SUMMARY
    assert a.dropped == 2 and a.reasons == ("summary_bad_quantile",)
    points = [p for _, _, pts in a.groups for p in pts]
    assert [p.attributes for p in points] == [(("m", "c"),)]
    metric = Metric("lat", "", "s", Kind.SUMMARY, tuple(points), prom_type="summary")
    batch = TargetBatch("t", (), (metric,), T0)
    out = summaries_for_delta(batch, "convert")
    assert [m.name for m in out.metrics] == ["lat.sum", "lat.count", "lat.quantile"]
    assert out.metrics[2].points[0].attributes == (("m", "c"), ("quantile", "0.9"))


def test_summaries_for_delta_handles_quantile_one_and_zero() -> None:
    sp = SummaryPoint((), ((0.0, 1.0), (1.0, 5.0)), 2.0, 6.0, start_ns=T0, time_ns=T0 + S)
    batch = TargetBatch("t", (), (Metric("x", "", "s", Kind.SUMMARY, (sp,)),), T0 + S)
    out = summaries_for_delta(batch, "convert")
    q = out.metrics[2]
    assert [p.attributes for p in q.points] == [(("quantile", "0.0"),), (("quantile", "1.0"),)]


# ─── a NaN counter value ──────────────────────────────────────────────────────────────────────

def _counter_batch(value: float, t: int) -> TargetBatch:
    p = NumberPoint((("k", "v"),), value, start_ns=T0, time_ns=t)
    return TargetBatch("t", (), (Metric("c", "", "1", Kind.SUM, (p,), monotonic=True),), t)


def test_nan_counter_value_neither_breaks_the_state_file_nor_yields_nan_deltas(tmp_path: Path) -> None:
    # Before the fix the NaN became the previous value: SQLite stores NaN as NULL, so commit() failed
    # (NOT NULL) on every round while it was dirty, and the next delta was NaN.
    state = DeltaState("dd", str(tmp_path))
    assert state.to_delta(_counter_batch(5.0, T0 + S)).metrics == ()          # baseline
    state.commit()
    out = state.to_delta(_counter_batch(math.nan, T0 + 2 * S))
    assert out.metrics == ()
    state.commit()                                                             # raised StateError before
    out = state.to_delta(_counter_batch(8.0, T0 + 3 * S))
    state.commit()
    (m,) = out.metrics
    assert m.temporality is Temporality.DELTA
    (p,) = m.points
    assert p.value == 3.0 and p.start_ns == T0 + S and p.time_ns == T0 + 3 * S   # contiguous with the last real point
    state.close()
    # A restarted bridge continues from the persisted state.
    again = DeltaState("dd", str(tmp_path))
    (m2,) = again.to_delta(_counter_batch(10.0, T0 + 4 * S)).metrics
    assert m2.points[0].value == 2.0 and m2.points[0].start_ns == T0 + 3 * S
    again.close()


# ─── the target's identity ───────────────────────────────────────────────────────────────────

def host(name: str, port: int = 9100) -> tuple[tuple[str, Any], ...]:
    """A target's Resource as ``promotel.pipeline.target_resource`` builds it from the scrape URL."""
    return (("server.address", name), ("server.port", port), ("service.instance.id", f"{name}:{port}"),
            ("service.name", "jobs"), ("url.scheme", "http"))


def on(resource: tuple[tuple[str, Any], ...], t: int, value: float) -> TargetBatch:
    return TargetBatch("jobs", resource, (counter(cp(A, value, S, t)),), t)


def values_of(out: TargetBatch) -> list[float]:
    return [p.value for m in out.metrics for p in m.points]  # type: ignore[union-attr]


def test_a_source_whose_url_changes_starts_from_a_baseline_on_the_new_target(tmp_path: Path) -> None:
    d = DeltaState("e", str(tmp_path))
    assert values_of(d.to_delta(on(host("a"), 10 * S, 6.0))) == []              # baseline on host a
    assert values_of(d.to_delta(on(host("a"), 20 * S, 7.0))) == [1.0]
    # The source now scrapes another host (a SIGHUP changed its URL): its counter is 1000, not 7 + 993.
    assert values_of(d.to_delta(on(host("b"), 30 * S, 1000.0))) == []          # a baseline, not 993
    assert values_of(d.to_delta(on(host("b"), 40 * S, 1001.0))) == [1.0]
    # The port alone is a different target too.
    assert values_of(d.to_delta(on(host("b", 9200), 50 * S, 3.0))) == []
    d.commit()
    d.close()
    import sqlite3

    keys = {t for (t,) in sqlite3.connect(tmp_path / "delta-e.db").execute("SELECT target FROM delta_targets")}
    assert keys == {target_key("jobs", host("a")), target_key("jobs", host("b")), target_key("jobs", host("b", 9200))}
    assert json.loads(target_key("jobs", host("a"))) == [1, "jobs", [["server.address", "a"], ["server.port", 9100],
                                                                      ["service.instance.id", "a:9100"],
                                                                      ["url.scheme", "http"]]]
    assert target_source(target_key("jobs", host("a"))) == ("jobs", True)
    assert target_source("jobs") == ("jobs", False) and target_key("jobs", (("service.name", "x"),)) == "jobs"


def test_a_target_no_longer_scraped_is_forgotten_after_its_source_moved_on() -> None:
    d = DeltaState("e", None, expire_after_rounds=3)
    d.to_delta(on(host("a"), 10 * S, 6.0))
    for r in range(2, 6):
        d.to_delta(on(host("b"), r * 10 * S, float(r)))
        assert (target_key("jobs", host("a")) in d._targets) == (r <= 4)
    # Coming back after that is a new target: a baseline.
    assert values_of(d.to_delta(on(host("a"), 60 * S, 9.0))) == []


def test_a_0_1_row_keyed_by_the_source_alone_is_taken_over_by_its_first_target(tmp_path: Path) -> None:
    import sqlite3

    legacy = DeltaState("e", str(tmp_path))
    legacy.to_delta(on((), 10 * S, 6.0))                       # no identity: the key is the source's name
    legacy.commit()
    legacy.close()
    d = DeltaState("e", str(tmp_path))
    assert values_of(d.to_delta(on(host("a"), 20 * S, 9.0))) == [3.0]        # continued, not a baseline
    assert values_of(d.to_delta(on(host("b"), 30 * S, 50.0))) == []          # a second target: a baseline
    d.commit()
    d.close()
    keys = {r.target for r in stored_series(sqlite3.connect(tmp_path / "delta-e.db"), "e")}
    assert keys == {target_key("jobs", host("a")), target_key("jobs", host("b"))}     # the old key is gone


def test_changes_stay_pending_until_the_transaction_that_wrote_them_committed(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    d = DeltaState("e", None)
    d.attach(db, str(tmp_path / "x.db"))
    d.to_delta(on(host("a"), 10 * S, 6.0))
    db.execute("BEGIN")
    d.write_changes(db)
    db.execute("ROLLBACK")                                     # the caller's transaction failed
    assert d.has_changes
    db.execute("BEGIN")
    d.write_changes(db)
    db.execute("COMMIT")
    d.changes_saved()
    assert not d.has_changes
    assert [r.value for r in stored_series(db, "e")] == [6.0]
    db.close()


# ── the packed format (issue #13): key text once per series, one value row per target ─────────────────

def _hist(attrs: Any, bounds: tuple[float, ...], counts: tuple[float, ...], sum_: float | None, t: int) -> HistogramPoint:
    return HistogramPoint(attrs, bounds, counts, sum(counts), sum_, start_ns=S, time_ns=t)


def _mixed(t: int, k: float) -> TargetBatch:
    """Counters and histograms (two bound sets, a histogram without sum, a non-finite sum), values growing with k."""
    shared = (0.5, 1.0, math.inf)
    return batch(t, counter(cp(A, 5.0 * k, S, t), cp(B, 2.0 ** 52 + k, S, t, created_ns=S)),
                 Metric("h", "", "s", Kind.HISTOGRAM, (
                     _hist(A, shared, (k, 2 * k, 3 * k), 1.5 * k, t),
                     _hist(B, shared, (k, k, k), None, t),
                     _hist((("k", "c"),), (10.0,), (k, 4 * k), math.inf, t),
                     _hist((("k", "d"),), (), (7 * k,), -0.0, t))))


def _table(db: Any, sql: str) -> list[Any]:
    return list(db.execute(sql).fetchall())


def test_the_packed_state_reloads_every_field_exactly(tmp_path: Path) -> None:
    import sqlite3

    d = DeltaState("e", str(tmp_path))
    d.to_delta(_mixed(10 * S, 1.0))
    d.to_delta(_mixed(20 * S, 2.0))
    d.commit()
    before = dict(d._targets["t"].series)
    d.close()
    db = sqlite3.connect(tmp_path / "delta-e.db")
    # One key row per series, one value row per target, no per-series value rows.
    assert len(_table(db, "SELECT * FROM delta_keys")) == len(before) == 6
    assert _table(db, "SELECT exporter, target FROM delta_values") == [("e", "t")]
    assert _table(db, "SELECT * FROM delta_series") == []
    db.close()
    again = DeltaState("e", str(tmp_path))
    after = again._targets["t"].series
    assert after.keys() == before.keys()
    for key, prev in before.items():
        got = after[key]
        assert got == prev._replace(restored=True), key
        assert [math.copysign(1, x) for x in (got.sum or 0.0,)] == [math.copysign(1, x) for x in (prev.sum or 0.0,)]
    assert (again._targets["t"].last_export_ns, again._targets["t"].round) == (20 * S, 2)
    # ... and continues exactly: the next round is the increase since round 2, contiguous.
    out = again.to_delta(_mixed(30 * S, 3.0))
    (c, h) = out.metrics
    assert [(p.value, p.start_ns) for p in c.points] == [(5.0, 20 * S), (1.0, 20 * S)]  # type: ignore[union-attr]
    assert [(p.counts, p.start_ns) for p in h.points] == [  # type: ignore[union-attr]
        ((1.0, 2.0, 3.0), 20 * S), ((1.0, 1.0, 1.0), 20 * S), ((1.0, 4.0), 20 * S), ((7.0,), 20 * S)]
    assert [p.sum for p in h.points][:2] == [1.5, None]  # type: ignore[union-attr]
    again.close()


def test_a_key_text_is_written_once_and_expired_series_leave_both_tables(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "x.db"
    db = sqlite3.connect(path, isolation_level=None)
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    d = DeltaState("e", None, expire_after_rounds=2)
    d.attach(db, str(path))

    def key_writes(b: TargetBatch) -> int:
        statements.clear()
        d.to_delta(b)
        d.commit()
        return sum("INTO delta_keys" in s for s in statements)

    assert key_writes(batch(10 * S, counter(cp(A, 1.0, S, 10 * S), cp(B, 1.0, S, 10 * S)))) == 2
    assert key_writes(batch(20 * S, counter(cp(A, 2.0, S, 20 * S), cp(B, 2.0, S, 20 * S)))) == 0
    assert key_writes(batch(30 * S, counter(cp(A, 3.0, S, 30 * S)))) == 0        # B not seen: kept for now
    assert key_writes(batch(40 * S, counter(cp(A, 4.0, S, 40 * S)))) == 0
    assert key_writes(batch(50 * S, counter(cp(A, 5.0, S, 50 * S)))) == 0        # B expired
    texts = [t for (t,) in _table(db, "SELECT series FROM delta_keys")]
    assert texts == [series_text(("c", Kind.SUM, "", "", A))]
    assert [(r.series, r.value) for r in stored_series(db, "e")] == [(texts[0], 5.0)]
    # B returns: a new series (a baseline), with a new id and its key written again.
    assert key_writes(batch(60 * S, counter(cp(A, 6.0, S, 60 * S), cp(B, 9.0, S, 60 * S)))) == 1
    ids = _table(db, "SELECT id FROM delta_keys ORDER BY id")
    assert ids == [(0,), (2,)]
    db.close()


def test_new_keys_stay_pending_until_their_transaction_committed(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    d = DeltaState("e", None)
    d.attach(db, str(tmp_path / "x.db"))
    d.to_delta(batch(10 * S, counter(cp(A, 1.0, S, 10 * S))))
    db.execute("BEGIN")
    d.write_changes(db)
    db.execute("ROLLBACK")
    d.to_delta(batch(20 * S, counter(cp(A, 2.0, S, 20 * S))))           # no new key this round
    db.execute("BEGIN")
    d.write_changes(db)
    db.execute("COMMIT")
    d.changes_saved()
    assert [(r.series, r.value) for r in stored_series(db, "e")] == [(series_text(("c", Kind.SUM, "", "", A)), 2.0)]
    db.close()


def _write_format_1_rows(path: Path) -> None:
    """Rows as the previous version wrote them: one ``delta_series`` row per series, the key as format-1 text."""
    import sqlite3
    import struct

    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    hist_key = series_text(("h", Kind.HISTOGRAM, "", "", A))
    with db:
        db.execute("INSERT INTO delta_series VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   ("e", "t", series_text(("c", Kind.SUM, "", "", A)), S, 10 * S, 5.0, None, None, None, 1))
        db.execute("INSERT INTO delta_series VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   ("e", "t", hist_key, S, 10 * S, 6.0, 3.5, struct.pack("<1d", 1.0), struct.pack("<2d", 2.0, 4.0), 1))
        db.execute("INSERT INTO delta_series VALUES ('e', 't', 'garbage', 1, 2, 3.0, NULL, NULL, NULL, 1)")
        db.execute("INSERT INTO delta_series VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",       # another exporter's
                   ("other", "t", hist_key, S, 10 * S, 1.0, 1.0, None, None, 1))
        db.execute("INSERT INTO delta_targets VALUES ('e', 't', ?, 1)", (10 * S,))
    db.close()


def test_per_series_rows_of_the_previous_version_are_converted_once(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    import sqlite3

    _write_format_1_rows(tmp_path / "delta-e.db")
    with caplog.at_level("INFO", logger="promotel.export.delta"):
        d = DeltaState("e", str(tmp_path))
    assert "from one row per series to one packed row per target" in caplog.text
    db = sqlite3.connect(tmp_path / "delta-e.db")
    assert _table(db, "SELECT exporter FROM delta_series") == [("other",)]      # only this exporter's rows go
    assert [(r.series[:12], r.value, r.sum, r.bounds, r.counts, r.round) for r in stored_series(db, "e")] == [
        ('[1,"c","sum"', 5.0, None, (), (), 1), ('[1,"h","hist', 6.0, 3.5, (1.0,), (2.0, 4.0), 1)]
    db.close()
    # It continues exactly from the converted values.
    out = d.to_delta(batch(20 * S, counter(cp(A, 8.0, S, 20 * S)),
                           Metric("h", "", "s", Kind.HISTOGRAM, (hp(9.0, (3.0, 6.0), 5.0, S, 20 * S),))))
    (c, h) = out.metrics
    assert [(p.value, p.start_ns) for p in c.points] == [(3.0, 10 * S)]  # type: ignore[union-attr]
    assert [(p.counts, p.count, p.sum, p.start_ns) for p in h.points] == [  # type: ignore[union-attr]
        ((1.0, 2.0), 3.0, 1.5, 10 * S)]
    d.commit()
    d.close()
    caplog.clear()
    with caplog.at_level("INFO", logger="promotel.export.delta"):
        again = DeltaState("e", str(tmp_path))
    assert "Converted" not in caplog.text
    assert {k[0]: p.value for k, p in again._targets["t"].series.items()} == {"c": 8.0, "h": 9.0}
    again.close()


def test_a_damaged_value_row_is_a_new_baseline_and_is_rewritten(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    import sqlite3
    import struct
    import zlib

    d = DeltaState("e", str(tmp_path))
    d.to_delta(batch(10 * S, counter(cp(A, 1.0, S, 10 * S))))
    d.commit()
    d.close()
    good = _table(sqlite3.connect(tmp_path / "delta-e.db"), "SELECT data FROM delta_values")[0][0]
    raw = zlib.decompress(good)              # stored compressed; a row of the bare format-1 bytes is read too
    assert raw[:4] == b"PTD1"
    for damaged in (b"", b"XXXX" + good[4:], good[:-1], good + b"\0", raw[:-1], raw + b"\0", b"XXXX" + raw[4:],
                    zlib.compress(raw[:-8], 1), raw[:8] + struct.pack("<q", -1) + raw[16:]):
        db = sqlite3.connect(tmp_path / "delta-e.db")
        with db:
            db.execute("UPDATE delta_values SET data = ?", (damaged,))
        db.close()
        caplog.clear()
        with caplog.at_level("WARNING", logger="promotel.export.delta"):
            d = DeltaState("e", str(tmp_path))
        assert "cannot be read" in caplog.text and "baseline" in caplog.text
        assert d._targets["t"].series == {}
        assert d.to_delta(batch(20 * S, counter(cp(A, 2.0, S, 20 * S)))).metrics == ()      # a baseline
        d.commit()
        d.close()
        db = sqlite3.connect(tmp_path / "delta-e.db")
        assert [(r.value, r.time_ns) for r in stored_series(db, "e")] == [(2.0, 20 * S)]
        assert len(_table(db, "SELECT * FROM delta_keys")) == 1
        db.close()


def test_a_value_row_stored_uncompressed_is_read_the_same(tmp_path: Path) -> None:
    import sqlite3
    import zlib

    d = DeltaState("e", str(tmp_path))
    d.to_delta(_mixed(10 * S, 1.0))
    d.commit()
    before = dict(d._targets["t"].series)
    d.close()
    db = sqlite3.connect(tmp_path / "delta-e.db")
    with db:
        db.execute("UPDATE delta_values SET data = ?", (zlib.decompress(db.execute("SELECT data FROM delta_values")
                                                                        .fetchone()[0]),))
    db.close()
    again = DeltaState("e", str(tmp_path))
    assert again._targets["t"].series == {k: p._replace(restored=True) for k, p in before.items()}
    again.close()


def test_a_database_attached_while_running_gets_what_memory_holds(tmp_path: Path) -> None:
    import sqlite3

    stale = DeltaState("e", str(tmp_path))           # what the database holds: older, other series
    stale.to_delta(batch(10 * S, counter(cp(B, 1.0, S, 10 * S))))
    stale.to_delta(on(host("a"), 10 * S, 1.0))
    stale.commit()
    stale.close()
    d = DeltaState("e", None)
    d.to_delta(batch(20 * S, counter(cp(A, 4.0, S, 20 * S), cp(B, 7.0, S, 20 * S))))
    d.to_delta(batch(30 * S, counter(cp(A, 5.0, S, 30 * S), cp(B, 8.0, S, 30 * S))))
    db = sqlite3.connect(tmp_path / "delta-e.db", isolation_level=None)
    d.attach(db, str(tmp_path / "delta-e.db"), load=False)
    d.commit()
    db.close()
    again = DeltaState("e", str(tmp_path))
    assert list(again._targets) == ["t"]
    assert {k[4]: (p.value, p.time_ns) for k, p in again._targets["t"].series.items()} == {
        A: (5.0, 30 * S), B: (8.0, 30 * S)}
    again.close()
