"""The Flask extension (extra ``flask``): :class:`CacheKit`, and the error handler
turning :class:`~cachekit.errors.RateLimitExceeded` into a 429
(:func:`rate_limit_handler`, which the extension registers).

::

    from flask import Flask
    from cachekit import current_cache
    from cachekit.contrib.flask import CacheKit

    app = Flask(__name__)
    app.config["CACHEKIT_CONFIG"] = "app-config.yaml"
    app.config["CACHEKIT_PLUGIN"] = "catalog"
    app.config["CACHEKIT_TENANT_HEADER"] = "X-Tenant-ID"   # behind authentication only
    cachekit = CacheKit(app)            # or CacheKit() ... cachekit.init_app(app)

    @app.get("/items/<int:item_id>")
    def item(item_id: int):
        return current_cache().get_or_set(f"item:{item_id}", lambda: load(item_id), ttl=60)

Config keys read by :meth:`CacheKit.init_app`:

==============================  =========================================================
``CACHEKIT_CONFIG``             app-config YAML path, or a list of them (merged in order)
``CACHEKIT``                    or the ``backend.cache`` section itself, as a mapping
``CACHEKIT_URL``                or a store URL (``redis://host:6379/0``), through
                                ``CacheManager.from_url``
``CACHEKIT_PLUGIN``             the plugin id (default: ``app.name``)
``CACHEKIT_TENANT_HEADER``      a header naming the tenant (default: the platform scope)
``CACHEKIT_TENANT_REQUIRED``    refuse requests without a tenant (default: when a tenant
                                header is set); ``False``: the platform scope instead
``CACHEKIT_EXCLUDE``            paths served without a scope (health probes, metrics):
                                ``["/healthz", "/static/*"]``, see ``exclude=``
``CACHEKIT_CACHE_HEADER``       add ``X-Cache: HIT|MISS`` to responses (default: off)
==============================  =========================================================

Any other ``CACHEKIT_*`` key is a :class:`~cachekit.errors.ConfigError` (with the closest
known key), never silently ignored. With no store config (none of ``CACHEKIT_CONFIG``,
``CACHEKIT``, ``CACHEKIT_URL``, nor a ``manager=``), the in-memory store is used, and
Flask-Caching's ``CACHE_*`` keys (``CACHE_TYPE``, ``CACHE_REDIS_URL``, ...) are a
``ConfigError`` naming the cachekit equivalent, as the app meant a store it would not get;
with a store config, or when Flask-Caching is set up on the app first, they are left to
Flask-Caching, which may serve the app alongside.

The manager serving the app is registered as the process default
(:func:`cachekit.host.set_default_manager`): :func:`cachekit.host.scope` without ``manager=`` in a
background thread or a CLI command uses it.
"""

from __future__ import annotations

import dataclasses
import os
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from cachekit.config import CacheConfig
from cachekit.config.schema import _reject_unknown
from cachekit.context import ScopeContext, scope
from cachekit.errors import ConfigError, RateLimitExceeded
from cachekit.http import rate_limit_response
from cachekit.manager import CacheManager
from cachekit.resolvers import PluginResolver, TenantResolver, header
from cachekit.wsgi import CacheMiddleware

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["CacheKit", "rate_limit_handler"]

EXTENSION_KEY = "cachekit"

CONFIG_KEYS: Final = frozenset(
    {
        "CACHEKIT",
        "CACHEKIT_CONFIG",
        "CACHEKIT_URL",
        "CACHEKIT_PLUGIN",
        "CACHEKIT_TENANT_HEADER",
        "CACHEKIT_TENANT_REQUIRED",
        "CACHEKIT_EXCLUDE",
        "CACHEKIT_CACHE_HEADER",
    }
)
"""The ``app.config`` keys the extension reads."""

_STORE = "CACHEKIT = {'store': ...}"
_FLASK_CACHING: Final[Mapping[str, str]] = {
    "CACHE_TYPE": f"CACHEKIT_URL = 'redis://...', or {_STORE} (memory, redis, valkey, memcache)",
    "CACHE_REDIS_URL": "CACHEKIT_URL = 'redis://...'",
    "CACHE_REDIS_HOST": "CACHEKIT_URL = 'redis://host:port/db'",
    "CACHE_REDIS_PORT": "CACHEKIT_URL = 'redis://host:port/db'",
    "CACHE_REDIS_DB": "CACHEKIT_URL = 'redis://host:port/db'",
    "CACHE_REDIS_PASSWORD": "CACHEKIT_URL = 'redis://:password@host:port/db'",
    "CACHE_MEMCACHED_SERVERS": "CACHEKIT = {'store': 'memcache', 'connection': [...]}",
    "CACHE_DEFAULT_TIMEOUT": "CACHEKIT = {'defaultTtl': ...} (seconds or '5m')",
    "CACHE_KEY_PREFIX": (
        "CACHEKIT = {'redis': {'client': {'namespace': ...}}}; each plugin and tenant "
        "gets its own prefix without it"
    ),
    "CACHE_THRESHOLD": "CACHEKIT = {'memory': {'maxEntries': ...}}",
}


class CacheKit:
    """Serves a Flask app through :class:`cachekit.wsgi.CacheMiddleware`, so its views,
    streamed responses and generators can call :func:`cachekit.current_cache`, and turns
    :class:`~cachekit.errors.RateLimitExceeded` into a 429.

    Arguments given here win over the app's config.

    :param app: the app to set up now (or call :meth:`init_app` later, once per app).
    :param manager: the manager to use (default: built from the app's config).
    :param plugin: the plugin id or resolver (default: ``CACHEKIT_PLUGIN``, else
        ``app.name``).
    :param tenant: a tenant resolver (default: from ``CACHEKIT_TENANT_HEADER``).
    :param middleware_options: more :class:`~cachekit.wsgi.CacheMiddleware` options.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        manager: CacheManager | None = None,
        plugin: str | PluginResolver | None = None,
        tenant: TenantResolver | None = None,
        **middleware_options: Any,
    ) -> None:
        self._manager = manager
        self._plugin = plugin
        self._tenant = tenant
        self._options = middleware_options
        self._managers: weakref.WeakKeyDictionary[Flask, CacheManager] = weakref.WeakKeyDictionary()
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        apps = ", ".join(repr(app.name) for app in self._managers)
        return f"CacheKit(apps=[{apps}])"

    def init_app(self, app: Flask) -> None:
        """Wrap ``app.wsgi_app`` in the middleware, register the 429 handler, and store
        this extension in ``app.extensions["cachekit"]``.

        :raises ConfigError: an unknown ``CACHEKIT_*`` key; the app's ``CACHEKIT`` /
            ``CACHEKIT_CONFIG`` / ``CACHEKIT_URL`` is invalid, or more than one is set;
            Flask-Caching's ``CACHE_*`` keys without a cachekit store config.
        :raises ValueError: the plugin id is not a valid id, or an excluded path is bad.
        """
        config = app.config
        _reject_unknown_keys(config)
        manager = self._manager
        if manager is None:
            manager = _manager_from(config, flask_caching="cache" in app.extensions)
        plugin = self._plugin or config.get("CACHEKIT_PLUGIN") or app.name
        tenant = self._tenant
        if tenant is None and config.get("CACHEKIT_TENANT_HEADER"):
            tenant = header(config["CACHEKIT_TENANT_HEADER"])
        options: dict[str, Any] = {
            "tenant_required": config.get("CACHEKIT_TENANT_REQUIRED"),
            "cache_header": bool(config.get("CACHEKIT_CACHE_HEADER", False)),
            "exclude": config.get("CACHEKIT_EXCLUDE"),
            **self._options,
        }
        app.wsgi_app = CacheMiddleware(  # type: ignore[method-assign]
            app.wsgi_app, manager, plugin=plugin, tenant=tenant, **options
        )
        app.register_error_handler(RateLimitExceeded, rate_limit_handler)
        app.extensions[EXTENSION_KEY] = self
        self._managers[app] = manager

    def get_manager(self, app: Flask) -> CacheManager:
        """The manager serving ``app``.

        :raises KeyError: ``app`` was not set up by this extension.
        """
        return self._managers[app]

    @property
    def manager(self) -> CacheManager:
        """The manager of the current app (in an app or request context), else of the one
        app this extension set up.

        :raises RuntimeError: outside an app context with several apps, or with none.
        """
        from flask import current_app, has_app_context

        if has_app_context():
            # the app behind the proxy, by the method Flask documents for it ("Notes On
            # Proxies" in its docs), though its name starts with an underscore
            app = current_app._get_current_object()  # type: ignore[attr-defined]  # noqa: SLF001
            found = self._managers.get(app)
            if found is not None:
                return found
        if len(self._managers) == 1:
            return next(iter(self._managers.values()))
        raise RuntimeError(
            f"CacheKit serves {len(self._managers)} apps: use get_manager(app), or read "
            ".manager inside an app context"
        )

    def scope(self, plugin: str, tenant: str | None = None) -> ScopeContext:
        """:func:`cachekit.host.scope` on this extension's manager, for code outside requests
        (CLI commands, background jobs): ``with ext.scope("catalog", "acme"): ...``."""
        return scope(plugin, tenant, manager=self.manager)


def rate_limit_handler(exc: RateLimitExceeded) -> tuple[bytes, int, list[tuple[str, str]]]:
    """A Flask error handler turning :class:`~cachekit.errors.RateLimitExceeded` into a
    429 with ``Retry-After`` and ``RateLimit-*`` headers (see :mod:`cachekit.http`)::

        app.register_error_handler(RateLimitExceeded, rate_limit_handler)

    :class:`CacheKit` registers it; an app wrapping its ``wsgi_app`` by hand needs it as
    well as the middleware, as Flask turns an endpoint's exception into a 500 first.
    """
    status, headers, body = rate_limit_response(exc)
    return body, status, headers


def _manager_from(config: Mapping[str, Any], *, flask_caching: bool) -> CacheManager:
    files = config.get("CACHEKIT_CONFIG")
    section = config.get("CACHEKIT")
    url = config.get("CACHEKIT_URL")
    given = [
        key
        for key, value in (("CACHEKIT_CONFIG", files), ("CACHEKIT", section), ("CACHEKIT_URL", url))
        if value is not None
    ]
    if len(given) > 1:
        raise ConfigError(
            "set one of CACHEKIT_CONFIG (YAML files), CACHEKIT (the backend.cache section) "
            f"or CACHEKIT_URL (a store URL), not {' and '.join(given)}",
            path=given[0],
        )
    if files is not None:
        paths = [files] if isinstance(files, str | os.PathLike) else list(files)
        return CacheManager.from_yaml(*paths)
    if section is not None:
        return CacheManager.from_section(section, path="CACHEKIT")
    if url is not None:
        if not isinstance(url, str):
            raise ConfigError(
                f"expected a store URL string, got {type(url).__name__}", path="CACHEKIT_URL"
            )
        return CacheManager.from_url(url)
    if not flask_caching:
        _reject_flask_caching(config)
    return CacheManager()


def _reject_unknown_keys(config: Mapping[str, Any]) -> None:
    """Unknown ``CACHEKIT_*`` keys: a ``backend.cache`` setting spelt as a flat key
    (``CACHEKIT_STORE``, ``CACHEKIT_DEFAULT_TTL``) is told where it goes; any other gets the
    closest known key."""
    unknown = [key for key in config if str(key).startswith("CACHEKIT") and key not in CONFIG_KEYS]
    section = {f.name: f.metadata.get("key", f.name) for f in dataclasses.fields(CacheConfig)}
    for key in unknown:
        setting = section.get(str(key).removeprefix("CACHEKIT_").lower())
        if setting is not None:
            raise ConfigError(
                f"unknown key {key!r}: the store's settings go in the backend.cache section, "
                f"CACHEKIT = {{{setting!r}: ...}} (or a YAML file, CACHEKIT_CONFIG)",
                path=f"app.config.{key}",
            )
    _reject_unknown(dict.fromkeys(unknown), set(CONFIG_KEYS), "app.config")


def _reject_flask_caching(config: Mapping[str, Any]) -> None:
    """Flask-Caching's keys in an app with no cachekit store config: the app meant a store
    that the in-memory default would silently replace."""
    for key in config:
        if not str(key).startswith("CACHE_"):
            continue
        instead = _FLASK_CACHING.get(key, f"{_STORE} or CACHEKIT_URL")
        raise ConfigError(
            f"{key} is a Flask-Caching key, which cachekit does not read; set {instead}. "
            "(With a cachekit store config, or Flask-Caching set up on the app first, CACHE_* "
            "keys are left to Flask-Caching.)",
            path=f"app.config.{key}",
        )
