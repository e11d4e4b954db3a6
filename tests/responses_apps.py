"""Apps for the response-caching tests: a Starlette app whose endpoints each show one HTTP
caching behaviour, and the helpers the tests share (a settable clock, managers on every
store). Each endpoint counts its calls, so a test can tell a cached answer from a run."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from servers import MemcachedServer, RedisServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from cachekit import ainvalidate_path, ainvalidate_tags, cache_response, current_scope
from cachekit.asgi import CacheMiddleware
from cachekit.host import CacheManager
from cachekit.resolvers import header

HEADROOM = {"timeouts": {"connect": 5000, "operation": 5000}}
SCOPE_HEADERS = {"X-Plugin": "shop", "X-Tenant-ID": "acme"}


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def store_manager(
    kind: str, redis_server: RedisServer | None, memcached: MemcachedServer | None
) -> CacheManager:
    """A manager on the memory store, a real Redis, or a real memcached."""
    if kind == "memory":
        return CacheManager()
    if kind == "redis":
        assert redis_server is not None
        section = {"store": "redis", "connection": redis_server.url, **HEADROOM}
    else:
        assert memcached is not None
        section = {
            "store": "memcache",
            "connection": f"{memcached.host}:{memcached.port}",
            **HEADROOM,
        }
    return CacheManager.from_config({"backend": {"cache": section}})


class Shop:
    """The Starlette app and its call counts."""

    def __init__(self, manager: CacheManager, clock: Clock, **options: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.failing = False
        self.data: dict[tuple[str, str | None], str] = {}
        self.clock = clock
        self.app = CacheMiddleware(
            Starlette(routes=self.routes()),
            manager,
            plugin=header("X-Plugin"),
            tenant=header("X-Tenant-ID"),
            **options,
        )

    def counted(self, name: str) -> int:
        self.calls[name] += 1
        return self.calls[name]

    def routes(self) -> list[Route]:
        clock = self.clock

        @cache_response(ttl=60, tags=("item:{item_id}",), clock=clock)
        async def item(request: Request) -> Response:
            scope = current_scope()
            return JSONResponse(
                {
                    "id": request.path_params["item_id"],
                    "q": request.query_params.get("q"),
                    "plugin": scope.plugin,
                    "tenant": scope.tenant,
                    "data": self.data.get((scope.plugin, scope.tenant)),
                    "n": self.counted("item"),
                }
            )

        @cache_response(ttl=60, clock=clock)
        def sync_item(request: Request) -> Response:
            return JSONResponse({"n": self.counted("sync")})

        @cache_response(ttl=60, clock=clock)
        async def cookie(request: Request) -> Response:
            user = request.headers.get("x-user", "")
            response = JSONResponse({"user": user, "n": self.counted("cookie")})
            response.set_cookie("session", user)
            return response

        @cache_response(ttl=60, clock=clock)
        async def directive(request: Request) -> Response:
            value = request.path_params["value"].replace("_", "=")
            return JSONResponse({"n": self.counted(value)}, headers={"Cache-Control": value})

        @cache_response(ttl=60, clock=clock)
        async def language(request: Request) -> Response:
            lang = request.headers.get("accept-language", "en")
            body = {"lang": lang, "n": self.counted("lang")}
            return JSONResponse(body, headers={"Vary": "Accept-Language"})

        @cache_response(ttl=60, vary=("X-Region",), clock=clock)
        async def region(request: Request) -> Response:
            return JSONResponse(
                {"region": request.headers.get("x-region"), "n": self.counted("region")}
            )

        @cache_response(ttl=60, clock=clock)
        async def vary_star(request: Request) -> Response:
            return JSONResponse({"n": self.counted("star")}, headers={"Vary": "*"})

        @cache_response(ttl=60, clock=clock)
        async def encoded(request: Request) -> Response:
            n = self.counted("gzip")
            raw = json.dumps({"n": n}).encode()
            if "gzip" in request.headers.get("accept-encoding", ""):
                headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
                return Response(gzip.compress(raw), media_type="application/json", headers=headers)
            return Response(raw, media_type="application/json", headers={"Vary": "Accept-Encoding"})

        @cache_response(ttl=60, clock=clock)
        async def stream(request: Request) -> Response:
            n = self.counted("stream")

            async def events() -> AsyncIterator[bytes]:
                for i in range(3):
                    yield f"data: {n}-{i}\n\n".encode()

            return StreamingResponse(events(), media_type="text/event-stream")

        @cache_response(ttl=60, max_body_bytes=1024, clock=clock)
        async def big(request: Request) -> Response:
            return Response(b"x" * 2000 + str(self.counted("big")).encode())

        @cache_response(ttl=10, stale_while_revalidate=60, clock=clock)
        async def swr(request: Request) -> Response:
            return JSONResponse({"n": self.counted("swr")})

        @cache_response(ttl=10, stale_if_error=60, clock=clock)
        async def flaky(request: Request) -> Response:
            n = self.counted("flaky")
            if self.failing and request.query_params.get("how") == "raise":
                raise RuntimeError("the database is down")
            if self.failing:
                return JSONResponse({"error": "down"}, status_code=503)
            return JSONResponse({"n": n})

        @cache_response(ttl=60, clock=clock)
        async def slow(request: Request) -> Response:
            n = self.counted("slow")
            await asyncio.sleep(0.3)
            return JSONResponse({"n": n})

        @cache_response(ttl=60, clock=clock)
        async def status(request: Request) -> Response:
            code = int(request.path_params["code"])
            return Response(str(self.counted(f"status{code}")), status_code=code)

        @cache_response(ttl=60, clock=clock)
        async def who(request: Request) -> Response:
            auth = request.headers.get("authorization")
            return JSONResponse({"auth": auth, "n": self.counted("who")})

        @cache_response(ttl=60, authorized=True, clock=clock)
        async def shared(request: Request) -> Response:
            return JSONResponse({"n": self.counted("shared")})

        @cache_response(ttl=60, clock=clock)
        async def modified(request: Request) -> Response:
            headers = {"Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"}
            return JSONResponse({"n": self.counted("modified")}, headers=headers)

        @cache_response(ttl=60, cache_control=True, clock=clock)
        async def advertised(request: Request) -> Response:
            return JSONResponse({"n": self.counted("advertised")})

        @cache_response(ttl=60, clock=clock)
        async def post(request: Request) -> Response:
            return JSONResponse({"n": self.counted(f"post-{request.method}")})

        async def invalidate(request: Request) -> Response:
            target = request.query_params
            if "tag" in target:
                await ainvalidate_tags(target["tag"])
            else:
                await ainvalidate_path(target["path"])
            return Response(status_code=204)

        return [
            Route("/items/{item_id}", item),
            Route("/sync", sync_item),
            Route("/cookie", cookie),
            Route("/directive/{value}", directive),
            Route("/language", language),
            Route("/region", region),
            Route("/vary-star", vary_star),
            Route("/gzip", encoded),
            Route("/stream", stream),
            Route("/big", big),
            Route("/swr", swr),
            Route("/flaky", flaky),
            Route("/slow", slow),
            Route("/status/{code}", status),
            Route("/who", who),
            Route("/shared", shared),
            Route("/modified", modified),
            Route("/advertised", advertised),
            Route("/post", post, methods=["GET", "POST"]),
            Route("/invalidate", invalidate, methods=["POST"]),
        ]
