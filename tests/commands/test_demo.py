"""`promotel demo`: simulators → bridge → built-in sink, and the same data to a real collector."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from support.bridge import PROMOTEL
from support.collector import Rotel, rotel_to_sink
from support.sink import OTLPSink


@pytest.fixture()
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rotel, OTLPSink]]:
    with rotel_to_sink(tmp_path_factory.mktemp("rotel")) as pair:
        yield pair


def test_demo_shows_mapped_metrics_and_forwards_to_a_collector(collector: tuple[Rotel, OTLPSink]) -> None:
    rotel, sink = collector
    proc = subprocess.run([sys.executable, "-m", "promotel.cli", "demo", "--duration", "12",
                           "--otlp-endpoint", rotel.grpc_endpoint],
                          capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Simulated Baseten endpoint:" in out and "Built-in OTLP sink:" in out
    final = out[out.rindex("final"):]
    # Not a terminal: no live frames, only the final table, which says what its value column shows.
    assert out.count("OTLP requests") == 1, out
    assert "value: counter/updowncounter = total over the series" in final
    # The view shows what the built-in sink decoded: mapped names, units, instruments, and a value
    # aggregated over the series as the legend says.
    for row in (("baseten.inference.requests", "{request}", "counter", r"total \d"),
                ("hw.gpu.utilization", "1", "gauge", r"\d[\d.e+-]*(\.\.\d[\d.e+-]*)?"),
                ("sambanova.router.request.duration", "s", "histogram", r"n=\d+ mean=\d")):
        line = next((ln for ln in final.splitlines() if ln.split()[1:2] == [row[0]]), None)
        assert line is not None, final
        assert row[1] in line.split() and row[2] in line.split()
        assert re.search(rf"\s{row[3]}", line.split(row[2], 1)[1]), line
    # Columns hold however long a unit is: every row's value starts in the header's value column.
    lines = final.splitlines()
    header = next(ln for ln in lines if ln.split()[:2] == ["service", "metric"])
    rows = [ln for ln in lines[lines.index(header) + 1:] if ln.strip()]
    assert any(ln.split()[2].startswith("{") for ln in rows), rows
    assert {ln.index(ln.split()[1]) for ln in rows} == {header.index("metric")}, rows
    # The same data reached the real collector.
    assert sink.wait_for(lambda s: {"baseten.inference.requests", "sambanova.router.queue.size"}
                         <= s.metric_names(), 20), sorted(sink.metric_names())


def test_demo_with_an_invalid_otlp_endpoint_says_so_without_traceback() -> None:
    done = subprocess.run([*PROMOTEL, "demo", "--duration", "1", "--otlp-endpoint", "ftp://collector.invalid"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2
    assert "exporters[1].endpoint" in done.stderr and "ftp://collector.invalid" in done.stderr


def test_demo_live_view_is_redrawn_in_place_on_a_terminal() -> None:
    assert shutil.which("tmux") is not None, "tmux is missing: `make test` installs it (Debian package tmux)"
    socket = f"promotel-demo-{os.getpid()}"

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout

    # The pane's size, not the test's environment, decides the width (rich reads COLUMNS/LINES first).
    command = " ".join(["env", "-u", "COLUMNS", "-u", "LINES", *PROMOTEL, "demo", "--duration", "30"])
    tmux("new-session", "-d", "-x", "200", "-y", "70", "-s", "demo", command)
    try:
        frames: list[list[str]] = []
        histories: list[int] = []
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and len({f[-1] for f in frames if f}) < 3:
            time.sleep(1.0)
            screen = [ln.rstrip() for ln in tmux("capture-pane", "-p", "-t", "demo").splitlines()]
            titles = [ln for ln in screen if "OTLP requests" in ln]
            if titles and any("sambanova.router.request.duration" in ln for ln in screen):
                frames.append([*screen, titles[0]])
                histories.append(int(tmux("display-message", "-p", "-t", "demo", "#{history_size}")))
        # Several frames (the title's request count moved), each one table: redrawn, not appended.
        assert len({f[-1] for f in frames}) >= 3, frames
        for frame in frames:
            assert sum("OTLP requests" in ln for ln in frame[:-1]) == 1, frame
            assert sum("service" in ln and "metric" in ln and "instrument" in ln for ln in frame[:-1]) == 1, frame
        assert histories == [0] * len(histories), histories
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, timeout=10, check=False)
