"""Config problems as users read them: ``(path, message)`` pairs from pydantic's errors.

Paths look like ``sources[1].interval`` or ``exporters[0].headers['x-key']``; messages say what was
expected and, for an unknown key, which key was probably meant.
"""

from __future__ import annotations

import difflib
import re
import types
from typing import Annotated, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from promotel.config.schema import Config

__all__ = ["dedupe", "format_loc", "kind_of", "problems_from"]

# A location from the top of the config: list indices and mapping keys (YAML keys may be any scalar).
Loc = tuple[object, ...]


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-/]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{str(part)!r}]"
    return out


def _unwrap(tp: object) -> list[object]:
    """The concrete types inside Annotated/Optional/Union."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _unwrap(get_args(tp)[0])
    if origin is Union or isinstance(tp, types.UnionType):
        out: list[object] = []
        for arg in get_args(tp):
            out.extend(_unwrap(arg))
        return out
    return [tp]


def _fields_at(loc: Loc) -> list[str]:
    """Field names of the model found at ``loc`` (for "did you mean" hints)."""
    current: list[object] = [Config]
    for part in loc:
        nxt: list[object] = []
        for tp in current:
            origin = get_origin(tp)
            if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
                field = tp.model_fields.get(part)
                if field is not None:
                    nxt.extend(_unwrap(field.annotation))
            elif origin is list and isinstance(part, int):
                nxt.extend(_unwrap(get_args(tp)[0]))
            elif origin is dict:
                nxt.extend(_unwrap(get_args(tp)[1]))
        current = nxt
    names: list[str] = []
    for tp in current:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            names.extend(tp.model_fields)
    return names


def kind_of(value: object) -> str:
    """What a raw YAML value is, in words."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def problems_from(exc: ValidationError) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        value = err.get("input")
        if kind == "extra_forbidden":
            key = str(loc[-1])
            known = _fields_at(loc[:-1])
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            if close:
                message = f"unknown key {key!r} (did you mean {close[0]!r}?)"
            else:
                message = f"unknown key {key!r}; valid keys here: {', '.join(sorted(known))}"
        elif kind == "missing":
            message = "is required"
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            message = f"expected a mapping (key: value), got {kind_of(value)}"
        elif kind == "list_type":
            message = f"expected a list, got {kind_of(value)}"
        elif kind == "literal_error":
            expected = (err.get("ctx") or {}).get("expected", "")
            message = f"expected one of {expected}, got {value!r}"
        elif kind == "too_short" and loc == ("exporters",):
            message = "at least one exporter is required"
        else:
            message = err["msg"]
            for prefix in ("Value error, ", "Assertion failed, "):
                message = message.removeprefix(prefix)
        if kind == "value_error" and loc == () and ": " in message:
            # Config-level checks (unique names) carry their own "path: message" parts.
            for part in message.split("\n"):
                path, _, msg = part.partition(": ")
                problems.append((path, msg))
            continue
        problems.append((format_loc(loc), message))
    return problems


def dedupe(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(problems))
