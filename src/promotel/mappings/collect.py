"""What every family type shares while its samples become OTel points: the per-family point collector
(points grouped per instrumentation scope, one point per series, drops counted by reason), series attributes
(the default label → attribute rule, the scraped-target rule for ``job``/``instance`` and the bounded cache
mappings wrap their own rules in), instrumentation-scope labels, UCUM units and ``_created`` times.

Stateless apart from bounded caches, each a pure function of its key (label tuples → attributes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

from promotel.mappings.naming import ucum_unit
from promotel.mappings.scale import Scale
from promotel.model import (
    Attributes,
    AttrValue,
    Exemplar,
    Kind,
    Labels,
    Point,
)

_INF = math.inf
_SCOPE_PREFIX = "otel_scope_"
_SCOPE_NAME = "otel_scope_name"
_SCOPE_VERSION = "otel_scope_version"
_SCOPE_SCHEMA_URL = "otel_scope_schema_url"

# The labels a Prometheus server attaches to every series of a target (its target labels). An exposed label of
# the same name is renamed ``exported_<name>`` unless the source sets ``honor_labels`` (Prometheus' rule).
TARGET_LABELS = ("job", "instance")


class ScopeDetails(NamedTuple):
    """What ``otel_scope_*`` labels say about an instrumentation scope besides its name and version."""

    name: str
    version: str
    schema_url: str
    attributes: Attributes


class Assembled(NamedTuple):
    kind: Kind | None                                        # None: the type is dropped (gaugehistogram)
    monotonic: bool
    groups: tuple[tuple[str, str, tuple[Point, ...]], ...]   # (scope_name, scope_version, points)
    dropped: int                                             # samples, series or points left out
    reasons: tuple[str, ...]                                 # bounded reasons for the drops, in order of first drop
    drops: tuple[tuple[str, int], ...] = ()                  # (reason, how many) in the same order
    scopes: tuple[ScopeDetails, ...] = ()                    # schema URL and attributes of the scoped groups


AttributesFn = Callable[[Labels], Attributes]
_default_cache: dict[tuple[str, ...], Attributes] = {}
_scraped_cache: dict[tuple[str, ...], Attributes] = {}


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


def exported_name(key: str, taken: object) -> str:
    """Prometheus' name for an exposed label that clashes with a target label: ``exported_<key>``, prefixed
    again while that name is also exposed (``taken`` supports ``in``)."""
    name = "exported_" + key
    while name in taken:     # type: ignore[operator]
        name = "exported_" + name
    return name


def scraped_attributes(labels: Labels) -> Attributes:
    """As :func:`default_attributes`, with exposed ``job``/``instance`` labels renamed ``exported_job`` /
    ``exported_instance``: the target's own job and instance are the Resource (``honor_labels: false``)."""
    return _scraped_attributes_of_flat(labels.flat)


def _scraped_attributes_of_flat(flat: tuple[str, ...]) -> Attributes:
    cached = _scraped_cache.get(flat)
    if cached is not None:
        return cached
    if "job" not in flat and "instance" not in flat:     # also matches values: the exact check follows
        attrs = _default_attributes_of_flat(flat)
        if len(_scraped_cache) >= 200_000:
            _scraped_cache.clear()
        _scraped_cache[flat] = attrs
        return attrs
    keys = flat[0::2]
    present = {k for k, v in zip(keys, flat[1::2]) if v}
    out: list[tuple[str, str]] = []
    for k, v in zip(keys, flat[1::2]):
        if not v:
            continue
        out.append((exported_name(k, present) if k in TARGET_LABELS else k, v))
    out.sort()
    attrs = tuple(out)
    if len(_scraped_cache) >= 200_000:
        _scraped_cache.clear()
    _scraped_cache[flat] = attrs
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
    # ``in`` on the flat tuple also matches values; a false positive only costs the exact check. Scope labels
    # are read when the name or version is there (the exporters that write the others always write the name).
    if _SCOPE_NAME in flat or _SCOPE_VERSION in flat:
        keys = flat[0::2]
        return _SCOPE_NAME in keys or _SCOPE_VERSION in keys
    return False


def split_scope(flat: tuple[str, ...]) -> tuple[tuple[str, ...], ScopeDetails]:
    """The labels without their ``otel_scope_*`` ones, and the scope those say (spec: every label with that
    prefix leaves the point: name, version, schema URL, and ``otel_scope_<key>`` → scope attribute ``<key>``)."""
    rest: list[str] = []
    name = version = schema_url = ""
    attrs: list[tuple[str, AttrValue]] = []
    for i in range(0, len(flat), 2):
        k, v = flat[i], flat[i + 1]
        if not k.startswith(_SCOPE_PREFIX):
            rest.append(k)
            rest.append(v)
        elif k == _SCOPE_NAME:
            name = v
        elif k == _SCOPE_VERSION:
            version = v
        elif k == _SCOPE_SCHEMA_URL:
            schema_url = v
        elif v:
            attrs.append((k[len(_SCOPE_PREFIX):], v))
    attrs.sort()
    return tuple(rest), ScopeDetails(name, version, schema_url, tuple(attrs))


class Group:
    """The points of one instrumentation scope, one per series: the attributes seen so far → the labels of
    the sample that gave them (the first; a later one is counted as a duplicate)."""

    __slots__ = ("points", "seen")

    def __init__(self) -> None:
        self.points: list[Point] = []
        self.seen: dict[Attributes, tuple[str, ...]] = {}


class PointCollector:
    """Points per scope, in order of first sight, one per series, and drop counts by reason."""

    __slots__ = ("attributes", "default", "dropped", "drops", "of_flat", "scope_details", "scoped")

    def __init__(self, attributes: AttributesFn) -> None:
        self.attributes = attributes
        # Series keys are flat tuples: the known attribute functions take them as they are; any
        # other gets a Labels built around the tuple (no copy).
        self.of_flat: Callable[[tuple[str, ...]], Attributes]
        if attributes is default_attributes:
            self.of_flat = _default_attributes_of_flat
        elif attributes is scraped_attributes:
            self.of_flat = _scraped_attributes_of_flat
        elif isinstance(attributes, CachedAttributes):
            self.of_flat = attributes.of_flat
        else:
            self.of_flat = lambda flat: attributes(Labels.from_flat(flat))
        self.default = Group()
        self.scoped: dict[tuple[str, str], Group] | None = None
        self.scope_details: dict[tuple[str, str], ScopeDetails] = {}
        self.dropped = 0
        self.drops: dict[str, int] = {}

    def attrs_and_bucket(self, flat: tuple[str, ...]) -> tuple[Attributes, Group]:
        """The attributes of a series (labels without le/quantile) and the group of its scope."""
        if _has_scope(flat):
            return self._scoped(flat)
        return self.of_flat(flat), self.default

    def labels_and_bucket(self, labels: Labels) -> tuple[Attributes, Group]:
        """As :meth:`attrs_and_bucket` for a sample's own Labels: passed on as they are (no copy)."""
        flat = labels.flat
        if _has_scope(flat):
            return self._scoped(flat)
        return self.attributes(labels), self.default

    def _scoped(self, flat: tuple[str, ...]) -> tuple[Attributes, Group]:
        rest, details = split_scope(flat)
        key = (details.name, details.version)
        if key == ("", ""):
            return self.of_flat(rest), self.default
        if self.scoped is None:
            self.scoped = {}
        group = self.scoped.get(key)
        if group is None:
            group = self.scoped[key] = Group()
            self.scope_details[key] = details
        return self.of_flat(rest), group

    def add(self, group: Group, attrs: Attributes, flat: tuple[str, ...], point: Point) -> None:
        """Add ``point`` unless its series already has one in this scrape (Prometheus keeps the first sample
        of a series and counts the others as duplicates; OTLP wants one point per series and time)."""
        seen = group.seen
        n = len(seen)
        first = seen.setdefault(attrs, flat)
        if len(seen) != n:
            group.points.append(point)
        else:
            self.duplicate(first, flat)

    def duplicate(self, first: tuple[str, ...], flat: tuple[str, ...]) -> None:
        # The same series as Prometheus sees it (its labels without empty values) exposed twice is a
        # duplicate sample; distinct series that the mapping made identical (label rules, users: drop,
        # dropped attributes) are a duplicate series.
        same = first == flat or _default_attributes_of_flat(first) == _default_attributes_of_flat(flat)
        self.drop("duplicate_sample" if same else "duplicate_series")

    def drop(self, reason: str, n: int = 1) -> None:
        if n <= 0:
            return
        self.dropped += n
        self.drops[reason] = self.drops.get(reason, 0) + n

    def result(self, kind: Kind | None, monotonic: bool) -> Assembled:
        groups: list[tuple[str, str, tuple[Point, ...]]] = []
        if self.default.points:
            groups.append(("", "", tuple(self.default.points)))
        scopes: list[ScopeDetails] = []
        if self.scoped:
            for (name, version), group in self.scoped.items():
                if group.points:
                    groups.append((name, version, tuple(group.points)))
                    details = self.scope_details[(name, version)]
                    if details.schema_url or details.attributes:
                        scopes.append(details)
        return Assembled(kind, monotonic, tuple(groups), self.dropped, tuple(self.drops),
                         tuple(self.drops.items()), tuple(scopes))


def scaled_exemplars(exemplars: Sequence[Exemplar], scale: Scale) -> tuple[Exemplar, ...]:
    """Exemplar values carry the metric's unit: convert them with it (ms → s bounds, ms → s exemplars)."""
    if scale.num == scale.den:
        return tuple(exemplars)
    apply = scale.apply
    return tuple(e._replace(value=apply(e.value)) for e in exemplars)


__all__ = [
    "MAX_COUNT",
    "TARGET_LABELS",
    "Assembled",
    "AttributesFn",
    "CachedAttributes",
    "Group",
    "PointCollector",
    "ScopeDetails",
    "created_ns",
    "default_attributes",
    "exported_name",
    "label_value",
    "scaled_exemplars",
    "scraped_attributes",
    "seconds_to_ns",
    "split_scope",
    "ucum_unit",
    "without_key",
]
