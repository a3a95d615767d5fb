"""``promotel map`` prints what ``promotel run`` sends: the same scrapes, the same points.

One bridge (the real CLI, ``promotel run -c CONFIG``) scrapes four loopback targets, each moving through a
fixed sequence of exposition bodies (one body per GET, the last one repeated), and exports every round
to two real collectors (rotel), each forwarding to its own OTLP sink:

    exporter ``cumulative`` (gRPC)                                              → rotel → sink
    exporter ``delta`` (HTTP, ``temporality: delta``, ``summaries: convert``)   → rotel → sink

Then ``promotel map -c CONFIG --source NAME --exporter NAME FILES…`` (the real CLI too) maps the same bodies,
and every scrape is compared, field by field: resource, scope, metric names, descriptions, units, metadata,
types, temporality, monotonicity, and every data point (attributes, values, histogram bounds and bucket
counts, summary quantiles, flags such as NoRecordedValue, exemplars).

Excluded on purpose — each is a difference by design, not a tolerance:

* absolute scrape times: ``map`` scrapes at ``MAP_EPOCH_NS + i × 60 s``, ``run`` on the wall clock. Every
  time is compared by what it is instead: the time of scrape *i* of that target (``T0``, ``T1``, …), 0
  (unset), or, when it is neither (``_created``, exemplar timestamps), the same absolute value. So a delta
  point must start at the previous scrape's time, a cumulative point keep its first scrape's time until a
  reset and restart at the reset scrape's time — in both outputs alike;
* the value of ``scrape_duration_seconds``: ``map`` reads a file and reports 0, ``run`` measures the
  request (checked to be ≥ 0 and below the source's timeout instead).

The cases are the golden Baseten scrapes (``baseten`` mapping), the golden SambaNova histogram (text
format) and summary (OpenMetrics) expositions each followed by a grown copy (``sambanova`` mapping), and
an OpenMetrics passthrough target with ``_created``, an exemplar, a counter reset, a histogram reset, and
series that vanish (staleness markers) and come back (new start times) across three bodies.

Baseten's budget makes 10 s the shortest interval the config accepts for that mapping (``run`` refuses
less), so the bridge runs ~15 s: one random start offset (≤ 5 s) and one interval for the second scrape.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from google.protobuf.json_format import MessageToDict, ParseDict
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from support.bridge import PROMOTEL, start_bridge, stop_bridge
from support.collector import Rotel
from support.paths import TESTDATA
from support.sink import OTLPSink
from support.target import ExpositionServer

pytestmark = pytest.mark.e2e

GOLDEN = TESTDATA / "golden"
TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
RUN_WAIT_S = 45.0        # bound on waiting for the sinks (the Baseten source alone needs ≤ 15 s)
MAP_WAIT_S = 60.0


def edited(text: str, *changes: tuple[str, str]) -> str:
    """``text`` with each ``old`` replaced by ``new``; each ``old`` must occur exactly once."""
    for old, new in changes:
        assert text.count(old) == 1, f"expected exactly one {old!r} in the body to edit"
        text = text.replace(old, new)
    return text


def golden(name: str) -> str:
    return (GOLDEN / name).read_text(encoding="utf-8")


SN_USER = 'model="Meta-Llama-3.3-70B-Instruct",qos="premium",user="user-0001"'
SAMBANOVA_HISTOGRAM_2 = edited(
    golden("sambanova/histogram.prom"),
    (f'queue_length{{{SN_USER}}} 3', f'queue_length{{{SN_USER}}} 5'),
    (f'submitted_total{{{SN_USER},status="accepted"}} 950', f'submitted_total{{{SN_USER},status="accepted"}} 990'),
    (f'completed_total{{{SN_USER},status="success"}} 930', f'completed_total{{{SN_USER},status="success"}} 968'),
    ('response_code_total{code="200",route="/v1/chat/completions",user="user-0001"} 930',
     'response_code_total{code="200",route="/v1/chat/completions",user="user-0001"} 968'),
    ('response_code_total{code="500",route="/v1/chat/completions",user="user-0001"} 16\n', ''),   # vanishes
    (f'response_duration_ms_bucket{{{SN_USER},le="100"}} 50',
     f'response_duration_ms_bucket{{{SN_USER},le="100"}} 52'),
    (f'response_duration_ms_bucket{{{SN_USER},le="500"}} 400',
     f'response_duration_ms_bucket{{{SN_USER},le="500"}} 420'),
    (f'response_duration_ms_bucket{{{SN_USER},le="2500"}} 900',
     f'response_duration_ms_bucket{{{SN_USER},le="2500"}} 940'),
    (f'response_duration_ms_bucket{{{SN_USER},le="+Inf"}} 946',
     f'response_duration_ms_bucket{{{SN_USER},le="+Inf"}} 990'),
    (f'response_duration_ms_sum{{{SN_USER}}} 851400', f'response_duration_ms_sum{{{SN_USER}}} 890000'),
    (f'response_duration_ms_count{{{SN_USER}}} 946', f'response_duration_ms_count{{{SN_USER}}} 990'),
    ('router_uptime_seconds 3600', 'router_uptime_seconds 3615'),
)

SN_SUMMARY = 'model_name="Qwen3-32B",qos_class="standard",customer="acme"'
SAMBANOVA_SUMMARY_2 = edited(
    golden("sambanova/summary.prom"),
    ('completion_status="accepted"} 120', 'completion_status="accepted"} 130'),
    ('completion_status="success"} 118', 'completion_status="success"} 127'),
    ('response_code_total{http_code="200",path="/v1/completions",user_id="acme"} 118',
     'response_code_total{http_code="200",path="/v1/completions",user_id="acme"} 127'),
    (f'response_duration_ms{{{SN_SUMMARY},quantile="0.5"}} 850',
     f'response_duration_ms{{{SN_SUMMARY},quantile="0.5"}} 900'),
    (f'response_duration_ms_sum{{{SN_SUMMARY}}} 110000', f'response_duration_ms_sum{{{SN_SUMMARY}}} 118000'),
    (f'response_duration_ms_count{{{SN_SUMMARY}}} 118', f'response_duration_ms_count{{{SN_SUMMARY}}} 127'),
)

# OpenMetrics as prometheus_client writes it: _created, units, an exemplar with a trace context.
PASSTHROUGH_1 = """\
# TYPE jobs counter
# HELP jobs Jobs done.
jobs_total{queue="a"} 10
jobs_created{queue="a"} 1600000000.25
jobs_total{queue="b"} 5
jobs_total{queue="c"} 7
# TYPE temperature_celsius gauge
# UNIT temperature_celsius celsius
temperature_celsius{room="lab"} 21.5
temperature_celsius{room="hall"} 19
# TYPE latency_seconds histogram
# UNIT latency_seconds seconds
# HELP latency_seconds Request latency.
latency_seconds_bucket{le="0.1"} 3
latency_seconds_bucket{le="1"} 7 # {trace_id="0af7651916cd43dd8448eb211c80319c",span_id="b7ad6b7169203331"} 0.5 1600000001.5
latency_seconds_bucket{le="+Inf"} 9
latency_seconds_sum 4.5
latency_seconds_count 9
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.5"} 0.2
rpc_duration_seconds{quantile="0.9"} 0.8
rpc_duration_seconds_sum 12.0
rpc_duration_seconds_count 30
# EOF
"""
# b resets (5 → 2); c and the hall gauge vanish (staleness markers); histogram and summary grow.
PASSTHROUGH_2 = edited(
    PASSTHROUGH_1,
    ('jobs_total{queue="a"} 10', 'jobs_total{queue="a"} 17'),
    ('jobs_total{queue="b"} 5', 'jobs_total{queue="b"} 2'),
    ('jobs_total{queue="c"} 7\n', ''),
    ('temperature_celsius{room="hall"} 19\n', ''),
    ('latency_seconds_bucket{le="0.1"} 3', 'latency_seconds_bucket{le="0.1"} 4'),
    ('latency_seconds_bucket{le="+Inf"} 9', 'latency_seconds_bucket{le="+Inf"} 12'),
    ('latency_seconds_sum 4.5', 'latency_seconds_sum 6.0'),
    ('latency_seconds_count 9', 'latency_seconds_count 12'),
    ('rpc_duration_seconds{quantile="0.5"} 0.2', 'rpc_duration_seconds{quantile="0.5"} 0.25'),
    ('rpc_duration_seconds_sum 12.0', 'rpc_duration_seconds_sum 14.5'),
    ('rpc_duration_seconds_count 30', 'rpc_duration_seconds_count 35'),
)
# c and hall come back (new series, new start times); the histogram resets; b grows after its reset.
PASSTHROUGH_3 = edited(
    PASSTHROUGH_1,
    ('jobs_total{queue="a"} 10', 'jobs_total{queue="a"} 20'),
    ('jobs_total{queue="b"} 5', 'jobs_total{queue="b"} 4'),
    ('jobs_total{queue="c"} 7', 'jobs_total{queue="c"} 9'),
    ('temperature_celsius{room="lab"} 21.5', 'temperature_celsius{room="lab"} 22'),
    ('temperature_celsius{room="hall"} 19', 'temperature_celsius{room="hall"} 18.5'),
    ('latency_seconds_bucket{le="0.1"} 3', 'latency_seconds_bucket{le="0.1"} 1'),
    ('latency_seconds_bucket{le="1"} 7 #', 'latency_seconds_bucket{le="1"} 1 #'),
    ('latency_seconds_bucket{le="+Inf"} 9', 'latency_seconds_bucket{le="+Inf"} 2'),
    ('latency_seconds_sum 4.5', 'latency_seconds_sum 0.75'),
    ('latency_seconds_count 9', 'latency_seconds_count 2'),
    ('rpc_duration_seconds_sum 12.0', 'rpc_duration_seconds_sum 16.0'),
    ('rpc_duration_seconds_count 30', 'rpc_duration_seconds_count 40'),
)


class Case(NamedTuple):
    source: str                  # the configured source's name
    mapping: str
    interval: str
    timeout_s: float
    content_type: str            # what the target answers, and what map is told (--content-type)
    bodies: tuple[str, ...]      # successive scrapes, oldest first


# Generous timeouts: the maps run beside the bridge on a shared machine, and a timed-out scrape would be
# compared (and fail) as up = 0. The 3 s sources are done well within the Baseten source's ~15 s.
CASES = (
    Case("bt", "baseten", "10s", 5.0, TEXT, (golden("baseten/scrape1.prom"), golden("baseten/scrape2.prom"))),
    Case("sn-histogram", "sambanova", "3s", 2.5, TEXT, (golden("sambanova/histogram.prom"), SAMBANOVA_HISTOGRAM_2)),
    Case("sn-summary", "sambanova", "3s", 2.5, OPENMETRICS, (golden("sambanova/summary.prom"), SAMBANOVA_SUMMARY_2)),
    Case("pt", "passthrough", "3s", 2.5, OPENMETRICS, (PASSTHROUGH_1, PASSTHROUGH_2, PASSTHROUGH_3)),
)
EXPORTERS = ("cumulative", "delta")


# ─── one scrape, normalised for comparison ───────────────────────────────────────────────────

Scrape = dict[str, Any]      # {"resources": [...], "metrics": {(scope, name): {"headers": [...], "points": [...]}}}


def _any(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    inner = getattr(v, kind)
    if kind in ("array_value", "kvlist_value"):
        return {kind: MessageToDict(inner)}
    if kind == "bytes_value":
        return {kind: inner.hex()}
    return {kind: inner}


def _attrs(kvs: Iterable[Any]) -> list[tuple[str, Any]]:
    return sorted(((kv.key, _any(kv.value)) for kv in kvs), key=repr)


def _floats(node: Any) -> Any:
    """NaN compares unequal to itself: spell it out so equal outputs compare equal."""
    if isinstance(node, float) and math.isnan(node):
        return "NaN"
    if isinstance(node, dict):
        return {k: _floats(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_floats(v) for v in node]
    return node


class Timeline:
    """Names a time by what it is: ``T<i>`` for scrape *i* of the target, 0, or the absolute value."""

    def __init__(self, scrape_times: list[int]) -> None:
        self.index = {t: i for i, t in enumerate(scrape_times)}

    def __call__(self, t: int | str) -> str:
        t = int(t)
        if t == 0:
            return "0"
        if t in self.index:
            return f"T{self.index[t]}"
        return f"absolute {t}"


def _point(p: Any, timeline: Timeline) -> dict[str, Any]:
    """Every field of a data point (proto3 JSON mapping, so no field is forgotten), times by relation."""
    doc = MessageToDict(p, preserving_proto_field_name=True)
    doc["attributes"] = _attrs(p.attributes)
    for key in ("start_time_unix_nano", "time_unix_nano"):
        doc[key] = timeline(doc.get(key, 0))
    raw_exemplars = p.exemplars if "exemplars" in p.DESCRIPTOR.fields_by_name else ()   # summaries have none
    for ex, raw in zip(doc.get("exemplars", []), raw_exemplars):
        ex["time_unix_nano"] = timeline(ex.get("time_unix_nano", 0))
        ex["filtered_attributes"] = _attrs(raw.filtered_attributes)
    return _floats(doc)


def _header(m: Any, kind: str) -> dict[str, Any]:
    data = getattr(m, kind)
    return {
        "description": m.description,
        "unit": m.unit,
        "type": kind,
        "metadata": _attrs(m.metadata),
        "aggregation_temporality": getattr(data, "aggregation_temporality", None),
        "is_monotonic": getattr(data, "is_monotonic", None),
    }


def _of_instance(rm: Any, instance: str) -> bool:
    """Whether a ResourceMetrics is the target's: ``service.instance.id`` is its ``host:port``."""
    return any(kv.key == "service.instance.id" and kv.value.string_value == instance for kv in rm.resource.attributes)


def scrape_times(requests: Iterable[ExportMetricsServiceRequest], instance: str) -> list[int]:
    """The times of the target's scrapes, oldest first: every scrape has exactly one ``up`` point."""
    times: list[int] = []
    for req in requests:
        for rm in req.resource_metrics:
            if not _of_instance(rm, instance):
                continue
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == "up":
                        times += [p.time_unix_nano for p in m.gauge.data_points]
    return sorted(times)


def scrapes(requests: list[ExportMetricsServiceRequest], instance: str, count: int) -> list[Scrape]:
    """The target's first ``count`` scrapes, each gathered from wherever its points arrived (a collector
    may split or merge requests): a point belongs to the scrape whose time it carries."""
    times = scrape_times(requests, instance)[:count]
    timeline = Timeline(times)
    out: list[Scrape] = [{"resources": [], "metrics": {}} for _ in times]
    for req in requests:
        for rm in req.resource_metrics:
            if not _of_instance(rm, instance):
                continue
            resource = {"attributes": _attrs(rm.resource.attributes),
                        "dropped_attributes_count": rm.resource.dropped_attributes_count,
                        "schema_url": rm.schema_url}
            for sm in rm.scope_metrics:
                scope = json.dumps({"name": sm.scope.name, "version": sm.scope.version,
                                    "attributes": _attrs(sm.scope.attributes), "schema_url": sm.schema_url})
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    assert kind is not None, f"metric {m.name} without data"
                    for p in getattr(m, kind).data_points:
                        at = timeline(p.time_unix_nano)
                        if not at.startswith("T"):
                            continue            # a later scrape (or not a scrape time: it shows as missing)
                        scrape = out[int(at[1:])]
                        if resource not in scrape["resources"]:
                            scrape["resources"].append(resource)
                        entry = scrape["metrics"].setdefault((scope, m.name), {"headers": [], "points": []})
                        if _header(m, kind) not in entry["headers"]:
                            entry["headers"].append(_header(m, kind))
                        entry["points"].append(_point(p, timeline))
    for scrape in out:
        for entry in scrape["metrics"].values():
            entry["points"].sort(key=lambda d: json.dumps(d, sort_keys=True))
    return out


def point_count(scrape: Scrape) -> int:
    return sum(len(e["points"]) for e in scrape["metrics"].values())


# ─── exclusions (see the module docstring) ───────────────────────────────────────────────────

def exclude_scrape_duration(scrape: Scrape, check: Callable[[float], bool], what: str) -> None:
    """Check ``scrape_duration_seconds``'s value with ``check`` and take it out of the comparison."""
    entries = [e for (_, name), e in scrape["metrics"].items() if name == "scrape_duration_seconds"]
    assert len(entries) == 1 and len(entries[0]["points"]) == 1, f"{what}: one scrape_duration_seconds point"
    point = entries[0]["points"][0]
    value = point.pop("as_double")
    assert check(value), f"{what}: scrape_duration_seconds = {value}"


# ─── comparing ───────────────────────────────────────────────────────────────────────────────

def differences(run: Scrape, mapped: Scrape) -> list[str]:
    """Every way the two scrapes differ, one line each, naming the metric and the field."""
    out: list[str] = []
    if run["resources"] != mapped["resources"]:
        out.append(f"resource: run {run['resources']} ≠ map {mapped['resources']}")
    for key in sorted(set(run["metrics"]) | set(mapped["metrics"])):
        scope, name = key
        r, m = run["metrics"].get(key), mapped["metrics"].get(key)
        if r is None or m is None:
            out.append(f"{name} (scope {scope}): only in {'map' if r is None else 'run'}")
            continue
        if r["headers"] != m["headers"]:
            out.append(f"{name}: header run {r['headers']} ≠ map {m['headers']}")
        if r["points"] != m["points"]:
            rs = [json.dumps(p, sort_keys=True) for p in r["points"]]
            ms = [json.dumps(p, sort_keys=True) for p in m["points"]]
            only_run = [p for p in rs if p not in ms]
            only_map = [p for p in ms if p not in rs]
            out.append(f"{name}: {len(rs)} points from run, {len(ms)} from map; only in run: {only_run}; "
                       f"only in map: {only_map}")
    return out


# ─── running both ────────────────────────────────────────────────────────────────────────────

def _ids_hex_to_base64(node: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex; the proto3 JSON parser wants base64."""
    if isinstance(node, dict):
        return {k: base64.b64encode(bytes.fromhex(v)).decode() if k in ("traceId", "spanId")
                else _ids_hex_to_base64(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_ids_hex_to_base64(v) for v in node]
    return node


def parse_map_output(stdout: str) -> list[ExportMetricsServiceRequest]:
    """One OTLP/JSON ExportMetricsServiceRequest per line; parsing rejects any field OTLP does not have."""
    return [ParseDict(_ids_hex_to_base64(json.loads(line)), ExportMetricsServiceRequest())
            for line in stdout.splitlines() if line.strip()]


class Runs(NamedTuple):
    run: dict[tuple[str, str], list[Scrape]]          # (source, exporter) → run's scrapes
    mapped: dict[tuple[str, str], list[Scrape]]       # (source, exporter) → map's scrapes
    targets: dict[str, ExpositionServer]
    log: Path


def write_config(tmp: Path, targets: dict[str, ExpositionServer], cumulative: Rotel, delta: Rotel) -> Path:
    sources = "".join(
        f"  - name: {c.source}\n    mapping: {c.mapping}\n    url: \"{targets[c.source].url}\"\n"
        f"    interval: {c.interval}\n    timeout: {c.timeout_s}s\n"
        f"    resource_attributes: {{k8s.cluster.name: e2e-{c.source}}}\n"
        + ("    auth: {api_key: \"k-map-equals-run\"}\n" if c.mapping == "baseten" else "")
        for c in CASES)
    exporters = (f"  - name: cumulative\n    endpoint: \"{cumulative.grpc_endpoint}\"\n    protocol: grpc\n"
                 f"  - name: delta\n    endpoint: \"{delta.http_endpoint}\"\n    protocol: http/protobuf\n"
                 "    temporality: delta\n    summaries: convert\n")
    path = tmp / "promotel.yaml"
    path.write_text(f"sources:\n{sources}exporters:\n{exporters}state_dir: \"{tmp / 'state'}\"\n"
                    "resource_attributes: {deployment.environment.name: test}\n"
                    "self_telemetry: {enabled: false}\n")
    path.chmod(0o600)        # it holds an API key
    return path


def start_maps(config: Path, tmp: Path) -> dict[tuple[str, str], subprocess.Popen[str]]:
    procs = {}
    for case in CASES:
        files = []
        for i, body in enumerate(case.bodies):
            f = tmp / f"{case.source}-{i + 1}.prom"
            f.write_text(body, encoding="utf-8")
            files.append(str(f))
        for exporter in EXPORTERS:
            procs[case.source, exporter] = subprocess.Popen(
                [*PROMOTEL, "map", "-c", str(config), "--source", case.source, "--exporter", exporter,
                 "--content-type", case.content_type, *files],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    return procs


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    tmp = tmp_path_factory.mktemp("map-equals-run")
    sinks = {e: OTLPSink().start() for e in EXPORTERS}
    rotels = {e: Rotel(sinks[e].grpc_port, tmp / f"rotel-{e}").start() for e in EXPORTERS}
    targets = {c.source: ExpositionServer(content_type=c.content_type, bodies=c.bodies).start() for c in CASES}
    config = write_config(tmp, targets, rotels["cumulative"], rotels["delta"])
    log = tmp / "promotel.log"
    bridge = start_bridge(config, log)
    maps: dict[tuple[str, str], subprocess.Popen[str]] = {}
    try:
        maps = start_maps(config, tmp)
        mapped: dict[tuple[str, str], list[Scrape]] = {}
        for key, proc in maps.items():
            out, err = proc.communicate(timeout=MAP_WAIT_S)
            assert proc.returncode == 0, f"promotel map for {key}: exit {proc.returncode}\n{err}"
            requests = parse_map_output(out)
            case = next(c for c in CASES if c.source == key[0])
            assert len(requests) == len(case.bodies), f"map printed {len(requests)} requests for {key}"
            mapped[key] = scrapes(requests, f"127.0.0.1:{targets[key[0]].port}", len(case.bodies))

        def run_scrapes() -> dict[tuple[str, str], list[Scrape]]:
            return {(c.source, e): scrapes(sinks[e].snapshot(), f"127.0.0.1:{targets[c.source].port}", len(c.bodies))
                    for c in CASES for e in EXPORTERS}

        def complete() -> bool:
            # Every scrape's points arrived (at least as many as map prints: a missing point shows in the diff).
            got = run_scrapes()
            return all(len(got[key]) == len(want) and
                       all(point_count(g) >= point_count(w) for g, w in zip(got[key], want))
                       for key, want in mapped.items())

        deadline = time.monotonic() + RUN_WAIT_S
        while not complete() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert bridge.poll() is None, f"promotel run exited early:\n{log.read_text()}"
    finally:
        for proc in maps.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
        code = stop_bridge(bridge)
        for r in rotels.values():
            r.stop()
        for s in sinks.values():
            s.stop()
        for t in targets.values():
            t.stop()
    assert code == 0, log.read_text()
    yield Runs(run_scrapes(), mapped, targets, log)


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("case", CASES, ids=[c.source for c in CASES])
def test_map_prints_what_run_sends(runs: Runs, case: Case, exporter: str) -> None:
    key = (case.source, exporter)
    # run fetched every body (the target moves to the next body on each GET, then repeats the last one).
    served = runs.targets[case.source].served
    assert served[:len(case.bodies)] == list(range(len(case.bodies))), served
    # Copies: the exclusions below edit the scrapes, which the module's other tests read too.
    run, mapped = copy.deepcopy(runs.run[key]), copy.deepcopy(runs.mapped[key])
    assert len(run) == len(case.bodies), \
        f"run delivered {len(run)} of {len(case.bodies)} scrapes of {case.source}\n{runs.log.read_text()}"
    report = []
    for i, (r, m) in enumerate(zip(run, mapped)):
        exclude_scrape_duration(r, lambda v: 0.0 <= v < case.timeout_s, f"run scrape {i + 1}")
        exclude_scrape_duration(m, lambda v: v == 0.0, f"map scrape {i + 1}")
        report += [f"scrape {i + 1} of {len(case.bodies)}: {d}" for d in differences(r, m)]
        assert point_count(r) > 0
    assert not report, f"{case.source} via {exporter}, run ≠ map:\n" + "\n".join(report)


@pytest.mark.parametrize("side", ["run", "map"])
def test_cases_exercise_what_they_claim(runs: Runs, side: str) -> None:
    """The comparison is only as strong as its data: each output holds what the cases claim to exercise."""
    out = runs.run if side == "run" else runs.mapped

    def points(key: tuple[str, str], i: int, name: str) -> dict[str, dict[str, Any]]:
        """The points of metric ``name`` in scrape ``i``, by the value of their first attribute."""
        found = [p for (_, n), e in out[key][i]["metrics"].items() if n == name for p in e["points"]]
        return {str(p["attributes"][0][1]) if p["attributes"] else "": p for p in found}

    a, b, c = ({"string_value": q} for q in "abc")
    pt, pt_delta = ("pt", "cumulative"), ("pt", "delta")
    jobs = points(pt, 1, "jobs_total")          # the OpenMetrics counter "jobs" under its Prometheus name
    assert jobs[str(a)]["start_time_unix_nano"] == "absolute 1600000000250000000"             # _created
    assert jobs[str(b)]["start_time_unix_nano"] == "T1" and jobs[str(b)]["as_double"] == 2.0  # reset restarts
    assert jobs[str(c)].get("flags") == 1                                                      # staleness marker
    assert points(pt, 1, "temperature_celsius")[str({"string_value": "hall"})].get("flags") == 1
    assert points(pt, 2, "jobs_total")[str(c)]["start_time_unix_nano"] == "T2"                      # back: new start
    hist = points(pt, 2, "latency_seconds")[""]
    assert hist["start_time_unix_nano"] == "T2" and hist["count"] == "2"                      # histogram reset
    assert points(pt, 0, "latency_seconds")[""]["exemplars"][0]["time_unix_nano"] == "absolute 1600000001500000000"
    assert points(pt, 0, "rpc_duration_seconds")[""]["quantile_values"]                       # summary kept
    delta = points(pt_delta, 2, "jobs_total")
    assert delta[str(a)]["start_time_unix_nano"] == "T1" and delta[str(a)]["as_double"] == 3.0  # contiguous
    assert "jobs_total" not in {n for _, n in out[pt_delta][0]["metrics"]}                           # first = baseline
    assert points(pt_delta, 1, "rpc_duration_seconds.count")                                   # summaries: convert
    names = {n for _, n in out["bt", "delta"][1]["metrics"]}
    assert "baseten.inference.requests" in names and "up" in names
    assert "sambanova.router.request.duration" in {n for _, n in out["sn-histogram", "cumulative"][1]["metrics"]}
    assert "sambanova.router.request.duration.count" in {n for _, n in out["sn-summary", "delta"][1]["metrics"]}
