"""Prometheus-style targets: service discovery and relabeling.

Modules (import from the modules, the package re-exports nothing, so that ``promotel.discovery.relabel``
stays the module and is not shadowed by the function of the same name):

* :mod:`~promotel.discovery.targets` — the common model: ``TargetGroup``, the ``Discoverer`` protocol,
  ``DiscoveryManager`` (keeps each discoverer's last good list, reports failures once per change),
  and the labels Prometheus builds from groups and a scrape config (``discovered_labels``,
  ``build_targets``).
* :mod:`~promotel.discovery.relabel` — ``relabel_configs`` and ``metric_relabel_configs`` with
  Prometheus's semantics, and ``target_labels``; its regular expressions as Go has them (RE2 syntax,
  fully anchored, ``$1`` templates, Go's case mapping) in :mod:`~promotel.discovery.goregexp`.
* :mod:`~promotel.discovery.sd` — a job's ``static_configs``, ``file_sd_configs``, ``dns_sd_configs``,
  ``http_sd_configs`` and ``kubernetes_sd_configs`` together (``SDConfigs``), and their discoverers;
  one module per mechanism: :mod:`~promotel.discovery.static_sd`, :mod:`~promotel.discovery.file_sd`,
  :mod:`~promotel.discovery.dns_sd`, :mod:`~promotel.discovery.http_sd` (with Prometheus's HTTP
  client keys in :mod:`~promotel.discovery.httpconfig`), and :mod:`~promotel.discovery.kubernetes_sd`
  (the public names of Kubernetes SD; its code is the package :mod:`~promotel.discovery.kubernetes`:
  config, selector syntax, labels per role, list-and-watch reflectors, the discoverer). What the
  config models share (durations, paths, problem reporting) is in ``_config``.
* :mod:`~promotel.discovery.sourcetargets` — a configured source as a scrape job: its discoverers (a
  ``url:`` source is one static target), its targets (``ScrapeTarget``: URL, labels, state, schedule),
  used by the service (one runner per active target), ``promotel targets`` and ``/status``.
* :mod:`~promotel.discovery.seriesrelabel` — a target's labels and ``metric_relabel_configs`` on every
  scraped series before mapping, cached per label set (used by ``promotel.pipeline.TargetPipeline``).
* :mod:`~promotel.discovery.targetallocator` — taking part in an OpenTelemetry Operator Target
  Allocator fleet (the per-job HTTP SD URL with this pod's ``collector_id``; how it rebalances).
"""

# The config schema (promotel.config) holds the discovery keys of a source, and the discovery modules use
# promotel.config.secrets: loading the config package first makes either import order work.
import promotel.config  # noqa: F401
