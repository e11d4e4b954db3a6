"""What the in-process metrics cost on a memory-store hit.

Run: .venv/bin/python bench/bench_metrics.py   (about 10 s)

Compares, in one run and round-robin, ``Cache.get`` (which counts the hit) with the same
method minus the counting (a subclass defined here for the comparison only). Target
(issue 7): metrics add under 5% to a memory-store hit.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, report, run_rounds

from cachekit import Cache
from cachekit.codec import DecodeError
from cachekit.host import CacheManager
from cachekit.keys import check_key

VALUE = {"id": 42, "name": "widget", "tags": ["a", "b"]}


class UncountedCache(Cache):
    """Cache.get as it would be without metrics (memory stores are not timed)."""

    __slots__ = ()

    def get(self, key: str, default: Any = None) -> Any:
        if type(key) is not str or not key:
            check_key(key)
        full = self._prefix + key
        raw = self._store.get(full)
        if raw is None:
            return default
        try:
            return self._codec.decode(raw)
        except DecodeError as exc:
            return self._unreadable(full, exc, default)


def main() -> None:
    manager = CacheManager()
    counted = manager.for_plugin("catalog", tenant="acme")
    uncounted = UncountedCache(
        manager.store, plugin="catalog", tenant="acme", codec=manager.codec,
        keyspace=manager.keyspace,
    )  # fmt: skip
    counted.set("item:1", VALUE)
    assert uncounted.get("item:1") == counted.get("item:1") == VALUE
    cases = [
        Case("Cache.get without metrics", lambda: uncounted.get("item:1")),
        Case(
            "Cache.get with metrics",
            lambda: counted.get("item:1"),
            baseline="Cache.get without metrics",
        ),
    ]
    run_rounds(cases, rounds=21, ops=50_000)
    print(report("memory-store hit: the cost of counting it", cases))


if __name__ == "__main__":
    main()
