"""The public Python API is small and pinned."""

import promotel
from promotel import ExpositionError, parse_exposition


def test_all_is_pinned() -> None:
    assert sorted(promotel.__all__) == ["ExpositionError", "PromotelError", "__version__", "parse_exposition"]


def test_parse_exposition_roundtrip_and_error_line() -> None:
    fams = parse_exposition(b"# TYPE a counter\na_total 1\n")
    assert [(f.name, f.type) for f in fams] == [("a_total", "counter")] or [(f.name, f.type) for f in fams] == [("a", "counter")]
    assert fams[0].samples[0].value == 1.0
    try:
        parse_exposition("a 1\nb{ 2\n")
    except ExpositionError as exc:
        assert exc.line == 2
    else:  # pragma: no cover
        raise AssertionError("invalid input parsed")
