"""OTLP protobuf encoding of a TargetBatch, split into requests under a size limit.

Building upb messages point by point costs ~15 µs a point, too slow for 150k-sample scrapes. So the
small envelopes (Resource, InstrumentationScope, the Metric header with its ``prometheus.type``
metadata, the Sum/Histogram temporality tail) and attribute KeyValues are serialized with the
official ``opentelemetry.proto`` classes and cached; only the fixed-layout data-point fields
(fixed64 times, doubles, packed bucket counts and bounds, flags) are written here with ``struct``.
Protobuf allows a message to be written as the concatenation of its fields in any order, each field
as ``tag (field << 3 | wire type)`` followed by its payload, which is what makes this possible. The
field numbers come from the installed descriptors (checked at import in ``promotel.export.wire``). The tests compare
the bytes with a reference built from the official classes only (``tests/support/reference_encoder.py``).

Size limits apply per data point, not per batch: a point that cannot fit in any request under the
exporter's limit, even alone with its resource, scope and metric envelopes, is dropped by itself, counted
in ``EncodeResult.oversized`` and logged once per (exporter, metric); the rest of the batch, ``up`` and
``scrape_*`` included, is encoded as usual. ``split_request`` divides an already serialized request in
two, for a backend that answers "too large" (HTTP 413) to a request under the configured limit.

Module state: two bounded caches (serialized attributes per Attributes tuple, metric headers), both
pure functions of their keys, and the bounded set of (exporter, metric) pairs whose oversized points
were already logged.
"""

from __future__ import annotations

import functools
import logging
import struct
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from promotel.errors import ExportError
from promotel.export.split import split_request
from promotel.export.wire import (
    F_DATA_POINTS,
    F_EX_AS_DOUBLE,
    F_EX_FILTERED_ATTRIBUTES,
    F_EX_SPAN_ID,
    F_EX_TIME,
    F_EX_TRACE_ID,
    F_HDP_ATTRIBUTES,
    F_HDP_BUCKET_COUNTS,
    F_HDP_COUNT,
    F_HDP_EXEMPLARS,
    F_HDP_EXPLICIT_BOUNDS,
    F_HDP_FLAGS,
    F_HDP_START,
    F_HDP_SUM,
    F_HDP_TIME,
    F_METRIC_GAUGE,
    F_METRIC_HISTOGRAM,
    F_METRIC_SUM,
    F_METRIC_SUMMARY,
    F_NDP_AS_DOUBLE,
    F_NDP_ATTRIBUTES,
    F_NDP_EXEMPLARS,
    F_NDP_FLAGS,
    F_NDP_START,
    F_NDP_TIME,
    F_REQUEST_RESOURCE_METRICS,
    F_RM_RESOURCE,
    F_RM_SCOPE_METRICS,
    F_SDP_ATTRIBUTES,
    F_SDP_COUNT,
    F_SDP_FLAGS,
    F_SDP_QUANTILES,
    F_SDP_START,
    F_SDP_SUM,
    F_SDP_TIME,
    F_SM_METRICS,
    F_SM_SCOPE,
    F_VAQ_QUANTILE,
    F_VAQ_VALUE,
    I64,
    LEN,
    NO_RECORDED_VALUE,
    SMALL_VARINTS,
    VARINT,
    len_field,
    raw_varint,
    tag,
    varint,
)
from promotel.model import (
    Attributes,
    AttrValue,
    Exemplar,
    HistogramPoint,
    Kind,
    Metric,
    Point,
    SummaryPoint,
    TargetBatch,
    Temporality,
)

DEFAULT_SCOPE_NAME = "promotel"

log = logging.getLogger("promotel.export")

_TEMPORALITY = {Temporality.DELTA: pb.AGGREGATION_TEMPORALITY_DELTA,
                Temporality.CUMULATIVE: pb.AGGREGATION_TEMPORALITY_CUMULATIVE}


# Fixed-layout heads (one-byte tags, checked above): start (fixed64), time (fixed64), then a double
# (value / sum) or a fixed64 (count).
_NUM_HEAD = struct.Struct("<BQBQBd")            # start, time, as_double
_NUM_HEAD_NOSTART = struct.Struct("<BQBd")      # time, as_double (gauges: start 0 is the proto3 default)
_CNT_HEAD = struct.Struct("<BQBQBQ")            # start, time, count
_DOUBLE_FIELD = struct.Struct("<Bd")
_FIXED64_FIELD = struct.Struct("<BQ")
_QUANTILE = struct.Struct("<BBBdBd")           # LEN tag, length 18, quantile double, value double

_T_NDP_START, _T_NDP_TIME, _T_NDP_VALUE = tag(F_NDP_START, I64), tag(F_NDP_TIME, I64), tag(F_NDP_AS_DOUBLE, I64)
_T_HDP_START, _T_HDP_TIME = tag(F_HDP_START, I64), tag(F_HDP_TIME, I64)
_T_HDP_COUNT, _T_HDP_SUM = tag(F_HDP_COUNT, I64), tag(F_HDP_SUM, I64)
_T_SDP_START, _T_SDP_TIME = tag(F_SDP_START, I64), tag(F_SDP_TIME, I64)
_T_SDP_COUNT, _T_SDP_SUM = tag(F_SDP_COUNT, I64), tag(F_SDP_SUM, I64)
_NDP_FLAGS_NRV = bytes((tag(F_NDP_FLAGS, VARINT), NO_RECORDED_VALUE))
_HDP_FLAGS_NRV = bytes((tag(F_HDP_FLAGS, VARINT), NO_RECORDED_VALUE))
_SDP_FLAGS_NRV = bytes((tag(F_SDP_FLAGS, VARINT), NO_RECORDED_VALUE))
_T_BUCKETS = bytes((tag(F_HDP_BUCKET_COUNTS, LEN),))
_T_BOUNDS = bytes((tag(F_HDP_EXPLICIT_BOUNDS, LEN),))
_T_DATA_POINT = bytes((tag(F_DATA_POINTS, LEN),))
_QUANTILE_PREFIX = (tag(F_SDP_QUANTILES, LEN), 18, tag(F_VAQ_QUANTILE, I64), tag(F_VAQ_VALUE, I64))

_packers: dict[str, struct.Struct] = {}


def _packer(fmt: str) -> struct.Struct:
    s = _packers.get(fmt)
    if s is None:
        s = _packers[fmt] = struct.Struct(fmt)
    return s


# ─── attributes ──────────────────────────────────────────────────────────────────────────────

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def any_value(value: AttrValue) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return AnyValue(int_value=value)
        return AnyValue(double_value=float(value))
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def key_values(attrs: Iterable[tuple[str, AttrValue]]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attrs]


_CACHE_LIMIT = 300_000
_pair_cache: dict[tuple[str, AttrValue, type], bytes] = {}
_attr_cache: dict[int, dict[Attributes, tuple[Attributes, bytes]]] = {}


def _pair_bytes(key: str, value: AttrValue) -> bytes:
    ck = (key, value, type(value))        # 1 == 1.0 == True as dict keys: keep the types apart
    b = _pair_cache.get(ck)
    if b is None:
        b = KeyValue(key=key, value=any_value(value)).SerializeToString()
        if len(_pair_cache) >= _CACHE_LIMIT:
            _pair_cache.clear()
        _pair_cache[ck] = b
    return b


def attributes_field(attrs: Attributes, field: int) -> bytes:
    """The repeated KeyValue ``field`` of a data point, serialized (cached per Attributes tuple).

    Python compares ``True == 1 == 1.0`` and hashes them alike, so two Attributes that differ only
    in a value's type are one dict key; OTLP encodes them differently (bool_value, int_value,
    double_value). A hit is taken when it is the very tuple cached (the mapping caches reuse their
    Attributes, so this is the common case) or when its value types match; otherwise re-encode.
    """
    cache = _attr_cache.get(field)
    if cache is None:
        cache = _attr_cache[field] = {}
    hit = cache.get(attrs)
    if hit is not None:
        cached_attrs, b = hit
        if cached_attrs is attrs or all(type(a[1]) is type(c[1]) for a, c in zip(attrs, cached_attrs)):
            return b
    head = bytes((tag(field, LEN),))
    parts = []
    for k, v in attrs:
        kv = _pair_bytes(k, v)
        parts.append(head + varint(len(kv)) + kv)
    b = b"".join(parts)
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[attrs] = (attrs, b)
    return b


# ─── exemplars ───────────────────────────────────────────────────────────────────────────────


def _hex_id(text: str | None, size: int) -> bytes | None:
    if text is None or len(text) != 2 * size:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def exemplar_parts(ex: Exemplar, point_time: int) -> tuple[Attributes, int, float, bytes | None, bytes | None]:
    """(filtered attributes, time, value, span_id, trace_id): ``trace_id``/``span_id`` labels in hex
    become the ids, every other label a filtered attribute; no timestamp → the point's time."""
    labels = ex.labels
    trace = _hex_id(labels.get("trace_id"), 16)
    span = _hex_id(labels.get("span_id"), 8)
    attrs: list[tuple[str, AttrValue]] = []
    for k, v in labels.sorted_pairs():
        if (k == "trace_id" and trace is not None) or (k == "span_id" and span is not None):
            continue
        attrs.append((k, v))
    t = ex.timestamp_ns if ex.timestamp_ns is not None else point_time
    return tuple(attrs), t, float(ex.value), span, trace


def _exemplar_field(ex: Exemplar, point_time: int, field: int) -> bytes:
    attrs, t, value, span, trace = exemplar_parts(ex, point_time)
    body = attributes_field(attrs, F_EX_FILTERED_ATTRIBUTES)
    body += _FIXED64_FIELD.pack(tag(F_EX_TIME, I64), t) + _DOUBLE_FIELD.pack(tag(F_EX_AS_DOUBLE, I64), value)
    if span is not None:
        body += len_field(F_EX_SPAN_ID, span)
    if trace is not None:
        body += len_field(F_EX_TRACE_ID, trace)
    return len_field(field, body)


# ─── data points (hand-encoded) ──────────────────────────────────────────────────────────────


def _number_points(points: Sequence[Point], attrs_of: Any) -> list[bytes]:
    out: list[bytes] = []
    append = out.append
    num_head, num_nostart = _NUM_HEAD.pack, _NUM_HEAD_NOSTART.pack
    dp = _T_DATA_POINT
    for p in points:
        start = p.start_ns
        if start:
            body = attrs_of(p.attributes, F_NDP_ATTRIBUTES) + num_head(
                _T_NDP_START, start, _T_NDP_TIME, p.time_ns, _T_NDP_VALUE, p.value)  # type: ignore[union-attr]
        else:
            body = attrs_of(p.attributes, F_NDP_ATTRIBUTES) + num_nostart(
                _T_NDP_TIME, p.time_ns, _T_NDP_VALUE, p.value)  # type: ignore[union-attr]
        if p.exemplars:  # type: ignore[union-attr]
            body += b"".join(_exemplar_field(e, p.time_ns, F_NDP_EXEMPLARS)
                             for e in p.exemplars)  # type: ignore[union-attr]
        if p.no_recorded_value:
            body += _NDP_FLAGS_NRV
        n = len(body)
        append(dp + (SMALL_VARINTS[n] if n < 16384 else raw_varint(n)) + body)
    return out


def _histogram_points(points: Sequence[Point], attrs_of: Any) -> list[bytes]:
    out: list[bytes] = []
    append = out.append
    head = _CNT_HEAD.pack
    dbl = _DOUBLE_FIELD.pack
    dp = _T_DATA_POINT
    for p in points:
        h: HistogramPoint = p  # type: ignore[assignment]
        parts = [attrs_of(h.attributes, F_HDP_ATTRIBUTES),
                 head(_T_HDP_START, h.start_ns, _T_HDP_TIME, h.time_ns, _T_HDP_COUNT, int(h.count))]
        if h.sum is not None:
            parts.append(dbl(_T_HDP_SUM, h.sum))
        counts = h.counts
        if counts:
            n = len(counts)
            parts.append(_T_BUCKETS + varint(8 * n) + _packer(f"<{n}Q").pack(*[int(c) for c in counts]))
        bounds = h.bounds
        if bounds:
            n = len(bounds)
            parts.append(_T_BOUNDS + varint(8 * n) + _packer(f"<{n}d").pack(*bounds))
        if h.exemplars:
            for e in h.exemplars:
                parts.append(_exemplar_field(e, h.time_ns, F_HDP_EXEMPLARS))
        if h.no_recorded_value:
            parts.append(_HDP_FLAGS_NRV)
        body = b"".join(parts)
        append(dp + varint(len(body)) + body)
    return out


def _summary_points(points: Sequence[Point], attrs_of: Any) -> list[bytes]:
    out: list[bytes] = []
    head = _CNT_HEAD.pack
    dbl = _DOUBLE_FIELD.pack
    q_pack = _QUANTILE.pack
    t_q, q_len, t_qq, t_qv = _QUANTILE_PREFIX
    for p in points:
        s: SummaryPoint = p  # type: ignore[assignment]
        parts = [attrs_of(s.attributes, F_SDP_ATTRIBUTES),
                 head(_T_SDP_START, s.start_ns, _T_SDP_TIME, s.time_ns, _T_SDP_COUNT, int(s.count)),
                 dbl(_T_SDP_SUM, s.sum)]
        for q, v in s.quantiles:
            parts.append(q_pack(t_q, q_len, t_qq, q, t_qv, v))
        if s.no_recorded_value:
            parts.append(_SDP_FLAGS_NRV)
        body = b"".join(parts)
        out.append(_T_DATA_POINT + varint(len(body)) + body)
    return out


_POINT_ENCODERS = {Kind.GAUGE: _number_points, Kind.SUM: _number_points,
                   Kind.HISTOGRAM: _histogram_points, Kind.SUMMARY: _summary_points}
_DATA_FIELD = {Kind.GAUGE: F_METRIC_GAUGE, Kind.SUM: F_METRIC_SUM,
               Kind.HISTOGRAM: F_METRIC_HISTOGRAM, Kind.SUMMARY: F_METRIC_SUMMARY}


# ─── envelopes (official classes, cached) ────────────────────────────────────────────────────


@functools.cache
def _scope_version() -> str:
    from promotel import (
        __version__,  # imported late: promotel/__init__ imports the parse stage
    )

    return __version__


def scope_of(metric: Metric) -> tuple[str, str]:
    if metric.scope_name:
        return metric.scope_name, metric.scope_version
    return DEFAULT_SCOPE_NAME, _scope_version()


def metric_header(metric: Metric) -> pb.Metric:
    """The Metric without data: name, description, unit and the ``prometheus.type`` metadata."""
    m = pb.Metric(name=metric.name, description=metric.description, unit=metric.unit)
    if metric.prom_type:
        m.metadata.append(KeyValue(key="prometheus.type", value=AnyValue(string_value=metric.prom_type)))
    return m


_header_cache: dict[tuple[str, str, str, str], bytes] = {}


def _header_bytes(metric: Metric) -> bytes:
    key = (metric.name, metric.description, metric.unit, metric.prom_type)
    b = _header_cache.get(key)
    if b is None:
        b = metric_header(metric).SerializeToString()
        if len(_header_cache) >= 10_000:
            _header_cache.clear()
        _header_cache[key] = b
    return b


def _tail_bytes(metric: Metric) -> bytes:
    """The non-point fields of the data message (Sum: temporality, monotonic; Histogram: temporality)."""
    kind = metric.kind
    out: bytes = b""
    if kind is Kind.SUM:
        out = pb.Sum(aggregation_temporality=_TEMPORALITY[metric.temporality],
                     is_monotonic=metric.monotonic).SerializeToString()
    elif kind is Kind.HISTOGRAM:
        out = pb.Histogram(aggregation_temporality=_TEMPORALITY[metric.temporality]).SerializeToString()
    return out


# ─── requests and splitting ──────────────────────────────────────────────────────────────────


class OversizedPoints(NamedTuple):
    """The data points of one metric dropped because none of them fits in a request under the limit."""

    metric: str            # the metric's name
    points: int            # how many of its points were dropped
    largest_bytes: int     # the largest of them, serialized (the data point alone)
    needed_bytes: int      # the smallest request that could carry it (resource, scope, metric envelopes included)


class EncodeResult(NamedTuple):
    requests: tuple[bytes, ...]     # serialized ExportMetricsServiceRequest messages, each ≤ the limit
    points: int                     # data points encoded (all requests; dropped oversized points excluded)
    dropped_attributes: int         # attributes cut by max_attributes
    request_points: tuple[int, ...]  # data points in each request, parallel to ``requests``
    dropped_oversized: int = 0      # data points dropped because alone they exceed the request limit
    oversized: tuple[OversizedPoints, ...] = ()   # those drops per metric, in batch order


_LEN_OVERHEAD = 6        # one tag byte + a length varint of at most 5 bytes (messages < 32 GiB)


class _Chunk(NamedTuple):
    header: bytes
    field: int
    tail: bytes
    points: list[bytes]


def _build(resource_field: bytes, scopes: list[tuple[bytes, list[_Chunk]]]) -> bytes:
    sm_parts: list[bytes] = []
    for scope_field, chunks in scopes:
        metric_parts = [scope_field]
        for c in chunks:
            data = b"".join(c.points) + c.tail
            body = c.header + len_field(c.field, data)
            metric_parts.append(len_field(F_SM_METRICS, body))
        sm_parts.append(len_field(F_RM_SCOPE_METRICS, b"".join(metric_parts)))
    rm = resource_field + b"".join(sm_parts)
    return len_field(F_REQUEST_RESOURCE_METRICS, rm)


_OVERSIZED_LOGGED: set[tuple[str, str]] = set()
_OVERSIZED_LOG_LIMIT = 10_000


def _log_oversized(exporter: str, target: str, limit: int, dropped: tuple[OversizedPoints, ...]) -> None:
    """One warning per (exporter, metric) for the life of the process; the counts keep counting."""
    who = f"Exporter {exporter}" if exporter else f"The exporter with max_request_bytes {limit}"
    for d in dropped:
        key = (exporter or str(limit), d.metric)
        if key in _OVERSIZED_LOGGED:
            continue
        if len(_OVERSIZED_LOGGED) >= _OVERSIZED_LOG_LIMIT:
            _OVERSIZED_LOGGED.clear()
        _OVERSIZED_LOGGED.add(key)
        log.warning(
            "%s dropped %d data point(s) of metric %s (target %s): the largest takes %d bytes, %d bytes with its "
            "resource, scope and metric envelopes, more than max_request_bytes (%d). The rest of the batch is sent. "
            "Raise max_request_bytes, or shorten the label values that make the point this large at the target; "
            "further drops of this metric are counted, not logged.",
            who, d.points, d.metric, target, d.largest_bytes, d.needed_bytes, limit,
            extra={"fields": {"exporter": exporter, "metric": d.metric, "point_bytes": d.largest_bytes,
                              "max_request_bytes": limit, "error.type": "too_large"}})


def encode_requests(batch: TargetBatch, max_request_bytes: int = 4 * 1024 * 1024,
                    max_attributes: int | None = None, *, exporter: str = "") -> EncodeResult:
    """Encode one target's batch as ExportMetricsServiceRequest bytes, split under ``max_request_bytes``.

    Metrics of one scope share one ScopeMetrics per request; a metric too large for the room left is
    split between its points (the header is repeated). Order is preserved. ``request_points`` counts
    the data points of each request, so nobody decodes the bytes again to count them. A data point
    that does not fit even alone in a fresh request (with the resource, its scope and its metric's
    envelope) is dropped by itself: counted in ``dropped_oversized``/``oversized`` and logged once per
    (``exporter``, metric); everything else is encoded.
    """
    dropped_attrs = 0
    if max_attributes is None:
        attrs_of = attributes_field
    else:
        limit = max(0, max_attributes)
        cut = [0]

        def attrs_of(attrs: Attributes, field: int) -> bytes:
            if len(attrs) > limit:
                cut[0] += len(attrs) - limit
                attrs = attrs[:limit]
            return attributes_field(attrs, field)

    resource_field = len_field(F_RM_RESOURCE, Resource(attributes=key_values(batch.resource)).SerializeToString())
    # Group by scope in order of first appearance.
    by_scope: dict[tuple[str, str], list[Metric]] = {}
    for m in batch.metrics:
        if m.points:
            by_scope.setdefault(scope_of(m), []).append(m)

    requests: list[bytes] = []
    request_points: list[int] = []
    total_points = 0
    # Oversized points per metric name: [points, largest point, bytes needed]. Filled only on the slow path
    # below (a point that fits nowhere), so the common case pays nothing per point for the check.
    oversized: dict[str, list[int]] = {}
    base = _LEN_OVERHEAD + len(resource_field)
    cur: list[tuple[bytes, list[_Chunk]]] = []
    cur_points = 0                      # data points in ``cur``
    size = base
    for (scope_name, scope_version), metrics in by_scope.items():
        scope_field = len_field(F_SM_SCOPE, InstrumentationScope(name=scope_name,
                                                                   version=scope_version).SerializeToString())
        scope_cost = _LEN_OVERHEAD + len(scope_field)
        scope_open = False
        for metric in metrics:
            try:
                encoded = _POINT_ENCODERS[metric.kind](metric.points, attrs_of)
            except (struct.error, OverflowError, ValueError, TypeError) as exc:
                raise ExportError(f"Metric {metric.name} of target {batch.target} has a value OTLP cannot carry "
                                  f"({exc}); this is a bug in the mapping or conversion, please report it.",
                                  retryable=False) from exc
            total_points += len(encoded)
            header = _header_bytes(metric)
            tail = _tail_bytes(metric)
            field = _DATA_FIELD[metric.kind]
            metric_cost = 2 * _LEN_OVERHEAD + len(header) + len(tail)
            i = 0
            n = len(encoded)
            while i < n:
                need = metric_cost + (0 if scope_open else scope_cost)
                room = max_request_bytes - size - need
                j = i
                used = 0
                while j < n and used + len(encoded[j]) <= room:
                    used += len(encoded[j])
                    j += 1
                if j == i:
                    if cur:                     # nothing fits next to what is there: start a new request
                        requests.append(_build(resource_field, cur))
                        request_points.append(cur_points)
                        cur, cur_points, size, scope_open = [], 0, base, False
                        continue
                    # Alone in an empty request the point still does not fit: no request under the limit
                    # can carry it. Drop this point only; the next one starts over in the same empty request.
                    point_bytes = len(encoded[i])
                    entry = oversized.get(metric.name)
                    if entry is None:
                        entry = oversized[metric.name] = [0, 0, 0]
                    entry[0] += 1
                    if point_bytes > entry[1]:
                        entry[1], entry[2] = point_bytes, point_bytes + need + base
                    i += 1
                    continue
                if not scope_open:
                    cur.append((scope_field, []))
                    size += scope_cost
                    scope_open = True
                cur[-1][1].append(_Chunk(header, field, tail, encoded[i:j]))
                cur_points += j - i
                size += metric_cost + used
                i = j
    if cur:
        requests.append(_build(resource_field, cur))
        request_points.append(cur_points)
    if max_attributes is not None:
        dropped_attrs = cut[0]
    if not oversized:
        return EncodeResult(tuple(requests), total_points, dropped_attrs, tuple(request_points))
    dropped = tuple(OversizedPoints(name, n, largest, needed) for name, (n, largest, needed) in oversized.items())
    dropped_points = sum(d.points for d in dropped)
    _log_oversized(exporter, batch.target, max_request_bytes, dropped)
    return EncodeResult(tuple(requests), total_points - dropped_points, dropped_attrs, tuple(request_points),
                        dropped_points, dropped)


__all__ = [
    "DEFAULT_SCOPE_NAME",
    "EncodeResult",
    "OversizedPoints",
    "encode_requests",
    "split_request",
]
