"""Redis/Valkey store behaviour beyond the contract: config, key layout on the server, scoped
clears, counters under contention, round trips, scripts, outages and failover."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from servers import RedisCluster, RedisSentinel, RedisServer, pause_process, resume_process

from cachekit import ConfigError, StoreTimeout, StoreUnavailable, gcra
from cachekit.breaker import CircuitBreaker
from cachekit.config import parse_cache_section
from cachekit.host import CacheManager
from cachekit.stores.redis import RedisStore
from cachekit.stores.redis.scripts import INCR_WITH_TTL, PERSIST
from cachekit.stores.redis.store import _milliseconds
from cachekit.testing import FakeClock

TRICKY_TENANTS = ["*", "?", "[a]", "a:b"]


def manager_for(section: dict[str, Any]) -> CacheManager:
    return CacheManager(parse_cache_section(section))


def raw_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5)


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = raw_client(redis_server.url)
    yield client
    client.close()


def retries(retry: Any) -> int:
    """How many times a driver's Retry policy retries (``get_retries()`` is newer than the
    oldest releases we support)."""
    if hasattr(retry, "get_retries"):
        return int(retry.get_retries())
    return int(retry._retries)


def key_names(client: redis.Redis, pattern: str) -> list[str]:
    """The server's keys matching ``pattern``, decoded and sorted (KEYS: fine in a test)."""
    return sorted(k.decode() if isinstance(k, bytes) else k for k in client.keys(pattern))


def command_counts(client: redis.Redis) -> dict[str, int]:
    """Calls per command since start, from INFO commandstats."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def command_delta(client: redis.Redis, action: Callable[[], object]) -> dict[str, int]:
    """The commands the server ran while ``action`` ran (minus the INFO call itself)."""
    before = command_counts(client)
    action()
    after = command_counts(client)
    delta = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
    delta["info"] -= 1
    return {k: n for k, n in delta.items() if n}


# --- config ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("connection", "path", "words"),
    [
        ("http://localhost:6379", "backend.cache.connection", "unsupported URL"),
        ("memcached://localhost:11211", "backend.cache.connection", "redis://"),
        ("redis://localhost:notaport", "backend.cache.connection", "invalid port"),
        ("redis://localhost:6379/zero", "backend.cache.connection", "database number"),
        ("unix://", "backend.cache.connection", "socket path"),
        ({"password": "x"}, "backend.cache.connection.url", "missing 'url'"),
        ({"url": "ftp://h"}, "backend.cache.connection.url", "unsupported URL"),
        ({"url": "redis://h", "pool": 3}, "backend.cache.connection.pool", "unknown key"),
        ({"url": "redis://h", "db": -1}, "backend.cache.connection.db", ">= 0"),
        ({"url": "redis://:a@h", "password": "b"}, "backend.cache.connection.password", "twice"),
        (["redis://a", "redis://b"], "backend.cache.connection", "rootNodes"),
        (None, "backend.cache.connection", "needs a server"),
    ],
    ids=repr,
)
def test_bad_connection_raises_config_error_with_path(
    connection: Any, path: str, words: str
) -> None:
    """An unusable connection value raises ConfigError naming its config path."""
    with pytest.raises(ConfigError, match=words) as info:
        manager_for({"store": "redis", "connection": connection})
    assert info.value.path == path
    assert str(info.value).startswith(path + ":")


@pytest.mark.parametrize(
    ("section", "path", "words"),
    [
        ({"cluster": {"rootNodes": []}}, "backend.cache.redis.cluster.rootNodes", "non-empty"),
        ({"cluster": {}}, "backend.cache.redis.cluster.rootNodes", "at least one node"),
        (
            {"cluster": {"rootNodes": [{"url": "unix:///tmp/s"}]}},
            "backend.cache.redis.cluster.rootNodes[0].url",
            "unsupported URL",
        ),
        (
            {"cluster": {"rootNodes": ["redis://a:1", "rediss://b:2"]}},
            "backend.cache.redis.cluster.rootNodes",
            "one scheme",
        ),
        (
            {"sentinel": {"sentinels": ["localhost"]}},
            "backend.cache.redis.sentinel.sentinels[0]",
            "host:port",
        ),
        ({"sentinel": {"sentinels": []}}, "backend.cache.redis.sentinel.sentinels", "at least"),
        (
            {"cluster": {"rootNodes": ["redis://a:1"]}, "sentinel": {"sentinels": ["a:1"]}},
            "backend.cache.redis",
            "not both",
        ),
    ],
    ids=repr,
)
def test_bad_cluster_or_sentinel_raises_config_error_with_path(
    section: dict[str, Any], path: str, words: str
) -> None:
    """Cluster and Sentinel sections are validated at start-up, naming the path at fault."""
    with pytest.raises(ConfigError, match=words) as info:
        manager_for({"store": "redis", "redis": section})
    assert info.value.path == path


def test_cluster_rejects_a_database_number() -> None:
    """A cluster has only database 0, so a db in the connection is a config error."""
    with pytest.raises(ConfigError, match="database 0"):
        manager_for(
            {
                "store": "redis",
                "connection": "redis://localhost:7000/2",
                "redis": {"cluster": {"rootNodes": ["redis://localhost:7000"]}},
            }
        )


def test_building_connects_to_nothing_and_repr_hides_the_password() -> None:
    """A store on an unreachable URL builds without error (the first call fails), and its
    repr shows where it connects but not the password."""
    manager = manager_for(
        {
            "store": "redis",
            "connection": "redis://user:hunter2@127.0.0.1:1/0",
            "redis": {"client": {"namespace": "my-app"}},
        }
    )
    text = repr(manager.store)
    assert "hunter2" not in text
    assert "redis://user:***@127.0.0.1:1/0" in text
    assert "my-app:" in text
    with pytest.raises(StoreUnavailable):
        manager.store.ping()
    manager.close()


def test_configured_timeouts_and_no_retries_reach_the_clients() -> None:
    """Connect and operation timeouts from config reach the sync and async clients, and the
    client library's own retries are off (one failure costs one timeout at most)."""
    store = RedisStore.from_config(
        parse_cache_section(
            {
                "store": "redis",
                "connection": {"url": "redis://127.0.0.1:1/3", "maxConnections": 7},
                "timeouts": {"connect": "150ms", "operation": "400ms"},
            }
        )
    )

    def check(client: Any) -> None:
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_connect_timeout"] == 0.15
        assert kwargs["socket_timeout"] == 0.4
        assert retries(kwargs["retry"]) == 0
        assert kwargs["db"] == 3
        assert kwargs["protocol"] == 2  # RESP2: see the store's docs for why
        assert client.connection_pool.max_connections == 7

    check(store.client())

    async def check_async() -> None:
        check(store.async_client())
        await store.aclose()

    asyncio.run(check_async())


def test_cluster_clients_get_timeouts_and_no_retries(redis_cluster: RedisCluster) -> None:
    """Cluster clients (sync and async) carry the configured timeouts and do not retry."""
    nodes = [{"url": url} for url in redis_cluster.root_urls]
    store = RedisStore.from_config(
        parse_cache_section(
            {
                "store": "redis",
                "timeouts": {"connect": "150ms", "operation": "400ms"},
                "redis": {"cluster": {"rootNodes": nodes}},
            }
        )
    )
    client = store.client()
    assert retries(client.retry) == 0
    kwargs = client.nodes_manager.connection_kwargs
    assert (kwargs["socket_connect_timeout"], kwargs["socket_timeout"]) == (0.15, 0.4)

    async def check_async() -> None:
        aclient = store.async_client()
        assert retries(aclient.retry) == 0
        akwargs = aclient.connection_kwargs
        assert (akwargs["socket_connect_timeout"], akwargs["socket_timeout"]) == (0.15, 0.4)
        await store.aclose()

    asyncio.run(check_async())
    store.close()


def test_unreachable_cluster_raises_store_unavailable_on_first_call() -> None:
    """Building a cluster store connects to nothing; the first call (sync: the client
    discovers the cluster; async: likewise on first command) raises StoreUnavailable, and
    the failures count towards the breaker."""
    manager = manager_for(
        {"store": "redis", "redis": {"cluster": {"rootNodes": [{"url": "redis://127.0.0.1:1"}]}}}
    )
    cache = manager.for_plugin("p", tenant="t")
    with pytest.raises(StoreUnavailable, match="cannot be connected"):
        cache.get("k")

    async def first_async_call() -> None:
        with pytest.raises(StoreUnavailable):
            await cache.aget("k")
        await manager.aclose()

    asyncio.run(first_async_call())
    with pytest.raises(StoreUnavailable, match="cannot be connected"):
        cache.get("k")
    with pytest.raises(StoreUnavailable, match="skipping"):  # 3 failures opened the breaker
        cache.get("k")


def test_valkey_store_uses_the_valkey_client_and_its_prefix() -> None:
    """store: valkey builds valkey-py clients (installed here) with keyPrefix as prefix."""
    manager = manager_for(
        {"store": "valkey", "connection": "redis://127.0.0.1:1", "valkey": {"keyPrefix": "v:"}}
    )
    assert manager.store.name == "valkey"
    assert manager.store.key_prefix == "v:"
    assert type(manager.store.client()).__module__.startswith("valkey")  # type: ignore[attr-defined]
    manager.close()


@pytest.mark.parametrize(
    ("ttl", "ms"),
    [
        (1.0, 1000),
        (0.3, 300),
        (1.1, 1100),
        (2.3, 2300),
        (0.0001, 1),
        (1e-9, 1),
        (1.0005, 1001),
        (1e30, 10**15),
    ],
)
def test_ttl_goes_out_as_milliseconds_rounded_up(ttl: float, ms: int) -> None:
    """TTLs become whole milliseconds rounded up (never 0), clamped below Redis's limit."""
    assert _milliseconds(ttl) == ms


# --- key layout on the server -----------------------------------------------------------


def test_redis_namespace_prefixes_every_key(redis_server: RedisServer, raw: redis.Redis) -> None:
    """With redis.client.namespace my-app, the server's keys begin my-app:catalog:."""
    manager = manager_for(
        {
            "store": "redis",
            "connection": redis_server.url,
            "redis": {"client": {"namespace": "my-app"}},
        }
    )
    cache = manager.for_plugin("catalog", tenant="acme")
    cache.set("item:1", {"a": 1})
    cache.incr("hits")
    assert key_names(raw, "my-app:*") == [
        "my-app:catalog:acme::hits",
        "my-app:catalog:acme::item:1",
    ]
    assert manager.clear(plugin="catalog") == 2
    manager.close()


@pytest.mark.parametrize(
    "valkey_section", [{"keyPrefix": "my-app:"}, {"client": {"keyPrefix": "my-app:"}}]
)
def test_valkey_key_prefix_prefixes_every_key(
    valkey_server: RedisServer, valkey_section: dict[str, Any]
) -> None:
    """With Valkey keyPrefix 'my-app:' (flat or under client), keys begin my-app:catalog:."""
    manager = manager_for(
        {"store": "valkey", "connection": valkey_server.url, "valkey": valkey_section}
    )
    manager.for_plugin("catalog", tenant="acme").set("k", 1)
    raw = raw_client(valkey_server.url)
    assert key_names(raw, "my-app:*") == ["my-app:catalog:acme::k"]
    assert manager.clear(plugin="catalog") == 1
    raw.close()
    manager.close()


# --- scoped clear --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("tenant", TRICKY_TENANTS)
def test_clear_of_a_glob_tenant_leaves_every_other_scope(
    redis_server: RedisServer, raw: redis.Redis, tenant: str, mode: str
) -> None:
    """clear() for a tenant named *, ?, [a] or a:b deletes exactly that scope's keys on the
    server; every other tenant's, plugin's and the platform's keys remain."""
    manager = manager_for(
        {"store": "redis", "connection": redis_server.url, "redis": {"client": {"namespace": "g"}}}
    )
    tenants: list[str | None] = [*TRICKY_TENANTS, "a", "b", "t1", None]
    for t in tenants:
        for plugin in ("catalog", "search"):
            cache = manager.for_plugin(plugin, tenant=t)
            cache.set("k", 1)
            cache.namespace("ns").set("k", 2)
    before = set(key_names(raw, "g:*"))
    victim = manager.for_plugin("catalog", tenant=tenant)
    if mode == "sync":
        removed = victim.clear()
    else:

        async def run() -> int | None:
            result = await victim.aclear()
            await manager.aclose()
            return result

        removed = asyncio.run(run())
    after = set(key_names(raw, "g:*"))
    gone = before - after
    scope = manager.keyspace.scope_prefix("catalog", tenant, None)
    assert gone == {scope + "k", scope[:-1] + "ns:k"}
    assert removed == 2
    raw.delete(*after)
    manager.close()


def test_clear_scans_in_batches_and_removes_non_utf8_keys(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    """clear() with a small clearBatchSize removes a scope of many keys (several SCAN and
    UNLINK batches), including keys that are not UTF-8, and nothing else."""
    manager = manager_for(
        {
            "store": "redis",
            "connection": redis_server.url,
            "redis": {"client": {"namespace": "batch", "clearBatchSize": 7}},
        }
    )
    cache = manager.for_plugin("catalog", tenant="acme")
    cache.set_many({f"k{i}": i for i in range(100)})
    scope = manager.keyspace.scope_prefix("catalog", "acme", None).encode()
    raw.set(scope + b"\xff\xfe", b"x")
    manager.for_plugin("catalog", tenant="acme2").set("k", 1)
    delta = command_delta(raw, cache.clear)
    assert delta["unlink"] >= 101 // 7
    assert not {"keys", "flushdb", "flushall"} & delta.keys()
    assert key_names(raw, "batch:*") == ["batch:catalog:acme2::k"]
    raw.delete("batch:catalog:acme2::k")
    manager.close()


def test_use_unlink_false_deletes_with_del(redis_server: RedisServer, raw: redis.Redis) -> None:
    """With useUnlink: false, delete, delete_many and clear use DEL instead of UNLINK."""
    manager = manager_for(
        {
            "store": "redis",
            "connection": redis_server.url,
            "redis": {"client": {"useUnlink": False}},
        }
    )
    cache = manager.for_plugin("del-plugin", tenant="t")
    cache.set_many({"a": 1, "b": 2, "c": 3, "d": 4})
    delta = command_delta(raw, lambda: (cache.delete("a"), cache.delete_many(["b"]), cache.clear()))
    assert delta.get("del") == 3
    assert "unlink" not in delta
    manager.close()


# --- one round trip per operation -----------------------------------------------------------


def test_each_operation_is_one_command(redis_server: RedisServer, raw: redis.Redis) -> None:
    """get_many is one MGET, set_many SETs without MULTI, delete_many one UNLINK, add one
    SET, incr one INCRBY (one EVALSHA with a TTL), expire one PEXPIRE."""
    manager = manager_for({"store": "redis", "connection": redis_server.url})
    cache = manager.for_plugin("rt", tenant="t")
    cache.incr("warm", ttl=5)  # load the script once
    keys = [f"k{i}" for i in range(50)]
    assert command_delta(raw, lambda: cache.set_many(dict.fromkeys(keys, 1), ttl=60)) == {"set": 50}
    assert command_delta(raw, lambda: cache.get_many(keys)) == {"mget": 1}
    assert command_delta(raw, lambda: cache.delete_many([*keys, "k0"])) == {"unlink": 1}
    assert command_delta(raw, lambda: cache.add("n", 1)) == {"set": 1}
    assert command_delta(raw, lambda: cache.incr("n")) == {"incrby": 1}
    with_ttl = command_delta(raw, lambda: cache.incr("m", 5, ttl=60))
    assert with_ttl.pop("evalsha") == 1
    assert set(with_ttl) <= {"exists", "incrby", "pexpire"}  # run inside the script
    assert command_delta(raw, lambda: cache.expire("n", 30)) == {"pexpire": 1}
    manager.clear(plugin="rt")
    manager.close()


# --- counters --------------------------------------------------------------------------------


def test_incr_sets_the_ttl_only_when_it_creates_the_key(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    """A counter that exists at 0 without TTL gets no TTL from incr(5, ttl) even though the
    result equals the delta; a missing one gets exactly the TTL given."""
    manager = manager_for({"store": "redis", "connection": redis_server.url})
    cache = manager.for_plugin("ctr", tenant="t")
    cache.set("zero", 0, ttl=0)
    assert cache.incr("zero", 5, ttl=100) == 5
    assert cache.incr("fresh", 5, ttl=100) == 5
    prefix = manager.keyspace.scope_prefix("ctr", "t", None)
    assert raw.pttl(prefix + "zero") == -1
    assert 90_000 < raw.pttl(prefix + "fresh") <= 100_000
    manager.clear(plugin="ctr")
    manager.close()


@pytest.mark.parametrize("store_name", ["redis", "valkey"])
def test_100_threads_and_100_tasks_incr_to_the_exact_sum_with_the_first_ttl(
    request: pytest.FixtureRequest, store_name: str
) -> None:
    """100 threads and 100 asyncio tasks incrementing one key (ttl=600 s) end at exactly the
    sum; the key keeps the TTL of its first increment even after an incr with ttl=5."""
    server = request.getfixturevalue(f"{store_name}_server")
    manager = manager_for({"store": store_name, "connection": server.url})
    cache = manager.for_plugin("race", tenant="t")
    per_worker = 10
    start = threading.Barrier(100)

    def work() -> None:
        start.wait()
        for _ in range(per_worker):
            cache.incr("hits", ttl=600)

    threads = [threading.Thread(target=work) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def work_async() -> None:
        for _ in range(per_worker):
            await cache.aincr("hits", 1, ttl=600)

    async def all_tasks() -> int:
        await asyncio.gather(*(work_async() for _ in range(100)))
        value = await cache.aincr("hits", 0, ttl=5)
        await manager.aclose()
        return value

    assert asyncio.run(all_tasks()) == 2 * 100 * per_worker
    raw = raw_client(server.url)
    pttl = raw.pttl(manager.keyspace.scope_prefix("race", "t", None) + "hits")
    assert 500_000 < pttl <= 600_000
    raw.close()
    manager.clear(plugin="race")
    manager.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_scripts_survive_script_flush(
    redis_server: RedisServer, raw: redis.Redis, mode: str
) -> None:
    """After SCRIPT FLUSH (or a restart) the scripts are sent again on NOSCRIPT, and are
    called by SHA afterwards."""
    manager = manager_for({"store": "redis", "connection": redis_server.url})
    cache = manager.for_plugin("flush", tenant=mode)

    async def run_async(steps: Callable[[], list[Any]]) -> list[Any]:
        values = [await step for step in steps()]
        await manager.aclose()
        return values

    def steps() -> list[Any]:
        if mode == "sync":
            return [cache.incr("n", 2, ttl=60), cache.expire("n", 0)]
        return [cache.aincr("n", 2, ttl=60), cache.aexpire("n", 0)]

    raw.script_flush()
    first = steps() if mode == "sync" else asyncio.run(run_async(steps))
    assert first == [2, True]
    assert raw.script_exists(INCR_WITH_TTL.sha, PERSIST.sha) == [True, True]
    raw.script_flush()
    second = steps() if mode == "sync" else asyncio.run(run_async(steps))
    assert second == [4, True]
    manager.clear(plugin="flush")
    manager.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_gcra_matches_the_reference_step(
    redis_server: RedisServer, raw: redis.Redis, mode: str
) -> None:
    """The Lua GCRA step gives cachekit.gcra.step's answers hit by hit (bursts, refusals,
    costs, idle gaps), stores the TAT as a codec integer and expires it when reached."""
    store = RedisStore.from_url(redis_server.url)
    key = f"gcra:{mode}"
    raw.delete(key)
    interval, period = 100_000, 1_000_000  # 10 per second
    base = 10**15 + 123_456  # microseconds, as the rate limiter sends them
    hits = [(0, 1)] * 12 + [(50_000, 1), (150_000, 3), (2_000_000, 10), (2_000_000, 1)]
    steps = [(base + offset, cost) for offset, cost in hits]
    expected, tat = [], None
    for now, cost in steps:
        allowed, new_tat = gcra.step(tat, now, interval, period, cost)
        tat = new_tat if allowed else tat
        expected.append((allowed, new_tat))

    if mode == "sync":
        got = [store.gcra(key, now, interval, period, cost) for now, cost in steps]
        store.close()
    else:

        async def run() -> list[tuple[bool, int]]:
            out = [await store.agcra(key, now, interval, period, cost) for now, cost in steps]
            await store.aclose()
            return out

        got = asyncio.run(run())
    assert got == expected
    assert [allowed for allowed, _ in got].count(True) == 11  # a burst of 10, then 1
    assert raw.get(key) == b"%d" % tat
    assert 0 < raw.pttl(key) <= 1_000


def test_gcra_is_atomic_across_stores(redis_server: RedisServer, raw: redis.Redis) -> None:
    """Two stores (two processes' worth of clients) racing from eight threads on one limit
    admit exactly the limit."""
    stores = [RedisStore.from_url(redis_server.url) for _ in range(2)]
    key, limit, period, now = "gcra:race", 25, 1_000_000, 10**15
    raw.delete(key)
    allowed: list[bool] = []

    def work(store: RedisStore) -> None:
        for _ in range(20):
            allowed.append(store.gcra(key, now, period // limit, period, 1)[0])

    threads = [threading.Thread(target=work, args=(stores[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for store in stores:
        store.close()
    assert len(allowed) == 160
    assert allowed.count(True) == limit


# --- outages ----------------------------------------------------------------------------------


def _outage_store(server: RedisServer, clock: FakeClock) -> RedisStore:
    breaker = CircuitBreaker("redis", failure_threshold=3, cooldown=2.0, clock=clock)
    return RedisStore.from_url(server.url, breaker=breaker)


class _Spy:
    """Counts the commands a client sends."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, client: Any, *, is_async: bool) -> None:
        self.calls = 0
        original = client.execute_command

        def sync_spy(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return original(*args, **kwargs)

        async def async_spy(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await original(*args, **kwargs)

        monkeypatch.setattr(client, "execute_command", async_spy if is_async else sync_spy)


def test_killed_server_raises_store_unavailable_then_breaker_skips_then_recovers(
    private_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sync: with the server killed, calls raise StoreUnavailable (never a redis-py error);
    after 3 failures the breaker opens and calls fail without sending anything; once the
    server is back and the cooldown is over, the next call succeeds and closes the breaker."""
    clock = FakeClock()
    store = _outage_store(private_redis_server, clock)
    cache = CacheManager(store=store).for_plugin("outage", tenant="t")
    cache.set("k", "before")
    spy = _Spy(monkeypatch, store.client(), is_async=False)
    private_redis_server.kill()
    for _ in range(3):
        with pytest.raises(StoreUnavailable) as info:
            cache.get("k")
        assert not isinstance(info.value, redis.RedisError)
        assert isinstance(info.value.__cause__, redis.ConnectionError)
    assert store.breaker.state == "open"
    sent = spy.calls
    with pytest.raises(StoreUnavailable, match="skipping"):
        cache.set("k", "during")
    assert spy.calls == sent
    private_redis_server.start()
    clock.advance(2.0)
    assert cache.get("k") is None  # a restarted server without persistence is empty
    assert store.breaker.state == "closed"
    cache.set("k", "after")
    assert cache.get("k") == "after"
    store.close()


def test_killed_server_async_raises_store_unavailable_then_recovers(
    private_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Async: the same outage through the async client — StoreUnavailable, then the open
    breaker sends nothing, then recovery after restart and cooldown."""
    clock = FakeClock()
    store = _outage_store(private_redis_server, clock)
    cache = CacheManager(store=store).for_plugin("outage", tenant="t")

    async def scenario() -> None:
        await cache.aset("k", "before")
        spy = _Spy(monkeypatch, store.async_client(), is_async=True)
        private_redis_server.kill()
        for _ in range(3):
            with pytest.raises(StoreUnavailable) as info:
                await cache.aget("k")
            assert isinstance(info.value.__cause__, redis.ConnectionError)
        sent = spy.calls
        with pytest.raises(StoreUnavailable, match="skipping"):
            await cache.aincr("n")
        assert spy.calls == sent
        private_redis_server.start()
        clock.advance(2.0)
        await cache.aset("k", "after")
        assert await cache.aget("k") == "after"
        assert store.breaker.state == "closed"
        await store.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_restart_is_survived_by_the_first_call(
    private_redis_server: RedisServer, mode: str
) -> None:
    """After a restart, the first call on pooled (now dead) connections succeeds: the pool
    replaces them instead of failing or hanging."""
    store = RedisStore.from_url(private_redis_server.url)
    cache = CacheManager(store=store).for_plugin("restart", tenant="t")
    if mode == "sync":
        cache.set("k", 1)
        private_redis_server.restart()
        cache.set("k", 2)
        assert cache.get("k") == 2
        store.close()
    else:

        async def scenario() -> Any:
            await cache.aset("k", 1)
            private_redis_server.restart()
            # In an app the loop keeps running while the server restarts, and so sees the
            # old sockets close; restart() blocked this loop, so let it run briefly.
            await asyncio.sleep(0.01)
            await cache.aset("k", 2)
            value = await cache.aget("k")
            await store.aclose()
            return value

        assert asyncio.run(scenario()) == 2
    assert store.breaker.state == "closed"


def test_frozen_server_raises_store_timeout(private_redis_server: RedisServer) -> None:
    """A server that accepts connections but does not answer (SIGSTOP) makes calls raise
    StoreTimeout after the operation timeout, sync and async."""
    store = RedisStore.from_url(private_redis_server.url, operation_timeout=0.2)
    cache = CacheManager(store=store).for_plugin("frozen", tenant="t")
    cache.set("k", 1)
    pid = private_redis_server.pid
    assert pid is not None
    pause_process(pid)
    try:
        with pytest.raises(StoreTimeout):
            cache.get("k")

        async def frozen_async() -> None:
            with pytest.raises(StoreTimeout):
                await cache.aget("k")
            await store.aclose()

        asyncio.run(frozen_async())
    finally:
        resume_process(pid)
    assert cache.get("k") == 1
    store.close()


def test_wrong_password_says_authentication_failed(private_redis_server: RedisServer) -> None:
    """Against a server that requires a password, none or a wrong one raises
    StoreUnavailable saying authentication failed; the right one works."""
    private_redis_server.command("CONFIG", "SET", "requirepass", "s3cret")
    base = f"127.0.0.1:{private_redis_server.port}"
    for url in (f"redis://{base}", f"redis://:wrong@{base}"):
        store = RedisStore.from_url(url)
        with pytest.raises(StoreUnavailable, match="authentication failed"):
            store.ping()
        store.close()
    good = RedisStore.from_url(f"redis://:s3cret@{base}")
    good.ping()
    good.close()


# --- cluster and sentinel --------------------------------------------------------------------


def test_cluster_clear_scans_every_primary(redis_cluster: RedisCluster) -> None:
    """On a cluster, clear() finds a scope's keys on every primary (sync and async) and
    leaves the neighbouring scope alone."""
    nodes = [{"url": url} for url in redis_cluster.root_urls]
    manager = manager_for(
        {
            "store": "redis",
            "redis": {"cluster": {"rootNodes": nodes}, "client": {"clearBatchSize": 10}},
        }
    )
    cache = manager.for_plugin("spread", tenant="t")
    neighbour = manager.for_plugin("spread", tenant="u")
    cache.set_many({f"k{i}": i for i in range(60)})
    neighbour.set("k0", "stays")
    holders = {
        node.port
        for node in redis_cluster.nodes
        if node.command("DBSIZE") and node.info("replication").get("role") == "master"
    }
    assert len(holders) == 3  # the scope's keys really live on every primary
    assert cache.clear() == 60
    assert cache.get_many([f"k{i}" for i in range(60)]) == {}
    cache.set_many({f"k{i}": i for i in range(30)})

    async def clear_async() -> int | None:
        removed = await cache.aclear()
        await manager.aclose()
        return removed

    assert asyncio.run(clear_async()) == 30
    assert neighbour.get("k0") == "stays"
    manager.clear(plugin="spread")
    manager.close()


def test_cluster_burst_of_first_async_calls_succeeds(redis_cluster: RedisCluster) -> None:
    """Fifty concurrent first calls on a fresh cluster store all succeed (the client
    discovers the cluster once before any of them is sent)."""
    nodes = [{"url": url} for url in redis_cluster.root_urls]
    manager = manager_for({"store": "redis", "redis": {"cluster": {"rootNodes": nodes}}})
    cache = manager.for_plugin("burst", tenant="t")

    async def burst() -> list[int]:
        values = await asyncio.gather(*(cache.aincr(f"n{i % 7}", ttl=60) for i in range(50)))
        await manager.aclose()
        return list(values)

    assert sorted(asyncio.run(burst()))[-1] == 8
    manager.clear(plugin="burst")
    manager.close()


def test_sentinel_failover_is_followed(redis_sentinel: RedisSentinel) -> None:
    """After a Sentinel failover the store writes to the new master: at most one call fails
    (StoreUnavailable, never a driver error) while it re-discovers the master."""
    sentinels = [f"{host}:{port}" for host, port in redis_sentinel.sentinels]
    manager = manager_for(
        {
            "store": "redis",
            "redis": {
                "sentinel": {"sentinels": sentinels, "masterName": redis_sentinel.master_name}
            },
        }
    )
    cache = manager.for_plugin("failover", tenant="t")
    cache.set("k", "before")
    old = redis_sentinel.master_address()
    new = redis_sentinel.failover()
    assert new != old
    failures = 0
    for attempt in range(3):
        try:
            cache.set("k", f"after{attempt}")
            break
        except StoreUnavailable:
            failures += 1
    assert failures <= 1
    assert cache.get("k") == f"after{failures}"
    master = redis_sentinel.current_master()
    assert master.command("GET", manager.keyspace.scope_prefix("failover", "t", None) + "k")
    manager.clear(plugin="failover")
    manager.close()


def test_one_async_client_per_event_loop(redis_server: RedisServer) -> None:
    """Each event loop gets its own async client (one made on another loop cannot be used
    there); calls from two loops in turn and from a thread's loop all work."""
    store = RedisStore.from_url(redis_server.url)
    cache = CacheManager(store=store).for_plugin("loops", tenant="t")
    seen: list[Any] = []

    async def use(value: int) -> Any:
        await cache.aset("k", value)
        seen.append(store.async_client())
        result = await cache.aget("k")
        await store.aclose()
        return result

    assert asyncio.run(use(1)) == 1
    assert asyncio.run(use(2)) == 2
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(asyncio.run(use(3))))
    thread.start()
    thread.join()
    assert results == [3]
    assert len({id(c) for c in seen}) == 3
    cache.clear()
    store.close()


@pytest.mark.parametrize("topology", ["cluster", "sentinel"])
def test_valkey_client_library_drives_cluster_and_sentinel(
    request: pytest.FixtureRequest, topology: str
) -> None:
    """store: valkey with valkey.cluster / valkey.sentinel builds valkey-py's cluster and
    sentinel clients, which work sync and async (here against the Redis topologies)."""
    section: dict[str, Any]
    if topology == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        section = {"cluster": {"rootNodes": [{"url": u} for u in cluster.root_urls]}}
    else:
        setup = request.getfixturevalue("redis_sentinel")
        sentinels = [f"{host}:{port}" for host, port in setup.sentinels]
        section = {"sentinel": {"sentinels": sentinels, "masterName": setup.master_name}}
    manager = manager_for({"store": "valkey", "valkey": {**section, "keyPrefix": "vk:"}})
    cache = manager.for_plugin("vk", tenant="t")
    assert type(manager.store.client()).__module__.startswith("valkey")  # type: ignore[attr-defined]
    cache.set_many({"a": 1, "b": 2}, ttl=60)
    assert cache.incr("a", 4, ttl=60) == 5

    async def async_side() -> tuple[Any, ...]:
        values = (
            await asyncio.gather(*(cache.aincr("n", ttl=60) for _ in range(20))),
            await cache.aget_many(["a", "b"]),
            await cache.aclear(),
        )
        await manager.aclose()
        return values

    counts, found, removed = asyncio.run(async_side())
    assert sorted(counts) == list(range(1, 21))
    assert found == {"a": 5, "b": 2}
    assert removed == 3
    manager.close()


# --- bounded queueing on a full pool ------------------------------------------------------


class _HeldClient:
    """A stand-in client whose ``get`` of ``"hold"`` blocks until released (sync or async),
    so a test can keep the store's only connection slot busy."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.release = threading.Event()
        self.async_release: asyncio.Event | None = None

    def get(self, key: str) -> bytes:
        if key == "hold":
            self.holding.set()
            self.release.wait(10)
        return b"v"

    async def aget_held(self, key: str) -> bytes:
        if key == "hold":
            assert self.async_release is not None
            await self.async_release.wait()
        return b"v"


class _AsyncHeldClient:
    def __init__(self, held: _HeldClient) -> None:
        self.get = held.aget_held


def test_a_caller_waiting_for_a_busy_pool_times_out_without_moving_the_breaker() -> None:
    """With every slot busy a caller waits; after pool_timeout it gets StoreTimeout, which
    is not a store failure: the breaker stays closed with no failure counted, even after
    more such timeouts than its threshold. Once the slot is free, calls go through."""
    held = _HeldClient()
    store = RedisStore(
        lambda: held,
        lambda: _AsyncHeldClient(held),
        max_connections=1,
        pool_timeout=0.05,
        breaker=CircuitBreaker("redis", failure_threshold=1, cooldown=60),
    )
    holder = threading.Thread(target=store.get, args=("hold",))
    holder.start()
    assert held.holding.wait(10)
    try:
        for _ in range(3):
            with pytest.raises(StoreTimeout, match="connections stayed busy"):
                store.get("k")
    finally:
        held.release.set()
        holder.join()
    assert store.breaker.state == "closed"
    assert store.breaker.healthy
    assert store.get("k") == b"v"

    async def scenario() -> None:
        held.async_release = asyncio.Event()
        task = asyncio.create_task(store.aget("hold"))
        await asyncio.sleep(0)  # the task takes the slot and waits
        for _ in range(3):
            with pytest.raises(StoreTimeout, match="connections stayed busy"):
                await store.aget("k")
        held.async_release.set()
        assert await task == b"v"
        assert await store.aget("k") == b"v"

    asyncio.run(scenario())
    assert store.breaker.state == "closed"
    assert store.breaker.healthy


def test_more_callers_than_connections_queue_and_all_succeed(redis_server: RedisServer) -> None:
    """maxConnections: 2 with 10 threads and 100 asyncio tasks: every call succeeds (callers
    queue for a connection instead of failing) and the server never sees more than two
    connections from each of the store's pools."""
    name = "queue-test"
    manager = manager_for(
        {
            "store": "redis",
            "connection": {"url": redis_server.url, "maxConnections": 2, "clientName": name},
            "timeouts": {"connect": "5s", "operation": "5s"},
        }
    )
    cache = manager.for_plugin("queue", tenant="t")
    cache.set("k", 1)
    raw = raw_client(redis_server.url)
    peak: list[int] = []

    def ours() -> int:
        return sum(1 for c in raw.client_list() if c.get("name") == name)

    def work() -> None:
        for _ in range(50):
            assert cache.get("k") == 1
        peak.append(ours())

    threads = [threading.Thread(target=work) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def tasks() -> list[Any]:
        values = await asyncio.gather(*(cache.aget("k") for _ in range(100)))
        peak.append(ours())
        await manager.aclose()
        return list(values)

    assert asyncio.run(tasks()) == [1] * 100
    assert max(peak) <= 4  # two sync + two async connections at most
    assert store_breaker_closed(manager)
    raw.close()
    manager.clear(plugin="queue")
    manager.close()


def store_breaker_closed(manager: CacheManager) -> bool:
    return manager.store.breaker.state == "closed"  # type: ignore[attr-defined,no-any-return]


def test_a_cancelled_waiter_gives_up_its_place_and_no_slot_is_lost() -> None:
    """With the only slot held, a queued caller that is cancelled leaves the queue; the
    next queued caller gets the slot when it is released, and afterwards the slot is free
    again (a later call does not wait)."""
    held = _HeldClient()
    store = RedisStore(
        lambda: held, lambda: _AsyncHeldClient(held), max_connections=1, pool_timeout=5
    )

    async def scenario() -> None:
        held.async_release = asyncio.Event()
        holder = asyncio.create_task(store.aget("hold"))
        await asyncio.sleep(0)
        quitter = asyncio.create_task(store.aget("a"))
        patient = asyncio.create_task(store.aget("b"))
        await asyncio.sleep(0)
        quitter.cancel()
        await asyncio.sleep(0)
        held.async_release.set()
        assert await holder == b"v"
        assert await patient == b"v"
        assert quitter.cancelled()
        async with asyncio.timeout(1):  # would wait pool_timeout (5 s) if the slot were lost
            assert await store.aget("c") == b"v"

    asyncio.run(scenario())
