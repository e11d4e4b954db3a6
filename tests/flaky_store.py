"""A memory store that can be switched off, to test outage behaviour without a server."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cachekit.errors import StoreUnavailable
from cachekit.stores.memory import MemoryStore


class FlakyStore(MemoryStore):
    """Raises StoreUnavailable from every operation while `down` is true; counts calls."""

    name = "flaky"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.down = False
        self.calls = 0

    def _guard(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.calls += 1
        if self.down:
            raise StoreUnavailable("flaky store is down", store=self.name)
        return fn(*args)

    def get(self, key: str) -> bytes | None:
        return self._guard(super().get, key)  # type: ignore[no-any-return]

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return self._guard(super().get_many, keys)  # type: ignore[no-any-return]

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        self._guard(super().set_many, items, ttl)

    def delete_many(self, keys: Sequence[str]) -> int:
        return self._guard(super().delete_many, keys)  # type: ignore[no-any-return]

    def touch(self, key: str, ttl: float | None) -> bool:
        return self._guard(super().touch, key, ttl)  # type: ignore[no-any-return]

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self._guard(super().set, key, value, ttl)

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        return self._guard(super().add, key, value, ttl)  # type: ignore[no-any-return]

    def delete(self, key: str) -> bool:
        return self._guard(super().delete, key)  # type: ignore[no-any-return]

    def incr(self, key: str, delta: int, ttl: float | None) -> int:
        return self._guard(super().incr, key, delta, ttl)  # type: ignore[no-any-return]

    def gcra(self, key: str, now: int, interval: int, period: int, cost: int) -> tuple[bool, int]:
        return self._guard(super().gcra, key, now, interval, period, cost)  # type: ignore[no-any-return]
