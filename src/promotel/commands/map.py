"""``promotel map`` and ``promotel mappings``: try a mapping offline, see what each family becomes.

``promotel map --mapping NAME FILE...`` (or ``-c CONFIG --source NAME [--exporter NAME] FILE...``) runs
the service's own pipeline (``promotel.pipeline.TargetPipeline``, then the exporter's
``promotel.export.prepare.BatchPreparer``) on files that are successive scrapes of one target, oldest
first, and prints what a backend would receive: the resource, every metric, ``up`` and ``scrape_*``
(``scrape_duration_seconds`` is 0: reading a file takes no scrape), summaries policy and delta included.

Scrape times are fixed, not taken from the clock or the files: scrape *i* (0-based) happens at
``MAP_EPOCH_NS + i × 60 s`` (``MAP_EPOCH_NS`` = 2023-11-14T22:13:20Z). The same files therefore
always give byte-identical output, which is what golden tests and diffs of mapping changes need.
Timestamps written in the expositions themselves still win, as in the service.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Literal, NamedTuple

from promotel.config import Config, ExporterConfig, SourceConfig
from promotel.errors import ConfigError, ExpositionError, MappingError
from promotel.export.prepare import BatchPreparer
from promotel.export.presets import ResolvedExporter, resolve_exporter
from promotel.mappings import OverrideSpec, SourceLike
from promotel.model import (
    HistogramPoint,
    Kind,
    Metric,
    NumberPoint,
    SummaryPoint,
    TargetBatch,
    Temporality,
)
from promotel.pipeline import TargetPipeline

MAP_EPOCH_NS = 1_700_000_000 * 1_000_000_000
SCRAPE_STEP_NS = 60 * 1_000_000_000
SOURCE_NAME = "map"


class MapSource(NamedTuple):
    """The source config fields a mapping reads, for offline runs (no overrides, users kept)."""

    name: str = SOURCE_NAME
    overrides: Mapping[str, OverrideSpec] = MappingProxyType({})
    users: Literal["keep", "pseudonymize", "drop"] = "keep"
    pseudonymize_key: str | None = None
    unmapped: Literal["keep", "drop"] = "keep"
    service_name: str | None = None


class MappedScrape(NamedTuple):
    label: str                      # the file name, "-" for stdin
    time_ns: int
    batch: TargetBatch              # what the exporter sends: converted, up/scrape_* added, delta applied
    request: Any                    # the ExportMetricsServiceRequest the batch encodes to


def offline_exporter(temporality: Literal["cumulative", "delta"] = "cumulative") -> ResolvedExporter:
    """A default OTLP exporter with the given temporality, for previews without a configured exporter."""
    return resolve_exporter(ExporterConfig(name=SOURCE_NAME, temporality=temporality), env={})


def map_scrapes(mapping: str | None, scrapes: Sequence[tuple[str, bytes]], *,
                temporality: Literal["cumulative", "delta"] = "cumulative",
                content_type: str | None = None, source: SourceLike | None = None,
                config: Config | None = None, exporter: ResolvedExporter | None = None) -> list[MappedScrape]:
    """Run successive scrapes of one target through the service's own pipeline (see the module docstring).

    ``source`` is a configured ``SourceConfig`` (its URL, resource attributes, limits and mapping apply, with
    ``config``'s resource attributes) or any ``SourceLike`` for ``mapping`` (no target URL then). ``exporter``
    decides summaries, temporality and limits (default: an OTLP exporter with ``temporality``). Raises
    MappingError for an unknown mapping and ExpositionError (its message prefixed with the scrape's label)
    for an invalid exposition."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    if isinstance(source, SourceConfig):
        pipeline = TargetPipeline.for_source(source, config)
    else:
        pipeline = TargetPipeline(source if source is not None else MapSource(), url=None,
                                  mapping=mapping or "passthrough")
    resolved = exporter if exporter is not None else offline_exporter(temporality)
    delta = None
    if resolved.temporality is Temporality.DELTA:
        from promotel.export.delta import DeltaState

        delta = DeltaState(resolved.name, None)   # in memory only: nothing is written to disk
    preparer = BatchPreparer(resolved, delta=delta)
    out: list[MappedScrape] = []
    for i, (label, data) in enumerate(scrapes):
        now = MAP_EPOCH_NS + i * SCRAPE_STEP_NS
        try:
            result = pipeline.process(data, content_type, now)
        except ExpositionError as exc:
            raise ExpositionError(f"{label}:{exc.line}: {exc.message}" if exc.line else f"{label}: {exc.message}",
                                  exc.line) from exc
        # A file takes no time to fetch: scrape_duration_seconds is 0 in previews.
        batch = preparer.transform(pipeline.batch(result, 0.0, now))
        request = ExportMetricsServiceRequest()
        for chunk, _points in preparer.encode(batch).requests:
            request.MergeFromString(chunk)
        preparer.commit()
        out.append(MappedScrape(label, now, batch, request))
    return out


# ─── output ──────────────────────────────────────────────────────────────────────────────────


def request_json(request: Any) -> str:
    """One line of compact OTLP/JSON for an ExportMetricsServiceRequest."""
    from promotel.export.otlp_json import to_otlp_json

    return json.dumps(to_otlp_json(request), separators=(",", ":"))


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _kind_text(m: Metric) -> str:
    if m.kind is Kind.SUM:
        text = "counter" if m.monotonic else "updowncounter"
    else:
        text = m.kind.value
    if m.kind in (Kind.SUM, Kind.HISTOGRAM):
        text += f" ({m.temporality.value})"
    return text


def _point_text(p: Any) -> str:
    if p.no_recorded_value:
        return "stale"
    if isinstance(p, NumberPoint):
        return _fmt(p.value)
    if isinstance(p, HistogramPoint):
        return f"count={_fmt(p.count)} sum={'-' if p.sum is None else _fmt(p.sum)}"
    if isinstance(p, SummaryPoint):
        qs = " ".join(f"q{q:g}={_fmt(v)}" for q, v in p.quantiles)
        return f"count={_fmt(p.count)} sum={_fmt(p.sum)}" + (f" {qs}" if qs else "")
    return "?"


def render_table(scrape: MappedScrape, index: int, out: IO[str], samples: int = 3) -> None:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(scrape.time_ns // 1_000_000_000))
    resource = ", ".join(f"{k}={v}" for k, v in scrape.batch.resource)
    out.write(f"== scrape {index + 1}: {scrape.label} at {when} — resource: {resource}\n")
    rows = [("METRIC", "UNIT", "KIND", "SERIES", "SAMPLE VALUES")]
    for m in scrape.batch.metrics:
        shown = "; ".join(_point_text(p) for p in m.points[:samples])
        if len(m.points) > samples:
            shown += "; …"
        rows.append((m.name, m.unit or "-", _kind_text(m), str(len(m.points)), shown))
    _write_aligned(rows, out)
    out.write("\n")


def _write_aligned(rows: Sequence[Sequence[str]], out: IO[str]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] + "\n")


# ─── commands ────────────────────────────────────────────────────────────────────────────────


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    return Path(path).read_bytes()


def _reader_gone() -> int:
    """stdout's reader went away (``| head``): stop writing, quietly; exit 1 as the output is incomplete."""
    # Point stdout at /dev/null so the interpreter's final flush of what is buffered cannot fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 1


def _configured(args: argparse.Namespace) -> tuple[Config, SourceConfig, ResolvedExporter | None]:
    """``-c CONFIG --source NAME [--exporter NAME]``: that source and exporter, exactly as ``run`` builds them."""
    from promotel.service.bridge import load

    cfg = load(args.config, bool(args.allow_insecure_config_permissions))
    sources = {s.name: s for s in cfg.sources}
    name = args.source
    if name is None:
        if len(sources) != 1:
            raise ConfigError([("", f"--source is needed to choose one of the configured sources: "
                                    f"{', '.join(sorted(sources)) or 'none'}")], source=args.config)
        name = next(iter(sources))
    if name not in sources:
        raise ConfigError([("", f"--source {name!r} is not configured; configured sources: "
                                f"{', '.join(sorted(sources)) or 'none'}")], source=args.config)
    resolved = None
    if args.exporter is not None:
        index = {e.name: i for i, e in enumerate(cfg.exporters)}
        if args.exporter not in index:
            raise ConfigError([("", f"--exporter {args.exporter!r} is not configured; configured exporters: "
                                    f"{', '.join(sorted(index)) or 'none'}")], source=args.config)
        resolved = resolve_exporter(cfg.exporters[index[args.exporter]], index=index[args.exporter])
    return cfg, sources[name], resolved


def cli_map(args: argparse.Namespace) -> int:
    """``promotel map``: 0 on success, 1 on an unreadable or invalid file, 2 for an unknown mapping or a
    config problem (the same code as ``run`` for an invalid config)."""
    source: SourceConfig | None = None
    config: Config | None = None
    exporter: ResolvedExporter | None = None
    if args.config:
        try:
            config, source, exporter = _configured(args)
        except ConfigError as exc:
            print(f"promotel map: invalid configuration:\n{exc}", file=sys.stderr)
            return 2
        if args.mapping is not None and args.mapping != source.mapping:
            print(f"promotel map: --mapping {args.mapping} differs from source {source.name}'s mapping "
                  f"{source.mapping}; drop --mapping to use the source's", file=sys.stderr)
            return 2
    elif args.mapping is None:
        print("promotel map: say which mapping to apply: --mapping NAME, or -c CONFIG [--source NAME] "
              "for a configured source", file=sys.stderr)
        return 2
    elif args.source is not None or args.exporter is not None:
        print("promotel map: --source and --exporter need -c CONFIG", file=sys.stderr)
        return 2
    scrapes: list[tuple[str, bytes]] = []
    for path in args.files:
        try:
            scrapes.append((path, _read(path)))
        except OSError as exc:
            print(f"{path}: cannot read the file: {exc.strerror or exc}", file=sys.stderr)
            return 1
    try:
        results = map_scrapes(args.mapping, scrapes, temporality=args.temporality, content_type=args.content_type,
                              source=source, config=config, exporter=exporter)
    except MappingError as exc:
        print(f"promotel map: {exc}", file=sys.stderr)
        return 2
    except ExpositionError as exc:
        print(str(exc.message), file=sys.stderr)
        return 1
    out = sys.stdout
    try:
        for i, scrape in enumerate(results):
            if args.format == "table":
                render_table(scrape, i, out)
            else:
                out.write(request_json(scrape.request) + "\n")
        out.flush()
    except BrokenPipeError:
        return _reader_gone()
    return 0


def mappings_text(name: str | None) -> str:
    """The text ``promotel mappings [NAME]`` prints (Markdown tables, readable as they are)."""
    from promotel.mappings import installed_mappings, load_mapping

    if not name:
        lines = ["Installed mappings (show one with 'promotel mappings NAME'):", ""]
        for n in installed_mappings():
            plugin = load_mapping(n)
            count = len(plugin.describe())
            service = "the source's name"     # the Resource's identity is the source's (OTel spec), any mapping
            what = f"{count} families mapped" if count else "every family kept as is"
            lines.append(f"  {n:<12} service.name={service}; {what}")
        return "\n".join(lines) + "\n"
    plugin = load_mapping(name)
    rows = plugin.describe()
    service = "the source's name"
    out = [f"# Mapping '{name}' (service.name = {service})", ""]
    if not rows:
        out.append("Every family keeps its Prometheus name; labels become string attributes; "
                   "the TYPE line decides the instrument.")
    else:
        out.append("| Prometheus family | OTel metric | instrument | unit | conversion | attributes |")
        out.append("|---|---|---|---|---|---|")
        for r in rows:
            row_cells = (f"`{r.family}`", f"`{r.otel_name}`", r.instrument, f"`{r.unit}`" if r.unit else "–",
                         r.conversion, r.attributes)
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in row_cells) + " |")
        out.append("")
        out.append("Families not listed pass through unchanged (Prometheus name, labels as string attributes), "
                   "unless the source sets unmapped: drop.")
    labels = getattr(plugin, "describe_labels", None)
    if callable(labels):
        described = labels()
        if described:
            out += ["", "| label (aliases: first present wins) | attribute | note |", "|---|---|---|"]
            for keys, attribute, note in described:
                cells = (keys, attribute, note or "")
                out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
            out.append("")
            out.append("Labels no rule lists become string attributes under their own name; empty values are dropped.")
    return "\n".join(out) + "\n"


def cli_mappings(args: argparse.Namespace) -> int:
    """``promotel mappings [NAME]``: 0, or 2 for an unknown mapping."""
    try:
        text = mappings_text(args.name)
    except MappingError as exc:
        print(f"promotel mappings: {exc}", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        return _reader_gone()
    return 0


__all__ = [
    "MAP_EPOCH_NS",
    "SCRAPE_STEP_NS",
    "MapSource",
    "MappedScrape",
    "cli_map",
    "cli_mappings",
    "map_scrapes",
    "mappings_text",
    "offline_exporter",
    "render_table",
    "request_json",
]
