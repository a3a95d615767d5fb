"""promotel as a collector of the OpenTelemetry Operator's Target Allocator.

The Target Allocator (``cmd/otel-allocator`` in the opentelemetry-operator repository) runs the
service discovery of a set of Prometheus jobs once, for a fleet of collectors, and splits the targets
among them. promotel pods take part exactly as OpenTelemetry Collector pods do; this module holds
what a collector needs. Its protocol, all JSON over HTTP (port 80 of the allocator's Service, or
8080 on the pod; 8443 with mTLS when its ``https`` option is on):

``GET /scrape_configs``
    The allocator's jobs: a JSON object mapping each job name to its Prometheus scrape config
    (``job_name``, ``scrape_interval``, ``metrics_path``, ``relabel_configs``, ...), as the collector's
    Prometheus receiver reads it to build its scrape jobs (secrets are redacted unless the request
    comes over mTLS). :func:`fetch_scrape_configs`.
``GET /jobs``
    The job names alone: ``{"<job>": {"_link": "/jobs/<job>/targets"}, ...}``. :func:`fetch_jobs`.
``GET /jobs/<job>/targets?collector_id=<id>``
    The targets of ``<job>`` assigned to collector ``<id>``, in the HTTP SD format: a JSON list of
    ``{"targets": ["<address>"], "labels": {...}}``, one entry per target, whose labels are the
    target's *discovered* labels (``__address__``, ``__meta_*``, the group's labels) before
    relabeling. The collector applies the job's ``relabel_configs`` itself, as with any HTTP SD. The
    job name is query-escaped in the path (Go's ``url.QueryEscape``). An unknown job or collector
    gets ``[]``: a valid, empty assignment, so a pod that the allocator does not know (a wrong name,
    labels its ``collector_selector`` does not match) scrapes nothing without any error: check the
    allocator's ``/debug/collector?collector_id=<id>`` page. Without ``collector_id`` the answer is a
    different document (an object of every collector's targets, for debugging), which is not the
    HTTP SD format and fails the refresh. :func:`targets_url`, :func:`target_allocator_sd_config`.

The collector's side (the Prometheus receiver's ``target_allocator`` settings) is: ``collector_id``
is the pod's name (``$POD_NAME``, set from ``metadata.name`` through the downward API; promotel falls
back to the host name, which is the pod's name in Kubernetes: :func:`collector_id`); it reads
``/scrape_configs`` every ``interval`` (30 s) and, for each job, discovers targets with an
``http_sd_config`` on ``/jobs/<job>/targets?collector_id=<id>`` with a 30 s ``refresh_interval`` and
``follow_redirects: false``.

How the allocator balances, and rebalances when a pod goes away
---------------------------------------------------------------
The allocator watches the pods of its ``collector_namespace`` that match its ``collector_selector``
(the Operator sets it to the labels of the collector's StatefulSet or DaemonSet). A pod counts as a
collector once it is scheduled to a node. With ``collector_not_ready_grace_period`` (30 s by default)
a pod that has not been Running, or not Ready, for longer than that is no longer one. Changes are
applied at most once every 5 seconds. On every change of the set, the allocation strategy is given
the new set and *every* target is assigned again:

* ``consistent-hashing`` (the default): targets are placed on a hash ring of the collectors by
  their address (``__address__``, so a label change does not move a target), with bounded loads (a
  collector takes at most 1.1 times the average). When a collector goes away, its targets move to
  the others and nearly all other targets stay where they were; when one comes, it takes a share.
* ``least-weighted``: a target without a collector goes to the one with the fewest targets; more
  stable when the set changes, less even.
* ``per-node``: each target goes to the collector on the node of the target (DaemonSets).

A collector sees its new list at its next refresh of ``/jobs/<job>/targets`` (30 s), so a moved
target is scraped by nobody, or by both the old and the new collector, for up to one refresh
interval plus the 5-second throttle: a pod that stops cleanly disappears from the allocator when it
is deleted, and the others pick up its targets within about 35 s. Each promotel pod must therefore
run with a distinct ``collector_id`` (its pod name) and must not also shard with promotel's static
shards: the allocator is the sharding.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

import httpx

from promotel.discovery.http_sd import HTTPDiscoverer, HTTPSDConfig
from promotel.discovery.httpconfig import HTTPClientConfig, SDHTTPClient
from promotel.errors import DiscoveryError
from promotel.httpcommon import safe_url

__all__ = [
    "DEFAULT_REFRESH_INTERVAL",
    "collector_id",
    "fetch_jobs",
    "fetch_scrape_configs",
    "target_allocator_discoverer",
    "target_allocator_sd_config",
    "targets_url",
]

DEFAULT_REFRESH_INTERVAL: Final = 30.0  # the collector's refresh of /jobs/<job>/targets and of /scrape_configs
POD_NAME_ENV: Final = "POD_NAME"


def collector_id(environ: Mapping[str, str] | None = None) -> str:
    """This pod's collector id: ``$POD_NAME`` if set and not empty, else the host name (a pod's host
    name is its name, unless the pod spec sets ``hostname``)."""
    env = os.environ if environ is None else environ
    return env.get(POD_NAME_ENV, "").strip() or socket.gethostname()


def _endpoint(endpoint: str) -> str:
    parts = urllib.parse.urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the Target Allocator endpoint must be an http:// or https:// URL such as "
                         f"'http://promotel-targetallocator:80', got {safe_url(endpoint)!r}")
    return endpoint.rstrip("/")


def _query_escape(text: str) -> str:
    """Go's ``url.QueryEscape`` (spaces as ``+``; letters, digits and ``-_.~`` kept)."""
    return urllib.parse.quote_plus(text, safe="")


def targets_url(endpoint: str, job: str, collector: str) -> str:
    """``<endpoint>/jobs/<job>/targets?collector_id=<collector>``, as the collector builds it."""
    if not collector:
        raise ValueError("collector_id must not be empty: the allocator answers a different document without it")
    return f"{_endpoint(endpoint)}/jobs/{_query_escape(job)}/targets?collector_id={_query_escape(collector)}"


def target_allocator_sd_config(endpoint: str, job: str, collector: str | None = None, *,
                               refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
                               client: HTTPClientConfig | None = None) -> HTTPSDConfig:
    """The ``http_sd_config`` a collector uses for one job: the per-job URL with this pod's
    ``collector_id``, ``refresh_interval`` (30 s), ``follow_redirects: false``, and the client
    settings (auth, TLS) of ``client``."""
    base = client.model_dump(exclude_unset=True) if client is not None else {}
    data = {**base, "url": targets_url(endpoint, job, collector or collector_id()), "follow_redirects": False}
    config = HTTPSDConfig.model_validate(data)
    return config.model_copy(update={"refresh_interval": refresh_interval})


def target_allocator_discoverer(endpoint: str, job: str, collector: str | None = None, *,
                                refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
                                client: HTTPClientConfig | None = None, name: str = "target_allocator",
                                transport: httpx.AsyncBaseTransport | None = None) -> HTTPDiscoverer:
    """An HTTP SD discoverer of ``job``'s targets assigned to this collector."""
    config = target_allocator_sd_config(endpoint, job, collector, refresh_interval=refresh_interval, client=client)
    return HTTPDiscoverer(config, name, transport=transport)


async def _get_json(endpoint: str, path: str, client: HTTPClientConfig | None, timeout: float,
                    transport: httpx.AsyncBaseTransport | None) -> Any:
    url = _endpoint(endpoint) + path
    settings = (client or HTTPClientConfig()).model_copy(update={"follow_redirects": False})
    http = SDHTTPClient(settings, timeout=timeout, transport=transport)
    try:
        response = await http.get(url, {"Accept": "application/json"})
    finally:
        await http.aclose()
    if response.status_code != 200:
        raise DiscoveryError(f"{safe_url(url)}: the Target Allocator returned HTTP status {response.status_code} "
                             f"{response.reason_phrase}".rstrip(), kind="http_status")
    try:
        return json.loads(response.content.decode("utf-8", "replace"))
    except ValueError as exc:
        raise DiscoveryError(f"{safe_url(url)}: the answer is not JSON: {exc}", kind="format") from None


async def fetch_jobs(endpoint: str, *, client: HTTPClientConfig | None = None, timeout: float = 10.0,
                     transport: httpx.AsyncBaseTransport | None = None) -> tuple[str, ...]:
    """The job names the allocator serves (``GET /jobs``), sorted. Raises DiscoveryError."""
    data = await _get_json(endpoint, "/jobs", client, timeout, transport)
    if not isinstance(data, dict):
        raise DiscoveryError(f"{safe_url(endpoint)}/jobs: expected an object of job names, got "
                             f"{type(data).__name__}", kind="format")
    return tuple(sorted(str(name) for name in data))


async def fetch_scrape_configs(endpoint: str, *, client: HTTPClientConfig | None = None, timeout: float = 10.0,
                               transport: httpx.AsyncBaseTransport | None = None) -> dict[str, dict[str, Any]]:
    """Each job's Prometheus scrape config as the allocator serves it (``GET /scrape_configs``).
    Raises DiscoveryError."""
    data = await _get_json(endpoint, "/scrape_configs", client, timeout, transport)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DiscoveryError(f"{safe_url(endpoint)}/scrape_configs: expected an object of scrape configs by job "
                             "name", kind="format")
    return {str(name): dict(config) for name, config in data.items()}
