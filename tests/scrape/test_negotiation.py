"""Negotiation as Prometheus 3 does it: the Accept header built from ``scrape_protocols``, the answered
Content-Type deciding the parser, and ``fallback_scrape_protocol`` for a Content-Type that says nothing usable.

The expected headers are Prometheus's own: its scrape tests (scrape/scrape_test.go, ``TestAcceptHeader``) and
the ``prom3`` Accept recorded in every tests/testdata/real/*/capture.json.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from promotel.config import SourceConfig
from promotel.errors import ExpositionError, ScrapeError
from promotel.exposition import ExpositionParser, Strictness, detect_format
from promotel.httpcommon import DEFAULT_SCRAPE_PROTOCOLS, SCRAPE_PROTOCOL_MEDIA_TYPES, parse_media_type
from promotel.scrape import ACCEPT, Scraper, ScrapeResult, accept_header
from support.replay import REAL, ReplayServer, all_variants

pytestmark = pytest.mark.timeout(60)

# Prometheus 3's default header (scrape_test.go: default protocols, escaping allow-utf-8).
PROMETHEUS3_DEFAULT = ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
                       "application/openmetrics-text;version=0.0.1;q=0.5,"
                       "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
                       "text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
# scrape_test.go: the protobuf-first protocols with allow-utf-8 (the weights start at 6 whatever the length).
PROMETHEUS3_PROTO_FIRST = ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;"
                           "q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
                           "application/openmetrics-text;version=0.0.1;q=0.4,"
                           "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,"
                           "*/*;q=0.1")

TEXT_BODY = b"# TYPE requests_total counter\nrequests_total{code=\"200\"} 7\n"
OM_BODY = b"# TYPE requests counter\nrequests_total{code=\"200\"} 7\n# EOF\n"
UTF8_TEXT_BODY = (b'# HELP "http.server.duration" dotted name\n# TYPE "http.server.duration" gauge\n'
                  b'{"http.server.duration","route.name"="/a",code="200"} 1.5\nplain 2\n')


# ─── the Accept header ───────────────────────────────────────────────────────────────────────


def test_default_accept_is_prometheus_3s() -> None:
    assert ACCEPT == PROMETHEUS3_DEFAULT
    assert accept_header(DEFAULT_SCRAPE_PROTOCOLS) == PROMETHEUS3_DEFAULT
    assert SourceConfig(name="t", url="http://127.0.0.1/metrics").scrape_protocols == DEFAULT_SCRAPE_PROTOCOLS


def test_default_accept_matches_every_capture() -> None:
    recorded = {json.loads((folder / "capture.json").read_text())["variants"]["prom3"]["accept"]
                for folder in sorted(REAL.iterdir()) if (folder / "capture.json").is_file()}
    assert recorded == {ACCEPT}


def test_accept_builder_matches_prometheus_for_the_protobuf_first_list() -> None:
    # promotel refuses PrometheusProto in config, but the builder is Prometheus's: same weights for 5 entries.
    assert accept_header(["PrometheusProto", *DEFAULT_SCRAPE_PROTOCOLS]) == PROMETHEUS3_PROTO_FIRST


@pytest.mark.parametrize(("protocols", "expected"), [
    (["PrometheusText0.0.4"], "text/plain;version=0.0.4;q=0.6,*/*;q=0.5"),
    (["OpenMetricsText0.0.1"], "application/openmetrics-text;version=0.0.1;q=0.6,*/*;q=0.5"),
    (["PrometheusText1.0.0", "OpenMetricsText1.0.0"],
     "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.6,"
     "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,*/*;q=0.4"),
    (["PrometheusText0.0.4", "OpenMetricsText0.0.1", "PrometheusText1.0.0", "OpenMetricsText1.0.0"],
     "text/plain;version=0.0.4;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,"
     "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
     "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.3,*/*;q=0.2"),
])
def test_accept_header_follows_scrape_protocols(protocols: list[str], expected: str) -> None:
    assert accept_header(protocols) == expected
    target = Target()
    try:
        target.answer("text/plain; version=0.0.4", TEXT_BODY)
        scrape(source(target.url, scrape_protocols=protocols))
        assert target.accepts == [expected]
    finally:
        target.close()


def test_scrape_protocols_media_types_are_prometheus_s() -> None:
    assert SCRAPE_PROTOCOL_MEDIA_TYPES == {
        "PrometheusProto": "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
        "PrometheusText0.0.4": "text/plain;version=0.0.4",
        "PrometheusText1.0.0": "text/plain;version=1.0.0",
        "OpenMetricsText0.0.1": "application/openmetrics-text;version=0.0.1",
        "OpenMetricsText1.0.0": "application/openmetrics-text;version=1.0.0",
    }


# ─── a target that records Accept and answers a given Content-Type ───────────────────────────


class Target:
    """A loopback HTTP target: records each request's Accept, answers ``content_type`` (None: no header)."""

    def __init__(self) -> None:
        self.accepts: list[str] = []
        self.content_type: str | None = None
        self.body = b""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.accepts.append(self.headers.get("Accept", ""))
                self.send_response(200)
                if outer.content_type is not None:
                    self.send_header("Content-Type", outer.content_type)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/metrics"

    def answer(self, content_type: str | None, body: bytes) -> None:
        self.content_type, self.body = content_type, body

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def target() -> Iterator[Target]:
    t = Target()
    yield t
    t.close()


def source(url: str, **kw: Any) -> SourceConfig:
    kw.setdefault("name", "t")
    kw.setdefault("interval", "5s")
    kw.setdefault("timeout", "2s")
    return SourceConfig(url=url, **kw)


def scrape(src: SourceConfig, times: int = 1) -> ScrapeResult:
    async def go() -> ScrapeResult:
        scraper = Scraper(src, env={})
        try:
            result = await scraper.scrape()
            for _ in range(times - 1):
                result = await scraper.scrape()
            return result
        finally:
            await scraper.aclose()
    return asyncio.run(go())


@pytest.mark.parametrize(("content_type", "body", "fmt", "names"), [
    ("text/plain; version=0.0.4; charset=utf-8", TEXT_BODY, "prometheus", {"requests_total"}),
    ("text/plain; version=1.0.0; escaping=allow-utf-8", UTF8_TEXT_BODY, "prometheus",
     {"http.server.duration", "plain"}),
    ("text/plain; version=1.0.0; charset=utf-8; escaping=underscores", TEXT_BODY, "prometheus", {"requests_total"}),
    ("text/plain", UTF8_TEXT_BODY, "prometheus", {"http.server.duration", "plain"}),
    ("application/openmetrics-text; version=0.0.1; charset=utf-8", OM_BODY, "openmetrics", {"requests"}),
    ("application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8", OM_BODY, "openmetrics",
     {"requests"}),
    ('Application/OpenMetrics-Text; version="1.0.0"', OM_BODY, "openmetrics", {"requests"}),
])
def test_the_answered_content_type_decides_the_parser(target: Target, content_type: str, body: bytes, fmt: str,
                                                      names: set[str]) -> None:
    target.answer(content_type, body)
    result = scrape(source(target.url))
    assert target.accepts == [ACCEPT]
    assert result.content_type == content_type
    assert result.content_type_problem is None
    assert detect_format(result.content_type, body.decode()) == fmt
    families = ExpositionParser().parse(result.body, result.content_type)
    assert {f.name for f in families} == names


def test_quoted_utf8_names_and_labels_parse_in_text_1_0_0(target: Target) -> None:
    target.answer("text/plain; version=1.0.0; escaping=allow-utf-8", UTF8_TEXT_BODY)
    result = scrape(source(target.url))
    families = {f.name: f for f in ExpositionParser().parse(result.body, result.content_type)}
    sample = families["http.server.duration"].samples[0]
    assert families["http.server.duration"].type == "gauge"
    assert dict(sample.labels) == {"route.name": "/a", "code": "200"}
    assert sample.value == 1.5
    # The same body announced as text 0.0.4 is refused: quoted names need version 1.0.0.
    with pytest.raises(ExpositionError, match=r"version=1\.0\.0"):
        ExpositionParser().parse(result.body, "text/plain; version=0.0.4")


def test_quoted_utf8_names_parse_in_openmetrics_1_0_0(target: Target) -> None:
    # promotel asks for OpenMetrics 1.0.0 with escaping=allow-utf-8, as Prometheus 3 does; an exporter that has
    # names outside the legacy character sets answers them quoted, and says so in its Content-Type.
    target.answer("application/openmetrics-text; version=1.0.0; escaping=allow-utf-8",
                  b'# TYPE "http.server.active" gauge\n{"http.server.active",a="1","route.name"="/a"} 3\n# EOF\n')
    result = scrape(source(target.url))
    assert target.accepts == [ACCEPT]
    families = ExpositionParser().parse(result.body, result.content_type)
    assert [f.name for f in families] == ["http.server.active"]
    assert (families[0].type, dict(families[0].samples[0].labels)) == ("gauge", {"a": "1", "route.name": "/a"})
    # The bridge's scrape parsing reads it alike, with nothing to tolerate: the Content-Type declares quoted names.
    lenient = ExpositionParser(strictness=Strictness.SCRAPE)
    assert lenient.parse(result.body, result.content_type) == families
    assert lenient.leniencies == ()


def test_every_captured_prom3_answer_keeps_its_content_type() -> None:
    """The real exporters' answers to Prometheus 3's Accept, replayed: promotel sends the same Accept and
    hands each Content-Type to the parser unchanged, which reads the format it names."""
    variants = tuple(v for v in all_variants() if v.name == "prom3")
    with ReplayServer(variants) as replay:
        for variant in variants:
            result = scrape(source(replay.url(variant), name=variant.capture.replace("-", "_")))
            assert replay.accepts[variant.path] == ACCEPT, variant.id
            assert result.content_type == variant.content_type, variant.id
            assert result.content_type_problem is None, variant.id
            media, _ = parse_media_type(variant.content_type)
            expected = "openmetrics" if media == "application/openmetrics-text" else "prometheus"
            assert detect_format(result.content_type, result.body.decode()) == expected, variant.id


# ─── fallback_scrape_protocol ────────────────────────────────────────────────────────────────

# (answered Content-Type, the problem's words)
UNUSABLE = [
    (None, "sent no Content-Type"),
    ("", "sent an empty Content-Type"),
    ("text/plain; version", "cannot be parsed"),
    ("text/plain; version=0.0.4; version=1.0.0", "cannot be parsed"),
    ("application/json", "no exposition format"),
]


@pytest.mark.parametrize(("content_type", "words"), UNUSABLE)
def test_without_a_fallback_the_format_is_guessed_from_the_body(target: Target, content_type: str | None,
                                                                 words: str) -> None:
    target.answer(content_type, OM_BODY)
    result = scrape(source(target.url))
    assert result.content_type_problem is not None and words in result.content_type_problem
    assert result.content_type == content_type          # handed on as answered
    if content_type in (None, "", "application/json"):
        # Nothing readable names a format: the body's '# EOF' makes it OpenMetrics, as before.
        assert detect_format(result.content_type, OM_BODY.decode()) == "openmetrics"
        assert [f.name for f in ExpositionParser().parse(result.body, result.content_type)] == ["requests"]


@pytest.mark.parametrize(("content_type", "words"), UNUSABLE)
@pytest.mark.parametrize("fallback", ["PrometheusText0.0.4", "PrometheusText1.0.0", "OpenMetricsText0.0.1",
                                      "OpenMetricsText1.0.0"])
def test_fallback_scrape_protocol_decides_when_the_content_type_does_not(target: Target, content_type: str | None,
                                                                          words: str, fallback: str) -> None:
    target.answer(content_type, OM_BODY)
    result = scrape(source(target.url, fallback_scrape_protocol=fallback))
    assert result.content_type == SCRAPE_PROTOCOL_MEDIA_TYPES[fallback]
    assert result.content_type_problem is not None and words in result.content_type_problem
    expected = "openmetrics" if fallback.startswith("OpenMetrics") else "prometheus"
    # The fallback wins over the body's '# EOF', which would have made it OpenMetrics.
    assert detect_format(result.content_type, OM_BODY.decode()) == expected


def test_fallback_prometheus_text_parses_a_body_that_the_guess_would_read_as_openmetrics(target: Target) -> None:
    body = b"# TYPE jobs counter\njobs_total 3\n# EOF\n"
    target.answer(None, body)
    guessed = scrape(source(target.url))
    assert [(f.name, f.type) for f in ExpositionParser().parse(guessed.body, guessed.content_type)] == \
        [("jobs", "counter")]
    chosen = scrape(source(target.url, fallback_scrape_protocol="PrometheusText0.0.4"))
    families = ExpositionParser().parse(chosen.body, chosen.content_type)
    # Prometheus text: '# EOF' is a comment, and jobs_total is not a sample of the counter family 'jobs'.
    assert [s.name for f in families for s in f.samples] == ["jobs_total"]


def test_fallback_openmetrics_on_a_text_body_fails_the_parse(target: Target) -> None:
    target.answer("application/json", TEXT_BODY)
    result = scrape(source(target.url, fallback_scrape_protocol="OpenMetricsText1.0.0"))
    with pytest.raises(ExpositionError, match="EOF"):
        ExpositionParser().parse(result.body, result.content_type)


def test_a_valid_content_type_is_used_even_with_a_fallback(target: Target) -> None:
    target.answer("text/plain; version=0.0.4", OM_BODY)
    result = scrape(source(target.url, fallback_scrape_protocol="OpenMetricsText1.0.0"))
    assert result.content_type == "text/plain; version=0.0.4"
    assert result.content_type_problem is None


def test_the_content_type_problem_is_logged_once_per_source(target: Target, caplog: pytest.LogCaptureFixture) -> None:
    target.answer(None, OM_BODY)
    with caplog.at_level(logging.WARNING, logger="promotel.scrape"):
        scrape(source(target.url, name="noisy"), times=3)
    lines = [r.getMessage() for r in caplog.records if r.name == "promotel.scrape"]
    assert len(lines) == 1
    assert "noisy" in lines[0] and "sent no Content-Type" in lines[0]
    assert "fallback_scrape_protocol" in lines[0] and "Prometheus 3 fails" in lines[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="promotel.scrape"):
        scrape(source(target.url, name="chosen", fallback_scrape_protocol="PrometheusText1.0.0"), times=2)
    lines = [r.getMessage() for r in caplog.records if r.name == "promotel.scrape"]
    assert len(lines) == 1 and "parsing the body as PrometheusText1.0.0" in lines[0]


def test_a_protobuf_answer_is_a_format_error(target: Target) -> None:
    target.answer("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
                  b"\x0a\x03abc")
    with pytest.raises(ScrapeError) as info:
        scrape(source(target.url, fallback_scrape_protocol="PrometheusText0.0.4"))
    assert info.value.kind == "format"
    assert "protobuf" in str(info.value) and "text format" in str(info.value)


@pytest.mark.parametrize(("value", "expected"), [
    ("text/plain; version=0.0.4; charset=utf-8", ("text/plain", {"version": "0.0.4", "charset": "utf-8"})),
    ("Text/Plain;Version=1.0.0;escaping=allow-utf-8;", ("text/plain", {"version": "1.0.0", "escaping": "allow-utf-8"})),
    ('application/openmetrics-text; version="1.0.0"', ("application/openmetrics-text", {"version": "1.0.0"})),
    ("text", ("text", {})),
])
def test_parse_media_type_reads_what_go_reads(value: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_media_type(value) == expected


@pytest.mark.parametrize("value", ["", " ", "/plain", "text/", "text/plain extra", "text/plain; =1",
                                   "text/plain; v", 'text/plain; v="open', "text/plain; v=1; V=2", "text/plain; v=1 x"])
def test_parse_media_type_refuses_what_go_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        parse_media_type(value)
