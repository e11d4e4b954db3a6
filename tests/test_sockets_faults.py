"""Faults on binding sockets: a plugin killed mid-frame, a 100 MB frame, garbage bytes, a
frame naming another plugin, a host restart, a dead store behind a binding. The host keeps
serving everyone else, answers with the documented error or closes that connection, and
the plugin's client reconnects."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servers import RedisServer
from sockets_host import HostLoop, call, connect, read_frame
from test_sockets_plugin import start_plugin

from cachekit import CachePolicyError, CacheValueError, StoreUnavailable, cached, current_cache
from cachekit import plugin as plugin_side
from cachekit.host import CacheManager
from cachekit.sockets import BindingServer, Code, socket_binding


@pytest.fixture
def memory() -> CacheManager:
    return CacheManager()


@pytest.fixture
def served(host: HostLoop, memory: CacheManager, tmp_path: Path) -> Iterator[BindingServer]:
    """Plugin ``reports`` of ``memory`` on a socket."""
    server = BindingServer(socket_binding(memory, "reports"))
    host.run(server.start(str(tmp_path / "reports.sock")))
    yield server
    host.run(server.close())


@pytest.fixture(autouse=True)
def plugin_connections() -> Iterator[None]:
    """Tests that play the plugin close its connections after."""
    yield
    plugin_side.close()


@pytest.fixture
def plugin_env(served: BindingServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """This process plays the plugin: its environment names ``served``'s socket."""
    assert served.path is not None
    monkeypatch.setenv("CACHEKIT_CACHE_SOCKET", served.path)
    return served.path


def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until ``condition()`` holds (the host's loop runs in another thread)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def ping(path: str | None) -> object:
    assert path is not None
    sock = connect(path)
    try:
        return call(sock, [1, "ping", None, None])[1]
    finally:
        sock.close()


def test_a_plugin_killed_mid_frame_leaves_the_host_serving_other_plugins(
    host: HostLoop, memory: CacheManager
) -> None:
    """Plugin A dies (SIGKILL) after half a frame; the host drops that connection, removes
    A's sockets, and plugin B keeps reading and writing."""
    a = start_plugin(host, "reports", {"default": socket_binding(memory, "reports")})
    b = start_plugin(host, "catalog", {"default": socket_binding(memory, "catalog")})
    try:
        b.ok(cmd="set", tenant="acme", key="k", value="before")
        assert a.ok(cmd="half-frame") == "sent"
        server = a.process.servers["default"]
        eventually(lambda: len(server.connections) == 1)  # the half-open one, once accepted
        a.process.process.send_signal(signal.SIGKILL)
        assert host.run(a.process.wait()) == -signal.SIGKILL
        assert not server.connections
        assert server.path is not None
        assert not Path(server.path).exists()
        b.ok(cmd="set", tenant="acme", key="k", value="after")
        assert b.ok(cmd="get", tenant="acme", key="k") == "after"
        assert memory.for_plugin("catalog", "acme").get("k") == "after"
    finally:
        b.stop()
        a.stop()


def test_a_100_mb_frame_is_refused_by_its_length_and_the_connection_closed(
    served: BindingServer,
) -> None:
    """The host answers FRAME_TOO_LARGE (no id) as soon as it reads the length prefix —
    without waiting for the 100 MB — closes that connection, and serves others."""
    assert served.path is not None
    sock = connect(served.path)
    try:
        sock.sendall((100 * 2**20).to_bytes(4, "big") + b"\x00" * 65536)
        assert read_frame(sock)[:2] == [None, Code.FRAME_TOO_LARGE]
        assert sock.recv(1) == b""
    finally:
        sock.close()
    assert ping(served.path) == 0


def test_garbage_bytes_get_bad_frame_or_a_closed_connection(served: BindingServer) -> None:
    """A small frame of garbage is BAD_FRAME and the connection goes on; bytes that are not
    frames at all (an HTTP request) read as a huge length: FRAME_TOO_LARGE, closed."""
    assert served.path is not None
    sock = connect(served.path)
    try:
        sock.sendall(b"\x00\x00\x00\x07\xc1garbag")
        assert read_frame(sock) == [None, Code.BAD_FRAME, "the frame is not a msgpack value"]
        assert call(sock, [2, "ping", None, None])[:2] == [2, 0]
    finally:
        sock.close()
    sock = connect(served.path)
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_frame(sock)[:2] == [None, Code.FRAME_TOO_LARGE]
        assert sock.recv(1) == b""
    finally:
        sock.close()
    assert ping(served.path) == 0


def test_a_frame_naming_another_plugin_reaches_nothing_of_it(
    served: BindingServer, memory: CacheManager
) -> None:
    """Extra fields naming a plugin are refused; keys, tenants and namespaces spelling
    another plugin's full key stay inside this plugin's scope: nothing of ``catalog`` is
    read, and writes leave it unchanged."""
    memory.for_plugin("catalog", "acme").set("secret", "catalog's")
    assert served.path is not None
    sock = connect(served.path)
    try:
        assert call(sock, [1, "get", "acme", None, "secret", "catalog"])[1] == Code.BAD_ARGUMENT
        assert call(sock, {"plugin": "catalog", "op": "get"})[1] == Code.BAD_FRAME
        assert call(sock, [2, "get", "catalog", None, "secret"]) == [2, 0, None]
        assert call(sock, [3, "get", "acme", "catalog", "secret"]) == [3, 0, None]
        for key in ("catalog:acme::secret", "../catalog/acme/secret", "*", "catalog:*"):
            assert call(sock, [4, "get", "acme", None, key]) == [4, 0, None]
            assert call(sock, [5, "set", "acme", None, key, b"\xa3own", 0])[1] == 0
        assert call(sock, [6, "clear", "acme", None])[1] == 0
        assert call(sock, [7, "get", "acme:x", None, "secret"])[1] == Code.BAD_TENANT
    finally:
        sock.close()
    assert memory.for_plugin("catalog", "acme").get("secret") == "catalog's"


def test_the_client_reconnects_after_a_host_restart(
    host: HostLoop, served: BindingServer, plugin_env: str
) -> None:
    """Sync and async calls fail with StoreUnavailable while the host is down and work
    again, on new connections, once it listens again."""
    cache = plugin_side.cache(tenant="acme")
    cache.set("k", 1)
    host.run(served.close())
    with pytest.raises(StoreUnavailable):
        cache.get("k")
    host.run(served.start(plugin_env))
    assert cache.get("k") == 1  # a memory binding: the data outlived the socket

    async def restarted_under_a_loop() -> None:
        assert await cache.aget("k") == 1
        host.run(served.close())  # blocks this loop: the host runs on its own thread
        with pytest.raises(StoreUnavailable):
            await cache.aget("k")
        host.run(served.start(plugin_env))
        assert await cache.aget("k") == 1
        await plugin_side.aclose()

    asyncio.run(restarted_under_a_loop())


def test_the_breaker_skips_a_dead_host_and_cached_fails_open(
    host: HostLoop,
    served: BindingServer,
    plugin_env: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the host gone, direct calls raise StoreUnavailable (fast, once the breaker is
    open) while @cached calls its function, returns its result and logs one warning."""
    runs: list[int] = []

    @cached(ttl=60)
    def compute(n: int) -> int:
        runs.append(n)
        return n * 2

    with plugin_side.scope(tenant="acme") as cache:
        assert compute(2) == 4
        assert compute(2) == 4
        assert runs == [2]
        host.run(served.close())
        with caplog.at_level(logging.WARNING, logger="cachekit"):
            assert compute(3) == 6
            assert compute(3) == 6
        assert runs == [2, 3, 3]
        outage = [r for r in caplog.records if "calls through" in r.getMessage()]
        assert len(outage) == 1, [r.getMessage() for r in caplog.records]
        for _ in range(3):
            with pytest.raises(StoreUnavailable):
                cache.get("k")
        with pytest.raises(StoreUnavailable, match="skipping it"):
            current_cache().get("k")


def test_a_dead_store_behind_a_binding_is_store_unavailable_without_its_address(
    host: HostLoop, private_redis_server: RedisServer, served: BindingServer, tmp_path: Path
) -> None:
    """A stopped Redis behind one binding: STORE_UNAVAILABLE with a message that names no
    server, while the memory binding next to it keeps answering."""
    manager = CacheManager.from_url(private_redis_server.url)
    server = BindingServer(socket_binding(manager, "reports"))
    path = str(tmp_path / "redis.sock")
    host.run(server.start(path))
    sock = connect(path)
    try:
        assert call(sock, [1, "set", "acme", None, "k", b"1", 0]) == [1, 0, None]
        private_redis_server.stop()
        reply = call(sock, [2, "get", "acme", None, "k"])
        assert reply[:2] == [2, Code.STORE_UNAVAILABLE]
        assert str(private_redis_server.port) not in reply[2]
        assert ping(served.path) == 0
    finally:
        sock.close()
        host.run(server.close())
        host.run(manager.store.aclose())
        manager.store.close()


def test_limits_are_the_hosts_and_refused_before_any_write(
    host: HostLoop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin's policy on the host refuses an over-long value (ValueTooLarge, a
    CacheValueError) and a refused operation (CachePolicyError); a frame over the socket's
    maximum is refused in the client before it is sent."""
    manager = CacheManager.from_config(
        {
            "backend": {
                "cache": {
                    "plugins": {"reports": {"maxValueBytes": 100, "operations": ["read", "write"]}}
                }
            }
        }
    )
    server = BindingServer(socket_binding(manager, "reports"), max_frame=4096)
    path = str(tmp_path / "limits.sock")
    host.run(server.start(path))
    monkeypatch.setenv("CACHEKIT_CACHE_SOCKET", path)
    try:
        cache = plugin_side.cache(tenant="acme")
        with pytest.raises(CacheValueError, match="maxValueBytes"):
            cache.set("big", "x" * 200)
        with pytest.raises(CachePolicyError, match="may not call delete"):
            cache.delete("k")
        with pytest.raises(CacheValueError, match="over the binding socket's 4096"):
            cache.set_many({f"k{i}": "y" * 90 for i in range(100)})
        assert cache.get_many([f"k{i}" for i in range(100)]) == {}
        cache.set("small", "ok")
        assert manager.for_plugin("reports", "acme").get("small") == "ok"
    finally:
        host.run(server.close())
