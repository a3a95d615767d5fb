"""Quoted (UTF-8) metric and label names, as Prometheus 3 reads them (model/textparse: openmetricsparse.go,
promparse.go; the syntax of the Prometheus text format 1.0.0 and of the OpenMetrics 2.0 draft):
``{"metric.name","label.name"="v"}``, ``metric{"label.name"="v"}``, ``# TYPE "metric.name" counter``.

Both strictnesses read them where the Content-Type declares them (OpenMetrics with ``escaping=allow-utf-8``, what
promotel and Prometheus 3 ask for; Prometheus text 1.0.0); elsewhere ``STRICT`` refuses them (OpenMetrics 1.0 and
text 0.0.4 have no quoted names) and ``SCRAPE`` reads them all the same, reporting ``Rule.QUOTED_NAME``."""

from __future__ import annotations

import math
import re

import pytest

from promotel.errors import ExpositionError
from promotel.exposition import ExpositionParser, Rule, Strictness, parse_exposition
from promotel.exposition.openmetrics import OpenMetricsText
from promotel.exposition.rules import quoted_name_text
from promotel.exposition.tokens import Dialect, detect_dialect
from promotel.model import Labels, MetricFamily, Sample
from support.replay import REAL

OMU = "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8"
OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROM1 = "text/plain; version=1.0.0"
PROM = "text/plain; version=0.0.4"
SCRAPE = Strictness.SCRAPE

Shape = tuple[str, str, "str | None", "str | None", list[tuple[str, dict[str, str], object, "int | None"]]]


def shape(families: list[MetricFamily]) -> list[Shape]:
    def num(x: float) -> object:
        return "NaN" if math.isnan(x) else x
    return [(f.name, f.type, f.help, f.unit, [(s.name, dict(s.labels.items()), num(s.value), s.timestamp_ns)
                                              for s in f.samples]) for f in families]


# ─── which Content-Types declare quoted names ────────────────────────────────────────────────

@pytest.mark.parametrize(("content_type", "dialect"), [
    (OMU, Dialect(True, True)),
    ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8", Dialect(True, True)),
    ('Application/OpenMetrics-Text; version=1.0.0; Escaping="Allow-UTF-8"', Dialect(True, True)),
    (OM, Dialect(True, False)),
    ("application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores", Dialect(True, False)),
    ("application/openmetrics-text; version=0.0.1", Dialect(True, False)),
    (None, Dialect(True, False)),                 # an OpenMetrics body told by its '# EOF'
    (PROM1, Dialect(False, True)),
    ("text/plain; version=1.0.0; escaping=underscores", Dialect(False, True)),
    (PROM, Dialect(False, False)),
])
def test_the_content_type_declares_quoted_names(content_type: str | None, dialect: Dialect) -> None:
    assert detect_dialect(content_type, "a 1\n# EOF\n") == dialect


# ─── what Prometheus 3 reads ─────────────────────────────────────────────────────────────────

# (id, OpenMetrics body without '# EOF', the families read, the first quoted name's line and words, the number of
# lines with a quoted name)
VALID: list[tuple[str, str, list[Shape], tuple[int, str], int]] = [
    ("metadata-and-name", '# TYPE "a.b_seconds" counter\n# UNIT "a.b_seconds" seconds\n'
     '# HELP "a.b_seconds" Time \\"spent\\".\n{"a.b_seconds_total",x="1"} 1\n{"a.b_seconds_created",x="1"} 2\n',
     [("a.b_seconds", "counter", 'Time "spent".', "seconds",
       [("a.b_seconds_total", {"x": "1"}, 1.0, None), ("a.b_seconds_created", {"x": "1"}, 2.0, None)])],
     (1, 'metric name "a.b_seconds" in the TYPE line'), 5),
    # Prometheus 3 takes the quoted name wherever it stands in the braces (the specs write it first).
    ("name-after-a-label", '{x="1","a.b"} 1\n', [("a.b", "unknown", None, None, [("a.b", {"x": "1"}, 1.0, None)])],
     (1, 'metric name "a.b"'), 1),
    ("label-name", 'a{"b.c"="1",d="2"} 1\n',
     [("a", "unknown", None, None, [("a", {"b.c": "1", "d": "2"}, 1.0, None)])], (1, 'label name "b.c"'), 1),
    # A quoted legacy name is that name.
    ("legacy-names-quoted", '# TYPE "a" gauge\n{"a","b"="1"} 1\n',
     [("a", "gauge", None, None, [("a", {"b": "1"}, 1.0, None)])], (1, 'metric name "a" in the TYPE line'), 2),
    # Escaped as label values are (\\, \", \n; another backslash stays), and any character between the quotes.
    ("escapes-and-structure", '{"a\\"b\\\\c\\nd\\t {} =,# 1"} 1\n',
     [('a"b\\c\nd\\t {} =,# 1', "unknown", None, None, [('a"b\\c\nd\\t {} =,# 1', {}, 1.0, None)])],
     (1, 'metric name "a"b\\\\c\\nd\\\\t {} =,# 1"'), 1),
    ("non-ascii", '{"temperature.°C","città"="Zürich"} 21.5\n',
     [("temperature.°C", "unknown", None, None, [("temperature.°C", {"città": "Zürich"}, 21.5, None)])],
     (1, 'metric name "temperature.°C"'), 1),
    # prometheus_client 0.26 with escaping=allow-utf-8: an Enum named with a colon, its state label named after it.
    ("colon-stateset", '# TYPE x:s stateset\nx:s{"x:s"="a"} 1\nx:s{"x:s"="b"} 0\n',
     [("x:s", "stateset", None, None, [("x:s", {"x:s": "a"}, 1.0, None), ("x:s", {"x:s": "b"}, 0.0, None)])],
     (2, 'label name "x:s"'), 2),
    ("exemplar-label", '# TYPE c counter\nc_total 1 # {"trace.id"="abc"} 1 2\n',
     [("c", "counter", None, None, [("c_total", {}, 1.0, None)])], (2, 'label name "trace.id"'), 1),
    ("timestamp", '{"a.b"} 1 5\n', [("a.b", "unknown", None, None, [("a.b", {}, 1.0, 5_000_000_000)])],
     (1, 'metric name "a.b"'), 1),
]


@pytest.mark.parametrize(("body", "families"), [v[1:3] for v in VALID], ids=[v[0] for v in VALID])
def test_declared_quoted_names_are_read_under_both_strictnesses(body: str, families: list[Shape]) -> None:
    text = body + "# EOF\n"
    assert shape(parse_exposition(text, OMU)) == families
    parser = ExpositionParser(strictness=SCRAPE)
    assert shape(parser.parse(text, OMU)) == families
    assert all(e.rule is not Rule.QUOTED_NAME for e in parser.leniencies)


@pytest.mark.parametrize(("body", "families", "first", "lines"), [v[1:] for v in VALID], ids=[v[0] for v in VALID])
def test_undeclared_quoted_names_strict_refuses_scrape_reads(body: str, families: list[Shape],
                                                             first: tuple[int, str], lines: int) -> None:
    text = body + "# EOF\n"
    line, quoted = first
    with pytest.raises(ExpositionError) as err:
        parse_exposition(text, OM)
    assert (err.value.line, err.value.message) == (line, quoted_name_text(quoted, True))
    parser = ExpositionParser(strictness=SCRAPE)
    assert shape(parser.parse(text, OM)) == families
    quoted_rule = [e for e in parser.leniencies if e.rule is Rule.QUOTED_NAME]
    assert [(e.line, e.text, e.count) for e in quoted_rule] == [(line, err.value.message, lines)]   # once a line


def test_the_quoted_and_the_plain_spelling_are_one_family() -> None:
    quoted = parse_exposition('# TYPE "a" gauge\n# HELP "a" h\n{"a","b"="1"} 1\n{"a"} 2\n# EOF\n', OMU)
    plain = parse_exposition('# TYPE a gauge\n# HELP a h\na{b="1"} 1\na 2\n# EOF\n', OMU)
    assert quoted == plain


def test_quoted_names_are_strings_like_any_other() -> None:
    # Interned and compared as the parser's other names: the family rules apply to them unchanged.
    [fam] = parse_exposition('# TYPE "a.b" histogram\n{"a.b_bucket","le"="1"} 1\n{"a.b_bucket",le="+Inf"} 2\n'
                             '{"a.b_count"} 2\n{"a.b_sum"} 3\n# EOF\n', OMU)
    assert [s.labels for s in fam.samples[:2]] == [Labels({"le": "1"}), Labels({"le": "+Inf"})]
    with pytest.raises(ExpositionError, match=r'bucket counts of histogram "a\.b" decrease'):
        parse_exposition('# TYPE "a.b" histogram\n{"a.b_bucket",le="1"} 3\n{"a.b_bucket",le="+Inf"} 2\n'
                         '{"a.b_count"} 2\n{"a.b_sum"} 3\n# EOF\n', OMU)


# ─── what Prometheus refuses too: the same error under both strictnesses, declared or not ──────

FATAL = [
    ("no-name", "{} 1\n", "expected a metric name"),
    ("labels-without-name", '{a="1"} 1\n', "expected a metric name"),
    ("empty-name", '{""} 1\n', "empty quoted metric name"),
    ("empty-label-name", '{"a",""="b"} 1\n', "empty quoted label name"),
    ("two-names", '{"a","b"} 1\n', 'second metric name "b"'),
    ("name-before-and-in-braces", 'a{"b"} 1\n', 'second metric name "b" in the braces: the series is named "a"'),
    ("trailing-comma", '{"a",} 1\n', "trailing comma"),
    ("space-after-comma", '{"a", b="1"} 1\n', "expected a label name, found ' '"),
    ("unterminated-name", '{"a} 1\n', "unterminated quoted name"),
    ("name-in-an-exemplar", '# TYPE c counter\nc_total 1 # {"t"} 1\n', 'quoted name "t" without a value in the exemplar'),
    ("empty-name-in-metadata", '# TYPE "" gauge\n', "empty quoted metric name in the TYPE line"),
    ("no-space-after-metadata-name", '# TYPE "a"gauge\n', "expected a single space after the quoted metric name"),
    ("metadata-without-text", '# HELP "a b"\n', "a HELP line is"),
    ("unterminated-metadata-name", '# TYPE "a gauge\n', "unterminated quoted metric name in the TYPE line"),
]


@pytest.mark.parametrize(("body", "message"), [f[1:] for f in FATAL], ids=[f[0] for f in FATAL])
@pytest.mark.parametrize("ct", [OMU, OM])
def test_refused_under_both(body: str, message: str, ct: str) -> None:
    text = body + "# EOF\n"
    with pytest.raises(ExpositionError, match=re.escape(message)) as strict:
        parse_exposition(text, ct)
    parser = ExpositionParser(strictness=SCRAPE)
    with pytest.raises(ExpositionError) as scrape:
        parser.parse(text, ct)
    assert (scrape.value.line, scrape.value.message) == (strict.value.line, strict.value.message)
    assert parser.leniencies == ()


# ─── re-scrapes ──────────────────────────────────────────────────────────────────────────────

def _body(values: tuple[int, int, int]) -> str:
    return ('# TYPE "a.b" gauge\n' + "".join(f'{{"a.b","c.d"="{i}",e="f"}} {v}\n' for i, v in enumerate(values))
            + "# EOF\n")


def test_declared_quoted_series_take_the_careful_path_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A quoted series is tokenized once; on the next scrapes its line, unchanged or with a new value, is matched
    by position, as any other (the series text before the value is the series, whatever its syntax)."""
    calls: list[int] = []
    original = OpenMetricsText.careful

    def counted(self: OpenMetricsText, line: str, lineno: int) -> Sample:
        calls.append(lineno)
        return original(self, line, lineno)

    monkeypatch.setattr(OpenMetricsText, "careful", counted)
    parser = ExpositionParser(strictness=SCRAPE)
    first = parser.parse(_body((1, 2, 3)), OMU)
    assert calls == [2, 3, 4]
    for values in ((1, 2, 3), (4, 2, 6), (7, 8, 9)):
        calls.clear()
        got = parser.parse(_body(values), OMU)
        assert calls == []
        assert got == ExpositionParser(strictness=SCRAPE).parse(_body(values), OMU)
        assert parser.leniencies == ()
    assert [s.labels for s in got[0].samples] == [s.labels for s in first[0].samples]


def test_undeclared_quoted_series_report_on_every_scrape() -> None:
    # The leniency is reported for every line that has a quoted name, on every scrape, as a fresh parse does.
    parser = ExpositionParser(strictness=SCRAPE)
    for values in ((1, 2, 3), (1, 2, 3), (4, 2, 6)):
        got = parser.parse(_body(values), OM)
        fresh = ExpositionParser(strictness=SCRAPE)
        assert got == fresh.parse(_body(values), OM)
        assert [(e.rule, e.line, e.count) for e in parser.leniencies] == [(Rule.QUOTED_NAME, 1, 4)]
        assert parser.leniencies == fresh.leniencies
    # The same body once its Content-Type declares the names: nothing to report, the same families.
    assert parser.parse(_body((4, 2, 6)), OMU) == got
    assert parser.leniencies == ()


# ─── the real capture: prometheus_client 0.26 asked with escaping=allow-utf-8 ───────────────────

def test_prometheus_client_answer_with_a_quoted_label_name() -> None:
    body = (REAL / "python-client-0.26-colon-enum" / "prom3.body").read_bytes()
    families = {f.name: f for f in parse_exposition(body, OMU)}
    state = families["vllm:engine_state"]
    assert state.type == "stateset" and state.help == "Engine lifecycle state."
    assert [(s.labels["engine"], s.labels["vllm:engine_state"], s.value) for s in state.samples[:2]] == [
        ("0", "starting", 0.0), ("0", "running", 1.0)]
    assert len(state.samples) == 8
    # Saved without its Content-Type (`promotel lint` of the file): OpenMetrics 1.0 as written refuses the quoted
    # label name; scrape parsing reads the same, reporting each of the 8 lines.
    with pytest.raises(ExpositionError) as err:
        parse_exposition(body)
    assert (err.value.line, err.value.message) == (101, quoted_name_text('label name "vllm:engine_state"', True))
    parser = ExpositionParser(strictness=SCRAPE)
    assert {f.name: f for f in parser.parse(body)} == families
    assert [(e.rule, e.line, e.count) for e in parser.leniencies] == [(Rule.QUOTED_NAME, 101, 8)]


# ─── Prometheus text: the same tokenizer ─────────────────────────────────────────────────────

def test_text_reads_the_quoted_name_wherever_it_stands() -> None:
    [fam] = parse_exposition('{c="d" , "my.metric"} 1\n', PROM1)
    assert (fam.name, dict(fam.samples[0].labels)) == ("my.metric", {"c": "d"})
    assert shape(parse_exposition('{"my.metric",}  1\n', PROM1)) == [("my.metric", "unknown", None, None,
                                                                     [("my.metric", {}, 1.0, None)])]
    with pytest.raises(ExpositionError, match="expected a metric name"):
        parse_exposition('{c="d"} 1\n', PROM1)


def test_text_0_0_4_strict_refuses_scrape_reads() -> None:
    text = '# TYPE "my.metric" gauge\n{"my.metric","a.b"="v"} 1\n'
    with pytest.raises(ExpositionError, match=r"version 1\.0\.0 \(Content-Type: text/plain; version=1\.0\.0\)") as err:
        parse_exposition(text, PROM)
    assert err.value.line == 1
    parser = ExpositionParser(strictness=SCRAPE)
    assert parser.parse(text, PROM) == parse_exposition(text, PROM1)
    assert [(e.rule, e.line, e.count) for e in parser.leniencies] == [(Rule.QUOTED_NAME, 1, 2)]
