"""Where the test data lives inside the repository (nothing outside the clone is read)."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
TESTDATA = TESTS / "testdata"
# The OpenMetrics project's parser conformance cases: one folder per case with ``metrics`` and
# ``test.json`` (``shouldParse``). Origin and licence: tests/testdata/openmetrics-conformance/NOTICE.md.
CONFORMANCE = TESTDATA / "openmetrics-conformance"


def conformance_cases() -> list[Path]:
    """Every conformance case folder, sorted by name (the NOTICE file beside them is not a case)."""
    return sorted(p for p in CONFORMANCE.iterdir() if (p / "test.json").is_file())
