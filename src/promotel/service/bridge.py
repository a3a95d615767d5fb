"""The service: one scrape loop per source, one export pipeline per exporter (``promotel run``).

    Source loop (per target, own interval, random start offset)
        scrape (httpx) → parse (cached parser per target) → map (plugin) → convert (series store)
        → TargetBatch ──submit──▶ every ExporterPipeline (own queue and task each)

State lives in two places only, both owned by objects created here: the per-target ``SeriesStore``
(start times, resets, staleness) inside each ``SourceRunner`` (the one scrape loop of a target, in
``service/targetrunner.py``), and the per-exporter queue (with a state_dir: the write-ahead queue on disk,
``<state_dir>/exporter-<name>.db``) and delta state inside each ``ExporterPipeline``. ``BridgeStats`` is a
read-only view of both for ``/status`` and the bridge's own telemetry.

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
import signal
import time
from collections.abc import Coroutine

from promotel.config import Config, SourceConfig
from promotel.discovery.sourcetargets import ScrapeTarget, source_discoverers, source_targets
from promotel.discovery.targets import DiscovererStatus, DiscoveryManager, TargetGroup
from promotel.errors import ConfigError, PromotelError
from promotel.httpcommon import safe_url
from promotel.model import TargetBatch
from promotel.service.runtime import RoundMemory, tune_gc
from promotel.service.targetrunner import ScrapeStatus, SourceRunner, url_target

__all__ = ["GRACE_S", "Bridge", "BridgeStats", "ScrapeStatus", "SourceRunner", "SourceTargets", "cli_run", "load",
           "resolve_shard", "serve", "url_target"]

log = logging.getLogger("promotel.service")

GRACE_S = 10.0          # how long shutdown waits for queued batches to be delivered


class SourceTargets:
    """The targets of one configured source and their runners.

    A ``url:`` source has its one runner from the start. A source with discovery runs a
    ``DiscoveryManager``: each update gives the complete target list; targets new to it (and owned by this
    shard) get a runner; a target no longer listed (or no longer active) stops, gets staleness markers for
    every series it had (``TargetPipeline.gone``) and is forgotten; a target listed again unchanged keeps
    its runner and state. Discovery failures keep the last good list (the manager's rule)."""

    def __init__(self, source: SourceConfig, bridge: Bridge, shard: tuple[int, int] | None) -> None:
        self.source = source
        self.name = source.name
        self._bridge = bridge
        self._shard = shard
        self.targets: list[ScrapeTarget] = []         # the last list, active and dropped, for status
        self.runners: dict[tuple[str, tuple[tuple[str, str], ...]], SourceRunner] = {}
        self._tasks: dict[tuple[str, tuple[tuple[str, str], ...]], asyncio.Task[None]] = {}
        self._adopted: dict[tuple[str, tuple[tuple[str, str], ...]], SourceRunner] = {}
        self._stop: asyncio.Event | None = None
        self.manager: DiscoveryManager | None = None
        if source.url is not None:
            target = url_target(source)
            self.targets = [target]
            if self._owns(target):
                self.runners[target.key] = self._runner(target)
        else:
            self.manager = DiscoveryManager(source_discoverers(source), job=source.name)

    def _owns(self, target: ScrapeTarget) -> bool:
        if self._shard is None or target.url is None:
            return True
        from promotel.scrape.shard import owns

        index, count = self._shard
        return owns(target.url, index, count)

    def _runner(self, target: ScrapeTarget) -> SourceRunner:
        b = self._bridge
        name = None
        if self.source.url is None:
            # One URL, several label sets (Prometheus scrapes each): the labels tell their batches apart.
            name = f"{self.name} {safe_url(target.url or '')}"
            if any(r.name == name for r in self.runners.values()):
                name += " {" + ",".join(f'{k}="{v}"' for k, v in sorted(target.labels.items())) + "}"
        runner = SourceRunner(self.source, b.config, b.submit, b.stats, b._cpu, b._memory, target=target, name=name)
        old = self._adopted.pop(target.key, None)
        if old is not None:
            runner.pipeline = old.pipeline
            runner.next_at = old.next_at
        return runner

    def adopt(self, previous: SourceTargets) -> int:
        """Take over the series state and schedule of each target of ``previous`` (the same source, with
        unchanged settings, of the config before a reload). Returns how many targets were adopted."""
        if previous.source != self.source:
            return 0
        kept = 0
        for key, old in previous.runners.items():
            current = self.runners.get(key)
            if current is not None:
                current.pipeline = old.pipeline
                current.next_at = old.next_at
                kept += 1
            elif self.manager is not None:
                self._adopted[key] = old    # claimed when discovery lists it again
                kept += 1
        if self.manager is not None and previous.manager is not None:
            self.targets = list(previous.targets)
        return kept

    def update(self, groups: tuple[TargetGroup, ...]) -> None:
        """A new complete list of groups from discovery."""
        targets = source_targets(self.source, groups)
        self.targets = targets
        wanted = {t.key: t for t in targets if t.state == "active" and self._owns(t)}
        for key in [k for k in self.runners if k not in wanted]:
            self._retire(self.runners.pop(key), self._tasks.pop(key, None))
        for key, target in wanted.items():
            if key in self.runners:
                continue
            try:
                runner = self._runner(target)
            except PromotelError as exc:
                log.error("Source %s: target %s cannot be scraped: %s", self.name, safe_url(target.url or ""), exc)
                continue
            self.runners[key] = runner
            if self._stop is not None:
                self._tasks[key] = asyncio.create_task(runner.loop(self._stop), name=f"scrape:{runner.name}")
        # Targets of the previous config that discovery does not list any more end like any gone target.
        for old in self._adopted.values():
            self._retire(old, None)
        self._adopted.clear()
        log.info("Source %s: %d targets (%d scraped here, %d dropped).", self.name, len(targets), len(self.runners),
                 sum(1 for t in targets if t.state != "active"),
                 extra={"fields": {"source": self.name, "targets": len(targets), "targets.scraped": len(self.runners)}})

    def _retire(self, runner: SourceRunner, task: asyncio.Task[None] | None) -> None:
        """Stop a target that is gone: its series get staleness markers once its last scrape is done."""
        runner.halt.set()

        async def finish() -> None:
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
            for batch in runner.pipeline.gone(time.time_ns()):
                if batch.metrics:
                    self._bridge.submit(batch)
            await runner.aclose()
            self._bridge.stats.forget(runner.name)

        log.info("Source %s: target %s is gone; its series are marked stale.", self.name, runner.name,
                 extra={"fields": {"source": self.name, "target": runner.name}})
        try:
            asyncio.get_running_loop()
        except RuntimeError:            # no loop (adopted state never run): markers without waiting
            for batch in runner.pipeline.gone(time.time_ns()):
                if batch.metrics:
                    self._bridge.submit(batch)
            return
        self._bridge._background(finish())

    async def discover_once(self) -> None:
        """One discovery refresh, applied (``run --once``, ``promotel targets``)."""
        if self.manager is not None:
            self.update(await self.manager.refresh_once())

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        for key, runner in self.runners.items():
            self._tasks[key] = asyncio.create_task(runner.loop(stop), name=f"scrape:{runner.name}")
        discovery = None
        if self.manager is not None:
            discovery = asyncio.create_task(self.manager.run(self.update), name=f"discovery:{self.name}")
        await stop.wait()
        if discovery is not None:
            discovery.cancel()
            await asyncio.gather(discovery, return_exceptions=True)
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        self._stop = None

    def status(self) -> list[dict[str, object]]:
        """Each target (``promotel targets``' JSON) with its last scrape."""
        out: list[dict[str, object]] = []
        by_key = {key: runner.name for key, runner in self.runners.items()}
        for target in self.targets:
            entry = target.as_dict()
            name = by_key.get(target.key) if target.state == "active" else None
            if target.state == "active":
                entry["scraped_here"] = name is not None
            st = self._bridge.stats.targets.get(name) if name is not None else None
            if st is not None:
                entry["last_scrape"] = {"time": st.last_scrape_unix, "duration_s": round(st.duration_s, 6),
                                        "samples": st.samples, "series": st.series, "error": st.error}
            out.append(entry)
        return out

    async def aclose(self) -> None:
        for runner in self.runners.values():
            await runner.aclose()
        if self.manager is not None:
            await self.manager.aclose()


def _schedule(runner: SourceRunner, st: ScrapeStatus | None, now: float) -> dict[str, object]:
    """URL (credentials masked), interval and next scrape of one runner, for ``status()``.

    The next scrape is estimated from the last one: its start (end minus duration) plus the interval,
    or later when the scraper must wait (Retry-After, rate limit). Before the first scrape it is unknown
    (the loop starts at a random offset within the interval)."""
    from promotel.httpcommon import safe_url
    from promotel.service.timefmt import iso_utc

    interval = runner.interval
    next_unix: float | None = None
    if st is not None:
        next_unix = max(st.last_scrape_unix - st.duration_s + interval, now + runner.next_delay())
    return {"url": safe_url(runner.target.url or ""), "interval_s": interval,
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

    def scraped(self, target: str, status: ScrapeStatus, *, scraped: bool = True) -> None:
        self.targets = {**self.targets, target: status}
        if scraped:
            self.count(target, "scrapes", 1)
            self.count(target, "samples", status.samples)

    def forget(self, target: str) -> None:
        """A target that is gone: its snapshot goes (its counters stay, they are totals)."""
        if target in self.targets:
            self.targets = {k: v for k, v in self.targets.items() if k != target}

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
        # One worker thread for the CPU stages of every target: they hold the GIL anyway, so more threads
        # would add no throughput, only more malloc arenas each holding a round's high-water mark.
        self._cpu = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="promotel-cpu")
        self._memory = RoundMemory()
        self._background_tasks: set[asyncio.Task[None]] = set()
        try:
            self.sources = [SourceTargets(s, self, shard) for s in config.sources]
            if shard is not None:
                # Sharding is per target (its scrape URL): discovered targets are assigned as they are found.
                fixed = [g for g in self.sources if g.manager is None]
                log.info("Shard %d/%d scrapes %d of %d sources (url: targets); the targets of %d sources with "
                         "discovery are shared as they are found.", shard[0], shard[1],
                         sum(len(g.runners) for g in fixed), len(fixed), len(self.sources) - len(fixed))
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

    @property
    def runners(self) -> list[SourceRunner]:
        """The runner of every target scraped now (discovered targets come and go)."""
        return [runner for group in self.sources for runner in group.runners.values()]

    def _background(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(coro)
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)

    def adopt(self, previous: Bridge) -> None:
        """Carry each target's series state and schedule over a reload when its source's settings are
        unchanged: its parser (the previous scrape), its series store (start times, last values, staleness)
        and the time of its next scrape, so a SIGHUP neither restarts every counter with a new start time nor
        scrapes at once. A target whose source changed, or that is new, starts afresh. ``previous`` must have
        stopped scraping (``run`` returned)."""
        before = {g.name: g for g in previous.sources}
        kept = sources_kept = 0
        for group in self.sources:
            old = before.get(group.name)
            if old is not None and old.source == group.source:
                kept += group.adopt(old)
                sources_kept += 1
        log.info("Reload: %d of %d sources keep their series state (unchanged settings); %d targets keep their "
                 "state and schedule.", sources_kept, len(self.sources), kept,
                 extra={"fields": {"sources.kept": sources_kept, "sources": len(self.sources), "targets.kept": kept}})

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
            "sources": {g.name: {"targets": g.status(),
                                 "discovery": [_discovery_status(d) for d in g.manager.status()]
                                 if g.manager is not None else []}
                        for g in self.sources},
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
        await asyncio.gather(*(g.discover_once() for g in self.sources))
        results = await asyncio.gather(*(r.scrape_once() for r in self.runners))
        delivered = await self.flush(GRACE_S * 3)
        # The round's outcome, taken before closing (closing releases the state databases it reads).
        self.last_round = self.status()
        await self.aclose()
        return all(results) and delivered

    async def run(self, stop: asyncio.Event) -> None:
        await self.start_exporters()
        groups = [asyncio.create_task(g.run(stop), name=f"source:{g.name}") for g in self.sources]
        await stop.wait()
        await asyncio.gather(*groups, return_exceptions=True)
        # Gone targets' staleness markers: submitted before the exporters flush.
        await asyncio.gather(*self._background_tasks, return_exceptions=True)

    async def flush(self, timeout: float) -> bool:
        results = await asyncio.gather(*(p.flush(timeout) for p in self.pipelines))
        return all(results)

    async def aclose(self) -> None:
        await asyncio.gather(*self._background_tasks, return_exceptions=True)
        for g in self.sources:
            await g.aclose()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for p in self.pipelines:
            await p.aclose()
        self._cpu.shutdown(wait=False, cancel_futures=True)


def _discovery_status(d: DiscovererStatus) -> dict[str, object]:
    return {"name": d.name, "mechanism": d.mechanism, "groups": d.groups, "targets": d.targets,
            "refreshes_total": d.refreshes_total, "errors_total": d.errors_total, "problems": list(d.problems),
            "last_refresh": d.last_refresh, "last_success": d.last_success}


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
