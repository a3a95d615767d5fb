"""The bridge's own telemetry, through the OpenTelemetry SDK (``self_telemetry`` in the config).

A ``MeterProvider`` with the official OTLP exporter (gRPC or HTTP, like the exporter it follows)
sends these instruments every ``self_telemetry.interval``. They are observable instruments that
read the bridge's counters, so the hot path pays nothing for them. Attribute values are bounded:
target and exporter names come from the config, error kinds from a short fixed vocabulary.

    promotel.scrapes              Counter        {scrape}    per target
    promotel.scrape.errors        Counter        {error}     per target, error.type
    promotel.scrape.samples       Counter        {sample}    per target
    promotel.series               UpDownCounter  {series}    per target (live series in the store)
    promotel.export.requests      Counter        {request}   per exporter
    promotel.export.points        Counter        {point}     per exporter
    promotel.export.failures      Counter        {request}   per exporter, error.type
    promotel.export.retries       Counter        {retry}     per exporter
    promotel.export.queue.size    UpDownCounter  {batch}     per exporter
    promotel.export.spool.size    UpDownCounter  By          per exporter
    promotel.dropped.points       Counter        {point}     per target or exporter, reason
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricExporter

    from promotel.config import Config
    from promotel.service.bridge import Bridge

# (value, attributes) pairs read from the bridge for one instrument.
Readings = list[tuple[float, dict[str, str]]]

log = logging.getLogger("promotel.service.selftelemetry")


def _num(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0


class SelfTelemetry:
    def __init__(self, provider: MeterProvider, bridge: Bridge) -> None:
        self.provider = provider
        self.bridge = bridge

    def attach(self, bridge: Bridge) -> None:
        self.bridge = bridge

    # ── readers: each returns (value, attributes) pairs from the current bridge ──
    def target_counter(self, what: str) -> Readings:
        out = []
        for (target, key), n in list(self.bridge.stats.counters.items()):
            if key == what:
                out.append((float(n), {"promotel.target": target}))
        return out

    def scrape_errors(self) -> Readings:
        out = []
        for (target, key), n in list(self.bridge.stats.counters.items()):
            if key.startswith("scrape_errors."):
                out.append((float(n), {"promotel.target": target, "error.type": key.split(".", 1)[1]}))
        return out

    def series(self) -> Readings:
        return [(float(st.series), {"promotel.target": t}) for t, st in list(self.bridge.stats.targets.items())]

    def exporter_value(self, key: str) -> Readings:
        out = []
        for p in self.bridge.pipelines:
            status = p.status()
            out.append((_num(status.get(key, 0)), {"promotel.exporter": p.name}))
        return out

    def exporter_by_kind(self, key: str) -> Readings:
        out = []
        for p in self.bridge.pipelines:
            by_kind = p.status().get(key, {})
            if isinstance(by_kind, dict):
                for kind, n in by_kind.items():
                    out.append((_num(n), {"promotel.exporter": p.name, "error.type": str(kind)}))
        return out

    def dropped(self) -> Readings:
        out = [(v, {**a, "reason": "mapping_or_cap"}) for v, a in self.target_counter("dropped_points")]
        for p in self.bridge.pipelines:
            by_reason = p.status().get("dropped", {})
            if isinstance(by_reason, dict):
                for reason, n in by_reason.items():
                    out.append((_num(n), {"promotel.exporter": p.name, "reason": str(reason)}))
        return out

    def shutdown(self) -> None:
        try:
            self.provider.shutdown(timeout_millis=5000)
        except Exception as exc:  # noqa: BLE001 - shutdown must not mask the real exit reason
            log.warning("Shutting down self-telemetry failed: %s", exc)


def _observations(pairs: Iterable[tuple[float, dict[str, str]]]) -> list[Observation]:
    from opentelemetry.metrics import Observation

    return [Observation(v, a) for v, a in pairs]


def start_self_telemetry(config: Config, bridge: Bridge) -> SelfTelemetry | None:
    """Start the SDK pipeline, or return None when disabled or when there is nowhere to send."""
    st = config.self_telemetry
    if not st.enabled:
        return None
    target = _destination(config)
    if target is None:
        return None
    url, protocol, headers, delta = target

    from opentelemetry.sdk.metrics import (
        Counter,
        Histogram,
        MeterProvider,
        ObservableCounter,
        UpDownCounter,
    )
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.resources import Resource

    from promotel import __version__

    preferred: dict[type, AggregationTemporality] | None = None
    if delta:
        preferred = {Counter: AggregationTemporality.DELTA, ObservableCounter: AggregationTemporality.DELTA,
                     Histogram: AggregationTemporality.DELTA, UpDownCounter: AggregationTemporality.CUMULATIVE}
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcExporter,
        )

        exporter: MetricExporter = GrpcExporter(endpoint=url, headers=headers, insecure=url.startswith("http://"),
                                     preferred_temporality=preferred)
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpExporter,
        )

        exporter = HttpExporter(endpoint=url, headers=headers, preferred_temporality=preferred)
    interval_ms = int(st.interval * 1000)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms)
    resource = Resource.create({"service.name": "promotel", "service.version": __version__})
    provider = MeterProvider(metric_readers=[reader], resource=resource)
    tel = SelfTelemetry(provider, bridge)
    meter = provider.get_meter("promotel", __version__)

    def cb(fn: Callable[[], Readings]) -> list[Callable[[CallbackOptions], Iterable[Observation]]]:
        return [lambda _options: _observations(fn())]

    meter.create_observable_counter("promotel.scrapes", cb(lambda: tel.target_counter("scrapes")), "{scrape}",
                                    "Scrapes attempted, per target.")
    meter.create_observable_counter("promotel.scrape.errors", cb(tel.scrape_errors), "{error}",
                                    "Failed scrapes, per target and error kind.")
    meter.create_observable_counter("promotel.scrape.samples", cb(lambda: tel.target_counter("samples")),
                                    "{sample}", "Samples parsed, per target.")
    meter.create_observable_up_down_counter("promotel.series", cb(tel.series), "{series}",
                                            "Live series tracked per target.")
    meter.create_observable_counter("promotel.export.requests", cb(lambda: tel.exporter_value("sent_requests")),
                                    "{request}", "Requests delivered, per exporter.")
    meter.create_observable_counter("promotel.export.points", cb(lambda: tel.exporter_value("sent_points")),
                                    "{point}", "Points delivered, per exporter.")
    meter.create_observable_counter("promotel.export.failures", cb(lambda: tel.exporter_by_kind("failed_requests")),
                                    "{request}", "Failed send attempts, per exporter and error kind.")
    meter.create_observable_counter("promotel.export.retries", cb(lambda: tel.exporter_value("retries")),
                                    "{retry}", "Send retries, per exporter.")
    meter.create_observable_up_down_counter("promotel.export.queue.size",
                                            cb(lambda: tel.exporter_value("queue_length")), "{batch}",
                                            "Batches waiting in memory, per exporter.")
    meter.create_observable_up_down_counter("promotel.export.spool.size",
                                            cb(lambda: tel.exporter_value("spool_bytes")), "By",
                                            "Bytes waiting in the on-disk spool, per exporter.")
    meter.create_observable_counter("promotel.dropped.points", cb(tel.dropped), "{point}",
                                    "Points dropped, per reason.")
    log.info("Self-telemetry goes to %s every %.0f s.", url.split("?")[0], interval_ms / 1000)
    return tel


def _destination(config: Config) -> tuple[str, str, dict[str, str], bool] | None:
    """Where self-telemetry goes: ``self_telemetry.endpoint``, else the first exporter (with its auth)."""
    endpoint = config.self_telemetry.endpoint
    if endpoint:
        protocol = "http/protobuf" if endpoint.rstrip("/").endswith("/v1/metrics") else "grpc"
        return endpoint, protocol, {}, False
    exporters = config.exporters
    if not exporters:
        return None
    from promotel.export.presets import resolve_exporter
    from promotel.model import Temporality

    resolved = resolve_exporter(exporters[0])
    return (resolved.url, resolved.protocol, dict(resolved.headers),
            resolved.temporality == Temporality.DELTA)
