"""The Infinispan store beyond the contract, on the fake REST server (tests/infinispan_fake.py):
exact counters under 50 concurrent writers, the server's ETag quirk, TTL headers,
authentication, failover to backup clusters, generations across processes, lock takeover,
Backstage's configuration (its docs' example runs in tests/test_backstage_options.py), and
secrets kept out of sight."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from infinispan_fake import TEST_PASSWORD, TEST_USER, FakeInfinispan
from servers import LOOPBACK, free_port

from cachekit.config import parse_app_config, parse_cache_section
from cachekit.config.infinispan import InfinispanConnectionSpec
from cachekit.errors import CacheValueError, ConfigError, StoreUnavailable
from cachekit.host import CacheManager
from cachekit.stores.infinispan import InfinispanStore
from cachekit.testing import FakeClock

T = TypeVar("T")

HEADROOM = {"timeouts": {"connect": "2s", "operation": "2s"}}


def _section(fake: FakeInfinispan, **infinispan: Any) -> dict[str, Any]:
    servers = [{"host": fake.host, "port": fake.port}]
    return {"store": "infinispan", "infinispan": {"servers": servers, **infinispan}, **HEADROOM}


def _store(fake: FakeInfinispan, **infinispan: Any) -> InfinispanStore:
    return InfinispanStore.from_config(parse_cache_section(_section(fake, **infinispan)))


def _arun(store: InfinispanStore, call: Coroutine[Any, Any, T]) -> T:
    """Await ``call`` on a new event loop, closing the store's client of that loop after."""

    async def main() -> T:
        try:
            return await call
        finally:
            await store.aclose()

    return asyncio.run(main())


@pytest.fixture
def store(infinispan_fake: FakeInfinispan) -> Iterator[InfinispanStore]:
    store = _store(infinispan_fake)
    yield store
    store.close()


# --- counters: exact under concurrent writers ---------------------------------------------


def test_incr_is_exact_under_50_concurrent_writers_in_five_stores(
    infinispan_fake: FakeInfinispan,
) -> None:
    """50 threads over five stores (each with its own clients and in-process locks, as five
    processes have) increment one counter 10 times each: the total is exactly 500 and every
    increment saw a different value."""
    stores = [_store(infinispan_fake) for _ in range(5)]
    caches = [CacheManager(store=s).for_plugin("race", tenant="t") for s in stores]
    seen: list[int] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        for _ in range(10):
            value = caches[i % 5].incr("hits", ttl=60)
            with lock:
                seen.append(value)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert caches[0].get("hits") == 500
    assert sorted(seen) == list(range(1, 501))
    for s in stores:
        s.close()


def test_aincr_is_exact_under_50_concurrent_tasks_in_two_stores(
    infinispan_fake: FakeInfinispan,
) -> None:
    """50 asyncio tasks on two stores increment one counter by 3, 10 times each: the total
    is exactly 1500."""
    stores = [_store(infinispan_fake) for _ in range(2)]
    caches = [CacheManager(store=s).for_plugin("arace", tenant="t") for s in stores]

    async def work(i: int) -> None:
        for _ in range(10):
            await caches[i % 2].aincr("hits", 3)

    async def main() -> Any:
        await asyncio.gather(*(work(i) for i in range(50)))
        total = await caches[0].aget("hits")
        for s in stores:
            await s.aclose()
        return total

    assert asyncio.run(main()) == 1500


def test_the_fake_does_not_enforce_if_match_on_put(infinispan_fake: FakeInfinispan) -> None:
    """The fake keeps the server's quirk that rules out an ETag loop for incr: a PUT with a
    stale If-Match overwrites; POST answers 409 over an existing entry; reads and deletes do
    check their preconditions."""
    url = f"{infinispan_fake.url}/rest/v2/caches/cache/quirk"
    with httpx.Client() as client:
        assert client.put(url, content=b"1").status_code == 204
        etag = client.get(url).headers["ETag"]
        assert client.put(url, content=b"2", headers={"If-Match": "stale"}).status_code == 204
        assert client.get(url).content == b"2"  # the stale If-Match did not stop it
        assert client.post(url, content=b"3").status_code == 409
        assert client.get(url, headers={"If-Match": etag}).status_code == 412
        assert client.delete(url, headers={"If-None-Match": etag}).status_code == 412
        assert client.delete(url).status_code == 204
        assert client.get(url).status_code == 404


def test_a_dead_holders_lock_is_taken_over_after_the_lease(
    infinispan_fake: FakeInfinispan,
) -> None:
    """A lock counter left holding a dead process's token delays an incr until the lease has
    passed on the waiter's own clock, then the incr takes the lock over and counts."""
    clock = FakeClock()
    spec = parse_cache_section(_section(infinispan_fake)).connection_spec
    store = InfinispanStore(spec, lock_clock=clock)
    cache_manager = CacheManager(store=store)
    cache = cache_manager.for_plugin("takeover", tenant="t")
    cache.set("n", 1)
    full_key = cache_manager.keyspace.scope_prefix("takeover", "t", None) + "n"
    stored = store._transport.run(store._stored(full_key))
    stripe = store._locks.stripe(stored)
    counter_url = f"{infinispan_fake.url}/rest/v2/counters/{stripe}"
    httpx.post(counter_url, json={"strong-counter": {"initial-value": 0}})  # may exist already
    swap = f"{counter_url}?action=compareAndSwap"
    assert httpx.post(f"{swap}&expect=0&update=777").json() == 0  # a holder that died
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(cache.incr("n")))
    worker.start()
    worker.join(0.3)
    assert worker.is_alive()  # waiting: the lease has not passed
    assert not result
    clock.advance(store._locks.lease)
    worker.join(10)
    assert result == [2]
    counter = httpx.get(counter_url)
    assert counter.text == "0"  # released after the takeover
    store.close()


# --- TTLs ----------------------------------------------------------------------------------


def test_ttls_go_as_whole_seconds_rounded_up(
    store: InfinispanStore, infinispan_fake: FakeInfinispan
) -> None:
    """A TTL is sent as whole seconds rounded up (1.2 s -> 2), no TTL as -1 (never), and a
    maximum idle time of -1 so the cache's default cannot shorten an entry."""
    store.set("raw-short", b"v", 1.2)
    store.set("raw-forever", b"v", None)
    base = f"{infinispan_fake.url}/rest/v2/caches/cache/%25u%3Araw-"
    short, forever = httpx.get(base + "short"), httpx.get(base + "forever")
    assert (short.headers["timeToLiveSeconds"], short.headers["maxIdleTimeSeconds"]) == ("2", "-1")
    assert forever.headers["timeToLiveSeconds"] == "-1"
    assert "Expires" not in forever.headers


def test_incr_keeps_the_expiry_of_an_existing_counter(
    store: InfinispanStore, infinispan_fake: FakeInfinispan
) -> None:
    """incr of a counter with a TTL keeps its expiry (to the second), whatever TTL it is
    given; a counter without one stays without one."""
    store.set("raw-ttl", b"5", 100)
    store.set("raw-none", b"5", None)
    assert store.incr("raw-ttl", 1, 5000) == 6
    assert store.incr("raw-none", 1, 5000) == 6
    base = f"{infinispan_fake.url}/rest/v2/caches/cache/%25u%3Araw-"
    assert 99 <= int(httpx.get(base + "ttl").headers["timeToLiveSeconds"]) <= 101
    assert httpx.get(base + "none").headers["timeToLiveSeconds"] == "-1"


# --- authentication ---------------------------------------------------------------------


def _auth(mechanism: str | None, password: str = TEST_PASSWORD) -> dict[str, Any]:
    auth: dict[str, Any] = {"enabled": True, "userName": TEST_USER, "password": password}
    if mechanism is not None:
        auth["saslMechanism"] = mechanism
    return auth


@pytest.mark.parametrize("mechanism", ["PLAIN", "DIGEST-MD5", "SCRAM-SHA-256", None])
def test_credentials_are_accepted_by_each_mechanism(
    infinispan_fake_auth: FakeInfinispan, mechanism: str | None
) -> None:
    """PLAIN (Basic), DIGEST-MD5 and SCRAM (HTTP Digest) and the default (Digest) all
    authenticate against a server that requires it."""
    store = _store(infinispan_fake_auth, authentication=_auth(mechanism))
    store.set("raw-auth", b"ok", None)
    assert store.get("raw-auth") == b"ok"
    store.ping()
    store.close()


@pytest.mark.parametrize(
    "authentication",
    [_auth("DIGEST-MD5", "wrong-password"), _auth("PLAIN", "wrong-password"), None],
    ids=["digest", "basic", "none"],
)
def test_rejected_credentials_are_store_unavailable_naming_authentication(
    infinispan_fake_auth: FakeInfinispan, authentication: dict[str, Any] | None
) -> None:
    """A wrong password (or none) raises StoreUnavailable saying authentication failed, with
    no password in the message, and fails the same way in async code."""
    extra = {} if authentication is None else {"authentication": authentication}
    store = _store(infinispan_fake_auth, **extra)
    with pytest.raises(StoreUnavailable, match="authentication failed") as info:
        store.get("raw-k")
    assert "wrong-password" not in str(info.value)
    with pytest.raises(StoreUnavailable, match="authentication"):
        _arun(store, store.aget("raw-k"))
    store.close()


def test_minimal_configuration_means_backstages_defaults() -> None:
    """store: infinispan alone connects to 127.0.0.1:11222, cache 'cache', without
    authentication (Backstage's documented defaults)."""
    spec = parse_cache_section({"store": "infinispan"}).connection_spec
    assert isinstance(spec, InfinispanConnectionSpec)
    assert [(e.host, e.port, e.scheme) for e in spec.endpoints] == [("127.0.0.1", 11222, "http")]
    assert (spec.cache_name, spec.auth) == ("cache", "none")


def test_connection_url_gives_servers_cache_and_credentials() -> None:
    """connection: http(s)://user:password@host:port/cache names the primary servers, the
    cache and the credentials (Digest unless saslMechanism says otherwise)."""
    config = parse_cache_section(
        {
            "store": "infinispan",
            "connection": "https://app:p%40ss@ispn-a:11223/sessions, https://ispn-b",
        }
    )
    spec = config.connection_spec
    assert [(e.scheme, e.address) for e in spec.endpoints] == [
        ("https", "ispn-a:11223"),
        ("https", "ispn-b:11222"),
    ]
    assert (spec.cache_name, spec.auth, spec.username, spec.password) == (
        "sessions",
        "digest",
        "app",
        "p@ss",
    )
    assert "p@ss" not in repr(config)
    assert "p@ss" not in config.target


@pytest.mark.parametrize(
    ("authentication", "ssl", "path", "message"),
    [
        ({"enabled": True, "userName": "u"}, None, "authentication", "userName and password"),
        ({"enabled": True, "saslMechanism": "OAUTHBEARER"}, None, "authentication.token", "token"),
        (
            {"enabled": True, "saslMechanism": "EXTERNAL"},
            None,
            "authentication.saslMechanism",
            "clientAuth",
        ),
    ],
)
def test_authentication_that_cannot_work_is_refused_at_start_up(
    authentication: dict[str, Any], ssl: Any, path: str, message: str
) -> None:
    """Authentication enabled without what its mechanism needs is a ConfigError naming the
    path, before anything connects."""
    with pytest.raises(ConfigError, match=message) as info:
        parse_cache_section(
            {"store": "infinispan", "infinispan": {"authentication": authentication}}
        )
    assert info.value.path == f"backend.cache.infinispan.{path}"


def test_bearer_token_is_sent(infinispan_fake: FakeInfinispan) -> None:
    """OAUTHBEARER sends the token as a bearer Authorization header (the fake without
    authentication just serves it), and the token stays out of the repr."""
    store = _store(
        infinispan_fake,
        authentication={"enabled": True, "saslMechanism": "OAUTHBEARER", "token": "tok-123"},
    )
    store.set("raw-bearer", b"v", None)
    assert store.get("raw-bearer") == b"v"
    assert "tok-123" not in repr(store)
    assert "tok-123" not in repr(store.connection)
    store.close()


# --- failover, outages, refusals -----------------------------------------------------------


def test_failover_to_a_backup_cluster_when_the_primary_port_is_closed(
    infinispan_fake: FakeInfinispan, caplog: pytest.LogCaptureFixture
) -> None:
    """With the primary's port closed, requests go to the first backup cluster, which
    becomes the active server (logged once); the data is served there."""
    closed = free_port()
    section = {
        "store": "infinispan",
        "infinispan": {
            "servers": [{"host": LOOPBACK, "port": closed}],
            "clusters": [
                {"name": "site-b", "servers": [{"host": LOOPBACK, "port": infinispan_fake.port}]}
            ],
        },
        **HEADROOM,
    }
    store = InfinispanStore.from_config(parse_cache_section(section))
    with caplog.at_level(logging.WARNING, logger="cachekit"):
        store.set("raw-fo", b"v", None)
        assert store.get("raw-fo") == b"v"
        assert _arun(store, store.aget("raw-fo")) == b"v"
    assert store.active_server == f"{LOOPBACK}:{infinispan_fake.port}"
    switches = [r for r in caplog.records if "answers now" in r.getMessage()]
    assert len(switches) == 1
    assert "site-b" in switches[0].getMessage()
    assert store.breaker.state == "closed"
    store.close()


def test_a_killed_primary_fails_over_to_the_backup(tmp_path: Any) -> None:
    """A primary that dies (its port now refusing) is skipped for the backup cluster on the
    next call; a successful call on the backup keeps the breaker closed."""
    primary = FakeInfinispan(workdir=tmp_path / "a").start()
    backup = FakeInfinispan(workdir=tmp_path / "b").start()
    try:
        section = {
            "store": "infinispan",
            "infinispan": {
                "servers": [{"host": LOOPBACK, "port": primary.port}],
                "clusters": [{"servers": [{"host": LOOPBACK, "port": backup.port}]}],
            },
            **HEADROOM,
        }
        store = InfinispanStore.from_config(parse_cache_section(section))
        store.set("raw-k", b"on primary", None)
        assert store.active_server.endswith(f":{primary.port}")
        primary.kill()
        assert store.get("raw-k") is None  # the backup is another cluster: no such entry
        store.set("raw-k", b"on backup", None)
        assert store.get("raw-k") == b"on backup"
        assert store.active_server.endswith(f":{backup.port}")
        assert store.breaker.state == "closed"
        store.close()
    finally:
        primary.kill()
        backup.kill()


def test_no_server_reachable_is_store_unavailable_naming_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With every server's port closed a call raises StoreUnavailable naming each server;
    after the breaker's threshold calls fail fast."""
    ports = [free_port(), free_port()]
    section = {
        "store": "infinispan",
        "infinispan": {
            "servers": [{"host": LOOPBACK, "port": ports[0]}],
            "clusters": [{"servers": [{"host": LOOPBACK, "port": ports[1]}]}],
        },
    }
    store = InfinispanStore.from_config(parse_cache_section(section))
    with caplog.at_level(logging.WARNING, logger="cachekit"):
        for _ in range(3):
            with pytest.raises(StoreUnavailable) as info:
                store.get("raw-k")
            assert all(str(p) in str(info.value) for p in ports)
        with pytest.raises(StoreUnavailable, match="skipping it"):
            store.get("raw-k")
    assert store.breaker.state == "open"
    store.close()


def test_a_cache_the_server_lacks_is_named(infinispan_fake: FakeInfinispan) -> None:
    """A cacheName the server does not have: ping and writes raise StoreUnavailable naming
    the cache and the config key."""
    store = _store(infinispan_fake, cacheName="nope")
    with pytest.raises(StoreUnavailable, match=r"no cache 'nope'.*cacheName"):
        store.ping()
    with pytest.raises(StoreUnavailable, match="no cache 'nope'"):
        store.set("raw-k", b"v", None)
    store.close()


def test_a_value_over_the_servers_content_limit_is_a_value_error(tmp_path: Any) -> None:
    """A value the server refuses as too large (413) raises CacheValueError, not a store
    outage, and leaves the breaker closed."""
    fake = FakeInfinispan(max_content_length=1000, workdir=tmp_path / "fake").start()
    try:
        store = _store(fake)
        with pytest.raises(CacheValueError, match="too large"):
            store.set("raw-big", b"x" * 2000, None)
        assert store.get("raw-big") is None
        assert store.breaker.state == "closed"
        store.close()
    finally:
        fake.kill()


# --- generations across processes ---------------------------------------------------------


def test_a_clear_shows_in_another_process_within_generation_refresh(
    infinispan_fake: FakeInfinispan,
) -> None:
    """A clear made by one store (process) is visible at once there and, in another store
    that cached the scope's generations, once generationRefresh has passed; neighbouring
    scopes keep their entries."""
    clock = FakeClock()
    spec = parse_cache_section(_section(infinispan_fake)).connection_spec
    mine, theirs = InfinispanStore(spec, clock=clock), InfinispanStore(spec, clock=clock)
    a, b = CacheManager(store=mine), CacheManager(store=theirs)
    a.for_plugin("gen", tenant="t1").set("k", "v")
    a.for_plugin("gen", tenant="t2").set("k", "other")
    assert b.for_plugin("gen", tenant="t1").get("k") == "v"  # caches the generations
    a.clear(plugin="gen", tenant="t1")
    assert a.for_plugin("gen", tenant="t1").get("k") is None
    assert b.for_plugin("gen", tenant="t1").get("k") == "v"  # within generationRefresh
    clock.advance(spec.generation_refresh)
    assert b.for_plugin("gen", tenant="t1").get("k") is None
    assert b.for_plugin("gen", tenant="t2").get("k") == "other"
    mine.close()
    theirs.close()


# --- secrets out of sight ------------------------------------------------------------------


def test_passwords_never_show_in_reprs_messages_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The password is in no repr (config, spec, store), no target line, no error and no log
    line, while the user name is shown where it helps."""
    secret = "Pa55-w0rd-xyz"
    app_config = {
        "backend": {
            "cache": {
                "store": "infinispan",
                "infinispan": {
                    "servers": [{"host": LOOPBACK, "port": free_port()}],
                    "version": "2.5",
                    "authentication": {
                        "enabled": True,
                        "userName": "app",
                        "password": secret,
                        "authzid": "x",
                    },
                },
            }
        }
    }
    with caplog.at_level(logging.DEBUG, logger="cachekit"):
        config = parse_app_config(app_config)
        store = InfinispanStore.from_config(config)
        with pytest.raises(StoreUnavailable) as info:
            store.get("raw-k")
    shown = [
        repr(config),
        config.target,
        repr(config.connection_spec),
        repr(store),
        str(info.value),
    ]
    shown += [r.getMessage() for r in caplog.records]
    assert not [text for text in shown if secret in text]
    assert "app" in config.target
    assert any("infinispan.version" in r.getMessage() for r in caplog.records)
    store.close()
