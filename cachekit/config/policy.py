"""Per-plugin and per-tenant limits: ``backend.cache.plugins``, ``pluginDefaults``,
``tenants`` and ``knownPlugins``, parsed into frozen dataclasses::

    backend:
      cache:
        knownPlugins: [catalog, reviews]   # optional: an unknown id below is then an error
        pluginDefaults:
          maxValueBytes: 1048576           # the default: memcached's 1 MiB item limit
        plugins:
          catalog: {maxTtl: 1h, operations: [read, write, delete, count, expire]}
          reviews: {enabled: false}
        tenants:
          acme: {maxValueBytes: 65536}     # the stricter of plugin and tenant applies

``bindings`` (in any of these sections) grants named bindings (``backend.cache.bindings``)
beyond the default one, which every plugin has: a plugin may use only the bindings it is
granted (none but the default unless a section grants more; a tenant's list narrows the
plugin's). Every name must be a configured binding.

Every key is optional; ``null`` (or leaving a key out) means "not set here": a plugin
inherits ``pluginDefaults``, which inherits ``defaultTtl`` and ``failOpen`` from
``backend.cache``. The effective policy of a scope is worked out in :mod:`cachekit.policy`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from cachekit.config.schema import (
    _POLICY_KEYS,
    NearCacheConfig,
    _bool,
    _near_cache,
    _opt,
    _optional,
    _parse_section,
    _positive_int,
    _reject_unknown,
    _str_list,
    _ttl_duration,
    _type_error,
)
from cachekit.errors import ConfigError

__all__ = [
    "OPERATIONS",
    "POLICY_KEYS",
    "LimitsConfig",
    "PolicyConfig",
    "check_grants",
    "parse_policy_config",
]

OPERATIONS: Final = ("read", "write", "delete", "count", "expire", "clear")
"""The operation groups ``operations`` lists (see :data:`cachekit.policy.METHODS`)."""

POLICY_KEYS: Final = _POLICY_KEYS
"""The ``backend.cache`` keys this module reads."""


def _operations(value: Any, path: str) -> frozenset[str]:
    names = _str_list(value, path)
    for i, name in enumerate(names):
        if name not in OPERATIONS:
            raise ConfigError(
                f"unknown operation {name!r}; known: {', '.join(OPERATIONS)}", path=f"{path}[{i}]"
            )
    return frozenset(names)


def _names(value: Any, path: str) -> frozenset[str]:
    return frozenset(_str_list(value, path))


def _positive_ttl(value: Any, path: str) -> float:
    seconds = _ttl_duration(value, path)
    if seconds <= 0:
        raise ConfigError(f"must be a positive duration, got {value!r}", path=path)
    return seconds


@dataclass(frozen=True)
class LimitsConfig:
    """The keys one ``plugins.<id>``, ``pluginDefaults`` or ``tenants.<id>`` section sets
    (``None``: not set there). TTLs in seconds; ``default_ttl`` ``0.0`` means no expiry."""

    enabled: bool | None = _opt("enabled", _optional(_bool), None)
    default_ttl: float | None = _opt("defaultTtl", _optional(_ttl_duration), None)
    max_ttl: float | None = _opt("maxTtl", _optional(_positive_ttl), None)
    max_value_bytes: int | None = _opt("maxValueBytes", _optional(_positive_int), None)
    operations: frozenset[str] | None = _opt("operations", _optional(_operations), None)
    fail_open: bool | None = _opt("failOpen", _optional(_bool), None)
    bindings: frozenset[str] | None = _opt("bindings", _optional(_names), None)
    """Named bindings granted beyond the default one (``None``: not set here)."""
    near_cache: NearCacheConfig | None = _opt("nearCache", _optional(_near_cache), None)
    """The plugin's near-cache settings over the binding's (:mod:`cachekit.near`)."""


_NO_LIMITS: Final = LimitsConfig()


def _no_ids() -> Mapping[str, LimitsConfig]:
    return MappingProxyType({})


@dataclass(frozen=True)
class PolicyConfig:
    """The policy keys of ``backend.cache`` (``CacheConfig.policy``)."""

    plugins: Mapping[str, LimitsConfig] = field(default_factory=_no_ids)
    plugin_defaults: LimitsConfig = _NO_LIMITS
    tenants: Mapping[str, LimitsConfig] = field(default_factory=_no_ids)
    known_plugins: frozenset[str] | None = None
    """The host's plugin ids (``knownPlugins``), or ``None`` when it does not list them."""


def _check_id(value: object, path: str, what: str) -> str:
    # Lazily: the resolvers sit above the manager, which imports this module.
    from cachekit.resolvers import DEFAULT_ID_PATTERN

    if not isinstance(value, str) or DEFAULT_ID_PATTERN.fullmatch(value) is None:
        raise ConfigError(
            f"{value!r} is not a valid {what} id: use 1-64 characters of A-Za-z0-9._- "
            "(the ids a middleware accepts)",
            path=path,
        )
    return value


def _limits_by_id(value: Any, path: str, what: str) -> Mapping[str, LimitsConfig]:
    if value is None:
        return _no_ids()
    if not isinstance(value, Mapping):
        raise _type_error(f"a mapping of {what} ids to limits", value, path)
    return MappingProxyType(
        {
            _check_id(key, f"{path}.{key}", what): _parse_section(
                LimitsConfig, limits, f"{path}.{key}"
            )
            for key, limits in value.items()
        }
    )


def parse_policy_config(raw: Mapping[str, Any], path: str) -> PolicyConfig:
    """Parse the :data:`POLICY_KEYS` present in ``raw`` (the ``backend.cache`` section at
    ``path``).

    :raises ConfigError: a bad value or id, or (with ``knownPlugins``) a plugin id the
        host does not list.
    """
    _reject_unknown(raw, set(POLICY_KEYS), path)
    known = raw.get("knownPlugins")
    known_ids = None
    if known is not None:
        listed = _str_list(known, f"{path}.knownPlugins")
        known_ids = frozenset(
            _check_id(name, f"{path}.knownPlugins[{i}]", "plugin") for i, name in enumerate(listed)
        )
    config = PolicyConfig(
        plugins=_limits_by_id(raw.get("plugins"), f"{path}.plugins", "plugin"),
        plugin_defaults=_parse_section(
            LimitsConfig, raw.get("pluginDefaults"), f"{path}.pluginDefaults"
        ),
        tenants=_limits_by_id(raw.get("tenants"), f"{path}.tenants", "tenant"),
        known_plugins=known_ids,
    )
    if known_ids is not None:
        check_known_plugins(config, known_ids, f"{path}.plugins")
    return config


def check_known_plugins(config: PolicyConfig, known: frozenset[str], path: str) -> None:
    """Raise if ``config`` sets limits for a plugin id outside ``known`` (the host's list).

    :raises ConfigError: naming the first unknown id, with a did-you-mean.
    """
    for plugin in config.plugins:
        if plugin not in known:
            close = difflib.get_close_matches(plugin, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"the host has no plugin {plugin!r}; {hint}its plugins: "
                f"{', '.join(sorted(known))}. Fix the id, or list the plugin",
                path=f"{path}.{plugin}",
            )


def check_grants(config: PolicyConfig, bindings: tuple[str, ...], path: str) -> None:
    """Raise if a ``bindings`` grant in ``config`` names a binding that is not configured
    (``bindings``: every configured name, the default one included).

    :raises ConfigError: naming the grant's path, the unknown name (with a did-you-mean)
        and the configured bindings.
    """
    sections = [("pluginDefaults", config.plugin_defaults)]
    sections += [(f"plugins.{plugin}", limits) for plugin, limits in config.plugins.items()]
    sections += [(f"tenants.{tenant}", limits) for tenant, limits in config.tenants.items()]
    for where, limits in sections:
        for name in sorted(limits.bindings or ()):
            if name not in bindings:
                close = difflib.get_close_matches(name, bindings, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(
                    f"no cache binding {name!r} to grant; {hint}configured: "
                    f"{', '.join(bindings)} (add it under backend.cache.bindings)",
                    path=f"{path}.{where}.bindings",
                )
