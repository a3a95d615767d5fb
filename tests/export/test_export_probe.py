"""``promotel check``'s exporter probe: one empty request, the backend's answer in one line, no secrets."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import grpc
import pytest

from promotel.export.probe import aprobe_exporter, probe_exporter
from support.certs import make_cert, tls_context
from support.collector import Rotel, free_port
from support.fake_intakes import (
    GrpcReceiver,
    HttpReceiver,
    IntakeLog,
    datadog_intake,
    exporter_config,
)


def test_accepted_over_http_with_an_empty_request() -> None:
    with HttpReceiver() as rx:
        result = probe_exporter(exporter_config(endpoint=rx.url, protocol="http/protobuf"))
    assert result == (True, "accepted")
    assert len(rx.requests) == 1 and rx.requests[0].body == b""
    assert len(rx.requests[0].message.resource_metrics) == 0


def test_accepted_over_grpc() -> None:
    async def go() -> tuple[object, int]:
        rx = await GrpcReceiver().start()
        try:
            return await aprobe_exporter(exporter_config(endpoint=rx.endpoint, protocol="grpc")), len(rx.requests)
        finally:
            await rx.stop()

    result, received = asyncio.run(go())
    assert result == (True, "accepted") and received == 1


def test_wrong_key_names_the_status_the_server_message_and_what_to_check() -> None:
    log = IntakeLog()
    with datadog_intake("the-right-key", log) as rx:
        result = probe_exporter(exporter_config(preset="datadog", api_key="wrong-key-987",
                                                endpoint=rx.url + "/v1/metrics"))
    assert result.ok is False
    assert "HTTP 403: Forbidden: invalid API key — check the api key (dd-api-key)" in result.message
    assert "wrong-key-987" not in result.message and "the-right-key" not in result.message


def test_grpc_unauthenticated_gets_the_auth_hint() -> None:
    async def go() -> object:
        rx = await GrpcReceiver().start()
        rx.script.append((grpc.StatusCode.UNAUTHENTICATED, "missing api-key", None))
        try:
            return await aprobe_exporter(exporter_config(preset="newrelic", api_key="nr-secret-1",
                                                         endpoint=rx.endpoint, protocol="grpc"))
        finally:
            await rx.stop()

    ok, message = asyncio.run(go())  # type: ignore[misc]
    assert ok is False
    assert message.endswith("answered UNAUTHENTICATED: missing api-key — check the license key (api-key) and the region")
    assert "nr-secret-1" not in message


def test_connection_refused() -> None:
    with HttpReceiver() as rx:
        url = rx.url
    result = probe_exporter(exporter_config(endpoint=url, protocol="http/protobuf", timeout=2.0))
    assert result.ok is False
    assert result.message.startswith(f"connection refused by {url}/v1/metrics")


def test_tls_problem_is_named() -> None:
    with HttpReceiver() as rx:      # plain HTTP: a TLS handshake with it fails
        result = probe_exporter(exporter_config(endpoint=f"https://127.0.0.1:{rx.port}", protocol="http/protobuf",
                                                timeout=2.0))
    assert result.ok is False
    # The server speaks plaintext: the fix is the scheme, and the message says which URL to write.
    assert "TLS" in result.message and "plaintext" in result.message
    assert f"use endpoint: http://127.0.0.1:{rx.port}/v1/metrics" in result.message


def test_untrusted_certificate_points_at_the_ca_file(tmp_path: Path) -> None:
    """A real TLS server whose certificate nobody trusts: the fix is tls.ca_file, not the scheme."""
    cert, key = make_cert(tmp_path, ["127.0.0.1"])

    class Quiet(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Quiet)
    server.socket = tls_context(cert, key).wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = probe_exporter(exporter_config(endpoint=f"https://127.0.0.1:{server.server_address[1]}",
                                                protocol="http/protobuf", timeout=2.0))
    finally:
        server.shutdown()
        server.server_close()
    assert result.ok is False
    assert "certificate" in result.message and "tls.ca_file" in result.message and "http://" not in result.message


def test_preset_problems_fail_the_probe_without_sending() -> None:
    result = probe_exporter(exporter_config(preset="honeycomb", api_key="hc-secret-key"))
    assert result.ok is False
    assert "dataset" in result.message and "hc-secret-key" not in result.message


def test_probe_works_from_inside_a_running_loop() -> None:
    with HttpReceiver() as rx:
        async def go() -> object:
            return probe_exporter(exporter_config(endpoint=rx.url, protocol="http/protobuf"))

        assert asyncio.run(go()) == (True, "accepted")


# ─── the wrong port, the wrong protocol, the wrong name: against a real collector (rotel) ────────


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rotel]:
    """rotel with its OTLP/gRPC and OTLP/HTTP ports; it forwards to a port nobody listens on (unused here)."""
    rotel = Rotel(free_port(), tmp_path_factory.mktemp("rotel")).start()
    try:
        yield rotel
    finally:
        rotel.stop()


def test_grpc_to_the_otlp_http_port_names_the_protocol(collector: Rotel) -> None:
    result = probe_exporter(exporter_config(endpoint=f"http://127.0.0.1:{collector.http_port}", protocol="grpc",
                                            timeout=5.0))
    assert result.ok is False
    assert "answers HTTP, not gRPC" in result.message and "protocol: http/protobuf" in result.message


def test_http_to_the_otlp_grpc_port_names_the_protocol(collector: Rotel) -> None:
    result = probe_exporter(exporter_config(endpoint=f"http://127.0.0.1:{collector.grpc_port}",
                                            protocol="http/protobuf", timeout=5.0))
    assert result.ok is False
    assert "did not answer HTTP/1.1" in result.message and "protocol: grpc" in result.message


@pytest.mark.parametrize("endpoint", ["https://127.0.0.1:{port}", "127.0.0.1:{port}"])
def test_grpc_tls_against_the_plaintext_collector_says_use_http(collector: Rotel, endpoint: str) -> None:
    """The collector users' habit (no scheme) and an explicit https:// both mean TLS; rotel speaks plaintext."""
    port = collector.grpc_port
    result = probe_exporter(exporter_config(endpoint=endpoint.format(port=port), protocol="grpc", timeout=5.0))
    assert result.ok is False
    assert "speaks plaintext" in result.message and f"use endpoint: http://127.0.0.1:{port}" in result.message
    assert "TSI_PROTOCOL_FAILURE" not in result.message


_DNS_CHILD = """
import sys
from promotel.config import ExporterConfig
from promotel.export.probe import probe_exporter
print(probe_exporter(ExporterConfig(name="x", endpoint="http://no-such-host.invalid:4317", protocol=sys.argv[1],
                                    timeout=5.0)).message)
"""


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_an_unresolvable_host_is_called_a_dns_failure(protocol: str) -> None:
    """The lookup runs in a network namespace of its own (``unshare -n``, root: CI runs as root) where the
    resolver is unreachable, so it fails for real without a packet leaving the machine."""
    assert os.geteuid() == 0, "this test needs root for `unshare -n` (CI and `make test` as root have it)"
    proc = subprocess.run(["unshare", "-n", sys.executable, "-c", _DNS_CHILD, protocol], capture_output=True,
                          text=True, timeout=60, check=False, env={**os.environ, "GRPC_VERBOSITY": "NONE"})
    assert proc.returncode == 0, proc.stderr
    message = proc.stdout.strip()
    assert "DNS lookup failed" in message and "check the host name" in message, message
    assert "connection refused" not in message
