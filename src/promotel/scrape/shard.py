"""Sharding: which replica of a scaled-out bridge scrapes which target.

N replicas each run the same config; every replica keeps only the sources it *owns*. Ownership is
rendezvous (highest-random-weight) hashing: for a target, each shard index gets a score from a keyed
BLAKE2b hash of ``(index, target)`` and the highest score owns the target. That gives

* exactly one owner per target, computed locally, without coordination between replicas;
* stability: the result depends only on the target and N (never on Python's per-process salted
  ``hash()``, on the order of the config, or on the other targets), so every replica agrees;
* minimal movement: when N becomes N+1 a target moves only if the new shard outscores the old
  winner, which happens for ~1/(N+1) of the targets; all other targets stay where they were.

The target key is the source URL, normalized (scheme and host lower-cased, default port and
credentials dropped), so two replicas never scrape the same Baseten organization's endpoint, whose
budget is a few requests per minute per organization.

Where the shard comes from (first match wins): ``--shard INDEX/COUNT``; ``PROMOTEL_SHARD=INDEX/COUNT``;
``PROMOTEL_SHARD_COUNT=N`` plus the pod ordinal of a StatefulSet (hostname ``promotel-3`` → 3).
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Mapping, Sequence

from promotel.errors import ConfigError

__all__ = ["assign", "normalize_target", "owner", "owns", "parse_shard", "shard_from_env"]

# A fixed key makes the scores promotel's own: changing it would reshuffle every deployment, so never do.
_HASH_KEY = b"promotel-shard-v1"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SPEC_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
# StatefulSet pods are named <statefulset>-<ordinal>; the hostname is the pod name.
_ORDINAL_RE = re.compile(r"-(\d+)$")


def parse_shard(spec: str) -> tuple[int, int]:
    """``"2/5"`` → ``(2, 5)``: shard index 2 (0-based, like StatefulSet ordinals) of 5."""
    match = _SPEC_RE.match(spec)
    if match is None:
        raise ConfigError([("shard", (f"expected INDEX/COUNT such as '0/3', got {spec!r}; "
                                      "INDEX counts from 0, as StatefulSet pod ordinals do"))])
    index, count = int(match.group(1)), int(match.group(2))
    _check(index, count, "shard")
    return index, count


def _check(index: int, count: int, where: str) -> None:
    if count < 1:
        raise ConfigError([(where, f"the shard count must be at least 1, got {count}")])
    if not 0 <= index < count:
        raise ConfigError([(where, (f"the shard index must be between 0 and {count - 1} "
                                    f"for {count} shards, got {index}"))])


def shard_from_env(env: Mapping[str, str], hostname: str) -> tuple[int, int] | None:
    """The shard from ``PROMOTEL_SHARD`` or ``PROMOTEL_SHARD_COUNT`` + the StatefulSet ordinal; None if unsharded."""
    spec = env.get("PROMOTEL_SHARD", "").strip()
    if spec:
        try:
            return parse_shard(spec)
        except ConfigError as exc:
            raise ConfigError([("PROMOTEL_SHARD", msg) for _, msg in exc.problems]) from exc
    count_text = env.get("PROMOTEL_SHARD_COUNT", "").strip()
    if not count_text:
        return None
    if not count_text.isdigit():
        raise ConfigError([("PROMOTEL_SHARD_COUNT", f"expected a whole number of replicas, got {count_text!r}")])
    count = int(count_text)
    if count < 1:
        raise ConfigError([("PROMOTEL_SHARD_COUNT", f"the shard count must be at least 1, got {count}")])
    # Only the pod name counts, not a fully qualified name (promotel-3.promotel.ns.svc...).
    short = hostname.strip().split(".", 1)[0]
    match = _ORDINAL_RE.search(short)
    if match is None:
        raise ConfigError([("PROMOTEL_SHARD_COUNT",
                            (f"is set to {count}, but the hostname {short!r} does not end in a pod ordinal "
                             "such as 'promotel-3'; run as a StatefulSet or set PROMOTEL_SHARD=INDEX/COUNT"))])
    index = int(match.group(1))
    if index >= count:
        raise ConfigError([("PROMOTEL_SHARD_COUNT",
                            (f"is {count}, but this pod has ordinal {index} (hostname {short!r}); "
                             "set PROMOTEL_SHARD_COUNT to the StatefulSet's replicas"))])
    return index, count


def normalize_target(url: str) -> str:
    """The identity of a target: what two spellings of one endpoint have in common.

    Scheme and host are case-insensitive and the default port is implied (RFC 3986 §6.2.3);
    credentials and the fragment never reach the server, so they do not make another target.
    Path and query are kept as written: they may select another organization or tenant.
    """
    text = url.strip()
    parts = urllib.parse.urlsplit(text)
    if not parts.scheme or not parts.netloc:
        return text
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    path = parts.path or "/"
    return urllib.parse.urlunsplit((scheme, netloc, path, parts.query, ""))


def _score(key: bytes, index: int) -> int:
    digest = hashlib.blake2b(key, digest_size=8, key=_HASH_KEY, salt=index.to_bytes(16, "big")).digest()
    return int.from_bytes(digest, "big")


def owner(target_key: str, count: int) -> int:
    """The shard index (0 … count-1) that owns this target."""
    _check(0, count, "shard")
    key = normalize_target(target_key).encode()
    # Ties (a 64-bit collision) go to the lower index, so the result is still unique and stable.
    return max(range(count), key=lambda i: (_score(key, i), -i))


def owns(target_key: str, index: int, count: int) -> bool:
    """True when shard ``index`` of ``count`` scrapes this target."""
    _check(index, count, "shard")
    return owner(target_key, count) == index


def assign(target_keys: Sequence[str], count: int) -> dict[int, list[str]]:
    """Every shard index → the targets it owns (in input order); indexes without targets map to []."""
    _check(0, count, "shard")
    result: dict[int, list[str]] = {i: [] for i in range(count)}
    for key in target_keys:
        result[owner(key, count)].append(key)
    return result
