"""Kubernetes's label and field selector syntax, checked as apimachinery checks it.

``selectors`` of a ``kubernetes_sd_configs`` entry are passed to the API as ``labelSelector`` and
``fieldSelector``; :func:`parse_label_selector` (``labels.Parse``) and :func:`parse_field_selector`
(``fields.ParseSelector``) refuse at config time what the API server would refuse at every list, in
the words Prometheus uses. Which fields a resource supports is left to the API server.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["parse_field_selector", "parse_label_selector"]

_NAME_RE: Final = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS1123_SUBDOMAIN_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE_RE: Final = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_INTEGER_RE: Final = re.compile(r"[+-]?[0-9]+")
_SELECTOR_SYMBOLS: Final = ("!=", "==", "=", "!", ",", "(", ")", "<", ">")


def _check_label_key(key: str) -> None:
    """apimachinery's IsQualifiedName: ``[prefix/]name``."""
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            raise ValueError(f"{key!r}: prefix part must be non-empty")
        if len(prefix) > 253 or not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
            raise ValueError(f"{key!r}: prefix part must be a lowercase RFC 1123 subdomain")
    else:
        raise ValueError(f"{key!r}: a qualified name must consist of alphanumeric characters, '-', '_' or '.', "
                         "with an optional DNS subdomain prefix and '/'")
    if not name:
        raise ValueError(f"{key!r}: name part must be non-empty")
    if len(name) > 63:
        raise ValueError(f"{key!r}: name part must be no more than 63 characters")
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"{key!r}: name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                         "start and end with an alphanumeric character")


def _check_label_value(value: str) -> None:
    if len(value) > 63:
        raise ValueError(f"{value!r}: a label value must be no more than 63 characters")
    if not _LABEL_VALUE_RE.fullmatch(value):
        raise ValueError(f"{value!r}: a label value must be empty or consist of alphanumeric characters, '-', '_' "
                         "or '.', and must start and end with an alphanumeric character")


def _label_tokens(text: str) -> list[str]:
    """The lexer of apimachinery's label selector: symbols, and identifiers (runs of anything else
    that is not whitespace)."""
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
            continue
        symbol = next((s for s in _SELECTOR_SYMBOLS if text.startswith(s, i)), None)
        if symbol is not None:
            tokens.append(symbol)
            i += len(symbol)
            continue
        start = i
        while i < n and text[i] not in " \t\r\n" and not any(text.startswith(s, i) for s in _SELECTOR_SYMBOLS):
            i += 1
        tokens.append(text[start:i])
    return tokens


def parse_label_selector(text: str) -> None:
    """Check ``text`` as apimachinery's ``labels.Parse`` does; raises ValueError saying what is wrong.

    Requirements are separated by commas: ``key``, ``!key``, ``key=value``, ``key==value``,
    ``key!=value``, ``key in (v1,v2)``, ``key notin (v1,v2)``, ``key>1``, ``key<1``. Keys are qualified
    names (``example.com/name``), values label values; ``""`` selects everything."""
    tokens = _label_tokens(text)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def identifier(what: str) -> str:
        nonlocal pos
        token = peek()
        if token is None or token in _SELECTOR_SYMBOLS:
            raise ValueError(f"found {'end of string' if token is None else repr(token)}, expected: {what}")
        pos += 1
        return token

    if not tokens:
        return
    while True:
        if peek() == "!":
            pos += 1
            _check_label_key(identifier("identifier after '!'"))
        else:
            key = identifier("!, identifier, or 'end of string'")
            _check_label_key(key)
            op = peek()
            if op in ("=", "==", "!="):
                pos += 1
                value = peek()
                if value is None or value == ",":
                    value = ""
                else:
                    value = identifier("identifier (a label value)")
                _check_label_value(value)
            elif op in ("<", ">"):
                pos += 1
                value = identifier("an integer")
                if not _INTEGER_RE.fullmatch(value):
                    raise ValueError(f"for 'Gt', 'Lt' operators, the value must be an integer, got {value!r}")
            elif op in ("in", "notin"):
                pos += 1
                if peek() != "(":
                    raise ValueError(f"found {peek()!r}, expected: '('")
                pos += 1
                while peek() != ")":
                    token = peek()
                    if token is None:
                        raise ValueError("found end of string, expected: ')'")
                    if token == ",":
                        pos += 1
                        continue
                    _check_label_value(identifier("identifier (a label value)"))
                pos += 1
            elif op is not None and op != ",":
                raise ValueError(f"found {op!r}, expected: in, notin, =, ==, !=, gt, lt")
        token = peek()
        if token is None:
            return
        if token != ",":
            raise ValueError(f"found {token!r}, expected: ',' or 'end of string'")
        pos += 1
        if peek() is None:
            raise ValueError("found 'end of string', expected: identifier after ','")


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, escaped = [], "", False
    for ch in text:
        if escaped:
            current += "\\" + ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current + ("\\" if escaped else ""))
    return parts


def parse_field_selector(text: str) -> None:
    """Check ``text`` as apimachinery's ``fields.ParseSelector`` does; raises ValueError.

    Terms are separated by unescaped commas, each ``field=value``, ``field==value`` or ``field!=value``;
    in values ``\\\\``, ``\\,`` and ``\\=`` are the only escapes. Which fields a resource supports is the
    API server's to say."""
    for term in _split_unescaped(text, ","):
        if term == "":
            continue
        for i in range(len(term)):
            op = next((o for o in ("!=", "==", "=") if term.startswith(o, i)), None)
            if op is not None:
                value = term[i + len(op):]
                break
        else:
            raise ValueError(f"invalid selector: '{text}'; can't understand '{term}'")
        j = 0
        while j < len(value):
            ch = value[j]
            if ch == "\\":
                if j + 1 >= len(value) or value[j + 1] not in "\\,=":
                    raise ValueError(f"invalid field selector value {value!r}: invalid escape sequence")
                j += 2
                continue
            if ch in ",=":
                raise ValueError(f"invalid field selector value {value!r}: unescaped {ch!r} must be escaped")
            j += 1
