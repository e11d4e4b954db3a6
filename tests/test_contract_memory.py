"""The store contract on the in-memory store, on an injected clock (no sleeping)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cachekit.stores.memory import MemoryStore
from cachekit.testing import FakeClock
from cachekit.testing.contract import StoreContract


class TestMemoryStoreContract(StoreContract):
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def store(self, clock: FakeClock) -> MemoryStore:
        return MemoryStore(clock=clock)

    @pytest.fixture
    def wait(self, clock: FakeClock) -> Callable[[float], None]:
        return clock.advance
