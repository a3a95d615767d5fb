"""A scrape target on loopback whose exposition (and misbehaviour) a test controls."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from http.server import ThreadingHTTPServer

from support.loopback_http import LoopbackHttpServer, QuietHandler


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class ExpositionServer(LoopbackHttpServer):
    """Serves ``self.body`` at /metrics; ``mode`` makes it fail: "ok", "500", "garbage", "slow".

    With ``bodies``, the target moves through them instead: GET number *n* (1-based) serves
    ``bodies[n - 1]``, and every GET after the last body serves the last one again; ``served`` records
    the index of the body each GET got, in order. ``mode`` still applies (a failing GET consumes a body)."""

    def __init__(self, body: str = "", content_type: str = "text/plain; version=0.0.4",
                 bodies: Sequence[str] = ()) -> None:
        self.body = body
        self.bodies = tuple(bodies)
        self.served: list[int] = []
        self.content_type = content_type
        self.mode = "ok"
        self.slow_s = 5.0
        self.hits = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    @property
    def address(self) -> str:
        """``host:port`` it listens on (an IPv6 host in brackets)."""
        assert self._server is not None
        host = str(self._server.server_address[0])
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> ExpositionServer:
        """Listen on ``host`` (any loopback address, IPv6 too) and ``port`` (0: a free one)."""
        target = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                with target.lock:
                    target.hits += 1
                    mode, body, ctype = target.mode, target.body, target.content_type
                    if target.bodies:
                        index = min(target.hits, len(target.bodies)) - 1
                        target.served.append(index)
                        body = target.bodies[index]
                if mode == "500":
                    self.reply(500, "text/plain", b"internal error\n")
                elif mode == "garbage":
                    self.reply(200, "text/plain; version=0.0.4", b"this is {not an exposition\n\x00\x01")
                elif mode == "slow":
                    time.sleep(target.slow_s)
                    self.reply(200, ctype, body.encode())
                else:
                    self.reply(200, ctype, body.encode())

        self.serve(Handler, host, port, server_class=ThreadingHTTPServer if ":" not in host else _IPv6Server)
        return self
