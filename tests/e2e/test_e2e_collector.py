"""End to end through a real collector: promotel (the real CLI) → rotel → OTLP sink.

Nothing here passes unless rotel actually received the data and forwarded it: the assertions read
only what the sink decoded off the wire.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.bridge import PROMOTEL, start_bridge, stop_bridge
from support.collector import Rotel, free_port, rotel_to_sink
from support.sink import OTLPSink, attrs
from support.target import ExpositionServer

pytestmark = pytest.mark.e2e


EXPOSITION_1 = """\
# HELP http_requests_total Requests handled.
# TYPE http_requests_total counter
http_requests_total{code="200",path="/a"} 10
http_requests_total{code="500",path="/a"} 2
# HELP http_requests_created Requests handled (creation time), as prometheus_client writes it in 0.0.4 text.
# TYPE http_requests_created gauge
http_requests_created{code="200",path="/a"} 1700000000.5
# HELP temperature_celsius A gauge.
# TYPE temperature_celsius gauge
temperature_celsius{room="lab"} 21.5
# HELP latency_seconds Latency.
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.1"} 3
latency_seconds_bucket{le="1"} 7
latency_seconds_bucket{le="+Inf"} 9
latency_seconds_sum 4.5
latency_seconds_count 9
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.5"} 0.2
rpc_duration_seconds{quantile="0.9"} 0.8
rpc_duration_seconds_sum 12.0
rpc_duration_seconds_count 30
"""

# Second scrape: the 200 counter reset (10 → 3), the 500 series vanished.
EXPOSITION_2 = """\
# TYPE http_requests_total counter
http_requests_total{code="200",path="/a"} 3
# TYPE temperature_celsius gauge
temperature_celsius{room="lab"} 22
"""


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rotel, OTLPSink]]:
    with rotel_to_sink(tmp_path_factory.mktemp("rotel")) as pair:
        yield pair


@pytest.fixture()
def target() -> Iterator[ExpositionServer]:
    server = ExpositionServer(EXPOSITION_1).start()
    yield server
    server.stop()


def write_config(tmp_path: Path, sources: str, exporters: str, extra: str = "") -> Path:
    path = tmp_path / "promotel.yaml"
    path.write_text(f"sources:\n{sources}\nexporters:\n{exporters}\nself_telemetry: {{enabled: false}}\n{extra}")
    path.chmod(0o600)
    return path


def run_once(config: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PROMOTEL, "run", "--once", "-c", str(config)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False)


def by_service_instance(sink: OTLPSink, instance: str) -> list[tuple[dict[str, Any], Any]]:
    return [(res, m) for res, m in sink.metrics() if res.get("service.instance.id") == instance]


def source_yaml(url: str, name: str = "app", extra: str = "") -> str:
    return f"  - name: {name}\n    url: \"{url}\"\n    interval: 5s\n    timeout: 2s\n{extra}"


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_once_delivers_every_type_through_rotel(collector: tuple[Rotel, OTLPSink], target: ExpositionServer,
                                                tmp_path: Path, protocol: str) -> None:
    rotel, sink = collector
    endpoint = rotel.grpc_endpoint if protocol == "grpc" else rotel.http_endpoint
    cfg = write_config(tmp_path, source_yaml(target.url),
                       f"  - name: rotel\n    endpoint: \"{endpoint}\"\n    protocol: {protocol}\n")
    proc = run_once(cfg)
    assert proc.returncode == 0, proc.stderr
    instance = f"127.0.0.1:{target.port}"
    assert sink.wait_for(lambda s: len({m.name for _, m in by_service_instance(s, instance)}) >= 8, 20), \
        sorted(sink.metric_names())
    got = {m.name: (res, m) for res, m in by_service_instance(sink, instance)}

    res, counter = got["http_requests_total"]
    assert res["service.name"] == "app"
    assert res["server.address"] == "127.0.0.1" and res["server.port"] == target.port
    assert res["url.scheme"] == "http"
    assert counter.sum.is_monotonic and counter.sum.aggregation_temporality == 2   # cumulative
    points = {attrs(p.attributes)["code"]: p for p in counter.sum.data_points}
    assert points["200"].as_double == 10.0 and points["500"].as_double == 2.0
    # _created gives the start time exactly (1700000000.5 s), no float round trip.
    assert points["200"].start_time_unix_nano == 1_700_000_000_500_000_000
    assert points["500"].start_time_unix_nano > 0
    assert counter.description == "Requests handled."
    assert {kv.key: kv.value.string_value for kv in counter.metadata}.get("prometheus.type") == "counter"

    _, gauge = got["temperature_celsius"]
    assert gauge.gauge.data_points[0].as_double == 21.5

    _, hist = got["latency_seconds"]
    hp = hist.histogram.data_points[0]
    assert list(hp.explicit_bounds) == [0.1, 1.0]
    assert list(hp.bucket_counts) == [3, 4, 2]          # per bucket, not cumulative
    assert hp.count == 9 and hp.sum == 4.5

    _, summ = got["rpc_duration_seconds"]
    sp = summ.summary.data_points[0]
    assert [(q.quantile, q.value) for q in sp.quantile_values] == [(0.5, 0.2), (0.9, 0.8)]
    assert sp.count == 30 and sp.sum == 12.0

    _, up = got["up"]
    assert up.gauge.data_points[0].as_double == 1.0
    assert got["scrape_samples_scraped"][1].gauge.data_points[0].as_double == 13.0
    assert "scrape_duration_seconds" in got and "scrape_series_added" in got


def test_target_down_reports_up_zero_and_fails_once(collector: tuple[Rotel, OTLPSink], tmp_path: Path) -> None:
    rotel, sink = collector
    port = free_port()     # nothing listens here
    cfg = write_config(tmp_path, source_yaml(f"http://127.0.0.1:{port}/metrics", name="down"),
                       f"  - name: rotel\n    endpoint: \"{rotel.grpc_endpoint}\"\n")
    proc = run_once(cfg)
    assert proc.returncode != 0
    assert "down" in proc.stderr      # the log names the failed source
    instance = f"127.0.0.1:{port}"
    assert sink.wait_for(lambda s: any(m.name == "up" for _, m in by_service_instance(s, instance)), 20)
    up = next(m for _, m in by_service_instance(sink, instance) if m.name == "up")
    assert up.gauge.data_points[0].as_double == 0.0


@pytest.mark.parametrize("mode", ["garbage", "slow", "500"])
def test_broken_target_fails_cleanly(collector: tuple[Rotel, OTLPSink], target: ExpositionServer,
                                     tmp_path: Path, mode: str) -> None:
    rotel, sink = collector
    target.mode = mode
    target.slow_s = 4.0      # past the 2 s timeout
    cfg = write_config(tmp_path, source_yaml(target.url, name=f"broken-{mode}"),
                       f"  - name: rotel\n    endpoint: \"{rotel.grpc_endpoint}\"\n")
    t0 = time.monotonic()
    proc = run_once(cfg)
    assert proc.returncode == 1, proc.stderr
    assert f"broken-{mode}" in proc.stderr
    if mode == "slow":
        assert time.monotonic() - t0 < 30
    instance = f"127.0.0.1:{target.port}"
    assert sink.wait_for(lambda s: any(m.name == "up" and m.gauge.data_points[0].as_double == 0.0
                                       for _, m in by_service_instance(s, instance)), 20)
    # A failed scrape emits no partial data from the target.
    assert not any(m.name == "http_requests_total" for _, m in by_service_instance(sink, instance))


def test_service_resets_staleness_and_clean_shutdown(collector: tuple[Rotel, OTLPSink], target: ExpositionServer,
                                                     tmp_path: Path) -> None:
    rotel, sink = collector
    cfg = write_config(tmp_path, source_yaml(target.url, name="live").replace("interval: 5s", "interval: 1s")
                       .replace("timeout: 2s", "timeout: 0.8s"),
                       f"  - name: rotel\n    endpoint: \"{rotel.grpc_endpoint}\"\n")
    instance = f"127.0.0.1:{target.port}"
    proc = start_bridge(cfg, tmp_path / "promotel.log")
    try:
        def counter_points(s: OTLPSink) -> list[Any]:
            return [p for _, m in by_service_instance(s, instance) if m.name == "http_requests_total"
                    for p in m.sum.data_points]

        assert sink.wait_for(lambda s: len(counter_points(s)) >= 2, 20), (tmp_path / "promotel.log").read_text()
        target.body = EXPOSITION_2
        assert sink.wait_for(lambda s: any(p.flags & 1 for p in counter_points(s)), 20), \
            (tmp_path / "promotel.log").read_text()
        assert sink.wait_for(lambda s: any(p.as_double == 3.0 for p in counter_points(s)), 20)
    finally:
        code = stop_bridge(proc)
    assert code == 0
    pts = counter_points(sink)
    first_200 = next(p for p in pts if attrs(p.attributes)["code"] == "200" and p.as_double == 10.0)
    after_reset = next(p for p in pts if attrs(p.attributes)["code"] == "200" and p.as_double == 3.0)
    # The reset gave the series a new start time, after the old one.
    assert after_reset.start_time_unix_nano > first_200.start_time_unix_nano
    stale = [p for p in pts if p.flags & 1]
    assert {attrs(p.attributes)["code"] for p in stale} >= {"500"}      # the vanished series got its marker


def test_collector_down_then_back_delivers_queued_data(target: ExpositionServer, tmp_path: Path) -> None:
    sink = OTLPSink().start()
    grpc_port = free_port()
    cfg = write_config(tmp_path, source_yaml(target.url, name="queued").replace("interval: 5s", "interval: 1s")
                       .replace("timeout: 2s", "timeout: 0.8s"),
                       f"  - name: late\n    endpoint: \"http://127.0.0.1:{grpc_port}\"\n"
                       "    retry: {initial_interval: 0.2s, max_interval: 1s, max_elapsed: 60s}\n")
    proc = start_bridge(cfg, tmp_path / "promotel.log")
    rotel = None
    try:
        deadline = time.monotonic() + 20
        while target.hits < 3 and time.monotonic() < deadline:   # scrapes happen while the collector is down
            time.sleep(0.1)
        assert target.hits >= 3
        rotel = Rotel(sink.grpc_port, tmp_path / "rotel")
        rotel.grpc_port = grpc_port
        rotel.start()
        # Every scrape made while the collector was down arrives: at least 3 counter points per series.
        assert sink.wait_for(lambda s: sum(1 for _, m in s.metrics() if m.name == "http_requests_total") >= 3, 30), \
            (tmp_path / "promotel.log").read_text()
    finally:
        assert stop_bridge(proc) == 0
        if rotel is not None:
            rotel.stop()
        sink.stop()


def test_oversize_batch_is_split_and_fully_delivered(collector: tuple[Rotel, OTLPSink], tmp_path: Path) -> None:
    rotel, sink = collector
    lines = ["# TYPE many_series gauge"] + [f'many_series{{i="{i}",pad="{"x" * 40}"}} {i}' for i in range(3000)]
    server = ExpositionServer("\n".join(lines) + "\n").start()
    direct = OTLPSink().start()     # sees promotel's requests as sent (rotel re-batches what it forwards)
    try:
        cfg = write_config(tmp_path, source_yaml(server.url, name="big"),
                           f"  - name: rotel\n    endpoint: \"{rotel.http_endpoint}\"\n    protocol: http/protobuf\n"
                           "    max_request_bytes: 64KiB\n"
                           f"  - name: direct\n    endpoint: \"http://127.0.0.1:{direct.http_port}/v1/metrics\"\n"
                           "    protocol: http/protobuf\n    max_request_bytes: 64KiB\n")
        proc = run_once(cfg)
        assert proc.returncode == 0, proc.stderr
        instance = f"127.0.0.1:{server.port}"

        def values(s: OTLPSink) -> list[float]:
            return [p.as_double for _, m in by_service_instance(s, instance) if m.name == "many_series"
                    for p in m.gauge.data_points]

        assert sink.wait_for(lambda s: len(set(values(s))) == 3000, 30)
        assert set(values(sink)) == {float(i) for i in range(3000)}
        # Split under the limit, each point sent exactly once.
        sent = direct.snapshot()
        assert len(sent) >= 4
        assert all(r.ByteSize() <= 64 * 1024 for r in sent)
        assert sorted(values(direct)) == [float(i) for i in range(3000)]
    finally:
        direct.stop()
        server.stop()


def test_simulators_through_rotel_arrive_mapped(collector: tuple[Rotel, OTLPSink], tmp_path: Path) -> None:
    from promotel.simulate import start_simulator

    rotel, sink = collector
    baseten = start_simulator("baseten", api_key="k-123", seed=7)
    sambanova = start_simulator("sambanova", seed=8)
    try:
        cfg = write_config(
            tmp_path,
            f"  - name: bt\n    mapping: baseten\n    url: \"{baseten.url}\"\n    interval: 60s\n"
            f"    auth: {{api_key: \"k-123\"}}\n"
            f"  - name: sn\n    mapping: sambanova\n    url: \"{sambanova.url}\"\n    interval: 15s\n",
            f"  - name: rotel\n    endpoint: \"{rotel.grpc_endpoint}\"\n")
        proc = run_once(cfg)
        assert proc.returncode == 0, proc.stderr
        want = {"baseten.inference.requests", "baseten.inference.request.duration", "hw.gpu.utilization",
                "sambanova.router.request.duration", "sambanova.router.queue.size"}
        assert sink.wait_for(lambda s: want <= s.metric_names(), 20), sorted(sink.metric_names())
        for res, m in sink.metrics():
            if m.name == "hw.gpu.utilization":
                assert m.unit == "1"
                assert all(0.0 <= p.as_double <= 1.0 for p in m.gauge.data_points)
                assert res["service.name"] == "bt"          # the source's name (the Prometheus job)
            if m.name == "baseten.inference.requests":
                codes = {attrs(p.attributes).get("http.response.status_code") for p in m.sum.data_points}
                assert all(isinstance(c, int) for c in codes)
    finally:
        baseten.close()
        sambanova.close()
