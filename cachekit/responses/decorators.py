"""``@cache_response``: cache an endpoint's HTTP responses in the request's scope."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Collection
from typing import Any, Final, TypeVar

from cachekit.context import caching_disabled
from cachekit.durations import TTL
from cachekit.responses import frameworks
from cachekit.responses.engine import ResponseCache
from cachekit.responses.options import DEFAULT_MAX_BODY_BYTES, response_cache
from cachekit.steps import arun, run

__all__ = ["cache_response"]

F = TypeVar("F", bound=Callable[..., Any])

_REQUEST_PARAMETER: Final = "_cachekit_request"


def _starlette_request_type() -> Any:
    try:
        from starlette.requests import Request
    except ImportError:  # no Starlette: Flask views only
        return None
    return Request


def _request_in(
    request_type: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """The Starlette request among an endpoint's arguments (``None`` when there is none:
    a Flask view), and the keyword arguments without the one cachekit added."""
    request = kwargs.pop(_REQUEST_PARAMETER, None) if _REQUEST_PARAMETER in kwargs else None
    if request is None and request_type is not None:
        for value in (*args, *kwargs.values()):
            if isinstance(value, request_type):
                return value, kwargs
    return request, kwargs


def _with_request_parameter(fn: Callable[..., Any], wrapper: Any, request_type: Any) -> None:
    """Give ``wrapper`` ``fn``'s signature plus a keyword-only request parameter when
    ``fn`` takes no request, so FastAPI passes one (as fastapi-cache2 does)."""
    if request_type is None:
        return
    try:  # the annotations as objects: FastAPI reads them from the wrapper's signature
        signature = inspect.signature(fn, eval_str=True)
    except NameError:  # a forward reference not defined yet: FastAPI resolves it later
        signature = inspect.signature(fn)
    if any(p.annotation is request_type for p in signature.parameters.values()):
        wrapper.__signature__ = signature
        return
    extra = inspect.Parameter(
        _REQUEST_PARAMETER, inspect.Parameter.KEYWORD_ONLY, annotation=request_type
    )
    parameters = list(signature.parameters.values())
    position = next(
        (i for i, p in enumerate(parameters) if p.kind is inspect.Parameter.VAR_KEYWORD),
        len(parameters),
    )
    parameters.insert(position, extra)
    wrapper.__signature__ = signature.replace(parameters=parameters)


def cache_response(
    ttl: TTL,
    *,
    vary: Collection[str] = (),
    tags: Collection[str] = (),
    stale_while_revalidate: TTL = 0,
    stale_if_error: TTL = 0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    authorized: bool = False,
    honour_client: bool = True,
    cache_control: bool = False,
    lock: bool = False,
    lock_timeout: TTL = 10.0,
    clock: Callable[[], float] = time.time,
) -> Callable[[F], F]:
    """Cache the HTTP responses of a Starlette or FastAPI endpoint (``def`` or
    ``async def``) or a Flask view, in the request's scope (plugin, tenant), following RFC
    9111 for a shared cache::

        @app.get("/products/{item_id}")
        @cache_response(ttl="5m", vary=("Accept-Language",), tags=("product:{item_id}",))
        async def product(item_id: int) -> dict: ...

    Only ``GET`` and ``HEAD`` are cached (a ``HEAD`` is served from the ``GET`` entry),
    only statuses cacheable by default, never a response with ``Set-Cookie`` or
    ``Cache-Control: no-store`` / ``no-cache`` / ``private`` or ``Vary: *``, never a
    request with ``Authorization`` unless ``authorized=True``. Responses get a strong
    ``ETag`` when they have none, ``Age`` and ``X-Cache: HIT | MISS | STALE``;
    ``If-None-Match`` and ``If-Modified-Since`` are answered with 304. Concurrent
    requests for one cold key run the endpoint once (``lock=True``: across processes).

    A FastAPI endpoint's return value that is not a ``Response`` is encoded as JSON with
    FastAPI's ``jsonable_encoder`` (a ``response_model`` does not filter it: return the
    model itself). The decorator goes *below* the route decorator.

    :param ttl: how long a response stays fresh (seconds, ``timedelta`` or ``"5m"``);
        the response's own ``s-maxage`` or ``max-age`` can only shorten it.
    :param vary: request headers the response depends on, added to its ``Vary``.
    :param tags: tags of every response (``str.format`` templates over the route's path
        parameters), for :func:`cachekit.responses.invalidate_tags`.
    :param stale_while_revalidate: serve an expired response this long while it is
        refreshed in the background (the response's own directive wins).
    :param stale_if_error: serve an expired response this long when the endpoint raises
        or answers 5xx (the response's own directive wins).
    :param max_body_bytes: the largest body stored (default 1 MiB); larger ones, and
        streaming responses, pass through uncached.
    :param authorized: serve and store responses to requests with ``Authorization``
        (only for responses that do not depend on who asks).
    :param honour_client: obey the request's ``Cache-Control`` (default); ``False``
        ignores it.
    :param cache_control: add ``Cache-Control: max-age=<ttl>`` when the endpoint sets none.
    :param lock: run the endpoint once across processes for a cold key.
    :param lock_timeout: the longest a request waits for another process's response.
    :param clock: the wall clock (seconds); inject a fake one in tests.
    :raises CacheValueError: a bad duration, ``vary`` or ``tags`` entry, or
        ``max_body_bytes`` (when applied).
    """
    options: dict[str, Any] = {
        "vary": vary,
        "tags": tags,
        "stale_while_revalidate": stale_while_revalidate,
        "stale_if_error": stale_if_error,
        "max_body_bytes": max_body_bytes,
        "authorized": authorized,
        "honour_client": honour_client,
        "cache_control": cache_control,
        "lock": lock,
        "lock_timeout": lock_timeout,
        "clock": clock,
    }
    response_cache(ttl, **options)  # checked now: a bad option fails at import

    def decorate(fn: F) -> F:
        engine = response_cache(ttl, name=fn.__qualname__, **options)
        request_type = _starlette_request_type()
        wrapper: Any
        if inspect.iscoroutinefunction(fn):

            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                request, kwargs = _request_in(request_type, args, kwargs)
                return await _async_endpoint(engine, fn, request, args, kwargs)

        else:

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                request, kwargs = _request_in(request_type, args, kwargs)
                return _sync_endpoint(engine, fn, request, args, kwargs)

        functools.update_wrapper(wrapper, fn)
        _with_request_parameter(fn, wrapper, request_type)
        return wrapper  # type: ignore[no-any-return]

    return decorate


async def _async_endpoint(
    engine: ResponseCache,
    fn: Callable[..., Any],
    request: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """An ``async def`` endpoint (Starlette or FastAPI) through the response cache."""
    if request is None:
        raise TypeError(
            f"@cache_response on async {fn.__qualname__}: no Starlette request among its "
            "arguments (a Flask view must be a def)"
        )
    lookup = engine.lookup(frameworks.starlette_request(request))
    if lookup is None or caching_disabled.get():
        return await fn(*args, **kwargs)

    async def fetch() -> Any:
        return frameworks.starlette_fetched(await fn(*args, **kwargs))

    result = await arun(engine.respond(engine.cache(), lookup, fetch, fetch))
    return frameworks.starlette_response(result)


def _sync_endpoint(
    engine: ResponseCache,
    fn: Callable[..., Any],
    request: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """A ``def`` endpoint through the response cache: a Starlette or FastAPI one (run in
    the framework's thread pool) when a Starlette request is among its arguments, else a
    Flask view."""
    read: Callable[[], Any]
    if request is not None:
        read, to_fetched, to_response = (
            functools.partial(frameworks.starlette_request, request),
            frameworks.starlette_fetched,
            frameworks.starlette_response,
        )
    else:
        read, to_fetched, to_response = (
            frameworks.flask_request,
            frameworks.flask_fetched,
            frameworks.flask_response,
        )
    lookup = engine.lookup(read())
    if lookup is None or caching_disabled.get():
        return fn(*args, **kwargs)

    def fetch() -> Any:
        return to_fetched(fn(*args, **kwargs))

    return to_response(run(engine.respond(engine.cache(), lookup, fetch, fetch)))
