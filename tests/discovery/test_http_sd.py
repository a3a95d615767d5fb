"""http_sd_configs against a local HTTP(S) server: the format, Prometheus's client settings, failures.

Every failure (transport error, non-200, wrong content type, a 200 whose body is not the format, a
timeout) keeps the last good list and is reported; an empty list is a valid answer."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from promotel.discovery.http_sd import HTTPDiscoverer, HTTPSDConfig, refresh_interval_header
from promotel.discovery.targets import DiscoveryManager, TargetGroup
from promotel.errors import DiscoveryError
from support.certs import make_cert, tls_context
from support.sd_servers import Reply, Request, SDServer, json_reply

GROUPS = [
    {"targets": ["10.1.0.1:9100", "10.1.0.2:9100"], "labels": {"env": "prod", "__meta_rack": "r1"}},
    {"targets": ["10.1.0.3:9100"]},
]


@pytest.fixture
def server() -> Iterator[SDServer]:
    with SDServer(groups=list(GROUPS)) as running:
        yield running


def _discoverer(url: str, **extra: Any) -> HTTPDiscoverer:
    return HTTPDiscoverer(HTTPSDConfig.model_validate({"url": url, **extra}))


def _refresh(discoverer: HTTPDiscoverer) -> tuple[TargetGroup, ...]:
    async def main() -> tuple[TargetGroup, ...]:
        try:
            return (await discoverer.refresh()).groups
        finally:
            await discoverer.aclose()
    return asyncio.run(main())


@pytest.mark.parametrize(("data", "message"), [
    ({}, "URL is missing"),
    ({"url": "ftp://sd.example/x"}, "URL scheme must be 'http' or 'https'"),
    ({"url": "http:///x"}, "host is missing in URL"),
    ({"url": "http://sd", "refresh_interval": "60"}, "not a valid duration string"),
    ({"url": "http://sd", "bearer_token": "a", "bearer_token_file": "f"},
     "at most one of bearer_token & bearer_token_file must be configured"),
    ({"url": "http://sd", "basic_auth": {"username": "u"}, "bearer_token": "t"},
     "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured"),
    ({"url": "http://sd", "basic_auth": {"password": "p", "password_file": "f"}},
     "at most one of basic_auth password, password_file & password_ref must be configured"),
    ({"url": "http://sd", "authorization": {"credentials": "c"}, "bearer_token": "t"},
     "authorization is not compatible with bearer_token & bearer_token_file"),
    ({"url": "http://sd", "authorization": {"type": "Basic", "credentials": "c"}},
     'authorization type cannot be set to "basic", use "basic_auth" instead'),
    ({"url": "http://sd", "authorization": {"credentials": "c"}, "basic_auth": {"username": "u"}},
     "at most one of basic_auth, oauth2 & authorization must be configured"),
    ({"url": "http://sd", "oauth2": {"client_id": "x"}}, "oauth2 is not supported by promotel"),
    ({"url": "http://sd", "tls_config": {"cert_file": "c.pem"}},
     "exactly one of key or key_file must be configured when a client certificate is configured"),
    ({"url": "http://sd", "tls_config": {"cert": "PEM", "key": "PEM"}}, "inline cert and key are not supported"),
    ({"url": "http://sd", "tls_config": {"min_version": "TLS14"}}, "unknown TLS version: TLS14"),
    ({"url": "http://sd", "refresh": "1m"}, "Extra inputs are not permitted"),
])
def test_config_refusals(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        HTTPSDConfig.model_validate(data)
    assert message in str(info.value)


def test_config_defaults_and_secrets(tmp_path: Path) -> None:
    cfg = HTTPSDConfig.model_validate({"url": "http://sd:8080/targets", "bearer_token": "s3cr3t-token",
                                       "tls_config": {"ca_file": "ca.pem"}},
                                      context={"base_dir": str(tmp_path)})
    assert cfg.refresh_interval == 60.0 and cfg.follow_redirects and cfg.enable_http2
    assert cfg.tls_config.ca_file == str(tmp_path / "ca.pem")
    assert "s3cr3t-token" not in repr(cfg) and "s3cr3t-token" not in str(cfg.model_dump())
    assert cfg.authorization_header() == "Bearer s3cr3t-token"
    # A config validated again from a dump (secrets are Secret values there) keeps the secrets' values.
    copied = HTTPSDConfig.model_validate(cfg.model_dump(exclude_unset=True))
    assert copied.authorization_header() == "Bearer s3cr3t-token"
    assert refresh_interval_header(60.0) == "60"
    assert refresh_interval_header(0.5) == "0.5"
    assert refresh_interval_header(90.25) == "90.25"


def test_groups_labels_sources_and_headers(server: SDServer) -> None:
    url = server.url("/sd?x=1")
    groups = _refresh(_discoverer(url, refresh_interval="30s"))
    assert groups == (
        TargetGroup.of(["10.1.0.1:9100", "10.1.0.2:9100"], {"env": "prod", "__meta_rack": "r1", "__meta_url": url},
                       f"{url}:0"),
        TargetGroup.of(["10.1.0.3:9100"], {"__meta_url": url}, f"{url}:1"),
    )
    [request] = server.requests
    assert (request.method, request.path, request.query) == ("GET", "/sd", {"x": ["1"]})
    assert request.headers["accept"] == "application/json"
    assert request.headers["x-prometheus-refresh-interval-seconds"] == "30"
    assert request.headers["user-agent"].startswith("promotel/")
    assert "authorization" not in request.headers


def test_auth_settings(server: SDServer, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    password = tmp_path / "password"
    password.write_text("pa55word\n")
    url = server.url()
    _refresh(_discoverer(url, basic_auth={"username": "prom", "password_file": str(password)}))
    _refresh(_discoverer(url, basic_auth={"username": "prom", "password": "inline-pw"}))
    _refresh(_discoverer(url, authorization={"type": "Api-Key", "credentials": "k3y-value"}))
    discoverer = _discoverer(url, bearer_token_file=str(token))

    async def twice() -> None:
        await discoverer.refresh()
        token.write_text("second-token\n")  # rotated: read again at the next request
        await discoverer.refresh()
        await discoverer.aclose()

    asyncio.run(twice())
    _refresh(_discoverer(url, authorization={"credentials_file": str(token)}))
    got = [r.headers.get("authorization") for r in server.requests]
    assert got == [
        "Basic " + base64.b64encode(b"prom:pa55word").decode(),
        "Basic " + base64.b64encode(b"prom:inline-pw").decode(),
        "Api-Key k3y-value",
        "Bearer first-token",
        "Bearer second-token",
        "Bearer second-token",
    ]
    token.unlink()
    with pytest.raises(DiscoveryError, match="cannot read a credential file") as info:
        _refresh(_discoverer(url, bearer_token_file=str(token)))
    assert info.value.kind == "auth"


def _bad(status: int, content_type: str, body: bytes) -> Reply:
    return status, {"Content-Type": content_type}, body


def test_failures_keep_the_last_good_list() -> None:
    replies: list[Reply] = [
        json_reply(GROUPS),
        _bad(503, "text/plain", b"overloaded"),
        _bad(200, "text/plain", b"[]"),
        _bad(200, "application/json", b"[{\"targets\": [\"a:1\"]"),
        json_reply({"targets": ["a:1"]}),
        json_reply([{"targets": ["a:1"], "labels": {"bad-name": "x"}}]),
        json_reply([None]),
        _bad(302, "text/plain", b""),
        json_reply([{"targets": ["b:1"]}], content_type='application/json; charset="utf-8"'),
        json_reply([], content_type="Application/JSON;charset=utf-8"),
    ]
    seen: list[int] = []

    def respond(request: Request) -> Reply:
        seen.append(len(seen))
        return replies[min(len(seen) - 1, len(replies) - 1)]

    with SDServer(respond=respond) as server:
        discoverer = _discoverer(server.url(), follow_redirects=False)
        manager = DiscoveryManager([discoverer], job="sd")

        async def run() -> list[tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]]:
            out = []
            for _ in replies:
                groups = await manager.refresh_once()
                out.append((tuple(g.addresses for g in groups), manager.status()[0].problems))
            await manager.aclose()
            return out

        results = asyncio.run(run())
    good = (("10.1.0.1:9100", "10.1.0.2:9100"), ("10.1.0.3:9100",))
    assert [r[0] for r in results] == [good] * 8 + [(("b:1",),), ()]
    problems = [r[1][0] if r[1] else "" for r in results]
    assert problems[0] == "" and problems[8] == "" and problems[9] == ""
    assert "server returned HTTP status 503 Service Unavailable" in problems[1]
    assert 'unsupported content type "text/plain"' in problems[2]
    assert "the answer is not a list of target groups: invalid JSON" in problems[3]
    assert "expected a list of target groups" in problems[4] and "got an object" in problems[4]
    assert "'bad-name' is not a valid label name" in problems[5]
    assert "nil target group item found" in problems[6]
    assert "server returned HTTP status 302 Found" in problems[7]
    assert manager.status()[0].errors_total == 7


def test_timeout_and_connection_refused(tmp_path: Path) -> None:
    with SDServer(groups=list(GROUPS), delay=1.0) as slow:
        with pytest.raises(DiscoveryError, match=r"no complete response within 0\.2s") as info:
            _refresh(_discoverer(slow.url(), refresh_interval="200ms"))
        assert info.value.kind == "timeout"
        port = slow.port
    with pytest.raises(DiscoveryError) as refused:
        _refresh(_discoverer(f"http://127.0.0.1:{port}/sd"))
    assert refused.value.kind == "connect"


def test_redirects_are_followed_unless_disabled(server: SDServer) -> None:
    target = server.url("/real")

    def respond(request: Request) -> Reply:
        if request.path == "/moved":
            return 301, {"Location": target}, b""
        return json_reply(GROUPS[1:])

    server.respond = respond
    groups = _refresh(_discoverer(server.url("/moved")))
    assert [g.addresses for g in groups] == [("10.1.0.3:9100",)]
    assert groups[0].labels["__meta_url"] == server.url("/moved")  # the URL as configured
    with pytest.raises(DiscoveryError, match="HTTP status 301"):
        _refresh(_discoverer(server.url("/moved"), follow_redirects=False))


def test_tls(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, ["sd.test", "127.0.0.1"])
    other_cert, other_key = make_cert(tmp_path, ["elsewhere.test"])
    with SDServer(groups=list(GROUPS), tls=tls_context(cert, key)) as server:
        url = server.url()
        with pytest.raises(DiscoveryError, match="CERTIFICATE_VERIFY_FAILED"):
            _refresh(_discoverer(url))
        assert len(_refresh(_discoverer(url, tls_config={"ca_file": cert}))) == 2
        assert len(_refresh(_discoverer(url, tls_config={"ca": Path(cert).read_text()}))) == 2
        assert len(_refresh(_discoverer(url, tls_config={"insecure_skip_verify": True}))) == 2
        # server_name: verified (and sent as SNI) instead of the URL's host.
        assert len(_refresh(_discoverer(url, tls_config={"ca_file": cert, "server_name": "sd.test"}))) == 2
        with pytest.raises(DiscoveryError, match="CERTIFICATE_VERIFY_FAILED"):
            _refresh(_discoverer(url, tls_config={"ca_file": cert, "server_name": "wrong.test"}))
        with pytest.raises(DiscoveryError, match="CERTIFICATE_VERIFY_FAILED"):
            _refresh(_discoverer(url, tls_config={"ca_file": other_cert}))
    with pytest.raises(DiscoveryError, match="cannot set up TLS") as info:
        _refresh(_discoverer("https://127.0.0.1:1/", tls_config={"ca_file": str(tmp_path / "missing.pem")}))
    assert info.value.kind == "tls"
    assert other_key
