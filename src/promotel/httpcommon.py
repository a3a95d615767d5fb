"""HTTP facts shared by the scrape side, the export side and the config (one copy of each): Retry-After,
TLS contexts, URLs fit for messages, the scrape protocols and their Accept header, Content-Type parsing,
and which proxy a request goes through.

Nothing here imports httpx or promotel's config at run time: the config validates with these facts.
"""

from __future__ import annotations

import base64
import email.utils
import ipaddress
import math
import ssl
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    import httpx

    from promotel.config import TLSConfig

# A server may ask for any delay; past an hour we would rather try again and fail visibly.
MAX_RETRY_AFTER = 3600.0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).

    None when absent or unreadable; capped to ``[0, MAX_RETRY_AFTER]``.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def ssl_context(tls: TLSConfig | None) -> ssl.SSLContext:
    """The TLS context for a ``TLSConfig`` (or None: the system CAs). Raises OSError / ssl.SSLError
    for unreadable or invalid files; callers convert those into their own stage's error."""
    if tls is None:
        return ssl.create_default_context()
    ctx = ssl.create_default_context(cafile=tls.ca_file or None)
    if tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file or None)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def safe_url(url: str | httpx.URL) -> str:
    """A URL fit for logs and messages: no user-info, query or fragment (they may carry credentials)."""
    text = str(url)
    if "://" not in text:
        return text
    parts = urllib.parse.urlsplit(text)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:
        port = None
    if port:
        netloc += f":{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# ─── scrape protocols ────────────────────────────────────────────────────────────────────────
# Prometheus's names for the exposition formats it can ask for (config/config.go, ScrapeProtocol) and the
# media type each one stands for in an Accept header (ScrapeProtocolsHeaders), used as Prometheus uses them:
# ``scrape_protocols`` builds the Accept header, ``fallback_scrape_protocol`` names the format of a body
# whose Content-Type says nothing usable.

SCRAPE_PROTOCOL_MEDIA_TYPES: Final[Mapping[str, str]] = MappingProxyType({
    "PrometheusProto": "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
    "PrometheusText0.0.4": "text/plain;version=0.0.4",
    "PrometheusText1.0.0": "text/plain;version=1.0.0",
    "OpenMetricsText0.0.1": "application/openmetrics-text;version=0.0.1",
    "OpenMetricsText1.0.0": "application/openmetrics-text;version=1.0.0",
})
# promotel parses the text formats only; Prometheus's protobuf format is known (so a pasted config gets a
# precise message) but refused.
UNSUPPORTED_SCRAPE_PROTOCOLS: Final = frozenset({"PrometheusProto"})
SUPPORTED_SCRAPE_PROTOCOLS: Final = tuple(sorted(set(SCRAPE_PROTOCOL_MEDIA_TYPES) - UNSUPPORTED_SCRAPE_PROTOCOLS))
# Prometheus 3's DefaultScrapeProtocols, in its order (the order is the preference).
DEFAULT_SCRAPE_PROTOCOLS: Final = ("OpenMetricsText1.0.0", "OpenMetricsText0.0.1", "PrometheusText1.0.0",
                                   "PrometheusText0.0.4")
# The metric name escaping promotel asks for: none, UTF-8 names as they are (Prometheus 3's default,
# ``metric_name_escaping_scheme: allow-utf-8``). Only the 1.0.0 formats carry the parameter.
NAME_ESCAPING: Final = "allow-utf-8"
_ESCAPING_FORMATS: Final = frozenset({"PrometheusText1.0.0", "OpenMetricsText1.0.0"})


def accept_header(protocols: Iterable[str], escaping: str = NAME_ESCAPING) -> str:
    """The Accept header for ``protocols`` (most preferred first), built as Prometheus 3 builds it
    (scrape/scrape.go, ``acceptHeader``): each media type gets ``;q=0.N`` with N counting down from the
    number of protocols Prometheus knows plus one (6), whatever the list's length, then ``*/*`` takes the
    next weight. ``escaping=`` goes on the 1.0.0 formats only. The default protocols give exactly
    Prometheus 3's default header."""
    weight = len(SCRAPE_PROTOCOL_MEDIA_TYPES) + 1
    parts = []
    for protocol in protocols:
        value = SCRAPE_PROTOCOL_MEDIA_TYPES[protocol]
        if protocol in _ESCAPING_FORMATS:
            value += f";escaping={escaping}"
        parts.append(f"{value};q=0.{weight}")
        weight -= 1
    parts.append(f"*/*;q=0.{weight}")
    return ",".join(parts)


# RFC 2045 tokens as Go's mime package reads them (isTokenChar: printable ASCII but space and tspecials).
_TSPECIALS: Final = frozenset('()<>@,;:\\"/[]?=')


def _token(text: str) -> tuple[str, str]:
    """The token at the start of ``text`` and what follows it."""
    i = 0
    while i < len(text) and 0x20 < ord(text[i]) < 0x7F and text[i] not in _TSPECIALS:
        i += 1
    return text[:i], text[i:]


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """``type/subtype`` (lower-cased) and the parameters (keys lower-cased) of a Content-Type value, read as
    Go's ``mime.ParseMediaType`` reads it, which is how Prometheus decides that a Content-Type "cannot be
    parsed" (and uses ``fallback_scrape_protocol``). Raises ValueError saying what is wrong.

    As in Go: a bare type without ``/subtype`` is accepted; parameter values are tokens or quoted strings; a
    trailing ``;`` is ignored; a repeated parameter is an error. (RFC 2231 continuations are not decoded:
    no exposition format has such parameters.)"""
    base, _, _ = value.partition(";")
    media = base.strip().lower()
    kind, rest = _token(media)
    if not kind:
        raise ValueError("no media type")
    if rest:
        if not rest.startswith("/"):
            raise ValueError("expected a slash after the media type")
        sub, rest = _token(rest[1:])
        if not sub:
            raise ValueError("expected a subtype after the slash")
        if rest:
            raise ValueError(f"unexpected {rest!r} after the media subtype")
    params: dict[str, str] = {}
    text = value[len(base):]
    while text.strip():
        text = text.lstrip()
        if not text.startswith(";"):
            raise ValueError(f"expected ';' before {text[:20]!r}")
        text = text[1:].lstrip()
        if not text:
            break                                  # a trailing semicolon
        key, text = _token(text)
        text = text.lstrip()
        if not key or not text.startswith("="):
            raise ValueError("a parameter is not written key=value")
        text = text[1:].lstrip()
        if text.startswith('"'):
            chars: list[str] = []
            i = 1
            while i < len(text) and text[i] != '"':
                if text[i] == "\\" and i + 1 < len(text):
                    i += 1
                chars.append(text[i])
                i += 1
            if i >= len(text):
                raise ValueError("a quoted parameter value is not closed")
            param, text = "".join(chars), text[i + 1:]
        else:
            param, text = _token(text)
            if not param:
                raise ValueError(f"parameter {key!r} has no value")
        key = key.lower()
        if key in params:
            raise ValueError(f"parameter {key!r} is given twice")
        params[key] = param
    return media, params


# ─── proxies ─────────────────────────────────────────────────────────────────────────────────
# Which proxy a request goes through, decided the way Prometheus and the OpenTelemetry Collector decide it
# (Go: net/http's ProxyURL for a configured proxy_url, golang.org/x/net/http/httpproxy for the environment
# and for proxy_url with no_proxy), so that one environment means the same thing to all of them.


class Proxy(NamedTuple):
    """A proxy to go through. ``url`` may hold credentials: never put it in a message, use ``shown``."""

    url: str
    origin: str          # where it was configured, for messages: "proxy_url", "the HTTPS_PROXY variable"

    @property
    def shown(self) -> str:
        """The proxy as messages show it: scheme, host and port, no user or password."""
        return safe_url(self.url)

    def __repr__(self) -> str:
        return f"Proxy({self.shown!r}, {self.origin!r})"       # never the credentials

    def auth_refused(self) -> str:
        """The message for a 407 from this proxy (the same words for the scraper and every sender)."""
        return (f"the proxy {self.shown} ({self.origin}) answered 407 Proxy Authentication Required; check the "
                f"user and password in {self.origin} (written http://USER:PASSWORD@host:port)")

    def secrets(self) -> tuple[str, ...]:
        """The credentials in the URL as written and as sent (percent-decoded), to register for masking."""
        parts = urllib.parse.urlsplit(self.url)
        raw = parts.netloc.rpartition("@")[0]
        if not raw:
            return ()
        user, _, password = raw.partition(":")
        found = {password, urllib.parse.unquote(password)} if password else set()
        if found:
            pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
            found.add(base64.b64encode(pair.encode()).decode("ascii"))   # the Proxy-Authorization value
        return tuple(sorted(s for s in found if s))


def proxy_from_url(value: str, origin: str, *, lenient: bool = False) -> Proxy:
    """A ``Proxy`` for ``value``; raises ValueError (its text never shows the password).

    ``lenient`` (environment variables): a value without a scheme is taken as ``http://`` (Go's httpproxy
    does the same; ``HTTPS_PROXY=proxy:3128`` is common). Only http:// and https:// proxies are supported."""
    text = value.strip()
    if lenient and "://" not in text:
        text = "http://" + text
    shown = repr(safe_url(text) if "://" in text else text.rpartition("@")[2])    # never the user-info
    try:
        parts = urllib.parse.urlsplit(text)
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"{shown} is not a valid proxy URL ({exc}); write it like http://proxy.example:3128") \
            from None
    scheme = parts.scheme.lower()
    if scheme.startswith("socks"):
        raise ValueError(f"{shown}: promotel does not support SOCKS proxies; use an http:// or https:// proxy")
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// proxy URL such as http://proxy.example:3128, got {shown}")
    return Proxy(text, origin)


class _NoProxyEntry(NamedTuple):
    """One NO_PROXY entry as httpproxy reads it: a CIDR block, an IP address or a domain, with an optional port."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    domain: str                 # ".example.com": that suffix; match_host: example.com itself as well
    match_host: bool
    port: str                   # "" = any port


def _no_proxy_entries(value: str) -> tuple[_NoProxyEntry, ...] | None:
    """The entries of a NO_PROXY list; None when it is ``*`` (no proxy for anything). Malformed entries
    are skipped, as httpproxy skips them."""
    entries: list[_NoProxyEntry] = []
    for item in value.split(","):
        p = item.strip().lower()
        if not p:
            continue
        if p == "*":
            return None
        try:
            entries.append(_NoProxyEntry(ipaddress.ip_network(p, strict=False), None, "", False, "")
                           if "/" in p else _no_proxy_host(p))
        except ValueError:
            continue
    return tuple(entries)


def _no_proxy_host(p: str) -> _NoProxyEntry:
    host, port = p, ""
    if p.startswith("["):                                  # [IPv6]:port or [IPv6]
        host, _, rest = p[1:].partition("]")
        port = rest.removeprefix(":")
    elif p.count(":") == 1:                                # host:port (several colons: a bare IPv6 address)
        host, port = p.split(":")
    if not host:
        raise ValueError("no host")
    try:
        return _NoProxyEntry(None, ipaddress.ip_address(host), "", False, port)
    except ValueError:
        pass
    if host.startswith("*."):
        host = host[1:]
    match_host = not host.startswith(".")
    return _NoProxyEntry(None, None, host if host.startswith(".") else "." + host, match_host, port)


def _bypassed(entries: tuple[_NoProxyEntry, ...], host: str, port: str) -> bool:
    """httpproxy's useProxy, negated: localhost and loopback addresses never go through a proxy, nor hosts
    that NO_PROXY lists (``example.com`` also covers its subdomains, ``.example.com`` only them)."""
    if host == "localhost":
        return True
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and ip.is_loopback:
        return True
    for e in entries:
        if ip is not None and e.network is not None and ip in e.network:
            return True
        if ip is not None and e.ip is not None and ip == e.ip and e.port in ("", port):
            return True
        if e.domain and (host.endswith(e.domain) or (e.match_host and host == e.domain[1:])) \
                and e.port in ("", port):
            return True
    return False


def _env(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first of ``names`` set to a non-empty value: (name, value)."""
    for name in names:
        value = env.get(name, "")
        if value.strip():
            return name, value
    return None


class ProxySettings(NamedTuple):
    """Where a client's requests go: ``http``/``https`` is the proxy for each URL scheme (None: direct).

    ``bypass`` None means a configured ``proxy_url`` alone (net/http's ProxyURL: every request, loopback
    included); a tuple means httpproxy's rules (the environment, or ``proxy_url`` with ``no_proxy``):
    localhost, loopback addresses and the NO_PROXY entries go direct."""

    http: Proxy | None = None
    https: Proxy | None = None
    bypass: tuple[_NoProxyEntry, ...] | None = ()
    bypass_all: bool = False            # NO_PROXY=*

    def for_url(self, scheme: str, host: str, port: int | None) -> Proxy | None:
        """The proxy for a request to ``scheme://host:port`` (host without brackets), or None."""
        scheme = scheme.lower()
        proxy = self.https if scheme == "https" else self.http if scheme == "http" else None
        if proxy is None:
            return None
        if self.bypass is None:
            return proxy
        if self.bypass_all:
            return None
        default = 443 if scheme == "https" else 80
        return None if _bypassed(self.bypass, host.lower().rstrip("."), str(port or default)) else proxy

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for p in {self.http, self.https} if p is not None for s in p.secrets())


NO_PROXY_SETTINGS: Final = ProxySettings()


def proxy_settings(proxy_url: str | None, no_proxy: str | None, from_environment: bool | None,
                   env: Mapping[str, str], *, grpc: bool = False) -> ProxySettings:
    """The proxies of one client from its ``proxy_url``, ``no_proxy`` and ``proxy_from_environment`` keys
    (Prometheus's names and rules) and the environment. Raises ValueError for a proxy URL it cannot use.

    * ``proxy_url`` set: every request goes through it; with ``no_proxy``, the hosts listed there, localhost
      and loopback addresses go direct.
    * else, unless ``proxy_from_environment`` is false: ``HTTP_PROXY``/``HTTPS_PROXY`` by the request's
      scheme, ``NO_PROXY`` (upper case first, then lower case, as Go reads them; an empty value is unset).
      Prometheus reads the environment only with ``proxy_from_environment: true``; promotel reads it by
      default, as the Collector, curl and most HTTP clients do, and ``proxy_from_environment: false`` turns
      that off.
    * ``grpc``: the variables gRPC's C core reads, in its order (``grpc_proxy``, then ``https_proxy``, then
      ``http_proxy``; ``no_grpc_proxy``, then ``no_proxy``), each also in upper case; a gRPC connection
      is tunnelled with CONNECT whatever its scheme, so the one proxy applies to ``https``.
    """
    if proxy_url:
        proxy = proxy_from_url(proxy_url, "proxy_url")
        if no_proxy and no_proxy.strip():
            entries = _no_proxy_entries(no_proxy)
            return ProxySettings(proxy, proxy, entries or (), entries is None)
        return ProxySettings(proxy, proxy, None)
    if from_environment is False:
        return NO_PROXY_SETTINGS
    if grpc:
        found = _env(env, "grpc_proxy", "GRPC_PROXY", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
        https = proxy_from_url(found[1], f"the {found[0]} variable", lenient=True) if found else None
        http = None
        skip = _env(env, "no_grpc_proxy", "NO_GRPC_PROXY", "NO_PROXY", "no_proxy")
    else:
        found_http = _env(env, "HTTP_PROXY", "http_proxy")
        found_https = _env(env, "HTTPS_PROXY", "https_proxy")
        http = proxy_from_url(found_http[1], f"the {found_http[0]} variable", lenient=True) if found_http else None
        https = proxy_from_url(found_https[1], f"the {found_https[0]} variable", lenient=True) \
            if found_https else None
        skip = _env(env, "NO_PROXY", "no_proxy")
    if http is None and https is None:
        return NO_PROXY_SETTINGS
    entries = _no_proxy_entries(skip[1]) if skip else ()
    return ProxySettings(http, https, entries or (), entries is None)
