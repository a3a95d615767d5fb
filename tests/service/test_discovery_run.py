"""A real ``promotel run`` with discovered targets: each target is its own scrape, targets come and go with
the discovery file (staleness markers for the gone one), and the Target Allocator's HTTP SD assigns targets."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.bridge import start_bridge, stop_bridge
from support.collector import free_port
from support.sd_servers import FakeTargetAllocator
from support.sink import OTLPSink, attrs
from support.target import ExpositionServer

NO_RECORDED_VALUE = 1       # OTLP DataPointFlags: a staleness marker


@pytest.fixture()
def servers() -> Iterator[tuple[ExpositionServer, ExpositionServer]]:
    a = ExpositionServer("# TYPE a_total counter\na_total{env=\"dev\"} 1\n").start()
    b = ExpositionServer("# TYPE b_total counter\nb_total 1\n").start()
    yield a, b
    a.stop()
    b.stop()


def _address(server: ExpositionServer) -> str:
    return f"127.0.0.1:{server.port}"


def _points(sink: OTLPSink, name: str, instance: str) -> list[Any]:
    out = []
    for resource, metric in sink.metrics():
        if metric.name == name and resource.get("service.instance.id") == instance:
            data = getattr(metric, metric.WhichOneof("data"))
            out += list(data.data_points)
    return out


def test_file_discovery_during_a_run_adds_and_removes_targets(tmp_path: Path, sink: OTLPSink,
                                                              servers: tuple[ExpositionServer, ExpositionServer]
                                                              ) -> None:
    a, b = servers
    health_port = free_port()
    sd = tmp_path / "sd.json"
    sd.write_text(json.dumps([{"targets": [_address(a)], "labels": {"env": "prod"}}]))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
sources:
  - name: fleet
    scrape_interval: 500ms
    scrape_timeout: 400ms
    file_sd_configs: [{{files: ["{sd}"], refresh_interval: 1s}}]
    metric_relabel_configs:
      - {{source_labels: [__name__], regex: 'scrape_.*', action: drop}}
exporters:
  - {{name: sink, endpoint: "http://127.0.0.1:{sink.grpc_port}"}}
self_telemetry: {{enabled: false}}
state_dir: "{tmp_path / 'state'}"
health: {{listen: "127.0.0.1:{health_port}"}}
""")
    cfg.chmod(0o600)
    log_path = tmp_path / "out.log"
    proc = start_bridge(cfg, log_path)
    try:
        assert sink.wait_for(lambda s: bool(_points(s, "a_total", _address(a))), 20), log_path.read_text()
        point = _points(sink, "a_total", _address(a))[0]
        # The target's label is on every series; the exposed one of the same name is exported_env.
        assert attrs(point.attributes) == {"env": "prod", "exported_env": "dev"}
        assert not _points(sink, "b_total", _address(b))
        # B appears.
        sd.write_text(json.dumps([{"targets": [_address(a), _address(b)], "labels": {"env": "prod"}}]))
        assert sink.wait_for(lambda s: bool(_points(s, "b_total", _address(b))), 20), log_path.read_text()
        # /status lists both targets, as promotel targets does, each with its last scrape.
        deadline = time.monotonic() + 10
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/status", timeout=5) as resp:
                fleet = json.load(resp)["sources"]["fleet"]
            if all("last_scrape" in t for t in fleet["targets"]) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sorted(t["labels"]["instance"] for t in fleet["targets"]) == sorted([_address(a), _address(b)])
        assert all(t["state"] == "active" and t["last_scrape"]["error"] is None for t in fleet["targets"])
        assert fleet["targets"][0]["discovered_labels"]["__meta_filepath"] == str(sd)
        assert fleet["discovery"][0]["name"] == "file_sd_configs[0]" and fleet["discovery"][0]["problems"] == []
        # B disappears: its series get staleness markers, and it is not scraped any more.
        sd.write_text(json.dumps([{"targets": [_address(a)], "labels": {"env": "prod"}}]))

        def b_stale(s: OTLPSink) -> bool:
            return any(p.flags & NO_RECORDED_VALUE for p in _points(s, "b_total", _address(b)))

        assert sink.wait_for(b_stale, 20), log_path.read_text()
        seen = len(_points(sink, "b_total", _address(b)))
        scrapes = b.hits
        a_before = len(_points(sink, "a_total", _address(a)))
        time.sleep(2.0)
        assert len(_points(sink, "b_total", _address(b))) == seen
        assert b.hits == scrapes
        assert len(_points(sink, "a_total", _address(a))) > a_before      # A keeps going
        # up is a target's series too: B's stops with it, and no up = 0 was sent for it.
        assert all(p.as_double == 1.0 for p in _points(sink, "up", _address(b)))
    finally:
        assert stop_bridge(proc) == 0
    log = log_path.read_text()
    assert "is gone; its series are marked stale" in log
    assert "Traceback" not in log


def test_target_allocator_assigns_targets_to_this_pod(tmp_path: Path, sink: OTLPSink,
                                                      servers: tuple[ExpositionServer, ExpositionServer]) -> None:
    a, b = servers
    jobs = {"fleet": [{"__address__": _address(a), "__meta_pod": "pa"}, {"__address__": _address(b),
                                                                          "__meta_pod": "pb"}]}
    with FakeTargetAllocator(jobs, {"promotel-0", "promotel-1"}) as allocator:
        mine = set(allocator.assignment("fleet")["promotel-0"])
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"""
sources:
  - name: fleet
    scrape_interval: 500ms
    scrape_timeout: 400ms
    http_sd_configs:
      - url: "{allocator.endpoint}/jobs/fleet/targets?collector_id=${{POD_NAME}}"
        refresh_interval: 1s
    relabel_configs:
      - {{source_labels: [__meta_pod], target_label: pod}}
exporters:
  - {{name: sink, endpoint: "http://127.0.0.1:{sink.grpc_port}"}}
self_telemetry: {{enabled: false}}
state_dir: "{tmp_path / 'state'}"
""")
        cfg.chmod(0o600)
        log_path = tmp_path / "out.log"
        with pytest.MonkeyPatch.context() as env:
            env.setenv("POD_NAME", "promotel-0")        # the downward API's pod name
            proc = start_bridge(cfg, log_path)
        try:
            def scraped(s: OTLPSink) -> set[str]:
                return {res.get("service.instance.id", "") for res, m in s.metrics() if m.name == "up"}

            assert sink.wait_for(lambda s: scraped(s) >= mine, 20), log_path.read_text()
            if len(mine) < 2:
                # The other pod goes away: the allocator gives its targets to this one.
                allocator.remove_collector("promotel-1")
                assert sink.wait_for(lambda s: scraped(s) == {_address(a), _address(b)}, 20), log_path.read_text()
            else:
                assert scraped(sink) == mine
            requests = [r for r in allocator.requests if r.path == "/jobs/fleet/targets"]
            assert requests and all(r.query.get("collector_id") == ["promotel-0"] for r in requests)
            pods = {attrs(p.attributes).get("pod") for res, m in sink.metrics() if m.name in ("a_total", "b_total")
                    for p in getattr(m, m.WhichOneof("data")).data_points}
            assert pods <= {"pa", "pb"} and pods
        finally:
            assert stop_bridge(proc) == 0


def _config(url: str, extra: str = "") -> Any:
    from promotel.config import load_config_text

    return load_config_text(f"""
sources: [{{name: jobs, url: "{url}", interval: 1s, timeout: 0.8s{extra}}}]
exporters: [{{name: x, endpoint: "http://127.0.0.1:9"}}]
""", env={})


def test_a_scrape_skipped_for_the_budget_sends_no_batch(servers: tuple[ExpositionServer, ExpositionServer]) -> None:
    import asyncio

    from promotel.scrape import BudgetSkipped
    from promotel.service import BridgeStats, SourceRunner

    cfg = _config(servers[0].url)
    batches: list[Any] = []
    stats = BridgeStats()
    runner = SourceRunner(cfg.sources[0], cfg, batches.append, stats)

    async def skipped() -> Any:
        raise BudgetSkipped("skipped to stay within Acme's budget", kind="rate_limited")

    runner.scraper.scrape = skipped  # type: ignore[method-assign]

    async def once() -> bool:
        try:
            return await runner.scrape_once()
        finally:
            await runner.aclose()

    assert asyncio.run(once()) is False
    assert batches == []                                      # no up = 0, no staleness markers
    assert stats.counters == {("jobs", "scrapes_skipped.budget"): 1}
    assert stats.targets["jobs"].error == "skipped to stay within Acme's budget"


def test_a_reload_keeps_an_unchanged_targets_state_and_schedule(
        servers: tuple[ExpositionServer, ExpositionServer]) -> None:
    import asyncio

    from promotel.service.bridge import Bridge

    a = servers[0]

    async def scenario() -> None:
        old = Bridge(_config(a.url))
        (before,) = old.runners
        before.next_at = time.monotonic() + 30.0
        await old.aclose()
        same = Bridge(_config(a.url))
        same.adopt(old)
        (after,) = same.runners
        assert after.pipeline is before.pipeline and after.next_at == before.next_at
        # The adopted schedule holds: no scrape at once after the reload.
        stop = asyncio.Event()
        task = asyncio.create_task(same.run(stop))
        await asyncio.sleep(1.5)
        stop.set()
        await task
        await same.aclose()
        assert a.hits == 0
        changed = Bridge(_config(a.url, ", honor_labels: true"))
        changed.adopt(same)
        (fresh,) = changed.runners
        assert fresh.pipeline is not before.pipeline and fresh.next_at is None
        await changed.aclose()

    asyncio.run(scenario())


def test_a_changed_baseten_source_keeps_the_budget_of_its_key_across_a_reload() -> None:
    import asyncio

    from promotel.config import load_config_text
    from promotel.service.bridge import Bridge

    def config(interval: str) -> Any:
        return load_config_text(f"""
sources:
  - {{name: a, mapping: baseten, url: "https://baseten.example/metrics", interval: {interval},
      auth: {{api_key: "${{K}}"}}}}
  - {{name: b, mapping: baseten, url: "https://baseten.example/metrics?x=1", interval: 60s,
      auth: {{api_key: "${{K}}"}}}}
exporters: [{{name: x, endpoint: "http://127.0.0.1:9"}}]
""", env={"K": "one-key"})

    async def scenario() -> None:
        old = Bridge(config("60s"))
        a, b = old.runners
        # One budget for every source on one key and host, in one process.
        assert a.scraper._budget is not None and a.scraper._budget is b.scraper._budget
        budget = a.scraper._budget
        for _ in range(6):                          # the organization's 6 requests of this minute are made
            budget.reserve(time.monotonic(), 0.0)
        await old.aclose()
        new = Bridge(config("30s"))                 # source a changed: a new runner, the same budget
        new.adopt(old)
        changed = new.runners[0]
        assert changed.next_at is None and changed.scraper._budget is budget
        assert changed.next_delay() > 30.0          # it waits for the budget instead of scraping at once
        await new.aclose()

    asyncio.run(scenario())
