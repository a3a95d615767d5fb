"""A target's identity per the OpenTelemetry Prometheus-compatibility spec ("Resource Attributes", "Instrumentation
Scope"): the Resource from the Prometheus job and instance, ``target_info`` into the Resource, ``otel_scope_*``
into the scope, exposed ``job``/``instance`` per ``honor_labels``; two sources never share an identity."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from promotel.config import load_config
from promotel.errors import ConfigError
from promotel.mappings import MapResult, register_mapping, unregister_mapping
from promotel.model import Attributes, Metric, MetricFamily, TargetBatch
from promotel.pipeline import (
    TargetPipeline,
    TargetResult,
    identity_problems,
    instance_of,
    service_identity,
    target_resource,
)

TEXT = "text/plain; version=0.0.4"
T1, T2 = 1_800_000_000_000_000_000, 1_800_000_060_000_000_000


def source(**kw: Any) -> SimpleNamespace:
    base: dict[str, Any] = {"name": "web", "overrides": {}, "users": "keep", "pseudonymize_key": None,
                            "unmapped": "keep", "service_name": None}
    base.update(kw)
    return SimpleNamespace(**base)


def pipeline(url: str = "http://10.0.0.7:9100/metrics", mapping: str = "passthrough",
             extra: tuple[tuple[str, Any], ...] = (), **kw: Any) -> TargetPipeline:
    return TargetPipeline(source(**kw), url=url, mapping=mapping, resource_attributes=extra)


def attrs(resource: Attributes) -> dict[str, Any]:
    return dict(resource)


def by_name(metrics: tuple[Metric, ...]) -> dict[str, Metric]:
    return {m.name: m for m in metrics}


def test_the_resource_is_the_job_and_the_instance() -> None:
    assert attrs(pipeline().resource) == {
        "service.name": "web", "service.instance.id": "10.0.0.7:9100",
        "server.address": "10.0.0.7", "server.port": 9100, "url.scheme": "http"}


@pytest.mark.parametrize("url,instance", [
    ("https://app.baseten.co/metrics", "app.baseten.co:443"), ("http://example.org/m", "example.org:80"),
    ("http://[::1]:9090/metrics", "[::1]:9090"), ("http://user:pw@h:1/x?y=1", "h:1")])
def test_the_instance_is_host_and_port_as_prometheus_writes_it(url: str, instance: str) -> None:
    assert instance_of(url)[0] == instance
    assert attrs(pipeline(url=url).resource)["service.instance.id"] == instance


@pytest.mark.parametrize("job,want", [
    ("api", {"service.name": "api"}), ("shop/api", {"service.namespace": "shop", "service.name": "api"}),
    ("a/b/c", {"service.namespace": "a", "service.name": "b/c"}), ("/api", {"service.name": "/api"}),
    ("api/", {"service.name": "api/"})])
def test_a_namespace_comes_from_a_job_written_namespace_slash_name(job: str, want: dict[str, str]) -> None:
    assert service_identity(job) == want
    resource = attrs(pipeline(name=job).resource)
    assert {k: v for k, v in resource.items() if k.startswith("service.") and k != "service.instance.id"} == want


def test_service_name_stands_in_for_the_job() -> None:
    assert attrs(pipeline(service_name="checkout").resource)["service.name"] == "checkout"
    resource = attrs(pipeline(service_name="shop/checkout", mapping="baseten").resource)
    assert (resource["service.namespace"], resource["service.name"]) == ("shop", "checkout")
    # A mapping's own default no longer names the service: the source's name does.
    assert attrs(pipeline(mapping="baseten").resource)["service.name"] == "web"
    assert attrs(pipeline(mapping="sambanova").resource)["service.name"] == "web"


def test_target_info_joins_the_resource_but_never_changes_the_identity() -> None:
    p = pipeline(extra=(("deployment.environment.name", "prod"), ("team", "ops")))
    body = ('# TYPE target_info gauge\ntarget_info{team="ml",region="eu",job="x",service_name="app",'
            '"service.name"="stolen","server.address"="app-host"} 1\n# TYPE a gauge\na 1\n')
    r = p.process(body.encode(), "text/plain; version=1.0.0", T1)
    resource = attrs(r.resource)
    assert resource["service.name"] == "web"                      # the identity is the target's
    assert resource["service.instance.id"] == "10.0.0.7:9100"
    assert resource["region"] == "eu" and resource["service_name"] == "app"     # keys as written
    assert resource["exported_job"] == "x"                        # honor_labels false: renamed, as any label
    assert resource["server.address"] == "app-host"               # the target's own words for the rest
    assert resource["team"] == "ops" and resource["deployment.environment.name"] == "prod"   # configured win
    assert "target_info" not in by_name(r.metrics)
    # The markers of a failed scrape carry the Resource of the series they end.
    assert p.failed(0.1, T2).resource == r.resource


def test_a_mapping_cannot_change_the_identity() -> None:
    class Stealing:
        name = "stealing"
        default_service_name = "thief"

        def bind(self, _source: Any) -> Any:
            return self

        def describe(self) -> list[Any]:
            return []

        def map(self, families: list[MetricFamily]) -> MapResult:
            return MapResult((), (("service.name", "thief"), ("service.instance.id", "x"), ("vendor", "v")), 0, {})

    register_mapping("stealing", Stealing())   # type: ignore[arg-type]
    try:
        r = pipeline(mapping="stealing").process(b"a 1\n", TEXT, T1)
    finally:
        unregister_mapping("stealing")
    assert attrs(r.resource)["service.name"] == "web" and attrs(r.resource)["vendor"] == "v"
    assert attrs(r.resource)["service.instance.id"] == "10.0.0.7:9100"


def test_exposed_job_and_instance_are_exported_by_default() -> None:
    body = ('# TYPE a gauge\na{job="batch",instance="h:1"} 1\na{job="b2",exported_job="x"} 2\n'
            '# TYPE c counter\nc_total{job="batch"} 3\n')
    for mapping, name in (("passthrough", "a"), ("sambanova", "a")):
        r = pipeline(mapping=mapping).process(body.encode(), TEXT, T1)
        got = sorted(p.attributes for p in by_name(r.metrics)[name].points)
        assert got == [(("exported_exported_job", "b2"), ("exported_job", "x")),
                       (("exported_instance", "h:1"), ("exported_job", "batch"))]
        assert by_name(r.metrics)["c_total"].points[0].attributes == (("exported_job", "batch"),)
        assert r.exposed == ()


def test_an_override_still_renames_an_exposed_job() -> None:
    body = '# TYPE a gauge\na{job="batch"} 1\n'
    p = pipeline(mapping="baseten", overrides={"a": {"rename_attributes": {"job": "batch.job"}}})
    r = p.process(body.encode(), TEXT, T1)
    assert by_name(r.metrics)["a"].points[0].attributes == (("batch.job", "batch"),)


PUSHED = ('# TYPE target_info gauge\ntarget_info{job="nightly",instance="",env="db"} 1\n'
          '# TYPE backup_seconds gauge\nbackup_seconds{job="nightly",instance=""} 12\n'
          'backup_seconds{job="import",instance="h2:7"} 3\nbackup_seconds{job="web"} 1\nbackup_seconds 0.5\n'
          '# TYPE push_time_seconds gauge\npush_time_seconds{job="nightly",instance=""} 1700000000\n')


def test_honor_labels_gives_each_exposed_identity_its_resource() -> None:
    p = pipeline(url="http://pushgw:9091/metrics", honor_labels=True, extra=(("deployment.environment.name", "p"),))
    r = p.process(PUSHED.encode(), TEXT, T1)
    own = by_name(r.metrics)["backup_seconds"]
    assert sorted(pt.value for pt in own.points) == [0.5, 1.0]        # job="web" is the target's own job
    assert all(pt.attributes == () for pt in own.points)
    exposed = {attrs(res)["service.name"]: (attrs(res), by_name(ms)) for res, ms in r.exposed}
    assert set(exposed) == {"nightly", "import"}
    nightly, metrics = exposed["nightly"]
    assert nightly == {"service.name": "nightly", "service.instance.id": "pushgw:9091", "server.address": "pushgw",
                       "server.port": 9091, "env": "db", "deployment.environment.name": "p"}
    assert metrics["backup_seconds"].points[0].value == 12.0 and metrics["backup_seconds"].points[0].attributes == ()
    assert set(metrics) == {"backup_seconds", "push_time_seconds"}
    imported, _ = exposed["import"]
    assert (imported["service.instance.id"], imported["server.address"], imported["server.port"]) == ("h2:7", "h2", 7)
    batches = p.batches(r, 0.2, T1)
    assert [b.resource for b in batches] == [r.resource] + [res for res, _ in r.exposed]
    assert "up" in by_name(batches[0].metrics) and all("up" not in by_name(b.metrics) for b in batches[1:])
    assert len({b.target for b in batches}) == 3                       # each a target of its own for exporters


def test_honor_labels_markers_follow_their_identity() -> None:
    p = pipeline(url="http://pushgw:9091/metrics", honor_labels=True)
    p.process(PUSHED.encode(), TEXT, T1)
    r = p.process(b"# TYPE backup_seconds gauge\nbackup_seconds 0.5\n", TEXT, T2)     # the pushed groups went away
    stale = {attrs(res)["service.name"]: [pt.no_recorded_value for m in ms for pt in m.points]
             for res, ms in r.exposed}
    assert stale == {"nightly": [True, True], "import": [True]}
    p.process(PUSHED.encode(), TEXT, T2 + 1)
    failed = p.failed_batches(0.1, T2 + 2)
    assert {attrs(b.resource)["service.name"] for b in failed} == {"web", "nightly", "import"}
    nightly = next(b for b in failed if attrs(b.resource)["service.name"] == "nightly")
    assert attrs(nightly.resource)["env"] == "db"                      # the identity's last Resource
    assert all(pt.no_recorded_value for m in nightly.metrics for pt in m.points)


def test_batch_alone_sends_the_targets_own_identity(caplog: pytest.LogCaptureFixture) -> None:
    p = pipeline(url="http://pushgw:9091/metrics", honor_labels=True)
    r: TargetResult = p.process(PUSHED.encode(), TEXT, T1)
    batch: TargetBatch = p.batch(r, 0.1, T1)
    assert batch.resource == r.resource and "only sent by TargetPipeline.batches()" in caplog.text


def test_scope_labels_and_otel_scope_info_make_the_scope() -> None:
    body = ('# TYPE otel_scope_info gauge\notel_scope_info{otel_scope_name="lib",otel_scope_version="2",team="a",'
            'tier="x"} 1\n'
            '# TYPE c counter\nc_total{otel_scope_name="lib",otel_scope_version="2",'
            'otel_scope_schema_url="https://opentelemetry.io/schemas/1.31.0",otel_scope_tier="gold",path="/"} 1\n'
            'c_total{path="/x"} 2\n')
    r = pipeline().process(body.encode(), TEXT, T1)
    scoped = next(m for m in r.metrics if m.scope_name == "lib")
    assert (scoped.name, scoped.scope_version, scoped.scope_schema_url) == ("c_total", "2",
                                                                            "https://opentelemetry.io/schemas/1.31.0")
    assert scoped.scope_attributes == (("team", "a"), ("tier", "gold"))     # the point's own label wins
    assert scoped.points[0].attributes == (("path", "/"),)
    plain = next(m for m in r.metrics if not m.scope_name)
    assert plain.scope_attributes == () and plain.points[0].attributes == (("path", "/x"),)
    assert "otel_scope_info" not in by_name(r.metrics)


def test_target_resource_keeps_its_signature() -> None:
    assert target_resource(None, "svc", (("a", 1),)) == (("a", 1), ("service.name", "svc"))
    assert dict(target_resource("http://h:1/", "svc", ()))["service.instance.id"] == "h:1"


CONFIG = """
sources:
  - name: prod
    mapping: baseten
    url: https://app.baseten.co/metrics
    auth: {{api_key: k1}}
    {first}
  - name: staging
    mapping: baseten
    url: https://app.baseten.co/metrics
    auth: {{api_key: k2}}
    {second}
exporters:
  - name: sidecar
    endpoint: http://127.0.0.1:4317
"""


def _config(tmp_path: Path, first: str = "", second: str = "") -> Any:
    path = tmp_path / "promotel.yaml"
    path.write_text(CONFIG.format(first=first, second=second))
    path.chmod(0o600)
    return load_config(path, env={})


def test_two_sources_never_share_an_identity(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    names = [attrs(TargetPipeline.for_source(s, cfg).resource)["service.name"] for s in cfg.sources]
    assert names == ["prod", "staging"]                          # same host:port, different jobs
    assert identity_problems(cfg) == []
    cfg = _config(tmp_path, "service_name: baseten", "service_name: baseten")
    assert identity_problems(cfg) == [(
        "sources[1]", "source 'staging' would have the same resource identity as source 'prod' (sources[0]): "
        "service.name=baseten, service.instance.id=app.baseten.co:443, so their series could not be told apart; "
        "give one of them another service_name, or remove service.name / service.instance.id from "
        "resource_attributes")]
    for source in cfg.sources:        # either source's pipeline refuses to start
        with pytest.raises(ConfigError, match=r"sources\[1\]: source 'staging' .* as source 'prod'"):
            TargetPipeline.for_source(source, cfg)
    cfg = _config(tmp_path, "service_name: baseten", "resource_attributes: {service.name: baseten}")
    with pytest.raises(ConfigError, match="same resource identity"):
        TargetPipeline.for_source(cfg.sources[1], cfg)
    cfg = _config(tmp_path, "service_name: baseten", "service_name: baseten-staging")
    assert TargetPipeline.for_source(cfg.sources[1], cfg).name == "staging"
