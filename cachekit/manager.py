"""The host's side: :class:`CacheManager` turns config into one shared store and hands
each plugin a :class:`~cachekit.cache.Cache` bound to its scope."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any, Self

from cachekit.backstage import BackstageCache, KeyvJsonCodec, layout_for
from cachekit.cache import Cache
from cachekit.codec import Codec
from cachekit.config import CacheConfig, cache_section, load_app_config, parse_cache_section
from cachekit.config.masking import redact
from cachekit.config.schema import SECTION_PATH, config_origin
from cachekit.config.url import parse_cache_url
from cachekit.errors import CacheKeyError, ConfigError
from cachekit.keys import ANY, KeySelector, KeySpace
from cachekit.metrics import Metrics, StatsRow
from cachekit.policy import check_plugins
from cachekit.policy import resolve as resolve_policy
from cachekit.stores import Store, create_store

__all__ = ["CacheManager"]

log = logging.getLogger("cachekit")

_PER_PROCESS = (
    "per process: each worker process has its own; set backend.cache.store for a shared cache"
)


class CacheManager:
    """Owns the store chosen in config and hands out scoped caches.

    Every :class:`~cachekit.cache.Cache` it makes shares its one store (one connection
    pool per process, whatever the number of plugins). Building a manager validates the
    whole config and connects to nothing; the store connects on first use. Each manager
    logs one INFO line (logger ``cachekit``) when it is built: the store, where it
    connects (passwords masked) and where the config came from.

    Build one with :meth:`from_yaml` (files), :meth:`from_config` (a whole app config),
    :meth:`from_section` (the ``backend.cache`` section alone) or :meth:`from_url`.

    :param config: the parsed ``backend.cache`` section (default: in-memory store).
    :param store: a store instance to use instead of the one ``config`` names.
    :param codec: the value codec (register extra types on it).
    :param source: where the config came from, for the start-up log line and ``repr``.
    :param plugins: the host's plugin ids: limits in ``backend.cache.plugins`` for any
        other id are then a ``ConfigError`` (as with ``backend.cache.knownPlugins``).
    :raises ConfigError: the config names an unknown store or a missing driver, or sets
        limits for a plugin ``plugins`` does not list.
    :raises TypeError: ``config`` is not a :class:`~cachekit.config.CacheConfig` (a URL,
        a file name or a mapping: the message names the classmethod to use).
    """

    def __init__(
        self,
        config: CacheConfig | None = None,
        *,
        store: Store | None = None,
        codec: Codec | None = None,
        source: str | None = None,
        plugins: Iterable[str] | None = None,
    ) -> None:
        if config is not None and not isinstance(config, CacheConfig):
            raise _not_a_config(config)
        self.config = config if config is not None else CacheConfig()
        check_plugins(self.config, plugins)
        self.store: Store = store if store is not None else create_store(self.config)
        self.codec = codec if codec is not None else Codec()
        self.keyspace = KeySpace(self.store.key_prefix)
        self._cache_class = Cache
        # Backstage's layout and value format (cachekit.backstage), chosen here once
        if self.config.value_format == "keyv-json":
            if codec is not None:
                raise ConfigError(
                    "valueFormat: keyv-json encodes values itself: drop codec=, or use "
                    "valueFormat: cachekit",
                    path=f"{SECTION_PATH}.valueFormat",
                )
            self.codec = KeyvJsonCodec()
        if self.config.key_layout == "backstage":
            self.keyspace = layout_for(self.config, self.store.key_prefix)
            self._cache_class = BackstageCache
        self.metrics = Metrics(
            per_tenant=self.config.metrics.per_tenant, max_series=self.config.metrics.max_series
        )
        if source is None:
            if config is not None:
                source = "a CacheConfig"
            else:
                source = "a store instance" if store is not None else "the defaults (no config)"
        self.source = source
        """Where the config came from: file paths, ``a mapping``, the URL (masked), ..."""
        self.store_name, self.target = _describe(self.store, self.config, given=store is not None)
        log.info("cachekit: %s; config from %s", self.describe(), source)
        for note in self.config.ignored_options:
            log.warning("cachekit: %s", note)

    @classmethod
    def from_config(cls, app_config: Mapping[str, Any], **kwargs: Any) -> Self:
        """Build from a whole app-config mapping: its ``backend.cache`` section is used, and
        a mapping without one means the in-memory store (as in Backstage).

        :raises ConfigError: an invalid value, or a mapping that is not an app config
            holding ``backend.cache`` (the section itself, ``backend.caches``, a top-level
            ``cache``): the message says how to fix it.
        """
        return cls._from_app_config(app_config, "a mapping", **kwargs)

    @classmethod
    def from_section(
        cls, section: Mapping[str, Any] | None, *, path: str = SECTION_PATH, **kwargs: Any
    ) -> Self:
        """Build from the ``backend.cache`` section alone (``{"store": "redis", ...}``).

        :param path: the section's config path, for error messages.
        :raises ConfigError: naming the path and the fix for any invalid value.
        """
        kwargs.setdefault("source", f"a {path} mapping")
        return cls(parse_cache_section(section, path), **kwargs)

    @classmethod
    def from_yaml(
        cls, path: str | os.PathLike[str], *more_paths: str | os.PathLike[str], **kwargs: Any
    ) -> Self:
        """Build from YAML files, deep-merged in order (later files win), with ``${VAR}``
        environment references substituted.

        :raises ConfigError: a file is missing or not valid YAML (naming the file, line and
            column), or the merged config is invalid (naming the files).
        """
        files = ", ".join(os.fspath(p) for p in (path, *more_paths))
        app_config = load_app_config(path, *more_paths)
        with config_origin(files):
            return cls._from_app_config(app_config, files, **kwargs)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Self:
        """Build from one URL: the scheme picks the store, query parameters set
        ``backend.cache`` keys::

            CacheManager.from_url("redis://:pw@cache:6379/0?defaultTtl=5m&namespace=my-app")
            CacheManager.from_url("valkeys://cache:6380")        # valkey://, unix:///path.sock
            CacheManager.from_url("memcache://user:pass@h1:11211,h2:11211")
            CacheManager.from_url("memory://?maxEntries=10000")

        Query keys: ``defaultTtl``, ``failOpen``, ``connectTimeout``, ``operationTimeout``,
        ``failureThreshold``, ``cooldown``, ``perTenant``, ``maxSeries``; Redis
        ``namespace``, ``keyPrefixSeparator``, ``clearBatchSize``, ``useUnlink``,
        ``maxConnections``, ``clientName`` (plus the driver's ``db`` and ``ssl_*``); Valkey
        the same with ``keyPrefix`` for ``namespace``; memcache ``auth``, ``maxValueSize``,
        ``generationRefresh``, ``deadRetry``, ``maxConnections``; memory ``maxEntries``,
        ``maxBytes``. Values mean what they mean in YAML (a bare duration is milliseconds).
        The URL builds the same :class:`~cachekit.config.CacheConfig` the YAML path does
        (:mod:`cachekit.config.url`).

        :raises ConfigError: an unknown scheme or query key (naming the known ones), or an
            invalid value.
        """
        config = parse_cache_url(url)
        kwargs.setdefault("source", f"the URL {redact(url)}")
        return cls(config, **kwargs)

    @classmethod
    def _from_app_config(cls, app_config: Mapping[str, Any], origin: str, **kwargs: Any) -> Self:
        section = cache_section(app_config)
        if section is None:
            origin += ", which has no backend.cache section: the defaults"
        kwargs.setdefault("source", origin)
        return cls(parse_cache_section(section), **kwargs)

    def describe(self) -> str:
        """The store and where it connects, in words (no passwords):
        ``redis store at redis://:***@cache:6379/0``."""
        if self.store_name == "memory":
            return f"memory store ({_PER_PROCESS})"
        return f"{self.store_name} store at {self.target}"

    def __repr__(self) -> str:
        return (
            f"CacheManager(store={self.store_name!r}, target={self.target!r}, "
            f"source={self.source!r})"
        )

    @property
    def tenants(self) -> bool:
        """Whether scopes may have a tenant: ``False`` under ``keyLayout: backstage``,
        whose keys are per plugin only."""
        return self.keyspace.tenants

    def for_plugin(self, plugin_id: str, tenant: str | None = None) -> Cache:
        """The cache of ``plugin_id`` for ``tenant`` (``None``: the platform scope), under
        the scope's policy (:func:`cachekit.policy.resolve`, worked out here, once per cache).

        :raises CacheKeyError: an id is empty or not a ``str``.
        :raises ConfigError: a tenant under ``keyLayout: backstage``.
        """
        policy = resolve_policy(self.config, plugin_id, tenant)
        return self._cache_class(
            self.store,
            plugin=plugin_id,
            tenant=tenant,
            default_ttl=policy.default_ttl,
            codec=self.codec,
            keyspace=self.keyspace,
            metrics=self.metrics,
            policy=policy,
        )

    def full_key(self, cache: Cache, key: str) -> str:
        """The store key ``cache`` (one of this manager's) uses for ``key``: what
        ``redis-cli`` shows. A host-side view: a plugin's :class:`~cachekit.cache.Cache`
        does not show its key layout.

        :raises CacheKeyError: ``key`` is empty or not a ``str``.
        """
        return self.keyspace.full_key(cache.plugin, cache.tenant, cache.namespace_name, key)

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


def _describe(store: Store, config: CacheConfig, *, given: bool) -> tuple[str, str]:
    """The store's name and where it connects (no passwords), for logs and ``repr``."""
    if not given:
        return config.store, config.target or repr(store)
    name = str(store.name)
    target = getattr(store, "target", None)  # the Redis store's, already masked
    if isinstance(target, str) and target:
        return name, target
    return name, "this process" if name == "memory" else repr(store)


def _not_a_config(config: object) -> TypeError:
    """``CacheManager("redis://...")`` and friends: name the classmethod that takes it."""
    if isinstance(config, str) and "://" in config:
        return TypeError(
            f"CacheManager() takes a CacheConfig, not the URL {redact(config)!r}: "
            f"use CacheManager.from_url({redact(config)!r})"
        )
    if isinstance(config, str | os.PathLike):
        return TypeError(
            f"CacheManager() takes a CacheConfig, not {os.fspath(config)!r}: for a config "
            f"file use CacheManager.from_yaml({os.fspath(config)!r}), for a URL "
            "CacheManager.from_url('redis://...')"
        )
    if isinstance(config, Mapping):
        return TypeError(
            "CacheManager() takes a CacheConfig, not a mapping: use "
            "CacheManager.from_config(app_config) for a whole app config, or "
            "CacheManager.from_section(section) for the backend.cache section alone"
        )
    return TypeError(
        f"CacheManager() takes a CacheConfig, got {type(config).__name__}; see "
        "CacheManager.from_yaml, from_config, from_section and from_url"
    )
