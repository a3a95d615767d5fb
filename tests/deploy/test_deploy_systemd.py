"""deploy/systemd: the unit is hardened, its command lines are valid promotel commands, and systemd accepts it.

``systemd-analyze`` (Debian/Ubuntu package ``systemd``) must be on PATH: the test fails, with the
command to install it, rather than pass without having checked anything.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.paths import REPO

from promotel.cli import build_parser

SYSTEMD = REPO / "deploy" / "systemd"
UNIT = SYSTEMD / "promotel.service"
BINARY = "/opt/promotel/bin/promotel"
CONFIG = "/etc/promotel/promotel.yaml"


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file as section → [(key, value), ...]; keys may repeat (SystemCallFilter=, Environment=)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"directive outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a KEY=VALUE line: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, list[tuple[str, str]]]:
    return parse_unit(UNIT.read_text())


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit[section] if k == key]


def one(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}= appears {len(found)} times"
    return found[0]


def seconds(text: str) -> float:
    """systemd time span: '30s', '5min', '1h 30s', a bare number = seconds."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        total += float(number) * units[unit]
    return total


HARDENING = {
    "DynamicUser": "yes",
    "StateDirectory": "promotel",
    "ConfigurationDirectory": "promotel",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "SystemCallArchitectures": "native",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "LockPersonality": "yes",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "MemoryDenyWriteExecute": "yes",
    "UMask": "0077",
    "Restart": "on-failure",
    "RestartSec": "5s",
    "EnvironmentFile": "-/etc/promotel/env",
    "Environment": "PROMOTEL_STATE_DIR=%S/promotel",
    "ExecReload": "/bin/kill -HUP $MAINPID",
}


def test_hardening_directives(unit: dict[str, list[tuple[str, str]]]) -> None:
    for key, expected in HARDENING.items():
        assert one(unit, "Service", key) == expected, key
    assert values(unit, "Service", "SystemCallFilter") == ["@system-service", "~@privileged @resources"]
    assert re.fullmatch(r"\d+[KMG]", one(unit, "Service", "MemoryMax"))


def test_restart_backoff_and_start_limit(unit: dict[str, list[tuple[str, str]]]) -> None:
    assert int(one(unit, "Service", "RestartSteps")) >= 1
    assert seconds(one(unit, "Service", "RestartMaxDelaySec")) > seconds(one(unit, "Service", "RestartSec"))
    assert seconds(one(unit, "Unit", "StartLimitIntervalSec")) > 0
    assert int(one(unit, "Unit", "StartLimitBurst")) >= 3


def test_stop_timeout_exceeds_flush_grace(unit: dict[str, list[tuple[str, str]]]) -> None:
    from promotel.service import GRACE_S

    assert seconds(one(unit, "Service", "TimeoutStopSec")) > GRACE_S + 5


def test_exec_lines_are_valid_promotel_commands(unit: dict[str, list[tuple[str, str]]]) -> None:
    pre = shlex.split(one(unit, "Service", "ExecStartPre"))
    start = shlex.split(one(unit, "Service", "ExecStart"))
    assert pre[0] == BINARY and start[0] == BINARY
    parser = build_parser()
    check = parser.parse_args(pre[1:])
    assert (check.command, check.offline, check.config) == ("check", True, CONFIG)
    run = parser.parse_args(start[1:])
    assert (run.command, run.config, run.once) == ("run", CONFIG, False)


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    assert path, ("systemd-analyze is needed to verify deploy/systemd/promotel.service; "
                  "install it with `apt-get install systemd` (Debian/Ubuntu) or `dnf install systemd`")
    return path


def runnable_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with the binary path pointed at this environment's promotel (verify checks it exists)."""
    promotel = Path(sys.executable).parent / "promotel"
    assert promotel.exists(), f"{promotel} is missing: install the project (pip install -e .)"
    copy = tmp_path / "promotel.service"
    copy.write_text((text if text is not None else UNIT.read_text()).replace(BINARY, str(promotel)))
    return copy


# Directives newer than some systemd versions still in use (Debian 12 ships 252); verify warns and
# the unit still works without them.
_NEWER_THAN_252 = {"RestartSteps", "RestartMaxDelaySec"}


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([systemd_analyze(), "verify", "--man=no", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    result = verify(runnable_copy(tmp_path))
    assert result.returncode == 0, result.stderr
    for line in (result.stdout + result.stderr).splitlines():
        match = re.search(r"Unknown key '(\w+)'", line)
        assert match and match.group(1) in _NEWER_THAN_252, f"unexpected systemd-analyze output: {line}"


def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    # The same check on a unit whose ExecStart points nowhere must fail: verify really looks.
    broken = UNIT.read_text().replace(f"ExecStart={BINARY}", "ExecStart=/nonexistent/promotel")
    result = verify(runnable_copy(tmp_path, broken))
    assert result.returncode != 0
    assert "/nonexistent/promotel" in result.stderr


def test_security_exposure_is_low(tmp_path: Path) -> None:
    # systemd's own score, 0 (locked down) … 10 (unprotected); --threshold is in tenths.
    result = subprocess.run([systemd_analyze(), "security", "--offline=yes", "--threshold=20",
                             str(runnable_copy(tmp_path))], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert score and float(score.group(1)) <= 2.0


def test_example_config_and_env_agree() -> None:
    config_text = (SYSTEMD / "promotel.yaml.example").read_text()
    config = yaml.safe_load(config_text)
    assert {s["mapping"] for s in config["sources"]} == {"baseten"}
    assert config["health"]["listen"] == "127.0.0.1:8888"
    assert config["state_dir"] == "${PROMOTEL_STATE_DIR:-/var/lib/promotel}"
    env_text = (SYSTEMD / "env.example").read_text()
    env_vars = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", env_text, re.MULTILINE))
    referenced = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)(?::-[^}]*)?\}", yaml.safe_dump(config)))
    # every secret the config needs is in the env template; the state dir comes from the unit
    assert referenced - {"PROMOTEL_STATE_DIR"} <= env_vars
    # the config holds no literal secrets: keys only as ${VAR}
    assert config["sources"][0]["auth"]["api_key"] == "${BASETEN_API_KEY}"
    assert config["exporters"][0]["api_key"] == "${DD_API_KEY}"


def test_readme_covers_install_and_checks() -> None:
    readme = (SYSTEMD / "README.md").read_text()
    for needle in ("python3 -m venv /opt/promotel", "/etc/promotel/promotel.yaml", "systemctl enable --now promotel",
                   "systemctl status promotel", "journalctl -u promotel", "127.0.0.1:8888/readyz"):
        assert needle in readme, needle


def test_example_config_loads_with_promotel(tmp_path: Path) -> None:
    from promotel.config import check_file_permissions, config_has_secrets, load_config

    path = tmp_path / "promotel.yaml"
    path.write_text((SYSTEMD / "promotel.yaml.example").read_text())
    # Mode 0644: the dynamic user must read it, and it holds no literal secret, so promotel accepts it.
    path.chmod(0o644)
    check_file_permissions(str(path))
    env = {"BASETEN_API_KEY": "k-baseten", "DD_API_KEY": "k-datadog", "PROMOTEL_STATE_DIR": "/var/lib/promotel"}
    config = load_config(str(path), env=env)
    assert not config_has_secrets(config)
    assert [s.name for s in config.sources] == ["baseten"]
    assert [e.name for e in config.exporters] == ["datadog"]
    assert config.state_dir == "/var/lib/promotel"


def test_exec_start_pre_accepts_the_example_and_refuses_a_broken_config(tmp_path: Path,
                                                                        unit: dict[str, list[tuple[str, str]]]) -> None:
    """Run the unit's ExecStartPre for real (binary and config path moved into this environment)."""
    promotel = str(Path(sys.executable).parent / "promotel")
    example = tmp_path / "promotel.yaml"
    example.write_text((SYSTEMD / "promotel.yaml.example").read_text())
    example.chmod(0o644)
    argv = [promotel if a == BINARY else str(example) if a == CONFIG else a
            for a in shlex.split(one(unit, "Service", "ExecStartPre"))]
    env = {"PATH": "/usr/bin:/bin", "BASETEN_API_KEY": "k-baseten", "DD_API_KEY": "k-datadog",
           "PROMOTEL_STATE_DIR": str(tmp_path / "state")}
    ok = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    example.write_text(example.read_text().replace("mapping: baseten", "mapping: no-such-mapping"))
    bad = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode != 0
    assert "no-such-mapping" in bad.stdout + bad.stderr
