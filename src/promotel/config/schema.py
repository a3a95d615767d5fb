"""The configuration's model: frozen pydantic models of every section, with every default in one place.

Unknown keys are errors; durations are floats in seconds and sizes ints in bytes once validated. Secrets
(API keys, tokens, passwords, the pseudonymization key, sensitive header values) become
``promotel.config.secrets.Secret`` values that print as ``***``. A source's interval defaults and limits
come from its mapping plugin's scrape policy (``promotel.mappings.ScrapePolicy``), not from here.

The field types and the base model every section shares are ``promotel.config.fields``; the HTTP client
sections and keys (TLS, auth, headers, proxies, scrape protocols) are ``promotel.config.httpclient``; a
source's target keys are validated by ``promotel.config.targets``, their sections by the discovery package.
Every name that moved there stays importable from here (the private helpers by ``x as x`` imports).

Reading a file (YAML, ``${VAR}`` expansion, problems reported together) is ``promotel.config.loading``;
the ``OTEL_EXPORTER_OTLP_*`` variables are ``promotel.config.environment``.
"""

from __future__ import annotations

import difflib
import urllib.parse
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from promotel.config.fields import Duration, SecretText, Size, Text, _Model
from promotel.config.fields import _duration as _duration
from promotel.config.fields import _positive as _positive
from promotel.config.fields import _scalar_to_str as _scalar_to_str
from promotel.config.fields import _size as _size
from promotel.config.fields import _to_secret as _to_secret
from promotel.config.httpclient import (
    SENSITIVE_HEADER,
    AuthConfig,
    BasicAuthConfig,
    Headers,
    ProxyURL,
    ScrapeProtocol,
    ScrapeProtocols,
    TLSConfig,
    _ProxyChecks,
)
from promotel.config.httpclient import _headers as _headers
from promotel.config.httpclient import _protocol_list as _protocol_list
from promotel.config.httpclient import _proxy_keys_problem as _proxy_keys_problem
from promotel.config.httpclient import _proxy_url as _proxy_url
from promotel.config.httpclient import _read_secret_file as _read_secret_file
from promotel.config.httpclient import _readable_file as _readable_file
from promotel.config.httpclient import _resolve_file as _resolve_file
from promotel.config.httpclient import _scrape_protocol as _scrape_protocol
from promotel.config.httpclient import _scrape_protocols as _scrape_protocols
from promotel.config.targets import MetricsPath, Params, TargetURL, empty_null_lists, targets_problem
from promotel.config.units import parse_duration
from promotel.discovery.dns_sd import DNSSDConfig
from promotel.discovery.file_sd import FileSDConfig
from promotel.discovery.http_sd import HTTPSDConfig
from promotel.discovery.kubernetes_sd import KubernetesSDConfig
from promotel.discovery.relabel import RelabelConfig
from promotel.discovery.sd import SD_KEYS, SDConfigs
from promotel.discovery.static_sd import StaticConfig
from promotel.errors import ConfigError, MappingError
from promotel.httpcommon import DEFAULT_SCRAPE_PROTOCOLS
from promotel.mappings import (
    DEFAULT_SCRAPE_POLICY,
    ScrapePolicy,
    installed_mappings,
    load_mapping,
    mapping_scrape_policy,
)

__all__ = [
    "NO_SOURCES",
    "SENSITIVE_HEADER",
    "AuthConfig",
    "BasicAuthConfig",
    "Config",
    "Duration",
    "ExporterConfig",
    "FamilyOverride",
    "Headers",
    "HealthConfig",
    "ProxyURL",
    "RetryConfig",
    "ScrapeProtocol",
    "ScrapeProtocols",
    "SecretText",
    "SelfTelemetryConfig",
    "Size",
    "SourceConfig",
    "SpoolConfig",
    "TLSConfig",
    "Text",
    "deprecated_settings",
]

MIB = 1024 * 1024
DEFAULT_INTERVAL = 15.0           # a source's interval when neither it nor its mapping's scrape policy says
MAX_DEFAULT_TIMEOUT = 10.0        # a source's timeout defaults to min(this, 0.8 × interval)


class FamilyOverride(_Model):
    name: str | None = None
    unit: str | None = None
    scale: float | None = None
    description: str | None = None
    attributes: dict[str, Text] = Field(default_factory=dict)
    drop_attributes: list[str] = Field(default_factory=list)
    rename_attributes: dict[str, str] = Field(default_factory=dict)
    drop: bool = False


def _policy(mapping: object) -> ScrapePolicy:
    """The scrape policy of the mapping a source names; the generic one when the name is not a loadable
    mapping (the ``mapping`` field's own validation reports that)."""
    if not isinstance(mapping, str):
        return DEFAULT_SCRAPE_POLICY
    try:
        return mapping_scrape_policy(mapping)
    except MappingError:
        return DEFAULT_SCRAPE_POLICY


class SourceConfig(_ProxyChecks):
    name: str = Field(min_length=1)
    mapping: str = "passthrough"
    # Targets: ``url`` is the one-target shortcut; or Prometheus's discovery keys (exactly one of the two
    # ways), checked by promotel.config.targets. See promotel.discovery.sourcetargets for how a source
    # becomes its targets.
    url: TargetURL | None = None
    static_configs: tuple[StaticConfig, ...] = ()
    file_sd_configs: tuple[FileSDConfig, ...] = ()
    dns_sd_configs: tuple[DNSSDConfig, ...] = ()
    http_sd_configs: tuple[HTTPSDConfig, ...] = ()
    kubernetes_sd_configs: tuple[KubernetesSDConfig, ...] = ()
    # Prometheus's scrape-config keys for discovered targets (the defaults of __scheme__, __metrics_path__,
    # __param_<name>); a url: source takes them from its URL instead.
    scheme: Literal["http", "https"] = "http"
    metrics_path: MetricsPath = "/metrics"
    params: Params = Field(default_factory=dict)
    relabel_configs: tuple[RelabelConfig, ...] = ()
    metric_relabel_configs: tuple[RelabelConfig, ...] = ()
    interval: Duration = DEFAULT_INTERVAL         # else the mapping's default (set before validation)
    timeout: Duration = MAX_DEFAULT_TIMEOUT       # default min(10 s, 0.8 × interval)
    auth: AuthConfig | None = None
    tls: TLSConfig | None = None
    headers: Headers = Field(default_factory=dict)
    max_body_bytes: Size = 64 * MIB
    max_series: int = Field(default=200_000, ge=1)
    expire_after_scrapes: int = Field(default=5, ge=1)    # deprecated: no effect (see DEPRECATED)
    service_name: str | None = None
    resource_attributes: dict[str, Text] = Field(default_factory=dict)
    users: Literal["keep", "pseudonymize", "drop"] = "keep"
    pseudonymize_key: SecretText | None = Field(default=None, validate_default=True)
    unmapped: Literal["keep", "drop"] = "keep"
    overrides: dict[str, FamilyOverride] = Field(default_factory=dict)
    honor_timestamps: bool = True
    honor_labels: bool = False          # exposed job/instance win (Prometheus' honor_labels); see pipeline.py
    # Negotiation, as Prometheus's scrape config: the formats to ask for, most preferred first (the Accept
    # header), and the format of a body whose Content-Type is missing, empty, unparseable or unknown (None:
    # guessed from the body; Prometheus fails such a scrape).
    scrape_protocols: ScrapeProtocols = DEFAULT_SCRAPE_PROTOCOLS
    fallback_scrape_protocol: ScrapeProtocol | None = None
    # Proxy (Prometheus's http_config keys). proxy_from_environment None: the environment unless proxy_url.
    proxy_url: ProxyURL | None = None
    no_proxy: str | None = None
    proxy_from_environment: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data     # pydantic reports "expected a mapping"
        data = dict(data)
        # Prometheus's names for the two durations: aliases, not second settings.
        for alias, key in (("scrape_interval", "interval"), ("scrape_timeout", "timeout")):
            if alias in data:
                if data.get(key) is not None:
                    raise ValueError(f"both {key} and {alias} are set; {alias} is Prometheus's name for {key}: "
                                     "keep one of them")
                data[key] = data.pop(alias)
        empty_null_lists(data)      # a null list is an empty one, as in Prometheus
        if data.get("interval") is None:
            data.pop("interval", None)
            default = _policy(data.get("mapping", cls.model_fields["mapping"].default)).default_interval
            if default is not None:
                data["interval"] = default
        if data.get("timeout") is None:
            data.pop("timeout", None)
            try:
                interval = parse_duration(data.get("interval", DEFAULT_INTERVAL))
            except (ValueError, TypeError, AttributeError):
                return data    # the interval's own error is reported; the timeout keeps its default
            if interval > 0:
                data["timeout"] = min(MAX_DEFAULT_TIMEOUT, 0.8 * interval)
        return data

    @field_validator("mapping")
    @classmethod
    def _known_mapping(cls, value: str) -> str:
        installed = installed_mappings()
        if not installed:
            return value    # no plugin metadata at all (promotel not installed): bind reports it
        if value not in installed:
            close = difflib.get_close_matches(value, installed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown mapping {value!r}{hint}; installed mappings: {', '.join(installed)}")
        try:
            load_mapping(value)     # a plugin that cannot load has no scrape policy to validate against
        except MappingError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _one_way_to_targets(self) -> SourceConfig:
        problem = targets_problem(self)
        if problem is not None:
            raise ValueError(problem)
        return self

    @property
    def discovery(self) -> SDConfigs:
        """The source's discovery keys together (empty for a url: source)."""
        return SDConfigs.model_construct(**{key: getattr(self, key) for key in SD_KEYS})

    @property
    def discovers_targets(self) -> bool:
        """True when the targets come from discovery keys (also on the per-target copy that carries a url)."""
        return any(getattr(self, key) for key in SD_KEYS)

    @field_validator("interval")
    @classmethod
    def _within_policy(cls, value: float, info: ValidationInfo) -> float:
        mapping = info.data.get("mapping")
        if isinstance(mapping, str):
            problem = _policy(mapping).interval_problem(mapping, value)
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("timeout")
    @classmethod
    def _below_interval(cls, value: float, info: ValidationInfo) -> float:
        interval = info.data.get("interval")
        if interval is not None and value >= interval:
            raise ValueError(f"must be shorter than the interval ({interval:g}s), got {value:g}s")
        return value

    @field_validator("pseudonymize_key")
    @classmethod
    def _key_when_pseudonymizing(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("users") == "pseudonymize":
            raise ValueError("required when users is 'pseudonymize' (the key of the hash that replaces user "
                             "ids; keep it stable and secret, e.g. pseudonymize_key: \"${PSEUDONYMIZE_KEY}\")")
        return value


class RetryConfig(_Model):
    """Backoff of one exporter's retries (exponential with full jitter), in seconds."""

    initial_interval: Duration = 1.0
    max_interval: Duration = 30.0
    max_elapsed: Duration = 300.0


class SpoolConfig(_Model):
    """One exporter's on-disk spool (used only with a ``state_dir``)."""

    enabled: bool = True
    max_bytes: Size = 256 * MIB


def _otlp_endpoint(value: str | None) -> str | None:
    if value is None:
        return None
    if "://" in value:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL (or host:port for gRPC), got {value!r}")
    elif not value.strip():
        raise ValueError("must not be empty")
    return value


class ExporterConfig(_ProxyChecks):
    name: str = Field(min_length=1)
    preset: Literal["otlp", "datadog", "honeycomb", "grafana-cloud", "newrelic"] = "otlp"
    endpoint: str | None = None
    protocol: Literal["grpc", "http/protobuf"] | None = None
    headers: Headers = Field(default_factory=dict)
    compression: Literal["gzip", "none"] | None = None
    timeout: Duration = 10.0
    tls: TLSConfig | None = None
    insecure: bool | None = None
    temporality: Literal["cumulative", "delta"] | None = None
    max_request_bytes: Size | None = None
    summaries: Literal["keep", "convert", "drop"] | None = None
    max_attributes: int | None = Field(default=None, ge=1)
    queue_size: int = Field(default=64, ge=1)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    # Preset fields; which ones a preset requires is checked by promotel.export.presets.
    api_key: SecretText | None = None
    site: str | None = None
    dataset: str | None = None
    region: Literal["us", "eu", "fedramp"] | None = None
    zone: str | None = None
    instance_id: Text | None = None
    token: SecretText | None = None
    # Proxy: proxy_url is the Collector's confighttp key; no_proxy and proxy_from_environment as for sources.
    proxy_url: ProxyURL | None = None
    no_proxy: str | None = None
    proxy_from_environment: bool | None = None

    @field_validator("protocol", mode="before")
    @classmethod
    def _no_json(cls, value: object) -> object:
        if value == "http/json":
            raise ValueError("OTLP/JSON ('http/json') is not supported; use 'grpc' or 'http/protobuf'")
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return _otlp_endpoint(value)


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT such as '127.0.0.1:8888', got {value!r}")
    return value


class HealthConfig(_Model):
    listen: Annotated[str, AfterValidator(_listen)] = "127.0.0.1:8888"
    # /readyz turns 503 while an exporter dropped data within this window, or when every attempt of an
    # exporter failed for longer than it (in the spirit of the Collector health check's recovery_duration).
    unready_after: Duration = 120.0


class SelfTelemetryConfig(_Model):
    enabled: bool = True
    endpoint: str | None = None     # None → the first exporter; else resolved like an otlp exporter's endpoint
    interval: Duration = 60.0

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return _otlp_endpoint(value)


def duplicate_names(names: list[object], section: str) -> list[tuple[str, str]]:
    """Problems for names used twice in ``sources``/``exporters`` (``names`` in config order; non-strings,
    which validation reports itself, are skipped)."""
    seen: dict[str, int] = {}
    problems = []
    for i, name in enumerate(names):
        if not isinstance(name, str):
            continue
        if name in seen:
            problems.append((f"{section}[{i}].name",
                             f"duplicate name {name!r} (also used by {section}[{seen[name]}]); names must be unique"))
        else:
            seen[name] = i
    return problems


NO_SOURCES = ("nothing to scrape: add at least one source, each with a name and a url, e.g. "
              "'sources: [{name: app, url: \"http://127.0.0.1:9100/metrics\"}]'")


class Config(_Model):
    # Required in effect (validated even when absent): a bridge without sources would idle forever.
    sources: list[SourceConfig] = Field(default_factory=list, validate_default=True)
    exporters: list[ExporterConfig] = Field(min_length=1)
    state_dir: str | None = None
    health: HealthConfig | None = None
    self_telemetry: SelfTelemetryConfig = Field(default_factory=SelfTelemetryConfig)
    resource_attributes: dict[str, Text] = Field(default_factory=dict)
    shard: str | None = None          # deprecated: no effect (see DEPRECATED)

    # Paths of secrets written literally in the config file; None when the config did not come from a file.
    _literal_secrets: tuple[str, ...] | None = PrivateAttr(default=None)

    @field_validator("sources", mode="before")
    @classmethod
    def _null_sources(cls, value: object) -> object:
        return [] if value is None else value     # "sources:" with nothing under it: say what to add

    @field_validator("sources")
    @classmethod
    def _some_sources(cls, value: list[SourceConfig]) -> list[SourceConfig]:
        if not value:
            raise ValueError(NO_SOURCES)
        return value

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from promotel.scrape.shard import parse_shard

        try:
            parse_shard(value)
        except ConfigError as exc:
            raise ValueError("; ".join(msg for _, msg in exc.problems)) from exc
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        problems = (duplicate_names([s.name for s in self.sources], "sources")
                    + duplicate_names([e.name for e in self.exporters], "exporters"))
        if problems:
            raise ValueError("\n".join(f"{path}: {msg}" for path, msg in problems))
        return self


# ─── keys kept for compatibility only ────────────────────────────────────────────────────────

# Keys that are still accepted and validated (configs written for 0.1 keep loading) but do nothing; loading a
# config that sets one logs a warning with the reason. Keyed by model and field name.
DEPRECATED: Mapping[tuple[type[BaseModel], str], str] = {
    (SourceConfig, "expire_after_scrapes"): (
        "has no effect and is deprecated: a series missing from a scrape gets one staleness marker and is "
        "forgotten at once (Prometheus staleness), so no series waits for later scrapes; remove the key"),
    (Config, "shard"): (
        "has no effect and is deprecated: every replica of a sharded deployment shares one config, so the "
        "shard comes from --shard INDEX/COUNT, PROMOTEL_SHARD or PROMOTEL_SHARD_COUNT with the pod ordinal; "
        "remove the key"),
}


def deprecated_settings(cfg: Config) -> list[tuple[str, str]]:
    """``(path, message)`` for every deprecated key the config sets explicitly, in config order."""
    found: list[tuple[str, str]] = []

    def check(model: BaseModel, path: str) -> None:
        for (kind, key), message in DEPRECATED.items():
            if isinstance(model, kind) and key in model.model_fields_set:
                found.append((f"{path}.{key}" if path else key, message))

    check(cfg, "")
    for i, source in enumerate(cfg.sources):
        check(source, f"sources[{i}]")
    for i, exporter in enumerate(cfg.exporters):
        check(exporter, f"exporters[{i}]")
    return found
