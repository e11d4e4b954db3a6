"""The near cache: hot entries served from process memory, in front of a binding's store.

A binding with ``nearCache`` in its section (``backend.cache`` or
``backend.cache.bindings.<name>``) keeps recently read entries in this process, so a hit
costs a dictionary lookup instead of a round trip. What keeps it correct:

* **Invalidations (Redis, Valkey).** A tracker (:mod:`cachekit.stores.redis.tracking`)
  holds one connection per server node with ``CLIENT TRACKING ... BCAST`` on the binding's
  key prefix: every write to a key under it — by any process, through cachekit or not,
  and expiries and evictions too — sends the key here, and the entry is dropped. Until
  tracking is established, and from the moment its connection is lost until it is back,
  the near cache holds nothing and every read goes to the store (:meth:`NearCache.tracking_lost`).
* **A read in flight does not resurrect an old value.** A miss notes the sequence number
  of changes before it asks the store; if an invalidation (or this process's own write) of
  that key came meanwhile, the answer is returned but not kept. A loss of tracking
  meanwhile does the same for every read (a new *generation*).
* **Own writes.** Every write through the binding (``set``, ``delete``, ``incr``,
  ``expire``, ``clear`` ...) drops the keys it touched here once the store answered, so
  this process reads its own writes at once.
* **Stores without invalidation** (memcached, Infinispan, custom providers): entries live
  at most ``ttl`` seconds, so another process's write is seen within ``ttl``; off unless
  the host sets ``enabled: true`` and a ``ttl``.
* **Exact operations bypass it:** ``incr``/``decr``, counters, rate limits and locks read
  and write the store itself.

Entries are kept encoded (the store's bytes): each hit decodes a fresh value, so a caller
mutating what it got cannot change what the next caller gets. The tier is bounded by
``maxEntries`` and ``maxBytes`` (least recently used first; an entry is charged what the
memory store charges, :func:`cachekit.stores.memory.entry_size`) and by ``ttl``. A plugin
whose ``nearCache`` sets ``maxEntries`` or ``maxBytes`` gets a region of its own, so one
plugin's churn cannot push out another's hot entries.

Hits, misses, evictions and invalidations are counted per scope on the scope's metrics row
(``near_hits`` ... in :meth:`CacheManager.stats <cachekit.host.CacheManager.stats>`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING, Any, Final, Protocol

from cachekit.errors import ConfigError
from cachekit.keys import KeySelector
from cachekit.stores.memory import entry_size

if TYPE_CHECKING:
    from cachekit.config import CacheConfig
    from cachekit.config.schema import NearCacheConfig
    from cachekit.metrics import OpStats, StatsRow

__all__ = [
    "COUNTERS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_TTL",
    "REPORT_INTERVAL",
    "REPORT_PLUGIN",
    "TRACKED_STORES",
    "InvalidationSink",
    "NearCache",
    "NearSettings",
    "Region",
    "encode_report",
    "merge_reports",
    "near_settings",
]

DEFAULT_TTL: Final = 60.0
"""Seconds an entry may be served from process memory on Redis and Valkey, unless
``nearCache.ttl`` says otherwise (the invalidations keep it correct before that)."""
DEFAULT_MAX_ENTRIES: Final = 10_000
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
TRACKED_STORES: Final = frozenset({"redis", "valkey"})
"""Stores whose server tells the near cache of every change (client tracking)."""

REPORT_PLUGIN: Final = "cachekit-near"
"""The reserved plugin scope where each process reports its near-cache counters (on
stores ``cachekit stats`` can scan: Redis and Valkey)."""
REPORT_INTERVAL: Final = 10.0
"""Seconds between two reports of a process; a report lives three intervals."""

log = logging.getLogger("cachekit")

_LARGEST_SHARE: Final = 16
"""An entry over ``maxBytes / 16`` is not kept: it would push out many hot ones."""


class InvalidationSink(Protocol):
    """What a tracker tells the near cache (:mod:`cachekit.stores.redis.tracking`);
    ``source`` names a server node (``host:port``)."""

    def tracking_lost(self, source: str) -> None:
        """``source``'s invalidations stopped: drop everything, read from the store."""
        ...

    def tracking_established(self, source: str) -> None:
        """``source``'s invalidations flow again."""
        ...

    def tracking_removed(self, source: str) -> None:
        """``source`` left (a cluster node forgotten or failed): stop waiting for it."""
        ...

    def invalidate(self, keys: Sequence[str]) -> None:
        """These full keys changed (written, deleted, expired or evicted)."""
        ...

    def invalidate_all(self) -> None:
        """The server dropped all its data (``FLUSHDB``/``FLUSHALL``)."""
        ...


@dataclass(frozen=True, slots=True)
class NearSettings:
    """A near cache's effective settings (``nearCache`` with the store's defaults)."""

    max_entries: int | None
    max_bytes: int | None
    ttl: float
    tracked: bool
    """Kept correct by the server's invalidations (else by ``ttl`` alone)."""

    def describe(self) -> str:
        """For the start-up log line: ``near cache 10000 entries, 64 MiB, ttl 60s,
        invalidated by the server``."""
        entries = "unbounded" if self.max_entries is None else f"{self.max_entries} entries"
        size = "unbounded" if self.max_bytes is None else f"{self.max_bytes / 2**20:g} MiB"
        how = "invalidated by the server" if self.tracked else "bounded by ttl only"
        return f"near cache {entries}, {size}, ttl {self.ttl:g}s, {how}"


def near_settings(config: CacheConfig, path: str = "backend.cache") -> NearSettings | None:
    """The effective near-cache settings of a binding's section, or ``None`` when it has
    no near cache.

    :raises ConfigError: ``nearCache`` is enabled on the memory store (already in
        process), or on a store without invalidation without a ``ttl``.
    """
    section = config.near_cache
    if section is None or section.enabled is False:
        return None
    tracked = config.store in TRACKED_STORES
    where = f"{path}.nearCache"
    if config.store == "memory":
        if section.enabled:
            raise ConfigError(
                "the memory store already lives in this process: a near cache in front of "
                "it only costs memory; remove nearCache (or use a shared store)",
                path=where,
            )
        return None
    if not tracked:
        if not section.enabled:
            return None  # off by default where nothing invalidates it
        if section.ttl is None:
            raise ConfigError(
                f"the {config.store} store cannot tell this process of other processes' "
                "writes, so a near cache in front of it serves what it holds for up to "
                "its ttl: set nearCache.ttl to the staleness you accept (e.g. 1s)",
                path=f"{where}.ttl",
            )
    return NearSettings(
        max_entries=DEFAULT_MAX_ENTRIES if section.max_entries is None else section.max_entries,
        max_bytes=DEFAULT_MAX_BYTES if section.max_bytes is None else section.max_bytes,
        ttl=DEFAULT_TTL if section.ttl is None else section.ttl,
        tracked=tracked,
    )


COUNTERS: Final = ("near_hits", "near_misses", "near_evictions", "near_invalidations")
"""The near-cache counters of a metrics row (:class:`~cachekit.metrics.StatsRow`)."""


def encode_report(rows: Iterable[StatsRow]) -> bytes | None:
    """A process's report of its near-cache counters (JSON), from its metrics rows;
    ``None`` when no row has any."""
    entries = [
        {
            "binding": row.binding,
            "plugin": row.plugin,
            "tenant": row.tenant,
            "namespace": row.namespace,
            **{name: getattr(row, name) for name in COUNTERS},
        }
        for row in rows
        if any(getattr(row, name) for name in COUNTERS)
    ]
    return json.dumps(entries, separators=(",", ":")).encode() if entries else None


def merge_reports(reports: Iterable[bytes]) -> list[dict[str, Any]]:
    """The counters of several processes' reports, summed per (binding, plugin, tenant,
    namespace), each with ``processes``: how many reported it. An unreadable report (not
    cachekit's) is skipped."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for raw in reports:
        try:
            entries = json.loads(raw)
            rows = [e for e in entries if isinstance(e, dict)]
            for entry in rows:
                key = tuple(entry.get(k) for k in ("binding", "plugin", "tenant", "namespace"))
                total = merged.setdefault(
                    key,
                    dict(zip(("binding", "plugin", "tenant", "namespace"), key, strict=True))
                    | dict.fromkeys(COUNTERS, 0)
                    | {"processes": 0},
                )
                for name in COUNTERS:
                    total[name] += int(entry.get(name, 0))
                total["processes"] += 1
        except (ValueError, TypeError):
            continue
    return sorted(merged.values(), key=lambda r: tuple(str(r[k] or "") for k in r))


class _Entry:
    """A held value: its bytes, when it stops being served, what it costs, and the
    metrics row of the scope that read it (evictions and invalidations count there)."""

    __slots__ = ("expires", "size", "stats", "value")

    def __init__(self, value: bytes, expires: float, size: int, stats: OpStats | None) -> None:
        self.value = value
        self.expires = expires
        self.size = size
        self.stats = stats


class Region:
    """One least-recently-used table of a near cache, bounded by entries and bytes (the
    binding's, or a plugin's own). Its ``entries`` are read without a lock on the hit
    path (single dictionary operations, atomic under the GIL); every change happens under
    the near cache's lock."""

    __slots__ = ("bytes", "entries", "largest", "max_bytes", "max_entries", "name")

    def __init__(self, name: str, max_entries: int | None, max_bytes: int | None) -> None:
        self.name = name
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.largest = None if max_bytes is None else max_bytes // _LARGEST_SHARE
        self.entries: OrderedDict[str, _Entry] = OrderedDict()
        self.bytes = 0

    def __repr__(self) -> str:
        return (
            f"Region({self.name!r}, entries={len(self.entries)}/{self.max_entries}, "
            f"bytes={self.bytes}/{self.max_bytes})"
        )

    # put, pop and clear: the caller holds the near cache's lock

    def put(self, key: str, entry: _Entry) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        self.entries[key] = entry
        self.bytes += entry.size
        entries = self.entries
        while (self.max_entries is not None and len(entries) > self.max_entries) or (
            self.max_bytes is not None and self.bytes > self.max_bytes
        ):
            _, evicted = entries.popitem(last=False)
            self.bytes -= evicted.size
            if evicted.stats is not None:
                evicted.stats.near_evictions += 1

    def pop(self, key: str) -> _Entry | None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry.size
        return entry

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0


Ticket = tuple[int, int]
"""Reads in flight: the change sequence number and the generation when they began."""

_REMEMBERED: Final = 4096
"""Changed keys remembered for the reads in flight (a read that began before the oldest
one remembered is not kept: at 40,000 changes a second that is a read over 0.1 s old)."""

_LIVE: weakref.WeakSet[NearCache] = weakref.WeakSet()


class NearCache:
    """The process-memory tier of one binding: its regions, the reads in flight, and
    whether it may serve (see the module docstring). Thread safe; the hit path takes no
    lock.

    :param settings: the binding's effective settings (:func:`near_settings`).
    :param start_tracking: called (without arguments) when the near cache is first used,
        and again after a fork or :meth:`close`: starts what feeds this sink the server's
        invalidations and returns its stopper (``None``: nothing can, and a tracked near
        cache then never serves). Not used when ``settings.tracked`` is false.
    :param clock: monotonic seconds (tests inject one).
    """

    def __init__(
        self,
        settings: NearSettings,
        *,
        start_tracking: Callable[[NearCache], Callable[[], None] | None] | None = None,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.shared = Region("shared", settings.max_entries, settings.max_bytes)
        self._regions: dict[str, Region] = {}  # plugin -> its own region
        self._all: tuple[Region, ...] = (self.shared,)
        self._seq = 0  # changes seen (drops and invalidations), one per key
        self._changed: OrderedDict[str, int] = OrderedDict()  # key -> its last change's _seq
        self._floor = 0  # the newest _seq forgotten from _changed
        self._lock = threading.Lock()
        self._generation = 0
        self.ticket: Ticket = (0, 0)
        """What :meth:`begin` returns while live: (changes seen, generation)."""
        self._start_tracking = start_tracking
        self._stop_tracking: Callable[[], None] | None = None
        self._started = not settings.tracked  # an untracked cache needs no tracker
        self._start_failed = False  # the failure to start tracking was logged
        self._down: set[str] = set()  # sources whose invalidations are not flowing
        self._up: set[str] = set()  # sources whose invalidations are
        self.live = not settings.tracked
        """Whether entries may be served and kept (read without a lock on the hit path)."""
        self.invalidations = 0
        """Invalidation messages applied (every key, held or not)."""
        _LIVE.add(self)

    def __repr__(self) -> str:
        held = sum(len(region.entries) for region in self._all)
        down = ",".join(sorted(self._down))
        state = "live" if self.live else (f"down {down}" if down else "idle")
        return (
            f"NearCache({self.settings.describe()}, held={held}, "
            f"invalidations={self.invalidations}, {state})"
        )

    # --- regions -------------------------------------------------------------------------

    def region(self, plugin: str, override: NearCacheConfig | None) -> Region | None:
        """The region a plugin's reads fill, or ``None`` when its near cache is off
        (``plugins.<id>.nearCache``: ``enabled: false``). Its own ``maxEntries`` or
        ``maxBytes`` give it a region of its own, bounded on top of the binding's; its
        own ``ttl`` alone is the view's (:meth:`ttl`)."""
        if override is None or (override.max_entries is None and override.max_bytes is None):
            return None if override is not None and override.enabled is False else self.shared
        if override.enabled is False:
            return None
        region = self._regions.get(plugin)
        if region is None:
            with self._lock:
                region = self._regions.get(plugin)
                if region is None:
                    s = self.settings
                    region = self._regions[plugin] = Region(
                        plugin,
                        s.max_entries if override.max_entries is None else override.max_entries,
                        s.max_bytes if override.max_bytes is None else override.max_bytes,
                    )
                    self._all = (*self._all, region)
        return region

    def ttl(self, override: NearCacheConfig | None) -> float:
        """How long a plugin's entries are served: its own ``ttl``, else the binding's."""
        return self.settings.ttl if override is None or override.ttl is None else override.ttl

    # --- reads ---------------------------------------------------------------------------

    def begin(self) -> Ticket | None:
        """Note that reads are about to go to the store (no lock, nothing allocated):
        :attr:`ticket`, or ``None`` when nothing may be kept now (not live: tracking is
        not established; this starts it on first use). A ticket read just before a change
        is older than the change: the read is then not kept (never the other way round)."""
        if not self.live:
            self._ensure_tracking()
            return None
        return self.ticket

    def _next_generation(self) -> None:
        """Start a new generation (the caller holds the lock): no read begun before is kept."""
        self._generation += 1
        self.ticket = (self._seq, self._generation)

    def keep(
        self,
        ticket: Ticket,
        key: str,
        value: bytes | None,
        region: Region,
        ttl: float,
        stats: OpStats | None,
    ) -> None:
        """Keep what the store answered for ``key`` to a read :meth:`begin` noted, in
        ``region`` for ``ttl`` seconds, unless the key changed (or tracking was lost)
        since it began (``value`` ``None``: a miss or a failed read, nothing to keep)."""
        if value is None or (region.largest is not None and len(value) > region.largest):
            return
        seq, generation = ticket
        entry = _Entry(value, self.clock() + ttl, entry_size(key, value, True), stats)
        with self._lock:
            if generation != self._generation or not self.live:
                return
            if seq != self._seq and (seq < self._floor or self._changed.get(key, -1) > seq):
                return  # changed meanwhile (or too long ago to tell)
            region.put(key, entry)

    def expired(self, key: str, region: Region, entry: _Entry) -> None:
        """Drop ``entry``, found past its ttl (counted as an eviction)."""
        with self._lock:
            if region.entries.get(key) is entry:
                region.pop(key)
                if entry.stats is not None:
                    entry.stats.near_evictions += 1

    # --- changes ---------------------------------------------------------------------------

    def drop(self, keys: Iterable[str]) -> None:
        """This process wrote ``keys`` (the store answered): forget them, and keep no
        read of them that is in flight."""
        self._forget(keys)

    def invalidate(self, keys: Sequence[str]) -> None:
        """The server says ``keys`` changed (:class:`InvalidationSink`)."""
        self._forget(keys)
        self.invalidations += 1

    def _forget(self, keys: Iterable[str]) -> None:
        regions, changed = self._all, self._changed
        with self._lock:
            for key in keys:
                self._seq += 1
                changed.pop(key, None)
                changed[key] = self._seq
                for region in regions:
                    entry = region.pop(key)
                    if entry is not None and entry.stats is not None:
                        entry.stats.near_invalidations += 1
            while len(changed) > _REMEMBERED:
                self._floor = changed.popitem(last=False)[1]
            self.ticket = (self._seq, self._generation)

    def invalidate_all(self) -> None:
        """The server dropped its data: forget everything (:class:`InvalidationSink`)."""
        self.flush()
        self.invalidations += 1

    def clear(self, selector: KeySelector) -> None:
        """Forget every entry of the scopes ``selector`` selects (a scoped ``clear``),
        and keep no read in flight."""
        with self._lock:
            self._next_generation()
            for region in self._all:
                for key in [k for k in region.entries if selector.matches(k)]:
                    entry = region.pop(key)
                    if entry is not None and entry.stats is not None:
                        entry.stats.near_invalidations += 1

    def flush(self) -> None:
        """Forget every entry and every read in flight."""
        with self._lock:
            self._next_generation()
            for region in self._all:
                region.clear()

    # --- tracking (InvalidationSink) ---------------------------------------------------------

    def tracking_lost(self, source: str) -> None:
        """Stop serving and keeping entries until ``source`` is established again."""
        with self._lock:
            self._down.add(source)
            self._up.discard(source)
            self.live = False
            self._next_generation()
            for region in self._all:
                region.clear()

    def tracking_established(self, source: str) -> None:
        """``source``'s invalidations flow: serve again once every source known is
        established (a tracker declares each source lost before it connects)."""
        with self._lock:
            self._down.discard(source)
            self._up.add(source)
            if not self._down and self._started and self._stop_tracking is not None:
                self._next_generation()  # reads begun before this point are not kept
                self.live = True

    def tracking_removed(self, source: str) -> None:
        """``source`` left the deployment (its keys now live on sources still tracked):
        forget it, flushing once more (what it served may have moved meanwhile)."""
        with self._lock:
            self._down.discard(source)
            self._up.discard(source)
            self._next_generation()
            for region in self._all:
                region.clear()
            if not self._down and self._up and self._stop_tracking is not None:
                self.live = True

    def _ensure_tracking(self) -> None:
        """Start the tracker on first use (and after a fork or :meth:`close`)."""
        if self._started or self._start_tracking is None:
            return
        with self._lock:
            if self._started:
                return
            self._started = True
        try:
            stop = self._start_tracking(self)
        except Exception as exc:  # a read must not fail for it: read the store, retry later
            with self._lock:
                self._started = False
            if not self._start_failed:
                self._start_failed = True
                log.warning(
                    "cachekit: the near cache cannot start tracking (%s): reads go to "
                    "the store until it can",
                    exc,
                )
            return
        self._start_failed = False
        with self._lock:
            self._stop_tracking = stop
            if stop is not None and self._up and not self._down:  # established meanwhile
                self._next_generation()
                self.live = True

    def close(self) -> None:
        """Stop tracking and forget everything; the next read starts tracking again."""
        with self._lock:
            stop, self._stop_tracking = self._stop_tracking, None
            self._started = not self.settings.tracked
            self.live = self._started
        if stop is not None:
            stop()
        with self._lock:
            self._down.clear()
            self._up.clear()
        self.flush()

    def after_fork(self) -> None:
        """In a forked child: the parent's tracker is not ours; start afresh."""
        self._lock = threading.Lock()
        self._stop_tracking = None
        self._down.clear()
        self._up.clear()
        self._started = not self.settings.tracked
        self.live = self._started
        self._next_generation()
        for region in self._all:
            region.clear()


def _after_fork_in_child() -> None:
    for near in list(_LIVE):
        near.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
