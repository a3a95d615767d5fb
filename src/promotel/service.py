"""The service: one scrape loop per source, one export pipeline per exporter (``promotel run``).

    Source loop (per target, own interval, random start offset)
        scrape (httpx) → parse (cached parser per target) → map (plugin) → convert (series store)
        → TargetBatch ──submit──▶ every ExporterPipeline (own queue and task each)

State lives in two places only, both owned by objects created here: the per-target ``SeriesStore``
(start times, resets, staleness) inside each ``SourceRunner``, and the per-exporter queue, spool and
delta state inside each ``ExporterPipeline``. ``BridgeStats`` is a read-only view of both for
``/status`` and the bridge's own telemetry.

Signals: SIGTERM/SIGINT stop scraping, flush what is queued within ``GRACE_S``, exit 0; SIGHUP reloads
the config (an invalid new config is logged and the old one keeps running).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import random
import signal
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from promotel.errors import ConfigError, ExpositionError, PromotelError, ScrapeError
from promotel.model import Attributes, AttrValue, Kind, Metric, NumberPoint, TargetBatch

log = logging.getLogger("promotel.service")

GRACE_S = 10.0          # how long shutdown waits for queued batches to be delivered


class ScrapeStatus(NamedTuple):
    """What ``/status`` shows per target (immutable snapshot, replaced after every scrape)."""

    last_scrape_unix: float
    duration_s: float
    samples: int
    series: int
    error: str | None


def target_resource(url: str, service_name: str, extra: Sequence[tuple[str, AttrValue]]) -> Attributes:
    """The Resource of one target: who was scraped (OTel Prometheus-compatibility rules)."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme or "http"
    port = parts.port or (443 if scheme == "https" else 80)
    host = parts.hostname or ""
    attrs: dict[str, AttrValue] = {
        "service.name": service_name,
        "service.instance.id": f"{host}:{port}",
        "server.address": host,
        "server.port": port,
        "url.scheme": scheme,
    }
    for k, v in extra:
        attrs[k] = v
    return tuple(sorted(attrs.items()))


def _gauge(name: str, value: float, unit: str, description: str, time_ns: int) -> Metric:
    point = NumberPoint(attributes=(), value=float(value), time_ns=time_ns)
    return Metric(name=name, description=description, unit=unit, kind=Kind.GAUGE, points=(point,),
                  prom_type="gauge")


def scrape_metrics(up: bool, duration_s: float, samples: int, series_added: int, time_ns: int) -> tuple[Metric, ...]:
    """The synthetic per-target series Prometheus users expect, named as Prometheus names them."""
    return (
        _gauge("up", 1.0 if up else 0.0, "", "The scraping was successful (1) or failed (0).", time_ns),
        _gauge("scrape_duration_seconds", duration_s, "s", "Duration of the scrape.", time_ns),
        _gauge("scrape_samples_scraped", samples, "{sample}", "The number of samples the target exposed.", time_ns),
        _gauge("scrape_series_added", series_added, "{series}",
               "The approximate number of new series in this scrape.", time_ns),
    )


class FullCollections:
    """A full GC collection every ``every`` rounds (all targets together), on the CPU worker thread.

    With the raised thresholds of ``tune_gc``, CPython runs a full collection only when the objects pending
    in the old generation reach 25 % of the long-lived heap, which the parser caches make large. The few
    cyclic leftovers of a round (asyncio/httpcore bookkeeping, ~100 small objects; the export body no
    longer, see ``HttpSender.send``) would wait that long. A full collection costs ~150 ms on that heap,
    so it runs every 50 rounds (~3 ms per round).
    """

    def __init__(self, every: int = 50) -> None:
        self.every = every
        self.rounds = 0

    def round_done(self) -> None:
        self.rounds += 1
        if self.rounds % self.every == 0:
            gc.collect()


class SourceRunner:
    """Scrapes one source on its interval and hands each result to the exporters."""

    def __init__(self, source: Any, config: Any, submit: Callable[[TargetBatch], None],
                 stats: BridgeStats, cpu: concurrent.futures.Executor | None = None,
                 full_gc: FullCollections | None = None) -> None:
        from promotel.convert import SeriesStore
        from promotel.exposition import ExpositionParser
        from promotel.mappings import load_mapping
        from promotel.scrape import Scraper

        self.source = source
        self.name: str = source.name
        self._cpu = cpu
        self._full_gc = full_gc
        self._submit = submit
        self._stats = stats
        self.plugin = load_mapping(source.mapping)
        self.mapper = self.plugin.bind(source)
        self.scraper = Scraper(source)
        self.parser = ExpositionParser()
        self.store = SeriesStore(source.name, max_series=source.max_series,
                                 expire_after_scrapes=source.expire_after_scrapes,
                                 honor_timestamps=source.honor_timestamps)
        service_name = source.service_name or self.plugin.default_service_name or source.name
        extra: dict[str, AttrValue] = dict(config.resource_attributes)
        extra.update(source.resource_attributes)
        self._service_name = service_name
        self._extra = tuple(extra.items())
        self.resource = target_resource(str(source.url), service_name, self._extra)

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
            out: list[tuple[int, Any, Any]] = []
            await asyncio.get_running_loop().run_in_executor(self._cpu, self._process, box, content_type,
                                                             now_ns, out)
            samples, mapped, converted = out.pop()
            resource = self.resource
            if mapped.resource:
                merged = dict(self.resource)
                merged.update(mapped.resource)       # target_info labels join the target's resource
                merged.update(dict(self._extra))     # configured attributes win
                resource = tuple(sorted(merged.items()))
            metrics = converted.metrics
            series_added = converted.series_added
            self._stats.count(self.name, "dropped_points",
                              mapped.dropped + converted.dropped_over_cap + converted.dropped_invalid)
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
                log.error("Processing the scrape of source %s failed unexpectedly (a bug; please report it): %s",
                          self.name, error, exc_info=True,
                          extra={"fields": {"source": self.name, "error.type": kind}})
            self._stats.count(self.name, f"scrape_errors.{kind}", 1)
            metrics = self.store.fail(now_ns).metrics
            resource = self.resource
            series_added = 0
            ok = False
        duration = time.perf_counter() - t0
        all_metrics = tuple(metrics) + scrape_metrics(ok, duration, samples, series_added, now_ns)
        batch = TargetBatch(target=self.name, resource=resource, metrics=all_metrics, scrape_time_ns=now_ns)
        self._submit(batch)
        self._stats.scraped(self.name, ScrapeStatus(time.time(), duration, samples, len(self.store), error))
        return ok

    def _process(self, box: list[bytes], content_type: str | None, now_ns: int,
                 out: list[tuple[int, Any, Any]]) -> None:
        families = self.parser.parse(box.pop(), content_type)
        samples = sum(len(f.samples) for f in families)
        mapped = self.mapper.map(families)
        converted = self.store.convert(mapped.metrics, now_ns)
        del families
        if self._full_gc is not None:
            self._full_gc.round_done()
        release_memory()
        out.append((samples, mapped, converted))

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

    def __init__(self, config: Any, *, shard: tuple[int, int] | None = None) -> None:
        from promotel.export import build_pipelines

        self.config = config
        self.stats = BridgeStats()
        self.pipelines = build_pipelines(config)
        sources = list(config.sources)
        if shard is not None:
            from promotel.shard import owns

            index, count = shard
            mine = [s for s in sources if owns(str(s.url), index, count)]
            log.info("Shard %d/%d scrapes %d of %d sources.", index, count, len(mine), len(sources))
            sources = mine
        # One worker thread for the CPU stages of every source: they hold the GIL anyway, so more threads
        # would add no throughput, only more malloc arenas each holding a round's high-water mark.
        self._cpu = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="promotel-cpu")
        full_gc = FullCollections()
        self.runners = [SourceRunner(s, config, self.submit, self.stats, self._cpu, full_gc) for s in sources]
        self.stats.config_loaded = True
        self._tasks: list[asyncio.Task[None]] = []

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
                runner.parser, runner.store = old.parser, old.store
                kept += 1
        log.info("Reload: %d of %d sources keep their series state (unchanged settings).", kept, len(self.runners),
                 extra={"fields": {"sources.kept": kept, "sources": len(self.runners)}})

    def submit(self, batch: TargetBatch) -> None:
        for p in self.pipelines:
            p.submit(batch)

    def status(self) -> dict[str, Any]:
        return {
            "started": self.stats.started_unix,
            "targets": {
                name: {"last_scrape": st.last_scrape_unix, "duration_s": round(st.duration_s, 6),
                       "samples": st.samples, "series": st.series, "error": st.error}
                for name, st in self.stats.targets.items()
            },
            "exporters": {p.name: p.status() for p in self.pipelines},
        }

    def ready(self) -> tuple[bool, str]:
        if not self.stats.config_loaded:
            return False, "config not loaded"
        for p in self.pipelines:
            ok, why = p.ready()
            if not ok:
                return False, f"exporter {p.name}: {why}"
        return True, "ready"

    async def start_exporters(self) -> None:
        for p in self.pipelines:
            self._tasks.append(asyncio.create_task(p.run(), name=f"export:{p.name}"))

    async def run_once(self) -> bool:
        """One round of every source, then deliver everything. True when nothing failed."""
        await self.start_exporters()
        results = await asyncio.gather(*(r.scrape_once() for r in self.runners))
        delivered = await self.flush(GRACE_S * 3)
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


def _load_libc() -> Any:
    """glibc, for ``malloc_trim``/``mallopt``; None elsewhere (musl, macOS)."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim
        libc.mallopt
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _load_libc()
_M_MMAP_THRESHOLD = -3     # glibc mallopt parameters (malloc.h)
_M_ARENA_MAX = -8


def release_memory() -> None:
    """Give the heap freed by a round back to the OS.

    A round of a large target allocates and frees tens of MB (body, text, lines, samples); glibc keeps
    freed heap pages mapped, so without this RSS sits at the high-water mark of the largest round.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def tune_gc() -> None:
    """Garbage-collector and allocator policy for the bridge process.

    A round allocates hundreds of thousands of short-lived container objects (samples, points); with
    CPython's default gen-0 threshold (700) that triggers hundreds of young collections and, every few
    rounds, a full collection that walks every long-lived object (~150 ms on a 150k-sample target).
    Nearly nothing the bridge makes is cyclic garbage, so: freeze what exists after start-up (imports,
    config, plugin tables) out of the collector's reach, and collect young objects 70x less often.

    glibc: a fixed mmap threshold keeps multi-MB buffers (scrape bodies, decoded text) in their own
    mappings, returned to the OS when freed (the default threshold adapts upwards after the first free
    and moves them onto the heap, which then only grows), and two arenas at most keep worker threads
    from each holding a round's high-water mark.
    """
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, 1 << 20)
        _LIBC.mallopt(_M_ARENA_MAX, 2)
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


def load(config_path: str | None, allow_insecure: bool = False) -> Any:
    from promotel.config import check_file_permissions, config_from_env, load_config

    if config_path:
        check_file_permissions(config_path, allow_insecure)
        return load_config(config_path)
    import os

    return config_from_env(os.environ)


def resolve_shard(spec: str | None) -> tuple[int, int] | None:
    import os
    import socket

    from promotel.shard import parse_shard, shard_from_env

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

    health = None
    telemetry = None
    bridge = Bridge(config, shard=shard)
    reloaded = False
    try:
        while True:
            if config.health is not None and health is None:
                from promotel.health import HealthServer

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
                from promotel.selftelemetry import start_self_telemetry

                telemetry = start_self_telemetry(config, bridge)
            else:
                telemetry.attach(bridge)
            log.info("promotel is running: %d sources, %d exporters.", len(bridge.runners), len(bridge.pipelines),
                     extra={"fields": {"sources": len(bridge.runners), "exporters": len(bridge.pipelines)}})
            round_stop = asyncio.Event()
            runner = asyncio.create_task(bridge.run(round_stop))
            new_config = None
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
                    log.warning("Some batches were not delivered within the grace period; "
                                "they stay in the spool when a state_dir is configured.")
                await bridge.aclose()
                return 0
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


def _warn_not_reloaded(old: Any, new: Any, health_at: str | None) -> None:
    """SIGHUP applies sources, exporters and resource attributes. The health server (once listening, at
    ``health_at``) and self-telemetry are set up once per process: say so when the new config changes them."""
    if health_at is not None and new.health != old.health:
        log.warning("The reloaded config changes 'health'; the health endpoints keep listening on %s until "
                    "promotel restarts.", health_at)
    if new.self_telemetry != old.self_telemetry:
        log.warning("The reloaded config changes 'self_telemetry'; it applies when promotel restarts.")


def cli_run(args: Any) -> int:
    tune_gc()
    try:
        if args.once:
            config = load(args.config, args.allow_insecure_config_permissions)
            shard = resolve_shard(args.shard)

            async def once() -> bool:
                bridge = Bridge(config, shard=shard)
                return await bridge.run_once()

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
