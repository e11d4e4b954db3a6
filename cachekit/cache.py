"""The scoped cache API plugins use: :class:`Cache`.

A :class:`Cache` is bound to one (plugin, tenant) and optionally one namespace; every key
it touches lives under that scope's prefix, so it cannot read or clear another scope's
data. One class carries both families: ``get``/``aget``, ``set``/``aset``, ... — a host
runs sync endpoints (in a thread pool) and async ones side by side under the same scope.

Each sync/async pair shares its argument checks, key building, encoding and TTL rules
(the ``_`` helpers below); the two differ only in the store call.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from time import monotonic, perf_counter
from typing import TYPE_CHECKING, Any, TypeVar, overload

from cachekit.codec import MISS, Codec, DecodeError
from cachekit.config.schema import DEFAULT_BINDING
from cachekit.durations import TTL, store_ttl
from cachekit.errors import CacheKeyError, CacheValueError, StoreError
from cachekit.keys import ANY, KeySelector, KeySpace, check_key, unencodable_key
from cachekit.metrics import Metrics
from cachekit.policy import Policy, PolicyStore
from cachekit.shapes import Shape, as_shape, untyped
from cachekit.stores.near import NearStore, NearView

if TYPE_CHECKING:
    from cachekit.stores.base import Store

__all__ = ["Cache"]

log = logging.getLogger("cachekit")

T = TypeVar("T")
D = TypeVar("D")
R = TypeVar("R")


class UnreadableLog:
    """Logs an unreadable value (corruption, another writer) once per key and ``period``
    seconds: a hot key holding bad bytes is read on every request and would otherwise
    flood the log. Remembers at most ``max_keys`` keys (the oldest go first)."""

    __slots__ = ("_lock", "_logged", "clock", "max_keys", "period")

    def __init__(
        self, period: float = 60.0, max_keys: int = 4096, clock: Callable[[], float] = monotonic
    ) -> None:
        self.period, self.max_keys, self.clock = period, max_keys, clock
        self._logged: dict[str, float] = {}
        self._lock = threading.Lock()  # only unreadable reads take it: a rare path

    def warn(self, full_key: str, exc: DecodeError) -> None:
        """Log that ``full_key`` was read as a miss, unless it was logged this period."""
        with self._lock:  # threads reading one bad key at once: still one line
            now, logged = self.clock(), self._logged
            last = logged.get(full_key)
            if last is not None and now - last < self.period:
                return
            if len(logged) >= self.max_keys:  # forget the oldest half (insertion order)
                for key in list(logged)[: self.max_keys // 2]:
                    del logged[key]
            logged.pop(full_key, None)
            logged[full_key] = now
        log.warning(
            "cachekit: unreadable value at %r treated as a miss (%s); logged once per key "
            "every %gs",
            full_key,
            exc,
            self.period,
        )


unreadable_log = UnreadableLog()
"""The process's :class:`UnreadableLog` (tests swap its clock)."""


class Cache:
    """A cache bound to one (plugin, tenant) scope and, optionally, one namespace.

    Plugin code gets one from :func:`cachekit.current_cache`; the host from
    :meth:`CacheManager.for_plugin <cachekit.host.CacheManager.for_plugin>`. TTLs are
    seconds (``int``, ``float``) or ``timedelta``; ``ttl=None`` means the default TTL,
    ``ttl=0`` no expiry.

    It is the plugin surface: it exposes its ids and operations, never its store, its
    manager or its full keys, and every call stays in its scope (the host's views are
    :meth:`CacheManager.full_key <cachekit.host.CacheManager.full_key>` and
    ``manager.store``).

    Direct calls raise :class:`~cachekit.errors.StoreError` subclasses when the store
    fails: a failed write never looks like success. A cache from a manager follows its
    scope's policy (:mod:`cachekit.policy`): an operation the plugin may not use raises
    :class:`~cachekit.errors.CachePolicyError` before any I/O. Reads go through the
    binding's near cache when it has one (:mod:`cachekit.near`; ``near=False``, or
    :meth:`exact`: never).
    """

    __slots__ = (
        "_aread_batch",
        "_binding",
        "_codec",
        "_default_ttl",
        "_keyspace",
        "_metrics",
        "_namespace",
        "_ops",
        "_pack",
        "_plugin",
        "_policy",
        "_prefix",
        "_read_batch",
        "_stats",
        "_store",
        "_tenant",
        "_timed",
        "_ttl_of",
    )

    def __init__(
        self,
        store: Store,
        *,
        plugin: str,
        tenant: str | None = None,
        namespace: str | None = None,
        default_ttl: TTL | None = None,
        codec: Codec | None = None,
        keyspace: KeySpace | None = None,
        metrics: Metrics | None = None,
        policy: Policy | None = None,
        binding: str = DEFAULT_BINDING,
        near: bool = True,
    ) -> None:
        self._binding = binding
        self._codec = codec if codec is not None else Codec()
        self._keyspace = keyspace if keyspace is not None else KeySpace(store.key_prefix)
        self._plugin = plugin
        self._tenant = tenant
        self._namespace = namespace
        self._default_ttl = None if default_ttl is None else store_ttl(default_ttl)
        self._prefix = self._keyspace.scope_prefix(plugin, tenant, namespace)
        self._metrics = metrics if metrics is not None else Metrics()
        self._stats = self._metrics.slot(plugin, tenant, namespace, store.name)
        if isinstance(store, NearStore):  # the binding's near cache (cachekit.near)
            override = None if policy is None else policy.near_cache
            store = store.view(plugin, self._stats, override) if near else store.exact
        # The policy's pieces, chosen once (cachekit.policy): reads go to `_store`, the
        # store itself unless reads are refused or the plugin is disabled, so a read pays
        # nothing for a policy; every other call goes to `_ops`, the store as the policy
        # lets the plugin use it.
        self._policy = policy
        self._store = self._ops = store
        self._pack: Callable[[Any], bytes] = self._codec.encode
        self._ttl_of: Callable[[TTL], float | None] = store_ttl
        if policy is not None:
            self._default_ttl = policy.bound(self._default_ttl)
            self._store, self._ops, self._pack, self._ttl_of = policy.enforce(
                store, self._codec.encode, self._stats
            )
        store = self._store
        # time network stores only (a near cache's view times its own calls to the store)
        self._timed = bool(getattr(store, "blocking", True)) and not isinstance(store, NearView)
        # a batch read: one value per key in order where the store can (AlignedStore)
        self._read_batch: Callable[[list[str]], Any] = store.get_many
        self._aread_batch: Callable[[list[str]], Awaitable[Any]] = store.aget_many
        if hasattr(store, "get_values"):  # an AlignedStore (no Protocol isinstance: slow)
            self._read_batch, self._aread_batch = store.get_values, store.aget_values  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return (
            f"Cache(plugin={self._plugin!r}, tenant={self._tenant!r}, "
            f"namespace={self._namespace!r}, store={self._store.name!r}"
            + ("" if self._binding == DEFAULT_BINDING else f", binding={self._binding!r}")
            + ")"
        )

    @property
    def plugin(self) -> str:
        """The plugin id this cache is bound to."""
        return self._plugin

    @property
    def tenant(self) -> str | None:
        """The tenant id, or ``None`` for the platform scope."""
        return self._tenant

    @property
    def binding(self) -> str:
        """The name of the binding whose store holds this cache's data (``"default"``:
        ``backend.cache`` itself)."""
        return self._binding

    @property
    def namespace_name(self) -> str | None:
        """The bound namespace, or ``None`` for the default one."""
        return self._namespace

    @property
    def default_ttl(self) -> float | None:
        """Seconds applied when ``ttl=None``; ``None`` means no expiry."""
        return self._default_ttl

    @property
    def policy(self) -> Policy | None:
        """The effective policy of this scope, or ``None`` when built without one."""
        return self._policy

    @property
    def fail_open(self) -> bool:
        """Whether ``@cached`` calls through on a store outage (the policy's ``failOpen``)."""
        return self._policy is None or self._policy.fail_open

    # --- views ------------------------------------------------------------------------

    def namespace(self, name: str) -> Cache:
        """A view of this scope restricted to namespace ``name``.

        :raises CacheKeyError: ``name`` is empty, or this cache is already a namespace.
        """
        if self._namespace is not None:
            raise CacheKeyError(
                f"this cache is already namespace {self._namespace!r}; namespaces do not nest: "
                "call namespace() on the scope's cache instead"
            )
        return self._copy(namespace=name)

    def with_options(self, *, default_ttl: TTL | None) -> Cache:
        """A view of the same scope with another default TTL (``None`` or ``0``: no expiry)."""
        return self._copy(default_ttl=default_ttl)

    def exact(self) -> Cache:
        """This scope reading the store itself, never the binding's near cache
        (``nearCache``): for a read that must see a write another process made a moment
        ago. Counters and rate limits always read this way. Without a near cache: this
        cache itself."""
        if not isinstance(self._store, NearStore) or self._store is self._store.exact:
            return self
        return self._copy(near=False)

    def _copy(self, **changes: Any) -> Cache:
        args: dict[str, Any] = {
            "plugin": self._plugin,
            "tenant": self._tenant,
            "namespace": self._namespace,
            "default_ttl": self._default_ttl,
            "codec": self._codec,
            "keyspace": self._keyspace,
            "metrics": self._metrics,
            "policy": self._policy,
            "binding": self._binding,
        }
        store = self._ops.origin if isinstance(self._ops, PolicyStore) else self._ops
        return type(self)(store, **(args | changes))

    # --- shared, I/O-free steps -------------------------------------------------------

    def _key(self, key: str) -> str:
        # isascii() is a flag read: only non-ASCII keys pay for the unicode check
        if type(key) is not str or not key or not key.isascii():
            check_key(key)
        return self._prefix + key

    def _ttl(self, ttl: TTL | None) -> float | None:
        return self._default_ttl if ttl is None else self._ttl_of(ttl)

    def _decode(
        self, full_key: str, raw: bytes | None, default: Any, shape: Shape | None = None
    ) -> Any:
        if raw is None:
            return default
        try:
            value = self._codec.decode(raw)
            return value if shape is None else shape.load(value)
        except DecodeError as exc:  # a ShapeMismatch too: a value that no longer fits
            return self._unreadable(full_key, exc, default)

    @staticmethod
    def _unreadable(full_key: str, exc: DecodeError, default: Any) -> Any:
        unreadable_log.warn(full_key, exc)
        return default

    def _keys(self, keys: Iterable[str]) -> tuple[list[str], list[str]]:
        """The user keys and their full keys, in order, for batch calls. Built in one pass
        that checks nothing: a key that is not a ``str`` fails the concatenation, an empty
        one fails ``all`` and a non-ASCII one the joined ``isascii``; then the keys are
        checked one by one (a lone surrogate raises, other unicode passes)."""
        keys = keys if type(keys) is list else list(keys)
        prefix = self._prefix
        try:
            full = [prefix + key for key in keys]
        except TypeError:
            full = []
        if len(full) != len(keys) or not all(keys) or not "".join(keys).isascii():
            for key in keys:  # only non-ASCII keys pay for the unicode check, as in _key()
                check_key(key)
        return keys, full

    def _encode(self, value: Any, type: Any = None) -> bytes:
        """``value`` as bytes; with ``type`` (an annotation), in that type's plain form.

        :raises CacheValueError: the value cannot be encoded (or is not of ``type``).
        """
        if type is not None:
            value = as_shape(type).dump(value)
        try:
            return self._pack(value)
        except CacheValueError as exc:
            raise untyped(value, exc) from None

    def _encode_many(self, items: Mapping[str, Any], type: Any = None) -> dict[str, bytes]:
        # Everything is encoded before anything is written: one bad value writes nothing.
        return {self._key(key): self._encode(value, type) for key, value in items.items()}

    @staticmethod
    def _delta(delta: int) -> int:
        if type(delta) is not int:
            raise CacheValueError(f"delta must be an int, got {type(delta).__name__}: {delta!r}")
        return delta

    def _selector(self) -> KeySelector:
        namespace = ANY if self._namespace is None else self._namespace
        return self._keyspace.selector(self._plugin, self._tenant, namespace)

    # --- store calls: count errors, time network stores ----------------------------------

    # The two shells differ only in the I/O call; the bookkeeping is shared (a `with`
    # block would cost an in-process store's calls a tenth of their time).

    def _call(self, fn: Callable[..., R], *args: Any) -> R:
        began = perf_counter() if self._timed else 0.0
        try:
            result = fn(*args)
        except (StoreError, UnicodeEncodeError) as exc:
            raise self._failed(exc)  # noqa: B904  # the cause is set by _failed
        return self._took(began, result) if self._timed else result

    async def _acall(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        began = perf_counter() if self._timed else 0.0
        try:
            result = await fn(*args)
        except (StoreError, UnicodeEncodeError) as exc:
            raise self._failed(exc)  # noqa: B904  # the cause is set by _failed
        return self._took(began, result) if self._timed else result

    def _failed(self, exc: StoreError | UnicodeEncodeError) -> Exception:
        """What a failed store call raises: a store error, counted; a key the store could
        not encode (a lone surrogate in a batch), as the caller's ``CacheKeyError``."""
        if isinstance(exc, StoreError):
            self._stats.errors += 1
            return exc
        error = unencodable_key(exc)
        error.__suppress_context__ = True  # as `raise ... from None`
        return error

    def _took(self, began: float, result: R) -> R:
        """Add a network store call's latency (since ``began``); ``result`` unchanged."""
        stats = self._stats
        stats.latency += perf_counter() - began
        stats.timed += 1
        return result

    def _read(self, full: str, raw: bytes | None, default: Any, shape: Shape | None) -> Any:
        """Count a single read's hit or miss and decode it (rebuilt by ``shape``)."""
        if raw is None:
            self._stats.misses += 1
            return default
        self._stats.hits += 1
        return self._decode(full, raw, default, shape)

    def _read_many(
        self,
        keys: list[str],
        full: list[str],
        read: Sequence[bytes | None] | Mapping[str, bytes],
        type: Any = None,
    ) -> dict[str, Any]:
        """Count a batch read's hits and misses and decode what was found, by user key (an
        unreadable value is left out, like a miss). ``read`` is the store's answer: one
        value per key in order, or a mapping of the full keys found; ``type`` the values'
        annotation, if any."""
        values: Sequence[bytes | None]
        values = [read.get(f) for f in full] if isinstance(read, Mapping) else read
        decode: Callable[[bytes], Any] = self._codec.decode
        if type is not None:
            load, plain = as_shape(type).load, decode
            decode = lambda raw: load(plain(raw))  # noqa: E731
        try:  # one comprehension while every value decodes: the common case
            pairs = zip(keys, values, strict=True)
            out = {key: decode(raw) for key, raw in pairs if raw is not None}
        except DecodeError:
            out = {}
            for key, full_key, raw in zip(keys, full, values, strict=True):
                if raw is not None:
                    try:
                        out[key] = decode(raw)
                    except DecodeError as exc:
                        self._unreadable(full_key, exc, None)
        # every key gave a value: no miss (counting the None values costs a pass)
        misses = 0 if len(out) == len(values) else values.count(None)
        self._stats.hits += len(values) - misses
        self._stats.misses += misses
        return out

    # --- sync API ---------------------------------------------------------------------

    @overload
    def get(self, key: str) -> Any: ...
    @overload
    def get(self, key: str, default: D) -> Any | D: ...
    @overload
    def get(self, key: str, default: D, type: type[T]) -> T | D: ...
    @overload
    def get(self, key: str, *, type: type[T]) -> T | None: ...
    @overload
    def get(self, key: str, default: D = ..., type: Any = None) -> Any | D: ...

    def get(self, key: str, default: Any = None, type: Any = None) -> Any:
        """The value at ``key``, or ``default`` on a miss (pass :data:`cachekit.MISS` to
        tell a cached ``None`` from a miss).

        ``type`` (a dataclass, ``NamedTuple``, ``TypedDict``, pydantic model, ``Enum``, or
        ``list[...]``/``dict[str, ...]``/``X | None`` of them) rebuilds the stored plain form
        as that type (:mod:`cachekit.shapes`); a stored value that does not fit it (the type
        changed since) is a miss, logged once per key and minute.

        A key that is not valid unicode (a lone surrogate) is not looked for on this path:
        a store that must encode it raises :class:`~cachekit.errors.CacheKeyError`, others
        miss (every write refuses such a key, so nothing can be stored under it).
        """
        if key.__class__ is not str or not key:  # `type` is the parameter here
            check_key(key)
        shape = None if type is None else as_shape(type)  # a bad annotation: before any I/O
        full = self._prefix + key  # _key(), _call() and _read() inlined: the hit path
        stats = self._stats
        try:
            if self._timed:
                began = perf_counter()
                raw = self._store.get(full)
                stats.latency += perf_counter() - began
                stats.timed += 1
            else:
                raw = self._store.get(full)
        except StoreError:
            stats.errors += 1
            raise
        except UnicodeEncodeError as exc:  # checked here, not on every get: see _key
            raise unencodable_key(exc) from None
        if raw is None:
            stats.misses += 1
            return default
        stats.hits += 1
        try:
            if shape is None:
                return self._codec.decode(raw)
            return shape.load(self._codec.decode(raw))
        except DecodeError as exc:  # a ShapeMismatch too: a value that no longer fits
            return self._unreadable(full, exc, default)

    def set(self, key: str, value: Any, ttl: TTL | None = None, type: Any = None) -> None:
        """Store ``value`` at ``key``. A dataclass, ``NamedTuple``, ``TypedDict``, pydantic
        model or ``Enum`` value (or a container of them) needs its ``type``, which stores
        its plain form; read it back with ``get(key, type=...)``.

        :raises CacheValueError: the value cannot be encoded (is not of ``type``), or the
            TTL is invalid.
        """
        full = self._key(key)
        if type is None:  # _encode() inlined: a plain set stays one codec call
            try:
                data = self._pack(value)
            except CacheValueError as exc:
                raise untyped(value, exc) from None
        else:
            data = self._encode(value, type)
        self._call(self._ops.set, full, data, self._ttl(ttl))
        self._stats.sets += 1

    def add(self, key: str, value: Any, ttl: TTL | None = None, type: Any = None) -> bool:
        """Store ``value`` only if ``key`` holds nothing; ``True`` if it was stored
        (``type`` as for :meth:`set`)."""
        full = self._key(key)
        added = self._call(self._ops.add, full, self._encode(value, type), self._ttl(ttl))
        self._stats.sets += added
        return added

    def delete(self, key: str) -> bool:
        """Remove ``key``; ``True`` if something was deleted (a missing key is a no-op)."""
        deleted = self._call(self._ops.delete, self._key(key))
        self._stats.deletes += 1
        return deleted

    def delete_if_equals(self, key: str, value: Any) -> bool:
        """Remove ``key`` only if it holds ``value`` (compared as stored bytes); ``True``
        if it was deleted. How a lock's owner releases its lock without deleting one
        another owner took after it expired: atomic on the stores that can
        (:class:`~cachekit.stores.base.CompareDeleteStore`)."""
        full, encoded = self._key(key), self._codec.encode(value)
        delete = getattr(self._ops, "delete_if_equals", None)
        if delete is None:  # a Store that is not a BaseStore: read, then delete
            if self._call(self._ops.get, full) != encoded:
                return False
            deleted: bool = self._call(self._ops.delete, full)
        else:
            deleted = self._call(delete, full, encoded)
        self._stats.deletes += deleted
        return deleted

    def get_many(self, keys: Iterable[str], type: Any = None) -> dict[str, Any]:
        """The values found for ``keys`` (misses are left out), in one round trip; with
        ``type``, rebuilt as in :meth:`get` (a value that does not fit is left out)."""
        keys, full = self._keys(keys)
        if type is not None:
            as_shape(type)  # a bad annotation: before any I/O
        return self._read_many(keys, full, self._call(self._read_batch, full), type)

    def set_many(self, items: Mapping[str, Any], ttl: TTL | None = None, type: Any = None) -> None:
        """Store several values with one TTL, in one round trip where the store allows
        (``type``, the values' annotation, as for :meth:`set`)."""
        encoded, seconds = self._encode_many(items, type), self._ttl(ttl)
        self._call(self._ops.set_many, encoded, seconds)
        self._stats.sets += len(encoded)

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove ``keys``; the number that existed."""
        full_keys = list(dict.fromkeys(self._keys(keys)[1]))
        deleted = self._call(self._ops.delete_many, full_keys)
        self._stats.deletes += len(full_keys)
        return deleted

    def incr(self, key: str, delta: int = 1, ttl: TTL | None = None) -> int:
        """Atomically add ``delta`` and return the new value. A missing key starts at
        ``delta`` with ``ttl``; an existing key keeps its TTL.

        :raises CacheValueError: the key holds something other than an integer (it is
            left unchanged).
        """
        # _key(), _delta() and _ttl() inlined: counters are a hot path
        if type(key) is not str or not key or not key.isascii():
            check_key(key)
        if type(delta) is not int:
            self._delta(delta)
        seconds = self._default_ttl if ttl is None else self._ttl_of(ttl)
        value = self._call(self._ops.incr, self._prefix + key, delta, seconds)
        self._stats.sets += 1
        return value

    def gcra(self, key: str, now: int, interval: int, period: int, cost: int) -> tuple[bool, int]:
        """One atomic step of the generic cell rate algorithm on ``key`` (:mod:`cachekit.gcra`;
        what ``rate_limit(algorithm="gcra")`` runs): ``(allowed, theoretical arrival time)``,
        times in microseconds; a negative ``cost`` takes a step back."""
        return self._call(self._ops.gcra, self._key(key), now, interval, period, cost)

    def decr(self, key: str, delta: int = 1, ttl: TTL | None = None) -> int:
        """Atomically subtract ``delta`` (see :meth:`incr`); values may go negative."""
        return self.incr(key, -self._delta(delta), ttl)

    def expire(self, key: str, ttl: TTL) -> bool:
        """Give an existing key a new TTL; ``ttl=0`` removes its expiry. ``False`` if the
        key is missing."""
        full = self._key(key)
        return self._call(self._ops.expire, full, self._ttl_of(ttl))

    def touch(self, key: str, ttl: TTL | None = None) -> bool:
        """Refresh an existing key to ``ttl`` (the default TTL when ``None``)."""
        full = self._key(key)
        return self._call(self._ops.touch, full, self._ttl(ttl))

    def clear(self) -> int | None:
        """Remove every entry of this scope — all its namespaces, or only the bound one —
        and nothing else. Returns the number removed, or ``None`` if the store cannot tell."""
        return self._call(self._ops.clear, self._selector())

    def get_or_set(
        self, key: str, default: Callable[[], T] | T, ttl: TTL | None = None, type: Any = None
    ) -> T:
        """The value at ``key``; on a miss, store and return ``default`` (called first if
        callable). ``type`` as for :meth:`get` and :meth:`set`."""
        value = self.get(key, MISS, type)
        if value is MISS:
            value = default() if callable(default) else default
            self.set(key, value, ttl, type)
        return value

    # --- async API: the same steps around the store's async calls ----------------------

    @overload
    async def aget(self, key: str) -> Any: ...
    @overload
    async def aget(self, key: str, default: D) -> Any | D: ...
    @overload
    async def aget(self, key: str, default: D, type: type[T]) -> T | D: ...
    @overload
    async def aget(self, key: str, *, type: type[T]) -> T | None: ...
    @overload
    async def aget(self, key: str, default: D = ..., type: Any = None) -> Any | D: ...

    async def aget(self, key: str, default: Any = None, type: Any = None) -> Any:
        """Async :meth:`get`."""
        full = self._key(key)
        shape = None if type is None else as_shape(type)
        return self._read(full, await self._acall(self._store.aget, full), default, shape)

    async def aset(self, key: str, value: Any, ttl: TTL | None = None, type: Any = None) -> None:
        """Async :meth:`set`."""
        full = self._key(key)
        await self._acall(self._ops.aset, full, self._encode(value, type), self._ttl(ttl))
        self._stats.sets += 1

    async def aadd(self, key: str, value: Any, ttl: TTL | None = None, type: Any = None) -> bool:
        """Async :meth:`add`."""
        full = self._key(key)
        encoded = self._encode(value, type)
        added = await self._acall(self._ops.aadd, full, encoded, self._ttl(ttl))
        self._stats.sets += added
        return added

    async def adelete(self, key: str) -> bool:
        """Async :meth:`delete`."""
        deleted = await self._acall(self._ops.adelete, self._key(key))
        self._stats.deletes += 1
        return deleted

    async def adelete_if_equals(self, key: str, value: Any) -> bool:
        """Async :meth:`delete_if_equals`."""
        full, encoded = self._key(key), self._codec.encode(value)
        delete = getattr(self._ops, "adelete_if_equals", None)
        if delete is None:  # a Store that is not a BaseStore: read, then delete
            if await self._acall(self._ops.aget, full) != encoded:
                return False
            deleted: bool = await self._acall(self._ops.adelete, full)
        else:
            deleted = await self._acall(delete, full, encoded)
        self._stats.deletes += deleted
        return deleted

    async def aget_many(self, keys: Iterable[str], type: Any = None) -> dict[str, Any]:
        """Async :meth:`get_many`."""
        keys, full = self._keys(keys)
        if type is not None:
            as_shape(type)  # a bad annotation: before any I/O
        return self._read_many(keys, full, await self._acall(self._aread_batch, full), type)

    async def aset_many(
        self, items: Mapping[str, Any], ttl: TTL | None = None, type: Any = None
    ) -> None:
        """Async :meth:`set_many`."""
        encoded, seconds = self._encode_many(items, type), self._ttl(ttl)
        await self._acall(self._ops.aset_many, encoded, seconds)
        self._stats.sets += len(encoded)

    async def adelete_many(self, keys: Iterable[str]) -> int:
        """Async :meth:`delete_many`."""
        full_keys = list(dict.fromkeys(self._keys(keys)[1]))
        deleted = await self._acall(self._ops.adelete_many, full_keys)
        self._stats.deletes += len(full_keys)
        return deleted

    async def aincr(self, key: str, delta: int = 1, ttl: TTL | None = None) -> int:
        """Async :meth:`incr`."""
        full, delta = self._key(key), self._delta(delta)
        value = await self._acall(self._ops.aincr, full, delta, self._ttl(ttl))
        self._stats.sets += 1
        return value

    async def agcra(
        self, key: str, now: int, interval: int, period: int, cost: int
    ) -> tuple[bool, int]:
        """Async :meth:`gcra`."""
        return await self._acall(self._ops.agcra, self._key(key), now, interval, period, cost)

    async def adecr(self, key: str, delta: int = 1, ttl: TTL | None = None) -> int:
        """Async :meth:`decr`."""
        return await self.aincr(key, -self._delta(delta), ttl)

    async def aexpire(self, key: str, ttl: TTL) -> bool:
        """Async :meth:`expire`."""
        full = self._key(key)
        return await self._acall(self._ops.aexpire, full, self._ttl_of(ttl))

    async def atouch(self, key: str, ttl: TTL | None = None) -> bool:
        """Async :meth:`touch`."""
        full = self._key(key)
        return await self._acall(self._ops.atouch, full, self._ttl(ttl))

    async def aclear(self) -> int | None:
        """Async :meth:`clear`."""
        return await self._acall(self._ops.aclear, self._selector())

    async def aget_or_set(
        self,
        key: str,
        default: Callable[[], Awaitable[T] | T] | T,
        ttl: TTL | None = None,
        type: Any = None,
    ) -> T:
        """Async :meth:`get_or_set`; a callable ``default`` may return an awaitable."""
        value = await self.aget(key, MISS, type)
        if value is MISS:
            value = default() if callable(default) else default
            if inspect.isawaitable(value):
                value = await value
            await self.aset(key, value, ttl, type)
        return value
