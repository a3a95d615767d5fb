"""Differential tests of the relabeling engine against the real Prometheus (Debian 12's package, 2.42).

1. Targets: one prometheus.yml with several jobs whose ``static_configs`` and ``relabel_configs`` cover
   every action and the edge cases of promotel.discovery.relabel. Prometheus runs on loopback with
   that file; ``/api/v1/targets`` then lists each kept target's labels and scrape URL and each
   dropped target's discovered labels. promotel computes the same from the same discovered labels
   (``relabel`` then ``target_labels``) and both must agree exactly, target by target. Targets whose
   labels Prometheus refuses after relabeling (no address, a path in the address, a bad scheme or
   scrape timeout) appear in neither list: promotel must refuse them too.
2. Validation: ``promtool check config`` on one relabel config at a time must accept what
   ``parse_relabel_configs`` accepts and refuse what it refuses, with the same message.

Nothing listens on the targets' addresses and the scrape interval is an hour: Prometheus only
discovers and relabels them. The binary is required: if it is missing, the tests fail (``make test``
installs the ``prometheus`` package).

Prometheus 2.42 differs from current Prometheus, which promotel follows, in three places these tests
leave out on purpose (tests/discovery/test_relabel.py covers promotel's behaviour): a ``replace`` whose
templated ``target_label`` expands and whose replacement is empty (2.42 leaves the expanded label in
place; 2.50 and later remove it); ``lowercase``/``uppercase``/``keepequal``/``dropequal`` with a ``$`` in
``target_label`` (2.42 accepts it, later versions refuse it); ``(?<name>...)`` groups (Go 1.19's regexp
refuses them, later Go and RE2 accept them).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promotel.discovery.relabel import RelabelConfig, parse_relabel_configs, relabel, target_labels
from promotel.errors import ConfigError
from support.prometheus import promtool_agrees, running_prometheus

GLOBAL_INTERVAL = "1h"
GLOBAL_TIMEOUT = "10s"
REWRITTEN_IN_PLACE = {"target", "labelmap-chain"}
STARTUP_DEADLINE = 60.0  # seconds: Prometheus applies discovered targets on a 5-second tick

# Go's case mapping is the simple one, per character: these differ from Python's str.upper/lower.
UNICODE_VALUES = ["MiXeD", "straße", "ᾀᾳ", "İstanbul", "ΟΔΟΣ ΑΣ", "ǅemal", "ﬀ", "ŉ", "Ωmega", "ẞ"]

JOBS: list[dict[str, Any]] = [
    {
        "job_name": "replace",
        "static_configs": [
            {"targets": ["127.0.0.1:10001", "127.0.0.1:10002"], "labels": {"env": "prod", "team": "a-b"}},
            {"targets": ["127.0.0.1:10003"], "labels": {"env": "dev", "team": "core"}},
            {"targets": ["127.0.0.1:10004"], "labels": {"team": "x"}},
        ],
        "relabel_configs": [
            {"source_labels": ["__address__"], "regex": "(.*):(\\d+)", "target_label": "port",
             "replacement": "${2}"},
            # named groups, `$2x` is the (missing) group "2x", `$$`, a missing group number, a leading zero
            {"source_labels": ["env", "team"], "separator": "/", "regex": "(?P<e>[a-z]*)/(.*)",
             "target_label": "combo", "replacement": "$e-${2}x-$2x-$$-$9-$01-${e}-$-${1"},
            {"source_labels": ["env"], "regex": "prod", "target_label": "is_prod", "replacement": "yes"},
            # a templated target label; "a-b" expands to an invalid name: nothing happens
            {"source_labels": ["env"], "regex": "(dev|prod)", "target_label": "${1}_env", "replacement": "1"},
            {"source_labels": ["team"], "regex": "(.*)", "target_label": "${1}", "replacement": "t"},
            {"source_labels": ["team"], "regex": "(c)ore", "target_label": "t_$1", "replacement": "$0!"},
            # an empty replacement removes the (literal) target label
            {"source_labels": ["team"], "regex": "x", "target_label": "team", "replacement": ""},
            {"target_label": "static", "replacement": "const"},
            {"source_labels": ["nothing"], "target_label": "also_nothing"},
            {"source_labels": ["__address__"], "regex": "127\\.0\\.0\\.1:1000([12])", "target_label": "__param_n",
             "replacement": "$1"},
            {"source_labels": ["env"], "regex": "", "target_label": "no_env", "replacement": "true"},
        ],
    },
    {
        "job_name": "keep-drop",
        "params": {"module": ["m1", "m2"]},
        "static_configs": [
            {"targets": ["127.0.0.1:10011"], "labels": {"env": "prod"}},
            {"targets": ["127.0.0.1:10012"], "labels": {"env": "production"}},
            {"targets": ["127.0.0.1:10013"], "labels": {"env": "staging"}},
            {"targets": ["127.0.0.1:10014"], "labels": {"env": "dev"}},
            {"targets": ["127.0.0.1:10015"], "labels": {"env": "PROD"}},
        ],
        "relabel_configs": [
            {"action": "keep", "source_labels": ["env"], "regex": "prod.*|staging|(?i)PROD"},
            {"action": "drop", "source_labels": ["__address__"], "regex": ".*:10013"},
            # anchored: "prod" does not drop "production"
            {"action": "drop", "source_labels": ["env"], "regex": "prod"},
            {"action": "keep", "source_labels": ["missing"], "regex": ""},
        ],
    },
    {
        "job_name": "keepequal",
        "static_configs": [
            {"targets": ["127.0.0.1:10021"], "labels": {"a": "x", "b": "x"}},
            {"targets": ["127.0.0.1:10022"], "labels": {"a": "x", "b": "y"}},
            {"targets": ["127.0.0.1:10023"], "labels": {"a": "x;y", "b": "x", "c": "y"}},
            {"targets": ["127.0.0.1:10024"], "labels": {"c": "z"}},
        ],
        "relabel_configs": [{"action": "KeepEqual", "source_labels": ["a"], "target_label": "b"}],
    },
    {
        "job_name": "dropequal",
        "static_configs": [
            {"targets": ["127.0.0.1:10031"], "labels": {"a": "x", "b": "y", "c": "x;y"}},
            {"targets": ["127.0.0.1:10032"], "labels": {"a": "x", "b": "y", "c": "x"}},
            {"targets": ["127.0.0.1:10033"], "labels": {"c": ";"}},
            {"targets": ["127.0.0.1:10034"], "labels": {"a": "q"}},
        ],
        "relabel_configs": [{"action": "dropequal", "source_labels": ["a", "b"], "target_label": "c"}],
    },
    {
        "job_name": "hashmod",
        "static_configs": [
            {"targets": [f"127.0.0.1:{port}" for port in range(10041, 10057)], "labels": {"v": "ünï;cödé"}},
        ],
        "relabel_configs": [
            {"action": "hashmod", "source_labels": ["__address__"], "modulus": 8, "target_label": "shard"},
            {"action": "hashmod", "source_labels": ["__address__", "v"], "separator": "|",
             "modulus": 18446744073709551615, "target_label": "h64"},
            {"action": "hashmod", "source_labels": ["v"], "modulus": 1000003, "target_label": "hv"},
            {"action": "hashmod", "source_labels": ["v"], "modulus": 1, "target_label": "one"},
            {"action": "keep", "source_labels": ["shard"], "regex": "[0-4]"},
        ],
    },
    {
        "job_name": "labelmap",
        "static_configs": [
            {"targets": ["127.0.0.1:10061"],
             "labels": {"__meta_x_zone": "z1", "__meta_x_rack": "r1", "a_k": "from_a", "b_k": "from_b"}},
            {"targets": ["127.0.0.1:10062"], "labels": {"__meta_x_zone": "z2", "k": "own", "a_k": "from_a"}},
            # an empty value is no label; "zz" maps to the empty name, which Prometheus sets all the same
            {"targets": ["127.0.0.1:10063"], "labels": {"zz": "v", "zzq": "w", "empty": ""}},
        ],
        "relabel_configs": [
            {"action": "labelmap", "regex": "__meta_x_(.+)", "replacement": "x_$1"},
            # both a_k and b_k map to k: the later name wins
            {"action": "labelmap", "regex": "[ab]_(k)"},
            {"action": "labelmap", "regex": "(job)", "replacement": "${1}_copy"},
            {"action": "labelmap", "regex": "zz(.*)"},
        ],
    },
    {
        "job_name": "labelmap-chain",
        "static_configs": [{"targets": ["127.0.0.1:10065"], "labels": {"a": "1", "b": "2"}}],
        # each labelmap reads the labels as they were before it: b becomes 1, then a becomes b's 1
        "relabel_configs": [
            {"action": "labelmap", "regex": "a", "replacement": "b"},
            {"action": "labelmap", "regex": "b", "replacement": "a"},
        ],
    },
    {
        "job_name": "labeldrop-labelkeep",
        "static_configs": [
            {"targets": ["127.0.0.1:10071"],
             "labels": {"tmp_a": "1", "tmp_b": "2", "keepme": "3", "other": "4", "__meta_m": "5"}},
        ],
        "relabel_configs": [
            {"action": "labeldrop", "regex": "tmp_.*"},
            {"action": "labelkeep", "regex": "__.*|job|keepme|instance"},
        ],
    },
    {
        "job_name": "case",
        "static_configs": [
            {"targets": [f"127.0.0.1:{10081 + i}"], "labels": {"name": value}}
            for i, value in enumerate(UNICODE_VALUES)
        ] + [{"targets": ["127.0.0.1:10099"], "labels": {"gone": "yes"}}],
        "relabel_configs": [
            {"action": "lowercase", "source_labels": ["name"], "target_label": "lower"},
            {"action": "uppercase", "source_labels": ["name", "name"], "target_label": "upper"},
            {"action": "lowercase", "source_labels": ["name"], "target_label": "gone"},
        ],
    },
    {
        "job_name": "regex",
        "static_configs": [
            {"targets": ["127.0.0.1:10101"], "labels": {"v": "abcd"}},
            {"targets": ["127.0.0.1:10102"], "labels": {"v": "aaa"}},
            {"targets": ["127.0.0.1:10103"], "labels": {"v": "Éé 12"}},
            {"targets": ["127.0.0.1:10104"], "labels": {"v": "a\nb"}},
            {"targets": ["127.0.0.1:10105"], "labels": {"v": "b"}},
            {"targets": ["127.0.0.1:10106"], "labels": {"v": "x.*y"}},
            {"targets": ["127.0.0.1:10107"], "labels": {"v": "ab"}},
        ],
        "relabel_configs": [
            # leftmost-first (Perl) submatches
            {"source_labels": ["v"], "regex": "(a|ab)(c|bcd)(d*)", "target_label": "lf", "replacement": "$1|$2|$3"},
            {"source_labels": ["v"], "regex": "(?U)(a+)(a*)", "target_label": "ungreedy", "replacement": "$1|$2"},
            {"source_labels": ["v"], "regex": "(\\pL+)\\s(\\d+)", "target_label": "classes",
             "replacement": "$2-$1"},
            {"source_labels": ["v"], "regex": "([[:alpha:]]+)", "target_label": "posix", "replacement": "p$1"},
            {"source_labels": ["v"], "regex": "a.b", "target_label": "dot", "replacement": "no newline"},
            {"source_labels": ["v"], "regex": "(?s)a.b", "target_label": "dot_s", "replacement": "newline"},
            # closing the group early: ^(?:a)|(b)$
            {"source_labels": ["v"], "regex": "a)|(b", "target_label": "broken", "replacement": "[$1]"},
            {"source_labels": ["v"], "regex": "\\Qx.*y\\E", "target_label": "quoted", "replacement": "q"},
            {"source_labels": ["v"], "regex": "(a*)+", "target_label": "empty_group", "replacement": "<$1>"},
            {"source_labels": ["v"], "regex": "(ab)?(abcd)?", "target_label": "optional", "replacement": "<$1|$2>"},
            # a name used twice: $d is the first group of that name that matched
            {"source_labels": ["v"], "regex": "(?P<d>a)?(?P<d>b)?", "target_label": "dup", "replacement": "<$d>"},
        ],
    },
    {
        "job_name": "target",
        "scheme": "https",
        "metrics_path": "/probe",
        "static_configs": [
            {"targets": ["127.0.0.1", "[::1]", "localhost:", "a:b:c", "::1"]},
            {"targets": ["127.0.0.2"], "labels": {"__scheme__": "http", "job": "overridden"}},
            {"targets": ["127.0.0.3"], "labels": {"__metrics_path__": "/custom", "instance": "mine",
                                                 "__meta_gone": "x"}},
            {"targets": ["127.0.0.4:1"], "labels": {"interval": "30m", "timeout": "20m"}},
            {"targets": ["127.0.0.5:1"], "labels": {"interval": "30m", "timeout": "2h"}},
            {"targets": ["127.0.0.6:1"], "labels": {"interval": "1h30m", "timeout": "0"}},
            {"targets": ["127.0.0.7:1"], "labels": {"interval": "soon"}},
            {"targets": ["127.0.0.8"], "labels": {"__scheme__": "ftp"}},
            {"targets": ["127.0.0.9:1"], "labels": {"noaddr": "1"}},
            {"targets": ["127.0.0.10:1"], "labels": {"path": "/x"}},
        ],
        "relabel_configs": [
            {"source_labels": ["interval"], "regex": "(.+)", "target_label": "__scrape_interval__"},
            {"source_labels": ["timeout"], "regex": "(.+)", "target_label": "__scrape_timeout__"},
            {"source_labels": ["noaddr"], "regex": "1", "target_label": "__address__", "replacement": ""},
            {"source_labels": ["__address__", "path"], "separator": "", "regex": "(.+/x)",
             "target_label": "__address__"},
        ],
    },
]


def _discovered(job: dict[str, Any], group: dict[str, Any], address: str) -> dict[str, str]:
    """The labels Prometheus hands to relabel_configs for one static target (scrape.PopulateLabels)."""
    lset = {**group.get("labels", {}), "__address__": address}
    defaults = {
        "job": job["job_name"],
        "__scrape_interval__": job.get("scrape_interval", GLOBAL_INTERVAL),
        "__scrape_timeout__": job.get("scrape_timeout", GLOBAL_TIMEOUT),
        "__metrics_path__": job.get("metrics_path", "/metrics"),
        "__scheme__": job.get("scheme", "http"),
    }
    for name, value in defaults.items():
        if lset.get(name, "") == "":
            lset[name] = value
    for name, values in job.get("params", {}).items():
        lset["__param_" + name] = values[0]
    return {name: value for name, value in lset.items() if value != ""}  # an empty value is no label


def _scrape_url(labels: dict[str, str], job: dict[str, Any]) -> str:
    """Prometheus's Target.URL for the simple values used here (nothing that needs escaping)."""
    params = {name: list(values) for name, values in job.get("params", {}).items()}
    for name, value in labels.items():
        if name.startswith("__param_"):  # replaces the first value of the configured parameter
            params.setdefault(name.removeprefix("__param_"), [""])[0] = value
    query = "&".join(f"{name}={value}" for name, values in sorted(params.items()) for value in values)
    return f"{labels['__scheme__']}://{labels['__address__']}{labels['__metrics_path__']}" + (
        f"?{query}" if query else "")


def _key(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _expected() -> tuple[Counter[str], Counter[str], int]:
    """What promotel computes: (active targets, dropped targets' discovered labels, refused count)."""
    active: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    refused = 0
    for job in JOBS:
        configs = parse_relabel_configs(job["relabel_configs"])
        for group in job["static_configs"]:
            for address in group["targets"]:
                discovered = _discovered(job, group, address)
                result = relabel(discovered, configs)
                if result is None:
                    dropped[_key(discovered)] += 1
                    continue
                try:
                    target = target_labels(result)
                except ConfigError:
                    refused += 1
                    continue
                active[_key({"pool": job["job_name"], "labels": dict(target.labels),
                             "url": _scrape_url(dict(target.all_labels), job)})] += 1
    return active, dropped, refused


@pytest.fixture(scope="module")
def prometheus_targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], int]]:
    """Run Prometheus on the jobs above; yield (its /api/v1/targets data, expected number of targets)."""
    tmp = tmp_path_factory.mktemp("prometheus")
    config = {"global": {"scrape_interval": GLOBAL_INTERVAL, "scrape_timeout": GLOBAL_TIMEOUT},
              "scrape_configs": JOBS}
    active, dropped, _ = _expected()
    want = sum(active.values()) + sum(dropped.values())
    with running_prometheus(tmp, config) as prometheus:
        # test_targets_match_prometheus says what is missing
        yield prometheus.listed_targets(want, STARTUP_DEADLINE), want


def test_targets_match_prometheus(prometheus_targets: tuple[dict[str, Any], int]) -> None:
    data, want = prometheus_targets
    active, dropped, refused = _expected()
    got_active = Counter(_key({"pool": t["scrapePool"], "labels": t["labels"], "url": t["scrapeUrl"]})
                         for t in data.get("activeTargets", []))
    got_dropped = Counter(_key(t["discoveredLabels"]) for t in data.get("droppedTargets", []))
    assert sum(got_active.values()) + sum(got_dropped.values()) == want, (
        f"Prometheus listed {sum(got_active.values())} active and {sum(got_dropped.values())} dropped targets in "
        f"{STARTUP_DEADLINE:.0f} s; promotel expects {want}")
    assert sorted((got_active - active).elements()) == sorted((active - got_active).elements()) == [], (
        "active targets differ:\nonly Prometheus:\n" + "\n".join(sorted((got_active - active).elements()))
        + "\nonly promotel:\n" + "\n".join(sorted((active - got_active).elements())))
    assert got_dropped == dropped
    # Each job's targets are all accounted for, and the refused ones are the ones Prometheus refused.
    total = sum(len(group["targets"]) for job in JOBS for group in job["static_configs"])
    assert want + refused == total
    assert refused == 6


def test_discovered_labels_match_prometheus(prometheus_targets: tuple[dict[str, Any], int]) -> None:
    """The labels the test feeds to promotel are the ones Prometheus fed to its own relabeling.

    Only where Prometheus 2.42 shows them intact: its relabeling may overwrite the discovered labels it
    reports for a kept target when a step rewrites a value in place (the jobs in REWRITTEN_IN_PLACE
    do), so those jobs' kept targets are left out here (dropped ones are compared in the test above)."""
    data, _ = prometheus_targets
    discovered = Counter(_key(_discovered(job, group, address)) for job in JOBS
                         for group in job["static_configs"] for address in group["targets"])
    seen = Counter(_key(t["discoveredLabels"]) for t in data["activeTargets"]
                   if t["scrapePool"] not in REWRITTEN_IN_PLACE)
    seen.update(_key(t["discoveredLabels"]) for t in data["droppedTargets"])
    assert seen - discovered == Counter()
    assert sum(seen.values()) >= 40


def test_every_action_is_exercised() -> None:
    actions = {RelabelConfig.model_validate(cfg).action for job in JOBS for cfg in job["relabel_configs"]}
    assert actions == {"replace", "keep", "drop", "keepequal", "dropequal", "hashmod", "labelmap", "labeldrop",
                       "labelkeep", "lowercase", "uppercase"}


# --- validation: promtool check config ---------------------------------------------------------------

VALIDATION_CASES: list[tuple[str, dict[str, Any]]] = [
    ("defaults", {"target_label": "a"}),
    ("action case-insensitive", {"action": "HashMod", "source_labels": ["a"], "modulus": 3, "target_label": "h"}),
    ("empty action", {"action": ""}),
    ("null action", {"action": None}),
    ("unknown action", {"action": "rename"}),
    ("hashmod without modulus", {"action": "hashmod", "target_label": "h"}),
    ("hashmod without target", {"action": "hashmod", "modulus": 2}),
    ("hashmod templated target", {"action": "hashmod", "modulus": 2, "target_label": "h$1"}),
    ("replace without target", {"source_labels": ["a"]}),
    ("replace invalid target", {"target_label": "a-b"}),
    ("replace target starting with a digit", {"target_label": "1a"}),
    ("replace templated target", {"target_label": "${1}_x$2y"}),
    ("replace invalid template", {"target_label": "$-"}),
    ("replace template dollar only", {"target_label": "a$"}),
    ("lowercase without target", {"action": "lowercase", "source_labels": ["a"]}),
    ("uppercase invalid target", {"action": "uppercase", "target_label": "a.b"}),
    ("lowercase with replacement", {"action": "lowercase", "target_label": "l", "replacement": "x"}),
    ("keepequal without target", {"action": "keepequal", "source_labels": ["a"]}),
    ("keepequal with regex", {"action": "keepequal", "target_label": "b", "regex": "(.*)"}),
    ("keepequal with null regex", {"action": "keepequal", "target_label": "b", "regex": None}),
    ("dropequal with separator", {"action": "dropequal", "target_label": "b", "separator": ","}),
    ("dropequal with modulus", {"action": "dropequal", "target_label": "b", "modulus": 2}),
    ("dropequal with replacement", {"action": "dropequal", "target_label": "b", "replacement": "x"}),
    ("keepequal with default separator", {"action": "keepequal", "target_label": "b", "separator": ";"}),
    ("labelmap empty replacement", {"action": "labelmap", "regex": "a", "replacement": ""}),
    ("labelmap invalid replacement", {"action": "labelmap", "regex": "a", "replacement": "a-$1"}),
    ("labelmap template", {"action": "labelmap", "regex": "x_(.*)", "replacement": "${1}_y"}),
    ("labeldrop with source labels", {"action": "labeldrop", "regex": "a", "source_labels": ["a"]}),
    ("labeldrop with empty source labels", {"action": "labeldrop", "regex": "a", "source_labels": []}),
    ("labeldrop with null source labels", {"action": "labeldrop", "regex": "a", "source_labels": None}),
    # (promtool relabels the static target too: labelkeep must keep __address__)
    ("labelkeep with target", {"action": "labelkeep", "regex": "__.*|a", "target_label": "b"}),
    ("labelkeep with replacement", {"action": "labelkeep", "regex": "__.*|a", "replacement": "b"}),
    ("labelkeep with default replacement", {"action": "labelkeep", "regex": "__.*|a", "replacement": "$1"}),
    ("labeldrop with separator", {"action": "labeldrop", "regex": "a", "separator": ""}),
    ("invalid source label", {"source_labels": ["a-b"], "target_label": "x"}),
    ("invalid regex", {"target_label": "x", "regex": "(a"}),
    ("invalid repetition", {"target_label": "x", "regex": "a**"}),
    ("any-byte escape", {"target_label": "x", "regex": "a\\C"}),
    ("quoted any-byte escape", {"target_label": "x", "regex": "\\Qa\\C\\E"}),
    ("non-ASCII group name", {"target_label": "x", "regex": "(?P<é>x)"}),
    ("duplicate group names", {"target_label": "x", "regex": "(?P<d>a)(?P<d>b)"}),
    ("perl classes", {"target_label": "x", "regex": "\\d+\\s\\w\\pL[[:alpha:]]\\b"}),
    ("unknown key", {"target_label": "x", "replace": "y"}),
    ("negative modulus", {"action": "hashmod", "target_label": "h", "modulus": -1}),
    ("string modulus", {"action": "hashmod", "target_label": "h", "modulus": "3"}),
    ("source labels not a list", {"source_labels": "a", "target_label": "x"}),
    ("number replacement", {"target_label": "x", "replacement": 1}),
    ("null separator", {"target_label": "x", "separator": None}),
]


@pytest.mark.parametrize(("name", "cfg"), VALIDATION_CASES, ids=[name for name, _ in VALIDATION_CASES])
def test_validation_matches_promtool(name: str, cfg: dict[str, Any], tmp_path: Path) -> None:
    scrape = {"job_name": "j", "static_configs": [{"targets": ["127.0.0.1:1"]}], "relabel_configs": [cfg]}
    prom_message, ours = promtool_agrees(tmp_path, scrape, lambda: parse_relabel_configs([cfg]))
    if ours is None:
        return
    if prom_message.startswith("error parsing regexp"):
        assert ours.startswith("error parsing regexp"), ours
    elif not prom_message.startswith("yaml: unmarshal errors"):
        # Prometheus's own message, to which promotel may add what to change.
        assert ours.startswith(prom_message), f"Prometheus: {prom_message}; promotel: {ours}"


def test_validation_cases_cover_rejections_and_acceptances() -> None:
    outcomes = set()
    for _, cfg in VALIDATION_CASES:
        try:
            parse_relabel_configs([cfg])
            outcomes.add("valid")
        except ConfigError:
            outcomes.add("invalid")
    assert outcomes == {"valid", "invalid"}
    assert len(VALIDATION_CASES) >= 40

