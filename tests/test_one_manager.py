"""One manager per process: the manager a middleware, the Flask extension, install() or
set_default_manager() is given is the one scope() without a manager uses, in background
threads too; a later, different manager is refused with one logged warning unless replaced
explicitly. Proved on real Redis behind real HTTP servers (uvicorn, waitress)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from flask import Flask
from http_servers import uvicorn_serving, waitress_serving
from servers import RedisServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cachekit import current_cache, current_scope
from cachekit.context import active_manager, get_default_manager
from cachekit.contrib.flask import CacheKit
from cachekit.contrib.starlette import install
from cachekit.host import CacheManager, CacheMiddleware, scope, set_default_manager
from cachekit.resolvers import header
from cachekit.wsgi import CacheMiddleware as WSGIMiddleware


@pytest.fixture(autouse=True)
def _no_default() -> Iterator[None]:
    set_default_manager(None)
    yield
    set_default_manager(None)


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "cachekit" and r.levelno == logging.WARNING
    ]


async def noop_app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("not called")


# --- the rule -------------------------------------------------------------------------------


def test_the_first_registered_manager_stays_and_a_different_one_is_refused_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A second, different manager is not made the default: one warning (logger cachekit)
    names both and how to replace, however often it is offered; the same one is a no-op."""
    first, second = CacheManager(), CacheManager()
    assert set_default_manager(first) is first
    assert set_default_manager(first) is first
    assert refusals(caplog) == []
    assert set_default_manager(second) is first
    assert set_default_manager(second) is first
    assert get_default_manager() is first
    [warning] = refusals(caplog)
    assert f"0x{id(first):x}" in warning
    assert f"0x{id(second):x}" in warning
    assert "set_default_manager(manager, replace=True)" in warning


def test_replace_true_replaces_and_none_unregisters() -> None:
    """replace=True makes a different manager the default; None goes back to none."""
    first, second = CacheManager(), CacheManager()
    set_default_manager(first)
    assert set_default_manager(second, replace=True) is second
    with scope(plugin="jobs") as cache:
        cache.set("k", 1)
    assert second.for_plugin("jobs").get("k") == 1
    assert set_default_manager(None) is None
    assert get_default_manager() is None


def test_an_in_memory_default_made_on_first_use_gives_way_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """scope() before any registration uses an in-memory manager; the first registered
    manager replaces it, and a warning says what was written went to memory."""
    with scope(plugin="early"):
        assert active_manager().store.name == "memory"
    assert get_default_manager() is None  # made on first use: not a registration
    registered = CacheManager()
    assert set_default_manager(registered) is registered
    [warning] = refusals(caplog)
    assert "went to an in-memory manager" in warning
    with scope(plugin="late"):
        assert active_manager() is registered


def test_middlewares_and_install_register_their_manager() -> None:
    """The ASGI and WSGI middlewares, the Flask extension and install() make the manager
    they are given the default; a middleware without a manager registers nothing."""
    asgi = CacheManager()
    CacheMiddleware(noop_app, plugin="p")
    assert get_default_manager() is None
    CacheMiddleware(noop_app, asgi, plugin="p")
    assert get_default_manager() is asgi
    for register in (
        lambda m: WSGIMiddleware(Flask("w").wsgi_app, m, plugin="p"),
        lambda m: CacheKit(Flask("f"), manager=m),
        lambda m: install(Starlette(), m, plugin="p"),
    ):
        set_default_manager(None)
        manager = CacheManager()
        register(manager)
        assert get_default_manager() is manager


@pytest.mark.anyio
async def test_several_apps_keep_their_own_managers_per_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two apps with their own managers in one process: each request runs on its app's
    manager; code outside requests uses the first registered, or manager= for the other."""
    first, second = CacheManager(), CacheManager()

    async def endpoint(request: Request) -> JSONResponse:
        current_cache().incr("hits")
        return JSONResponse({"plugin": current_scope().plugin})

    apps = {
        name: CacheMiddleware(Starlette(routes=[Route("/", endpoint)]), manager, plugin=name)
        for name, manager in (("one", first), ("two", second))
    }
    assert len(refusals(caplog)) == 1
    for name, app in apps.items():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/")).json() == {"plugin": name}
    assert first.for_plugin("one").get("hits") == 1
    assert second.for_plugin("two").get("hits") == 1
    assert first.for_plugin("two").get("hits") is None
    with scope(plugin="two", manager=second) as cache:
        assert cache.get("hits") == 1
    with scope(plugin="one") as cache:
        assert cache.get("hits") == 1


# --- over HTTP, on real Redis -----------------------------------------------------------------


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    yield client
    client.close()


def redis_config(url: str) -> dict[str, Any]:
    return {"store": "redis", "connection": url}


def background_job(plugin: str, tenant: str, wrap: Any = None) -> None:
    """What a job queue does: a new thread (an empty context: no scope, no active
    manager) that binds a scope without naming a manager."""

    def job() -> None:
        with wrap() if wrap is not None else _nothing(), scope(plugin=plugin, tenant=tenant):
            current_cache().incr("runs")

    thread = threading.Thread(target=job)
    thread.start()
    thread.join(10)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_asgi_app_on_redis_background_thread_writes_to_redis(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    """A Starlette app behind CacheMiddleware on Redis, served by uvicorn: a background
    thread started by an endpoint uses scope() without a manager, and the value lands in
    Redis (read back with a raw redis client)."""
    plugin = f"reports-{uuid.uuid4().hex[:8]}"
    manager = CacheManager.from_config({"backend": {"cache": redis_config(redis_server.url)}})

    def start_job(request: Request) -> JSONResponse:
        background_job(plugin, "acme")
        return JSONResponse({"started": True})

    app = CacheMiddleware(
        Starlette(routes=[Route("/jobs", start_job, methods=["POST"])]),
        manager,
        plugin="shop",
        tenant=header("X-Tenant-ID"),
    )
    try:
        with uvicorn_serving(app) as url, httpx.Client(base_url=url) as http:
            for _ in range(2):
                answer = http.post("/jobs", headers={"X-Tenant-ID": "acme"})
                assert answer.json() == {"started": True}
        [key] = raw.keys(f"{plugin}:acme:*")
        assert raw.get(key) == b"2"
    finally:
        manager.close()


def test_flask_app_on_redis_background_thread_writes_to_redis(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    """A Flask app with the CacheKit extension on Redis, served by waitress: a background
    thread inside app.app_context() uses scope() without a manager, and the value lands in
    Redis (read back with a raw redis client)."""
    plugin = f"reports-{uuid.uuid4().hex[:8]}"
    app = Flask("shop")
    app.config["CACHEKIT"] = redis_config(redis_server.url)
    ext = CacheKit(app)

    @app.post("/jobs")
    def start_job() -> dict[str, Any]:
        background_job(plugin, "acme", wrap=app.app_context)
        return {"started": True}

    try:
        with waitress_serving(app) as url, httpx.Client(base_url=url) as http:
            assert http.post("/jobs").json() == {"started": True}
        [key] = raw.keys(f"{plugin}:acme:*")
        assert raw.get(key) == b"1"
    finally:
        ext.manager.close()
