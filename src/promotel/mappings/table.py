"""Data-first mapping tables and the engine that runs them.

A ``Table`` says, per Prometheus family, what OTel metric it becomes (``Row``) and, per label, what
attribute it becomes (``LabelRule``). The same rows drive the mapper and ``promotel mappings NAME``,
so the documentation printed for users cannot drift from what runs.

Code exists only where a table cannot say it, as named label specials:

* ``http_status`` — an integer code 100–599 becomes an int attribute, anything else a string under
  the rule's ``fallback`` key; with ``error_type`` the code as a string also goes to ``error.type``
  when it is ≥ 500 (semconv: server errors are errors, client errors are not).
* ``hw_gpu`` — the GPU id becomes ``hw.id`` and ``hw.type="gpu"`` is added (the ``hw.gpu.*``
  metrics require ``hw.type``).
* ``user`` — end-user ids follow the source's ``users`` policy: keep (``enduser.id``), pseudonymize
  (``enduser.pseudo.id`` = keyed HMAC-SHA256 of the id, stable across restarts) or drop.

Per source, the mapper (``TableMapper``) keeps one cache per row: the labels' flat tuple →
``Attributes`` (``promotel.assemble.CachedAttributes``; assemble looks series keys up without
building a ``Labels``). Every scrape repeats the series, so the translation runs once per series;
each cache is bounded and simply cleared when full.

A source's per-family overrides are checked by ``promotel.mappings.overrides`` (``Override`` and
``validate_override`` stay importable from here) and applied by the mapper.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, NamedTuple

from promotel.config.secrets import reveal
from promotel.errors import MappingError
from promotel.mappings import (
    DEFAULT_SCRAPE_POLICY,
    MapResult,
    RowDescription,
    ScrapePolicy,
    SourceLike,
)
from promotel.mappings.assemble import (
    assemble,
    attach_created,
    passthrough,
    split_target_info,
    with_scope_details,
)
from promotel.mappings.collect import (
    TARGET_LABELS,
    CachedAttributes,
    default_attributes,
    exported_name,
    scraped_attributes,
)
from promotel.mappings.naming import fold_gauge_histograms, shape, unit_of
from promotel.mappings.overrides import Override, validate_override
from promotel.mappings.scale import Scale
from promotel.model import (
    Attributes,
    AttrValue,
    Kind,
    Labels,
    Metric,
    MetricFamily,
    Point,
)

log = logging.getLogger("promotel.mappings")

AttrType = Literal["str", "int", "bool"]
Special = Literal["", "http_status", "hw_gpu", "user"]

# Per-row attribute cache bound: well above the series count of a large scrape of one family.
CACHE_MAX = 200_000


class Instrument(enum.Enum):
    """The OTel instrument a row produces (``DISTRIBUTION`` = histogram or summary, as exposed)."""

    COUNTER = "Counter"
    UPDOWNCOUNTER = "UpDownCounter"
    GAUGE = "Gauge"
    HISTOGRAM = "Histogram"
    SUMMARY = "Summary"
    DISTRIBUTION = "Histogram or Summary"
    AS_EXPOSED = "as exposed"


class LabelRule(NamedTuple):
    """Label key(s) → one attribute. With several keys (aliases), the first present, non-empty one wins."""

    labels: tuple[str, ...]
    attribute: str
    type: AttrType = "str"
    special: Special = ""
    fallback: str = ""            # http_status: the string attribute for values that are not a code
    error_type: bool = False      # http_status: add error.type for codes ≥ 500
    note: str = ""


class Row(NamedTuple):
    family: str                   # as documented (counters with ``_total``); looked up with/without it
    name: str
    instrument: Instrument
    unit: str
    description: str = ""
    scale: float = 1.0            # read as the decimal it is written as: 0.01 is exactly 1/100 (mappings.scale)
    conversion: str = ""          # for people: "MiB × 1048576"
    constants: Attributes = ()
    labels: tuple[str, ...] = ()  # the documented labels (for ``describe``; any label is translated)


class Table(NamedTuple):
    name: str
    rows: tuple[Row, ...]
    label_rules: tuple[LabelRule, ...]


def family_keys(name: str) -> tuple[str, str]:
    """A family's name and its counterpart with ``_total`` appended or stripped.

    OpenMetrics declares counters without ``_total`` (``# TYPE x counter`` / ``x_total 1``), the
    Prometheus text format usually with it; both must find the same row."""
    if name.endswith("_total"):
        return name, name[: -len("_total")]
    return name, name + "_total"


def _kind_of(instrument: Instrument) -> tuple[Kind | None, bool]:
    return {
        Instrument.COUNTER: (Kind.SUM, True),
        Instrument.UPDOWNCOUNTER: (Kind.SUM, False),
        Instrument.GAUGE: (Kind.GAUGE, False),
        Instrument.HISTOGRAM: (Kind.HISTOGRAM, False),
        Instrument.SUMMARY: (Kind.SUMMARY, False),
    }.get(instrument, (None, False))


def _compatible(instrument: Instrument, exposed: Kind) -> bool:
    """Whether a family exposed as ``exposed`` can become ``instrument`` (numbers stay numbers, …)."""
    if instrument in (Instrument.AS_EXPOSED,):
        return True
    if instrument is Instrument.DISTRIBUTION:
        return exposed in (Kind.HISTOGRAM, Kind.SUMMARY)
    kind, _ = _kind_of(instrument)
    if kind in (Kind.SUM, Kind.GAUGE):
        return exposed in (Kind.SUM, Kind.GAUGE)
    return kind is exposed


def pseudonymize(key: bytes, value: str) -> str:
    """The pseudonym of an end-user id: HMAC-SHA256 under the source's secret key, 128 bits in hex.

    Keyed (not a bare hash) so nobody without the key can test guesses; deterministic so the same
    user keeps the same pseudonym across scrapes and restarts."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


# ─── label translation ───────────────────────────────────────────────────────────────────────


class LabelTranslator:
    """Labels → Attributes by a table's label rules and one source's user policy (no caching here)."""

    def __init__(self, rules: Sequence[LabelRule], users: str, key: bytes | None) -> None:
        self._rules = tuple(rules)
        self._known = frozenset(k for r in rules for k in r.labels)
        self._users = users
        self._key = key

    def translate(self, labels: Labels) -> dict[str, AttrValue]:
        out: dict[str, AttrValue] = {}
        for rule in self._rules:
            for key in rule.labels:
                value = labels.get(key)
                if value:            # Prometheus: an empty value is the same as no label
                    self._apply(rule, value, out)
                    break
        known = self._known
        for key, value in labels.pairs():
            if value and key not in known:
                out[key] = value     # labels no rule knows pass as string attributes, under their name
        return out

    def _apply(self, rule: LabelRule, value: str, out: dict[str, AttrValue]) -> None:
        special = rule.special
        if special == "http_status":
            code = int(value) if value.isascii() and value.isdigit() else -1
            if 100 <= code <= 599:
                out[rule.attribute] = code
                if rule.error_type and code >= 500:
                    out["error.type"] = str(code)
            else:
                out[rule.fallback or rule.attribute] = value
        elif special == "hw_gpu":
            out[rule.attribute] = value
            out["hw.type"] = "gpu"
        elif special == "user":
            if self._users == "keep":
                out[rule.attribute] = value
            elif self._users == "pseudonymize" and self._key is not None:
                out["enduser.pseudo.id"] = pseudonymize(self._key, value)
            # "drop": the id never leaves the bridge
        elif rule.type == "int":
            try:
                out[rule.attribute] = int(value)
            except ValueError:
                out[rule.attribute] = value
        elif rule.type == "bool":
            low = value.lower()
            out[rule.attribute] = True if low == "true" else False if low == "false" else value
        else:
            out[rule.attribute] = value


class _Bound(NamedTuple):
    """A row with the source's override applied, ready to run."""

    row: Row
    kind: Kind | None
    monotonic: bool
    scale: Scale
    attributes: Callable[[Labels], Attributes]
    drop: bool


def _finish(base: dict[str, AttrValue], constants: Attributes, ov: Override | None,
            exported_target_labels: bool) -> Attributes:
    attrs = dict(base)
    attrs.update(constants)
    if ov is not None:
        attrs.update(ov.attributes)
        for old, new in ov.rename_attributes:
            if old in attrs:
                attrs[new] = attrs.pop(old)
        for key in ov.drop_attributes:
            attrs.pop(key, None)
    if exported_target_labels:
        # honor_labels false: an attribute still named job/instance (an exposed label no rule or override
        # renamed) becomes exported_job/exported_instance, as Prometheus renames it; the target's own job
        # and instance are the Resource.
        for key in TARGET_LABELS:
            if key in attrs:
                value = attrs.pop(key)
                attrs[exported_name(key, attrs)] = value
    return tuple(sorted(attrs.items()))


def _cached(func: Callable[[Labels], Attributes]) -> Callable[[Labels], Attributes]:
    # Keyed by the labels' flat tuple, which assemble passes without building a Labels (see
    # promotel.assemble.CachedAttributes); the translation itself is order-independent.
    return CachedAttributes(func, CACHE_MAX)


# ─── the engine ──────────────────────────────────────────────────────────────────────────────


class TableMapper:
    """One source's mapper: a table plus that source's overrides, users policy and caches."""

    def __init__(self, table: Table, source: SourceLike, default_service_name: str) -> None:
        self.table = table
        self.source_name = str(source.name or table.name)
        # Checked again here: ``source`` may be any SourceLike, not only a validated SourceConfig.
        users = source.users
        if users not in ("keep", "pseudonymize", "drop"):
            raise MappingError(f"source {self.source_name!r}: users must be keep, pseudonymize or drop (got {users!r})")
        key = source.pseudonymize_key
        if users == "pseudonymize" and not key:
            raise MappingError(f"source {self.source_name!r}: users: pseudonymize needs a secret pseudonymize_key "
                               "(e.g. pseudonymize_key: ${PROMOTEL_PSEUDONYMIZE_KEY}); keep it stable so "
                               "pseudonyms stay stable across restarts")
        # ``honor_labels`` is optional on a SourceLike (sources written for 0.1 have none): false, as in
        # Prometheus, renames an exposed job/instance label exported_job/exported_instance; true keeps them
        # as they are, for the pipeline to take the series' identity from them.
        self.honor_labels = bool(getattr(source, "honor_labels", False))
        # The key may be a promotel.secrets.Secret, whose str() is masked: reveal the real value.
        self._translator = LabelTranslator(table.label_rules, users,
                                           reveal(key).encode("utf-8") if key else None)
        self._labels_fn = default_attributes if self.honor_labels else scraped_attributes
        # ``unmapped: drop`` means "only what the table lists"; a table with no rows (passthrough) lists
        # nothing, so there it would drop everything: passthrough always keeps.
        self._keep_unmapped = not table.rows or source.unmapped != "drop"
        # Kept for plugins and callers written for 0.1; the Resource's service.name no longer comes from a
        # mapping (promotel.pipeline builds the identity from the source, per the OTel spec).
        self.service_name = str(source.service_name or default_service_name or self.source_name)

        overrides: dict[str, Override] = {}
        for fam, obj in source.overrides.items():
            ov = validate_override(str(fam), obj, self.source_name)
            for k in family_keys(str(fam)):
                overrides.setdefault(k, ov)
        self._overrides = overrides

        self._rows: dict[str, _Bound] = {}
        self._patterns: list[tuple[re.Pattern[str], Row]] = []
        for row in table.rows:
            if "*" in row.family:
                # A pattern row: "*" in the family stands for the same text in the OTel name.
                head, _, tail = row.family.partition("*")
                self._patterns.append((re.compile(re.escape(head) + "(.+)" + re.escape(tail)), row))
                continue
            bound = self._bind_row(row, overrides.get(row.family))
            for k in family_keys(row.family):
                self._rows.setdefault(k, bound)
        self._matched: dict[str, _Bound | None] = {}
        documented = {k for row in table.rows for k in family_keys(row.family)}
        for fam in source.overrides:
            matches_pattern = any(p.fullmatch(k) for k in family_keys(str(fam)) for p, _ in self._patterns)
            if table.rows and str(fam) not in documented and not matches_pattern:
                log.warning("Source %s has an override for family %s, which mapping %s does not list; "
                            "it applies when that family appears (passed through).",
                            self.source_name, fam, table.name)
        # Bound passthrough rows for unlisted families that have an override, made on first sight.
        self._passthrough_rows: dict[str, _Bound] = {}
        self._warned: set[str] = set()

    def _bind_row(self, row: Row, ov: Override | None) -> _Bound:
        translate = self._translator.translate
        constants = row.constants
        if ov is not None:
            row = row._replace(name=ov.name or row.name,
                               unit=row.unit if ov.unit is None else ov.unit,
                               description=ov.description or row.description)
        scale = Scale.of(row.scale if ov is None or ov.scale is None else ov.scale)
        kind, monotonic = _kind_of(row.instrument)
        rename = not self.honor_labels

        def attributes(labels: Labels) -> Attributes:
            return _finish(translate(labels), constants, ov, rename)

        return _Bound(row, kind, monotonic, scale, _cached(attributes), bool(ov and ov.drop))

    def _lookup(self, family: MetricFamily) -> _Bound | None:
        """The row of ``family``: under its name, its name with/without ``_total``, or its OTLP name
        (``x_info`` for an OpenMetrics info ``x``)."""
        name = family.name
        bound = self._rows.get(name)
        if bound is None and family.type == "info":
            bound = self._rows.get(shape(family).name)
        if bound is None and self._patterns:
            bound = self._match(name)
        return bound

    def _match(self, name: str) -> _Bound | None:
        if name in self._matched:
            return self._matched[name]
        found: _Bound | None = None
        for key in family_keys(name):
            for pattern, row in self._patterns:
                m = pattern.fullmatch(key)
                if m is not None:
                    concrete = row._replace(family=key, name=row.name.replace("*", m.group(1)))
                    found = self._bind_row(concrete, self._overrides.get(key))
                    break
            if found is not None:
                break
        if len(self._matched) < 10_000:
            self._matched[name] = found
        return found

    def _passthrough_row(self, family: MetricFamily, ov: Override) -> _Bound:
        bound = self._passthrough_rows.get(family.name)
        if bound is None:
            rename = not self.honor_labels

            # An override of an unlisted family keeps the passthrough's attributes (labels as strings).
            def attributes(labels: Labels) -> Attributes:
                return _finish(dict(default_attributes(labels)), (), ov, rename)

            name, effective = shape(family)
            row = Row(family.name, ov.name or name, Instrument.AS_EXPOSED, ov.unit or unit_of(family, effective),
                      ov.description or "")
            bound = _Bound(row, None, False, Scale.of(ov.scale or 1.0), _cached(attributes), ov.drop)
            if len(self._passthrough_rows) < 10_000:
                self._passthrough_rows[family.name] = bound
        return bound

    def map(self, families: Sequence[MetricFamily]) -> MapResult:
        resource_extra, rest = split_target_info(families)
        # prometheus_client's X_created gauges give X its start time; its text GaugeHistograms are recognised.
        families = fold_gauge_histograms(attach_created(rest))
        out = _Merged()
        passthrough_families: list[MetricFamily] = []

        for family in families:
            bound = self._lookup(family)
            if bound is None:
                ov = self._overrides.get(family.name)
                if ov is None:
                    if self._keep_unmapped:
                        passthrough_families.append(family)
                    else:
                        out.drop("unmapped_drop", len(family.samples), family.name)
                    continue
                bound = self._passthrough_row(family, ov)
            if bound.drop:
                out.drop("override_drop", len(family.samples), family.name)
                continue
            assembled = assemble(family, bound.attributes, bound.scale)
            for reason, n in assembled.drops:
                out.drop(reason, n, family.name)
            if assembled.kind is None:
                continue
            row = bound.row
            if not _compatible(row.instrument, assembled.kind):
                self._warn_once(family, row)
                if self._keep_unmapped:
                    passthrough_families.append(family)
                else:
                    out.drop("unmapped_drop", len(family.samples), family.name)
                continue
            kind = bound.kind or assembled.kind
            monotonic = bound.monotonic if bound.kind is not None else assembled.monotonic
            unit = row.unit
            if row.instrument is Instrument.AS_EXPOSED and not unit:
                unit = unit_of(family)
            details = {(d.name, d.version): d for d in assembled.scopes}
            for scope_name, scope_version, points in assembled.groups:
                out.add(with_scope_details(
                    Metric(name=row.name, description=row.description or family.help or "", unit=unit,
                           kind=kind, points=_points(points), monotonic=monotonic and kind is Kind.SUM,
                           prom_type=family.type, scope_name=scope_name, scope_version=scope_version),
                    details), family.name)
        if passthrough_families:
            # Already folded above: passthrough() folds again only what is left (nothing).
            result = passthrough(passthrough_families, self._labels_fn)
            for reason, n in result.drops.items():
                out.drop(reason, n, result.examples.get(reason, ""))
            for metric in result.metrics:
                out.add(metric, metric.name)
        return MapResult(tuple(out.metrics.values()), resource_extra, sum(out.drops.values()), dict(out.drops),
                         dict(out.examples))

    def _warn_once(self, family: MetricFamily, row: Row) -> None:
        if family.name in self._warned or len(self._warned) > 1000:
            return
        self._warned.add(family.name)
        log.warning("Source %s exposes family %s as a %s, but mapping %s expects a %s; "
                    "it is passed through unmapped. Check the exposition or override the family.",
                    self.source_name, family.name, family.type, self.table.name, row.instrument.value)


class _Merged:
    """The metrics of one scrape merged by (name, scope), in order of first sight, one point per series.

    Several families may become one metric (rows merged into one OTel name, an OpenMetrics family and the
    text family of the same name): points whose attributes the metric already has are duplicates (the first
    is kept), and a family whose instrument differs from the metric's is left out (``conflicting_type``)."""

    __slots__ = ("drops", "examples", "metrics", "seen")

    def __init__(self) -> None:
        self.metrics: dict[tuple[str, str, str], Metric] = {}
        self.seen: dict[tuple[str, str, str], set[Attributes]] = {}
        self.drops: dict[str, int] = {}
        self.examples: dict[str, str] = {}

    def drop(self, reason: str, n: int, family: str) -> None:
        if n <= 0:
            return
        self.drops[reason] = self.drops.get(reason, 0) + n
        if family:
            self.examples.setdefault(reason, family)

    def add(self, metric: Metric, family: str) -> None:
        key = (metric.name, metric.scope_name, metric.scope_version)
        prev = self.metrics.get(key)
        if prev is None:
            self.metrics[key] = metric
            return
        if (prev.kind, prev.monotonic) != (metric.kind, metric.monotonic):
            self.drop("conflicting_type", len(metric.points), family)
            return
        seen = self.seen.get(key)
        if seen is None:
            seen = self.seen[key] = {p.attributes for p in prev.points}
        fresh: list[Point] = []
        for p in metric.points:
            if p.attributes in seen:
                self.drop("duplicate_series", 1, family)
            else:
                seen.add(p.attributes)
                fresh.append(p)
        if fresh:
            self.metrics[key] = prev._replace(points=prev.points + tuple(fresh))


def _points(points: Iterable[Point]) -> tuple[Point, ...]:
    return points if isinstance(points, tuple) else tuple(points)


# ─── the plugin and its description ──────────────────────────────────────────────────────────


class TablePlugin:
    """A mapping plugin defined by a table (what Baseten and SambaNova are), with its source's scrape policy."""

    def __init__(self, table: Table, default_service_name: str,
                 scrape_policy: ScrapePolicy = DEFAULT_SCRAPE_POLICY) -> None:
        self.table = table
        self.name = table.name
        self.default_service_name = default_service_name
        self.scrape_policy = scrape_policy

    def bind(self, source: SourceLike) -> TableMapper:
        return TableMapper(self.table, source, self.default_service_name)

    def describe(self) -> list[RowDescription]:
        by_label = {k: r for r in self.table.label_rules for k in r.labels}
        out: list[RowDescription] = []
        for row in self.table.rows:
            attrs: list[str] = []
            seen: set[int] = set()
            for label in row.labels:
                rule = by_label.get(label)
                if rule is None:
                    attrs.append(f"{label} (as is)")
                    continue
                if id(rule) in seen:
                    continue
                seen.add(id(rule))
                attrs.append(f"{label}→{describe_rule(rule)}")
            attrs.extend(f"{k}={v!r}" if not isinstance(v, str) else f"{k}={v}" for k, v in row.constants)
            out.append(RowDescription(row.family, row.name, _instrument_text(row.instrument), row.unit,
                                      row.conversion or "–", ", ".join(attrs)))
        return out

    def describe_labels(self) -> list[tuple[str, str, str]]:
        """(label keys, attribute, note) per label rule, for the labels section of ``promotel mappings``."""
        return [(", ".join(r.labels), describe_rule(r), r.note) for r in self.table.label_rules]


def describe_rule(rule: LabelRule) -> str:
    if rule.special == "http_status":
        text = f"{rule.attribute} (int when 100–599, else {rule.fallback or rule.attribute} string)"
        return text + (" + error.type when ≥ 500" if rule.error_type else "")
    if rule.special == "hw_gpu":
        return f"{rule.attribute} + hw.type=gpu"
    if rule.special == "user":
        return f"{rule.attribute} | enduser.pseudo.id | dropped (per 'users')"
    return rule.attribute if rule.type == "str" else f"{rule.attribute} ({rule.type})"


def _instrument_text(instrument: Instrument) -> str:
    return {
        Instrument.COUNTER: "Counter (monotonic Sum)",
        Instrument.UPDOWNCOUNTER: "UpDownCounter (non-monotonic Sum)",
        Instrument.GAUGE: "Gauge",
        Instrument.HISTOGRAM: "Histogram",
        Instrument.SUMMARY: "Summary",
        Instrument.DISTRIBUTION: "Histogram or Summary (as exposed)",
        Instrument.AS_EXPOSED: "as exposed",
    }[instrument]


def check_table(table: Table) -> Table:
    """Validate a table at import time: rows merged into one metric must agree on shape and unit."""
    shapes: dict[str, tuple[Instrument, str]] = {}
    for row in table.rows:
        try:
            Scale.of(row.scale)
        except ValueError as exc:
            raise MappingError(f"mapping {table.name}: row {row.family} has an invalid scale {row.scale!r}: "
                               f"{exc}") from exc
        row_shape = (row.instrument, row.unit)
        if shapes.setdefault(row.name, row_shape) != row_shape:
            raise MappingError(f"mapping {table.name}: rows merged into {row.name} disagree on instrument or unit")
    return table


__all__ = [
    "CACHE_MAX",
    "Instrument",
    "LabelRule",
    "LabelTranslator",
    "Override",
    "Row",
    "Table",
    "TableMapper",
    "TablePlugin",
    "check_table",
    "describe_rule",
    "family_keys",
    "pseudonymize",
    "validate_override",
]
