"""The keys of promotel's HTTP clients, as sections and field types: TLS, request headers and proxies (for
both sources, which scrape, and exporters, which push OTLP), and for sources the credential and the
exposition formats to ask for.

The names and meanings are Prometheus's (``tls_config``'s keys, ``scrape_protocols``,
``fallback_scrape_protocol``, ``proxy_url``, ``no_proxy``, ``proxy_from_environment``) except ``auth``,
promotel's one section for a credential. Files these sections name are read at load time, relative to the
config file's directory: credentials into the plain field as Secrets, TLS files only checked for being
readable (the clients load them). Headers whose name looks like a credential become Secrets too.
The sections that hold these keys are ``promotel.config.schema``'s ``SourceConfig`` and ``ExporterConfig``;
turning them into a client is ``promotel.httpcommon``.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, ValidationInfo, field_validator, model_validator

from promotel.config.fields import SecretText, Text, _Model
from promotel.config.secrets import Secret, register_secret
from promotel.httpcommon import (
    DEFAULT_SCRAPE_PROTOCOLS,
    SCRAPE_PROTOCOL_MEDIA_TYPES,
    SUPPORTED_SCRAPE_PROTOCOLS,
    UNSUPPORTED_SCRAPE_PROTOCOLS,
    proxy_from_url,
)

__all__ = [
    "SENSITIVE_HEADER",
    "AuthConfig",
    "BasicAuthConfig",
    "Headers",
    "ProxyURL",
    "ScrapeProtocol",
    "ScrapeProtocols",
    "TLSConfig",
]

# Header names whose values are credentials: they become Secrets (masked in logs and output).
SENSITIVE_HEADER = re.compile(r"auth|key|token|secret|passw|cookie|credential|honeycomb-team", re.IGNORECASE)


def _headers(value: dict[str, str]) -> dict[str, str]:
    """Header values whose name looks like a credential become Secrets."""
    return {k: Secret(v) if SENSITIVE_HEADER.search(k) else v for k, v in value.items()}


Headers = Annotated[dict[str, Text], AfterValidator(_headers)]


def _resolve_file(value: str, info: ValidationInfo) -> str:
    """A file named in the config: relative paths are relative to the config file's directory."""
    base = info.context.get("base_dir") if isinstance(info.context, dict) else None
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


# ─── scrape protocols and proxies (Prometheus's keys, same names and meaning) ──────────────────


def _scrape_protocol(value: str) -> str:
    """One of Prometheus's scrape protocol names (case-sensitive, as in Prometheus)."""
    if value in UNSUPPORTED_SCRAPE_PROTOCOLS:
        raise ValueError(f"{value} (Prometheus's protobuf format) is not supported: promotel parses the text "
                         "formats only; remove it (exporters that offer protobuf offer the text formats too)")
    if value not in SCRAPE_PROTOCOL_MEDIA_TYPES:
        close = difflib.get_close_matches(value, SUPPORTED_SCRAPE_PROTOCOLS, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown scrape protocol {value!r}{hint}; supported: "
                         f"{', '.join(SUPPORTED_SCRAPE_PROTOCOLS)} (Prometheus's names, case-sensitive)")
    return value


ScrapeProtocol = Annotated[str, AfterValidator(_scrape_protocol)]


def _protocol_list(value: object) -> object:
    if isinstance(value, str):     # YAML "scrape_protocols: X": pydantic would say "a valid tuple"
        raise ValueError(f"expected a list, such as [{value}], got a string")
    return value


def _scrape_protocols(value: tuple[str, ...]) -> tuple[str, ...]:
    # Prometheus's validateAcceptScrapeProtocols: not empty, no protocol twice.
    if not value:
        raise ValueError(f"must not be empty; remove the key for the default ({', '.join(DEFAULT_SCRAPE_PROTOCOLS)})")
    seen: set[str] = set()
    for protocol in value:
        if protocol.lower() in seen:
            raise ValueError(f"{protocol} is listed twice; list each protocol once, most preferred first")
        seen.add(protocol.lower())
    return value


# A source's ``scrape_protocols``: most preferred first (its Accept header), each a known text format.
ScrapeProtocols = Annotated[tuple[ScrapeProtocol, ...], BeforeValidator(_protocol_list),
                            AfterValidator(_scrape_protocols)]


def _proxy_url(value: str) -> str:
    try:
        proxy = proxy_from_url(value, "proxy_url")
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    for secret in proxy.secrets():
        register_secret(secret)     # a password in the proxy URL is masked like any other secret
    return value


ProxyURL = Annotated[str, AfterValidator(_proxy_url)]


def _proxy_keys_problem(proxy_url: str | None, no_proxy: str | None, from_environment: bool | None) -> str | None:
    """prometheus/common's ProxyConfig rules, in its words, for the keys given."""
    if from_environment and proxy_url:
        return ("if proxy_from_environment is configured, proxy_url must not be configured; keep one of them "
                "(without either, promotel reads HTTP_PROXY, HTTPS_PROXY and NO_PROXY)")
    if from_environment and no_proxy:
        return ("if proxy_from_environment is configured, no_proxy must not be configured; list the hosts in "
                "the NO_PROXY variable instead")
    if no_proxy and not proxy_url:
        return "if no_proxy is configured, proxy_url must also be configured"
    return None


class _ProxyChecks(_Model):
    """The proxy keys' rules as field validators, so that each problem names its key (the base of the models
    that have ``proxy_url``, ``no_proxy`` and ``proxy_from_environment``, declared in that order)."""

    @field_validator("no_proxy", check_fields=False)
    @classmethod
    def _no_proxy_needs_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if "proxy_url" in info.data:      # absent: proxy_url is invalid, and that is the problem to report
            problem = _proxy_keys_problem(info.data["proxy_url"], value, None)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("proxy_from_environment", check_fields=False)
    @classmethod
    def _environment_alone(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        problem = _proxy_keys_problem(info.data.get("proxy_url"), info.data.get("no_proxy"), value)
        if problem:
            raise ValueError(problem)
        return value


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
        given = [name for name, value in (("api_key", self.api_key), ("api_key_file", self.api_key_file),
                                          ("bearer_token", self.bearer_token),
                                          ("bearer_token_file", self.bearer_token_file), ("basic", self.basic))
                 if value is not None]
        if len(given) != 1:
            got = " and ".join(given) if given else "none"
            raise ValueError("give exactly one of api_key, api_key_file, bearer_token, bearer_token_file, "
                             f"basic (got {got})")
        if self.api_key_file is not None:
            object.__setattr__(self, "api_key", _read_secret_file(self.api_key_file))
        if self.bearer_token_file is not None:
            object.__setattr__(self, "bearer_token", _read_secret_file(self.bearer_token_file))
        return self
