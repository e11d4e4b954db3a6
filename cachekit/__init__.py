"""cachekit: a private, tenant-scoped cache for every plugin of a Python web host.

::

    from cachekit import CacheManager, CacheMiddleware, cached, counter, current_cache

    manager = CacheManager.from_yaml("app-config.yaml")
    app = CacheMiddleware(asgi_app, manager=manager, plugin=..., tenant=...)

    @cached(namespace="users", ttl=60)          # in plugin code: scoped by the middleware
    async def load_user(user_id: int) -> dict: ...

    counter("hits").incr()
    current_cache().set("k", {"a": 1}, ttl=60)
"""

from cachekit.asgi import CacheMiddleware
from cachekit.cache import Cache
from cachekit.codec import MISS, Codec
from cachekit.config import CacheConfig
from cachekit.context import Scope, current_cache, current_scope, scope, set_default_manager
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
from cachekit.manager import CacheManager

__version__ = "0.1.0.dev0"

__all__ = [
    "MISS",
    "Cache",
    "CacheConfig",
    "CacheKeyError",
    "CacheManager",
    "CacheMiddleware",
    "CachePolicyError",
    "CacheValueError",
    "CachekitError",
    "Codec",
    "ConfigError",
    "NoScopeError",
    "RateLimitExceeded",
    "RateLimitResult",
    "Scope",
    "StoreError",
    "StoreTimeout",
    "StoreUnavailable",
    "__version__",
    "cached",
    "counter",
    "current_cache",
    "current_scope",
    "rate_limit",
    "rate_limited",
    "scope",
    "set_default_manager",
]
