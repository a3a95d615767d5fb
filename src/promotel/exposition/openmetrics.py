"""OpenMetrics 1.0: metadata lines, the sequence of families, and the careful path of a sample line
(exemplars included).

The grammar is strict under both strictnesses, per the 1.0 spec and its conformance suite, as Prometheus'
own parser is: ``# EOF`` ends the exposition, no blank lines and no comments, single spaces between
tokens. Quoted (UTF-8) metric and label names are read as Prometheus 3 reads them; where the Content-Type
does not declare them (``escaping=allow-utf-8``) they break ``Rule.QUOTED_NAME`` (the package docstring,
"Quoted names"). The family sequence depends on the strictness:

* ``STRICT``: a family's metadata comes before its samples, once, and its samples are on consecutive
  lines; each family is checked by ``rules.FamilyRules`` as soon as the next one starts.
* ``SCRAPE``: the metadata lines of a name start a *block*; a sample belongs to the current block when
  the block owns its name (as Prometheus 3 attaches the latest metadata to a sample whose name is part
  of that family, ``scrape.isSeriesPartOfFamily``), else to the latest earlier block owning it (as
  Prometheus 2's metadata, one entry per name for the whole scrape, implies), else it starts a family of
  type unknown (Prometheus has no metadata for it). A HELP, TYPE or UNIT line for the current family
  after its samples, or for a name seen before, starts a new block of that name that inherits the name's
  metadata (Prometheus keeps one metadata entry per name and updates it line by line). Every family is
  checked at the end; a later block of a name is then one family with the earlier one unless it
  contradicts it (another type where the earlier one had one, another unit), and stays a family of its
  own if it does (client_golang's gauge ``go_memstats_alloc_bytes`` and counter
  ``go_memstats_alloc_bytes_total``, both named ``go_memstats_alloc_bytes`` in OpenMetrics).

  Before those, one reading of ``SCRAPE``'s own (``Rule.ESCAPED_NAME``): when the current family was
  declared by metadata lines and has no sample yet, a sample named after the family's *escaped* name
  (``rules.escaped_name``) with a suffix of its type belongs to it, and the family takes that name (the
  one its samples and, in the same body, its label names are written with, and the one Prometheus
  stores the samples under). prometheus_client 0.23+ answers OpenMetrics without ``escaping=allow-utf-8``
  that way: ``# TYPE vllm:x counter`` then ``vllm_x_total``; read literally, as ``STRICT`` and
  Prometheus do, the counter has no samples and its samples are untyped families of their own.
"""

from __future__ import annotations

from collections.abc import Callable

from promotel.errors import ExpositionError
from promotel.exposition.rules import (
    PROM_ONLY,
    FamilyBuilder,
    FamilyRules,
    Rule,
    Strictness,
    escaped_name,
    escaped_name_text,
    family_unique_text,
    om_allowed,
    quoted_name_text,
)
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
    quoted_string,
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
    ``rescrape.LineFormat``). One family (block) is current at a time; see the module docstring for
    where a sample goes and when families are checked."""

    meta_start = "#"              # a line starting otherwise is a sample
    body_re = OM_BODY_RE

    def __init__(self, intern: Intern, rules: FamilyRules, quoted_names: bool = False) -> None:
        self._intern = intern
        self._rules = rules
        self._quoted_names = quoted_names             # the Content-Type declares them (escaping=allow-utf-8)
        self._enforcer = rules.enforcer
        self._strictness = rules.enforcer.strictness
        self._scrape = self._strictness is Strictness.SCRAPE
        self.timestamp: Callable[[str], int | None] = om_ts_ns
        self.resolved: dict[str, list[Sample]] = {}
        self.reparse: list[int] = []
        self._fam: FamilyBuilder | None = None        # the current family (block)
        self._active: FamilyBuilder | None = None     # the family whose names ``resolved`` holds
        self._out: list[MetricFamily] = []
        self._seen_names: set[str] = set()
        # SCRAPE: every block in order (checked at the end), the latest block of each name, and the
        # latest block owning each sample name.
        self._blocks: list[FamilyBuilder] = []
        self._latest: dict[str, FamilyBuilder] = {}
        self._owners: dict[str, FamilyBuilder] = {}
        self._renamed = False                          # a family took its escaped name (ESCAPED_NAME)

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
        parts = line.split(" ", 2)
        if parts[0] != "#" or len(parts) < 2:
            raise ExpositionError(
                "comments are not allowed in OpenMetrics; a line starting with '#' must be "
                "'# HELP', '# TYPE', '# UNIT' or '# EOF'", lineno)
        kw = parts[1]
        if kw not in ("HELP", "TYPE", "UNIT"):
            raise ExpositionError(
                f"unknown metadata keyword \"{clip(kw)}\"; expected HELP, TYPE or UNIT "
                "(OpenMetrics has no comments)", lineno)
        rest = parts[2] if len(parts) == 3 else ""
        quoted = rest[:1] == '"'
        if quoted:
            # A quoted (UTF-8) name, as Prometheus 3 reads it: any text between the quotes, escaped as a
            # label value is, then the single space.
            name, end = quoted_string(rest, 0, f"quoted metric name in the {kw} line", lineno)
            if end < len(rest) and rest[end] != " ":
                raise ExpositionError(
                    f"expected a single space after the quoted metric name of the {kw} line, found "
                    f"{show(rest, end)}", lineno)
            sp = rest[end:end + 1]
            value = rest[end + 1:]
        else:
            name, sp, value = rest.partition(" ")
        if not sp:
            raise ExpositionError(
                f"a {kw} line is '# {kw} <metric name> <text>' with a single space after the name",
                lineno)
        if quoted:
            if not name:
                raise ExpositionError(f"empty quoted metric name in the {kw} line; a metric name cannot be empty",
                                      lineno)
            if not self._quoted_names:
                self._enforcer.broken(
                    Rule.QUOTED_NAME, quoted_name_text(f'metric name "{clip(name)}" in the {kw} line', True), lineno)
        elif METRIC_NAME_RE.fullmatch(name) is None:
            raise ExpositionError(f'invalid metric name "{clip(name)}" in the {kw} line', lineno)
        bad = self._enforcer.broken
        if fam is None or (fam.name != name and fam.declared_name != name):
            if fam is not None:
                self._end(fam)
            fam = self._fam = self._block(name)
        elif fam.samples:
            bad(Rule.METADATA_AFTER_SAMPLES,
                f'{kw} line for "{name}" after its samples; metadata must come before the samples', lineno)
            # SCRAPE: the samples from here on get the name's metadata as this line changes it.
            self._end(fam)
            fam = self._fam = self._block(name)
        self._active = None                 # the scan forgets the resolved names after a metadata line
        if kw == "HELP":
            if fam.help_line:
                bad(Rule.METADATA_REPEATED,
                    f'second HELP line for "{name}" (the first is on line {fam.help_line})', lineno)
            fam.help = unescape(value)      # SCRAPE: the last one wins, as in Prometheus' metadata
            fam.help_line = lineno
        elif kw == "TYPE":
            if fam.type_line:
                bad(Rule.METADATA_REPEATED,
                    f'second TYPE line for "{name}" (the first is on line {fam.type_line})', lineno)
            if value not in _OM_TYPES:
                raise ExpositionError(
                    f'unknown type "{clip(value)}" for "{name}"; expected one of '
                    + ", ".join(sorted(_OM_TYPES)), lineno)
            fam.type = value
            fam.type_line = lineno
            fam.allowed = om_allowed(name, value, self._strictness)
            if self._scrape:
                self._register(fam)
        else:
            if fam.unit_line:
                bad(Rule.METADATA_REPEATED,
                    f'second UNIT line for "{name}" (the first is on line {fam.unit_line})', lineno)
            fam.unit = value
            fam.unit_line = lineno
        return True

    def _block(self, name: str) -> FamilyBuilder:
        """A new family (block) named ``name``, of type unknown until a TYPE line says otherwise; under
        ``SCRAPE`` it starts with the metadata of the name's latest block."""
        fam = FamilyBuilder(name, "unknown")
        fam.allowed = {name: ""}
        if self._scrape:
            prev = self._latest.get(name)
            if prev is not None:
                fam.type = prev.type
                fam.help = prev.help
                fam.unit = prev.unit
                # A block that took its escaped name owns the escaped names; this one, the declared ones.
                fam.allowed = prev.allowed if prev.name == name else om_allowed(name, prev.type, self._strictness)
            self._latest[name] = fam
            self._blocks.append(fam)
            self._register(fam)
        return fam

    def _register(self, fam: FamilyBuilder) -> None:
        owners = self._owners
        for n in fam.allowed:
            owners[n] = fam

    def _end(self, fam: FamilyBuilder) -> None:
        """The current family ends: checked now (STRICT) or with the others at the end (SCRAPE)."""
        if not self._scrape:
            self._finish(fam)

    def owner(self, name: str, lineno: int) -> list[Sample]:
        """The samples of the family a sample named ``name`` belongs to: the current family when it
        owns the name; under ``SCRAPE`` else the latest earlier family owning it; else a new family of
        type unknown (under ``STRICT`` the current family is finished first). Under ``SCRAPE``, first of
        all, the current family when ``name`` is its escaped name with a suffix (``_takes_escaped``)."""
        fam = self._fam
        if fam is None or name not in fam.allowed:
            if fam is not None and self._scrape and not fam.samples and self._takes_escaped(fam, name, lineno):
                pass                            # the family goes by the escaped name now: ``name`` is its own
            else:
                earlier = self._owners.get(name) if self._scrape else None
                if earlier is not None and name in earlier.allowed:
                    fam = earlier
                else:
                    if fam is not None:
                        self._end(fam)
                    fam = self._fam = self._block(name)
        if fam is not self._active:
            self.resolved.clear()           # the names the previous family owned
            if fam.samples or fam is not self._fam:
                # Only under SCRAPE (STRICT never returns to a family once another one started): a
                # family continued after another family's samples, or after its block ended.
                self._enforcer.broken(Rule.FAMILY_UNIQUE, family_unique_text(name), lineno)
                if fam.samples:
                    fam.continue_at(lineno)
            self._active = fam
        if not fam.samples:
            fam.first_line = lineno
        if fam.allowed[name] is PROM_ONLY:
            fam.foreign = True
        return fam.samples

    def _takes_escaped(self, fam: FamilyBuilder, name: str, lineno: int) -> bool:
        """``SCRAPE``, for a family without samples (so declared by metadata lines) and a sample name it does
        not own: whether ``name`` is the family's escaped name (``escaped_name``) plus a suffix its type allows
        (``om_allowed``). If so, ``Rule.ESCAPED_NAME`` is recorded at the sample's line and the family takes the
        escaped name, so that every later sample spelt so is its own, as if the metadata had been escaped
        too. A UNIT the escaped name does not end with (a unit with a colon) leaves the family as declared.
        Runs only when a sample's family is looked up (``Rescrape`` calls ``owner`` on a new sample name),
        never on the fast path."""
        declared = fam.name
        escaped = escaped_name(declared)
        if escaped == declared or not name.startswith(escaped):
            return False
        allowed = om_allowed(escaped, fam.type, self._strictness)
        if name not in allowed or (fam.unit and not escaped.endswith("_" + fam.unit)):
            return False
        self._enforcer.broken(Rule.ESCAPED_NAME, escaped_name_text(name, declared, escaped), lineno)
        fam.name = escaped
        fam.allowed = allowed
        self._latest[escaped] = fam
        self._register(fam)
        self._renamed = True
        return True

    def careful(self, line: str, lineno: int) -> Sample:
        """A sample line, tokenized: the common shape by one regular expression, the rest by the
        char-level tokenizer, which raises the error naming the offending token."""
        m = OM_SERIES_RE.match(line)
        if m is not None and m.end() < len(line) and line[m.end()] == " ":
            name = m.group(1)
            body = m.group(2)
            labels = labels_from_pairs(PAIRS_RE.findall(body), lineno, self._intern) if body else EMPTY_LABELS
            end = m.end()
            quoted = ""
        else:
            name, labels, end, quoted = series_slow(line, 0, lineno, self._intern, om=True)
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
                exemplar, ex_quoted = self._exemplar(line, len(line) - len(ex_text), lineno)
                quoted = quoted or ex_quoted
        if quoted and not self._quoted_names:
            # Once the line is read whole: a line Prometheus refuses raises the same error under both strictnesses.
            self._enforcer.broken(Rule.QUOTED_NAME, quoted_name_text(quoted, True), lineno)
            self.reparse.append(lineno - 1)
        return NEW_TUPLE(Sample, (name, labels, x, ts, exemplar))

    def _exemplar(self, line: str, i: int, lineno: int) -> tuple[Exemplar | None, str]:
        """The exemplar at ``line[i]`` (a '#'), "# {labels} value [timestamp]" (None when ``SCRAPE`` leaves it
        out), and its first quoted label name as a message names it, or ``""``."""
        if line[i:i + 3] != "# {":
            raise ExpositionError("an exemplar is ' # {labels} value [timestamp]'; expected '# {' "
                                  f"after the value, found \"{clip(line[i:i + 3])}\"", lineno)
        pairs: list[str] = []
        quoted: list[str] = []
        j, _ = label_pairs(line, i + 3, lineno, True, pairs, quoted, exemplar=True)
        names = pairs[0::2]
        twice = len(set(names)) != len(names)
        if twice:
            # SCRAPE: the exemplar is left out (it has no label set), the sample kept.
            self._enforcer.broken(Rule.EXEMPLAR_LABELS, "an exemplar label appears twice", lineno)
            self.reparse.append(lineno - 1)
        if sum(len(p) for p in pairs) > _EXEMPLAR_MAX_CHARS:
            # SCRAPE: kept (Prometheus' exemplar storage refuses it, but keeps the sample; OTLP has no limit).
            self._enforcer.broken(
                Rule.EXEMPLAR_LENGTH,
                f"exemplar labels are longer than {_EXEMPLAR_MAX_CHARS} characters (names and "
                "values together); shorten them", lineno)
            self.reparse.append(lineno - 1)
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
        first = quoted[0] if quoted else ""
        if twice:
            return None, first
        flat = tuple(self._intern(p) for p in pairs)
        return Exemplar(Labels.from_flat(flat), x, ts), first

    def finish(self) -> list[MetricFamily]:
        if not self._scrape:
            if self._fam is not None:
                self._finish(self._fam)
                self._fam = None
            return self._out
        # SCRAPE: the names rule over the blocks as they came, then each family (blocks of one name,
        # type and unit together) checked and frozen.
        rules = self._rules
        seen: set[str] = set()
        for fam in self._blocks:
            rules.check_names(fam, seen)
        out = self._out
        for fam in self._merged():
            rules.check_family(fam)
            out.append(fam.freeze())
        return out

    def _merged(self) -> list[FamilyBuilder]:
        """The blocks as families: a block that ``continues`` an earlier family of its name is taken
        into it (at the earlier one's place); one that contradicts it stays a family of its own."""
        blocks = self._blocks
        if len(self._latest) == len(blocks) and not self._renamed:
            return blocks                   # every name once
        by_name: dict[str, list[FamilyBuilder]] = {}
        out: list[FamilyBuilder] = []
        for fam in blocks:
            earlier = by_name.setdefault(fam.name, [])
            into = next((e for e in earlier if e.continues(fam)), None)
            if into is None:
                earlier.append(fam)
                out.append(fam)
            else:
                into.absorb(fam)
        return out

    def _finish(self, fam: FamilyBuilder) -> None:
        self._rules.finish(fam, self._seen_names)
        self._out.append(fam.freeze())
