"""The per-target pipeline, composed in one place: exposition bytes → parse → map → convert → ``TargetBatch``.

``promotel run`` (each source's scrape loop), ``promotel map`` (files as successive scrapes), ``promotel
check`` (one probe scrape) and the benchmarks all build a ``TargetPipeline`` and nothing else, so what
``map`` prints is exactly what ``run`` sends for the same scrapes: the same resource, the same metrics, the
same ``up`` and ``scrape_*`` series.

    TargetPipeline.process(body, content_type, now_ns) → TargetResult      parse, map, convert (CPU work)
    TargetPipeline.batch(result, duration_s, now_ns)   → TargetBatch        + resource, up, scrape_*
    TargetPipeline.failed(duration_s, now_ns)          → TargetBatch        staleness markers, up = 0
    TargetPipeline.batches(…) / failed_batches(…)      → TargetBatch, …     the same, plus one batch per
                                                                            exposed job/instance (honor_labels)

**Identity** (the OpenTelemetry Prometheus-compatibility spec, "Resource Attributes"): a scraped target is the
Prometheus pair (``job``, ``instance``). ``job`` is the source's name (its ``service_name`` when set), and
``instance`` the target's ``host:port``. The Resource carries ``service.name`` = job (``service.namespace`` and
``service.name`` when the job is ``namespace/name``), ``service.instance.id`` = instance, ``server.address``,
``server.port`` and ``url.scheme``; then the labels of the target's ``target_info`` (never the three identity
keys); then the configured ``resource_attributes``, which win. A mapping plugin names metrics, not targets:
whatever Resource attributes it returns cannot change the identity. ``TargetPipeline.for_source`` refuses a
config in which two sources would share one identity.

Exposed ``job``/``instance`` labels follow Prometheus' ``honor_labels``: false (default) renames them
``exported_job``/``exported_instance`` (attributes of their points); true lets them win: points whose exposed
job or instance differ from the target's go to a Resource of their own, built from them the same way
(``TargetResult.exposed``, sent by ``batches``).

State (all of it, per target): the parser's previous scrape (``promotel.exposition``), the mapper's caches
(``promotel.mappings``), the series store (``promotel.series``) and the last Resource of each identity (for the
staleness markers of a failed scrape). Nothing here touches the process's GC or allocator;
``promotel.service.runtime`` does that around ``process`` in the service.

The per-exporter half (summaries policy → cumulative→delta → encode) is ``promotel.export.prepare``.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

from promotel.discovery.relabel import RelabelConfig
from promotel.discovery.seriesrelabel import DROP_REASON as RELABEL_DROP
from promotel.discovery.seriesrelabel import SeriesRelabeler
from promotel.errors import ConfigError
from promotel.exposition import ExpositionParser, Strictness
from promotel.exposition.rules import Leniency
from promotel.mappings import MappingPlugin, SourceLike, load_mapping
from promotel.mappings.assemble import scope_info_attributes, split_identity_families
from promotel.mappings.collect import TARGET_LABELS, default_attributes, scraped_attributes
from promotel.model import Attributes, AttrValue, Kind, Metric, NumberPoint, Point, Sample, TargetBatch
from promotel.series import SeriesStore

if TYPE_CHECKING:
    from promotel.config import Config, SourceConfig

__all__ = ["CONFIGURED_DROPS", "IDENTITY_KEYS", "TargetPipeline", "TargetResult", "identity_problems", "instance_of",
           "scrape_metrics", "service_identity", "target_resource"]

log = logging.getLogger("promotel.pipeline")

# The Resource attributes that identify a target; the target's own target_info and a mapping cannot set them.
IDENTITY_KEYS = ("service.name", "service.namespace", "service.instance.id")
# Drop reasons that are the source's configuration at work, not a problem with the data.
CONFIGURED_DROPS = frozenset({"override_drop", "unmapped_drop", RELABEL_DROP})
# At most this many exposed identities (honor_labels) are remembered for a failed scrape's markers.
_MAX_EXPOSED = 10_000


def service_identity(job: str) -> dict[str, AttrValue]:
    """``service.name`` (and ``service.namespace``) from a Prometheus job: ``namespace/name`` is split at its
    first ``/`` (the Collector's exporters write ``<service.namespace>/<service.name>``); a job without a
    ``/``, or with nothing on one side of it, is the service name as it is."""
    namespace, sep, name = job.partition("/")
    if sep and namespace and name:
        return {"service.namespace": namespace, "service.name": name}
    return {"service.name": job}


def instance_of(url: str) -> tuple[str, dict[str, AttrValue]]:
    """Prometheus' ``instance`` of a scrape URL (``host:port``, the default port filled in, an IPv6 host in
    brackets) and the ``server.address``, ``server.port`` and ``url.scheme`` attributes of the URL."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme or "http"
    port = parts.port or (443 if scheme == "https" else 80)
    host = parts.hostname or ""
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}", {"server.address": host, "server.port": port, "url.scheme": scheme}


def _instance_attributes(instance: str) -> dict[str, AttrValue]:
    """``server.address``/``server.port`` of an exposed ``host:port`` instance (the Collector splits it too)."""
    host, sep, port = instance.rpartition(":")
    if sep and host and port.isdigit():
        return {"server.address": host.removeprefix("[").removesuffix("]"), "server.port": int(port)}
    return {}


def target_resource(url: str | None, service_name: str, extra: Sequence[tuple[str, AttrValue]],
                    *, instance: str | None = None) -> Attributes:
    """The Resource of one target (OTel Prometheus-compatibility spec, "Resource Attributes").

    ``service_name`` is the job (``ns/name`` gives ``service.namespace`` too); ``service.instance.id`` is the
    target's ``host:port``, as Prometheus' ``instance`` label is (``instance`` overrides it). Without a URL
    (``promotel map`` on files) only the service attributes and ``extra`` remain. ``extra`` (the configured
    resource attributes) is applied last and wins."""
    attrs: dict[str, AttrValue] = service_identity(service_name)
    if url is not None:
        url_instance, url_attrs = instance_of(url)
        attrs["service.instance.id"] = instance if instance is not None else url_instance
        attrs.update(url_attrs)
    elif instance is not None:
        attrs["service.instance.id"] = instance
    for k, v in extra:
        attrs[k] = v
    return tuple(sorted(attrs.items()))


def _gauge(name: str, value: float, unit: str, description: str, time_ns: int) -> Metric:
    point = NumberPoint(attributes=(), value=float(value), time_ns=time_ns)
    return Metric(name=name, description=description, unit=unit, kind=Kind.GAUGE, points=(point,),
                  prom_type="gauge")


def scrape_metrics(up: bool, duration_s: float, samples: int, series_added: int, time_ns: int) -> tuple[Metric, ...]:
    """The synthetic per-target series Prometheus users expect, named as Prometheus names them."""
    return (
        _gauge("up", 1.0 if up else 0.0, "", "The scraping was successful (1) or failed (0).", time_ns),
        _gauge("scrape_duration_seconds", duration_s, "s", "Duration of the scrape.", time_ns),
        _gauge("scrape_samples_scraped", samples, "{sample}", "The number of samples the target exposed.", time_ns),
        _gauge("scrape_series_added", series_added, "{series}",
               "The approximate number of new series in this scrape.", time_ns),
    )


_EMPTY: Mapping[str, str] = MappingProxyType({})
_EMPTY_COUNTS: Mapping[str, int] = MappingProxyType({})


class TargetResult(NamedTuple):
    """What one successful scrape became, before the per-target series are added (immutable)."""

    metrics: tuple[Metric, ...]       # converted: start/time set, staleness markers included
    resource: Attributes              # the target's resource with its target_info attributes
    samples: int                      # samples in the exposition (scrape_samples_scraped)
    series_added: int                 # new series in this scrape (scrape_series_added)
    # Samples, series or points left out, by bounded reason: the map stage's (histogram_no_count,
    # duplicate_sample, gaugehistogram, …; CONFIGURED_DROPS are the config at work) and the store's
    # (max_series, invalid_timestamp). ``docs/conversion.md``, "What is left out", lists them all.
    dropped: Mapping[str, int]
    drop_examples: Mapping[str, str] = _EMPTY      # reason → the first family (or metric) left out for it
    # honor_labels: the (Resource, metrics) of each exposed job/instance that is not the target's own.
    exposed: tuple[tuple[Attributes, tuple[Metric, ...]], ...] = ()
    # Rules of the exposition format the target broke and the parser tolerated (Strictness.SCRAPE), as
    # ``promotel lint`` would report them: rule id → times broken in this scrape.
    leniencies: Mapping[str, int] = _EMPTY_COUNTS


class _Identity(NamedTuple):
    job: str
    instance: str


class TargetPipeline:
    """parse → map → convert for one target, with that target's state (see the module docstring)."""

    def __init__(self, source: SourceLike, plugin: MappingPlugin | None = None, *, url: str | None,
                 mapping: str = "passthrough", resource_attributes: Sequence[tuple[str, AttrValue]] = (),
                 max_series: int = 200_000, honor_timestamps: bool = True,
                 job: str | None = None, instance: str | None = None,
                 target_labels: Mapping[str, str] | None = None,
                 metric_relabel_configs: Sequence[RelabelConfig] | None = None) -> None:
        self.name = source.name
        self.plugin = plugin if plugin is not None else load_mapping(mapping)
        self.mapper = self.plugin.bind(source)
        # Scraping accepts what Prometheus's scraper accepts; each tolerated rule is in parser.leniencies.
        self.parser = ExpositionParser(strictness=Strictness.SCRAPE)
        self._logged_drops: set[str] = set()      # drop reasons and format rules already logged for this target
        self._logged_rules: set[str] = set()
        self.store = SeriesStore(source.name, max_series=max_series, honor_timestamps=honor_timestamps)
        # ``honor_labels`` is optional on a SourceLike (sources written for 0.1 have none).
        self.honor_labels = bool(getattr(source, "honor_labels", False))
        # The Prometheus job is the source's name; service_name, when set, stands in for it in the Resource.
        self.job = job if job is not None else source.name
        self.service_job = source.service_name or self.job
        self._extra = tuple(resource_attributes)
        self.url = url
        url_instance = instance_of(url)[0] if url is not None else None
        self.instance = instance if instance is not None else url_instance
        self._base = target_resource(url, self.service_job, (), instance=self.instance)
        self.resource = target_resource(url, self.service_job, self._extra, instance=self.instance)
        self._last_resource = self.resource
        self._exposed_resources: dict[_Identity, Attributes] = {}
        self._warned_unwired = False
        # A discovered target's labels (other than job/instance) and the source's metric_relabel_configs, on
        # every series before mapping (promotel.discovery.seriesrelabel).
        if metric_relabel_configs is None:
            metric_relabel_configs = tuple(getattr(source, "metric_relabel_configs", ()))
        self.relabeler = SeriesRelabeler(target_labels or {}, metric_relabel_configs,
                                         honor_labels=self.honor_labels, job=self.job, instance=self.instance)

    @classmethod
    def for_source(cls, source: SourceConfig, config: Config | None = None) -> TargetPipeline:
        """The pipeline of one configured source; the config's resource attributes apply under the source's.

        Raises ConfigError when another source of ``config`` would have the same Resource identity."""
        extra = _configured_attributes(source, config)
        # A source with discovery has no one URL: offline (promotel map) it is mapped without a target identity.
        pipeline = cls(source, url=source.url, mapping=source.mapping, resource_attributes=tuple(extra.items()),
                       max_series=source.max_series, honor_timestamps=source.honor_timestamps)
        if config is not None:
            _check_unique_identity(source, config)
        return pipeline

    @classmethod
    def for_target(cls, source: SourceConfig, config: Config | None, *, name: str, url: str,
                   labels: Mapping[str, str]) -> TargetPipeline:
        """The pipeline of one target of a source (``promotel.discovery.sourcetargets``): ``name`` is what
        its batches are called (the exporters keep state per name), ``url`` its scrape URL, ``labels`` its
        final target labels: ``job`` and ``instance`` are its identity, the others go on every series."""
        extra = _configured_attributes(source, config)
        if config is not None and source.url is not None:
            _check_unique_identity(source, config)
        named = source.model_copy(update={"name": name}) if name != source.name else source
        return cls(named, url=url, mapping=source.mapping, resource_attributes=tuple(extra.items()),
                   max_series=source.max_series, honor_timestamps=source.honor_timestamps,
                   job=labels.get("job") or source.name, instance=labels.get("instance"), target_labels=labels,
                   metric_relabel_configs=source.metric_relabel_configs)

    # ─── one scrape ──────────────────────────────────────────────────────────────────────────

    def process(self, body: bytes | str | list[bytes], content_type: str | None, now_ns: int) -> TargetResult:
        """Parse, map and convert one scrape taken at ``now_ns``. Raises ``ExpositionError`` for invalid text.

        ``body`` may be a one-element list: the parser then holds the only reference to the bytes and frees
        them as soon as they are decoded (tens of MB on a large target)."""
        data = body.pop() if isinstance(body, list) else body
        del body
        parsed = self.parser.parse(data, content_type)
        samples = sum(len(f.samples) for f in parsed)
        split = split_identity_families(parsed)
        del parsed
        families, relabel_dropped, relabel_example = self.relabeler.apply(split.families)
        mapped = self.mapper.map(families)
        converted = self.store.convert(mapped.metrics, now_ns)
        dropped = {reason: n for reason, n in mapped.reasons.items() if n}
        examples = dict(mapped.examples)
        unexplained = mapped.dropped - sum(dropped.values())
        if unexplained > 0:
            dropped["mapping"] = unexplained           # a plugin that counts (some) drops without reasons
        for reason, n, example in ((RELABEL_DROP, relabel_dropped, relabel_example),
                                   ("max_series", converted.dropped_over_cap, converted.over_cap_example),
                                   ("invalid_timestamp", converted.dropped_invalid, converted.invalid_example)):
            if n:
                dropped[reason] = dropped.get(reason, 0) + n
                if example:
                    examples.setdefault(reason, example)
        metrics = converted.metrics
        scopes = scope_info_attributes(split.scope_info)
        if scopes:
            metrics = tuple(_with_scope_info(m, scopes) for m in metrics)
        targets = self._target_infos(split.target_info, dropped, examples)
        resource = self._resource_with(targets.get(self._own, ()), mapped.resource)
        self._last_resource = resource
        exposed: tuple[tuple[Attributes, tuple[Metric, ...]], ...] = ()
        if self.honor_labels:
            metrics, groups = self._split_exposed(metrics)
            exposed = self._exposed(groups, targets)
        leniencies = self.parser.leniencies
        self._report(dropped, examples, leniencies)
        return TargetResult(metrics, resource, samples, converted.series_added, dropped, examples, exposed,
                            {str(lenient.rule.value): lenient.count for lenient in leniencies})

    def _report(self, dropped: Mapping[str, int], examples: Mapping[str, str], leniencies: Sequence[Leniency]) -> None:
        """Log each drop reason and each tolerated rule once per target (the counters count every time).

        Once, because a target breaks the same rule on every scrape: a line per scrape would bury the log. The
        configured drops (``drop: true`` overrides, ``unmapped: drop``) are the config at work: info, not warning.
        """
        for reason, n in dropped.items():
            if reason in self._logged_drops:
                continue
            self._logged_drops.add(reason)
            example = examples.get(reason, "")
            level = logging.INFO if reason in CONFIGURED_DROPS else logging.WARNING
            log.log(level, "Target %s: %d points left out (%s)%s; counted in promotel's own metrics, logged once "
                    "per target and reason.", self.name, n, reason, f", first in {example}" if example else "",
                    extra={"fields": {"source": self.name, "reason": reason, "family": example}})
        for lenient in leniencies:
            rule = str(lenient.rule.value)
            if rule in self._logged_rules:
                continue
            self._logged_rules.add(rule)
            log.warning("Target %s breaks the exposition format at line %d (%s, %d times): %s. Prometheus ingests "
                        "it and so does promotel; `promotel lint` reports it for the exporter's owner. Logged once "
                        "per target and rule.", self.name, lenient.line, rule, lenient.count, lenient.text,
                        extra={"fields": {"source": self.name, "rule": rule, "line": lenient.line}})

    def batch(self, result: TargetResult, duration_s: float, now_ns: int) -> TargetBatch:
        """The batch of a successful scrape: its metrics, then ``up`` = 1 and the ``scrape_*`` series.

        Only the target's own identity: with ``honor_labels`` the exposed identities' batches come from
        :meth:`batches`."""
        if result.exposed and not self._warned_unwired:
            self._warned_unwired = True
            log.warning("Source %s: %d exposed job/instance identities (honor_labels) are only sent by "
                        "TargetPipeline.batches(); this caller uses batch().", self.name, len(result.exposed))
        metrics = result.metrics + scrape_metrics(True, duration_s, result.samples, result.series_added, now_ns)
        return TargetBatch(target=self.name, resource=result.resource, metrics=metrics, scrape_time_ns=now_ns)

    def batches(self, result: TargetResult, duration_s: float, now_ns: int) -> tuple[TargetBatch, ...]:
        """The target's batch (:meth:`batch`), then one batch per exposed job/instance (``honor_labels``)."""
        metrics = result.metrics + scrape_metrics(True, duration_s, result.samples, result.series_added, now_ns)
        main = TargetBatch(target=self.name, resource=result.resource, metrics=metrics, scrape_time_ns=now_ns)
        return (main, *self._exposed_batches(result.exposed, now_ns))

    def failed(self, duration_s: float, now_ns: int) -> TargetBatch:
        """The batch of a failed scrape: a staleness marker for every known series, ``up`` = 0."""
        return self.failed_batches(duration_s, now_ns)[0]

    def gone(self, now_ns: int) -> tuple[TargetBatch, ...]:
        """The batches of a target that discovery no longer lists: a staleness marker for every known series
        (of each exposed identity too), and nothing else — no ``up`` = 0, since nothing failed: the target
        is simply not scraped any more, and its ``up`` and ``scrape_*`` series end with it."""
        return self.failed_batches(0.0, now_ns, scrape_series=False)

    def failed_batches(self, duration_s: float, now_ns: int, *, scrape_series: bool = True) -> tuple[TargetBatch, ...]:
        """As :meth:`failed`, plus the markers of each exposed identity in a batch of its own (honor_labels).

        The markers carry the Resource of the series they end (the last scrape's, target_info included)."""
        markers = self.store.fail(now_ns).metrics
        exposed: tuple[tuple[Attributes, tuple[Metric, ...]], ...] = ()
        if self.honor_labels:
            markers, groups = self._split_exposed(markers)
            exposed = tuple((self._exposed_resources.get(ident) or self._exposed_resource(ident, ()),
                             tuple(ms)) for ident, ms in groups.items())
            self._exposed_resources.clear()
        metrics = markers + scrape_metrics(False, duration_s, 0, 0, now_ns) if scrape_series else markers
        main = TargetBatch(target=self.name, resource=self._last_resource, metrics=metrics, scrape_time_ns=now_ns)
        return (main, *self._exposed_batches(exposed, now_ns))

    # ─── identity ────────────────────────────────────────────────────────────────────────────

    @property
    def _own(self) -> _Identity:
        return _Identity(self.job, self.instance or "")

    def _target_infos(self, samples: Sequence[Sample], dropped: dict[str, int],
                      examples: dict[str, str]) -> dict[_Identity, Attributes]:
        """``target_info`` series → the attributes they give each identity: the target's own (honor_labels
        false: every series, its job/instance renamed as any label's would be), or the identity its own
        ``job``/``instance`` labels name (honor_labels true). One series per identity: the first; the others
        are counted as ``target_info_extra_series``."""
        out: dict[_Identity, Attributes] = {}
        for s in samples:
            if self.honor_labels:
                ident = self._identity_of(s.labels.get("job", ""), s.labels.get("instance", ""))
                attrs = tuple(kv for kv in default_attributes(s.labels) if kv[0] not in TARGET_LABELS)
            else:
                ident = self._own
                attrs = scraped_attributes(s.labels)
            if ident in out:
                dropped["target_info_extra_series"] = dropped.get("target_info_extra_series", 0) + 1
                examples.setdefault("target_info_extra_series", "target_info")
                continue
            out[ident] = attrs
        return out

    def _identity_of(self, job: str, instance: str) -> _Identity:
        """The identity an exposed job/instance pair names (an absent or empty one is the target's)."""
        return _Identity(job or self.job, instance or self.instance or "")

    def _resource_with(self, target_info: Attributes, mapped: Attributes) -> Attributes:
        """The target's Resource, then its target_info and the mapper's attributes (which cannot change the
        identity), then the configured attributes, which win."""
        if not target_info and not mapped:
            return self.resource
        merged = dict(self._base)
        for k, v in (*target_info, *mapped):
            if k not in IDENTITY_KEYS:
                merged[k] = v
        merged.update(self._extra)
        return tuple(sorted(merged.items()))

    def _exposed_resource(self, ident: _Identity, target_info: Attributes) -> Attributes:
        """The Resource of an exposed job/instance (honor_labels): the spec's identity from that pair, its
        target_info, then the configured attributes other than the identity (the exposed identity wins)."""
        attrs: dict[str, AttrValue] = {}
        for k, v in target_info:
            if k not in IDENTITY_KEYS:
                attrs[k] = v
        attrs.update(service_identity(ident.job))
        if ident.instance:
            attrs["service.instance.id"] = ident.instance
            attrs.update(_instance_attributes(ident.instance))
        for k, v in self._extra:
            if k not in IDENTITY_KEYS:
                attrs[k] = v
        return tuple(sorted(attrs.items()))

    def _split_exposed(self, metrics: Iterable[Metric]) -> tuple[tuple[Metric, ...], dict[_Identity, list[Metric]]]:
        """honor_labels: each point to the identity its ``job``/``instance`` attributes name (removed from the
        point); the target's own identity stays in the first result."""
        own = self._own
        main: list[Metric] = []
        groups: dict[_Identity, list[Metric]] = {}
        for m in metrics:
            if not any(k in ("job", "instance") for p in m.points for k, _ in p.attributes):
                main.append(m)
                continue
            mine: list[Point] = []
            theirs: dict[_Identity, list[Point]] = {}
            for p in m.points:
                job = instance = ""
                rest: list[tuple[str, AttrValue]] = []
                for k, v in p.attributes:
                    if k == "job":
                        job = str(v)
                    elif k == "instance":
                        instance = str(v)
                    else:
                        rest.append((k, v))
                q = p._replace(attributes=tuple(rest)) if len(rest) != len(p.attributes) else p
                ident = self._identity_of(job, instance)
                if ident == own:
                    mine.append(q)
                else:
                    theirs.setdefault(ident, []).append(q)
            if mine:
                main.append(m._replace(points=tuple(mine)))
            for ident, points in theirs.items():
                groups.setdefault(ident, []).append(m._replace(points=tuple(points)))
        return tuple(main), groups

    def _exposed(self, groups: Mapping[_Identity, list[Metric]],
                 targets: Mapping[_Identity, Attributes]) -> tuple[tuple[Attributes, tuple[Metric, ...]], ...]:
        out: list[tuple[Attributes, tuple[Metric, ...]]] = []
        remembered: dict[_Identity, Attributes] = {}
        for ident, metrics in groups.items():
            resource = self._exposed_resource(ident, targets.get(ident, ()))
            if len(remembered) < _MAX_EXPOSED:
                remembered[ident] = resource
            out.append((resource, tuple(metrics)))
        self._exposed_resources = remembered
        return tuple(out)

    def _exposed_batches(self, exposed: Sequence[tuple[Attributes, tuple[Metric, ...]]],
                         now_ns: int) -> tuple[TargetBatch, ...]:
        # Each identity is a target of its own for the exporters' per-target state (delta, rounds).
        out: list[TargetBatch] = []
        for resource, metrics in exposed:
            attrs = dict(resource)
            target = f"{self.name} job={attrs.get('service.name', '')} instance={attrs.get('service.instance.id', '')}"
            out.append(TargetBatch(target=target, resource=resource, metrics=metrics, scrape_time_ns=now_ns))
        return tuple(out)


def _with_scope_info(metric: Metric, scopes: Mapping[tuple[str, str], Attributes]) -> Metric:
    attrs = scopes.get((metric.scope_name, metric.scope_version))
    if not attrs or (not metric.scope_name and not metric.scope_version):
        return metric
    merged = dict(attrs)
    merged.update(metric.scope_attributes)        # otel_scope_<key> labels on the points win
    return metric._replace(scope_attributes=tuple(sorted(merged.items())))


def _configured_attributes(source: SourceConfig, config: Config | None) -> dict[str, AttrValue]:
    extra: dict[str, AttrValue] = dict(config.resource_attributes) if config is not None else {}
    extra.update(source.resource_attributes)
    return extra


def _identity_key(source: SourceConfig, config: Config) -> tuple[AttrValue | None, ...]:
    attrs = dict(target_resource(str(source.url), source.service_name or source.name,
                                 tuple(_configured_attributes(source, config).items())))
    return tuple(attrs.get(k) for k in IDENTITY_KEYS)


def _clashes(config: Config) -> list[tuple[int, int, tuple[AttrValue | None, ...]]]:
    """(source index, index of the earlier source with the same identity, that identity) for every clash."""
    out: list[tuple[int, int, tuple[AttrValue | None, ...]]] = []
    seen: dict[tuple[AttrValue | None, ...], int] = {}
    for i, source in enumerate(config.sources):
        if source.url is None:
            # A source with discovery: each target's instance is its own address, and build_targets keeps
            # every active target of a source unique, so its targets never share an identity.
            continue
        key = _identity_key(source, config)
        first = seen.setdefault(key, i)
        if first != i:
            out.append((i, first, key))
    return out


def identity_problems(config: Config) -> list[tuple[str, str]]:
    """``(path, message)`` for every source whose Resource identity an earlier source of ``config`` already has
    (two sources must never share one: a backend could not tell their series apart). For config validation."""
    problems: list[tuple[str, str]] = []
    for i, first, key in _clashes(config):
        shown = ", ".join(f"{k}={v}" for k, v in zip(IDENTITY_KEYS, key) if v is not None)
        problems.append((f"sources[{i}]",
                         f"source {config.sources[i].name!r} would have the same resource identity as source "
                         f"{config.sources[first].name!r} (sources[{first}]): {shown}, so their series could not "
                         "be told apart; give one of them another service_name, or remove service.name / "
                         "service.instance.id from resource_attributes"))
    return problems


def _check_unique_identity(source: SourceConfig, config: Config) -> None:
    mine = _identity_key(source, config)
    problems = identity_problems(config)
    clashes = [problem for (i, _first, key), problem in zip(_clashes(config), problems) if key == mine]
    if clashes:
        raise ConfigError(clashes)
