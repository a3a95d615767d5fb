"""The real CLI, ``promotel run -c CONFIG``, as a subprocess: started and stopped one way for all tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

PROMOTEL = [sys.executable, "-m", "promotel.cli"]


def start_bridge(config: Path, log_path: Path, *global_flags: str,
                 wrap: Callable[[list[str]], list[str]] | None = None) -> subprocess.Popen[bytes]:
    """Start ``promotel [FLAGS] run -c CONFIG``; its output is appended to ``log_path`` (kept across restarts).
    ``wrap`` turns the command line into the one to run (support.resolvconf.with_resolv_conf: another resolver)."""
    argv = [*PROMOTEL, *global_flags, "run", "-c", str(config)]
    with open(log_path, "ab") as log:      # the child keeps its own copy of the descriptor
        return subprocess.Popen(wrap(argv) if wrap is not None else argv, stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def stop_bridge(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM (flush and exit), then the exit code; a bridge that does not stop in time is killed
    and the timeout raised, so a hang fails the test instead of the suite."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
        raise
