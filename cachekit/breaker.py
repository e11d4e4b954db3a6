"""A circuit breaker that lets a dead store cost (almost) nothing.

After ``failure_threshold`` consecutive failures the breaker *opens*: calls fail at once
with :class:`~cachekit.errors.StoreUnavailable` instead of waiting for a timeout. After
``cooldown`` seconds one call is let through as a probe (*half-open*); its success closes
the breaker, its failure opens it for another cooldown. One line is logged when the breaker
opens and one when the store is back, at the same level (:data:`OUTAGE_LEVEL`), with the
outage's length and the number of calls that failed or were skipped meanwhile — one pair
per outage, not a line per call. None of this bookkeeping touches the healthy path.

Stores wrap each I/O call, sync or awaited, in ``with breaker:`` (or use
:meth:`CircuitBreaker.call` / :meth:`CircuitBreaker.acall`); the call must raise
:class:`~cachekit.errors.StoreError` for store failures (other exceptions, such as
``CacheValueError``, pass through and do not count).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from cachekit.errors import StoreError, StoreUnavailable

__all__ = ["OUTAGE_LEVEL", "CircuitBreaker", "OutageLog"]

log = logging.getLogger("cachekit")

OUTAGE_LEVEL = logging.WARNING
"""The level of a breaker's two lines per outage: the store is down, the store is back."""

P = ParamSpec("P")
T = TypeVar("T")


class CircuitBreaker:
    """Counts consecutive store failures and short-circuits calls while the store is down.

    :param name: the store's name, for messages.
    :param failure_threshold: consecutive failures that open the breaker.
    :param cooldown: seconds the breaker stays open before a probe is let through.
    :param clock: monotonic clock in seconds (inject a fake one in tests).
    """

    __slots__ = (
        "_clock",
        "_failures",
        "_last_error",
        "_lock",
        "_open_until",
        "_outage_start",
        "_skipped",
        "cooldown",
        "failure_threshold",
        "healthy",
        "name",
    )

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 3,
        cooldown: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if cooldown <= 0:
            raise ValueError(f"cooldown must be > 0, got {cooldown}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until: float | None = None
        self._last_error = ""
        self._outage_start = 0.0  # clock time of the first failure of the current run
        self._skipped = 0  # calls refused while open, in the current run
        # No failure since the last success: before_call and record_success have nothing
        # to do, so hot paths may skip calling them (``if not breaker.healthy: ...``).
        self.healthy = True

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker({self.name!r}, state={self.state!r}, failures={self._failures}, "
            f"threshold={self.failure_threshold}, cooldown={self.cooldown})"
        )

    @property
    def state(self) -> str:
        """``"closed"`` (calls go through), ``"open"`` (calls fail fast) or ``"half-open"``
        (the cooldown is over: the next call is a probe)."""
        if self._open_until is None:
            return "closed"
        return "open" if self._clock() < self._open_until else "half-open"

    def before_call(self) -> None:
        """Raise ``StoreUnavailable`` at once while open; let one probe through after the
        cooldown (re-arming the cooldown for everyone else)."""
        if self._open_until is None:
            return
        with self._lock:
            if self._open_until is None:
                return
            now = self._clock()
            if now >= self._open_until:
                self._open_until = now + self.cooldown  # this caller is the probe
                return
            remaining = self._open_until - now
            self._skipped += 1
        raise StoreUnavailable(
            f"{self.name} store is unavailable (skipping it for {remaining:.1f}s more after "
            f"{self._failures} failures; last error: {self._last_error})",
            store=self.name,
        )

    def record_success(self) -> None:
        """A call succeeded: close the breaker (and, after an outage, log its length and
        the calls that failed or were skipped during it)."""
        if self._failures or self._open_until is not None:
            with self._lock:
                was_open = self._open_until is not None
                failed, skipped = self._failures + self._skipped, self._skipped
                length = self._clock() - self._outage_start
                self._failures = self._skipped = 0
                self._open_until = None
                self.healthy = True
            if was_open:
                log.log(
                    OUTAGE_LEVEL,
                    "cachekit: %s store is available again after %.1f s; %s calls failed "
                    "during the outage (%s of them skipped by the open breaker)",
                    self.name,
                    length,
                    f"{failed:,}",
                    f"{skipped:,}",
                )

    def record_failure(self, error: BaseException) -> None:
        """A call failed with a store error: count it, and open the breaker at the
        threshold (or re-open it after a failed probe)."""
        with self._lock:
            self.healthy = False
            if not self._failures:
                self._outage_start = self._clock()
            self._failures += 1
            self._last_error = str(error)
            opening = self._open_until is None and self._failures >= self.failure_threshold
            if opening or self._open_until is not None:
                self._open_until = self._clock() + self.cooldown
        if opening:
            log.log(
                OUTAGE_LEVEL,
                "cachekit: %s store is unavailable (%s); skipping it for %.1fs at a time "
                "until it answers",
                self.name,
                error,
                self.cooldown,
            )

    # The breaker protocol, in one place for both families: ``with breaker:`` around one
    # store call (sync or awaited). A store error counts as a failure; other exceptions
    # (a caller's bad input) pass through without moving the breaker.

    def __enter__(self) -> None:
        if not self.healthy:
            self.before_call()

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        if error is None:
            if not self.healthy:
                self.record_success()
        elif isinstance(error, StoreError):
            self.record_failure(error)

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` under the breaker."""
        with self:
            return fn(*args, **kwargs)

    async def acall(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn`` under the breaker."""
        with self:
            return await fn(*args, **kwargs)


class OutageLog:
    """Which stores have had their current outage reported, so callers that fail open
    (``@cached``, rate limits) warn once per outage rather than once per call.

    Stores are held weakly. ``active`` is a plain attribute so the hot path can check
    "is anything down?" for the price of one attribute read.
    """

    __slots__ = ("_down", "active")

    def __init__(self) -> None:
        self._down: weakref.WeakSet[object] = weakref.WeakSet()
        self.active = False

    def __repr__(self) -> str:
        return f"OutageLog(down={len(self._down)})"

    def first_failure(self, store: object) -> bool:
        """Record a failure of ``store``; ``True`` if this outage was not reported yet."""
        if store in self._down:
            return False
        self._down.add(store)
        self.active = True
        return True

    def recovered(self, store: object) -> None:
        """``store`` answered: its next failure starts a new outage."""
        self._down.discard(store)
        self.active = bool(self._down)
