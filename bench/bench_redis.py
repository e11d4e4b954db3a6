"""Redis store: per-op cost of the Cache API next to raw redis-py doing the same commands.

Run: .venv/bin/python bench/bench_redis.py   (about 30 s on a quiet machine; needs redis-server
and taskset; BENCH_CPU, BENCH_ROUNDS, BENCH_OPS override the defaults)

The script re-executes itself under ``taskset`` and starts its own redis-server (no
persistence, loopback, free port) pinned to the same core, so every round trip pays the same
same-core loopback cost (see bench/README.md). Cases run round-robin in one process; the
table gives the median time per op and the median of per-round ratios to the raw client.

Both sides are installed as a user installs them (``cachekit[redis]`` brings hiredis, the
driver's own C reply parser) and use the same client settings (RESP2, the store's timeouts,
no retries), so the ratio is what cachekit adds: key building, the breaker, the connection
gate, encoding/decoding, argument checks. Pairs (issue 11's targets in brackets):

- ``Cache.get`` (msgpack decode of a small dict) vs ``GET`` plus the same decode [<= 1.10x];
- ``Cache.get_many`` of 100 keys vs ``MGET`` of the same 100 keys plus a decode of each
  value [<= 1.15x];
- ``Cache.incr`` vs ``INCRBY`` [<= 1.15x];
- ``Cache.set(ttl=300)`` (encode) vs ``SET ... PX 300000`` of the same bytes;
- ``Cache.incr(ttl=60)`` (our Lua script, by SHA) vs ``INCRBY`` + ``PEXPIRE`` in one pipeline
  (the usual raw alternative; not atomic on create).

Each sync and async (``redis.asyncio``; an async case awaits 100 ops per loop turn).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))
import redis
import redis.asyncio
import redis.utils
from harness import Case, async_case, pin_to_cpu, ratio, report, run_rounds
from redis.backoff import NoBackoff
from servers import RedisServer

from cachekit.codec import Codec
from cachekit.host import CacheManager
from cachekit.stores.redis import RedisStore

CPU = os.environ.get("BENCH_CPU", str((os.cpu_count() or 1) - 1))  # the last core
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "9"))
OPS = int(os.environ.get("BENCH_OPS", "1000"))
VALUE = {"id": 42, "name": "widget", "tags": ["a", "b"]}
MANY = 100
TARGETS = {"Cache.get": 1.10, "Cache.get_many(100)": 1.15, "Cache.incr": 1.15}


def main() -> None:
    pin_to_cpu(CPU)
    workdir = Path(tempfile.mkdtemp(prefix="cachekit-bench-"))
    server = RedisServer("redis-server", workdir=workdir).start()
    try:
        run(server.url)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run(url: str) -> None:
    store = RedisStore.from_url(url)
    manager = CacheManager(store=store)
    cache = manager.for_plugin("catalog", tenant="acme")
    prefix = manager.keyspace.scope_prefix("catalog", "acme", None)
    codec = Codec()
    encoded = codec.encode(VALUE)
    keys = [f"item:{i}" for i in range(MANY)]
    full_keys = [prefix + key for key in keys]
    same: dict[str, Any] = {"socket_timeout": 0.5, "socket_connect_timeout": 0.25, "protocol": 2}
    raw = redis.Redis.from_url(url, retry=redis.retry.Retry(NoBackoff(), 0), **same)
    araw = redis.asyncio.Redis.from_url(
        url, retry=redis.asyncio.retry.Retry(NoBackoff(), 0), **same
    )
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    cache.set("item", VALUE, ttl=300)
    cache.set_many(dict.fromkeys(keys, VALUE), ttl=300)
    full_key = prefix + "item"

    def raw_incr_expire() -> Any:
        pipe = raw.pipeline(transaction=False)
        pipe.incrby(prefix + "ctr-ttl-raw", 1)
        pipe.pexpire(prefix + "ctr-ttl-raw", 60_000)
        return pipe.execute()

    async def araw_incr_expire() -> Any:
        pipe = araw.pipeline(transaction=False)
        pipe.incrby(prefix + "actr-ttl-raw", 1)
        pipe.pexpire(prefix + "actr-ttl-raw", 60_000)
        return await pipe.execute()

    def raw_get_decoded() -> Any:
        value = raw.get(full_key)
        return None if value is None else codec.decode(cast("bytes", value))

    async def araw_get_decoded() -> Any:
        value = await araw.get(full_key)
        return None if value is None else codec.decode(cast("bytes", value))

    def raw_mget_decoded() -> Any:
        values = cast("list[bytes | None]", raw.mget(full_keys))
        return [codec.decode(v) for v in values if v is not None]

    async def araw_mget_decoded() -> Any:
        values = cast("list[bytes | None]", await araw.mget(full_keys))
        return [codec.decode(v) for v in values if v is not None]

    sync_cases = [
        Case("raw GET", lambda: raw.get(full_key)),
        Case("raw GET+decode", raw_get_decoded, baseline="raw GET"),
        Case("Cache.get", lambda: cache.get("item"), baseline="raw GET+decode"),
        Case("raw MGET(100)", lambda: raw.mget(full_keys)),
        Case("raw MGET(100)+decode", raw_mget_decoded, baseline="raw MGET(100)"),
        Case("Cache.get_many(100)", lambda: cache.get_many(keys), baseline="raw MGET(100)+decode"),
        Case("raw INCRBY", lambda: raw.incrby(prefix + "ctr-raw", 1)),
        Case("Cache.incr", lambda: cache.incr("ctr"), baseline="raw INCRBY"),
        Case("raw SET PX", lambda: raw.set(full_key, encoded, px=300_000)),
        Case("Cache.set", lambda: cache.set("item", VALUE, ttl=300), baseline="raw SET PX"),
        Case("raw INCRBY+PEXPIRE pipeline", raw_incr_expire),
        Case(
            "Cache.incr(ttl) Lua",
            lambda: cache.incr("ctr-ttl", ttl=60),
            baseline="raw INCRBY+PEXPIRE pipeline",
        ),
    ]
    async_cases = [
        async_case("raw GET", loop, lambda: araw.get(full_key)),
        async_case("raw GET+decode", loop, araw_get_decoded, baseline="raw GET"),
        async_case("Cache.aget", loop, lambda: cache.aget("item"), baseline="raw GET+decode"),
        async_case("raw MGET(100)", loop, lambda: araw.mget(full_keys)),
        async_case("raw MGET(100)+decode", loop, araw_mget_decoded, baseline="raw MGET(100)"),
        async_case(
            "Cache.aget_many(100)",
            loop,
            lambda: cache.aget_many(keys),
            baseline="raw MGET(100)+decode",
        ),
        async_case("raw INCRBY", loop, lambda: araw.incrby(prefix + "actr-raw", 1)),
        async_case("Cache.aincr", loop, lambda: cache.aincr("actr"), baseline="raw INCRBY"),
        async_case("raw SET PX", loop, lambda: araw.set(full_key, encoded, px=300_000)),
        async_case(
            "Cache.aset", loop, lambda: cache.aset("item", VALUE, ttl=300), baseline="raw SET PX"
        ),
        async_case("raw INCRBY+PEXPIRE pipeline", loop, araw_incr_expire),
        async_case(
            "Cache.aincr(ttl) Lua",
            loop,
            lambda: cache.aincr("actr-ttl", ttl=60),
            baseline="raw INCRBY+PEXPIRE pipeline",
        ),
    ]
    started = time.perf_counter()
    run_rounds(sync_cases, rounds=ROUNDS, ops=OPS)
    run_rounds(async_cases, rounds=ROUNDS, ops=OPS)
    elapsed = time.perf_counter() - started
    print(f"redis-server and this process pinned to CPU {CPU}; {ROUNDS} rounds x {OPS} ops")
    print(f"per case, interleaved; {elapsed:.0f} s of measuring")
    print(f"redis-py {redis.__version__}, hiredis parser: {redis.utils.HIREDIS_AVAILABLE}\n")
    for title, cases in (
        ("redis store, sync (redis-py)", sync_cases),
        ("redis store, async (redis.asyncio)", async_cases),
    ):
        by_name = {case.name: case for case in cases}
        print(report(title, cases))
        print()
        for case in cases:
            target = TARGETS.get(case.name.replace("Cache.a", "Cache."))
            r = ratio(case, by_name)
            if target is not None and r is not None:
                verdict = "met" if r <= target else "MISSED"
                print(
                    f"- {case.name}: {r:.3f}x of {case.baseline} (target <= {target}x): {verdict}"
                )
        print()
    loop.run_until_complete(manager.aclose())
    loop.run_until_complete(araw.aclose())
    loop.close()
    manager.close()
    raw.close()


if __name__ == "__main__":
    main()
