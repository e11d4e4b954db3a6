"""The contract suite every store must pass (needs pytest).

The contract checks the semantics DESIGN.md promises on every store — values, misses,
TTLs, atomic increments, batch calls, isolation between scopes and clears — once through
the sync methods and once through the async twins. To run it on a store, subclass
:class:`StoreContract` in a test module and provide a ``store`` fixture::

    import pytest
    from cachekit.testing.contract import StoreContract
    from mypackage import MyStore

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self):
            store = MyStore(...)
            yield store
            store.close()

A store on an injected clock also overrides the ``wait`` fixture (see
:class:`cachekit.testing.FakeClock`), so TTL tests do not sleep.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import msgpack
import pytest

from cachekit.codec import MISS
from cachekit.durations import MAX_TTL
from cachekit.errors import CacheKeyError, CacheValueError
from cachekit.manager import CacheManager
from cachekit.stores.base import Store
from cachekit.testing import Driver

__all__ = ["TRICKY_IDS", "VALUES", "StoreContract"]


VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -7,
    2**64 - 1,
    -(2**63),
    3.25,
    float("inf"),
    "",
    "héllo wörld ✓",
    b"\x00\xffraw",
    [1, "two", [3.0, None], 2**64 - 1, -(2**63)],
    {"a": 1, "nested": {"b": [True, b"x"]}, 5: "int key"},
]

TRICKY_IDS = ["*", "?", "[a]", "a:b", "t1:x", "%", "%3A", "a b", "ü", "\\"]


def counter_range(manager: CacheManager) -> tuple[int, int]:
    """The smallest and largest counter ``manager``'s store holds (signed 64-bit unless the
    store says otherwise with a ``counter_range`` attribute)."""
    low, high = getattr(manager.store, "counter_range", (-(2**63), 2**63 - 1))
    return int(low), int(high)


class StoreContract:
    """The semantic tests every store must pass, sync and async.

    Subclasses provide the ``store`` fixture (a fresh, empty-enough store per test;
    scopes are unique per test so leftovers do not matter) and may override ``wait``.
    """

    # --- fixtures ---------------------------------------------------------------------

    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError("provide a `store` fixture returning the store under test")

    @pytest.fixture
    def wait(self) -> Callable[[float], None]:
        """How the suite lets time pass for TTL tests (override for injected clocks)."""
        return time.sleep

    @pytest.fixture
    def second(self) -> float:
        """The TTL test's unit of time, in seconds: its keys live 1 or 2 units and it
        waits 2.3. One second is the resolution memcached counts in; a store with
        millisecond TTLs may return less (Redis's suite uses 0.2) to wait less."""
        return 1.0

    @pytest.fixture(params=["sync", "async"])
    def driver(self, request: pytest.FixtureRequest) -> Driver:
        return Driver(request.param)

    @pytest.fixture
    def manager(self, store: Store, driver: Driver) -> Iterator[CacheManager]:
        manager = CacheManager(store=store)
        yield manager
        driver.close(manager)

    @pytest.fixture
    def uid(self, request: pytest.FixtureRequest) -> str:
        """A plugin id unique to this test, so runs against a shared server never meet."""
        return f"p{abs(hash(request.node.nodeid)) % 10**10}x{time.monotonic_ns() % 10**6}"

    @pytest.fixture
    def cache(self, manager: CacheManager, driver: Driver, uid: str) -> Any:
        return driver(manager.for_plugin(uid, tenant="t1"))

    # --- values and misses ------------------------------------------------------------

    @pytest.mark.parametrize("value", VALUES, ids=repr)
    def test_round_trips_every_supported_value(self, cache: Any, value: Any) -> None:
        """Every supported type reads back equal."""
        cache.set("k", value)
        assert cache.get("k", MISS) == value

    def test_tuple_reads_back_as_tuple(self, cache: Any) -> None:
        """Tuples read back as tuples, nested ones too (docs/values.md)."""
        cache.set("k", (1, (2, 3), [4]))
        value = cache.get("k")
        assert value == (1, (2, 3), [4])
        assert [type(value), type(value[1]), type(value[2])] == [tuple, tuple, list]

    def test_miss_returns_default(self, cache: Any) -> None:
        """A miss returns None, or the default given."""
        assert cache.get("absent") is None
        assert cache.get("absent", "dflt") == "dflt"

    def test_cached_none_is_not_a_miss(self, cache: Any) -> None:
        """With MISS as default, a stored None and a miss differ."""
        cache.set("none", None)
        assert cache.get("none", MISS) is None
        assert cache.get("absent", MISS) is MISS

    def test_set_replaces_value(self, cache: Any) -> None:
        """A second set replaces the first value, also across types."""
        cache.set("k", "one")
        cache.set("k", 2)
        assert cache.get("k") == 2

    def test_large_value_round_trips(self, cache: Any) -> None:
        """A 200 KB value is stored whole."""
        big = "x" * 200_000
        cache.set("big", big)
        assert cache.get("big") == big

    @pytest.mark.parametrize(
        "key", ["with space", "ctl\x01\x7f", "ü∂ñí", "k" * 400, "a:b:c", "*?[x]"], ids=repr
    )
    def test_awkward_keys_round_trip(self, cache: Any, key: str) -> None:
        """Keys with spaces, control characters, unicode, separators, glob characters
        or over 250 bytes work and stay distinct from their neighbours."""
        cache.set(key, "v")
        cache.set(key + "2", "w")
        assert cache.get(key) == "v"
        assert cache.get(key + "2") == "w"
        assert cache.delete(key) is True
        assert cache.get(key) is None

    # --- delete, add --------------------------------------------------------------------

    def test_delete_reports_whether_something_was_deleted(self, cache: Any) -> None:
        """delete is True for a present key, False (and harmless) for a missing one."""
        cache.set("k", 1)
        assert cache.delete("k") is True
        assert cache.get("k") is None
        assert cache.delete("k") is False

    def test_add_only_when_absent(self, cache: Any) -> None:
        """add stores only into an empty key."""
        assert cache.add("k", "first") is True
        assert cache.add("k", "second") is False
        assert cache.get("k") == "first"

    def test_delete_if_equals_deletes_only_the_given_value(self, cache: Any) -> None:
        """delete_if_equals removes a key only while it holds the value given (how a lock's
        owner releases it without deleting another owner's lock)."""
        assert cache.delete_if_equals("lock", "token-a") is False  # missing
        cache.set("lock", "token-b")
        assert cache.delete_if_equals("lock", "token-a") is False
        assert cache.get("lock") == "token-b"
        assert cache.delete_if_equals("lock", "token-b") is True
        assert cache.get("lock") is None
        assert cache.add("lock", "token-c") is True  # free again, as after a delete
        assert cache.get("lock") == "token-c"

    def test_get_many_returns_only_found_keys(self, cache: Any) -> None:
        """get_many maps user keys to values and leaves misses out."""
        cache.set_many({"a": 1, "b": [2], "c": None})
        assert cache.get_many(["a", "b", "c", "zz"]) == {"a": 1, "b": [2], "c": None}
        assert cache.get_many([]) == {}

    def test_delete_many_counts_existing(self, cache: Any) -> None:
        """delete_many returns how many of the keys existed."""
        cache.set_many({"a": 1, "b": 2})
        assert cache.delete_many(["a", "b", "zz"]) == 2
        assert cache.get_many(["a", "b"]) == {}

    # --- counters -----------------------------------------------------------------------

    def test_incr_creates_then_adds(self, cache: Any) -> None:
        """A missing counter starts at delta; later calls add to it."""
        assert cache.incr("n") == 1
        assert cache.incr("n", 41) == 42
        assert cache.get("n") == 42

    def test_incr_first_delta_other_than_one(self, cache: Any) -> None:
        """The first increment may be any delta, including negative."""
        assert cache.incr("n", 5) == 5
        assert cache.incr("m", -3) == -3

    def test_decr_goes_negative(self, cache: Any) -> None:
        """decr subtracts and passes below zero like every store's counters."""
        cache.set("n", 2)
        assert cache.decr("n", 5) == -3
        assert cache.incr("n", 10) == 7
        assert cache.get("n") == 7

    def test_incr_of_set_integer(self, cache: Any) -> None:
        """A counter set with set() is a native integer the store can increment."""
        cache.set("n", 100)
        assert cache.incr("n", 1) == 101

    @pytest.mark.parametrize("value", ["text", 1.5, [1], {"a": 1}, None, True])
    def test_incr_of_non_integer_raises_and_keeps_value(self, cache: Any, value: Any) -> None:
        """incr of a non-integer raises CacheValueError and leaves the value unchanged."""
        cache.set("k", value)
        with pytest.raises(CacheValueError):
            cache.incr("k")
        assert cache.get("k", MISS) == value

    @pytest.mark.parametrize("delta", [1.5, "1", None, True])
    def test_incr_rejects_non_int_delta(self, cache: Any, delta: Any) -> None:
        """A delta that is not an int raises CacheValueError."""
        with pytest.raises(CacheValueError):
            cache.incr("n", delta)
        assert cache.get("n") is None

    def test_concurrent_incr_is_atomic(
        self, manager: CacheManager, driver: Driver, uid: str
    ) -> None:
        """Many concurrent increments (threads in sync mode, tasks in async mode) lose none."""
        cache = manager.for_plugin(uid, tenant="t1")
        workers, per_worker = 20, 25
        if driver.loop is None:

            def work() -> None:
                for _ in range(per_worker):
                    cache.incr("hits", ttl=60)

            threads = [threading.Thread(target=work) for _ in range(workers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        else:

            async def work_async() -> None:
                for _ in range(per_worker):
                    await cache.aincr("hits", ttl=60)

            async def all_work() -> None:
                await asyncio.gather(*(work_async() for _ in range(workers)))

            driver.run(all_work())
        assert driver(cache).get("hits") == workers * per_worker

    # --- expiry -------------------------------------------------------------------------

    def test_expire_and_touch_of_missing_key_are_false(self, cache: Any) -> None:
        """expire and touch report False for a missing key and create nothing."""
        assert cache.expire("absent", 10) is False
        assert cache.touch("absent", 10) is False
        assert cache.get("absent", MISS) is MISS

    def test_ttl_semantics(self, cache: Any, wait: Callable[[float], None], second: float) -> None:
        """TTLs expire; 0 means none; expire(k, 0) clears it; touch/expire refresh;
        an existing counter keeps its TTL (or its lack of one); default TTLs apply."""
        # Keys acted on before the wait get 2 units, not 1: memcached counts whole
        # seconds, so a 1 s key can expire within microseconds of being written.
        one, two = second, 2 * second
        short = cache.with_options(default_ttl=timedelta(seconds=one))
        cache.set("short", 1, ttl=one)
        cache.set("forever", 1, ttl=0)
        cache.set("cleared", 1, ttl=two)
        assert cache.expire("cleared", 0) is True
        cache.set("shortened", 1, ttl=0)
        assert cache.expire("shortened", one) is True
        cache.set("touched", 1, ttl=two)
        assert cache.touch("touched", 300) is True
        cache.set("long", 1, ttl=300)
        cache.incr("ctr", ttl=two)
        cache.incr("ctr", ttl=300)  # existing: keeps the 2-unit TTL
        cache.set("ctr-forever", 5, ttl=0)
        cache.incr("ctr-forever", ttl=one)  # existing: keeps no expiry
        cache.set_many({"m1": 1, "m2": 2}, ttl=one)
        assert cache.add("added", 1, ttl=one) is True
        short.set("default", 1)
        wait(2.3 * second)
        gone = ["short", "shortened", "ctr", "m1", "m2", "added", "default"]
        kept = ["forever", "cleared", "touched", "long", "ctr-forever"]
        assert {k: cache.get(k, MISS) for k in gone} == dict.fromkeys(gone, MISS)
        assert all(cache.get(k, MISS) is not MISS for k in kept), cache.get_many(kept)
        assert cache.get("ctr-forever") == 6

    # --- bad input ----------------------------------------------------------------------

    @pytest.mark.parametrize("key", ["", None, 5, b"bytes"], ids=repr)
    def test_bad_key_raises_cache_key_error(self, cache: Any, key: Any) -> None:
        """Empty or non-str keys raise CacheKeyError."""
        with pytest.raises(CacheKeyError):
            cache.set(key, 1)
        with pytest.raises(CacheKeyError):
            cache.get(key)

    @pytest.mark.parametrize("ttl", [-1, float("nan"), float("inf"), "10", timedelta(-1)], ids=repr)
    def test_bad_ttl_raises_and_writes_nothing(self, cache: Any, ttl: Any) -> None:
        """A negative, NaN, infinite or non-numeric TTL raises CacheValueError; nothing is
        written."""
        with pytest.raises(CacheValueError):
            cache.set("k", 1, ttl=ttl)
        assert cache.get("k", MISS) is MISS

    def test_unencodable_value_raises_naming_the_type(self, cache: Any) -> None:
        """An object with no encoding raises CacheValueError naming its type."""

        class Opaque:
            pass

        with pytest.raises(CacheValueError, match="Opaque"):
            cache.set("k", {"inner": Opaque()})
        assert cache.get("k", MISS) is MISS

    def test_set_many_with_one_bad_value_writes_nothing(self, cache: Any) -> None:
        """set_many encodes everything first: one bad value, nothing written."""
        with pytest.raises(CacheValueError):
            cache.set_many({"a": 1, "b": object()})
        assert cache.get_many(["a", "b"]) == {}

    @pytest.mark.parametrize("ttl", [MAX_TTL + 1, 2**31, 2**32, 1e20], ids=repr)
    def test_ttl_beyond_the_maximum_is_refused(self, cache: Any, ttl: Any) -> None:
        """A TTL above MAX_TTL raises CacheValueError through every TTL-taking method, and
        nothing is written."""
        calls: list[tuple[str, tuple[Any, ...]]] = [
            ("set", ("k", 1, ttl)),
            ("add", ("k", 1, ttl)),
            ("set_many", ({"k": 1}, ttl)),
            ("incr", ("k", 1, ttl)),
            ("expire", ("k", ttl)),
            ("touch", ("k", ttl)),
        ]
        for name, args in calls:
            with pytest.raises(CacheValueError, match="at most"):
                getattr(cache, name)(*args)
        assert cache.get("k", MISS) is MISS

    def test_maximum_ttl_is_kept(self, cache: Any) -> None:
        """A TTL of exactly MAX_TTL stores a value that reads back (no store misreads it
        as a time in the past)."""
        cache.set("k", "v", ttl=MAX_TTL)
        cache.incr("n", 1, ttl=MAX_TTL)
        assert (cache.get("k"), cache.get("n")) == ("v", 1)
        assert cache.expire("k", MAX_TTL)
        assert cache.get("k") == "v"

    @pytest.mark.parametrize(
        "value",
        [10**5000, 2**64, -(2**63) - 1, [2**64], {"a": -(2**63) - 1}],
        ids=["10**5000", "2**64", "-2**63-1", "[2**64]", "{a: -2**63-1}"],
    )
    def test_integer_beyond_64_bits_is_refused(self, cache: Any, value: Any) -> None:
        """An integer outside -2**63..2**64-1, top-level or nested, raises CacheValueError."""
        with pytest.raises(CacheValueError, match="64"):
            cache.set("k", value)
        assert cache.get("k", MISS) is MISS

    @pytest.mark.parametrize(
        "value",
        [
            OrderedDict(a=1),
            [{"x": {(1,): OrderedDict()}}],
            msgpack.Timestamp(1),
            [msgpack.Timestamp(1, 5)],
            msgpack.ExtType(99, b"x"),
        ],
        ids=repr,
    )
    def test_value_that_cannot_be_read_back_is_refused(self, cache: Any, value: Any) -> None:
        """A value the codec could not read back identically (a dict subclass, a msgpack
        Timestamp or ExtType) raises CacheValueError at set; nothing is written."""
        with pytest.raises(CacheValueError):
            cache.set("k", value)
        assert cache.get("k", MISS) is MISS

    @pytest.mark.parametrize("key", ["k\ud800", "\udfff", "a\udc80b"], ids=repr)
    def test_key_with_a_lone_surrogate_is_refused(self, cache: Any, key: str) -> None:
        """A key no store can encode (a lone surrogate) raises CacheKeyError on every write,
        sync and async; a read raises it too or misses (the sync get does not pay for the
        check), never another exception."""
        writes: list[tuple[str, tuple[Any, ...]]] = [
            ("set", (key, 1)),
            ("add", (key, 1)),
            ("incr", (key,)),
            ("set_many", ({"ok": 1, key: 2},)),
            ("delete", (key,)),
        ]
        for name, args in writes:
            with pytest.raises(CacheKeyError, match="surrogate"):
                getattr(cache, name)(*args)
        reads: list[tuple[str, tuple[Any, ...]]] = [
            ("get", (key, MISS)),
            ("get_many", (["ok", key],)),
        ]
        for name, args in reads:
            try:
                found = getattr(cache, name)(*args)
            except CacheKeyError as exc:
                found = MISS if "surrogate" in str(exc) else exc
            assert found in (MISS, {})
        assert cache.get("ok", MISS) is MISS

    def test_id_with_a_lone_surrogate_is_refused(self, manager: CacheManager) -> None:
        """A plugin or tenant id or namespace with a lone surrogate raises CacheKeyError."""
        with pytest.raises(CacheKeyError, match="surrogate"):
            manager.for_plugin("p\ud800", tenant="t")
        with pytest.raises(CacheKeyError, match="surrogate"):
            manager.for_plugin("p", tenant="t\ud800")
        with pytest.raises(CacheKeyError, match="surrogate"):
            manager.for_plugin("p", tenant="t").namespace("\udc00")

    @pytest.mark.parametrize(
        ("edge", "offset", "delta"),
        [("max", 0, 1), ("max", -9, 20), ("min", 0, -1), ("min", 5, -6)],
    )
    def test_counter_overflow_is_refused_and_keeps_the_value(
        self, manager: CacheManager, cache: Any, edge: str, offset: int, delta: int
    ) -> None:
        """An increment past the store's counter range (``counter_range``: signed 64-bit,
        ±2**62 on memcached) raises CacheValueError and leaves the counter unchanged."""
        low, high = counter_range(manager)
        start = (high if edge == "max" else low) + offset
        cache.set("c", start)
        with pytest.raises(CacheValueError):
            cache.incr("c", delta)
        assert cache.get("c") == start
        assert cache.incr("c", 0) == start

    def test_counters_reach_both_ends_of_the_range(self, manager: CacheManager, cache: Any) -> None:
        """A counter counts up to the largest and down to the smallest value of its store's
        range, and reads back as it was counted."""
        low, high = counter_range(manager)
        cache.set("top", high - 1)
        assert cache.incr("top") == high
        assert cache.get("top") == high
        cache.set("bottom", low + 1)
        assert cache.decr("bottom") == low
        assert cache.get("bottom") == low
        assert cache.incr("new", high) == high

    def test_corrupt_bytes_are_a_miss_with_a_warning(
        self,
        manager: CacheManager,
        driver: Driver,
        uid: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Bytes no codec wrote read as a miss and log one warning, never raise."""
        raw = manager.for_plugin(uid, tenant="t1")
        full_key = manager.keyspace.scope_prefix(uid, "t1", None) + "k"
        manager.store.set(full_key, b"\xc1 not msgpack", None)
        with caplog.at_level(logging.WARNING, logger="cachekit"):
            assert driver(raw).get("k", "dflt") == "dflt"
        assert len([r for r in caplog.records if "unreadable" in r.getMessage()]) == 1

    # --- isolation ----------------------------------------------------------------------

    def _neighbours(self, manager: CacheManager, driver: Driver, uid: str) -> dict[str, Any]:
        a_t1 = manager.for_plugin(uid, tenant="t1")
        return {
            "A/t1": driver(a_t1),
            "A/t2": driver(manager.for_plugin(uid, tenant="t2")),
            "B/t1": driver(manager.for_plugin(uid + "b", tenant="t1")),
            "A/platform": driver(manager.for_plugin(uid, tenant=None)),
            "A/t1/ns": driver(a_t1.namespace("ns")),
        }

    def test_scopes_are_isolated_through_every_method(
        self, manager: CacheManager, driver: Driver, uid: str
    ) -> None:
        """Data of (A, t1) is invisible to (A, t2), (B, t1), (A, platform) and another
        namespace through get, get_many, delete, incr, add, expire and touch."""
        caches = self._neighbours(manager, driver, uid)
        for name, c in caches.items():
            c.set("k", name)
            c.set("n", 10)
        for name, c in caches.items():
            assert c.get("k") == name
            assert c.get_many(["k"]) == {"k": name}
            assert c.incr("n") == 11
        assert caches["A/t1"].delete("k") is True
        assert caches["A/t1"].add("k", "again") is True
        assert caches["A/t1"].expire("k", 300) is True
        for name, c in caches.items():
            if name != "A/t1":
                assert c.get("k") == name
                assert c.get("n") == 11
                assert c.add("k", "x") is False

    def test_clear_removes_only_its_scope(
        self, manager: CacheManager, driver: Driver, uid: str
    ) -> None:
        """clear() of (A, t1) removes all its namespaces and nothing of its neighbours."""
        caches = self._neighbours(manager, driver, uid)
        for name, c in caches.items():
            c.set("k", name)
        caches["A/t1"].clear()
        assert caches["A/t1"].get("k") is None
        assert caches["A/t1/ns"].get("k") is None
        for name in ("A/t2", "B/t1", "A/platform"):
            assert caches[name].get("k") == name

    def test_namespace_clear_removes_only_that_namespace(
        self, manager: CacheManager, driver: Driver, uid: str
    ) -> None:
        """clear() on a namespace view leaves the scope's other namespaces alone."""
        caches = self._neighbours(manager, driver, uid)
        for name, c in caches.items():
            c.set("k", name)
        caches["A/t1/ns"].clear()
        assert caches["A/t1/ns"].get("k") is None
        for name in ("A/t1", "A/t2", "B/t1", "A/platform"):
            assert caches[name].get("k") == name

    @pytest.mark.parametrize("tenant", TRICKY_IDS, ids=repr)
    def test_clear_with_glob_and_separator_ids(
        self, manager: CacheManager, driver: Driver, uid: str, tenant: str
    ) -> None:
        """A tenant id made of glob characters or separators clears only itself."""
        victim = driver(manager.for_plugin(uid, tenant=tenant))
        others = {t: driver(manager.for_plugin(uid, tenant=t)) for t in [*TRICKY_IDS, "t1", "a"]}
        others.pop(tenant)
        for t, c in others.items():
            c.set("k", t)
        victim.set("k", "victim")
        victim.clear()
        assert victim.get("k") is None
        assert {t: c.get("k") for t, c in others.items()} == {t: t for t in others}

    def test_manager_clears_a_plugin_across_tenants(
        self, manager: CacheManager, driver: Driver, uid: str
    ) -> None:
        """manager.clear(plugin=A) removes A for every tenant and the platform scope."""
        caches = self._neighbours(manager, driver, uid)
        for name, c in caches.items():
            c.set("k", name)
        driver(manager).clear(plugin=uid)
        assert [n for n, c in caches.items() if c.get("k") is not None] == ["B/t1"]

    def test_manager_clears_a_tenant_across_plugins(
        self, manager: CacheManager, driver: Driver, uid: str
    ) -> None:
        """manager.clear(tenant=t1) removes t1 in every plugin and nothing else."""
        caches = self._neighbours(manager, driver, uid)
        for name, c in caches.items():
            c.set("k", name)
        driver(manager).clear(tenant="t1")
        assert sorted(n for n, c in caches.items() if c.get("k") is not None) == [
            "A/platform",
            "A/t2",
        ]

    def test_manager_clears_one_scope(
        self, manager: CacheManager, driver: Driver, uid: str
    ) -> None:
        """manager.clear(plugin=A, tenant=t1) removes exactly (A, t1)."""
        caches = self._neighbours(manager, driver, uid)
        for name, c in caches.items():
            c.set("k", name)
        driver(manager).clear(plugin=uid, tenant="t1")
        assert sorted(n for n, c in caches.items() if c.get("k") is not None) == [
            "A/platform",
            "A/t2",
            "B/t1",
        ]

    def test_get_or_set_computes_once(self, cache: Any) -> None:
        """get_or_set stores the default on a miss and returns the stored value after."""
        calls: list[int] = []

        def compute() -> str:
            calls.append(1)
            return "computed"

        assert cache.get_or_set("k", compute) == "computed"
        assert cache.get_or_set("k", compute) == "computed"
        assert len(calls) == 1

    def test_ping(self, manager: CacheManager, driver: Driver) -> None:
        """The store answers ping."""
        if driver.loop is None:
            manager.store.ping()
        else:
            driver.run(manager.store.aping())
