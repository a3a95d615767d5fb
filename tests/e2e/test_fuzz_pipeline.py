"""Hostile input through the whole path: parse → map → convert → encode.

The only acceptable outcomes are a clean conversion (which then encodes to a request the official
protobuf classes decode) or an ExpositionError. Each input is bounded in time.
"""

from __future__ import annotations

import random
import time
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms

from promotel.errors import ExpositionError
from promotel.export.encode import encode_requests
from promotel.exposition import ExpositionParser
from promotel.mappings import load_mapping
from promotel.model import TargetBatch
from promotel.series.store import SeriesStore
from support.paths import CONFORMANCE, TESTDATA

CORPUS = sorted(CONFORMANCE.glob("*/metrics"))
GOLDEN = sorted((TESTDATA / "golden").rglob("*.prom"))
SEEDS = [p.read_bytes() for p in CORPUS + GOLDEN]


def source(mapping: str) -> SimpleNamespace:
    return SimpleNamespace(name="fuzz", mapping=mapping, overrides={}, users="pseudonymize",
                           pseudonymize_key="fuzz-key", unmapped="keep", service_name=None)


MAPPERS = {name: load_mapping(name).bind(source(name)) for name in ("passthrough", "baseten", "sambanova")}


def mutate(data: bytes, rnd: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rnd.randint(1, 8)):
        op = rnd.randint(0, 5)
        pos = rnd.randint(0, len(buf)) if buf else 0
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rnd.randint(0, 255)
        elif op == 1:
            buf[pos:pos] = bytes([rnd.choice(b'{}",=\\#\n\r\x00 ')]) * rnd.randint(1, 3)
        elif op == 2 and buf:
            del buf[pos:pos + rnd.randint(1, 16)]
        elif op == 3:
            buf[pos:pos] = rnd.choice([b"NaN", b"+Inf", b"-Inf", b"1e309", b"-0", b"_total", b"_created", b"\xff\xfe",
                                       b"# EOF\n", b"# TYPE x histogram\n", b'le="+Inf"', b'quantile="0.5"'])
        elif op == 4 and buf:
            start = rnd.randint(0, len(buf) - 1)
            buf[pos:pos] = buf[start:start + rnd.randint(1, 64)]
        else:
            buf[pos:pos] = b"\\" * rnd.randint(1, 200)
    return bytes(buf)


def run_pipeline(data: bytes, mapping: str) -> None:
    parser = ExpositionParser()
    t0 = time.monotonic()
    try:
        families = parser.parse(data, None)
    except ExpositionError as exc:
        assert exc.line >= 0
        assert time.monotonic() - t0 < 2.0
        return
    mapped = MAPPERS[mapping].map(families)
    store = SeriesStore("fuzz", max_series=10_000)
    now = 1_700_000_000_000_000_000
    for round_ in range(2):   # twice: the second round exercises resets/staleness on the same series
        converted = store.convert(mapped.metrics, now + round_ * 15_000_000_000)
        batch = TargetBatch("fuzz", (("service.name", "fuzz"),), converted.metrics, now)
        result = encode_requests(batch, 4 * 1024 * 1024)
        for req in result.requests:
            ms.ExportMetricsServiceRequest.FromString(req)
    assert time.monotonic() - t0 < 2.0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, 10_000), mapping=st.sampled_from(sorted(MAPPERS)))
def test_mutated_real_expositions(seed: int, which: int, mapping: str) -> None:
    rnd = random.Random(seed)
    run_pipeline(mutate(SEEDS[which % len(SEEDS)], rnd), mapping)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=2000), mapping=st.sampled_from(sorted(MAPPERS)))
def test_random_bytes(data: bytes, mapping: str) -> None:
    run_pipeline(data, mapping)


def test_seed_corpus_is_real() -> None:
    # The fuzz above is only as good as its seeds: the conformance corpus and the golden scrapes.
    assert len(CORPUS) >= 200
    assert GOLDEN, "golden expositions are missing"
