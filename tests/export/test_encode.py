"""encode: the hand-encoded OTLP bytes decode (official classes) to exactly the reference request."""

from __future__ import annotations

import logging
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

import promotel
from promotel.errors import ExportError
from promotel.export import wire
from promotel.export.encode import encode_requests, split_request
from promotel.export.otlp_json import to_otlp_json
from promotel.mappings.assemble import assemble
from promotel.model import (
    Exemplar,
    HistogramPoint,
    Kind,
    Labels,
    Metric,
    NumberPoint,
    SummaryPoint,
    TargetBatch,
    Temporality,
)
from support.families import fam
from support.reference_encoder import build_request, count_points

S = 1_000_000_000
TRACE = "0123456789abcdef0123456789abcdef"
SPAN = "0011223344556677"


def decode(data: bytes) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest.FromString(data)


def same_as_reference(batch: TargetBatch) -> ExportMetricsServiceRequest:
    result = encode_requests(batch)
    assert len(result.requests) == 1
    got = decode(result.requests[0])
    want = build_request(batch)
    # NaN != NaN in message equality: compare the serialized reference with ours re-serialized.
    assert got.SerializeToString(deterministic=True) == want.SerializeToString(deterministic=True)
    assert result.points == sum(len(m.points) for m in batch.metrics)
    assert result.request_points == (result.points,)
    return got


def sample_batch() -> TargetBatch:
    ex = Exemplar(Labels((("trace_id", TRACE), ("span_id", SPAN), ("user", "u1"))), 0.25, 7 * S)
    ex_no_ids = Exemplar(Labels((("trace_id", "not-hex"),)), 1.5)
    metrics = (
        Metric("c", "Requests.", "{request}", Kind.SUM,
               (NumberPoint((("a", "x"), ("n", 3), ("f", 1.5), ("b", True)), 5.0, None, None, (ex,), 1 * S, 2 * S),
                NumberPoint((("a", "y"),), 0.0, None, None, (), 1 * S, 2 * S, True)),
               monotonic=True, prom_type="counter"),
        Metric("g", "", "1", Kind.GAUGE,
               (NumberPoint((), math.inf, time_ns=2 * S), NumberPoint((("k", "v"),), -math.inf, time_ns=2 * S),
                NumberPoint((("k", "w"),), 3, time_ns=2 * S, exemplars=(ex_no_ids,))),
               prom_type="gauge"),
        Metric("h", "Latency.", "s", Kind.HISTOGRAM,
               (HistogramPoint((("m", "a"),), (0.1, 1.0), (1.0, 2.0, 3.0), 6.0, 4.5, None, None, (ex,), 1 * S, 2 * S),
                HistogramPoint((("m", "b"),), (), (2.0,), 2.0, None, start_ns=1 * S, time_ns=2 * S),
                HistogramPoint((("m", "c"),), (), (), 0.0, None, start_ns=1 * S, time_ns=2 * S,
                               no_recorded_value=True)),
               prom_type="histogram", temporality=Temporality.DELTA),
        Metric("s", "", "s", Kind.SUMMARY,
               (SummaryPoint((("q", "1"),), ((0.5, 1.0), (0.99, 2.5)), 10.0, 12.0, start_ns=S, time_ns=2 * S),
                SummaryPoint((("q", "2"),), (), 0.0, 0.0, start_ns=S, time_ns=2 * S, no_recorded_value=True)),
               prom_type="summary"),
        Metric("lib.m", "", "", Kind.SUM, (NumberPoint((), 1.0, time_ns=S),), monotonic=False,
               scope_name="lib", scope_version="1.0"),
    )
    return TargetBatch("t", (("service.name", "svc"), ("host.name", "h")), metrics, 2 * S)


def test_field_numbers_match_installed_descriptors() -> None:
    def num(msg: object, field: str) -> int:
        return msg.DESCRIPTOR.fields_by_name[field].number  # type: ignore[attr-defined, no-any-return]

    assert num(ExportMetricsServiceRequest, "resource_metrics") == wire.F_REQUEST_RESOURCE_METRICS
    assert (num(pb.ResourceMetrics, "resource"), num(pb.ResourceMetrics, "scope_metrics")) == (
        wire.F_RM_RESOURCE, wire.F_RM_SCOPE_METRICS)
    assert (num(pb.ScopeMetrics, "scope"), num(pb.ScopeMetrics, "metrics")) == (wire.F_SM_SCOPE, wire.F_SM_METRICS)
    assert [num(pb.Metric, f) for f in ("gauge", "sum", "histogram", "summary")] == [
        wire.F_METRIC_GAUGE, wire.F_METRIC_SUM, wire.F_METRIC_HISTOGRAM, wire.F_METRIC_SUMMARY]
    for m in (pb.Gauge, pb.Sum, pb.Histogram, pb.Summary):
        assert num(m, "data_points") == wire.F_DATA_POINTS
    assert num(pb.Sum, "aggregation_temporality") == wire.F_AGG_TEMPORALITY
    assert num(pb.Sum, "is_monotonic") == wire.F_IS_MONOTONIC
    ndp = pb.NumberDataPoint
    assert [num(ndp, f) for f in ("start_time_unix_nano", "time_unix_nano", "as_double", "exemplars",
                                  "attributes", "flags")] == [
        wire.F_NDP_START, wire.F_NDP_TIME, wire.F_NDP_AS_DOUBLE, wire.F_NDP_EXEMPLARS, wire.F_NDP_ATTRIBUTES,
        wire.F_NDP_FLAGS]
    hdp = pb.HistogramDataPoint
    assert [num(hdp, f) for f in ("start_time_unix_nano", "time_unix_nano", "count", "sum", "bucket_counts",
                                  "explicit_bounds", "exemplars", "attributes", "flags")] == [
        wire.F_HDP_START, wire.F_HDP_TIME, wire.F_HDP_COUNT, wire.F_HDP_SUM, wire.F_HDP_BUCKET_COUNTS,
        wire.F_HDP_EXPLICIT_BOUNDS, wire.F_HDP_EXEMPLARS, wire.F_HDP_ATTRIBUTES, wire.F_HDP_FLAGS]
    sdp = pb.SummaryDataPoint
    assert [num(sdp, f) for f in ("start_time_unix_nano", "time_unix_nano", "count", "sum", "quantile_values",
                                  "attributes", "flags")] == [
        wire.F_SDP_START, wire.F_SDP_TIME, wire.F_SDP_COUNT, wire.F_SDP_SUM, wire.F_SDP_QUANTILES,
        wire.F_SDP_ATTRIBUTES, wire.F_SDP_FLAGS]
    vaq = pb.SummaryDataPoint.ValueAtQuantile
    assert (num(vaq, "quantile"), num(vaq, "value")) == (wire.F_VAQ_QUANTILE, wire.F_VAQ_VALUE)
    ex = pb.Exemplar
    assert [num(ex, f) for f in ("time_unix_nano", "as_double", "span_id", "trace_id", "filtered_attributes")] == [
        wire.F_EX_TIME, wire.F_EX_AS_DOUBLE, wire.F_EX_SPAN_ID, wire.F_EX_TRACE_ID, wire.F_EX_FILTERED_ATTRIBUTES]
    assert pb.DataPointFlags.Value("DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK") == wire.NO_RECORDED_VALUE
    # Every fixed-width field really has a 64-bit wire type (fixed64 = 6, double = 1 in descriptor terms).
    assert hdp.DESCRIPTOR.fields_by_name["count"].type == 6 and ndp.DESCRIPTOR.fields_by_name["as_double"].type == 1


def test_a_field_laid_out_otherwise_than_the_encoder_writes_it_is_refused_by_name() -> None:
    """The numbers come from the descriptors; ``_field`` also checks the type, repeatedness, packing and a
    one-byte tag, so a metrics.proto that changed any of them fails the import instead of mis-encoding."""
    from google.protobuf import descriptor_pb2
    from google.protobuf.descriptor import FieldDescriptor as F

    assert wire._field(pb.HistogramDataPoint, "bucket_counts", F.TYPE_FIXED64, repeated=True) == 6
    cases = [
        ((pb.HistogramDataPoint, "count", F.TYPE_DOUBLE), "HistogramDataPoint.count is fixed64 (wire type 1)"),
        ((pb.HistogramDataPoint, "bucket_counts", F.TYPE_FIXED64),
         "is packed repeated fixed64 (wire type 2)"),
        ((pb.NumberDataPoint, "as_int", F.TYPE_DOUBLE), "is sfixed64 (wire type 1)"),
        ((pb.NumberDataPoint, "value_double", F.TYPE_DOUBLE), "NumberDataPoint.value_double does not exist"),
        ((descriptor_pb2.FieldDescriptorProto, "proto3_optional", F.TYPE_BOOL), "has number 17"),
    ]
    for (message, name, proto_type), fragment in cases:
        with pytest.raises(ExportError) as info:
            wire._field(message, name, proto_type)
        assert fragment in str(info.value) and "opentelemetry-proto" in str(info.value), str(info.value)
    with pytest.raises(ExportError, match=r"share one field number.*\[1, 2\]"):
        wire._same([1, 2], "Gauge and Sum data_points")


def test_every_point_type_flags_exemplars_and_envelopes() -> None:
    got = same_as_reference(sample_batch())
    (rm,) = got.resource_metrics
    assert {kv.key: kv.value.string_value for kv in rm.resource.attributes} == {"service.name": "svc", "host.name": "h"}
    assert [(sm.scope.name, sm.scope.version) for sm in rm.scope_metrics] == [
        ("promotel", promotel.__version__), ("lib", "1.0")]
    c, g, h, s = rm.scope_metrics[0].metrics
    assert c.sum.is_monotonic and c.sum.aggregation_temporality == pb.AGGREGATION_TEMPORALITY_CUMULATIVE
    assert c.metadata[0].key == "prometheus.type" and c.metadata[0].value.string_value == "counter"
    p0, p1 = c.sum.data_points
    assert p0.as_double == 5.0 and p0.WhichOneof("value") == "as_double" and p0.flags == 0
    assert {kv.key: kv.value.WhichOneof("value") for kv in p0.attributes} == {
        "a": "string_value", "n": "int_value", "f": "double_value", "b": "bool_value"}
    (e,) = p0.exemplars
    assert e.trace_id.hex() == TRACE and e.span_id.hex() == SPAN and e.time_unix_nano == 7 * S
    assert [(kv.key, kv.value.string_value) for kv in e.filtered_attributes] == [("user", "u1")]
    assert p1.flags == 1
    assert [dp.as_double for dp in g.gauge.data_points[:2]] == [math.inf, -math.inf]
    assert g.gauge.data_points[2].exemplars[0].time_unix_nano == 2 * S      # no timestamp: the point's
    assert g.gauge.data_points[2].exemplars[0].filtered_attributes[0].key == "trace_id"
    assert h.histogram.aggregation_temporality == pb.AGGREGATION_TEMPORALITY_DELTA
    hp = h.histogram.data_points[0]
    assert list(hp.bucket_counts) == [1, 2, 3] and list(hp.explicit_bounds) == [0.1, 1.0] and hp.sum == 4.5
    assert not h.histogram.data_points[1].HasField("sum") and h.histogram.data_points[2].flags == 1
    assert [(q.quantile, q.value) for q in s.summary.data_points[0].quantile_values] == [(0.5, 1.0), (0.99, 2.5)]
    assert s.summary.data_points[1].flags == 1


def test_nan_value_is_encoded_as_double() -> None:
    batch = TargetBatch("t", (), (Metric("g", "", "", Kind.GAUGE, (NumberPoint((), math.nan, time_ns=S),)),), S)
    (req,) = encode_requests(batch).requests
    assert math.isnan(decode(req).resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_double)


def test_max_attributes_keeps_first_sorted_and_counts() -> None:
    attrs = tuple((f"k{i}", "v") for i in range(5))
    batch = TargetBatch("t", (), (Metric("g", "", "", Kind.GAUGE,
                                         (NumberPoint(attrs, 1.0, time_ns=S), NumberPoint(attrs[:2], 1.0, time_ns=S))),),
                        S)
    r = encode_requests(batch, max_attributes=3)
    assert r.dropped_attributes == 2
    dps = decode(r.requests[0]).resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points
    assert [kv.key for kv in dps[0].attributes] == ["k0", "k1", "k2"] and len(dps[1].attributes) == 2


def _all_points(requests: tuple[bytes, ...]) -> list[tuple[str, str, float]]:
    out = []
    for data in requests:
        (rm,) = decode(data).resource_metrics
        scopes = [sm.scope.name for sm in rm.scope_metrics]
        assert len(scopes) == len(set(scopes))            # one ScopeMetrics per scope per request
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                for dp in getattr(m, kind).data_points:
                    out.append((sm.scope.name, m.name, dp.as_double if kind == "gauge" else float(dp.count)))
    return out


def test_split_under_limit_all_points_once_in_order() -> None:
    metrics = []
    expected = []
    for mi in range(6):
        pts = tuple(NumberPoint((("series", f"s{i:05d}"), ("model", "m" * 30)), float(mi * 10_000 + i), time_ns=S)
                    for i in range(2000 if mi == 2 else 50))
        scope = "lib" if mi == 4 else ""
        metrics.append(Metric(f"m{mi}", "d", "1", Kind.GAUGE, pts, scope_name=scope))
        expected += [("lib" if scope else "promotel", f"m{mi}", p.value) for p in pts]
    big_hist = Metric("h", "", "s", Kind.HISTOGRAM, tuple(
        HistogramPoint((("i", str(i)),), tuple(float(b) for b in range(40)), (1.0,) * 41, float(41 + i), 1.0,
                       time_ns=S) for i in range(300)))
    metrics.append(big_hist)
    expected += [("promotel", "h", float(41 + i)) for i in range(300)]
    batch = TargetBatch("t", (("service.name", "x"),), tuple(metrics), S)
    limit = 50_000
    r = encode_requests(batch, max_request_bytes=limit)
    assert len(r.requests) > 4
    assert all(len(req) <= limit for req in r.requests)
    assert r.points == len(expected)
    assert r.request_points == tuple(count_points(decode(req)) for req in r.requests)
    got = _all_points(r.requests)
    # Order within each scope is preserved and every point is present exactly once.
    for scope in ("promotel", "lib"):
        assert [x for x in got if x[0] == scope] == [x for x in expected if x[0] == scope]
    assert sorted(got) == sorted(expected)
    # Every request carries the resource and the metric header of a split metric.
    for req in r.requests:
        rm = decode(req).resource_metrics[0]
        assert rm.resource.attributes[0].value.string_value == "x"
        for sm in rm.scope_metrics:
            assert all(m.description == "d" for m in sm.metrics if m.name.startswith("m"))


def test_points_per_request_of_a_split_batch_are_what_each_request_holds() -> None:
    """``request_points`` is what the exporter counts as sent or dropped per request: for a batch split
    into several requests (metrics split between their points, several scopes) each count is what
    decoding that request finds, and they add up to the batch's points."""
    metrics = tuple(
        Metric(f"m{mi}", "", "1", kind, tuple(
            NumberPoint((("i", f"{i:04d}"), ("pad", "p" * 40)), float(i), time_ns=S) if kind is Kind.GAUGE else
            HistogramPoint((("i", f"{i:04d}"),), (1.0, 2.0), (1.0, 2.0, 3.0), 6.0, 1.0, time_ns=S)
            for i in range(n)), scope_name="lib" if mi % 2 else "")
        for mi, (kind, n) in enumerate([(Kind.GAUGE, 300), (Kind.HISTOGRAM, 7), (Kind.GAUGE, 1),
                                        (Kind.HISTOGRAM, 500), (Kind.GAUGE, 250)]))
    batch = TargetBatch("t", (("service.name", "x"),), metrics, S)
    r = encode_requests(batch, max_request_bytes=8000)
    assert len(r.requests) >= 5 and len(r.request_points) == len(r.requests)
    decoded = [count_points(decode(req)) for req in r.requests]
    assert list(r.request_points) == decoded
    assert sum(r.request_points) == r.points == sum(len(m.points) for m in metrics) == 1058
    assert all(n > 0 for n in r.request_points)


def test_single_point_over_limit_is_dropped_alone_and_named(caplog: pytest.LogCaptureFixture) -> None:
    """A point no request under the limit can carry used to fail the whole batch (a non-retryable
    ExportError naming the metric); it is now dropped by itself, counted and logged with the metric's name
    (the rest of a batch goes out: see test_oversized_point_is_dropped_alone_the_rest_goes_out)."""
    attrs = (("huge", "x" * 5000),)
    batch = TargetBatch("t", (), (Metric("wide", "", "", Kind.GAUGE, (NumberPoint(attrs, 1.0, time_ns=S),)),), S)
    with caplog.at_level(logging.WARNING, logger="promotel.export"):
        r = encode_requests(batch, max_request_bytes=1000, exporter="single-point-test")
    assert r.requests == () and r.points == 0 and r.request_points == ()
    assert r.dropped_oversized == 1 and [d.metric for d in r.oversized] == ["wide"]
    assert any("wide" in rec.getMessage() and "single-point-test" in rec.getMessage() for rec in caplog.records)


def test_empty_batch_gives_no_request() -> None:
    r = encode_requests(TargetBatch("t", (), (Metric("e", "", "", Kind.GAUGE, ()),), S))
    assert r.requests == () and r.points == 0 and r.request_points == ()


def test_otlp_json_mapping() -> None:
    (req,) = encode_requests(sample_batch()).requests
    doc = to_otlp_json(req)
    assert doc == to_otlp_json(decode(req))
    rm = doc["resourceMetrics"][0]
    c = rm["scopeMetrics"][0]["metrics"][0]
    assert c["sum"]["aggregationTemporality"] == 2 and c["sum"]["isMonotonic"] is True
    dp = c["sum"]["dataPoints"][0]
    assert dp["startTimeUnixNano"] == str(S) and dp["timeUnixNano"] == str(2 * S)
    assert dp["exemplars"][0]["traceId"] == TRACE and dp["exemplars"][0]["spanId"] == SPAN
    assert {a["key"]: a["value"] for a in dp["attributes"]}["n"] == {"intValue": "3"}
    assert c["sum"]["dataPoints"][1]["flags"] == 1
    h = rm["scopeMetrics"][0]["metrics"][2]["histogram"]
    assert h["aggregationTemporality"] == 1 and h["dataPoints"][0]["bucketCounts"] == ["1", "2", "3"]
    g = rm["scopeMetrics"][0]["metrics"][1]["gauge"]["dataPoints"]
    assert g[0]["asDouble"] == "Infinity"


# ─── property test: arbitrary batches ────────────────────────────────────────────────────────

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_attr_value = st.one_of(_text, st.integers(-(2**63), 2**63 - 1), st.booleans(),
                        st.floats(allow_nan=False))
_attrs = st.dictionaries(st.text(min_size=1, max_size=8), _attr_value, max_size=4).map(
    lambda d: tuple(sorted(d.items())))
_time = st.integers(0, 2**63 - 1)
_double = st.floats(allow_nan=False)
_count = st.integers(0, 2**53).map(float)
_exemplar = st.builds(
    Exemplar,
    st.dictionaries(st.sampled_from(["trace_id", "span_id", "user"]),
                    st.sampled_from([TRACE, SPAN, "zz", ""]), max_size=3).map(lambda d: Labels(tuple(d.items()))),
    _double, st.one_of(st.none(), _time))
_number = st.builds(NumberPoint, _attrs, _double, st.none(), st.none(), st.lists(_exemplar, max_size=2).map(tuple),
                    _time, _time, st.booleans())


@st.composite
def _histogram(draw: st.DrawFn) -> HistogramPoint:
    bounds = tuple(sorted(set(draw(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=5)))))
    counts = tuple(draw(st.lists(_count, min_size=len(bounds) + 1, max_size=len(bounds) + 1)))
    return HistogramPoint(draw(_attrs), bounds, counts, draw(_count), draw(st.one_of(st.none(), _double)),
                          None, None, tuple(draw(st.lists(_exemplar, max_size=2))), draw(_time), draw(_time),
                          draw(st.booleans()))


_summary = st.builds(SummaryPoint, _attrs,
                     st.lists(st.tuples(st.floats(0, 1), _double), max_size=3).map(tuple),
                     _count, _double, st.none(), st.none(), _time, _time, st.booleans())


@st.composite
def _metric(draw: st.DrawFn) -> Metric:
    kind = draw(st.sampled_from(list(Kind)))
    pts = {Kind.GAUGE: _number, Kind.SUM: _number, Kind.HISTOGRAM: _histogram(), Kind.SUMMARY: _summary}[kind]
    return Metric(draw(_text), draw(_text), draw(_text), kind, tuple(draw(st.lists(pts, min_size=1, max_size=4))),
                  draw(st.booleans()), draw(st.sampled_from(list(Temporality))),
                  draw(st.sampled_from(["", "counter", "gauge"])), draw(st.sampled_from(["", "a", "b"])),
                  draw(st.sampled_from(["", "1"])))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_metric(), min_size=1, max_size=5), _attrs)
def test_property_same_as_reference(metrics: list[Metric], resource: tuple[tuple[str, object], ...]) -> None:
    same_as_reference(TargetBatch("t", resource, tuple(metrics), S))  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_metric(), min_size=1, max_size=6), st.integers(1500, 6000))
def test_property_split_preserves_points(metrics: list[Metric], limit: int) -> None:
    batch = TargetBatch("t", (), tuple(metrics), S)
    r = encode_requests(batch, max_request_bytes=limit)     # a point bigger than the limit is dropped alone
    assert all(len(req) <= limit for req in r.requests)
    whole = build_request(batch)
    got_points = sum(len(getattr(m, m.WhichOneof("data")).data_points)
                     for req in r.requests for rm in decode(req).resource_metrics
                     for sm in rm.scope_metrics for m in sm.metrics)
    want_points = sum(len(getattr(m, m.WhichOneof("data")).data_points)
                      for rm in whole.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)
    assert got_points == r.points == sum(r.request_points)
    assert got_points + r.dropped_oversized == want_points
    assert r.dropped_oversized == sum(d.points for d in r.oversized)
    assert all(d.needed_bytes > limit for d in r.oversized)
    assert r.request_points == tuple(count_points(decode(req)) for req in r.requests)


def test_attribute_values_equal_across_types_keep_their_own_type() -> None:
    """True == 1 == 1.0 in Python (and hash alike): the attribute cache must not hand one type's
    encoding to another (found by the property test above)."""
    from promotel.model import Kind, Metric, NumberPoint, TargetBatch

    def kinds(value: object) -> str:
        m = Metric("m", "", "", Kind.GAUGE, (NumberPoint((("k", value),), 1.0, time_ns=5),))  # type: ignore[arg-type]
        req = ExportMetricsServiceRequest.FromString(encode_requests(TargetBatch("t", (), (m,), 5)).requests[0])
        kv = req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].attributes[0]
        return str(kv.value.WhichOneof("value"))

    assert [kinds(v) for v in (1, True, 1.0, 0, False, 0.0)] == [
        "int_value", "bool_value", "double_value", "int_value", "bool_value", "double_value"]


# ─── counts that do not fit a uint64 ──────────────────────────────────────────────────────────

T0 = 1_700_000_000_000_000_000


def test_histogram_count_of_2_pow_64_is_dropped_not_failing_the_whole_batch() -> None:
    # float(2**64 - 1) rounds up to 2**64, so "<= float(2**64 - 1)" let 2**64 through; the encoder's
    # struct.pack('<Q') then failed and the exporter dropped the whole batch of the target.
    big = float(2**64)
    f = fam("h", "histogram",
            ("h_bucket", {"k": "big", "le": "1"}, 0.0), ("h_bucket", {"k": "big", "le": "+Inf"}, big),
            ("h_count", {"k": "big"}, big), ("h_sum", {"k": "big"}, 1.0),
            ("h_bucket", {"k": "ok", "le": "1"}, 1.0), ("h_bucket", {"k": "ok", "le": "+Inf"}, 2.0),
            ("h_count", {"k": "ok"}, 2.0), ("h_sum", {"k": "ok"}, 1.0))
    a = assemble(f)
    assert a.dropped == 1 and a.reasons == ("histogram_bad_count",)
    points = tuple(p for _, _, pts in a.groups for p in pts)
    assert [p.attributes for p in points] == [(("k", "ok"),)]
    # What is left encodes (with start/time set as convert would).
    pts = tuple(p._replace(start_ns=T0, time_ns=T0 + S) for p in points)
    batch = TargetBatch("t", (), (Metric("h", "", "s", Kind.HISTOGRAM, pts),), T0 + S)
    assert encode_requests(batch).points == 1


# ─── size limits per point: an oversized point is dropped alone ──────────────────────────────

def _names_and_values(requests: tuple[bytes, ...]) -> list[tuple[str, float]]:
    return [(m.name, dp.as_double) for req in requests for rm in decode(req).resource_metrics
            for sm in rm.scope_metrics for m in sm.metrics for dp in getattr(m, m.WhichOneof("data")).data_points]


def test_oversized_point_is_dropped_alone_the_rest_goes_out(caplog: pytest.LogCaptureFixture) -> None:
    """One label value of 5 MiB (over the default 4 MiB request limit) used to fail the target's whole batch,
    so ``up`` and ``scrape_*`` vanished every scrape; now only that point is dropped, counted and logged once
    per (exporter, metric) with the metric's name and the point's size."""
    huge = "x" * (5 * 1024 * 1024)
    metrics = (
        Metric("up", "", "", Kind.GAUGE, (NumberPoint((), 1.0, time_ns=S),)),
        Metric("requests", "", "1", Kind.SUM, (NumberPoint((("model", "a"),), 1.0, start_ns=S, time_ns=2 * S),
                                               NumberPoint((("model", huge),), 2.0, start_ns=S, time_ns=2 * S),
                                               NumberPoint((("model", "b"),), 3.0, start_ns=S, time_ns=2 * S)),
               monotonic=True),
        Metric("scrape_duration_seconds", "", "s", Kind.GAUGE, (NumberPoint((), 0.25, time_ns=S),)),
        Metric("scrape_samples_scraped", "", "", Kind.GAUGE, (NumberPoint((), 4.0, time_ns=S),)),
    )
    batch = TargetBatch("t", (("service.name", "svc"),), metrics, 2 * S)
    with caplog.at_level(logging.WARNING, logger="promotel.export"):
        r = encode_requests(batch, exporter="oversize-test")
    assert all(len(req) <= 4 * 1024 * 1024 for req in r.requests)
    assert _names_and_values(r.requests) == [("up", 1.0), ("requests", 1.0), ("requests", 3.0),
                                             ("scrape_duration_seconds", 0.25), ("scrape_samples_scraped", 4.0)]
    assert r.points == sum(r.request_points) == 5
    assert r.dropped_oversized == 1
    (dropped,) = r.oversized
    assert dropped.metric == "requests" and dropped.points == 1
    assert len(huge) < dropped.largest_bytes < dropped.needed_bytes
    (record,) = [rec for rec in caplog.records if "oversize-test" in rec.getMessage()]
    text = record.getMessage()
    assert "metric requests" in text and str(dropped.largest_bytes) in text and "max_request_bytes" in text
    # Logged once per metric and exporter; still counted every time.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="promotel.export"):
        again = encode_requests(batch, exporter="oversize-test")
        other = encode_requests(batch, exporter="oversize-test-2")
    assert again.dropped_oversized == other.dropped_oversized == 1
    assert [rec.getMessage().split()[1] for rec in caplog.records] == ["oversize-test-2"]


def test_points_that_fit_only_alone_still_go_out_next_to_a_dropped_one() -> None:
    """Dropping happens only when a point does not fit in an empty request: a point that merely does not fit
    next to others starts a new request, as before, and the points around a dropped one keep their order."""
    pad = "p" * 700
    points = (NumberPoint((("i", "0"), ("pad", pad)), 0.0, time_ns=S),
              NumberPoint((("i", "1"), ("pad", pad * 3)), 1.0, time_ns=S),     # ~2.1 kB: over the limit
              NumberPoint((("i", "2"), ("pad", pad)), 2.0, time_ns=S),
              NumberPoint((("i", "3"), ("pad", pad)), 3.0, time_ns=S))
    batch = TargetBatch("t", (), (Metric("m", "", "", Kind.GAUGE, points),), S)
    r = encode_requests(batch, max_request_bytes=1500, exporter="fit-alone-test")
    assert all(len(req) <= 1500 for req in r.requests)
    assert [v for _, v in _names_and_values(r.requests)] == [0.0, 2.0, 3.0]
    assert r.request_points == (1, 1, 1) and r.dropped_oversized == 1


# ─── split_request: one serialized request into two halves ───────────────────────────────────

def _flat_points(data: bytes) -> list[tuple[bytes, str, bytes, str, bytes, bytes]]:
    """Every data point of a request with everything around it (resource, scope, metric envelope), serialized
    deterministically, in request order."""
    out = []
    for rm in decode(data).resource_metrics:
        resource = rm.resource.SerializeToString(deterministic=True)
        for sm in rm.scope_metrics:
            scope = sm.scope.SerializeToString(deterministic=True)
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                envelope = pb.Metric()
                envelope.CopyFrom(m)
                getattr(envelope, kind).ClearField("data_points")
                env = envelope.SerializeToString(deterministic=True)
                for dp in getattr(m, kind).data_points:
                    out.append((resource, rm.schema_url, scope, sm.schema_url, env,
                                dp.SerializeToString(deterministic=True)))
    return out


def _check_split(request: bytes) -> tuple[bytes, bytes]:
    points = _flat_points(request)
    first, second = split_request(request)
    assert len(first) < len(request) and len(second) < len(request)
    got_first, got_second = _flat_points(first), _flat_points(second)
    assert len(got_first) == len(points) // 2 and len(got_second) == len(points) - len(points) // 2
    assert got_first + got_second == points            # the same points, envelopes and order, each once
    return first, second


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.lists(_metric(), min_size=1, max_size=5), _attrs), min_size=1, max_size=3))
def test_property_split_request_halves_hold_exactly_the_points(
        targets: list[tuple[list[Metric], tuple[tuple[str, object], ...]]]) -> None:
    # Two serialized requests one after the other are one request with both resources' ResourceMetrics
    # (protobuf concatenates repeated fields), so this also covers requests with several resources.
    request = b"".join(encode_requests(TargetBatch("t", resource, tuple(metrics), S)).requests[0]  # type: ignore[arg-type]
                       for metrics, resource in targets)
    if len(_flat_points(request)) < 2:
        with pytest.raises(ExportError) as info:
            split_request(request)
        assert info.value.kind == "too_large" and not info.value.retryable
        return
    _check_split(request)


def test_split_request_repeatedly_down_to_single_points() -> None:
    """What the queue does under a backend that keeps answering 413: halves of halves, down to one point each,
    lose and duplicate nothing."""
    request = encode_requests(sample_batch()).requests[0]
    points = _flat_points(request)
    pending, singles = [request], []
    for _ in range(200):                  # bounded: 2n - 1 requests at most for n points
        if not pending:
            break
        req = pending.pop(0)
        if len(_flat_points(req)) == 1:
            with pytest.raises(ExportError) as info:
                split_request(req)
            assert info.value.kind == "too_large"
            singles.append(req)
        else:
            pending.extend(_check_split(req))
    assert not pending
    assert sorted(p for req in singles for p in _flat_points(req)) == sorted(points)
    assert len(singles) == len(points) == 11


def test_split_request_of_a_request_from_elsewhere_keeps_every_field() -> None:
    """A request built with the official classes, with what promotel never writes (schema URLs, scope
    attributes, an exponential histogram, metric metadata, a metric without points): every envelope field
    survives in each half that carries its points, and the metric without points is in one half only."""
    rm = pb.ResourceMetrics(schema_url="https://opentelemetry.io/schemas/1.21.0")
    rm.resource.attributes.add(key="service.name").value.string_value = "elsewhere"
    sm = rm.scope_metrics.add(schema_url="s1")
    sm.scope.name, sm.scope.version = "lib", "2"
    sm.scope.attributes.add(key="lib.attr").value.int_value = 7
    eh = sm.metrics.add(name="eh", unit="s")
    eh.metadata.add(key="k").value.string_value = "v"
    eh.exponential_histogram.aggregation_temporality = pb.AGGREGATION_TEMPORALITY_DELTA
    for i in range(3):
        dp = eh.exponential_histogram.data_points.add(count=i + 1, scale=2, zero_count=1, time_unix_nano=S)
        dp.positive.offset, dp.positive.bucket_counts[:] = -1, [1, 2, i]
    sm.metrics.add(name="empty", description="no points").gauge.SetInParent()
    g = sm.metrics.add(name="g")
    for i in range(2):
        g.gauge.data_points.add(as_int=i, time_unix_nano=S).attributes.add(key="i").value.int_value = i
    request = ExportMetricsServiceRequest(resource_metrics=[rm]).SerializeToString()
    first, second = _check_split(request)
    names = [[m.name for r in decode(half).resource_metrics for s in r.scope_metrics for m in s.metrics]
             for half in (first, second)]
    # 5 points, 2 | 3: "eh" is divided (its envelope in both halves), "empty" goes with the first half.
    assert names == [["eh", "empty"], ["eh", "g"]]
    (rm2,) = decode(second).resource_metrics
    assert rm2.schema_url == rm.schema_url and rm2.scope_metrics[0].scope.attributes[0].value.int_value == 7
    eh2 = rm2.scope_metrics[0].metrics[0]
    assert eh2.metadata[0].value.string_value == "v"
    assert eh2.exponential_histogram.aggregation_temporality == pb.AGGREGATION_TEMPORALITY_DELTA
    assert [dp.count for dp in eh2.exponential_histogram.data_points] == [3]


def test_split_request_refuses_a_single_point_naming_its_metric() -> None:
    batch = TargetBatch("t", (), (Metric("lonely", "", "", Kind.GAUGE, (NumberPoint((), 1.0, time_ns=S),)),), S)
    (request,) = encode_requests(batch).requests
    with pytest.raises(ExportError) as info:
        split_request(request)
    assert info.value.kind == "too_large" and not info.value.retryable
    assert "single data point (metric lonely)" in str(info.value) and str(len(request)) in str(info.value)
    with pytest.raises(ExportError) as empty:
        split_request(b"")
    assert empty.value.kind == "too_large" and "no data point" in str(empty.value)


def test_split_request_of_malformed_bytes_is_a_protocol_error() -> None:
    request = encode_requests(sample_batch()).requests[0]
    for bad in (request[:-3], request[:40], b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x0b"):
        with pytest.raises(ExportError) as info:
            split_request(bad)
        assert info.value.kind == "protocol" and "ExportMetricsServiceRequest" in str(info.value), bad


def test_split_request_with_points_interleaved_with_other_fields_and_an_overlong_tag() -> None:
    """Protobuf lets fields come in any order and a tag be an overlong varint; the splitter finds the data
    points wherever they are (here: a point, the Sum's temporality, two points, a point whose tag 0x0A is
    written as the two bytes 0x8A 0x00) and keeps the temporality in both halves."""
    def point(i: int) -> bytes:
        return pb.NumberDataPoint(as_double=float(i), time_unix_nano=S).SerializeToString()

    def points_field(i: int) -> bytes:
        return pb.Sum(data_points=[pb.NumberDataPoint.FromString(point(i))]).SerializeToString()

    overlong = b"\x8a\x00" + wire.varint(len(point(3))) + point(3)
    tail = pb.Sum(aggregation_temporality=pb.AGGREGATION_TEMPORALITY_CUMULATIVE, is_monotonic=True).SerializeToString()
    sum_bytes = points_field(0) + tail + points_field(1) + points_field(2) + overlong
    metric = pb.Metric(name="m").SerializeToString() + wire.len_field(wire.F_METRIC_SUM, sum_bytes)
    scope = pb.ScopeMetrics(scope={"name": "s"}).SerializeToString() + wire.len_field(wire.F_SM_METRICS, metric)
    request = wire.len_field(wire.F_REQUEST_RESOURCE_METRICS, wire.len_field(wire.F_RM_SCOPE_METRICS, scope))
    (m,) = decode(request).resource_metrics[0].scope_metrics[0].metrics
    assert [dp.as_double for dp in m.sum.data_points] == [0.0, 1.0, 2.0, 3.0] and m.sum.is_monotonic
    first, second = _check_split(request)
    for half in (first, second):
        (mh,) = decode(half).resource_metrics[0].scope_metrics[0].metrics
        assert mh.sum.is_monotonic and mh.sum.aggregation_temporality == pb.AGGREGATION_TEMPORALITY_CUMULATIVE
        assert half.count(tail) == 1                    # the envelope once, not again from between the points
