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
  ``ExpositionParser(strictness=Strictness.SCRAPE)``, as the bridge does, under its recorded Content-Type
  and compares sample names, labels and values with Prometheus', and the metadata of its families with
  the metadata Prometheus keeps for the target. The captures that break a rule Prometheus does not
  enforce are listed in ``LENIENT`` with the leniencies promotel reports for them (and the error
  ``promotel lint`` gives). One difference is deliberate: samples written under their family's escaped
  name keep that family in promotel and have no metadata in Prometheus (``ESCAPED_FAMILIES``);
* of the bodies 2.42 refuses, promotel reads the one Prometheus 3 reads (quoted UTF-8 names,
  ``READ_AS_PROMETHEUS_3``), compared with what 2.42 stored from the same exporter's escaped answer, and
  refuses the others, as Prometheus 3 does.

``prometheus_ingested(capture)`` is the reference for other differential tests: one Prometheus run per
test session serves every call.
"""

from __future__ import annotations

import json
import math
import os
import re
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
from promotel.exposition import ExpositionParser, Rule, Strictness
from promotel.exposition.rules import family_unique_text
from promotel.model import MetricFamily
from support.collector import free_port
from support.paths import conformance_cases
from support.processes import terminate
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
Metadata = tuple[str, str, str]
"""The metadata Prometheus keeps for a metric family name: type, help, unit."""


@dataclass(frozen=True)
class Scraped:
    """What Prometheus reports for one capture's job: ``up``, the target's last error, the samples, and the
    target's metadata (``/api/v1/targets/metadata``: family name → type, help, unit)."""

    up: float
    last_error: str
    samples: Mapping[SeriesKey, float]
    metadata: Mapping[str, Metadata]


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
    """Debian's Prometheus scraping every variant once (and again each second) from a ReplayServer: the
    captures unless ``variants`` says otherwise."""

    def __init__(self, workdir: Path, variants: tuple[Variant, ...] = VARIANTS) -> None:
        self.workdir = workdir
        self.variants = variants
        self.replay = ReplayServer(variants)
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
            terminate(self.proc, 10)
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
        return len(targets) == len(self.variants) and all(t["health"] != "unknown" for t in targets.values())

    def collect(self) -> Report:
        """Wait until every job was scraped once, then read ``up`` and the stored samples per job."""
        self._wait(SCRAPE_TIMEOUT_S, self._all_scraped, f"scrape all {len(self.variants)} variants once")
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
            rows = self._api("/api/v1/targets/metadata", match_target=f'{{job="{job}"}}')
            metadata = {str(m["metric"]): (str(m["type"]), str(m["help"]), str(m["unit"])) for m in rows}
            out[job] = Scraped(up, target.get("lastError", ""), samples, metadata)
        version = str(self._api("/api/v1/status/buildinfo")["version"])
        accept = {v.id: self.replay.accepts.get(v.path, "") for v in self.variants}
        return Report(version, accept, out)


# The session's one run per set of variants, or why it failed: a failed run is not retried by every later
# caller (each would wait the full timeout again); they fail at once with the first error.
_RUNS: dict[str, Report | str] = {}


def _session_report(key: str, variants: tuple[Variant, ...]) -> Report:
    if key not in _RUNS:
        with tempfile.TemporaryDirectory(prefix="promotel-real-prometheus-") as tmp:
            run = PrometheusRun(Path(tmp), variants)
            try:
                run.start()
                _RUNS[key] = run.collect()
            except BaseException as exc:
                _RUNS[key] = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                run.stop()
    result = _RUNS[key]
    if isinstance(result, str):
        pytest.fail(f"the Prometheus run failed earlier in this session: {result}", pytrace=False)
    return result


def prometheus_report() -> Report:
    """One Prometheus run for the session: start, scrape every capture, read, stop."""
    return _session_report("captures", VARIANTS)


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
# 0.0.4 text format nor OpenMetrics 1.0 allows; prometheus_client 0.26 asked with escaping=allow-utf-8
# quotes it, which Prometheus 3 reads and 2.42 does not (promotel reads it: READ_AS_PROMETHEUS_3).
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

# Bodies that break a rule Prometheus does not enforce: promotel's scrape parsing (Strictness.SCRAPE)
# ingests them as Prometheus does and reports the rules it tolerated, each once with its first line and a
# count; `promotel lint` (Strictness.STRICT) rejects them with the first one's text. Why each is there:
_CLIENT_GOLANG = (
    "client_golang 1.14's OpenMetrics output declares go_memstats_alloc_bytes twice: the gauge, then the "
    "counter go_memstats_alloc_bytes_total, whose OpenMetrics family name drops _total; the second HELP "
    "comes after the gauge's sample, and the name is used by two families")
_ESCAPED = (
    "asked without escaping=allow-utf-8, prometheus_client 0.26 declares `vllm:x` families but writes "
    "their samples `vllm_x_total`, `vllm_x_created`, … (escaped; prometheus/client_python issue 1177): promotel "
    "reads them as the family's, under the escaped name (escaped-name, once per family: 7, and the colon-named "
    "Enum); read literally, the samples are untyped families of their own written in turn, so each name is used "
    "again after another family's samples: `promotel lint` fails on that (family-unique at line 41)")
LENIENT: dict[str, tuple[str, tuple[tuple[str, int, int], ...]]] = {
    # capture/variant: (why, ((rule, first line, count), …))
    "client-golang/prom3": (_CLIENT_GOLANG, (("metadata-after-samples", 56, 1), ("family-unique", 58, 1))),
    "client-golang/prom2": (_CLIENT_GOLANG, (("metadata-after-samples", 56, 1), ("family-unique", 58, 1))),
    "python-client-0.26/prom2": (_ESCAPED, (("escaped-name", 39, 7),)),
    "python-client-0.26-colon-enum/prom2": (_ESCAPED, (("escaped-name", 39, 8),)),
}
# The error `promotel lint` (STRICT) gives for a LENIENT body whose first leniency is a reading STRICT does not
# make (Rule.ESCAPED_NAME), so not STRICT's error: (line, message).
STRICT_READS_OTHERWISE: dict[str, tuple[int, str]] = {
    variant: (41, family_unique_text("vllm_request_success_total"))
    for variant in ("python-client-0.26/prom2", "python-client-0.26-colon-enum/prom2")
}

# A deliberate difference from Prometheus 2.42, in the metadata only: samples written under the escaped name of
# the family declared before them (prometheus_client 0.26 asked without escaping=allow-utf-8: `# TYPE
# vllm:request_success counter`, then `vllm_request_success_total …`). Prometheus attaches a family's metadata to
# the samples whose names are the family's (2.42: by name; 3: scrape.isSeriesPartOfFamily), so it keeps the
# declared name's metadata, for a family without samples, and none for the samples' names: to it they are
# untyped. promotel reads them as the declared family's (Rule.ESCAPED_NAME, reported), which takes the escaped
# name: its samples' name, under which Prometheus stores them too. Otherwise the counters, the histogram, the
# Info and the Enum of that answer would lose their type, and their OTLP names and types would differ from the
# other two answers' (tests/mappings/test_real_captures.py). Listed: the declared names, whose metadata promotel
# carries under the escaped name.
_VLLM_DECLARED = ("vllm:request_success", "vllm:prompt_tokens", "vllm:e2e_request_latency_seconds",
                  "vllm:num_requests_running", "vllm:gpu_cache_usage_perc", "vllm:cache_config",
                  "vllm:time_to_first_token_seconds")
ESCAPED_FAMILIES: dict[str, tuple[str, ...]] = {
    "python-client-0.26/prom2": _VLLM_DECLARED,
    "python-client-0.26-colon-enum/prom2": (*_VLLM_DECLARED, "vllm:engine_state"),
}


def _escaped(name: str) -> str:
    """A name as prometheus_client escapes a sample name: every character outside [a-zA-Z0-9_] as ``_``."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _as_prometheus_stores(name: str, labels: Mapping[str, str]) -> SeriesKey:
    """A parsed sample's series as Prometheus stores it for a target with the default scrape config.

    Prometheus drops labels whose value is empty, and with ``honor_labels: false`` renames a scraped
    ``job``/``instance`` label (which conflicts with the target's) to ``exported_job``/``exported_instance``.
    """
    pairs = sorted((f"exported_{k}" if k in ("job", "instance") else k, v) for k, v in labels.items() if v != "")
    return name, tuple(pairs)


def promotel_families(variant: Variant) -> tuple[list[MetricFamily], ExpositionParser]:
    """A capture parsed as the bridge parses a scrape (``Strictness.SCRAPE``), and the parser (its leniencies)."""
    parser = ExpositionParser(strictness=Strictness.SCRAPE)
    return parser.parse(variant.body, variant.content_type), parser


def promotel_read(variant: Variant) -> dict[SeriesKey, float]:
    """What promotel's parser reads from a capture, in ``prometheus_ingested``'s shape."""
    out: dict[SeriesKey, float] = {}
    for family in promotel_families(variant)[0]:
        for sample in family.samples:
            # Prometheus appends the first of two samples of one series and rejects the later one as
            # a duplicate for that timestamp; keep the first likewise.
            out.setdefault(_as_prometheus_stores(sample.name, sample.labels), sample.value)
    return out


def promotel_metadata(families: list[MetricFamily]) -> dict[str, Metadata]:
    """The metadata promotel's families carry, by family name, in ``Scraped.metadata``'s shape.

    Families without metadata lines (type unknown, no help, no unit: the samples Prometheus keeps no metadata
    for) are left out. Of two families of one name, the last one's: Prometheus keeps one entry per name and
    each metadata line overwrites it, so client_golang's ``go_memstats_alloc_bytes`` is a counter there,
    while promotel keeps the gauge and the counter apart (the metadata each sample was written under, as
    Prometheus 3 attaches it to the sample)."""
    out: dict[str, Metadata] = {}
    for f in families:
        if f.type != "unknown" or f.help is not None or f.unit is not None:
            out[f.name] = (f.type, f.help or "", f.unit or "")
    return out


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _show(keys: set[SeriesKey], limit: int = 5) -> str:
    shown = [name + "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" for name, labels in sorted(keys)[:limit]]
    return ", ".join(shown) + (f" … ({len(keys)} in all)" if len(keys) > limit else "")


COMPARED = [pytest.param(v, id=v.id) for v in VARIANTS if v.id not in PROMETHEUS_REJECTS]


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


@pytest.mark.parametrize("variant", COMPARED)
def test_promotel_metadata_is_what_prometheus_keeps(variant: Variant) -> None:
    expected = dict(prometheus_scraped(variant).metadata)
    got = promotel_metadata(promotel_families(variant)[0])
    # ESCAPED_FAMILIES: the metadata Prometheus keeps under the declared name is promotel's under the escaped
    # one, and Prometheus has none under the escaped name; compared under the declared name.
    for declared in ESCAPED_FAMILIES.get(variant.id, ()):
        escaped = _escaped(declared)
        assert escaped != declared and escaped not in expected and declared not in got, (variant.id, declared)
        assert escaped in got, f"{variant.id}: promotel has no family {escaped} (declared {declared})"
        got[declared] = got.pop(escaped)
    differ = {name: (expected.get(name), got.get(name)) for name in set(expected) | set(got)
              if expected.get(name) != got.get(name)}
    assert not differ, f"{variant.id}: metadata differs (Prometheus, promotel): " + "; ".join(
        f"{name}: {pair}" for name, pair in sorted(differ.items())[:5])


@pytest.mark.parametrize("variant", COMPARED)
def test_promotel_reports_the_rules_it_tolerates(variant: Variant) -> None:
    _, parser = promotel_families(variant)
    expected = LENIENT[variant.id][1] if variant.id in LENIENT else ()
    assert tuple((str(e.rule), e.line, e.count) for e in parser.leniencies) == expected, variant.id
    if not expected:
        ExpositionParser().parse(variant.body, variant.content_type)        # strict: valid as it is
        return
    # `promotel lint` (STRICT) fails on the first of them, in the same words at the same line; unless that one
    # is a reading STRICT does not make (STRICT_READS_OTHERWISE gives its error then).
    with pytest.raises(ExpositionError) as err:
        ExpositionParser().parse(variant.body, variant.content_type)
    first = parser.leniencies[0]
    if variant.id in STRICT_READS_OTHERWISE:
        assert first.rule is Rule.ESCAPED_NAME
        assert (err.value.line, err.value.message) == STRICT_READS_OTHERWISE[variant.id]
    else:
        assert (err.value.line, err.value.message) == (first.line, first.text)


# Bodies Prometheus 2.42 refuses (PROMETHEUS_REJECTS) that promotel's scrape parsing reads, as Prometheus 3 does,
# each with the answer of the same exporter that 2.42 ingests: prometheus_client 0.26 asked with
# escaping=allow-utf-8 quotes the colon-named Enum's state label (`"vllm:engine_state"="running"`), UTF-8 name
# syntax Prometheus 3 reads (model/textparse/openmetricsparse.go) and 2.42 predates; its `prom2` answer escapes the
# names instead. The other bodies 2.42 refuses, Prometheus 3 refuses too (a colon in an unquoted label name), and
# so does promotel.
READ_AS_PROMETHEUS_3: dict[str, str] = {
    "python-client-0.26-colon-enum/prom3": "python-client-0.26-colon-enum/prom2",
}


@pytest.mark.parametrize("variant", [pytest.param(BY_ID[v], id=v) for v in PROMETHEUS_REJECTS])
def test_promotel_on_what_prometheus_2_42_refuses(report: Report, variant: Variant) -> None:
    assert report.jobs[variant.id].up == 0          # the fact, checked with its error by test_prometheus_scrapes_capture
    parser = ExpositionParser(strictness=Strictness.SCRAPE)
    if variant.id not in READ_AS_PROMETHEUS_3:
        with pytest.raises(ExpositionError, match="expected '=' after label name"):
            parser.parse(variant.body, variant.content_type)
        return
    families = parser.parse(variant.body, variant.content_type)
    # The answer's Content-Type declares the quoted names (escaping=allow-utf-8): nothing tolerated, and
    # `promotel lint` (STRICT) reads the body alike.
    assert parser.leniencies == ()
    assert ExpositionParser().parse(variant.body, variant.content_type) == families
    # What Prometheus 3 stores is what 2.42 stored from the escaped answer, the names as the exporter has them:
    # the same series once promotel's names are escaped alike (values may differ: a live process, a moment
    # apart), and the metadata 2.42 keeps under the declared names, which are the UTF-8 answer's names.
    escaped = prometheus_scraped(READ_AS_PROMETHEUS_3[variant.id])
    got = {(_escaped(name), tuple(sorted((_escaped(k), v) for k, v in labels))) for name, labels in promotel_read(variant)}
    assert got == set(escaped.samples), _show(got ^ set(escaped.samples))
    assert promotel_metadata(families) == dict(escaped.metadata)
    state = next(f for f in families if f.name == "vllm:engine_state")
    assert state.type == "stateset" and all("vllm:engine_state" in s.labels for s in state.samples)


def test_the_lenient_cases_as_prometheus_stores_them(report: Report) -> None:
    # client_golang's two families named go_memstats_alloc_bytes: the gauge's sample in a gauge, the
    # counter's in a counter; Prometheus 2.42 keeps the last metadata of the name (the counter's).
    families, _ = promotel_families(BY_ID["client-golang/prom2"])
    kinds = {(s.name, f.name, f.type) for f in families for s in f.samples if s.name.startswith("go_memstats_alloc_bytes")}
    assert kinds == {("go_memstats_alloc_bytes", "go_memstats_alloc_bytes", "gauge"),
                     ("go_memstats_alloc_bytes_total", "go_memstats_alloc_bytes", "counter")}
    golang = report.jobs["client-golang/prom2"]
    assert golang.metadata["go_memstats_alloc_bytes"] == ("counter", "Total number of bytes allocated, even if freed.", "")
    assert ("go_memstats_alloc_bytes", ()) in golang.samples and ("go_memstats_alloc_bytes_total", ()) in golang.samples
    # prometheus_client 0.26's escaped samples under unescaped families: Prometheus keeps the family's
    # metadata (vllm:request_success, a counter without samples) and none for the samples' names; promotel
    # reads the samples as the counter's, under the escaped name (ESCAPED_FAMILIES), with the same samples.
    families, _ = promotel_families(BY_ID["python-client-0.26/prom2"])
    by_name = {f.name: f for f in families}
    assert "vllm:request_success" not in by_name and "vllm_request_success_total" not in by_name
    counter = by_name["vllm_request_success"]
    assert counter.type == "counter" and counter.help == "Count of successfully processed requests."
    assert sum(1 for s in counter.samples if s.name == "vllm_request_success_total") == 6
    assert sum(1 for s in counter.samples if s.name == "vllm_request_success_created") == 6
    assert by_name["vllm_cache_config"].type == "info"
    vllm = report.jobs["python-client-0.26/prom2"]
    assert vllm.metadata["vllm:request_success"][0] == "counter"
    assert "vllm_request_success_total" not in vllm.metadata and "vllm_request_success_created" not in vllm.metadata
    assert "vllm_request_success" not in vllm.metadata
    assert sum(1 for name, _ in vllm.samples if name == "vllm_request_success_total") == 6


# ─── the OpenMetrics conformance suite: what Prometheus accepts, promotel's scrape parsing accepts ─────

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
CONFORMANCE_CASES = tuple(Variant("conformance", case.name, "", OPENMETRICS, (case / "metrics").read_bytes())
                          for case in conformance_cases())
# Cases Prometheus 2.42 refuses and promotel's SCRAPE accepts: an exemplar on a sample whose name ends in
# neither _total nor _bucket. 2.42 fails the scrape ("metric name … does not support exemplars"); 2.43 and
# later store exemplars of any series (prometheus/prometheus 9225d118, "Add Exemplars support for all time
# series"), and SCRAPE keeps them, reporting the OpenMetrics rule (exemplar-placement).
EXEMPLARS_SINCE_2_43 = frozenset({
    "bad_exemplars_on_unallowed_metric_types_0", "bad_exemplars_on_unallowed_metric_types_1",
    "bad_exemplars_on_unallowed_metric_types_2", "bad_exemplars_on_unallowed_samples_0",
    "bad_exemplars_on_unallowed_samples_1", "bad_exemplars_on_unallowed_samples_3",
})


def conformance_report() -> Report:
    """One Prometheus run for the session over the 211 conformance cases, each served as OpenMetrics 1.0.0."""
    return _session_report("conformance", CONFORMANCE_CASES)


def _read_untimed(families: list[MetricFamily]) -> dict[SeriesKey, float]:
    # Samples with a timestamp are left out: the suite's are decades old, and Prometheus' storage refuses
    # them as out of bounds (a storage matter, not parsing); the first of a series, as Prometheus keeps.
    out: dict[SeriesKey, float] = {}
    for family in families:
        for sample in family.samples:
            if sample.timestamp_ns is None:
                out.setdefault(_as_prometheus_stores(sample.name, sample.labels), sample.value)
    return out


@pytest.mark.parametrize("case", CONFORMANCE_CASES, ids=lambda v: v.name)
def test_scrape_parsing_accepts_what_prometheus_accepts(case: Variant) -> None:
    scraped = conformance_report().jobs[case.id]
    parser = ExpositionParser(strictness=Strictness.SCRAPE)
    try:
        families = parser.parse(case.body, case.content_type)
    except ExpositionError as exc:
        assert scraped.up == 0, f"Prometheus ingests {case.name}; promotel's SCRAPE refuses it: {exc}"
        return
    if case.name in EXEMPLARS_SINCE_2_43:
        assert scraped.up == 0 and "does not support exemplars" in scraped.last_error, scraped.last_error
        assert "exemplar-placement" in {str(e.rule) for e in parser.leniencies}
        return
    assert scraped.up == 1, f"Prometheus refuses {case.name} ({scraped.last_error}); promotel's SCRAPE accepts it"
    expected = {k: v for k, v in scraped.samples.items()}
    got = _read_untimed(families)
    assert set(got) == set(expected), (case.name, _show(set(got) ^ set(expected)))
    assert all(_same(expected[k], got[k]) for k in expected), case.name
    assert promotel_metadata(families) == dict(scraped.metadata), case.name
    # A case STRICT refuses is accepted by reporting what it tolerated; one STRICT accepts needs nothing.
    try:
        ExpositionParser().parse(case.body, case.content_type)
    except ExpositionError:
        assert parser.leniencies
    else:
        assert parser.leniencies == ()


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
