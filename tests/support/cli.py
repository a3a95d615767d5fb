"""The real command line as a subprocess, for the behaviour only a real process shows (pipes, exit codes)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.bridge import PROMOTEL


def run_into_closed_pipe(args: list[str], tmp_path: Path) -> tuple[int, str]:
    """Run promotel with a stdout pipe whose reader is gone before the first write (like ``| head`` exiting)."""
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([*PROMOTEL, *args], stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        proc.stdout.close()        # promotel needs far longer than this to import and start writing
        code = proc.wait(timeout=60)
    return code, err_path.read_text()
