"""``promotel targets -c CONFIG [--format table|json]``: what service discovery finds, as Prometheus's targets page.

Every source's discovery runs once (a ``url:`` source is its one static target); each target is listed with
its ``source``, scrape ``url``, final ``labels`` (after ``relabel_configs``), ``discovered_labels`` (before)
and ``state``: ``active`` (scraped), or ``dropped`` (by relabeling, or left invalid by it: then ``error``
says why). JSON is a list of such objects; a discoverer that failed is reported on stderr (its targets are
missing, as they would be in a first refresh of ``run``) and the exit status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TextIO

from promotel.config import Config, SourceConfig
from promotel.discovery.sourcetargets import ScrapeTarget, source_discoverers, source_targets
from promotel.discovery.targets import DiscoveryManager
from promotel.errors import ConfigError, PromotelError

__all__ = ["cli_targets", "discover", "discover_source"]


async def discover_source(source: SourceConfig) -> tuple[list[ScrapeTarget], list[str]]:
    """The targets of one source after one discovery refresh, and the problems discovery reported."""
    manager = DiscoveryManager(source_discoverers(source), job=source.name)
    try:
        groups = await manager.refresh_once()
    finally:
        await manager.aclose()
    problems = [f"{st.name}: {p}" for st in manager.status() for p in st.problems]
    return source_targets(source, groups), problems


async def discover(config: Config) -> tuple[list[ScrapeTarget], list[str]]:
    """Every target of every source (in config order), and the problems discovery reported."""
    targets: list[ScrapeTarget] = []
    problems: list[str] = []
    for source, (found, trouble) in zip(config.sources,
                                        await asyncio.gather(*(discover_source(s) for s in config.sources))):
        targets += found
        problems += [f"source {source.name}: {p}" for p in trouble]
    return targets, problems


def _table(targets: list[ScrapeTarget], out: TextIO) -> None:
    rows = [("SOURCE", "STATE", "URL", "LABELS", "DISCOVERED LABELS")]
    for t in targets:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(t.labels.items()))
        discovered = ",".join(f'{k}="{v}"' for k, v in sorted(t.discovered_labels.items()))
        state = t.state if t.error is None else f"{t.state} ({t.error})"
        rows.append((t.source_name, state, str(t.as_dict()["url"] or "-"), labels or "-", discovered))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:4])) + "  " + r[4] + "\n")


def cli_targets(args: argparse.Namespace) -> int:
    from promotel.service.bridge import load

    try:
        config = load(args.config, args.allow_insecure_config_permissions)
        targets, problems = asyncio.run(discover(config))
    except ConfigError as exc:
        print(f"promotel: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except PromotelError as exc:
        print(f"promotel: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        json.dump([t.as_dict() for t in targets], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _table(targets, sys.stdout)
    for problem in problems:
        print(f"promotel targets: {problem}", file=sys.stderr)
    return 1 if problems else 0
