"""Run ``promotel ARGS...`` the way systemd runs a ``DynamicUser=`` service: started by root, then every
uid and gid set to an unprivileged one, supplementary groups cleared, no capabilities left.

Usage (as root): ``python as_unprivileged.py UID GID ARGS...``; the exit status is promotel's.

Why not ``setpriv ... promotel ARGS``: that execs the interpreter as the unprivileged user, and the
test environment's interpreter may live where that user cannot reach (pyenv under /root, mode 0700).
systemd faces no such directory (/opt/promotel is 0755), and what this test is about is the config
file, not the interpreter: so everything is imported first, as root, by one run whose output is
discarded, then privileges are dropped for good (setuid from root to another uid clears the
capability sets), and promotel runs again. Only that second run's output and status count.
"""

from __future__ import annotations

import contextlib
import os
import sys

from promotel.cli import main


def drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    # Prove it: no way back to root, and no capability that would bypass file modes.
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        raise SystemExit(f"as_unprivileged: still privileged: uid {os.getresuid()}, gid {os.getresgid()}")
    # Bytes, not text: a text codec not imported yet could not be loaded now (see the module docstring).
    with open("/proc/self/status", "rb") as fh:
        effective = next(line.split()[1] for line in fh if line.startswith(b"CapEff:")).decode()
    if int(effective, 16) != 0:
        raise SystemExit(f"as_unprivileged: capabilities left after dropping privileges: CapEff {effective}")


def run(uid: int, gid: int, argv: list[str]) -> int:
    if os.geteuid() != 0:
        raise SystemExit("as_unprivileged: must start as root (it drops to the given uid and gid)")
    # The warm-up: imports every module this command needs while the interpreter's files are readable.
    # Its output goes to /dev/null at the descriptor level, so that anything it sets up (a logging
    # handler on sys.stderr) still writes to the real stream afterwards.
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        with contextlib.suppress(SystemExit):
            main(argv)
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)
    drop_privileges(uid, gid)
    return main(argv)


if __name__ == "__main__":
    sys.exit(run(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]))
