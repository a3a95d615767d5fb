"""A job's discovery keys together (SDConfigs), and static_configs through the common model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from promotel.discovery.dns_sd import DNSDiscoverer
from promotel.discovery.file_sd import FileDiscoverer
from promotel.discovery.http_sd import HTTPDiscoverer
from promotel.discovery.sd import parse_sd_configs
from promotel.discovery.static_sd import StaticConfig, StaticDiscoverer
from promotel.discovery.targets import Discoverer, TargetGroup
from promotel.errors import ConfigError


def test_discoverers_named_by_their_place(tmp_path: Path) -> None:
    sd = parse_sd_configs({
        "job_name": "ignored here",
        "http_sd_configs": [{"url": "http://sd.example/t"}],
        "dns_sd_configs": [{"names": ["_x._tcp.example"]}, {"names": ["x.example"], "type": "A", "port": 80}],
        "file_sd_configs": [{"files": ["sd/*.json"]}],
        "static_configs": [{"targets": ["a:1"]}, {"targets": ["b:2"], "labels": {"x": "y"}}],
    }, base_dir=tmp_path)
    discoverers = sd.discoverers(dns_nameservers=["127.0.0.1:5353"])
    assert [(d.name, d.mechanism) for d in discoverers] == [
        ("static_configs", "static"), ("file_sd_configs[0]", "file"), ("dns_sd_configs[0]", "dns"),
        ("dns_sd_configs[1]", "dns"), ("http_sd_configs[0]", "http")]
    assert [type(d) for d in discoverers] == [StaticDiscoverer, FileDiscoverer, DNSDiscoverer, DNSDiscoverer,
                                              HTTPDiscoverer]
    assert all(isinstance(d, Discoverer) for d in discoverers)
    assert sd.file_sd_configs[0].files == (str(tmp_path / "sd/*.json"),)
    assert [d.refresh_interval for d in discoverers[1:]] == [300.0, 30.0, 30.0, 60.0]


def test_null_and_missing_lists_are_empty() -> None:
    sd = parse_sd_configs({"static_configs": None, "file_sd_configs": None})
    assert sd.discoverers() == ()
    assert parse_sd_configs({}).discoverers() == ()


def test_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_sd_configs({
            "static_configs": [{"targets": ["a:1/metrics"]}, {"targets": ["b:1"], "labels": {"0x": "y"}}],
            "file_sd_configs": [{"files": ["t.txt"]}],
            "dns_sd_configs": [{"names": ["x"], "type": "A"}],
            "http_sd_configs": [{"url": "http://sd", "bogus": 1}],
        }, "sources[2]")
    paths = [path for path, _ in info.value.problems]
    assert paths == ["sources[2].static_configs[0].targets", "sources[2].static_configs[1].labels",
                     "sources[2].file_sd_configs[0].files", "sources[2].dns_sd_configs[0]",
                     "sources[2].http_sd_configs[0].bogus"]
    assert info.value.problems[-1][1] == "unknown key"


def test_static_configs() -> None:
    cfg = StaticConfig.model_validate({"targets": ["a:1", 9100, None], "labels": {"port": 8080, "on": True,
                                                                                 "none": None}})
    assert cfg.targets == ("a:1", "9100", "")
    assert cfg.labels == {"port": "8080", "on": "true", "none": ""}
    discoverer = StaticDiscoverer([StaticConfig(targets=("a:1",)), cfg])
    result = asyncio.run(discoverer.refresh())
    assert result.groups == (TargetGroup.of(["a:1"], {}, "0"), TargetGroup.of(["a:1", "9100", ""], cfg.labels, "1"))
    assert result.problems == ()
