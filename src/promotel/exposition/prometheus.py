"""The Prometheus text format (0.0.4 and 1.0.0): metadata lines, which family a sample belongs to, and the
careful path of a sample line (tokens separated by blanks and tabs; version 1.0.0, and a ``text/plain``
without a version, also allow quoted UTF-8 metric and label names). The format decisions are listed in
``parser``. The format's own rules (one HELP and one TYPE line per metric, the TYPE before the metric's
samples; version 0.0.4 has no quoted names, ``Rule.QUOTED_NAME``) go through the parser's
``rules.Enforcer``: ``SCRAPE`` tolerates them, as Prometheus does (the package docstring says how).
"""

from __future__ import annotations

from collections.abc import Callable

from promotel.errors import ExpositionError
from promotel.exposition.rules import Enforcer, FamilyBuilder, Rule, Strictness, quoted_name_text
from promotel.exposition.tokens import (
    BLANKS_RE,
    EMPTY_LABELS,
    METRIC_NAME_RE,
    NEW_TUPLE,
    PAIRS_RE,
    PROM_BODY_RE,
    PROM_SERIES_RE,
    Intern,
    clip,
    labels_from_pairs,
    parse_value,
    prom_ts_ns,
    quoted_string,
    series_slow,
    show,
    unescape_prom_help,
)
from promotel.model import MetricFamily, Sample

__all__ = ["PrometheusText"]

_PROM_TYPES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram",
               "summary": "summary", "untyped": "unknown"}
# A sample named base+suffix belongs to the declared family ``base`` of these types.
_PROM_SUFFIXES = (
    ("_bucket", ("histogram",)),
    ("_count", ("histogram", "summary")),
    ("_sum", ("histogram", "summary")),
    ("_created", ("histogram", "summary", "counter")),
    ("_total", ("counter",)),
)


class PrometheusText:
    """One parse of a Prometheus text exposition: the format's side of ``Rescrape.parse`` (see
    ``rescrape.LineFormat``). Families are kept by name: a family's samples may be interleaved
    with other families' and are merged."""

    meta_start = "# \t"          # a line starting otherwise is a sample
    body_re = PROM_BODY_RE

    def __init__(self, intern: Intern, quoted_names: bool, enforcer: Enforcer | None = None) -> None:
        self._intern = intern
        self._quoted_names = quoted_names
        self._enforcer = enforcer if enforcer is not None else Enforcer(Strictness.STRICT)
        self.timestamp: Callable[[str], int | None] = prom_ts_ns
        self.resolved: dict[str, list[Sample]] = {}
        self.reparse: list[int] = []              # lines with quoted names the Content-Type does not declare
        self._fams: dict[str, FamilyBuilder] = {}

    def start(self, lines: list[str]) -> None:
        if lines and lines[-1] == "":
            lines.pop()                 # the final newline

    def meta(self, line: str, lineno: int) -> bool:
        """Handles a blank, comment, HELP or TYPE line; False when the line is a sample."""
        fams = self._fams
        s = line.strip(" \t")
        if not s:
            return True
        if s[0] != "#":
            return False
        body = s[1:].lstrip(" \t")
        kw_end = 0
        while kw_end < len(body) and body[kw_end] not in " \t":
            kw_end += 1
        kw = body[:kw_end]
        if kw not in ("HELP", "TYPE"):
            return True                                   # an ordinary comment
        rest = body[kw_end:].lstrip(" \t")
        if not rest:
            raise ExpositionError(f"{kw} line needs a metric name after '# {kw}'", lineno)
        quoted = rest[0] == '"'
        if quoted:
            name, pos = quoted_string(rest, 0, f"quoted metric name in the {kw} line", lineno)
        else:
            m = METRIC_NAME_RE.match(rest)
            if m is None:
                raise ExpositionError(
                    f"expected a metric name after '# {kw}', found {show(rest, 0)}", lineno)
            name = m.group(0)
            pos = m.end()
        if pos < len(rest) and rest[pos] not in " \t":
            raise ExpositionError(
                f"invalid character {show(rest, pos)} in the metric name of the {kw} line", lineno)
        if quoted:
            if not name:
                raise ExpositionError(f"empty quoted metric name in the {kw} line; a metric name cannot be empty",
                                      lineno)
            if not self._quoted_names:
                self._enforcer.broken(
                    Rule.QUOTED_NAME, quoted_name_text(f'metric name "{clip(name)}" in the {kw} line', False),
                    lineno)
        tail = rest[pos:].lstrip(" \t")
        fam = fams.get(name)
        if fam is None:
            fam = FamilyBuilder(name, "unknown")
            fams[name] = fam
        bad = self._enforcer.broken
        if kw == "HELP":
            if fam.help_line:
                bad(Rule.METADATA_REPEATED,
                    f'second HELP line for "{name}" (the first is on line {fam.help_line}); '
                    "a metric may have only one", lineno)
            fam.help = unescape_prom_help(tail)     # SCRAPE: the last one wins, as in Prometheus' metadata
            fam.help_line = lineno
        else:
            parts = BLANKS_RE.split(tail) if tail else []
            if len(parts) != 1:
                raise ExpositionError(
                    f'TYPE line for "{name}" needs exactly one type after the name, found '
                    f"{len(parts)} tokens", lineno)
            typ = _PROM_TYPES.get(parts[0].lower())
            if typ is None:
                raise ExpositionError(
                    f'unknown type "{clip(parts[0])}" for "{name}"; expected one of counter, gauge, '
                    "histogram, summary, untyped", lineno)
            if fam.type_line:
                bad(Rule.METADATA_REPEATED,
                    f'second TYPE line for "{name}" (the first is on line {fam.type_line}); '
                    "a metric may have only one", lineno)
                if fam.samples:
                    # SCRAPE: ignored; the family keeps the type its samples were sorted by.
                    return True
            elif fam.samples:
                # SCRAPE: the type applies (the family's samples so far are all named ``name``).
                bad(Rule.METADATA_AFTER_SAMPLES,
                    f'TYPE line for "{name}" comes after its samples; it must come before the first '
                    "sample of the metric", lineno)
            fam.type = typ
            fam.type_line = lineno
        fam.declared = True
        return True

    def owner(self, name: str, lineno: int) -> list[Sample]:
        """The samples of the family a sample named ``name`` belongs to: the declared family of that
        name, else the declared family ``base`` of a histogram, summary or counter whose sample
        names (``base_bucket``, ``base_count``, …) include it, else a family of type unknown."""
        fams = self._fams
        fam = fams.get(name)
        if fam is not None and fam.declared:
            return fam.samples
        for suffix, types in _PROM_SUFFIXES:
            if name.endswith(suffix):
                base = fams.get(name[: -len(suffix)])
                if base is not None and base.declared and base.type in types:
                    return base.samples
        if fam is None:
            fam = FamilyBuilder(name, "unknown")
            fams[name] = fam
        return fam.samples

    def careful(self, line: str, lineno: int) -> Sample:
        """A sample line, tokenized: the common shapes by one regular expression, the rest by the
        char-level tokenizer, which raises the error naming the offending token."""
        start = 0
        n = len(line)
        while start < n and line[start] in " \t":
            start += 1
        m = PROM_SERIES_RE.match(line, start)
        if m is not None and m.group(2) is None and line[m.end():].lstrip(" \t")[:1] == "{":
            m = None                              # 'name {labels}': blanks before the labels
        if m is not None and m.end() < n and line[m.end()] in " \t":
            name = self._intern(m.group(1))
            body = m.group(2)
            labels = labels_from_pairs(PAIRS_RE.findall(body), lineno, self._intern) if body else EMPTY_LABELS
            end = m.end()
            quoted = ""
        else:
            name, labels, end, quoted = series_slow(line, start, lineno, self._intern, om=False)
            name = self._intern(name)
        # The value and an optional timestamp, separated by blanks.
        toks = BLANKS_RE.split(line[end:].strip(" \t"))
        if toks == [""]:
            toks = []
        if not toks:
            raise ExpositionError(f'missing value after the series "{clip(line[:end])}"', lineno)
        x = parse_value(toks[0])
        if x is None:
            raise ExpositionError(
                f'invalid value "{clip(toks[0])}" for "{name}"; expected a number, NaN, +Inf or -Inf',
                lineno)
        ts: int | None = None
        if len(toks) > 1:
            if toks[1].startswith("#"):
                raise ExpositionError(
                    "exemplars are not part of the Prometheus text format; serve OpenMetrics "
                    "(application/openmetrics-text) to expose them", lineno)
            ts = prom_ts_ns(toks[1])
            if ts is None:
                raise ExpositionError(
                    f'invalid timestamp "{clip(toks[1])}"; expected integer milliseconds since the epoch',
                    lineno)
            if len(toks) > 2:
                raise ExpositionError(
                    f'unexpected "{clip(toks[2])}" after the timestamp; a sample line is '
                    "'name{labels} value [timestamp]'", lineno)
        if quoted and not self._quoted_names:
            # Once the line is read whole: a line Prometheus refuses raises the same error under both strictnesses.
            self._enforcer.broken(Rule.QUOTED_NAME, quoted_name_text(quoted, False), lineno)
            self.reparse.append(lineno - 1)
        return NEW_TUPLE(Sample, (name, labels, x, ts, None))

    def finish(self) -> list[MetricFamily]:
        return [f.freeze() for f in self._fams.values()]
