"""The store contract through a binding socket: the plugin's SocketStore in front of a
host serving a memory binding (on an injected clock), sync and async."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sockets_host import HostLoop

from cachekit.host import CacheManager
from cachekit.sockets import BindingServer, socket_binding
from cachekit.sockets.client import SocketStore
from cachekit.stores.memory import MemoryStore
from cachekit.testing import Driver, FakeClock
from cachekit.testing.contract import StoreContract


@pytest.fixture(scope="module")
def host() -> Iterator[HostLoop]:
    loop = HostLoop()
    yield loop
    loop.close()


class TestSocketStoreContract(StoreContract):
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def store(self, host: HostLoop, clock: FakeClock, tmp_path: Path) -> Iterator[SocketStore]:
        server = BindingServer(socket_binding(CacheManager(store=MemoryStore(clock=clock)), "p"))
        path = str(tmp_path / "contract.sock")
        host.run(server.start(path))
        store = SocketStore(path)
        yield store
        store.close()
        host.run(server.close())

    @pytest.fixture
    def wait(self, clock: FakeClock) -> Callable[[float], None]:
        return clock.advance

    # The plugin id is the host's choice on a binding socket (the socket is bound to one
    # plugin): these contract tests, which write as several plugins or clear as the host
    # across plugins, do not apply to a plugin's store. Tenants and namespaces, which a
    # plugin does choose, are checked below instead.
    test_scopes_are_isolated_through_every_method = None  # type: ignore[assignment]
    test_clear_removes_only_its_scope = None  # type: ignore[assignment]
    test_namespace_clear_removes_only_that_namespace = None  # type: ignore[assignment]
    test_clear_with_glob_and_separator_ids = None  # type: ignore[assignment]
    test_manager_clears_a_plugin_across_tenants = None  # type: ignore[assignment]
    test_manager_clears_one_scope = None  # type: ignore[assignment]

    @pytest.mark.parametrize("tenant", ["t2", "a.b", None])
    def test_tenants_and_namespaces_stay_apart_and_clear_alone(
        self, manager: CacheManager, driver: Driver, tenant: str | None
    ) -> None:
        """Through the socket, tenants and namespaces of the plugin never share a key, and
        a clear of one tenant or one namespace removes only that."""
        one, other = driver(manager.for_plugin("p", "t1")), driver(manager.for_plugin("p", tenant))
        users, orders = one.namespace("users"), one.namespace("orders")
        for cache, value in ((one, 1), (other, 2), (users, 3), (orders, 4)):
            cache.set("k", value)
        assert [c.get("k") for c in (one, other, users, orders)] == [1, 2, 3, 4]
        users.clear()
        assert [c.get("k") for c in (one, other, users, orders)] == [1, 2, None, 4]
        one.clear()
        assert [c.get("k") for c in (one, other, users, orders)] == [None, 2, None, None]
