"""``http_sd_configs``: target groups fetched from an HTTP endpoint (Prometheus's HTTP SD).

Prometheus's HTTP SD (``discovery/http``):

* ``url`` (http or https, with a host), ``refresh_interval`` (default ``1m``), and Prometheus's HTTP
  client keys inline (:class:`promotel.discovery.httpconfig.HTTPClientConfig`: ``basic_auth``,
  ``authorization``, ``bearer_token``, ``tls_config``, ``follow_redirects``, ``proxy_url``, ...).
* Every refresh is one ``GET`` with ``Accept: application/json`` and
  ``X-Prometheus-Refresh-Interval-Seconds`` (the refresh interval, so a server can tell how stale
  its clients may be), bounded by the refresh interval as a whole.
* The answer must be status 200 with ``Content-Type: application/json`` (optionally
  ``; charset=utf-8``) and a JSON list of ``{"targets": [...], "labels": {...}}`` groups
  (:func:`promotel.discovery.targets.parse_target_groups`). Each group gets ``__meta_url`` (the URL
  as configured) and the source ``<url>:<index>``.
* Anything else (a transport error, another status, another content type, a body that is not the
  format) fails the refresh: the last good list stays in use and the failure is reported by the
  discovery manager. An empty list ``[]`` is a valid answer: no targets.

The OpenTelemetry Operator's Target Allocator serves this format per job and collector:
:mod:`promotel.discovery.targetallocator`.
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from typing import Final

import httpx
from pydantic import Field, field_validator

from promotel.config.secrets import register_secret
from promotel.discovery._config import PromDuration
from promotel.discovery.file_sd import decode_groups
from promotel.discovery.httpconfig import HTTPClientConfig, SDHTTPClient
from promotel.discovery.targets import Refresh, TargetGroup
from promotel.errors import DiscoveryError
from promotel.httpcommon import safe_url

__all__ = ["HTTPDiscoverer", "HTTPSDConfig", "refresh_interval_header"]

DEFAULT_REFRESH_INTERVAL: Final = 60.0
META_URL: Final = "__meta_url"

# Prometheus's check of the answer's Content-Type (after trimming spaces); \s is Go's ASCII whitespace.
_CONTENT_TYPE: Final = re.compile(r'application/json(;[\t\n\f\r ]*charset=("utf-8"|utf-8))?', re.IGNORECASE)


class HTTPSDConfig(HTTPClientConfig):
    url: str = Field(default="", validate_default=True)
    refresh_interval: PromDuration = DEFAULT_REFRESH_INTERVAL

    @field_validator("url", mode="before")
    @classmethod
    def _null(cls, value: object) -> object:
        return "" if value is None else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # Prometheus's checks, in its order and words.
        if value == "":
            raise ValueError("URL is missing")
        try:
            parts = urllib.parse.urlsplit(value)
            password = parts.password
        except ValueError as exc:
            raise ValueError(f"invalid URL: {exc}") from None
        register_secret(password)  # credentials in the URL are masked like any other secret
        if parts.scheme not in ("http", "https"):
            raise ValueError("URL scheme must be 'http' or 'https'")
        if not parts.netloc.rpartition("@")[2]:
            raise ValueError("host is missing in URL")
        return value


def refresh_interval_header(seconds: float) -> str:
    """The header value as Go's ``strconv.FormatFloat(s, 'f', -1, 64)`` writes it: ``60``, ``0.5``."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")  # durations are whole milliseconds
    return text or "0"


class HTTPDiscoverer:
    """Fetches the groups of one ``http_sd_configs`` entry; see the module docstring."""

    mechanism = "http"

    def __init__(self, config: HTTPSDConfig, name: str = "http_sd_configs[0]", *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.name = name
        self.config = config
        self.refresh_interval = config.refresh_interval
        self._client = SDHTTPClient(config, timeout=config.refresh_interval, transport=transport)

    async def refresh(self) -> Refresh:
        url = self.config.url
        shown = safe_url(url)
        response = await self._client.get(url, {
            "Accept": "application/json",
            "X-Prometheus-Refresh-Interval-Seconds": refresh_interval_header(self.refresh_interval),
        })
        if response.status_code != 200:
            raise DiscoveryError(f"{shown}: server returned HTTP status {response.status_code} "
                                 f"{response.reason_phrase}".rstrip(), kind="http_status")
        content_type = response.headers.get("content-type", "")
        if not _CONTENT_TYPE.fullmatch(content_type.strip()):
            raise DiscoveryError(f'{shown}: unsupported content type "{content_type}" (HTTP SD answers '
                                 "application/json)", kind="format")
        try:
            groups = await asyncio.to_thread(decode_groups, response.content, "json")
        except ValueError as exc:
            raise DiscoveryError(f"{shown}: the answer is not a list of target groups: {exc}", kind="format") from None
        return Refresh(tuple(TargetGroup.of(targets, {**labels, META_URL: url}, f"{url}:{index}")
                             for index, (targets, labels) in enumerate(groups)))

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def aclose(self) -> None:
        await self._client.aclose()
