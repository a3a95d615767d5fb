"""Times as operators read them: ISO 8601 in UTC, millisecond precision, with a ``Z`` suffix."""

from __future__ import annotations

import datetime


def iso_utc(unix: float) -> str:
    """``1767225600.5`` → ``2026-01-01T00:00:00.500Z``."""
    moment = datetime.datetime.fromtimestamp(unix, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
