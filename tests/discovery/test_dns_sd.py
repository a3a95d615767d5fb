"""dns_sd_configs against a real DNS server on loopback (dnsmasq, started by the tests).

A, AAAA, SRV, MX and CNAME answers; records changing between refreshes (dnsmasq restarted with other
records); the server going away (each name keeps its last good targets, the failure is reported)
and coming back; NXDOMAIN (the name's targets go: a valid answer); the resolver's search list.
Queries go only to 127.0.0.1 on the port dnsmasq listens on."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.asyncresolver
import dns.name
import dns.nameserver
import pytest
from pydantic import ValidationError

from promotel.discovery.dns_sd import DNSDiscoverer, DNSSDConfig, name_list, parse_nameserver
from promotel.discovery.targets import DiscoveryManager, Refresh, ScrapeDefaults, TargetGroup, discovered_labels
from promotel.errors import DiscoveryError
from support.dnsmasq import Dnsmasq

TIMEOUT = 0.5  # per query: the "server down" refreshes wait this long
RECORDS = [
    "--host-record=web1.test,127.0.0.11,fd00::11",
    "--host-record=web2.test,127.0.0.12",
    "--host-record=multi.test,127.0.0.21",
    "--host-record=multi.test,127.0.0.22",
    "--host-record=mapped.test,::ffff:127.0.0.31",
    "--srv-host=_prom._tcp.test,web1.test,9100,0,10",
    "--srv-host=_prom._tcp.test,web2.test,9200,1,10",
    "--mx-host=mx.test,mail1.test,10",
    "--cname=alias.test,web1.test",
]
EMPTY_META = {"__meta_dns_srv_record_target": "", "__meta_dns_srv_record_port": "",
              "__meta_dns_mx_record_target": "", "__meta_dns_ns_record_target": ""}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Dnsmasq]:
    with Dnsmasq(RECORDS, tmp_path) as running:
        yield running


def _config(**data: object) -> DNSSDConfig:
    return DNSSDConfig.model_validate(data)


def _refresh(server: Dnsmasq, **data: object) -> Refresh:
    return asyncio.run(DNSDiscoverer(_config(**data), nameservers=[server.nameserver], timeout=TIMEOUT).refresh())


def _targets(result: Refresh) -> list[dict[str, str]]:
    return [dict(t) for g in result.groups for t in g.targets]


def test_config() -> None:
    cfg = _config(names=["_prom._tcp.test"])
    assert (cfg.record_type, cfg.port, cfg.refresh_interval) == ("SRV", 0, 30.0)
    assert _config(names=["a.test"], type="aaaa", port=9100, refresh_interval="1m").record_type == "AAAA"
    cases: list[tuple[dict[str, object], str]] = [
        ({}, "DNS-SD config must contain at least one SRV record name"),
        ({"names": []}, "DNS-SD config must contain at least one SRV record name"),
        ({"names": ["a.test"], "type": "TXT"}, "invalid DNS-SD records type TXT"),
        ({"names": ["a.test"], "type": "A"}, "a port is required in DNS-SD configs for all record types except SRV"),
        ({"names": ["a.test"], "type": "A", "port": "80"}, "Input should be a valid integer"),
        ({"names": ["a.test"], "refresh_interval": "30"}, "not a valid duration string"),
        ({"names": ["a.test"], "server": "x"}, "Extra inputs are not permitted"),
    ]
    for data, message in cases:
        with pytest.raises(ValidationError) as info:
            DNSSDConfig.model_validate(data)
        assert message in str(info.value), data


def test_parse_nameserver_and_name_list() -> None:
    assert parse_nameserver("10.0.0.2") == ("10.0.0.2", 53)
    assert parse_nameserver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_nameserver("fd00::2") == ("fd00::2", 53)
    assert parse_nameserver("[fd00::2]:5353") == ("fd00::2", 5353)
    for bad in ("dns.example", "127.0.0.1:0", "[fd00::2]x"):
        with pytest.raises(ValueError):
            parse_nameserver(bad)
    # Go's resolver order (miekg/dns NameList): enough labels → the name first; else after the suffixes.
    assert name_list("a.b.", ["x.", "y"], 1) == ["a.b."]
    assert name_list("a.b", ["x.", "y"], 1) == ["a.b.", "a.b.x.", "a.b.y."]
    assert name_list("a", ["x.", "y"], 1) == ["a.x.", "a.y.", "a."]
    assert name_list("a.b", ["x."], 2) == ["a.b.x.", "a.b."]
    assert name_list("a", [], 1) == ["a."]


def test_srv(server: Dnsmasq) -> None:
    result = _refresh(server, names=["_prom._tcp.test"])
    assert result.problems == ()
    assert [g.source for g in result.groups] == ["_prom._tcp.test"]
    assert sorted(_targets(result), key=lambda t: t["__address__"]) == [
        {**EMPTY_META, "__address__": "web1.test:9100", "__meta_dns_name": "_prom._tcp.test",
         "__meta_dns_srv_record_target": "web1.test.", "__meta_dns_srv_record_port": "9100"},
        {**EMPTY_META, "__address__": "web2.test:9200", "__meta_dns_name": "_prom._tcp.test",
         "__meta_dns_srv_record_target": "web2.test.", "__meta_dns_srv_record_port": "9200"},
    ]


def test_a_aaaa_mx_cname(server: Dnsmasq) -> None:
    a = _refresh(server, names=["multi.test", "web1.test", "alias.test"], type="A", port=9100)
    assert [(g.source, g.addresses) for g in a.groups] == [
        ("multi.test", ("127.0.0.21:9100", "127.0.0.22:9100")),
        ("web1.test", ("127.0.0.11:9100",)),
        ("alias.test", ("127.0.0.11:9100",)),  # the CNAME record is skipped, the A record after it used
    ]
    assert _targets(a)[0] == {**EMPTY_META, "__address__": "127.0.0.21:9100", "__meta_dns_name": "multi.test"}
    aaaa = _refresh(server, names=["web1.test", "mapped.test", "web2.test"], type="AAAA", port=9100)
    # IPv6 in brackets; an IPv4-mapped address printed as Go prints it; a name without AAAA: no targets.
    assert [g.addresses for g in aaaa.groups] == [("[fd00::11]:9100",), ("127.0.0.31:9100",), ()]
    mx = _refresh(server, names=["mx.test"], type="MX", port=25)
    assert _targets(mx) == [{**EMPTY_META, "__address__": "mail1.test:25", "__meta_dns_name": "mx.test",
                             "__meta_dns_mx_record_target": "mail1.test."}]
    # The per-target meta labels are discovered labels; the empty ones are no labels.
    [lset] = discovered_labels(mx.groups[0], ScrapeDefaults(job="mail", scrape_interval=60, scrape_timeout=10))
    assert lset == {"__address__": "mail1.test:25", "__meta_dns_mx_record_target": "mail1.test.",
                    "__meta_dns_name": "mx.test", "__metrics_path__": "/metrics", "__scheme__": "http",
                    "__scrape_interval__": "1m", "__scrape_timeout__": "10s", "job": "mail"}


def test_nxdomain_is_an_empty_answer_and_refused_a_failure(server: Dnsmasq) -> None:
    result = _refresh(server, names=["nope.test", "outside.example"], type="A", port=80)
    assert [(g.source, g.addresses) for g in result.groups] == [("nope.test", ())]
    [problem] = result.problems
    assert problem.startswith("could not resolve 'outside.example': outside.example.: ")
    assert "REFUSED" in problem


def test_a_failure_reads_the_same_at_every_refresh(server: Dnsmasq, caplog: pytest.LogCaptureFixture) -> None:
    """The manager logs a problem again only when its text changes: a server that stopped answering gives the
    same text at every refresh (no measured durations in it), so the warning is logged once."""
    discoverer = DNSDiscoverer(_config(names=["web1.test"], type="A", port=80), nameservers=[server.nameserver],
                               timeout=TIMEOUT)
    manager = DiscoveryManager([discoverer], job="dns")
    assert [g.addresses for g in asyncio.run(manager.refresh_once())] == [("127.0.0.11:80",)]
    server.stop()
    with caplog.at_level(logging.WARNING, logger="promotel.discovery"):
        for _ in range(2):
            assert [g.addresses for g in asyncio.run(manager.refresh_once())] == [("127.0.0.11:80",)]  # kept
    [status] = manager.status()
    assert status.errors_total == 2
    assert status.problems == (f"could not resolve 'web1.test': web1.test.: no server answered in time "
                               f"(server Do53:127.0.0.1@{server.port} did not answer within {TIMEOUT:g}s)",)
    assert len([r for r in caplog.records if "could not resolve" in r.getMessage()]) == 1


def test_search_list(server: Dnsmasq) -> None:
    def resolver() -> dns.asyncresolver.Resolver:
        r = dns.asyncresolver.Resolver(configure=False)
        r.nameservers = [dns.nameserver.Do53Nameserver("127.0.0.1", server.port)]
        r.search = [dns.name.from_text("test.")]
        return r

    discoverer = DNSDiscoverer(_config(names=["web2", "nope"], type="A", port=80), resolver_factory=resolver,
                               timeout=TIMEOUT)
    result = asyncio.run(discoverer.refresh())
    # "web2" → web2.test. answers; "nope" → nope.test. is NXDOMAIN and "nope." is REFUSED: a failure.
    assert [(g.source, g.addresses) for g in result.groups] == [("web2", ("127.0.0.12:80",))]
    [problem] = result.problems
    assert problem.startswith("could not resolve 'nope': nope.: ")


def test_records_change_and_server_down_during_a_run(server: Dnsmasq) -> None:
    cfg = _config(names=["_prom._tcp.test", "multi.test"], type="SRV", refresh_interval="100ms")
    a_cfg = _config(names=["multi.test"], type="A", port=9100, refresh_interval="100ms")
    srv = DNSDiscoverer(cfg, "dns_sd_configs[0]", nameservers=[server.nameserver], timeout=TIMEOUT)
    a = DNSDiscoverer(a_cfg, "dns_sd_configs[1]", nameservers=[server.nameserver], timeout=TIMEOUT)
    manager = DiscoveryManager([srv, a], job="dns", min_timeout=5.0)
    updates: list[tuple[TargetGroup, ...]] = []

    def view() -> dict[str, tuple[str, ...]]:
        return {g.source: tuple(sorted(g.addresses)) for g in (updates[-1] if updates else ())}

    async def until(check: Callable[[], bool], what: str, deadline: float = 15.0) -> None:
        end = time.monotonic() + deadline
        while not check():
            if time.monotonic() > end:
                raise AssertionError(f"{what} not seen in {deadline}s; last update: {view()}; "
                                     f"status: {manager.status()}")
            await asyncio.sleep(0.05)

    first = {"_prom._tcp.test": ("web1.test:9100", "web2.test:9200"), "multi.test": ()}
    first_a = {"multi.test": ("127.0.0.21:9100", "127.0.0.22:9100")}

    async def main() -> None:
        task = asyncio.create_task(manager.run(updates.append))
        try:
            await until(lambda: view() == {**first, **first_a}, "the first answers")

            # Other records: a target gone, one moved, one added (the SRV name has an A record meanwhile:
            # for an SRV query it is a name without SRV records, so an empty group).
            await asyncio.to_thread(server.restart, [
                "--srv-host=_prom._tcp.test,web3.test,9300,0,10",
                "--srv-host=_prom._tcp.test,web1.test,9101,0,10",
                "--host-record=multi.test,127.0.0.23",
            ])
            second = {"_prom._tcp.test": ("web1.test:9101", "web3.test:9300"), "multi.test": ()}
            await until(lambda: view() == {**second, "multi.test": ("127.0.0.23:9100",)}, "the changed records")

            # The server goes away: every name fails and keeps its last good targets; nothing is sent.
            count = len(updates)
            await asyncio.to_thread(server.stop)
            await until(lambda: all(len(s.problems) == len(d.config.names)
                                    for s, d in zip(manager.status(), (srv, a))), "the failures")
            await asyncio.sleep(0.3)
            assert len(updates) == count
            assert view() == {**second, "multi.test": ("127.0.0.23:9100",)}
            assert all(p.startswith("could not resolve") for s in manager.status() for p in s.problems)

            # Back, without the multi.test record: NXDOMAIN, so that name's targets go.
            await asyncio.to_thread(server.restart, ["--srv-host=_prom._tcp.test,web3.test,9300,0,10"])
            await until(lambda: view() == {"_prom._tcp.test": ("web3.test:9300",), "multi.test": ()}
                        and not any(s.problems for s in manager.status()), "the recovery")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert all(s.errors_total >= len(d.config.names) for s, d in zip(manager.status(), (srv, a)))


def test_system_resolver_file_is_read_at_each_refresh(tmp_path: Path) -> None:
    """Without nameservers the resolver comes from resolv.conf at every refresh (as Prometheus reads
    /etc/resolv.conf at every lookup); a missing file is a reported failure, not a crash. No query is
    sent to anything but loopback."""
    conf = tmp_path / "resolv.conf"
    discoverer = DNSDiscoverer(_config(names=["a.test"], type="A", port=80), resolv_conf=str(conf))
    with pytest.raises(DiscoveryError, match="could not load"):
        asyncio.run(discoverer.refresh())
    manager = DiscoveryManager([discoverer])
    asyncio.run(manager.refresh_once())
    [status] = manager.status()
    assert len(status.problems) == 1 and str(conf) in status.problems[0]


def test_system_resolver_search_domains(server: Dnsmasq, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """resolv.conf's search domains apply (and a changed file is read again). resolv.conf cannot name
    a port, so the test's resolver is pointed at dnsmasq's after the file is read."""
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\nsearch test\noptions ndots:1\n")
    built: list[dns.asyncresolver.Resolver] = []
    original = dns.asyncresolver.Resolver

    class OnDnsmasqPort(original):  # type: ignore[misc, valid-type]
        def read_resolv_conf(self, f: object) -> None:
            super().read_resolv_conf(f)
            assert [getattr(ns, "address", ns) for ns in self.nameservers] == ["127.0.0.1"]  # loopback only
            self.nameservers = [dns.nameserver.Do53Nameserver("127.0.0.1", server.port)]
            built.append(self)

    monkeypatch.setattr(dns.asyncresolver, "Resolver", OnDnsmasqPort)
    discoverer = DNSDiscoverer(_config(names=["web1"], type="A", port=80), resolv_conf=str(conf), timeout=TIMEOUT)
    result = asyncio.run(discoverer.refresh())
    assert [(g.source, g.addresses) for g in result.groups] == [("web1", ("127.0.0.11:80",))]
    conf.write_text("nameserver 127.0.0.1\nsearch nowhere.test\n")
    result = asyncio.run(discoverer.refresh())
    assert len(built) == 2
    assert [(g.source, g.addresses) for g in result.groups] == [("web1", ("127.0.0.11:80",))]  # kept
    assert result.problems and result.problems[0].startswith("could not resolve 'web1': web1.: ")
