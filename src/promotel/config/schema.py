"""The configuration: YAML, ``${VAR}`` expansion, strict validation that reports every problem at once.

Loading goes: read the file → ``yaml.safe_load`` → expand ``${VAR}`` / ``${VAR:-default}`` in every
string value (``$$`` is a literal ``$``) → validate with pydantic (frozen models, unknown keys are
errors) → ``Config``. Every problem found on the way is collected and raised together as one
``ConfigError`` whose ``problems`` are ``(path, message)`` pairs, with paths such as
``sources[1].interval`` or ``exporters[0].protocol``.

Without a config file, ``config_from_env`` builds one exporter from the standard
``OTEL_EXPORTER_OTLP_*`` variables (and no sources). Those variables are read only then: with a file,
the file says everything.

Secrets (API keys, tokens, passwords, the pseudonymization key, sensitive header values) become
``promotel.secrets.Secret`` values: they print as ``***`` and are masked in every log line. A file
that holds a secret literally (not through ``${VAR}``) must not be world-readable:
``check_file_permissions`` refuses it.

Durations are floats in seconds and sizes ints in bytes once validated.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import stat
import urllib.parse
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from promotel.config.secrets import Secret, register_secret
from promotel.config.units import parse_duration, parse_size
from promotel.errors import ConfigError

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

log = logging.getLogger("promotel.config")

MIB = 1024 * 1024
# Baseten: "6 requests per minute per organization" (beyond: HTTP 429); data refreshes every 30 s.
BASETEN_DEFAULT_INTERVAL = 60.0
BASETEN_MIN_INTERVAL = 10.0
DEFAULT_INTERVAL = 15.0
MAX_DEFAULT_TIMEOUT = 10.0

# Header names whose values are credentials: they become Secrets (masked in logs and output).
_SENSITIVE_HEADER = re.compile(r"auth|key|token|secret|passw|cookie|credential|honeycomb-team", re.IGNORECASE)


# ─── field types ─────────────────────────────────────────────────────────────────────────────


def _duration(value: Any) -> Any:
    if isinstance(value, (str, int, float)):
        return parse_duration(value)
    return value


def _size(value: Any) -> Any:
    if isinstance(value, (str, int, float)):
        return parse_size(value)
    return value


def _scalar_to_str(value: Any) -> Any:
    """YAML turns ``port: 8080`` or ``enabled: yes`` into numbers and booleans; attribute and header
    values are strings, so scalars are taken as the text the user meant."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


def _to_secret(value: str) -> str:
    return Secret(value)


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


Duration = Annotated[float, BeforeValidator(_duration), AfterValidator(_positive)]
Size = Annotated[int, BeforeValidator(_size), AfterValidator(_positive)]
Text = Annotated[str, BeforeValidator(_scalar_to_str)]
SecretText = Annotated[str, BeforeValidator(_scalar_to_str), AfterValidator(_to_secret)]


def _headers(value: Any) -> Any:
    """Header values whose name looks like a credential become Secrets."""
    if isinstance(value, Mapping):
        return {k: Secret(v) if isinstance(k, str) and isinstance(v, str) and _SENSITIVE_HEADER.search(k) else v
                for k, v in value.items()}
    return value


Headers = Annotated[dict[str, Text], AfterValidator(_headers)]


def _resolve_file(value: str, info: ValidationInfo) -> str:
    """A file named in the config: relative paths are relative to the config file's directory."""
    base = (info.context or {}).get("base_dir") if isinstance(info.context, dict) else None
    path = os.path.expanduser(value)
    if base and not os.path.isabs(path):
        path = os.path.join(base, path)
    return path


def _readable_file(value: str, info: ValidationInfo) -> str:
    path = _resolve_file(value, info)
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read {path!r}: {exc.strerror or exc}; check the path and its permissions") from exc
    return path


def _read_secret_file(path: str) -> Secret:
    with open(path, encoding="utf-8") as fh:
        # Files written by `echo` or editors end with a newline that is not part of the secret.
        return Secret(fh.read().strip())


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ─── sections ────────────────────────────────────────────────────────────────────────────────


class TLSConfig(_Model):
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False
    server_name: str | None = None     # the name to verify (and send as SNI) instead of the URL's host

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _files(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _readable_file(value, info)

    @model_validator(mode="after")
    def _pair(self) -> TLSConfig:
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file (the client certificate the key belongs to)")
        return self


class BasicAuthConfig(_Model):
    username: Text
    password: SecretText | None = None
    password_file: str | None = None    # read at load time into ``password``

    @field_validator("password_file")
    @classmethod
    def _file(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _readable_file(value, info)

    @model_validator(mode="after")
    def _one_password(self) -> BasicAuthConfig:
        if (self.password is None) == (self.password_file is None):
            raise ValueError("give exactly one of 'password' and 'password_file'")
        if self.password_file is not None:
            object.__setattr__(self, "password", _read_secret_file(self.password_file))
        return self


class AuthConfig(_Model):
    """Exactly one credential. ``api_key`` → ``Authorization: Api-Key <key>`` (Baseten's scheme),
    ``bearer_token`` → ``Authorization: Bearer <token>``, ``basic`` → HTTP Basic. The ``*_file``
    variants are read once at load time into the plain field (``api_key_file`` fills ``api_key``)."""

    api_key: SecretText | None = None
    api_key_file: str | None = None
    bearer_token: SecretText | None = None
    bearer_token_file: str | None = None
    basic: BasicAuthConfig | None = None

    @field_validator("api_key_file", "bearer_token_file")
    @classmethod
    def _files(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _readable_file(value, info)

    @model_validator(mode="after")
    def _exactly_one(self) -> AuthConfig:
        given = [name for name in ("api_key", "api_key_file", "bearer_token", "bearer_token_file", "basic")
                 if getattr(self, name) is not None]
        if len(given) != 1:
            got = " and ".join(given) if given else "none"
            raise ValueError("give exactly one of api_key, api_key_file, bearer_token, bearer_token_file, "
                             f"basic (got {got})")
        if self.api_key_file is not None:
            object.__setattr__(self, "api_key", _read_secret_file(self.api_key_file))
        if self.bearer_token_file is not None:
            object.__setattr__(self, "bearer_token", _read_secret_file(self.bearer_token_file))
        return self


class FamilyOverride(_Model):
    name: str | None = None
    unit: str | None = None
    scale: float | None = None
    description: str | None = None
    attributes: dict[str, Text] = Field(default_factory=dict)
    drop_attributes: list[str] = Field(default_factory=list)
    rename_attributes: dict[str, str] = Field(default_factory=dict)
    drop: bool = False


def _installed_mappings() -> tuple[str, ...]:
    return tuple(sorted({ep.name for ep in entry_points(group="promotel.mappings")}))


class SourceConfig(_Model):
    name: str = Field(min_length=1)
    mapping: str = "passthrough"
    url: str
    interval: Duration = DEFAULT_INTERVAL         # default 60 s for mapping baseten (set before validation)
    timeout: Duration = MAX_DEFAULT_TIMEOUT       # default min(10 s, 0.8 × interval)
    auth: AuthConfig | None = None
    tls: TLSConfig | None = None
    headers: Headers = Field(default_factory=dict)
    max_body_bytes: Size = 64 * MIB
    max_series: int = Field(default=200_000, ge=1)
    expire_after_scrapes: int = Field(default=5, ge=1)
    service_name: str | None = None
    resource_attributes: dict[str, Text] = Field(default_factory=dict)
    users: Literal["keep", "pseudonymize", "drop"] = "keep"
    pseudonymize_key: SecretText | None = Field(default=None, validate_default=True)
    unmapped: Literal["keep", "drop"] = "keep"
    overrides: dict[str, FamilyOverride] = Field(default_factory=dict)
    honor_timestamps: bool = True

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("interval") is None:
            data.pop("interval", None)
            if data.get("mapping") == "baseten":
                data["interval"] = BASETEN_DEFAULT_INTERVAL
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
        installed = _installed_mappings()
        if installed and value not in installed:
            close = difflib.get_close_matches(value, installed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown mapping {value!r}{hint}; installed mappings: {', '.join(installed)}")
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            parts = urllib.parse.urlsplit(value)
            password = parts.password
        except ValueError as exc:
            raise ValueError(f"invalid URL: {exc}") from exc
        if password:
            register_secret(password)   # credentials in the URL are masked like any other secret
        if parts.scheme not in ("http", "https") or not parts.hostname:
            shown = value.replace(password, "***") if password else value
            raise ValueError(f"expected an http:// or https:// URL such as 'https://host/metrics', got {shown!r}")
        return value

    @field_validator("interval")
    @classmethod
    def _baseten_budget(cls, value: float, info: ValidationInfo) -> float:
        if info.data.get("mapping") == "baseten" and value < BASETEN_MIN_INTERVAL:
            raise ValueError(f"must be at least {BASETEN_MIN_INTERVAL:g}s for mapping baseten: Baseten allows "
                             "6 requests per minute per organization and answers HTTP 429 beyond that "
                             f"(recommended: {BASETEN_DEFAULT_INTERVAL:g}s, its data refreshes every 30s)")
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
    initial_interval: Duration = 1.0
    max_interval: Duration = 30.0
    max_elapsed: Duration = 300.0


class SpoolConfig(_Model):
    enabled: bool = True
    max_bytes: Size = 256 * MIB


class ExporterConfig(_Model):
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

    @field_validator("protocol", mode="before")
    @classmethod
    def _no_json(cls, value: Any) -> Any:
        if value == "http/json":
            raise ValueError("OTLP/JSON ('http/json') is not supported; use 'grpc' or 'http/protobuf'")
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "://" in value:
            parts = urllib.parse.urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"expected an http:// or https:// URL (or host:port for gRPC), got {value!r}")
        elif not value.strip():
            raise ValueError("must not be empty")
        return value


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT such as '127.0.0.1:8888', got {value!r}")
    return value


class HealthConfig(_Model):
    listen: Annotated[str, AfterValidator(_listen)] = "127.0.0.1:8888"


class SelfTelemetryConfig(_Model):
    enabled: bool = True
    endpoint: str | None = None     # None → the bridge's own exporters
    interval: Duration = 60.0


def _duplicate_names(items: Any, section: str) -> list[tuple[str, str]]:
    """Problems for names used twice in ``sources``/``exporters`` (works on raw data and on models)."""
    if not isinstance(items, list):
        return []
    seen: dict[str, int] = {}
    problems = []
    for i, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else getattr(item, "name", None)
        if not isinstance(name, str):
            continue
        if name in seen:
            problems.append((f"{section}[{i}].name",
                             f"duplicate name {name!r} (also used by {section}[{seen[name]}]); names must be unique"))
        else:
            seen[name] = i
    return problems


class Config(_Model):
    sources: list[SourceConfig] = Field(default_factory=list)
    exporters: list[ExporterConfig] = Field(min_length=1)
    state_dir: str | None = None
    health: HealthConfig | None = None
    self_telemetry: SelfTelemetryConfig = Field(default_factory=SelfTelemetryConfig)
    resource_attributes: dict[str, Text] = Field(default_factory=dict)
    shard: str | None = None

    # Paths of secrets written literally in the config file; None when the config did not come from a file.
    _literal_secrets: tuple[str, ...] | None = PrivateAttr(default=None)

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
        problems = _duplicate_names(self.sources, "sources") + _duplicate_names(self.exporters, "exporters")
        if problems:
            raise ValueError("\n".join(f"{path}: {msg}" for path, msg in problems))
        return self


# ─── loading ─────────────────────────────────────────────────────────────────────────────────

_VAR_RE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-)([^}]*))?\}|(\{))")


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-/]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{str(part)!r}]"
    return out


def _expand(data: Any, env: Mapping[str, str], loc: tuple[Any, ...],
            problems: list[tuple[str, str]], env_paths: set[str], failed: set[str]) -> Any:
    """Expand ``${VAR}`` in every string value of the YAML tree (keys are left alone)."""
    if isinstance(data, dict):
        return {k: _expand(v, env, (*loc, k), problems, env_paths, failed) for k, v in data.items()}
    if isinstance(data, list):
        return [_expand(v, env, (*loc, i), problems, env_paths, failed) for i, v in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data
    path = _format_loc(loc)

    def substitute(match: re.Match[str]) -> str:
        if match.group(1):            # "$$" is a literal "$"
            return "$"
        if match.group(5):            # "${" that is not a valid reference
            problems.append((path, ("invalid variable reference: write ${NAME} or ${NAME:-default} "
                                    "(NAME of letters, digits and _), or $$ for a literal $")))
            failed.add(path)
            return ""
        name = match.group(2)
        env_paths.add(path)
        value = env.get(name)
        if match.group(3):            # ${NAME:-default}: the default when unset or empty
            return value if value else match.group(4)
        if value is None:
            problems.append((path, (f"environment variable {name} is not set; set it, or write "
                                    f"${{{name}:-default}} to give a default")))
            failed.add(path)
            return ""
        return value

    return _VAR_RE.sub(substitute, data)


def _literal_secret_paths(data: Any, env_paths: set[str] | None = None) -> list[str]:
    """Paths of secret values written literally in the raw YAML tree (not through ``${VAR}``)."""
    found: list[str] = []

    def check(value: Any, loc: tuple[Any, ...]) -> None:
        if value is None or isinstance(value, (dict, list)) or value == "":
            return
        path = _format_loc(loc)
        text = str(value)
        if "${" in text or (env_paths is not None and path in env_paths):
            return
        found.append(path)

    def headers(block: Any, loc: tuple[Any, ...]) -> None:
        if isinstance(block, dict):
            for k, v in block.items():
                if isinstance(k, str) and _SENSITIVE_HEADER.search(k):
                    check(v, (*loc, k))

    if not isinstance(data, dict):
        return found
    for i, src in enumerate(data.get("sources") or []):
        if not isinstance(src, dict):
            continue
        base: tuple[Any, ...] = ("sources", i)
        auth = src.get("auth")
        if isinstance(auth, dict):
            for key in ("api_key", "bearer_token"):
                check(auth.get(key), (*base, "auth", key))
            basic = auth.get("basic")
            if isinstance(basic, dict):
                check(basic.get("password"), (*base, "auth", "basic", "password"))
        check(src.get("pseudonymize_key"), (*base, "pseudonymize_key"))
        headers(src.get("headers"), (*base, "headers"))
        url = src.get("url")
        if isinstance(url, str) and "${" not in url:
            try:
                if urllib.parse.urlsplit(url).password:
                    found.append(_format_loc((*base, "url")))
            except ValueError:
                pass
    for i, exp in enumerate(data.get("exporters") or []):
        if not isinstance(exp, dict):
            continue
        base = ("exporters", i)
        for key in ("api_key", "token"):
            check(exp.get(key), (*base, key))
        headers(exp.get("headers"), (*base, "headers"))
    return found


def _unwrap(tp: Any) -> list[Any]:
    """The concrete types inside Annotated/Optional/Union."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _unwrap(get_args(tp)[0])
    if origin is Union or type(tp).__name__ == "UnionType":
        out: list[Any] = []
        for arg in get_args(tp):
            out.extend(_unwrap(arg))
        return out
    return [tp]


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model found at ``loc`` (for "did you mean" hints)."""
    current: list[Any] = [Config]
    for part in loc:
        nxt: list[Any] = []
        for tp in current:
            origin = get_origin(tp)
            if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
                field = tp.model_fields.get(part)
                if field is not None:
                    nxt.extend(_unwrap(field.annotation))
            elif origin is list and isinstance(part, int):
                nxt.extend(_unwrap(get_args(tp)[0]))
            elif origin is dict:
                nxt.extend(_unwrap(get_args(tp)[1]))
        current = nxt
    names: list[str] = []
    for tp in current:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            names.extend(tp.model_fields)
    return names


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _problems_from(exc: ValidationError) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        value = err.get("input")
        if kind == "extra_forbidden":
            key = str(loc[-1])
            known = _fields_at(loc[:-1])
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            if close:
                message = f"unknown key {key!r} (did you mean {close[0]!r}?)"
            else:
                message = f"unknown key {key!r}; valid keys here: {', '.join(sorted(known))}"
        elif kind == "missing":
            message = "is required"
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            message = f"expected a mapping (key: value), got {_kind(value)}"
        elif kind == "list_type":
            message = f"expected a list, got {_kind(value)}"
        elif kind == "literal_error":
            expected = (err.get("ctx") or {}).get("expected", "")
            message = f"expected one of {expected}, got {value!r}"
        elif kind == "too_short" and loc == ("exporters",):
            message = "at least one exporter is required"
        else:
            message = err["msg"]
            for prefix in ("Value error, ", "Assertion failed, "):
                message = message.removeprefix(prefix)
        if kind == "value_error" and loc == () and ": " in message:
            # Config-level checks (unique names) carry their own "path: message" parts.
            for part in message.split("\n"):
                path, _, msg = part.partition(": ")
                problems.append((path, msg))
            continue
        problems.append((_format_loc(loc), message))
    return problems


def _dedupe(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(problems))


def _validate(data: Any, env: Mapping[str, str], source: str, base_dir: str | None) -> Config:
    problems: list[tuple[str, str]] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([("", f"the top level must be a mapping (sources:, exporters:, …), got {_kind(data)}")],
                          source=source)
    env_paths: set[str] = set()
    failed: set[str] = set()
    expanded = _expand(data, env, (), problems, env_paths, failed)
    problems += _duplicate_names(expanded.get("sources"), "sources")
    problems += _duplicate_names(expanded.get("exporters"), "exporters")
    try:
        cfg = Config.model_validate(expanded, context={"base_dir": base_dir})
    except ValidationError as exc:
        # A value whose variable was missing is already reported; its follow-on errors are noise.
        problems += [p for p in _problems_from(exc)
                     if not any(p[0] == f or p[0].startswith(f + ".") or p[0].startswith(f + "[") for f in failed)]
        cfg = None
    if problems or cfg is None:
        raise ConfigError(_dedupe(problems), source=source)
    cfg._literal_secrets = tuple(_literal_secret_paths(data, env_paths))
    return cfg


def load_config(path: str | None, *, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the YAML config at ``path`` (``None``: from ``OTEL_EXPORTER_OTLP_*``).

    Raises ``ConfigError`` listing every problem. ``env`` defaults to ``os.environ``.
    """
    env = os.environ if env is None else env
    if path is None:
        return config_from_env(env)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([("", f"cannot read the config file: {reason}")], source=path) from exc
    return load_config_text(text, env=env, source=path, base_dir=os.path.dirname(os.path.abspath(path)))


def load_config_text(text: str, *, env: Mapping[str, str] | None = None, source: str = "<config>",
                     base_dir: str | None = None) -> Config:
    """Like ``load_config`` for YAML already in memory."""
    env = os.environ if env is None else env
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([("", _yaml_message(exc))], source=source) from exc
    return _validate(data, env, source, base_dir)


def _yaml_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = exc.problem or "syntax error"
        context = f" ({exc.context})" if exc.context else ""
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}{context}"
    return f"invalid YAML: {exc}"


# ─── without a file: the OTEL_EXPORTER_OTLP_* variables ─────────────────────────────────────


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
        out[key] = Secret(plain) if secret and _SENSITIVE_HEADER.search(key) else plain
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

    exporter: dict[str, Any] = {"name": "otlp", "preset": "otlp"}
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
    data: dict[str, Any] = {"exporters": [exporter], "resource_attributes": resource}
    try:
        cfg = Config.model_validate(data, context={"base_dir": None})
    except ValidationError as exc:
        problems += _problems_from(exc)
        cfg = None
    if problems or cfg is None:
        raise ConfigError(_dedupe(problems), source="environment")
    return cfg


# ─── secrets in files ────────────────────────────────────────────────────────────────────────


def _all_secrets(cfg: Config) -> list[str]:
    values: list[Any] = []
    for src in cfg.sources:
        if src.auth is not None:
            values += [src.auth.api_key, src.auth.bearer_token]
            if src.auth.basic is not None:
                values.append(src.auth.basic.password)
        values.append(src.pseudonymize_key)
        values += [v for v in src.headers.values() if isinstance(v, Secret)]
    for exp in cfg.exporters:
        values += [exp.api_key, exp.token]
        values += [v for v in exp.headers.values() if isinstance(v, Secret)]
    return [v for v in values if v]


def config_has_secrets(cfg: Config) -> bool:
    """True when the config file holds a secret literally (not through ``${VAR}`` or a ``*_file``).

    For a config that did not come from a file (built in code or from the environment), True when it
    holds any secret at all.
    """
    literal = cfg._literal_secrets
    if literal is None:
        return bool(_all_secrets(cfg))
    return bool(literal)


def check_file_permissions(path: str, allow_insecure: bool = False) -> None:
    """Refuse a world-readable config file that holds literal secrets (only warn when ``allow_insecure``).

    A file that cannot be read or parsed is left to ``load_config``, which reports it properly.
    """
    try:
        mode = os.stat(path).st_mode
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return
    if os.name == "nt" or not mode & stat.S_IROTH:
        return
    literal = _literal_secret_paths(data)
    if not literal:
        return
    message = (f"the file is readable by every user of this machine and holds secrets "
               f"({', '.join(literal)}); run 'chmod 600 {path}', or write the secrets as ${{VAR}} "
               "references and pass them in the environment")
    if allow_insecure:
        log.warning("The config file %s is readable by every user of this machine and holds secrets (%s); "
                    "continuing because --allow-insecure-config-permissions was given. Run 'chmod 600 %s'.",
                    path, ", ".join(literal), path)
        return
    raise ConfigError([("", message + " (or pass --allow-insecure-config-permissions to only warn)")], source=path)
