"""A configured source as a Prometheus scrape job: config keys, targets, series relabeling, ``promotel targets``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promotel.cli import main
from promotel.config import SourceConfig, load_config_text
from promotel.discovery.seriesrelabel import SeriesRelabeler
from promotel.discovery.sourcetargets import source_targets, target_url, url_groups
from promotel.discovery.targets import TargetGroup
from promotel.errors import ConfigError
from promotel.exposition import ExpositionParser
from promotel.model import Labels
from promotel.pipeline import TargetPipeline

EXPORTERS = 'exporters: [{name: e, endpoint: "http://127.0.0.1:4318"}]\n'


def _source(text: str, env: dict[str, str] | None = None) -> SourceConfig:
    return load_config_text("sources:\n" + text + EXPORTERS, env=env or {}).sources[0]


# ─── config ──────────────────────────────────────────────────────────────────────────────────────────

def test_a_pasted_prometheus_job_loads() -> None:
    src = _source("""
  - name: fleet
    scrape_interval: 30s
    scrape_timeout: 5s
    scheme: https
    metrics_path: /m
    params: {module: [http_2xx], single: one}
    static_configs: [{targets: ["a:1"], labels: {env: prod}}]
    file_sd_configs: null
    relabel_configs:
      - {source_labels: [__address__], regex: '(.*):(.*)', target_label: host, replacement: '${1}'}
    metric_relabel_configs:
      - {source_labels: [__name__], regex: 'go_(.*)', target_label: __name__, replacement: 'golang_$1'}
""", env={"1": "not used"})
    assert (src.interval, src.timeout, src.scheme, src.metrics_path) == (30.0, 5.0, "https", "/m")
    assert src.params == {"module": ("http_2xx",), "single": ("one",)}
    assert src.relabel_configs[0].replacement == "${1}"          # not expanded as a variable
    assert src.metric_relabel_configs[0].replacement == "golang_$1"
    assert src.file_sd_configs == ()
    assert src.url is None


@pytest.mark.parametrize(("body", "message"), [
    ("  - {name: a}\n", "no targets: set url"),
    ('  - {name: a, url: "http://h/m", static_configs: [{targets: ["h:1"]}]}\n', "both url and static_configs"),
    ('  - {name: a, url: "http://h/m", metrics_path: /x}\n', "metrics_path apply to discovered targets"),
    ('  - {name: a, url: "http://h/m", interval: 30s, scrape_interval: 30s}\n', "both interval and scrape_interval"),
    ('  - {name: a, static_configs: [{targets: ["h:1"]}], metrics_path: x}\n', "starting with '/'"),
    ('  - {name: a, static_configs: [{targets: ["h:1"]}], relabel_configs: [{action: nope}]}\n', "nope"),
])
def test_invalid_target_keys_are_refused_with_a_reason(body: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _source(body)
    assert message in str(info.value)


def test_variables_are_still_expanded_outside_relabel_rules() -> None:
    src = _source('  - {name: a, static_configs: [{targets: ["${HOST}:1"]}], '
                  'relabel_configs: [{target_label: x, replacement: "${HOST}"}]}\n', env={"HOST": "h"})
    assert src.static_configs[0].targets == ("h:1",)
    assert src.relabel_configs[0].replacement == "${HOST}"


# ─── targets ─────────────────────────────────────────────────────────────────────────────────────────

def test_a_url_source_is_one_static_target_with_its_url_as_written() -> None:
    src = _source('  - {name: one, url: "https://u:secret@h:8443/p/m?b=2&a=1"}\n')
    (target,) = source_targets(src, url_groups(src))
    assert target.state == "active"
    assert target.url == "https://u:secret@h:8443/p/m?b=2&a=1"
    assert dict(target.labels) == {"instance": "h:8443", "job": "one"}
    assert target.discovered_labels["__param_a"] == "1"
    assert "secret" not in json.dumps(target.as_dict())


def test_discovered_targets_get_prometheus_labels_urls_and_schedules() -> None:
    src = _source("""
  - name: fleet
    scrape_interval: 1m
    params: {m: [x, y]}
    static_configs: [{targets: ["a:1", "b:2", "c"]}]
    relabel_configs:
      - {source_labels: [__address__], regex: 'b:.*', action: drop}
      - {source_labels: [__address__], regex: c, target_label: __scrape_interval__, replacement: 2m}
      - {source_labels: [__address__], regex: c, target_label: __param_m, replacement: z}
""")
    groups = (TargetGroup.of(["a:1", "b:2", "c"]),)
    targets = source_targets(src, groups)
    assert [t.state for t in targets] == ["active", "active", "dropped"]
    a, c, b = targets
    assert a.url == "http://a:1/metrics?m=x&m=y" and a.interval == 60.0
    assert c.url == "http://c:80/metrics?m=z&m=y" and c.interval == 120.0     # Prometheus's Target.URL
    assert dict(c.labels) == {"instance": "c:80", "job": "fleet"}
    assert b.url is None and b.discovered_labels["__address__"] == "b:2"
    assert a.source(src).url == a.url and a.source(src).interval == 60.0


def test_target_url_encodes_the_query_as_go_does() -> None:
    url = target_url({"__address__": "h:1", "__scheme__": "https", "__metrics_path__": "/p",
                      "__param_q": "a b/c"}, {"z": ["1"]})
    assert url == "https://h:1/p?q=a+b%2Fc&z=1"


# ─── series: target labels and metric_relabel_configs ────────────────────────────────────────────────

BODY = """# TYPE go_goroutines gauge
go_goroutines 5
# TYPE http_requests counter
http_requests_total{code="200",env="dev"} 3
http_requests_total{code="500"} 1
# TYPE lat histogram
lat_bucket{le="1"} 1
lat_bucket{le="+Inf"} 2
lat_sum 1.5
lat_count 2
"""


def _families() -> list:  # type: ignore[type-arg]
    return list(ExpositionParser().parse(BODY, "text/plain"))


def test_target_labels_go_on_every_series_and_clashes_are_exported() -> None:
    relabeler = SeriesRelabeler({"job": "j", "instance": "i:1", "env": "prod"}, ())
    families, dropped, _ = relabeler.apply(_families())
    assert dropped == 0
    samples = {(s.name, tuple(sorted(s.labels.items()))) for f in families for s in f.samples}
    assert ("go_goroutines", (("env", "prod"),)) in samples
    assert ("http_requests_total", (("code", "200"), ("env", "prod"), ("exported_env", "dev"))) in samples
    honored, _, _ = SeriesRelabeler({"env": "prod"}, (), honor_labels=True).apply(_families())
    assert any(dict(s.labels).get("env") == "dev" for f in honored for s in f.samples)


def test_metric_relabel_configs_drop_keep_and_rename_series() -> None:
    src = _source("""
  - name: j
    url: http://h:1/metrics
    metric_relabel_configs:
      - {source_labels: [__name__], regex: 'go_.*', action: drop}
      - {source_labels: [code], regex: '5..', action: drop}
      - {source_labels: [__name__], regex: 'lat_(.*)', target_label: __name__, replacement: 'latency_$1'}
      - {source_labels: [job, instance], regex: 'j;h:1', target_label: seen, replacement: seen}
""")
    relabeler = SeriesRelabeler({"job": "j", "instance": "h:1"}, src.metric_relabel_configs)
    families, dropped, example = relabeler.apply(_families())
    assert dropped == 2 and example == "go_goroutines"
    by_family = {f.name: f for f in families}
    assert set(by_family) == {"http_requests", "latency"}
    assert by_family["latency"].type == "histogram"
    assert [s.name for s in by_family["latency"].samples] == ["latency_bucket", "latency_bucket", "latency_sum",
                                                              "latency_count"]
    for f in families:
        for s in f.samples:
            assert dict(s.labels).get("seen") == "seen"          # the rules saw the target's job and instance
            assert "job" not in s.labels and "instance" not in s.labels
    again, dropped_again, _ = relabeler.apply(_families())       # cached: the same answer
    assert again == families and dropped_again == 2


def test_a_pipeline_counts_relabel_drops_as_configured_ones() -> None:
    src = _source("""
  - name: j
    url: http://h:1/metrics
    metric_relabel_configs: [{source_labels: [__name__], regex: 'go_.*', action: drop}]
""")
    pipeline = TargetPipeline.for_source(src)
    result = pipeline.process(BODY, "text/plain", 1_000_000_000)
    assert result.dropped.get("metric_relabel_drop") == 1
    assert "go_goroutines" not in {m.name for m in result.metrics}
    assert Labels({"a": "1"}) == Labels({"a": "1"})


# ─── promotel targets ────────────────────────────────────────────────────────────────────────────────

def test_promotel_targets_lists_active_and_dropped_targets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sd.json").write_text(json.dumps([{"targets": ["127.0.0.1:9101", "127.0.0.1:9102"],
                                                   "labels": {"env": "prod"}}]))
    config = tmp_path / "c.yaml"
    config.write_text("""sources:
  - name: fleet
    file_sd_configs: [{files: [sd.json]}]
    relabel_configs: [{source_labels: [__address__], regex: '.*:9102', action: drop}]
  - {name: one, url: "http://127.0.0.1:9200/metrics"}
""" + EXPORTERS)
    config.chmod(0o600)
    assert main(["targets", "-c", str(config), "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(t["source"], t["state"], t["url"]) for t in listed] == [
        ("fleet", "active", "http://127.0.0.1:9101/metrics"), ("fleet", "dropped", None),
        ("one", "active", "http://127.0.0.1:9200/metrics")]
    assert listed[0]["labels"] == {"env": "prod", "instance": "127.0.0.1:9101", "job": "fleet"}
    assert listed[1]["discovered_labels"]["__meta_filepath"] == str(tmp_path / "sd.json")
    assert set(listed[0]) == {"source", "url", "labels", "discovered_labels", "state"}
    assert main(["targets", "-c", str(config)]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["SOURCE", "STATE", "URL"] and "dropped" in table


def test_promotel_targets_reports_a_failing_discoverer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sd.json").write_text("[{")
    config = tmp_path / "c.yaml"
    config.write_text("sources:\n  - {name: fleet, file_sd_configs: [{files: [sd.json]}]}\n" + EXPORTERS)
    config.chmod(0o600)
    assert main(["targets", "-c", str(config), "--format", "json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == []
    assert "source fleet: file_sd_configs[0]" in captured.err


def test_map_with_a_configured_source_applies_its_metric_relabel_configs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "scrape.prom").write_text(BODY)
    config = tmp_path / "c.yaml"
    config.write_text("""sources:
  - name: fleet
    static_configs: [{targets: ["h:1"]}]
    metric_relabel_configs:
      - {source_labels: [__name__], regex: 'go_.*', action: drop}
      - {source_labels: [__name__], regex: 'lat_(.*)', target_label: __name__, replacement: 'latency_$1'}
""" + EXPORTERS)
    config.chmod(0o600)
    assert main(["map", "-c", str(config), "--source", "fleet", str(tmp_path / "scrape.prom")]) == 0
    request = json.loads(capsys.readouterr().out.splitlines()[0])
    names = {m["name"] for rm in request["resourceMetrics"] for sm in rm["scopeMetrics"] for m in sm["metrics"]}
    assert {"latency", "http_requests_total", "up"} <= names, names
    assert not any(n.startswith("go_") or n.startswith("lat_") or n == "lat" for n in names)


def test_relabel_configs_that_drop_a_url_sources_target_are_refused() -> None:
    with pytest.raises(ConfigError) as info:
        _source('  - {name: a, url: "http://h:1/m", relabel_configs: [{source_labels: [__address__], '
                'regex: "h:.*", action: drop}]}\n')
    assert "relabel_configs leave the url no target to scrape: a relabel config drops it" in str(info.value)
    kept = _source('  - {name: a, url: "http://h:1/m", relabel_configs: [{target_label: zone, replacement: z1}]}\n')
    (target,) = source_targets(kept, url_groups(kept))
    assert dict(target.labels) == {"instance": "h:1", "job": "a", "zone": "z1"} and target.url == "http://h:1/m"
