"""In-process metrics: hits, misses, sets, deletes, errors, store latency and policy
violations per (plugin, namespace, store) — and per tenant when
``backend.cache.metrics.perTenant`` is on.

Every :class:`~cachekit.Cache` holds the :class:`OpStats` of its scope and bumps plain
integer attributes on it: no lock, no allocation, a few tens of nanoseconds per call. Under
heavy thread contention an increment can very rarely be lost (``+=`` on an attribute is
not atomic); the numbers are for dashboards, not for billing. Latency is timed only for
stores that do I/O (``store.blocking``); an in-process store's latency is not worth the
clock reads.

Tenants are not a dimension by default: a host with thousands of tenants would otherwise
export thousands of series (see :mod:`cachekit.contrib.prometheus`).

The rows are bounded: ids can come from requests (``path_segment`` without ``known=``, a
tenant header), and a row per id would grow memory and the exported series without end.
Past ``max_series`` rows (``backend.cache.metrics.maxSeries``), a new scope is counted in
one shared row per store whose plugin, namespace and tenant (when counted) are
:data:`OTHER`; one warning is logged the first time. The scopes seen first keep their rows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = ["DEFAULT_MAX_SERIES", "OTHER", "Metrics", "OpStats", "StatsRow"]

OTHER: Final = "other"
"""The plugin, namespace and tenant of the row that counts the scopes past the cap."""

DEFAULT_MAX_SERIES: Final = 1000
"""Rows kept apart by default: a few hundred plugins x namespaces, with room to spare."""

_log = logging.getLogger(__name__)


class OpStats:
    """Mutable counters of one (plugin, tenant-or-None, namespace, store)."""

    __slots__ = (
        "deletes",
        "errors",
        "hits",
        "latency",
        "misses",
        "near_evictions",
        "near_hits",
        "near_invalidations",
        "near_misses",
        "sets",
        "timed",
        "violations",
    )

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.near_hits = 0  # reads the near cache served (cachekit.near); part of hits
        self.near_misses = 0  # reads through the near cache that went to the store
        self.near_evictions = 0  # held entries dropped for room or past their ttl
        self.near_invalidations = 0  # held entries dropped because the key changed
        self.sets = 0
        self.deletes = 0
        self.errors = 0
        self.latency = 0.0  # seconds spent in store calls that were timed
        self.timed = 0
        self.violations: dict[str, int] = {}  # policy limit -> times (cachekit.policy)

    def __repr__(self) -> str:
        return (
            f"OpStats(hits={self.hits}, misses={self.misses}, sets={self.sets}, "
            f"deletes={self.deletes}, errors={self.errors})"
        )


@dataclass(frozen=True, slots=True)
class StatsRow:
    """A snapshot of one scope's counters (see :meth:`CacheManager.stats`)."""

    plugin: str
    namespace: str | None
    store: str
    tenant: str | None
    hits: int
    misses: int
    sets: int
    deletes: int
    errors: int
    latency_seconds: float
    timed_calls: int
    policy_violations: Mapping[str, int] = field(default_factory=dict, hash=False)
    """Calls the plugin's policy refused or cut, by limit (``maxTtl``, ``maxValueBytes``,
    ``operations``; see :mod:`cachekit.policy`); only limits that were hit appear."""
    binding: str = "default"
    """The binding whose store served these calls (``backend.cache.bindings``)."""
    near_hits: int = 0
    """Reads the binding's near cache served from process memory (part of ``hits``)."""
    near_misses: int = 0
    """Reads through the near cache that went to the store."""
    near_evictions: int = 0
    """Entries the near cache dropped for room (``maxEntries``/``maxBytes``) or ttl."""
    near_invalidations: int = 0
    """Entries the near cache dropped because their key changed (a write anywhere, a
    ``clear``, an expiry in the store)."""

    @property
    def hit_ratio(self) -> float | None:
        """``hits / (hits + misses)``, or ``None`` before any read."""
        reads = self.hits + self.misses
        return self.hits / reads if reads else None


_Key = tuple[str, str | None, str | None, str]


class Metrics:
    """The counters of one manager's caches.

    :param per_tenant: count each tenant separately (more series; off by default).
    :param max_series: most rows kept apart; scopes beyond share an :data:`OTHER` row per
        store.
    :param binding: the binding these caches belong to (its rows' ``binding``).
    :raises ValueError: ``max_series`` is not a positive int.
    """

    __slots__ = ("_lock", "_slots", "_warned", "binding", "max_series", "per_tenant")

    def __init__(
        self,
        *,
        per_tenant: bool = False,
        max_series: int = DEFAULT_MAX_SERIES,
        binding: str = "default",
    ) -> None:
        if type(max_series) is not int or max_series < 1:
            raise ValueError(f"max_series must be a positive int, got {max_series!r}")
        self.binding = binding
        self.per_tenant = per_tenant
        self.max_series = max_series
        self._slots: dict[_Key, OpStats] = {}
        self._lock = threading.Lock()
        self._warned = False

    def __repr__(self) -> str:
        return (
            f"Metrics(per_tenant={self.per_tenant}, scopes={len(self._slots)}, "
            f"max_series={self.max_series})"
        )

    def slot(self, plugin: str, tenant: str | None, namespace: str | None, store: str) -> OpStats:
        """The counters a cache of this scope bumps (shared by every cache of the scope;
        the :data:`OTHER` row's once ``max_series`` rows exist). A cache looks its slot up
        once, when it is built."""
        key = (plugin, tenant if self.per_tenant else None, namespace, store)
        stats = self._slots.get(key)
        if stats is None:
            stats = self._new_slot(key)
        return stats

    def _new_slot(self, key: _Key) -> OpStats:
        with self._lock:
            stats = self._slots.get(key)
            if stats is not None:
                return stats
            if len(self._slots) >= self.max_series:
                key = (OTHER, OTHER if self.per_tenant else None, OTHER, key[3])
                stats = self._slots.get(key)
                if stats is not None:
                    return stats
                self._warn_full()
            stats = self._slots[key] = OpStats()
            return stats

    def _warn_full(self) -> None:
        if self._warned:
            return
        self._warned = True
        _log.warning(
            "cachekit metrics: %d rows reached (backend.cache.metrics.maxSeries); scopes "
            "seen from now on are counted under plugin, namespace%s %r. Raise maxSeries, or "
            "resolve plugin ids from a known set (path_segment(..., known=...))",
            self.max_series,
            " and tenant" if self.per_tenant else "",
            OTHER,
        )

    def snapshot(self) -> list[StatsRow]:
        """Every scope's counters, sorted by plugin, namespace, tenant and store."""
        with self._lock:
            items = list(self._slots.items())
        rows = [
            StatsRow(
                plugin=plugin,
                namespace=namespace,
                store=store,
                tenant=tenant,
                hits=s.hits,
                misses=s.misses,
                sets=s.sets,
                deletes=s.deletes,
                errors=s.errors,
                latency_seconds=s.latency,
                timed_calls=s.timed,
                policy_violations=dict(s.violations),
                binding=self.binding,
                near_hits=s.near_hits,
                near_misses=s.near_misses,
                near_evictions=s.near_evictions,
                near_invalidations=s.near_invalidations,
            )
            for (plugin, tenant, namespace, store), s in items
        ]
        return sorted(rows, key=lambda r: (r.plugin, r.namespace or "", r.tenant or "", r.store))

    def reset(self) -> None:
        """Zero every counter (caches keep their slots)."""
        with self._lock:
            for stats in self._slots.values():
                stats.__init__()  # type: ignore[misc]
