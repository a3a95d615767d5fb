"""The public Python API is small and pinned."""

import promotel
from promotel import ExpositionError, parse_exposition


def test_all_is_pinned() -> None:
    assert sorted(promotel.__all__) == ["ExpositionError", "PromotelError", "__version__", "parse_exposition"]


def test_parse_exposition_roundtrip_and_error_line() -> None:
    # Family names as declared: Prometheus text declares counters with _total, OpenMetrics without.
    fams = parse_exposition(b"# TYPE a_total counter\na_total 1\n")
    assert [(f.name, f.type) for f in fams] == [("a_total", "counter")]
    assert fams[0].samples[0] == ("a_total", {}, 1.0, None, None)
    om = parse_exposition("# TYPE a counter\na_total 2\n# EOF\n")
    assert [(f.name, f.type, [s.name for s in f.samples]) for f in om] == [("a", "counter", ["a_total"])]
    try:
        parse_exposition("a 1\nb{ 2\n")
    except ExpositionError as exc:
        assert exc.line == 2
    else:  # pragma: no cover
        raise AssertionError("invalid input parsed")
