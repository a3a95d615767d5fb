"""Config loading: schema, defaults, ${VAR} expansion, every problem at once, env-only config, permissions."""

from __future__ import annotations

import contextlib
import logging
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from promotel.config import (
    Config,
    SourceConfig,
    check_file_permissions,
    config_from_env,
    config_has_secrets,
    load_config,
    parse_duration,
    parse_size,
)
from promotel.config.secrets import Secret, redact_all, reveal
from promotel.errors import ConfigError
from support.paths import REPO

MINIMAL = """
sources:
  - name: app
    url: http://127.0.0.1:9100/metrics
exporters:
  - name: sidecar
    endpoint: http://127.0.0.1:4317
"""


def write(tmp_path: Path, text: str, mode: int = 0o600, name: str = "promotel.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    path.chmod(mode)
    return str(path)


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env=env or {})
    return dict(info.value.problems)


# ─── durations and sizes ──────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("text, seconds", [
    ("15s", 15.0), ("1m", 60.0), ("500ms", 0.5), ("1h30m", 5400.0), ("2d", 172800.0), ("1.5s", 1.5),
    ("90", 90.0), (15, 15.0), (0.25, 0.25), ("1m30s", 90.0), (" 10s ", 10.0),
])
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "15x", "1s1m", "-5s", "1m1m", "ten seconds", True])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)  # type: ignore[arg-type]


@pytest.mark.parametrize("text, size", [
    ("64MiB", 64 * 1024 * 1024), ("500KB", 500_000), ("1GiB", 1 << 30), ("2048", 2048), (1000, 1000), ("10 MB", 10**7),
])
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["12XB", "MiB", "-1", 1.5])
def test_parse_size_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_size(text)  # type: ignore[arg-type]


# ─── defaults ─────────────────────────────────────────────────────────────────────────────────


def test_minimal_config_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL), env={})
    src = cfg.sources[0]
    assert (src.mapping, src.interval, src.timeout) == ("passthrough", 15.0, 10.0)
    assert src.max_body_bytes == 64 * 1024 * 1024 and src.max_series == 200_000 and src.expire_after_scrapes == 5
    assert (src.users, src.unmapped, src.honor_timestamps, src.auth, src.tls) == ("keep", "keep", True, None, None)
    exp = cfg.exporters[0]
    assert (exp.preset, exp.protocol, exp.timeout, exp.queue_size) == ("otlp", None, 10.0, 64)
    assert (exp.retry.initial_interval, exp.retry.max_interval, exp.retry.max_elapsed) == (1.0, 30.0, 300.0)
    assert (exp.spool.enabled, exp.spool.max_bytes) == (True, 256 * 1024 * 1024)
    assert (cfg.state_dir, cfg.health, cfg.shard, cfg.resource_attributes) == (None, None, None, {})
    assert (cfg.self_telemetry.enabled, cfg.self_telemetry.interval) == (True, 60.0)


def test_baseten_defaults_to_60s_and_timeout_follows_interval(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
        sources:
          - {name: b, mapping: baseten, url: "https://app.baseten.co/metrics"}
          - {name: fast, url: "http://127.0.0.1:1/metrics", interval: 5s}
        exporters: [{name: e}]
    """), env={})
    assert (cfg.sources[0].interval, cfg.sources[0].timeout) == (60.0, 10.0)
    assert (cfg.sources[1].interval, cfg.sources[1].timeout) == (5.0, 4.0)    # min(10 s, 0.8 × interval)


def test_models_are_frozen(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL), env={})
    with pytest.raises(ValidationError):
        cfg.sources[0].interval = 1.0  # type: ignore[misc]


def test_architecture_example_is_valid(tmp_path: Path) -> None:
    """The config sketch of docs/architecture.md loads as written (its keys are a contract)."""
    doc = (REPO / "docs" / "architecture.md").read_text()
    start = doc.index("```yaml", doc.index("## Configuration")) + len("```yaml")
    example = doc[start:doc.index("```", start)]
    env = {"BASETEN_API_KEY": "bk-123456", "DD_API_KEY": "dd-123456"}
    text = example.replace("users: pseudonymize", "users: pseudonymize\n    pseudonymize_key: \"${PSEUDO_KEY}\"")
    cfg = load_config(write(tmp_path, text), env={**env, "PSEUDO_KEY": "a-long-pseudonymization-key"})
    assert [s.name for s in cfg.sources] == ["baseten-prod", "router"]
    assert cfg.sources[0].auth is not None and reveal(cfg.sources[0].auth.api_key) == "bk-123456"
    assert cfg.exporters[0].preset == "datadog" and cfg.exporters[0].site == "datadoghq.eu"
    assert cfg.health is not None and cfg.health.listen == "127.0.0.1:8888"
    assert cfg.state_dir == "/var/lib/promotel"


# ─── every problem at once ────────────────────────────────────────────────────────────────────


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        sources:
          - name: a
            url: http://127.0.0.1:1/metrics
          - name: b
            url: ftp://example.com/metrics
            intervall: 30s
            users: pseudonymize
          - name: a
            mapping: baseten
            url: https://app.baseten.co/metrics
            interval: 5s
          - name: d
            url: http://127.0.0.1:1/metrics
            interval: 10s
            timeout: 10s
            max_body_bytes: 12XB
        exporters:
          - name: x
            protocol: http/json
            preset: nope
        health: {listen: localhost}
        shard: 3/2
    """)
    assert found["sources[1].url"].startswith("expected an http:// or https:// URL")
    assert found["sources[1].intervall"] == "unknown key 'intervall' (did you mean 'interval'?)"
    assert "required when users is 'pseudonymize'" in found["sources[1].pseudonymize_key"]
    assert found["sources[2].name"].startswith("duplicate name 'a' (also used by sources[0])")
    assert "6 requests per minute" in found["sources[2].interval"]
    assert found["sources[3].timeout"] == "must be shorter than the interval (10s), got 10s"
    assert found["sources[3].max_body_bytes"].startswith("invalid size '12XB'")
    assert "'http/json'" in found["exporters[0].protocol"] and "http/protobuf" in found["exporters[0].protocol"]
    assert found["exporters[0].preset"].startswith("expected one of 'otlp', 'datadog'")
    assert found["health.listen"].startswith("expected HOST:PORT")
    assert "shard" in found
    assert len(found) == 11


def test_config_error_message_lists_each_problem_on_its_own_line(tmp_path: Path) -> None:
    path = write(tmp_path, "sources: []\nexporters: []\nextra_key: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    lines = str(info.value).splitlines()
    assert f"{path}: exporters: at least one exporter is required" in lines
    assert any(line.startswith(f"{path}: extra_key: unknown key 'extra_key'") for line in lines)


def test_password_in_an_invalid_url_is_masked(tmp_path: Path) -> None:
    path = write(tmp_path, "sources: [{name: a, url: 'ftp://user:url-password-77@host/metrics'}]\nexporters: [{name: e}]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert "url-password-77" not in str(info.value)
    assert "ftp://user:***@host/metrics" in str(info.value)
    assert redact_all("x url-password-77 y") == "x *** y"      # and it is masked in every log line


def test_unknown_key_in_nested_section_suggests_the_right_one(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        sources:
          - name: a
            url: http://127.0.0.1:1/metrics
            auth: {apikey: k}
            overrides:
              some_family: {unti: s}
        exporters: [{name: e, retry: {max_elapsd: 1m}}]
    """)
    assert found["sources[0].auth.apikey"] == "unknown key 'apikey' (did you mean 'api_key'?)"
    assert found["sources[0].overrides.some_family.unti"] == "unknown key 'unti' (did you mean 'unit'?)"
    assert found["exporters[0].retry.max_elapsd"] == "unknown key 'max_elapsd' (did you mean 'max_elapsed'?)"


def test_yaml_syntax_error_reports_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  - name: a\n    url: [unclosed\nexporters: []\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    ((where, message),) = info.value.problems
    assert where == ""
    # FILE:LINE:COLUMN where the parser stopped, the line to fix, and the parser's own words as detail.
    assert message == (f"{path}:4:10: the '[' opened on line 3, column 10 is not closed: add ']' where it ends, "
                       "or separate its items with commas (YAML parser: while parsing a flow sequence, expected ',' "
                       "or ']', but got ':')")
    assert str(info.value) == message          # the file is named once, at the start


@pytest.mark.parametrize("text, location, expected", [
    # A key indented deeper than the key above reads as the continuation of that key's value.
    ("sources:\n  - name: a\n    url: http://x\nexporters:\n  - name: e\n     endpoint: x\n", "6:6",
     "indentation: 'endpoint' is indented more than 'name' on line 5, so it reads as the rest of that value; "
     "start it in column 5, like 'name' (YAML parser: mapping values are not allowed here)"),
    ("exporters:\n  - name: e\nstate_dir: /x\n  health: {}\n", "4:3",
     "indentation: 'health' is indented more than 'state_dir' on line 3"),
    # A key indented less than its siblings ends the mapping early.
    ("sources:\n  - name: a\n   url: http://x\n", "3:4",
     "indentation: 'url' starts in column 4 but 'name' on line 2 in column 5; the keys of one mapping start in "
     "the same column (YAML parser: while parsing a block collection, expected <block end>, but found "
     "'<block mapping start>')"),
    # List items at the wrong level, deeper or shallower than the list's other items.
    ("sources:\n  - name: a\n    url: x\n    - name: b\n", "4:5",
     "indentation: this list item's '-' is in column 5, the item on line 2 has it in column 3; the items of one "
     "list start in the same column"),
    ("sources:\n  - name: a\n    url: x\n - name: b\n", "4:2",
     "indentation: this list item's '-' is in column 2, the item on line 2 has it in column 3"),
    ("exporters:\n  name: e\n  - name: f\n", "3:3",
     "indentation: a list item ('- ') where a key was expected (the block that starts on line 2, column 3)"),
    # Tabs are not indentation in YAML.
    ("sources:\n\t- name: a\n", "2:1", "indentation: a tab character; YAML indents with spaces only"),
    ("sources:\n  - name: a\n  \turl: x\n", "3:3", "indentation: a tab character"),
    # Not indentation: said as what it is.
    ("exporters:\n  - name: e\n    endpoint: ${X}:4317 x: y\n", "3:26",
     "this value contains ': ', which starts a mapping in YAML: put the value in quotes"),
    ("state_dir:/x\nexporters: []\n", "1:1", "'state_dir:/x' needs a space after the colon ('key: value')"),
    ("sources:\n  - name: a\n    url:http://x\n", "3:5", "'url:http://x' is not a 'key: value' pair"),
    ("sources:\n  - name: \"a\n", "2:11", "this quoted value is never closed: add the closing quote (\")"),
    ("exporters: [{name: e, endpoint: }]]\n", "1:35", "a ']' that closes nothing"),
    ("x: @foo\n", "1:4", "a value cannot start with '@' (reserved in YAML): put the value in quotes"),
    ("a: *nope\n", "1:4", "*nope refers to an anchor that is not defined"),
    ("a: !foo x\n", "1:4", "YAML tags ('!name') are not supported here"),
    ("sources: []\n---\nexporters: []\n", "2:1", "a second YAML document ('---') in the config file"),
])
def test_yaml_errors_are_explained_at_the_line_to_fix(tmp_path: Path, text: str, location: str,
                                                      expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    ((_, message),) = info.value.problems
    assert message.startswith(f"{path}:{location}: {expected}"), message
    assert "(YAML parser: " in message         # the parser's words stay, as detail
    assert "\n" not in message                 # one line


def test_an_unrecognised_yaml_error_keeps_the_parser_text_with_the_location(tmp_path: Path) -> None:
    path = write(tmp_path, "exporters: [{name: e}]\n? [complex, key]\n: value\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert [message for _, message in info.value.problems] == [
        f"{path}:2:3: invalid YAML: while constructing a mapping, found unhashable key"]


def test_a_character_yaml_forbids_is_located_too(tmp_path: Path) -> None:
    path = write(tmp_path, "exporters: [{name: e}]\nstate_dir: a\x07b\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    ((_, message),) = info.value.problems
    assert message.startswith(f"{path}:2:13: the character U+0007 is not allowed in YAML: remove it (YAML reader: ")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert problems(tmp_path, "- a\n- b\n") == {"": "the top level must be a mapping (sources:, exporters:, …), "
                                                    "got a list"}


def test_unknown_mapping_is_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL.replace("name: app", "name: app\n    mapping: basetn"))
    assert "unknown mapping 'basetn' (did you mean 'baseten'?)" in found["sources[0].mapping"]


def test_auth_needs_exactly_one_credential(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        sources:
          - {name: a, url: "http://h/metrics", auth: {api_key: k1, bearer_token: k2}}
          - {name: b, url: "http://h/metrics", auth: {}}
        exporters: [{name: e}]
    """)
    assert "got api_key and bearer_token" in found["sources[0].auth"]
    assert "got none" in found["sources[1].auth"]


# ─── ${VAR} expansion ─────────────────────────────────────────────────────────────────────────


def test_env_expansion_defaults_and_escape(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
        sources:
          - name: "${NAME}"
            url: "http://${HOST:-127.0.0.1}:9100/metrics"
            interval: "${INTERVAL:-30s}"
            headers: {X-Price: "$$5", X-Empty: "${EMPTY:-fallback}"}
            auth: {api_key: "${KEY}"}
        exporters: [{name: e}]
    """), env={"NAME": "from-env", "KEY": "env-key-value", "EMPTY": ""})
    src = cfg.sources[0]
    assert src.name == "from-env"
    assert src.url == "http://127.0.0.1:9100/metrics"
    assert src.interval == 30.0
    assert src.headers == {"X-Price": "$5", "X-Empty": "fallback"}
    assert src.auth is not None and reveal(src.auth.api_key) == "env-key-value"


def test_missing_variable_names_it_and_its_path(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        sources:
          - {name: a, url: "http://h/metrics", auth: {api_key: "${BASETEN_API_KEY}"}}
        exporters: [{name: e, api_key: "${DD_KEY}", endpoint: "${BAD"}]
    """)
    assert found["sources[0].auth.api_key"].startswith("environment variable BASETEN_API_KEY is not set")
    assert found["exporters[0].api_key"].startswith("environment variable DD_KEY is not set")
    assert "invalid variable reference" in found["exporters[0].endpoint"]
    assert len(found) == 3   # the emptied values cause no follow-on errors


# ─── secrets from files ───────────────────────────────────────────────────────────────────────


def test_secret_files_are_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "key.txt").write_text("file-api-key\n")
    (tmp_path / "pw.txt").write_text("file-password")
    cfg = load_config(write(tmp_path, """
        sources:
          - {name: a, url: "http://h/metrics", auth: {api_key_file: key.txt}}
          - {name: b, url: "http://h/metrics", auth: {basic: {username: u, password_file: pw.txt}}}
        exporters: [{name: e}]
    """), env={})
    a, b = cfg.sources[0].auth, cfg.sources[1].auth
    assert a is not None and reveal(a.api_key) == "file-api-key"
    assert isinstance(a.api_key, Secret)
    assert b is not None and b.basic is not None and reveal(b.basic.password) == "file-password"


def test_missing_secret_file_is_a_problem_with_its_path(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        sources:
          - {name: a, url: "http://h/metrics", auth: {bearer_token_file: /nonexistent/token}}
        exporters: [{name: e, tls: {ca_file: missing-ca.pem}}]
    """)
    assert found["sources[0].auth.bearer_token_file"].startswith("cannot read '/nonexistent/token'")
    assert "missing-ca.pem" in found["exporters[0].tls.ca_file"]


def test_secrets_print_masked(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
        sources:
          - name: a
            url: http://h/metrics
            auth: {api_key: "${K}"}
            headers: {Authorization: "${H}", X-Team: visible}
        exporters: [{name: e, api_key: "${K2}"}]
    """), env={"K": "source-key-1", "H": "Bearer header-token", "K2": "exporter-key-2"})
    text = repr(cfg) + str(cfg) + f"{cfg}"
    for secret in ("source-key-1", "header-token", "exporter-key-2"):
        assert secret not in text
    assert "visible" in text


# ─── permissions ──────────────────────────────────────────────────────────────────────────────


def test_world_readable_file_with_literal_secret_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, MINIMAL.replace("url: http://127.0.0.1:9100/metrics",
                                           "url: http://127.0.0.1:9100/metrics\n    auth: {api_key: literal-k}"),
                 mode=0o644)
    with pytest.raises(ConfigError) as info:
        check_file_permissions(path, allow_insecure=False)
    message = str(info.value)
    assert f"chmod 600 {path}" in message
    assert "sources[0].auth.api_key" in message
    assert "literal-k" not in message
    caplog.set_level(logging.WARNING, logger="promotel")
    root = logging.getLogger("promotel")
    saved = root.propagate
    root.propagate = True
    try:
        check_file_permissions(path, allow_insecure=True)         # only a warning
    finally:
        root.propagate = saved
    assert any("chmod 600" in r.getMessage() for r in caplog.records)
    os.chmod(path, 0o600)
    check_file_permissions(path, allow_insecure=False)            # private: fine
    cfg = load_config(path, env={})
    assert config_has_secrets(cfg)


def test_world_readable_file_with_only_env_references_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("url: http://127.0.0.1:9100/metrics",
                                           "url: http://127.0.0.1:9100/metrics\n    auth: {api_key: \"${K}\"}"),
                 mode=0o644)
    check_file_permissions(path, allow_insecure=False)
    assert not config_has_secrets(load_config(path, env={"K": "from-environment"}))


# ─── no file: OTEL_EXPORTER_OTLP_* ────────────────────────────────────────────────────────────


SOURCE = SourceConfig(name="app", url="http://127.0.0.1:9100/metrics")


def test_config_from_env_reads_the_standard_variables() -> None:
    cfg = config_from_env({
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc%3D%3D,x-team=a%20b",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "Delta",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=prod,service.name=ignored",
        "OTEL_SERVICE_NAME": "bridge",
    }, sources=[SOURCE])
    (exp,) = cfg.exporters
    assert cfg.sources == [SOURCE]         # the variables configure no source: they come from the caller
    assert exp.endpoint == "http://collector:4318/v1/metrics"     # the signal path joins the base URL
    assert exp.protocol == "http/protobuf"
    assert {k: reveal(v) for k, v in exp.headers.items()} == {"api-key": "abc==", "x-team": "a b"}
    assert isinstance(exp.headers["api-key"], Secret)
    assert exp.timeout == 2.5                                    # milliseconds → seconds
    assert (exp.compression, exp.insecure, exp.temporality) == ("gzip", True, "delta")
    assert cfg.resource_attributes == {"deployment.environment.name": "prod", "service.name": "bridge"}


def test_config_from_env_metrics_variables_win() -> None:
    cfg = config_from_env({
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://general:4317",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "https://metrics.example/custom/path",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "lowmemory",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": __file__,
    }, sources=[SOURCE])
    exp = cfg.exporters[0]
    assert exp.endpoint == "https://metrics.example/custom/path"  # used as it is
    assert exp.protocol == "http/protobuf"
    assert exp.temporality == "delta"
    assert exp.tls is not None and exp.tls.ca_file == __file__


def test_config_from_env_with_nothing_set_is_one_default_exporter() -> None:
    cfg = config_from_env({}, sources=[SOURCE])
    assert isinstance(cfg, Config)
    assert [(e.name, e.endpoint, e.protocol) for e in cfg.exporters] == [("otlp", None, None)]


def test_without_a_file_there_is_nothing_to_scrape_and_the_error_says_to_pass_a_config() -> None:
    for load in (lambda: config_from_env({}), lambda: load_config(None, env={})):
        with pytest.raises(ConfigError) as info:
            load()
        assert info.value.source == "environment"
        ((where, message),) = info.value.problems
        assert where == ""
        assert message.startswith("nothing to scrape: without -c CONFIG only the OTEL_EXPORTER_OTLP_* variables")
        assert "'sources:' list" in message and "name and a url" in message and "promotel run -c CONFIG" in message


def test_config_from_env_reports_every_bad_variable() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_env({
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "soon",
            "OTEL_EXPORTER_OTLP_INSECURE": "maybe",
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "sometimes",
        }, sources=[SOURCE])
    found = dict(info.value.problems)
    assert "not supported" in found["OTEL_EXPORTER_OTLP_PROTOCOL"]
    assert "milliseconds" in found["OTEL_EXPORTER_OTLP_TIMEOUT"]
    assert set(found) == {"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_INSECURE",
                          "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"}


def test_without_sources_the_variables_problems_come_with_the_missing_sources() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_env({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
                         "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})
    found = dict(info.value.problems)
    # The protocol is refused, so port 4318 makes it OTLP/HTTP, which needs a scheme: every problem at once.
    assert set(found) == {"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_ENDPOINT", ""}
    assert found[""].startswith("nothing to scrape")


def test_preset_problems_of_the_environment_exporter_name_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_env({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "collector:4318",
                         "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, sources=[SOURCE])
    assert dict(info.value.problems) == {
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "'collector:4318': an OTLP/HTTP endpoint needs http:// or https://."}
    with pytest.raises(ConfigError) as info:
        config_from_env({"OTEL_EXPORTER_OTLP_CERTIFICATE": "/no/such/ca.pem"}, sources=[SOURCE])
    (path, message), = info.value.problems
    assert path == "OTEL_EXPORTER_OTLP_CERTIFICATE" and "cannot read '/no/such/ca.pem'" in message


# ─── no sources ───────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("sources", ["", "sources: []\n", "sources:\n"])
def test_a_config_without_sources_is_refused_with_what_to_add(tmp_path: Path, sources: str) -> None:
    found = problems(tmp_path, sources + "exporters: [{name: e}]\n")
    assert found == {"sources": "nothing to scrape: add at least one source, each with a name and a url, e.g. "
                                "'sources: [{name: app, url: \"http://127.0.0.1:9100/metrics\"}]'"}


def test_missing_sources_come_with_every_other_problem(tmp_path: Path) -> None:
    found = problems(tmp_path, "exporters: [{name: e, protocol: http/json}, {name: d, preset: datadog}]\n")
    assert set(found) == {"sources", "exporters[0].protocol", "exporters[1].api_key"}


# ─── schema and preset problems together ──────────────────────────────────────────────────────


def test_preset_problems_come_with_the_schema_problems(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        sources:
          - {name: a, url: "http://127.0.0.1:1/metrics", intervall: 5s}
        exporters:
          - {name: dd, preset: datadog, site: datadoghq.mars, temporality: cumulative}
          - {name: grafana, preset: grafana-cloud, zone: prod-eu-west-2, temporality: delta}
          - {name: broken, preset: honeycomb, timeout: soon}
          - {name: plain, endpoint: "collector:4318", protocol: http/protobuf}
    """)
    assert set(found) == {
        "sources[0].intervall",                      # schema
        "exporters[0].site", "exporters[0].api_key", "exporters[0].temporality",    # presets, all of them
        "exporters[1].instance_id", "exporters[1].token", "exporters[1].temporality",
        "exporters[2].timeout",                      # schema; its preset rules wait until it validates
        "exporters[3].endpoint",
    }
    assert "datadoghq.mars" in found["exporters[0].site"]
    assert "refuses delta" in found["exporters[1].temporality"]


def test_load_config_refuses_what_the_presets_refuse(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "  - {name: hc, preset: honeycomb, api_key: k}\n")
    assert set(found) == {"exporters[1].dataset"}


def test_self_telemetry_endpoint_is_checked_like_an_exporter_endpoint(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "self_telemetry: {endpoint: \"collector:4318\"}\n")
    assert found == {"self_telemetry.endpoint": "'collector:4318': an OTLP/HTTP endpoint needs http:// or https://."}
    found = problems(tmp_path, MINIMAL + "self_telemetry: {endpoint: \"ftp://collector\"}\n")
    assert found["self_telemetry.endpoint"].startswith("expected an http:// or https:// URL")
    cfg = load_config(write(tmp_path, MINIMAL + "self_telemetry: {endpoint: \"http://c:4317\"}\n"), env={})
    assert cfg.self_telemetry.endpoint == "http://c:4317"


# ─── PROMOTEL_STATE_DIR ───────────────────────────────────────────────────────────────────────


def test_promotel_state_dir_is_the_default_state_dir(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    assert load_config(path, env={"PROMOTEL_STATE_DIR": "/var/lib/promotel"}).state_dir == "/var/lib/promotel"
    assert load_config(path, env={"PROMOTEL_STATE_DIR": ""}).state_dir is None       # empty: unset
    assert load_config(path, env={}).state_dir is None
    cfg = load_config(write(tmp_path, MINIMAL + "state_dir:\n"), env={"PROMOTEL_STATE_DIR": "/srv/state"})
    assert cfg.state_dir == "/srv/state"                                            # null: not set either


def test_an_explicit_state_dir_wins_over_promotel_state_dir(tmp_path: Path) -> None:
    env = {"PROMOTEL_STATE_DIR": "/var/lib/promotel"}
    assert load_config(write(tmp_path, MINIMAL + "state_dir: /data/promotel\n"), env=env).state_dir == "/data/promotel"
    # An explicit empty value means "no state", even with the variable set.
    assert load_config(write(tmp_path, MINIMAL + "state_dir: \"\"\n"), env=env).state_dir == ""


def test_promotel_state_dir_applies_without_a_file_too() -> None:
    cfg = config_from_env({"PROMOTEL_STATE_DIR": "/var/lib/promotel"}, sources=[SOURCE])
    assert cfg.state_dir == "/var/lib/promotel"
    assert config_from_env({}, sources=[SOURCE]).state_dir is None


# ─── deprecated keys ──────────────────────────────────────────────────────────────────────────


@contextlib.contextmanager
def logged_warnings() -> Iterator[list[str]]:
    """The WARNING messages logged under ``promotel`` meanwhile, whatever handlers the CLI left installed."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Collect(logging.WARNING)
    root = logging.getLogger("promotel")
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    try:
        yield messages
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)


def test_deprecated_keys_load_with_one_warning_per_key(tmp_path: Path) -> None:
    path = write(tmp_path, """
        sources:
          - {name: a, url: "http://127.0.0.1:1/metrics", expire_after_scrapes: 3}
          - {name: b, url: "http://127.0.0.1:2/metrics", expire_after_scrapes: 9}
          - {name: c, url: "http://127.0.0.1:3/metrics"}
        exporters: [{name: e}]
        shard: 0/2
    """)
    with logged_warnings() as logged:
        cfg = load_config(path, env={})
    assert (cfg.sources[0].expire_after_scrapes, cfg.shard) == (3, "0/2")      # still accepted
    assert len(logged) == 2, logged
    expire = next(m for m in logged if "expire_after_scrapes" in m)
    assert expire.startswith(f"The config {path} sets sources[0].expire_after_scrapes, "
                             "sources[1].expire_after_scrapes, which has no effect")
    assert "staleness marker" in expire and "remove the key" in expire
    shard = next(m for m in logged if "expire_after_scrapes" not in m)
    assert shard.startswith(f"The config {path} sets shard, which has no effect") and "--shard INDEX/COUNT" in shard


def test_a_config_without_deprecated_keys_logs_no_warning(tmp_path: Path) -> None:
    with logged_warnings() as logged:
        load_config(write(tmp_path, MINIMAL), env={})
    assert logged == []


def test_deprecated_keys_are_still_validated(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        sources: [{name: a, url: "http://127.0.0.1:1/metrics", expire_after_scrapes: 0}]
        exporters: [{name: e}]
        shard: 2/2
    """)
    assert set(found) == {"sources[0].expire_after_scrapes", "shard"}
    assert "greater than or equal to 1" in found["sources[0].expire_after_scrapes"]


# ─── scrape_protocols, fallback_scrape_protocol (Prometheus's keys) ─────────────────────────────


def test_scrape_protocols_default_to_prometheus_3s_and_take_a_list(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
        sources:
          - {name: a, url: "http://127.0.0.1:1/metrics"}
          - name: b
            url: "http://127.0.0.1:2/metrics"
            scrape_protocols: [PrometheusText1.0.0, PrometheusText0.0.4]
            fallback_scrape_protocol: PrometheusText0.0.4
        exporters: [{name: e}]
    """), env={})
    a, b = cfg.sources
    assert a.scrape_protocols == ("OpenMetricsText1.0.0", "OpenMetricsText0.0.1", "PrometheusText1.0.0",
                                  "PrometheusText0.0.4")
    assert a.fallback_scrape_protocol is None
    assert b.scrape_protocols == ("PrometheusText1.0.0", "PrometheusText0.0.4")
    assert b.fallback_scrape_protocol == "PrometheusText0.0.4"


def test_scrape_protocol_problems_name_the_entry_and_what_to_write(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        sources:
          - {name: a, url: "http://127.0.0.1:1/metrics", scrape_protocols: [OpenMetricsText1.0.0, PrometheusProto]}
          - {name: b, url: "http://127.0.0.1:2/metrics", scrape_protocols: [openmetricstext1.0.0]}
          - {name: c, url: "http://127.0.0.1:3/metrics", scrape_protocols: []}
          - {name: d, url: "http://127.0.0.1:4/metrics", scrape_protocols: [PrometheusText0.0.4, PrometheusText0.0.4]}
          - {name: e, url: "http://127.0.0.1:5/metrics", fallback_scrape_protocol: PrometheusProto}
          - {name: f, url: "http://127.0.0.1:6/metrics", fallback_scrape_protocol: text}
          - {name: g, url: "http://127.0.0.1:7/metrics", scrape_protocols: PrometheusText0.0.4}
        exporters: [{name: e}]
    """)
    assert set(found) == {"sources[0].scrape_protocols[1]", "sources[1].scrape_protocols[0]",
                          "sources[2].scrape_protocols", "sources[3].scrape_protocols",
                          "sources[4].fallback_scrape_protocol", "sources[5].fallback_scrape_protocol",
                          "sources[6].scrape_protocols"}
    proto = found["sources[0].scrape_protocols[1]"]
    assert "protobuf" in proto and "not supported" in proto and "remove it" in proto
    assert found["sources[4].fallback_scrape_protocol"] == proto
    assert "did you mean 'OpenMetricsText1.0.0'?" in found["sources[1].scrape_protocols[0]"]
    assert "supported: OpenMetricsText0.0.1, OpenMetricsText1.0.0, PrometheusText0.0.4, PrometheusText1.0.0" \
        in found["sources[5].fallback_scrape_protocol"]
    assert "case-sensitive" in found["sources[5].fallback_scrape_protocol"]
    assert "must not be empty" in found["sources[2].scrape_protocols"]
    assert "remove the key for the default (OpenMetricsText1.0.0, " in found["sources[2].scrape_protocols"]
    assert "PrometheusText0.0.4 is listed twice" in found["sources[3].scrape_protocols"]
    assert found["sources[6].scrape_protocols"] == "expected a list, such as [PrometheusText0.0.4], got a string"


# ─── proxies (Prometheus's proxy_url, no_proxy, proxy_from_environment; the Collector's proxy_url) ─────


def test_proxy_keys_load_for_sources_and_exporters(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
        sources:
          - {name: a, url: "https://app.example/metrics", proxy_url: "http://proxy.corp:3128", no_proxy: ".corp,10.0.0.0/8"}
          - {name: b, url: "https://app.example/metrics", proxy_from_environment: false}
          - {name: c, url: "https://app.example/metrics"}
        exporters:
          - {name: e, endpoint: "https://otlp.example:4317", proxy_url: "http://proxy.corp:3128"}
          - {name: f, endpoint: "https://otlp.example/v1/metrics", proxy_from_environment: true}
    """), env={})
    a, b, c = cfg.sources
    assert (a.proxy_url, a.no_proxy, a.proxy_from_environment) == ("http://proxy.corp:3128", ".corp,10.0.0.0/8", None)
    assert (b.proxy_url, b.proxy_from_environment) == (None, False)
    assert (c.proxy_url, c.no_proxy, c.proxy_from_environment) == (None, None, None)
    assert cfg.exporters[0].proxy_url == "http://proxy.corp:3128"
    assert cfg.exporters[1].proxy_from_environment is True


def test_proxy_key_problems_use_prometheus_words(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        sources:
          - {name: a, url: "http://h/metrics", proxy_url: "http://p:3128", proxy_from_environment: true}
          - {name: b, url: "http://h/metrics", no_proxy: "localhost"}
          - {name: c, url: "http://h/metrics", proxy_url: "socks5://p:1080"}
          - {name: d, url: "http://h/metrics", proxy_url: "proxy.corp:3128"}
        exporters:
          - {name: e, endpoint: "http://h:4317", no_proxy: "x"}
          - {name: f, endpoint: "http://h:4317", proxy_url: "ftp://p"}
    """)
    assert found["sources[0].proxy_from_environment"].startswith(
        "if proxy_from_environment is configured, proxy_url must not be configured")
    assert found["sources[1].no_proxy"] == "if no_proxy is configured, proxy_url must also be configured"
    assert found["exporters[0].no_proxy"] == found["sources[1].no_proxy"]
    assert "SOCKS" in found["sources[2].proxy_url"]
    assert "expected an http:// or https:// proxy URL" in found["sources[3].proxy_url"]
    assert "expected an http:// or https:// proxy URL" in found["exporters[1].proxy_url"]


def test_a_proxy_password_is_masked_everywhere_and_counts_as_a_literal_secret(tmp_path: Path) -> None:
    text = """
        sources: [{name: a, url: "http://h/metrics", proxy_url: "http://me:pr0xy-Passw0rd@proxy.corp:3128"}]
        exporters: [{name: e, endpoint: "http://h:4317", proxy_url: "http://me:exp0rt-Passw0rd@proxy.corp:3128"}]
    """
    cfg = load_config(write(tmp_path, text), env={})
    assert redact_all("pr0xy-Passw0rd exp0rt-Passw0rd") == "*** ***"
    assert config_has_secrets(cfg)
    path = write(tmp_path, text, mode=0o644, name="open.yaml")
    with pytest.raises(ConfigError) as info:
        check_file_permissions(path, allow_insecure=False)
    assert "sources[0].proxy_url" in str(info.value) and "exporters[0].proxy_url" in str(info.value)
    assert "Passw0rd" not in str(info.value)
    # A bad proxy URL's message never shows its password either.
    found = problems(tmp_path, """
        sources: [{name: a, url: "http://h/metrics", proxy_url: "socks5://me:s0cks-Passw0rd@p:1080"}]
        exporters: [{name: e}]
    """)
    assert "s0cks-Passw0rd" not in found["sources[0].proxy_url"] and "me:" not in found["sources[0].proxy_url"]
