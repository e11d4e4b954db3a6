"""Response caching of FastAPI endpoints and of an ASGI app's path prefixes, over HTTP from
real uvicorn servers; the cross-process lock on Redis; fail-open on a store outage. (Not in
scripts/test's oldest lane: it has no FastAPI.)"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from http_servers import uvicorn_serving
from pydantic import BaseModel
from responses_apps import HEADROOM
from servers import RedisServer
from starlette.responses import PlainTextResponse

from cachekit import current_scope
from cachekit.asgi import CacheMiddleware
from cachekit.contrib.starlette import install
from cachekit.host import CacheManager, set_default_manager
from cachekit.resolvers import header
from cachekit.responses import ainvalidate_tags, cache_response, response_cache

TENANT = {"X-Tenant-ID": "acme"}


class Product(BaseModel):
    id: int
    name: str
    tenant: str | None


@pytest.fixture
def manager() -> Iterator[CacheManager]:
    manager = CacheManager()
    yield manager
    set_default_manager(None)
    manager.close()


def fastapi_app(manager: CacheManager, calls: Counter[str]) -> FastAPI:
    app = FastAPI()

    @app.get("/products/{product_id}")
    @cache_response(ttl=60, tags=("product:{product_id}",))
    async def product(product_id: int, detail: bool = False) -> Product:
        calls["product"] += 1
        return Product(id=product_id, name=f"p{product_id}", tenant=current_scope().tenant)

    @app.get("/sync/{product_id}")
    @cache_response(ttl=60)
    def sync_product(product_id: int) -> dict[str, Any]:
        calls["sync"] += 1
        return {"id": product_id}

    @app.get("/with-request")
    @cache_response(ttl=60)
    async def with_request(request: Request) -> dict[str, Any]:
        calls["with-request"] += 1
        return {"q": request.query_params.get("q")}

    @app.post("/products/{product_id}/changed")
    async def changed(product_id: int) -> None:
        await ainvalidate_tags(f"product:{product_id}")

    install(app, manager, plugin="shop", tenant=header("X-Tenant-ID"))
    return app


@pytest.fixture
def served(manager: CacheManager) -> Iterator[tuple[httpx.Client, Counter[str]]]:
    calls: Counter[str] = Counter()
    with (
        uvicorn_serving(fastapi_app(manager, calls)) as url,
        httpx.Client(base_url=url, headers=TENANT) as client,
    ):
        yield client, calls


def test_a_fastapi_endpoint_returning_a_model_is_cached_as_json(
    served: tuple[httpx.Client, Counter[str]],
) -> None:
    """A model returned by an endpoint is served as JSON, then from the cache; the query
    parameter FastAPI reads is part of the key."""
    http, calls = served
    first = http.get("/products/7")
    assert first.json() == {"id": 7, "name": "p7", "tenant": "acme"}
    assert first.headers["content-type"] == "application/json"
    assert http.get("/products/7").headers["x-cache"] == "HIT"
    assert http.get("/products/7?detail=true").headers["x-cache"] == "MISS"
    assert calls["product"] == 2


def test_the_openapi_schema_does_not_show_cachekits_request_parameter(
    served: tuple[httpx.Client, Counter[str]],
) -> None:
    """The request parameter the decorator adds for FastAPI is not a query parameter of the
    API."""
    http, _ = served
    schema = http.get("/openapi.json", headers=TENANT).json()
    names = [p["name"] for p in schema["paths"]["/products/{product_id}"]["get"]["parameters"]]
    assert names == ["product_id", "detail"]


def test_sync_and_request_taking_fastapi_endpoints(
    served: tuple[httpx.Client, Counter[str]],
) -> None:
    """A def endpoint and one that takes the Request itself are cached too."""
    http, calls = served
    for _ in range(2):
        http.get("/sync/1")
        assert http.get("/with-request?q=a").json() == {"q": "a"}
    assert (calls["sync"], calls["with-request"]) == (1, 1)


def test_fastapi_tag_invalidation(served: tuple[httpx.Client, Counter[str]]) -> None:
    """ainvalidate_tags from another endpoint makes the product run again."""
    http, calls = served
    http.get("/products/7")
    http.post("/products/7/changed")
    assert http.get("/products/7").headers["x-cache"] == "MISS"
    assert calls["product"] == 2


def test_asgi_middleware_responses_caches_a_prefix(manager: CacheManager) -> None:
    """responses={"/api": 60} caches GETs under /api in the request's scope; other paths,
    excluded paths and POSTs pass through, and a successful POST invalidates its path."""
    calls: Counter[str] = Counter()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        calls[path] += 1
        tenant = current_scope().tenant if path != "/health" else None
        response = PlainTextResponse(f"{path} {tenant} {calls[path]}")
        await response(scope, receive, send)

    wrapped = CacheMiddleware(
        app,
        manager,
        plugin="shop",
        tenant=header("X-Tenant-ID"),
        exclude=["/health"],
        responses={"/api": 60, "/": response_cache(1, vary=("X-Region",))},
    )
    with uvicorn_serving(wrapped) as url, httpx.Client(base_url=url, headers=TENANT) as http:
        assert http.get("/api/x").headers["x-cache"] == "MISS"
        hit = http.get("/api/x")
        assert (hit.headers["x-cache"], hit.text) == ("HIT", "/api/x acme 1")
        assert http.get("/api/x", headers={"X-Tenant-ID": "globex"}).text == "/api/x globex 2"
        assert http.get("/other").headers["vary"] == "x-region"
        assert http.get("/health").text == "/health None 1"
        assert "x-cache" not in http.get("/health").headers
        assert "x-cache" not in http.post("/api/x").headers
        # RFC 9111 section 4.4: a successful POST invalidates the path's responses
        assert http.get("/api/x").headers["x-cache"] == "MISS"


def test_lock_true_runs_the_endpoint_once_across_event_loops(redis_server: RedisServer) -> None:
    """Two uvicorn servers (two event loops, as two processes would be) on one Redis with
    lock=True: forty concurrent cold requests split between them run the endpoint once."""
    calls: Counter[str] = Counter()
    section = {"store": "redis", "connection": redis_server.url, **HEADROOM}
    manager = CacheManager.from_config({"backend": {"cache": section}})
    manager.for_plugin("shop").clear()

    def app() -> FastAPI:
        api = FastAPI()

        @api.get("/report")
        @cache_response(ttl=60, lock=True)
        async def report() -> dict[str, int]:
            calls["report"] += 1
            await asyncio.sleep(0.5)
            return {"n": calls["report"]}

        install(api, manager, plugin="shop")
        return api

    async def ask(urls: list[str]) -> list[httpx.Response]:
        async with httpx.AsyncClient() as client:
            return await asyncio.gather(*(client.get(f"{urls[i % 2]}/report") for i in range(40)))

    try:
        with (
            uvicorn_serving(app(), lifespan="on") as one,
            uvicorn_serving(app(), lifespan="on") as two,
        ):
            answers = asyncio.run(ask([one, two]))
    finally:
        set_default_manager(None)
        manager.close()
    assert {answer.json()["n"] for answer in answers} == {1}
    assert calls["report"] == 1


def test_a_store_outage_serves_the_apps_own_response(private_redis_server: RedisServer) -> None:
    """With Redis stopped, a cached endpoint answers from the app (fail-open), every time,
    and caches again once Redis is back."""
    calls: Counter[str] = Counter()
    section = {
        "store": "redis",
        "connection": private_redis_server.url,
        **HEADROOM,
        "circuitBreaker": {"failureThreshold": 2, "cooldown": 200},
    }
    manager = CacheManager.from_config({"backend": {"cache": section}})
    api = FastAPI()

    @api.get("/page")
    @cache_response(ttl=60)
    async def page() -> dict[str, int]:
        calls["page"] += 1
        return {"n": calls["page"]}

    install(api, manager, plugin="shop")
    try:
        with uvicorn_serving(api, lifespan="on") as url, httpx.Client(base_url=url) as http:
            private_redis_server.stop()
            answers = [http.get("/page") for _ in range(3)]
            assert [a.json()["n"] for a in answers] == [1, 2, 3]
            assert {a.headers["x-cache"] for a in answers} == {"MISS"}
            private_redis_server.start()
            for _ in range(100):  # the breaker's cool-down ends; the store answers again
                if http.get("/page").headers["x-cache"] == "HIT":
                    break
                time.sleep(0.05)
            assert http.get("/page").headers["x-cache"] == "HIT"
    finally:
        set_default_manager(None)
        manager.close()
