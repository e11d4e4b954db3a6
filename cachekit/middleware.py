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
from typing import Generic, TypeVar

from cachekit.context import Binding, CacheOutcome, active_manager, bind, unbind
from cachekit.context import outcome as request_outcome
from cachekit.manager import CacheManager
from cachekit.resolvers import PluginResolver, ScopeResolver, TenantResolver

__all__ = ["RequestScope", "ScopeMiddleware"]

App = TypeVar("App")


class ScopeMiddleware(Generic[App]):
    """The protocol-free half of both ``CacheMiddleware`` classes, whose docstrings name
    the parameters.

    :raises TypeError: a resolver is not callable, or ``tenant`` is a plain string.
    :raises ValueError: a fixed plugin id does not match ``id_pattern``, or
        ``tenant_required=True`` without a tenant resolver.
    """

    def __init__(
        self,
        app: App,
        manager: CacheManager | None,
        *,
        plugin: str | PluginResolver,
        tenant: TenantResolver | None,
        tenant_required: bool | None,
        id_pattern: str | re.Pattern[str],
        cache_header: bool,
    ) -> None:
        self.app = app
        self.manager = manager
        self.resolver = ScopeResolver(
            plugin, tenant, tenant_required=tenant_required, id_pattern=id_pattern
        )
        self.cache_header = cache_header

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(app={self.app!r}, manager={self.manager!r}, "
            f"plugin={self.resolver.plugin!r}, tenant={self.resolver.tenant!r})"
        )

    def request_manager(self) -> CacheManager:
        """The manager a request uses: the one given, else the active one."""
        return self.manager if self.manager is not None else active_manager()

    def outcome(self) -> CacheOutcome | None:
        """A fresh ``X-Cache`` outcome for a request, when the header was asked for."""
        return CacheOutcome() if self.cache_header else None


class RequestScope:
    """A ``with`` block binding one request's scope and, when kept, its ``X-Cache``
    outcome; both are unbound on the way out, also when the app raises.

    :param binding: the request's resolved binding.
    :param noted: the outcome ``@cached`` calls count into, or ``None``.
    """

    __slots__ = ("_noting", "_token", "binding", "noted")

    def __init__(self, binding: Binding, noted: CacheOutcome | None) -> None:
        self.binding = binding
        self.noted = noted
        self._token: Token[Binding | None] | None = None
        self._noting: Token[CacheOutcome | None] | None = None

    def __repr__(self) -> str:
        return f"RequestScope({self.binding.scope!r}, noted={self.noted!r})"

    def __enter__(self) -> None:
        self._token = bind(self.binding)
        if self.noted is not None:
            self._noting = request_outcome.set(self.noted)

    def __exit__(self, *exc_info: object) -> None:
        if self._noting is not None:
            request_outcome.reset(self._noting)
        if self._token is not None:
            unbind(self._token)
