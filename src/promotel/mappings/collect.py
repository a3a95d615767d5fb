"""What every family type shares while its samples become OTel points: the per-family point collector
(points grouped per instrumentation scope, drops counted by reason), series attributes (the default
label → attribute rule and the bounded cache mappings wrap their own rules in), instrumentation-scope labels,
UCUM units and ``_created`` times.

Stateless apart from two bounded caches, each a pure function of its key (label tuples → attributes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

from promotel.model import (
    Attributes,
    Exemplar,
    Kind,
    Labels,
    Point,
)

_INF = math.inf
_SCOPE_NAME = "otel_scope_name"
_SCOPE_VERSION = "otel_scope_version"

# OpenMetrics UNIT → UCUM (unprefixed base units, as the OTel compatibility spec suggests).
_UCUM = {
    "seconds": "s", "second": "s", "milliseconds": "ms", "microseconds": "us", "nanoseconds": "ns",
    "bytes": "By", "byte": "By", "kilobytes": "kBy", "megabytes": "MBy", "gigabytes": "GBy",
    "kibibytes": "KiBy", "mebibytes": "MiBy", "gibibytes": "GiBy", "bits": "bit",
    "ratio": "1", "percent": "%", "meters": "m", "metres": "m", "volts": "V", "amperes": "A",
    "joules": "J", "watts": "W", "grams": "g", "celsius": "Cel", "hertz": "Hz", "kelvin": "K",
    "minutes": "min", "hours": "h", "days": "d",
}


class Assembled(NamedTuple):
    kind: Kind | None                                        # None: the type is dropped (gaugehistogram)
    monotonic: bool
    groups: tuple[tuple[str, str, tuple[Point, ...]], ...]   # (scope_name, scope_version, points)
    dropped: int                                             # invalid points dropped
    reasons: tuple[str, ...]                                 # bounded reasons for the drops


AttributesFn = Callable[[Labels], Attributes]
_default_cache: dict[tuple[str, ...], Attributes] = {}


def default_attributes(labels: Labels) -> Attributes:
    """Labels as string attributes sorted by key; empty values dropped (Prometheus: ``l=""`` is absent)."""
    return _default_attributes_of_flat(labels.flat)


def _default_attributes_of_flat(flat: tuple[str, ...]) -> Attributes:
    if not flat:
        return ()
    # Cached by label tuple: the same series comes back every scrape (bounded; cleared when full).
    cached = _default_cache.get(flat)
    if cached is not None:
        return cached
    pairs = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2) if flat[i + 1]]
    pairs.sort()
    attrs = tuple(pairs)
    if len(_default_cache) >= 200_000:
        _default_cache.clear()
    _default_cache[flat] = attrs
    return attrs


class CachedAttributes:
    """An ``AttributesFn`` with a bounded cache keyed by the labels' flat tuple.

    Mappings wrap their (pure) translation in it. Keyed by the flat tuple rather than the Labels: the
    tuple hashes in C, while a Labels hashes in Python (and a Labels built for a series key has no
    cached hash yet). ``func`` must be pure and ignore label order (as Labels equality does): Labels
    that differ only in order are then different keys with the same attributes, a cache entry more. :func:`assemble` calls :meth:`of_flat`
    with the series key directly, so no Labels is built on a hit. The cache is cleared when full.
    """

    __slots__ = ("_cache", "_func", "_max")

    def __init__(self, func: AttributesFn, max_entries: int) -> None:
        self._func = func
        self._cache: dict[tuple[str, ...], Attributes] = {}
        self._max = max_entries

    def __call__(self, labels: Labels) -> Attributes:
        attrs = self._cache.get(labels.flat)
        if attrs is None:
            attrs = self._miss(labels)
        return attrs

    def of_flat(self, flat: tuple[str, ...]) -> Attributes:
        """The attributes of the Labels whose flat tuple is ``flat``."""
        attrs = self._cache.get(flat)
        if attrs is None:
            attrs = self._miss(Labels.from_flat(flat))
        return attrs

    def _miss(self, labels: Labels) -> Attributes:
        cache = self._cache
        if len(cache) >= self._max:
            cache.clear()
        attrs = cache[labels.flat] = self._func(labels)
        return attrs


def ucum_unit(unit: str | None) -> str:
    """The UCUM form of an OpenMetrics UNIT (unknown units are kept as written)."""
    if not unit:
        return ""
    return _UCUM.get(unit, unit)


_MAX_SECONDS = float(2**63 // 1_000_000_000)
# The largest double that still fits a uint64: float(2**64 - 1) rounds up to 2**64, which does not.
MAX_COUNT = math.nextafter(float(2**64), 0.0)


def created_ns(value: float) -> int | None:
    """A ``_created`` value (seconds since the epoch) as nanoseconds; None when it cannot be a time."""
    if not 0.0 <= value < _MAX_SECONDS:      # also rejects NaN
        return None
    return seconds_to_ns(value)


def seconds_to_ns(value: float) -> int:
    """Seconds since the epoch → integer nanoseconds."""
    whole = math.floor(value)
    return int(whole) * 1_000_000_000 + round((value - whole) * 1e9)


# ─── label helpers ───────────────────────────────────────────────────────────────────────────


def without_key(flat: tuple[str, ...], key: str) -> tuple[str, ...]:
    # ``le``/``quantile`` is usually the last label: avoid the general copy then.
    n = len(flat)
    if n >= 2 and flat[n - 2] == key:
        return flat[: n - 2]
    for i in range(0, n, 2):
        if flat[i] == key:
            return flat[:i] + flat[i + 2:]
    return flat


def label_value(flat: tuple[str, ...], key: str) -> str | None:
    for i in range(0, len(flat), 2):
        if flat[i] == key:
            return flat[i + 1]
    return None


def _has_scope(flat: tuple[str, ...]) -> bool:
    # ``in`` on the flat tuple also matches values; a false positive only costs the exact check.
    if _SCOPE_NAME in flat or _SCOPE_VERSION in flat:
        keys = flat[0::2]
        return _SCOPE_NAME in keys or _SCOPE_VERSION in keys
    return False


def _split_scope(flat: tuple[str, ...]) -> tuple[tuple[str, ...], str, str]:
    name = label_value(flat, _SCOPE_NAME) or ""
    version = label_value(flat, _SCOPE_VERSION) or ""
    flat = without_key(without_key(flat, _SCOPE_NAME), _SCOPE_VERSION)
    return flat, name, version


class PointCollector:
    """Points per scope, in order of first sight, and drop counts."""

    __slots__ = ("attributes", "default", "dropped", "of_flat", "reasons", "scoped")

    def __init__(self, attributes: AttributesFn) -> None:
        self.attributes = attributes
        # Series keys are flat tuples: the known attribute functions take them as they are; any
        # other gets a Labels built around the tuple (no copy).
        self.of_flat: Callable[[tuple[str, ...]], Attributes]
        if attributes is default_attributes:
            self.of_flat = _default_attributes_of_flat
        elif isinstance(attributes, CachedAttributes):
            self.of_flat = attributes.of_flat
        else:
            self.of_flat = lambda flat: attributes(Labels.from_flat(flat))
        self.default: list[Point] = []
        self.scoped: dict[tuple[str, str], list[Point]] | None = None
        self.dropped = 0
        self.reasons: list[str] = []

    def attrs_and_bucket(self, flat: tuple[str, ...]) -> tuple[Attributes, list[Point]]:
        """The attributes of a series (labels without le/quantile) and the point list of its scope."""
        if _has_scope(flat):
            return self._scoped(flat)
        return self.of_flat(flat), self.default

    def labels_and_bucket(self, labels: Labels) -> tuple[Attributes, list[Point]]:
        """As :meth:`attrs_and_bucket` for a sample's own Labels: passed on as they are (no copy)."""
        flat = labels.flat
        if _has_scope(flat):
            return self._scoped(flat)
        return self.attributes(labels), self.default

    def _scoped(self, flat: tuple[str, ...]) -> tuple[Attributes, list[Point]]:
        flat, name, version = _split_scope(flat)
        if name or version:
            if self.scoped is None:
                self.scoped = {}
            bucket = self.scoped.get((name, version))
            if bucket is None:
                bucket = self.scoped[(name, version)] = []
            return self.of_flat(flat), bucket
        return self.of_flat(flat), self.default

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped += n
        if reason not in self.reasons:
            self.reasons.append(reason)

    def result(self, kind: Kind | None, monotonic: bool) -> Assembled:
        groups: list[tuple[str, str, tuple[Point, ...]]] = []
        if self.default:
            groups.append(("", "", tuple(self.default)))
        if self.scoped:
            for (name, version), points in self.scoped.items():
                if points:
                    groups.append((name, version, tuple(points)))
        return Assembled(kind, monotonic, tuple(groups), self.dropped, tuple(self.reasons))


def scaled_exemplars(exemplars: Sequence[Exemplar], scale: float) -> tuple[Exemplar, ...]:
    """Exemplar values carry the metric's unit: convert them with it (ms → s bounds, ms → s exemplars)."""
    if scale == 1.0:
        return tuple(exemplars)
    return tuple(e._replace(value=e.value * scale) for e in exemplars)


