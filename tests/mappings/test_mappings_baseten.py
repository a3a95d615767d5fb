"""The Baseten mapping, family by family, as docs/mappings.md fixes it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from promotel.exposition import parse_exposition
from promotel.mappings import MapResult, load_mapping
from promotel.model import HistogramPoint, Kind, Metric, NumberPoint
from promotel.pipeline import TargetPipeline
from support.paths import TESTDATA

GOLDEN = TESTDATA / "golden" / "baseten"
MIB = 1_048_576


def source(**kw: Any) -> SimpleNamespace:
    base: dict[str, Any] = {"name": "bt", "overrides": {}, "users": "keep", "pseudonymize_key": None,
                                "unmapped": "keep", "service_name": None}
    base.update(kw)
    return SimpleNamespace(**base)


def mapped(text: str | None = None, **kw: Any) -> MapResult:
    data = text if text is not None else (GOLDEN / "scrape1.prom").read_text()
    return load_mapping("baseten").bind(source(**kw)).map(parse_exposition(data, None))


@pytest.fixture(scope="module")
def result() -> MapResult:
    return mapped()


def metric(result: MapResult, name: str) -> Metric:
    found = [m for m in result.metrics if m.name == name]
    assert len(found) == 1, f"{name}: {[m.name for m in result.metrics]}"
    return found[0]


def attrs(point: Any) -> dict[str, Any]:
    return dict(point.attributes)


def point_where(m: Metric, **want: Any) -> Any:
    hits = [p for p in m.points if all(attrs(p).get(k) == v for k, v in want.items())]
    assert len(hits) == 1, (m.name, want, [attrs(p) for p in m.points])
    return hits[0]


DEPLOYMENT_ATTRS = {"baseten.model.id": "wd1lz0q", "baseten.model.name": "llama-3.1-8b",
                    "baseten.deployment.id": "qv4m7ke", "deployment.environment.name": "production",
                    "baseten.deployment.rollout_phase": "stable"}

# (OTel name, unit, kind, monotonic) for every row of the table.
EXPECTED = [
    ("baseten.inference.requests", "{request}", Kind.SUM, True),
    ("baseten.inference.request.duration", "s", Kind.HISTOGRAM, False),
    ("baseten.inference.time_to_first_byte", "s", Kind.HISTOGRAM, False),
    ("baseten.inference.request.size", "By", Kind.HISTOGRAM, False),
    ("baseten.inference.response.size", "By", Kind.HISTOGRAM, False),
    ("baseten.async.request.time_in_queue", "s", Kind.HISTOGRAM, False),
    ("baseten.async.queue.size", "{request}", Kind.SUM, False),
    ("baseten.inference.request.active", "{request}", Kind.SUM, False),
    ("baseten.websocket.connection.active", "{connection}", Kind.SUM, False),
    ("baseten.replica.count", "{replica}", Kind.SUM, False),
    ("container.cpu.time", "s", Kind.SUM, True),
    ("container.memory.working_set", "By", Kind.SUM, False),
    ("hw.gpu.memory.usage", "By", Kind.SUM, False),
    ("hw.gpu.utilization", "1", Kind.GAUGE, False),
    ("baseten.container.restarts", "{restart}", Kind.SUM, True),
    ("baseten.pod.count", "{pod}", Kind.SUM, False),
    ("baseten.async.webhook.requests", "{request}", Kind.SUM, True),
    ("baseten.async.webhook.duration", "s", Kind.HISTOGRAM, False),
    ("baseten.llm.input_tokens", "{token}", Kind.SUM, True),
    ("baseten.llm.output_tokens", "{token}", Kind.SUM, True),
    ("baseten.llm.input_tokens_per_request", "{token}", Kind.HISTOGRAM, False),
    ("baseten.llm.output_tokens_per_request", "{token}", Kind.HISTOGRAM, False),
    ("baseten.llm.kv_cache.hit_rate", "1", Kind.HISTOGRAM, False),
    ("baseten.llm.in_flight_tokens", "{token}", Kind.SUM, False),
    ("baseten.llm.request.active", "{request}", Kind.SUM, False),
]


@pytest.mark.parametrize("name,unit,kind,monotonic", EXPECTED)
def test_every_family_name_unit_instrument(result: MapResult, name: str, unit: str, kind: Kind,
                                           monotonic: bool) -> None:
    m = metric(result, name)
    assert (m.unit, m.kind, m.monotonic) == (unit, kind, monotonic)
    assert m.points and m.description


def test_nothing_else_and_unlisted_family_passes_through(result: MapResult) -> None:
    names = {m.name for m in result.metrics}
    assert names == {e[0] for e in EXPECTED} | {"baseten_build_info"}
    build = metric(result, "baseten_build_info")
    # A gauge named *_info is an Info written in the Prometheus text format: a non-monotonic Sum (OTel spec).
    assert build.kind is Kind.SUM and not build.monotonic and build.prom_type == "gauge"
    assert attrs(build.points[0]) == {"version": "2025.11.3"}
    assert result.resource == ()          # the identity is the pipeline's (service.name = the source's name)
    assert result.dropped == 0


def test_request_counter_attributes_and_types(result: MapResult) -> None:
    m = metric(result, "baseten.inference.requests")
    ok = point_where(m, **{"http.response.status_code": 200, "baseten.request.async": False,
                           "baseten.deployment.id": "qv4m7ke"})
    assert attrs(ok) == {**DEPLOYMENT_ATTRS, "http.response.status_code": 200, "baseten.request.async": False}
    assert type(attrs(ok)["http.response.status_code"]) is int and ok.value == 1200.0
    assert attrs(point_where(m, **{"baseten.request.async": True}))["baseten.request.async"] is True
    assert point_where(m, **{"baseten.deployment.id": "d8r2n5t", "http.response.status_code": 200}).value == 42.0
    not_found = point_where(m, **{"http.response.status_code": 404})
    assert "error.type" not in attrs(not_found)                  # 4xx is not a server error
    unavailable = point_where(m, **{"http.response.status_code": 503})
    assert attrs(unavailable)["error.type"] == "503"


def test_empty_environment_dropped_and_non_integer_status_code(result: MapResult) -> None:
    m = metric(result, "baseten.inference.requests")
    odd = point_where(m, **{"baseten.response.status_code": "unknown"})
    assert attrs(odd) == {"baseten.model.id": "x3k9p2a", "baseten.model.name": "whisper-v3",
                          "baseten.deployment.id": "d8r2n5t", "baseten.response.status_code": "unknown",
                          "baseten.request.async": False}
    assert "http.response.status_code" not in attrs(odd) and "error.type" not in attrs(odd)


@pytest.mark.parametrize("code,want", [("99", None), ("600", None), ("200", 200), ("599", 599), ("2xx", None),
                                       (" 200", None), ("500", 500)])
def test_status_code_range(code: str, want: int | None) -> None:
    text = f'# TYPE baseten_inference_requests_total counter\nbaseten_inference_requests_total{{status_code="{code}"}} 1\n'
    p = metric(mapped(text), "baseten.inference.requests").points[0]
    if want is None:
        assert attrs(p) == {"baseten.response.status_code": code}
    else:
        expected: dict[str, Any] = {"http.response.status_code": want}
        if want >= 500:
            expected["error.type"] = str(want)
        assert attrs(p) == expected


def test_histograms_keep_seconds_and_bytes(result: MapResult) -> None:
    d = point_where(metric(result, "baseten.inference.request.duration"), **{"http.response.status_code": 200})
    assert isinstance(d, HistogramPoint)
    assert d.bounds == (0.1, 0.5, 2.5) and d.counts == (100.0, 600.0, 450.0, 50.0)
    assert d.count == 1200.0 and d.sum == 612.5
    e = point_where(metric(result, "baseten.inference.request.duration"), **{"http.response.status_code": 503})
    assert attrs(e)["error.type"] == "503"
    size = metric(result, "baseten.inference.request.size").points[0]
    assert size.bounds == (1024.0, 65536.0) and size.sum == 245760.0
    queue = metric(result, "baseten.async.request.time_in_queue").points[0]
    assert attrs(queue) == DEPLOYMENT_ATTRS and queue.counts == (20.0, 50.0, 10.0)


def test_gpu_memory_mib_to_bytes_and_utilization_percent_to_ratio(result: MapResult) -> None:
    mem = metric(result, "hw.gpu.memory.usage")
    p0 = point_where(mem, **{"hw.id": "0"})
    assert p0.value == 40960 * MIB
    assert attrs(p0) == {**DEPLOYMENT_ATTRS, "baseten.replica.id": "baseten-model-qv4m7ke-a1b2c",
                         "hw.id": "0", "hw.type": "gpu"}
    assert point_where(mem, **{"hw.id": "1"}).value == 512 * MIB
    util = metric(result, "hw.gpu.utilization")
    assert point_where(util, **{"hw.id": "0"}).value == pytest.approx(0.875)
    assert point_where(util, **{"hw.id": "1"}).value == 0.0
    assert all(attrs(p)["hw.type"] == "gpu" for p in util.points)


def test_replicas_merge_into_one_metric_with_state(result: MapResult) -> None:
    m = metric(result, "baseten.replica.count")
    assert len(m.points) == 4
    assert point_where(m, **{"baseten.replica.state": "active", "baseten.deployment.id": "qv4m7ke"}).value == 2.0
    assert point_where(m, **{"baseten.replica.state": "starting", "baseten.deployment.id": "qv4m7ke"}).value == 1.0
    assert point_where(m, **{"baseten.replica.state": "active", "baseten.deployment.id": "d8r2n5t"}).value == 1.0


def test_container_pod_and_llm_families(result: MapResult) -> None:
    cpu = point_where(metric(result, "container.cpu.time"), **{"baseten.replica.id": "baseten-model-qv4m7ke-a1b2c"})
    assert cpu.value == 3521.25
    assert metric(result, "container.memory.working_set").points[0].value == 8589934592.0
    pods = metric(result, "baseten.pod.count")
    assert {attrs(p)["baseten.pod.ready"]: p.value for p in pods.points} == {"true": 2.0, "false": 1.0, "unknown": 0.0}
    hooks = metric(result, "baseten.async.webhook.requests")
    assert attrs(point_where(hooks, **{"http.response.status_code": 502}))["error.type"] == "502"
    assert metric(result, "baseten.llm.input_tokens").points[0].value == 512000.0
    assert metric(result, "baseten.llm.kv_cache.hit_rate").points[0].bounds == (0.5,)
    assert metric(result, "baseten.llm.request.active").points[0].value == 9.0


def test_openmetrics_counter_without_total_is_found() -> None:
    text = ("# TYPE baseten_inference_requests counter\n"
            'baseten_inference_requests_total{model_id="m",status_code="200",is_async="false"} 5\n'
            "# TYPE baseten_container_restarts counter\n"
            'baseten_container_restarts_total{model_id="m"} 2\n'
            "# EOF\n")
    result = mapped(text)
    assert metric(result, "baseten.inference.requests").points[0].value == 5.0
    assert metric(result, "baseten.container.restarts").monotonic is True


def test_unknown_per_request_token_histogram_follows_the_pattern_row() -> None:
    text = ("# TYPE baseten_llm_cached_tokens_per_request histogram\n"
            'baseten_llm_cached_tokens_per_request_bucket{model_id="m",le="10"} 1\n'
            'baseten_llm_cached_tokens_per_request_bucket{model_id="m",le="+Inf"} 2\n'
            'baseten_llm_cached_tokens_per_request_sum{model_id="m"} 30\n'
            'baseten_llm_cached_tokens_per_request_count{model_id="m"} 2\n')
    m = metric(mapped(text), "baseten.llm.cached_tokens_per_request")
    assert (m.unit, m.kind) == ("{token}", Kind.HISTOGRAM) and attrs(m.points[0]) == {"baseten.model.id": "m"}


def test_service_name_override_and_unmapped_drop() -> None:
    result = mapped(service_name="my-baseten", unmapped="drop")
    assert result.resource == ()          # the identity is the pipeline's, not the mapping's
    assert "baseten_build_info" not in {m.name for m in result.metrics}
    assert len(result.metrics) == len(EXPECTED)
    # Left out on purpose, and counted with the family's name.
    assert result.reasons == {"unmapped_drop": 1} and result.examples == {"unmapped_drop": "baseten_build_info"}
    pipeline = TargetPipeline(source(service_name="my-baseten"), url="https://app.baseten.co/metrics",
                              mapping="baseten")
    assert dict(pipeline.resource)["service.name"] == "my-baseten"
    assert dict(pipeline.resource)["service.instance.id"] == "app.baseten.co:443"


def test_type_mismatch_passes_the_family_through() -> None:
    text = "# TYPE baseten_end_to_end_response_time_seconds gauge\nbaseten_end_to_end_response_time_seconds 3\n"
    m = metric(mapped(text), "baseten_end_to_end_response_time_seconds")
    assert m.kind is Kind.GAUGE and isinstance(m.points[0], NumberPoint) and m.points[0].value == 3.0
