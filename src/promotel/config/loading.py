"""Reading a config file: YAML, ``${VAR}`` expansion, validation that reports every problem at once.

Loading goes: read the file → ``yaml.safe_load`` → expand ``${VAR}`` / ``${VAR:-default}`` in every
string value (``$$`` is a literal ``$``; not inside a source's ``relabel_configs`` and
``metric_relabel_configs``, whose ``$1``, ``${1}`` and ``${name}`` are capture references, and which
Prometheus never expands either) → validate the models of ``promotel.config.schema`` → ``Config``.
Every problem found on the way, the exporters' preset rules (``promotel.export.presets``) included, is
collected and raised together as one ``ConfigError`` whose ``problems`` are ``(path, message)`` pairs,
with paths such as ``sources[1].interval`` or ``exporters[0].protocol``. A config without sources is
invalid: the bridge would have nothing to do. YAML syntax errors are explained in plain words
(``promotel.config.yaml_errors``) and located as ``FILE:LINE:COLUMN``. Without a ``state_dir`` key the
``PROMOTEL_STATE_DIR`` variable gives it (the systemd unit and the container image set it). A valid
config that sets a deprecated key (``schema.DEPRECATED``) loads, with one warning per key saying why it
has no effect.

Secrets become ``promotel.config.secrets.Secret`` values: they print as ``***`` and are masked in every
log line. A file that holds a secret literally (not through ``${VAR}``) must not be world-readable:
``check_file_permissions`` refuses it.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import urllib.parse
from collections.abc import Mapping

import yaml
from pydantic import ValidationError

from promotel.config.environment import config_from_env, default_state_dir
from promotel.config.problems import (
    Loc,
    dedupe,
    format_loc,
    kind_of,
    preset_problems_of,
    problems_from,
    self_telemetry_problems,
)
from promotel.config.schema import SENSITIVE_HEADER, Config, deprecated_settings, duplicate_names
from promotel.config.secrets import Secret
from promotel.config.yaml_errors import explain_yaml_error
from promotel.errors import ConfigError

__all__ = ["check_file_permissions", "config_has_secrets", "load_config", "load_config_text"]

log = logging.getLogger("promotel.config")

# Relabel rules are taken as written: ``$1``/``${1}``/``${name}`` there are regex capture references.
_NOT_EXPANDED = frozenset({"relabel_configs", "metric_relabel_configs"})
_VAR_RE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-)([^}]*))?\}|(\{))")


def _expand(data: object, env: Mapping[str, str], loc: Loc,
            problems: list[tuple[str, str]], env_paths: set[str], failed: set[str]) -> object:
    """Expand ``${VAR}`` in every string value of the YAML tree (keys are left alone), except in relabel
    rules (the values of a source's ``relabel_configs`` and ``metric_relabel_configs``)."""
    if isinstance(data, dict):
        return {k: v if k in _NOT_EXPANDED and len(loc) == 2 and loc[0] == "sources"
                else _expand(v, env, (*loc, k), problems, env_paths, failed) for k, v in data.items()}
    if isinstance(data, list):
        return [_expand(v, env, (*loc, i), problems, env_paths, failed) for i, v in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data
    path = format_loc(loc)

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


def _literal_secret_paths(data: object, env_paths: set[str] | None = None) -> list[str]:
    """Paths of secret values written literally in the raw YAML tree (not through ``${VAR}``)."""
    found: list[str] = []

    def check(value: object, loc: Loc) -> None:
        if value is None or isinstance(value, (dict, list)) or value == "":
            return
        path = format_loc(loc)
        text = str(value)
        if "${" in text or (env_paths is not None and path in env_paths):
            return
        found.append(path)

    def url_password(url: object, loc: Loc) -> None:
        if isinstance(url, str) and "${" not in url:
            try:
                if urllib.parse.urlsplit(url).password:
                    found.append(format_loc(loc))
            except ValueError:
                pass

    def headers(block: object, loc: Loc) -> None:
        if isinstance(block, dict):
            for k, v in block.items():
                if isinstance(k, str) and SENSITIVE_HEADER.search(k):
                    check(v, (*loc, k))

    if not isinstance(data, dict):
        return found
    for i, src in enumerate(data.get("sources") or []):
        if not isinstance(src, dict):
            continue
        base: Loc = ("sources", i)
        auth = src.get("auth")
        if isinstance(auth, dict):
            for key in ("api_key", "bearer_token"):
                check(auth.get(key), (*base, "auth", key))
            basic = auth.get("basic")
            if isinstance(basic, dict):
                check(basic.get("password"), (*base, "auth", "basic", "password"))
        check(src.get("pseudonymize_key"), (*base, "pseudonymize_key"))
        headers(src.get("headers"), (*base, "headers"))
        url_password(src.get("url"), (*base, "url"))
        url_password(src.get("proxy_url"), (*base, "proxy_url"))
    for i, exp in enumerate(data.get("exporters") or []):
        if not isinstance(exp, dict):
            continue
        base = ("exporters", i)
        for key in ("api_key", "token"):
            check(exp.get(key), (*base, key))
        headers(exp.get("headers"), (*base, "headers"))
        url_password(exp.get("proxy_url"), (*base, "proxy_url"))
    return found


def _names(section: object) -> list[object]:
    """The ``name`` of each entry of a raw ``sources``/``exporters`` list (None where there is none)."""
    if not isinstance(section, list):
        return []
    return [item.get("name") if isinstance(item, dict) else None for item in section]


def _validate(data: object, env: Mapping[str, str], source: str, base_dir: str | None) -> Config:
    problems: list[tuple[str, str]] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([("", f"the top level must be a mapping (sources:, exporters:, …), got {kind_of(data)}")],
                          source=source)
    env_paths: set[str] = set()
    failed: set[str] = set()
    expanded = _expand(data, env, (), problems, env_paths, failed)
    assert isinstance(expanded, dict)    # _expand keeps the shape of the tree
    problems += duplicate_names(_names(expanded.get("sources")), "sources")
    problems += duplicate_names(_names(expanded.get("exporters")), "exporters")
    default_state_dir(expanded, env)
    cfg: Config | None
    try:
        cfg = Config.model_validate(expanded, context={"base_dir": base_dir})
    except ValidationError as exc:
        # A value whose variable was missing is already reported; its follow-on errors are noise.
        problems += [p for p in problems_from(exc)
                     if not any(p[0] == f or p[0].startswith(f + ".") or p[0].startswith(f + "[") for f in failed)]
        cfg = None
    problems += preset_problems_of(expanded.get("exporters"), cfg, problems, base_dir)
    problems += self_telemetry_problems(expanded.get("self_telemetry"), problems)
    if problems or cfg is None:
        raise ConfigError(dedupe(problems), source=source)
    cfg._literal_secrets = tuple(_literal_secret_paths(data, env_paths))
    _warn_deprecated(cfg, source)
    return cfg


def _warn_deprecated(cfg: Config, source: str) -> None:
    """One warning per deprecated key the config sets, naming every place it is set."""
    by_message: dict[str, list[str]] = {}
    for path, message in deprecated_settings(cfg):
        by_message.setdefault(message, []).append(path)
    for message, paths in by_message.items():
        log.warning("The config %s sets %s, which %s.", source, ", ".join(paths), message)


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
        # The message starts with FILE:LINE:COLUMN (what editors and terminals link), so the error
        # carries no separate source: it would print the file name twice.
        raise ConfigError([("", explain_yaml_error(exc, text, source))]) from exc
    return _validate(data, env, source, base_dir)


# ─── secrets in files ────────────────────────────────────────────────────────────────────────


def _all_secrets(cfg: Config) -> list[str]:
    values: list[str | None] = []
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
