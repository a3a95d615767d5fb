"""The common discovery model: target groups, discovered labels, targets after relabeling, the manager.

The label precedence is Prometheus's (scrape/target.go, PopulateDiscoveredLabels): target labels, then
group labels the target lacks, then the scrape config's defaults only where still empty, then
``__param_*`` only where missing. tests/discovery/test_sd_prometheus.py checks the same against the
real Prometheus."""

from __future__ import annotations

import asyncio
import logging
from types import MappingProxyType

import pytest

from promotel.discovery.relabel import parse_relabel_configs
from promotel.discovery.targets import (
    DiscoveryManager,
    Refresh,
    ScrapeDefaults,
    TargetGroup,
    build_targets,
    discovered_labels,
    format_prometheus_duration,
    parse_target_groups,
)
from promotel.errors import DiscoveryError

DEFAULTS = ScrapeDefaults(job="node", scrape_interval=15, scrape_timeout=10)


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.001, "1ms"), (0.5, "500ms"), (1, "1s"), (15, "15s"), (60, "1m"), (90, "1m30s"), (3600, "1h"),
    (5400.25, "1h30m250ms"), (86_400, "1d"), (7 * 86_400, "1w"), (365 * 86_400, "1y"),
    (365 * 86_400 + 8 * 86_400 + 1, "1y1w1d1s"),
])
def test_durations_print_as_prometheus_does(seconds: float, text: str) -> None:
    assert format_prometheus_duration(seconds) == text


def test_target_group_is_immutable_and_hashable() -> None:
    labels = {"env": "prod"}
    group = TargetGroup.of(["a:1", "b:2"], labels, "src")
    labels["env"] = "dev"
    assert group.labels["env"] == "prod"
    assert group.addresses == ("a:1", "b:2")
    assert isinstance(group.labels, MappingProxyType)
    with pytest.raises(TypeError):
        group.labels["x"] = "y"  # type: ignore[index]
    with pytest.raises(AttributeError):
        group.source = "other"  # type: ignore[misc]
    assert group == TargetGroup.of(["a:1", "b:2"], {"env": "prod"}, "src")
    assert hash(group) == hash(TargetGroup.of(["a:1", "b:2"], {"env": "prod"}, "src"))
    assert group != TargetGroup.of(["a:1"], {"env": "prod"}, "src")


def test_discovered_labels_defaults() -> None:
    defaults = ScrapeDefaults(job="node", scrape_interval=90, scrape_timeout=10, scheme="https",
                              metrics_path="/m", params={"module": ["a", "b"], "empty": []})
    [lset] = discovered_labels(TargetGroup.of(["h:1"], {"env": "x"}), defaults)
    assert lset == {"__address__": "h:1", "__metrics_path__": "/m", "__param_module": "a", "__scheme__": "https",
                    "__scrape_interval__": "1m30s", "__scrape_timeout__": "10s", "env": "x", "job": "node"}
    assert list(lset) == sorted(lset)


def test_precedence_target_over_group_over_defaults() -> None:
    group = TargetGroup(
        targets=({"__address__": "h:1", "zone": "target", "empty": ""},
                 {"__address__": "h:2"}),
        labels={"zone": "group", "empty": "group", "job": "from-group", "__scheme__": "https",
                "__param_module": "discovered", "__metrics_path__": ""},
    )
    defaults = ScrapeDefaults(job="node", scrape_interval=15, scrape_timeout=10, params={"module": ["config"]})
    first, second = discovered_labels(group, defaults)
    assert first["zone"] == "target"
    assert "empty" not in first          # the target's empty label wins over the group's, and is no label
    assert second["empty"] == "group"
    for lset in (first, second):
        assert lset["job"] == "from-group"
        assert lset["__scheme__"] == "https"
        assert lset["__param_module"] == "discovered"   # Prometheus 3: a discovered param is kept
        assert lset["__metrics_path__"] == "/metrics"   # an empty group label is filled by the default


def test_build_targets_states_and_dedup() -> None:
    groups = [TargetGroup.of(["h:1", "h:2", "h", "bad/x", "h:1"], {"team": "a"}, "g0"),
              TargetGroup.of(["h:1"], {"team": "a"}, "g1")]
    configs = parse_relabel_configs([
        {"action": "drop", "source_labels": ["__address__"], "regex": "h:2"},
        {"source_labels": ["__address__"], "target_label": "__meta_copy"},
    ])
    targets = build_targets(groups, DEFAULTS, configs)
    assert [(t.discovered_labels["__address__"], t.state, t.source) for t in targets] == [
        ("h:1", "active", "g0"), ("h:2", "dropped", "g0"), ("h", "active", "g0"), ("bad/x", "invalid", "g0")]
    active = targets[0].target
    assert active is not None
    assert dict(active.labels) == {"instance": "h:1", "job": "node", "team": "a"}
    assert targets[2].target is not None and targets[2].target.address == "h:80"   # Prometheus 2.x default port
    assert targets[3].error is not None and "not a valid hostname" in targets[3].error
    assert all("__meta_copy" not in t.target.all_labels for t in targets if t.target is not None)


def test_parse_target_groups_rules() -> None:
    assert parse_target_groups(None, "json") == []
    assert parse_target_groups([{}], "json") == [((), {})]
    assert parse_target_groups([{"TARGETS": ["a:1"], "Labels": {"x": None}}], "json") == [(("a:1",), {"x": ""})]
    cases: list[tuple[object, str, str]] = [
        ({"targets": []}, "json", "expected a list of target groups"),
        ([None], "json", "nil target group item found"),
        ([{"targets": ["a"], "other": 1}], "json", "unknown key 'other'"),
        ([{"Targets": ["a"]}], "yaml", "unknown key 'Targets'"),
        ([{"targets": "a:1"}], "json", "targets: expected a list"),
        ([{"targets": [1]}], "json", "targets[0]: expected a \"host:port\" string, got a number"),
        ([{"labels": {"a-b": "x"}}], "json", "'a-b' is not a valid label name"),
        ([{"labels": {"a": 1}}], "json", "labels: a: expected a string, got a number"),
        ([{"labels": ["a"]}], "yaml", "labels: expected a mapping"),
        (["x"], "yaml", "group 0: expected a mapping"),
    ]
    for data, fmt, message in cases:
        with pytest.raises(ValueError, match=None) as info:
            parse_target_groups(data, fmt)  # type: ignore[arg-type]
        assert message in str(info.value), (data, str(info.value))


class _Scripted:
    """A discoverer that returns a scripted sequence of results (a Refresh or an exception)."""

    mechanism = "test"

    def __init__(self, name: str, script: list[Refresh | Exception], interval: float = 0.01) -> None:
        self.name = name
        self.refresh_interval = interval
        self.script = script
        self.calls = 0
        self.closed = False

    async def refresh(self) -> Refresh:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if isinstance(step, Exception):
            raise step
        return step

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def aclose(self) -> None:
        self.closed = True


def test_manager_keeps_last_good_and_reports_once(caplog: pytest.LogCaptureFixture) -> None:
    good = Refresh((TargetGroup.of(["a:1"], source="s"),))
    better = Refresh((TargetGroup.of(["a:1", "b:2"], source="s"),))
    fail = DiscoveryError("http://sd/: server returned HTTP status 503 Service Unavailable", kind="http_status")
    other = DiscoveryError("http://sd/: no complete response within 1s", kind="timeout")
    a = _Scripted("http_sd_configs[0]", [good, fail, fail, fail, other, better])
    b = _Scripted("static_configs", [Refresh((TargetGroup.of(["s:1"], source="0"),))])
    manager = DiscoveryManager([a, b], job="node")
    updates: list[tuple[TargetGroup, ...]] = []

    async def main() -> None:
        task = asyncio.create_task(manager.run(updates.append))
        for _ in range(500):
            if a.calls >= 6:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await manager.aclose()

    with caplog.at_level(logging.INFO, logger="promotel.discovery"):
        asyncio.run(main())
    assert a.calls >= 6 and a.closed and b.closed
    assert [[g.addresses for g in u] for u in updates] == [[("a:1",), ("s:1",)], [("a:1", "b:2"), ("s:1",)]]
    status = {s.name: s for s in manager.status()}["http_sd_configs[0]"]
    assert status.errors_total == 4 and status.problems == () and status.targets == 2
    assert status.refreshes_total == a.calls
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"discovery node http_sd_configs[0]: {fail}; keeping its last good targets",
                        f"discovery node http_sd_configs[0]: {other}; keeping its last good targets"]
    assert sum("recovered" in r.getMessage() for r in caplog.records) == 1


def test_manager_partial_problems_and_unexpected_errors() -> None:
    partial = Refresh((TargetGroup.of(["a:1"]),), ("f.json: invalid JSON: x",))
    a = _Scripted("file_sd_configs[0]", [partial])
    c = _Scripted("dns_sd_configs[0]", [RuntimeError("boom")])
    manager = DiscoveryManager([a, c])
    groups = asyncio.run(manager.refresh_once())
    assert [g.addresses for g in groups] == [("a:1",)]
    by_name = {s.name: s for s in manager.status()}
    assert by_name["file_sd_configs[0]"].problems == ("f.json: invalid JSON: x",)
    assert by_name["file_sd_configs[0]"].last_success is not None
    assert by_name["dns_sd_configs[0]"].problems == ("unexpected error: RuntimeError: boom",)
    assert by_name["dns_sd_configs[0]"].last_success is None


def test_manager_times_out_a_hanging_refresh() -> None:
    class Hanging(_Scripted):
        async def refresh(self) -> Refresh:
            await asyncio.sleep(30)
            raise AssertionError("not reached")

    manager = DiscoveryManager([Hanging("http_sd_configs[0]", [], interval=0.05)], min_timeout=0.1)
    assert asyncio.run(manager.refresh_once()) == ()
    assert manager.status()[0].problems == ("refresh took longer than 0.1s",)


def test_manager_refuses_duplicate_names() -> None:
    with pytest.raises(ValueError, match="unique"):
        DiscoveryManager([_Scripted("x", []), _Scripted("x", [])])
