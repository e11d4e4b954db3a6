"""Memcache-specific behaviour: TTL rules, key hashing, size limits, biased counters,
generations for clear, several servers with one down, authentication and config."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymemcache.client.base import Client as RawClient
from pymemcache.exceptions import MemcacheUnexpectedCloseError
from servers import MemcachedServer, free_port

from cachekit.config import parse_cache_section
from cachekit.errors import CacheValueError, ConfigError, StoreTimeout, StoreUnavailable
from cachekit.keys import KeySpace
from cachekit.manager import CacheManager
from cachekit.stores import create_store
from cachekit.stores.memcache import MemcacheServer, MemcacheStore, parse_servers
from cachekit.stores.memcache.binary import BinaryConnection
from cachekit.stores.memcache.generations import generation_key
from cachekit.stores.memcache.text import TextClient
from cachekit.stores.memcache.values import (
    BIAS,
    COUNTER_MAX,
    COUNTER_MIN,
    decode_value,
    encode_value,
    expiry,
)
from cachekit.testing import FakeClock

DAY = 24 * 3600


def address(server: MemcachedServer) -> str:
    return f"{server.host}:{server.port}"


# Timeouts with headroom: on a loaded machine a 0.5 s default could turn into a failed call
# in a test that counts (100 threads incrementing, racing rate limits).
HEADROOM = {"connect": "2s", "operation": "2s"}


def build(connection: str | list[str], **memcache: Any) -> MemcacheStore:
    """A store built through the config path, as a host would build it."""
    section: dict[str, Any] = {"store": "memcache", "connection": connection, "timeouts": HEADROOM}
    if memcache:
        section["memcache"] = memcache
    return MemcacheStore.from_config(parse_cache_section(section))


def raw_client(server: MemcachedServer) -> RawClient:
    return RawClient((server.host, server.port), connect_timeout=2, timeout=2)


def flushes(server: MemcachedServer) -> int:
    """The server's ``cmd_flush`` counter."""
    if server.auth == "sasl":
        connection = BinaryConnection(
            server.host,
            server.port,
            username=server.username,
            password=server.password,
            connect_timeout=2,
            timeout=2,
        )
        try:
            return int(connection.stats()["cmd_flush"])
        finally:
            connection.close()
    client = raw_client(server)
    try:
        return int(client.stats()[b"cmd_flush"])
    finally:
        client.close()


def valid_memcached_key(key: str) -> bool:
    """At most 250 bytes of printable ASCII without spaces."""
    return len(key) <= 250 and key.isascii() and key.isprintable() and " " not in key


@pytest.fixture
def plugin() -> str:
    """A plugin id of its own for each test (the servers are shared)."""
    return f"p{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(memcached_server: MemcachedServer) -> Iterator[MemcacheStore]:
    store = build(address(memcached_server))
    yield store
    store.close()


@pytest.fixture
def manager(store: MemcacheStore) -> CacheManager:
    return CacheManager(store=store)


@pytest.fixture(params=["single", "three", "sasl"])
def any_store(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[MemcacheStore, list[MemcachedServer]]]:
    """A store on one server, three servers or a SASL server, with the servers behind it."""
    if request.param == "single":
        servers = [request.getfixturevalue("memcached_server")]
        connection: str | list[str] = address(servers[0])
    elif request.param == "three":
        servers = request.getfixturevalue("memcached_servers")
        connection = [address(s) for s in servers]
    else:
        server = request.getfixturevalue("memcached_sasl_server")
        servers = [server]
        connection = f"{server.username}:{server.password}@{address(server)}"
    store = build(connection)
    yield store, servers
    store.close()


# --- TTLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ttl", "exptime"), [(None, 0), (0.001, 1), (0.2, 1), (1.0, 1), (1.01, 2), (30 * DAY, 30 * DAY)]
)
def test_relative_ttls_round_up_to_whole_seconds(ttl: float | None, exptime: int) -> None:
    """A fractional TTL rounds up (never to 0, which means forever); None means no expiry."""
    assert expiry(ttl) == exptime


def test_ttl_over_thirty_days_is_sent_as_unix_time() -> None:
    """Past 30 days memcached reads exptime as a date, so the store sends now + ttl."""
    assert expiry(40 * DAY, now=lambda: 1_700_000_000.5) == 1_700_000_000 + 40 * DAY + 1
    assert expiry(30 * DAY + 0.5, now=lambda: 1_700_000_000.0) == 1_700_000_000 + 30 * DAY + 1


@pytest.mark.servers
def test_short_ttl_expires_within_about_a_second(manager: CacheManager, plugin: str) -> None:
    """A 0.3 s TTL becomes 1 s on the server, so the entry is gone 1.2 s later."""
    cache = manager.for_plugin(plugin, tenant="t")
    cache.set("short", "v", ttl=0.3)
    cache.set("kept", "v", ttl=60)
    time.sleep(1.2)
    assert cache.get("short") is None
    assert cache.get("kept") == "v"


@pytest.mark.servers
def test_forty_day_ttl_is_stored_and_readable(manager: CacheManager, plugin: str) -> None:
    """set, add, incr, touch and expire with a 40-day TTL keep the entry readable."""
    cache = manager.for_plugin(plugin, tenant="t")
    cache.set("set", "v", ttl=40 * DAY)
    assert cache.add("add", "v", ttl=40 * DAY) is True
    assert cache.incr("incr", ttl=40 * DAY) == 1
    cache.set("touched", "v", ttl=60)
    assert cache.touch("touched", 40 * DAY) is True
    cache.set("expired", "v", ttl=60)
    assert cache.expire("expired", 40 * DAY) is True
    assert cache.get_many(["set", "add", "incr", "touched", "expired"]) == {
        "set": "v",
        "add": "v",
        "incr": 1,
        "touched": "v",
        "expired": "v",
    }


# --- values and counters ----------------------------------------------------------------


@given(st.binary(max_size=40) | st.integers(-(2**64), 2**64).map(lambda n: b"%d" % n))
def test_every_byte_string_round_trips_through_the_stored_form(value: bytes) -> None:
    """Encoding for memcached (biasing, escaping) is undone exactly by decoding."""
    assert decode_value(encode_value(value)) == value


@given(st.integers(COUNTER_MIN, COUNTER_MAX))
def test_counter_range_integers_are_stored_biased_below_2_63(number: int) -> None:
    """A counter-range integer is stored as the unsigned decimal memcached's incr works on,
    below 2**63 (where memcached's safe_strtoull would scan past the item for a '-')."""
    stored = encode_value(b"%d" % number)
    assert stored.isdigit()
    assert int(stored) == number + BIAS
    assert int(stored) < 2**63


@given(st.integers(COUNTER_MAX + 1, 2**64 - 1) | st.integers(-(2**63), COUNTER_MIN - 1))
def test_integers_past_the_counter_range_are_stored_escaped(number: int) -> None:
    """An integer no memcached counter holds is stored as text (and reads back whole)."""
    stored = encode_value(b"%d" % number)
    assert stored.startswith(b"~")
    assert decode_value(stored) == b"%d" % number


@pytest.mark.servers
def test_biased_counters_go_below_zero_and_back(
    manager: CacheManager, memcached_server: MemcachedServer, plugin: str
) -> None:
    """decr passes zero (memcached alone would stop there) and the server holds n + 2**62."""
    cache = manager.for_plugin(plugin, tenant="t")
    assert cache.decr("n", 5) == -5
    assert cache.decr("n", 10**12) == -5 - 10**12
    assert cache.incr("n", 10**12 + 12) == 7
    cache.set("m", -3)
    assert cache.decr("m") == -4
    assert cache.get("m") == -4
    _, key = manager.store.locate(manager.full_key(cache, "n"))  # type: ignore[attr-defined]
    raw = raw_client(memcached_server)
    try:
        assert int(raw.get(key)) == BIAS + 7
    finally:
        raw.close()


@pytest.mark.servers
def test_counters_refuse_to_leave_their_range(manager: CacheManager, plugin: str) -> None:
    """Below -2**62 (the stored value would wrap below 0) and above 2**62-1 (it would reach
    2**63) a counter raises CacheValueError and keeps its value, as on every store."""
    cache = manager.for_plugin(plugin, tenant="t")
    cache.set("n", COUNTER_MIN + 1)
    with pytest.raises(CacheValueError, match="memcached counters hold"):
        cache.decr("n", 5)
    assert cache.decr("n", 1) == COUNTER_MIN
    cache.set("m", COUNTER_MAX - 1)
    with pytest.raises(CacheValueError, match="memcached counters hold"):
        cache.incr("m", 2**61)
    assert cache.incr("m") == COUNTER_MAX


@pytest.mark.servers
def test_incr_of_an_integer_outside_64_bits_raises_and_keeps_it(
    manager: CacheManager, plugin: str
) -> None:
    """2**64-1 round-trips as a value, but no counter holds it: CacheValueError."""
    cache = manager.for_plugin(plugin, tenant="t")
    cache.set("big", 2**64 - 1)
    with pytest.raises(CacheValueError, match="not a counter"):
        cache.incr("big")
    assert cache.get("big") == 2**64 - 1
    with pytest.raises(CacheValueError, match="memcached counters hold"):
        cache.incr("n", 2**62)
    assert cache.get("n") is None


@pytest.mark.servers
def test_hundred_threads_incrementing_one_key_end_at_the_sum(
    any_store: tuple[MemcacheStore, list[MemcachedServer]], plugin: str
) -> None:
    """100 threads x 20 increments (created with a TTL by whoever comes first) lose none."""
    store, _ = any_store
    cache = CacheManager(store=store).for_plugin(plugin, tenant="t")
    start = threading.Barrier(100)

    def work() -> None:
        start.wait()
        for _ in range(20):
            cache.incr("hits", ttl=60)

    threads = [threading.Thread(target=work) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.get("hits") == 2000


class LosesTheRace:
    """Wraps a server's client so the first incr finds nothing and, before the store's add,
    another writer creates the key (the race incr -> add must survive)."""

    def __init__(self, client: Any, rival: Callable[[], None]) -> None:
        self._client = client
        self._rival = rival
        self.incr_calls = 0

    def incr(self, key: str, delta: int) -> int | None:
        self.incr_calls += 1
        if self.incr_calls == 1:
            self._rival()
            return None
        result: int | None = self._client.incr(key, delta)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.mark.servers
def test_incr_that_loses_the_create_race_increments_the_winner(
    memcached_server: MemcachedServer, plugin: str
) -> None:
    """When add finds the key another process just created, incr goes back to incr."""
    store = build(address(memcached_server))
    rival = build(address(memcached_server))
    try:
        cache = CacheManager(store=store).for_plugin(plugin, tenant="t")
        rival_cache = CacheManager(store=rival).for_plugin(plugin, tenant="t")
        node = store._nodes[0]
        node.client = LosesTheRace(node.client, lambda: rival_cache.incr("n", 10))  # type: ignore[assignment]
        assert cache.incr("n", 1) == 11
        assert rival_cache.get("n") == 11
    finally:
        store.close()
        rival.close()


@pytest.mark.servers
@pytest.mark.parametrize("setup", ["text", "sasl"])
def test_gcra_is_atomic_across_processes(
    request: pytest.FixtureRequest, setup: str, plugin: str
) -> None:
    """Two stores (two processes' worth of state) racing on one limit admit exactly it,
    over both protocols' gets/cas."""
    if setup == "text":
        server: MemcachedServer = request.getfixturevalue("memcached_server")
        connection = address(server)
    else:
        server = request.getfixturevalue("memcached_sasl_server")
        connection = f"{server.username}:{server.password}@{address(server)}"
    stores = [build(connection) for _ in range(2)]
    key = KeySpace().scope_prefix(plugin, "t", None) + "limit"
    limit, period, now = 25, 1_000_000, 10**15
    allowed: list[bool] = []

    def work(store: MemcacheStore) -> None:
        for _ in range(40):
            ok, _ = store.gcra(key, now, period // limit, period, 1)
            allowed.append(ok)

    threads = [threading.Thread(target=work, args=(stores[i % 2],)) for i in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for store in stores:
            store.close()
    assert allowed.count(True) == limit
    assert len(allowed) == 160


# --- keys and sizes ---------------------------------------------------------------------


@pytest.mark.servers
@pytest.mark.parametrize("key", ["k" * 300, "with space", "ctl\x01\x7f", "ünï", "a\nb"], ids=repr)
def test_awkward_keys_are_hashed_keeping_the_scope_readable(
    manager: CacheManager, memcached_server: MemcachedServer, plugin: str, key: str
) -> None:
    """The memcached key keeps `plugin:tenant:namespace:` in front of a hash and is valid."""
    cache = manager.for_plugin(plugin, tenant="acme").namespace("users")
    cache.set(key, "v")
    _, stored = manager.store.locate(manager.full_key(cache, key))  # type: ignore[attr-defined]
    assert stored.startswith(f"{plugin}:acme:users:")
    assert "%#" in stored
    assert valid_memcached_key(stored)
    raw = raw_client(memcached_server)
    try:
        assert raw.get(stored) is not None
    finally:
        raw.close()


@pytest.mark.servers
def test_plain_keys_stay_readable(manager: CacheManager, plugin: str) -> None:
    """A short printable key is stored as scope, generation tag and the key itself."""
    cache = manager.for_plugin(plugin, tenant="acme")
    _, stored = manager.store.locate(manager.full_key(cache, "user:42"))  # type: ignore[attr-defined]
    scope, _, rest = stored.partition("::")
    assert scope == f"{plugin}:acme"
    assert rest.endswith(":user:42")
    assert len(rest) == 12 + len(":user:42")  # the 12-character generation tag in between


@pytest.mark.servers
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.text(min_size=1, max_size=300))
def test_every_key_maps_to_a_valid_memcached_key(store: MemcacheStore, key: str) -> None:
    """Whatever the user key, the memcached key is at most 250 printable ASCII bytes."""
    _, stored = store.locate(KeySpace().scope_prefix("hypo", "t", None) + key)
    assert valid_memcached_key(stored)


@pytest.mark.servers
def test_value_over_the_size_limit_raises_and_writes_nothing(
    manager: CacheManager, plugin: str
) -> None:
    """A 2 MB value is refused before sending (memcached would also drop the old value)."""
    cache = manager.for_plugin(plugin, tenant="t")
    cache.set("k", "old")
    with pytest.raises(CacheValueError, match=r"2000\d\d\d bytes.*1048576"):
        cache.set("k", b"x" * 2_000_000)
    assert cache.get("k") == "old"
    with pytest.raises(CacheValueError):
        cache.add("new", b"x" * 2_000_000)
    assert cache.get("new") is None


@pytest.mark.servers
def test_configured_size_limit_applies_to_set_many(
    memcached_server: MemcachedServer, plugin: str
) -> None:
    """With maxValueSize 2000 one 3000-byte value in set_many writes nothing at all."""
    store = build(address(memcached_server), maxValueSize=2000)
    try:
        cache = CacheManager(store=store).for_plugin(plugin, tenant="t")
        with pytest.raises(CacheValueError, match="2000 bytes"):
            cache.set_many({"small": "x", "big": b"y" * 3000})
        assert cache.get_many(["small", "big"]) == {}
    finally:
        store.close()


# --- clear and generations --------------------------------------------------------------


@pytest.mark.servers
def test_clear_leaves_other_scopes_and_never_flushes(
    any_store: tuple[MemcacheStore, list[MemcachedServer]], plugin: str
) -> None:
    """Clearing (A, t1) keeps (A, t2), (B, t1) and the platform scope, and every server's
    cmd_flush stays where it was (no flush_all is ever sent)."""
    store, servers = any_store
    before = [flushes(s) for s in servers]
    manager = CacheManager(store=store)
    caches = {
        "A/t1": manager.for_plugin(plugin, tenant="t1"),
        "A/t1/ns": manager.for_plugin(plugin, tenant="t1").namespace("ns"),
        "A/t2": manager.for_plugin(plugin, tenant="t2"),
        "B/t1": manager.for_plugin(plugin + "b", tenant="t1"),
        "A/platform": manager.for_plugin(plugin, tenant=None),
    }
    keys = [f"k{i}" for i in range(30)]  # spread over every server of the ring
    for name, cache in caches.items():
        cache.set_many(dict.fromkeys(keys, name))
    assert caches["A/t1"].clear() is None
    left = {name: len(cache.get_many(keys)) for name, cache in caches.items()}
    assert left == {"A/t1": 0, "A/t1/ns": 0, "A/t2": 30, "B/t1": 30, "A/platform": 30}
    manager.clear(tenant="t2")
    manager.clear(plugin=plugin + "b")
    assert caches["A/platform"].get("k1") == "A/platform"
    assert caches["A/t2"].get("k1") is None
    assert caches["B/t1"].get("k1") is None
    assert [flushes(s) for s in servers] == before


@pytest.mark.servers
def test_clear_shows_at_once_here_and_within_the_refresh_elsewhere(
    memcached_server: MemcachedServer, plugin: str
) -> None:
    """The clearing process misses at once; another process misses once its cached
    generations are older than generationRefresh."""
    here = build(address(memcached_server))
    clock = FakeClock()
    there = MemcacheStore(address(memcached_server), generation_refresh=1.0, clock=clock)
    try:
        mine = CacheManager(store=here).for_plugin(plugin, tenant="t")
        theirs = CacheManager(store=there).for_plugin(plugin, tenant="t")
        mine.set("k", "v")
        assert theirs.get("k") == "v"  # caches the generations
        mine.clear()
        assert mine.get("k") is None
        clock.advance(1.01)
        assert theirs.get("k") is None
    finally:
        here.close()
        there.close()


@pytest.mark.servers
def test_an_evicted_generation_never_revives_cleared_entries(
    memcached_server: MemcachedServer, plugin: str
) -> None:
    """If memcached evicts a scope's generation after a clear, the recreated one is new:
    entries from before the clear stay unreachable."""
    store = build(address(memcached_server))
    try:
        cache = CacheManager(store=store).for_plugin(plugin, tenant="t")
        cache.set("k", "before the clear")
        cache.clear()
        raw = raw_client(memcached_server)
        try:
            assert raw.delete(generation_key("pt", plugin, "t"), noreply=False) is True
        finally:
            raw.close()
        fresh = build(address(memcached_server))  # another process: nothing cached
        try:
            assert CacheManager(store=fresh).for_plugin(plugin, tenant="t").get("k") is None
        finally:
            fresh.close()
    finally:
        store.close()


@pytest.mark.servers
def test_unsupported_selector_is_refused(store: MemcacheStore) -> None:
    """A namespace across every scope has no generation: NotImplementedError, no guess."""
    with pytest.raises(NotImplementedError, match="namespace"):
        store.clear(KeySpace().selector(namespace="users"))


@pytest.mark.servers
def test_keys_outside_the_layout_work_and_survive_clears(store: MemcacheStore) -> None:
    """A custom caller's key without a scope is stored as given (prefixed) and no clear
    reaches it."""
    store.set("no-scope", b"v", None)
    store.clear(KeySpace().selector("no-scope"))
    assert store.get("no-scope") == b"v"
    assert store.delete("no-scope") is True


# --- several servers, one of them down --------------------------------------------------


@pytest.fixture
def three_private_servers(tmp_path: Path) -> Iterator[list[MemcachedServer]]:
    """Three servers of this test alone (it kills one)."""
    servers = [MemcachedServer(workdir=tmp_path / f"mc{i}") for i in range(3)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.kill()


def keys_by_server(store: MemcacheStore, cache: Any, count: int = 60) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    manager = CacheManager(store=store)
    for i in range(count):
        server, _ = store.locate(manager.full_key(cache, f"k{i}"))
        found.setdefault(server, []).append(f"k{i}")
    return found


@pytest.mark.servers
def test_a_dead_server_fails_its_keys_fast_and_spares_the_others(
    three_private_servers: list[MemcachedServer], plugin: str
) -> None:
    """Keys on a killed server raise StoreUnavailable (soon without even trying), keys on the
    others keep working, batches serve the live servers, and the server is used again once
    it is back and deadRetry has passed."""
    clock = FakeClock()
    store = MemcacheStore(
        [address(s) for s in three_private_servers],
        dead_retry=5.0,
        failure_threshold=2,
        clock=clock,
    )
    try:
        cache = CacheManager(store=store).for_plugin(plugin, tenant="t")
        owners = keys_by_server(store, cache)
        assert len(owners) == 3
        for keys in owners.values():
            cache.set_many(dict.fromkeys(keys, "v"))
        dead = three_private_servers[0]
        dead.kill()
        dead_keys, live_keys = (
            owners[address(dead)],
            [k for s, ks in owners.items() if s != address(dead) for k in ks],
        )

        def dead_calls() -> None:
            for key in dead_keys:
                with pytest.raises(StoreUnavailable):
                    cache.get(key)
                with pytest.raises(StoreUnavailable):
                    cache.incr(key)

        worker = threading.Thread(target=dead_calls)
        worker.start()
        worker.join(timeout=30)  # a liveness guard, not a timing assertion
        assert not worker.is_alive()
        with pytest.raises(StoreUnavailable, match="skipping"):  # the breaker is open
            cache.set(dead_keys[0], "w")
        assert all(cache.get(k) == "v" for k in live_keys)
        assert cache.touch(live_keys[0], 60) is True
        with pytest.raises(StoreUnavailable, match="of 3 memcache servers"):
            cache.get_many(live_keys + dead_keys)
        with pytest.raises(StoreUnavailable):
            cache.set_many(dict.fromkeys(live_keys + dead_keys, "new"))
        assert all(cache.get(k) == "new" for k in live_keys)  # the live servers were written
        assert "down=['" + address(dead) in repr(store)
        with pytest.raises(StoreUnavailable):
            store.ping()

        dead.start()  # same port, empty
        clock.advance(5.1)
        assert cache.get(dead_keys[0]) is None
        cache.set(dead_keys[0], "back")
        assert cache.get(dead_keys[0]) == "back"
        store.ping()
    finally:
        store.close()


# --- authentication ---------------------------------------------------------------------


@pytest.mark.servers
def test_sasl_bad_password_is_unavailable_saying_authentication_failed(
    memcached_sasl_server: MemcachedServer,
) -> None:
    """Wrong SASL credentials raise StoreUnavailable naming the cause, not a miss."""
    server = memcached_sasl_server
    store = build(f"{server.username}:wrong@{address(server)}")
    try:
        with pytest.raises(StoreUnavailable, match="authentication failed"):
            store.get("p:t::k")
        with pytest.raises(StoreUnavailable, match="authentication failed"):
            store.set("p:t::k", b"v", None)
    finally:
        store.close()


@pytest.mark.servers
def test_sasl_server_without_credentials_is_unavailable(
    memcached_sasl_server: MemcachedServer,
) -> None:
    """A SASL server reached without credentials hangs up: StoreUnavailable hinting at
    authentication."""
    store = MemcacheStore(address(memcached_sasl_server))
    try:
        with pytest.raises(StoreUnavailable, match="requires authentication"):
            store.get("p:t::k")
    finally:
        store.close()


@pytest.mark.servers
def test_ascii_auth_bad_password_is_unavailable_saying_authentication_failed(
    memcached_ascii_server: MemcachedServer,
) -> None:
    """Wrong memcached -Y credentials raise StoreUnavailable naming the cause."""
    server = memcached_ascii_server
    store = build(f"{server.username}:wrong@{address(server)}", auth="ascii")
    try:
        with pytest.raises(StoreUnavailable, match="authentication failed"):
            store.get("p:t::k")
    finally:
        store.close()


# --- big values, reply markers in values, server errors -------------------------------


@pytest.mark.servers
def test_values_spanning_many_reads_round_trip(manager: CacheManager, plugin: str) -> None:
    """A ~1 MB value, and values holding the reply's own markers, read back byte for byte
    through get and get_many (replies longer than one socket read)."""
    cache = manager.for_plugin(plugin, tenant="t")
    values = {
        "big": bytes(range(256)) * 4000,
        "markers": b"\r\nEND\r\nVALUE x 0 3\r\nEND",
        "empty": b"",
    }
    for key, value in values.items():
        cache.set(key, value)
        assert cache.get(key) == value
    assert cache.get_many([*values, "missing"]) == values


@pytest.mark.servers
def test_get_many_of_a_thousand_keys_reads_every_value(manager: CacheManager, plugin: str) -> None:
    """A 2 MB reply to one get of 1000 keys is parsed value by value, none lost or shifted."""
    cache = manager.for_plugin(plugin, tenant="t")
    items = {f"k{i}": f"{i}:".encode() + b"x" * 2000 for i in range(1000)}
    cache.set_many(items)
    assert cache.get_many([*items, "nope"]) == items


@pytest.mark.servers
def test_server_error_replies_map_to_typed_errors_and_keep_the_connection_usable(
    memcached_server: MemcachedServer, plugin: str
) -> None:
    """memcached's SERVER_ERROR (item too large: the store's limit set above the server's)
    and CLIENT_ERROR (incr of text) raise CacheValueError, and the next calls succeed."""
    store = build(address(memcached_server), maxValueSize=4 * 1024 * 1024)
    try:
        uncapped = {"backend": {"cache": {"pluginDefaults": {"maxValueBytes": 4 * 1024 * 1024}}}}
        cache = CacheManager.from_config(uncapped, store=store).for_plugin(plugin, tenant="t")
        with pytest.raises(CacheValueError, match="too large"):
            cache.set("huge", b"x" * 2_000_000)
        cache.set("text", "abc")
        with pytest.raises(CacheValueError, match="not a counter"):
            cache.incr("text")
        assert cache.get("text") == "abc"
        assert cache.incr("n", -3) == -3
    finally:
        store.close()


@pytest.mark.parametrize(
    "reply",
    [
        b"VALUE %u:other 0 3\r\nabc\r\nEND\r\n",  # another key's value
        b"STORED\r\n",  # another command's reply
        b"VALUE %u:k 0 3\r\nabc\r\nVALUE %u:j 0 1\r\nx\r\nEND\r\n",  # more than asked
    ],
    ids=["another key", "another command", "more than asked"],
)
def test_a_reply_out_of_step_drops_the_connection(reply: bytes) -> None:
    """A reply that does not answer get raises StoreUnavailable, and the connection is
    closed rather than reused, so the next call starts clean."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    replies = [reply, b"END\r\n"]
    accepted: list[socket.socket] = []

    def serve() -> None:
        for answer in replies:
            conn, _ = listener.accept()
            accepted.append(conn)
            conn.recv(1024)
            conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    store = MemcacheStore(f"127.0.0.1:{port}")
    try:
        with pytest.raises(StoreUnavailable):
            store.get("%u:k")
        assert store.get("%u:k") is None  # answered on a second connection
        assert len(accepted) == 2
    finally:
        thread.join(timeout=5)
        store.close()
        listener.close()
        for conn in accepted:
            conn.close()


@pytest.mark.servers
def test_store_reconnects_after_close(
    any_store: tuple[MemcacheStore, list[MemcachedServer]], plugin: str
) -> None:
    """close() releases every connection; the next call opens (and authenticates) anew."""
    store, _ = any_store
    cache = CacheManager(store=store).for_plugin(plugin, tenant="t")
    cache.set("k", "v")
    store.close()
    assert cache.get("k") == "v"


@pytest.mark.servers
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_opens_its_own_connections(manager: CacheManager, plugin: str) -> None:
    """After fork the child uses fresh connections and the parent's keep working."""
    cache = manager.for_plugin(plugin, tenant="t")
    cache.set("k", "parent")
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status, never return into pytest
        try:
            ok = cache.get("k") == "parent" and cache.incr("n", 5) == 5
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.get("k") == "parent"
    assert cache.incr("n") == 6


# --- bounded pools and stale connections ----------------------------------------------


def total_connections(server: MemcachedServer) -> int:
    raw = raw_client(server)
    try:
        return int(raw.stats()[b"total_connections"])
    finally:
        raw.close()


@pytest.mark.servers
def test_more_callers_than_max_connections_queue_and_all_succeed(
    private_memcached_server: MemcachedServer,
) -> None:
    """memcache.maxConnections: 2 with 10 threads and 100 asyncio tasks: every call succeeds
    (callers queue for a connection instead of failing) and the store opens two
    connections in all."""
    store = MemcacheStore.from_config(
        parse_cache_section(
            {
                "store": "memcache",
                "connection": address(private_memcached_server),
                "timeouts": HEADROOM,
                "memcache": {"maxConnections": 2},
            }
        )
    )
    assert store.connection.max_connections == 2
    cache = CacheManager(store=store).for_plugin("queue", tenant="t")
    before = total_connections(private_memcached_server)
    cache.set("k", 1)
    results: list[Any] = []

    def work() -> None:
        results.extend(cache.get("k") for _ in range(50))

    threads = [threading.Thread(target=work) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def tasks() -> list[Any]:
        return list(await asyncio.gather(*(cache.aget("k") for _ in range(100))))

    results.extend(asyncio.run(tasks()))
    assert results == [1] * 600
    assert total_connections(private_memcached_server) - before <= 2 + 1  # + the stats one
    assert store.connection.servers
    assert not any(n.breaker.state != "closed" for n in store._nodes)
    store.close()


@pytest.mark.servers
def test_a_caller_waiting_for_a_busy_pool_times_out_without_moving_the_breaker(
    memcached_server: MemcachedServer,
) -> None:
    """With every connection busy a caller waits, then gets StoreTimeout naming
    maxConnections, which is not a server failure: the breaker counts nothing, even after
    more such timeouts than its threshold."""
    store = MemcacheStore(
        address(memcached_server),
        max_connections=1,
        failure_threshold=1,
        connect_timeout=0.05,
        timeout=0.05,
    )
    cache = CacheManager(store=store).for_plugin("busy", tenant="t")
    cache.set("k", 1)
    node = store._nodes[0]
    gate = node.client._pool._gate  # type: ignore[attr-defined]
    assert gate.enter(0)  # a caller holding the only connection
    try:
        for _ in range(3):
            with pytest.raises(StoreTimeout, match="maxConnections"):
                cache.get("k")
        assert node.breaker.state == "closed"
        assert node.breaker.healthy
    finally:
        gate.leave()
    assert cache.get("k") == 1
    store.close()


@pytest.mark.servers
@pytest.mark.parametrize("setup", ["text", "sasl"])
def test_every_call_after_a_restart_succeeds_on_fresh_connections(
    setup: str, request: pytest.FixtureRequest
) -> None:
    """After a restart, 16 threads calling get, set, incr and add on pooled (now dead)
    connections all succeed; no breaker opens (text protocol and SASL)."""
    server: MemcachedServer
    if setup == "text":
        server = request.getfixturevalue("private_memcached_server")
        connection = address(server)
    else:  # the shared SASL server: restarted, and left running
        server = request.getfixturevalue("memcached_sasl_server")
        connection = f"{server.username}:{server.password}@{address(server)}"
    store = build(connection)
    cache = CacheManager(store=store).for_plugin("restart", tenant="t")
    start = threading.Barrier(16)
    failures: list[BaseException] = []

    def burst(i: int) -> None:
        start.wait(10)
        try:
            cache.set(f"k{i}", i)
            cache.get(f"k{i}")
            cache.incr("n")
            cache.add(f"a{i}", i)
        except BaseException as exc:
            failures.append(exc)

    try:
        for _ in range(2):  # warm 16 pooled connections, then use them after a restart
            threads = [threading.Thread(target=burst, args=(i,)) for i in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            server.kill()
            server.start()
        assert failures == []
        assert all(n.breaker.state == "closed" for n in store._nodes)
    finally:
        store.close()


@pytest.mark.servers
def test_a_closed_connection_is_blamed_on_authentication_only_when_it_may_be(
    memcached_server: MemcachedServer,
) -> None:
    """A server hanging up says so; only a new connection hung up on by a server that still
    accepts connections (memcached -S without credentials) suggests authentication, never a
    pooled one, nor one hung up on by a server that went down."""
    closed = MemcacheUnexpectedCloseError()
    server = MemcacheServer(memcached_server.host, memcached_server.port)
    live = TextClient(server, ascii_auth=False, connect_timeout=1, timeout=1)
    gone = TextClient(
        MemcacheServer("127.0.0.1", free_port()), ascii_auth=False, connect_timeout=1, timeout=1
    )
    pooled, fresh, down = (
        str(live._error(closed, False)),
        str(live._error(closed, True)),
        str(gone._error(closed, True)),
    )
    assert "closed the connection" in pooled
    assert "authenticat" not in pooled
    assert "authentication" in fresh
    assert "authenticat" not in down


# --- config -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("connection", "expected"),
    [
        ("cache:11311", [("cache", 11311, None)]),
        ("cache", [("cache", 11211, None)]),
        ("memcache://u:p@cache:1", [("cache", 1, "u")]),
        ("u:p:with:colons@and@at@10.0.0.1:2", [("10.0.0.1", 2, "u")]),
        ("a:1, b:2 ,c:3", [("a", 1, None), ("b", 2, None), ("c", 3, None)]),
        (["u:p,q@a:1", "u:p@[::1]:2"], [("a", 1, "u"), ("::1", 2, "u")]),
    ],
)
def test_connection_forms(connection: Any, expected: list[tuple[str, int, str | None]]) -> None:
    """host:port, a bare host, URLs, credentials, comma lists and YAML lists all parse."""
    servers = parse_servers(connection)
    assert [(s.host, s.port, s.username) for s in servers] == expected


def test_each_list_item_is_one_server() -> None:
    """In a list a comma belongs to the item (a password may hold one): one server each."""
    store = MemcacheStore(["u:p,q@a:1", MemcacheServer("b", 2, "u", "p")])
    assert store.servers == ("a:1", "b:2")
    with pytest.raises(ConfigError, match="twice"):
        MemcacheStore(["a:1", "a:1"])


def test_password_keeps_colons_and_at_signs() -> None:
    """The password is everything between the first ':' and the last '@'."""
    (server,) = parse_servers("user:p:a@s@host:1")
    assert server.password == "p:a@s"
    assert "p:a@s" not in repr(server)


@pytest.mark.parametrize(
    ("connection", "path"),
    [
        (None, "backend.cache.connection"),
        ("", "backend.cache.connection"),
        ("a:1,,b:2", "backend.cache.connection"),
        ("host:0", "backend.cache.connection"),
        ("host:99999", "backend.cache.connection"),
        ("host:port", "backend.cache.connection"),
        ("::1:11211", "backend.cache.connection"),
        ("u@host:1", "backend.cache.connection"),
        ("bad host:1", "backend.cache.connection"),
        ("a:1,a:1", "backend.cache.connection"),
        (["a:1", 5], "backend.cache.connection[1]"),
        ({"url": "a:1"}, "backend.cache.connection"),
        (["u:p@a:1", "b:2"], "backend.cache.connection"),
    ],
)
def test_bad_connections_are_config_errors(connection: Any, path: str) -> None:
    """Malformed servers fail at start-up with the config path (and never the password)."""
    section: dict[str, Any] = {"store": "memcache"}
    if connection is not None:
        section["connection"] = connection
    with pytest.raises(ConfigError) as info:
        create_store(parse_cache_section(section))
    assert info.value.path == path
    assert "secret" not in str(info.value)


def test_password_is_masked_in_config_errors() -> None:
    """A malformed address with credentials does not echo the password."""
    with pytest.raises(ConfigError) as info:
        parse_servers("user:secret@host:notaport", "backend.cache.connection")
    assert "secret" not in str(info.value)
    assert "notaport" in str(info.value)


@pytest.mark.parametrize(
    ("connection", "auth", "message"),
    [
        ("a:1", "ascii", "needs user:password"),
        ("u:p@a:1", "kerberos", "unknown auth"),
    ],
)
def test_bad_auth_is_a_config_error(connection: str, auth: str, message: str) -> None:
    """memcache.auth must be sasl or ascii, and needs credentials."""
    with pytest.raises(ConfigError, match=message) as info:
        build(connection, auth=auth)
    assert info.value.path == "backend.cache.memcache.auth"


def test_config_connects_to_nothing() -> None:
    """Building a store for a port where nothing listens succeeds; the first call fails."""
    store = build("127.0.0.1:1")
    try:
        assert store.servers == ("127.0.0.1:1",)
        with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1\b"):
            store.get("p:t::k")
    finally:
        store.close()


def test_registry_builds_the_memcache_store_from_config() -> None:
    """store: memcache in backend.cache resolves to a MemcacheStore with the config applied."""
    config = parse_cache_section(
        {
            "store": "memcache",
            "connection": "u:p@a:1,u:q@b:2",
            "memcache": {"generationRefresh": "250ms"},
        }
    )
    store = create_store(config)
    assert isinstance(store, MemcacheStore)
    assert store.servers == ("a:1", "b:2")
    assert store.auth == "sasl"
    assert store.generation_refresh == 0.25


def test_repr_names_servers_but_never_credentials() -> None:
    """The repr shows addresses and auth mode, not user names or passwords."""
    store = MemcacheStore(["admin:hunter2@a:1", MemcacheServer("b", 2, "admin", "hunter2")])
    assert repr(store) == (
        "MemcacheStore(servers=['a:1', 'b:2'], auth='sasl', generation_refresh=1.0, down=[])"
    )
