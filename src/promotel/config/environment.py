"""A config without a file: one exporter from the standard ``OTEL_EXPORTER_OTLP_*`` variables.

Those variables are read only then: with a file, the file says everything. They configure no source, so
``promotel run`` and ``check`` without ``-c CONFIG`` are refused, with every problem of the variables
and a message saying to pass ``-c CONFIG``; in code, ``config_from_env`` takes the sources as an
argument. ``PROMOTEL_STATE_DIR`` gives the ``state_dir`` here as it does for a file without one.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence

from pydantic import ValidationError

from promotel.config.problems import dedupe, preset_problems_of, problems_from
from promotel.config.schema import NO_SOURCES, SENSITIVE_HEADER, Config, SourceConfig
from promotel.config.secrets import Secret
from promotel.errors import ConfigError

__all__ = ["ENV_ONLY_NO_SOURCES", "STATE_DIR_VAR", "config_from_env", "default_state_dir"]

# Set by the systemd unit (StateDirectory) and the container image; a config's own state_dir wins.
STATE_DIR_VAR = "PROMOTEL_STATE_DIR"

ENV_ONLY_NO_SOURCES = (
    "nothing to scrape: without -c CONFIG only the OTEL_EXPORTER_OTLP_* variables are read, and they "
    "configure an exporter, never a source; write a config file whose 'sources:' list has at least one "
    "entry with a name and a url, and run 'promotel run -c CONFIG' ('promotel check -c CONFIG' to try it)")


def default_state_dir(data: dict[str, object], env: Mapping[str, str]) -> None:
    """``state_dir`` from ``PROMOTEL_STATE_DIR`` when the raw config has none (absent or null)."""
    value = env.get(STATE_DIR_VAR, "").strip()
    if value and data.get("state_dir") is None:
        data["state_dir"] = value


def _parse_key_values(text: str, var: str, problems: list[tuple[str, str]], secret: bool) -> dict[str, str]:
    """``k=v,k2=v2`` with URL-encoded values (the OTel spec's format for headers and resource attributes)."""
    out: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = urllib.parse.unquote(key.strip())
        if not sep or not key:
            problems.append((var, (f"expected comma-separated key=value pairs; the entry number {len(out) + 1} "
                                   "has no '=' or no key")))
            continue
        plain = urllib.parse.unquote(value.strip())
        out[key] = Secret(plain) if secret and SENSITIVE_HEADER.search(key) else plain
    return out


def config_from_env(env: Mapping[str, str], sources: Sequence[SourceConfig] = ()) -> Config:
    """One exporter from the standard ``OTEL_EXPORTER_OTLP_*`` variables, with ``sources`` (given in code;
    the variables have none). Without sources the config is refused like a file without any.

    ``OTEL_EXPORTER_OTLP_METRICS_*`` variables win over the general ones. The general endpoint is
    a base URL: for OTLP/HTTP the signal path ``v1/metrics`` is appended (OTel spec); the
    metrics-specific endpoint is used as it is. Empty variables count as unset.
    """
    problems: list[tuple[str, str]] = []

    def get(name: str) -> tuple[str, str] | None:
        for var in (f"OTEL_EXPORTER_OTLP_METRICS_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
            value = env.get(var, "").strip()
            if value:
                return var, value
        return None

    # The exporter section as a YAML file would hold it (values of several types), validated below.
    exporter: dict[str, object] = {"name": "otlp", "preset": "otlp"}
    origin: dict[str, str] = {}      # exporter key → the variable that set it, to name it in problems
    protocol = get("PROTOCOL")
    if protocol:
        var, value = protocol
        if value == "http/json":
            problems.append((var, "OTLP/JSON ('http/json') is not supported; use 'grpc' or 'http/protobuf'"))
        elif value not in ("grpc", "http/protobuf"):
            problems.append((var, f"expected 'grpc' or 'http/protobuf', got {value!r}"))
        else:
            exporter["protocol"] = value
            origin["protocol"] = var
    endpoint = get("ENDPOINT")
    if endpoint:
        var, value = endpoint
        if var == "OTEL_EXPORTER_OTLP_ENDPOINT" and exporter.get("protocol") == "http/protobuf":
            value = value.rstrip("/") + "/v1/metrics"
        exporter["endpoint"] = value
        origin["endpoint"] = var
    headers = get("HEADERS")
    if headers:
        exporter["headers"] = _parse_key_values(headers[1], headers[0], problems, secret=True)
    compression = get("COMPRESSION")
    if compression:
        var, value = compression
        if value.lower() not in ("gzip", "none"):
            problems.append((var, f"expected 'gzip' or 'none', got {value!r}"))
        else:
            exporter["compression"] = value.lower()
    timeout = get("TIMEOUT")
    if timeout:
        var, value = timeout
        try:
            millis = float(value)   # milliseconds, per the OTel specification
            if millis <= 0:
                raise ValueError
            exporter["timeout"] = millis / 1000.0
        except ValueError:
            problems.append((var, f"expected a positive number of milliseconds, got {value!r}"))
    tls: dict[str, str] = {}
    for name, key in (("CERTIFICATE", "ca_file"), ("CLIENT_CERTIFICATE", "cert_file"), ("CLIENT_KEY", "key_file")):
        found = get(name)
        if found:
            tls[key] = found[1]
            origin[f"tls.{key}"] = found[0]
    if tls:
        exporter["tls"] = tls
    insecure = get("INSECURE")
    if insecure:
        var, value = insecure
        if value.lower() not in ("true", "false"):
            problems.append((var, f"expected 'true' or 'false', got {value!r}"))
        else:
            exporter["insecure"] = value.lower() == "true"
    preference = env.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "").strip().lower()
    if preference:
        if preference == "lowmemory":
            # LowMemory = delta for monotonic sums and histograms, cumulative for the rest: exactly what
            # 'delta' does here (gauges and non-monotonic sums are never made delta).
            exporter["temporality"] = "delta"
        elif preference in ("cumulative", "delta"):
            exporter["temporality"] = preference
        else:
            problems.append(("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                             f"expected cumulative, delta or lowmemory, got {preference!r}"))
    resource: dict[str, str] = {}
    attrs = env.get("OTEL_RESOURCE_ATTRIBUTES", "").strip()
    if attrs:
        resource.update(_parse_key_values(attrs, "OTEL_RESOURCE_ATTRIBUTES", problems, secret=False))
    service_name = env.get("OTEL_SERVICE_NAME", "").strip()
    if service_name:
        resource["service.name"] = service_name   # the spec: OTEL_SERVICE_NAME wins over the attribute
    data: dict[str, object] = {"sources": list(sources), "exporters": [exporter], "resource_attributes": resource}
    default_state_dir(data, env)
    cfg: Config | None
    checked: list[tuple[str, str]] = []
    try:
        cfg = Config.model_validate(data, context={"base_dir": None})
    except ValidationError as exc:
        checked = problems_from(exc)
        cfg = None
    checked += preset_problems_of(data["exporters"], cfg, checked, None)
    # Every check runs, so the variables' own problems come out together with the missing sources; each
    # names the variable it comes from where there is one.
    for path, message in checked:
        if (path, message) == ("sources", NO_SOURCES):
            problems.append(("", ENV_ONLY_NO_SOURCES))
        else:
            problems.append((origin.get(path.removeprefix("exporters[0]."), path), message))
    if problems or cfg is None:
        raise ConfigError(dedupe(problems), source="environment")
    return cfg
