"""Strict where it checks, lenient where it scrapes: each rule ``Strictness.SCRAPE`` tolerates, with the error
``STRICT`` raises, what ``SCRAPE`` makes of the same text, and the ``Leniency`` it reports (the rule, the line,
``STRICT``'s very words, a count); the reading of ``SCRAPE``'s own (``Rule.ESCAPED_NAME``: samples written with
their family's escaped name); and the rules ``SCRAPE`` still enforces because Prometheus does."""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import pytest

from promotel.errors import ExpositionError
from promotel.exposition import ExpositionParser, Leniency, Rule, Strictness, parse_exposition
from promotel.exposition.rules import escaped_name_text, quoted_name_text
from promotel.model import MetricFamily

OM = "application/openmetrics-text; version=1.0.0"
PROM = "text/plain; version=0.0.4"
SCRAPE = Strictness.SCRAPE

Shape = tuple[str, str, "str | None", "str | None", list[tuple[str, dict[str, str], object]]]


def shape(families: list[MetricFamily]) -> list[Shape]:
    """Families as plain values: name, type, help, unit, then (sample name, labels, value) per sample."""
    def num(x: float) -> object:
        return "NaN" if math.isnan(x) else x
    return [(f.name, f.type, f.help, f.unit, [(s.name, dict(s.labels.items()), num(s.value)) for s in f.samples])
            for f in families]


def scraped(text: str, ct: str) -> tuple[list[Shape], tuple[Leniency, ...]]:
    parser = ExpositionParser(strictness=SCRAPE)
    families = parser.parse(text, ct)
    return shape(families), parser.leniencies


def strict_error(text: str, ct: str) -> tuple[int, str]:
    with pytest.raises(ExpositionError) as err:
        parse_exposition(text, ct)
    return err.value.line, err.value.message


def family_unique(name: str) -> str:
    return (f'the name "{name}" is used by two metric families; families must not repeat or overlap '
            "(samples of one family must be consecutive)")


class Case(NamedTuple):
    id: str
    ct: str
    text: str
    strict: tuple[int, str]                       # STRICT's error: line, message
    families: list[Shape]                         # what SCRAPE returns
    leniencies: tuple[tuple[Rule, int, int], ...]  # what SCRAPE reports: rule, line, count (the first is STRICT's)
    # The first leniency's line and text when it is not STRICT's error: only for Rule.ESCAPED_NAME, a reading
    # STRICT does not make (it reads the samples as families of their own, and fails on what follows from it).
    first: tuple[int, str] | None = None


# SCRAPE's own readings: rules STRICT does not apply, so their report is not STRICT's error.
SCRAPE_READINGS = frozenset({Rule.ESCAPED_NAME})


TABLE = [
    # ── quoted (UTF-8) names the Content-Type does not declare: read as Prometheus 3 reads them ──────
    Case("om-quoted-names", OM, '# TYPE "a.b" gauge\n{"a.b",x="1"} 1\nc{"d.e"="2"} 2 # {"t.id"="3"} 1\n# EOF\n',
         (1, quoted_name_text('metric name "a.b" in the TYPE line', True)),
         [("a.b", "gauge", None, None, [("a.b", {"x": "1"}, 1.0)]), ("c", "unknown", None, None, [("c", {"d.e": "2"}, 2.0)])],
         ((Rule.QUOTED_NAME, 1, 3), (Rule.EXEMPLAR_PLACEMENT, 3, 1))),           # once per line
    Case("prom-quoted-names", PROM, '# HELP "a.b" h\n{"a.b", "c.d"="1"} 1\nc{"d.e"="2"} 2\n',
         (1, quoted_name_text('metric name "a.b" in the HELP line', False)),
         [("a.b", "unknown", "h", None, [("a.b", {"c.d": "1"}, 1.0)]), ("c", "unknown", None, None, [("c", {"d.e": "2"}, 2.0)])],
         ((Rule.QUOTED_NAME, 1, 3),)),
    # ── metadata ────────────────────────────────────────────────────────────────────────────
    Case("om-second-help", OM, "# HELP a first\n# HELP a second\n# TYPE a gauge\na 1\n# EOF\n",
         (2, 'second HELP line for "a" (the first is on line 1)'),
         [("a", "gauge", "second", None, [("a", {}, 1.0)])],           # the last one wins
         ((Rule.METADATA_REPEATED, 2, 1),)),
    Case("om-second-type", OM, "# TYPE a info\n# TYPE a counter\na_total 1\n# EOF\n",
         (2, 'second TYPE line for "a" (the first is on line 1)'),
         [("a", "counter", None, None, [("a_total", {}, 1.0)])],
         ((Rule.METADATA_REPEATED, 2, 1),)),
    Case("om-second-unit", OM, "# UNIT a_s s\n# UNIT a_s s\n# TYPE a_s gauge\na_s 1\n# EOF\n",
         (2, 'second UNIT line for "a_s" (the first is on line 1)'),
         [("a_s", "gauge", None, "s", [("a_s", {}, 1.0)])],
         ((Rule.METADATA_REPEATED, 2, 1),)),
    Case("prom-second-help", PROM, "# HELP a first\n# HELP a second\na 1\n",
         (2, 'second HELP line for "a" (the first is on line 1); a metric may have only one'),
         [("a", "unknown", "second", None, [("a", {}, 1.0)])],
         ((Rule.METADATA_REPEATED, 2, 1),)),
    Case("prom-second-type-after-samples", PROM, "# TYPE a counter\na_total 1\n# TYPE a gauge\na 2\n",
         (3, 'second TYPE line for "a" (the first is on line 1); a metric may have only one'),
         [("a", "counter", None, None, [("a_total", {}, 1.0), ("a", {}, 2.0)])],   # ignored: sorted as a counter
         ((Rule.METADATA_REPEATED, 3, 1),)),
    Case("prom-second-type-before-samples", PROM, "# TYPE a gauge\n# TYPE a counter\na_total 1\n",
         (2, 'second TYPE line for "a" (the first is on line 1); a metric may have only one'),
         [("a", "counter", None, None, [("a_total", {}, 1.0)])],               # the last one wins
         ((Rule.METADATA_REPEATED, 2, 1),)),
    Case("om-help-after-samples", OM, '# TYPE a gauge\na 1\n# HELP a late\na{x="1"} 2\n# EOF\n',
         (3, 'HELP line for "a" after its samples; metadata must come before the samples'),
         [("a", "gauge", "late", None, [("a", {}, 1.0), ("a", {"x": "1"}, 2.0)])],   # one family: nothing contradicts
         ((Rule.METADATA_AFTER_SAMPLES, 3, 1), (Rule.FAMILY_UNIQUE, 4, 1))),
    Case("om-type-after-samples", OM, "# HELP a x\na 1\n# TYPE a gauge\n# EOF\n",
         (3, 'TYPE line for "a" after its samples; metadata must come before the samples'),
         [("a", "gauge", "x", None, [("a", {}, 1.0)])],                          # the type of an untyped family
         ((Rule.METADATA_AFTER_SAMPLES, 3, 1), (Rule.FAMILY_UNIQUE, 3, 1))),
    Case("om-client-golang", OM,
         "# HELP m Number.\n# TYPE m gauge\nm 1\n# HELP m Total.\n# TYPE m counter\nm_total 2\n# EOF\n",
         (4, 'HELP line for "m" after its samples; metadata must come before the samples'),
         [("m", "gauge", "Number.", None, [("m", {}, 1.0)]),                     # the type contradicts: two families
          ("m", "counter", "Total.", None, [("m_total", {}, 2.0)])],
         ((Rule.METADATA_AFTER_SAMPLES, 4, 1), (Rule.FAMILY_UNIQUE, 6, 1))),
    Case("prom-type-after-samples", PROM, "a 1\n# TYPE a counter\na_total 2\n",
         (2, 'TYPE line for "a" comes after its samples; it must come before the first sample of the metric'),
         [("a", "counter", None, None, [("a", {}, 1.0), ("a_total", {}, 2.0)])],
         ((Rule.METADATA_AFTER_SAMPLES, 2, 1),)),
    # ── family names ─────────────────────────────────────────────────────────────────────────
    Case("om-family-repeated", OM, "# TYPE a counter\n# TYPE b gauge\nb 1\n# TYPE a counter\na_total 2\n# EOF\n",
         (5, family_unique("a")),
         [("a", "counter", None, None, [("a_total", {}, 2.0)]), ("b", "gauge", None, None, [("b", {}, 1.0)])],
         ((Rule.FAMILY_UNIQUE, 5, 1),)),
    # prometheus_client 0.26 asked without escaping=allow-utf-8: STRICT reads an empty counter x:y, then untyped
    # families x_y_total and x_y_created written in turn; SCRAPE reads the samples as the counter's, under the
    # escaped name (the samples' and Prometheus' name for them).
    Case("om-escaped-samples", OM,
         '# TYPE x:y counter\nx_y_total{l="1"} 1\nx_y_created{l="1"} 5\nx_y_total{l="2"} 2\nx_y_created{l="2"} 6\n'
         "# EOF\n",
         (4, family_unique("x_y_total")),
         [("x_y", "counter", None, None, [("x_y_total", {"l": "1"}, 1.0), ("x_y_created", {"l": "1"}, 5.0),
                                          ("x_y_total", {"l": "2"}, 2.0), ("x_y_created", {"l": "2"}, 6.0)])],
         ((Rule.ESCAPED_NAME, 2, 1),),
         (2, escaped_name_text("x_y_total", "x:y", "x_y"))),
    Case("om-escaped-help-after-samples", OM,
         '# TYPE x:y counter\nx_y_total 1\n# HELP x:y late\nx_y_total{a="1"} 2\n# EOF\n',
         (3, family_unique("x:y")),
         [("x_y", "counter", "late", None, [("x_y_total", {}, 1.0), ("x_y_total", {"a": "1"}, 2.0)])],
         ((Rule.ESCAPED_NAME, 2, 2), (Rule.METADATA_AFTER_SAMPLES, 3, 1), (Rule.FAMILY_UNIQUE, 4, 1)),
         (2, escaped_name_text("x_y_total", "x:y", "x_y"))),
    Case("om-interleaved", OM, '# TYPE a gauge\na{x="1"} 1\n# TYPE b gauge\nb 1\na{x="2"} 2\n# EOF\n',
         (5, family_unique("a")),
         [("a", "gauge", None, None, [("a", {"x": "1"}, 1.0), ("a", {"x": "2"}, 2.0)]),
          ("b", "gauge", None, None, [("b", {}, 1.0)])],
         ((Rule.FAMILY_UNIQUE, 5, 1),)),
    Case("om-counter-sample-without-total", OM, "# TYPE a counter\na 1\n# EOF\n",
         (2, family_unique("a")),
         [("a", "counter", None, None, [("a", {}, 1.0)])],                       # Prometheus counts it in
         ((Rule.FAMILY_UNIQUE, 2, 1),)),
    Case("om-counter-named-total", OM, "# TYPE a_total counter\na_total 1\n# EOF\n",
         (2, family_unique("a_total")),
         [("a_total", "counter", None, None, [("a_total", {}, 1.0)])],
         ((Rule.FAMILY_UNIQUE, 2, 1),)),
    Case("om-info-sample-without-info", OM, '# TYPE a info\na{x="1"} 1\n# EOF\n',
         (2, family_unique("a")),
         [("a", "info", None, None, [("a", {"x": "1"}, 1.0)])],
         ((Rule.FAMILY_UNIQUE, 2, 1),)),
    Case("om-overlapping-names", OM, "# TYPE a_created gauge\na_created 1\n# TYPE a counter\na_total 1\n# EOF\n",
         (4, family_unique("a_created")),
         [("a_created", "gauge", None, None, [("a_created", {}, 1.0)]),          # kept apart
          ("a", "counter", None, None, [("a_total", {}, 1.0)])],
         ((Rule.FAMILY_UNIQUE, 4, 1),)),
    # ── unit, grouping, labels, values, histograms, exemplars: kept as they are ────────────────
    Case("om-unit-on-info", OM, "# TYPE a_u info\n# UNIT a_u u\na_u_info 1\n# EOF\n",
         (2, "an info metric cannot have a unit; remove the UNIT line"),
         [("a_u", "info", None, "u", [("a_u_info", {}, 1.0)])],
         ((Rule.UNIT_TYPE, 2, 1),)),
    Case("om-group-not-consecutive", OM, '# TYPE a gauge\na{x="1"} 1\na{x="2"} 2\na{x="1"} 3\n# EOF\n',
         (4, "samples of \"a\" with labels {'x': '1'} are not consecutive; all samples of a series group must be "
             "together"),
         [("a", "gauge", None, None, [("a", {"x": "1"}, 1.0), ("a", {"x": "2"}, 2.0), ("a", {"x": "1"}, 3.0)])],
         ((Rule.SERIES_GROUPING, 4, 1),)),
    Case("om-timestamps-backwards", OM, "# TYPE a gauge\na 1 2\na 2 1\n# EOF\n",
         (3, "timestamps go backwards within a series group"),
         [("a", "gauge", None, None, [("a", {}, 1.0), ("a", {}, 2.0)])],
         ((Rule.SERIES_TIMESTAMPS, 3, 1),)),
    Case("om-bucket-without-le", OM, "# TYPE a histogram\na_bucket 0\n# EOF\n",
         (2, 'histogram bucket "a_bucket" needs an "le" label'),
         [("a", "histogram", None, None, [("a_bucket", {}, 0.0)])],
         ((Rule.BUCKET_LE, 2, 1),)),
    Case("om-quantile-out-of-range", OM, '# TYPE a summary\na{quantile="2"} 1\n# EOF\n',
         (2, "summary quantile sample \"a\" needs a \"quantile\" label between 0 and 1, found '2'"),
         [("a", "summary", None, None, [("a", {"quantile": "2"}, 1.0)])],
         ((Rule.QUANTILE_LABEL, 2, 1),)),
    Case("om-stateset-without-state", OM, "# TYPE a stateset\na 1\n# EOF\n",
         (2, 'stateset sample needs a label named after the metric ("a")'),
         [("a", "stateset", None, None, [("a", {}, 1.0)])],
         ((Rule.STATESET_LABEL, 2, 1),)),
    Case("om-fractional-counts", OM, '# TYPE a histogram\na_bucket{le="+Inf"} 1.5\na_count 1.5\na_sum 1\n# EOF\n',
         (2, 'bucket value 1.5 of "a_bucket" must be a non-negative integer'),
         [("a", "histogram", None, None, [("a_bucket", {"le": "+Inf"}, 1.5), ("a_count", {}, 1.5),
                                          ("a_sum", {}, 1.0)])],
         ((Rule.COUNT_VALUE, 2, 2),)),                                           # the bucket and the _count
    Case("om-negative-counter", OM, "# TYPE a counter\na_total -1\n# EOF\n",
         (2, '"a_total" is a counter-like value and cannot be -1'),
         [("a", "counter", None, None, [("a_total", {}, -1.0)])],
         ((Rule.COUNTER_VALUE, 2, 1),)),
    Case("om-nan-gsum", OM, '# TYPE a gaugehistogram\na_bucket{le="+Inf"} 1\na_gcount 1\na_gsum NaN\n# EOF\n',
         (4, '"a_gsum" cannot be NaN'),
         [("a", "gaugehistogram", None, None, [("a_bucket", {"le": "+Inf"}, 1.0), ("a_gcount", {}, 1.0),
                                               ("a_gsum", {}, "NaN")])],
         ((Rule.GSUM_VALUE, 4, 1),)),
    Case("om-negative-quantile", OM, '# TYPE a summary\na{quantile="0.5"} -1\n# EOF\n',
         (2, "quantile values cannot be negative, found -1"),
         [("a", "summary", None, None, [("a", {"quantile": "0.5"}, -1.0)])],
         ((Rule.QUANTILE_VALUE, 2, 1),)),
    Case("om-stateset-value", OM, '# TYPE a stateset\na{a="x"} 2\n# EOF\n',
         (2, "stateset values must be 0 or 1, found 2"),
         [("a", "stateset", None, None, [("a", {"a": "x"}, 2.0)])],
         ((Rule.STATESET_VALUE, 2, 1),)),
    Case("om-info-value", OM, '# TYPE a info\na_info{x="1"} 2\n# EOF\n',
         (2, "info values must be 1, found 2"),
         [("a", "info", None, None, [("a_info", {"x": "1"}, 2.0)])],
         ((Rule.INFO_VALUE, 2, 1),)),
    Case("om-buckets-decrease", OM, '# TYPE a histogram\na_bucket{le="1"} 2\na_bucket{le="+Inf"} 1\na_count 1\n'
         "a_sum 1\n# EOF\n",
         (3, 'bucket counts of histogram "a" decrease; buckets are cumulative'),
         [("a", "histogram", None, None, [("a_bucket", {"le": "1"}, 2.0), ("a_bucket", {"le": "+Inf"}, 1.0),
                                          ("a_count", {}, 1.0), ("a_sum", {}, 1.0)])],
         ((Rule.HISTOGRAM_STRUCTURE, 3, 1),)),
    Case("om-no-inf-bucket", OM, '# TYPE a histogram\na_bucket{le="1"} 1\na_count 1\na_sum 1\n# EOF\n',
         (4, 'histogram "a" is missing its le="+Inf" bucket'),
         [("a", "histogram", None, None, [("a_bucket", {"le": "1"}, 1.0), ("a_count", {}, 1.0),
                                          ("a_sum", {}, 1.0)])],
         ((Rule.HISTOGRAM_STRUCTURE, 4, 1),)),
    Case("om-exemplar-on-gauge", OM, '# TYPE a gauge\na 1 # {t="x"} 1\n# EOF\n',
         (2, "only counter _total samples and histogram buckets can have exemplars"),
         [("a", "gauge", None, None, [("a", {}, 1.0)])],
         ((Rule.EXEMPLAR_PLACEMENT, 2, 1),)),
    Case("om-exemplar-too-long", OM, '# TYPE a counter\na_total 1 # {t="' + "x" * 128 + '"} 1\n# EOF\n',
         (2, "exemplar labels are longer than 128 characters (names and values together); shorten them"),
         [("a", "counter", None, None, [("a_total", {}, 1.0)])],
         ((Rule.EXEMPLAR_LENGTH, 2, 1),)),
    Case("om-exemplar-label-twice", OM, '# TYPE a counter\na_total 1 # {t="x",t="y"} 1\n# EOF\n',
         (2, "an exemplar label appears twice"),
         [("a", "counter", None, None, [("a_total", {}, 1.0)])],
         ((Rule.EXEMPLAR_LABELS, 2, 1),)),
]


def test_the_table_covers_every_rule() -> None:
    assert {rule for case in TABLE for rule, _, _ in case.leniencies} == set(Rule)


@pytest.mark.parametrize("case", TABLE, ids=[c.id for c in TABLE])
def test_leniency(case: Case) -> None:
    assert strict_error(case.text, case.ct) == case.strict
    families, leniencies = scraped(case.text, case.ct)
    assert families == case.families
    assert tuple((e.rule, e.line, e.count) for e in leniencies) == case.leniencies
    # The first leniency is STRICT's error, in the same words at the same line (what `promotel lint` says),
    # unless it is a reading STRICT does not make.
    assert (leniencies[0].line, leniencies[0].text) == (case.first or case.strict)
    assert (case.first is not None) == (leniencies[0].rule in SCRAPE_READINGS)
    for e in leniencies:
        if e.rule is Rule.FAMILY_UNIQUE:
            assert e.text.startswith('the name "') and e.text.endswith(family_unique("")[len('the name ""'):])


@pytest.mark.parametrize("case", TABLE, ids=[c.id for c in TABLE])
def test_leniency_on_a_rescrape(case: Case) -> None:
    # The same scrape again through the same parser (unchanged lines reuse the previous samples, families
    # reuse their checked structure), then a valid one, then the same again: the same result every time.
    parser = ExpositionParser(strictness=SCRAPE)
    first = shape(parser.parse(case.text, case.ct)), parser.leniencies
    second = shape(parser.parse(case.text, case.ct)), parser.leniencies
    assert first == second
    parser.parse("# EOF\n" if case.ct == OM else "", case.ct)
    assert parser.leniencies == ()
    third = shape(parser.parse(case.text, case.ct)), parser.leniencies
    assert third == first


# ── what SCRAPE still refuses: Prometheus refuses the scrape too ───────────────────────────────

FATAL = [
    ("om-no-eof", OM, "# TYPE a gauge\na 1\n", "missing '# EOF'"),
    ("om-text-after-eof", OM, "a 1\n# EOF\na 2\n", "text after '# EOF'"),
    ("om-blank-line", OM, "a 1\n\n# EOF\n", "blank line"),
    ("om-comment", OM, "# a comment\na 1\n# EOF\n", "OpenMetrics has no comments"),
    ("om-unknown-type", OM, "# TYPE a untyped\n# EOF\n", 'unknown type "untyped"'),
    ("om-unit-not-a-suffix", OM, "# TYPE a gauge\n# UNIT a s\na 1\n# EOF\n", "does not match the metric name"),
    ("om-label-twice", OM, 'a{x="1",x="2"} 1\n# EOF\n', 'label "x" appears twice'),
    ("om-bad-value", OM, "a x\n# EOF\n", 'invalid value "x"'),
    ("om-bad-timestamp", OM, "a 1 z\n# EOF\n", 'invalid timestamp "z"'),
    ("om-two-spaces", OM, "a  1\n# EOF\n", "with single spaces around it"),
    ("prom-unknown-type", PROM, "# TYPE a gaugehistogram\n", "unknown type"),
    ("prom-bad-label", PROM, "a{x=1} 1\n", "to open the value of label"),
]


@pytest.mark.parametrize(("ct", "text", "message"), [f[1:] for f in FATAL], ids=[f[0] for f in FATAL])
def test_scrape_refuses_what_prometheus_refuses(ct: str, text: str, message: str) -> None:
    parser = ExpositionParser(strictness=SCRAPE)
    with pytest.raises(ExpositionError, match=message) as scrape_err:
        parser.parse(text, ct)
    assert parser.leniencies == ()
    with pytest.raises(ExpositionError) as strict_err:
        parse_exposition(text, ct)
    assert (scrape_err.value.line, scrape_err.value.message) == (strict_err.value.line, strict_err.value.message)


# ── the API ──────────────────────────────────────────────────────────────────────────────

def test_strict_is_the_default() -> None:
    text = "# TYPE a counter\na_total -1\n# EOF\n"
    assert ExpositionParser().strictness is Strictness.STRICT
    assert ExpositionParser(strictness=SCRAPE).strictness is SCRAPE
    with pytest.raises(ExpositionError):
        parse_exposition(text, OM)
    with pytest.raises(ExpositionError):
        ExpositionParser().parse(text, OM)
    [family] = parse_exposition(text, OM, strictness=SCRAPE)
    assert family.samples[0].value == -1.0


def test_leniencies_are_per_parse_bounded_and_immutable() -> None:
    parser = ExpositionParser(strictness=SCRAPE)
    assert not parser.leniencies
    # 1 000 negative counters and 1 000 fractional buckets: one entry per rule, each with its count.
    counters = "".join(f'# TYPE c{i} counter\nc{i}_total -1\n' for i in range(1000))
    hist = "# TYPE h histogram\n" + "".join(f'h_bucket{{i="{i}",le="+Inf"}} 0.5\nh_count{{i="{i}"}} 0.5\n'
                                            f'h_sum{{i="{i}"}} 1\n' for i in range(1000))
    parser.parse(counters + hist + "# EOF\n", OM)
    assert [(e.rule, e.line, e.count) for e in parser.leniencies] == [(Rule.COUNTER_VALUE, 2, 1000),
                                                                    (Rule.COUNT_VALUE, 2002, 2000)]
    entry = parser.leniencies[0]
    assert isinstance(parser.leniencies, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.count = 0  # type: ignore[misc]
    # The next parse starts afresh; a parse that raises leaves none.
    parser.parse("# TYPE c counter\nc_total 1\n# EOF\n", OM)
    assert parser.leniencies == ()
    parser.parse("# TYPE c counter\nc_total -1\n# EOF\n", OM)
    assert parser.leniencies
    with pytest.raises(ExpositionError):
        parser.parse("# TYPE c counter\nc_total -1\n", OM)
    assert parser.leniencies == ()
    # STRICT never has any.
    strict = ExpositionParser()
    strict.parse("# TYPE c counter\nc_total 1\n# EOF\n", OM)
    assert strict.leniencies == ()


def test_first_line_of_a_rule_is_its_earliest() -> None:
    # Family rules are checked when the family ends: a later family's earlier line still comes first.
    text = ('# TYPE a histogram\na_bucket{le="1"} 2\na_bucket{le="+Inf"} 1\na_count 1\na_sum 1\n'
            "# TYPE c counter\nc_total -1\n# EOF\n")
    _, leniencies = scraped(text, OM)
    assert [(e.rule, e.line) for e in leniencies] == [(Rule.HISTOGRAM_STRUCTURE, 3), (Rule.COUNTER_VALUE, 7)]
    # Sorted by line whatever order they were found in.
    assert [e.line for e in leniencies] == sorted(e.line for e in leniencies)


def test_valid_expositions_are_the_same_under_both() -> None:
    text = ('# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_count 2\nh_sum 3\n'
            '# TYPE c counter\nc_total 1 # {t="x"} 1\n# TYPE i info\ni_info{v="1"} 1\n# EOF\n')
    parser = ExpositionParser(strictness=SCRAPE)
    assert shape(parser.parse(text, OM)) == shape(parse_exposition(text, OM))
    assert parser.leniencies == ()
    prom = "# TYPE a counter\na_total 1\nb 2\n"
    assert shape(parse_exposition(prom, PROM, strictness=SCRAPE)) == shape(parse_exposition(prom, PROM))


def test_a_family_merged_from_blocks_reports_its_rules_at_their_lines() -> None:
    # The second block continues the family (same type); its non-cumulative buckets are on line 9.
    text = ('# TYPE h histogram\nh_bucket{a="1",le="+Inf"} 1\nh_count{a="1"} 1\nh_sum{a="1"} 1\n'
            "# TYPE g gauge\ng 1\n# TYPE h histogram\n"
            'h_bucket{a="2",le="1"} 2\nh_bucket{a="2",le="+Inf"} 1\nh_count{a="2"} 1\nh_sum{a="2"} 1\n# EOF\n')
    families, leniencies = scraped(text, OM)
    assert [(f[0], f[1], len(f[4])) for f in families] == [("h", "histogram", 7), ("g", "gauge", 1)]
    assert [(e.rule, e.line) for e in leniencies] == [(Rule.FAMILY_UNIQUE, 8), (Rule.HISTOGRAM_STRUCTURE, 9)]


def test_a_later_block_that_contradicts_stays_apart() -> None:
    # Another unit: two families of one name; a metadata-only block that changes the type of a typed
    # family likewise (the earlier family's samples were sorted under its type).
    text = "# TYPE a_s gauge\n# UNIT a_s s\na_s 1\n# TYPE b gauge\nb 1\n# UNIT a_s ms\n# EOF\n"
    with pytest.raises(ExpositionError, match="does not match"):
        parse_exposition(text, OM, strictness=SCRAPE)             # a UNIT that is not a suffix: refused
    text = "# TYPE a_s gauge\n# UNIT a_s s\na_s 1\n# TYPE b gauge\nb 1\n# UNIT a_s s\n# TYPE a_s counter\n# EOF\n"
    families, leniencies = scraped(text, OM)
    assert [(f[0], f[1], f[3], len(f[4])) for f in families] == [("a_s", "gauge", "s", 1), ("b", "gauge", None, 1),
                                                                ("a_s", "counter", "s", 0)]
    assert [e.rule for e in leniencies] == [Rule.FAMILY_UNIQUE]


# ── escaped names: the reading of SCRAPE's own (Rule.ESCAPED_NAME) ─────────────────────────────

# Bodies STRICT accepts (valid OpenMetrics read literally: the declared family without samples, then untyped
# families named as the samples are) that SCRAPE reads as one family under the escaped name: (id, text, the
# family SCRAPE returns, the first sample's line and name, the other leniencies).
ESCAPED_READ = [
    ("one-series-gauge", "# HELP x:g A gauge.\n# TYPE x:g gauge\nx_g 2\n# EOF\n",
     ("x_g", "gauge", "A gauge.", None, [("x_g", {}, 2.0)]), (3, "x_g"), ()),
    ("info", '# TYPE x:i info\nx_i_info{v="1"} 1\nx_i_info{v="2"} 1\n# EOF\n',
     ("x_i", "info", None, None, [("x_i_info", {"v": "1"}, 1.0), ("x_i_info", {"v": "2"}, 1.0)]), (2, "x_i_info"), ()),
    # prometheus_client escapes the state label (named after the Enum) too: the family's escaped name is its name.
    ("stateset", '# HELP x:s Engine.\n# TYPE x:s stateset\nx_s{x_s="a"} 1\nx_s{x_s="b"} 0\n# EOF\n',
     ("x_s", "stateset", "Engine.", None, [("x_s", {"x_s": "a"}, 1.0), ("x_s", {"x_s": "b"}, 0.0)]), (3, "x_s"), ()),
    ("histogram-with-unit", "# TYPE x:h_seconds histogram\n# UNIT x:h_seconds seconds\n"
     'x_h_seconds_bucket{le="+Inf"} 1\nx_h_seconds_count 1\nx_h_seconds_sum 2\nx_h_seconds_created 3\n# EOF\n',
     ("x_h_seconds", "histogram", None, "seconds",
      [("x_h_seconds_bucket", {"le": "+Inf"}, 1.0), ("x_h_seconds_count", {}, 1.0), ("x_h_seconds_sum", {}, 2.0),
       ("x_h_seconds_created", {}, 3.0)]), (3, "x_h_seconds_bucket"), ()),
    # Every character outside [a-zA-Z0-9_] of the declared name, not only the first.
    ("two-colons", "# TYPE a:b:c counter\na_b_c_total 1\n# EOF\n",
     ("a_b_c", "counter", None, None, [("a_b_c_total", {}, 1.0)]), (2, "a_b_c_total"), ()),
    # The family's own name as a counter sample (Prometheus counts it in; family-unique), escaped.
    ("counter-own-name", "# TYPE x:y counter\nx_y 1\n# EOF\n",
     ("x_y", "counter", None, None, [("x_y", {}, 1.0)]), (2, "x_y"), ((Rule.FAMILY_UNIQUE, 2, 1),)),
]


@pytest.mark.parametrize(("text", "family", "first", "others"), [c[1:] for c in ESCAPED_READ],
                         ids=[c[0] for c in ESCAPED_READ])
def test_samples_under_the_escaped_name_keep_their_family(
        text: str, family: Shape, first: tuple[int, str], others: tuple[tuple[Rule, int, int], ...]) -> None:
    strict = parse_exposition(text, OM)
    declared = strict[0]
    assert declared.samples == () and all(f.type == "unknown" for f in strict[1:])    # STRICT: unchanged
    for parser in (ExpositionParser(strictness=SCRAPE),) * 2:                          # the same on a re-scrape
        families = shape(parser.parse(text, OM))
        assert families == [family]
        line, sample = first
        assert [(e.rule, e.line, e.count) for e in parser.leniencies] == sorted(
            ((Rule.ESCAPED_NAME, line, 1), *others), key=lambda e: e[1])
        escaped = next(e for e in parser.leniencies if e.rule is Rule.ESCAPED_NAME)
        assert escaped.text == escaped_name_text(sample, declared.name, family[0])
    # The same samples, in the same order, only grouped otherwise.
    assert [s for f in families for s in f[4]] == [s for f in shape(strict) for s in f[4]]


# Bodies where the samples are not the current family's under its escaped name: SCRAPE reads them as STRICT does,
# reporting nothing.
NOT_ESCAPED = [
    # the family already has samples under its declared name
    ("declared-samples-first", "# TYPE x:y gauge\nx:y 1\nx_y 2\n# EOF\n"),
    # a family started by a sample has no metadata to give
    ("no-metadata", "a:b 1\na_b 2\n# EOF\n"),
    # the family ended (another one's metadata) before the sample
    ("another-family-between", "# TYPE x:y gauge\n# TYPE b gauge\nb 1\nx_y 1\n# EOF\n"),
    # a suffix the family's type does not have
    ("suffix-of-another-type", "# TYPE x:y gauge\nx_y_total 1\n# EOF\n"),
    ("not-the-escaped-name", "# TYPE x:y gauge\nxy 1\n# EOF\n"),
    # a UNIT the escaped name would not end with
    ("unit-with-a-colon", "# TYPE a:b_c:d gauge\n# UNIT a:b_c:d c:d\na_b_c_d 1\n# EOF\n"),
    # no character to escape: the family's own name
    ("legacy-name", "# TYPE x_y gauge\nx_y 1\n# EOF\n"),
]


@pytest.mark.parametrize("text", [c[1] for c in NOT_ESCAPED], ids=[c[0] for c in NOT_ESCAPED])
def test_other_samples_are_not_read_under_an_escaped_name(text: str) -> None:
    families, leniencies = scraped(text, OM)
    assert families == shape(parse_exposition(text, OM))
    assert leniencies == ()


def test_escaped_name_in_prometheus_text_is_its_own_family() -> None:
    # The Prometheus text format keeps families by name (prometheus_client escapes metadata and samples alike
    # there): no reading under an escaped name.
    text = "# TYPE x:y counter\nx_y_total 1\n"
    assert scraped(text, PROM) == (shape(parse_exposition(text, PROM)), ())
