"""The Prometheus text format (0.0.4 and 1.0.0), case by case, as the format document states it."""

from __future__ import annotations

import math

import pytest

from promotel.errors import ExpositionError
from promotel.exposition import ExpositionParser, parse_exposition
from promotel.model import Labels, MetricFamily

PROM = "text/plain; version=0.0.4; charset=utf-8"
PROM1 = "text/plain; version=1.0.0"

# The example of the format document, verbatim (Prometheus docs, "Exposition formats":
# https://prometheus.io/docs/instrumenting/exposition_formats/).
DOC_EXAMPLE = r'''# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9

# UTF-8 metric and label names:
{"my.dotted.metric", "error.message"="Not Found"}

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045

# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="0.2"} 100392
http_request_duration_seconds_bucket{le="0.5"} 129389
http_request_duration_seconds_bucket{le="1"} 133988
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320

# Finally a summary, which has a complex representation, too:
# HELP rpc_duration_seconds A summary of the RPC duration in seconds.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.01"} 3102
rpc_duration_seconds{quantile="0.05"} 3272
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds{quantile="0.9"} 9001
rpc_duration_seconds{quantile="0.99"} 76656
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
'''


def by_name(families: list[MetricFamily]) -> dict[str, MetricFamily]:
    return {f.name: f for f in families}


def test_doc_example_has_a_sample_line_without_value() -> None:
    # The document's UTF-8 example line lacks its value: that line is invalid as printed.
    with pytest.raises(ExpositionError) as info:
        parse_exposition(DOC_EXAMPLE)
    assert info.value.line == 10
    assert "missing value" in str(info.value)


def test_doc_example_with_the_value_added() -> None:
    text = DOC_EXAMPLE.replace('"error.message"="Not Found"}', '"error.message"="Not Found"} 1')
    fams = by_name(parse_exposition(text))
    assert list(fams) == ["http_requests_total", "msdos_file_access_time_seconds", "my.dotted.metric",
                          "metric_without_timestamp_and_labels", "something_weird",
                          "http_request_duration_seconds", "rpc_duration_seconds"]
    req = fams["http_requests_total"]
    assert (req.type, req.help) == ("counter", "The total number of HTTP requests.")
    assert [(s.labels["code"], s.value, s.timestamp_ns) for s in req.samples] == [
        ("200", 1027.0, 1395066363000 * 10**6), ("400", 3.0, 1395066363000 * 10**6)]
    msdos = fams["msdos_file_access_time_seconds"].samples[0]
    assert msdos.labels == Labels({"path": "C:\\DIR\\FILE.TXT", "error": 'Cannot find file:\n"FILE.TXT"'})
    assert msdos.value == 1.458255915e9
    assert fams["msdos_file_access_time_seconds"].type == "unknown"
    dotted = fams["my.dotted.metric"].samples[0]
    assert (dotted.name, dotted.labels, dotted.value) == ("my.dotted.metric", Labels({"error.message": "Not Found"}), 1.0)
    weird = fams["something_weird"].samples[0]
    assert weird.value == math.inf and weird.timestamp_ns == -3982045 * 10**6
    hist = fams["http_request_duration_seconds"]
    assert hist.type == "histogram"
    assert [s.name for s in hist.samples][-2:] == ["http_request_duration_seconds_sum",
                                                    "http_request_duration_seconds_count"]
    assert [s.labels.get("le") for s in hist.samples[:6]] == ["0.05", "0.1", "0.2", "0.5", "1", "+Inf"]
    summ = fams["rpc_duration_seconds"]
    assert summ.type == "summary" and len(summ.samples) == 7 and summ.samples[5].value == 1.7560473e7


def test_quoted_names_need_version_1() -> None:
    line = '{"my.metric", "a.b"="v", c="d"} 1\n'
    [fam] = parse_exposition(line, PROM1)
    assert fam.name == "my.metric" and fam.samples[0].labels == Labels({"a.b": "v", "c": "d"})
    assert parse_exposition(line, "text/plain")[0].name == "my.metric"       # no version = newest
    with pytest.raises(ExpositionError, match=r"version 1\.0\.0"):
        parse_exposition(line, PROM)
    typed = parse_exposition('# TYPE "my.metric" gauge\n# HELP "my.metric" h\n{"my.metric"} 2\n', PROM1)
    assert [(f.name, f.type, f.help, len(f.samples)) for f in typed] == [("my.metric", "gauge", "h", 1)]


def test_label_values_with_structural_characters() -> None:
    text = 'a{x="{",y="}",z=",",w="=",v="#",u="} 1 # {"} 1\n'
    s = parse_exposition(text, PROM)[0].samples[0]
    assert dict(s.labels) == {"x": "{", "y": "}", "z": ",", "w": "=", "v": "#", "u": "} 1 # {"}
    assert s.value == 1.0


def test_help_escapes() -> None:
    fams = parse_exposition('# HELP a one\\\\two\\nthree \\"q\\" \\t\na 1\n', PROM)
    # Prometheus text HELP escapes only \\ and \n; others are kept as they are.
    assert fams[0].help == 'one\\two\nthree \\"q\\" \\t'


def test_interleaved_families_are_merged() -> None:
    text = "# TYPE a gauge\na{x=\"1\"} 1\nb 2\na{x=\"2\"} 3\n"
    fams = by_name(parse_exposition(text, PROM))
    assert [s.value for s in fams["a"].samples] == [1.0, 3.0] and fams["a"].type == "gauge"
    assert list(fams) == ["a", "b"]


def test_duplicate_metadata() -> None:
    with pytest.raises(ExpositionError) as info:
        parse_exposition("# HELP a x\n# HELP a y\na 1\n", PROM)
    assert info.value.line == 2 and "second HELP" in str(info.value)
    with pytest.raises(ExpositionError) as info:
        parse_exposition("# TYPE a gauge\na 1\n# TYPE a gauge\n", PROM)
    assert info.value.line == 3
    with pytest.raises(ExpositionError, match="after its samples"):
        parse_exposition("a 1\n# TYPE a gauge\n", PROM)
    with pytest.raises(ExpositionError, match="unknown type"):
        parse_exposition("# TYPE a gaugehistogram\n", PROM)
    with pytest.raises(ExpositionError, match="exactly one type"):
        parse_exposition("# TYPE a gauge extra\n", PROM)


def test_crlf_trailing_blanks_comments_and_blank_lines() -> None:
    text = "# a comment\r\n\r\n   # TYPE a gauge  \r\n\ta{x=\"1\"}\t 1 \t 5 \r\n# EOF is just a comment here\r\nb 2"
    fams = by_name(parse_exposition(text, PROM))
    assert fams["a"].type == "gauge"
    assert (fams["a"].samples[0].value, fams["a"].samples[0].timestamp_ns) == (1.0, 5_000_000)
    assert fams["b"].samples[0].value == 2.0                 # no final newline: accepted


def test_blanks_between_tokens_and_trailing_comma() -> None:
    s = parse_exposition('a { x = "1" , y="2", } 3\n', PROM)[0].samples[0]
    assert s.labels == Labels({"x": "1", "y": "2"}) and s.value == 3.0
    assert parse_exposition('a{x="1"}4\n', PROM)[0].samples[0].value == 4.0


@pytest.mark.parametrize(("spelling", "expected"), [
    ("NaN", math.nan), ("+Inf", math.inf), ("-Inf", -math.inf), ("Inf", math.inf), ("+inf", math.inf),
    ("INF", math.inf), ("-Infinity", -math.inf), ("nan", math.nan),
])
def test_nan_and_inf_spellings(spelling: str, expected: float) -> None:
    v = parse_exposition(f"a {spelling}\n", PROM)[0].samples[0].value
    assert (math.isnan(v) and math.isnan(expected)) or v == expected


def test_types_are_normalized() -> None:
    fams = by_name(parse_exposition("# TYPE a untyped\na 1\n# TYPE b COUNTER\nb 1\nc 1\n", PROM))
    assert [(n, f.type) for n, f in fams.items()] == [("a", "unknown"), ("b", "counter"), ("c", "unknown")]


def test_suffixes_join_their_declared_family() -> None:
    text = ("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 2\nh_count 1\nh_created 5\n"
            "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 1\ns_count 1\n"
            "# TYPE c counter\nc_total 1\nc_created 9\n"
            "# TYPE g gauge\ng_sum 1\n")
    fams = by_name(parse_exposition(text, PROM))
    assert [s.name for s in fams["h"].samples] == ["h_bucket", "h_sum", "h_count", "h_created"]
    assert [s.name for s in fams["s"].samples] == ["s", "s_sum", "s_count"]
    assert [s.name for s in fams["c"].samples] == ["c_total", "c_created"]
    assert fams["g"].samples == () and fams["g_sum"].type == "unknown"


def test_metadata_only_families_are_kept() -> None:
    [fam] = parse_exposition("# HELP a help\n# TYPE a counter\n", PROM)
    assert (fam.name, fam.type, fam.help, fam.samples) == ("a", "counter", "help", ())


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("a 1\nb\n", 2, "missing value"),
    ('a{x="1"\n', 1, "expected ',' or '}'"),
    ('a{x=1} 1\n', 1, "to open the value of label \"x\""),
    ('a{x="1",x="2"} 1\n', 1, 'label "x" appears twice'),
    ('a{__name__="b"} 1\n', 1, "reserved"),
    ("a 1 2 3\n", 1, "after the timestamp"),
    ("a 1 # {x=\"y\"} 1\n", 1, "exemplars are not part"),
    ("a-b 1\n", 1, "invalid character '-'"),
    ("1a 1\n", 1, "expected a metric name"),
    ("a 1\n\na b\n", 3, 'invalid value "b"'),
    ("# HELP\n", 1, "needs a metric name"),
    ("# TYPE 1a gauge\n", 1, "expected a metric name"),
])
def test_errors(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ExpositionError) as info:
        parse_exposition(text, PROM)
    assert info.value.line == line
    assert fragment in str(info.value)


def test_rescrape_with_a_changed_type() -> None:
    parser = ExpositionParser()
    first = parser.parse("# TYPE h histogram\nh_sum 1\nh_count 1\n", PROM)
    assert [f.name for f in first] == ["h"]
    second = parser.parse("h_sum 1\nh_count 1\n", PROM)          # the TYPE line is gone
    assert [(f.name, f.type) for f in second] == [("h_sum", "unknown"), ("h_count", "unknown")]
