"""Binding sockets: a plugin process's ``get`` through its socket to a memory binding,
next to a raw redis-py ``GET`` on loopback; and pipelined ``get`` throughput.

Run: .venv/bin/python bench/bench_socket.py   (about 20 s; needs redis-server and taskset;
BENCH_CPU, BENCH_ROUNDS, BENCH_OPS override the defaults)

The script re-executes itself under ``taskset``, then starts two servers pinned to the same
core: a redis-server (no persistence, loopback, free port) and a cachekit host — this
script again, in ``--host`` mode, serving plugin ``catalog``'s memory binding on a Unix
socket (:class:`cachekit.sockets.BindingServer`). This process plays the plugin: it reads
through ``cachekit.plugin.cache()``, a regular ``Cache`` over the socket, so each ``get``
pays key building, a frame each way, the host's scope and policy, and the decode.

Pairs, each sync and async, compared in the same rounds (issue 15's targets in brackets):

- ``Cache.get`` through the socket vs raw redis-py ``GET`` plus the same msgpack decode
  [<= 1.2x];
- pipelined ``Cache.aget``: 200 gets in flight on one connection per loop turn, in ops/s
  [>= 50,000 ops/s on one core — client and host share it].
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import redis
import redis.asyncio
import redis.utils
from harness import Case, async_case, pin_to_cpu, ratio, report, run_rounds
from redis.backoff import NoBackoff
from servers import RedisServer

from cachekit.codec import Codec
from cachekit.host import CacheManager

CPU = os.environ.get("BENCH_CPU", str((os.cpu_count() or 1) - 1))  # the last core
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "9"))
OPS = int(os.environ.get("BENCH_OPS", "2000"))
VALUE = {"id": 42, "name": "widget", "tags": ["a", "b"]}
IN_FLIGHT = 200
TARGET_RATIO, TARGET_OPS = 1.2, 50_000


def host(path: str) -> None:
    """``--host PATH``: serve plugin ``catalog``'s memory binding at ``path`` until stdin
    closes."""
    from cachekit.sockets import BindingServer, socket_binding

    async def serve() -> None:
        server = BindingServer(socket_binding(CacheManager(), "catalog"))
        await server.start(path)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.close()

    asyncio.run(serve())


def main() -> None:
    pin_to_cpu(CPU)
    workdir = Path(tempfile.mkdtemp(prefix="cachekit-bench-"))
    server = RedisServer("redis-server", workdir=workdir).start()
    path = str(workdir / "catalog.sock")
    hosting = subprocess.Popen(
        [sys.executable, __file__, "--host", path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert hosting.stdout is not None
        assert hosting.stdout.readline().strip() == "ready"
        os.environ["CACHEKIT_CACHE_SOCKET"] = path
        run(server.url)
    finally:
        if hosting.stdin is not None:
            hosting.stdin.close()
        hosting.wait(10)
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run(url: str) -> None:
    from cachekit.plugin import cache as plugin_cache

    cache = plugin_cache(tenant="acme")
    codec = Codec()
    encoded = codec.encode(VALUE)
    same: dict[str, Any] = {"socket_timeout": 0.5, "socket_connect_timeout": 0.25, "protocol": 2}
    raw = redis.Redis.from_url(url, retry=redis.retry.Retry(NoBackoff(), 0), **same)
    araw = redis.asyncio.Redis.from_url(
        url, retry=redis.asyncio.retry.Retry(NoBackoff(), 0), **same
    )
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    cache.set("item", VALUE, ttl=300)
    raw.set("catalog:acme::item", encoded, px=300_000)
    assert cache.get("item") == VALUE

    def raw_get() -> Any:
        return codec.decode(raw.get("catalog:acme::item"))

    async def araw_get() -> Any:
        return codec.decode(await araw.get("catalog:acme::item"))

    async def pipelined() -> None:
        await asyncio.gather(*[cache.aget("item") for _ in range(IN_FLIGHT)])

    sync_cases = [
        Case("raw redis-py GET + decode", raw_get),
        Case("Cache.get via socket", lambda: cache.get("item"), "raw redis-py GET + decode"),
    ]
    async_cases = [
        async_case("raw redis.asyncio GET + decode", loop, araw_get),
        async_case(
            "Cache.aget via socket",
            loop,
            lambda: cache.aget("item"),
            baseline="raw redis.asyncio GET + decode",
        ),
        Case(
            f"Cache.aget via socket, {IN_FLIGHT} in flight",
            lambda: loop.run_until_complete(pipelined()),
            baseline="raw redis.asyncio GET + decode",
            batch=IN_FLIGHT,
        ),
    ]
    started = time.perf_counter()
    run_rounds(sync_cases, rounds=ROUNDS, ops=OPS)
    run_rounds(async_cases, rounds=ROUNDS, ops=OPS * 5)
    elapsed = time.perf_counter() - started
    print(f"redis-server, the cachekit host and this process pinned to CPU {CPU}")
    print(f"{ROUNDS} rounds, interleaved; {elapsed:.0f} s of measuring")
    print(f"redis-py {redis.__version__}, hiredis parser: {redis.utils.HIREDIS_AVAILABLE}\n")
    for title, cases in (("sync", sync_cases), ("async", async_cases)):
        by_name = {case.name: case for case in cases}
        print(report(f"binding socket (memory binding), {title}", cases))
        print()
        for case in cases:
            r = ratio(case, by_name)
            if "in flight" in case.name:
                rate = 1 / sorted(case.times)[len(case.times) // 2]
                verdict = "met" if rate >= TARGET_OPS else "MISSED"
                print(f"- {case.name}: {rate:,.0f} ops/s (target >= {TARGET_OPS:,}): {verdict}")
            elif r is not None:
                verdict = "met" if r <= TARGET_RATIO else "MISSED"
                print(
                    f"- {case.name}: {r:.3f}x of {case.baseline} (target <= {TARGET_RATIO}x): "
                    f"{verdict}"
                )
        print()
    loop.run_until_complete(araw.aclose())
    loop.close()
    raw.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--host"]:
        host(sys.argv[2])
    else:
        main()
