"""Families being built, and the rules a finished OpenMetrics family must pass.

Prometheus text has few family rules (which family a sample belongs to, from its name; see
``prometheus``). OpenMetrics has many; ``FamilyRules`` holds them, per target, in three groups:

* names: a family's names (its name and the sample names of its type) are used by no other family,
  i.e. families do not repeat and do not overlap;
* unit: a UNIT matches the end of the metric name, and info and stateset families have none;
* samples: grouping (the samples of one series group are consecutive, timestamps on all or none and
  never going backwards), histogram structure (``le`` order, cumulative buckets, ``+Inf`` bucket
  equal to ``_count``, ``_sum``/``_count`` together), value limits (non-negative integer counts,
  counters not negative or NaN, quantiles in [0, 1], stateset 0/1, info 1), and which samples may
  carry exemplars.

The sample rules run in two ways that must agree: the reference ``check_samples`` walks the samples in
order and raises the error of the first offending line; ``check`` runs the structural rules once per
family structure (``plan.build_plan``) and the value rules per scrape (``Plan.values_ok``), and hands
anything they do not accept to the reference, so both reject exactly the same input.

How strict the rules are is a parameter, ``Strictness``. This release has one strictness, ``STRICT``:
every rule of OpenMetrics 1.0 and its conformance suite, on every scrape (what ``promotel lint``
checks). A lenient strictness for scraping, accepting what Prometheus' own scraper accepts, would
choose in ``FamilyRules.finish`` which groups run.
"""

from __future__ import annotations

import enum
import math

from promotel.errors import ExpositionError
from promotel.exposition.plan import Plan, build_plan
from promotel.exposition.tokens import EMPTY_LABELS, clip, num, parse_value
from promotel.model import Labels, MetricFamily, Sample

__all__ = ["OM_SUFFIXES", "FamilyBuilder", "FamilyRules", "Strictness"]

_INF = math.inf

# OpenMetrics: the sample-name suffixes each family type allows.
OM_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "histogram": ("_count", "_sum", "_bucket", "_created"),
    "gaugehistogram": ("_gcount", "_gsum", "_bucket"),
    "info": ("_info",),
}


class FamilyBuilder:
    """A family being built. ``first_line`` is the line of its first sample (OpenMetrics keeps a
    family's samples on consecutive lines, so sample i is on line ``first_line + i``); ``allowed``
    maps the sample names the family owns to their suffix (OpenMetrics)."""

    __slots__ = (
        "allowed",
        "declared",
        "first_line",
        "help",
        "help_line",
        "name",
        "samples",
        "type",
        "type_line",
        "unit",
        "unit_line",
    )

    def __init__(self, name: str, typ: str) -> None:
        self.name = name
        self.type = typ
        self.help: str | None = None
        self.unit: str | None = None
        self.samples: list[Sample] = []
        self.allowed: dict[str, str] = {}
        self.first_line = 0
        self.type_line = 0
        self.help_line = 0
        self.unit_line = 0
        self.declared = False

    def freeze(self) -> MetricFamily:
        return MetricFamily(self.name, self.type, self.help, self.unit or None, tuple(self.samples))


class Strictness(enum.Enum):
    """Which OpenMetrics family rules a parse enforces."""

    STRICT = "strict"
    """Every rule of OpenMetrics 1.0 and its conformance suite."""


class FamilyRules:
    """The OpenMetrics family rules of one target, with what they keep between its scrapes: the
    checked structure (``Plan``) of each family, the valid ``le`` and ``quantile`` texts, and the
    series groups of label sets. Everything is bounded by ``max_entries`` (0 keeps no plans)."""

    def __init__(self, strictness: Strictness = Strictness.STRICT, max_entries: int = 1_000_000) -> None:
        self.strictness = strictness
        self._max_entries = max(0, max_entries)
        self._plans: dict[str, Plan] = {}      # family name → its checked structure
        self._le_memo: dict[str, float] = {}   # valid bucket bounds
        self._q_memo: dict[str, float] = {}    # valid quantiles
        # Keyed by the labels' flat tuple, not the Labels: Labels equality ignores the order of the
        # pairs, and the group's labels are printed in errors in the order of the line at hand.
        self._group_memo: dict[tuple[tuple[str, ...], str], Labels] = {}

    def forget(self) -> None:
        """Drop the family structures (the samples were parsed under another dialect's syntax)."""
        self._plans = {}

    def finish(self, fam: FamilyBuilder, seen_names: set[str]) -> None:
        """Check a family that is complete (its last line was read); ``seen_names`` holds the names
        of the families before it in this exposition, and gets this one's. Raises the error of the
        first rule it breaks."""
        # Strictness.STRICT: every group of rules.
        self._check_names(fam, seen_names)
        self._check_unit(fam)
        if fam.samples:
            self.check(fam)

    def _check_names(self, fam: FamilyBuilder, seen_names: set[str]) -> None:
        name = fam.name
        line = fam.first_line or fam.type_line or fam.help_line or fam.unit_line
        for sfx in set(OM_SUFFIXES.get(fam.type, ()) + ("",)):
            if name + sfx in seen_names:
                raise ExpositionError(
                    f'the name "{name + sfx}" is used by two metric families; families must not '
                    "repeat or overlap (samples of one family must be consecutive)", line)
            seen_names.add(name + sfx)

    def _check_unit(self, fam: FamilyBuilder) -> None:
        typ = fam.type
        if fam.unit:
            if not fam.name.endswith("_" + fam.unit):
                raise ExpositionError(
                    f'unit "{clip(fam.unit)}" does not match the metric name "{fam.name}"; the name must '
                    f'end with "_{clip(fam.unit)}"', fam.unit_line)
            if typ in ("info", "stateset"):
                raise ExpositionError(
                    f"{'an' if typ == 'info' else 'a'} {typ} metric cannot have a unit; remove the UNIT line",
                    fam.unit_line)

    def check(self, fam: FamilyBuilder) -> None:
        """The sample rules of a family with samples: by its plan when it has one (built now if its
        structure is new), else, or when the plan does not accept the values, by the reference."""
        samples = fam.samples
        n = len(samples)
        names, labs, vals, tss, exs = zip(*samples)
        if tss.count(None) != n:
            # Timestamps add per-sample ordering rules; the reference handles them.
            self.check_samples(fam)
            return
        plans = self._plans
        plan = plans.get(fam.name)
        if plan is None or plan.type != fam.type or plan.names != names or plan.labels != labs:
            plan = build_plan(fam.type, fam.name, fam.allowed, names, labs, self._le_memo, self._q_memo)
            if plan is None:
                self.check_samples(fam)           # raises the structural error
                return
            if self._max_entries:
                if len(plans) >= self._max_entries:
                    plans.clear()
                plans[fam.name] = plan
        if (exs.count(None) == n or plan.exemplars_ok(exs)) and plan.values_ok(vals):
            return
        self.check_samples(fam)                   # raises the value error

    def _group(self, labels: Labels, drop: str) -> Labels:
        key = (labels.flat, drop)
        g = self._group_memo.get(key)
        if g is None:
            g = labels.without(drop) if drop else labels
            if len(self._group_memo) >= self._max_entries:
                self._group_memo.clear()
            self._group_memo[key] = g
        return g

    def check_samples(self, fam: FamilyBuilder) -> None:
        """The reference pass: every rule, sample by sample in line order; raises the error of the
        first offending line."""
        name = fam.name
        typ = fam.type
        allowed = fam.allowed
        line0 = fam.first_line
        is_hist = typ in ("histogram", "gaugehistogram")
        group: Labels | None = None
        group_ts: int | None = None
        seen_groups: set[Labels] = set()
        for idx, s in enumerate(fam.samples):
            lineno = line0 + idx
            sname, labels, value, ts, exemplar = s
            sfx = allowed[sname]
            drop = ""
            if sfx == "_bucket":
                le = labels.get("le")
                if le is None or le == "NaN":
                    raise ExpositionError(f'histogram bucket "{sname}" needs an "le" label', lineno)
                b = parse_value(le)
                if b is None or math.isnan(b) or (b - b != 0.0 and le not in ("+Inf", "-Inf")):
                    raise ExpositionError(
                        f'invalid "le" label value "{clip(le)}"; expected a number or "+Inf"', lineno)
                if not value.is_integer() or value < 0:
                    raise ExpositionError(
                        f'bucket value {num(value)} of "{sname}" must be a non-negative integer', lineno)
                drop = "le"
            elif sfx in ("_count", "_gcount"):
                if not value.is_integer() or value < 0:
                    raise ExpositionError(
                        f'"{sname}" must be a non-negative integer, found {num(value)}', lineno)
            elif sfx in ("_total", "_sum"):
                if math.isnan(value) or value < 0:
                    raise ExpositionError(
                        f'"{sname}" is a counter-like value and cannot be {num(value)}', lineno)
            elif sfx == "_gsum":
                if math.isnan(value):
                    raise ExpositionError(f'"{sname}" cannot be NaN', lineno)
            elif typ == "summary" and sfx == "":
                q = labels.get("quantile")
                qv = parse_value(q) if q is not None else None
                if q is None or qv is None or not (0.0 <= qv <= 1.0):
                    raise ExpositionError(
                        f'summary quantile sample "{sname}" needs a "quantile" label between 0 and 1, '
                        f"found {q!r}", lineno)
                if value < 0:
                    raise ExpositionError(f"quantile values cannot be negative, found {num(value)}", lineno)
                drop = "quantile"
            elif typ == "stateset":
                if name not in labels:
                    raise ExpositionError(
                        f'stateset sample needs a label named after the metric ("{name}")', lineno)
                if value != 0.0 and value != 1.0:
                    raise ExpositionError(f"stateset values must be 0 or 1, found {num(value)}", lineno)
                drop = name
            elif typ == "info" and value != 1.0:
                raise ExpositionError(f"info values must be 1, found {num(value)}", lineno)
            if exemplar is not None and not ((is_hist and sfx == "_bucket")
                                             or (typ == "counter" and sfx == "_total")):
                raise ExpositionError(
                    "only counter _total samples and histogram buckets can have exemplars", lineno)
            # Grouping: the samples of one series group (labels without le/quantile/state) must be
            # consecutive, with timestamps on all or none of them, never going backwards.
            g = EMPTY_LABELS if typ == "info" else self._group(labels, drop)
            if g is group or g == group:
                if (ts is None) != (group_ts is None):
                    raise ExpositionError(
                        "some samples of this series group have a timestamp and some do not", lineno)
                if ts is not None and group_ts is not None and ts < group_ts and typ != "info":
                    raise ExpositionError("timestamps go backwards within a series group", lineno)
            else:
                if g in seen_groups:
                    raise ExpositionError(
                        f'samples of "{name}" with labels {dict(g.pairs())!r} are not consecutive; '
                        "all samples of a series group must be together", lineno)
                seen_groups.add(g)
            group = g
            group_ts = ts
        if is_hist:
            self._check_histogram(fam)

    def _check_histogram(self, fam: FamilyBuilder) -> None:
        """Per series group (and timestamp): buckets ascending and cumulative, a +Inf bucket equal to
        _count, _sum/_count together, no _sum with negative buckets (OpenMetrics 1.0)."""
        allowed = fam.allowed
        name = fam.name
        line0 = fam.first_line
        state: list[object] | None = None
        # state: [group, ts, last_le, last_value, count, has_sum, has_gsum, neg_buckets, neg_gsum, line]
        cur_group: Labels | None = None
        cur_ts: int | None = None

        def check(st: list[object]) -> None:
            last_le, last_val, count, has_sum, has_gsum, neg_b, neg_gsum, ln = st[2:]
            assert isinstance(ln, int) and isinstance(last_val, float)
            if last_le != _INF:
                raise ExpositionError(f'histogram "{name}" is missing its le="+Inf" bucket', ln)
            if isinstance(count, float) and last_val != count:
                raise ExpositionError(
                    f'the _count of histogram "{name}" ({num(count)}) differs from its +Inf bucket '
                    f"({num(last_val)})", ln)
            if has_sum and count is None:
                raise ExpositionError(f'histogram "{name}" has a _sum but no _count', ln)
            if has_gsum and count is None:
                raise ExpositionError(f'gauge histogram "{name}" has a _gsum but no _gcount', ln)
            if count is not None and not (has_sum or has_gsum):
                raise ExpositionError(f'histogram "{name}" has a _count/_gcount but no _sum/_gsum', ln)
            if neg_b and has_sum:
                raise ExpositionError(
                    f'histogram "{name}" has negative buckets, so it cannot have a _sum', ln)
            if neg_gsum and not neg_b:
                raise ExpositionError(
                    f'gauge histogram "{name}" has a negative _gsum but no negative buckets', ln)

        for idx, s in enumerate(fam.samples):
            sfx = allowed[s[0]]
            labels = s[1]
            g = self._group(labels, "le") if sfx == "_bucket" else self._group(labels, "")
            ts = s[3]
            if state is None or not (g is cur_group or g == cur_group) or ts != cur_ts:
                if state is not None:
                    check(state)
                state = [g, ts, None, 0.0, None, False, False, False, False, line0 + idx]
            cur_group = g
            cur_ts = ts
            state[9] = line0 + idx
            v = s[2]
            if sfx == "_bucket":
                b = float(labels["le"])
                if b < 0:
                    state[7] = True
                last = state[2]
                if last is not None and isinstance(last, float) and b <= last:
                    raise ExpositionError(
                        f'buckets of histogram "{name}" are not in increasing "le" order', line0 + idx)
                prev = state[3]
                assert isinstance(prev, float)
                if v < prev:
                    raise ExpositionError(
                        f'bucket counts of histogram "{name}" decrease; buckets are cumulative',
                        line0 + idx)
                state[2] = b
                state[3] = v
            elif sfx in ("_count", "_gcount"):
                state[4] = v
            elif sfx == "_sum":
                state[5] = True
            elif sfx == "_gsum":
                state[6] = True
                if v < 0:
                    state[8] = True
        if state is not None:
            check(state)
