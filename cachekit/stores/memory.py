"""The in-memory store: the default, for development, tests and single-process hosts.

Values are stored as the same bytes the network stores hold (see :mod:`cachekit.codec`),
so what works here works in production. The store is

* bounded: at most ``max_entries`` entries and ``max_bytes`` bytes of process memory,
  least recently used entries evicted first. An entry is charged what it really costs: its
  key and value objects (``sys.getsizeof``) plus :data:`ENTRY_OVERHEAD` for the record and
  the index slots that hold it, and :data:`DEADLINE_OVERHEAD` more when it expires (its
  deadline and its share of the deadline heap, stale items included). Measured with
  tracemalloc on entries of 0 to 1000 bytes, the memory the store holds stays within
  ``max_bytes`` plus 10%, and within ``max_bytes`` plus 35% at the peaks where a table
  grows (old and new tables live at once; ``tests/test_memory_store.py``). What the
  process's RSS adds on top is the allocator's own slack;
* expiring on an injectable monotonic ``clock``: an expired entry is a miss at once, and is
  reclaimed either when touched or by a heap of deadlines drained a little on every write —
  never by scanning all keys;
* clearable per scope without scanning: keys are indexed by their scope prefix, so
  ``clear`` visits the scopes, not the entries of other scopes;
* thread-safe (one lock; nothing blocks while it is held), so WSGI thread pools and asyncio
  share one instance.
"""

from __future__ import annotations

import heapq
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from cachekit.codec import format_int, parse_int
from cachekit.errors import CacheValueError
from cachekit.keys import KeySelector, scope_of
from cachekit.stores.base import BaseStore

if TYPE_CHECKING:
    from cachekit.config import CacheConfig

__all__ = ["DEADLINE_OVERHEAD", "ENTRY_OVERHEAD", "MemoryStore", "entry_size"]

_RECLAIM_PER_WRITE: Final = 8
_COUNTER_MIN: Final = -(2**63)  # counters are signed 64-bit on every store
_COUNTER_MAX: Final = 2**63 - 1

ENTRY_OVERHEAD: Final = 380
"""Bytes charged per entry beyond its key and value objects: the entry tuple and its size
int, the OrderedDict slot, index and link node, the scope index's set slot (tables at their
worst fill, just after growing). Measured with tracemalloc on small values."""

DEADLINE_OVERHEAD: Final = 260
"""Bytes charged more for an entry with a TTL: its deadline float, its heap item, and the
stale heap items (with the keys they keep alive) that evictions and rewrites leave until
the heap is rebuilt (up to twice the live entries)."""

# sys.getsizeof of an ASCII str is its header plus its length, of bytes likewise: adding
# lengths to the headers measured here costs a fraction of two getsizeof calls per write.
_STR_HEADER: Final = sys.getsizeof("")
_FIXED: Final = _STR_HEADER + sys.getsizeof(b"") + ENTRY_OVERHEAD


def _base_size(key: str, value: bytes) -> int:
    """``sys.getsizeof(key) + sys.getsizeof(value) + ENTRY_OVERHEAD``, computed cheaply."""
    if key.isascii():
        return len(key) + len(value) + _FIXED
    return sys.getsizeof(key) - _STR_HEADER + len(value) + _FIXED


def entry_size(key: str, value: bytes, expires: bool = False) -> int:
    """The bytes the memory store charges for ``key`` -> ``value`` (with a TTL when
    ``expires``) against ``max_bytes``."""
    size = _base_size(key, value)
    return size + DEADLINE_OVERHEAD if expires else size


_UNSCOPED: Final = ""

# (value, deadline or None, size in bytes)
_Entry = tuple[bytes, float | None, int]


class MemoryStore(BaseStore):
    """A bounded, thread-safe LRU store in this process.

    :param max_entries: most entries held (``None``: unbounded).
    :param max_bytes: most bytes of memory held, as :func:`entry_size` charges them
        (``None``: unbounded). A single entry larger than this raises ``CacheValueError``.
    :param clock: monotonic clock in seconds; inject a fake one in tests.
    """

    name = "memory"
    blocking = False

    def __init__(
        self,
        max_entries: int | None = 100_000,
        max_bytes: int | None = 256 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for label, bound in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if bound is not None and (type(bound) is not int or bound < 1):
                raise ValueError(f"{label} must be a positive int or None, got {bound!r}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._data: OrderedDict[str, _Entry] = OrderedDict()
        self._scopes: dict[str, set[str]] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._bytes = 0
        self._timed = 0  # entries with a deadline: the heap is rebuilt relative to these

    @classmethod
    def from_config(cls, config: CacheConfig) -> MemoryStore:
        """Build from ``backend.cache.memory``."""
        return cls(max_entries=config.memory.max_entries, max_bytes=config.memory.max_bytes)

    def __repr__(self) -> str:
        return (
            f"MemoryStore(entries={len(self._data)}, bytes={self._bytes}, "
            f"max_entries={self.max_entries}, max_bytes={self.max_bytes})"
        )

    def __len__(self) -> int:
        """Entries held, including expired ones not yet reclaimed."""
        return len(self._data)

    @property
    def size_bytes(self) -> int:
        """Bytes held, as :func:`entry_size` charges them."""
        return self._bytes

    # --- reads ------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        lock = self._lock  # acquire/release: measurably cheaper than `with` on this hot path
        lock.acquire()
        try:
            entry = self._data.get(key)  # _live(), inlined
            if entry is None:
                return None
            if entry[1] is not None and entry[1] <= self._clock():
                self._remove(key)
                return None
            self._data.move_to_end(key)
            return entry[0]
        finally:
            lock.release()

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found = {}
        with self._lock:
            for key in keys:
                entry = self._live(key)
                if entry is not None:
                    self._data.move_to_end(key)
                    found[key] = entry[0]
        return found

    # --- writes -----------------------------------------------------------------------

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        size = self._checked_size(key, value)
        with self._lock:
            self._put(key, value, self._deadline(ttl), size)
            self._reclaim()

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        sizes = {key: self._checked_size(key, value) for key, value in items.items()}
        with self._lock:
            deadline = self._deadline(ttl)
            for key, value in items.items():
                self._put(key, value, deadline, sizes[key])
            self._reclaim()

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        size = self._checked_size(key, value)
        with self._lock:
            if self._live(key) is not None:
                return False
            self._put(key, value, self._deadline(ttl), size)
            self._reclaim()
            return True

    def delete(self, key: str) -> bool:
        with self._lock:
            found = self._live(key) is not None
            if found:
                self._remove(key)
            return found

    def delete_if_equals(self, key: str, value: bytes) -> bool:
        """Delete ``key`` if it holds ``value``, atomically (under the store's lock)."""
        with self._lock:
            entry = self._live(key)
            if entry is None or entry[0] != value:
                return False
            self._remove(key)
            return True

    def delete_many(self, keys: Sequence[str]) -> int:
        with self._lock:
            count = 0
            for key in dict.fromkeys(keys):
                if self._live(key) is not None:
                    self._remove(key)
                    count += 1
            return count

    def incr(self, key: str, delta: int, ttl: float | None) -> int:
        with self._lock:
            entry = self._live(key)
            if entry is None:
                value, deadline = delta, self._deadline(ttl)
            else:
                current = parse_int(entry[0])
                if current is None:
                    raise CacheValueError(
                        f"cannot increment {key!r}: it holds a value that is not an integer"
                    )
                value, deadline = current + delta, entry[1]
            if not _COUNTER_MIN <= value <= _COUNTER_MAX:  # as Redis INCRBY, value unchanged
                raise CacheValueError(
                    f"cannot increment {key!r} by {delta}: the result is outside the signed "
                    "64-bit range counters hold on every store; reset the counter (set it)"
                )
            encoded = format_int(value)
            # _base_size(), inlined: counters are a hot path
            size = len(key) + len(encoded) + _FIXED if key.isascii() else _base_size(key, encoded)
            self._put(key, encoded, deadline, size, push=entry is None)
            self._reclaim()
            return value

    def touch(self, key: str, ttl: float | None) -> bool:
        with self._lock:
            entry = self._live(key)
            if entry is None:
                return False
            base = entry[2] - (DEADLINE_OVERHEAD if entry[1] is not None else 0)
            self._put(key, entry[0], self._deadline(ttl), base)
            return True

    def clear(self, selector: KeySelector) -> int:
        with self._lock:
            removed = 0
            for scope in [s for s in self._scopes if selector.matches(s)]:
                for key in list(self._scopes[scope]):
                    self._remove(key)
                    removed += 1
            return removed

    # --- internals (called with the lock held) ----------------------------------------

    def _deadline(self, ttl: float | None) -> float | None:
        return None if ttl is None else self._clock() + ttl

    def _checked_size(self, key: str, value: bytes) -> int:
        """The entry's size without a deadline; refused if it cannot fit even alone."""
        # _base_size(), inlined: every write pays it
        size = len(key) + len(value) + _FIXED if key.isascii() else _base_size(key, value)
        if self.max_bytes is not None and size + DEADLINE_OVERHEAD > self.max_bytes:
            raise CacheValueError(
                f"value for {key!r} takes {size + DEADLINE_OVERHEAD} bytes in memory, over the "
                f"memory store's maxBytes ({self.max_bytes}); raise "
                "backend.cache.memory.maxBytes or cache less"
            )
        return size

    def _live(self, key: str) -> _Entry | None:
        """The entry for ``key`` unless missing or expired (an expired one is removed)."""
        entry = self._data.get(key)
        if entry is None:
            return None
        deadline = entry[1]
        if deadline is not None and deadline <= self._clock():
            self._remove(key)
            return None
        return entry

    def _put(
        self, key: str, value: bytes, deadline: float | None, size: int, *, push: bool = True
    ) -> None:
        """Store an entry; ``size`` is its :func:`_base_size` (the deadline's cost is
        added here)."""
        timed = deadline is not None
        if timed:
            size += DEADLINE_OVERHEAD
        old = self._data.get(key)
        if old is None:
            self._scopes.setdefault(self._scope(key), set()).add(key)
            if timed:
                self._timed += 1
        else:
            self._bytes -= old[2]
            if timed is (old[1] is None):  # the entry gains or loses its deadline
                self._timed += 1 if timed else -1
        self._data[key] = (value, deadline, size)
        self._data.move_to_end(key)
        self._bytes += size
        if deadline is not None and push:
            heapq.heappush(self._deadlines, (deadline, key))
        self._evict()

    def _remove(self, key: str) -> None:
        entry = self._data.pop(key)
        self._bytes -= entry[2]
        self._timed -= entry[1] is not None
        scope = self._scope(key)
        members = self._scopes[scope]
        members.discard(key)
        if not members:
            del self._scopes[scope]

    def _scope(self, key: str) -> str:
        try:
            return scope_of(key, len(self.key_prefix))
        except ValueError:
            return _UNSCOPED

    def _evict(self) -> None:
        data = self._data
        while (self.max_entries is not None and len(data) > self.max_entries) or (
            self.max_bytes is not None and self._bytes > self.max_bytes
        ):
            self._remove(next(iter(data)))

    def _reclaim(self) -> None:
        """Drop a few expired entries, oldest deadline first; rebuild the heap when stale
        items (from rewrites, deletes and evictions) outnumber the live ones
        (what :data:`DEADLINE_OVERHEAD` charges for)."""
        heap, now = self._deadlines, self._clock()
        for _ in range(_RECLAIM_PER_WRITE):
            if not heap or heap[0][0] > now:
                break
            deadline, key = heapq.heappop(heap)
            entry = self._data.get(key)
            if entry is not None and entry[1] == deadline:
                self._remove(key)
        if len(heap) > 2 * self._timed + 64:
            self._deadlines = [(e[1], k) for k, e in self._data.items() if e[1] is not None]
            heapq.heapify(self._deadlines)
