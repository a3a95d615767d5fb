"""The write-ahead queue: durable before the first send, storage faults survived, damaged files moved aside,
0.1 files adopted, 413 split, honest readiness — against a scripted sender, with an injected clock."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms

from promotel.errors import ExportError
from promotel.export.delta import stored_series, target_key
from promotel.export.outcome import SendOutcome
from promotel.export.pipeline import ExporterPipeline
from promotel.export.presets import resolve_exporter
from promotel.export.spool import PAGE_SIZE, ExporterStore, Spool, spool_path, store_path
from promotel.model import Kind, Metric, NumberPoint, TargetBatch
from support.exporting import FakeTime, deliver, read_until_killed
from support.fake_intakes import HttpReceiver, Retry, encode_one, exporter_config, make_batch
from support.paths import TESTS as TESTS_DIR


class ScriptedSender:
    """A sender that records what it was given. ``fail`` (a callable on the request) may raise instead;
    ``too_large_above``: an HTTP 413 as the HTTP sender reports it, for requests above that size."""

    def __init__(self) -> None:
        self.attempts: list[bytes] = []
        self.accepted: list[bytes] = []
        self.fail: Callable[[bytes], None] | None = None
        self.too_large_above: int | None = None

    async def send(self, request: bytes) -> SendOutcome:
        await asyncio.sleep(0)
        self.attempts.append(request)
        if self.too_large_above is not None and len(request) > self.too_large_above:
            raise ExportError(f"answered HTTP 413: request of {len(request)} bytes is too large", exporter="test",
                              retryable=False, kind="too_large")
        if self.fail is not None:
            self.fail(request)
        self.accepted.append(request)
        return SendOutcome()

    async def aclose(self) -> None:
        pass

    def targets(self) -> list[str]:
        out = []
        for raw in self.accepted:
            for rm in ms.ExportMetricsServiceRequest.FromString(raw).resource_metrics:
                out.append({kv.key: kv.value.string_value for kv in rm.resource.attributes}["service.name"])
        return out


def down(_request: bytes) -> None:
    raise ExportError("connection refused", exporter="test", retryable=True, kind="connect")


def make(sender: ScriptedSender, state: Path | None, *, ft: FakeTime | None = None,
         wall: Callable[[], float] | None = None,
         split: Callable[[bytes], list[bytes]] | None = None, **kw: Any) -> ExporterPipeline:
    kw.setdefault("retry", Retry(initial_interval=1.0, max_interval=2.0, max_elapsed=3.0))
    ft = ft or FakeTime()
    resolved = resolve_exporter(exporter_config(endpoint="http://127.0.0.1:1", protocol="http/protobuf", **kw), env={})
    return ExporterPipeline(resolved, sender=sender, state_dir=str(state) if state else None, clock=ft.clock,
                            sleep=ft.sleep, rng=lambda: 1.0, split=split, wall=wall or time.time)


async def run_until(p: ExporterPipeline, cond: Callable[[], bool], steps: int = 2000) -> bool:
    task = asyncio.create_task(p.run())
    try:
        for _ in range(steps):
            if cond():
                return True
            await asyncio.sleep(0)
        return cond()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def rows(path: str, sql: str = "SELECT COUNT(*) FROM queue") -> Any:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def delta_rows(path: str, exporter: str = "test") -> Any:
    """The delta state's series in the state database (one value row per target, decoded)."""
    db = sqlite3.connect(path)
    try:
        return stored_series(db, exporter)
    finally:
        db.close()


def counter_batch(target: str, value: float, t: int,
                  resource: tuple[tuple[str, Any], ...] | None = None) -> TargetBatch:
    point = NumberPoint((("k", "a"),), value, start_ns=1, time_ns=t)
    metric = Metric("jobs", "", "1", Kind.SUM, (point,), monotonic=True, prom_type="counter")
    return TargetBatch(target, resource if resource is not None else (("service.name", target),), (metric,), t)


# ─── durable before the first send ───────────────────────────────────────────────────────────

def test_a_batch_is_on_disk_with_its_delta_state_before_the_first_send_attempt(tmp_path: Path) -> None:
    sender = ScriptedSender()
    p = make(sender, tmp_path, temporality="delta")
    path = store_path(str(tmp_path), "test")
    assert p.durable and p.status()["storage"] == {"path": path, "state": "ok", "error": None, "errors": {}}
    p.submit(counter_batch("jobs", 5.0, 10))
    p.submit(counter_batch("jobs", 7.0, 20))
    # No worker ran: nothing was sent, yet the second batch's request (the first is the delta baseline: no
    # point, no request) and the delta state after it are committed.
    assert sender.attempts == []
    assert rows(path) == [(1,)]
    key = target_key("jobs", (("service.name", "jobs"),))
    assert [(r.target, r.value, r.time_ns) for r in delta_rows(path)] == [(key, 7.0, 20)]
    assert p.status()["persisted_requests"] == 1 and p.status()["spool_requests"] == 1

    async def go() -> bool:
        return await run_until(p, lambda: len(sender.accepted) == 1 and not p.status()["persisted_requests"])

    assert asyncio.run(go())
    assert rows(path) == [(0,)]                   # acknowledged requests are deleted
    asyncio.run(p.aclose())


def test_requests_queued_behind_a_retrying_one_are_already_on_disk(tmp_path: Path) -> None:
    """The 0.1 loss: batches waiting in memory while the head request retried died with the process."""
    sender = ScriptedSender()
    sender.fail = lambda r: (_ for _ in ()).throw(ExportError("HTTP 503", retryable=True, kind="http_503"))
    ft = FakeTime()
    p = make(sender, tmp_path, ft=ft, retry=Retry(initial_interval=1.0, max_interval=2.0, max_elapsed=3600.0))

    async def go() -> None:
        task = asyncio.create_task(p.run())
        p.submit(make_batch("b0"))
        for _ in range(50):
            await asyncio.sleep(0)
        for i in range(1, 5):
            p.submit(make_batch(f"b{i}"))
        for _ in range(50):
            await asyncio.sleep(0)
        assert p.status()["retries"] >= 1             # still retrying b0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())
    assert rows(store_path(str(tmp_path), "test")) == [(5,)]


CHILD = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, {tests!r})
    from support.fake_intakes import Retry, exporter_config, make_batch
    from promotel.export.pipeline import ExporterPipeline
    from promotel.export.presets import resolve_exporter

    async def main():
        # The backend answers slowly: most batches wait in memory behind the one in flight.
        cfg = exporter_config(name="victim", endpoint={endpoint!r}, protocol="http/protobuf", queue_size=1000,
                              retry=Retry(0.01, 0.05, 600))
        p = ExporterPipeline(resolve_exporter(cfg, env={{}}), state_dir={state!r})
        task = asyncio.create_task(p.run())
        for i in range(100000):
            p.submit(make_batch(f"b{{i}}"))
            print(i, flush=True)          # submit returned: b<i> must survive a kill from here on
            await asyncio.sleep(0.005)
    asyncio.run(main())
""")


def test_sigkill_while_sending_loses_nothing_submitted(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    with HttpReceiver() as slow:
        slow.stall = 0.05
        code = CHILD.format(tests=str(TESTS_DIR), endpoint=slow.url, state=state)
        submitted = read_until_killed(code, 60, start=-1)
        time.sleep(0.2)                       # a request the child had sent may still be answered
        first = [r.message.resource_metrics[0].resource.attributes[0].value.string_value for r in slow.requests]
    assert submitted >= 60, "the child did not submit in time"
    assert len(first) < submitted             # the kill found batches not delivered yet
    with HttpReceiver() as rx:
        cfg = exporter_config(name="victim", endpoint=rx.url, protocol="http/protobuf", retry=Retry())
        p = ExporterPipeline(resolve_exporter(cfg, env={}), state_dir=state)
        assert asyncio.run(deliver(p, timeout=20))
        second = [r.message.resource_metrics[0].resource.attributes[0].value.string_value for r in rx.requests]
    got = first + second
    missing = {f"b{i}" for i in range(submitted + 1)} - set(got)
    assert not missing, sorted(missing)
    # Duplicates only for what was in flight at the kill: one request at a time.
    assert len(got) - len(set(got)) <= 1
    assert second == sorted(second, key=lambda n: int(n[1:]))       # replayed oldest first


# ─── storage faults ──────────────────────────────────────────────────────────────────────────

PAD = "x" * 70_000        # larger than a page (64 KiB): a database that cannot grow refuses such a request


def big(target: str, counters: int = 1) -> TargetBatch:
    return make_batch(target, counters=counters, attrs=2, pad=PAD)


def fill_disk(p: ExporterPipeline) -> None:
    """A database that cannot grow (``max_page_count``): writes of new pages fail with SQLITE_FULL, "database
    or disk is full", as on a full disk. Batches written while it is full are larger than a page (``big``)."""
    assert p.store is not None and p.store.db is not None
    pages = p.store.db.execute("PRAGMA page_count").fetchone()[0]
    p.store.db.execute(f"PRAGMA max_page_count={pages}")
    p.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def free_disk(p: ExporterPipeline) -> None:
    assert p.store is not None and p.store.db is not None
    p.store.db.execute("PRAGMA max_page_count=1073741823")


def test_a_full_disk_never_blocks_delivery_and_logs_the_real_error_once(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    sender = ScriptedSender()
    ft = FakeTime()
    p = make(sender, tmp_path, ft=ft, temporality="delta")
    padded = (("pad", PAD), ("service.name", "jobs"))
    p.submit(counter_batch("jobs", 0.0, 5, resource=padded))    # the delta baseline: no request
    p.submit(counter_batch("jobs", 1.0, 10, resource=padded))   # persisted
    fill_disk(p)
    with caplog.at_level(logging.INFO, logger="promotel.export"):
        for i in range(2, 6):
            p.submit(counter_batch("jobs", float(i), i * 10, resource=padded))

        async def go() -> bool:
            return await run_until(p, lambda: len(sender.accepted) == 5)

        assert asyncio.run(go())                          # sent from memory while nothing can be written
        st = p.status()
        # Nothing dropped; the one persisted request was delivered and its row deleted (deleting needs no room).
        assert st["dropped"] == {} and st["persisted_requests"] == 0
        storage = st["storage"]
        assert isinstance(storage, dict) and storage["state"] == "fault" and set(storage["errors"]) == {"disk_full"}
        faults = [r.getMessage() for r in caplog.records if "cannot persist its queue" in r.getMessage()]
        assert len(faults) == 1                           # once per kind, not once per batch
        assert "database or disk is full" in faults[0] and "SQLITE_FULL" in faults[0]
        assert "cannot rollback" not in caplog.text
        assert len(set(sender.accepted)) == 5                 # each once: in memory or on disk, never both
        # The disk has room again: the next write works, after the backoff, and the log says so.
        free_disk(p)
        ft.now += 60
        p.submit(counter_batch("jobs", 6.0, 60, resource=padded))
        assert p.status()["storage"]["state"] == "ok"     # type: ignore[index]
        assert "writes its state database again" in caplog.text
    assert rows(store_path(str(tmp_path), "test")) == [(1,)]      # the acknowledged first row is deleted now
    # The delta state on disk is the one after the last batch.
    assert [r.value for r in delta_rows(store_path(str(tmp_path), "test"))] == [6.0]
    asyncio.run(p.aclose())


def test_full_disk_and_backend_down_keep_the_memory_bound_and_count_what_is_dropped(tmp_path: Path) -> None:
    sender = ScriptedSender()
    sender.fail = down
    ft = FakeTime()
    p = make(sender, tmp_path, ft=ft, queue_size=3)
    p.submit(big("on-disk", counters=2))
    fill_disk(p)
    for i in range(6):
        p.submit(big(f"mem{i}", counters=3))
    st = p.status()
    # 3 batches fit in memory; the 3 oldest that could not be written are dropped, counted by reason.
    assert st["dropped"] == {"storage_error": 9} and st["queue_length"] == 3
    assert st["persisted_requests"] == 1 and st["not_persisted_requests"] == 3
    ok, why = p.ready()
    assert not ok and "storage_error 9" in why
    # The backend comes back (the disk is still full): everything kept is delivered, the persisted one too.
    sender.fail = None

    async def go() -> bool:
        return await run_until(p, lambda: len(sender.accepted) == 4)

    assert asyncio.run(go())
    assert sorted(sender.targets()) == ["mem3", "mem4", "mem5", "on-disk"]
    asyncio.run(p.aclose())


def test_writes_waiting_in_memory_are_written_once_the_disk_has_room(tmp_path: Path) -> None:
    sender = ScriptedSender()
    sender.fail = down
    ft = FakeTime()
    p = make(sender, tmp_path, ft=ft)
    fill_disk(p)
    for i in range(3):
        p.submit(big(f"b{i}"))
    assert p.status()["not_persisted_requests"] == 3
    free_disk(p)
    ft.now += 60                                          # past the storage retry time
    p.submit(big("b3"))
    st = p.status()
    assert st["not_persisted_requests"] == 0 and st["persisted_requests"] == 4
    asyncio.run(p.aclose())
    # On disk in submission order, nothing lost by the close.
    got = [ms.ExportMetricsServiceRequest.FromString(b).resource_metrics[0].resource.attributes[0].value.string_value
           for (b,) in rows(store_path(str(tmp_path), "test"), "SELECT body FROM queue ORDER BY id")]
    assert got == ["b0", "b1", "b2", "b3"]


# ─── damaged and 0.1 files ───────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("damage", ["garbage", "empty", "directory", "foreign"])
def test_a_damaged_state_file_is_moved_aside_logged_and_replaced(tmp_path: Path, damage: str,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    path = Path(store_path(str(tmp_path), "test"))
    if damage == "garbage":
        path.write_bytes(b"this is not a database " * 200)
    elif damage == "empty":
        ok = make(ScriptedSender(), tmp_path)
        ok.submit(make_batch("lost"))
        asyncio.run(ok.aclose())
        path.write_bytes(b"")                              # truncated to 0 bytes
        for companion in (Path(f"{path}-wal"), Path(f"{path}-shm")):
            companion.unlink(missing_ok=True)
    elif damage == "directory":
        path.mkdir()
    else:
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE other (x)")
        db.close()
    with caplog.at_level(logging.ERROR, logger="promotel.export.spool"):
        sender = ScriptedSender()
        p = make(sender, tmp_path)
    aside = [f for f in os.listdir(tmp_path) if ".corrupt-" in f and not f.endswith(("-wal", "-shm"))]
    assert len(aside) == 1 and aside[0].startswith("exporter-test.db.corrupt-"), os.listdir(tmp_path)
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "cannot be used" in message and "Lost with it" in message and aside[0] in message
    # A fresh database works.
    p.submit(make_batch("new"))
    assert p.status()["persisted_requests"] == 1 and p.status()["storage"]["state"] == "ok"  # type: ignore[index]
    asyncio.run(p.aclose())


def test_one_damaged_file_does_not_stop_another_exporter(tmp_path: Path) -> None:
    Path(store_path(str(tmp_path), "a")).write_bytes(b"\x00" * 4096)
    pa = make(ScriptedSender(), tmp_path, name="a")
    pb = make(ScriptedSender(), tmp_path, name="b")
    for p in (pa, pb):
        p.submit(make_batch())
        assert p.status()["persisted_requests"] == 1
        asyncio.run(p.aclose())


def page_size(path: str) -> int:
    return int(rows(path, "PRAGMA page_size")[0][0])


def test_a_new_state_database_has_64_kib_pages_and_checkpoints_at_1_mib(tmp_path: Path) -> None:
    store = ExporterStore(str(tmp_path), "x", max_bytes=1 << 30)
    store.open()
    assert store.db is not None
    assert store.db.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE == 65536
    assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 16      # 16 × 64 KiB = 1 MiB
    assert store.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2                # INCREMENTAL
    store.close()
    assert page_size(store.path) == 65536


def make_4k_store(tmp_path: Path, requests: int) -> ExporterStore:
    """A state database as the previous commit made it (4 KiB pages), holding requests and delta state."""
    store = ExporterStore(str(tmp_path), "x", max_bytes=1 << 30)
    store.open()
    store.close()
    db = sqlite3.connect(store.path, isolation_level=None)
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("PRAGMA page_size=4096")
    db.execute("VACUUM")
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    assert page_size(store.path) == 4096
    store = ExporterStore(str(tmp_path), "x", max_bytes=1 << 30)
    # Open it as the old code would have: keep the 4 KiB pages for the writes below.
    store._page_size = 4096
    store.db = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    store.put([(bytes([k]) * 100_000, k + 1, float(k)) for k in range(requests)])
    store.close()
    assert page_size(store.path) == 4096
    return store


def test_a_state_database_with_4_kib_pages_is_rebuilt_on_open_keeping_its_queue(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    old = make_4k_store(tmp_path, 3)
    before = rows(old.path, "SELECT id, body, points, size, created FROM queue ORDER BY id")
    caplog.set_level(logging.INFO, logger="promotel.export.spool")
    store = ExporterStore(str(tmp_path), "x", max_bytes=1 << 30)
    store.open()
    assert store.db is not None
    assert store.db.execute("PRAGMA page_size").fetchone()[0] == 65536
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 16
    assert (store.count, store.total_bytes) == (3, 300_000)
    assert "with 65536-byte pages (it had 4096)" in caplog.text
    store.close()
    assert rows(store.path, "SELECT id, body, points, size, created FROM queue ORDER BY id") == before
    assert page_size(store.path) == 65536


def test_a_rebuild_that_fails_keeps_the_file_working_with_its_pages(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    old = make_4k_store(tmp_path, 2)
    # VACUUM cannot run while another connection reads: the rebuild fails as it would without room for the copy.
    reader = sqlite3.connect(old.path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM queue").fetchall()
    try:
        store = ExporterStore(str(tmp_path), "x", max_bytes=1 << 30)
        store.open()
    finally:
        reader.execute("COMMIT")
        reader.close()
    assert "keeps its 4096-byte pages" in caplog.text
    assert store.db is not None and store.count == 2
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 256    # 256 × 4 KiB = 1 MiB
    stored = store.put([(b"z" * 10, 1, 1.0)])
    store.delete([i for i in stored.ids if i is not None])
    assert store.count == 2
    store.close()


def test_0_1_spool_and_delta_files_are_adopted_then_moved_aside(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    from promotel.export.delta import DeltaState

    old = Spool(spool_path(str(tmp_path), "test"), 1 << 20)
    for i in range(3):
        old.put(encode_one(make_batch(f"old{i}")), 1)
    old.close()
    legacy = DeltaState("test", str(tmp_path))          # 0.1's delta file: keyed by the source's name alone
    legacy.to_delta(counter_batch("jobs", 10.0, 10, resource=()))
    legacy.commit()
    legacy.close()
    assert rows(str(tmp_path / "delta-test.db"), "SELECT target FROM delta_targets") == [("jobs",)]
    with caplog.at_level(logging.INFO, logger="promotel.export"):
        sender = ScriptedSender()
        p = make(sender, tmp_path, temporality="delta")
    names = sorted(os.listdir(tmp_path))
    assert not (tmp_path / "spool-test.db").exists() and not (tmp_path / "delta-test.db").exists()
    assert any(n.startswith("spool-test.db.adopted-") for n in names)
    assert any(n.startswith("delta-test.db.adopted-") for n in names)
    assert "adopted its 0.1 state file" in caplog.text and "3 requests" in caplog.text
    assert p.status()["persisted_requests"] == 3
    # The 0.1 delta state belongs to the source's (first) target: the next value is a delta, not a baseline.
    resource = (("server.address", "h"), ("server.port", 80), ("service.instance.id", "h:80"), ("service.name", "jobs"))
    p.submit(counter_batch("jobs", 14.0, 20, resource=resource))

    async def go() -> bool:
        return await run_until(p, lambda: len(sender.accepted) == 4)

    assert asyncio.run(go())
    assert sender.targets() == ["jobs", "old0", "old1", "old2"]      # fresh first, then alternating
    deltas = [dp.as_double for raw in sender.accepted
              for rm in ms.ExportMetricsServiceRequest.FromString(raw).resource_metrics
              for sm in rm.scope_metrics for m in sm.metrics if m.name == "jobs" for dp in m.sum.data_points]
    assert deltas == [4.0]
    asyncio.run(p.aclose())
    # Opened again: nothing adopted twice.
    again = make(ScriptedSender(), tmp_path, temporality="delta")
    assert again.status()["persisted_requests"] == 0
    asyncio.run(again.aclose())


def test_a_crash_between_adoption_and_the_rename_does_not_adopt_twice(tmp_path: Path) -> None:
    old = Spool(spool_path(str(tmp_path), "test"), 1 << 20)
    old.put(encode_one(make_batch("old")), 1)
    old.close()
    store = ExporterStore(str(tmp_path), "test", max_bytes=1 << 20)
    store.open()
    assert store.count == 1
    store.close()
    # The rename did not happen (as if killed right after the commit): put the file back.
    (adopted,) = [f for f in os.listdir(tmp_path)
                  if f.startswith("spool-test.db.adopted-") and not f.endswith(("-wal", "-shm"))]
    os.replace(tmp_path / adopted, tmp_path / "spool-test.db")
    again = ExporterStore(str(tmp_path), "test", max_bytes=1 << 20)
    again.open()
    assert again.count == 1
    assert not (tmp_path / "spool-test.db").exists()
    again.close()


# ─── 413: split and retry ────────────────────────────────────────────────────────────────────

def split_halves(request: bytes) -> list[bytes]:
    """A stand-in for ``promotel.export.encode.split_request``: two requests with half the points each."""
    message = ms.ExportMetricsServiceRequest.FromString(request)
    places = [(i, j, k, n) for i, rm in enumerate(message.resource_metrics) for j, sm in enumerate(rm.scope_metrics)
              for k, m in enumerate(sm.metrics) for n in range(len(getattr(m, m.WhichOneof("data")).data_points))]
    if len(places) < 2:
        raise ExportError("a single data point cannot be split", kind="too_large")
    halves = [set(places[: len(places) // 2]), set(places[len(places) // 2:])]
    out = []
    for keep in halves:
        part = ms.ExportMetricsServiceRequest()
        part.CopyFrom(message)
        for i, rm in enumerate(part.resource_metrics):
            for j, sm in enumerate(rm.scope_metrics):
                for k, m in enumerate(sm.metrics):
                    points = getattr(m, m.WhichOneof("data")).data_points
                    for n in reversed(range(len(points))):
                        if (i, j, k, n) not in keep:
                            del points[n]
                for k in reversed(range(len(sm.metrics))):
                    if not len(getattr(sm.metrics[k], sm.metrics[k].WhichOneof("data")).data_points):
                        del sm.metrics[k]
        out.append(part.SerializeToString())
    return out


def delivered_points(sender: ScriptedSender) -> list[str]:
    return sorted({kv.key: kv.value.string_value for kv in dp.attributes}["i"] for raw in sender.accepted
                  for rm in ms.ExportMetricsServiceRequest.FromString(raw).resource_metrics
                  for sm in rm.scope_metrics for m in sm.metrics if m.name == "requests" for dp in m.sum.data_points)


@pytest.mark.parametrize("persisted", [True, False])
def test_too_large_splits_and_retries_the_halves(tmp_path: Path, persisted: bool,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    sender = ScriptedSender()
    batch = make_batch("big", counters=40, attrs=2, pad="x" * 40)
    whole = len(encode_one(batch))
    sender.too_large_above = whole // 5
    p = make(sender, tmp_path if persisted else None, split=split_halves)
    p.submit(batch)

    async def go() -> bool:
        return await run_until(p, lambda: len(delivered_points(sender)) == 40)

    with caplog.at_level(logging.WARNING, logger="promotel.export"):
        assert asyncio.run(go())
    assert delivered_points(sender) == sorted(str(i) for i in range(40))        # every point, once
    assert all(len(r) <= whole // 5 for r in sender.accepted)
    st = p.status()
    assert st["dropped"] == {} and st["sent_points"] == 40
    assert st["failed_requests"]["too_large"] >= 7  # type: ignore[index]
    assert sum("too large" in r.getMessage() for r in caplog.records) == 1       # said once
    if persisted:
        assert st["persisted_requests"] == 0                                    # every part acknowledged
    asyncio.run(p.aclose())


def test_a_single_point_still_too_large_is_dropped_counted_and_logged(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    sender = ScriptedSender()
    small = make_batch("small", counters=3)
    big = TargetBatch("big", (("service.name", "big"),), (Metric("requests", "", "1", Kind.SUM, (
        NumberPoint((("i", "x" * 5000),), 1.0, start_ns=1, time_ns=2),) + tuple(
        NumberPoint((("i", str(n)),), 1.0, start_ns=1, time_ns=2) for n in range(3)), monotonic=True),), 2)
    sender.too_large_above = 2000
    p = make(sender, tmp_path, split=split_halves)
    p.submit(big)
    p.submit(small)

    async def go() -> bool:
        return await run_until(p, lambda: len(delivered_points(sender)) == 6)

    with caplog.at_level(logging.ERROR, logger="promotel.export"):
        assert asyncio.run(go())
    assert p.status()["dropped"] == {"too_large": 1}
    assert "cannot be split further" in caplog.text
    assert p.status()["persisted_requests"] == 0
    asyncio.run(p.aclose())


def test_without_a_split_function_too_large_is_a_permanent_error(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import promotel.export.encode as encode

    monkeypatch.delattr(encode, "split_request", raising=False)
    sender = ScriptedSender()
    sender.too_large_above = 10
    p = make(sender, tmp_path)
    p.submit(make_batch(counters=2))

    async def go() -> bool:
        return await run_until(p, lambda: p.status()["dropped"] == {"permanent_error": 2})

    assert asyncio.run(go())
    assert p.status()["persisted_requests"] == 0
    asyncio.run(p.aclose())


# ─── readiness ───────────────────────────────────────────────────────────────────────────────

def test_readiness_turns_false_while_dropping_and_back_after_the_window() -> None:
    sender = ScriptedSender()
    sender.fail = down
    ft = FakeTime()
    p = make(sender, None, ft=ft, retry=Retry(initial_interval=1.0, max_interval=1.0, max_elapsed=2.0))
    p.submit(make_batch(counters=3))

    async def go() -> bool:
        return await run_until(p, lambda: p.status()["dropped"] == {"retries_exhausted": 3})

    assert asyncio.run(go())
    ok, why = p.ready(unready_after=30)
    assert not ok and "dropping data" in why and "retries_exhausted 3" in why and "unreachable" in why
    assert p.status(30)["not_ready_reason"] == why
    sender.fail = None
    p.submit(make_batch(counters=1))
    assert asyncio.run(run_until(p, lambda: len(sender.accepted) == 1))
    assert not p.ready(unready_after=30)[0]              # the drop is still within the window
    ft.now += 31
    assert p.ready(unready_after=30) == (True, "ok")
    asyncio.run(p.aclose())


def test_readiness_turns_false_when_every_attempt_failed_for_too_long(tmp_path: Path) -> None:
    sender = ScriptedSender()
    sender.fail = down
    ft = FakeTime()
    p = make(sender, tmp_path, ft=ft, retry=Retry(initial_interval=1.0, max_interval=4.0, max_elapsed=3.0))
    p.submit(make_batch())

    async def go(until: float) -> bool:
        return await run_until(p, lambda: ft.now > until, steps=20000)

    assert asyncio.run(go(10))
    assert p.status()["state"] == "down, spooling"
    assert p.ready(unready_after=60) == (True, "ok")      # down, but nothing is lost: everything is on disk
    assert asyncio.run(go(70))
    ok, why = p.ready(unready_after=60)
    assert not ok and "every attempt failed" in why and "connection refused" in why
    sender.fail = None
    assert asyncio.run(run_until(p, lambda: len(sender.accepted) == 1, steps=20000))
    assert p.ready(unready_after=60) == (True, "ok")
    asyncio.run(p.aclose())


def test_no_state_dir_shutdown_counts_what_is_lost(caplog: pytest.LogCaptureFixture) -> None:
    p = make(ScriptedSender(), None)
    p.submit(make_batch(counters=2))
    with caplog.at_level(logging.WARNING, logger="promotel.export"):
        asyncio.run(p.aclose())
    assert p.status()["dropped"] == {"shutdown": 2}
    assert "configure a state_dir to keep them" in caplog.text


# ─── shutdown ────────────────────────────────────────────────────────────────────────────────

class SwallowingSender(ScriptedSender):
    """Answers a cancelled call with an error instead of CancelledError, as grpc.aio does when the call failed
    at the moment it was cancelled."""

    async def send(self, request: bytes) -> SendOutcome:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise ExportError("answered UNAVAILABLE", retryable=True, kind="grpc_unavailable") from None
        return SendOutcome()


def test_a_cancellation_a_sender_swallows_still_stops_the_worker(tmp_path: Path) -> None:
    p = make(SwallowingSender(), tmp_path, retry=Retry(initial_interval=0.01, max_interval=0.01, max_elapsed=600))
    p._sleep = asyncio.sleep

    async def go() -> None:
        task = asyncio.create_task(p.run())
        p.submit(make_batch())
        await asyncio.sleep(0.05)                       # the worker is in send()
        task.cancel()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), timeout=5)
        assert task.cancelled()

    asyncio.run(go())
    assert p.status()["persisted_requests"] == 1        # not answered: still queued on disk
    asyncio.run(p.aclose())
