"""Differential tests of file and HTTP discovery against the real Prometheus (Debian 12's 2.42).

1. Targets: one prometheus.yml with jobs using ``file_sd_configs`` (JSON and YAML files, a glob, an
   invalid file), ``http_sd_configs`` (a local HTTP SD server) and ``static_configs`` next to them,
   with relabeling. Prometheus runs on loopback with it; ``/api/v1/targets`` lists each active
   target's labels, scrape URL and discovered labels and each dropped target's discovered labels.
   promotel reads the same jobs (``parse_sd_configs``), discovers with its own discoverers, and
   builds the targets (``build_targets``: discovered labels, ``relabel``, ``target_labels``); both
   must agree exactly, target by target, discovered labels included. Targets Prometheus refuses
   after relabeling appear in neither list; promotel marks them invalid.
2. Validation: ``promtool check config`` on one SD config at a time must accept what promotel
   accepts and refuse what it refuses, with the same message.

The group labels override the job's defaults (``job``, ``__scheme__``, ``__metrics_path__``,
``__scrape_interval__``) as Prometheus lets them. Left out on purpose: a discovered
``__param_<name>`` for a parameter the job's ``params`` also sets (Prometheus 2.x lets the config win,
Prometheus 3 and promotel the discovered label; tests/discovery/test_targets.py covers promotel's),
and relabel steps that rewrite a label in place (2.42 may then report the rewritten value among the
discovered labels of an active target). Nothing listens on the targets and the scrape interval is an
hour: Prometheus only discovers and relabels. The binary is required (``make test`` installs it).
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promotel.discovery.relabel import parse_prometheus_duration, parse_relabel_configs, relabel, target_labels
from promotel.discovery.sd import parse_sd_configs
from promotel.discovery.targets import DiscoveryManager, ScrapeDefaults, TargetGroup, build_targets, discovered_labels
from promotel.errors import ConfigError
from support.prometheus import promtool_agrees, running_prometheus
from support.sd_servers import SDServer

GLOBAL_INTERVAL = 3600.0
GLOBAL_TIMEOUT = 10.0
STARTUP_DEADLINE = 60.0  # Prometheus applies discovered targets on a 5-second tick

FILE_A = [  # sd/a.json
    {"targets": ["10.0.0.1:9100", "10.0.0.2:9100", "10.0.0.3"], "labels": {"env": "prod", "team": "db"}},
    {"targets": ["10.0.0.4:9100"], "labels": {"env": "dev", "job": "from-file", "__scheme__": "https",
                                              "__metrics_path__": "/probe", "__scrape_interval__": "2h"}},
    {"targets": ["10.0.0.5:9100"]},
    {"targets": ["bad/path:9100", "10.0.0.6:9100"], "labels": {"env": "prod", "empty": ""}},
]
FILE_B = """\
- targets: ['10.0.1.1:9100', "[fd00::7]:9100", 10.0.1.2]
  labels:
    env: staging
    port: 9100
    __meta_zone: eu-1
- targets: []
  labels: {env: none}
- targets: ['10.0.0.1:9100']
  labels: {env: prod, team: db}
"""
FILE_INVALID = '[{"targets": ["10.0.9.9:9100"], "labelz": {}}]'  # sd/c.json: never valid, ignored by both
HTTP_GROUPS = [
    {"targets": ["10.1.0.1:8080", "10.1.0.2:8080"], "labels": {"__meta_datacenter": "dc1", "service": "api"}},
    {"targets": ["10.1.0.3:8080"], "labels": {"__meta_datacenter": "dc2", "service": "web", "__param_target": "x"}},
    {"targets": ["10.1.0.4:8080"], "labels": {"service": "batch", "__metrics_path__": "/federate"}},
    {"targets": []},
]


def _jobs(sd_dir: Path, http_url: str) -> list[dict[str, Any]]:
    return [
        {
            "job_name": "files",
            "params": {"module": ["http_2xx", "tcp"]},
            "file_sd_configs": [{"files": [str(sd_dir / "*.json"), str(sd_dir / "*.yml")], "refresh_interval": "1h"}],
            "relabel_configs": [
                {"action": "drop", "source_labels": ["env"], "regex": "dev|none"},
                {"action": "labelmap", "regex": "__meta_(zone|filepath)", "replacement": "sd_$1"},
                {"source_labels": ["__address__"], "regex": "([^:]+):.*", "target_label": "host"},
                {"source_labels": ["team", "env"], "separator": "@", "target_label": "owner"},
            ],
        },
        {
            "job_name": "http",
            "scheme": "https",
            "metrics_path": "/stats",
            "scrape_interval": "30s",
            "scrape_timeout": "5s",
            "http_sd_configs": [{"url": http_url, "refresh_interval": "1h"}],
            "relabel_configs": [
                {"action": "keep", "source_labels": ["__meta_datacenter", "service"], "regex": "dc1;.*|;batch"},
                {"action": "labelmap", "regex": "__meta_(.+)"},
                {"source_labels": ["__meta_url"], "regex": "http://([^/]+)/.*", "target_label": "sd_host"},
            ],
        },
        {
            "job_name": "plain",
            "file_sd_configs": [{"files": [str(sd_dir / "*.json"), str(sd_dir / "b.yml")]}],
            "http_sd_configs": [{"url": http_url}],
            "relabel_configs": [{"action": "drop", "source_labels": ["env"], "regex": "dev"},
                                {"action": "keep", "source_labels": ["__address__"], "regex": "10\\..*"}],
        },
        {
            "job_name": "mixed",
            "scrape_interval": "1m",
            "static_configs": [{"targets": ["10.2.0.1:9100"], "labels": {"origin": "static"}}],
            "file_sd_configs": [{"files": [str(sd_dir / "a.json"), str(sd_dir / "b.yml")]}],
            "http_sd_configs": [{"url": http_url}],
            "relabel_configs": [{"action": "drop", "source_labels": ["service"], "regex": "web"},
                                {"action": "hashmod", "source_labels": ["__address__"], "modulus": 3,
                                 "target_label": "shard"}],
        },
    ]


def _defaults(job: dict[str, Any]) -> ScrapeDefaults:
    interval = parse_prometheus_duration(job["scrape_interval"]) if "scrape_interval" in job else GLOBAL_INTERVAL
    timeout = parse_prometheus_duration(job["scrape_timeout"]) if "scrape_timeout" in job else min(
        GLOBAL_TIMEOUT, interval)
    return ScrapeDefaults(job=job["job_name"], scrape_interval=interval, scrape_timeout=timeout,
                          scheme=job.get("scheme", "http"), metrics_path=job.get("metrics_path", "/metrics"),
                          params=job.get("params", {}))


def _scrape_url(labels: dict[str, str], job: dict[str, Any]) -> str:
    """Prometheus's Target.URL: the configured params, each first value replaced by ``__param_<name>``."""
    params = {name: list(values) for name, values in job.get("params", {}).items()}
    for name, value in labels.items():
        if name.startswith("__param_"):
            params.setdefault(name.removeprefix("__param_"), [""])[0] = value
    query = urllib.parse.urlencode([(k, v) for k, values in sorted(params.items()) for v in values])
    return f"{labels['__scheme__']}://{labels['__address__']}{labels['__metrics_path__']}" + (
        f"?{query}" if query else "")


def _key(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _ours(jobs: list[dict[str, Any]]) -> tuple[Counter[str], Counter[str], Counter[str], dict[str, set[str]], int]:
    """What promotel discovers and builds: active (pool, labels, url), active discovered labels,
    dropped discovered labels, every candidate discovered label set of each active key (duplicates
    collapse into one active target, as in Prometheus), and the count of invalid targets."""
    active: Counter[str] = Counter()
    active_discovered: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    candidates: dict[str, set[str]] = {}
    invalid = 0
    for job in jobs:
        sd = parse_sd_configs(job, f"scrape_configs[{job['job_name']}]")
        manager = DiscoveryManager(sd.discoverers(), job=job["job_name"])

        async def discover(m: DiscoveryManager = manager) -> tuple[TargetGroup, ...]:
            try:
                return await m.refresh_once()
            finally:
                await m.aclose()

        groups = asyncio.run(discover())
        defaults = _defaults(job)
        configs = parse_relabel_configs(job.get("relabel_configs"))
        for target in build_targets(groups, defaults, configs):
            if target.state == "dropped":
                dropped[_key(dict(target.discovered_labels))] += 1
            elif target.state == "invalid":
                invalid += 1
            else:
                assert target.target is not None
                key = _key({"pool": job["job_name"], "labels": dict(target.target.labels),
                            "url": _scrape_url(dict(target.target.all_labels), job)})
                active[key] += 1
                active_discovered[_key(dict(target.discovered_labels))] += 1
        for group in groups:  # every candidate, before deduplication
            for lset in discovered_labels(group, defaults):
                kept = relabel(lset, configs)
                if kept is None:
                    continue
                try:
                    final = target_labels(kept)
                except ConfigError:
                    continue
                key = _key({"pool": job["job_name"], "labels": dict(final.labels),
                            "url": _scrape_url(dict(final.all_labels), job)})
                candidates.setdefault(key, set()).add(_key(lset))
    return active, active_discovered, dropped, candidates, invalid


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[dict[str, Any]], dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("sd-prometheus")
    sd_dir = tmp / "sd"
    sd_dir.mkdir()
    (sd_dir / "a.json").write_text(json.dumps(FILE_A))
    (sd_dir / "b.yml").write_text(FILE_B)
    (sd_dir / "c.json").write_text(FILE_INVALID)
    with SDServer(groups=HTTP_GROUPS) as server:
        jobs = _jobs(sd_dir, server.url("/sd/targets"))
        config = {"global": {"scrape_interval": "1h", "scrape_timeout": "10s"}, "scrape_configs": jobs}
        active, _, dropped, _, _ = _ours(jobs)
        want = sum(active.values()) + sum(dropped.values())
        with running_prometheus(tmp, config) as prometheus:
            yield jobs, prometheus.listed_targets(want, STARTUP_DEADLINE)


def test_targets_match_prometheus(setup: tuple[list[dict[str, Any]], dict[str, Any]]) -> None:
    jobs, data = setup
    active, _, dropped, _, invalid = _ours(jobs)
    got_active = Counter(_key({"pool": t["scrapePool"], "labels": t["labels"], "url": t["scrapeUrl"]})
                         for t in data.get("activeTargets", []))
    got_dropped = Counter(_key(t["discoveredLabels"]) for t in data.get("droppedTargets", []))
    assert sorted((got_active - active).elements()) == sorted((active - got_active).elements()) == [], (
        "active targets differ:\nonly Prometheus:\n" + "\n".join(sorted((got_active - active).elements()))
        + "\nonly promotel:\n" + "\n".join(sorted((active - got_active).elements())))
    assert got_dropped == dropped, (
        "dropped targets differ:\nonly Prometheus:\n" + "\n".join(sorted((got_dropped - dropped).elements()))
        + "\nonly promotel:\n" + "\n".join(sorted((dropped - got_dropped).elements())))
    # Every mechanism and case took part: both pools' active and dropped targets, the refused ones.
    pools = Counter(t["scrapePool"] for t in data["activeTargets"])
    assert pools == {"files": 9, "http": 3, "plain": 11, "mixed": 13}, pools
    assert sum(got_dropped.values()) == 6
    assert invalid == 2  # "bad/path:9100" in the files and mixed jobs: refused by both


def test_discovered_labels_match_prometheus(setup: tuple[list[dict[str, Any]], dict[str, Any]]) -> None:
    """The discovered labels of active targets, in the job whose relabeling only keeps and drops.

    Prometheus 2.42 may list labels that relabeling wrote among the discovered labels of an active
    target, in place of discovered ones (a reuse of the label slice fixed later): with the files job
    it reports a relabeled ``owner`` instead of the discovered ``port``. So the jobs that write labels
    are compared through their dropped targets only (test_targets_match_prometheus), whose discovered
    labels 2.42 reports intact."""
    jobs, data = setup
    _, _, _, candidates, _ = _ours(jobs)
    plain = [t for t in data["activeTargets"] if t["scrapePool"] == "plain"]
    assert len(plain) == 11
    for target in plain:
        key = _key({"pool": target["scrapePool"], "labels": target["labels"], "url": target["scrapeUrl"]})
        # The one promotel built (or, for a target discovered twice, one of its discoveries).
        assert _key(target["discoveredLabels"]) in candidates.get(key, set()), (key, target["discoveredLabels"])
    discovered = [t["discoveredLabels"] for t in plain]
    assert any(d.get("__meta_filepath", "").endswith("/b.yml") and d.get("port") == "9100" for d in discovered)
    assert sum("__meta_url" in d for d in discovered) == 4
    overridden = [t for t in data["activeTargets"] if t["labels"].get("job") == "from-file"]
    assert [t["scrapeUrl"] for t in overridden] == ["https://10.0.0.4:9100/probe"]  # in the mixed job


def test_duplicates_collapse_as_in_prometheus(setup: tuple[list[dict[str, Any]], dict[str, Any]]) -> None:
    """10.0.0.1:9100 with the same labels is in a.json and b.yml: one active target in the plain and mixed pools,
    two in the files pool (whose relabeling copies the file's path into a label)."""
    jobs, data = setup
    active, _, _, _, _ = _ours(jobs)
    ours = Counter(o["pool"] for o in map(json.loads, active.elements()) if o["labels"]["instance"] == "10.0.0.1:9100")
    theirs = Counter(t["scrapePool"] for t in data["activeTargets"] if t["labels"]["instance"] == "10.0.0.1:9100")
    assert ours == theirs == {"files": 2, "plain": 1, "mixed": 1}


# --- validation: promtool check config -----------------------------------------------------------

VALIDATION_CASES: list[tuple[str, dict[str, Any]]] = [
    ("file ok", {"file_sd_configs": [{"files": ["sd/*.json", "x.YML"], "refresh_interval": "30s"}]}),
    ("file no files", {"file_sd_configs": [{"files": []}]}),
    ("file bad name", {"file_sd_configs": [{"files": ["targets.txt"]}]}),
    ("file star in dir", {"file_sd_configs": [{"files": ["*/t.json"]}]}),
    ("file bad interval", {"file_sd_configs": [{"files": ["t.json"], "refresh_interval": "5 minutes"}]}),
    ("file unknown key", {"file_sd_configs": [{"files": ["t.json"], "interval": "1m"}]}),
    ("dns ok", {"dns_sd_configs": [{"names": ["_x._tcp.example"]}]}),
    ("dns a ok", {"dns_sd_configs": [{"names": ["x.example"], "type": "a", "port": 80}]}),
    ("dns no names", {"dns_sd_configs": [{"names": []}]}),
    ("dns bad type", {"dns_sd_configs": [{"names": ["x"], "type": "TXT"}]}),
    ("dns no port", {"dns_sd_configs": [{"names": ["x"], "type": "AAAA"}]}),
    ("http ok", {"http_sd_configs": [{"url": "http://sd.example/t", "basic_auth": {"username": "u",
                                                                                   "password": "p"}}]}),
    ("http no url", {"http_sd_configs": [{"refresh_interval": "1m"}]}),
    ("http bad scheme", {"http_sd_configs": [{"url": "ftp://sd.example/t"}]}),
    ("http no host", {"http_sd_configs": [{"url": "http:///t"}]}),
    # (Conflicting credentials, such as bearer_token with basic_auth, are left out: 2.42 does not check the
    # HTTP client settings of http_sd_configs, later versions refuse them as promotel does; see test_http_sd.py.)
    ("http authorization", {"http_sd_configs": [{"url": "http://sd", "authorization": {"credentials": "c"},
                                                 "tls_config": {"insecure_skip_verify": True}}]}),
    ("static ok", {"static_configs": [{"targets": ["a:1", "b"], "labels": {"x": "y"}}]}),
    ("static path", {"static_configs": [{"targets": ["a:1/metrics"]}]}),
    ("static bad label", {"static_configs": [{"targets": ["a:1"], "labels": {"a-b": "y"}}]}),
    ("static unknown key", {"static_configs": [{"targets": ["a:1"], "label": {"a": "y"}}]}),
]


@pytest.mark.parametrize(("name", "cfg"), VALIDATION_CASES, ids=[name for name, _ in VALIDATION_CASES])
def test_validation_matches_promtool(name: str, cfg: dict[str, Any], tmp_path: Path) -> None:
    prom_message, ours = promtool_agrees(tmp_path, {"job_name": "j", **cfg}, lambda: parse_sd_configs(cfg),
                                         syntax_only=True)
    if ours is not None and not prom_message.startswith("yaml: unmarshal errors") and "field" not in prom_message:
        # Prometheus's own message, to which promotel may add what to change.
        assert ours.startswith(prom_message.split("\n")[0].removesuffix(".")), (
            f"Prometheus: {prom_message}; promotel: {ours}")
