"""One exporter's queue: temporality, encoding, sending with retries, and the spool.

State (all of it, per exporter): the bounded in-memory queue of ``TargetBatch``es, the on-disk
spool (``promotel.export.spool``), the delta state when the exporter wants delta
(``promotel.export.delta``), and the counters shown by ``status()``.

Flow per batch, in the exporter's own asyncio task, so a slow backend delays only itself::

    submit(batch) ─▶ queue ─▶ summaries policy ─▶ cumulative→delta ─▶ encode (split under the size limit)
                  ─▶ send, retrying retryable errors with exponential backoff and full jitter
                     ─ accepted ─▶ counted (partial_success rejections too)
                     ─ permanent error ─▶ logged once per kind, dropped, counted
                     ─ retries exhausted ─▶ spool (or dropped and counted without one)

Once retries are exhausted the backend counts as down: new batches go straight to the spool and
one spooled request probes the backend at backoff intervals. When it answers, the spool drains
oldest first, alternating with fresh batches so fresh data is never starved.

The queue never blocks ``submit``: when it is full the oldest batch moves to the spool, or is dropped
(counted, logged) when there is none. Under delta temporality a dropped batch has not passed the
delta state, so its increase is folded into the next delta instead of being lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable

from promotel.errors import ExportError, PromotelError, StateError
from promotel.export.prepare import (
    BatchPreparer,
    DeltaConverter,
    Encoder,
    SummaryPolicy,
)
from promotel.export.presets import ResolvedExporter
from promotel.export.sender import Sender, make_sender
from promotel.export.spool import Spool, spool_path
from promotel.model import TargetBatch, Temporality

log = logging.getLogger("promotel.export")


def _make_dir(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise StateError(f"cannot create the state directory {path}: {exc.strerror}; "
                         "check state_dir and its permissions.") from exc


def batch_points(batch: TargetBatch) -> int:
    return sum(len(m.points) for m in batch.metrics)


class ExporterPipeline:
    """The queue, retries and spool of one exporter. ``run()`` is its worker; ``submit()`` feeds it."""

    def __init__(self, resolved: ResolvedExporter, *, sender: Sender | None = None, state_dir: str | None = None,
                 encode: Encoder | None = None, to_delta: DeltaConverter | None = None,
                 summaries: SummaryPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: Callable[[], float] = random.random) -> None:
        self.resolved = resolved
        self.name = resolved.name
        self.sender: Sender = sender if sender is not None else make_sender(resolved)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        # Defaults (no retry/spool section) are the config model's: promotel.config.RetryConfig, SpoolConfig.
        self.initial_interval = resolved.retry.initial_interval
        self.max_interval = resolved.retry.max_interval
        self.max_elapsed = resolved.retry.max_elapsed
        self.queue_size = max(1, int(resolved.queue_size))
        self._queue: deque[TargetBatch] = deque()
        self.spool: Spool | None = None
        if state_dir and resolved.spool.enabled:
            self.spool = Spool(spool_path(state_dir, self.name), resolved.spool.max_bytes, exporter=self.name)
        if to_delta is None and resolved.temporality is Temporality.DELTA:
            from promotel.export.delta import DeltaState

            if state_dir:
                _make_dir(state_dir)       # DeltaState takes a missing directory for a file name
            to_delta = DeltaState(self.name, state_dir)
        self._delta = to_delta
        self.preparer = BatchPreparer(resolved, delta=to_delta, encode=encode, summaries=summaries)
        # counters (status() and self-telemetry read them)
        self.sent_requests = 0
        self.sent_points = 0
        self.retries = 0
        self.rejected_points = 0
        self.dropped_attributes = 0
        self.failed_requests: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.last_success: float | None = None    # unix time
        self.last_error: str | None = None
        self._logged_kinds: set[str] = set()
        self._down = False            # retries were exhausted; the spool probes until the backend answers
        self._failing = False         # the last request failed for good (what readiness reports without a spool)
        self._probe_attempt = 0
        self._spool_turn = False      # alternate spooled and fresh work while draining
        self._inflight = 0
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    # ── feeding ──────────────────────────────────────────────────────────────────────────────
    def submit(self, batch: TargetBatch) -> None:
        """Queue one scrape's batch. Never blocks: a full queue spools or drops its oldest batch."""
        if len(self._queue) >= self.queue_size:
            oldest = self._queue.popleft()
            if self.spool is not None:
                try:
                    self._spool_batch(oldest)
                except PromotelError as exc:     # e.g. a full disk: submit must never fail the scraper
                    self._drop("spool_error", batch_points(oldest))
                    log.error("Exporter %s could not spool a batch of target %s (dropped): %s", self.name,
                              oldest.target, exc, extra={"fields": {"exporter": self.name, "reason": "spool_error"}})
            else:
                points = batch_points(oldest)
                self._drop("queue_full", points)
                log.warning("The queue of exporter %s is full (%d batches): dropped the oldest batch (%d points) "
                            "of target %s; the backend is too slow or down, configure a state_dir to spool.",
                            self.name, self.queue_size, points, oldest.target,
                            extra={"fields": {"exporter": self.name, "reason": "queue_full"}})
        self._queue.append(batch)
        if self._wake is not None:
            self._wake.set()

    # ── the worker ───────────────────────────────────────────────────────────────────────────
    async def run(self) -> None:
        """The worker loop; the service runs it as one task per exporter until cancelled.

        Only one worker may run per pipeline (two would send a spooled request twice): a second
        call returns at once.
        """
        if self._running:
            return
        self._running = True
        self._wake = asyncio.Event()
        try:
            while True:
                try:
                    await self._step()
                except PromotelError as exc:
                    log.error("Exporter %s hit an error it cannot recover from for this batch: %s",
                              self.name, exc, extra={"fields": {"exporter": self.name}})
                    await self._sleep(1.0)
                except Exception:  # noqa: BLE001 - a bug must cost one batch, never the exporter
                    log.exception("Exporter %s dropped a batch because of an internal error (a bug: please "
                                  "report it with this traceback); it keeps sending.", self.name,
                                  extra={"fields": {"exporter": self.name}})
                    self.dropped["internal_error_batches"] = self.dropped.get("internal_error_batches", 0) + 1
                    await self._sleep(1.0)
        finally:
            self._running = False

    async def _step(self) -> None:
        if self._down and self.spool is not None:
            await self._probe()
            return
        spooled = len(self.spool) if self.spool is not None else 0
        if not self._queue and not spooled:
            assert self._wake is not None
            self._wake.clear()
            await self._wake.wait()
            return
        if spooled and (self._spool_turn or not self._queue):
            self._spool_turn = False
            await self._send_spooled()
        else:
            self._spool_turn = True
            await self._send_batch(self._queue.popleft())

    async def _send_batch(self, batch: TargetBatch) -> None:
        self._inflight += 1
        try:
            try:
                pending = self._prepare(batch)
            except PromotelError as exc:
                self._drop("encode_error", batch_points(batch))
                log.error("Exporter %s could not encode a batch of target %s (dropped): %s", self.name,
                          batch.target, exc, extra={"fields": {"exporter": self.name, "reason": "encode_error"}})
                return
            try:
                while pending:
                    request, points = pending[0]
                    if self._down and self.spool is not None:
                        self._spool_put(request, points)
                    else:
                        result = await self._deliver(request, points)
                        if result == "failed":
                            self._give_up(request, points)
                    pending.pop(0)
            except asyncio.CancelledError:
                # Shutdown mid-batch: what was not delivered goes to the spool (or is counted as lost).
                for request, points in pending:
                    if self.spool is not None:
                        self._spool_put(request, points)
                    else:
                        self._drop("shutdown", points)
                self._commit()
                raise
            self._commit()
        finally:
            self._inflight -= 1

    async def _send_spooled(self) -> None:
        assert self.spool is not None
        item = self.spool.peek()
        if item is None:
            return
        self._inflight += 1
        try:
            result = await self._deliver(item.request, item.points)
            if result == "failed":
                self._mark_down()
            else:
                self.spool.ack(item.id)
        finally:
            self._inflight -= 1

    async def _probe(self) -> None:
        """Backend down: move queued batches to the spool, wait, then try the oldest spooled request once."""
        assert self.spool is not None
        while self._queue:
            self._spool_batch(self._queue.popleft())
        await self._sleep(self._backoff(self._probe_attempt))
        item = self.spool.peek()
        if item is None:
            self._down = False
            return
        try:
            outcome = await self.sender.send(item.request)
        except ExportError as exc:
            self._count_failure(exc)
            if exc.retryable:
                self.retries += 1
                self._probe_attempt += 1
                return
            self._permanent(exc, item.points)    # the backend answers again, but refuses this request
            self.spool.ack(item.id)
            self._recovered()
            return
        self._accepted(item.points, outcome.rejected_points, outcome.message)
        self.spool.ack(item.id)
        self._recovered()

    # ── delivery of one request ──────────────────────────────────────────────────────────────
    async def _deliver(self, request: bytes, points: int) -> str:
        """Send with retries. ``delivered``, ``dropped`` (permanent error) or ``failed`` (retries exhausted)."""
        started = self._clock()
        attempt = 0
        while True:
            try:
                outcome = await self.sender.send(request)
            except ExportError as exc:
                self._count_failure(exc)
                if not exc.retryable:
                    self._permanent(exc, points)
                    return "dropped"
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
            self._accepted(points, outcome.rejected_points, outcome.message)
            return "delivered"

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

    def _spool_batch(self, batch: TargetBatch) -> None:
        assert self.spool is not None
        try:
            work = self._prepare(batch)
        except PromotelError as exc:
            self._drop("encode_error", batch_points(batch))
            log.error("Exporter %s could not encode a batch of target %s: %s", self.name, batch.target, exc)
            return
        for request, points in work:
            self._spool_put(request, points)
        self._commit()

    def _spool_put(self, request: bytes, points: int) -> None:
        assert self.spool is not None
        evicted = self.spool.put(request, points)
        if evicted.requests:
            self._drop("spool_full", evicted.points)

    def _give_up(self, request: bytes, points: int) -> None:
        if self.spool is not None:
            self._spool_put(request, points)
            self._mark_down()
        else:
            self._failing = True
            self._drop("retries_exhausted", points)
            log.warning("Exporter %s dropped a request with %d points after retries were exhausted; configure a "
                        "state_dir to spool instead.", self.name, points,
                        extra={"fields": {"exporter": self.name, "reason": "retries_exhausted"}})

    def _mark_down(self) -> None:
        if not self._down:
            log.warning("Exporter %s is unreachable; spooling to %s until it answers again.", self.name,
                        self.spool.path if self.spool is not None else "memory",
                        extra={"fields": {"exporter": self.name}})
        self._down = True
        self._probe_attempt = 0

    def _recovered(self) -> None:
        self._down = False
        self._probe_attempt = 0
        log.info("Exporter %s answers again; replaying %d spooled requests, oldest first.", self.name,
                 len(self.spool) if self.spool is not None else 0, extra={"fields": {"exporter": self.name}})

    def _commit(self) -> None:
        self.preparer.commit()

    def _count_failure(self, exc: ExportError) -> None:
        self.failed_requests[exc.kind] = self.failed_requests.get(exc.kind, 0) + 1
        self.last_error = str(exc)

    def _permanent(self, exc: ExportError, points: int) -> None:
        self._drop("permanent_error", points)
        if exc.kind not in self._logged_kinds:      # once per kind per exporter; the counters keep counting
            self._logged_kinds.add(exc.kind)
            log.error("Exporter %s refused a request (not retried, %d points dropped): %s", self.name, points, exc,
                      extra={"fields": {"exporter": self.name, "error.type": exc.kind}})

    def _accepted(self, points: int, rejected: int, message: str) -> None:
        self._failing = False
        self.sent_requests += 1
        self.sent_points += max(0, points - rejected)
        self.last_success = time.time()
        if rejected:
            self.rejected_points += rejected
            if "partial_success" not in self._logged_kinds:
                self._logged_kinds.add("partial_success")
                log.warning("Exporter %s accepted a request but rejected %d of its points: %s", self.name,
                            rejected, message or "(no message)",
                            extra={"fields": {"exporter": self.name, "error.type": "partial_success"}})

    def _drop(self, reason: str, points: int) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + points

    # ── service hooks ────────────────────────────────────────────────────────────────────────
    def _drained(self) -> bool:
        return not self._queue and not self._inflight and not (self.spool is not None and len(self.spool))

    async def flush(self, timeout: float) -> bool:
        """Deliver what is queued (and spooled) within ``timeout`` s; True when nothing is left undelivered.

        Starts the worker if nobody did. On timeout, queued batches move to the spool (when there is
        one), so a following shutdown loses nothing.
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
        if self.spool is not None:
            while self._queue:
                self._spool_batch(self._queue.popleft())
        return False

    def status(self) -> dict[str, object]:
        """A snapshot for ``/status`` and self-telemetry. Contains no secrets (errors never carry headers)."""
        state = "ok"
        if self._down:
            state = "down, spooling"
        elif self._failing:
            state = "failing, dropping"
        elif self.spool is not None and len(self.spool):
            state = "replaying spool"
        return {
            "state": state,
            "protocol": self.resolved.protocol,
            "queue_length": len(self._queue),
            "queue_size": self.queue_size,
            "spool_bytes": self.spool.total_bytes if self.spool is not None else 0,
            "spool_requests": len(self.spool) if self.spool is not None else 0,
            "last_success": self.last_success,
            "last_error": self.last_error,
            "sent_requests": self.sent_requests,
            "sent_points": self.sent_points,
            "failed_requests": dict(self.failed_requests),
            "retries": self.retries,
            "rejected_points": self.rejected_points,
            "dropped": dict(self.dropped),
            "dropped_attributes": self.dropped_attributes,
        }

    def ready(self) -> tuple[bool, str]:
        """Ready while the backend answers, or while it does not but the spool keeps the data."""
        if self._failing and self.spool is None:
            return False, f"unreachable: {self.last_error}"
        # "Spooling within limits": once the spool is 90% full, the oldest data is about to be dropped.
        if self._failing and self.spool is not None and self.spool.total_bytes >= 0.9 * self.spool.max_bytes:
            return False, f"unreachable and the spool is {self.spool.total_bytes} of {self.spool.max_bytes} bytes full"
        return True, "ok"

    async def aclose(self) -> None:
        """Stop the worker this pipeline started itself, then close the sender and the spool."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.spool is not None and self._queue:
            while self._queue:
                self._spool_batch(self._queue.popleft())
        await self.sender.aclose()
        if self.spool is not None:
            self.spool.close()
        close = getattr(self._delta, "close", None)
        if callable(close):
            close()


__all__ = ["DeltaConverter", "Encoder", "ExporterPipeline", "SummaryPolicy"]
