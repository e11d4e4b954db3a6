"""``@cached``: memoize sync and async functions in the request's scope.

::

    @cached(namespace="users", ttl=60)
    async def load_user(user_id: int) -> dict: ...

    @cached(ttl=timedelta(minutes=5), stale_ttl=60)
    def price_list(region: str) -> list: ...

The decorator is applied at import time and resolves the cache at call time, from the
scope a middleware or :func:`cachekit.host.scope` bound (:func:`cachekit.current_cache`): the
same function caches per plugin and per tenant with no code of its own.

How a call goes:

* **Hit**: build the key, one store read, decode, return. No lock, no task, no
  ``inspect`` call: the sync or async wrapper is chosen once, when the decorator is applied.
* **Miss**: concurrent callers of one key in this process compute once — asyncio callers
  await the first caller's future (a cancelled first caller hands over to a waiter, which
  computes instead); threads queue on a per-key lock taken only on a miss.
  With ``lock=True`` a lock in the store (``add`` = SET NX / memcached add) makes N
  processes compute once; the others poll with backoff (at most 100 ms apart) for the
  value, and after ``lock_timeout`` compute themselves rather than hang. The lock holds a
  token unique to its owner and is released only while it still holds it (compare and
  delete), so a computation that outlives its lock stores its value but never deletes
  the lock of the next owner.
* **Stale-while-revalidate** (``stale_ttl``): an entry past ``ttl`` but within
  ``ttl + stale_ttl`` is returned at once while one caller refreshes it in the background
  (an asyncio task, or a thread for sync functions; both run in a copy of the caller's
  context, so the scope is the same).
* **Store outage**: the function is called and its result returned (fail-open); one
  warning per outage, and the store's circuit breaker keeps a dead store's cost near zero.
  With ``backend.cache.failOpen: false`` store errors are raised instead.

Keys: the function's bound arguments (defaults applied, ``self``/``cls`` dropped, keyword
order irrelevant) written deterministically, hashed when long. An argument whose text is
identity-based (``<object at 0x...>``) cannot make a stable key: it raises
:class:`~cachekit.errors.CacheKeyError` telling you to pass ``key=`` or ``ignore=``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import functools
import hashlib
import inspect
import logging
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Collection, Mapping
from decimal import Decimal
from typing import Any, Final, Never, TypeVar
from uuid import UUID

import wrapt

from cachekit.breaker import OutageLog
from cachekit.cache import Cache
from cachekit.codec import MISS
from cachekit.context import cache_lookup, caching_disabled, store_of
from cachekit.context import outcome as request_outcome
from cachekit.durations import TTL, store_ttl
from cachekit.errors import CacheKeyError, CacheValueError, StoreError
from cachekit.keys import KeyPart, key_text
from cachekit.shapes import returned_shape, stale_entry
from cachekit.steps import Step, Steps, arun, run, sleep, twin

__all__ = ["cached"]

log = logging.getLogger("cachekit")

F = TypeVar("F", bound=Callable[..., Any])

_MAX_KEY: Final = 200
_SIMPLE: Final = frozenset({str, int, float, bool, type(None), bytes})
_POLL_START, _POLL_MAX = 0.005, 0.1
_SWR_SUFFIX: Final = "|swr"
_LOCK_SUFFIX: Final = "|lock"
# what a hit-path read leaves to do (_Policy.settle), and a read that failed open
_COMPUTE: Final = object()
_REFRESH: Final = object()
_FAILED: Final = object()


# --- keys -------------------------------------------------------------------------------


def _part(value: Any) -> str:
    """Deterministic, self-delimiting text for one argument."""
    kind = type(value)
    if kind in _SIMPLE:
        return repr(value)
    if kind is tuple or kind is list:
        inner = ",".join(map(_part, value))
        return f"({inner})" if kind is tuple else f"[{inner}]"
    if kind is dict:
        items = sorted(f"{_part(k)}:{_part(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if kind is set or kind is frozenset:
        return "{" + ",".join(sorted(map(_part, value))) + "}/"
    if isinstance(value, enum.Enum):
        return f"{kind.__qualname__}.{value.name}"
    text = repr(value)
    identity_repr: Any = kind.__repr__
    if identity_repr is object.__repr__ or " at 0x" in text:
        raise _unstable(kind, text)
    return f"{len(text)}#{text}"


def _unstable(kind: type, text: str) -> CacheKeyError:
    return CacheKeyError(
        f"@cached cannot build a stable key from {kind.__qualname__} argument {text}: its "
        "text changes from object to object. Pass key=... to build the key yourself, "
        "ignore=(...) to leave the argument out, or give the class a __repr__ that "
        "shows its value"
    )


class _KeyFormatter(string.Formatter):
    """Formats a ``key=`` template whose fields are not all plain text values: an enum
    gives its value, an object whose text is its address is refused."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, enum.Enum):
            value = value.value
        text = format(value, format_spec)
        kind: Any = type(value)
        identity = kind.__str__ is object.__str__ and kind.__repr__ is object.__repr__
        if identity or " at 0x" in text:
            raise _unstable(kind, text)
        return text


_KEY_FORMATTER: Final = _KeyFormatter()
# argument types a template formats to a stable text as they are (the fast path)
_PLAIN_TEXT: Final = frozenset({str, int, float, bool, UUID, Decimal})


def _template_fields(
    fn: Callable[..., Any], template: str, names: Collection[str]
) -> frozenset[str]:
    """The arguments a ``key=`` template reads (``"user:{user.id}"`` reads ``user``)."""
    try:
        fields = {
            re.split(r"[.\[]", field, maxsplit=1)[0]
            for _, field, _, _ in string.Formatter().parse(template)
            if field is not None
        }
    except ValueError as exc:
        raise CacheKeyError(f"key= template {template!r} is malformed: {exc}") from None
    unknown = fields - set(names)
    if unknown:
        raise CacheKeyError(
            f"key= template {template!r} names no parameter of {fn.__qualname__}: "
            f"{sorted(unknown)} (fields name the function's parameters, as in 'user:{{user_id}}')"
        )
    return frozenset(fields)


def _callable_key(made: Any) -> str:
    """A ``key=`` callable's result: a str, or a scalar with a stable text (an int id, a
    UUID)."""
    text = made if type(made) is str else key_text(made)
    if not text:
        raise CacheKeyError(
            f"key= must produce a non-empty str (or an int, UUID, Decimal or Enum), got {made!r}"
        )
    return text


def _finish(parts: list[str]) -> str:
    key = ",".join(parts) or "()"
    if len(key) <= _MAX_KEY:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"#{digest}:{key[:64]}"  # no unhashed key starts with '#'


_KeyFn = Callable[[bool, tuple[Any, ...], Mapping[str, Any]], str]


def _key_maker(
    fn: Callable[..., Any],
    ignore: Collection[str],
    key: Callable[..., KeyPart] | str | None,
    *,
    is_classmethod: bool,
) -> _KeyFn:
    """The function turning a call's arguments into a cache key: ``keys(bound, args,
    kwargs)``, ``bound`` when the call arrives without ``self``/``cls`` (a method). A
    closure rather than an object: the hit path calls it, and a closure call is the cheaper
    of the two (bench/README.md)."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    unknown = set(ignore) - {p.name for p in params}
    if unknown:
        raise CacheKeyError(f"ignore= names no parameter of {fn.__qualname__}: {sorted(unknown)}")
    # A bound call (method, classmethod) arrives without self/cls: index 1 drops it.
    sigs = (sig, sig.replace(parameters=params[1:]) if params else sig)
    ignored = frozenset(ignore)
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    simple = key is None and not ignore and all(p.kind in positional for p in params)
    arity = (len(params), len(params) - 1) if simple else (-1, -1)
    fields = _template_fields(fn, key, sig.parameters) if isinstance(key, str) else frozenset()

    def keys(bound: bool, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        bound = bound or is_classmethod
        if not kwargs and len(args) == arity[bound]:  # plain positional call: the fast path
            if len(args) == 1 and type(args[0]) in _SIMPLE:
                text = repr(args[0])
                if len(text) <= _MAX_KEY:
                    return text
            return _finish([repr(a) if type(a) in _SIMPLE else _part(a) for a in args])
        call = sigs[bound].bind(*args, **kwargs)
        call.apply_defaults()
        if key is None:
            return _finish([_part(v) for name, v in call.arguments.items() if name not in ignored])
        if callable(key):
            return _callable_key(key(*args, **kwargs))
        values = call.arguments
        for name in fields:
            if type(values[name]) not in _PLAIN_TEXT:
                made = _KEY_FORMATTER.vformat(key, (), values)
                break
        else:
            made = key.format(**values)
        if not made:
            raise CacheKeyError(f"key= template {key!r} produced an empty key")
        return made

    return keys


# --- outage bookkeeping -----------------------------------------------------------------

_outages = OutageLog()


def _store_failed(cache: Cache, exc: StoreError, fn: Callable[..., Any]) -> None:
    """Fail open (log once per outage) or, with failOpen: false, re-raise."""
    if not cache.fail_open:  # the plugin's failOpen (cachekit.policy)
        raise exc
    store = store_of(cache)  # the scope's store: a plugin's Cache hands out none
    if _outages.first_failure(store):
        log.warning(
            "cachekit: @cached %s calls through while the %s store fails: %s",
            fn.__qualname__,
            store.name,
            exc,
        )


def _store_answered(cache: Cache) -> None:
    """The store answered while an outage was reported: its next outage gets a warning."""
    _outages.recovered(store_of(cache))


# --- the decorated function -----------------------------------------------------------

_Scoped = tuple[str, str | None, str]  # (plugin, tenant, key): in-process bookkeeping keys


class _Policy:
    """Everything about one decorated function that does not change per call."""

    __slots__ = (
        "_inflight",
        "_locks",
        "_locks_guard",
        "_refreshing",
        "cache_none",
        "clock",
        "fn",
        "is_async",
        "keys",
        "lock",
        "lock_timeout",
        "lookup",
        "namespace",
        "shape",
        "stale_ttl",
        "ttl",
        "unless",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        namespace: str | None,
        ttl: float | Callable[[Any], TTL] | None,
        key: Callable[..., KeyPart] | str | None,
        ignore: Collection[str],
        unless: Callable[[Any], bool] | None,
        cache_none: bool,
        lock: bool,
        lock_timeout: float,
        stale_ttl: float | None,
        is_classmethod: bool,
        clock: Callable[[], float],
        binding: str | None = None,
    ) -> None:
        self.fn = fn
        # the scope's cache on the function's binding: current_cache itself for the
        # default one, chosen here so a call pays nothing for bindings
        self.lookup = cache_lookup(binding)
        self.is_async = inspect.iscoroutinefunction(fn)
        self.clock = clock  # wall clock: freshness of stale-while-revalidate entries
        self.namespace = namespace or f"{fn.__module__}.{fn.__qualname__}"
        self.ttl = ttl
        self.keys = _key_maker(fn, ignore, key, is_classmethod=is_classmethod)
        self.unless = unless
        self.cache_none = cache_none
        self.lock = lock
        self.lock_timeout = lock_timeout
        self.stale_ttl = stale_ttl
        self._locks: dict[_Scoped, list[Any]] = {}  # key -> [threading.Lock, waiters, turns]
        self._locks_guard = threading.Lock()
        self._inflight: dict[tuple[int, _Scoped], asyncio.Future[Any]] = {}  # (loop, key)
        self._refreshing: set[_Scoped] = set()
        # the return annotation's shape (cachekit.shapes), None for plain values: what a
        # stored entry is rebuilt by, and the result written as
        shape = returned_shape(fn)
        if shape is not None and self.stale_ttl is not None:
            shape = stale_entry(shape)  # entries are [value, fresh_until]
        self.shape = shape

    # -- shared, I/O-free steps --

    def cache(self) -> Cache:
        return self.lookup(self.namespace)

    def key(self, instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        key = self.keys(instance is not None, args, kwargs)
        return key + _SWR_SUFFIX if self.stale_ttl is not None else key

    def fresh(self, entry: Any) -> tuple[Any, bool]:
        """(value, still fresh) of a stored entry (stale mode stores [value, fresh_until])."""
        if self.stale_ttl is None:
            return entry, True
        return entry[0], self.clock() < entry[1]

    def to_store(self, cache: Cache, result: Any) -> tuple[bool, Any, float | None]:
        """Whether to store ``result``, the entry to store, and its TTL in seconds
        (``None``: no expiry)."""
        if (result is None and not self.cache_none) or (
            self.unless is not None and self.unless(result)
        ):
            return False, None, None
        ttl = self.ttl(result) if callable(self.ttl) else self.ttl
        seconds = cache.default_ttl if ttl is None else store_ttl(ttl)
        if self.stale_ttl is None or seconds is None:
            return True, result if self.stale_ttl is None else [result, float("inf")], seconds
        return True, [result, self.clock() + seconds], seconds + self.stale_ttl

    def failed(self, cache: Cache, exc: StoreError) -> Any:
        """A hit-path read failed: fail open (or raise); the entry is ``_FAILED``."""
        _store_failed(cache, exc, self.fn)
        return _FAILED

    def settle(self, cache: Cache, entry: Any) -> tuple[Any, object]:
        """What a hit-path read means, once for both wrappers: ``(value, todo)``, ``todo``
        being ``None``, ``_COMPUTE`` (a miss) or ``_REFRESH`` (a stale hit: serve
        ``value`` and refresh it). Ends a reported outage when the store answered, and
        counts the call for a middleware's ``X-Cache`` header."""
        if entry is _FAILED:
            entry = MISS
        elif _outages.active:
            _store_answered(cache)
        noted = request_outcome.get()
        if noted is not None:  # a middleware asked for an X-Cache header
            noted.note(entry is MISS)
        if entry is MISS:
            return None, _COMPUTE
        if self.stale_ttl is None:
            return entry, None
        value, fresh = self.fresh(entry)
        return value, None if fresh else _REFRESH

    def claim_refresh(self, cache: Cache, key: str) -> bool:
        """Whether this caller refreshes a stale entry (``False``: one already does)."""
        scoped = _scoped(cache, key)
        if scoped in self._refreshing:
            return False
        self._refreshing.add(scoped)
        return True

    # -- the I/O orchestrations, written once (cachekit.steps): run() or arun() them --

    def read(self, cache: Cache, key: str) -> Steps[Step, Any]:
        """The stored entry, or ``MISS`` (also when the store fails and we fail open)."""
        try:
            entry = yield twin(cache, "get", key, MISS, self.shape)
        except StoreError as exc:
            _store_failed(cache, exc, self.fn)
            return MISS
        if _outages.active:
            _store_answered(cache)
        return entry

    def store(self, cache: Cache, key: str, result: Any) -> Steps[Step, None]:
        """Store ``result`` if the policy keeps it; a store failure fails open."""
        keep, entry, ttl = self.to_store(cache, result)
        if keep:
            try:
                yield twin(cache, "set", key, entry, ttl or 0, self.shape)
            except StoreError as exc:
                _store_failed(cache, exc, self.fn)

    def call_and_store(self, cache: Cache, key: str, call: Callable[[], Any]) -> Steps[Step, Any]:
        """Call the function (a step: sync calls it, async awaits what it returns) and
        store its result."""
        result = yield Step(call, call)
        yield from self.store(cache, key, result)
        return result

    def recheck(self, cache: Cache, key: str, call: Callable[[], Any]) -> Steps[Step, Any]:
        """After waiting for another thread of this process: its value, else compute."""
        entry = yield from self.read(cache, key)
        if entry is not MISS:
            return self.fresh(entry)[0]
        return (yield from self.compute(cache, key, call))

    def compute(self, cache: Cache, key: str, call: Callable[[], Any]) -> Steps[Step, Any]:
        """Compute and store; with ``lock=True`` once across processes: take the store's
        lock and read once more under it (one more read per miss, the price of computing
        once), or poll with backoff for the holder's value until ``lock_timeout``."""
        if not self.lock:
            return (yield from self.call_and_store(cache, key, call))
        lock_key, token = key + _LOCK_SUFFIX, _token()
        deadline, pause = time.monotonic() + self.lock_timeout, _POLL_START
        while True:
            try:
                held = yield twin(cache, "add", lock_key, token, self.lock_timeout)
            except StoreError as exc:
                _store_failed(cache, exc, self.fn)
                return (yield Step(call, call))
            if held:
                try:
                    # Checked again under the lock: a process whose read missed just before
                    # the last holder stored and released would otherwise compute again.
                    entry = yield from self.read(cache, key)
                    if entry is not MISS:
                        return self.fresh(entry)[0]
                    return (yield from self.call_and_store(cache, key, call))
                finally:
                    yield from _release(cache, lock_key, token)
            yield sleep(pause)
            pause = min(pause * 2, _POLL_MAX)
            entry = yield from self.read(cache, key)
            if entry is not MISS:
                return self.fresh(entry)[0]
            if time.monotonic() >= deadline:
                return (yield from self.call_and_store(cache, key, call))

    def refresh(self, cache: Cache, key: str, call: Callable[[], Any]) -> Steps[Step, None]:
        """The background refresh of a stale entry (claimed by :meth:`claim_refresh`)."""
        try:
            yield from self.call_and_store(cache, key, call)
        except Exception:
            log.exception("cachekit: background refresh of %s failed", self.fn.__qualname__)
        finally:
            self._refreshing.discard(_scoped(cache, key))

    # -- the in-process de-duplication: threads and asyncio tasks differ by nature --

    def miss_sync(self, cache: Cache, key: str, call: Callable[[], Any]) -> Any:
        """Threads of this process computing one key queue on a per-key lock.

        The first turn computes at once (its caller's read was the miss: one read, one
        miss counted). Whatever ends the computing thread's turn — a value, the function's
        own error, or any other ``BaseException`` — the lock is released and the next
        queued thread re-reads the store and computes when it finds nothing: an error is
        never handed to other threads, each retries in turn.
        """
        scoped = _scoped(cache, key)
        with self._locks_guard:
            slot = self._locks.setdefault(scoped, [threading.Lock(), 0, 0])  # lock, queued, turns
            slot[1] += 1
        try:
            with slot[0]:
                first, slot[2] = not slot[2], slot[2] + 1
                # after another thread's turn the store may hold its value: re-read
                steps = self.compute(cache, key, call) if first else self.recheck(cache, key, call)
                return run(steps)
        finally:
            with self._locks_guard:
                slot[1] -= 1
                if not slot[1]:
                    del self._locks[scoped]

    async def miss_async(self, cache: Cache, key: str, call: Callable[[], Any]) -> Any:
        """Tasks of this loop computing one key await the first caller's (the leader's)
        future; the function's own error reaches every waiter.

        A cancelled leader hands over instead of taking its waiters down: its future is
        cancelled, and the first waiter to wake becomes the new leader and computes while
        the others wait on it. The computation is not shielded from its caller's
        cancellation on purpose: cancelling a task must stop the work it started (a
        request past its deadline frees its resources), and no task runs on that nobody
        owns and nobody awaits. The cost is a second computation when a leader is
        cancelled mid-way, paid only by callers who were waiting anyway.
        """
        loop = asyncio.get_running_loop()
        slot = (id(loop), _scoped(cache, key))
        while (waiting := self._inflight.get(slot)) is not None:
            # wait() leaves `waiting` alone when this waiter is cancelled, and raises
            # nothing of the leader's: its outcome is read below
            await asyncio.wait((waiting,))
            if not waiting.cancelled():
                return waiting.result()
            # the leader was cancelled (not us): take over, or wait on whoever did
        future: asyncio.Future[Any] = loop.create_future()
        self._inflight[slot] = future
        try:
            result = await arun(self.compute(cache, key, call))
        except asyncio.CancelledError:
            future.cancel()  # hand over: a waiter computes in our place
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        else:
            future.set_result(result)
            return result
        finally:
            if self._inflight.get(slot) is future:
                del self._inflight[slot]

    def revalidate_sync(self, cache: Cache, key: str, call: Callable[[], Any]) -> None:
        """Refresh a stale entry in a thread, in a copy of the caller's context."""
        if self.claim_refresh(cache, key):
            ctx = contextvars.copy_context()
            steps = self.refresh(cache, key, call)
            threading.Thread(target=ctx.run, args=(run, steps), daemon=True).start()

    def revalidate_async(self, cache: Cache, key: str, call: Callable[[], Any]) -> None:
        """Refresh a stale entry in an asyncio task (which copies the caller's context)."""
        if self.claim_refresh(cache, key):
            task = asyncio.get_running_loop().create_task(arun(self.refresh(cache, key, call)))
            _background.add(task)
            task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()


def _token() -> str:
    """A lock owner's token: random, since thread ids and clocks repeat across processes
    and machines, and a token two owners share would let one release the other's lock."""
    return secrets.token_hex(12)


def _scoped(cache: Cache, key: str) -> _Scoped:
    """``key`` made unique across scopes, for in-process bookkeeping."""
    return (cache.plugin, cache.tenant, key)


def _release(cache: Cache, lock_key: str, token: str) -> Steps[Step, None]:
    """Delete the lock only while it still holds our token: a computation that outlived
    its lock (whose value is still stored: it is as good as anyone's) must not delete
    the lock another caller took after it expired."""
    with contextlib.suppress(StoreError):  # else the lock's TTL frees it
        yield twin(cache, "delete_if_equals", lock_key, token)


# --- wrappers -------------------------------------------------------------------------


def _sync_hit(policy: _Policy) -> Callable[..., Any]:
    """The sync call, in wrapt's wrapper form ``(wrapped, instance, args, kwargs)``. The
    hit path is written out flat (no helper calls): it is what @cached costs. Everything
    but a plain hit goes to :meth:`_Policy.settle`, shared with the async call."""
    keys, namespace, stale = policy.keys, policy.namespace, policy.stale_ttl is not None
    shape, lookup = policy.shape, policy.lookup
    miss, failed, outages, noting = MISS, _FAILED, _outages, request_outcome.get

    def call(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if caching_disabled.get():
            return wrapped(*args, **kwargs)
        cache = lookup(namespace)
        key = keys(instance is not None, args, kwargs)
        if stale:
            key += _SWR_SUFFIX
        try:
            entry = cache.get(key, miss, shape)
        except StoreError as exc:
            entry = policy.failed(cache, exc)
        # anything but a plain hit is settled by the code shared with the async call
        if entry is miss or entry is failed or stale or outages.active or noting() is not None:
            value, todo = policy.settle(cache, entry)
            if todo is _COMPUTE:
                return policy.miss_sync(cache, key, functools.partial(wrapped, *args, **kwargs))
            if todo is _REFRESH:
                policy.revalidate_sync(cache, key, functools.partial(wrapped, *args, **kwargs))
            return value
        return entry

    return call


def _async_hit(policy: _Policy) -> Callable[..., Any]:
    """The async call, in wrapt's wrapper form ``(wrapped, instance, args, kwargs)``."""

    async def call(
        wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if caching_disabled.get():
            return await wrapped(*args, **kwargs)
        cache = policy.cache()
        key = policy.key(instance, args, kwargs)
        try:
            entry = await cache.aget(key, MISS, policy.shape)
        except StoreError as exc:
            entry = policy.failed(cache, exc)
        value, todo = policy.settle(cache, entry)
        if todo is None:
            return value
        later = functools.partial(wrapped, *args, **kwargs)
        if todo is _COMPUTE:
            return await policy.miss_async(cache, key, later)
        policy.revalidate_async(cache, key, later)
        return value

    return call


class _Helpers:
    """The helpers a cached function carries: ``invalidate``, ``ainvalidate``, ``refresh``,
    ``arefresh`` and ``uncached``. ``instance`` is the bound object of a method (``None``
    otherwise) and ``target`` what ``refresh`` calls."""

    __slots__ = ("_instance", "_policy", "_target")

    def __init__(self, policy: _Policy, instance: Any, target: Callable[..., Any]) -> None:
        self._policy = policy
        self._instance = instance
        self._target = target

    def _parts(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Cache, str]:
        return self._policy.cache(), self._policy.key(self._instance, args, kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Delete the entry these arguments map to, in the current scope."""
        cache, key = self._parts(args, kwargs)
        return cache.delete(key)

    async def ainvalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Async :meth:`invalidate`."""
        cache, key = self._parts(args, kwargs)
        return await cache.adelete(key)

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function (a ``def``) now and store its result; returns the result.

        :raises TypeError: on an ``async def`` function: ``await f.arefresh(...)`` it.
        """
        if self._policy.is_async:
            fn = self._policy.fn
            raise TypeError(
                f"{fn.__qualname__} is an async function: use `await {fn.__name__}.arefresh(...)`"
            )
        cache, key = self._parts(args, kwargs)
        return run(
            self._policy.compute(cache, key, functools.partial(self._target, *args, **kwargs))
        )

    async def arefresh(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function (an ``async def``) now and store its result; returns the result.

        :raises TypeError: on a ``def`` function: call ``f.refresh(...)``.
        """
        if not self._policy.is_async:
            fn = self._policy.fn
            raise TypeError(
                f"{fn.__qualname__} is not an async function: call {fn.__name__}.refresh(...)"
            )
        cache, key = self._parts(args, kwargs)
        call = functools.partial(self._target, *args, **kwargs)
        return await arun(self._policy.compute(cache, key, call))


class _WraptHelpers:
    """The helpers on wrapt's wrappers (methods), bound to the instance when there is one."""

    _self_policy: _Policy
    __wrapped__: Callable[..., Any]

    @property
    def _self_helpers(self) -> _Helpers:
        instance = getattr(self, "_self_instance", None)
        return _Helpers(self._self_policy, instance, self.__wrapped__)

    def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Delete the entry these arguments map to, in the current scope."""
        return self._self_helpers.invalidate(*args, **kwargs)

    async def ainvalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Async :meth:`invalidate`."""
        return await self._self_helpers.ainvalidate(*args, **kwargs)

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function (a ``def``) now and store its result; returns the result."""
        return self._self_helpers.refresh(*args, **kwargs)

    async def arefresh(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function (an ``async def``) now and store its result; returns it."""
        return await self._self_helpers.arefresh(*args, **kwargs)

    @property
    def uncached(self) -> Callable[..., Any]:
        """The original function, without caching."""
        return self._self_policy.fn


class _BoundCached(_WraptHelpers, wrapt.BoundFunctionWrapper[..., Any]):
    @property
    def _self_policy(self) -> _Policy:  # type: ignore[override]
        return self._self_parent._self_policy  # type: ignore[no-any-return]


class _Cached(_WraptHelpers, wrapt.FunctionWrapper[..., Any]):
    __bound_function_wrapper__ = _BoundCached

    def __init__(self, target: Any, policy: _Policy, wrapper: Callable[..., Any]) -> None:
        super().__init__(target, wrapper)
        self._self_policy = policy


def _in_class_body(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` was defined in a class body (``Class.f``, not ``outer.<locals>.f``)."""
    parts = fn.__qualname__.split(".")
    return len(parts) > 1 and parts[-2] != "<locals>"


def _plain(policy: _Policy, func: Callable[..., Any]) -> Callable[..., Any]:
    """A plain function's wrapper: a closure, cheaper per call than wrapt's proxy (see
    bench/README.md); methods keep wrapt for correct binding."""
    is_async = policy.is_async
    hit = (_async_hit if is_async else _sync_hit)(policy)

    async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
        return await hit(func, None, args, kwargs)

    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        return hit(func, None, args, kwargs)

    wrapper: Any = async_wrapper if is_async else sync_wrapper
    functools.update_wrapper(wrapper, func)
    helpers = _Helpers(policy, None, func)
    wrapper.invalidate = helpers.invalidate
    wrapper.ainvalidate = helpers.ainvalidate
    wrapper.refresh = helpers.refresh
    wrapper.arefresh = helpers.arefresh
    wrapper.uncached = func
    return wrapper  # type: ignore[no-any-return]


def _tagged(
    policy: _Policy, func: Callable[..., Any], target: Any, tags: Any
) -> Callable[..., Any]:
    """``@cached(tags=...)``: the call keyed by its tags' generations
    (:func:`cachekit.responses.tags.tagged`)."""
    from cachekit.responses.tags import keyed_by_generations, tagged

    if target is not func or _in_class_body(func):
        raise TypeError(f"@cached(tags=...) takes plain functions only, not {func.__qualname__}")
    policy.keys = keyed_by_generations(policy.keys)
    return tagged(func, tags, _plain(policy, func), policy.failed)


# what other caching libraries call a parameter, and cachekit's name for it
_PEER_NAMES: Final = {
    "expire": "ttl=",  # fastapi-cache2
    "expires": "ttl=",
    "timeout": "ttl= (how long a value is kept) or lock_timeout= (how long a waiter waits)",
    "ttl_seconds": "ttl=",
    "key_builder": "key=",  # aiocache, fastapi-cache2
    "make_cache_key": "key=",  # Flask-Caching
    "key_func": "key=",
    "key_prefix": "namespace=",  # Flask-Caching
    "prefix": "namespace=",  # cashews
    "condition": "unless= (called with the result; true: do not store)",  # cashews
    "skip_cache_func": "unless= (called with the result; true: do not store)",  # aiocache
    "early_ttl": "stale_ttl=",  # cashews
    "lock_ttl": "lock_timeout=",  # cashews
    "noself": "nothing: self and cls are always left out of the key",  # aiocache
}
_CACHED_PARAMETERS: Final = (
    "namespace, ttl, key, ignore, unless, cache_none, lock, lock_timeout, stale_ttl, clock, tags, "
    "binding"
)


def _unknown_parameter(names: Collection[str]) -> TypeError:
    name = sorted(names)[0]
    hint = _PEER_NAMES.get(name)
    if hint is not None:
        return TypeError(f"cached() has no parameter {name}=: cachekit calls it {hint}")
    return TypeError(
        f"cached() got an unexpected keyword argument {name!r}; its parameters: "
        f"{_CACHED_PARAMETERS}"
    )


def cached(
    namespace: str | None = None,
    ttl: TTL | Callable[[Any], TTL] | None = None,
    *,
    key: Callable[..., KeyPart] | str | None = None,
    ignore: Collection[str] = (),
    unless: Callable[[Any], bool] | None = None,
    cache_none: bool = True,
    lock: bool = False,
    lock_timeout: TTL = 10.0,
    stale_ttl: TTL | None = None,
    clock: Callable[[], float] = time.time,
    tags: Collection[str] | Callable[..., Collection[str]] = (),
    binding: str | None = None,
    **unknown: Never,
) -> Callable[[F], F]:
    """Memoize a function (``def`` or ``async def``; plain, method, classmethod or
    staticmethod) in the current scope's cache.

    Every duration takes seconds (``int``, ``float``), a ``timedelta`` or a duration string
    (``"5m"``, ``"1h30m"``, ``"PT1M30S"``; see :mod:`cachekit.durations`), and is checked
    when the decorator is applied.

    :param namespace: the cache namespace (default: the function's module and qualname).
    :param ttl: a duration, or a callable of the result returning one; ``None`` uses the
        cache's default TTL, ``0`` no expiry.
    :param key: a callable with the function's arguments returning the key (a str, or an
        int, UUID, Decimal or Enum), or a format string over the argument names
        (``"user:{user_id}"``). Default: all arguments.
    :param ignore: names of arguments left out of the default key.
    :param unless: ``unless(result) -> bool``: do not store when true.
    :param cache_none: store ``None`` results (default) or not.
    :param lock: also compute once across processes, with a lock in the store.
    :param lock_timeout: the longest a waiter waits for another process before computing
        itself; also the lock's TTL.
    :param stale_ttl: serve an expired entry for this long while it is refreshed.
    :param tags: tags of each call's entry, for :func:`cachekit.invalidate_tags`:
        ``str.format`` templates over the arguments (``"user:{user_id}"``) or a callable of
        the arguments returning them (plain functions only). Each call reads the tags'
        generations first (one more read) and keys its entry by them; such a function has
        no ``invalidate``/``refresh`` helpers.
    :param clock: the wall clock (seconds) that dates stale-while-revalidate entries;
        inject a fake one in tests.
    :param binding: the binding (``backend.cache.bindings``) to cache in, one the host
        grants the plugin; ``None``: the default binding. A binding the plugin is not
        granted raises :class:`~cachekit.errors.CachePolicyError` when called (not failed
        open: it is the host's decision, not an outage).
    :raises CacheValueError: a bad ``ttl``, ``stale_ttl`` or ``lock_timeout``, or a return
        annotation that names a type that cannot be cached (a pydantic model without
        pydantic installed, a pydantic v1 model) — both when applied.
    :raises CacheKeyError: ``ignore`` or a ``key`` template names an unknown argument, or
        ``binding`` is not a binding name (when applied), or an argument cannot form a
        stable key (when called).
    :raises TypeError: an unknown parameter; other libraries' names (``expire``,
        ``key_builder``, ``timeout``...) get cachekit's name for them.

    A structured return annotation — a dataclass, ``NamedTuple``, ``TypedDict``, pydantic
    model or ``Enum``, or ``list[...]``/``dict[str, ...]``/``X | None`` of them — is
    stored in its plain form and rebuilt, validated, on a hit (:mod:`cachekit.shapes`); an
    entry that no longer fits it (the type changed since) is a miss: recomputed and
    overwritten. Plain annotations cost nothing.
    """
    if unknown:
        raise _unknown_parameter(unknown)
    # durations are read now, so a bad one fails at import rather than on every call
    fixed_ttl = ttl if ttl is None or callable(ttl) else store_ttl(ttl) or 0.0  # 0.0: none
    timeout = store_ttl(lock_timeout, "lock_timeout")
    if timeout is None:
        raise CacheValueError(f"lock_timeout must be > 0, got {lock_timeout!r}")
    stale = None if stale_ttl is None else store_ttl(stale_ttl, "stale_ttl")
    cache_lookup(binding)  # a bad binding name fails when applied

    def decorate(fn: F) -> F:
        target: Any = fn
        func = target.__func__ if isinstance(target, classmethod | staticmethod) else target
        policy = _Policy(
            func,
            namespace=namespace,
            ttl=fixed_ttl,
            key=key,
            ignore=ignore,
            unless=unless,
            cache_none=cache_none,
            lock=lock,
            lock_timeout=timeout,
            stale_ttl=stale,
            is_classmethod=isinstance(target, classmethod),
            clock=clock,
            binding=binding,
        )
        if tags:
            return _tagged(policy, func, target, tags)  # type: ignore[return-value]
        if target is func and not _in_class_body(func):
            return _plain(policy, func)  # type: ignore[return-value]
        hit = (_async_hit if policy.is_async else _sync_hit)(policy)
        return _Cached(target, policy, hit)  # type: ignore[return-value]

    return decorate
