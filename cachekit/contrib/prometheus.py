"""Export a manager's in-process cache metrics to Prometheus (extra ``prometheus``).

::

    from prometheus_client import start_http_server
    from cachekit.contrib.prometheus import register

    register(manager)          # into prometheus_client's default REGISTRY
    start_http_server(9100)    # or mount prometheus_client.make_asgi_app()

Each scrape reads :meth:`CacheManager.stats() <cachekit.host.CacheManager.stats>` (nothing is
counted twice and nothing runs between scrapes) and exports, labelled ``plugin``,
``namespace`` (empty: the default namespace) and ``store``:

=================================  ======================================================
``cachekit_hits_total``            reads that found a value
``cachekit_misses_total``          reads that found nothing
``cachekit_sets_total``            writes
``cachekit_deletes_total``         deletes
``cachekit_errors_total``          store calls that failed
``cachekit_store_latency_seconds`` summary (``_count``, ``_sum``) of the time spent in
                                   store calls; network stores only
``cachekit_near_hits_total``       reads a binding's near cache served (:mod:`cachekit.near`;
                                   these four only when a binding has ``nearCache``)
``cachekit_near_misses_total``     reads through the near cache that went to the store
``cachekit_near_evictions_total``  near-cache entries dropped for room or past their ttl
``cachekit_near_invalidations_total`` near-cache entries dropped because their key changed
``cachekit_policy_violations_total`` calls the plugin's policy refused or cut, with a
                                   ``reason`` label: the limit (``maxTtl``,
                                   ``maxValueBytes``, ``operations``; see
                                   :mod:`cachekit.policy`)
=================================  ======================================================

Tenants are not a label unless the manager counts per tenant
(``backend.cache.metrics.perTenant: true``): a host with thousands of tenants would export
thousands of series per metric. When it does, a ``tenant`` label is added (empty: the
platform scope). A manager with named bindings (``backend.cache.bindings``) adds a
``binding`` label (``default``: ``backend.cache`` itself); one without keeps its series as
they were.

The series are bounded: past ``backend.cache.metrics.maxSeries`` scopes (default 1000), new
ones are exported under ``plugin="other"``, ``namespace="other"`` (and ``tenant="other"``),
one series per store (see :mod:`cachekit.metrics`), so ids taken from requests cannot grow
a scrape without end.
"""

from __future__ import annotations

from collections.abc import Iterator

try:
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        Metric,
        SummaryMetricFamily,
    )
    from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "cachekit.contrib.prometheus needs prometheus-client: pip install 'cachekit[prometheus]'"
    ) from None

from cachekit.manager import CacheManager
from cachekit.metrics import StatsRow

__all__ = ["CacheCollector", "register"]

_COUNTERS = (
    ("hits", "Cache reads that found a value."),
    ("misses", "Cache reads that found nothing."),
    ("sets", "Cache writes."),
    ("deletes", "Cache deletes."),
    ("errors", "Cache store calls that failed."),
)
_NEAR = (
    ("near_hits", "Cache reads the near cache served from process memory."),
    ("near_misses", "Cache reads through the near cache that went to the store."),
    ("near_evictions", "Near-cache entries dropped for room or past their ttl."),
    ("near_invalidations", "Near-cache entries dropped because their key changed."),
)
_VIOLATIONS = "policy_violations"
_VIOLATIONS_HELP = "Cache calls the plugin's policy refused or cut, by limit."
_LATENCY = "store_latency_seconds"
_LATENCY_HELP = "Time spent in store calls (network stores only)."


class CacheCollector(Collector):
    """A Prometheus collector over one manager's :meth:`~cachekit.host.CacheManager.stats`.

    :param manager: the manager whose caches are counted.
    :param prefix: the metric name prefix.
    """

    def __init__(self, manager: CacheManager, *, prefix: str = "cachekit") -> None:
        self.manager = manager
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"CacheCollector({self.manager!r}, prefix={self.prefix!r})"

    @property
    def labels(self) -> list[str]:
        """The label names: ``plugin``, ``namespace``, ``store``, ``tenant`` when the
        manager counts per tenant, and ``binding`` when it has named bindings."""
        names = ["plugin", "namespace", "store"]
        if self.manager.metrics.per_tenant:
            names.append("tenant")
        if len(self.manager.bindings) > 1:
            names.append("binding")
        return names

    @property
    def _counters(self) -> tuple[tuple[str, str], ...]:
        """The counters exported: the ``near_*`` ones too when a binding has a near cache."""
        near = any(b.near is not None for b in self.manager.bindings.values())
        return (*_COUNTERS, *_NEAR) if near else _COUNTERS

    def _families(
        self,
    ) -> tuple[list[CounterMetricFamily], SummaryMetricFamily, CounterMetricFamily]:
        labels = self.labels
        counters = [
            CounterMetricFamily(f"{self.prefix}_{name}", help_text, labels=labels)
            for name, help_text in self._counters
        ]
        latency = SummaryMetricFamily(f"{self.prefix}_{_LATENCY}", _LATENCY_HELP, labels=labels)
        violations = CounterMetricFamily(
            f"{self.prefix}_{_VIOLATIONS}", _VIOLATIONS_HELP, labels=[*labels, "reason"]
        )
        return counters, latency, violations

    def describe(self) -> list[Metric]:
        """The metric families, without samples (lets a registry detect name clashes
        without reading the counters)."""
        counters, latency, violations = self._families()
        return [*counters, latency, violations]

    def collect(self) -> Iterator[Metric]:
        """One sample per scope and metric, read from ``manager.stats()``."""
        counters, latency, violations = self._families()
        per_tenant = self.manager.metrics.per_tenant
        per_binding = len(self.manager.bindings) > 1
        for row in self.manager.stats():
            values = _label_values(row, per_tenant, per_binding)
            for family, (name, _) in zip(counters, self._counters, strict=True):
                family.add_metric(values, getattr(row, name))
            if row.timed_calls:
                latency.add_metric(values, row.timed_calls, row.latency_seconds)
            for reason, count in sorted(row.policy_violations.items()):
                violations.add_metric([*values, reason], count)
        yield from counters
        yield latency
        yield violations


def _label_values(row: StatsRow, per_tenant: bool, per_binding: bool) -> list[str]:
    values = [row.plugin, row.namespace or "", row.store]
    if per_tenant:
        values.append(row.tenant or "")
    if per_binding:
        values.append(row.binding)
    return values


def register(
    manager: CacheManager, registry: CollectorRegistry = REGISTRY, *, prefix: str = "cachekit"
) -> CacheCollector:
    """Export ``manager``'s cache metrics through ``registry`` (default: prometheus_client's
    global one); returns the collector (``registry.unregister(collector)`` removes it).

    :param prefix: the metric name prefix (another one lets a second manager share the
        registry).
    :raises ValueError: the registry already has metrics of these names.
    """
    collector = CacheCollector(manager, prefix=prefix)
    registry.register(collector)
    return collector
