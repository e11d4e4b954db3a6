"""cachekit: a private, tenant-scoped cache for every plugin of a Python web host.

This package is the plugin surface — what plugin code imports::

    from cachekit import cached, counter, current_cache

    @cached(namespace="users", ttl=60)          # scoped by the host's middleware
    async def load_user(user_id: int) -> dict: ...

    counter("hits").incr()
    current_cache().set("k", {"a": 1}, ttl=60)

None of these names exposes a store, a manager, a full key or another plugin's or tenant's
scope. The host's side — managers, middlewares, ``scope()``, cross-scope clears, raw stores —
is :mod:`cachekit.host`::

    from cachekit.host import CacheManager, CacheMiddleware

    manager = CacheManager.from_yaml("app-config.yaml")
    app = CacheMiddleware(asgi_app, manager=manager, plugin=..., tenant=...)
"""

import typing

from cachekit.cache import Cache
from cachekit.codec import MISS
from cachekit.context import Scope, carry, current_cache, current_scope
from cachekit.counters import RateLimitResult, counter, rate_limit, rate_limited
from cachekit.decorators import cached
from cachekit.errors import (
    CacheKeyError,
    CachekitError,
    CachePolicyError,
    CacheValueError,
    ConfigError,
    NoScopeError,
    RateLimitExceeded,
    StoreError,
    StoreTimeout,
    StoreUnavailable,
)
from cachekit.responses import (
    ainvalidate_path,
    ainvalidate_tags,
    cache_response,
    invalidate_path,
    invalidate_tags,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "MISS",
    "Cache",
    "CacheKeyError",
    "CachePolicyError",
    "CacheValueError",
    "CachekitError",
    "ConfigError",
    "NoScopeError",
    "RateLimitExceeded",
    "RateLimitResult",
    "Scope",
    "StoreError",
    "StoreTimeout",
    "StoreUnavailable",
    "__version__",
    "ainvalidate_path",
    "ainvalidate_tags",
    "cache_response",
    "cached",
    "carry",
    "counter",
    "current_cache",
    "current_scope",
    "invalidate_path",
    "invalidate_tags",
    "rate_limit",
    "rate_limited",
]

_MOVED = frozenset(
    {
        "CacheConfig",
        "CacheManager",
        "CacheMiddleware",
        "Codec",
        "active_manager",
        "get_default_manager",
        "scope",
        "set_default_manager",
    }
)


if not typing.TYPE_CHECKING:  # type checkers report the moved names as missing: as they are

    def __getattr__(name: str) -> object:
        """The host's names left this package (0.1): say where they went."""
        if name in _MOVED:
            # an ImportError, not an AttributeError: `from cachekit import X` turns an
            # AttributeError into a message that does not say where X went
            raise ImportError(
                f"cachekit.{name} is host-side: use `from cachekit.host import {name}`; "
                "plugin code imports only cachekit (see the README, 'What plugins can reach')",
                name=name,
            )
        raise AttributeError(f"module 'cachekit' has no attribute {name!r}")
