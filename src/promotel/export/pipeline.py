"""One exporter's queue: temporality, encoding, the write-ahead queue, sending with retries.

Why one module over 600 lines: ``ExporterPipeline`` is one state machine (memory queue, write-ahead
queue, retries, 413 splitting) whose invariants span its methods. Its counters, readiness and status
snapshot are in ``promotel.export.status`` (``ExporterStatus``, its base class).

State (all of it, per exporter): the requests held in memory (at most ``queue_size`` batches), the
exporter's state database when there is a ``state_dir`` (``promotel.export.spool.ExporterStore``: the
write-ahead queue and the delta state), the delta state in memory (``promotel.export.delta``), and the
counters shown by ``status()`` (``promotel.export.status``).

With a state_dir (and ``spool.enabled``, the default) — the write-ahead queue::

    submit(batch) ─▶ summaries policy ─▶ cumulative→delta ─▶ encode (split under the size limit)
                  ─▶ ONE transaction: the batch's requests + the delta state after it   (durable here)
                  ─▶ memory (≤ queue_size batches; older ones are read back from disk when their turn comes)
    worker ─▶ send, retrying retryable errors with exponential backoff and full jitter
             ─ accepted, or refused for good ─▶ the request's row is deleted (acknowledged)
             ─ retries exhausted ─▶ the backend counts as down: nothing is sent but one probe per backoff
                                    interval, with the oldest request; everything stays on disk meanwhile

Every batch is on disk before the first attempt to send it and leaves it only once the backend answered
for it, so ``kill -9`` at any moment loses nothing that was submitted; on start the rows left are sent
again, oldest first, alternating with fresh batches so fresh data is never starved. A request in flight
at the kill is sent again (at-least-once, as OTLP allows).

Storage faults (a full disk, I/O errors): the real error is logged (once per kind until persisting works
again), batches that cannot be written stay in memory (within ``queue_size``) and are sent from there as
usual: a storage fault never blocks delivery. Writing is retried with backoff; the first write that
works also writes the batches still waiting in memory. What has to be dropped (the memory bound reached)
is counted by reason and logged.

Without a state_dir (or with ``spool.enabled: false``) — the in-memory queue: batches wait as they are
(``TargetBatch``) and are prepared when their turn comes; retries exhausted drop the request (counted);
a full queue drops its oldest batch (counted). Under delta temporality a dropped batch has not passed the
delta state, so its increase is folded into the next delta instead of being lost. A restart loses what is
queued (and, without a state_dir, the delta state): the service says so at start.

A backend answering that a request is too large (``ExportError`` kind ``too_large``: HTTP 413, gRPC
RESOURCE_EXHAUSTED for the message size) gets the request split in two halves by data points
(``promotel.export.encode.split_request``), each retried, recursively up to ``MAX_SPLIT_DEPTH`` levels; a
single point that is still too large is dropped (counted, logged).

Readiness (``ready``, ``promotel.export.status``): not ready while the exporter dropped data within the
last ``unready_after`` seconds, or when every attempt failed for longer than that.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

from promotel.errors import ExportError, PromotelError, StateError
from promotel.export.prepare import (
    BatchPreparer,
    DeltaConverter,
    Encoder,
    SummaryPolicy,
)
from promotel.export.presets import ResolvedExporter
from promotel.export.sender import Sender, make_sender
from promotel.export.spool import ExporterStore, StorageError
from promotel.export.status import DEFAULT_UNREADY_AFTER, ExporterStatus, QueueFigures
from promotel.model import TargetBatch, Temporality

log = logging.getLogger("promotel.export")

MAX_SPLIT_DEPTH = 16               # a request answered "too large" is halved at most this many times
STORAGE_RETRY_MIN = 1.0            # seconds before writing is tried again after a storage fault …
STORAGE_RETRY_MAX = 30.0           # … doubling up to this

Splitter = Callable[[bytes], list[bytes]]


def batch_points(batch: TargetBatch) -> int:
    return sum(len(m.points) for m in batch.metrics)


def count_points(request: bytes) -> int:
    """Data points in a serialized ``ExportMetricsServiceRequest`` (0 when it cannot be decoded)."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    try:
        message = ExportMetricsServiceRequest.FromString(request)
    except DecodeError:
        return 0
    n = 0
    for rm in message.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind is not None:
                    n += len(getattr(m, kind).data_points)
    return n


def _raise_if_cancelled() -> None:
    """Re-raise a cancellation a sender swallowed. grpc.aio answers a cancelled call that failed at the same
    moment with the call's error instead of ``CancelledError``; the task stays marked as cancelling, and a
    worker that carried on would wait forever at its next idle wait (a shutdown that never ends)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _default_splitter() -> Splitter | None:
    """``promotel.export.encode.split_request`` when this version has it, else None (too large = permanent)."""
    from promotel.export import encode

    split = getattr(encode, "split_request", None)
    return split if callable(split) else None


class _Entry:
    """One request in the queue's hands. ``id``: its row in the state database (None: in memory only);
    ``reason``: why an in-memory request is not on disk, which is also the drop reason if it must go
    (``storage_error``: waiting to be written; ``spool_full``: larger than the persisted queue)."""

    __slots__ = ("body", "created", "depth", "id", "points", "reason")

    def __init__(self, body: bytes, points: int, created: float, *, depth: int = 0,
                 reason: str | None = None) -> None:
        self.id: int | None = None
        self.body = body
        self.points = points
        self.created = created        # unix time it was queued
        self.depth = depth            # how many times it was split
        self.reason = reason


class _Group:
    """One submitted batch in memory: ``batch`` (prepared when sent: no persisted queue) or its requests."""

    __slots__ = ("batch", "created", "entries", "target")

    def __init__(self, target: str, created: float, *, batch: TargetBatch | None = None,
                 entries: Iterable[_Entry] = ()) -> None:
        self.target = target
        self.created = created
        self.batch = batch
        self.entries: deque[_Entry] = deque(entries)


class ExporterPipeline(ExporterStatus):
    """The queue and retries of one exporter. ``run()`` is its worker; ``submit()`` feeds it. Its counters,
    ``status()`` and ``ready()`` come from ``ExporterStatus``."""

    def __init__(self, resolved: ResolvedExporter, *, sender: Sender | None = None, state_dir: str | None = None,
                 encode: Encoder | None = None, to_delta: DeltaConverter | None = None,
                 summaries: SummaryPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: Callable[[], float] = random.random,
                 split: Splitter | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        super().__init__(resolved.name, resolved.protocol, clock)
        self.resolved = resolved
        self.sender: Sender = sender if sender is not None else make_sender(resolved)
        self._sleep = sleep
        self._rng = rng
        self._wall = wall
        self._split = split
        # Defaults (no retry/spool section) are the config model's: promotel.config.RetryConfig, SpoolConfig.
        self.initial_interval = resolved.retry.initial_interval
        self.max_interval = resolved.retry.max_interval
        self.max_elapsed = resolved.retry.max_elapsed
        self.queue_size = max(1, int(resolved.queue_size))
        wants_delta = to_delta is None and resolved.temporality is Temporality.DELTA
        self.store: ExporterStore | None = None
        if state_dir and (resolved.spool.enabled or wants_delta):
            self.store = ExporterStore(state_dir, self.name, max_bytes=resolved.spool.max_bytes, wall=wall)
        # The write-ahead queue: every batch on disk before it is sent.
        self.durable = self.store is not None and resolved.spool.enabled
        from promotel.export.delta import DeltaState

        self._delta_state: DeltaState | None = None
        if wants_delta:
            self._delta_state = DeltaState(self.name, None)
            to_delta = self._delta_state
        self._delta = to_delta
        self.preparer = BatchPreparer(resolved, delta=to_delta, encode=encode, summaries=summaries)
        # the queue
        self._fresh: deque[_Group] = deque()            # submitted batches in memory, oldest first
        self._resident: dict[int, _Entry] = {}          # persisted requests held in memory or in flight, by row
        self._acked: set[int] = set()                   # acknowledged rows whose deletion failed (retried)
        self._work: deque[_Entry] = deque()             # what the worker is sending now
        self._split_parts: list[_Entry] = []
        self._down = False            # retries were exhausted: one request probes until the backend answers
        self._probe_attempt = 0
        self._backlog_turn = False    # alternate persisted (backlog) and fresh work
        self._inflight = 0
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        # storage faults
        self.storage_error: StorageError | None = None
        self._storage_logged: set[str] = set()
        self._storage_retry_at = 0.0
        self._storage_backoff = STORAGE_RETRY_MIN
        self._backlog_blocked_until = 0.0
        if self.store is not None:
            self._open_store(first=True)

    # ── the state database ───────────────────────────────────────────────────────────────────
    def _open_store(self, *, first: bool) -> bool:
        """Open the state database (``StateError`` when the state directory cannot be created at all: a
        configuration problem); a fault that may pass is logged and retried later."""
        assert self.store is not None
        try:
            self.store.open()
        except StorageError as exc:
            self._storage_fault(exc)
            return False
        self.store.ensure_reserve()
        if self._delta_state is not None and self.store.db is not None:
            try:
                # At start the state is read from disk; attached later (after a fault) memory is newer.
                self._delta_state.attach(self.store.db, self.store.path, load=first)
            except StateError as exc:
                log.error("Exporter %s cannot read the delta state in %s: %s; it keeps its delta state in memory "
                          "only.", self.name, self.store.path, exc, extra={"fields": {"exporter": self.name}})
        self._storage_ok()
        return True

    def _storage_available(self, *, force: bool = False, new_data: bool = True) -> bool:
        """True when the state database may be written now: open, and no fault waiting for its retry time.
        After a full disk, new requests are written only once the space reserve could be allocated again
        (``new_data``; deleting acknowledged rows needs no such room)."""
        store = self.store
        if store is None:
            return False
        if store.db is not None and self.storage_error is None:
            return True
        if not force and self._clock() < self._storage_retry_at:
            return False
        if store.db is None:
            return self._open_store(first=False)
        # The freed reserve is for deleting and compacting: new data waits until the reserve can be taken again
        # — once the backlog is delivered and compacted, or, while it is not, once there is room for the reserve
        # and as much again (space freed by someone else).
        if new_data and store.reserve_released and (
                (store.count and store.free_bytes() < 2 * store.reserve_bytes) or not store.ensure_reserve()):
            self._storage_retry_at = self._clock() + self._storage_backoff
            self._storage_backoff = min(STORAGE_RETRY_MAX, self._storage_backoff * 2)
            return False
        return True

    def _storage_fault(self, exc: StorageError) -> None:
        self.storage_error = exc
        self.storage_errors[exc.kind] = self.storage_errors.get(exc.kind, 0) + 1
        self._storage_retry_at = self._clock() + self._storage_backoff
        self._storage_backoff = min(STORAGE_RETRY_MAX, self._storage_backoff * 2)
        if exc.kind not in self._storage_logged:     # once per kind until it works again
            self._storage_logged.add(exc.kind)
            log.error("Exporter %s cannot persist its queue: %s. Batches are kept in memory (up to queue_size=%d "
                      "batches) and sent from there; writing is retried.", self.name, exc, self.queue_size,
                      extra={"fields": {"exporter": self.name, "error.type": exc.kind}})
        if exc.kind in ("disk_full", "io_error") and self.store is not None:
            self.store.try_checkpoint()
            freed = self.store.release_reserve()
            if freed:
                log.info("Exporter %s gave back its %d-byte space reserve (%s) so that what the backend "
                         "acknowledges can be deleted, and the file compacted once its queue is delivered.",
                         self.name, freed, self.store.reserve_path, extra={"fields": {"exporter": self.name}})

    def _storage_ok(self) -> None:
        if self.storage_error is not None:
            log.info("Exporter %s writes its state database again.", self.name,
                     extra={"fields": {"exporter": self.name}})
            if self.store is not None:
                self.store.ensure_reserve()
        self.storage_error = None
        self._storage_logged.clear()
        self._storage_backoff = STORAGE_RETRY_MIN
        self._backlog_blocked_until = 0.0

    def _persist(self, new: list[_Entry], *, force: bool = False) -> None:
        """Write ``new`` requests — after those still waiting in memory, and with the delta state — in one
        transaction. What cannot be written stays in memory, marked to be written later."""
        store = self.store
        assert store is not None
        waiting = self._waiting_entries()
        if not self._storage_available(force=force):
            self._keep_in_memory(new)
            return
        entries = waiting + new
        delta = self._delta_state if self._delta_state is not None and self._delta_state.path == store.path else None
        try:
            stored = store.put([(e.body, e.points, e.created) for e in entries], delta=delta, delete=self._acked)
        except StorageError as exc:
            self._storage_fault(exc)
            self._keep_in_memory(new)
            return
        self._storage_ok()
        self._acked.clear()
        too_big = 0
        for e, row_id in zip(entries, stored.ids):
            if row_id is None:
                e.reason = "spool_full"
                too_big += 1
            else:
                e.id, e.reason = row_id, None
                self._resident[row_id] = e
        if too_big and "spool_too_small" not in self._logged_kinds:
            self._logged_kinds.add("spool_too_small")
            log.warning("A batch of exporter %s is larger than its whole persisted queue (spool.max_bytes=%d): it is "
                        "kept in memory only and lost on a restart; raise spool.max_bytes.", self.name,
                        store.max_bytes, extra={"fields": {"exporter": self.name}})
        if delta is None and self._delta is not None:
            self._commit_delta()
        self._evicted(stored.evicted)

    @staticmethod
    def _keep_in_memory(entries: list[_Entry]) -> None:
        for e in entries:
            e.reason = "storage_error"

    @property
    def _unpersisted(self) -> int:
        """Requests in memory waiting to be written."""
        return len(self._waiting_entries()) if self.durable else 0

    def _waiting_entries(self) -> list[_Entry]:
        """Requests in memory waiting to be written, oldest first (the one in flight included)."""
        out = [e for e in self._work if e.id is None and e.reason == "storage_error"]
        for g in self._fresh:
            out.extend(e for e in g.entries if e.id is None and e.reason == "storage_error")
        return out

    def _evicted(self, evicted: Iterable[tuple[int, int]]) -> None:
        """Rows the size cap deleted: one still in memory is kept there (no longer durable); others are lost."""
        lost_requests = lost_points = 0
        for row_id, points in evicted:
            was_acked = row_id in self._acked
            self._acked.discard(row_id)
            e = self._resident.pop(row_id, None)
            if e is not None:
                e.id, e.reason = None, "spool_full"
            elif not was_acked:
                lost_requests += 1
                lost_points += points
        if lost_requests:
            self._drop("spool_full", lost_points)
            assert self.store is not None
            log.warning("The persisted queue of exporter %s is full (spool.max_bytes=%d): dropped the %d oldest "
                        "requests (%d points) to make room; raise spool.max_bytes or fix the backend.", self.name,
                        self.store.max_bytes, lost_requests, lost_points,
                        extra={"fields": {"exporter": self.name, "reason": "spool_full"}})

    def _retry_acks(self, *, force: bool = False) -> None:
        if not self._acked or self.store is None:
            return
        # With the reserve given back there is room to delete: do not wait for the backoff (it frees the disk).
        if not self._storage_available(force=force or self.store.reserve_released, new_data=False):
            return
        try:
            self.store.delete(self._acked)
        except StorageError as exc:
            self._storage_fault(exc)
            return
        # Deleting may work on a full disk (the reserve): only writing new requests ends a storage fault.
        self._acked.clear()
        if self.storage_error is not None and not self.store.count:
            # The backlog is delivered (and the file compacted): try writing again now, not at the backoff's end.
            self._storage_retry_at = 0.0
            self._storage_backoff = STORAGE_RETRY_MIN

    def _commit_delta(self) -> None:
        """The delta state after a batch, when it is not written with the batch's requests."""
        try:
            self.preparer.commit()
        except StateError as exc:
            self._storage_fault(exc if isinstance(exc, StorageError) else StorageError(str(exc), "error"))

    # ── feeding ──────────────────────────────────────────────────────────────────────────────
    def submit(self, batch: TargetBatch) -> None:
        """Queue one scrape's batch. Never waits for the backend and never raises: with a persisted queue the
        batch is prepared and written here (one fsync), before anything is sent; the memory bound drops
        (counted) only what is not on disk."""
        try:
            created = self._wall()
            if not self.durable:
                self._fresh.append(_Group(batch.target, created, batch=batch))
            else:
                try:
                    requests = self._prepare(batch)
                except PromotelError as exc:
                    self._drop("encode_error", batch_points(batch))
                    log.error("Exporter %s could not encode a batch of target %s (dropped): %s", self.name,
                              batch.target, exc, extra={"fields": {"exporter": self.name, "reason": "encode_error"}})
                    return
                entries = [_Entry(body, points, created) for body, points in requests]
                self._persist(entries)
                self._fresh.append(_Group(batch.target, created, entries=entries))
            self._enforce_bound()
        except Exception:  # broad on purpose: submit runs in the scraper's loop: a bug costs this batch only
            log.exception("Exporter %s dropped a batch of target %s because of an internal error (a bug: please "
                          "report it with this traceback).", self.name, batch.target,
                          extra={"fields": {"exporter": self.name}})
            self.dropped["internal_error_batches"] = self.dropped.get("internal_error_batches", 0) + 1
        if self._wake is not None:
            self._wake.set()

    def _enforce_bound(self) -> None:
        """At most ``queue_size`` batches in memory; while the backend is down, only what is not on disk."""
        while len(self._fresh) > self.queue_size:
            self._evict_group(self._fresh.popleft())
        if self._down and self._resident:
            for g in list(self._fresh):
                kept = [e for e in g.entries if e.id is None]
                if len(kept) != len(g.entries):
                    for e in g.entries:
                        if e.id is not None:
                            self._resident.pop(e.id, None)      # on disk: read back when its turn comes
                    g.entries = deque(kept)
                    if not kept:
                        self._fresh.remove(g)

    def _evict_group(self, g: _Group) -> None:
        if g.batch is not None:
            points = batch_points(g.batch)
            self._drop("queue_full", points)
            log.warning("The queue of exporter %s is full (%d batches): dropped the oldest batch (%d points) "
                        "of target %s; the backend is too slow or down, configure a state_dir to spool.",
                        self.name, self.queue_size, points, g.target,
                        extra={"fields": {"exporter": self.name, "reason": "queue_full"}})
            return
        lost: dict[str, int] = {}
        for e in g.entries:
            if e.id is not None:
                self._resident.pop(e.id, None)       # on disk: sent from there when its turn comes
            else:
                reason = e.reason or "queue_full"
                lost[reason] = lost.get(reason, 0) + e.points
        for reason, points in lost.items():
            self._drop(reason, points)
            log.warning("The memory queue of exporter %s is full (%d batches): dropped %d points of target %s that "
                        "could not be persisted (%s).", self.name, self.queue_size, points, g.target, reason,
                        extra={"fields": {"exporter": self.name, "reason": reason}})

    # ── the worker ───────────────────────────────────────────────────────────────────────────
    async def run(self) -> None:
        """The worker loop; the service runs it as one task per exporter until cancelled.

        Only one worker may run per pipeline (two would send a persisted request twice): a second
        call returns at once.
        """
        if self._running:
            return
        self._running = True
        self._wake = asyncio.Event()
        try:
            while True:
                _raise_if_cancelled()
                try:
                    await self._step()
                except PromotelError as exc:
                    log.error("Exporter %s hit an error it cannot recover from for this batch: %s",
                              self.name, exc, extra={"fields": {"exporter": self.name}})
                    await self._sleep(1.0)
                except Exception:  # broad on purpose: a bug must cost one batch, never the exporter
                    log.exception("Exporter %s dropped a batch because of an internal error (a bug: please "
                                  "report it with this traceback); it keeps sending.", self.name,
                                  extra={"fields": {"exporter": self.name}})
                    self.dropped["internal_error_batches"] = self.dropped.get("internal_error_batches", 0) + 1
                    await self._sleep(1.0)
        finally:
            self._running = False

    async def _step(self) -> None:
        if self._acked:
            self._retry_acks()
        if self._unpersisted and self._storage_available():
            self._persist([])
        if self._down:
            await self._probe()
            return
        backlog = self._backlog_ready()
        if not self._fresh and not backlog:
            assert self._wake is not None
            self._wake.clear()
            if self._acked or self._backlog_rows():
                # Something waits for the storage to work again: look again when its retry time comes.
                delay = max(0.05, self._storage_retry_at - self._clock())
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that arrives as
                # it times out or completes (the worker would then never stop).
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            else:
                await self._wake.wait()
            return
        if backlog and (self._backlog_turn or not self._fresh):
            self._backlog_turn = False
            entry = self._take_backlog()
            if entry is not None:
                await self._send_work(deque([entry]))
        else:
            self._backlog_turn = True
            await self._send_work(self._group_entries(self._fresh.popleft()))

    def _backlog_rows(self) -> int:
        """Persisted requests not in memory and not acknowledged: what is sent from the database."""
        if not self.durable or self.store is None or self.store.db is None:
            return 0
        return max(0, self.store.count - len(self._resident) - len(self._acked))

    def _backlog_ready(self) -> int:
        if self._clock() < self._backlog_blocked_until:
            return 0
        return self._backlog_rows()

    def _take_backlog(self) -> _Entry | None:
        assert self.store is not None
        try:
            row = self.store.oldest(exclude=self._resident.keys() | self._acked)
        except StorageError as exc:
            self._storage_fault(exc)
            self._backlog_blocked_until = self._storage_retry_at
            return None
        if row is None:       # the counts disagree with the table: count again
            try:
                self.store._reload_totals()
            except StorageError as exc:
                self._storage_fault(exc)
                self._backlog_blocked_until = self._storage_retry_at
            return None
        e = _Entry(row.request, row.points, row.created)
        e.id = row.id
        self._resident[row.id] = e
        return e

    def _take_fresh_entry(self) -> _Entry | None:
        while self._fresh:
            g = self._fresh[0]
            if g.batch is not None:
                g.entries = self._group_entries(g)
                g.batch = None
            if g.entries:
                e = g.entries.popleft()
                if not g.entries:
                    self._fresh.popleft()
                return e
            self._fresh.popleft()
        return None

    def _group_entries(self, g: _Group) -> deque[_Entry]:
        if g.batch is None:
            return g.entries
        try:
            requests = self._prepare(g.batch)
        except PromotelError as exc:
            self._drop("encode_error", batch_points(g.batch))
            log.error("Exporter %s could not encode a batch of target %s (dropped): %s", self.name,
                      g.target, exc, extra={"fields": {"exporter": self.name, "reason": "encode_error"}})
            return deque()
        return deque(_Entry(body, points, g.created) for body, points in requests)

    async def _send_work(self, work: deque[_Entry], *, probe: bool = False) -> None:
        """Send ``work`` in order. A request leaves it delivered or dropped (acknowledged), split (its
        halves take its place), or — retries exhausted — the backend is down and what is left stays
        queued (on disk, or in memory)."""
        self._work = work
        self._inflight += 1
        try:
            while work:
                e = work[0]
                result = await self._deliver(e, single=probe)
                if result == "split":
                    work.popleft()
                    work.extendleft(reversed(self._split_parts))
                    self._split_parts = []
                    continue
                if result == "failed":
                    if self.durable:
                        self._release(work)
                        if probe:
                            self._probe_attempt += 1
                        else:
                            self._mark_down()
                        return
                    work.popleft()
                    self._drop("retries_exhausted", e.points)
                    log.warning("Exporter %s dropped a request with %d points after retries were exhausted; "
                                "configure a state_dir to keep it instead.", self.name, e.points,
                                extra={"fields": {"exporter": self.name, "reason": "retries_exhausted"}})
                    continue
                work.popleft()
                self._ack(e)
                e.reason = None                  # answered for: nothing left to write or to drop
                if probe:
                    probe = False
                    self._recovered()
                _raise_if_cancelled()            # acknowledged first: a shutdown here re-sends nothing
        except asyncio.CancelledError:
            self._release(work)     # shutdown mid-batch: what was not answered stays queued
            raise
        finally:
            self._work = deque()
            self._inflight -= 1
            if not self.durable and self._delta is not None:
                self._commit_delta()

    def _release(self, work: deque[_Entry]) -> None:
        """Put unsent requests back: persisted ones are read from disk again, the others go back to memory."""
        kept = []
        for e in work:
            if e.id is not None:
                self._resident.pop(e.id, None)
            else:
                kept.append(e)
        work.clear()
        if kept:
            self._fresh.appendleft(_Group("(requeued)", kept[0].created, entries=kept))
            self._enforce_bound()

    def _ack(self, e: _Entry) -> None:
        """The backend answered for this request (accepted, or refused for good): delete its row."""
        if e.id is None:
            return
        row_id, e.id = e.id, None
        self._resident.pop(row_id, None)
        self._acked.add(row_id)
        self._retry_acks()

    async def _probe(self) -> None:
        """Backend down: wait, then send the oldest request once; the first answer ends the outage."""
        await self._sleep(self._backoff(self._probe_attempt))
        entry = self._take_backlog() if self._backlog_ready() else self._take_fresh_entry()
        if entry is None:
            if not self._fresh and not self._backlog_rows():
                self._down = False     # nothing left to probe with: the next batch is sent as usual
            return
        await self._send_work(deque([entry]), probe=True)

    # ── delivery of one request ──────────────────────────────────────────────────────────────
    async def _deliver(self, e: _Entry, *, single: bool = False) -> str:
        """Send with retries (one attempt when ``single``): ``delivered``, ``dropped`` (refused for good),
        ``split`` (too large: ``_split_parts`` replace it) or ``failed`` (retries exhausted)."""
        started = self._clock()
        attempt = 0
        while True:
            try:
                outcome = await self.sender.send(e.body)
            except ExportError as exc:
                _raise_if_cancelled()
                self._count_failure(exc)
                if exc.kind == "too_large":
                    return self._too_large(e, exc)
                if not exc.retryable:
                    self._permanent(exc, e.points)
                    return "dropped"
                if single:
                    self.retries += 1
                    return "failed"
                # The server's Retry-After / RetryInfo wins over our own backoff.
                delay = exc.retry_after if exc.retry_after is not None else self._backoff(attempt)
                if self._clock() - started + delay > self.max_elapsed:
                    log.warning("Exporter %s gave up retrying after %.1f s: %s", self.name,
                                self._clock() - started, exc,
                                extra={"fields": {"exporter": self.name, "error.type": exc.kind}})
                    return "failed"
                log.debug("Exporter %s will retry in %.2f s: %s", self.name, delay, exc)
                self.retries += 1
                attempt += 1
                await self._sleep(delay)
                continue
            self._accepted(e.points, outcome.rejected_points, outcome.message)
            return "delivered"

    def _too_large(self, e: _Entry, exc: ExportError) -> str:
        """Split a request the backend refused as too large into halves that take its place."""
        split = self._split if self._split is not None else _default_splitter()
        if split is None:                        # this version cannot split: a permanent error
            self._permanent(exc, e.points)
            return "dropped"
        try:
            if e.depth >= MAX_SPLIT_DEPTH:
                raise ExportError(f"split {MAX_SPLIT_DEPTH} times already", exporter=self.name)
            bodies = split(e.body)
        except ExportError as why:
            self._drop("too_large", e.points)
            log.error("Exporter %s dropped a request of %d bytes (%d points) that its backend refuses as too large "
                      "and that cannot be split further (%s): %s", self.name, len(e.body), e.points, why, exc,
                      extra={"fields": {"exporter": self.name, "reason": "too_large"}})
            return "dropped"
        parts = [_Entry(body, count_points(body), e.created, depth=e.depth + 1) for body in bodies]
        if "too_large" not in self._logged_kinds:
            self._logged_kinds.add("too_large")
            log.warning("Exporter %s: the backend refuses a request of %d bytes as too large (%s); it is split "
                        "and the parts are sent instead (lower max_request_bytes to avoid this).", self.name,
                        len(e.body), exc, extra={"fields": {"exporter": self.name, "error.type": "too_large"}})
        if e.id is None:
            for p in parts:
                p.reason = e.reason              # waiting to be written, like the request they replace
            e.reason = None
        else:
            row_id, e.id = e.id, None
            self._resident.pop(row_id, None)
            ids: list[int] | None = None
            if self.store is not None and self._storage_available():
                try:
                    ids = self.store.replace(row_id, [(p.body, p.points, p.created) for p in parts])
                except StorageError as fault:
                    self._storage_fault(fault)
            if ids is not None:
                for p, part_id in zip(parts, ids):
                    p.id = part_id
                    self._resident[part_id] = p
            else:
                self._acked.add(row_id)          # the original is done with; its parts wait in memory
                self._keep_in_memory(parts)
        self._split_parts = parts
        return "split"

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(max_interval, initial·2^attempt)]."""
        ceiling = min(self.max_interval, self.initial_interval * (2.0 ** min(attempt, 30)))
        return self._rng() * ceiling

    # ── bookkeeping ──────────────────────────────────────────────────────────────────────────
    def _prepare(self, batch: TargetBatch) -> list[tuple[bytes, int]]:
        """Summaries policy, delta, encoding (``BatchPreparer``): the batch as requests with their point counts."""
        prepared = self.preparer.prepare(batch)
        self.dropped_attributes += prepared.dropped_attributes
        return list(prepared.requests)

    def _mark_down(self) -> None:
        if not self._down:
            log.warning("Exporter %s is unreachable; its queue is kept in %s until the backend answers again.",
                        self.name, self.store.path if self.store is not None else "memory",
                        extra={"fields": {"exporter": self.name}})
        self._down = True
        self._probe_attempt = 0
        self._enforce_bound()

    def _recovered(self) -> None:
        self._down = False
        self._probe_attempt = 0
        log.info("Exporter %s answers again; sending the %d requests queued meanwhile, oldest first.", self.name,
                 self._backlog_rows() + sum(len(g.entries) for g in self._fresh),
                 extra={"fields": {"exporter": self.name}})

    # ── service hooks ────────────────────────────────────────────────────────────────────────
    def _memory_requests(self) -> int:
        return sum(len(g.entries) if g.batch is None else 1 for g in self._fresh)

    def _drained(self) -> bool:
        return not self._fresh and not self._inflight and not self._backlog_rows()

    async def flush(self, timeout: float) -> bool:
        """Deliver what is queued (in memory and on disk) within ``timeout`` s; True when nothing is left.

        Starts the worker if nobody did. On timeout, requests waiting in memory to be written are written
        when the storage allows, so a following shutdown loses nothing that could be kept.
        """
        await asyncio.sleep(0)     # let a worker task created just before this call start first
        if not self._running and self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"export:{self.name}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._wake is not None:
            self._wake.set()
        while loop.time() < deadline:
            if self._drained():
                return True
            await asyncio.sleep(0.01)
        if self._drained():
            return True
        if self.durable and self._unpersisted:
            self._persist([], force=True)
        return False

    def _oldest_unacknowledged(self) -> float | None:
        times = [e.created for g in self._fresh for e in g.entries if e.id is None]
        times += [g.created for g in self._fresh if g.batch is not None]
        times += [e.created for e in self._work]
        if self.store is not None:
            oldest = self.store.oldest_created()
            if oldest is not None:
                times.append(oldest)
        return min(times) if times else None

    def _queue_figures(self) -> QueueFigures:
        """The queue's figures for ``status()`` (``promotel.export.status``)."""
        store = self.store if self.durable else None
        return QueueFigures(
            down=self._down,
            durable=self.durable,
            backlog=self._backlog_rows(),
            queue_length=len(self._fresh),
            queue_size=self.queue_size,
            memory_requests=self._memory_requests(),
            persisted_requests=store.count if store is not None else 0,
            persisted_bytes=store.total_bytes if store is not None else 0,
            not_persisted_requests=self._unpersisted,
            oldest_unacknowledged=self._oldest_unacknowledged(),
            storage=None if self.store is None else {
                "path": self.store.path,
                "state": "ok" if self.storage_error is None and self.store.db is not None else "fault",
                "error": None if self.storage_error is None else str(self.storage_error),
                "errors": dict(self.storage_errors),
            },
        )

    async def aclose(self) -> None:
        """Stop the worker this pipeline started itself; write what waits in memory when possible, count what
        is lost; close the sender and the state database."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.durable and self._unpersisted:
            self._persist([], force=True)
        self._retry_acks(force=True)
        lost_batches = lost_points = 0
        for g in self._fresh:
            if g.batch is not None:
                lost_batches += 1
                lost_points += batch_points(g.batch)
            else:
                points = sum(e.points for e in g.entries if e.id is None)
                if points:
                    lost_batches += 1
                    lost_points += points
        if lost_points:
            self._drop("shutdown", lost_points)
            log.warning("Exporter %s stops with %d batches (%d points) in memory that were neither delivered nor "
                        "persisted; they are lost%s.", self.name, lost_batches, lost_points,
                        "" if self.durable else " (configure a state_dir to keep them)",
                        extra={"fields": {"exporter": self.name, "reason": "shutdown"}})
        self._fresh.clear()
        self._resident.clear()
        await self.sender.aclose()
        close = getattr(self._delta, "close", None)
        if callable(close):
            close()
        if self.store is not None:
            self.store.close()


__all__ = ["DEFAULT_UNREADY_AFTER", "MAX_SPLIT_DEPTH", "DeltaConverter", "Encoder", "ExporterPipeline", "Splitter",
           "SummaryPolicy", "count_points"]
