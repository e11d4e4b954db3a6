"""Response caching for ASGI apps: the ``responses=`` option of
:class:`cachekit.CacheMiddleware` (:class:`CachedResponses`), and the ASGI halves the
Starlette endpoint decorator shares: reading a request, capturing an app's response,
sending a stored one."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from cachekit.context import caching_disabled
from cachekit.errors import NoScopeError
from cachekit.responses.engine import UNSAFE_METHODS, Fetched, ResponseCache, Served
from cachekit.responses.options import CachedPrefixes, match
from cachekit.responses.policy import Request
from cachekit.steps import arun

__all__ = ["CachedResponses", "capture", "request_of", "send_served"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
_STREAMING = b"text/event-stream"


def request_of(scope: Scope) -> Request:
    """The :class:`Request` of an ASGI ``http`` scope."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return Request(
        scope["method"],
        scope["path"],
        scope.get("query_string", b"").decode("latin-1"),
        headers,
        scope.get("path_params"),
    )


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: Message) -> None:
    return None


async def capture(app: Any, scope: Scope, receive: Any, send: Any, limit: int) -> Fetched:
    """Run the ASGI ``app`` and buffer its response. A streaming response
    (``text/event-stream``) or one over ``limit`` bytes is not buffered: it goes on to
    ``send`` as the app writes it, and the :class:`Fetched` has no body."""
    start: Message | None = None
    chunks: list[bytes] = []
    size = 0
    passing = False

    async def sink(message: Message) -> None:
        nonlocal start, size, passing
        if passing:
            await send(message)
            return
        kind = message["type"]
        if kind == "http.response.start":
            start = message
            content_type = dict(message.get("headers", ())).get(b"content-type", b"")
            if content_type.startswith(_STREAMING):
                passing = True
                await send(message)
            return
        if kind != "http.response.body":
            await send(message)
            return
        body = message.get("body", b"")
        chunks.append(body)
        size += len(body)
        if size > limit:
            passing = True
            await send(start)
            await send({**message, "body": b"".join(chunks)})
            chunks.clear()

    await app(scope, receive, sink)
    assert start is not None, "the app returned without starting a response"
    status = start["status"]
    headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in start.get("headers", ())]
    return Fetched(status, headers, None if passing else b"".join(chunks))


async def send_served(send: Any, served: Served) -> None:
    """Send a :class:`Served` response."""
    headers = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in served.headers]
    await send({"type": "http.response.start", "status": served.status, "headers": headers})
    await send({"type": "http.response.body", "body": served.body})


class CachedResponses(CachedPrefixes):
    """An ASGI app caching the responses of ``app`` under path prefixes (what
    :class:`cachekit.CacheMiddleware` builds from ``responses=``; it runs inside the
    request's scope). A ``POST``, ``PUT``, ``PATCH`` or ``DELETE`` answered without an
    error invalidates its path's responses. Paths under no prefix, other methods and other
    scope types pass through untouched, as do requests with no scope bound.

    :param app: the ASGI app.
    :param responses: path prefixes to response caches
        (:data:`~cachekit.responses.options.Responses`).
    """

    __slots__ = ()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Serve one ASGI connection, from the cache where a prefix says so."""
        engine = match(self.prefixes, scope["path"]) if scope["type"] == "http" else None
        if engine is not None and scope["method"] in UNSAFE_METHODS:
            await self.app(scope, receive, _invalidating(engine, scope["path"], send))
            return
        lookup = None if engine is None else engine.lookup(request_of(scope))
        if engine is None or lookup is None or caching_disabled.get():
            await self.app(scope, receive, send)
            return
        try:
            cache = engine.cache()
        except NoScopeError:  # an excluded path: no scope, no cache
            await self.app(scope, receive, send)
            return
        await respond(engine, cache, lookup, self.app, scope, receive, send)


def _invalidating(engine: ResponseCache, path: str, send: Any) -> Any:
    """``send``, invalidating ``path``'s responses when an unsafe request's response
    starts without an error status (RFC 9111 section 4.4)."""

    async def send_and_invalidate(message: Message) -> None:
        if message["type"] == "http.response.start":
            try:
                cache = engine.cache()
            except NoScopeError:  # an excluded path: no scope, nothing cached
                pass
            else:
                await arun(engine.invalidate(cache, path, message["status"]))
        await send(message)

    return send_and_invalidate


async def respond(
    engine: ResponseCache, cache: Any, lookup: Any, app: Any, scope: Scope, receive: Any, send: Any
) -> None:
    """Answer one request from the cache or ``app`` and send the response."""
    limit = engine.rules.max_body_bytes

    async def fetch() -> Fetched:
        return await capture(app, scope, receive, send, limit)

    async def refetch() -> Fetched:
        return await capture(app, dict(scope), _no_body, _discard, limit)

    result = await arun(engine.respond(cache, lookup, fetch, refetch))
    if isinstance(result, Served):
        await send_served(send, result)
