"""A simulated SambaNova inference router: models, QoS classes, users, worker pools.

Every family of SambaNova's router metrics page is exposed at the documented granularity, with the
first label key of each alias list the ``sambanova`` mapping accepts (``model``, ``qos``, ``user``,
``status``, ``code``, ``route``, ``state``, ``pool``). ``response_duration_ms`` is a histogram or a
summary (``duration_as``); the summary's quantiles come from a sliding window of recent requests,
as client libraries compute them. Users join over time, so new series appear between scrapes.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from promotel.simulate.server import Hist, LabelPairs, SimFamily

MODELS = ("Meta-Llama-3.3-70B-Instruct", "DeepSeek-R1-0528", "Qwen3-32B")
QOS = ("free", "standard", "premium")
ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
POOLS = ("pool-a", "pool-b")
STATES = ("idle", "busy", "draining", "unhealthy")
DURATION_MS_BOUNDS = (50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0)
QUANTILES = (0.5, 0.9, 0.99)
WINDOW = 500


@dataclass
class Latency:
    hist: Hist = field(default_factory=lambda: Hist(DURATION_MS_BOUNDS))
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def observe(self, ms: float) -> None:
        self.hist.observe(ms)
        self.recent.append(ms)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass
class User:
    id: str
    qos: str
    models: tuple[str, ...]


class SambaNovaModel:
    def __init__(self, seed: int | None = None, duration_as: str = "histogram") -> None:
        if duration_as not in ("histogram", "summary"):
            raise ValueError(f"duration_as must be 'histogram' or 'summary', not {duration_as!r}")
        self.rng = random.Random(seed)
        self.duration_as = duration_as
        self.steps = 0
        self.users: list[User] = []
        self.submitted: dict[LabelPairs, int] = {}
        self.completed: dict[LabelPairs, int] = {}
        self.codes: dict[LabelPairs, int] = {}
        self.latency: dict[LabelPairs, Latency] = {}
        self.queue: dict[LabelPairs, int] = {}
        self.max_wait: dict[LabelPairs, float] = {}
        self.customer_queue: dict[LabelPairs, int] = {}
        self.ratios: dict[LabelPairs, float] = {}
        self.active_users = 0
        for _ in range(4):
            self._add_user()
        self.step()

    def _add_user(self) -> None:
        rng = self.rng
        n = len(self.users) + 1
        models = tuple(sorted(rng.sample(MODELS, rng.randint(1, 2))))
        self.users.append(User(f"user-{n:04d}", rng.choice(QOS), models))

    def step(self) -> None:
        rng = self.rng
        self.steps += 1
        if self.steps % 2 == 0 and len(self.users) < 24:
            self._add_user()
        self.queue.clear()
        self.customer_queue.clear()
        active = 0
        for user in self.users:
            if rng.random() < 0.8:
                active += 1
            for model in user.models:
                base = (("model", model), ("qos", user.qos), ("user", user.id))
                n = rng.randint(5, 40)
                rejected = rng.randint(0, 2)
                self._inc(self.submitted, base + (("status", "accepted"),), n)
                if rejected:
                    self._inc(self.submitted, base + (("status", "rejected"),), rejected)
                errors = sum(1 for _ in range(n) if rng.random() < 0.05)
                self._inc(self.completed, base + (("status", "success"),), n - errors)
                if errors:
                    self._inc(self.completed, base + (("status", "error"),), errors)
                latency = self.latency.setdefault(base, Latency())
                for _ in range(n):
                    latency.observe(round(rng.lognormvariate(6.8, 0.8), 3))
                waiting = rng.randint(0, 6)
                self.queue[base] = waiting
                self.customer_queue[(("user", user.id), ("model", model))] = waiting
                for _ in range(n + rejected):
                    code = rng.choices(("200", "400", "429", "500", "503"), (0.9, 0.03, 0.04, 0.02, 0.01))[0]
                    route = rng.choices(ROUTES, (0.8, 0.15, 0.05))[0]
                    self._inc(self.codes, (("code", code), ("route", route), ("user", user.id)), 1)
        self.active_users = active
        for model in MODELS:
            for qos in QOS:
                self.max_wait[(("model", model), ("qos", qos))] = round(rng.uniform(0.0, 12.0), 3)
            for pool in POOLS:
                weights = [rng.random() * w for w in (3.0, 5.0, 0.5, 0.2)]
                total = sum(weights)
                for state, w in zip(STATES, weights):
                    self.ratios[(("state", state), ("model", model), ("pool", pool))] = round(w / total, 4)

    @staticmethod
    def _inc(table: dict[LabelPairs, int], key: LabelPairs, n: int) -> None:
        table[key] = table.get(key, 0) + n

    def families(self) -> list[SimFamily]:
        fams = [
            SimFamily("queue_length", "gauge", "Number of requests currently queued in the router.",
                      tuple(("", k, float(v)) for k, v in sorted(self.queue.items()))),
            SimFamily("queue_max_wait_seconds", "gauge", "Maximum age (seconds) of any request currently in the queue.",
                      tuple(("", k, v) for k, v in sorted(self.max_wait.items()))),
            SimFamily("customer_queue_length", "gauge", "Queue length per customer per model.",
                      tuple(("", k, float(v)) for k, v in sorted(self.customer_queue.items()))),
            SimFamily("submitted", "counter", "Total number of requests submitted to the router.",
                      tuple(("_total", k, float(v)) for k, v in sorted(self.submitted.items()))),
            SimFamily("completed", "counter", "Total number of completed requests, labeled with completion status.",
                      tuple(("_total", k, float(v)) for k, v in sorted(self.completed.items()))),
            SimFamily("response_code", "counter", "Count of HTTP responses by status code.",
                      tuple(("_total", k, float(v)) for k, v in sorted(self.codes.items()))),
        ]
        samples: list[tuple[str, LabelPairs, float]] = []
        for key, lat in sorted(self.latency.items()):
            if self.duration_as == "histogram":
                samples.extend(lat.hist.samples(key))
            else:
                samples.extend(("", key + (("quantile", repr(q)),), lat.quantile(q)) for q in QUANTILES)
                samples.append(("_sum", key, round(lat.hist.sum, 3)))
                samples.append(("_count", key, float(lat.hist.count)))
        fams.append(SimFamily("response_duration_ms", self.duration_as,
                              "End-to-end response latency in milliseconds.", tuple(samples)))
        fams.append(SimFamily("connection_state_ratio", "gauge", "Fraction of workers in each state.",
                              tuple(("", k, v) for k, v in sorted(self.ratios.items()))))
        fams.append(SimFamily("active_users", "gauge", "Number of active users observed by the router.",
                              (("", (), float(self.active_users)),)))
        return fams


__all__ = ["SambaNovaModel"]
