"""Cumulative → delta temporality, per exporter, with the previous values persisted (issue #5).

Why one module over 600 lines: the delta rules and their storage format (key rows, packed per-target
values, the 0.1 and one-row-per-series formats read on open) change together; the packed format is the
next part to move out (docs/architecture.md lists it).

State kept here, one ``DeltaState`` per delta exporter: per (target, series identity) the previous
cumulative point — start time, time, value (or count and sum, bounds and bucket counts) and the round it
was last seen — plus per target the time of its previous export and a round counter. It lives in
memory and, with a state directory, in SQLite (WAL mode). Two ways to persist it:

* its own file (``DeltaState(exporter, path)``, ``commit()`` writes what changed since the last commit in
  one transaction), as 0.1 did and ``promotel map`` and the tests still do (same tables);
* the exporter's state database (``attach``), which the export queue writes with ``write_changes`` in the
  same transaction as the requests of the batch that advanced the state, so that after a crash the
  persisted requests and the persisted state always agree: no lost interval, no double count.

A target is the **full identity of who was scraped**: the source's name and the target's resource
identity (``TARGET_IDENTITY``: ``service.instance.id``, ``server.address``, ``server.port``,
``url.scheme`` of the batch's Resource — derived from the scrape URL, present in every batch of the
target, failed scrapes included). A source whose URL changes (a SIGHUP) is a new target and starts from a
baseline; it never computes a delta between two hosts' counters. Targets of a source that are no longer
scraped are deleted once the source has gone ``expire_after_rounds`` rounds without them.

Rules (conversion.md, "Cumulative → delta"):

* Monotonic Sums and Histograms become DELTA; gauges, non-monotonic sums and summaries pass untouched.
* Delta = current − previous; the delta point starts at the previous point's time (contiguous).
* A first sighting is the baseline and emits nothing, unless its ``_created`` start time is after the target's
  previous export (it started counting since then): then the whole value is the delta. A target whose
  previous export was only staleness markers (a failed scrape) has no previous export in this sense.
* Reset — value, count, sum or a bucket went down, the bounds changed, or the start time changed —
  the new cumulative value is the delta. After a restart of the bridge the converter's first-seen start
  times are new, so for series reloaded from disk only ``_created`` start times are compared.
* Never a negative delta. A staleness marker passes through; the series' previous value is kept (until
  expiry), so a series that returns after a gap or a failed scrape continues from it (lower → reset).
* Series not seen for ``expire_after_rounds`` rounds of their target are deleted (bounded state).

State tables (SQLite), written per round for the targets seen in it (issue #13: the per-round cost is one
row per target, not one per series):

* ``delta_targets``: per (exporter, target) the previous export's time and the round counter;
* ``delta_keys``: per (exporter, target, id) the series' key text (below). Append-only: a row is written once,
  when its series is new, and deleted when the series expires (an expired series that returns gets a new id);
* ``delta_values``: per (exporter, target) ONE value row holding every series' previous point, replaced as a
  whole in the same transaction as the key rows (so a row never names an id whose key is not committed).
  Format 1, little-endian: a header ``<4sqqqq`` (``b"PTD1"``, series n, bound sets m, bounds floats B, bucket
  counts C), then arrays of n int64 ids, n int64 start times, n int64 times, n float64 values (Sum value or
  Histogram count), n float64 sums (0 when absent), n bytes "has a sum", n int64 rounds, n int64 bound-set
  indexes, n int64 bucket-count lengths, m int64 bound-set lengths, B float64 bounds, C float64 bucket counts
  (in series order). Bound set 0 is the empty one (a Sum); histograms share the sets they share in memory.
  The stored row is these bytes compressed by zlib (RFC 1950) at level 1: on the Baseten benchmark 1.7 MB
  become 0.13 MB for ~4 ms of CPU, which the commit (WAL, fsync, checkpoint) more than gains back; a row
  starting with the magic is read uncompressed. A row that cannot be read is logged and its target starts
  again from a baseline (nothing is raised).
* ``delta_series``: one row per series with the previous point — the format of 0.1 and of the versions before
  the packed one. Rows found there are loaded once, written in the packed format and deleted, in one
  transaction, when the state is opened (a series the packed tables hold as well keeps that newer value).

The ``target`` column is the target key: the source name alone when the batch carries no target identity
(``promotel map`` on files; and every row 0.1 wrote), else JSON text, format 1::

    [1, source name, [[attribute key, value], ...]]     e.g. [1,"jobs",[["server.address","h"],["server.port",80]]]

with the ``TARGET_IDENTITY`` attributes the Resource has, sorted by key. A row keyed by the source name
alone that was read from disk (a 0.1 state file) is taken over by the first target of that source seen
after the upgrade (0.1 had one target per source and kept no identity), so an upgrade loses no interval.

The ``series`` column (of ``delta_keys``, and of ``delta_series`` before) is the series identity as JSON
text, format 1::

    [1, metric name, kind, scope name, scope version, [[attribute key, value], ...]]

for example ``[1,"http_requests","sum","","",[["code","200"],["shard",3],["tls",true],["weight",0.5]]]``.
The leading 1 is the format version. ``kind`` is ``promotel.model.Kind``'s value; attributes keep their
order. An attribute value's JSON type is its Python type, exactly: a string is a str, ``true``/``false``
a bool, a number without fraction or exponent an int (any size), any other number a float, written as
Python's shortest round-trip ``repr`` so it reads back bit for bit (non-finite floats as the tokens
``NaN``, ``Infinity``, ``-Infinity``, which Python's ``json`` reads and writes). The text is ASCII
(other characters as JSON escapes). The text of a series never changes, so it is the row's key.

0.1 wrote the ``series`` column as Python ``repr((name, kind value, scope name, scope version,
attributes))`` (always starting with ``(``). Such rows are read once with ``ast.literal_eval``, a parser
of literals only, and rewritten in format 1 (and the packed tables) when the file is opened; a row neither
format can read is dropped with the others and its series becomes a new baseline.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sqlite3
import struct
import zlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from itertools import accumulate, chain
from typing import Any, NamedTuple

from promotel.errors import ConfigError, StateError
from promotel.export.sqlite import immediate_transaction
from promotel.model import (
    Attributes,
    HistogramPoint,
    Kind,
    Metric,
    NumberPoint,
    Point,
    SummaryPoint,
    TargetBatch,
    Temporality,
)

log = logging.getLogger("promotel.export.delta")

SCHEMA = """
CREATE TABLE IF NOT EXISTS delta_series (
    exporter TEXT NOT NULL, target TEXT NOT NULL, series TEXT NOT NULL,
    start_ns INTEGER NOT NULL, time_ns INTEGER NOT NULL, value REAL NOT NULL, sum REAL,
    bounds BLOB, counts BLOB, round INTEGER NOT NULL,
    PRIMARY KEY (exporter, target, series)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS delta_targets (
    exporter TEXT NOT NULL, target TEXT NOT NULL, last_export_ns INTEGER, round INTEGER NOT NULL,
    PRIMARY KEY (exporter, target)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS delta_keys (
    exporter TEXT NOT NULL, target TEXT NOT NULL, id INTEGER NOT NULL, series TEXT NOT NULL,
    PRIMARY KEY (exporter, target, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS delta_values (
    exporter TEXT NOT NULL, target TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (exporter, target)) WITHOUT ROWID;
"""
_TABLES = ("delta_series", "delta_keys", "delta_values", "delta_targets")     # every table with delta state
_SCHEMA = SCHEMA          # the name 0.1 used

# The Resource attributes that identify a scraped target: promotel.pipeline.target_resource derives them
# from the scrape URL (the configured resource attributes may override them, in every batch alike).
TARGET_IDENTITY = ("server.address", "server.port", "service.instance.id", "url.scheme")
TARGET_FORMAT = 1                    # the ``target`` column's JSON format (see the module docstring)

SeriesKey = tuple[str, Kind, str, str, Attributes]     # (metric name, kind, scope name, scope version, attributes)


class _Prev(NamedTuple):
    start_ns: int
    time_ns: int
    value: float                      # Sum value or Histogram count
    sum: float | None                 # Histogram sum
    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    round: int
    restored: bool                    # loaded from disk and not compared since
    id: int = -1                      # the series' ``delta_keys`` id in its target (given by ``_Target.add``)


class _Target:
    __slots__ = ("from_disk", "gone", "last_export_ns", "next_id", "round", "series", "source", "source_round",
                 "unsaved")

    def __init__(self, source: str, last_export_ns: int | None = None, round_: int = 0,
                 from_disk: bool = False) -> None:
        self.series: dict[SeriesKey, _Prev] = {}
        self.next_id = 0                         # the ``delta_keys`` id of the next new series
        self.unsaved: set[SeriesKey] = set()     # series whose key row is not written yet
        self.gone: set[int] = set()              # ids whose key row is to be deleted (expired series)
        self.source = source
        self.last_export_ns = last_export_ns
        self.round = round_
        self.from_disk = from_disk    # loaded and not used since: a 0.1 row may be taken over
        self.source_round = 0         # the source's round counter when this target was last seen

    def add(self, key: SeriesKey, prev: _Prev) -> None:
        """A series not held yet: it gets the next id and its key row is written with the next save."""
        self.series[key] = prev._replace(id=self.next_id)
        self.next_id += 1
        self.unsaved.add(key)

    def drop(self, key: SeriesKey) -> None:
        self.unsaved.discard(key)
        self.gone.add(self.series.pop(key).id)


def _pack(values: tuple[float, ...]) -> bytes:
    return struct.pack(f"<{len(values)}d", *values)


def _unpack(blob: bytes | None) -> tuple[float, ...]:
    if not blob:
        return ()
    return struct.unpack(f"<{len(blob) // 8}d", blob)


# The value row of a target (``delta_values.data``), format 1: a header, then one array per field, all
# little-endian — see the module docstring. Histogram bounds are stored once per distinct set (a table in the
# row), as most histograms of a target share theirs.
VALUES_MAGIC = b"PTD1"
_HEADER = struct.Struct("<4sqqqq")          # magic, series, bounds sets, bounds floats, bucket counts


def _arr(code: str, values: Sequence[Any]) -> bytes:
    # struct with an explicit byte order: the fastest way from a tuple to bytes, on any machine alike.
    return struct.pack(f"<{len(values)}{code}", *values)


_CHUNK = 8192                        # series per piece of the bucket counts (each piece well under 1 MiB)


def _pack_series(series: Collection[_Prev]) -> bytes:
    """The value row of a target's series (format 1)."""
    return b"".join(_packed_parts(series))


def _packed_parts(series: Collection[_Prev]) -> Iterator[bytes]:
    """The value row of a target's series (format 1) in pieces: no buffer of the size of the row is made
    (buffers over 1 MiB are mmapped and page-faulted in afresh each time, ``promotel.service.runtime``)."""
    columns = list(zip(*series))
    if not columns:
        columns = [()] * len(_Prev._fields)
    starts, times, values, sums, bounds, counts, rounds, _, ids = columns
    table: dict[tuple[float, ...], int] = {(): 0}
    known: dict[int, int] = {}       # id() of a bounds tuple → its index: histograms share their bounds tuple
    which = []
    for b in bounds:
        w = known.get(id(b))
        if w is None:
            w = known[id(b)] = table.setdefault(b, len(table))
        which.append(w)
    ncounts = list(map(len, counts))
    yield _HEADER.pack(VALUES_MAGIC, len(series), len(table), sum(map(len, table)), sum(ncounts))
    yield from (_arr("q", ids), _arr("q", starts), _arr("q", times), _arr("d", values),
                _arr("d", [0.0 if v is None else v for v in sums]), bytes([v is not None for v in sums]),
                _arr("q", rounds), _arr("q", which), _arr("q", ncounts),
                _arr("q", list(map(len, table))), _arr("d", list(chain.from_iterable(table))))
    for i in range(0, len(counts), _CHUNK):
        yield _arr("d", list(chain.from_iterable(counts[i:i + _CHUNK])))


def _encode_values(series: Collection[_Prev]) -> bytes:
    """The stored value row: the format-1 bytes, zlib-compressed at level 1 (see the module docstring)."""
    stream = zlib.compressobj(1)
    out = [stream.compress(part) for part in _packed_parts(series)]
    out.append(stream.flush())
    return b"".join(out)


def _unpack_series(data: bytes) -> list[_Prev]:
    """The previous point of each series of a stored value row (loaded: ``restored``), compressed or not.
    Raises ValueError when the row is not format 1 or is inconsistent."""
    if data[:4] == VALUES_MAGIC:
        blob = data
    else:
        stream = zlib.decompressobj()
        try:
            blob = stream.decompress(data)
        except zlib.error as exc:
            raise ValueError(f"a value row that is neither format 1 nor compressed ({exc})") from exc
        if not stream.eof or stream.unused_data:
            raise ValueError("a compressed value row that is cut short or has bytes after its end")
    if len(blob) < _HEADER.size:
        raise ValueError(f"a value row of {len(blob)} bytes")
    magic, n, nsets, nbounds, ncounts_total = _HEADER.unpack_from(blob)
    if magic != VALUES_MAGIC:
        raise ValueError(f"not a format-1 value row (it starts with {magic!r})")
    if min(n, nsets, nbounds, ncounts_total) < 0 or \
            len(blob) != _HEADER.size + n * 65 + nsets * 8 + (nbounds + ncounts_total) * 8:
        raise ValueError(f"a value row of {len(blob)} bytes does not hold what its header says")
    offset = _HEADER.size

    def take(code: str, count: int) -> tuple[Any, ...]:
        nonlocal offset
        values = struct.unpack_from(f"<{count}{code}", blob, offset)
        offset += count * 8
        return values

    ids, starts, times, values, sums = take("q", n), take("q", n), take("q", n), take("d", n), take("d", n)
    has_sum = blob[offset:offset + n]
    offset += n
    rounds, which, ncounts, lens = take("q", n), take("q", n), take("q", n), take("q", nsets)
    flat_bounds, flat_counts = take("d", nbounds), take("d", ncounts_total)
    if sum(lens) != nbounds or sum(ncounts) != ncounts_total or min(lens, default=0) < 0 \
            or min(ncounts, default=0) < 0 or not all(0 <= w < nsets for w in which):
        raise ValueError("a value row whose arrays do not agree")
    table = [tuple(flat_bounds[a - k:a]) for k, a in zip(lens, accumulate(lens))]
    ends = accumulate(ncounts)
    return [_Prev(start, time_ns, value, sum_ if has else None, table[w], tuple(flat_counts[end - k:end]), rnd,
                  True, i)
            for i, start, time_ns, value, sum_, has, rnd, w, k, end
            in zip(ids, starts, times, values, sums, has_sum, rounds, which, ncounts, ends)]


SERIES_FORMAT = 1                    # the ``series`` column's format (see the module docstring)
_ATTR_TYPES = (str, bool, int, float)
# Compact and ASCII; circular references cannot occur in a key (tuples of strings and numbers).
_to_json = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def series_text(key: SeriesKey) -> str:
    """The ``series`` column for a series identity (format 1)."""
    name, kind, scope_name, scope_version, attrs = key
    return _to_json((SERIES_FORMAT, name, kind.value, scope_name, scope_version, attrs))


def series_key(text: str) -> SeriesKey:
    """The series identity from the ``series`` column, format 1 or 0.1's ``repr``. Raises ValueError when
    the text is neither."""
    if text.startswith("("):
        return _series_key_01(text)
    data = json.loads(text)
    if not (isinstance(data, list) and len(data) == 6 and data[0] == SERIES_FORMAT):
        raise ValueError(f"not a format-{SERIES_FORMAT} series key: {text[:80]!r}")
    return _checked_key(data[1], data[2], data[3], data[4], data[5])


def _series_key_01(text: str) -> SeriesKey:
    from ast import literal_eval

    try:
        data = literal_eval(text)
    except (SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(f"unreadable 0.1 series key: {text[:80]!r}") from exc
    if not (isinstance(data, tuple) and len(data) == 5):
        raise ValueError(f"not a 0.1 series key: {text[:80]!r}")
    return _checked_key(*data)


def _checked_key(name: Any, kind: Any, scope_name: Any, scope_version: Any, attrs: Any) -> SeriesKey:
    if not (isinstance(name, str) and isinstance(scope_name, str) and isinstance(scope_version, str)
            and isinstance(attrs, (list, tuple))):
        raise ValueError("series key fields of the wrong type")  # bad text: one error type (not TypeError)
    pairs = []
    for pair in attrs:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str)
                and isinstance(pair[1], _ATTR_TYPES)):
            raise ValueError(f"series key attribute of the wrong shape: {pair!r}")
        pairs.append((pair[0], pair[1]))
    return name, Kind(kind), scope_name, scope_version, tuple(pairs)


def state_file(state_path: str, exporter: str) -> str:
    """A directory gets ``<dir>/delta-<exporter>.db``; anything else is taken as the file itself."""
    if os.path.isdir(state_path):
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", exporter) or "exporter"
        return os.path.join(state_path, f"delta-{safe}.db")
    return state_path

def target_key(source: str, resource: Attributes) -> str:
    """The ``target`` column for a batch of ``source`` with this Resource (see the module docstring)."""
    identity = [(k, v) for k, v in resource if k in TARGET_IDENTITY]
    if not identity:
        return source
    return _to_json((TARGET_FORMAT, source, identity))


def target_source(text: str) -> tuple[str, bool]:
    """``(source name, has identity)`` of a ``target`` column: JSON format 1, else a bare source name."""
    if text.startswith("["):
        try:
            data = json.loads(text)
        except ValueError:
            return text, False
        if isinstance(data, list) and len(data) == 3 and data[0] == TARGET_FORMAT and isinstance(data[1], str) \
                and isinstance(data[2], list) and data[2]:
            return data[1], True
    return text, False


class StoredSeries(NamedTuple):
    """One series as the state database holds it (``stored_series``)."""
    target: str
    series: str                       # the key text (format 1)
    start_ns: int
    time_ns: int
    value: float
    sum: float | None
    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    round: int


def stored_series(db: sqlite3.Connection, exporter: str) -> list[StoredSeries]:
    """The series the packed format holds for ``exporter`` in ``db``, by target and key text (to inspect a
    state database; rows of a value row without their key are left out). Raises ``sqlite3.Error`` and
    ValueError (a value row that cannot be read)."""
    texts = {(t, i): text for t, i, text in
             db.execute("SELECT target, id, series FROM delta_keys WHERE exporter = ?", (exporter,))}
    out = []
    for target, blob in db.execute("SELECT target, data FROM delta_values WHERE exporter = ?", (exporter,)):
        for p in _unpack_series(blob):
            text = texts.get((target, p.id))
            if text is not None:
                out.append(StoredSeries(target, text, p.start_ns, p.time_ns, p.value, p.sum, p.bounds, p.counts,
                                        p.round))
    return sorted(out, key=lambda r: (r.target, r.series))


class DeltaState:
    """The cumulative→delta state of one exporter (see the module docstring). ``state_path`` None →
    memory only (or the exporter's database, see ``attach``); a directory → ``delta-<exporter>.db`` inside
    it; else the SQLite file itself."""

    def __init__(self, exporter: str, state_path: str | None, *, expire_after_rounds: int = 10) -> None:
        self.exporter = exporter
        self.expire_after_rounds = max(1, expire_after_rounds)
        self._targets: dict[str, _Target] = {}
        self._by_source: dict[str, set[str]] = {}                       # source → its target keys
        self._source_rounds: dict[str, int] = {}
        self._dirty_targets: set[str] = set()                           # rewrite the value row of these targets
        self._deleted_targets: set[str] = set()                         # delete every row of these targets
        self._rewrite_all = False                                       # replace every row of this exporter
        self._db: sqlite3.Connection | None = None
        self._own_db = False
        self.path = state_file(state_path, exporter) if state_path else None
        if self.path is not None:
            try:
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise StateError(f"The delta state database {self.path} of exporter {self.exporter} cannot be "
                                 f"used ({exc}). Check that the state directory is writable; if the file is corrupt, "
                                 f"move it away (the next round becomes a new baseline).") from exc
            self._own_db = True
            try:
                self.attach(db, self.path)
            except StateError:
                db.close()
                raise

    # ── persistence ──────────────────────────────────────────────────────────────────────────
    def attach(self, db: sqlite3.Connection, path: str, *, load: bool = True) -> None:
        """Load the state kept in ``db`` (an open connection in autocommit mode, e.g. the exporter's state
        database) and use it from now on: ``commit()`` writes there. ``load=False`` keeps the state in memory
        as it is (a database attached while running: what it holds is older, so the next write replaces all of
        this exporter's rows with what memory holds). Raises ``StateError`` when it cannot be read."""
        try:
            db.executescript(SCHEMA)
            if load:
                targets = db.execute("SELECT target, last_export_ns, round FROM delta_targets WHERE exporter = ?",
                                     (self.exporter,)).fetchall()
                keys = db.execute("SELECT target, id, series FROM delta_keys WHERE exporter = ?",
                                  (self.exporter,)).fetchall()
                blobs = db.execute("SELECT target, data FROM delta_values WHERE exporter = ?",
                                   (self.exporter,)).fetchall()
                rows = db.execute("SELECT target, series, start_ns, time_ns, value, sum, bounds, counts, round "
                                  "FROM delta_series WHERE exporter = ?", (self.exporter,)).fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"The delta state database {path} of exporter {self.exporter} cannot be used "
                             f"({exc}). Check that the state directory is writable; if the file is corrupt, "
                             f"move it away (the next round becomes a new baseline).") from exc
        self.path = path
        if not load:
            self._db = db
            self._rewrite_all = True
            return
        for text, last, rnd in targets:
            self._target(text, last, rnd)
        self._load_packed(keys, blobs)
        if rows:
            self._load_rows(db, path, rows)
        self._db = db

    def _target(self, text: str, last_export_ns: int | None, round_: int) -> _Target:
        source, identified = target_source(text)
        t = self._targets[text] = _Target(source, last_export_ns, round_, from_disk=not identified)
        self._by_source.setdefault(source, set()).add(text)
        return t

    def _load_packed(self, keys: list[tuple[str, int, str]], blobs: list[tuple[str, bytes]]) -> None:
        """The packed format: each target's key rows and its one value row (see the module docstring)."""
        texts: dict[str, dict[int, str]] = {}
        for tname, id_, text in keys:
            texts.setdefault(tname, {})[id_] = text
        for tname, blob in blobs:
            t = self._targets.get(tname) or self._target(tname, None, 0)
            try:
                entries = _unpack_series(blob)
            except ValueError as exc:
                log.warning("The delta state of exporter %s for target %s cannot be read (%s); its series start "
                            "again from a baseline.", self.exporter, tname, exc,
                            extra={"fields": {"exporter": self.exporter}})
                entries = []
                self._deleted_targets.add(tname)     # every row of it goes; the target is written anew
                self._dirty_targets.add(tname)
            own = texts.pop(tname, {})
            used: set[int] = set()
            for prev in entries:
                id_ = prev.id
                stored = own.get(id_)
                if stored is None or id_ in used:
                    self._dirty_targets.add(tname)   # a value without its key: rewritten without it
                    continue
                try:
                    key = series_key(stored)
                except ValueError:
                    self._dirty_targets.add(tname)
                    continue                         # unreadable key: that series becomes a new baseline
                if key in t.series:
                    self._dirty_targets.add(tname)
                    continue
                used.add(id_)
                t.series[key] = prev
            t.next_id = max(own, default=-1) + 1
            orphans = own.keys() - used
            if orphans:                              # keys without a value (or unreadable): deleted
                t.gone.update(orphans)
                self._dirty_targets.add(tname)
        for tname, own in texts.items():             # keys of a target without a value row
            t = self._targets.get(tname) or self._target(tname, None, 0)
            t.gone.update(own)
            t.next_id = max(t.next_id, max(own, default=-1) + 1)
            self._dirty_targets.add(tname)

    def _load_rows(self, db: sqlite3.Connection, path: str, rows: list[Any]) -> None:
        """One row per series (``delta_series``, format 1 or 0.1's ``repr``): loaded, then rewritten in the
        packed format in one transaction that also deletes these rows. A series the packed format already
        holds keeps that (newer) value; a row neither format can read is dropped (a new baseline)."""
        old_format = False
        for text_target, text, start, time_ns, value, sum_, bounds, counts, rnd in rows:
            try:
                key = series_key(text)
            except ValueError:
                continue                 # unreadable row: that series becomes a new baseline
            old_format = old_format or text.startswith("(")
            t = self._targets.get(text_target) or self._target(text_target, None, 0)
            self._dirty_targets.add(text_target)
            if key in t.series:
                continue
            t.add(key, _Prev(start, time_ns, value, sum_, _unpack(bounds), _unpack(counts), rnd, True))
        try:
            with immediate_transaction(db):
                self.write_changes(db)
                db.execute("DELETE FROM delta_series WHERE exporter = ?", (self.exporter,))
        except sqlite3.Error as exc:
            raise StateError(f"Could not convert the delta state {path} of exporter {self.exporter} to the packed "
                             f"format ({exc}). Check free disk space and permissions of the state directory.") from exc
        self.changes_saved()
        what = "the 0.1 format" if old_format else "one row per series"
        log.info("Converted the delta state of exporter %s (%d series) from %s to one packed row per target.",
                 self.exporter, len(rows), what, extra={"fields": {"exporter": self.exporter}})

    @property
    def has_changes(self) -> bool:
        return bool(self._dirty_targets or self._deleted_targets or self._rewrite_all)

    def write_changes(self, db: sqlite3.Connection) -> None:
        """Write everything changed since the last save into ``db``, inside the caller's open transaction:
        per target seen since, the keys of its new series, the deletion of its expired ones and its one value
        row. The caller calls ``changes_saved`` once that transaction committed (and not otherwise: the
        changes then stay pending and go out with the next transaction). Raises ``sqlite3.Error``."""
        exp = self.exporter
        rewrite = self._rewrite_all
        if rewrite:
            for table in _TABLES:
                db.execute(f"DELETE FROM {table} WHERE exporter = ?", (exp,))
            names: Iterable[str] = list(self._targets)
        else:
            if self._deleted_targets:
                gone_targets = [(exp, t) for t in self._deleted_targets]
                for table in _TABLES:
                    db.executemany(f"DELETE FROM {table} WHERE exporter = ? AND target = ?", gone_targets)
            names = self._dirty_targets
        new_keys: list[tuple[str, str, int, str]] = []
        gone: list[tuple[str, str, int]] = []
        values: list[tuple[str, str, bytes]] = []
        targets: list[tuple[str, str, int | None, int]] = []
        for name in names:
            t = self._targets.get(name)
            if t is None:
                continue
            series = t.series
            # A key's text is written once, when its series is new: the per-round cost is the value row.
            fresh: Iterable[SeriesKey] = series if rewrite else t.unsaved
            new_keys.extend((exp, name, series[k].id, series_text(k)) for k in fresh)
            if not rewrite:
                gone.extend((exp, name, i) for i in t.gone)
            values.append((exp, name, _encode_values(series.values())))
            targets.append((exp, name, t.last_export_ns, t.round))
        db.executemany("DELETE FROM delta_keys WHERE exporter = ? AND target = ? AND id = ?", gone)
        db.executemany("INSERT OR REPLACE INTO delta_keys VALUES (?, ?, ?, ?)", new_keys)
        db.executemany("INSERT OR REPLACE INTO delta_values VALUES (?, ?, ?)", values)
        db.executemany("INSERT OR REPLACE INTO delta_targets VALUES (?, ?, ?, ?)", targets)

    def changes_saved(self) -> None:
        """The transaction that ``write_changes`` wrote into committed."""
        for name in self._targets if self._rewrite_all else self._dirty_targets:
            t = self._targets.get(name)
            if t is not None:
                t.unsaved.clear()
                t.gone.clear()
        self._dirty_targets.clear()
        self._deleted_targets.clear()
        self._rewrite_all = False

    def commit(self) -> None:
        """Persist everything changed since the last commit, in one transaction (no-op in memory)."""
        db = self._db
        if db is None or not self.has_changes:
            self.changes_saved()
            return
        try:
            with immediate_transaction(db):
                self.write_changes(db)
        except sqlite3.Error as exc:
            raise StateError(f"Could not save the delta state of exporter {self.exporter} to {self.path} ({exc}). "
                             f"Check free disk space and permissions of the state directory.") from exc
        self.changes_saved()

    def close(self) -> None:
        if self._db is not None and self._own_db:
            self._db.close()
        self._db = None

    # ── conversion ───────────────────────────────────────────────────────────────────────────
    def _target_for(self, batch: TargetBatch) -> tuple[str, _Target]:
        """The target of a batch (see the module docstring), created, or taken over from a 0.1 row."""
        source = batch.target
        tname = target_key(source, batch.resource)
        target = self._targets.get(tname)
        if target is not None:
            return tname, target
        legacy = self._targets.get(source) if tname != source else None
        if legacy is not None and legacy.from_disk:
            # A 0.1 row (keyed by the source alone): its target is this one, the first seen since.
            del self._targets[source]
            self._by_source[source].discard(source)
            self._deleted_targets.add(source)
            self._dirty_targets.discard(source)
            legacy.unsaved = set(legacy.series)       # every key row is written again under the new target key
            legacy.gone.clear()                    # (the old ones go with the source's rows)
            self._dirty_targets.add(tname)
            legacy.from_disk = False
            self._targets[tname] = legacy
            self._by_source[source].add(tname)
            log.info("The delta state of source %s written without a target identity (0.1) now belongs to its "
                     "target %s.", source, tname, extra={"fields": {"exporter": self.exporter, "source": source}})
            return tname, legacy
        target = self._targets[tname] = _Target(source)
        self._by_source.setdefault(source, set()).add(tname)
        return tname, target

    def _expire_targets(self, source: str, current: str, source_round: int) -> None:
        """Delete the other targets of ``source`` not seen for ``expire_after_rounds`` of its rounds (a URL
        that changed: the old target is not scraped any more)."""
        keys = self._by_source.get(source)
        if keys is None or len(keys) < 2:
            return
        for tname in [k for k in keys if k != current]:
            t = self._targets[tname]
            if source_round - t.source_round > self.expire_after_rounds:
                del self._targets[tname]
                keys.discard(tname)
                self._deleted_targets.add(tname)
                self._dirty_targets.discard(tname)

    def to_delta(self, batch: TargetBatch) -> TargetBatch:
        """Monotonic Sums and Histograms of one target's batch as DELTA (see the module docstring)."""
        tname, target = self._target_for(batch)
        source_round = self._source_rounds[batch.target] = self._source_rounds.get(batch.target, 0) + 1
        target.source_round = source_round
        target.from_disk = False
        target.round += 1
        rnd = target.round
        last_export = target.last_export_ns
        series = target.series
        out: list[Metric] = []
        live = 0            # non-stale points seen
        for metric in batch.metrics:
            kind = metric.kind
            if not ((kind is Kind.SUM and metric.monotonic) or kind is Kind.HISTOGRAM) \
                    or metric.temporality is Temporality.DELTA:
                out.append(metric)
                continue
            points: list[Point] = []
            prefix = (metric.name, kind, metric.scope_name, metric.scope_version)
            for p in metric.points:
                key: SeriesKey = (*prefix, p.attributes)
                prev = series.get(key)
                if p.no_recorded_value:
                    if prev is not None and not prev.restored:
                        # Keep the previous value (until expiry): a series that returns continues from it,
                        # as rate() does, so a failed scrape or a gap loses nothing. Its converter start
                        # time will be new, so from here on only ``_created`` can prove a reset.
                        series[key] = prev._replace(restored=True)
                    points.append(p._replace(start_ns=prev.time_ns if prev is not None else p.start_ns))
                    continue
                live += 1
                sid = -1 if prev is None else prev.id
                if kind is Kind.SUM:
                    n: NumberPoint = p  # type: ignore[assignment]
                    if n.value != n.value:
                        # NaN: no delta exists, and it must not become the previous value (a NaN delta
                        # next round; SQLite stores NaN as NULL and the NOT NULL column refuses it).
                        continue
                    new = _Prev(n.start_ns, n.time_ns, n.value, None, (), (), rnd, False, sid)
                    delta = self._sum_delta(n, prev, last_export)
                else:
                    h: HistogramPoint = p  # type: ignore[assignment]
                    new = _Prev(h.start_ns, h.time_ns, h.count, h.sum, h.bounds, h.counts, rnd, False, sid)
                    delta = self._hist_delta(h, prev, last_export)
                if prev is None:
                    target.add(key, new)
                else:
                    series[key] = new
                if delta is not None:
                    points.append(delta)
            if points:
                out.append(metric._replace(points=tuple(points), temporality=Temporality.DELTA))
        # A batch without live points (a failed scrape's markers) is not a previous export to compare with.
        target.last_export_ns = batch.scrape_time_ns if live else None
        self._dirty_targets.add(tname)
        if len(series) > live:
            self._expire(target)
        self._expire_targets(batch.target, tname, source_round)
        return batch._replace(metrics=tuple(out))

    def _expire(self, target: _Target) -> None:
        horizon = target.round - self.expire_after_rounds
        old = [k for k, prev in target.series.items() if prev.round <= horizon]
        for k in old:
            target.drop(k)

    @staticmethod
    def _is_reset_start(p_start: int, p_created: int | None, prev: _Prev) -> bool:
        if prev.restored:
            # The converter's first-seen start times are new after a restart: only ``_created`` counts.
            return p_created is not None and p_created != prev.start_ns
        return p_start != prev.start_ns

    def _sum_delta(self, p: NumberPoint, prev: _Prev | None, last_export: int | None) -> Point | None:
        value = p.value
        if prev is None:
            created = p.created_ns       # only ``_created`` proves a start; a first-seen time always looks new
            if last_export is not None and created is not None and created > last_export \
                    and math.isfinite(value) and value >= 0:
                return p._replace(start_ns=p.start_ns)          # started since the last export: all of it
            return None                                          # baseline
        if value < prev.value or self._is_reset_start(p.start_ns, p.created_ns, prev):
            delta = value                                        # reset: the new cumulative is the delta
        else:
            delta = value - prev.value
        if not delta >= 0:                                       # never negative (nor NaN)
            delta = 0.0 if delta < 0 else delta
        return p._replace(value=delta, start_ns=prev.time_ns)

    def _hist_delta(self, p: HistogramPoint, prev: _Prev | None, last_export: int | None) -> Point | None:
        if prev is None:
            if last_export is not None and p.created_ns is not None and p.created_ns > last_export:
                return p
            return None
        prev_sum = prev.sum if prev.sum is not None else 0.0
        cur_sum = p.sum if p.sum is not None else 0.0
        reset = (p.bounds != prev.bounds or len(p.counts) != len(prev.counts) or p.count < prev.value
                 or cur_sum < prev_sum or self._is_reset_start(p.start_ns, p.created_ns, prev)
                 or any(c < q for c, q in zip(p.counts, prev.counts)))
        if reset:
            return p._replace(start_ns=prev.time_ns)
        counts = tuple(c - q for c, q in zip(p.counts, prev.counts))
        sum_ = None if p.sum is None else cur_sum - prev_sum
        return p._replace(counts=counts, count=p.count - prev.value, sum=sum_, start_ns=prev.time_ns)


# ─── summaries for delta backends ────────────────────────────────────────────────────────────

SUMMARY_POLICIES = ("convert", "drop", "keep")


def _quantile_text(q: float) -> str:
    return repr(q) if q != int(q) else f"{q:.1f}"


def summaries_for_delta(batch: TargetBatch, policy: str) -> TargetBatch:
    """Summaries cannot become delta. "convert": ``<name>.sum`` and ``<name>.count`` monotonic Sums (which
    delta can take) and a ``<name>.quantile`` Gauge with a ``quantile`` attribute; "drop": remove them;
    "keep": unchanged."""
    if policy == "keep":
        return batch
    if policy not in SUMMARY_POLICIES:
        raise ConfigError([("summaries", f"Expected one of {list(SUMMARY_POLICIES)}, got {policy!r}.")])
    if not any(m.kind is Kind.SUMMARY for m in batch.metrics):
        return batch
    out: list[Metric] = []
    for m in batch.metrics:
        if m.kind is not Kind.SUMMARY:
            out.append(m)
            continue
        if policy == "drop":
            continue
        sums: list[Point] = []
        counts: list[Point] = []
        quantiles: list[Point] = []
        for p in m.points:
            s: SummaryPoint = p  # type: ignore[assignment]
            nrv = s.no_recorded_value
            sums.append(NumberPoint(s.attributes, s.sum, s.timestamp_ns, s.created_ns, (), s.start_ns, s.time_ns, nrv))
            counts.append(NumberPoint(s.attributes, s.count, s.timestamp_ns, s.created_ns, (), s.start_ns, s.time_ns,
                                      nrv))
            if nrv:
                continue
            for q, v in s.quantiles:
                attrs = tuple(sorted((*s.attributes, ("quantile", _quantile_text(q)))))
                quantiles.append(NumberPoint(attrs, v, s.timestamp_ns, None, (), 0, s.time_ns, False))
        out.append(m._replace(name=f"{m.name}.sum", kind=Kind.SUM, points=tuple(sums), monotonic=True))
        out.append(m._replace(name=f"{m.name}.count", unit="1", kind=Kind.SUM, points=tuple(counts),
                              monotonic=True))
        if quantiles:
            out.append(m._replace(name=f"{m.name}.quantile", kind=Kind.GAUGE, points=tuple(quantiles),
                                  monotonic=False))
    return batch._replace(metrics=tuple(out))


__all__ = ["SCHEMA", "SERIES_FORMAT", "SUMMARY_POLICIES", "TARGET_IDENTITY", "VALUES_MAGIC", "DeltaState",
           "StoredSeries", "series_key", "series_text", "stored_series", "summaries_for_delta", "target_key",
           "target_source"]
