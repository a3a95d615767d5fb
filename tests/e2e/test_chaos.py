"""Chaos: collectors that go down, come back, throttle and reset, and ``kill -9`` of the bridge at random moments —
every scrape the target served reaches every exporter.

The real CLI (``promotel run``, state_dir on the local disk) scrapes a ``SequenceTarget`` (every answer carries
the next number) every 0.5 s and sends it through four exporters:

* ``rotel_grpc`` and ``rotel_http`` — OTLP/gRPC and OTLP/HTTP to two real collectors (rotel, each forwarding to
  its own ``OTLPSink``), stopped (SIGTERM: rotel flushes what it accepted) and started again on the same ports;
* ``flaky_http`` (delta temporality) and ``flaky_grpc`` — fakes that also answer 503/429 with Retry-After,
  UNAVAILABLE/RESOURCE_EXHAUSTED with RetryInfo, reset connections before reading, and lose the answer to
  requests they recorded (``support.chaos``), and go down and up.

For about 22 s the bridge is killed with SIGKILL at random moments (0.7–2.5 s apart) and restarted at once with
the same state_dir, while each collector goes down for 0.5–3 s every 2–5 s. Then everything is up, the
bridge delivers its backlog and is stopped with SIGTERM. Checks, per exporter, on what the receivers decoded:

* **nothing lost**: every sequence number the target served arrived — except, per kill, possibly the last
  one served before it: a scrape whose answer the bridge was still reading or converting when it was killed
  never reached the queue (the scrape protocol has no acknowledgement; the test counts how often this
  happens, it is the only loss a kill can cause);
* **duplicates only within the in-flight bound**: at most one per kill (the request in flight) plus one per
  collector stop and per answer the collector lost (a request it took whose answer never came back);
* **delta, crash-consistent**: the delta points (duplicates removed by their time) are contiguous — each
  starts where the previous one ended — and add up to the counter's growth, so a kill neither lost an
  interval nor counted one twice.

``CHAOS_SEED`` replays a run's schedule (the seed is printed).
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from support.bridge import start_bridge, stop_bridge
from support.chaos import Faults, FlakyGrpcCollector, FlakyHttpCollector, SequenceTarget, sequences
from support.collector import Rotel, free_port
from support.sink import OTLPSink

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

INTERVAL_S = 0.5
CHAOS_S = 22.0


class RotelCollector:
    """rotel forwarding to its own sink; stop/start keep the same ports."""

    def __init__(self, workdir: Path) -> None:
        self.sink = OTLPSink().start()
        self.workdir = workdir
        self.grpc_port, self.http_port = free_port(), free_port()
        self.rotel: Rotel | None = None
        self.downs = 0
        self.starts = 0
        self.lost_answers = 0          # rotel never drops an answer on purpose

    def start(self) -> None:
        rotel = Rotel(self.sink.grpc_port, self.workdir / f"rotel{self.starts}")
        rotel.grpc_port, rotel.http_port = self.grpc_port, self.http_port
        self.rotel = rotel.start()
        self.starts += 1

    def stop(self) -> None:
        if self.rotel is not None:
            self.rotel.stop()
            self.rotel = None
            self.downs += 1

    def snapshot(self) -> list[Any]:
        return self.sink.snapshot()

    def close(self) -> None:
        self.stop()
        self.sink.stop()


def write_config(path: Path, state: Path, target: SequenceTarget, rotel_grpc: RotelCollector,
                 rotel_http: RotelCollector, flaky_http: FlakyHttpCollector, flaky_grpc: FlakyGrpcCollector) -> None:
    retry = "retry: {initial_interval: 0.05s, max_interval: 0.5s, max_elapsed: 1s}"
    path.write_text(f"""
state_dir: "{state}"
self_telemetry: {{enabled: false}}
sources:
  - {{name: seq, url: "{target.url}", interval: {INTERVAL_S}s, timeout: 0.45s}}
exporters:
  - {{name: rotel_grpc, endpoint: "http://127.0.0.1:{rotel_grpc.grpc_port}", protocol: grpc, {retry}}}
  - {{name: rotel_http, endpoint: "http://127.0.0.1:{rotel_http.http_port}/v1/metrics", protocol: http/protobuf,
      {retry}}}
  - {{name: flaky_http, endpoint: "{flaky_http.endpoint}", protocol: http/protobuf, temporality: delta, {retry}}}
  - {{name: flaky_grpc, endpoint: "{flaky_grpc.endpoint}", protocol: grpc, {retry}}}
""")
    path.chmod(0o600)


def test_kill_9_and_flapping_collectors_lose_nothing_served(tmp_path: Path) -> None:
    seed = int(os.environ.get("CHAOS_SEED", time.time_ns() % 1_000_000))
    print(f"\nchaos: CHAOS_SEED={seed}")
    rng = random.Random(seed)
    target = SequenceTarget().start()
    rotel_grpc, rotel_http = RotelCollector(tmp_path / "rg"), RotelCollector(tmp_path / "rh")
    flaky_http = FlakyHttpCollector(Faults(), seed=seed + 1)
    flaky_grpc = FlakyGrpcCollector(Faults(), seed=seed + 2)
    collectors: dict[str, Any] = {"rotel_grpc": rotel_grpc, "rotel_http": rotel_http, "flaky_http": flaky_http,
                                  "flaky_grpc": flaky_grpc}
    up = dict.fromkeys(collectors, True)
    for c in collectors.values():
        c.start()
    config, log = tmp_path / "promotel.yaml", tmp_path / "promotel.log"
    write_config(config, tmp_path / "state", target, rotel_grpc, rotel_http, flaky_http, flaky_grpc)

    # The schedule: kills, and per collector alternating down/up times.
    events: list[tuple[float, str, str]] = []
    t = 0.0
    while True:
        t += rng.uniform(0.7, 2.5)
        if t >= CHAOS_S:
            break
        events.append((t, "kill", ""))
    for name in collectors:
        t = rng.uniform(0.5, 3.0)
        while t < CHAOS_S:
            events.append((t, "down", name))
            t += rng.uniform(0.5, 3.0)
            events.append((min(t, CHAOS_S), "up", name))
            t += rng.uniform(2.0, 5.0)
    events.sort()

    kills: list[float] = []
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc = start_bridge(config, log)
        began = time.monotonic()
        for at, action, name in events:
            delay = began + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if action == "kill":
                kills.append(time.monotonic())
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
                proc = start_bridge(config, log)
            elif action == "down" and up[name]:
                collectors[name].stop()
                up[name] = False
            elif action == "up" and not up[name]:
                collectors[name].start()
                up[name] = True
        for name, c in collectors.items():
            if not up[name]:
                c.start()
                up[name] = True
        chaos_end = target.last

        def all_arrived() -> bool:
            served = {n for n, _ in target.served}
            return all(served - allowed_missing(target, kills) <= set(sequences(c.snapshot(), target.instance).sequence)
                       for c in collectors.values())

        deadline = time.monotonic() + 25
        while time.monotonic() < deadline and not (target.last >= chaos_end + 3 and all_arrived()):
            time.sleep(0.25)
        assert stop_bridge(proc) == 0, log.read_text(errors="replace")[-5000:]
        proc = None
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        rotel_grpc.stop()           # rotel flushes what it accepted to its sink on SIGTERM
        rotel_http.stop()
        flaky_http.stop()
        flaky_grpc.stop()
        target.stop()
    time.sleep(0.3)
    try:
        check(target, kills, collectors, log)
    finally:
        rotel_grpc.close()
        rotel_http.close()


def allowed_missing(target: SequenceTarget, kills: list[float]) -> set[int]:
    """Per kill, the last number served before it: the only scrape a kill can take with it (see the docstring)."""
    out = set()
    for k in kills:
        before = [n for n, at in target.served if at < k]
        if before:
            out.add(max(before))
    return out


def check(target: SequenceTarget, kills: list[float], collectors: dict[str, Any], log: Path) -> None:
    served = [n for n, _ in target.served]
    assert served == list(range(1, len(served) + 1))
    allowed = allowed_missing(target, kills)
    served_at = dict(target.served)
    # For a number a kill took: how long after its answer was written the kill came (the bridge's processing).
    taken = {n: min(k - served_at[n] for k in kills if k > served_at[n]) for n in allowed}
    report = [f"served {len(served)}, {len(kills)} kills"]
    failures = []
    for name, c in collectors.items():
        got = sequences(c.snapshot(), target.instance)
        counts = Counter(got.sequence)
        missing = set(served) - set(counts)
        duplicates = sum(n - 1 for n in counts.values() if n > 1)
        bound = len(kills) + c.downs + c.lost_answers
        lost = [(n, f"killed {taken.get(n, 0) * 1000:.0f} ms after") for n in sorted(missing)]
        report.append(f"{name}: missing {lost}, "
                      f"duplicates {duplicates} "
                      f"(bound {bound}: {len(kills)} kills + {c.downs} stops + {c.lost_answers} lost answers)")
        if not missing <= allowed:
            failures.append(f"{name} lost {sorted(missing - allowed)}")
        if duplicates > bound:
            failures.append(f"{name}: {duplicates} duplicates > {bound}")
        if got.deltas:
            unique = sorted(set(got.deltas), key=lambda d: d[1])
            gaps = [(a, b) for a, b in itertools.pairwise(unique) if b[0] != a[1]]
            if gaps:
                failures.append(f"{name}: delta points not contiguous: {gaps[:3]}")
            delivered = sorted(counts)
            # The first number is the baseline; the deltas add up to the growth of the counter since then.
            if sum(v for _, _, v in unique) != delivered[-1] - delivered[0]:
                failures.append(f"{name}: deltas add up to {sum(v for _, _, v in unique)}, the counter grew by "
                                f"{delivered[-1] - delivered[0]}")
            report.append(f"{name}: {len(unique)} delta points, contiguous, sum {sum(v for _, _, v in unique):g}")
    print("chaos: " + "\nchaos: ".join(report))
    assert not failures, "\n".join(failures + report) + "\n" + log.read_text(errors="replace")[-6000:]
    assert len(kills) >= 6 and len(served) >= 25, report
