"""The OpenMetrics parser conformance suite (``tests/testdata/openmetrics-conformance``, origin in its NOTICE.md).

Each case is a folder with ``metrics`` and ``test.json``; the input must parse iff ``shouldParse``.
The suite's test.json files carry no expected output beyond ``shouldParse`` (checked below), so
the parsed values of the valid cases are asserted in ``test_parse_exposition.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promotel.errors import ExpositionError
from promotel.exposition import ExpositionParser, parse_exposition
from support.families import comparable
from support.paths import CONFORMANCE, conformance_cases

SUITE = CONFORMANCE
CASES = conformance_cases()
OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def test_the_suite_is_complete() -> None:
    assert len(CASES) == 211
    for case in CASES:
        spec = json.loads((case / "test.json").read_text())
        assert spec["type"] == "text" and spec["file"] == "metrics"
        assert set(spec) <= {"type", "file", "shouldParse", "comment"}, case.name


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Path) -> None:
    spec = json.loads((case / "test.json").read_text())
    data = (case / spec["file"]).read_bytes()
    if spec["shouldParse"]:
        families = parse_exposition(data, OM)
        assert all(f.type in ("counter", "gauge", "histogram", "gaugehistogram", "summary", "info",
                              "stateset", "unknown") for f in families)
        # A second parse by the same parser (the cached fast paths) gives the same result.
        parser = ExpositionParser()
        assert comparable(parser.parse(data, OM)) == comparable(parser.parse(data, OM)) == comparable(families)
    else:
        with pytest.raises(ExpositionError) as info:
            parse_exposition(data, OM)
        assert info.value.line >= 1
        # The cached paths reject it too, even after a valid scrape taught them the series.
        parser = ExpositionParser()
        with pytest.raises(ExpositionError):
            parser.parse(data, OM)
        with pytest.raises(ExpositionError):
            parser.parse(data, OM)
