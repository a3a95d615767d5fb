"""`promotel demo`: simulators → bridge → built-in sink, and the same data to a real collector."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from support.bridge import PROMOTEL
from support.collector import Rotel
from support.sink import OTLPSink


@pytest.fixture()
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rotel, OTLPSink]]:
    sink = OTLPSink().start()
    rotel = Rotel(sink.grpc_port, tmp_path_factory.mktemp("rotel")).start()
    yield rotel, sink
    rotel.stop()
    sink.stop()


def test_demo_shows_mapped_metrics_and_forwards_to_a_collector(collector: tuple[Rotel, OTLPSink]) -> None:
    rotel, sink = collector
    proc = subprocess.run([sys.executable, "-m", "promotel.cli", "demo", "--duration", "12",
                           "--otlp-endpoint", rotel.grpc_endpoint],
                          capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Simulated Baseten endpoint:" in out and "Built-in OTLP sink:" in out
    final = out[out.rindex("final"):]
    # The live view shows what the built-in sink decoded: mapped names, units, instruments.
    for row in (("baseten.inference.requests", "{request}", "counter"),
                ("hw.gpu.utilization", "1", "gauge"),
                ("sambanova.router.request.duration", "s", "histogram")):
        line = next((ln for ln in final.splitlines() if ln.split()[1:2] == [row[0]]), None)
        assert line is not None, final
        assert row[1] in line.split() and row[2] in line.split()
    # The same data reached the real collector.
    assert sink.wait_for(lambda s: {"baseten.inference.requests", "sambanova.router.queue.size"}
                         <= s.metric_names(), 20), sorted(sink.metric_names())


def test_demo_with_an_invalid_otlp_endpoint_says_so_without_traceback() -> None:
    done = subprocess.run([*PROMOTEL, "demo", "--duration", "1", "--otlp-endpoint", "ftp://collector.invalid"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2
    assert "exporters[1].endpoint" in done.stderr and "ftp://collector.invalid" in done.stderr
