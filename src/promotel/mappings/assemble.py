"""Assemble one metric family's samples into OTel-shaped points (the map stage's shared core).

Stateless: one family in, points out. Mapping plugins call :func:`assemble` with their own
``attributes`` function (called once per series) and unit ``scale``; the passthrough mapping uses
:func:`passthrough_metrics`. This is the per-sample hot path (a Baseten scrape: ~130k histogram
buckets), so per sample it calls no helper function and allocates at most the series key;
per series it checks the common shape of a histogram with C-level loops (``map`` over ``operator``)
and leaves anything unusual to the general code, which decides exactly as before. Allocations also
matter for the cyclic GC: every 700 net new container objects trigger a collection.

Rules (see ``docs/conversion.md``, "Types" and "Names and types"):

* counter → monotonic Sum; ``_created`` gives the start time. gauge/unknown → Gauge.
* histogram → explicit-bucket Histogram; OTLP bounds are the ``le`` values without ``+Inf`` and
  OTLP bucket counts are per bucket, while Prometheus buckets are cumulative.
* summary → Summary; OTLP quantile values must not be negative: NaN ones (legal in OpenMetrics) and
  negative ones are left out and counted.
* info and stateset → non-monotonic Sum, the value as exposed (1 per info series, 1/0 per state), also in
  their Prometheus-text spellings (``promotel.mappings.naming``).
* gaugehistogram → dropped (OTel spec), one drop counted per series.
* ``otel_scope_*`` labels select the instrumentation scope and leave the point.
* one point per series: a series exposed twice keeps its first sample (Prometheus does the same); the
  others are counted as ``duplicate_sample``, series the mapping makes identical as ``duplicate_series``.

Series within one exposition are grouped by their label tuple in exposition order: clients write the
labels of one series (``_bucket``/``_count``/``_sum``/``_created``) in the same order.

Counters and the one-point-per-sample types are assembled here; histograms and summaries in
``promotel.mappings.histograms``; what all types share (the point collector, attributes, scopes, units,
``_created`` times) in ``promotel.mappings.collect``; names, effective types and units in
``promotel.mappings.naming``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from promotel.mappings.collect import (
    Assembled,
    AttributesFn,
    CachedAttributes,
    PointCollector,
    ScopeDetails,
    created_ns,
    default_attributes,
    label_value,
    scaled_exemplars,
    scraped_attributes,
    seconds_to_ns,
    ucum_unit,
    without_key,
)
from promotel.mappings.histograms import histogram_points, summary_points
from promotel.mappings.naming import fold_gauge_histograms, shape, unit_of
from promotel.mappings.scale import Scale
from promotel.model import (
    Attributes,
    AttrValue,
    Kind,
    Metric,
    MetricFamily,
    NumberPoint,
    Sample,
)

# Families whose ``X_created`` gauge (prometheus_client, 0.0.4 text) carries their start time.
_CREATED_OWNERS = frozenset({"counter", "histogram", "summary"})

TARGET_INFO = "target_info"
SCOPE_INFO = "otel_scope_info"


def _number_per_sample(family: MetricFamily, out: PointCollector, scale: Scale) -> None:
    """Gauge/unknown/stateset/info: one point per series, the first sample of each."""
    series_of = out.labels_and_bucket
    apply = scale.apply if scale.num != scale.den else None
    for _name, labels, value, ts, ex in family.samples:
        attrs, group = series_of(labels)
        # One point per series (PointCollector.add, inlined: this runs once per sample).
        seen = group.seen
        n = len(seen)
        flat = labels.flat
        first = seen.setdefault(attrs, flat)
        if len(seen) == n:
            out.duplicate(first, flat)
            continue
        value = float(value)
        if apply is not None:
            value = apply(value)
        group.points.append(NumberPoint(attrs, value, ts, None,
                                        scaled_exemplars((ex,), scale) if ex is not None else ()))


def _counter(family: MetricFamily, out: PointCollector, scale: Scale) -> None:
    fname = family.name
    # A sample is the start time when its name ends in ``_created`` and is not the family's own name (a
    # counter genuinely named ``…_created``, issue #30309); any other sample is the value (``x_total``, or
    # ``x`` in text, or an escaped spelling of either).
    # flat labels → [value, timestamp_ns, created_ns, exemplar, created seen]
    series: dict[tuple[str, ...], list[object]] = {}
    for s in family.samples:
        flat = s.labels.flat
        entry = series.get(flat)
        if entry is None:
            entry = series[flat] = [None, None, None, None, False]
        name = s.name
        if name.endswith("_created") and name != fname:
            if entry[4]:
                out.drop("duplicate_sample")
                continue
            entry[4] = True
            entry[2] = created_ns(s.value)
            if entry[2] is None:
                out.drop("invalid_created")
        elif entry[0] is not None:
            out.drop("duplicate_sample")      # Prometheus keeps the first sample of a series
        else:
            entry[0] = s.value
            entry[1] = s.timestamp_ns
            if s.exemplar is not None:
                entry[3] = s.exemplar
    apply = scale.apply if scale.num != scale.den else None
    for flat, (value, ts, created, ex, _seen) in series.items():
        if value is None:
            out.drop("counter_no_value")
            continue
        attrs, group = out.attrs_and_bucket(flat)
        v = float(value)  # type: ignore[arg-type]
        if apply is not None:
            v = apply(v)
        out.add(group, attrs, flat, NumberPoint(attrs, v, ts, created,  # type: ignore[arg-type]
                                                scaled_exemplars((ex,), scale)  # type: ignore[arg-type]
                                                if ex is not None else ()))


def assemble(family: MetricFamily, attributes: AttributesFn = default_attributes,
             scale: float | Scale = 1.0) -> Assembled:
    """Group a family's samples into OTel points per series and scope (see the module docstring).

    ``scale`` is the unit conversion (a ``Scale``, or a number read as the decimal it is written as)."""
    out = PointCollector(attributes)
    exact = Scale.of(scale)
    t = shape(family).type
    if t == "counter":
        _counter(family, out, exact)
        return out.result(Kind.SUM, True)
    if t == "gauge" or t == "unknown" or t == "untyped":
        _number_per_sample(family, out, exact)
        return out.result(Kind.GAUGE, False)
    if t == "histogram":
        histogram_points(family, out, exact)
        return out.result(Kind.HISTOGRAM, False)
    if t == "summary":
        summary_points(family, out, exact)
        return out.result(Kind.SUMMARY, False)
    if t == "info" or t == "stateset":
        # Counts (1 per info series, 1/0 per state): a unit scale does not apply.
        _number_per_sample(family, out, Scale())
        return out.result(Kind.SUM, False)
    # gaugehistogram (and any type OTLP cannot carry): dropped per the OTel spec, one count per series.
    keys = {without_key(s.labels.flat, "le") for s in family.samples}
    out.drop("gaugehistogram" if t == "gaugehistogram" else "unsupported_type", len(keys))
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
    """Remove the ``target_info`` family; its first series' labels become Resource attributes.

    Kept for plugins written for 0.1: the pipeline now removes ``target_info`` (every series, per identity)
    before any mapping sees the families (``split_identity_families``)."""
    resource: Attributes = ()
    rest: list[MetricFamily] = []
    found = False
    for f in families:
        if not found and is_target_info(f):
            found = True
            if f.samples:
                resource = default_attributes(f.samples[0].labels)
            continue
        rest.append(f)
    return resource, rest


def is_target_info(family: MetricFamily) -> bool:
    """The ``target`` info metric: an OpenMetrics info family ``target`` or a text family ``target_info``."""
    return family.name == TARGET_INFO or (family.name == "target" and family.type == "info")


def is_scope_info(family: MetricFamily) -> bool:
    """``otel_scope_info``: the instrumentation scopes' attributes (older OTel Prometheus exporters)."""
    return family.name == SCOPE_INFO or (family.name == "otel_scope" and family.type == "info")


class IdentityFamilies(NamedTuple):
    """An exposition split into what describes the target and its scopes, and the metric families."""

    target_info: tuple[Sample, ...]       # every sample of ``target_info``, in exposition order
    scope_info: tuple[Sample, ...]        # every sample of ``otel_scope_info``
    families: list[MetricFamily]          # everything else


def split_identity_families(families: Sequence[MetricFamily]) -> IdentityFamilies:
    """Take ``target_info`` and ``otel_scope_info`` out of the families (they become Resource and scope
    attributes, never metrics: the spec says the target info metric MUST be dropped from the batch)."""
    targets: list[Sample] = []
    scopes: list[Sample] = []
    rest: list[MetricFamily] = []
    for f in families:
        if is_target_info(f):
            targets.extend(f.samples)
        elif is_scope_info(f):
            scopes.extend(f.samples)
        else:
            rest.append(f)
    return IdentityFamilies(tuple(targets), tuple(scopes), rest)


def scope_info_attributes(samples: Sequence[Sample]) -> dict[tuple[str, str], Attributes]:
    """``otel_scope_info`` series → (scope name, version) → the scope's attributes (its other labels, as the
    Collector reads them: ``job``, ``instance`` and empty values left out)."""
    out: dict[tuple[str, str], Attributes] = {}
    for s in samples:
        labels = s.labels
        key = (labels.get("otel_scope_name", ""), labels.get("otel_scope_version", ""))
        attrs = tuple(sorted((k, v) for k, v in labels.pairs()
                             if v and k not in ("otel_scope_name", "otel_scope_version", "job", "instance")))
        out.setdefault(key, attrs)
    return out


def with_scope_details(metric: Metric, details: Mapping[tuple[str, str], ScopeDetails]) -> Metric:
    """``metric`` with the schema URL and attributes its scope's ``otel_scope_*`` labels gave."""
    d = details.get((metric.scope_name, metric.scope_version))
    if d is None:
        return metric
    return metric._replace(scope_schema_url=d.schema_url, scope_attributes=d.attributes)


class Passthrough(NamedTuple):
    """What the passthrough rule made of some families: metrics, drops by reason, first family per reason."""

    metrics: list[Metric]
    drops: dict[str, int]
    examples: dict[str, str]


def passthrough(families: Sequence[MetricFamily], attributes: AttributesFn = default_attributes) -> Passthrough:
    """Families as OTel metrics under their Prometheus names (``promotel.mappings.naming``), labels as string
    attributes (``attributes``: :func:`default_attributes`, or :func:`scraped_attributes` for a scraped target).

    A family without samples still yields a metric without points (its name, unit and kind)."""
    metrics: list[Metric] = []
    drops: dict[str, int] = {}
    examples: dict[str, str] = {}
    for family in fold_gauge_histograms(attach_created(families)):
        a = assemble(family, attributes)
        for reason, n in a.drops:
            drops[reason] = drops.get(reason, 0) + n
            examples.setdefault(reason, family.name)
        if a.kind is None:
            continue
        name, effective = shape(family)
        unit = unit_of(family, effective)
        description = family.help or ""
        monotonic = a.monotonic and a.kind is Kind.SUM
        if not a.groups:
            metrics.append(Metric(name, description, unit, a.kind, (), monotonic, prom_type=family.type))
            continue
        details = {(d.name, d.version): d for d in a.scopes}
        for scope_name, scope_version, points in a.groups:
            metrics.append(with_scope_details(
                Metric(name, description, unit, a.kind, points, monotonic, prom_type=family.type,
                       scope_name=scope_name, scope_version=scope_version), details))
    return Passthrough(metrics, drops, examples)


def passthrough_metrics(families: Sequence[MetricFamily]) -> tuple[list[Metric], int]:
    """As :func:`passthrough` with the default attributes: the metrics and the number of points dropped."""
    result = passthrough(families)
    return result.metrics, sum(result.drops.values())


__all__ = [
    "SCOPE_INFO",
    "TARGET_INFO",
    "Assembled",
    "AttrValue",
    "CachedAttributes",
    "IdentityFamilies",
    "Passthrough",
    "assemble",
    "attach_created",
    "created_ns",
    "default_attributes",
    "is_scope_info",
    "is_target_info",
    "label_value",
    "passthrough",
    "passthrough_metrics",
    "scope_info_attributes",
    "scraped_attributes",
    "seconds_to_ns",
    "split_identity_families",
    "split_target_info",
    "ucum_unit",
    "with_scope_details",
]
