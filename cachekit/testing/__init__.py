"""Helpers for testing code that uses cachekit; none of them needs pytest.

* :func:`disabled` turns caching off for a block;
* :class:`FakeClock` is a clock that moves only when told, for stores and rate limits
  given a ``clock``;
* :class:`Driver` calls a cache through its sync methods or its async twins behind one
  interface.

The contract suite a store must pass is in :mod:`cachekit.testing.contract` (it needs
pytest); the pytest fixtures for plugin code are in :mod:`cachekit.pytest_plugin`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from cachekit.cache import Cache
from cachekit.context import (
    Binding,
    activate_manager,
    bind,
    caching_disabled,
    current_scope,
    deactivate_manager,
    unbind,
)
from cachekit.errors import NoScopeError
from cachekit.manager import CacheManager
from cachekit.stores.memory import MemoryStore

__all__ = ["Driver", "FakeClock", "caching_disabled", "disabled"]


@contextlib.contextmanager
def disabled() -> Iterator[CacheManager]:
    """Turn caching off in a block (and in the tasks and threads it starts with a copy of
    its context)::

        with cachekit.testing.disabled():
            assert load_user(1) is not load_user(1)   # @cached calls through every time

    Inside the block:

    * ``@cached`` calls the function every time and stores nothing;
    * :func:`cachekit.current_cache`, and :func:`cachekit.host.scope` without an explicit
      manager, give caches on a throwaway in-memory store made for this block: reads never
      see the real store's data, and what is written is dropped with the store when the
      block ends (within the block a write can be read back, as counters and rate limits
      need). The scope bound around the block stays bound, on the throwaway store.

    A middleware or ``scope(..., manager=m)`` given an explicit manager inside the block
    binds that manager: its ``current_cache()`` reaches the real store (``@cached`` still
    calls through). Blocks nest; each gets its own throwaway store.

    Yields the throwaway :class:`~cachekit.host.CacheManager`.
    """
    manager = CacheManager(store=MemoryStore())
    flag = caching_disabled.set(True)
    activated = activate_manager(manager)
    try:
        bound = current_scope()
    except NoScopeError:
        binding = None
    else:
        binding = bind(Binding(manager, bound))
    try:
        yield manager
    finally:
        if binding is not None:
            unbind(binding)
        deactivate_manager(activated)
        caching_disabled.reset(flag)
        manager.close()


class FakeClock:
    """A monotonic clock that moves only when told: pass it as a store's ``clock``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now})"


class Driver:
    """Calls a cache (or manager) through its sync methods, or through its async twins on
    an event loop, behind one sync-looking interface: ``driver(cache).get("k")`` runs
    ``cache.get("k")`` in sync mode and ``cache.aget("k")`` to completion in async mode."""

    def __init__(self, mode: str) -> None:
        if mode not in ("sync", "async"):
            raise ValueError(f"mode must be 'sync' or 'async', got {mode!r}")
        self.mode = mode
        self.loop = asyncio.new_event_loop() if mode == "async" else None

    def __repr__(self) -> str:
        return f"Driver({self.mode!r})"

    def __call__(self, target: Cache | CacheManager) -> Any:
        return _Bound(target, self)

    def run(self, awaitable: Any) -> Any:
        """Run an awaitable on this driver's loop (async mode only)."""
        assert self.loop is not None, "run() is for async mode"
        return self.loop.run_until_complete(awaitable)

    def close(self, manager: CacheManager) -> None:
        """Close the manager's connections the way this mode opened them."""
        if self.loop is None:
            manager.close()
        else:
            self.run(manager.aclose())
            self.loop.close()


class _Bound:
    __slots__ = ("_driver", "_target")

    def __init__(self, target: Any, driver: Driver) -> None:
        self._target = target
        self._driver = driver

    def __getattr__(self, name: str) -> Any:
        if name in ("namespace", "with_options", "for_plugin"):
            method = getattr(self._target, name)
            return lambda *a, **kw: _Bound(method(*a, **kw), self._driver)
        if self._driver.loop is None:
            return getattr(self._target, name)
        twin = getattr(self._target, "a" + name)
        return lambda *a, **kw: self._driver.run(twin(*a, **kw))
