"""The service: one scrape loop per source, one export pipeline per exporter (``promotel run``).

    Source loop (per target, own interval, random start offset)
        scrape (httpx) → parse (cached parser per target) → map (plugin) → convert (series store)
        → TargetBatch ──submit──▶ every ExporterPipeline (own queue and task each)

State lives in two places only, both owned by objects created here: the per-target ``SeriesStore``
(start times, resets, staleness) inside each ``SourceRunner``, and the per-exporter queue (with a
state_dir: the write-ahead queue on disk, ``<state_dir>/exporter-<name>.db``) and delta state inside each
``ExporterPipeline``. ``BridgeStats`` is a read-only view of both for ``/status`` and the bridge's own
telemetry.

A scrape's batch is handed to every exporter by ``submit`` as soon as it is converted; with a state_dir
each exporter writes it to disk there, before anything is sent. Without one, queued data and the delta
state live in memory only, and ``serve`` says so once at start, naming the exporters concerned.

Signals: SIGTERM/SIGINT stop scraping, flush what is queued within ``GRACE_S``, exit 0; SIGHUP reloads
the config (an invalid new config is logged and the old one keeps running). SIGXFSZ (a file-size limit
reached while writing the state database) is ignored: the write fails with an error the queue handles as
a storage fault instead of the process being killed.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import random
import signal
import time
from collections.abc import Callable
from typing import NamedTuple

from promotel.config import Config, SourceConfig
from promotel.errors import ConfigError, ExpositionError, PromotelError, ScrapeError
from promotel.model import TargetBatch
from promotel.pipeline import TargetPipeline, TargetResult
from promotel.service.runtime import RoundMemory, tune_gc

log = logging.getLogger("promotel.service")

GRACE_S = 10.0          # how long shutdown waits for queued batches to be delivered


class ScrapeStatus(NamedTuple):
    """What ``/status`` shows per target (immutable snapshot, replaced after every scrape)."""

    last_scrape_unix: float
    duration_s: float
    samples: int
    series: int
    error: str | None


class SourceRunner:
    """Scrapes one source on its interval and hands each result to the exporters."""

    def __init__(self, source: SourceConfig, config: Config, submit: Callable[[TargetBatch], None],
                 stats: BridgeStats, cpu: concurrent.futures.Executor | None = None,
                 memory: RoundMemory | None = None) -> None:
        from promotel.scrape import Scraper

        self.source = source
        self.name: str = source.name
        self._cpu = cpu
        self._memory = memory if memory is not None else RoundMemory()
        self._submit = submit
        self._stats = stats
        self.pipeline = TargetPipeline.for_source(source, config)
        self.scraper = Scraper(source)

    async def scrape_once(self) -> bool:
        """One scrape → batch → submit. Returns True when the scrape succeeded."""
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
            batch = self.pipeline.batch(processed, time.perf_counter() - t0, now_ns)
            ok = True
        except Exception as exc:  # noqa: BLE001 - see below
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
            batch = self.pipeline.failed(time.perf_counter() - t0, now_ns)
            ok = False
        duration = time.perf_counter() - t0
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

    async def loop(self, stop: asyncio.Event) -> None:
        interval = float(self.source.interval)
        # A random start offset spreads targets over the interval so they never scrape in lockstep.
        offset = random.uniform(0, min(interval, 5.0))
        if await _sleep_or_stop(stop, offset):
            return
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                await self.scrape_once()
            except Exception as exc:  # noqa: BLE001 - a bug-free stage never raises here; keep the loop alive
                log.error("Source %s failed unexpectedly: %s: %s", self.name, type(exc).__name__, exc,
                          exc_info=True)
            next_at = max(next_at + interval, time.monotonic() + self.next_delay())
            if await _sleep_or_stop(stop, max(0.0, next_at - time.monotonic())):
                return

    async def aclose(self) -> None:
        await self.scraper.aclose()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep, waking early when ``stop`` is set. True when stopping."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
        return True
    except asyncio.TimeoutError:
        return False


def _schedule(runner: SourceRunner, st: ScrapeStatus | None, now: float) -> dict[str, object]:
    """URL (credentials masked), interval and next scrape of one runner, for ``status()``.

    The next scrape is estimated from the last one: its start (end minus duration) plus the interval,
    or later when the scraper must wait (Retry-After, rate limit). Before the first scrape it is unknown
    (the loop starts at a random offset within the interval)."""
    from promotel.httpcommon import safe_url
    from promotel.service.timefmt import iso_utc

    interval = float(runner.source.interval)
    next_unix: float | None = None
    if st is not None:
        next_unix = max(st.last_scrape_unix - st.duration_s + interval, now + runner.next_delay())
    return {"url": safe_url(str(runner.source.url)), "interval_s": interval,
            "next_scrape": None if next_unix is None else round(next_unix, 3),
            "next_scrape_at": None if next_unix is None else iso_utc(next_unix)}


class BridgeStats:
    """Counters and last-scrape snapshots for ``/status`` and the bridge's own telemetry.

    Written only from the event loop; readers on other threads (the health server) take the
    immutable snapshots it holds, so no lock is needed.
    """

    def __init__(self) -> None:
        self.targets: dict[str, ScrapeStatus] = {}
        self.counters: dict[tuple[str, str], int] = {}
        self.started_unix = time.time()
        self.config_loaded = False

    def scraped(self, target: str, status: ScrapeStatus) -> None:
        self.targets = {**self.targets, target: status}
        self.count(target, "scrapes", 1)
        self.count(target, "samples", status.samples)

    def count(self, target: str, what: str, n: int) -> None:
        if n:
            key = (target, what)
            self.counters[key] = self.counters.get(key, 0) + n


class Bridge:
    """The whole running bridge for one config."""

    def __init__(self, config: Config, *, shard: tuple[int, int] | None = None) -> None:
        from promotel.export import build_pipelines

        self.config = config
        self.stats = BridgeStats()
        self.pipelines = build_pipelines(config)
        sources = list(config.sources)
        if shard is not None:
            from promotel.scrape.shard import owns

            index, count = shard
            mine = [s for s in sources if owns(str(s.url), index, count)]
            log.info("Shard %d/%d scrapes %d of %d sources.", index, count, len(mine), len(sources))
            sources = mine
        # One worker thread for the CPU stages of every source: they hold the GIL anyway, so more threads
        # would add no throughput, only more malloc arenas each holding a round's high-water mark.
        self._cpu = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="promotel-cpu")
        memory = RoundMemory()
        try:
            self.runners = [SourceRunner(s, config, self.submit, self.stats, self._cpu, memory) for s in sources]
        except BaseException:
            # An invalid source (a reload keeps the previous config): release the state databases just opened,
            # which the previous config's exporters open again.
            for p in self.pipelines:
                if p.store is not None:
                    p.store.close()
            self._cpu.shutdown(wait=False)
            raise
        self.stats.config_loaded = True
        self._tasks: list[asyncio.Task[None]] = []
        self.last_round: dict[str, object] | None = None     # run_once's final status()

    def adopt(self, previous: Bridge) -> None:
        """Carry each source's series state over a reload when that source's settings are unchanged: its
        parser (the previous scrape) and its series store (start times, last values, staleness), so a
        SIGHUP does not restart every counter with a new start time. A source whose settings changed, or
        that is new, starts afresh. ``previous`` must have stopped scraping (``run`` returned)."""
        before = {r.name: r for r in previous.runners}
        kept = 0
        for runner in self.runners:
            old = before.get(runner.name)
            if old is not None and old.source == runner.source:
                runner.pipeline = old.pipeline
                kept += 1
        log.info("Reload: %d of %d sources keep their series state (unchanged settings).", kept, len(self.runners),
                 extra={"fields": {"sources.kept": kept, "sources": len(self.runners)}})

    def submit(self, batch: TargetBatch) -> None:
        for p in self.pipelines:
            p.submit(batch)

    def status(self) -> dict[str, object]:
        """A JSON-ready snapshot for ``/status``, ``/metrics``, ``promotel top`` and ``run --once``'s summary.

        Times are given twice: the 0.1 fields as unix seconds (``started``, ``last_scrape``, ``last_success``)
        and ISO 8601 UTC strings under ``…_at``. Per target: ``up`` (1 when the last scrape succeeded, None
        before the first), its URL without credentials, interval and next scrape time, and the counters
        since start."""
        from promotel.service.timefmt import iso_utc

        now = time.time()
        runners = {r.name: r for r in self.runners}
        targets: dict[str, dict[str, object]] = {}
        for name in sorted({*runners, *self.stats.targets}):
            st = self.stats.targets.get(name)
            runner = runners.get(name)
            entry: dict[str, object] = {
                "up": None if st is None else int(st.error is None),
                "last_scrape": None if st is None else st.last_scrape_unix,
                "last_scrape_at": None if st is None else iso_utc(st.last_scrape_unix),
                "duration_s": None if st is None else round(st.duration_s, 6),
                "samples": None if st is None else st.samples,
                "series": None if st is None else st.series,
                "error": None if st is None else st.error,
                "scrapes_total": self.stats.counters.get((name, "scrapes"), 0),
                "samples_total": self.stats.counters.get((name, "samples"), 0),
                "scrape_errors": {what.split(".", 1)[1]: n for (target, what), n in self.stats.counters.items()
                                  if target == name and what.startswith("scrape_errors.")},
            }
            if runner is not None:
                entry.update(_schedule(runner, st, now))
            targets[name] = entry
        exporters: dict[str, dict[str, object]] = {}
        for p in self.pipelines:
            ex = p.status(self.unready_after)
            last = ex.get("last_success")
            ex["last_success_at"] = iso_utc(last) if isinstance(last, float) else None
            exporters[p.name] = ex
        return {
            "started": self.stats.started_unix,
            "started_at": iso_utc(self.stats.started_unix),
            "now_at": iso_utc(now),
            "targets": targets,
            "exporters": exporters,
        }

    @property
    def unready_after(self) -> float:
        from promotel.config import HealthConfig

        return (self.config.health or HealthConfig()).unready_after

    def ready(self) -> tuple[bool, str]:
        """Ready when the config is loaded and no exporter dropped data within ``health.unready_after`` nor
        failed every attempt for longer than that; else the reasons of every exporter that is not."""
        if not self.stats.config_loaded:
            return False, "config not loaded"
        reasons = []
        for p in self.pipelines:
            ok, why = p.ready(self.unready_after)
            if not ok:
                reasons.append(f"exporter {p.name}: {why}")
        if reasons:
            return False, "; ".join(reasons)
        return True, "ready"

    async def start_exporters(self) -> None:
        for p in self.pipelines:
            self._tasks.append(asyncio.create_task(p.run(), name=f"export:{p.name}"))

    async def run_once(self) -> bool:
        """One round of every source, then deliver everything. True when nothing failed."""
        await self.start_exporters()
        results = await asyncio.gather(*(r.scrape_once() for r in self.runners))
        delivered = await self.flush(GRACE_S * 3)
        # The round's outcome, taken before closing (closing releases the state databases it reads).
        self.last_round = self.status()
        await self.aclose()
        return all(results) and delivered

    async def run(self, stop: asyncio.Event) -> None:
        await self.start_exporters()
        loops = [asyncio.create_task(r.loop(stop), name=f"scrape:{r.name}") for r in self.runners]
        await stop.wait()
        await asyncio.gather(*loops, return_exceptions=True)

    async def flush(self, timeout: float) -> bool:
        results = await asyncio.gather(*(p.flush(timeout) for p in self.pipelines))
        return all(results)

    async def aclose(self) -> None:
        for r in self.runners:
            await r.aclose()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for p in self.pipelines:
            await p.aclose()
        self._cpu.shutdown(wait=False, cancel_futures=True)


def load(config_path: str | None, allow_insecure: bool = False) -> Config:
    from promotel.config import check_file_permissions, config_from_env, load_config

    if config_path:
        check_file_permissions(config_path, allow_insecure)
        return load_config(config_path)
    import os

    return config_from_env(os.environ)


def resolve_shard(spec: str | None) -> tuple[int, int] | None:
    import os
    import socket

    from promotel.scrape.shard import parse_shard, shard_from_env

    if spec:
        return parse_shard(spec)
    return shard_from_env(os.environ, socket.gethostname())


async def serve(config_path: str | None, *, shard_spec: str | None = None, allow_insecure: bool = False) -> int:
    """Run until SIGTERM/SIGINT; SIGHUP reloads. Returns the exit code."""
    config = load(config_path, allow_insecure)
    shard = resolve_shard(shard_spec)
    loop = asyncio.get_running_loop()
    stop_all = asyncio.Event()
    reload_requested = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop_all.set)
    loop.add_signal_handler(signal.SIGINT, stop_all.set)
    loop.add_signal_handler(signal.SIGHUP, reload_requested.set)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _warn_volatile(config)

    health = None
    telemetry = None
    bridge = Bridge(config, shard=shard)
    reloaded = False
    try:
        while True:
            if config.health is not None and health is None:
                from promotel.service.health import HealthServer

                candidate = HealthServer(config.health.listen)
                try:
                    candidate.start()
                    health = candidate
                except ConfigError as exc:
                    if not reloaded:
                        raise
                    log.error("The health endpoints of the reloaded config cannot start; running without them.\n%s",
                              exc)
            if health is not None:
                health.attach(bridge)
            if telemetry is None:
                from promotel.service.selftelemetry import start_self_telemetry

                telemetry = start_self_telemetry(config, bridge)
            else:
                telemetry.attach(bridge)
            log.info("promotel is running: %d sources, %d exporters.", len(bridge.runners), len(bridge.pipelines),
                     extra={"fields": {"sources": len(bridge.runners), "exporters": len(bridge.pipelines)}})
            round_stop = asyncio.Event()
            runner = asyncio.create_task(bridge.run(round_stop))
            new_config: Config | None = None
            while new_config is None and not stop_all.is_set():
                waiters = [asyncio.create_task(stop_all.wait()), asyncio.create_task(reload_requested.wait())]
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for w in waiters:
                    w.cancel()
                if reload_requested.is_set() and not stop_all.is_set():
                    # SIGHUP: load the new config first; an invalid one is logged and the old one keeps running.
                    reload_requested.clear()
                    try:
                        new_config = load(config_path, allow_insecure)
                    except ConfigError as exc:
                        log.error("Reloading the config failed; the previous config keeps running.\n%s", exc)
            round_stop.set()
            await runner
            if stop_all.is_set():
                log.info("Stopping: delivering what is queued (up to %.0f s).", GRACE_S)
                if not await bridge.flush(GRACE_S):
                    log.warning("Some batches were not delivered within the grace period; with a state_dir "
                                "they stay on disk and are sent after the next start.")
                await bridge.aclose()
                return 0
            assert new_config is not None      # the wait above ends with a new config unless stopping
            await bridge.flush(GRACE_S)
            await bridge.aclose()
            reloaded = True
            previous = bridge
            try:
                # Building the bridge runs checks loading does not (exporter presets, mapping plugins, TLS
                # files): a failure here is an invalid new config too, and the previous one comes back.
                bridge = Bridge(new_config, shard=shard)
            except PromotelError as exc:
                log.error("Reloading the config failed; the previous config keeps running.\n%s", exc)
                bridge = Bridge(config, shard=shard)
                bridge.adopt(previous)
                continue
            bridge.adopt(previous)
            _warn_not_reloaded(config, new_config, f"{health.host}:{health.port}" if health is not None else None)
            config = new_config
            log.info("Config reloaded.")
    finally:
        if health is not None:
            health.stop()
        if telemetry is not None:
            telemetry.shutdown()


def _warn_volatile(config: Config) -> None:
    """Say once, at start, which exporters keep their queue (and delta state) in memory only."""
    if config.state_dir:
        volatile = [e.name for e in config.exporters if not e.spool.enabled]
        if volatile:
            log.warning("Exporters %s have spool.enabled: false: a restart loses what their queue holds (their "
                        "delta state is kept in state_dir).", ", ".join(volatile),
                        extra={"fields": {"exporters": volatile}})
        return
    names = [e.name for e in config.exporters]
    log.warning("No state_dir: exporters %s keep their queue and delta state in memory only; a restart (or a crash) "
                "loses the batches not yet delivered, and delta exporters start again from a baseline. Set "
                "state_dir to keep them on disk.", ", ".join(names), extra={"fields": {"exporters": names}})


def _warn_not_reloaded(old: Config, new: Config, health_at: str | None) -> None:
    """SIGHUP applies sources, exporters and resource attributes. The health server (once listening, at
    ``health_at``) and self-telemetry are set up once per process: say so when the new config changes them."""
    if health_at is not None and new.health != old.health:
        log.warning("The reloaded config changes 'health'; the health endpoints keep listening on %s until "
                    "promotel restarts.", health_at)
    if new.self_telemetry != old.self_telemetry:
        log.warning("The reloaded config changes 'self_telemetry'; it applies when promotel restarts.")


def cli_run(args: argparse.Namespace) -> int:
    tune_gc()
    try:
        if args.once:
            config = load(args.config, args.allow_insecure_config_permissions)
            shard = resolve_shard(args.shard)

            async def once() -> bool:
                from promotel.service.report import once_summary

                bridge = Bridge(config, shard=shard)
                ok = await bridge.run_once()
                if bridge.last_round is not None:
                    print("\n".join(once_summary(bridge.last_round)), flush=True)
                return ok

            ok = asyncio.run(once())
            return 0 if ok else 1
        return asyncio.run(serve(args.config, shard_spec=args.shard,
                                 allow_insecure=args.allow_insecure_config_permissions))
    except ConfigError as exc:
        print(f"promotel: invalid configuration:\n{exc}", file=__import__("sys").stderr)
        return 2
    except PromotelError as exc:
        print(f"promotel: {exc}", file=__import__("sys").stderr)
        return 1
