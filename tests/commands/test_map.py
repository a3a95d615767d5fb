"""``promotel map`` and ``promotel mappings`` through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from promotel.cli import main
from promotel.commands.map import MAP_EPOCH_NS, SCRAPE_STEP_NS
from promotel.mappings.baseten import ROWS as BASETEN_ROWS
from support.cli import run_into_closed_pipe
from support.paths import TESTDATA

GOLDEN = TESTDATA / "golden"
S1, S2 = str(GOLDEN / "baseten" / "scrape1.prom"), str(GOLDEN / "baseten" / "scrape2.prom")


def test_map_prints_one_otlp_json_line_per_scrape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["map", "--mapping", "baseten", S1, S2]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    docs = [json.loads(line) for line in lines]
    times = []
    for doc in docs:
        metrics = doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
        util = next(m for m in metrics if m["name"] == "hw.gpu.utilization")
        times.append(util["gauge"]["dataPoints"][0]["timeUnixNano"])
    assert times == [str(MAP_EPOCH_NS), str(MAP_EPOCH_NS + SCRAPE_STEP_NS)]
    assert json.loads(lines[0]) == json.loads((GOLDEN / "baseten" / "scrape1.expected.json").read_text())


def test_map_table_format(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["map", "--mapping", "baseten", "--format", "table", S1, S2]) == 0
    out = capsys.readouterr().out
    assert "== scrape 1: " in out and "== scrape 2: " in out and "2023-11-14T22:13:20Z" in out
    assert "service.name=map" in out             # the Resource's identity is the source's (offline: "map")
    row = next(line for line in out.splitlines() if line.startswith("hw.gpu.utilization"))
    assert row.split()[:4] == ["hw.gpu.utilization", "1", "gauge", "2"] and "0.875" in row
    assert "stale" in out                        # scrape 2: the vanished deployment's series
    assert any(line.startswith("baseten.inference.requests ") and "counter (cumulative)" in line
               for line in out.splitlines())


def test_map_parse_error_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.prom"
    bad.write_text("ok_metric 1\nbroken{ 2\n")
    assert main(["map", "--mapping", "passthrough", S1, str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"{bad}:2: ") and captured.out == ""


def test_map_content_type_overrides_detection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "om.txt"
    f.write_text("# TYPE a gauge\na 1\n")               # fine as Prometheus text, but OpenMetrics needs # EOF
    assert main(["map", "--mapping", "passthrough", str(f)]) == 0
    capsys.readouterr()
    assert main(["map", "--mapping", "passthrough", "--content-type", "application/openmetrics-text", str(f)]) == 1
    assert capsys.readouterr().err.startswith(f"{f}:")


def test_map_unknown_mapping_and_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["map", "--mapping", "nope", S1]) == 2
    assert "unknown mapping 'nope'; installed: baseten, passthrough, sambanova" in capsys.readouterr().err
    assert main(["map", "--mapping", "baseten", "/nonexistent/x.prom"]) == 1
    assert "/nonexistent/x.prom: cannot read the file" in capsys.readouterr().err


def test_map_reads_stdin() -> None:
    proc = subprocess.run([sys.executable, "-m", "promotel.cli", "map", "--mapping", "sambanova", "-"], check=False,
                          input=(GOLDEN / "sambanova" / "summary.prom").read_bytes(), capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    names = [m["name"] for m in doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]]
    assert "sambanova.router.request.duration" in names


def test_mappings_lists_installed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mappings"]) == 0
    out = capsys.readouterr().out
    for line in ("baseten      service.name=the source's name", "passthrough  service.name=the source's name",
                 "sambanova    service.name=the source's name"):
        assert line in out


def test_mappings_name_prints_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mappings", "baseten"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| `")]
    assert len(table) == len(BASETEN_ROWS)
    for row, line in zip(BASETEN_ROWS, table):
        assert line.startswith(f"| `{row.family}` | `{row.name}` |")
    gpu = next(line for line in table if "baseten_gpu_utilization" in line)
    assert "| Gauge | `1` | percent ÷ 100 |" in gpu
    assert "| status_code | http.response.status_code (int when 100–599" in out
    assert main(["mappings", "nope"]) == 2
    assert "installed: baseten, passthrough, sambanova" in capsys.readouterr().err


def test_map_delta_temporality(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["map", "--mapping", "baseten", "--temporality", "delta", S1, S2]) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    names1 = {m["name"] for m in first["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]}
    assert "baseten.inference.requests" not in names1 and "hw.gpu.utilization" in names1
    metrics = {m["name"]: m for m in second["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]}
    assert metrics["baseten.inference.requests"]["sum"]["aggregationTemporality"] == 1
    assert sorted(p["asDouble"] for p in metrics["baseten.container.restarts"]["sum"]["dataPoints"]) == [1.0]


# ─── into a closed pipe (``| head`` exiting early) ───────────────────────────────────────────

def test_map_table_into_a_closed_pipe_exits_without_traceback(tmp_path: Path) -> None:
    prom = tmp_path / "a.prom"
    prom.write_text("# TYPE a gauge\n" + "".join(f'a{{x="{i}"}} {i}\n' for i in range(50)))
    code, err = run_into_closed_pipe(["map", "--mapping", "passthrough", "--format", "table", str(prom)],
                                     tmp_path)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert code == 1


def test_mappings_into_a_closed_pipe_exits_without_traceback(tmp_path: Path) -> None:
    code, err = run_into_closed_pipe(["mappings", "sambanova"], tmp_path)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert code == 1
