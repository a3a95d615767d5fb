"""Immutable values that flow between the pipeline stages.

    scrape ──▶ bytes ──parse──▶ MetricFamily ──map──▶ Metric (OTel-shaped points)
           ──convert──▶ Metric with start/time/flags per point, grouped in a TargetBatch
           ──export──▶ (per exporter: temporality, encode, split, send)

Nothing here holds state or does I/O. Stages that keep state (the per-target series store, the
per-exporter delta state and spool) say so at the top of their own module.

Two kinds of labels exist on purpose:

* ``Labels`` are Prometheus labels as parsed: string → string, an immutable and hashable mapping
  kept compact (one flat tuple) because a 150k-sample exposition holds one per sample.
* ``Attributes`` are OTel attributes after mapping: a tuple of ``(key, value)`` pairs sorted by key,
  with typed values (``str``, ``int``, ``float``, ``bool``). Being a plain sorted tuple, it is the
  series identity used by the converter and the encoder's caches.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from typing import NamedTuple

AttrValue = str | int | float | bool
Attributes = tuple[tuple[str, AttrValue], ...]


class Labels(Mapping[str, str]):
    """An immutable, hashable ``str → str`` mapping stored as one flat tuple ``(k0, v0, k1, v1, …)``.

    Order is the order of the exposition (it is not part of equality: two Labels with the same
    pairs in another order are equal and hash alike). Lookups are linear, which beats hashing for
    the handful of labels a series has.
    """

    __slots__ = ("_flat", "_hash")

    _flat: tuple[str, ...]
    _hash: int

    def __init__(self, pairs: Mapping[str, str] | tuple[tuple[str, str], ...] | None = None) -> None:
        if pairs is None:
            flat: tuple[str, ...] = ()
        elif isinstance(pairs, Labels):
            flat = pairs._flat
        else:
            items = pairs.items() if isinstance(pairs, Mapping) else pairs
            out: list[str] = []
            for k, v in items:
                out.append(k)
                out.append(v)
            flat = tuple(out)
        object.__setattr__(self, "_flat", flat)
        object.__setattr__(self, "_hash", -1)

    @classmethod
    def from_flat(cls, flat: tuple[str, ...]) -> Labels:
        """Build from an already flat ``(k0, v0, k1, v1, …)`` tuple without copying (parser fast path)."""
        self = cls.__new__(cls)
        object.__setattr__(self, "_flat", flat)
        object.__setattr__(self, "_hash", -1)
        return self

    @property
    def flat(self) -> tuple[str, ...]:
        return self._flat

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Labels are immutable")

    def __getitem__(self, key: str) -> str:
        flat = self._flat
        for i in range(0, len(flat), 2):
            if flat[i] == key:
                return flat[i + 1]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        flat = self._flat
        for i in range(0, len(flat), 2):
            if flat[i] == key:
                return True
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._flat[0::2])

    def __len__(self) -> int:
        return len(self._flat) // 2

    def pairs(self) -> tuple[tuple[str, str], ...]:
        flat = self._flat
        return tuple(zip(flat[0::2], flat[1::2]))

    def sorted_pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.pairs()))

    def without(self, key: str) -> Labels:
        """A copy without ``key`` (e.g. ``le`` or ``quantile``)."""
        flat = self._flat
        out: list[str] = []
        for i in range(0, len(flat), 2):
            if flat[i] != key:
                out.append(flat[i])
                out.append(flat[i + 1])
        return Labels.from_flat(tuple(out))

    def __hash__(self) -> int:
        h = self._hash
        if h == -1:
            h = hash(frozenset(self.pairs()))
            object.__setattr__(self, "_hash", h)
        return h

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Labels):
            if self._flat == other._flat:
                return True
            return len(self._flat) == len(other._flat) and set(self.pairs()) == set(other.pairs())
        if isinstance(other, Mapping):
            return dict(self.pairs()) == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: {v!r}" for k, v in self.pairs())
        return f"Labels({{{inner}}})"

    def __reduce__(self) -> tuple[object, ...]:
        return (Labels.from_flat, (self._flat,))


EMPTY_LABELS = Labels()


# ─── parse stage output ──────────────────────────────────────────────────────────────────────


class Exemplar(NamedTuple):
    labels: Labels
    value: float
    timestamp_ns: int | None = None


class Sample(NamedTuple):
    """One exposition line. ``name`` is the sample name (with ``_bucket``/``_total``/… suffix)."""

    name: str
    labels: Labels
    value: float
    timestamp_ns: int | None = None
    exemplar: Exemplar | None = None


# OpenMetrics type names; Prometheus ``untyped`` is normalized to ``unknown``.
FAMILY_TYPES = ("counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset", "unknown")


class MetricFamily(NamedTuple):
    """A metric family with its samples in exposition order.

    ``name`` is the family name as the exposition declares it (the TYPE/HELP name; for samples with
    no metadata, the sample name). OpenMetrics counters are declared without ``_total``; Prometheus
    text counters usually with it: mappings look a family up under both.
    """

    name: str
    type: str
    help: str | None
    unit: str | None
    samples: tuple[Sample, ...]


# ─── map stage output (OTel-shaped), convert stage fills start/time/flags ───────────────────


class Kind(enum.Enum):
    SUM = "sum"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"
    SUMMARY = "summary"


class Temporality(enum.Enum):
    CUMULATIVE = "cumulative"
    DELTA = "delta"


class NumberPoint(NamedTuple):
    attributes: Attributes
    value: float
    timestamp_ns: int | None = None      # from the exposition, if it had one
    created_ns: int | None = None        # from ``_created``, if present
    exemplars: tuple[Exemplar, ...] = ()
    start_ns: int = 0                    # set by convert (0 until then; gauges keep 0)
    time_ns: int = 0                     # set by convert (timestamp_ns or the scrape time)
    no_recorded_value: bool = False      # the OTLP staleness marker, set by convert


class HistogramPoint(NamedTuple):
    attributes: Attributes
    bounds: tuple[float, ...]            # explicit bounds, ascending, without +Inf
    counts: tuple[float, ...]            # per bucket (not cumulative); len(bounds) + 1 entries
    count: float  # type: ignore[assignment]  # shadows tuple.count on purpose: OTLP names it count
    sum: float | None = None             # None when the exposition has no _sum
    timestamp_ns: int | None = None
    created_ns: int | None = None
    exemplars: tuple[Exemplar, ...] = ()
    start_ns: int = 0
    time_ns: int = 0
    no_recorded_value: bool = False


class SummaryPoint(NamedTuple):
    attributes: Attributes
    quantiles: tuple[tuple[float, float], ...]   # (quantile, value), quantile ascending, no NaN values
    count: float  # type: ignore[assignment]  # as above
    sum: float
    timestamp_ns: int | None = None
    created_ns: int | None = None
    start_ns: int = 0
    time_ns: int = 0
    no_recorded_value: bool = False


Point = NumberPoint | HistogramPoint | SummaryPoint


class Metric(NamedTuple):
    """One OTel metric: name, unit, instrument shape and its points."""

    name: str
    description: str
    unit: str
    kind: Kind
    points: tuple[Point, ...]
    monotonic: bool = False                       # SUM only
    temporality: Temporality = Temporality.CUMULATIVE
    prom_type: str = ""                           # kept in Metric.metadata as prometheus.type
    scope_name: str = ""                          # from otel_scope_name, else the bridge's scope
    scope_version: str = ""
    scope_schema_url: str = ""                    # from otel_scope_schema_url
    scope_attributes: Attributes = ()             # from otel_scope_<key> labels or otel_scope_info


class TargetBatch(NamedTuple):
    """Everything one scrape of one target produced, ready for the exporters."""

    target: str                     # the source name from the config
    resource: Attributes
    metrics: tuple[Metric, ...]
    scrape_time_ns: int


__all__ = [
    "EMPTY_LABELS",
    "FAMILY_TYPES",
    "AttrValue",
    "Attributes",
    "Exemplar",
    "HistogramPoint",
    "Kind",
    "Labels",
    "Metric",
    "MetricFamily",
    "NumberPoint",
    "Point",
    "Sample",
    "SummaryPoint",
    "TargetBatch",
    "Temporality",
]
