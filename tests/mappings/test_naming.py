"""Names, instruments and units of passthrough metrics: the same for both spellings of a family (OpenMetrics and
Prometheus text), per docs/conversion.md "Names and types"."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from promotel.exposition import parse_exposition
from promotel.mappings import load_mapping
from promotel.mappings.naming import fold_gauge_histograms, shape, ucum_unit, unit_from_name, unit_of
from promotel.model import Kind, Labels, Metric, MetricFamily, Sample

OM = "application/openmetrics-text; version=1.0.0"
TEXT = "text/plain; version=0.0.4"


def passthrough(text: str, content_type: str) -> dict[str, Metric]:
    source = SimpleNamespace(name="s", overrides={}, users="keep", pseudonymize_key=None, unmapped="keep",
                             service_name=None)
    result = load_mapping("passthrough").bind(source).map(parse_exposition(text, content_type))
    out: dict[str, Metric] = {}
    for m in result.metrics:
        assert m.name not in out
        out[m.name] = m
    return out


def shape_of(m: Metric) -> tuple[Any, ...]:
    return (m.kind, m.monotonic, m.unit, [(p.attributes, getattr(p, "value", None)) for p in m.points])


# (OpenMetrics body, Prometheus text body as the same client writes it, the OTLP name, kind, monotonic, unit)
SPELLINGS = [
    ("# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total 1.5\n# EOF\n",
     "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\n",
     "process_cpu_seconds_total", Kind.SUM, True, "s"),
    ('# TYPE app_build info\napp_build_info{version="1.2"} 1\n# EOF\n',
     '# TYPE app_build_info gauge\napp_build_info{version="1.2"} 1\n',
     "app_build_info", Kind.SUM, False, ""),
    ('# TYPE state stateset\nstate{state="a"} 1\nstate{state="b"} 0\n# EOF\n',
     '# TYPE state gauge\nstate{state="a"} 1\nstate{state="b"} 0\n',
     "state", Kind.SUM, False, ""),
    ("# TYPE go_memstats_alloc_bytes counter\ngo_memstats_alloc_bytes_total 7\n# EOF\n",
     "# TYPE go_memstats_alloc_bytes counter\ngo_memstats_alloc_bytes 7\n",        # client_golang: no _total in text
     "go_memstats_alloc_bytes_total", Kind.SUM, True, "By"),
    ("# TYPE req_duration_seconds histogram\n# UNIT req_duration_seconds seconds\n"
     'req_duration_seconds_bucket{le="1"} 1\nreq_duration_seconds_bucket{le="+Inf"} 2\n'
     "req_duration_seconds_count 2\nreq_duration_seconds_sum 3\n# EOF\n",
     "# TYPE req_duration_seconds histogram\n"
     'req_duration_seconds_bucket{le="1"} 1\nreq_duration_seconds_bucket{le="+Inf"} 2\n'
     "req_duration_seconds_count 2\nreq_duration_seconds_sum 3\n",
     "req_duration_seconds", Kind.HISTOGRAM, False, "s"),
    ("# TYPE rx_bytes_per_second gauge\n# UNIT rx_bytes_per_second bytes_per_second\nrx_bytes_per_second 3\n# EOF\n",
     "# TYPE rx_bytes_per_second gauge\nrx_bytes_per_second 3\n",
     "rx_bytes_per_second", Kind.GAUGE, False, "By/s"),
]


@pytest.mark.parametrize("om,text,name,kind,monotonic,unit", SPELLINGS, ids=[s[2] for s in SPELLINGS])
def test_both_spellings_give_one_metric(om: str, text: str, name: str, kind: Kind, monotonic: bool,
                                        unit: str) -> None:
    a, b = passthrough(om, OM), passthrough(text, TEXT)
    assert set(a) == set(b) == {name}
    assert (a[name].kind, a[name].monotonic, a[name].unit) == (kind, monotonic, unit)
    assert shape_of(a[name]) == shape_of(b[name])


def test_created_in_the_family_and_as_a_gauge_family_give_one_start_time() -> None:
    om = '# TYPE jobs counter\njobs_total{q="a"} 3\njobs_created{q="a"} 1700000000.25\n# EOF\n'
    text = ('# TYPE jobs_total counter\njobs_total{q="a"} 3\n'
            '# TYPE jobs_created gauge\njobs_created{q="a"} 1700000000.25\n')
    a, b = passthrough(om, OM)["jobs_total"], passthrough(text, TEXT)["jobs_total"]
    assert a.points == b.points and a.points[0].created_ns == 1_700_000_000_250_000_000


def test_gauge_histograms_are_dropped_in_both_spellings() -> None:
    om = ('# TYPE queue gaugehistogram\nqueue_bucket{le="1"} 3\nqueue_bucket{le="+Inf"} 5\n'
          "queue_gcount 5\nqueue_gsum 7\n# EOF\n")
    text = ('# TYPE queue histogram\nqueue_bucket{le="1"} 3\nqueue_bucket{le="+Inf"} 5\n'
            "# TYPE queue_gcount gauge\nqueue_gcount 5\n# TYPE queue_gsum gauge\nqueue_gsum 7\n")
    for body, ct in ((om, OM), (text, TEXT)):
        source = SimpleNamespace(name="s", overrides={}, users="keep", pseudonymize_key=None, unmapped="keep",
                                 service_name=None)
        result = load_mapping("passthrough").bind(source).map(parse_exposition(body, ct))
        assert result.metrics == ()
        assert result.reasons == {"gaugehistogram": 1} and result.examples == {"gaugehistogram": "queue"}


def _family(name: str, type_: str, *labels: dict[str, str]) -> MetricFamily:
    return MetricFamily(name, type_, None, None, tuple(Sample(name, Labels(tuple(ls.items())), 1.0) for ls in labels))


def test_shape_rules() -> None:
    assert shape(_family("x", "counter")) == ("x_total", "counter")
    assert shape(_family("x_total", "counter")) == ("x_total", "counter")
    assert shape(_family("x_created", "counter")) == ("x_created_total", "counter")
    assert shape(_family("x", "info")) == ("x_info", "info")
    assert shape(_family("x_info", "gauge")) == ("x_info", "info")
    assert shape(_family("_info", "gauge")) == ("_info", "gauge")
    assert shape(_family("x_info", "unknown")) == ("x_info", "unknown")     # only a declared gauge is an Info
    assert shape(_family("mode", "gauge", {"mode": "a"}, {"mode": "b"})) == ("mode", "stateset")
    assert shape(_family("mode", "gauge", {"mode": "a"}, {"other": "b"})) == ("mode", "gauge")
    assert shape(_family("vllm:state", "gauge", {"vllm_state": "a"})) == ("vllm:state", "stateset")
    assert shape(_family("mode", "gauge")) == ("mode", "gauge")
    assert shape(_family("h", "histogram")) == ("h", "histogram")


@pytest.mark.parametrize("name,unit", [
    ("a_seconds", "s"), ("a_seconds_total", ""), ("a_bytes", "By"), ("a_ratio", "1"), ("a_percent", "%"),
    ("a_celsius", "Cel"), ("a_kibibytes", "KiBy"), ("a_bytes_per_second", "By/s"), ("a_requests_per_second", ""),
    ("seconds", ""), ("a_second", ""), ("a_total", ""), ("a", ""), ("a_meters", "m"), ("a_joules", "J"),
])
def test_unit_from_name(name: str, unit: str) -> None:
    assert unit_from_name(name) == unit


def test_units_from_unit_lines_and_names() -> None:
    assert ucum_unit("seconds") == "s" and ucum_unit("terabytes") == "TBy" and ucum_unit("widgets") == "widgets"
    assert ucum_unit("meters_per_second") == "m/s" and ucum_unit(None) == "" and ucum_unit("") == ""
    counter = MetricFamily("rx_bytes_total", "counter", None, None, ())
    assert unit_of(counter) == "By"
    assert unit_of(MetricFamily("x_seconds", "gauge", None, "milliseconds", ())) == "ms"    # UNIT wins
    assert unit_of(MetricFamily("up_seconds_info", "gauge", None, None, ()), "info") == ""
    assert unit_of(MetricFamily("mode_seconds", "stateset", None, None, ())) == ""


def test_fold_gauge_histograms_leaves_other_families_alone() -> None:
    fams = [_family("h", "histogram"), _family("h_gcount", "gauge"),       # a histogram with a count is not one
            MetricFamily("k", "histogram", None, None, (Sample("k_count", Labels(), 1.0),)),
            _family("k_gcount", "gauge")]
    assert [f.type for f in fold_gauge_histograms(fams)] == ["gaugehistogram", "histogram", "gauge"]
    assert fold_gauge_histograms([_family("h", "histogram")]) == [_family("h", "histogram")]
