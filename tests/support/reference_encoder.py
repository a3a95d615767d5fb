"""The slow reference for ``promotel.export.encode``: a TargetBatch as one request built with the official
``opentelemetry.proto`` classes only (~15 µs a point). tests/export/test_encode.py checks that the hand
encoder's bytes decode to exactly this request.

It shares with the encoder only what is not wire format: the attribute value mapping (``key_values``),
the exemplar label split (``exemplar_parts``), the scope and the Metric header fields.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from promotel.export.encode import exemplar_parts, key_values, metric_header, scope_of
from promotel.model import (
    Exemplar,
    HistogramPoint,
    Kind,
    Metric,
    NumberPoint,
    SummaryPoint,
    TargetBatch,
    Temporality,
)

NO_RECORDED_VALUE = pb.DataPointFlags.Value("DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK")
TEMPORALITY = {Temporality.DELTA: pb.AGGREGATION_TEMPORALITY_DELTA,
               Temporality.CUMULATIVE: pb.AGGREGATION_TEMPORALITY_CUMULATIVE}


def pb_exemplars(exemplars: Sequence[Exemplar], point_time: int) -> list[pb.Exemplar]:
    out = []
    for ex in exemplars:
        attrs, t, value, span, trace = exemplar_parts(ex, point_time)
        e = pb.Exemplar(filtered_attributes=key_values(attrs), time_unix_nano=t, as_double=value)
        if span is not None:
            e.span_id = span
        if trace is not None:
            e.trace_id = trace
        out.append(e)
    return out


def pb_metric(metric: Metric) -> pb.Metric:
    m = metric_header(metric)
    kind = metric.kind
    flags = NO_RECORDED_VALUE
    if kind is Kind.GAUGE or kind is Kind.SUM:
        dps = []
        for p in metric.points:
            n: NumberPoint = p  # type: ignore[assignment]
            dps.append(pb.NumberDataPoint(
                attributes=key_values(n.attributes), start_time_unix_nano=n.start_ns, time_unix_nano=n.time_ns,
                as_double=float(n.value), exemplars=pb_exemplars(n.exemplars, n.time_ns),
                flags=flags if n.no_recorded_value else 0))
        if kind is Kind.GAUGE:
            m.gauge.data_points.extend(dps)
        else:
            m.sum.data_points.extend(dps)
            m.sum.aggregation_temporality = TEMPORALITY[metric.temporality]
            m.sum.is_monotonic = metric.monotonic
    elif kind is Kind.HISTOGRAM:
        m.histogram.aggregation_temporality = TEMPORALITY[metric.temporality]
        for p in metric.points:
            h: HistogramPoint = p  # type: ignore[assignment]
            dp = pb.HistogramDataPoint(
                attributes=key_values(h.attributes), start_time_unix_nano=h.start_ns, time_unix_nano=h.time_ns,
                count=int(h.count), bucket_counts=[int(c) for c in h.counts], explicit_bounds=list(h.bounds),
                exemplars=pb_exemplars(h.exemplars, h.time_ns), flags=flags if h.no_recorded_value else 0)
            if h.sum is not None:
                dp.sum = h.sum
            m.histogram.data_points.append(dp)
    else:
        for p in metric.points:
            s: SummaryPoint = p  # type: ignore[assignment]
            m.summary.data_points.append(pb.SummaryDataPoint(
                attributes=key_values(s.attributes), start_time_unix_nano=s.start_ns, time_unix_nano=s.time_ns,
                count=int(s.count), sum=s.sum,
                quantile_values=[pb.SummaryDataPoint.ValueAtQuantile(quantile=q, value=v) for q, v in s.quantiles],
                flags=flags if s.no_recorded_value else 0))
    return m


def build_request(batch: TargetBatch) -> ExportMetricsServiceRequest:
    """The whole batch as one request, built with the official classes (slow; the reference)."""
    rm = pb.ResourceMetrics(resource=Resource(attributes=key_values(batch.resource)))
    scopes: dict[tuple[str, str], pb.ScopeMetrics] = {}
    for metric in batch.metrics:
        if not metric.points:
            continue
        key = scope_of(metric)
        sm = scopes.get(key)
        if sm is None:
            sm = rm.scope_metrics.add()
            sm.scope.CopyFrom(InstrumentationScope(name=key[0], version=key[1]))
            scopes[key] = sm
        sm.metrics.append(pb_metric(metric))
    return ExportMetricsServiceRequest(resource_metrics=[rm])


def count_points(request: ExportMetricsServiceRequest) -> int:
    """Data points in a decoded request, whatever their kind."""
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind is not None:
                    total += len(getattr(m, kind).data_points)
    return total


__all__ = ["build_request", "count_points", "pb_exemplars", "pb_metric"]
