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

The destination is ``self_telemetry.endpoint`` or else the first exporter, resolved exactly as an exporter
is (``promotel.export.presets``): the protocol, plaintext or TLS (``http://`` is plaintext for gRPC as for
HTTP; the SDK would otherwise take the bare ``host:port`` for TLS), CA and client certificate, headers,
compression and timeout all match what the bridge's own sender uses for that endpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from promotel.errors import PromotelError

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricExporter

    from promotel.config import Config
    from promotel.export.presets import ResolvedExporter
    from promotel.service.bridge import Bridge

SELF_TELEMETRY_NAME = "self_telemetry"     # the name an explicit endpoint is resolved under

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
        # Per target and bounded reason (the pipeline's: duplicate_sample, max_series, gaugehistogram, …; see
        # docs/conversion.md "What is left out"), then per exporter and reason.
        out: Readings = []
        for (target, key), n in list(self.bridge.stats.counters.items()):
            if key.startswith("dropped_points."):
                out.append((float(n), {"promotel.target": target, "reason": key.split(".", 1)[1]}))
        for p in self.bridge.pipelines:
            by_reason = p.status().get("dropped", {})
            if isinstance(by_reason, dict):
                for reason, n in by_reason.items():
                    out.append((_num(n), {"promotel.exporter": p.name, "reason": str(reason)}))
        return out

    def shutdown(self) -> None:
        try:
            self.provider.shutdown(timeout_millis=5000)
        except Exception as exc:
            log.warning("Shutting down self-telemetry failed: %s", exc)


def _observations(pairs: Iterable[tuple[float, dict[str, str]]]) -> list[Observation]:
    from opentelemetry.metrics import Observation

    return [Observation(v, a) for v, a in pairs]


def start_self_telemetry(config: Config, bridge: Bridge) -> SelfTelemetry | None:
    """Start the SDK pipeline, or return None when disabled or when there is nowhere to send."""
    st = config.self_telemetry
    if not st.enabled:
        return None
    try:
        destination = _destination(config)
    except PromotelError as exc:
        log.warning("Self-telemetry is off: its destination is unusable: %s", exc)
        return None
    if destination is None:
        return None

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
    from promotel.model import Temporality

    preferred: dict[type, AggregationTemporality] | None = None
    if destination.temporality == Temporality.DELTA:
        preferred = {Counter: AggregationTemporality.DELTA, ObservableCounter: AggregationTemporality.DELTA,
                     Histogram: AggregationTemporality.DELTA, UpDownCounter: AggregationTemporality.CUMULATIVE}
    try:
        exporter = _sdk_exporter(destination, preferred)
    except PromotelError as exc:
        log.warning("Self-telemetry is off: %s", exc)
        return None
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
    log.info("Self-telemetry goes to %s (%s) every %.0f s.", _shown(destination), destination.protocol,
             interval_ms / 1000)
    return tel


def _shown(destination: ResolvedExporter) -> str:
    from promotel.export.presets import safe_url

    if destination.protocol == "grpc":
        return f"{'http' if destination.insecure else 'https'}://{destination.url}"
    return safe_url(destination.url)


def _destination(config: Config) -> ResolvedExporter | None:
    """Where self-telemetry goes: ``self_telemetry.endpoint`` (OTLP, no auth, cumulative), else the first
    exporter with its preset, auth and temporality. Raises ``ConfigError`` for an unusable endpoint."""
    from promotel.config import ExporterConfig
    from promotel.export.presets import resolve_exporter

    endpoint = config.self_telemetry.endpoint
    if endpoint:
        # Resolved like an exporter: a path or port 4318 means OTLP/HTTP, http:// means plaintext.
        return resolve_exporter(ExporterConfig(name=SELF_TELEMETRY_NAME, endpoint=endpoint), env={})
    if not config.exporters:
        return None
    return resolve_exporter(config.exporters[0])


def _sdk_exporter(destination: ResolvedExporter,
                  preferred: dict[type, AggregationTemporality] | None) -> MetricExporter:
    """The SDK's OTLP exporter for ``destination``, connecting exactly as promotel's sender would."""
    tls = destination.tls
    if destination.protocol == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcExporter,
        )

        from promotel.export.grpc_sender import channel_credentials

        # The resolved address is host:port, without the scheme that said plaintext or TLS: give the SDK
        # both the scheme and ``insecure``, or it opens TLS to a plaintext collector and nothing arrives.
        scheme = "http" if destination.insecure else "https"
        credentials = None if destination.insecure else channel_credentials(tls)
        options = None
        if not destination.insecure and tls is not None and tls.server_name:
            options = (("grpc.ssl_target_name_override", tls.server_name),)
        return GrpcExporter(endpoint=f"{scheme}://{destination.url}", insecure=destination.insecure,
                            credentials=credentials, headers=dict(destination.headers),
                            timeout=destination.timeout, channel_options=options,
                            compression=grpc.Compression.Gzip if destination.compression == "gzip"
                            else grpc.Compression.NoCompression,
                            preferred_temporality=preferred)
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpExporter,
    )

    # The resolved URL is the full signal URL (…/v1/metrics), which the SDK posts to as it is.
    return HttpExporter(endpoint=destination.url, headers=dict(destination.headers), timeout=destination.timeout,
                        compression=Compression.Gzip if destination.compression == "gzip"
                        else Compression.NoCompression,
                        certificate_file=tls.ca_file if tls is not None else None,
                        client_key_file=tls.key_file if tls is not None else None,
                        client_certificate_file=tls.cert_file if tls is not None else None,
                        preferred_temporality=preferred)
