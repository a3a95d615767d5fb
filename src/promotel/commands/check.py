"""``promotel check``: validate the config, then probe every source and exporter, one line each.

Exit status: 0 when the config is valid and every probe succeeded; 1 when a probe failed; 2 when the
config is invalid (or refused for its permissions), like ``promotel run`` and ``map`` with that config
and like argparse's usage errors: 2 means "fix the input", 1 "something out there failed".
With ``--offline`` only the config is validated. Every problem is listed at once, the exporters'
preset rules included (``promotel.config.load_config`` collects them). Everything printed passes through
the secret redactor: a key from the config never reaches the terminal.

Probes run concurrently; each source is scraped once (for Baseten this uses one of the
organization's 6 requests per minute) and run through its pipeline (parse, map, convert); each exporter
gets one empty OTLP request
(``promotel.export.probe``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Mapping
from typing import NamedTuple, TextIO

from promotel.config import (
    Config,
    ExporterConfig,
    SourceConfig,
    check_file_permissions,
    config_from_env,
    load_config,
)
from promotel.config.secrets import redact_all
from promotel.errors import ConfigError, ExpositionError, MappingError, ScrapeError
from promotel.httpcommon import safe_url
from promotel.pipeline import TargetPipeline

__all__ = ["EXIT_INVALID_CONFIG", "EXIT_PROBE_FAILED", "CheckLine", "cli_check", "probe_source", "run_check"]

EXIT_PROBE_FAILED = 1
EXIT_INVALID_CONFIG = 2       # the value `promotel run` has always used for an invalid config


class CheckLine(NamedTuple):
    what: str          # "source" | "exporter"
    name: str
    ok: bool | None    # None: not probed (not a failure)
    message: str

    def render(self) -> str:
        if self.ok is None:
            return f"{self.what} {self.name}: {self.message}"
        state = "OK" if self.ok else "FAILED —"
        return f"{self.what} {self.name}: {state} {self.message}" if self.message else f"{self.what} {self.name}: OK"


async def probe_source(source: SourceConfig, config: Config | None = None, *,
                       labels: Mapping[str, str] | None = None) -> CheckLine:
    """Scrape once and run the scrape through the source's pipeline (parse, map, convert), as ``run`` would:
    ``OK (N samples, T s)`` or ``FAILED — <diagnosis>``. ``labels``: a discovered target's (``source`` is then
    the source with that target's URL and schedule)."""
    from promotel.scrape import Scraper

    try:
        scraper = Scraper(source)
        if labels is not None and source.url is not None:
            pipeline = TargetPipeline.for_target(source, config, name=source.name, url=source.url, labels=labels)
        else:
            pipeline = TargetPipeline.for_source(source, config)
    except (ScrapeError, MappingError, ConfigError) as exc:     # ConfigError: two sources share an identity
        return CheckLine("source", source.name, False, str(exc))
    try:
        result = await scraper.scrape()
    except ScrapeError as exc:
        return CheckLine("source", source.name, False, str(exc))
    finally:
        await scraper.aclose()
    try:
        processed = await asyncio.to_thread(pipeline.process, result.body, result.content_type, time.time_ns())
    except ExpositionError as exc:
        ctype = result.content_type or "no Content-Type"
        return CheckLine("source", source.name, False,
                         f"{result.url} did not return valid Prometheus/OpenMetrics text ({ctype}): {exc}")
    return CheckLine("source", source.name, True, f"({processed.samples} samples, {result.duration_s:.2f} s)")


async def _probe_exporter(exporter: ExporterConfig) -> CheckLine:
    try:
        from promotel.export.probe import probe_exporter
    except ImportError:
        return CheckLine("exporter", exporter.name, None, "not probed (probe unavailable)")
    # probe_exporter runs its own event loop when called outside one: give it a thread.
    result = await asyncio.to_thread(probe_exporter, exporter)
    return CheckLine("exporter", exporter.name, bool(result.ok), "" if result.ok and result.message == "accepted"
                     else str(result.message))


async def _probe_discovered(source: SourceConfig, config: Config) -> list[CheckLine]:
    """A source with discovery: discovery once, then each active target probed as ``run`` scrapes it."""
    from promotel.commands.targets import discover_source

    targets, problems = await discover_source(source)
    lines = [CheckLine("source", source.name, False, f"discovery: {p}") for p in problems]
    active = [t for t in targets if t.state == "active" and t.url is not None]
    if not active:
        lines.append(CheckLine("source", source.name, None if not problems else False,
                               f"no active target ({len(targets)} discovered, all dropped by relabel_configs)"
                               if targets else "no target discovered"))
    for target in active:
        assert target.url is not None
        line = await probe_source(target.source(source), None, labels=target.labels)
        lines.append(line._replace(name=f"{source.name} {safe_url(target.url)}"))
    return lines


async def _probe_one(source: SourceConfig, cfg: Config) -> list[CheckLine]:
    return [await probe_source(source, cfg)] if source.url is not None else await _probe_discovered(source, cfg)


async def _probe_all(cfg: Config) -> list[CheckLine]:
    sources = await asyncio.gather(*(_probe_one(s, cfg) for s in cfg.sources))
    exporters = await asyncio.gather(*(_probe_exporter(e) for e in cfg.exporters))
    return [line for lines in sources for line in lines] + list(exporters)


def run_check(config_path: str | None, *, offline: bool = False, allow_insecure: bool = False,
              env: dict[str, str] | None = None, out: TextIO | None = None) -> int:
    """The ``check`` command without argparse: returns the exit code, prints to ``out`` (stdout)."""
    environ = dict(os.environ) if env is None else env
    stream = sys.stdout if out is None else out

    def say(line: str) -> None:
        print(redact_all(line), file=stream, flush=True)

    try:
        if config_path:
            check_file_permissions(config_path, allow_insecure)
            cfg = load_config(config_path, env=environ)
        else:
            cfg = config_from_env(environ)
    except ConfigError as exc:
        where = exc.source or config_path or "environment"
        say(f"config {where}: INVALID ({len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''})")
        for path, message in exc.problems:
            say(f"{path}: {message}" if path else message)
        return EXIT_INVALID_CONFIG
    where = config_path or "environment (OTEL_EXPORTER_OTLP_*)"
    say(f"config {where}: OK ({len(cfg.sources)} source{'s' if len(cfg.sources) != 1 else ''}, "
        f"{len(cfg.exporters)} exporter{'s' if len(cfg.exporters) != 1 else ''})")
    from promotel.scrape import budget_overcommits

    for warning in budget_overcommits(cfg.sources):
        say(f"warning: {warning}")
    if offline:
        return 0
    lines = asyncio.run(_probe_all(cfg))
    for line in lines:
        say(line.render())
    return 0 if all(line.ok is not False for line in lines) else EXIT_PROBE_FAILED


def cli_check(args: argparse.Namespace) -> int:
    return run_check(args.config, offline=bool(args.offline),
                     allow_insecure=bool(args.allow_insecure_config_permissions))
