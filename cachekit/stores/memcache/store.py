"""The Memcache store: one or more memcached servers behind one cachekit store.

Connection
    ``backend.cache.connection`` names one server or several, each optionally with
    ``user:password@`` credentials (parsed by :mod:`cachekit.config.memcache`). Config is
    checked when the section is parsed; nothing connects until the first call.

Protocols and drivers
    Without credentials, or with ``memcache.auth: ascii`` (``memcached -Y``), the store
    speaks memcached's text protocol through pymemcache's public ``Client``
    (:mod:`~cachekit.stores.memcache.text`). With credentials and SASL (``memcached -S``:
    managed services, the Bitnami image) it speaks the binary protocol through a small
    client of our own that owns its sockets (:mod:`~cachekit.stores.memcache.binary`): the
    public client of python-binary-memcached reports a lost server as a miss. Either way
    each server has a pool of connections shared by every plugin of the process, and a
    connection that saw any error is closed, never reused. A rejected password raises
    :class:`~cachekit.errors.StoreUnavailable` saying that authentication failed.

Connection pools (:mod:`~cachekit.stores.memcache.pool`)
    Each server's pool opens at most ``memcache.maxConnections`` connections (50 by
    default, as the Redis store). A caller beyond that waits for a free one, up to the
    connect plus the operation timeout, then gets :class:`~cachekit.errors.StoreTimeout`
    naming ``maxConnections``; waiting is local contention, not an outage, so it never
    moves the server's breaker. A pooled connection the server closed (a restart) is
    replaced, not reported: ``get``, ``get_many``, ``gets``, ``set``, ``set_many``,
    ``delete``, ``delete_many``, ``touch`` and ``ping`` are sent once more on a new
    connection when a reused one turns out closed (sending them twice is harmless);
    ``incr``/``decr``, ``add`` and ``cas`` are never sent twice, but a reused connection is
    checked (``poll``) before they are sent and replaced if the server closed it.

Several servers
    Keys are spread by client-side consistent hashing (:mod:`~cachekit.stores.memcache.ring`).
    Each server has connect and operation timeouts (``timeouts.connect``,
    ``timeouts.operation``) and its own :class:`~cachekit.breaker.CircuitBreaker`: after
    ``circuitBreaker.failureThreshold`` failures in a row the server's keys fail fast with
    ``StoreUnavailable`` for ``memcache.deadRetry`` seconds, then one call probes it. Keys on
    the other servers are not affected. A batch call that spans a dead server raises after
    serving the live ones.

Clearing without ``flush_all``: generations
    ``clear`` replaces one scope generation (:mod:`~cachekit.stores.memcache.generations`):
    ``manager.clear(plugin=)``, ``manager.clear(tenant=)``, ``Cache.clear()`` and a
    namespace's ``clear()``. ``flush_all`` is never sent; ``clear`` returns ``None``
    (memcached cannot count). Generations live on every server beside the keys they tag (a
    server's keys depend on no other server), and are cached in the process for
    ``memcache.generationRefresh`` (1 s by default), so the hot path stays one round trip.
    **A clear is visible at once in the process that made it and within
    ``generationRefresh`` in every other process.** A clear that cannot reach every server
    raises ``StoreUnavailable`` after clearing the others. Other selectors (a namespace
    across scopes, everything) are not supported.

Keys
    A stored key reads ``{plugin}:{tenant}:{namespace}:{tag}:{key}``; keys memcached would
    refuse are hashed, keeping the scope readable (:mod:`~cachekit.stores.memcache.keys`).

Values and counters
    Integers of the counter range (±2**62, narrower than the other stores' signed 64 bits:
    see :mod:`~cachekit.stores.memcache.values` for why) are stored biased by ``2**62`` so
    memcached's unsigned ``incr`` counts below zero; an existing counter keeps its TTL;
    ``incr`` of anything else, or past the range, raises ``CacheValueError`` and leaves the
    value unchanged.
    ``incr`` of a missing key creates it with ``add`` (so the TTL is set once); a lost race
    (``add`` finds the key) goes back to ``incr``. Rate limits (:meth:`MemcacheStore.gcra`)
    read their timestamp with ``gets`` and write it with ``add`` or ``cas``, retrying on a
    conflict: atomic across processes.

TTLs
    memcached counts whole seconds: a fractional TTL is rounded *up* (0.2 s becomes 1 s,
    never 0, which would mean "forever"). A TTL over 30 days is sent as an absolute Unix
    time, so the client's clock must be roughly right. memcached's clock ticks once a
    second, so an entry may expire up to a second before its TTL, never after.
    ``expire(key, None)`` is ``touch key 0``.

Values over the size limit
    memcached refuses items over its ``-I`` limit (1 MiB by default), and a refused ``set``
    also deletes the old value. The store checks first: a value whose item (value, key and
    memcached's 64-byte header) exceeds ``memcache.maxValueSize`` raises
    ``CacheValueError`` naming both sizes, and nothing is sent.

Async
    The async twins run the sync client in a worker thread (``asyncio.to_thread``, from
    :class:`~cachekit.stores.base.BaseStore`), so they never block the event loop and share
    every line above with the sync methods. A native asyncio client would save the thread
    hop, but no maintained one speaks SASL, and a second client stack would duplicate the
    generations, biasing, key hashing and per-server failure handling for the async side.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from cachekit import gcra
from cachekit.breaker import CircuitBreaker
from cachekit.codec import format_int, parse_int
from cachekit.config.memcache import (
    DEFAULT_MAX_CONNECTIONS,
    MemcacheConnectionSpec,
    MemcacheServer,
    auth_mode,
    parse_memcache_connection,
    parse_servers,
)
from cachekit.errors import CacheValueError, StoreError, StoreUnavailable
from cachekit.keys import KeySelector, scope_of
from cachekit.stores.base import BaseStore
from cachekit.stores.forks import close_in_children
from cachekit.stores.memcache.binary import BinaryClient
from cachekit.stores.memcache.client import STORE_NAME, ServerClient
from cachekit.stores.memcache.generations import (
    Heads,
    new_generation,
    scope_generation_keys,
    selector_generation_key,
)
from cachekit.stores.memcache.keys import hashed, plain, unscoped_key
from cachekit.stores.memcache.pool import PoolBusy
from cachekit.stores.memcache.ring import Ring
from cachekit.stores.memcache.text import TextClient
from cachekit.stores.memcache.values import (
    BIAS,
    COUNTER_MAX,
    COUNTER_MIN,
    ENCODED_START,
    ITEM_OVERHEAD,
    RELATIVE_TTL_LIMIT,
    decode_value,
    encode_value,
    expiry,
)

if TYPE_CHECKING:
    from cachekit.config import CacheConfig

__all__ = ["MemcacheStore"]

T = TypeVar("T")

_INCR_ATTEMPTS: Final = 8
_WRAP: Final = 2**64  # memcached's incr counts modulo 2**64
_STORED_LIMIT: Final = 2 * BIAS  # stored counters stay below it (see values.py)
_CAS_ATTEMPTS: Final = 32
_CAS_PAUSE: Final = 0.0001  # seconds; doubled with each conflict, up to _CAS_PAUSE_MAX
_CAS_PAUSE_MAX: Final = 0.02
# an exptime over 30 days is an absolute Unix time: this one is long past (1970-01-31),
# so an item stored with it has already expired
_EXPIRED: Final = RELATIVE_TTL_LIMIT + 1
_MAX_CACHED_KEYS: Final = 16_384  # locations of recently used keys, dropped likewise


class _Node:
    """One server: its client, its breaker and its cached generation tags."""

    __slots__ = ("address", "breaker", "client", "heads")

    def __init__(
        self, client: ServerClient, address: str, breaker: CircuitBreaker, heads: Heads
    ) -> None:
        self.address = address
        self.client = client
        self.breaker = breaker
        self.heads = heads  # scope -> "scope + tag + :" while fresh

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` under the server's breaker. A full pool (:class:`PoolBusy`) is local
        contention, not evidence of an outage: it does not count as a failure."""
        breaker = self.breaker
        if not breaker.healthy:
            breaker.before_call()
        try:
            result = fn(*args)
        except PoolBusy:
            raise
        except StoreError as exc:
            breaker.record_failure(exc)
            raise
        if not breaker.healthy:
            breaker.record_success()
        return result


# full key -> (server, memcached key, valid until, number of clears when worked out)
_Location = tuple[_Node, str, float, int]


class MemcacheStore(BaseStore):
    """memcached as a cachekit store: one server or several (consistent hashing), plain,
    SASL or ASCII-authenticated. See the module documentation for how it maps cachekit's
    semantics onto memcached.

    :param servers: ``"host:port"``, ``"user:password@host:port"`` or a comma-separated
        string of them, or a sequence with one server per item (a string or a
        :class:`~cachekit.config.memcache.MemcacheServer`).
    :param auth: ``None`` (SASL when credentials are given), ``"sasl"`` or ``"ascii"``.
    :param max_value_size: largest item (value + key + 64 bytes), as memcached's ``-I``.
    :param generation_refresh: seconds a scope's generations are cached in this process:
        the most a clear made by another process can take to show here.
    :param dead_retry: seconds a failing server is skipped before one call probes it.
    :param connect_timeout: seconds to open a connection.
    :param timeout: seconds to wait for a reply.
    :param failure_threshold: failures in a row that make a server skipped.
    :param max_connections: connections per server at most; callers beyond that wait for
        one, up to ``connect_timeout + timeout``, then get ``StoreTimeout`` (which does not
        count towards the server's breaker).
    :param clock: monotonic clock for the generation cache and the breakers.
    :raises ConfigError: a malformed server, mixed credentials, or an unknown ``auth``.
    :raises ValueError: a size, duration or threshold that is not positive.
    :ivar connection: the checked :class:`~cachekit.config.memcache.MemcacheConnectionSpec`.
    """

    name = STORE_NAME
    counter_range = (COUNTER_MIN, COUNTER_MAX)  # ±2**62: see cachekit.stores.memcache.values

    def __init__(
        self,
        servers: str | Sequence[str | MemcacheServer],
        *,
        auth: str | None = None,
        max_value_size: int = 1024 * 1024,
        generation_refresh: float = 1.0,
        dead_retry: float = 5.0,
        connect_timeout: float = 0.25,
        timeout: float = 0.5,
        failure_threshold: int = 3,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parsed = parse_servers(servers if isinstance(servers, str) else list(servers), "servers")
        self.connection = connection = MemcacheConnectionSpec(
            parsed,
            auth_mode(auth, parsed, "servers", "auth"),
            max_value_size=max_value_size,
            generation_refresh=generation_refresh,
            dead_retry=dead_retry,
            connect_timeout=connect_timeout,
            timeout=timeout,
            failure_threshold=failure_threshold,
            max_connections=max_connections,
        )
        self.auth = connection.auth
        self.max_value_size = max_value_size
        self.generation_refresh = generation_refresh
        self._clock = clock
        nodes = []
        for server in parsed:
            client: ServerClient
            if self.auth == "sasl":
                client = BinaryClient(
                    server,
                    connect_timeout=connect_timeout,
                    timeout=timeout,
                    max_connections=max_connections,
                )
            else:
                client = TextClient(
                    server,
                    ascii_auth=self.auth == "ascii",
                    connect_timeout=connect_timeout,
                    timeout=timeout,
                    max_connections=max_connections,
                )
            breaker = CircuitBreaker(
                STORE_NAME, failure_threshold=failure_threshold, cooldown=dead_retry, clock=clock
            )
            heads = Heads(generation_refresh, clock)
            nodes.append(_Node(client, server.address, breaker, heads))
        self._nodes = tuple(nodes)
        self._ring = Ring([n.address for n in nodes]) if len(nodes) > 1 else None
        self._located: dict[str, _Location] = {}
        self._clears = 0  # bumped by every clear: cached locations from before are stale
        close_in_children(self)

    @classmethod
    def from_spec(
        cls, connection: MemcacheConnectionSpec, *, clock: Callable[[], float] = time.monotonic
    ) -> MemcacheStore:
        """Build from a parsed :class:`~cachekit.config.memcache.MemcacheConnectionSpec`
        without connecting."""
        return cls(
            connection.servers,
            auth=None if connection.auth == "none" else connection.auth,
            max_value_size=connection.max_value_size,
            generation_refresh=connection.generation_refresh,
            dead_retry=connection.dead_retry,
            connect_timeout=connection.connect_timeout,
            timeout=connection.timeout,
            failure_threshold=connection.failure_threshold,
            max_connections=connection.max_connections,
            clock=clock,
        )

    @classmethod
    def from_config(cls, config: CacheConfig) -> MemcacheStore:
        """Build from ``backend.cache`` (its connection spec: ``connection``, ``memcache``,
        ``timeouts``, ``circuitBreaker``, checked when the section was parsed) without
        connecting."""
        connection = config.connection_spec
        if not isinstance(connection, MemcacheConnectionSpec):  # a section of another store
            connection = parse_memcache_connection(config)
        return cls.from_spec(connection)

    def __repr__(self) -> str:
        down = [n.address for n in self._nodes if n.breaker.state != "closed"]
        return (
            f"MemcacheStore(servers={list(self.servers)}, auth={self.auth!r}, "
            f"generation_refresh={self.generation_refresh}, down={down})"
        )

    @property
    def servers(self) -> tuple[str, ...]:
        """The servers' ``host:port`` addresses, in config order."""
        return tuple(n.address for n in self._nodes)

    def locate(self, key: str) -> tuple[str, str]:
        """Where ``key`` (a full key) lives: the server's address and the memcached key
        (generation tag included; fetching the tag may take a round trip).

        :raises StoreError: the generation could not be read.
        """
        node, stored = self._locate(key)
        return node.address, stored

    # --- keys and generations -------------------------------------------------------------

    def _locate(self, key: str) -> tuple[_Node, str]:
        """The server and memcached key for a full key."""
        entry = self._located.get(key)
        if entry is None or entry[3] != self._clears or entry[2] <= self._clock():
            entry = self._relocate(key)
        return entry[0], entry[1]

    def _relocate(self, key: str) -> _Location:
        """Work out (and cache) where ``key`` lives. The hot methods check the cache inline:
        a cached location holds while its generations are fresh and no clear happened."""
        clears = self._clears
        ring = self._ring
        node = self._nodes[0] if ring is None else self._nodes[ring.index(key)]
        stored, valid_until = self._stored_key(node, key)
        located = self._located
        if len(located) >= _MAX_CACHED_KEYS:
            located.clear()
        entry = located[key] = (node, stored, valid_until, clears)
        return entry

    def _stored_key(self, node: _Node, key: str) -> tuple[str, float]:
        """The memcached key on ``node`` and until when its generation tag is trusted."""
        try:
            scope = scope_of(key)
        except ValueError:
            return unscoped_key(key), math.inf
        entry = node.heads.lookup(scope)
        if entry is None:
            entry = self._refresh(node, scope)
        head = entry[0]
        stored = head + key[len(scope) :]
        return (stored if plain(stored) else hashed(head[:-1], stored)), entry[1]

    def _refresh(self, node: _Node, scope: str) -> tuple[str, float]:
        """Read (or create) the scope's generations on ``node``; cache the key head."""
        epoch = node.heads.epoch
        names = scope_generation_keys(scope)
        found = node.call(node.client.get_many, names)
        values = [found.get(name) or self._create_generation(node, name) for name in names]
        return node.heads.keep(scope, values, epoch)

    def _create_generation(self, node: _Node, name: str) -> bytes:
        for _ in range(_INCR_ATTEMPTS):
            value = new_generation()
            if node.call(node.client.add, name, value, 0):
                return value
            existing = node.call(node.client.get, name)  # another process won the add
            if existing is not None:
                return existing
        raise StoreUnavailable(
            f"memcache server {node.address} keeps evicting generation {name!r}", store=self.name
        )

    def _encoded(self, key: str, stored_key: str, value: bytes) -> bytes:
        data = encode_value(value)
        size = len(data) + len(stored_key) + ITEM_OVERHEAD
        if size > self.max_value_size:
            raise CacheValueError(
                f"value for {key!r} takes {size} bytes as a memcached item (value {len(value)}, "
                f"key and header {size - len(data)}), over the limit of {self.max_value_size} "
                "bytes (backend.cache.memcache.maxValueSize, memcached -I); cache less"
            )
        return data

    def _group(self, keys: Sequence[str]) -> dict[_Node, dict[str, str]]:
        """Stored key -> full key, by server (``_locate``'s cache check inlined: batches
        are where its cost adds up)."""
        groups: dict[_Node, dict[str, str]] = {}
        located, clears, now = self._located, self._clears, self._clock()
        for key in keys:
            entry = located.get(key)
            if entry is None or entry[3] != clears or entry[2] <= now:
                entry = self._relocate(key)
            node = entry[0]
            batch = groups.get(node)
            if batch is None:
                batch = groups[node] = {}
            batch[entry[1]] = key
        return groups

    # --- reads ----------------------------------------------------------------------------

    # The single-key methods inline _locate's cache check: it is most of their own cost.

    def get(self, key: str) -> bytes | None:
        entry = self._located.get(key)
        if entry is None or entry[3] != self._clears or entry[2] <= self._clock():
            entry = self._relocate(key)
        node = entry[0]
        raw = node.call(node.client.get, entry[1])
        if raw and raw[0] in ENCODED_START:
            return decode_value(raw)
        return raw

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        errors: list[StoreError] = []
        for node, batch in self._group(keys).items():
            try:
                values = node.call(node.client.get_many, list(batch))
            except StoreError as exc:
                errors.append(exc)
                continue
            for stored, raw in values.items():
                found[batch[stored]] = decode_value(raw) if raw and raw[0] in ENCODED_START else raw
        self._raise_first(errors, "get_many")
        return found

    # --- writes ---------------------------------------------------------------------------

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        entry = self._located.get(key)
        if entry is None or entry[3] != self._clears or entry[2] <= self._clock():
            entry = self._relocate(key)
        node, stored = entry[0], entry[1]
        node.call(node.client.set, stored, self._encoded(key, stored, value), expiry(ttl))

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        batches: dict[_Node, dict[str, bytes]] = {}
        for key, value in items.items():  # everything is checked before anything is sent
            node, stored = self._locate(key)
            batches.setdefault(node, {})[stored] = self._encoded(key, stored, value)
        exptime = expiry(ttl)
        errors: list[StoreError] = []
        for node, batch in batches.items():
            try:
                failed = node.call(node.client.set_many, batch, exptime)
            except StoreError as exc:
                errors.append(exc)
                continue
            if failed:
                errors.append(
                    StoreUnavailable(
                        f"memcache server {node.address} did not store {len(failed)} keys",
                        store=self.name,
                    )
                )
        self._raise_first(errors, "set_many")

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        node, stored = self._locate(key)
        data = self._encoded(key, stored, value)
        return node.call(node.client.add, stored, data, expiry(ttl))

    def delete(self, key: str) -> bool:
        node, stored = self._locate(key)
        return node.call(node.client.delete, stored)

    def delete_if_equals(self, key: str, value: bytes) -> bool:
        """Delete ``key`` if it holds ``value``, atomically: ``gets`` the value and its cas
        token, then ``cas`` an item that is already expired (an ``exptime`` that is an
        absolute Unix time in the past), so a key changed or taken by another writer since
        the ``gets`` is left alone. memcached has no compare-and-delete in its classic
        commands; the expired item reads as a miss and ``add`` overwrites it, as after a
        ``delete``."""
        node, stored = self._locate(key)
        call, client = node.call, node.client
        raw, token = call(client.gets, stored)
        if raw is None or (decode_value(raw) if raw and raw[0] in ENCODED_START else raw) != value:
            return False
        return bool(call(client.cas, stored, raw, token, _EXPIRED))

    def delete_many(self, keys: Sequence[str]) -> int:
        deleted = 0
        errors: list[StoreError] = []
        for node, batch in self._group(list(dict.fromkeys(keys))).items():
            try:
                deleted += node.call(node.client.delete_many, list(batch))
            except StoreError as exc:
                errors.append(exc)
        self._raise_first(errors, "delete_many")
        return deleted

    def incr(self, key: str, delta: int, ttl: float | None) -> int:
        if not COUNTER_MIN <= delta <= COUNTER_MAX:
            raise CacheValueError(
                f"cannot increment {key!r} by {delta}: memcached counters hold "
                f"{COUNTER_MIN}..{COUNTER_MAX}"
            )
        entry = self._located.get(key)
        if entry is None or entry[3] != self._clears or entry[2] <= self._clock():
            entry = self._relocate(key)
        node, stored = entry[0], entry[1]
        call, client = node.call, node.client
        # Always memcached incr, by delta modulo 2**64 (decr stops at 0 and could not tell
        # an underflow). Stored counters are below 2**63 and |delta| is below 2**62, so the
        # answer is at or above 2**63 exactly when the counter left its range (past the
        # top, or below the bottom through the wrap); the opposite incr undoes it (value
        # unchanged). memcached has no conditional incr, so when increments of one key
        # race across the edge, one landing on another's not yet undone excursion cannot
        # tell (a lone counter at the edge, the case that happens, is exact).
        step = delta % _WRAP
        try:
            for _ in range(_INCR_ATTEMPTS):
                current = call(client.incr, stored, step)
                if current is not None:
                    if current < _STORED_LIMIT:
                        return current - BIAS
                    call(client.incr, stored, (_WRAP - step) % _WRAP)
                    break
                if call(client.add, stored, b"%d" % (delta + BIAS), expiry(ttl)):
                    return delta
                # lost a race: the key was created between our incr and add; incr again
        except CacheValueError:
            raise CacheValueError(
                f"cannot increment {key!r}: it holds a value that is not a counter (memcached "
                f"counters are integers from {COUNTER_MIN} to {COUNTER_MAX})"
            ) from None
        else:
            if current is not None:  # it wrapped, and was wound back
                raise CacheValueError(
                    f"cannot increment {key!r} by {delta}: the result is outside the range "
                    f"memcached counters hold ({COUNTER_MIN}..{COUNTER_MAX}); reset the counter"
                )
        raise StoreUnavailable(
            f"could not increment {key!r}: it kept appearing and disappearing", store=self.name
        )

    def touch(self, key: str, ttl: float | None) -> bool:
        node, stored = self._locate(key)
        return node.call(node.client.touch, stored, expiry(ttl))

    def gcra(self, key: str, now: int, interval: int, period: int, cost: int) -> tuple[bool, int]:
        """One :func:`cachekit.gcra.step`, atomic across processes: ``gets`` the TAT, then
        ``add`` (none yet) or ``cas`` the new one, retrying when another writer got there
        first — after a short random pause that doubles with each conflict, so writers that
        collide do not collide again in lockstep (and a loaded machine, where a writer can
        be descheduled between its ``gets`` and its ``cas``, does not exhaust the retries).

        :raises StoreUnavailable: the key stayed contended through every retry.
        """
        node, stored = self._locate(key)
        call, client = node.call, node.client
        for attempt in range(_CAS_ATTEMPTS):
            if attempt:
                time.sleep(random.random() * min(_CAS_PAUSE_MAX, _CAS_PAUSE * 2**attempt))
            raw, token = call(client.gets, stored)
            tat = None if raw is None else parse_int(decode_value(raw))
            allowed, new_tat = gcra.step(tat, now, interval, period, cost)
            if not allowed:
                return allowed, new_tat
            # a TAT at or before now (a refund: cost < 0) means no debt: keep it briefly
            ttl = max(new_tat - now, 0) / 1e6
            data, exptime = encode_value(format_int(new_tat)), expiry(ttl)
            if raw is None:
                done = call(client.add, stored, data, exptime)
            else:
                done = call(client.cas, stored, data, token, exptime)
            if done:
                return allowed, new_tat
        raise StoreUnavailable(
            f"rate limit {key!r} stayed contended through {_CAS_ATTEMPTS} compare-and-set attempts",
            store=self.name,
        )

    def clear(self, selector: KeySelector) -> None:
        """Start a new generation of the selected scopes on every server (see the module
        documentation); returns ``None``.

        :raises StoreUnavailable: a server could not be reached (the others are cleared).
        :raises NotImplementedError: a selector other than plugin, tenant, (plugin, tenant)
            or (plugin, tenant, namespace).
        """
        if selector.prefix != self.key_prefix:
            return
        name = selector_generation_key(selector)
        errors: list[StoreError] = []
        for node in self._nodes:
            try:
                node.call(node.client.set, name, new_generation(), 0)
            except StoreError as exc:
                errors.append(exc)
            node.heads.cleared(selector)  # after the write: a read of the old value is not kept
        self._clears += 1
        self._raise_first(errors, "clear")

    # --- housekeeping ---------------------------------------------------------------------

    def ping(self) -> None:
        """Raise ``StoreError`` unless every server answers."""
        errors: list[StoreError] = []
        for node in self._nodes:
            try:
                node.call(node.client.ping)
            except StoreError as exc:
                errors.append(exc)
        self._raise_first(errors, "ping")

    def server_info(self) -> dict[str, dict[str, str]]:
        """What ``stats`` says about each server, by address: ``server`` (``memcached``),
        ``version``, the server-wide ``hits`` / ``misses`` (``get_hits`` / ``get_misses`` of
        every client) and ``items`` (``curr_items``). memcached cannot count per scope.

        :raises StoreError: a server could not be reached (after asking the others).
        """
        info: dict[str, dict[str, str]] = {}
        errors: list[StoreError] = []
        for node in self._nodes:
            try:
                stats = node.call(node.client.stats)
            except StoreError as exc:
                errors.append(exc)
                continue
            info[node.address] = {
                "server": "memcached",
                "version": stats.get("version", "unknown"),
                "hits": stats.get("get_hits", "0"),
                "misses": stats.get("get_misses", "0"),
                "items": stats.get("curr_items", "0"),
            }
        self._raise_first(errors, "stats")
        return info

    def close(self) -> None:
        for node in self._nodes:
            node.client.close()

    def _raise_first(self, errors: list[StoreError], operation: str) -> None:
        if not errors:
            return
        if len(self._nodes) == 1:
            raise errors[0]
        error = errors[0]
        raise type(error)(
            f"{operation} failed on {len(errors)} of {len(self._nodes)} memcache servers "
            f"(the others answered): {error}",
            store=self.name,
        ) from error
