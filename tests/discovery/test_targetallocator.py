"""promotel as a collector of the OpenTelemetry Operator's Target Allocator, against a local fake.

A fleet of three collectors (three discoverers with distinct collector ids) shares each job's
targets without overlap; when a collector goes away the allocator reassigns its targets and the
others pick them up at their next refresh, while the targets they had stay where they were. The
fake answers what the real allocator answers to a wrong request (no collector_id, an unknown job or
collector, an HTML Accept header)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from promotel.discovery.http_sd import HTTPDiscoverer, HTTPSDConfig
from promotel.discovery.httpconfig import HTTPClientConfig
from promotel.discovery.relabel import parse_relabel_configs
from promotel.discovery.targetallocator import (
    collector_id,
    fetch_jobs,
    fetch_scrape_configs,
    target_allocator_discoverer,
    target_allocator_sd_config,
    targets_url,
)
from promotel.discovery.targets import DiscoveryManager, Refresh, ScrapeDefaults, TargetGroup, build_targets
from promotel.errors import DiscoveryError
from support.sd_servers import FakeTargetAllocator

COLLECTORS = {"promotel-0", "promotel-1", "promotel-2"}
NODE_TARGETS = [{"__address__": f"10.2.0.{i}:9100", "__meta_kubernetes_pod_name": f"node-exporter-{i}",
                 "__meta_kubernetes_namespace": "monitoring"} for i in range(1, 13)]
SAMBA_TARGETS = [{"__address__": f"10.3.0.{i}:8080", "__meta_kubernetes_pod_name": f"router-{i}"} for i in range(1, 5)]
JOB_WITH_SPACE = "kubernetes pods/sambanova"


@pytest.fixture
def allocator() -> Iterator[FakeTargetAllocator]:
    with FakeTargetAllocator({"node": NODE_TARGETS, JOB_WITH_SPACE: SAMBA_TARGETS}, COLLECTORS) as running:
        yield running


def test_collector_id(monkeypatch: pytest.MonkeyPatch) -> None:
    assert collector_id({"POD_NAME": "promotel-3"}) == "promotel-3"
    assert collector_id({"POD_NAME": " "}) == socket.gethostname()
    assert collector_id({}) == socket.gethostname()
    monkeypatch.setenv("POD_NAME", "from-env")
    assert collector_id() == "from-env"


def test_targets_url() -> None:
    # The job is query-escaped in the path (Go's url.QueryEscape), as the collector does.
    assert targets_url("http://ta:80/", JOB_WITH_SPACE, "promotel-0") == (
        "http://ta:80/jobs/kubernetes+pods%2Fsambanova/targets?collector_id=promotel-0")
    assert targets_url("https://ta.monitoring.svc", "node", "p-1") == (
        "https://ta.monitoring.svc/jobs/node/targets?collector_id=p-1")
    with pytest.raises(ValueError, match="collector_id must not be empty"):
        targets_url("http://ta", "node", "")
    with pytest.raises(ValueError, match="http:// or https:// URL"):
        targets_url("ta:80", "node", "p-0")


def test_sd_config_as_the_collector_builds_it() -> None:
    client = HTTPClientConfig.model_validate({"authorization": {"credentials": "ta-token-123"},
                                              "tls_config": {"insecure_skip_verify": True}})
    cfg = target_allocator_sd_config("http://ta", "node", "promotel-7", client=client)
    assert cfg.url == "http://ta/jobs/node/targets?collector_id=promotel-7"
    assert cfg.refresh_interval == 30.0
    assert cfg.follow_redirects is False
    assert cfg.tls_config.insecure_skip_verify
    assert cfg.authorization_header() == "Bearer ta-token-123"
    assert target_allocator_sd_config("http://ta", "node", "x", refresh_interval=5).refresh_interval == 5


def _assignment(groups_by_collector: dict[str, tuple[TargetGroup, ...]]) -> dict[str, set[str]]:
    return {c: {a for g in groups for a in g.addresses} for c, groups in groups_by_collector.items()}


def test_a_fleet_shares_the_targets_and_rebalances(allocator: FakeTargetAllocator) -> None:
    async def refresh_all(discoverers: dict[str, HTTPDiscoverer]) -> dict[str, tuple[TargetGroup, ...]]:
        return {c: (await d.refresh()).groups for c, d in discoverers.items()}

    async def main() -> None:
        for job, targets in (("node", NODE_TARGETS), (JOB_WITH_SPACE, SAMBA_TARGETS)):
            discoverers = {c: target_allocator_discoverer(allocator.endpoint, job, c, name=f"ta:{job}:{c}")
                           for c in sorted(COLLECTORS)}
            everything = {t["__address__"] for t in targets}
            before = _assignment(await refresh_all(discoverers))
            assert before == {c: set(a) for c, a in allocator.assignment(job).items()}
            assert set().union(*before.values()) == everything
            assert sum(len(a) for a in before.values()) == len(everything)  # no target twice

            allocator.remove_collector("promotel-1")  # the pod went away
            after = _assignment(await refresh_all(discoverers))
            assert after["promotel-1"] == set()       # (a gone pod asks no more; the allocator knows it not)
            assert after["promotel-0"] | after["promotel-2"] == everything
            assert not after["promotel-0"] & after["promotel-2"]
            for c in ("promotel-0", "promotel-2"):    # nothing moved away from the remaining collectors
                assert before[c] <= after[c]
            allocator.add_collector("promotel-1")
            for d in discoverers.values():
                await d.aclose()

    asyncio.run(main())
    targets_requests = [r for r in allocator.requests if r.path.endswith("/targets")]
    assert {r.path for r in targets_requests} == {"/jobs/node/targets", "/jobs/kubernetes+pods%2Fsambanova/targets"}
    assert {r.query["collector_id"][0] for r in targets_requests} == COLLECTORS
    assert all(r.headers["accept"] == "application/json" for r in targets_requests)


def test_served_labels_are_discovered_labels(allocator: FakeTargetAllocator) -> None:
    """The allocator serves each target's discovered labels; the collector relabels them with the
    job's relabel_configs, like any HTTP SD target."""
    discoverer = target_allocator_discoverer(allocator.endpoint, "node", "promotel-0")

    async def main() -> tuple[TargetGroup, ...]:
        try:
            return (await discoverer.refresh()).groups
        finally:
            await discoverer.aclose()

    groups = asyncio.run(main())
    assert groups
    url = targets_url(allocator.endpoint, "node", "promotel-0")
    by_address = {t["__address__"]: t for t in NODE_TARGETS}
    for group in groups:
        [address] = group.addresses
        assert dict(group.labels) == {**by_address[address], "__meta_url": url}
    configs = parse_relabel_configs([{"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"}])
    defaults = ScrapeDefaults(job="node", scrape_interval=30, scrape_timeout=10)
    for target in build_targets(groups, defaults, configs):
        assert target.state == "active" and target.target is not None
        address = target.target.address
        assert dict(target.target.labels) == {"instance": address, "job": "node",
                                              "pod": by_address[address]["__meta_kubernetes_pod_name"]}


class _Switchable:
    """One configured entry whose URL the test changes between refreshes."""

    name = "http_sd_configs[0]"
    mechanism = "http"
    refresh_interval = 30.0

    def __init__(self, inner: HTTPDiscoverer) -> None:
        self.inner = inner

    async def refresh(self) -> Refresh:
        return await self.inner.refresh()

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_what_the_allocator_answers_to_wrong_requests(allocator: FakeTargetAllocator) -> None:
    async def main() -> None:
        # An unknown collector (a pod the allocator does not select) or job: a valid, empty list.
        for job, collector in (("node", "not-a-collector"), ("unknown-job", "promotel-0")):
            discoverer = target_allocator_discoverer(allocator.endpoint, job, collector)
            result = await discoverer.refresh()
            await discoverer.aclose()
            assert result.groups == () and result.problems == ()
        # Without collector_id the allocator answers another document: the refresh fails, and the
        # manager keeps the last good list.
        entry = _Switchable(HTTPDiscoverer(HTTPSDConfig.model_validate(
            {"url": targets_url(allocator.endpoint, "node", "promotel-0")})))
        manager = DiscoveryManager([entry])
        kept = await manager.refresh_once()
        assert kept
        await entry.inner.aclose()
        entry.inner = HTTPDiscoverer(HTTPSDConfig.model_validate({"url": f"{allocator.endpoint}/jobs/node/targets"}))
        assert await manager.refresh_once() == kept
        [problem] = manager.status()[0].problems
        assert "expected a list of target groups" in problem and "got an object" in problem
        await manager.aclose()

    asyncio.run(main())


def test_jobs_and_scrape_configs(allocator: FakeTargetAllocator) -> None:
    assert asyncio.run(fetch_jobs(allocator.endpoint)) == (JOB_WITH_SPACE, "node")
    configs = asyncio.run(fetch_scrape_configs(allocator.endpoint + "/"))
    assert configs == {"node": {"job_name": "node", "scrape_interval": "30s"},
                       JOB_WITH_SPACE: {"job_name": JOB_WITH_SPACE, "scrape_interval": "30s"}}
    # JSON was asked for: the allocator answers HTML to a browser's Accept header.
    assert all(r.headers["accept"] == "application/json" for r in allocator.requests)
    with pytest.raises(DiscoveryError, match="HTTP status 404"):
        asyncio.run(fetch_jobs(allocator.endpoint + "/nowhere"))
