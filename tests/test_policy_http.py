"""Per-plugin policy through real HTTP: a Starlette app on Redis served by uvicorn, its
plugins resolved from the path, checked with a raw Redis client."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from servers import RedisServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from test_asgi import uvicorn_serving

from cachekit import CachePolicyError, cached, current_cache
from cachekit.asgi import CacheMiddleware
from cachekit.errors import ValueTooLarge
from cachekit.host import CacheManager
from cachekit.resolvers import header, path_segment

pytestmark = pytest.mark.servers

MIB = 1024 * 1024
PLUGINS = {
    "small": {"maxValueBytes": MIB},
    "big": {"maxValueBytes": 4 * MIB},  # the control: the same request succeeds
    "ttl": {"maxTtl": "60s"},
    "off": {"enabled": False},
    "noclear": {"operations": ["read", "write", "delete", "count", "expire"]},
}
ACME = {"X-Tenant-ID": "acme"}


def policy_error(request: Request, exc: Exception) -> JSONResponse:
    """The plugin's error as the app answers it: 413 for a value too large, else 403."""
    assert isinstance(exc, CachePolicyError)
    body = {"error": str(exc), "plugin": exc.plugin, "limit": exc.limit, "value": exc.value}
    return JSONResponse(body, status_code=413 if isinstance(exc, ValueTooLarge) else 403)


def build_app(manager: CacheManager) -> Any:
    computed = itertools.count(1)

    @cached(namespace="computed")
    def compute() -> int:
        return next(computed)

    async def put_item(request: Request) -> JSONResponse:
        body = await request.body()
        await current_cache().aset(request.path_params["key"], body)
        return JSONResponse({"stored": len(body)})

    async def put_forever(request: Request) -> JSONResponse:
        key = request.path_params["key"]
        if request.query_params["ttl"] == "none":
            await current_cache().aset(key, 1)
        else:
            await current_cache().aset(key, 1, ttl=int(request.query_params["ttl"]))
        return JSONResponse({"stored": key})

    def get_computed(request: Request) -> JSONResponse:  # sync: runs in the thread pool
        return JSONResponse({"count": compute()})

    async def clear(request: Request) -> JSONResponse:
        return JSONResponse({"cleared": await current_cache().aclear()})

    async def close(request: Request) -> JSONResponse:
        # the async Redis clients belong to the server's loop: close them on it
        await manager.aclose()
        return JSONResponse({"closed": True})

    app = Starlette(
        routes=[
            Route("/api/{plugin}/items/{key}", put_item, methods=["PUT"]),
            Route("/api/{plugin}/forever/{key}", put_forever, methods=["PUT"]),
            Route("/api/{plugin}/computed", get_computed),
            Route("/api/{plugin}/clear", clear, methods=["POST"]),
            Route("/api/big/close", close, methods=["POST"]),
        ],
        exception_handlers={CachePolicyError: policy_error},
    )
    return CacheMiddleware(
        app, manager=manager, plugin=path_segment(1, known=PLUGINS), tenant=header("X-Tenant-ID")
    )


@pytest.fixture
def manager(redis_server: RedisServer) -> Iterator[CacheManager]:
    config = {
        "store": "redis",
        "connection": redis_server.url,
        "redis": {"client": {"namespace": f"http{uuid.uuid4().hex[:8]}"}},
        "timeouts": {"connect": 5000, "operation": 5000},
        "knownPlugins": list(PLUGINS),
        "plugins": PLUGINS,
    }
    with CacheManager.from_config({"backend": {"cache": config}}) as manager:
        yield manager


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def http(manager: CacheManager) -> Iterator[httpx.Client]:
    with uvicorn_serving(build_app(manager)) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c
        assert c.post("/api/big/close", headers=ACME).json() == {"closed": True}


def full_key(manager: CacheManager, plugin: str, key: str) -> str:
    return manager.full_key(manager.for_plugin(plugin, "acme"), key)


def test_a_value_over_the_plugins_cap_answers_its_error_and_writes_nothing(
    http: httpx.Client, manager: CacheManager, raw: redis.Redis
) -> None:
    """A 2 MiB body from a plugin capped at 1 MiB gets the plugin's ValueTooLarge as a 413
    and no key reaches Redis; the same body from a plugin capped at 4 MiB is stored."""
    body = b"x" * (2 * MIB)
    answer = http.put("/api/small/items/blob", content=body, headers=ACME)
    assert answer.status_code == 413
    error = answer.json()
    assert (error["plugin"], error["limit"]) == ("small", "maxValueBytes")
    assert error["value"] > 2 * MIB
    assert "over its maxValueBytes of 1048576" in error["error"]
    assert raw.exists(full_key(manager, "small", "blob")) == 0
    assert http.put("/api/big/items/blob", content=body, headers=ACME).json() == {"stored": 2 * MIB}
    assert raw.exists(full_key(manager, "big", "blob")) == 1


@pytest.mark.parametrize("ttl", ["none", "0"])
def test_max_ttl_turns_no_expiry_into_a_60_second_pttl(
    http: httpx.Client, manager: CacheManager, raw: redis.Redis, ttl: str
) -> None:
    """maxTtl 60s: a write with ttl=None (no default) or ttl=0 has a PTTL of at most 60 s
    in Redis, where a plugin without maxTtl keeps no expiry."""
    for plugin in ("ttl", "big"):
        answer = http.put(f"/api/{plugin}/forever/k", params={"ttl": ttl}, headers=ACME)
        assert answer.status_code == 200
    assert 50_000 < raw.pttl(full_key(manager, "ttl", "k")) <= 60_000
    assert raw.pttl(full_key(manager, "big", "k")) == -1


def test_a_disabled_plugins_cached_endpoint_computes_on_every_call(
    http: httpx.Client, manager: CacheManager, raw: redis.Redis
) -> None:
    """enabled: false: the @cached endpoint of the disabled plugin computes on each of three
    requests and leaves no key in Redis; an enabled plugin's computes once."""
    off = [http.get("/api/off/computed", headers=ACME).json()["count"] for _ in range(3)]
    assert off[1] == off[0] + 1
    assert off[2] == off[1] + 1
    on = [http.get("/api/big/computed", headers=ACME).json()["count"] for _ in range(3)]
    assert on == [on[0]] * 3
    prefix = manager.full_key(manager.for_plugin("off", "acme"), "x")[:-1]
    assert list(raw.scan_iter(match=prefix + "*")) == []


def test_clear_without_the_clear_operation_is_refused(
    http: httpx.Client, manager: CacheManager, raw: redis.Redis
) -> None:
    """A plugin whose operations leave out clear gets CachePolicyError (a 403 here) from
    clear() and its data stays; a plugin allowed to clear clears."""
    for plugin in ("noclear", "big"):
        assert http.put(f"/api/{plugin}/items/k", content=b"v", headers=ACME).status_code == 200
    answer = http.post("/api/noclear/clear", headers=ACME)
    assert answer.status_code == 403
    assert answer.json()["limit"] == "operations"
    assert answer.json()["value"] == "clear"
    assert "may not call aclear()" in answer.json()["error"]
    assert raw.exists(full_key(manager, "noclear", "k")) == 1
    assert http.post("/api/big/clear", headers=ACME).json() == {"cleared": 1}
    assert raw.exists(full_key(manager, "big", "k")) == 0
    with pytest.raises(CachePolicyError, match="'clear'"):
        manager.for_plugin("noclear", "acme").clear()
