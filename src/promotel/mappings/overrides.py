"""Per-family overrides of a source (``overrides:`` in its config), checked before a mapper uses them.

An override comes either as the config's ``FamilyOverride`` model or as a plain mapping with the same keys
(``promotel map``, tests, plugins written for 0.1), so nothing about its values can be assumed:
``validate_override`` checks it field by field and gives an immutable ``Override``, or a ``MappingError``
that names the source, the family and the key. Applying an override to a row's metric and attributes is
the engine's (``promotel.mappings.table``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from promotel.errors import MappingError
from promotel.mappings import FamilyOverrideLike, OverrideSpec
from promotel.model import Attributes, AttrValue

__all__ = ["Override", "validate_override"]


class Override(NamedTuple):
    """A validated per-family override (from any object with FamilyOverride's fields)."""

    name: str | None = None
    unit: str | None = None
    scale: float | None = None
    description: str | None = None
    attributes: Attributes = ()
    drop_attributes: frozenset[str] = frozenset()
    rename_attributes: tuple[tuple[str, str], ...] = ()
    drop: bool = False


def _fields(obj: OverrideSpec) -> Mapping[str, object]:
    """The override's fields by name: a mapping as it is, an object (FamilyOverride) read member by member."""
    if isinstance(obj, Mapping):
        return obj
    spec: FamilyOverrideLike = obj
    return {"name": spec.name, "unit": spec.unit, "scale": spec.scale, "description": spec.description,
            "attributes": spec.attributes, "drop_attributes": spec.drop_attributes,
            "rename_attributes": spec.rename_attributes, "drop": spec.drop}


def validate_override(family: str, obj: OverrideSpec, source: str) -> Override:
    """Check one override field by field (a plain mapping carries any values) into an ``Override``."""
    where = f"source {source!r}, override for family {family!r}"
    fields = _fields(obj)
    name = fields.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise MappingError(f"{where}: 'name' must be a non-empty string; remove it to keep the mapped name")
    unit = fields.get("unit")
    if unit is not None and not isinstance(unit, str):
        raise MappingError(f"{where}: 'unit' must be a UCUM string such as 's', 'By' or '1'")
    scale = fields.get("scale")
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise MappingError(f"{where}: 'scale' must be a finite number greater than 0 (got {scale!r}); "
                               "e.g. 0.001 turns milliseconds into seconds")
        scale = float(scale)
    description = fields.get("description")
    if description is not None and not isinstance(description, str):
        raise MappingError(f"{where}: 'description' must be a string")
    attrs: list[tuple[str, AttrValue]] = []
    for k, v in _mapping(fields.get("attributes"), where, "attributes").items():
        if not isinstance(v, (str, int, float, bool)):
            raise MappingError(f"{where}: attribute {k!r} must be a string, number or boolean")
        attrs.append((str(k), v))
    drop_in = fields.get("drop_attributes") or ()
    if isinstance(drop_in, (str, bytes)) or not isinstance(drop_in, Iterable):
        raise MappingError(f"{where}: 'drop_attributes' must be a list of attribute keys")
    drop_attrs = frozenset(str(k) for k in drop_in)
    rename = tuple((str(k), str(v)) for k, v in _mapping(fields.get("rename_attributes"), where,
                                                          "rename_attributes").items())
    for old, new in rename:
        if not new:
            raise MappingError(f"{where}: rename_attributes maps {old!r} to an empty name")
    return Override(name=name, unit=unit, scale=scale, description=description, attributes=tuple(attrs),
                    drop_attributes=drop_attrs, rename_attributes=rename, drop=bool(fields.get("drop")))


def _mapping(value: object, where: str, key: str) -> Mapping[object, object]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MappingError(f"{where}: {key!r} must be a mapping (key: value)")
    return value
