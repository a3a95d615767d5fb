"""``dns_sd_configs``: targets from DNS records (SRV, A, AAAA, MX, NS), refreshed periodically.

Prometheus's DNS SD (``discovery/dns``), on dnspython:

* ``names`` (at least one), ``type`` (``SRV`` by default; ``A``, ``AAAA``, ``MX``, ``NS``; any case),
  ``port`` (required for every type but SRV, whose records carry their port), ``refresh_interval``
  (default ``30s``).
* One group per name (source: the name). Each record of the answer section becomes a target, with
  its own labels: ``__address__`` (``host:port``; an IPv6 address in brackets; the trailing dot of a
  name removed), ``__meta_dns_name`` (the name as configured), ``__meta_dns_srv_record_target`` and
  ``__meta_dns_srv_record_port`` (SRV), ``__meta_dns_mx_record_target`` (MX),
  ``__meta_dns_ns_record_target`` (NS); the record names keep their trailing dot, as in Prometheus.
  CNAME records in the answer (an A query for an alias) are skipped; the addresses that follow them
  are used.
* Resolution follows Prometheus's ``lookupWithSearchPath``: the name and the resolver's search
  domains are tried in the order Go's resolver uses (a name with more labels than ``ndots`` first as
  it is, otherwise after the search domains; a name ending in ``.`` only as it is); the first answer
  with RCODE success wins, even with no records; if every try says NXDOMAIN the name has no targets
  (its group becomes empty); if any try failed (timeout, SERVFAIL, REFUSED) and none succeeded, the
  lookup failed: that name keeps its last good targets and the failure is reported. Each server
  is asked once per try, over UDP with EDNS0 (4096 bytes), and over TCP when the answer is truncated.
* The resolver is the system's (``/etc/resolv.conf``, read again at every refresh as Prometheus
  does; its ``search``/``domain`` and ``ndots`` apply) unless ``nameservers`` are given to the
  discoverer (``"10.0.0.2"``, ``"10.0.0.2:5353"``, ``"[fd00::2]:5353"``), which then are the only
  servers and no search domains apply. ``nameservers`` is a constructor argument, not a key of
  Prometheus's config.

AAAA addresses print as Go prints them (RFC 5952, and an IPv4-mapped address as dotted IPv4).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Sequence
from typing import Any, Final

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
from pydantic import Field, StrictInt, field_validator, model_validator

from promotel.discovery._config import PromDuration, SDModel
from promotel.discovery.targets import ADDRESS_LABEL, Refresh, TargetGroup
from promotel.errors import DiscoveryError

__all__ = ["DNSDiscoverer", "DNSSDConfig", "parse_nameserver"]

log = logging.getLogger("promotel.discovery")

DEFAULT_REFRESH_INTERVAL: Final = 30.0
RESOLV_CONF: Final = "/etc/resolv.conf"
TYPES: Final = ("SRV", "A", "AAAA", "MX", "NS")

NAME_LABEL: Final = "__meta_dns_name"
SRV_TARGET_LABEL: Final = "__meta_dns_srv_record_target"
SRV_PORT_LABEL: Final = "__meta_dns_srv_record_port"
MX_TARGET_LABEL: Final = "__meta_dns_mx_record_target"
NS_TARGET_LABEL: Final = "__meta_dns_ns_record_target"


class DNSSDConfig(SDModel):
    names: tuple[str, ...] = Field(default=(), validate_default=True)
    type: str = "SRV"
    port: StrictInt = 0
    refresh_interval: PromDuration = DEFAULT_REFRESH_INTERVAL

    @field_validator("names", mode="before")
    @classmethod
    def _null_names(cls, value: object) -> object:
        return () if value is None else value

    @field_validator("type", mode="before")
    @classmethod
    def _null_type(cls, value: object) -> object:
        return "" if value is None else value

    @model_validator(mode="after")
    def _prometheus_rules(self) -> DNSSDConfig:
        # Prometheus's checks, in its order and words.
        if not self.names:
            raise ValueError("DNS-SD config must contain at least one SRV record name")
        kind = self.type.upper()
        if kind not in TYPES:
            raise ValueError(f"invalid DNS-SD records type {self.type} (one of {', '.join(TYPES)})")
        if kind != "SRV" and self.port == 0:
            raise ValueError("a port is required in DNS-SD configs for all record types except SRV")
        return self

    @property
    def record_type(self) -> str:
        return self.type.upper()


def parse_nameserver(text: str) -> tuple[str, int]:
    """``"10.0.0.2"``, ``"10.0.0.2:5353"``, ``"fd00::2"``, ``"[fd00::2]:5353"`` → (address, port)."""
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"invalid nameserver {text!r}: expected [address]:port")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
        port = int(number)
    ipaddress.ip_address(host)  # raises ValueError: nameservers are addresses, not names
    if not 0 < port < 65536:
        raise ValueError(f"invalid nameserver {text!r}: port out of range")
    return host, port


def _join_host_port(host: str, port: int | str) -> str:
    """Go's net.JoinHostPort."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _go_ip(text: str) -> str:
    """An address as Go's ``net.IP.String`` prints it."""
    addr = ipaddress.ip_address(text)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def _failure(exc: dns.exception.DNSException, timeout: float) -> str:
    """Why a lookup failed, in words that stay the same from one refresh to the next: the discovery manager
    logs a problem again only when its text changes, so dnspython's measured durations ("timed out after
    2.003 seconds") are left out. Each server's outcome is named once (dnspython's ``errors``: server,
    TCP or not, port, the exception or the RCODE's text, the response)."""
    if isinstance(exc, dns.exception.Timeout):        # the lifetime expired (each server's timeout, summed)
        head = "no server answered in time"
    elif isinstance(exc, dns.resolver.NoNameservers):  # every server failed or refused
        head = "no server gave a usable answer"
    else:
        return str(exc)
    outcomes: dict[str, None] = {}
    for server, _tcp, _port, error, _response in exc.kwargs.get("errors") or ():
        if isinstance(error, str):
            outcome = f"answered {error}"                   # an RCODE: REFUSED, SERVFAIL, …
        elif isinstance(error, dns.exception.Timeout):
            outcome = f"did not answer within {timeout:g}s"
        else:
            outcome = f"failed: {error}"
        outcomes[f"server {server} {outcome}"] = None
    return f"{head} ({'; '.join(outcomes)})" if outcomes else head


def _count_labels(name: str) -> int:
    return len([label for label in name.split(".") if label])


def name_list(name: str, search: Sequence[str], ndots: int) -> list[str]:
    """The names to try for ``name``, in Go's resolver order (miekg/dns ``ClientConfig.NameList``)."""
    if name.endswith("."):
        return [name]
    has_ndots = _count_labels(name) > ndots
    fqdn = name + "."
    names = [fqdn] if has_ndots else []
    for suffix in search:
        candidate = fqdn + suffix
        names.append(candidate if candidate.endswith(".") else candidate + ".")
    if not has_ndots:
        names.append(fqdn)
    return names


class DNSDiscoverer:
    """Resolves the names of one ``dns_sd_configs`` entry; see the module docstring.

    ``timeout`` bounds one query to one server (Go's DNS client: 2 s). ``resolver_factory`` replaces
    the resolver built from ``nameservers`` or ``/etc/resolv.conf`` (tests, embedding)."""

    mechanism = "dns"

    def __init__(self, config: DNSSDConfig, name: str = "dns_sd_configs[0]", *,
                 nameservers: Sequence[str] | None = None, timeout: float = 2.0, resolv_conf: str = RESOLV_CONF,
                 resolver_factory: Callable[[], dns.asyncresolver.Resolver] | None = None) -> None:
        self.name = name
        self.config = config
        self.refresh_interval = config.refresh_interval
        self.timeout = timeout
        self._resolv_conf = resolv_conf
        self._servers = [parse_nameserver(text) for text in nameservers] if nameservers is not None else None
        self._factory = resolver_factory
        self._rdtype = dns.rdatatype.from_text(config.record_type)
        self._last_good: dict[str, TargetGroup] = {}

    def _resolver(self) -> dns.asyncresolver.Resolver:
        if self._factory is not None:
            resolver = self._factory()
        elif self._servers is not None:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in self._servers]
        else:
            try:
                resolver = dns.asyncresolver.Resolver(filename=self._resolv_conf)
            except (OSError, dns.resolver.NoResolverConfiguration) as exc:
                raise DiscoveryError(f"could not load {self._resolv_conf}: {exc}", kind="dns") from exc
        resolver.timeout = self.timeout
        resolver.lifetime = self.timeout * max(1, len(resolver.nameservers))  # each server once
        resolver.use_edns(0, 0, 4096)
        return resolver

    @staticmethod
    def _search(resolver: dns.asyncresolver.Resolver) -> list[str]:
        if resolver.search:
            return [name.to_text() for name in resolver.search]
        domain = resolver.domain
        if domain is not None and domain != dns.name.root and domain != dns.name.empty:
            return [domain.to_text()]
        return []

    async def _lookup(self, resolver: dns.asyncresolver.Resolver, name: str) -> list[Any]:
        """The answer section's records for ``name`` (see the module docstring for the outcomes)."""
        ndots = resolver.ndots if resolver.ndots is not None else 1
        explicit = self._servers is not None and self._factory is None
        candidates = name_list(name, [] if explicit else self._search(resolver), ndots)
        failures: list[str] = []
        for candidate in candidates:
            try:
                answer = await resolver.resolve(candidate, self._rdtype, search=False, raise_on_no_answer=False)
            except dns.resolver.NXDOMAIN:
                continue  # "that name does not exist": a valid answer, try the next name
            except dns.exception.DNSException as exc:
                failures.append(f"{candidate}: {_failure(exc, self.timeout)}")
                continue
            return [rdata for rrset in answer.response.answer for rdata in rrset]
        if not failures:
            return []  # every name is NXDOMAIN: the name has no records
        raise DiscoveryError(f"could not resolve {name!r}: {'; '.join(failures)}", kind="dns")

    def _targets(self, name: str, records: list[Any]) -> list[dict[str, str]]:
        port = self.config.port
        targets: list[dict[str, str]] = []
        for record in records:
            srv_target = srv_port = mx_target = ns_target = ""
            rdtype = record.rdtype
            if rdtype == dns.rdatatype.SRV:
                srv_target, srv_port = record.target.to_text(), str(record.port)
                address = _join_host_port(srv_target.rstrip("."), record.port)
            elif rdtype == dns.rdatatype.MX:
                mx_target = record.exchange.to_text()
                address = _join_host_port(mx_target.rstrip("."), port)
            elif rdtype == dns.rdatatype.NS:
                ns_target = record.target.to_text()
                address = _join_host_port(ns_target.rstrip("."), port)
            elif rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                address = _join_host_port(_go_ip(record.address), port)
            else:
                if rdtype != dns.rdatatype.CNAME:
                    log.debug("dns_sd %s: skipping a %s record", name, dns.rdatatype.to_text(rdtype))
                continue
            targets.append({ADDRESS_LABEL: address, NAME_LABEL: name, SRV_TARGET_LABEL: srv_target,
                            SRV_PORT_LABEL: srv_port, MX_TARGET_LABEL: mx_target, NS_TARGET_LABEL: ns_target})
        return targets

    async def _refresh_name(self, resolver: dns.asyncresolver.Resolver, name: str) -> str | None:
        try:
            records = await self._lookup(resolver, name)
        except DiscoveryError as exc:
            return str(exc)
        self._last_good[name] = TargetGroup(tuple(self._targets(name, records)), {}, name)
        return None

    async def refresh(self) -> Refresh:
        resolver = self._resolver()
        problems = await asyncio.gather(*(self._refresh_name(resolver, name) for name in self.config.names))
        groups = tuple(self._last_good[name] for name in self.config.names if name in self._last_good)
        return Refresh(groups, tuple(p for p in problems if p is not None))

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def aclose(self) -> None:
        return None
