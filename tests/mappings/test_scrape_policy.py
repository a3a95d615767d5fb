"""Scrape policies: a mapping plugin declares its source's interval limits, request budget and auth hint;
the config applies them to every source of that mapping, with no vendor named in generic code."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from promotel.config import SourceConfig, load_config_text
from promotel.errors import ConfigError, MappingError
from promotel.mappings import (
    DEFAULT_SCRAPE_POLICY,
    MappingPlugin,
    RequestBudget,
    RowDescription,
    ScrapePolicy,
    SourceLike,
    SourceMapper,
    installed_mappings,
    load_mapping,
    register_mapping,
    scrape_policy,
    unregister_mapping,
)

ACME_POLICY = ScrapePolicy(
    vendor="Acme",
    default_interval=120.0,
    min_interval=30.0,
    budget=RequestBudget(requests=2, window=60.0, per="account"),
    auth_hint="Acme expects 'Authorization: Bearer <token>' (auth.bearer_token)",
)


class AcmePlugin:
    """A plugin as an outside package would write it: the four members plus its own scrape policy."""

    name = "acme"
    default_service_name = "acme"
    scrape_policy = ACME_POLICY

    def bind(self, source: SourceLike) -> SourceMapper:
        return load_mapping("passthrough").bind(source)

    def describe(self) -> list[RowDescription]:
        return []


class PluginWithoutPolicy:
    """A plugin written for 0.1: no scrape_policy."""

    name = "old"
    default_service_name = ""

    def bind(self, source: SourceLike) -> SourceMapper:
        return load_mapping("passthrough").bind(source)

    def describe(self) -> list[RowDescription]:
        return []


@pytest.fixture
def registered() -> Iterator[None]:
    register_mapping("acme", AcmePlugin())
    register_mapping("old", PluginWithoutPolicy())
    try:
        yield
    finally:
        unregister_mapping("acme")
        unregister_mapping("old")


def source(mapping: str, **kw: Any) -> SourceConfig:
    return SourceConfig(name="s", mapping=mapping, url="http://127.0.0.1:1/metrics", **kw)


def test_baseten_declares_its_policy_and_the_other_builtins_none() -> None:
    policy = scrape_policy(load_mapping("baseten"))
    assert (policy.default_interval, policy.min_interval) == (60.0, 10.0)
    assert policy.budget == RequestBudget(6, 60.0, "organization")
    assert policy.budget.describe() == "6 requests per minute per organization"
    assert policy.auth_hint == "Baseten expects 'Authorization: Api-Key <key>' (auth.api_key)"
    assert scrape_policy(load_mapping("sambanova")) is DEFAULT_SCRAPE_POLICY
    assert scrape_policy(load_mapping("passthrough")) is DEFAULT_SCRAPE_POLICY


def test_a_registered_plugin_loads_and_counts_as_installed(registered: None) -> None:
    assert {"acme", "old"} <= set(installed_mappings())
    assert isinstance(load_mapping("acme"), MappingPlugin)
    assert scrape_policy(load_mapping("acme")) is ACME_POLICY


def test_a_plugin_without_a_policy_keeps_loading_with_the_generic_defaults(registered: None) -> None:
    plugin = load_mapping("old")
    assert isinstance(plugin, MappingPlugin)
    assert scrape_policy(plugin) is DEFAULT_SCRAPE_POLICY
    src = source("old")
    assert (src.interval, src.timeout) == (15.0, 10.0)
    assert source("old", interval="1s").interval == 1.0           # no minimum


def test_the_plugins_default_interval_applies_and_the_timeout_follows_it(registered: None) -> None:
    src = source("acme")
    assert (src.interval, src.timeout) == (120.0, 10.0)
    assert source("acme", interval="40s").interval == 40.0


def test_an_interval_below_the_plugins_minimum_is_a_config_problem(registered: None) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text("""
            sources: [{name: a, mapping: acme, url: "http://127.0.0.1:1/metrics", interval: 20s}]
            exporters: [{name: e}]
        """, env={})
    assert dict(info.value.problems) == {
        "sources[0].interval": "must be at least 30s for mapping acme: Acme allows 2 requests per minute per "
                               "account and answers HTTP 429 beyond that (recommended: 120s)"}


def test_policy_messages_without_a_vendor_name_the_mapping() -> None:
    policy = ScrapePolicy(min_interval=5.0, budget=RequestBudget(3, 10.0))
    assert policy.interval_problem("mine", 1.0) == ("must be at least 5s for mapping mine: mine allows 3 requests "
                                                    "per 10 s per credential and answers HTTP 429 beyond that")
    assert policy.interval_problem("mine", 5.0) is None
    assert policy.rate_limit_hint("mine") == ("mine allows 3 requests per 10 s per credential: use interval "
                                              "4s and one bridge per credential")
    assert ScrapePolicy(min_interval=2.0).interval_problem("x", 1.0) == "must be at least 2s for mapping x"
    assert DEFAULT_SCRAPE_POLICY.interval_problem("x", 0.001) is None
    assert DEFAULT_SCRAPE_POLICY.rate_limit_hint("x") is None


@pytest.mark.parametrize("policy, expected", [
    (ScrapePolicy(default_interval=5.0, min_interval=10.0), "default_interval (5s) is below min_interval (10s)"),
    (ScrapePolicy(min_interval=-1.0), "min_interval must be a positive number of seconds, got -1.0"),
    (ScrapePolicy(budget=RequestBudget(0, 60.0)), "budget needs at least 1 request in a positive window"),
    ((60.0, 10.0), "scrape_policy that is not a promotel.mappings.ScrapePolicy (tuple)"),
])
def test_an_invalid_policy_is_refused_when_the_plugin_is_registered(policy: object, expected: str) -> None:
    plugin = AcmePlugin()
    plugin.scrape_policy = policy  # type: ignore[assignment]
    with pytest.raises(MappingError) as info:
        register_mapping("broken", plugin)
    assert expected in str(info.value) and "mapping 'broken'" in str(info.value)
    assert "broken" not in installed_mappings()


def test_an_object_that_is_not_a_plugin_is_refused() -> None:
    with pytest.raises(MappingError) as info:
        register_mapping("nothing", object())  # type: ignore[arg-type]
    assert "is not a mapping plugin" in str(info.value)


def test_an_unregistered_plugin_is_an_unknown_mapping_again(registered: None) -> None:
    unregister_mapping("acme")
    with pytest.raises(ConfigError) as info:
        load_config_text("""
            sources: [{name: a, mapping: acme, url: "http://127.0.0.1:1/metrics"}]
            exporters: [{name: e}]
        """, env={})
    assert dict(info.value.problems)["sources[0].mapping"].startswith("unknown mapping 'acme'")
