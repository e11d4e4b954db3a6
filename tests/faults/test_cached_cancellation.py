"""Callers cancelled or past their deadline, in ``@cached`` and in rate limits.

A web server cancels the task of a request whose client went away or whose deadline
passed; the other requests of the same key must not notice. Each scenario runs many
concurrent callers of one key, cancels a random subset (``task.cancel()``) and puts
another under ``asyncio.wait_for`` deadlines, and counts what the others saw.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import Outcome, scaled

from cachekit.context import scope
from cachekit.counters import RateLimit
from cachekit.decorators import cached
from cachekit.host import CacheManager

HEADROOM = {"timeouts": {"connect": 5000, "operation": 5000}}  # a busy machine is not an outage


def _config(request: pytest.FixtureRequest, store: str) -> dict[str, Any]:
    if store == "memory":
        return {"store": "memory"}
    if store == "memcache":
        server = request.getfixturevalue("memcached_server")
        return {"store": "memcache", "connection": f"{server.host}:{server.port}", **HEADROOM}
    if store == "cluster":
        nodes = [{"url": url} for url in request.getfixturevalue("redis_cluster").root_urls]
        return {"store": "redis", "redis": {"cluster": {"rootNodes": nodes}}, **HEADROOM}
    server = request.getfixturevalue(f"{store}_server")  # redis, valkey
    return {"store": store, "connection": server.url, **HEADROOM}


@pytest.fixture
def manager(request: pytest.FixtureRequest) -> Iterator[CacheManager]:
    made = CacheManager.from_config({"backend": {"cache": _config(request, request.param)}})
    yield made
    made.close()


STORES = ["memory", "redis", "valkey", "memcache"]


@pytest.mark.parametrize("manager", STORES, indirect=True)
def test_cancelled_and_timed_out_callers_leave_the_others_their_value(
    manager: CacheManager, outcome: Callable[..., Outcome], request: pytest.FixtureRequest
) -> None:
    """Invariant: every caller of a ``@cached`` key that was neither cancelled nor under a
    deadline gets the correct value, never a ``CancelledError`` (whoever computes); a
    caller under a deadline gets the value or its own ``TimeoutError``."""
    store = request.node.callspec.params["manager"]
    callers, rounds = 24, scaled(12)
    tally = outcome("cached: cancelled callers", store, concurrency=callers)
    rng = random.Random(12)
    run_id = time.time_ns()

    @cached(namespace="cancellation", ttl=60)
    async def square(x: int) -> int:
        await asyncio.sleep(rng.uniform(0.005, 0.03))  # a computation to cancel mid-way
        return x * x

    async def one_round(n: int) -> None:
        x = run_id % 1000 + n
        kinds = [rng.choice(["plain", "cancel", "deadline"]) for _ in range(callers)]
        tasks = []
        for kind in kinds:
            call = square(x)
            if kind == "deadline":
                call = asyncio.wait_for(call, rng.uniform(0.001, 0.03))
            tasks.append(asyncio.create_task(call))
            await asyncio.sleep(0)  # callers arrive one by one: the first computes
        for kind, task in zip(kinds, tasks, strict=True):
            if kind == "cancel":
                asyncio.get_running_loop().call_later(rng.uniform(0, 0.03), task.cancel)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for kind, result in zip(kinds, results, strict=True):
            fine = result == x * x or (
                (kind == "cancel" and isinstance(result, asyncio.CancelledError))
                or (kind == "deadline" and type(result) is TimeoutError)
            )
            if fine:
                tally.ok()
            else:
                tally.violated(f"round {n}: a {kind} caller got {result!r}")
        await square.ainvalidate(x)  # the next round misses again

    async def run() -> None:
        for n in range(rounds):
            await one_round(n)
        await manager.aclose()

    with scope(plugin="faults", tenant=f"t{run_id}", manager=manager):
        asyncio.run(run())
    tally.check()


@pytest.mark.parametrize("algorithm", ["fixed", "sliding", "gcra"])
@pytest.mark.parametrize("manager", [*STORES, "cluster"], indirect=True)
def test_cancelled_hits_leave_the_count_exact(
    manager: CacheManager,
    algorithm: str,
    outcome: Callable[..., Outcome],
    request: pytest.FixtureRequest,
) -> None:
    """Invariant: after concurrent ``ahit`` calls of which a random subset is cancelled at
    a random moment, the limit counts exactly the hits that returned allowed (no hit
    counted without a result, no refused hit counted)."""
    store = request.node.callspec.params["manager"]
    hits, limit_of = 60, 50  # a limit above what survives the cancellations: counts show
    tally = outcome(f"rate limit ({algorithm}): cancelled hits", store, concurrency=hits)
    rng = random.Random(5)
    frozen = (time.time() // 60) * 60 + 30  # one window for the whole round

    async def one_round(n: int) -> None:
        # on_error="deny": a hit the store could not decide (memcached's GCRA gives up after
        # 32 contended compare-and-set attempts) is refused and counts nothing; "allow"
        # would admit it uncounted, by design, and hide what this scenario counts
        limit = RateLimit(
            f"cancel-{time.time_ns()}",
            limit_of,
            60,
            algorithm=algorithm,
            on_error="deny",
            clock=lambda: frozen,
        )
        tasks = [asyncio.create_task(limit.ahit()) for _ in range(hits)]
        loop = asyncio.get_running_loop()
        for task in rng.sample(tasks, hits // 3):
            loop.call_later(rng.uniform(0, 0.005), task.cancel)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        allowed = sum(1 for r in results if not isinstance(r, BaseException) and r.allowed)
        counted = limit_of - (await limit.apeek()).remaining
        if allowed == counted:
            tally.ok(hits)
        else:
            tally.violated(f"round {n}: {allowed} hits returned allowed, {counted} counted")

    async def run() -> None:
        for n in range(scaled(8)):
            await one_round(n)
        await manager.aclose()

    with scope(plugin="faults", tenant=f"t{time.time_ns()}", manager=manager):
        asyncio.run(run())
    tally.check()
