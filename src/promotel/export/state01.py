"""0.1's state files: the ``Spool`` class, and their adoption into an exporter's state database.

0.1 kept two files per exporter in the state directory: ``spool-<name>.db`` (the persisted queue, table
``requests``) and ``delta-<name>.db`` (the cumulative→delta state, table ``delta_series``). This version
keeps both in one database, ``exporter-<name>.db`` (``promotel.export.spool.ExporterStore``), and adopts
the old files the first time it opens it (``adopt_01``, called from ``ExporterStore.open``):
``spool-<name>.db`` rows become queue rows (oldest first) and the rows of ``delta-<name>.db`` join the delta
tables (their 0.1 keys are converted by ``DeltaState.attach``), in one transaction that also records the
adoption in ``meta``; then the old files are renamed ``<file>.adopted-<UTC time>`` (logged). A crash
between the two renames them on the next start. An old file SQLite cannot read is moved aside as
``<file>.corrupt-<UTC time>`` (logged: what it held is lost); any other failure is the store's
``StorageError``.

``Spool`` — the 0.1 spool (``spool-<name>.db``), kept for its Python API: a bounded FIFO of requests. It is
importable from ``promotel.export.spool`` as in 0.1.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
from typing import TYPE_CHECKING, NamedTuple

from promotel.errors import StateError
from promotel.export.sqlite import immediate_transaction

if TYPE_CHECKING:
    from promotel.export.spool import ExporterStore

# The logger these messages always used (``promotel.export.spool``), so logging configuration keeps applying.
log = logging.getLogger("promotel.export.spool")


def safe_file_name(exporter: str) -> str:
    """The exporter name reduced to a safe file name, as in ``spool-<name>.db`` and ``exporter-<name>.db``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", exporter) or "exporter"


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
    return os.path.join(state_dir, f"spool-{safe_file_name(exporter)}.db")


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
            with immediate_transaction(self._db):
                while self._bytes + size > self.max_bytes and self._count:
                    row = self._db.execute("SELECT id, points, size FROM requests ORDER BY id LIMIT 1").fetchone()
                    self._db.execute("DELETE FROM requests WHERE id = ?", (row[0],))
                    evicted_requests += 1
                    evicted_points += int(row[1])
                    self._bytes -= int(row[2])
                    self._count -= 1
                self._db.execute("INSERT INTO requests (body, points, size) VALUES (?, ?, ?)",
                                 (sqlite3.Binary(request), int(points), size))
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


# ─── adoption into the exporter's state database ─────────────────────────────────────────────

def adopt_01(store: ExporterStore) -> None:
    """Adopt the exporter's 0.1 files (see the module docstring) into ``store``, which is open. Raises the
    store's ``StorageError`` for a failure that may pass (the old files then stay where they are).

    Part of ``ExporterStore.open``, moved here with the 0.1 formats it reads: it uses the store's own
    helpers (``_aside``, ``_error``, ``_reload_totals``) so that a fault is reported as every other one."""
    db = store.db
    assert db is not None
    safe = safe_file_name(store.exporter)
    for table, name in (("requests", f"spool-{safe}.db"), ("delta_series", f"delta-{safe}.db")):
        old = os.path.join(store.state_dir, name)
        if not os.path.isfile(old):
            continue
        done = db.execute("SELECT value FROM meta WHERE key = ?", (f"adopted:{name}",)).fetchone()
        if done is None:
            try:
                what = _import_01(store, old, name, table)
            except sqlite3.Error as exc:
                if store._damaged(exc) or os.path.getsize(old) == 0:
                    moved = store._aside(old, "corrupt")
                    log.error("The 0.1 state file %s of exporter %s cannot be read (%s); it was moved to %s. "
                              "Whatever it held is lost.", old, store.exporter, exc, moved,
                              extra={"fields": {**store._fields, "reason": "state_corrupt"}})
                    continue
                raise store._error(exc, f"adopting the 0.1 file {old} into") from exc
        else:
            what = "already adopted"
        moved = store._aside(old, "adopted")
        log.info("Exporter %s adopted its 0.1 state file %s (%s) into %s; the old file was moved to %s.",
                 store.exporter, old, what, store.path, moved, extra={"fields": store._fields})


def _import_01(store: ExporterStore, old: str, name: str, table: str) -> str:
    """Copy the rows of one 0.1 file into the store and record the adoption, in one transaction; what was
    copied, for the log. Raises ``sqlite3.Error``."""
    db = store.db
    assert db is not None
    exporter = store.exporter
    db.execute("ATTACH DATABASE ? AS old", (old,))
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM old.sqlite_master WHERE type = 'table'")}
        with immediate_transaction(db):
            if table == "requests":
                n = 0
                if "requests" in tables:
                    n = db.execute("INSERT INTO main.queue (body, points, size, created) "
                                   "SELECT body, points, size, ? FROM old.requests ORDER BY id",
                                   (store._wall(),)).rowcount
                what = f"{n} requests"
            else:
                n = 0
                if "delta_series" in tables:
                    n = db.execute("INSERT OR IGNORE INTO main.delta_series SELECT * FROM old.delta_series "
                                   "WHERE exporter = ?", (exporter,)).rowcount
                # A delta file written by ``DeltaState(exporter, path)`` of this version: the packed format.
                if "delta_keys" in tables:
                    n += db.execute("INSERT OR IGNORE INTO main.delta_keys SELECT * FROM old.delta_keys "
                                    "WHERE exporter = ?", (exporter,)).rowcount
                if "delta_values" in tables:
                    db.execute("INSERT OR IGNORE INTO main.delta_values SELECT * FROM old.delta_values "
                               "WHERE exporter = ?", (exporter,))
                if "delta_targets" in tables:
                    db.execute("INSERT OR IGNORE INTO main.delta_targets SELECT * FROM old.delta_targets "
                               "WHERE exporter = ?", (exporter,))
                what = f"delta state of {n} series"
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(store._wall()))
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"adopted:{name}", stamp))
    finally:
        db.execute("DETACH DATABASE old")
    store._reload_totals()
    return what


__all__ = ["Dropped", "Spool", "SpoolItem", "adopt_01", "safe_file_name", "spool_path"]
