"""A real DNS server for the DNS discovery tests: Debian's dnsmasq on 127.0.0.1, on a free high port.

``Dnsmasq(records)`` serves exactly the given records (dnsmasq options such as ``--host-record=...``,
``--srv-host=...``, ``--mx-host=...``, ``--cname=...``, ``--address=...``) and nothing else: no upstream
servers, no /etc/hosts, no config file, and ``--local=/test/`` so an unknown name under ``test``
gets NXDOMAIN (any other name gets REFUSED). It listens on UDP and TCP on 127.0.0.1 only, never on
port 53, and runs in the foreground as the test's child (``--no-daemon``), so stopping the test stops
it. ``restart(records)`` serves other records on the same port; ``stop()`` takes the server away.

The binary is required: ``make test`` installs Debian's ``dnsmasq-base`` (the binary without the
system service that would bind port 53).
"""

from __future__ import annotations

import getpass
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

DNSMASQ = Path("/usr/sbin/dnsmasq")
MISSING = ("is missing: the DNS discovery tests run a real DNS server; `make test` installs it "
           "(Debian package 'dnsmasq-base')")
STARTUP_DEADLINE = 10.0


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port for dnsmasq on 127.0.0.1")


class Dnsmasq:
    def __init__(self, records: Sequence[str], log_dir: Path) -> None:
        if not DNSMASQ.exists():
            pytest.fail(f"{DNSMASQ} {MISSING}")
        self.records = list(records)
        self.log_dir = log_dir
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts = 0

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.proc is None, "dnsmasq is already running"
        self._starts += 1
        log_path = self.log_dir / f"dnsmasq-{self.port}-{self._starts}.log"
        args = [str(DNSMASQ), "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                f"--port={self.port}", "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=",
                f"--user={getpass.getuser()}", "--log-facility=-", "--log-queries", "--local=/test/",
                *self.records]
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                pytest.fail(f"dnsmasq exited at start:\n{log_path.read_text()}")
            try:  # it listens on TCP too: once that connects, UDP is bound as well
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"dnsmasq did not listen on 127.0.0.1:{self.port} in {STARTUP_DEADLINE}s:\n{log_path.read_text()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, records: Sequence[str]) -> None:
        self.stop()
        self.records = list(records)
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
