"""SeriesRelabeler across scrapes: what it remembers of the previous scrape (per family, by position) must
never change a result. Each scrape's output is compared with a relabeler that has seen nothing before,
on bodies parsed by one parser (which shares unchanged lines' Samples and Labels between scrapes, as in
the service)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pytest

from promotel.discovery.relabel import RelabelConfig, parse_relabel_configs
from promotel.discovery.seriesrelabel import SeriesRelabeler
from promotel.exposition import ExpositionParser, Strictness
from promotel.model import MetricFamily, Sample

RULES = parse_relabel_configs([
    {"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"},             # a whole family
    {"source_labels": ["code"], "regex": "5..", "action": "drop"},                   # some series
    {"source_labels": ["__name__"], "regex": "lat_(.*)", "target_label": "__name__",  # a family move
     "replacement": "latency_$1"},
    {"regex": "tmp_.*", "action": "labeldrop"},
])
DROP_ONLY = parse_relabel_configs([{"source_labels": ["code"], "regex": "5..", "action": "drop"},
                                   {"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"}])

BASE = """# TYPE go_goroutines gauge
go_goroutines 5
# TYPE http_requests counter
http_requests_total{code="200",env="dev",tmp_x="1"} 3
http_requests_total{code="404"} 1
http_requests_total{code="500"} 1
# TYPE lat histogram
lat_bucket{le="1"} 1
lat_bucket{le="+Inf"} 2
lat_sum 1.5
lat_count 2
# TYPE rpc summary
rpc{quantile="0.5",m="a"} 0.1
rpc_sum{m="a"} 3
rpc_count{m="a"} 4
# TYPE temp gauge
temp{room="a"} 20
temp{room="b"} 21
"""

# One scrape after another: each changes what the previous scrape's memory must not be trusted for.
SCRAPES = [
    BASE,
    # values only; some lines unchanged (the parser hands over the very same Sample)
    BASE.replace("go_goroutines 5", "go_goroutines 6").replace('{code="404"} 1', '{code="404"} 2')
        .replace("lat_sum 1.5", "lat_sum 2.5").replace('room="b"} 21', 'room="b"} 22'),
    # a line added before others (every later line shifted), a label set changed in place, a value changed
    BASE.replace("# TYPE http_requests counter\n", '# TYPE http_requests counter\nhttp_requests_total{code="201"} 9\n')
        .replace('{code="404"} 1', '{code="405"} 1').replace('room="a"} 20', 'room="a"} 19'),
    # a kept series becomes a dropped one at the same position, and back; a dropped one becomes kept
    BASE.replace('{code="404"} 1', '{code="503"} 1').replace('{code="500"} 1', '{code="400"} 1'),
    # same positions, the names swapped (lat_sum/lat_count share their empty Labels); series reordered
    BASE.replace("lat_sum 1.5\nlat_count 2", "lat_count 2\nlat_sum 1.5")
        .replace('temp{room="a"} 20\ntemp{room="b"} 21', 'temp{room="b"} 21\ntemp{room="a"} 20'),
    # families gone
    "# TYPE temp gauge\ntemp{room=\"a\"} 20\n",
    # and back, with an exposed env where there was none (honor_labels decides between the two)
    BASE.replace('temp{room="a"} 20', 'temp{room="a",env="lab"} 20'),
    BASE.replace('temp{room="a"} 20', 'temp{room="a",env="lab"} 20'),
    # a family's type changes under the same samples
    BASE.replace("# TYPE temp gauge", "# TYPE temp untyped"),
]

CONFIGS: dict[str, tuple[Mapping[str, str], Sequence[RelabelConfig], bool]] = {
    "target-labels-and-rules": ({"job": "j", "instance": "h:1", "env": "prod"}, RULES, False),
    "honor-labels": ({"job": "j", "instance": "h:1", "env": "prod"}, RULES, True),
    "target-labels-only": ({"job": "j", "instance": "h:1", "env": "prod", "zone": "z"}, (), False),
    "drop-rules-only": ({"job": "j", "instance": "h:1"}, DROP_ONLY, False),
}


def _relabeler(name: str) -> SeriesRelabeler:
    labels, rules, honor = CONFIGS[name]
    return SeriesRelabeler(labels, rules, honor_labels=honor, job="j", instance="h:1")


def _parse(parser: ExpositionParser, text: str) -> list[MetricFamily]:
    return list(parser.parse(text, "text/plain; version=0.0.4"))


def _canon(families: Sequence[MetricFamily]) -> list[object]:
    """Everything a result says, label order included, NaN made comparable."""
    return [(f.name, f.type, f.help, f.unit,
             [(s.name, s.labels.pairs(), repr(s.value), s.timestamp_ns, s.exemplar) for s in f.samples])
            for f in families]


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_scrape_equals_a_relabeler_that_remembers_nothing(config: str) -> None:
    parser = ExpositionParser(strictness=Strictness.SCRAPE)
    relabeler = _relabeler(config)
    for i, text in enumerate(SCRAPES * 2):
        families = _parse(parser, text)
        got, dropped, example = relabeler.apply(families)
        want, want_dropped, want_example = _relabeler(config).apply(_parse(ExpositionParser(), text))
        assert _canon(got) == _canon(want), f"scrape {i}"
        assert (dropped, example) == (want_dropped, want_example), f"scrape {i}"


def test_the_steady_state_reuses_outputs_and_runs_no_rule() -> None:
    parser = ExpositionParser(strictness=Strictness.SCRAPE)
    relabeler = _relabeler("target-labels-and-rules")
    first, _, _ = relabeler.apply(_parse(parser, SCRAPES[0]))
    runs: list[str] = []
    series = relabeler._series

    def counting(name: str, labels: object) -> object:
        runs.append(name)
        return series(name, labels)  # type: ignore[arg-type]

    relabeler._series = counting  # type: ignore[method-assign,assignment]
    second, _, _ = relabeler.apply(_parse(parser, SCRAPES[1]))
    assert runs == []                             # every series known: no rule ran
    old_a, old_b = _temp(first, "a"), _temp(first, "b")
    new_a, new_b = _temp(second, "a"), _temp(second, "b")
    assert new_a is old_a                         # an unchanged line: the very output Sample of the last scrape
    # A new value: a new Sample with the previous output's very Labels (the mapping's caches see one object).
    assert new_b is not old_b and new_b.value == 22.0 and new_b.labels is old_b.labels
    # A line added before the others: only the new series run the rules; the shifted ones are found.
    relabeler.apply(_parse(parser, SCRAPES[2]))
    assert runs == ["http_requests_total", "http_requests_total"]      # code="201" and code="405"


def _temp(families: Sequence[MetricFamily], room: str) -> Sample:
    return next(s for f in families for s in f.samples if s.name == "temp" and dict(s.labels).get("room") == room)


def test_a_label_change_at_the_same_position_is_not_the_previous_series() -> None:
    parser = ExpositionParser(strictness=Strictness.SCRAPE)
    relabeler = _relabeler("target-labels-and-rules")
    relabeler.apply(_parse(parser, 'temp{room="a"} 1\n'))
    relabeler.apply(_parse(parser, 'temp{room="a"} 2\n'))
    got, _, _ = relabeler.apply(_parse(parser, 'temp{room="b"} 2\n'))
    assert [dict(s.labels) for f in got for s in f.samples] == [{"room": "b", "env": "prod"}]
    got, dropped, _ = relabeler.apply(_parse(parser, 'temp{room="b",code="500"} 2\n'))
    assert got == [] and dropped == 1


def test_le_and_quantile_stay_last() -> None:
    relabeler = _relabeler("target-labels-and-rules")
    got, _, _ = relabeler.apply(_parse(ExpositionParser(), SCRAPES[0]))
    by_name = {s.name: s for f in got for s in f.samples}
    assert by_name["latency_bucket"].labels.flat[-2:] == ("le", "+Inf")
    assert by_name["rpc"].labels.flat[-2:] == ("quantile", "0.5")
    assert dict(by_name["rpc"].labels) == {"m": "a", "env": "prod", "quantile": "0.5"}


def test_memory_is_the_last_scrapes_series() -> None:
    parser = ExpositionParser(strictness=Strictness.SCRAPE)
    relabeler = _relabeler("target-labels-and-rules")
    many = "".join(f'temp{{room="{i}"}} {i}\n' for i in range(500))
    relabeler.apply(_parse(parser, "# TYPE temp gauge\n" + many))
    assert sum(len(p.samples) for p in relabeler._last.values()) == 500
    got, _, _ = relabeler.apply(_parse(parser, "# TYPE other gauge\nother 1\n"))
    # The previous scrape's families are forgotten: what is kept is this scrape's one series.
    assert list(relabeler._last) == ["other"]
    assert sum(len(p.samples) for p in relabeler._last.values()) == 1
    assert [(s.name, dict(s.labels)) for f in got for s in f.samples] == [("other", {"env": "prod"})]


def test_honor_labels_across_scrapes() -> None:
    parser = ExpositionParser(strictness=Strictness.SCRAPE)
    honored = _relabeler("honor-labels")
    plain = _relabeler("target-labels-and-rules")
    p2 = ExpositionParser(strictness=Strictness.SCRAPE)
    for value in ("1", "2"):
        text = f'temp{{room="a",env="lab"}} {value}\n'
        h, _, _ = honored.apply(_parse(parser, text))
        o, _, _ = plain.apply(_parse(p2, text))
        assert [dict(s.labels) for f in h for s in f.samples] == [{"room": "a", "env": "lab"}]
        assert [dict(s.labels) for f in o for s in f.samples] == [{"room": "a", "exported_env": "lab", "env": "prod"}]
        assert [s.value for f in h for s in f.samples] == [float(value)]
    h, _, _ = honored.apply(_parse(parser, 'temp{room="a"} 3\n'))
    assert [dict(s.labels) for f in h for s in f.samples] == [{"room": "a", "env": "prod"}]


def test_a_rename_moves_series_on_every_scrape() -> None:
    parser = ExpositionParser(strictness=Strictness.SCRAPE)
    relabeler = _relabeler("target-labels-and-rules")
    for value in ("1", "2", "2"):
        text = f'# TYPE lat histogram\nlat_bucket{{le="+Inf"}} {value}\nlat_sum 0.5\nlat_count {value}\n'
        got, dropped, _ = relabeler.apply(_parse(parser, text))
        assert dropped == 0
        assert [(f.name, f.type) for f in got] == [("latency", "histogram")]
        assert [(s.name, s.value) for s in got[0].samples] == [
            ("latency_bucket", float(value)), ("latency_sum", 0.5), ("latency_count", float(value))]


def test_nan_values_pass() -> None:
    parser = ExpositionParser(strictness=Strictness.SCRAPE)
    relabeler = _relabeler("target-labels-only")
    for _ in range(2):
        got, _, _ = relabeler.apply(_parse(parser, "temp NaN\n"))
        assert math.isnan(got[0].samples[0].value)


def test_a_family_no_rule_touches_passes_as_it_is() -> None:
    parser = ExpositionParser(strictness=Strictness.SCRAPE)
    relabeler = _relabeler("drop-rules-only")
    for text in (SCRAPES[0], SCRAPES[1], SCRAPES[1]):
        families = _parse(parser, text)
        got, dropped, example = relabeler.apply(families)
        temp = next(f for f in families if f.name == "temp")
        assert any(f is temp for f in got)
        assert (dropped, example) == (2, "go_goroutines")     # go_goroutines and code="500"


def test_series_parsed_afresh_are_found_by_content() -> None:
    # A new parser each scrape: every Labels is a new object, as for lines the parser parses again
    # (timestamps, a new order). Past a few such series, the family's previous series are indexed by content.
    relabeler = _relabeler("target-labels-and-rules")
    body = "# TYPE temp gauge\n" + "".join(f'temp{{room="{i}",code="{500 if i == 7 else 200}"}} {i}\n'
                                          for i in range(40))
    first, _, _ = relabeler.apply(_parse(ExpositionParser(), body))
    runs: list[str] = []
    series = relabeler._series

    def counting(name: str, labels: object) -> object:
        runs.append(dict(labels)["room"])  # type: ignore[call-overload]
        return series(name, labels)  # type: ignore[arg-type]

    relabeler._series = counting  # type: ignore[method-assign,assignment]
    moved = body.replace('temp{room="39",code="200"} 39\n', "").replace("# TYPE temp gauge\n",
                                                                        '# TYPE temp gauge\ntemp{room="new"} 1\n')
    got, dropped, _ = relabeler.apply(_parse(ExpositionParser(), moved))
    want, want_dropped, _ = _relabeler("target-labels-and-rules").apply(_parse(ExpositionParser(), moved))
    assert _canon(got) == _canon(want) and dropped == want_dropped == 1
    # The first 16 series not found by position run their rules; the index finds the others.
    assert runs == ["new"] + [str(i) for i in range(15)]
    assert len(first[0].samples) == len(got[0].samples) == 39
