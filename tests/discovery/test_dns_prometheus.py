"""``dns_sd_configs`` in a running ``promotel run`` and in the real Prometheus (Debian's 2.42), same job, same DNS.

A real DNS server (dnsmasq) answers on port 53 of a loopback address of its own; Prometheus, ``promotel run``
and ``promotel targets`` each run in a private mount namespace whose /etc/resolv.conf names it
(tests/support/resolvconf.py): both resolve through the system resolver, as in production, and nothing
asks the machine's own DNS. This needs root; the tests fail, saying so, without it.

The job: A (three addresses, one dropped by ``relabel_configs``), SRV (three records, one refused by a
``keep`` on ``__meta_dns_srv_record_target``) and AAAA (``::1``) names, ``port``, a one-second
``refresh_interval``, and relabeling that copies ``__meta_dns_name`` and the SRV target and port into target
labels. The targets are exposition servers on 127.0.0.x (and ::1), all on one port; SRV records name hosts
that dnsmasq also resolves, so both scrape them by name.

One timeline, recorded once per module by the fixture, asserted by the tests:

1. initial records: Prometheus's ``/api/v1/targets`` (labels, scrape URL and discovered labels of the active
   targets; discovered labels of the dropped ones) equals ``promotel targets --format json`` and the running
   bridge's ``/status``; the bridge scrapes each target as its own instance (``up``, ``service.instance.id``);
2. changed records (dnsmasq restarted): both follow after a refresh; the targets whose records went get
   staleness markers in the bridge and leave ``/status``;
3. the DNS server stopped: both keep the last good targets; the bridge reports the failure in ``/status``
   and its log, ``promotel targets`` on stderr with exit status 1.
"""

from __future__ import annotations

import functools
import json
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.bridge import PROMOTEL, start_bridge, stop_bridge
from support.collector import free_port
from support.dnsmasq import Dnsmasq
from support.prometheus import get_json, running_prometheus
from support.resolvconf import free_port53_address, require_root, with_resolv_conf, write_resolv_conf
from support.sink import OTLPSink, attrs
from support.target import ExpositionServer

JOB = "dns"
NO_RECORDED_VALUE = 1       # OTLP DataPointFlags: a staleness marker
FIRST_DEADLINE = 20.0       # Prometheus hands discovered targets to its scrape manager on a 5-second tick
CHANGE_DEADLINE = 15.0      # a 1 s refresh, then that tick
HOSTS = {"a1": "127.0.0.11", "a2": "127.0.0.12", "a3": "127.0.0.13", "a4": "127.0.0.14",
         "srv1": "127.0.0.15", "srv2": "127.0.0.16", "v6": "::1"}
SERVED = ("a1", "a2", "a4", "srv1", "srv2", "v6")    # a3 is dropped by relabeling: nothing listens there
BODY = "# TYPE demo_requests_total counter\ndemo_requests_total{path=\"/\"} 7\n"

RELABEL = [
    {"action": "drop", "source_labels": ["__address__"], "regex": "127\\.0\\.0\\.13:\\d+"},
    {"action": "keep", "source_labels": ["__meta_dns_name", "__meta_dns_srv_record_target"],
     "regex": "(web|v6)\\.test;|_prom\\._tcp\\.test;srv\\d\\.test\\."},
    {"source_labels": ["__meta_dns_name"], "target_label": "dns_name"},
    {"source_labels": ["__meta_dns_srv_record_target", "__meta_dns_srv_record_port"], "regex": "(.+)\\.;(\\d+)",
     "target_label": "srv", "replacement": "$1:$2"},
]


def _records(port: int, a: tuple[str, ...], srv: tuple[str, ...], *, v6: bool) -> list[str]:
    """dnsmasq options: web.test's A records, _prom._tcp.test's SRV records (each on ``port``), v6.test's AAAA
    (without it the name does not exist: NXDOMAIN, since dnsmasq serves test as a local domain), and the
    hosts the SRV records name."""
    return [*(f"--host-record=web.test,{HOSTS[h]}" for h in a),
            *(["--host-record=v6.test,::1"] if v6 else []),
            "--host-record=srv1.test,127.0.0.15", "--host-record=srv2.test,127.0.0.16",
            "--host-record=other.test,127.0.0.17",
            *(f"--srv-host=_prom._tcp.test,{target}.test,{port},0,10" for target in srv)]


def _job(port: int) -> dict[str, Any]:
    return {"job_name": JOB, "scrape_interval": "1s", "scrape_timeout": "500ms",
            "dns_sd_configs": [{"names": ["web.test"], "type": "A", "port": port, "refresh_interval": "1s"},
                               {"names": ["_prom._tcp.test"], "refresh_interval": "1s"},
                               {"names": ["v6.test"], "type": "AAAA", "port": port, "refresh_interval": "1s"}],
            "relabel_configs": RELABEL}


def _start_servers() -> tuple[int, list[ExpositionServer]]:
    """One exposition server per served host, all on one port (A and AAAA records share the job's ``port``)."""
    for _ in range(20):
        port = free_port()
        started: list[ExpositionServer] = []
        try:
            for name in SERVED:
                started.append(ExpositionServer(BODY).start(HOSTS[name], port))
        except OSError:
            for server in started:
                server.stop()
            continue
        return port, started
    raise RuntimeError("no port free on every target address")


def _key(value: object) -> str:
    return json.dumps(value, sort_keys=True)


View = tuple[tuple[str, ...], tuple[str, ...]]


def prometheus_view(data: dict[str, Any] | None) -> View:
    """(active targets: labels, URL, discovered labels; dropped targets: discovered labels), sorted."""
    data = data or {}
    active = [t for t in data.get("activeTargets", []) if t["scrapePool"] == JOB]
    return (tuple(sorted(_key([t["labels"], t["scrapeUrl"], t["discoveredLabels"]]) for t in active)),
            tuple(sorted(_key(t["discoveredLabels"]) for t in data.get("droppedTargets", []))))


def promotel_view(targets: list[dict[str, Any]]) -> View:
    """The same of ``promotel targets --format json`` or ``/status``'s source targets."""
    return (tuple(sorted(_key([t["labels"], t["url"], t["discovered_labels"]]) for t in targets
                         if t["state"] == "active")),
            tuple(sorted(_key(t["discovered_labels"]) for t in targets if t["state"] != "active")))


def instances(view: View) -> list[str]:
    return sorted(json.loads(t)[0]["instance"] for t in view[0])


class Run:
    """The processes of the timeline and what a phase looks like in each."""

    def __init__(self, tmp: Path, port: int, resolv_conf: Path, health_port: int, sink: OTLPSink,
                 prometheus_targets: Callable[[], Any], log: Path) -> None:
        self.tmp, self.port, self.resolv_conf, self.health_port = tmp, port, resolv_conf, health_port
        self.sink, self.prometheus_targets, self.log = sink, prometheus_targets, log
        self.config = tmp / "promotel.yaml"

    def status(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = get_json(f"http://127.0.0.1:{self.health_port}/status")
            return data
        except OSError:
            return {}

    def cli_targets(self) -> tuple[int, list[dict[str, Any]], str]:
        """``promotel targets -c CONFIG --format json`` in the namespace: (exit status, targets, stderr)."""
        proc = subprocess.run(with_resolv_conf([*PROMOTEL, "targets", "-c", str(self.config), "--format", "json"],
                                               self.resolv_conf),
                              capture_output=True, text=True, timeout=60, check=False)
        listed: list[dict[str, Any]] = json.loads(proc.stdout) if proc.stdout.strip() else []
        return proc.returncode, listed, proc.stderr

    def snapshot(self) -> dict[str, Any]:
        status = self.status()
        code, cli, stderr = self.cli_targets()
        return {"prometheus": self.prometheus_targets(), "status": status, "cli": cli, "cli_code": code,
                "cli_stderr": stderr}


def _source(status: dict[str, Any]) -> dict[str, Any]:
    source: dict[str, Any] = status.get("sources", {}).get(JOB, {})
    return source


def points(sink: OTLPSink, name: str, instance: str) -> list[Any]:
    out: list[Any] = []
    for resource, metric in sink.metrics():
        if metric.name == name and resource.get("service.instance.id") == instance:
            out += list(getattr(metric, metric.WhichOneof("data")).data_points)
    return out


def stale(sink: OTLPSink, addr: dict[str, str]) -> set[str]:
    """The hosts whose series got a staleness marker so far."""
    return {name for name, address in addr.items()
            if any(p.flags & NO_RECORDED_VALUE for p in points(sink, "demo_requests_total", address))}


def _until(check: Callable[[], bool], deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    return check()


@pytest.fixture(scope="module")
def timeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require_root("The DNS discovery tests against Prometheus and `promotel run`")
    tmp = tmp_path_factory.mktemp("dns-prometheus")
    dns_address = free_port53_address()
    resolv_conf = write_resolv_conf(tmp / "resolv.conf", dns_address)
    in_namespace = functools.partial(with_resolv_conf, resolv_conf=resolv_conf)
    port, servers = _start_servers()
    sink = OTLPSink().start()
    # Each target's address (its instance): SRV targets are the names the records give.
    addr = {name: (f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}") for name, ip in HOSTS.items()}
    addr.update({name: f"{name}.test:{port}" for name in ("srv1", "srv2")})
    first = _records(port, ("a1", "a2", "a3"), ("srv1", "srv2", "other"), v6=True)
    second = _records(port, ("a1", "a3", "a4"), ("srv1", "other"), v6=False)
    out: dict[str, Any] = {"port": port, "addr": addr, "phases": {}, "sink": sink, "dns_address": dns_address}
    job = _job(port)
    health_port = free_port()
    source = {"name": JOB, **{k: v for k, v in job.items() if k != "job_name"}}
    try:
        with Dnsmasq(first, tmp, address=dns_address, port=53) as dns_server, \
                running_prometheus(tmp, {"scrape_configs": [job]}, wrap=in_namespace) as prometheus:
            run = Run(tmp, port, resolv_conf, health_port, sink, lambda: prometheus.get("targets"), tmp / "promotel.log")
            run.config.write_text(yaml.safe_dump({
                "sources": [source],
                "exporters": [{"name": "sink", "endpoint": f"http://127.0.0.1:{sink.grpc_port}"}],
                "self_telemetry": {"enabled": False}, "state_dir": str(tmp / "state"),
                "health": {"listen": f"127.0.0.1:{health_port}"}}, sort_keys=False))
            run.config.chmod(0o600)
            bridge = start_bridge(run.config, run.log, wrap=in_namespace)
            log_offset: int | None = None    # where the log stood when the DNS server was stopped
            try:
                def settled(want: list[str], gone: tuple[str, ...] = ()) -> bool:
                    """Prometheus and the bridge list exactly ``want`` as active, the bridge has scraped each
                    of them, and the series of each target in ``gone`` got their staleness markers."""
                    def check() -> bool:
                        targets = _source(run.status()).get("targets", [])
                        return (instances(prometheus_view(prometheus.get("targets"))) == want
                                and instances(promotel_view(targets)) == want
                                and all(t.get("last_scrape") for t in targets if t["state"] == "active")
                                and all(any(p.flags & NO_RECORDED_VALUE
                                            for p in points(sink, "demo_requests_total", addr[g])) for g in gone))
                    return prometheus.wait_for(check, FIRST_DEADLINE if not gone else CHANGE_DEADLINE)

                # 1. The first records.
                want = sorted(addr[n] for n in ("a1", "a2", "srv1", "srv2", "v6"))
                out["phases"]["initial"] = {"settled": settled(want), **run.snapshot()}
                # 2. Other records: web.test loses 127.0.0.12 and gains 127.0.0.14, the SRV name loses srv2,
                #    v6.test is gone (NXDOMAIN: a valid answer with no targets, unlike a failure).
                dns_server.restart(second)
                want = sorted(addr[n] for n in ("a1", "a4", "srv1"))
                out["phases"]["changed"] = {"settled": settled(want, gone=("a2", "srv2", "v6")),
                                            **run.snapshot(), "stale": stale(sink, addr)}
                # 3. The DNS server goes away. (A refresh in the instant dnsmasq restarted may have failed
                #    already: the failures are counted from here.)
                errors_before = {d["name"]: d["errors_total"] for d in _source(run.status())["discovery"]}
                prometheus_before = _prometheus_failures(prometheus.api)
                log_offset = run.log.stat().st_size
                dns_server.stop()
                # Two failed refreshes of each of the bridge's discoverers (each waits out its query timeout),
                # and several of Prometheus's: no target may go meanwhile.
                failing = _until(lambda: all(d["problems"] and d["errors_total"] >= errors_before[d["name"]] + 2
                                             for d in _source(run.status()).get("discovery", []))
                                 and _prometheus_failures(prometheus.api) >= prometheus_before + 6, CHANGE_DEADLINE)
                out["phases"]["down"] = {"settled": failing, "errors_before": errors_before, **run.snapshot()}
            finally:
                out["exit_code"] = stop_bridge(bridge)
                out["log"] = run.log.read_text()
                out["log_down"] = run.log.read_bytes()[log_offset:].decode() if log_offset is not None else ""
        yield out
    finally:
        sink.stop()
        for server in servers:
            server.stop()


def _prometheus_failures(api: str) -> float:
    """Prometheus's own count of failed DNS SD lookups (its /metrics)."""
    try:
        with urllib.request.urlopen(api.removesuffix("/api/v1") + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("prometheus_sd_dns_lookup_failures_total "):
            return float(line.split()[1])
    return 0.0


@pytest.mark.parametrize("phase", ["initial", "changed"])
def test_targets_equal_prometheus(timeline: dict[str, Any], phase: str) -> None:
    got = timeline["phases"][phase]
    addr = timeline["addr"]
    assert got["settled"], f"Prometheus and the bridge did not settle on the {phase} records: {got}"
    theirs = prometheus_view(got["prometheus"])
    assert got["cli_code"] == 0, got["cli_stderr"]
    assert promotel_view(got["cli"]) == theirs
    assert promotel_view(_source(got["status"])["targets"]) == theirs
    # What the job makes of the records, as both see it.
    active = {json.loads(t)[0]["instance"]: json.loads(t) for t in theirs[0]}
    names = ("a1", "a2", "srv1", "srv2", "v6") if phase == "initial" else ("a1", "a4", "srv1")
    assert sorted(active) == sorted(addr[n] for n in names)
    labels, url, discovered = active[addr["srv1"]]
    assert labels == {"instance": addr["srv1"], "job": JOB, "dns_name": "_prom._tcp.test",
                      "srv": f"srv1.test:{timeline['port']}"}
    assert url == f"http://srv1.test:{timeline['port']}/metrics"
    assert discovered["__meta_dns_srv_record_target"] == "srv1.test."
    assert discovered["__meta_dns_srv_record_port"] == str(timeline["port"])
    assert active[addr["a1"]][0] == {"instance": addr["a1"], "job": JOB, "dns_name": "web.test"}
    if phase == "initial":
        assert active[addr["v6"]] == [{"instance": addr["v6"], "job": JOB, "dns_name": "v6.test"},
                                      f"http://[::1]:{timeline['port']}/metrics",
                                      {"__address__": addr["v6"], "__meta_dns_name": "v6.test",
                                       "__metrics_path__": "/metrics", "__scheme__": "http",
                                       "__scrape_interval__": "1s", "__scrape_timeout__": "500ms", "job": JOB}]
    dropped = sorted(json.loads(d)["__address__"] for d in theirs[1])
    assert dropped == sorted([addr["a3"], f"other.test:{timeline['port']}"])


def test_bridge_scrapes_each_discovered_target_as_its_own_instance(timeline: dict[str, Any]) -> None:
    sink: OTLPSink = timeline["sink"]
    addr = timeline["addr"]
    for name in ("a1", "a2", "a4", "srv1", "srv2", "v6"):
        ups = points(sink, "up", addr[name])
        assert ups and ups[0].as_double == 1.0, (name, timeline["log"])
        [first, *_] = points(sink, "demo_requests_total", addr[name])
        assert attrs(first.attributes)["dns_name"] in ("web.test", "_prom._tcp.test", "v6.test")
    resources = {r.get("service.instance.id"): r for r, _ in sink.metrics()}
    assert resources[addr["srv2"]]["service.name"] == JOB
    assert not points(sink, "up", addr["a3"])          # dropped by relabeling: never scraped
    assert timeline["exit_code"] == 0
    assert "Traceback" not in timeline["log"]


def test_removed_records_targets_go_stale_and_leave_status(timeline: dict[str, Any]) -> None:
    addr = timeline["addr"]
    # When the records had changed: the gone targets' series ended, the kept and new ones' did not. (srv1 is
    # left out: scraping it resolves its name, and a scrape in the instant dnsmasq restarted fails, rightly.)
    assert timeline["phases"]["changed"]["stale"] - {"srv1"} == {"a2", "srv2", "v6"}
    status = timeline["phases"]["changed"]["status"]
    scraped = " ".join(status["targets"])                # runner names: "<source> <url>"
    assert not any(f"//{addr[gone]}/" in scraped for gone in ("a2", "srv2", "v6"))
    assert f"//{addr['a4']}/" in scraped
    assert "is gone; its series are marked stale" in timeline["log"]


def test_dns_down_keeps_last_good_targets_and_reports_the_failure(timeline: dict[str, Any]) -> None:
    down, changed = timeline["phases"]["down"], timeline["phases"]["changed"]
    assert down["settled"], f"the failures were not reported: {_source(down['status']).get('discovery')}"
    # Both keep the last good targets.
    assert prometheus_view(down["prometheus"]) == prometheus_view(changed["prometheus"])
    assert promotel_view(_source(down["status"])["targets"]) == promotel_view(_source(changed["status"])["targets"])
    # The bridge says which name failed, per discoverer, in /status and in its log.
    discovery = _source(down["status"])["discovery"]
    assert [d["name"] for d in discovery] == ["dns_sd_configs[0]", "dns_sd_configs[1]", "dns_sd_configs[2]"]
    for entry, name in zip(discovery, ("web.test", "_prom._tcp.test", "v6.test")):
        assert entry["mechanism"] == "dns" and entry["errors_total"] >= down["errors_before"][entry["name"]] + 2
        assert entry["problems"][0].startswith(f"could not resolve '{name}'"), entry
    assert [entry["targets"] for entry in discovery] == [3, 2, 0]    # the last good lists
    # Logged once per discoverer though every refresh failed (the text does not change from one to the next).
    assert timeline["log_down"].count("dns_sd_configs[0]: could not resolve 'web.test'") == 1, timeline["log_down"]
    # Targets named by SRV records need DNS to be scraped: both fail them (and the bridge ends their series).
    addr = timeline["addr"]
    health = {t["labels"]["instance"]: t["health"] for t in down["prometheus"]["activeTargets"]}
    assert health == {addr["a1"]: "up", addr["a4"]: "up", addr["srv1"]: "down"}
    scrapes = {t["labels"]["instance"]: t["last_scrape"]["error"] for t in _source(down["status"])["targets"]
               if t["state"] == "active"}
    assert [name for name, error in scrapes.items() if error is not None] == [addr["srv1"]]
    assert stale(timeline["sink"], addr) == {"a2", "srv2", "v6", "srv1"}     # a1 and a4 go on
    assert "keeping its last good targets" in timeline["log"]
    # A one-off listing has no last good list: no targets, the failure on stderr, exit status 1.
    assert down["cli_code"] == 1 and down["cli"] == []
    assert "could not resolve 'web.test'" in down["cli_stderr"]
