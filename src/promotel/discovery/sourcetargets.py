"""A configured source as Prometheus's scrape job: its discoverers, and the targets they give.

A source is one scrape job whose ``job`` is the source's name. Its targets come either from ``url`` (the
one-target shortcut) or from Prometheus's discovery keys (``static_configs``, ``file_sd_configs``, …):

* ``url: https://host:8443/path?a=1`` is the static config ``[{targets: ["host:8443"]}]`` with
  ``scheme: https``, ``metrics_path: /path`` and ``params: {a: ["1"]}`` taken from the URL, so it goes
  through the same labels and ``relabel_configs`` as a discovered target. Its scrape URL is the URL as
  written (credentials and query order included) unless relabeling changed what it is built from.
* every active target (after ``relabel_configs`` and Prometheus's target checks) is scraped at
  ``__scheme__://__address____metrics_path__?__param_*``, with ``__scrape_interval__`` and
  ``__scrape_timeout__`` as its schedule, and every other setting of the source (auth, TLS, headers,
  mapping, …): :meth:`ScrapeTarget.source` is that source with the target's URL and durations.

The target's identity is the OpenTelemetry Prometheus-compatibility spec's: ``job`` and ``instance`` (the
final labels of those names; ``instance`` defaults to the address) give ``service.name`` and
``service.instance.id``; the target's other labels are put on every series it exposes, as Prometheus
does (``honor_labels`` decides a clash with an exposed label). :class:`promotel.pipeline.TargetPipeline`
applies them.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from promotel.discovery.static_sd import StaticConfig, StaticDiscoverer
from promotel.discovery.targets import (
    ADDRESS_LABEL,
    PARAM_PREFIX,
    DiscoveredTarget,
    Discoverer,
    ScrapeDefaults,
    TargetGroup,
    build_targets,
)
from promotel.httpcommon import safe_url

if TYPE_CHECKING:
    from promotel.config import SourceConfig

__all__ = ["ScrapeTarget", "active", "scrape_defaults", "source_discoverers", "source_targets", "target_url",
           "url_groups"]


def _url_parts(url: str) -> tuple[str, str, str, dict[str, tuple[str, ...]]]:
    """(scheme, host:port as written, path, params) of a url: source's URL."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    shown = f"[{host}]" if ":" in host else host
    address = f"{shown}:{parts.port}" if parts.port is not None else shown
    params: dict[str, list[str]] = {}
    for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        params.setdefault(name, []).append(value)
    return parts.scheme, address, parts.path or "/", {k: tuple(v) for k, v in params.items()}


def scrape_defaults(source: SourceConfig) -> ScrapeDefaults:
    """The labels the source's scrape config gives each target before relabeling."""
    if source.url is not None:
        scheme, _, path, params = _url_parts(source.url)
        return ScrapeDefaults(job=source.name, scrape_interval=float(source.interval),
                              scrape_timeout=float(source.timeout), scheme=scheme, metrics_path=path, params=params)
    return ScrapeDefaults(job=source.name, scrape_interval=float(source.interval), scrape_timeout=float(source.timeout),
                          scheme=source.scheme, metrics_path=source.metrics_path, params=dict(source.params))


def url_groups(source: SourceConfig) -> tuple[TargetGroup, ...]:
    """The one group of a ``url:`` source (its host:port; the rest of the URL is in its scrape defaults)."""
    assert source.url is not None
    return (TargetGroup.of((_url_parts(source.url)[1],), source="0"),)


def source_discoverers(source: SourceConfig, *, file_poll_interval: float = 1.0) -> tuple[Discoverer, ...]:
    """The discoverers of a source: its discovery keys', or one static target for ``url``."""
    if source.url is not None:
        return (StaticDiscoverer((StaticConfig(targets=(_url_parts(source.url)[1],)),), name="url"),)
    return source.discovery.discoverers(file_poll_interval=file_poll_interval)


def target_url(all_labels: Mapping[str, str], params: Mapping[str, Sequence[str]] | None = None) -> str:
    """The scrape URL of a relabeled target, as Prometheus's ``Target.URL`` builds it:
    ``__scheme__://__address__`` + ``__metrics_path__`` + the query: the config's ``params``, each
    ``__param_<name>`` label replacing the first value of that parameter (or adding it), encoded as Go's
    ``url.Values.Encode`` does (sorted by name, values in order)."""
    scheme = all_labels.get("__scheme__", "http") or "http"
    path = all_labels.get("__metrics_path__", "") or "/"
    values = {name: list(v) for name, v in (params or {}).items()}
    for name, value in all_labels.items():
        if name.startswith(PARAM_PREFIX):
            current = values.setdefault(name[len(PARAM_PREFIX):], [])
            if current:
                current[0] = value
            else:
                current.append(value)
    query = [(name, value) for name in sorted(values) for value in values[name]]
    url = f"{scheme}://{all_labels.get(ADDRESS_LABEL, '')}{path}"
    return f"{url}?{urllib.parse.urlencode(query)}" if query else url


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    """One target of a source, as ``promotel targets`` and ``/status`` list it.

    ``state`` is ``active`` or ``dropped`` (by ``relabel_configs``, or ``invalid`` after them: the
    ``error`` says why; Prometheus logs those and scrapes nothing, and lists them as dropped).
    ``labels`` are the final public labels (``job``, ``instance``, …), ``discovered_labels`` the labels
    before relabeling. ``url``, ``interval`` and ``timeout`` are set for an active target."""

    source_name: str
    url: str | None
    labels: Mapping[str, str]
    discovered_labels: Mapping[str, str]
    state: str
    interval: float = 0.0
    timeout: float = 0.0
    error: str | None = None

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """What makes a target the same one across refreshes: its source, URL and labels (a target whose
        labels changed is a new target, as in Prometheus's scrape pool)."""
        return (f"{self.url} {self.interval:g} {self.timeout:g}", tuple(sorted(self.labels.items())))

    def source(self, source: SourceConfig) -> SourceConfig:
        """``source`` with this target's URL and schedule (everything else is the source's)."""
        assert self.url is not None, "only an active target is scraped"
        return source.model_copy(update={"url": self.url, "interval": self.interval, "timeout": self.timeout})

    def as_dict(self) -> dict[str, object]:
        """The JSON of ``promotel targets --format json`` (and ``/status``)."""
        url = safe_url(self.url) if self.url is not None else None      # credentials in a url: masked
        out: dict[str, object] = {"source": self.source_name, "url": url, "labels": dict(self.labels),
                                  "discovered_labels": dict(self.discovered_labels), "state": self.state}
        if self.error is not None:
            out["error"] = self.error
        return out


def _from(source: SourceConfig, found: DiscoveredTarget) -> ScrapeTarget:
    if found.state != "active" or found.target is None:
        return ScrapeTarget(source.name, None, {}, found.discovered_labels, "dropped", error=found.error)
    target = found.target
    url = target_url(target.all_labels, scrape_defaults(source).params)
    if source.url is not None and url == _rebuilt(source.url):
        url = source.url        # the URL as written: credentials, query order and encoding kept
    labels = {name: target.labels[name] for name in sorted(target.labels)}
    return ScrapeTarget(source.name, url, labels, found.discovered_labels, "active", interval=target.interval,
                        timeout=target.timeout)


def _rebuilt(url: str) -> str:
    """A url: source's URL as :func:`target_url` builds it from the labels it gives (default port added)."""
    scheme, address, path, params = _url_parts(url)
    if urllib.parse.urlsplit(url).port is None:
        address += ":443" if scheme == "https" else ":80"
    labels = {"__scheme__": scheme, ADDRESS_LABEL: address, "__metrics_path__": path}
    labels.update({PARAM_PREFIX + name: values[0] for name, values in params.items() if values})
    return target_url(labels, params)


def source_targets(source: SourceConfig, groups: Iterable[TargetGroup]) -> list[ScrapeTarget]:
    """Every target of ``groups`` for ``source``: active ones first in discovery order, then dropped."""
    found = build_targets(groups, scrape_defaults(source), source.relabel_configs)
    targets = [_from(source, f) for f in found]
    return [t for t in targets if t.state == "active"] + [t for t in targets if t.state != "active"]


def active(targets: Sequence[ScrapeTarget]) -> list[ScrapeTarget]:
    return [t for t in targets if t.state == "active"]
