"""The scraper against real HTTP(S) servers on 127.0.0.1: limits, auth, redirects, errors, TLS."""

from __future__ import annotations

import asyncio
import base64
import datetime
import email.utils
import gzip
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from promotel.config import SourceConfig
from promotel.errors import ScrapeError
from promotel.mappings import RequestBudget, ScrapePolicy, register_mapping, unregister_mapping
from promotel.mappings.table import Table, TablePlugin
from promotel.scrape import ACCEPT, RateBudget, Scraper, parse_retry_after
from support.certs import make_cert

pytestmark = pytest.mark.timeout(30)

EXPOSITION = b"# TYPE up gauge\nup 1\n# TYPE requests_total counter\nrequests_total{code=\"200\"} 7\n"

Handler = Callable[[BaseHTTPRequestHandler], None]


class Server:
    """A threaded HTTP(S) server on 127.0.0.1:0; ``handler`` answers every GET and may misbehave."""

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.requests: list[dict[str, str]] = []
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.requests.append({k.lower(): v for k, v in self.headers.items()})
                try:
                    outer.handler(self)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def url(self, path: str = "/metrics", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def reply(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None,
          content_type: str = "text/plain; version=0.0.4") -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    if "Content-Length" not in (headers or {}):
        h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> Server:
        server = Server(handler, ssl_context)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.close()


def source(url: str, **kw: Any) -> SourceConfig:
    kw.setdefault("name", "t")
    kw.setdefault("interval", "5s")
    kw.setdefault("timeout", "2s")
    return SourceConfig(url=url, **kw)


def scrape(src: SourceConfig, **kw: Any) -> Any:
    async def go() -> Any:
        scraper = Scraper(src, **kw)
        try:
            return await scraper.scrape()
        finally:
            await scraper.aclose()
    return asyncio.run(go())


def scrape_error(src: SourceConfig, **kw: Any) -> ScrapeError:
    with pytest.raises(ScrapeError) as info:
        scrape(src, **kw)
    return info.value


# ─── success path ─────────────────────────────────────────────────────────────────────────────


def test_plain_scrape_sends_prometheus_headers(serve: Callable[..., Server]) -> None:
    server = serve(lambda h: reply(h, 200, EXPOSITION))
    result = scrape(source(server.url()))
    assert result.body == EXPOSITION
    assert result.status == 200
    assert result.content_type == "text/plain; version=0.0.4"
    assert result.url == server.url()
    assert 0 < result.duration_s < 2
    sent = server.requests[0]
    assert sent["accept"] == ACCEPT
    assert sent["accept"].startswith("application/openmetrics-text;version=1.0.0")
    assert sent["accept-encoding"] == "gzip"
    assert sent["user-agent"].startswith("promotel/")
    assert sent["x-prometheus-scrape-timeout-seconds"] == "2"


def test_gzip_body_is_decompressed(serve: Callable[..., Server]) -> None:
    server = serve(lambda h: reply(h, 200, gzip.compress(EXPOSITION), {"Content-Encoding": "gzip"}))
    assert scrape(source(server.url())).body == EXPOSITION


@pytest.mark.parametrize("auth, expected", [
    ({"api_key": "bt-key-123"}, "Api-Key bt-key-123"),
    ({"bearer_token": "tok-456"}, "Bearer tok-456"),
    ({"basic": {"username": "u", "password": "p@ss"}}, "Basic " + base64.b64encode(b"u:p@ss").decode()),
])
def test_auth_headers_reach_the_server(serve: Callable[..., Server], auth: dict[str, Any], expected: str) -> None:
    def handler(h: BaseHTTPRequestHandler) -> None:
        if h.headers.get("Authorization") != expected or h.headers.get("X-Org") != "acme":
            reply(h, 401, b"no\n")
        else:
            reply(h, 200, EXPOSITION)

    server = serve(handler)
    result = scrape(source(server.url(), auth=auth, headers={"X-Org": "acme"}))
    assert result.body == EXPOSITION


# ─── limits ───────────────────────────────────────────────────────────────────────────────────


def test_content_length_over_the_cap_fails_before_reading(serve: Callable[..., Server]) -> None:
    server = serve(lambda h: reply(h, 200, b"x" * 5000))
    err = scrape_error(source(server.url(), max_body_bytes=1000))
    assert err.kind == "too_large"
    assert "Content-Length says 5000" in str(err)
    assert "max_body_bytes (1000 bytes" in str(err)


def _stream(h: BaseHTTPRequestHandler, chunk: bytes, count: int, delay: float = 0.0,
            headers: dict[str, str] | None = None) -> None:
    """A body without Content-Length (ends when the connection closes), written chunk by chunk."""
    h.send_response(200)
    h.send_header("Content-Type", "text/plain")
    h.send_header("Connection", "close")
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.close_connection = True
    for _ in range(count):
        h.wfile.write(chunk)
        h.wfile.flush()
        if delay:
            time.sleep(delay)


def test_body_without_length_is_capped_while_streaming(serve: Callable[..., Server]) -> None:
    server = serve(lambda h: _stream(h, b"a 1\n" * 256, 20))
    err = scrape_error(source(server.url(), max_body_bytes=4096))
    assert err.kind == "too_large"


def test_endless_body_stops_at_the_cap(serve: Callable[..., Server]) -> None:
    # 100 MB would take far longer than the test allows: the scraper must stop after ~1 MiB.
    server = serve(lambda h: _stream(h, b"b 2\n" * 16384, 1600))
    t0 = time.monotonic()
    err = scrape_error(source(server.url(), max_body_bytes="1MiB"))
    assert err.kind == "too_large"
    assert time.monotonic() - t0 < 2


def test_gzip_bomb_is_stopped_on_the_decompressed_size(serve: Callable[..., Server]) -> None:
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 100 * 1024            # small on the wire: only the decompressed cap can catch it
    server = serve(lambda h: reply(h, 200, bomb, {"Content-Encoding": "gzip"}))
    err = scrape_error(source(server.url(), max_body_bytes="1MiB"))
    assert err.kind == "too_large"
    assert "after decompression" in str(err)


def test_truncated_gzip_is_a_clean_failure(serve: Callable[..., Server]) -> None:
    data = gzip.compress(EXPOSITION * 50)
    server = serve(lambda h: reply(h, 200, data[: len(data) // 2], {"Content-Encoding": "gzip"}))
    err = scrape_error(source(server.url()))
    assert err.kind == "protocol"
    assert "ended early" in str(err)


def test_lying_content_length_is_a_clean_failure(serve: Callable[..., Server]) -> None:
    def handler(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        h.wfile.write(b"up 1\n")
        h.wfile.flush()
        h.close_connection = True
        h.connection.shutdown(socket.SHUT_RDWR)

    server = serve(handler)
    err = scrape_error(source(server.url()))
    assert err.kind == "protocol"
    assert "Content-Length" in str(err)


def test_slowloris_ends_at_the_timeout(serve: Callable[..., Server]) -> None:
    stop = threading.Event()

    def handler(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100000")
        h.end_headers()
        for _ in range(100):          # one byte every 50 ms: each read succeeds, the whole never ends
            if stop.is_set():
                return
            h.wfile.write(b"#")
            h.wfile.flush()
            time.sleep(0.05)

    server = serve(handler)
    t0 = time.monotonic()
    err = scrape_error(source(server.url(), interval="2s", timeout="0.6s"))
    elapsed = time.monotonic() - t0
    stop.set()
    assert err.kind == "timeout"
    assert 0.5 < elapsed < 1.5
    assert "0.6s" in str(err)


# ─── HTTP status ──────────────────────────────────────────────────────────────────────────────


def test_429_with_retry_after_seconds_sets_next_allowed(serve: Callable[..., Server]) -> None:
    server = serve(lambda h: reply(h, 429, b"slow down\n", {"Retry-After": "30"}))
    now = [1000.0]

    async def go() -> tuple[ScrapeError, float]:
        scraper = Scraper(source(server.url()), clock=lambda: now[0])
        try:
            with pytest.raises(ScrapeError) as info:
                await scraper.scrape()
            return info.value, scraper.next_allowed_at()
        finally:
            await scraper.aclose()

    err, allowed = asyncio.run(go())
    assert err.kind == "rate_limited"
    assert err.retry_after == 30.0
    assert allowed == 1030.0
    assert "429" in str(err)


def test_503_with_retry_after_http_date(serve: Callable[..., Server]) -> None:
    when = email.utils.format_datetime(datetime.datetime.now(datetime.UTC)
                                       + datetime.timedelta(seconds=120), usegmt=True)
    server = serve(lambda h: reply(h, 503, b"busy\n", {"Retry-After": when}))
    err = scrape_error(source(server.url()))
    assert err.kind == "http_status"
    assert err.retry_after is not None and 115 <= err.retry_after <= 120


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("garbage") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("99999999") == 3600.0


def test_401_names_baseten_auth_scheme_and_hides_key(serve: Callable[..., Server]) -> None:
    server = serve(lambda h: reply(h, 401, b"unauthorized\n"))
    err = scrape_error(source(server.url(), mapping="baseten", interval="60s", auth={"api_key": "very-secret-key"}))
    assert err.kind == "http_status"
    assert "401" in str(err)
    assert "Authorization: Api-Key <key>" in str(err)
    assert "very-secret-key" not in str(err)
    assert err.target == "t"


def test_404_hints_at_the_path(serve: Callable[..., Server]) -> None:
    server = serve(lambda h: reply(h, 404, b"not found\n"))
    err = scrape_error(source(server.url("/metrix")))
    assert err.kind == "http_status"
    assert "/metrics" in str(err) and "404" in str(err)


def test_html_page_is_a_format_error(serve: Callable[..., Server]) -> None:
    server = serve(lambda h: reply(h, 200, b"<!doctype html><html><body>Login</body></html>",
                                   content_type="text/html; charset=utf-8"))
    err = scrape_error(source(server.url()))
    assert err.kind == "format"
    assert "HTML" in str(err)


# ─── redirects ────────────────────────────────────────────────────────────────────────────────


def test_redirect_to_another_host_with_credentials_is_refused(serve: Callable[..., Server]) -> None:
    other = serve(lambda h: reply(h, 200, EXPOSITION))
    first = serve(lambda h: reply(h, 302, b"", {"Location": other.url()}))
    err = scrape_error(source(first.url(), auth={"api_key": "k-do-not-leak"}))
    assert err.kind == "redirect"
    assert other.requests == []                     # the key never went to the other host
    assert "k-do-not-leak" not in str(err)


def test_redirect_without_credentials_and_same_origin_is_followed(serve: Callable[..., Server]) -> None:
    other = serve(lambda h: reply(h, 200, EXPOSITION))
    first = serve(lambda h: reply(h, 301, b"", {"Location": other.url()}))
    assert scrape(source(first.url())).body == EXPOSITION

    def same(h: BaseHTTPRequestHandler) -> None:
        if h.path == "/old":
            reply(h, 308, b"", {"Location": "/metrics"})
        else:
            reply(h, 200, EXPOSITION)

    server = serve(same)
    result = scrape(source(server.url("/old"), auth={"bearer_token": "tok"}))
    assert result.body == EXPOSITION
    assert result.url == server.url("/metrics")
    assert server.requests[-1]["authorization"] == "Bearer tok"


def test_redirect_loop_stops(serve: Callable[..., Server]) -> None:
    server = serve(lambda h: reply(h, 302, b"", {"Location": "/metrics"}))
    err = scrape_error(source(server.url()))
    assert err.kind == "redirect"
    assert len(server.requests) == 6


# ─── network errors ───────────────────────────────────────────────────────────────────────────


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]       # closed again before the scrape: nothing listens there
    err = scrape_error(source(f"http://127.0.0.1:{port}/metrics"))
    assert err.kind == "connect"
    assert "refused" in str(err)


def test_dns_failure() -> None:
    err = scrape_error(source("http://no-such-host.invalid/metrics"))
    assert err.kind == "dns"
    assert "no-such-host.invalid" in str(err)
    assert "check the host name in 'url'" in str(err)


def test_dns_failure_of_a_discovered_target_points_at_discovery_not_url() -> None:
    discovered = SourceConfig(name="t", static_configs=[{"targets": ["no-such-host.invalid:9100"]}], timeout="2s")
    # How promotel.discovery.sourcetargets scrapes one target: the source with that target's url.
    err = scrape_error(discovered.model_copy(update={"url": "http://no-such-host.invalid:9100/metrics"}))
    assert err.kind == "dns" and "DNS lookup of no-such-host.invalid failed" in str(err)
    assert "'url'" not in str(err) and "__address__ after relabel_configs" in str(err)


# ─── TLS ──────────────────────────────────────────────────────────────────────────────────────


def tls_server(serve: Callable[..., Server], tmp: Path, names: list[str]) -> tuple[Server, str]:
    cert, key = make_cert(tmp, names)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return serve(lambda h: reply(h, 200, EXPOSITION), ctx), cert


def test_self_signed_certificate_fails_without_ca_and_passes_with_it(serve: Callable[..., Server],
                                                                     tmp_path: Path) -> None:
    server, cert = tls_server(serve, tmp_path, ["127.0.0.1"])
    err = scrape_error(source(server.url()))
    assert err.kind == "tls"
    assert "tls.ca_file" in str(err)
    assert scrape(source(server.url(), tls={"ca_file": cert})).body == EXPOSITION
    assert scrape(source(server.url(), tls={"insecure_skip_verify": True})).body == EXPOSITION


def test_tls_server_name_verifies_another_name(serve: Callable[..., Server], tmp_path: Path) -> None:
    server, cert = tls_server(serve, tmp_path, ["metrics.internal.test"])
    err = scrape_error(source(server.url(), tls={"ca_file": cert}))
    assert err.kind == "tls"                          # the cert is not for 127.0.0.1
    ok = scrape(source(server.url(), tls={"ca_file": cert, "server_name": "metrics.internal.test"}))
    assert ok.body == EXPOSITION


# ─── Baseten budget ───────────────────────────────────────────────────────────────────────────


def test_baseten_budget_is_shared_by_sources_with_one_key(serve: Callable[..., Server]) -> None:
    server = serve(lambda h: reply(h, 200, EXPOSITION))
    now = [500.0]

    def clock() -> float:
        return now[0]

    a = source(server.url(), name="a", mapping="baseten", interval="10s", auth={"api_key": "org-key-budget"})
    b = source(server.url(), name="b", mapping="baseten", interval="10s", auth={"api_key": "org-key-budget"})
    other = source(server.url(), name="c", mapping="baseten", interval="10s", auth={"api_key": "another-org"})

    async def go() -> tuple[ScrapeError, float, int]:
        sa, sb, sc = (Scraper(s, clock=clock) for s in (a, b, other))
        try:
            for i in range(6):
                await (sa if i % 2 else sb).scrape()
            with pytest.raises(ScrapeError) as info:
                await sa.scrape()              # the 7th request within 60 s: refused without contacting Baseten
            hits = len(server.requests)
            await sc.scrape()                  # another organization has its own budget
            return info.value, sb.next_allowed_at(), hits
        finally:
            for s in (sa, sb, sc):
                await s.aclose()

    err, allowed, hits = asyncio.run(go())
    assert err.kind == "rate_limited"
    assert "6 requests per minute" in str(err)
    assert hits == 6
    assert len(server.requests) == 7
    assert allowed == 560.0


# ─── a mapping's own scrape policy ────────────────────────────────────────────────────────────

ACME_POLICY = ScrapePolicy(vendor="Acme", default_interval=40.0, min_interval=5.0,
                           budget=RequestBudget(requests=2, window=30.0, per="account"),
                           auth_hint="Acme expects 'Authorization: Bearer <token>' (auth.bearer_token)")


@pytest.fixture
def acme() -> Iterator[str]:
    """A table plugin registered in code as mapping ``acme``, with its own scrape policy."""
    register_mapping("acme", TablePlugin(Table("acme", (), ()), "acme", scrape_policy=ACME_POLICY))
    try:
        yield "acme"
    finally:
        unregister_mapping("acme")


def test_a_plugins_budget_is_shared_per_credential_and_words_the_errors(serve: Callable[..., Server],
                                                                        acme: str) -> None:
    server = serve(lambda h: reply(h, 200, EXPOSITION))
    now = [100.0]
    a = source(server.url(), name="a", mapping=acme, auth={"bearer_token": "acme-token-1"})
    b = source(server.url(), name="b", mapping=acme, auth={"bearer_token": "acme-token-1"})

    async def go() -> tuple[ScrapeError, int]:
        sa, sb = (Scraper(s, clock=lambda: now[0]) for s in (a, b))
        try:
            assert sa.policy is ACME_POLICY
            await sa.scrape()
            await sb.scrape()
            with pytest.raises(ScrapeError) as info:
                await sa.scrape()              # the 3rd request within 30 s: refused without a request
            return info.value, len(server.requests)
        finally:
            for s in (sa, sb):
                await s.aclose()

    err, hits = asyncio.run(go())
    assert hits == 2
    assert err.kind == "rate_limited" and err.retry_after == 30.0
    assert str(err).startswith("skipped to stay within Acme's budget of 2 requests per 30 s per account "
                               "(another source uses the same bearer token); the next request is allowed in 30s")


def test_a_plugins_429_and_401_hints(serve: Callable[..., Server], acme: str) -> None:
    limited = serve(lambda h: reply(h, 429, b"slow down\n"))
    err = scrape_error(source(limited.url(), mapping=acme, auth={"bearer_token": "acme-token-2"}))
    assert err.kind == "rate_limited"
    assert err.retry_after == 30.0           # no Retry-After: the budget's window
    assert str(err).endswith("answered HTTP 429 Too Many Requests; retrying after 30s as the server asked. "
                             "Acme allows 2 requests per 30 s per account: use interval 40s and one bridge per "
                             "account")
    refused = serve(lambda h: reply(h, 401, b"unauthorized\n"))
    err = scrape_error(source(refused.url(), mapping=acme, auth={"bearer_token": "acme-token-3"}))
    assert str(err).endswith("answered HTTP 401 (Unauthorized); check the bearer token; Acme expects "
                             "'Authorization: Bearer <token>' (auth.bearer_token)")
    assert "acme-token-3" not in str(err)


def test_without_a_policy_there_is_no_budget_and_the_hints_are_generic(serve: Callable[..., Server]) -> None:
    limited = serve(lambda h: reply(h, 429, b"slow down\n"))
    err = scrape_error(source(limited.url(), auth={"api_key": "plain-key-4"}))
    assert err.retry_after is None and str(err).endswith("answered HTTP 429 Too Many Requests. Raise the interval")
    refused = serve(lambda h: reply(h, 401, b"unauthorized\n"))
    err = scrape_error(source(refused.url(), auth={"api_key": "plain-key-4"}))
    assert str(err).endswith("check the API key; promotel sends it as 'Authorization: Api-Key <key>' "
                             "(auth.api_key)")
    assert "Baseten" not in str(err)


def test_rate_budget_sliding_window() -> None:
    budget = RateBudget(2, 60.0)
    assert budget.reserve(0.0, 10.0) == 0.0
    assert budget.reserve(5.0, 10.0) == 0.0
    assert budget.reserve(20.0, 10.0) is None          # the next slot is at 60 s
    assert budget.next_free(20.0) == 60.0
    assert budget.reserve(55.0, 10.0) == 5.0           # booked at 60 s
    assert budget.next_free(61.0) == 65.0


# ─── gzip: every member, within the cap; nothing after the last member ───────────────────────
#
# A gzip body may be several gzip members one after the other (RFC 1952, 2.2; what ``cat a.gz b.gz`` or
# a server that compresses per write produces). Go's gzip.Reader, which Prometheus scrapes with, reads
# them all (multistream by default) and fails on anything after a member that is not another member.


def test_two_member_gzip_body_yields_all_samples(serve: Callable[..., Server]) -> None:
    first = b"# TYPE up gauge\nup 1\n"
    second = b"".join(b'requests_total{code="%d"} %d\n' % (c, c) for c in range(200, 300))
    server = serve(lambda h: reply(h, 200, gzip.compress(first) + gzip.compress(second), {"Content-Encoding": "gzip"}))
    body = scrape(source(server.url())).body
    assert body == first + second                   # the first member alone used to be the whole scrape (up=1)
    assert sum(1 for line in body.splitlines() if not line.startswith(b"#")) == 101      # samples


def test_gzip_members_split_anywhere_across_reads_decode_whole() -> None:
    """Member boundaries, headers and trailers cut at every offset by the network: fed in 1 to 7 byte pieces,
    several members (an empty one among them) decode to their concatenation."""
    from promotel.scrape.client import _Inflater

    parts = [EXPOSITION, b"", b"a 1\n" * 500, gzip.compress(b"nested gzip bytes are data here")]
    data = b"".join(gzip.compress(p) for p in parts)
    for step in range(1, 8):
        inflater = _Inflater("gzip", 1 << 20, "test")
        out = [b"".join(inflater.feed(data[i:i + step])) for i in range(0, len(data), step)]
        out += inflater.finish()
        assert b"".join(out) == b"".join(parts), step


def test_multi_member_gzip_bomb_stops_at_the_cap_on_the_total(serve: Callable[..., Server]) -> None:
    member = gzip.compress(b"\0" * (256 * 1024), compresslevel=9)     # each member alone is under the cap
    bomb = member * 200                                               # 50 MiB decompressed, ~50 kB on the wire
    assert len(bomb) < 100 * 1024
    server = serve(lambda h: reply(h, 200, bomb, {"Content-Encoding": "gzip"}))
    t0 = time.monotonic()
    err = scrape_error(source(server.url(), max_body_bytes="1MiB"))
    assert err.kind == "too_large"
    assert "larger than max_body_bytes (1048576 bytes after decompression)" in str(err)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("trailing, shown", [
    (b"<html>not gzip</html>\n", b"<html>not gzip</"),     # ≥ 10 bytes: Go fails with "gzip: invalid header"
    (b"\n", b"\n"),                                        # < 10 bytes: Go fails with "unexpected EOF"
    (b"\0" * 64, b"\0" * 16),                              # zero padding: GNU gzip ignores it, Go does not
])
def test_data_after_the_last_gzip_member_is_an_error_naming_it(serve: Callable[..., Server], trailing: bytes,
                                                               shown: bytes) -> None:
    body = gzip.compress(EXPOSITION) + trailing
    server = serve(lambda h: reply(h, 200, body, {"Content-Encoding": "gzip"}))
    err = scrape_error(source(server.url()))
    assert err.kind == "format"
    text = str(err)
    assert "after its gzip member 1 with data that is not a gzip member" in text
    assert repr(shown) in text and "Prometheus refuses such a body as well" in text


def test_truncated_second_gzip_member_is_a_clean_failure(serve: Callable[..., Server]) -> None:
    second = gzip.compress(EXPOSITION * 50)
    for cut in (2, len(second) // 2):                  # inside the header, inside the data
        body = gzip.compress(EXPOSITION) + second[:cut]
        server = serve(lambda h, body=body: reply(h, 200, body, {"Content-Encoding": "gzip"}))
        err = scrape_error(source(server.url()))
        assert err.kind == "protocol", cut
        assert "ended early in gzip member 2 (truncated gzip stream)" in str(err), cut


def test_data_after_a_deflate_stream_is_an_error(serve: Callable[..., Server]) -> None:
    import zlib

    body = zlib.compress(EXPOSITION) + b"extra"
    server = serve(lambda h: reply(h, 200, body, {"Content-Encoding": "deflate"}))
    err = scrape_error(source(server.url()))
    assert err.kind == "format" and "after the end of its zlib stream" in str(err) and "b'extra'" in str(err)
    plain = zlib.compress(EXPOSITION)
    ok = serve(lambda h: reply(h, 200, plain, {"Content-Encoding": "deflate"}))
    assert scrape(source(ok.url())).body == EXPOSITION
