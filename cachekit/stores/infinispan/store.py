"""The Infinispan store: Backstage's ``store: infinispan``, over Infinispan's REST API v2.

Protocol and client
    The server serves REST on the same single port as Hot Rod (11222). The only Hot Rod
    client on PyPI is a 2017 beta, so the store speaks REST through ``httpx``: one sync
    client shared by every thread and one async client per event loop, each with a
    keep-alive pool of at most ``infinispan.maxConnections`` connections per server,
    ``timeouts.connect`` / ``timeouts.operation``, TLS (``ssl``: trusted CAs, client
    certificate) and the authentication of ``infinispan.authentication`` (Basic, Digest,
    a bearer token or the TLS client certificate: see :mod:`cachekit.config.infinispan`).
    Config is checked when the section is parsed; nothing connects until the first call.
    Hot Rod-only options are logged once, as ignored, when the store is built.

Servers, backup clusters, failures (:mod:`~cachekit.stores.infinispan.client`)
    Requests go to one server at a time; an unreachable one is skipped for the next of the
    primary cluster, then of each backup cluster (``infinispan.clusters``, in order). One
    :class:`~cachekit.breaker.CircuitBreaker` guards the store (``circuitBreaker``).
    Failures are :class:`~cachekit.errors.StoreUnavailable` (unreachable, ``5xx``, and
    ``401``/``403``, which says authentication failed) or
    :class:`~cachekit.errors.StoreTimeout`; a value over the server's REST
    ``max-content-length`` (``413``) is :class:`~cachekit.errors.CacheValueError`.

Operations (:mod:`~cachekit.stores.infinispan.rest`)
    ``get`` is one ``GET``, ``set`` one ``PUT``, ``delete`` one ``DELETE``; ``get_many``,
    ``set_many`` and ``delete_many`` send their requests concurrently on the async client
    and one after the other (on kept-alive connections) on the sync one. TTLs are whole
    seconds on the server: a fractional TTL is rounded *up*.

Counters and other read-modify-writes (:mod:`~cachekit.stores.infinispan.locks`)
    ``incr``, ``add``, ``expire``, ``touch``, ``delete_if_equals`` and rate limits
    (``gcra``) take a short lock on a strong counter (``compareAndSwap``), then read and
    write the entry: exact under concurrent writers in any number of processes, because
    neither an ETag on ``PUT`` (not enforced by the server) nor ``POST`` (not atomic on the
    server) can be. An existing counter keeps its expiry, to the second (the server reports
    it in whole seconds; the host's clock is used to turn it back into a TTL).

Clearing without a keyspace scan: generations
    As on memcached (:mod:`cachekit.stores.generations`): every key embeds a tag of its
    scope's generations; ``clear`` (``Cache.clear()``, a namespace's, ``manager.clear(
    plugin=/tenant=)``) writes a new generation, and the old entries, unaddressable, leave
    by their TTL or the cache's eviction. ``clear`` returns ``None`` (it cannot count). A
    clear is visible at once in the process that made it and within
    ``infinispan.generationRefresh`` (1 s) in every other. A missing generation is created
    under its lock (below), so processes racing to create one agree on it.

Async
    The async twins run on the running loop's ``httpx.AsyncClient`` (await
    :meth:`InfinispanStore.aclose` on a loop before closing it, as
    :meth:`CacheManager.aclose <cachekit.CacheManager.aclose>` does); every operation is
    written once as steps (:mod:`cachekit.steps`) that both families run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, TypeVar

from cachekit import gcra
from cachekit.breaker import CircuitBreaker
from cachekit.codec import format_int, parse_int
from cachekit.config.infinispan import InfinispanConnectionSpec, parse_infinispan_connection
from cachekit.errors import CacheValueError, StoreUnavailable
from cachekit.keys import KeySelector, scope_of
from cachekit.steps import Steps
from cachekit.stores import generations
from cachekit.stores.base import BaseStore
from cachekit.stores.forks import close_in_children
from cachekit.stores.generations import Heads, new_generation
from cachekit.stores.infinispan import rest
from cachekit.stores.infinispan.client import STORE_NAME, Step, Transport
from cachekit.stores.infinispan.locks import Locks
from cachekit.stores.infinispan.rest import Batch, Free, Hold, Reply

if TYPE_CHECKING:
    from cachekit.config import CacheConfig

__all__ = ["InfinispanStore"]

log = logging.getLogger("cachekit")

T = TypeVar("T")

DEFAULT_STRIPES: Final = 64
_REFRESH_STRIPES: Final = tuple(f"generations-{i}" for i in range(64))  # local locks
_UNSCOPED_PREFIX: Final = "%u:"


class InfinispanStore(BaseStore):
    """Infinispan (REST API v2) as a cachekit store. See the module documentation for how
    it maps cachekit's semantics onto the server.

    :param spec: the parsed connection (:func:`~cachekit.config.infinispan.
        parse_infinispan_connection`; built from a ``backend.cache`` section by
        :meth:`from_config`).
    :param breaker: the circuit breaker (default: ``spec``'s threshold and cooldown).
    :param stripes: how many lock counters the cache's read-modify-writes share.
    :param clock: monotonic clock for the generation cache and the breaker.
    :param lock_clock: monotonic clock the locks time their lease with (real time unless a
        test says otherwise: a lock must be able to expire while nobody moves a fake clock).
    :ivar connection: ``spec``.
    """

    name = STORE_NAME

    def __init__(
        self,
        spec: InfinispanConnectionSpec,
        *,
        breaker: CircuitBreaker | None = None,
        stripes: int = DEFAULT_STRIPES,
        clock: Callable[[], float] = time.monotonic,
        lock_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connection = spec
        if breaker is None:
            breaker = CircuitBreaker(
                STORE_NAME,
                failure_threshold=spec.failure_threshold,
                cooldown=spec.cooldown,
                clock=clock,
            )
        self._transport = Transport(spec, breaker)
        self._cache = rest.cache_path(spec.cache_name)
        self._heads = Heads(spec.generation_refresh, clock)
        lease = 4 * (spec.connect_timeout + spec.timeout) * len(spec.endpoints)
        self._locks = Locks(self._cache, stripes, lease, lock_clock)
        for option in spec.ignored:
            log.warning("cachekit: %s is a Hot Rod option; the REST client ignores it", option)
        close_in_children(self)

    @classmethod
    def from_config(cls, config: CacheConfig) -> InfinispanStore:
        """Build from ``backend.cache`` (its ``infinispan`` section, ``connection``,
        ``timeouts``, ``circuitBreaker``, checked when the section was parsed) without
        connecting."""
        spec = config.connection_spec
        if not isinstance(spec, InfinispanConnectionSpec):  # a section of another store
            spec = parse_infinispan_connection(config)
        return cls(spec)

    def __repr__(self) -> str:
        transport = self._transport
        active = transport.endpoints[transport.active].address
        return (
            f"InfinispanStore({self.connection.target}, active={active}, "
            f"breaker={self.breaker.state!r})"
        )

    @property
    def breaker(self) -> CircuitBreaker:
        """The store's circuit breaker."""
        return self._transport.breaker

    @property
    def active_server(self) -> str:
        """``host:port`` of the server requests go to now."""
        transport = self._transport
        return transport.endpoints[transport.active].address

    # --- keys and generations -------------------------------------------------------------

    def _stored(self, key: str) -> Steps[Step, str]:
        """The key the server stores a full key under (generation tag included)."""
        try:
            scope = scope_of(key)
        except ValueError:
            return rest.shape_key(_UNSCOPED_PREFIX + key)
        entry = self._heads.lookup(scope)
        head = entry[0] if entry is not None else (yield from self._refresh(scope))
        return rest.shape_key(head + key[len(scope) :])

    def _stored_many(self, keys: Sequence[str]) -> Steps[Step, list[str]]:
        stored = []
        for key in keys:
            stored.append((yield from self._stored(key)))
        return stored

    def _refresh(self, scope: str) -> Steps[Step, str]:
        """Read (or create) the scope's generations; cache the key head. Callers of this
        process that need the same scope meanwhile wait for the first one's answer (a local
        lock, one of :data:`_REFRESH_STRIPES`) instead of asking the server again."""
        local = _REFRESH_STRIPES[hash(scope) % len(_REFRESH_STRIPES)]
        yield Hold(local, self._locks.lease)
        try:
            entry = self._heads.lookup(scope)
            if entry is not None:
                return entry[0]
            epoch = self._heads.epoch
            names = generations.scope_generation_keys(scope, rest.shape_key)
            replies = yield Batch(tuple(rest.get(self._cache, name) for name in names))
            values = []
            for name, reply in zip(names, replies, strict=True):
                if reply.status == 200:
                    values.append(reply.body)
                else:
                    values.append((yield from self._create_generation(name)))
            return self._heads.keep(scope, values, epoch)[0]
        finally:
            yield Free(local)

    def _create_generation(self, name: str) -> Steps[Step, bytes]:
        """Read, else write, a generation under its lock: processes racing to create one
        agree on its value (``POST`` would not make them: it is not atomic on the server)."""

        def body() -> Steps[Step, bytes]:
            reply = yield rest.get(self._cache, name)
            if reply.status == 200:
                return bytes(reply.body)
            value = new_generation()
            self._check_written((yield rest.write(self._cache, name, value, None)), name)
            return value

        return (yield from self._locks.locked(name, body()))

    def _check_written(self, reply: Reply, key: str) -> None:
        if reply.status in (200, 201, 204):
            return
        if reply.status == 413:
            raise CacheValueError(
                f"infinispan refused the value for {key!r} as too large (HTTP 413): it is over "
                "the server's REST max-content-length; cache less"
            )
        raise self._unexpected(reply, f"writing {key!r}")

    def _unexpected(self, reply: Reply, what: str) -> StoreUnavailable:
        if reply.status == 404:
            return StoreUnavailable(
                f"infinispan has no cache {self.connection.cache_name!r} ({what} answered "
                "404): create it on the server, or set backend.cache.infinispan.cacheName",
                store=STORE_NAME,
            )
        text = reply.body[:200].decode("utf-8", "replace")
        return StoreUnavailable(
            f"infinispan answered HTTP {reply.status} {what}: {text}", store=STORE_NAME
        )

    def _value(self, reply: Reply, key: str) -> bytes | None:
        if reply.status == 200:
            return reply.body
        if reply.status == 404:
            return None
        raise self._unexpected(reply, f"reading {key!r}")

    # --- operations, written once as steps ------------------------------------------------

    def _get(self, key: str) -> Steps[Step, bytes | None]:
        stored = yield from self._stored(key)
        return self._value((yield rest.get(self._cache, stored)), key)

    def _get_many(self, keys: Sequence[str]) -> Steps[Step, dict[str, bytes]]:
        unique = list(dict.fromkeys(keys))
        stored = yield from self._stored_many(unique)
        replies = yield Batch(tuple(rest.get(self._cache, s) for s in stored))
        found = {}
        for key, reply in zip(unique, replies, strict=True):
            value = self._value(reply, key)
            if value is not None:
                found[key] = value
        return found

    def _set(self, key: str, value: bytes, ttl: float | None) -> Steps[Step, None]:
        stored = yield from self._stored(key)
        self._check_written((yield rest.write(self._cache, stored, value, ttl)), key)

    def _set_many(self, items: Mapping[str, bytes], ttl: float | None) -> Steps[Step, None]:
        stored = yield from self._stored_many(list(items))
        writes = tuple(
            rest.write(self._cache, s, value, ttl)
            for s, value in zip(stored, items.values(), strict=True)
        )
        replies = yield Batch(writes)
        for key, reply in zip(items, replies, strict=True):
            self._check_written(reply, key)

    def _delete(self, key: str) -> Steps[Step, bool]:
        stored = yield from self._stored(key)
        return self._deleted((yield rest.delete(self._cache, stored)), key)

    def _deleted(self, reply: Reply, key: str) -> bool:
        if reply.status in (200, 204):
            return True
        if reply.status in (404, 412):
            return False
        raise self._unexpected(reply, f"deleting {key!r}")

    def _delete_many(self, keys: Sequence[str]) -> Steps[Step, int]:
        unique = list(dict.fromkeys(keys))
        stored = yield from self._stored_many(unique)
        replies = yield Batch(tuple(rest.delete(self._cache, s) for s in stored))
        return sum(self._deleted(r, k) for k, r in zip(unique, replies, strict=True))

    def _locked(self, key: str, body: Callable[[str], Steps[Step, T]]) -> Steps[Step, T]:
        """``body(stored key)`` holding ``key``'s lock."""
        stored = yield from self._stored(key)
        return (yield from self._locks.locked(stored, body(stored)))

    def _add(self, key: str, value: bytes, ttl: float | None) -> Steps[Step, bool]:
        def body(stored: str) -> Steps[Step, bool]:
            reply = yield rest.write(self._cache, stored, value, ttl, create=True)
            if reply.status == 409:
                return False
            self._check_written(reply, key)
            return True

        return (yield from self._locked(key, body))

    def _delete_if_equals(self, key: str, value: bytes) -> Steps[Step, bool]:
        def body(stored: str) -> Steps[Step, bool]:
            reply = yield rest.get(self._cache, stored)
            if self._value(reply, key) != value:
                return False
            etag = reply.headers.get("ETag")
            return self._deleted((yield rest.delete(self._cache, stored, etag)), key)

        return (yield from self._locked(key, body))

    def _incr(self, key: str, delta: int, ttl: float | None) -> Steps[Step, int]:
        low, high = self.counter_range

        def body(stored: str) -> Steps[Step, int]:
            reply = yield rest.get(self._cache, stored)
            raw = self._value(reply, key)
            if raw is None:
                value, keep = delta, ttl
            else:
                current = parse_int(raw)
                if current is None:
                    raise CacheValueError(
                        f"cannot increment {key!r}: it holds a value that is not an integer"
                    )
                value, keep = current + delta, rest.expires_in(reply)
                if keep is not None:
                    keep = max(keep, 0.001)  # due this second: keep it for the last one
            if not low <= value <= high:
                raise CacheValueError(
                    f"cannot increment {key!r} by {delta}: the result is outside the signed "
                    "64-bit range counters hold on every store; reset the counter (set it)"
                )
            self._check_written(
                (yield rest.write(self._cache, stored, format_int(value), keep)), key
            )
            return value

        return (yield from self._locked(key, body))

    def _touch(self, key: str, ttl: float | None) -> Steps[Step, bool]:
        def body(stored: str) -> Steps[Step, bool]:
            raw = self._value((yield rest.get(self._cache, stored)), key)
            if raw is None:
                return False
            self._check_written((yield rest.write(self._cache, stored, raw, ttl)), key)
            return True

        return (yield from self._locked(key, body))

    def _gcra(
        self, key: str, now: int, interval: int, period: int, cost: int
    ) -> Steps[Step, tuple[bool, int]]:
        def body(stored: str) -> Steps[Step, tuple[bool, int]]:
            raw = self._value((yield rest.get(self._cache, stored)), key)
            allowed, tat = gcra.step(
                None if raw is None else parse_int(raw), now, interval, period, cost
            )
            if allowed:
                ttl = max(tat - now, 0) / 1e6  # rounded up to a second
                reply = yield rest.write(self._cache, stored, format_int(tat), ttl)
                self._check_written(reply, key)
            return allowed, tat

        return (yield from self._locked(key, body))

    def _clear(self, selector: KeySelector) -> Steps[Step, None]:
        if selector.prefix != self.key_prefix:
            return
        name = generations.selector_generation_key(selector, STORE_NAME, rest.shape_key)
        try:
            reply = yield rest.write(self._cache, name, new_generation(), None)
            self._check_written(reply, name)
        finally:
            self._heads.cleared(selector)  # after the write: a read of the old value is not kept

    def _ping(self) -> Steps[Step, None]:
        reply = yield rest.cache_exists(self._cache)
        if reply.status not in (200, 204):
            raise self._unexpected(reply, "checking the cache")

    # --- the two families -----------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        return self._transport.run(self._get(key))

    async def aget(self, key: str) -> bytes | None:
        return await self._transport.arun(self._get(key))

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return self._transport.run(self._get_many(keys))

    async def aget_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return await self._transport.arun(self._get_many(keys))

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self._transport.run(self._set(key, value, ttl))

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        await self._transport.arun(self._set(key, value, ttl))

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        self._transport.run(self._set_many(items, ttl))

    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        await self._transport.arun(self._set_many(items, ttl))

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        return self._transport.run(self._add(key, value, ttl))

    async def aadd(self, key: str, value: bytes, ttl: float | None) -> bool:
        return await self._transport.arun(self._add(key, value, ttl))

    def delete(self, key: str) -> bool:
        return self._transport.run(self._delete(key))

    async def adelete(self, key: str) -> bool:
        return await self._transport.arun(self._delete(key))

    def delete_many(self, keys: Sequence[str]) -> int:
        return self._transport.run(self._delete_many(keys))

    async def adelete_many(self, keys: Sequence[str]) -> int:
        return await self._transport.arun(self._delete_many(keys))

    def delete_if_equals(self, key: str, value: bytes) -> bool:
        """Delete ``key`` if it holds ``value``, under the key's lock (atomic)."""
        return self._transport.run(self._delete_if_equals(key, value))

    async def adelete_if_equals(self, key: str, value: bytes) -> bool:
        return await self._transport.arun(self._delete_if_equals(key, value))

    def incr(self, key: str, delta: int, ttl: float | None) -> int:
        return self._transport.run(self._incr(key, delta, ttl))

    async def aincr(self, key: str, delta: int, ttl: float | None) -> int:
        return await self._transport.arun(self._incr(key, delta, ttl))

    def expire(self, key: str, ttl: float | None) -> bool:
        return self._transport.run(self._touch(key, ttl))

    async def aexpire(self, key: str, ttl: float | None) -> bool:
        return await self._transport.arun(self._touch(key, ttl))

    def touch(self, key: str, ttl: float | None) -> bool:
        return self._transport.run(self._touch(key, ttl))

    async def atouch(self, key: str, ttl: float | None) -> bool:
        return await self._transport.arun(self._touch(key, ttl))

    def gcra(self, key: str, now: int, interval: int, period: int, cost: int) -> tuple[bool, int]:
        """One :func:`cachekit.gcra.step` under the key's lock: atomic across processes."""
        return self._transport.run(self._gcra(key, now, interval, period, cost))

    async def agcra(
        self, key: str, now: int, interval: int, period: int, cost: int
    ) -> tuple[bool, int]:
        return await self._transport.arun(self._gcra(key, now, interval, period, cost))

    def clear(self, selector: KeySelector) -> None:
        """Start a new generation of the selected scopes (see the module documentation);
        returns ``None``.

        :raises NotImplementedError: a selector other than plugin, tenant, (plugin, tenant)
            or (plugin, tenant, namespace).
        """
        self._transport.run(self._clear(selector))

    async def aclear(self, selector: KeySelector) -> None:
        await self._transport.arun(self._clear(selector))

    def ping(self) -> None:
        """Raise ``StoreError`` unless a server answers and has the cache."""
        self._transport.run(self._ping())

    async def aping(self) -> None:
        await self._transport.arun(self._ping())

    def close(self) -> None:
        self._transport.close()

    async def aclose(self) -> None:
        await self._transport.aclose()
