"""The plugin side of an out-of-process plugin: its caches, over the sockets the host
announced in the environment.

::

    from cachekit import cached
    from cachekit.plugin import cache, scope

    sessions = cache("sessions", tenant="acme")     # a regular cachekit.Cache
    sessions.set("s:1", {"user": 42}, ttl=300)

    with scope(tenant="acme"):                      # the only binding: @cached, counter(),
        load_report(7)                              # current_cache() work as in the host

The host started this process with ``CACHEKIT_CACHE_SOCKET_<NAME>`` per binding, plus
``CACHEKIT_CACHE_SOCKET`` when there is exactly one (:mod:`cachekit.sockets.launcher`).
Each socket is bound host-side to this plugin and one binding: nothing sent on it can
reach another plugin's or binding's data. Calls fail like any store's
(:class:`~cachekit.errors.StoreUnavailable`, a circuit breaker, ``@cached`` failing open)
and reconnect after a host restart.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from cachekit.cache import Cache
from cachekit.context import Binding, Scope, bind, unbind
from cachekit.errors import ConfigError, StoreError
from cachekit.manager import CacheManager
from cachekit.sockets.client import SocketStore
from cachekit.sockets.protocol import SOCKET_VARIABLE, env_name

__all__ = ["aclose", "cache", "close", "scope", "socket_path"]

_MAX_SCOPES = 4096  # per binding: (tenant) caches kept; forgotten all at once past it


def socket_path(name: str = "") -> str:
    """The socket of binding ``name`` from the environment (``""``: the only binding).

    :raises ConfigError: the variable is not set, or ``name`` is ``""`` and the process has
        several bindings (the message lists them).
    """
    env = os.environ
    named = sorted(v for v in env if v.startswith(SOCKET_VARIABLE + "_"))
    variable = SOCKET_VARIABLE if name == "" else env_name(name)
    path = env.get(variable)
    if path:
        return path
    if name == "" and named:
        raise ConfigError(
            f"this process has several cache bindings ({', '.join(named)}) and so no "
            f"{SOCKET_VARIABLE}: name one, cachekit.plugin.cache('<binding>')"
        )
    where = f"; this process has {', '.join(named)}" if named else ""
    raise ConfigError(
        f"{variable} is not set: a plugin process gets its cache sockets from the host "
        f"(cachekit.sockets.launch){where}"
    )


class _Socket:
    """One binding's store, manager and caches in this process."""

    def __init__(self, name: str, path: str) -> None:
        self.store = SocketStore(path, binding=name)
        self.manager = CacheManager(store=self.store, source=f"the socket {path}")
        self.plugin = os.environ.get("CACHEKIT_PLUGIN") or "plugin"
        self.scopes: dict[str | None, Binding] = {}

    def binding(self, tenant: str | None) -> Binding:
        """The context binding of ``tenant``, its cache on the host's default TTL (asked
        once; while the host is unreachable a cache without it, not kept)."""
        binding = self.scopes.get(tenant)
        if binding is not None:
            return binding
        try:
            info = self.store.info(tenant)
        except StoreError:
            return Binding(self.manager, Scope(self.plugin, tenant))
        pinned = info.get("tenant", tenant)
        binding = Binding(self.manager, Scope(self.plugin, pinned))
        binding.cache = binding.cache.with_options(default_ttl=info.get("default_ttl"))
        if len(self.scopes) >= _MAX_SCOPES:
            self.scopes.clear()
        self.scopes[tenant] = binding
        return binding


_sockets: dict[str, _Socket] = {}
_lock = threading.Lock()


def _socket(name: str) -> _Socket:
    path = socket_path(name)
    found = _sockets.get(path)
    if found is None:
        with _lock:
            found = _sockets.get(path)
            if found is None:
                found = _sockets[path] = _Socket(name, path)
    return found


def cache(name: str = "", tenant: str | None = None) -> Cache:
    """The :class:`~cachekit.Cache` of binding ``name`` (``""``: the only one) for
    ``tenant`` (``None``: the platform scope, or the tenant the host pinned the socket
    to). The first call for a tenant asks the host its default TTL (one round trip).

    :raises ConfigError: the binding's socket is not in the environment.
    """
    return _socket(name).binding(tenant).cache


@contextmanager
def scope(tenant: str | None = None, name: str = "") -> Iterator[Cache]:
    """Bind ``tenant``'s scope of binding ``name`` for the block: ``current_cache()``,
    ``@cached``, ``counter()`` and ``rate_limit()`` use it, as under the host's middleware.
    Yields the cache.

    :raises ConfigError: the binding's socket is not in the environment.
    """
    binding = _socket(name).binding(tenant)
    token = bind(binding)
    try:
        yield binding.cache
    finally:
        unbind(token)


def close() -> None:
    """Close this process's connections to its binding sockets (at shutdown); a later
    :func:`cache` connects again."""
    with _lock:
        sockets = list(_sockets.values())
        _sockets.clear()
    for found in sockets:
        found.store.close()


async def aclose() -> None:
    """:func:`close` from async code: the running loop's connections are closed on it."""
    close()
    await asyncio.sleep(0)  # let the transports finish closing on this loop
