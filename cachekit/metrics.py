"""In-process metrics: hits, misses, sets, deletes, errors and store latency per
(plugin, namespace, store) — and per tenant when ``backend.cache.metrics.perTenant`` is on.

Every :class:`~cachekit.Cache` holds the :class:`OpStats` of its scope and bumps plain
integer attributes on it: no lock, no allocation, a few tens of nanoseconds per call. Under
heavy thread contention an increment can very rarely be lost (``+=`` on an attribute is
not atomic); the numbers are for dashboards, not for billing. Latency is timed only for
stores that do I/O (``store.blocking``); an in-process store's latency is not worth the
clock reads.

Tenants are not a dimension by default: a host with thousands of tenants would otherwise
export thousands of series (see :mod:`cachekit.contrib.prometheus`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["Metrics", "OpStats", "StatsRow"]


class OpStats:
    """Mutable counters of one (plugin, tenant-or-None, namespace, store)."""

    __slots__ = ("deletes", "errors", "hits", "latency", "misses", "sets", "timed")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.sets = 0
        self.deletes = 0
        self.errors = 0
        self.latency = 0.0  # seconds spent in store calls that were timed
        self.timed = 0

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

    @property
    def hit_ratio(self) -> float | None:
        """``hits / (hits + misses)``, or ``None`` before any read."""
        reads = self.hits + self.misses
        return self.hits / reads if reads else None


_Key = tuple[str, str | None, str | None, str]


class Metrics:
    """The counters of one manager's caches.

    :param per_tenant: count each tenant separately (more series; off by default).
    """

    __slots__ = ("_lock", "_slots", "per_tenant")

    def __init__(self, *, per_tenant: bool = False) -> None:
        self.per_tenant = per_tenant
        self._slots: dict[_Key, OpStats] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Metrics(per_tenant={self.per_tenant}, scopes={len(self._slots)})"

    def slot(self, plugin: str, tenant: str | None, namespace: str | None, store: str) -> OpStats:
        """The counters a cache of this scope bumps (shared by every cache of the scope)."""
        key = (plugin, tenant if self.per_tenant else None, namespace, store)
        stats = self._slots.get(key)
        if stats is None:
            with self._lock:
                stats = self._slots.setdefault(key, OpStats())
        return stats

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
            )
            for (plugin, tenant, namespace, store), s in items
        ]
        return sorted(rows, key=lambda r: (r.plugin, r.namespace or "", r.tenant or "", r.store))

    def reset(self) -> None:
        """Zero every counter (caches keep their slots)."""
        with self._lock:
            for stats in self._slots.values():
                stats.__init__()  # type: ignore[misc]
