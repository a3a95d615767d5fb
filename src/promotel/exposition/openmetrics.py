"""OpenMetrics 1.0: metadata lines, the sequence of families, and the careful path of a sample line
(exemplars included).

Strict, per the 1.0 spec and its conformance suite: ``# EOF`` ends the exposition, no blank lines and
no comments, single spaces between tokens, a family's metadata before its samples and its samples on
consecutive lines. The rules on a finished family (names, unit, grouping, histogram structure, value
limits) are checked by ``rules.FamilyRules``.
"""

from __future__ import annotations

from collections.abc import Callable

from promotel.errors import ExpositionError
from promotel.exposition.rules import OM_SUFFIXES, FamilyBuilder, FamilyRules
from promotel.exposition.tokens import (
    EMPTY_LABELS,
    METRIC_NAME_RE,
    NEW_TUPLE,
    OM_BODY_RE,
    OM_SERIES_RE,
    PAIRS_RE,
    Intern,
    clip,
    label_pairs,
    labels_from_pairs,
    om_ts_ns,
    parse_value,
    series_slow,
    show,
    unescape,
)
from promotel.model import Exemplar, Labels, MetricFamily, Sample

__all__ = ["OpenMetricsText"]

_OM_TYPES = frozenset({"counter", "gauge", "histogram", "gaugehistogram", "summary", "info",
                       "stateset", "unknown"})
_EXEMPLAR_MAX_CHARS = 128


class OpenMetricsText:
    """One parse of an OpenMetrics exposition: the format's side of ``Rescrape.parse`` (see
    ``rescrape.LineFormat``). One family is open at a time; it is checked by ``rules`` when the
    next one starts (a metadata line for another name, or a sample it does not own) and at the end."""

    meta_start = "#"              # a line starting otherwise is a sample
    body_re = OM_BODY_RE

    def __init__(self, intern: Intern, rules: FamilyRules) -> None:
        self._intern = intern
        self._rules = rules
        self.timestamp: Callable[[str], int | None] = om_ts_ns
        self.resolved: dict[str, list[Sample]] = {}
        self._fam: FamilyBuilder | None = None
        self._out: list[MetricFamily] = []
        self._seen_names: set[str] = set()

    def start(self, lines: list[str]) -> None:
        """Checks and drops the final ``# EOF`` (and the newline after it)."""
        if lines[-1] == "":
            lines.pop()
        if not lines or lines[-1] != "# EOF":
            eof_at = lines.index("# EOF") + 1 if "# EOF" in lines else 0
            if eof_at:
                raise ExpositionError("text after '# EOF'; '# EOF' must be the last line", eof_at + 1)
            raise ExpositionError(
                "missing '# EOF' at the end; an OpenMetrics exposition must end with it "
                "(a truncated response?)", len(lines) + 1)
        lines.pop()

    def meta(self, line: str, lineno: int) -> bool:
        """Handles a HELP, TYPE or UNIT line (a blank line, a comment or a second ``# EOF`` is an
        error); a line for another family than the current one finishes the current one."""
        fam = self._fam
        if not line:
            raise ExpositionError("blank line; OpenMetrics does not allow empty lines", lineno)
        if line == "# EOF":
            raise ExpositionError("text after '# EOF'; '# EOF' must be the last line", lineno + 1)
        parts = line.split(" ", 3)
        if parts[0] != "#" or len(parts) < 2:
            raise ExpositionError(
                "comments are not allowed in OpenMetrics; a line starting with '#' must be "
                "'# HELP', '# TYPE', '# UNIT' or '# EOF'", lineno)
        kw = parts[1]
        if kw not in ("HELP", "TYPE", "UNIT"):
            raise ExpositionError(
                f"unknown metadata keyword \"{clip(kw)}\"; expected HELP, TYPE or UNIT "
                "(OpenMetrics has no comments)", lineno)
        if len(parts) < 4:
            raise ExpositionError(
                f"a {kw} line is '# {kw} <metric name> <text>' with a single space after the name",
                lineno)
        name = parts[2]
        if METRIC_NAME_RE.fullmatch(name) is None:
            raise ExpositionError(f'invalid metric name "{clip(name)}" in the {kw} line', lineno)
        value = parts[3]
        if fam is None or fam.name != name:
            if fam is not None:
                self._finish(fam)
            fam = self._fam = FamilyBuilder(name, "unknown")
            fam.allowed = {name: ""}
        elif fam.samples:
            raise ExpositionError(
                f'{kw} line for "{name}" after its samples; metadata must come before the samples',
                lineno)
        if kw == "HELP":
            if fam.help_line:
                raise ExpositionError(
                    f'second HELP line for "{name}" (the first is on line {fam.help_line})', lineno)
            fam.help = unescape(value)
            fam.help_line = lineno
        elif kw == "TYPE":
            if fam.type_line:
                raise ExpositionError(
                    f'second TYPE line for "{name}" (the first is on line {fam.type_line})', lineno)
            if value not in _OM_TYPES:
                raise ExpositionError(
                    f'unknown type "{clip(value)}" for "{name}"; expected one of '
                    + ", ".join(sorted(_OM_TYPES)), lineno)
            fam.type = value
            fam.type_line = lineno
            fam.allowed = {name + sfx: sfx for sfx in OM_SUFFIXES.get(value, ("",))}
        else:
            if fam.unit_line:
                raise ExpositionError(
                    f'second UNIT line for "{name}" (the first is on line {fam.unit_line})', lineno)
            fam.unit = value
            fam.unit_line = lineno
        return True

    def owner(self, name: str, lineno: int) -> list[Sample]:
        """The samples of the current family when it owns sample name ``name``; otherwise the current
        family is finished and the sample starts a family of type unknown."""
        fam = self._fam
        if fam is None or name not in fam.allowed:
            if fam is not None:
                self._finish(fam)
            fam = self._fam = FamilyBuilder(name, "unknown")
            fam.allowed = {name: ""}
            self.resolved.clear()       # the names the previous family owned
        if not fam.samples:
            fam.first_line = lineno
        return fam.samples

    def careful(self, line: str, lineno: int) -> Sample:
        """A sample line, tokenized: the common shape by one regular expression, the rest by the
        char-level tokenizer, which raises the error naming the offending token."""
        m = OM_SERIES_RE.match(line)
        if m is not None and m.end() < len(line) and line[m.end()] == " ":
            name = m.group(1)
            body = m.group(2)
            labels = labels_from_pairs(PAIRS_RE.findall(body), lineno, self._intern) if body else EMPTY_LABELS
            end = m.end()
        else:
            name, labels, end = series_slow(line, 0, lineno, self._intern, om=True, quoted_names=False)
        name = self._intern(name)
        if end >= len(line) or line[end] != " ":
            raise ExpositionError(
                f"expected a single space and the value after the series, found {show(line, end)}",
                lineno)
        rest = line[end + 1:]
        vtok, sp, after = rest.partition(" ")
        x = parse_value(vtok)
        if x is None:
            raise ExpositionError(
                f'invalid value "{clip(vtok)}" for "{name}"; expected a number, NaN, +Inf or -Inf '
                "with single spaces around it", lineno)
        ts: int | None = None
        exemplar: Exemplar | None = None
        if sp:
            if after.startswith("#"):
                ex_text = after
            else:
                ttok, sp2, ex_text = after.partition(" ")
                ts = om_ts_ns(ttok)
                if ts is None:
                    raise ExpositionError(
                        f'invalid timestamp "{clip(ttok)}"; expected seconds since the epoch '
                        "(a decimal number, no NaN or Inf), with no trailing space", lineno)
                if sp2 and not ex_text.startswith("#"):
                    raise ExpositionError(
                        f"unexpected {show(ex_text, 0)} after the timestamp; only an exemplar "
                        "(' # {labels} value') may follow", lineno)
            if ex_text:
                exemplar = self._exemplar(line, len(line) - len(ex_text), lineno)
        return NEW_TUPLE(Sample, (name, labels, x, ts, exemplar))

    def _exemplar(self, line: str, i: int, lineno: int) -> Exemplar:
        # line[i] == '#'; the exemplar is "# {labels} value [timestamp]".
        if line[i:i + 3] != "# {":
            raise ExpositionError("an exemplar is ' # {labels} value [timestamp]'; expected '# {' "
                                  f"after the value, found \"{clip(line[i:i + 3])}\"", lineno)
        pairs: list[str] = []
        j = label_pairs(line, i + 3, lineno, True, False, pairs,
                              allow_empty_after_comma=False)
        names = pairs[0::2]
        if len(set(names)) != len(names):
            raise ExpositionError("an exemplar label appears twice", lineno)
        if sum(len(p) for p in pairs) > _EXEMPLAR_MAX_CHARS:
            raise ExpositionError(
                f"exemplar labels are longer than {_EXEMPLAR_MAX_CHARS} characters (names and "
                "values together); shorten them", lineno)
        rest = line[j:]
        if not rest.startswith(" "):
            raise ExpositionError(
                f"expected a space and the exemplar value after its labels, found {show(line, j)}",
                lineno)
        toks = rest[1:].split(" ")
        if len(toks) > 2 or any(not t for t in toks):
            raise ExpositionError(
                "an exemplar ends with 'value [timestamp]' separated by single spaces, with nothing "
                "after", lineno)
        x = parse_value(toks[0])
        if x is None:
            raise ExpositionError(f'invalid exemplar value "{clip(toks[0])}"', lineno)
        ts: int | None = None
        if len(toks) == 2:
            ts = om_ts_ns(toks[1])
            if ts is None:
                raise ExpositionError(
                    f'invalid exemplar timestamp "{clip(toks[1])}"; expected seconds since the epoch',
                    lineno)
        flat = tuple(self._intern(p) for p in pairs)
        return Exemplar(Labels.from_flat(flat), x, ts)

    def finish(self) -> list[MetricFamily]:
        if self._fam is not None:
            self._finish(self._fam)
            self._fam = None
        return self._out

    def _finish(self, fam: FamilyBuilder) -> None:
        self._rules.finish(fam, self._seen_names)
        self._out.append(fam.freeze())
