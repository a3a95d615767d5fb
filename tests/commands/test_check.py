"""``promotel check`` against real local targets and a real OTLP receiver."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from promotel.cli import main
from promotel.commands.check import run_check
from support.bridge import PROMOTEL
from support.sink import OTLPSink
from support.target import ExpositionServer

pytestmark = pytest.mark.timeout(60)

KEY = "check-secret-api-key-0042"
EXPOSITION = b"# TYPE up gauge\nup 1\n# TYPE requests_total counter\nrequests_total{code=\"200\"} 7\n" \
             b"requests_total{code=\"500\"} 1\n"


class Target:
    """One server, one behaviour per path: /ok, /auth (needs the Api-Key), /html, /garbage, else 404."""

    def __init__(self) -> None:
        class _H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/ok":
                    self._reply(200, "text/plain; version=0.0.4", EXPOSITION)
                elif self.path == "/auth":
                    if self.headers.get("Authorization") == f"Api-Key {KEY}":
                        self._reply(200, "text/plain; version=0.0.4", EXPOSITION)
                    else:
                        self._reply(401, "text/plain", b"unauthorized\n")
                elif self.path == "/html":
                    self._reply(200, "text/html", b"<html><body>Sign in</body></html>")
                elif self.path == "/garbage":
                    self._reply(200, "text/plain; version=0.0.4", b"up 1\nthis is {not an exposition\n")
                else:
                    self._reply(404, "text/plain", b"not found\n")

            def _reply(self, status: int, ctype: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def target() -> Iterator[Target]:
    t = Target()
    yield t
    t.httpd.shutdown()
    t.httpd.server_close()


@pytest.fixture
def sink() -> Iterator[OTLPSink]:
    s = OTLPSink().start()
    yield s
    s.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write(tmp_path: Path, text: str, mode: int = 0o600) -> str:
    path = tmp_path / "promotel.yaml"
    path.write_text(textwrap.dedent(text))
    path.chmod(mode)
    return str(path)


def check(path: str | None, env: dict[str, str] | None = None, **kw: Any) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = run_check(path, env=env or {}, out=out, **kw)
    return code, out.getvalue().splitlines()


def test_offline_validates_only(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        sources:
          - {{name: a, url: "http://127.0.0.1:{closed_port()}/metrics"}}
          - {{name: b, url: "http://no-such-host.invalid/metrics"}}
        exporters: [{{name: e, endpoint: "http://127.0.0.1:{closed_port()}"}}]
    """)
    code, lines = check(path, offline=True)
    assert code == 0
    assert lines == [f"config {path}: OK (2 sources, 1 exporter)"]


def test_offline_shows_that_a_deprecated_key_has_no_effect(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, f"""
        sources: [{{name: a, url: "http://127.0.0.1:{closed_port()}/metrics", expire_after_scrapes: 3}}]
        exporters: [{{name: e}}]
    """)
    assert main(["check", "-c", path, "--offline"]) == 0           # deprecated, still valid
    out = capsys.readouterr()
    assert out.out.splitlines() == [f"config {path}: OK (1 source, 1 exporter)"]
    warning = [line for line in out.err.splitlines() if "expire_after_scrapes" in line]
    assert len(warning) == 1
    assert "sources[0].expire_after_scrapes, which has no effect and is deprecated" in warning[0]


def test_invalid_config_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, """
        sources:
          - {name: a, url: "http://h/metrics", intervall: 5s}
          - {name: b, mapping: baseten, url: "https://app.baseten.co/metrics", interval: 2s}
        exporters: [{name: e, protocol: http/json}]
    """)
    code, lines = check(path, offline=True)
    assert code == 2
    assert lines[0] == f"config {path}: INVALID (3 problems)"
    assert "sources[0].intervall: unknown key 'intervall' (did you mean 'interval'?)" in lines
    assert any(line.startswith("sources[1].interval: must be at least 10s for mapping baseten") for line in lines)
    assert any(line.startswith("exporters[0].protocol: OTLP/JSON ('http/json') is not supported") for line in lines)


def test_preset_problems_are_config_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "exporters: [{name: dd, preset: datadog, site: datadoghq.mars}]\n")
    code, lines = check(path, offline=True)
    assert code == 2
    assert any(line.startswith("exporters[0].") and "datadoghq.mars" in line for line in lines)


def test_schema_and_preset_problems_are_listed_together(tmp_path: Path) -> None:
    path = write(tmp_path, """
        sources:
          - {name: a, url: "ftp://h/metrics"}
        exporters:
          - {name: dd, preset: datadog, site: datadoghq.mars}
          - {name: e, protocol: http/json}
          - {name: g, preset: grafana-cloud, zone: prod-eu-west-2, instance_id: "1", token: t, temporality: delta}
    """)
    code, lines = check(path, offline=True)
    assert code == 2
    assert lines[0] == f"config {path}: INVALID (5 problems)"
    paths = [line.split(":", 1)[0] for line in lines[1:]]
    assert sorted(paths) == ["exporters[0].api_key", "exporters[0].site", "exporters[1].protocol",
                             "exporters[2].temporality", "sources[0].url"]


def test_a_config_without_sources_is_invalid_and_says_what_to_add(tmp_path: Path) -> None:
    path = write(tmp_path, "exporters: [{name: e}]\n")
    code, lines = check(path, offline=True)
    assert code == 2
    assert lines == [f"config {path}: INVALID (1 problem)",
                     "sources: nothing to scrape: add at least one source, each with a name and a url, e.g. "
                     "'sources: [{name: app, url: \"http://127.0.0.1:9100/metrics\"}]'"]


def test_check_and_run_exit_2_for_the_same_invalid_config(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "exporters: [{name: e}]\n")
    assert main(["check", "-c", path, "--offline"]) == 2
    assert main(["check", "-c", path]) == 2
    assert main(["run", "--once", "-c", path]) == 2
    assert main(["run", "-c", path]) == 2                # the service refuses to start instead of idling
    err = capsys.readouterr().err
    assert err.count("nothing to scrape: add at least one source") == 2


def test_a_yaml_indentation_error_names_the_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, """
        sources:
          - name: a
            url: http://127.0.0.1:1/metrics
        exporters:
          - name: e
             endpoint: http://127.0.0.1:4317
    """)
    code, lines = check(path, offline=True)
    assert code == 2
    assert lines[0] == f"config {path}: INVALID (1 problem)"
    assert lines[1].startswith(f"{path}:7:6: indentation: 'endpoint' is indented more than 'name' on line 6")


def test_probes_diagnose_each_failure_and_never_print_the_key(tmp_path: Path, target: Target,
                                                             sink: OTLPSink) -> None:
    refused = closed_port()
    path = write(tmp_path, f"""
        sources:
          - {{name: good, url: "{target.url('/ok')}"}}
          - {{name: keyed, url: "{target.url('/auth')}", auth: {{api_key: "${{KEY}}"}}}}
          - {{name: wrong-key, mapping: baseten, url: "{target.url('/auth')}", auth: {{api_key: "wrong-{KEY}"}}}}
          - {{name: wrong-path, url: "{target.url('/metricz')}"}}
          - {{name: html, url: "{target.url('/html')}"}}
          - {{name: garbage, url: "{target.url('/garbage')}"}}
          - {{name: down, url: "http://127.0.0.1:{refused}/metrics"}}
          - {{name: nxdomain, url: "http://no-such-host.invalid/metrics"}}
        exporters:
          - {{name: sink, endpoint: "http://127.0.0.1:{sink.http_port}/v1/metrics", protocol: http/protobuf}}
          - {{name: nobody, endpoint: "http://127.0.0.1:{refused}/v1/metrics", protocol: http/protobuf,
              headers: {{api-key: "{KEY}"}}}}
    """)
    code, lines = check(path, env={"KEY": KEY})
    print("\n".join(lines))
    assert code == 1
    text = "\n".join(lines)
    assert KEY not in text
    by_name = {line.split(":", 1)[0]: line for line in lines[1:]}
    assert by_name["source good"].startswith("source good: OK (3 samples, ")
    assert by_name["source keyed"].startswith("source keyed: OK (3 samples, ")
    assert by_name["source wrong-key"].startswith("source wrong-key: FAILED — ")
    assert "401" in by_name["source wrong-key"] and "Api-Key <key>" in by_name["source wrong-key"]
    assert "404" in by_name["source wrong-path"] and "/metrics" in by_name["source wrong-path"]
    assert "HTML" in by_name["source html"]
    assert "FAILED" in by_name["source garbage"] and "line 2" in by_name["source garbage"]
    assert "refused" in by_name["source down"]
    assert "DNS lookup of no-such-host.invalid failed" in by_name["source nxdomain"]
    assert by_name["exporter sink"].startswith("exporter sink: OK")
    assert by_name["exporter nobody"].startswith("exporter nobody: FAILED — ")
    assert len(lines) == 1 + 8 + 2
    assert len(sink.requests) == 1        # the probe's one empty request reached the receiver


def test_everything_ok_exits_0(tmp_path: Path, target: Target, sink: OTLPSink) -> None:
    path = write(tmp_path, f"""
        sources: [{{name: good, url: "{target.url('/ok')}"}}]
        exporters: [{{name: sink, endpoint: "http://127.0.0.1:{sink.http_port}/v1/metrics", protocol: http/protobuf}}]
    """)
    code, lines = check(path)
    assert code == 0, lines
    assert lines[1].startswith("source good: OK (3 samples, ")
    assert lines[2] == "exporter sink: OK"


def test_cli_refuses_world_readable_secrets_unless_allowed(tmp_path: Path, target: Target,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, f"""
        sources: [{{name: keyed, url: "{target.url('/auth')}", auth: {{api_key: "{KEY}"}}}}]
        exporters: [{{name: e}}]
    """, mode=0o644)
    assert main(["check", "-c", path, "--offline"]) == 2
    out = capsys.readouterr()
    assert f"chmod 600 {path}" in out.out
    assert KEY not in out.out + out.err
    assert main(["check", "-c", path, "--offline", "--allow-insecure-config-permissions"]) == 0
    out = capsys.readouterr()
    assert f"config {path}: OK (1 source, 1 exporter)" in out.out
    assert "chmod 600" in out.err                 # still warned, on the log
    assert KEY not in out.out + out.err


def test_without_a_file_there_is_nothing_to_scrape_and_check_says_to_pass_a_config(sink: OTLPSink) -> None:
    env = {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{sink.http_port}/v1/metrics",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    code, lines = check(None, env=env)
    assert code == 2, lines
    assert lines[0] == "config environment: INVALID (1 problem)"
    assert lines[1].startswith("nothing to scrape: without -c CONFIG only the OTEL_EXPORTER_OTLP_* variables are read")
    assert "promotel run -c CONFIG" in lines[1]
    assert len(lines) == 2 and sink.requests == []          # nothing probed
    # The variables are still validated, every problem at once.
    code, lines = check(None, env={**env, "OTEL_EXPORTER_OTLP_TIMEOUT": "soon"})
    assert code == 2
    assert lines[0] == "config environment: INVALID (2 problems)"
    assert any(line.startswith("OTEL_EXPORTER_OTLP_TIMEOUT: expected a positive number") for line in lines)


def test_a_tls_endpoint_on_a_plaintext_server_says_to_use_http(tmp_path: Path, sink: OTLPSink) -> None:
    path = write(tmp_path, f"""
        sources: [{{name: a, url: "http://127.0.0.1:{closed_port()}/metrics"}}]
        exporters:
          - {{name: grpc-https, endpoint: "https://127.0.0.1:{sink.grpc_port}", timeout: 5s}}
          - {{name: grpc-bare, endpoint: "127.0.0.1:{sink.grpc_port}", timeout: 5s}}
          - {{name: http-https, endpoint: "https://127.0.0.1:{sink.http_port}/v1/metrics", timeout: 5s}}
    """)
    code, lines = check(path)
    assert code == 1, lines
    by_name = {line.split(":", 1)[0]: line for line in lines[1:]}
    for name, fixed in (("grpc-https", f"http://127.0.0.1:{sink.grpc_port}"),
                        ("grpc-bare", f"http://127.0.0.1:{sink.grpc_port}"),
                        ("http-https", f"http://127.0.0.1:{sink.http_port}/v1/metrics")):
        line = by_name[f"exporter {name}"]
        assert line.startswith(f"exporter {name}: FAILED — the TLS handshake with "), line
        assert "failed because the server speaks plaintext, not TLS" in line
        assert f"use endpoint: {fixed} (" in line
    assert sink.requests == []


def test_grpc_core_lines_stay_out_of_json_logs(tmp_path: Path, sink: OTLPSink) -> None:
    """A TLS handshake against a plaintext gRPC server makes gRPC's C core write its own lines to stderr
    (``ssl_transport_security.cc … WRONG_VERSION_NUMBER``); with ``--log-format json`` every line must
    still be one JSON event."""
    path = write(tmp_path, f"""
        sources: [{{name: a, url: "http://127.0.0.1:{closed_port()}/metrics", expire_after_scrapes: 3}}]
        exporters: [{{name: tls, endpoint: "https://127.0.0.1:{sink.grpc_port}", timeout: 3s}}]
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("GRPC_VERBOSITY", "GRPC_TRACE")}

    def run(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*PROMOTEL, "--log-format", "json", "check", "-c", path], env={**env, **extra},
                              capture_output=True, text=True, timeout=60, check=False)

    proc = run({})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "use endpoint: http://127.0.0.1:" in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines, "the deprecated key logs one warning: stderr is not empty"
    events = [json.loads(line) for line in lines]          # every line is one JSON object
    assert any("expire_after_scrapes" in event["message"] for event in events)
    assert "ssl_transport_security" not in proc.stderr
    # The user's own GRPC_VERBOSITY wins: the same run then shows gRPC's lines, which proves the run above
    # did trigger them and that promotel only sets a default.
    shown = run({"GRPC_VERBOSITY": "INFO"})
    assert any("ssl_transport_security" in line for line in shown.stderr.splitlines()), shown.stderr


def test_offline_check_warns_when_sources_exceed_a_shared_budget(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("""
sources:
  - {name: a, mapping: baseten, url: "https://app.baseten.co/metrics", interval: 15s, auth: {api_key: "${K}"}}
  - {name: b, mapping: baseten, url: "https://app.baseten.co/metrics?x=1", interval: 15s, auth: {api_key: "${K}"}}
  - {name: c, mapping: baseten, url: "https://app.baseten.co/metrics?x=2", interval: 60s, auth: {api_key: "${O}"}}
exporters: [{name: e, endpoint: "http://127.0.0.1:4318"}]
""")
    path.chmod(0o600)
    out = io.StringIO()
    assert run_check(str(path), offline=True, env={"K": "key-1", "O": "key-2"}, out=out) == 0
    warnings = [line for line in out.getvalue().splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: sources a, b share Baseten's budget of 6 requests per minute per organization on "
                        "app.baseten.co:443 (the same credential) and together need 8 requests per 60 s: some "
                        "scrapes will be skipped; give each an interval of at least 20s"]
    assert "key-1" not in out.getvalue()


def test_check_probes_every_discovered_target(tmp_path: Path) -> None:
    up = ExpositionServer("# TYPE a gauge\na 1\n").start()
    try:
        path = write(tmp_path, f"""
            sources:
              - name: fleet
                static_configs: [{{targets: ["127.0.0.1:{up.port}", "127.0.0.1:{closed_port()}", "gone:1"]}}]
                relabel_configs: [{{source_labels: [__address__], regex: "gone:.*", action: drop}}]
            exporters: [{{name: e, endpoint: "http://127.0.0.1:{closed_port()}"}}]
            """)
        code, lines = check(path)
    finally:
        up.stop()
    assert code == 1
    fleet = [line for line in lines if line.startswith("source fleet ")]
    assert fleet[0].startswith(f"source fleet http://127.0.0.1:{up.port}/metrics: OK (1 samples, ")
    assert "FAILED" in fleet[1] and len(fleet) == 2
