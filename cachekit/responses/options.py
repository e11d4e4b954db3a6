"""The options of response caching, checked once: :func:`response_cache` (for the
middlewares' ``responses=``) and :func:`cachekit.responses.cache_response` share them."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from cachekit.durations import TTL, store_ttl
from cachekit.errors import CacheValueError, ConfigError
from cachekit.responses.engine import ResponseCache
from cachekit.responses.policy import Rules

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "CachedPrefixes",
    "Prefixes",
    "Responses",
    "by_prefix",
    "match",
    "response_cache",
]

DEFAULT_MAX_BODY_BYTES: Final = 1 << 20


def _names(value: Collection[str], what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    names = tuple(value)
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise CacheValueError(f"{what} takes non-empty strings, got {name!r}")
    return names


def response_cache(
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
    name: str | None = None,
    clock: Callable[[], float] = time.time,
) -> ResponseCache:
    """A response cache for one endpoint or path prefix (the parameters are
    :func:`cachekit.responses.cache_response`'s). For the middlewares::

        CacheMiddleware(app, ..., responses={"/api/catalog": response_cache("5m")})

    :raises CacheValueError: a bad duration, ``vary``/``tags`` entry or ``max_body_bytes``.
    """
    seconds = store_ttl(ttl)
    if seconds is None:
        raise CacheValueError(
            f"response caching needs a ttl > 0 (a response is never kept forever), got {ttl!r}"
        )
    if type(max_body_bytes) is not int or max_body_bytes <= 0:
        raise CacheValueError(f"max_body_bytes must be an int > 0, got {max_body_bytes!r}")
    timeout = store_ttl(lock_timeout, "lock_timeout")
    if timeout is None:
        raise CacheValueError(f"lock_timeout must be > 0, got {lock_timeout!r}")
    rules = Rules(
        ttl=seconds,
        vary=_names(vary, "vary="),
        tags=_names(tags, "tags="),
        stale_while_revalidate=store_ttl(stale_while_revalidate, "stale_while_revalidate") or 0.0,
        stale_if_error=store_ttl(stale_if_error, "stale_if_error") or 0.0,
        max_body_bytes=max_body_bytes,
        authorized=authorized,
        honour_client=honour_client,
        cache_control=cache_control,
    )
    return ResponseCache(rules, name=name, lock=lock, lock_timeout=timeout, clock=clock)


Prefixes = tuple[tuple[str, ResponseCache], ...]
Responses = Mapping[str, ResponseCache | TTL]
"""A middleware's ``responses=``: path prefixes to a :func:`response_cache` or a TTL."""


def by_prefix(responses: Responses) -> Prefixes:
    """A middleware's ``responses=``: path prefixes (whole segments; ``"/"`` is every
    path) to a :func:`response_cache` or a plain TTL, longest prefix first.

    :raises ConfigError: a prefix does not start with ``/``.
    """
    found: list[tuple[str, ResponseCache]] = []
    for prefix, cache in responses.items():
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise ConfigError(f"responses=: a path prefix starts with '/', got {prefix!r}")
        if not isinstance(cache, ResponseCache):
            cache = response_cache(cache, name=f"responses {prefix}")
        found.append((prefix.rstrip("/"), cache))
    return tuple(sorted(found, key=lambda item: -len(item[0])))


def match(prefixes: Prefixes, path: str) -> ResponseCache | None:
    """The response cache of the longest prefix ``path`` is under, if any."""
    for prefix, cache in prefixes:
        if path == prefix or path.startswith(prefix + "/") or not prefix:
            return cache
    return None


class CachedPrefixes:
    """What the ASGI and WSGI ``CachedResponses`` apps share: the app they wrap and the
    response cache of each path prefix.

    :param app: the app.
    :param responses: the middleware's ``responses=`` (:data:`Responses`).
    :raises ConfigError: a prefix does not start with ``/``.
    """

    __slots__ = ("app", "prefixes")

    def __init__(self, app: Any, responses: Responses) -> None:
        self.app = app
        self.prefixes = by_prefix(responses)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.app!r}, {[prefix for prefix, _ in self.prefixes]})"
