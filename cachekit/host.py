"""The host's side of cachekit: everything plugin code must not reach, in one module.

::

    from cachekit.host import CacheManager, CacheMiddleware, scope

    manager = CacheManager.from_yaml("app-config.yaml")
    app = CacheMiddleware(asgi_app, manager=manager, plugin=..., tenant=...)

    with scope(plugin="reports", tenant="acme"):      # a job the host runs for a plugin
        ...
    manager.clear(tenant="acme")                      # tenant offboarding, every plugin

Plugin code imports only :mod:`cachekit` (and :mod:`cachekit.testing` in its tests): its
names — ``current_cache()``, ``Cache`` and its namespaces, ``@cached``, ``counter()``,
``rate_limit()`` — expose no store, no manager, no full key and no way to name another
plugin or tenant. The host builds managers, binds scopes, reads raw stores
(``manager.store``), sees the key layout (:meth:`CacheManager.full_key`), clears across
scopes (:meth:`CacheManager.clear`) and reads every scope's stats
(:meth:`CacheManager.stats`) — all through the names below, so a review of a plugin can grep
for ``cachekit.host`` (and for any other ``cachekit.`` submodule: every one but
``cachekit.testing`` is host-side).

In one Python process this is a convention made explicit, not a sandbox: see the README,
"What plugins can reach".
"""

from __future__ import annotations

from cachekit.asgi import CacheMiddleware
from cachekit.cache import Cache
from cachekit.codec import Codec
from cachekit.config import CacheConfig
from cachekit.context import (
    Scope,
    ScopeContext,
    active_manager,
    get_default_manager,
    scope,
    set_default_manager,
)
from cachekit.manager import CacheBinding, CacheManager
from cachekit.sockets import launch, socket_bindings
from cachekit.wsgi import CacheMiddleware as WSGICacheMiddleware

__all__ = [
    "Cache",
    "CacheBinding",
    "CacheConfig",
    "CacheManager",
    "CacheMiddleware",
    "Codec",
    "Scope",
    "ScopeContext",
    "WSGICacheMiddleware",
    "active_manager",
    "get_default_manager",
    "launch",
    "scope",
    "set_default_manager",
    "socket_bindings",
]
