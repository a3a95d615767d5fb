"""Watching a bridge: ``/metrics`` (Prometheus text), ``/status`` (ISO times, URL, schedule, up),
``promotel top`` (one frame, and live in place under tmux) and ``run --once``'s summary lines."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from promotel.exposition import Strictness, parse_exposition
from promotel.service.metrics import render_metrics
from support.bridge import PROMOTEL, start_bridge, stop_bridge
from support.collector import free_port
from support.sink import OTLPSink
from support.target import ExpositionServer

BODY = "# TYPE jobs_total counter\njobs_total{queue=\"a\"} 5\njobs_total{queue=\"b\"} 7\n"
URL_SECRET = "url-pass-4b1d9e"
PROM_TEXT = "text/plain; version=0.0.4"


def config_text(target_url: str, dead_port: int, sink_port: int, health_port: int | None, *,
                dead: bool = True) -> str:
    dead_source = f"""
  - name: dead
    url: "http://scraper:{URL_SECRET}@127.0.0.1:{dead_port}/metrics?token={URL_SECRET}"
    interval: 2s
    timeout: 0.5s
""" if dead else ""
    health = f'health: {{listen: "127.0.0.1:{health_port}"}}' if health_port else ""
    return f"""
sources:
  - name: jobs
    url: "{target_url}"
    interval: 1s
    timeout: 0.8s
{dead_source}
exporters:
  - name: sink
    endpoint: "http://127.0.0.1:{sink_port}"
{health}
self_telemetry: {{enabled: false}}
"""


def families_by_name(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample_value(fams: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    for s in fams[family].samples:
        if s.name == sample and s.labels == labels:
            return float(s.value)
    raise AssertionError(f"no {sample}{labels} in {fams[family].samples}")


# ─── /metrics rendering ───────────────────────────────────────────────────────────────────────────

STATUS: dict[str, Any] = {
    "started": 1767225600.25,
    "targets": {
        'we"ird\\name\n': {"up": 0, "duration_s": 0.5, "samples": 0, "series": 3, "last_scrape": 1767225610.0,
                          "interval_s": 15.0, "scrapes_total": 4, "samples_total": 30,
                          "scrape_errors": {"connection": 2, "timeout": 1}},
        "fresh": {"up": None, "duration_s": None, "samples": None, "series": None, "last_scrape": None,
                  "interval_s": 5.0, "scrapes_total": 0, "samples_total": 0, "scrape_errors": {}},
    },
    "exporters": {
        "backend": {"state": "down, spooling", "ready": False, "queue_length": 2, "queue_size": 64,
                    "persisted_requests": 5, "persisted_bytes": 12345, "sent_requests": 9, "sent_points": 900,
                    "retries": 3, "failed_requests": {"grpc_unavailable": 4}, "dropped": {"queue_full": 17},
                    "last_success": 1767225605.5},
    },
}


def test_metrics_render_is_valid_prometheus_text_for_promotel_strict_and_prometheus_client() -> None:
    text = render_metrics(STATUS, "1.2.3")
    strict = {f.name: f for f in parse_exposition(text, PROM_TEXT, strictness=Strictness.STRICT)}
    fams = families_by_name(text)
    weird = 'we"ird\\name\n'
    # Both parsers see the same families; counters are typed counters, with HELP.
    assert {"promotel_source_up", "promotel_source_scrape_errors_total", "promotel_exporter_dropped_points_total",
            "promotel_exporter_persisted_bytes", "promotel_build_info"} <= set(strict)
    assert fams["promotel_source_scrape_errors"].type == "counter"
    assert fams["promotel_exporter_sent_points"].documentation
    assert sample_value(fams, "promotel_source_up", "promotel_source_up", source=weird) == 0
    assert sample_value(fams, "promotel_source_scrape_errors", "promotel_source_scrape_errors_total",
                        source=weird, kind="connection") == 2
    assert sample_value(fams, "promotel_source_scrape_duration_seconds", "promotel_source_scrape_duration_seconds",
                        source=weird) == 0.5
    assert sample_value(fams, "promotel_exporter_dropped_points", "promotel_exporter_dropped_points_total",
                        exporter="backend", reason="queue_full") == 17
    assert sample_value(fams, "promotel_exporter_failed_requests", "promotel_exporter_failed_requests_total",
                        exporter="backend", kind="grpc_unavailable") == 4
    assert sample_value(fams, "promotel_exporter_state", "promotel_exporter_state", exporter="backend",
                        state="down, spooling") == 1
    assert sample_value(fams, "promotel_exporter_state", "promotel_exporter_state", exporter="backend",
                        state="ok") == 0
    assert sample_value(fams, "promotel_exporter_ready", "promotel_exporter_ready", exporter="backend") == 0
    assert sample_value(fams, "promotel_exporter_persisted_bytes", "promotel_exporter_persisted_bytes",
                        exporter="backend") == 12345
    assert sample_value(fams, "promotel_start_time_seconds", "promotel_start_time_seconds") == 1767225600.25
    # A source not scraped yet has no up/duration sample (unknown is not 0), but its counters start at 0.
    assert all(s.labels.get("source") != "fresh" for s in fams["promotel_source_up"].samples)
    assert sample_value(fams, "promotel_source_scrapes", "promotel_source_scrapes_total", source="fresh") == 0


def test_metrics_render_of_a_bridge_with_nothing_yet_is_still_valid() -> None:
    text = render_metrics({"started": 1.0, "targets": {}, "exporters": {}})
    assert parse_exposition(text, PROM_TEXT, strictness=Strictness.STRICT)
    assert set(families_by_name(text)) == {"promotel_start_time_seconds"}


# ─── against a running bridge ─────────────────────────────────────────────────────────────────────

def wait_status(base: str, ready: Any, timeout: float = 25.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(base + "/status", timeout=1.0).json()
            if ready(last):
                return last  # type: ignore[no-any-return]
        except (httpx.HTTPError, ValueError) as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{base}/status never matched: {last!r}")


def both_scraped(st: dict[str, Any]) -> bool:
    t = st["targets"]
    return (t.get("jobs", {}).get("up") == 1 and t.get("dead", {}).get("up") == 0
            and st["exporters"]["sink"]["sent_requests"] >= 1)


def iso(value: str) -> datetime.datetime:
    assert value.endswith("Z"), value
    moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert moment.utcoffset() == datetime.timedelta(0)
    return moment


@pytest.fixture()
def running(sink: OTLPSink, target: ExpositionServer, tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    health_port = free_port()
    cfg = tmp_path / "promotel.yaml"
    cfg.write_text(config_text(target.url, free_port(), sink.grpc_port, health_port))
    cfg.chmod(0o600)
    log_path = tmp_path / "out.log"
    proc = start_bridge(cfg, log_path)
    try:
        yield f"http://127.0.0.1:{health_port}", cfg, log_path
    finally:
        assert stop_bridge(proc) == 0, log_path.read_text()


def test_status_and_metrics_of_a_running_bridge(running: tuple[str, Path, Path], tmp_path: Path) -> None:
    base = running[0]
    st = wait_status(base, both_scraped)
    jobs, dead = st["targets"]["jobs"], st["targets"]["dead"]
    # ISO 8601 UTC next to the 0.1 epoch fields, which keep their names and meaning.
    assert abs(iso(st["started_at"]).timestamp() - st["started"]) < 0.001
    assert abs(iso(jobs["last_scrape_at"]).timestamp() - jobs["last_scrape"]) < 0.001
    assert iso(st["now_at"]) >= iso(jobs["last_scrape_at"])
    sink_st = st["exporters"]["sink"]
    assert abs(iso(sink_st["last_success_at"]).timestamp() - sink_st["last_success"]) < 0.001
    # URL without credentials, interval, next scrape after the last one, up.
    assert jobs["url"].startswith("http://127.0.0.1:") and jobs["interval_s"] == 1.0
    assert dead["url"].endswith("/metrics") and "scraper" not in dead["url"] and URL_SECRET not in str(st)
    assert dead["interval_s"] == 2.0
    assert iso(jobs["next_scrape_at"]) > iso(jobs["last_scrape_at"])
    assert jobs["next_scrape"] - jobs["last_scrape"] <= 1.0 + 0.01
    assert (jobs["up"], jobs["samples"], jobs["error"]) == (1, 2, None)
    assert dead["up"] == 0 and dead["error"]
    assert dead["scrape_errors"] and sum(dead["scrape_errors"].values()) >= 1

    response = httpx.get(base + "/metrics", timeout=2.0)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert URL_SECRET not in text
    parse_exposition(text, PROM_TEXT, strictness=Strictness.STRICT)
    fams = families_by_name(text)
    assert sample_value(fams, "promotel_source_up", "promotel_source_up", source="jobs") == 1
    assert sample_value(fams, "promotel_source_up", "promotel_source_up", source="dead") == 0
    assert sample_value(fams, "promotel_source_scrape_samples", "promotel_source_scrape_samples", source="jobs") == 2
    assert sample_value(fams, "promotel_source_series", "promotel_source_series", source="jobs") >= 2
    assert sample_value(fams, "promotel_exporter_sent_requests", "promotel_exporter_sent_requests_total",
                        exporter="sink") >= 1
    assert sample_value(fams, "promotel_exporter_ready", "promotel_exporter_ready", exporter="sink") == 1
    # Counters by reason exist at 0 before anything is dropped, so rate() and alerts have a series.
    assert sample_value(fams, "promotel_exporter_dropped_points", "promotel_exporter_dropped_points_total",
                        exporter="sink", reason="queue_full") == 0
    assert sum(s.value for s in fams["promotel_source_scrape_errors"].samples
               if s.labels["source"] == "dead") >= 1
    # promotel lint, the bridge's own strict check, accepts it as a file too.
    saved = tmp_path / "metrics.prom"
    saved.write_text(text)
    lint = subprocess.run([*PROMOTEL, "lint", str(saved)], capture_output=True, text=True, timeout=60, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "not found: try /healthz, /readyz, /status or /metrics" in httpx.get(base + "/x", timeout=2).text


def test_top_once_prints_one_frame_of_sources_and_exporters(running: tuple[str, Path, Path]) -> None:
    base, cfg, _ = running
    wait_status(base, both_scraped)
    for how in (["--url", base], ["-c", str(cfg)]):
        done = subprocess.run([*PROMOTEL, "top", "--once", *how], capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert any(base in ln for ln in lines), done.stdout
        header = next(ln for ln in lines if "source" in ln and "last scrape" in ln and "samples" in ln)
        assert "series" in header and "error" in header
        jobs = next(ln for ln in lines if ln.split("│")[1:2] and ln.split("│")[1].strip() == "jobs")
        cells = [c.strip() for c in jobs.split("│")[1:-1]]
        assert (cells[1], cells[5], cells[6]) == ("up", "2", "2")
        assert cells[2].endswith(" ago") and (cells[3].startswith("in ") or cells[3].endswith(" ago"))
        dead = next(ln for ln in lines if ln.split("│")[1:2] and ln.split("│")[1].strip() == "dead")
        assert "DOWN" in dead and URL_SECRET not in done.stdout
        sink_row = next(ln for ln in lines if ln.split("│")[1:2] and ln.split("│")[1].strip() == "sink")
        assert "ok" in sink_row and "yes" in sink_row
        assert any("state" in ln and "queue" in ln and "dropped" in ln and "last success" in ln for ln in lines)


def test_top_once_without_a_listener_fails_with_a_clear_message() -> None:
    done = subprocess.run([*PROMOTEL, "top", "--once", "--url", f"http://127.0.0.1:{free_port()}"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "is 'promotel run' running" in done.stderr


def tmux(socket: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, timeout=10,
                          check=True).stdout


def test_top_live_redraws_in_place_under_tmux(running: tuple[str, Path, Path]) -> None:
    assert shutil.which("tmux") is not None, "tmux is missing: `make test` installs it (Debian package tmux)"
    base, _, _ = running
    wait_status(base, both_scraped)
    socket = f"promotel-top-{os.getpid()}"
    # The pane's size, not the test's environment, decides the width (rich reads COLUMNS/LINES first).
    command = " ".join(["env", "-u", "COLUMNS", "-u", "LINES", *PROMOTEL, "top", "--url", base, "--interval", "0.3"])
    tmux(socket, "new-session", "-d", "-x", "200", "-y", "40", "-s", "top", command)
    try:
        frames: list[list[str]] = []
        histories: list[int] = []
        deadline = time.monotonic() + 20
        while len(frames) < 8 and time.monotonic() < deadline:
            time.sleep(0.5)
            screen = tmux(socket, "capture-pane", "-p", "-t", "top").rstrip("\n").splitlines()
            if any("exporters" in ln for ln in screen) and any("sink" in ln for ln in screen):
                frames.append([ln.rstrip() for ln in screen])
                histories.append(int(tmux(socket, "display-message", "-p", "-t", "top", "#{history_size}")))
        assert len(frames) >= 8, frames
        # Redrawn in place: the frame keeps its height, the table starts on the same row, nothing scrolled.
        heights = {len([ln for ln in f if ln]) for f in frames}
        assert len(heights) == 1, frames
        assert len({f.index(next(ln for ln in f if "source" in ln and "samples" in ln)) for f in frames}) == 1
        assert histories == [0] * len(histories), histories
        # ... and it is live: the frames are not all the same (times and counters move).
        assert len({"\n".join(f) for f in frames}) > 1
        assert sum("promotel top" in ln for ln in frames[-1]) == 1
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, timeout=10, check=False)


# ─── run --once ───────────────────────────────────────────────────────────────────────────────────

def test_run_once_prints_one_line_per_source_and_exporter(sink: OTLPSink, target: ExpositionServer,
                                                          tmp_path: Path) -> None:
    cfg = tmp_path / "promotel.yaml"
    cfg.write_text(config_text(target.url, free_port(), sink.grpc_port, None, dead=False))
    cfg.chmod(0o600)
    done = subprocess.run([*PROMOTEL, "run", "--once", "-c", str(cfg)], capture_output=True, text=True,
                          timeout=90, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, lines
    assert re.fullmatch(rf"source jobs: up, 2 samples, 2 series in \d+\.\d{{3}} s from {re.escape(target.url)}",
                        lines[0]), lines
    # Two series plus the scrape's own (up, duration, samples scraped, ...), all in one request.
    sent = re.fullmatch(r"exporter sink: sent 1 requests, (\d+) points; failed none; dropped none; persisted 0",
                        lines[1])
    assert sent is not None and int(sent[1]) > 2, lines
    assert sink.wait_for(lambda s: len(s.snapshot()) >= 1, 5)

    cfg.write_text(config_text(target.url, free_port(), sink.grpc_port, None))
    done = subprocess.run([*PROMOTEL, "run", "--once", "-c", str(cfg)], capture_output=True, text=True,
                          timeout=90, check=False)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("source dead: down (") and lines[0].endswith("/metrics")
    assert URL_SECRET not in done.stdout and "scraper" not in done.stdout
    assert lines[1].startswith("source jobs: up, 2 samples")
    # The failed scrape is delivered too (its up 0 and scrape figures): one request per source.
    assert re.fullmatch(r"exporter sink: sent 2 requests, \d+ points; failed none; dropped none; persisted 0",
                        lines[2]), lines


def test_top_finds_the_listener_in_the_config_or_says_what_to_add(tmp_path: Path) -> None:
    from promotel.commands.top import DEFAULT_URL, listener_url

    cfg = tmp_path / "promotel.yaml"
    cfg.write_text(config_text("http://127.0.0.1:9/metrics", free_port(), free_port(), None, dead=False)
                   + 'health: {listen: "0.0.0.0:9188"}\n')
    cfg.chmod(0o600)
    # A wildcard listen address is reached on loopback.
    assert listener_url(None, str(cfg)) == "http://127.0.0.1:9188"
    assert listener_url("http://10.0.0.5:8888/", str(cfg)) == "http://10.0.0.5:8888"
    assert listener_url(None, None) == DEFAULT_URL
    cfg.write_text(config_text("http://127.0.0.1:9/metrics", free_port(), free_port(), None, dead=False))
    done = subprocess.run([*PROMOTEL, "top", "--once", "-c", str(cfg)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no 'health' section" in done.stderr and "--url" in done.stderr


def test_top_frames_keep_their_columns_whatever_the_values() -> None:
    import io

    from rich.console import Console

    from promotel.commands.top import render_frame

    def frame(status: dict[str, Any] | None, error: str | None = None) -> list[str]:
        out = io.StringIO()
        Console(file=out, width=160, color_system=None).print(render_frame("http://127.0.0.1:8888", status, error))
        return out.getvalue().splitlines()

    quiet = {"now_at": "2026-01-01T00:00:10.000Z",
             "targets": {"a": {"up": 1, "last_scrape_at": "2026-01-01T00:00:09.000Z", "duration_s": 0.01,
                               "samples": 3, "series": 3, "error": None}},
             "exporters": {"e": {"state": "ok", "ready": True, "queue_length": 0, "persisted_requests": 0,
                                 "persisted_bytes": 0, "sent_requests": 1, "sent_points": 3, "failed_requests": {},
                                 "dropped": {}, "last_success_at": "2026-01-01T00:00:09.500Z"}}}
    busy = {"now_at": "2026-01-01T05:00:10.000Z",
            "targets": {"a": {"up": 0, "last_scrape_at": "2026-01-01T00:00:09.000Z", "duration_s": 12.5,
                              "samples": 123456789, "series": 98765, "error": "x" * 300}},
            "exporters": {"e": {"state": "failing, dropping", "ready": False, "queue_length": 64,
                                "persisted_requests": 10**7, "persisted_bytes": 5 * 2**30, "sent_requests": 10**9,
                                "sent_points": 10**12, "failed_requests": {"grpc_unavailable": 10**6, "http_503": 7},
                                "dropped": {"queue_full": 10**8}, "last_success_at": None}}}
    a, b = frame(quiet), frame(busy)
    assert len(a) == len(b)
    # Same borders at the same places: only the cells' text differs.
    for x, y in zip(a[1:], b[1:]):
        assert [i for i, c in enumerate(x) if c in "┃│┏┓┗┛┡┩┳╇┴┬└┘"] == [i for i, c in enumerate(y) if c in "┃│┏┓┗┛┡┩┳╇┴┬└┘"]
    assert any("DOWN" in ln and "5h00m ago" in ln for ln in b) and any("NO" in ln for ln in b)
    # A listener that went away: the frame says so and keeps its tables' headers.
    gone = frame(None, "cannot read http://127.0.0.1:8888/status: ConnectError")
    assert "cannot read http://127.0.0.1:8888/status" in "\n".join(gone)
    assert any("source" in ln and "samples" in ln for ln in gone)
