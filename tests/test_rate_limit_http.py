"""RateLimitExceeded as a 429: in both middlewares, and through the framework hooks with
the middleware inside and around the app."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import flask
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import cachekit.wsgi
from cachekit import RateLimitExceeded
from cachekit.asgi import CacheMiddleware
from cachekit.contrib import flask as flask_contrib
from cachekit.contrib import starlette as starlette_contrib
from cachekit.counters import rate_limited
from cachekit.host import CacheManager
from cachekit.resolvers import header

# The endpoints use GCRA: it has no window boundary for a test's few requests to straddle on
# the wall clock: of three hits within 30 s (a limit of 2 per minute), exactly two pass.
REFUSAL = RateLimitExceeded("slow down", limit=5, remaining=0, retry_after=2.5, reset_after=3)


def expect_429(response: httpx.Response) -> None:
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.headers["ratelimit-limit"] == "5"
    assert response.headers["ratelimit-remaining"] == "0"
    assert response.headers["ratelimit-reset"] == "3"
    assert response.json()["error"] == "rate limit exceeded"


async def asgi_get(app: Any, path: str = "/", **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, headers=headers)


def test_asgi_middleware_turns_a_refusal_into_429() -> None:
    """A RateLimitExceeded escaping a bare ASGI app before it responds becomes a 429."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise REFUSAL

    expect_429(asyncio.run(asgi_get(CacheMiddleware(app, manager=CacheManager(), plugin="p"))))


def test_asgi_refusal_after_the_response_started_propagates() -> None:
    """Once the response has started the refusal cannot become a 429: it propagates."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise REFUSAL

    with pytest.raises(RateLimitExceeded):
        asyncio.run(asgi_get(CacheMiddleware(app, manager=CacheManager(), plugin="p")))


def starlette_app(*, around: bool, handler: bool) -> Any:
    @rate_limited("ping", 2, per=60, algorithm="gcra")
    async def ping(request: Request) -> PlainTextResponse:
        return PlainTextResponse("pong")

    options: dict[str, Any] = {
        "manager": CacheManager(),
        "plugin": "api",
        "tenant": header("X-Tenant"),
    }
    inner = [] if around else [Middleware(CacheMiddleware, **options)]
    handlers: Any = {RateLimitExceeded: starlette_contrib.rate_limit_handler} if handler else {}
    app = Starlette(routes=[Route("/", ping)], middleware=inner, exception_handlers=handlers)
    return CacheMiddleware(app, **options) if around else app


@pytest.mark.parametrize(
    ("around", "handler"),
    [(False, False), (False, True), (True, True)],
    ids=["inside", "inside+handler", "around+handler"],
)
def test_starlette_rate_limited_endpoint(around: bool, handler: bool) -> None:
    """Two requests pass, the third gets a 429; another tenant is unaffected."""
    app = starlette_app(around=around, handler=handler)

    async def run() -> list[httpx.Response]:
        return [await asgi_get(app, **{"X-Tenant": t}) for t in ("a", "a", "a", "b")]

    first, second, third, other = asyncio.run(run())
    assert [first.text, second.text, other.text] == ["pong"] * 3
    assert third.status_code == 429
    assert third.headers["ratelimit-limit"] == "2"
    assert int(third.headers["retry-after"]) >= 1


def test_starlette_around_without_handler_is_a_500() -> None:
    """Why the hook exists: around the app, Starlette has already sent a 500."""
    app = starlette_app(around=True, handler=False)

    async def run() -> list[int]:
        out = []
        for _ in range(3):
            try:
                out.append((await asgi_get(app, **{"X-Tenant": "a"})).status_code)
            except RateLimitExceeded:
                out.append(500)  # ServerErrorMiddleware re-raises after sending its 500
        return out

    assert asyncio.run(run()) == [200, 200, 500]


def wsgi_get(app: Callable[..., Any], **headers: str) -> httpx.Response:
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://test") as client:
        return client.get("/", headers=headers)


def test_wsgi_middleware_turns_a_refusal_into_429() -> None:
    """A RateLimitExceeded escaping a bare WSGI app becomes a 429."""

    def app(environ: Any, start_response: Any) -> list[bytes]:
        raise REFUSAL

    expect_429(wsgi_get(cachekit.wsgi.CacheMiddleware(app, manager=CacheManager(), plugin="p")))


def test_flask_rate_limited_endpoint_with_the_error_handler() -> None:
    """In Flask the error handler turns the refusal into a 429 (the middleware sits around
    Flask's own error handling, which would otherwise answer 500)."""
    app = flask.Flask(__name__)
    app.register_error_handler(RateLimitExceeded, flask_contrib.rate_limit_handler)

    @app.get("/")
    @rate_limited("ping", 2, per=60, algorithm="gcra")
    def ping() -> str:
        return "pong"

    app.wsgi_app = cachekit.wsgi.CacheMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, manager=CacheManager(), plugin="api", tenant=header("X-Tenant")
    )
    responses = [wsgi_get(app, **{"X-Tenant": t}) for t in ("a", "a", "a", "b")]
    assert [r.status_code for r in responses] == [200, 200, 429, 200]
    assert responses[2].headers["ratelimit-remaining"] == "0"
