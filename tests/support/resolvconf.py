"""Run a program whose DNS resolver is a test's dnsmasq, without touching the machine's /etc/resolv.conf.

Prometheus's DNS discovery (and promotel's without ``nameservers``, and glibc's getaddrinfo) ask the
servers of /etc/resolv.conf, on port 53: a file cannot name another port. So the test's dnsmasq
listens on port 53 of a loopback address of its own (:func:`free_port53_address`; all of 127.0.0.0/8
is loopback on Linux), and the program runs in a private mount namespace where /etc/resolv.conf is a
bind mount of a file naming that address (:func:`with_resolv_conf`). The network namespace is the
machine's, so the program reaches every loopback server of the test. Both steps need root (port 53,
``unshare --mount``): the tests that use them fail, saying so, when not run as root (``make test`` in
CI runs as root, as its package installs do).
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path

import pytest

# 127.0.53.0/24: far from the 127.0.0.x addresses other tests' servers use.
CANDIDATES = tuple(f"127.0.53.{n}" for n in range(1, 255))
UNSHARE = "unshare"
# $0 is the file to mount, "$@" the program: nothing of either is parsed by the shell.
_MOUNT_AND_EXEC = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'


def require_root(what: str) -> None:
    """Fail (not skip) the test unless it runs as root with ``unshare`` available."""
    if os.geteuid() != 0:
        pytest.fail(f"{what} must run as root, and this process is not: the test DNS server listens on port 53 of "
                    "a loopback address, and the resolving programs run in a private mount namespace (unshare "
                    "--mount) whose /etc/resolv.conf names it. `make test` runs as root in CI; run these tests as root.")
    if shutil.which(UNSHARE) is None:
        pytest.fail(f"{what} needs `unshare` (Debian package 'util-linux')")


def _port53_free(address: str) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((address, 53))
            except OSError:
                return False
    return True


def free_port53_address() -> str:
    """A loopback address on which nothing listens on port 53, UDP or TCP (nor on 0.0.0.0:53). Each pytest-xdist
    worker starts looking at an address of its own, so two workers do not pick the same one at once."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    start = int(worker) if worker.isdigit() else 0
    for address in CANDIDATES[start:] + CANDIDATES[:start]:
        if _port53_free(address):
            return address
    raise RuntimeError(f"port 53 is taken on every address of {CANDIDATES[0]}…{CANDIDATES[-1]}")


def write_resolv_conf(path: Path, nameserver: str) -> Path:
    """A resolv.conf asking only ``nameserver`` (port 53), with no search domains: names are tried as written."""
    path.write_text(f"nameserver {nameserver}\noptions timeout:1 attempts:1\n")
    return path


def with_resolv_conf(argv: Sequence[str], resolv_conf: Path) -> list[str]:
    """``argv`` run in a private mount namespace whose /etc/resolv.conf is ``resolv_conf``. ``unshare`` and
    ``sh`` exec the program, so the process started is the program itself (signals reach it)."""
    return [UNSHARE, "--mount", "--propagation", "private", "sh", "-c", _MOUNT_AND_EXEC, str(resolv_conf),
            *argv]
