"""Named bindings: ``backend.cache.bindings.<name>``, each a store section of its own, and
the grants (``plugins.<id>.bindings``) that decide which plugin may use which.

Store behaviour runs on the real servers the suite starts: a manager whose default binding
is the in-memory store and whose named bindings are real Redis and real memcached.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from servers import MemcachedServer, RedisServer, free_port

from cachekit import cached, counter, current_cache, rate_limit
from cachekit.config import DEFAULT_BINDING, parse_cache_section
from cachekit.contrib.prometheus import register
from cachekit.errors import CacheKeyError, CachePolicyError, ConfigError, NoScopeError
from cachekit.host import CacheManager, scope
from cachekit.stores import BaseStore

# --- config ------------------------------------------------------------------------------


def test_each_binding_is_a_full_store_section() -> None:
    """A binding parses store, connection, defaultTtl, failOpen, timeouts and its store's
    own section, independently of backend.cache."""
    config = parse_cache_section(
        {
            "store": "memory",
            "defaultTtl": "1m",
            "bindings": {
                "sessions": {
                    "store": "redis",
                    "connection": "redis://cache:6379/2",
                    "defaultTtl": "1h",
                    "failOpen": False,
                    "timeouts": {"operation": "100ms"},
                    "redis": {"client": {"namespace": "sess"}},
                },
                "counts": None,
            },
        }
    )
    sessions = config.binding("sessions")
    assert config.binding_names == ("default", "sessions", "counts")
    assert (sessions.store, sessions.default_ttl, sessions.fail_open) == ("redis", 3600.0, False)
    assert sessions.timeouts.operation == 0.1
    assert sessions.redis.client.namespace == "sess"
    assert sessions.target == "redis://cache:6379/2"
    assert config.binding("counts").store == "memory"
    assert config.binding(None) is config.binding(DEFAULT_BINDING) is config
    assert config.default_ttl == 60.0


@pytest.mark.parametrize(
    ("bindings", "path", "message"),
    [
        ({"default": {}}, "backend.cache.bindings.default", "the name of backend.cache itself"),
        ({"my sessions": {}}, "backend.cache.bindings.my sessions", "not a valid binding name"),
        ({"-x": {}}, "backend.cache.bindings.-x", "not a valid binding name"),
        (
            {"user-sessions": {}, "user_sessions": {}},
            "backend.cache.bindings.user_sessions",
            "share the environment name USER_SESSIONS",
        ),
        ({"s": {"plugins": {}}}, "backend.cache.bindings.s.plugins", "set once, under"),
        ({"s": {"metrics": {}}}, "backend.cache.bindings.s.metrics", "metrics are the manager's"),
        ({"s": {"bindings": {}}}, "backend.cache.bindings.s.bindings", "do not nest"),
        ({"s": {"store": "redsi"}}, "backend.cache.bindings.s.store", "did you mean 'redis'"),
        ({"s": {"defaultTtl": "soon"}}, "backend.cache.bindings.s.defaultTtl", "as a duration"),
        (["s"], "backend.cache.bindings", "a mapping of binding names"),
    ],
)
def test_bad_bindings_are_config_errors_naming_their_path(
    bindings: Any, path: str, message: str
) -> None:
    """A bad binding name, a reserved or colliding one, a manager-wide key inside a binding
    or a bad store value is a ConfigError naming its config path."""
    with pytest.raises(ConfigError, match=message) as caught:
        parse_cache_section({"bindings": bindings})
    assert caught.value.path == path


@pytest.mark.parametrize(
    "section",
    [
        {"plugins": {"catalog": {"bindings": ["sesions"]}}},
        {"pluginDefaults": {"bindings": ["sesions"]}},
        {"tenants": {"acme": {"bindings": ["sesions"]}}},
    ],
)
def test_a_grant_of_an_unknown_binding_is_a_config_error(section: dict[str, Any]) -> None:
    """Granting a binding that is not configured is caught when the config is parsed,
    with a did-you-mean and the configured bindings."""
    with pytest.raises(ConfigError, match=r"did you mean 'sessions'.*default, sessions") as caught:
        parse_cache_section({"bindings": {"sessions": {}}, **section})
    assert caught.value.path.endswith(".bindings")


# --- the manager -------------------------------------------------------------------------


@pytest.fixture
def manager(redis_server: RedisServer, memcached_server: MemcachedServer) -> Any:
    """Default binding in memory, ``sessions`` on real Redis, ``counts`` on real memcached;
    catalog is granted both, reviews nothing beyond the default."""
    manager = CacheManager.from_section(
        {
            "defaultTtl": "1h",
            "bindings": {
                "sessions": {"store": "redis", "connection": redis_server.url, "defaultTtl": "5m"},
                "counts": {
                    "store": "memcache",
                    "connection": f"{memcached_server.host}:{memcached_server.port}",
                },
            },
            "knownPlugins": ["catalog", "reviews"],
            "plugins": {"catalog": {"bindings": ["sessions", "counts"], "maxTtl": "10m"}},
        }
    )
    yield manager
    manager.clear(plugin="catalog")
    manager.close()


def test_keys_of_different_bindings_live_in_different_stores(
    manager: CacheManager, redis_server: RedisServer
) -> None:
    """A write on a binding lands in that binding's store, under the usual scope prefix,
    and nowhere else."""
    default = manager.for_plugin("catalog", "acme")
    sessions = manager.for_plugin("catalog", "acme", binding="sessions")
    counts = manager.for_plugin("catalog", "acme", binding="counts")
    sessions.set("k", "in redis")
    default.set("k", "in memory")
    assert counts.get("k") is None
    assert (default.get("k"), sessions.get("k")) == ("in memory", "in redis")
    full = manager.full_key(sessions, "k")
    assert full == manager.full_key(default, "k") == "catalog:acme::k"  # same layout
    assert redis_server.command("EXISTS", full) == 1
    default.delete("k")
    assert redis_server.command("EXISTS", full) == 1
    assert manager.binding("sessions").store is not manager.store
    assert (sessions.binding, default.binding) == ("sessions", "default")


def test_a_binding_gives_its_plugins_its_defaults_and_the_plugin_limits_apply(
    manager: CacheManager,
) -> None:
    """defaultTtl comes from the binding's section; the plugin's maxTtl caps it on every
    binding; a plugin without limits gets the binding's default."""
    assert manager.for_plugin("reviews").default_ttl == 3600.0
    assert manager.for_plugin("catalog").default_ttl == 600.0  # maxTtl 10m over defaultTtl 1h
    assert manager.for_plugin("catalog", binding="sessions").default_ttl == 300.0


def test_a_binding_not_granted_is_a_policy_error_naming_plugin_binding_and_grants(
    manager: CacheManager,
) -> None:
    """A plugin asking for a binding it is not granted gets a CachePolicyError naming the
    plugin, the binding and what it may use; an unknown binding says none is configured."""
    with pytest.raises(CachePolicyError) as caught:
        manager.for_plugin("reviews", "acme", binding="sessions")
    error = caught.value
    assert "plugin 'reviews' may not use cache binding 'sessions'" in str(error)
    assert "it is granted default;" in str(error)
    assert "plugins.reviews.bindings" in str(error)
    assert (error.plugin, error.tenant, error.limit, error.value) == (
        "reviews",
        "acme",
        "bindings",
        "sessions",
    )
    with pytest.raises(CachePolicyError, match="configures no binding 'nope'"):
        manager.for_plugin("catalog", binding="nope")
    assert manager.granted("catalog") == ("default", "counts", "sessions")
    assert manager.granted("reviews") == ("default",)


def test_grants_from_plugin_defaults_and_tenants_narrowing() -> None:
    """pluginDefaults.bindings grants every plugin; a plugin's own list replaces it; a
    tenant's list narrows the plugin's grant and never grants by itself."""
    manager = CacheManager.from_section(
        {
            "bindings": {"a": {}, "b": {}},
            "knownPlugins": ["p", "q"],
            "pluginDefaults": {"bindings": ["a"]},
            "plugins": {"q": {"bindings": ["a", "b"]}},
            "tenants": {"t": {"bindings": ["b"]}, "u": {"bindings": ["a", "b"]}},
        }
    )
    assert manager.granted("p") == ("default", "a")
    assert manager.granted("q") == ("default", "a", "b")
    assert manager.granted("q", "t") == ("default", "b")
    assert manager.granted("p", "t") == ("default",)  # t lists b, p is not granted b
    assert manager.granted("p", "u") == ("default", "a")
    assert manager.granted("p", None) == ("default", "a")


def test_policy_line_shows_granted_bindings() -> None:
    """cachekit check's policy line lists the bindings when a plugin has more than the
    default one."""
    manager = CacheManager.from_section(
        {"bindings": {"s": {}}, "knownPlugins": ["p"], "plugins": {"p": {"bindings": ["s"]}}}
    )
    policy = manager.for_plugin("p").policy
    assert policy is not None
    assert policy.describe().endswith(", bindings default, s")
    assert "bindings" not in manager.for_plugin("other").policy.describe()  # type: ignore[union-attr]


def test_the_host_clears_a_tenant_across_every_binding(
    manager: CacheManager, redis_server: RedisServer
) -> None:
    """manager.clear(tenant=) offboards the tenant in every binding's store; binding= limits
    a clear to one binding."""
    for binding in ("default", "sessions", "counts"):
        manager.for_plugin("catalog", "acme", binding=binding).set("k", binding)
        manager.for_plugin("catalog", "other", binding=binding).set("k", binding)
    manager.clear(tenant="acme", binding="sessions")
    assert manager.for_plugin("catalog", "acme", binding="sessions").get("k") is None
    assert manager.for_plugin("catalog", "acme").get("k") == "default"
    assert manager.clear(tenant="acme") is None  # memcached cannot count
    for binding in ("default", "sessions", "counts"):
        assert manager.for_plugin("catalog", "acme", binding=binding).get("k") is None
        assert manager.for_plugin("catalog", "other", binding=binding).get("k") == binding
    with pytest.raises(ConfigError, match="no cache binding 'x'; configured: default, sessions"):
        manager.clear(tenant="acme", binding="x")


def test_counts_cleared_across_counting_stores(redis_server: RedisServer) -> None:
    """Across stores that count, clear() returns the total removed."""
    manager = CacheManager.from_section(
        {
            "bindings": {"s": {"store": "redis", "connection": redis_server.url}},
            "pluginDefaults": {"bindings": ["s"]},
        }
    )
    with manager:
        for binding in ("default", "s"):
            manager.for_plugin("clearcount", "t", binding=binding).set_many({"a": 1, "b": 2})
        assert manager.for_plugin("clearcount", "t").get_many(["a", "b"]) == {"a": 1, "b": 2}
        assert manager.clear(plugin="clearcount") == 4


class Recorder(BaseStore):
    """A custom store that records whether it was closed (named by dotted path below)."""

    name = "recorder"
    closed: list[str] = []  # noqa: RUF012  # shared by every instance: the record

    def __init__(self, label: str = "") -> None:
        self.label = label
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self.data[key] = value

    def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None

    def touch(self, key: str, ttl: float | None = None) -> bool:
        return key in self.data

    def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        raise NotImplementedError

    def close(self) -> None:
        Recorder.closed.append(self.label)


def test_close_closes_every_binding_and_each_logs_its_startup_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The manager logs one INFO line per named binding (its store, where it connects)
    after its own, and close() closes every binding's store."""
    Recorder.closed.clear()
    caplog.set_level(logging.INFO, logger="cachekit")
    manager = CacheManager.from_section(
        {
            "store": "test_bindings:Recorder",
            "options": {"label": "default"},
            "bindings": {
                "a": {"store": "test_bindings:Recorder", "options": {"label": "a"}},
                "b": {"store": "redis", "connection": "redis://:hunter2@cache.internal:6379/1"},
            },
        }
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "cachekit"]
    assert lines[-2].startswith("cachekit: binding 'a': test_bindings:Recorder store")
    assert lines[-1] == ("cachekit: binding 'b': redis store at redis://:***@cache.internal:6379/1")
    manager.close()
    assert Recorder.closed == ["default", "a"]  # and redis closed its (unopened) pool


def test_stats_have_a_binding_dimension_and_prometheus_a_binding_label() -> None:
    """manager.stats() rows carry their binding, and a manager with named bindings exports
    a binding label (two bindings on the same store kind stay separate series)."""
    manager = CacheManager.from_section(
        {"bindings": {"s": {}}, "knownPlugins": ["p"], "plugins": {"p": {"bindings": ["s"]}}}
    )
    manager.for_plugin("p").get("k")
    manager.for_plugin("p", binding="s").set("k", 1)
    manager.for_plugin("p", binding="s").get("k")
    rows = {(r.binding, r.store): (r.hits, r.misses, r.sets) for r in manager.stats()}
    assert rows == {("default", "memory"): (0, 1, 0), ("s", "memory"): (1, 0, 1)}
    registry = CollectorRegistry()
    register(manager, registry)
    text = generate_latest(registry).decode()
    assert 'cachekit_hits_total{binding="s",namespace="",plugin="p",store="memory"} 1.0' in text
    assert (
        'cachekit_misses_total{binding="default",namespace="",plugin="p",store="memory"} 1.0'
        in (text)
    )


def test_without_named_bindings_prometheus_series_keep_their_labels() -> None:
    """A manager with only the default binding exports the labels it always did."""
    manager = CacheManager()
    manager.for_plugin("p").get("k")
    registry = CollectorRegistry()
    register(manager, registry)
    assert 'cachekit_misses_total{namespace="",plugin="p",store="memory"} 1.0' in (
        generate_latest(registry).decode()
    )


# --- the plugin surface ------------------------------------------------------------------


def test_current_cache_binding_is_the_scopes_cache_on_that_binding(
    manager: CacheManager,
) -> None:
    """current_cache(binding=) is the bound scope's cache on that binding (built once),
    namespaces included; tenants stay apart on a binding."""
    with scope("catalog", "acme", manager=manager):
        sessions = current_cache(binding="sessions")
        assert current_cache(binding="sessions") is sessions
        assert current_cache(binding="default") is current_cache()
        users = current_cache("users", binding="sessions")
        assert current_cache("users", binding="sessions") is users
        assert (users.binding, users.namespace_name, users.tenant) == ("sessions", "users", "acme")
        sessions.set("who", "acme")
        users.set("who", "acme-users")
        assert current_cache().get("who") is None
    with scope("catalog", "globex", manager=manager):
        assert current_cache(binding="sessions").get("who") is None
    with scope("catalog", "acme", manager=manager):
        assert current_cache(binding="sessions").get("who") == "acme"
        assert current_cache("users", binding="sessions").get("who") == "acme-users"


def test_current_cache_of_a_binding_not_granted_raises(manager: CacheManager) -> None:
    """Plugin code cannot reach a binding its plugin is not granted; outside a scope it
    gets NoScopeError like current_cache()."""
    with (
        scope("reviews", "acme", manager=manager),
        pytest.raises(
            CachePolicyError, match="plugin 'reviews' may not use cache binding 'sessions'"
        ),
    ):
        current_cache(binding="sessions")
    with pytest.raises(NoScopeError):
        current_cache(binding="sessions")


def test_cached_counter_and_rate_limit_on_a_binding(
    manager: CacheManager, redis_server: RedisServer
) -> None:
    """@cached(binding=), counter(binding=) and rate_limit(binding=) keep their data in
    that binding's store, sync and async."""
    calls: list[int] = []

    @cached(namespace="prices", binding="sessions")
    def price(sku: int) -> int:
        calls.append(sku)
        return sku * 10

    @cached(namespace="aprices", binding="sessions")
    async def aprice(sku: int) -> int:
        calls.append(sku)
        return sku * 100

    visits = counter("visits", binding="counts")
    limit = rate_limit("search", 2, per=60, binding="sessions")

    async def run_async() -> list[int | None]:
        try:
            return [await aprice(2), await aprice(2), await visits.aincr()]
        finally:
            await manager.aclose()  # this loop's clients

    with scope("catalog", "acme", manager=manager):
        assert [price(1), price(1)] == [10, 10]
        assert visits.incr() == 1
        assert asyncio.run(run_async()) == [200, 200, 2]
        assert calls == [1, 2]
        assert current_cache("prices", binding="sessions").get("1") == 10
        assert current_cache("prices").get("1") is None
        full = manager.full_key(current_cache("prices", binding="sessions"), "1")
        assert redis_server.command("EXISTS", full) == 1
        assert current_cache("counters", binding="counts").get("visits") == 2
        assert current_cache("counters").get("visits") is None
        assert [limit.hit().allowed for _ in range(3)] == [True, True, False]
        assert rate_limit("search", 2, per=60).peek().remaining == 2  # the default's is new
        assert redis_server.command("KEYS", "catalog:acme:ratelimits:search|*")
    assert repr(visits).endswith("binding='counts')")


def test_helpers_of_a_binding_not_granted_raise_not_fail_open(manager: CacheManager) -> None:
    """@cached on a binding the plugin is not granted raises CachePolicyError (the host's
    decision is not an outage to call through)."""

    @cached(binding="sessions")
    def f() -> int:
        return 1

    with scope("reviews", "acme", manager=manager):
        with pytest.raises(CachePolicyError, match="binding 'sessions'"):
            f()
        with pytest.raises(CachePolicyError):
            counter("c", binding="sessions").incr()


def test_a_bad_binding_name_fails_when_the_helper_is_made() -> None:
    """A binding= that cannot name a binding is refused when the decorator is applied or
    the helper made, not on the first call."""
    with pytest.raises(CacheKeyError, match="not a binding name"):
        cached(binding="my sessions")
    with pytest.raises(CacheKeyError):
        counter("c", binding="")
    with pytest.raises(CacheKeyError):
        rate_limit("r", 1, per=1, binding=7)  # type: ignore[arg-type]


def test_an_outage_of_one_binding_fails_open_and_leaves_the_others_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """@cached on a binding whose Redis is down calls through (one warning naming the redis
    store), while the default binding keeps caching."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    manager = CacheManager.from_section(
        {
            "bindings": {"down": {"store": "redis", "connection": dead}},
            "knownPlugins": ["p"],
            "plugins": {"p": {"bindings": ["down"]}},
        }
    )
    calls: list[str] = []

    @cached(binding="down")
    def on_down(x: int) -> int:
        calls.append("down")
        return x

    @cached()
    def on_default(x: int) -> int:
        calls.append("default")
        return x

    with manager, scope("p", "t", manager=manager):
        assert [on_down(1), on_down(1), on_default(1), on_default(1)] == [1, 1, 1, 1]
    assert calls == ["down", "down", "default"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("calls through while the redis store fails" in w for w in warnings)
