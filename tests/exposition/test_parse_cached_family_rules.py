"""OpenMetrics family rules on cached structure (``Plan``): a scrape whose families have the
structure of an earlier scrape is checked by value-only rules; it must accept and reject exactly
what the reference per-sample pass (``FamilyRules.check_samples``) accepts and rejects, with the same
error message and line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promotel.errors import ExpositionError
from promotel.exposition import ExpositionParser
from promotel.exposition.rules import FamilyBuilder, FamilyRules
from promotel.model import MetricFamily
from support.paths import CONFORMANCE, conformance_cases

OM = "application/openmetrics-text; version=1.0.0"
SUITE = CONFORMANCE
CASES = conformance_cases()


class ReferenceRules(FamilyRules):
    """The family rules run only by the reference per-sample pass."""

    def check(self, fam: FamilyBuilder) -> None:
        self.check_samples(fam)


class ReferenceParser(ExpositionParser):
    """The parser with the family rules run only by the reference per-sample pass."""

    def __init__(self) -> None:
        super().__init__()
        self._rules = ReferenceRules()


def outcome(parser: ExpositionParser, text: str | bytes) -> object:
    """What a parse gives: the families (NaN spelled out) or the error's message and line."""
    def num(x: float) -> object:
        return "NaN" if math.isnan(x) else x

    try:
        families: list[MetricFamily] = parser.parse(text, OM)
    except ExpositionError as exc:
        return ("error", str(exc), exc.line)
    return [(f.name, f.type, f.unit,
             [(s.name, s.labels.pairs(), num(s.value), s.timestamp_ns, s.exemplar is not None)
              for s in f.samples]) for f in families]


def warm_then(first: str, second: str) -> tuple[ExpositionParser, object]:
    parser = ExpositionParser()
    assert not isinstance(outcome(parser, first), tuple), "the first scrape must be valid"
    return parser, outcome(parser, second)


HIST = """# TYPE h histogram
h_bucket{a="1",le="0.5"} {b0}
h_bucket{a="1",le="1"} {b1}
h_bucket{a="1",le="+Inf"} {b2}
h_count{a="1"} {count}
h_sum{a="1"} {sum}
h_bucket{a="2",le="1"} 0
h_bucket{a="2",le="+Inf"} 0
h_bucket{a="3",le="-1"} {neg}
h_bucket{a="3",le="+Inf"} 1
# TYPE g gaugehistogram
g_bucket{le="-1"} 1
g_bucket{le="+Inf"} 2
g_gcount 2
g_gsum {gsum}
# TYPE p gaugehistogram
p_bucket{le="1"} 1
p_bucket{le="+Inf"} 2
p_gcount 2
p_gsum {psum}
# TYPE s summary
s{quantile="0.5"} {q}
s_count 3
s_sum {ssum}
# TYPE c counter
c_total{x="y"} {total} # {id="e"} 1
c_created{x="y"} 0
# TYPE st stateset
st{st="a"} {state}
st{st="b"} 0
# TYPE i info
i_info{v="1"} {info}
# EOF
"""
GOOD = {"b0": "0", "b1": "1", "b2": "2", "count": "2", "sum": "5", "neg": "1", "gsum": "-5", "psum": "3",
        "q": "NaN", "ssum": "4", "total": "7", "state": "1", "info": "1"}


def hist(**changes: str) -> str:
    values = GOOD | changes
    text = HIST
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def test_the_template_is_valid_and_its_plans_are_reused() -> None:
    parser = ExpositionParser()
    first = outcome(parser, hist())
    assert outcome(ReferenceParser(), hist()) == first
    assert not isinstance(first, tuple)
    plans = dict(parser._rules._plans)
    assert set(plans) == {"h", "g", "p", "s", "c", "st", "i"}
    second = hist(b2="3", count="3", total="8", gsum="-1")
    assert outcome(parser, second) == outcome(ReferenceParser(), second)
    assert all(parser._rules._plans[name] is plan for name, plan in plans.items())


@pytest.mark.parametrize(("changes", "message"), [
    ({"b1": "-1"}, "must be a non-negative integer"),
    ({"b1": "0.5"}, "must be a non-negative integer"),
    ({"b1": "NaN"}, "must be a non-negative integer"),
    ({"b1": "+Inf"}, "must be a non-negative integer"),
    ({"b0": "2"}, "decrease"),
    ({"neg": "2"}, "decrease"),
    ({"sum": "-1"}, "cannot be -1"),
    ({"count": "3"}, "differs from its \\+Inf bucket"),
    ({"count": "2.5"}, "must be a non-negative integer"),
    ({"gsum": "NaN"}, "cannot be NaN"),
    ({"psum": "-1"}, "negative _gsum but no negative buckets"),
    ({"q": "-1"}, "quantile values cannot be negative"),
    ({"ssum": "NaN"}, "cannot be NaN"),
    ({"ssum": "-0.5"}, "cannot be -0.5"),
    ({"total": "-1"}, "cannot be -1"),
    ({"total": "NaN"}, "cannot be NaN"),
    ({"state": "2"}, "stateset values must be 0 or 1"),
    ({"state": "NaN"}, "stateset values must be 0 or 1"),
    ({"info": "2"}, "info values must be 1"),
    ({"info": "NaN"}, "info values must be 1"),
])
def test_a_cached_structure_with_a_bad_value_is_rejected(changes: dict[str, str], message: str) -> None:
    bad = hist(**changes)
    parser, got = warm_then(hist(), bad)
    assert isinstance(got, tuple) and got[0] == "error"
    assert got == outcome(ReferenceParser(), bad) == outcome(ExpositionParser(), bad)
    with pytest.raises(ExpositionError, match=message):
        parser.parse(bad, OM)


def test_values_the_reference_allows_are_allowed_on_cached_structure() -> None:
    # -0.0 is a non-negative integer; NaN quantiles and +Inf sums are allowed.
    ok = hist(b0="-0.0", q="NaN", ssum="+Inf", total="+Inf", state="-0", gsum="NaN")
    bad_gsum = outcome(ReferenceParser(), ok)
    assert isinstance(bad_gsum, tuple)                 # the _gsum NaN is still an error
    ok = hist(b0="-0.0", q="NaN", ssum="+Inf", total="+Inf", state="-0", gsum="-7")
    _parser, got = warm_then(hist(), ok)
    assert not isinstance(got, tuple)
    assert got == outcome(ReferenceParser(), ok)


@pytest.mark.parametrize(("old", "new", "message"), [
    ('h_count{a="1"} 2\n', 'h_count{a="1"} 2 # {id="e"} 1\n', "can have exemplars"),
    ('c_created{x="y"} 0\n', 'c_created{x="y"} 0 # {id="e"} 1\n', "can have exemplars"),
    ('h_count{a="1"} 2\n', 'h_count{a="1"} 2 1\n', "timestamp"),
    ('s_count 3\n', 's_count 3 1\n', "timestamp"),
    ('p_gcount 2\n', 'p_gcount 2 # {id="e"} 1\n', "can have exemplars"),
])
def test_cached_structure_with_exemplars_or_timestamps(old: str, new: str, message: str) -> None:
    base = hist()
    assert old in base
    bad = base.replace(old, new)
    _parser, got = warm_then(base, bad)
    assert got == outcome(ReferenceParser(), bad)
    # A timestamp on only some samples of a group is an error, as is an exemplar on a _count.
    assert isinstance(got, tuple) and message in str(got[1])


def test_timestamps_on_a_whole_cached_group_are_fine() -> None:
    base = hist()
    text = base.replace("s_count 3\n", "s_count 3 1\n").replace("s_sum 4\n", "s_sum 4 1\n")
    text = text.replace('s{quantile="0.5"} NaN\n', 's{quantile="0.5"} NaN 1\n')
    parser, got = warm_then(base, text)
    assert not isinstance(got, tuple)
    assert got == outcome(ReferenceParser(), text)
    bad = text.replace("s_sum 4 1\n", "s_sum 4 0\n")
    assert outcome(parser, bad) == outcome(ReferenceParser(), bad)
    assert "backwards" in str(outcome(parser, bad))


def test_exemplars_on_buckets_and_totals_are_fine_on_cached_structure() -> None:
    base = hist()
    text = base.replace('h_bucket{a="1",le="1"} 1\n', 'h_bucket{a="1",le="1"} 1 # {id="x"} 0.5\n')
    parser, got = warm_then(base, text)
    assert not isinstance(got, tuple)
    assert outcome(parser, text) == got == outcome(ReferenceParser(), text)


@pytest.mark.parametrize(("old", "new"), [
    ('h_bucket{a="1",le="+Inf"} 2\n', ""),                               # no +Inf bucket
    ('h_bucket{a="1",le="1"} 1\n', 'h_bucket{a="1",le="3"} 1\n'),        # le out of order
    ('h_bucket{a="1",le="1"} 1\n', 'h_bucket{a="1",le="NaN"} 1\n'),
    ('h_bucket{a="1",le="1"} 1\n', 'h_bucket{a="1",le="inf"} 1\n'),
    ('h_bucket{a="1",le="1"} 1\n', 'h_bucket{a="1"} 1\n'),
    ('h_count{a="1"} 2\n', ""),                                          # buckets and no _count
    ('g_gcount 2\n', ""),
    ('p_gsum 3\n', ""),
    ('s{quantile="0.5"} NaN\n', 's{quantile="1.5"} NaN\n'),
    ('s{quantile="0.5"} NaN\n', 's NaN\n'),
    ('st{st="a"} 1\n', 'st{x="a"} 1\n'),
    ('c_created{x="y"} 0\n', 'c_created{x="z"} 0\nc_total{x="y"} 1\n'),  # group not consecutive
    ('h_bucket{a="2",le="1"} 0\n', 'h_bucket{le="1",a="2"} 0\n'),       # reordered: same group
    ('h_count{a="1"} 2\n', 'h_count{a="1"} 2\nh_bucket{a="1",le="5"} 2\n'),
    ('h_bucket{a="3",le="+Inf"} 1\n', 'h_bucket{a="3",le="+Inf"} 1\nh_sum{a="3"} 1\n'),
    ('h_bucket{a="3",le="+Inf"} 1\n', 'h_bucket{a="3",le="+Inf"} 1\nh_count{a="3"} 1\n'),
])
def test_a_changed_structure_is_checked_again(old: str, new: str) -> None:
    base = hist()
    assert old in base
    changed = base.replace(old, new)
    _parser, got = warm_then(base, changed)
    assert got == outcome(ReferenceParser(), changed) == outcome(ExpositionParser(), changed)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_conformance_cases_agree_with_the_reference(case: Path) -> None:
    spec = json.loads((case / "test.json").read_text())
    data = (case / spec["file"]).read_bytes()
    want = outcome(ReferenceParser(), data)
    assert isinstance(want, tuple) != spec["shouldParse"]
    parser = ExpositionParser()
    assert outcome(parser, data) == want
    assert outcome(parser, data) == want          # the second time on cached plans


# ─── differential: random structures and values, warm parser vs reference ─────────────────────

VALUES = ["0", "1", "2", "3", "0.5", "-1", "-0.0", "NaN", "+Inf", "-Inf", "1e3"]
LES = ["-2", "-1", "0", "0.5", "1", "10", "+Inf", "NaN", "1e1"]


@st.composite
def expositions(draw: st.DrawFn) -> tuple[list[str], list[int]]:
    """An exposition as lines, and the indices of the sample lines (whose values can change)."""
    lines: list[str] = []
    sample_lines: list[int] = []

    def sample(head: str, value: str) -> None:
        sample_lines.append(len(lines))
        lines.append(f"{head} {value}")

    for f in range(draw(st.integers(1, 4))):
        typ = draw(st.sampled_from(["counter", "gauge", "histogram", "gaugehistogram", "summary",
                                    "stateset", "info", "unknown"]))
        name = f"m{f}"
        lines.append(f"# TYPE {name} {typ}")
        groups = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3))
        for grp in groups:
            lab = f'g="{grp}"'
            if typ == "counter":
                sample(f"{name}_total{{{lab}}}", draw(st.sampled_from(VALUES)))
                if draw(st.booleans()):
                    sample(f"{name}_created{{{lab}}}", "1")
            elif typ in ("gauge", "unknown"):
                sample(f"{name}{{{lab}}}", draw(st.sampled_from(VALUES)))
            elif typ in ("histogram", "gaugehistogram"):
                les = draw(st.lists(st.sampled_from(LES), min_size=0, max_size=4))
                acc = 0
                for le in les:
                    acc += draw(st.integers(0, 2))
                    sample(f'{name}_bucket{{{lab},le="{le}"}}', str(acc))
                cnt, sm = ("_count", "_sum") if typ == "histogram" else ("_gcount", "_gsum")
                if draw(st.booleans()):
                    sample(f"{name}{cnt}{{{lab}}}", str(acc))
                if draw(st.booleans()):
                    sample(f"{name}{sm}{{{lab}}}", draw(st.sampled_from(VALUES)))
            elif typ == "summary":
                for q in draw(st.lists(st.sampled_from(["0", "0.5", "1", "2", "NaN"]), max_size=2)):
                    sample(f'{name}{{{lab},quantile="{q}"}}', draw(st.sampled_from(VALUES)))
                if draw(st.booleans()):
                    sample(f"{name}_count{{{lab}}}", draw(st.sampled_from(VALUES)))
                    sample(f"{name}_sum{{{lab}}}", draw(st.sampled_from(VALUES)))
            elif typ == "stateset":
                for state in draw(st.lists(st.sampled_from(["x", "y"]), min_size=1, max_size=2)):
                    sample(f'{name}{{{lab},{name}="{state}"}}', draw(st.sampled_from(["0", "1", "2"])))
            else:
                sample(f"{name}_info{{{lab}}}", draw(st.sampled_from(["1", "1", "2"])))
    return lines, sample_lines


def render(lines: list[str]) -> str:
    return "\n".join(lines) + "\n# EOF\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expositions(), st.data())
def test_warm_parser_agrees_with_the_reference(expo: tuple[list[str], list[int]], data: st.DataObject) -> None:
    lines, sample_lines = expo
    parser = ExpositionParser()
    first = render(lines)
    assert outcome(parser, first) == outcome(ReferenceParser(), first)
    # The next scrape: same structure, some values changed (maybe into invalid ones), and maybe
    # a timestamp, an exemplar or a moved line.
    nxt = list(lines)
    changed = data.draw(st.lists(st.sampled_from(sample_lines), max_size=3)) if sample_lines else []
    for idx in changed:
        head, _, _ = nxt[idx].rpartition(" ")
        nxt[idx] = f"{head} {data.draw(st.sampled_from(VALUES))}"
    extra = data.draw(st.sampled_from(["", "", "ts", "exemplar", "swap"]))
    if extra and sample_lines:
        idx = data.draw(st.sampled_from(sample_lines))
        if extra == "ts":
            nxt[idx] += " 1"
        elif extra == "exemplar":
            nxt[idx] += ' # {e="1"} 1'
        elif idx + 1 < len(nxt):
            nxt[idx], nxt[idx + 1] = nxt[idx + 1], nxt[idx]
    second = render(nxt)
    want = outcome(ReferenceParser(), second)
    assert outcome(parser, second) == want
    assert outcome(ExpositionParser(), second) == want
