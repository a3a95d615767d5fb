"""The re-scrape engine: what one target's previous scrape taught, and the scan of a new scrape that
reuses it (the fast path of the parser; see ``parser`` for the design).

A ``Rescrape`` keeps, from one scrape to the next, and nothing else per series (memory is the product's
limit at ~150k series per target):

* the previous scrape's text, and the ``Sample`` each of its lines became, so an unchanged line is one
  string comparison and shares the previous (immutable) ``Sample``, and a changed one is compared in
  place;
* which previous lines took the careful path in a shape whose series text the positional match cannot
  trust (anything after the value: a timestamp, trailing blanks, an exemplar); few;
* interned label names and values and metric names, so equal strings are stored once; the last pairs of
  series (``le="0.5"}``); a small value-text cache.

Label bodies, series prefixes and the index of the previous lines live for one parse only.

The scan is one loop for both formats: a format (``LineFormat``: ``prometheus.PrometheusText`` or
``openmetrics.OpenMetricsText``) handles the metadata lines, says which family a sample name belongs to,
and parses the lines the fast path does not take (its careful path, which also raises the errors). The
loop calls the format only for metadata lines, for a sample name other than the previous line's, and
for lines the fast path misses; everything else stays inline in the loop (a call per line would cost
~10 % of a steady-state parse).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from operator import itemgetter, methodcaller
from re import Pattern
from typing import Protocol

from promotel.exposition.tokens import (
    EMPTY_LABELS,
    METRIC_NAME_RE,
    NEW_TUPLE,
    PAIR_FULL_RE,
    PAIRS_RE,
    PROM_BODY_RE,
    SPECIALS,
    unescape,
)
from promotel.model import Labels, MetricFamily, Sample

__all__ = ["LineFormat", "Rescrape"]

# Value texts → floats: small, because only few repeat (0, 1, bucket counts of idle series); a
# larger cache filled up with one-off counter values and was no faster (measured on the Baseten bench).
_MAX_VALUE_TEXTS = 4096


class LineFormat(Protocol):
    """A format's side of one parse (a new one per parse: it holds the families being built)."""

    meta_start: str
    """The first characters of the lines ``meta`` must see (a blank line is always shown to it)."""
    body_re: Pattern[str]
    """The label body (between the braces, without them) of the fast-shape series."""
    timestamp: Callable[[str], int | None]
    """A timestamp token → nanoseconds, or None if it is none."""
    resolved: dict[str, list[Sample]]
    """sample name → its family's sample list, for the sample names seen since the last metadata line;
    the scan fills it from ``owner``; the format clears it when a name's family changes otherwise."""
    reparse: list[int]
    """Lines (0-based) whose sample the next scrape must parse again even if the line is unchanged: the
    careful path reported a leniency on them (``SCRAPE``), which a reused sample would not report."""

    def start(self, lines: list[str]) -> None:
        """Checks the end of the exposition and drops what follows its last sample or metadata line."""

    def meta(self, line: str, lineno: int) -> bool:
        """Handles a metadata, comment or blank line; False when the line is a sample after all."""

    def owner(self, name: str, lineno: int) -> list[Sample]:
        """The sample list of the family a sample named ``name`` on line ``lineno`` belongs to."""

    def careful(self, line: str, lineno: int) -> Sample:
        """The sample of a line the fast path did not take; raises ``ExpositionError`` if invalid."""

    def finish(self) -> list[MetricFamily]:
        """The families, once every line is in; raises for a family rule broken."""


class Rescrape:
    """One target's previous scrape and string tables, and the scan that reuses them."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._max_entries = max(0, max_entries)
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
        self._body_re = PROM_BODY_RE            # the format's, during a parse
        self._names: dict[str, str] = {}
        self._last_pairs: dict[str, tuple[str, str]] = {}
        self._strings: dict[str, str] = {}
        self._values: dict[str, float] = {}     # value text → float, only strictly valid ones

    def forget(self) -> None:
        """Forget the previous scrape (its lines were validated under another dialect's syntax)."""
        self._prev_text = ""
        self._prev_got = []
        self._careful = set()

    def parse(self, text: str, fmt: LineFormat) -> list[MetricFamily]:
        """Parse one scrape's ``text`` (LF line ends) in format ``fmt``, reusing the previous scrape's
        work; keeps ``text`` as the next parse's previous scrape. Raises ``ExpositionError``."""
        if len(self._strings) >= self._max_entries:
            self._strings = {}
        if len(self._names) >= self._max_entries:
            self._names = {}
        lines = text.split("\n")
        # The previous text is needed as lines for this parse only; its block is let go meanwhile.
        if self._prev_got:
            self._prev_lines = self._prev_text.split("\n")
        self._prev_text = ""
        self._shift = 0
        self._index = None
        self._body_re = fmt.body_re
        try:
            fmt.start(lines)
            self._scan(lines, fmt)
            families = fmt.finish()
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

    # ─── the scan ──────────────────────────────────────────────────────────────────────────────

    def _scan(self, lines: list[str], fmt: LineFormat) -> None:
        """Every line into its family (``fmt``'s), each sample line by the cheapest way that is exact:
        the previous scrape's sample for an unchanged line, its series and a new value for a line
        whose series text is the previous one's at that position, else ``_miss``."""
        got = self._reuse(lines)
        prev_lines = self._prev_lines
        prev_got = self._prev_got
        careful = self._careful
        n_prev = len(prev_got)
        shift = 0
        values = self._values
        new = NEW_TUPLE
        S = Sample
        meta_start = fmt.meta_start
        meta = fmt.meta
        owner = fmt.owner
        careful_path = fmt.careful
        timestamp = fmt.timestamp
        resolved = fmt.resolved
        last_name: str | None = None
        last_list: list[Sample] = []
        for idx, s in enumerate(got):
            if s is None:
                line = lines[idx]
                if (not line or line[0] in meta_start) and meta(line, idx + 1):
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
                    s = self._miss(line, idx, head, v, careful_path, timestamp)
                    shift = self._shift
                got[idx] = s
            # Into its family: the previous line's, most of the time.
            name = s[0]
            if name is not last_name:
                lst = resolved.get(name)
                if lst is None:
                    lst = resolved[name] = owner(name, idx + 1)
                last_name = name
                last_list = lst
            last_list.append(s)
        for i in fmt.reparse:
            got[i] = None
        self._keep(lines, got)

    # ─── caches ──────────────────────────────────────────────────────────────────────────────

    def intern(self, s: str) -> str:
        """The stored string equal to ``s`` (stored if new): equal label names and values, and
        metric names, are kept once per target."""
        strings = self._strings
        got = strings.get(s)
        if got is not None:
            return got
        if len(strings) >= self._max_entries:
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
        if len(lines) <= self._max_entries:
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
                known = self._names[head] = self.intern(head)
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
            got = (self.intern(k), self.intern(unescape(raw)))
            if len(pairs) >= self._max_entries:
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
            known = self._names[name] = self.intern(name)
        body = head[brace + 1:-1]
        bodies = self._bodies
        labels = bodies.get(body)
        if labels is None:
            if body and self._body_re.fullmatch(body) is None:
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
            if self._max_entries:
                bodies[body] = labels
                if len(pairs) > 1 and not body.endswith(","):
                    # The body and the series without the last pair, for siblings that differ there.
                    k, raw = pairs[-1]
                    cut = len(body) - (len(k) + len(raw) + 4)
                    short = bodies.setdefault(body[:cut], Labels.from_flat(flat[:-2]))
                    self._prefixes[head[:brace + 1 + cut]] = (known, short)
        return (known, labels)

    # ─── lines the inline match does not take ────────────────────────────────────────────────

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

    # ─── the previous scrape's lines ───────────────────────────────────────────────────────────

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
