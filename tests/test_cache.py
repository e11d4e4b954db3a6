"""The scoped Cache and CacheManager API beyond the store contract."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from custom_store import DictStore
from flaky_store import FlakyStore

import cachekit.host
from cachekit import Cache
from cachekit.cache import UnreadableLog, unreadable_log
from cachekit.codec import DecodeError
from cachekit.errors import CacheKeyError, CacheValueError, StoreUnavailable
from cachekit.host import CacheManager
from cachekit.stores.memory import MemoryStore
from cachekit.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def manager(clock: FakeClock) -> CacheManager:
    return CacheManager(store=MemoryStore(clock=clock))


def test_public_api_is_pinned() -> None:
    """The names exported by `cachekit` are exactly the plugin surface."""
    expected = {
        "MISS",
        "Cache",
        "CacheKeyError",
        "CachePolicyError",
        "CacheValueError",
        "CachekitError",
        "ConfigError",
        "NoScopeError",
        "RateLimitExceeded",
        "StoreError",
        "StoreTimeout",
        "StoreUnavailable",
        "__version__",
        "Scope",
        "carry",
        "current_cache",
        "current_scope",
        "cached",
        "cache_response",
        "invalidate_tags",
        "ainvalidate_tags",
        "invalidate_path",
        "ainvalidate_path",
        "counter",
        "rate_limit",
        "rate_limited",
        "RateLimitResult",
    }
    assert set(cachekit.__all__) == expected
    for name in cachekit.__all__:
        assert hasattr(cachekit, name), name


def test_host_api_is_pinned() -> None:
    """The names exported by `cachekit.host` are exactly the host's API."""
    assert set(cachekit.host.__all__) == {
        "Cache",
        "CacheBinding",
        "launch",
        "socket_bindings",
        "CacheConfig",
        "CacheManager",
        "CacheMiddleware",
        "Codec",
        "Scope",
        "ScopeContext",
        "WSGICacheMiddleware",
        "active_manager",
        "get_default_manager",
        "scope",
        "set_default_manager",
    }
    for name in cachekit.host.__all__:
        assert hasattr(cachekit.host, name), name


def test_errors_share_one_root() -> None:
    """Every cachekit exception derives from CachekitError, with builtin bases where apt."""
    for name in (
        "ConfigError",
        "CacheKeyError",
        "CacheValueError",
        "NoScopeError",
        "StoreError",
        "StoreUnavailable",
        "StoreTimeout",
        "RateLimitExceeded",
    ):
        assert issubclass(getattr(cachekit, name), cachekit.CachekitError)
    assert issubclass(cachekit.ConfigError, ValueError)
    assert issubclass(cachekit.CacheValueError, TypeError)
    assert issubclass(cachekit.StoreTimeout, cachekit.StoreError)


def test_reprs_say_what_they_are(manager: CacheManager) -> None:
    """Cache and manager reprs show scope and store."""
    cache = manager.for_plugin("catalog", tenant="acme").namespace("users")
    assert (
        repr(cache) == "Cache(plugin='catalog', tenant='acme', namespace='users', store='memory')"
    )
    assert repr(manager).startswith("CacheManager(store='memory', target='this process'")


def test_scope_properties(manager: CacheManager) -> None:
    """A cache exposes its plugin, tenant, namespace and default TTL, and no store."""
    cache = manager.for_plugin("catalog").namespace("n").with_options(default_ttl=30)
    assert (cache.plugin, cache.tenant, cache.namespace_name) == ("catalog", None, "n")
    assert cache.default_ttl == 30.0
    assert not hasattr(cache, "store")


def test_every_plugin_shares_one_store(manager: CacheManager) -> None:
    """All caches of a manager share its single store (one pool per process): what one
    writes, the manager's store holds."""
    for plugin in "abc":
        for tenant in ("x", None):
            cache = manager.for_plugin(plugin, tenant=tenant)
            cache.set("k", plugin)
            assert manager.store.get(manager.full_key(cache, "k")) is not None


@pytest.mark.parametrize(("plugin", "tenant"), [("", "t"), ("p", ""), (None, "t"), ("p", 5)])
def test_bad_ids_are_refused(manager: CacheManager, plugin: object, tenant: object) -> None:
    """for_plugin validates ids at once."""
    with pytest.raises(CacheKeyError):
        manager.for_plugin(plugin, tenant=tenant)  # type: ignore[arg-type]


def test_namespaces_do_not_nest(manager: CacheManager) -> None:
    """namespace() on a namespace view says how to get another namespace."""
    users = manager.for_plugin("p").namespace("users")
    with pytest.raises(CacheKeyError, match="do not nest"):
        users.namespace("admins")
    with pytest.raises(CacheKeyError):
        manager.for_plugin("p").namespace("")


def test_default_ttl_from_config_and_with_options(clock: FakeClock) -> None:
    """defaultTtl applies when ttl=None; with_options overrides it; ttl=0 opts out."""
    manager = CacheManager.from_config({"backend": {"cache": {"defaultTtl": "10s"}}})
    manager.store = MemoryStore(clock=clock)
    cache = manager.for_plugin("p")
    cache.set("default", 1)
    cache.set("forever", 1, ttl=0)
    cache.with_options(default_ttl=timedelta(seconds=100)).set("long", 1)
    clock.advance(11)
    assert cache.get_many(["default", "forever", "long"]) == {"forever": 1, "long": 1}


def test_with_options_zero_means_no_expiry(manager: CacheManager, clock: FakeClock) -> None:
    """with_options(default_ttl=0) stores without expiry."""
    cache = manager.for_plugin("p").with_options(default_ttl=0)
    assert cache.default_ttl is None
    cache.set("k", 1)
    clock.advance(10**6)
    assert cache.get("k") == 1


def test_with_options_rejects_bad_ttl(manager: CacheManager) -> None:
    """A bad default TTL fails when the view is made, not on first use."""
    with pytest.raises(CacheValueError):
        manager.for_plugin("p").with_options(default_ttl=-1)


def test_manager_clear_needs_a_target(manager: CacheManager) -> None:
    """manager.clear() without plugin or tenant refuses to wipe everything."""
    with pytest.raises(CacheKeyError, match="name a plugin, a tenant or both"):
        manager.clear()
    with pytest.raises(CacheKeyError):
        asyncio.run(manager.aclear())


def test_aget_or_set_awaits_a_coroutine_default(manager: CacheManager) -> None:
    """aget_or_set accepts an async factory and stores its result."""
    cache = manager.for_plugin("p")

    async def compute() -> str:
        return "computed"

    async def run() -> tuple[str, str]:
        return await cache.aget_or_set("k", compute), await cache.aget_or_set("k", "other")

    assert asyncio.run(run()) == ("computed", "computed")


def test_get_or_set_with_plain_value(manager: CacheManager) -> None:
    """A non-callable default is stored as is."""
    cache = manager.for_plugin("p")
    assert cache.get_or_set("k", [1, 2]) == [1, 2]
    assert cache.get("k") == [1, 2]


def test_manager_context_managers(manager: CacheManager) -> None:
    """The manager closes its store on `with` and `async with` exit."""
    closed: list[str] = []
    manager.store.close = lambda: closed.append("sync")  # type: ignore[method-assign]

    async def aclose() -> None:
        closed.append("async")

    manager.store.aclose = aclose  # type: ignore[method-assign]
    with manager:
        pass

    async def run() -> None:
        async with manager:
            pass

    asyncio.run(run())
    assert closed == ["sync", "async"]


def test_cache_can_be_built_directly() -> None:
    """Cache(store, plugin=...) works without a manager (its own codec and key space)."""
    cache = Cache(MemoryStore(), plugin="p", tenant="t")
    cache.set("k", {"a": 1})
    assert cache.get("k") == {"a": 1}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_store_calls_are_counted_alike_in_both_families(mode: str) -> None:
    """Sync and async calls bump the same stats: a store error counts once and still
    raises, and a network-like (blocking) store's successful calls are timed."""
    flaky = FlakyStore()
    failing_manager, timed_manager = CacheManager(store=flaky), CacheManager(store=DictStore())
    failing, timed = failing_manager.for_plugin("p"), timed_manager.for_plugin("p")
    flaky.down = True

    async def both() -> None:
        with pytest.raises(StoreUnavailable):
            await failing.aset("k", 1)
        with pytest.raises(StoreUnavailable):
            await failing.aincr("n")
        await timed.aset("k", 1)
        await timed.adelete("k")

    if mode == "sync":
        with pytest.raises(StoreUnavailable):
            failing.set("k", 1)
        with pytest.raises(StoreUnavailable):
            failing.incr("n")
        timed.set("k", 1)
        timed.delete("k")
    else:
        asyncio.run(both())
    [errors] = failing_manager.stats()
    assert (errors.errors, errors.sets, errors.timed_calls) == (2, 0, 0)
    [row] = timed_manager.stats()
    assert (row.errors, row.sets, row.deletes, row.timed_calls) == (0, 1, 1, 2)
    assert row.latency_seconds > 0


class AlignedDictStore(DictStore):
    """A DictStore that also reads batches in key order (an AlignedStore, as Redis is)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def get_values(self, keys: list[str]) -> list[bytes | None]:
        self.batches.append(list(keys))
        return [self.get(key) for key in keys]

    async def aget_values(self, keys: list[str]) -> list[bytes | None]:
        return self.get_values(keys)


@pytest.mark.parametrize("store_class", [DictStore, AlignedDictStore])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_batch_reads_agree_on_every_store_shape(store_class: type[DictStore], mode: str) -> None:
    """get_many answers the same through a store that returns a mapping of found keys and
    one that returns a value per key in order: found keys only, duplicates once, an
    unreadable value left out like a miss, hits and misses counted per key asked."""
    store = store_class()
    manager = CacheManager(store=store)
    cache = manager.for_plugin("p", tenant="t")
    cache.set_many({"a": 1, "b": [2]}, ttl=0)
    store.set(manager.full_key(cache, "bad"), b"\xc1", None)  # 0xc1 is never valid msgpack
    asked = (key for key in ["a", "zz", "b", "a", "bad"])  # any iterable, read once
    found = cache.get_many(asked) if mode == "sync" else asyncio.run(cache.aget_many(asked))
    assert found == {"a": 1, "b": [2]}
    (row,) = manager.stats()
    assert (row.hits, row.misses) == (4, 1)
    if isinstance(store, AlignedDictStore) and mode == "sync":
        assert store.batches == [[manager.full_key(cache, k) for k in ["a", "zz", "b", "a", "bad"]]]


@pytest.mark.parametrize("store_class", [DictStore, AlignedDictStore])
@pytest.mark.parametrize("bad", [["ok", ""], ["ok", 5], ["ok", b"k"], ["ok", None]])
def test_a_bad_key_in_a_batch_is_refused_before_any_io(
    store_class: type[DictStore], bad: list[object]
) -> None:
    """A batch holding an empty or non-str key raises CacheKeyError and reads nothing."""
    store = store_class()
    cache = CacheManager(store=store).for_plugin("p")
    calls: list[object] = []
    store.get_many = lambda keys: calls.append(keys) or {}  # type: ignore[method-assign]
    with pytest.raises(CacheKeyError):
        cache.get_many(bad)  # type: ignore[arg-type]
    with pytest.raises(CacheKeyError):
        cache.delete_many(bad)  # type: ignore[arg-type]
    assert calls == []
    if isinstance(store, AlignedDictStore):
        assert store.batches == []


def test_unreadable_value_is_logged_once_per_key_and_period(
    manager: CacheManager,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Bad bytes under a hot key read as a miss every time but are logged once per key per
    period, not on every read."""
    monkeypatch.setattr(unreadable_log, "clock", clock)
    cache = manager.for_plugin("p", tenant="t")
    for key in ("a", "b"):
        manager.store.set(manager.full_key(cache, key), b"4_2", None)

    def warnings() -> int:
        return len([r for r in caplog.records if "unreadable" in r.getMessage()])

    with caplog.at_level(logging.WARNING, logger="cachekit"):
        for _ in range(50):
            assert cache.get("a", "miss") == "miss"
            assert cache.get_many(["a"]) == {}
            assert asyncio.run(cache.aget("a", "miss")) == "miss"
        assert warnings() == 1
        assert cache.get("b") is None
        assert warnings() == 2  # another key: its own line
        clock.advance(unreadable_log.period + 1)
        assert cache.get("a") is None
        assert warnings() == 3  # a new period


def test_unreadable_log_forgets_old_keys(clock: FakeClock) -> None:
    """The log remembers a bounded number of keys (many bad keys do not grow it forever)."""
    log = UnreadableLog(max_keys=10, clock=clock)
    for i in range(1000):
        log.warn(f"k{i}", DecodeError("bad"))
    assert len(log._logged) <= 10  # the bound is the behaviour under test


@pytest.mark.parametrize("store_class", [DictStore, AlignedDictStore])
def test_a_batch_key_with_a_lone_surrogate_is_refused_and_unicode_passes(
    store_class: type[DictStore],
) -> None:
    """Batch calls check keys as single calls do: a lone surrogate is a CacheKeyError, other
    unicode keys work."""
    cache = CacheManager(store=store_class()).for_plugin("p")
    with pytest.raises(CacheKeyError, match="surrogate"):
        cache.get_many(["ok", "k\ud800"])
    cache.set("clé", 1)
    assert cache.get_many(["clé", "ok"]) == {"clé": 1}
