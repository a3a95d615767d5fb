"""The parser's API and results: format detection, values, timestamps, exemplars, escapes, error reporting
and robustness. Re-scrapes through one parser and its caches: test_parse_rescrape.py."""

from __future__ import annotations

import math
import time

import pytest

from promotel.errors import ExpositionError
from promotel.exposition import ExpositionParser, detect_format, parse_exposition
from promotel.model import Labels, MetricFamily
from support.paths import CONFORMANCE

SUITE = CONFORMANCE
OM = "application/openmetrics-text; version=1.0.0"
PROM = "text/plain; version=0.0.4"


def case(name: str) -> bytes:
    return (SUITE / name / "metrics").read_bytes()


def only(families: list[MetricFamily], name: str) -> MetricFamily:
    [fam] = [f for f in families if f.name == name]
    return fam


# ─── format detection ─────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(("ct", "text", "expected"), [
    ("application/openmetrics-text; version=1.0.0; charset=utf-8", "a 1\n", "openmetrics"),
    ("Application/OpenMetrics-Text", "a 1\n", "openmetrics"),
    ("text/plain; version=0.0.4", "a 1\n# EOF\n", "prometheus"),
    ("text/plain", "a 1\n", "prometheus"),
    (None, "a 1\n# EOF\n", "openmetrics"),
    (None, "a 1\n# EOF", "openmetrics"),
    (None, "a 1\n# EOF\r\n", "openmetrics"),
    (None, "# EOF\n", "openmetrics"),
    (None, "a 1\n", "prometheus"),
    (None, "a 1\n# EOF\nb 2\n", "prometheus"),
    (None, "", "prometheus"),
    ("application/json", "a 1\n", "prometheus"),
])
def test_detect_format(ct: str | None, text: str, expected: str) -> None:
    assert detect_format(ct, text) == expected


# ─── values, names, types ──────────────────────────────────────────────────────────────────


def test_output_types_and_counter_family_names() -> None:
    om = parse_exposition(case("counter_unit"), OM)
    fam = only(om, "cc_seconds")
    assert (fam.type, fam.help, fam.unit) == ("counter", "A counter", "seconds")
    assert [s.name for s in fam.samples] == ["cc_seconds_total", "cc_seconds_created"]
    assert [s.value for s in fam.samples] == [1.0, 123.456]
    assert all(type(s.value) is float for s in fam.samples)
    prom = parse_exposition("# TYPE a_total counter\na_total 3\n# TYPE a_created gauge\na_created 17e8\n", PROM)
    assert [(f.name, f.type, [s.value for s in f.samples]) for f in prom] == [
        ("a_total", "counter", [3.0]), ("a_created", "gauge", [1.7e9])]


def test_uint64_and_big_values_are_floats() -> None:
    [fam] = parse_exposition(case("uint64_counter"), OM)
    assert fam.samples[0].value == 9223372036854775808.0
    assert type(fam.samples[0].value) is float


@pytest.mark.parametrize(("text", "expected"), [
    ("NaN", math.nan), ("nan", math.nan), ("+Inf", math.inf), ("-Inf", -math.inf), ("inf", math.inf),
    ("-infinity", -math.inf), ("1e3", 1000.0), ("-1.5E-3", -0.0015), ("+.5", 0.5), ("5.", 5.0),
    ("0001", 1.0),
])
def test_value_spellings(text: str, expected: float) -> None:
    for fmt, suffix in ((PROM, ""), (OM, "# EOF\n")):
        value = parse_exposition(f"a {text}\n{suffix}", fmt)[0].samples[0].value
        assert value == expected or (math.isnan(value) and math.isnan(expected))


@pytest.mark.parametrize("text", ["1_0", "0x1", "0x1p3", "+nan", "-NaN", "١", "1e", ".", "Infinit", "in f", "1\x0b"])
def test_values_python_takes_but_the_formats_do_not(text: str) -> None:
    for fmt, suffix in ((PROM, ""), (OM, "# EOF\n")):
        with pytest.raises(ExpositionError) as info:
            parse_exposition(f"a {text}\n{suffix}", fmt)
        assert info.value.line == 1
        # The fast path must not take them either, once the series is known.
        parser = ExpositionParser()
        parser.parse(f"a 1\n{suffix}", fmt)
        with pytest.raises(ExpositionError):
            parser.parse(f"a {text}\n{suffix}", fmt)


# ─── timestamps: exact integer nanoseconds ────────────────────────────────────────────────────


def test_openmetrics_timestamps_are_exact() -> None:
    fam = only(parse_exposition(case("timestamps"), OM), "a")
    assert [s.timestamp_ns for s in fam.samples] == [
        0, 0, 1_100_000_000, 12345678901234567890_123456789, 1_500_000_000_000]
    text = "a 1 1500000000.003\na 2 1500000000.0030000005\nb 1 -1.5\nc 1 1e-9\nd 1 1.0e+3\n# EOF\n"
    fams = parse_exposition(text, OM)
    assert [s.timestamp_ns for f in fams for s in f.samples] == [
        1_500_000_000_003_000_000, 1_500_000_000_003_000_000, -1_500_000_000, 1, 1_000_000_000_000]


def test_prometheus_timestamps_are_milliseconds() -> None:
    fams = parse_exposition("a 1 1395066363000\nb 1 -3982045\nc 1 +5\n", PROM)
    assert [f.samples[0].timestamp_ns for f in fams] == [1395066363000_000_000, -3982045_000_000, 5_000_000]
    for bad in ("1.5", "1e3", "9223372036854775808", "1_0", "NaN", "0x10"):
        with pytest.raises(ExpositionError, match="timestamp"):
            parse_exposition(f"a 1 {bad}\n", PROM)


def test_exemplars() -> None:
    fam = only(parse_exposition(case("histogram_exemplars"), OM), "a")
    ex = fam.samples[2].exemplar
    assert ex is not None and ex.value == 4.0 and ex.timestamp_ns == 123_000_000_000
    assert ex.labels["a"].startswith("2345678901") and len(ex.labels["a"]) == 127
    assert fam.samples[0].exemplar is not None and fam.samples[0].exemplar.labels == Labels({"a": "b"})
    hashes = only(parse_exposition(case("exemplars_with_hash_in_label_values"), OM), "a")
    assert hashes.samples[0].labels == Labels({"le": "1.0", "foo": "bar # "})
    assert hashes.samples[0].exemplar is not None
    assert hashes.samples[0].exemplar.labels == Labels({"a": "b", "foo": "bar # bar"})


# ─── escapes ────────────────────────────────────────────────────────────────────────────────


def test_openmetrics_escapes() -> None:
    fam = only(parse_exposition(case("escaping"), OM), "a")
    assert fam.help == "he\n\\l\\tp"
    assert [s.labels["foo"] for s in fam.samples] == ['b"a\nr', "b\\a\\z", 'b"a\nr # ', "b\\a\\z # "]
    helps = [f.help for f in parse_exposition(case("help_escaping"), OM)]
    assert helps == ["foo", "\\foo", "\\foo", "foo\\", "\\", "\n", "\\n", "\\\n", '"', '\\"']
    values = [f.samples[0].labels["foo"] for f in parse_exposition(case("label_escaping"), OM)]
    assert values == ["foo", "\\foo", "\\foo", "foo\\", "\\", "\n", "\\n", "\\\n", '"', '\\"']
    assert only(parse_exposition(case("null_byte"), OM), "a").help == "he\x00lp"


# ─── errors: always ExpositionError with the right line ─────────────────────────────────────────


def test_error_message_names_the_token() -> None:
    text = "\n".join(["# TYPE x counter"] + [f'x{{code="{i}"}} 1' for i in range(10)] + ['x{code"200"} 1']) + "\n"
    with pytest.raises(ExpositionError) as info:
        parse_exposition(text, PROM)
    assert info.value.line == 12
    assert str(info.value) == 'line 12: expected \'=\' after label name "code", found \'"\''


def test_invalid_utf8_reports_its_line() -> None:
    data = b"# HELP a ok\na 1\nb{x=\"\xff\xfe\"} 2\n"
    with pytest.raises(ExpositionError) as info:
        parse_exposition(data)
    assert info.value.line == 3
    assert "UTF-8" in str(info.value) and "0xff" in str(info.value)
    with pytest.raises(ExpositionError) as info:
        parse_exposition(b"a 1\n\xc3\n# EOF\n", OM)
    assert info.value.line == 2


@pytest.mark.parametrize(("data", "line"), [
    (b"a\x00 1\n", 1),
    (b"a 1\nb 2\x00\n", 2),
    (b'a{x="y"}\x00 1\n', 1),
    (b"\x00\n", 1),
])
def test_nul_bytes(data: bytes, line: int) -> None:
    with pytest.raises(ExpositionError) as info:
        parse_exposition(data)
    assert info.value.line == line
    # In a label value a NUL is just a character.
    assert parse_exposition(b'a{x="\x00"} 1\n')[0].samples[0].labels["x"] == "\x00"


def test_ten_megabyte_line_is_fast_and_bounded() -> None:
    long_value = "v" * 10_000_000
    t0 = time.perf_counter()
    [fam] = parse_exposition(f'a{{x="{long_value}"}} 1\n')
    assert fam.samples[0].labels["x"] == long_value
    with pytest.raises(ExpositionError) as info:
        parse_exposition('a 1\na{x="' + long_value + '} 1\n')          # unterminated
    assert info.value.line == 2
    with pytest.raises(ExpositionError):
        parse_exposition("a " + "1" * 10_000_000 + " 1" * 10 + "\n")
    with pytest.raises(ExpositionError):
        parse_exposition("a 1 " + "9" * 10_000_000 + "\n# EOF\n", OM)
    with pytest.raises(ExpositionError):
        parse_exposition('a{x="' + "\\" * 10_000_001 + '"} 1\n')   # odd backslashes: the quote is escaped
    assert time.perf_counter() - t0 < 5


def test_a_hundred_thousand_labels() -> None:
    body = ",".join(f'l{i}="{i}"' for i in range(100_000))
    t0 = time.perf_counter()
    [fam] = parse_exposition(f"a{{{body}}} 1\n")
    assert len(fam.samples[0].labels) == 100_000 and fam.samples[0].labels["l99999"] == "99999"
    with pytest.raises(ExpositionError, match='label "l5" appears twice'):
        parse_exposition(f'a{{{body},l5="x"}} 1\n')
    assert time.perf_counter() - t0 < 5


def test_only_exposition_errors_for_odd_inputs() -> None:
    for data in (b"", b"\n", b"#", b"# EOF", b"{", b"}", b'"', b"a{", b"a{}", b"a{} ", b"\r\n", b"\xef\xbb\xbfa 1\n",
                 "a{\u2028=\"1\"} 1\n".encode(), b"# TYPE\n", b"# HELP\n", b"a 1 2 3\n"):
        for ct in (None, OM, PROM, "text/plain"):
            try:
                parse_exposition(data, ct)
            except ExpositionError as exc:
                assert exc.line >= 0
    assert parse_exposition(b"") == []
