"""The target runner: one scrape loop for one target of a source, and what it records per scrape.

A ``SourceRunner`` owns what belongs to one target only: its ``Scraper`` (HTTP client, limits, budget) and
its ``TargetPipeline`` (cached parser, series store). Each round it scrapes, runs parse → map → convert on
the bridge's CPU executor, hands the batches to ``submit`` (every exporter) and records a ``ScrapeStatus``
and counters in the bridge's ``BridgeStats``. No error ends the loop: a failed scrape still submits its
batches (``up`` = 0), a scrape skipped for the vendor's request budget submits none, and only ``halt`` (or
the ``stop`` event given to ``loop``) ends it. Its schedule starts at a random offset within the interval
and is stretched by Retry-After and request budgets (the scraper's ``next_allowed_at``).

The bridge (``service/bridge.py``) creates the runners, one per active target (``url_target`` gives the one
target of a ``url:`` source), and over a reload hands an unchanged target's ``pipeline`` and ``next_at`` to
its new runner.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from promotel.config import Config, SourceConfig
from promotel.discovery.sourcetargets import ScrapeTarget, source_targets, url_groups
from promotel.errors import ConfigError, ExpositionError, ScrapeError
from promotel.httpcommon import safe_url
from promotel.model import TargetBatch
from promotel.pipeline import TargetPipeline, TargetResult
from promotel.service.runtime import RoundMemory

if TYPE_CHECKING:
    from promotel.service.bridge import BridgeStats

__all__ = ["ScrapeStatus", "SourceRunner", "url_target"]

# The service's logger, as before the runner had its own module: log configuration and filters keep working.
log = logging.getLogger("promotel.service")


class ScrapeStatus(NamedTuple):
    """What ``/status`` shows per target (immutable snapshot, replaced after every scrape)."""

    last_scrape_unix: float
    duration_s: float
    samples: int
    series: int
    error: str | None


class SourceRunner:
    """Scrapes one target of a source on its interval and hands each result to the exporters.

    A ``url:`` source has one target, and its runner is named as the source; a discovered target's runner is
    named ``<source> <url>`` (its batches too: the exporters keep their state per name). ``source`` is the
    configured source, ``scrape_config`` the same with the target's URL, interval and timeout."""

    def __init__(self, source: SourceConfig, config: Config, submit: Callable[[TargetBatch], None],
                 stats: BridgeStats, cpu: concurrent.futures.Executor | None = None,
                 memory: RoundMemory | None = None, *, target: ScrapeTarget | None = None,
                 name: str | None = None) -> None:
        from promotel.scrape import Scraper

        if target is None:
            target = url_target(source)
        assert target.url is not None, "only an active target is scraped"
        self.source = source
        self.target = target
        if name is None:
            name = source.name if source.url is not None else f"{source.name} {safe_url(target.url)}"
        self.name: str = name
        self.scrape_config = target.source(source)
        self.interval = float(self.scrape_config.interval)
        self._cpu = cpu
        self._memory = memory if memory is not None else RoundMemory()
        self._submit = submit
        self._stats = stats
        self.pipeline = TargetPipeline.for_target(source, config, name=self.name, url=target.url, labels=target.labels)
        self.scraper = Scraper(self.scrape_config)
        # The monotonic time of the next scrape; a reload hands it to the new runner of an unchanged target,
        # so a SIGHUP neither scrapes at once nor skips a beat.
        self.next_at: float | None = None
        self.halt = asyncio.Event()

    async def scrape_once(self) -> bool:
        """One scrape → batch → submit. Returns True when the scrape succeeded."""
        from promotel.scrape import BudgetSkipped

        now_ns = time.time_ns()
        t0 = time.perf_counter()
        samples = 0
        error: str | None = None
        try:
            result = await self.scraper.scrape()
            # Parse, map and convert are CPU work on objects only this runner touches, one scrape at a
            # time: run them off the event loop so other targets and the exporters keep moving. The body
            # is handed over in a box so the parser holds its only reference and frees it once decoded.
            box, content_type = [result.body], result.content_type
            del result
            # The results come back through ``out``, not as the future's result: the executor future and
            # its asyncio wrapper reference each other, so whatever the future holds lives until a full
            # GC collection (every ~50 rounds on a large heap), several MB per round.
            out: list[TargetResult] = []
            await asyncio.get_running_loop().run_in_executor(self._cpu, self._process, box, content_type,
                                                             now_ns, out)
            processed = out.pop()
            samples = processed.samples
            self._stats.count(self.name, "dropped_points", sum(processed.dropped.values()))
            for reason, n in processed.dropped.items():              # and by reason (logged by the pipeline)
                self._stats.count(self.name, f"dropped_points.{reason}", n)
            for rule, n in processed.leniencies.items():             # format rules tolerated, as lint names them
                self._stats.count(self.name, f"leniencies.{rule}", n)
            batches = self.pipeline.batches(processed, time.perf_counter() - t0, now_ns)
            ok = True
        except BudgetSkipped as exc:
            # Not scraped at all (the vendor's budget is used up by another source on the same account):
            # nothing is known about the target, so no batch, no up = 0, no staleness markers.
            log.warning("Scrape of source %s %s", self.name, exc,
                        extra={"fields": {"source": self.name, "error.type": exc.kind}})
            self._stats.count(self.name, "scrapes_skipped.budget", 1)
            self._stats.scraped(self.name, ScrapeStatus(time.time(), 0.0, 0, len(self.pipeline.store), str(exc)),
                                scraped=False)
            return False
        except Exception as exc:  # every exception on purpose: see below
            # Scrape and format errors are expected. Anything else is a bug in parse, map or convert: it is
            # logged with its traceback and this scrape counts as failed (up 0), so the loop keeps going.
            if isinstance(exc, (ScrapeError, ExpositionError)):
                error = str(exc)
                kind = exc.kind if isinstance(exc, ScrapeError) else "format"
                log.warning("Scrape of source %s failed: %s", self.name, error,
                            extra={"fields": {"source": self.name, "error.type": kind}})
            else:
                error = f"internal error: {type(exc).__name__}: {exc}"
                kind = "internal"
                log.exception("Processing the scrape of source %s failed unexpectedly (a bug; please report it): %s",
                              self.name, error, extra={"fields": {"source": self.name, "error.type": kind}})
            self._stats.count(self.name, f"scrape_errors.{kind}", 1)
            batches = self.pipeline.failed_batches(time.perf_counter() - t0, now_ns)
            ok = False
        duration = time.perf_counter() - t0
        for batch in batches:
            self._submit(batch)
        self._stats.scraped(self.name, ScrapeStatus(time.time(), duration, samples, len(self.pipeline.store), error))
        return ok

    def _process(self, box: list[bytes], content_type: str | None, now_ns: int, out: list[TargetResult]) -> None:
        with self._memory.round():
            out.append(self.pipeline.process(box, content_type, now_ns))

    def next_delay(self) -> float:
        """Seconds until the next scrape may start: the interval, stretched by Retry-After / rate limits."""
        wait = self.scraper.next_allowed_at() - time.monotonic()
        return max(0.0, wait)

    async def loop(self, stop: asyncio.Event | None = None) -> None:
        """Scrape on the interval until ``stop`` (or this runner's ``halt``) is set."""
        halt = self.halt
        if stop is not None:
            watcher = asyncio.create_task(_relay(stop, halt))
        try:
            await self._loop(halt)
        finally:
            if stop is not None:
                watcher.cancel()

    async def _loop(self, halt: asyncio.Event) -> None:
        interval = self.interval
        if self.next_at is None:
            # A random start offset spreads targets over the interval so they never scrape in lockstep.
            offset = random.uniform(0, min(interval, 5.0))
            if await _sleep_or_stop(halt, offset):
                return
            next_at = time.monotonic()
        else:
            # Adopted over a reload: keep the schedule (and wait for the budget, which the scraper tells).
            next_at = max(self.next_at, time.monotonic() + self.next_delay())
            if await _sleep_or_stop(halt, max(0.0, next_at - time.monotonic())):
                return
        while not halt.is_set():
            try:
                await self.scrape_once()
            except Exception as exc:  # a bug-free stage never raises here; keep the loop alive
                log.exception("Source %s failed unexpectedly: %s: %s", self.name, type(exc).__name__, exc)
            next_at = max(next_at + interval, time.monotonic() + self.next_delay())
            self.next_at = next_at
            if await _sleep_or_stop(halt, max(0.0, next_at - time.monotonic())):
                return

    async def aclose(self) -> None:
        await self.scraper.aclose()


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def url_target(source: SourceConfig) -> ScrapeTarget:
    """The one target of a ``url:`` source (after its relabel_configs). Raises ConfigError when relabeling
    drops it or leaves no valid target."""
    if source.url is None:
        raise ConfigError([(f"source {source.name}", "has no url: its targets come from discovery")])
    targets = source_targets(source, url_groups(source))
    if not targets or targets[0].state != "active":
        why = targets[0].error if targets and targets[0].error else "a relabel config drops it"
        raise ConfigError([(f"source {source.name}", f"its url has no target to scrape: {why}; fix relabel_configs")])
    return targets[0]


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep, waking early when ``stop`` is set. True when stopping."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
        return True
    except TimeoutError:
        return False
