"""Health endpoints for orchestrators and operators (``health.listen`` in the config).

    GET /healthz  200 while the process is alive (liveness: restart only a wedged process)
    GET /readyz   200 when the config is loaded and no exporter is losing data: 503 with the reasons
                  while an exporter dropped data within ``health.unready_after`` (default 2 minutes), or
                  when every attempt of an exporter failed for longer than that; ready again once it
                  recovers (readiness)
    GET /status   JSON: per target the last scrape (time, duration, samples, series, error, up), its URL
                  (credentials masked), interval and next scrape, and per exporter its state, readiness
                  and reason, the queue in memory, the persisted requests and bytes, the age of the oldest
                  unacknowledged request, drops by reason, the state database's health, last success and
                  last error. Times as unix seconds (the 0.1 fields) and as ISO 8601 UTC (``…_at``)
    GET /metrics  the same snapshot in the Prometheus text format (``promotel.service.metrics``)

The server runs in its own thread (stdlib ``ThreadingHTTPServer``) so a busy event loop never fails
a liveness probe. Readiness and status are computed *on* the event loop (``run_coroutine_threadsafe``)
so they read the bridge's state between, never during, its updates. Everything served passes
through the secret redactor.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, TypeVar

from promotel.errors import ConfigError

if TYPE_CHECKING:
    from promotel.service.bridge import Bridge

T = TypeVar("T")

log = logging.getLogger("promotel.service.health")

_LOOP_TIMEOUT_S = 2.0


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError([("health.listen", f"expected HOST:PORT, got {listen!r}")])
    return host.strip("[]") or "127.0.0.1", int(port)


class HealthServer:
    def __init__(self, listen: str) -> None:
        self.host, self.port = parse_listen(listen)
        self._bridge: Bridge | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def attach(self, bridge: Bridge) -> None:
        """Serve this bridge's state (called again after a config reload)."""
        self._bridge = bridge
        self._loop = asyncio.get_running_loop()

    def _on_loop(self, func: Callable[[Bridge], T]) -> T:
        loop = self._loop
        if loop is None or self._bridge is None:
            raise RuntimeError("not attached")

        async def call() -> T:
            bridge = self._bridge      # read on the loop: a reload may have attached another bridge
            if bridge is None:
                raise RuntimeError("not attached")
            return func(bridge)

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=_LOOP_TIMEOUT_S)

    def start(self) -> None:
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "promotel"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    self._send(200, "text/plain; charset=utf-8", b"ok\n")
                elif path == "/readyz":
                    try:
                        ok, why = server_self._on_loop(lambda b: b.ready())
                    except Exception as exc:
                        ok, why = False, f"not ready: {type(exc).__name__}"
                    self._send(200 if ok else 503, "text/plain; charset=utf-8", (why + "\n").encode())
                elif path == "/status":
                    try:
                        status = server_self._on_loop(lambda b: b.status())
                        body = _redact(json.dumps(status, indent=2, sort_keys=True, default=str)).encode()
                        self._send(200, "application/json", body + b"\n")
                    except Exception as exc:
                        self._send(503, "text/plain; charset=utf-8", f"status unavailable: {type(exc).__name__}\n".encode())
                elif path == "/metrics":
                    try:
                        from promotel import __version__
                        from promotel.service.metrics import CONTENT_TYPE, render_metrics

                        status = server_self._on_loop(lambda b: b.status())
                        self._send(200, CONTENT_TYPE, _redact(render_metrics(status, __version__)).encode())
                    except Exception as exc:
                        self._send(503, "text/plain; charset=utf-8",
                                   f"metrics unavailable: {type(exc).__name__}\n".encode())
                else:
                    self._send(404, "text/plain; charset=utf-8",
                               b"not found: try /healthz, /readyz, /status or /metrics\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        try:
            self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as exc:   # address in use, not a local address, no permission for the port
            raise ConfigError([("health.listen", f"cannot listen on {self.host}:{self.port}: "
                                                 f"{exc.strerror or exc}; choose a free port or another address")]
                              ) from exc
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)
        self._thread.start()
        log.info("Health endpoints listen on http://%s:%d (/healthz, /readyz, /status, /metrics).", self.host,
                 self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _redact(text: str) -> str:
    try:
        from promotel.config.secrets import redact_all
    except ImportError:  # pragma: no cover - secrets module always ships
        return text
    return redact_all(text)
