"""Custom providers: the contract on a minimal one, and the three ways to name one."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint

import pytest
from custom_store import DictStore

import cachekit.stores
from cachekit.errors import ConfigError
from cachekit.host import CacheManager
from cachekit.stores import store_names
from cachekit.testing import FakeClock
from cachekit.testing.contract import StoreContract


class TestMinimalProviderContract(StoreContract):
    """A store with only get/set/delete/touch/incr/clear passes the whole contract through
    BaseStore's loop-based batches and thread-backed async twins (on an injected clock, so
    its TTL test neither sleeps nor depends on the machine's speed)."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def store(self, clock: FakeClock) -> DictStore:
        return DictStore(clock=clock)

    @pytest.fixture
    def wait(self, clock: FakeClock) -> Callable[[float], None]:
        return clock.advance


def test_store_instance() -> None:
    """A store instance passed to the manager is used as is."""
    store = DictStore()
    manager = CacheManager(store=store)
    manager.for_plugin("p").set("k", 1)
    assert manager.store is store
    assert len(store.data) == 1


def test_dotted_path_with_options() -> None:
    """store: 'pkg.mod:Class' builds the class with backend.cache.options as kwargs."""
    manager = CacheManager.from_config(
        {"backend": {"cache": {"store": "custom_store:DictStore", "options": {"label": "x"}}}}
    )
    assert isinstance(manager.store, DictStore)
    assert manager.store.label == "x"


def test_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name registered in the cachekit.stores entry-point group resolves to its class."""
    ep = EntryPoint(name="dictstore", value="custom_store:DictStore", group="cachekit.stores")

    def fake_entry_points(*, group: str, name: str | None = None) -> list[EntryPoint]:
        return [ep] if group == "cachekit.stores" and name in (None, "dictstore") else []

    monkeypatch.setattr(cachekit.stores, "entry_points", fake_entry_points)
    assert "dictstore" in store_names()
    manager = CacheManager.from_config({"backend": {"cache": {"store": "dictstore"}}})
    assert isinstance(manager.store, DictStore)


def test_broken_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry point that fails to load is reported as a ConfigError."""
    ep = EntryPoint(name="broken", value="tests.nowhere:Store", group="cachekit.stores")
    monkeypatch.setattr(
        cachekit.stores, "entry_points", lambda *, group, name=None: [ep] if name else []
    )
    with pytest.raises(ConfigError, match="entry point 'broken' failed to load"):
        CacheManager.from_config({"backend": {"cache": {"store": "broken"}}})


def test_class_that_is_not_a_store() -> None:
    """A dotted path to something that is not a store is refused at start-up."""
    with pytest.raises(ConfigError, match="not a cachekit store"):
        CacheManager.from_config({"backend": {"cache": {"store": "custom_store:NotAStore"}}})


def test_clear_default_says_what_to_implement() -> None:
    """A provider without clear() gets an error naming the method to write."""

    class NoClear(DictStore):
        clear = cachekit.stores.BaseStore.clear  # type: ignore[assignment]

    with pytest.raises(NotImplementedError, match=r"NoClear\.clear\(\)"):
        CacheManager(store=NoClear()).for_plugin("p").clear()
