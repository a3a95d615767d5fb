"""The SambaNova router mapping: aliases, the users policy, ms → s for histograms and summaries."""

from __future__ import annotations

import hashlib
import hmac
from types import SimpleNamespace
from typing import Any

import pytest

from promotel.errors import MappingError
from promotel.exposition import parse_exposition
from promotel.mappings import MapResult, load_mapping
from promotel.model import HistogramPoint, Kind, Metric, SummaryPoint
from support.paths import TESTDATA

GOLDEN = TESTDATA / "golden" / "sambanova"
KEY = "router-test-key"


def source(**kw: Any) -> SimpleNamespace:
    base: dict[str, Any] = {"name": "router", "overrides": {}, "users": "keep", "pseudonymize_key": None,
                                "unmapped": "keep", "service_name": None}
    base.update(kw)
    return SimpleNamespace(**base)


def mapped(file: str, **kw: Any) -> MapResult:
    data = (GOLDEN / file).read_bytes()
    return load_mapping("sambanova").bind(source(**kw)).map(parse_exposition(data, None))


def metric(result: MapResult, name: str) -> Metric:
    found = [m for m in result.metrics if m.name == name]
    assert len(found) == 1, f"{name}: {[m.name for m in result.metrics]}"
    return found[0]


def attrs(point: Any) -> dict[str, Any]:
    return dict(point.attributes)


EXPECTED = [
    ("sambanova.router.queue.size", "{request}", Kind.SUM, False),
    ("sambanova.router.queue.max_wait", "s", Kind.GAUGE, False),
    ("sambanova.router.customer_queue.size", "{request}", Kind.SUM, False),
    ("sambanova.router.submitted.requests", "{request}", Kind.SUM, True),
    ("sambanova.router.completed.requests", "{request}", Kind.SUM, True),
    ("sambanova.router.responses", "{response}", Kind.SUM, True),
    ("sambanova.router.request.duration", "s", Kind.HISTOGRAM, False),
    ("sambanova.router.worker.utilization", "1", Kind.GAUGE, False),
    ("sambanova.router.user.active", "{user}", Kind.GAUGE, False),
]


@pytest.mark.parametrize("name,unit,kind,monotonic", EXPECTED)
def test_every_family(name: str, unit: str, kind: Kind, monotonic: bool) -> None:
    m = metric(mapped("histogram.prom"), name)
    assert (m.unit, m.kind, m.monotonic) == (unit, kind, monotonic) and m.points


def test_resource_and_passthrough() -> None:
    result = mapped("histogram.prom")
    assert result.resource == ()          # the identity is the pipeline's: service.name is the source's name
    # A text counter declared without _total passes through with it (the name OpenMetrics would give it), and
    # with the unit its name ends with.
    assert {m.name for m in result.metrics} == {e[0] for e in EXPECTED} | {"router_uptime_seconds_total"}
    uptime = metric(result, "router_uptime_seconds_total")
    assert (uptime.unit, uptime.kind, uptime.monotonic, uptime.prom_type) == ("s", Kind.SUM, True, "counter")


def test_histogram_ms_to_seconds_on_bounds_and_sum() -> None:
    p = metric(mapped("histogram.prom"), "sambanova.router.request.duration").points[0]
    assert isinstance(p, HistogramPoint)
    assert p.bounds == pytest.approx((0.1, 0.5, 2.5))
    assert p.counts == (50.0, 350.0, 500.0, 46.0) and p.count == 946.0     # counts are not scaled
    assert p.sum == pytest.approx(851.4)
    assert attrs(p) == {"gen_ai.request.model": "Meta-Llama-3.3-70B-Instruct", "sambanova.request.qos": "premium",
                        "enduser.id": "user-0001"}


def test_summary_ms_to_seconds_on_quantiles_and_sum() -> None:
    m = metric(mapped("summary.prom"), "sambanova.router.request.duration")
    assert (m.kind, m.unit) == (Kind.SUMMARY, "s")
    p = m.points[0]
    assert isinstance(p, SummaryPoint)
    assert [q for q, _ in p.quantiles] == [0.5, 0.9, 0.99]
    assert [v for _, v in p.quantiles] == pytest.approx([0.85, 2.1, 5.4005])
    assert p.sum == pytest.approx(110.0) and p.count == 118.0


def test_aliases_first_match_wins() -> None:
    result = mapped("summary.prom")
    q = metric(result, "sambanova.router.queue.size").points[0]
    assert attrs(q) == {"gen_ai.request.model": "Qwen3-32B", "sambanova.request.qos": "standard", "enduser.id": "acme"}
    sub = metric(result, "sambanova.router.submitted.requests").points[0]
    assert attrs(sub) == {"gen_ai.request.model": "Qwen3-32B", "sambanova.request.qos": "standard",
                          "enduser.id": "acme", "sambanova.request.status": "accepted"}
    util = metric(result, "sambanova.router.worker.utilization").points[0]
    assert attrs(util) == {"gen_ai.request.model": "Qwen3-32B", "sambanova.router.worker.state": "draining",
                           "sambanova.router.worker.pool": "pool-b"}
    assert util.value == 0.1


def test_http_code_int_route_and_non_numeric_code() -> None:
    result = mapped("summary.prom")
    points = metric(result, "sambanova.router.responses").points
    by_value = {p.value: attrs(p) for p in points}
    assert by_value[118.0] == {"http.response.status_code": 200, "http.route": "/v1/completions", "enduser.id": "acme"}
    assert type(by_value[118.0]["http.response.status_code"]) is int
    assert by_value[1.0] == {"sambanova.response.status_code": "OK", "http.route": "/v1/completions",
                             "enduser.id": "acme"}


def test_alias_precedence_when_several_are_present() -> None:
    text = ('# TYPE queue_length gauge\n'
            'queue_length{tenant="t",model_id="id-1",model="first",user="",customer="c"} 1\n')
    result = load_mapping("sambanova").bind(source()).map(parse_exposition(text, None))
    # model beats model_id (first in the list); user is empty so customer (next alias) wins, tenant is ignored.
    assert attrs(result.metrics[0].points[0]) == {"gen_ai.request.model": "first", "enduser.id": "c"}


def test_users_pseudonymize_is_keyed_and_stable() -> None:
    a = metric(mapped("histogram.prom", users="pseudonymize", pseudonymize_key=KEY), "sambanova.router.queue.size")
    b = metric(mapped("histogram.prom", users="pseudonymize", pseudonymize_key=KEY), "sambanova.router.queue.size")
    expected = hmac.new(KEY.encode(), b"user-0001", hashlib.sha256).hexdigest()[:32]
    p = next(attrs(x) for x in a.points if attrs(x)["gen_ai.request.model"] == "Meta-Llama-3.3-70B-Instruct")
    assert p["enduser.pseudo.id"] == expected and "enduser.id" not in p
    assert [x.attributes for x in a.points] == [x.attributes for x in b.points]      # a new mapper: same pseudonyms
    other = metric(mapped("histogram.prom", users="pseudonymize", pseudonymize_key="another"),
                   "sambanova.router.queue.size")
    assert {attrs(x)["enduser.pseudo.id"] for x in other.points}.isdisjoint(
        {attrs(x)["enduser.pseudo.id"] for x in a.points})


def test_users_drop_removes_every_user_alias() -> None:
    result = mapped("summary.prom", users="drop")
    for m in result.metrics:
        for p in m.points:
            keys = set(attrs(p))
            assert not keys & {"enduser.id", "enduser.pseudo.id", "user", "user_id", "customer", "customer_id",
                               "tenant"}, (m.name, keys)
    # two series that only differed by user would now collide; here every series keeps its other attributes
    assert attrs(metric(result, "sambanova.router.queue.size").points[0]) == {
        "gen_ai.request.model": "Qwen3-32B", "sambanova.request.qos": "standard"}


def test_pseudonymize_without_key_is_refused() -> None:
    with pytest.raises(MappingError, match="pseudonymize_key"):
        load_mapping("sambanova").bind(source(users="pseudonymize"))


def test_openmetrics_counters_found_without_total() -> None:
    result = mapped("summary.prom")
    assert metric(result, "sambanova.router.submitted.requests").monotonic is True
    assert metric(result, "sambanova.router.completed.requests").points[0].value == 118.0
    assert metric(result, "sambanova.router.user.active").points[0].value == 1.0
