"""The relabeling engine, table-driven from Prometheus's documented behaviour.

Each row of RELABEL_ROWS is (input labels, relabel configs as YAML would give them, expected labels or
None for dropped). test_relabel_prometheus.py checks the same engine against the real Prometheus.
"""

from __future__ import annotations

import hashlib
from typing import Any, cast

import pydantic
import pytest

import promotel.discovery.relabel as relabel_module
from promotel.discovery import goregexp
from promotel.discovery.relabel import (
    ACTIONS,
    RelabelConfig,
    is_valid_label_name,
    parse_prometheus_duration,
    parse_relabel_configs,
    relabel,
    target_labels,
)
from promotel.errors import ConfigError, PromotelError


def _hashmod(value: str, modulus: int) -> str:
    """Prometheus's hashmod: the last 8 of the 16 MD5 bytes, big-endian, modulo ``modulus``."""
    return str(int.from_bytes(hashlib.md5(value.encode()).digest()[8:16], "big") % modulus)


ABC = {"a": "foo", "b": "bar", "c": "baz"}

RELABEL_ROWS = [
    # --- replace ---------------------------------------------------------------------------------------
    pytest.param({"a": "foo"}, [{"source_labels": ["a"], "target_label": "b"}], {"a": "foo", "b": "foo"},
                 id="replace-defaults-copy"),
    pytest.param(ABC, [{"source_labels": ["a", "b"], "regex": "(.*);(.*)", "target_label": "d",
                        "replacement": "$2-$1"}], {**ABC, "d": "bar-foo"}, id="replace-joined-default-separator"),
    pytest.param({"a": "foo"}, [{"source_labels": ["a", "missing", "a"], "separator": ",", "target_label": "d"}],
                 {"a": "foo", "d": "foo,,foo"}, id="replace-missing-source-is-empty"),
    pytest.param({"a": "foo"}, [{"source_labels": ["a", "a"], "separator": "", "target_label": "d"}],
                 {"a": "foo", "d": "foofoo"}, id="replace-empty-separator"),
    pytest.param({"a": "foo"}, [{"source_labels": ["a"], "regex": "bar", "target_label": "b", "replacement": "x"}],
                 {"a": "foo"}, id="replace-no-match-does-nothing"),
    pytest.param({"a": "foo"}, [{"source_labels": ["a"], "regex": "fo", "target_label": "b", "replacement": "x"}],
                 {"a": "foo"}, id="replace-regex-is-anchored"),
    pytest.param({"a": "foo"}, [{"source_labels": ["a"], "regex": "f|foo", "target_label": "b",
                                 "replacement": "$0"}], {"a": "foo", "b": "foo"}, id="replace-alternation-anchored"),
    pytest.param({"a": "foo", "b": "bar"}, [{"source_labels": ["a"], "target_label": "b", "replacement": ""}],
                 {"a": "foo"}, id="replace-empty-replacement-removes-target"),
    pytest.param({"b": "bar"}, [{"source_labels": ["missing"], "target_label": "b"}], {},
                 id="replace-copying-a-missing-label-removes-target"),
    pytest.param({}, [{"target_label": "env", "replacement": "prod"}], {"env": "prod"}, id="replace-constant"),
    pytest.param({"a": "foo"}, [{"source_labels": ["a"], "regex": "(.*)", "target_label": "${1}_x",
                                 "replacement": "y"}], {"a": "foo", "foo_x": "y"}, id="replace-templated-target"),
    pytest.param({"a": "1x"}, [{"source_labels": ["a"], "regex": "(.*)", "target_label": "$1", "replacement": "y"}],
                 {"a": "1x"}, id="replace-target-expands-to-invalid-name"),
    pytest.param({"a": "a-b"}, [{"source_labels": ["a"], "regex": "(.*)", "target_label": "${1}",
                                 "replacement": "y"}], {"a": "a-b"}, id="replace-target-expands-to-dash"),
    pytest.param({}, [{"source_labels": ["a"], "regex": "(.*)", "target_label": "${1}", "replacement": "y"}],
                 {}, id="replace-target-expands-to-empty-name"),
    # Prometheus >= 2.50: the *expanded* target is removed (2.42 removed the literal "${1}", a no-op).
    pytest.param({"a": "foo", "foo": "bar"}, [{"source_labels": ["a"], "regex": "(.*)", "target_label": "${1}",
                                               "replacement": ""}], {"a": "foo"},
                 id="replace-empty-replacement-removes-expanded-target"),
    pytest.param({"a": "foo"}, [{"source_labels": ["a"], "regex": "(f)(oo)", "target_label": "b",
                                 "replacement": "$1x|${1}x|$2"}], {"a": "foo", "b": "|fx|oo"},
                 id="expand-$1x-is-the-group-named-1x"),
    pytest.param({"a": "foo"}, [{"source_labels": ["a"], "target_label": "b", "replacement": "$$1|a$$b|$$$1"}],
                 {"a": "foo", "b": "$1|a$b|$foo"}, id="expand-double-dollar-is-literal"),
    pytest.param({"a": "foo"}, [{"source_labels": ["a"], "target_label": "b", "replacement": "x$|$-|${1|${}|${-}"}],
                 {"a": "foo", "b": "x$|$-|${1|${}|${-}"}, id="expand-malformed-references-stay-literal"),
    pytest.param({"a": "a"}, [{"source_labels": ["a"], "regex": "(a)|(b)", "target_label": "b",
                               "replacement": "[$1][$2][$9][${3}]"}], {"a": "a", "b": "[a][][][]"},
                 id="expand-missing-and-unmatched-groups-are-empty"),
    pytest.param({"a": "xy"}, [{"source_labels": ["a"], "regex": "(x)(y)", "target_label": "b",
                                "replacement": "$0|$01|${01}|${0}|$100000000"}], {"a": "xy", "b": "xy|||xy|"},
                 id="expand-group-zero-leading-zeros-huge-numbers"),
    pytest.param({"a": "x-y"}, [{"source_labels": ["a"], "regex": "(?P<first>\\w+)-(?P<second>\\w+)",
                                 "target_label": "b", "replacement": "$second.${first}|$first_|${second}_"}],
                 {"a": "x-y", "b": "y.x||y_"}, id="expand-named-groups"),
    pytest.param({"a": "x"}, [{"source_labels": ["a"], "regex": "(?P<n>x)", "target_label": "b",
                               "replacement": "<$nà>|<${n}à>|<$n-à>"}], {"a": "x", "b": "<>|<xà>|<x-à>"},
                 id="expand-names-run-over-unicode-letters"),
    pytest.param({"a": "b"}, [{"source_labels": ["a"], "regex": "(?P<d>a)?(?P<d>b)?", "target_label": "b",
                               "replacement": "<$d>"}], {"a": "b", "b": "<b>"}, id="expand-first-matched-group-of-a-name"),
    pytest.param({"a": "ab"}, [{"source_labels": ["a"], "regex": "(?P<d>a)?(?P<d>b)?", "target_label": "b",
                                "replacement": "<$d>"}], {"a": "ab", "b": "<a>"}, id="expand-duplicate-name-leftmost"),
    pytest.param({"a": "foo\nbar"}, [{"source_labels": ["a"], "regex": "foo.bar", "target_label": "b",
                                      "replacement": "dot"}], {"a": "foo\nbar"}, id="regex-dot-does-not-match-newline"),
    pytest.param({"a": "foo\nbar"}, [{"source_labels": ["a"], "regex": "(?s)foo.bar", "target_label": "b",
                                      "replacement": "dot"}], {"a": "foo\nbar", "b": "dot"}, id="regex-flag-s"),
    pytest.param({"a": "héllo 42"}, [{"source_labels": ["a"], "regex": "(\\pL+)\\s(\\d+)", "target_label": "b",
                                      "replacement": "$2:$1"}], {"a": "héllo 42", "b": "42:héllo"},
                 id="regex-re2-unicode-classes"),
    pytest.param({"a": "xb"}, [{"source_labels": ["a"], "regex": "a)|(b", "target_label": "b",
                                "replacement": "[$1]"}], {"a": "xb", "b": "[b]"},
                 id="regex-closing-the-group-early-as-prometheus"),
    pytest.param({"a": "abcd"}, [{"source_labels": ["a"], "regex": "(a|ab)(c|bcd)(d*)", "target_label": "b",
                                  "replacement": "$1|$2|$3"}], {"a": "abcd", "b": "a|bcd|"},
                 id="regex-leftmost-first-submatches"),
    pytest.param({"a": "x.*y"}, [{"source_labels": ["a"], "regex": "\\Qx.*y\\E", "target_label": "b",
                                  "replacement": "q"}], {"a": "x.*y", "b": "q"}, id="regex-quoted-literal"),
    pytest.param({}, [{"source_labels": ["a"], "regex": "", "target_label": "b", "replacement": "empty"}],
                 {"b": "empty"}, id="regex-empty-matches-empty-value"),
    pytest.param({"a": "x"}, [{"source_labels": ["a"], "regex": "", "target_label": "b", "replacement": "empty"}],
                 {"a": "x"}, id="regex-empty-matches-nothing-else"),
    # --- keep / drop -----------------------------------------------------------------------------------
    pytest.param(ABC, [{"action": "keep", "source_labels": ["a"], "regex": "f.*"}], ABC, id="keep-match"),
    pytest.param(ABC, [{"action": "keep", "source_labels": ["a"], "regex": "f"}], None, id="keep-anchored"),
    pytest.param(ABC, [{"action": "keep", "source_labels": ["missing"], "regex": ".+"}], None,
                 id="keep-missing-label"),
    pytest.param(ABC, [{"action": "keep", "source_labels": ["missing"]}], ABC, id="keep-default-regex-keeps-all"),
    pytest.param(ABC, [{"action": "drop", "source_labels": ["a", "b"], "regex": "foo;bar"}], None,
                 id="drop-joined-match"),
    pytest.param({"env": "production"}, [{"action": "drop", "source_labels": ["env"], "regex": "prod"}],
                 {"env": "production"}, id="drop-anchored-no-match"),
    pytest.param(ABC, [{"action": "drop", "source_labels": ["a"], "regex": "(?i)FOO"}], None,
                 id="drop-case-insensitive-flag"),
    # --- keepequal / dropequal ---------------------------------------------------------------------------
    pytest.param({"a": "x", "b": "x"}, [{"action": "keepequal", "source_labels": ["a"], "target_label": "b"}],
                 {"a": "x", "b": "x"}, id="keepequal-equal"),
    pytest.param({"a": "x", "b": "y"}, [{"action": "keepequal", "source_labels": ["a"], "target_label": "b"}],
                 None, id="keepequal-different"),
    pytest.param({"c": "z"}, [{"action": "keepequal", "source_labels": ["a"], "target_label": "b"}], {"c": "z"},
                 id="keepequal-both-missing-are-equal"),
    pytest.param({"a": "x", "b": "y", "c": "x;y"}, [{"action": "keepequal", "source_labels": ["a", "b"],
                                                      "target_label": "c"}], {"a": "x", "b": "y", "c": "x;y"},
                 id="keepequal-joined"),
    pytest.param({"a": "x", "b": "x"}, [{"action": "dropequal", "source_labels": ["a"], "target_label": "b"}],
                 None, id="dropequal-equal"),
    pytest.param({"a": "x", "b": "y"}, [{"action": "dropequal", "source_labels": ["a"], "target_label": "b"}],
                 {"a": "x", "b": "y"}, id="dropequal-different"),
    # --- hashmod -----------------------------------------------------------------------------------------
    pytest.param(ABC, [{"action": "hashmod", "source_labels": ["c"], "modulus": 1000, "target_label": "d"}],
                 {**ABC, "d": "976"}, id="hashmod-prometheus-value"),
    pytest.param({"a": "foo\nbar"}, [{"action": "hashmod", "source_labels": ["a"], "modulus": 1000,
                                      "target_label": "b"}], {"a": "foo\nbar", "b": "734"},
                 id="hashmod-prometheus-value-newline"),
    pytest.param(ABC, [{"action": "hashmod", "source_labels": ["a", "b"], "modulus": 2**64 - 1,
                        "target_label": "d"}], {**ABC, "d": _hashmod("foo;bar", 2**64 - 1)},
                 id="hashmod-low-8-bytes-big-endian"),
    pytest.param(ABC, [{"action": "hashmod", "source_labels": ["a"], "modulus": 1, "target_label": "d"}],
                 {**ABC, "d": "0"}, id="hashmod-modulus-1"),
    pytest.param({}, [{"action": "hashmod", "source_labels": ["missing"], "modulus": 97, "target_label": "d"}],
                 {"d": _hashmod("", 97)}, id="hashmod-of-empty-value"),
    pytest.param({"a": "ünï"}, [{"action": "hashmod", "source_labels": ["a"], "modulus": 10**9,
                                 "target_label": "d"}], {"a": "ünï", "d": _hashmod("ünï", 10**9)},
                 id="hashmod-utf8-bytes"),
    # --- labelmap ------------------------------------------------------------------------------------------
    pytest.param({"__meta_zone": "z", "__meta_rack": "r", "a": "1"},
                 [{"action": "labelmap", "regex": "__meta_(.+)"}],
                 {"__meta_zone": "z", "__meta_rack": "r", "a": "1", "zone": "z", "rack": "r"}, id="labelmap-copies"),
    pytest.param({"a": "foo", "b1": "bar", "b2": "baz"},
                 [{"action": "labelmap", "regex": "(b.*)", "replacement": "bar_${1}"}],
                 {"a": "foo", "b1": "bar", "b2": "baz", "bar_b1": "bar", "bar_b2": "baz"}, id="labelmap-replacement"),
    pytest.param({"a_k": "from_a", "b_k": "from_b"}, [{"action": "labelmap", "regex": "[ab]_(k)"}],
                 {"a_k": "from_a", "b_k": "from_b", "k": "from_b"}, id="labelmap-collision-later-name-wins"),
    pytest.param({"a": "1", "b": "2"}, [{"action": "labelmap", "regex": "a", "replacement": "b"},
                                        {"action": "labelmap", "regex": "b", "replacement": "a"}],
                 {"a": "1", "b": "1"}, id="labelmap-reads-labels-before-the-action"),
    pytest.param({"zz": "v", "zzq": "w"}, [{"action": "labelmap", "regex": "zz(.*)"}],
                 {"zz": "v", "zzq": "w", "": "v", "q": "w"}, id="labelmap-result-name-not-validated"),
    pytest.param(ABC, [{"action": "labelmap", "regex": "x(.*)"}], ABC, id="labelmap-no-match"),
    # --- labeldrop / labelkeep ----------------------------------------------------------------------------
    pytest.param({"tmp_a": "1", "tmp": "2", "keep": "3"}, [{"action": "labeldrop", "regex": "tmp_.*"}],
                 {"tmp": "2", "keep": "3"}, id="labeldrop"),
    pytest.param({"tmp_a": "1", "tmp": "2", "keep": "3"}, [{"action": "labelkeep", "regex": "tmp|keep"}],
                 {"tmp": "2", "keep": "3"}, id="labelkeep-anchored"),
    pytest.param(ABC, [{"action": "labelkeep", "regex": "x"}], {}, id="labelkeep-nothing"),
    # --- lowercase / uppercase (Go's simple case mapping) --------------------------------------------------
    pytest.param({"a": "MiXeD"}, [{"action": "lowercase", "source_labels": ["a"], "target_label": "l"},
                                  {"action": "uppercase", "source_labels": ["a"], "target_label": "u"}],
                 {"a": "MiXeD", "l": "mixed", "u": "MIXED"}, id="case-ascii"),
    pytest.param({"a": "straße ᾀ ǅ ﬀ"}, [{"action": "uppercase", "source_labels": ["a"], "target_label": "u"}],
                 {"a": "straße ᾀ ǅ ﬀ", "u": "STRAßE ᾈ Ǆ ﬀ"}, id="uppercase-simple-mapping"),
    pytest.param({"a": "ΟΔΟΣ İ ẞ"}, [{"action": "lowercase", "source_labels": ["a"], "target_label": "l"}],
                 {"a": "ΟΔΟΣ İ ẞ", "l": "οδοσ i ß"}, id="lowercase-simple-mapping-no-final-sigma"),
    pytest.param({"a": "x", "b": "Y"}, [{"action": "uppercase", "source_labels": ["a", "b"], "separator": "-",
                                         "target_label": "a"}], {"a": "X-Y", "b": "Y"}, id="uppercase-joined"),
    pytest.param({"a": "x"}, [{"action": "lowercase", "source_labels": ["missing"], "target_label": "a"}], {},
                 id="lowercase-of-empty-removes-target"),
    # --- sequences and inputs -------------------------------------------------------------------------------
    pytest.param(ABC, [{"source_labels": ["a"], "regex": "f(.*)", "target_label": "d", "replacement": "$1"},
                       {"action": "drop", "source_labels": ["d"], "regex": "oo"}], None, id="drop-on-a-new-label"),
    pytest.param(ABC, [{"action": "labeldrop", "regex": "a"},
                       {"action": "keep", "source_labels": ["a"], "regex": "foo"}], None,
                 id="keep-on-a-dropped-label"),
    pytest.param({"a": "", "b": "x"}, [], {"b": "x"}, id="empty-input-value-is-no-label"),
    pytest.param(ABC, [], ABC, id="no-configs"),
]


@pytest.mark.parametrize(("labels", "configs", "expected"), RELABEL_ROWS)
def test_relabel(labels: dict[str, str], configs: list[dict[str, Any]], expected: dict[str, str] | None) -> None:
    before = dict(labels)
    assert relabel(labels, parse_relabel_configs(configs)) == expected
    assert labels == before  # the input is never modified


def test_remembered_outcomes_give_the_same_results_as_fresh_ones() -> None:
    """Every row applied after all the others (the patterns' memos hold what every row computed, the same
    regexes recur across rows) gives what it gives on its own."""
    parsed = [(labels, parse_relabel_configs(configs), expected) for labels, configs, expected
              in (cast(tuple[dict[str, str], list[dict[str, Any]], Any], row.values) for row in RELABEL_ROWS)]
    for labels, configs, expected in parsed + parsed:
        assert relabel(labels, configs) == expected
    # The same pattern and texts under other templates: each (target_label, replacement) has its own memo.
    rules = parse_relabel_configs([{"source_labels": ["a"], "regex": "(x)(y)?", "target_label": "t1", "replacement": "$1"},
                                   {"source_labels": ["a"], "regex": "(x)(y)?", "target_label": "t2", "replacement": "<$2>"},
                                   {"regex": "(x)(y)?", "action": "labelmap", "replacement": "m_$1"},
                                   {"regex": "(x)(y)?", "action": "labelmap", "replacement": "n_$1$2"}])
    for _ in range(2):
        assert relabel({"a": "xy"}, rules) == {"a": "xy", "t1": "x", "t2": "<y>"}
        assert relabel({"a": "x", "xy": "v"}, rules) == {"a": "x", "t1": "x", "t2": "<>", "xy": "v", "m_x": "v",
                                                          "n_xy": "v"}


def test_memo_is_bounded_and_skips_long_texts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relabel_module, "_MEMO_ENTRIES", 8)
    rules = parse_relabel_configs([{"source_labels": ["v"], "regex": "keep-.*-bounded", "action": "keep"}])
    assert relabel({"v": "keep--bounded"}, rules) is not None
    memo = goregexp.compile_anchored("keep-.*-bounded").memo[True]
    assert memo == {"keep--bounded": True}
    for i in range(20):
        assert relabel({"v": f"keep-{i}-bounded"}, rules) == {"v": f"keep-{i}-bounded"}
        assert relabel({"v": f"other-{i}"}, rules) is None
        assert len(memo) <= 8
    long = "keep-" + "x" * 300 + "-bounded"
    memo.clear()
    assert relabel({"v": long}, rules) == {"v": long} and long not in memo and not memo


def test_rows_cover_every_action() -> None:
    assert len(RELABEL_ROWS) >= 40
    used = {RelabelConfig.model_validate(cfg).action for row in RELABEL_ROWS
            for cfg in cast(list[dict[str, Any]], row.values[1])}
    assert used == set(ACTIONS)


def test_defaults_are_prometheus_defaults() -> None:
    cfg = RelabelConfig(target_label="t")
    assert (cfg.source_labels, cfg.separator, cfg.target_label, cfg.regex, cfg.modulus, cfg.replacement,
            cfg.action) == ((), ";", "t", "(.*)", 0, "$1", "replace")
    with pytest.raises(pydantic.ValidationError, match="replace action requires 'target_label' value"):
        RelabelConfig()


# --- validation ---------------------------------------------------------------------------------------

VALIDATION_ROWS = [
    pytest.param({"action": "hashmod", "target_label": "h"}, "modulus",
                 "relabel configuration for hashmod requires non-zero modulus", id="hashmod-modulus"),
    pytest.param({"action": "hashmod", "modulus": 3}, "target_label",
                 "relabel configuration for hashmod action requires 'target_label' value", id="hashmod-target"),
    pytest.param({"action": "hashmod", "modulus": 3, "target_label": "h$1"}, "target_label",
                 "\"h$1\" is invalid 'target_label' for hashmod action", id="hashmod-templated-target"),
    pytest.param({}, "target_label", "relabel configuration for replace action requires 'target_label' value",
                 id="replace-target"),
    pytest.param({"target_label": "a-b"}, "target_label", "\"a-b\" is invalid 'target_label' for replace action",
                 id="replace-invalid-target"),
    pytest.param({"target_label": "$-"}, "target_label", "\"$-\" is invalid 'target_label' for replace action",
                 id="replace-invalid-template"),
    pytest.param({"action": "lowercase"}, "target_label",
                 "relabel configuration for lowercase action requires 'target_label' value", id="lowercase-target"),
    pytest.param({"action": "uppercase", "target_label": "${1}"}, "target_label",
                 "\"${1}\" is invalid 'target_label' for uppercase action", id="uppercase-no-template"),
    pytest.param({"action": "keepequal"}, "target_label",
                 "relabel configuration for keepequal action requires 'target_label' value", id="keepequal-target"),
    pytest.param({"action": "dropequal", "target_label": "b", "replacement": "x"}, "replacement",
                 "'replacement' can not be set for dropequal action", id="dropequal-replacement"),
    pytest.param({"action": "keepequal", "target_label": "b", "regex": "(.*)"}, "regex",
                 "keepequal action requires only 'source_labels' and `target_label`, and no other fields",
                 id="keepequal-regex-given"),
    pytest.param({"action": "dropequal", "target_label": "b", "separator": ","}, "separator",
                 "dropequal action requires only 'source_labels' and `target_label`, and no other fields",
                 id="dropequal-separator"),
    pytest.param({"action": "labelmap", "replacement": ""}, "replacement",
                 "\"\" is invalid 'replacement' for labelmap action", id="labelmap-empty-replacement"),
    pytest.param({"action": "labelmap", "replacement": "a-$1"}, "replacement",
                 "\"a-$1\" is invalid 'replacement' for labelmap action", id="labelmap-invalid-replacement"),
    pytest.param({"action": "labeldrop", "source_labels": []}, "source_labels",
                 "labeldrop action requires only 'regex', and no other fields", id="labeldrop-source-labels"),
    pytest.param({"action": "labelkeep", "target_label": "x"}, "target_label",
                 "labelkeep action requires only 'regex', and no other fields", id="labelkeep-target"),
    pytest.param({"action": "labelkeep", "modulus": 2}, "modulus",
                 "labelkeep action requires only 'regex', and no other fields", id="labelkeep-modulus"),
    pytest.param({"action": "move"}, "action", "unknown relabel action \"move\"", id="unknown-action"),
    pytest.param({"action": ""}, "action", "unknown relabel action \"\"", id="empty-action"),
    pytest.param({"action": None}, "action", "relabel action cannot be empty", id="null-action"),
    pytest.param({"source_labels": ["ok", "a-b"], "target_label": "x"}, "source_labels",
                 "\"a-b\" is not a valid label name", id="invalid-source-label"),
    pytest.param({"target_label": "x", "regex": "(a"}, "regex", "error parsing regexp \"(a\": missing )",
                 id="invalid-regex"),
    pytest.param({"target_label": "x", "regex": "a\\C"}, "regex", "invalid escape sequence: `\\C`",
                 id="any-byte-escape"),
    pytest.param({"target_label": "x", "regex": "(?<n"}, "regex", "error parsing regexp", id="invalid-named-group"),
    pytest.param({"target_label": "x", "regex": "(?P<é>x)"}, "regex", "invalid named capture", id="unicode-group-name"),
    pytest.param({"target_label": "x", "modulus": -1}, "modulus", "greater than or equal to 0", id="negative-modulus"),
    pytest.param({"target_label": "x", "modulus": 2**64}, "modulus", "less than or equal to", id="huge-modulus"),
    pytest.param({"target_label": "x", "modulus": "3"}, "modulus", "valid integer", id="string-modulus"),
    pytest.param({"target_label": "x", "replace": "y"}, "replace", "unknown key", id="unknown-key"),
]


@pytest.mark.parametrize(("cfg", "field", "message"), VALIDATION_ROWS)
def test_validation(cfg: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_relabel_configs([{"target_label": "ok"}, cfg], path="sources[0].relabel_configs")
    path, text = info.value.problems[0]
    assert path == f"sources[0].relabel_configs[1].{field}"
    assert message in text
    assert isinstance(info.value, PromotelError)


def test_validation_reports_every_problem_in_prometheus_order() -> None:
    with pytest.raises(ConfigError) as info:
        parse_relabel_configs([{"action": "keepequal", "target_label": "1x", "regex": "x", "separator": ","},
                               {"action": "hashmod"}])
    assert info.value.problems == (
        ("relabel_configs[0].target_label", "\"1x\" is invalid 'target_label' for keepequal action"),
        ("relabel_configs[0].regex", "keepequal action requires only 'source_labels' and `target_label`, and no "
                                     "other fields (remove regex, separator)"),
        ("relabel_configs[1].modulus", "relabel configuration for hashmod requires non-zero modulus"),
        ("relabel_configs[1].target_label", "relabel configuration for hashmod action requires 'target_label' value"),
    )


@pytest.mark.parametrize("cfg", [
    {"action": "Replace", "target_label": "x"},
    {"action": "KEEPEQUAL", "target_label": "x"},
    {"action": "keepequal", "target_label": "x", "separator": ";", "replacement": "$1"},
    {"action": "labeldrop", "regex": "x", "source_labels": None},
    {"action": "labelkeep", "regex": "x", "replacement": "$1", "separator": ";"},
    {"action": "labelmap", "regex": "(.*)", "replacement": "x_${1}_$1y"},
    {"target_label": "${1}_$name"},
    {"target_label": "x", "regex": "(?P<name>a)\\d\\s\\w\\pL[[:alpha:]]\\b"},
    {"target_label": "x", "regex": "\\Q\\C\\E"},
    {"action": "hashmod", "target_label": "h", "modulus": 2**64 - 1},
    {"target_label": "x", "replacement": 1, "separator": None},
])
def test_valid_configs(cfg: dict[str, Any]) -> None:
    (parsed,) = parse_relabel_configs([cfg])
    assert parsed.action in ACTIONS


def test_yaml_scalars_read_as_prometheus_reads_them() -> None:
    (cfg,) = parse_relabel_configs([{"target_label": "x", "replacement": 1, "separator": None, "regex": None}])
    assert (cfg.replacement, cfg.separator, cfg.regex) == ("1", "", "")
    (cfg,) = parse_relabel_configs([{"target_label": "x", "replacement": True}])
    assert cfg.replacement == "true"


def test_parse_relabel_configs_shapes() -> None:
    assert parse_relabel_configs(None) == ()
    with pytest.raises(ConfigError) as info:
        parse_relabel_configs({"action": "keep"}, path="metric_relabel_configs")
    assert info.value.problems == (("metric_relabel_configs", "expected a list of relabel configs, got dict"),)
    with pytest.raises(ConfigError) as info:
        parse_relabel_configs(["keep"])
    assert info.value.problems[0][0] == "relabel_configs[0]"
    assert "expected a mapping" in info.value.problems[0][1]


def test_config_is_immutable_and_usable_inside_pydantic_models() -> None:
    cfg = RelabelConfig(source_labels=("a",), target_label="b")
    with pytest.raises(pydantic.ValidationError):
        cfg.target_label = "c"
    assert cfg == RelabelConfig(source_labels=["a"], target_label="b")  # type: ignore[arg-type]
    assert hash(cfg) == hash(RelabelConfig(source_labels=("a",), target_label="b"))

    class Source(pydantic.BaseModel):
        relabel_configs: tuple[RelabelConfig, ...] = ()

    with pytest.raises(pydantic.ValidationError) as info:
        Source.model_validate({"relabel_configs": [{"action": "hashmod", "target_label": "h"}]})
    (err,) = info.value.errors()
    assert err["loc"] == ("relabel_configs", 0)
    assert err["msg"] == "relabel configuration for hashmod requires non-zero modulus"


# --- Go's template expansion in isolation -------------------------------------------------------------

@pytest.mark.parametrize(("template", "expected"), [
    ("$1", "a"), ("${1}", "a"), ("$1x", ""), ("${1}x", "ax"), ("$name", "b"), ("${name}", "b"),
    ("$name_", ""), ("$$", "$"), ("$$$1", "$a"), ("$", "$"), ("a$", "a$"), ("${", "${"), ("${name", "${name"),
    ("${}", "${}"), ("$!", "$!"), ("$0", "ab"), ("$3", ""), ("$00", ""), ("${2}${1}", "ba"), ("no refs", "no refs"),
])
def test_expand(template: str, expected: str) -> None:
    rx = goregexp.compile_anchored("(a)(?P<name>b)")
    match = rx.pattern.search("ab")
    assert match is not None
    assert goregexp.expand(template, "ab", match, rx) == expected


def test_label_names_are_prometheus_2_legacy_names() -> None:
    assert all(map(is_valid_label_name, ["a", "_", "__address__", "A_1", "z9"]))
    assert not any(map(is_valid_label_name, ["", "1a", "a-b", "a.b", "é", "a b", "a$"]))


# --- after relabeling: target_labels ---------------------------------------------------------------------

BASE = {"__scheme__": "http", "__metrics_path__": "/metrics", "__scrape_interval__": "1m",
        "__scrape_timeout__": "10s", "job": "j"}


@pytest.mark.parametrize(("address", "scheme", "expected"), [
    ("host", "http", "host:80"),
    ("host", "https", "host:443"),
    ("host", "", "host:80"),
    ("host:9100", "https", "host:9100"),
    ("[::1]", "http", "[::1]:80"),
    ("[::1]:9", "http", "[::1]:9"),
    ("host:", "http", "host:"),  # an empty port is a port for Go's SplitHostPort
    ("::1", "http", "::1"),  # too many colons: adding a port would not help, so none is added
    ("a:b:c", "http", "a:b:c"),
])
def test_target_default_port(address: str, scheme: str, expected: str) -> None:
    target = target_labels({**BASE, "__address__": address, "__scheme__": scheme})
    assert target.address == expected
    assert target.all_labels["__address__"] == expected
    assert target.labels == {"job": "j", "instance": expected}


def test_target_without_default_port_keeps_the_address() -> None:
    assert target_labels({**BASE, "__address__": "host"}, default_port=False).address == "host"


def test_target_labels_remove_meta_and_reserved_and_default_instance() -> None:
    target = target_labels({**BASE, "__address__": "h:1", "__meta_x": "m", "__param_q": "v", "env": "prod",
                            "instance": "mine", "__tmp": "t"})
    assert target.labels == {"job": "j", "env": "prod", "instance": "mine"}
    assert target.all_labels == {**BASE, "__address__": "h:1", "__param_q": "v", "env": "prod", "instance": "mine",
                                 "__tmp": "t"}
    assert (target.scheme, target.metrics_path, target.interval, target.timeout) == ("http", "/metrics", 60.0, 10.0)
    with pytest.raises(TypeError):
        target.labels["x"] = "y"  # type: ignore[index]


@pytest.mark.parametrize(("labels", "path", "message"), [
    ({"__address__": ""}, "__address__", "no address"),
    ({"__address__": "h", "__scheme__": "ftp"}, "__scheme__", "invalid scheme: \"ftp\""),
    ({"__address__": "h:1/metrics"}, "__address__", "\"h:1/metrics\" is not a valid hostname"),
    ({"__address__": "h:1", "__scrape_interval__": "soon"}, "__scrape_interval__",
     "error parsing scrape interval: not a valid duration string: \"soon\""),
    ({"__address__": "h:1", "__scrape_interval__": "0"}, "__scrape_interval__", "scrape interval cannot be 0"),
    ({"__address__": "h:1", "__scrape_timeout__": ""}, "__scrape_timeout__", "empty duration string"),
    ({"__address__": "h:1", "__scrape_timeout__": "2m"}, "__scrape_timeout__",
     "scrape timeout cannot be greater than scrape interval (\"2m\" > \"1m\")"),
])
def test_target_refused(labels: dict[str, str], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        target_labels({**BASE, **labels})
    assert info.value.problems[0][0] == path
    assert message in info.value.problems[0][1]


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0.0), ("15s", 15.0), ("1m30s", 90.0), ("1h", 3600.0), ("500ms", 0.5), ("1d", 86400.0),
    ("2w", 14 * 86400.0), ("1y", 365 * 86400.0), ("1h1m1s1ms", 3661.001),
])
def test_prometheus_durations(text: str, seconds: float) -> None:
    assert parse_prometheus_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "1.5s", "1s1m", "-1s", "1 s", "1S", "300y"])
def test_prometheus_durations_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_prometheus_duration(text)
