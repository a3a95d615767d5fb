"""Durations and sizes as people write them in config files: ``"15s"``, ``"1h30m"``, ``"64MiB"``.

Durations follow Prometheus/Go notation (units ``ms``, ``s``, ``m``, ``h``, ``d``, ``w``, several
concatenated largest first, as in ``1h30m``); a plain number is seconds. Sizes take SI (``KB`` =
1000) and IEC (``KiB`` = 1024) units; a plain number is bytes.
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration", "parse_size"]

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_UNIT_ORDER = ("w", "d", "h", "m", "s", "ms")
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_NUMBER_RE = re.compile(r"[+]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|[+]?\.\d+")

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3,
}
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)")


def parse_duration(value: str | float) -> float:
    """Seconds in ``value``: ``"500ms"`` → 0.5, ``"1h30m"`` → 5400.0, ``15`` → 15.0. Raises ``ValueError``."""
    # ValueError, not TypeError, throughout: pydantic reports only ValueErrors as config problems.
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '15s' or '1m', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip()
        if _NUMBER_RE.fullmatch(text):
            seconds = float(text)
        else:
            seconds = _parse_units(text)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected a non-negative duration such as '15s' or '1m', got {value!r}")
    return seconds


def _parse_units(text: str) -> float:
    pos = 0
    total = 0.0
    last_rank = -1
    for match in _PART_RE.finditer(text):
        if match.start() != pos:
            break
        rank = _UNIT_ORDER.index(match.group(2))
        if rank <= last_rank:   # "1s1m" or "1m1m": units must go from largest to smallest, once each
            raise ValueError(f"invalid duration {text!r}: write units from largest to smallest, once each "
                             "(such as '1h30m')")
        last_rank = rank
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"invalid duration {text!r}: expected a number with a unit (ms, s, m, h, d, w) "
                         "such as '15s', '500ms' or '1h30m', or a plain number of seconds")
    return total


def parse_size(value: str | float) -> int:
    """Bytes in ``value``: ``"64MiB"`` → 67108864, ``"500KB"`` → 500000, ``1024`` → 1024. Raises ``ValueError``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as '500KB' or '64MiB', got {value!r}")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
            raise ValueError(f"expected a whole number of bytes, got {value!r}")
        size = int(value)
    else:
        match = _SIZE_RE.fullmatch(value.strip())
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _SIZE_UNITS:
            raise ValueError(f"invalid size {value!r}: expected a number of bytes or a number with a unit "
                             "(B, KB, MB, GB, KiB, MiB, GiB) such as '500KB' or '64MiB'")
        size = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if size < 0:
        raise ValueError(f"expected a non-negative size, got {value!r}")
    return size
