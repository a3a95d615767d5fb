"""The ``sambanova`` mapping: the SambaNova inference router's ``/metrics``.

SambaNova documents each family's granularity ("per model, QoS, user") but not the literal label
keys, so every concept accepts a short list of aliases: the first key present with a non-empty value
wins and the other aliases of that concept are ignored. The simulator uses the first alias of each.
End-user ids are personal data: the source's ``users`` policy keeps, pseudonymizes or drops them.
Rows follow ``docs/mappings.md`` ("SambaNova inference router").
"""

from __future__ import annotations

from promotel.mappings.table import (
    Instrument,
    LabelRule,
    Row,
    Table,
    TablePlugin,
    check_table,
)

C, UDC, G = Instrument.COUNTER, Instrument.UPDOWNCOUNTER, Instrument.GAUGE

MODEL = ("model", "model_name", "model_id")
QOS = ("qos", "qos_class", "priority")
USER = ("user", "user_id", "customer", "customer_id", "tenant")
STATUS = ("status", "completion_status")
CODE = ("code", "status_code", "http_code")
ROUTE = ("route", "path", "endpoint")
STATE = ("state", "worker_state")
POOL = ("pool", "pool_name")

LABEL_RULES = (
    LabelRule(MODEL, "gen_ai.request.model"),
    LabelRule(QOS, "sambanova.request.qos"),
    LabelRule(USER, "enduser.id", special="user",
              note="personal data: users keep → enduser.id, pseudonymize → enduser.pseudo.id "
                   "(HMAC-SHA256 with the source's key), drop → removed"),
    LabelRule(STATUS, "sambanova.request.status"),
    LabelRule(CODE, "http.response.status_code", type="int", special="http_status",
              fallback="sambanova.response.status_code", note="int only when an integer 100–599"),
    LabelRule(ROUTE, "http.route"),
    LabelRule(STATE, "sambanova.router.worker.state"),
    LabelRule(POOL, "sambanova.router.worker.pool"),
)

ROWS = (
    Row("queue_length", "sambanova.router.queue.size", UDC, "{request}",
        "Number of requests currently queued in the router.", labels=("model", "qos", "user")),
    Row("queue_max_wait_seconds", "sambanova.router.queue.max_wait", G, "s",
        "Maximum age of any request currently in the queue.", labels=("model", "qos")),
    Row("customer_queue_length", "sambanova.router.customer_queue.size", UDC, "{request}",
        "Queue length per customer per model.", labels=("user", "model")),
    Row("submitted_total", "sambanova.router.submitted.requests", C, "{request}",
        "Total number of requests submitted to the router.", labels=("model", "qos", "user", "status")),
    Row("completed_total", "sambanova.router.completed.requests", C, "{request}",
        "Total number of completed requests, by completion status.", labels=("model", "qos", "user", "status")),
    Row("response_code_total", "sambanova.router.responses", C, "{response}",
        "Count of HTTP responses by status code.", labels=("code", "route", "user")),
    # Exposed as a histogram or as a summary; both map (bounds, sums and quantile values ÷ 1000).
    Row("response_duration_ms", "sambanova.router.request.duration", Instrument.DISTRIBUTION, "s",
        "End-to-end response latency.", scale=0.001, conversion="ms ÷ 1000 (bounds, sum, quantile values)",
        labels=("model", "qos", "user")),
    Row("connection_state_ratio", "sambanova.router.worker.utilization", G, "1",
        "Fraction of workers in each state.", conversion="– (already 0–1)", labels=("state", "model", "pool")),
    Row("active_users", "sambanova.router.user.active", G, "{user}",
        "Number of active users observed by the router.", labels=("user",)),
)

TABLE = check_table(Table(name="sambanova", rows=ROWS, label_rules=LABEL_RULES))

# No scrape policy: SambaNova documents no rate limit for the router's /metrics, so the generic defaults apply.
PLUGIN = TablePlugin(TABLE, default_service_name="sambanova-router")

__all__ = ["LABEL_RULES", "PLUGIN", "ROWS", "TABLE"]
