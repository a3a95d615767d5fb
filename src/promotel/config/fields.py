"""The building blocks every section of the configuration's model shares: the base model (unknown keys
are errors, values frozen) and the field types for durations, sizes, text and secrets.

Durations become floats in seconds and sizes ints in bytes (``promotel.config.units`` parses them), both
greater than zero; text fields take YAML's scalars as the text the user wrote; secret fields become
``promotel.config.secrets.Secret`` values that print as ``***``. The sections themselves are
``promotel.config.schema`` and, for the keys of an HTTP client, ``promotel.config.httpclient``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from promotel.config.secrets import Secret
from promotel.config.units import parse_duration, parse_size

__all__ = ["Duration", "SecretText", "Size", "Text"]


# The "before" validators below see raw YAML values (any type): they convert what they understand and
# hand anything else on unchanged for pydantic's own type error, hence ``object``.


def _duration(value: object) -> object:
    if isinstance(value, (str, int, float)):
        return parse_duration(value)
    return value


def _size(value: object) -> object:
    if isinstance(value, (str, int, float)):
        return parse_size(value)
    return value


def _scalar_to_str(value: object) -> object:
    """YAML turns ``port: 8080`` or ``enabled: yes`` into numbers and booleans; attribute and header
    values are strings, so scalars are taken as the text the user meant."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


def _to_secret(value: str) -> str:
    return Secret(value)


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


Duration = Annotated[float, BeforeValidator(_duration), AfterValidator(_positive)]
Size = Annotated[int, BeforeValidator(_size), AfterValidator(_positive)]
Text = Annotated[str, BeforeValidator(_scalar_to_str)]
SecretText = Annotated[str, BeforeValidator(_scalar_to_str), AfterValidator(_to_secret)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
