"""assemble: families → OTel points, per conversion.md "Types"."""

from __future__ import annotations

import math
from typing import Any

from promotel.mappings.assemble import (
    Assembled,
    assemble,
    attach_created,
    default_attributes,
    passthrough_metrics,
    seconds_to_ns,
    split_target_info,
    ucum_unit,
)
from promotel.model import (
    Exemplar,
    HistogramPoint,
    Kind,
    Labels,
    MetricFamily,
    NumberPoint,
    Sample,
    SummaryPoint,
)


def fam(name: str, type_: str, *samples: tuple[Any, ...], unit: str | None = None,
        help_: str | None = None) -> MetricFamily:
    out = []
    for s in samples:
        sname, labels, value = s[0], s[1], s[2]
        rest = s[3:]
        out.append(Sample(sname, Labels(tuple(labels.items())), float(value), *rest))
    return MetricFamily(name, type_, help_, unit, tuple(out))


def only_points(a: Any) -> tuple[Any, ...]:
    assert len(a.groups) == 1
    scope_name, scope_version, points = a.groups[0]
    assert (scope_name, scope_version) == ("", "")
    return tuple(points)


def test_default_attributes_sorted_and_empty_dropped() -> None:
    labels = Labels((("z", "1"), ("a", "x"), ("m", "")))
    assert default_attributes(labels) == (("a", "x"), ("z", "1"))
    assert default_attributes(Labels()) == ()


def test_counter_total_and_created() -> None:
    f = fam("req", "counter",
            ("req_total", {"path": "/a"}, 5, 1_700_000_000_000_000_000),
            ("req_created", {"path": "/a"}, 1_600_000_000.25),
            ("req_total", {"path": "/b"}, 7))
    a = assemble(f)
    assert a.kind is Kind.SUM and a.monotonic and a.dropped == 0
    p1, p2 = only_points(a)
    assert p1 == NumberPoint((("path", "/a"),), 5.0, 1_700_000_000_000_000_000, 1_600_000_000_250_000_000)
    assert p2.attributes == (("path", "/b"),) and p2.value == 7.0 and p2.created_ns is None
    assert isinstance(p2.value, float)


def test_counter_genuinely_named_created_stays_a_value() -> None:
    f = fam("jobs_created", "counter", ("jobs_created_total", {}, 3), ("jobs_created", {}, 4))
    (p,) = only_points(assemble(f))
    assert p.created_ns is None and p.value in (3.0, 4.0)


def test_gauge_unknown_and_scale() -> None:
    f = fam("lat_ms", "gauge", ("lat_ms", {"a": "1"}, 250))
    (p,) = only_points(assemble(f, scale=0.001))
    assert a_kind(f) is Kind.GAUGE
    assert p.value == 0.25
    u = fam("x", "unknown", ("x", {}, math.inf))
    (q,) = only_points(assemble(u))
    assert q.value == math.inf


def a_kind(f: MetricFamily) -> Kind | None:
    return assemble(f).kind


def test_histogram_buckets_bounds_counts_scale_and_exemplar() -> None:
    ex = Exemplar(Labels((("trace_id", "ab" * 16),)), 0.3, 5)
    f = fam("d", "histogram",
            ("d_bucket", {"m": "x", "le": "1.0"}, 2),
            ("d_bucket", {"m": "x", "le": "0.5"}, 1, None, ex),
            ("d_bucket", {"m": "x", "le": "10"}, 5),
            ("d_bucket", {"m": "x", "le": "+Inf"}, 6),
            ("d_count", {"m": "x"}, 6),
            ("d_sum", {"m": "x"}, 12.5),
            ("d_created", {"m": "x"}, 100))
    a = assemble(f, scale=1000.0)
    assert a.kind is Kind.HISTOGRAM and a.dropped == 0
    (p,) = only_points(a)
    assert isinstance(p, HistogramPoint)
    assert p.attributes == (("m", "x"),)
    assert p.bounds == (500.0, 1000.0, 10000.0)
    assert p.counts == (1.0, 1.0, 3.0, 1.0)          # counts are not scaled
    assert p.count == 6.0 and p.sum == 12500.0
    assert p.created_ns == 100_000_000_000
    assert p.exemplars == (ex._replace(value=300.0),)   # an exemplar is in the metric's unit: scaled too


def test_histogram_equal_bounds_written_differently() -> None:
    f = fam("d", "histogram",
            ("d_bucket", {"le": "1"}, 2), ("d_bucket", {"le": "1e0"}, 2), ("d_bucket", {"le": "1.0"}, 2),
            ("d_bucket", {"le": "+Inf"}, 3), ("d_count", {}, 3))
    (p,) = only_points(assemble(f))
    assert p.bounds == (1.0,) and p.counts == (2.0, 1.0) and p.sum is None


def test_histogram_invalid_points_dropped_and_counted() -> None:
    f = fam("d", "histogram",
            # no +Inf
            ("d_bucket", {"s": "a", "le": "1"}, 1), ("d_count", {"s": "a"}, 1),
            # decreasing
            ("d_bucket", {"s": "b", "le": "1"}, 5), ("d_bucket", {"s": "b", "le": "+Inf"}, 4),
            ("d_count", {"s": "b"}, 4),
            # no _count
            ("d_bucket", {"s": "c", "le": "+Inf"}, 4),
            # valid
            ("d_bucket", {"s": "d", "le": "+Inf"}, 4), ("d_count", {"s": "d"}, 4), ("d_sum", {"s": "d"}, 1))
    a = assemble(f)
    assert a.dropped == 3
    assert set(a.reasons) == {"histogram_no_inf_bucket", "histogram_decreasing_buckets", "histogram_no_count"}
    (p,) = only_points(a)
    assert p.attributes == (("s", "d"),) and p.counts == (4.0,) and p.bounds == ()


def test_summary_quantiles_sorted_nan_left_out_scaled() -> None:
    f = fam("rt", "summary",
            ("rt", {"quantile": "0.99"}, 9), ("rt", {"quantile": "0.5"}, 5),
            ("rt", {"quantile": "0.9"}, math.nan),
            ("rt_sum", {}, 100), ("rt_count", {}, 20))
    (p,) = only_points(assemble(f, scale=2.0))
    assert isinstance(p, SummaryPoint)
    assert p.quantiles == ((0.5, 10.0), (0.99, 18.0))
    assert p.sum == 200.0 and p.count == 20.0


def test_summary_negative_quantile_values_left_out_and_counted() -> None:
    """OTLP: quantile values must not be negative (a summary of negative observations cannot be carried)."""
    f = fam("t", "summary",
            ("t", {"quantile": "0.1"}, -3), ("t", {"quantile": "0.5"}, -0.5), ("t", {"quantile": "0.9"}, 2),
            ("t_sum", {}, -10), ("t_count", {}, 8))
    a = assemble(f)
    (p,) = only_points(a)
    assert isinstance(p, SummaryPoint)
    assert p.quantiles == ((0.9, 2.0),) and p.sum == -10.0 and p.count == 8.0
    assert a.dropped == 2 and a.reasons == ("summary_negative_quantile_value",)


def test_summary_without_count_dropped() -> None:
    f = fam("rt", "summary", ("rt", {"quantile": "0.5"}, 1), ("rt_sum", {}, 1))
    a = assemble(f)
    assert a.groups == () and a.dropped == 1 and a.reasons == ("summary_no_count",)


def test_info_and_stateset() -> None:
    info = fam("build", "info", ("build_info", {"version": "1.2"}, 1))
    a = assemble(info)
    assert a.kind is Kind.SUM and not a.monotonic
    assert only_points(a) == (NumberPoint((("version", "1.2"),), 1.0),)
    st = fam("mode", "stateset", ("mode", {"mode": "on"}, 1), ("mode", {"mode": "off"}, 0))
    b = assemble(st)
    assert b.kind is Kind.SUM and not b.monotonic
    assert [(p.attributes, p.value) for p in only_points(b)] == [((("mode", "on"),), 1.0), ((("mode", "off"),), 0.0)]


def test_gaugehistogram_dropped_and_counted() -> None:
    f = fam("q", "gaugehistogram",
            ("q_bucket", {"x": "1", "le": "+Inf"}, 1), ("q_gcount", {"x": "1"}, 1), ("q_gsum", {"x": "1"}, 1),
            ("q_bucket", {"x": "2", "le": "+Inf"}, 1))
    a = assemble(f)
    assert a.kind is None and a.groups == () and a.dropped == 2


def test_scope_labels_select_groups_and_leave_points() -> None:
    f = fam("c", "counter",
            ("c_total", {"otel_scope_name": "lib", "otel_scope_version": "2", "a": "1"}, 1),
            ("c_total", {"a": "2"}, 2),
            ("c_total", {"otel_scope_name": "lib", "otel_scope_version": "2", "a": "3"}, 3))
    a = assemble(f)
    assert [(n, v, [p.value for p in pts]) for n, v, pts in a.groups] == [("", "", [2.0]), ("lib", "2", [1.0, 3.0])]
    assert a.groups[1][2][0].attributes == (("a", "1"),)


def test_attributes_called_once_per_series() -> None:
    calls: list[Labels] = []

    def attrs(labels: Labels) -> tuple[tuple[str, str], ...]:
        calls.append(labels)
        return default_attributes(labels)

    f = fam("d", "histogram", *[("d_bucket", {"k": "v", "le": le}, 1) for le in ("1", "2", "+Inf")],
            ("d_count", {"k": "v"}, 1), ("d_sum", {"k": "v"}, 1))
    assemble(f, attrs)
    assert calls == [Labels((("k", "v"),))]


def test_attach_created_only_for_owned_families() -> None:
    fams = [
        fam("req_total", "counter", ("req_total", {"a": "1"}, 3)),
        fam("req_created", "gauge", ("req_created", {"a": "1"}, 1_600_000_000)),
        fam("lonely_created", "gauge", ("lonely_created", {}, 9)),
        fam("h", "histogram", ("h_bucket", {"le": "+Inf"}, 1), ("h_count", {}, 1), ("h_sum", {}, 1)),
        fam("h_created", "gauge", ("h_created", {}, 1_500_000_000)),
    ]
    out = attach_created(fams)
    assert [f.name for f in out] == ["req_total", "lonely_created", "h"]
    metrics, dropped = passthrough_metrics(fams)
    assert dropped == 0
    by = {m.name: m for m in metrics}
    assert by["req_total"].points[0].created_ns == 1_600_000_000 * 10**9
    assert by["h"].points[0].created_ns == 1_500_000_000 * 10**9
    assert by["lonely_created"].kind is Kind.GAUGE and by["lonely_created"].points[0].value == 9.0


def test_split_target_info() -> None:
    fams = [fam("target", "info", ("target_info", {"env": "prod", "region": "", "host": "h1"}, 1)),
            fam("up", "gauge", ("up", {}, 1))]
    resource, rest = split_target_info(fams)
    assert resource == (("env", "prod"), ("host", "h1"))
    assert [f.name for f in rest] == ["up"]
    resource2, rest2 = split_target_info([fam("target_info", "gauge", ("target_info", {"a": "b"}, 1))])
    assert resource2 == (("a", "b"),) and rest2 == []


def test_passthrough_metadata_units_and_empty_family() -> None:
    metrics, _ = passthrough_metrics([fam("t", "gauge", unit="seconds", help_="Time."),
                                      fam("c", "counter", ("c_total", {}, 1))])
    t, c = metrics
    assert (t.name, t.unit, t.description, t.kind, t.points, t.prom_type) == ("t", "s", "Time.", Kind.GAUGE, (), "gauge")
    assert c.kind is Kind.SUM and c.monotonic and c.prom_type == "counter"
    assert ucum_unit("bytes") == "By" and ucum_unit("ratio") == "1" and ucum_unit("widgets") == "widgets"


def test_seconds_to_ns_exact_enough() -> None:
    assert seconds_to_ns(1_700_000_000.5) == 1_700_000_000_500_000_000
    assert seconds_to_ns(0.0) == 0


def test_minus_inf_bucket_and_signed_zero_bounds() -> None:
    """An empty le="-Inf" bucket adds no bound; -0 and 0 are one bound numerically, so two buckets
    with different counts for it make the point invalid (dropped and counted, never guessed)."""
    from promotel.exposition import parse_exposition

    def run(body: str) -> Assembled:
        return assemble(parse_exposition("# TYPE h histogram\n" + body)[0])

    a = run('h_bucket{le="-Inf"} 0\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 3\nh_count 3\nh_sum 1\n')
    ((_, _, (p,)),) = a.groups
    assert (p.bounds, p.counts, a.dropped) == ((1.0,), (2.0, 1.0), 0)
    b = run('h_bucket{le="-0"} 1\nh_bucket{le="0"} 2\nh_bucket{le="+Inf"} 3\nh_count 3\nh_sum 1\n')
    assert b.dropped == 1 and b.reasons == ("histogram_duplicate_bucket",)
    c = run('h_bucket{le="0"} 1\nh_bucket{le="+Inf"} 3\nh_count 3\nh_sum 1\n')
    ((_, _, (q,)),) = c.groups
    assert q.bounds == (0.0,) and q.counts == (1.0, 2.0)


def test_counter_and_gauge_exemplars_scale_with_their_value() -> None:
    ex = Exemplar(Labels((("trace_id", "cd" * 16),)), 250.0, None)
    c = assemble(fam("t", "counter", ("t_total", {}, 4000.0, None, ex)), scale=0.001)
    (p,) = only_points(c)
    assert p.value == 4.0 and p.exemplars[0].value == 0.25
    g = assemble(fam("g", "gauge", ("g", {}, 2.0, None, ex)), scale=0.5)
    (q,) = only_points(g)
    assert q.value == 1.0 and q.exemplars[0].value == 125.0


# ─── counts that do not fit a uint64 ──────────────────────────────────────────────────────────

def test_histogram_count_of_2_pow_64_in_the_general_path_and_summary_count() -> None:
    big = float(2**64)
    h = fam("h", "histogram",          # unsorted buckets: the general (checked) path
            ("h_bucket", {"le": "+Inf"}, big), ("h_bucket", {"le": "1"}, 0.0),
            ("h_count", {}, 5.0))
    a = assemble(h)
    assert a.dropped == 1 and a.reasons == ("histogram_bad_count",)
    s = fam("s", "summary", ("s", {"quantile": "0.5"}, 1.0), ("s_count", {}, big), ("s_sum", {}, 1.0))
    b = assemble(s)
    assert b.dropped == 1 and b.reasons == ("summary_bad_count",)
    # The largest double below 2**64 still fits and is kept.
    ok = math.nextafter(big, 0.0)
    c = assemble(fam("s", "summary", ("s_count", {}, ok), ("s_sum", {}, 1.0)))
    assert c.dropped == 0
