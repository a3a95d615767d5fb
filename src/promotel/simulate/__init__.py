"""Realistic Baseten and SambaNova metrics endpoints, for trying promotel out and for tests.

``promotel simulate baseten|sambanova`` serves one until SIGINT/SIGTERM; ``start_simulator`` runs
one in a background thread and returns a handle (``.url``, ``.port``, ``.advance()``, ``.close()``).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, Self

from promotel.simulate.baseten import BasetenModel
from promotel.simulate.sambanova import SambaNovaModel
from promotel.simulate.server import SimServer, Simulator, TrafficModel, make_handler

SOURCES = ("baseten", "sambanova")


class RunningSimulator:
    """A simulator serving on a background thread."""

    def __init__(self, source: str, server: SimServer, sim: Simulator) -> None:
        self.source = source
        self.simulator = sim
        self._server = server
        host, port = server.server_address[0], server.server_address[1]
        self.host = str(host)
        self.port = int(port)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}/metrics"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"promotel-simulate-{source}", daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def model(self) -> TrafficModel:
        return self.simulator.model

    @property
    def requests(self) -> int:
        """Successful scrapes served so far."""
        return self.simulator.requests

    def advance(self, steps: int = 1) -> None:
        """Step the traffic by ``steps`` refreshes now, as if ``refresh_s`` had passed."""
        self.simulator.advance(steps)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_simulator(source: str, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None,
                    seed: int | None = None, duration_as: str = "histogram", refresh_s: float = 30.0,
                    rate_limit: tuple[int, float] | None = (6, 60.0),
                    clock: Callable[[], float] = time.monotonic) -> RunningSimulator:
    """Serve a simulated ``source`` endpoint on ``host:port`` (port 0 = a free one).

    Baseten's rate limit (6 per 60 s per key) applies to the Baseten simulator only; pass
    ``rate_limit=None`` to lift it. ``clock`` drives refreshes and the rate limit (tests pass their own)."""
    model: TrafficModel
    if source == "baseten":
        model = BasetenModel(seed)
        limit = rate_limit
    elif source == "sambanova":
        model = SambaNovaModel(seed, duration_as)
        limit = None
    else:
        raise ValueError(f"unknown simulator {source!r}; choose one of: {', '.join(SOURCES)}")
    sim = Simulator(model, api_key, limit, refresh_s, clock)
    server = SimServer((host, port), make_handler(sim))
    return RunningSimulator(source, server, sim)


def cli_simulate(args: Any) -> int:
    """``promotel simulate``: serve until SIGINT or SIGTERM."""
    try:
        running = start_simulator(args.source, host=args.host, port=args.port, api_key=args.api_key,
                                  seed=args.seed, duration_as=args.duration_as)
    except OSError as exc:
        print(f"promotel simulate: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; "
              "pick another --port", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"serving {args.source} metrics on {running.url}", flush=True)
        if args.api_key:
            print("clients must send 'Authorization: Api-Key <key>' (Bearer is accepted too)", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        running.close()
    return 0


__all__ = ["SOURCES", "RunningSimulator", "cli_simulate", "start_simulator"]
