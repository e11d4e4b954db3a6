"""Counters and rate limits in the current scope.

::

    hits = counter("hits")                   # module level: resolved per call
    hits.incr()                              # atomic on every store
    await hits.aincr()

    limit = rate_limit("search", 10, per=1)  # 10 per second, per (plugin, tenant)
    result = limit.hit()                     # RateLimitResult(allowed=..., remaining=...)

    @rate_limited("export", 5, per=60, key=lambda request: request.client.host)
    async def export(request): ...           # raises RateLimitExceeded -> a 429

Both resolve the cache at call time from the bound scope (:func:`cachekit.current_cache`),
so one module-level object serves every plugin and tenant, each with its own counts.

Algorithms (``algorithm=``):

* ``"fixed"`` — one counter per window of ``per`` seconds (one atomic ``incr``; a
  refused hit is taken back with a ``decr``, so only allowed hits count; so is the hit
  of a cancelled ``ahit``, on every algorithm).
* ``"sliding"`` — the sliding-window counter: this window's count plus the previous
  window's, weighted by how much of it still overlaps the last ``per`` seconds.
* ``"gcra"`` — the generic cell rate algorithm: one key holding a timestamp, updated
  atomically by the store (:mod:`cachekit.gcra`); smooth, with bursts of up to ``limit``.

A store outage follows ``on_error``: ``"allow"`` (default: the cache is lossy, the limit
is skipped, one warning per outage) or ``"deny"`` (fail closed).
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeVar, cast, overload

import wrapt

from cachekit import gcra
from cachekit.breaker import OutageLog
from cachekit.cache import Cache
from cachekit.codec import parse_int
from cachekit.context import cache_lookup, store_of
from cachekit.durations import TTL, store_ttl
from cachekit.errors import CacheValueError, RateLimitExceeded, StoreError
from cachekit.keys import KeyPart, key_text
from cachekit.steps import Step, Steps, arun, run, twin

__all__ = ["Counter", "RateLimit", "RateLimitResult", "counter", "rate_limit", "rate_limited"]

log = logging.getLogger("cachekit")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
R = TypeVar("R", bound=int | None)
Algorithm = Literal["fixed", "sliding", "gcra"]

RATE_LIMIT_NAMESPACE: Final = "ratelimits"
_ALGORITHMS: Final = ("fixed", "sliding", "gcra")
RATE_FORMS: Final = "'10/minute', '100 per hour', '5/second', '10/5m', or 10, per=60"
"""The ways to write a rate, for error messages."""
_RATE: Final = re.compile(r"\s*(\d+)\s*(?:/|per\b)\s*(.*?)\s*", re.IGNORECASE)
_UNIT_WORD: Final = re.compile(r"[a-z]+", re.IGNORECASE)

# one warning per outage and helper: counters answering None, rate limits allowing/denying
_outages = OutageLog()
_counter_outages = OutageLog()


class Counter(Generic[R]):
    """An atomic integer in the current scope (see :func:`counter`). ``Counter[int]``
    raises on a store outage; ``Counter[int | None]`` (``on_error="ignore"``) answers
    ``None`` instead."""

    __slots__ = ("_lookup", "binding", "name", "namespace", "on_error", "ttl")

    @overload
    def __init__(
        self: Counter[int],
        name: str,
        *,
        ttl: TTL | None = None,
        namespace: str = "counters",
        on_error: Literal["raise"] = "raise",
        binding: str | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self: Counter[int | None],
        name: str,
        *,
        ttl: TTL | None = None,
        namespace: str = "counters",
        on_error: Literal["ignore"],
        binding: str | None = None,
    ) -> None: ...

    def __init__(
        self,
        name: str,
        *,
        ttl: TTL | None = None,
        namespace: str = "counters",
        on_error: Literal["raise", "ignore"] = "raise",
        binding: str | None = None,
    ) -> None:
        if type(name) is not str or not name:
            raise CacheValueError(f"a counter needs a non-empty str name, got {name!r}")
        if ttl is not None:
            store_ttl(ttl)  # a bad TTL fails here, not on the first incr
        if on_error not in ("raise", "ignore"):
            raise CacheValueError(f"on_error must be 'raise' or 'ignore', got {on_error!r}")
        self.name = name
        self.ttl = ttl
        self.namespace = namespace
        self.on_error = on_error
        self._lookup = cache_lookup(binding)  # a bad binding name fails here
        self.binding = binding

    def __repr__(self) -> str:
        return (
            f"counter({self.name!r}, ttl={self.ttl!r}, namespace={self.namespace!r}, "
            f"on_error={self.on_error!r}"
            + ("" if self.binding is None else f", binding={self.binding!r}")
            + ")"
        )

    def _cache(self) -> Cache:
        return self._lookup(self.namespace).exact()  # counts are read exact, never near

    @staticmethod
    def _int(value: Any) -> int:
        if type(value) is not int:
            raise CacheValueError(f"the counter holds {type(value).__name__}, not an integer")
        return value

    @staticmethod
    def _ok(cache: Cache, value: T) -> T:
        """The store answered: a next outage gets its warning."""
        if _counter_outages.active:
            _counter_outages.recovered(store_of(cache))
        return value

    def _failed(self, cache: Cache, exc: StoreError) -> None:
        """Raise, or with ``on_error="ignore"`` warn once per outage and answer ``None``."""
        if self.on_error == "raise":
            raise exc
        store = store_of(cache)  # the scope's store: a plugin's Cache hands out none
        if _counter_outages.first_failure(store):
            log.warning(
                "cachekit: counter %r answers None while the %s store fails: %s",
                self.name,
                store.name,
                exc,
            )

    def incr(self, delta: int = 1) -> R:
        """Add ``delta`` atomically; a new counter starts at ``delta`` with the TTL.

        :returns: the new value (``None`` on a store outage with ``on_error="ignore"``).
        """
        cache = self._cache()
        try:
            return self._ok(cache, cast(R, cache.incr(self.name, delta, self.ttl)))
        except StoreError as exc:
            return cast(R, self._failed(cache, exc))

    def decr(self, delta: int = 1) -> R:
        """Subtract ``delta`` atomically (counters may go negative); see :meth:`incr`."""
        cache = self._cache()
        try:
            return self._ok(cache, cast(R, cache.decr(self.name, delta, self.ttl)))
        except StoreError as exc:
            return cast(R, self._failed(cache, exc))

    def get(self) -> R:
        """The current value (``0`` when the counter does not exist; ``None`` on a store
        outage with ``on_error="ignore"``)."""
        cache = self._cache()
        try:
            return self._ok(cache, cast(R, self._int(cache.get(self.name, 0))))
        except StoreError as exc:
            return cast(R, self._failed(cache, exc))

    def reset(self) -> bool:
        """Delete the counter; ``True`` if it existed. Raises on a store outage whatever
        ``on_error`` says: a reset that did not happen must not pass for one."""
        return self._cache().delete(self.name)

    def expire(self, ttl: TTL) -> bool:
        """Give the counter a new TTL (``0``: none); ``False`` if it does not exist. Raises
        on a store outage whatever ``on_error`` says."""
        return self._cache().expire(self.name, ttl)

    async def aincr(self, delta: int = 1) -> R:
        """Async :meth:`incr`."""
        cache = self._cache()
        try:
            return self._ok(cache, cast(R, await cache.aincr(self.name, delta, self.ttl)))
        except StoreError as exc:
            return cast(R, self._failed(cache, exc))

    async def adecr(self, delta: int = 1) -> R:
        """Async :meth:`decr`."""
        cache = self._cache()
        try:
            return self._ok(cache, cast(R, await cache.adecr(self.name, delta, self.ttl)))
        except StoreError as exc:
            return cast(R, self._failed(cache, exc))

    async def aget(self) -> R:
        """Async :meth:`get`."""
        cache = self._cache()
        try:
            return self._ok(cache, cast(R, self._int(await cache.aget(self.name, 0))))
        except StoreError as exc:
            return cast(R, self._failed(cache, exc))

    async def areset(self) -> bool:
        """Async :meth:`reset`."""
        return await self._cache().adelete(self.name)

    async def aexpire(self, ttl: TTL) -> bool:
        """Async :meth:`expire`."""
        return await self._cache().aexpire(self.name, ttl)


@overload
def counter(
    name: str,
    *,
    ttl: TTL | None = None,
    namespace: str = "counters",
    on_error: Literal["raise"] = "raise",
    binding: str | None = None,
) -> Counter[int]: ...


@overload
def counter(
    name: str,
    *,
    ttl: TTL | None = None,
    namespace: str = "counters",
    on_error: Literal["ignore"],
    binding: str | None = None,
) -> Counter[int | None]: ...


def counter(
    name: str,
    *,
    ttl: TTL | None = None,
    namespace: str = "counters",
    on_error: Literal["raise", "ignore"] = "raise",
    binding: str | None = None,
) -> Counter[Any]:
    """An atomic counter named ``name`` in the current scope's ``namespace``.

    :param ttl: set when the counter is created (an existing counter keeps its TTL); any
        duration (``60``, ``"1h"``, ``timedelta(days=1)``).
    :param on_error: on a store outage, ``"raise"`` (default: like every direct call,
        :class:`~cachekit.errors.StoreError`), or ``"ignore"``: ``incr``/``decr``/``get``
        answer ``None`` and one warning is logged per outage — for counts that must not
        fail a request (page views, statistics).
    :param binding: the binding (``backend.cache.bindings``) to count in, one the host
        grants the plugin (else :class:`~cachekit.errors.CachePolicyError` when used);
        ``None``: the default binding.
    :raises CacheValueError: a bad name, TTL or ``on_error``.
    :raises CacheKeyError: ``binding`` is not a binding name.
    """
    return Counter(name, ttl=ttl, namespace=namespace, on_error=on_error, binding=binding)


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    """The outcome of a hit (or a peek).

    :ivar allowed: whether the hit is allowed.
    :ivar limit: hits allowed per period.
    :ivar remaining: hits still allowed now.
    :ivar reset_after: seconds until the limit is fully available again.
    :ivar retry_after: seconds until a refused hit would be allowed (``0`` when allowed).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float

    def raise_for_limit(self, name: str = "rate limit") -> None:
        """Raise :class:`RateLimitExceeded` unless allowed."""
        if not self.allowed:
            raise RateLimitExceeded(
                f"{name} exceeded: {self.limit} allowed, retry in {self.retry_after:.1f}s",
                limit=self.limit,
                remaining=self.remaining,
                retry_after=self.retry_after,
                reset_after=self.reset_after,
            )


_taking_back: set[asyncio.Task[None]] = set()


class RateLimit:
    """``limit`` hits per ``per`` seconds in the current scope (see :func:`rate_limit`)."""

    __slots__ = (
        "_lookup",
        "algorithm",
        "binding",
        "clock",
        "key",
        "limit",
        "name",
        "on_error",
        "per",
    )

    def __init__(
        self,
        name: str,
        limit: int | str,
        per: TTL | None = None,
        *,
        algorithm: Algorithm = "fixed",
        key: KeyPart | None = None,
        on_error: Literal["allow", "deny"] = "allow",
        clock: Callable[[], float] = time.time,
        binding: str | None = None,
    ) -> None:
        if type(name) is not str or not name:
            raise CacheValueError(f"a rate limit needs a non-empty str name, got {name!r}")
        self.limit, self.per = _rate(limit, per)
        if algorithm not in _ALGORITHMS:
            raise CacheValueError(f"algorithm must be one of {_ALGORITHMS}, got {algorithm!r}")
        if on_error not in ("allow", "deny"):
            raise CacheValueError(f"on_error must be 'allow' or 'deny', got {on_error!r}")
        self.name = name
        self.algorithm = algorithm
        self.key = None if key is None else _key(key)
        self.on_error = on_error
        self.clock = clock
        self._lookup = cache_lookup(binding)  # a bad binding name fails here
        self.binding = binding

    def __repr__(self) -> str:
        return (
            f"rate_limit({self.name!r}, {self.limit}, per={self.per}, "
            f"algorithm={self.algorithm!r}, key={self.key!r}, on_error={self.on_error!r}"
            + ("" if self.binding is None else f", binding={self.binding!r}")
            + ")"
        )

    def _cache(self) -> Cache:
        return self._lookup(RATE_LIMIT_NAMESPACE).exact()

    # --- shared, I/O-free steps ---------------------------------------------------------

    def _base(self) -> str:
        return self.name if self.key is None else f"{self.name}|{self.key}"

    def _windows(self, now: float) -> tuple[str, str, float]:
        """(current window key, previous window key, seconds into the window)."""
        index = math.floor(now / self.per)
        base = self._base()
        return f"{base}|{index}", f"{base}|{index - 1}", now - index * self.per

    def _fixed(self, count: int, into: float) -> RateLimitResult:
        allowed = count <= self.limit
        reset = self.per - into
        retry = 0.0 if allowed else reset
        return RateLimitResult(allowed, self.limit, max(0, self.limit - count), reset, retry)

    def _sliding(self, current: int, previous: int, into: float, cost: int) -> RateLimitResult:
        """``current`` counts this window's hits including this one (of ``cost``)."""
        per, limit = self.per, self.limit
        used = previous * (1.0 - into / per) + current
        allowed = used <= limit
        retry = 0.0 if allowed else self._sliding_retry(current, previous, into, cost)
        remaining = max(0, math.floor(limit - used))
        return RateLimitResult(allowed, limit, remaining, 2 * per - into, retry)

    def _sliding_retry(self, current: int, previous: int, into: float, cost: int) -> float:
        per, limit = self.per, self.limit
        if previous and current <= limit:
            # this window: previous * (1 - (into + t) / per) + current <= limit
            wait = per * (1 - (limit - current) / previous) - into
            if wait <= per - into:
                return max(0.0, wait)
        # next window: this window's allowed hits become the weighted previous ones
        kept = current - cost
        later = per * (1 - (limit - cost) / kept) if kept > 0 else 0.0
        return per - into + max(0.0, later)

    def _gcra_params(self) -> tuple[int, int]:
        period = round(self.per * 1e6)
        return max(1, period // self.limit), period

    def _gcra(self, allowed: bool, tat: int, now: int) -> RateLimitResult:
        interval, period = self._gcra_params()
        remaining = max(0, (now + period - tat) // interval)
        retry = 0.0 if allowed else max(0.0, (tat + interval - period - now) / 1e6)
        return RateLimitResult(allowed, self.limit, remaining, max(0, tat - now) / 1e6, retry)

    def _failed(self, cache: Cache, exc: StoreError) -> RateLimitResult:
        if _outages.first_failure(store_of(cache)):
            log.warning(
                "cachekit: rate limit %r %s hits while the store fails: %s",
                self.name,
                "allows" if self.on_error == "allow" else "denies",
                exc,
            )
        if self.on_error == "allow":
            return RateLimitResult(True, self.limit, self.limit, 0.0, 0.0)
        return RateLimitResult(False, self.limit, 0, self.per, self.per)

    @staticmethod
    def _ok(cache: Cache) -> None:
        if _outages.active:
            _outages.recovered(store_of(cache))

    # --- the orchestrations, written once (cachekit.steps) -------------------------------

    def _hit(self, cache: Cache, cost: int) -> Steps[Step, tuple[RateLimitResult, Step | None]]:
        """The outcome, and the step that takes the hit back if it was counted (``None``
        when nothing stays counted: refused, or the store failed)."""
        now = self.clock()
        undo: Step | None = None
        try:
            if self.algorithm == "gcra":
                interval, period = self._gcra_params()
                now_us = round(now * 1e6)
                base = self._base()
                allowed, tat = yield twin(cache, "gcra", base, now_us, interval, period, cost)
                result = self._gcra(allowed, tat, now_us)
                if allowed:  # a step of -cost moves the TAT back by what this hit added
                    undo = twin(cache, "gcra", base, now_us, interval, period, -cost)
            else:
                current, previous, into = self._windows(now)
                count = yield twin(cache, "incr", current, cost, 2 * self.per)
                undo = twin(cache, "decr", current, cost)
                if self.algorithm == "fixed":
                    result = self._fixed(count, into)
                else:
                    prev = _count((yield twin(cache, "get", previous, 0)))
                    result = self._sliding(count, prev, into, cost)
                if not result.allowed:  # a refused hit does not count
                    yield undo
                    undo = None
        except StoreError as exc:
            return self._failed(cache, exc), None
        self._ok(cache)
        return result, undo

    async def _take_back(self, hit: asyncio.Future[tuple[RateLimitResult, Step | None]]) -> None:
        """Let the hit of a cancelled caller finish, then take it back if it counted."""
        try:
            _, undo = await hit
        except Exception:  # the caller is gone: nobody to raise it to
            return
        if undo is not None:
            try:
                await undo.asynchronous(*undo.args)
            except StoreError as exc:  # the window's TTL ends the extra count
                log.warning(
                    "cachekit: rate limit %r could not take back a cancelled hit: %s",
                    self.name,
                    exc,
                )

    def _peek(self, cache: Cache) -> Steps[Step, RateLimitResult]:
        now = self.clock()
        try:
            if self.algorithm == "gcra":
                tat = _count((yield twin(cache, "get", self._base(), 0))) or None
                return self._peek_gcra(tat, now)
            current, previous, into = self._windows(now)
            found = yield twin(cache, "get_many", [current, previous])
            return self._peek_windows(found, current, previous, into)
        except StoreError as exc:
            return self._failed(cache, exc)

    # --- sync and async: thin shells ----------------------------------------------------

    def hit(self, cost: int = 1) -> RateLimitResult:
        """Consume ``cost`` hits (if allowed) and report the outcome."""
        return run(self._hit(self._cache(), cost))[0]

    async def ahit(self, cost: int = 1) -> RateLimitResult:
        """Async :meth:`hit`. A cancelled call counts nothing: a cancellation can land
        while a count is on the wire (applied or not, nobody knows), so the hit runs on
        in a task of its own, and the cancelled caller waits for it and takes it back
        before its ``CancelledError`` propagates. An in-process store never suspends
        mid-hit: it needs no task."""
        cache = self._cache()
        steps = self._hit(cache, cost)
        if not getattr(store_of(cache), "blocking", True):
            return (await arun(steps))[0]
        hit = asyncio.ensure_future(arun(steps))
        try:
            return (await asyncio.shield(hit))[0]
        except asyncio.CancelledError:
            undo = asyncio.ensure_future(self._take_back(hit))
            _taking_back.add(undo)  # a second cancellation leaves it to finish alone
            undo.add_done_callback(_taking_back.discard)
            await asyncio.shield(undo)
            raise

    def peek(self) -> RateLimitResult:
        """The outcome a hit would have now, without consuming anything."""
        return run(self._peek(self._cache()))

    async def apeek(self) -> RateLimitResult:
        """Async :meth:`peek`."""
        return await arun(self._peek(self._cache()))

    def reset(self) -> None:
        """Forget every hit counted so far."""
        self._cache().delete_many(self._reset_keys())

    async def areset(self) -> None:
        """Async :meth:`reset`."""
        await self._cache().adelete_many(self._reset_keys())

    # --- peeks and resets share these -------------------------------------------------

    def _peek_gcra(self, tat: int | None, now: float) -> RateLimitResult:
        interval, period = self._gcra_params()
        now_us = round(now * 1e6)
        allowed, _ = gcra.step(tat, now_us, interval, period, 1)
        current = now_us if tat is None or tat < now_us else tat
        return self._gcra(allowed, current, now_us)

    def _peek_windows(
        self, found: dict[str, Any], current: str, previous: str, into: float
    ) -> RateLimitResult:
        count = _count(found.get(current, 0))
        if self.algorithm == "fixed":
            result = self._fixed(count + 1, into)
        else:
            result = self._sliding(count + 1, _count(found.get(previous, 0)), into, 1)
        # evaluated as if one more hit came; `remaining` is reported before that hit
        remaining = result.remaining + 1 if result.allowed else 0
        return RateLimitResult(
            result.allowed, self.limit, remaining, result.reset_after, result.retry_after
        )

    def _reset_keys(self) -> list[str]:
        if self.algorithm == "gcra":
            return [self._base()]
        current, previous, _ = self._windows(self.clock())
        return [current, previous]


def _rate(limit: int | str, per: TTL | None) -> tuple[int, float]:
    """``(hits, seconds)`` of a rate written ``"10/minute"`` or ``10, per=60``."""
    if isinstance(limit, str):
        if per is not None:
            raise CacheValueError(
                f"the rate {limit!r} already says its period: drop per={per!r}, or write "
                f"limit=10, per=60"
            )
        return _parse_rate(limit)
    if type(limit) is not int or limit < 1:
        raise CacheValueError(f"limit must be an int >= 1 or a rate ({RATE_FORMS}), got {limit!r}")
    if per is None:
        raise CacheValueError(
            f"per= is missing: {limit} hits per what? Write per=60 or per='1m', or the rate "
            f"as one string ({RATE_FORMS})"
        )
    seconds = store_ttl(per, "per")
    if seconds is None:
        raise CacheValueError(f"per must be a positive period, got {per!r}")
    return limit, seconds


def _parse_rate(text: str) -> tuple[int, float]:
    """A rate as limits and slowapi spell it: ``count (/|per) [n] unit``, where the period
    is any duration (``"10/5m"``, ``"10 per 90 seconds"``) or a unit word alone
    (``"10/minute"`` is ten per one minute)."""
    if ";" in text or "," in text:
        raise CacheValueError(
            f"rate {text!r} holds several rates; a rate limit takes one (stack two "
            f"@rate_limited decorators for two)"
        )
    match = _RATE.fullmatch(text)
    if match is None:
        raise CacheValueError(f"cannot read the rate {text!r}; write it as {RATE_FORMS}")
    period = match[2]
    if _UNIT_WORD.fullmatch(period):
        period = f"1 {period}"
    try:
        seconds = store_ttl(period, "rate")
    except CacheValueError as exc:
        raise CacheValueError(f"{exc} (reading the rate {text!r})") from None
    hits = int(match[1])
    if hits < 1 or seconds is None:
        raise CacheValueError(f"rate {text!r} allows nothing; write it as {RATE_FORMS}")
    return hits, seconds


def _key(key: object) -> str:
    """The text of a rate limit's ``key=`` (a user id, a client address)."""
    text = key_text(key)
    if not text:
        raise CacheValueError(
            f"key must be a non-empty str, an int, a UUID, a Decimal or an Enum of those "
            f"(a user id, a client address), got {type(key).__name__}: {key!r}"
        )
    return text


def _count(value: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, bytes):
        parsed = parse_int(value)
        if parsed is not None:
            return parsed
    raise CacheValueError(f"a rate-limit key holds {type(value).__name__}, not an integer")


def rate_limit(
    name: str,
    limit: int | str,
    per: TTL | None = None,
    *,
    algorithm: Algorithm = "fixed",
    key: KeyPart | None = None,
    on_error: Literal["allow", "deny"] = "allow",
    binding: str | None = None,
) -> RateLimit:
    """A limit of ``limit`` hits per ``per``, counted in the current scope (so per plugin
    and tenant) and, with ``key``, per user, IP or anything else within it.

    :param limit: hits per period (with ``per=``), or the whole rate as one string:
        ``"10/minute"``, ``"100 per hour"``, ``"5/second"``, ``"10/5m"``.
    :param per: the period, any duration (``60``, ``"1m"``, ``timedelta(minutes=1)``).
    :param key: a str, int, UUID, Decimal or Enum of those (a user id, a client address).
    :param binding: the binding (``backend.cache.bindings``) to count in, one the host
        grants the plugin (else :class:`~cachekit.errors.CachePolicyError` when used);
        ``None``: the default binding.
    :raises CacheValueError: a bad name, rate, period, key, algorithm or on_error.
    :raises CacheKeyError: ``binding`` is not a binding name.
    """
    return RateLimit(
        name, limit, per, algorithm=algorithm, key=key, on_error=on_error, binding=binding
    )


def rate_limited(
    name: str,
    limit: int | str,
    per: TTL | None = None,
    *,
    algorithm: Algorithm = "fixed",
    key: KeyPart | Callable[..., KeyPart] | None = None,
    on_error: Literal["allow", "deny"] = "allow",
    binding: str | None = None,
) -> Callable[[F], F]:
    """Decorate an endpoint (``def`` or ``async def``) so each call takes a hit and a
    refused one raises :class:`RateLimitExceeded` — which the middlewares and the
    framework hooks in :mod:`cachekit.http` turn into a 429 with ``Retry-After`` and
    ``RateLimit-*`` headers. The rate is written as for :func:`rate_limit`
    (``@rate_limited("search", "10/minute")``) and checked when the decorator is applied.

    :param key: a fixed key, or a callable with the endpoint's arguments returning one
        (per user, per client address): a str, int, UUID, Decimal or Enum of those.
    :param binding: as for :func:`rate_limit`.
    """
    fixed_key = None if callable(key) else key
    fixed = RateLimit(
        name, limit, per, algorithm=algorithm, key=fixed_key, on_error=on_error, binding=binding
    )

    def limit_for(args: tuple[Any, ...], kwargs: dict[str, Any]) -> RateLimit:
        if not callable(key):
            return fixed
        keyed = copy.copy(fixed)
        keyed.key = _key(key(*args, **kwargs))
        return keyed

    def decorate(fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @wrapt.decorator
            async def async_wrapper(
                wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
            ) -> Any:
                (await limit_for(args, kwargs).ahit()).raise_for_limit(name)
                return await wrapped(*args, **kwargs)

            return async_wrapper(fn)  # type: ignore[return-value]

        @wrapt.decorator
        def sync_wrapper(
            wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            limit_for(args, kwargs).hit().raise_for_limit(name)
            return wrapped(*args, **kwargs)

        return sync_wrapper(fn)  # type: ignore[return-value]

    return decorate
