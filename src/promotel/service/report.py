"""``promotel run --once``'s outcome: one line per source and per exporter, from ``Bridge.status()``.

    source jobs: up, 120 samples, 118 series in 0.031 s from http://10.0.0.5:9100/metrics
    source gpu: down (connection refused: …) from https://gpu.example/metrics
    exporter backend: sent 2 requests, 236 points; failed none; dropped none; persisted 0
"""

from __future__ import annotations

from collections.abc import Mapping


def _counts(value: object) -> str:
    """``{"a": 2, "b": 1}`` → ``a 2, b 1``; nothing → ``none``."""
    if not isinstance(value, Mapping) or not any(value.values()):
        return "none"
    return ", ".join(f"{k} {n}" for k, n in sorted(value.items()) if n)


def source_line(name: str, t: Mapping[str, object]) -> str:
    where = f" from {t['url']}" if t.get("url") else ""
    if t.get("up") is None:
        return f"source {name}: not scraped{where}"
    if not t.get("up"):
        return f"source {name}: down ({t.get('error')}){where}"
    duration = t.get("duration_s")
    took = f" in {duration:.3f} s" if isinstance(duration, float) else ""
    return f"source {name}: up, {t.get('samples')} samples, {t.get('series')} series{took}{where}"


def exporter_line(name: str, e: Mapping[str, object]) -> str:
    line = (f"exporter {name}: sent {e.get('sent_requests', 0)} requests, {e.get('sent_points', 0)} points; "
            f"failed {_counts(e.get('failed_requests'))}; dropped {_counts(e.get('dropped'))}; "
            f"persisted {e.get('persisted_requests', 0)}")
    if e.get("last_error") and (e.get("failed_requests") or e.get("dropped")):
        line += f"; last error: {e['last_error']}"
    return line


def once_summary(status: Mapping[str, object]) -> list[str]:
    """The lines ``run --once`` prints, secrets masked."""
    from promotel.config.secrets import redact_all

    lines: list[str] = []
    targets = status.get("targets")
    if isinstance(targets, Mapping):
        lines += [source_line(name, t) for name, t in sorted(targets.items())]
    exporters = status.get("exporters")
    if isinstance(exporters, Mapping):
        lines += [exporter_line(name, e) for name, e in sorted(exporters.items())]
    return [redact_all(line) for line in lines]
