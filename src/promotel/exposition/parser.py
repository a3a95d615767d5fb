"""Parse Prometheus text (0.0.4 and 1.0.0) and OpenMetrics 1.0 expositions into ``MetricFamily`` values.

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

State kept by an ``ExpositionParser`` (one per scrape target) from one scrape to the next, and
nothing else per series (memory is the product's limit at ~150k series per target):

* the previous scrape's lines and the ``Sample`` each became, so an unchanged line is one string
  comparison and shares the previous (immutable) ``Sample``, and a changed one is compared in place;
* which previous lines took the careful path in a shape whose series text the positional match
  cannot trust (anything after the value: a timestamp, trailing blanks, an exemplar); few;
* interned label names and values, so equal strings are stored once; a small value-text cache;
* OpenMetrics: ``family name → _Plan`` (see below), and the parsed ``le``/``quantile`` values.

Everything is bounded by ``max_cache_entries`` (0 keeps nothing). Label bodies, series prefixes and
the index of the previous lines live for one parse only.

Family rules are checked on every scrape. Prometheus text has few (family membership from the
sample names). OpenMetrics has many (grouping, histogram structure, value limits); they are split
into structural rules, which depend only on a family's type, sample names and labels, and value
rules. The structural ones are checked once per family structure and the result kept as a
``_Plan`` (``family name → plan``; the plan also lists which samples each value rule applies
to); a later scrape whose family has the same structure only runs the value rules, as C-level
``map`` passes over the family's values. Any failure, and any family with timestamps, goes to
the reference per-sample pass (``_om_check_samples``), which raises the error of the first
offending line; the plan never raises, so both ways reject exactly the same input.

Format decisions (the specs leave room; each is a deliberate choice):

* Prometheus text: interleaved samples of a family are merged into the family (as client_golang's
  text parser does); CRLF line endings and a missing final newline are accepted; escapes other than
  ``\\\\``, ``\\"`` and ``\\n`` are kept literally (as Prometheus' own scraper does); histogram and
  summary structure is left to the converter (Prometheus does not check it at parse time either).
* OpenMetrics: strict, per the 1.0 spec and its conformance suite (``# EOF``, no blank lines,
  grouping, histogram structure, value constraints).
* Families that only have metadata are returned with no samples.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from operator import itemgetter, methodcaller

from promotel.errors import ExpositionError
from promotel.exposition.rules import (
    OM_SUFFIXES,
    FamilyBuilder,
    FamilyRules,
    Strictness,
)
from promotel.exposition.tokens import (
    BLANKS_RE,
    EMPTY_LABELS,
    METRIC_NAME_RE,
    NEW_TUPLE,
    OM_BODY_RE,
    OM_SERIES_RE,
    PAIR_FULL_RE,
    PAIRS_RE,
    PROM_BODY_RE,
    PROM_SERIES_RE,
    QUOTED_BODY_RE,
    SPECIALS,
    Dialect,
    clip,
    decode,
    detect_dialect,
    detect_format,
    label_pairs,
    labels_from_pairs,
    om_ts_ns,
    parse_value,
    prom_ts_ns,
    series_slow,
    show,
    unescape,
    unescape_prom_help,
)
from promotel.model import Exemplar, Labels, MetricFamily, Sample

__all__ = ["ExpositionParser", "detect_format", "parse_exposition"]


_PROM_TYPES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram",
               "summary": "summary", "untyped": "unknown"}
_OM_TYPES = frozenset({"counter", "gauge", "histogram", "gaugehistogram", "summary", "info",
                       "stateset", "unknown"})
# Prometheus text: a sample named base+suffix belongs to the declared family ``base`` of these types.
_PROM_SUFFIXES = (
    ("_bucket", ("histogram",)),
    ("_count", ("histogram", "summary")),
    ("_sum", ("histogram", "summary")),
    ("_created", ("histogram", "summary", "counter")),
    ("_total", ("counter",)),
)
_EXEMPLAR_MAX_CHARS = 128
# Value texts → floats: small, because only few repeat (0, 1, bucket counts of idle series); a
# larger cache filled up with one-off counter values and was no faster (measured on the Baseten bench).
_MAX_VALUE_TEXTS = 4096


# ─── the parser ──────────────────────────────────────────────────────────────────────────────


class ExpositionParser:
    """Parses the successive scrapes of one target, reusing what earlier scrapes taught it."""

    def __init__(self, max_cache_entries: int = 1_000_000) -> None:
        self.max_cache_entries = max(0, max_cache_entries)
        # Kept from one scrape to the next: the previous scrape's text, what each of its lines became
        # (None: metadata), and which lines took the careful path in a shape the positional match must
        # not trust (see ``_canonical``). The text is kept whole and split again by the next parse:
        # one block the allocator returns to the OS whole, where 150k line strings kept from one
        # scrape to the next left the heap fragmented (measured: RSS rising ~1 MB a round for 30
        # rounds on the Baseten bench, flat with the text), for ~20 ms a parse.
        self._prev_text = ""
        self._prev_lines: list[str] = []        # the previous text split, during a parse only
        self._prev_got: list[Sample | None] = []
        self._careful: set[int] = set()
        # Per parse, dropped when it ends: label bodies and series prefixes (shared by a series'
        # buckets, _sum and _count), the careful set being built, the offset between this scrape's
        # lines and the previous scrape's, and the index of the previous scrape's series texts
        # (built on the first line that is not where it was).
        self._bodies: dict[str, Labels] = {}
        self._prefixes: dict[str, tuple[str, Labels]] = {}
        self._next_careful: set[int] = set()
        self._shift = 0
        self._index: dict[int, int] | None = None
        self._names: dict[str, str] = {}
        self._last_pairs: dict[str, tuple[str, str]] = {}
        self._strings: dict[str, str] = {}
        self._dialect: Dialect | None = None
        self._values: dict[str, float] = {}     # value text → float, only strictly valid ones
        self._rules = FamilyRules(Strictness.STRICT, self.max_cache_entries)   # OpenMetrics family rules

    def parse(self, data: bytes | str, content_type: str | None = None) -> list[MetricFamily]:
        """Parse one scrape. Raises ``ExpositionError`` (with the 1-based ``.line``) if invalid."""
        text = decode(data)
        del data            # a caller that hands over its only reference frees the bytes here
        dialect = detect_dialect(content_type, text)
        if dialect != self._dialect:
            # The previous lines were validated under another dialect's syntax: forget them.
            self._prev_text = ""
            self._prev_got = []
            self._careful = set()
            self._rules.forget()
            self._dialect = dialect
        if len(self._strings) >= self.max_cache_entries:
            self._strings = {}
        if len(self._names) >= self.max_cache_entries:
            self._names = {}
        if not dialect.om and "\r" in text:
            text = text.replace("\r\n", "\n")     # Prometheus text tolerates CRLF; OpenMetrics does not
        lines = text.split("\n")
        # The previous text is needed as lines for this parse only; its block is let go meanwhile.
        if self._prev_got:
            self._prev_lines = self._prev_text.split("\n")
        self._prev_text = ""
        self._shift = 0
        self._index = None
        try:
            families = self._parse_om(lines) if dialect.om else self._parse_prom(lines, dialect.quoted_names)
            if self._prev_got:                   # kept (see _keep): this text is the next parse's previous one
                self._prev_text = text
            return families
        except BaseException:
            # The previous text is gone: the next scrape starts afresh.
            self._prev_got = []
            self._careful = set()
            raise
        finally:
            self._bodies = {}
            self._prefixes = {}
            self._prev_lines = []
            self._next_careful = set()
            self._index = None

    # ─── caches ────────────────────────────────────────────────────────────────────────────

    def _intern(self, s: str) -> str:
        strings = self._strings
        got = strings.get(s)
        if got is not None:
            return got
        if len(strings) >= self.max_cache_entries:
            strings.clear()
        strings[s] = s
        return s

    def _value(self, v: str) -> float | None:
        """``parse_value`` for the hot path, remembered (bucket counts and small integers repeat a lot):
        float() and cheap checks for what float() accepts but the formats do not (underscores,
        whitespace, non-ASCII digits, odd NaN/Inf spellings)."""
        try:
            x = float(v)
        except ValueError:
            return None
        if x - x != 0.0:                       # NaN or ±Inf
            if v.lower() not in SPECIALS:
                return None
        elif not (v.isascii() and v.isprintable()) or "_" in v:
            return None
        values = self._values
        if len(values) >= _MAX_VALUE_TEXTS:
            values.clear()
        values[v] = x
        return x

    def _reuse(self, lines: list[str]) -> list[Sample | None]:
        """What each line became in the previous scrape, where the line is unchanged at the same
        position (a string comparison, no hashing): expositions keep their series order, so
        an unchanged line costs next to nothing. A shifted line just misses."""
        prev_lines = self._prev_lines
        got = [s if a == b else None for a, b, s in zip(lines, prev_lines, self._prev_got)]
        if len(got) < len(lines):
            got.extend([None] * (len(lines) - len(got)))
        # A careful-path line that is unchanged at its position stays one.
        self._next_careful = {i for i in self._careful if i < len(got) and got[i] is not None}
        return got

    def _keep(self, lines: list[str], got: list[Sample | None]) -> None:
        if len(lines) <= self.max_cache_entries:
            self._prev_got = got
            self._careful = self._next_careful
        else:
            self._prev_got = []
            self._careful = set()

    def _series_fast(self, head: str) -> tuple[str, Labels] | None:
        """The common series shape ``name{pairs}`` (no blanks, no quoted names) for a series text
        that was not in the previous scrape; None for anything else (the careful path decides).

        Series that differ from a known one only in their last pair (histogram buckets differ
        in the trailing ``le``) extend the known one's labels: a valid series prefix, ',' and a
        valid pair make a valid series, so only the last pair is matched."""
        if not head or head[-1] != "}":
            known = self._names.get(head)
            if known is None:
                if METRIC_NAME_RE.fullmatch(head) is None:
                    return None
                known = self._names[head] = self._intern(head)
            entry = (known, EMPTY_LABELS)
        else:
            pre, comma, last = head.rpartition(",")
            ent = self._prefixes.get(pre) if comma else None
            pair = (self._last_pairs.get(last) or self._last_pair(last)) if ent is not None else None
            if ent is not None and pair is not None:
                flat = ent[1].flat
                # A name equal to any string of the prefix (maybe a duplicate label) goes the
                # careful way.
                if pair[0] in flat:
                    return None
                entry = (ent[0], Labels.from_flat(flat + pair))
            else:
                got = self._series_parse(head)
                if got is None:
                    return None
                entry = got
        return entry

    def _last_pair(self, last: str) -> tuple[str, str] | None:
        """``name="value"}`` (the end of a series) → the interned (name, value), remembered."""
        pairs = self._last_pairs
        got = pairs.get(last)
        if got is None:
            m = PAIR_FULL_RE.fullmatch(last, 0, len(last) - 1)
            if m is None:
                return None
            k, raw = m.groups()
            if k == "__name__":
                return None
            got = (self._intern(k), self._intern(unescape(raw)))
            if len(pairs) >= self.max_cache_entries:
                pairs.clear()
            pairs[last] = got
        return got

    def _series_parse(self, head: str) -> tuple[str, Labels] | None:
        """``name{body}`` matched whole (the body cache serves ``_sum``/``_count`` siblings);
        also remembers the series without its last pair for ``_series_fast``."""
        brace = head.find("{")
        if brace <= 0:
            return None
        name = head[:brace]
        known = self._names.get(name)
        if known is None:
            if METRIC_NAME_RE.fullmatch(name) is None:
                return None
            known = self._names[name] = self._intern(name)
        body = head[brace + 1:-1]
        bodies = self._bodies
        labels = bodies.get(body)
        if labels is None:
            body_re = OM_BODY_RE if self._dialect is not None and self._dialect.om else PROM_BODY_RE
            if body and body_re.fullmatch(body) is None:
                return None
            pairs = PAIRS_RE.findall(body)
            flat_l: list[str] = []
            intern = self._strings.setdefault       # the size is checked once per parse
            for k, raw in pairs:
                flat_l.append(intern(k, k))
                if "\\" in raw:
                    raw = unescape(raw)
                flat_l.append(intern(raw, raw))
            names = flat_l[0::2]
            if len(set(names)) != len(names) or "__name__" in names:
                return None
            flat = tuple(flat_l)
            labels = Labels.from_flat(flat)
            if self.max_cache_entries:
                bodies[body] = labels
                if len(pairs) > 1 and not body.endswith(","):
                    # The body and the series without the last pair, for siblings that differ there.
                    k, raw = pairs[-1]
                    cut = len(body) - (len(k) + len(raw) + 4)
                    short = bodies.setdefault(body[:cut], Labels.from_flat(flat[:-2]))
                    self._prefixes[head[:brace + 1 + cut]] = (known, short)
        return (known, labels)

    # ─── Prometheus text ───────────────────────────────────────────────────────────────────

    def _parse_prom(self, lines: list[str], quoted_names: bool) -> list[MetricFamily]:
        if lines and lines[-1] == "":
            lines.pop()
        got = self._reuse(lines)
        prev_lines = self._prev_lines
        prev_got = self._prev_got
        careful = self._careful
        n_prev = len(prev_got)
        shift = 0
        values = self._values
        new = NEW_TUPLE
        S = Sample
        careful_path = functools.partial(self._prom_sample_careful, quoted_names=quoted_names)
        fams: dict[str, FamilyBuilder] = {}
        resolved: dict[str, list[Sample]] = {}
        last_name: str | None = None
        last_list: list[Sample] = []
        for idx, s in enumerate(got):
            if s is None:
                line = lines[idx]
                if (not line or line[0] in "# \t") and self._prom_meta_or_blank(
                        line, idx + 1, fams, quoted_names):
                    resolved.clear()
                    last_name = None
                    continue
                # Inlined fast path: the previous scrape's line at this position (past the lines added
                # or removed before it) has the same series text; only the value is new.
                head, _, v = line.rpartition(" ")
                j = idx + shift         # never negative: shift = (a previous line) − (an earlier idx)
                if shift and j < n_prev and line == prev_lines[j]:
                    s = prev_got[j]                 # unchanged, moved by the lines added or removed
                    if j in careful:
                        self._next_careful.add(idx)
                elif j < n_prev:
                    p = prev_got[j]
                    if p is not None and p[3] is None and j not in careful:
                        pl = prev_lines[j]
                        if pl.rfind(" ") == len(head) and pl.startswith(head):
                            x = values.get(v)
                            if x is None:
                                x = self._value(v)
                            if x is not None:
                                s = new(S, (p[0], p[1], x, None, None))
                if s is None:
                    s = self._miss(line, idx, head, v, careful_path, prom_ts_ns)
                    shift = self._shift
                got[idx] = s
            name = s[0]
            if name is not last_name:
                lst = resolved.get(name)
                if lst is None:
                    lst = resolved[name] = self._prom_resolve(name, fams).samples
                last_name = name
                last_list = lst
            last_list.append(s)
        self._keep(lines, got)
        return [f.freeze() for f in fams.values()]

    def _miss(self, line: str, idx: int, head: str, v: str, careful: Callable[[str, int], Sample],
              timestamp: Callable[[str], int | None]) -> Sample:
        """A sample line (``head`` and ``v`` split at its last space) the inline positional match did
        not take: its series moved (lines were added or removed before it, or the order changed),
        is new, carries a timestamp, or needs the careful path (which also raises the error for an
        invalid line)."""
        prev = self._prev_got
        j = idx + self._shift
        if j < len(prev) and (p := prev[j]) is not None and p[3] is not None:
            # The previous line here had a timestamp: most likely this one has one too.
            s = self._timestamped_line(line, idx, timestamp)
            if s is not None:
                return s
        x = self._values.get(v)
        if x is None:
            x = self._value(v)
        if x is not None:
            p = self._moved(head, idx) if prev else None
            if p is not None:
                return NEW_TUPLE(Sample, (p[0], p[1], x, None, None))
            ent = self._series_fast(head)
            if ent is not None:
                return NEW_TUPLE(Sample, (ent[0], ent[1], x, None, None))
        s = self._timestamped_line(line, idx, timestamp)
        if s is None:
            s = careful(line, idx + 1)
            if not self._canonical(line, s):
                self._next_careful.add(idx)
        return s

    def _timestamped_line(self, line: str, idx: int, timestamp: Callable[[str], int | None]) -> Sample | None:
        """A known or fast-shape series, a value and a timestamp (parsed by ``timestamp``: the formats
        differ); None when the line is not that."""
        head, _, ts_text = line.rpartition(" ")
        series, _, v = head.rpartition(" ")
        if not series:
            return None
        ent = self._known(series, idx)
        if ent is None:
            return None
        ts = timestamp(ts_text)
        if ts is None:
            return None
        x = self._value(v)
        if x is None:
            return None
        return NEW_TUPLE(Sample, (ent[0], ent[1], x, ts, None))

    def _canonical(self, line: str, s: Sample) -> bool:
        """Whether a careful-path line is ``series SP value`` with nothing after the value, so that
        the text before its last space is its series text (what the positional match relies on).
        A strictly valid value has no blanks, so it is the last token; without a timestamp or an
        exemplar it is the value token, and what precedes it is the series."""
        return s[3] is None and s[4] is None and self._value(line[line.rfind(" ") + 1:]) is not None

    # ─── the previous scrape's lines ───────────────────────────────────────────────────────

    def _prev_series(self, j: int, series: str) -> Sample | None:
        """The previous scrape's sample at line ``j`` when that line's series text is exactly ``series``.

        Trusted only for lines in the shape ``series SP value [SP timestamp]`` with strictly valid
        value and timestamp: every line the fast paths take, and careful-path lines that
        ``_canonical`` accepts. There the text before the value is the series text, so an equal text
        is the same series (a series' syntax does not depend on what follows it)."""
        prev = self._prev_got
        if j >= len(prev):
            return None
        p = prev[j]
        if p is None or j in self._careful:
            return None
        pl = self._prev_lines[j]
        e = pl.rfind(" ")
        if p[3] is not None:
            e = pl.rfind(" ", 0, e)
        return p if e == len(series) and pl.startswith(series) else None

    def _moved(self, series: str, idx: int) -> Sample | None:
        """The previous scrape's sample of ``series`` wherever it was; realigns the positional match
        from line ``idx`` on."""
        index = self._index
        if index is None:
            index = self._index = self._prev_index()
        j = index.get(hash(series))
        if j is None:
            return None
        p = self._prev_series(j, series)       # the hash finds a candidate; the text decides
        if p is not None:
            self._shift = j - idx
        return p

    def _known(self, series: str, idx: int) -> tuple[str, Labels] | None:
        """(name, Labels) of the series text of line ``idx``: from the previous scrape's line at the
        same position, or wherever that series was, or parsed when it is new and in the fast shape."""
        if self._prev_got:
            p = self._prev_series(idx + self._shift, series) or self._moved(series, idx)
            if p is not None:
                return (p[0], p[1])
        return self._series_fast(series)

    def _prev_index(self) -> dict[int, int]:
        """hash(text before the last space) → line of the previous scrape. Only candidates:
        ``_prev_series`` decides (metadata lines and a timestamped line's ``series value`` are keys
        no series text finds; a moved timestamped series is parsed as new). Built at C speed, once
        per parse, on the first line that is not where it was, and dropped with the parse; it holds
        integers, not texts (a dict of the texts would add ~40 MB to the peak of such a parse)."""
        heads = map(itemgetter(0), map(methodcaller("rpartition", " "), self._prev_lines))
        return dict(zip(map(hash, heads), itertools.count()))

    def _prom_resolve(self, name: str, fams: dict[str, FamilyBuilder]) -> FamilyBuilder:
        fam = fams.get(name)
        if fam is not None and fam.declared:
            return fam
        for suffix, types in _PROM_SUFFIXES:
            if name.endswith(suffix):
                base = fams.get(name[: -len(suffix)])
                if base is not None and base.declared and base.type in types:
                    return base
        if fam is None:
            fam = FamilyBuilder(name, "unknown")
            fams[name] = fam
        return fam

    def _prom_meta_or_blank(self, line: str, lineno: int, fams: dict[str, FamilyBuilder],
                            quoted_names: bool) -> bool:
        """Handles a blank, comment, HELP or TYPE line; False when the line is a sample."""
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
        if rest[0] == '"':
            if not quoted_names:
                raise ExpositionError(
                    f"quoted metric name in a {kw} line; quoted (UTF-8) names need the text format "
                    "version 1.0.0 (Content-Type: text/plain; version=1.0.0)", lineno)
            m = QUOTED_BODY_RE.match(rest, 1)
            end = m.end() if m else 1
            if end >= len(rest) or rest[end] != '"':
                raise ExpositionError(f"unterminated quoted metric name in the {kw} line", lineno)
            name = unescape(rest[1:end])
            pos = end + 1
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
        tail = rest[pos:].lstrip(" \t")
        fam = fams.get(name)
        if fam is None:
            fam = FamilyBuilder(name, "unknown")
            fams[name] = fam
        if kw == "HELP":
            if fam.help_line:
                raise ExpositionError(
                    f'second HELP line for "{name}" (the first is on line {fam.help_line}); '
                    "a metric may have only one", lineno)
            fam.help = unescape_prom_help(tail)
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
                raise ExpositionError(
                    f'second TYPE line for "{name}" (the first is on line {fam.type_line}); '
                    "a metric may have only one", lineno)
            if fam.samples:
                raise ExpositionError(
                    f'TYPE line for "{name}" comes after its samples; it must come before the first '
                    "sample of the metric", lineno)
            fam.type = typ
            fam.type_line = lineno
        fam.declared = True
        return True

    def _prom_sample_careful(self, line: str, lineno: int, quoted_names: bool) -> Sample:
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
        else:
            name, labels, end = series_slow(line, start, lineno, self._intern, om=False,
                                                  quoted_names=quoted_names)
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
        return NEW_TUPLE(Sample, (name, labels, x, ts, None))

    # ─── OpenMetrics ───────────────────────────────────────────────────────────────────────

    def _parse_om(self, lines: list[str]) -> list[MetricFamily]:
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
        got = self._reuse(lines)
        prev_lines = self._prev_lines
        prev_got = self._prev_got
        careful = self._careful
        n_prev = len(prev_got)
        shift = 0
        values = self._values
        new = NEW_TUPLE
        S = Sample
        out: list[MetricFamily] = []
        seen_names: set[str] = set()
        fam: FamilyBuilder | None = None
        allowed: dict[str, str] = {}
        samples: list[Sample] = []
        for idx, s in enumerate(got):
            if s is None:
                line = lines[idx]
                if not line or line[0] == "#":
                    fam = self._om_meta(line, idx + 1, fam, out, seen_names)
                    allowed = fam.allowed
                    samples = fam.samples
                    continue
                # The inlined fast path of ``_parse_prom``.
                head, _, v = line.rpartition(" ")
                j = idx + shift         # never negative: shift = (a previous line) − (an earlier idx)
                if shift and j < n_prev and line == prev_lines[j]:
                    s = prev_got[j]                 # unchanged, moved by the lines added or removed
                    if j in careful:
                        self._next_careful.add(idx)
                elif j < n_prev:
                    p = prev_got[j]
                    if p is not None and p[3] is None and j not in careful:
                        pl = prev_lines[j]
                        if pl.rfind(" ") == len(head) and pl.startswith(head):
                            x = values.get(v)
                            if x is None:
                                x = self._value(v)
                            if x is not None:
                                s = new(S, (p[0], p[1], x, None, None))
                if s is None:
                    s = self._miss(line, idx, head, v, self._om_sample_careful, om_ts_ns)
                    shift = self._shift
                got[idx] = s
            if s[0] not in allowed:
                # A sample the current family does not own starts a family of type unknown.
                if fam is not None:
                    self._rules.finish(fam, seen_names)
                    out.append(fam.freeze())
                fam = FamilyBuilder(s[0], "unknown")
                fam.allowed = allowed = {s[0]: ""}
                samples = fam.samples
            if not samples:
                assert fam is not None
                fam.first_line = idx + 1
            samples.append(s)
        if fam is not None:
            self._rules.finish(fam, seen_names)
            out.append(fam.freeze())
        self._keep(lines, got)
        return out

    def _om_meta(self, line: str, lineno: int, fam: FamilyBuilder | None, out: list[MetricFamily],
                 seen_names: set[str]) -> FamilyBuilder:
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
                self._rules.finish(fam, seen_names)
                out.append(fam.freeze())
            fam = FamilyBuilder(name, "unknown")
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
        return fam

    def _om_sample_careful(self, line: str, lineno: int) -> Sample:
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
                exemplar = self._om_exemplar(line, len(line) - len(ex_text), lineno)
        return NEW_TUPLE(Sample, (name, labels, x, ts, exemplar))

    def _om_exemplar(self, line: str, i: int, lineno: int) -> Exemplar:
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



def parse_exposition(data: bytes | str, content_type: str | None = None) -> list[MetricFamily]:
    """Parse one exposition (bytes or str). Raises ``ExpositionError`` (with ``.line``) if invalid."""
    return ExpositionParser().parse(data, content_type)
