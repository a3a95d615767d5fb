"""The service as operators run it: health endpoints, SIGHUP reload, JSON logs, no leaked secrets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from promotel.config import load_config_text
from promotel.errors import ConfigError
from promotel.model import TargetBatch
from support.bridge import PROMOTEL, start_bridge, stop_bridge
from support.collector import free_port
from support.sink import OTLPSink
from support.target import ExpositionServer

SECRET = "sk-live-7f3a9c1e5b2d4f60a8e1"   # looks like a real key; must never be printed anywhere

BODY = "# TYPE jobs_total counter\njobs_total{queue=\"a\"} 5\n"


def config_text(target_url: str, sink_port: int, health_port: int, extra_sources: str = "") -> str:
    return f"""
sources:
  - name: jobs
    url: "{target_url}"
    interval: 1s
    timeout: 0.8s
    auth: {{bearer_token: "{SECRET}"}}
{extra_sources}
exporters:
  - name: sink
    endpoint: "http://127.0.0.1:{sink_port}"
    headers: {{authorization: "Bearer {SECRET}"}}
health: {{listen: "127.0.0.1:{health_port}"}}
self_telemetry: {{enabled: false}}
"""


def wait_http(url: str, timeout: float = 20.0, status: int = 200) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=1.0)
            if last.status_code == status:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status}: {last!r}")


def test_health_status_reload_and_no_secret_anywhere(sink: OTLPSink, target: ExpositionServer,
                                                    tmp_path: Path) -> None:
    health_port = free_port()
    cfg = tmp_path / "promotel.yaml"
    cfg.write_text(config_text(target.url, sink.grpc_port, health_port))
    cfg.chmod(0o600)
    log_path = tmp_path / "out.log"
    proc = start_bridge(cfg, log_path, "--log-format", "json")
    base = f"http://127.0.0.1:{health_port}"
    outputs: list[str] = []
    try:
        assert wait_http(base + "/healthz").text.strip() == "ok"
        wait_http(base + "/readyz")
        status = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status = wait_http(base + "/status").json()
            if status["targets"].get("jobs", {}).get("samples"):
                break
            time.sleep(0.2)
        outputs.append(json.dumps(status))
        assert status["targets"]["jobs"]["samples"] == 1
        assert status["targets"]["jobs"]["error"] is None
        assert "sink" in status["exporters"]
        assert httpx.get(base + "/nope").status_code == 404

        # An invalid new config is refused; the old one keeps running.
        cfg.write_text("sources: [{name: jobs}]\nexporters: []\n")
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "previous config keeps running" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "previous config keeps running" in log_path.read_text()
        hits = target.hits
        time.sleep(2.5)
        assert target.hits > hits                      # still scraping with the old config

        # A valid new config with a second source is picked up.
        second = ExpositionServer("# TYPE other gauge\nother 1\n").start()
        try:
            cfg.write_text(config_text(target.url, sink.grpc_port, health_port,
                                       f"  - name: second\n    url: \"{second.url}\"\n    interval: 1s\n"
                                       "    timeout: 0.8s\n"))
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                status = wait_http(base + "/status").json()
                if "second" in status["targets"]:
                    break
                time.sleep(0.2)
            outputs.append(json.dumps(status))
            assert "second" in status["targets"]
            assert sink.wait_for(lambda s: "other" in s.metric_names(), 20)
        finally:
            second.stop()
        outputs.append(wait_http(base + "/readyz").text)
    finally:
        code = stop_bridge(proc)
    assert code == 0
    log_text = log_path.read_text()
    outputs.append(log_text)
    # Every log line is one JSON object with a message.
    lines = [ln for ln in log_text.splitlines() if ln.strip()]
    assert lines
    for ln in lines:
        assert "message" in json.loads(ln)
    for out in outputs:
        assert SECRET not in out
    # The target did receive the secret (it was used), proving the grep is meaningful.
    assert sink.headers and any(SECRET in " ".join(h.values()) for h in sink.headers)


def test_once_exit_codes(sink: OTLPSink, target: ExpositionServer, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config_text(target.url, sink.grpc_port, free_port()).replace("health:", "#health:"))
    cfg.chmod(0o600)
    ok = subprocess.run([*PROMOTEL, "run", "--once", "-c", str(cfg)], capture_output=True, text=True, timeout=60,
                        check=False)
    assert ok.returncode == 0, ok.stderr
    assert sink.wait_for(lambda s: "jobs_total" in s.metric_names(), 10)
    target.mode = "500"
    bad = subprocess.run([*PROMOTEL, "run", "--once", "-c", str(cfg)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert bad.returncode == 1
    assert "jobs" in bad.stderr and "500" in bad.stderr
    assert SECRET not in bad.stderr + bad.stdout


def test_invalid_config_exits_2_with_every_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("sources:\n  - name: a\n    url: ftp://x\n    intervall: 5s\nexporters: []\n")
    cfg.chmod(0o600)
    proc = subprocess.run([*PROMOTEL, "run", "--once", "-c", str(cfg)], capture_output=True, text=True, timeout=30,
                          check=False)
    assert proc.returncode == 2
    assert "sources[0]" in proc.stderr
    assert "intervall" in proc.stderr


def test_readyz_turns_503_when_an_exporter_is_unreachable_without_spool(target: ExpositionServer,
                                                                       tmp_path: Path) -> None:
    health_port = free_port()
    dead = free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
sources:
  - {{name: jobs, url: "{target.url}", interval: 1s, timeout: 0.8s}}
exporters:
  - name: nowhere
    endpoint: "http://127.0.0.1:{dead}"
    retry: {{initial_interval: 0.05s, max_interval: 0.1s, max_elapsed: 0.5s}}
    spool: {{enabled: false}}
health: {{listen: "127.0.0.1:{health_port}"}}
self_telemetry: {{enabled: false}}
""")
    cfg.chmod(0o600)
    proc = start_bridge(cfg, tmp_path / "out.log")
    try:
        wait_http(f"http://127.0.0.1:{health_port}/healthz")
        resp = wait_http(f"http://127.0.0.1:{health_port}/readyz", status=503)
        assert "nowhere" in resp.text and "unreachable" in resp.text
        # Liveness stays green: the process is fine, only its backend is not.
        assert httpx.get(f"http://127.0.0.1:{health_port}/healthz", timeout=2).status_code == 200
        status = httpx.get(f"http://127.0.0.1:{health_port}/status", timeout=2).json()
        assert status["exporters"]["nowhere"]["last_error"]
    finally:
        assert stop_bridge(proc) == 0


def test_secret_never_reaches_the_spool_or_status(target: ExpositionServer, tmp_path: Path) -> None:
    health_port = free_port()
    dead = free_port()
    state = tmp_path / "state"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
sources:
  - name: jobs
    url: "{target.url}"
    interval: 1s
    timeout: 0.8s
    auth: {{bearer_token: "{SECRET}"}}
exporters:
  - name: down
    endpoint: "http://127.0.0.1:{dead}/v1/metrics"
    protocol: http/protobuf
    headers: {{x-api-key: "{SECRET}"}}
    retry: {{initial_interval: 0.05s, max_interval: 0.1s, max_elapsed: 0.3s}}
state_dir: "{state}"
health: {{listen: "127.0.0.1:{health_port}"}}
self_telemetry: {{enabled: false}}
""")
    cfg.chmod(0o600)
    log_path = tmp_path / "out.log"
    proc = start_bridge(cfg, log_path)
    try:
        deadline = time.monotonic() + 20
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = wait_http(f"http://127.0.0.1:{health_port}/status").json()
            if status["exporters"]["down"].get("spool_requests", 0) >= 2:
                break
            time.sleep(0.2)
        assert status["exporters"]["down"]["spool_requests"] >= 2, status
        status_text = json.dumps(status)
    finally:
        assert stop_bridge(proc) == 0
    spool_files = list(state.glob("exporter-down.db*"))      # the exporter's state database (and its WAL)
    assert spool_files
    assert target.hits >= 2
    for f in state.iterdir():
        assert SECRET.encode() not in f.read_bytes(), f.name
    assert SECRET not in status_text
    assert SECRET not in log_path.read_text()


def test_reload_keeps_series_state_of_unchanged_sources(sink: OTLPSink, target: ExpositionServer,
                                                         tmp_path: Path) -> None:
    """SIGHUP with a source's settings unchanged keeps its series (same start time: no counter reset seen by
    the backend); changing the source's settings starts it afresh (a new start time); what a reload cannot
    apply (health listen address, self-telemetry) is logged."""
    health_port = free_port()
    cfg = tmp_path / "promotel.yaml"
    cfg.write_text(config_text(target.url, sink.grpc_port, health_port))
    cfg.chmod(0o600)
    log_path = tmp_path / "out.log"

    def start_times() -> list[int]:
        return [p.start_time_unix_nano for _, m in sink.metrics() if m.name == "jobs_total"
                for p in m.sum.data_points if p.start_time_unix_nano]

    def reload_and_wait(n_reloads: int) -> int:
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while log_path.read_text().count("Config reloaded.") < n_reloads and time.monotonic() < deadline:
            time.sleep(0.1)
        assert log_path.read_text().count("Config reloaded.") == n_reloads
        seen = len(start_times())
        assert sink.wait_for(lambda s: len(start_times()) >= seen + 2, 20)    # scrapes after the reload
        return seen

    proc = start_bridge(cfg, log_path)
    try:
        assert sink.wait_for(lambda s: len(start_times()) >= 2, 20)
        first = start_times()[0]
        time.sleep(0.01)

        seen = reload_and_wait(1)                                # same settings
        assert set(start_times()[seen:]) == {first}
        assert "1 of 1 sources keep their series state" in log_path.read_text()

        cfg.write_text(config_text(target.url, sink.grpc_port, health_port).replace("interval: 1s", "interval: 1.1s"))
        seen = reload_and_wait(2)                                # the source's interval changed
        after = set(start_times()[seen:])
        assert len(after) == 1 and after != {first}
        assert "0 of 1 sources keep their series state" in log_path.read_text()

        # What a reload does not apply is said, and the health endpoints stay where they were.
        moved = config_text(target.url, sink.grpc_port, free_port()).replace("interval: 1s", "interval: 1.1s")
        cfg.write_text(moved.replace("self_telemetry: {enabled: false}", "self_telemetry: {enabled: true}"))
        reload_and_wait(3)
        text = log_path.read_text()
        assert f"the health endpoints keep listening on 127.0.0.1:{health_port} until promotel restarts" in text
        assert "changes 'self_telemetry'; it applies when promotel restarts" in text
        assert wait_http(f"http://127.0.0.1:{health_port}/healthz").text.strip() == "ok"
    finally:
        assert stop_bridge(proc) == 0


# ─── error paths: a busy health port, a bug in a mapping, a config the exporters reject ─────────

def test_health_server_on_a_busy_port_is_a_config_error() -> None:
    from promotel.service.health import HealthServer

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError) as info:
            HealthServer(f"127.0.0.1:{port}").start()
    assert info.value.problems[0][0] == "health.listen"
    assert str(port) in info.value.problems[0][1]


class _BrokenMapper:
    """Stands in for a mapping plugin with a bug (no shipped plugin is known to crash on any input)."""

    def map(self, families: Any) -> Any:
        raise KeyError("le")


def _runner(url: str, batches: list[TargetBatch]) -> Any:
    from promotel.service import BridgeStats, SourceRunner

    cfg = load_config_text(f"""
sources: [{{name: jobs, url: "{url}", interval: 0.2s, timeout: 0.15s}}]
exporters: [{{name: x, endpoint: "http://127.0.0.1:9"}}]
""", env={})
    stats = BridgeStats()
    runner = SourceRunner(cfg.sources[0], cfg, batches.append, stats)
    runner.pipeline.mapper = _BrokenMapper()
    return runner, stats


def test_a_bug_in_mapping_fails_the_scrape_instead_of_escaping(target: ExpositionServer) -> None:
    batches: list[TargetBatch] = []
    runner, stats = _runner(target.url, batches)

    async def once() -> bool:
        try:
            ok: bool = await runner.scrape_once()
            return ok
        finally:
            await runner.aclose()

    assert asyncio.run(once()) is False
    assert len(batches) == 1
    up = next(m for m in batches[0].metrics if m.name == "up")
    assert up.points[0].value == 0.0
    status = stats.targets["jobs"]
    assert status.error is not None and "KeyError" in status.error
    assert stats.counters[("jobs", "scrape_errors.internal")] == 1


def test_the_scrape_loop_survives_a_bug_in_mapping(target: ExpositionServer) -> None:
    batches: list[TargetBatch] = []
    runner, stats = _runner(target.url, batches)

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(runner.loop(stop))
        deadline = time.monotonic() + 10
        while len(batches) < 3 and time.monotonic() < deadline and not task.done():  # noqa: ASYNC110 - bounded poll of a list
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, timeout=5)
        await runner.aclose()

    asyncio.run(run())
    assert len(batches) >= 3
    assert stats.counters[("jobs", "scrapes")] >= 3


def test_sighup_to_a_config_the_exporters_reject_keeps_the_old_config(target: ExpositionServer,
                                                                      tmp_path: Path) -> None:
    sink = OTLPSink().start()
    try:
        cfg = tmp_path / "promotel.yaml"
        good = f"""
sources:
  - {{name: jobs, url: "{target.url}", interval: 0.5s, timeout: 0.4s}}
exporters:
  - {{name: sink, endpoint: "http://127.0.0.1:{sink.grpc_port}"}}
self_telemetry: {{enabled: false}}
"""
        cfg.write_text(good)
        log_path = tmp_path / "out.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([*PROMOTEL, "run", "-c", str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            deadline = time.monotonic() + 20
            while target.hits == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert target.hits > 0
            # Valid YAML and keys, but the Datadog preset needs an api_key: only building the exporter says so.
            cfg.write_text(good.replace(f'{{name: sink, endpoint: "http://127.0.0.1:{sink.grpc_port}"}}',
                                        "{name: dd, preset: datadog}"))
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            while "previous config keeps running" not in log_path.read_text() and time.monotonic() < deadline \
                    and proc.poll() is None:
                time.sleep(0.1)
            text = log_path.read_text()
            assert proc.poll() is None, text
            assert "previous config keeps running" in text and "needs an API key" in text
            hits = target.hits
            deadline = time.monotonic() + 10
            while target.hits <= hits + 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert target.hits > hits + 1          # still scraping with the old config
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
                raise
        assert code == 0, log_path.read_text()
    finally:
        sink.stop()
