"""Logging: one line per event, full sentences; ``--log-format json`` gives one JSON object per line.

Extra structured fields are passed with ``extra={"fields": {...}}`` and appear as keys in JSON and
as ``key=value`` pairs in text. Secrets never reach a logger: see ``promotel.secrets.redact``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_STD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info and record.exc_info[1] is not None:
            out["error"] = str(record.exc_info[1])
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        line = f"{ts} {record.levelname.lower():<7} {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info and record.exc_info[1] is not None:
            line += f" error={record.exc_info[1]}"
        return line


def setup_logging(fmt: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    # Masks every registered secret (promotel.config.secrets) in messages, fields and exception text.
    from promotel.config.secrets import SecretRedactingFilter

    handler.addFilter(SecretRedactingFilter())
    root = logging.getLogger("promotel")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
