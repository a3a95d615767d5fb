"""Config problems as users read them: ``(path, message)`` pairs from pydantic's errors and from the
exporters' presets.

Paths look like ``sources[1].interval`` or ``exporters[0].headers['x-key']``; messages say what was
expected and, for an unknown key, which key was probably meant.
"""

from __future__ import annotations

import difflib
import re
import types
from typing import Annotated, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from promotel.config.schema import Config, ExporterConfig

__all__ = ["dedupe", "format_loc", "kind_of", "preset_problems_of", "problems_from", "self_telemetry_problems"]

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


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def preset_problems_of(raw_exporters: object, cfg: Config | None, known: list[tuple[str, str]],
                       base_dir: str | None) -> list[tuple[str, str]]:
    """The preset problems of every exporter (``promotel.export.presets``), so that one report holds the
    schema's problems and the presets' together.

    With a valid ``cfg`` its exporters are checked; otherwise each raw exporter entry that has no problem
    of its own in ``known`` is validated alone and checked (an entry with schema problems is left to those:
    its preset rules would only repeat them).
    """
    # The presets own their rules; export imports config, so this import waits until it is needed.
    from promotel.export.presets import preset_problems

    exporters: list[tuple[int, ExporterConfig]] = []
    if cfg is not None:
        exporters = list(enumerate(cfg.exporters))
    elif isinstance(raw_exporters, list):
        for i, raw in enumerate(raw_exporters):
            if any(_under(path, f"exporters[{i}]") for path, _ in known):
                continue
            try:
                exporters.append((i, ExporterConfig.model_validate(raw, context={"base_dir": base_dir})))
            except ValidationError:
                continue
    found: list[tuple[str, str]] = []
    for i, exporter in exporters:
        found += preset_problems(exporter, i)
    return found


def self_telemetry_problems(raw: object, known: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Problems of ``self_telemetry.endpoint`` resolved as an otlp exporter's endpoint is (an OTLP/HTTP one
    without http:// or https://, a gRPC one with a path), unless it already has problems of its own."""
    from promotel.errors import ConfigError
    from promotel.export.presets import resolve_exporter

    endpoint = raw.get("endpoint") if isinstance(raw, dict) else None
    if not isinstance(endpoint, str) or any(_under(path, "self_telemetry") for path, _ in known):
        return []
    try:
        resolve_exporter(ExporterConfig(name="self_telemetry", endpoint=endpoint), env={})
    except ValidationError:
        return []      # the field's own validation reports it
    except ConfigError as exc:
        return [("self_telemetry.endpoint", message) for _, message in exc.problems]
    return []
