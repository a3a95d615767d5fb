"""A full disk under the state_dir: the real error logged, delivery never blocked, drops counted exactly, and
persisting resumes once the backlog is delivered.

The real CLI (``promotel run``) scrapes a ``SequenceTarget`` whose answers are large (3000 filler series, about
200 KB per request) every 0.3 s and sends them to an ``OTLPSink`` over gRPC. The state_dir is

* ``tmpfs``: a 4 MiB tmpfs mounted for the test (root, where mounting is permitted), or
* ``rlimit``: the local disk with ``RLIMIT_FSIZE`` = 2 MiB on the bridge process, so that writes past it fail
  (EFBIG; the bridge ignores SIGXFSZ).

The collector goes down: the queue fills the state_dir until writing fails; batches are then kept in memory
(``queue_size: 4``) and what does not fit is dropped, counted by reason. The collector comes back: sending
resumes at once, from memory and from disk, and once the backlog is delivered and its rows deleted the file
is compacted and persisting resumes (on the tmpfs; under the file-size limit the database file itself can
reach it, and then SQLite cannot even delete, so the exporter stays in memory-only mode). Checks: the log
carries SQLite's own error (never "cannot rollback"), every served sequence number arrived but those the drop
counters account for (points per batch × missing scrapes = points dropped), /readyz said 503 while dropping,
sending resumed within seconds of the collector's return.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.bridge import PROMOTEL
from support.chaos import SequenceTarget, sequences
from support.collector import free_port
from support.sink import OTLPSink

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

FILLER = 3000
POINTS_PER_BATCH = FILLER + 2 + 4        # filler, chaos_sequence, chaos_scrapes_total, up and 3 scrape_* series
FSIZE_LIMIT = 2 * 1024 * 1024


@pytest.fixture()
def small_fs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    mode = request.param
    state = tmp_path / "state"
    state.mkdir()
    if mode == "tmpfs":
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root; the rlimit variant covers this machine")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(state)], capture_output=True,
                              text=True, timeout=30, check=False)
        if done.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not permitted here ({done.stderr.strip()}); the rlimit variant runs")
        try:
            yield state
        finally:
            subprocess.run(["umount", "-l", str(state)], capture_output=True, timeout=30, check=False)
    else:
        yield state


def get_json(port: int, path: str) -> Any:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def start(config: Path, log: Path, limit: int | None) -> subprocess.Popen[bytes]:
    """``promotel run``; with ``limit``, under RLIMIT_FSIZE (its output through a pipe: the log file is not
    limited)."""

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.Popen([*PROMOTEL, "run", "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}, preexec_fn=limited)

    def copy() -> None:
        assert proc.stdout is not None
        with open(log, "ab") as out:
            for line in proc.stdout:
                out.write(line)
                out.flush()

    threading.Thread(target=copy, daemon=True).start()
    return proc


def wait(cond: Callable[[], bool], timeout: float, what: str, log: Path,
         detail: Callable[[], Any] = lambda: "") -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.1)
    if cond():
        return time.monotonic() - t0
    raise AssertionError(f"timed out after {timeout} s waiting for {what}: {detail()}\n"
                         f"{log.read_text(errors='replace')[-5000:]}")


@pytest.mark.parametrize("small_fs", ["tmpfs", "rlimit"], indirect=True)
def test_a_full_disk_loses_only_what_the_memory_bound_drops_and_persisting_resumes(small_fs: Path,
                                                                                    tmp_path: Path) -> None:
    limit = None if "tmpfs" in str(os.popen(f"stat -f -c %T {small_fs}").read()) else FSIZE_LIMIT
    target = SequenceTarget().start(filler=FILLER)
    sink = OTLPSink().start()
    grpc_port, health = sink.grpc_port, free_port()
    config = tmp_path / "promotel.yaml"
    config.write_text(f"""
state_dir: "{small_fs}"
self_telemetry: {{enabled: false}}
health: {{listen: "127.0.0.1:{health}", unready_after: 2s}}
sources:
  - {{name: seq, url: "{target.url}", interval: 0.3s, timeout: 0.28s}}
exporters:
  - name: sink
    endpoint: "http://127.0.0.1:{grpc_port}"
    queue_size: 4
    retry: {{initial_interval: 0.05s, max_interval: 0.5s, max_elapsed: 0.5s}}
""")
    config.chmod(0o600)
    log = tmp_path / "promotel.log"
    proc = start(config, log, limit)

    def exporter() -> dict[str, Any]:
        st = get_json(health, "/status")
        return st["exporters"]["sink"] if st else {}

    def delivered() -> set[int]:
        return set(sequences(sink.snapshot(), target.instance).sequence)

    try:
        wait(lambda: len(delivered()) >= 3, 20, "the first deliveries", log)
        sink.stop(grace=0.5)
        # The queue fills the state_dir; then batches wait in memory and the oldest of those are dropped.
        wait(lambda: exporter().get("dropped", {}).get("storage_error", 0) >= 2 * POINTS_PER_BATCH, 40,
             "a full disk and drops", log)
        st = exporter()
        assert st["storage"]["state"] == "fault", st
        code, why = readyz(health)
        assert code == 503 and "dropping data" in why and "storage_error" in why, why
        sink.start(port=grpc_port)
        up_at = target.last
        resumed = wait(lambda: any(n > up_at for n in delivered()), 5, "delivery after the collector is back", log)
        print(f"\ndisk full ({'tmpfs' if limit is None else 'RLIMIT_FSIZE'}): sending resumed {resumed:.1f} s after "
              f"the collector came back")
        if limit is None:
            # A full disk: persisting resumes once the backlog is delivered (its rows deleted with the space of the
            # reserve, the file compacted). Under a file-size limit the database file itself may have reached it,
            # and SQLite cannot delete without growing its WAL: it stays in memory-only mode (see the README).
            wait(lambda: exporter().get("storage", {}).get("state") == "ok"
                 and exporter().get("persisted_requests", 1) <= 2, 30, "persisting to resume", log,
                 lambda: (exporter(), {f: os.path.getsize(small_fs / f) for f in os.listdir(small_fs)}))
        ok_at = target.last
        wait(lambda: ok_at + 3 <= max(delivered(), default=0) and readyz(health)[0] == 200, 20,
             "steady delivery and readiness", log)
        final = exporter()
        delivered_by_then = delivered()       # the same moment: later scrapes are not in ``final``'s counters
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=30) == 0
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            time.sleep(1)
            raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        sink.stop()
        target.stop()
    time.sleep(0.2)
    text = log.read_text(errors="replace")
    assert "cannot rollback" not in text
    faults = [ln for ln in text.splitlines() if "cannot persist its queue" in ln]
    assert faults, text[-3000:]
    assert any(m in faults[0] for m in ("database or disk is full", "disk I/O error")), faults[0]
    if limit is None:
        assert "writes its state database again" in text
    # Exact accounting: what did not arrive is what the counters say was dropped.
    served = {n for n, _ in target.served}
    missing = served - delivered()
    dropped = final["dropped"]
    assert set(dropped) == {"storage_error"}, dropped
    assert len(missing) * POINTS_PER_BATCH == dropped["storage_error"], (sorted(missing), dropped)
    # Everything the collector had when ``final`` was read was counted as sent, but the one request the exporter
    # may have had in flight then (acknowledged by the collector, its counter not yet advanced).
    assert final["sent_points"] >= POINTS_PER_BATCH * (len(delivered_by_then) - 1)
    print(f"disk full: served {len(served)}, dropped {len(missing)} scrapes ({dropped}), errors "
          f"{final['storage']['errors']}")
    assert sys.platform.startswith("linux")
