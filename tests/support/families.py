"""Metric families for tests: built from plain tuples (``fam``), and parsed families as plain values for
comparing two parses (``comparable``: NaN spelled out, so equal results compare equal)."""

from __future__ import annotations

import math

from promotel.model import Labels, MetricFamily, Sample


def comparable(families: list[MetricFamily]) -> list[object]:
    def num(x: float) -> object:
        return "NaN" if math.isnan(x) else x
    return [(f.name, f.type, f.help, f.unit,
             [(s.name, s.labels.pairs(), num(s.value), s.timestamp_ns,
               None if s.exemplar is None else (s.exemplar.labels.pairs(), num(s.exemplar.value),
                                                s.exemplar.timestamp_ns))
              for s in f.samples]) for f in families]


def fam(name: str, type_: str, *samples: tuple[str, dict[str, str], float]) -> MetricFamily:
    """A family as the parser would return it, from ``(sample name, labels, value)`` tuples (no help, no unit)."""
    return MetricFamily(name, type_, None, None,
                        tuple(Sample(n, Labels(tuple(labels.items())), v) for n, labels, v in samples))
