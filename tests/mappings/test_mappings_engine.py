"""The plugin loader, the passthrough mapping, overrides, caches and ``describe``."""

from __future__ import annotations

import hashlib
import hmac
import logging
from importlib.metadata import entry_points
from types import SimpleNamespace
from typing import Any

import pytest

from promotel.errors import MappingError
from promotel.exposition import parse_exposition
from promotel.mappings import MappingPlugin, MapResult, installed_mappings, load_mapping
from promotel.mappings import table as table_mod
from promotel.model import Kind, Metric


def source(**kw: Any) -> SimpleNamespace:
    base: dict[str, Any] = {"name": "src", "overrides": {}, "users": "keep", "pseudonymize_key": None,
                                "unmapped": "keep", "service_name": None}
    base.update(kw)
    return SimpleNamespace(**base)


def run(mapping: str, text: str, **kw: Any) -> MapResult:
    return load_mapping(mapping).bind(source(**kw)).map(parse_exposition(text, None))


def metric(result: MapResult, name: str) -> Metric:
    found = [m for m in result.metrics if m.name == name]
    assert len(found) == 1, f"{name}: {[m.name for m in result.metrics]}"
    return found[0]


def attrs(point: Any) -> dict[str, Any]:
    return dict(point.attributes)


GPU = ('# TYPE baseten_gpu_utilization gauge\n'
       'baseten_gpu_utilization{model_id="m",replica="r1",gpu="0",environment=""} 50\n')


def test_builtins_register_through_the_entry_point_group() -> None:
    assert installed_mappings() == sorted(installed_mappings())
    assert {"baseten", "passthrough", "sambanova"} <= set(installed_mappings())
    eps = {ep.name: ep for ep in entry_points(group="promotel.mappings")}
    for name in ("baseten", "passthrough", "sambanova"):
        plugin = eps[name].load()
        assert plugin is load_mapping(name)
        assert isinstance(plugin, MappingPlugin) and plugin.name == name
    assert load_mapping("baseten").default_service_name == "baseten"
    assert load_mapping("sambanova").default_service_name == "sambanova-router"


def test_unknown_mapping_names_the_installed_ones() -> None:
    with pytest.raises(MappingError) as err:
        load_mapping("nope")
    assert str(err.value) == f"unknown mapping 'nope'; installed: {', '.join(installed_mappings())}"
    assert "baseten, passthrough, sambanova" in str(err.value)


def test_passthrough_keeps_names_labels_and_types() -> None:
    text = ('# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n'
            'http_requests_total{code="200",method="get",empty=""} 7\n'
            '# TYPE temp gauge\ntemp 21.5\n'
            '# TYPE target_info gauge\ntarget_info{cluster="eu-1",team="ml"} 1\n')
    result = run("passthrough", text)
    assert result.resource == (("cluster", "eu-1"), ("team", "ml"))     # target_info; no identity from a mapping
    counter = metric(result, "http_requests_total")
    assert (counter.kind, counter.monotonic, counter.description) == (Kind.SUM, True, "Requests.")
    assert attrs(counter.points[0]) == {"code": "200", "method": "get"}       # strings, empty value dropped
    assert metric(result, "temp").points[0].value == 21.5
    assert ("service.name", "svc") not in run("passthrough", text, service_name="svc").resource


def test_passthrough_ignores_unmapped_drop() -> None:
    assert [m.name for m in run("passthrough", "# TYPE temp gauge\ntemp 1\n", unmapped="drop").metrics] == ["temp"]


def test_override_rename_unit_scale_and_attributes() -> None:
    ov = {"baseten_gpu_utilization": SimpleNamespace(
        name="gpu.busy", unit="%", scale=1.0, description="Busy percent.", attributes={"team": "ml", "tier": 2},
        drop_attributes=["hw.type"], rename_attributes={"baseten.replica.id": "replica"}, drop=False)}
    m = metric(run("baseten", GPU, overrides=ov), "gpu.busy")
    assert (m.unit, m.description, m.kind) == ("%", "Busy percent.", Kind.GAUGE)
    assert m.points[0].value == 50.0
    assert attrs(m.points[0]) == {"baseten.model.id": "m", "replica": "r1", "hw.id": "0", "team": "ml", "tier": 2}


def test_override_given_as_mapping_and_partial_fields() -> None:
    m = metric(run("baseten", GPU, overrides={"baseten_gpu_utilization": {"name": "x.util"}}), "x.util")
    assert (m.unit, m.points[0].value) == ("1", 0.5)            # the row's unit and scale stay


def test_override_drops_a_family_and_applies_to_unlisted_families() -> None:
    text = GPU + '# TYPE custom_latency_ms gauge\ncustom_latency_ms{job="a"} 250\n'
    ov = {"baseten_gpu_utilization": {"drop": True},
          "custom_latency_ms": {"name": "custom.latency", "unit": "s", "scale": 0.001,
                                "rename_attributes": {"job": "service.job"}}}
    result = run("baseten", text, overrides=ov)
    assert [m.name for m in result.metrics] == ["custom.latency"]
    m = result.metrics[0]
    assert (m.unit, m.kind, m.points[0].value, attrs(m.points[0])) == ("s", Kind.GAUGE, 0.25, {"service.job": "a"})


def test_override_keyed_by_openmetrics_name_matches_total_name() -> None:
    text = '# TYPE baseten_container_restarts_total counter\nbaseten_container_restarts_total{model_id="m"} 3\n'
    result = run("baseten", text, overrides={"baseten_container_restarts": {"name": "restarts"}})
    assert metric(result, "restarts").monotonic is True


@pytest.mark.parametrize("scale", [0, -1.0, float("inf"), float("nan"), "x", True])
def test_invalid_override_scale_is_a_mapping_error(scale: Any) -> None:
    with pytest.raises(MappingError, match=r"baseten_gpu_utilization.*scale"):
        load_mapping("baseten").bind(source(overrides={"baseten_gpu_utilization": {"scale": scale}}))


def test_invalid_override_name_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="'name' must be a non-empty string"):
        load_mapping("baseten").bind(source(overrides={"baseten_gpu_utilization": {"name": " "}}))


def test_override_for_an_unlisted_family_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="promotel.mappings"):
        load_mapping("baseten").bind(source(overrides={"baseten_gpu_utilisation": {"name": "x"}}))
    assert any("baseten_gpu_utilisation" in r.getMessage() and "does not list" in r.getMessage()
               for r in caplog.records)


def test_invalid_users_policy_is_refused() -> None:
    with pytest.raises(MappingError, match="users must be keep, pseudonymize or drop"):
        load_mapping("sambanova").bind(source(users="hash"))


def test_with_the_real_config_classes() -> None:
    from promotel.config import FamilyOverride, SourceConfig

    cfg = SourceConfig(name="router", mapping="sambanova", url="http://127.0.0.1:9/metrics", users="pseudonymize",
                       pseudonymize_key="s3cret-key-for-tests",
                       overrides={"queue_length": FamilyOverride(name="router.queue", attributes={"site": "eu"},
                                                                 drop_attributes=["sambanova.request.qos"])})
    mapper = load_mapping("sambanova").bind(cfg)
    result = mapper.map(parse_exposition('# TYPE queue_length gauge\nqueue_length{model="m",qos="q",user="u1"} 4\n',
                                         None))
    p = metric(result, "router.queue").points[0]
    digest = hmac.new(b"s3cret-key-for-tests", b"u1", hashlib.sha256).hexdigest()[:32]
    assert attrs(p) == {"gen_ai.request.model": "m", "enduser.pseudo.id": digest, "site": "eu"}


def test_attribute_cache_reuses_translations_and_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    mapper = load_mapping("baseten").bind(source())
    fams = parse_exposition(GPU, None)
    first = mapper.map(fams).metrics[0].points[0].attributes
    again = mapper.map(fams).metrics[0].points[0].attributes
    assert first is again                           # the same Labels → the cached tuple
    monkeypatch.setattr(table_mod, "CACHE_MAX", 3)
    lines = "".join(f'baseten_gpu_utilization{{model_id="m{i}",gpu="0"}} {i}\n' for i in range(10))
    mapper = load_mapping("baseten").bind(source())
    for _ in range(2):
        result = mapper.map(parse_exposition("# TYPE baseten_gpu_utilization gauge\n" + lines, None))
        got = {attrs(p)["baseten.model.id"]: p.value for p in result.metrics[0].points}
        assert got == {f"m{i}": i / 100 for i in range(10)}


def test_describe_comes_from_the_table_rows() -> None:
    from promotel.mappings.baseten import TABLE as BT
    from promotel.mappings.sambanova import TABLE as SN

    for name, table in (("baseten", BT), ("sambanova", SN)):
        rows = load_mapping(name).describe()
        assert [(r.family, r.otel_name, r.unit) for r in rows] == [(r.family, r.name, r.unit) for r in table.rows]
    rows = {r.family: r for r in load_mapping("baseten").describe()}
    gpu = rows["baseten_gpu_memory_used"]
    assert (gpu.otel_name, gpu.unit, gpu.conversion) == ("hw.gpu.memory.usage", "By", "MiB × 1048576")
    assert "gpu→hw.id + hw.type=gpu" in gpu.attributes
    assert "status_code→http.response.status_code" in rows["baseten_inference_requests_total"].attributes
    assert "baseten.replica.state=starting" in rows["baseten_replicas_starting"].attributes
    assert rows["baseten_inference_requests_total"].instrument == "Counter (monotonic Sum)"
    dur = {r.family: r for r in load_mapping("sambanova").describe()}["response_duration_ms"]
    assert dur.instrument == "Histogram or Summary (as exposed)" and "ms ÷ 1000" in dur.conversion
    assert load_mapping("passthrough").describe() == []


def test_check_table_refuses_inconsistent_merges() -> None:
    from promotel.mappings.table import Instrument, Row, Table, check_table

    rows = (Row("a", "x", Instrument.GAUGE, "1"), Row("b", "x", Instrument.COUNTER, "1"))
    with pytest.raises(MappingError, match="disagree"):
        check_table(Table("t", rows, ()))
