"""@cached on the memory store: keys, helpers, stampedes, locks, staleness, outages."""

from __future__ import annotations

import asyncio
import contextvars
import decimal
import enum
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flaky_store import FlakyStore

from cachekit.codec import MISS
from cachekit.context import current_cache, scope
from cachekit.decorators import cached
from cachekit.errors import CacheKeyError, CacheValueError, NoScopeError, StoreUnavailable
from cachekit.host import CacheManager
from cachekit.stores.memory import MemoryStore
from cachekit.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """One fake clock for the memory store's TTLs and @cached's freshness checks."""
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def manager(clock: FakeClock) -> CacheManager:
    return CacheManager(store=MemoryStore(clock=clock))


@pytest.fixture
def bound(manager: CacheManager) -> Iterator[CacheManager]:
    with scope(plugin="catalog", tenant="acme", manager=manager):
        yield manager


class Calls:
    """A function body that records its calls."""

    def __init__(self) -> None:
        self.args: list[Any] = []

    def __call__(self, *args: Any) -> Any:
        self.args.append(args)
        return args

    @property
    def count(self) -> int:
        return len(self.args)


def test_sync_function_is_computed_once(bound: CacheManager) -> None:
    """A second call with the same arguments is served from the cache."""
    calls = Calls()

    @cached(ttl=60)
    def double(x: int) -> int:
        calls(x)
        return 2 * x

    assert [double(2), double(2), double(3)] == [4, 4, 6]
    assert calls.count == 2


def test_async_function_is_computed_once(bound: CacheManager) -> None:
    """Async functions are cached the same way."""
    calls = Calls()

    @cached(ttl=60)
    async def double(x: int) -> int:
        calls(x)
        return 2 * x

    async def run() -> list[int]:
        return [await double(2), await double(2)]

    assert asyncio.run(run()) == [4, 4]
    assert calls.count == 1


def test_wrapper_tells_the_truth_about_the_function() -> None:
    """Signature, __wrapped__, name and coroutine-ness are those of the original."""

    async def original(a: int, b: str = "x") -> str:
        return b * a

    wrapped = cached()(original)
    assert inspect.iscoroutinefunction(wrapped)
    assert inspect.signature(wrapped) == inspect.signature(original)
    assert wrapped.__wrapped__ is original
    assert wrapped.__name__ == "original"
    assert wrapped.uncached is original  # type: ignore[attr-defined]
    assert not inspect.iscoroutinefunction(cached()(lambda: 1))


def test_key_ignores_keyword_order_and_applies_defaults(bound: CacheManager) -> None:
    """f(1), f(1, 2), f(a=1, b=2) and f(b=2, a=1) are one entry; f(1, 3) another."""
    calls = Calls()

    @cached()
    def f(a: int, b: int = 2) -> int:
        calls(a, b)
        return a + b

    f(1)
    f(1, 2)
    f(a=1, b=2)
    f(b=2, a=1)
    f(1, 3)
    assert calls.args == [(1, 2), (1, 3)]


def test_methods_drop_self_and_cls(bound: CacheManager) -> None:
    """Instance, class and static methods cache by their arguments only."""
    calls = Calls()

    class Repo:
        @cached()
        def get(self, x: int) -> int:
            calls("get", x)
            return x

        @cached()
        @classmethod
        def build(cls, x: int) -> int:
            calls("build", x)
            return x

        @cached()
        @staticmethod
        def pure(x: int) -> int:
            calls("pure", x)
            return x

    a, b = Repo(), Repo()
    assert [a.get(1), b.get(1), Repo.build(2), a.build(2), Repo.pure(3), a.pure(3)] == [
        1,
        1,
        2,
        2,
        3,
        3,
    ]
    assert calls.args == [("get", 1), ("build", 2), ("pure", 3)]
    assert a.get.invalidate(1) is True
    assert Repo.build.invalidate(2) is True
    a.get(1)
    assert calls.count == 4


def test_identity_based_argument_is_refused(bound: CacheManager) -> None:
    """An argument whose repr is its address raises CacheKeyError pointing at key=/ignore=."""

    @cached()
    def f(obj: object) -> int:
        return 1

    with pytest.raises(CacheKeyError, match=r"key=.*ignore="):
        f(object())


def test_ignore_and_custom_keys(bound: CacheManager) -> None:
    """ignore= leaves arguments out; key= as callable or template builds the key."""
    calls = Calls()

    @cached(ignore=("request",))
    def by_user(user_id: int, request: object) -> int:
        calls(user_id)
        return user_id

    by_user(1, object())
    by_user(1, object())

    @cached(key=lambda user, **_: f"user:{user['id']}")
    def profile(user: dict[str, Any], verbose: bool = False) -> str:
        calls("profile")
        return str(user["id"])

    profile({"id": 7})
    profile({"id": 7}, verbose=True)

    @cached(key="item:{item_id}")
    def item(item_id: int, lang: str = "en") -> int:
        calls("item")
        return item_id

    item(5)
    item(5, lang="de")
    assert calls.count == 3
    assert current_cache(f"{__name__}.test_ignore_and_custom_keys.<locals>.item").get("item:5") == 5


def test_ignore_unknown_argument_fails_when_applied() -> None:
    """ignore= naming no parameter is an error at decoration time."""
    with pytest.raises(CacheKeyError, match="nope"):
        cached(ignore=("nope",))(lambda x: x)


def test_long_keys_are_hashed_and_stay_distinct(bound: CacheManager) -> None:
    """Arguments that make a key over 200 characters are hashed; different ones stay apart."""

    @cached(namespace="long")
    def f(text: str) -> str:
        return text[-1]

    a, b = "x" * 300 + "a", "x" * 300 + "b"
    assert (f(a), f(b)) == ("a", "b")
    keys = list(bound.store._data)  # type: ignore[attr-defined]
    assert all(len(k) < 200 for k in keys)


def test_rich_arguments_make_stable_keys(bound: CacheManager) -> None:
    """Lists, dicts (any order), sets, tuples, enums and dataclasses key deterministically."""
    import dataclasses
    import enum

    class Color(enum.Enum):
        RED = 1

    @dataclasses.dataclass
    class Point:
        x: int

    calls = Calls()

    @cached()
    def f(*args: Any, **kwargs: Any) -> int:
        calls()
        return 1

    f([1, {"b": 2, "a": 1}], {3, 1}, Color.RED, Point(1), k=(1,))
    f([1, {"a": 1, "b": 2}], {1, 3}, Color.RED, Point(1), k=(1,))
    assert calls.count == 1
    f([1, {"a": 1, "b": 2}], {1, 3}, Color.RED, Point(2), k=(1,))
    assert calls.count == 2


def test_ttl_forms(bound: CacheManager, clock: FakeClock) -> None:
    """ttl accepts seconds, timedelta or a callable of the result."""
    calls = Calls()

    @cached(ttl=timedelta(seconds=10))
    def a() -> int:
        calls("a")
        return 1

    @cached(ttl=lambda result: result)
    def b(seconds: int) -> int:
        calls("b")
        return seconds

    a()
    b(5)
    b(100)
    clock.advance(20)
    a()
    b(5)
    b(100)
    assert calls.args == [("a",), ("b",), ("b",), ("a",), ("b",)]


def test_unless_and_cache_none(bound: CacheManager) -> None:
    """unless(result) and cache_none=False skip storing."""
    calls = Calls()

    @cached(unless=lambda r: r < 0)
    def f(x: int) -> int:
        calls(x)
        return x

    @cached(cache_none=False)
    def g() -> None:
        calls("g")

    @cached()
    def h() -> None:
        calls("h")

    for _ in range(2):
        f(-1)
        f(1)
        g()
        h()
    assert calls.args == [(-1,), (1,), ("g",), ("h",), (-1,), ("g",)]


def test_invalidate_and_refresh(bound: CacheManager) -> None:
    """invalidate deletes the entry; refresh recomputes and stores it."""
    state = {"n": 0}

    @cached()
    def f(x: int) -> int:
        state["n"] += 1
        return state["n"]

    assert f(1) == 1
    assert f.invalidate(1) is True  # type: ignore[attr-defined]
    assert f.invalidate(1) is False  # type: ignore[attr-defined]
    assert f(1) == 2
    assert f.refresh(1) == 3  # type: ignore[attr-defined]
    assert f(1) == 3


def test_async_helpers(bound: CacheManager) -> None:
    """ainvalidate and arefresh work on async functions."""
    state = {"n": 0}

    @cached()
    async def f() -> int:
        state["n"] += 1
        return state["n"]

    async def run() -> list[Any]:
        return [await f(), await f.ainvalidate(), await f(), await f.arefresh(), await f()]  # type: ignore[attr-defined]

    assert asyncio.run(run()) == [1, True, 2, 3, 3]


def test_tenants_and_plugins_do_not_share_entries(manager: CacheManager) -> None:
    """The same call caches separately per tenant and per plugin."""
    calls = Calls()

    @cached()
    def f(x: int) -> int:
        calls(x)
        return x

    for plugin, tenant in [("a", "t1"), ("a", "t2"), ("b", "t1"), ("a", None), ("a", "t1")]:
        with scope(plugin=plugin, tenant=tenant, manager=manager):
            f(1)
    assert calls.count == 4


def test_default_namespace_is_module_and_qualname(bound: CacheManager) -> None:
    """Without namespace=, entries live in the namespace '<module>.<qualname>'."""

    @cached()
    def f() -> str:
        return "v"

    f()
    ns = current_cache(f"{__name__}.test_default_namespace_is_module_and_qualname.<locals>.f")
    assert ns.get("()") == "v"


def test_no_scope_raises(manager: CacheManager) -> None:
    """Calling outside any scope says how to bind one."""

    @cached()
    def f() -> int:
        return 1

    with pytest.raises(NoScopeError, match="scope"):
        f()


def test_asyncio_stampede_computes_once(bound: CacheManager) -> None:
    """100 concurrent asyncio callers of one cold key run the function once."""
    calls = Calls()

    @cached()
    async def slow(x: int) -> int:
        calls(x)
        await asyncio.sleep(0.05)
        return x

    async def run() -> list[int]:
        return await asyncio.gather(*(slow(7) for _ in range(100)))

    assert asyncio.run(run()) == [7] * 100
    assert calls.count == 1


def test_thread_stampede_computes_once(bound: CacheManager) -> None:
    """50 threads on one cold key run the function once."""
    calls = Calls()
    barrier = threading.Barrier(50)

    @cached()
    def slow(x: int) -> int:
        calls(x)
        time.sleep(0.05)
        return x

    results: list[int] = []

    def worker() -> None:
        barrier.wait()
        results.append(slow(3))

    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(worker,)) for _ in range(50)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [3] * 50
    assert calls.count == 1
    assert slow.invalidate.__self__._policy._locks == {}  # type: ignore[attr-defined]


def test_failed_computation_reaches_every_waiter_and_is_not_cached(bound: CacheManager) -> None:
    """When the first caller fails, its waiters get the error and the next call retries."""
    calls = Calls()

    @cached()
    async def boom() -> int:
        calls()
        await asyncio.sleep(0.01)
        raise ValueError("nope")

    async def run() -> list[Any]:
        return await asyncio.gather(*(boom() for _ in range(5)), return_exceptions=True)

    assert all(isinstance(r, ValueError) for r in asyncio.run(run()))
    assert calls.count == 1
    asyncio.run(run())
    assert calls.count == 2


def test_cross_process_lock_waits_for_the_holder(bound: CacheManager) -> None:
    """With lock=True a caller that finds the store lock held polls for the value the
    holder writes, instead of computing it."""
    calls = Calls()

    @cached(namespace="locked", lock=True)
    def f() -> str:
        calls()
        return "mine"

    cache = current_cache("locked")
    assert cache.add("()|lock", "other-process", ttl=10)
    got: list[str] = []
    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(lambda: got.append(f()),)
    )
    thread.start()
    time.sleep(0.05)
    cache.set("()", "theirs")
    thread.join()
    assert got == ["theirs"]
    assert calls.count == 0


def test_cross_process_lock_gives_up_after_lock_timeout(bound: CacheManager) -> None:
    """A waiter whose holder never writes computes itself after lock_timeout."""

    @cached(namespace="stuck", lock=True, lock_timeout=0.1)
    def f() -> str:
        return "computed"

    assert current_cache("stuck").add("()|lock", "dead-process", ttl=10)
    assert f() == "computed"


def test_lock_is_released_after_computing(bound: CacheManager) -> None:
    """The holder deletes its lock once the value is stored."""

    @cached(namespace="rel", lock=True)
    async def f() -> str:
        return "v"

    assert asyncio.run(f()) == "v"
    assert current_cache("rel").get("()|lock", MISS) is MISS


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_lock_is_released_when_the_function_raises(bound: CacheManager, mode: str) -> None:
    """A holder whose function raises still deletes its lock, and the error reaches the
    caller; nothing is stored."""

    @cached(namespace=f"fails-{mode}", lock=True)
    def sync_f() -> str:
        raise KeyError("boom")

    @cached(namespace=f"fails-{mode}", lock=True)
    async def async_f() -> str:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        sync_f() if mode == "sync" else asyncio.run(async_f())
    cache = current_cache(f"fails-{mode}")
    assert cache.get("()|lock", MISS) is MISS
    assert cache.get("()", MISS) is MISS


def test_stale_while_revalidate_async(bound: CacheManager, clock: FakeClock) -> None:
    """Past ttl but within stale_ttl the old value is served at once and refreshed once."""
    state = {"n": 0}

    @cached(ttl=10, stale_ttl=60, clock=clock)
    async def f() -> int:
        state["n"] += 1
        return state["n"]

    async def run() -> list[int]:
        first = await f()
        clock.advance(15)
        stale = [await f() for _ in range(5)]
        await asyncio.sleep(0.01)  # let the background refresh finish
        return [first, *stale, await f()]

    assert asyncio.run(run()) == [1, 1, 1, 1, 1, 1, 2]
    assert state["n"] == 2
    clock.advance(100)  # beyond ttl + stale_ttl: a plain miss
    assert asyncio.run(f()) == 3  # type: ignore[arg-type]


def test_stale_while_revalidate_sync(bound: CacheManager, clock: FakeClock) -> None:
    """Sync functions refresh a stale entry in a background thread with the same scope."""
    state = {"n": 0}
    refreshed = threading.Event()

    @cached(ttl=10, stale_ttl=60, clock=clock)
    def f() -> int:
        state["n"] += 1
        if state["n"] > 1:
            refreshed.set()
        return state["n"]

    assert f() == 1
    clock.advance(15)
    assert f() == 1
    assert refreshed.wait(2)
    for _ in range(100):  # the refresh stores right after computing
        if f() == 2:
            break
        time.sleep(0.01)
    assert f() == 2


def test_store_outage_fails_open_with_one_warning(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """With the store down the function is called every time, one warning per outage."""
    store = FlakyStore(clock=clock)
    manager = CacheManager(store=store)
    calls = Calls()

    @cached()
    def f(x: int) -> int:
        calls(x)
        return x * 10

    with scope(plugin="p", manager=manager), caplog.at_level(logging.WARNING, "cachekit"):
        assert f(1) == 10
        store.down = True
        assert [f(1) for _ in range(5)] == [10] * 5
        store.down = False
        assert f(2) == 20
        store.down = True
        f(3)
    assert calls.count == 8
    warnings = [r for r in caplog.records if "calls through" in r.getMessage()]
    assert len(warnings) == 2  # two outages


class RecoverOnWarning(logging.Handler):
    """As soon as an outage is reported, one read through ``probe`` succeeds and the store
    goes down again: what another thread's read can do between a failed read and what
    the wrapper does next."""

    def __init__(self, store: FlakyStore, probe: Any) -> None:
        super().__init__()
        self.store, self.probe = store, probe

    def emit(self, record: logging.LogRecord) -> None:
        self.store.down = False
        self.probe()
        self.store.down = True


def test_failed_read_calls_through_when_the_outage_ends_meanwhile(clock: FakeClock) -> None:
    """A read that failed open calls the function, sync and async, even when the outage
    is marked over before the wrapper looks at it."""
    store = FlakyStore(clock=clock)
    manager = CacheManager(store=store)

    @cached()
    def f(x: int) -> int:
        return x * 10

    @cached()
    async def g(x: int) -> int:
        return x * 100

    async def call_g() -> int:
        with scope(plugin="p", manager=manager):
            return await g(1)

    @cached()
    def probe() -> int:
        return 0

    handler = RecoverOnWarning(store, probe)
    logger = logging.getLogger("cachekit")
    logger.addHandler(handler)
    try:
        store.down = True
        with scope(plugin="p", manager=manager):
            assert f(1) == 10
        assert asyncio.run(call_g()) == 100
    finally:
        logger.removeHandler(handler)


def test_async_outage_fails_open(clock: FakeClock) -> None:
    """Async @cached also calls through a dead store."""
    store = FlakyStore(clock=clock)
    store.down = True

    @cached()
    async def f() -> str:
        return "fresh"

    async def run() -> str:
        with scope(plugin="p", manager=CacheManager(store=store)):
            return await f()

    assert asyncio.run(run()) == "fresh"


def test_fail_open_can_be_turned_off(clock: FakeClock) -> None:
    """With failOpen: false a store error propagates."""
    store = FlakyStore(clock=clock)
    manager = CacheManager.from_config({"backend": {"cache": {"failOpen": False}}}, store=store)
    store.down = True

    @cached()
    def f() -> int:
        return 1

    with scope(plugin="p", manager=manager), pytest.raises(StoreUnavailable):
        f()


def test_bad_lock_timeout() -> None:
    """lock_timeout must be positive."""
    with pytest.raises(ValueError, match="lock_timeout"):
        cached(lock=True, lock_timeout=0)


def test_cancelled_leader_hands_over_to_its_waiters(bound: CacheManager) -> None:
    """Cancelling the caller that computes does not cancel the callers waiting on it: one
    of them computes in its place and every waiter gets the value."""
    calls = Calls()

    @cached(namespace="handover")
    async def slow(x: int) -> int:
        calls(x)
        await asyncio.sleep(0.05)
        return x

    async def run() -> list[Any]:
        leader = asyncio.create_task(slow(1))
        await asyncio.sleep(0)  # the leader starts computing
        waiters = [asyncio.create_task(slow(1)) for _ in range(3)]
        await asyncio.sleep(0.01)
        leader.cancel()
        return await asyncio.gather(leader, *waiters, return_exceptions=True)

    results = asyncio.run(run())
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == [1, 1, 1]
    assert calls.count == 2  # the cancelled leader's run, then one waiter's


def test_leader_timed_out_by_wait_for_hands_over(bound: CacheManager) -> None:
    """A leader with a deadline (``asyncio.wait_for``) that expires leaves a caller
    without a deadline its value, not a ``CancelledError``."""

    @cached(namespace="deadline")
    async def slow() -> str:
        await asyncio.sleep(0.05)
        return "done"

    async def run() -> list[Any]:
        hurried = asyncio.create_task(asyncio.wait_for(slow(), 0.01))
        await asyncio.sleep(0)
        patient = asyncio.create_task(slow())
        return await asyncio.gather(hurried, patient, return_exceptions=True)

    hurried, patient = asyncio.run(run())
    assert isinstance(hurried, TimeoutError)
    assert patient == "done"


def test_cancelled_waiter_leaves_the_others_alone(bound: CacheManager) -> None:
    """A waiter that is cancelled raises ``CancelledError`` itself; the leader and the
    other waiters finish with the value, computed once."""
    calls = Calls()

    @cached(namespace="waiter-cancel")
    async def slow() -> str:
        calls()
        await asyncio.sleep(0.03)
        return "v"

    async def run() -> list[Any]:
        tasks = [asyncio.create_task(slow()) for _ in range(4)]
        await asyncio.sleep(0.01)
        tasks[2].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(run())
    assert isinstance(results[2], asyncio.CancelledError)
    assert [results[i] for i in (0, 1, 3)] == ["v", "v", "v"]
    assert calls.count == 1


def test_thread_leader_interrupted_hands_over(bound: CacheManager) -> None:
    """Sync: when the computing thread leaves with a ``BaseException`` that is not the
    function's own error (an interrupt), the next queued thread computes and gets the
    value. (A thread's error, its own or not, never reaches the other threads: each
    queued thread re-reads the store and computes when it finds nothing.)"""
    calls = Calls()
    leader_in = threading.Event()

    class Interrupt(BaseException):
        pass

    @cached(namespace="thread-handover")
    def slow(who: str) -> str:
        calls(who)
        if threading.current_thread().name == "leader":
            leader_in.set()
            time.sleep(0.05)
            raise Interrupt
        return "value"

    results: dict[str, Any] = {}

    def worker() -> None:
        name = threading.current_thread().name
        try:
            results[name] = slow("x")
        except BaseException as exc:  # the test records what each thread saw
            results[name] = exc

    ctx = contextvars.copy_context
    leader = threading.Thread(target=ctx().run, args=(worker,), name="leader")
    leader.start()
    leader_in.wait()
    waiters = [threading.Thread(target=ctx().run, args=(worker,), name=f"w{i}") for i in range(3)]
    for t in waiters:
        t.start()
    for t in [leader, *waiters]:
        t.join()
    assert isinstance(results.pop("leader"), Interrupt)
    assert results == {"w0": "value", "w1": "value", "w2": "value"}
    assert calls.count == 2


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_late_holder_keeps_the_next_owners_lock(
    bound: CacheManager, clock: FakeClock, mode: str
) -> None:
    """A holder whose computation outlives its lock still stores its value, but its
    release leaves the lock another caller took after the expiry."""
    cache = current_cache(f"late-{mode}")

    def outlive_the_lock() -> str:
        clock.advance(1.5)  # lock_timeout is 1 s: our lock has expired
        assert cache.add("()|lock", "next-owner", ttl=1)  # another process takes it
        return "late value"

    @cached(namespace=f"late-{mode}", lock=True, lock_timeout=1)
    def sync_f() -> str:
        return outlive_the_lock()

    @cached(namespace=f"late-{mode}", lock=True, lock_timeout=1)
    async def async_f() -> str:
        return outlive_the_lock()

    assert (sync_f() if mode == "sync" else asyncio.run(async_f())) == "late value"
    assert cache.get("()|lock") == "next-owner"
    assert cache.get("()") == "late value"


class WithoutCompareDelete:
    """A store that is not a BaseStore and has no ``delete_if_equals``: the Store protocol
    alone, delegated to a memory store."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name in ("delete_if_equals", "adelete_if_equals"):
            raise AttributeError(name)
        return getattr(self._store, name)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_store_without_compare_delete_still_keeps_the_next_owners_lock(
    clock: FakeClock, mode: str
) -> None:
    """On a store without ``delete_if_equals`` the release reads the lock and deletes it
    only when it still holds our token (its own lock, yes; the next owner's, no)."""
    manager = CacheManager(store=WithoutCompareDelete(MemoryStore(clock=clock)))  # type: ignore[arg-type]
    with scope(plugin="catalog", tenant="acme", manager=manager):
        cache = current_cache("plain")

        def outlive_the_lock() -> str:
            clock.advance(1.5)
            assert cache.add("()|lock", "next-owner", ttl=1)
            return "late value"

        @cached(namespace="plain", lock=True, lock_timeout=1)
        def sync_f() -> str:
            return outlive_the_lock()

        @cached(namespace="plain", lock=True, lock_timeout=1)
        async def async_f() -> str:
            return outlive_the_lock()

        assert (sync_f() if mode == "sync" else asyncio.run(async_f())) == "late value"
        assert cache.get("()|lock") == "next-owner"

        @cached(namespace="plain-quick", lock=True, lock_timeout=1)
        def quick() -> str:
            return "v"

        assert quick() == "v"
        assert current_cache("plain-quick").get("()|lock", MISS) is MISS  # ours: released


# --- durations, checked when applied ------------------------------------------------------


@pytest.mark.parametrize("ttl", ["10s", "PT10S", "10 seconds", {"seconds": 10}, 10, 10.0])
def test_ttl_takes_every_duration_form(bound: CacheManager, clock: FakeClock, ttl: Any) -> None:
    """A ttl written as a string, ISO 8601 or a mapping keeps the entry exactly as long as
    the same seconds do."""
    calls = Calls()

    @cached(ttl=ttl)
    def f() -> int:
        calls("f")
        return 1

    f()
    clock.advance(9)
    f()
    assert calls.count == 1
    clock.advance(2)
    f()
    assert calls.count == 2


def test_stale_ttl_and_lock_timeout_take_duration_strings(
    bound: CacheManager, clock: FakeClock
) -> None:
    """stale_ttl='1m' serves a stale entry for a minute; lock_timeout='2s' is accepted."""
    calls = Calls()

    @cached(ttl="10s", stale_ttl="1m", lock=True, lock_timeout="2s", clock=clock)
    async def f() -> int:
        calls("f")
        return calls.count

    async def run() -> list[int]:
        first = await f()
        clock.advance(30)  # past ttl, within ttl + stale_ttl: served stale
        stale = await f()
        await asyncio.sleep(0.05)  # the background refresh
        return [first, stale, await f()]

    assert asyncio.run(run()) == [1, 1, 2]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"ttl": "1 fortnight"}, "ttl: cannot read '1 fortnight'"),
        ({"ttl": "P1M"}, "ttl: cannot read 'P1M': years and months"),
        ({"ttl": -5}, "ttl must be a finite duration >= 0"),
        ({"ttl": [60]}, "ttl must be a duration, got list"),
        ({"stale_ttl": "soon"}, "stale_ttl: cannot read 'soon'"),
        ({"lock_timeout": "0s"}, "lock_timeout must be > 0"),
        ({"lock_timeout": "ten"}, "lock_timeout: cannot read 'ten'"),
    ],
)
def test_bad_durations_fail_when_applied_naming_the_parameter(
    options: dict[str, Any], named: str
) -> None:
    """A bad duration raises CacheValueError when the decorator is applied (no scope, no
    call needed), naming the parameter and what is wrong."""
    with pytest.raises(CacheValueError, match=named):
        cached(**options)


def test_a_bad_ttl_from_a_callable_names_ttl(bound: CacheManager) -> None:
    """A ttl callable returning no duration raises CacheValueError naming ttl."""

    @cached(ttl=lambda result: "later")
    def f() -> int:
        return 1

    with pytest.raises(CacheValueError, match=r"^ttl: cannot read 'later'"):
        f()


# --- one read and one miss per miss, sync and async alike ---------------------------------


class CountingReads(MemoryStore):
    """A memory store that counts its reads."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reads = 0

    def get(self, key: str) -> bytes | None:
        self.reads += 1
        return super().get(key)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_miss_reads_the_store_once_and_counts_once(kind: str) -> None:
    """A miss then a hit: two store reads, hits=1 misses=1 in manager.stats(), for def and
    async def alike."""
    store = CountingReads()
    manager = CacheManager(store=store)

    @cached(namespace="n")
    def f(x: int) -> int:
        return x

    @cached(namespace="n")
    async def g(x: int) -> int:
        return x

    with scope(plugin="p", manager=manager):
        if kind == "sync":
            assert [f(1), f(1)] == [1, 1]
        else:

            async def run() -> list[int]:
                return [await g(1), await g(1)]

            assert asyncio.run(run()) == [1, 1]
    assert store.reads == 2
    [row] = [row for row in manager.stats() if row.namespace == "n"]
    assert (row.hits, row.misses) == (1, 1)


def test_a_thread_that_waited_rereads_once(bound: CacheManager) -> None:
    """A thread that queued behind another's computation re-reads the store (and finds the
    value) instead of computing: 1 computation; 2 misses then 1 hit on the re-read."""
    store = CountingReads()
    manager = CacheManager(store=store)
    started, release = threading.Event(), threading.Event()
    calls = Calls()

    @cached(namespace="n")
    def slow(x: int) -> int:
        calls(x)
        started.set()
        release.wait(5)
        return x

    def first() -> None:
        with scope(plugin="p", manager=manager):
            slow(1)

    leader = threading.Thread(target=first)
    leader.start()
    started.wait(5)
    second: list[int] = []

    def follower() -> None:
        with scope(plugin="p", manager=manager):
            second.append(slow(1))

    waiter = threading.Thread(target=follower)
    waiter.start()
    locks = slow.invalidate.__self__._policy._locks  # type: ignore[attr-defined]
    while locks.get(("p", None, "1"), [None, 0])[1] != 2:
        time.sleep(0.001)  # until the follower has missed and queued on the key's lock
    release.set()
    leader.join()
    waiter.join()
    assert second == [1]
    assert calls.count == 1
    assert store.reads == 3  # leader 1, follower 1 + 1 re-read after waiting
    [row] = [row for row in manager.stats() if row.namespace == "n"]
    assert (row.hits, row.misses) == (1, 2)


# --- refresh and arefresh -----------------------------------------------------------------


def test_refresh_on_an_async_function_points_to_arefresh(bound: CacheManager) -> None:
    """refresh() of an async function is a TypeError naming arefresh, not a stray
    coroutine; arefresh() of a def function names refresh."""

    @cached()
    async def load_user(user_id: int) -> int:
        return user_id

    @cached()
    def load_item(item_id: int) -> int:
        return item_id

    with pytest.raises(TypeError, match=r"use `await load_user.arefresh\(...\)`"):
        load_user.refresh(42)  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match=r"call load_item.refresh\(...\)"):
        asyncio.run(load_item.arefresh(42))  # type: ignore[attr-defined]


def test_arefresh_on_a_method_recomputes_and_stores(bound: CacheManager) -> None:
    """arefresh on an async method calls it with its instance and stores the new value."""

    class Repo:
        def __init__(self) -> None:
            self.n = 0

        @cached()
        async def count(self) -> int:
            self.n += 1
            return self.n

    repo = Repo()

    async def run() -> list[int]:
        return [await repo.count(), await repo.count.arefresh(), await repo.count()]  # type: ignore[attr-defined]

    assert asyncio.run(run()) == [1, 2, 2]


# --- keys from scalars ---------------------------------------------------------------------


class Tier(enum.Enum):
    GOLD = "gold"


class Opaque:
    """An object whose text is its address."""


def test_key_templates_format_scalars_and_enums_by_value(bound: CacheManager) -> None:
    """A template over an int, a UUID, a Decimal and an Enum builds the key from their
    values (the enum's value, not its class-and-name text)."""

    @cached(namespace="users", key="u:{user_id}:{org}:{amount}:{tier}")
    def f(user_id: int, org: uuid.UUID, amount: decimal.Decimal, tier: Tier) -> int:
        return 1

    org = uuid.UUID("12345678-1234-5678-1234-567812345678")
    f(42, org, decimal.Decimal("1.50"), Tier.GOLD)
    assert current_cache("users").get(f"u:42:{org}:1.50:gold") == 1


def test_key_templates_refuse_address_text(bound: CacheManager) -> None:
    """A template field whose text is the object's address raises CacheKeyError; an
    attribute of it with a stable text is fine."""

    @cached(key="o:{thing}")
    def f(thing: Any) -> int:
        return 1

    @cached(key="o:{thing.size}")
    def g(thing: Any) -> int:
        return thing.size  # type: ignore[no-any-return]

    with pytest.raises(CacheKeyError, match="stable key from Opaque"):
        f(Opaque())
    box = Opaque()
    box.size = 3  # type: ignore[attr-defined]
    assert g(box) == 3


def test_key_template_naming_no_parameter_fails_when_applied() -> None:
    """A template field that is not a parameter is a CacheKeyError when applied."""
    with pytest.raises(CacheKeyError, match=r"names no parameter of .*\['usr_id'\]"):

        @cached(key="user:{usr_id}")
        def f(user_id: int) -> int:
            return user_id


def test_key_callable_may_return_an_int_or_uuid(bound: CacheManager) -> None:
    """A key= callable returning an int id (or a UUID) keys by its text; one returning an
    object is refused."""
    calls = Calls()

    @cached(key=lambda user: user["id"])
    def f(user: dict[str, Any]) -> int:
        calls(user["id"])
        return 1

    @cached(key=lambda: Opaque())
    def g() -> int:
        return 1

    f({"id": 7, "seen": 1})
    f({"id": 7, "seen": 2})
    assert calls.count == 1
    with pytest.raises(CacheKeyError, match="key= must produce a non-empty str"):
        g()


# --- other libraries' parameter names -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("expire", "cachekit calls it ttl="),
        ("key_builder", "cachekit calls it key="),
        ("make_cache_key", "cachekit calls it key="),
        ("timeout", "ttl= .* or lock_timeout="),
        ("key_prefix", "namespace="),
        ("early_ttl", "stale_ttl="),
        ("expiry_seconds", "unexpected keyword argument 'expiry_seconds'; its parameters: "),
    ],
)
def test_peer_parameter_names_get_cachekits_name(name: str, hint: str) -> None:
    """A parameter another caching library uses raises a TypeError naming cachekit's."""
    with pytest.raises(TypeError, match=hint):
        cached(**{name: 60})
