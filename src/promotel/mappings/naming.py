"""What a Prometheus family is called and typed in OTLP, the same whatever format the target answered in.

The OpenTelemetry "Prometheus and OpenMetrics Compatibility" specification takes the OTLP metric name from
the Prometheus metric name unaltered, the OTLP type from the TYPE line and the unit from UNIT. Applied
literally to what a client library writes, the result depends on the negotiated format: prometheus_client
and client_golang declare a counter ``x_total`` in the Prometheus text format and ``x`` in OpenMetrics
(samples ``x_total`` in both), an Info ``x_info`` (a gauge) in text and ``x`` (an info) in OpenMetrics, an
Enum a gauge in text and a stateset in OpenMetrics, and only OpenMetrics can declare a unit. The rules here
give one answer for both spellings (``docs/conversion.md``, "Names and types"):

* **counter** → the name ends in ``_total``: the family name without a trailing ``_total``, plus
  ``_total`` — the name Prometheus stores for the samples, and the name the OTLP → Prometheus direction
  gives back for a monotonic sum (it adds ``_total`` only when missing), so the round trip is the identity.
  A text counter declared without ``_total`` gets it too: client_golang writes ``x_total`` for it in
  OpenMetrics.
* **info** → the name ends in ``_info`` (the sample name Prometheus stores), non-monotonic Sum. A gauge whose
  name ends in ``_info`` is an Info written in a format or by a client that cannot declare one (the spec's
  own OTLP → Prometheus rule writes an Info as a gauge with an ``_info`` suffix), so it is an Info too.
* **stateset** → non-monotonic Sum. A gauge whose every sample has a label named after the family (in the
  legacy charset: every character outside ``[a-zA-Z0-9_]`` replaced by ``_``) is prometheus_client's text
  spelling of an Enum (OpenMetrics requires a StateSet's label to carry its family's name), so it is a
  StateSet too.
* **gaugehistogram** → dropped (spec). prometheus_client's text spelling — a histogram family without
  ``_count`` and gauges ``X_gcount``/``X_gsum`` — is recognised by ``fold_gauge_histograms`` and dropped
  the same way.
* **unit** → UNIT in UCUM when declared (the spec's table, plus ``ratio`` → ``1`` and ``_per_`` rates as the
  Collector reads them); otherwise the unit word the name ends with (after ``_total`` on counters), which is
  what OpenMetrics requires a declared UNIT to be. Info and StateSet families get no unit from their name.

Every other name is the family name as exposed. Stateless.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from promotel.model import MetricFamily, Sample

# Prometheus/OpenMetrics unit words → UCUM: the compatibility spec's table, plus ``ratio`` (OpenMetrics'
# dimensionless unit) and spellings seen in UNIT lines. Unknown words are kept as written.
UNIT_WORDS: dict[str, str] = {
    "days": "d", "hours": "h", "minutes": "min", "seconds": "s", "milliseconds": "ms", "microseconds": "us",
    "nanoseconds": "ns",
    "bytes": "By", "kibibytes": "KiBy", "mebibytes": "MiBy", "gibibytes": "GiBy", "tebibytes": "TiBy",
    "kilobytes": "kBy", "megabytes": "MBy", "gigabytes": "GBy", "terabytes": "TBy",
    "meters": "m", "volts": "V", "amperes": "A", "joules": "J", "watts": "W", "grams": "g",
    "celsius": "Cel", "hertz": "Hz", "percent": "%", "ratio": "1",
    # not in the spec's table, accepted in UNIT lines as before
    "second": "s", "byte": "By", "bits": "bit", "metres": "m", "kelvin": "K",
}
# The "per" part of a rate unit (``bytes_per_second`` → ``By/s``), as the Collector reads it.
PER_WORDS: dict[str, str] = {"second": "s", "minute": "min", "hour": "h", "day": "d", "week": "wk",
                             "month": "mo", "year": "a"}
# Words a metric name may end with that give it a unit: the plural base units Prometheus' naming practice and
# OpenMetrics' UNIT use (singular spellings are not unit suffixes of names).
_NAME_UNITS = {w: u for w, u in UNIT_WORDS.items() if w not in ("second", "byte", "metres")}

_LEGACY = re.compile(r"[^a-zA-Z0-9_]")


class Shape(NamedTuple):
    """A family's OTLP name and its type once the text spellings of Info and StateSet are recognised."""

    name: str
    type: str         # an OpenMetrics type (``counter``, ``info``, ``stateset``, …)


def _unit_word(word: str) -> str:
    head, sep, per = word.partition("_per_")
    if sep and per:
        return f"{UNIT_WORDS.get(head, head)}/{PER_WORDS.get(per, per)}"
    return UNIT_WORDS.get(word, word)


def ucum_unit(unit: str | None) -> str:
    """The UCUM form of an OpenMetrics UNIT (unknown words are kept as written)."""
    if not unit:
        return ""
    return _unit_word(unit)


def unit_from_name(name: str) -> str:
    """The UCUM unit a metric name ends with (``…_seconds`` → ``s``, ``…_bytes_per_second`` → ``By/s``), or ""."""
    head, sep, tail = name.rpartition("_")
    if not sep or not head:
        return ""
    per = PER_WORDS.get(tail)
    if per is not None and head.endswith("_per"):
        main_head, main_sep, main = head[:-4].rpartition("_")
        unit = _NAME_UNITS.get(main) if main_sep and main_head else None
        return f"{unit}/{per}" if unit is not None else ""
    return _NAME_UNITS.get(tail, "")


def _is_stateset_spelling(family: MetricFamily) -> bool:
    samples = family.samples
    if not samples:
        return False
    name = family.name
    first = samples[0].labels
    if name in first:
        key = name
    else:
        key = _LEGACY.sub("_", name)      # prometheus_client 0.26 escapes the label of a `vllm:x` Enum
        if key == name or key not in first:
            return False
    return all(key in s.labels for s in samples)


def shape(family: MetricFamily) -> Shape:
    """The OTLP name and effective type of ``family`` (see the module docstring)."""
    name, t = family.name, family.type
    if t == "counter":
        return Shape(name.removesuffix("_total") + "_total", t)
    if t == "info":
        return Shape(name.removesuffix("_info") + "_info", t)
    if t == "gauge":
        if name.endswith("_info") and len(name) > 5:
            return Shape(name, "info")
        if _is_stateset_spelling(family):
            return Shape(name, "stateset")
    return Shape(name, t)


def unit_of(family: MetricFamily, effective_type: str | None = None) -> str:
    """The OTLP unit of ``family``: its UNIT in UCUM, else the unit its name ends with (not for Info and
    StateSet, whose values are counts of 1)."""
    if family.unit:
        return ucum_unit(family.unit)
    t = effective_type or family.type
    if t in ("info", "stateset"):
        return ""
    name = family.name.removesuffix("_total") if t == "counter" else family.name
    return unit_from_name(name)


def fold_gauge_histograms(families: Sequence[MetricFamily]) -> list[MetricFamily]:
    """prometheus_client's text spelling of a GaugeHistogram — a ``histogram`` family ``X`` with buckets and no
    ``_count``, next to gauge families ``X_gcount`` and ``X_gsum`` — becomes one ``gaugehistogram`` family
    (which the map stage drops, as it drops the OpenMetrics spelling)."""
    names = {f.name for f in families}
    candidates = {f.name for f in families
                  if f.type == "histogram" and f.name + "_gcount" in names
                  and not any(s.name == f.name + "_count" for s in f.samples)}
    if not candidates:
        return list(families)
    parts = {c + suffix: c for c in candidates for suffix in ("_gcount", "_gsum")}
    extra: dict[str, list[Sample]] = {}
    out: list[MetricFamily] = []
    for f in families:
        owner = parts.get(f.name)
        if owner is not None and f.type in ("gauge", "unknown"):
            extra.setdefault(owner, []).extend(f.samples)
            continue
        out.append(f)
    return [f._replace(type="gaugehistogram", samples=f.samples + tuple(extra.get(f.name, ())))
            if f.name in candidates else f for f in out]


__all__ = ["PER_WORDS", "UNIT_WORDS", "Shape", "fold_gauge_histograms", "shape", "ucum_unit", "unit_from_name",
           "unit_of"]
