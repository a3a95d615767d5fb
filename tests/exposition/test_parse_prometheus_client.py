"""Property: whatever a prometheus_client registry holds, written by prometheus_client in either
format, parses back to the same families, sample names, labels and values."""

from __future__ import annotations

import math
from collections import Counter as Multiset

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
)
from prometheus_client.exposition import generate_latest as generate_004
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OM_CT
from prometheus_client.openmetrics.exposition import generate_latest as generate_om

from promotel.exposition import ExpositionParser, parse_exposition
from promotel.model import MetricFamily

PROM_CT = "text/plain; version=0.0.4; charset=utf-8"

label_values = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from(['"', "\\", "\n", "\\n", '\\"', "{}", ',="#', " # ", "é€😀", "", "a b", "\\\\\n"]),
)
label_names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
# Observations are non-negative: OpenMetrics forbids a negative histogram/summary _sum.
finite = st.floats(min_value=0, max_value=1e300, allow_nan=False, allow_infinity=False, width=64)
any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def registries(draw: st.DrawFn) -> CollectorRegistry:
    reg = CollectorRegistry()
    for i in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["counter", "gauge", "histogram", "summary", "info", "enum"]))
        name = f"{draw(label_names)}_m{i}"
        help_ = draw(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=15))
        lnames = [f"{n}_{j}" for j, n in enumerate(draw(st.lists(label_names, max_size=3)))]
        combos = draw(st.lists(st.tuples(*[label_values for _ in lnames]), min_size=1, max_size=3,
                               unique=True)) if lnames else [()]
        if kind == "info":
            keys = [f"{k}_{j}" for j, k in enumerate(draw(st.lists(label_names, min_size=1, max_size=3)))]
            info = Info(name, help_, registry=reg)
            info.info({k: draw(label_values) for k in keys})
            continue
        if kind == "enum":
            states = draw(st.lists(st.from_regex(r"[a-z]{1,5}", fullmatch=True), min_size=1, max_size=3,
                                   unique=True))
            Enum(name, help_, states=states, registry=reg).state(draw(st.sampled_from(states)))
            continue
        cls = {"counter": Counter, "gauge": Gauge, "histogram": Histogram, "summary": Summary}[kind]
        metric = cls(name, help_, lnames, registry=reg)
        for combo in combos:
            child = metric.labels(*combo) if lnames else metric
            for _ in range(draw(st.integers(0, 3))):
                if kind == "counter":
                    child.inc(draw(st.floats(min_value=0, allow_nan=False, allow_infinity=True)))
                elif kind == "gauge":
                    child.set(draw(any_float))
                else:
                    child.observe(draw(finite))
    return reg


def canon(x: float) -> object:
    return "NaN" if math.isnan(x) else x


def expected_samples(reg: CollectorRegistry) -> Multiset[object]:
    return Multiset((s.name, tuple(sorted(s.labels.items())), canon(s.value))
                    for m in reg.collect() for s in m.samples)


def parsed_samples(families: list[MetricFamily]) -> Multiset[object]:
    return Multiset((s.name, tuple(sorted(s.labels.pairs())), canon(s.value))
                    for f in families for s in f.samples)


SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(registries())
def test_prometheus_text_roundtrip(reg: CollectorRegistry) -> None:
    text = generate_004(reg)
    families = parse_exposition(text, PROM_CT)
    assert parsed_samples(families) == expected_samples(reg)
    for fam in families:
        assert all(s.name.startswith(fam.name) for s in fam.samples)
    declared = {line.split(" ")[2] for line in text.decode().splitlines() if line.startswith("# TYPE ")}
    assert {f.name for f in families} == declared
    # The same text again through a warmed-up parser: identical.
    parser = ExpositionParser()
    parser.parse(text, PROM_CT)
    assert parsed_samples(parser.parse(text, PROM_CT)) == expected_samples(reg)


@SETTINGS
@given(registries())
def test_openmetrics_roundtrip(reg: CollectorRegistry) -> None:
    text = generate_om(reg)
    families = parse_exposition(text, OM_CT)
    assert parsed_samples(families) == expected_samples(reg)
    assert [f.name for f in families] == [m.name for m in reg.collect()]
    assert [f.type for f in families] == [m.type for m in reg.collect()]
    assert [f.help for f in families] == [m.documentation for m in reg.collect()]
    parser = ExpositionParser()
    parser.parse(text, OM_CT)
    assert parsed_samples(parser.parse(text, OM_CT)) == expected_samples(reg)
