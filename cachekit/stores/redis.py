"""The Redis and Valkey store: standalone servers, Redis/Valkey Cluster and Sentinel, sync and
async, in one class.

Design choices:

* **One implementation for both servers.** ``store: redis`` uses redis-py; ``store: valkey``
  uses the ``valkey`` client when it is installed, else redis-py (both speak RESP and have the
  same API; only the module and a few class names differ, see :class:`_Driver`).
* **Lazy, shared clients.** Nothing connects when the store is built. The sync client is
  created on first use and is thread safe (its pool hands each thread a connection); every
  plugin of a manager shares it, so a process holds one pool, not one per plugin. An asyncio
  client is bound to the event loop that created it, so the store keeps **one async client
  per running loop**: a web app has one loop and so one pool; a test suite that makes a loop
  per test gets a fresh client on each (await :meth:`RedisStore.aclose` on a loop before
  closing it, as :meth:`CacheManager.aclose <cachekit.CacheManager.aclose>` does, to release
  that loop's connections).
* **Bounded waits, no client-side retries.** Connect and operation timeouts come from
  ``backend.cache.timeouts`` (sub-second defaults). redis-py's default retry policy (10
  retries with back-off) would turn one outage into seconds of waiting per call, so retries
  are off: one failure is one :class:`~cachekit.errors.StoreUnavailable` (valkey-py's asyncio
  cluster pipeline cannot run with zero attempts, so it keeps one retry). A connection broken
  by a server restart is still replaced transparently — the pool checks an idle connection
  before handing it out — so the first call after the server is back succeeds (in asyncio,
  once the loop has run since the server closed the socket, as it does in any live app).
* **RESP2.** The clients speak RESP2, which every Redis and Valkey version answers; redis-py
  8 defaults to RESP3, whose maintenance-notification support switches off the pool's check
  of idle connections — the check that makes restarts painless.
* **A circuit breaker around every call** (``backend.cache.circuitBreaker``): after a few
  consecutive failures calls fail at once, without touching the network (not even to build
  a cluster client), until a probe succeeds. The breaker's call protocol (``before_call`` /
  ``record_success`` / ``record_failure``) is written out in :meth:`RedisStore._call` and, on
  the hot path (``get``, ``set``, ``incr`` and ``aincr``), in the method itself: a
  frame less per call (and while the breaker is ``healthy``, no call at all), and a value
  error the server answered (``incr`` of text) counts as a success.
* **Faster RESP without a C accelerator.** Without ``hiredis``/``libvalkey`` the drivers pack
  commands and read replies in pure Python, about 2 µs per argument and per array element;
  for ``MGET`` of 100 keys that is more than the round trip. Standalone and Sentinel
  connections therefore pack and read with :mod:`cachekit.stores.redis_resp` (the drivers'
  ``command_packer`` and ``parser_class`` options): the same bytes and the same replies, in
  one loop. ``bench/bench_redis.py``: ``get_many(100)`` at 1.02-1.10x of a raw ``MGET``
  returning bytes although it decodes 100 values (0.75-0.80x in asyncio).
* **Driver exceptions never leak.** Timeouts become :class:`~cachekit.errors.StoreTimeout`;
  refused or lost connections, authentication failures, cluster-down and read-only replicas
  (a Sentinel failover in progress) become :class:`~cachekit.errors.StoreUnavailable`; an
  increment of a non-integer becomes :class:`~cachekit.errors.CacheValueError`.
* **One round trip per operation.** ``get_many`` is one ``MGET`` (on a cluster the client's
  non-atomic multi-slot variant, one pipeline per node); ``set_many`` one pipeline of
  ``SET ... PX`` without ``MULTI``; ``delete_many`` one ``UNLINK``/``DEL`` (a pipeline per
  node on a cluster); ``add`` is ``SET NX PX``. ``incr`` without a TTL is ``INCRBY``; with a
  TTL it is one Lua script that sets the expiry only when this call created the key (checked
  with ``EXISTS`` before ``INCRBY``: "the result equals delta" is wrong when a counter comes
  back to ``delta``). ``expire(k, None)`` is a script too, because ``PERSIST`` answers 0 for
  an existing key without a TTL, and so is the rate limiter's GCRA step (``gcra``). Scripts
  are called by SHA (``EVALSHA``), and sent whole (``EVAL``, which also caches them) only
  after a ``NOSCRIPT`` — a restart or ``SCRIPT FLUSH``.
* **TTLs** arrive as positive seconds or ``None`` (no expiry) and go out as ``PX``
  milliseconds rounded *up* — a TTL never becomes 0 or shorter than asked.
* **Scoped clear** is ``SCAN MATCH`` with the selector's glob (ids' glob characters escaped),
  every candidate confirmed with :meth:`KeySelector.matches`, deleted with ``UNLINK`` (or
  ``DEL`` when ``useUnlink: false``) in batches of ``clearBatchSize``; on a cluster every
  primary is scanned. Never ``KEYS``, never ``FLUSHDB``/``FLUSHALL``.
* **Cluster discovery before the first async command.** redis-py's asyncio cluster client
  discovers the cluster on first use, but commands started while it does so fail; the store
  makes every first caller on a loop wait for one discovery instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.util
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from math import ceil
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from cachekit.breaker import CircuitBreaker
from cachekit.errors import (
    CachekitError,
    CacheValueError,
    ConfigError,
    StoreError,
    StoreTimeout,
    StoreUnavailable,
)
from cachekit.keys import KeySelector, scope_of
from cachekit.stores.base import BaseStore
from cachekit.stores.redis_resp import fast_async_parser_class, fast_packer, fast_parser_class

if TYPE_CHECKING:
    from cachekit.config import CacheConfig, RedisClusterConfig, RedisSentinelConfig

__all__ = ["RedisStore"]

Mode = Literal["standalone", "cluster", "sentinel"]

_SCHEMES: Final = ("redis://", "rediss://", "unix://")
_MAX_PX: Final = 10**15  # ~31,700 years: longer TTLs are clamped (Redis rejects ~9.2e18 ms)
_VALUE_ERROR_TEXT: Final = ("not an integer", "overflow")


# --- Lua ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Script:
    """A Lua script, called by SHA with a fallback to sending it whole."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "sha", hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        )


# INCRBY, and PEXPIRE only when this call created the key: an existing key keeps its TTL
# (or its lack of one).
_INCR_WITH_TTL: Final = _Script(
    "local created = redis.call('EXISTS', KEYS[1]) == 0\n"
    "local value = redis.call('INCRBY', KEYS[1], ARGV[1])\n"
    "if created then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
    "return value\n"
)

# Remove the TTL of an existing key and say it exists (PERSIST alone answers 0 for an
# existing key that has no TTL).
_PERSIST: Final = _Script(
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "redis.call('PERSIST', KEYS[1])\n"
    "return 1\n"
)

# One GCRA step (cachekit.gcra.step, in integer microseconds) on the TAT stored at the key;
# the new TAT is stored (expiring when it is reached) only when the hit is allowed. Lua
# numbers are doubles: exact for integers below 2**53 (microseconds until the year 2255).
_GCRA: Final = _Script(
    "local now, interval = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local period, cost = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1]) or '')\n"
    "local current = now\n"
    "if tat and tat > now then current = tat end\n"
    "local new_tat = current + interval * cost\n"
    "if new_tat - period > now then return {0, current} end\n"
    "local ms = math.max(1, math.ceil((new_tat - now) / 1000))\n"
    "redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', ms))\n"
    "return {1, new_tat}\n"
)


# --- the client library ------------------------------------------------------------------


@dataclass(frozen=True)
class _Errors:
    """The exception classes of one client library, sorted by what they mean to cachekit."""

    catch: tuple[type[BaseException], ...]
    timeout: tuple[type[BaseException], ...]
    auth: tuple[type[BaseException], ...]
    unavailable: tuple[type[BaseException], ...]
    response: type[BaseException]
    no_script: type[BaseException]


@dataclass(frozen=True)
class _Driver:
    """The classes of one client library (redis-py or valkey-py) that the store uses."""

    module: str
    client: Any
    async_client: Any
    cluster: Any
    async_cluster: Any
    node: Any
    async_node: Any
    sentinel: Any
    async_sentinel: Any
    async_pool: Any
    retry: Any
    async_retry: Any
    no_backoff: Any
    errors: _Errors

    def no_retry(self, *, asynchronous: bool) -> Any:
        """A retry policy that does not retry (the breaker and the caller decide)."""
        retry_class = self.async_retry if asynchronous else self.retry
        return retry_class(self.no_backoff(), 0)

    def cluster_options(self, *, asynchronous: bool) -> dict[str, Any]:
        """Cluster-client arguments that switch the library's own retries off."""
        options: dict[str, Any] = {"retry": self.no_retry(asynchronous=asynchronous)}
        if self.module == "valkey":  # valkey-py still counts retries in these
            # ...but its asyncio cluster pipeline runs range(attempts) times: 0 would never
            # send anything, so it gets 1 (one retry after a topology refresh).
            options["cluster_error_retry_attempts"] = 1 if asynchronous else 0
            if asynchronous:
                options["connection_error_retry_attempts"] = 0
        return options


@cache
def _driver(module: str) -> _Driver:
    """Load ``redis`` or ``valkey`` (the class names differ only by that word)."""
    title = "Valkey" if module == "valkey" else "Redis"
    imp = importlib.import_module
    ex = imp(f"{module}.exceptions")
    unavailable = (
        ex.ConnectionError,
        ex.ClusterError,
        ex.TryAgainError,
        ex.ReadOnlyError,
        getattr(ex, f"{title}ClusterException"),
        OSError,
    )
    errors = _Errors(
        catch=(getattr(ex, f"{title}Error"), getattr(ex, f"{title}ClusterException"), OSError),
        timeout=(ex.TimeoutError, TimeoutError),
        auth=(ex.AuthenticationError, ex.AuthenticationWrongNumberOfArgsError),
        unavailable=unavailable,
        response=ex.ResponseError,
        no_script=ex.NoScriptError,
    )
    return _Driver(
        module=module,
        client=getattr(imp(module), title),
        async_client=getattr(imp(f"{module}.asyncio"), title),
        cluster=getattr(imp(f"{module}.cluster"), f"{title}Cluster"),
        async_cluster=getattr(imp(f"{module}.asyncio.cluster"), f"{title}Cluster"),
        node=imp(f"{module}.cluster").ClusterNode,
        async_node=imp(f"{module}.asyncio.cluster").ClusterNode,
        sentinel=imp(f"{module}.sentinel").Sentinel,
        async_sentinel=imp(f"{module}.asyncio.sentinel").Sentinel,
        async_pool=_gated_pool(imp(f"{module}.asyncio").ConnectionPool),
        retry=imp(f"{module}.retry").Retry,
        async_retry=imp(f"{module}.asyncio.retry").Retry,
        no_backoff=imp(f"{module}.backoff").NoBackoff,
        errors=errors,
    )


MAX_CONNECTING: Final = 16
"""New connections an asyncio pool opens at once; a burst of callers waits its turn."""


def _gated_pool(base: Any) -> Any:
    """``base`` (an asyncio ``ConnectionPool``) with at most :data:`MAX_CONNECTING`
    connects in flight. Without the gate, a burst on a cold pool (100 tasks at start-up)
    dials 100 sockets at once, and on a busy host some connects overran the connect
    timeout and tripped the breaker. redis-py's asyncio ``BlockingConnectionPool`` would
    bound it too, but costs ~15% on every call; this costs a check on connected ones."""

    class GatedConnectionPool(base):  # type: ignore[misc]
        _gate: asyncio.Semaphore | None = None

        async def ensure_connection(self, connection: Any) -> None:
            if connection.is_connected:
                await super().ensure_connection(connection)
                return
            if self._gate is None:
                self._gate = asyncio.Semaphore(MAX_CONNECTING)
            async with self._gate:
                await super().ensure_connection(connection)

    return GatedConnectionPool


def _module_for(store_name: str) -> str:
    if store_name == "valkey" and importlib.util.find_spec("valkey") is not None:
        return "valkey"
    return "redis"


# --- connection settings -----------------------------------------------------------------


@dataclass(frozen=True)
class _Endpoint:
    """A validated ``redis://``, ``rediss://`` or ``unix://`` URL."""

    url: str
    scheme: str
    host: str
    port: int
    db: int
    username: str | None
    password: str | None


def _redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _parse_url(url: object, path: str, *, unix: bool = True) -> _Endpoint:
    """Check a server URL the way the client library will read it.

    :raises ConfigError: not a string, an unknown scheme, a bad port or database number.
    """
    schemes = _SCHEMES if unix else _SCHEMES[:2]
    example = "redis://localhost:6379"
    if not isinstance(url, str) or not url:
        raise ConfigError(f"expected a server URL such as {example}, got {url!r}", path=path)
    shown = _redact(url)
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
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"{shown!r} names no socket path (unix:///path/to.sock)", path=path)
        return _Endpoint(url, "unix", "", 0, 0, *_credentials(parts.username, parts.password))
    if not parts.hostname:
        raise ConfigError(f"{shown!r} names no host ({example})", path=path)
    db_text = parts.path.strip("/")
    if db_text and not db_text.isdigit():
        raise ConfigError(
            f"the path of {shown!r} must be a database number (redis://host:6379/0)", path=path
        )
    return _Endpoint(
        url,
        parts.scheme,
        parts.hostname,
        port,
        int(db_text or 0),
        *_credentials(parts.username, parts.password),
    )


def _credentials(username: str | None, password: str | None) -> tuple[str | None, str | None]:
    """A URL's user and password, percent-decoded as the client library reads them."""
    return (unquote(username) if username else None, unquote(password) if password else None)


def _parse_host_port(text: str, path: str) -> tuple[str, int]:
    """``"host:port"`` (or a ``redis://host:port`` URL) as a tuple."""
    if text.startswith(_SCHEMES):
        endpoint = _parse_url(text, path, unix=False)
        return endpoint.host, endpoint.port
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"expected 'host:port', got {text!r}", path=path)
    return host.strip("[]"), int(port)


_CONNECTION_KEYS: Final = {
    "url": "url",
    "username": "username",
    "password": "password",
    "db": "db",
    "maxConnections": "max_connections",
    "clientName": "client_name",
}


def _parse_connection(
    value: object, path: str, *, required: bool
) -> tuple[_Endpoint | None, dict[str, Any]]:
    """``connection`` as a URL string or a ``{url, username, password, db, maxConnections,
    clientName}`` mapping: the endpoint and the extra client options."""
    if value is None:
        if required:
            raise ConfigError(
                "the redis/valkey store needs a server: connection: redis://localhost:6379 "
                "(or configure a cluster or a sentinel)",
                path=path,
            )
        return None, {}
    if isinstance(value, str):
        return _parse_url(value, path), {}
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
    for key, target in _CONNECTION_KEYS.items():
        if key == "url" or key not in value:
            continue
        item, item_path = value[key], f"{path}.{key}"
        if key in ("db", "maxConnections"):
            low = 0 if key == "db" else 1
            if isinstance(item, bool) or not isinstance(item, int) or item < low:
                raise ConfigError(f"expected a whole number >= {low}, got {item!r}", path=item_path)
        elif not isinstance(item, str):
            raise ConfigError(f"expected a string, got {type(item).__name__}", path=item_path)
        options[target] = item
    if "url" not in value:
        if required:
            raise ConfigError(
                "missing 'url' (for example url: redis://localhost:6379)", path=f"{path}.url"
            )
        return None, options
    endpoint = _parse_url(value["url"], f"{path}.url")
    for key, target in (("username", "username"), ("password", "password"), ("db", "db")):
        if getattr(endpoint, target) and target in options:
            raise ConfigError(
                f"given twice: in the url and as {key!r}; keep one", path=f"{path}.{key}"
            )
    return endpoint, options


@dataclass(frozen=True)
class _ClientSpec:
    """Everything needed to build the sync and async clients; builds them on request."""

    driver: _Driver
    mode: Mode
    connect_timeout: float
    operation_timeout: float
    url: str | None = None
    nodes: tuple[tuple[str, int], ...] = ()
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str = "mymaster"
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    sentinel_password: str | None = None

    def describe(self) -> str:
        """Where the clients connect, without passwords."""
        if self.mode == "standalone":
            return _redact(self.url or "")
        addresses = ",".join(f"{host}:{port}" for host, port in self.nodes or self.sentinels)
        if self.mode == "cluster":
            return f"cluster {addresses}"
        return f"sentinel {addresses} master {self.master_name}"

    def _common(self) -> dict[str, Any]:
        return {
            "socket_timeout": self.operation_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "decode_responses": False,
            "protocol": 2,
            **self.options,
        }

    def sync_client(self) -> Any:
        """A new sync client."""
        return self._build(asynchronous=False)

    def async_client(self) -> Any:
        """A new asyncio client (bound to the loop that first uses it)."""
        return self._build(asynchronous=True)

    def _build(self, *, asynchronous: bool) -> Any:
        d = self.driver
        common = self._common()
        if self.mode == "cluster":
            node = d.async_node if asynchronous else d.node
            cluster = d.async_cluster if asynchronous else d.cluster
            return cluster(
                startup_nodes=[node(host, port) for host, port in self.nodes],
                **d.cluster_options(asynchronous=asynchronous),
                **common,
            )
        retry = d.no_retry(asynchronous=asynchronous)
        # Faster RESP2 where the driver has no C accelerator (a cluster client takes neither;
        # a user's `protocol: 3` in the options keeps the driver's code).
        if common.get("protocol") not in (2, "2"):
            parser = None
        elif asynchronous:
            parser = fast_async_parser_class(d.module)
        else:
            parser = fast_parser_class(d.module)
            packer = fast_packer(
                d.module, common.get("encoding", "utf-8"), common.get("encoding_errors", "strict")
            )
            if packer is not None:
                common.setdefault("command_packer", packer)
        if parser is not None:
            common.setdefault("parser_class", parser)
        if self.mode == "sentinel":
            sentinel_class = d.async_sentinel if asynchronous else d.sentinel
            sentinel_options = {
                "socket_timeout": self.operation_timeout,
                "socket_connect_timeout": self.connect_timeout,
                "retry": d.no_retry(asynchronous=asynchronous),
                "protocol": 2,
            }
            if self.sentinel_password is not None:
                sentinel_options["password"] = self.sentinel_password
            manager = sentinel_class(
                list(self.sentinels), sentinel_kwargs=sentinel_options, retry=retry, **common
            )
            client_class = d.async_client if asynchronous else d.client
            class_option = {f"{d.module}_class": client_class}  # redis_class / valkey_class
            return manager.master_for(self.master_name, **class_option)
        client_class = d.async_client if asynchronous else d.client
        if not asynchronous:
            return client_class.from_url(self.url, retry=retry, **common)
        pool = d.async_pool.from_url(self.url, retry=retry, **common)
        return client_class.from_pool(pool)  # the client owns the pool: closing closes it


def _found(keys: Sequence[str], values: Sequence[bytes | None]) -> dict[str, bytes]:
    """An MGET's answer as ``get_many`` returns it: the keys that had a value."""
    return {key: value for key, value in zip(keys, values, strict=True) if value is not None}


def _cluster_spec(
    cluster: RedisClusterConfig, path: str, options: dict[str, Any]
) -> dict[str, Any]:
    """The cluster's seed nodes; credentials and TLS of the first node URL that has them
    apply to all nodes unless ``connection`` gave them."""
    if not cluster.root_nodes:
        raise ConfigError("list at least one node: [{url: redis://host:port}]", path=path)
    nodes, schemes = [], set()
    for i, url in enumerate(cluster.root_nodes):
        node = _parse_url(url, f"{path}[{i}].url", unix=False)
        nodes.append((node.host, node.port))
        schemes.add(node.scheme)
        for key in ("username", "password"):
            if getattr(node, key) and key not in options:
                options[key] = getattr(node, key)
    if len(schemes) > 1:
        raise ConfigError("mixes redis:// and rediss:// nodes; use one scheme", path=path)
    if options.pop("db", 0):
        raise ConfigError(
            "a cluster has only database 0: drop the db from backend.cache.connection", path=path
        )
    if "rediss" in schemes:
        options["ssl"] = True
    return {"mode": "cluster", "nodes": tuple(nodes)}


def _sentinel_spec(sentinel: RedisSentinelConfig, path: str) -> dict[str, Any]:
    if not sentinel.sentinels:
        raise ConfigError("list at least one sentinel as 'host:port'", path=f"{path}.sentinels")
    addresses = tuple(
        _parse_host_port(text, f"{path}.sentinels[{i}]")
        for i, text in enumerate(sentinel.sentinels)
    )
    if not sentinel.master_name:
        raise ConfigError("name the monitored master", path=f"{path}.masterName")
    return {
        "mode": "sentinel",
        "sentinels": addresses,
        "master_name": sentinel.master_name,
        "sentinel_password": sentinel.password,
    }


# --- closing clients ---------------------------------------------------------------------


def _close_sync_client(client: Any) -> None:
    pool = getattr(client, "connection_pool", None)
    client.close()
    if pool is not None:  # a pool given to the client (Sentinel) is not closed by close()
        pool.disconnect()
        for sentinel in getattr(getattr(pool, "sentinel_manager", None), "sentinels", ()):
            sentinel.close()


async def _close_async_client(client: Any) -> None:
    pool = getattr(client, "connection_pool", None)
    await client.aclose()
    if pool is not None:
        await pool.disconnect()
        for sentinel in getattr(getattr(pool, "sentinel_manager", None), "sentinels", ()):
            await sentinel.aclose()


def _milliseconds(ttl: float) -> int:
    """A TTL in seconds as whole milliseconds, rounded up (never 0), clamped to ``_MAX_PX``."""
    ms = ceil(ttl * 1000.0 - 1e-6)  # up, ignoring float noise: 1.1 * 1000 = 1100.0000000000002
    return ms if 0 < ms < _MAX_PX else (1 if ms < 1 else _MAX_PX)


def _info_summary(info: Any) -> dict[str, str]:
    """The few ``INFO`` fields operators look at, as strings."""
    fields = info if isinstance(info, dict) else {}
    server = "valkey" if "valkey_version" in fields else "redis"
    version = fields.get("valkey_version", fields.get("redis_version", "unknown"))
    return {
        "server": server,
        "version": str(version),
        "hits": str(fields.get("keyspace_hits", 0)),
        "misses": str(fields.get("keyspace_misses", 0)),
    }


# --- the store ---------------------------------------------------------------------------


class RedisStore(BaseStore):
    """A store on Redis or Valkey: a standalone server, a Cluster, or a Sentinel-managed master.

    Build it from config with :meth:`from_config` (what ``store: redis`` and ``store: valkey``
    do) or from a URL with :meth:`from_url`. The constructor takes two factories, for a
    caller that builds its own clients (a test double such as fakeredis, a pre-configured
    pool): each is called at most once per store (the async one once per event loop), on
    first use.

    :param client_factory: returns a new sync client (``redis.Redis``-like).
    :param async_client_factory: returns a new asyncio client (``redis.asyncio.Redis``-like).
    :param name: ``"redis"`` or ``"valkey"``, used in messages.
    :param key_prefix: the global prefix the cache layer puts in front of every key.
    :param cluster: the clients are cluster clients (multi-slot batches, scans of every
        primary).
    :param clear_batch_size: ``SCAN COUNT`` and the size of each delete batch in ``clear``.
    :param use_unlink: delete with ``UNLINK`` (freed in the background) instead of ``DEL``.
    :param breaker: the circuit breaker to call through (default: 3 failures, 2 s cooldown).
    :param driver: the client library whose exceptions the clients raise (``"redis"`` or
        ``"valkey"``).
    :param target: where the clients connect, for ``repr`` (no passwords).
    :raises ValueError: ``clear_batch_size`` is not a positive int.
    """

    def __init__(
        self,
        client_factory: Callable[[], Any],
        async_client_factory: Callable[[], Any],
        *,
        name: str = "redis",
        key_prefix: str = "",
        cluster: bool = False,
        clear_batch_size: int = 1000,
        use_unlink: bool = True,
        breaker: CircuitBreaker | None = None,
        driver: str = "redis",
        target: str = "",
    ) -> None:
        if type(clear_batch_size) is not int or clear_batch_size < 1:
            raise ValueError(f"clear_batch_size must be a positive int, got {clear_batch_size!r}")
        self.name = name
        self.key_prefix = key_prefix
        self.cluster = cluster
        self.clear_batch_size = clear_batch_size
        self.use_unlink = use_unlink
        self.target = target
        self.breaker = breaker if breaker is not None else CircuitBreaker(name)
        self._client_factory = client_factory
        self._async_client_factory = async_client_factory
        self._errors = _driver(driver).errors
        self._delete_command = "UNLINK" if use_unlink else "DEL"
        self._lock = threading.Lock()
        self._sync: Any = None
        self._async: dict[asyncio.AbstractEventLoop, Any] = {}
        self._bound: tuple[asyncio.AbstractEventLoop, Any] | None = None
        self._uninitialized: dict[asyncio.AbstractEventLoop, Any] = {}

    @classmethod
    def from_config(cls, config: CacheConfig) -> RedisStore:
        """Build from ``backend.cache`` (``store: redis`` or ``store: valkey``), connecting to
        nothing.

        Reads ``connection`` (a URL or a ``{url, username, password, db, maxConnections,
        clientName}`` mapping), ``timeouts``, ``circuitBreaker`` and the store's section:
        ``redis.client`` (``namespace``, ``keyPrefixSeparator``, ``clearBatchSize``,
        ``useUnlink``) or ``valkey.client`` / ``valkey.keyPrefix``, plus ``cluster.rootNodes``
        or ``sentinel`` under the same section.

        :raises ConfigError: naming the config path of a bad URL, a missing ``url``, an
            unknown connection key, or a cluster/sentinel section that cannot work.
        """
        name = "valkey" if config.store == "valkey" else "redis"
        section_path = f"backend.cache.{name}"
        if name == "valkey":
            section: Any = config.valkey
            key_prefix = config.valkey.effective_key_prefix
        else:
            section = config.redis
            key_prefix = config.redis.client.key_prefix
        if section.cluster is not None and section.sentinel is not None:
            raise ConfigError(
                "configure either a cluster or a sentinel, not both", path=section_path
            )
        path = "backend.cache.connection"
        standalone = section.cluster is None and section.sentinel is None
        endpoint, options = _parse_connection(config.connection, path, required=standalone)
        spec: dict[str, Any]
        if standalone:
            assert endpoint is not None  # required above
            spec = {"mode": "standalone", "url": endpoint.url}  # credentials stay in the URL
        else:
            if endpoint is not None:  # only its credentials, db and scheme are used
                options |= {
                    key: getattr(endpoint, key)
                    for key in ("username", "password", "db")
                    if getattr(endpoint, key)
                }
                if endpoint.scheme == "rediss":
                    options["ssl"] = True
            if section.cluster is not None:
                spec = _cluster_spec(section.cluster, f"{section_path}.cluster.rootNodes", options)
            else:
                spec = _sentinel_spec(section.sentinel, f"{section_path}.sentinel")
        driver = _driver(_module_for(name))
        client_spec = _ClientSpec(
            driver=driver,
            connect_timeout=config.timeouts.connect,
            operation_timeout=config.timeouts.operation,
            options=MappingProxyType(options),
            **spec,
        )
        breaker = CircuitBreaker(
            name,
            failure_threshold=config.circuit_breaker.failure_threshold,
            cooldown=config.circuit_breaker.cooldown,
        )
        return cls(
            client_spec.sync_client,
            client_spec.async_client,
            name=name,
            key_prefix=key_prefix,
            cluster=client_spec.mode == "cluster",
            clear_batch_size=section.client.clear_batch_size,
            use_unlink=section.client.use_unlink,
            breaker=breaker,
            driver=driver.module,
            target=client_spec.describe(),
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        name: str = "redis",
        key_prefix: str = "",
        connect_timeout: float = 0.25,
        operation_timeout: float = 0.5,
        clear_batch_size: int = 1000,
        use_unlink: bool = True,
        breaker: CircuitBreaker | None = None,
        **client_options: Any,
    ) -> RedisStore:
        """A store on one server, for use without config:
        ``CacheManager(store=RedisStore.from_url("redis://localhost:6379/0"))``.

        :param url: ``redis://``, ``rediss://`` or ``unix://`` URL (credentials and db in it).
        :param connect_timeout: seconds to wait for a connection.
        :param operation_timeout: seconds to wait for each reply.
        :param client_options: more keyword arguments for the client (``max_connections``,
            ``client_name``, TLS options).
        :raises ConfigError: the URL is not valid.
        """
        _parse_url(url, "url")
        driver = _driver(_module_for(name))
        spec = _ClientSpec(
            driver=driver,
            mode="standalone",
            url=url,
            connect_timeout=connect_timeout,
            operation_timeout=operation_timeout,
            options=MappingProxyType(dict(client_options)),
        )
        return cls(
            spec.sync_client,
            spec.async_client,
            name=name,
            key_prefix=key_prefix,
            clear_batch_size=clear_batch_size,
            use_unlink=use_unlink,
            breaker=breaker,
            driver=driver.module,
            target=spec.describe(),
        )

    def __repr__(self) -> str:
        return (
            f"RedisStore(name={self.name!r}, target={self.target!r}, "
            f"key_prefix={self.key_prefix!r}, cluster={self.cluster}, "
            f"breaker={self.breaker.state!r}, loops={len(self._async)})"
        )

    # --- clients ------------------------------------------------------------------------

    def client(self) -> Any:
        """The shared sync client (created on first use).

        :raises StoreUnavailable: creating it failed (a sync cluster client discovers the
            cluster when it is built), or the breaker is open.
        """
        client = self._sync
        if client is None:
            with self._lock:
                if self._sync is None:
                    self._sync = self._call(self._client_factory)
                client = self._sync
        return client

    def async_client(self) -> Any:
        """The asyncio client of the running event loop (created on first use there).

        :raises RuntimeError: no event loop is running.
        """
        loop = asyncio.get_running_loop()
        bound = self._bound  # one read: another thread may rebind it to its own loop
        if bound is not None and bound[0] is loop:
            return bound[1]
        with self._lock:
            client = self._async.get(loop)
            if client is None:
                # A loop closed without aclose() left nothing we could still await.
                for stale in [other for other in self._async if other.is_closed()]:
                    del self._async[stale]
                    self._uninitialized.pop(stale, None)
                client = self._async[loop] = self._async_client_factory()
                if self.cluster:
                    self._uninitialized[loop] = client
            self._bound = (loop, client)
        return client

    # --- calls through the breaker, with driver errors mapped --------------------------

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        breaker = self.breaker
        if not breaker.healthy:
            breaker.before_call()
        try:
            result = fn(*args)
        except self._errors.catch as exc:
            raise self._failed(exc) from exc
        if not breaker.healthy:
            breaker.record_success()
        return result

    async def _acall(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
        breaker = self.breaker
        if not breaker.healthy:
            breaker.before_call()
        try:
            if self._uninitialized:
                await self._initialize_cluster()
            result = await fn(*args)
        except self._errors.catch as exc:
            raise self._failed(exc) from exc
        if not breaker.healthy:
            breaker.record_success()
        return result

    async def _initialize_cluster(self) -> None:
        """Discover the cluster before the first command on this loop's client.

        redis-py's asyncio cluster client initializes itself on first use, but commands
        started concurrently while it does so fail ("Connection closed by server"), so a
        burst of first calls (a web app's first requests) would all fail. Every caller waits
        here instead; the client's own lock runs the discovery once.
        """
        loop = asyncio.get_running_loop()
        client = self._uninitialized.get(loop)
        if client is not None:
            await client.initialize()
            self._uninitialized.pop(loop, None)

    def _failed(self, exc: BaseException) -> CachekitError:
        """The cachekit error for a driver error, recorded by the breaker."""
        error = self._translate(exc)
        if isinstance(error, StoreError):
            self.breaker.record_failure(error)
        else:
            self.breaker.record_success()  # the server answered
        return error

    def _translate(self, exc: BaseException) -> CachekitError:
        errors, name = self._errors, self.name
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, errors.timeout):
            return StoreTimeout(f"{name} store did not answer in time: {detail}", store=name)
        if isinstance(exc, errors.auth):
            return StoreUnavailable(
                f"{name} store: authentication failed ({detail}); check the username and "
                "password in backend.cache.connection",
                store=name,
            )
        if isinstance(exc, errors.unavailable):
            return StoreUnavailable(f"{name} store is unavailable: {detail}", store=name)
        if isinstance(exc, errors.response) and any(t in detail for t in _VALUE_ERROR_TEXT):
            return CacheValueError(f"{name} store refused the value: {detail}")
        return StoreError(f"{name} store failed: {detail}", store=name)

    # --- sync operations ----------------------------------------------------------------

    # get, set and incr (sync and async) are the hot path: they spell out _call's breaker
    # protocol instead of calling it (a frame and an argument tuple less per call).

    def get(self, key: str) -> bytes | None:
        breaker = self.breaker
        if not breaker.healthy:
            breaker.before_call()
        try:
            value: bytes | None = (self._sync or self.client()).get(key)
        except self._errors.catch as exc:
            raise self._failed(exc) from exc
        if not breaker.healthy:
            breaker.record_success()
        return value

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        if not keys:
            return {}
        client = self.client()
        mget = client.mget_nonatomic if self.cluster else client.mget
        values = self._call(mget, keys)
        return _found(keys, values)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        px = None if ttl is None else _milliseconds(ttl)
        breaker = self.breaker
        if not breaker.healthy:
            breaker.before_call()
        try:
            (self._sync or self.client()).set(key, value, None, px)
        except self._errors.catch as exc:
            raise self._failed(exc) from exc
        if not breaker.healthy:
            breaker.record_success()

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        if items:
            self._call(self._set_many, self.client(), items, ttl)

    def _set_many(self, client: Any, items: Mapping[str, bytes], ttl: float | None) -> None:
        pipe = client.pipeline() if self.cluster else client.pipeline(transaction=False)
        px = None if ttl is None else _milliseconds(ttl)
        for key, value in items.items():
            pipe.set(key, value, px=px)
        pipe.execute()

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        px = None if ttl is None else _milliseconds(ttl)
        return bool(self._call(self._add, self.client(), key, value, px))

    @staticmethod
    def _add(client: Any, key: str, value: bytes, px: int | None) -> Any:
        return client.set(key, value, px=px, nx=True)

    def delete(self, key: str) -> bool:
        client = self.client()
        delete = client.unlink if self.use_unlink else client.delete
        return self._call(delete, key) > 0  # type: ignore[no-any-return]

    def delete_many(self, keys: Sequence[str]) -> int:
        unique = list(dict.fromkeys(keys))
        if not unique:
            return 0
        return self._call(self._delete_keys, self.client(), unique)  # type: ignore[no-any-return]

    def _delete_keys(self, client: Any, keys: list[Any]) -> int:
        if not self.cluster:
            return client.execute_command(self._delete_command, *keys)  # type: ignore[no-any-return]
        pipe = client.pipeline()  # one command per key, grouped into one batch per node
        for key in keys:
            pipe.execute_command(self._delete_command, key)
        return sum(pipe.execute())

    def incr(self, key: str, delta: int, ttl: float | None) -> int:
        breaker = self.breaker
        if not breaker.healthy:
            breaker.before_call()
        client = self._sync or self.client()
        try:
            if ttl is None:
                value: int = client.incrby(key, delta)
            else:
                value = self._script(client, _INCR_WITH_TTL, key, delta, _milliseconds(ttl))
        except self._errors.catch as exc:
            raise self._incr_failed(key, exc) from exc
        if not breaker.healthy:
            breaker.record_success()
        return value

    def _incr_failed(self, key: str, exc: BaseException) -> CachekitError:
        error = self._failed(exc)
        if isinstance(error, CacheValueError):
            return CacheValueError(f"cannot increment {key!r}: {error}")
        return error

    def _script(self, client: Any, script: _Script, key: str, *args: Any) -> Any:
        try:
            return client.evalsha(script.sha, 1, key, *args)
        except self._errors.no_script:
            return client.eval(script.source, 1, key, *args)

    def expire(self, key: str, ttl: float | None) -> bool:
        client = self.client()
        if ttl is None:
            return bool(self._call(self._script, client, _PERSIST, key))
        return bool(self._call(client.pexpire, key, _milliseconds(ttl)))

    def touch(self, key: str, ttl: float | None) -> bool:
        return self.expire(key, ttl)

    def clear(self, selector: KeySelector) -> int:
        return self._call(self._clear, self.client(), selector)  # type: ignore[no-any-return]

    def _clear(self, client: Any, selector: KeySelector) -> int:
        removed, batch, size = 0, [], self.clear_batch_size
        for key in client.scan_iter(match=selector.glob(), count=size):
            if selector.matches(key.decode("utf-8", "surrogateescape")):
                batch.append(key)
                if len(batch) >= size:
                    removed += self._delete_keys(client, batch)
                    batch = []
        if batch:
            removed += self._delete_keys(client, batch)
        return removed

    def gcra(self, key: str, now: int, interval: int, period: int, cost: int) -> tuple[bool, int]:
        """One :func:`cachekit.gcra.step` on the TAT at ``key``, atomic on the server (a Lua
        script), across every process sharing the store."""
        args = (key, now, interval, period, cost)
        allowed, tat = self._call(self._script, self.client(), _GCRA, *args)
        return bool(allowed), int(tat)

    def ping(self) -> None:
        self._call(self.client().ping)

    # --- read-only facts for operators (the ``cachekit`` command) ------------------------

    def server_info(self) -> dict[str, dict[str, str]]:
        """What ``INFO`` says about the server(s), by address: ``server`` (``redis`` or
        ``valkey``), ``version``, and the server-wide ``hits`` / ``misses`` (keyspace hits
        and misses of every client, not only cachekit's). A cluster answers per node.

        :raises StoreError: the server could not be reached.
        """
        client = self.client()
        if self.cluster:  # every primary answers, by node name
            nodes = self._call(lambda: client.info(target_nodes="primaries"))
        else:
            nodes = {self.target: self._call(client.info)}
        return {str(address): _info_summary(info) for address, info in nodes.items()}

    def count_scopes(self, selector: KeySelector) -> dict[str, int]:
        """How many keys each selected scope holds, by ``SCAN`` (never ``KEYS``): a count
        per scope prefix (``{prefix}{plugin}:{tenant}:{namespace}:``, as
        :func:`cachekit.keys.scope_of` returns it). One pass over the keys the selector's
        pattern matches: for operators, not for request paths.

        :raises StoreError: the server could not be reached.
        """
        return self._call(self._count_scopes, self.client(), selector)  # type: ignore[no-any-return]

    def _count_scopes(self, client: Any, selector: KeySelector) -> dict[str, int]:
        counts: dict[str, int] = {}
        skip = len(selector.prefix)
        for raw in client.scan_iter(match=selector.glob(), count=self.clear_batch_size):
            key = raw.decode("utf-8", "surrogateescape")
            if selector.matches(key):
                scope = scope_of(key, skip)
                counts[scope] = counts.get(scope, 0) + 1
        return counts

    def close(self) -> None:
        """Close the sync client's connections (a later call opens new ones). Async clients
        are closed by :meth:`aclose`, awaited on their own event loop."""
        with self._lock:
            client, self._sync = self._sync, None
        if client is not None:
            _close_sync_client(client)

    # --- async operations: the same commands on the running loop's client --------------

    async def aget(self, key: str) -> bytes | None:
        value: bytes | None = await self._acall(self.async_client().get, key)
        return value

    async def aget_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        if not keys:
            return {}
        client = self.async_client()
        mget = client.mget_nonatomic if self.cluster else client.mget
        values = await self._acall(mget, keys)
        return _found(keys, values)

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        px = None if ttl is None else _milliseconds(ttl)
        await self._acall(self.async_client().set, key, value, None, px)

    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        if items:
            await self._acall(self._aset_many, self.async_client(), items, ttl)

    async def _aset_many(self, client: Any, items: Mapping[str, bytes], ttl: float | None) -> None:
        pipe = client.pipeline() if self.cluster else client.pipeline(transaction=False)
        px = None if ttl is None else _milliseconds(ttl)
        for key, value in items.items():
            pipe.set(key, value, px=px)
        await pipe.execute()

    async def aadd(self, key: str, value: bytes, ttl: float | None) -> bool:
        px = None if ttl is None else _milliseconds(ttl)
        return bool(await self._acall(self._add, self.async_client(), key, value, px))

    async def adelete(self, key: str) -> bool:
        client = self.async_client()
        delete = client.unlink if self.use_unlink else client.delete
        return await self._acall(delete, key) > 0  # type: ignore[no-any-return]

    async def adelete_many(self, keys: Sequence[str]) -> int:
        unique = list(dict.fromkeys(keys))
        if not unique:
            return 0
        return await self._acall(self._adelete_keys, self.async_client(), unique)  # type: ignore[no-any-return]

    async def _adelete_keys(self, client: Any, keys: list[Any]) -> int:
        if not self.cluster:
            return await client.execute_command(self._delete_command, *keys)  # type: ignore[no-any-return]
        pipe = client.pipeline()
        for key in keys:
            pipe.execute_command(self._delete_command, key)
        return sum(await pipe.execute())

    async def aincr(self, key: str, delta: int, ttl: float | None) -> int:
        breaker = self.breaker
        if not breaker.healthy:
            breaker.before_call()
        client = self.async_client()
        try:
            if self._uninitialized:
                await self._initialize_cluster()
            if ttl is None:
                value: int = await client.incrby(key, delta)
            else:
                args = (key, delta, _milliseconds(ttl))
                value = await self._ascript(client, _INCR_WITH_TTL, *args)
        except self._errors.catch as exc:
            raise self._incr_failed(key, exc) from exc
        if not breaker.healthy:
            breaker.record_success()
        return value

    async def _ascript(self, client: Any, script: _Script, key: str, *args: Any) -> Any:
        try:
            return await client.evalsha(script.sha, 1, key, *args)
        except self._errors.no_script:
            return await client.eval(script.source, 1, key, *args)

    async def aexpire(self, key: str, ttl: float | None) -> bool:
        client = self.async_client()
        if ttl is None:
            return bool(await self._acall(self._ascript, client, _PERSIST, key))
        return bool(await self._acall(client.pexpire, key, _milliseconds(ttl)))

    async def atouch(self, key: str, ttl: float | None) -> bool:
        return await self.aexpire(key, ttl)

    async def aclear(self, selector: KeySelector) -> int:
        return await self._acall(self._aclear, self.async_client(), selector)  # type: ignore[no-any-return]

    async def _aclear(self, client: Any, selector: KeySelector) -> int:
        removed, batch, size = 0, [], self.clear_batch_size
        async for key in client.scan_iter(match=selector.glob(), count=size):
            if selector.matches(key.decode("utf-8", "surrogateescape")):
                batch.append(key)
                if len(batch) >= size:
                    removed += await self._adelete_keys(client, batch)
                    batch = []
        if batch:
            removed += await self._adelete_keys(client, batch)
        return removed

    async def agcra(
        self, key: str, now: int, interval: int, period: int, cost: int
    ) -> tuple[bool, int]:
        """Async :meth:`gcra`."""
        args = (key, now, interval, period, cost)
        allowed, tat = await self._acall(self._ascript, self.async_client(), _GCRA, *args)
        return bool(allowed), int(tat)

    async def aping(self) -> None:
        await self._acall(self.async_client().ping)

    async def aclose(self) -> None:
        """Close the running loop's async client and the sync client (later calls open new
        connections)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async.pop(loop, None)
            self._uninitialized.pop(loop, None)
            if self._bound is not None and self._bound[0] is loop:
                self._bound = None
        if client is not None:
            await _close_async_client(client)
        self.close()
