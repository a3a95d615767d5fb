"""The OTLP wire layer the hand encoder writes with: field numbers from the official descriptors, tags, varints.

A field goes on the wire as ``tag (field number << 3 | wire type)`` then its payload; the wire type and the
payload's layout follow from the field's protobuf type. ``promotel.export.encode`` writes each field with a
fixed layout (a one-byte tag, fixed64 times, doubles, packed repeated numbers), so every field number is read
here from the installed ``opentelemetry-proto`` descriptors, once at import, together with a check that the
field still has the type (and so the wire type and layout) the encoder writes. A ``metrics.proto`` that
changed any of them fails the import with an error naming the field, instead of producing requests a
backend would misread. ``promotel.export.split`` reads requests back with the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

from promotel.errors import ExportError

# ─── field numbers, from the official descriptors ────────────────────────────────────────────
#
# A field goes on the wire as ``tag (field number << 3 | wire type)`` then its payload; the wire type
# and the payload's layout follow from the field's protobuf type. The hand encoder below writes each
# field with a fixed layout (a one-byte tag, fixed64 times, doubles, packed repeated numbers), so every
# field number is read here from the installed ``opentelemetry-proto`` descriptors, once at import,
# together with a check that the field still has the type (and so the wire type and layout) the
# encoder writes. A ``metrics.proto`` that changed any of them fails the import with an error naming
# the field, instead of producing requests a backend would misread.

VARINT, I64, LEN, I32 = 0, 1, 2, 5          # wire types

_DOUBLE, _FIXED64, _UINT32 = FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_UINT32
_BOOL, _ENUM = FieldDescriptor.TYPE_BOOL, FieldDescriptor.TYPE_ENUM
_BYTES, _MESSAGE = FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_MESSAGE

_LEN_TYPES = frozenset({FieldDescriptor.TYPE_STRING, _BYTES, _MESSAGE})
_WIRE_OF_TYPE = {
    FieldDescriptor.TYPE_DOUBLE: I64, FieldDescriptor.TYPE_FIXED64: I64, FieldDescriptor.TYPE_SFIXED64: I64,
    FieldDescriptor.TYPE_FLOAT: I32, FieldDescriptor.TYPE_FIXED32: I32, FieldDescriptor.TYPE_SFIXED32: I32,
    **dict.fromkeys(_LEN_TYPES, LEN),
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
    wire = LEN if packed else _WIRE_OF_TYPE.get(proto_type, VARINT)
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
            f"({proto_version()}), but promotel.export.encode writes it as {want}. Install an "
            f"opentelemetry-proto release whose metrics.proto matches, or update the hand encoder.",
            kind="protocol")
    return int(fd.number)


def proto_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("opentelemetry-proto")
    except PackageNotFoundError:
        return "version unknown"


def _same(numbers: Sequence[int], what: str) -> int:
    """One number for a field the encoder writes with one shared tag (``data_points`` of every kind)."""
    if len(set(numbers)) != 1:
        raise ExportError(f"{what} no longer share one field number in the installed opentelemetry-proto "
                          f"({proto_version()}): {list(numbers)}; update promotel.export.encode.", kind="protocol")
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
                      f"in the installed opentelemetry-proto ({proto_version()}); update promotel.export.encode.",
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
                      f"opentelemetry-proto ({proto_version()}); promotel.export.encode writes it as one byte.",
                      kind="protocol")
def tag(field: int, wire: int) -> int:
    return (field << 3) | wire


def raw_varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


SMALL_VARINTS = [raw_varint(i) for i in range(16384)]


def varint(n: int) -> bytes:
    return SMALL_VARINTS[n] if n < 16384 else raw_varint(n)


def len_field(field: int, payload: bytes) -> bytes:
    return bytes((tag(field, LEN),)) + varint(len(payload)) + payload




__all__ = [
    "F_AGG_TEMPORALITY",
    "F_DATA_POINTS",
    "F_EX_AS_DOUBLE",
    "F_EX_FILTERED_ATTRIBUTES",
    "F_EX_SPAN_ID",
    "F_EX_TIME",
    "F_EX_TRACE_ID",
    "F_HDP_ATTRIBUTES",
    "F_HDP_BUCKET_COUNTS",
    "F_HDP_COUNT",
    "F_HDP_EXEMPLARS",
    "F_HDP_EXPLICIT_BOUNDS",
    "F_HDP_FLAGS",
    "F_HDP_START",
    "F_HDP_SUM",
    "F_HDP_TIME",
    "F_IS_MONOTONIC",
    "F_METRIC_EXPONENTIAL_HISTOGRAM",
    "F_METRIC_GAUGE",
    "F_METRIC_HISTOGRAM",
    "F_METRIC_NAME",
    "F_METRIC_SUM",
    "F_METRIC_SUMMARY",
    "F_NDP_AS_DOUBLE",
    "F_NDP_ATTRIBUTES",
    "F_NDP_EXEMPLARS",
    "F_NDP_FLAGS",
    "F_NDP_START",
    "F_NDP_TIME",
    "F_REQUEST_RESOURCE_METRICS",
    "F_RM_RESOURCE",
    "F_RM_SCOPE_METRICS",
    "F_SDP_ATTRIBUTES",
    "F_SDP_COUNT",
    "F_SDP_FLAGS",
    "F_SDP_QUANTILES",
    "F_SDP_START",
    "F_SDP_SUM",
    "F_SDP_TIME",
    "F_SM_METRICS",
    "F_SM_SCOPE",
    "F_VAQ_QUANTILE",
    "F_VAQ_VALUE",
    "I32",
    "I64",
    "LEN",
    "NO_RECORDED_VALUE",
    "SMALL_VARINTS",
    "VARINT",
    "len_field",
    "proto_version",
    "raw_varint",
    "tag",
    "varint",
]
