"""Nothing is left out silently: every sample, series or family the map and convert stages leave out is counted
by reason in ``TargetResult.dropped``, with the first family's name in ``drop_examples``; a duplicated series keeps
its first sample, as Prometheus does (docs/conversion.md, "What is left out")."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from promotel.model import HistogramPoint, NumberPoint, SummaryPoint
from promotel.pipeline import CONFIGURED_DROPS, TargetPipeline, TargetResult

TEXT = "text/plain; version=0.0.4"
NOW = 1_800_000_000_000_000_000


def source(**kw: Any) -> SimpleNamespace:
    base: dict[str, Any] = {"name": "src", "overrides": {}, "users": "keep", "pseudonymize_key": None,
                            "unmapped": "keep", "service_name": None}
    base.update(kw)
    return SimpleNamespace(**base)


def process(text: str, mapping: str = "passthrough", content_type: str = TEXT, max_series: int = 1000,
            **kw: Any) -> TargetResult:
    pipeline = TargetPipeline(source(**kw), url="http://127.0.0.1:9100/metrics", mapping=mapping,
                              max_series=max_series)
    return pipeline.process(text.encode(), content_type, NOW)


def points(result: TargetResult, name: str) -> list[Any]:
    return [p for m in result.metrics if m.name == name for p in m.points]


def test_a_duplicated_counter_keeps_its_first_value() -> None:
    r = process("# TYPE jobs_total counter\njobs_total 5\njobs_total 9\njobs_total 11\n")
    assert [p.value for p in points(r, "jobs_total")] == [5.0]
    assert r.dropped == {"duplicate_sample": 2} and r.drop_examples == {"duplicate_sample": "jobs_total"}


def test_a_duplicated_gauge_is_sent_once() -> None:
    # The third line is the same series for Prometheus too: an empty label is no label.
    r = process('# TYPE temp gauge\ntemp{room="a"} 20\ntemp{room="a"} 21\ntemp{room="a",floor=""} 22\n')
    assert [(p.attributes, p.value) for p in points(r, "temp")] == [((("room", "a"),), 20.0)]
    assert r.dropped == {"duplicate_sample": 2} and r.drop_examples == {"duplicate_sample": "temp"}


def test_duplicated_histogram_and_summary_samples_keep_the_first() -> None:
    r = process('# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_count 2\nh_count 7\n'
                "h_sum 3\nh_sum 8\n"
                '# TYPE s summary\ns{quantile="0.5"} 1\ns{quantile="0.5"} 4\ns_count 3\ns_sum 2\n')
    (h,) = points(r, "h")
    assert isinstance(h, HistogramPoint) and (h.count, h.sum, h.counts) == (2.0, 3.0, (1.0, 1.0))
    (s,) = points(r, "s")
    assert isinstance(s, SummaryPoint) and s.quantiles == ((0.5, 1.0),)
    assert r.dropped == {"duplicate_sample": 3}


def test_series_a_mapping_makes_identical_are_counted_apart() -> None:
    text = ('# TYPE queue_length gauge\nqueue_length{model="m",user="a"} 2\nqueue_length{model="m",user="b"} 3\n')
    r = process(text, mapping="sambanova", users="drop")
    assert [p.value for p in points(r, "sambanova.router.queue.size")] == [2.0]
    assert r.dropped == {"duplicate_series": 1} and r.drop_examples == {"duplicate_series": "queue_length"}


def test_two_families_merged_into_one_metric_keep_one_point_per_series() -> None:
    # An OpenMetrics-declared counter and a text-declared one of the same metric, in one (lenient) body.
    text = "# TYPE a_total counter\na_total 1\n# TYPE a gauge\na 2\n"
    r = process(text)
    assert {m.name: m.kind.value for m in r.metrics} == {"a_total": "sum", "a": "gauge"}
    r = process("# TYPE x counter\nx 1\n# TYPE x_total counter\nx_total 2\n")
    assert [p.value for p in points(r, "x_total")] == [1.0]
    assert r.dropped == {"duplicate_series": 1} and r.drop_examples == {"duplicate_series": "x_total"}
    # A gauge that would take a counter's name cannot join it: one name, one instrument.
    r = process("# TYPE x counter\nx 1\n# TYPE x_total gauge\nx_total{a=\"1\"} 2\n")
    assert [(m.name, m.kind.value) for m in r.metrics] == [("x_total", "sum")]
    assert r.dropped == {"conflicting_type": 1} and r.drop_examples == {"conflicting_type": "x_total"}


@pytest.mark.parametrize("body,reason", [
    ('# TYPE h histogram\nh_bucket{le="NaN"} 1\nh_bucket{le="+Inf"} 1\nh_count 1\n', "histogram_bad_le"),
    ('# TYPE h histogram\nh_bucket{le="1"} 3\nh_bucket{le="+Inf"} 1\nh_count 1\n', "histogram_decreasing_buckets"),
    ('# TYPE h histogram\nh_bucket{le="1"} 1\nh_count 1\n', "histogram_no_inf_bucket"),
    ('# TYPE h histogram\nh_bucket{le="+Inf"} 1\n', "histogram_no_count"),
    ('# TYPE h summary\nh{quantile="2"} 1\nh_count 1\n', "summary_bad_quantile"),
    ('# TYPE h summary\nh{quantile="0.5"} NaN\nh_count 1\n', "summary_nan_quantile_value"),
    ('# TYPE h summary\nh{quantile="0.5"} -1\nh_count 1\n', "summary_negative_quantile_value"),
    ("# TYPE h counter\nh_created 1700000000\n", "counter_no_value"),
    ("# TYPE h counter\nh_total 1\nh_created -5\n", "invalid_created"),
])
def test_every_reason_names_its_family(body: str, reason: str) -> None:
    r = process(body)
    assert set(r.dropped) == {reason} and r.drop_examples == {reason: "h"}


def test_gaugehistograms_count_one_per_series() -> None:
    body = ('# TYPE q gaugehistogram\nq_bucket{x="1",le="+Inf"} 1\nq_gcount{x="1"} 1\nq_gsum{x="1"} 1\n'
            'q_bucket{x="2",le="+Inf"} 1\nq_gcount{x="2"} 1\nq_gsum{x="2"} 1\n# EOF\n')
    r = process(body, content_type="application/openmetrics-text; version=1.0.0")
    assert r.metrics == () and r.dropped == {"gaugehistogram": 2} and r.drop_examples == {"gaugehistogram": "q"}


def test_configured_drops_are_counted_too() -> None:
    body = ("# TYPE baseten_gpu_utilization gauge\nbaseten_gpu_utilization 1\nbaseten_gpu_utilization{gpu=\"1\"} 2\n"
            "# TYPE mine gauge\nmine 1\n")
    r = process(body, mapping="baseten", unmapped="drop", overrides={"baseten_gpu_utilization": {"drop": True}})
    assert r.metrics == ()
    assert r.dropped == {"override_drop": 2, "unmapped_drop": 1}
    assert r.drop_examples == {"override_drop": "baseten_gpu_utilization", "unmapped_drop": "mine"}
    assert set(r.dropped) <= CONFIGURED_DROPS


def test_the_store_drops_name_their_metric() -> None:
    r = process('# TYPE a gauge\na{i="1"} 1\na{i="2"} 2\n# TYPE b gauge\nb 1 -5\n', max_series=1)
    assert r.dropped == {"max_series": 1, "invalid_timestamp": 1}
    assert r.drop_examples == {"max_series": "a", "invalid_timestamp": "b"}
    assert [p.value for p in points(r, "a")] == [1.0] and all(isinstance(p, NumberPoint) for p in points(r, "a"))


def test_extra_target_info_series_are_counted() -> None:
    r = process('# TYPE target_info gauge\ntarget_info{env="a"} 1\ntarget_info{env="b"} 1\n')
    assert dict(r.resource)["env"] == "a"
    assert r.dropped == {"target_info_extra_series": 1}


def test_a_clean_scrape_drops_nothing() -> None:
    r = process('# TYPE a gauge\na 1\n# TYPE c counter\nc_total 1\n')
    assert r.dropped == {} and r.drop_examples == {}


def test_every_reason_the_code_counts_is_documented() -> None:
    """The reasons are a bounded vocabulary: each one counted in the map and convert stages is in the table of
    docs/conversion.md ("What is left out"), which says what it means."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = "".join(p.read_text() for p in (root / "src/promotel/mappings").glob("*.py"))
    code += (root / "src/promotel/pipeline.py").read_text()
    counted = set(re.findall(r'drop\("([a-z_]+)"', code)) | set(re.findall(r'dropped\["([a-z_]+)"\]', code))
    counted |= {"duplicate_sample", "duplicate_series", "max_series", "invalid_timestamp"}
    assert {"histogram_bad_le", "gaugehistogram", "override_drop", "target_info_extra_series"} <= counted
    table = (root / "docs/conversion.md").read_text().split("### What is left out", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([a-z_]+)`", table))
    prefixed = {r for r in counted if r.startswith(("histogram_", "summary_"))}
    points = (root / "docs/conversion.md").read_text().split("### Points", 1)[1].split("### Exact", 1)[0]
    assert {r for r in prefixed if f"`{r}`" not in points} == set()
    assert counted - prefixed - documented == set()


def test_a_plugin_that_counts_without_reasons_is_still_counted() -> None:
    from promotel.mappings import MapResult, register_mapping, unregister_mapping

    class Counting:
        name = "counting"
        default_service_name = ""

        def bind(self, _source: Any) -> Any:
            return self

        def describe(self) -> list[Any]:
            return []

        def map(self, _families: Any) -> MapResult:
            return MapResult((), (), 3, {"bad_row": 1})      # a plugin written for 0.1: no examples

    register_mapping("counting", Counting())   # type: ignore[arg-type]
    try:
        r = process("a 1\n", mapping="counting")
    finally:
        unregister_mapping("counting")
    assert r.dropped == {"bad_row": 1, "mapping": 2} and r.drop_examples == {}


def test_drops_and_tolerated_rules_are_logged_once_per_target_and_counted_every_scrape(
        caplog: pytest.LogCaptureFixture) -> None:
    """Each drop reason and each tolerated format rule: one log line per target (with the family, or the line and
    what lint says), however many scrapes repeat it; the counts come with every scrape's result."""
    pipeline = TargetPipeline(source(), url="http://127.0.0.1:9100/metrics")
    other = TargetPipeline(source(name="other"), url="http://127.0.0.1:9101/metrics")
    body = b"a 1\n# TYPE a gauge\nb 1\nb 2\n"          # TYPE after its sample (tolerated), b twice (dropped)
    with caplog.at_level("INFO", logger="promotel.pipeline"):
        results = [pipeline.process(body, TEXT, NOW + i) for i in range(3)] + [other.process(body, TEXT, NOW)]
    for r in results:
        assert r.dropped == {"duplicate_sample": 1} and r.leniencies == {"metadata-after-samples": 1}
    drops = [r.getMessage() for r in caplog.records if "points left out" in r.getMessage()]
    rules = [r.getMessage() for r in caplog.records if "breaks the exposition format" in r.getMessage()]
    assert len(drops) == 2 and len(rules) == 2                     # once for each of the two targets
    assert drops[0].startswith("Target src: 1 points left out (duplicate_sample), first in b")
    assert "at line 2 (metadata-after-samples" in rules[0] and 'TYPE line for "a"' in rules[0]


def test_configured_drops_are_logged_at_info_not_warning(caplog: pytest.LogCaptureFixture) -> None:
    pipeline = TargetPipeline(source(unmapped="drop"), url="http://127.0.0.1:9100/metrics", mapping="baseten")
    with caplog.at_level("INFO", logger="promotel.pipeline"):
        r = pipeline.process(b"some_other_metric 1\n", TEXT, NOW)
    assert r.dropped == {"unmapped_drop": 1}
    (record,) = [rec for rec in caplog.records if "points left out" in rec.getMessage()]
    assert record.levelname == "INFO"
