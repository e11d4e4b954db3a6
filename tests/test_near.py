"""The near cache's own rules (cachekit.near, cachekit.stores.near): config, what a hit
returns, own writes, reads in flight, tracking lost and back, bounds, per-plugin regions,
exact operations, metrics and fork. The origin is the memory store (or memcached, real)
and the tracker a recording stand-in: the Redis tracker and the consistency under load of
real processes are tested in test_tracking.py and test_near_consistency.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import threading
from collections.abc import Callable
from typing import Any

import pytest

from cachekit import MISS, Cache
from cachekit.config import parse_cache_section
from cachekit.config.schema import NearCacheConfig
from cachekit.errors import ConfigError
from cachekit.host import CacheManager
from cachekit.keys import KeySpace
from cachekit.metrics import Metrics
from cachekit.near import NearCache, NearSettings, near_settings
from cachekit.stores.memory import MemoryStore
from cachekit.stores.near import NearStore, NearView
from tests.servers import MemcachedServer

KEY = "k"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Tracker:
    """A stand-in for the Redis tracker: one source, established when the test says."""

    def __init__(self) -> None:
        self.sink: NearCache | None = None
        self.starts = 0
        self.stops = 0

    def start(self, sink: NearCache) -> Callable[[], None]:
        self.sink, self.starts = sink, self.starts + 1
        sink.tracking_lost("node")
        return self.stop

    def stop(self) -> None:
        self.stops += 1
        assert self.sink is not None
        self.sink.tracking_lost("node")


class CountingStore(MemoryStore):
    """A memory store counting its reads, whose ``get`` can be held mid-flight."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gets = 0
        self.hold: threading.Event | None = None
        self.reading = threading.Event()

    def get(self, key: str) -> bytes | None:
        self.gets += 1
        value = super().get(key)
        if self.hold is not None:
            self.reading.set()
            self.hold.wait(5)
        return value

    def get_many(self, keys: Any) -> dict[str, bytes]:
        self.gets += 1
        return super().get_many(keys)


def settings(**changes: Any) -> NearSettings:
    base: dict[str, Any] = {"max_entries": 100, "max_bytes": None, "ttl": 60.0, "tracked": True}
    return NearSettings(**(base | changes))


class Rig:
    """A near cache in front of a counting memory store, tracked by a stand-in tracker,
    and the caches of two plugins reading through it."""

    def __init__(self, **changes: Any) -> None:
        self.clock = Clock()
        self.origin = CountingStore()
        self.tracker = Tracker()
        self.near = NearCache(
            settings(**changes), start_tracking=self.tracker.start, clock=self.clock
        )
        self.store = NearStore(self.origin, self.near)
        self.metrics = Metrics()
        self.keyspace = KeySpace("")

    def cache(self, plugin: str = "catalog", **kwargs: Any) -> Cache:
        return Cache(
            self.store, plugin=plugin, keyspace=self.keyspace, metrics=self.metrics, **kwargs
        )

    def establish(self) -> None:
        """Start tracking (a first read) and have the tracker establish its source."""
        self.cache("warm").get("x")
        self.near.tracking_established("node")
        assert self.near.live

    def row(self, plugin: str = "catalog") -> Any:
        return next(r for r in self.metrics.snapshot() if r.plugin == plugin)


@pytest.fixture
def rig() -> Rig:
    r = Rig()
    r.establish()
    return r


# --- config ----------------------------------------------------------------------------


def test_near_cache_config_forms() -> None:
    """``nearCache`` takes a mapping of its four keys or a bare boolean, durations as
    elsewhere, and refuses unknown keys with a suggestion."""
    config = parse_cache_section(
        {"store": "redis", "connection": "redis://h:1", "nearCache": {"maxEntries": 5, "ttl": "2s"}}
    )
    assert config.near_cache == NearCacheConfig(max_entries=5, ttl=2.0)
    assert parse_cache_section({"nearCache": False}).near_cache == NearCacheConfig(enabled=False)
    with pytest.raises(ConfigError, match="did you mean 'maxEntries'") as info:
        parse_cache_section({"nearCache": {"maxEntry": 5}})
    assert info.value.path == "backend.cache.nearCache.maxEntry"


def test_near_cache_defaults_per_store(memcached_server: MemcachedServer) -> None:
    """On Redis a nearCache section turns it on with the defaults; on memcached it stays
    off unless enabled, and enabled it needs the ttl that bounds its staleness; on the
    memory store it is refused."""
    redis = parse_cache_section({"store": "redis", "connection": "redis://h:1", "nearCache": {}})
    assert near_settings(redis) == NearSettings(10_000, 64 * 2**20, 60.0, tracked=True)
    mc = {"store": "memcache", "connection": f"127.0.0.1:{memcached_server.port}"}
    assert near_settings(parse_cache_section(mc | {"nearCache": {"ttl": "1s"}})) is None
    with pytest.raises(ConfigError, match="staleness you accept") as info:
        parse_cache_section(mc | {"nearCache": True})
    assert info.value.path == "backend.cache.nearCache.ttl"
    on = parse_cache_section(mc | {"nearCache": {"enabled": True, "ttl": "500ms"}})
    assert near_settings(on) == NearSettings(10_000, 64 * 2**20, 0.5, tracked=False)
    with pytest.raises(ConfigError, match="already lives in this process"):
        parse_cache_section({"nearCache": True})


def test_manager_wraps_the_store_and_logs_it(
    memcached_server: MemcachedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A binding with a near cache has a NearStore in front of its store, its caches
    read through a NearView, its counters through the store, and the start-up line says
    so."""
    section = {
        "store": "memcache",
        "connection": f"127.0.0.1:{memcached_server.port}",
        "nearCache": {"enabled": True, "ttl": "1s", "maxEntries": 50},
    }
    with caplog.at_level(logging.INFO, logger="cachekit"):
        manager = CacheManager.from_section(section)
        CacheManager.from_section({"store": "redis", "connection": "redis://h:1", "nearCache": {}})
    assert "near cache but no key prefix" in caplog.text
    assert isinstance(manager.store, NearStore)
    assert "near cache 50 entries, 64 MiB, ttl 1s, bounded by ttl only" in caplog.text
    cache = manager.for_plugin("catalog", tenant="acme")
    assert "NearView" in repr(cache._store)
    assert type(cache.exact()._store) is NearStore
    manager.close()


# --- what a hit returns ------------------------------------------------------------------


def test_a_hit_is_served_from_memory_and_cannot_be_mutated(rig: Rig) -> None:
    """The second read of a key is a near hit (the origin is not asked again), and
    mutating what a read returned does not change what the next read gets."""
    cache = rig.cache()
    cache.set(KEY, {"items": [1, 2]})
    first = cache.get(KEY)
    gets = rig.origin.gets
    first["items"].append(3)
    assert cache.get(KEY) == {"items": [1, 2]}
    assert rig.origin.gets == gets
    assert rig.row().near_hits == 1


def test_own_writes_are_visible_at_once(rig: Rig) -> None:
    """Every write through the binding drops the key here: set, delete, incr, expire,
    set_many, delete_many, add after delete, clear."""
    cache = rig.cache()
    cache.set(KEY, 1)
    assert cache.get(KEY) == 1
    assert cache.get(KEY) == 1
    cache.set(KEY, 2)
    assert cache.get(KEY) == 2
    cache.delete(KEY)
    assert cache.get(KEY, MISS) is MISS
    cache.set_many({"a": 1, "b": 2})
    assert cache.get_many(["a", "b"]) == {"a": 1, "b": 2}
    cache.set_many({"a": 3})
    assert cache.get("a") == 3
    cache.delete_many(["a", "b"])
    assert cache.get_many(["a", "b"]) == {}
    cache.incr("n")
    assert cache.get("n") == 1
    cache.incr("n")
    assert cache.get("n") == 2
    assert cache.add("fresh", 1)
    assert cache.get("fresh") == 1
    assert cache.delete_if_equals("fresh", 1)
    assert cache.get("fresh", MISS) is MISS


def test_a_write_through_the_host_store_drops_the_entry(rig: Rig) -> None:
    """The binding's store (what host tools write through) drops a held entry too."""
    cache = rig.cache()
    cache.set(KEY, 1)
    cache.get(KEY)
    rig.store.set(rig.keyspace.full_key("catalog", None, None, KEY), cache._pack(5), None)
    assert cache.get(KEY) == 5


# --- reads in flight ----------------------------------------------------------------------


def _read_in_flight(rig: Rig, interrupt: Callable[[], None]) -> Any:
    """Start a read of KEY, hold it after the origin answered, run ``interrupt``, let the
    read finish; its value."""
    cache = rig.cache()
    rig.origin.hold = threading.Event()
    result: list[Any] = []
    reader = threading.Thread(target=lambda: result.append(cache.get(KEY)))
    reader.start()
    assert rig.origin.reading.wait(5)
    interrupt()
    rig.origin.hold.set()
    reader.join(5)
    rig.origin.hold = None
    return result[0]


def test_an_invalidation_during_a_read_keeps_its_answer_out(rig: Rig) -> None:
    """A read whose key is invalidated while it is in flight returns what the store said
    but does not keep it: the next read asks the store again."""
    full = rig.keyspace.full_key("catalog", None, None, KEY)
    rig.origin.set(full, rig.cache()._pack("old"), None)
    assert _read_in_flight(rig, lambda: rig.near.invalidate([full])) == "old"
    gets = rig.origin.gets
    rig.cache().get(KEY)
    assert rig.origin.gets == gets + 1


def test_a_tracking_loss_during_a_read_keeps_its_answer_out(rig: Rig) -> None:
    """A read in flight when tracking is lost and re-established is not kept either
    (its answer may predate invalidations nobody received)."""
    full = rig.keyspace.full_key("catalog", None, None, KEY)
    rig.origin.set(full, rig.cache()._pack("old"), None)

    def blip() -> None:
        rig.near.tracking_lost("node")
        rig.near.tracking_established("node")

    assert _read_in_flight(rig, blip) == "old"
    gets = rig.origin.gets
    rig.cache().get(KEY)
    assert rig.origin.gets == gets + 1


def test_a_cancelled_async_read_keeps_nothing() -> None:
    """A read cancelled while the store is asked raises CancelledError to its caller
    and keeps nothing."""
    rig = Rig()
    rig.establish()

    class SlowStore(MemoryStore):
        async def aget(self, key: str) -> bytes | None:
            await asyncio.sleep(10)
            return None

    rig.store = NearStore(SlowStore(), rig.near)

    async def run() -> None:
        task = asyncio.create_task(rig.cache().aget(KEY))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert not rig.near.shared.entries


# --- tracking lost and back ----------------------------------------------------------------


def test_nothing_is_served_until_tracking_is_established() -> None:
    """A tracked near cache starts its tracker on first use and serves nothing until it
    is established; the read that started it goes to the store."""
    rig = Rig()
    cache = rig.cache()
    cache.set(KEY, 1)
    assert cache.get(KEY) == 1
    assert cache.get(KEY) == 1
    assert rig.tracker.starts == 1
    assert not rig.near.live
    assert rig.row().near_hits == 0
    rig.near.tracking_established("node")
    cache.get(KEY)
    assert cache.get(KEY) == 1
    assert rig.row().near_hits == 1


def test_a_lost_tracking_connection_flushes_and_reads_the_store(rig: Rig) -> None:
    """Losing tracking drops every entry and sends every read to the store (another
    process's write is seen at once) until it is established again."""
    cache = rig.cache()
    cache.set(KEY, 1)
    cache.get(KEY)
    rig.near.tracking_lost("node")
    full = rig.keyspace.full_key("catalog", None, None, KEY)
    rig.origin.set(full, cache._pack(2), None)  # another process's write, unannounced
    assert cache.get(KEY) == 2
    gets = rig.origin.gets
    assert cache.get(KEY) == 2
    assert rig.origin.gets == gets + 1  # not kept while down
    rig.near.tracking_established("node")
    cache.get(KEY)
    cache.get(KEY)
    assert rig.origin.gets == gets + 2


def test_close_stops_tracking_and_the_next_read_starts_it(rig: Rig) -> None:
    """close() stops the tracker and forgets the entries; the next read starts a new one."""
    cache = rig.cache()
    cache.set(KEY, 1)
    cache.get(KEY)
    rig.store.close()
    assert rig.tracker.stops == 1
    assert not rig.near.live
    cache.get(KEY)
    assert rig.tracker.starts == 2


def test_a_forked_child_starts_its_own_tracking(rig: Rig) -> None:
    """In a forked child the parent's entries are gone and nothing is served until the
    child's own tracker is established."""
    cache = rig.cache()
    cache.set(KEY, 1)
    cache.get(KEY)
    queue: multiprocessing.Queue[Any] = multiprocessing.get_context("fork").Queue()

    def child() -> None:
        held = sum(len(r.entries) for r in rig.near._all)
        cache.get(KEY)
        queue.put((held, rig.near.live, rig.tracker.starts))

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(10)
    assert queue.get(timeout=5) == (0, False, 2)


# --- bounds -------------------------------------------------------------------------------


def test_max_entries_evicts_the_least_recently_used() -> None:
    """Past maxEntries the least recently read entry goes, counted as an eviction."""
    rig = Rig(max_entries=2)
    rig.establish()
    cache = rig.cache()
    for key in "abc":
        cache.set(key, key)
    cache.get("a")
    cache.get("b")
    cache.get("a")  # b is now the least recent
    cache.get("c")
    full = rig.keyspace.full_key
    assert list(rig.near.shared.entries) == [full("catalog", None, None, k) for k in "ac"]
    assert rig.row().near_evictions == 1
    gets = rig.origin.gets
    cache.get("a")
    assert rig.origin.gets == gets  # a survived


def test_max_bytes_bounds_the_region_and_skips_huge_values() -> None:
    """maxBytes bounds what the region holds; a value over a sixteenth of it is read but
    never kept."""
    rig = Rig(max_entries=None, max_bytes=64 * 1024)
    rig.establish()
    cache = rig.cache()
    for i in range(100):
        cache.set(f"k{i}", "x" * 1000)
        cache.get(f"k{i}")
    assert rig.near.shared.bytes <= 64 * 1024
    assert rig.row().near_evictions > 0
    cache.set("big", "x" * 5000)
    cache.get("big")
    assert all("big" not in key for key in rig.near.shared.entries)


def test_ttl_bounds_how_long_an_entry_is_served() -> None:
    """An entry is served from memory for at most ttl seconds; then the store is read
    (an untracked store's whole staleness bound)."""
    rig = Rig(tracked=False, ttl=5.0)
    cache = rig.cache()
    cache.set(KEY, 1)
    cache.get(KEY)
    full = rig.keyspace.full_key("catalog", None, None, KEY)
    rig.origin.set(full, cache._pack(2), None)  # another process's write
    assert cache.get(KEY) == 1  # within the ttl: the held value
    rig.clock.now += 5.0
    assert cache.get(KEY) == 2
    assert rig.row().near_evictions == 1


# --- scopes, plugins, exact operations -------------------------------------------------------


def test_scoped_clear_empties_that_scope_only(rig: Rig) -> None:
    """A scope's clear() drops its held entries and leaves another scope's."""
    mine, other = rig.cache("catalog", tenant="acme"), rig.cache("catalog", tenant="globex")
    for cache in (mine, other):
        cache.set(KEY, 1)
        cache.get(KEY)
    mine.clear()
    assert mine.get(KEY, MISS) is MISS
    gets = rig.origin.gets
    assert other.get(KEY) == 1
    assert rig.origin.gets == gets


def test_get_many_reads_only_what_is_not_held(rig: Rig) -> None:
    """get_many serves held entries from memory and reads the rest in one store call;
    an entry not held is never answered from memory."""
    cache = rig.cache()
    cache.set_many({"a": 1, "b": 2})
    cache.get("a")
    gets = rig.origin.gets
    assert cache.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    assert rig.origin.gets == gets + 1
    assert rig.row().near_hits == 1


def test_counters_and_rate_limits_read_the_store(rig: Rig) -> None:
    """A counter's value and a rate limit's window are read from the store: another
    process's increments are seen at once."""
    from cachekit import counter, rate_limit
    from cachekit.host import scope

    manager = CacheManager(store=MemoryStore())
    manager.bindings["default"].store = rig.store  # the rig's near store as the binding's
    with scope("catalog", manager=manager):
        hits = counter("hits")
        hits.incr()
        assert hits.get() == 1
        full = manager.full_key(manager.for_plugin("catalog").namespace("counters"), "hits")
        rig.origin.incr(full, 5, None)  # another process
        assert hits.get() == 6
        limit = rate_limit("api", limit=2, per=60)
        assert limit.hit().allowed
        assert limit.hit().allowed
        assert not limit.hit().allowed
    assert sum(row.near_hits + row.near_misses for row in manager.stats()) == 0


def test_a_plugin_can_opt_out_or_get_its_own_region(rig: Rig) -> None:
    """A plugin with nearCache off reads the store every time; one with its own
    maxEntries has a region its churn cannot push the others out of."""
    from cachekit.policy import Policy

    off = rig.cache("quiet", policy=Policy("quiet", near_cache=NearCacheConfig(enabled=False)))
    off.set(KEY, 1)
    off.get(KEY)
    gets = rig.origin.gets
    off.get(KEY)
    assert rig.origin.gets == gets + 1
    own = NearCacheConfig(max_entries=1)
    noisy = rig.cache("noisy", policy=Policy("noisy", near_cache=own))
    calm = rig.cache("calm")
    calm.set(KEY, 1)
    calm.get(KEY)
    for i in range(20):
        noisy.set(f"k{i}", i)
        noisy.get(f"k{i}")
    gets = rig.origin.gets
    assert calm.get(KEY) == 1
    assert rig.origin.gets == gets
    assert isinstance(noisy._store, NearView)
    assert len(noisy._store.region.entries) == 1


def test_config_per_plugin_and_tenant(memcached_server: MemcachedServer) -> None:
    """plugins.<id>.nearCache and tenants.<id>.nearCache: false reach the caches."""
    manager = CacheManager.from_section(
        {
            "store": "memcache",
            "connection": f"127.0.0.1:{memcached_server.port}",
            "nearCache": {"enabled": True, "ttl": "1s"},
            "plugins": {"quiet": {"nearCache": False}},
            "tenants": {"exact": {"nearCache": {"enabled": False}}},
        }
    )
    assert isinstance(manager.for_plugin("catalog")._store, NearView)
    assert not isinstance(manager.for_plugin("quiet")._store, NearView)
    assert not isinstance(manager.for_plugin("catalog", tenant="exact")._store, NearView)
    manager.close()


# --- metrics -----------------------------------------------------------------------------------


def test_stats_count_per_scope(rig: Rig) -> None:
    """Near hits, misses, evictions and invalidations are counted on the scope's row."""
    cache, other = rig.cache("catalog"), rig.cache("reviews")
    cache.set(KEY, 1)
    cache.get(KEY)  # miss, kept
    cache.get(KEY)  # hit
    full = rig.keyspace.full_key("catalog", None, None, KEY)
    rig.near.invalidate([full])
    other.get(KEY)
    row = rig.row("catalog")
    assert (row.near_hits, row.near_misses, row.near_invalidations) == (1, 1, 1)
    assert (rig.row("reviews").near_misses, rig.row("reviews").near_hits) == (1, 0)


def test_memcached_behind_a_near_cache(memcached_server: MemcachedServer) -> None:
    """On a real memcached the near cache serves its entries within ttl, and this
    process's own writes at once."""
    manager = CacheManager.from_section(
        {
            "store": "memcache",
            "connection": f"127.0.0.1:{memcached_server.port}",
            "nearCache": {"enabled": True, "ttl": "30s"},
        }
    )
    cache = manager.for_plugin("near-mc", tenant="t")
    cache.set(KEY, [1])
    assert cache.get(KEY) == [1]
    assert cache.get(KEY) == [1]
    cache.set(KEY, [2])
    assert cache.get(KEY) == [2]
    row = next(r for r in manager.stats() if r.plugin == "near-mc")
    assert row.near_hits == 1
    cache.clear()
    manager.close()


def test_prometheus_exports_the_near_counters(memcached_server: MemcachedServer) -> None:
    """A manager with a near cache exports cachekit_near_*_total per scope; one without
    exports none of them."""
    from prometheus_client import CollectorRegistry, generate_latest

    from cachekit.contrib.prometheus import register

    manager = CacheManager.from_section(
        {
            "store": "memcache",
            "connection": f"127.0.0.1:{memcached_server.port}",
            "nearCache": {"enabled": True, "ttl": "30s"},
        }
    )
    registry = CollectorRegistry()
    register(manager, registry)
    cache = manager.for_plugin("near-prom")
    cache.set(KEY, 1)
    cache.get(KEY)
    cache.get(KEY)
    text = generate_latest(registry).decode()
    labels = 'namespace="",plugin="near-prom",store="memcache"'
    assert f"cachekit_near_hits_total{{{labels}}} 1.0" in text
    assert f"cachekit_near_misses_total{{{labels}}} 1.0" in text
    assert "cachekit_near_invalidations_total" in text
    cache.clear()
    manager.close()
    plain = CollectorRegistry()
    register(CacheManager(), plain)
    assert "near_" not in generate_latest(plain).decode()


def test_cachekit_stats_sums_every_process_report(
    tmp_path: Any, redis_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each process reports its near-cache counters into the store (a key that expires);
    `cachekit stats` sums the reports per scope and says how many processes reported."""
    import json
    import time
    import uuid

    import redis as redis_py
    import yaml

    from cachekit.cli import main
    from cachekit.near import REPORT_PLUGIN
    from cachekit.stores.near import NearReporter

    cache = {
        "store": "redis",
        "connection": redis_server.url,
        "redis": {"client": {"namespace": f"near{uuid.uuid4().hex[:8]}"}},
        "nearCache": {},
    }
    reporters = []
    for process in ("p1", "p2"):  # two app processes: a manager each
        binding = CacheManager.from_section(cache).bindings["default"]
        stats = binding.metrics.slot("catalog", None, None, "redis")
        stats.near_hits, stats.near_misses, stats.near_invalidations = 3, 1, 2
        key = binding.keyspace.full_key(REPORT_PLUGIN, None, None, process)
        assert isinstance(binding.store, NearStore)
        reporter = NearReporter(binding.store.origin, binding.metrics, key, interval=0.05)
        reporter.report()
        reporters.append(reporter)
    raw = redis_py.Redis.from_url(redis_server.url)
    assert 0 < raw.pttl(reporters[0].key) <= 150
    config = tmp_path / "app-config.yaml"
    config.write_text(yaml.safe_dump({"backend": {"cache": cache}}), encoding="utf-8")
    assert main(["stats", "--json", "-c", str(config)]) == 0
    near = json.loads(capsys.readouterr().out)["near"]
    assert near == [
        {
            "binding": "default",
            "plugin": "catalog",
            "tenant": None,
            "namespace": None,
            "near_hits": 6,
            "near_misses": 2,
            "near_evictions": 0,
            "near_invalidations": 4,
            "processes": 2,
        }
    ]
    assert main(["stats", "-c", str(config)]) == 0
    assert "near cache (reported by up to 2 app process(es)" in capsys.readouterr().out
    stop = reporters[0].start()  # the thread writes it again, and stop() removes it
    deadline = time.monotonic() + 5
    raw.delete(reporters[0].key)
    while not raw.exists(reporters[0].key) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert raw.exists(reporters[0].key)
    stop()
    assert not raw.exists(reporters[0].key)
    raw.close()


@pytest.mark.parametrize(
    ("given", "size"),
    [(1000, 1000), ("64MiB", 64 * 2**20), ("500kB", 500_000), ("2 GiB", 2 * 2**30), ("7", 7)],
)
def test_max_bytes_takes_sizes(given: Any, size: int) -> None:
    """maxBytes (nearCache's and memory's) is a number of bytes or a size string."""
    section = {"store": "redis", "connection": "redis://h:1", "nearCache": {"maxBytes": given}}
    assert parse_cache_section(section).near_cache.max_bytes == size  # type: ignore[union-attr]
    assert parse_cache_section({"memory": {"maxBytes": given}}).memory.max_bytes == size


@pytest.mark.parametrize("given", ["64 MB!", "0MiB", "-5", "lots", 0, 1.5, True])
def test_a_bad_size_is_a_config_error(given: Any) -> None:
    """A size that is not a positive whole number of bytes names the accepted forms."""
    with pytest.raises(ConfigError) as info:
        parse_cache_section({"memory": {"maxBytes": given}})
    assert info.value.path == "backend.cache.memory.maxBytes"


def test_a_removed_source_is_no_longer_waited_for() -> None:
    """A cluster node that left (tracking_removed) no longer keeps the near cache down,
    and its removal flushes what was held."""
    rig = Rig()
    rig.establish()
    rig.near.tracking_lost("gone")
    assert not rig.near.live
    rig.near.tracking_removed("gone")
    assert rig.near.live
    cache = rig.cache()
    cache.set(KEY, 1)
    cache.get(KEY)
    rig.near.tracking_removed("other")
    assert not rig.near.shared.entries


@pytest.mark.parametrize(
    "server", ["redis_server", "valkey_server", "redis_cluster", "redis_sentinel"]
)
def test_a_write_by_another_client_reaches_the_near_cache(
    server: str, request: pytest.FixtureRequest
) -> None:
    """End to end on the real servers (standalone Redis and Valkey, a Cluster, Sentinel): a held
    entry is served from memory until another client writes the key, then the new value
    is read; the tracking connection is named in CLIENT LIST."""
    import time
    import uuid

    import redis as redis_py

    found = request.getfixturevalue(server)
    store = "valkey" if server == "valkey_server" else "redis"
    prefix = f"near{uuid.uuid4().hex[:8]}"
    if server == "redis_cluster":
        section: dict[str, Any] = {
            "store": "redis",
            "redis": {
                "client": {"namespace": prefix},
                "cluster": {"rootNodes": [{"url": found.url}]},
            },
        }
        raw: Any = redis_py.RedisCluster.from_url(found.url)
    elif server == "redis_sentinel":
        sentinels = [f"{host}:{port}" for host, port in found.sentinels]
        section = {
            "store": "redis",
            "redis": {
                "client": {"namespace": prefix},
                "sentinel": {"sentinels": sentinels, "masterName": found.master_name},
            },
        }
        raw = redis_py.sentinel.Sentinel(found.sentinels).master_for(found.master_name)
    else:
        key = "valkey" if store == "valkey" else "redis"
        client = {"keyPrefix": f"{prefix}:"} if store == "valkey" else {"namespace": prefix}
        section = {"store": store, "connection": found.url, key: {"client": client}}
        raw = redis_py.Redis.from_url(found.url)
    manager = CacheManager.from_section(section | {"nearCache": {"ttl": "60s"}})
    cache = manager.for_plugin("catalog", tenant="acme")
    cache.set(KEY, 1)
    deadline = time.monotonic() + 10
    while not manager.bindings["default"].near.live and time.monotonic() < deadline:  # type: ignore[union-attr]
        cache.get(KEY)
        time.sleep(0.01)
    assert cache.get(KEY) == 1
    assert cache.get(KEY) == 1
    row = next(r for r in manager.stats() if r.plugin == "catalog")
    assert row.near_hits >= 1
    raw.set(manager.full_key(cache, KEY), b"7")
    while cache.get(KEY) != 7 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert cache.get(KEY) == 7
    if server != "redis_cluster":
        assert "cachekit-near" in {c["name"] for c in raw.client_list()}
    cache.clear()
    manager.close()
    raw.close()


def test_a_server_killed_and_restarted_under_a_near_cache(
    private_redis_server: Any, request: pytest.FixtureRequest
) -> None:
    """A killed server empties the near cache (nothing stale is served during the outage:
    direct reads raise StoreError, @cached computes); after the restart tracking comes
    back and hits resume."""
    import time

    from cachekit import cached
    from cachekit.errors import StoreError
    from cachekit.host import scope

    server = private_redis_server
    manager = CacheManager.from_section(
        {
            "store": "redis",
            "connection": server.url,
            "redis": {"client": {"namespace": "restart"}},
            "nearCache": {"ttl": "60s"},
        }
    )
    request.addfinalizer(manager.close)  # also when an assertion fails: no tracker left
    near = manager.bindings["default"].near
    assert near is not None
    cache = manager.for_plugin("catalog")

    def until(condition: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + 15
        while not condition() and time.monotonic() < deadline:
            with contextlib.suppress(StoreError):
                cache.get("warm")
            time.sleep(0.02)
        return condition()

    cache.set(KEY, 1)
    assert until(lambda: near.live)
    assert cache.get(KEY) == 1
    assert cache.get(KEY) == 1  # held
    server.kill()
    assert until(lambda: not near.live)
    assert not near.shared.entries
    with pytest.raises(StoreError):
        cache.get(KEY)
    calls = []

    @cached(namespace="n", ttl=60)
    def load() -> int:
        calls.append(1)
        return len(calls)

    with scope("catalog", manager=manager):
        assert (load(), load()) == (1, 2)  # fails open: computed, never a stale entry
    server.restart()

    def written() -> bool:
        with contextlib.suppress(StoreError):
            cache.set(KEY, 2)
            return True
        return False

    assert until(written)  # once the breaker lets calls through again
    assert until(lambda: near.live)
    hits = next(r for r in manager.stats() if r.plugin == "catalog").near_hits

    def held() -> bool:  # a first read may be dropped by its own set's late invalidation
        assert cache.get(KEY) == 2
        return next(r for r in manager.stats() if r.plugin == "catalog").near_hits > hits

    assert until(held)
    manager.close()


def test_a_scoped_clear_empties_that_scope_in_every_process(redis_server: Any) -> None:
    """Two managers (two processes' near caches, each tracking on its own connection)
    hold a scope's entries; one clears the scope and the other's near cache drops them
    (the deleted keys' invalidations), async reads included; another scope stays held."""
    import time
    import uuid

    section = {
        "store": "redis",
        "connection": redis_server.url,
        "redis": {"client": {"namespace": f"clear{uuid.uuid4().hex[:8]}"}},
        "nearCache": {"ttl": "60s"},
    }
    here, there = CacheManager.from_section(section), CacheManager.from_section(section)
    mine, kept = here.for_plugin("catalog", "acme"), here.for_plugin("catalog", "globex")
    theirs, theirs_kept = there.for_plugin("catalog", "acme"), there.for_plugin("catalog", "globex")
    mine.set(KEY, 1)
    kept.set(KEY, 2)

    async def read_twice() -> tuple[Any, Any]:
        return await theirs.aget(KEY, MISS), await theirs_kept.aget(KEY, MISS)

    async def run() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(
            m.bindings["default"].near.live  # type: ignore[union-attr]
            for m in (here, there)
        ):
            await theirs.aget("warm")
            mine.get("warm")
            await asyncio.sleep(0.01)
        assert await read_twice() == (1, 2)
        assert await read_twice() == (1, 2)  # held now
        row = next(r for r in there.stats() if r.tenant is None and r.plugin == "catalog")
        assert row.near_hits >= 2
        mine.clear()
        for _ in range(5000):  # the invalidations of the deleted keys on their way
            if (await read_twice())[0] is MISS:
                break
            await asyncio.sleep(0.002)
        assert await read_twice() == (MISS, 2)
        await there.aclose()

    asyncio.run(run())
    kept.clear()
    here.close()
    there.close()


def test_a_plugin_ttl_shortens_its_stay_in_the_shared_region() -> None:
    """A plugin's own nearCache.ttl bounds how long its entries are served, in the
    shared region (no memory of its own); another plugin keeps the binding's ttl."""
    from cachekit.policy import Policy

    rig = Rig(ttl=60.0)
    rig.establish()
    brief = rig.cache("brief", policy=Policy("brief", near_cache=NearCacheConfig(ttl=1.0)))
    steady = rig.cache("steady")
    for cache in (brief, steady):
        cache.set(KEY, 1)
        cache.get(KEY)
    assert isinstance(brief._store, NearView)
    assert brief._store.region is rig.near.shared
    rig.clock.now += 2.0
    gets = rig.origin.gets
    brief.get(KEY)
    steady.get(KEY)
    assert rig.origin.gets == gets + 1  # brief's entry was past its ttl; steady's held


def test_a_tracker_that_cannot_start_never_fails_a_read(caplog: pytest.LogCaptureFixture) -> None:
    """If starting tracking raises, the read goes to the store (one warning), nothing is
    served from memory, and the next read tries again."""
    attempts: list[int] = []

    def broken(sink: NearCache) -> Callable[[], None]:
        attempts.append(1)
        raise RuntimeError("can't start new thread")

    origin = CountingStore()
    near = NearCache(settings(), start_tracking=broken)
    cache = Cache(NearStore(origin, near), plugin="catalog", metrics=Metrics())
    cache.set(KEY, 1)
    with caplog.at_level(logging.WARNING, logger="cachekit"):
        assert cache.get(KEY) == 1
        assert cache.get(KEY) == 1
    assert len(attempts) == 2
    assert not near.live
    assert caplog.text.count("cannot start tracking") == 1


def test_repr_says_what_the_near_cache_holds_and_hears(rig: Rig) -> None:
    """The repr names the settings, the entries held, the invalidation messages applied
    and whether it serves."""
    cache = rig.cache()
    cache.set(KEY, 1)
    cache.get(KEY)
    rig.near.invalidate(["other"])
    assert repr(rig.near).endswith("held=1, invalidations=1, live)")
    rig.near.tracking_lost("node")
    assert "down node" in repr(rig.near)
