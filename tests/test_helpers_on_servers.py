"""@cached, counters and rate limits on real Redis and memcached: cross-process locks,
outages under an endpoint, exact counts under concurrency."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from servers import MemcachedServer, RedisServer, pause_process, resume_process
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cachekit.asgi import CacheMiddleware
from cachekit.context import scope
from cachekit.counters import RateLimit, counter
from cachekit.decorators import cached
from cachekit.errors import StoreError
from cachekit.host import CacheManager

ROOT = Path(__file__).resolve().parent.parent
# Timeouts with headroom (ms): on a busy machine a timed-out call fails open and turns into a
# wrong count (a rate limit admitting 26 of 10). A stopped server refuses connections at once,
# so the outage test stays fast without short timeouts.
HEADROOM = {"timeouts": {"connect": 5000, "operation": 5000}}
FAST_FAILURE = {
    **HEADROOM,
    "circuitBreaker": {"failureThreshold": 2, "cooldown": 200},
}


def redis_manager(url: str, **options: Any) -> CacheManager:
    return CacheManager.from_config(
        {"backend": {"cache": {"store": "redis", "connection": url, **HEADROOM, **options}}}
    )


def memcache_manager(server: MemcachedServer) -> CacheManager:
    connection = f"{server.host}:{server.port}"
    return CacheManager.from_config(
        {"backend": {"cache": {"store": "memcache", "connection": connection, **HEADROOM}}}
    )


@pytest.fixture(params=["redis", "memcache"])
def manager(request: pytest.FixtureRequest) -> Iterator[CacheManager]:
    if request.param == "redis":
        m = redis_manager(request.getfixturevalue("redis_server").url)
    else:
        m = memcache_manager(request.getfixturevalue("memcached_server"))
    yield m
    m.close()


# --- cross-process lock -------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, sys, time
    import redis
    from cachekit.host import CacheManager
    from cachekit.context import scope
    from cachekit.decorators import cached

    url, start_at, compute = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    raw = redis.Redis.from_url(url)
    timeouts = {"connect": 5000, "operation": 5000}  # headroom: see HEADROOM
    config = {"backend": {"cache": {"store": "redis", "connection": url, "timeouts": timeouts}}}
    manager = CacheManager.from_config(config)

    @cached(namespace="report", ttl=60, lock=True)
    def build_report(month: str) -> str:
        raw.incr("computations")
        time.sleep(compute)
        return "report for " + month

    with scope(plugin="reports", tenant="acme", manager=manager):
        manager.store.ping()
        time.sleep(max(0.0, start_at - time.time()))
        began = time.monotonic()
        result = build_report("2026-11")
        print(json.dumps({"result": result, "waited": time.monotonic() - began}))
    """
)


def test_lock_true_computes_once_across_four_processes(redis_server: RedisServer) -> None:
    """Four processes missing one key at once compute it once; the others get its value."""
    raw = redis.Redis.from_url(redis_server.url)
    raw.delete("computations")
    compute = 0.5
    start_at = time.time() + 2.0  # after every child has imported and connected
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, redis_server.url, str(start_at), str(compute)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [json.loads(child.communicate(timeout=30)[0]) for child in children]
    assert [child.returncode for child in children] == [0] * 4
    assert {o["result"] for o in outputs} == {"report for 2026-11"}
    assert int(raw.get("computations") or 0) == 1
    waits = sorted(o["waited"] for o in outputs)
    print(f"waits (compute {compute}s): {', '.join(f'{w:.3f}s' for w in waits)}")


# --- an outage under a @cached endpoint -------------------------------------------------


def test_redis_outage_under_a_cached_endpoint(private_redis_server: RedisServer) -> None:
    """With Redis stopped every request still answers 200 with the right body; once Redis
    is back, hits resume."""
    manager = redis_manager(private_redis_server.url, **FAST_FAILURE)
    computed: list[int] = []

    @cached(namespace="prices", ttl=60)
    async def price(item: int) -> dict[str, int]:
        computed.append(item)
        return {"item": item, "price": item * 100}

    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse(await price(int(request.path_params["item"])))

    app = CacheMiddleware(
        Starlette(routes=[Route("/price/{item}", endpoint)]), manager=manager, plugin="shop"
    )

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:

            async def get(item: int) -> Any:
                response = await client.get(f"/price/{item}")
                assert response.status_code == 200
                return response.json()

            assert await get(1) == {"item": 1, "price": 100}
            assert await get(1) == {"item": 1, "price": 100}
            assert computed == [1]  # the second was a hit
            private_redis_server.stop()
            for _ in range(10):
                assert await get(1) == {"item": 1, "price": 100}
            assert len(computed) == 11  # called through every time
            private_redis_server.start()
            await asyncio.sleep(0.3)  # the breaker's cooldown
            for _ in range(5):  # the first successful store read closes the breaker
                assert await get(2) == {"item": 2, "price": 200}
            assert computed.count(2) == 1  # hits again
        await manager.aclose()

    asyncio.run(run())


# --- exact counts on real stores --------------------------------------------------------


def frozen_limit(name: str, algorithm: str) -> RateLimit:
    """10 per minute on a clock frozen mid-window, so all hits of a test share one window
    (a real clock could cross a window boundary mid-test and rightly allow 20)."""
    now = time.time()
    frozen = (now // 60) * 60 + 30
    return RateLimit(f"{name}-{time.time_ns()}", 10, 60, algorithm=algorithm, clock=lambda: frozen)


@pytest.mark.parametrize("algorithm", ["fixed", "sliding", "gcra"])
def test_rate_limit_exact_under_100_concurrent_async_hits(
    manager: CacheManager, algorithm: str
) -> None:
    """10/s per tenant: exactly 10 of 100 concurrent hits pass; another tenant is unaffected."""
    limit = frozen_limit(f"search-{algorithm}", algorithm)

    async def hits(tenant: str, n: int) -> list[bool]:
        with scope(plugin="api", tenant=tenant, manager=manager):
            return [r.allowed for r in await asyncio.gather(*(limit.ahit() for _ in range(n)))]

    async def run() -> tuple[list[bool], list[bool]]:
        first = await hits("acme", 100)
        other = await hits("globex", 10)
        await manager.aclose()
        return first, other

    first, other = asyncio.run(run())
    assert first.count(True) == 10
    assert other == [True] * 10


@pytest.mark.parametrize("algorithm", ["fixed", "sliding", "gcra"])
def test_rate_limit_exact_under_100_threads(manager: CacheManager, algorithm: str) -> None:
    """100 threads hitting a limit of 10: exactly 10 pass."""
    limit = frozen_limit(f"export-{algorithm}", algorithm)
    allowed: list[bool] = []
    barrier = threading.Barrier(100)

    def worker() -> None:
        barrier.wait()
        allowed.append(limit.hit().allowed)

    with scope(plugin="api", tenant="acme", manager=manager):
        threads = [
            threading.Thread(target=contextvars.copy_context().run, args=(worker,))
            for _ in range(100)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert allowed.count(True) == 10


def test_counter_incr_is_exact_on_real_stores(manager: CacheManager) -> None:
    """counter().incr() from 50 threads x 20 ends at exactly 1000."""
    hits = counter(f"hits-{time.time_ns()}", ttl=60)

    def worker() -> None:
        for _ in range(20):
            hits.incr()

    with scope(plugin="api", tenant="acme", manager=manager):
        threads = [
            threading.Thread(target=contextvars.copy_context().run, args=(worker,))
            for _ in range(50)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert hits.get() == 1000


def test_stampede_on_a_real_store(manager: CacheManager) -> None:
    """100 asyncio callers and then 50 threads on cold keys compute once each time."""
    calls: list[str] = []

    @cached(namespace=f"stampede-{time.time_ns()}", ttl=60)
    async def slow_async(x: str) -> str:
        calls.append(x)
        await asyncio.sleep(0.05)
        return x

    @cached(namespace=f"stampede-sync-{time.time_ns()}", ttl=60)
    def slow_sync(x: str) -> str:
        calls.append(x)
        time.sleep(0.05)
        return x

    async def run() -> list[str]:
        with scope(plugin="api", tenant="acme", manager=manager):
            out = await asyncio.gather(*(slow_async("a") for _ in range(100)))
        await manager.aclose()
        return out

    assert asyncio.run(run()) == ["a"] * 100
    results: list[str] = []
    with scope(plugin="api", tenant="acme", manager=manager):
        threads = [
            threading.Thread(
                target=contextvars.copy_context().run,
                args=(lambda: results.append(slow_sync("b")),),
            )
            for _ in range(50)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == ["b"] * 50
    assert calls == ["a", "b"]


# --- counters during an outage: on_error="raise" | "ignore" ------------------------------

# short timeouts: a paused server answers nothing, and each call waits for its timeout
PAUSED = {"timeouts": {"connect": 300, "operation": 300}}


def outage_manager(
    kind: str, server: RedisServer | MemcachedServer, **options: Any
) -> CacheManager:
    store = "redis" if kind == "redis" else "memcache"
    connection = server.url if kind == "redis" else f"{server.host}:{server.port}"
    section = {"store": store, "connection": connection, **HEADROOM, **options}
    if kind == "memcache":  # its breaker's cooldown: probe again soon after the outage
        section["memcache"] = {"deadRetry": "300ms"}
    return CacheManager.from_config({"backend": {"cache": section}})


@pytest.fixture(params=["redis", "memcache"])
def outage_server(request: pytest.FixtureRequest) -> tuple[str, RedisServer | MemcachedServer]:
    name = "private_redis_server" if request.param == "redis" else "private_memcached_server"
    return request.param, request.getfixturevalue(name)


@pytest.mark.parametrize("outage", ["stopped", "paused"])
def test_counters_on_a_server_that_fails(
    outage_server: tuple[str, RedisServer | MemcachedServer],
    outage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the server is stopped or paused, counter(on_error="ignore") answers None (sync
    and async, one warning) and a default counter raises StoreError; once the server is
    back both count again."""
    kind, server = outage_server
    manager = outage_manager(
        kind, server, **(FAST_FAILURE | (PAUSED if outage == "paused" else {}))
    )
    name = f"views-{time.time_ns()}"
    lossy, strict = counter(name, on_error="ignore"), counter(name)

    async def lossy_async() -> list[int | None]:
        return [await lossy.aincr(), await lossy.aget()]

    def fail() -> None:
        if outage == "stopped":
            server.stop()
        else:
            pause_process(server.pid)  # type: ignore[arg-type]

    def recover() -> None:
        if outage == "stopped":
            server.start()
        else:
            resume_process(server.pid)  # type: ignore[arg-type]

    with scope(plugin="api", tenant="acme", manager=manager), caplog.at_level(logging.WARNING):
        assert lossy.incr() == 1
        fail()
        try:
            assert [lossy.incr(), lossy.decr(), lossy.get(), *asyncio.run(lossy_async())] == [
                None
            ] * 5
            with pytest.raises(StoreError):
                strict.incr()
        finally:
            recover()
        warned = [r for r in caplog.records if f"counter {name!r} answers None" in r.getMessage()]
        assert len(warned) == 1
        deadline = time.monotonic() + 15  # the breaker's cooldown
        while lossy.incr() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert strict.incr() >= 2
    manager.close()


def test_a_lossy_counter_inside_a_cached_endpoint_survives_an_outage(
    private_redis_server: RedisServer,
) -> None:
    """An endpoint whose @cached function counts lookups with counter(on_error="ignore")
    answers 200 with the right body while Redis is stopped (a default counter would raise
    StoreUnavailable through @cached: a 500)."""
    manager = redis_manager(private_redis_server.url, **FAST_FAILURE)
    lookups = counter("lookups", on_error="ignore")

    @cached(namespace="products", ttl=60)
    async def product(item: int) -> dict[str, int]:
        await lookups.aincr()
        return {"item": item}

    async def endpoint(request: Request) -> JSONResponse:
        body = await product(int(request.path_params["item"]))
        return JSONResponse({**body, "lookups": await lookups.aget()})

    app = CacheMiddleware(
        Starlette(routes=[Route("/product/{item}", endpoint)]), manager=manager, plugin="shop"
    )

    async def run() -> list[Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            answers = [(await client.get("/product/1")).json()]
            private_redis_server.stop()
            for _ in range(3):
                response = await client.get("/product/1")
                assert response.status_code == 200
                answers.append(response.json())
            private_redis_server.start()
        await manager.aclose()
        return answers

    assert asyncio.run(run()) == [{"item": 1, "lookups": 1}] + [{"item": 1, "lookups": None}] * 3
