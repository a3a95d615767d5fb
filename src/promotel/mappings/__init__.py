"""Mapping plugins: what the families of one kind of source become in OpenTelemetry.

A plugin is any object registered under the entry-point group ``promotel.mappings``. The built-in
ones (``passthrough``, ``baseten``, ``sambanova``) are registered in promotel's own
``pyproject.toml`` and load through the very same group an outside package would use::

    [project.entry-points."promotel.mappings"]
    mysource = "mypackage.mapping:PLUGIN"

A plugin is bound once per configured source (``bind``), which applies that source's overrides and
user-data policy and owns the per-source caches; the bound mapper then maps every scrape.
The built-ins are data first: a table of rows (``promotel.mappings.table``) that both the mapper and
``promotel mappings NAME`` read, with code only where a table cannot say it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

from promotel.errors import MappingError
from promotel.model import Attributes, Metric, MetricFamily

log = logging.getLogger("promotel.mappings")

GROUP = "promotel.mappings"


class FamilyOverrideLike(Protocol):
    """A per-family override from the source config (every field optional)."""

    name: str | None
    unit: str | None
    scale: float | None
    description: str | None
    attributes: Mapping[str, Any] | None          # constants to add
    drop_attributes: Sequence[str] | None         # attribute keys (after mapping) to remove
    rename_attributes: Mapping[str, str] | None   # attribute key (after mapping) → new key
    drop: bool | None


class SourceLike(Protocol):
    """The fields of a source's config that a mapping reads (``promotel.config.SourceConfig`` has them).

    Read-only members, so that a frozen config model and any object with these attributes both fit."""

    @property
    def name(self) -> str: ...
    @property
    def overrides(self) -> Mapping[str, Any]: ...
    @property
    def users(self) -> Literal["keep", "pseudonymize", "drop"]: ...
    @property
    def pseudonymize_key(self) -> str | None: ...
    @property
    def unmapped(self) -> Literal["keep", "drop"]: ...
    @property
    def service_name(self) -> str | None: ...


class MapResult(NamedTuple):
    metrics: tuple[Metric, ...]
    resource: Attributes          # service.name and target_info labels; the service adds the target attributes
    dropped: int                  # data points that could not be mapped (invalid histograms, gaugehistograms, …)
    reasons: Mapping[str, int]    # why, counted per bounded reason


class RowDescription(NamedTuple):
    """One line of ``promotel mappings NAME``: what a Prometheus family becomes."""

    family: str
    otel_name: str
    instrument: str
    unit: str
    conversion: str
    attributes: str


@runtime_checkable
class SourceMapper(Protocol):
    def map(self, families: Sequence[MetricFamily]) -> MapResult: ...


@runtime_checkable
class MappingPlugin(Protocol):
    name: str
    default_service_name: str

    def bind(self, source: Any) -> SourceMapper: ...

    def describe(self) -> list[RowDescription]: ...


_loaded: dict[str, MappingPlugin] = {}


def installed_mappings() -> list[str]:
    """Names of every plugin registered under ``promotel.mappings``, sorted."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def load_mapping(name: str) -> MappingPlugin:
    """The plugin registered as ``name``; raises MappingError naming the installed ones otherwise."""
    plugin = _loaded.get(name)
    if plugin is not None:
        return plugin
    matches = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not matches:
        installed = ", ".join(installed_mappings()) or "none"
        raise MappingError(f"unknown mapping {name!r}; installed: {installed}")
    ep = matches[0]
    try:
        obj = ep.load()
    except Exception as exc:  # an outside plugin may fail in any way while importing
        raise MappingError(f"mapping {name!r} ({ep.value}) failed to load: {exc}; "
                           "reinstall the package that provides it") from exc
    if not isinstance(obj, MappingPlugin):
        raise MappingError(f"mapping {name!r} ({ep.value}) is not a mapping plugin: it needs the attributes "
                           "'name' and 'default_service_name' and the methods 'bind' and 'describe'")
    _loaded[name] = obj
    return obj


__all__ = [
    "FamilyOverrideLike",
    "MapResult",
    "MappingPlugin",
    "RowDescription",
    "SourceLike",
    "SourceMapper",
    "installed_mappings",
    "load_mapping",
]
