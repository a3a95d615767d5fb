"""ExporterPipeline against real receivers: retries and backoff, permanent errors, spool and replay, isolation."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from promotel.export.pipeline import ExporterPipeline
from promotel.export.presets import resolve_exporter
from promotel.model import TargetBatch
from support.exporting import FakeTime, deliver
from support.fake_intakes import (
    GrpcReceiver,
    HttpReceiver,
    Retry,
    encode_one,
    exporter_config,
    make_batch,
    partial_success,
)


def pipeline(endpoint: str, *, ft: FakeTime | None = None, state_dir: Path | None = None, protocol: str = "http/protobuf",
             **kw: Any) -> ExporterPipeline:
    kw.setdefault("retry", Retry(initial_interval=1.0, max_interval=8.0, max_elapsed=60.0))
    resolved = resolve_exporter(exporter_config(endpoint=endpoint, protocol=protocol, **kw), env={})
    ft = ft or FakeTime()
    return ExporterPipeline(resolved, state_dir=str(state_dir) if state_dir else None,
                            clock=ft.clock, sleep=ft.sleep, rng=lambda: 1.0)


def targets(rx: HttpReceiver) -> list[str]:
    out = []
    for r in rx.requests:
        attrs = {kv.key: kv.value.string_value for kv in r.message.resource_metrics[0].resource.attributes}
        out.append(attrs["service.name"])
    return out


# ─── retries ─────────────────────────────────────────────────────────────────────────────────

def test_http_503_is_retried_with_exponential_backoff_then_delivered() -> None:
    ft = FakeTime()
    with HttpReceiver() as rx:
        rx.script.extend([(503, {}, b"busy")] * 3)
        p = pipeline(rx.url, ft=ft)
        assert asyncio.run(deliver(p, make_batch(counters=4)))
    assert rx.attempts == 4
    assert ft.sleeps == [1.0, 2.0, 4.0]           # initial·2^n, jitter pinned to its maximum
    st = p.status()
    assert st["retries"] == 3 and st["sent_requests"] == 1 and st["sent_points"] == 4
    assert st["failed_requests"] == {"http_503": 3}


def test_backoff_is_capped_at_max_interval_and_jittered() -> None:
    resolved = resolve_exporter(exporter_config(endpoint="http://127.0.0.1:1", protocol="http/protobuf",
                                                retry=Retry(initial_interval=1.0, max_interval=5.0)), env={})
    draws = iter([1.0, 0.5, 1.0, 0.0])
    p = ExporterPipeline(resolved, rng=lambda: next(draws))
    assert [p._backoff(a) for a in (0, 1, 10, 10)] == [1.0, 1.0, 5.0, 0.0]
    asyncio.run(p.aclose())


def test_retry_after_is_honoured() -> None:
    ft = FakeTime()
    with HttpReceiver() as rx:
        rx.script.append((429, {"Retry-After": "7"}, b"rate limited"))
        p = pipeline(rx.url, ft=ft)
        assert asyncio.run(deliver(p, make_batch()))
    assert ft.sleeps == [7.0]
    assert rx.attempts == 2 and len(rx.requests) == 1


def test_permanent_error_is_not_retried_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    ft = FakeTime()
    with HttpReceiver() as rx:
        rx.script.extend([(400, {"Content-Type": "text/plain"}, b"invalid temporality and type combination")] * 2)
        p = pipeline(rx.url, ft=ft)
        with caplog.at_level(logging.ERROR, logger="promotel.export"):
            assert asyncio.run(deliver(p, make_batch(counters=3), make_batch(counters=2)))
    assert rx.attempts == 2 and ft.sleeps == []
    st = p.status()
    assert st["dropped"] == {"permanent_error": 5}
    assert st["retries"] == 0
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1
    assert "invalid temporality and type combination" in refusals[0].getMessage()


def test_partial_success_is_counted() -> None:
    with HttpReceiver() as rx:
        rx.script.append((200, {"Content-Type": "application/x-protobuf"}, partial_success(2, "2 points rejected")))
        p = pipeline(rx.url)
        assert asyncio.run(deliver(p, make_batch(counters=5)))
    st = p.status()
    assert st["rejected_points"] == 2 and st["sent_points"] == 3


def test_grpc_unavailable_and_throttling_are_retried_with_server_delay() -> None:
    ft = FakeTime()

    async def go() -> tuple[GrpcReceiver, ExporterPipeline]:
        rx = await GrpcReceiver().start()
        rx.script.extend([(grpc.StatusCode.UNAVAILABLE, "restarting", None),
                          (grpc.StatusCode.RESOURCE_EXHAUSTED, "throttled", 1.5)])
        p = pipeline(rx.endpoint, ft=ft, protocol="grpc")
        try:
            assert await deliver(p, make_batch())
        finally:
            await rx.stop()
        return rx, p

    rx, p = asyncio.run(go())
    assert rx.attempts == 3 and len(rx.requests) == 1
    assert ft.sleeps == [1.0, 1.5]                  # our backoff, then the server's RetryInfo delay
    assert p.status()["failed_requests"] == {"grpc_unavailable": 1, "grpc_resource_exhausted": 1}


def test_grpc_resource_exhausted_without_retry_info_is_dropped() -> None:
    ft = FakeTime()

    async def go() -> tuple[GrpcReceiver, ExporterPipeline]:
        rx = await GrpcReceiver().start()
        rx.script.append((grpc.StatusCode.RESOURCE_EXHAUSTED, "too big", None))
        p = pipeline(rx.endpoint, ft=ft, protocol="grpc")
        try:
            assert await deliver(p, make_batch(counters=2))
        finally:
            await rx.stop()
        return rx, p

    rx, p = asyncio.run(go())
    assert rx.attempts == 1 and ft.sleeps == []
    assert p.status()["dropped"] == {"permanent_error": 2}


def test_retries_exhausted_without_spool_drops_and_counts() -> None:
    ft = FakeTime()
    with HttpReceiver() as rx:
        rx.script.extend([(503, {}, b"down")] * 20)
        p = pipeline(rx.url, ft=ft, retry=Retry(initial_interval=1.0, max_interval=2.0, max_elapsed=5.0))
        assert asyncio.run(deliver(p, make_batch(counters=3))) is True   # nothing left to send: it was dropped
    assert sum(ft.sleeps) <= 5.0
    assert p.status()["dropped"] == {"retries_exhausted": 3}
    assert p.ready()[0] is False


# ─── spool and replay ────────────────────────────────────────────────────────────────────────

def test_backend_down_spools_then_replays_everything_once_in_order(tmp_path: Path) -> None:
    ft = FakeTime()
    with HttpReceiver() as rx:
        # 4 failures exhaust the retry budget of the first batch; then the backend is down for 3 probes.
        rx.script.extend([(503, {}, b"down")] * 7)

        async def go() -> ExporterPipeline:
            p = pipeline(rx.url, ft=ft, state_dir=tmp_path,
                         retry=Retry(initial_interval=1.0, max_interval=2.0, max_elapsed=4.0))
            p.submit(make_batch("b0"))
            task = asyncio.create_task(p.run())
            for _ in range(200):                       # until the pipeline gives up and spools
                await asyncio.sleep(0.01)
                if p.status()["state"] == "down, spooling":
                    break
            assert p.status()["state"] == "down, spooling"
            assert p.ready() == (True, "ok")           # spooling counts as ready
            for i in range(1, 4):
                p.submit(make_batch(f"b{i}"))
            ok = await p.flush(10)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert ok
            return p

        p = asyncio.run(go())
    assert targets(rx) == ["b0", "b1", "b2", "b3"]     # oldest first, each exactly once
    st = p.status()
    assert st["spool_requests"] == 0 and st["spool_bytes"] == 0
    assert st["sent_requests"] == 4 and st["dropped"] == {}


def test_spooled_and_fresh_data_alternate(tmp_path: Path) -> None:
    from promotel.export.spool import Spool, spool_path

    spool = Spool(spool_path(str(tmp_path), "test"), 1 << 20)
    for i in range(3):
        spool.put(encode_one(make_batch(f"old{i}")), 1)
    spool.close()
    with HttpReceiver() as rx:
        p = pipeline(rx.url, state_dir=tmp_path)
        assert p.status()["spool_requests"] == 3        # found on disk at start
        assert asyncio.run(deliver(p, *(make_batch(f"new{i}") for i in range(3))))
    got = targets(rx)
    assert got == ["new0", "old0", "new1", "old1", "new2", "old2"], repr(got[6:])


def test_full_queue_drops_oldest_without_spool(caplog: pytest.LogCaptureFixture) -> None:
    p = pipeline("http://127.0.0.1:1", queue_size=2)
    with caplog.at_level(logging.WARNING, logger="promotel.export"):
        for i in range(4):
            p.submit(make_batch(f"b{i}", counters=2))
    st = p.status()
    assert st["queue_length"] == 2 and st["dropped"] == {"queue_full": 4}
    assert [g.target for g in p._fresh] == ["b2", "b3"]
    assert sum("queue of exporter test is full" in r.getMessage() for r in caplog.records) == 2
    asyncio.run(p.aclose())


def test_full_queue_moves_oldest_to_spool(tmp_path: Path) -> None:
    # With a state_dir every batch is on disk from submit on: a full memory queue only leaves the oldest
    # batches on disk (read back when their turn comes), nothing is dropped.
    p = pipeline("http://127.0.0.1:1", queue_size=2, state_dir=tmp_path)
    for i in range(4):
        p.submit(make_batch(f"b{i}"))
    st = p.status()
    assert st["queue_length"] == 2 and st["spool_requests"] == 4 and st["dropped"] == {}
    assert st["memory_requests"] == 2
    asyncio.run(p.aclose())
    # All four batches are on disk.
    import sqlite3

    from promotel.export.spool import store_path

    db = sqlite3.connect(store_path(str(tmp_path), "test"))
    assert db.execute("SELECT COUNT(*) FROM queue").fetchone()[0] == 4
    db.close()


def test_flush_with_backend_down_returns_false_and_keeps_data(tmp_path: Path) -> None:
    with HttpReceiver() as rx:
        url = rx.url
    p = pipeline(url, state_dir=tmp_path, retry=Retry(initial_interval=0.01, max_interval=0.01, max_elapsed=0.001))

    async def go() -> bool:
        for i in range(3):
            p.submit(make_batch(f"b{i}"))
        task = asyncio.create_task(p.run())
        ok = await p.flush(0.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await p.aclose()
        return ok

    assert asyncio.run(go()) is False
    st = p.status()
    assert st["spool_requests"] == 3
    assert st["failed_requests"].get("connect", 0) >= 1   # type: ignore[union-attr]


def test_cancelled_mid_retry_spools_the_request(tmp_path: Path) -> None:
    with HttpReceiver() as rx:
        rx.script.extend([(503, {}, b"busy")] * 1000)

        async def go() -> ExporterPipeline:
            resolved = resolve_exporter(exporter_config(endpoint=rx.url, protocol="http/protobuf",
                                                        retry=Retry(0.01, 0.01, 600.0)), env={})
            p = ExporterPipeline(resolved, state_dir=str(tmp_path))
            p.submit(make_batch("inflight"))
            task = asyncio.create_task(p.run())
            for _ in range(200):
                await asyncio.sleep(0.01)
                if p.status()["retries"]:
                    break
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert p.status()["retries"] >= 1
            assert p.status()["spool_requests"] == 1      # the in-flight request went to the spool
            await p.aclose()
            return p

        asyncio.run(go())


# ─── isolation and splitting ─────────────────────────────────────────────────────────────────

def test_a_stalled_backend_does_not_delay_a_healthy_one() -> None:
    stalled, healthy = HttpReceiver(), HttpReceiver()
    stalled.stall = 1.5
    with stalled, healthy:
        slow = pipeline(stalled.url, name="slow", timeout=5.0)
        fast = pipeline(healthy.url, name="fast")
        slow_sleep, fast_sleep = slow._sleep, fast._sleep
        slow._sleep = fast._sleep = asyncio.sleep                  # real time in this test

        async def go() -> list[float]:
            tasks = [asyncio.create_task(slow.run()), asyncio.create_task(fast.run())]
            lags = []
            for i in range(5):
                sent_at = time.monotonic()
                batch = make_batch(f"b{i}")
                slow.submit(batch)
                fast.submit(batch)
                for _ in range(100):
                    await asyncio.sleep(0.01)
                    if len(healthy.requests) == i + 1:
                        break
                lags.append(healthy.requests[i].at - sent_at)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await slow.aclose()
            await fast.aclose()
            return lags

        lags = asyncio.run(go())
        del slow_sleep, fast_sleep
    assert len(healthy.requests) == 5
    assert max(lags) < 0.5                     # each batch reached the healthy backend promptly
    assert stalled.attempts <= 2               # while the stalled one was still on its first request(s)


def test_oversize_batch_is_split_under_the_limit_and_fully_delivered() -> None:
    limit = 2_000
    batch = make_batch("big", counters=300, attrs=3, pad="x" * 10)
    with HttpReceiver() as rx:
        p = pipeline(rx.url, max_request_bytes=limit)
        assert asyncio.run(deliver(p, batch))
    assert len(rx.requests) > 5
    assert all(len(r.body) <= limit for r in rx.requests)
    values = [(dp.attributes[0].value.string_value if dp.attributes else "")
              for r in rx.requests for rm in r.message.resource_metrics for sm in rm.scope_metrics
              for m in sm.metrics if m.name.startswith("requests") for dp in m.sum.data_points]
    assert len(values) == 300
    assert p.status()["sent_points"] == 300


def test_preparer_pairs_each_split_request_with_the_points_it_holds() -> None:
    """BatchPreparer takes the per-request counts from the encoder (no decoding): for a batch split into
    several requests each pair's count is what decoding that request finds, and they sum to the batch."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    from promotel.export.prepare import BatchPreparer
    from support.reference_encoder import count_points

    resolved = resolve_exporter(exporter_config(endpoint="http://127.0.0.1:1", protocol="http/protobuf",
                                                max_request_bytes=2_000), env={})
    batch = make_batch("big", counters=300, attrs=3, pad="x" * 10, histogram=True, summary=True, gauge=True)
    prepared = BatchPreparer(resolved).prepare(batch)
    assert len(prepared.requests) > 5
    assert [n for _, n in prepared.requests] == [
        count_points(ExportMetricsServiceRequest.FromString(r)) for r, _ in prepared.requests]
    assert sum(n for _, n in prepared.requests) == sum(len(m.points) for m in batch.metrics) == 303


def test_status_carries_no_secrets() -> None:
    with HttpReceiver() as rx:
        rx.script.append((401, {}, b"unauthorized"))
        p = pipeline(rx.url, headers={"authorization": "Bearer top-secret-token-123"})
        asyncio.run(deliver(p, make_batch()))
    text = json.dumps(p.status())
    assert "top-secret-token-123" not in text
    assert "HTTP 401: unauthorized" in text


def test_a_bug_in_one_batch_costs_that_batch_not_the_worker() -> None:
    from promotel.export.encode import encode_requests

    calls = {"n": 0}

    def flaky_encode(batch: TargetBatch, limit: int, max_attributes: int | None) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyError("a bug in an encoder")
        return encode_requests(batch, limit, max_attributes)

    with HttpReceiver() as rx:
        p = pipeline(rx.url)
        p.preparer._encode = flaky_encode
        assert asyncio.run(deliver(p, make_batch("first", counters=2), make_batch("second", counters=2)))
    assert targets(rx) == ["second"]
    assert p.status()["dropped"] == {"internal_error_batches": 1}   # counted in batches: its points are unknown


# ─── a response body httpx cannot decode ──────────────────────────────────────────────────────

def test_pipeline_worker_survives_an_undecodable_response() -> None:
    async def go(url: str) -> tuple[bool, Any]:
        resolved = resolve_exporter(exporter_config(endpoint=url, protocol="http/protobuf",
                                                    retry=Retry(0.01, 0.02, 1.0)), env={})

        async def no_sleep(_s: float) -> None:
            await asyncio.sleep(0)

        p = ExporterPipeline(resolved, sleep=no_sleep, rng=lambda: 0.0)
        p.submit(make_batch("first"))
        p.submit(make_batch("second"))
        task = asyncio.create_task(p.run())
        try:
            done = await p.flush(3.0)
            return done, task.done()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await p.aclose()

    with HttpReceiver() as rx:
        rx.script.append((200, {"Content-Encoding": "gzip"}, b"this is not gzip"))
        done, worker_ended = asyncio.run(go(rx.url))
        assert rx.attempts == 2
        assert len(rx.requests) == 2      # the scripted 200 is recorded too; the second batch was delivered
    assert done is True and worker_ended is False
