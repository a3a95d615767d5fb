"""Review findings: error paths of the service, health, map/mappings/lint output and SIGHUP reload."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.sink import OTLPSink
from support.target import ExpositionServer

from promotel.config import load_config_text
from promotel.errors import ConfigError
from promotel.model import TargetBatch

PROMOTEL = [sys.executable, "-m", "promotel.cli"]
BODY = "# TYPE jobs_total counter\njobs_total{queue=\"a\"} 5\n"


@pytest.fixture()
def target() -> Iterator[ExpositionServer]:
    t = ExpositionServer(BODY).start()
    yield t
    t.stop()


def _run_into_closed_pipe(args: list[str], tmp_path: Path) -> tuple[int, str]:
    """Run promotel with a stdout pipe whose reader is gone before the first write (like ``| head`` exiting)."""
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([*PROMOTEL, *args], stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        proc.stdout.close()        # promotel needs far longer than this to import and start writing
        code = proc.wait(timeout=60)
    return code, err_path.read_text()


def test_map_table_into_a_closed_pipe_exits_without_traceback(tmp_path: Path) -> None:
    prom = tmp_path / "a.prom"
    prom.write_text("# TYPE a gauge\n" + "".join(f'a{{x="{i}"}} {i}\n' for i in range(50)))
    code, err = _run_into_closed_pipe(["map", "--mapping", "passthrough", "--format", "table", str(prom)],
                                      tmp_path)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert code == 1


def test_mappings_into_a_closed_pipe_exits_without_traceback(tmp_path: Path) -> None:
    code, err = _run_into_closed_pipe(["mappings", "sambanova"], tmp_path)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert code == 1


def test_lint_into_a_closed_pipe_exits_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.prom"
    bad.write_text("# TYPE a gauge\na{ 1\n")
    code, err = _run_into_closed_pipe(["lint", str(bad), str(bad)], tmp_path)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert code == 1


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
        while len(batches) < 3 and time.monotonic() < deadline and not task.done():
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


def test_demo_with_an_invalid_otlp_endpoint_says_so_without_traceback() -> None:
    done = subprocess.run([*PROMOTEL, "demo", "--duration", "1", "--otlp-endpoint", "ftp://collector.invalid"],
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2
    assert "exporters[1].endpoint" in done.stderr and "ftp://collector.invalid" in done.stderr
