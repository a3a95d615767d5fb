"""A simulated Baseten organization: deployments, replicas, GPUs and their request traffic.

Every family of Baseten's metrics support matrix is exposed with its documented labels, plus the
async-webhook and LLM families Baseten documents elsewhere (for LLM deployments only). Each ``step``
is one 30-second refresh of Baseten's export. The evolution is deterministic for a given seed:

* counters only grow, except a replica's CPU-time counter, which restarts from 0 when that replica
  restarts (every 3rd step one replica restarts; it is "starting" for that step);
* one non-production deployment goes away and a new one appears every 5th step;
* requests end with 2xx, 4xx and 5xx codes; histograms are cumulative with sum and count in step;
* GPU memory is in MiB and GPU utilization in percent (0–100), as Baseten exposes them.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field

from promotel.simulate.server import Hist, LabelPairs, SimFamily

DURATION_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TTFB_BOUNDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SIZE_BOUNDS = (256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0)
QUEUE_BOUNDS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0)
TOKEN_BOUNDS = (16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0)
RATE_BOUNDS = (0.1, 0.25, 0.5, 0.75, 0.9)
WEBHOOK_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

CODES = ((200, 0.9), (400, 0.035), (429, 0.02), (500, 0.035), (503, 0.01))
MODELS = (("llama-3.1-8b-instruct", True), ("whisper-large-v3", False), ("qwen2.5-72b-instruct", True),
          ("sdxl-turbo", False), ("mistral-7b-instruct", True), ("bge-reranker", False))
GPU_MEMORY_MIB = 81_559.0   # an H100 80 GB as nvidia-smi reports it


def _ident(rng: random.Random, n: int = 7) -> str:
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(n))


@dataclass
class Replica:
    id: str
    gpus: list[str]
    cpu_seconds: float = 0.0
    memory_bytes: float = 2.0e9
    gpu_memory_mib: dict[str, float] = field(default_factory=dict)
    gpu_util: dict[str, float] = field(default_factory=dict)
    starting: bool = True


@dataclass
class RequestSeries:
    requests: int = 0
    duration: Hist = field(default_factory=lambda: Hist(DURATION_BOUNDS))
    ttfb: Hist = field(default_factory=lambda: Hist(TTFB_BOUNDS))
    request_size: Hist = field(default_factory=lambda: Hist(SIZE_BOUNDS))
    response_size: Hist = field(default_factory=lambda: Hist(SIZE_BOUNDS))


@dataclass
class Deployment:
    model_id: str
    model_name: str
    deployment_id: str
    environment: str
    rollout_phase: str
    llm: bool
    replicas: list[Replica]
    series: dict[tuple[str, str], RequestSeries] = field(default_factory=dict)   # (status_code, is_async)
    async_queue: Hist = field(default_factory=lambda: Hist(QUEUE_BOUNDS))
    async_queue_size: int = 0
    concurrent: int = 0
    websockets: int = 0
    restarts: int = 0
    webhooks: dict[str, int] = field(default_factory=dict)
    webhook_latency: Hist = field(default_factory=lambda: Hist(WEBHOOK_BOUNDS))
    input_tokens: int = 0
    output_tokens: int = 0
    input_per_request: Hist = field(default_factory=lambda: Hist(TOKEN_BOUNDS))
    output_per_request: Hist = field(default_factory=lambda: Hist(TOKEN_BOUNDS))
    kv_hit_rate: Hist = field(default_factory=lambda: Hist(RATE_BOUNDS))
    in_flight_tokens: int = 0
    llm_requests: int = 0

    def labels(self) -> LabelPairs:
        return (("model_id", self.model_id), ("model_name", self.model_name), ("deployment_id", self.deployment_id),
                ("environment", self.environment), ("rollout_phase", self.rollout_phase))


class BasetenModel:
    """The organization's state; ``step`` advances it by one refresh, ``families`` renders it."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.steps = 0
        self.deployments: list[Deployment] = []
        self._next_model = 0
        for environment, phase in (("production", "stable"), ("staging", "promoting"), ("", "")):
            self.deployments.append(self._new_deployment(environment, phase))
        for dep in self.deployments:
            for replica in dep.replicas:
                replica.starting = False
        self.step()

    def _new_deployment(self, environment: str, phase: str) -> Deployment:
        rng = self.rng
        name, llm = MODELS[self._next_model % len(MODELS)]
        self._next_model += 1
        dep_id = _ident(rng)
        replicas = [self._new_replica(name, dep_id) for _ in range(rng.randint(1, 3))]
        return Deployment(_ident(rng), name, dep_id, environment, phase, llm, replicas)

    def _new_replica(self, model_name: str, dep_id: str) -> Replica:
        rng = self.rng
        gpus = [str(i) for i in range(rng.choice((1, 1, 2)))]
        return Replica(f"baseten-model-{dep_id}-{_ident(rng, 5)}", gpus)

    def step(self) -> None:
        rng = self.rng
        self.steps += 1
        for dep in self.deployments:
            for replica in dep.replicas:
                replica.starting = False
        if self.steps % 3 == 0:
            # A replica crashes and restarts: its container counters start again from 0.
            dep = rng.choice(self.deployments)
            replica = rng.choice(dep.replicas)
            replica.cpu_seconds = 0.0
            replica.memory_bytes = 1.0e9
            replica.starting = True
            dep.restarts += 1
        if self.steps % 5 == 0 and len(self.deployments) > 1:
            # A development deployment goes away and a new one appears: series vanish and start.
            gone = next((d for d in reversed(self.deployments) if d.environment != "production"), None)
            if gone is not None:
                self.deployments.remove(gone)
            self.deployments.append(self._new_deployment("", ""))
        for dep in self.deployments:
            self._traffic(dep)

    def _traffic(self, dep: Deployment) -> None:
        rng = self.rng
        active = [r for r in dep.replicas if not r.starting]
        n = rng.randint(20, 120) * max(1, len(active))
        codes = [c for c, _ in CODES]
        weights = [w for _, w in CODES]
        for _ in range(n):
            code = str(rng.choices(codes, weights)[0])
            is_async = "true" if rng.random() < 0.15 else "false"
            series = dep.series.get((code, is_async))
            if series is None:
                series = dep.series[(code, is_async)] = RequestSeries()
            fast = code != "200"
            duration = rng.lognormvariate(-2.5 if fast else -0.3, 0.9)
            series.requests += 1
            series.duration.observe(duration)
            series.ttfb.observe(min(duration, rng.lognormvariate(-3.0, 0.7)))
            series.request_size.observe(float(int(rng.lognormvariate(7.5, 1.2))))
            series.response_size.observe(float(int(rng.lognormvariate(5.0 if fast else 8.5, 1.3))))
            if is_async == "true":
                dep.async_queue.observe(rng.lognormvariate(1.5, 1.2))
                status = str(rng.choices((200, 500), (0.97, 0.03))[0])
                dep.webhooks[status] = dep.webhooks.get(status, 0) + 1
                dep.webhook_latency.observe(rng.lognormvariate(-1.8, 0.6))
            if dep.llm and code == "200":
                tin = int(rng.lognormvariate(6.0, 1.0)) + 1
                tout = int(rng.lognormvariate(5.0, 1.0)) + 1
                dep.input_tokens += tin
                dep.output_tokens += tout
                dep.input_per_request.observe(float(tin))
                dep.output_per_request.observe(float(tout))
                dep.kv_hit_rate.observe(rng.random() ** 0.5)
        dep.async_queue_size = rng.randint(0, 12)
        dep.concurrent = rng.randint(0, 8 * max(1, len(active)))
        dep.websockets = rng.randint(0, 5)
        dep.in_flight_tokens = rng.randint(0, 40_000) if dep.llm else 0
        dep.llm_requests = rng.randint(0, 32) if dep.llm else 0
        for replica in dep.replicas:
            replica.cpu_seconds += round(rng.uniform(5.0, 60.0), 3)
            replica.memory_bytes = round(min(30e9, max(0.5e9, replica.memory_bytes * rng.uniform(0.95, 1.1))))
            for gpu in replica.gpus:
                used = 0.0 if replica.starting else rng.uniform(40_000.0, 78_000.0)
                replica.gpu_memory_mib[gpu] = float(int(used))
                replica.gpu_util[gpu] = 0.0 if replica.starting else round(rng.uniform(5.0, 100.0), 1)

    def families(self) -> list[SimFamily]:
        fams: dict[str, tuple[str, str, list[tuple[str, LabelPairs, float]]]] = {}

        def add(name: str, type_: str, help_: str, samples: list[tuple[str, LabelPairs, float]]) -> None:
            fams.setdefault(name, (type_, help_, []))[2].extend(samples)

        for dep in self.deployments:
            base = dep.labels()
            for (code, is_async), s in sorted(dep.series.items()):
                labels = base[:3] + (("status_code", code), ("is_async", is_async)) + base[3:]
                add("baseten_inference_requests", "counter", "Cumulative number of requests to the model.",
                    [("_total", labels, float(s.requests))])
                add("baseten_end_to_end_response_time_seconds", "histogram", "End-to-end response time in seconds.",
                    s.duration.samples(labels))
                add("baseten_time_to_first_byte_seconds", "histogram",
                    "Time to first byte/write in seconds. Proxy for time-to-first-token (TTFT).",
                    s.ttfb.samples(labels))
                add("baseten_request_size_bytes", "histogram", "Request size in bytes. Proxy for input tokens.",
                    s.request_size.samples(labels))
                add("baseten_response_size_bytes", "histogram",
                    "Response size in bytes. Proxy for generated tokens.", s.response_size.samples(labels))
            add("baseten_time_in_async_queue_seconds", "histogram",
                "Time async requests spend queued before processing.", dep.async_queue.samples(base))
            add("baseten_async_queue_size", "gauge", "Number of queued async requests over time.",
                [("", base, float(dep.async_queue_size))])
            add("baseten_concurrent_requests", "gauge",
                "Number of in-progress concurrent inference requests for a deployment.",
                [("", base, float(dep.concurrent))])
            add("baseten_ongoing_websocket_connections", "gauge", "Number of ongoing websocket connections.",
                [("", base, float(dep.websockets))])
            starting = sum(1 for r in dep.replicas if r.starting)
            add("baseten_replicas_active", "gauge", "Number of replicas ready to serve model requests.",
                [("", base, float(len(dep.replicas) - starting))])
            add("baseten_replicas_starting", "gauge", "Number of replicas starting up.",
                [("", base, float(starting))])
            add("baseten_container_restarts", "counter",
                "Cumulative number of times the model container has been restarted.",
                [("_total", base, float(dep.restarts))])
            add("baseten_pod_readiness", "gauge", "Number of pods grouped by their Kubernetes Ready condition.",
                [("", base[:3] + (("condition", cond),) + base[3:], float(n))
                 for cond, n in (("true", len(dep.replicas) - starting), ("false", starting), ("unknown", 0))])
            for replica in dep.replicas:
                rl = base[:3] + (("replica", replica.id),) + base[3:]
                add("baseten_container_cpu_usage_seconds", "counter",
                    "Cumulative CPU time consumed by the container in core-seconds.",
                    [("_total", rl, round(replica.cpu_seconds, 3))])
                add("baseten_container_cpu_memory_working_set_bytes", "gauge",
                    "Working set memory usage of the container in bytes.", [("", rl, replica.memory_bytes)])
                for gpu in replica.gpus:
                    gl = base[:3] + (("replica", replica.id), ("gpu", gpu)) + base[3:]
                    add("baseten_gpu_memory_used", "gauge", "GPU memory used in MiB.",
                        [("", gl, replica.gpu_memory_mib.get(gpu, 0.0))])
                    add("baseten_gpu_utilization", "gauge",
                        "GPU utilization as a percentage (between 0 and 100).",
                        [("", gl, replica.gpu_util.get(gpu, 0.0))])
            for status, n in sorted(dep.webhooks.items()):
                add("baseten_async_webhook_requests", "counter", "Cumulative number of async webhook deliveries.",
                    [("_total", base + (("status_code", status),), float(n))])
            if dep.webhook_latency.count:
                add("baseten_async_webhook_latency_seconds", "histogram", "Latency of async webhook deliveries.",
                    dep.webhook_latency.samples(base))
            if dep.llm:
                add("baseten_llm_input_tokens", "counter", "Cumulative number of input tokens.",
                    [("_total", base, float(dep.input_tokens))])
                add("baseten_llm_output_tokens", "counter", "Cumulative number of output tokens.",
                    [("_total", base, float(dep.output_tokens))])
                add("baseten_llm_input_tokens_per_request", "histogram", "Input tokens per request.",
                    dep.input_per_request.samples(base))
                add("baseten_llm_output_tokens_per_request", "histogram", "Output tokens per request.",
                    dep.output_per_request.samples(base))
                add("baseten_llm_kv_cache_hit_rate", "histogram", "KV-cache hit rate per request.",
                    dep.kv_hit_rate.samples(base))
                add("baseten_llm_in_flight_tokens", "gauge", "Tokens currently being processed.",
                    [("", base, float(dep.in_flight_tokens))])
                add("baseten_llm_num_requests", "gauge", "Requests currently being processed.",
                    [("", base, float(dep.llm_requests))])
        return [SimFamily(name, t, h, tuple(s)) for name, (t, h, s) in fams.items()]


__all__ = ["BasetenModel", "Deployment", "Replica"]
