"""A target's labels and ``metric_relabel_configs`` on every scraped series, before mapping.

Prometheus builds each scraped series' labels from the exposed ones and the target's labels, then runs
``metric_relabel_configs`` on them (``__name__`` included) and stores what is left. Here, for each sample
of each parsed family:

1. the target's labels other than ``job`` and ``instance`` are added (those two are the target's identity,
   its Resource; the pipeline applies ``honor_labels`` to exposed ``job``/``instance`` labels). An exposed
   label of the same name is renamed ``exported_<name>`` (``exported_exported_<name>`` while that is taken)
   unless ``honor_labels`` is true, in which case the exposed one wins, as in Prometheus;
2. ``metric_relabel_configs`` run on ``__name__`` = the sample's name, the labels, and the target's ``job``
   and ``instance`` (unless exposed ones are there, which are what Prometheus's rules see then), so rules
   written for Prometheus match the same series. ``job``/``instance`` equal to the target's are removed
   again afterwards (they are the Resource); a ``job``/``instance`` a rule changed stays on the series as an
   exposed one would;
3. a dropped series is counted (reason ``metric_relabel_drop``, the config at work). A series whose
   ``__name__`` a rule changed moves to the family of its new name: the new name minus the suffix the
   sample had on its family's name (``foo_bucket`` → ``bar_bucket`` is family ``bar``, type kept) when it
   still ends with that suffix, else a family of type ``unknown`` named as the sample (Prometheus keeps no
   type for a renamed series either).

The result of each distinct (name, label set) is cached: the same series come back every scrape, so the
steady state costs one dictionary lookup per sample. Without target labels and rules nothing is done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from promotel.discovery.relabel import RelabelConfig, relabel
from promotel.model import Labels, MetricFamily, Sample

__all__ = ["DROP_REASON", "SeriesRelabeler"]

DROP_REASON: Final = "metric_relabel_drop"
_IDENTITY = ("job", "instance")
_MAX_CACHE = 200_000
# Not a result (a cache miss): compared by identity.
_MISSING: Final[tuple[str, Labels]] = ("", Labels())


class SeriesRelabeler:
    """Target labels + ``metric_relabel_configs`` for one target (see the module docstring)."""

    def __init__(self, target_labels: Mapping[str, str], configs: Sequence[RelabelConfig], *,
                 honor_labels: bool = False, job: str | None = None, instance: str | None = None) -> None:
        self._added = tuple((k, v) for k, v in sorted(target_labels.items()) if k not in _IDENTITY and v)
        self._configs = tuple(configs)
        self._honor = honor_labels
        identity = {"job": job or target_labels.get("job", ""), "instance": instance or target_labels.get("instance", "")}
        self._identity = tuple((k, v) for k, v in identity.items() if v)
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[str, Labels] | None] = {}

    @property
    def active(self) -> bool:
        return bool(self._added or self._configs)

    def apply(self, families: Sequence[MetricFamily]) -> tuple[list[MetricFamily], int, str]:
        """The families with every sample relabeled; how many samples were dropped, and the first family a
        drop came from ("" when none)."""
        if not self.active:
            return list(families), 0, ""
        out: list[MetricFamily] = []
        moved: dict[str, list[Sample]] = {}
        moved_meta: dict[str, MetricFamily] = {}
        dropped = 0
        example = ""
        cache = self._cache
        new_sample = tuple.__new__      # Sample(...) without NamedTuple's keyword handling: this is the hot loop
        for family in families:
            kept: list[Sample] = []
            changed = False
            for sample in family.samples:
                name = sample[0]
                key = (name, sample[1].flat)
                result = cache.get(key, _MISSING)
                if result is _MISSING:
                    if len(cache) >= _MAX_CACHE:
                        cache.clear()
                    result = cache[key] = self._series(name, sample[1])
                if result is None:
                    dropped += 1
                    example = example or family.name
                    changed = True
                    continue
                new_name, labels = result
                if new_name == name:
                    if labels is not sample[1]:
                        sample = new_sample(Sample, (name, labels, sample[2], sample[3], sample[4]))
                        changed = True
                    kept.append(sample)
                    continue
                changed = True
                target = _family_of(family, name, new_name)
                moved.setdefault(target.name, []).append(
                    new_sample(Sample, (new_name, labels, sample[2], sample[3], sample[4])))
                moved_meta.setdefault(target.name, target)
            if not changed:
                out.append(family)
            elif kept:
                out.append(family._replace(samples=tuple(kept)))
        for name, samples in moved.items():
            out.append(moved_meta[name]._replace(samples=tuple(samples)))
        return out, dropped, example

    def _series(self, name: str, labels: Labels) -> tuple[str, Labels] | None:
        lset: dict[str, str] = {k: v for k, v in labels.items() if v}
        for key, value in self._added:
            if key in lset:
                if self._honor:
                    continue
                lset[_exported(key, lset)] = lset.pop(key)
            lset[key] = value
        if not self._configs:
            if not self._added:
                return name, labels
            return name, Labels(lset)
        for key, value in self._identity:
            if key in lset and not self._honor:     # the exposed one is exported_<key>, as in Prometheus
                lset[_exported(key, lset)] = lset.pop(key)
            lset.setdefault(key, value)
        lset["__name__"] = name
        result = relabel(lset, self._configs)
        if result is None:
            return None
        new_name = result.pop("__name__", "")
        if not new_name:
            return None     # a series without a name is not stored (Prometheus refuses it too)
        for key, value in self._identity:
            if result.get(key) == value:
                del result[key]     # the target's own identity is its Resource
        if new_name == name and result == {k: v for k, v in labels.items() if v}:
            return name, labels
        return new_name, Labels(result)


def _exported(key: str, taken: Mapping[str, str]) -> str:
    renamed = "exported_" + key
    while renamed in taken:
        renamed = "exported_" + renamed
    return renamed


def _family_of(family: MetricFamily, old: str, new: str) -> MetricFamily:
    """The family a sample renamed from ``old`` to ``new`` belongs to (an empty one to fill)."""
    suffix = old[len(family.name):] if old.startswith(family.name) else None
    if suffix is not None and new.endswith(suffix) and len(new) > len(suffix):
        return MetricFamily(new[:len(new) - len(suffix)] if suffix else new, family.type, family.help, family.unit, ())
    return MetricFamily(new, "unknown", None, None, ())
