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

**Backstage's other client options.** Backstage hands ``redis.client`` to ``@keyv/redis``
and an object ``connection`` (and a cluster's ``defaults``) to node-redis. cachekit reads
the same keys in all three places through one table, :data:`CLIENT_OPTIONS`: an option
redis-py has a counterpart for is mapped to it (``connectionTimeout``,
``socket.connectTimeout``, ``socket.keepAlive``, ``socket.keepAliveInitialDelay``,
``socket.tls``, ``socket.rejectUnauthorized``, ``socket.ca``, ``name``, ``username``,
``password``, ``database``, ``pingInterval``); every other option Backstage or node-redis
knows is accepted and listed in :attr:`RedisConnectionSpec.ignored` with the reason, which
the manager logs once at start-up. A key neither knows is a ``ConfigError`` with the closest
known one, so a typo is not silently ignored.
"""

from __future__ import annotations

import difflib
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import unquote, urlsplit

from cachekit.config.masking import redact
from cachekit.durations import parse_config_duration
from cachekit.errors import ConfigError

if TYPE_CHECKING:
    from cachekit.config.schema import CacheConfig, RedisClusterConfig, RedisSentinelConfig

__all__ = [
    "CLIENT_OPTIONS",
    "CLIENT_OPTION_KEYS",
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

# --- Backstage's (keyv's and node-redis's) client options --------------------------------

_SERVER_FROM_CONNECTION: Final = "the server comes from backend.cache.connection"
_FAILURE_POLICY: Final = (
    "cachekit's failure policy decides: direct calls raise StoreError, @cached and the "
    "middleware fail open"
)
_NO_COUNTERPART: Final = "no redis-py counterpart cachekit uses"

CLIENT_OPTIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        # @keyv/redis options (Backstage passes redis.client to it)
        "connectionTimeout": "mapped",
        "noNamespaceAffectsAll": "cachekit's clear is always scoped; it never flushes the database",
        "throwOnConnectError": _FAILURE_POLICY,
        "throwOnErrors": _FAILURE_POLICY,
        # node-redis client options (an object connection, a cluster's defaults)
        "socket": "mapped",
        "name": "mapped",
        "username": "mapped",
        "password": "mapped",
        "database": "mapped",
        "pingInterval": "mapped",
        "url": _SERVER_FROM_CONNECTION,
        "readonly": "use redis.cluster.useReplicas to read from replicas",
        "RESP": "cachekit speaks RESP2 (see cachekit.stores.redis.store)",
        "disableOfflineQueue": "cachekit never queues commands while disconnected",
        "commandsQueueMaxLength": "cachekit never queues commands while disconnected",
        "legacyMode": _NO_COUNTERPART,
        "isolationPoolOptions": _NO_COUNTERPART,
        "modules": _NO_COUNTERPART,
        "scripts": _NO_COUNTERPART,
        "functions": _NO_COUNTERPART,
        "disableClientInfo": _NO_COUNTERPART,
        "clientInfoTag": _NO_COUNTERPART,
        "clientSideCache": _NO_COUNTERPART,
        "commandOptions": _NO_COUNTERPART,
        "emitInvalidate": _NO_COUNTERPART,
        "maintNotifications": _NO_COUNTERPART,
        "credentialsProvider": _NO_COUNTERPART,
    }
)
"""Every Backstage/node-redis client option cachekit accepts, with what it does:
``"mapped"`` (to the driver) or the reason it is ignored."""

CLIENT_OPTION_KEYS: Final = tuple(CLIENT_OPTIONS)
"""The keys of :data:`CLIENT_OPTIONS` (what ``redis.client`` reads besides cachekit's own)."""

_SOCKET_OPTIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "connectTimeout": "mapped",
        "keepAlive": "mapped",
        "keepAliveInitialDelay": "mapped",
        "tls": "mapped",
        "rejectUnauthorized": "mapped",
        "ca": "mapped",
        "host": _SERVER_FROM_CONNECTION,
        "port": _SERVER_FROM_CONNECTION,
        "path": _SERVER_FROM_CONNECTION,
        "servername": "redis-py checks the certificate against the host of the URL",
        "cert": "redis-py reads client certificates from files; not settable from config",
        "key": "redis-py reads client certificates from files; not settable from config",
        "noDelay": "redis-py always sets TCP_NODELAY",
        "socketTimeout": "use backend.cache.timeouts.operation",
        "reconnectStrategy": "cachekit's circuit breaker decides when to try again",
        "family": _NO_COUNTERPART,
        "localAddress": _NO_COUNTERPART,
        "localPort": _NO_COUNTERPART,
        "timeout": "use backend.cache.timeouts.operation",
    }
)


@dataclass
class _ClientOptions:
    """What Backstage's client options mean here: spec fields, driver keyword arguments
    and the options ignored (``path: reason``)."""

    fields: dict[str, Any] = field(default_factory=dict)
    driver: dict[str, Any] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    tls: dict[str, tuple[Any, str]] = field(default_factory=dict)
    """Driver arguments that only mean something with TLS on, with their config paths."""


def _unknown(key: object, known: Mapping[str, str], path: str) -> ConfigError:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ConfigError(
        f"unknown key {key!r}; {hint}known keys: {', '.join(known)}", path=f"{path}.{key}"
    )


def _text(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"expected a string, got {type(value).__name__}", path=path)
    return value


def _flag(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {value!r}", path=path)
    return value


def _keepalive_idle(value: object, path: str, out: _ClientOptions) -> None:
    """A keep-alive delay (milliseconds, as node-redis reads it) as ``TCP_KEEPIDLE``."""
    seconds = parse_config_duration(value, path)
    idle = getattr(socket, "TCP_KEEPIDLE", None)
    if idle is None:  # pragma: no cover - Linux has it; other systems name it differently
        out.ignored.append(f"{path}: this system has no TCP_KEEPIDLE socket option")
        return
    out.driver["socket_keepalive"] = True
    out.driver["socket_keepalive_options"] = {idle: max(1, round(seconds))}


def _map_socket(raw: object, path: str, out: _ClientOptions) -> None:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"expected a mapping, got {type(raw).__name__}", path=path)
    for key, value in raw.items():
        item = f"{path}.{key}"
        what = _SOCKET_OPTIONS.get(key)
        if what is None:
            raise _unknown(key, _SOCKET_OPTIONS, path)
        if what != "mapped":
            out.ignored.append(f"{item}: ignored ({what})")
        elif key == "connectTimeout":
            out.fields["connect_timeout"] = parse_config_duration(value, item)
        elif key == "keepAlive":
            if isinstance(value, bool):
                out.driver["socket_keepalive"] = value
            else:  # a number: keep-alive on, after that many milliseconds idle
                _keepalive_idle(value, item, out)
        elif key == "keepAliveInitialDelay":
            if out.driver.get("socket_keepalive") is not False:
                _keepalive_idle(value, item, out)
        elif key == "tls":
            out.fields["ssl"] = _flag(value, item)
        elif key == "rejectUnauthorized":
            out.tls["ssl_cert_reqs"] = ("required" if _flag(value, item) else "none", item)
        else:  # ca: the PEM text itself, as node's tls options take it
            out.tls["ssl_ca_data"] = (_text(value, item), item)


def map_client_options(raw: Mapping[str, Any], path: str) -> _ClientOptions:
    """Backstage's client options at ``path`` (``redis.client``, an object
    ``connection``, a cluster's ``defaults``) as what they mean to cachekit.

    :raises ConfigError: an option neither Backstage nor node-redis has (with the closest
        known one), or a value of the wrong type.
    """
    out = _ClientOptions()
    for key, value in raw.items():
        item = f"{path}.{key}"
        what = CLIENT_OPTIONS.get(key)
        if what is None:
            raise _unknown(key, CLIENT_OPTIONS, path)
        if what != "mapped":
            out.ignored.append(f"{item}: ignored ({what})")
        elif key == "socket":
            _map_socket(value, item, out)
        elif key == "connectionTimeout":
            out.fields["connect_timeout"] = parse_config_duration(value, item)
        elif key == "pingInterval":
            out.driver["health_check_interval"] = parse_config_duration(value, item)
        elif key == "database":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"expected a whole number >= 0, got {value!r}", path=item)
            out.fields["db"] = value
        else:  # name, username, password
            out.fields["client_name" if key == "name" else key] = _text(value, item)
    return out


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
    replica_reads: bool = False
    """A cluster's reads may go to replicas (Backstage's ``useReplicas``)."""
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    """More keyword arguments for the driver's client (``RedisStore.from_url``'s extras, and
    Backstage's client options mapped to redis-py's)."""
    ignored: tuple[str, ...] = field(default=(), repr=False)
    """Backstage options accepted but without effect, as ``path: ignored (reason)``: the
    manager logs each once when it is built."""

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
    """``backend.cache.connection`` once checked: the URL (if any), the mapping's keys, and
    Backstage's (node-redis) client options given beside them."""

    endpoint: Endpoint | None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int | None = None
    max_connections: int | None = None
    client_name: str | None = None
    client_options: Mapping[str, Any] = field(default_factory=dict, repr=False)


def _parse_connection(value: object, path: str, *, required: bool) -> _Connection:
    """``connection`` as a URL string or a ``{url, username, password, db, maxConnections,
    clientName}`` mapping, which may also hold node-redis client options
    (:data:`CLIENT_OPTIONS`)."""
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
        if key not in _CONNECTION_KEYS and key not in CLIENT_OPTIONS:
            known = dict.fromkeys(_CONNECTION_KEYS, "") | dict(CLIENT_OPTIONS)
            raise _unknown(key, known, path)
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
        client_options={k: v for k, v in value.items() if k not in _CONNECTION_KEYS},
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
        "db": connection.db or (endpoint.db if endpoint else None) or None,  # None: not given
        "ssl": endpoint is not None and endpoint.scheme == "rediss",
    }
    if connection.max_connections is not None:
        fields["max_connections"] = connection.max_connections
    if connection.client_name is not None:
        fields["client_name"] = connection.client_name
    # Backstage's client options, most specific first: the connection's own, redis.client,
    # a cluster's defaults (each value given in two places must agree)
    sources = [(connection.client_options, path)]
    if name == "redis":
        sources.append((config.redis.client.options, f"{section_path}.client"))
    if section.cluster is not None:
        sources.append((section.cluster.defaults, f"{section_path}.cluster.defaults"))
    driver: dict[str, Any] = {}
    ignored: list[str] = []
    tls: dict[str, tuple[Any, str]] = {}
    for raw, source_path in sources:
        mapped = map_client_options(raw, source_path)
        for key, value in mapped.fields.items():
            if key == "ssl":  # TLS on anywhere is TLS on
                fields["ssl"] = fields["ssl"] or value
            elif key == "connect_timeout":  # the most specific place wins
                fields.setdefault(key, value)
            elif fields.get(key) is None:
                fields[key] = value
            elif fields[key] != value:
                raise ConfigError(
                    f"{key} is given twice with different values; keep one", path=source_path
                )
        for key, value in mapped.driver.items():
            driver.setdefault(key, value)
        for key, setting in mapped.tls.items():
            tls.setdefault(key, setting)
        ignored += mapped.ignored
    fields["db"] = fields["db"] or 0
    fields.setdefault("connect_timeout", config.timeouts.connect)
    for key, (value, item_path) in tls.items():  # TLS settings mean nothing without TLS
        if fields["ssl"]:
            driver.setdefault(key, value)
        else:
            ignored.append(f"{item_path}: ignored (TLS is off: use rediss:// or socket.tls)")
    if standalone:
        assert endpoint is not None  # required above
        url = endpoint.url
        if fields["ssl"] and endpoint.scheme == "redis":  # socket.tls: true on a redis:// URL
            url = "rediss" + url.removeprefix("redis")
        fields |= {"mode": "standalone", "url": url}
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
        cluster = section.cluster
        fields["replica_reads"] = cluster.use_replicas
        if cluster.max_command_redirections is not None:
            ignored.append(
                f"{section_path}.cluster.maxCommandRedirections: ignored (redis-py follows "
                "at most 16 MOVED/ASK redirections, a limit it does not let a client change)"
            )
        if cluster.minimize_connections is not None:
            ignored.append(
                f"{section_path}.cluster.minimizeConnections: ignored (redis-py already "
                "connects to a node only when a command goes to it)"
            )
    else:
        sentinel = section.sentinel
        fields |= {
            "mode": "sentinel",
            "sentinels": _sentinel_addresses(sentinel, f"{section_path}.sentinel"),
            "master_name": sentinel.master_name,
            "sentinel_password": sentinel.password,
        }
    if config.key_layout == "backstage" and name == "valkey":
        raise ConfigError(
            "keyLayout: backstage is for store: redis: Backstage's Valkey store (@keyv/valkey) "
            "keys entries without the plugin id and tracks each plugin's keys in a Redis set, "
            "a layout cachekit does not write",
            path="backend.cache.keyLayout",
        )
    return RedisConnectionSpec(
        name=name,
        key_prefix=key_prefix,
        clear_batch_size=section.client.clear_batch_size,
        use_unlink=section.client.use_unlink,
        operation_timeout=config.timeouts.operation,
        failure_threshold=config.circuit_breaker.failure_threshold,
        cooldown=config.circuit_breaker.cooldown,
        options=MappingProxyType(driver),
        ignored=tuple(ignored),
        **fields,
    )
