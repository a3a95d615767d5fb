"""Families being built, the rules a finished OpenMetrics family must pass, and how strictly they apply.

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
order and reports every offending line; ``check`` runs the structural rules once per family structure
(``plan.build_plan``) and the value rules per scrape (``Plan.values_ok``), and hands anything they do
not accept to the reference, so both find exactly the same input at fault.

How strict the rules are is a parameter, ``Strictness``, applied by one ``Enforcer`` per parser: every
place a rule can be broken calls ``Enforcer.broken(rule, text, line)``. Under ``STRICT`` that raises the
``ExpositionError`` (the first rule broken fails the parse: what ``promotel lint`` reports); under
``SCRAPE`` it records a ``Leniency`` (the rule, the line of its first use, the very text ``STRICT`` would
have raised, and how many times the scrape used it) and the parse goes on with what Prometheus does with
the data. Only the rules of ``Rule`` go through the enforcer; the lexical grammar, ``# EOF`` and the
UNIT suffix raise under both (Prometheus' own parsers enforce them). One rule is a reading of
``SCRAPE``'s own rather than a check ``STRICT`` makes: ``Rule.ESCAPED_NAME`` (samples written with the
escaped form of their family's name, see ``escaped_name``), which ``STRICT`` does not apply at all. The
table of the rules and what ``SCRAPE`` does with each is in the package docstring (``promotel.exposition``).
"""

from __future__ import annotations

import bisect
import enum
import math
import re
from dataclasses import dataclass

from promotel.errors import ExpositionError
from promotel.exposition.plan import Plan, build_plan, le_bound
from promotel.exposition.tokens import EMPTY_LABELS, clip, num, parse_value
from promotel.model import Labels, MetricFamily, Sample

__all__ = ["OM_SUFFIXES", "PROM_ONLY", "Enforcer", "FamilyBuilder", "FamilyRules", "Leniency", "Rule",
           "Strictness", "escaped_name", "escaped_name_text", "family_unique_text", "om_allowed", "quoted_name_text"]

_INF = math.inf

# OpenMetrics: the sample-name suffixes each family type allows.
OM_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "histogram": ("_count", "_sum", "_bucket", "_created"),
    "gaugehistogram": ("_gcount", "_gsum", "_bucket"),
    "info": ("_info",),
}
# The "suffix" of a sample name that Prometheus counts in a family and OpenMetrics does not: the
# family's own name for the types whose OpenMetrics sample names all carry a suffix (counter ``a``
# with a sample ``a``, histogram ``a`` with ``a``, info ``a`` with ``a``). Prometheus 3 attaches a
# family's metadata to such a sample (scrape.isSeriesPartOfFamily); only ``SCRAPE`` allows it.
PROM_ONLY = "\x00"
_PROM_ONLY_TYPES = frozenset({"counter", "histogram", "gaugehistogram", "info"})
# What prometheus_client's "underscores" escaping replaces by "_" in a sample name: its label-name
# character set, which has no ":" (its HELP/TYPE/UNIT names use the metric-name set, which keeps ":").
_NOT_LEGACY_LABEL_CHAR = re.compile(r"[^a-zA-Z0-9_]")


def family_unique_text(name: str) -> str:
    """What breaking ``Rule.FAMILY_UNIQUE`` on name ``name`` says."""
    return (f'the name "{name}" is used by two metric families; families must not repeat or overlap '
            "(samples of one family must be consecutive)")


def quoted_name_text(quoted: str, om: bool) -> str:
    """What breaking ``Rule.QUOTED_NAME`` says: ``quoted`` names the first quoted name of the line
    (``label name "a.b"``), ``om`` whether the exposition is OpenMetrics (else Prometheus text 0.0.4)."""
    if om:
        return (f"quoted {quoted}: OpenMetrics 1.0 names are unquoted; quoted (UTF-8) names need "
                "escaping=allow-utf-8 in the Content-Type (application/openmetrics-text; version=1.0.0; "
                "escaping=allow-utf-8), as Prometheus 3 negotiates them")
    return (f"quoted {quoted}: quoted (UTF-8) names need the text format version 1.0.0 "
            "(Content-Type: text/plain; version=1.0.0)")


def escaped_name(name: str) -> str:
    """``name`` as prometheus_client (0.23 and later) escapes a sample name for an exposition answered with
    ``escaping=underscores`` (OpenMetrics asked for without ``escaping=allow-utf-8``): every character
    outside ``[a-zA-Z0-9_]`` becomes ``_`` (and a leading digit, which a legacy metric name never has). Its
    ``# HELP``/``# TYPE``/``# UNIT`` lines escape the same name with Prometheus' own "underscores" scheme,
    which keeps ``:`` (legal in legacy names) and leaves a legacy-valid name as it is, so ``vllm:x`` is
    declared ``vllm:x`` and its samples are written ``vllm_x_total`` (prometheus/client_python issue 1177).
    An unquoted name in an OpenMetrics metadata line is legacy-valid, so the two spellings differ exactly in
    its colons (with ``escaping=underscores`` nothing is quoted). The other schemes (``dots``, ``values`` with its ``U__`` prefix) are only answered to an Accept
    that asks for them, and promotel's never does."""
    return _NOT_LEGACY_LABEL_CHAR.sub("_", name)


def escaped_name_text(sample: str, declared: str, escaped: str) -> str:
    """What ``Rule.ESCAPED_NAME`` says of the first sample ``sample`` of family ``declared`` written under the
    escaped name ``escaped``."""
    return (f'sample "{sample}" is named after "{escaped}", the escaped form of the family "{declared}" declared '
            f'before it, and is read as that family\'s, named "{escaped}"; write the family\'s name the same way '
            "in its metadata lines and its samples")


def om_allowed(name: str, typ: str, strictness: Strictness) -> dict[str, str]:
    """The sample names an OpenMetrics family ``name`` of type ``typ`` owns, each with its suffix (``SCRAPE``
    adds the family's own name as ``PROM_ONLY`` where Prometheus counts it in the family)."""
    allowed = {name + sfx: sfx for sfx in OM_SUFFIXES.get(typ, ("",))}
    if strictness is Strictness.SCRAPE and typ in _PROM_ONLY_TYPES and name not in allowed:
        allowed[name] = PROM_ONLY
    return allowed


class Strictness(enum.Enum):
    """Which family rules a parse enforces."""

    STRICT = "strict"
    """Every rule of OpenMetrics 1.0 and its conformance suite, and of the Prometheus text format
    (one HELP and one TYPE per metric, TYPE before the samples): the first rule broken fails the parse.
    What ``promotel lint`` checks, and the default of ``parse_exposition`` and ``ExpositionParser``."""

    SCRAPE = "scrape"
    """What Prometheus' scraper accepts: the grammar and the rules Prometheus enforces fail the parse,
    every other rule (``Rule``) is tolerated, each use recorded as a ``Leniency``. For the bridge's
    scrapes (``run``, ``check``, ``map``): a target is never lost for a rule Prometheus does not enforce."""


class Rule(enum.StrEnum):
    """The rules ``SCRAPE`` tolerates (Prometheus does not enforce them). The value is the rule's id,
    as logged and counted; the package docstring says what ``SCRAPE`` does with each."""

    QUOTED_NAME = "quoted-name"
    """A quoted (UTF-8) metric or label name (``{"a.b"}``, ``"a.b"="v"``, ``# TYPE "a.b" gauge``) in an exposition
    whose Content-Type does not declare quoted names (``tokens.detect_dialect``): OpenMetrics without
    ``escaping=allow-utf-8``, Prometheus text 0.0.4. ``SCRAPE`` reads it as Prometheus 3 does (its parsers
    read quoted names whatever the Content-Type; Prometheus 2 refuses them). Counted once per line."""
    METADATA_REPEATED = "metadata-repeated"
    """A second HELP, TYPE or UNIT line for one family."""
    METADATA_AFTER_SAMPLES = "metadata-after-samples"
    """A HELP, TYPE or UNIT line (Prometheus text: a TYPE line) after the family's samples."""
    FAMILY_UNIQUE = "family-unique"
    """OpenMetrics: a name used by two families (a family repeated or overlapping another, samples of a
    family after another family's, a sample name OpenMetrics does not give the family's type)."""
    ESCAPED_NAME = "escaped-name"
    """OpenMetrics: the first sample of a family declared by its metadata lines is named after the family's
    escaped name (``escaped_name``) with a suffix of its type (``vllm_x_total`` under ``# TYPE vllm:x
    counter``); ``SCRAPE`` reads such samples as the family's, which takes the escaped name. A reading of
    ``SCRAPE``'s own: ``STRICT`` does not apply it (to ``STRICT`` the samples are families of their own, of
    type unknown), and Prometheus neither (it keeps no metadata for them). Counted once per family."""
    UNIT_TYPE = "unit-type"
    """OpenMetrics: a UNIT on an info or stateset family."""
    SERIES_GROUPING = "series-grouping"
    """OpenMetrics: the samples of one series group (labels without le/quantile/state) not together."""
    SERIES_TIMESTAMPS = "series-timestamps"
    """OpenMetrics: timestamps on some samples of a series group only, or going backwards."""
    BUCKET_LE = "bucket-le"
    """OpenMetrics: a histogram bucket without a valid ``le`` label."""
    QUANTILE_LABEL = "quantile-label"
    """OpenMetrics: a summary quantile without a ``quantile`` label in [0, 1]."""
    STATESET_LABEL = "stateset-label"
    """OpenMetrics: a stateset sample without the label named after the metric."""
    COUNT_VALUE = "count-value"
    """OpenMetrics: a bucket, ``_count`` or ``_gcount`` that is not a non-negative integer."""
    COUNTER_VALUE = "counter-value"
    """OpenMetrics: a ``_total`` or ``_sum`` that is negative or NaN."""
    GSUM_VALUE = "gsum-value"
    """OpenMetrics: a ``_gsum`` that is NaN."""
    QUANTILE_VALUE = "quantile-value"
    """OpenMetrics: a negative quantile value."""
    STATESET_VALUE = "stateset-value"
    """OpenMetrics: a stateset value other than 0 and 1."""
    INFO_VALUE = "info-value"
    """OpenMetrics: an info value other than 1."""
    HISTOGRAM_STRUCTURE = "histogram-structure"
    """OpenMetrics: buckets out of ``le`` order or not cumulative, no ``+Inf`` bucket, ``_count`` other
    than the ``+Inf`` bucket, ``_sum`` without ``_count`` or the reverse, negative buckets with a
    ``_sum``, a negative ``_gsum`` without negative buckets."""
    EXEMPLAR_PLACEMENT = "exemplar-placement"
    """OpenMetrics: an exemplar on a sample other than a counter's ``_total`` or a histogram bucket."""
    EXEMPLAR_LENGTH = "exemplar-length"
    """OpenMetrics: exemplar labels longer than 128 characters (names and values together)."""
    EXEMPLAR_LABELS = "exemplar-labels"
    """OpenMetrics: an exemplar label name repeated."""


@dataclass(frozen=True, slots=True)
class Leniency:
    """One rule a ``SCRAPE`` parse tolerated: the rule, the line (1-based) of its first use in the
    exposition, the text ``STRICT`` (``promotel lint``) reports there (for ``Rule.ESCAPED_NAME``, which
    ``STRICT`` does not apply, what ``SCRAPE`` read otherwise, in the same style), and how many times the
    exposition broke it (a family-level rule counts once per family, a line-level rule once per line)."""

    rule: Rule
    line: int
    text: str
    count: int


class Enforcer:
    """Applies a ``Strictness`` where a rule is broken: raises (``STRICT``) or records (``SCRAPE``).

    Under ``SCRAPE`` it keeps, per parse, one entry per rule (the earliest line) and a count: bounded
    by the number of rules whatever the exposition."""

    __slots__ = ("_counts", "_first", "strict", "strictness")

    def __init__(self, strictness: Strictness = Strictness.STRICT) -> None:
        self.strictness = strictness
        self.strict = strictness is Strictness.STRICT
        self._first: dict[Rule, tuple[int, str]] = {}
        self._counts: dict[Rule, int] = {}

    def broken(self, rule: Rule, text: str, line: int) -> None:
        """Rule ``rule`` is broken at ``line``; ``text`` is the error ``STRICT`` raises (for
        ``Rule.ESCAPED_NAME``, which only ``SCRAPE`` applies, what ``SCRAPE`` read otherwise)."""
        if self.strict:
            raise ExpositionError(text, line)
        n = self._counts.get(rule, 0)
        self._counts[rule] = n + 1
        if n == 0 or line < self._first[rule][0]:
            self._first[rule] = (line, text)

    def reset(self) -> None:
        """Forget what the previous parse tolerated (called as a parse starts)."""
        if self._counts:
            self._first = {}
            self._counts = {}

    def leniencies(self) -> tuple[Leniency, ...]:
        """What this parse tolerated, by line."""
        out = [Leniency(rule, line, text, self._counts[rule]) for rule, (line, text) in self._first.items()]
        out.sort(key=lambda e: e.line)          # stable: on one line, in the order they were met
        return tuple(out)


class FamilyBuilder:
    """A family being built. ``first_line`` is the line of its first sample (OpenMetrics keeps a
    family's samples on consecutive lines, so sample i is on line ``first_line + i``; under ``SCRAPE``
    a family continued after other lines records where in ``runs``); ``allowed`` maps the sample
    names the family owns to their suffix (OpenMetrics). ``declared_name`` is the name its metadata
    lines use: ``name`` too, unless ``SCRAPE`` read its samples under the escaped name
    (``Rule.ESCAPED_NAME``), which the family then takes."""

    __slots__ = (
        "allowed",
        "declared",
        "declared_name",
        "first_line",
        "foreign",
        "help",
        "help_line",
        "name",
        "runs",
        "samples",
        "type",
        "type_line",
        "unit",
        "unit_line",
    )

    def __init__(self, name: str, typ: str) -> None:
        self.name = name
        self.declared_name = name
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
        # SCRAPE only: the (sample index, line) where each later run of consecutive samples starts,
        # and whether a sample has a PROM_ONLY name.
        self.runs: list[tuple[int, int]] | None = None
        self.foreign = False

    def continue_at(self, line: int) -> None:
        """The next sample, on ``line``, continues the family after other lines."""
        if self.runs is None:
            self.runs = [(0, self.first_line)]
        self.runs.append((len(self.samples), line))

    def continues(self, other: FamilyBuilder) -> bool:
        """Whether ``other``, a later block of this family's name, is the same family: it contradicts
        nothing this one declared (the same type, or this one's is unknown; the same unit, or this
        one has none). A HELP may change (the last one wins, as in Prometheus' metadata)."""
        return ((self.type == other.type or self.type == "unknown")
                and (self.unit == other.unit or not self.unit))

    def absorb(self, other: FamilyBuilder) -> None:
        """Take in ``other`` (a later block that ``continues`` this family): its metadata, then its
        samples after this one's, keeping their lines."""
        if other.samples:
            if not self.samples:
                self.first_line = other.first_line
            else:
                if self.runs is None:
                    self.runs = [(0, self.first_line)]
                base = len(self.samples)
                self.runs.extend((base + i, line) for i, line in (other.runs or [(0, other.first_line)]))
            self.samples.extend(other.samples)
        if other.type != self.type:
            self.type = other.type
            self.type_line = other.type_line
        if other.unit and not self.unit:
            self.unit = other.unit
            self.unit_line = other.unit_line
        if other.help is not None:
            self.help = other.help
            self.help_line = other.help_line
        allowed = self.allowed = {**self.allowed, **other.allowed}
        self.foreign = self.foreign or other.foreign or any(allowed[s[0]] is PROM_ONLY for s in self.samples)

    def lines(self) -> range | list[int]:
        """The line of each sample."""
        n = len(self.samples)
        runs = self.runs
        if runs is None:
            return range(self.first_line, self.first_line + n)
        out: list[int] = []
        for k, (start, line) in enumerate(runs):
            end = runs[k + 1][0] if k + 1 < len(runs) else n
            out.extend(range(line, line + end - start))
        return out

    def line_of(self, idx: int) -> int:
        """The line of sample ``idx``."""
        runs = self.runs
        if runs is None:
            return self.first_line + idx
        k = bisect.bisect_right(runs, (idx, math.inf)) - 1
        start, line = runs[k]
        return line + idx - start

    def freeze(self) -> MetricFamily:
        return MetricFamily(self.name, self.type, self.help, self.unit or None, tuple(self.samples))


class FamilyRules:
    """The OpenMetrics family rules of one target, with what they keep between its scrapes: the
    checked structure (``Plan``) of each family, the valid ``le`` and ``quantile`` texts, and the
    series groups of label sets. Everything is bounded by ``max_entries`` (0 keeps no plans).
    ``enforcer`` applies the strictness (and collects a ``SCRAPE`` parse's leniencies)."""

    def __init__(self, strictness: Strictness = Strictness.STRICT, max_entries: int = 1_000_000) -> None:
        self.strictness = strictness
        self.enforcer = Enforcer(strictness)
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
        of the families before it in this exposition, and gets this one's."""
        self.check_names(fam, seen_names)
        self.check_family(fam)

    def check_names(self, fam: FamilyBuilder, seen_names: set[str]) -> None:
        """The names rule: none of the family's names (its name, then its sample names in the order of
        ``OM_SUFFIXES``) belongs to a family before it; a family breaks it once, on its first such name."""
        name = fam.name
        line = fam.first_line or fam.type_line or fam.help_line or fam.unit_line
        clash = False
        for sfx in dict.fromkeys(("",) + OM_SUFFIXES.get(fam.type, ())):
            if not clash and name + sfx in seen_names:
                clash = True
                self.enforcer.broken(Rule.FAMILY_UNIQUE, family_unique_text(name + sfx), line)
            seen_names.add(name + sfx)

    def check_family(self, fam: FamilyBuilder) -> None:
        """The unit and sample rules of a family (the names rule aside)."""
        self._check_unit(fam)
        if fam.samples:
            self.check(fam)

    def _check_unit(self, fam: FamilyBuilder) -> None:
        typ = fam.type
        if fam.unit:
            if not fam.name.endswith("_" + fam.unit):
                # Prometheus refuses this too ("unit not a suffix of metric"): not a leniency.
                raise ExpositionError(
                    f'unit "{clip(fam.unit)}" does not match the metric name "{fam.name}"; the name must '
                    f'end with "_{clip(fam.unit)}"', fam.unit_line)
            if typ in ("info", "stateset"):
                self.enforcer.broken(
                    Rule.UNIT_TYPE,
                    f"{'an' if typ == 'info' else 'a'} {typ} metric cannot have a unit; remove the UNIT line",
                    fam.unit_line)

    def check(self, fam: FamilyBuilder) -> None:
        """The sample rules of a family with samples: by its plan when it has one (built now if its
        structure is new), else, or when the plan does not accept the values, by the reference."""
        if fam.foreign:
            self.check_samples(fam)               # reports the samples OpenMetrics does not give it
            return
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
                self.check_samples(fam)           # reports the structural error
                return
            if self._max_entries:
                if len(plans) >= self._max_entries:
                    plans.clear()
                plans[fam.name] = plan
        if (exs.count(None) == n or plan.exemplars_ok(exs)) and plan.values_ok(vals):
            return
        self.check_samples(fam)                   # reports the value error

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
        """The reference pass: every rule, sample by sample in line order. ``STRICT`` raises the error
        of the first offending line; ``SCRAPE`` records every rule broken and goes on."""
        bad = self.enforcer.broken
        name = fam.name
        typ = fam.type
        allowed = fam.allowed
        is_hist = typ in ("histogram", "gaugehistogram")
        group: Labels | None = None
        group_ts: int | None = None
        seen_groups: set[Labels] = set()
        for s, lineno in zip(fam.samples, fam.lines()):
            sname, labels, value, ts, exemplar = s
            sfx = allowed[sname]
            if sfx is PROM_ONLY:
                # STRICT starts a family of this name, which clashes with this one.
                bad(Rule.FAMILY_UNIQUE, family_unique_text(sname), lineno)
                continue
            drop = ""
            if sfx == "_bucket":
                le = labels.get("le")
                if le is None or le == "NaN":
                    bad(Rule.BUCKET_LE, f'histogram bucket "{sname}" needs an "le" label', lineno)
                else:
                    b = parse_value(le)
                    if b is None or math.isnan(b) or (b - b != 0.0 and le not in ("+Inf", "-Inf")):
                        bad(Rule.BUCKET_LE,
                            f'invalid "le" label value "{clip(le)}"; expected a number or "+Inf"', lineno)
                if not value.is_integer() or value < 0:
                    bad(Rule.COUNT_VALUE,
                        f'bucket value {num(value)} of "{sname}" must be a non-negative integer', lineno)
                drop = "le"
            elif sfx in ("_count", "_gcount"):
                if not value.is_integer() or value < 0:
                    bad(Rule.COUNT_VALUE, f'"{sname}" must be a non-negative integer, found {num(value)}', lineno)
            elif sfx in ("_total", "_sum"):
                if math.isnan(value) or value < 0:
                    bad(Rule.COUNTER_VALUE, f'"{sname}" is a counter-like value and cannot be {num(value)}',
                        lineno)
            elif sfx == "_gsum":
                if math.isnan(value):
                    bad(Rule.GSUM_VALUE, f'"{sname}" cannot be NaN', lineno)
            elif typ == "summary" and sfx == "":
                q = labels.get("quantile")
                qv = parse_value(q) if q is not None else None
                if q is None or qv is None or not (0.0 <= qv <= 1.0):
                    bad(Rule.QUANTILE_LABEL,
                        f'summary quantile sample "{sname}" needs a "quantile" label between 0 and 1, '
                        f"found {q!r}", lineno)
                if value < 0:
                    bad(Rule.QUANTILE_VALUE, f"quantile values cannot be negative, found {num(value)}", lineno)
                drop = "quantile"
            elif typ == "stateset":
                if name not in labels:
                    bad(Rule.STATESET_LABEL,
                        f'stateset sample needs a label named after the metric ("{name}")', lineno)
                if value != 0.0 and value != 1.0:
                    bad(Rule.STATESET_VALUE, f"stateset values must be 0 or 1, found {num(value)}", lineno)
                drop = name
            elif typ == "info" and value != 1.0:
                bad(Rule.INFO_VALUE, f"info values must be 1, found {num(value)}", lineno)
            if exemplar is not None and not ((is_hist and sfx == "_bucket")
                                             or (typ == "counter" and sfx == "_total")):
                bad(Rule.EXEMPLAR_PLACEMENT,
                    "only counter _total samples and histogram buckets can have exemplars", lineno)
            # Grouping: the samples of one series group (labels without le/quantile/state) must be
            # consecutive, with timestamps on all or none of them, never going backwards.
            g = EMPTY_LABELS if typ == "info" else self._group(labels, drop)
            if g is group or g == group:
                if (ts is None) != (group_ts is None):
                    bad(Rule.SERIES_TIMESTAMPS,
                        "some samples of this series group have a timestamp and some do not", lineno)
                elif ts is not None and group_ts is not None and ts < group_ts and typ != "info":
                    bad(Rule.SERIES_TIMESTAMPS, "timestamps go backwards within a series group", lineno)
            else:
                if g in seen_groups:
                    bad(Rule.SERIES_GROUPING,
                        f'samples of "{name}" with labels {dict(g.pairs())!r} are not consecutive; '
                        "all samples of a series group must be together", lineno)
                seen_groups.add(g)
            group = g
            group_ts = ts
        if is_hist:
            self._check_histogram(fam)

    def _check_histogram(self, fam: FamilyBuilder) -> None:
        """Per series group (and timestamp): buckets ascending and cumulative, a +Inf bucket equal to
        _count, _sum/_count together, no _sum with negative buckets (OpenMetrics 1.0). Under ``SCRAPE``,
        buckets without a valid ``le`` (reported already) are left out, and every group is checked."""
        bad = self.enforcer.broken
        rule = Rule.HISTOGRAM_STRUCTURE
        allowed = fam.allowed
        name = fam.name
        state: list[object] | None = None
        # state: [group, ts, last_le, last_value, count, has_sum, has_gsum, neg_buckets, neg_gsum, line]
        cur_group: Labels | None = None
        cur_ts: int | None = None

        def check(st: list[object]) -> None:
            last_le, last_val, count, has_sum, has_gsum, neg_b, neg_gsum, ln = st[2:]
            assert isinstance(ln, int) and isinstance(last_val, float)
            if last_le != _INF:
                bad(rule, f'histogram "{name}" is missing its le="+Inf" bucket', ln)
            elif isinstance(count, float) and last_val != count:
                bad(rule, f'the _count of histogram "{name}" ({num(count)}) differs from its +Inf bucket '
                          f"({num(last_val)})", ln)
            if has_sum and count is None:
                bad(rule, f'histogram "{name}" has a _sum but no _count', ln)
            if has_gsum and count is None:
                bad(rule, f'gauge histogram "{name}" has a _gsum but no _gcount', ln)
            if count is not None and not (has_sum or has_gsum):
                bad(rule, f'histogram "{name}" has a _count/_gcount but no _sum/_gsum', ln)
            if neg_b and has_sum:
                bad(rule, f'histogram "{name}" has negative buckets, so it cannot have a _sum', ln)
            if neg_gsum and not neg_b:
                bad(rule, f'gauge histogram "{name}" has a negative _gsum but no negative buckets', ln)

        for s, lineno in zip(fam.samples, fam.lines()):
            sfx = allowed[s[0]]
            if sfx is PROM_ONLY:
                continue
            labels = s[1]
            b = 0.0
            if sfx == "_bucket":
                le = labels.get("le")
                bound = le_bound(le) if le is not None else None
                if bound is None:
                    continue                      # no valid "le": reported by check_samples
                b = bound
            g = self._group(labels, "le") if sfx == "_bucket" else self._group(labels, "")
            ts = s[3]
            if state is None or not (g is cur_group or g == cur_group) or ts != cur_ts:
                if state is not None:
                    check(state)
                state = [g, ts, None, 0.0, None, False, False, False, False, lineno]
            cur_group = g
            cur_ts = ts
            state[9] = lineno
            v = s[2]
            if sfx == "_bucket":
                if b < 0:
                    state[7] = True
                last = state[2]
                if last is not None and isinstance(last, float) and b <= last:
                    bad(rule, f'buckets of histogram "{name}" are not in increasing "le" order', lineno)
                prev = state[3]
                assert isinstance(prev, float)
                if v < prev:
                    bad(rule, f'bucket counts of histogram "{name}" decrease; buckets are cumulative', lineno)
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

