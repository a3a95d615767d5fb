"""The on-disk state of one exporter: its write-ahead queue and its delta state, in one SQLite database.

Why one module over 600 lines: ``ExporterStore`` keeps the storage-fault handling (full disk reserve,
damaged files moved aside, adoption of 0.1 files) next to the transactions it protects; the 0.1 adoption
is the next part to move out (docs/architecture.md lists it).

``ExporterStore`` — ``<state_dir>/exporter-<name>.db``, what ``promotel run`` uses:

* ``queue``: one row per serialized ``ExportMetricsServiceRequest`` (uncompressed) that the backend has not
  acknowledged yet, with its point count, size and the time it was queued. A batch's requests are written
  *before the first attempt to send them* and a row is deleted only once the backend accepted the request
  (or refused it for good): a ``kill -9`` at any moment loses nothing that was handed to the queue, and
  re-sends at most what was in flight (at-least-once, as OTLP allows).
* ``delta_targets`` / ``delta_keys`` / ``delta_values`` (and 0.1's ``delta_series``, converted on load): the
  exporter's cumulative→delta state (``promotel.export.delta``).
  ``put`` writes a batch's requests and the delta state after that batch in ONE transaction, so after a
  crash the two always agree: a persisted request's interval is never counted again, and an interval whose
  requests were not persisted is not lost either (the state on disk is from before it, so the next delta
  covers it).
* ``meta``: the format version and which 0.1 files were adopted.

Durability decision: WAL journal. Queue writes commit with ``synchronous=FULL`` (the WAL is fsynced: a
``put`` that returned survives power loss, not only a killed process); acknowledgements (deletes) commit with
``synchronous=NORMAL`` (in WAL mode a killed process loses nothing committed; a power loss may lose the
last deletes, which only re-sends those requests). A new database is built under a temporary name and
renamed into place, so a file that exists is either complete or damaged — a 0-byte file is damaged.

Faults. A file that cannot be opened or read (not a database, corrupt, empty, not openable) is moved aside
as ``<file>.corrupt-<UTC time>``, logged as an error that says what was lost, and replaced by a fresh one.
Any other failure (a full disk, an I/O error) raises ``StorageError`` with SQLite's own message and a
short ``kind``; the queue then keeps working from memory and tries again later (``ExporterPipeline``).

A full disk would otherwise be a dead end: in WAL mode even deleting acknowledged rows and checkpointing
need free space. So each store keeps ``<file>.reserve`` (``reserve_bytes``, allocated, not sparse) and gives
it back on a full disk (``release_reserve``): the deletes of what the backend acknowledged go through,
and once the queue is empty ``compact`` shrinks the file (``auto_vacuum=INCREMENTAL``) and truncates the
WAL, so persisting resumes as soon as the backlog is delivered. The same compaction gives the space of a
long outage's backlog back after it drained (``COMPACT_FREE_PAGES``).

Adopting 0.1 state: on open, ``spool-<name>.db`` rows become queue rows (oldest first) and the rows of
``delta-<name>.db`` join the delta tables (their 0.1 keys are converted by ``DeltaState.attach``), in one
transaction that also records the adoption in ``meta``; then the old files are renamed
``<file>.adopted-<UTC time>`` (logged). A crash between the two renames them on the next start.

``Spool`` — the 0.1 spool (``spool-<name>.db``), kept for its Python API: a bounded FIFO of requests.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, NamedTuple

from promotel.errors import StateError
from promotel.export.sqlite import immediate_transaction

if TYPE_CHECKING:
    from promotel.export.delta import DeltaState

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




# ─── the exporter's state database ───────────────────────────────────────────────────────────

STORE_FORMAT = "1"
RESERVE_MAX = 2 * 1024 * 1024       # the space reserve (at most 1/16 of spool.max_bytes)
COMPACT_FREE_BYTES = 32 * 1024 * 1024   # an empty queue with more free pages than this is compacted
# SQLite's largest page size, instead of its default 4 KiB. A queue row is one request of up to a few MB, stored
# as a chain of overflow pages, and the work SQLite does per page — a WAL frame with its header and checksum, an
# entry in the pointer map that auto_vacuum keeps, a freelist entry when the row is deleted, a copy at each
# checkpoint — is done 16 times less often. Measured on a Baseten round (6.3 MB of requests and the delta state,
# bench/README.md): persist + ack went from ~51 ms to ~36 ms. Files made with smaller pages are rebuilt on open.
PAGE_SIZE = 65536
# Checkpoint at ~1 MiB of WAL instead of SQLite's 1000 pages: the same copying per byte written, and a WAL that
# stays small enough for a tight file-size limit (RLIMIT_FSIZE) or a nearly full disk.
WAL_CHECKPOINT_BYTES = 1024 * 1024
QUEUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    body    BLOB    NOT NULL,
    points  INTEGER NOT NULL,
    size    INTEGER NOT NULL,
    created REAL    NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""

# SQLite's primary result codes (https://www.sqlite.org/rescode.html) → the short kind logged and counted.
_KINDS = {3: "permission", 8: "read_only", 10: "io_error", 11: "corrupt", 13: "disk_full", 14: "cannot_open",
          23: "permission", 26: "corrupt"}
_DAMAGED = {11, 26}           # SQLITE_CORRUPT, SQLITE_NOTADB: the file itself is bad


class StorageError(StateError):
    """The exporter's state database failed. ``kind``: ``disk_full``, ``io_error``, ``corrupt``,
    ``read_only``, ``cannot_open``, ``permission``, ``cannot_move`` or ``error``."""

    def __init__(self, message: str, kind: str) -> None:
        self.kind = kind
        super().__init__(message)


def _utc_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _safe(exporter: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", exporter) or "exporter"


def store_path(state_dir: str, exporter: str) -> str:
    """``<state_dir>/exporter-<exporter>.db``, the exporter name reduced to a safe file name."""
    return os.path.join(state_dir, f"exporter-{_safe(exporter)}.db")


def _primary(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def _free_space(directory: str) -> str:
    try:
        return f"; {shutil.disk_usage(directory).free} bytes free in {directory}"
    except OSError:
        return ""


class _Damaged(Exception):
    """Internal: the file is bad (``reason`` says how); it is moved aside."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class QueueRow(NamedTuple):
    id: int
    request: bytes
    points: int
    created: float            # unix time it was queued


class Stored(NamedTuple):
    """What ``put`` did: the row id of each request (None: larger than the whole queue, not stored) and
    the rows deleted to make room, as ``(id, points)``, oldest first."""

    ids: tuple[int | None, ...]
    evicted: tuple[tuple[int, int], ...]


class ExporterStore:
    """The state database of one exporter (see the module docstring). Used from one thread (the event loop).

    ``open()`` may fail with ``StorageError`` (then ``db`` is None and the caller retries later); every
    other method raises ``StorageError`` on failure and leaves the database as it was before the call.
    """

    def __init__(self, state_dir: str, exporter: str, *, max_bytes: int,
                 wall: Callable[[], float] = time.time) -> None:
        self.state_dir = state_dir
        self.exporter = exporter
        self.path = store_path(state_dir, exporter)
        self.max_bytes = int(max_bytes)
        self._wall = wall
        self.reserve_path = self.path + ".reserve"
        self.reserve_bytes = min(RESERVE_MAX, self.max_bytes // 16)
        self._compact_due = False         # after a storage fault: compact as soon as the queue is empty
        self.reserve_released = False     # the reserve was given back on a full disk (and not allocated again)
        self.db: sqlite3.Connection | None = None
        self.count = 0              # rows in the queue
        self.total_bytes = 0        # their request bytes
        self._fields = {"exporter": exporter}
        self._page_size = PAGE_SIZE

    # ── opening ──────────────────────────────────────────────────────────────────────────────
    def open(self) -> None:
        """Open (creating, repairing by moving aside, adopting 0.1 files as needed). Raises ``StateError``
        when the state directory itself cannot be created (a configuration problem), ``StorageError``
        for a fault that may pass (a full disk, an I/O error)."""
        if self.db is not None:
            return
        try:
            os.makedirs(self.state_dir, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create the state directory {self.state_dir}: {exc.strerror}; "
                             "check state_dir and its permissions.") from exc
        try:
            db = self._open_checked()
        except _Damaged as bad:
            self._move_aside(bad.reason)
            try:
                db = self._open_checked()
            except _Damaged as again:      # a fresh file that is damaged: the storage itself is failing
                raise StorageError(f"the new state database {self.path} of exporter {self.exporter!r} is "
                                   f"unusable too ({again.reason})", "io_error") from None
        self.db = db
        try:
            if self._page_size < PAGE_SIZE:
                self._rebuild_pages(db)
            self._reload_totals()
            self._adopt_01()
        except StorageError:
            self.close()
            raise
        if self.count:
            log.info("Exporter %s has %d requests (%d bytes) not acknowledged by its backend from before; they "
                     "are sent again, oldest first.", self.exporter, self.count, self.total_bytes,
                     extra={"fields": self._fields})

    def _open_checked(self) -> sqlite3.Connection:
        path = self.path
        if os.path.lexists(path):
            if os.path.isfile(path) and os.path.getsize(path) == 0:
                raise _Damaged("it is empty (0 bytes): truncated or never completely written")
        else:
            self._create()
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._open_error(exc) from exc
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("PRAGMA journal_size_limit=67108864")    # the WAL shrinks back after a large replay
            self._page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
            db.execute(f"PRAGMA wal_autocheckpoint={max(1, WAL_CHECKPOINT_BYTES // self._page_size)}")
            # Some builds (Debian's) overwrite every freed page by default: deleting an acknowledged request would
            # write it again, as zeros, through the WAL — its whole size, on every acknowledgement, and on a full
            # disk the space that deleting was supposed to free. FAST zeroes only pages written anyway.
            db.execute("PRAGMA secure_delete=FAST")
            check = [str(r[0]) for r in db.execute("PRAGMA quick_check").fetchall()]
            if check != ["ok"]:
                raise _Damaged(f"SQLite's integrity check failed: {'; '.join(check[:3])}")
            if str(mode).lower() != "wal":
                raise StorageError(f"the state database {path} of exporter {self.exporter!r} cannot use WAL "
                                   f"journaling (journal_mode is {mode})", "error")
            try:
                fmt = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            except sqlite3.OperationalError:
                fmt = None
            if fmt is None:
                raise _Damaged("it is not a promotel state database (no format marker)")
            if fmt[0] != STORE_FORMAT:
                raise StorageError(f"the state database {path} of exporter {self.exporter!r} has format {fmt[0]}, "
                                   f"this version reads format {STORE_FORMAT}; use the promotel version that "
                                   "wrote it, or move the file away", "error")
            from promotel.export.delta import SCHEMA as DELTA_SCHEMA

            # Tables added since the file was made (the delta state's packed format) are created here.
            db.executescript(QUEUE_SCHEMA + DELTA_SCHEMA)
        except sqlite3.Error as exc:
            db.close()
            raise self._open_error(exc) from exc
        except (_Damaged, StorageError):
            db.close()
            raise
        return db

    def _rebuild_pages(self, db: sqlite3.Connection) -> None:
        """A file made with smaller pages (this version's format before PAGE_SIZE was set) is rebuilt with
        ``PAGE_SIZE`` by ``VACUUM`` — under a rollback journal, since a WAL database cannot change its page size —
        and back to WAL. ``VACUUM`` is atomic: a crash leaves the old file. Best effort: without room for the
        copy the file keeps its pages, which only costs speed."""
        old = self._page_size
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("PRAGMA journal_mode=DELETE")
            db.execute(f"PRAGMA page_size={PAGE_SIZE}")
            db.execute("VACUUM")
        except sqlite3.Error as exc:
            log.warning("The state database %s of exporter %s keeps its %d-byte pages (rebuilding it with %d-byte "
                        "pages failed: %s); it works, persisting is only slower.", self.path, self.exporter, old,
                        PAGE_SIZE, exc, extra={"fields": self._fields})
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
            db.execute(f"PRAGMA wal_autocheckpoint={max(1, WAL_CHECKPOINT_BYTES // self._page_size)}")
        except sqlite3.Error as exc:
            raise self._error(exc, "reopening") from exc
        if str(mode).lower() != "wal":
            raise StorageError(f"the state database {self.path} of exporter {self.exporter!r} cannot use WAL "
                               f"journaling (journal_mode is {mode})", "error")
        if self._page_size != old:
            log.info("Rebuilt the state database %s of exporter %s with %d-byte pages (it had %d).", self.path,
                     self.exporter, self._page_size, old, extra={"fields": self._fields})

    def _open_error(self, exc: sqlite3.Error) -> _Damaged | StorageError:
        primary = _primary(exc)
        if primary in _DAMAGED:
            return _Damaged(f"SQLite cannot read it: {exc}")
        if primary == 14 and os.path.lexists(self.path):         # SQLITE_CANTOPEN on a file that is there
            return _Damaged(f"SQLite cannot open it: {exc}")
        return self._error(exc, "opening")

    def _create(self) -> None:
        """A new database: built as ``<file>.new`` and renamed into place, so it never exists half-made."""
        tmp = self.path + ".new"
        for leftover in (tmp, tmp + "-journal", tmp + "-wal", tmp + "-shm"):
            try:
                os.remove(leftover)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StorageError(f"cannot remove {leftover}: {exc.strerror}", "cannot_open") from exc
        from promotel.export.delta import SCHEMA as DELTA_SCHEMA

        try:
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                # Both set before the first table, page_size first (an auto_vacuum pragma fixes the page size of
                # an empty file). auto_vacuum: freed pages can be given back to the file system (compact).
                db.execute(f"PRAGMA page_size={PAGE_SIZE}")
                db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                db.executescript(QUEUE_SCHEMA + DELTA_SCHEMA)
                db.execute("INSERT INTO meta VALUES ('format', ?)", (STORE_FORMAT,))
                db.execute("PRAGMA journal_mode=WAL")
            finally:
                db.close()
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            self._fsync_dir()
        except sqlite3.Error as exc:
            raise self._error(exc, "creating") from exc
        except OSError as exc:
            raise StorageError(f"creating the state database {self.path} of exporter {self.exporter!r} failed: "
                               f"{exc.strerror or exc}{_free_space(self.state_dir)}", "io_error") from exc

    def _fsync_dir(self) -> None:
        try:
            fd = os.open(self.state_dir, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _aside(self, path: str, tag: str, stamp: str) -> str | None:
        """Rename ``path`` and its ``-wal``/``-shm`` companions to ``<path>.<tag>-<stamp>``; the new name,
        or None when there was nothing to move. Raises ``StorageError`` (``cannot_move``)."""
        moved = None
        for suffix in ("", "-wal", "-shm"):
            src = path + suffix
            if not os.path.lexists(src):
                continue
            dst = f"{path}.{tag}-{stamp}{suffix}"
            try:
                os.replace(src, dst)
            except OSError as exc:
                raise StorageError(f"cannot move {src} aside to {dst}: {exc.strerror or exc}; move or delete it "
                                   "by hand", "cannot_move") from exc
            if not suffix:
                moved = dst
        return moved

    def _move_aside(self, reason: str) -> None:
        size = os.path.getsize(self.path) if os.path.isfile(self.path) else 0
        moved = self._aside(self.path, "corrupt", _utc_stamp())
        log.error("The state database of exporter %s (%s, %d bytes) cannot be used: %s. It was moved to %s and a "
                  "new one was created. Lost with it: the requests it held that the backend had not acknowledged "
                  "(their number cannot be read) and, for a delta exporter, the previous values (each series "
                  "starts again from a baseline, so one interval is missing).", self.exporter, self.path, size,
                  reason, moved, extra={"fields": {**self._fields, "reason": "state_corrupt"}})

    # ── 0.1 files ────────────────────────────────────────────────────────────────────────────
    def _adopt_01(self) -> None:
        assert self.db is not None
        safe = _safe(self.exporter)
        for table, name in (("requests", f"spool-{safe}.db"), ("delta_series", f"delta-{safe}.db")):
            old = os.path.join(self.state_dir, name)
            if not os.path.isfile(old):
                continue
            done = self.db.execute("SELECT value FROM meta WHERE key = ?", (f"adopted:{name}",)).fetchone()
            if done is None:
                try:
                    what = self._import_01(old, name, table)
                except sqlite3.Error as exc:
                    if _primary(exc) in _DAMAGED or os.path.getsize(old) == 0:
                        moved = self._aside(old, "corrupt", _utc_stamp())
                        log.error("The 0.1 state file %s of exporter %s cannot be read (%s); it was moved to %s. "
                                  "Whatever it held is lost.", old, self.exporter, exc, moved,
                                  extra={"fields": {**self._fields, "reason": "state_corrupt"}})
                        continue
                    raise self._error(exc, f"adopting the 0.1 file {old} into") from exc
            else:
                what = "already adopted"
            moved = self._aside(old, "adopted", _utc_stamp())
            log.info("Exporter %s adopted its 0.1 state file %s (%s) into %s; the old file was moved to %s.",
                     self.exporter, old, what, self.path, moved, extra={"fields": self._fields})

    def _import_01(self, old: str, name: str, table: str) -> str:
        db = self.db
        assert db is not None
        db.execute("ATTACH DATABASE ? AS old", (old,))
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM old.sqlite_master WHERE type = 'table'")}
            with immediate_transaction(db):
                if table == "requests":
                    n = 0
                    if "requests" in tables:
                        n = db.execute("INSERT INTO main.queue (body, points, size, created) "
                                       "SELECT body, points, size, ? FROM old.requests ORDER BY id",
                                       (self._wall(),)).rowcount
                    what = f"{n} requests"
                else:
                    n = 0
                    if "delta_series" in tables:
                        n = db.execute("INSERT OR IGNORE INTO main.delta_series SELECT * FROM old.delta_series "
                                       "WHERE exporter = ?", (self.exporter,)).rowcount
                    # A delta file written by ``DeltaState(exporter, path)`` of this version: the packed format.
                    if "delta_keys" in tables:
                        n += db.execute("INSERT OR IGNORE INTO main.delta_keys SELECT * FROM old.delta_keys "
                                        "WHERE exporter = ?", (self.exporter,)).rowcount
                    if "delta_values" in tables:
                        db.execute("INSERT OR IGNORE INTO main.delta_values SELECT * FROM old.delta_values "
                                   "WHERE exporter = ?", (self.exporter,))
                    if "delta_targets" in tables:
                        db.execute("INSERT OR IGNORE INTO main.delta_targets SELECT * FROM old.delta_targets "
                                   "WHERE exporter = ?", (self.exporter,))
                    what = f"delta state of {n} series"
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"adopted:{name}", self._stamp_now()))
        finally:
            db.execute("DETACH DATABASE old")
        self._reload_totals()
        return what

    def _stamp_now(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._wall()))

    # ── the queue ────────────────────────────────────────────────────────────────────────────
    def put(self, requests: Sequence[tuple[bytes, int, float]], *, delta: DeltaState | None = None,
            delete: Collection[int] = ()) -> Stored:
        """Store requests ``(body, points, queued at)`` and the delta state's pending changes in ONE
        transaction (``synchronous=FULL``: durable when this returns). ``delete``: acknowledged rows whose
        deletion failed earlier, deleted in the same transaction. When the queue would exceed ``max_bytes``,
        its oldest rows are deleted to make room (returned in ``evicted``; the caller counts them); a
        request larger than ``max_bytes`` is not stored (its id is None)."""
        db = self._need_db()
        sizes = [len(body) for body, _, _ in requests]
        fits = [size <= self.max_bytes for size in sizes]
        incoming = sum(size for size, ok in zip(sizes, fits) if ok)
        evicted: list[tuple[int, int]] = []
        ids: list[int | None] = []
        count, total = self.count, self.total_bytes
        try:
            with immediate_transaction(db):
                if delete:
                    count, total = self._delete_rows(db, delete, count, total)
                if incoming > self.max_bytes:      # the batch alone is larger than the queue: not stored
                    fits = [False] * len(fits)
                    incoming = 0
                while total + incoming > self.max_bytes and count:
                    row = db.execute("SELECT id, points, size FROM queue ORDER BY id LIMIT 1").fetchone()
                    db.execute("DELETE FROM queue WHERE id = ?", (row[0],))
                    evicted.append((int(row[0]), int(row[1])))
                    count -= 1
                    total -= int(row[2])
                for (body, points, created), size, ok in zip(requests, sizes, fits):
                    if not ok:
                        ids.append(None)
                        continue
                    cur = db.execute("INSERT INTO queue (body, points, size, created) VALUES (?, ?, ?, ?)",
                                     (body, int(points), size, float(created)))
                    ids.append(int(cur.lastrowid or 0))
                    count += 1
                    total += size
                if delta is not None:
                    delta.write_changes(db)
        except sqlite3.Error as exc:
            raise self._error(exc, "writing to") from exc
        self.count, self.total_bytes = count, total
        if delta is not None:
            delta.changes_saved()
        return Stored(tuple(ids), tuple(evicted))

    def replace(self, row_id: int, parts: Sequence[tuple[bytes, int, float]]) -> list[int]:
        """Replace one request by the parts it was split into, in one transaction; their new ids."""
        db = self._need_db()
        ids: list[int] = []
        count, total = self.count, self.total_bytes
        try:
            with immediate_transaction(db):
                count, total = self._delete_rows(db, (row_id,), count, total)
                for body, points, created in parts:
                    cur = db.execute("INSERT INTO queue (body, points, size, created) VALUES (?, ?, ?, ?)",
                                     (body, int(points), len(body), float(created)))
                    ids.append(int(cur.lastrowid or 0))
                    count += 1
                    total += len(body)
        except sqlite3.Error as exc:
            raise self._error(exc, "writing to") from exc
        self.count, self.total_bytes = count, total
        return ids

    def delete(self, ids: Collection[int]) -> None:
        """Acknowledged requests: delete them (``synchronous=NORMAL``, see the module docstring)."""
        db = self._need_db()
        count, total = self.count, self.total_bytes
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            try:
                with immediate_transaction(db):
                    count, total = self._delete_rows(db, ids, count, total)
            finally:
                db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise self._error(exc, "deleting acknowledged requests from") from exc
        self.count, self.total_bytes = count, total
        if not count:
            self._compact_if_worth_it()

    def _compact_if_worth_it(self) -> None:
        db = self.db
        if db is None:
            return
        try:
            free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
        except sqlite3.Error:
            return
        if self._compact_due or free * self._page_size > COMPACT_FREE_BYTES:
            try:
                self.compact()
            except StorageError as exc:
                log.debug("Compacting the state database of exporter %s failed: %s", self.exporter, exc)

    def compact(self) -> None:
        """Empty queue: give the free pages back (incremental vacuum) and truncate the WAL."""
        db = self._need_db()
        try:
            # Through sqlite3_exec: the sqlite3 module's execute() steps the pragma once, which frees one page.
            db.executescript("PRAGMA incremental_vacuum;")
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc, "compacting") from exc
        if not busy:
            self._compact_due = False

    def try_checkpoint(self) -> bool:
        """Copy the WAL into the database file and truncate it (best effort, after a write failed): a WAL that
        reached a file-size limit gets room again."""
        if self.db is None:
            return False
        try:
            busy, _, _ = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error:
            return False
        return not busy

    # ── the space reserve ────────────────────────────────────────────────────────────────────
    def ensure_reserve(self) -> bool:
        """Allocate the reserve file if it is missing (best effort: False when there is no room for it)."""
        if not self.reserve_bytes or os.path.exists(self.reserve_path):
            return True
        try:
            fd = os.open(self.reserve_path, os.O_CREAT | os.O_WRONLY, 0o600)
        except OSError:
            return False
        try:
            os.posix_fallocate(fd, 0, self.reserve_bytes)
            self.reserve_released = False
            return True
        except OSError:
            try:
                os.remove(self.reserve_path)
            except OSError:
                pass
            return False
        finally:
            os.close(fd)

    def free_bytes(self) -> int:
        """Free space for this process in the state directory (large when it cannot be told)."""
        try:
            st = os.statvfs(self.state_dir)
        except OSError:
            return 1 << 62
        return int(st.f_bavail) * int(st.f_frsize)

    def release_reserve(self) -> int:
        """A full disk: give the reserve back so that deletes and compaction can run. The bytes freed."""
        self._compact_due = True
        try:
            size = os.path.getsize(self.reserve_path)
            os.remove(self.reserve_path)
        except OSError:
            return 0
        self.reserve_released = True
        return size

    @staticmethod
    def _delete_rows(db: sqlite3.Connection, ids: Collection[int], count: int, total: int) -> tuple[int, int]:
        for row_id in ids:
            row = db.execute("DELETE FROM queue WHERE id = ? RETURNING size", (row_id,)).fetchone()
            if row is not None:
                count -= 1
                total -= int(row[0])
        return count, total

    def oldest(self, exclude: Collection[int] = ()) -> QueueRow | None:
        """The oldest request whose id is not in ``exclude`` (those in memory or in flight), left in place."""
        db = self._need_db()
        after = -1
        try:
            while True:
                ids = [int(r[0]) for r in db.execute("SELECT id FROM queue WHERE id > ? ORDER BY id LIMIT 256",
                                                      (after,)).fetchall()]
                if not ids:
                    return None
                found = next((i for i in ids if i not in exclude), None)
                if found is not None:
                    row = db.execute("SELECT body, points, created FROM queue WHERE id = ?", (found,)).fetchone()
                    return QueueRow(found, bytes(row[0]), int(row[1]), float(row[2]))
                after = ids[-1]
        except sqlite3.Error as exc:
            raise self._error(exc, "reading") from exc

    def oldest_created(self) -> float | None:
        """When the oldest request still in the queue was queued (unix time)."""
        if self.db is None or not self.count:
            return None
        try:
            row = self.db.execute("SELECT created FROM queue ORDER BY id LIMIT 1").fetchone()
        except sqlite3.Error:
            return None
        return None if row is None else float(row[0])

    def commit_delta(self, delta: DeltaState) -> None:
        """The delta state's pending changes alone, in one transaction (an exporter whose queue is not
        persisted: ``spool.enabled: false``)."""
        db = self._need_db()
        try:
            with immediate_transaction(db):
                delta.write_changes(db)
        except sqlite3.Error as exc:
            raise self._error(exc, "writing the delta state to") from exc
        delta.changes_saved()

    def close(self) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except sqlite3.Error:
                pass
            self.db = None

    # ── helpers ──────────────────────────────────────────────────────────────────────────────
    def _need_db(self) -> sqlite3.Connection:
        if self.db is None:
            raise StorageError(f"the state database {self.path} of exporter {self.exporter!r} is not open",
                               "cannot_open")
        return self.db

    def _reload_totals(self) -> None:
        db = self._need_db()
        try:
            row = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM queue").fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc, "reading") from exc
        self.count, self.total_bytes = int(row[0]), int(row[1])

    def _error(self, exc: sqlite3.Error, what: str) -> StorageError:
        """SQLite's own message and error name, with the free space when the disk may be the cause."""
        primary = _primary(exc)
        kind = _KINDS.get(primary, "error") if primary is not None else "error"
        name = getattr(exc, "sqlite_errorname", None)
        extra = _free_space(self.state_dir) if kind in ("disk_full", "io_error") else ""
        return StorageError(f"{what} the state database {self.path} of exporter {self.exporter!r} failed: "
                            f"{exc}{f' ({name})' if name else ''}{extra}", kind)


__all__ = ["Dropped", "ExporterStore", "QueueRow", "Spool", "SpoolItem", "StorageError", "Stored", "spool_path",
           "store_path"]
