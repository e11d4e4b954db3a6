"""The ``backend.cache`` section of ``app-config.yaml``, parsed into frozen dataclasses.

Parsing validates everything and connects to nothing. Every problem raises
:class:`~cachekit.errors.ConfigError` naming the config path and what to do::

    backend:
      cache:
        store: redis                       # memory (default) | redis | valkey | memcache
                                           #   | infinispan
        connection: redis://localhost:6379 #   | an entry point name | pkg.module:Class
        defaultTtl: 5m                     # a bare number is milliseconds, as in Backstage
        redis:
          client: {namespace: my-app, keyPrefixSeparator: ":"}

Each dataclass field carries its YAML name in its metadata; :func:`_parse_section` is the
one place that walks a mapping, rejects unknown keys (with a did-you-mean) and converts
values.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, TypeVar

from cachekit.config.masking import mask_mapping
from cachekit.config.redis import CLIENT_OPTION_KEYS
from cachekit.durations import MAX_TTL, parse_config_duration
from cachekit.errors import CacheKeyError, ConfigError

if TYPE_CHECKING:
    from cachekit.config.policy import PolicyConfig

__all__ = [
    "DEFAULT_BINDING",
    "CacheConfig",
    "CircuitBreakerConfig",
    "InfinispanConfig",
    "MemcacheConfig",
    "MemoryConfig",
    "MetricsConfig",
    "NearCacheConfig",
    "RedisClientConfig",
    "RedisClusterConfig",
    "RedisConfig",
    "RedisSentinelConfig",
    "TimeoutsConfig",
    "ValkeyClientConfig",
    "ValkeyConfig",
    "binding_env_name",
    "cache_section",
    "check_binding_name",
    "load_app_config",
    "parse_app_config",
    "parse_cache_section",
]

SECTION_PATH: Final = "backend.cache"

DEFAULT_BINDING: Final = "default"
"""The name of the binding ``backend.cache`` itself is (``binding=None`` means it too)."""

T = TypeVar("T")
Converter = Callable[[Any, str], Any]


def _opt(
    key: str | tuple[str, ...],
    convert: Converter,
    default: Any = MISSING,
    factory: Any = MISSING,
    *,
    secret: bool = False,
) -> Any:
    """A dataclass field read from config key ``key`` (or keys, read together) through
    ``convert(value, path)`` (a ``secret`` one is left out of ``repr``)."""
    meta = {"key": key, "convert": convert}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta, repr=not secret)
    return field(default=default, metadata=meta, repr=not secret)


# --- converters: (value, path) -> typed value, or ConfigError ---------------------------


def _type_error(expected: str, value: object, path: str) -> ConfigError:
    return ConfigError(f"expected {expected}, got {type(value).__name__} {value!r}", path=path)


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _type_error("a string", value, path)
    return value


def _optional(convert: Converter) -> Converter:
    def convert_optional(value: Any, path: str) -> Any:
        return None if value is None else convert(value, path)

    return convert_optional


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _type_error("true or false", value, path)
    return value


def _positive_int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error("a whole number", value, path)
    if value < 1:
        raise ConfigError(f"must be at least 1, got {value}", path=path)
    return value


def _port(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise _type_error("a port number from 1 to 65535", value, path)
    return value


_SIZE: Final = re.compile(r"\s*(\d+)\s*([KMG]i?B|B)?\s*", re.IGNORECASE)
_SIZE_UNITS: Final = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


def _byte_size(value: Any, path: str) -> int:
    """A positive number of bytes: an int, or a size string (``64MiB``, ``500kB``)."""
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match is None or int(match[1]) <= 0:
            raise ConfigError(
                f"expected a size such as 67108864, 64MiB or 500kB, got {value!r}", path=path
            )
        return int(match[1]) * _SIZE_UNITS[(match[2] or "").lower()]
    return _positive_int(value, path)


def _non_negative_int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _type_error("a whole number >= 0", value, path)
    return value


def _choice(*choices: str) -> Converter:
    """One of ``choices`` (YAML numbers such as ``2.9`` are read as their text)."""

    def convert_choice(value: Any, path: str) -> str:
        text = (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )
        if text not in choices:
            raise ConfigError(f"expected one of {', '.join(choices)}, got {value!r}", path=path)
        return str(text)

    return convert_choice


def _ttl_duration(value: Any, path: str) -> float:
    seconds = parse_config_duration(value, path)
    if seconds > MAX_TTL:
        raise ConfigError(
            f"a TTL must be at most 10 years, got {value!r}; 0 means no expiry", path=path
        )
    return seconds


def _positive_duration(value: Any, path: str) -> float:
    seconds = parse_config_duration(value, path)
    if seconds <= 0:
        raise ConfigError(f"must be a positive duration, got {value!r}", path=path)
    return seconds


def _str_list(value: Any, path: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if not isinstance(value, list | tuple):
        raise _type_error("a list of strings", value, path)
    return tuple(_str(item, f"{path}[{i}]") for i, item in enumerate(value))


def _url_list(value: Any, path: str) -> tuple[str, ...]:
    """``["redis://h:p", ...]`` or Backstage's ``[{url: redis://h:p}, ...]``."""
    if not isinstance(value, list | tuple) or not value:
        raise _type_error("a non-empty list of {url: ...} entries", value, path)
    urls = []
    for i, item in enumerate(value):
        if isinstance(item, Mapping):
            _reject_unknown(item, {"url"}, f"{path}[{i}]")
            item = item.get("url")
        urls.append(_str(item, f"{path}[{i}].url"))
    return tuple(urls)


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _type_error("a mapping", value, path)
    return MappingProxyType(dict(value))


def _connection(value: Any, path: str) -> str | tuple[str, ...] | Mapping[str, Any]:
    """A URL / ``host:port`` string, a list of them, or a mapping (``{url: ..., ...}``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return _str_list(value, path)
    if isinstance(value, Mapping):
        return _mapping(value, path)
    raise _type_error("a URL string, a list of servers or a mapping", value, path)


def _nested(cls: type[T]) -> Converter:
    def convert_nested(value: Any, path: str) -> T:
        return _parse_section(cls, value, path)

    return convert_nested


# --- the schema -----------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryConfig:
    """``backend.cache.memory``: bounds of the in-memory store (``null``: unbounded)."""

    max_entries: int | None = _opt("maxEntries", _optional(_positive_int), 100_000)
    max_bytes: int | None = _opt("maxBytes", _optional(_byte_size), 256 * 1024 * 1024)


@dataclass(frozen=True)
class RedisClientConfig:
    """``backend.cache.redis.client``."""

    namespace: str | None = _opt("namespace", _optional(_str), None)
    key_prefix_separator: str = _opt("keyPrefixSeparator", _str, ":")
    clear_batch_size: int = _opt("clearBatchSize", _positive_int, 1000)
    use_unlink: bool = _opt("useUnlink", _bool, True)
    options: Mapping[str, Any] = _opt(
        CLIENT_OPTION_KEYS, _mapping, factory=lambda: MappingProxyType({})
    )
    """Backstage's other client options (``connectionTimeout``, ``socket``, ...), mapped to
    the driver or logged as ignored by :mod:`cachekit.config.redis`."""

    @property
    def key_prefix(self) -> str:
        """The global key prefix: ``namespace + keyPrefixSeparator``, or empty."""
        return f"{self.namespace}{self.key_prefix_separator}" if self.namespace else ""


@dataclass(frozen=True)
class ValkeyClientConfig:
    """``backend.cache.valkey.client``."""

    key_prefix: str | None = _opt("keyPrefix", _optional(_str), None)
    clear_batch_size: int = _opt("clearBatchSize", _positive_int, 1000)
    use_unlink: bool = _opt("useUnlink", _bool, True)


@dataclass(frozen=True)
class RedisClusterConfig:
    """``backend.cache.<redis|valkey>.cluster``: Redis/Valkey Cluster seed nodes."""

    root_nodes: tuple[str, ...] = _opt("rootNodes", _url_list, ())
    defaults: Mapping[str, Any] = _opt("defaults", _mapping, factory=lambda: MappingProxyType({}))
    """Client options for every node (node-redis ``defaults``), mapped like
    ``redis.client``'s."""
    use_replicas: bool = _opt("useReplicas", _bool, False)
    max_command_redirections: int | None = _opt(
        "maxCommandRedirections", _optional(_positive_int), None
    )
    minimize_connections: bool | None = _opt("minimizeConnections", _optional(_bool), None)


@dataclass(frozen=True)
class RedisSentinelConfig:
    """``backend.cache.<redis|valkey>.sentinel``: Sentinel addresses and the master name."""

    sentinels: tuple[str, ...] = _opt("sentinels", _str_list, ())
    master_name: str = _opt("masterName", _str, "mymaster")
    password: str | None = _opt("password", _optional(_str), None, secret=True)


@dataclass(frozen=True)
class RedisConfig:
    """``backend.cache.redis``."""

    client: RedisClientConfig = _opt(
        "client", _nested(RedisClientConfig), factory=RedisClientConfig
    )
    cluster: RedisClusterConfig | None = _opt(
        "cluster", _optional(_nested(RedisClusterConfig)), None
    )
    sentinel: RedisSentinelConfig | None = _opt(
        "sentinel", _optional(_nested(RedisSentinelConfig)), None
    )


@dataclass(frozen=True)
class ValkeyConfig:
    """``backend.cache.valkey`` (``keyPrefix`` may sit here or under ``client``)."""

    key_prefix: str | None = _opt("keyPrefix", _optional(_str), None)
    client: ValkeyClientConfig = _opt(
        "client", _nested(ValkeyClientConfig), factory=ValkeyClientConfig
    )
    cluster: RedisClusterConfig | None = _opt(
        "cluster", _optional(_nested(RedisClusterConfig)), None
    )
    sentinel: RedisSentinelConfig | None = _opt(
        "sentinel", _optional(_nested(RedisSentinelConfig)), None
    )

    @property
    def effective_key_prefix(self) -> str:
        """The global key prefix: ``client.keyPrefix``, else the flat ``keyPrefix``."""
        return self.client.key_prefix or self.key_prefix or ""


@dataclass(frozen=True)
class MemcacheConfig:
    """``backend.cache.memcache``."""

    auth: str | None = _opt("auth", _optional(_str), None)
    max_value_size: int = _opt("maxValueSize", _positive_int, 1024 * 1024)
    generation_refresh: float = _opt("generationRefresh", _positive_duration, 1.0)
    dead_retry: float = _opt("deadRetry", _positive_duration, 5.0)
    max_connections: int = _opt("maxConnections", _positive_int, 50)


@dataclass(frozen=True)
class InfinispanServer:
    """One Hot Rod server of ``backend.cache.infinispan.servers``."""

    host: str = _opt("host", _str, "127.0.0.1")
    port: int = _opt("port", _port, 11222)


def _servers(value: Any, path: str) -> tuple[InfinispanServer, ...]:
    """Backstage's ``servers``: a list of ``{host, port}`` or one such mapping."""
    items = [value] if isinstance(value, Mapping) else value
    if not isinstance(items, list | tuple) or not items:
        raise _type_error("a list of {host, port} servers", value, path)
    servers = []
    for i, item in enumerate(items):
        item_path = path if isinstance(value, Mapping) else f"{path}[{i}]"
        if isinstance(item, Mapping) and "host" not in item and not isinstance(value, Mapping):
            raise ConfigError(
                "missing 'host' (for example {host: ispn, port: 11222})", path=item_path
            )
        servers.append(_parse_section(InfinispanServer, item, item_path))
    return tuple(servers)


@dataclass(frozen=True)
class InfinispanAuthentication:
    """``backend.cache.infinispan.authentication`` (secrets never shown in ``repr``)."""

    enabled: bool = _opt("enabled", _bool, False)
    sasl_mechanism: str | None = _opt(
        "saslMechanism",
        _optional(
            _choice(
                "PLAIN",
                "DIGEST-MD5",
                "SCRAM-SHA-1",
                "SCRAM-SHA-256",
                "SCRAM-SHA-384",
                "SCRAM-SHA-512",
                "EXTERNAL",
                "OAUTHBEARER",
            )
        ),
        None,
    )
    user_name: str | None = _opt("userName", _optional(_str), None)
    password: str | None = _opt("password", _optional(_str), None, secret=True)
    token: str | None = _opt("token", _optional(_str), None, secret=True)
    authzid: str | None = _opt("authzid", _optional(_str), None)


@dataclass(frozen=True)
class InfinispanClientAuth:
    """``backend.cache.infinispan.ssl.clientAuth``."""

    key: str | None = _opt("key", _optional(_str), None)
    passphrase: str | None = _opt("passphrase", _optional(_str), None, secret=True)
    cert: str | None = _opt("cert", _optional(_str), None)


@dataclass(frozen=True)
class InfinispanCryptoStore:
    """``backend.cache.infinispan.ssl.cryptoStore``."""

    path: str | None = _opt("path", _optional(_str), None)
    passphrase: str | None = _opt("passphrase", _optional(_str), None, secret=True)


@dataclass(frozen=True)
class InfinispanSsl:
    """``backend.cache.infinispan.ssl``."""

    enabled: bool = _opt("enabled", _bool, False)
    secure_protocol: str | None = _opt("secureProtocol", _optional(_str), None)
    trust_certs: tuple[str, ...] = _opt("trustCerts", _str_list, ())
    client_auth: InfinispanClientAuth | None = _opt(
        "clientAuth", _optional(_nested(InfinispanClientAuth)), None
    )
    sni_host_name: str | None = _opt("sniHostName", _optional(_str), None)
    crypto_store: InfinispanCryptoStore | None = _opt(
        "cryptoStore", _optional(_nested(InfinispanCryptoStore)), None
    )


_MEDIA_TYPES: Final = ("text/plain", "application/json")


@dataclass(frozen=True)
class InfinispanDataFormat:
    """``backend.cache.infinispan.dataFormat``."""

    key_type: str = _opt("keyType", _choice(*_MEDIA_TYPES), "text/plain")
    value_type: str = _opt("valueType", _choice(*_MEDIA_TYPES), "text/plain")


@dataclass(frozen=True)
class InfinispanCluster:
    """One entry of ``backend.cache.infinispan.clusters`` (cross-site failover)."""

    name: str | None = _opt("name", _optional(_str), None)
    servers: tuple[InfinispanServer, ...] = _opt("servers", _servers, ())


def _clusters(value: Any, path: str) -> tuple[InfinispanCluster, ...]:
    if not isinstance(value, list | tuple):
        raise _type_error("a list of {name, servers} clusters", value, path)
    clusters = []
    for i, item in enumerate(value):
        if isinstance(item, Mapping) and "servers" not in item:
            raise ConfigError("missing 'servers'", path=f"{path}[{i}].servers")
        clusters.append(_parse_section(InfinispanCluster, item, f"{path}[{i}]"))
    return tuple(clusters)


@dataclass(frozen=True)
class InfinispanConfig:
    """``backend.cache.infinispan``: Backstage's Infinispan keys, and two of cachekit's
    (``generationRefresh``, ``maxConnections``, as for memcache). The store speaks REST, so
    the Hot Rod-only keys are read, checked and logged as ignored: see
    :mod:`cachekit.config.infinispan`. ``cacheName`` unset means ``cache``."""

    version: str = _opt("version", _choice("2.9", "2.5", "2.2"), "2.9")
    cache_name: str | None = _opt("cacheName", _optional(_str), None)
    max_retries: int = _opt("maxRetries", _non_negative_int, 3)
    topology_updates: bool = _opt("topologyUpdates", _bool, True)
    media_type: str = _opt("mediaType", _choice(*_MEDIA_TYPES), "text/plain")
    data_format: InfinispanDataFormat = _opt(
        "dataFormat", _nested(InfinispanDataFormat), factory=InfinispanDataFormat
    )
    servers: tuple[InfinispanServer, ...] = _opt("servers", _servers, ())
    authentication: InfinispanAuthentication = _opt(
        "authentication", _nested(InfinispanAuthentication), factory=InfinispanAuthentication
    )
    ssl: InfinispanSsl = _opt("ssl", _nested(InfinispanSsl), factory=InfinispanSsl)
    clusters: tuple[InfinispanCluster, ...] = _opt("clusters", _clusters, ())
    generation_refresh: float = _opt("generationRefresh", _positive_duration, 1.0)
    max_connections: int = _opt("maxConnections", _positive_int, 50)


@dataclass(frozen=True)
class NearCacheConfig:
    """``nearCache``: hot entries kept in process memory in front of the store
    (:mod:`cachekit.near`). In ``backend.cache`` and each binding's section it sets the
    binding's near cache; under ``plugins.<id>`` / ``pluginDefaults`` (the plugin's
    section wins whole) it overrides it for a plugin: ``enabled: false`` keeps its reads
    out of it, ``ttl`` sets how long its entries stay, ``maxEntries`` or ``maxBytes`` give
    it a region of its own; under ``tenants.<id>``, ``enabled: false`` keeps that tenant's
    reads out whatever the plugin says. ``true`` / ``false`` stand for
    ``{enabled: true}`` / ``{enabled: false}``.

    ``None`` is "not set here": ``enabled`` then defaults to on for Redis and Valkey (kept
    correct by the server's invalidations) and off for every other store (bounded by
    ``ttl`` alone: set ``enabled: true`` and a ``ttl`` you accept as staleness);
    ``ttl`` to :data:`~cachekit.near.DEFAULT_TTL` on Redis and Valkey."""

    enabled: bool | None = _opt("enabled", _optional(_bool), None)
    max_entries: int | None = _opt("maxEntries", _optional(_positive_int), None)
    max_bytes: int | None = _opt("maxBytes", _optional(_byte_size), None)
    ttl: float | None = _opt("ttl", _optional(_positive_duration), None)
    """The longest an entry is served from process memory, in seconds."""


def _near_cache(value: Any, path: str) -> NearCacheConfig:
    if isinstance(value, bool):
        return NearCacheConfig(enabled=value)
    return _parse_section(NearCacheConfig, value, path)


@dataclass(frozen=True)
class TimeoutsConfig:
    """``backend.cache.timeouts``: network timeouts (seconds once parsed)."""

    connect: float = _opt("connect", _positive_duration, 0.25)
    operation: float = _opt("operation", _positive_duration, 0.5)


@dataclass(frozen=True)
class CircuitBreakerConfig:
    """``backend.cache.circuitBreaker``: skip a failing store for ``cooldown`` after
    ``failureThreshold`` consecutive failures, then probe it again."""

    failure_threshold: int = _opt("failureThreshold", _positive_int, 3)
    cooldown: float = _opt("cooldown", _positive_duration, 2.0)


@dataclass(frozen=True)
class MetricsConfig:
    """``backend.cache.metrics``: in-process counters (see :mod:`cachekit.metrics`)."""

    per_tenant: bool = _opt("perTenant", _bool, False)
    # Bounds the rows ids from requests can add; past it scopes share an "other" row.
    max_series: int = _opt("maxSeries", _positive_int, 1000)


def _store_name(value: Any, path: str) -> str:
    from cachekit.stores import check_store_name  # the registry imports no store module

    name = _str(value, path)
    check_store_name(name, path)
    return name


# The policy keys, read together by one field (cachekit.config.policy imports this module).
_POLICY_KEYS: Final = ("knownPlugins", "pluginDefaults", "plugins", "tenants")


def _policy(raw: Mapping[str, Any], path: str) -> PolicyConfig:
    from cachekit.config.policy import parse_policy_config

    return parse_policy_config(raw, path)


def _no_policy() -> PolicyConfig:
    from cachekit.config.policy import PolicyConfig

    return PolicyConfig()


# --- named bindings: backend.cache.bindings.<name> ---------------------------------------

_BINDING_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# keys of backend.cache that belong to the manager, not to one binding's store
_MANAGER_KEYS: Final = {
    "bindings": "bindings do not nest: list every binding under backend.cache.bindings",
    "metrics": "metrics are the manager's: set them once, under backend.cache.metrics",
    **dict.fromkeys(
        ("knownPlugins", "pluginDefaults", "plugins", "tenants"),
        "per-plugin limits and grants are set once, under backend.cache, and apply on "
        "every binding (a binding's own defaultTtl and failOpen are its plugins' defaults)",
    ),
}


def binding_env_name(name: str) -> str:
    """``name`` as it appears in an environment variable: upper-cased, every character
    that is not a letter or a digit as ``_`` (``user-sessions`` -> ``USER_SESSIONS``)."""
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def check_binding_name(name: object) -> str:
    """``name`` if it can name a binding (1-64 characters of ``A-Za-z0-9_-``, starting with
    a letter or a digit), for helpers that take ``binding=`` in code.

    :raises CacheKeyError: it cannot.
    """
    if not isinstance(name, str) or _BINDING_NAME.fullmatch(name) is None:
        raise CacheKeyError(
            f"{name!r} is not a binding name: bindings are named in backend.cache.bindings "
            "with 1-64 characters of A-Za-z0-9_-"
        )
    return name


def _bindings(value: Any, path: str) -> Mapping[str, CacheConfig]:
    """``backend.cache.bindings``: binding name -> a store section of its own."""
    if not isinstance(value, Mapping):
        raise _type_error("a mapping of binding names to store sections", value, path)
    parsed: dict[str, CacheConfig] = {}
    by_env: dict[str, str] = {}
    for name, section in value.items():
        where = f"{path}.{name}"
        if not isinstance(name, str) or _BINDING_NAME.fullmatch(name) is None:
            raise ConfigError(
                f"{name!r} is not a valid binding name: use 1-64 characters of A-Za-z0-9_- "
                "starting with a letter or digit",
                path=where,
            )
        if name == DEFAULT_BINDING:
            raise ConfigError(
                f"{DEFAULT_BINDING!r} is the name of backend.cache itself (the default "
                "binding): give this binding another name",
                path=where,
            )
        twin = by_env.setdefault(binding_env_name(name), name)
        if twin != name:
            raise ConfigError(
                f"bindings {twin!r} and {name!r} share the environment name "
                f"{binding_env_name(name)} (CACHEKIT_CACHE_SOCKET_<NAME>): rename one",
                path=where,
            )
        if isinstance(section, Mapping):
            for key in section:
                if key in _MANAGER_KEYS:
                    raise ConfigError(
                        f"{key!r} cannot be set per binding: {_MANAGER_KEYS[key]}",
                        path=f"{where}.{key}",
                    )
        parsed[name] = _parse_section(CacheConfig, section, where)
    return MappingProxyType(parsed)


def _no_bindings() -> Mapping[str, CacheConfig]:
    return MappingProxyType({})


@dataclass(frozen=True)
class CacheConfig:
    """The whole ``backend.cache`` section. ``CacheConfig()`` is the in-memory default."""

    store: str = _opt("store", _store_name, "memory")
    connection: str | tuple[str, ...] | Mapping[str, Any] | None = _opt(
        "connection", _optional(_connection), None
    )
    default_ttl: float | None = _opt("defaultTtl", _optional(_ttl_duration), None)
    fail_open: bool = _opt("failOpen", _bool, True)
    options: Mapping[str, Any] = _opt("options", _mapping, factory=lambda: MappingProxyType({}))
    memory: MemoryConfig = _opt("memory", _nested(MemoryConfig), factory=MemoryConfig)
    redis: RedisConfig = _opt("redis", _nested(RedisConfig), factory=RedisConfig)
    valkey: ValkeyConfig = _opt("valkey", _nested(ValkeyConfig), factory=ValkeyConfig)
    memcache: MemcacheConfig = _opt("memcache", _nested(MemcacheConfig), factory=MemcacheConfig)
    infinispan: InfinispanConfig = _opt(
        "infinispan", _nested(InfinispanConfig), factory=InfinispanConfig
    )
    timeouts: TimeoutsConfig = _opt("timeouts", _nested(TimeoutsConfig), factory=TimeoutsConfig)
    circuit_breaker: CircuitBreakerConfig = _opt(
        "circuitBreaker", _nested(CircuitBreakerConfig), factory=CircuitBreakerConfig
    )
    metrics: MetricsConfig = _opt("metrics", _nested(MetricsConfig), factory=MetricsConfig)
    near_cache: NearCacheConfig | None = _opt("nearCache", _optional(_near_cache), None)
    """``nearCache``: the binding's in-process tier (:mod:`cachekit.near`); ``None``: none."""
    key_layout: str = _opt("keyLayout", _choice("cachekit", "backstage"), "cachekit")
    """``backstage``: keys as Backstage's cache writes them (:mod:`cachekit.backstage`)."""
    value_format: str = _opt("valueFormat", _choice("cachekit", "keyv-json"), "cachekit")
    """``keyv-json``: values as Backstage's keyv stores write them (:mod:`cachekit.backstage`)."""
    use_redis_sets: bool | None = _opt("useRedisSets", _optional(_bool), None)
    """Backstage's deprecated ``useRedisSets``: accepted, logged as ignored."""
    policy: PolicyConfig = _opt(_POLICY_KEYS, _policy, factory=_no_policy)
    """``plugins``, ``pluginDefaults``, ``tenants``, ``knownPlugins``: see
    :mod:`cachekit.config.policy`."""
    bindings: Mapping[str, CacheConfig] = _opt("bindings", _bindings, factory=_no_bindings)
    """``backend.cache.bindings``: the named bindings, each a store section of its own
    (parsed as it is written: :meth:`binding` gives the effective config of one)."""
    connection_spec: Any = field(default=None, init=False, repr=False, compare=False)
    """The store's connection options, parsed and checked into the store's typed spec when
    the section is parsed (``None`` for stores without one): see
    :mod:`cachekit.config.redis`, :mod:`cachekit.config.memcache` and
    :mod:`cachekit.config.infinispan`."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "connection_spec", _connection_spec(self))
        for key, value in (("keyLayout", self.key_layout), ("valueFormat", self.value_format)):
            if value != "cachekit" and self.store != "redis":
                raise ConfigError(
                    f"{key}: {value} shares a Redis store with Backstage: it needs store: redis",
                    path=f"{SECTION_PATH}.{key}",
                )
        from cachekit.config.policy import check_grants
        from cachekit.near import near_settings

        near_settings(self)  # nearCache's rules for this store, checked when parsed

        check_grants(self.policy, self.binding_names, SECTION_PATH)

    @property
    def binding_names(self) -> tuple[str, ...]:
        """Every binding's name: :data:`DEFAULT_BINDING` first, then the named ones."""
        return (DEFAULT_BINDING, *self.bindings)

    def binding(self, name: str | None = None) -> CacheConfig:
        """The store section of binding ``name`` (``None`` or ``"default"``: this section
        itself). A named binding's section has no ``policy``, ``metrics`` or ``bindings``
        of its own: the per-plugin limits, grants and metrics of this section apply to
        every binding (:func:`cachekit.policy.resolve`).

        :raises ConfigError: no binding of that name is configured (naming the ones that
            are).
        """
        if name is None or name == DEFAULT_BINDING:
            return self
        try:
            section = self.bindings[name]
        except (KeyError, TypeError):
            raise ConfigError(
                f"no cache binding {name!r}; configured: {', '.join(self.binding_names)}",
                path=f"{SECTION_PATH}.bindings",
            ) from None
        return section

    def __repr__(self) -> str:
        """The keys that differ from the defaults, passwords masked."""
        shown = []
        for f in fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            default = f.default_factory() if f.default is MISSING else f.default  # type: ignore[operator]
            if value != default:
                shown.append(f"{f.name}={mask_mapping(value)!r}")
        return f"CacheConfig({', '.join(shown)})"

    @property
    def ignored_options(self) -> tuple[str, ...]:
        """Backstage options this config accepts without effect, as ``path: ignored
        (reason)``; the manager logs each once when it is built."""
        notes = tuple(getattr(self.connection_spec, "ignored", ()))
        if self.use_redis_sets is not None:
            notes = (
                "backend.cache.useRedisSets: ignored (deprecated in Backstage; cachekit's "
                "scoped clear finds a scope's keys without a Redis set)",
                *notes,
            )
        return notes

    @property
    def target(self) -> str:
        """Where the store connects, for logs and ``repr`` (no passwords):
        ``redis://:***@host:6379/0``, ``cluster h1:7000,h2:7001``, ``sentinel h:26379 master
        mymaster``, ``h1:11211,h2:11211``, ``http://ispn:11222 cache 'cache'`` (infinispan),
        ``this process`` (memory), or ``""`` when a
        custom store's config does not say."""
        spec = self.connection_spec
        if spec is not None:
            return str(spec.target)
        if self.store == "memory":
            return "this process"
        if self.connection is None:
            return ""
        masked = mask_mapping(self.connection)
        return masked if isinstance(masked, str) else repr(masked)


def _connection_spec(config: CacheConfig) -> Any:
    """The typed connection spec of ``config.store`` (each parser lives beside its spec)."""
    if config.store in ("redis", "valkey"):
        from cachekit.config.redis import parse_redis_connection

        return parse_redis_connection(config)
    if config.store == "memcache":
        from cachekit.config.memcache import parse_memcache_connection

        return parse_memcache_connection(config)
    if config.store == "infinispan":
        from cachekit.config.infinispan import parse_infinispan_connection

        return parse_infinispan_connection(config)
    return None


# --- parsing --------------------------------------------------------------------------


def _reject_unknown(raw: Mapping[Any, Any], known: set[str], path: str) -> None:
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"unknown key {key!r}; {hint}known keys: {', '.join(sorted(known))}",
                path=f"{path}.{key}",
            )


def _parse_section(cls: type[T], raw: object, path: str) -> T:
    if raw is None:
        return cls()
    if not isinstance(raw, Mapping):
        raise _type_error("a mapping", raw, path)
    by_key: dict[str, Field[Any]] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.init:  # a field's key, or a tuple of keys one field reads together
            keys = f.metadata["key"]
            by_key.update(dict.fromkeys(keys if isinstance(keys, tuple) else (keys,), f))
    _reject_unknown(raw, set(by_key), path)
    kwargs = {}
    for key, value in raw.items():
        f = by_key[key]
        if not isinstance(f.metadata["key"], tuple):
            kwargs[f.name] = f.metadata["convert"](value, f"{path}.{key}")
        elif f.name not in kwargs:  # given the part of `raw` it reads
            kwargs[f.name] = f.metadata["convert"](
                {k: raw[k] for k in f.metadata["key"] if k in raw}, path
            )
    return cls(**kwargs)


def parse_cache_section(section: object, path: str = SECTION_PATH) -> CacheConfig:
    """Parse a ``backend.cache`` mapping (``${ENV_VAR}`` references are substituted).

    :raises ConfigError: naming the path and the fix for any invalid value.
    """
    return _parse_section(CacheConfig, _substitute_env(section, path), path)


# Keys that only a backend.cache section has: a mapping holding them at the wrong level is
# a cache section in the wrong place, not an app config without one.
_SECTION_MARKERS: Final = ("store", "connection", "defaultTtl", "failOpen")
_WRAP: Final = (
    "wrap it as {'backend': {'cache': {...}}}, or pass the section itself to "
    "CacheManager.from_section(...)"
)


def cache_section(app_config: Mapping[str, Any]) -> Any:
    """The ``backend.cache`` section of a whole app config, or ``None`` if it has none
    (which means the in-memory default, as in Backstage).

    :raises ConfigError: the mapping is not the shape cachekit reads: the section itself
        without ``backend.cache`` around it, a top-level ``cache:``, ``backend.caches``
        (or another near miss), or the section's keys directly under ``backend``.
    """
    if not isinstance(app_config, Mapping):
        raise _type_error("a mapping (the app config)", app_config, "<root>")
    backend = app_config.get("backend")
    if backend is None:
        _check_misplaced(app_config, "")
        return None
    if not isinstance(backend, Mapping):
        raise _type_error("a mapping", backend, "backend")
    if "cache" in backend:
        return backend["cache"]
    _check_misplaced(backend, "backend")
    return None


def _check_misplaced(level: Mapping[Any, Any], path: str) -> None:
    """No ``backend.cache`` in the app config: refuse what was surely meant to be one."""
    keys = [key for key in level if isinstance(key, str)]
    markers = [key for key in keys if key in _SECTION_MARKERS]
    if markers:
        where = f"directly under {path}" if path else "at the top level"
        fix = "move them under backend.cache" if path else _WRAP
        raise ConfigError(
            f"{', '.join(markers)} {'is' if len(markers) == 1 else 'are'} {where}; this looks "
            f"like the backend.cache section itself (cachekit reads backend.cache): {fix}",
            path=path or "<root>",
        )
    for key in keys:
        if difflib.get_close_matches(key.lower(), ["cache"], n=1, cutoff=0.75):
            wrong = f"{path}.{key}" if path else key
            raise ConfigError(
                f"cachekit reads backend.cache, not {wrong}: did you mean backend.cache?",
                path=wrong,
            )


def parse_app_config(app_config: Mapping[str, Any]) -> CacheConfig:
    """Parse the ``backend.cache`` section of a whole app config (defaults if absent).

    :raises ConfigError: the mapping is not an app config holding ``backend.cache`` (see
        :func:`cache_section`), or the section has an invalid value.
    """
    return parse_cache_section(cache_section(app_config))


def load_app_config(*paths: str | os.PathLike[str]) -> dict[str, Any]:
    """Read YAML files and deep-merge them, later files winning (like ``app-config.yaml``
    then ``app-config.production.yaml``).

    :raises ConfigError: a file is missing or not valid YAML, or PyYAML is not installed.
    """
    if not paths:
        raise ConfigError("give at least one config file, e.g. from_yaml('app-config.yaml')")
    try:
        import yaml
    except ImportError:
        raise ConfigError("reading YAML needs PyYAML: pip install 'cachekit[yaml]'") from None
    merged: dict[str, Any] = {}
    for p in paths:
        try:
            text = Path(p).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file: {exc.strerror}", path=str(p)) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, str(p)) from None
        if data is None:
            continue
        if not isinstance(data, Mapping):
            raise _type_error("a mapping at the top of the file", data, str(p))
        merged = _deep_merge(merged, data)
    return merged


@contextmanager
def config_origin(where: str) -> Iterator[None]:
    """Re-raise a :class:`ConfigError` from the block with ``(in {where})`` appended, its
    ``path`` kept: the error then names the file or URL the bad value came from."""
    try:
        yield
    except ConfigError as exc:
        error = ConfigError(f"{exc} (in {where})")
        error.path = exc.path
        raise error from None


def _yaml_error(exc: Exception, file: str) -> ConfigError:
    """A YAML syntax error as ``file:line:column: not valid YAML: problem (context)``."""
    problem = getattr(exc, "problem", None) or str(exc)
    mark = getattr(exc, "problem_mark", None)
    where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark is not None else file
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        problem += f" ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    elif context:
        problem += f" ({context})"
    return ConfigError(f"not valid YAML: {problem}", path=where)


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


_ENV_REF: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _substitute_env(value: object, path: str) -> Any:
    """Replace ``${NAME}`` in every string under ``value`` by the environment variable."""
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match[1]
            if name not in os.environ:
                raise ConfigError(
                    f"environment variable {name} is not set; set it or remove ${{{name}}}",
                    path=path,
                )
            return os.environ[name]

        return _ENV_REF.sub(lookup, value)
    if isinstance(value, Mapping):
        return {k: _substitute_env(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_env(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value
