"""Bounds of the memory store: ``backend.cache.memory.maxBytes`` is the memory it uses, not
just the bytes of its keys and values. Many small entries (the worst case: overhead per
entry dwarfs the payload) written by several threads, with and without TTLs, keep the
memory the process allocates for them within maxBytes plus the margins the store states."""

from __future__ import annotations

import gc
import threading
import tracemalloc
from collections.abc import Callable

from conftest import Outcome, scaled

from cachekit import MISS
from cachekit.host import CacheManager

MAX_BYTES = 4 * 1024 * 1024
# stated in cachekit/stores/memory.py and docs/reliability.md: memory held, and at the
# peaks where a table grows
HELD_MARGIN = 0.10
PEAK_MARGIN = 0.35


def test_many_small_entries_stay_within_max_bytes(outcome: Callable[..., Outcome]) -> None:
    """Writers filling the memory store several times over keep the memory it holds within
    maxBytes + 10% (+ 35% at peaks), and every read returns the value written or a miss."""
    threads = 4
    writes = scaled(25_000)  # per thread; about 3 times what maxBytes holds in all
    tally = outcome("many small entries in the memory store", "memory", threads)
    gc.collect()
    tracemalloc.start()
    try:
        manager = CacheManager.from_config(
            {"backend": {"cache": {"memory": {"maxEntries": None, "maxBytes": MAX_BYTES}}}}
        )
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()

        def write(t: int) -> None:
            cache = manager.for_plugin("bulk", tenant=f"t{t}")
            for n in range(writes):
                value = n.to_bytes(8, "big") * 8  # 64 bytes, like a small JSON document
                cache.set(f"k{n}", value, ttl=300 if n % 2 else 0)
                got = cache.get(f"k{n - 7}", MISS) if n >= 7 else MISS
                if got is MISS or got == (n - 7).to_bytes(8, "big") * 8:
                    tally.ok()
                else:
                    tally.violated(f"k{n - 7} read back {got!r}")

        workers = [threading.Thread(target=write, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
        store = manager.store
    finally:
        tracemalloc.stop()
    if current - base > MAX_BYTES * (1 + HELD_MARGIN):
        tally.violated(f"{current - base} bytes held for maxBytes {MAX_BYTES}")
    if peak - base > MAX_BYTES * (1 + PEAK_MARGIN):
        tally.violated(f"{peak - base} bytes at peak for maxBytes {MAX_BYTES}")
    if len(store) >= threads * writes:  # type: ignore[arg-type]
        tally.violated("nothing was evicted: the load did not reach maxBytes")
    tally.check()
