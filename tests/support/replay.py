"""Serve the captured expositions of real exporters (tests/testdata/real/) on loopback.

Each capture folder holds one target's body under three Accept headers (see the README there) and a
``capture.json`` that records, per variant, the Accept sent, the Content-Type answered and the body's
sha256. ``ReplayServer`` answers ``GET /<capture>/<variant>`` with those bytes and that Content-Type,
byte for byte, so a scraper (promotel's or Prometheus itself) sees what the real exporter sent.
The captures are read once; a body whose sha256 differs from its record is an error, not a replay.

Run ``python tests/support/replay.py [PORT]`` to serve them by hand (it prints one URL per capture).
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if not __package__:         # run as a script (see above): tests/ must be on the path for support.*
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.loopback_http import LoopbackHttpServer, QuietHandler

REAL = Path(__file__).resolve().parents[1] / "testdata" / "real"
# The Accept variants, in the order the README describes them: Prometheus 3's default, Debian's
# Prometheus 2.42 default (recorded off the wire) and the plain 0.0.4 text format.
VARIANTS = ("prom3", "prom2", "text")


@dataclass(frozen=True)
class Variant:
    """One captured answer: the request's Accept, the response's Content-Type and body."""

    capture: str
    name: str
    accept: str
    content_type: str
    body: bytes

    @property
    def id(self) -> str:
        """``<capture>/<variant>``: the replay path without its slash, and a readable test id."""
        return f"{self.capture}/{self.name}"

    @property
    def path(self) -> str:
        return f"/{self.capture}/{self.name}"


@dataclass(frozen=True)
class Capture:
    """One target captured under every Accept variant, with its provenance from capture.json."""

    name: str
    exporter: str
    version: str
    request_path: str
    captured: str
    variants: Mapping[str, Variant]


class CaptureError(Exception):
    """A capture folder is incomplete or its body does not match the recorded sha256."""


def _load(folder: Path) -> Capture:
    meta: dict[str, Any] = json.loads((folder / "capture.json").read_text())
    variants: dict[str, Variant] = {}
    for name in VARIANTS:
        rec = meta["variants"].get(name)
        if rec is None:
            raise CaptureError(f"{folder / 'capture.json'}: no {name!r} variant; re-capture with sources/capture.py")
        body = (folder / rec["body"]).read_bytes()
        if hashlib.sha256(body).hexdigest() != rec["sha256"]:
            raise CaptureError(f"{folder / rec['body']}: sha256 differs from capture.json; the body was edited "
                               "(captured bodies are kept byte for byte: re-capture instead)")
        variants[name] = Variant(folder.name, name, rec["accept"], rec["content_type"], body)
    return Capture(meta["capture"], meta["exporter"], meta["version"], meta["request_path"], meta["captured"],
                   variants)


def load_captures(root: Path = REAL) -> tuple[Capture, ...]:
    """Every capture under ``root``, sorted by name (``sources/`` holds no capture.json and is skipped)."""
    return tuple(_load(p) for p in sorted(root.iterdir()) if (p / "capture.json").is_file())


def all_variants(root: Path = REAL) -> tuple[Variant, ...]:
    """Every (capture, variant) pair, in capture then variant order."""
    return tuple(v for c in load_captures(root) for v in c.variants.values())


class ReplayServer(LoopbackHttpServer):
    """``GET /<capture>/<variant>`` → the captured body with its Content-Type; anything else is 404.

    Binds 127.0.0.1 on an ephemeral port unless one is given. ``hits`` counts requests per path and
    ``accepts`` keeps the last Accept header seen per path (what the scraper asked for).
    """

    def __init__(self, variants: tuple[Variant, ...] | None = None, port: int = 0) -> None:
        chosen = all_variants() if variants is None else variants
        self.routes: dict[str, Variant] = {v.path: v for v in chosen}
        self.hits: dict[str, int] = {}
        self.accepts: dict[str, str] = {}
        self._lock = threading.Lock()
        self._port = port

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, as a Prometheus static_configs target."""
        return f"127.0.0.1:{self.port}"

    def url(self, variant: Variant) -> str:
        return f"http://{self.address}{variant.path}"

    def start(self) -> ReplayServer:
        replay = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                variant = replay.routes.get(self.path.split("?", 1)[0])
                with replay._lock:
                    replay.hits[self.path] = replay.hits.get(self.path, 0) + 1
                    replay.accepts[self.path] = self.headers.get("Accept", "")
                if variant is None:
                    self.reply(404, "text/plain; charset=utf-8", f"no capture at {self.path}\n".encode())
                else:
                    self.reply(200, variant.content_type, variant.body)

        self.serve(Handler, port=self._port, name="replay")
        return self

    def stop(self) -> None:
        super().stop()
        self._server = None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    server = ReplayServer(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0).start()
    for variant in server.routes.values():
        print(server.url(variant), variant.content_type)
    print("serving on", server.address, "- Ctrl-C stops", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
