"""``static_configs``: target groups written in the config, through the same model as the others.

Each entry is a Prometheus target group: ``targets`` (``host:port`` strings) and ``labels``. As in
Prometheus, a target containing ``/`` is refused when the config is loaded (``"a/b" is not a valid
hostname``; scheme and path belong in ``scheme`` and ``metrics_path``), label names are Prometheus
2.x's, and YAML scalars are taken as text (``port: 8080`` is ``"8080"``). All entries of a job form
one discoverer, ``static_configs``, whose groups have sources ``"0"``, ``"1"``, ... and never change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated

from pydantic import BeforeValidator, Field, field_validator

from promotel.discovery._config import SDModel
from promotel.discovery.relabel import is_valid_label_name
from promotel.discovery.targets import Refresh, TargetGroup

__all__ = ["StaticConfig", "StaticDiscoverer"]


def _text(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return ""  # Go's YAML decoder leaves a null string empty
    return value


Text = Annotated[str, BeforeValidator(_text)]


class StaticConfig(SDModel):
    targets: tuple[Text, ...] = ()
    labels: dict[str, Text] = Field(default_factory=dict)

    @field_validator("targets", mode="before")
    @classmethod
    def _null_targets(cls, value: object) -> object:
        return () if value is None else value

    @field_validator("labels", mode="before")
    @classmethod
    def _null_labels(cls, value: object) -> object:
        return {} if value is None else value

    @field_validator("targets")
    @classmethod
    def _hostnames(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for target in value:
            if "/" in target:
                raise ValueError(f'"{target}" is not a valid hostname: a target is host:port, without scheme or '
                                 "path (set those with scheme and metrics_path)")
        return value

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not is_valid_label_name(name)]
        if bad:
            raise ValueError("; ".join(f'"{name}" is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)' for name in bad))
        return value


class StaticDiscoverer:
    """The groups of a job's ``static_configs``; refreshing changes nothing."""

    mechanism = "static"
    refresh_interval = 3600.0

    def __init__(self, configs: Sequence[StaticConfig], name: str = "static_configs") -> None:
        self.name = name
        self._groups = tuple(TargetGroup.of(cfg.targets, cfg.labels, str(index)) for index, cfg in enumerate(configs))

    async def refresh(self) -> Refresh:
        return Refresh(self._groups)

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def aclose(self) -> None:
        return None
