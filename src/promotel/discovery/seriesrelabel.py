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

What each series became is remembered for the next scrape, per family and by position (a ``_Plan``): the
parser hands over an unchanged line's very Sample and an unchanged series text's very name and Labels, so
the steady state is an identity check per sample and, for a new value, one new Sample (no hashing, no rule
run); a whole family that passes unchanged or is dropped whole costs two C-level comparisons. A series at
another position (lines added or removed before it, a new order) is found by content among the family's
previous series; only a series not in the previous scrape runs the rules. The memory is that of one scrape
(its outputs, which the mapping needed anyway), forgotten with the family. Without target labels and rules
nothing is done.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from itertools import chain
from operator import is_, itemgetter
from typing import Final, NamedTuple, TypeAlias

from promotel.discovery.relabel import RelabelConfig, relabel
from promotel.model import Labels, MetricFamily, Sample

__all__ = ["DROP_REASON", "SeriesRelabeler"]

DROP_REASON: Final = "metric_relabel_drop"
_IDENTITY = ("job", "instance")
# A series' new name and labels, or None when a rule drops it.
_Result: TypeAlias = tuple[str, Labels] | None
# Labels kept last on a relabeled series, in this order (``le`` ends last when both are there): clients
# write them last, and the mapping's histogram and summary paths take them from the end without a scan
# when they are (label order carries no meaning: Labels equality and the mappings ignore it).
_TRAILING = ("quantile", "le")
# Series of a family not found by position whose rules run before their family's previous series are
# indexed by content (see SeriesRelabeler._family).
_RUN_BEFORE_INDEX = 16
_NAME = itemgetter(0)
_LABELS = itemgetter(1)


class _Kind(enum.Enum):
    """What a family's results do to it, which decides how its samples are produced."""

    UNCHANGED = "unchanged"     # every series as it was: the family itself
    RELABELED = "relabeled"     # every series kept under its name, some with new labels
    DROPPED = "dropped"         # every series dropped (an empty family is UNCHANGED)
    MIXED = "mixed"             # drops, renames and kept series mixed


class _Plan(NamedTuple):
    """One family of the previous apply: its samples and, at the same positions, what each became (None:
    dropped; the sample itself when unchanged)."""

    samples: Sequence[Sample]
    outputs: Sequence[Sample | None]
    kind: _Kind


class SeriesRelabeler:
    """Target labels + ``metric_relabel_configs`` for one target (see the module docstring)."""

    def __init__(self, target_labels: Mapping[str, str], configs: Sequence[RelabelConfig], *,
                 honor_labels: bool = False, job: str | None = None, instance: str | None = None) -> None:
        self._added = tuple((k, v) for k, v in sorted(target_labels.items()) if k not in _IDENTITY and v)
        self._configs = tuple(configs)
        self._honor = honor_labels
        identity = {"job": job or target_labels.get("job", ""), "instance": instance or target_labels.get("instance", "")}
        self._identity = tuple((k, v) for k, v in identity.items() if v)
        # family name → the previous apply's samples of that family and what each became, by position.
        self._last: dict[str, _Plan] = {}

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
        last = self._last
        now: dict[str, _Plan] = {}
        new_sample = tuple.__new__      # Sample(...) without NamedTuple's keyword handling: this is the hot loop
        sample_type = Sample
        for family in families:
            samples = family.samples
            plan = last.get(family.name)
            if plan is not None and len(plan.samples) == len(samples):
                kind = plan.kind
                before = plan.samples
                if kind is _Kind.RELABELED:
                    # The steady state: the parser shares an unchanged line's Sample and an unchanged series
                    # text's name and Labels, so each position is the previous scrape's series and its output
                    # is the previous one, with this scrape's value (or the very same when the line is).
                    outputs: list[Sample | None] = []
                    add = outputs.append
                    for sample, p, o in zip(samples, before, plan.outputs):
                        if sample is p:
                            add(o)
                        elif sample[1] is p[1] and sample[0] == p[0]:
                            add(new_sample(sample_type, (o[0], o[1], sample[2], sample[3], sample[4])))  # type: ignore[index]
                        else:
                            break
                    else:
                        relabeled = tuple(outputs)      # kept as the plan: the family's own samples
                        now[family.name] = _Plan(samples, relabeled, kind)
                        out.append(family._replace(samples=relabeled))     # type: ignore[arg-type]
                        continue
                elif (kind is not _Kind.MIXED and all(map(is_, map(_LABELS, samples), map(_LABELS, before)))
                      and list(map(_NAME, samples)) == list(map(_NAME, before))):
                    # Every series at its previous position: the family passes as it is, or is dropped whole.
                    if kind is _Kind.UNCHANGED:
                        now[family.name] = _Plan(samples, samples, kind)
                        out.append(family)
                        continue
                    if kind is _Kind.DROPPED:
                        now[family.name] = _Plan(samples, plan.outputs, kind)
                        dropped += len(samples)
                        example = example or family.name
                        continue
            plan = now[family.name] = self._family(family, plan, out, moved, moved_meta)
            n = plan.outputs.count(None)
            if n:
                dropped += n
                example = example or family.name
        # Only this scrape's families are remembered: a family gone from the exposition is forgotten.
        self._last = now
        for name, renamed in moved.items():
            out.append(moved_meta[name]._replace(samples=tuple(renamed)))
        return out, dropped, example

    def _family(self, family: MetricFamily, prev: _Plan | None, out: list[MetricFamily],
                moved: dict[str, list[Sample]], moved_meta: dict[str, MetricFamily]) -> _Plan:
        """One family sample by sample: kept samples go to ``out`` (the family itself when none changed),
        renamed ones to ``moved``; returns its plan for the next scrape.

        A position that still holds the previous scrape's series (same name, the very same Labels) reuses
        its output. Lines added or removed before a series shift it: the previous position of its very
        Labels (the parser shares them for a shifted line too) gives the shift, and the positions after it
        are tried with that shift first, as the parser does. A series whose Labels are new objects (a line
        the parser parsed afresh) runs the rules, and past ``_RUN_BEFORE_INDEX`` of them in the family is
        looked up by content (name and label pairs in order) among the previous scrape's series of the
        family: only a series not among them runs the rules then."""
        samples = family.samples
        prev_samples: Sequence[Sample] = () if prev is None else prev.samples
        prev_outputs: Sequence[Sample | None] = () if prev is None else prev.outputs
        n_prev = len(prev_samples)
        # Built on the first miss only: (id of the Labels, name) → previous position (those Labels are
        # alive, held by the previous plan, so an id names one of them); content → previous position.
        at: dict[tuple[int, str], int] | None = None
        by_content: dict[tuple[str, tuple[str, ...]], int] | None = None
        shift = misses = 0
        new_sample = tuple.__new__
        outputs: list[Sample | None] = []
        kept: list[Sample] = []
        unchanged = relabeled = all_dropped = True
        for i, sample in enumerate(samples):
            name = sample[0]
            j = i + shift
            p = prev_samples[j] if 0 <= j < n_prev else None
            if p is None or (sample is not p and (sample[1] is not p[1] or p[0] != name)):
                if at is None:
                    at = {(id(q[1]), q[0]): k for k, q in enumerate(prev_samples)}
                k = at.get((id(sample[1]), name))
                if k is not None:
                    shift = k - i
                elif by_content is not None:
                    k = by_content.get((name, sample[1].flat))
                else:
                    # A new series most of the time: running its rules costs less than indexing a large
                    # family, until a few such series make the index worth it.
                    misses += 1
                    if misses > _RUN_BEFORE_INDEX:
                        by_content = {(q[0], q[1].flat): k for k, q in enumerate(prev_samples)}
                        k = by_content.get((name, sample[1].flat))
                if k is None:
                    p = sample
                    o = self._output(sample)
                else:
                    p = prev_samples[k]
                    o = prev_outputs[k]
            else:
                o = prev_outputs[j]
            if o is p:
                o = sample      # the series as it was (a new value, maybe)
            elif o is not None and sample is not p:
                o = new_sample(Sample, (o[0], o[1], sample[2], sample[3], sample[4]))
            outputs.append(o)
            if o is None:
                unchanged = relabeled = False
                continue
            all_dropped = False
            if o[0] == name:
                if o is not sample:
                    unchanged = False
                kept.append(o)
                continue
            unchanged = relabeled = False
            target = _family_of(family, name, o[0])
            moved.setdefault(target.name, []).append(o)
            moved_meta.setdefault(target.name, target)
        if unchanged:
            out.append(family)
        elif kept:
            out.append(family._replace(samples=tuple(kept)))
        kind = (_Kind.UNCHANGED if unchanged else _Kind.RELABELED if relabeled
                else _Kind.DROPPED if all_dropped else _Kind.MIXED)
        return _Plan(family.samples, tuple(outputs), kind)

    def _output(self, sample: Sample) -> Sample | None:
        """What a series not seen in the previous scrape becomes: None when dropped, ``sample`` itself
        when unchanged."""
        name, labels = sample[0], sample[1]
        result = self._series(name, labels)
        if result is None:
            return None
        if result[0] == name and result[1] is labels:
            return sample
        return Sample(result[0], result[1], sample[2], sample[3], sample[4])

    def _series(self, name: str, labels: Labels) -> _Result:
        lset = _nonempty(labels)
        for key, value in self._added:
            if key in lset:
                if self._honor:
                    continue
                lset[_exported(key, lset)] = lset.pop(key)
            lset[key] = value
        if not self._configs:
            if not self._added:
                return name, labels
            return name, _ordered(lset)
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
        if new_name == name and result == _nonempty(labels):
            return name, labels
        return new_name, _ordered(result)


def _nonempty(labels: Labels) -> dict[str, str]:
    """The labels with a value, as a dict (an empty value is no label, as in Prometheus). Built from the flat
    tuple: going through the Mapping protocol (``items()``) costs a linear ``__getitem__`` per label."""
    flat = labels.flat
    out = dict(zip(flat[0::2], flat[1::2]))
    if len(out) * 2 != len(flat):       # a name twice: the Mapping's answer (its first value) is the one
        return {k: v for k, v in labels.items() if v}
    if "" in out.values():
        return {k: v for k, v in out.items() if v}
    return out


def _ordered(lset: dict[str, str]) -> Labels:
    """``lset`` as Labels with ``le``/``quantile`` moved last (see ``_TRAILING``)."""
    for key in _TRAILING:
        if key in lset:
            lset[key] = lset.pop(key)
    return Labels.from_flat(tuple(chain.from_iterable(lset.items())))


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
