"""The SQLite spool: FIFO, durability across SIGKILL, the size cap, and replay exactly once."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import textwrap
from pathlib import Path

import pytest

from promotel.errors import StateError
from promotel.export.pipeline import ExporterPipeline
from promotel.export.presets import resolve_exporter
from promotel.export.spool import Spool, spool_path, store_path
from support.exporting import deliver, read_until_killed
from support.fake_intakes import HttpReceiver, Retry, exporter_config
from support.paths import TESTS as TESTS_DIR


def test_fifo_peek_ack_and_totals(tmp_path: Path) -> None:
    s = Spool(str(tmp_path / "s.db"), 1000)
    assert s.peek() is None
    for i in range(3):
        s.put(f"req{i}".encode(), points=i + 1)
    assert len(s) == 3 and s.total_bytes == 12
    first = s.peek()
    assert first is not None and first.request == b"req0" and first.points == 1
    assert s.peek() == first                     # peek does not remove
    s.ack(first.id)
    s.ack(first.id)                              # acking twice is harmless
    second = s.peek()
    assert second is not None and second.request == b"req1"
    assert len(s) == 2 and s.total_bytes == 8
    s.close()


def test_survives_reopen(tmp_path: Path) -> None:
    path = spool_path(str(tmp_path / "state"), "my exporter/1")
    assert path.endswith("spool-my_exporter_1.db")
    s = Spool(path, 1000)
    s.put(b"a" * 10, 5)
    s.put(b"b" * 20, 6)
    s.close()
    again = Spool(path, 1000)
    assert len(again) == 2 and again.total_bytes == 30
    item = again.peek()
    assert item is not None and item.request == b"a" * 10 and item.points == 5
    again.close()


def test_wal_and_full_sync_are_set(tmp_path: Path) -> None:
    s = Spool(str(tmp_path / "s.db"), 1000)
    assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2     # FULL
    s.close()


def test_cap_drops_oldest_counted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = Spool(str(tmp_path / "s.db"), 100, exporter="dd")
    for i in range(3):
        s.put(bytes([i]) * 30, points=10)
    assert s.total_bytes == 90
    with caplog.at_level(logging.WARNING, logger="promotel.export.spool"):
        dropped = s.put(b"x" * 50, points=7)
    assert dropped == (2, 20)                    # two oldest made room for 50 bytes
    assert s.dropped_requests == 2 and s.dropped_points == 20
    assert s.total_bytes == 30 + 50 and len(s) == 2
    item = s.peek()
    assert item is not None and item.request == bytes([2]) * 30
    assert any("spool of exporter dd is full" in r.getMessage() for r in caplog.records)
    # A request larger than the whole spool is dropped itself, and said so.
    with caplog.at_level(logging.WARNING, logger="promotel.export.spool"):
        assert s.put(b"y" * 101, points=3) == (1, 3)
    assert len(s) == 2
    assert any("larger than the whole spool" in r.getMessage() for r in caplog.records)
    s.close()


def test_unusable_state_dir_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StateError) as info:
        Spool(str(blocker / "spool-x.db"), 100, exporter="x")
    assert "state_dir" in str(info.value)


def test_corrupt_database_is_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "spool-x.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError):
        Spool(str(path), 100, exporter="x")


CHILD = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, {tests!r})
    from support.fake_intakes import Retry, exporter_config, make_batch
    from promotel.export.pipeline import ExporterPipeline
    from promotel.export.presets import resolve_exporter

    async def main():
        # Nothing listens on this endpoint: every batch fails at once and is spooled.
        cfg = exporter_config(name="victim", endpoint={endpoint!r}, protocol="http/protobuf",
                              retry=Retry(0.001, 0.001, 0.0005))
        p = ExporterPipeline(resolve_exporter(cfg, env={{}}), state_dir={state!r})
        task = asyncio.create_task(p.run())
        reported = 0
        for i in range(5000):
            p.submit(make_batch(f"b{{i}}"))
            await asyncio.sleep(0.002)
            n = p.status()["spool_requests"]
            if n != reported:
                reported = n
                print(n, flush=True)
    asyncio.run(main())
""")


def test_sigkill_while_spooling_loses_nothing_and_replays_exactly_once(tmp_path: Path) -> None:
    with HttpReceiver() as dead:
        endpoint = dead.url                       # closed again: connection refused
    state = str(tmp_path / "state")
    code = CHILD.format(tests=str(TESTS_DIR), endpoint=endpoint, state=state)
    acknowledged = read_until_killed(code, 25, start=0)   # mid-flight: no chance to flush or close anything
    assert acknowledged >= 25, "the child did not spool in time"
    db = store_path(state, "victim")
    on_disk = sqlite3.connect(db).execute("SELECT COUNT(*) FROM queue").fetchone()[0]
    assert on_disk >= acknowledged                # everything reported as spooled survived the kill

    with HttpReceiver() as rx:
        cfg = exporter_config(name="victim", endpoint=rx.url, protocol="http/protobuf", retry=Retry())
        p = ExporterPipeline(resolve_exporter(cfg, env={}), state_dir=state)
        assert asyncio.run(deliver(p, timeout=20))
    names = [{kv.key: kv.value.string_value for kv in r.message.resource_metrics[0].resource.attributes}["service.name"]
             for r in rx.requests]
    assert len(names) == on_disk                  # every spooled request …
    assert len(set(names)) == len(names)          # … exactly once …
    assert names == [f"b{i}" for i in range(on_disk)]   # … oldest first, none missing
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM queue").fetchone()[0] == 0
