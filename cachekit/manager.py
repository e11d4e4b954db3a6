"""The host's side: :class:`CacheManager` turns config into one shared store and hands
each plugin a :class:`~cachekit.cache.Cache` bound to its scope."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, Self

from cachekit.cache import Cache
from cachekit.codec import Codec
from cachekit.config import CacheConfig, load_app_config, parse_app_config
from cachekit.errors import CacheKeyError
from cachekit.keys import ANY, KeySelector, KeySpace
from cachekit.metrics import Metrics, StatsRow
from cachekit.policy import check_plugins
from cachekit.policy import resolve as resolve_policy
from cachekit.stores import Store, create_store

__all__ = ["CacheManager"]


class CacheManager:
    """Owns the store chosen in config and hands out scoped caches.

    Every :class:`~cachekit.cache.Cache` it makes shares its one store (one connection
    pool per process, whatever the number of plugins). Building a manager validates the
    whole config and connects to nothing; the store connects on first use.

    :param config: the parsed ``backend.cache`` section (default: in-memory store).
    :param store: a store instance to use instead of the one ``config`` names.
    :param codec: the value codec (register extra types on it).
    :param plugins: the host's plugin ids: limits in ``backend.cache.plugins`` for any
        other id are then a ``ConfigError`` (as with ``backend.cache.knownPlugins``).
    :raises ConfigError: the config names an unknown store or a missing driver, or sets
        limits for a plugin ``plugins`` does not list.
    """

    def __init__(
        self,
        config: CacheConfig | None = None,
        *,
        store: Store | None = None,
        codec: Codec | None = None,
        plugins: Iterable[str] | None = None,
    ) -> None:
        self.config = config if config is not None else CacheConfig()
        check_plugins(self.config, plugins)
        self.store: Store = store if store is not None else create_store(self.config)
        self.codec = codec if codec is not None else Codec()
        self.keyspace = KeySpace(self.store.key_prefix)
        self.metrics = Metrics(
            per_tenant=self.config.metrics.per_tenant, max_series=self.config.metrics.max_series
        )

    @classmethod
    def from_config(cls, app_config: Mapping[str, Any], **kwargs: Any) -> Self:
        """Build from an app-config mapping (its ``backend.cache`` section is used)."""
        return cls(parse_app_config(app_config), **kwargs)

    @classmethod
    def from_yaml(
        cls, path: str | os.PathLike[str], *more_paths: str | os.PathLike[str], **kwargs: Any
    ) -> Self:
        """Build from YAML files, deep-merged in order (later files win), with ``${VAR}``
        environment references substituted."""
        return cls.from_config(load_app_config(path, *more_paths), **kwargs)

    def __repr__(self) -> str:
        return f"CacheManager(store={self.store!r})"

    def for_plugin(self, plugin_id: str, tenant: str | None = None) -> Cache:
        """The cache of ``plugin_id`` for ``tenant`` (``None``: the platform scope), under
        the scope's policy (:func:`cachekit.policy.resolve`, worked out here, once per cache).

        :raises CacheKeyError: an id is empty or not a ``str``.
        """
        policy = resolve_policy(self.config, plugin_id, tenant)
        return Cache(
            self.store,
            plugin=plugin_id,
            tenant=tenant,
            default_ttl=policy.default_ttl,
            codec=self.codec,
            keyspace=self.keyspace,
            metrics=self.metrics,
            policy=policy,
        )

    def stats(self) -> list[StatsRow]:
        """Hits, misses, sets, deletes, errors and store latency of every
        (plugin, namespace, store) this manager's caches have used — per tenant too when
        ``backend.cache.metrics.perTenant`` is on."""
        return self.metrics.snapshot()

    def _selector(self, plugin: str | None, tenant: str | None) -> KeySelector:
        if plugin is None and tenant is None:
            raise CacheKeyError(
                "name a plugin, a tenant or both: clear(plugin='catalog') clears a plugin for "
                "every tenant, clear(tenant='acme') a tenant across plugins"
            )
        return self.keyspace.selector(
            ANY if plugin is None else plugin, ANY if tenant is None else tenant
        )

    def clear(self, *, plugin: str | None = None, tenant: str | None = None) -> int | None:
        """The host's clears: ``plugin`` alone removes that plugin's data for every tenant
        and the platform scope (uninstall); ``tenant`` alone removes that tenant's data in
        every plugin (offboarding); both remove one (plugin, tenant) scope. Returns the
        number of entries removed, or ``None`` if the store cannot tell.

        :raises CacheKeyError: neither is given.
        """
        return self.store.clear(self._selector(plugin, tenant))

    async def aclear(self, *, plugin: str | None = None, tenant: str | None = None) -> int | None:
        """Async :meth:`clear`."""
        return await self.store.aclear(self._selector(plugin, tenant))

    def close(self) -> None:
        """Close the store's connections (sync clients)."""
        self.store.close()

    async def aclose(self) -> None:
        """Close the store's connections (async clients)."""
        await self.store.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
