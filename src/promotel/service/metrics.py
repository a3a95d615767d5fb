"""``GET /metrics`` on the health listener: the bridge's own state in the Prometheus text format
(version 0.0.4, what ``promotel lint`` and every Prometheus-compatible scraper accept).

Rendered from the same snapshot as ``/status`` (``Bridge.status()``), so both always agree. Naming
follows the Prometheus conventions: a ``promotel_`` prefix, base units in the name (``_seconds``,
``_bytes``), counters end in ``_total``, every family has HELP and TYPE. Label values are bounded: source
and exporter names come from the config (or discovery), ``kind`` and ``reason`` from fixed sets in the
code (scrape error kinds, export failure kinds, drop reasons), ``state`` from the four exporter states.

    promotel_source_up{source}                          gauge    1 last scrape succeeded, 0 failed
    promotel_source_scrape_duration_seconds{source}     gauge    of the last scrape
    promotel_source_scrape_samples{source}              gauge    samples in the last scrape
    promotel_source_series{source}                      gauge    series the bridge tracks for the source
    promotel_source_last_scrape_timestamp_seconds       gauge
    promotel_source_scrapes_total / _samples_total      counter
    promotel_source_scrape_errors_total{source,kind}    counter
    promotel_exporter_ready{exporter}                   gauge
    promotel_exporter_state{exporter,state}             gauge    1 for the current state, 0 for the others
    promotel_exporter_queue_length / _capacity          gauge    batches in memory / the queue's size
    promotel_exporter_persisted_requests / _bytes       gauge    in the write-ahead queue on disk
    promotel_exporter_sent_requests_total / _points     counter
    promotel_exporter_failed_requests_total{kind}       counter
    promotel_exporter_retries_total                     counter
    promotel_exporter_dropped_points_total{reason}      counter
    promotel_exporter_last_success_timestamp_seconds    gauge    absent before the first success
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The states ``ExporterPipeline.status()`` reports; all are exposed so a state change is a value change.
EXPORTER_STATES = ("ok", "replaying spool", "down, spooling", "failing, dropping")
# The drop reasons of ``ExporterPipeline``, exposed at 0 from the start so that ``rate()`` and alerts on
# them have a series before the first drop (a reason not listed here still appears once it happens).
DROP_REASONS = ("encode_error", "permanent_error", "queue_full", "retries_exhausted", "shutdown", "spool_full",
                "too_large")

Labels = tuple[tuple[str, str], ...]


@dataclass
class _Family:
    name: str
    kind: str          # "gauge" or "counter"
    help: str
    samples: list[tuple[Labels, float]] = field(default_factory=list)


def _escape(value: str) -> str:
    # Text format 0.0.4: label values escape backslash, double quote and line feed.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _num(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _items(value: object) -> Iterable[tuple[str, object]]:
    return sorted(value.items()) if isinstance(value, Mapping) else ()


def _families(status: Mapping[str, object]) -> list[_Family]:
    fams: dict[str, _Family] = {}

    def add(name: str, kind: str, help_: str, labels: Labels, value: object) -> None:
        fam = fams.setdefault(name, _Family(name, kind, help_))
        number = _num(value)
        if number is not None:
            fam.samples.append((labels, number))

    add("promotel_start_time_seconds", "gauge", "Unix time the bridge started.", (), status.get("started"))
    for name, t in _items(status.get("targets")):
        if not isinstance(t, Mapping):
            continue
        lab: Labels = (("source", name),)
        add("promotel_source_up", "gauge", "1 when the last scrape of the source succeeded, 0 when it failed.",
            lab, t.get("up"))
        add("promotel_source_scrape_duration_seconds", "gauge",
            "Duration of the last scrape, parse, map and convert of the source.", lab, t.get("duration_s"))
        add("promotel_source_scrape_samples", "gauge", "Samples in the last scrape of the source.",
            lab, t.get("samples"))
        add("promotel_source_series", "gauge", "Series the bridge tracks for the source.", lab, t.get("series"))
        add("promotel_source_last_scrape_timestamp_seconds", "gauge", "Unix time the last scrape ended.",
            lab, t.get("last_scrape"))
        add("promotel_source_interval_seconds", "gauge", "Configured scrape interval of the source.",
            lab, t.get("interval_s"))
        add("promotel_source_scrapes_total", "counter", "Scrapes of the source since start.",
            lab, t.get("scrapes_total", 0))
        add("promotel_source_samples_total", "counter", "Samples scraped from the source since start.",
            lab, t.get("samples_total", 0))
        fams.setdefault("promotel_source_scrape_errors_total",
                        _Family("promotel_source_scrape_errors_total", "counter",
                                "Failed scrapes of the source since start, by kind of failure."))
        for kind, n in _items(t.get("scrape_errors")):
            add("promotel_source_scrape_errors_total", "counter", "", (*lab, ("kind", kind)), n)
    for name, e in _items(status.get("exporters")):
        if not isinstance(e, Mapping):
            continue
        lab = (("exporter", name),)
        add("promotel_exporter_ready", "gauge",
            "1 when the exporter is ready (no drop and no persistent failure within health.unready_after).",
            lab, e.get("ready"))
        for state in EXPORTER_STATES:
            add("promotel_exporter_state", "gauge", "1 for the exporter's current state, 0 for the others.",
                (*lab, ("state", state)), int(e.get("state") == state))
        add("promotel_exporter_queue_length", "gauge", "Batches waiting in the exporter's queue in memory.",
            lab, e.get("queue_length"))
        add("promotel_exporter_queue_capacity", "gauge", "Batches the exporter's queue in memory holds at most.",
            lab, e.get("queue_size"))
        add("promotel_exporter_persisted_requests", "gauge",
            "Requests in the exporter's write-ahead queue on disk (0 without a state_dir).",
            lab, e.get("persisted_requests"))
        add("promotel_exporter_persisted_bytes", "gauge",
            "Bytes of the requests in the exporter's write-ahead queue on disk.", lab, e.get("persisted_bytes"))
        add("promotel_exporter_sent_requests_total", "counter", "OTLP requests the backend accepted.",
            lab, e.get("sent_requests", 0))
        add("promotel_exporter_sent_points_total", "counter", "Data points in the requests the backend accepted.",
            lab, e.get("sent_points", 0))
        add("promotel_exporter_retries_total", "counter", "Retried OTLP requests.", lab, e.get("retries", 0))
        fams.setdefault("promotel_exporter_failed_requests_total",
                        _Family("promotel_exporter_failed_requests_total", "counter",
                                "Failed OTLP request attempts, by kind of failure."))
        for kind, n in _items(e.get("failed_requests")):
            add("promotel_exporter_failed_requests_total", "counter", "", (*lab, ("kind", kind)), n)
        fams.setdefault("promotel_exporter_dropped_points_total",
                        _Family("promotel_exporter_dropped_points_total", "counter",
                                "Data points dropped without delivery, by reason."))
        dropped = dict(e.get("dropped") or {}) if isinstance(e.get("dropped"), Mapping) else {}
        for reason, n in sorted({**dict.fromkeys(DROP_REASONS, 0), **dropped}.items()):
            add("promotel_exporter_dropped_points_total", "counter", "", (*lab, ("reason", reason)), n)
        add("promotel_exporter_last_success_timestamp_seconds", "gauge",
            "Unix time of the exporter's last accepted request.", lab, e.get("last_success"))
    return list(fams.values())


def render_metrics(status: Mapping[str, object], version: str | None = None) -> str:
    """The Prometheus text exposition of one ``Bridge.status()`` snapshot."""
    fams = _families(status)
    if version is not None:
        fams.insert(0, _Family("promotel_build_info", "gauge", "Always 1; the version in a label.",
                               [((("version", version),), 1.0)]))
    out: list[str] = []
    for fam in fams:
        if not fam.samples:
            continue     # a family without samples says nothing (e.g. no error of any kind yet)
        out.append(f"# HELP {fam.name} {fam.help}")
        out.append(f"# TYPE {fam.name} {fam.kind}")
        for labels, value in fam.samples:
            rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            out.append(f"{fam.name}{{{rendered}}} {_number(value)}" if rendered else f"{fam.name} {_number(value)}")
    return "\n".join(out) + "\n"
