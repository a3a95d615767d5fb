"""The running bridge (``promotel run``) under the reliability rules: readiness that tells when data is being lost,
a changed URL under a delta exporter, a damaged state file at start, and the warning without a state_dir."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from support.bridge import start_bridge, stop_bridge
from support.collector import free_port
from support.sink import OTLPSink
from support.target import ExpositionServer


def wait(cond: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    if not cond():
        tail = log.read_text(errors="replace")[-4000:] if log is not None else ""
        raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tail}")


def get(port: int, path: str) -> httpx.Response | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2.0)
    except httpx.HTTPError:
        return None


def readyz(port: int) -> tuple[int, str]:
    r = get(port, "/readyz")
    return (0, "") if r is None else (r.status_code, r.text)


def status(port: int) -> dict[str, Any]:
    r = get(port, "/status")
    return {} if r is None or r.status_code != 200 else r.json()  # type: ignore[no-any-return]


def counting_target(start: float, n: int = 400) -> ExpositionServer:
    """A target whose counter grows by 1 per scrape from ``start``."""
    bodies = [f"# TYPE jobs_total counter\njobs_total {start + i:g}\n" for i in range(n)]
    return ExpositionServer(bodies=bodies).start()


def test_readyz_is_503_while_data_is_dropped_or_every_send_fails_too_long_and_ready_again_after(
        sink: OTLPSink, tmp_path: Path) -> None:
    target = counting_target(1)
    health = free_port()
    cfg = tmp_path / "promotel.yaml"
    retry = "retry: {initial_interval: 0.05s, max_interval: 0.2s, max_elapsed: 0.3s}"
    cfg.write_text(f"""
sources:
  - {{name: jobs, url: "{target.url}", interval: 0.5s, timeout: 0.4s}}
exporters:
  - {{name: kept, endpoint: "http://127.0.0.1:{sink.grpc_port}", {retry}}}
  - {{name: lossy, endpoint: "http://127.0.0.1:{sink.grpc_port}", {retry}, spool: {{enabled: false}}}}
state_dir: "{tmp_path / 'state'}"
health: {{listen: "127.0.0.1:{health}", unready_after: 3s}}
self_telemetry: {{enabled: false}}
""")
    cfg.chmod(0o600)
    log = tmp_path / "out.log"
    proc = start_bridge(cfg, log)
    port = sink.grpc_port
    try:
        wait(lambda: readyz(health)[0] == 200 and len(sink.snapshot()) >= 4, 20, "ready and delivering", log)
        assert "spool.enabled: false" in log.read_text() and "lossy" in log.read_text()
        sink.stop(grace=0.5)
        down_at = time.monotonic()
        # The exporter without a persisted queue drops after its retries: not ready at once, saying why.
        wait(lambda: "lossy" in readyz(health)[1], 15, "503 naming the dropping exporter", log)
        code, text = readyz(health)
        assert code == 503 and "dropping data" in text and "retries_exhausted" in text, text
        st = status(health)["exporters"]
        assert st["lossy"]["ready"] is False and "dropping data" in st["lossy"]["not_ready_reason"]
        # The one that keeps everything on disk is ready until every attempt failed for unready_after (3 s).
        assert st["kept"]["ready"] is True and st["kept"]["persisted_requests"] >= 1, st["kept"]
        assert st["kept"]["oldest_unacknowledged_age_s"] >= 0
        wait(lambda: "exporter kept: unreachable: every attempt failed" in readyz(health)[1], 20,
             "503 naming the exporter failing too long", log)
        assert time.monotonic() - down_at >= 3.0
        sink.start(port=port)
        # Both recover: nothing dropped for 3 s and a send succeeded.
        wait(lambda: readyz(health)[0] == 200, 30, "ready again", log)
        st = status(health)["exporters"]
        assert st["kept"]["persisted_requests"] == 0 and st["kept"]["dropped"] == {}
        assert st["lossy"]["dropped"].get("retries_exhausted", 0) > 0
    finally:
        assert stop_bridge(proc) == 0
        target.stop()


def delta_points(sink: OTLPSink) -> list[tuple[str, float, int, int]]:
    """(service.instance.id, value, start, time) of every delta ``jobs_total`` point the sink got."""
    out = []
    for res, m in sink.metrics():
        if m.name == "jobs_total" and m.sum.aggregation_temporality == 1:
            out += [(res["service.instance.id"], p.as_double, p.start_time_unix_nano, p.time_unix_nano)
                    for p in m.sum.data_points if not p.flags & 1]
    return sorted(out, key=lambda x: x[3])


def test_sighup_moving_a_delta_source_to_another_target_gives_a_baseline_not_a_difference_of_two_hosts(
        sink: OTLPSink, tmp_path: Path) -> None:
    first, second = counting_target(6), counting_target(1000)
    cfg = tmp_path / "promotel.yaml"

    def write(url: str) -> None:
        cfg.write_text(f"""
sources:
  - {{name: jobs, url: "{url}", interval: 0.4s, timeout: 0.3s}}
exporters:
  - {{name: d, endpoint: "http://127.0.0.1:{sink.grpc_port}", temporality: delta}}
state_dir: "{tmp_path / 'state'}"
self_telemetry: {{enabled: false}}
""")
        cfg.chmod(0o600)

    write(first.url)
    log = tmp_path / "out.log"
    proc = start_bridge(cfg, log)
    a, b = f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"
    try:
        wait(lambda: sum(1 for p in delta_points(sink) if p[0] == a) >= 3, 20, "deltas of the first target", log)
        write(second.url)
        proc.send_signal(signal.SIGHUP)
        wait(lambda: sum(1 for p in delta_points(sink) if p[0] == b) >= 3, 20, "deltas of the second target", log)
    finally:
        assert stop_bridge(proc) == 0
        first.stop()
        second.stop()
    points = delta_points(sink)
    assert {p[0] for p in points} == {a, b}
    # One per scrape on each host; the first scrape of the second host was a baseline, not 1000 − 6 − n.
    assert [p[1] for p in points] == [1.0] * len(points), points
    on_b = [p for p in points if p[0] == b]
    assert len(on_b) == len(second.served) - 1                  # every scrape of B but its first (the baseline)
    assert len(points) - len(on_b) == len(first.served) - 1
    assert all(p[2] > max(q[3] for q in points if q[0] == a) for p in on_b)   # B's deltas never span A's times


def test_a_damaged_state_file_at_start_is_moved_aside_and_the_bridge_runs(sink: OTLPSink, tmp_path: Path) -> None:
    target = counting_target(1)
    state = tmp_path / "state"
    state.mkdir()
    (state / "exporter-broken.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 8000)   # a damaged header
    (state / "exporter-empty.db").write_bytes(b"")                                       # truncated to 0 bytes
    health = free_port()
    cfg = tmp_path / "promotel.yaml"
    cfg.write_text(f"""
sources:
  - {{name: jobs, url: "{target.url}", interval: 0.5s, timeout: 0.4s}}
exporters:
  - {{name: broken, endpoint: "http://127.0.0.1:{sink.grpc_port}"}}
  - {{name: empty, endpoint: "http://127.0.0.1:{sink.grpc_port}"}}
  - {{name: fine, endpoint: "http://127.0.0.1:{sink.grpc_port}"}}
state_dir: "{state}"
health: {{listen: "127.0.0.1:{health}"}}
self_telemetry: {{enabled: false}}
""")
    cfg.chmod(0o600)
    log = tmp_path / "out.log"
    proc = start_bridge(cfg, log)
    try:
        wait(lambda: len(sink.snapshot()) >= 9 and readyz(health)[0] == 200, 20, "every exporter delivering", log)
        st = status(health)["exporters"]
        for name in ("broken", "empty", "fine"):
            assert st[name]["storage"]["state"] == "ok" and st[name]["sent_requests"] >= 3, (name, st[name])
    finally:
        assert stop_bridge(proc) == 0
        target.stop()
    text = log.read_text()
    names = sorted(p.name for p in state.iterdir())
    for name in ("broken", "empty"):
        moved = [n for n in names if n.startswith(f"exporter-{name}.db.corrupt-")]
        assert len(moved) == 1, names
        assert f"The state database of exporter {name}" in text and moved[0] in text
    assert "it is empty (0 bytes)" in text and "SQLite cannot read it" in text
    assert "Lost with it" in text
    assert not any(n.startswith("exporter-fine.db.corrupt") for n in names)


def test_without_a_state_dir_the_bridge_says_at_start_that_a_restart_loses_data(sink: OTLPSink, tmp_path: Path) -> None:
    target = counting_target(1)
    cfg = tmp_path / "promotel.yaml"
    cfg.write_text(f"""
sources:
  - {{name: jobs, url: "{target.url}", interval: 0.5s, timeout: 0.4s}}
exporters:
  - {{name: one, endpoint: "http://127.0.0.1:{sink.grpc_port}"}}
  - {{name: two, endpoint: "http://127.0.0.1:{sink.grpc_port}", temporality: delta}}
self_telemetry: {{enabled: false}}
""")
    cfg.chmod(0o600)
    log = tmp_path / "out.log"
    proc = start_bridge(cfg, log)
    try:
        wait(lambda: "promotel is running" in log.read_text(), 20, "the start", log)
    finally:
        assert stop_bridge(proc) == 0
        target.stop()
    warnings = [ln for ln in log.read_text().splitlines() if "No state_dir" in ln]
    assert len(warnings) == 1, warnings
    assert "exporters one, two keep their queue and delta state in memory only" in warnings[0]
    assert "a restart" in warnings[0]
