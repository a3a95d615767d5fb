"""Cumulative → delta temporality, per exporter, with the previous values persisted (issue #5).

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

The tables, the text of their target and series keys, the packed value row and the earlier formats read on
open are ``promotel.export.deltastore``'s (what importers took from here still imports from here). Two
decisions about those rows are the state's: a target's value row that cannot be read is logged and that
target starts again from a baseline; a row keyed by the source name alone that was read from disk (a 0.1
state file) is taken over by the first target of that source seen after the upgrade (0.1 had one target
per source and kept no identity), so an upgrade loses no interval.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Iterable
from typing import Any

from promotel.errors import ConfigError, StateError
from promotel.export.deltastore import (
    SCHEMA,
    SERIES_FORMAT,
    TABLES,
    TARGET_FORMAT,
    TARGET_IDENTITY,
    VALUES_MAGIC,
    PrevPoint,
    SeriesKey,
    StoredSeries,
    decode_values,
    encode_values,
    read_rows,
    series_key,
    series_text,
    state_file,
    stored_series,
    target_key,
    target_source,
    unpack_floats,
)
from promotel.export.sqlite import immediate_transaction
from promotel.model import (
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

_SCHEMA = SCHEMA          # the name 0.1 used


class _Target:
    __slots__ = ("from_disk", "gone", "last_export_ns", "next_id", "round", "series", "source", "source_round",
                 "unsaved")

    def __init__(self, source: str, last_export_ns: int | None = None, round_: int = 0,
                 from_disk: bool = False) -> None:
        self.series: dict[SeriesKey, PrevPoint] = {}
        self.next_id = 0                         # the ``delta_keys`` id of the next new series
        self.unsaved: set[SeriesKey] = set()     # series whose key row is not written yet
        self.gone: set[int] = set()              # ids whose key row is to be deleted (expired series)
        self.source = source
        self.last_export_ns = last_export_ns
        self.round = round_
        self.from_disk = from_disk    # loaded and not used since: a 0.1 row may be taken over
        self.source_round = 0         # the source's round counter when this target was last seen

    def add(self, key: SeriesKey, prev: PrevPoint) -> None:
        """A series not held yet: it gets the next id and its key row is written with the next save."""
        self.series[key] = prev._replace(id=self.next_id)
        self.next_id += 1
        self.unsaved.add(key)

    def drop(self, key: SeriesKey) -> None:
        self.unsaved.discard(key)
        self.gone.add(self.series.pop(key).id)


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
                stored = read_rows(db, self.exporter)
        except sqlite3.Error as exc:
            raise StateError(f"The delta state database {path} of exporter {self.exporter} cannot be used "
                             f"({exc}). Check that the state directory is writable; if the file is corrupt, "
                             f"move it away (the next round becomes a new baseline).") from exc
        self.path = path
        if not load:
            self._db = db
            self._rewrite_all = True
            return
        for text, last, rnd in stored.targets:
            self._target(text, last, rnd)
        self._load_packed(stored.keys, stored.values)
        if stored.series:
            self._load_rows(db, path, stored.series)
        self._db = db

    def _target(self, text: str, last_export_ns: int | None, round_: int) -> _Target:
        source, identified = target_source(text)
        t = self._targets[text] = _Target(source, last_export_ns, round_, from_disk=not identified)
        self._by_source.setdefault(source, set()).add(text)
        return t

    def _load_packed(self, keys: list[tuple[str, int, str]], blobs: list[tuple[str, bytes]]) -> None:
        """The packed format: each target's key rows and its one value row (``promotel.export.deltastore``)."""
        texts: dict[str, dict[int, str]] = {}
        for tname, id_, text in keys:
            texts.setdefault(tname, {})[id_] = text
        for tname, blob in blobs:
            t = self._targets.get(tname) or self._target(tname, None, 0)
            try:
                entries = decode_values(blob)
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
            t.add(key, PrevPoint(start, time_ns, value, sum_, unpack_floats(bounds), unpack_floats(counts), rnd, True))
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
            for table in TABLES:
                db.execute(f"DELETE FROM {table} WHERE exporter = ?", (exp,))
            names: Iterable[str] = list(self._targets)
        else:
            if self._deleted_targets:
                gone_targets = [(exp, t) for t in self._deleted_targets]
                for table in TABLES:
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
            values.append((exp, name, encode_values(series.values())))
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
                    new = PrevPoint(n.start_ns, n.time_ns, n.value, None, (), (), rnd, False, sid)
                    delta = self._sum_delta(n, prev, last_export)
                else:
                    h: HistogramPoint = p  # type: ignore[assignment]
                    new = PrevPoint(h.start_ns, h.time_ns, h.count, h.sum, h.bounds, h.counts, rnd, False, sid)
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
    def _is_reset_start(p_start: int, p_created: int | None, prev: PrevPoint) -> bool:
        if prev.restored:
            # The converter's first-seen start times are new after a restart: only ``_created`` counts.
            return p_created is not None and p_created != prev.start_ns
        return p_start != prev.start_ns

    def _sum_delta(self, p: NumberPoint, prev: PrevPoint | None, last_export: int | None) -> Point | None:
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

    def _hist_delta(self, p: HistogramPoint, prev: PrevPoint | None, last_export: int | None) -> Point | None:
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


# The storage names below are ``promotel.export.deltastore``'s, re-exported: they were defined here before.
__all__ = ["SCHEMA", "SERIES_FORMAT", "SUMMARY_POLICIES", "TARGET_FORMAT", "TARGET_IDENTITY", "VALUES_MAGIC",
           "DeltaState", "SeriesKey", "StoredSeries", "series_key", "series_text", "state_file", "stored_series",
           "summaries_for_delta", "target_key", "target_source"]
