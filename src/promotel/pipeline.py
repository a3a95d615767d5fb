"""The per-target pipeline, composed in one place: exposition bytes → parse → map → convert → ``TargetBatch``.

``promotel run`` (each source's scrape loop), ``promotel map`` (files as successive scrapes), ``promotel
check`` (one probe scrape) and the benchmarks all build a ``TargetPipeline`` and nothing else, so what
``map`` prints is exactly what ``run`` sends for the same scrapes: the same resource, the same metrics, the
same ``up`` and ``scrape_*`` series.

    TargetPipeline.process(body, content_type, now_ns) → TargetResult      parse, map, convert (CPU work)
    TargetPipeline.batch(result, duration_s, now_ns)   → TargetBatch        + resource, up, scrape_*
    TargetPipeline.failed(duration_s, now_ns)          → TargetBatch        staleness markers, up = 0

State (all of it, per target): the parser's previous scrape (``promotel.exposition``), the mapper's caches
(``promotel.mappings``) and the series store (``promotel.series``). Nothing here touches the process's
GC or allocator; ``promotel.service.runtime`` does that around ``process`` in the service.

The per-exporter half (summaries policy → cumulative→delta → encode) is ``promotel.export.prepare``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from promotel.exposition import ExpositionParser
from promotel.mappings import MappingPlugin, SourceLike, load_mapping
from promotel.model import Attributes, AttrValue, Kind, Metric, NumberPoint, TargetBatch
from promotel.series import SeriesStore

if TYPE_CHECKING:
    from promotel.config import Config, SourceConfig

__all__ = ["TargetPipeline", "TargetResult", "scrape_metrics", "target_resource"]


def target_resource(url: str | None, service_name: str, extra: Sequence[tuple[str, AttrValue]]) -> Attributes:
    """The Resource of one target: who was scraped (OTel Prometheus-compatibility rules).

    ``service.instance.id`` is the target's ``host:port``, as Prometheus's ``instance`` label is; without a
    URL (``promotel map`` on files) only ``service.name`` and the configured attributes remain."""
    attrs: dict[str, AttrValue] = {"service.name": service_name}
    if url is not None:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme or "http"
        port = parts.port or (443 if scheme == "https" else 80)
        host = parts.hostname or ""
        attrs.update({"service.instance.id": f"{host}:{port}", "server.address": host, "server.port": port,
                      "url.scheme": scheme})
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


class TargetResult(NamedTuple):
    """What one successful scrape became, before the per-target series are added (immutable)."""

    metrics: tuple[Metric, ...]       # converted: start/time set, staleness markers included
    resource: Attributes              # the target's resource with the mapping's (target_info) attributes
    samples: int                      # samples in the exposition (scrape_samples_scraped)
    series_added: int                 # new series in this scrape (scrape_series_added)
    dropped: Mapping[str, int]        # points left out, by stage: mapping, max_series, invalid_timestamp


class TargetPipeline:
    """parse → map → convert for one target, with that target's state (see the module docstring)."""

    def __init__(self, source: SourceLike, plugin: MappingPlugin | None = None, *, url: str | None,
                 mapping: str = "passthrough", resource_attributes: Sequence[tuple[str, AttrValue]] = (),
                 max_series: int = 200_000, honor_timestamps: bool = True) -> None:
        self.name = source.name
        self.plugin = plugin if plugin is not None else load_mapping(mapping)
        self.mapper = self.plugin.bind(source)
        self.parser = ExpositionParser()
        self.store = SeriesStore(source.name, max_series=max_series, honor_timestamps=honor_timestamps)
        service_name = source.service_name or self.plugin.default_service_name or source.name
        self._extra = tuple(resource_attributes)
        self.resource = target_resource(url, service_name, self._extra)

    @classmethod
    def for_source(cls, source: SourceConfig, config: Config | None = None) -> TargetPipeline:
        """The pipeline of one configured source; the config's resource attributes apply under the source's."""
        extra: dict[str, AttrValue] = dict(config.resource_attributes) if config is not None else {}
        extra.update(source.resource_attributes)
        return cls(source, url=str(source.url), mapping=source.mapping, resource_attributes=tuple(extra.items()),
                   max_series=source.max_series, honor_timestamps=source.honor_timestamps)

    def process(self, body: bytes | str | list[bytes], content_type: str | None, now_ns: int) -> TargetResult:
        """Parse, map and convert one scrape taken at ``now_ns``. Raises ``ExpositionError`` for invalid text.

        ``body`` may be a one-element list: the parser then holds the only reference to the bytes and frees
        them as soon as they are decoded (tens of MB on a large target)."""
        data = body.pop() if isinstance(body, list) else body
        del body
        families = self.parser.parse(data, content_type)
        samples = sum(len(f.samples) for f in families)
        mapped = self.mapper.map(families)
        del families
        converted = self.store.convert(mapped.metrics, now_ns)
        resource = self.resource
        if mapped.resource:
            merged = dict(self.resource)
            merged.update(mapped.resource)       # target_info labels join the target's resource
            merged.update(dict(self._extra))     # configured attributes win
            resource = tuple(sorted(merged.items()))
        dropped = {reason: n for reason, n in (("mapping", mapped.dropped), ("max_series", converted.dropped_over_cap),
                                               ("invalid_timestamp", converted.dropped_invalid)) if n}
        return TargetResult(converted.metrics, resource, samples, converted.series_added, dropped)

    def batch(self, result: TargetResult, duration_s: float, now_ns: int) -> TargetBatch:
        """The batch of a successful scrape: its metrics, then ``up`` = 1 and the ``scrape_*`` series."""
        metrics = result.metrics + scrape_metrics(True, duration_s, result.samples, result.series_added, now_ns)
        return TargetBatch(target=self.name, resource=result.resource, metrics=metrics, scrape_time_ns=now_ns)

    def failed(self, duration_s: float, now_ns: int) -> TargetBatch:
        """The batch of a failed scrape: a staleness marker for every known series, ``up`` = 0."""
        metrics = self.store.fail(now_ns).metrics + scrape_metrics(False, duration_s, 0, 0, now_ns)
        return TargetBatch(target=self.name, resource=self.resource, metrics=metrics, scrape_time_ns=now_ns)
