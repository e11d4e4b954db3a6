"""Bounds under ids that never repeat: a plugin id from the path without ``known=`` and a
tenant id from a header let every request name a new scope. Whatever the number of ids,
the manager's metric rows stay within ``metrics.maxSeries`` (plus one ``other`` row per
store) and the memory the process keeps for scopes stops growing once the bounded tables
(metric rows, the middleware's bindings, escaped ids) are full."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import Outcome, scaled

from cachekit import current_cache
from cachekit.asgi import CacheMiddleware
from cachekit.host import CacheManager
from cachekit.metrics import DEFAULT_MAX_SERIES
from cachekit.resolvers import header, path_segment

# Memory the process may keep, in all, for the ids of the measured phase (the phase brings
# thousands of new ids; a row or a binding kept per id would cost a few hundred bytes each).
RETAINED_BUDGET = 256 * 1024
# Past every bounded table: the metric cap (2 rows per id here), the middleware's 1024
# bindings and the 4096 escaped ids cachekit.keys remembers (2 per id).
WARM_IDS = 3 * DEFAULT_MAX_SERIES


@pytest.fixture(params=["memory", "redis"])
def manager(request: pytest.FixtureRequest) -> Iterator[CacheManager]:
    if request.param == "memory":
        m = CacheManager()
    else:
        url = request.getfixturevalue("redis_server").url
        m = CacheManager.from_config({"backend": {"cache": {"store": "redis", "connection": url}}})
    yield m
    m.close()


async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await current_cache().aget("k")
    await current_cache("users").aget("k")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def request_scope(n: int) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": f"/api/plugin-{n}/items",
        "raw_path": f"/api/plugin-{n}/items".encode(),
        "query_string": b"",
        "headers": [(b"x-tenant-id", f"tenant-{n}".encode())],
    }


async def serve(app: Any, ids: range, tally: Outcome, concurrency: int) -> None:
    async def one(n: int) -> None:
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(request_scope(n), receive, send)
        if statuses == [200]:
            tally.ok()
        else:
            tally.violated(f"request for id {n} answered {statuses}")

    for start in range(ids.start, ids.stop, concurrency):
        await asyncio.gather(*(one(n) for n in range(start, min(start + concurrency, ids.stop))))


def test_new_ids_through_the_middleware_keep_memory_and_series_bounded(
    manager: CacheManager, outcome: Callable[..., Outcome]
) -> None:
    """Requests naming ever-new plugins and tenants all succeed, leave at most maxSeries + 1
    metric rows, and the memory kept after the bounded tables fill does not grow with them."""
    concurrency = 16
    tally = outcome("new ids through the middleware", manager.store.name, concurrency)
    app = CacheMiddleware(
        inner, manager, plugin=path_segment(1), tenant=header("X-Tenant-ID"), manage_store=False
    )
    measured = scaled(4000)

    async def run() -> tuple[int, int]:  # one event loop: async clients belong to one
        try:
            await serve(app, range(WARM_IDS), tally, concurrency)
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            await serve(app, range(WARM_IDS, WARM_IDS + measured), tally, concurrency)
            gc.collect()
            return before, tracemalloc.get_traced_memory()[0]
        finally:
            await manager.aclose()

    gc.collect()
    tracemalloc.start()
    try:
        before, after = asyncio.run(run())
    finally:
        tracemalloc.stop()
    rows = manager.stats()
    if len(rows) > manager.metrics.max_series + 1:
        tally.violated(f"{len(rows)} metric rows for maxSeries {manager.metrics.max_series}")
    if sum(r.misses for r in rows) != 2 * (WARM_IDS + measured):
        tally.violated(f"{sum(r.misses for r in rows)} misses counted, not every read")
    if after - before > RETAINED_BUDGET:
        tally.violated(f"{after - before} bytes kept for {measured} new ids")
    tally.check()


def test_new_ids_through_for_plugin_keep_memory_and_series_bounded(
    outcome: Callable[..., Outcome],
) -> None:
    """Host code asking for_plugin() for ever-new scopes keeps nothing per id once the
    metric rows are full: the caches it drops are freed."""
    manager = CacheManager()
    tally = outcome("new ids through for_plugin", "memory")
    measured = scaled(20_000)

    def use(ids: range) -> None:
        for n in ids:
            cache = manager.for_plugin(f"plugin-{n}", tenant=f"tenant-{n}")
            cache.get("k")
            cache.namespace("users").get("k")
            tally.ok()

    gc.collect()
    tracemalloc.start()
    try:
        use(range(WARM_IDS))
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        use(range(WARM_IDS, WARM_IDS + measured))
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    if len(manager.stats()) > manager.metrics.max_series + 1:
        tally.violated(f"{len(manager.stats())} metric rows")
    if after - before > RETAINED_BUDGET:
        tally.violated(f"{after - before} bytes kept for {measured} new ids")
    tally.check()
