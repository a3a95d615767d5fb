"""The lexical layer shared by both formats: token patterns, values, timestamps, escapes, decoding, dialect
detection, and the tokenizing of series (metric name and label set) for the careful path.

Everything here is a pure function of its arguments (the label tokenizers take the caller's ``intern``, so
equal strings are stored once per target); the parsers built on it are in ``prometheus``, ``openmetrics``
and ``rescrape``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import NamedTuple

from promotel.errors import ExpositionError
from promotel.model import Labels

__all__ = [
    "BLANKS_RE",
    "EMPTY_LABELS",
    "METRIC_NAME_RE",
    "NEW_TUPLE",
    "OM_BODY_RE",
    "OM_SERIES_RE",
    "OPENMETRICS",
    "PAIRS_RE",
    "PAIR_FULL_RE",
    "PROMETHEUS",
    "PROM_BODY_RE",
    "PROM_SERIES_RE",
    "QUOTED_BODY_RE",
    "SPECIALS",
    "Dialect",
    "Intern",
    "Series",
    "clip",
    "decode",
    "detect_dialect",
    "detect_format",
    "label_pairs",
    "labels_from_pairs",
    "num",
    "om_ts_ns",
    "parse_value",
    "prom_ts_ns",
    "quoted_string",
    "series_slow",
    "show",
    "unescape",
    "unescape_prom_help",
]

OPENMETRICS = "openmetrics"
PROMETHEUS = "prometheus"

METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# The body of a quoted string, without its quotes. Possessive repeats keep this linear and
# free of backtracking state on a 10 MB value.
_QUOTED_BODY = r'[^"\\]*+(?:\\.[^"\\]*+)*+'
QUOTED_BODY_RE = re.compile(_QUOTED_BODY, re.DOTALL)
_PAIR = r'[a-zA-Z_][a-zA-Z0-9_]*="' + _QUOTED_BODY + '"'
# The common series shapes, matched in one call: name, optional {pairs} with no blanks.
OM_SERIES_RE = re.compile(
    r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:" + _PAIR + r"(?:," + _PAIR + r")*+)?)\})?", re.DOTALL)
PROM_SERIES_RE = re.compile(
    r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:" + _PAIR + r"(?:," + _PAIR + r")*+,?)?)\})?", re.DOTALL)
PAIRS_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="(' + _QUOTED_BODY + ')"', re.DOTALL)
PAIR_FULL_RE = PAIRS_RE    # used with fullmatch on one "name=\"value\"" pair
OM_BODY_RE = re.compile(_PAIR + r"(?:," + _PAIR + r")*+", re.DOTALL)
PROM_BODY_RE = re.compile(_PAIR + r"(?:," + _PAIR + r")*+,?", re.DOTALL)
BLANKS_RE = re.compile(r"[ \t]+")       # Prometheus text separates tokens by blanks and tabs only
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
_FLOAT_RE = re.compile(
    r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:[iI][nN][fF](?:[iI][nN][iI][tT][yY])?)"
    r"|[nN][aA][nN]")
_OM_TS_RE = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?")
# Spellings of the non-finite values both formats accept (Go's ParseFloat; OpenMetrics' ABNF is
# case-insensitive). Python's float() also takes "+nan"/"-nan", which neither format allows.
SPECIALS = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity", "nan"})

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# ``NEW_TUPLE(Sample, (...))`` builds a Sample without the Python-level ``__new__`` of NamedTuple:
# the hot paths build ~10⁵ of them per scrape.
NEW_TUPLE = tuple.__new__
EMPTY_LABELS = Labels.from_flat(())

Intern = Callable[[str], str]
"""A target's string table: returns the stored string equal to its argument (storing it if new)."""


# ─── messages ────────────────────────────────────────────────────────────────────────────────


def show(text: str, pos: int) -> str:
    """How an error message names the token at ``pos``: the character, or the end of the line."""
    if pos >= len(text):
        return "the end of the line"
    ch = text[pos]
    if ch == "'":
        return '"\'"'
    if ch.isprintable():
        return f"'{ch}'"
    return repr(ch)


def clip(text: str, limit: int = 40) -> str:
    """A token for a message: at most ``limit`` characters, control characters escaped."""
    short = text if len(text) <= limit else text[:limit] + "…"
    return short if short.isprintable() else repr(short)[1:-1]


def num(x: float) -> str:
    """A value as the formats spell it, for messages."""
    if math.isnan(x):
        return "NaN"
    if x - x != 0.0:
        return "+Inf" if x > 0 else "-Inf"
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


# ─── escapes, values, timestamps ─────────────────────────────────────────────────────────────


def unescape(raw: str) -> str:
    """Label values, quoted names and OpenMetrics HELP: ``\\\\``, ``\\"``, ``\\n``; other
    backslashes stay as they are (the conformance suite and Prometheus' scraper agree on this)."""
    if "\\" not in raw:
        return raw
    return _ESCAPE_RE.sub(_unescape_one, raw)


def _unescape_one(m: re.Match[str]) -> str:
    ch = m.group(1)
    if ch == "n":
        return "\n"
    if ch == "\\" or ch == '"':
        return ch
    return m.group(0)


def unescape_prom_help(raw: str) -> str:
    """Prometheus text HELP escapes only ``\\\\`` and ``\\n``."""
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i = 0
    n = len(raw)
    while i < n:
        j = raw.find("\\", i)
        if j < 0 or j == n - 1:
            out.append(raw[i:])
            break
        out.append(raw[i:j])
        ch = raw[j + 1]
        out.append("\n" if ch == "n" else "\\" if ch == "\\" else raw[j:j + 2])
        i = j + 2
    return "".join(out)


def parse_value(tok: str) -> float | None:
    """A sample value as both formats spell it, or None. Never via float() alone: it also takes
    ``1_0``, surrounding whitespace, non-ASCII digits and ``+nan``. (The hot path's equivalent,
    with cheaper checks, is ``Rescrape._value``.)"""
    if _FLOAT_RE.fullmatch(tok) is None:
        return None
    return float(tok)


def prom_ts_ns(tok: str) -> int | None:
    """Prometheus text timestamp: an int64 of milliseconds (Go's ParseInt, base 10)."""
    body = tok[1:] if tok[:1] in ("+", "-") else tok
    if not body or len(body) > 19 or not (body.isascii() and body.isdigit()):
        return None
    ms = int(tok)
    if ms < _INT64_MIN or ms > _INT64_MAX:
        return None
    return ms * 1_000_000


def om_ts_ns(tok: str) -> int | None:
    """OpenMetrics timestamp: decimal seconds (fraction and exponent allowed) → exact integer ns,
    truncated toward zero. Integer arithmetic on the digits, never a binary float."""
    m = _OM_TS_RE.fullmatch(tok)
    if m is None:
        return None
    sign, ip, fp, ex = m.groups()
    fp = fp or ""
    if not ip and not fp:
        return None
    if ex is not None and len(ex.lstrip("+-").lstrip("0")) > 4:
        return None                      # an exponent beyond ±9999 is no timestamp
    digits = (ip + fp).lstrip("0") or "0"
    if len(digits) > 60:
        return None
    scale = 9 - len(fp) + (int(ex) if ex else 0)
    mant = int(digits)
    if scale >= 0:
        if mant and len(digits) + scale > 80:
            return None
        ns = mant * int(10**scale)
    else:
        ns = 0 if -scale > len(digits) else mant // int(10 ** (-scale))
    return -ns if sign == "-" else ns


# ─── format detection and decoding ───────────────────────────────────────────────────────────


class Dialect(NamedTuple):
    """The format of an exposition, and whether it has quoted (UTF-8) metric and label names as its
    Content-Type declares it: ``{"metric.name","label.name"="v"}``, ``# TYPE "metric.name" counter``."""

    om: bool
    quoted_names: bool


def detect_dialect(content_type: str | None, text: str) -> Dialect:
    """The dialect of an exposition from its Content-Type, else from its text (``detect_format``).

    Quoted names: Prometheus text from version 1.0.0 on (a missing version means the newest), whatever its
    ``escaping`` (the names only need quoting with ``allow-utf-8``); OpenMetrics when the Content-Type says
    ``escaping=allow-utf-8`` (what Prometheus 3 and promotel ask for; OpenMetrics 1.0 itself has no quoted
    names, and an exporter answering with another scheme, or none, writes legacy names). Without a
    Content-Type: Prometheus text yes (the newest version), OpenMetrics no."""
    if content_type:
        parts = [p.strip() for p in content_type.split(";")]
        media = parts[0].lower()
        params = {}
        for p in parts[1:]:
            k, _, v = p.partition("=")
            params[k.strip().lower()] = v.strip().strip('"')
        if media == "application/openmetrics-text":
            return Dialect(True, params.get("escaping", "").lower() == "allow-utf-8")
        if media == "text/plain":
            # A missing version means the newest text format (1.0.0), which allows quoted names.
            return Dialect(False, not params.get("version", "").startswith("0."))
    if _ends_with_eof(text):
        return Dialect(True, False)
    return Dialect(False, True)


def _ends_with_eof(text: str) -> bool:
    end = len(text)
    if text.endswith("\n"):
        end -= 1
        if text.endswith("\r\n"):
            end -= 1
    start = text.rfind("\n", 0, end) + 1
    return text[start:end] == "# EOF"


def detect_format(content_type: str | None, text: str) -> str:
    """``"openmetrics"`` or ``"prometheus"``: from the content type when it names a text format,
    else OpenMetrics when the last line is ``# EOF``."""
    return OPENMETRICS if detect_dialect(content_type, text).om else PROMETHEUS


def decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ExpositionError(
            f"invalid UTF-8 (byte 0x{data[exc.start]:02x} at column {col}); expositions must be "
            "UTF-8 encoded", line) from exc


# ─── series tokenizing (the careful path of both formats) ────────────────────────────────────


class Series(NamedTuple):
    """A series tokenized by ``series_slow``: the metric name (not interned), the labels, the index after the
    series, and the first quoted (UTF-8) name in it, as a message names it (``label name "a.b"``), or ``""``."""

    name: str
    labels: Labels
    end: int
    quoted: str


def _skip_blanks(line: str, i: int, blanks: bool) -> int:
    """Prometheus text allows blanks and tabs between tokens; OpenMetrics does not."""
    if blanks:
        n = len(line)
        while i < n and line[i] in " \t":
            i += 1
    return i


def quoted_string(line: str, i: int, what: str, lineno: int) -> tuple[str, int]:
    """The quoted string opening at ``line[i]`` (unescaped) and the index after its closing quote."""
    m = QUOTED_BODY_RE.match(line, i + 1)
    end = m.end() if m else i + 1
    if end >= len(line) or line[end] != '"':
        raise ExpositionError(f"unterminated {what}: missing the closing '\"'", lineno)
    return unescape(line[i + 1:end]), end + 1


def labels_from_pairs(pairs: list[tuple[str, str]], lineno: int, intern: Intern) -> Labels:
    """The ``Labels`` of the (name, raw value) pairs a series pattern matched; raises for a label
    named twice or ``__name__``."""
    flat: list[str] = []
    for k, raw in pairs:
        flat.append(intern(k))
        flat.append(intern(unescape(raw) if "\\" in raw else raw))
    names = flat[0::2]
    if len(set(names)) != len(names):
        seen: set[str] = set()
        for k in names:
            if k in seen:
                raise ExpositionError(f'label "{k}" appears twice in one sample', lineno)
            seen.add(k)
    if "__name__" in names:
        raise ExpositionError(
            'label name "__name__" is reserved for the metric name; rename the label', lineno)
    return Labels.from_flat(tuple(flat))


def series_slow(line: str, pos: int, lineno: int, intern: Intern, *, om: bool) -> Series:
    """Char-level tokenizer for series the regular expressions did not take: unusual but valid
    spellings (blanks, quoted names) or errors, for which it names the offending token.

    Quoted (UTF-8) names are read as Prometheus 3 reads them in both formats (model/textparse, promparse.go
    and openmetricsparse.go): a quoted label name before ``=``, and a quoted string alone in the braces (followed
    by ``,`` or ``}``) as the metric name, once, and only when no name comes before the braces. Whether the
    format, as the Content-Type declares it, has quoted names is the caller's decision (``Series.quoted``)."""
    n = len(line)
    blanks = not om
    pairs: list[str] = []
    quoted: list[str] = []
    name: str | None
    if pos < n and line[pos] == "{":
        i, name = label_pairs(line, _skip_blanks(line, pos + 1, blanks), lineno, om, pairs, quoted)
        if name is None:
            raise ExpositionError(
                "expected a metric name: a series that starts with '{' names its metric in the braces, quoted "
                "(UTF-8 syntax: '{\"metric.name\",label=\"value\"}')", lineno)
    else:
        m = METRIC_NAME_RE.match(line, pos)
        if m is None:
            raise ExpositionError(
                f"expected a metric name at the start of the line, found {show(line, pos)}", lineno)
        name = m.group(0)
        i = m.end()
        j = _skip_blanks(line, i, blanks)
        if j < n and line[j] == "{":
            i, _ = label_pairs(line, _skip_blanks(line, j + 1, blanks), lineno, om, pairs, quoted, name=name)
        elif i < n and line[i] not in " \t":
            raise ExpositionError(
                f'invalid character {show(line, i)} in metric name "{clip(name)}"', lineno)
    flat = tuple(intern(s) for s in pairs)
    names = flat[0::2]
    seen: set[str] = set()
    for k in names:
        if k in seen:
            raise ExpositionError(f'label "{k}" appears twice in one sample', lineno)
        seen.add(k)
    if "__name__" in seen:
        raise ExpositionError(
            'label name "__name__" is reserved for the metric name; rename the label', lineno)
    return Series(name, Labels.from_flat(flat), i, quoted[0] if quoted else "")


def label_pairs(line: str, i: int, lineno: int, om: bool, out: list[str], quoted: list[str], *,
                name: str | None = None, exemplar: bool = False) -> tuple[int, str | None]:
    """Parses ``name="value", …}`` from ``i`` (just after '{') into ``out`` (name, value, name, …); returns
    the index after '}' and the metric name: ``name`` (the one before the braces), or the quoted string that
    stands alone in the braces. Label names may be quoted (``"a.b"="v"``); every quoted name is added to
    ``quoted`` as a message names it. An ``exemplar``'s braces hold label pairs only. A trailing comma is
    allowed in Prometheus text only (OpenMetrics 1.0's conformance suite refuses it)."""
    n = len(line)
    blanks = not om
    after_comma = False
    while True:
        if i >= n:
            raise ExpositionError("unterminated label set: missing '}'", lineno)
        ch = line[i]
        if ch == "}":
            if after_comma and om:
                raise ExpositionError("unexpected '}' after ','; remove the trailing comma", lineno)
            return i + 1, name
        if ch == '"':
            text, j = quoted_string(line, i, "quoted name", lineno)
            k = _skip_blanks(line, j, blanks)
            if k < n and line[k] in ",}":
                # A quoted string without '=': the metric name (UTF-8 syntax).
                if exemplar:
                    raise ExpositionError(
                        f'quoted name "{clip(text)}" without a value in the exemplar; exemplar labels are '
                        "name=\"value\" pairs", lineno)
                if name is not None:
                    raise ExpositionError(
                        f'second metric name "{clip(text)}" in the braces: the series is named "{clip(name)}" '
                        "already", lineno)
                if not text:
                    raise ExpositionError("empty quoted metric name; a metric name cannot be empty", lineno)
                name = text
                quoted.append(f'metric name "{clip(text)}"')
                what = "the quoted metric name"
                i = k
            else:
                if not text:
                    raise ExpositionError("empty quoted label name; a label name cannot be empty", lineno)
                quoted.append(f'label name "{clip(text)}"')
                i = _label_value(line, j, lineno, blanks, text, out)
                what = f'the value of label "{clip(text)}"'
        else:
            m = _LABEL_NAME_RE.match(line, i)
            if m is None:
                if ch == ",":
                    raise ExpositionError("unexpected ',' in the label set; expected a label name", lineno)
                raise ExpositionError(f"expected a label name, found {show(line, i)}", lineno)
            lname = m.group(0)
            i = _label_value(line, m.end(), lineno, blanks, lname, out)
            what = f'the value of label "{clip(lname)}"'
        after_comma = False
        i = _skip_blanks(line, i, blanks)
        if i < n and line[i] == ",":
            i = _skip_blanks(line, i + 1, blanks)
            after_comma = True
            continue
        if i < n and line[i] == "}":
            return i + 1, name
        raise ExpositionError(f"expected ',' or '}}' after {what}, found {show(line, i)}", lineno)


def _label_value(line: str, i: int, lineno: int, blanks: bool, lname: str, out: list[str]) -> int:
    """``="value"`` after the label name ``lname`` (``i`` just after the name): appends the pair to ``out``,
    returns the index after the closing quote."""
    n = len(line)
    i = _skip_blanks(line, i, blanks)
    if i >= n or line[i] != "=":
        raise ExpositionError(
            f'expected \'=\' after label name "{clip(lname)}", found {show(line, i)}', lineno)
    i = _skip_blanks(line, i + 1, blanks)
    if i >= n or line[i] != '"':
        raise ExpositionError(
            f'expected \'"\' to open the value of label "{clip(lname)}", found {show(line, i)}', lineno)
    value, i = quoted_string(line, i, f'value of label "{clip(lname)}"', lineno)
    out.append(lname)
    out.append(value)
    return i
