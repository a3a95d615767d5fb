"""What Prometheus itself ingests from real exporters' expositions, and whether promotel reads the same.

The bodies are tests/testdata/real/ (captured here from running exporters and client libraries, each
under three Accept headers; see the README there). ``ReplayServer`` serves every (capture, variant) at
its own path; Debian's Prometheus 2.42 binary scrapes each one as a job of its own (1 s interval,
``honor_labels``/``honor_timestamps`` left at their defaults) until every job has been scraped, and
its query API says what it stored. That is the reference promotel is compared against:

* the Prometheus side (``test_prometheus_*``) asserts only facts about Prometheus: every capture is
  scraped with ``up`` = 1, except the few listed in ``PROMETHEUS_REJECTS`` whose scrape Prometheus
  itself fails, for the reason recorded there;
* the promotel side (``test_promotel_reads_what_prometheus_ingested``) parses each body with
  ``ExpositionParser`` under its recorded Content-Type and compares sample names, labels and values with
  Prometheus'. The captures promotel cannot read today are strict xfails naming the issue, so they turn
  into failures the day they are fixed and the mark has to go.

``prometheus_ingested(capture)`` is the reference for other differential tests: one Prometheus run per
test session serves every call.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from promotel.errors import ExpositionError
from promotel.exposition import ExpositionParser
from support.collector import free_port
from support.replay import REAL, ReplayServer, Variant, all_variants, load_captures

pytestmark = pytest.mark.e2e

# Debian's package (bookworm: 2.42.0). `make test` installs it through the Makefile's prometheus
# target when run as root on a machine with apt-get.
PROMETHEUS = "/usr/bin/prometheus"
# The series Prometheus adds to every scrape itself; they are read apart from the scraped samples.
SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped",
                       "scrape_samples_post_metric_relabeling", "scrape_series_added"})
# Bounds: Prometheus' scrape manager applies a new config about 5 s after start, then each job is
# scraped within one interval; 30 s leaves room on a busy 2-core machine without hanging a broken run.
START_TIMEOUT_S = 20.0
SCRAPE_TIMEOUT_S = 30.0

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
"""A stored series as Prometheus names it: metric name, then its labels sorted, without job/instance."""


@dataclass(frozen=True)
class Scraped:
    """What Prometheus reports for one capture's job: ``up``, the target's last error, the samples."""

    up: float
    last_error: str
    samples: Mapping[SeriesKey, float]


@dataclass(frozen=True)
class Report:
    """One Prometheus run over every capture: its version, the Accept it sent per job, each job's result."""

    version: str
    accept: Mapping[str, str]
    jobs: Mapping[str, Scraped]


VARIANTS = all_variants()
BY_ID = {v.id: v for v in VARIANTS}


# ─── running Prometheus ──────────────────────────────────────────────────────────────────────


def _get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def _config(replay: ReplayServer) -> dict[str, Any]:
    jobs = [{"job_name": v.id, "metrics_path": v.path, "scrape_interval": "1s", "scrape_timeout": "1s",
             "static_configs": [{"targets": [replay.address]}]} for v in replay.routes.values()]
    return {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": jobs}


def _key(metric: Mapping[str, str]) -> SeriesKey:
    labels = tuple(sorted((k, v) for k, v in metric.items() if k not in ("__name__", "job", "instance")))
    return metric["__name__"], labels


def _float(text: str) -> float:
    # The query API writes values as Go's FormatFloat(v, 'f', -1, 64): shortest round-trip decimal,
    # "NaN", "+Inf", "-Inf"; float() reads each of them exactly.
    return float(text)


class PrometheusRun:
    """Debian's Prometheus scraping every capture once (and again each second) from a ReplayServer."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.replay = ReplayServer(VARIANTS)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "prometheus.log"

    def start(self) -> None:
        if not os.access(PROMETHEUS, os.X_OK):
            pytest.fail(f"{PROMETHEUS} not found: these tests compare with Debian's Prometheus binary. "
                        "Run `make prometheus` as root (it apt-get installs the `prometheus` package) "
                        "or `apt-get install prometheus`.", pytrace=False)
        self.replay.start()
        config = self.workdir / "prometheus.yml"
        config.write_text(json.dumps(_config(self.replay), indent=1))   # YAML is a superset of JSON
        self.port = free_port()
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait(START_TIMEOUT_S, self._ready, "answer /-/ready")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None
        self.replay.stop()

    def _api(self, path: str, **params: str) -> Any:
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        reply = _get_json(f"http://127.0.0.1:{self.port}{path}{query}")
        assert reply.get("status") == "success", f"Prometheus {path} answered {reply}"
        return reply["data"]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def _wait(self, timeout: float, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"Prometheus exited with {self.proc.returncode} before it could {what}; "
                                     f"its log:\n{self.log.read_text()[-3000:]}")
            if done():
                return
            time.sleep(0.25)
        raise AssertionError(f"Prometheus did not {what} within {timeout:.0f} s; its log:\n"
                             f"{self.log.read_text()[-3000:]}")

    def _targets(self) -> dict[str, dict[str, Any]]:
        active = self._api("/api/v1/targets", state="active")["activeTargets"]
        return {t["labels"]["job"]: t for t in active}

    def _all_scraped(self) -> bool:
        targets = self._targets()
        return len(targets) == len(VARIANTS) and all(t["health"] != "unknown" for t in targets.values())

    def collect(self) -> Report:
        """Wait until every job was scraped once, then read ``up`` and the stored samples per job."""
        self._wait(SCRAPE_TIMEOUT_S, self._all_scraped, f"scrape all {len(VARIANTS)} captures once")
        targets = self._targets()
        out: dict[str, Scraped] = {}
        for job, target in sorted(targets.items()):
            # An instant query over a job selector returns each stored series' latest sample (within the
            # 5 min look-back); the synthetic series come with it and are taken apart here.
            result = self._api("/api/v1/query", query=f'{{job="{job}"}}')["result"]
            samples: dict[SeriesKey, float] = {}
            up = math.nan
            for row in result:
                name = row["metric"]["__name__"]
                if name == "up":
                    up = _float(row["value"][1])
                elif name not in SYNTHETIC:
                    samples[_key(row["metric"])] = _float(row["value"][1])
            out[job] = Scraped(up, target.get("lastError", ""), samples)
        version = str(self._api("/api/v1/status/buildinfo")["version"])
        accept = {v.id: self.replay.accepts.get(v.path, "") for v in VARIANTS}
        return Report(version, accept, out)


# The session's one run, or why it failed: a failed run is not retried by every later caller (each would
# wait the full timeout again); they fail at once with the first error.
_RUN: list[Report | str] = []


def prometheus_report() -> Report:
    """One Prometheus run for the session: start, scrape every capture, read, stop."""
    if not _RUN:
        with tempfile.TemporaryDirectory(prefix="promotel-real-prometheus-") as tmp:
            run = PrometheusRun(Path(tmp))
            try:
                run.start()
                _RUN.append(run.collect())
            except BaseException as exc:
                _RUN.append(f"{type(exc).__name__}: {exc}")
                raise
            finally:
                run.stop()
    result = _RUN[0]
    if isinstance(result, str):
        pytest.fail(f"the Prometheus run failed earlier in this session: {result}", pytrace=False)
    return result


def prometheus_scraped(capture: Variant | str) -> Scraped:
    """Prometheus' report for one capture variant (``Variant`` or its id ``<capture>/<variant>``)."""
    key = capture if isinstance(capture, str) else capture.id
    return prometheus_report().jobs[key]


def prometheus_ingested(capture: Variant | str) -> dict[SeriesKey, float]:
    """The samples Prometheus stored from one capture variant: ``(name, sorted labels) → value``.

    Labels are those Prometheus stored, without the target's ``job`` and ``instance`` (a body's own
    ``job``/``instance`` labels are stored as ``exported_job``/``exported_instance``, as
    ``honor_labels: false`` does). The series Prometheus adds itself (``up``, ``scrape_*``) are left out.
    """
    return dict(prometheus_scraped(capture).samples)


# ─── the Prometheus side: facts about Prometheus only ────────────────────────────────────────

# Captures whose scrape Prometheus 2.42 itself fails (up = 0), with why and a piece of the error it
# reports; tests/testdata/real/README.md says the same. An Enum named with a colon makes
# prometheus_client use the metric name, colon included, as the state's label name, which neither the
# 0.0.4 text format nor OpenMetrics 1.0 allows.
PROMETHEUS_REJECTS: dict[str, tuple[str, str]] = {
    **{f"python-client-0.17-colon-enum/{variant}": (
        "prometheus_client 0.17 writes the Enum's label name `vllm:engine_state` unquoted", 'expected equal')
       for variant in ("prom3", "prom2", "text")},
    "python-client-0.26-colon-enum/prom3": (
        "asked for escaping=allow-utf-8, prometheus_client 0.26 quotes the label name (`\"vllm:engine_state\"`), "
        "UTF-8 name syntax that Prometheus 2.42 predates", "expected label name"),
}
# Debian's Prometheus 2.42.0, what the `prom2` variants were captured with.
PROM2_VERSION = "2.42."


@pytest.fixture(scope="module")
def report() -> Report:
    return prometheus_report()


def test_prometheus_is_the_version_the_captures_name(report: Report) -> None:
    assert report.version.startswith(PROM2_VERSION), (
        f"Prometheus {report.version} runs here, but the `prom2` captures were made for {PROM2_VERSION}x: "
        "the reference changed; re-capture (tests/testdata/real/README.md) before comparing against it")


def test_prometheus_sends_the_accept_the_prom2_variants_record(report: Report) -> None:
    # Every job asked with Prometheus' own Accept, whatever the variant: the `prom2` variant of each
    # capture must have been fetched with exactly that header for its body to be what 2.42 gets.
    prom2_accept = {v.capture: v.accept for v in VARIANTS if v.name == "prom2"}
    assert report.accept == {v.id: prom2_accept[v.capture] for v in VARIANTS}


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.id)
def test_prometheus_scrapes_capture(report: Report, variant: Variant) -> None:
    scraped = report.jobs[variant.id]
    if variant.id in PROMETHEUS_REJECTS:
        why, error = PROMETHEUS_REJECTS[variant.id]
        assert scraped.up == 0 and error in scraped.last_error, (
            f"Prometheus was expected to reject {variant.id} ({why}; error containing {error!r}) but reports "
            f"up={scraped.up}, error {scraped.last_error!r}: update PROMETHEUS_REJECTS and the README")
        assert scraped.samples == {}
    else:
        assert scraped.up == 1, f"Prometheus failed to scrape {variant.id}: {scraped.last_error}"
        assert scraped.last_error == ""
        assert scraped.samples, f"Prometheus stored no sample from {variant.id}"


# ─── the promotel side: read each body as Prometheus did ─────────────────────────────────────

_ISSUE = "issue 'Ingest what Prometheus ingests'"
# Bodies Prometheus ingests and promotel's parser rejects today, with the reason; strict xfails.
PROMOTEL_KNOWN_FAILURES: dict[str, str] = {
    "client-golang/prom3": (
        f"{_ISSUE}: client_golang's OpenMetrics output declares go_memstats_alloc_bytes twice, a gauge and "
        "then the counter go_memstats_alloc_bytes_total (family name without _total); promotel rejects the "
        "second family's HELP, Prometheus ingests both"),
    "client-golang/prom2": "same body as client-golang/prom3: " + _ISSUE,
    "python-client-0.26/prom2": (
        f"{_ISSUE}: asked without escaping=allow-utf-8, prometheus_client 0.26 declares `vllm:x` families "
        "but writes their samples `vllm_x_total` (escaped); promotel rejects the family/sample mismatch, "
        "Prometheus ingests the samples"),
    "python-client-0.26-colon-enum/prom2": "same as python-client-0.26/prom2: " + _ISSUE,
}


def _as_prometheus_stores(name: str, labels: Mapping[str, str]) -> SeriesKey:
    """A parsed sample's series as Prometheus stores it for a target with the default scrape config.

    Prometheus drops labels whose value is empty, and with ``honor_labels: false`` renames a scraped
    ``job``/``instance`` label (which conflicts with the target's) to ``exported_job``/``exported_instance``.
    """
    pairs = sorted((f"exported_{k}" if k in ("job", "instance") else k, v) for k, v in labels.items() if v != "")
    return name, tuple(pairs)


def promotel_read(variant: Variant) -> dict[SeriesKey, float]:
    """What promotel's parser reads from a capture, in ``prometheus_ingested``'s shape."""
    out: dict[SeriesKey, float] = {}
    for family in ExpositionParser().parse(variant.body, variant.content_type):
        for sample in family.samples:
            # Prometheus appends the first of two samples of one series and rejects the later one as
            # a duplicate for that timestamp; keep the first likewise.
            out.setdefault(_as_prometheus_stores(sample.name, sample.labels), sample.value)
    return out


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _show(keys: set[SeriesKey], limit: int = 5) -> str:
    shown = [name + "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" for name, labels in sorted(keys)[:limit]]
    return ", ".join(shown) + (f" … ({len(keys)} in all)" if len(keys) > limit else "")


COMPARED = [pytest.param(v, id=v.id, marks=[pytest.mark.xfail(strict=True, raises=ExpositionError,
                                                               reason=PROMOTEL_KNOWN_FAILURES[v.id])]
                         if v.id in PROMOTEL_KNOWN_FAILURES else [])
            for v in VARIANTS if v.id not in PROMETHEUS_REJECTS]


@pytest.mark.parametrize("variant", COMPARED)
def test_promotel_reads_what_prometheus_ingested(variant: Variant) -> None:
    expected = prometheus_ingested(variant)
    got = promotel_read(variant)
    missing, extra = set(expected) - set(got), set(got) - set(expected)
    assert not missing and not extra, (
        f"{variant.id} ({variant.content_type}): series Prometheus stored that promotel did not read: "
        f"{_show(missing) or 'none'}; series promotel read that Prometheus did not store: {_show(extra) or 'none'}")
    differ = {k for k in expected if not _same(expected[k], got[k])}
    assert not differ, f"{variant.id}: values differ for " + "; ".join(
        f"{_show({k})}: Prometheus {expected[k]!r}, promotel {got[k]!r}" for k in sorted(differ)[:5])


# ─── the replay helper and the capture files ─────────────────────────────────────────────────


def test_replay_serves_each_body_with_its_content_type() -> None:
    with ReplayServer() as replay:
        for variant in (BY_ID["client-golang/prom3"], BY_ID["python-client-0.26/text"], BY_ID["pushgateway/prom2"]):
            req = urllib.request.Request(replay.url(variant), headers={"Accept": "text/plain"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                assert resp.headers["Content-Type"] == variant.content_type
                assert resp.read() == variant.body
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://{replay.address}/no-such-capture/prom3", timeout=5)
        assert err.value.code == 404
        assert replay.accepts["/client-golang/prom3"] == "text/plain"


def test_every_capture_has_three_variants_and_its_provenance() -> None:
    captures = load_captures()
    assert len(captures) >= 20
    for capture in captures:
        assert capture.exporter and capture.version and capture.captured, capture.name
        assert tuple(capture.variants) == ("prom3", "prom2", "text")
        assert capture.variants["text"].accept == "text/plain;version=0.0.4"
        assert all(v.body for v in capture.variants.values()), capture.name
    total = sum(p.stat().st_size for p in REAL.rglob("*") if p.is_file())
    assert total < 5 * 1024 * 1024, f"tests/testdata/real holds {total} bytes; keep it under 5 MB"
