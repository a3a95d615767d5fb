"""Sharding: one owner per target, balanced, stable across processes, minimal movement on resize."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from promotel.errors import ConfigError
from promotel.scrape.shard import (
    assign,
    normalize_target,
    owner,
    owns,
    parse_shard,
    shard_from_env,
)

TARGETS = [f"https://org-{i}.example.com/metrics" for i in range(1000)]
# owner(t, 5) of the first 12 TARGETS, pinned: a change of hash or key would move every
# deployment's targets on upgrade.
PINNED = [1, 4, 4, 0, 3, 0, 1, 3, 3, 1, 2, 1]


def test_parse_shard_valid() -> None:
    assert parse_shard("2/5") == (2, 5)
    assert parse_shard("0/1") == (0, 1)
    assert parse_shard(" 3 / 4 ") == (3, 4)


@pytest.mark.parametrize("spec, fragment", [
    ("5/5", "between 0 and 4"),
    ("7/3", "between 0 and 2"),
    ("0/0", "at least 1"),
    ("-1/3", "INDEX/COUNT"),
    ("1", "INDEX/COUNT"),
    ("a/b", "INDEX/COUNT"),
    ("", "INDEX/COUNT"),
    ("1/2/3", "INDEX/COUNT"),
])
def test_parse_shard_invalid(spec: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_shard(spec)
    assert fragment in str(info.value)
    assert info.value.problems[0][0] == "shard"


def test_exactly_one_owner() -> None:
    for count in (1, 2, 3, 7, 16):
        for target in TARGETS[:200]:
            owners = [i for i in range(count) if owns(target, i, count)]
            assert owners == [owner(target, count)]


def test_assign_partitions_all_targets() -> None:
    result = assign(TARGETS, 7)
    assert sorted(result) == list(range(7))
    flat = [t for keys in result.values() for t in keys]
    assert sorted(flat) == sorted(TARGETS)
    assert len(flat) == len(set(flat))
    # input order is kept inside each shard
    for keys in result.values():
        assert keys == [t for t in TARGETS if t in set(keys)]


def test_balance_within_30_percent() -> None:
    sizes = [len(v) for v in assign(TARGETS, 7).values()]
    even = len(TARGETS) / 7
    assert min(sizes) >= 0.7 * even, sizes
    assert max(sizes) <= 1.3 * even, sizes


def test_minimal_movement_when_growing() -> None:
    for n in (3, 7, 10):
        before = {t: owner(t, n) for t in TARGETS}
        after = {t: owner(t, n + 1) for t in TARGETS}
        moved = [t for t in TARGETS if before[t] != after[t]]
        # every target that moved went to the new shard; nothing shuffled between old shards
        assert all(after[t] == n for t in moved)
        expected = len(TARGETS) / (n + 1)
        assert 0.6 * expected <= len(moved) <= 1.4 * expected, (n, len(moved))


def test_stable_across_processes() -> None:
    # Python's str hash is salted per process; the assignment must not be. A child process with a
    # different PYTHONHASHSEED must compute exactly the same owners.
    code = ("import json, sys; from promotel.scrape.shard import owner; "
            "print(json.dumps([owner(t, 7) for t in json.load(sys.stdin)]))")
    here = [owner(t, 7) for t in TARGETS]
    for seed in ("1", "12345"):
        out = subprocess.run([sys.executable, "-c", code], input=json.dumps(TARGETS), capture_output=True,
                             text=True, timeout=30, check=True, env={**os.environ, "PYTHONHASHSEED": seed})
        assert json.loads(out.stdout) == here


def test_pinned_assignment() -> None:
    got = [owner(t, 5) for t in TARGETS[:12]]
    assert got == PINNED


def test_normalization_makes_spellings_one_target() -> None:
    same = ["https://App.Baseten.co/metrics", "https://app.baseten.co:443/metrics",
            "https://user:secret@app.baseten.co/metrics#x", " https://app.baseten.co/metrics "]
    assert {normalize_target(u) for u in same} == {"https://app.baseten.co/metrics"}
    assert len({owner(u, 11) for u in same}) == 1
    assert normalize_target("http://h:8080/metrics") == "http://h:8080/metrics"
    assert normalize_target("http://h:80") == "http://h/"
    assert normalize_target("http://[::1]:9090/m?x=1") == "http://[::1]:9090/m?x=1"
    # a different query may be another tenant: it stays a different target
    assert normalize_target("https://h/m?org=a") != normalize_target("https://h/m?org=b")


def test_owns_rejects_bad_index() -> None:
    with pytest.raises(ConfigError):
        owns("http://h/metrics", 3, 3)
    with pytest.raises(ConfigError):
        assign(TARGETS, 0)


def test_shard_from_env() -> None:
    assert shard_from_env({}, "promotel-3") is None
    assert shard_from_env({"PROMOTEL_SHARD": "1/4"}, "whatever") == (1, 4)
    assert shard_from_env({"PROMOTEL_SHARD_COUNT": "5"}, "promotel-3") == (3, 5)
    assert shard_from_env({"PROMOTEL_SHARD_COUNT": "5"}, "promotel-0.promotel.obs.svc.cluster.local") == (0, 5)
    # PROMOTEL_SHARD wins over the ordinal
    assert shard_from_env({"PROMOTEL_SHARD": "0/2", "PROMOTEL_SHARD_COUNT": "5"}, "promotel-3") == (0, 2)


@pytest.mark.parametrize("env, hostname, fragment", [
    ({"PROMOTEL_SHARD": "4/4"}, "promotel-0", "between 0 and 3"),
    ({"PROMOTEL_SHARD_COUNT": "three"}, "promotel-0", "whole number"),
    ({"PROMOTEL_SHARD_COUNT": "3"}, "laptop", "pod ordinal"),
    ({"PROMOTEL_SHARD_COUNT": "3"}, "promotel-3", "StatefulSet's replicas"),
    ({"PROMOTEL_SHARD_COUNT": "0"}, "promotel-0", "at least 1"),
])
def test_shard_from_env_invalid(env: dict[str, str], hostname: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        shard_from_env(env, hostname)
    assert fragment in str(info.value)
    assert info.value.problems[0][0] in env
