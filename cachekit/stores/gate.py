"""A fair gate for threads: at most ``size`` callers inside, the others served in order.

The network stores bound the calls in flight on one connection pool (Redis's
``maxConnections``, memcached's per-server pools) so that a burst of callers queues instead
of failing or dialling hundreds of sockets. The queue must be fair: with a plain token
queue (``queue.SimpleQueue``), a thread that puts its token back takes it again at once,
before any waiting thread wakes, so under load some waiters starve until their wait runs
out and a healthy store answers ``StoreTimeout``. Here a freed place is handed straight to
the oldest waiter. (The asyncio side needs no lock; the Redis store keeps its own per-loop
slots with the same rule.)
"""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["Gate"]


class Gate:
    """At most ``size`` holders at once; waiters get a freed place first come, first served.

    :raises ValueError: ``size`` is not a positive int.
    """

    __slots__ = ("_free", "_lock", "_waiters", "size")

    def __init__(self, size: int) -> None:
        if type(size) is not int or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        self.size = size
        self._free = size
        self._lock = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()

    def __repr__(self) -> str:
        return f"Gate(size={self.size}, free={self._free}, waiting={len(self._waiters)})"

    def enter(self, timeout: float) -> bool:
        """Take a place, waiting at most ``timeout`` seconds behind earlier callers;
        ``False`` if none was handed over in time."""
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return True
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        if waiter.acquire(timeout=timeout):
            return True  # handed over by leave()
        with self._lock:
            try:
                self._waiters.remove(waiter)
            except ValueError:  # handed over just as the wait ran out: it is ours
                return True
        return False

    def leave(self) -> None:
        """Give the place back: to the oldest waiter, else to the free count."""
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._free += 1
