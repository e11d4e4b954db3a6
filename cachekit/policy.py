"""Per-plugin policy: what a plugin's :class:`~cachekit.Cache` may do with the store.

The host sets limits in config (:mod:`cachekit.config.policy`): ``enabled``,
``defaultTtl``, ``maxTtl``, ``maxValueBytes``, ``operations`` and ``failOpen``, per plugin
under ``backend.cache.plugins.<id>`` with defaults under ``pluginDefaults``, and per tenant
under ``backend.cache.tenants.<id>``. :func:`resolve` works out the effective
:class:`Policy` of one (plugin, tenant) scope, once, when the manager builds its cache;
the cache then enforces it with pieces chosen at that moment (:meth:`Policy.enforce`), so
a read pays nothing for it:

* ``enabled: false``: the cache's store is a do-nothing view (every read a miss, writes
  dropped, ``incr`` answers as if the key were new), so ``@cached`` computes every time.
* ``operations``: the groups of :data:`METHODS` not listed raise
  :class:`~cachekit.errors.CachePolicyError` when called, before any I/O (the view holds a
  refusing function in their place; allowed methods are the store's own bound methods).
* ``maxTtl``: a longer TTL, or none (``ttl=0``), is cut to ``maxTtl``, counted as a
  ``maxTtl`` violation; the default TTL is bounded by it too (not counted).
* ``maxValueBytes`` (default :data:`DEFAULT_MAX_VALUE_BYTES`, memcached's item limit, so
  what works on the memory store in development works on memcached; on memcached,
  ``memcache.maxValueSize``): a larger encoded value raises
  :class:`~cachekit.errors.ValueTooLarge` (a ``CacheValueError``) before anything is
  written.

Where a tenant sets limits too, the stricter of the two applies: disabled wins, the
shorter TTLs and the smaller size, the operations both allow, ``failOpen: false``.
Violations are counted per cache row (``StatsRow.policy_violations``, by limit).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, NoReturn, cast

from cachekit import gcra
from cachekit.config.policy import (
    OPERATIONS,
    LimitsConfig,
    PolicyConfig,
    check_known_plugins,
)
from cachekit.config.schema import DEFAULT_BINDING, NearCacheConfig
from cachekit.durations import TTL, store_ttl
from cachekit.errors import CachePolicyError, ValueTooLarge

if TYPE_CHECKING:
    from cachekit.config import CacheConfig
    from cachekit.metrics import OpStats
    from cachekit.stores.base import Store

__all__ = [
    "DEFAULT_MAX_VALUE_BYTES",
    "METHODS",
    "Policy",
    "PolicyStore",
    "check_plugins",
    "configured",
    "default_max_value_bytes",
    "resolve",
]

log = logging.getLogger("cachekit")

DEFAULT_MAX_VALUE_BYTES: Final = 1024 * 1024
"""``maxValueBytes`` when nothing sets it (on every store but memcached, which uses its
``memcache.maxValueSize``): memcached's default item size (``-I 1m``), so a value that
fits in development fits a default memcached in production."""

METHODS: Final[dict[str, tuple[str, ...]]] = {
    "read": ("get", "get_many", "get_values"),
    "write": ("set", "set_many", "add"),
    "delete": ("delete", "delete_many", "delete_if_equals"),
    "count": ("incr", "gcra"),
    "expire": ("expire", "touch"),
    "clear": ("clear",),
}
"""The store methods (and their ``a``-prefixed twins) each operation group covers. The
``Cache`` methods follow: ``get_or_set`` needs ``read`` and ``write``, ``decr`` and
counters ``count``, rate limits ``count`` (GCRA too), ``@cached(lock=True)`` ``write``
and ``delete``."""


_ALL: Final = frozenset(OPERATIONS)


def _shorter(a: float, b: float) -> float:
    """The shorter of two TTLs, ``0`` being no expiry."""
    return min(a, b, key=lambda ttl: ttl or float("inf"))


_STRICTER: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "enabled": lambda a, b: a and b,
    "default_ttl": _shorter,
    "max_ttl": min,
    "max_value_bytes": min,
    "operations": lambda a, b: a & b,
    "fail_open": lambda a, b: a and b,
    "bindings": lambda a, b: a & b,
    "near_cache": lambda a, b: _near_off(a, b),
}
# Unset is the strictest value of a grant (no binding but the default): a tenant's list
# narrows the plugin's grant, it never grants a binding by itself.
_GRANTS: Final = frozenset({"bindings"})


def _merge(a: LimitsConfig, b: LimitsConfig | None, *, stricter: bool) -> LimitsConfig:
    """Per key, the value set on one side; where both set one, ``b``'s (an override) or,
    with ``stricter``, the stricter of the two."""
    if b is None:
        return a
    merged: dict[str, Any] = {}
    for name in _STRICTER:
        x, y = getattr(a, name), getattr(b, name)
        if stricter and name in _GRANTS and (x is None or y is None):
            merged[name] = None
        elif x is None or y is None:
            merged[name] = x if y is None else y
        else:
            merged[name] = _STRICTER[name](x, y) if stricter else y
    return LimitsConfig(**merged)


def _near_off(a: NearCacheConfig, b: NearCacheConfig) -> NearCacheConfig:
    """The stricter ``nearCache``: ``a``'s, turned off where ``b`` turns it off."""
    return replace(a, enabled=False) if b.enabled is False else a


@dataclass(frozen=True, slots=True)
class Policy:
    """The effective policy of one (plugin, tenant) scope: see the module docstring.

    :ivar default_ttl: seconds when ``ttl=None`` (``None``: no expiry), within ``max_ttl``.
    :ivar max_ttl: the longest TTL in seconds, or ``None`` for no cap.
    :ivar max_value_bytes: the largest encoded value, or ``None`` for no cap.
    :ivar operations: the operation groups allowed (keys of :data:`METHODS`).
    """

    plugin: str
    tenant: str | None = None
    enabled: bool = True
    default_ttl: float | None = None
    max_ttl: float | None = None
    max_value_bytes: int | None = DEFAULT_MAX_VALUE_BYTES
    operations: frozenset[str] = _ALL
    fail_open: bool = True
    bindings: frozenset[str] = frozenset({DEFAULT_BINDING})
    """The bindings the plugin may use: the default one and those granted to it."""
    near_cache: NearCacheConfig | None = None
    """The plugin's ``nearCache`` settings over its binding's (``None``: the binding's)."""

    def describe(self) -> str:
        """One line for ``cachekit check``: every key and its effective value."""
        ops = " ".join(op for op in OPERATIONS if op in self.operations) or "none"
        state = "enabled" if self.enabled else "disabled"
        return (
            f"{state}, defaultTtl {_seconds(self.default_ttl)}, "
            f"maxTtl {_seconds(self.max_ttl, 'none')}, maxValueBytes "
            f"{'none' if self.max_value_bytes is None else self.max_value_bytes}, "
            f"operations {ops}, failOpen {str(self.fail_open).lower()}"
        ) + (f", bindings {', '.join(self.granted)}" if len(self.bindings) > 1 else "")

    @property
    def granted(self) -> tuple[str, ...]:
        """:attr:`bindings` in order: the default one first, then the others by name."""
        return (DEFAULT_BINDING, *sorted(self.bindings - {DEFAULT_BINDING}))

    def check_binding(self, name: str, *, configured: bool = True) -> None:
        """Raise unless this scope's plugin may use binding ``name`` (``configured``:
        whether the host has a binding of that name at all, for the message).

        :raises CachePolicyError: naming the plugin, the binding and the granted ones.
        """
        if name in self.bindings:
            return
        fix = (
            f"if it needs {name!r}, the host grants it in backend.cache "
            f"(plugins.{self.plugin}.bindings, or pluginDefaults.bindings)"
            if configured
            else f"the host configures no binding {name!r} (backend.cache.bindings)"
        )
        raise CachePolicyError(
            f"plugin {self.plugin!r} may not use cache binding {name!r}: it is granted "
            f"{', '.join(self.granted)}; {fix}",
            plugin=self.plugin,
            tenant=self.tenant,
            limit="bindings",
            value=name,
        )

    def bound(self, default_ttl: float | None) -> float | None:
        """A default TTL (``None``: no expiry) within ``max_ttl``."""
        return _bound(default_ttl, self.max_ttl)

    def enforce(
        self, store: Store, encode: Callable[[Any], bytes], stats: OpStats
    ) -> tuple[Store, Store, Callable[[Any], bytes], Callable[[TTL], float | None]]:
        """What a cache of this scope uses in place of ``store`` (for reads, and for every
        other call), ``encode`` and :func:`~cachekit.durations.store_ttl` (for a TTL the
        caller gave); each is ``store``, ``encode`` or ``store_ttl`` itself where this
        policy does not restrict it. Reads get the store itself unless they are refused or
        the plugin is disabled: a read pays nothing for a policy. Violations are counted
        on ``stats``."""
        others = store
        if not self.enabled or self.operations != _ALL:
            others = cast("Store", PolicyStore(store, self, stats))
        reads = store if self.enabled and "read" in self.operations else others
        return reads, others, self._encoder(encode, stats), self._ttl_rule(stats)

    def _encoder(self, encode: Callable[[Any], bytes], stats: OpStats) -> Callable[[Any], bytes]:
        limit = self.max_value_bytes
        if limit is None:
            return encode

        def encode_within(value: Any) -> bytes:
            data = encode(value)
            if len(data) > limit:
                _count(stats, "maxValueBytes")
                raise ValueTooLarge(
                    f"plugin {self.plugin!r}: the value encodes to {len(data)} bytes, over "
                    f"its maxValueBytes of {limit}; nothing was written. Store less (split "
                    "it, or cache a smaller projection), or raise maxValueBytes in "
                    f"backend.cache ({self._where()})",
                    plugin=self.plugin,
                    tenant=self.tenant,
                    limit="maxValueBytes",
                    value=len(data),
                )
            return data

        return encode_within

    def _ttl_rule(self, stats: OpStats) -> Callable[[TTL], float | None]:
        limit = self.max_ttl
        if limit is None:
            return store_ttl

        def ttl_within(ttl: TTL) -> float | None:
            seconds = store_ttl(ttl)
            if seconds is None or seconds > limit:
                _count(stats, "maxTtl")
                return limit
            return seconds

        return ttl_within

    def refuse(self, group: str, method: str, stats: OpStats) -> NoReturn:
        """Count and raise the refusal of store method ``method`` of operation ``group``
        (not in ``operations``)."""
        _count(stats, "operations")
        raise CachePolicyError(
            f"plugin {self.plugin!r} may not call {method}(): operation {group!r} is not in "
            f"its operations ({', '.join(sorted(self.operations)) or 'none'}); if the plugin "
            f"needs it, allow it in backend.cache ({self._where()})",
            plugin=self.plugin,
            tenant=self.tenant,
            limit="operations",
            value=group,
        )

    def _where(self) -> str:
        """Where this scope's limits are set."""
        places = [f"plugins.{self.plugin}", "pluginDefaults"]
        if self.tenant is not None:
            places.append(f"tenants.{self.tenant}")
        return ", ".join(places)


def _bound(default_ttl: float | None, max_ttl: float | None) -> float | None:
    if max_ttl is None or (default_ttl is not None and default_ttl <= max_ttl):
        return default_ttl
    return max_ttl


def _seconds(ttl: float | None, none: str = "no expiry") -> str:
    """``ttl`` as config writes it (``90s``, ``5m``, ``1h``, ``1d``)."""
    if ttl is None:
        return none
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if ttl >= size and ttl % size == 0:
            return f"{ttl / size:g}{unit}"
    return f"{ttl:g}s"


def _count(stats: OpStats, limit: str) -> None:
    stats.violations[limit] = stats.violations.get(limit, 0) + 1


# --- the store view ---------------------------------------------------------------------


def _answering(answer: Callable[..., Any]) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """A do-nothing method and its async twin, both returning ``answer(*args)``."""

    async def async_answer(*args: Any) -> Any:
        return answer(*args)

    return answer, async_answer


def _new_gcra(key: str, now: int, interval: int, period: int, cost: int) -> tuple[bool, int]:
    return gcra.step(None, now, interval, period, cost)


# A disabled plugin's store: what each method (sync, async) answers when the store holds
# nothing and keeps nothing.
_NOTHING: Final[dict[str, tuple[Callable[..., Any], Callable[..., Any]]]] = {
    "get": _answering(lambda key: None),
    "get_many": _answering(lambda keys: {}),
    "get_values": _answering(lambda keys: [None] * len(keys)),
    "set": _answering(lambda key, value, ttl: None),
    "set_many": _answering(lambda items, ttl: None),
    "add": _answering(lambda key, value, ttl: True),  # "stored": a @cached lock is taken
    "delete": _answering(lambda key: False),
    "delete_many": _answering(lambda keys: 0),
    "delete_if_equals": _answering(lambda key, value: False),
    "incr": _answering(lambda key, delta, ttl: delta),  # as if the key were new
    "gcra": _answering(_new_gcra),
    "expire": _answering(lambda key, ttl: False),
    "touch": _answering(lambda key, ttl: False),
    "clear": _answering(lambda selector: 0),
}


class PolicyStore:
    """A store as one scope's :class:`Policy` lets it be used.

    Each method of :data:`METHODS` (and its async twin) is an attribute of the view: the
    store's own bound method when allowed (calling it costs what calling the store does),
    a do-nothing function when the plugin is disabled, or a function raising
    :class:`~cachekit.errors.CachePolicyError` when its operation group is not allowed.
    Everything else (``name``, ``key_prefix``, ``ping``, ``close``, ...) is the store's.

    :ivar origin: the store behind the view.
    """

    def __init__(self, store: Store, policy: Policy, stats: OpStats) -> None:
        self.origin = store
        self.policy = policy
        if not policy.enabled:
            self.blocking = False  # does no I/O: not timed
        for group, names in METHODS.items():
            for name in names:
                for method, twin in ((name, 0), ("a" + name, 1)):
                    if not hasattr(store, method):  # get_values: an AlignedStore only
                        continue
                    if group not in policy.operations:
                        setattr(self, method, _refusal(policy, group, method, stats))
                    elif not policy.enabled:
                        setattr(self, method, _NOTHING[name][twin])
                    else:
                        setattr(self, method, getattr(store, method))

    def __getattr__(self, name: str) -> Any:
        if name == "origin":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self.origin, name)

    def __repr__(self) -> str:
        state = (
            "disabled"
            if not self.policy.enabled
            else "operations " + ",".join(sorted(self.policy.operations))
        )
        return f"PolicyStore({self.origin!r}, plugin={self.policy.plugin!r}, {state})"


def _refusal(policy: Policy, group: str, method: str, stats: OpStats) -> Callable[..., NoReturn]:
    # A plain function for the async twins too: it raises when called, before the caller
    # awaits anything, so no coroutine is left behind.
    def refuse(*args: Any) -> NoReturn:
        policy.refuse(group, method, stats)

    return refuse


# --- resolving a scope's policy ------------------------------------------------------------


def resolve(
    config: CacheConfig, plugin: str, tenant: str | None = None, binding: str | None = None
) -> Policy:
    """The effective :class:`Policy` of ``(plugin, tenant)`` under ``config``:
    ``plugins.<plugin>`` over ``pluginDefaults`` over the store section (``defaultTtl``,
    ``failOpen``), and the stricter of that and ``tenants.<tenant>``.

    :param binding: the binding whose store section gives the defaults (``defaultTtl``,
        ``failOpen``, memcached's ``maxValueSize``); ``None``: ``backend.cache`` itself.
        The limits and grants are ``config``'s, the same on every binding.
    :raises ConfigError: ``binding`` is not configured.
    """
    section: PolicyConfig = config.policy
    limits = _merge(section.plugin_defaults, section.plugins.get(plugin), stricter=False)
    if tenant is not None:
        limits = _merge(limits, section.tenants.get(tenant), stricter=True)
    config = config.binding(binding)
    default_ttl = config.default_ttl if limits.default_ttl is None else limits.default_ttl
    return Policy(
        plugin=plugin,
        tenant=tenant,
        enabled=limits.enabled is not False,
        default_ttl=_bound(default_ttl or None, limits.max_ttl),  # 0: no expiry
        max_ttl=limits.max_ttl,
        max_value_bytes=(
            default_max_value_bytes(config)
            if limits.max_value_bytes is None
            else limits.max_value_bytes
        ),
        operations=_ALL if limits.operations is None else limits.operations,
        fail_open=config.fail_open if limits.fail_open is None else limits.fail_open,
        bindings=frozenset({DEFAULT_BINDING, *(limits.bindings or ())}),
        near_cache=limits.near_cache,
    )


def configured(config: CacheConfig) -> list[tuple[str, Policy]]:
    """The effective policies ``config`` sets, for ``cachekit check``: ``(what, policy)``
    for a plugin with no section of its own (``"pluginDefaults"``), each configured plugin,
    and each (plugin, configured tenant) the tenant's limits change."""
    section: PolicyConfig = config.policy
    found = [("pluginDefaults", resolve(config, "*"))]
    found += [(plugin, resolve(config, plugin)) for plugin in sorted(section.plugins)]
    for plugin, policy in list(found):
        for tenant in sorted(section.tenants):
            capped = resolve(config, policy.plugin, tenant)
            if replace(capped, tenant=None) != policy:
                found.append((f"{plugin} for tenant {tenant}", capped))
    return found


def default_max_value_bytes(config: CacheConfig) -> int:
    """``maxValueBytes`` where no section sets it: ``memcache.maxValueSize`` on memcached
    (the item limit the host configured), else :data:`DEFAULT_MAX_VALUE_BYTES`."""
    return config.memcache.max_value_size if config.store == "memcache" else DEFAULT_MAX_VALUE_BYTES


def check_plugins(config: CacheConfig, plugins: Iterable[str] | None) -> None:
    """Check the plugin ids of ``backend.cache.plugins`` against the host's list:
    ``plugins`` (``CacheManager(plugins=...)``), else ``knownPlugins`` (checked when
    parsed). Without either, log one warning naming the ids that could not be checked.

    :raises ConfigError: an id the host does not list.
    """
    section: PolicyConfig = config.policy
    if plugins is not None:
        check_known_plugins(section, frozenset(plugins), "backend.cache.plugins")
    elif section.known_plugins is None and section.plugins:
        log.warning(
            "cachekit: backend.cache.plugins sets limits for %s, but the host does not list "
            "its plugins (backend.cache.knownPlugins or CacheManager(plugins=...)): a "
            "misspelt id there would go unnoticed and its plugin get pluginDefaults",
            ", ".join(sorted(section.plugins)),
        )
