"""Prometheus's HTTP client settings for service discovery (``http_sd_configs``, the Target Allocator).

:class:`HTTPClientConfig` takes the keys of Prometheus's ``http_config`` (prometheus/common) that
promotel supports, with Prometheus's defaults and its checks and messages, so a pasted job means the
same thing:

* ``basic_auth`` (``username``/``username_file``, ``password``/``password_file``), ``authorization``
  (``type``, default ``Bearer``; ``credentials``/``credentials_file``), and the older ``bearer_token``
  / ``bearer_token_file`` (an ``authorization`` of type Bearer). Credential files are read at every
  request, as Prometheus does, so a rotated token (a Kubernetes service-account token) is picked up;
  their content is stripped of surrounding whitespace.
* ``tls_config``: ``ca_file`` or ``ca`` (PEM text), ``cert_file``/``key_file``, ``server_name`` (sent as
  SNI and verified instead of the URL's host), ``insecure_skip_verify``, ``min_version``/``max_version``
  (``TLS10`` … ``TLS13``; minimum TLS 1.2 by default, as Prometheus). The files are read again when
  they change. Inline ``cert``/``key`` are refused: Python's ``ssl`` loads a client key only from a
  file, and promotel does not write keys to disk.
* ``follow_redirects`` (default true), ``proxy_url``; ``enable_http2`` is accepted (default true) and
  has no effect: promotel speaks HTTP/1.1.
* ``oauth2``, ``http_headers``, ``no_proxy``, ``proxy_from_environment``, ``proxy_connect_header``:
  not supported; ``oauth2`` is refused with that said, the others as unknown keys.

Secrets (passwords, credentials, tokens) are :class:`promotel.config.secrets.Secret` values: they
never print and are masked in every log line.
"""

from __future__ import annotations

import base64
import os
import ssl
from typing import Annotated, Any, Final

import httpx
from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from promotel import __version__
from promotel.config.secrets import Secret, reveal
from promotel.discovery._config import ConfigPath, SDModel
from promotel.errors import DiscoveryError
from promotel.httpcommon import safe_url

__all__ = ["USER_AGENT", "Authorization", "BasicAuth", "HTTPClientConfig", "SDHTTPClient", "TLSConfig"]

USER_AGENT: Final = f"promotel/{__version__}"
MAX_BODY_BYTES: Final = 64 * 1024 * 1024  # an SD response larger than this is refused (Prometheus has no cap)


def _to_secret(value: str) -> str:
    return Secret(reveal(value))  # reveal: a Secret given again (a copied config) must not become "***"


def _scalar(value: object) -> object:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


SecretText = Annotated[str, BeforeValidator(_scalar), AfterValidator(_to_secret)]
Text = Annotated[str, BeforeValidator(_scalar)]

_TLS_VERSIONS: Final = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                        "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


class BasicAuth(SDModel):
    username: Text = ""
    username_file: ConfigPath = ""
    password: SecretText = ""
    password_file: ConfigPath = ""


class Authorization(SDModel):
    type: Text = "Bearer"
    credentials: SecretText = ""
    credentials_file: ConfigPath = ""


class TLSConfig(SDModel):
    ca: Text = ""
    ca_file: ConfigPath = ""
    cert: Text = ""
    cert_file: ConfigPath = ""
    key: SecretText = ""
    key_file: ConfigPath = ""
    server_name: Text = ""
    insecure_skip_verify: bool = False
    min_version: Text = ""
    max_version: Text = ""

    @field_validator("min_version", "max_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value and value not in _TLS_VERSIONS:
            raise ValueError(f"unknown TLS version: {value} (one of {', '.join(_TLS_VERSIONS)})")
        return value

    @model_validator(mode="after")
    def _pairs(self) -> TLSConfig:
        # prometheus/common's TLSConfig.Validate, in its order and words.
        if self.ca and self.ca_file:
            raise ValueError("at most one of ca and ca_file must be configured")
        if self.cert and self.cert_file:
            raise ValueError("at most one of cert and cert_file must be configured")
        if self.key and self.key_file:
            raise ValueError("at most one of key and key_file must be configured")
        has_cert, has_key = bool(self.cert or self.cert_file), bool(self.key or self.key_file)
        if has_cert and not has_key:
            raise ValueError("exactly one of key or key_file must be configured when a client certificate is "
                             "configured")
        if has_key and not has_cert:
            raise ValueError("exactly one of cert or cert_file must be configured when a client key is configured")
        if self.cert or self.key:
            raise ValueError("inline cert and key are not supported by promotel (Python loads a client key only "
                             "from a file); use cert_file and key_file")
        return self

    def files(self) -> tuple[str, ...]:
        return tuple(path for path in (self.ca_file, self.cert_file, self.key_file) if path)

    def ssl_context(self) -> ssl.SSLContext:
        """The client TLS context. Raises OSError or ssl.SSLError for unreadable or invalid files."""
        ctx = ssl.create_default_context(cafile=self.ca_file or None, cadata=self.ca or None)
        ctx.minimum_version = _TLS_VERSIONS[self.min_version or "TLS12"]
        if self.max_version:
            ctx.maximum_version = _TLS_VERSIONS[self.max_version]
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


class HTTPClientConfig(SDModel):
    """Prometheus's HTTP client keys (see the module docstring). Inline in ``http_sd_configs`` entries."""

    basic_auth: BasicAuth | None = None
    authorization: Authorization | None = None
    bearer_token: SecretText = ""
    bearer_token_file: ConfigPath = ""
    oauth2: dict[str, Any] | None = None
    tls_config: TLSConfig = Field(default_factory=TLSConfig)
    follow_redirects: bool = True
    enable_http2: bool = True
    proxy_url: str | None = None

    @field_validator("oauth2")
    @classmethod
    def _no_oauth2(cls, value: object) -> object:
        if value is not None:
            raise ValueError("oauth2 is not supported by promotel; use authorization, basic_auth or bearer_token")
        return value

    @model_validator(mode="after")
    def _validate(self) -> HTTPClientConfig:
        # prometheus/common's HTTPClientConfig.Validate, in its order and words.
        basic, authz = self.basic_auth, self.authorization
        if self.bearer_token and self.bearer_token_file:
            raise ValueError("at most one of bearer_token & bearer_token_file must be configured")
        if basic is not None and (self.bearer_token or self.bearer_token_file):
            raise ValueError("at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured")
        if basic is not None and basic.username and basic.username_file:
            raise ValueError("at most one of basic_auth username, username_file & username_ref must be configured")
        if basic is not None and basic.password and basic.password_file:
            raise ValueError("at most one of basic_auth password, password_file & password_ref must be configured")
        if authz is not None:
            if self.bearer_token or self.bearer_token_file:
                raise ValueError("authorization is not compatible with bearer_token & bearer_token_file")
            if authz.credentials and authz.credentials_file:
                raise ValueError("at most one of authorization credentials & credentials_file must be configured")
            if authz.type.strip().lower() == "basic":
                raise ValueError('authorization type cannot be set to "basic", use "basic_auth" instead')
            if basic is not None:
                raise ValueError("at most one of basic_auth, oauth2 & authorization must be configured")
        return self

    def authorization_header(self) -> str | None:
        """The ``Authorization`` header value, credential files read now; None without credentials.
        Raises OSError when a credential file cannot be read."""
        if self.basic_auth is not None:
            auth = self.basic_auth
            username = _read(auth.username_file) if auth.username_file else auth.username
            password = _read(auth.password_file) if auth.password_file else reveal(auth.password)
            return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        kind, credentials, path = "Bearer", reveal(self.bearer_token), self.bearer_token_file
        if self.authorization is not None:
            kind = self.authorization.type.strip() or "Bearer"
            credentials, path = reveal(self.authorization.credentials), self.authorization.credentials_file
        if path:
            credentials = _read(path)
        elif not credentials and self.authorization is None:
            return None
        return f"{kind} {credentials.strip()}".rstrip()  # no credentials: "Bearer" alone (h11 refuses a trailing space)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read().strip()


def _file_signature(paths: tuple[str, ...]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append((path, -1, -1))
        else:
            out.append((path, st.st_mtime_ns, st.st_size))
    return tuple(out)


class SDHTTPClient:
    """GETs for a discoverer: Prometheus's client settings, a whole-request ``timeout``, a body cap.

    The httpx client is rebuilt when a TLS file changes. Errors become :class:`DiscoveryError` with a
    bounded ``kind`` (``tls``, ``auth``, ``timeout``, ``redirect``, ``too_large``, ``connect``) and a
    message without credentials."""

    def __init__(self, config: HTTPClientConfig, *, timeout: float,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.timeout = timeout
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._signature: tuple[tuple[str, int, int], ...] = ()

    async def _current_client(self) -> httpx.AsyncClient:
        tls = self.config.tls_config
        signature = _file_signature(tls.files())
        if self._client is not None and signature == self._signature:
            return self._client
        try:
            ctx = tls.ssl_context()
        except (OSError, ssl.SSLError) as exc:
            raise DiscoveryError(f"cannot set up TLS from tls_config: {exc}; check ca_file, cert_file and key_file",
                                 kind="tls") from exc
        if self._client is not None:
            await self._client.aclose()
        t = self.timeout
        self._client = httpx.AsyncClient(
            verify=ctx, follow_redirects=self.config.follow_redirects, max_redirects=10,
            proxy=self.config.proxy_url, transport=self._transport, trust_env=False,
            timeout=httpx.Timeout(t, connect=t, read=t, write=t, pool=t))
        self._signature = signature
        return self._client

    async def get(self, url: str, headers: dict[str, str]) -> httpx.Response:
        """GET ``url``; the response's body is read (``.content``, decoded). Raises DiscoveryError on
        transport errors, unreadable credential or TLS files, and bodies over the cap."""
        client = await self._current_client()
        request_headers = {"User-Agent": USER_AGENT, **headers}
        try:
            authorization = self.config.authorization_header()
        except OSError as exc:
            raise DiscoveryError(f"cannot read a credential file: {exc.strerror or exc} ({exc.filename}); check "
                                 "the path and its permissions", kind="auth") from exc
        if authorization is not None:
            request_headers["Authorization"] = authorization
        server_name = self.config.tls_config.server_name
        extensions = {"sni_hostname": server_name} if server_name else None
        shown = safe_url(url)
        try:
            async with client.stream("GET", url, headers=request_headers, extensions=extensions) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        raise DiscoveryError(f"{shown}: the response is larger than {MAX_BODY_BYTES} bytes",
                                             kind="too_large")
        except httpx.TimeoutException as exc:
            raise DiscoveryError(f"{shown}: no complete response within {self.timeout:g}s", kind="timeout") from exc
        except httpx.TooManyRedirects as exc:
            raise DiscoveryError(f"{shown}: stopped after 10 redirects", kind="redirect") from exc
        except httpx.HTTPError as exc:
            raise DiscoveryError(f"{shown}: {type(exc).__name__}: {exc}", kind="connect") from exc
        return httpx.Response(response.status_code, headers=response.headers, content=bytes(body),
                              request=response.request)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        self._client = None
