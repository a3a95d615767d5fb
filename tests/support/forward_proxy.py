"""A real HTTP forward proxy on 127.0.0.1, for the proxy tests of the scraper and the exporters.

It speaks what HTTP clients send a proxy (RFC 9110 §7.1 and §9.3.6):

* a request with an absolute URI (``GET http://host:port/path HTTP/1.1``) for an http:// target: it is sent on
  to the target in origin form, with the ``Proxy-*`` and hop-by-hop headers removed, and the answer comes back
  with ``Connection: close`` (one request per connection keeps the proxy simple);
* ``CONNECT host:port`` for anything else (https:// targets, gRPC): ``200 Connection established``, then bytes
  are copied both ways until one side closes (the proxy never sees inside a TLS tunnel).

Host names are resolved through ``hosts`` only (``{"target.test": "127.0.0.1"}``): a name the client could
not resolve itself reaches its target only through this proxy, which proves the request went through it.
Unknown names get ``502 Bad Gateway``. With ``credentials``, a request without the matching
``Proxy-Authorization: Basic …`` gets ``407 Proxy Authentication Required``. ``passed`` records every request
(method, target, headers) in arrival order. Every socket has a timeout and every copy loop ends when the proxy
stops, so a broken client cannot hang a test.
"""

from __future__ import annotations

import base64
import select
import socket
import socketserver
import threading
import urllib.parse
from collections.abc import Mapping
from typing import NamedTuple

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
                         "transfer-encoding", "upgrade", "proxy-authenticate"})
_TIMEOUT = 10.0
_MAX_HEAD = 64 * 1024


class Passed(NamedTuple):
    """One request the proxy received: ``CONNECT host:port`` or ``GET http://…`` and its headers (lower-cased)."""

    method: str
    target: str
    headers: dict[str, str]


class ForwardProxy:
    def __init__(self, hosts: Mapping[str, str] | None = None, credentials: tuple[str, str] | None = None) -> None:
        self.hosts = dict(hosts or {})
        self.credentials = credentials
        self.passed: list[Passed] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._open: set[socket.socket] = set()
        self._server: socketserver.ThreadingTCPServer | None = None

    # ── lifecycle ──
    def start(self) -> ForwardProxy:
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._handle(self.request)

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            for sock in self._open:
                try:
                    sock.close()
                except OSError:
                    pass
            self._open.clear()

    def __enter__(self) -> ForwardProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the proxy first"
        return int(self._server.server_address[1])

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = f"{urllib.parse.quote(user)}:{urllib.parse.quote(password or '')}@" if user is not None else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def methods(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(p.method, p.target) for p in self.passed]

    # ── one client connection ──
    def _handle(self, client: socket.socket) -> None:
        client.settimeout(_TIMEOUT)
        with self._lock:
            self._open.add(client)
        try:
            head, rest = self._read_head(client)
            if head is None:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            with self._lock:
                self.passed.append(Passed(method, target, headers))
            if self.credentials is not None:
                user, password = self.credentials
                expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
                if headers.get("proxy-authorization") != expected:
                    client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                   b"Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n"
                                   b"Connection: close\r\n\r\n")
                    return
            if method == "CONNECT":
                self._tunnel(client, target, rest)
            else:
                self._forward(client, method, target, headers, rest)
        except (OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._open.discard(client)
            try:
                client.close()
            except OSError:
                pass

    @staticmethod
    def _read_head(sock: socket.socket) -> tuple[bytes | None, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk or len(data) > _MAX_HEAD:
                return None, b""
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        return head, rest

    def _connect(self, host: str, port: int) -> socket.socket | None:
        address = self.hosts.get(host.lower(), host if _is_ip(host) else None)
        if address is None:
            return None
        try:
            upstream = socket.create_connection((address, port), timeout=_TIMEOUT)
        except OSError:
            return None
        with self._lock:
            self._open.add(upstream)
        return upstream

    def _tunnel(self, client: socket.socket, target: str, early: bytes) -> None:
        host, _, port = target.rpartition(":")
        upstream = self._connect(host.strip("[]"), int(port))
        if upstream is None:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        try:
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if early:
                upstream.sendall(early)
            self._copy(client, upstream)
        finally:
            with self._lock:
                self._open.discard(upstream)
            upstream.close()

    def _copy(self, a: socket.socket, b: socket.socket) -> None:
        """Copy bytes both ways until either side closes or the proxy stops (checked every 0.1 s)."""
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([a, b], [], [], 0.1)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)
            except (OSError, ValueError):
                return

    def _forward(self, client: socket.socket, method: str, target: str, headers: dict[str, str],
                 rest: bytes) -> None:
        url = urllib.parse.urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        length = int(headers.get("content-length", "0"))
        body = rest
        while len(body) < length:
            chunk = client.recv(65536)
            if not chunk:
                return
            body += chunk
        upstream = self._connect(url.hostname, url.port or 80)
        if upstream is None:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        try:
            path = urllib.parse.urlunsplit(("", "", url.path or "/", url.query, ""))
            out = [f"{method} {path} HTTP/1.1"]
            out += [f"{name}: {value}" for name, value in headers.items() if name not in _HOP_BY_HOP]
            out.append("Connection: close")
            upstream.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body[:length])
            answer = b""
            while True:                                  # the target closes after its answer (Connection: close)
                chunk = upstream.recv(65536)
                if not chunk:
                    break
                answer += chunk
        finally:
            with self._lock:
                self._open.discard(upstream)
            upstream.close()
        head, _, payload = answer.partition(b"\r\n\r\n")
        kept = [line for line in head.split(b"\r\n")
                if line.split(b":", 1)[0].strip().lower() not in (b"connection", b"keep-alive")]
        client.sendall(b"\r\n".join([*kept, b"Connection: close"]) + b"\r\n\r\n" + payload)


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True
