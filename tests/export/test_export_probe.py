"""``promotel check``'s exporter probe: one empty request, the backend's answer in one line, no secrets."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import grpc

from promotel.export.probe import aprobe_exporter, probe_exporter
from support.fake_intakes import (
    GrpcReceiver,
    HttpReceiver,
    IntakeLog,
    datadog_intake,
    exporter_config,
)
from support.sd_servers import make_cert, tls_context


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
