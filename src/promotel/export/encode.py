"""OTLP protobuf encoding of a TargetBatch, split into requests under a size limit.

Building upb messages point by point costs ~15 µs a point, too slow for 150k-sample scrapes. So the
small envelopes (Resource, InstrumentationScope, the Metric header with its ``prometheus.type``
metadata, the Sum/Histogram temporality tail) and attribute KeyValues are serialized with the
official ``opentelemetry.proto`` classes and cached; only the fixed-layout data-point fields
(fixed64 times, doubles, packed bucket counts and bounds, flags) are written here with ``struct``.
Protobuf allows a message to be written as the concatenation of its fields in any order, each field
as ``tag (field << 3 | wire type)`` followed by its payload, which is what makes this possible. The
field numbers come from the installed descriptors (checked at import, see below). The tests compare
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
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from google.protobuf.descriptor import FieldDescriptor
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from promotel.errors import ExportError
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

# ─── field numbers, from the official descriptors ────────────────────────────────────────────
#
# A field goes on the wire as ``tag (field number << 3 | wire type)`` then its payload; the wire type
# and the payload's layout follow from the field's protobuf type. The hand encoder below writes each
# field with a fixed layout (a one-byte tag, fixed64 times, doubles, packed repeated numbers), so every
# field number is read here from the installed ``opentelemetry-proto`` descriptors, once at import,
# together with a check that the field still has the type (and so the wire type and layout) the
# encoder writes. A ``metrics.proto`` that changed any of them fails the import with an error naming
# the field, instead of producing requests a backend would misread.

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5          # wire types

_DOUBLE, _FIXED64, _UINT32 = FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_UINT32
_BOOL, _ENUM = FieldDescriptor.TYPE_BOOL, FieldDescriptor.TYPE_ENUM
_BYTES, _MESSAGE = FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_MESSAGE

_LEN_TYPES = frozenset({FieldDescriptor.TYPE_STRING, _BYTES, _MESSAGE})
_WIRE_OF_TYPE = {
    FieldDescriptor.TYPE_DOUBLE: _I64, FieldDescriptor.TYPE_FIXED64: _I64, FieldDescriptor.TYPE_SFIXED64: _I64,
    FieldDescriptor.TYPE_FLOAT: _I32, FieldDescriptor.TYPE_FIXED32: _I32, FieldDescriptor.TYPE_SFIXED32: _I32,
    **dict.fromkeys(_LEN_TYPES, _LEN),
}                                                # every other scalar type (ints, bool, enum) is a varint
_TYPE_NAMES = {getattr(FieldDescriptor, k): k[len("TYPE_"):].lower()
               for k in dir(FieldDescriptor) if k.startswith("TYPE_")}


def _repeated(fd: Any) -> bool:
    is_repeated = getattr(fd, "is_repeated", None)          # protobuf ≥ 6; older releases have ``label``
    return bool(is_repeated) if is_repeated is not None else fd.label == FieldDescriptor.LABEL_REPEATED


def _packed(fd: Any) -> bool:
    is_packed = getattr(fd, "is_packed", None)
    if is_packed is not None:
        return bool(is_packed)
    # proto3 packs repeated numbers unless the field says ``packed = false`` (metrics.proto is proto3).
    options = fd.GetOptions()
    return _repeated(fd) and fd.type not in _LEN_TYPES and not (options.HasField("packed") and not options.packed)


def _layout(proto_type: int, repeated: bool, packed: bool) -> str:
    """How a field goes on the wire, e.g. ``packed repeated fixed64 (wire type 2)``."""
    wire = _LEN if packed else _WIRE_OF_TYPE.get(proto_type, _VARINT)
    kind = "packed repeated " if packed else "repeated " if repeated else ""
    return f"{kind}{_TYPE_NAMES.get(proto_type, proto_type)} (wire type {wire})"


def _field(message: Any, name: str, proto_type: int, *, repeated: bool = False) -> int:
    """The number of ``message.name``, checked to be laid out as the encoder writes it: ``proto_type``,
    repeated or not as given (repeated numbers packed, the proto3 default), with a one-byte tag (numbers
    1–15). Raises ExportError naming the field when the installed descriptor differs."""
    descriptor = message.DESCRIPTOR
    fd = descriptor.fields_by_name.get(name)
    want = _layout(proto_type, repeated, repeated and proto_type not in _LEN_TYPES)
    problem = ""
    if fd is None:
        problem = "does not exist"
    elif (got := _layout(fd.type, _repeated(fd), _packed(fd))) != want:
        problem = f"is {got}"
    elif not 1 <= fd.number <= 15:
        problem = f"has number {fd.number}, whose tag takes more than the one byte the encoder writes"
    if problem:
        raise ExportError(
            f"Field {descriptor.full_name}.{name} {problem} in the installed opentelemetry-proto "
            f"({_proto_version()}), but promotel.export.encode writes it as {want}. Install an "
            f"opentelemetry-proto release whose metrics.proto matches, or update the hand encoder.",
            kind="protocol")
    return int(fd.number)


def _proto_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("opentelemetry-proto")
    except PackageNotFoundError:
        return "version unknown"


def _same(numbers: Sequence[int], what: str) -> int:
    """One number for a field the encoder writes with one shared tag (``data_points`` of every kind)."""
    if len(set(numbers)) != 1:
        raise ExportError(f"{what} no longer share one field number in the installed opentelemetry-proto "
                          f"({_proto_version()}): {list(numbers)}; update promotel.export.encode.", kind="protocol")
    return numbers[0]


_NDP, _HDP, _SDP, _EX = pb.NumberDataPoint, pb.HistogramDataPoint, pb.SummaryDataPoint, pb.Exemplar

F_REQUEST_RESOURCE_METRICS = _field(ExportMetricsServiceRequest, "resource_metrics", _MESSAGE, repeated=True)
F_RM_RESOURCE = _field(pb.ResourceMetrics, "resource", _MESSAGE)
F_RM_SCOPE_METRICS = _field(pb.ResourceMetrics, "scope_metrics", _MESSAGE, repeated=True)
F_SM_SCOPE = _field(pb.ScopeMetrics, "scope", _MESSAGE)
F_SM_METRICS = _field(pb.ScopeMetrics, "metrics", _MESSAGE, repeated=True)
F_METRIC_GAUGE = _field(pb.Metric, "gauge", _MESSAGE)
F_METRIC_SUM = _field(pb.Metric, "sum", _MESSAGE)
F_METRIC_HISTOGRAM = _field(pb.Metric, "histogram", _MESSAGE)
F_METRIC_SUMMARY = _field(pb.Metric, "summary", _MESSAGE)
# Read (never written) by ``split_request``: the name for its messages, and the one data kind OTLP has
# that promotel does not produce, so that requests from elsewhere split too.
F_METRIC_NAME = _field(pb.Metric, "name", FieldDescriptor.TYPE_STRING)
F_METRIC_EXPONENTIAL_HISTOGRAM = _field(pb.Metric, "exponential_histogram", _MESSAGE)
F_DATA_POINTS = _same([_field(m, "data_points", _MESSAGE, repeated=True)
                       for m in (pb.Gauge, pb.Sum, pb.Histogram, pb.Summary)],
                      "Gauge, Sum, Histogram and Summary data_points")
if _field(pb.ExponentialHistogram, "data_points", _MESSAGE, repeated=True) != F_DATA_POINTS:
    raise ExportError(f"ExponentialHistogram.data_points no longer has the number of the other kinds' data_points "
                      f"in the installed opentelemetry-proto ({_proto_version()}); update promotel.export.encode.",
                      kind="protocol")
# Written by the official classes (the cached Sum/Histogram tail); checked here all the same.
F_AGG_TEMPORALITY = _same([_field(pb.Sum, "aggregation_temporality", _ENUM),
                           _field(pb.Histogram, "aggregation_temporality", _ENUM)],
                          "Sum and Histogram aggregation_temporality")
F_IS_MONOTONIC = _field(pb.Sum, "is_monotonic", _BOOL)

F_NDP_START = _field(_NDP, "start_time_unix_nano", _FIXED64)
F_NDP_TIME = _field(_NDP, "time_unix_nano", _FIXED64)
F_NDP_AS_DOUBLE = _field(_NDP, "as_double", _DOUBLE)
F_NDP_EXEMPLARS = _field(_NDP, "exemplars", _MESSAGE, repeated=True)
F_NDP_ATTRIBUTES = _field(_NDP, "attributes", _MESSAGE, repeated=True)
F_NDP_FLAGS = _field(_NDP, "flags", _UINT32)

F_HDP_START = _field(_HDP, "start_time_unix_nano", _FIXED64)
F_HDP_TIME = _field(_HDP, "time_unix_nano", _FIXED64)
F_HDP_COUNT = _field(_HDP, "count", _FIXED64)
F_HDP_SUM = _field(_HDP, "sum", _DOUBLE)
F_HDP_BUCKET_COUNTS = _field(_HDP, "bucket_counts", _FIXED64, repeated=True)
F_HDP_EXPLICIT_BOUNDS = _field(_HDP, "explicit_bounds", _DOUBLE, repeated=True)
F_HDP_EXEMPLARS = _field(_HDP, "exemplars", _MESSAGE, repeated=True)
F_HDP_ATTRIBUTES = _field(_HDP, "attributes", _MESSAGE, repeated=True)
F_HDP_FLAGS = _field(_HDP, "flags", _UINT32)

F_SDP_START = _field(_SDP, "start_time_unix_nano", _FIXED64)
F_SDP_TIME = _field(_SDP, "time_unix_nano", _FIXED64)
F_SDP_COUNT = _field(_SDP, "count", _FIXED64)
F_SDP_SUM = _field(_SDP, "sum", _DOUBLE)
F_SDP_QUANTILES = _field(_SDP, "quantile_values", _MESSAGE, repeated=True)
F_SDP_ATTRIBUTES = _field(_SDP, "attributes", _MESSAGE, repeated=True)
F_SDP_FLAGS = _field(_SDP, "flags", _UINT32)
F_VAQ_QUANTILE = _field(_SDP.ValueAtQuantile, "quantile", _DOUBLE)
F_VAQ_VALUE = _field(_SDP.ValueAtQuantile, "value", _DOUBLE)

F_EX_TIME = _field(_EX, "time_unix_nano", _FIXED64)
F_EX_AS_DOUBLE = _field(_EX, "as_double", _DOUBLE)
F_EX_SPAN_ID = _field(_EX, "span_id", _BYTES)
F_EX_TRACE_ID = _field(_EX, "trace_id", _BYTES)
F_EX_FILTERED_ATTRIBUTES = _field(_EX, "filtered_attributes", _MESSAGE, repeated=True)

NO_RECORDED_VALUE = pb.DataPointFlags.Value("DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK")
if not 0 < NO_RECORDED_VALUE < 0x80:      # written below as a one-byte varint
    raise ExportError(f"DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK is {NO_RECORDED_VALUE} in the installed "
                      f"opentelemetry-proto ({_proto_version()}); promotel.export.encode writes it as one byte.",
                      kind="protocol")
_TEMPORALITY = {Temporality.DELTA: pb.AGGREGATION_TEMPORALITY_DELTA,
                Temporality.CUMULATIVE: pb.AGGREGATION_TEMPORALITY_CUMULATIVE}


def _tag(field: int, wire: int) -> int:
    return (field << 3) | wire


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL_VARINTS = [_varint(i) for i in range(16384)]


def varint(n: int) -> bytes:
    return _SMALL_VARINTS[n] if n < 16384 else _varint(n)


def _len_field(field: int, payload: bytes) -> bytes:
    return bytes((_tag(field, _LEN),)) + varint(len(payload)) + payload


# Fixed-layout heads (one-byte tags, checked above): start (fixed64), time (fixed64), then a double
# (value / sum) or a fixed64 (count).
_NUM_HEAD = struct.Struct("<BQBQBd")            # start, time, as_double
_NUM_HEAD_NOSTART = struct.Struct("<BQBd")      # time, as_double (gauges: start 0 is the proto3 default)
_CNT_HEAD = struct.Struct("<BQBQBQ")            # start, time, count
_DOUBLE_FIELD = struct.Struct("<Bd")
_FIXED64_FIELD = struct.Struct("<BQ")
_QUANTILE = struct.Struct("<BBBdBd")           # LEN tag, length 18, quantile double, value double

_T_NDP_START, _T_NDP_TIME, _T_NDP_VALUE = _tag(F_NDP_START, _I64), _tag(F_NDP_TIME, _I64), _tag(F_NDP_AS_DOUBLE, _I64)
_T_HDP_START, _T_HDP_TIME = _tag(F_HDP_START, _I64), _tag(F_HDP_TIME, _I64)
_T_HDP_COUNT, _T_HDP_SUM = _tag(F_HDP_COUNT, _I64), _tag(F_HDP_SUM, _I64)
_T_SDP_START, _T_SDP_TIME = _tag(F_SDP_START, _I64), _tag(F_SDP_TIME, _I64)
_T_SDP_COUNT, _T_SDP_SUM = _tag(F_SDP_COUNT, _I64), _tag(F_SDP_SUM, _I64)
_NDP_FLAGS_NRV = bytes((_tag(F_NDP_FLAGS, _VARINT), NO_RECORDED_VALUE))
_HDP_FLAGS_NRV = bytes((_tag(F_HDP_FLAGS, _VARINT), NO_RECORDED_VALUE))
_SDP_FLAGS_NRV = bytes((_tag(F_SDP_FLAGS, _VARINT), NO_RECORDED_VALUE))
_T_BUCKETS = bytes((_tag(F_HDP_BUCKET_COUNTS, _LEN),))
_T_BOUNDS = bytes((_tag(F_HDP_EXPLICIT_BOUNDS, _LEN),))
_T_DATA_POINT = bytes((_tag(F_DATA_POINTS, _LEN),))
_QUANTILE_PREFIX = (_tag(F_SDP_QUANTILES, _LEN), 18, _tag(F_VAQ_QUANTILE, _I64), _tag(F_VAQ_VALUE, _I64))

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
    tag = bytes((_tag(field, _LEN),))
    parts = []
    for k, v in attrs:
        kv = _pair_bytes(k, v)
        parts.append(tag + varint(len(kv)) + kv)
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
    body += _FIXED64_FIELD.pack(_tag(F_EX_TIME, _I64), t) + _DOUBLE_FIELD.pack(_tag(F_EX_AS_DOUBLE, _I64), value)
    if span is not None:
        body += _len_field(F_EX_SPAN_ID, span)
    if trace is not None:
        body += _len_field(F_EX_TRACE_ID, trace)
    return _len_field(field, body)


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
        append(dp + (_SMALL_VARINTS[n] if n < 16384 else _varint(n)) + body)
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
            body = c.header + _len_field(c.field, data)
            metric_parts.append(_len_field(F_SM_METRICS, body))
        sm_parts.append(_len_field(F_RM_SCOPE_METRICS, b"".join(metric_parts)))
    rm = resource_field + b"".join(sm_parts)
    return _len_field(F_REQUEST_RESOURCE_METRICS, rm)


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

    resource_field = _len_field(F_RM_RESOURCE, Resource(attributes=key_values(batch.resource)).SerializeToString())
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
        scope_field = _len_field(F_SM_SCOPE, InstrumentationScope(name=scope_name,
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


# ─── splitting a serialized request in two ───────────────────────────────────────────────────
#
# A request is walked on the wire, not decoded into messages: ExportMetricsServiceRequest → ResourceMetrics
# → ScopeMetrics → Metric → its data message (Gauge, Sum, Histogram, ExponentialHistogram or Summary) →
# data points. At each level the fields that are not the next level down (resource, scope, name, unit,
# metadata, temporality, schema_url, unknown fields …) are that level's envelope, kept byte for byte and
# repeated in both halves wherever the level's points are divided; a data point itself is never opened.
# Protobuf merges a message field that occurs twice and concatenates repeated fields, so envelope fields
# written ahead of the children they were interleaved with decode to the same message.

_CHILD_FIELDS: tuple[frozenset[int], ...] = (
    frozenset({F_REQUEST_RESOURCE_METRICS}),
    frozenset({F_RM_SCOPE_METRICS}),
    frozenset({F_SM_METRICS}),
    frozenset({F_METRIC_GAUGE, F_METRIC_SUM, F_METRIC_HISTOGRAM, F_METRIC_EXPONENTIAL_HISTOGRAM, F_METRIC_SUMMARY}),
)
_METRIC_LEVEL = 3          # the children of a Metric are its data message, whose children are data points


class _Malformed(Exception):
    """The bytes are not a well-formed protobuf message (internal to ``split_request``)."""


class _Points(NamedTuple):
    """A data message (Gauge, Sum, …) with its data points located, not copied: the point level is where a
    request has tens of thousands of fields, so it is read with a loop of its own (see ``_parse_points``)."""

    buf: memoryview          # the whole request
    start: int               # the data message is buf[start:end]
    end: int
    envelope: bytes          # its fields other than data_points (temporality, monotonicity …), in order
    starts: list[int]        # where each data_points field (tag included) starts in ``buf``
    ends: list[int]          # and ends
    contiguous: bool         # no other field between the first and the last data point

    @property
    def points(self) -> int:
        return len(self.starts)


class _Node(NamedTuple):
    raw: memoryview                                  # the message as received
    envelope: bytes                                  # its fields other than the children, in order
    children: list[tuple[int, _Node | _Points]]      # (field number, child message)
    points: int                                      # data points below


def _read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise _Malformed(f"a varint runs past the end of its message at byte {pos}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _Malformed(f"a varint longer than 10 bytes at byte {pos}")


def _next_field(buf: memoryview, pos: int, end: int) -> tuple[int, int, int, int]:
    """The field at ``pos``: ``(field number, wire type, payload start, field end)``."""
    field_start = pos
    key, pos = _read_varint(buf, pos, end)
    number, wire = key >> 3, key & 7
    payload = pos
    if wire == _VARINT:
        _, pos = _read_varint(buf, pos, end)
    elif wire == _I64:
        pos += 8
    elif wire == _LEN:
        length, payload = _read_varint(buf, pos, end)
        pos = payload + length
    elif wire == _I32:
        pos += 4
    else:                   # 3 and 4 are the deprecated groups, which OTLP never uses; 6 and 7 do not exist
        raise _Malformed(f"field {number} at byte {field_start} has wire type {wire}")
    if number == 0 or pos > end:
        raise _Malformed(f"field {number} at byte {field_start} runs past the end of its message")
    return number, wire, payload, pos


def _wire_fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """``(field number, wire type, field start, payload start, field end)`` for each field in buf[start:end]."""
    pos = start
    while pos < end:
        number, wire, payload, field_end = _next_field(buf, pos, end)
        yield number, wire, pos, payload, field_end
        pos = field_end


def _parse_points(buf: memoryview, start: int, end: int) -> _Points:
    envelope: list[memoryview] = []
    starts: list[int] = []
    ends: list[int] = []
    contiguous = True
    tag = _T_DATA_POINT[0]
    pos = start
    while pos < end:
        if buf[pos] == tag:
            # A data point: its one-byte tag, the length, the payload. A length under 128 is read inline.
            n = buf[pos + 1] if pos + 1 < end else 0x80
            if n < 0x80:
                field_end = pos + 2 + n
            else:
                n, payload = _read_varint(buf, pos + 1, end)
                field_end = payload + n
            if field_end > end:
                raise _Malformed(f"the data point at byte {pos} runs past the end of its message")
        else:
            number, wire, _, field_end = _next_field(buf, pos, end)
            if number != F_DATA_POINTS or wire != _LEN:     # (a data point whose tag is an overlong varint)
                envelope.append(buf[pos:field_end])
                pos = field_end
                continue
        if ends and ends[-1] != pos:
            contiguous = False
        starts.append(pos)
        ends.append(field_end)
        pos = field_end
    return _Points(buf, start, end, b"".join(envelope), starts, ends, contiguous)


def _parse(buf: memoryview, start: int, end: int, level: int) -> _Node:
    child_fields = _CHILD_FIELDS[level]
    envelope: list[memoryview] = []
    children: list[tuple[int, _Node | _Points]] = []
    points = 0
    for number, wire, field_start, payload, field_end in _wire_fields(buf, start, end):
        if wire != _LEN or number not in child_fields:
            envelope.append(buf[field_start:field_end])
            continue
        if level == _METRIC_LEVEL and children and children[-1][0] != number:
            # ``data`` is a oneof: a later member replaces the earlier one, as when decoding.
            children.clear()
            points = 0
        child = _parse_points(buf, payload, field_end) if level == _METRIC_LEVEL else \
            _parse(buf, payload, field_end, level + 1)
        children.append((number, child))
        points += child.points
    return _Node(buf[start:end], b"".join(envelope), children, points)


def _points_part(data: _Points, lo: int, hi: int) -> bytes:
    """The data message with only its data points ``lo`` to ``hi`` (exclusive)."""
    buf, starts, ends = data.buf, data.starts, data.ends
    if data.contiguous:                 # how promotel and every OTLP SDK write it: one slice
        chosen: list[memoryview] = [buf[starts[lo]:ends[hi - 1]]]
    else:
        chosen = [buf[starts[i]:ends[i]] for i in range(lo, hi)]
    return data.envelope + b"".join(chosen)


def _part(node: _Node, lo: int, hi: int, first: bool) -> bytes:
    """The message of ``node`` with only its data points ``lo`` to ``hi`` (exclusive, counted in order).

    A child without data points (a metric with none, say) stays where it is when its parent goes whole to
    one half, and goes to the first half when its parent is divided, so it is in exactly one half."""
    if lo <= 0 and node.points <= hi:
        return bytes(node.raw)
    parts: list[bytes] = [node.envelope]
    offset = 0
    for number, child in node.children:
        a, b = offset, offset + child.points
        offset = b
        if a == b:
            if first:
                raw = child.raw if isinstance(child, _Node) else child.buf[child.start:child.end]
                parts.append(_len_field(number, bytes(raw)))
            continue
        if b <= lo or a >= hi:
            continue
        if isinstance(child, _Node):
            payload = _part(child, lo - a, hi - a, first)
        else:
            payload = _points_part(child, max(lo - a, 0), min(hi - a, child.points))
        parts.append(_len_field(number, payload))
    return b"".join(parts)


def _point_metric_name(root: _Node) -> str:
    """The name of the metric holding the first data point under the request ``root`` ("" if none)."""
    node = root
    for _ in range(_METRIC_LEVEL):          # request → resource metrics → scope metrics → metric
        found = next((c for _, c in node.children if isinstance(c, _Node) and c.points), None)
        if found is None:
            return ""
        node = found
    env = memoryview(node.envelope)
    for number, wire, _, payload, end in _wire_fields(env, 0, len(env)):
        if number == F_METRIC_NAME and wire == _LEN:
            return bytes(env[payload:end]).decode("utf-8", errors="replace")
    return ""


def split_request(request: bytes) -> list[bytes]:
    """Two requests with about half the data points of ``request`` each, for a backend that refused it as
    too large (HTTP 413, or a gRPC message over the server's maximum).

    The first half takes the first ``points // 2`` data points in order, the second the rest; a metric (and
    its scope and resource) whose points are divided between the halves has its envelope in both. Each half
    is smaller than ``request`` and they decode to exactly its data points. Raises ``ExportError`` with
    ``kind="too_large"`` when the request holds fewer than two data points (nothing left to divide), and
    with ``kind="protocol"`` when the bytes are not a well-formed ExportMetricsServiceRequest.
    """
    buf = memoryview(request)
    try:
        root = _parse(buf, 0, len(buf), 0)
    except _Malformed as exc:
        raise ExportError(f"Cannot split a request of {len(request)} bytes: it is not a well-formed "
                          f"ExportMetricsServiceRequest ({exc}); this is a bug, please report it.",
                          kind="protocol", retryable=False) from exc
    if root.points < 2:
        name = _point_metric_name(root)
        what = f"a single data point (metric {name})" if root.points == 1 and name else \
            "a single data point" if root.points == 1 else "no data point"
        raise ExportError(f"The backend refused a request of {len(request)} bytes as too large, and it holds {what}, "
                          "so it cannot be split. That point alone is over the backend's size limit: shorten the "
                          "label values that make it large at the target, or raise the backend's limit.",
                          kind="too_large", retryable=False)
    half = root.points // 2
    return [_part(root, 0, half, True), _part(root, half, root.points, False)]


__all__ = [
    "DEFAULT_SCOPE_NAME",
    "EncodeResult",
    "OversizedPoints",
    "encode_requests",
    "split_request",
]
