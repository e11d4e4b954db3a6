"""Built-in types through the scoped API on the memory store and real Redis and memcached
(servers from the suite's fixtures): what goes in comes out, same type; a malformed
extension payload in the store is a miss with one warning."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from typed_values import Color, Level, Mode, assert_same, register_enums, values

from cachekit import MISS
from cachekit.cache import Cache
from cachekit.host import CacheManager

HEADROOM = {"timeouts": {"connect": 5000, "operation": 5000}}
EXAMPLES = {"memory": 200, "redis": 100, "memcache": 100}  # network round trips: keep it quick
SAMPLE = {
    "at": dt.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York")),
    "utc": dt.datetime(2024, 2, 29, 12, 0, 0, 1, tzinfo=dt.UTC),
    "naive": dt.datetime(2024, 2, 29),
    "day": dt.date(2024, 2, 29),
    "time": dt.time(8, 0, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
    "span": dt.timedelta(days=-1, microseconds=1),
    "money": [Decimal("1.10"), Decimal("-0"), Decimal("sNaN"), Decimal("-Infinity")],
    "id": uuid.UUID(int=7),
    "pair": (1, ("a", b"b")),
    "tags": {"a", (1, 2)},
    "frozen": frozenset({dt.date(2024, 1, 1)}),
    "enums": [Color.BLUE, Level.HIGH, Mode.READ],
    (1, 2): {b"k": 1, 7: None},
}


def manager_for(request: pytest.FixtureRequest, store: str) -> CacheManager:
    """A manager on ``store`` with the enums of typed_values registered."""
    if store == "memory":
        return register_enums_of(CacheManager())
    if store == "redis":
        url = request.getfixturevalue("redis_server").url
        section = {"store": "redis", "connection": url, **HEADROOM}
    else:
        server = request.getfixturevalue("memcached_server")
        section = {"store": "memcache", "connection": f"{server.host}:{server.port}", **HEADROOM}
    return register_enums_of(CacheManager.from_config({"backend": {"cache": section}}))


def register_enums_of(manager: CacheManager) -> CacheManager:
    register_enums(manager.codec)
    return manager


@pytest.fixture(scope="module", params=["memory", "redis", "memcache"])
def manager(request: pytest.FixtureRequest) -> Iterator[CacheManager]:
    manager = manager_for(request, request.param)
    yield manager
    manager.close()


@pytest.fixture(scope="module")
def cache(manager: CacheManager) -> Cache:
    return manager.for_plugin("typed-values", tenant=f"t{uuid.uuid4().hex[:8]}")


def test_every_type_reads_back_equal_and_of_the_same_type(
    cache: Cache, request: pytest.FixtureRequest
) -> None:
    """On each store, get returns what set stored, equal and of the same type at every depth
    (dict keys, set members, tzinfo and offset included)."""
    store = request.node.callspec.params["manager"]

    @settings(
        max_examples=EXAMPLES[store],
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(values)
    def check(value: Any) -> None:
        cache.set("k", value)
        assert_same(cache.get("k", MISS), value)

    check()


def test_every_type_reads_back_through_the_async_twins_and_batches(
    cache: Cache, request: pytest.FixtureRequest
) -> None:
    """aset/aget and set_many/get_many keep the types too."""

    async def run() -> Any:
        manager = manager_for(request, request.node.callspec.params["manager"])
        async_cache = manager.for_plugin("typed-values", tenant=cache.tenant)
        await async_cache.aset("a", SAMPLE)
        try:
            return await async_cache.aget("a", MISS)
        finally:
            await manager.aclose()

    assert_same(asyncio.run(run()), SAMPLE)
    cache.set_many({"m1": SAMPLE, "m2": (SAMPLE,)})
    got = cache.get_many(["m1", "m2"])
    assert_same(got["m1"], SAMPLE)
    assert_same(got["m2"], (SAMPLE,))


@pytest.mark.parametrize(
    "payload",
    [
        msgpack.packb({"at": msgpack.ExtType(100, b"yesterday")}),
        msgpack.packb([msgpack.ExtType(104, b"1_0")]),
        msgpack.packb(msgpack.ExtType(109, msgpack.packb(["Unregistered", 1]))),
    ],
    ids=["datetime", "Decimal", "enum"],
)
def test_malformed_payload_in_the_store_is_a_miss_with_one_warning(
    manager: CacheManager, cache: Cache, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Bytes holding a malformed built-in payload (another writer, an older layout) read as
    a miss with one warning per key, never an exception or a half-built value."""
    key = f"bad-{uuid.uuid4().hex}"
    manager.store.set(manager.full_key(cache, key), payload, None)
    with caplog.at_level(logging.WARNING, logger="cachekit"):
        assert cache.get(key, "dflt") == "dflt"
        assert cache.get(key, MISS) is MISS
        assert cache.get_many([key, "absent"]) == {}
    assert len([r for r in caplog.records if "unreadable" in r.getMessage()]) == 1


def test_enum_not_registered_by_the_reader_is_a_miss(manager: CacheManager, cache: Cache) -> None:
    """A process that has not registered an enum reads entries holding its members as
    misses (it never imports a class named by stored bytes)."""
    cache.set("enum", [Color.RED])
    reader = CacheManager(store=manager.store)
    other = reader.for_plugin("typed-values", tenant=cache.tenant)
    assert other.get("enum", MISS) is MISS
