"""Backend presets: one ``preset:`` line becomes the endpoint, auth headers, temporality and limits.

Every fact here comes from the vendors' public documentation, summarised with sources in
``docs/backends.md``. Whatever the user sets explicitly wins over a preset's default,
except where the backend is documented to refuse the result (Grafana Cloud and delta, Datadog and
cumulative or gRPC): those are configuration errors, reported before anything is sent.

``resolve_exporter`` returns a ``ResolvedExporter``: everything the sender and the queue need, with
secrets revealed into ``headers``. Never log or print a ``ResolvedExporter``'s headers.

It also decides the proxy (``proxy_url``, ``no_proxy``, ``proxy_from_environment`` and the environment's
proxy variables, by ``promotel.httpcommon.proxy_settings``): an exporter has one endpoint, so one decision.
OTLP/gRPC reads the variables gRPC's C core reads and tunnels through an http:// proxy only.
"""

from __future__ import annotations

import base64
import logging
import os
import urllib.parse
from collections.abc import Callable, Mapping
from typing import NamedTuple

from promotel.config.schema import ExporterConfig, RetryConfig, SpoolConfig, TLSConfig
from promotel.config.secrets import register_secret, reveal
from promotel.errors import ConfigError
from promotel.httpcommon import Proxy, proxy_settings, safe_url
from promotel.model import Temporality

log = logging.getLogger("promotel.export")

PRESETS = ("otlp", "datadog", "honeycomb", "grafana-cloud", "newrelic")
PROTOCOLS = ("grpc", "http/protobuf")
DATADOG_SITES = ("datadoghq.com", "us3.datadoghq.com", "us5.datadoghq.com", "datadoghq.eu",
                 "ap1.datadoghq.com", "ap2.datadoghq.com")
HONEYCOMB_HOSTS = {"us": "api.honeycomb.io", "eu": "api.eu1.honeycomb.io"}
NEWRELIC_HOSTS = {"us": "otlp.nr-data.net", "eu": "otlp.eu01.nr-data.net", "fedramp": "gov-otlp.nr-data.net"}

MIB = 1024 * 1024
# gRPC servers (the collector included) refuse messages over 4 MiB unless configured otherwise.
GRPC_DEFAULT_MAX = 4 * MIB
DATADOG_MAX = 500_000          # "500 KB uncompressed" per request
NEWRELIC_MAX = 1_000_000       # "1 MB" per request
NEWRELIC_MAX_ATTRIBUTES = 100  # attributes per point
# Honeycomb turns metrics of one request that share a second-truncated timestamp and attributes into
# one event. Points of one scrape already share the scrape time, so the preset only has to keep a
# scrape in one request: a large limit (no documented one exists) makes splitting the exception.
HONEYCOMB_HTTP_MAX = 8 * MIB


class ResolvedExporter(NamedTuple):
    """An exporter with its preset applied. ``headers`` holds secrets: never log it."""

    name: str
    protocol: str                      # "grpc" | "http/protobuf"
    url: str                           # full URL for HTTP; "host:port" for gRPC
    headers: dict[str, str]
    compression: str                   # "gzip" | "none"
    timeout: float                     # seconds per request
    tls: TLSConfig | None
    insecure: bool                     # gRPC: plaintext channel; HTTP: the URL is http://
    temporality: Temporality
    max_request_bytes: int             # uncompressed serialized request size
    summaries: str                     # "keep" | "convert" | "drop"
    max_attributes: int | None
    queue_size: int
    retry: RetryConfig
    spool: SpoolConfig
    preset: str = "otlp"
    proxy: Proxy | None = None         # the proxy to go through (None: direct); its URL may hold credentials


def _secret(value: str | None) -> str:
    return reveal(value) if value is not None else ""


def preset_problems(cfg: ExporterConfig, index: int) -> list[tuple[str, str]]:
    """Every problem with one exporter's preset settings, as ``(path, message)`` pairs (for ``check``)."""
    try:
        resolve_exporter(cfg, env={}, index=index)
    except ConfigError as exc:
        return list(exc.problems)
    return []


def resolve_exporter(cfg: ExporterConfig, env: Mapping[str, str] | None = None, *,
                     index: int | None = None) -> ResolvedExporter:
    """Apply the exporter's preset; raise ``ConfigError`` listing every problem (paths like ``exporters[2].dataset``).

    The preset and protocol are checked again although the config model restricts them: ``cfg`` may have
    been built with ``ExporterConfig.model_construct`` (no validation)."""
    env = os.environ if env is None else env
    where = f"exporters[{index}]" if index is not None else f"exporters[{cfg.name}]"
    problems: list[tuple[str, str]] = []

    def problem(fieldname: str, message: str) -> None:
        problems.append((f"{where}.{fieldname}", message))

    preset = cfg.preset
    if preset not in PRESETS:
        problem("preset", f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}.")
        raise ConfigError(problems)
    protocol: str | None = cfg.protocol
    if protocol is not None and protocol not in PROTOCOLS:
        problem("protocol", f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}.")
    temporality_set = cfg.temporality
    user_headers = {k.lower(): reveal(v) for k, v in cfg.headers.items()}
    headers: dict[str, str] = {}
    temporality = Temporality.CUMULATIVE
    max_bytes = GRPC_DEFAULT_MAX
    summaries = "keep"
    max_attributes: int | None = None
    compression = "none"
    default_endpoint: str
    endpoint = cfg.endpoint

    if preset == "otlp":
        if protocol is None:
            protocol = _guess_protocol(endpoint)
        default_endpoint = "http://127.0.0.1:4317" if protocol == "grpc" else "http://127.0.0.1:4318/v1/metrics"
        if temporality_set is None:
            temporality = _temporality_from_env(env)
    elif preset == "datadog":
        site = cfg.site or "datadoghq.com"
        if site not in DATADOG_SITES:
            problem("site", f"unknown Datadog site {site!r}; expected one of {', '.join(DATADOG_SITES)}.")
        if protocol == "grpc":
            problem("protocol", "Datadog's OTLP intake accepts OTLP/HTTP protobuf only; "
                                "remove 'protocol' or set it to http/protobuf.")
        protocol = "http/protobuf"
        default_endpoint = f"https://otlp.{site}/v1/metrics"
        api_key = _secret(cfg.api_key)
        if not api_key and "dd-api-key" not in user_headers:
            problem("api_key", "the Datadog preset needs an API key (api_key: \"${DD_API_KEY}\").")
        headers["dd-api-key"] = api_key
        temporality, max_bytes, summaries, compression = Temporality.DELTA, DATADOG_MAX, "convert", "gzip"
        if temporality_set == "cumulative":
            problem("temporality", "Datadog's OTLP intake refuses cumulative sums and histograms; "
                                   "remove 'temporality' (the preset sends delta).")
        if cfg.summaries == "keep":
            problem("summaries", "Datadog's OTLP intake does not take summaries; use 'convert' or 'drop'.")
        limit = cfg.max_request_bytes
        if limit is not None and limit > DATADOG_MAX:
            problem("max_request_bytes", f"Datadog refuses requests over {DATADOG_MAX} bytes uncompressed; "
                                         f"use at most {DATADOG_MAX}.")
    elif preset == "honeycomb":
        region = cfg.region or "us"
        host = HONEYCOMB_HOSTS.get(region)
        if host is None:
            problem("region", f"Honeycomb has no region {region!r}; expected one of {', '.join(HONEYCOMB_HOSTS)}.")
            host = HONEYCOMB_HOSTS["us"]
        protocol = protocol or "http/protobuf"
        default_endpoint = f"https://{host}:443" if protocol == "grpc" else f"https://{host}/v1/metrics"
        api_key = _secret(cfg.api_key)
        if not api_key and "x-honeycomb-team" not in user_headers:
            problem("api_key", "the Honeycomb preset needs an API key (api_key: \"${HONEYCOMB_API_KEY}\").")
        dataset = cfg.dataset
        if not dataset and "x-honeycomb-dataset" not in user_headers:
            problem("dataset", "the Honeycomb preset needs a metrics dataset (dataset: my-metrics); "
                               "without it Honeycomb files the data under 'unknown_metrics'.")
        headers["x-honeycomb-team"] = api_key
        headers["x-honeycomb-dataset"] = dataset or ""
        compression = "gzip"
        max_bytes = GRPC_DEFAULT_MAX if protocol == "grpc" else HONEYCOMB_HTTP_MAX
    elif preset == "grafana-cloud":
        zone = cfg.zone
        if not zone and not endpoint:
            problem("zone", "the Grafana Cloud preset needs the stack's zone (zone: prod-us-east-0).")
        if protocol == "grpc":
            problem("protocol", "Grafana Cloud's OTLP gateway accepts OTLP/HTTP only; "
                                "remove 'protocol' or set it to http/protobuf.")
        protocol = "http/protobuf"
        default_endpoint = f"https://otlp-gateway-{zone}.grafana.net/otlp/v1/metrics"
        instance_id = _secret(cfg.instance_id)
        token = _secret(cfg.token)
        if "authorization" not in user_headers:
            if not instance_id:
                problem("instance_id", "the Grafana Cloud preset needs the stack's instance id (a number).")
            if not token:
                problem("token", "the Grafana Cloud preset needs an access-policy token with metrics:write.")
        basic = base64.b64encode(f"{instance_id}:{token}".encode()).decode("ascii")
        headers["authorization"] = f"Basic {basic}"
        register_secret(basic)     # the encoded pair is as secret as the token: mask it in any output
        compression = "gzip"
        if temporality_set == "delta":
            problem("temporality", "Grafana Cloud refuses delta sums and histograms (HTTP 400 \"invalid "
                                   "temporality and type combination\"); remove 'temporality' (the preset "
                                   "sends cumulative).")
    else:  # newrelic
        region = cfg.region or "us"
        host = NEWRELIC_HOSTS.get(region)
        if host is None:
            problem("region", f"New Relic has no region {region!r}; expected one of {', '.join(NEWRELIC_HOSTS)}.")
            host = NEWRELIC_HOSTS["us"]
        protocol = protocol or "http/protobuf"
        default_endpoint = f"https://{host}:4317" if protocol == "grpc" else f"https://{host}:4318/v1/metrics"
        api_key = _secret(cfg.api_key)
        if not api_key and "api-key" not in user_headers:
            problem("api_key", "the New Relic preset needs a license key (api_key: \"${NEW_RELIC_LICENSE_KEY}\").")
        headers["api-key"] = api_key
        temporality, max_bytes, summaries, compression = Temporality.DELTA, NEWRELIC_MAX, "convert", "gzip"
        max_attributes = NEWRELIC_MAX_ATTRIBUTES
        limit = cfg.max_request_bytes
        if limit is not None and limit > NEWRELIC_MAX:
            problem("max_request_bytes", f"New Relic refuses requests over {NEWRELIC_MAX} bytes; "
                                         f"use at most {NEWRELIC_MAX}.")

    assert protocol is not None
    headers.update(user_headers)   # explicit headers win over the preset's
    url, insecure = _endpoint_url(endpoint or default_endpoint, protocol, cfg.insecure,
                                  lambda msg: problem("endpoint", msg))
    tls = cfg.tls
    if tls is not None and protocol == "grpc" and tls.insecure_skip_verify:
        problem("tls.insecure_skip_verify", "gRPC (grpcio) cannot skip certificate verification; give the "
                                            "server's CA in tls.ca_file instead, or use http/protobuf.")
    if temporality_set is not None:
        temporality = Temporality(temporality_set)
    # The proxy depends on the endpoint: decided when the endpoint is usable (other problems are listed with it).
    endpoint_ok = all(path != f"{where}.endpoint" for path, _ in problems)
    proxy = _proxy(cfg, protocol, url, env, where, problems) if endpoint_ok else None
    if problems:
        raise ConfigError(problems)
    return ResolvedExporter(
        name=cfg.name,
        protocol=protocol,
        url=url,
        headers=headers,
        compression=cfg.compression or compression,
        timeout=cfg.timeout,
        tls=tls,
        insecure=insecure,
        temporality=temporality,
        max_request_bytes=cfg.max_request_bytes if cfg.max_request_bytes is not None else max_bytes,
        summaries=cfg.summaries or summaries,
        max_attributes=cfg.max_attributes if cfg.max_attributes is not None else max_attributes,
        queue_size=cfg.queue_size,
        retry=cfg.retry,
        spool=cfg.spool,
        preset=preset,
        proxy=proxy,
    )


def _proxy(cfg: ExporterConfig, protocol: str, url: str, env: Mapping[str, str], where: str,
           problems: list[tuple[str, str]]) -> Proxy | None:
    """The proxy for the exporter's endpoint (``url`` as resolved), or None; problems are appended."""
    grpc = protocol == "grpc"
    path = f"{where}.proxy_url" if cfg.proxy_url else where
    try:
        settings = proxy_settings(cfg.proxy_url, cfg.no_proxy, cfg.proxy_from_environment, env, grpc=grpc)
    except ValueError as exc:
        problems.append((path, str(exc)))
        return None
    for secret in settings.secrets():
        register_secret(secret)        # from the environment too: masked in every log line
    # gRPC's target is host:port and goes through a CONNECT tunnel whatever its scheme (grpc-go and gRPC
    # core pick the proxy as for https); OTLP/HTTP by the URL's scheme.
    parts = urllib.parse.urlsplit(url if not grpc else f"https://{url}")
    try:
        port = parts.port
    except ValueError:
        return None                    # reported as an endpoint problem
    proxy = settings.for_url(parts.scheme, parts.hostname or "", port)
    if proxy is not None and grpc and urllib.parse.urlsplit(proxy.url).scheme.lower() != "http":
        problems.append((path, f"the proxy {proxy.shown} ({proxy.origin}) is https://, but gRPC reaches a proxy "
                               "over plain HTTP only (a CONNECT tunnel; the gRPC traffic inside stays TLS when the "
                               "endpoint is https://): use an http:// proxy URL"))
        return None
    return proxy


def _guess_protocol(endpoint: str | None) -> str:
    """``otlp`` without ``protocol``: an endpoint with a path (gRPC has none) or on port 4318 is OTLP/HTTP, else gRPC."""
    if endpoint:
        parts = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.path not in ("", "/") or port == 4318:
            return "http/protobuf"
    return "grpc"


def _endpoint_url(endpoint: str, protocol: str, insecure: bool | None,
                  problem: Callable[[str], None]) -> tuple[str, bool]:
    """The URL the sender uses, and whether the connection is plaintext.

    OTLP/HTTP: the full URL; an endpoint without a path gets ``/v1/metrics`` (the OTLP default).
    OTLP/gRPC: ``host:port``; ``http://`` means plaintext, ``https://`` TLS; an endpoint without a
    scheme is TLS unless ``insecure: true`` (the OTLP exporter spec's rule for
    ``OTEL_EXPORTER_OTLP_INSECURE``).
    """
    has_scheme = "://" in endpoint
    parts = urllib.parse.urlsplit(endpoint if has_scheme else f"//{endpoint}")
    scheme = parts.scheme.lower() if has_scheme else ""
    try:
        port = parts.port
    except ValueError:
        problem(f"invalid port in {endpoint!r}.")
        return endpoint, False
    host = parts.hostname or ""
    if not host:
        problem(f"{endpoint!r} has no host; write it like https://collector.example:4318.")
        return endpoint, False
    if scheme not in ("", "http", "https"):
        problem(f"{endpoint!r}: the scheme must be http:// or https://.")
        return endpoint, False
    if protocol == "grpc":
        if parts.path not in ("", "/"):
            problem(f"{endpoint!r}: a gRPC endpoint has no path (the OTLP/gRPC service name is fixed); "
                    "for OTLP/HTTP set protocol: http/protobuf.")
        plaintext = (scheme == "http") if scheme else bool(insecure)
        port = port or (80 if scheme == "http" else 443 if scheme == "https" else 4317)
        shown = f"[{host}]" if ":" in host else host
        return f"{shown}:{port}", plaintext
    if not scheme:
        problem(f"{endpoint!r}: an OTLP/HTTP endpoint needs http:// or https://.")
        return endpoint, False
    path = parts.path if parts.path not in ("", "/") else "/v1/metrics"
    url = urllib.parse.urlunsplit((scheme, parts.netloc, path, parts.query, ""))
    return url, scheme == "http"


def _temporality_from_env(env: Mapping[str, str]) -> Temporality:
    """``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE``: cumulative (default), delta, lowmemory.

    ``lowmemory`` means delta for synchronous counters and histograms, cumulative for the rest; a
    scraped counter or histogram is the closest thing, so it resolves to delta here.
    """
    value = env.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "").strip().lower()
    if value in ("", "cumulative"):
        return Temporality.CUMULATIVE
    if value in ("delta", "lowmemory"):
        return Temporality.DELTA
    log.warning("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=%r is not one of cumulative, delta, "
                "lowmemory; using cumulative.", value)
    return Temporality.CUMULATIVE


__all__ = ["DATADOG_SITES", "PRESETS", "ResolvedExporter", "preset_problems", "resolve_exporter", "safe_url"]
