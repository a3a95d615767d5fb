"""otel-collector/: every collector config is well formed, uses only real contrib components, and the
rotel sidecar scenario forwards OTLP for real (promotel-shaped request → rotel → a gRPC OTLP sink)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as ms_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from support.collector import agent_path, free_port, wait_port
from support.paths import REPO
from support.processes import terminate
from support.sink import OTLPSink, attrs

COLLECTOR_DIR = REPO / "otel-collector"
COLLECTOR_VERSION = "v0.115.0"
SCENARIOS = ["sidecar-datadog", "sidecar-honeycomb", "sidecar-grafana-cloud", "gateway-loadbalancing"]

# Component types that exist in OpenTelemetry Collector Contrib v0.115.0 (a subset: the ones a
# metrics bridge's configs have reason to use). Written down from the contrib repository's
# receiver/, processor/, exporter/, extension/ and connector/ folders of that release.
KNOWN_TYPES: dict[str, set[str]] = {
    "receivers": {"otlp", "prometheus", "hostmetrics", "k8s_cluster", "kubeletstats", "filelog"},
    "processors": {"batch", "memory_limiter", "cumulativetodelta", "deltatocumulative", "resource",
                   "resourcedetection", "attributes", "filter", "transform", "k8sattributes",
                   "metricstransform", "groupbyattrs", "interval"},
    "exporters": {"otlp", "otlphttp", "datadog", "loadbalancing", "debug", "prometheusremotewrite",
                  "prometheus", "file"},
    "extensions": {"health_check", "basicauth", "bearertokenauth", "headers_setter", "oauth2client",
                   "pprof", "zpages", "file_storage"},
    "connectors": {"forward", "routing", "count", "datadog"},
}
TOP_LEVEL = {"receivers", "processors", "exporters", "extensions", "connectors", "service"}
PIPELINE_KEYS = {"receivers", "processors", "exporters"}


def config_files() -> list[Path]:
    return sorted(COLLECTOR_DIR.glob("*/*.yaml"))


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path}: not a mapping"
    return data


def component_type(component_id: str) -> str:
    """'otlp/honeycomb' → 'otlp' (the collector's type/name component ids)."""
    return component_id.split("/", 1)[0]


def test_every_scenario_is_present() -> None:
    for scenario in SCENARIOS:
        assert (COLLECTOR_DIR / scenario / "config.yaml").is_file(), scenario
        readme = (COLLECTOR_DIR / scenario / "README.md").read_text()
        assert COLLECTOR_VERSION in readme, f"{scenario}/README.md must say which collector version it is for"
    assert (COLLECTOR_DIR / "README.md").is_file()
    assert len(config_files()) >= len(SCENARIOS) + 1  # + the gateway's backend tier


@pytest.mark.parametrize("path", config_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_structure(path: Path) -> None:
    config = load(path)
    assert set(config) <= TOP_LEVEL, f"unknown top-level keys {sorted(set(config) - TOP_LEVEL)}"
    assert COLLECTOR_VERSION in path.read_text().split("\n\n", 1)[0], "header must name the collector version"
    for kind in TOP_LEVEL - {"service"}:
        for component_id in config.get(kind) or {}:
            assert component_type(component_id) in KNOWN_TYPES[kind], f"{kind}: unknown type {component_id!r}"
    service = config["service"]
    for ext in service.get("extensions", []):
        assert ext in (config.get("extensions") or {}), f"service.extensions: {ext!r} is not defined"
    pipelines = service["pipelines"]
    assert pipelines, "no pipelines"
    used: dict[str, set[str]] = {k: set() for k in PIPELINE_KEYS}
    for name, pipeline in pipelines.items():
        assert component_type(name) in {"metrics", "traces", "logs"}, name
        assert set(pipeline) <= PIPELINE_KEYS, name
        assert pipeline["receivers"] and pipeline["exporters"], f"{name}: needs receivers and exporters"
        for kind in PIPELINE_KEYS:
            for component_id in pipeline.get(kind, []):
                defined = config.get(kind) or {}
                assert component_id in defined, f"pipeline {name}: {kind} {component_id!r} is not defined"
                used[kind].add(component_id)
        processors = pipeline.get("processors", [])
        if "memory_limiter" in processors:
            assert processors[0] == "memory_limiter", "memory_limiter must be the first processor"
        if "batch" in processors:
            assert processors[-1] == "batch", "batch belongs at the end of the processors"
    for kind in PIPELINE_KEYS:
        unused = set(config.get(kind) or {}) - used[kind]
        assert not unused, f"{kind} defined but not used in any pipeline: {sorted(unused)}"
    # auth extensions referenced by exporters exist and are started
    for component_id, settings in (config.get("exporters") or {}).items():
        auth = (settings or {}).get("auth", {}).get("authenticator")
        if auth:
            assert auth in config["extensions"] and auth in service["extensions"], component_id


@pytest.mark.parametrize("path", config_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_secrets_and_settings_come_from_env(path: Path) -> None:
    text = path.read_text()
    # ${env:NAME} is the collector's environment provider; bare ${NAME} is deprecated.
    for ref in re.findall(r"\$\{([^}]*)\}", text):
        assert re.fullmatch(r"env:[A-Z_][A-Z0-9_]*", ref), f"use ${{env:NAME}}, not ${{{ref}}}"
    assert not re.search(r"(key|password|token)\s*:\s*['\"]?[A-Za-z0-9]{16,}", text), "literal secret?"


def test_backend_specific_settings() -> None:
    dd = load(COLLECTOR_DIR / "sidecar-datadog" / "config.yaml")
    assert dd["exporters"]["datadog"]["api"] == {"key": "${env:DD_API_KEY}", "site": "${env:DD_SITE}"}
    assert "cumulativetodelta" in dd["service"]["pipelines"]["metrics"]["processors"]

    hc = load(COLLECTOR_DIR / "sidecar-honeycomb" / "config.yaml")["exporters"]["otlp/honeycomb"]
    assert hc["endpoint"] == "api.honeycomb.io:443"
    assert set(hc["headers"]) == {"x-honeycomb-team", "x-honeycomb-dataset"}

    gc = load(COLLECTOR_DIR / "sidecar-grafana-cloud" / "config.yaml")
    exporter = gc["exporters"]["otlphttp/grafana_cloud"]
    assert exporter["endpoint"].endswith(".grafana.net/otlp")   # otlphttp appends /v1/metrics
    assert exporter["auth"]["authenticator"] == "basicauth/grafana_cloud"
    assert set(gc["extensions"]["basicauth/grafana_cloud"]["client_auth"]) == {"username", "password"}
    # Grafana Cloud refuses delta: nothing may convert to it on the way
    assert "cumulativetodelta" not in gc["service"]["pipelines"]["metrics"].get("processors", [])

    lb = load(COLLECTOR_DIR / "gateway-loadbalancing" / "config.yaml")["exporters"]["loadbalancing"]
    assert lb["routing_key"] == "streamID"
    assert list(lb["resolver"]) == ["dns"] and lb["resolver"]["dns"]["port"] == 4317
    assert "endpoint" not in lb["protocol"]["otlp"]   # the resolver supplies the endpoints


def read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path}: not a VAR=value line: {line!r}"
            env[key] = value
    return env


def gauge_request(value: float, time_ns: int) -> ms.ExportMetricsServiceRequest:
    """A request shaped like one promotel scrape: a target resource and one gauge."""
    def kv(key: str, val: str) -> common_pb2.KeyValue:
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=val))

    point = metrics_pb2.NumberDataPoint(time_unix_nano=time_ns, as_double=value,
                                        attributes=[kv("model.id", "abc123")])
    metric = metrics_pb2.Metric(name="baseten.replicas.active", unit="{replica}",
                                gauge=metrics_pb2.Gauge(data_points=[point]))
    return ms.ExportMetricsServiceRequest(resource_metrics=[metrics_pb2.ResourceMetrics(
        resource=resource_pb2.Resource(attributes=[kv("service.name", "baseten"),
                                                   kv("server.address", "app.baseten.co")]),
        scope_metrics=[metrics_pb2.ScopeMetrics(scope=common_pb2.InstrumentationScope(name="promotel"),
                                                metrics=[metric])],
    )])


def test_rotel_sidecar_scenario_forwards_for_real(tmp_path: Path) -> None:
    """rotel started with the scenario's own env file (only the addresses moved to loopback ports)."""
    env_file = read_env_file(COLLECTOR_DIR / "sidecar-rotel" / "rotel.env")
    assert env_file["ROTEL_EXPORTER"] == "otlp"
    sink = OTLPSink().start()
    grpc_port, http_port = free_port(), free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ROTEL_")}, **env_file,
           "ROTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc_port}",
           "ROTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http_port}",
           "ROTEL_OTLP_EXPORTER_ENDPOINT": f"http://127.0.0.1:{sink.grpc_port}",
           "ROTEL_METRICS_BATCH_TIMEOUT": "100ms"}
    with open(tmp_path / "rotel.out", "wb") as out:
        proc = subprocess.Popen([agent_path(), "start", "--pid-file", str(tmp_path / "rotel.pid"),
                                 "--log-file", str(tmp_path / "rotel.log")],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_port(grpc_port, timeout=10)
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                stub = ms_grpc.MetricsServiceStub(channel)
                stub.Export(gauge_request(3.0, 1_700_000_000_000_000_000), timeout=5)
            assert sink.wait_for(lambda s: "baseten.replicas.active" in s.metric_names(), timeout=10), \
                (tmp_path / "rotel.out").read_text(errors="replace")
        finally:
            terminate(proc, 5)
            sink.stop()
    (resource, metric), = list(sink.metrics())
    assert resource == {"service.name": "baseten", "server.address": "app.baseten.co"}
    point, = metric.gauge.data_points
    assert (point.as_double, point.time_unix_nano) == (3.0, 1_700_000_000_000_000_000)
    assert attrs(point.attributes) == {"model.id": "abc123"}
    assert metric.unit == "{replica}"
    # the headers the scenario configures for Honeycomb reached the far end
    headers = sink.headers[0]
    assert headers.get("x-honeycomb-team") == "replace-with-your-ingest-key"
    assert headers.get("x-honeycomb-dataset") == "promotel"
