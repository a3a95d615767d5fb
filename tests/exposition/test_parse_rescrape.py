"""Re-scrapes through one parser give exactly what a fresh parser gives.

The parser keeps only the previous scrape's lines and matches each new line against the line at the
same position (past lines added or removed before it), or against wherever its series was. These tests
move, add, drop and reshape series between scrapes, in the spellings that take the careful path too,
and compare every result (or error) with a fresh parse.
"""

from __future__ import annotations

import random
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promotel.errors import ExpositionError
from promotel.exposition import ExpositionParser, parse_exposition
from promotel.model import Labels, Sample
from support.families import comparable
from support.paths import REPO

sys.path.insert(0, str(REPO / "bench"))
from gen_baseten import BasetenTarget

PROM = "text/plain; version=0.0.4"
PROM1 = "text/plain; version=1.0.0; escaping=allow-utf-8"
OM = "application/openmetrics-text; version=1.0.0"


def result(parser: ExpositionParser, text: str, ctype: str) -> object:
    try:
        return comparable(parser.parse(text, ctype))
    except ExpositionError as exc:
        return ("error", str(exc), exc.line)


def same_as_fresh(parser: ExpositionParser, text: str, ctype: str) -> object:
    got = result(parser, text, ctype)
    assert got == result(ExpositionParser(), text, ctype), text
    return got


# ─── moved, added and dropped series ─────────────────────────────────────────────────────────

def exposition(series: list[str], values: dict[str, str]) -> str:
    return "# TYPE m gauge\n" + "".join(f"{s} {values.get(s, '1')}\n" for s in series)


def test_series_added_before_others_keep_their_identity() -> None:
    parser = ExpositionParser()
    old = [f'm{{i="{i}"}}' for i in range(20)]
    same_as_fresh(parser, exposition(old, {}), PROM)
    new = old[:5] + ['m{i="new1"}', 'm{i="new2"}'] + old[5:]
    got = same_as_fresh(parser, exposition(new, {s: "2" for s in new}), PROM)
    assert got[0][4][5][1] == (("i", "new1"),) and got[0][4][7][1] == (("i", "5"),)   # type: ignore[index]
    # And the scrape after that is aligned again.
    same_as_fresh(parser, exposition(new, {s: "3" for s in new}), PROM)


def test_series_dropped_and_reordered() -> None:
    parser = ExpositionParser()
    old = [f'm{{i="{i}"}}' for i in range(30)]
    same_as_fresh(parser, exposition(old, {}), PROM)
    dropped = old[:3] + old[10:]
    same_as_fresh(parser, exposition(dropped, {s: "7" for s in dropped}), PROM)
    shuffled = dropped[:]
    random.Random(4).shuffle(shuffled)
    same_as_fresh(parser, exposition(shuffled, {s: "8" for s in shuffled[::2]}), PROM)


@pytest.mark.parametrize(("first", "second"), [
    ("m 1 \n", "m 1 5\n"),                     # trailing blank: "m 1" was not the series text
    ("m 1  123\n", "m 1 5\n"),                 # two blanks before the timestamp
    ("m 1 123\n", "m 1 5\n"),                  # a timestamp, then a line whose value looks like one
    ("m 1 123\n", "m 2\n"),                    # the timestamp goes away
    ("m 2\n", "m 1 123\n"),                    # a timestamp appears
    ("m  1\n", "m  2\n"),                      # two blanks after the series
    (" m 1\n", " m 2\n"),                      # a leading blank
    ('m {a="b"} 1\n', 'm {a="b"} 2\n'),        # a blank before the labels
    ('m{a="1 2"} 3\n', 'm{a="1 2"} 4\n'),      # a blank inside a label value
    ('m{a="1 2"} 3\n', 'm{a="1 5\n'),          # ... and a line cut inside it
    ("m 1\n", "m 1_0\n"),                      # an invalid value where a valid one was
    ("m 1\n", "m\t2\n"),                       # a tab
    ("m\t1\n", "m\t2\n"),
])
def test_reshaped_lines(first: str, second: str) -> None:
    parser = ExpositionParser()
    same_as_fresh(parser, "# TYPE m gauge\n" + first, PROM)
    same_as_fresh(parser, "# TYPE m gauge\n" + second, PROM)
    same_as_fresh(parser, "# TYPE m gauge\n" + first, PROM)


@pytest.mark.parametrize("ctype", [PROM, OM])
def test_untrusted_line_stays_untrusted_when_it_moves(ctype: str) -> None:
    """A careful-path line whose text before the last space is not its series (trailing blank) keeps
    being distrusted after lines are added before it, so a later 'm 1 5' is not read as 'm' = 5."""
    eof = "# EOF\n" if ctype == OM else ""
    parser = ExpositionParser()
    for body in ("x 1\nm 1 \n", "a 1\nx 1\nm 1 \n", "a 1\nx 1\nm 1 5\n"):
        same_as_fresh(parser, body + eof, ctype)


def test_errors_name_the_labels_in_the_order_of_the_line_at_hand() -> None:
    """The OpenMetrics grouping check remembers label groups across scrapes; an error must still print the
    labels as this scrape spells them (Labels equality ignores order)."""
    parser = ExpositionParser()
    same_as_fresh(parser, 'm{a="1",b="2"} 1 1\n# EOF\n', OM)
    got = same_as_fresh(parser, 'm{b="2",a="1"} 1\nm{c="3"} 1\nm{b="2",a="1"} 1\n# EOF\n', OM)
    assert isinstance(got, tuple) and "{'b': '2', 'a': '1'} are not consecutive" in got[1]


def test_quoted_names_take_the_careful_path_then_the_positional_one() -> None:
    parser = ExpositionParser()
    first = '{"my.metric",a="b"} 1\n{"my.metric",a="c"} 2\n'
    same_as_fresh(parser, first, PROM1)
    assert parser._rescrape._careful == set()            # canonical lines: trusted by position next time
    same_as_fresh(parser, first.replace("} 1", "} 9"), PROM1)


def test_hash_collisions_in_the_index_are_caught_by_the_text() -> None:
    """Every lookup in the index of the previous scrape returns some other line: the text check must
    reject it, and the line is parsed as new."""

    class Colliding(dict[int, int]):
        def get(self, key: int, default: Any = None) -> Any:     # type: ignore[override]
            return 0

    parser = ExpositionParser()
    parser._rescrape._prev_index = lambda: Colliding()     # type: ignore[method-assign]
    old = [f'm{{i="{i}"}}' for i in range(10)]
    same_as_fresh(parser, exposition(old, {}), PROM)
    new = ['m{i="x"}'] + old[4:]
    same_as_fresh(parser, exposition(new, {s: "5" for s in new}), PROM)


def test_parser_keeps_no_per_series_text_between_scrapes() -> None:
    parser = ExpositionParser()
    text = exposition([f'm{{i="{i}"}}' for i in range(100)], {})
    parser.parse(text, PROM)
    parser.parse(text.replace(" 1\n", " 2\n"), PROM)
    assert len(parser._rescrape._prev_got) == 101 and parser._rescrape._prev_text.startswith("# TYPE m gauge\nm{i=\"0\"} 2\n")
    assert not parser._rescrape._prev_lines
    assert not parser._rescrape._bodies and not parser._rescrape._prefixes and parser._rescrape._index is None


# ─── random re-scrapes against a fresh parse ─────────────────────────────────────────────────

# Series texts in the shapes a scrape can hold, valid and not.
PROM_SERIES = ['a', 'a{x="1"}', 'a{x="2",le="0.5"}', 'a{x="2",le="1"}', 'a{x="2",le="+Inf"}', 'b_total',
               'b_total{y="a b"}', ' c', 'c {z="1"}', 'a{x="1",}', 'a{x="1"} ', 'd{q="\\"}"}', 'e{x="1",x="2"}',
               'f{x="1"']
OM_SERIES = ['a', 'a{x="1"}', 'a{x="2"}', 'b_total', 'b_total{y="a b"}', 'c{z="1",}', 'd{q="\\"}"}',
             'e{x="1",x="2"}']
VALUES = ["1", "2.5", "-3", "1e3", "NaN", "+Inf", "0", "17", "1_0", "x", ""]
TAILS = ["", "", "", " 1700000000000", "  5", " ", " # {t=\"1\"} 1"]


@st.composite
def scrapes(draw: Any, om: bool) -> list[str]:
    pool = OM_SERIES if om else PROM_SERIES
    texts = []
    for _ in range(draw(st.integers(2, 4))):
        chosen = draw(st.lists(st.sampled_from(pool), max_size=10))
        if om:
            chosen.sort(key=lambda s: s.strip().split("{")[0])      # OpenMetrics keeps a family together
        lines = [f"{s} {draw(st.sampled_from(VALUES))}{draw(st.sampled_from(TAILS))}" for s in chosen]
        texts.append("\n".join(lines) + ("\n# EOF\n" if om else "\n"))
    return texts


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(scrapes(om=False))
def test_random_prometheus_rescrapes(texts: list[str]) -> None:
    parser = ExpositionParser()
    for text in texts:
        same_as_fresh(parser, text, PROM)


@SETTINGS
@given(scrapes(om=True))
def test_random_openmetrics_rescrapes(texts: list[str]) -> None:
    parser = ExpositionParser()
    for text in texts:
        same_as_fresh(parser, text, OM)


@SETTINGS
@given(st.data())
def test_random_rescrapes_across_dialects(data: Any) -> None:
    parser = ExpositionParser()
    for _ in range(3):
        om = data.draw(st.booleans())
        for text in data.draw(scrapes(om=om))[:2]:
            same_as_fresh(parser, text, OM if om else PROM)


# ─── the caches: a re-scrape gives what a fresh parser gives ─────────────────────────────────


@pytest.mark.parametrize("fmt", ["prometheus", "openmetrics"])
def test_steady_state_equals_fresh_parse(fmt: str) -> None:
    target = BasetenTarget(seed=3, deployments=6)
    parser = ExpositionParser()
    for _ in range(4):
        text = target.render(fmt)
        assert comparable(parser.parse(text)) == comparable(parse_exposition(text))
        target.advance()


def test_cached_series_still_checked_per_scrape() -> None:
    parser = ExpositionParser()
    good = "# TYPE a counter\na_total 1\n# EOF\n"
    parser.parse(good, OM)
    with pytest.raises(ExpositionError, match="cannot be -1"):
        parser.parse("# TYPE a counter\na_total -1\n# EOF\n", OM)
    # The same line, now in a family that does not own it (it would start a clashing one).
    parser.parse("# TYPE a gauge\na 1\n# EOF\n", OM)
    with pytest.raises(ExpositionError, match="used by two metric families"):
        parser.parse("# TYPE a counter\na 1\n# EOF\n", OM)
    hist = '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_count 2\nh_sum 1\n# EOF\n'
    parser.parse(hist, OM)
    with pytest.raises(ExpositionError, match="decrease"):
        parser.parse(hist.replace("} 2\n", "} 0\n", 1).replace("h_count 2", "h_count 0"), OM)
    # Prometheus text: a TYPE after the (cached) samples is still an error.
    parser.parse("a 1\n", PROM)
    with pytest.raises(ExpositionError, match="after its samples"):
        parser.parse("a 1\n# TYPE a gauge\n", PROM)


def test_dialect_change_forgets_cached_syntax() -> None:
    parser = ExpositionParser()
    parser.parse('a{x="1",} 1\n', PROM)                        # a trailing comma is fine here
    with pytest.raises(ExpositionError, match="trailing comma"):
        parser.parse('a{x="1",} 1\n# EOF\n', OM)


def test_cache_bound_evicts_and_stays_correct() -> None:
    parser = ExpositionParser(max_cache_entries=10)
    target = BasetenTarget(seed=5, deployments=3)
    for _ in range(3):
        text = target.render("prometheus")
        assert comparable(parser.parse(text)) == comparable(parse_exposition(text))
        assert not parser._rescrape._prev_got and not parser._rescrape._prev_text and not parser._rescrape._bodies \
            and not parser._rescrape._prefixes
        target.advance()
    assert comparable(ExpositionParser(max_cache_entries=0).parse(text)) == comparable(parse_exposition(text))


def test_unchanged_lines_share_samples_across_scrapes() -> None:
    parser = ExpositionParser()
    first = parser.parse("a 1\nb 2\n")
    second = parser.parse("a 1\nb 3\n")
    assert second[0].samples[0] is first[0].samples[0]
    assert second[1].samples[0] == Sample("b", Labels(), 3.0)
    # Labels of one series are one object across scrapes and across _sum/_count siblings.
    text = '# TYPE h histogram\nh_bucket{a="1",le="1"} 1\nh_bucket{a="1",le="+Inf"} 2\nh_sum{a="1"} 3\nh_count{a="1"} 2\n'
    p = ExpositionParser()
    s1 = p.parse(text)[0].samples
    s2 = p.parse(text.replace(" 3\n", " 4\n"))[0].samples
    assert s1[2].labels is s2[2].labels is s2[3].labels


@pytest.mark.parametrize(("ctype", "eof", "t1", "t2", "want2"), [
    ("text/plain; version=0.0.4", "", "1000", "2500", 2_500_000_000),
    ("application/openmetrics-text; version=1.0.0", "# EOF\n", "1", "2.5", 2_500_000_000),
])
def test_rescrape_of_timestamped_series_uses_the_cache_and_still_checks(
        ctype: str, eof: str, t1: str, t2: str, want2: int) -> None:
    parser = ExpositionParser()
    body = '# TYPE a gauge\na{x="1"} {v} {t}\n' + eof
    first = parser.parse(body.replace("{v}", "1").replace("{t}", t1), ctype)
    second = parser.parse(body.replace("{v}", "7").replace("{t}", t2), ctype)
    (s1,), (s2,) = first[0].samples, second[0].samples
    assert s2.labels is s1.labels                      # the cached series was reused
    assert (s2.value, s2.timestamp_ns) == (7.0, want2)
    with pytest.raises(ExpositionError) as info:
        parser.parse(body.replace("{v}", "7").replace("{t}", "12x"), ctype)
    assert info.value.line == 2
