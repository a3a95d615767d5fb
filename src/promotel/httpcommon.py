"""HTTP facts shared by the scrape side and the export side (one copy of each)."""

from __future__ import annotations

import email.utils
import math
import ssl
import time
import urllib.parse
from typing import TYPE_CHECKING

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
