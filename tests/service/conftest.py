"""Fixtures the service tests share: a real OTLP sink, and a scrape target serving the test module's ``BODY``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.sink import OTLPSink
from support.target import ExpositionServer


@pytest.fixture()
def sink() -> Iterator[OTLPSink]:
    s = OTLPSink().start()
    yield s
    s.stop()


@pytest.fixture()
def target(request: pytest.FixtureRequest) -> Iterator[ExpositionServer]:
    """Serves the ``BODY`` of the module that asks for it (each module scrapes its own exposition)."""
    t = ExpositionServer(request.module.BODY).start()
    yield t
    t.stop()
