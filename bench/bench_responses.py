"""Response caching under uvicorn: a cached 10 KB JSON endpoint against the same app
returning precomputed bytes, against fastapi-cache2 on the same endpoint and store, and the
304 path.

    .venv/bin/python bench/bench_responses.py [--rounds 41] [--requests 200] [--cpu 0]

One uvicorn process serves one FastAPI app (behind ``install``: CacheMiddleware with a fixed
plugin) with five endpoints over the same 10 KB JSON document:

* ``/precomputed``: returns the encoded bytes, computed once at start-up (the baseline:
  no cache can answer faster than an app that has the answer ready);
* ``/cachekit``: ``@cache_response(ttl=3600)`` returning the document (always a hit after
  the warm-up), on the store given by ``--store`` (Redis by default, started here);
* ``/fastapi-cache``: fastapi-cache2's ``@cache(expire=3600)`` on the same function and the
  same store (its ``RedisBackend`` or ``InMemoryBackend``);
* the 304 path: ``/cachekit`` with ``If-None-Match`` of its ETag;
* ``/prefix/document``: the same document cached by the middleware's ``responses=``
  option, which answers a hit before FastAPI's routing runs.

A minimal raw-socket HTTP/1.1 client drives it (one keep-alive connection per case, one
request in flight: a bounded load that never queues); server, Redis and client are pinned
to one CPU (``--cpu``). Cases run round-robin (bench/harness.py); the ratios are medians
of per-round ratios against ``/precomputed`` measured in the same round.

Targets (issue 16): the hit path >= 0.85x of the precomputed app's requests/s; faster
than fastapi-cache2; the 304 path at least as fast as the hit path.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import Case, run_rounds  # noqa: E402  # bench/ is on sys.path when run as a script
from http_load import Client, ServerProcess, serve_uvicorn  # noqa: E402

TARGET_HIT = 0.85


def document() -> dict[str, Any]:
    """A 10 KB JSON document: 60 catalog items."""
    return {
        "items": [
            {
                "id": i,
                "name": f"item {i}",
                "price": 10 + i / 100,
                "tags": ["a", "b", "c"],
                "description": "x" * 90,
            }
            for i in range(60)
        ]
    }


# --- server side: `bench_responses.py --serve STORE_URL` ---------------------------------


def serve(store_url: str) -> None:
    """Serve the benchmark app on a free loopback port and print the port."""
    import contextlib
    from collections.abc import AsyncIterator

    from fastapi import FastAPI
    from fastapi_cache import FastAPICache
    from fastapi_cache.backends.inmemory import InMemoryBackend
    from fastapi_cache.decorator import cache
    from starlette.responses import Response

    from cachekit import cache_response
    from cachekit.contrib.starlette import install
    from cachekit.contrib.starlette import lifespan as cachekit_lifespan
    from cachekit.host import CacheManager
    from cachekit.responses import response_cache

    data = document()
    precomputed = json.dumps(data, separators=(",", ":")).encode()
    manager = CacheManager() if store_url == "memory" else CacheManager.from_url(store_url)

    @contextlib.asynccontextmanager
    async def peer(app: Any) -> AsyncIterator[None]:
        if store_url == "memory":
            FastAPICache.init(InMemoryBackend(), prefix="peer")
        else:
            from fastapi_cache.backends.redis import RedisBackend
            from redis import asyncio as aioredis

            FastAPICache.init(RedisBackend(aioredis.from_url(store_url)), prefix="peer")
        yield

    app = FastAPI(lifespan=cachekit_lifespan(manager, peer))

    @app.get("/precomputed")
    async def precomputed_endpoint() -> Response:
        return Response(precomputed, media_type="application/json")

    @app.get("/cachekit")
    @cache_response(ttl=3600)
    async def cachekit_endpoint() -> dict[str, Any]:
        return data

    @app.get("/fastapi-cache")
    @cache(expire=3600)
    async def peer_endpoint() -> dict[str, Any]:
        return data

    @app.get("/prefix/document")
    async def prefix_endpoint() -> dict[str, Any]:
        return data

    install(
        app,
        manager,
        plugin="bench",
        manage_store=False,
        responses={"/prefix": response_cache(3600)},
    )
    serve_uvicorn(app)


def main() -> None:
    """Run the benchmark and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--requests", type=int, default=200, help="per case per round")
    parser.add_argument("--cpu", default="0", help="CPU to pin server, store and client to")
    parser.add_argument("--store", choices=["redis", "memory"], default="redis")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    if args.cpu != "none" and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(args.cpu)})  # the Redis server started below inherits it
    redis_server = None
    store_url = "memory"
    if args.store == "redis":
        from servers import RedisServer

        redis_server = RedisServer("redis-server", workdir=Path(tempfile.mkdtemp())).start()
        store_url = redis_server.url
    server = ServerProcess(__file__, store_url, args.cpu)
    clients: list[Client] = []
    try:
        precomputed = Client(server.port, "/precomputed")
        hit = Client(server.port, "/cachekit")
        peer = Client(server.port, "/fastapi-cache")
        prefix = Client(server.port, "/prefix/document")
        for client in (precomputed, hit, peer, prefix):
            client.request()
        etag = hit.header("etag")
        not_modified = Client(server.port, "/cachekit", 304, f"If-None-Match: {etag}\r\n")
        clients = [precomputed, hit, peer, not_modified, prefix]
        cases = [
            Case("precomputed bytes (no cache)", precomputed.request),
            Case("cachekit @cache_response hit", hit.request),
            Case("fastapi-cache2 @cache hit", peer.request),
            Case("cachekit 304 (If-None-Match)", not_modified.request),
            Case("cachekit responses= prefix hit (middleware)", prefix.request),
        ]
        started = time.perf_counter()
        run_rounds(cases, rounds=args.rounds, ops=args.requests)
        elapsed = time.perf_counter() - started
    finally:
        for client in clients:
            client.close()
        server.stop()
        if redis_server is not None:
            redis_server.stop()

    base = cases[0]
    pinned = "not pinned" if args.cpu == "none" else f"all pinned to CPU {args.cpu}"
    print(
        f"### Response caching: a 10 KB JSON endpoint under uvicorn, store {args.store}\n\n"
        f"{args.rounds} interleaved rounds x {args.requests} requests per case, one keep-alive "
        f"connection per case, one request in flight, {pinned}; {elapsed:.0f} s.\n"
    )
    print("| case | median req/s | median µs/req | req/s vs precomputed (median of rounds) |")
    print("|---|---:|---:|---:|")
    ratios: dict[str, float] = {}
    for case in cases:
        seconds = statistics.median(case.times)
        ratios[case.name] = statistics.median(
            b / t for b, t in zip(base.times, case.times, strict=True)
        )
        print(
            f"| {case.name} | {1 / seconds:,.0f} | {seconds * 1e6:,.1f} "
            f"| {ratios[case.name]:.3f}x |"
        )
    hit_ratio = ratios[cases[1].name]
    peer_ratio = ratios[cases[2].name]
    not_modified_ratio = ratios[cases[3].name]
    print(
        f"\nHit path {hit_ratio:.3f}x of precomputed (target >= {TARGET_HIT}x: "
        f"{'met' if hit_ratio >= TARGET_HIT else 'MISSED'}); vs fastapi-cache2 "
        f"{hit_ratio / peer_ratio:.2f}x (target > 1: "
        f"{'met' if hit_ratio > peer_ratio else 'MISSED'}); 304 path "
        f"{not_modified_ratio / hit_ratio:.2f}x of the hit path (target >= 1: "
        f"{'met' if not_modified_ratio >= hit_ratio else 'MISSED'})."
    )


if __name__ == "__main__":
    main()
