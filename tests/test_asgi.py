"""The ASGI CacheMiddleware: binding per request, rejections, websocket, lifespan."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator, MutableMapping, Sequence
from typing import Any

import httpx
import pytest
from http_servers import uvicorn_serving
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

from cachekit import NoScopeError, Scope, StoreUnavailable, current_cache, current_scope
from cachekit.context import active_manager
from cachekit.host import CacheManager, CacheMiddleware, set_default_manager
from cachekit.resolvers import header, path_prefix, path_segment, state
from cachekit.stores.memory import MemoryStore

pytestmark = pytest.mark.anyio

Message = MutableMapping[str, Any]


@pytest.fixture
def manager() -> CacheManager:
    return CacheManager()


# --- a hand-written ASGI client -------------------------------------------------------------


def http_scope(path: str = "/", headers: dict[str, bytes] | None = None, **extra: Any) -> Message:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v) for k, v in (headers or {}).items()],
        "server": ("testserver", 80),
        **extra,
    }


async def call(
    app: Any, scope: Message, incoming: Sequence[Message] | None = None
) -> list[Message]:
    """Run one ASGI call; return what the app sent."""
    queue = list(incoming or [{"type": "http.request", "body": b"", "more_body": False}])
    sent: list[Message] = []

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)  # a real server would wait for the disconnect
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


class Recorder:
    """An ASGI app that records the scope it saw and answers it as JSON."""

    def __init__(self) -> None:
        self.seen: list[Scope] = []

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        await asyncio.sleep(0)
        bound = current_scope()
        self.seen.append(bound)
        body = json.dumps({"plugin": bound.plugin, "tenant": bound.tenant}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def status_and_body(sent: list[Message]) -> tuple[int, Any]:
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], json.loads(body)


# --- http -----------------------------------------------------------------------------------


async def test_request_sees_its_scope_and_nothing_leaks_after(manager: CacheManager) -> None:
    """Each request sees its own scope; after the call returns — in the same task — no
    scope is bound, so the next request on this task starts clean."""
    inner = Recorder()
    app = CacheMiddleware(inner, manager, plugin="catalog", tenant=header("X-Tenant-ID"))
    for tenant in ("acme", "globex"):
        sent = await call(app, http_scope(headers={"X-Tenant-ID": tenant.encode()}))
        assert status_and_body(sent) == (200, {"plugin": "catalog", "tenant": tenant})
        with pytest.raises(NoScopeError):
            current_scope()
    assert inner.seen == [Scope("catalog", "acme"), Scope("catalog", "globex")]


async def test_scope_is_unbound_when_the_app_raises(manager: CacheManager) -> None:
    """An exception from the app propagates and the scope is still unbound."""

    async def broken(scope: Message, receive: Any, send: Any) -> None:
        current_scope()
        raise RuntimeError("boom")

    app = CacheMiddleware(broken, manager, plugin="catalog")
    with pytest.raises(RuntimeError, match="boom"):
        await call(app, http_scope())
    with pytest.raises(NoScopeError):
        current_scope()


@pytest.mark.parametrize(
    "bad", [b"../x", b"x" * 500, b"", b"a\x00b", b"a\x01b", b"a\x7f", b"a b", b"\xc3\xa9"]
)
async def test_bad_tenant_ids_get_400_before_the_app_runs(
    bad: bytes, manager: CacheManager
) -> None:
    """An invalid tenant id gets a 400 JSON error and the app is never called."""
    inner = Recorder()
    app = CacheMiddleware(inner, manager, plugin="catalog", tenant=header("X-Tenant-ID"))
    sent = await call(app, http_scope(headers={"X-Tenant-ID": bad}))
    assert status_and_body(sent) == (
        400,
        {
            "error": "invalid tenant id",
            "expected": "header X-Tenant-ID: an id matching [A-Za-z0-9._-]{1,64}",
        },
    )
    assert (b"content-type", b"application/json") in sent[0]["headers"]
    assert inner.seen == []


async def test_bad_plugin_segment_gets_400_and_unknown_plugin_404(manager: CacheManager) -> None:
    """An invalid plugin id from the path is a 400; a path naming no plugin is a 404."""
    inner = Recorder()
    app = CacheMiddleware(inner, manager, plugin=path_segment(1))
    assert status_and_body(await call(app, http_scope("/api/..%2Fx/items")))[0] == 400
    assert status_and_body(await call(app, http_scope("/api"))) == (
        404,
        {"error": "unknown plugin", "expected": "path segment 1"},
    )
    app = CacheMiddleware(inner, manager, plugin=path_prefix({"/api/catalog": "catalog"}))
    assert status_and_body(await call(app, http_scope("/api/reviews/x")))[0] == 404
    assert inner.seen == []


async def test_missing_tenant_is_400_unless_optional(manager: CacheManager) -> None:
    """No tenant: 400 by default, the platform scope with tenant_required=False."""
    inner = Recorder()
    strict = CacheMiddleware(inner, manager, plugin="catalog", tenant=header("X-Tenant-ID"))
    assert status_and_body(await call(strict, http_scope())) == (
        400,
        {"error": "missing tenant id", "expected": "header X-Tenant-ID"},
    )
    lenient = CacheMiddleware(
        inner, manager, plugin="catalog", tenant=header("X-Tenant-ID"), tenant_required=False
    )
    assert status_and_body(await call(lenient, http_scope())) == (
        200,
        {"plugin": "catalog", "tenant": None},
    )


async def test_tenant_from_auth_state(manager: CacheManager) -> None:
    """state('tenant') reads what an auth middleware put in scope['state']."""

    def authenticate(app: Any) -> Any:
        async def auth(scope: Message, receive: Any, send: Any) -> None:
            scope.setdefault("state", {})["tenant"] = "verified-acme"
            await app(scope, receive, send)

        return auth

    app = authenticate(CacheMiddleware(Recorder(), manager, plugin="p", tenant=state("tenant")))
    assert status_and_body(await call(app, http_scope()))[1]["tenant"] == "verified-acme"


async def test_100_interleaved_requests_see_only_their_tenant(manager: CacheManager) -> None:
    """100 concurrent requests for 100 tenants, interleaving at every await, each read
    only their own tenant's data."""

    async def endpoint(scope: Message, receive: Any, send: Any) -> None:
        cache = current_cache()
        await cache.aset("secret", current_scope().tenant)
        reads = []
        for _ in range(5):
            await asyncio.sleep(0)
            reads.append(await current_cache().aget("secret"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps(reads).encode()})

    app = CacheMiddleware(endpoint, manager, plugin="catalog", tenant=header("X-Tenant-ID"))
    tenants = [f"tenant-{i}" for i in range(100)]
    results = await asyncio.gather(
        *(call(app, http_scope(headers={"X-Tenant-ID": t.encode()})) for t in tenants)
    )
    cross_reads = [
        (tenant, read)
        for tenant, sent in zip(tenants, results, strict=True)
        for read in status_and_body(sent)[1]
        if read != tenant
    ]
    assert cross_reads == []


async def test_default_manager_is_used_when_none_is_given() -> None:
    """Without manager=, requests use the process default manager."""
    default = CacheManager()
    set_default_manager(default)
    try:

        async def endpoint(scope: Message, receive: Any, send: Any) -> None:
            await current_cache().aset("k", "v")
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        await call(CacheMiddleware(endpoint, plugin="catalog"), http_scope())
    finally:
        set_default_manager(None)
    assert default.for_plugin("catalog").get("k") == "v"


async def test_other_scope_types_pass_through(manager: CacheManager) -> None:
    """A scope type the middleware does not know reaches the app unchanged, unbound."""
    seen: list[object] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        with pytest.raises(NoScopeError):
            current_scope()

    await CacheMiddleware(app, manager, plugin="p")({"type": "custom"}, None, None)  # type: ignore[arg-type]
    assert seen == ["custom"]


# --- websocket ------------------------------------------------------------------------------


def ws_scope(headers: dict[str, bytes] | None = None, **extra: Any) -> Message:
    return {**http_scope("/ws", headers), "type": "websocket", "scheme": "ws", **extra}


async def test_websocket_sees_its_scope_for_the_whole_connection(manager: CacheManager) -> None:
    """A websocket handler sees the scope from connect to close, and it is unbound after."""

    async def ws_app(scope: Message, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        message = await receive()
        await asyncio.sleep(0)
        await send(
            {"type": "websocket.send", "text": f"{current_scope().tenant}:{message['text']}"}
        )
        await send({"type": "websocket.close", "code": 1000})

    app = CacheMiddleware(ws_app, manager, plugin="chat", tenant=header("X-Tenant-ID"))
    incoming = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hi"}]
    sent = await call(app, ws_scope({"X-Tenant-ID": b"acme"}), incoming)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == "acme:hi"
    with pytest.raises(NoScopeError):
        current_scope()


async def test_websocket_with_bad_tenant_is_closed_with_policy_violation(
    manager: CacheManager,
) -> None:
    """Without the denial-response extension a refused websocket is closed with 1008."""
    inner = Recorder()
    app = CacheMiddleware(inner, manager, plugin="chat", tenant=header("X-Tenant-ID"))
    sent = await call(app, ws_scope({"X-Tenant-ID": b"../x"}), [{"type": "websocket.connect"}])
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "invalid tenant id"}]
    assert inner.seen == []


async def test_websocket_denial_response_when_the_server_supports_it(
    manager: CacheManager,
) -> None:
    """With the websocket.http.response extension a refused websocket gets the JSON 400."""
    app = CacheMiddleware(Recorder(), manager, plugin="chat", tenant=header("X-Tenant-ID"))
    scope = ws_scope(extensions={"websocket.http.response": {}})
    sent = await call(app, scope, [{"type": "websocket.connect"}])
    assert sent[0]["type"] == "websocket.http.response.start"
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"]) == {
        "error": "missing tenant id",
        "expected": "header X-Tenant-ID",
    }


async def test_starlette_websocket_route(manager: CacheManager) -> None:
    """A Starlette websocket endpoint reads and writes the cache of its scope."""

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await current_cache().aset("last", text)
        await websocket.send_json({"tenant": current_scope().tenant, "last": text})
        await websocket.close()

    app = CacheMiddleware(
        Starlette(routes=[WebSocketRoute("/ws", echo)]),
        manager,
        plugin="chat",
        tenant=header("X-Tenant-ID"),
    )
    incoming = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hello"}]
    sent = await call(app, ws_scope({"X-Tenant-ID": b"acme"}), incoming)
    assert json.loads(sent[1]["text"]) == {"tenant": "acme", "last": "hello"}
    assert manager.for_plugin("chat", "acme").get("last") == "hello"


# --- lifespan -------------------------------------------------------------------------------


class SpyStore(MemoryStore):
    """A memory store that records pings and closes, and can fail its ping."""

    def __init__(self, fail_ping: bool = False) -> None:
        super().__init__()
        self.events: list[str] = []
        self.fail_ping = fail_ping

    async def aping(self) -> None:
        self.events.append("ping")
        if self.fail_ping:
            raise StoreUnavailable("connection refused", store="spy")

    async def aclose(self) -> None:
        self.events.append("close")


def lifespan_app(store: SpyStore, seen: list[object]) -> Any:
    async def app(scope: Message, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            store.events.append(f"app:{message['type']}")
            seen.append(active_manager())
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    return app


LIFESPAN = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]


async def test_lifespan_pings_at_startup_and_closes_at_shutdown() -> None:
    """Lifespan passes through; the store is pinged before the app starts and closed once
    the app finished shutting down; the app's lifespan code sees the manager as active."""
    store, seen = SpyStore(), list[object]()
    manager = CacheManager(store=store)
    app = CacheMiddleware(lifespan_app(store, seen), manager, plugin="p")
    sent = await call(app, {"type": "lifespan"}, list(LIFESPAN))
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    assert store.events == ["ping", "app:lifespan.startup", "app:lifespan.shutdown", "close"]
    assert seen == [manager, manager]


async def test_lifespan_survives_a_dead_store(caplog: pytest.LogCaptureFixture) -> None:
    """A store that does not answer at startup is logged, and the app starts anyway."""
    store, seen = SpyStore(fail_ping=True), list[object]()
    app = CacheMiddleware(lifespan_app(store, seen), CacheManager(store=store), plugin="p")
    with caplog.at_level(logging.WARNING, logger="cachekit"):
        sent = await call(app, {"type": "lifespan"}, list(LIFESPAN))
    assert sent[0] == {"type": "lifespan.startup.complete"}
    assert "did not answer at startup" in caplog.text


async def test_lifespan_without_store_management() -> None:
    """manage_store=False passes lifespan through without touching the store."""
    store, seen = SpyStore(), list[object]()
    app = CacheMiddleware(
        lifespan_app(store, seen), CacheManager(store=store), plugin="p", manage_store=False
    )
    await call(app, {"type": "lifespan"}, list(LIFESPAN))
    assert store.events == ["app:lifespan.startup", "app:lifespan.shutdown"]


# --- Starlette in process: sync and async endpoints, streaming, background tasks -----------


def starlette_app(manager: CacheManager) -> Any:
    async def async_scope(request: Request) -> JSONResponse:
        await asyncio.sleep(0)
        return JSONResponse({"tenant": current_scope().tenant, "thread": "loop"})

    def sync_scope(request: Request) -> JSONResponse:
        return JSONResponse(
            {"tenant": current_scope().tenant, "thread": threading.current_thread().name}
        )

    async def put(request: Request) -> JSONResponse:
        await current_cache().aset(request.path_params["key"], await request.json())

        async def after() -> None:
            await current_cache().aincr("background-writes")

        return JSONResponse({"ok": True}, background=BackgroundTask(after))

    def stream_sync(request: Request) -> StreamingResponse:
        def lines() -> Iterator[str]:  # Starlette iterates it in its thread pool
            for key in ("a", "b"):
                yield f"{current_scope().tenant}:{current_cache().get(key)}\n"

        return StreamingResponse(lines())

    async def stream_async(request: Request) -> StreamingResponse:
        async def lines() -> AsyncIterator[str]:
            for key in ("a", "b"):
                await asyncio.sleep(0)
                yield f"{current_scope().tenant}:{await current_cache().aget(key)}\n"

        return StreamingResponse(lines())

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse(current_scope().plugin)

    plugin = Starlette(
        routes=[
            Route("/scope", async_scope),
            Route("/scope/sync", sync_scope),
            Route("/items/{key}", put, methods=["PUT"]),
            Route("/stream/sync", stream_sync),
            Route("/stream/async", stream_async),
        ]
    )
    return CacheMiddleware(
        Starlette(routes=[Route("/", home), Mount("/api/catalog", plugin)]),
        manager,
        plugin=path_prefix({"/api/catalog": "catalog"}, default="host"),
        tenant=header("X-Tenant-ID"),
        tenant_required=False,
    )


@pytest.fixture
async def client(manager: CacheManager) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=starlette_app(manager))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_sync_and_async_endpoints_both_see_the_scope(client: httpx.AsyncClient) -> None:
    """A def endpoint (run in Starlette's thread pool) and an async def endpoint of the
    same app both see the request's tenant."""
    headers = {"X-Tenant-ID": "acme"}
    assert (await client.get("/api/catalog/scope", headers=headers)).json()["tenant"] == "acme"
    sync = (await client.get("/api/catalog/scope/sync", headers=headers)).json()
    assert sync["tenant"] == "acme"
    assert sync["thread"] != threading.current_thread().name
    assert (await client.get("/", headers=headers)).text == "host"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_streaming_response_reads_the_cache_while_streaming(
    client: httpx.AsyncClient, kind: str
) -> None:
    """Sync and async streaming bodies, iterated after the endpoint returned, read the
    request's cache."""
    for tenant in ("acme", "globex"):
        for key in ("a", "b"):
            url, headers = f"/api/catalog/items/{key}", {"X-Tenant-ID": tenant}
            await client.put(url, json=f"{tenant}-{key}", headers=headers)
    answer = await client.get(f"/api/catalog/stream/{kind}", headers={"X-Tenant-ID": "acme"})
    assert answer.text == "acme:acme-a\nacme:acme-b\n"


async def test_background_task_runs_in_the_request_scope(
    client: httpx.AsyncClient, manager: CacheManager
) -> None:
    """A BackgroundTask started by the request writes to the request's scope."""
    await client.put("/api/catalog/items/k", json=1, headers={"X-Tenant-ID": "acme"})
    await client.put("/api/catalog/items/k", json=2, headers={"X-Tenant-ID": "acme"})
    assert manager.for_plugin("catalog", "acme").get("background-writes") == 2
    assert manager.for_plugin("catalog", None).get("background-writes") is None


async def test_usable_in_starlettes_middleware_list(manager: CacheManager) -> None:
    """Middleware(CacheMiddleware, ...) in Starlette's middleware list binds the scope."""

    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse({"tenant": current_scope().tenant})

    app = Starlette(
        routes=[Route("/", endpoint)],
        middleware=[
            Middleware(CacheMiddleware, manager=manager, plugin="p", tenant=header("X-Tenant-ID"))
        ],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        answer = await client.get("/", headers={"X-Tenant-ID": "acme"})
    assert answer.json() == {"tenant": "acme"}


async def test_excluded_paths_reach_the_app_without_a_scope(manager: CacheManager) -> None:
    """exclude=: /healthz and what is under /docs/ run with no scope bound and no tenant
    asked for; /healthzz is not excluded and is refused as before."""
    seen: list[str] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        try:
            seen.append(f"{scope['path']}:{current_scope().tenant}")
        except NoScopeError:
            seen.append(f"{scope['path']}:none")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = CacheMiddleware(
        app,
        manager,
        plugin="p",
        tenant=header("X-Tenant-ID"),
        exclude=["/healthz", "/docs/*"],
    )
    for path in ("/healthz", "/docs", "/docs/oauth2-redirect"):
        assert status_and_body(await call(middleware, http_scope(path)))[0] == 200
    refused = await call(middleware, http_scope("/healthzz"))
    assert status_and_body(refused) == (
        400,
        {"error": "missing tenant id", "expected": "header X-Tenant-ID"},
    )
    bound = await call(middleware, http_scope("/api", headers={"X-Tenant-ID": b"acme"}))
    assert status_and_body(bound)[0] == 200
    assert seen == ["/healthz:none", "/docs:none", "/docs/oauth2-redirect:none", "/api:acme"]


# --- over HTTP: a real uvicorn server ------------------------------------------------------


def test_no_scope_leaks_between_requests_over_http(manager: CacheManager) -> None:
    """Over real HTTP (uvicorn, one keep-alive connection), a probe outside the middleware
    sees no scope before or after any request, in the task that ran the middleware."""
    probe: list[str] = []
    inner = CacheMiddleware(Recorder(), manager, plugin="catalog", tenant=header("X-Tenant-ID"))

    def visible() -> str:
        try:
            return str(current_scope().tenant)
        except NoScopeError:
            return "none"

    async def probed(scope: Message, receive: Any, send: Any) -> None:
        probe.append(f"before:{visible()}")
        await inner(scope, receive, send)
        probe.append(f"after:{visible()}")

    with uvicorn_serving(probed) as url, httpx.Client(base_url=url) as http:
        for tenant in ("acme", "globex", "acme"):
            answer = http.get("/", headers={"X-Tenant-ID": tenant})
            assert answer.json() == {"plugin": "catalog", "tenant": tenant}
    # The server has shut down: every request's "after" was recorded.
    assert probe == ["before:none", "after:none"] * 3


def test_repr_names_the_configuration(manager: CacheManager) -> None:
    """repr() of the middleware shows its resolvers."""
    text = repr(CacheMiddleware(Recorder(), manager, plugin="catalog", tenant=header("X")))
    assert "plugin='catalog'" in text
    assert "header('X')" in text
    assert "exclude" not in text
    excluding = CacheMiddleware(Recorder(), manager, plugin="c", exclude=["/healthz", "/docs/*"])
    assert repr(excluding).endswith(", exclude=exclude(['/docs/*', '/healthz']))")
