"""The process's memory policy: the one place that changes garbage-collector and allocator behaviour.

Library calls (``parse_exposition``, ``ExpositionParser.parse``, the mappings, the series store, the
encoder) never touch the GC or the allocator: a program that embeds promotel keeps its own policy.
``promotel run`` applies this module's policy to its own process:

* ``tune_gc`` once at start-up: freeze the start-up heap out of the collector's reach, collect young
  objects 70× less often, and (glibc) fix the mmap threshold and cap the malloc arenas;
* ``RoundMemory.round()`` around the CPU work of each scrape (parse → map → convert): the cyclic GC is
  paused for the round, a full collection runs every ``full_every`` rounds (all targets together), and
  the heap the round freed is given back to the OS.

Why, with figures: a round of a 150k-sample target allocates about one object per sample and frees
almost nothing before it ends, so the cyclic GC would walk a growing heap many times for no gain; the few
cyclic leftovers of a round (asyncio/httpcore bookkeeping, ~100 small objects) wait for the periodic full
collection, which costs ~150 ms on that heap, hence every 50 rounds (~3 ms per round); and glibc keeps
freed heap pages mapped, so without ``malloc_trim`` RSS would sit at the largest round's high-water mark.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["RoundMemory", "release_memory", "tune_gc"]

_M_MMAP_THRESHOLD = -3     # glibc mallopt parameters (malloc.h)
_M_ARENA_MAX = -8


def _load_libc() -> ctypes.CDLL | None:
    """glibc, for ``malloc_trim``/``mallopt``; None elsewhere (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _ = libc.malloc_trim, libc.mallopt
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_libc()


def release_memory() -> None:
    """Give the heap freed by a round back to the OS (glibc keeps freed pages mapped otherwise)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def tune_gc() -> None:
    """The bridge process's GC and allocator policy, applied once after start-up.

    Nearly nothing the bridge makes is cyclic garbage, so what exists after start-up (imports, config,
    plugin tables) is frozen out of the collector's reach and young objects are collected 70× less often
    than CPython's default gen-0 threshold of 700 would. glibc: a fixed 1 MiB mmap threshold keeps
    multi-MB buffers (scrape bodies, decoded text) in their own mappings, returned to the OS when freed
    (the default threshold adapts upwards after the first free and moves them onto the heap, which then
    only grows), and two arenas at most keep worker threads from each holding a round's high-water mark.
    """
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, 1 << 20)
        _LIBC.mallopt(_M_ARENA_MAX, 2)
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic GC is off inside the block (and restored to what it was, even on error)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class RoundMemory:
    """The memory policy around each round of CPU work; one per process (all targets share it)."""

    def __init__(self, full_every: int = 50) -> None:
        self.full_every = full_every
        self.rounds = 0

    @contextmanager
    def round(self) -> Iterator[None]:
        try:
            with gc_paused():
                yield
        finally:
            self.rounds += 1
            if self.rounds % self.full_every == 0:
                gc.collect()
            release_memory()
