"""The Redis/Valkey connection: ``backend.cache.connection`` and the ``redis`` / ``valkey``
sections, parsed into one frozen :class:`RedisConnectionSpec`.

Parsing happens when the ``backend.cache`` section is parsed (``store: redis`` or ``store:
valkey``), so a bad URL, a missing ``url`` or a cluster section that cannot work fails at
start-up with the config path at fault. Nothing here connects anywhere or imports a store
or a driver: the store builds its clients from the spec (:mod:`cachekit.stores.redis`).

Three topologies::

    connection: redis://user:pass@host:6379/0           # standalone (or a {url: ...} mapping)
    redis: {cluster: {rootNodes: [{url: redis://h:7000}]}}
    redis: {sentinel: {sentinels: [h:26379], masterName: mymaster, password: ...}}

For a cluster or a sentinel, ``connection`` (optional) only gives the credentials, the
database, the TLS scheme and the pool options for the servers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import unquote, urlsplit

from cachekit.config.masking import redact
from cachekit.errors import ConfigError

if TYPE_CHECKING:
    from cachekit.config.schema import CacheConfig, RedisClusterConfig, RedisSentinelConfig

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "Endpoint",
    "Mode",
    "RedisConnectionSpec",
    "parse_host_port",
    "parse_redis_connection",
    "parse_url",
    "redact",
]

Mode = Literal["standalone", "cluster", "sentinel"]

SCHEMES: Final = ("redis://", "rediss://", "unix://")

DEFAULT_MAX_CONNECTIONS: Final = 50
"""Connections a pool opens at most (per node on a cluster) unless ``maxConnections`` says
otherwise; callers beyond that wait for a free one (see :class:`RedisConnectionSpec`)."""

_CONNECTION_KEYS: Final = ("url", "username", "password", "db", "maxConnections", "clientName")


@dataclass(frozen=True)
class Endpoint:
    """A validated ``redis://``, ``rediss://`` or ``unix://`` URL (``repr`` hides the
    password)."""

    url: str = field(repr=False)
    scheme: str
    host: str
    port: int
    db: int
    username: str | None
    password: str | None = field(repr=False)


@dataclass(frozen=True)
class RedisConnectionSpec:
    """Where and how the Redis/Valkey store connects, checked and typed.

    Passwords are kept out of ``repr`` (``target`` is what to show). ``max_connections``
    bounds each connection pool; a caller that finds every connection busy waits up to
    ``pool_timeout`` seconds for one (then :class:`~cachekit.errors.StoreTimeout`) — a wait,
    not a store failure, so it never counts towards the circuit breaker.
    """

    name: Literal["redis", "valkey"] = "redis"
    mode: Mode = "standalone"
    url: str | None = field(default=None, repr=False)
    nodes: tuple[tuple[str, int], ...] = ()
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str = "mymaster"
    sentinel_password: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0
    ssl: bool = False
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    client_name: str | None = None
    key_prefix: str = ""
    clear_batch_size: int = 1000
    use_unlink: bool = True
    connect_timeout: float = 0.25
    operation_timeout: float = 0.5
    pool_timeout: float | None = None
    failure_threshold: int = 3
    cooldown: float = 2.0
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    """More keyword arguments for the driver's client (``RedisStore.from_url``'s extras)."""

    @property
    def target(self) -> str:
        """Where the clients connect, without passwords."""
        if self.mode == "standalone":
            return redact(self.url or "")
        addresses = ",".join(f"{host}:{port}" for host, port in self.nodes or self.sentinels)
        if self.mode == "cluster":
            return f"cluster {addresses}"
        return f"sentinel {addresses} master {self.master_name}"

    @property
    def queue_timeout(self) -> float:
        """Seconds a caller waits for a free connection: ``pool_timeout``, or by default as
        long as one cold call may take (connect plus operation timeout)."""
        if self.pool_timeout is not None:
            return self.pool_timeout
        return self.connect_timeout + self.operation_timeout


def parse_url(url: object, path: str, *, unix: bool = True) -> Endpoint:
    """Check a server URL the way the client library will read it.

    :raises ConfigError: not a string, an unknown scheme, a bad port or database number.
    """
    schemes = SCHEMES if unix else SCHEMES[:2]
    example = "redis://localhost:6379"
    if not isinstance(url, str) or not url:
        raise ConfigError(f"expected a server URL such as {example}, got {url!r}", path=path)
    shown = redact(url)
    if not url.startswith(schemes):
        raise ConfigError(
            f"unsupported URL {shown!r}: use {', '.join(schemes)} (for example {example})",
            path=path,
        )
    parts = urlsplit(url)
    try:
        port = parts.port or 6379
    except ValueError:
        raise ConfigError(f"invalid port in {shown!r}", path=path) from None
    username, password = _credentials(parts.username, parts.password)
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"{shown!r} names no socket path (unix:///path/to.sock)", path=path)
        return Endpoint(url, "unix", "", 0, 0, username, password)
    if not parts.hostname:
        raise ConfigError(f"{shown!r} names no host ({example})", path=path)
    db_text = parts.path.strip("/")
    if db_text and not db_text.isdigit():
        raise ConfigError(
            f"the path of {shown!r} must be a database number (redis://host:6379/0)", path=path
        )
    return Endpoint(url, parts.scheme, parts.hostname, port, int(db_text or 0), username, password)


def _credentials(username: str | None, password: str | None) -> tuple[str | None, str | None]:
    """A URL's user and password, percent-decoded as the client library reads them."""
    return (unquote(username) if username else None, unquote(password) if password else None)


def parse_host_port(text: str, path: str) -> tuple[str, int]:
    """``"host:port"`` (or a ``redis://host:port`` URL) as a tuple.

    :raises ConfigError: neither form.
    """
    if text.startswith(SCHEMES):
        endpoint = parse_url(text, path, unix=False)
        return endpoint.host, endpoint.port
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"expected 'host:port', got {text!r}", path=path)
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class _Connection:
    """``backend.cache.connection`` once checked: the URL (if any) and the mapping's keys."""

    endpoint: Endpoint | None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int | None = None
    max_connections: int | None = None
    client_name: str | None = None


def _parse_connection(value: object, path: str, *, required: bool) -> _Connection:
    """``connection`` as a URL string or a ``{url, username, password, db, maxConnections,
    clientName}`` mapping."""
    if value is None:
        if required:
            raise ConfigError(
                "the redis/valkey store needs a server: connection: redis://localhost:6379 "
                "(or configure a cluster or a sentinel)",
                path=path,
            )
        return _Connection(None)
    if isinstance(value, str):
        return _Connection(parse_url(value, path))
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"expected a URL such as redis://localhost:6379 or a {{url: ...}} mapping, got "
            f"{type(value).__name__}; a list of servers is for memcache: use "
            "redis.cluster.rootNodes for a cluster",
            path=path,
        )
    for key in value:
        if key not in _CONNECTION_KEYS:
            raise ConfigError(
                f"unknown key {key!r}; known keys: {', '.join(_CONNECTION_KEYS)}",
                path=f"{path}.{key}",
            )
    options: dict[str, Any] = {}
    for key in _CONNECTION_KEYS[1:]:
        if key not in value:
            continue
        item, item_path = value[key], f"{path}.{key}"
        if key in ("db", "maxConnections"):
            low = 0 if key == "db" else 1
            if isinstance(item, bool) or not isinstance(item, int) or item < low:
                raise ConfigError(f"expected a whole number >= {low}, got {item!r}", path=item_path)
        elif not isinstance(item, str):
            raise ConfigError(f"expected a string, got {type(item).__name__}", path=item_path)
        options[key] = item
    endpoint = None
    if "url" in value:
        endpoint = parse_url(value["url"], f"{path}.url")
        for key in ("username", "password", "db"):
            if getattr(endpoint, key) and key in options:
                raise ConfigError(
                    f"given twice: in the url and as {key!r}; keep one", path=f"{path}.{key}"
                )
    elif required:
        raise ConfigError(
            "missing 'url' (for example url: redis://localhost:6379)", path=f"{path}.url"
        )
    return _Connection(
        endpoint,
        username=options.get("username"),
        password=options.get("password"),
        db=options.get("db"),
        max_connections=options.get("maxConnections"),
        client_name=options.get("clientName"),
    )


def _cluster_nodes(cluster: RedisClusterConfig, path: str) -> list[Endpoint]:
    """The cluster's seed nodes, checked: one scheme for all."""
    if not cluster.root_nodes:
        raise ConfigError("list at least one node: [{url: redis://host:port}]", path=path)
    nodes = [
        parse_url(url, f"{path}[{i}].url", unix=False) for i, url in enumerate(cluster.root_nodes)
    ]
    if len({node.scheme for node in nodes}) > 1:
        raise ConfigError("mixes redis:// and rediss:// nodes; use one scheme", path=path)
    return nodes


def _sentinel_addresses(sentinel: RedisSentinelConfig, path: str) -> tuple[tuple[str, int], ...]:
    if not sentinel.sentinels:
        raise ConfigError("list at least one sentinel as 'host:port'", path=f"{path}.sentinels")
    addresses = tuple(
        parse_host_port(text, f"{path}.sentinels[{i}]") for i, text in enumerate(sentinel.sentinels)
    )
    if not sentinel.master_name:
        raise ConfigError("name the monitored master", path=f"{path}.masterName")
    return addresses


def parse_redis_connection(config: CacheConfig) -> RedisConnectionSpec:
    """The connection spec of a ``store: redis`` or ``store: valkey`` section.

    Reads ``connection``, ``timeouts``, ``circuitBreaker`` and the store's own section:
    ``redis.client`` (``namespace``, ``keyPrefixSeparator``, ``clearBatchSize``,
    ``useUnlink``) or ``valkey.client`` / ``valkey.keyPrefix``, plus ``cluster`` or
    ``sentinel`` under the same section.

    :raises ConfigError: naming the config path of a bad URL, a missing ``url``, an unknown
        connection key, or a cluster/sentinel section that cannot work.
    """
    name: Literal["redis", "valkey"] = "valkey" if config.store == "valkey" else "redis"
    section_path = f"backend.cache.{name}"
    if name == "valkey":
        section: Any = config.valkey
        key_prefix = config.valkey.effective_key_prefix
    else:
        section = config.redis
        key_prefix = config.redis.client.key_prefix
    if section.cluster is not None and section.sentinel is not None:
        raise ConfigError("configure either a cluster or a sentinel, not both", path=section_path)
    path = "backend.cache.connection"
    standalone = section.cluster is None and section.sentinel is None
    connection = _parse_connection(config.connection, path, required=standalone)
    endpoint = connection.endpoint
    fields: dict[str, Any] = {  # what the connection says; the topology may add to it
        "username": connection.username or (endpoint.username if endpoint else None),
        "password": connection.password or (endpoint.password if endpoint else None),
        "db": connection.db or (endpoint.db if endpoint else 0),
        "ssl": endpoint is not None and endpoint.scheme == "rediss",
    }
    if connection.max_connections is not None:
        fields["max_connections"] = connection.max_connections
    if standalone:
        assert endpoint is not None  # required above
        fields |= {"mode": "standalone", "url": endpoint.url}
    elif section.cluster is not None:
        nodes_path = f"{section_path}.cluster.rootNodes"
        nodes = _cluster_nodes(section.cluster, nodes_path)
        if fields["db"]:
            raise ConfigError(
                "a cluster has only database 0: drop the db from backend.cache.connection",
                path=nodes_path,
            )
        # the first node URL with credentials gives them to all nodes, unless connection did
        for key in ("username", "password"):
            fields[key] = fields[key] or next(
                (getattr(n, key) for n in nodes if getattr(n, key)), None
            )
        fields["ssl"] = fields["ssl"] or nodes[0].scheme == "rediss"
        fields |= {"mode": "cluster", "nodes": tuple((n.host, n.port) for n in nodes)}
    else:
        sentinel = section.sentinel
        fields |= {
            "mode": "sentinel",
            "sentinels": _sentinel_addresses(sentinel, f"{section_path}.sentinel"),
            "master_name": sentinel.master_name,
            "sentinel_password": sentinel.password,
        }
    return RedisConnectionSpec(
        name=name,
        client_name=connection.client_name,
        key_prefix=key_prefix,
        clear_batch_size=section.client.clear_batch_size,
        use_unlink=section.client.use_unlink,
        connect_timeout=config.timeouts.connect,
        operation_timeout=config.timeouts.operation,
        failure_threshold=config.circuit_breaker.failure_threshold,
        cooldown=config.circuit_breaker.cooldown,
        **fields,
    )
