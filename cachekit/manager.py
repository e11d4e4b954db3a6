"""The host's side: :class:`CacheManager` turns config into one shared store per binding
and hands each plugin a :class:`~cachekit.cache.Cache` bound to its scope.

``backend.cache`` is the default binding (named :data:`DEFAULT_BINDING`);
``backend.cache.bindings.<name>`` adds named ones, each a store section of its own (its
store, connection, ``defaultTtl``, ``failOpen``, timeouts, breaker). Each binding has its
own :class:`CacheBinding`: store, key space and metrics. A plugin reaches the default
binding and the ones granted to it (``backend.cache.plugins.<id>.bindings``)::

    manager.for_plugin("catalog", "acme")                        # the default binding
    manager.for_plugin("catalog", "acme", binding="sessions")    # a granted one
    manager.binding("sessions").store                            # the host's raw view
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Self, cast

from cachekit.backstage import BackstageCache, KeyvJsonCodec, layout_for
from cachekit.cache import Cache
from cachekit.codec import Codec
from cachekit.config import CacheConfig, cache_section, load_app_config, parse_cache_section
from cachekit.config.masking import redact
from cachekit.config.schema import DEFAULT_BINDING, SECTION_PATH, config_origin
from cachekit.config.url import parse_cache_url
from cachekit.errors import CacheKeyError, ConfigError
from cachekit.keys import ANY, KeySelector, KeySpace
from cachekit.metrics import Metrics, StatsRow
from cachekit.near import NearCache, near_settings
from cachekit.policy import check_plugins
from cachekit.policy import resolve as resolve_policy
from cachekit.stores import Store, create_store
from cachekit.stores.near import NearReporter, NearStore, tracking_for

__all__ = ["DEFAULT_BINDING", "CacheBinding", "CacheManager"]

log = logging.getLogger("cachekit")

_PER_PROCESS = (
    "per process: each worker process has its own; set backend.cache.store for a shared cache"
)


class CacheBinding:
    """One binding of a :class:`CacheManager`: a store section and the store built from
    it, shared by every plugin the binding is granted to (the host's view; plugins get
    :class:`~cachekit.cache.Cache` objects).

    :ivar name: the binding's name (:data:`DEFAULT_BINDING` for ``backend.cache``).
    :ivar config: its store section (:meth:`CacheConfig.binding
        <cachekit.config.CacheConfig.binding>`).
    :ivar store: its store (built, connected on first use).
    :ivar keyspace: its key layout (the store's global prefix; Backstage's with
        ``keyLayout: backstage``).
    :ivar cache_class: the :class:`~cachekit.cache.Cache` class its caches are made of.
    :ivar codec: its own value codec (``valueFormat: keyv-json``), or ``None``: the
        manager's.
    :ivar metrics: the counters of its caches (rows carry ``binding``).
    :ivar near: its near cache (``nearCache``; :mod:`cachekit.near`), or ``None``; its
        ``store`` is then a :class:`~cachekit.stores.near.NearStore` in front of the one
        configured.
    :ivar store_name: the store's name (``redis``, ``memory``, ...).
    :ivar target: where the store connects, passwords masked.
    """

    __slots__ = (
        "cache_class",
        "codec",
        "config",
        "keyspace",
        "metrics",
        "name",
        "near",
        "store",
        "store_name",
        "target",
    )

    def __init__(
        self,
        name: str,
        config: CacheConfig,
        metrics_config: CacheConfig,
        store: Store | None = None,
    ) -> None:
        self.name = name
        self.config = config
        path = SECTION_PATH if name == DEFAULT_BINDING else f"{SECTION_PATH}.bindings.{name}"
        self.store: Store = store if store is not None else create_store(config, f"{path}.store")
        self.keyspace: KeySpace = KeySpace(self.store.key_prefix)
        self.cache_class: type[Cache] = Cache
        # Backstage's layout and value format (cachekit.backstage), chosen here once
        if config.key_layout == "backstage":
            self.keyspace = layout_for(config, self.store.key_prefix)
            self.cache_class = BackstageCache
        self.codec: Codec | None = KeyvJsonCodec() if config.value_format == "keyv-json" else None
        self.metrics = Metrics(
            per_tenant=metrics_config.metrics.per_tenant,
            max_series=metrics_config.metrics.max_series,
            binding=name,
        )
        self.near: NearCache | None = None
        settings = near_settings(config, path)
        if settings is not None:  # hot entries in process memory (cachekit.near)
            origin = self.store
            if settings.tracked and not origin.key_prefix:
                log.warning(
                    "cachekit: binding %r has a near cache but no key prefix: every write on "
                    "the server, cachekit's or not, is announced to every process; give the "
                    "store a prefix (redis.client.namespace, valkey.keyPrefix)",
                    name,
                )
            reporter = NearReporter.for_binding(origin, self.metrics, self.keyspace, name)
            self.near = NearCache(settings, start_tracking=tracking_for(origin, reporter))
            self.store = cast("Store", NearStore(origin, self.near))
        self.store_name, self.target = _describe(self.store, config, given=store is not None)

    def __repr__(self) -> str:
        return f"CacheBinding({self.name!r}, store={self.store_name!r}, target={self.target!r})"

    def describe(self) -> str:
        """The store and where it connects, in words (no passwords):
        ``redis store at redis://:***@cache:6379/0``."""
        if self.store_name == "memory":
            return f"memory store ({_PER_PROCESS})"
        near = "" if self.near is None else f", {self.near.settings.describe()}"
        return f"{self.store_name} store at {self.target}{near}"


class CacheManager:
    """Owns the stores chosen in config and hands out scoped caches.

    Every :class:`~cachekit.cache.Cache` of one binding shares its one store (one
    connection pool per process and binding, whatever the number of plugins). Building a
    manager validates the whole config and every binding's store options and connects to
    nothing; each store connects on first use. Each manager logs one INFO line (logger
    ``cachekit``) when it is built: the store, where it connects (passwords masked) and
    where the config came from; and one more per named binding.

    Build one with :meth:`from_yaml` (files), :meth:`from_config` (a whole app config),
    :meth:`from_section` (the ``backend.cache`` section alone) or :meth:`from_url`.

    :param config: the parsed ``backend.cache`` section (default: in-memory store).
    :param store: a store instance to use instead of the one ``config`` names (for the
        default binding; named bindings are built from their sections).
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
        default = CacheBinding(DEFAULT_BINDING, self.config, self.config, store)
        bindings = {DEFAULT_BINDING: default}
        for name in self.config.bindings:
            bindings[name] = CacheBinding(name, self.config.binding(name), self.config)
        self.bindings: Mapping[str, CacheBinding] = MappingProxyType(bindings)
        """Every binding by name, the default one first."""
        self.keyspace = default.keyspace
        self.metrics = default.metrics
        self.codec = codec if codec is not None else Codec()
        if default.codec is not None:
            if codec is not None:
                raise ConfigError(
                    "valueFormat: keyv-json encodes values itself: drop codec=, or use "
                    "valueFormat: cachekit",
                    path=f"{SECTION_PATH}.valueFormat",
                )
            self.codec = default.codec
        if source is None:
            if config is not None:
                source = "a CacheConfig"
            else:
                source = "a store instance" if store is not None else "the defaults (no config)"
        self.source = source
        """Where the config came from: file paths, ``a mapping``, the URL (masked), ..."""
        self.store_name, self.target = default.store_name, default.target
        log.info("cachekit: %s; config from %s", self.describe(), source)
        for binding in list(bindings.values())[1:]:
            log.info("cachekit: binding %r: %s", binding.name, binding.describe())
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

    @property
    def store(self) -> Store:
        """The default binding's store (``manager.binding(name).store``: another's)."""
        return self.bindings[DEFAULT_BINDING].store

    @store.setter
    def store(self, store: Store) -> None:
        self.bindings[DEFAULT_BINDING].store = store

    def describe(self) -> str:
        """The default binding's store and where it connects, in words (no passwords):
        ``redis store at redis://:***@cache:6379/0``."""
        return self.bindings[DEFAULT_BINDING].describe()

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

    def binding(self, name: str | None = None) -> CacheBinding:
        """The binding ``name`` (``None`` or ``"default"``: ``backend.cache`` itself).

        :raises ConfigError: no binding of that name is configured (naming the ones that
            are).
        """
        found = self.bindings.get(DEFAULT_BINDING if name is None else name)
        if found is None:
            self.config.binding(name)  # raises, naming the configured bindings
            raise AssertionError(name)  # pragma: no cover - the config has every binding
        return found

    def granted(self, plugin_id: str, tenant: str | None = None) -> tuple[str, ...]:
        """The bindings ``plugin_id`` may use for ``tenant``: the default one first, then
        those ``backend.cache`` grants it (``plugins.<id>.bindings``, ``pluginDefaults``,
        narrowed by ``tenants.<id>.bindings``)."""
        return resolve_policy(self.config, plugin_id, tenant).granted

    def for_plugin(
        self,
        plugin_id: str,
        tenant: str | None = None,
        *,
        binding: str | None = None,
        codec: Codec | None = None,
    ) -> Cache:
        """The cache of ``plugin_id`` for ``tenant`` (``None``: the platform scope) on
        ``binding`` (``None``: the default binding), under the scope's policy
        (:func:`cachekit.policy.resolve`, worked out here, once per cache).

        ``codec`` replaces the manager's for this cache: the binding sockets pass one that
        takes and returns the bytes a plugin process encoded
        (:class:`cachekit.sockets.server.BytesCodec`).

        :raises CacheKeyError: an id is empty or not a ``str``.
        :raises CachePolicyError: the plugin is not granted ``binding`` (naming the plugin,
            the binding and the bindings it is granted).
        :raises ConfigError: no binding ``binding`` is configured, or a tenant under
            ``keyLayout: backstage``.
        """
        name = DEFAULT_BINDING if binding is None else binding
        policy = resolve_policy(self.config, plugin_id, tenant)
        if name != DEFAULT_BINDING:
            policy.check_binding(name, configured=name in self.bindings)
            policy = resolve_policy(self.config, plugin_id, tenant, name)
        chosen = self.bindings[name]
        return chosen.cache_class(
            chosen.store,
            plugin=plugin_id,
            tenant=tenant,
            default_ttl=policy.default_ttl,
            codec=codec if codec is not None else chosen.codec or self.codec,
            keyspace=chosen.keyspace,
            metrics=chosen.metrics,
            policy=policy,
            binding=name,
        )

    def full_key(self, cache: Cache, key: str) -> str:
        """The store key ``cache`` (one of this manager's) uses for ``key``, in the store
        of its binding: what ``redis-cli`` shows. A host-side view: a plugin's
        :class:`~cachekit.cache.Cache` does not show its key layout.

        :raises CacheKeyError: ``key`` is empty or not a ``str``.
        """
        keyspace = self.binding(cache.binding).keyspace
        return keyspace.full_key(cache.plugin, cache.tenant, cache.namespace_name, key)

    def stats(self) -> list[StatsRow]:
        """Hits, misses, sets, deletes, errors and store latency of every
        (binding, plugin, namespace, store) this manager's caches have used — per tenant
        too when ``backend.cache.metrics.perTenant`` is on. ``metrics.maxSeries`` bounds
        the rows of each binding."""
        return [row for b in self.bindings.values() for row in b.metrics.snapshot()]

    def _selector(
        self, binding: CacheBinding, plugin: str | None, tenant: str | None
    ) -> KeySelector:
        if plugin is None and tenant is None:
            raise CacheKeyError(
                "name a plugin, a tenant or both: clear(plugin='catalog') clears a plugin for "
                "every tenant, clear(tenant='acme') a tenant across plugins"
            )
        return binding.keyspace.selector(
            ANY if plugin is None else plugin, ANY if tenant is None else tenant
        )

    def _cleared(self, binding: str | None) -> list[CacheBinding]:
        return list(self.bindings.values()) if binding is None else [self.binding(binding)]

    def clear(
        self, *, plugin: str | None = None, tenant: str | None = None, binding: str | None = None
    ) -> int | None:
        """The host's clears: ``plugin`` alone removes that plugin's data for every tenant
        and the platform scope (uninstall); ``tenant`` alone removes that tenant's data in
        every plugin (offboarding); both remove one (plugin, tenant) scope. Every binding's
        store is cleared unless ``binding`` names one. Returns the number of entries
        removed, or ``None`` if a store cannot tell.

        :raises CacheKeyError: neither ``plugin`` nor ``tenant`` is given.
        :raises ConfigError: ``binding`` is not configured.
        """
        stores = self._cleared(binding)
        counts = [b.store.clear(self._selector(b, plugin, tenant)) for b in stores]
        return _total(counts)

    async def aclear(
        self, *, plugin: str | None = None, tenant: str | None = None, binding: str | None = None
    ) -> int | None:
        """Async :meth:`clear`."""
        stores = self._cleared(binding)
        counts = [await b.store.aclear(self._selector(b, plugin, tenant)) for b in stores]
        return _total(counts)

    def close(self) -> None:
        """Close every binding's store connections (sync clients)."""
        for binding in self.bindings.values():
            binding.store.close()

    async def aclose(self) -> None:
        """Close every binding's store connections (async clients)."""
        for binding in self.bindings.values():
            await binding.store.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _total(counts: list[int | None]) -> int | None:
    """Entries removed across stores, or ``None`` if one of them cannot tell."""
    return None if None in counts else sum(c for c in counts if c is not None)


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
