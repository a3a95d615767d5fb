"""Parse Prometheus text (0.0.4 and 1.0.0) and OpenMetrics 1.0 expositions (with Prometheus 3's quoted UTF-8
names) into ``MetricFamily`` values.

This is the hot path of the product: a Baseten endpoint exposes ~150k samples per scrape. The
parser therefore has two paths that must agree on every rule:

* the **careful path** tokenizes a line (regular expressions for the common shapes, a char-level
  tokenizer for the rest and for precise error messages);
* the **fast path** handles a sample line whose series was in the previous scrape:
  ``rpartition(' ')`` splits off the value, the text before it is compared with the previous
  scrape's line at the same position (past the lines added or removed before it), and only the
  value (and timestamp) is parsed, strictly. A series that moved is found through an index of the
  previous lines built for that parse; a new series in the common ``name{pairs}`` shape is matched
  with regular expressions, sharing label bodies with its siblings. Anything the fast path does not
  recognise falls back to the careful path, which either accepts the line or raises the error; the
  fast path never raises.

An ``ExpositionParser`` (one per scrape target) keeps from one scrape to the next only what
``rescrape.Rescrape`` describes (the previous scrape's text and samples, string tables) and, for
OpenMetrics, ``family name → Plan`` and the parsed ``le``/``quantile`` values (``rules.FamilyRules``);
nothing else per series (memory is the product's limit at ~150k series per target). Everything is
bounded by ``max_cache_entries`` (0 keeps nothing).

Family rules are checked on every scrape. Prometheus text has few (family membership from the
sample names). OpenMetrics has many (grouping, histogram structure, value limits); they are split
into structural rules, which depend only on a family's type, sample names and labels, and value
rules. The structural ones are checked once per family structure and the result kept as a
``Plan`` (``family name → plan``; the plan also lists which samples each value rule applies
to); a later scrape whose family has the same structure only runs the value rules, as C-level
``map`` passes over the family's values. Any failure, and any family with timestamps, goes to
the reference per-sample pass (``FamilyRules.check_samples``), which raises the error of the first
offending line; the plan never raises, so both ways reject exactly the same input.

Format decisions (the specs leave room; each is a deliberate choice):

* Prometheus text: interleaved samples of a family are merged into the family (as client_golang's
  text parser does); CRLF line endings and a missing final newline are accepted; escapes other than
  ``\\\\``, ``\\"`` and ``\\n`` are kept literally (as Prometheus' own scraper does); histogram and
  summary structure is left to the converter (Prometheus does not check it at parse time either).
* OpenMetrics: the grammar is strict, per the 1.0 spec and its conformance suite (``# EOF``, no blank
  lines, no comments); the family rules (metadata order, grouping, histogram structure, value
  constraints) apply with the parser's ``Strictness``: all of them (``STRICT``), or only those
  Prometheus enforces, the others tolerated and reported (``SCRAPE``; see the package docstring).
* Quoted (UTF-8) metric and label names: read in both formats where Prometheus 3 reads them; the
  Content-Type says whether the format has them (text 1.0.0, OpenMetrics with ``escaping=allow-utf-8``),
  elsewhere they break ``Rule.QUOTED_NAME`` (see the package docstring).
* Families that only have metadata are returned with no samples.

The modules of the package:

* ``tokens``: the lexical layer (token patterns, values, timestamps, escapes, decoding, dialect
  detection, the char-level series tokenizer);
* ``prometheus`` and ``openmetrics``: each format's metadata lines, family sequence and careful path;
* ``rules`` and ``plan``: the OpenMetrics family rules (``FamilyRules``, made with a ``Strictness``)
  and the checked structures (``Plan``) that let a re-scrape run only the value rules;
* ``rescrape``: the state kept between scrapes and the scan, one loop for both formats, with the fast
  path inlined;
* ``parser`` (this module): ``ExpositionParser``, which ties them together per target, and
  ``parse_exposition``.
"""

from __future__ import annotations

from promotel.exposition.openmetrics import OpenMetricsText
from promotel.exposition.prometheus import PrometheusText
from promotel.exposition.rescrape import LineFormat, Rescrape
from promotel.exposition.rules import FamilyRules, Leniency, Strictness
from promotel.exposition.tokens import Dialect, decode, detect_dialect, detect_format
from promotel.model import MetricFamily

__all__ = ["ExpositionParser", "detect_format", "parse_exposition"]


class ExpositionParser:
    """Parses the successive scrapes of one target, reusing what earlier scrapes taught it.

    ``strictness``: ``Strictness.STRICT`` (the default: every rule, the first one broken raises) or
    ``Strictness.SCRAPE`` (what Prometheus' scraper accepts; the rules it does not enforce are tolerated,
    and ``leniencies`` says which ones the last parse used)."""

    def __init__(self, max_cache_entries: int = 1_000_000, *,
                 strictness: Strictness = Strictness.STRICT) -> None:
        self._max_cache_entries = max(0, max_cache_entries)
        self._rescrape = Rescrape(self._max_cache_entries)
        self._rules = FamilyRules(strictness, self._max_cache_entries)   # family rules and the enforcer
        self._dialect: Dialect | None = None
        self._leniencies: tuple[Leniency, ...] = ()

    @property
    def max_cache_entries(self) -> int:
        """The bound on every table the parser keeps (set when it is made)."""
        return self._max_cache_entries

    @property
    def strictness(self) -> Strictness:
        """How strictly the family rules apply (set when the parser is made)."""
        return self._rules.strictness

    @property
    def leniencies(self) -> tuple[Leniency, ...]:
        """The rules the last successful ``parse`` tolerated, by line: one ``Leniency`` per rule (its
        first line, the text ``STRICT`` reports there, how many times the exposition broke it). Always
        empty under ``STRICT``; empty after a parse that raised."""
        return self._leniencies

    def parse(self, data: bytes | str, content_type: str | None = None) -> list[MetricFamily]:
        """Parse one scrape. Raises ``ExpositionError`` (with the 1-based ``.line``) if invalid."""
        enforcer = self._rules.enforcer
        enforcer.reset()
        self._leniencies = ()
        text = decode(data)
        del data            # a caller that hands over its only reference frees the bytes here
        dialect = detect_dialect(content_type, text)
        rescrape = self._rescrape
        if dialect != self._dialect:
            # The previous lines were validated under another dialect's syntax: forget them.
            rescrape.forget()
            self._rules.forget()
            self._dialect = dialect
        fmt: LineFormat
        if dialect.om:
            fmt = OpenMetricsText(rescrape.intern, self._rules, dialect.quoted_names)
        else:
            if "\r" in text:
                text = text.replace("\r\n", "\n")     # Prometheus text tolerates CRLF; OpenMetrics does not
            fmt = PrometheusText(rescrape.intern, dialect.quoted_names, enforcer)
        families = rescrape.parse(text, fmt)
        self._leniencies = enforcer.leniencies()
        return families


def parse_exposition(data: bytes | str, content_type: str | None = None, *,
                     strictness: Strictness = Strictness.STRICT) -> list[MetricFamily]:
    """Parse one exposition (bytes or str). Raises ``ExpositionError`` (with ``.line``) if invalid.

    ``STRICT`` by default (every rule, as ``promotel lint``); ``strictness=Strictness.SCRAPE`` accepts what
    Prometheus' scraper accepts (use an ``ExpositionParser`` to see the leniencies used)."""
    return ExpositionParser(strictness=strictness).parse(data, content_type)
