"""A config without a file: one exporter from the standard ``OTEL_EXPORTER_OTLP_*`` variables, no sources.

Those variables are read only then: with a file, the file says everything.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

from pydantic import ValidationError

from promotel.config.problems import dedupe, problems_from
from promotel.config.schema import SENSITIVE_HEADER, Config
from promotel.config.secrets import Secret
from promotel.errors import ConfigError

__all__ = ["config_from_env"]


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


def config_from_env(env: Mapping[str, str]) -> Config:
    """One exporter from the standard ``OTEL_EXPORTER_OTLP_*`` variables, no sources.

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
    protocol = get("PROTOCOL")
    if protocol:
        var, value = protocol
        if value == "http/json":
            problems.append((var, "OTLP/JSON ('http/json') is not supported; use 'grpc' or 'http/protobuf'"))
        elif value not in ("grpc", "http/protobuf"):
            problems.append((var, f"expected 'grpc' or 'http/protobuf', got {value!r}"))
        else:
            exporter["protocol"] = value
    endpoint = get("ENDPOINT")
    if endpoint:
        var, value = endpoint
        if var == "OTEL_EXPORTER_OTLP_ENDPOINT" and exporter.get("protocol") == "http/protobuf":
            value = value.rstrip("/") + "/v1/metrics"
        exporter["endpoint"] = value
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
    data = {"exporters": [exporter], "resource_attributes": resource}
    cfg: Config | None
    try:
        cfg = Config.model_validate(data, context={"base_dir": None})
    except ValidationError as exc:
        problems += problems_from(exc)
        cfg = None
    if problems or cfg is None:
        raise ConfigError(dedupe(problems), source="environment")
    return cfg
