"""The exceptions cachekit raises.

Every exception derives from :class:`CachekitError`, so ``except CachekitError`` catches
anything cachekit itself raises. Driver exceptions (redis-py, pymemcache, ...) never leak:
the stores map them to :class:`StoreError` subclasses at the I/O boundary.

::

    CachekitError
    ├── ConfigError(ValueError)          bad ``backend.cache`` config, missing driver
    ├── NoScopeError(LookupError)        no plugin scope bound in this context
    ├── CacheKeyError(ValueError)        bad key, plugin id, tenant id or namespace
    ├── CacheValueError(TypeError, ValueError)
    │                                    unencodable value, bad TTL, incr of a non-integer,
    │                                    value over a store's size limit
    ├── CachePolicyError                 a plugin's policy refused the call (``operations``)
    │   └── ValueTooLarge(CacheValueError)
    │                                    a value over the plugin's ``maxValueBytes``
    ├── StoreError                       the store failed
    │   ├── StoreUnavailable             cannot reach the store (down, refused, auth)
    │   └── StoreTimeout                 the store did not answer in time
    └── RateLimitExceeded                a rate limit refused the call
"""

from __future__ import annotations

__all__ = [
    "CacheKeyError",
    "CachePolicyError",
    "CacheValueError",
    "CachekitError",
    "ConfigError",
    "NoScopeError",
    "RateLimitExceeded",
    "StoreError",
    "StoreTimeout",
    "StoreUnavailable",
    "ValueTooLarge",
]


class CachekitError(Exception):
    """Root of every exception cachekit raises."""


class ConfigError(CachekitError, ValueError):
    """The cache configuration is invalid; the message names the config path and the fix.

    :ivar path: the dotted config path at fault (``backend.cache.store``), or ``""``.
    """

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class NoScopeError(CachekitError, LookupError):
    """No plugin scope is bound in the current context."""


class CacheKeyError(CachekitError, ValueError):
    """A key, plugin id, tenant id or namespace is invalid."""


class CacheValueError(CachekitError, TypeError, ValueError):
    """A value (or TTL) cannot be stored, or a stored value does not fit the operation."""


class CachePolicyError(CachekitError):
    """A plugin's policy (``backend.cache.plugins.<id>``, ``pluginDefaults``,
    ``tenants.<id>``) refused the call, before any I/O. Not a store error: it never moves a
    circuit breaker and ``@cached`` does not fail open on it.

    :ivar plugin: the plugin whose policy refused the call.
    :ivar tenant: the tenant of the scope (``None``: the platform scope).
    :ivar limit: the policy key at stake (``"operations"``, ``"maxValueBytes"``).
    :ivar value: what the call asked for (the operation, the encoded size in bytes).
    """

    def __init__(
        self, message: str, *, plugin: str, tenant: str | None, limit: str, value: object
    ) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.tenant = tenant
        self.limit = limit
        self.value = value


class ValueTooLarge(CachePolicyError, CacheValueError):
    """An encoded value is larger than the plugin's ``maxValueBytes``; nothing was written.
    Also a :class:`CacheValueError`, so code catching that keeps working."""


class StoreError(CachekitError):
    """The store behind the cache failed.

    :ivar store: the store's name (``"redis"``, ``"memcache"``, ...).
    """

    def __init__(self, message: str, *, store: str = "") -> None:
        super().__init__(message)
        self.store = store


class StoreUnavailable(StoreError):
    """The store cannot be reached (down, connection refused, authentication failed)."""


class StoreTimeout(StoreError):
    """The store did not answer within the configured timeout."""


class RateLimitExceeded(CachekitError):
    """A rate limit refused the call.

    :ivar limit: the number of hits allowed per window.
    :ivar remaining: hits left in the current window (``0`` when refused).
    :ivar retry_after: seconds until a hit would be allowed again.
    :ivar reset_after: seconds until the limit is fully available again.
    """

    def __init__(
        self,
        message: str,
        *,
        limit: int,
        remaining: int,
        retry_after: float,
        reset_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.limit = limit
        self.remaining = remaining
        self.retry_after = retry_after
        self.reset_after = retry_after if reset_after is None else reset_after
