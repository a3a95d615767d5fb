"""Fuzzing: whatever the bytes, the parser returns families or raises ExpositionError, quickly, under both
strictnesses; and the two agree: what ``STRICT`` accepts, ``SCRAPE`` gives identically with no leniency (unless
it read samples under their family's escaped name, ``Rule.ESCAPED_NAME``, a reading ``STRICT`` does not make:
then the same samples in the same order, grouped otherwise); what ``STRICT`` refuses, ``SCRAPE`` refuses too or
accepts reporting a leniency; a cached re-scrape gives what a fresh parse gives, leniencies included."""

from __future__ import annotations

import sys
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promotel.errors import ExpositionError
from promotel.exposition import ExpositionParser, Leniency, Rule, Strictness, parse_exposition
from promotel.model import MetricFamily
from support.families import comparable
from support.paths import CONFORMANCE, REPO
from support.replay import REAL

sys.path.insert(0, str(REPO / "bench"))
from gen_baseten import generate

SUITE = CONFORMANCE
CORPUS = [p.read_bytes() for p in sorted(SUITE.glob("*/metrics"))]
CORPUS.append(generate(seed=9, fmt="prometheus", deployments=2).encode())
CORPUS.append(generate(seed=9, fmt="openmetrics", deployments=2).encode())
# prometheus_client 0.26's OpenMetrics with escaped sample names under `vllm:x` families (Rule.ESCAPED_NAME).
CORPUS.append((REAL / "python-client-0.26-colon-enum" / "prom2.body").read_bytes())
# The same asked with escaping=allow-utf-8: a quoted label name (Rule.QUOTED_NAME unless the Content-Type declares it).
CORPUS.append((REAL / "python-client-0.26-colon-enum" / "prom3.body").read_bytes())
CONTENT_TYPES = [None, "application/openmetrics-text; version=1.0.0", "text/plain; version=0.0.4",
                 "text/plain; version=1.0.0", "application/openmetrics-text; version=1.0.0; escaping=allow-utf-8"]
# A guard against pathological (super-linear) parsing, not a speed measurement (bench/ measures speed):
# generous enough for a loaded 2-core machine, far below what a quadratic parse of these inputs takes.
LIMIT_S = 5.0


def one(data: bytes | str, content_type: str | None, parser: ExpositionParser) -> list[MetricFamily] | ExpositionError:
    """The only outcomes of one parse: a list of families or an ExpositionError with a line; never slow."""
    t0 = time.perf_counter()
    result: list[MetricFamily] | ExpositionError
    try:
        result = parser.parse(data, content_type)
    except ExpositionError as exc:
        assert isinstance(exc.line, int) and exc.line >= 0
        assert str(exc)
        assert parser.leniencies == ()
        result = exc
    else:
        assert isinstance(result, list) and all(isinstance(f, MetricFamily) for f in result)
        for fam in result:
            assert all(isinstance(s.value, float) for s in fam.samples)
        for e in parser.leniencies:
            assert e.line >= 1 and e.count >= 1 and e.text
        assert len({e.rule for e in parser.leniencies}) == len(parser.leniencies)    # one per rule
    assert time.perf_counter() - t0 < LIMIT_S
    return result


def outcome(data: bytes | str, content_type: str | None, parser: ExpositionParser | None = None) -> None:
    """One parse by ``parser``, or, without one, a fresh parse under each strictness and how they agree."""
    if parser is not None:
        one(data, content_type, parser)
        return
    strict = one(data, content_type, ExpositionParser())
    lenient = ExpositionParser(strictness=Strictness.SCRAPE)
    scrape = one(data, content_type, lenient)
    if isinstance(strict, list):
        assert isinstance(scrape, list)
        if any(e.rule is Rule.ESCAPED_NAME for e in lenient.leniencies):
            assert comparable([_together(scrape)]) == comparable([_together(strict)])
        else:
            assert comparable(scrape) == comparable(strict)
            assert lenient.leniencies == ()
    elif isinstance(scrape, list):
        # STRICT refused a rule SCRAPE tolerates, which is reported. (Not always STRICT's very error: a
        # sample SCRAPE puts back into its family, a +Inf bucket say, can mend what STRICT saw broken.)
        assert lenient.leniencies


def _together(families: list[MetricFamily]) -> MetricFamily:
    """Every sample of ``families``, in order, as one family."""
    return MetricFamily("", "unknown", None, None, tuple(s for f in families for s in f.samples))


mutation = st.tuples(st.sampled_from(["flip", "insert", "delete", "duplicate"]), st.integers(0, 10**9),
                     st.binary(min_size=1, max_size=8))


def mutate(data: bytes, mutations: list[tuple[str, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for op, pos, blob in mutations:
        if not buf:
            buf.extend(blob)
            continue
        i = pos % len(buf)
        if op == "flip":
            buf[i] ^= blob[0] or 1
        elif op == "insert":
            buf[i:i] = blob
        elif op == "delete":
            del buf[i:i + len(blob)]
        else:
            j = (i + 1 + blob[0]) % len(buf)
            buf[i:i] = buf[min(i, j):max(i, j)][:64]
    return bytes(buf)


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.sampled_from(range(len(CORPUS))), st.lists(mutation, min_size=1, max_size=6),
       st.sampled_from(CONTENT_TYPES))
def test_mutated_real_expositions(which: int, mutations: list[tuple[str, int, bytes]], ct: str | None) -> None:
    original = CORPUS[which]
    mutated = mutate(original, mutations)
    outcome(mutated, ct)
    # Through a parser that has seen the original (its caches must not let anything through), under each
    # strictness: the same outcome as a fresh parser, leniencies included.
    for strictness in (Strictness.STRICT, Strictness.SCRAPE):
        parser = ExpositionParser(strictness=strictness)
        try:
            parser.parse(original, ct)
        except ExpositionError:
            pass
        outcome(mutated, ct, parser)
        fresh = ExpositionParser(strictness=strictness)
        assert _parses(mutated, ct, parser) == _parses(mutated, ct, fresh)
        assert parser.leniencies == fresh.leniencies


def _parses(data: bytes, ct: str | None, parser: ExpositionParser) -> bool:
    try:
        parser.parse(data, ct)
    except ExpositionError:
        return False
    return True


@SETTINGS
@given(st.binary(max_size=300), st.sampled_from(CONTENT_TYPES))
def test_random_bytes(data: bytes, ct: str | None) -> None:
    outcome(data, ct)


line_pieces = st.sampled_from(['a', '{', '}', '"', '\\', '=', ',', ' ', '\t', '#', '\n', '\r\n', '\x00',
                               '1', '-', '.', 'e', 'NaN', '+Inf', 'le', '_total', '_bucket', '# TYPE ',
                               '# HELP ', '# EOF', 'counter', 'histogram', '\xff', 'é', '\u2028'])


@SETTINGS
@given(st.lists(line_pieces, max_size=60), st.sampled_from(CONTENT_TYPES))
def test_token_soup(pieces: list[str], ct: str | None) -> None:
    text = "".join(pieces)
    outcome(text, ct)
    outcome(text.encode("utf-8", "surrogatepass"), ct)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 200_000), st.sampled_from(["\\", '\\"', "\\\\", "\\n"]), st.sampled_from(CONTENT_TYPES))
def test_deep_escape_runs(n: int, esc: str, ct: str | None) -> None:
    outcome('a{x="' + esc * n + '"} 1\n# EOF\n', ct)
    outcome('# HELP a ' + esc * n + '\na 1\n# EOF\n', ct)


def test_escaped_names_agree() -> None:
    # STRICT accepts these (untyped families of their own); SCRAPE reads them under the family's escaped name.
    for text in ("# TYPE x:g gauge\nx_g 2\n# EOF\n", "# TYPE x:c counter\nx_c_total 1\nx_c_created 2\n# EOF\n"):
        assert any(e.rule is Rule.ESCAPED_NAME for e in _scrape_leniencies(text))
        for ct in CONTENT_TYPES:
            outcome(text, ct)


def _scrape_leniencies(text: str) -> tuple[Leniency, ...]:
    parser = ExpositionParser(strictness=Strictness.SCRAPE)
    parser.parse(text, CONTENT_TYPES[1])
    return parser.leniencies


def test_huge_lines_invalid_utf8_nul_crlf() -> None:
    for ct in CONTENT_TYPES:
        outcome(b"a 1\n" + b"x" * 10_000_000 + b"\n", ct)
        outcome(b'a{x="' + b"y" * 10_000_000 + b'"} 1\n# EOF\n', ct)
        outcome(b"a 1\n\xc3\x28\n# EOF\n", ct)
        outcome(b"a\x00 1\n\x00\n# EOF\n", ct)
        outcome(b"# TYPE a counter\r\na_total 1\r\n# EOF\r\n", ct)
        outcome(b"{" * 100_000 + b"\n", ct)
        outcome(b"a " + b"9" * 5000 + b" " + b"9" * 5000 + b"\n# EOF\n", ct)
        outcome(b"a 1 1e99999999999\n# EOF\n", ct)


def test_a_million_labels_once() -> None:
    body = ",".join(f'l{i}="v"' for i in range(1_000_000))
    for strictness in (Strictness.STRICT, Strictness.SCRAPE):
        t0 = time.perf_counter()
        [fam] = parse_exposition(f"a{{{body}}} 1\n", strictness=strictness)
        assert len(fam.samples[0].labels) == 1_000_000
        assert time.perf_counter() - t0 < LIMIT_S      # one line of 11 MB, a million pairs
