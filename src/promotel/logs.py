"""Logging: one line per event, full sentences; ``--log-format json`` gives one JSON object per line.

Extra structured fields are passed with ``extra={"fields": {...}}`` and appear as keys in JSON and
as ``key=value`` pairs in text. Secrets never reach a logger: see ``promotel.secrets.redact``.

Every line on stderr is one event in the chosen format, including what libraries report: the Python
loggers of gRPC and of the OpenTelemetry SDK (self-telemetry's exporter reports failed exports through
it) share promotel's handler. gRPC's C core writes its own lines straight to stderr
(``I1130 17:20:42.619 … ssl_transport_security.cc:2563] Handshake failed …``), which no handler can
reformat; ``quiet_grpc_core`` silences them unless the user asked for them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import MutableMapping
from typing import Any

# Loggers of libraries whose records go through promotel's handler (at warning level and above).
LIBRARY_LOGGERS = ("grpc", "absl", "opentelemetry")

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


def quiet_grpc_core(env: MutableMapping[str, str] | None = None) -> None:
    """Silence gRPC's C-core log lines (``GRPC_VERBOSITY=NONE``) unless ``GRPC_VERBOSITY`` or ``GRPC_TRACE``
    is set. gRPC reads the variable once, when it is first imported: call this before anything imports grpc.

    Those lines bypass logging (plain text on stderr, breaking one-event-per-line and JSON logs), and each
    failure they describe also reaches promotel as a gRPC status that promotel logs itself, with advice.
    Setting ``GRPC_VERBOSITY=INFO`` (or a ``GRPC_TRACE`` list) brings them back for debugging gRPC.
    """
    if "grpc" in sys.modules:
        return      # too late to matter (grpc has read its settings); leave the environment as it is
    env = os.environ if env is None else env
    if "GRPC_VERBOSITY" not in env and "GRPC_TRACE" not in env:
        env["GRPC_VERBOSITY"] = "NONE"


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
    # Libraries log at their own levels; below warning they would flood the log with their internals.
    library_level = max(logging.WARNING, root.level)
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.handlers[:] = [handler]
        library.setLevel(library_level)
        library.propagate = False
