"""The store contract on real memcached: one server, three servers (consistent hashing),
SASL over the binary protocol and ASCII authentication, sync and async."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from servers import MemcachedServer

from cachekit.config import parse_cache_section
from cachekit.stores.memcache import MemcacheStore
from cachekit.testing.contract import StoreContract

pytestmark = pytest.mark.servers


def _connection(request: pytest.FixtureRequest) -> tuple[str | list[str], str | None]:
    """The ``connection`` (and ``memcache.auth``) for the server setup named by the param."""
    if request.param == "single":
        server: MemcachedServer = request.getfixturevalue("memcached_server")
        return f"{server.host}:{server.port}", None
    if request.param == "three":
        servers: list[MemcachedServer] = request.getfixturevalue("memcached_servers")
        return [f"{s.host}:{s.port}" for s in servers], None
    name = "memcached_sasl_server" if request.param == "sasl" else "memcached_ascii_server"
    server = request.getfixturevalue(name)
    address = f"{server.username}:{server.password}@{server.host}:{server.port}"
    return address, ("ascii" if request.param == "ascii" else None)


class TestMemcacheStoreContract(StoreContract):
    @pytest.fixture(params=["single", "three", "sasl", "ascii"])
    def store(self, request: pytest.FixtureRequest) -> Iterator[MemcacheStore]:
        connection, auth = _connection(request)
        config = parse_cache_section(
            {
                "store": "memcache",
                "connection": connection,
                "memcache": {"auth": auth},
                "timeouts": {"connect": "2s", "operation": "2s"},  # headroom on a busy machine
            }
        )
        store = MemcacheStore.from_config(config)
        yield store
        store.close()
