"""Memcache store: per-op cost of the Cache API next to raw pymemcache doing the same commands,
and the async choice (worker thread vs a native asyncio client).

Run: .venv/bin/python bench/bench_memcache.py   (about 45 s; needs memcached and taskset;
the async comparison also uses aiomcache when it is installed: pip install aiomcache)

The script re-executes itself under ``taskset`` and starts its own memcached (loopback, free
port, one worker thread) pinned to the same core, so every round trip pays the same same-core
loopback cost (see bench/README.md). Cases run round-robin in one process; the table gives
the median time per op and the median of per-round ratios to the baseline.

Both sides use pymemcache's public ``Client`` with the same settings (TCP_NODELAY, the
store's timeouts, replies awaited), and the raw client sends the same commands to the same
memcached keys (``store.locate`` gives the key with its generation tag). The ratio is what
cachekit adds: key building, the generation lookup, the breaker, the pool, encoding and
biasing. Pairs (the targets are 1.25x):

- ``Cache.get`` (msgpack decode of a small dict) vs raw ``get`` plus the same decode;
- ``Cache.set(ttl=300)`` vs the same msgpack encode plus raw ``set ... 300``;
- ``Cache.incr`` vs raw ``incr`` of the same (biased) counter;
- ``Cache.get_many`` of 100 keys vs one raw ``get_many`` of the same 100 keys plus decoding.

``MemcacheStore.*`` lines call the store directly with full keys and bytes (what ``Cache``
hands it) against the raw command alone, isolating the store's cost from the ``Cache``
layer's (key checks, msgpack).

Async: ``Cache.aget`` (the sync client in a worker thread, ``asyncio.to_thread``) vs
aiomcache's ``get`` and vs a bare asyncio-streams ``get`` (the floor any native client could
reach), one await at a time (100 awaits per loop turn) and 50 concurrent tasks.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, async_case, pin_to_cpu, report, run_rounds
from pymemcache.client.base import Client
from servers import MemcachedServer

from cachekit.codec import Codec
from cachekit.host import CacheManager
from cachekit.stores.memcache import MemcacheStore

try:
    import aiomcache
except ImportError:  # the async comparison then shows the streams floor only
    aiomcache = None

CPU = os.environ.get("BENCH_CPU", "0")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "11"))
OPS = int(os.environ.get("BENCH_OPS", "2000"))
MANY_OPS = int(os.environ.get("BENCH_MANY_OPS", "200"))
CONCURRENCY = 50
VALUE = {"id": 42, "name": "widget", "tags": ["a", "b"]}
MANY = 100


def concurrent_case(
    name: str, loop: asyncio.AbstractEventLoop, op: Callable[[], Awaitable[Any]], **kw: Any
) -> Case:
    """A case running CONCURRENCY tasks of one ``op()`` each per loop turn."""

    async def together() -> None:
        await asyncio.gather(*(op() for _ in range(CONCURRENCY)))

    return Case(name, lambda: loop.run_until_complete(together()), batch=CONCURRENCY, **kw)


class StreamsClient:
    """The least a native asyncio client must do for ``get``: one connection per task
    (a small pool), write the command, read the reply."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self, key: bytes) -> bytes | None:
        conn = (
            self.idle.pop() if self.idle else await asyncio.open_connection("127.0.0.1", self.port)
        )
        reader, writer = conn
        writer.write(b"get " + key + b"\r\n")
        line = await reader.readline()
        value = None
        if line != b"END\r\n":
            value = (await reader.readexactly(int(line.split()[3]) + 2))[:-2]
            await reader.readline()
        self.idle.append(conn)
        return value

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


def main() -> None:
    pin_to_cpu(CPU)
    workdir = Path(tempfile.mkdtemp(prefix="cachekit-bench-"))
    server = MemcachedServer(workdir=workdir, extra_args=("-t", "1")).start()
    try:
        run(server.port)
    finally:
        server.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def run(port: int) -> None:
    store = MemcacheStore(f"127.0.0.1:{port}")
    manager = CacheManager(store=store)
    cache = manager.for_plugin("catalog", tenant="acme")
    codec = Codec()
    encoded = codec.encode(VALUE)
    keys = [f"item:{i}" for i in range(MANY)]
    raw = Client(
        ("127.0.0.1", port), connect_timeout=0.25, timeout=0.5, no_delay=True, default_noreply=False
    )
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    cache.set("item", VALUE, ttl=300)
    cache.set_many(dict.fromkeys(keys, VALUE), ttl=300)
    cache.set("ctr", 0)
    cache.set("ctr-raw", 0)
    stored = store.locate(manager.full_key(cache, "item"))[1]
    stored_many = [store.locate(manager.full_key(cache, k))[1] for k in keys]
    stored_ctr = store.locate(manager.full_key(cache, "ctr-raw"))[1]
    full, full_many = manager.full_key(cache, "item"), [manager.full_key(cache, k) for k in keys]
    full_ctr = manager.full_key(cache, "ctr-store")

    def raw_get_decoded() -> Any:
        return codec.decode(raw.get(stored))

    def raw_encoded_set() -> Any:
        return raw.set(stored, codec.encode(VALUE), 300, False)

    def raw_get_many_decoded() -> Any:
        return {k: codec.decode(v) for k, v in raw.get_many(stored_many).items()}

    sync_cases = [
        Case("raw get", lambda: raw.get(stored)),
        Case("raw get+decode", raw_get_decoded),
        Case("MemcacheStore.get", lambda: store.get(full), baseline="raw get"),
        Case("Cache.get", lambda: cache.get("item"), baseline="raw get+decode"),
        Case("raw set", lambda: raw.set(stored, encoded, 300, False)),
        Case("raw encode+set", raw_encoded_set),
        Case("MemcacheStore.set", lambda: store.set(full, encoded, 300.0), baseline="raw set"),
        Case("Cache.set", lambda: cache.set("item", VALUE, ttl=300), baseline="raw encode+set"),
        Case("raw incr", lambda: raw.incr(stored_ctr, 1)),
        Case("MemcacheStore.incr", lambda: store.incr(full_ctr, 1, None), baseline="raw incr"),
        Case("Cache.incr", lambda: cache.incr("ctr"), baseline="raw incr"),
    ]
    many = "raw get_many(100)"
    many_decoded = "raw get_many(100)+decode"
    many_cases = [
        Case(many, lambda: raw.get_many(stored_many)),
        Case(many_decoded, raw_get_many_decoded),
        Case("MemcacheStore.get_many(100)", lambda: store.get_many(full_many), baseline=many),
        Case("Cache.get_many(100)", lambda: cache.get_many(keys), baseline=many_decoded),
    ]

    streams = StreamsClient(port)
    native: Any = aiomcache.Client("127.0.0.1", port, pool_size=CONCURRENCY) if aiomcache else None
    key_bytes = stored.encode()
    async_cases = [async_case("asyncio streams get", loop, lambda: streams.get(key_bytes))]
    concurrent_cases = [
        concurrent_case(f"asyncio streams get x{CONCURRENCY}", loop, lambda: streams.get(key_bytes))
    ]
    if native is not None:
        async_cases.append(async_case("aiomcache get", loop, lambda: native.get(key_bytes)))
        concurrent_cases.append(
            concurrent_case(f"aiomcache get x{CONCURRENCY}", loop, lambda: native.get(key_bytes))
        )
    base = "aiomcache get" if native is not None else "asyncio streams get"
    async_cases.append(
        async_case("Cache.aget (worker thread)", loop, lambda: cache.aget("item"), baseline=base)
    )
    concurrent_cases.append(
        concurrent_case(
            f"Cache.aget x{CONCURRENCY} (worker thread)",
            loop,
            lambda: cache.aget("item"),
            baseline=f"{base} x{CONCURRENCY}",
        )
    )

    started = time.perf_counter()
    run_rounds(sync_cases, rounds=ROUNDS, ops=OPS)
    run_rounds(many_cases, rounds=ROUNDS, ops=MANY_OPS)
    run_rounds(async_cases, rounds=ROUNDS, ops=OPS)
    run_rounds(concurrent_cases, rounds=ROUNDS, ops=OPS)
    elapsed = time.perf_counter() - started
    print(f"memcached and this process pinned to CPU {CPU}; {ROUNDS} rounds x {OPS} ops")
    print(f"({MANY_OPS} for get_many); per case, interleaved; {elapsed:.0f} s of measuring\n")
    print(report("memcache store, sync (pymemcache)", sync_cases + many_cases))
    print()
    aio = f"aiomcache {aiomcache.__version__}" if aiomcache else "aiomcache not installed"
    print(report(f"async: worker thread vs native asyncio ({aio})", async_cases))
    print()
    print(report(f"async, {CONCURRENCY} concurrent tasks", concurrent_cases))

    if native is not None:
        loop.run_until_complete(native.close())
    streams.close()
    loop.run_until_complete(manager.aclose())
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    manager.close()
    raw.close()


if __name__ == "__main__":
    main()
