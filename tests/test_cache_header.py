"""The opt-in X-Cache header: MISS when a @cached call of the request missed, HIT when all
hit, absent when none ran or when the option is off."""

from __future__ import annotations

import asyncio
from typing import Any

import flask
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import cachekit.wsgi
from cachekit import cached
from cachekit.asgi import CacheMiddleware
from cachekit.host import CacheManager


def asgi_app(cache_header: bool) -> Any:
    @cached(ttl=60)
    async def square(n: int) -> int:
        return n * n

    async def cached_endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(await square(int(request.path_params["n"]))))

    async def plain_endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse("plain")

    app = Starlette(routes=[Route("/sq/{n}", cached_endpoint), Route("/plain", plain_endpoint)])
    return CacheMiddleware(app, manager=CacheManager(), plugin="p", cache_header=cache_header)


def asgi_headers(app: Any, paths: list[str]) -> list[str | None]:
    async def run() -> list[str | None]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [(await client.get(path)).headers.get("x-cache") for path in paths]

    return asyncio.run(run())


def test_asgi_cache_header() -> None:
    """First call MISS, then HIT; an endpoint without @cached gets no header."""
    headers = asgi_headers(asgi_app(True), ["/sq/3", "/sq/3", "/sq/4", "/plain"])
    assert headers == ["MISS", "HIT", "MISS", None]


def test_asgi_cache_header_is_off_by_default() -> None:
    """Without cache_header=True no X-Cache header is added."""
    assert asgi_headers(asgi_app(False), ["/sq/3", "/sq/3"]) == [None, None]


@pytest.mark.parametrize("enabled", [True, False])
def test_wsgi_cache_header(enabled: bool) -> None:
    """The WSGI middleware adds the same header (Flask app)."""
    app = flask.Flask(__name__)

    @cached(ttl=60)
    def square(n: int) -> int:
        return n * n

    @app.get("/sq/<int:n>")
    def endpoint(n: int) -> str:
        return str(square(n))

    app.wsgi_app = cachekit.wsgi.CacheMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, manager=CacheManager(), plugin="p", cache_header=enabled
    )
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        headers = [client.get(path).headers.get("x-cache") for path in ("/sq/2", "/sq/2")]
    assert headers == (["MISS", "HIT"] if enabled else [None, None])
