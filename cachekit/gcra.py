"""The generic cell rate algorithm (GCRA) step, in integer microseconds.

A limit of ``limit`` hits per ``period`` is a stream of hits spaced ``interval = period /
limit`` apart, with bursts of up to ``limit`` hits allowed. The whole state is one
number per key: the *theoretical arrival time* (TAT) of the next hit. A hit of ``cost``
is allowed when ``max(tat, now) + cost * interval - period <= now``; it then moves the
TAT forward. Stores run this step atomically (a lock in memory, a Lua script on Redis,
``cas`` on memcached); it lives here once so every store agrees.
"""

from __future__ import annotations

__all__ = ["step"]


def step(tat: int | None, now: int, interval: int, period: int, cost: int) -> tuple[bool, int]:
    """One GCRA decision: ``(allowed, tat)`` where ``tat`` is the new TAT when allowed and
    the unchanged one (at least ``now``) when refused. All values in microseconds."""
    current = now if tat is None or tat < now else tat
    new_tat = current + interval * cost
    if new_tat - period <= now:
        return True, new_tat
    return False, current
