"""The bridge's own telemetry goes out through the OpenTelemetry SDK and arrives at a real OTLP receiver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.bridge import start_bridge, stop_bridge
from support.collector import free_port
from support.sink import OTLPSink, attrs
from support.target import ExpositionServer


@pytest.fixture()
def sink() -> Iterator[OTLPSink]:
    s = OTLPSink().start()
    yield s
    s.stop()


def own_metrics(sink: OTLPSink) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for res, m in sink.metrics():
        if res.get("service.name") == "promotel":
            kind = m.WhichOneof("data")
            out.setdefault(m.name, []).extend(getattr(m, kind).data_points)
    return out


def test_self_telemetry_reports_scrapes_errors_and_exports(sink: OTLPSink, tmp_path: Path) -> None:
    good = ExpositionServer("# TYPE jobs gauge\njobs{q=\"a\"} 1\njobs{q=\"b\"} 2\n").start()
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
                "promotel.export.points", "promotel.export.requests", "promotel.export.queue.size"}

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
