"""In-process metrics: what each Cache call counts, per scope, and manager.stats()."""

from __future__ import annotations

import asyncio

import pytest
from custom_store import DictStore
from flaky_store import FlakyStore

from cachekit import StoreUnavailable
from cachekit.config import CacheConfig, MetricsConfig
from cachekit.errors import ConfigError
from cachekit.host import CacheManager
from cachekit.metrics import DEFAULT_MAX_SERIES, OTHER, Metrics
from cachekit.stores.memory import MemoryStore


def row(manager: CacheManager, plugin: str, namespace: str | None = None) -> dict[str, object]:
    [found] = [r for r in manager.stats() if r.plugin == plugin and r.namespace == namespace]
    return {
        "hits": found.hits,
        "misses": found.misses,
        "sets": found.sets,
        "deletes": found.deletes,
        "errors": found.errors,
    }


def test_reads_writes_and_deletes_are_counted() -> None:
    """get/get_many count hits and misses; set/add/incr/set_many count sets; deletes too."""
    manager = CacheManager()
    cache = manager.for_plugin("catalog", tenant="acme")
    cache.set("a", 1)
    cache.set_many({"b": 2, "c": 3})
    cache.add("a", 9)  # not stored: not counted
    cache.incr("n")
    assert cache.get("a") == 1
    assert cache.get("zz") is None
    assert cache.get_many(["a", "b", "yy"]) == {"a": 1, "b": 2}
    cache.delete("a")
    cache.delete_many(["b", "c"])
    assert row(manager, "catalog") == {"hits": 3, "misses": 2, "sets": 4, "deletes": 3, "errors": 0}


def test_async_calls_are_counted_alike() -> None:
    """The async twins count exactly like the sync methods."""
    manager = CacheManager()
    cache = manager.for_plugin("catalog", tenant="acme")

    async def run() -> None:
        await cache.aset("a", 1)
        await cache.aset_many({"b": 2})
        await cache.aincr("n")
        await cache.aadd("a", 2)
        await cache.aget("a")
        await cache.aget("zz")
        await cache.aget_many(["a", "b", "yy"])
        await cache.adelete("a")
        await cache.adelete_many(["b"])

    asyncio.run(run())
    assert row(manager, "catalog") == {"hits": 3, "misses": 2, "sets": 3, "deletes": 2, "errors": 0}


def test_counts_are_per_plugin_and_namespace_not_tenant_by_default() -> None:
    """Tenants of one plugin share a row unless perTenant is on; namespaces get their own."""
    manager = CacheManager()
    for tenant in ("t1", "t2"):
        manager.for_plugin("catalog", tenant=tenant).get("k")
    manager.for_plugin("catalog", tenant="t1").namespace("users").get("k")
    manager.for_plugin("reviews").get("k")
    rows = {(r.plugin, r.namespace, r.tenant): r.misses for r in manager.stats()}
    assert rows == {
        ("catalog", None, None): 2,
        ("catalog", "users", None): 1,
        ("reviews", None, None): 1,
    }


def test_per_tenant_counting_is_opt_in() -> None:
    """With metrics.perTenant each tenant is its own row."""
    manager = CacheManager(CacheConfig(metrics=MetricsConfig(per_tenant=True)))
    manager.for_plugin("catalog", tenant="t1").get("k")
    manager.for_plugin("catalog", tenant="t2").get("k")
    assert sorted((r.tenant, r.misses) for r in manager.stats()) == [("t1", 1), ("t2", 1)]
    assert manager.metrics.per_tenant


def test_per_tenant_from_yaml_config() -> None:
    """backend.cache.metrics.perTenant is read from config."""
    manager = CacheManager.from_config({"backend": {"cache": {"metrics": {"perTenant": True}}}})
    assert manager.metrics.per_tenant


def test_store_errors_are_counted_and_still_raised() -> None:
    """A failing store call counts an error and raises as before."""
    store = FlakyStore()
    manager = CacheManager(store=store)
    cache = manager.for_plugin("catalog")
    store.down = True
    for call in (lambda: cache.get("k"), lambda: cache.set("k", 1), lambda: cache.incr("n")):
        with pytest.raises(StoreUnavailable):
            call()
    assert row(manager, "catalog")["errors"] == 3


def test_latency_is_timed_for_blocking_stores_only() -> None:
    """Network-like (blocking) stores get latency totals; the in-process store does not."""
    blocking = CacheManager(store=DictStore())
    blocking.for_plugin("p").set("k", 1)
    blocking.for_plugin("p").get("k")
    [timed] = blocking.stats()
    assert timed.timed_calls == 2
    assert timed.latency_seconds > 0
    memory = CacheManager(store=MemoryStore())
    memory.for_plugin("p").get("k")
    [untimed] = memory.stats()
    assert (untimed.timed_calls, untimed.latency_seconds) == (0, 0.0)


def test_hit_ratio_and_reset() -> None:
    """hit_ratio is hits over reads (None before any read); reset zeroes the counters."""
    manager = CacheManager()
    cache = manager.for_plugin("p")
    cache.set("k", 1)
    assert manager.stats()[0].hit_ratio is None
    cache.get("k")
    cache.get("k")
    cache.get("x")
    assert manager.stats()[0].hit_ratio == pytest.approx(2 / 3)
    manager.metrics.reset()
    assert row(manager, "p") == {"hits": 0, "misses": 0, "sets": 0, "deletes": 0, "errors": 0}
    cache.get("k")
    assert row(manager, "p")["hits"] == 1


def test_metrics_repr() -> None:
    """Metrics and counters say what they hold."""
    metrics = Metrics()
    stats = metrics.slot("p", None, None, "memory")
    stats.hits += 2
    assert "scopes=1" in repr(metrics)
    assert "hits=2" in repr(stats)


def test_series_are_capped_and_the_rest_counted_as_other(caplog: pytest.LogCaptureFixture) -> None:
    """Past metrics.maxSeries, new scopes share one `other` row per store (nothing is lost)
    and one warning says which setting to raise."""
    manager = CacheManager.from_config({"backend": {"cache": {"metrics": {"maxSeries": 10}}}})
    with caplog.at_level("WARNING", logger="cachekit.metrics"):
        for n in range(500):
            manager.for_plugin(f"p{n}", tenant=f"t{n}").namespace("ns").get("k")
    rows = manager.stats()
    assert len(rows) == 11
    [other] = [r for r in rows if r.plugin == OTHER]
    # the first 5 plugins fill the 10 rows (each scope's cache and its "ns" namespace)
    assert (other.namespace, other.tenant, other.misses) == (OTHER, None, 495)
    assert sum(r.misses for r in rows) == 500
    warnings = [r for r in caplog.records if r.name == "cachekit.metrics"]
    assert len(warnings) == 1
    assert "maxSeries" in warnings[0].getMessage()


def test_default_cap_bounds_series_from_unbounded_ids() -> None:
    """With no config, thousands of plugin ids (path_segment without known=) stay within
    the default cap instead of adding a row each."""
    manager = CacheManager()
    for n in range(3 * DEFAULT_MAX_SERIES):
        manager.for_plugin(f"p{n}").get("k")
    assert len(manager.stats()) == DEFAULT_MAX_SERIES + 1
    assert sum(r.misses for r in manager.stats()) == 3 * DEFAULT_MAX_SERIES


def test_per_tenant_series_collapse_tenant_too() -> None:
    """Per-tenant counting past the cap collapses the tenant label to `other` as well."""
    metrics = Metrics(per_tenant=True, max_series=1)
    metrics.slot("p", "t1", None, "memory").hits += 1
    metrics.slot("p", "t2", None, "memory").hits += 1
    metrics.slot("p", "t3", None, "redis").hits += 1
    assert metrics.slot("p", "t1", None, "memory").hits == 1  # known scopes keep their row
    rows = {(r.plugin, r.tenant, r.namespace, r.store): r.hits for r in metrics.snapshot()}
    assert rows == {
        ("p", "t1", None, "memory"): 1,
        (OTHER, OTHER, OTHER, "memory"): 1,
        (OTHER, OTHER, OTHER, "redis"): 1,
    }


@pytest.mark.parametrize("bad", [0, -1, "many", True])
def test_bad_max_series_is_refused(bad: object) -> None:
    """maxSeries must be a positive integer, named in the error."""
    with pytest.raises(ConfigError, match="maxSeries"):
        CacheManager.from_config({"backend": {"cache": {"metrics": {"maxSeries": bad}}}})
