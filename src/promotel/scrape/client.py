"""The scrape stage: one HTTP GET of one target, bounded in time and size, into bytes + content type.

A ``Scraper`` is built once per source and owns its ``httpx.AsyncClient`` (connection reuse, TLS
settings, auth). ``scrape()`` returns a ``ScrapeResult`` or raises ``ScrapeError`` with a bounded
``kind`` (``dns``, ``connect``, ``tls``, ``timeout``, ``protocol``, ``http_status``, ``rate_limited``,
``too_large``, ``redirect``, ``format``) and a message that says what to do. Messages never contain
credentials: the auth header is built from ``reveal()`` at request time and never formatted.

Limits, all per source:

* time: the whole request, body included, ends at ``timeout`` (a server dribbling bytes cannot hold
  a scrape open);
* size: ``max_body_bytes`` applies to the bytes on the wire AND to the decompressed body (all gzip
  members together, inflated by ``promotel.scrape.inflater``), checked while streaming (a gzip bomb stops
  at the cap, a lying Content-Length fails early);
* rate: a ``Retry-After`` from a 429/503 is honoured through ``next_allowed_at()``; when the source's
  mapping plugin declares a request budget (``ScrapePolicy.budget``; Baseten: 6 requests in any 60 s
  per organization), a process-wide limiter keeps every (host, credential) pair within it, shared by
  all sources using that credential on that host.

The mapping's scrape policy also words the errors: the vendor's rate limit in 429 messages, how it
expects credentials (``ScrapePolicy.auth_hint``) in 401/403 messages.

Negotiation, as Prometheus 3 does it: the Accept header lists the source's ``scrape_protocols`` with
q-values (``accept_header``; the default is Prometheus 3's own header), and the answered Content-Type decides
the parser. A Content-Type that is missing, empty, unparseable (Go's ``mime.ParseMediaType``) or not an
exposition format makes Prometheus fail the scrape unless ``fallback_scrape_protocol`` is set; promotel then
parses the body as the fallback protocol, and without one keeps its older behaviour (the parser reads what it
can of the Content-Type, else guesses from the body: OpenMetrics when it ends with ``# EOF``). Either way the
target and the problem are logged once. A body in Prometheus's protobuf format is refused: promotel never
asks for it.

Proxies: ``proxy_url`` / ``no_proxy`` / ``proxy_from_environment`` and the ``HTTP_PROXY``, ``HTTPS_PROXY``,
``NO_PROXY`` variables, decided per request URL by ``promotel.httpcommon.proxy_settings`` (Go's rules: the
environment never proxies localhost or loopback addresses). One ``httpx.AsyncClient`` per proxy in use
(usually one). Errors say when the proxy, not the target, failed; a proxy's credentials are masked.

State: the only state outside a Scraper is that limiter (``_BUDGETS``), a dict of recent request
times per (host, credential hash, budget).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import logging
import os
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import httpx

from promotel import __version__
from promotel.config import SourceConfig
from promotel.config.secrets import redact, redact_all, register_secret, reveal
from promotel.errors import MappingError, ScrapeError
from promotel.httpcommon import (
    DEFAULT_SCRAPE_PROTOCOLS,
    SCRAPE_PROTOCOL_MEDIA_TYPES,
    Proxy,
    accept_header,
    parse_media_type,
    parse_retry_after,
    proxy_settings,
    safe_url,
)
from promotel.httpcommon import ssl_context as build_ssl_context
from promotel.mappings import RequestBudget, ScrapePolicy, mapping_scrape_policy
from promotel.scrape.inflater import BodyError as _BodyError
from promotel.scrape.inflater import Inflater as _Inflater

__all__ = ["ACCEPT", "BudgetSkipped", "RateBudget", "ScrapeResult", "Scraper", "_Inflater", "accept_header",
           "budget_overcommits", "build_ssl_context", "parse_retry_after"]

log = logging.getLogger("promotel.scrape")

# Prometheus 3's default Accept header (its default scrape_protocols, UTF-8 names allowed):
# application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;
# version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2
ACCEPT = accept_header(DEFAULT_SCRAPE_PROTOCOLS)
MAX_REDIRECTS = 5
_CHUNK = 64 * 1024
# The media types that name an exposition format promotel parses (Prometheus's textparse reads these two
# whatever their version parameter says), and Prometheus's protobuf format, which it does not parse.
_TEXT_MEDIA_TYPES = frozenset({"text/plain", "application/openmetrics-text"})
_PROTOBUF_MEDIA_TYPE = "application/vnd.google.protobuf"


class ScrapeResult(NamedTuple):
    body: bytes                 # decompressed
    content_type: str | None    # what decides the parser: the answered one, or the fallback protocol's
    duration_s: float
    status: int
    url: str                    # the final URL (after redirects), without credentials
    # What was wrong with the answered Content-Type (missing, empty, unparseable, not an exposition format),
    # None when it named a text format; with fallback_scrape_protocol, content_type is the fallback's.
    content_type_problem: str | None = None


class RateBudget:
    """At most ``limit`` requests in any ``window`` seconds (a sliding window of request times)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: collections.deque[float] = collections.deque(maxlen=limit)

    def next_free(self, now: float) -> float:
        """The earliest time a request may start."""
        if len(self._times) < self.limit:
            return now
        return max(now, self._times[0] + self.window)

    def reserve(self, now: float, max_wait: float) -> float | None:
        """Book the next free slot: the seconds to wait for it, or None (nothing booked) if over ``max_wait``."""
        at = self.next_free(now)
        if at - now > max_wait:
            return None
        self._times.append(at)
        return at - now


_BUDGETS: dict[tuple[str, str, int, float], RateBudget] = {}


def _budget_for(host: str, key: str, declared: RequestBudget) -> RateBudget:
    """The shared budget of one account at the vendor (Baseten: an organization): one host:port and one
    credential. Sources whose mappings declare different budgets for the same pair count separately."""
    # Keyed by a hash so the key itself is not kept in another place in memory longer than needed.
    ident = (host.lower(), hashlib.sha256(key.encode()).hexdigest()[:16], declared.requests, declared.window)
    budget = _BUDGETS.get(ident)
    if budget is None:
        budget = _BUDGETS[ident] = RateBudget(declared.requests, declared.window)
    return budget


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def budget_overcommits(sources: Sequence[SourceConfig]) -> list[str]:
    """One sentence per shared request budget that the configured ``url:`` sources exceed together.

    Sources share a budget as the scraper does (one host:port, one credential, the budget their mapping
    declares). Each needs ``window / interval`` requests per window; beyond the budget the scraper skips
    scrapes (no data for those rounds). Targets found by discovery are not known offline and not counted."""
    groups: dict[tuple[str, str, int, float], list[SourceConfig]] = {}
    budgets: dict[tuple[str, str, int, float], tuple[RequestBudget, str]] = {}
    for source in sources:
        if source.url is None:
            continue
        try:
            policy = mapping_scrape_policy(source.mapping)
        except MappingError:
            continue
        if policy.budget is None:
            continue
        url = httpx.URL(source.url)
        host = f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"
        auth = source.auth
        secrets = [reveal(s) for s in ((auth.api_key, auth.bearer_token, auth.basic.password if auth.basic else None)
                                       if auth is not None else ()) if s]
        secrets += [reveal(v) for v in source.headers.values() if v] + ([url.password] if url.password else [])
        key = (host.lower(), hashlib.sha256((secrets[0] if secrets else "").encode()).hexdigest()[:16],
               policy.budget.requests, policy.budget.window)
        groups.setdefault(key, []).append(source)
        budgets[key] = (policy.budget, policy.vendor or source.mapping)
    out: list[str] = []
    for key, members in groups.items():
        budget, vendor = budgets[key]
        needed = sum(budget.window / float(s.interval) for s in members)
        if needed > budget.requests + 1e-9:
            names = ", ".join(s.name for s in members)
            slowest = budget.window * len(members) / budget.requests
            out.append(f"sources {names} share {vendor}'s budget of {budget.describe()} on {key[0]} (the same "
                       f"credential) and together need {needed:.3g} requests per {budget.window:g} s: some scrapes "
                       f"will be skipped; give each an interval of at least {slowest:g}s"
                       if len(members) > 1 else
                       f"source {names} needs {needed:.3g} requests per {budget.window:g} s, more than {vendor}'s "
                       f"budget of {budget.describe()}: some scrapes will be skipped; use an interval of at least "
                       f"{slowest:g}s")
    return out


class BudgetSkipped(ScrapeError):
    """A scrape not made, to stay within the vendor's request budget (kind ``rate_limited``). Nothing was
    asked of the target, so nothing is known about it: the service sends no batch for it (no ``up`` = 0)."""


class Scraper:
    """Scrapes one source. Not safe for concurrent ``scrape()`` calls on one instance (one at a time).

    ``policy`` is the scrape policy of the source's mapping, looked up by name when not given (raises
    MappingError for a mapping that is not installed). ``env`` holds the proxy variables (default: the
    process environment, read once here). With a ``transport`` (tests), no proxy is used."""

    def __init__(self, source: SourceConfig, *, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.monotonic, policy: ScrapePolicy | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        if source.url is None:      # a source with discovery is scraped per target (its own SourceConfig each)
            raise ScrapeError(f"source {source.name} has no url: its targets come from discovery, and each "
                              "discovered target is scraped with the source's settings and the target's url "
                              "(promotel.discovery.sourcetargets)", kind="config")
        self.url: str = source.url
        self.source = source
        self.policy = policy if policy is not None else mapping_scrape_policy(source.mapping)
        self._clock = clock
        self._not_before = 0.0
        self._noted: set[str] = set()       # the Content-Type problems logged already (once per kind)
        try:
            self._proxies = proxy_settings(source.proxy_url, source.no_proxy, source.proxy_from_environment,
                                           os.environ if env is None else env)
        except ValueError as exc:
            raise ScrapeError(f"source {source.name}: {exc}", kind="proxy") from None
        for secret in self._proxies.secrets():
            register_secret(secret)         # from the environment too: masked in every log line
        self._secrets = self._secret_values() + list(self._proxies.secrets())
        url = httpx.URL(self.url)
        self._has_credentials = source.auth is not None or bool(source.headers) or bool(url.password)
        self._budget: RateBudget | None = None
        if self.policy.budget is not None:
            port = url.port or (443 if url.scheme == "https" else 80)
            self._budget = _budget_for(f"{url.host}:{port}", self._secrets[0] if self._secrets else "",
                                       self.policy.budget)
        try:
            verify: ssl.SSLContext = build_ssl_context(source.tls)
        except (OSError, ssl.SSLError) as exc:
            raise ScrapeError(f"cannot use the TLS files of source {source.name}: {exc}; check tls.ca_file, "
                              "tls.cert_file and tls.key_file", kind="tls") from exc
        self._extensions: dict[str, str] = {}
        if source.tls is not None and source.tls.server_name:
            self._extensions["sni_hostname"] = source.tls.server_name
        self._verify = verify
        self._transport = transport
        self._clients: dict[str | None, httpx.AsyncClient] = {}    # by proxy URL (None: direct)
        self._client, _ = self._client_for(url)
        self._headers = self._build_headers()

    def _client_for(self, url: httpx.URL) -> tuple[httpx.AsyncClient, Proxy | None]:
        """The client for a request to ``url`` and the proxy it goes through (None: direct)."""
        proxy = None if self._transport is not None else self._proxies.for_url(url.scheme, url.host, url.port)
        key = proxy.url if proxy is not None else None
        client = self._clients.get(key)
        if client is None:
            t = self.source.timeout
            client = self._clients[key] = httpx.AsyncClient(
                transport=self._transport,
                verify=self._verify,
                proxy=key,
                timeout=httpx.Timeout(t, connect=t, read=t, write=t, pool=t),
                follow_redirects=False,   # followed by hand: credentials must never leave for another host
                trust_env=False,          # proxies come from proxy_settings; netrc would change where auth goes
            )
        return client, proxy

    def _secret_values(self) -> list[str]:
        values: list[str] = []
        auth = self.source.auth
        if auth is not None:
            for s in (auth.api_key, auth.bearer_token, auth.basic.password if auth.basic else None):
                if s:
                    values.append(reveal(s))
        values += [reveal(v) for v in self.source.headers.values() if v]
        password = urllib.parse.urlsplit(self.url).password
        if password:
            values.append(password)
        return values

    def _build_headers(self) -> dict[str, str]:
        headers = {
            "Accept": accept_header(self.source.scrape_protocols),
            "Accept-Encoding": "gzip",
            "User-Agent": f"promotel/{__version__}",
            # Tells the target how long it has (Prometheus sends the same header).
            "X-Prometheus-Scrape-Timeout-Seconds": f"{self.source.timeout:g}",
        }
        headers.update({k: reveal(v) for k, v in self.source.headers.items()})
        auth = self.source.auth
        if auth is not None:
            if auth.api_key:
                headers["Authorization"] = f"Api-Key {reveal(auth.api_key)}"
            elif auth.bearer_token:
                headers["Authorization"] = f"Bearer {reveal(auth.bearer_token)}"
            elif auth.basic is not None:
                pair = f"{auth.basic.username}:{reveal(auth.basic.password)}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        return headers

    def _credential(self) -> str:
        """What the source authenticates with, in words (for messages)."""
        auth = self.source.auth
        if auth is not None and auth.api_key:
            return "API key"
        if auth is not None and auth.bearer_token:
            return "bearer token"
        return "credentials"

    def next_allowed_at(self) -> float:
        """Monotonic time before which a scrape would break a rate limit or a server's Retry-After."""
        at = self._not_before
        if self._budget is not None:
            at = max(at, self._budget.next_free(self._clock()))
        return at

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    def _error(self, message: str, kind: str, retry_after: float | None = None, *,
               cls: type[ScrapeError] = ScrapeError) -> ScrapeError:
        clean = redact_all(redact(message, self._secrets))
        err = cls(clean, kind=kind, retry_after=retry_after)
        err.target = self.source.name
        return err

    async def scrape(self) -> ScrapeResult:
        """One GET of the source. Raises ``ScrapeError``."""
        if self._budget is not None:
            # Wait for a slot of the organization's budget when it comes within one interval; beyond
            # that the scrape is skipped (another source or process is using up the budget).
            wait = self._budget.reserve(self._clock(), self.source.interval)
            if wait is None:
                retry = self._budget.next_free(self._clock()) - self._clock()
                declared = self.policy.budget
                assert declared is not None    # self._budget exists only for a declared budget
                raise self._error(f"skipped to stay within {self.policy.vendor or self.source.mapping}'s budget "
                                  f"of {declared.describe()} (another source uses the same {self._credential()}); "
                                  f"the next request is allowed in {retry:.0f}s", "rate_limited", retry,
                                  cls=BudgetSkipped)
            if wait > 0:
                await asyncio.sleep(wait)
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.source.timeout):
                return await self._fetch(start)
        except TimeoutError as exc:
            raise self._error(f"no complete answer from {safe_url(self.url)} within the timeout of "
                              f"{self.source.timeout:g}s; raise 'timeout' (below the interval) or check the "
                              "target's load", "timeout") from exc

    async def _fetch(self, start: float) -> ScrapeResult:
        url = httpx.URL(self.url)
        headers = dict(self._headers)
        for _hop in range(MAX_REDIRECTS + 1):
            client, proxy = self._client_for(url)
            request = client.build_request("GET", url, headers=headers, extensions=self._extensions)
            try:
                response = await client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise self._transport_error(exc, url, proxy) from exc
            try:
                if response.is_redirect:
                    url = self._redirect_target(response, url)
                    continue
                if not response.is_success:
                    await self._status_error(response, url, proxy)
                body = await self._read_body(response, url)
            except httpx.HTTPError as exc:
                raise self._transport_error(exc, url, proxy) from exc
            finally:
                await response.aclose()
            answered = response.headers.get("content-type")
            self._check_not_html(answered, body, url)
            content_type, problem = self._parser_content_type(answered, url)
            return ScrapeResult(body, content_type, time.perf_counter() - start, response.status_code,
                                safe_url(url), problem)
        raise self._error(f"more than {MAX_REDIRECTS} redirects starting at {safe_url(self.url)}; point "
                          "'url' at the final address", "redirect")

    def _redirect_target(self, response: httpx.Response, url: httpx.URL) -> httpx.URL:
        location = response.headers.get("location")
        if not location:
            raise self._error(f"{safe_url(url)} answered {response.status_code} without a Location header",
                              "redirect")
        target = url.join(location)
        if self._has_credentials and _origin(target) != _origin(url):
            raise self._error(f"{safe_url(url)} redirects to another origin ({target.scheme}://{target.host}"
                              f"{':' + str(target.port) if target.port else ''}); promotel does not send "
                              "credentials to another host. Set 'url' to the final address if you trust it",
                              "redirect")
        return target

    async def _status_error(self, response: httpx.Response, url: httpx.URL, proxy: Proxy | None = None) -> None:
        status = response.status_code
        where = safe_url(url)
        if proxy is not None and status == 407:
            raise self._error(proxy.auth_refused(), "proxy")
        if proxy is not None and status in (502, 504):
            # A forward proxy answers these itself when it cannot reach the target (http:// targets).
            raise self._error(f"{where} answered HTTP {status} ({response.reason_phrase}) through the proxy "
                              f"{proxy.shown} ({proxy.origin}); if the proxy answered, it could not reach the "
                              "target: check the URL and that the proxy may connect to it", "http_status")
        if status in (429, 503):
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is None and status == 429 and self.policy.budget is not None:
                retry_after = self.policy.budget.window   # a budget per window: wait for the window to pass
            if retry_after is not None:
                self._not_before = max(self._not_before, self._clock() + retry_after)
            when = f"; retrying after {retry_after:g}s as the server asked" if retry_after is not None else ""
            if status == 429:
                hint = self.policy.rate_limit_hint(self.source.mapping) or "Raise the interval"
                raise self._error(f"{where} answered HTTP 429 Too Many Requests{when}. {hint}", "rate_limited",
                                  retry_after)
            raise self._error(f"{where} answered HTTP 503 Service Unavailable{when}", "http_status", retry_after)
        if status in (401, 403):
            auth = self.source.auth
            if self.policy.auth_hint:
                hint = f"check the {self._credential()}; {self.policy.auth_hint}"
            elif auth is not None and auth.api_key:
                hint = "check the API key; promotel sends it as 'Authorization: Api-Key <key>' (auth.api_key)"
            else:
                hint = "check the credentials in 'auth' (api_key, bearer_token or basic)"
            if auth is None and not self.source.headers:
                hint = "the target needs credentials: add 'auth' (api_key, bearer_token or basic) to the source"
            raise self._error(f"{where} answered HTTP {status} ({response.reason_phrase}); {hint}", "http_status")
        if status == 404:
            raise self._error(f"{where} answered HTTP 404 Not Found; check the path (metrics are usually served "
                              "at /metrics)", "http_status")
        raise self._error(f"{where} answered HTTP {status} ({response.reason_phrase})", "http_status")

    async def _read_body(self, response: httpx.Response, url: httpx.URL) -> bytes:
        cap = self.source.max_body_bytes
        where = safe_url(url)

        def too_large(what: str) -> ScrapeError:
            return self._error(f"the body from {where} is larger than max_body_bytes ({cap} bytes{what}); "
                               "raise max_body_bytes or reduce what the target exposes", "too_large")

        length = response.headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > cap:
            raise too_large(f"; Content-Length says {int(length)}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        inflater: _Inflater | None
        if encoding in ("", "identity"):
            inflater = None
        elif encoding in ("gzip", "x-gzip", "deflate"):
            inflater = _Inflater(encoding, cap, where)
        else:
            raise self._error(f"{where} sent Content-Encoding {encoding!r}, which promotel does not decode "
                              "(it asks for gzip or identity)", "format")
        raw_size = 0
        parts: list[bytes] = []
        try:
            async for chunk in response.aiter_raw(_CHUNK):
                raw_size += len(chunk)
                if raw_size > cap:
                    raise too_large("")
                if inflater is None:
                    parts.append(chunk)
                else:
                    parts += inflater.feed(chunk)
            if inflater is not None:
                parts += inflater.finish()
        except _BodyError as exc:
            if exc.kind == "too_large":
                raise too_large(" after decompression") from None
            raise self._error(str(exc), exc.kind) from None
        return b"".join(parts)

    def _parser_content_type(self, answered: str | None, url: httpx.URL) -> tuple[str | None, str | None]:
        """The Content-Type that decides the parser, and what was wrong with the answered one (or None).

        Prometheus (textparse's extractMediaType) takes ``text/plain`` and ``application/openmetrics-text``
        whatever their parameters; anything else, and a missing or unparseable value, needs
        ``fallback_scrape_protocol`` or the scrape fails."""
        if answered is None or not answered.strip():
            kind, problem = "missing", ("sent no Content-Type" if answered is None else "sent an empty Content-Type")
        else:
            try:
                media, _ = parse_media_type(answered)
            except ValueError as exc:
                kind, problem = "unparseable", f"sent a Content-Type that cannot be parsed ({answered!r}: {exc})"
            else:
                if media in _TEXT_MEDIA_TYPES:
                    return answered, None
                if media == _PROTOBUF_MEDIA_TYPE:
                    raise self._error(f"{safe_url(url)} answered in Prometheus's protobuf format ({answered!r}), "
                                      "which promotel does not parse and did not ask for; make the target serve "
                                      "the text format (Prometheus text or OpenMetrics)", "format")
                kind, problem = "unsupported", f"sent the Content-Type {answered!r}, which is no exposition format"
        fallback = self.source.fallback_scrape_protocol
        if kind not in self._noted:
            self._noted.add(kind)
            if fallback is not None:
                log.warning("Source %s: %s %s; parsing the body as %s (fallback_scrape_protocol), as Prometheus "
                            "does.", self.source.name, safe_url(url), problem, fallback,
                            extra={"fields": {"source": self.source.name}})
            else:
                log.warning("Source %s: %s %s; promotel reads what it can of it, else guesses the format from "
                            "the body (OpenMetrics when it ends with '# EOF'). Prometheus 3 fails such a scrape "
                            "unless fallback_scrape_protocol is set: set it to choose the format.",
                            self.source.name, safe_url(url), problem,
                            extra={"fields": {"source": self.source.name}})
        if fallback is not None:
            return SCRAPE_PROTOCOL_MEDIA_TYPES[fallback], problem
        return answered, problem

    def _check_not_html(self, content_type: str | None, body: bytes, url: httpx.URL) -> None:
        if content_type and content_type.split(";")[0].strip().lower() == "text/html" \
                and body.lstrip()[:1] == b"<":
            raise self._error(f"{safe_url(url)} returned an HTML page, not Prometheus metrics; check the URL "
                              "(metrics are usually served at /metrics) and the credentials (a login page?)",
                              "format")

    def _transport_error(self, exc: httpx.HTTPError, url: httpx.URL, proxy: Proxy | None = None) -> ScrapeError:
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        causes = _causes(exc)
        if proxy is not None:
            proxied = self._proxy_error(exc, causes, proxy, f"{host}:{port}")
            if proxied is not None:
                return proxied
        if isinstance(exc, httpx.TimeoutException):
            phase = "connecting to" if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)) else "reading from"
            return self._error(f"timed out {phase} {host}:{port} after {self.source.timeout:g}s", "timeout")
        if any(isinstance(c, socket.gaierror) for c in causes) or "name or service not known" in str(exc).lower() \
                or "nodename nor servname" in str(exc).lower():
            where = ("check that name's DNS records, or the address discovery gave this target (its __address__ "
                     "after relabel_configs: `promotel targets`)") if self.source.discovers_targets \
                else "check the host name in 'url'"
            return self._error(f"DNS lookup of {host} failed; {where}", "dns")
        if any(isinstance(c, ssl.SSLCertVerificationError) for c in causes) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
            reason = next((c.verify_message for c in causes if isinstance(c, ssl.SSLCertVerificationError)
                           and c.verify_message), "certificate verify failed")
            return self._error(f"TLS certificate verification of {host}:{port} failed ({reason}); set tls.ca_file "
                               "to the CA that signed the server's certificate (or tls.server_name if it was "
                               "issued for another name)", "tls")
        if any(isinstance(c, ssl.SSLError) for c in causes):
            return self._error(f"TLS handshake with {host}:{port} failed ({exc}); check that the URL scheme "
                               "(https) matches the server and the tls settings", "tls")
        if any(isinstance(c, ConnectionRefusedError) for c in causes) or "connection refused" in str(exc).lower() \
                or "connect call failed" in str(exc).lower():
            return self._error(f"connection to {host}:{port} refused; is the target running and listening on "
                               "that port?", "connect")
        if isinstance(exc, httpx.RemoteProtocolError):
            return self._error(f"{safe_url(url)} broke the HTTP protocol ({exc}); the body may be shorter than "
                               "its Content-Length", "protocol")
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError):
            return self._error(f"cannot connect to {host}:{port} ({detail})", "connect")
        if isinstance(exc, httpx.ReadError) and url.scheme == "http":
            return self._error(f"{host}:{port} closed the connection without answering ({detail}); if the "
                               "target serves HTTPS, write https:// in 'url'", "connect")
        return self._error(f"request to {safe_url(url)} failed ({detail})", "connect")

    def _proxy_error(self, exc: httpx.HTTPError, causes: list[BaseException], proxy: Proxy,
                     target: str) -> ScrapeError | None:
        """The error when the proxy is what failed (promotel connects to the proxy only: every connect-phase
        failure is the proxy's, and CONNECT answers other than 2xx are its refusals), else None."""
        where = f"the proxy {proxy.shown} ({proxy.origin})"
        if isinstance(exc, httpx.ProxyError):
            # httpcore words a refused CONNECT "<status> <reason>".
            if str(exc).startswith("407"):
                return self._error(proxy.auth_refused(), "proxy")
            return self._error(f"{where} refused to open a tunnel to {target} ({exc}); check that the proxy "
                               "may connect to the target", "proxy")
        if isinstance(exc, httpx.ConnectTimeout):
            return self._error(f"timed out connecting to {where} after {self.source.timeout:g}s", "timeout")
        if any(isinstance(c, socket.gaierror) for c in causes):
            return self._error(f"DNS lookup of {where} failed; check the proxy's host name in {proxy.origin}",
                               "dns")
        if any(isinstance(c, ConnectionRefusedError) for c in causes) or "connection refused" in str(exc).lower() \
                or "connect call failed" in str(exc).lower():
            return self._error(f"connection to {where} refused; is the proxy running, and is {proxy.origin} "
                               "right?", "proxy")
        return None


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and its chain of causes/contexts (bounded)."""
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(out) < 10:
        out.append(current)
        current = current.__cause__ or current.__context__
    return out
