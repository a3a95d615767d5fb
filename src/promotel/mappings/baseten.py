"""The ``baseten`` mapping: Baseten's organization metrics export (``https://app.baseten.co/metrics``).

Every row is the table of ``docs/mappings.md`` ("Baseten"); the family descriptions are
Baseten's own (metrics support matrix). Request metrics keep vendor names on purpose: semconv's
``http.server.request.duration`` requires ``http.request.method`` and ``url.scheme``, which Baseten
does not report, and ``gen_ai.server.*`` requires ``gen_ai.operation.name``.
"""

from __future__ import annotations

from promotel.mappings import RequestBudget, ScrapePolicy
from promotel.mappings.table import (
    Instrument,
    LabelRule,
    Row,
    Table,
    TablePlugin,
    check_table,
)

C, UDC, G, H = Instrument.COUNTER, Instrument.UPDOWNCOUNTER, Instrument.GAUGE, Instrument.HISTOGRAM

# Label sets as documented per family (environment and rollout_phase are empty when the deployment
# has no environment; empty values are dropped).
DEPLOYMENT = ("model_id", "model_name", "deployment_id", "environment", "rollout_phase")
REQUEST = ("model_id", "model_name", "deployment_id", "status_code", "is_async", "environment", "rollout_phase")
REPLICA = ("model_id", "model_name", "deployment_id", "replica", "environment", "rollout_phase")
GPU = ("model_id", "model_name", "deployment_id", "replica", "gpu", "environment", "rollout_phase")
POD = ("model_id", "model_name", "deployment_id", "condition", "environment", "rollout_phase")

MIB = 1_048_576.0

LABEL_RULES = (
    LabelRule(("model_id",), "baseten.model.id"),
    LabelRule(("model_name",), "baseten.model.name"),
    LabelRule(("deployment_id",), "baseten.deployment.id"),
    LabelRule(("environment",), "deployment.environment.name", note="dropped when empty"),
    LabelRule(("rollout_phase",), "baseten.deployment.rollout_phase", note="promoting / stable; dropped when empty"),
    LabelRule(("status_code",), "http.response.status_code", type="int", special="http_status",
              fallback="baseten.response.status_code", error_type=True,
              note="int only when an integer 100–599; error.type = the code when ≥ 500"),
    LabelRule(("is_async",), "baseten.request.async", type="bool", note='"true" / "false"'),
    LabelRule(("replica",), "baseten.replica.id"),
    LabelRule(("gpu",), "hw.id", special="hw_gpu", note="plus hw.type=gpu, required by hw.gpu.* metrics"),
    LabelRule(("condition",), "baseten.pod.ready", note="true / false / unknown"),
)

ROWS = (
    Row("baseten_inference_requests_total", "baseten.inference.requests", C, "{request}",
        "Cumulative number of requests to the model.", labels=REQUEST),
    Row("baseten_end_to_end_response_time_seconds", "baseten.inference.request.duration", H, "s",
        "End-to-end response time in seconds.", labels=REQUEST),
    Row("baseten_time_to_first_byte_seconds", "baseten.inference.time_to_first_byte", H, "s",
        "Time to first byte/write in seconds. Proxy for time-to-first-token (TTFT).", labels=REQUEST),
    Row("baseten_request_size_bytes", "baseten.inference.request.size", H, "By",
        "Request size in bytes. Proxy for input tokens.", labels=REQUEST),
    Row("baseten_response_size_bytes", "baseten.inference.response.size", H, "By",
        "Response size in bytes. Proxy for generated tokens.", labels=REQUEST),
    Row("baseten_time_in_async_queue_seconds", "baseten.async.request.time_in_queue", H, "s",
        "Time async requests spend queued before processing.", labels=DEPLOYMENT),
    Row("baseten_async_queue_size", "baseten.async.queue.size", UDC, "{request}",
        "Number of queued async requests over time.", labels=DEPLOYMENT),
    Row("baseten_concurrent_requests", "baseten.inference.request.active", UDC, "{request}",
        "Number of in-progress concurrent inference requests for a deployment, including requests "
        "waiting in the queue.", labels=DEPLOYMENT),
    Row("baseten_ongoing_websocket_connections", "baseten.websocket.connection.active", UDC, "{connection}",
        "Number of ongoing websocket connections.", labels=DEPLOYMENT),
    # Two families merge into one metric, told apart by baseten.replica.state.
    Row("baseten_replicas_active", "baseten.replica.count", UDC, "{replica}",
        "Number of replicas, by state (active: ready to serve; starting: waiting for resources or "
        "loading the model).", constants=(("baseten.replica.state", "active"),), labels=DEPLOYMENT,
        conversion="merged with baseten_replicas_starting"),
    Row("baseten_replicas_starting", "baseten.replica.count", UDC, "{replica}",
        "Number of replicas, by state (active: ready to serve; starting: waiting for resources or "
        "loading the model).", constants=(("baseten.replica.state", "starting"),), labels=DEPLOYMENT,
        conversion="merged with baseten_replicas_active"),
    Row("baseten_container_cpu_usage_seconds_total", "container.cpu.time", C, "s",
        "Cumulative CPU time consumed by the container in core-seconds.", labels=REPLICA),
    Row("baseten_container_cpu_memory_working_set_bytes", "container.memory.working_set", UDC, "By",
        "Working set memory usage of the container in bytes.", labels=REPLICA),
    Row("baseten_gpu_memory_used", "hw.gpu.memory.usage", UDC, "By", "GPU memory used.",
        scale=MIB, conversion="MiB × 1048576", labels=GPU),
    Row("baseten_gpu_utilization", "hw.gpu.utilization", G, "1", "GPU utilization as a fraction (0–1).",
        scale=0.01, conversion="percent ÷ 100", labels=GPU),
    Row("baseten_container_restarts_total", "baseten.container.restarts", C, "{restart}",
        "Cumulative number of times the model container has been restarted.", labels=DEPLOYMENT),
    Row("baseten_pod_readiness", "baseten.pod.count", UDC, "{pod}",
        "Number of pods grouped by their Kubernetes Ready condition.", labels=POD),
    # Beyond the seed, from Baseten's docs.
    Row("baseten_async_webhook_requests_total", "baseten.async.webhook.requests", C, "{request}",
        "Cumulative number of async webhook deliveries.", labels=DEPLOYMENT + ("status_code",)),
    Row("baseten_async_webhook_latency_seconds", "baseten.async.webhook.duration", H, "s",
        "Latency of async webhook deliveries.", labels=DEPLOYMENT),
    Row("baseten_llm_input_tokens_total", "baseten.llm.input_tokens", C, "{token}",
        "Cumulative number of input (prompt) tokens.", labels=DEPLOYMENT),
    Row("baseten_llm_output_tokens_total", "baseten.llm.output_tokens", C, "{token}",
        "Cumulative number of output (generated) tokens.", labels=DEPLOYMENT),
    Row("baseten_llm_input_tokens_per_request", "baseten.llm.input_tokens_per_request", H, "{token}",
        "Input tokens per request.", labels=DEPLOYMENT),
    Row("baseten_llm_output_tokens_per_request", "baseten.llm.output_tokens_per_request", H, "{token}",
        "Output tokens per request.", labels=DEPLOYMENT),
    # Any other per-request token histogram Baseten adds maps the same way ("*" = the same text).
    Row("baseten_llm_*_per_request", "baseten.llm.*_per_request", H, "{token}",
        "Tokens per request.", labels=DEPLOYMENT),
    Row("baseten_llm_kv_cache_hit_rate", "baseten.llm.kv_cache.hit_rate", H, "1",
        "KV-cache hit rate per request (0–1).", labels=DEPLOYMENT),
    Row("baseten_llm_in_flight_tokens", "baseten.llm.in_flight_tokens", UDC, "{token}",
        "Tokens currently being processed.", labels=DEPLOYMENT),
    Row("baseten_llm_num_requests", "baseten.llm.request.active", UDC, "{request}",
        "Requests currently being processed by the LLM engine.", labels=DEPLOYMENT),
)

TABLE = check_table(Table(name="baseten", rows=ROWS, label_rules=LABEL_RULES))

# Baseten's metrics export: "6 requests per minute per organization" (HTTP 429 beyond); an organization is
# one API key. Its data refreshes every 30 s, so 60 s loses little and leaves most of the budget for other
# sources or a `promotel check` with the same key; at 10 s one source alone uses the whole budget.
SCRAPE_POLICY = ScrapePolicy(
    vendor="Baseten",
    default_interval=60.0,
    min_interval=10.0,
    budget=RequestBudget(requests=6, window=60.0, per="organization"),
    auth_hint="Baseten expects 'Authorization: Api-Key <key>' (auth.api_key)",
    note="its data refreshes every 30s",
)

PLUGIN = TablePlugin(TABLE, default_service_name="baseten", scrape_policy=SCRAPE_POLICY)

__all__ = ["LABEL_RULES", "PLUGIN", "ROWS", "SCRAPE_POLICY", "TABLE"]
