"""Histogram and summary families → OTel points (the per-bucket hot path of the map stage).

A Baseten scrape carries ~130k histogram buckets, so per sample this code calls no helper and allocates at
most the series key; per series the common shape (ascending bounds shared with the previous series, a final
``+Inf`` bucket, cumulative counts that never decrease) is checked with C-level ``map`` passes, and anything
unusual goes to the general path, which decides exactly as before. Prometheus buckets are cumulative; OTLP
bucket counts are per bucket and OTLP bounds leave out ``+Inf``. Summary quantile values OTLP cannot carry
(NaN, negative) are left out and counted. A series' second ``_count``, ``_sum``, ``_created`` or quantile
sample is a duplicate: the first is kept (as Prometheus does) and the others counted. Scaled bounds, sums,
quantile values and exemplar values are correctly rounded (``promotel.mappings.scale``).

State: one bounded cache of parsed ``le`` texts.
"""

from __future__ import annotations

import math
from operator import ge, is_, lt, sub

from promotel.mappings.collect import (
    MAX_COUNT,
    PointCollector,
    created_ns,
    label_value,
    scaled_exemplars,
    without_key,
)
from promotel.mappings.scale import Scale
from promotel.model import (
    Exemplar,
    HistogramPoint,
    MetricFamily,
    Sample,
    SummaryPoint,
)

_INF = math.inf
_le_cache: dict[str, float] = {}


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

    __slots__ = ("bad", "bounds", "count", "created", "cumulative", "exemplars", "has_created", "sum", "ts")

    def __init__(self) -> None:
        self.bounds: list[float] = []
        self.cumulative: list[float] = []
        self.count: float | None = None
        self.sum: float | None = None
        self.ts: int | None = None
        self.created: int | None = None
        self.has_created = False
        self.exemplars: list[Exemplar] | None = None     # made on the first exemplar (they are rare)
        self.bad = False


def histogram_points(family: MetricFamily, out: PointCollector, scale: Scale) -> None:
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
    for name, labels, value, ts, exemplar in _own_names(family, bucket_name, count_name, sum_name, created_name):
        if name == bucket_name:
            flat = labels.flat
            # Clients write ``le`` last: take it from the end without a scan when they do.
            n = len(flat)
            if n >= 2 and flat[n - 2] == "le":
                key = flat[: n - 2]
                le: str | None = flat[n - 1]
            else:
                key = without_key(flat, "le")
                le = label_value(flat, "le")
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
            if h.count is not None:
                out.drop("duplicate_sample")      # Prometheus keeps the first sample of a series
                continue
            h.count = value
            if ts is not None:
                h.ts = ts
        elif name == sum_name:
            if h.sum is not None:
                out.drop("duplicate_sample")
                continue
            h.sum = value
        elif name == created_name:
            if h.has_created:
                out.drop("duplicate_sample")
                continue
            h.has_created = True
            h.created = created_ns(value)
            if h.created is None:
                out.drop("invalid_created")
        else:
            out.drop("unexpected_sample")         # a name that is not part of this histogram
    shared = _SharedBounds()
    for key, h in series.items():
        _histogram_point(key, h, scale, out, shared)


def _own_names(family: MetricFamily, plain: str, count_name: str, sum_name: str,
               created_name: str) -> tuple[Sample, ...]:
    """The family's samples, renamed after their suffix when the first is not named after the family: a
    lenient text body (prometheus_client 0.26 asked without ``escaping=allow-utf-8`` writes escaped sample
    names under an unescaped family). The Collector reads a sample's role from its suffix the same way."""
    samples = family.samples
    if not samples or samples[0].name.startswith(family.name):
        return samples
    return tuple(s._replace(name=_by_suffix(s.name, plain, count_name, sum_name, created_name)) for s in samples)


def _by_suffix(name: str, plain: str, count_name: str, sum_name: str, created_name: str) -> str:
    """The family's own name for the sample role ``name``'s suffix says (``plain``: buckets, quantiles)."""
    if name.endswith("_count"):
        return count_name
    if name.endswith("_sum"):
        return sum_name
    if name.endswith("_created"):
        return created_name
    if plain.endswith("_bucket") == name.endswith("_bucket"):
        return plain
    return name


class _SharedBounds:
    """The OTLP bounds of the previous series of a family: the series of a family nearly always
    share their ``le`` values (the very float objects, from the ``le`` cache), so they share one
    bounds tuple too: less work and memory, and one tuple for the encoder to see."""

    __slots__ = ("bounds", "le_values")

    def __init__(self) -> None:
        self.le_values: list[float] | None = None      # None: no series yet (never equals a list)
        self.bounds: tuple[float, ...] = ()


def _histogram_point(key: tuple[str, ...], h: _Hist, scale: Scale, out: PointCollector,
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
        fast = all(map(ge, cumulative, shifted)) and cumulative[-1] <= MAX_COUNT
    else:
        fast = (bool(bounds_in) and bounds_in[-1] == _INF and bounds_in[0] != -_INF
                and all(map(lt, bounds_in, bounds_in[1:]))
                and all(map(ge, cumulative, shifted))
                and cumulative[-1] <= MAX_COUNT)
        if fast:
            if scale.num != scale.den:
                apply = scale.apply
                bounds = tuple([apply(b) for b in bounds_in[:-1]])
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
    if not 0.0 <= total <= MAX_COUNT:
        out.drop("histogram_bad_count")
        return
    sum_ = h.sum
    if sum_ is not None:
        sum_ = scale.apply(float(sum_)) if scale.num != scale.den else float(sum_)
    attrs, group = out.attrs_and_bucket(key)
    seen = group.seen
    n = len(seen)
    first = seen.setdefault(attrs, key)
    if len(seen) == n:
        out.duplicate(first, key)       # another series with these attributes came first
        return
    exemplars = h.exemplars
    group.points.append(HistogramPoint(attrs, bounds, counts, total, sum_, h.ts, h.created,
                                       scaled_exemplars(exemplars, scale) if exemplars is not None else ()))


def _checked_buckets(buckets: list[tuple[float, float]], scale: Scale,
                     out: PointCollector) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
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
        if cum > MAX_COUNT:         # OTLP counts are uint64 (this also catches +Inf)
            out.drop("histogram_bad_count")
            return None
        if bound != _INF:
            bounds.append(scale.apply(bound))
        counts.append(float(cum - prev))
        prev = cum
        prev_bound = bound
    return tuple(bounds), tuple(counts)


def summary_points(family: MetricFamily, out: PointCollector, scale: Scale) -> None:
    fname = family.name
    count_name, sum_name, created_name = fname + "_count", fname + "_sum", fname + "_created"
    apply = scale.apply if scale.num != scale.den else None
    # key → [quantiles, count, sum, ts, created, bad, quantiles seen, created seen]
    series: dict[tuple[str, ...], list[object]] = {}
    for s in _own_names(family, fname, count_name, sum_name, created_name):
        name = s.name
        flat = s.labels.flat
        if name == count_name or name == sum_name or name == created_name:
            entry = series.get(flat)
            if entry is None:
                entry = series[flat] = [[], None, None, None, None, False, set(), False]
            if name == count_name:
                if entry[1] is not None:
                    out.drop("duplicate_sample")
                    continue
                entry[1] = s.value
                if s.timestamp_ns is not None:
                    entry[3] = s.timestamp_ns
            elif name == sum_name:
                if entry[2] is not None:
                    out.drop("duplicate_sample")
                    continue
                entry[2] = s.value
            else:
                if entry[7]:
                    out.drop("duplicate_sample")
                    continue
                entry[7] = True
                entry[4] = created_ns(s.value)
                if entry[4] is None:
                    out.drop("invalid_created")
            continue
        if name != fname:
            out.drop("unexpected_sample")      # a name that is not part of this summary (lenient text)
            continue
        key = without_key(flat, "quantile")
        entry = series.get(key)
        if entry is None:
            entry = series[key] = [[], None, None, None, None, False, set(), False]
        q_text = label_value(flat, "quantile")
        try:
            q = _parse_bound(q_text) if q_text is not None else math.nan
        except ValueError:
            q = math.nan
        if not 0.0 <= q <= 1.0:     # also NaN; OpenMetrics and OTLP: a quantile lies in [0, 1]
            entry[5] = True
            continue
        seen: set[float] = entry[6]  # type: ignore[assignment]
        if q in seen:
            out.drop("duplicate_sample")
            continue
        seen.add(q)
        if s.timestamp_ns is not None:
            entry[3] = s.timestamp_ns
        v = s.value
        # OTLP: "quantile values must NOT be negative". NaN (legal in OpenMetrics: no observation yet) has no
        # value to send; a negative value is data OTLP cannot carry. Both are left out and counted.
        if v >= 0.0:
            entry[0].append((q, apply(v) if apply is not None else float(v)))  # type: ignore[attr-defined]
        elif v < 0.0:
            out.drop("summary_negative_quantile_value")
        else:
            out.drop("summary_nan_quantile_value")
    for key, (quantiles, count, sum_, ts, created, bad, _seen, _has_created) in series.items():
        if bad:
            out.drop("summary_bad_quantile")
            continue
        if count is None:
            out.drop("summary_no_count")
            continue
        if not 0.0 <= count <= MAX_COUNT:  # type: ignore[operator]
            out.drop("summary_bad_count")
            continue
        qs: list[tuple[float, float]] = quantiles  # type: ignore[assignment]
        qs.sort()
        if sum_ is None:
            s_val = 0.0
        else:
            s_val = apply(float(sum_)) if apply is not None else float(sum_)  # type: ignore[arg-type]
        attrs, group = out.attrs_and_bucket(key)
        out.add(group, attrs, key, SummaryPoint(attrs, tuple(qs), float(count), s_val,  # type: ignore[arg-type]
                                                ts, created))  # type: ignore[arg-type]


__all__ = ["histogram_points", "summary_points"]
