"""Shared pytest options. ``--update-golden`` rewrites the expected files under tests/golden/."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/testdata/golden/**/*.expected.json from the current output instead of comparing")
