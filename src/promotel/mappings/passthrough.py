"""The ``passthrough`` mapping: every family keeps its Prometheus name, labels become string attributes,
the instrument follows the TYPE line (OTel's Prometheus-compatibility rules). Per-family overrides
from the config still apply. ``service.name`` defaults to the source's name."""

from __future__ import annotations

from promotel.mappings.table import Table, TablePlugin

TABLE = Table(name="passthrough", rows=(), label_rules=())

PLUGIN = TablePlugin(TABLE, default_service_name="")

__all__ = ["PLUGIN", "TABLE"]
