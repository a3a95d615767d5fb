"""YAML syntax errors in plain words: ``FILE:LINE:COLUMN: what is wrong and how to fix it``.

PyYAML reports where its scanner or parser stopped, in its own terms ("mapping values are not allowed
here", "expected <block end>, but found '-'"). Most such errors in a hand-written config are
indentation: a key indented deeper than its siblings reads as the continuation of the value above it, a
list item out of line with its list ends the mapping around it, a tab is not indentation at all. This
module recognises the common cases from the parser's problem and the text around the mark, names the
line to fix (not always the one where the parser stopped), and keeps the parser's own words at the end
as detail. Anything it does not recognise keeps the parser's text with the location.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import yaml

__all__ = ["explain_yaml_error"]

_FOUND = re.compile(r"expected <block end>, but found '(.*)'")
# What PyYAML found at the start of a line that ended the block it was in: an indentation problem.
_LINE_STARTS = ("-", "<block sequence start>", "<block mapping start>", "<scalar>")


class _Explained(NamedTuple):
    line: int          # 0-based, as PyYAML's marks
    column: int        # 0-based
    message: str


def explain_yaml_error(exc: yaml.YAMLError, text: str, source: str) -> str:
    """One line for a YAML error in ``text`` (read from ``source``): ``source:LINE:COLUMN: message
    (YAML parser: original words)``, lines and columns counted from 1 like editors do."""
    if isinstance(exc, yaml.reader.ReaderError):
        # A character YAML does not allow anywhere (a control character, invalid UTF-8): located by offset.
        before = text[:exc.position]
        line, column = before.count("\n"), exc.position - (before.rfind("\n") + 1)
        char = exc.character
        shown = f"U+{char:04X}" if isinstance(char, int) else repr(char)    # a code point, or an undecodable byte
        return (f"{source}:{line + 1}:{column + 1}: the character {shown} is not allowed in YAML: remove it "
                f"(YAML reader: {exc.reason})")
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f"{source}: invalid YAML: {' '.join(str(exc).split())}"
    lines = text.splitlines()
    # PyYAML's own order: what it was doing ("while parsing a block mapping"), then what went wrong.
    original = ", ".join(part for part in (exc.context, exc.problem) if part) or "syntax error"
    mark = exc.problem_mark
    explained = _explain(exc, lines) or _Explained(mark.line, mark.column, f"invalid YAML: {original}")
    detail = "" if explained.message.endswith(original) else f" (YAML parser: {original})"
    return f"{source}:{explained.line + 1}:{explained.column + 1}: {explained.message}{detail}"


# ─── reading the text around a mark ──────────────────────────────────────────────────────────


def _line(lines: list[str], index: int) -> str:
    return lines[index] if 0 <= index < len(lines) else ""


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _content_column(line: str) -> int:
    """Where a line's key or value starts, past its indentation and any ``- `` list markers."""
    i = _indent(line)
    while i < len(line) and line[i] == "-" and (i + 1 == len(line) or line[i + 1] == " "):
        i += 1
        while i < len(line) and line[i] == " ":
            i += 1
    return i


def _key(line: str) -> str:
    return line[_content_column(line):].split(":", 1)[0].strip()


def _previous(lines: list[str], index: int) -> int | None:
    """The nearest line above ``index`` that holds something (not blank, not only a comment)."""
    for i in range(min(index, len(lines)) - 1, -1, -1):
        stripped = lines[i].strip()
        if stripped and not stripped.startswith("#"):
            return i
    return None


def _previous_item(lines: list[str], index: int) -> int | None:
    """The nearest line above ``index`` that starts a list item (``- ``)."""
    for i in range(min(index, len(lines)) - 1, -1, -1):
        stripped = lines[i].lstrip(" ")
        if stripped == "-" or stripped.startswith("- "):
            return i
    return None


def _shown(line: str) -> str:
    text = line.strip()
    return text if len(text) <= 40 else text[:37] + "..."


# ─── the cases ───────────────────────────────────────────────────────────────────────────────


def _explain(exc: yaml.MarkedYAMLError, lines: list[str]) -> _Explained | None:
    problem = exc.problem or ""
    context = exc.context or ""
    mark = exc.problem_mark
    assert mark is not None
    here = _line(lines, mark.line)
    if problem.startswith("found character '\\t'"):
        return _Explained(mark.line, mark.column, "indentation: a tab character; YAML indents with spaces only, "
                                                  "replace the tab with spaces")
    if problem == "mapping values are not allowed here":
        return _mapping_value(lines, mark.line, mark.column)
    found = _FOUND.fullmatch(problem)
    if found and found.group(1) in ("]", "}"):
        return _Explained(mark.line, mark.column, f"a {found.group(1)!r} that closes nothing: remove it, or add "
                                                  "the bracket it should close")
    if found and found.group(1) in _LINE_STARTS and context.startswith("while parsing a block"):
        return _out_of_line(lines, mark.line, found.group(1), exc.context_mark)
    if problem == "could not find expected ':'" and exc.context_mark is not None:
        key_line = exc.context_mark.line
        return _Explained(key_line, _content_column(_line(lines, key_line)),
                          f"{_shown(_line(lines, key_line))!r} is not a 'key: value' pair: write a space after "
                          "the colon, or put the value in quotes if it is text that spans lines")
    if "while scanning a quoted scalar" in context and exc.context_mark is not None:
        start = exc.context_mark
        return _Explained(start.line, start.column, "this quoted value is never closed: add the closing quote "
                                                    f"({_line(lines, start.line)[start.column:start.column + 1]})")
    if context.startswith("while parsing a flow") and exc.context_mark is not None:
        start = exc.context_mark
        bracket = _line(lines, start.line)[start.column:start.column + 1] or "bracket"
        closing = {"[": "]", "{": "}"}.get(bracket, "the closing bracket")
        return _Explained(mark.line, mark.column,
                          f"the {bracket!r} opened on line {start.line + 1}, column {start.column + 1} is not closed: "
                          f"add {closing!r} where it ends, or separate its items with commas")
    if problem == "but found another document":
        return _Explained(mark.line, mark.column, "a second YAML document ('---') in the config file: a config is "
                                                  "one document, remove the '---' line or what follows it")
    if problem.startswith("found undefined alias"):
        name = here[mark.column:].split()[0] if here[mark.column:].strip() else "*"
        return _Explained(mark.line, mark.column, f"{name} refers to an anchor that is not defined; put the value "
                                                  "in quotes if the '*' is meant literally")
    reserved = re.fullmatch(r"found character '([@`%])' that cannot start any token", problem)
    if reserved:
        return _Explained(mark.line, mark.column, f"a value cannot start with {reserved.group(1)!r} (reserved in "
                                                  "YAML): put the value in quotes")
    if problem.startswith("could not determine a constructor for the tag"):
        return _Explained(mark.line, mark.column, "YAML tags ('!name') are not supported here: remove the tag, "
                                                  "or put the value in quotes")
    return None


def _mapping_value(lines: list[str], index: int, colon: int) -> _Explained:
    """A ``key:`` where the parser was inside a value: a key indented under a ``key: value`` line,
    a value holding ``': '``, or a previous line without the space after its colon."""
    line = _line(lines, index)
    start = _content_column(line)
    before = line[start:colon]
    if ": " in before:
        return _Explained(index, colon, "this value contains ': ', which starts a mapping in YAML: put the value "
                                        "in quotes (\"...\")")
    above = _previous(lines, index)
    if above is None:
        return _Explained(index, start, "invalid YAML: a 'key: value' where a value was expected")
    prev = _line(lines, above)
    prev_start = _content_column(prev)
    if start > prev_start and ": " in prev[prev_start:]:
        return _Explained(index, start,
                          f"indentation: {_key(line)!r} is indented more than {_key(prev)!r} on line {above + 1}, "
                          f"so it reads as the rest of that value; start it in column {prev_start + 1}, like "
                          f"{_key(prev)!r}")
    if ":" in prev and ": " not in prev and not prev.rstrip().endswith(":"):
        return _Explained(above, prev_start,
                          f"{_shown(prev)!r} needs a space after the colon ('key: value'); without it the line is "
                          f"text, and line {index + 1} reads as its continuation")
    return _Explained(index, start, "indentation: a 'key: value' where a value was expected: check that this "
                                    f"line lines up with the keys of its mapping (line {above + 1} above starts in "
                                    f"column {prev_start + 1}), or put the value in quotes if it contains ': '")


def _out_of_line(lines: list[str], index: int, token: str, block: yaml.Mark | None) -> _Explained:
    """``expected <block end>``: a line that lines up with neither the block it is in nor the one around it."""
    line = _line(lines, index)
    where = f" (the block that starts on line {block.line + 1}, column {block.column + 1})" if block else ""
    if token in ("-", "<block sequence start>"):
        dash = _indent(line)
        item = _previous_item(lines, index)
        if item is not None:
            item_dash = _indent(_line(lines, item))
            return _Explained(index, dash,
                              f"indentation: this list item's '-' is in column {dash + 1}, the item on line "
                              f"{item + 1} has it in column {item_dash + 1}; the items of one list start in the "
                              "same column, and a list that is a key's value goes under that key")
        return _Explained(index, dash, f"indentation: a list item ('- ') where a key was expected{where}; a list "
                                       "goes under a key that ends with ':'")
    start = _content_column(line)
    above = _previous(lines, index)
    if above is not None and token in ("<block mapping start>", "<scalar>"):
        prev = _line(lines, above)
        prev_start = _content_column(prev)
        if start != prev_start:
            return _Explained(index, start,
                              f"indentation: {_key(line)!r} starts in column {start + 1} but {_key(prev)!r} on line "
                              f"{above + 1} in column {prev_start + 1}; the keys of one mapping start in the same "
                              "column")
    return _Explained(index, start, f"indentation: this line does not line up with the lines above it{where}")
