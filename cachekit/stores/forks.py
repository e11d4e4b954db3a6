"""Connections do not cross a fork: a forked child closes its copies of the sockets of the
stores registered here (the parent's connections stay open) and opens its own on first use.

A store that owns its connections (memcache, Infinispan) calls :func:`close_in_children`
when it is built; the Redis store's clients handle forks themselves.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["close_in_children"]


class _Closable(Protocol):
    def close(self) -> None: ...


_LIVE: weakref.WeakSet[_Closable] = weakref.WeakSet()


def close_in_children(store: _Closable) -> None:
    """Have ``store.close()`` called in every child this process forks from now on."""
    _LIVE.add(store)


def _after_fork_in_child() -> None:
    for store in list(_LIVE):
        store.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
