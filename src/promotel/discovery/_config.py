"""What the service-discovery config models share: Prometheus durations, paths, and problem reporting.

The SD models keep Prometheus's YAML keys, defaults and checks (a job can be pasted in). They are
frozen pydantic models that refuse unknown keys. Durations are Prometheus durations (``30s``,
``5m``, ``1h30m``; a bare number is refused, as Prometheus refuses it) and become seconds. Relative
file paths are relative to the config file's directory, taken from the validation context's
``base_dir`` as in :mod:`promotel.config.httpclient` (TLS and auth files).
"""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo

from promotel.discovery.relabel import parse_prometheus_duration

__all__ = ["ConfigPath", "PromDuration", "SDModel", "resolve_path", "sd_problems"]


class SDModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration(value: object) -> object:
    if isinstance(value, bool):
        return value  # pydantic reports the type
    if isinstance(value, int | float):
        value = str(value)  # Go's YAML decoder hands Prometheus the text: "30" is not a duration
    if isinstance(value, str):
        try:
            return parse_prometheus_duration(value)
        except ValueError as exc:
            raise ValueError(f"{exc} (a Prometheus duration such as 30s, 5m or 1h30m)") from None
    return value


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


PromDuration = Annotated[float, BeforeValidator(_duration), AfterValidator(_positive)]


def resolve_path(value: str, info: ValidationInfo) -> str:
    """A file named in the config: relative to the config file's directory (context ``base_dir``)."""
    base = info.context.get("base_dir") if isinstance(info.context, dict) else None
    if base and value and not os.path.isabs(value):
        return os.path.join(base, value)
    return value


ConfigPath = Annotated[str, AfterValidator(resolve_path)]


def sd_problems(exc: ValidationError, where: str) -> list[tuple[str, str]]:
    """``(path, message)`` pairs from a validation error of an SD model found at ``where``."""
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            message = "unknown key"
        elif kind == "missing":
            message = "is required"
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            message = f"expected a mapping (key: value), got {type(err['input']).__name__}"
        else:
            message = err["msg"].removeprefix("Value error, ")
        problems.append(((where + loc) if where else loc.removeprefix("."), message))
    return problems
