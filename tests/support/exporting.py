"""Driving an ``ExporterPipeline`` in the export tests: an injected clock, one delivery run that submits,
flushes and closes, and a child interpreter killed with SIGKILL while it exports."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

from promotel.export.pipeline import ExporterPipeline
from promotel.model import TargetBatch


class FakeTime:
    """An injected clock and sleep: retries take no real time, and every delay is recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def deliver(p: ExporterPipeline, *batches: TargetBatch, timeout: float = 10.0) -> bool:
    """Submits ``batches``, runs the pipeline until ``flush(timeout)`` answers (True: everything
    delivered), then stops and closes it."""
    for b in batches:
        p.submit(b)
    task = asyncio.create_task(p.run())
    try:
        return await p.flush(timeout)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await p.aclose()


def read_until_killed(code: str, until: int, *, start: int, seconds: float = 20.0) -> int:
    """Runs ``code`` in a fresh interpreter that prints one integer a line, reads them until one reaches
    ``until`` (or the child stops printing, or ``seconds`` pass), then kills it with SIGKILL: mid-flight,
    with no chance to flush or close anything. Returns the last integer read (``start`` when none was)."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    last = start
    deadline = time.monotonic() + seconds
    try:
        assert proc.stdout is not None
        while last < until and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            last = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    return last
