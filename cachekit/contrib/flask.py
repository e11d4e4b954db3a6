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
``CACHEKIT_PLUGIN``             the plugin id (default: ``app.name``)
``CACHEKIT_TENANT_HEADER``      a header naming the tenant (default: the platform scope)
``CACHEKIT_TENANT_REQUIRED``    refuse requests without a tenant (default: when a tenant
                                header is set)
``CACHEKIT_CACHE_HEADER``       add ``X-Cache: HIT|MISS`` to responses (default: off)
==============================  =========================================================

With neither ``CACHEKIT_CONFIG`` nor ``CACHEKIT``, the in-memory store is used.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cachekit.config import parse_cache_section
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

        :raises ConfigError: the app's ``CACHEKIT`` / ``CACHEKIT_CONFIG`` is invalid, or
            both are set.
        :raises ValueError: the plugin id is not a valid id.
        """
        config = app.config
        manager = self._manager if self._manager is not None else _manager_from(config)
        plugin = self._plugin or config.get("CACHEKIT_PLUGIN") or app.name
        tenant = self._tenant
        if tenant is None and config.get("CACHEKIT_TENANT_HEADER"):
            tenant = header(config["CACHEKIT_TENANT_HEADER"])
        options: dict[str, Any] = {
            "tenant_required": config.get("CACHEKIT_TENANT_REQUIRED"),
            "cache_header": bool(config.get("CACHEKIT_CACHE_HEADER", False)),
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
        """:func:`cachekit.scope` on this extension's manager, for code outside requests
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


def _manager_from(config: Mapping[str, Any]) -> CacheManager:
    files = config.get("CACHEKIT_CONFIG")
    section = config.get("CACHEKIT")
    if files is not None and section is not None:
        raise ConfigError(
            "set CACHEKIT_CONFIG (a YAML file) or CACHEKIT (the backend.cache section), not both",
            path="CACHEKIT_CONFIG",
        )
    if files is not None:
        paths = [files] if isinstance(files, str | os.PathLike) else list(files)
        return CacheManager.from_yaml(*paths)
    if section is not None:
        return CacheManager(parse_cache_section(section, "CACHEKIT"))
    return CacheManager()
