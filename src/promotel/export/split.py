"""Splitting a serialized ``ExportMetricsServiceRequest`` in two, for a backend that answers "too large".

``split_request`` works on the bytes without decoding them into messages: it walks the request down to the
data points (resource → scope → metric → data message → points), gives the first half of the points to one
request and the rest to the other, and copies every enclosing field (resource, scope, metric header,
temporality) into each half that holds part of it. It reads the field numbers of ``promotel.export.wire``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from promotel.errors import ExportError
from promotel.export.wire import (
    F_DATA_POINTS,
    F_METRIC_EXPONENTIAL_HISTOGRAM,
    F_METRIC_GAUGE,
    F_METRIC_HISTOGRAM,
    F_METRIC_NAME,
    F_METRIC_SUM,
    F_METRIC_SUMMARY,
    F_REQUEST_RESOURCE_METRICS,
    F_RM_SCOPE_METRICS,
    F_SM_METRICS,
    I32,
    I64,
    LEN,
    VARINT,
    len_field,
    tag,
)

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
    if wire == VARINT:
        _, pos = _read_varint(buf, pos, end)
    elif wire == I64:
        pos += 8
    elif wire == LEN:
        length, payload = _read_varint(buf, pos, end)
        pos = payload + length
    elif wire == I32:
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
    point_tag = tag(F_DATA_POINTS, LEN)
    pos = start
    while pos < end:
        if buf[pos] == point_tag:
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
            if number != F_DATA_POINTS or wire != LEN:     # (a data point whose tag is an overlong varint)
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
        if wire != LEN or number not in child_fields:
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
                parts.append(len_field(number, bytes(raw)))
            continue
        if b <= lo or a >= hi:
            continue
        if isinstance(child, _Node):
            payload = _part(child, lo - a, hi - a, first)
        else:
            payload = _points_part(child, max(lo - a, 0), min(hi - a, child.points))
        parts.append(len_field(number, payload))
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
        if number == F_METRIC_NAME and wire == LEN:
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



__all__ = ["split_request"]
