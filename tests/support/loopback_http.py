"""What the loopback HTTP stand-ins share: a ``ThreadingHTTPServer`` on a daemon thread, its port, stopping it,
and a request handler that writes no access log and answers without failing when the client went away."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


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
              server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer, name: str | None = None,
              tls: ssl.SSLContext | None = None) -> None:
        """``tls``: HTTPS, the listening socket wrapped server-side with that context."""
        self._server = server_class((host, port), handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the server first"
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class ClosingServer(LoopbackHttpServer):
    """A server started when built and closed by ``close`` or at the end of a ``with`` block; ``close`` also
    waits (10 s at most) for the serving thread."""

    def close(self) -> None:
        self.stop()
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
