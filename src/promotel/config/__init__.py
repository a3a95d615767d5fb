"""Configuration: the typed, validated model of the YAML file (``schema``), durations and sizes (``units``)
and secret handling (``secrets``). ``load_config`` reports every problem of a file at once."""

from promotel.config.schema import (
    AuthConfig,
    BasicAuthConfig,
    Config,
    ExporterConfig,
    FamilyOverride,
    HealthConfig,
    RetryConfig,
    SelfTelemetryConfig,
    SourceConfig,
    SpoolConfig,
    TLSConfig,
    check_file_permissions,
    config_from_env,
    config_has_secrets,
    load_config,
    load_config_text,
)
from promotel.config.units import parse_duration, parse_size

__all__ = [
    "AuthConfig",
    "BasicAuthConfig",
    "Config",
    "ExporterConfig",
    "FamilyOverride",
    "HealthConfig",
    "RetryConfig",
    "SelfTelemetryConfig",
    "SourceConfig",
    "SpoolConfig",
    "TLSConfig",
    "check_file_permissions",
    "config_from_env",
    "config_has_secrets",
    "load_config",
    "load_config_text",
    "parse_duration",
    "parse_size",
]
