"""Scraping through an HTTP proxy: HTTP_PROXY / HTTPS_PROXY / NO_PROXY and the source's proxy_url, no_proxy
and proxy_from_environment, against a real forward proxy (tests/support/forward_proxy.py).

The targets are named ``target.test``: only the proxy resolves that name (to 127.0.0.1), so a scrape that
succeeds went through the proxy, and one that bypasses it fails with a DNS error. The proxy's credentials must
never appear in an error or a log line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from promotel.config import SourceConfig
from promotel.config.secrets import SecretRedactingFilter, redact_all
from promotel.errors import ScrapeError
from promotel.httpcommon import Proxy, proxy_settings
from promotel.scrape import ACCEPT, Scraper, ScrapeResult
from support.bridge import PROMOTEL
from support.certs import make_cert
from support.forward_proxy import ForwardProxy

pytestmark = pytest.mark.timeout(60)

BODY = b"# TYPE up gauge\nup 1\n"
PASSWORD = "pr0xy-s3cret-Pw"
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY",
                   "all_proxy", "grpc_proxy", "no_grpc_proxy")


class Target:
    """An HTTP(S) metrics target on 127.0.0.1 that records the requests it got (path and headers)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
                self.wfile.write(BODY)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def url(self, host: str = "target.test") -> str:
        return f"{self.scheme}://{host}:{self.port}/metrics"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy variable from the machine running the tests: each test sets the ones it means."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def target() -> Iterator[Target]:
    t = Target()
    yield t
    t.close()


@pytest.fixture
def tls_target(tmp_path: Path) -> Iterator[tuple[Target, str]]:
    cert, key = make_cert(tmp_path, ["target.test"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    t = Target(ctx)
    yield t, cert
    t.close()


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy(hosts={"target.test": "127.0.0.1"}) as p:
        yield p


@pytest.fixture
def locked_proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy(hosts={"target.test": "127.0.0.1"}, credentials=("scraper", PASSWORD)) as p:
        yield p


def source(url: str, **kw: Any) -> SourceConfig:
    kw.setdefault("name", "t")
    kw.setdefault("interval", "5s")
    kw.setdefault("timeout", "2s")
    return SourceConfig(url=url, **kw)


def scrape(src: SourceConfig) -> ScrapeResult:
    async def go() -> ScrapeResult:
        scraper = Scraper(src)
        try:
            return await scraper.scrape()
        finally:
            await scraper.aclose()
    return asyncio.run(go())


def scrape_error(src: SourceConfig) -> ScrapeError:
    with pytest.raises(ScrapeError) as info:
        scrape(src)
    return info.value


# ─── through the environment ─────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_http_target_through_http_proxy_variable(monkeypatch: pytest.MonkeyPatch, proxy: ForwardProxy,
                                                target: Target, variable: str) -> None:
    monkeypatch.setenv(variable, proxy.url())
    result = scrape(source(target.url()))
    assert result.body == BODY
    # An absolute-URI GET to the proxy, which sent it on in origin form with promotel's headers.
    assert proxy.methods() == [("GET", target.url())]
    assert target.requests[0][0] == "/metrics"
    assert target.requests[0][1]["accept"] == ACCEPT
    assert "proxy-authorization" not in target.requests[0][1]


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy"])
def test_https_target_through_a_connect_tunnel(monkeypatch: pytest.MonkeyPatch, proxy: ForwardProxy,
                                               tls_target: tuple[Target, str], variable: str) -> None:
    server, ca = tls_target
    monkeypatch.setenv(variable, proxy.url())
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")      # the http:// proxy is not used for https://
    result = scrape(source(server.url(), tls={"ca_file": ca}))
    assert result.body == BODY
    assert proxy.methods() == [("CONNECT", f"target.test:{server.port}")]
    assert server.requests[0][1]["accept"] == ACCEPT         # end to end inside the tunnel (TLS to target.test)


def test_proxy_credentials_from_the_environment_are_sent_and_masked(monkeypatch: pytest.MonkeyPatch,
                                                                    locked_proxy: ForwardProxy,
                                                                    tls_target: tuple[Target, str]) -> None:
    server, ca = tls_target
    monkeypatch.setenv("HTTPS_PROXY", locked_proxy.url("scraper", PASSWORD))
    assert scrape(source(server.url(), tls={"ca_file": ca})).body == BODY
    sent = locked_proxy.passed[0].headers["proxy-authorization"]
    assert sent.startswith("Basic ")
    assert redact_all(f"{PASSWORD} {sent.removeprefix('Basic ')}") == "*** ***"


def test_an_environment_proxy_without_a_scheme_is_http(monkeypatch: pytest.MonkeyPatch, proxy: ForwardProxy,
                                                      target: Target) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"127.0.0.1:{proxy.port}")
    assert scrape(source(target.url())).body == BODY
    assert proxy.methods() == [("GET", target.url())]


# ─── proxy_url, no_proxy, proxy_from_environment ─────────────────────────────────────────────


def test_proxy_url_takes_http_and_https_targets(proxy: ForwardProxy, target: Target,
                                                tls_target: tuple[Target, str]) -> None:
    tls, ca = tls_target
    assert scrape(source(target.url(), proxy_url=proxy.url())).body == BODY
    assert scrape(source(tls.url(), proxy_url=proxy.url(), tls={"ca_file": ca})).body == BODY
    assert proxy.methods() == [("GET", target.url()), ("CONNECT", f"target.test:{tls.port}")]


def test_proxy_url_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch, proxy: ForwardProxy,
                                             target: Target) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")       # nothing listens there
    monkeypatch.setenv("NO_PROXY", "target.test")                # Prometheus: proxy_url ignores the environment
    assert scrape(source(target.url(), proxy_url=proxy.url())).body == BODY
    assert len(proxy.passed) == 1


def test_proxy_url_alone_proxies_loopback_too(proxy: ForwardProxy, target: Target) -> None:
    # net/http's ProxyURL (Prometheus's proxy_url without no_proxy) proxies every request.
    assert scrape(source(target.url("127.0.0.1"), proxy_url=proxy.url())).body == BODY
    assert proxy.methods() == [("GET", target.url("127.0.0.1"))]


def test_no_proxy_with_proxy_url_goes_direct(proxy: ForwardProxy, target: Target) -> None:
    err = scrape_error(source(target.url(), proxy_url=proxy.url(), no_proxy="example.org, .test"))
    assert err.kind == "dns" and "target.test" in str(err)     # direct: only the proxy knows target.test
    assert proxy.passed == []
    assert scrape(source(target.url(), proxy_url=proxy.url(), no_proxy="example.org,10.0.0.0/8")).body == BODY
    # With no_proxy, httpproxy's rules apply: loopback addresses go direct.
    assert scrape(source(target.url("127.0.0.1"), proxy_url=proxy.url(), no_proxy="example.org")).body == BODY
    assert proxy.methods() == [("GET", target.url())]


@pytest.mark.parametrize("no_proxy", ["target.test", ".test", "*.test", "TARGET.test", "test", "*",
                                      "other.example, target.test:{port}"])
def test_no_proxy_variable_bypasses_the_proxy(monkeypatch: pytest.MonkeyPatch, proxy: ForwardProxy, target: Target,
                                              no_proxy: str) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url())
    monkeypatch.setenv("NO_PROXY", no_proxy.format(port=target.port))
    err = scrape_error(source(target.url()))
    assert err.kind == "dns"
    assert proxy.passed == []


@pytest.mark.parametrize("no_proxy", ["other.test", "arget.test", "target.test:1", "127.0.0.0/8", ".target.test"])
def test_no_proxy_entries_that_do_not_match_keep_the_proxy(monkeypatch: pytest.MonkeyPatch, proxy: ForwardProxy,
                                                          target: Target, no_proxy: str) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url())
    monkeypatch.setenv("no_proxy", no_proxy)
    assert scrape(source(target.url())).body == BODY
    assert len(proxy.passed) == 1


def test_loopback_targets_never_use_the_environment_proxy(monkeypatch: pytest.MonkeyPatch, proxy: ForwardProxy,
                                                          target: Target) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url())
    for host in ("127.0.0.1", "localhost"):
        assert scrape(source(target.url(host))).body == BODY
    assert proxy.passed == []


def test_proxy_from_environment_false_ignores_the_variables(monkeypatch: pytest.MonkeyPatch, proxy: ForwardProxy,
                                                            target: Target) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url())
    err = scrape_error(source(target.url(), proxy_from_environment=False))
    assert err.kind == "dns"
    assert proxy.passed == []
    assert scrape(source(target.url(), proxy_from_environment=True)).body == BODY


def test_redirects_choose_their_proxy_per_url(proxy: ForwardProxy, target: Target) -> None:
    moved = Target()
    try:
        # The first hop goes direct (loopback, NO_PROXY rules), the redirect to target.test through the proxy.
        class Redirect(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(302)
                self.send_header("Location", target.url())
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        moved.httpd.RequestHandlerClass = Redirect
        src = source(moved.url("127.0.0.1"), proxy_url=proxy.url(), no_proxy="example.org")
        assert scrape(src).body == BODY
        assert proxy.methods() == [("GET", target.url())]
    finally:
        moved.close()


# ─── errors: the proxy's, named as such, never with its credentials ─────────────────────────


@pytest.mark.parametrize("tls", [False, True])
def test_proxy_407_names_the_proxy_and_hides_the_password(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                                          locked_proxy: ForwardProxy, target: Target,
                                                          tls_target: tuple[Target, str], tls: bool) -> None:
    server, ca = tls_target if tls else (target, None)
    wrong = "wr0ng-" + PASSWORD
    monkeypatch.setenv("HTTPS_PROXY" if tls else "HTTP_PROXY", locked_proxy.url("scraper", wrong))
    with caplog.at_level(logging.DEBUG):
        err = scrape_error(source(server.url(), tls={"ca_file": ca} if ca else None))
        logging.getLogger("promotel.service").warning("Scrape of source t failed: %s", err)
    text = str(err)
    assert err.kind == "proxy"
    assert "407 Proxy Authentication Required" in text
    assert f"http://127.0.0.1:{locked_proxy.port}" in text
    assert ("HTTPS_PROXY" if tls else "HTTP_PROXY") in text and "USER:PASSWORD" in text
    assert wrong not in text and PASSWORD not in text and "scraper:" not in text
    assert locked_proxy.passed and "proxy-authorization" in locked_proxy.passed[0].headers
    for record in caplog.records:
        SecretRedactingFilter().filter(record)
        assert wrong not in record.getMessage() and PASSWORD not in record.getMessage()


def test_proxy_url_407_hides_the_password_from_config(locked_proxy: ForwardProxy, target: Target) -> None:
    wrong = "an0ther-Wr0ng-pw"
    err = scrape_error(source(target.url(), proxy_url=locked_proxy.url("scraper", wrong)))
    assert err.kind == "proxy" and "(proxy_url)" in str(err)
    assert wrong not in str(err) and wrong not in repr(err.args)


def test_a_proxy_that_is_down_is_named(target: Target) -> None:
    with ForwardProxy() as gone:
        url = gone.url("scraper", PASSWORD)
    err = scrape_error(source(target.url(), proxy_url=url))
    assert err.kind == "proxy"
    assert "connection to the proxy http://127.0.0.1:" in str(err) and "refused" in str(err)
    assert PASSWORD not in str(err)


def test_a_proxy_that_cannot_reach_the_target(proxy: ForwardProxy, tls_target: tuple[Target, str],
                                              target: Target) -> None:
    server, ca = tls_target
    err = scrape_error(source(server.url("nowhere.test"), proxy_url=proxy.url(), tls={"ca_file": ca}))
    assert err.kind == "proxy" and "refused to open a tunnel to nowhere.test" in str(err) and "502" in str(err)
    err = scrape_error(source(target.url("nowhere.test"), proxy_url=proxy.url()))
    assert err.kind == "http_status" and "502" in str(err) and "through the proxy" in str(err)


def test_dns_failure_of_the_proxy_host(target: Target) -> None:
    err = scrape_error(source(target.url(), proxy_url="http://proxy.invalid:3128"))
    assert err.kind == "dns" and "the proxy http://proxy.invalid:3128 (proxy_url)" in str(err)


def test_an_unusable_environment_proxy_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, target: Target) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"socks5://me:{PASSWORD}@127.0.0.1:1080")
    with pytest.raises(ScrapeError) as info:
        Scraper(source(target.url()))
    assert info.value.kind == "proxy" and "SOCKS" in str(info.value) and PASSWORD not in str(info.value)


# ─── the rules, one by one (Go's golang.org/x/net/http/httpproxy) ────────────────────────────


def test_proxy_settings_follow_go_httpproxy() -> None:
    env = {"HTTP_PROXY": "http://h:1", "http_proxy": "http://lower:1", "HTTPS_PROXY": "s:2",
           "NO_PROXY": "a.example, .b.example, 10.0.0.0/8, 192.168.1.1, [::2]:8443, c.example:8080,, "}
    s = proxy_settings(None, None, None, env)
    assert s.for_url("http", "x.example", None) == Proxy("http://h:1", "the HTTP_PROXY variable")   # upper case first
    assert s.for_url("https", "x.example", None) == Proxy("http://s:2", "the HTTPS_PROXY variable")
    direct = [("http", "a.example", None), ("http", "sub.a.example", None), ("http", "x.b.example", None),
              ("http", "10.1.2.3", None), ("http", "192.168.1.1", 80), ("https", "::2", 8443),
              ("http", "c.example", 8080), ("http", "localhost", None), ("http", "127.0.0.2", None),
              ("http", "::1", None), ("ftp", "x.example", None)]
    for scheme, host, port in direct:
        assert s.for_url(scheme, host, port) is None, (scheme, host, port)
    proxied = [("http", "b.example", None), ("http", "xa.example", None), ("http", "11.0.0.1", None),
               ("https", "::2", 443), ("http", "c.example", 80), ("http", "192.168.1.2", None)]
    for scheme, host, port in proxied:
        assert s.for_url(scheme, host, port) is not None, (scheme, host, port)
    assert proxy_settings(None, None, None, {"HTTP_PROXY": "", "http_proxy": "http://l:1"}).for_url(
        "http", "x", None) == Proxy("http://l:1", "the http_proxy variable")        # empty means unset
    assert proxy_settings(None, None, None, {"HTTP_PROXY": "http://h:1", "NO_PROXY": "*"}).for_url(
        "http", "x", None) is None
    assert proxy_settings(None, None, False, {"HTTP_PROXY": "http://h:1"}).for_url("http", "x", None) is None
    only = proxy_settings("http://p:3", None, None, {"NO_PROXY": "x"})
    assert only.for_url("http", "x", None) == only.for_url("https", "127.0.0.1", 1) == Proxy("http://p:3", "proxy_url")


def test_grpc_proxy_settings_read_what_grpc_core_reads() -> None:
    env = {"grpc_proxy": "http://g:1", "HTTPS_PROXY": "http://s:2", "no_grpc_proxy": "a.example", "NO_PROXY": "b"}
    s = proxy_settings(None, None, None, env, grpc=True)
    assert s.for_url("https", "x", 4317) == Proxy("http://g:1", "the grpc_proxy variable")
    assert s.for_url("https", "a.example", 4317) is None
    assert s.for_url("https", "b", 4317) is not None                      # no_grpc_proxy wins over NO_PROXY
    s = proxy_settings(None, None, None, {"http_proxy": "http://h:1"}, grpc=True)
    assert s.for_url("https", "x", 4317) == Proxy("http://h:1", "the http_proxy variable")   # gRPC core's last resort


def test_a_proxy_never_prints_its_credentials() -> None:
    p = Proxy(f"http://me:{PASSWORD}@proxy:3128", "proxy_url")
    assert PASSWORD not in repr(p) and PASSWORD not in p.shown and PASSWORD not in repr((p,))
    assert PASSWORD in p.secrets()


# ─── every output of a real process: `promotel check` ────────────────────────────────────────


def test_check_output_and_logs_never_show_proxy_passwords(tmp_path: Path, locked_proxy: ForwardProxy,
                                                          target: Target) -> None:
    """`promotel check` as a subprocess: a source through HTTP_PROXY, one through its proxy_url and a gRPC
    exporter through HTTPS_PROXY, all with wrong proxy passwords. Each line says 407 and names the proxy; no
    password appears on stdout or stderr (promotel's logs and gRPC core's own lines)."""
    env_password, config_password = "env-" + PASSWORD, "cfg-" + PASSWORD
    config = tmp_path / "promotel.yaml"
    config.write_text(textwrap.dedent(f"""
        sources:
          - {{name: via-env, url: "{target.url()}"}}
          - {{name: via-config, url: "{target.url()}", proxy_url: "{locked_proxy.url('scraper', config_password)}"}}
        exporters:
          - {{name: otlp, endpoint: "http://collector.test:4317", protocol: grpc, timeout: 3s}}
    """))
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env.update(HTTP_PROXY=locked_proxy.url("scraper", env_password),
               HTTPS_PROXY=locked_proxy.url("scraper", env_password), PYTHONPATH=os.pathsep.join(
                   p for p in (str(Path(__file__).resolve().parents[2] / "src"), env.get("PYTHONPATH")) if p))
    proc = subprocess.run([*PROMOTEL, "check", "-c", str(config)], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    lines = {line.split(":", 1)[0]: line for line in proc.stdout.splitlines()}
    assert "407 Proxy Authentication Required" in lines["source via-env"] and "HTTP_PROXY" in lines["source via-env"]
    assert "407 Proxy Authentication Required" in lines["source via-config"] and "proxy_url" in lines["source via-config"]
    assert "407 Proxy Authentication Required" in lines["exporter otlp"] and "HTTPS_PROXY" in lines["exporter otlp"]
    assert len(locked_proxy.passed) == 3          # each went through the proxy and was refused there
    for password in (env_password, config_password, PASSWORD):
        assert password not in output
