"""Redis store: per-op cost of the Cache API next to raw redis-py doing the same commands.

Run: .venv/bin/python bench/bench_redis.py   (about 30 s on a quiet machine; needs redis-server
and taskset; BENCH_CPU, BENCH_ROUNDS, BENCH_OPS override the defaults)

The script re-executes itself under ``taskset`` and starts its own redis-server (no
persistence, loopback, free port) pinned to the same core, so every round trip pays the same
same-core loopback cost (see bench/README.md). Cases run round-robin in one process; the
table gives the median time per op and the median of per-round ratios to the raw client.

Both sides use the same client settings (RESP2, the store's timeouts, no retries). The
ratio is what cachekit adds (key building, the breaker, encoding/decoding, argument checks)
less what it saves: without hiredis the store's connections pack commands and read replies
with cachekit.stores.redis_resp, faster than redis-py's pure-Python code. Pairs:

- ``Cache.get`` (msgpack decode of a small dict) vs ``GET`` (raw bytes);
- ``Cache.set(ttl=300)`` (encode) vs ``SET ... PX 300000`` of the same bytes;
- ``Cache.get_many`` of 100 keys vs ``MGET`` of the same 100 keys (and ``MGET`` plus a decode
  of each value, what a raw-client user would have to do too);
- ``Cache.incr`` vs ``INCRBY``; ``Cache.incr(ttl=60)`` (our Lua script, by SHA) vs
  ``INCRBY`` + ``PEXPIRE`` in one pipeline (the usual raw alternative; not atomic on create).

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
from harness import Case, async_case, pin_to_cpu, ratio, report, run_rounds
from redis.backoff import NoBackoff
from servers import RedisServer

from cachekit import CacheManager
from cachekit.codec import Codec
from cachekit.stores.redis import RedisStore

CPU = os.environ.get("BENCH_CPU", str((os.cpu_count() or 1) - 1))  # the last core
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "9"))
OPS = int(os.environ.get("BENCH_OPS", "1000"))
VALUE = {"id": 42, "name": "widget", "tags": ["a", "b"]}
MANY = 100


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

    def raw_mget_decoded() -> Any:
        values = cast("list[bytes | None]", raw.mget(full_keys))
        return [codec.decode(v) for v in values if v is not None]

    async def araw_mget_decoded() -> Any:
        values = cast("list[bytes | None]", await araw.mget(full_keys))
        return [codec.decode(v) for v in values if v is not None]

    sync_cases = [
        Case("raw GET", lambda: raw.get(full_key)),
        Case("Cache.get", lambda: cache.get("item"), baseline="raw GET"),
        Case("raw SET PX", lambda: raw.set(full_key, encoded, px=300_000)),
        Case("Cache.set", lambda: cache.set("item", VALUE, ttl=300), baseline="raw SET PX"),
        Case("raw MGET(100)", lambda: raw.mget(full_keys)),
        Case("raw MGET(100)+decode", raw_mget_decoded, baseline="raw MGET(100)"),
        Case("Cache.get_many(100)", lambda: cache.get_many(keys), baseline="raw MGET(100)"),
        Case("raw INCRBY", lambda: raw.incrby(prefix + "ctr-raw", 1)),
        Case("Cache.incr", lambda: cache.incr("ctr"), baseline="raw INCRBY"),
        Case("raw INCRBY+PEXPIRE pipeline", raw_incr_expire),
        Case(
            "Cache.incr(ttl) Lua",
            lambda: cache.incr("ctr-ttl", ttl=60),
            baseline="raw INCRBY+PEXPIRE pipeline",
        ),
    ]
    async_cases = [
        async_case("raw GET", loop, lambda: araw.get(full_key)),
        async_case("Cache.aget", loop, lambda: cache.aget("item"), baseline="raw GET"),
        async_case("raw SET PX", loop, lambda: araw.set(full_key, encoded, px=300_000)),
        async_case(
            "Cache.aset", loop, lambda: cache.aset("item", VALUE, ttl=300), baseline="raw SET PX"
        ),
        async_case("raw MGET(100)", loop, lambda: araw.mget(full_keys)),
        async_case("raw MGET(100)+decode", loop, araw_mget_decoded, baseline="raw MGET(100)"),
        async_case(
            "Cache.aget_many(100)", loop, lambda: cache.aget_many(keys), baseline="raw MGET(100)"
        ),
        async_case("raw INCRBY", loop, lambda: araw.incrby(prefix + "actr-raw", 1)),
        async_case("Cache.aincr", loop, lambda: cache.aincr("actr"), baseline="raw INCRBY"),
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
    print(f"per case, interleaved; {elapsed:.0f} s of measuring\n")
    for title, cases, many in (
        ("redis store, sync (redis-py)", sync_cases, "Cache.get_many(100)"),
        ("redis store, async (redis.asyncio)", async_cases, "Cache.aget_many(100)"),
    ):
        by_name = {case.name: case for case in cases}
        decoded = Case(many, by_name[many].op, "raw MGET(100)+decode", times=by_name[many].times)
        print(report(title, cases))
        print(f"\n{many} vs raw MGET(100)+decode (same values decoded): ", end="")
        print(f"{ratio(decoded, by_name):.2f}x\n")

    loop.run_until_complete(manager.aclose())
    loop.run_until_complete(araw.aclose())
    loop.close()
    manager.close()
    raw.close()


if __name__ == "__main__":
    main()
