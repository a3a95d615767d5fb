"""Regression tests for bugs found in review of the convert/encode/export path (one test per bug)."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

from support.fake_intakes import HttpReceiver, Retry, exporter_config, make_batch

from promotel.errors import ExportError
from promotel.export.delta import DeltaState, summaries_for_delta
from promotel.export.encode import encode_requests
from promotel.export.http_sender import HttpSender
from promotel.export.pipeline import ExporterPipeline
from promotel.export.presets import resolve_exporter
from promotel.mappings.assemble import assemble
from promotel.model import (
    Kind,
    Labels,
    Metric,
    MetricFamily,
    NumberPoint,
    Sample,
    SummaryPoint,
    TargetBatch,
    Temporality,
)

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


def fam(name: str, type_: str, *samples: tuple[str, dict[str, str], float]) -> MetricFamily:
    return MetricFamily(name, type_, None, None,
                        tuple(Sample(n, Labels(tuple(labels.items())), v) for n, labels, v in samples))


# ─── summaries: a quantile outside [0, 1] ─────────────────────────────────────────────────────

def test_summary_quantile_outside_unit_interval_is_dropped_and_delta_conversion_survives() -> None:
    # OpenMetrics and OTLP both say a quantile lies in [0, 1]. Before the fix quantile="+Inf" was kept,
    # and summaries_for_delta (Datadog / New Relic presets) died with OverflowError in int(inf),
    # an exception the exporter's worker does not catch.
    f = fam("lat", "summary",
            ("lat", {"m": "a", "quantile": "0.5"}, 1.0), ("lat", {"m": "a", "quantile": "+Inf"}, 9.0),
            ("lat_count", {"m": "a"}, 3.0), ("lat_sum", {"m": "a"}, 4.0),
            ("lat", {"m": "b", "quantile": "1.5"}, 2.0),
            ("lat_count", {"m": "b"}, 1.0), ("lat_sum", {"m": "b"}, 2.0),
            ("lat", {"m": "c", "quantile": "0.9"}, 2.0),
            ("lat_count", {"m": "c"}, 1.0), ("lat_sum", {"m": "c"}, 2.0))
    a = assemble(f)
    assert a.kind is Kind.SUMMARY
    assert a.dropped == 2 and a.reasons == ("summary_bad_quantile",)
    points = [p for _, _, pts in a.groups for p in pts]
    assert [p.attributes for p in points] == [(("m", "c"),)]
    metric = Metric("lat", "", "s", Kind.SUMMARY, tuple(points), prom_type="summary")
    batch = TargetBatch("t", (), (metric,), T0)
    out = summaries_for_delta(batch, "convert")
    assert [m.name for m in out.metrics] == ["lat.sum", "lat.count", "lat.quantile"]
    assert out.metrics[2].points[0].attributes == (("m", "c"), ("quantile", "0.9"))


def test_summaries_for_delta_handles_quantile_one_and_zero() -> None:
    sp = SummaryPoint((), ((0.0, 1.0), (1.0, 5.0)), 2.0, 6.0, start_ns=T0, time_ns=T0 + S)
    batch = TargetBatch("t", (), (Metric("x", "", "s", Kind.SUMMARY, (sp,)),), T0 + S)
    out = summaries_for_delta(batch, "convert")
    q = out.metrics[2]
    assert [p.attributes for p in q.points] == [(("quantile", "0.0"),), (("quantile", "1.0"),)]


# ─── counts that do not fit a uint64 ──────────────────────────────────────────────────────────

def test_histogram_count_of_2_pow_64_is_dropped_not_failing_the_whole_batch() -> None:
    # float(2**64 - 1) rounds up to 2**64, so "<= float(2**64 - 1)" let 2**64 through; the encoder's
    # struct.pack('<Q') then failed and the exporter dropped the whole batch of the target.
    big = float(2**64)
    f = fam("h", "histogram",
            ("h_bucket", {"k": "big", "le": "1"}, 0.0), ("h_bucket", {"k": "big", "le": "+Inf"}, big),
            ("h_count", {"k": "big"}, big), ("h_sum", {"k": "big"}, 1.0),
            ("h_bucket", {"k": "ok", "le": "1"}, 1.0), ("h_bucket", {"k": "ok", "le": "+Inf"}, 2.0),
            ("h_count", {"k": "ok"}, 2.0), ("h_sum", {"k": "ok"}, 1.0))
    a = assemble(f)
    assert a.dropped == 1 and a.reasons == ("histogram_bad_count",)
    points = tuple(p for _, _, pts in a.groups for p in pts)
    assert [p.attributes for p in points] == [(("k", "ok"),)]
    # What is left encodes (with start/time set as convert would).
    pts = tuple(p._replace(start_ns=T0, time_ns=T0 + S) for p in points)
    batch = TargetBatch("t", (), (Metric("h", "", "s", Kind.HISTOGRAM, pts),), T0 + S)
    assert encode_requests(batch).points == 1


def test_histogram_count_of_2_pow_64_in_the_general_path_and_summary_count() -> None:
    big = float(2**64)
    h = fam("h", "histogram",          # unsorted buckets: the general (checked) path
            ("h_bucket", {"le": "+Inf"}, big), ("h_bucket", {"le": "1"}, 0.0),
            ("h_count", {}, 5.0))
    a = assemble(h)
    assert a.dropped == 1 and a.reasons == ("histogram_bad_count",)
    s = fam("s", "summary", ("s", {"quantile": "0.5"}, 1.0), ("s_count", {}, big), ("s_sum", {}, 1.0))
    b = assemble(s)
    assert b.dropped == 1 and b.reasons == ("summary_bad_count",)
    # The largest double below 2**64 still fits and is kept.
    ok = math.nextafter(big, 0.0)
    c = assemble(fam("s", "summary", ("s_count", {}, ok), ("s_sum", {}, 1.0)))
    assert c.dropped == 0


# ─── delta: a NaN counter value ───────────────────────────────────────────────────────────────

def _counter_batch(value: float, t: int) -> TargetBatch:
    p = NumberPoint((("k", "v"),), value, start_ns=T0, time_ns=t)
    return TargetBatch("t", (), (Metric("c", "", "1", Kind.SUM, (p,), monotonic=True),), t)


def test_nan_counter_value_neither_breaks_the_state_file_nor_yields_nan_deltas(tmp_path: Path) -> None:
    # Before the fix the NaN became the previous value: SQLite stores NaN as NULL, so commit() failed
    # (NOT NULL) on every round while it was dirty, and the next delta was NaN.
    state = DeltaState("dd", str(tmp_path))
    assert state.to_delta(_counter_batch(5.0, T0 + S)).metrics == ()          # baseline
    state.commit()
    out = state.to_delta(_counter_batch(math.nan, T0 + 2 * S))
    assert out.metrics == ()
    state.commit()                                                             # raised StateError before
    out = state.to_delta(_counter_batch(8.0, T0 + 3 * S))
    state.commit()
    (m,) = out.metrics
    assert m.temporality is Temporality.DELTA
    (p,) = m.points
    assert p.value == 3.0 and p.start_ns == T0 + S and p.time_ns == T0 + 3 * S   # contiguous with the last real point
    state.close()
    # A restarted bridge continues from the persisted state.
    again = DeltaState("dd", str(tmp_path))
    (m2,) = again.to_delta(_counter_batch(10.0, T0 + 4 * S)).metrics
    assert m2.points[0].value == 2.0 and m2.points[0].start_ns == T0 + 3 * S
    again.close()


# ─── HTTP: a response body httpx cannot decode ────────────────────────────────────────────────

def _http_sender(url: str) -> HttpSender:
    return HttpSender(resolve_exporter(exporter_config(endpoint=url, protocol="http/protobuf"), env={}))


def test_http_undecodable_response_body_is_an_export_error() -> None:
    # httpx.DecodingError is not a TransportError: before the fix it escaped the sender.
    async def go(url: str) -> BaseException | None:
        sender = _http_sender(url)
        try:
            await sender.send(b"")
        except BaseException as exc:  # noqa: BLE001 - the test inspects what escaped
            return exc
        finally:
            await sender.aclose()
        return None

    with HttpReceiver() as rx:
        rx.script.append((200, {"Content-Encoding": "gzip"}, b"this is not gzip"))
        exc = asyncio.run(go(rx.url))
    assert isinstance(exc, ExportError)
    assert exc.retryable is False and exc.kind == "bad_response"


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
