"""The on-disk spool of one exporter: requests the backend did not take yet, oldest first.

State: one SQLite file, ``<state_dir>/spool-<exporter>.db``, one row per serialized
``ExportMetricsServiceRequest`` (uncompressed) with its point count. Nothing else is kept.

Durability decision: WAL journal with ``synchronous=FULL``. In WAL mode ``NORMAL`` already survives
a killed process (a committed transaction sits in the WAL file), but may lose the last commits on
power loss or an OS crash; ``FULL`` fsyncs the WAL on every commit, so a ``put`` that returned is on
disk whatever happens next. The spool is written only while a backend is down, so one fsync per
request costs nothing that matters.

Delivery is at-least-once: a row is deleted (``ack``) only after the backend accepted it. A crash
between the backend's answer and the ``ack`` re-sends that one request after restart.

Size cap: ``max_bytes`` of request bytes. When a new request does not fit, the OLDEST rows are
dropped to make room (the newest data is worth most); every drop is counted and logged.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from typing import NamedTuple

from promotel.errors import StateError

log = logging.getLogger("promotel.export.spool")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    body    BLOB    NOT NULL,
    points  INTEGER NOT NULL,
    size    INTEGER NOT NULL
)
"""


class SpoolItem(NamedTuple):
    id: int
    request: bytes
    points: int


class Dropped(NamedTuple):
    requests: int
    points: int


def spool_path(state_dir: str, exporter: str) -> str:
    """``<state_dir>/spool-<exporter>.db``, the exporter name reduced to a safe file name."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", exporter) or "exporter"
    return os.path.join(state_dir, f"spool-{safe}.db")


class Spool:
    """A bounded FIFO of serialized requests in SQLite. Used from one thread (the event loop)."""

    def __init__(self, path: str, max_bytes: int, *, exporter: str = "") -> None:
        self.path = path
        self.max_bytes = int(max_bytes)
        self.exporter = exporter
        self.dropped_requests = 0
        self.dropped_points = 0
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None)   # autocommit; transactions are explicit
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
            row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM requests").fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open the spool of exporter {exporter!r} at {path}: {exc}; "
                             "check that state_dir exists and is writable.") from exc
        self._count = int(row[0])
        self._bytes = int(row[1])
        if self._count:
            log.info("The spool of exporter %s holds %d requests (%d bytes) from before; they will be replayed.",
                     exporter, self._count, self._bytes, extra={"fields": {"exporter": exporter}})

    def __len__(self) -> int:
        return self._count

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def put(self, request: bytes, points: int = 0) -> Dropped:
        """Store one request durably (it is on disk when this returns). Returns what was evicted for room."""
        size = len(request)
        if size > self.max_bytes:
            self._count_drop(1, points)
            log.warning("A request of %d bytes is larger than the whole spool of exporter %s (%d bytes) and was "
                        "dropped with its %d points; raise spool.max_bytes.", size, self.exporter, self.max_bytes,
                        points, extra={"fields": {"exporter": self.exporter, "reason": "spool_full"}})
            return Dropped(1, points)
        evicted_requests = evicted_points = 0
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                while self._bytes + size > self.max_bytes and self._count:
                    row = self._db.execute("SELECT id, points, size FROM requests ORDER BY id LIMIT 1").fetchone()
                    self._db.execute("DELETE FROM requests WHERE id = ?", (row[0],))
                    evicted_requests += 1
                    evicted_points += int(row[1])
                    self._bytes -= int(row[2])
                    self._count -= 1
                self._db.execute("INSERT INTO requests (body, points, size) VALUES (?, ?, ?)",
                                 (sqlite3.Binary(request), int(points), size))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._reload_totals()
                raise
        except sqlite3.Error as exc:
            raise StateError(f"writing to the spool of exporter {self.exporter!r} at {self.path} failed: {exc}; "
                             "check free disk space.") from exc
        self._count += 1
        self._bytes += size
        if evicted_requests:
            self._count_drop(evicted_requests, evicted_points)
            log.warning("The spool of exporter %s is full (%d bytes): dropped the %d oldest requests (%d points) "
                        "to make room; raise spool.max_bytes or fix the backend.", self.exporter, self.max_bytes,
                        evicted_requests, evicted_points,
                        extra={"fields": {"exporter": self.exporter, "reason": "spool_full"}})
        return Dropped(evicted_requests, evicted_points)

    def peek(self) -> SpoolItem | None:
        """The oldest request, left in place until ``ack``."""
        if not self._count:
            return None
        try:
            row = self._db.execute("SELECT id, body, points FROM requests ORDER BY id LIMIT 1").fetchone()
        except sqlite3.Error as exc:
            raise StateError(f"reading the spool of exporter {self.exporter!r} at {self.path} failed: {exc}.") from exc
        return None if row is None else SpoolItem(int(row[0]), bytes(row[1]), int(row[2]))

    def ack(self, item_id: int) -> None:
        """The backend accepted the request: delete it."""
        try:
            cur = self._db.execute("DELETE FROM requests WHERE id = ? RETURNING size", (item_id,))
            row = cur.fetchone()
        except sqlite3.Error as exc:
            raise StateError(f"updating the spool of exporter {self.exporter!r} at {self.path} failed: {exc}.") from exc
        if row is not None:
            self._count -= 1
            self._bytes -= int(row[0])

    def close(self) -> None:
        self._db.close()

    def _count_drop(self, requests: int, points: int) -> None:
        self.dropped_requests += requests
        self.dropped_points += points

    def _reload_totals(self) -> None:
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM requests").fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])


__all__ = ["Dropped", "Spool", "SpoolItem", "spool_path"]
