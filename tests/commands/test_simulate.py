"""The simulators over real HTTP: auth, Baseten's rate limit, formats, every family, evolving values."""

from __future__ import annotations

import gzip
import math
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest

from promotel.commands.map import MapSource
from promotel.exposition import parse_exposition
from promotel.mappings import load_mapping
from promotel.mappings.baseten import ROWS as BASETEN_ROWS
from promotel.mappings.sambanova import ROWS as SAMBANOVA_ROWS
from promotel.model import HistogramPoint, Kind, MetricFamily, SummaryPoint
from promotel.simulate import RunningSimulator, start_simulator
from promotel.simulate.server import SimServer

KEY = "sim-key-123"
OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT = "text/plain; version=0.0.4; charset=utf-8"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def baseten(clock: FakeClock) -> Iterator[RunningSimulator]:
    sim = start_simulator("baseten", api_key=KEY, seed=3, clock=clock)
    try:
        yield sim
    finally:
        sim.close()


def get(sim: RunningSimulator, headers: dict[str, str] | None = None, path: str = "/metrics") -> httpx.Response:
    url = sim.url.replace("/metrics", path)
    return httpx.get(url, headers=headers or {}, timeout=5.0)


def auth(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Api-Key {KEY}", **(extra or {})}


def families(resp: httpx.Response) -> dict[str, MetricFamily]:
    fams = parse_exposition(resp.content, resp.headers["content-type"])
    return {f.name.removesuffix("_total"): f for f in fams}


def documented(rows: Any) -> set[str]:
    return {r.family.removesuffix("_total") for r in rows if "*" not in r.family}


def test_auth_required_with_api_key_or_bearer(baseten: RunningSimulator) -> None:
    assert baseten.url.startswith("http://127.0.0.1:") and baseten.url.endswith("/metrics")
    assert get(baseten).status_code == 401
    assert get(baseten, {"Authorization": "Api-Key wrong"}).status_code == 401
    assert get(baseten, {"Authorization": KEY}).status_code == 401
    assert get(baseten, auth()).status_code == 200
    assert get(baseten, {"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert get(baseten, auth(), path="/other").status_code == 404


def test_rate_limit_six_per_minute_then_429_with_retry_after(baseten: RunningSimulator, clock: FakeClock) -> None:
    for i in range(6):
        clock.now = 1000.0 + i
        assert get(baseten, auth()).status_code == 200
    clock.now = 1010.0
    assert get(baseten).status_code == 401            # unauthenticated requests do not use up the budget
    limited = get(baseten, auth())
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "50"     # the first slot frees at 1000 + 60
    clock.now = 1059.5
    assert get(baseten, auth()).headers["retry-after"] == "1"
    clock.now = 1060.0
    assert get(baseten, auth()).status_code == 200
    assert get(baseten, auth()).status_code == 429
    assert baseten.requests == 7


def test_formats_by_accept_and_gzip(clock: FakeClock) -> None:
    with start_simulator("baseten", seed=1, clock=clock, rate_limit=None) as sim:
        om = get(sim, {"Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
                       "Accept-Encoding": "identity"})
        assert om.headers["content-type"] == OM and "content-encoding" not in om.headers
        assert om.text.endswith("# EOF\n") and "# TYPE baseten_inference_requests counter\n" in om.text
        text = get(sim, {"Accept": "text/plain", "Accept-Encoding": "identity"})
        assert text.headers["content-type"] == TEXT
        assert "# TYPE baseten_inference_requests_total counter\n" in text.text and "# EOF" not in text.text
        raw = httpx.get(sim.url, headers={"Accept-Encoding": "gzip"}, timeout=5.0)
        assert raw.headers["content-encoding"] == "gzip" and raw.content == text.content   # httpx decoded it
        with httpx.stream("GET", sim.url, headers={"Accept-Encoding": "gzip"}, timeout=5.0) as resp:
            body = b"".join(resp.iter_raw())
        assert gzip.decompress(body) == text.content
        assert set(families(om)) == set(families(text))


def test_every_baseten_family_with_documented_labels(baseten: RunningSimulator) -> None:
    fams = families(get(baseten, auth()))
    assert documented(BASETEN_ROWS) <= set(fams)
    labels = {k for s in fams["baseten_inference_requests"].samples for k in s.labels}
    assert labels == {"model_id", "model_name", "deployment_id", "status_code", "is_async", "environment",
                      "rollout_phase"}
    gpu_labels = {k for s in fams["baseten_gpu_memory_used"].samples for k in s.labels}
    assert {"replica", "gpu"} <= gpu_labels
    codes = {s.labels["status_code"] for s in fams["baseten_inference_requests"].samples}
    assert {"200", "400", "500"} <= codes and any(c.startswith("5") for c in codes)
    util = [s.value for s in fams["baseten_gpu_utilization"].samples]
    assert all(0.0 <= v <= 100.0 for v in util) and max(util) > 1.0        # percent, not a ratio
    assert max(s.value for s in fams["baseten_gpu_memory_used"].samples) > 1000.0   # MiB, not bytes
    envs = {s.labels["environment"] for s in fams["baseten_replicas_active"].samples}
    assert "" in envs and "production" in envs


def test_same_values_until_the_refresh(clock: FakeClock) -> None:
    with start_simulator("baseten", seed=5, clock=clock, rate_limit=None) as sim:
        first = get(sim).content
        clock.now += 29.0
        assert get(sim).content == first
        clock.now += 1.5
        assert get(sim).content != first


def counters(fams: dict[str, MetricFamily]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for fam in fams.values():
        if fam.type == "counter":
            for s in fam.samples:
                out[(s.name, frozenset(s.labels.pairs()))] = s.value
        elif fam.type == "histogram":
            for s in fam.samples:
                if s.name.endswith(("_count", "_sum", "_bucket")):
                    out[(s.name, frozenset(s.labels.pairs()))] = s.value
    return out


def check_histograms(fams: dict[str, MetricFamily]) -> int:
    checked = 0
    for fam in fams.values():
        if fam.type != "histogram":
            continue
        series: dict[frozenset[tuple[str, str]], dict[str, Any]] = {}
        for s in fam.samples:
            key = frozenset((k, v) for k, v in s.labels.pairs() if k != "le")
            entry = series.setdefault(key, {"buckets": []})
            if s.name.endswith("_bucket"):
                entry["buckets"].append((float(s.labels["le"]), s.value))
            else:
                entry[s.name.rsplit("_", 1)[1]] = s.value
        for entry in series.values():
            cum = [v for _, v in sorted(entry["buckets"])]
            assert cum == sorted(cum) and math.isinf(max(entry["buckets"])[0])
            assert cum[-1] == entry["count"] and entry["sum"] >= 0
            checked += 1
    return checked


def test_counters_grow_except_at_a_replica_restart_and_histograms_agree(clock: FakeClock) -> None:
    with start_simulator("baseten", seed=11, clock=clock, rate_limit=None) as sim:
        prev = families(get(sim))
        resets = 0
        deployments = [{s.labels["deployment_id"] for s in prev["baseten_replicas_active"].samples}]
        for _ in range(6):
            sim.advance()
            cur = families(get(sim))
            assert check_histograms(cur) > 10
            before, after = counters(prev), counters(cur)
            for key, value in after.items():
                if key in before and value < before[key]:
                    assert key[0] == "baseten_container_cpu_usage_seconds_total", key
                    resets += 1
            deployments.append({s.labels["deployment_id"] for s in cur["baseten_replicas_active"].samples})
            prev = cur
        assert resets >= 1                                  # replicas restarted (every 3rd refresh)
        assert len(set.union(*deployments)) > len(deployments[0])       # a deployment appeared
        assert any(d - deployments[-1] for d in deployments)            # and one went away


def test_simulated_baseten_maps_cleanly(baseten: RunningSimulator) -> None:
    fams = parse_exposition(get(baseten, auth()).content, None)
    result = load_mapping("baseten").bind(MapSource(name="bt")).map(fams)
    assert result.dropped == 0
    names = {m.name for m in result.metrics}
    assert {r.name for r in BASETEN_ROWS if "*" not in r.name} <= names
    assert not {n for n in names if n.startswith("baseten_")}          # nothing left unmapped
    for m in result.metrics:
        for p in m.points:
            if isinstance(p, HistogramPoint):
                assert sum(p.counts) == p.count


@pytest.mark.parametrize("duration_as", ["histogram", "summary"])
def test_sambanova_families_and_duration_shape(duration_as: str) -> None:
    with start_simulator("sambanova", seed=2, duration_as=duration_as, refresh_s=30.0) as sim:
        for _ in range(8):                  # no rate limit, no auth
            resp = get(sim, {"Accept": "application/openmetrics-text"})
            assert resp.status_code == 200
        fams = families(resp)
        assert documented(SAMBANOVA_ROWS) <= set(fams)
        assert fams["response_duration_ms"].type == duration_as
        assert {k for s in fams["submitted"].samples for k in s.labels} == {"model", "qos", "user", "status"}
        assert {k for s in fams["response_code"].samples for k in s.labels} == {"code", "route", "user"}
        assert {k for s in fams["connection_state_ratio"].samples for k in s.labels} == {"state", "model", "pool"}
        ratio = {}
        for s in fams["connection_state_ratio"].samples:
            key = (s.labels["model"], s.labels["pool"])
            ratio[key] = ratio.get(key, 0.0) + s.value
        assert all(abs(v - 1.0) < 0.01 for v in ratio.values())
        if duration_as == "histogram":
            assert check_histograms(fams) >= 4
        result = load_mapping("sambanova").bind(MapSource(name="sn")).map(
            parse_exposition(resp.content, resp.headers["content-type"]))
        dur = next(m for m in result.metrics if m.name == "sambanova.router.request.duration")
        assert dur.kind is (Kind.HISTOGRAM if duration_as == "histogram" else Kind.SUMMARY)
        p = dur.points[0]
        if isinstance(p, SummaryPoint):
            assert [q for q, _ in p.quantiles] == [0.5, 0.9, 0.99]
            assert 0.05 < p.quantiles[0][1] < 30.0           # seconds after the mapping, from ms
        else:
            assert p.bounds[0] == pytest.approx(0.05)


def test_sambanova_users_join_over_time() -> None:
    with start_simulator("sambanova", seed=4) as sim:
        before = {s.labels["user"] for s in families(get(sim))["customer_queue_length"].samples}
        sim.advance(4)
        after = {s.labels["user"] for s in families(get(sim))["customer_queue_length"].samples}
        assert before < after


def test_cli_prints_the_url_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "promotel.cli", "simulate", "sambanova", "--seed", "1",
                             "--duration-as", "summary"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20.0)
        assert ready, "the simulator printed nothing within 20 s"
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("serving sambanova metrics on http://127.0.0.1:") and line.endswith("/metrics")
        url = line.rsplit(" ", 1)[1]
        resp = httpx.get(url, timeout=5.0)
        assert resp.status_code == 200 and "response_duration_ms_sum" in resp.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def test_a_client_reset_is_one_debug_line_not_a_traceback() -> None:
    """Clients that reset the connection (mid-request, or mid-response with the next request pending on
    a keep-alive connection) are routine: the simulator logs one debug line each and keeps serving."""
    proc = subprocess.Popen([sys.executable, "-m", "promotel.cli", "--log-level", "debug", "simulate", "sambanova",
                             "--seed", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20.0)
        assert ready, "the simulator printed nothing within 20 s"
        assert proc.stdout is not None and proc.stderr is not None
        url = proc.stdout.readline().strip().rsplit(" ", 1)[1]
        port = int(url.split(":")[2].split("/")[0])

        def reset(send: bytes, read: int) -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=5.0) as conn:
                conn.sendall(send)
                if read:
                    assert conn.recv(read)          # the response has started
                # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

        reset(b"GET /metr", 0)                                                   # mid-request
        reset(b"GET /metrics HTTP/1.1\r\nHost: sim\r\n\r\n", 64)                 # mid-response
        assert httpx.get(url, timeout=5.0).status_code == 200                    # still serving
        # Read stderr's descriptor directly (a buffered readline would hide lines from select).
        err = b""
        deadline = time.monotonic() + 10.0
        while err.count(b"went away") < 2 and time.monotonic() < deadline:
            if select.select([proc.stderr], [], [], 0.2)[0]:
                err += os.read(proc.stderr.fileno(), 65536)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        stderr = (err + proc.stderr.buffer.read()).decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    assert "Traceback" not in stderr and "ConnectionResetError" not in stderr, stderr
    went_away = [line for line in stderr.splitlines() if "went away" in line]
    assert len(went_away) == 2, stderr
    assert all(" debug " in line and "Connection reset by peer" in line for line in went_away), went_away


def test_a_simulator_bug_still_prints_its_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    server = SimServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    try:
        for error in (ConnectionResetError(104, "Connection reset by peer"), ValueError("a bug in the simulator")):
            try:
                raise error
            except Exception:
                server.handle_error(None, ("127.0.0.1", 1))
    finally:
        server.server_close()
    err = capsys.readouterr().err
    assert err.count("Traceback") == 1 and "ValueError: a bug in the simulator" in err
    assert "ConnectionResetError" not in err
