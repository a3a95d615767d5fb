"""Re-scrapes through one parser give exactly what a fresh parser gives.

The parser keeps only the previous scrape's lines and matches each new line against the line at the
same position (past lines added or removed before it), or against wherever its series was. These tests
move, add, drop and reshape series between scrapes, in the spellings that take the careful path too,
and compare every result (or error) with a fresh parse.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.families import comparable

from promotel.errors import ExpositionError
from promotel.exposition import ExpositionParser

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
