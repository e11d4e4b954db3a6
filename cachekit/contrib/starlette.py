"""FastAPI and Starlette helpers (extra ``starlette``): a dependency returning the
request's :class:`~cachekit.Cache`, a lifespan that opens and closes the store, the
exception handler turning :class:`~cachekit.errors.RateLimitExceeded` into a 429
(:func:`rate_limit_handler`), and :func:`install`, which wires the middleware and that
handler into an app.

::

    from starlette.applications import Starlette
    from cachekit.host import CacheManager
    from cachekit.contrib.starlette import cache_dependency, install, lifespan
    from cachekit.resolvers import header

    manager = CacheManager.from_yaml("app-config.yaml")
    app = Starlette(routes=routes, lifespan=lifespan(manager))
    install(app, manager, plugin="catalog", tenant=header("X-Tenant-ID"))

    # FastAPI: the request's cache (or one namespace of it) as a dependency
    from typing import Annotated
    from fastapi import Depends
    from cachekit import Cache

    Users = Annotated[Cache, Depends(cache_dependency("users"))]

    @app.get("/users/{user_id}")
    async def get_user(user_id: int, users: Users) -> dict: ...

The dependency is an ``async def``, so FastAPI calls it on the event loop, inside the
request's scope, without a trip through its thread pool.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeAlias

from cachekit.asgi import CacheMiddleware, lifespan_shutdown, lifespan_startup
from cachekit.cache import Cache
from cachekit.context import (
    activate_manager,
    current_cache,
    deactivate_manager,
    set_default_manager,
)
from cachekit.errors import RateLimitExceeded
from cachekit.http import rate_limit_response
from cachekit.keys import escape_segment
from cachekit.manager import CacheManager
from cachekit.resolvers import PluginResolver, TenantResolver

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["Lifespan", "cache_dependency", "install", "lifespan", "rate_limit_handler"]

Lifespan: TypeAlias = Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]]
"""What Starlette's ``lifespan=`` takes: ``app -> async context manager`` (yielding the
lifespan state, or ``None``)."""


def cache_dependency(namespace: str | None = None) -> Callable[[], Awaitable[Cache]]:
    """A FastAPI dependency (``Depends(cache_dependency())``) returning the request's cache,
    or its namespace ``namespace``: :func:`cachekit.current_cache` for code that prefers
    injection. Plain code can ``await`` it too.

    The returned callable raises :class:`~cachekit.errors.NoScopeError` when no scope is
    bound (the app is not behind the middleware).

    :raises CacheKeyError: ``namespace`` is empty or not a ``str`` (checked here, once).
    """
    if namespace is not None:
        escape_segment(namespace, "namespace")

    async def cachekit_cache() -> Cache:
        return current_cache(namespace)

    return cachekit_cache


def lifespan(manager: CacheManager, inner: Lifespan | None = None) -> Lifespan:
    """A Starlette/FastAPI ``lifespan=`` that pings the store at startup (a failure is
    logged, not raised: the cache is lossy) and closes its connections at shutdown. The
    manager is the active one (:func:`cachekit.context.active_manager`) for the startup and
    shutdown code.

    :param manager: the manager whose store to open and close.
    :param inner: the app's own lifespan, run inside this one (its state is passed on).
    """

    @contextlib.asynccontextmanager
    async def cachekit_lifespan(app: Any) -> AsyncIterator[Mapping[str, Any] | None]:
        token = activate_manager(manager)
        try:
            await lifespan_startup(manager)
            if inner is None:
                yield None
            else:
                async with inner(app) as state:
                    yield state
        finally:
            await lifespan_shutdown(manager)
            deactivate_manager(token)

    return cachekit_lifespan


def install(
    app: Starlette,
    manager: CacheManager | None = None,
    *,
    plugin: str | PluginResolver,
    tenant: TenantResolver | None = None,
    **options: Any,
) -> Starlette:
    """Serve ``app`` through :class:`cachekit.host.CacheMiddleware` (added with
    ``app.add_middleware``) and turn :class:`~cachekit.errors.RateLimitExceeded` into a 429
    (:func:`rate_limit_handler`). Call it before the app starts.

    ``manager`` is registered as the process default now
    (:func:`cachekit.host.set_default_manager`), not when Starlette builds the middleware at the
    app's first call, so background code started before the server sees it too.

    :param manager: the manager (default: the active one at each request).
    :param plugin: a fixed plugin id or a resolver (:mod:`cachekit.resolvers`).
    :param tenant: a tenant resolver, or ``None`` for the platform scope.
    :param options: more :class:`~cachekit.host.CacheMiddleware` options (``tenant_required``,
        ``id_pattern``, ``manage_store``, ``cache_header``, ``exclude`` — for FastAPI,
        ``exclude=["/docs/*", "/redoc", "/openapi.json"]``).
    :returns: ``app``.
    :raises RuntimeError: the app has already started (Starlette 0.24 and later refuse
        new middleware then; older releases rebuild the middleware stack).
    """
    if manager is not None:
        set_default_manager(manager)
    app.add_middleware(CacheMiddleware, manager=manager, plugin=plugin, tenant=tenant, **options)
    app.add_exception_handler(RateLimitExceeded, rate_limit_handler)
    return app


async def rate_limit_handler(request: Request, exc: Exception) -> Response:
    """A Starlette/FastAPI exception handler turning
    :class:`~cachekit.errors.RateLimitExceeded` into a 429 with ``Retry-After`` and
    ``RateLimit-*`` headers (see :mod:`cachekit.http`)::

        app.add_exception_handler(RateLimitExceeded, rate_limit_handler)

    An endpoint's exception reaches an outer middleware only as a 500, so an app needs
    this handler as well as :class:`~cachekit.host.CacheMiddleware`.

    :raises TypeError: ``exc`` is not a ``RateLimitExceeded`` (the handler is registered
        for another exception).
    """
    from starlette.responses import Response

    if not isinstance(exc, RateLimitExceeded):
        raise TypeError(f"rate_limit_handler handles RateLimitExceeded, got {exc!r}")
    status, headers, body = rate_limit_response(exc)
    return Response(body, status_code=status, headers=dict(headers))
