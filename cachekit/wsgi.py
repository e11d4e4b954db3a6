"""WSGI middleware: bind each request's plugin and tenant scope (:class:`CacheMiddleware`).

::

    from flask import Flask
    from cachekit.host import CacheManager
    from cachekit.resolvers import header, path_segment
    from cachekit.wsgi import CacheMiddleware

    app = Flask(__name__)
    app.wsgi_app = CacheMiddleware(
        app.wsgi_app,
        manager=CacheManager.from_yaml("app-config.yaml"),
        plugin=path_segment(1, known={"catalog", "reviews"}),   # /api/<plugin>/...
        tenant=header("X-Tenant-ID"),  # only behind authentication: see cachekit.resolvers
    )
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from cachekit.context import Binding, CacheOutcome, bind, unbind
from cachekit.errors import RateLimitExceeded
from cachekit.http import rate_limit_response
from cachekit.middleware import ScopeMiddleware, bind_request, unbind_request
from cachekit.resolvers import (
    Rejection,
)
from cachekit.responses.wsgi import CachedResponses

__all__ = ["CacheMiddleware"]


class CacheMiddleware(ScopeMiddleware[WSGIApplication]):
    """Binds the (plugin, tenant) scope of every request while the app runs *and* while
    the server iterates and closes the response, so streaming responses and generators
    can call :func:`cachekit.current_cache`.

    The scope is bound only inside the middleware's own calls — the app call, each step of
    the response iterable, and its ``close()`` — and unbound when each returns. Whatever
    thread or context the server iterates the response in, the app's code sees the scope,
    and nothing the server runs between requests does: a thread pool never carries one
    request's scope into the next.

    A request whose ids cannot be resolved or are invalid never reaches the app: it gets a
    400 (404 for an unknown plugin) with a JSON body ``{"error": "...", "expected": "..."}``
    (``expected`` names where a built-in resolver looks, e.g. ``header X-Tenant-ID``). Each
    refusal is logged at DEBUG. Excluded paths (``exclude=``) reach the app without a scope.
    The store is not touched per request.

    :param app: the WSGI app to wrap (for Flask: ``app.wsgi_app``).
    :param manager: the manager to use (default: the active one at each request, see
        :func:`cachekit.context.active_manager`); registered as the process default
        (:func:`cachekit.host.set_default_manager`).
    :param plugin: a fixed plugin id or a resolver (:mod:`cachekit.resolvers`).
    :param tenant: a tenant resolver, or ``None`` for the platform scope. A tenant from a
        client header must be verified by an authentication layer first.
    :param tenant_required: refuse requests without a tenant (default: ``True`` when a
        tenant resolver is given); when ``False`` they run in the platform scope. A tenant
        that is given but invalid is refused either way.
    :param exclude: paths that reach the app without a scope — health probes, metrics:
        ``["/healthz", "/static/*"]`` (exact paths; a trailing ``/*`` is a prefix of whole
        segments), or a callable of the path (:data:`cachekit.resolvers.Exclude`).
    :param cache_header: add ``X-Cache: HIT`` or ``MISS`` to responses whose request ran
        ``@cached`` functions before starting the response (``MISS`` if any call missed).
    :param id_pattern: accepted plugin and tenant ids (whole-string match; default 1-64
        characters of ``A-Za-z0-9._-``).
    :param responses: cache the HTTP responses under these path prefixes (whole segments)
        in each request's scope, following RFC 9111:
        ``{"/api/catalog": response_cache("5m", vary=("Accept-Language",))}``, or a plain
        TTL (:func:`cachekit.responses.response_cache`).
    :raises TypeError: a resolver is not callable, ``tenant`` is a plain string, or
        ``exclude`` is neither paths nor a callable.
    :raises ValueError: a fixed plugin id does not match ``id_pattern``,
        ``tenant_required=True`` without a tenant resolver, or a bad excluded path.
    """

    # __init__: ScopeMiddleware's (the parameters above)
    cached_responses = CachedResponses

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Handle one request (PEP 3333): refuse it, or run the app in its scope."""
        result = self.resolver.resolve_wsgi(environ, self.request_manager())
        if result is None:  # an excluded path: no scope
            return self.app(environ, start_response)
        if isinstance(result, Rejection):
            return _reject(start_response, result)
        started = False
        noted = CacheOutcome() if self.cache_header else None

        def start_and_note(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            nonlocal started
            started = True
            value = noted.header if noted is not None else None
            if value is not None:
                headers = [*headers, ("X-Cache", value)]
            return start_response(status, headers, *exc_info)

        tokens = bind_request(result, noted)
        try:
            response = self.app(environ, start_and_note)
        except RateLimitExceeded as exc:
            # PEP 3333: if the app had started a response, pass exc_info: the server then
            # replaces headers not sent yet, or re-raises.
            status, headers, body = rate_limit_response(exc)
            exc_info = sys.exc_info() if started else None
            start_response(f"{status} {HTTPStatus(status).phrase}", headers, exc_info)
            return [body]
        finally:
            unbind_request(tokens)
        if isinstance(response, list | tuple) or type(response) is environ.get("wsgi.file_wrapper"):
            # Complete, or a file the server sends itself (keep its fast path): no app
            # code runs while it is sent.
            return response
        return ScopedResponse(response, result)

    def close(self) -> None:
        """Close the manager's store connections (WSGI has no shutdown hook: call this
        from ``atexit`` or the server's shutdown, if the store needs it)."""
        self.request_manager().close()


class ScopedResponse:
    """A response iterable that runs each step of the app's iterable, and its
    ``close()``, with the request's scope bound (werkzeug's ``ClosingIterator`` shape).

    :param response: the iterable the app returned.
    :param binding: the request's binding.
    """

    __slots__ = ("_binding", "_iterator", "_response")

    def __init__(self, response: Iterable[bytes], binding: Binding) -> None:
        self._response = response
        self._binding = binding
        self._iterator: Iterator[bytes] | None = None

    def __repr__(self) -> str:
        return f"ScopedResponse({self._response!r}, {self._binding.scope!r})"

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        token = bind(self._binding)
        try:
            iterator = self._iterator
            if iterator is None:
                iterator = self._iterator = iter(self._response)
            return next(iterator)
        finally:
            unbind(token)

    def close(self) -> None:
        """Close the app's iterable (PEP 3333), in the request's scope."""
        close = getattr(self._response, "close", None)
        if close is None:
            return
        token = bind(self._binding)
        try:
            close()
        finally:
            unbind(token)


def _reject(start_response: StartResponse, rejection: Rejection) -> list[bytes]:
    status = f"{rejection.status} {HTTPStatus(rejection.status).phrase}"
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(rejection.body)))],
    )
    return [rejection.body]
