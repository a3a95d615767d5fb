"""Where a source's targets come from: its target keys as the config model validates them.

A source names its targets in exactly one of two ways: ``url`` (one target), or Prometheus's discovery keys
(``static_configs``, ``file_sd_configs``, …) with the scrape-config keys that build each discovered target's
URL (``scheme``, ``metrics_path``, ``params``); ``relabel_configs`` then apply to either. The keys
themselves are fields of ``promotel.config.schema.SourceConfig`` (their sub-models are the discovery
package's); this module holds their field types, the rules that span several of them, and the url check
that runs the url's one target through ``relabel_configs`` at load time. How a validated source becomes
its targets is ``promotel.discovery.sourcetargets``.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from promotel.config.secrets import register_secret
from promotel.discovery.sd import SD_KEYS

if TYPE_CHECKING:
    from promotel.config.schema import SourceConfig

__all__ = ["MetricsPath", "Params", "TargetURL", "empty_null_lists", "targets_problem"]

# The keys whose value is a list of sections: a null one (``static_configs:`` with nothing under it) is empty.
LIST_KEYS = SD_KEYS + ("relabel_configs", "metric_relabel_configs")


def _http_url(value: str) -> str:
    try:
        parts = urllib.parse.urlsplit(value)
        password = parts.password
    except ValueError as exc:
        raise ValueError(f"invalid URL: {exc}") from exc
    if password:
        register_secret(password)   # credentials in the URL are masked like any other secret
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = value.replace(password, "***") if password else value
        raise ValueError(f"expected an http:// or https:// URL such as 'https://host/metrics', got {shown!r}")
    return value


def _absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"expected a path starting with '/', such as '/metrics', got {value!r}")
    return value


def _param_lists(value: object) -> object:
    if isinstance(value, dict):     # Prometheus: each parameter is a list; a single string is one value
        return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
    return value


TargetURL = Annotated[str, AfterValidator(_http_url)]
MetricsPath = Annotated[str, AfterValidator(_absolute_path)]
Params = Annotated[dict[str, tuple[str, ...]], BeforeValidator(_param_lists)]


def empty_null_lists(data: dict[str, Any]) -> None:
    """Replace, in a source's raw keys, a null list of sections with an empty one, as Prometheus reads it."""
    for key in LIST_KEYS:
        if key in data and data[key] is None:
            data[key] = ()


def targets_problem(source: SourceConfig) -> str | None:
    """What is wrong with how ``source`` (its fields each valid) names its targets, or None."""
    discovery = [key for key in SD_KEYS if getattr(source, key)]
    if source.url is None and not discovery:
        return ("no targets: set url (one target) or Prometheus's discovery keys (static_configs, "
                "file_sd_configs, dns_sd_configs, http_sd_configs, kubernetes_sd_configs)")
    if source.url is not None and discovery:
        return (f"both url and {', '.join(discovery)} are set; url is the one-target shortcut: put "
                f"its host:port into static_configs instead, or remove {discovery[0]}")
    if source.url is not None:
        given = [key for key in ("scheme", "metrics_path", "params") if key in source.model_fields_set]
        if given:
            return (f"{', '.join(given)} apply to discovered targets; a url: source takes them from "
                    "its URL (write them there)")
        if source.relabel_configs:
            # The url's one target goes through relabel_configs too: a rule must not drop it.
            from promotel.discovery.sourcetargets import source_targets, url_groups

            (target,) = source_targets(source, url_groups(source))
            if target.state != "active":
                why = target.error or "a relabel config drops it"
                return f"relabel_configs leave the url no target to scrape: {why}"
    return None
