"""HTTP response caching (RFC 9111, for a shared cache), per plugin and tenant.

::

    from cachekit.responses import cache_response, invalidate_tags

    @app.get("/products/{item_id}")                    # FastAPI, Starlette or Flask
    @cache_response(ttl="5m", tags=("product:{item_id}",))
    async def product(item_id: int) -> dict: ...

    await ainvalidate_tags("product:7")               # after the product changed

or, for whole path prefixes, the middlewares' ``responses=`` option (host code)::

    CacheMiddleware(app, manager=..., plugin=..., responses={"/api/catalog": response_cache("5m")})

Responses live in the request's scope: two tenants or two plugins never share one.

Modules: :mod:`~cachekit.responses.policy` (the RFC 9111 rules, pure),
:mod:`~cachekit.responses.keys` (response and tag keys), :mod:`~cachekit.responses.entries`
(the stored form: variants per ``Vary`` values), :mod:`~cachekit.responses.engine` (one
request through the cache, sync and async), :mod:`~cachekit.responses.tags` (invalidation),
:mod:`~cachekit.responses.asgi` and :mod:`~cachekit.responses.wsgi` (the middlewares'
option), :mod:`~cachekit.responses.decorators` and :mod:`~cachekit.responses.frameworks`
(the endpoint decorator).
"""

from cachekit.responses.decorators import cache_response
from cachekit.responses.engine import ResponseCache
from cachekit.responses.options import response_cache
from cachekit.responses.tags import (
    ainvalidate_path,
    ainvalidate_tags,
    invalidate_path,
    invalidate_tags,
)

__all__ = [
    "ResponseCache",
    "ainvalidate_path",
    "ainvalidate_tags",
    "cache_response",
    "invalidate_path",
    "invalidate_tags",
    "response_cache",
]
