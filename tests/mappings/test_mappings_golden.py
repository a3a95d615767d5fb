"""Golden tests: exposition files in tests/golden/ → the OTLP/JSON a backend receives, compared whole.

Each case runs the service's stages (parse → map → convert → encode → OTLP/JSON) through
``promotel.maptool.map_scrapes`` with its fixed scrape times, so the output is reproducible.
Regenerate the expected files only on purpose: ``pytest tests/test_mappings_golden.py --update-golden``,
then review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from promotel.commands.map import MAP_EPOCH_NS, SCRAPE_STEP_NS, map_scrapes
from promotel.export.otlp_json import to_otlp_json
from support.paths import TESTDATA

GOLDEN = TESTDATA / "golden"

# (mapping, successive scrape files, temporality); the expected file sits beside the last scrape.
CASES = [
    ("baseten", ["baseten/scrape1.prom"], "cumulative"),
    ("baseten", ["baseten/scrape1.prom", "baseten/scrape2.prom"], "cumulative"),
    ("baseten", ["baseten/scrape1.prom", "baseten/scrape2.prom"], "delta"),
    ("sambanova", ["sambanova/histogram.prom"], "cumulative"),
    ("sambanova", ["sambanova/summary.prom"], "cumulative"),
]


def expected_path(files: list[str], temporality: str) -> Path:
    last = GOLDEN / files[-1]
    suffix = "" if temporality == "cumulative" else f".{temporality}"
    return last.with_name(f"{last.stem}{suffix}.expected.json")


def produce(mapping: str, files: list[str], temporality: str) -> dict[str, Any]:
    scrapes = [(name, (GOLDEN / name).read_bytes()) for name in files]
    results = map_scrapes(mapping, scrapes, temporality=temporality)
    return to_otlp_json(results[-1].request)


@pytest.mark.parametrize("mapping,files,temporality", CASES, ids=lambda v: v if isinstance(v, str) else "+".join(v))
def test_golden(mapping: str, files: list[str], temporality: str, request: pytest.FixtureRequest) -> None:
    got = produce(mapping, files, temporality)
    path = expected_path(files, temporality)
    if request.config.getoption("--update-golden"):
        path.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    assert path.exists(), f"{path.name} is missing: run pytest {__file__} --update-golden and review it"
    want = json.loads(path.read_text(encoding="utf-8"))
    assert got == want, f"{path.name} differs; if the change is intended, rerun with --update-golden"


def metrics_of(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for rm in doc["resourceMetrics"] for sm in rm["scopeMetrics"] for m in sm["metrics"]}


def attr_map(point: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: next(iter(a["value"].values())) for a in point.get("attributes", [])}


def test_golden_baseten_second_scrape_resets_and_staleness() -> None:
    doc = produce("baseten", ["baseten/scrape1.prom", "baseten/scrape2.prom"], "cumulative")
    metrics = metrics_of(doc)
    t1, t2 = MAP_EPOCH_NS, MAP_EPOCH_NS + SCRAPE_STEP_NS
    cpu = {attr_map(p)["baseten.replica.id"]: p for p in metrics["container.cpu.time"]["sum"]["dataPoints"]}
    restarted = cpu["baseten-model-qv4m7ke-a1b2c"]
    assert restarted["asDouble"] == 12.5 and restarted["startTimeUnixNano"] == str(t2)   # a reset restarts the series
    steady = cpu["baseten-model-qv4m7ke-d3e4f"]
    assert steady["asDouble"] == 910.5 and steady["startTimeUnixNano"] == str(t1)
    assert metrics["container.cpu.time"]["sum"]["isMonotonic"] is True
    assert metrics["container.cpu.time"]["sum"]["aggregationTemporality"] == 2          # CUMULATIVE
    # The whisper deployment went away: its series get one staleness marker (flags = 1).
    gone = [p for p in metrics["baseten.websocket.connection.active"]["sum"]["dataPoints"]]
    assert len(gone) == 1 and gone[0].get("flags") == 1
    assert attr_map(gone[0])["baseten.deployment.id"] == "d8r2n5t"


def test_golden_json_types_survive_encoding() -> None:
    doc = produce("baseten", ["baseten/scrape1.prom"], "cumulative")
    # The job of an offline run is its source's name, "map" (no URL: no service.instance.id).
    assert doc["resourceMetrics"][0]["resource"]["attributes"] == [
        {"key": "service.name", "value": {"stringValue": "map"}}]
    req = metrics_of(doc)["baseten.inference.requests"]["sum"]["dataPoints"]
    five_hundreds = [p for p in req if p["attributes"] and attr_map(p).get("http.response.status_code") == "503"]
    assert five_hundreds                              # OTLP/JSON writes int64 as a string …
    kv = {a["key"]: a["value"] for a in five_hundreds[0]["attributes"]}
    assert kv["http.response.status_code"] == {"intValue": "503"}          # … but typed as an int
    assert kv["baseten.request.async"] == {"boolValue": False}
    assert kv["error.type"] == {"stringValue": "503"}
    gpu = metrics_of(doc)["hw.gpu.memory.usage"]
    assert gpu["unit"] == "By" and not gpu["sum"].get("isMonotonic", False)      # an UpDownCounter
    mem = {attr_map(p)["hw.id"]: p["asDouble"] for p in gpu["sum"]["dataPoints"]}
    assert mem == {"0": 40960 * 1048576.0, "1": 512 * 1048576.0}
    dur = metrics_of(produce("sambanova", ["sambanova/summary.prom"], "cumulative"))[
        "sambanova.router.request.duration"]
    q = dur["summary"]["dataPoints"][0]["quantileValues"]
    assert [v["quantile"] for v in q] == [0.5, 0.9, 0.99]
    assert [v["value"] for v in q] == pytest.approx([0.85, 2.1, 5.4005])


def test_golden_baseten_delta_after_a_reset() -> None:
    first = produce("baseten", ["baseten/scrape1.prom"], "delta")
    assert "container.cpu.time" not in metrics_of(first)          # the first sighting is only the baseline
    doc = produce("baseten", ["baseten/scrape1.prom", "baseten/scrape2.prom"], "delta")
    cpu = metrics_of(doc)["container.cpu.time"]["sum"]
    assert cpu["aggregationTemporality"] == 1                      # DELTA
    by_replica = {attr_map(p)["baseten.replica.id"]: p["asDouble"] for p in cpu["dataPoints"]}
    assert by_replica == {"baseten-model-qv4m7ke-a1b2c": 12.5,    # reset: the new cumulative value is the delta
                          "baseten-model-qv4m7ke-d3e4f": 30.0}
    dur = metrics_of(doc)["baseten.inference.request.duration"]["histogram"]
    assert dur["aggregationTemporality"] == 1
    ok = next(p for p in dur["dataPoints"] if attr_map(p)["http.response.status_code"] == "200")
    assert ok["count"] == "1200" and ok["bucketCounts"] == ["100", "600", "450", "50"]
    gauges = metrics_of(doc)["hw.gpu.utilization"]["gauge"]["dataPoints"]
    assert sorted(p["asDouble"] for p in gauges) == pytest.approx([0.03, 0.42])
