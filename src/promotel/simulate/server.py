"""The simulators' HTTP side: exposition writing, content negotiation, auth and Baseten's rate limit.

What a real endpoint does and this one copies:

* ``Accept`` decides the format: OpenMetrics 1.0 when the client accepts
  ``application/openmetrics-text``, else the Prometheus text format 0.0.4, each with its exact
  ``Content-Type``; ``Accept-Encoding: gzip`` gets a gzip body.
* With an API key set: ``Authorization: Api-Key <key>`` (``Bearer <key>`` too) or HTTP 401.
* Baseten allows 6 requests per minute per organization (here: per key) and answers HTTP 429 with
  ``Retry-After`` (whole seconds until a slot frees) beyond that.
* The data refreshes every ``refresh_s`` seconds (Baseten: 30 s); between refreshes every scrape
  returns the same values, so the rendered bodies are cached per refresh.
"""

from __future__ import annotations

import gzip
import hmac
import logging
import math
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple, Protocol

log = logging.getLogger("promotel.simulate")

OPENMETRICS_CT = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMETHEUS_CT = "text/plain; version=0.0.4; charset=utf-8"

LabelPairs = tuple[tuple[str, str], ...]


class SimFamily(NamedTuple):
    """One family to expose. ``name`` is the base name (counters without ``_total``)."""

    name: str
    type: str                                       # counter | gauge | histogram | summary
    help: str
    samples: tuple[tuple[str, LabelPairs, float], ...]   # (suffix such as "_total"/"_bucket"/"", labels, value)


class Hist:
    """A cumulative histogram as client libraries keep it: per-bucket counts, sum and count always agree."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)   # the last bucket is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        i = 0
        while i < len(self.bounds) and value > self.bounds[i]:
            i += 1
        self.counts[i] += 1
        self.sum += value
        self.count += 1

    def samples(self, labels: LabelPairs) -> list[tuple[str, LabelPairs, float]]:
        out: list[tuple[str, LabelPairs, float]] = []
        running = 0
        for bound, n in zip(self.bounds + (math.inf,), self.counts):
            running += n
            out.append(("_bucket", labels + (("le", format_value(float(bound)) if math.isinf(bound)
                                                 else repr(float(bound))),), float(running)))
        out.append(("_sum", labels, round(self.sum, 6)))
        out.append(("_count", labels, float(self.count)))
        return out


class TrafficModel(Protocol):
    def step(self) -> None: ...

    def families(self) -> list[SimFamily]: ...


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def render(families: Iterable[SimFamily], openmetrics: bool) -> bytes:
    """The exposition text. OpenMetrics declares counters without ``_total`` and ends with ``# EOF``;
    the Prometheus text format declares them with it."""
    out: list[str] = []
    for fam in families:
        declared = fam.name + "_total" if fam.type == "counter" and not openmetrics else fam.name
        out.append(f"# HELP {declared} {_escape_help(fam.help)}\n")
        out.append(f"# TYPE {declared} {fam.type}\n")
        for suffix, labels, value in fam.samples:
            if labels:
                inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
                out.append(f"{fam.name}{suffix}{{{inner}}} {format_value(value)}\n")
            else:
                out.append(f"{fam.name}{suffix} {format_value(value)}\n")
    if openmetrics:
        out.append("# EOF\n")
    return "".join(out).encode("utf-8")


def wants_openmetrics(accept: str) -> bool:
    for part in accept.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        if media.lower() == "application/openmetrics-text":
            return not any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params)
    return False


class RateLimiter:
    """A sliding window per key: at most ``limit`` requests in any ``window`` seconds."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}

    def check(self, key: str) -> float | None:
        """None when the request may proceed (and is counted), else the seconds until a slot frees."""
        now = self._clock()
        seen = self._seen.setdefault(key, deque())
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if len(seen) >= self.limit:
            return seen[0] + self.window - now
        seen.append(now)
        return None


class Simulator:
    """The state behind one simulated endpoint: the traffic model, refreshes, cached bodies, limits."""

    def __init__(self, model: TrafficModel, api_key: str | None, rate_limit: tuple[int, float] | None,
                 refresh_s: float, clock: Callable[[], float]) -> None:
        self.model = model
        self.api_key = api_key
        self.refresh_s = refresh_s
        self.clock = clock
        self.limiter = RateLimiter(rate_limit[0], rate_limit[1], clock) if rate_limit else None
        self.lock = threading.Lock()
        self._started = clock()
        self._refreshes = 0
        self._bodies: dict[tuple[bool, bool], bytes] = {}
        self.requests = 0

    def advance(self, steps: int = 1) -> None:
        """Step the traffic model now (tests use this instead of waiting for a refresh)."""
        with self.lock:
            for _ in range(steps):
                self.model.step()
            self._bodies.clear()

    def _refresh_due(self) -> None:
        due = int((self.clock() - self._started) // self.refresh_s) if self.refresh_s > 0 else 0
        if due > self._refreshes:
            # Catch up at most a few steps after a long idle time; values stay plausible either way.
            for _ in range(min(due - self._refreshes, 5)):
                self.model.step()
            self._refreshes = due
            self._bodies.clear()

    def body(self, openmetrics: bool, compress: bool) -> bytes:
        with self.lock:
            self._refresh_due()
            key = (openmetrics, compress)
            data = self._bodies.get(key)
            if data is None:
                plain = self._bodies.get((openmetrics, False))
                if plain is None:
                    plain = self._bodies[(openmetrics, False)] = render(self.model.families(), openmetrics)
                data = gzip.compress(plain, mtime=0) if compress else plain
                self._bodies[key] = data
            return data

    def authorize(self, header: str | None) -> str | None:
        """The caller's key when allowed, else None. Without a configured key everyone is allowed."""
        if self.api_key is None:
            return "anonymous"
        if not header:
            return None
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() not in ("api-key", "bearer"):
            return None
        token = token.strip()
        return token if hmac.compare_digest(token.encode(), self.api_key.encode()) else None


def make_handler(sim: Simulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "promotel-simulator"

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self._send(404, b"not found: the metrics are at /metrics\n", "text/plain; charset=utf-8")
                return
            key = sim.authorize(self.headers.get("Authorization"))
            if key is None:
                self._send(401, b"unauthorized: send 'Authorization: Api-Key <key>'\n", "text/plain; charset=utf-8",
                           {"WWW-Authenticate": 'Api-Key realm="metrics"'})
                return
            if sim.limiter is not None:
                with sim.lock:
                    wait = sim.limiter.check(key)
                if wait is not None:
                    self._send(429, b"too many requests: at most 6 per minute\n", "text/plain; charset=utf-8",
                               {"Retry-After": str(max(1, math.ceil(wait)))})
                    return
            openmetrics = wants_openmetrics(self.headers.get("Accept", ""))
            compress = "gzip" in self.headers.get("Accept-Encoding", "").lower()
            data = sim.body(openmetrics, compress)
            sim.requests += 1
            self._send(200, data, OPENMETRICS_CT if openmetrics else PROMETHEUS_CT,
                       {"Content-Encoding": "gzip"} if compress else {})

        def _send(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return   # quiet: the simulator is a test and demo fixture

    return Handler


class SimServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that goes away mid-request (reset, closed pipe, aborted) is routine for a metrics endpoint:
        one debug line. Anything else is a simulator bug and keeps socketserver's traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.debug("Client %s went away: %s.", _peer(client_address), error.strerror or error)
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


def _peer(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


__all__ = [
    "OPENMETRICS_CT",
    "PROMETHEUS_CT",
    "Hist",
    "RateLimiter",
    "SimFamily",
    "SimServer",
    "Simulator",
    "TrafficModel",
    "format_value",
    "make_handler",
    "render",
    "wants_openmetrics",
]
