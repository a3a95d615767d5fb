"""The on-disk state of one exporter: its write-ahead queue and its delta state, in one SQLite database.

Why one module over 600 lines: ``ExporterStore`` keeps the storage-fault handling (full disk reserve,
damaged files moved aside) next to the transactions it protects. 0.1's files (the ``Spool`` class and
their adoption) are in ``promotel.export.state01``.

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

Adopting 0.1 state: on open, the 0.1 files ``spool-<name>.db`` and ``delta-<name>.db`` are copied in and
moved aside (``promotel.export.state01.adopt_01``).

``Spool`` — the 0.1 spool (``spool-<name>.db``), kept for its Python API: defined in
``promotel.export.state01`` and importable from here as in 0.1.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, NamedTuple

from promotel.errors import StateError
from promotel.export.sqlite import immediate_transaction
from promotel.export.state01 import Dropped, Spool, SpoolItem, adopt_01, safe_file_name, spool_path

if TYPE_CHECKING:
    from promotel.export.delta import DeltaState

log = logging.getLogger("promotel.export.spool")

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


def store_path(state_dir: str, exporter: str) -> str:
    """``<state_dir>/exporter-<exporter>.db``, the exporter name reduced to a safe file name."""
    return os.path.join(state_dir, f"exporter-{safe_file_name(exporter)}.db")


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
            adopt_01(self)
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

    @staticmethod
    def _damaged(exc: sqlite3.Error) -> bool:
        """SQLite says the file itself is bad (not a database, or corrupt)."""
        return _primary(exc) in _DAMAGED

    def _open_error(self, exc: sqlite3.Error) -> _Damaged | StorageError:
        primary = _primary(exc)
        if self._damaged(exc):
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

    def _aside(self, path: str, tag: str) -> str | None:
        """Rename ``path`` and its ``-wal``/``-shm`` companions to ``<path>.<tag>-<UTC time>``; the new name,
        or None when there was nothing to move. Raises ``StorageError`` (``cannot_move``)."""
        stamp = _utc_stamp()
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
        moved = self._aside(self.path, "corrupt")
        log.error("The state database of exporter %s (%s, %d bytes) cannot be used: %s. It was moved to %s and a "
                  "new one was created. Lost with it: the requests it held that the backend had not acknowledged "
                  "(their number cannot be read) and, for a delta exporter, the previous values (each series "
                  "starts again from a baseline, so one interval is missing).", self.exporter, self.path, size,
                  reason, moved, extra={"fields": {**self._fields, "reason": "state_corrupt"}})

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
