"""The running bridge (``promotel run``): ``bridge`` holds the sources, the exporters and reload;
``targetrunner`` one target's scrape loop; ``runtime`` the process-wide memory policy; ``health`` the HTTP endpoints; ``selftelemetry`` the bridge's
own metrics."""

from promotel.pipeline import scrape_metrics, target_resource
from promotel.service.bridge import (
    GRACE_S,
    Bridge,
    BridgeStats,
    ScrapeStatus,
    SourceRunner,
    cli_run,
    load,
    resolve_shard,
    serve,
)
from promotel.service.runtime import release_memory, tune_gc

__all__ = [
    "GRACE_S",
    "Bridge",
    "BridgeStats",
    "ScrapeStatus",
    "SourceRunner",
    "cli_run",
    "load",
    "release_memory",
    "resolve_shard",
    "scrape_metrics",
    "serve",
    "target_resource",
    "tune_gc",
]
