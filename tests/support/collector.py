"""Run rotel — a real OpenTelemetry collector (Rust, shipped in the `rotel` PyPI wheel) — on loopback.

rotel receives OTLP over gRPC and HTTP and forwards everything with its OTLP exporter to an
``OTLPSink``; the tests assert on what the sink received, so nothing passes unless the data went
through a real collector.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import rotel

from support.processes import terminate
from support.sink import OTLPSink


def agent_path() -> str:
    path = Path(rotel.__file__).parent / "rotel-agent"
    if not path.exists():  # pragma: no cover - a broken install
        raise RuntimeError(f"rotel-agent binary not found next to {rotel.__file__}")
    return str(path)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Rotel:
    """rotel-agent forwarding to ``forward_grpc_port`` (an OTLPSink's gRPC port)."""

    def __init__(self, forward_grpc_port: int, workdir: Path) -> None:
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.forward_grpc_port = forward_grpc_port
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1/metrics"

    def start(self) -> Rotel:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            agent_path(), "start",
            "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
            "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}",
            "--exporter", "otlp",
            "--otlp-exporter-endpoint", f"http://127.0.0.1:{self.forward_grpc_port}",
            "--otlp-exporter-protocol", "grpc",
            "--otlp-grpc-max-recv-msg-size-mib", "16",
            "--metrics-batch-timeout", "100ms",
            "--pid-file", str(self.workdir / "rotel.pid"),
            "--log-file", str(self.workdir / "rotel.log"),
        ]
        env = dict(os.environ)
        self.log = open(self.workdir / "rotel.out", "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        wait_port(self.grpc_port)
        wait_port(self.http_port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            terminate(self.proc, 5)
        if hasattr(self, "log"):
            self.log.close()

    def output(self) -> str:
        return (self.workdir / "rotel.out").read_text(errors="replace")


@contextmanager
def rotel_to_sink(workdir: Path) -> Iterator[tuple[Rotel, OTLPSink]]:
    """A real OTLP sink and a rotel forwarding to it (rotel's files in ``workdir``); stops rotel, then the sink."""
    sink = OTLPSink().start()
    rotel = Rotel(sink.grpc_port, workdir).start()
    try:
        yield rotel, sink
    finally:
        rotel.stop()
        sink.stop()
