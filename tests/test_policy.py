"""Per-plugin policy (backend.cache.plugins, pluginDefaults, tenants, knownPlugins): parsing,
the effective policy of a scope, its enforcement on the memory store, Redis and memcached
(sync and async), the violations metric and `cachekit check`."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from prometheus_client import CollectorRegistry
from servers import MemcachedServer, RedisServer, free_port

from cachekit import (
    MISS,
    CacheKeyError,
    CachekitError,
    CachePolicyError,
    CacheValueError,
    ConfigError,
    StoreError,
    StoreUnavailable,
    cached,
    rate_limit,
)
from cachekit import policy as policy_module
from cachekit.cli import main
from cachekit.config import parse_cache_section
from cachekit.config.policy import LimitsConfig
from cachekit.contrib.prometheus import register
from cachekit.errors import ValueTooLarge
from cachekit.host import CacheManager, scope
from cachekit.policy import DEFAULT_MAX_VALUE_BYTES, Policy, PolicyStore, resolve
from cachekit.stores.memory import MemoryStore
from cachekit.testing import Driver, FakeClock

# Headroom against a busy machine (ms): a timed-out call would be a wrong answer here.
HEADROOM = {"timeouts": {"connect": 5000, "operation": 5000}}
BIG = "x" * 2000  # encodes to 2003 bytes


def section(**policy: Any) -> dict[str, Any]:
    return {"backend": {"cache": policy}}


def violations(manager: CacheManager, plugin: str = "catalog") -> dict[str, int]:
    """The policy violations counted for ``plugin`` across its rows."""
    counted: dict[str, int] = {}
    for row in manager.stats():
        if row.plugin == plugin:
            for limit, n in row.policy_violations.items():
                counted[limit] = counted.get(limit, 0) + n
    return counted


@pytest.fixture
def tenant() -> str:
    """A tenant of its own for each test (the servers are shared)."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["memory", "redis", "memcache"])
def store_section(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The backend.cache keys choosing one store (a Redis key prefix of its own)."""
    if request.param == "memory":
        return {}
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        prefix = f"pol{uuid.uuid4().hex[:8]}"
        return {
            "store": "redis",
            "connection": server.url,
            "redis": {"client": {"namespace": prefix}},
            **HEADROOM,
        }
    memcached: MemcachedServer = request.getfixturevalue("memcached_server")
    return {"store": "memcache", "connection": f"{memcached.host}:{memcached.port}", **HEADROOM}


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest) -> Iterator[Driver]:
    driver = Driver(request.param)
    yield driver
    if driver.loop is not None:
        driver.loop.close()


@pytest.fixture
def build(store_section: dict[str, Any], driver: Driver) -> Iterator[Callable[..., CacheManager]]:
    """Managers on the test's store with the given policy keys, closed after the test."""
    made: list[CacheManager] = []

    def build(**policy: Any) -> CacheManager:
        manager = CacheManager.from_config(section(**store_section, **policy))
        made.append(manager)
        return manager

    yield build
    for manager in made:
        if driver.loop is None:
            manager.close()
        else:
            driver.run(manager.aclose())


# --- config ------------------------------------------------------------------------------


def test_policy_keys_parse_into_typed_limits() -> None:
    """plugins, pluginDefaults, tenants and knownPlugins parse into seconds, bytes and sets."""
    config = parse_cache_section(
        {
            "knownPlugins": ["catalog", "reviews"],
            "pluginDefaults": {"maxTtl": "1h", "failOpen": False},
            "plugins": {
                "catalog": {
                    "enabled": True,
                    "defaultTtl": "5m",
                    "maxTtl": 60000,
                    "maxValueBytes": 1000,
                    "operations": ["read", "write"],
                }
            },
            "tenants": {"acme": {"maxValueBytes": 10}},
        }
    )
    policy = config.policy
    catalog = policy.plugins["catalog"]
    assert (catalog.enabled, catalog.default_ttl, catalog.max_ttl) == (True, 300.0, 60.0)
    assert catalog.max_value_bytes == 1000
    assert catalog.operations == {"read", "write"}
    assert catalog.fail_open is None  # not set there: inherited
    assert policy.plugin_defaults.max_ttl == 3600.0
    assert policy.plugin_defaults.fail_open is False
    assert policy.tenants["acme"].max_value_bytes == 10
    assert policy.known_plugins == {"catalog", "reviews"}


@pytest.mark.parametrize(
    ("policy", "path", "words"),
    [
        ({"plugins": {"catalog": {"maxTtl": 0}}}, "plugins.catalog.maxTtl", "positive"),
        (
            {"plugins": {"catalog": {"maxValueBytes": 0}}},
            "plugins.catalog.maxValueBytes",
            "at least 1",
        ),
        ({"plugins": {"catalog": {"enabled": "no"}}}, "plugins.catalog.enabled", "true or false"),
        (
            {"plugins": {"catalog": {"operations": ["read", "flush"]}}},
            "plugins.catalog.operations[1]",
            "unknown operation 'flush'",
        ),
        ({"plugins": {"catalog": {"maxTTL": "1m"}}}, "plugins.catalog.maxTTL", "'maxTtl'"),
        ({"plugins": {"a b": {}}}, "plugins.a b", "not a valid plugin id"),
        ({"tenants": {"a:b": {}}}, "tenants.a:b", "not a valid tenant id"),
        ({"plugins": ["catalog"]}, "plugins", "a mapping"),
        ({"pluginDefault": {}}, "pluginDefault", "did you mean 'pluginDefaults'"),
        ({"knownPlugins": ["ok", "not ok"]}, "knownPlugins[1]", "not a valid plugin id"),
    ],
)
def test_a_bad_policy_value_names_its_path(policy: dict[str, Any], path: str, words: str) -> None:
    """Each bad policy key or id is a ConfigError naming its backend.cache path."""
    with pytest.raises(ConfigError, match=re.escape(words)) as info:
        parse_cache_section(policy)
    assert info.value.path == f"backend.cache.{path}"


def test_an_unlisted_plugin_id_is_an_error_when_the_host_lists_its_plugins() -> None:
    """With knownPlugins, limits for another id are a ConfigError with a did-you-mean."""
    with pytest.raises(ConfigError, match="did you mean 'catalog'") as info:
        parse_cache_section({"knownPlugins": ["catalog"], "plugins": {"catalgo": {}}})
    assert info.value.path == "backend.cache.plugins.catalgo"
    parse_cache_section({"knownPlugins": ["catalog"], "plugins": {"catalog": {}}})


def test_the_manager_checks_plugin_ids_against_its_plugins_argument() -> None:
    """CacheManager(plugins=[...]) refuses limits for an id it does not list."""
    config = section(plugins={"catalgo": {"maxTtl": "1m"}})
    with pytest.raises(ConfigError, match="the host has no plugin 'catalgo'"):
        CacheManager.from_config(config, plugins=["catalog", "reviews"])
    CacheManager.from_config(config, plugins=["catalgo"])


def test_unchecked_plugin_ids_log_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Without a list of plugins, a manager logs one warning naming the ids it cannot check,
    and none when the host lists them."""
    with caplog.at_level(logging.WARNING, logger="cachekit"):
        CacheManager.from_config(section(plugins={"catalog": {}, "reviews": {}}))
        CacheManager.from_config(section(plugins={"catalog": {}}), plugins=["catalog"])
        CacheManager.from_config(section(knownPlugins=["catalog"], plugins={"catalog": {}}))
    warned = [r.getMessage() for r in caplog.records if "does not list" in r.getMessage()]
    assert len(warned) == 1
    assert "catalog, reviews" in warned[0]


# --- the effective policy ------------------------------------------------------------------


def test_a_plugin_inherits_plugin_defaults_which_inherit_backend_cache() -> None:
    """A key a plugin leaves out comes from pluginDefaults, then from backend.cache."""
    config = parse_cache_section(
        {
            "defaultTtl": "10m",
            "failOpen": False,
            "pluginDefaults": {"defaultTtl": "5m", "maxValueBytes": 500},
            "plugins": {"catalog": {"defaultTtl": "1m"}, "reviews": {"failOpen": True}},
        }
    )
    catalog, reviews = resolve(config, "catalog"), resolve(config, "reviews")
    other = resolve(config, "other")
    assert (catalog.default_ttl, catalog.max_value_bytes, catalog.fail_open) == (60, 500, False)
    assert (reviews.default_ttl, reviews.fail_open) == (300, True)
    assert (other.default_ttl, other.enabled, other.max_ttl) == (300, True, None)
    no_section = resolve(parse_cache_section({"defaultTtl": "10m"}), "catalog")
    assert no_section.default_ttl == 600
    assert no_section.max_value_bytes == DEFAULT_MAX_VALUE_BYTES == 1024 * 1024


def test_memcached_defaults_to_its_configured_item_size() -> None:
    """Where nothing sets maxValueBytes, a memcache store uses memcache.maxValueSize."""
    config = parse_cache_section(
        {"store": "memcache", "connection": "127.0.0.1:1", "memcache": {"maxValueSize": 4096}}
    )
    assert resolve(config, "catalog").max_value_bytes == 4096


def test_max_ttl_bounds_the_default_ttl() -> None:
    """No default TTL, or a longer one, becomes maxTtl; a shorter one stays; defaultTtl 0
    (no expiry) becomes maxTtl too."""
    config = parse_cache_section(
        {
            "defaultTtl": "1h",
            "plugins": {
                "long": {"maxTtl": "1m"},
                "short": {"maxTtl": "1m", "defaultTtl": "30s"},
                "forever": {"maxTtl": "1m", "defaultTtl": 0},
                "unbounded": {"defaultTtl": 0},
            },
        }
    )
    assert resolve(config, "long").default_ttl == 60
    assert resolve(config, "short").default_ttl == 30
    assert resolve(config, "forever").default_ttl == 60
    assert resolve(config, "unbounded").default_ttl is None
    manager = CacheManager(config)
    cache = manager.for_plugin("long")
    assert cache.default_ttl == 60
    assert cache.with_options(default_ttl=3600).default_ttl == 60
    assert cache.with_options(default_ttl=None).default_ttl == 60
    assert cache.namespace("n").default_ttl == 60


def test_every_limit_has_a_stricter_rule() -> None:
    """Each key of a limits section has a rule for the stricter of two values (a key
    without one would be dropped when plugin and tenant limits meet)."""
    assert set(policy_module._STRICTER) == {f.name for f in dataclasses.fields(LimitsConfig)}


@pytest.mark.parametrize(
    ("key", "plugin", "tenant", "effective"),
    [
        ("enabled", True, False, False),
        ("enabled", False, True, False),
        ("maxTtl", "60s", "30s", 30),
        ("maxTtl", "30s", "60s", 30),
        ("maxValueBytes", 100, 1000, 100),
        ("maxValueBytes", 1000, 100, 100),
        ("defaultTtl", "30s", "60s", 30),
        ("defaultTtl", 0, "60s", 60),
        ("defaultTtl", "60s", 0, 60),
        ("operations", ["read", "write", "clear"], ["read", "clear", "count"], {"read", "clear"}),
        ("failOpen", True, False, False),
        ("failOpen", False, True, False),
    ],
)
def test_the_stricter_of_plugin_and_tenant_applies(
    key: str, plugin: Any, tenant: Any, effective: Any
) -> None:
    """For every key set on both the plugin and the tenant, the stricter value wins."""
    config = parse_cache_section(
        {"plugins": {"catalog": {key: plugin}}, "tenants": {"acme": {key: tenant}}}
    )
    attribute = {
        "enabled": "enabled",
        "maxTtl": "max_ttl",
        "maxValueBytes": "max_value_bytes",
        "defaultTtl": "default_ttl",
        "operations": "operations",
        "failOpen": "fail_open",
    }[key]
    assert getattr(resolve(config, "catalog", "acme"), attribute) == effective


def test_a_tenant_cap_applies_in_every_plugin_and_only_to_that_tenant() -> None:
    """tenants.acme caps acme in every plugin; other tenants and the platform scope keep
    the plugin's limits."""
    manager = CacheManager.from_config(
        section(
            plugins={"catalog": {"maxValueBytes": 5000}}, tenants={"acme": {"maxValueBytes": 1000}}
        )
    )
    for plugin in ("catalog", "reviews"):
        with pytest.raises(ValueTooLarge):
            manager.for_plugin(plugin, "acme").set("k", BIG)
    manager.for_plugin("catalog", "globex").set("k", BIG)
    manager.for_plugin("catalog").set("k", BIG)
    assert manager.for_plugin("catalog", "globex").get("k") == BIG


# --- enforcement on every store, sync and async --------------------------------------------


@pytest.mark.servers
def test_a_disabled_plugin_misses_every_read_and_drops_every_write(
    build: Callable[..., CacheManager], driver: Driver, tenant: str
) -> None:
    """enabled: false: reads miss, writes reach nothing, incr counts from scratch, and an
    enabled plugin on the same store keeps working."""
    manager = build(plugins={"catalog": {"enabled": False}})
    off = driver(manager.for_plugin("catalog", tenant))
    on = driver(manager.for_plugin("reviews", tenant))
    off.set("k", 1)
    off.set_many({"a": 1, "b": 2})
    assert off.add("k", 2) is True
    assert off.get("k", MISS) is MISS
    assert off.get_many(["k", "a", "b"]) == {}
    assert (off.incr("n"), off.incr("n", 5)) == (1, 5)
    assert (off.delete("k"), off.expire("k", 5), off.touch("k")) == (False, False, False)
    assert off.delete_many(["a", "b"]) == 0
    assert off.clear() == 0
    # the same scope without the policy: nothing was written
    same_store = CacheManager(store=manager.store).for_plugin("catalog", tenant)
    assert driver(same_store).get_many(["k", "a", "b", "n"]) == {}
    on.set("k", 1)
    assert on.get("k") == 1


@pytest.mark.servers
def test_max_value_bytes_refuses_a_larger_value_before_writing(
    build: Callable[..., CacheManager], driver: Driver, tenant: str
) -> None:
    """A value encoding to more than maxValueBytes raises ValueTooLarge (a CacheValueError
    naming plugin, limit and size) from set, add and set_many, and nothing is written."""
    manager = build(plugins={"catalog": {"maxValueBytes": 1000}})
    cache = driver(manager.for_plugin("catalog", tenant))
    for write in (
        lambda: cache.set("big", BIG),
        lambda: cache.add("big", BIG),
        lambda: cache.set_many({"small": 1, "big": BIG}),
    ):
        with pytest.raises(CacheValueError) as info:
            write()
        error = info.value
        assert isinstance(error, ValueTooLarge)
        assert (error.plugin, error.tenant, error.limit, error.value) == (
            "catalog",
            tenant,
            "maxValueBytes",
            2003,
        )
        assert "2003 bytes" in str(error)
        assert "maxValueBytes of 1000" in str(error)
    assert cache.get_many(["small", "big"]) == {}
    cache.set("fits", "x" * 990)
    assert cache.get("fits") == "x" * 990


@pytest.mark.servers
def test_operations_refuse_the_groups_not_listed(
    build: Callable[..., CacheManager], driver: Driver, tenant: str
) -> None:
    """With operations [read], every write, delete, count, expire and clear raises
    CachePolicyError naming the group (not a StoreError), and reads still work."""
    manager = build(plugins={"catalog": {"operations": ["read"]}})
    writer = driver(CacheManager(store=manager.store).for_plugin("catalog", tenant))
    writer.set("k", 1)
    cache = driver(manager.for_plugin("catalog", tenant))
    refused = {
        "write": [lambda: cache.set("k", 2), lambda: cache.add("x", 1)],
        "delete": [lambda: cache.delete("k"), lambda: cache.delete_many(["k"])],
        "count": [lambda: cache.incr("n"), lambda: cache.decr("n")],
        "expire": [lambda: cache.expire("k", 5), lambda: cache.touch("k")],
        "clear": [cache.clear],
    }
    for group, calls in refused.items():
        for call in calls:
            with pytest.raises(CachePolicyError) as info:
                call()
            assert not isinstance(info.value, StoreError)
            assert (info.value.plugin, info.value.limit, info.value.value) == (
                "catalog",
                "operations",
                group,
            )
            assert f"operation {group!r} is not in its operations (read)" in str(info.value)
    assert cache.get("k") == 1
    assert cache.get_many(["k"]) == {"k": 1}
    assert violations(manager) == {"operations": 9}


@pytest.mark.servers
def test_operations_allow_exactly_the_groups_listed(
    build: Callable[..., CacheManager], driver: Driver, tenant: str
) -> None:
    """A plugin listing every group but clear reads, writes, counts, expires and deletes,
    and only clear() raises."""
    groups = ["read", "write", "delete", "count", "expire"]
    cache = driver(build(plugins={"catalog": {"operations": groups}}).for_plugin("catalog", tenant))
    cache.set("k", 1)
    assert cache.add("k2", 2) is True
    assert cache.incr("n") == 1
    assert cache.expire("k", 60) is True
    assert cache.get_or_set("g", 3) == 3
    assert cache.delete("k2") is True
    with pytest.raises(CachePolicyError, match=r"may not call a?clear\(\)"):
        cache.clear()
    assert cache.get_many(["k", "n", "g"]) == {"k": 1, "n": 1, "g": 3}


def test_a_refused_operation_does_no_io_and_leaves_the_breaker_alone() -> None:
    """On an unreachable Redis a refused call raises CachePolicyError at once, again and
    again, counts no store error and does not open the breaker; an allowed call still
    reaches (and fails on) the store."""
    config = section(
        store="redis",
        connection=f"redis://127.0.0.1:{free_port()}/0",
        plugins={"catalog": {"operations": ["read"]}},
        circuitBreaker={"failureThreshold": 1},
    )
    with CacheManager.from_config(config) as manager:
        cache = manager.for_plugin("catalog")
        for _ in range(5):
            with pytest.raises(CachePolicyError):
                cache.set("k", 1)
            with pytest.raises(CachePolicyError):
                asyncio.run(cache.aclear())
        assert [row.errors for row in manager.stats()] == [0]
        with pytest.raises(StoreUnavailable, match="refused") as info:
            cache.get("k")
        assert "skipping" not in str(info.value)  # the breaker was closed: the store was tried
        assert [row.errors for row in manager.stats()] == [1]


def test_fail_open_does_not_swallow_a_policy_refusal() -> None:
    """@cached on a plugin without write raises CachePolicyError on a miss rather than
    failing open; the function still ran once."""
    manager = CacheManager.from_config(section(plugins={"catalog": {"operations": ["read"]}}))
    calls: list[int] = []

    @cached(namespace="square")
    def square(i: int) -> int:
        calls.append(i)
        return i * i

    with scope("catalog", "acme", manager=manager), pytest.raises(CachePolicyError):
        square(3)
    assert calls == [3]


def test_fail_open_is_per_plugin() -> None:
    """On an unreachable store, @cached in a plugin with failOpen: false raises; in
    another plugin it calls through."""
    config = section(
        store="redis",
        connection=f"redis://127.0.0.1:{free_port()}/0",
        plugins={"strict": {"failOpen": False}},
    )

    @cached(namespace="square")
    def square(i: int) -> int:
        return i * i

    with CacheManager.from_config(config) as manager:
        with scope("lenient", manager=manager):
            assert square(3) == 9
        with scope("strict", manager=manager), pytest.raises(StoreUnavailable):
            square(3)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_disabled_plugins_cached_function_computes_every_call(mode: str) -> None:
    """enabled: false: a @cached function computes on every call, in sync and async code,
    while an enabled plugin's computes once."""
    manager = CacheManager.from_config(section(plugins={"off": {"enabled": False}}))
    calls: list[str] = []

    @cached(namespace="who")
    def who(name: str) -> str:
        calls.append(name)
        return name

    @cached(namespace="awho")
    async def awho(name: str) -> str:
        calls.append(name)
        return name

    async def thrice_async() -> None:
        for _ in range(3):
            assert await awho("x") == "x"

    for plugin in ("off", "on"):
        with scope(plugin, "acme", manager=manager):
            if mode == "sync":
                for _ in range(3):
                    assert who("x") == "x"
            else:
                asyncio.run(thrice_async())
    assert len(calls) == 3 + 1


@pytest.mark.parametrize("algorithm", ["fixed", "sliding", "gcra"])
def test_rate_limits_follow_the_policy(algorithm: str) -> None:
    """A rate limit needs count: without it a hit raises CachePolicyError; in a disabled
    plugin every hit is allowed (nothing is counted); elsewhere the limit refuses."""
    manager = CacheManager.from_config(
        section(plugins={"nocount": {"operations": ["read", "write"]}, "off": {"enabled": False}})
    )
    with scope("nocount", manager=manager), pytest.raises(CachePolicyError, match="'count'"):
        rate_limit("r", 1, per=60, algorithm=algorithm).hit()
    with scope("off", manager=manager):
        assert all(rate_limit("r", 1, per=60, algorithm=algorithm).hit().allowed for _ in range(3))
    with scope("on", manager=manager):
        assert [
            rate_limit("r", 1, per=60, algorithm=algorithm).hit().allowed for _ in range(2)
        ] == [
            True,
            False,
        ]


# --- maxTtl, checked where each store keeps its TTLs ----------------------------------------


def test_max_ttl_cuts_long_and_endless_ttls_on_the_memory_store() -> None:
    """maxTtl 60s: ttl=None, ttl=0, ttl=3600, incr's and expire's no-expiry all end at 60 s
    on the memory store's clock; ttl=30 keeps its 30 s; each cut is counted."""
    clock = FakeClock()
    manager = CacheManager.from_config(
        section(plugins={"catalog": {"maxTtl": "60s"}}), store=MemoryStore(clock=clock)
    )
    cache = manager.for_plugin("catalog")
    cache.set("default", 1)
    cache.set("zero", 1, ttl=0)
    cache.set("long", 1, ttl=3600)
    cache.set("short", 1, ttl=30)
    cache.incr("count", ttl=0)
    cache.set("expired", 1, ttl=10)
    cache.expire("expired", 0)
    cache.set_many({"many": 1}, ttl=0)
    keys = ["default", "zero", "long", "count", "expired", "many"]
    clock.advance(31)
    assert sorted(cache.get_many([*keys, "short"])) == sorted(keys)
    clock.advance(28)
    assert sorted(cache.get_many(keys)) == sorted(keys)
    clock.advance(2)
    assert cache.get_many(keys) == {}
    assert violations(manager) == {"maxTtl": 5}


@pytest.mark.servers
def test_max_ttl_turns_no_expiry_into_a_pttl_on_redis(redis_server: RedisServer) -> None:
    """maxTtl 60s: the Redis keys of ttl=None, ttl=0, incr(ttl=0), expire(0) and
    touch(ttl=0) have a PTTL of at most 60 s; a plugin without maxTtl keeps no expiry."""
    prefix = f"pol{uuid.uuid4().hex[:8]}"
    config = section(
        store="redis",
        connection=redis_server.url,
        redis={"client": {"namespace": prefix}},
        plugins={"catalog": {"maxTtl": "60s"}},
        **HEADROOM,
    )
    raw = redis.Redis.from_url(redis_server.url)
    with CacheManager.from_config(config) as manager:
        cache, free = manager.for_plugin("catalog", "acme"), manager.for_plugin("free", "acme")
        cache.set("none", 1)
        cache.set("zero", 1, ttl=0)
        cache.incr("count", ttl=0)
        cache.set("expired", 1, ttl=5)
        cache.expire("expired", 0)
        cache.set("touched", 1, ttl=5)
        cache.touch("touched", ttl=0)
        free.set("zero", 1, ttl=0)
        for key in ("none", "zero", "count", "expired", "touched"):
            pttl = raw.pttl(manager.full_key(cache, key))
            assert 50_000 < pttl <= 60_000, (key, pttl)
        assert raw.pttl(manager.full_key(free, "zero")) == -1
    raw.close()


@pytest.mark.servers
def test_max_ttl_ends_endless_entries_on_memcached(memcached_server: MemcachedServer) -> None:
    """maxTtl 1s on memcached: entries written with no expiry are gone two seconds later,
    while another plugin's stay."""
    config = section(
        store="memcache",
        connection=f"{memcached_server.host}:{memcached_server.port}",
        plugins={"catalog": {"maxTtl": "1s"}},
        **HEADROOM,
    )
    tenant = f"t{uuid.uuid4().hex[:12]}"
    with CacheManager.from_config(config) as manager:
        cache, free = manager.for_plugin("catalog", tenant), manager.for_plugin("free", tenant)
        cache.set("zero", 1, ttl=0)
        cache.set("none", 1)
        cache.incr("count", ttl=0)
        free.set("zero", 1, ttl=0)
        assert cache.get_many(["zero", "none", "count"]) == {"zero": 1, "none": 1, "count": 1}
        time.sleep(2.2)  # memcached counts TTLs in whole seconds
        assert cache.get_many(["zero", "none", "count"]) == {}
        assert free.get("zero") == 1


# --- views, metrics, errors -------------------------------------------------------------------


def test_namespaces_and_options_keep_the_policy() -> None:
    """A namespace view and a with_options view enforce the scope's policy, and their
    violations are counted on their own rows."""
    manager = CacheManager.from_config(
        section(plugins={"catalog": {"maxValueBytes": 1000, "operations": ["read", "write"]}})
    )
    users = manager.for_plugin("catalog", "acme").namespace("users")
    with pytest.raises(ValueTooLarge):
        users.set("k", BIG)
    with pytest.raises(CachePolicyError):
        users.with_options(default_ttl=5).clear()
    rows = {row.namespace: row.policy_violations for row in manager.stats()}
    assert rows[None] == {}  # the scope's own row: nothing was refused there
    assert rows["users"] == {"maxValueBytes": 1, "operations": 1}
    assert isinstance(users._ops, PolicyStore)  # white-box: the view a plugin never sees
    assert users._ops.origin is manager.store


def test_a_cache_without_limits_uses_the_store_itself() -> None:
    """A scope whose policy restricts no operation talks to the manager's store directly
    (no view in between)."""
    manager = CacheManager.from_config(section(plugins={"catalog": {"maxTtl": "1m"}}))
    assert manager.for_plugin("catalog")._ops is manager.store  # white-box


def test_violations_are_counted_by_limit_in_stats() -> None:
    """manager.stats() counts each cut TTL, too-large value and refused operation under its
    limit, on the row of the plugin that caused it."""
    manager = CacheManager.from_config(
        section(
            plugins={
                "catalog": {"maxTtl": "1m", "maxValueBytes": 1000, "operations": ["write"]},
            }
        )
    )
    cache = manager.for_plugin("catalog", "acme")
    cache.set("a", 1, ttl=0)
    cache.set("b", 1, ttl=3600)
    cache.set("c", 1, ttl=30)
    with pytest.raises(ValueTooLarge):
        cache.set("d", BIG)
    with pytest.raises(CachePolicyError):
        cache.get("a")
    manager.for_plugin("reviews").set("a", 1, ttl=0)
    assert violations(manager) == {"maxTtl": 2, "maxValueBytes": 1, "operations": 1}
    assert violations(manager, "reviews") == {}
    assert len(set(manager.stats())) == 2  # rows stay hashable
    manager.metrics.reset()
    assert violations(manager) == {}


def test_prometheus_exports_policy_violations() -> None:
    """The collector exports cachekit_policy_violations_total labelled with the row's
    labels and the limit as reason."""
    manager = CacheManager.from_config(section(plugins={"catalog": {"maxTtl": "1m"}}))
    registry = CollectorRegistry()
    register(manager, registry)
    manager.for_plugin("catalog").set("a", 1, ttl=0)
    manager.for_plugin("catalog").set("b", 1, ttl=0)
    labels = {"plugin": "catalog", "namespace": "", "store": "memory", "reason": "maxTtl"}
    assert registry.get_sample_value("cachekit_policy_violations_total", labels) == 2
    del labels["reason"]
    assert registry.get_sample_value("cachekit_sets_total", labels) == 2


def test_policy_errors_sit_in_the_error_tree() -> None:
    """CachePolicyError is a CachekitError but no StoreError; ValueTooLarge is both a
    CachePolicyError and a CacheValueError (so TypeError and ValueError too)."""
    assert issubclass(CachePolicyError, CachekitError)
    assert not issubclass(CachePolicyError, StoreError | CacheKeyError | CacheValueError)
    for base in (CachePolicyError, CacheValueError, TypeError, ValueError):
        assert issubclass(ValueTooLarge, base)
    error = ValueTooLarge("too big", plugin="p", tenant=None, limit="maxValueBytes", value=5)
    assert (error.plugin, error.tenant, error.limit, error.value) == ("p", None, "maxValueBytes", 5)


def test_reprs_and_description_say_what_the_policy_is() -> None:
    """A policy's description lists every key; the store view's repr names the plugin and
    what it restricts."""
    policy = Policy("catalog", max_ttl=60, default_ttl=60, operations=frozenset({"read"}))
    assert policy.describe() == (
        "enabled, defaultTtl 1m, maxTtl 1m, maxValueBytes 1048576, operations read, failOpen true"
    )
    manager = CacheManager.from_config(section(plugins={"off": {"enabled": False}}))
    assert "plugin='off', disabled" in repr(manager.for_plugin("off")._ops)


# --- cachekit check -----------------------------------------------------------------------------


def write_config(tmp_path: Path, cache: dict[str, Any]) -> str:
    path = tmp_path / "app-config.yaml"
    path.write_text(yaml.safe_dump({"backend": {"cache": cache}}), encoding="utf-8")
    return str(path)


def test_check_prints_the_effective_policy_of_each_configured_plugin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cachekit check` prints pluginDefaults, each plugin and each tenant cap that changes
    a plugin's policy, with every key's effective value."""
    config = write_config(
        tmp_path,
        {
            "defaultTtl": "5m",
            "pluginDefaults": {"maxTtl": "1h"},
            "plugins": {
                "catalog": {"maxTtl": "1m", "operations": ["read", "write"]},
                "reviews": {"enabled": False},
            },
            "tenants": {"acme": {"maxValueBytes": 65536}},
        },
    )
    assert main(["check", "-c", config]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("policy")]
    full = "operations read write delete count expire clear"
    assert lines == [
        "policy   pluginDefaults: enabled, defaultTtl 5m, maxTtl 1h, maxValueBytes 1048576, "
        f"{full}, failOpen true",
        "policy   catalog: enabled, defaultTtl 1m, maxTtl 1m, maxValueBytes 1048576, "
        "operations read write, failOpen true",
        "policy   reviews: disabled, defaultTtl 5m, maxTtl 1h, maxValueBytes 1048576, "
        f"{full}, failOpen true",
        "policy   pluginDefaults for tenant acme: enabled, defaultTtl 5m, maxTtl 1h, "
        f"maxValueBytes 65536, {full}, failOpen true",
        "policy   catalog for tenant acme: enabled, defaultTtl 1m, maxTtl 1m, "
        "maxValueBytes 65536, operations read write, failOpen true",
        "policy   reviews for tenant acme: disabled, defaultTtl 5m, maxTtl 1h, "
        f"maxValueBytes 65536, {full}, failOpen true",
    ]


def test_check_probes_the_store_even_when_plugins_are_disabled_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The probe key bypasses plugin policy: pluginDefaults enabled: false (or no write)
    does not make `cachekit check` fail."""
    config = write_config(tmp_path, {"pluginDefaults": {"enabled": False, "operations": ["read"]}})
    assert main(["check", "-c", config]) == 0
    assert capsys.readouterr().out.endswith("ok\n")


def test_check_reports_a_policy_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad policy key makes `cachekit check` exit 1 with the ConfigError's path."""
    config = write_config(tmp_path, {"plugins": {"catalog": {"maxValueBytes": "1MB"}}})
    assert main(["check", "-c", config]) == 1
    assert "backend.cache.plugins.catalog.maxValueBytes" in capsys.readouterr().err
