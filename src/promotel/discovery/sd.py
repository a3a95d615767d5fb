"""A scrape job's service-discovery keys together, and the discoverers they make.

:class:`SDConfigs` holds ``static_configs``, ``file_sd_configs``, ``dns_sd_configs`` and
``http_sd_configs`` with Prometheus's meaning (each list may be ``null``, as in Prometheus);
:meth:`SDConfigs.discoverers` makes one discoverer per entry, named by its place in the config
(``file_sd_configs[0]``; all ``static_configs`` entries form one, ``static_configs``), for a
:class:`promotel.discovery.targets.DiscoveryManager`. :func:`parse_sd_configs` validates the keys
of a YAML mapping and raises :class:`promotel.errors.ConfigError` with every problem at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from pydantic import ValidationError, field_validator

from promotel.discovery._config import SDModel, sd_problems
from promotel.discovery.dns_sd import DNSDiscoverer, DNSSDConfig
from promotel.discovery.file_sd import FileDiscoverer, FileSDConfig
from promotel.discovery.http_sd import HTTPDiscoverer, HTTPSDConfig
from promotel.discovery.kubernetes_sd import KubernetesDiscoverer, KubernetesSDConfig
from promotel.discovery.static_sd import StaticConfig, StaticDiscoverer
from promotel.discovery.targets import Discoverer
from promotel.errors import ConfigError

__all__ = ["SD_KEYS", "SDConfigs", "parse_sd_configs"]

SD_KEYS = ("static_configs", "file_sd_configs", "dns_sd_configs", "http_sd_configs", "kubernetes_sd_configs")


class SDConfigs(SDModel):
    static_configs: tuple[StaticConfig, ...] = ()
    file_sd_configs: tuple[FileSDConfig, ...] = ()
    dns_sd_configs: tuple[DNSSDConfig, ...] = ()
    http_sd_configs: tuple[HTTPSDConfig, ...] = ()
    kubernetes_sd_configs: tuple[KubernetesSDConfig, ...] = ()

    @field_validator(*SD_KEYS, mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return () if value is None else value

    def discoverers(self, *, dns_nameservers: Sequence[str] | None = None,
                    file_poll_interval: float = 1.0) -> tuple[Discoverer, ...]:
        """One discoverer per entry, in the order of SD_KEYS and of the entries. ``dns_nameservers``
        replaces the system resolver of DNS SD (see :class:`promotel.discovery.dns_sd.DNSDiscoverer`)."""
        out: list[Discoverer] = []
        if self.static_configs:
            out.append(StaticDiscoverer(self.static_configs))
        out += [FileDiscoverer(cfg, f"file_sd_configs[{i}]", poll_interval=file_poll_interval)
                for i, cfg in enumerate(self.file_sd_configs)]
        out += [DNSDiscoverer(cfg, f"dns_sd_configs[{i}]", nameservers=dns_nameservers)
                for i, cfg in enumerate(self.dns_sd_configs)]
        out += [HTTPDiscoverer(cfg, f"http_sd_configs[{i}]") for i, cfg in enumerate(self.http_sd_configs)]
        out += [KubernetesDiscoverer(cfg, f"kubernetes_sd_configs[{i}]")
                for i, cfg in enumerate(self.kubernetes_sd_configs)]
        return tuple(out)


def parse_sd_configs(data: Mapping[str, object], path: str = "", *, base_dir: str | os.PathLike[str] | None = None
                     ) -> SDConfigs:
    """The SD keys of ``data`` (other keys are ignored), validated. Relative file names are relative
    to ``base_dir`` (the config file's directory). Raises ConfigError whose problem paths start with
    ``path`` (``scrape_configs[0]``) and name the entry (``...file_sd_configs[1].files``)."""
    subset = {key: data[key] for key in SD_KEYS if key in data}
    context = {"base_dir": str(base_dir)} if base_dir is not None else None
    try:
        return SDConfigs.model_validate(subset, context=context)
    except ValidationError as exc:
        raise ConfigError(sd_problems(exc, path)) from None
