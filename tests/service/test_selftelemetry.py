"""The bridge's own telemetry goes out through the OpenTelemetry SDK and arrives at a real OTLP receiver."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.bridge import start_bridge, stop_bridge
from support.collector import Rotel, free_port
from support.sink import OTLPSink, attrs
from support.target import ExpositionServer


def own_metrics(sink: OTLPSink) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for res, m in sink.metrics():
        if res.get("service.name") == "promotel":
            kind = m.WhichOneof("data")
            out.setdefault(m.name, []).extend(getattr(m, kind).data_points)
    return out


def test_self_telemetry_reports_scrapes_errors_and_exports(sink: OTLPSink, tmp_path: Path) -> None:
    # jobs{q="a"} twice: the second is a duplicate sample, left out and counted by reason.
    good = ExpositionServer("# TYPE jobs gauge\njobs{q=\"a\"} 1\njobs{q=\"b\"} 2\njobs{q=\"a\"} 5\n").start()
    dead = free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
sources:
  - {{name: good, url: "{good.url}", interval: 1s, timeout: 0.8s}}
  - {{name: down, url: "http://127.0.0.1:{dead}/metrics", interval: 1s, timeout: 0.8s}}
exporters:
  - {{name: sink, endpoint: "http://127.0.0.1:{sink.grpc_port}"}}
self_telemetry: {{enabled: true, interval: 1s, endpoint: "http://127.0.0.1:{sink.grpc_port}"}}
""")
    cfg.chmod(0o600)
    proc = start_bridge(cfg, tmp_path / "out.log")
    try:
        want = {"promotel.scrapes", "promotel.scrape.errors", "promotel.scrape.samples", "promotel.series",
                "promotel.export.points", "promotel.export.requests", "promotel.export.queue.size",
                "promotel.dropped.points"}

        def ready(s: OTLPSink) -> bool:
            got = own_metrics(s)
            return want <= set(got) and any(p.as_int >= 2 or p.as_double >= 2
                                             for p in got.get("promotel.export.points", []))

        assert sink.wait_for(ready, 30), (sorted(own_metrics(sink)), (tmp_path / "out.log").read_text())
    finally:
        assert stop_bridge(proc) == 0
        good.stop()
    got = own_metrics(sink)
    scrapes = {attrs(p.attributes)["promotel.target"] for p in got["promotel.scrapes"]}
    assert scrapes == {"good", "down"}
    errors = [attrs(p.attributes) for p in got["promotel.scrape.errors"]]
    assert {"promotel.target": "down", "error.type": "connect"} in errors
    assert not any(e["promotel.target"] == "good" for e in errors)
    series = [p for p in got["promotel.series"] if attrs(p.attributes)["promotel.target"] == "good"]
    assert series and max(p.as_int or p.as_double for p in series) == 2
    exporters = {attrs(p.attributes)["promotel.exporter"] for p in got["promotel.export.points"]}
    assert exporters == {"sink"}
    drops = {(a.get("promotel.target"), a["reason"]) for a in (attrs(p.attributes) for p in got["promotel.dropped.points"])}
    assert ("good", "duplicate_sample") in drops


@pytest.fixture()
def rotel(sink: OTLPSink, tmp_path: Path) -> Iterator[Rotel]:
    r = Rotel(sink.grpc_port, tmp_path / "rotel").start()
    yield r
    r.stop()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_self_telemetry_reaches_a_collector_with_the_default_destination(
        sink: OTLPSink, rotel: Rotel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    """The quick start's setup: one exporter to a local collector over plaintext (``http://``), no
    ``self_telemetry.endpoint``. The bridge's own metrics go through a real collector (rotel) to the sink."""
    monkeypatch.delenv("GRPC_VERBOSITY", raising=False)      # promotel's own default applies
    monkeypatch.delenv("GRPC_TRACE", raising=False)
    good = ExpositionServer("# TYPE jobs gauge\njobs{q=\"a\"} 1\n").start()
    endpoint = rotel.grpc_endpoint if protocol == "grpc" else rotel.http_endpoint
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
sources:
  - {{name: good, url: "{good.url}", interval: 1s, timeout: 0.8s}}
exporters:
  - {{name: collector, endpoint: "{endpoint}"}}
self_telemetry: {{interval: 1s}}
state_dir: "{tmp_path / 'state'}"                  # as the quick start has it (no "memory only" warning)
""")
    cfg.chmod(0o600)
    log_path = tmp_path / "out.log"
    proc = start_bridge(cfg, log_path, "--log-format", "json")
    try:
        def arrived(s: OTLPSink) -> bool:
            got = own_metrics(s)
            return ("promotel.scrapes" in got and "promotel.export.points" in got
                    and any((p.as_int or p.as_double) >= 1 for p in got["promotel.export.points"]))

        assert sink.wait_for(arrived, 30), (sorted(own_metrics(sink)), log_path.read_text(), rotel.output())
    finally:
        assert stop_bridge(proc) == 0
        good.stop()
    got = own_metrics(sink)
    assert {attrs(p.attributes)["promotel.target"] for p in got["promotel.scrapes"]} == {"good"}
    assert {attrs(p.attributes)["promotel.exporter"] for p in got["promotel.export.points"]} == {"collector"}
    log = log_path.read_text()
    events = [json.loads(line) for line in log.splitlines() if line.strip()]
    started = [e["message"] for e in events if e["logger"] == "promotel.service.selftelemetry"]
    assert started == [f"Self-telemetry goes to {endpoint} ({protocol}) every 1 s."]
    assert not any(e["level"] in ("warning", "error") for e in events), log


def test_library_logs_join_promotels_json_lines(sink: OTLPSink, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS to a plaintext collector fails for the exporter and for self-telemetry: the SDK's warnings come
    through promotel's handler as JSON and gRPC's C-core lines stay out."""
    monkeypatch.delenv("GRPC_VERBOSITY", raising=False)
    monkeypatch.delenv("GRPC_TRACE", raising=False)
    good = ExpositionServer("# TYPE jobs gauge\njobs 1\n").start()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
sources: [{{name: good, url: "{good.url}", interval: 1s, timeout: 0.8s}}]
exporters: [{{name: tls, endpoint: "https://127.0.0.1:{sink.grpc_port}", timeout: 1s}}]
self_telemetry: {{interval: 1s}}
""")
    cfg.chmod(0o600)
    log_path = tmp_path / "out.log"
    proc = start_bridge(cfg, log_path, "--log-format", "json")

    def sdk_logged() -> bool:
        return any(line.startswith('{"time"') and '"logger": "opentelemetry.' in line
                   for line in log_path.read_text().splitlines())

    try:
        deadline = time.monotonic() + 30
        while not sdk_logged() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop_bridge(proc)
        good.stop()
    log = log_path.read_text()
    events = [json.loads(line) for line in log.splitlines() if line.strip()]    # every line is JSON
    assert any(e["logger"].startswith("opentelemetry.") and e["level"] == "warning" for e in events), log
    assert "ssl_transport_security" not in log
    assert sink.requests == []
