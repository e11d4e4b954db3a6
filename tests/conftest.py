"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from infinispan_fake import TEST_PASSWORD, TEST_USER, FakeInfinispan
from servers import (
    MemcachedServer,
    RedisCluster,
    RedisSentinel,
    RedisServer,
    find_binary,
    memcached_ascii_auth,
    memcached_sasl,
    running_servers,
    stop_all,
)
from sockets_host import HostLoop

# ============================================================================================
# Real server fixtures (see tests/servers.py)
#
# Session-scoped, started lazily on first request, stopped at session end (teardown sends
# SIGTERM, pytest_sessionfinish reaps them all at once). A test that stops or kills a shared
# server must start() it again before it ends; or use private_redis_server /
# private_memcached_server (function-scoped). Tests using these fixtures get the `servers`
# marker automatically. Missing binary: skip with the reason, or fail when
# CACHEKIT_REQUIRE_SERVERS=1 (CI sets it).
# ============================================================================================

MEMCACHED_USER = "cacheuser"
MEMCACHED_PASSWORD = "s3cret"

SERVER_FIXTURES = frozenset(
    {
        "redis_server",
        "valkey_server",
        "redis_cluster",
        "redis_sentinel",
        "memcached_server",
        "memcached_servers",
        "memcached_sasl_server",
        "memcached_ascii_server",
        "private_redis_server",
        "private_memcached_server",
        "infinispan_fake",
        "infinispan_fake_auth",
        "private_infinispan_fake",
        "require_servers",
    }
)


def require_binaries(*names: str) -> None:
    """Skip the test (fail it under CACHEKIT_REQUIRE_SERVERS=1) unless all binaries exist."""
    missing = [name for name in names if find_binary(name) is None]
    if not missing:
        return
    reason = f"{', '.join(missing)} not on PATH: run scripts/install-servers"
    if os.environ.get("CACHEKIT_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{reason} (CACHEKIT_REQUIRE_SERVERS=1)", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


def pytest_sessionfinish() -> None:
    stop_all(running_servers())


@pytest.fixture
def require_servers() -> Callable[..., None]:
    """``require_servers("redis-server", ...)`` for tests that start servers themselves."""
    return require_binaries


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A standalone redis-server: .host .port .url .pid .stop() .start() .kill()."""
    require_binaries("redis-server")
    server = RedisServer("redis-server", workdir=tmp_path_factory.mktemp("redis")).start()
    yield server
    server.terminate()


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A standalone valkey-server (same handle as redis_server)."""
    require_binaries("valkey-server")
    server = RedisServer("valkey-server", workdir=tmp_path_factory.mktemp("valkey")).start()
    yield server
    server.terminate()


@pytest.fixture
def private_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for this test alone (stop/kill/start it freely)."""
    require_binaries("redis-server")
    with RedisServer("redis-server", workdir=tmp_path / "redis") as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """3 primaries + 3 replicas: .root_urls .url .addresses .nodes .wait_ok()."""
    require_binaries("redis-server", "redis-cli")
    with RedisCluster("redis-server", workdir=tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinel]:
    """Master + replica + sentinel: .sentinels .master_name .master_address() .failover()."""
    require_binaries("redis-server")
    with RedisSentinel("redis-server", workdir=tmp_path_factory.mktemp("sentinel")) as setup:
        yield setup


@pytest.fixture(scope="session")
def memcached_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemcachedServer]:
    """A plain memcached: .host .port .address .url .pid .stop() .start() .kill()."""
    require_binaries("memcached")
    server = MemcachedServer(workdir=tmp_path_factory.mktemp("memcached")).start()
    yield server
    server.terminate()


@pytest.fixture
def private_memcached_server(tmp_path: Path) -> Iterator[MemcachedServer]:
    """A memcached for this test alone (stop/kill/start it freely)."""
    require_binaries("memcached")
    server = MemcachedServer(workdir=tmp_path / "memcached").start()
    yield server
    server.kill()  # nothing to lose, and memcached takes up to 1s to act on SIGTERM


@pytest.fixture(scope="session")
def memcached_servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[MemcachedServer]]:
    """Three plain memcached servers (for hashing clients)."""
    require_binaries("memcached")
    servers = [MemcachedServer(workdir=tmp_path_factory.mktemp("memcached")) for _ in range(3)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.terminate()


@pytest.fixture(scope="session")
def memcached_sasl_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MemcachedServer]:
    """memcached -S (binary protocol, SASL PLAIN): .username .password as well."""
    require_binaries("memcached", "saslpasswd2")
    workdir = tmp_path_factory.mktemp("memcached-sasl")
    server = memcached_sasl(MEMCACHED_USER, MEMCACHED_PASSWORD, workdir=workdir).start()
    yield server
    server.terminate()


@pytest.fixture(scope="session")
def memcached_ascii_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MemcachedServer]:
    """memcached -Y authfile (ASCII auth): .username .password as well."""
    require_binaries("memcached")
    workdir = tmp_path_factory.mktemp("memcached-ascii")
    server = memcached_ascii_auth(MEMCACHED_USER, MEMCACHED_PASSWORD, workdir=workdir).start()
    yield server
    server.terminate()


# The Infinispan fake (tests/infinispan_fake.py) needs nothing but Python: never skipped.


@pytest.fixture(scope="session")
def infinispan_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeInfinispan]:
    """The fake Infinispan REST server, no authentication: .url .port .pid .kill() .start()."""
    server = FakeInfinispan(workdir=tmp_path_factory.mktemp("infinispan")).start()
    yield server
    server.terminate()


@pytest.fixture(scope="session")
def infinispan_fake_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeInfinispan]:
    """The fake requiring TEST_USER / TEST_PASSWORD of infinispan_fake (Digest or Basic)."""
    server = FakeInfinispan(
        user=TEST_USER,
        password=TEST_PASSWORD,
        workdir=tmp_path_factory.mktemp("infinispan-auth"),
    ).start()
    yield server
    server.terminate()


@pytest.fixture
def private_infinispan_fake(tmp_path: Path) -> Iterator[FakeInfinispan]:
    """A fake for this test alone (stop/kill/pause/start it freely)."""
    server = FakeInfinispan(workdir=tmp_path / "infinispan").start()
    yield server
    server.kill()


@pytest.fixture
def anyio_backend() -> str:
    """``@pytest.mark.anyio`` tests run on asyncio, the loop cachekit's async API targets
    (anyio 3, which old Starlette releases pull in, would run each on trio as well)."""
    return "asyncio"


@pytest.fixture
def host() -> Iterator[HostLoop]:
    """A host serving plugin sockets from an asyncio loop in a thread (tests/sockets_host.py);
    the socket contract tests keep one per module."""
    loop = HostLoop()
    yield loop
    loop.close()
