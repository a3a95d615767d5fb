"""convert: the per-target series store — start times, resets, staleness, the series cap."""

from __future__ import annotations

import logging
import tracemalloc

import pytest

from promotel.model import HistogramPoint, Kind, Metric, NumberPoint, SummaryPoint
from promotel.series.store import SeriesStore

S = 1_000_000_000
A = (("k", "a"),)
B = (("k", "b"),)


def counter(*points: NumberPoint, name: str = "c") -> Metric:
    return Metric(name, "", "1", Kind.SUM, tuple(points), monotonic=True, prom_type="counter")


def gauge(*points: NumberPoint) -> Metric:
    return Metric("g", "", "1", Kind.GAUGE, tuple(points), prom_type="gauge")


def hist(attrs: tuple[tuple[str, str], ...], count: float, sum_: float | None) -> Metric:
    p = HistogramPoint(attrs, (1.0,), (count, 0.0), count, sum_)
    return Metric("h", "", "s", Kind.HISTOGRAM, (p,), prom_type="histogram")


def test_first_seen_start_then_stable_and_reset() -> None:
    st = SeriesStore("t")
    r1 = st.convert([counter(NumberPoint(A, 5.0))], 10 * S)
    (p1,) = r1.metrics[0].points
    assert (p1.start_ns, p1.time_ns, p1.no_recorded_value) == (10 * S, 10 * S, False)
    assert (r1.series, r1.series_added, r1.dropped_over_cap) == (1, 1, 0)
    (p2,) = st.convert([counter(NumberPoint(A, 7.0))], 20 * S).metrics[0].points
    assert (p2.start_ns, p2.time_ns, p2.value) == (10 * S, 20 * S, 7.0)
    (p3,) = st.convert([counter(NumberPoint(A, 2.0))], 30 * S).metrics[0].points   # went down: reset
    assert (p3.start_ns, p3.time_ns) == (30 * S, 30 * S)
    (p4,) = st.convert([counter(NumberPoint(A, 3.0))], 40 * S).metrics[0].points
    assert p4.start_ns == 30 * S
    assert len(st) == 1


def test_created_wins_and_sample_timestamp_is_time() -> None:
    st = SeriesStore("t")
    (p,) = st.convert([counter(NumberPoint(A, 5.0, timestamp_ns=9 * S, created_ns=3 * S))], 10 * S).metrics[0].points
    assert (p.start_ns, p.time_ns) == (3 * S, 9 * S)
    (q,) = st.convert([counter(NumberPoint(A, 1.0, created_ns=15 * S))], 20 * S).metrics[0].points
    assert (q.start_ns, q.time_ns) == (15 * S, 20 * S)


def test_gauge_start_stays_zero() -> None:
    st = SeriesStore("t")
    st.convert([gauge(NumberPoint(A, 5.0))], 10 * S)
    (p,) = st.convert([gauge(NumberPoint(A, 1.0))], 20 * S).metrics[0].points
    assert (p.start_ns, p.time_ns, p.value) == (0, 20 * S, 1.0)


def test_non_monotonic_sum_going_down_is_not_a_reset() -> None:
    st = SeriesStore("t")
    m = Metric("u", "", "1", Kind.SUM, (NumberPoint(A, 5.0),), monotonic=False)
    st.convert([m], 10 * S)
    (p,) = st.convert([m._replace(points=(NumberPoint(A, 1.0),))], 20 * S).metrics[0].points
    assert p.start_ns == 10 * S


@pytest.mark.parametrize("count,sum_", [(3.0, 10.0), (5.0, 4.0)])
def test_histogram_reset_on_count_or_sum_down(count: float, sum_: float) -> None:
    st = SeriesStore("t")
    st.convert([hist(A, 5.0, 10.0)], 10 * S)
    (p,) = st.convert([hist(A, count, sum_)], 20 * S).metrics[0].points
    assert p.start_ns == 20 * S and isinstance(p, HistogramPoint) and p.time_ns == 20 * S


def test_histogram_growth_keeps_start() -> None:
    st = SeriesStore("t")
    st.convert([hist(A, 5.0, None)], 10 * S)
    (p,) = st.convert([hist(A, 6.0, None)], 20 * S).metrics[0].points
    assert p.start_ns == 10 * S


def test_summary_reset() -> None:
    st = SeriesStore("t")
    m = Metric("s", "", "s", Kind.SUMMARY, (SummaryPoint(A, ((0.5, 1.0),), 10.0, 5.0),))
    st.convert([m], 10 * S)
    (p,) = st.convert([m._replace(points=(SummaryPoint(A, (), 2.0, 1.0),))], 20 * S).metrics[0].points
    assert p.start_ns == 20 * S


def test_vanished_series_get_one_stale_marker_then_are_forgotten() -> None:
    st = SeriesStore("t")
    st.convert([counter(NumberPoint(A, 1.0), NumberPoint(B, 2.0)), hist(A, 1.0, 1.0)], 10 * S)
    r = st.convert([counter(NumberPoint(A, 2.0))], 20 * S)
    assert r.series == 1 and len(st) == 1
    stale = [(m.name, p.attributes, p.no_recorded_value, p.start_ns, p.time_ns)
             for m in r.metrics for p in m.points if p.no_recorded_value]
    assert sorted(stale) == [("c", B, True, 10 * S, 20 * S), ("h", A, True, 10 * S, 20 * S)]
    hist_marker = next(m for m in r.metrics if m.name == "h")
    assert hist_marker.kind is Kind.HISTOGRAM and hist_marker.unit == "s"
    assert hist_marker.points[0].count == 0.0     # type: ignore[union-attr]
    # The next scrape carries no marker again, and B returning is a new series.
    r3 = st.convert([counter(NumberPoint(A, 3.0), NumberPoint(B, 9.0))], 30 * S)
    assert not any(p.no_recorded_value for m in r3.metrics for p in m.points)
    assert r3.series_added == 1
    pb = next(p for p in r3.metrics[0].points if p.attributes == B)
    assert pb.start_ns == 30 * S


def test_fail_marks_every_series_stale_and_forgets() -> None:
    st = SeriesStore("t")
    st.convert([counter(NumberPoint(A, 1.0), NumberPoint(B, 2.0)), gauge(NumberPoint(A, 1.0))], 10 * S)
    r = st.fail(20 * S)
    points = [(m.name, p.attributes) for m in r.metrics for p in m.points]
    assert sorted(points) == [("c", A), ("c", B), ("g", A)]
    assert all(p.no_recorded_value and p.time_ns == 20 * S for m in r.metrics for p in m.points)
    assert len(st) == 0 and r.series == 0
    assert st.fail(30 * S).metrics == ()
    r2 = st.convert([counter(NumberPoint(A, 5.0))], 40 * S)
    assert r2.series_added == 1 and r2.metrics[0].points[0].start_ns == 40 * S


def test_identity_includes_scope_and_kind() -> None:
    st = SeriesStore("t")
    m1 = counter(NumberPoint(A, 1.0))
    m2 = m1._replace(scope_name="lib")
    r = st.convert([m1, m2], 10 * S)
    assert r.series == 2 and r.series_added == 2


def test_cap_drops_new_series_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    st = SeriesStore("tgt", max_series=2)
    caplog.set_level(logging.WARNING, logger="promotel.series.store")
    pts = [NumberPoint((("i", str(i)),), 1.0) for i in range(5)]
    r = st.convert([counter(*pts)], 10 * S)
    assert (r.series, r.series_added, r.dropped_over_cap) == (2, 2, 3)
    assert len(r.metrics[0].points) == 2
    warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1 and "tgt" in warnings[0].getMessage() and "2" in warnings[0].getMessage()
    # Known series keep flowing at the cap.
    r2 = st.convert([counter(*pts[:2])], 20 * S)
    assert r2.dropped_over_cap == 0 and len(r2.metrics[0].points) == 2


def test_invalid_arguments_rejected() -> None:
    with pytest.raises(ValueError, match="max_series"):
        SeriesStore("t", max_series=0)


def test_memory_per_series_under_one_kib() -> None:
    n = 20_000
    attrs = [(("model", f"m{i % 50}"), ("replica", f"r{i}"), ("status", "ok")) for i in range(n)]
    metric = counter(*(NumberPoint(a, float(i)) for i, a in enumerate(attrs)))
    st = SeriesStore("t", max_series=n)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    st.convert([metric], 10 * S)
    st.convert([metric], 20 * S)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    # The attributes themselves belong to the mapping (shared with the points); the store's own cost:
    per_series = (after - before) / n
    assert len(st) == n
    assert per_series < 1024, per_series


def test_timestamps_otlp_cannot_carry_drop_the_point_not_the_batch() -> None:
    """Negative or ≥ 2^64 ns sample timestamps parse (the formats allow them) but cannot be encoded:
    such points are dropped and counted; a bad _created or exemplar time is ignored; the rest encodes."""
    from promotel.export.encode import encode_requests
    from promotel.exposition import parse_exposition
    from promotel.mappings.assemble import passthrough_metrics
    from promotel.model import TargetBatch

    text = ("# TYPE a gauge\na{i=\"huge\"} 1 12345678901234567890.5\na{i=\"neg\"} 2 -5\na{i=\"ok\"} 3 1700000000\n"
            "# TYPE c counter\nc_total 4 # {trace_id=\"ab\"} 1 99999999999999999999\nc_created -7\n# EOF\n")
    metrics, _ = passthrough_metrics(parse_exposition(text))
    result = SeriesStore("t").convert(metrics, 1_800_000_000_000_000_000)
    assert result.dropped_invalid == 2
    points = {m.name: m.points for m in result.metrics}
    assert [p.attributes for p in points["a"]] == [(("i", "ok"),)]
    assert points["a"][0].time_ns == 1_700_000_000_000_000_000
    (c,) = points["c_total"]
    assert c.value == 4.0 and c.created_ns is None and c.start_ns == 1_800_000_000_000_000_000
    assert c.exemplars[0].timestamp_ns is None
    encoded = encode_requests(TargetBatch("t", (), result.metrics, 1), 1 << 22)
    assert encoded.points == 2


def test_honor_timestamps_false_uses_the_scrape_time() -> None:
    from promotel.exposition import parse_exposition
    from promotel.mappings.assemble import passthrough_metrics

    metrics, _ = passthrough_metrics(parse_exposition("# TYPE a gauge\na 1 -5\n# TYPE b gauge\nb 2 1000\n"))
    result = SeriesStore("t", honor_timestamps=False).convert(metrics, 42)
    assert result.dropped_invalid == 0
    assert sorted(p.time_ns for m in result.metrics for p in m.points) == [42, 42]
