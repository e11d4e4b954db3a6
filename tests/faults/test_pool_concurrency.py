"""Concurrency beyond the connection pool: local contention is never an outage.

Every scenario builds a fresh manager (cold pools) with the default connection settings and
drives it with more concurrent callers than the pool holds (asyncio tasks and threads). The
invariants: no call fails, no breaker opens, no increment or rate-limit hit is lost or
doubled, no cached value is recomputed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from faults.conftest import Outcome, scaled

from cachekit import StoreError, cached, counter, rate_limit
from cachekit.config import parse_cache_section
from cachekit.host import CacheManager, scope

STORES = ["redis", "memcache", "cluster", "infinispan"]


@pytest.fixture(params=STORES)
def section(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A ``backend.cache`` section with default pool and timeout settings, per store."""
    kind = request.param
    if kind == "redis":
        return {"store": "redis", "connection": request.getfixturevalue("redis_server").url}
    if kind == "memcache":
        server = request.getfixturevalue("memcached_server")
        return {"store": "memcache", "connection": f"{server.host}:{server.port}"}
    if kind == "infinispan":  # the fake REST server (tests/infinispan_fake.py)
        fake = request.getfixturevalue("infinispan_fake")
        return {
            "store": "infinispan",
            "infinispan": {"servers": [{"host": fake.host, "port": fake.port}]},
        }
    cluster = request.getfixturevalue("redis_cluster")
    nodes = [{"url": url} for url in cluster.root_urls]
    return {"store": "redis", "redis": {"cluster": {"rootNodes": nodes}}}


@pytest.fixture
def manager(section: dict[str, Any]) -> Iterator[CacheManager]:
    built = CacheManager(parse_cache_section(section))
    yield built
    built.clear(plugin="pool-faults")
    built.close()


def label(section: dict[str, Any]) -> str:
    if "rootNodes" in str(section):
        return "redis-cluster"
    return str(section["store"])


def breakers_closed(manager: CacheManager) -> bool:
    """Whether no breaker of the manager's store counted a failure."""
    store: Any = manager.store
    breakers = [store.breaker] if hasattr(store, "breaker") else []
    breakers += [n.breaker for n in getattr(store, "_nodes", ())]
    return all(b.state == "closed" and b.healthy for b in breakers)


def check_breakers(tally: Outcome, manager: CacheManager) -> None:
    if breakers_closed(manager):
        tally.ok()
    else:
        tally.violated("a breaker counted local contention as a store failure")


def run_async(manager: CacheManager, body: Callable[[], Any]) -> Any:
    async def main() -> Any:
        try:
            return await body()
        finally:
            await manager.aclose()

    return asyncio.run(main())


def test_async_burst_beyond_the_pool(
    manager: CacheManager, section: dict[str, Any], outcome: Callable[..., Outcome]
) -> None:
    """150 concurrent ``aget``s on a cold asyncio pool all succeed and open no breaker."""
    n = scaled(150)
    tally = outcome("async burst beyond the pool", label(section), concurrency=n)
    cache = manager.for_plugin("pool-faults", tenant="burst")
    cache.set_many({f"k{i}": i for i in range(n)})

    async def burst() -> list[Any]:
        return await asyncio.gather(
            *(cache.aget(f"k{i}") for i in range(n)), return_exceptions=True
        )

    for i, value in enumerate(run_async(manager, burst)):
        if value == i:
            tally.ok()
        else:
            tally.violated(f"aget k{i} -> {value!r}")
    check_breakers(tally, manager)
    tally.check()


def test_threads_beyond_the_pool(
    manager: CacheManager, section: dict[str, Any], outcome: Callable[..., Outcome]
) -> None:
    """150 threads each doing 20 ``get``s on one cold sync pool: none fails, no breaker opens."""
    threads, calls = 150, scaled(20)
    tally = outcome("threads beyond the pool", label(section), concurrency=threads)
    cache = manager.for_plugin("pool-faults", tenant="threads")
    cache.set("k", "v")
    failures: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait()
        for _ in range(calls):
            try:
                value = cache.get("k")
            except StoreError as exc:
                value = exc
            if value != "v":
                with lock:
                    failures.append(f"get -> {value!r}")

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    for failure in failures:
        tally.violated(failure)
    tally.ok(threads * calls - len(failures))
    check_breakers(tally, manager)
    tally.check()


def test_cached_pass_recomputes_nothing(
    manager: CacheManager, section: dict[str, Any], outcome: Callable[..., Outcome]
) -> None:
    """A concurrent async ``@cached`` pass over 300 cached keys computes none of them again."""
    n = scaled(300)
    tally = outcome("@cached pass beyond the pool", label(section), concurrency=n)
    computed: list[int] = []

    @cached(namespace="pass", ttl=60)
    async def square(i: int) -> int:
        computed.append(i)
        return i * i

    async def passes() -> list[Any]:
        with scope("pool-faults", tenant="cached", manager=manager):
            await asyncio.gather(*(square(i) for i in range(n)))
            computed.clear()
            return await asyncio.gather(*(square(i) for i in range(n)))

    values = run_async(manager, passes)
    for i, value in enumerate(values):
        if value != i * i:
            tally.violated(f"square({i}) -> {value!r}")
    for i in computed:
        tally.violated(f"square({i}) was computed again")
    tally.ok(n - len(computed))
    check_breakers(tally, manager)
    tally.check()


def test_increments_under_concurrency_lose_none(
    manager: CacheManager, section: dict[str, Any], outcome: Callable[..., Outcome]
) -> None:
    """10,000 ``aincr``s (1,000 on the Infinispan fake, a Python server behind a lock of four
    round trips per increment) from 500 concurrent tasks on a cold pool all succeed and the
    counter ends at exactly that many."""
    n, concurrency = scaled(1_000 if section["store"] == "infinispan" else 10_000), 500
    tally = outcome("increments beyond the pool", label(section), concurrency=concurrency)

    async def hammer() -> list[Any]:
        with scope("pool-faults", tenant="incr", manager=manager):
            hits = counter("hits", ttl=600)
            queue = iter(range(n))
            results: list[Any] = []

            async def worker() -> None:
                for _ in queue:
                    try:
                        results.append(await hits.aincr())
                    except StoreError as exc:
                        results.append(exc)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            results.append(await hits.aget())
            return results

    *results, final = run_async(manager, hammer)
    failed = [r for r in results if not isinstance(r, int)]
    for failure in failed:
        tally.violated(f"aincr -> {failure!r}")
    tally.ok(len(results) - len(failed))
    if final != n or sorted(r for r in results if isinstance(r, int)) != list(range(1, n + 1)):
        tally.violated(f"counter ended at {final}, not {n}, or a value was returned twice")
    check_breakers(tally, manager)
    tally.check()


def test_rate_limit_admits_exactly_its_limit(
    manager: CacheManager, section: dict[str, Any], outcome: Callable[..., Outcome]
) -> None:
    """300 concurrent hits on a GCRA limit of 100 per hour admit exactly 100 (no fail-open)."""
    n, limit = 300, 100
    tally = outcome("rate limit beyond the pool", label(section), concurrency=n)

    async def hits() -> list[Any]:
        with scope("pool-faults", tenant="gcra", manager=manager):
            limiter = rate_limit("burst", limit, 3600, algorithm="gcra", on_error="deny")
            return await asyncio.gather(*(limiter.ahit() for _ in range(n)), return_exceptions=True)

    results = run_async(manager, hits)
    errors = [r for r in results if isinstance(r, BaseException)]
    for error in errors:
        tally.violated(f"ahit -> {error!r}")
    admitted = sum(1 for r in results if not isinstance(r, BaseException) and r.allowed)
    if admitted == limit:
        tally.ok(n - len(errors))
    else:
        tally.violated(f"{admitted} hits admitted, limit {limit}")
    check_breakers(tally, manager)
    tally.check()
