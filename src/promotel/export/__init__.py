"""The export stage: per exporter, temporality → encode → a write-ahead queue → send (OTLP/gRPC or OTLP/HTTP).

    presets      a backend preset (datadog, honeycomb, grafana-cloud, newrelic, otlp) → ResolvedExporter
    prepare      BatchPreparer: summaries policy → cumulative→delta (delta) → OTLP encoding (encode)
    sender       the Sender protocol and make_sender; http_sender and grpc_sender implement it, sharing outcome
    pipeline     ExporterPipeline: the queue (on disk before the first send with a state_dir), retries with
                 backoff, replay, storage faults, 413 splitting
    status       ExporterStatus: the pipeline's counters, drops by reason, readiness and /status
    spool        ExporterStore, the per-exporter SQLite state database (the queue and the delta state, one
                 transaction per batch)
    delta        DeltaState: cumulative→delta per series and target; deltastore, its rows on disk
    state01      0.1's state files: Spool (its spool file) and their adoption into ExporterStore
    probe        ``promotel check``: one empty request per exporter
"""

from __future__ import annotations

from promotel.config import Config
from promotel.errors import ConfigError
from promotel.export.pipeline import ExporterPipeline
from promotel.export.presets import ResolvedExporter, preset_problems, resolve_exporter
from promotel.export.probe import ProbeResult, probe_exporter
from promotel.export.sender import Sender, SendOutcome, make_sender
from promotel.export.spool import ExporterStore, Spool, StorageError


def build_pipelines(config: Config) -> list[ExporterPipeline]:
    """One pipeline per configured exporter; every preset problem of every exporter is reported at once."""
    problems: list[tuple[str, str]] = []
    resolved: list[ResolvedExporter] = []
    for index, exporter in enumerate(config.exporters):
        try:
            resolved.append(resolve_exporter(exporter, index=index))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return [ExporterPipeline(r, state_dir=config.state_dir or None) for r in resolved]


__all__ = [
    "ExporterPipeline",
    "ExporterStore",
    "ProbeResult",
    "ResolvedExporter",
    "SendOutcome",
    "Sender",
    "Spool",
    "StorageError",
    "build_pipelines",
    "make_sender",
    "preset_problems",
    "probe_exporter",
    "resolve_exporter",
]
