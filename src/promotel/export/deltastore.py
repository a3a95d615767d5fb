"""The storage format of the cumulative→delta state (``promotel.export.delta``): the SQLite tables, the
text of their ``target`` and ``series`` keys, the packed value row of a target, and the formats of earlier
versions that are read when a state is opened. Codecs and reads only: which rows are written when, and what a
loaded row means for the conversion, is ``DeltaState``'s.

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
  again from a baseline (nothing is raised; ``DeltaState`` on open).
* ``delta_series``: one row per series with the previous point — the format of 0.1 and of the versions before
  the packed one. Rows found there are loaded once, written in the packed format and deleted, in one
  transaction, when the state is opened (a series the packed tables hold as well keeps that newer value).

The ``target`` column is the target key: the source name alone when the batch carries no target identity
(``promotel map`` on files; and every row 0.1 wrote), else JSON text, format 1::

    [1, source name, [[attribute key, value], ...]]     e.g. [1,"jobs",[["server.address","h"],["server.port",80]]]

with the ``TARGET_IDENTITY`` attributes the Resource has, sorted by key.

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
import os
import re
import sqlite3
import struct
import zlib
from collections.abc import Collection, Iterator, Sequence
from itertools import accumulate, chain
from typing import Any, NamedTuple

from promotel.model import Attributes, Kind

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
TABLES = ("delta_series", "delta_keys", "delta_values", "delta_targets")     # every table with delta state

# The Resource attributes that identify a scraped target: promotel.pipeline.target_resource derives them
# from the scrape URL (the configured resource attributes may override them, in every batch alike).
TARGET_IDENTITY = ("server.address", "server.port", "service.instance.id", "url.scheme")
TARGET_FORMAT = 1                    # the ``target`` column's JSON format (see the module docstring)

SeriesKey = tuple[str, Kind, str, str, Attributes]     # (metric name, kind, scope name, scope version, attributes)


class PrevPoint(NamedTuple):
    """The previous cumulative point of one series: what a value row holds per series."""
    start_ns: int
    time_ns: int
    value: float                      # Sum value or Histogram count
    sum: float | None                 # Histogram sum
    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    round: int
    restored: bool                    # loaded from disk and not compared since
    id: int = -1                      # the series' ``delta_keys`` id in its target (given when the series is new)


def unpack_floats(blob: bytes | None) -> tuple[float, ...]:
    """The ``bounds`` or ``counts`` of a ``delta_series`` row: little-endian float64s (NULL: none)."""
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


def _packed_parts(series: Collection[PrevPoint]) -> Iterator[bytes]:
    """The value row of a target's series (format 1) in pieces: no buffer of the size of the row is made
    (buffers over 1 MiB are mmapped and page-faulted in afresh each time, ``promotel.service.runtime``)."""
    columns = list(zip(*series))
    if not columns:
        columns = [()] * len(PrevPoint._fields)
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


def encode_values(series: Collection[PrevPoint]) -> bytes:
    """The stored value row: the format-1 bytes, zlib-compressed at level 1 (see the module docstring)."""
    stream = zlib.compressobj(1)
    out = [stream.compress(part) for part in _packed_parts(series)]
    out.append(stream.flush())
    return b"".join(out)


def decode_values(data: bytes) -> list[PrevPoint]:
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
    return [PrevPoint(start, time_ns, value, sum_ if has else None, table[w], tuple(flat_counts[end - k:end]), rnd,
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
        for p in decode_values(blob):
            text = texts.get((target, p.id))
            if text is not None:
                out.append(StoredSeries(target, text, p.start_ns, p.time_ns, p.value, p.sum, p.bounds, p.counts,
                                        p.round))
    return sorted(out, key=lambda r: (r.target, r.series))



class DeltaRows(NamedTuple):
    """Every row the state database holds for one exporter, as read when its state is opened."""
    targets: list[tuple[str, int | None, int]]    # ``delta_targets``: target, previous export's time, round
    keys: list[tuple[str, int, str]]              # ``delta_keys``: target, id, key text
    values: list[tuple[str, bytes]]               # ``delta_values``: target, value row
    series: list[Any]                             # ``delta_series`` (the earlier formats), every column but exporter


def read_rows(db: sqlite3.Connection, exporter: str) -> DeltaRows:
    """The rows of ``exporter`` in every delta table of ``db`` (whose tables exist). Raises ``sqlite3.Error``."""
    return DeltaRows(
        db.execute("SELECT target, last_export_ns, round FROM delta_targets WHERE exporter = ?",
                   (exporter,)).fetchall(),
        db.execute("SELECT target, id, series FROM delta_keys WHERE exporter = ?", (exporter,)).fetchall(),
        db.execute("SELECT target, data FROM delta_values WHERE exporter = ?", (exporter,)).fetchall(),
        db.execute("SELECT target, series, start_ns, time_ns, value, sum, bounds, counts, round "
                   "FROM delta_series WHERE exporter = ?", (exporter,)).fetchall())


__all__ = ["SCHEMA", "SERIES_FORMAT", "TABLES", "TARGET_FORMAT", "TARGET_IDENTITY", "VALUES_MAGIC", "DeltaRows",
           "PrevPoint", "SeriesKey", "StoredSeries", "decode_values", "encode_values", "read_rows", "series_key",
           "series_text", "state_file", "stored_series", "target_key", "target_source", "unpack_floats"]
