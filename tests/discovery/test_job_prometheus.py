"""The same Prometheus job in Prometheus 2.42 (Debian's binary) and in a promotel source, compared.

The job: ``file_sd_configs`` (three targets, one dropped by ``relabel_configs``), ``relabel_configs`` that add
and rewrite target labels, and ``metric_relabel_configs`` that drop, keep, rename and relabel series. Two
local exposition servers are the targets; Prometheus scrapes them every second.

1. Targets: ``/api/v1/targets`` (labels of the active targets, discovered labels of the dropped one) equals
   ``promotel targets --format json`` on the pasted job.
2. Series: what Prometheus stored (``/api/v1/series``, its own ``up``/``scrape_*`` left out) equals the series
   promotel's pipeline hands to the mapping for each target (the target's labels, then
   ``metric_relabel_configs``; ``job`` and ``instance`` are the target's identity), on the same bodies.

The binary is required: if it is missing, the tests fail (``make test`` installs the ``prometheus`` package).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from promotel.cli import main
from promotel.config import load_config
from promotel.exposition import ExpositionParser
from promotel.pipeline import TargetPipeline
from support.prometheus import running_prometheus
from support.target import ExpositionServer

DEADLINE = 60.0
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
             "scrape_series_added"}

BODIES = [
    """# TYPE go_goroutines gauge
go_goroutines 7
# TYPE http_requests_total counter
http_requests_total{code="200",env="dev",path="/a"} 10
http_requests_total{code="500",env="dev",path="/a"} 1
http_requests_total{code="200",path="/b"} 4
# TYPE lat histogram
lat_bucket{le="0.5"} 1
lat_bucket{le="+Inf"} 3
lat_sum 2.5
lat_count 3
# TYPE temp_celsius gauge
temp_celsius{sensor="A",debug_id="x1"} 21.5
temp_celsius{sensor="b",debug_id="x2"} 19
""",
    """# TYPE http_requests_total counter
http_requests_total{code="200",path="/c"} 3
http_requests_total{code="404",path="/c"} 2
# TYPE temp_celsius gauge
temp_celsius{sensor="C"} 30
# TYPE other gauge
other{kind="keep"} 1
other{kind="drop"} 2
""",
]

RELABEL = [
    {"source_labels": ["__address__"], "regex": "127\\.0\\.0\\.1:(1)", "action": "drop"},
    {"source_labels": ["__address__"], "regex": "(.*):(\\d+)", "target_label": "port", "replacement": "p${2}"},
    {"source_labels": ["__meta_filepath"], "regex": ".*/(.*)\\.json", "target_label": "file", "replacement": "$1"},
    {"source_labels": ["team"], "regex": "(.*)", "target_label": "team", "replacement": "team-$1"},
]
METRIC_RELABEL = [
    {"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"},
    {"source_labels": ["code"], "regex": "5..", "action": "drop"},
    {"source_labels": ["__name__"], "regex": "lat_(.*)", "target_label": "__name__", "replacement": "latency_$1"},
    {"source_labels": ["sensor"], "action": "lowercase", "target_label": "sensor"},
    {"regex": "debug_id", "action": "labeldrop"},
    {"source_labels": ["__name__", "kind"], "regex": "other;drop", "action": "drop"},
    {"source_labels": ["job", "instance"], "separator": "@", "target_label": "origin"},
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("job-prometheus")
    servers = [ExpositionServer(body).start() for body in BODIES]
    try:
        addresses = [f"127.0.0.1:{s.port}" for s in servers]
        (tmp / "fleet.json").write_text(json.dumps([
            {"targets": addresses, "labels": {"env": "prod", "team": "core"}},
            {"targets": ["127.0.0.1:1"], "labels": {"env": "test"}},
        ]))
        job = {"job_name": "fleet", "scrape_interval": "1s", "scrape_timeout": "500ms",
               "file_sd_configs": [{"files": [str(tmp / "fleet.json")]}],
               "relabel_configs": RELABEL, "metric_relabel_configs": METRIC_RELABEL}
        source = {"name": "fleet", "scrape_interval": "1s", "scrape_timeout": "500ms",
                  "file_sd_configs": job["file_sd_configs"], "relabel_configs": RELABEL,
                  "metric_relabel_configs": METRIC_RELABEL}
        config = tmp / "promotel.yaml"
        config.write_text(yaml.safe_dump({"sources": [source],
                                          "exporters": [{"name": "e", "endpoint": "http://127.0.0.1:4318"}]},
                                         sort_keys=False))
        config.chmod(0o600)
        with running_prometheus(tmp, {"scrape_configs": [job]}) as prometheus:
            targets: dict[str, Any] = {}
            series: list[dict[str, str]] = []

            def scraped_both() -> bool:
                nonlocal targets, series
                targets = prometheus.get("targets") or {}
                series = prometheus.get("series?" + urllib.parse.urlencode({"match[]": '{job="fleet"}'})) or []
                active = targets.get("activeTargets", [])
                scraped = {s.get("instance") for s in series if s["__name__"] == "temp_celsius"}
                return len(active) == 2 and all(t["health"] == "up" for t in active) and len(scraped) == 2

            if not prometheus.wait_for(scraped_both, DEADLINE):
                pytest.fail(f"Prometheus did not scrape both targets in {DEADLINE:g}s: {targets}")
            yield {"config": config, "targets": targets, "series": series, "servers": servers}
    finally:
        for s in servers:
            s.stop()


def _promotel_targets(config: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    assert main(["targets", "-c", str(config), "--format", "json"]) == 0
    listed: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return listed


def test_target_labels_equal_prometheus(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    ours = _promotel_targets(setup["config"], capsys)
    theirs = setup["targets"]
    active = sorted((t["labels"] for t in ours if t["state"] == "active"), key=lambda d: d["instance"])
    assert active == sorted((t["labels"] for t in theirs["activeTargets"]), key=lambda d: d["instance"])
    assert len(active) == 2 and all(t["labels"]["team"] == "team-core" for t in ours if t["state"] == "active")
    urls = sorted(t["url"] for t in ours if t["state"] == "active")
    assert urls == sorted(t["scrapeUrl"] for t in theirs["activeTargets"])
    dropped = [t["discovered_labels"] for t in ours if t["state"] == "dropped"]
    assert dropped == [t["discoveredLabels"] for t in theirs["droppedTargets"]]
    assert len(dropped) == 1


def test_series_after_metric_relabel_configs_equal_prometheus(setup: dict[str, Any],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config(str(setup["config"]), env={})
    (source,) = config.sources
    ours: set[tuple[tuple[str, str], ...]] = set()
    by_address = {f"127.0.0.1:{s.port}": body for s, body in zip(setup["servers"], BODIES)}
    for target in _promotel_targets(setup["config"], capsys):
        if target["state"] != "active":
            continue
        labels = target["labels"]
        pipeline = TargetPipeline.for_target(source, config, name=source.name, url=target["url"], labels=labels)
        families, _, _ = pipeline.relabeler.apply(list(ExpositionParser().parse(by_address[labels["instance"]],
                                                                                "text/plain")))
        for family in families:
            for sample in family.samples:
                # What the series is in Prometheus: its name, its labels, and the target's job and instance.
                series = {"__name__": sample.name, **dict(sample.labels)}
                series.setdefault("job", labels["job"])
                series.setdefault("instance", labels["instance"])
                ours.add(tuple(sorted(series.items())))
    theirs = {tuple(sorted(s.items())) for s in setup["series"] if s["__name__"] not in SYNTHETIC}
    assert ours == theirs
    names = {dict(s)["__name__"] for s in ours}
    assert "go_goroutines" not in names and "latency_bucket" in names and "lat_bucket" not in names
    assert all(dict(s).get("code") != "500" for s in ours)
    assert len(ours) == 12
    # A target label (env from the file) wins over the exposed one, which becomes exported_env.
    assert any(dict(s).get("exported_env") == "dev" and dict(s)["env"] == "prod" for s in ours)
    assert {dict(s)["origin"] for s in ours} == {f"fleet@127.0.0.1:{s.port}" for s in setup["servers"]}
