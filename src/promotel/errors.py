"""The one exception tree of promotel.

Every error the package raises on purpose is a ``PromotelError``. Errors from libraries
(httpx, grpc, sqlite3, pydantic, yaml) are converted once, at the boundary of the stage that
calls them, with ``raise ... from exc`` so the cause stays visible::

    PromotelError
    ├── ExpositionError      invalid exposition text (parse stage); carries .line
    ├── ConfigError          invalid configuration; carries every problem at once (.problems)
    ├── MappingError         unknown mapping plugin or an invalid mapping table / override
    ├── ScrapeError          a scrape failed (network, HTTP status, size cap, format); carries .kind
    ├── DiscoveryError       service discovery failed (a file, a DNS name, an HTTP SD endpoint); carries .kind
    ├── ExportError          a send failed; .retryable tells the queue whether to try again
    └── StateError           the state directory (SQLite delta state, spool) is unusable

Messages are full sentences that say what went wrong, where, and what to do about it. They never
contain secrets: whoever builds a message from user data runs it through ``redact`` first.
"""

from __future__ import annotations

from collections.abc import Sequence


class PromotelError(Exception):
    """Base class of every error promotel raises on purpose."""


class ExpositionError(PromotelError, ValueError):
    """The exposition text is invalid. ``line`` is 1-based (0 when no single line is to blame)."""

    def __init__(self, message: str, line: int = 0) -> None:
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


class ConfigError(PromotelError):
    """The configuration is invalid. ``problems`` holds ``(path, message)`` pairs, all of them."""

    def __init__(self, problems: Sequence[tuple[str, str]], source: str = "") -> None:
        self.problems = tuple(problems)
        self.source = source
        where = f"{source}: " if source else ""
        lines = [f"{where}{path}: {msg}" if path else f"{where}{msg}" for path, msg in self.problems]
        super().__init__("\n".join(lines) if lines else f"{where}invalid configuration")


class MappingError(PromotelError):
    """A mapping plugin is unknown, failed to load, or a mapping override is invalid."""


class ScrapeError(PromotelError):
    """A scrape of one target failed. ``kind`` is a short, bounded label for counting
    (``connect``, ``timeout``, ``http_status``, ``too_large``, ``format``, ``rate_limited``, ...)."""

    def __init__(self, message: str, *, target: str = "", kind: str = "error",
                 retry_after: float | None = None) -> None:
        self.target = target
        self.kind = kind
        self.retry_after = retry_after
        super().__init__(f"{target}: {message}" if target else message)


class DiscoveryError(PromotelError):
    """Service discovery failed for one mechanism (an SD file, a DNS name, an HTTP SD endpoint). The
    last good target list stays in use. ``kind`` is short and bounded (``read``, ``format``, ``dns``,
    ``http_status``, ``timeout``, ...); ``discoverer`` names the config entry (``file_sd_configs[0]``)."""

    def __init__(self, message: str, *, discoverer: str = "", kind: str = "error") -> None:
        self.discoverer = discoverer
        self.kind = kind
        super().__init__(f"{discoverer}: {message}" if discoverer else message)


class ExportError(PromotelError):
    """Sending to one exporter failed. ``retryable`` follows the OTLP spec's retry rules;
    ``retry_after`` is the server's throttling hint in seconds, when it gave one."""

    def __init__(self, message: str, *, exporter: str = "", retryable: bool = False,
                 retry_after: float | None = None, kind: str = "error") -> None:
        self.exporter = exporter
        self.retryable = retryable
        self.retry_after = retry_after
        self.kind = kind
        super().__init__(f"{exporter}: {message}" if exporter else message)


class StateError(PromotelError):
    """The state directory cannot be used (permissions, corrupt database, disk full)."""


__all__ = [
    "ConfigError",
    "DiscoveryError",
    "ExportError",
    "ExpositionError",
    "MappingError",
    "PromotelError",
    "ScrapeError",
    "StateError",
]
