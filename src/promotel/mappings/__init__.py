"""Mapping plugins: what the families of one kind of source become in OpenTelemetry.

A plugin is any object registered under the entry-point group ``promotel.mappings``. The built-in
ones (``passthrough``, ``baseten``, ``sambanova``) are registered in promotel's own
``pyproject.toml`` and load through the very same group an outside package would use::

    [project.entry-points."promotel.mappings"]
    mysource = "mypackage.mapping:PLUGIN"

A plugin defined in code (an embedding application, a test) can be registered with
``register_mapping`` instead; it then loads, and validates in a config, like an installed one.

A plugin is bound once per configured source (``bind``), which applies that source's overrides and
user-data policy and owns the per-source caches; the bound mapper then maps every scrape.
The built-ins are data first: a table of rows (``promotel.mappings.table``) that both the mapper and
``promotel mappings NAME`` read, with code only where a table cannot say it.

A plugin may also declare how its kind of source must be scraped (``scrape_policy``, a ``ScrapePolicy``):
the default and minimum interval, a vendor's request budget per credential and host, and how the vendor
expects credentials. The config and the scraper read it from the plugin; a plugin without one (any
plugin written for 0.1) gets ``DEFAULT_SCRAPE_POLICY``, which imposes nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Literal, NamedTuple, Protocol, runtime_checkable

from promotel.errors import MappingError
from promotel.model import Attributes, Metric, MetricFamily

log = logging.getLogger("promotel.mappings")

GROUP = "promotel.mappings"


class FamilyOverrideLike(Protocol):
    """A per-family override from the source config (every field optional; ``promotel.config.FamilyOverride``
    has them). Read-only members, so that a frozen config model and any object with these attributes fit."""

    @property
    def name(self) -> str | None: ...
    @property
    def unit(self) -> str | None: ...
    @property
    def scale(self) -> float | None: ...
    @property
    def description(self) -> str | None: ...
    @property
    def attributes(self) -> Mapping[str, object] | None: ...          # constants to add
    @property
    def drop_attributes(self) -> Sequence[str] | None: ...            # attribute keys (after mapping) to remove
    @property
    def rename_attributes(self) -> Mapping[str, str] | None: ...      # attribute key (after mapping) → new key
    @property
    def drop(self) -> bool | None: ...


# An override as the config model holds it, or as a plain mapping with the same keys (``promotel map``,
# tests); ``promotel.mappings.table.validate_override`` checks either field by field.
OverrideSpec = FamilyOverrideLike | Mapping[str, object]


class SourceLike(Protocol):
    """The fields of a source's config that a mapping reads (``promotel.config.SourceConfig`` has them).

    Read-only members, so that a frozen config model and any object with these attributes both fit. A source
    may also have ``honor_labels`` (a bool, read with ``getattr``: sources written for 0.1 have none)."""

    @property
    def name(self) -> str: ...
    @property
    def overrides(self) -> Mapping[str, OverrideSpec]: ...
    @property
    def users(self) -> Literal["keep", "pseudonymize", "drop"]: ...
    @property
    def pseudonymize_key(self) -> str | None: ...
    @property
    def unmapped(self) -> Literal["keep", "drop"]: ...
    @property
    def service_name(self) -> str | None: ...


class MapResult(NamedTuple):
    """What a mapper made of one scrape's families."""

    metrics: tuple[Metric, ...]
    # Resource attributes the mapper adds (the labels of a target_info it was given). The identity
    # (service.name, service.namespace, service.instance.id) is the pipeline's: a mapper cannot change it.
    resource: Attributes
    dropped: int                  # samples, series or points left out (invalid, duplicated, configured away, …)
    reasons: Mapping[str, int]    # how many per bounded reason (they add up to ``dropped``)
    examples: Mapping[str, str] = MappingProxyType({})   # reason → the first family left out for it


class RowDescription(NamedTuple):
    """One line of ``promotel mappings NAME``: what a Prometheus family becomes."""

    family: str
    otel_name: str
    instrument: str
    unit: str
    conversion: str
    attributes: str


# ─── scrape policy ───────────────────────────────────────────────────────────────────────────


def _per(window: float) -> str:
    named = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}
    return named.get(window, f"{window:g} s")


class RequestBudget(NamedTuple):
    """A vendor's rate limit: at most ``requests`` requests in any ``window`` seconds per credential and host.

    The scraper keeps one sliding window per (host:port, credential, budget) for the whole process, shared by
    every source that uses that credential on that host, so several sources with one key stay within it
    together. Beyond the budget the vendor answers HTTP 429; promotel skips the scrape instead."""

    requests: int
    window: float                 # seconds
    per: str = "credential"       # what one credential stands for at the vendor, for messages ("organization")

    def describe(self) -> str:
        """``6 requests per minute per organization``."""
        return f"{self.requests} requests per {_per(self.window)} per {self.per}"


class ScrapePolicy(NamedTuple):
    """How a kind of source must be scraped, declared by its mapping plugin (``plugin.scrape_policy``).

    Every field is optional; ``ScrapePolicy()`` imposes nothing (promotel's generic defaults apply)."""

    vendor: str = ""                        # who sets the limits, for messages ("Baseten"); "" → the mapping name
    default_interval: float | None = None   # seconds, when the source sets no interval (None: promotel's 15 s)
    min_interval: float | None = None       # seconds; a shorter configured interval is a config error
    budget: RequestBudget | None = None     # requests per window per credential and host
    auth_hint: str = ""                     # how the vendor expects credentials, added to 401/403 errors
    note: str = ""                          # a fact for the interval advice ("its data refreshes every 30s")

    def interval_problem(self, mapping: str, interval: float) -> str | None:
        """The config error for ``interval`` seconds, or None when the policy allows it."""
        if self.min_interval is None or interval >= self.min_interval:
            return None
        message = f"must be at least {self.min_interval:g}s for mapping {mapping}"
        if self.budget is not None:
            message += (f": {self.vendor or mapping} allows {self.budget.describe()} and answers HTTP 429 "
                        "beyond that")
        advice = [f"recommended: {self.default_interval:g}s"] if self.default_interval is not None else []
        if self.note:
            advice.append(self.note)
        return message + (f" ({', '.join(advice)})" if advice else "")

    def rate_limit_hint(self, mapping: str) -> str | None:
        """What to do about an HTTP 429 from this kind of source, or None without a budget."""
        if self.budget is None:
            return None
        interval = self.default_interval or math.ceil(self.budget.window / self.budget.requests)
        return (f"{self.vendor or mapping} allows {self.budget.describe()}: use interval {interval:g}s and one "
                f"bridge per {self.budget.per}")

    def problems(self) -> list[str]:
        """What is wrong with the policy itself (a plugin's bug), for ``load_mapping``."""
        out: list[str] = []
        for field, value in (("default_interval", self.default_interval), ("min_interval", self.min_interval)):
            if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0):
                out.append(f"{field} must be a positive number of seconds, got {value!r}")
        if not out and self.default_interval is not None and self.min_interval is not None \
                and self.default_interval < self.min_interval:
            out.append(f"default_interval ({self.default_interval:g}s) is below min_interval "
                       f"({self.min_interval:g}s)")
        budget = self.budget
        if budget is not None:
            if not isinstance(budget, RequestBudget):
                out.append(f"budget must be a RequestBudget, got {type(budget).__name__}")
            elif isinstance(budget.requests, bool) or not isinstance(budget.requests, int) or budget.requests < 1 \
                    or not isinstance(budget.window, (int, float)) or not math.isfinite(budget.window) \
                    or budget.window <= 0:
                out.append(f"budget needs at least 1 request in a positive window, got {budget!r}")
        return out


DEFAULT_SCRAPE_POLICY = ScrapePolicy()


# ─── the plugin protocol ─────────────────────────────────────────────────────────────────────


@runtime_checkable
class SourceMapper(Protocol):
    def map(self, families: Sequence[MetricFamily]) -> MapResult: ...


@runtime_checkable
class MappingPlugin(Protocol):
    """What every plugin has. A plugin may also have ``scrape_policy`` (see ``ScrapingPlugin``): it is not a
    member here because a runtime-checkable protocol requires all its members, and plugins written for 0.1,
    which have no policy, must keep loading."""

    name: str
    # Kept so that plugins written for 0.1 load; no longer used for the Resource: a target's service.name is
    # its source's name (or service_name), per the OTel Prometheus-compatibility spec (promotel.pipeline).
    default_service_name: str

    def bind(self, source: SourceLike) -> SourceMapper: ...

    def describe(self) -> list[RowDescription]: ...


@runtime_checkable
class ScrapingPlugin(MappingPlugin, Protocol):
    """A plugin that declares its source's scrape policy (the built-ins do)."""

    scrape_policy: ScrapePolicy


def scrape_policy(plugin: MappingPlugin) -> ScrapePolicy:
    """The plugin's declared scrape policy, or ``DEFAULT_SCRAPE_POLICY`` when it declares none."""
    return plugin.scrape_policy if isinstance(plugin, ScrapingPlugin) else DEFAULT_SCRAPE_POLICY


def mapping_scrape_policy(name: str) -> ScrapePolicy:
    """The scrape policy of the mapping registered as ``name``; raises MappingError like ``load_mapping``."""
    return scrape_policy(load_mapping(name))


_loaded: dict[str, MappingPlugin] = {}       # entry-point plugins, once imported and checked
_registered: dict[str, MappingPlugin] = {}   # plugins registered in code; they win over entry points


def _checked(obj: object, what: str) -> MappingPlugin:
    if not isinstance(obj, MappingPlugin):
        raise MappingError(f"{what} is not a mapping plugin: it needs the attributes 'name' and "
                           "'default_service_name' and the methods 'bind' and 'describe'")
    if isinstance(obj, ScrapingPlugin):
        policy = obj.scrape_policy
        if not isinstance(policy, ScrapePolicy):
            raise MappingError(f"{what} has a scrape_policy that is not a promotel.mappings.ScrapePolicy "
                               f"({type(policy).__name__}); build it with ScrapePolicy(...)")
        problems = policy.problems()
        if problems:
            raise MappingError(f"{what} has an invalid scrape_policy: {'; '.join(problems)}")
    return obj


def installed_mappings() -> list[str]:
    """Names of every plugin registered under ``promotel.mappings`` or with ``register_mapping``, sorted."""
    return sorted({ep.name for ep in entry_points(group=GROUP)} | set(_registered))


def register_mapping(name: str, plugin: MappingPlugin) -> None:
    """Make ``plugin`` the mapping called ``name`` in this process, without an entry point (it shadows an
    installed plugin of that name). Raises MappingError when the object is not a valid plugin."""
    _registered[name] = _checked(plugin, f"mapping {name!r}")


def unregister_mapping(name: str) -> None:
    """Forget a plugin registered with ``register_mapping`` (installed plugins are not affected)."""
    _registered.pop(name, None)


def load_mapping(name: str) -> MappingPlugin:
    """The plugin registered as ``name``; raises MappingError naming the installed ones otherwise."""
    plugin = _registered.get(name)
    if plugin is None:
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
    plugin = _loaded[name] = _checked(obj, f"mapping {name!r} ({ep.value})")
    return plugin


__all__ = [
    "DEFAULT_SCRAPE_POLICY",
    "FamilyOverrideLike",
    "MapResult",
    "MappingPlugin",
    "OverrideSpec",
    "RequestBudget",
    "RowDescription",
    "ScrapePolicy",
    "ScrapingPlugin",
    "SourceLike",
    "SourceMapper",
    "installed_mappings",
    "load_mapping",
    "mapping_scrape_policy",
    "register_mapping",
    "scrape_policy",
    "unregister_mapping",
]
