"""What one exporter reports about itself: its counters, its readiness, and the ``/status`` snapshot.

``ExporterStatus`` is the part of ``ExporterPipeline`` (its subclass, ``promotel.export.pipeline``) that
only counts and judges: what was sent, retried, refused and dropped (by reason), when the backend last
accepted a request and since when every attempt fails. The queue itself stays in the pipeline; for a
snapshot it hands over its own figures as ``QueueFigures``.

Readiness (``ready``): not ready while the exporter dropped data within the last ``unready_after``
seconds, or when every attempt failed for longer than that. A backend that is down while the persisted
queue keeps everything is ready until then: nothing is lost yet.

Errors are logged once per kind per exporter (``_logged_kinds``); the counters keep counting.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from promotel.config import HealthConfig
from promotel.errors import ExportError

# The pipeline's logger: what it logged before this module was split out is logged under the same name.
log = logging.getLogger("promotel.export")

# Seconds; the config model's default (``health.unready_after``), for callers without a config.
DEFAULT_UNREADY_AFTER: float = HealthConfig.model_fields["unready_after"].default


class QueueFigures(NamedTuple):
    """The queue's side of a status snapshot, read when ``status()`` is called."""

    down: bool                       # retries were exhausted: only a probe is sent until the backend answers
    durable: bool                    # the write-ahead queue is on (a state_dir, spool.enabled)
    backlog: int                     # persisted requests not in memory, to be read back and sent
    queue_length: int                # submitted batches in memory
    queue_size: int                  # … at most this many
    memory_requests: int
    persisted_requests: int
    persisted_bytes: int
    not_persisted_requests: int      # requests in memory waiting to be written (after a storage fault)
    oldest_unacknowledged: float | None   # unix time the oldest request not yet answered for was queued
    storage: dict[str, object] | None     # the state database's path, state and errors; None without one


class ExporterStatus:
    """Counters and readiness of one exporter. A subclass supplies ``_queue_figures`` for ``status()``."""

    def __init__(self, name: str, protocol: str, clock: Callable[[], float]) -> None:
        self.name = name
        self._protocol = protocol
        self._clock = clock
        # counters (status() and self-telemetry read them)
        self.sent_requests = 0
        self.sent_points = 0
        self.retries = 0
        self.rejected_points = 0
        self.dropped_attributes = 0
        self.failed_requests: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.storage_errors: dict[str, int] = {}
        self.last_success: float | None = None    # unix time
        self.last_error: str | None = None
        self._drops: deque[tuple[float, str, int]] = deque(maxlen=4096)   # (clock, reason, points)
        self._failing_since: float | None = None  # clock time of the first failure since the last success
        self._logged_kinds: set[str] = set()

    def _queue_figures(self) -> QueueFigures:
        raise NotImplementedError

    # ── bookkeeping ──────────────────────────────────────────────────────────────────────────
    def _count_failure(self, exc: ExportError) -> None:
        self.failed_requests[exc.kind] = self.failed_requests.get(exc.kind, 0) + 1
        self.last_error = str(exc)
        if self._failing_since is None:
            self._failing_since = self._clock()

    def _permanent(self, exc: ExportError, points: int) -> None:
        self._drop("permanent_error", points)
        if exc.kind not in self._logged_kinds:      # once per kind per exporter; the counters keep counting
            self._logged_kinds.add(exc.kind)
            log.error("Exporter %s refused a request (not retried, %d points dropped): %s", self.name, points, exc,
                      extra={"fields": {"exporter": self.name, "error.type": exc.kind}})

    def _accepted(self, points: int, rejected: int, message: str) -> None:
        self._failing_since = None
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
        self._drops.append((self._clock(), reason, points))

    # ── what the service reads ───────────────────────────────────────────────────────────────
    def status(self, unready_after: float = DEFAULT_UNREADY_AFTER) -> dict[str, object]:
        """A snapshot for ``/status`` and self-telemetry. Contains no secrets (errors never carry headers)."""
        q = self._queue_figures()
        state = "ok"
        if q.down:
            state = "down, spooling"
        elif self._failing_since is not None and not q.durable:
            state = "failing, dropping"
        elif q.backlog:
            state = "replaying spool"
        ready, why = self.ready(unready_after)
        now = self._clock()
        oldest = q.oldest_unacknowledged
        return {
            "state": state,
            "ready": ready,
            "not_ready_reason": None if ready else why,
            "protocol": self._protocol,
            "queue_length": q.queue_length,
            "queue_size": q.queue_size,
            "memory_requests": q.memory_requests,
            "persisted": q.durable,
            "persisted_requests": q.persisted_requests,
            "persisted_bytes": q.persisted_bytes,
            "spool_bytes": q.persisted_bytes,            # 0.1 names of the persisted figures
            "spool_requests": q.persisted_requests,
            "not_persisted_requests": q.not_persisted_requests,
            "oldest_unacknowledged_age_s": None if oldest is None else round(max(0.0, time.time() - oldest), 3),
            "failing_for_s": None if self._failing_since is None else round(now - self._failing_since, 3),
            "last_success": self.last_success,
            "last_error": self.last_error,
            "storage": q.storage,
            "sent_requests": self.sent_requests,
            "sent_points": self.sent_points,
            "failed_requests": dict(self.failed_requests),
            "retries": self.retries,
            "rejected_points": self.rejected_points,
            "dropped": dict(self.dropped),
            "dropped_attributes": self.dropped_attributes,
        }

    def ready(self, unready_after: float = DEFAULT_UNREADY_AFTER) -> tuple[bool, str]:
        """Not ready while data was dropped within the last ``unready_after`` s, or when every attempt
        failed for longer than that; else ready (a backend that is down while the queue keeps everything
        is ready until ``unready_after``)."""
        now = self._clock()
        while self._drops and now - self._drops[0][0] > unready_after:
            self._drops.popleft()
        failing = self._failing_since is not None
        if self._drops:
            by_reason: dict[str, int] = {}
            for _, reason, points in self._drops:
                by_reason[reason] = by_reason.get(reason, 0) + points
            detail = ", ".join(f"{reason} {points}" for reason, points in sorted(by_reason.items()))
            head = f"unreachable ({self.last_error}) and dropping data" if failing else "dropping data"
            return False, f"{head}: points dropped in the last {unready_after:g} s: {detail}"
        if failing and self._failing_since is not None and now - self._failing_since > unready_after:
            return False, (f"unreachable: every attempt failed for {now - self._failing_since:.0f} s "
                           f"(more than {unready_after:g} s); last error: {self.last_error}")
        return True, "ok"


__all__ = ["DEFAULT_UNREADY_AFTER", "ExporterStatus", "QueueFigures"]
