"""Configuration: the typed, validated model of the YAML file (``schema``), reading a file with every
problem reported at once (``loading``, ``problems``), the ``OTEL_EXPORTER_OTLP_*`` variables when there is no
file (``environment``), durations and sizes (``units``) and secret handling (``secrets``)."""

from promotel.config.environment import config_from_env
from promotel.config.loading import (
    check_file_permissions,
    config_has_secrets,
    load_config,
    load_config_text,
)
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
