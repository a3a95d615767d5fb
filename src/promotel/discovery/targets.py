"""The common model of service discovery: target groups, discoverers, and the labels Prometheus builds.

Every mechanism (``static_configs``, ``file_sd_configs``, ``dns_sd_configs``, ``http_sd_configs``,
and later Kubernetes) produces :class:`TargetGroup` values, Prometheus's ``targetgroup.Group``: a
``source`` that identifies the group within its mechanism, group ``labels``, and ``targets``, each a
label set holding at least ``__address__`` plus the labels of that target alone (DNS SD gives each
record its own ``__meta_dns_*``; a file or HTTP SD target is just its address). That is why a target
is a label set and not a bare address string: per-target labels exist and, when a group label has
the same name, the target's label wins (below).

A :class:`Discoverer` is one configured mechanism entry (``file_sd_configs[0]``). It is polled:
``refresh()`` returns the complete current list of its groups, ``wait()`` sleeps until the next
refresh is due (a discoverer that can see cheaply that something changed, such as file SD watching
modification times, returns early). Discoverers are polled rather than pushing updates themselves
so that the failure policy lives in one place, :class:`DiscoveryManager`, which runs the discoverers
of one scrape job:

* a refresh that raises :class:`promotel.errors.DiscoveryError` (or times out) changes nothing: the
  discoverer's last good groups stay in use;
* a refresh may also succeed *partially* (:class:`Refresh` ``problems``): file SD with one invalid
  file, DNS SD with one name that does not resolve. The discoverer itself keeps the last good groups
  of that file or name in the list it returns, as Prometheus's discovery manager does (it keeps the
  last group it received for each source);
* every problem is counted (:class:`DiscovererStatus` ``errors_total``) and logged once when it
  appears or changes, and once when it is gone, not at every refresh.

From groups to targets, as Prometheus's ``scrape/target.go`` (``PopulateDiscoveredLabels`` and
``PopulateLabels``) does it, for each target of each group:

1. the target's own labels; then each group label whose name the target does not have (a target
   label wins even when its value is empty);
2. the scrape config's defaults, each only where the label is still empty or missing, so a group
   label overrides them: ``job``, ``__scrape_interval__``, ``__scrape_timeout__`` (Prometheus
   durations such as ``1m30s``), ``__metrics_path__``, ``__scheme__``;
3. ``__param_<name>`` with the first value of each ``params`` entry, again only where the label is
   missing or empty (Prometheus 3; Prometheus 2.x let the config's params override a discovered
   ``__param_<name>``);
4. labels with empty values are dropped (an empty value is no label).

:func:`discovered_labels` gives those label sets ("discovered labels" on Prometheus's targets page);
:func:`build_targets` then applies ``relabel_configs`` (:func:`promotel.discovery.relabel.relabel`)
and :func:`promotel.discovery.relabel.target_labels`, and sorts each target as active, dropped (by
relabeling) or invalid (Prometheus logs those and scrapes nothing).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, Protocol, runtime_checkable

from promotel.config.secrets import redact_all
from promotel.discovery.relabel import (
    RelabelConfig,
    TargetLabels,
    is_valid_label_name,
    relabel,
    target_labels,
)
from promotel.errors import ConfigError, DiscoveryError

__all__ = [
    "ADDRESS_LABEL",
    "META_PREFIX",
    "DiscoveredTarget",
    "Discoverer",
    "DiscovererStatus",
    "DiscoveryManager",
    "Refresh",
    "ScrapeDefaults",
    "TargetGroup",
    "build_targets",
    "discovered_labels",
    "format_prometheus_duration",
    "parse_target_groups",
]

log = logging.getLogger("promotel.discovery")

ADDRESS_LABEL: Final = "__address__"
META_PREFIX: Final = "__meta_"
PARAM_PREFIX: Final = "__param_"


# --- target groups -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TargetGroup:
    """Prometheus's target group: ``targets`` (label sets with ``__address__``), ``labels``, ``source``.

    Immutable: the mappings are read-only copies of what was given. Use :meth:`of` to build a group
    from plain addresses."""

    targets: tuple[Mapping[str, str], ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(MappingProxyType(dict(t)) for t in self.targets))
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

    @classmethod
    def of(cls, addresses: Iterable[str], labels: Mapping[str, str] | None = None, source: str = "") -> TargetGroup:
        """A group whose targets are the given addresses (each target is ``{"__address__": address}``)."""
        return cls(tuple({ADDRESS_LABEL: address} for address in addresses), labels or {}, source)

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(target.get(ADDRESS_LABEL, "") for target in self.targets)

    def __hash__(self) -> int:
        return hash((tuple(tuple(sorted(t.items())) for t in self.targets), tuple(sorted(self.labels.items())),
                     self.source))


@dataclass(frozen=True, slots=True)
class Refresh:
    """What one refresh found: the discoverer's complete list of groups, and the problems of a partial
    success (each a full sentence naming the file, name or URL; that part of the list is the last
    good one)."""

    groups: tuple[TargetGroup, ...]
    problems: tuple[str, ...] = ()


@runtime_checkable
class Discoverer(Protocol):
    """One configured discovery entry, polled by :class:`DiscoveryManager`."""

    @property
    def name(self) -> str:
        """Where it is configured, for messages and status: ``file_sd_configs[0]``."""
        ...

    @property
    def mechanism(self) -> str:
        """``static``, ``file``, ``dns``, ``http``."""
        ...

    @property
    def refresh_interval(self) -> float:
        """Seconds between refreshes."""
        ...

    async def refresh(self) -> Refresh:
        """The complete current list of groups. Raises :class:`DiscoveryError` when nothing usable came
        back (the manager then keeps the last good list)."""
        ...

    async def wait(self, seconds: float) -> None:
        """Sleep until the next refresh is due: ``seconds``, or less when a change is seen early."""
        ...

    async def aclose(self) -> None:
        """Release connections and files."""
        ...


# --- the file and HTTP SD format ---------------------------------------------------------------------

def parse_target_groups(data: object, fmt: Literal["json", "yaml"]) -> list[tuple[tuple[str, ...], dict[str, str]]]:
    """Validate a decoded list of target groups in Prometheus's file/HTTP SD format.

    ``data`` is what the JSON decoder (``fmt="json"``, object key order kept) or the text-scalar YAML
    loader of :mod:`promotel.discovery.file_sd` returned. Returns ``(targets, labels)`` per group.
    Raises ValueError saying what is wrong and where (``group 2: labels: ...``).

    The rules are Go's, as Prometheus decodes ``[]*targetgroup.Group``: ``null`` is an empty list; a
    ``null`` group is an error; a group has only ``targets`` (a list of strings) and ``labels`` (a
    mapping of label names to strings), both optional; an unknown key is an error (JSON keys match
    case-insensitively, as in Go's encoding/json; YAML keys exactly); a ``null`` string is ``""``;
    label names are Prometheus 2.x's (``[a-zA-Z_][a-zA-Z0-9_]*``). JSON strings must be strings; YAML
    scalars are taken as their text (``port: 8080`` is ``"8080"``), as Go's YAML decoder does.
    """
    if data is None:
        return []
    if not isinstance(data, list):
        raise ValueError(f"expected a list of target groups ({{\"targets\": [...], \"labels\": {{...}}}}), "
                         f"got {_kind(data)}")
    groups: list[tuple[tuple[str, ...], dict[str, str]]] = []
    for index, item in enumerate(data):
        where = f"group {index}"
        if item is None:
            raise ValueError(f"{where}: nil target group item found (a null in the list)")
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected a mapping with targets and labels, got {_kind(item)}")
        targets_raw: object = None
        labels_raw: object = None
        for key, value in item.items():
            name = key.lower() if fmt == "json" and isinstance(key, str) else key
            if name == "targets":
                targets_raw = value
            elif name == "labels":
                labels_raw = value
            else:
                raise ValueError(f"{where}: unknown key {key!r}; a target group has only 'targets' and 'labels'")
        groups.append((_targets(targets_raw, where), _labels(labels_raw, where)))
    return groups


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object (a mapping)"
    return type(value).__name__


def _text(value: object) -> str | None:
    """A string field's value, or None when it is not a string. A null is "" (Go leaves the string
    empty); the YAML loader gives every scalar as its text, so only JSON has other scalars."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return None


def _targets(raw: object, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError(f"{where}: targets: expected a list of \"host:port\" strings, got {_kind(raw)}")
    out: list[str] = []
    for index, value in enumerate(raw):
        text = _text(value)
        if text is None:
            raise ValueError(f"{where}: targets[{index}]: expected a \"host:port\" string, got {_kind(value)}")
        out.append(text)
    return tuple(out)


def _labels(raw: object, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: labels: expected a mapping of label names to strings, got {_kind(raw)}")
    out: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not is_valid_label_name(name):
            raise ValueError(f"{where}: labels: {str(name)!r} is not a valid label name "
                             "([a-zA-Z_][a-zA-Z0-9_]*)")
        text = _text(value)
        if text is None:
            raise ValueError(f"{where}: labels: {name}: expected a string, got {_kind(value)}")
        out[name] = text
    return out


# --- labels before relabeling ------------------------------------------------------------------------

def format_prometheus_duration(seconds: float) -> str:
    """A duration as Prometheus prints it (``model.Duration.String``): whole milliseconds written with
    the largest units first, each at most once (``1h30m``, ``15s``, ``1m0s`` is ``1m``, ``500ms``); ``0s``
    for zero. Years are 365 days, weeks 7 days."""
    ms = round(seconds * 1000)  # durations are whole milliseconds; round away float noise
    if ms <= 0:
        return "0s"
    out = ""
    for unit, size in (("y", 365 * 86_400_000), ("w", 7 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000),
                       ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, ms = divmod(ms, size)
        if count:
            out += f"{count}{unit}"
    return out


@dataclass(frozen=True, slots=True)
class ScrapeDefaults:
    """The scrape config's values that become labels before relabeling (Prometheus's names and
    defaults). ``scrape_interval`` and ``scrape_timeout`` are seconds; ``params`` maps each query
    parameter to its values (the first becomes ``__param_<name>``)."""

    job: str
    scrape_interval: float
    scrape_timeout: float
    scheme: str = "http"
    metrics_path: str = "/metrics"
    params: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType({name: tuple(values)
                                                             for name, values in self.params.items()}))

    def labels(self) -> tuple[tuple[str, str], ...]:
        """The defaults in the order Prometheus sets them (each only where the label is empty)."""
        return (("job", self.job),
                ("__scrape_interval__", format_prometheus_duration(self.scrape_interval)),
                ("__scrape_timeout__", format_prometheus_duration(self.scrape_timeout)),
                ("__metrics_path__", self.metrics_path),
                ("__scheme__", self.scheme))


def discovered_labels(group: TargetGroup, defaults: ScrapeDefaults) -> list[dict[str, str]]:
    """The label set of each target of ``group`` before relabeling, as Prometheus builds it (see the
    module docstring for the precedence). Each dict is sorted by label name and has no empty value."""
    out: list[dict[str, str]] = []
    for target in group.targets:
        lset = dict(target)
        for name, value in group.labels.items():
            if name not in target:  # presence, not value: a target's empty label still wins
                lset[name] = value
        for name, value in defaults.labels():
            if lset.get(name, "") == "":
                lset[name] = value
        for name, values in defaults.params.items():
            label = PARAM_PREFIX + name
            if values and lset.get(label, "") == "":
                lset[label] = values[0]
        out.append({name: lset[name] for name in sorted(lset) if lset[name] != ""})
    return out


# --- targets after relabeling ------------------------------------------------------------------------

TargetState = Literal["active", "dropped", "invalid"]


@dataclass(frozen=True, slots=True)
class DiscoveredTarget:
    """One discovered target after ``relabel_configs``.

    ``state`` is ``active`` (``target`` holds its labels and scrape settings), ``dropped`` (a relabel
    config dropped it) or ``invalid`` (what relabeling left is not a scrapable target: ``error`` says
    why; Prometheus logs those and scrapes nothing). ``source`` is the source of its group."""

    discovered_labels: Mapping[str, str]
    source: str
    state: TargetState
    target: TargetLabels | None = None
    error: str | None = None


def build_targets(groups: Iterable[TargetGroup], defaults: ScrapeDefaults,
                  relabel_configs: Sequence[RelabelConfig] = (), *,
                  default_port: bool = True) -> list[DiscoveredTarget]:
    """Every target of ``groups`` through discovery labels, ``relabel_configs`` and ``target_labels``.

    Active targets are unique, as in Prometheus's scrape pool: a target whose final labels (all of
    them, ``__address__``, ``__scheme__``, ``__metrics_path__`` and ``__param_*`` included, so the
    same scrape URL) equal an earlier one's is the same target and listed once. Dropped and invalid
    targets are all listed, in discovery order."""
    out: list[DiscoveredTarget] = []
    seen: set[tuple[tuple[str, str], ...]] = set()
    for group in groups:
        for lset in discovered_labels(group, defaults):
            frozen = MappingProxyType(lset)
            result = relabel(lset, relabel_configs)
            if result is None:
                out.append(DiscoveredTarget(frozen, group.source, "dropped"))
                continue
            try:
                final = target_labels(result, default_port=default_port)
            except ConfigError as exc:
                reason = "; ".join(message for _, message in exc.problems)
                out.append(DiscoveredTarget(frozen, group.source, "invalid", error=reason))
                continue
            key = tuple(sorted(final.all_labels.items()))
            if key in seen:
                continue
            seen.add(key)
            out.append(DiscoveredTarget(frozen, group.source, "active", target=final))
    return out


# --- running discoverers -----------------------------------------------------------------------------

@dataclass(slots=True)
class DiscovererStatus:
    """What a discoverer did so far (for ``/status`` and self-telemetry). Times are ``time.time()``."""

    name: str
    mechanism: str
    groups: int = 0
    targets: int = 0
    refreshes_total: int = 0
    errors_total: int = 0           # one per failed refresh, and one per problem of a partial one
    problems: tuple[str, ...] = ()  # the current ones (empty once they are gone)
    last_refresh: float | None = None
    last_success: float | None = None


@dataclass(slots=True)
class _Entry:
    discoverer: Discoverer
    status: DiscovererStatus
    groups: tuple[TargetGroup, ...] = ()
    logged: frozenset[str] = field(default_factory=frozenset)


class DiscoveryManager:
    """Runs the discoverers of one scrape job; keeps the last good list of each; reports failures.

    ``groups`` is the combined current list (discoverers in the order given). :meth:`run` calls
    ``updates`` with that complete list once after the first refresh of every discoverer, and again
    whenever it changes; it runs until cancelled. :meth:`refresh_once` refreshes every discoverer once
    (for a one-off listing such as ``promotel targets``).

    A refresh that takes longer than ``max(refresh_interval, min_timeout)`` seconds counts as failed.
    ``job`` names the scrape job in log lines.
    """

    def __init__(self, discoverers: Sequence[Discoverer], *, job: str = "", min_timeout: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        names = [d.name for d in discoverers]
        if len(set(names)) != len(names):
            raise ValueError(f"discoverer names must be unique, got {names}")
        self.job = job
        self._min_timeout = min_timeout
        self._clock = clock
        self._entries = [_Entry(d, DiscovererStatus(d.name, d.mechanism)) for d in discoverers]

    @property
    def groups(self) -> tuple[TargetGroup, ...]:
        return tuple(group for entry in self._entries for group in entry.groups)

    def status(self) -> tuple[DiscovererStatus, ...]:
        """A snapshot of each discoverer's status."""
        return tuple(dataclasses.replace(entry.status) for entry in self._entries)

    async def refresh_once(self) -> tuple[TargetGroup, ...]:
        """Refresh every discoverer once, concurrently; return the combined list."""
        await asyncio.gather(*(self._refresh(entry) for entry in self._entries))
        return self.groups

    async def run(self, updates: Callable[[tuple[TargetGroup, ...]], object]) -> None:
        """Refresh forever; ``updates(groups)`` gets the complete list first and after every change."""
        await self.refresh_once()
        updates(self.groups)
        async with asyncio.TaskGroup() as tasks:
            for entry in self._entries:
                tasks.create_task(self._loop(entry, updates), name=f"discovery {self.job} {entry.status.name}")

    async def aclose(self) -> None:
        for entry in self._entries:
            await entry.discoverer.aclose()

    async def _loop(self, entry: _Entry, updates: Callable[[tuple[TargetGroup, ...]], object]) -> None:
        while True:
            await entry.discoverer.wait(entry.discoverer.refresh_interval)
            if await self._refresh(entry):
                updates(self.groups)

    async def _refresh(self, entry: _Entry) -> bool:
        """One refresh of one discoverer; True when its groups changed."""
        discoverer, status = entry.discoverer, entry.status
        timeout = max(discoverer.refresh_interval, self._min_timeout)
        problems: tuple[str, ...]
        groups: tuple[TargetGroup, ...] | None = None
        try:
            async with asyncio.timeout(timeout):
                result = await discoverer.refresh()
        except DiscoveryError as exc:
            problems = (str(exc),)
        except TimeoutError:
            problems = (f"refresh took longer than {timeout:g}s",)
        except Exception as exc:  # a bug in a discoverer must not stop discovery of the others
            log.exception("discovery %s: refresh failed unexpectedly", discoverer.name,
                          extra={"fields": {"job": self.job, "discoverer": discoverer.name}})
            problems = (f"unexpected error: {type(exc).__name__}: {exc}",)
        else:
            groups, problems = result.groups, result.problems
        now = self._clock()
        status.refreshes_total += 1
        status.last_refresh = now
        status.errors_total += len(problems)
        status.problems = tuple(redact_all(p) for p in problems)
        if groups is not None:
            status.last_success = now
        self._report(entry)
        if groups is None or groups == entry.groups:
            return False
        entry.groups = groups
        status.groups = len(groups)
        status.targets = sum(len(g.targets) for g in groups)
        return True

    def _report(self, entry: _Entry) -> None:
        """Log each problem when it appears (or its message changes), and once when all are gone."""
        name = entry.status.name
        current = frozenset(entry.status.problems)
        fields = {"job": self.job, "discoverer": name, "mechanism": entry.status.mechanism}
        for problem in entry.status.problems:
            if problem not in entry.logged:
                log.warning("discovery %s%s: %s; keeping its last good targets", _job(self.job), name, problem,
                            extra={"fields": fields})
        if entry.logged and not current:
            log.info("discovery %s%s: recovered, targets are current again", _job(self.job), name,
                     extra={"fields": fields})
        entry.logged = current


def _job(job: str) -> str:
    return f"{job} " if job else ""
