"""Stopping the helper processes the tests start (collectors, Prometheus, dnsmasq)."""

from __future__ import annotations

import subprocess
from typing import Any


def terminate(proc: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM, then SIGKILL when ``proc`` has not exited within ``grace`` seconds; waits for it either way,
    so no process outlives the test that started it."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)
