"""A Starlette host with two plugins, ``catalog`` and ``reviews``, each mounted under
``/api/<plugin>/`` and each with its own tenant-scoped cache.

The plugins' code is identical and never names a plugin or tenant: ``CacheMiddleware``
resolves them per request (plugin from the path, tenant from the ``X-Tenant-ID`` header)
and ``current_cache()`` hands each request the cache of its own scope.

Try it (``python -m examples.starlette_app``, then)::

    curl -X PUT localhost:8000/api/catalog/items/color -H 'X-Tenant-ID: acme' -d '"red"'
    curl localhost:8000/api/catalog/items/color -H 'X-Tenant-ID: acme'     # "red"
    curl localhost:8000/api/catalog/items/color -H 'X-Tenant-ID: globex'   # 404: other tenant
    curl localhost:8000/api/reviews/items/color -H 'X-Tenant-ID: acme'     # 404: other plugin
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from cachekit import (
    MISS,
    RateLimitExceeded,
    cached,
    counter,
    current_cache,
    current_scope,
    rate_limited,
)
from cachekit.contrib.starlette import rate_limit_handler
from cachekit.host import CacheManager, CacheMiddleware
from cachekit.resolvers import header, path_prefix

CONFIG = Path(__file__).with_name("app-config.yaml")
PLUGINS = ("catalog", "reviews")


# --- plugin code: the same module for every plugin; the scope comes from the request ---


async def scope_info(request: Request) -> JSONResponse:
    """The scope this request runs in (async endpoint)."""
    scope = current_scope()
    return JSONResponse({"plugin": scope.plugin, "tenant": scope.tenant})


def scope_info_sync(request: Request) -> JSONResponse:
    """The same from a sync endpoint, which Starlette runs in its thread pool."""
    scope = current_scope()
    return JSONResponse(
        {
            "plugin": scope.plugin,
            "tenant": scope.tenant,
            "in_thread_pool": threading.current_thread() is not threading.main_thread(),
        }
    )


async def count_write() -> None:
    """A background task: runs after the response is sent, still in the request's scope."""
    await current_cache().aincr("writes")


async def put_item(request: Request) -> JSONResponse:
    """Store the JSON body at ``key`` in this plugin's cache for this tenant."""
    key = request.path_params["key"]
    try:
        value = await request.json()
    except json.JSONDecodeError:
        return JSONResponse({"error": "the body must be JSON"}, status_code=400)
    await current_cache().aset(key, value)
    return JSONResponse({"key": key, "value": value}, background=BackgroundTask(count_write))


async def get_item(request: Request) -> JSONResponse:
    """The value at ``key``, or 404."""
    key = request.path_params["key"]
    value = await current_cache().aget(key, MISS)
    if value is MISS:
        return JSONResponse({"error": f"no item {key!r}"}, status_code=404)
    scope = current_scope()
    return JSONResponse({"key": key, "value": value, "tenant": scope.tenant})


def delete_item(request: Request) -> Response:
    """Delete ``key`` (a sync endpoint: the sync cache API, in the thread pool)."""
    deleted = current_cache().delete(request.path_params["key"])
    return Response(status_code=204 if deleted else 404)


async def stream_items(request: Request) -> StreamingResponse:
    """Stream ``?keys=a,b,c`` as JSON lines, reading the cache while the body streams."""
    keys = [k for k in request.query_params.get("keys", "").split(",") if k]

    async def lines() -> AsyncIterator[bytes]:
        for key in keys:
            await asyncio.sleep(0)  # let other requests run in between: scopes stay apart
            value = await current_cache().aget(key)
            line = {"key": key, "value": value, "tenant": current_scope().tenant}
            yield json.dumps(line).encode() + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def stats(request: Request) -> JSONResponse:
    """How many writes this plugin saw for this tenant (counted by a background task)."""
    return JSONResponse({"writes": await current_cache().aget("writes", 0)})


lookups = counter("product-lookups", on_error="ignore")  # None during a store outage
hits = counter("hits")


@cached(namespace="products", ttl=60)
async def load_product(product_id: int) -> dict[str, object]:
    """A slow lookup, memoized per plugin and tenant; counts how often it really runs."""
    await lookups.aincr()
    await asyncio.sleep(0.05)  # stands for a database or an upstream API
    return {"id": product_id, "name": f"product {product_id}"}


async def get_product(request: Request) -> JSONResponse:
    """A @cached lookup: only the first request per tenant pays for it."""
    product = await load_product(int(request.path_params["product_id"]))
    return JSONResponse({"product": product, "lookups": await lookups.aget()})


async def count_hit(request: Request) -> JSONResponse:
    """counter("hits"): an atomic counter of this plugin and tenant."""
    return JSONResponse({"hits": await hits.aincr()})


@rate_limited("search", 5, per=60, algorithm="gcra")
async def search(request: Request) -> JSONResponse:
    """At most 5 searches per minute per plugin and tenant (GCRA: a burst of 5, then one
    every 12 s); the 6th in a row answers 429."""
    return JSONResponse({"query": request.query_params.get("q", ""), "results": []})


def plugin_app(name: str) -> Starlette:
    """One plugin's routes. ``GET /`` does not touch the cache (the benchmark's endpoint)."""

    async def index(request: Request) -> JSONResponse:
        endpoints = ["items/{key}", "stream", "stats", "products/{id}", "hits", "search"]
        return JSONResponse({"plugin": name, "endpoints": endpoints})

    return Starlette(
        routes=[
            Route("/", index),
            Route("/scope", scope_info),
            Route("/scope/sync", scope_info_sync),
            Route("/items/{key}", put_item, methods=["PUT"]),
            Route("/items/{key}", get_item, methods=["GET"]),
            Route("/items/{key}", delete_item, methods=["DELETE"]),
            Route("/stream", stream_items),
            Route("/stats", stats),
            Route("/products/{product_id:int}", get_product),
            Route("/hits", count_hit, methods=["POST"]),
            Route("/search", search),
        ],
        # Starlette answers an endpoint's exception with a 500 itself: this turns a refused
        # rate limit into a 429 with Retry-After and RateLimit-* headers.
        exception_handlers={RateLimitExceeded: rate_limit_handler},
    )


# --- the host: mounts the plugins, owns the cache config ------------------------------


async def home(request: Request) -> PlainTextResponse:
    """The host's own page (scope: plugin ``host``): how to try the plugins."""
    base = str(request.base_url).rstrip("/")
    return PlainTextResponse(
        "cachekit Starlette example: plugins "
        + ", ".join(f"/api/{p}/" for p in PLUGINS)
        + " each get their own cache per tenant (X-Tenant-ID header).\n\n"
        + f"curl -X PUT {base}/api/catalog/items/color -H 'X-Tenant-ID: acme' -d '\"red\"'\n"
        + f"curl {base}/api/catalog/items/color -H 'X-Tenant-ID: acme'    # red\n"
        + f"curl {base}/api/catalog/items/color -H 'X-Tenant-ID: globex'  # 404\n"
        + f"curl {base}/api/reviews/items/color -H 'X-Tenant-ID: acme'    # 404\n"
        + f"curl '{base}/api/catalog/stream?keys=color' -H 'X-Tenant-ID: acme'\n"
        + f"curl {base}/api/catalog/products/7 -H 'X-Tenant-ID: acme'     # @cached\n"
        + f"curl -X POST {base}/api/catalog/hits -H 'X-Tenant-ID: acme'   # counter\n"
        + f"curl '{base}/api/catalog/search?q=x' -H 'X-Tenant-ID: acme'   # 429 after 5\n"
    )


async def healthz(request: Request) -> JSONResponse:
    """Liveness probe."""
    return JSONResponse({"ok": True})


def create_app(manager: CacheManager | None = None, *, cache_middleware: bool = True) -> ASGIApp:
    """The host app.

    :param manager: the cache manager (default: built from ``app-config.yaml``).
    :param cache_middleware: wrap in ``CacheMiddleware`` (``False`` only for the benchmark's
        baseline: the plugins' cache endpoints then fail with ``NoScopeError``).
    """
    app = Starlette(
        routes=[
            Route("/", home),
            Route("/healthz", healthz),
            *(Mount(f"/api/{name}", app=plugin_app(name)) for name in PLUGINS),
        ]
    )
    if not cache_middleware:
        return app
    return CacheMiddleware(
        app,
        manager=manager if manager is not None else CacheManager.from_yaml(CONFIG),
        plugin=path_prefix({f"/api/{name}": name for name in PLUGINS}, default="host"),
        # A client-chosen header is only acceptable behind authentication that checks the
        # caller belongs to the tenant. Without the header a request runs in the platform
        # scope (tenant None); drop tenant_required=False to answer 400 instead.
        tenant=header("X-Tenant-ID"),
        tenant_required=False,
        cache_header=True,  # X-Cache: HIT|MISS on responses that ran @cached functions
    )


app = create_app()
