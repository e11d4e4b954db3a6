"""Stores, and the one resolver that turns ``backend.cache.store`` into a store.

A store is named in config in one of three ways:

* a built-in name: ``memory``, ``redis``, ``valkey``, ``memcache``, ``infinispan``;
* the name of an entry point in the ``cachekit.stores`` group (a package's
  ``[project.entry-points."cachekit.stores"] mystore = "pkg.mod:MyStore"``);
* a dotted path ``pkg.module:Class``.

(or a store instance is passed to :class:`~cachekit.host.CacheManager` directly). The class
is built with ``Class.from_config(config)`` when it has that classmethod, else with
``Class(**config.options)``, after the options are checked against the schema of the
provider's manifest (:mod:`cachekit.manifests`). Store modules are imported only when
chosen, so a driver that is not installed only matters to the host that picks it.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Final

from cachekit.errors import ConfigError
from cachekit.stores.base import BaseStore, Store

if TYPE_CHECKING:
    from cachekit.config import CacheConfig

__all__ = [
    "BaseStore",
    "Store",
    "builtin_stores",
    "check_store_name",
    "create_store",
    "entry_point_stores",
    "missing_driver",
    "store_names",
]

ENTRY_POINT_GROUP: Final = "cachekit.stores"


@dataclass(frozen=True)
class _Builtin:
    target: str  # "module:Class"
    drivers: tuple[str, ...] = ()  # any one of these modules must be importable
    extra: str = ""


_BUILTINS: Final = {
    "memory": _Builtin("cachekit.stores.memory:MemoryStore"),
    "redis": _Builtin("cachekit.stores.redis:RedisStore", ("redis",), "redis"),
    "valkey": _Builtin("cachekit.stores.redis:RedisStore", ("valkey", "redis"), "valkey"),
    "memcache": _Builtin("cachekit.stores.memcache:MemcacheStore", ("pymemcache",), "memcache"),
    "infinispan": _Builtin("cachekit.stores.infinispan:InfinispanStore", ("httpx",), "infinispan"),
}


def store_names() -> list[str]:
    """Built-in store names and installed entry-point names."""
    return [*_BUILTINS, *sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))]


def builtin_stores() -> list[tuple[str, str]]:
    """``(name, "module:Class")`` of every built-in store."""
    return [(name, builtin.target) for name, builtin in _BUILTINS.items()]


def entry_point_stores() -> list[EntryPoint]:
    """The installed entry points of the ``cachekit.stores`` group, by name."""
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def missing_driver(name: str) -> str:
    """Why built-in store ``name`` cannot be used here (its driver is not installed, with
    the ``pip install`` line), or ``""``."""
    builtin = _BUILTINS[name]
    if builtin.drivers and not any(_installed(d) for d in builtin.drivers):
        return (
            f"store {name!r} needs the {builtin.drivers[0]!r} package: "
            f"pip install 'cachekit[{builtin.extra}]'"
        )
    return ""


def check_store_name(name: str, path: str = "backend.cache.store") -> None:
    """Validate a ``store`` value without connecting anywhere.

    :raises ConfigError: unknown name (with the known ones and a did-you-mean), a driver
        that is not installed (with the ``pip install`` line), or a dotted path that does
        not import.
    """
    _resolve_class(name, path)


def create_store(config: CacheConfig, path: str = "backend.cache.store") -> Store:
    """Build (but do not connect) the store ``config.store`` names, once its ``options``
    pass the provider's manifest (:func:`cachekit.manifests.check_options`).

    :raises ConfigError: the store cannot be resolved, or its options do not fit.
    """
    from cachekit.manifests import check_options

    cls = _resolve_class(config.store, path)
    options_path = path.removesuffix(".store") + ".options"
    check_options(
        config.store, cls, config.options, options_path, builtin=config.store in _BUILTINS
    )
    from_config = getattr(cls, "from_config", None)
    store = from_config(config) if from_config is not None else cls(**config.options)
    if not isinstance(store, Store):
        raise ConfigError(
            f"{config.store!r} built a {type(store).__name__}, which is not a cachekit store; "
            "subclass cachekit.stores.BaseStore",
            path=path,
        )
    return store


def _resolve_class(name: str, path: str) -> Any:
    if "://" in name:
        raise _url_as_store(name, path)
    builtin = _BUILTINS.get(name)
    if builtin is not None:
        missing = missing_driver(name)
        if missing:
            raise ConfigError(missing, path=path)
        return _load(builtin.target, name, path)
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        try:
            return ep.load()
        except Exception as exc:
            raise ConfigError(f"entry point {name!r} failed to load: {exc}", path=path) from exc
    if ":" in name:
        return _load(name, name, path)
    known = store_names()
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(
        f"unknown store {name!r}; {hint}known: {', '.join(known)}, "
        "or a custom provider as 'package.module:Class'",
        path=path,
    )


def _url_as_store(url: str, path: str) -> ConfigError:
    """``store: redis://...``: the URL belongs in ``connection``."""
    from cachekit.config.masking import redact
    from cachekit.config.url import SCHEME_STORES

    store = SCHEME_STORES.get(url.partition("://")[0].lower())
    if store == "memory":
        fix = "write store: memory"
    elif store:
        fix = f"write store: {store} and put the URL in connection:"
    else:
        fix = "name a store (redis, valkey, memcache) and put the server URL in connection:"
    return ConfigError(
        f"{redact(url)!r} is a URL, not a store name: {fix} "
        "(or build the manager with CacheManager.from_url(url))",
        path=path,
    )


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _load(target: str, name: str, path: str) -> Any:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load store {name!r} from {target!r}: {exc}", path=path) from exc
