"""Local HTTP servers for the HTTP discovery tests: a scripted HTTP SD endpoint and a Target Allocator.

* ``SDServer`` — a real HTTP (or HTTPS) server on 127.0.0.1 (a thread) that records every request
  and answers from ``respond(request)``; by default the current ``groups`` as HTTP SD JSON.
* ``FakeTargetAllocator`` — the OpenTelemetry Operator's Target Allocator as collectors see it
  (cmd/otel-allocator/internal/server): ``/scrape_configs``, ``/jobs``, ``/jobs/<job>/targets``. It
  splits each job's targets among the known collectors by rendezvous hashing of the target address
  (only the targets of a collector that goes away move, as with the allocator's consistent hashing),
  and answers as the real one does where a client gets it wrong: without ``collector_id`` the
  targets route serves every collector's targets as an object (not the HTTP SD format); an unknown
  job or collector gets ``[]``; ``Accept: text/html`` gets HTML pages on /jobs and /scrape_configs;
  methods other than GET and unknown paths get gin's ``404 page not found``. The job name in the
  path is unescaped with Go's ``url.QueryUnescape`` after the router matched the path.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Self

from support.loopback_http import ClosingServer


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


Reply = tuple[int, dict[str, str], bytes]


def json_reply(data: object, status: int = 200, content_type: str = "application/json") -> Reply:
    return status, {"Content-Type": content_type}, (json.dumps(data) + "\n").encode()


@dataclass
class SDServer(ClosingServer):
    """An HTTP SD endpoint. ``groups`` is served as JSON unless ``respond`` is set."""

    groups: list[dict[str, Any]] = field(default_factory=list)
    respond: Callable[[Request], Reply] | None = None
    tls: ssl.SSLContext | None = None
    delay: float = 0.0
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                request = Request(self.command, parts.path, urllib.parse.parse_qs(parts.query),
                                  {k.lower(): v for k, v in self.headers.items()})
                owner.requests.append(request)
                if owner.delay:
                    time.sleep(owner.delay)
                status, headers, body = owner.reply(request)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.serve(Handler, name="sd-server", tls=self.tls)

    def url(self, path: str = "/sd", host: str = "127.0.0.1") -> str:
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    def reply(self, request: Request) -> Reply:
        if self.respond is not None:
            return self.respond(request)
        return json_reply(self.groups)



def _weight(collector: str, address: str) -> bytes:
    return hashlib.sha256(f"{collector}\x00{address}".encode()).digest()


class FakeTargetAllocator:
    """See the module docstring. ``jobs`` maps a job name to its targets' discovered labels (each
    with ``__address__``); ``collectors`` is the set of collector ids (pod names) it assigns to."""

    def __init__(self, jobs: dict[str, list[dict[str, str]]], collectors: set[str],
                 scrape_configs: dict[str, dict[str, Any]] | None = None) -> None:
        self.jobs = jobs
        self.collectors = set(collectors)
        self.scrape_configs = scrape_configs or {job: {"job_name": job, "scrape_interval": "30s"} for job in jobs}
        self._lock = threading.Lock()
        self.server = SDServer(respond=self._respond)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def requests(self) -> list[Request]:
        return self.server.requests

    def remove_collector(self, name: str) -> None:
        """The pod is gone: its targets are assigned to the remaining collectors."""
        with self._lock:
            self.collectors.discard(name)

    def add_collector(self, name: str) -> None:
        with self._lock:
            self.collectors.add(name)

    def assignment(self, job: str) -> dict[str, list[str]]:
        """Each collector's target addresses for ``job`` (rendezvous hashing on the address)."""
        with self._lock:
            collectors = sorted(self.collectors)
        out: dict[str, list[str]] = {c: [] for c in collectors}
        for target in self.jobs.get(job, []):
            if collectors:
                owner = max(collectors, key=lambda c: _weight(c, target["__address__"]))
                out[owner].append(target["__address__"])
        return out

    def _targets_for(self, job: str, collector: str) -> list[dict[str, Any]]:
        mine = set(self.assignment(job).get(collector, []))
        # One entry per target: its address, and its discovered labels (before relabeling).
        return [{"targets": [t["__address__"]], "labels": dict(sorted(t.items()))}
                for t in self.jobs.get(job, []) if t["__address__"] in mine]

    def _respond(self, request: Request) -> Reply:
        not_found = (404, {"Content-Type": "text/plain"}, b"404 page not found")
        if request.method != "GET":
            return not_found
        html = "text/html" in request.headers.get("accept", "")
        parts = request.path.split("/")
        if request.path == "/jobs":
            if html:
                return 200, {"Content-Type": "text/html; charset=utf-8"}, b"<html><body>jobs</body></html>"
            return json_reply({job: {"_link": f"/jobs/{urllib.parse.quote_plus(job, safe='')}/targets"}
                               for job in self.jobs})
        if request.path == "/scrape_configs":
            if html:
                return 200, {"Content-Type": "text/html; charset=utf-8"}, b"<html><body>configs</body></html>"
            return json_reply(self.scrape_configs)
        if len(parts) == 4 and parts[1] == "jobs" and parts[3] == "targets":
            job = urllib.parse.unquote_plus(parts[2])
            ids = request.query.get("collector_id")
            if not ids:
                # The real allocator's debugging view: every collector's targets, an object.
                return json_reply({c: {"_link": f"/debug/jobs/{job}/targets?collector_id={c}",
                                       "targets": self._targets_for(job, c)} for c in sorted(self.collectors)})
            return json_reply(self._targets_for(job, ids[0]))
        return not_found

    def close(self) -> None:
        self.server.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


