"""Assemble one metric family's samples into OTel-shaped points (the map stage's shared core).

Stateless: one family in, points out. Mapping plugins call :func:`assemble` with their own
``attributes`` function (called once per series) and unit ``scale``; the passthrough mapping uses
:func:`passthrough_metrics`. This is the per-sample hot path (a Baseten scrape: ~130k histogram
buckets), so per sample it calls no helper function and allocates at most the series key;
per series it checks the common shape of a histogram with C-level loops (``map`` over ``operator``)
and leaves anything unusual to the general code, which decides exactly as before. Allocations also
matter for the cyclic GC: every 700 net new container objects trigger a collection.

Rules (see ``docs/conversion.md``, "Types"):

* counter → monotonic Sum; ``_created`` gives the start time. gauge/unknown → Gauge.
* histogram → explicit-bucket Histogram; OTLP bounds are the ``le`` values without ``+Inf`` and
  OTLP bucket counts are per bucket, while Prometheus buckets are cumulative.
* summary → Summary; OTLP quantile values must not be negative: NaN ones (legal in OpenMetrics) are
  left out, negative ones left out and counted.
* info and stateset → non-monotonic Sum (1 per info series, 1/0 per state).
* gaugehistogram → dropped (OTel spec), counted.
* ``otel_scope_name``/``otel_scope_version`` labels select the instrumentation scope and leave the point.

Series within one exposition are grouped by their label tuple in exposition order: clients write the
labels of one series (``_bucket``/``_count``/``_sum``/``_created``) in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from operator import ge, is_, lt, sub
from typing import NamedTuple

from promotel.model import (
    Attributes,
    Exemplar,
    HistogramPoint,
    Kind,
    Labels,
    Metric,
    MetricFamily,
    NumberPoint,
    Point,
    Sample,
    SummaryPoint,
)

_INF = math.inf
_SCOPE_NAME = "otel_scope_name"
_SCOPE_VERSION = "otel_scope_version"

# Families whose ``X_created`` gauge (prometheus_client, 0.0.4 text) carries their start time.
_CREATED_OWNERS = frozenset({"counter", "histogram", "summary"})

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
_MAX_COUNT = math.nextafter(float(2**64), 0.0)


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


def _without_key(flat: tuple[str, ...], key: str) -> tuple[str, ...]:
    # ``le``/``quantile`` is usually the last label: avoid the general copy then.
    n = len(flat)
    if n >= 2 and flat[n - 2] == key:
        return flat[: n - 2]
    for i in range(0, n, 2):
        if flat[i] == key:
            return flat[:i] + flat[i + 2:]
    return flat


def _label(flat: tuple[str, ...], key: str) -> str | None:
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
    name = _label(flat, _SCOPE_NAME) or ""
    version = _label(flat, _SCOPE_VERSION) or ""
    flat = _without_key(_without_key(flat, _SCOPE_NAME), _SCOPE_VERSION)
    return flat, name, version


class _Collector:
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


# ─── per type ────────────────────────────────────────────────────────────────────────────────


def _scaled(exemplars: Sequence[Exemplar], scale: float) -> tuple[Exemplar, ...]:
    """Exemplar values carry the metric's unit: convert them with it (ms → s bounds, ms → s exemplars)."""
    if scale == 1.0:
        return tuple(exemplars)
    return tuple(e._replace(value=e.value * scale) for e in exemplars)


def _number_per_sample(family: MetricFamily, out: _Collector, scale: float, fixed: float | None) -> None:
    """Gauge/unknown/stateset/info: one point per sample. ``fixed`` replaces the value (info → 1)."""
    series_of = out.labels_and_bucket
    scaled = scale != 1.0
    for _name, labels, value, ts, ex in family.samples:
        attrs, bucket = series_of(labels)
        if fixed is not None:
            value = fixed
        else:
            value = float(value)
            if scaled:
                value *= scale
        bucket.append(NumberPoint(attrs, value, ts, None, _scaled((ex,), scale) if ex is not None else ()))


def _counter(family: MetricFamily, out: _Collector, scale: float) -> None:
    fname = family.name
    base = fname.removesuffix("_total")
    created_name = base + "_created"
    if created_name == fname:      # a counter genuinely named ``…_created`` (issue #30309)
        created_name = ""
    # flat labels → [value, timestamp_ns, created_ns, exemplar]
    series: dict[tuple[str, ...], list[object]] = {}
    for s in family.samples:
        flat = s.labels.flat
        entry = series.get(flat)
        if entry is None:
            entry = series[flat] = [None, None, None, None]
        if s.name == created_name:
            entry[2] = created_ns(s.value)
        else:
            entry[0] = s.value
            entry[1] = s.timestamp_ns
            if s.exemplar is not None:
                entry[3] = s.exemplar
    for flat, (value, ts, created, ex) in series.items():
        if value is None:
            out.drop("counter_no_value")
            continue
        attrs, bucket = out.attrs_and_bucket(flat)
        v = float(value)  # type: ignore[arg-type]
        if scale != 1.0:
            v *= scale
        bucket.append(NumberPoint(attrs, v, ts, created,  # type: ignore[arg-type]
                                  _scaled((ex,), scale) if ex is not None else ()))  # type: ignore[arg-type]


_le_cache: dict[str, float] = {}
_default_cache: dict[tuple[str, ...], Attributes] = {}


def _parse_bound(text: str) -> float:
    v = _le_cache.get(text)
    if v is None:
        v = float(text)   # accepts 1, 1.0, 1e0, +Inf, Inf
        if len(_le_cache) < 10_000 and not math.isnan(v):
            _le_cache[text] = v
    return v


class _Hist:
    """One histogram series while its samples are gathered: bounds and cumulative counts side by
    side (two lists rather than a tuple per bucket), in exposition order."""

    __slots__ = ("bad", "bounds", "count", "created", "cumulative", "exemplars", "sum", "ts")

    def __init__(self) -> None:
        self.bounds: list[float] = []
        self.cumulative: list[float] = []
        self.count: float | None = None
        self.sum: float | None = None
        self.ts: int | None = None
        self.created: int | None = None
        self.exemplars: list[Exemplar] | None = None     # made on the first exemplar (they are rare)
        self.bad = False


def _histogram(family: MetricFamily, out: _Collector, scale: float) -> None:
    fname = family.name
    bucket_name, count_name, sum_name, created_name = (
        fname + "_bucket", fname + "_count", fname + "_sum", fname + "_created")
    series: dict[tuple[str, ...], _Hist] = {}
    le_cache = _le_cache
    # The series of the previous bucket and its lists' append methods: buckets come in runs, so
    # the series dict is only consulted when the series changes (tuple ``!=`` compares the shared
    # label strings by identity first, which is cheap). Measured: a per-Labels cache of (key,
    # bound) is no faster here, the lookup costs what slicing the labels does.
    last_key: tuple[str, ...] | None = None
    cur = _Hist()
    add_bound = cur.bounds.append
    add_cumulative = cur.cumulative.append
    for name, labels, value, ts, exemplar in family.samples:
        if name == bucket_name:
            flat = labels.flat
            # Clients write ``le`` last: take it from the end without a scan when they do.
            n = len(flat)
            if n >= 2 and flat[n - 2] == "le":
                key = flat[: n - 2]
                le: str | None = flat[n - 1]
            else:
                key = _without_key(flat, "le")
                le = _label(flat, "le")
            if key != last_key:
                found = series.get(key)
                if found is None:
                    found = series[key] = _Hist()
                cur = found
                add_bound = cur.bounds.append
                add_cumulative = cur.cumulative.append
                last_key = key
            bound = le_cache.get(le) if le is not None else None
            if bound is None:
                try:
                    bound = _parse_bound(le) if le is not None else math.nan
                except ValueError:
                    bound = math.nan
                if math.isnan(bound):
                    cur.bad = True
                    continue
            add_bound(bound)
            add_cumulative(value)
            if exemplar is not None:
                if cur.exemplars is None:
                    cur.exemplars = []
                cur.exemplars.append(exemplar)
            if ts is not None:
                cur.ts = ts
            continue
        flat = labels.flat
        h = series.get(flat)
        if h is None:
            h = series[flat] = _Hist()
        if name == count_name:
            h.count = value
            if ts is not None:
                h.ts = ts
        elif name == sum_name:
            h.sum = value
        elif name == created_name:
            h.created = created_ns(value)
    shared = _SharedBounds()
    for key, h in series.items():
        _histogram_point(key, h, scale, out, shared)


class _SharedBounds:
    """The OTLP bounds of the previous series of a family: the series of a family nearly always
    share their ``le`` values (the very float objects, from the ``le`` cache), so they share one
    bounds tuple too: less work and memory, and one tuple for the encoder to see."""

    __slots__ = ("bounds", "le_values")

    def __init__(self) -> None:
        self.le_values: list[float] | None = None      # None: no series yet (never equals a list)
        self.bounds: tuple[float, ...] = ()


def _histogram_point(key: tuple[str, ...], h: _Hist, scale: float, out: _Collector,
                     shared: _SharedBounds) -> None:
    """Check one series and add its point (or count the drop)."""
    if h.bad:
        out.drop("histogram_bad_le")
        return
    if h.count is None:
        out.drop("histogram_no_count")
        return
    bounds_in = h.bounds
    cumulative = h.cumulative
    # The common case, checked with C-level loops: bounds strictly ascending (no sort, no
    # duplicates), above -Inf (the general way treats a -Inf bucket as a duplicate of its start),
    # ending in +Inf, cumulative counts non-decreasing from 0 (NaN fails ``>=``) and within uint64.
    # Anything else goes the general way, which also picks the drop reason.
    shifted = [0.0]
    shifted += cumulative      # shifted[i] is the cumulative count before bucket i
    bounds: tuple[float, ...]
    prev_in = shared.le_values
    # Identity, not ``==``: 0.0 == -0.0, and the bound's sign must come from the series' own ``le``.
    if prev_in is not None and len(prev_in) == len(bounds_in) and all(map(is_, bounds_in, prev_in)):
        bounds = shared.bounds      # already known to be strictly ascending, -Inf < b, last +Inf
        fast = all(map(ge, cumulative, shifted)) and cumulative[-1] <= _MAX_COUNT
    else:
        fast = (bool(bounds_in) and bounds_in[-1] == _INF and bounds_in[0] != -_INF
                and all(map(lt, bounds_in, bounds_in[1:]))
                and all(map(ge, cumulative, shifted))
                and cumulative[-1] <= _MAX_COUNT)
        if fast:
            if scale != 1.0:
                bounds = tuple([b * scale for b in bounds_in[:-1]])
            else:
                bounds = tuple(bounds_in[:-1])
            shared.le_values = bounds_in
            shared.bounds = bounds
    counts: tuple[float, ...]
    if fast:
        counts = tuple(map(float, map(sub, cumulative, shifted)))
    else:
        checked = _checked_buckets(sorted(zip(bounds_in, cumulative)), scale, out)
        if checked is None:
            return
        bounds, counts = checked
    total = float(h.count)
    if not 0.0 <= total <= _MAX_COUNT:
        out.drop("histogram_bad_count")
        return
    sum_ = h.sum
    if sum_ is not None:
        sum_ = float(sum_) * scale if scale != 1.0 else float(sum_)
    attrs, points = out.attrs_and_bucket(key)
    exemplars = h.exemplars
    points.append(HistogramPoint(attrs, bounds, counts, total, sum_, h.ts, h.created,
                                 _scaled(exemplars, scale) if exemplars is not None else ()))


def _checked_buckets(buckets: list[tuple[float, float]], scale: float,
                     out: _Collector) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """Sorted (bound, cumulative count) pairs → OTLP bounds and per-bucket counts; None (drop counted)
    when they cannot make a histogram."""
    if not buckets or buckets[-1][0] != _INF:
        out.drop("histogram_no_inf_bucket")
        return None
    bounds: list[float] = []
    counts: list[float] = []
    prev_bound = -_INF
    prev = 0.0
    for bound, cum in buckets:
        if bound == prev_bound:
            # ``1`` and ``1.0`` are the same bound: the same cumulative count is a duplicate line.
            if cum != prev:
                out.drop("histogram_duplicate_bucket")
                return None
            continue
        if not cum >= prev:          # decreasing, or NaN
            out.drop("histogram_decreasing_buckets")
            return None
        if cum > _MAX_COUNT:         # OTLP counts are uint64 (this also catches +Inf)
            out.drop("histogram_bad_count")
            return None
        if bound != _INF:
            bounds.append(bound * scale if scale != 1.0 else bound)
        counts.append(float(cum - prev))
        prev = cum
        prev_bound = bound
    return tuple(bounds), tuple(counts)


def _summary(family: MetricFamily, out: _Collector, scale: float) -> None:
    fname = family.name
    count_name, sum_name, created_name = fname + "_count", fname + "_sum", fname + "_created"
    # key → [quantiles, count, sum, ts, created, bad]
    series: dict[tuple[str, ...], list[object]] = {}
    for s in family.samples:
        name = s.name
        flat = s.labels.flat
        if name == count_name or name == sum_name or name == created_name:
            entry = series.get(flat)
            if entry is None:
                entry = series[flat] = [[], None, None, None, None, False]
            if name == count_name:
                entry[1] = s.value
                if s.timestamp_ns is not None:
                    entry[3] = s.timestamp_ns
            elif name == sum_name:
                entry[2] = s.value
            else:
                entry[4] = created_ns(s.value)
            continue
        key = _without_key(flat, "quantile")
        entry = series.get(key)
        if entry is None:
            entry = series[key] = [[], None, None, None, None, False]
        q_text = _label(flat, "quantile")
        try:
            q = _parse_bound(q_text) if q_text is not None else math.nan
        except ValueError:
            q = math.nan
        if not 0.0 <= q <= 1.0:     # also NaN; OpenMetrics and OTLP: a quantile lies in [0, 1]
            entry[5] = True
            continue
        if s.timestamp_ns is not None:
            entry[3] = s.timestamp_ns
        v = s.value
        # OTLP: "quantile values must NOT be negative". NaN (legal in OpenMetrics: no observation yet)
        # stays out quietly; a negative value is data OTLP cannot carry: left out and counted.
        if v >= 0.0:
            entry[0].append((q, v * scale if scale != 1.0 else float(v)))  # type: ignore[attr-defined]
        elif v < 0.0:
            out.drop("summary_negative_quantile_value")
    for key, (quantiles, count, sum_, ts, created, bad) in series.items():
        if bad:
            out.drop("summary_bad_quantile")
            continue
        if count is None:
            out.drop("summary_no_count")
            continue
        if not 0.0 <= count <= _MAX_COUNT:  # type: ignore[operator]
            out.drop("summary_bad_count")
            continue
        qs: list[tuple[float, float]] = quantiles  # type: ignore[assignment]
        qs.sort()
        s_val = 0.0 if sum_ is None else float(sum_) * scale  # type: ignore[arg-type]
        attrs, bucket = out.attrs_and_bucket(key)
        bucket.append(SummaryPoint(attrs, tuple(qs), float(count), s_val,  # type: ignore[arg-type]
                                   ts, created))  # type: ignore[arg-type]


def assemble(family: MetricFamily, attributes: AttributesFn = default_attributes,
             scale: float = 1.0) -> Assembled:
    """Group a family's samples into OTel points per series and scope (see the module docstring)."""
    out = _Collector(attributes)
    t = family.type
    if t == "counter":
        _counter(family, out, scale)
        return out.result(Kind.SUM, True)
    if t == "gauge" or t == "unknown" or t == "untyped":
        _number_per_sample(family, out, scale, None)
        return out.result(Kind.GAUGE, False)
    if t == "histogram":
        _histogram(family, out, scale)
        return out.result(Kind.HISTOGRAM, False)
    if t == "summary":
        _summary(family, out, scale)
        return out.result(Kind.SUMMARY, False)
    if t == "info":
        _number_per_sample(family, out, 1.0, 1.0)
        return out.result(Kind.SUM, False)
    if t == "stateset":
        _number_per_sample(family, out, 1.0, None)
        return out.result(Kind.SUM, False)
    # gaugehistogram (and any type OTLP cannot carry): dropped per the OTel spec, one count per series.
    keys = {_without_key(s.labels.flat, "le") for s in family.samples if not s.name.endswith(("_gsum", "_gcount"))}
    out.drop(f"{t}_unsupported" if t in ("gaugehistogram",) else "unsupported_type", len(keys))
    return out.result(None, False)


def attach_created(families: Sequence[MetricFamily]) -> list[MetricFamily]:
    """Fold prometheus_client's ``X_created`` gauge families (0.0.4 text) into family ``X``.

    Only when ``X`` (or ``X_total``) is a counter, histogram or summary of the same exposition; a
    family genuinely named ``…_created`` otherwise stays a metric of its own.
    """
    by_name: dict[str, int] = {}
    candidates = False
    for i, f in enumerate(families):
        by_name[f.name] = i
        if f.name.endswith("_created") and f.type in ("gauge", "unknown"):
            candidates = True
    if not candidates:
        return list(families)
    extra: dict[int, list[Sample]] = {}
    removed: set[int] = set()
    for i, f in enumerate(families):
        if not (f.name.endswith("_created") and f.type in ("gauge", "unknown")):
            continue
        base = f.name[:-8]
        for owner_name in (base, base + "_total"):
            j = by_name.get(owner_name)
            if j is not None and families[j].type in _CREATED_OWNERS:
                extra.setdefault(j, []).extend(f.samples)
                removed.add(i)
                break
    out: list[MetricFamily] = []
    for i, f in enumerate(families):
        if i in removed:
            continue
        more = extra.get(i)
        out.append(f._replace(samples=f.samples + tuple(more)) if more else f)
    return out


def split_target_info(families: Sequence[MetricFamily]) -> tuple[Attributes, list[MetricFamily]]:
    """Remove the ``target_info`` family; its (single) series' labels become Resource attributes."""
    resource: Attributes = ()
    rest: list[MetricFamily] = []
    found = False
    for f in families:
        if not found and (f.name == "target_info" or (f.name == "target" and f.type == "info")):
            found = True
            if f.samples:
                resource = default_attributes(f.samples[0].labels)
            continue
        rest.append(f)
    return resource, rest


def passthrough_metrics(families: Sequence[MetricFamily]) -> tuple[list[Metric], int]:
    """Families as OTel metrics under their Prometheus names, labels as string attributes.

    Returns the metrics and the number of points dropped (invalid histograms, gaugehistograms, …).
    A family without samples still yields a metric without points (its name, unit and kind).
    """
    metrics: list[Metric] = []
    dropped = 0
    for family in attach_created(families):
        a = assemble(family)
        dropped += a.dropped
        if a.kind is None:
            continue
        unit = ucum_unit(family.unit)
        description = family.help or ""
        monotonic = a.monotonic and a.kind is Kind.SUM
        if not a.groups:
            metrics.append(Metric(family.name, description, unit, a.kind, (), monotonic, prom_type=family.type))
            continue
        for scope_name, scope_version, points in a.groups:
            metrics.append(Metric(family.name, description, unit, a.kind, points, monotonic,
                                  prom_type=family.type, scope_name=scope_name, scope_version=scope_version))
    return metrics, dropped


__all__ = [
    "Assembled",
    "CachedAttributes",
    "assemble",
    "attach_created",
    "created_ns",
    "default_attributes",
    "passthrough_metrics",
    "seconds_to_ns",
    "split_target_info",
    "ucum_unit",
]
