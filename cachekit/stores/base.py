"""What a store is: the protocol every store speaks, and a base class for writing one.

A store works on *full keys* (built by :mod:`cachekit.keys`) and ``bytes`` values (built
by :mod:`cachekit.codec`). TTLs are relative: a positive ``float`` of seconds, or ``None``
for "no expiry". Stores know nothing of plugins and tenants beyond :class:`KeySelector`,
which :meth:`Store.clear` receives.

A custom provider subclasses :class:`BaseStore` and implements five methods — ``get``,
``set``, ``delete``, ``touch`` and ``incr`` — plus ``clear`` if it can; the batch methods
fall back to loops and the async twins to running the sync method in a worker thread.
Run it through the contract suite in :mod:`cachekit.testing.contract` to check the
semantics.

Beyond :class:`Store`, a store may offer optional capabilities, each a runtime-checkable
protocol the host tools test with ``isinstance``: :class:`InfoStore` (describe its
servers) and :class:`CountingStore` (count keys per scope), which ``cachekit stats`` and
``cachekit clear`` use, and :class:`CompareDeleteStore` (delete a key only while it holds
a given value), which ``@cached(lock=True)`` releases its lock with. :class:`BaseStore`
provides a non-atomic ``delete_if_equals``; a store that can do it atomically overrides it.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import ClassVar, Protocol, TypeVar, runtime_checkable

from cachekit import gcra
from cachekit.codec import format_int, parse_int
from cachekit.keys import KeySelector

__all__ = [
    "AlignedStore",
    "BaseStore",
    "CompareDeleteStore",
    "CountingStore",
    "InfoStore",
    "Store",
]

T = TypeVar("T")

_gcra_lock = threading.Lock()
_compare_delete_lock = threading.Lock()


@runtime_checkable
class Store(Protocol):
    """The interface the cache layer calls. Every method may raise
    :class:`~cachekit.errors.StoreError`; value-level problems raise
    :class:`~cachekit.errors.CacheValueError`."""

    name: str
    """Short name used in messages and metrics (``"memory"``, ``"redis"``)."""
    key_prefix: str
    """Global prefix put in front of every key this store is given."""

    def get(self, key: str) -> bytes | None:
        """The value, or ``None`` on a miss."""
        ...

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The values found, by key (misses left out)."""
        ...

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value``, replacing any value and TTL."""
        ...

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """Store several values with one TTL."""
        ...

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        """Store ``value`` only if ``key`` is absent; ``True`` if stored."""
        ...

    def delete(self, key: str) -> bool:
        """Remove ``key``; ``True`` if it existed."""
        ...

    def delete_many(self, keys: Sequence[str]) -> int:
        """Remove keys; the number that existed."""
        ...

    def incr(self, key: str, delta: int, ttl: float | None) -> int:
        """Atomically add ``delta``; a missing key is created at ``delta`` with ``ttl``, an
        existing one keeps its TTL. Raises ``CacheValueError`` (value unchanged) when the
        stored value is not an integer or the result would leave the signed 64-bit range."""
        ...

    def expire(self, key: str, ttl: float | None) -> bool:
        """Give an existing key a new TTL (``None``: no expiry); ``False`` if missing."""
        ...

    def touch(self, key: str, ttl: float | None) -> bool:
        """Refresh an existing key's TTL (``None``: no expiry); ``False`` if missing."""
        ...

    def clear(self, selector: KeySelector) -> int | None:
        """Remove every key of the selected scopes; the number removed, or ``None``
        when the store cannot tell."""
        ...

    def gcra(self, key: str, now: int, interval: int, period: int, cost: int) -> tuple[bool, int]:
        """Run :func:`cachekit.gcra.step` atomically on the TAT stored at ``key`` (an
        integer of microseconds); store the new TAT when allowed. Returns the step's
        ``(allowed, tat)``."""
        ...

    def ping(self) -> None:
        """Raise ``StoreError`` unless the store answers."""
        ...

    def close(self) -> None:
        """Release connections (the store may reconnect on next use)."""
        ...

    async def aget(self, key: str) -> bytes | None: ...
    async def aget_many(self, keys: Sequence[str]) -> dict[str, bytes]: ...
    async def aset(self, key: str, value: bytes, ttl: float | None) -> None: ...
    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None) -> None: ...
    async def aadd(self, key: str, value: bytes, ttl: float | None) -> bool: ...
    async def adelete(self, key: str) -> bool: ...
    async def adelete_many(self, keys: Sequence[str]) -> int: ...
    async def aincr(self, key: str, delta: int, ttl: float | None) -> int: ...
    async def aexpire(self, key: str, ttl: float | None) -> bool: ...
    async def atouch(self, key: str, ttl: float | None) -> bool: ...
    async def aclear(self, selector: KeySelector) -> int | None: ...
    async def agcra(
        self, key: str, now: int, interval: int, period: int, cost: int
    ) -> tuple[bool, int]: ...
    async def aping(self) -> None: ...
    async def aclose(self) -> None: ...


@runtime_checkable
class InfoStore(Protocol):
    """A store that can describe its server(s) (``RedisStore``, ``MemcacheStore``)."""

    def server_info(self) -> dict[str, dict[str, str]]:
        """Per server address: ``server`` (its name), ``version``, and the server-wide
        ``hits`` / ``misses`` counters (``items`` too where the server counts them)."""
        ...


@runtime_checkable
class CountingStore(Protocol):
    """A store that can count keys per scope (``RedisStore``, by ``SCAN``)."""

    def count_scopes(self, selector: KeySelector) -> dict[str, int]:
        """The number of keys of each selected scope, by scope prefix (as
        :func:`cachekit.keys.scope_of` returns it; read it with
        :func:`cachekit.keys.parse_scope`)."""
        ...


@runtime_checkable
class AlignedStore(Protocol):
    """A store that reads a batch as one value (or ``None``) per key, in the keys' order —
    what ``MGET`` answers (``RedisStore``). :meth:`Cache.get_many
    <cachekit.Cache.get_many>` reads through it when a store has it, so a batch is not
    turned into a dict by full key and back into one by user key."""

    def get_values(self, keys: Sequence[str]) -> list[bytes | None]:
        """The value of each key, ``None`` for a miss, in order."""
        ...

    async def aget_values(self, keys: Sequence[str]) -> list[bytes | None]:
        """Async :meth:`get_values`."""
        ...


@runtime_checkable
class CompareDeleteStore(Protocol):
    """A store that deletes a key only while it holds a given value: how a lock's owner
    releases it (its value is the owner's token) without deleting a lock that expired and
    was taken by someone else meanwhile. Atomic on Redis (a Lua script), memcached
    (``gets`` then a ``cas`` that stores an already-expired item) and the memory store;
    :class:`BaseStore`'s default reads then deletes, which leaves a window between the two
    (documented there)."""

    def delete_if_equals(self, key: str, value: bytes) -> bool:
        """Delete ``key`` if it holds exactly ``value``; ``True`` if it was deleted."""
        ...

    async def adelete_if_equals(self, key: str, value: bytes) -> bool:
        """Async :meth:`delete_if_equals`."""
        ...


class BaseStore(ABC):
    """Base class for stores: implement ``get``, ``set``, ``delete``, ``touch``, ``incr``
    (and ``clear`` if the store can enumerate or version its keys).

    Set ``blocking = False`` on a store whose sync methods never block on I/O (an
    in-process store): its async twins then call them directly instead of in a thread.
    """

    name: str = "custom"
    key_prefix: str = ""
    blocking: ClassVar[bool] = True
    counter_range: ClassVar[tuple[int, int]] = (-(2**63), 2**63 - 1)
    """The smallest and largest value ``incr`` holds; past it, ``incr`` raises
    ``CacheValueError`` and leaves the value unchanged (signed 64-bit, as Redis counts)."""

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} name={self.name!r}>"

    # --- the five a provider must write -----------------------------------------------

    @abstractmethod
    def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    def set(self, key: str, value: bytes, ttl: float | None) -> None: ...

    @abstractmethod
    def delete(self, key: str) -> bool: ...

    @abstractmethod
    def touch(self, key: str, ttl: float | None) -> bool: ...

    @abstractmethod
    def incr(self, key: str, delta: int, ttl: float | None) -> int: ...

    # --- loop-based defaults ----------------------------------------------------------

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found = {}
        for key in keys:
            value = self.get(key)
            if value is not None:
                found[key] = value
        return found

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        for key, value in items.items():
            self.set(key, value, ttl)

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        # Not atomic across processes: stores that can, override it (SET NX, memcached add).
        if self.get(key) is not None:
            return False
        self.set(key, value, ttl)
        return True

    def delete_many(self, keys: Sequence[str]) -> int:
        return sum(self.delete(key) for key in _unique(keys))

    def delete_if_equals(self, key: str, value: bytes) -> bool:
        """Delete ``key`` if it holds ``value`` (:class:`CompareDeleteStore`).

        Not atomic: a read, then a delete. Another process that takes the key between the
        two (the value expired just then and was set again) loses its value; within one
        process a lock closes the window. Stores that can compare and delete in one step
        override this (Redis, memcached and the memory store do).
        """
        with _compare_delete_lock:
            if self.get(key) != value:
                return False
            return self.delete(key)

    def expire(self, key: str, ttl: float | None) -> bool:
        return self.touch(key, ttl)

    def clear(self, selector: KeySelector) -> int | None:
        raise NotImplementedError(
            f"store {self.name!r} cannot clear scopes: implement {type(self).__name__}.clear()"
        )

    def gcra(self, key: str, now: int, interval: int, period: int, cost: int) -> tuple[bool, int]:
        # Atomic within this process only: network stores override it (Lua, cas).
        with _gcra_lock:
            raw = self.get(key)
            allowed, tat = gcra.step(
                None if raw is None else parse_int(raw), now, interval, period, cost
            )
            if allowed:
                self.set(key, format_int(tat), (tat - now) / 1e6)
            return allowed, tat

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None

    # --- async twins: the sync method in a worker thread (or inline if not blocking) ---

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self.blocking:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    async def aget(self, key: str) -> bytes | None:
        return await self._run(self.get, key)

    async def aget_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return await self._run(self.get_many, keys)

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        return await self._run(self.set, key, value, ttl)

    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        return await self._run(self.set_many, items, ttl)

    async def aadd(self, key: str, value: bytes, ttl: float | None) -> bool:
        return await self._run(self.add, key, value, ttl)

    async def adelete(self, key: str) -> bool:
        return await self._run(self.delete, key)

    async def adelete_many(self, keys: Sequence[str]) -> int:
        return await self._run(self.delete_many, keys)

    async def aincr(self, key: str, delta: int, ttl: float | None) -> int:
        return await self._run(self.incr, key, delta, ttl)

    async def adelete_if_equals(self, key: str, value: bytes) -> bool:
        return await self._run(self.delete_if_equals, key, value)

    async def aexpire(self, key: str, ttl: float | None) -> bool:
        return await self._run(self.expire, key, ttl)

    async def atouch(self, key: str, ttl: float | None) -> bool:
        return await self._run(self.touch, key, ttl)

    async def aclear(self, selector: KeySelector) -> int | None:
        return await self._run(self.clear, selector)

    async def agcra(
        self, key: str, now: int, interval: int, period: int, cost: int
    ) -> tuple[bool, int]:
        return await self._run(self.gcra, key, now, interval, period, cost)

    async def aping(self) -> None:
        return await self._run(self.ping)

    async def aclose(self) -> None:
        return await self._run(self.close)


def _unique(keys: Iterable[str]) -> list[str]:
    """``keys`` without repeats, in order (so a batch delete counts each key once)."""
    return list(dict.fromkeys(keys))
