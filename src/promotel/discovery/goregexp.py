"""Regular expressions as Prometheus (Go) has them: RE2 syntax, fully anchored, Go's ``Regexp.Expand`` for
``$1``/``${name}`` templates and Go's simple Unicode case mapping for ``lowercase``/``uppercase``.

Matching runs on RE2 itself (the ``google-re2`` binding), never on Python's ``re``, whose syntax and
matching differ; where RE2 accepts more than Go's regexp package, Go's rule is applied on top (``\\C`` is
refused, group names are ASCII). ``promotel.discovery.relabel`` builds on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final, Protocol

import re2

# --- regular expressions (RE2) ----------------------------------------------------------------------

class GoMatch(Protocol):
    def span(self, group: int = 0) -> tuple[int, int]: ...


class GoPattern(Protocol):
    def search(self, text: str) -> GoMatch | None: ...


@dataclass(frozen=True, slots=True, eq=False)
class GoRegex:
    """One compiled, anchored RE2 pattern plus what expansion needs (group count and names)."""

    source: str
    pattern: GoPattern
    groups: int
    names: Mapping[str, tuple[int, ...]]  # every group of a name, in order (Go allows a name twice)
    # What relabeling computed from this pattern, per use (``promotel.discovery.relabel``): a cache, not part of
    # the value. One pattern object serves every config with the same regex (``compile_anchored`` is cached).
    memo: dict[object, dict[str, Any]] = field(default_factory=dict, repr=False)


def _re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # the binding would print every invalid pattern to stderr
    return options


_OPTIONS: Final = _re2_options()


def re2_compile(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else str(exc)
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(str(reason)) from None


def _has_any_byte_escape(pattern: str) -> bool:
    """Whether ``pattern`` uses ``\\C`` outside a ``\\Q...\\E`` literal: RE2 accepts it, Go refuses it."""
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] != "\\":
            i += 1
            continue
        nxt = pattern[i + 1] if i + 1 < n else ""
        if nxt == "C":
            return True
        if nxt == "Q":  # literal text up to \E (or the end)
            end = pattern.find("\\E", i + 2)
            i = n if end < 0 else end + 2
            continue
        i += 2
    return False


def _group_names(pattern: str) -> list[str]:
    """The name of each capturing group of ``pattern`` in order ("" when unnamed), index 0 first.

    RE2's binding reports one group per name (the leftmost); Go's Expand takes the first group of the
    name that matched, so the names are read off the pattern: escapes, ``\\Q...\\E`` and character
    classes hold no groups; ``(?P<name>`` and ``(?<name>`` are named groups, other ``(?`` none."""
    names = [""]
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if not in_class and pattern.startswith("Q", i + 1):
                end = pattern.find("\\E", i + 2)
                i = n if end < 0 else end + 2
            else:
                i += 2
            continue
        if in_class:
            if pattern.startswith("[:", i) and pattern.find(":]", i + 2) >= 0:
                i = pattern.find(":]", i + 2) + 2  # [:alpha:]
                continue
            in_class = ch != "]"
            i += 1
            continue
        if ch == "[":
            in_class = True
            i += 2 if pattern.startswith("[^", i) else 1
            if pattern.startswith("]", i):  # a leading ] is literal
                i += 1
            continue
        if ch == "(":
            for opener in ("(?P<", "(?<"):
                if pattern.startswith(opener, i):
                    end = pattern.find(">", i)
                    names.append(pattern[i + len(opener):end])
                    break
            else:
                if not pattern.startswith("(?", i):
                    names.append("")
        i += 1
    return names


@lru_cache(maxsize=1024)
def compile_anchored(regex: str) -> GoRegex:
    """Compile a relabel ``regex`` as Prometheus does: ``^(?:regex)$``. Raises ValueError."""
    if _has_any_byte_escape(regex):
        raise ValueError("invalid escape sequence: `\\C` (Prometheus's Go regexp does not support it)")
    compiled = re2_compile("^(?:" + regex + ")$")
    leftmost: dict[str, int] = dict(compiled.groupindex)
    for name in leftmost:
        if not (name.isascii() and name.replace("_", "a").isalnum()):  # RE2 also takes Unicode letters; Go not
            raise ValueError(f"invalid named capture: `(?P<{name}>` (names are ASCII letters, digits and _)")
    groups = int(compiled.groups)
    scanned = _group_names(regex)
    names: dict[str, tuple[int, ...]] = {}
    for index, name in enumerate(scanned):
        if name:
            names[name] = (*names.get(name, ()), index)
    if len(scanned) != groups + 1 or {name: found[0] for name, found in names.items()} != leftmost:
        names = {name: (index,) for name, index in leftmost.items()}  # never expected: RE2's view is the safe one
    return GoRegex(source=regex, pattern=compiled, groups=groups, names=MappingProxyType(names))


# Prometheus's check for a templated target_label and for labelmap's replacement: letters, `_`,
# `$name` / `${name}` references and word characters.
RELABEL_TARGET: Final = re2_compile(r"^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$")


def is_valid_label_name(name: str) -> bool:
    """Prometheus 2.x's legacy label name: ``[a-zA-Z_][a-zA-Z0-9_]*``."""
    return (name != "" and name.isascii() and (name[0].isalpha() or name[0] == "_")
            and name.replace("_", "a").isalnum())


def _is_word_rune(ch: str) -> bool:
    # Go's Expand reads a reference name as letters (Unicode category L), decimal digits (Nd) and `_`.
    return ch == "_" or ch.isalpha() or ch.isdecimal()


def _reference(template: str, i: int) -> tuple[str, int, int] | None:
    """Parse the reference after a ``$`` at ``template[i-1]``: ``(name, number or -1, end)`` or None
    when it is malformed (then the ``$`` is literal). Mirrors Go's ``regexp`` template rules."""
    n = len(template)
    brace = i < n and template[i] == "{"
    k = start = i + 1 if brace else i
    while k < n and _is_word_rune(template[k]):
        k += 1
    if k == start:
        return None
    name = template[start:k]
    if brace:
        if k >= n or template[k] != "}":
            return None
        k += 1
    num = 0
    for ch in name:
        if not "0" <= ch <= "9" or num >= 100_000_000:  # Go gives up on numbers this large
            num = -1
            break
        num = num * 10 + ord(ch) - 48
    if name[0] == "0" and len(name) > 1:  # no leading zeros: `$01` is a (nonexistent) name
        num = -1
    return name, num, k


def expand(template: str, text: str, match: GoMatch, rx: GoRegex) -> str:
    """``template`` with its ``$`` references replaced by the groups of ``match`` (Go's Expand)."""
    if "$" not in template:
        return template
    out: list[str] = []
    i, n = 0, len(template)
    while True:
        j = template.find("$", i)
        if j < 0:
            out.append(template[i:])
            return "".join(out)
        out.append(template[i:j])
        i = j + 1
        if i < n and template[i] == "$":
            out.append("$")
            i += 1
            continue
        ref = _reference(template, i)
        if ref is None:
            out.append("$")
            continue
        name, num, i = ref
        for group in ((num,) if num <= rx.groups else ()) if num >= 0 else rx.names.get(name, ()):
            start, end = match.span(group)
            if start >= 0:  # the first group of that name (or number) that took part in the match
                out.append(text[start:end])
                break


# --- case mapping as Go's strings.ToLower / strings.ToUpper ----------------------------------------

@lru_cache(maxsize=4096)
def _lower_rune(ch: str) -> str:
    low = ch.lower()
    # Only U+0130 (İ) has a multi-character full lowercase ("i" + combining dot); its simple one is "i".
    return low if len(low) == 1 else low[0]


@lru_cache(maxsize=4096)
def _upper_rune(ch: str) -> str:
    up = ch.upper()
    if len(up) == 1:
        return up
    # A multi-character full uppercase (ß → SS, ᾀ → ἈΙ): the simple mapping is the single-character
    # titlecase where there is one (ᾀ → ᾈ), else the character itself (ß stays ß).
    title = ch.title()
    return title if len(title) == 1 else ch


def go_lower(s: str) -> str:
    return s.lower() if s.isascii() else "".join(map(_lower_rune, s))


def go_upper(s: str) -> str:
    return s.upper() if s.isascii() else "".join(map(_upper_rune, s))



__all__ = ["RELABEL_TARGET", "GoMatch", "GoPattern", "GoRegex", "compile_anchored", "expand", "go_lower", "go_upper",
           "is_valid_label_name", "re2_compile"]
