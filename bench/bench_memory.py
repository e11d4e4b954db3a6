"""Memory store: per-op cost of Cache.get / Cache.set next to a dict and cachetools.

Run: .venv/bin/python bench/bench_memory.py   (about 20 s)

Cases (one process, interleaved rounds, median of per-round ratios):
- dict get/set: the floor (no TTL, no bound, no lock, no encoding);
- cachetools.TTLCache get/set behind a threading.Lock: a bounded TTL cache as people use
  it from threads (values kept as objects, not encoded);
- MemoryStore get/set: our store alone (bytes in, bytes out);
- Cache.get/set: the scoped API (key prefixing, TTL rules, msgpack encode/decode).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import cachetools

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, report, run_rounds

from cachekit.host import CacheManager
from cachekit.stores.memory import MemoryStore

VALUE = {"id": 42, "name": "widget", "tags": ["a", "b"]}


def main() -> None:
    manager = CacheManager(store=MemoryStore())
    cache = manager.for_plugin("catalog", tenant="acme")
    store = manager.store
    full_key = manager.keyspace.scope_prefix("catalog", "acme", None) + "item:1"
    raw = manager.codec.encode(VALUE)

    plain: dict[str, object] = {}
    ttl_cache: cachetools.TTLCache[str, object] = cachetools.TTLCache(maxsize=100_000, ttl=300)
    lock = threading.Lock()

    def ttl_get() -> object:
        with lock:
            return ttl_cache.get("item:1")

    def ttl_set() -> None:
        with lock:
            ttl_cache["item:1"] = VALUE

    plain["item:1"] = VALUE
    ttl_set()
    cache.set("item:1", VALUE, ttl=300)

    get_cases = [
        Case("dict get", lambda: plain.get("item:1")),
        Case("TTLCache+lock get", ttl_get, baseline="dict get"),
        Case("MemoryStore.get (bytes)", lambda: store.get(full_key), baseline="TTLCache+lock get"),
        Case("Cache.get (decoded)", lambda: cache.get("item:1"), baseline="TTLCache+lock get"),
    ]
    set_cases = [
        Case("dict set", lambda: plain.__setitem__("item:1", VALUE)),
        Case("TTLCache+lock set", ttl_set, baseline="dict set"),
        Case(
            "MemoryStore.set (bytes)",
            lambda: store.set(full_key, raw, 300.0),
            baseline="TTLCache+lock set",
        ),
        Case(
            "Cache.set (encoded)",
            lambda: cache.set("item:1", VALUE, ttl=300),
            baseline="TTLCache+lock set",
        ),
    ]
    run_rounds(get_cases)
    run_rounds(set_cases)
    print(report("memory store: get (hit)", get_cases))
    print()
    print(report("memory store: set", set_cases))


if __name__ == "__main__":
    main()
