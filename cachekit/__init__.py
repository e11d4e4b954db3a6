"""cachekit: a private, tenant-scoped cache for every plugin of a Python web host.

::

    from cachekit import CacheManager

    manager = CacheManager.from_yaml("app-config.yaml")
    cache = manager.for_plugin("catalog", tenant="acme")
    cache.set("k", {"a": 1}, ttl=60)
    cache.get("k")
"""

from cachekit.asgi import CacheMiddleware
from cachekit.cache import Cache
from cachekit.codec import MISS, Codec
from cachekit.config import CacheConfig
from cachekit.context import Scope, current_cache, current_scope, scope, set_default_manager
from cachekit.errors import (
    CacheKeyError,
    CachekitError,
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
    "CacheValueError",
    "CachekitError",
    "Codec",
    "ConfigError",
    "NoScopeError",
    "RateLimitExceeded",
    "Scope",
    "StoreError",
    "StoreTimeout",
    "StoreUnavailable",
    "__version__",
    "current_cache",
    "current_scope",
    "scope",
    "set_default_manager",
]
