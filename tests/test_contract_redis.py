"""The store contract on the Redis/Valkey store: fakeredis (fast lane), then real Redis, real
Valkey, a real 3-primary Redis Cluster and a Sentinel-managed master, each sync and async.

Real servers are started by the session fixtures in conftest.py (skipped with a reason when a
binary is missing, failed under CACHEKIT_REQUIRE_SERVERS=1). Every store is built from a
``backend.cache`` mapping, the way a host configures it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import fakeredis._socket._base as fakeredis_socket
import pytest

from cachekit.config import parse_cache_section
from cachekit.stores.redis import RedisStore
from cachekit.testing.contract import StoreContract


class _ShiftedTime:
    """A stand-in for the ``time`` module in fakeredis: wall time plus an offset that the
    TTL test advances instead of sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def _fakeredis() -> RedisStore:
    server = fakeredis.FakeServer()
    return RedisStore(
        lambda: fakeredis.FakeRedis(server=server),
        lambda: fakeredis.FakeAsyncRedis(server=server),
        target="fakeredis",
    )


def _redis(request: pytest.FixtureRequest) -> dict[str, Any]:
    server = request.getfixturevalue("redis_server")
    return {"store": "redis", "connection": server.url}


def _valkey(request: pytest.FixtureRequest) -> dict[str, Any]:
    server = request.getfixturevalue("valkey_server")
    return {"store": "valkey", "connection": server.url}


def _cluster(request: pytest.FixtureRequest) -> dict[str, Any]:
    cluster = request.getfixturevalue("redis_cluster")
    nodes = [{"url": url} for url in cluster.root_urls]
    return {"store": "redis", "redis": {"cluster": {"rootNodes": nodes}}}


def _sentinel(request: pytest.FixtureRequest) -> dict[str, Any]:
    setup = request.getfixturevalue("redis_sentinel")
    sentinels = [f"{host}:{port}" for host, port in setup.sentinels]
    return {
        "store": "redis",
        "redis": {"sentinel": {"sentinels": sentinels, "masterName": setup.master_name}},
    }


CONFIGS: dict[str, Callable[[pytest.FixtureRequest], dict[str, Any]]] = {
    "redis": _redis,
    "valkey": _valkey,
    "cluster": _cluster,
    "sentinel": _sentinel,
}


class TestRedisStoreContract(StoreContract):
    @pytest.fixture
    def second(self) -> float:
        """Redis and Valkey keep TTLs in milliseconds: the TTL test's unit is 0.2 s."""
        return 0.2

    @pytest.fixture
    def wait(self, store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
        """Real servers: sleep. fakeredis reads the clock through its socket module's
        ``time`` when a command starts (that is where it expires keys), so shift that."""
        if store.target != "fakeredis":
            return time.sleep
        shifted = _ShiftedTime()
        monkeypatch.setattr(fakeredis_socket, "time", shifted)
        return shifted.advance

    @pytest.fixture(
        params=[
            "fakeredis",
            *(pytest.param(name, marks=pytest.mark.servers) for name in CONFIGS),
        ]
    )
    def store(self, request: pytest.FixtureRequest) -> Iterator[RedisStore]:
        if request.param == "fakeredis":
            store = _fakeredis()
        else:
            store = RedisStore.from_config(parse_cache_section(CONFIGS[request.param](request)))
        yield store
        store.close()
