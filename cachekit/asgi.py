"""ASGI middleware: bind each request's plugin and tenant scope (:class:`CacheMiddleware`).

A pure ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which runs the app in
another task and loses context variables). It works with any ASGI framework::

    from cachekit.host import CacheManager, CacheMiddleware
    from cachekit.resolvers import header, path_prefix

    manager = CacheManager.from_yaml("app-config.yaml")
    app = CacheMiddleware(
        app,
        manager=manager,
        plugin=path_prefix({"/api/catalog": "catalog", "/api/reviews": "reviews"}),
        tenant=header("X-Tenant-ID"),  # only behind authentication: see cachekit.resolvers
    )

or, with Starlette, ``Middleware(CacheMiddleware, manager=..., plugin=..., tenant=...)``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from cachekit.context import CacheOutcome, activate_manager, active_manager, deactivate_manager
from cachekit.errors import RateLimitExceeded
from cachekit.http import rate_limit_response
from cachekit.manager import CacheManager
from cachekit.middleware import ScopeMiddleware, bind_request, unbind_request
from cachekit.resolvers import (
    DEFAULT_ID_PATTERN,
    Exclude,
    PluginResolver,
    Rejection,
    TenantResolver,
)
from cachekit.responses.asgi import CachedResponses
from cachekit.responses.options import Responses

__all__ = ["ASGIApp", "CacheMiddleware", "lifespan_shutdown", "lifespan_startup"]

log = logging.getLogger("cachekit")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

_JSON_HEADERS = [(b"content-type", b"application/json")]
_WEBSOCKET_POLICY_VIOLATION = 1008


class CacheMiddleware(ScopeMiddleware[ASGIApp]):
    """Binds the (plugin, tenant) scope of every ``http`` and ``websocket`` request for as
    long as the app handles it — streaming bodies and background tasks included — so the
    app's code can call :func:`cachekit.current_cache`. Other scope types pass through.

    A request whose ids cannot be resolved or are invalid never reaches the app: it gets a
    400 (404 for an unknown plugin) with a JSON body ``{"error": "...", "expected": "..."}``
    (``expected`` names where a built-in resolver looks, e.g. ``header X-Tenant-ID``); a
    websocket is refused the same way where the server supports denial responses, else
    closed with code 1008. Each refusal is logged at DEBUG. Excluded paths (``exclude=``)
    reach the app without a scope. The store is not touched per request.

    On ``lifespan``, the manager is made active for the app's startup and shutdown code; the
    store is pinged at startup (a failure is logged, not raised: the cache is lossy) and
    closed after shutdown.

    :param app: the ASGI app to wrap.
    :param manager: the manager to use (default: the active one at each request, see
        :func:`cachekit.context.active_manager`); registered as the process default
        (:func:`cachekit.host.set_default_manager`).
    :param plugin: a fixed plugin id or a resolver (:mod:`cachekit.resolvers`).
    :param tenant: a tenant resolver, or ``None`` for the platform scope. A tenant from a
        client header must be verified by an authentication layer first.
    :param tenant_required: refuse requests without a tenant (default: ``True`` when a
        tenant resolver is given); when ``False`` they run in the platform scope. A tenant
        that is given but invalid is refused either way.
    :param exclude: paths that reach the app without a scope — API docs, health probes,
        metrics: ``["/healthz", "/docs/*"]`` (exact paths; a trailing ``/*`` is a prefix of
        whole segments), or a callable of the path (:data:`cachekit.resolvers.Exclude`).
    :param id_pattern: accepted plugin and tenant ids (whole-string match; default 1-64
        characters of ``A-Za-z0-9._-``).
    :param manage_store: ping the store at lifespan startup and close it at shutdown.
    :param cache_header: add ``X-Cache: HIT`` or ``MISS`` to responses whose request ran
        ``@cached`` functions (``MISS`` if any call missed).
    :param responses: cache the HTTP responses under these path prefixes (whole segments)
        in each request's scope, following RFC 9111:
        ``{"/api/catalog": response_cache("5m", vary=("Accept-Language",))}``, or a plain
        TTL (:func:`cachekit.responses.response_cache`).
    :raises TypeError: a resolver is not callable, ``tenant`` is a plain string, or
        ``exclude`` is neither paths nor a callable.
    :raises ValueError: a fixed plugin id does not match ``id_pattern``,
        ``tenant_required=True`` without a tenant resolver, or a bad excluded path.
    """

    cached_responses = CachedResponses

    def __init__(
        self,
        app: ASGIApp,
        manager: CacheManager | None = None,
        *,
        plugin: str | PluginResolver,
        tenant: TenantResolver | None = None,
        tenant_required: bool | None = None,
        id_pattern: str | re.Pattern[str] = DEFAULT_ID_PATTERN,
        manage_store: bool = True,
        cache_header: bool = False,
        exclude: Exclude | None = None,
        responses: Responses | None = None,
    ) -> None:
        super().__init__(
            app,
            manager,
            plugin=plugin,
            tenant=tenant,
            tenant_required=tenant_required,
            id_pattern=id_pattern,
            cache_header=cache_header,
            exclude=exclude,
            responses=responses,
        )
        self.manage_store = manage_store

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        """Handle one ASGI connection: bind the scope of ``http`` and ``websocket``
        requests (or refuse them), manage the store on ``lifespan``, pass others through."""
        kind = scope["type"]
        if kind == "http" or kind == "websocket":
            result = self.resolver.resolve_asgi(scope, self.request_manager())
            if result is None:  # an excluded path: no scope
                await self.app(scope, receive, send)
                return
            if isinstance(result, Rejection):
                await _reject(kind, scope, send, result)
                return
            noted = CacheOutcome() if self.cache_header and kind == "http" else None
            tokens = bind_request(result, noted)
            try:
                await self.app(scope, receive, send if noted is None else _noting(send, noted))
            except RateLimitExceeded as exc:
                if kind != "http":
                    raise
                await _too_many_requests(send, exc)
            finally:
                unbind_request(tokens)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _lifespan(
        self, scope: MutableMapping[str, Any], receive: Receive, send: Send
    ) -> None:
        manager = self.manager if self.manager is not None else active_manager()
        token = activate_manager(manager)
        try:
            if not self.manage_store:
                await self.app(scope, receive, send)
                return

            async def receive_and_open() -> Message:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await lifespan_startup(manager)
                return message

            async def close_and_send(message: Message) -> None:
                if message["type"] in (
                    "lifespan.shutdown.complete",
                    "lifespan.shutdown.failed",
                    "lifespan.startup.failed",
                ):
                    await lifespan_shutdown(manager)
                await send(message)

            await self.app(scope, receive_and_open, close_and_send)
        finally:
            deactivate_manager(token)


def _noting(send: Send, noted: CacheOutcome) -> Send:
    """``send``, adding ``X-Cache`` to the response from the request's ``@cached`` calls."""

    async def send_with_header(message: Message) -> None:
        value = noted.header
        if message["type"] == "http.response.start" and value is not None:
            headers = [*message.get("headers", ()), (b"x-cache", value.encode())]
            message = {**message, "headers": headers}
        await send(message)

    return send_with_header


async def _too_many_requests(send: Send, exc: RateLimitExceeded) -> None:
    """Answer a refused rate limit with a 429 (see :mod:`cachekit.http`). Nothing tracks
    whether the app had started its response (that would cost every request a wrapper):
    if it had, the server refuses a second start, and the refusal propagates as it was."""
    status, headers, body = rate_limit_response(exc)
    raw = [(name.lower().encode(), value.encode()) for name, value in headers]
    try:
        await send({"type": "http.response.start", "status": status, "headers": raw})
    except Exception:
        raise exc from None
    await send({"type": "http.response.body", "body": body})


async def lifespan_startup(manager: CacheManager) -> None:
    """What an app's lifespan startup does for cachekit: ping the manager's store. A
    failure is logged, not raised: the cache is lossy, the app serves without it."""
    try:
        await manager.store.aping()
    except Exception as exc:  # any store failure: log it, serve anyway (the cache is lossy)
        log.warning("cachekit: store %r did not answer at startup: %s", manager.store.name, exc)


async def lifespan_shutdown(manager: CacheManager) -> None:
    """What an app's lifespan shutdown does for cachekit: close the manager's
    connections. A failure is logged, never raised into the shutdown."""
    try:
        await manager.aclose()
    except Exception as exc:  # shutting down: report, never block the shutdown
        log.warning("cachekit: closing store %r failed: %s", manager.store.name, exc)


async def _reject(
    kind: str, scope: MutableMapping[str, Any], send: Send, rejection: Rejection
) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(rejection.body)).encode())]
    if kind == "http":
        await send({"type": "http.response.start", "status": rejection.status, "headers": headers})
        await send({"type": "http.response.body", "body": rejection.body})
    elif "websocket.http.response" in (scope.get("extensions") or {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": rejection.status,
                "headers": headers,
            }
        )
        await send({"type": "websocket.http.response.body", "body": rejection.body})
    else:
        await send(
            {
                "type": "websocket.close",
                "code": _WEBSOCKET_POLICY_VIOLATION,
                "reason": rejection.message,
            }
        )
