"""The in-memory store beyond the contract: bounds, LRU, reclaiming, scope index, threads."""

from __future__ import annotations

import gc
import sys
import threading
import tracemalloc

import pytest

from cachekit.config import CacheConfig, MemoryConfig
from cachekit.errors import CacheValueError
from cachekit.host import CacheManager
from cachekit.keys import KeySpace
from cachekit.stores.memory import DEADLINE_OVERHEAD, ENTRY_OVERHEAD, MemoryStore, entry_size
from cachekit.testing import FakeClock

# The margins cachekit/stores/memory.py and docs/reliability.md state: memory held, and
# memory at the peaks where a table grows (its old and new arrays live at once).
HELD_MARGIN = 0.10
PEAK_MARGIN = 0.35

space = KeySpace()


def key(n: int | str, plugin: str = "p", tenant: str | None = "t") -> str:
    return space.scope_prefix(plugin, tenant, None) + str(n)


def test_evicts_least_recently_used_entry() -> None:
    """Over maxEntries, the entry read or written longest ago goes first."""
    store = MemoryStore(max_entries=3)
    for n in range(3):
        store.set(key(n), b"v", None)
    store.get(key(0))  # 0 is now the most recent
    store.set(key(3), b"v", None)
    assert store.get(key(1)) is None
    assert [store.get(key(n)) for n in (0, 2, 3)] == [b"v"] * 3
    assert len(store) == 3


def test_evicts_to_stay_under_max_bytes() -> None:
    """maxBytes counts what entries cost in memory and evicts LRU entries to fit."""
    store = MemoryStore(max_entries=None, max_bytes=3 * entry_size(key(0), b"x" * 10))
    for n in range(5):
        store.set(key(n), b"x" * 10, None)
    assert len(store) == 3
    assert store.size_bytes <= store.max_bytes  # type: ignore[operator]
    assert store.get(key(4)) == b"x" * 10


def test_value_over_max_bytes_is_refused_and_nothing_written() -> None:
    """A single value bigger than maxBytes raises CacheValueError naming the setting."""
    store = MemoryStore(max_bytes=entry_size(key("keep"), b"x" * 100, expires=True))
    store.set(key("keep"), b"small", None)
    with pytest.raises(CacheValueError, match="maxBytes"):
        store.set(key("big"), b"x" * 200, None)
    assert store.get(key("big")) is None
    assert store.get(key("keep")) == b"small"


def test_expired_entries_are_reclaimed_without_reads() -> None:
    """Expired entries nobody reads are dropped by later writes, a few at a time."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for n in range(20):
        store.set(key(n), b"v", 1.0)
    clock.advance(2)
    for n in range(5):
        store.set(key(f"new{n}"), b"v", None)
    assert len(store) == 5  # 5 writes x 8 reclaimed each >= 20 expired
    assert store.size_bytes == sum(entry_size(key(f"new{n}"), b"v") for n in range(5))


def test_rewritten_keys_do_not_grow_the_deadline_heap_forever() -> None:
    """Rewriting one key with a TTL many times keeps the deadline heap bounded."""
    store = MemoryStore(clock=FakeClock())
    for _ in range(10_000):
        store.set(key(0), b"v", 60)
    assert len(store._deadlines) < 200


def test_deadline_heap_is_bounded_by_entries_with_a_ttl() -> None:
    """Entries without a TTL do not let stale deadline items pile up: the heap is rebuilt
    relative to the entries that expire (what DEADLINE_OVERHEAD charges for)."""
    store = MemoryStore(clock=FakeClock())
    for n in range(1000):
        store.set(key(n), b"v", None)
    for _ in range(10_000):
        store.set(key("timed"), b"v", 60)
    assert len(store._deadlines) < 100


def test_scope_index_empties_with_the_scope() -> None:
    """Deleting, expiring and clearing keys drops their scope from the index."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.set(key(1, tenant="a"), b"v", None)
    store.set(key(2, tenant="b"), b"v", 1)
    store.set(key(3, tenant="c"), b"v", None)
    store.delete(key(1, tenant="a"))
    clock.advance(5)
    assert store.get(key(2, tenant="b")) is None
    store.clear(space.selector("p", "c"))
    assert store._scopes == {}
    assert len(store) == 0
    assert store.size_bytes == 0


def test_clear_visits_scopes_not_other_entries() -> None:
    """Clearing one scope touches only that scope's keys (others stay, LRU order intact)."""
    store = MemoryStore()
    for n in range(100):
        store.set(key(n, tenant="big"), b"v", None)
    store.set(key(0, tenant="small"), b"v", None)
    assert store.clear(space.selector("p", "small")) == 1
    assert len(store) == 100


def test_keys_outside_the_layout_are_stored() -> None:
    """A raw key not laid out by cachekit is kept (and never matched by a selector)."""
    store = MemoryStore()
    store.set("plain", b"v", None)
    assert store.get("plain") == b"v"
    assert store.clear(space.selector("p")) == 0
    assert store.get("plain") == b"v"


def test_threads_share_one_store_safely() -> None:
    """Writers, readers and clears from many threads leave consistent byte accounting."""
    store = MemoryStore(max_entries=500)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(300):
                store.set(key(i, tenant=f"t{n % 4}"), b"x" * (i % 7), None)
                store.get(key(i // 2, tenant=f"t{n % 4}"))
                store.incr(key("c"), 1, None)
                if i % 100 == 0:
                    store.clear(space.selector("p", f"t{n % 4}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.size_bytes == sum(
        entry_size(k, v[0], v[1] is not None) for k, v in store._data.items()
    )
    assert sum(len(members) for members in store._scopes.values()) == len(store)
    assert store._timed == sum(v[1] is not None for v in store._data.values())


@pytest.mark.parametrize("bad", [0, -1, 1.5, "10"])
def test_bad_bounds_are_refused(bad: object) -> None:
    """Bounds must be positive ints or None."""
    with pytest.raises(ValueError, match="positive int"):
        MemoryStore(max_entries=bad)  # type: ignore[arg-type]


def test_built_from_config() -> None:
    """backend.cache.memory bounds reach the store."""
    manager = CacheManager(CacheConfig(memory=MemoryConfig(max_entries=7, max_bytes=None)))
    assert isinstance(manager.store, MemoryStore)
    assert (manager.store.max_entries, manager.store.max_bytes) == (7, None)
    assert "max_entries=7" in repr(manager.store)


def test_async_twins_do_not_use_threads() -> None:
    """The memory store never blocks, so its async twins run inline (no thread hop)."""
    assert MemoryStore.blocking is False


@pytest.mark.parametrize("ttl", [None, 60.0])
def test_memory_used_stays_within_max_bytes_with_many_small_entries(ttl: float | None) -> None:
    """Filling the store with small entries, three times over, keeps the memory it really
    allocates (tracemalloc) within maxBytes plus the stated margins, held and at peak."""
    max_bytes = 2 * 1024 * 1024
    gc.collect()
    tracemalloc.start()
    try:
        store = MemoryStore(max_entries=None, max_bytes=max_bytes, clock=FakeClock())
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        n = 0
        first_eviction = None
        while first_eviction is None or n < 3 * first_eviction:
            store.set(key(n), b"v" * 64 + str(n).encode(), ttl)
            n += 1
            if first_eviction is None and len(store) < n:
                first_eviction = n
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert store.size_bytes <= max_bytes
    held, at_peak = current - base, peak - base
    assert held <= max_bytes * (1 + HELD_MARGIN), f"{held} bytes held for maxBytes {max_bytes}"
    assert at_peak <= max_bytes * (1 + PEAK_MARGIN), f"{at_peak} bytes at peak"


def test_size_follows_the_deadline_through_touch_and_incr() -> None:
    """An entry is charged its deadline's cost while it has one, and not after."""
    store = MemoryStore(clock=FakeClock())
    store.set(key(0), b"v", None)
    assert store.size_bytes == entry_size(key(0), b"v")
    store.touch(key(0), 60)
    assert store.size_bytes == entry_size(key(0), b"v", expires=True)
    store.touch(key(0), None)
    assert store.size_bytes == entry_size(key(0), b"v")
    store.incr(key(1), 5, 60)
    store.incr(key(1), 5, None)
    assert store.size_bytes == entry_size(key(0), b"v") + entry_size(key(1), b"10", expires=True)


@pytest.mark.parametrize("k", [key("plain"), key("café"), key("键"), key("😀")])
def test_entry_size_is_what_the_objects_take(k: str) -> None:
    """An entry is charged sys.getsizeof of its key and value plus the stated overheads,
    wide (non-ASCII) keys included."""
    value = b"x" * 50
    expected = sys.getsizeof(k) + sys.getsizeof(value) + ENTRY_OVERHEAD
    assert entry_size(k, value) == expected
    assert entry_size(k, value, expires=True) == expected + DEADLINE_OVERHEAD
