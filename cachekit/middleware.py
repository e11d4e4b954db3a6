"""What the ASGI and the WSGI middleware share (:mod:`cachekit.asgi`, :mod:`cachekit.wsgi`).

Both answer the same two questions for every request — which manager, and which (plugin,
tenant) scope — and bind that scope, with the request's ``X-Cache`` outcome when the
header was asked for, around the app's code. That part is written once here; each
middleware keeps only its protocol: awaiting an ASGI app (and its lifespan), or calling
a WSGI app and scoping the response iterable it returns.
"""

from __future__ import annotations

import re
from contextvars import Token
from typing import Any, ClassVar, Generic, TypeVar

from cachekit.context import (
    Binding,
    CacheOutcome,
    active_manager,
    bind,
    set_default_manager,
    unbind,
)
from cachekit.context import outcome as request_outcome
from cachekit.errors import ConfigError
from cachekit.manager import CacheManager
from cachekit.resolvers import (
    DEFAULT_ID_PATTERN,
    Exclude,
    PluginResolver,
    ScopeResolver,
    TenantResolver,
)
from cachekit.responses.options import CachedPrefixes, Responses

__all__ = ["ScopeMiddleware", "bind_request", "unbind_request"]

App = TypeVar("App")


class ScopeMiddleware(Generic[App]):
    """The protocol-free half of both ``CacheMiddleware`` classes, whose docstrings name
    the parameters. A manager given here is registered as the process default
    (:func:`cachekit.host.set_default_manager`, which keeps a different one registered earlier).

    :raises TypeError: a resolver is not callable, ``tenant`` is a plain string, or
        ``exclude`` is neither paths nor a callable.
    :raises ValueError: a fixed plugin id does not match ``id_pattern``,
        ``tenant_required=True`` without a tenant resolver, or an excluded path does not
        start with ``/``.
    :raises ConfigError: a ``responses=`` prefix does not start with ``/``, or a tenant
        resolver with a manager whose ``keyLayout: backstage`` has no tenants.
    """

    cached_responses: ClassVar[type[CachedPrefixes]]
    """The protocol's app caching responses under path prefixes (``responses=``)."""

    def __init__(
        self,
        app: App,
        manager: CacheManager | None = None,
        *,
        plugin: str | PluginResolver,
        tenant: TenantResolver | None = None,
        tenant_required: bool | None = None,
        id_pattern: str | re.Pattern[str] = DEFAULT_ID_PATTERN,
        cache_header: bool = False,
        exclude: Exclude | None = None,
        responses: Responses | None = None,
    ) -> None:
        if responses:  # served inside the request's scope, as the app is
            wrapped: Any = self.cached_responses(app, responses)  # an app of the same protocol
            app = wrapped
        self.app = app
        self.manager = manager
        self.resolver = ScopeResolver(
            plugin,
            tenant,
            tenant_required=tenant_required,
            id_pattern=id_pattern,
            exclude=exclude,
        )
        self.cache_header = cache_header
        if manager is not None:
            if tenant is not None and not manager.tenants:
                raise ConfigError(
                    "a tenant resolver needs tenants, and keyLayout: backstage has none "
                    "(Backstage's keys are per plugin): drop tenant=..., or use keyLayout: "
                    "cachekit",
                    path="backend.cache.keyLayout",
                )
            set_default_manager(manager)

    def __repr__(self) -> str:
        exclude = self.resolver.exclude
        excluded = "" if exclude is None else f", exclude={exclude!r}"
        return (
            f"{type(self).__name__}(app={self.app!r}, manager={self.manager!r}, "
            f"plugin={self.resolver.plugin!r}, tenant={self.resolver.tenant!r}{excluded})"
        )

    def request_manager(self) -> CacheManager:
        """The manager a request uses: the one given, else the active one."""
        return self.manager if self.manager is not None else active_manager()


# Per request, what both middlewares do around the app's code. Two plain functions
# rather than a context-manager object: this runs on every request.

_RequestTokens = tuple[Token[Binding | None], Token[CacheOutcome | None] | None]


def bind_request(binding: Binding, noted: CacheOutcome | None) -> _RequestTokens:
    """Bind a request's scope and, when kept, its ``X-Cache`` outcome; pass what it
    returns to :func:`unbind_request` when the app's code is done (also when it raised)."""
    token = bind(binding)
    return token, request_outcome.set(noted) if noted is not None else None


def unbind_request(tokens: _RequestTokens) -> None:
    """Undo the :func:`bind_request` that returned ``tokens``."""
    token, noting = tokens
    if noting is not None:
        request_outcome.reset(noting)
    unbind(token)
