"""What the loopback HTTP stand-ins share: a ``ThreadingHTTPServer`` on a daemon thread, its port, stopping it,
and a request handler that writes no access log and answers without failing when the client went away."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A handler that keeps the test output clean and shrugs off clients that hung up."""

    def reply(self, code: int, ctype: str, data: bytes) -> None:
        """Answers ``code`` with ``data``; a client that already closed the connection is not an error here."""
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LoopbackHttpServer:
    """Owns one HTTP server: ``serve`` starts it on a daemon thread, ``stop`` shuts it down and closes its socket."""

    _server: ThreadingHTTPServer | None = None

    def serve(self, handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1", port: int = 0, *,
              server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer, name: str | None = None) -> None:
        self._server = server_class((host, port), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name=name, daemon=True).start()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the server first"
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
