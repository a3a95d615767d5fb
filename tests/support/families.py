"""Parsed families as plain values, for comparing two parses (NaN spelled out, so equal results compare equal)."""

from __future__ import annotations

import math

from promotel.model import MetricFamily


def comparable(families: list[MetricFamily]) -> list[object]:
    def num(x: float) -> object:
        return "NaN" if math.isnan(x) else x
    return [(f.name, f.type, f.help, f.unit,
             [(s.name, s.labels.pairs(), num(s.value), s.timestamp_ns,
               None if s.exemplar is None else (s.exemplar.labels.pairs(), num(s.exemplar.value),
                                                s.exemplar.timestamp_ns))
              for s in f.samples]) for f in families]
