"""deploy/systemd: the unit is hardened, its command lines are valid promotel commands, systemd 252 accepts
it without a warning, and the documented install works as written: the README's ``install`` lines run into
a temporary root, the unit's ``ExecStartPre`` runs on the result as an unprivileged user, and the wheel the
README offers installs and runs.

``systemd-analyze`` (Debian/Ubuntu package ``systemd``) must be on PATH, and the install test must run as
root (CI does): both fail, saying so, rather than pass without having checked anything.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from promotel.cli import build_parser
from support.paths import REPO

SYSTEMD = REPO / "deploy" / "systemd"
UNIT = SYSTEMD / "promotel.service"
SYSTEMD_README = SYSTEMD / "README.md"
BINARY = "/opt/promotel/bin/promotel"
CONFIG = "/etc/promotel/promotel.yaml"
ENV_FILE = "/etc/promotel/env"
# nobody/nogroup on Debian: what a DynamicUser= looks like to file permissions (not root, not in root's group).
UNPRIVILEGED = 65534
AS_UNPRIVILEGED = Path(__file__).with_name("as_unprivileged.py")


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
    "RestartSec": "15s",
    "EnvironmentFile": "-/etc/promotel/env",
    "Environment": "PROMOTEL_STATE_DIR=%S/promotel",
    "ExecReload": "/bin/kill -HUP $MAINPID",
}


def test_hardening_directives(unit: dict[str, list[tuple[str, str]]]) -> None:
    for key, expected in HARDENING.items():
        assert one(unit, "Service", key) == expected, key
    assert values(unit, "Service", "SystemCallFilter") == ["@system-service", "~@privileged @resources"]
    assert re.fullmatch(r"\d+[KMG]", one(unit, "Service", "MemoryMax"))


# Directives systemd 252 (Debian 12, RHEL 9) does not know: it warns "Unknown key" at every verify and
# ignores them. The unit restarts after a fixed RestartSec instead of backing off exponentially.
NEWER_THAN_252 = {"RestartSteps", "RestartMaxDelaySec"}
# Baseten allows 6 requests per minute per organization, and every start scrapes each source once.
BASETEN_REQUESTS_PER_MINUTE = 6


def test_restart_delay_and_start_limit(unit: dict[str, list[tuple[str, str]]]) -> None:
    present = {key for section in unit.values() for key, _ in section}
    assert not present & NEWER_THAN_252, f"unknown to systemd 252: {sorted(present & NEWER_THAN_252)}"
    delay = seconds(one(unit, "Service", "RestartSec"))
    interval = seconds(one(unit, "Unit", "StartLimitIntervalSec"))
    burst = int(one(unit, "Unit", "StartLimitBurst"))
    assert burst >= 3
    # a crash loop stays within Baseten's budget ...
    assert 60 / delay < BASETEN_REQUESTS_PER_MINUTE
    # ... and ends: `burst` starts fit inside the interval, so a persistent failure reaches the start limit
    assert burst * delay < interval


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


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([systemd_analyze(), "verify", "--man=no", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # The copy runs this environment's promotel, so not even the binary path is left to complain about:
    # any output at all is a warning (an unknown key, a bad value, a missing file) and fails the test.
    result = verify(runnable_copy(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == "", f"systemd-analyze verify warned:\n{result.stdout}{result.stderr}"


def test_systemd_analyze_verify_reports_an_unknown_key(tmp_path: Path) -> None:
    # The silence above means something: the same check on a unit with a directive systemd does not know
    # prints a warning naming it.
    text = UNIT.read_text().replace("\nRestartSec=", "\nNoSuchDirective=yes\nRestartSec=", 1)
    result = verify(runnable_copy(tmp_path, text))
    assert "NoSuchDirective" in result.stdout + result.stderr


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


# ── the documented install, as written ──────────────────────────────────────────────────────────────────

def sh_block_after(path: Path, heading: str) -> str:
    """The first ```sh block after the line ``heading`` in a Markdown file."""
    text = path.read_text()
    lines = text.splitlines()
    assert heading in lines, f"{path.name}: no heading {heading!r}"
    rest = "\n".join(lines[lines.index(heading) + 1:])
    match = re.search(r"^```sh\n(.*?)^```$", rest, re.MULTILINE | re.DOTALL)
    assert match, f"{path.name}: no sh block after {heading!r}"
    return match.group(1)


def install_commands() -> list[list[str]]:
    """The systemd install block of deploy/systemd/README.md, one argv per command, ``sudo`` removed."""
    commands = []
    for line in sh_block_after(SYSTEMD_README, "## Install").splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            commands.append(argv[1:] if argv[0] == "sudo" else argv)
    return commands


def test_both_readmes_show_the_same_install_block() -> None:
    assert sh_block_after(REPO / "README.md", "### As a systemd service") == \
        sh_block_after(SYSTEMD_README, "## Install")


def install_lines() -> list[list[str]]:
    return [argv for argv in install_commands() if argv[0] == "install"]


def install_destination(argv: list[str]) -> str:
    return argv[-1]


def install_mode(destination: str) -> int:
    """The mode the README's ``install -m MODE ... DESTINATION`` line gives ``destination``."""
    (line,) = [argv for argv in install_lines() if install_destination(argv) == destination]
    return int(line[line.index("-m") + 1], 8)


def test_install_block_steps_are_known() -> None:
    """Every step of the block is one this file checks; a new kind of step needs a check here first."""
    pip = str(Path(BINARY).with_name("pip"))
    venv = Path(BINARY).parent.parent
    for argv in install_commands():
        if argv[0] == "install":
            continue  # run by test_readme_install_then_exec_start_pre_as_an_unprivileged_user
        elif argv[:3] == ["python3", "-m", "venv"]:
            assert argv[3:] == [str(venv)], "the venv must be the one the unit's ExecStart runs from"
        elif argv[0] == pip:
            # From the checkout (promotel is not on PyPI); the wheel alternative: test_install_from_a_built_wheel
            assert argv[1:] == ["install", "."], argv
        elif argv[0] == "sudoedit":
            assert set(argv[1:]) == {CONFIG, ENV_FILE}
        elif argv[0] == "systemctl":
            # No systemd as PID 1 here: the unit itself is checked by systemd-analyze verify above.
            assert argv[1:] in (["daemon-reload"], ["enable", "--now", "promotel"]), argv
        else:
            raise AssertionError(f"an install step this test does not know: {shlex.join(argv)}")


def test_readme_modes_keep_secrets_root_only() -> None:
    config, env = install_mode(CONFIG), install_mode(ENV_FILE)
    assert config & stat.S_IROTH, "the DynamicUser reads the config as 'other'"
    assert not config & (stat.S_IWGRP | stat.S_IWOTH)
    assert env & 0o077 == 0, "the secrets file is root-only (systemd reads it as root)"
    for destination in (CONFIG, ENV_FILE):
        (line,) = [argv for argv in install_lines() if install_destination(argv) == destination]
        assert ["-o", "root"] == line[line.index("-o"):line.index("-o") + 2]
        assert ["-g", "root"] == line[line.index("-g"):line.index("-g") + 2]


def test_unit_documentation_is_installed_by_the_readme(unit: dict[str, list[tuple[str, str]]]) -> None:
    urls = " ".join(values(unit, "Unit", "Documentation")).split()
    assert urls and "pypi.org" not in UNIT.read_text()
    installed = {install_destination(argv): argv[-2] for argv in install_lines()}
    for url in urls:
        assert url.startswith("file:/"), f"{url}: point to a file the README installs"
        path = url.removeprefix("file:")
        assert installed.get(path) == "deploy/systemd/README.md", f"no README step installs {path}"


_INSTALL_OPTIONS_WITH_VALUE = {"-m", "-o", "-g", "-t", "-S", "--mode", "--owner", "--group"}


def run_install_line(argv: list[str], root: Path) -> None:
    """Run one README ``install`` line: absolute paths moved under ``root``, relative ones from the checkout."""
    moved = argv[:1]
    takes_value = False
    for arg in argv[1:]:
        if takes_value or arg.startswith("-"):
            moved.append(arg)
            takes_value = arg in _INSTALL_OPTIONS_WITH_VALUE
            continue
        moved.append(str(root / arg.lstrip("/")) if arg.startswith("/") else str(REPO / arg))
    done = subprocess.run(moved, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, f"{shlex.join(argv)} failed: {done.stderr}"


def environment_file(path: Path) -> dict[str, str]:
    """systemd EnvironmentFile= syntax: VAR=value lines, '#' or ';' comments, optional quotes."""
    env: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()), f"{path}: bad line {raw!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


@pytest.fixture
def sysroot() -> Iterator[Path]:
    """An empty root directory others can traverse (pytest's tmp_path lives under a 0700 directory)."""
    if os.geteuid() != 0:
        pytest.fail("the systemd install test must run as root (CI does): it installs root-owned files as the "
                    "README says and runs promotel as uid 65534 on them; run it with sudo")
    root = Path(tempfile.mkdtemp(prefix="promotel-sysroot-"))
    try:
        root.chmod(0o755)
        # what every system already has
        for directory in ("etc/systemd/system", "usr/share/doc", "var/lib"):
            (root / directory).mkdir(parents=True, mode=0o755)
        yield root
    finally:
        shutil.rmtree(root)


def test_readme_install_then_exec_start_pre_as_an_unprivileged_user(
        sysroot: Path, unit: dict[str, list[tuple[str, str]]]) -> None:
    """The README's install lines, then the unit's ExecStartPre as a non-root user with the env file's secrets.

    This is the path a user follows: with the config at 0600 (the old README) the dynamic user got
    ``Permission denied``; the last step shows this test would catch that again.
    """
    for argv in install_lines():
        run_install_line(argv, sysroot)
    config, env_file = sysroot / CONFIG.lstrip("/"), sysroot / ENV_FILE.lstrip("/")
    # The modes on disk are the README's (parsed from it above), root-owned.
    for path, destination in ((config, CONFIG), (env_file, ENV_FILE)):
        info = path.stat()
        assert stat.S_IMODE(info.st_mode) == install_mode(destination), destination
        assert (info.st_uid, info.st_gid) == (0, 0), destination
    assert (sysroot / "etc/systemd/system/promotel.service").read_text() == UNIT.read_text()
    assert stat.S_IMODE((sysroot / "etc/promotel").stat().st_mode) == 0o755

    # What systemd gives the service: EnvironmentFile= read as root, Environment=, StateDirectory= owned by it.
    env = environment_file(env_file)
    secrets = {k: v for k, v in env.items() if k.endswith("_KEY")}
    assert secrets, "env.example holds the API keys"
    state_var, _, state_dir = one(unit, "Service", "Environment").partition("=")
    state = sysroot / state_dir.replace("%S", "/var/lib").lstrip("/")
    state.mkdir(mode=0o700)
    os.chown(state, UNPRIVILEGED, UNPRIVILEGED)
    run_env = {"PATH": "/usr/bin:/bin", **env, state_var: str(state)}
    if os.environ.get("PYTHONPATH"):
        run_env["PYTHONPATH"] = os.environ["PYTHONPATH"]

    pre = shlex.split(one(unit, "Service", "ExecStartPre"))
    assert pre[0] == BINARY
    args = [str(config) if a == CONFIG else a for a in pre[1:]]

    def exec_start_pre() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(AS_UNPRIVILEGED), str(UNPRIVILEGED), str(UNPRIVILEGED), *args],
                              env=run_env, cwd=sysroot, capture_output=True, text=True, timeout=120, check=False)

    ok = exec_start_pre()
    output = ok.stdout + ok.stderr
    assert ok.returncode == 0, output
    assert f"config {config}: OK (1 source, 1 exporter)" in output
    for value in secrets.values():
        assert value not in output

    # The old README's mode: the unprivileged user cannot read it, and says so.
    config.chmod(0o600)
    refused = exec_start_pre()
    assert refused.returncode != 0
    assert "Permission denied" in refused.stdout + refused.stderr


def project_version() -> str:
    import tomllib

    version: str = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    return version


def test_install_from_a_built_wheel(tmp_path: Path) -> None:
    """The README's alternative to ``pip install .``: ``pip wheel --no-deps -w dist .``, then install the wheel.

    The wheel is built from a copy of what the build reads (pyproject.toml, README.md, src/: the same as
    the container build), so the test leaves no build/ or egg-info in the checkout. It is installed with
    ``--target`` into an empty directory; its dependencies come from this environment.
    """
    source = tmp_path / "checkout"
    source.mkdir()
    shutil.copy2(REPO / "pyproject.toml", source)
    shutil.copy2(REPO / "README.md", source)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "-w", "dist", "."], cwd=source,
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, f"pip wheel failed (it fetches setuptools for the build):\n{built.stderr[-3000:]}"
    (wheel,) = (source / "dist").glob("promotel-*.whl")
    assert wheel.name == f"promotel-{project_version()}-py3-none-any.whl"

    # The entry points the CLI and the mapping plugins are found by.
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = f"promotel-{project_version()}.dist-info"
        points = configparser.ConfigParser()
        points.read_string(archive.read(f"{dist_info}/entry_points.txt").decode())
    assert dict(points["promotel.mappings"]) == {
        "passthrough": "promotel.mappings.passthrough:PLUGIN",
        "baseten": "promotel.mappings.baseten:PLUGIN",
        "sambanova": "promotel.mappings.sambanova:PLUGIN"}
    assert dict(points["console_scripts"]) == {"promotel": "promotel.cli:main"}
    assert {"promotel/py.typed", "promotel/cli.py", "promotel/mappings/baseten.py"} <= names

    target = tmp_path / "target"
    installed = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
                               capture_output=True, text=True, timeout=300, check=False)
    assert installed.returncode == 0, installed.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": str(target)}

    def run(*argv: str) -> str:
        done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{shlex.join(argv)}: {done.stderr}"
        return done.stdout

    # It runs from the wheel, not from the checkout this test runs from.
    where = run(sys.executable, "-c", "import promotel; print(promotel.__file__)")
    assert Path(where.strip()).is_relative_to(target)
    assert run(sys.executable, "-m", "promotel.cli", "--version").strip() == f"promotel {project_version()}"
    listing = run(str(target / "bin" / "promotel"), "mappings")
    for name in ("passthrough", "baseten", "sambanova"):
        assert re.search(rf"^\s+{name}\s", listing, re.MULTILINE), listing
