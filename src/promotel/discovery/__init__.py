"""Prometheus-style targets: discovery and relabeling.

For now this package holds only the relabeling engine (:mod:`promotel.discovery.relabel`):
``relabel_configs`` applied to discovered targets and ``metric_relabel_configs`` applied to every
series, with Prometheus's semantics. Nothing else in promotel uses it yet.
"""

from __future__ import annotations

from promotel.discovery.relabel import (
    ACTIONS,
    RelabelConfig,
    TargetLabels,
    parse_relabel_configs,
    relabel,
    target_labels,
)

__all__ = [
    "ACTIONS",
    "RelabelConfig",
    "TargetLabels",
    "parse_relabel_configs",
    "relabel",
    "target_labels",
]
