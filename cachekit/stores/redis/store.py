"""The Redis and Valkey store: standalone servers, Redis/Valkey Cluster and Sentinel, sync and
async, in one class, on the client libraries' documented API.

Design choices:

* **One implementation for both servers.** ``store: redis`` uses redis-py; ``store: valkey``
  uses valkey-py when it is installed, else redis-py (see :mod:`.driver`). The store talks
  to the libraries' public client classes only — no private modules, attributes or
  overridden methods — and gets its speed from their own C reply parsers (``hiredis`` and
  ``libvalkey``, which ``cachekit[redis]`` and ``cachekit[valkey]`` install).
* **Each operation written once.** An operation of one command is that command's name and
  arguments, sent by :meth:`RedisStore._command` (sync) or :meth:`RedisStore._acommand`
  (async); an operation of several (a Lua script with its ``NOSCRIPT`` fallback, a
  pipeline, the ``SCAN`` loop of ``clear``) is a generator of :data:`Step` values run by
  :func:`cachekit.steps.run` or :func:`~cachekit.steps.arun`. The only code that differs
  between the two halves is the shell: which client, and ``await``.
* **Lazy, shared clients.** Nothing connects when the store is built. The sync client is
  created on first use and is thread safe; every plugin of a manager shares it, so a
  process holds one pool, not one per plugin. An asyncio client is bound to the event loop
  that created it, so the store keeps **one async client per running loop** (await
  :meth:`RedisStore.aclose` on a loop before closing it, as
  :meth:`CacheManager.aclose <cachekit.host.CacheManager.aclose>` does).
* **Bounded pools, bounded queueing.** Each pool opens at most ``maxConnections``
  connections (per node on a cluster). The store lets that many calls run at once per
  client (slots counted per event loop, a token queue for threads); a caller beyond that
  waits for a free slot, at most ``pool_timeout`` seconds, then gets
  :class:`~cachekit.errors.StoreTimeout`. Waiting is not a store failure: it never moves
  the circuit breaker. It also keeps a burst of callers on a cold pool from dialling
  hundreds of sockets at once, which on a busy host made connects overrun their timeout.
* **Bounded waits, no client-side retries.** Connect and operation timeouts come from
  ``backend.cache.timeouts`` (sub-second defaults). The libraries' default retry policies
  would turn one outage into seconds of waiting per call, so retries are off: one failure
  is one :class:`~cachekit.errors.StoreUnavailable`. A connection broken by a server
  restart is still replaced: the pool checks an idle connection before handing it out.
* **RESP2.** The clients speak RESP2, which every Redis and Valkey version answers. With
  the C parsers installed RESP3 is no faster for the store's replies (bulk strings,
  integers, arrays of them: measured equal), and RESP3 makes redis-py 8 turn on its
  maintenance notifications, under which the pool stops checking an idle connection for
  unread data before handing it out: with RESP3 the first asyncio call after a server
  restart fails ("Connection closed by server") where with RESP2 it reconnects and succeeds
  (``test_restart_is_survived_by_the_first_call``).
* **A circuit breaker around every call** (``backend.cache.circuitBreaker``): after a few
  consecutive failures calls fail at once, without touching the network, until a probe
  succeeds. A value error the server answered (``incr`` of text) counts as a success.
* **Driver exceptions never leak** (see :meth:`.driver.Driver.translate`).
* **One round trip per operation.** ``get_many`` is one ``MGET`` (on a cluster the client's
  non-atomic multi-slot variant, one pipeline per node); ``set_many`` one pipeline of
  ``SET ... PX`` without ``MULTI``; ``delete_many`` one ``UNLINK``/``DEL`` (a pipeline per
  node on a cluster); ``add`` is ``SET NX PX``. ``incr`` without a TTL is ``INCRBY``; with a
  TTL, ``expire(k, None)`` and the rate limiter's ``gcra`` they are Lua scripts
  (:mod:`.scripts`), called by SHA.
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
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from functools import partial
from itertools import islice
from math import ceil
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeAlias

from cachekit.breaker import CircuitBreaker
from cachekit.config.redis import DEFAULT_MAX_CONNECTIONS, RedisConnectionSpec, parse_url
from cachekit.errors import CachekitError, ConfigError, StoreError, StoreTimeout
from cachekit.keys import KeySelector
from cachekit.steps import Steps, arun, run
from cachekit.stores.base import BaseStore
from cachekit.stores.gate import Gate
from cachekit.stores.redis.clients import ClientFactory, close_async_client, close_sync_client
from cachekit.stores.redis.driver import load_driver, module_for
from cachekit.stores.redis.scripts import DELETE_IF_EQUALS, GCRA, INCR_WITH_TTL, PERSIST, Script
from cachekit.stores.redis.tracking import (
    CLUSTER_REFRESH,
    SENTINEL_REFRESH,
    ClusterNodes,
    Node,
    SentinelMaster,
    Tracker,
)

if TYPE_CHECKING:
    from cachekit.config import CacheConfig
    from cachekit.near import InvalidationSink

__all__ = ["RedisStore"]

_MAX_PX: Final = 10**15  # ~31,700 years: longer TTLs are clamped (Redis rejects ~9.2e18 ms)


# --- steps: what an operation asks of "the client", sync or async -------------------------


class Command(NamedTuple):
    """Call the client's method ``name(*args)`` (awaited on an asyncio client)."""

    name: str
    args: tuple[Any, ...] = ()


class Pipeline(NamedTuple):
    """Send ``commands`` in one pipeline without ``MULTI``; the list of their replies."""

    commands: tuple[Command, ...]
    cluster: bool  # a cluster client's pipeline (it never uses MULTI, nor takes the option)


class Scan(NamedTuple):
    """Start the client's ``scan_iter`` (every primary on a cluster): the iterator."""

    match: str
    batch: int  # SCAN COUNT


class Take(NamedTuple):
    """The next ``n`` items of an iterator a :class:`Scan` returned (fewer at its end)."""

    iterator: Any
    n: int


Step: TypeAlias = Command | Pipeline | Scan | Take


def _pipeline(client: Any, step: Pipeline) -> Any:
    pipe = client.pipeline() if step.cluster else client.pipeline(transaction=False)
    for name, args in step.commands:
        getattr(pipe, name)(*args)
    return pipe


def _execute(client: Any, step: Step) -> Any:
    """Run ``step`` on a sync client."""
    if type(step) is Command:
        return getattr(client, step.name)(*step.args)
    if type(step) is Pipeline:
        return _pipeline(client, step).execute()
    if type(step) is Scan:
        return client.scan_iter(match=step.match, count=step.batch)
    assert type(step) is Take
    return list(islice(step.iterator, step.n))


async def _aexecute(client: Any, step: Step) -> Any:
    """Run ``step`` on an asyncio client."""
    if type(step) is Command:
        return await getattr(client, step.name)(*step.args)
    if type(step) is Pipeline:
        return await _pipeline(client, step).execute()
    if type(step) is Scan:
        return client.scan_iter(match=step.match, count=step.batch)
    assert type(step) is Take
    return await _take(step.iterator, step.n)


async def _take(iterator: AsyncIterator[Any], n: int) -> list[Any]:
    items = []
    async for item in iterator:
        items.append(item)
        if len(items) >= n:
            break
    return items


class _Slots:
    """The call slots of one event loop's client: a counter on the fast path (a loop runs
    one task at a time, so no lock), and the callers waiting for a slot, first come first
    served. A released slot passes straight to the oldest live waiter."""

    __slots__ = ("free", "waiters")

    def __init__(self, size: int) -> None:
        self.free = size
        self.waiters: deque[asyncio.Future[None]] = deque()

    def release(self) -> None:
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():  # a waiter that timed out or was cancelled is skipped
                waiter.set_result(None)
                return
        self.free += 1

    async def wait(self) -> None:
        """Wait until a released slot is handed to this caller (``free`` is 0)."""
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except BaseException:  # cancelled or timed out: a slot handed over meanwhile goes on
            if waiter.done() and not waiter.cancelled():
                self.release()
            raise


class _LoopClient(NamedTuple):
    """One event loop's asyncio client and the slots that bound its calls."""

    client: Any
    slots: _Slots


def _milliseconds(ttl: float) -> int:
    """A TTL in seconds as whole milliseconds, rounded up (never 0), clamped to ``_MAX_PX``."""
    ms = ceil(ttl * 1000.0 - 1e-6)  # up, ignoring float noise: 1.1 * 1000 = 1100.0000000000002
    return ms if 0 < ms < _MAX_PX else (1 if ms < 1 else _MAX_PX)


def _px(ttl: float | None) -> int | None:
    return None if ttl is None else _milliseconds(ttl)


def _found(keys: Sequence[str], values: Sequence[bytes | None]) -> dict[str, bytes]:
    """An MGET's answer as ``get_many`` returns it: the keys that had a value."""
    return {key: value for key, value in zip(keys, values, strict=True) if value is not None}


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
    :param max_connections: calls in flight at once per client (sync, and each loop's
        async client); more callers wait for a slot. Give the clients' pools at least as
        many connections.
    :param pool_timeout: seconds a caller waits for a slot before
        :class:`~cachekit.errors.StoreTimeout` (which does not move the breaker).
    :param connection: the factory the clients come from, when there is one: it lets
        :meth:`tracker` open connections of its own to the same servers.
    :raises ValueError: ``clear_batch_size`` or ``max_connections`` is not a positive int.
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
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float = 0.75,
        connection: ClientFactory | None = None,
    ) -> None:
        for label, number in (
            ("clear_batch_size", clear_batch_size),
            ("max_connections", max_connections),
        ):
            if type(number) is not int or number < 1:
                raise ValueError(f"{label} must be a positive int, got {number!r}")
        self.name = name
        self.key_prefix = key_prefix
        self.cluster = cluster
        self.clear_batch_size = clear_batch_size
        self.use_unlink = use_unlink
        self.target = target
        self.max_connections = max_connections
        self.pool_timeout = pool_timeout
        self.connection = connection
        self.breaker = breaker if breaker is not None else CircuitBreaker(name)
        self._client_factory = client_factory
        self._async_client_factory = async_client_factory
        self._driver = load_driver(driver)
        self._catch = self._driver.catch
        self._mget = "mget_nonatomic" if cluster else "mget"
        self._delete = "unlink" if use_unlink else "delete"
        self._delete_command = "UNLINK" if use_unlink else "DEL"
        self._lock = threading.Lock()
        self._sync: Any = None
        self._gate = Gate(max_connections)  # threads: first come, first served
        self._async: dict[asyncio.AbstractEventLoop, _LoopClient] = {}
        self._bound: tuple[asyncio.AbstractEventLoop, _LoopClient] | None = None
        self._uninitialized: dict[asyncio.AbstractEventLoop, Any] = {}

    @classmethod
    def from_spec(cls, spec: RedisConnectionSpec) -> RedisStore:
        """Build from a checked connection spec (:mod:`cachekit.config.redis`), connecting to
        nothing."""
        driver = load_driver(module_for(spec.name))
        factory = ClientFactory(spec, driver)
        breaker = CircuitBreaker(
            spec.name, failure_threshold=spec.failure_threshold, cooldown=spec.cooldown
        )
        max_connections = spec.options.get("max_connections", spec.max_connections)
        return cls(
            factory.sync_client,
            factory.async_client,
            name=spec.name,
            key_prefix=spec.key_prefix,
            cluster=spec.mode == "cluster",
            clear_batch_size=spec.clear_batch_size,
            use_unlink=spec.use_unlink,
            breaker=breaker,
            driver=driver.module,
            target=spec.target,
            max_connections=max_connections,
            pool_timeout=spec.queue_timeout,
            connection=factory,
        )

    @classmethod
    def from_config(cls, config: CacheConfig) -> RedisStore:
        """Build from ``backend.cache`` (``store: redis`` or ``store: valkey``), connecting to
        nothing: from the connection spec parsed with the section
        (:func:`cachekit.config.redis.parse_redis_connection` says what it reads).

        :raises ConfigError: the section is not a redis/valkey one.
        """
        spec = config.connection_spec
        if not isinstance(spec, RedisConnectionSpec):
            raise ConfigError(
                f"the redis store cannot use a {config.store!r} section", path="backend.cache"
            )
        return cls.from_spec(spec)

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
        parse_url(url, "url")
        spec = RedisConnectionSpec(
            name="valkey" if name == "valkey" else "redis",
            url=url,
            key_prefix=key_prefix,
            connect_timeout=connect_timeout,
            operation_timeout=operation_timeout,
            clear_batch_size=clear_batch_size,
            use_unlink=use_unlink,
            options=dict(client_options),
        )
        store = cls.from_spec(spec)
        store.name = name
        if breaker is not None:
            store.breaker = breaker
        return store

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

    def tracker(self, sink: InvalidationSink, prefix: str) -> Tracker | None:
        """A :class:`~cachekit.stores.redis.tracking.Tracker` of this store's servers, not
        started: it tells ``sink`` of every change to a key starting with ``prefix``.

        Its connections are its own (one per node, never the store's pools), with the store's
        credentials, TLS and timeouts: a standalone server (source ``host:port``), the current
        Sentinel master (source ``sentinel <master name>``; the sentinels are asked every
        second, and the listener follows the master when it moves), or every primary and
        replica of a cluster (source ``host:port`` each; the node list is re-read every few
        seconds).

        :returns: ``None`` when the store was built from bare client factories (no connection
            spec: fakeredis, a caller's own pool), which a tracker cannot reach.
        """
        factory = self.connection
        if factory is None:
            return None
        spec, catch = factory.spec, self._catch
        track = partial(Tracker, sink, prefix, catch=catch, target=spec.target)
        if spec.mode == "cluster":
            nodes = ClusterNodes(spec.nodes, factory.node_client, catch)
            return track(nodes, refresh=CLUSTER_REFRESH)
        if spec.mode == "sentinel":
            master = SentinelMaster(factory.sentinel(), spec.master_name, factory.node_client)
            return track(master, refresh=SENTINEL_REFRESH)
        endpoint = parse_url(spec.url, "url")
        address = spec.target if endpoint.scheme == "unix" else f"{endpoint.host}:{endpoint.port}"
        server = {address: Node(address, factory.sync_client)}
        return track(lambda: server)

    def async_client(self) -> Any:
        """The asyncio client of the running event loop (created on first use there).

        :raises RuntimeError: no event loop is running.
        """
        return self._loop_client().client

    def _loop_client(self) -> _LoopClient:
        loop = asyncio.get_running_loop()
        bound = self._bound  # one read: another thread may rebind it to its own loop
        if bound is not None and bound[0] is loop:
            return bound[1]
        with self._lock:
            state = self._async.get(loop)
            if state is None:
                # A loop closed without aclose() left nothing we could still await.
                for stale in [other for other in self._async if other.is_closed()]:
                    del self._async[stale]
                    self._uninitialized.pop(stale, None)
                client = self._async_client_factory()
                state = self._async[loop] = _LoopClient(client, _Slots(self.max_connections))
                if self.cluster:
                    self._uninitialized[loop] = client
            self._bound = (loop, state)
        return state

    # --- the two shells: breaker, bounded queueing, driver errors mapped ---------------

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` under the breaker and the gate, driver errors mapped."""
        breaker = self.breaker
        if not breaker.healthy:
            breaker.before_call()
        gate = self._gate
        if not gate.enter(self.pool_timeout):
            raise self._pool_busy()
        try:
            result = fn(*args)
        except self._catch as exc:
            raise self._failed(exc) from exc
        finally:
            gate.leave()
        if not breaker.healthy:
            breaker.record_success()
        return result

    async def _acall(
        self, state: _LoopClient, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any
    ) -> Any:
        """Async :meth:`_call` on the running loop's client; a cluster client discovers
        the cluster first."""
        breaker = self.breaker
        if not breaker.healthy:
            breaker.before_call()
        slots = state.slots
        if slots.free:
            slots.free -= 1
        else:
            await self._wait_for_slot(slots)
        try:
            if self._uninitialized:
                await self._initialize_cluster()
            result = await fn(*args)
        except self._catch as exc:
            raise self._failed(exc) from exc
        finally:
            slots.release()
        if not breaker.healthy:
            breaker.record_success()
        return result

    def _command(self, name: str, *args: Any) -> Any:
        """One command on the sync client."""
        return self._call(getattr(self._sync or self.client(), name), *args)

    async def _acommand(self, name: str, *args: Any) -> Any:
        """One command on the running loop's client."""
        state = self._loop_client()
        return await self._acall(state, getattr(state.client, name), *args)

    def _steps(self, steps: Steps[Step, Any]) -> Any:
        """An operation of several steps on the sync client."""
        return self._call(run, steps, partial(_execute, self._sync or self.client()))

    async def _asteps(self, steps: Steps[Step, Any]) -> Any:
        """An operation of several steps on the running loop's client."""
        state = self._loop_client()
        return await self._acall(state, arun, steps, partial(_aexecute, state.client))

    async def _wait_for_slot(self, slots: _Slots) -> None:
        """Queue for a slot, at most ``pool_timeout`` seconds (not a store failure)."""
        try:
            async with asyncio.timeout(self.pool_timeout):
                await slots.wait()
        except TimeoutError:
            raise self._pool_busy() from None

    def _pool_busy(self) -> StoreTimeout:
        return StoreTimeout(
            f"{self.name} store: all {self.max_connections} connections stayed busy for "
            f"{self.pool_timeout:g}s; raise maxConnections in backend.cache.connection",
            store=self.name,
        )

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
        error = self._driver.translate(exc, self.name)
        if isinstance(error, StoreError):
            self.breaker.record_failure(error)
        else:
            self.breaker.record_success()  # the server answered
        return error

    # --- operations of several steps, written once --------------------------------------

    def _script(self, script: Script, key: str, *args: Any) -> Steps[Step, Any]:
        """Run ``script`` by SHA; send it whole after a ``NOSCRIPT``."""
        try:
            return (yield Command("evalsha", (script.sha, 1, key, *args)))
        except self._driver.no_script:
            return (yield Command("eval", (script.source, 1, key, *args)))

    def _set_many(self, items: Mapping[str, bytes], ttl: float | None) -> Steps[Step, None]:
        px = _px(ttl)
        commands = tuple(Command("set", (key, value, None, px)) for key, value in items.items())
        yield Pipeline(commands, self.cluster)

    def _delete_keys(self, keys: Sequence[Any]) -> Steps[Step, int]:
        if not self.cluster:
            return int((yield Command("execute_command", (self._delete_command, *keys))))
        # one command per key, grouped into one batch per node
        # (``execute_command``: an asyncio cluster pipeline's ``unlink`` is a coroutine)
        delete = self._delete_command
        replies = yield Pipeline(tuple(Command("execute_command", (delete, k)) for k in keys), True)
        return sum(replies)

    def _clear(self, selector: KeySelector) -> Steps[Step, int]:
        removed, size = 0, self.clear_batch_size
        keys = yield Scan(selector.glob(), size)
        while batch := (yield Take(keys, size)):
            mine = [k for k in batch if selector.matches(k.decode("utf-8", "surrogateescape"))]
            if mine:
                removed += yield from self._delete_keys(mine)
        return removed

    def _visit(self, selector: KeySelector, visit: Callable[[str], None]) -> Steps[Step, None]:
        """``visit`` every key of the selected scopes (``SCAN``, confirmed by the selector)."""
        size = self.clear_batch_size
        keys = yield Scan(selector.glob(), size)
        while batch := (yield Take(keys, size)):
            for raw in batch:
                key = raw.decode("utf-8", "surrogateescape")
                if selector.matches(key):
                    visit(key)

    # --- sync operations ----------------------------------------------------------------

    # get, set and incr are the hot path: they call _call with the client's method
    # directly (the frame and name lookup of _command less per call).

    def get(self, key: str) -> bytes | None:
        value: bytes | None = self._call((self._sync or self.client()).get, key)
        return value

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return _found(keys, self.get_values(keys))

    def get_values(self, keys: Sequence[str]) -> list[bytes | None]:
        """One ``MGET``: each key's value or ``None``, in order (the store is an
        :class:`~cachekit.stores.base.AlignedStore`)."""
        values: list[bytes | None] = self._command(self._mget, keys) if keys else []
        return values

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        px = None if ttl is None else _milliseconds(ttl)
        self._call((self._sync or self.client()).set, key, value, None, px)

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        if items:
            self._steps(self._set_many(items, ttl))

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        return bool(self._command("set", key, value, None, _px(ttl), True))

    def delete(self, key: str) -> bool:
        return int(self._command(self._delete, key)) > 0

    def delete_many(self, keys: Sequence[str]) -> int:
        unique = list(dict.fromkeys(keys))
        return int(self._steps(self._delete_keys(unique))) if unique else 0

    def delete_if_equals(self, key: str, value: bytes) -> bool:
        """Delete ``key`` if it holds ``value``, atomically on the server (a Lua script)."""
        return bool(self._steps(self._script(DELETE_IF_EQUALS, key, value)))

    def incr(self, key: str, delta: int, ttl: float | None) -> int:
        if ttl is None:
            return int(self._call((self._sync or self.client()).incrby, key, delta))
        return int(self._steps(self._script(INCR_WITH_TTL, key, delta, _milliseconds(ttl))))

    def expire(self, key: str, ttl: float | None) -> bool:
        if ttl is None:
            return bool(self._steps(self._script(PERSIST, key)))
        return bool(self._command("pexpire", key, _milliseconds(ttl)))

    def touch(self, key: str, ttl: float | None) -> bool:
        return self.expire(key, ttl)

    def clear(self, selector: KeySelector) -> int:
        return int(self._steps(self._clear(selector)))

    def gcra(self, key: str, now: int, interval: int, period: int, cost: int) -> tuple[bool, int]:
        """One :func:`cachekit.gcra.step` on the TAT at ``key``, atomic on the server (a Lua
        script), across every process sharing the store."""
        allowed, tat = self._steps(self._script(GCRA, key, now, interval, period, cost))
        return bool(allowed), int(tat)

    def ping(self) -> None:
        self._command("ping")

    # --- read-only facts for operators (the ``cachekit`` command) ------------------------

    def server_info(self) -> dict[str, dict[str, str]]:
        """What ``INFO`` says about the server(s), by address: ``server`` (``redis`` or
        ``valkey``), ``version``, and the server-wide ``hits`` / ``misses`` (keyspace hits
        and misses of every client, not only cachekit's). A cluster answers per node.

        :raises StoreError: the server could not be reached.
        """
        client = self.client()
        if self.cluster:  # every primary answers, by node name
            nodes = self._call(partial(client.info, target_nodes="primaries"))
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
        counts: dict[str, int] = {}

        def count(key: str) -> None:
            scope = selector.scope_of(key)
            counts[scope] = counts.get(scope, 0) + 1

        self._steps(self._visit(selector, count))
        return counts

    def scope_keys(self, selector: KeySelector) -> list[str]:
        """Every key of the selected scopes, by ``SCAN`` (never ``KEYS``): for operators'
        tools on small scopes (``cachekit stats`` reads the near caches' reports with it).

        :raises StoreError: the server could not be reached.
        """
        keys: list[str] = []
        self._steps(self._visit(selector, keys.append))
        return keys

    def close(self) -> None:
        """Close the sync client's connections (a later call opens new ones). Async clients
        are closed by :meth:`aclose`, awaited on their own event loop."""
        with self._lock:
            client, self._sync = self._sync, None
        if client is not None:
            close_sync_client(client)

    # --- async operations: the same descriptions, on the running loop's client ---------

    async def aget(self, key: str) -> bytes | None:
        value: bytes | None = await self._acommand("get", key)
        return value

    async def aget_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return _found(keys, await self.aget_values(keys))

    async def aget_values(self, keys: Sequence[str]) -> list[bytes | None]:
        """Async :meth:`get_values`."""
        values: list[bytes | None] = await self._acommand(self._mget, keys) if keys else []
        return values

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        await self._acommand("set", key, value, None, _px(ttl))

    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        if items:
            await self._asteps(self._set_many(items, ttl))

    async def aadd(self, key: str, value: bytes, ttl: float | None) -> bool:
        return bool(await self._acommand("set", key, value, None, _px(ttl), True))

    async def adelete(self, key: str) -> bool:
        return int(await self._acommand(self._delete, key)) > 0

    async def adelete_many(self, keys: Sequence[str]) -> int:
        unique = list(dict.fromkeys(keys))
        return int(await self._asteps(self._delete_keys(unique))) if unique else 0

    async def adelete_if_equals(self, key: str, value: bytes) -> bool:
        """Async :meth:`delete_if_equals`."""
        return bool(await self._asteps(self._script(DELETE_IF_EQUALS, key, value)))

    async def aincr(self, key: str, delta: int, ttl: float | None) -> int:
        if ttl is None:
            return int(await self._acommand("incrby", key, delta))
        return int(await self._asteps(self._script(INCR_WITH_TTL, key, delta, _milliseconds(ttl))))

    async def aexpire(self, key: str, ttl: float | None) -> bool:
        if ttl is None:
            return bool(await self._asteps(self._script(PERSIST, key)))
        return bool(await self._acommand("pexpire", key, _milliseconds(ttl)))

    async def atouch(self, key: str, ttl: float | None) -> bool:
        return await self.aexpire(key, ttl)

    async def aclear(self, selector: KeySelector) -> int:
        return int(await self._asteps(self._clear(selector)))

    async def agcra(
        self, key: str, now: int, interval: int, period: int, cost: int
    ) -> tuple[bool, int]:
        """Async :meth:`gcra`."""
        allowed, tat = await self._asteps(self._script(GCRA, key, now, interval, period, cost))
        return bool(allowed), int(tat)

    async def aping(self) -> None:
        await self._acommand("ping")

    async def aclose(self) -> None:
        """Close the running loop's async client and the sync client (later calls open new
        connections)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._async.pop(loop, None)
            self._uninitialized.pop(loop, None)
            if self._bound is not None and self._bound[0] is loop:
                self._bound = None
        if state is not None:
            await close_async_client(state.client)
        self.close()
