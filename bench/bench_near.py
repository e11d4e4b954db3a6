"""The near cache on Redis: a hit from process memory against the store, the raw client and
the peers' client-side caches; the miss path against the store without a near cache.

Run: .venv/bin/python bench/bench_near.py   (about 1 min; needs redis-server, taskset and the
`bench` extra; BENCH_CPU, BENCH_ROUNDS, BENCH_OPS override the defaults)

redis-py's client-side cache refuses servers older than Redis 7.4; with an older redis-server
on PATH that baseline is left out (the script says so). BENCH_REDIS_SERVER names another
binary, e.g. a Redis 7.4 built from source (``make BUILD_TLS=no`` in a 7.4.x checkout), and
then every case runs against it.

One run, one core: the script re-executes itself under ``taskset`` and starts its own
redis-server pinned to the same core (see bench/README.md); cases run round-robin in one
process and each ratio is the median of the per-round ratios to the case named in the table.
Every Redis client here gets the store's settings (the store's timeouts, no retries) and
every value is the same small dict, decoded with the same msgpack codec wherever cachekit
decodes. Issue 18's targets:

- a near-cache hit (``Cache.get`` of a held key) within 1.5x of a memory-store ``Cache.get``
  and at least 10x faster than a raw redis-py ``GET`` + the same decode;
- a sync ``@cached`` hit with the near cache faster than redis-py's own client-side cache
  (RESP3, ``cache_config=CacheConfig()``) behind the same few lines of memoizing a user
  would write; an async ``@cached`` hit faster than cashews ``@cache`` on
  ``redis://...?client_side=True`` (its BCAST tracking and in-memory tier) — redis-py's
  client-side cache is sync only, cashews async only;
- the miss path (the key is absent, so every call goes to Redis) within 1.05x of the same
  store without a near cache.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import redis
from cashews import Cache as CashewsCache
from harness import (
    Case,
    async_case,
    near_serving,
    pin_to_cpu,
    ratio,
    redis_url,
    report,
    run_rounds,
)
from redis.backoff import NoBackoff
from redis.cache import CacheConfig

from cachekit.codec import Codec
from cachekit.context import scope
from cachekit.decorators import cached
from cachekit.host import CacheManager

CPU = os.environ.get("BENCH_CPU", str((os.cpu_count() or 1) - 1))  # the last core
SERVER = os.environ.get("BENCH_REDIS_SERVER", "redis-server")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))
OPS = int(os.environ.get("BENCH_OPS", "2000"))
BATCH = 25  # a sub-microsecond case runs 25 ops per timed call, so a round lasts long enough
CSC = "redis-py client-side cache (RESP3) + decode"
VALUE = {"id": 42, "name": "widget", "tags": ["a", "b"]}
NEAR = {"maxEntries": 10_000, "maxBytes": 64 * 1024 * 1024, "ttl": "60s"}
# what the store's clients get (cachekit/stores/redis/clients.py), for every raw client here
SAME: dict[str, Any] = {
    "socket_timeout": 0.5,
    "socket_connect_timeout": 0.25,
    "retry": redis.retry.Retry(NoBackoff(), 0),
}


def load(item_id: int) -> dict[str, Any]:
    return VALUE


async def aload(item_id: int) -> dict[str, Any]:
    return VALUE


def redis_manager(url: str, *, near: bool) -> CacheManager:
    section: dict[str, Any] = {"store": "redis", "connection": url}
    if near:
        section["nearCache"] = NEAR
    return CacheManager.from_config({"backend": {"cache": section}})


def batched(name: str, op: Callable[[], object], baseline: str | None = None) -> Case:
    """A case running ``op`` BATCH times per timed call."""

    def many() -> None:
        for _ in range(BATCH):
            op()

    return Case(name, many, baseline=baseline, batch=BATCH)


def get_cases(url: str, near: CacheManager, plain: CacheManager) -> list[Case]:
    codec = Codec()
    memory = CacheManager().for_plugin("catalog", tenant="acme")
    held = near.for_plugin("catalog", tenant="acme")
    without = plain.for_plugin("catalog", tenant="acme")
    near_serving(near, held)
    for cache in (memory, held):
        cache.set("item", VALUE, ttl=300)
    raw = redis.Redis.from_url(url, protocol=2, **SAME)
    raw.set("raw:item", codec.encode(VALUE))

    def raw_get_decoded() -> Any:
        value = raw.get("raw:item")
        return None if value is None else codec.decode(value)  # type: ignore[arg-type]

    return [
        batched("memory-store Cache.get", lambda: memory.get("item")),
        Case("raw redis-py GET + decode", raw_get_decoded),
        batched("near Cache.get (hit)", lambda: held.get("item"), "memory-store Cache.get"),
        Case("Redis Cache.get, no near cache, absent key", lambda: without.get("absent")),
        Case(
            "near Cache.get, absent key (miss path)",
            lambda: held.get("absent"),
            "Redis Cache.get, no near cache, absent key",
        ),
    ]


def csc_cached(client: redis.Redis, codec: Codec) -> Callable[..., Any]:
    """The memoizing a user writes around redis-py's client-side cache: GET (answered from
    redis-py's cache when held), decode; on a miss call the function and SET the encoding."""

    def decorate(fn: Callable[[int], Any]) -> Callable[[int], Any]:
        def wrapper(item_id: int) -> Any:
            key = f"csc:{fn.__name__}:{item_id}"
            value = client.get(key)
            if value is not None:
                return codec.decode(value)  # type: ignore[arg-type]
            result = fn(item_id)
            client.set(key, codec.encode(result), ex=300)
            return result

        return wrapper

    return decorate


def cached_sync_cases(url: str) -> list[Case]:
    ours = cached(namespace="bench", ttl=300)(load)
    ours(1)
    csc = redis.Redis.from_url(url, protocol=3, cache_config=CacheConfig(), **SAME)
    try:
        csc.ping()
    except redis.ConnectionError as exc:  # "client-side caching is supported by Redis 7.4 or later"
        print(f"redis-py client-side cache left out: {exc} (see BENCH_REDIS_SERVER)")
        return [batched("cachekit @cached, near cache", lambda: ours(1))]
    via_csc = csc_cached(csc, Codec())(load)
    via_csc(1)
    return [
        batched(CSC, lambda: via_csc(1)),
        batched("cachekit @cached, near cache", lambda: ours(1), CSC),
    ]


def cached_async_cases(url: str, loop: asyncio.AbstractEventLoop, peer: CashewsCache) -> list[Case]:
    peer.setup(f"{url}?client_side=true&socket_timeout=0.5&socket_connect_timeout=0.25")
    via_cashews = peer(ttl="5m")(aload)
    ours = cached(namespace="bench-async", ttl=300)(aload)
    for fn in (via_cashews, ours):
        loop.run_until_complete(fn(1))
    return [
        async_case("cashews @cache, client_side=True", loop, lambda: via_cashews(1), batch=200),
        async_case(
            "cachekit async @cached, near cache",
            loop,
            lambda: ours(1),
            batch=200,
            baseline="cashews @cache, client_side=True",
        ),
    ]


def targets(cases: list[Case]) -> str:
    """Issue 18's targets, each as measured in this run."""
    by_name = {case.name: case for case in cases}

    def against(name: str, baseline: str) -> float:
        found = ratio(dataclasses.replace(by_name[name], baseline=baseline), by_name)
        assert found is not None
        return found

    rows = [
        ("near hit vs memory-store Cache.get", "near Cache.get (hit)", "memory-store Cache.get"),
        ("near hit vs raw GET + decode", "near Cache.get (hit)", "raw redis-py GET + decode"),
        (
            "sync @cached hit vs redis-py client-side cache",
            "cachekit @cached, near cache",
            CSC,
        ),
        (
            "async @cached hit vs cashews client_side",
            "cachekit async @cached, near cache",
            "cashews @cache, client_side=True",
        ),
        (
            "miss path vs no near cache",
            "near Cache.get, absent key (miss path)",
            "Redis Cache.get, no near cache, absent key",
        ),
    ]
    goals = ["<= 1.50x", "<= 0.10x (10x faster)", "< 1.00x", "< 1.00x", "<= 1.05x"]
    lines = ["### targets (issue 18)", "", "| pair | ratio | target |", "|---|---:|---|"]
    for (title, name, baseline), goal in zip(rows, goals, strict=True):
        if baseline not in by_name:
            continue
        lines.append(f"| {title} | {against(name, baseline):.2f}x | {goal} |")
    return "\n".join(lines)


def run(url: str) -> None:
    near = redis_manager(url, near=True)
    plain = redis_manager(url, near=False)
    cases = get_cases(url, near, plain)
    run_rounds(cases, rounds=ROUNDS, ops=OPS)
    results = [report("Cache.get: near hit, peers, miss path", cases)]
    with scope(plugin="bench", tenant="acme", manager=near):
        sync_cases = cached_sync_cases(url)
        run_rounds(sync_cases, rounds=ROUNDS, ops=OPS * 10)
        results.append(report("sync @cached hit", sync_cases))
        loop = asyncio.new_event_loop()
        peer = CashewsCache()
        async_cases = cached_async_cases(url, loop, peer)
        run_rounds(async_cases, rounds=ROUNDS, ops=OPS * 10)
        results.append(report("async @cached hit", async_cases))
        loop.run_until_complete(peer.close())
        loop.close()
    results.append(targets([*cases, *sync_cases, *async_cases]))
    print("\n\n".join(results))
    hits = sum(row.near_hits for row in near.stats())
    misses = sum(row.near_misses for row in near.stats())
    print(f"\nnear cache: {hits:,} hits, {misses:,} misses")
    near.close()
    plain.close()


def main() -> None:
    pin_to_cpu(CPU)  # the redis-server started below inherits the pin
    with redis_url(binary=SERVER) as url:
        run(url)


if __name__ == "__main__":
    main()
