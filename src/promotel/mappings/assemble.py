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

Counters and the one-point-per-sample types are assembled here; histograms and summaries in
``promotel.mappings.histograms``; what all types share (the point collector, attributes, scopes, units,
``_created`` times) in ``promotel.mappings.collect``.
"""

from __future__ import annotations

from collections.abc import Sequence

from promotel.mappings.collect import (
    Assembled,
    AttributesFn,
    CachedAttributes,
    PointCollector,
    created_ns,
    default_attributes,
    scaled_exemplars,
    seconds_to_ns,
    ucum_unit,
    without_key,
)
from promotel.mappings.histograms import histogram_points, summary_points
from promotel.model import (
    Attributes,
    Kind,
    Metric,
    MetricFamily,
    NumberPoint,
    Sample,
)

# Families whose ``X_created`` gauge (prometheus_client, 0.0.4 text) carries their start time.
_CREATED_OWNERS = frozenset({"counter", "histogram", "summary"})

def _number_per_sample(family: MetricFamily, out: PointCollector, scale: float, fixed: float | None) -> None:
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
        bucket.append(NumberPoint(attrs, value, ts, None, scaled_exemplars((ex,), scale) if ex is not None else ()))


def _counter(family: MetricFamily, out: PointCollector, scale: float) -> None:
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
                                  scaled_exemplars((ex,), scale) if ex is not None else ()))  # type: ignore[arg-type]


def assemble(family: MetricFamily, attributes: AttributesFn = default_attributes,
             scale: float = 1.0) -> Assembled:
    """Group a family's samples into OTel points per series and scope (see the module docstring)."""
    out = PointCollector(attributes)
    t = family.type
    if t == "counter":
        _counter(family, out, scale)
        return out.result(Kind.SUM, True)
    if t == "gauge" or t == "unknown" or t == "untyped":
        _number_per_sample(family, out, scale, None)
        return out.result(Kind.GAUGE, False)
    if t == "histogram":
        histogram_points(family, out, scale)
        return out.result(Kind.HISTOGRAM, False)
    if t == "summary":
        summary_points(family, out, scale)
        return out.result(Kind.SUMMARY, False)
    if t == "info":
        _number_per_sample(family, out, 1.0, 1.0)
        return out.result(Kind.SUM, False)
    if t == "stateset":
        _number_per_sample(family, out, 1.0, None)
        return out.result(Kind.SUM, False)
    # gaugehistogram (and any type OTLP cannot carry): dropped per the OTel spec, one count per series.
    keys = {without_key(s.labels.flat, "le") for s in family.samples if not s.name.endswith(("_gsum", "_gcount"))}
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
