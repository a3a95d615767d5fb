"""A real DNS server for the DNS discovery tests: Debian's dnsmasq on 127.0.0.1, on a free high port
(or on the ``address`` and ``port`` given: tests/support/resolvconf.py picks a loopback address whose
port 53 is free, for the programs that can only ask port 53).

``Dnsmasq(records)`` serves exactly the given records (dnsmasq options such as ``--host-record=...``,
``--srv-host=...``, ``--mx-host=...``, ``--cname=...``, ``--address=...``) and nothing else: no upstream
servers, no /etc/hosts, no config file, and ``--local=/test/`` so an unknown name under ``test``
gets NXDOMAIN (any other name gets REFUSED). It listens on UDP and TCP on its one loopback address
only, on port 53 only when told to, and runs in the foreground as the test's child (``--no-daemon``), so stopping the test stops
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

from support.processes import terminate

DNSMASQ = Path("/usr/sbin/dnsmasq")
MISSING = ("is missing: the DNS discovery tests run a real DNS server; `make test` installs it "
           "(Debian package 'dnsmasq-base')")
STARTUP_DEADLINE = 10.0


def _free_port(address: str) -> int:
    """A port free for both UDP and TCP on ``address``."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((address, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((address, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free port for dnsmasq on {address}")


class Dnsmasq:
    def __init__(self, records: Sequence[str], log_dir: Path, *, address: str = "127.0.0.1",
                 port: int | None = None) -> None:
        if not DNSMASQ.exists():
            pytest.fail(f"{DNSMASQ} {MISSING}")
        self.records = list(records)
        self.log_dir = log_dir
        self.address = address
        self.port = _free_port(address) if port is None else port
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts = 0

    @property
    def nameserver(self) -> str:
        return f"{self.address}:{self.port}"

    def start(self) -> None:
        assert self.proc is None, "dnsmasq is already running"
        self._starts += 1
        log_path = self.log_dir / f"dnsmasq-{self.port}-{self._starts}.log"
        args = [str(DNSMASQ), "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                f"--port={self.port}", f"--listen-address={self.address}", "--bind-interfaces", "--pid-file=",
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
                with socket.create_connection((self.address, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"dnsmasq did not listen on {self.nameserver} in {STARTUP_DEADLINE}s:\n{log_path.read_text()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        terminate(self.proc, 10)
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
