"""The store of a binding with a near cache: :class:`NearStore` wraps the binding's store
(the *origin*) and keeps its :class:`~cachekit.near.NearCache` in step with every write;
:class:`NearView` is what one scope's :class:`~cachekit.Cache` reads through.

The binding's store (``manager.store``, host tools) reads the origin directly: only the
caches of plugins read from process memory, each counting its near hits, misses,
evictions and invalidations on its own metrics row. Every write of either drops the keys
it touched from the near cache once the origin answered (see :mod:`cachekit.near`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any

from cachekit.errors import CachekitError
from cachekit.keys import KeySelector, KeySpace
from cachekit.near import REPORT_INTERVAL, REPORT_PLUGIN, NearCache, Region, Ticket, encode_report

if TYPE_CHECKING:
    from cachekit.config.schema import NearCacheConfig
    from cachekit.metrics import Metrics, OpStats
    from cachekit.stores.base import Store

__all__ = ["NearReporter", "NearStore", "NearView", "tracking_for"]

log = logging.getLogger("cachekit")


class NearReporter:
    """Writes this process's near-cache counters of one binding into its store every
    ``interval`` seconds (a key of its own in the reserved :data:`~cachekit.near.REPORT_PLUGIN`
    scope, living three intervals), so ``cachekit stats`` can sum every process's. A
    daemon thread, started with tracking and stopped with it; a failed write is skipped
    (the next one comes an interval later).

    :param store: the binding's store (the origin).
    :param metrics: the binding's counters.
    :param key: the full key of this process's report.
    """

    def __init__(
        self, store: Store, metrics: Metrics, key: str, *, interval: float = REPORT_INTERVAL
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.key = key
        self.interval = interval

    def __repr__(self) -> str:
        return f"NearReporter({self.key!r}, every {self.interval:g}s)"

    @classmethod
    def for_binding(
        cls, store: Store, metrics: Metrics, keyspace: KeySpace, binding: str
    ) -> NearReporter | None:
        """A reporter for a binding whose store ``cachekit stats`` can scan, else ``None``."""
        if not hasattr(store, "scope_keys"):
            return None
        me = f"{socket.gethostname()}:{os.getpid()}:{binding}"
        return cls(store, metrics, keyspace.full_key(REPORT_PLUGIN, None, None, me))

    def report(self) -> None:
        """Write the report now (nothing when no scope has near-cache counts yet)."""
        value = encode_report(self.metrics.snapshot())
        if value is not None:
            self.store.set(self.key, value, 3 * self.interval)

    def start(self) -> Callable[[], None]:
        """Start reporting; the stopper, which also removes this process's report."""
        stopped = threading.Event()

        def run() -> None:
            while not stopped.wait(self.interval):
                try:
                    self.report()
                except CachekitError as exc:
                    log.debug("cachekit: near-cache report skipped: %s", exc)

        thread = threading.Thread(target=run, name="cachekit-near-report", daemon=True)
        thread.start()

        def stop() -> None:
            stopped.set()
            thread.join(1.0)
            with contextlib.suppress(CachekitError):
                self.store.delete(self.key)

        return stop


def tracking_for(
    origin: Store, reporter: NearReporter | None = None
) -> Callable[[NearCache], Callable[[], None] | None]:
    """How a near cache in front of ``origin`` starts tracking (the ``start_tracking`` of
    :class:`~cachekit.near.NearCache`): the origin's ``tracker(sink, prefix)`` (the Redis
    store's, on its key prefix), started, with ``reporter``; ``None`` — and a warning —
    when the origin cannot track (a Redis store built from bare client factories: the
    near cache then never serves)."""

    def start(near: NearCache) -> Callable[[], None] | None:
        make = getattr(origin, "tracker", None)
        tracker = None if make is None else make(near, origin.key_prefix)
        if tracker is None:
            log.warning(
                "cachekit: %r cannot track its keys for the near cache (it was built "
                "without a connection spec): the near cache stays off; build the store "
                "from config or a URL",
                origin,
            )
            return None
        tracker.start()
        stop_reporting = None if reporter is None else reporter.start()

        def stop() -> None:
            tracker.stop()
            if stop_reporting is not None:
                stop_reporting()

        return stop

    return start


class NearStore:
    """A binding's store behind a near cache: every call goes to ``origin``; writes then
    drop the keys they touched from ``near``. Capabilities the origin has beyond
    :class:`~cachekit.stores.base.Store` (``server_info``, ``count_scopes``, ...) are
    reached through it unchanged.

    :param origin: the binding's store.
    :param near: the binding's near cache.
    """

    def __init__(self, origin: Store, near: NearCache) -> None:
        self.origin = origin
        self.near = near
        self.name = origin.name
        self.key_prefix = origin.key_prefix
        self.blocking = getattr(origin, "blocking", True)

    def __repr__(self) -> str:
        return f"NearStore({self.origin!r}, {self.near!r})"

    def __getattr__(self, name: str) -> Any:
        # Capabilities of the origin beyond the Store protocol (server_info, breaker, ...).
        return getattr(self.origin, name)

    @property
    def exact(self) -> NearStore:
        """This binding's store reading the origin (what counters, rate limits and locks
        read through): itself, or for a :class:`NearView` its binding's."""
        return self

    def view(
        self, plugin: str, stats: OpStats, override: NearCacheConfig | None = None
    ) -> NearStore:
        """What a cache of ``plugin`` reads through: a :class:`NearView` counting on
        ``stats`` (its scope's row), or this store when the plugin's near cache is off
        (``override``: its ``nearCache`` settings)."""
        region = self.near.region(plugin, override)
        if region is None:
            return self
        return NearView(self.origin, self.near, region, self.near.ttl(override), stats)

    # --- reads: the origin's (exact) -----------------------------------------------------

    def get(self, key: str) -> bytes | None:
        return self.origin.get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return self.origin.get_many(keys)

    def get_values(self, keys: Sequence[str]) -> list[bytes | None]:
        """Each key's value or ``None``, in order (an
        :class:`~cachekit.stores.base.AlignedStore`, whatever the origin)."""
        values = getattr(self.origin, "get_values", None)
        if values is not None:
            return list(values(keys))
        found = self.origin.get_many(keys)
        return [found.get(key) for key in keys]

    async def aget(self, key: str) -> bytes | None:
        return await self.origin.aget(key)

    async def aget_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return await self.origin.aget_many(keys)

    async def aget_values(self, keys: Sequence[str]) -> list[bytes | None]:
        """Async :meth:`get_values`."""
        values = getattr(self.origin, "aget_values", None)
        if values is not None:
            return list(await values(keys))
        found = await self.origin.aget_many(keys)
        return [found.get(key) for key in keys]

    # --- writes: the origin's, then the keys dropped ------------------------------------

    def _wrote(self, call: Callable[..., Any], keys: Sequence[str], *args: Any) -> Any:
        try:
            return call(*args)
        finally:  # a failed write may have happened: forget the keys either way
            self.near.drop(keys)

    async def _awrote(self, call: Callable[..., Any], keys: Sequence[str], *args: Any) -> Any:
        try:
            return await call(*args)
        finally:
            self.near.drop(keys)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self._wrote(self.origin.set, (key,), key, value, ttl)

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        self._wrote(self.origin.set_many, list(items), items, ttl)

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        return bool(self._wrote(self.origin.add, (key,), key, value, ttl))

    def delete(self, key: str) -> bool:
        return bool(self._wrote(self.origin.delete, (key,), key))

    def delete_many(self, keys: Sequence[str]) -> int:
        return int(self._wrote(self.origin.delete_many, keys, keys))

    def delete_if_equals(self, key: str, value: bytes) -> bool:
        """Delete ``key`` if it holds ``value`` (the origin's, atomic where it is)."""
        compare = getattr(self.origin, "delete_if_equals", None)
        if compare is None:  # a Store that is not a BaseStore: read, then delete
            return self.origin.get(key) == value and self.delete(key)
        return bool(self._wrote(compare, (key,), key, value))

    def incr(self, key: str, delta: int, ttl: float | None) -> int:
        return int(self._wrote(self.origin.incr, (key,), key, delta, ttl))

    def expire(self, key: str, ttl: float | None) -> bool:
        return bool(self._wrote(self.origin.expire, (key,), key, ttl))

    def touch(self, key: str, ttl: float | None) -> bool:
        return bool(self._wrote(self.origin.touch, (key,), key, ttl))

    def gcra(self, key: str, now: int, interval: int, period: int, cost: int) -> tuple[bool, int]:
        return self.origin.gcra(key, now, interval, period, cost)  # a TAT is never read here

    def clear(self, selector: KeySelector) -> int | None:
        try:
            return self.origin.clear(selector)
        finally:
            self.near.clear(selector)

    def ping(self) -> None:
        self.origin.ping()

    def close(self) -> None:
        """Stop tracking, forget the near cache and close the origin's connections."""
        self.near.close()
        self.origin.close()

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        await self._awrote(self.origin.aset, (key,), key, value, ttl)

    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        await self._awrote(self.origin.aset_many, list(items), items, ttl)

    async def aadd(self, key: str, value: bytes, ttl: float | None) -> bool:
        return bool(await self._awrote(self.origin.aadd, (key,), key, value, ttl))

    async def adelete(self, key: str) -> bool:
        return bool(await self._awrote(self.origin.adelete, (key,), key))

    async def adelete_many(self, keys: Sequence[str]) -> int:
        return int(await self._awrote(self.origin.adelete_many, keys, keys))

    async def adelete_if_equals(self, key: str, value: bytes) -> bool:
        """Async :meth:`delete_if_equals`."""
        compare = getattr(self.origin, "adelete_if_equals", None)
        if compare is None:
            return await self.origin.aget(key) == value and await self.adelete(key)
        return bool(await self._awrote(compare, (key,), key, value))

    async def aincr(self, key: str, delta: int, ttl: float | None) -> int:
        return int(await self._awrote(self.origin.aincr, (key,), key, delta, ttl))

    async def aexpire(self, key: str, ttl: float | None) -> bool:
        return bool(await self._awrote(self.origin.aexpire, (key,), key, ttl))

    async def atouch(self, key: str, ttl: float | None) -> bool:
        return bool(await self._awrote(self.origin.atouch, (key,), key, ttl))

    async def agcra(
        self, key: str, now: int, interval: int, period: int, cost: int
    ) -> tuple[bool, int]:
        return await self.origin.agcra(key, now, interval, period, cost)

    async def aclear(self, selector: KeySelector) -> int | None:
        try:
            return await self.origin.aclear(selector)
        finally:
            self.near.clear(selector)

    async def aping(self) -> None:
        await self.origin.aping()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        self.near.close()
        await self.origin.aclose()


class NearView(NearStore):
    """One scope's reads through the near cache: a held entry is served from process
    memory, a miss goes to the origin and is kept (see :meth:`NearCache.keep
    <cachekit.near.NearCache.keep>` for when it is not). Hits, misses, and the evictions
    and invalidations of the entries it kept count on ``stats``."""

    def __init__(
        self, origin: Store, near: NearCache, region: Region, ttl: float, stats: OpStats
    ) -> None:
        super().__init__(origin, near)
        self.region = region
        self.ttl = ttl
        self.stats = stats
        self._entries = region.entries
        self._clock = near.clock

    def __repr__(self) -> str:
        return f"NearView({self.origin!r}, {self.region!r})"

    @property
    def exact(self) -> NearStore:
        return NearStore(self.origin, self.near)

    def _held(self, key: str) -> bytes | None:
        """The value held for ``key`` (a near hit), or ``None``."""
        entry = self._entries.get(key)
        if entry is None or not self.near.live:
            return None
        if entry.expires <= self._clock():
            self.near.expired(key, self.region, entry)
            return None
        try:  # noqa: SIM105 (contextlib.suppress costs a hit twice as much)
            self._entries.move_to_end(key)
        except KeyError:  # dropped by another thread since: this read came just before
            pass
        self.stats.near_hits += 1
        return entry.value

    # The cache reading through a view does not time its calls (a near hit is not a store
    # call): the view times its calls to the origin, on the scope's row, when it has one.

    def _wrote(self, call: Callable[..., Any], keys: Sequence[str], *args: Any) -> Any:
        began = perf_counter()
        result = super()._wrote(call, keys, *args)
        if self.blocking:
            _took(self.stats, began)
        return result

    async def _awrote(self, call: Callable[..., Any], keys: Sequence[str], *args: Any) -> Any:
        began = perf_counter()
        result = await super()._awrote(call, keys, *args)
        if self.blocking:
            _took(self.stats, began)
        return result

    def _miss(self, keys: Sequence[str]) -> _Miss:
        """Reads of ``keys`` about to go to the origin (see :class:`_Miss`)."""
        self.stats.near_misses += len(keys)
        return _Miss(self, keys, self.near.begin())

    def _split(self, keys: Sequence[str]) -> tuple[list[bytes | None], list[str]]:
        """Each key's held value (``None`` where not held), and the keys not held."""
        values = [self._held(key) for key in keys]
        return values, [key for key, value in zip(keys, values, strict=True) if value is None]

    def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)  # _held() and _miss(), inlined: the two paths of a read
        if entry is not None:
            if self.near.live and entry.expires > self._clock():
                try:  # noqa: SIM105 (contextlib.suppress costs a hit twice as much)
                    self._entries.move_to_end(key)
                except KeyError:
                    pass
                self.stats.near_hits += 1
                return entry.value
            self._held(key)  # expired (dropped there) or not live
        near = self.near
        ticket = near.ticket if near.live else near.begin()
        began = perf_counter()
        value = self.origin.get(key)  # failed: nothing to keep
        stats = self.stats
        if self.blocking:
            stats.latency += perf_counter() - began
            stats.timed += 1
        stats.near_misses += 1
        if value is not None and ticket is not None:
            near.keep(ticket, key, value, self.region, self.ttl, stats)
        return value

    async def aget(self, key: str) -> bytes | None:
        value = self._held(key)
        if value is not None:
            return value
        miss = self._miss((key,))
        value = await self.origin.aget(key)  # failed or cancelled: nothing to keep
        miss.end((value,))
        return value

    def get_values(self, keys: Sequence[str]) -> list[bytes | None]:
        """Held entries from process memory, the others in one read of the origin (never
        the near cache for an entry it does not hold)."""
        values, wanted = self._split(keys)
        if not wanted:
            return values
        miss = self._miss(wanted)
        read = super().get_values(wanted)
        miss.end(read)
        return _merged(values, read)

    async def aget_values(self, keys: Sequence[str]) -> list[bytes | None]:
        """Async :meth:`get_values`."""
        values, wanted = self._split(keys)
        if not wanted:
            return values
        miss = self._miss(wanted)
        read = await super().aget_values(wanted)
        miss.end(read)
        return _merged(values, read)

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        values = self.get_values(keys)
        return {k: v for k, v in zip(keys, values, strict=True) if v is not None}

    async def aget_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        values = await self.aget_values(keys)
        return {k: v for k, v in zip(keys, values, strict=True) if v is not None}


class _Miss:
    """Reads of a view's ``keys`` in flight to the origin: noted (:meth:`NearCache.begin
    <cachekit.near.NearCache.begin>`) and timed when made, ended by :meth:`end` with what
    the origin answered (a read that failed or was cancelled just ends: nothing is kept)."""

    __slots__ = ("began", "keys", "ticket", "view")

    def __init__(self, view: NearView, keys: Sequence[str], ticket: Ticket | None) -> None:
        self.view = view
        self.keys = keys
        self.ticket = ticket
        self.began = perf_counter()

    def end(self, values: Sequence[bytes | None]) -> None:
        view, ticket = self.view, self.ticket
        if ticket is not None:
            keep, region, ttl, stats = view.near.keep, view.region, view.ttl, view.stats
            for key, value in zip(self.keys, values, strict=True):
                keep(ticket, key, value, region, ttl, stats)
        if view.blocking:
            _took(view.stats, self.began)


def _merged(held: list[bytes | None], read: Sequence[bytes | None]) -> list[bytes | None]:
    """``held`` with its gaps (``None``) filled, in order, from ``read``."""
    values = iter(read)
    return [next(values) if value is None else value for value in held]


def _took(stats: OpStats, began: float) -> None:
    """Count a store call begun at ``began`` on ``stats`` (as the cache would)."""
    stats.latency += perf_counter() - began
    stats.timed += 1
