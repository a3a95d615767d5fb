"""Debian's Prometheus binary (2.42), run on loopback as the reference the differential tests compare with."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from promotel.errors import ConfigError
from support.collector import free_port
from support.processes import terminate

PROMETHEUS = Path("/usr/bin/prometheus")
MISSING = ("is missing: these tests compare promotel with the real Prometheus; `make test` installs it "
           "(Debian package 'prometheus')")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


class Prometheus:
    """A running Prometheus: its API base URL, and a bounded wait that fails at once if the process exits."""

    def __init__(self, proc: subprocess.Popen[bytes], api: str, log: Path) -> None:
        self.proc, self.api, self.log = proc, api, log

    def get(self, path: str) -> Any:
        """``data`` of ``/api/v1/<path>``, or None while the API does not answer."""
        try:
            return get_json(f"{self.api}/{path}")["data"]
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def wait_for(self, ready: Callable[[], bool], deadline_s: float) -> bool:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"prometheus exited with {self.proc.returncode}:\n{self.log.read_text()}")
            if ready():
                return True
            time.sleep(0.5)
        return False

    def listed_targets(self, want: int, deadline_s: float) -> dict[str, Any]:
        """``/api/v1/targets`` data once it lists ``want`` targets (active plus dropped), or the last answer
        when ``deadline_s`` passes first: the caller's comparison then says what is missing."""
        data: dict[str, Any] = {}

        def listed_all() -> bool:
            nonlocal data
            data = self.get("targets") or {}
            return target_count(data) >= want

        self.wait_for(listed_all, deadline_s)
        return data


@contextmanager
def running_prometheus(workdir: Path, config: Mapping[str, Any], *,
                       wrap: Callable[[list[str]], list[str]] | None = None) -> Iterator[Prometheus]:
    """Write ``config`` as prometheus.yml in ``workdir``, run Prometheus on a free loopback port, stop it after.
    ``wrap`` turns the command line into the one to run (support.resolvconf.with_resolv_conf: another resolver)."""
    if not PROMETHEUS.exists():
        pytest.fail(f"{PROMETHEUS} {MISSING}")
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(dict(config), allow_unicode=True, sort_keys=False))
    port = free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        argv = [str(PROMETHEUS), f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
        proc = subprocess.Popen(wrap(argv) if wrap is not None else argv, stdout=log, stderr=subprocess.STDOUT,
                                cwd=workdir)
        try:
            yield Prometheus(proc, f"http://127.0.0.1:{port}/api/v1", log_path)
        finally:
            terminate(proc, 15)


def target_count(data: Mapping[str, Any] | None) -> int:
    """Active plus dropped targets in a ``/api/v1/targets`` answer."""
    data = data or {}
    return len(data.get("activeTargets", [])) + len(data.get("droppedTargets", []))


PROMTOOL = Path("/usr/bin/promtool")


def promtool_agrees(tmp: Path, scrape_config: dict[str, Any], ours: Callable[[], object], *,
                    syntax_only: bool = False) -> tuple[str, str | None]:
    """Checks a prometheus.yml holding ``scrape_config`` with ``promtool check config`` (``--syntax-only``: no
    file it names must exist) and runs ``ours`` (promotel's parser on the same config); asserts that both find
    it valid or both refuse it. Returns Prometheus's message (without the file prefix) and promotel's first
    problem (None when it accepted the config)."""
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} {MISSING}")
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump({"scrape_configs": [scrape_config]}, allow_unicode=True))
    argv = [str(PROMTOOL), "check", "config", *(["--syntax-only"] if syntax_only else []), str(path)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    out = proc.stdout + proc.stderr
    marker = f"parsing YAML file {path}: "
    prom_message = out.split(marker, 1)[1].strip() if marker in out else out
    try:
        ours()
    except ConfigError as exc:
        problem: str | None = exc.problems[0][1]
    else:
        problem = None
    assert (proc.returncode == 0) == (problem is None), (
        f"Prometheus: {prom_message or 'valid'}; promotel: {problem or 'valid'}")
    return prom_message, problem
