"""A deterministic generator of Baseten-shaped expositions (~150k samples), for benchmarks and tests.

The families and labels follow the Baseten metrics support matrix
(Baseten's documentation; the families are listed in ``docs/mappings.md``): about 200 deployments with replicas and
GPUs, request counters and histograms per status code and ``is_async``, ``environment`` and
``rollout_phase`` labels (empty when the deployment has no environment).

    from gen_baseten import generate, BasetenTarget
    text = generate(seed=1, fmt="prometheus")          # scrape 0
    target = BasetenTarget(seed=1)
    first = target.render("openmetrics")
    target.advance()                                    # counters and histograms move on
    second = target.render("openmetrics")

CLI: ``python bench/gen_baseten.py [--seed N] [--format prometheus|openmetrics] [--scrape K] [--deployments N]``
writes scrape K to stdout and the sample count to stderr.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from dataclasses import dataclass, field

PREFIX = "baseten_"
STATUS_CODES = ("200", "400", "401", "404", "422", "429", "500", "502", "503", "504")
MODELS = ("llama-3-70b-instruct", "whisper-large-v3", "mistral-7b", "sdxl-turbo", "qwen2-72b",
          "embed-e5-large", "deepseek-r1-distill", "flux-schnell", "gemma-2-27b", "phi-3-mini")
ENVIRONMENTS = (("production", "stable"), ("production", "promoting"), ("staging", "stable"), ("", ""))

TIME_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
SIZE_BOUNDS = (64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
               16777216.0, 67108864.0, 268435456.0, 1073741824.0, 4294967296.0, 17179869184.0)

# (family, help, unit, bounds, log-normal mu, sigma) of the per-request histograms.
REQUEST_HISTOGRAMS = (
    ("end_to_end_response_time_seconds", "End-to-end response time in seconds.", "seconds",
     TIME_BOUNDS, math.log(0.8), 1.2),
    ("request_size_bytes", "Request size in bytes. Proxy for input tokens.", "bytes",
     SIZE_BOUNDS, math.log(4000), 1.5),
    ("response_size_bytes", "Response size in bytes. Proxy for generated tokens.", "bytes",
     SIZE_BOUNDS, math.log(20000), 1.5),
    ("time_to_first_byte_seconds", "Time to first byte/write in seconds. Proxy for time-to-first-token (TTFT).",
     "seconds", TIME_BOUNDS, math.log(0.2), 1.0),
)


def _fmt(x: float) -> str:
    """Values as Go/client_python print them: integers with '.0', +Inf, NaN."""
    if x == math.inf:
        return "+Inf"
    if x == -math.inf:
        return "-Inf"
    if math.isnan(x):
        return "NaN"
    return repr(float(x))


class _Histogram:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self, n: int) -> None:
        self.buckets = [0] * (n + 1)       # per bucket, not cumulative; last is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, bounds: tuple[float, ...], v: float) -> None:
        i = 0
        for b in bounds:
            if v <= b:
                break
            i += 1
        self.buckets[i] += 1
        self.sum += v
        self.count += 1


@dataclass
class _Deployment:
    model_id: str
    model_name: str
    deployment_id: str
    environment: str
    rollout_phase: str
    statuses: tuple[str, ...]
    asyncs: tuple[str, ...]
    replicas: list[str]
    gpus: int
    requests: dict[tuple[str, str], int] = field(default_factory=dict)
    hists: dict[tuple[str, str, str], _Histogram] = field(default_factory=dict)
    queue_hist: _Histogram | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    restarts: int = 0


def _ident(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


class BasetenTarget:
    """The state of one simulated Baseten metrics endpoint; ``advance`` moves it one scrape on."""

    def __init__(self, seed: int = 0, deployments: int = 200) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.deployments: list[_Deployment] = []
        for i in range(deployments):
            env, phase = ENVIRONMENTS[rng.randrange(len(ENVIRONMENTS))]
            statuses = ("200",) + tuple(sorted(rng.sample(STATUS_CODES[1:], rng.randint(5, 8))))
            asyncs = ("false", "true") if rng.random() < 0.35 else ("false",)
            dep_id = _ident(rng, 8)
            replicas = [f"{dep_id}-{_ident(rng, 9)}-{_ident(rng, 5)}" for _ in range(rng.randint(1, 4))]
            d = _Deployment(_ident(rng, 8), f"{MODELS[i % len(MODELS)]}-{i}", dep_id, env, phase,
                            statuses, asyncs, replicas, rng.choice((1, 1, 2, 4, 8)))
            for st in statuses:
                for a in asyncs:
                    d.requests[(st, a)] = 0
                    for fam, _h, _u, bounds, _mu, _s in REQUEST_HISTOGRAMS:
                        d.hists[(fam, st, a)] = _Histogram(len(bounds))
            if "true" in asyncs:
                d.queue_hist = _Histogram(len(TIME_BOUNDS))
            for r in replicas:
                d.cpu[r] = 0.0
            self.deployments.append(d)
        self.scrape = 0
        self.advance()

    def advance(self) -> None:
        """One scrape interval of traffic: most series change, counters only grow."""
        rng = self.rng
        for d in self.deployments:
            for key in d.requests:
                st, a = key
                n = rng.randint(1, 6) if st == "200" else rng.randint(0, 2)
                d.requests[key] += n
                for fam, _h, _u, bounds, mu, sigma in REQUEST_HISTOGRAMS:
                    h = d.hists[(fam, st, a)]
                    for _ in range(n):
                        h.observe(bounds, rng.lognormvariate(mu, sigma))
                if a == "true" and d.queue_hist is not None:
                    for _ in range(n):
                        d.queue_hist.observe(TIME_BOUNDS, rng.lognormvariate(math.log(2.0), 1.0))
            for r in d.cpu:
                d.cpu[r] += rng.uniform(5.0, 60.0)
            if rng.random() < 0.01:
                d.restarts += 1
        self.scrape += 1

    def render(self, fmt: str = "prometheus") -> str:
        om = fmt == "openmetrics"
        rng = random.Random(self.scrape)       # gauges: a fresh, reproducible reading per scrape
        out: list[str] = []
        emit = out.append

        def meta(name: str, typ: str, help_: str, unit: str = "") -> None:
            full = PREFIX + name
            fam = full[: -len("_total")] if om and typ == "counter" else full
            emit(f"# HELP {fam} {help_}")
            emit(f"# TYPE {fam} {typ}")
            if om and unit:
                emit(f"# UNIT {fam} {unit}")

        def base(d: _Deployment) -> str:
            return f'model_id="{d.model_id}",model_name="{d.model_name}",deployment_id="{d.deployment_id}"'

        def tail(d: _Deployment) -> str:
            return f'environment="{d.environment}",rollout_phase="{d.rollout_phase}"'

        meta("inference_requests_total", "counter", "Cumulative number of requests to the model.")
        for d in self.deployments:
            for (st, a), n in d.requests.items():
                emit(f'{PREFIX}inference_requests_total{{{base(d)},status_code="{st}",is_async="{a}",'
                     f'{tail(d)}}} {_fmt(n)}')
        for fam, help_, unit, bounds, _mu, _s in REQUEST_HISTOGRAMS:
            meta(fam, "histogram", help_, unit)
            for d in self.deployments:
                for st in d.statuses:
                    for a in d.asyncs:
                        self._histogram(emit, PREFIX + fam, f'{base(d)},status_code="{st}",is_async="{a}",{tail(d)}',
                                        bounds, d.hists[(fam, st, a)])
        meta("time_in_async_queue_seconds", "histogram", "Time async requests spend queued before processing.",
             "seconds")
        for d in self.deployments:
            if d.queue_hist is not None:
                self._histogram(emit, PREFIX + "time_in_async_queue_seconds", f"{base(d)},{tail(d)}",
                                TIME_BOUNDS, d.queue_hist)
        meta("container_cpu_usage_seconds_total", "counter",
             "Cumulative CPU time consumed by the container in core-seconds.", "seconds")
        for d in self.deployments:
            for r, v in d.cpu.items():
                emit(f'{PREFIX}container_cpu_usage_seconds_total{{{base(d)},replica="{r}",{tail(d)}}} {_fmt(round(v, 3))}')
        meta("container_restarts_total", "counter", "Cumulative number of times the model container has been restarted.")
        for d in self.deployments:
            emit(f"{PREFIX}container_restarts_total{{{base(d)},{tail(d)}}} {_fmt(d.restarts)}")
        gauges = (
            ("replicas_active", "Number of replicas ready to serve model requests.",
             lambda d: float(len(d.replicas))),
            ("replicas_starting", "Number of replicas starting up.", lambda d: float(rng.random() < 0.05)),
            ("async_queue_size", "Number of queued async requests over time.",
             lambda d: float(rng.randint(0, 40)) if "true" in d.asyncs else 0.0),
            ("ongoing_websocket_connections", "Number of ongoing websocket connections.",
             lambda d: float(rng.randint(0, 10))),
            ("concurrent_requests", "Number of in-progress concurrent inference requests for a deployment.",
             lambda d: float(rng.randint(0, 64))),
        )
        for name, help_, fn in gauges:
            meta(name, "gauge", help_)
            for d in self.deployments:
                emit(f"{PREFIX}{name}{{{base(d)},{tail(d)}}} {_fmt(fn(d))}")
        meta("pod_readiness", "gauge", "Number of pods grouped by their Kubernetes Ready condition.")
        for d in self.deployments:
            for cond, v in (("true", len(d.replicas)), ("false", 0), ("unknown", 0)):
                emit(f'{PREFIX}pod_readiness{{{base(d)},condition="{cond}",{tail(d)}}} {_fmt(v)}')
        meta("container_cpu_memory_working_set_bytes", "gauge",
             "Working set memory usage of the container in bytes.", "bytes")
        for d in self.deployments:
            for r in d.replicas:
                emit(f'{PREFIX}container_cpu_memory_working_set_bytes{{{base(d)},replica="{r}",{tail(d)}}} '
                     f"{_fmt(float(rng.randint(2**30, 2**36)))}")
        for name, help_, lo, hi in (("gpu_memory_used", "GPU memory used in MiB.", 1000, 80000),
                                    ("gpu_utilization", "GPU utilization as a percentage (between 0 and 100).", 0, 100)):
            meta(name, "gauge", help_)
            for d in self.deployments:
                for r in d.replicas:
                    for g in range(d.gpus):
                        emit(f'{PREFIX}{name}{{{base(d)},replica="{r}",gpu="{g}",{tail(d)}}} '
                             f"{_fmt(float(rng.randint(lo, hi)))}")
        if om:
            emit("# EOF")
        return "\n".join(out) + "\n"

    @staticmethod
    def _histogram(emit: object, name: str, labels: str, bounds: tuple[float, ...], h: _Histogram) -> None:
        assert callable(emit)
        cum = 0
        for b, n in zip(bounds + (math.inf,), h.buckets):
            cum += n
            emit(f'{name}_bucket{{{labels},le="{_fmt(b)}"}} {_fmt(cum)}')
        emit(f"{name}_sum{{{labels}}} {_fmt(round(h.sum, 6))}")
        emit(f"{name}_count{{{labels}}} {_fmt(h.count)}")


def generate(seed: int = 0, fmt: str = "prometheus", scrape: int = 0, deployments: int = 200) -> str:
    """The text of scrape number ``scrape`` (0 = the first) of a seeded Baseten-shaped target."""
    target = BasetenTarget(seed, deployments)
    for _ in range(scrape):
        target.advance()
    return target.render(fmt)


def scrapes(seed: int = 0, fmt: str = "prometheus", count: int = 2, deployments: int = 200) -> list[str]:
    """``count`` successive scrapes of one target."""
    target = BasetenTarget(seed, deployments)
    out = []
    for i in range(count):
        if i:
            target.advance()
        out.append(target.render(fmt))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("prometheus", "openmetrics"), default="prometheus")
    p.add_argument("--scrape", type=int, default=0, help="which successive scrape to print (0 = first)")
    p.add_argument("--deployments", type=int, default=200)
    args = p.parse_args(argv)
    text = generate(args.seed, args.format, args.scrape, args.deployments)
    sys.stdout.write(text)
    samples = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    print(f"{samples} samples, {len(text)} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
