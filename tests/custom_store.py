"""A minimal custom store, as a provider author would write one: five methods and clear.

Used by tests to prove BaseStore's defaults (batches, async twins) and the three ways of
naming a custom store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cachekit.codec import format_int, parse_int
from cachekit.errors import CacheValueError
from cachekit.keys import KeySelector
from cachekit.stores import BaseStore


class DictStore(BaseStore):
    """A thread-safe dict with deadlines on ``clock``; `options` from config arrive as
    kwargs."""

    name = "dict"

    def __init__(self, label: str = "default", clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.clock = clock
        self.data: dict[str, tuple[bytes, float | None]] = {}
        self.lock = threading.Lock()

    def _live(self, key: str) -> tuple[bytes, float | None] | None:
        entry = self.data.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= self.clock():
            del self.data[key]
            return None
        return entry

    def _deadline(self, ttl: float | None) -> float | None:
        return None if ttl is None else self.clock() + ttl

    def get(self, key: str) -> bytes | None:
        with self.lock:
            entry = self._live(key)
            return None if entry is None else entry[0]

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        with self.lock:
            self.data[key] = (value, self._deadline(ttl))

    def delete(self, key: str) -> bool:
        with self.lock:
            return self._live(key) is not None and self.data.pop(key) is not None

    def touch(self, key: str, ttl: float | None) -> bool:
        with self.lock:
            entry = self._live(key)
            if entry is None:
                return False
            self.data[key] = (entry[0], self._deadline(ttl))
            return True

    def incr(self, key: str, delta: int, ttl: float | None) -> int:
        with self.lock:
            entry = self._live(key)
            if entry is None:
                self.data[key] = (format_int(delta), self._deadline(ttl))
                return delta
            current = parse_int(entry[0])
            if current is None:
                raise CacheValueError("not an integer")
            if not -(2**63) <= current + delta < 2**63:
                raise CacheValueError("the result is outside the signed 64-bit range")
            self.data[key] = (format_int(current + delta), entry[1])
            return current + delta

    def clear(self, selector: KeySelector) -> int:
        with self.lock:
            doomed = [k for k in self.data if selector.matches(k)]
            for k in doomed:
                del self.data[k]
            return len(doomed)


class NotAStore:
    """Something that is not a store at all."""
