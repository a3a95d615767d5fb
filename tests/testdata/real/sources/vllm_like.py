"""A vLLM-style prometheus_client application whose /metrics was captured for promotel's tests.

Metric names follow vLLM's (colon-separated ``vllm:`` prefix); every family has at least two
series. Run: ``python vllm_like.py PORT [ENUM_NAME]``; it serves on 127.0.0.1 only until killed.

prometheus_client names an Enum's state label after the metric itself, so an Enum named with a colon
(``vllm:engine_state``) yields a label name with a colon, which the 0.0.4 text format and OpenMetrics do
not allow. The main captures therefore name it ``vllm_engine_state``; the ``-colon-enum`` captures pass
``vllm:engine_state`` to record what each client version writes then.
"""

import sys
import time

from prometheus_client import Counter, Enum, Gauge, Histogram, Info, Summary, start_http_server

LABELS = ["model_name", "engine"]
MODELS = [("meta-llama/Llama-3.1-8B-Instruct", "0"), ("Qwen/Qwen2.5-7B-Instruct", "1")]

success = Counter("vllm:request_success", "Count of successfully processed requests.",
                  ["finished_reason", "model_name"])
prompt_tokens = Counter("vllm:prompt_tokens", "Number of prefill tokens processed.", LABELS)
e2e = Histogram("vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.",
                LABELS, buckets=[0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 5.0, 10.0, 20.0, 60.0])
running = Gauge("vllm:num_requests_running", "Number of requests in model execution batches.", LABELS)
cache_usage = Gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", LABELS)
config = Info("vllm:cache_config", "Information of the LLMEngine CacheConfig.", ["engine"])
ENUM_NAME = sys.argv[2] if len(sys.argv) > 2 else "vllm_engine_state"
state = Enum(ENUM_NAME, "Engine lifecycle state.", ["engine"],
             states=["starting", "running", "sleeping", "stopped"])
ttft = Summary("vllm:time_to_first_token_seconds", "Time to first token in seconds.", LABELS)

for i, (model, engine) in enumerate(MODELS):
    for reason, n in (("stop", 40 + i), ("length", 3 + i), ("abort", 1)):
        success.labels(finished_reason=reason, model_name=model).inc(n)
    prompt_tokens.labels(model, engine).inc(12345 + 1000 * i)
    for v in (0.4, 0.9, 1.7, 3.2, 12.0 + i):
        e2e.labels(model, engine).observe(v)
        ttft.labels(model, engine).observe(v / 10)
    running.labels(model, engine).set(2 + i)
    cache_usage.labels(model, engine).set(0.25 * (i + 1))
    config.labels(engine=engine).info({"block_size": "16", "cache_dtype": "auto",
                                       "gpu_memory_utilization": "0.9", "enable_prefix_caching": str(bool(i))})
    state.labels(engine=engine).state("running" if i == 0 else "sleeping")

start_http_server(int(sys.argv[1]), addr="127.0.0.1")
while True:
    time.sleep(3600)
