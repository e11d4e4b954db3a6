"""@cached hit cost and counter().incr() against the raw client and peer libraries.

Run: .venv/bin/python bench/bench_cached.py        (about 40 s; needs redis-server and the
     `bench` extra: pip install -e '.[bench]')

One process, one run; this process and its own redis-server are pinned to the same core
(see bench/README.md for why); cases run round-robin and each ratio is the median of the
per-round ratios against the baseline named in the table.

Targets (issue 6):
- sync memory-store hit (inside a scope, value decoded) no slower than
  ``cachetools.cached(TTLCache, lock=...)``;
- async memory hit at least 3x faster than aiocache and 5x faster than cashews (defaults);
- a Redis hit within 1.15x of one raw redis-py GET plus the same msgpack decode (issue 11);
- ``counter().incr()`` on Redis within 1.15x of a raw INCR (issue 11).

The Redis cases run with the extras as a user installs them (``cachekit[redis]``: hiredis).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import sys
import threading
from pathlib import Path
from typing import Any

import cachetools
import redis
from aiocache import cached as aiocache_cached
from cashews import cache as cashews_cache
from dogpile.cache import make_region
from flask import Flask
from flask_caching import Cache as FlaskCache
from redis.backoff import NoBackoff

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness import Case, async_case, pin_to_cpu, report, run_rounds  # noqa: E402
from servers import RedisServer  # noqa: E402

from cachekit.context import scope  # noqa: E402
from cachekit.counters import counter  # noqa: E402
from cachekit.decorators import cached  # noqa: E402
from cachekit.host import CacheManager  # noqa: E402

VALUE = {"id": 42, "name": "widget", "tags": ["a", "b"]}
CORE = "0"
ASYNC_BATCH = 200


def load(item_id: int) -> dict[str, Any]:
    return VALUE


async def aload(item_id: int) -> dict[str, Any]:
    return VALUE


def sync_memory_cases() -> list[Case]:
    lru = functools.lru_cache(maxsize=1024)(load)
    ttl_lock = cachetools.cached(cachetools.TTLCache(maxsize=1024, ttl=300), lock=threading.Lock())(
        load
    )

    # cachetools hands every caller the same object; a caller that mutates it changes the
    # cache. cachekit decodes a fresh copy on every hit (as every network store must): this
    # reference pays for the same isolation with copy.deepcopy.
    def ttl_lock_copied(item_id: int) -> dict[str, Any]:
        return copy.deepcopy(ttl_lock(item_id))

    region = make_region().configure("dogpile.cache.memory", expiration_time=300)
    dogpile = region.cache_on_arguments()(load)
    app = Flask(__name__)
    flask_cache = FlaskCache(app, config={"CACHE_TYPE": "SimpleCache"})
    memoized = flask_cache.memoize(timeout=300)(load)
    ours = cached(namespace="bench", ttl=300)(load)
    ctx = app.app_context()
    ctx.push()
    for fn in (lru, ttl_lock, dogpile, memoized, ours):
        fn(1)
    return [
        Case("cachetools.cached(TTLCache, lock)", lambda: ttl_lock(1)),
        Case("functools.lru_cache", lambda: lru(1), baseline="cachetools.cached(TTLCache, lock)"),
        Case("cachetools.cached(TTLCache, lock) + deepcopy", lambda: ttl_lock_copied(1)),
        Case(
            "dogpile.cache memory", lambda: dogpile(1), baseline="cachetools.cached(TTLCache, lock)"
        ),
        Case(
            "Flask-Caching memoize (SimpleCache)",
            lambda: memoized(1),
            baseline="cachetools.cached(TTLCache, lock)",
        ),
        Case(
            "cachekit @cached (memory)",
            lambda: ours(1),
            baseline="cachetools.cached(TTLCache, lock)",
        ),
        Case(
            "cachekit @cached (memory) ",
            lambda: ours(1),
            baseline="cachetools.cached(TTLCache, lock) + deepcopy",
        ),
    ]


def async_memory_cases(loop: asyncio.AbstractEventLoop) -> list[Case]:
    cashews_cache.setup("mem://")
    via_aiocache = aiocache_cached(ttl=300)(aload)
    via_cashews = cashews_cache(ttl="5m")(aload)
    ours = cached(namespace="bench-async", ttl=300)(aload)
    for fn in (via_aiocache, via_cashews, ours):
        loop.run_until_complete(fn(1))
    return [
        async_case("aiocache @cached (memory)", loop, lambda: via_aiocache(1), batch=ASYNC_BATCH),
        async_case("cashews @cache (mem://)", loop, lambda: via_cashews(1), batch=ASYNC_BATCH),
        async_case(
            "cachekit async @cached (memory)",
            loop,
            lambda: ours(1),
            batch=ASYNC_BATCH,
            baseline="aiocache @cached (memory)",
        ),
        async_case(
            "cachekit async @cached (memory) ",
            loop,
            lambda: ours(1),
            batch=ASYNC_BATCH,
            baseline="cashews @cache (mem://)",
        ),
    ]


def redis_cases(url: str, manager: CacheManager) -> list[Case]:
    # The raw client gets the store's client settings (redis-py 8 defaults to RESP3; the
    # store speaks RESP2 with its timeouts and no retries), so the ratio is cachekit's own.
    raw = redis.Redis.from_url(
        url,
        protocol=2,
        socket_timeout=0.5,
        socket_connect_timeout=0.25,
        retry=redis.retry.Retry(NoBackoff(), 0),
    )
    ours = cached(namespace="bench", ttl=300)(load)
    hits = counter("hits")
    ours(1)
    key = manager.full_key(manager.for_plugin("bench", "acme").namespace("bench"), "1")
    codec = manager.codec
    raw.set("raw:1", codec.encode(VALUE))
    assert raw.get(key) is not None

    def raw_get_decoded() -> Any:
        value = raw.get("raw:1")
        return None if value is None else codec.decode(value)  # type: ignore[arg-type]

    return [
        Case("raw redis-py GET", lambda: raw.get("raw:1")),
        Case("raw redis-py GET + decode", raw_get_decoded, baseline="raw redis-py GET"),
        Case("cachekit @cached (redis)", lambda: ours(1), baseline="raw redis-py GET + decode"),
        Case("raw redis-py INCR", lambda: raw.incr("raw:hits")),
        Case("cachekit counter().incr() (redis)", hits.incr, baseline="raw redis-py INCR"),
    ]


def main() -> None:
    pin_to_cpu(CORE)  # the redis-server started below inherits the pin
    results = []
    memory = CacheManager()
    with scope(plugin="bench", tenant="acme", manager=memory):
        cases = sync_memory_cases()
        run_rounds(cases, rounds=15, ops=20_000)
        results.append(report("sync hit, in-process store", cases))
        loop = asyncio.new_event_loop()
        cases = async_memory_cases(loop)
        run_rounds(cases, rounds=15, ops=20_000)
        results.append(report("async hit, in-process store", cases))
        loop.close()
    server = RedisServer("redis-server", workdir=Path("/tmp/cachekit-bench-redis"))
    server.start()
    try:
        config = {"backend": {"cache": {"store": "redis", "connection": server.url}}}
        manager = CacheManager.from_config(config)
        with scope(plugin="bench", tenant="acme", manager=manager):
            cases = redis_cases(server.url, manager)
            run_rounds(cases, rounds=15, ops=3_000)
        results.append(report("Redis (same core as the server)", cases))
    finally:
        server.stop()
    print("\n\n".join(results))


if __name__ == "__main__":
    main()
