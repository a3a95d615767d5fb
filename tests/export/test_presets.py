"""Backend presets: what each resolves to, what each refuses, and delivery to fakes of the real intakes."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest

from promotel.config import ExporterConfig, RetryConfig, SpoolConfig, load_config_text
from promotel.errors import ConfigError
from promotel.export import build_pipelines
from promotel.export.pipeline import ExporterPipeline
from promotel.export.presets import preset_problems, resolve_exporter
from promotel.model import TargetBatch, Temporality
from support.exporting import deliver
from support.fake_intakes import (
    CUMULATIVE,
    DELTA,
    HttpReceiver,
    IntakeLog,
    datadog_intake,
    exporter_config,
    grafana_intake,
    honeycomb_intake,
    make_batch,
    newrelic_intake,
    request_points,
)


def resolve(**kw: Any) -> Any:
    return resolve_exporter(exporter_config(**kw), env={})


def problems(**kw: Any) -> dict[str, str]:
    return dict(preset_problems(exporter_config(**kw), 2))


# ─── resolution ──────────────────────────────────────────────────────────────────────────────

def test_otlp_defaults_grpc_to_the_local_collector() -> None:
    r = resolve()
    assert (r.protocol, r.url, r.insecure) == ("grpc", "127.0.0.1:4317", True)
    assert r.temporality is Temporality.CUMULATIVE
    assert r.max_request_bytes == 4 * 1024 * 1024 and r.summaries == "keep" and r.max_attributes is None
    assert r.compression == "none"


def test_otlp_http_endpoint_gets_the_default_path() -> None:
    assert resolve(protocol="http/protobuf").url == "http://127.0.0.1:4318/v1/metrics"
    assert resolve(endpoint="https://collector.example:4318", protocol="http/protobuf").url == \
        "https://collector.example:4318/v1/metrics"
    assert resolve(endpoint="https://collector.example/custom").url == "https://collector.example/custom"
    # Without protocol, port 4318 or a /v1/metrics path means OTLP/HTTP.
    assert resolve(endpoint="http://c:4318").protocol == "http/protobuf"
    assert resolve(endpoint="http://c:4317").protocol == "grpc"


def test_grpc_endpoint_forms() -> None:
    assert (resolve(endpoint="https://c.example").url, resolve(endpoint="https://c.example").insecure) == \
        ("c.example:443", False)
    # host:port without a scheme is TLS unless insecure: true (the OTLP exporter rule).
    assert resolve(endpoint="c.example:4317", protocol="grpc").insecure is False
    assert resolve(endpoint="c.example:4317", protocol="grpc", insecure=True).insecure is True
    assert problems(endpoint="http://c:4317/v1/metrics", protocol="grpc") == {
        "exporters[2].endpoint": "'http://c:4317/v1/metrics': a gRPC endpoint has no path (the OTLP/gRPC "
                                 "service name is fixed); for OTLP/HTTP set protocol: http/protobuf."}


def test_otlp_temporality_preference_from_environment() -> None:
    cfg = exporter_config()
    env = {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "Delta"}
    assert resolve_exporter(cfg, env=env).temporality is Temporality.DELTA
    env = {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "lowmemory"}
    assert resolve_exporter(cfg, env=env).temporality is Temporality.DELTA
    assert resolve_exporter(exporter_config(temporality="cumulative"), env=env).temporality is Temporality.CUMULATIVE


def test_datadog() -> None:
    r = resolve(preset="datadog", api_key="dd-key-123", site="datadoghq.eu")
    assert r.url == "https://otlp.datadoghq.eu/v1/metrics" and r.protocol == "http/protobuf"
    assert r.headers["dd-api-key"] == "dd-key-123"
    assert r.temporality is Temporality.DELTA
    assert (r.max_request_bytes, r.summaries, r.compression) == (500_000, "convert", "gzip")
    assert resolve(preset="datadog", api_key="k").url == "https://otlp.datadoghq.com/v1/metrics"


def test_datadog_refusals_are_all_reported_at_once() -> None:
    found = problems(preset="datadog", site="datadoghq.org", protocol="grpc", temporality="cumulative",
                     summaries="keep", max_request_bytes=600_000)
    assert set(found) == {"exporters[2].site", "exporters[2].protocol", "exporters[2].api_key",
                          "exporters[2].temporality", "exporters[2].summaries", "exporters[2].max_request_bytes"}
    assert "ap1.datadoghq.com" in found["exporters[2].site"]          # the valid choices are listed
    assert "OTLP/HTTP protobuf only" in found["exporters[2].protocol"]


def test_honeycomb() -> None:
    r = resolve(preset="honeycomb", api_key="hc-key", dataset="metrics", region="eu")
    assert r.url == "https://api.eu1.honeycomb.io/v1/metrics"
    assert r.headers["x-honeycomb-team"] == "hc-key" and r.headers["x-honeycomb-dataset"] == "metrics"
    assert r.temporality is Temporality.CUMULATIVE
    assert r.max_request_bytes == 8 * 1024 * 1024          # one scrape stays one request
    g = resolve(preset="honeycomb", api_key="k", dataset="m", protocol="grpc")
    assert (g.url, g.insecure) == ("api.honeycomb.io:443", False)


def test_honeycomb_requires_key_and_dataset() -> None:
    found = problems(preset="honeycomb")
    assert set(found) == {"exporters[2].api_key", "exporters[2].dataset"}
    assert "unknown_metrics" in found["exporters[2].dataset"]


def test_grafana_cloud() -> None:
    r = resolve(preset="grafana-cloud", zone="prod-us-east-0", instance_id="123456", token="glc_secret")
    assert r.url == "https://otlp-gateway-prod-us-east-0.grafana.net/otlp/v1/metrics"
    scheme, encoded = r.headers["authorization"].split(" ")
    assert scheme == "Basic" and base64.b64decode(encoded) == b"123456:glc_secret"
    assert (r.protocol, r.compression, r.temporality) == ("http/protobuf", "gzip", Temporality.CUMULATIVE)
    assert r.summaries == "keep"


def test_grafana_cloud_refuses_delta_and_needs_credentials() -> None:
    found = problems(preset="grafana-cloud", temporality="delta")
    assert set(found) == {"exporters[2].zone", "exporters[2].instance_id", "exporters[2].token",
                          "exporters[2].temporality"}
    assert found["exporters[2].temporality"].startswith(
        "Grafana Cloud refuses delta sums and histograms (HTTP 400")


def test_newrelic() -> None:
    r = resolve(preset="newrelic", api_key="nr-key")
    assert r.url == "https://otlp.nr-data.net:4318/v1/metrics" and r.headers["api-key"] == "nr-key"
    assert (r.temporality, r.max_request_bytes, r.summaries, r.max_attributes) == \
        (Temporality.DELTA, 1_000_000, "convert", 100)
    assert resolve(preset="newrelic", api_key="k", region="eu").url == "https://otlp.eu01.nr-data.net:4318/v1/metrics"
    f = resolve(preset="newrelic", api_key="k", region="fedramp", protocol="grpc")
    assert f.url == "gov-otlp.nr-data.net:4317"
    assert set(problems(preset="newrelic")) == {"exporters[2].api_key"}


def test_explicit_settings_win_over_the_preset() -> None:
    r = resolve(preset="newrelic", api_key="k", endpoint="http://127.0.0.1:9/v1/metrics", compression="none",
                max_request_bytes=50_000, max_attributes=20, summaries="drop", headers={"API-Key": "override"},
                temporality="cumulative", timeout=3.0, queue_size=7)
    assert r.url == "http://127.0.0.1:9/v1/metrics"
    assert (r.compression, r.max_request_bytes, r.max_attributes, r.summaries) == ("none", 50_000, 20, "drop")
    assert r.headers["api-key"] == "override"
    assert (r.temporality, r.timeout, r.queue_size) == (Temporality.CUMULATIVE, 3.0, 7)


def test_resolve_raises_config_error_with_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_exporter(exporter_config(preset="honeycomb"), env={}, index=0)
    assert [p for p, _ in info.value.problems] == ["exporters[0].api_key", "exporters[0].dataset"]


def test_grpc_cannot_skip_verification() -> None:
    found = problems(endpoint="https://c:4317", protocol="grpc", tls={"insecure_skip_verify": True})
    assert set(found) == {"exporters[2].tls.insecure_skip_verify"}


def test_a_config_without_retry_and_spool_sections_gets_the_models_defaults_at_the_pipeline(
        tmp_path: Path) -> None:
    cfg = load_config_text(f"""
        state_dir: {tmp_path}
        sources: [{{name: s, url: "http://127.0.0.1:1/metrics"}}]
        exporters: [{{name: e, endpoint: "http://127.0.0.1:1/v1/metrics"}}]
    """, env={})
    (p,) = build_pipelines(cfg)
    try:
        retry, spool = RetryConfig(), SpoolConfig()
        assert (p.initial_interval, p.max_interval, p.max_elapsed) == \
            (retry.initial_interval, retry.max_interval, retry.max_elapsed) == (1.0, 30.0, 300.0)
        assert p.queue_size == ExporterConfig.model_fields["queue_size"].default == 64
        assert p.store is not None and p.store.max_bytes == spool.max_bytes == 256 * 1024 * 1024
        assert p.durable                                 # a state_dir and the spool enabled: the write-ahead queue
    finally:
        asyncio.run(p.aclose())


# ─── delivery to fakes of the real intakes ───────────────────────────────────────────────────

def preset_pipeline(tmp_path: Path, **kw: Any) -> ExporterPipeline:
    resolved = resolve_exporter(exporter_config(name=kw.get("preset", "x"), **kw), env={})
    return ExporterPipeline(resolved, state_dir=str(tmp_path / "state"))


def two_scrapes(**kw: Any) -> list[TargetBatch]:
    """Two successive scrapes (a delta backend sees the second as increases over the first)."""
    t0 = 1_700_000_000_000_000_000
    return [make_batch(value=1.0, scrape_ns=t0, **kw), make_batch(value=3.0, scrape_ns=t0 + 15 * 10**9, **kw)]


def run(p: ExporterPipeline, batches: list[TargetBatch]) -> bool:
    return asyncio.run(deliver(p, *batches, timeout=15))


def kinds(rx: HttpReceiver) -> dict[str, set[int]]:
    """Data kind → the temporalities seen (0 for gauges)."""
    out: dict[str, set[int]] = {}
    for r in rx.requests:
        for rm in r.message.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    out.setdefault(kind, set()).add(getattr(getattr(m, kind), "aggregation_temporality", 0))
    return out


def test_datadog_intake_accepts_what_the_preset_sends(tmp_path: Path) -> None:
    log = IntakeLog()
    with datadog_intake("dd-key", log) as rx:
        p = preset_pipeline(tmp_path, preset="datadog", api_key="dd-key", endpoint=rx.url + "/v1/metrics")
        assert run(p, two_scrapes(counters=2500, attrs=3, pad="p" * 30, histogram=True, summary=True, gauge=True))
    assert log.refusals == []
    assert len(rx.requests) >= 2                                   # the big scrape was split under 500 KB
    assert all(len(r.body) <= 500_000 and r.headers["content-encoding"] == "gzip" for r in rx.requests)
    seen = kinds(rx)
    assert seen["sum"] == {DELTA} and seen["histogram"] == {DELTA}
    assert "summary" not in seen
    assert p.status()["dropped"] == {}


def test_datadog_intake_refuses_a_wrong_key_and_the_pipeline_drops_once(tmp_path: Path) -> None:
    log = IntakeLog()
    # Keys are registered as secrets process-wide: a common word as a key would be masked in other tests' output.
    with datadog_intake("dd-right-key-7301", log) as rx:
        p = preset_pipeline(tmp_path, preset="datadog", api_key="dd-wrong-key-7301", endpoint=rx.url + "/v1/metrics")
        assert run(p, two_scrapes())
    assert log.refusals and log.refusals[0].startswith("403")
    st = p.status()
    assert "http_403" in st["failed_requests"]           # type: ignore[operator]
    assert st["retries"] == 0


def test_grafana_intake_accepts_what_the_preset_sends(tmp_path: Path) -> None:
    log = IntakeLog()
    with grafana_intake("123456", "glc_tok", log) as rx:
        p = preset_pipeline(tmp_path, preset="grafana-cloud", instance_id="123456", token="glc_tok",
                            endpoint=rx.url + "/otlp/v1/metrics")
        assert run(p, two_scrapes(histogram=True, summary=True))
    assert log.refusals == []
    seen = kinds(rx)
    assert seen["sum"] == {CUMULATIVE} and seen["histogram"] == {CUMULATIVE}
    assert "summary" in seen                              # Grafana keeps summaries
    assert len(rx.requests) == 2


def test_grafana_intake_refuses_the_wrong_path() -> None:
    # The classic pitfall: the gateway's path has the /otlp prefix. The fake answers 404 like the real one.
    log = IntakeLog()
    with grafana_intake("1", "t", log) as rx, pytest.raises(ConfigError):
        resolve_exporter(exporter_config(preset="grafana-cloud", instance_id="1", token="t", temporality="delta",
                                         endpoint=rx.url), env={})
    log2 = IntakeLog()
    with grafana_intake("1", "t", log2) as rx:
        p = ExporterPipeline(resolve_exporter(exporter_config(name="g", preset="grafana-cloud", instance_id="1",
                                                              token="t", endpoint=rx.url), env={}))
        assert run(p, [make_batch()])
    assert log2.refusals and log2.refusals[0].startswith("404")
    assert p.status()["dropped"] == {"permanent_error": 1}


def test_newrelic_intake_accepts_what_the_preset_sends(tmp_path: Path) -> None:
    log = IntakeLog()
    with newrelic_intake("nr-key", log) as rx:
        p = preset_pipeline(tmp_path, preset="newrelic", api_key="nr-key", endpoint=rx.url + "/v1/metrics")
        assert run(p, two_scrapes(counters=5000, attrs=150, histogram=True, summary=True))
    assert log.refusals == []
    assert len(rx.requests) >= 2 and all(len(r.body) <= 1_000_000 for r in rx.requests)
    assert all(len(pt.attributes) <= 100 for r in rx.requests for _, _, pt in request_points(r.message))
    seen = kinds(rx)
    assert seen["sum"] == {DELTA} and "summary" not in seen


def test_honeycomb_intake_accepts_what_the_preset_sends(tmp_path: Path) -> None:
    log = IntakeLog()
    with honeycomb_intake("hc-key", "prod-metrics", log) as rx:
        p = preset_pipeline(tmp_path, preset="honeycomb", api_key="hc-key", dataset="prod-metrics",
                            endpoint=rx.url + "/v1/metrics")
        batches = two_scrapes(counters=200, histogram=True, gauge=True)
        assert run(p, batches)
    assert log.refusals == []
    # One scrape → one request, and every point of it carries the scrape's timestamp.
    assert len(rx.requests) == 2
    for r, batch in zip(rx.requests, batches):
        assert {pt.time_unix_nano for _, _, pt in request_points(r.message)} == {batch.scrape_time_ns}
