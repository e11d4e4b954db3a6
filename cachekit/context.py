"""The request scope: which plugin and tenant the running code works for.

A middleware (:class:`cachekit.host.CacheMiddleware`, :class:`cachekit.host.WSGICacheMiddleware`)
or :func:`scope` binds a :class:`Scope` in a context variable; :func:`current_cache`,
``@cached`` and ``counter()`` read it from there, so plugin code never names its own
plugin or tenant::

    from cachekit import carry, current_cache      # plugin code
    from cachekit.host import scope                 # the host's

    async def endpoint(request):              # under CacheMiddleware
        await current_cache().aset("k", 1)

    with scope(plugin="catalog", tenant="acme"):   # a background job or a CLI script
        current_cache().get("k")

Context variables follow the code that runs for a request: every asyncio task and every
thread Starlette or anyio starts for it copies them, so sync endpoints in a thread pool,
streaming bodies and background tasks all see the request's scope, and nothing else does.
A thread plugin code starts itself copies nothing: :func:`carry` takes the current scope
along (and only that one: plugin code cannot name a scope).

Which manager is used: the one passed to :func:`scope` or the middleware; else the one an
enclosing scope or middleware lifespan made active; else the process default; else an
in-memory :class:`~cachekit.host.CacheManager` created on first use.

One manager per process: the manager given to a middleware (ASGI or WSGI), the Flask
extension, :func:`cachekit.contrib.starlette.install` or :func:`set_default_manager` becomes
the process default, so :func:`scope` without ``manager=`` in a background job writes where
the app's requests do. The first one registered stays: a later, *different* manager is not
made the default (one warning is logged, logger ``cachekit``) unless it is passed with
``set_default_manager(manager, replace=True)``. A process hosting several apps with their own
managers keeps working: each middleware binds its own manager per request, and code outside
requests passes ``manager=`` where the other manager is meant.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import weakref
from collections.abc import Callable, Coroutine
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, overload

from cachekit.cache import Cache
from cachekit.config.schema import DEFAULT_BINDING, check_binding_name
from cachekit.errors import NoScopeError
from cachekit.keys import escape_segment
from cachekit.manager import CacheManager

if TYPE_CHECKING:
    from cachekit.stores import Store

__all__ = [
    "Binding",
    "CacheOutcome",
    "Scope",
    "ScopeContext",
    "activate_manager",
    "active_manager",
    "bind",
    "cache_lookup",
    "caching_disabled",
    "carry",
    "current_cache",
    "current_scope",
    "deactivate_manager",
    "get_default_manager",
    "scope",
    "set_default_manager",
    "store_of",
    "unbind",
]

P = ParamSpec("P")
R = TypeVar("R")

NO_SCOPE_MESSAGE: Final = (
    "no cachekit scope is bound here: serve the app through cachekit.host.CacheMiddleware "
    "(ASGI) or cachekit.host.WSGICacheMiddleware (WSGI), or wrap the code in "
    "`with cachekit.host.scope(plugin='my-plugin', tenant=...):` (background jobs, CLI "
    "scripts, tests); plugin code that starts a thread or a callback passes it "
    "cachekit.carry(fn) to take its scope along"
)


@dataclass(frozen=True, slots=True)
class Scope:
    """Who the running code works for: a plugin id, and a tenant id or ``None`` for the
    platform scope (data shared by every tenant of the plugin)."""

    plugin: str
    tenant: str | None = None


class Binding:
    """A :class:`Scope` bound to a manager, with its :class:`~cachekit.Cache` built once.

    This is the value the context variable holds; reusing one binding for many requests
    of the same scope keeps :func:`current_cache` to a variable read and an attribute
    access.

    :raises CacheKeyError: an id is empty or not a ``str``.
    """

    __slots__ = ("cache", "manager", "namespaces", "scope")

    def __init__(self, manager: CacheManager, scope: Scope) -> None:
        self.manager = manager
        self.scope = scope
        self.cache = manager.for_plugin(scope.plugin, scope.tenant)
        # namespace name -> its cache on the default binding; (binding, namespace or
        # None) -> a cache on a named one
        self.namespaces: dict[str | tuple[str, str | None], Cache] = {}

    def __repr__(self) -> str:
        return f"Binding({self.scope!r}, manager={self.manager!r})"

    def namespace(self, name: str) -> Cache:
        """The cache of namespace ``name`` in this scope (built once, then reused).

        :raises CacheKeyError: ``name`` is empty or not a ``str``.
        """
        try:
            return self.namespaces[name]
        except KeyError:
            pass
        cache = self.cache.namespace(name)
        if len(self.namespaces) < 256:  # a bound: namespaces are few, names from code
            self.namespaces[name] = cache
        return cache

    def on(self, binding: str, namespace: str | None = None) -> Cache:
        """The cache of this scope on binding ``binding`` (or of its namespace
        ``namespace``), built once, then reused.

        :raises CachePolicyError: the plugin is not granted ``binding``.
        :raises CacheKeyError: ``namespace`` is empty or not a ``str``.
        """
        if binding == DEFAULT_BINDING:
            return self.cache if namespace is None else self.namespace(namespace)
        cache = self.namespaces.get((binding, namespace))
        if cache is not None:
            return cache
        root = self.namespaces.get((binding, None))
        if root is None:
            root = self.manager.for_plugin(self.scope.plugin, self.scope.tenant, binding=binding)
            self.namespaces[(binding, None)] = root
        cache = root if namespace is None else root.namespace(namespace)
        if len(self.namespaces) < 256:
            self.namespaces[(binding, namespace)] = cache
        return cache


class CacheOutcome:
    """How the ``@cached`` calls of one request went, for the middlewares' opt-in
    ``X-Cache`` header: ``MISS`` if any call missed, ``HIT`` if all hit, none if none ran."""

    __slots__ = ("hits", "misses")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"CacheOutcome(hits={self.hits}, misses={self.misses})"

    def note(self, missed: bool) -> None:
        """Count one ``@cached`` call."""
        if missed:
            self.misses += 1
        else:
            self.hits += 1

    @property
    def header(self) -> str | None:
        """The ``X-Cache`` value, or ``None`` when no ``@cached`` call ran."""
        if self.misses:
            return "MISS"
        return "HIT" if self.hits else None


outcome: Final[ContextVar[CacheOutcome | None]] = ContextVar("cachekit.outcome", default=None)
"""Set by a middleware with ``cache_header=True``; ``@cached`` counts into it."""

caching_disabled: Final[ContextVar[bool]] = ContextVar("cachekit.caching_disabled", default=False)
"""``True`` inside :func:`cachekit.testing.disabled`: ``@cached`` calls through and stores
nothing."""

_binding: Final[ContextVar[Binding | None]] = ContextVar("cachekit.binding", default=None)
_manager: Final[ContextVar[CacheManager | None]] = ContextVar("cachekit.manager", default=None)

log = logging.getLogger("cachekit")

_default_lock = threading.Lock()
_default_manager: CacheManager | None = None
_default_implicit = False  # the default is the in-memory manager made on first use
_refused: weakref.WeakSet[CacheManager] = weakref.WeakSet()  # warned about once each


def get_default_manager() -> CacheManager | None:
    """The process default manager, or ``None`` when none is registered (without creating
    one). An in-memory manager created on first use counts as none."""
    return None if _default_implicit else _default_manager


def set_default_manager(
    manager: CacheManager | None, *, replace: bool = False
) -> CacheManager | None:
    """Register ``manager`` as the process default: the one :func:`scope` without
    ``manager=``, :func:`current_cache` in background threads and tasks, and middlewares
    given no manager use. The middlewares, the Flask extension and
    :func:`cachekit.contrib.starlette.install` call this with the manager they are given.

    The first manager registered stays the default: registering it again does nothing, and
    a *different* manager is not made the default — one warning is logged (logger
    ``cachekit``) naming both — unless ``replace=True``. The in-memory manager created on
    first use (code ran :func:`scope` before any manager was registered) is replaced by the
    first registered one, with a warning, as what was written to it stays in memory.

    :param manager: the manager, or ``None`` to unregister (back to an in-memory manager
        created on first use).
    :param replace: replace a different default already registered.
    :returns: the default in effect after the call (``manager`` unless it was refused).
    """
    global _default_manager, _default_implicit
    with _default_lock:
        current = _default_manager
        if manager is None or replace or current is None or current is manager:
            _default_manager, _default_implicit = manager, False
            return manager
        if _default_implicit:
            _default_manager, _default_implicit = manager, False
            log.warning(
                "cachekit: %s is now the default manager; code ran scope() without a "
                "manager before it was registered, and what it wrote went to an in-memory "
                "manager: register the manager before that code runs",
                _named(manager),
            )
            return manager
        if manager not in _refused:
            _refused.add(manager)
            log.warning(
                "cachekit: the default manager stays %s; %s was not made the default "
                "(scope() without manager= and current_cache() outside requests keep using "
                "the first). Pass manager= where the second is meant, or replace the default "
                "explicitly: cachekit.host.set_default_manager(manager, replace=True)",
                _named(current),
                _named(manager),
            )
        return current


def _named(manager: CacheManager) -> str:
    return f"{manager!r} (id 0x{id(manager):x})"


def _default() -> CacheManager:
    global _default_manager, _default_implicit
    manager = _default_manager
    if manager is None:
        with _default_lock:
            if _default_manager is None:
                _default_manager, _default_implicit = CacheManager(), True
            manager = _default_manager
    return manager


def active_manager() -> CacheManager:
    """The manager code running here should use: the bound scope's, else the one a
    middleware's lifespan made active, else the process default (see
    :func:`set_default_manager`), else a lazily created in-memory manager."""
    binding = _binding.get()
    if binding is not None:
        return binding.manager
    manager = _manager.get()
    return manager if manager is not None else _default()


def current_scope() -> Scope:
    """The :class:`Scope` bound in this context.

    :raises NoScopeError: no scope is bound (the message says how to bind one).
    """
    binding = _binding.get()
    if binding is None:
        raise NoScopeError(NO_SCOPE_MESSAGE)
    return binding.scope


def current_cache(namespace: str | None = None, *, binding: str | None = None) -> Cache:
    """The :class:`~cachekit.Cache` of the bound scope, or of its namespace ``namespace``,
    on the default binding or on ``binding``.

    Cheap enough to call on every use: the caches are built once per scope.

    :param namespace: a namespace within the scope (``None``: the default namespace).
    :param binding: a binding the host granted the plugin (``backend.cache.bindings``);
        ``None`` or ``"default"``: ``backend.cache`` itself.
    :raises NoScopeError: no scope is bound (the message says how to bind one).
    :raises CacheKeyError: ``namespace`` is empty or not a ``str``.
    :raises CachePolicyError: the plugin is not granted ``binding`` (naming the plugin,
        the binding and the ones it is granted).
    """
    bound = _binding.get()
    if bound is None:
        raise NoScopeError(NO_SCOPE_MESSAGE)
    if binding is not None:
        return bound.on(binding, namespace)
    if namespace is None:
        return bound.cache
    cache = bound.namespaces.get(namespace)
    return cache if cache is not None else bound.namespace(namespace)


def cache_lookup(binding: str | None) -> Callable[[str | None], Cache]:
    """What a helper bound to ``binding`` calls for its cache: ``lookup(namespace)``.
    :func:`current_cache` itself for the default binding; for another, a function that
    finds the scope's cache with one dictionary read (the helper resolves its binding
    once, when it is made, not per call).

    :raises CacheKeyError: ``binding`` is not a valid binding name.
    """
    if binding is None or binding == DEFAULT_BINDING:
        return current_cache
    check_binding_name(binding)

    def lookup(namespace: str | None) -> Cache:
        bound = _binding.get()
        if bound is None:
            raise NoScopeError(NO_SCOPE_MESSAGE)
        cache = bound.namespaces.get((binding, namespace))
        return cache if cache is not None else bound.on(binding, namespace)

    return lookup


def store_of(cache: Cache) -> Store:
    """The store behind ``cache`` (of the active manager): what outage bookkeeping keys
    on (a plugin's :class:`~cachekit.Cache` hands out no store)."""
    manager, binding = active_manager(), cache.binding
    return manager.store if binding == DEFAULT_BINDING else manager.binding(binding).store


# For middlewares (application code uses scope()): ``token = bind(binding)`` binds a
# Binding in the current context, ``unbind(token)`` undoes it. They are the context
# variable's own methods, so a request pays no extra call for them.
bind: Final[Callable[[Binding | None], Token[Binding | None]]] = _binding.set
unbind: Final[Callable[[Token[Binding | None]], None]] = _binding.reset


def activate_manager(manager: CacheManager) -> Token[CacheManager | None]:
    """Make ``manager`` active in the current context without binding a scope (a
    middleware does this for its lifespan); pass the token to :func:`deactivate_manager`."""
    return _manager.set(manager)


def deactivate_manager(token: Token[CacheManager | None]) -> None:
    """Undo the :func:`activate_manager` that returned ``token``."""
    _manager.reset(token)


class ScopeContext:
    """What :func:`scope` returns: a context manager (``with``, ``async with``) and a
    decorator (on ``def`` and ``async def``) that binds one scope.

    The decorator form binds afresh on every call and may be used from many threads and
    tasks at once. As a context manager one object may be re-entered (nested), but not
    entered from concurrently running tasks: make one ``scope(...)`` per task.
    """

    __slots__ = ("_binding", "_manager", "_tokens", "scope")

    def __init__(self, scope: Scope, manager: CacheManager | None) -> None:
        self.scope = scope
        self._manager = manager
        # An explicit manager: validate the ids and build the cache now, once.
        self._binding = Binding(manager, scope) if manager is not None else None
        self._tokens: list[Token[Binding | None]] = []

    def __repr__(self) -> str:
        return f"scope(plugin={self.scope.plugin!r}, tenant={self.scope.tenant!r})"

    def _resolve(self) -> Binding:
        binding = self._binding
        if binding is not None and self._manager is not None:
            return binding
        manager = active_manager()
        if binding is None or binding.manager is not manager:
            binding = self._binding = Binding(manager, self.scope)
        return binding

    def __enter__(self) -> Cache:
        binding = self._resolve()
        self._tokens.append(_binding.set(binding))
        return binding.cache

    def __exit__(self, *exc_info: object) -> None:
        _binding.reset(self._tokens.pop())

    async def __aenter__(self) -> Cache:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__(*exc_info)

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate ``fn`` so every call runs in this scope.

        :raises TypeError: ``fn`` is a generator function (its body runs between the
            caller's steps, where a scope cannot stay bound safely).
        """
        _refuse_generator(fn, "scope() cannot decorate")
        resolve = self._resolve
        if _is_async_callable(fn):

            @functools.wraps(fn)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                token = _binding.set(resolve())
                try:
                    return await fn(*args, **kwargs)
                finally:
                    _binding.reset(token)

            return run_async

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> Any:
            token = _binding.set(resolve())
            try:
                return fn(*args, **kwargs)
            finally:
                _binding.reset(token)

        return run


def _refuse_generator(fn: Callable[..., Any], what: str) -> None:
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"{what} the generator function {fn.__qualname__}: its body runs between the "
            "caller's steps; bind the scope around the code that consumes it instead"
        )


def _is_async_callable(fn: object) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or (
        callable(fn) and inspect.iscoroutinefunction(type(fn).__call__)
    )


def scope(
    plugin: str, tenant: str | None = None, manager: CacheManager | None = None
) -> ScopeContext:
    """Bind a plugin scope for a block or a function: ``with``, ``async with``, or a
    decorator on ``def`` / ``async def``. The scope is unbound on the way out, also when
    the code raises; an enclosing scope is restored.

    ::

        with cachekit.host.scope(plugin="catalog", tenant="acme") as cache:
            cache.set("k", 1)           # the same object as current_cache()

        @cachekit.host.scope(plugin="reports")
        async def nightly_job() -> None:
            await cachekit.current_cache().aincr("runs")

    :param plugin: the plugin id.
    :param tenant: the tenant id, or ``None`` for the platform scope.
    :param manager: the manager to use (default: the active one, see :func:`active_manager`).
    :raises CacheKeyError: an id is empty or not a ``str``.
    """
    escape_segment(plugin, "plugin id")
    if tenant is not None:
        escape_segment(tenant, "tenant id")
    return ScopeContext(Scope(plugin, tenant), manager)


class _Carried:
    """What :func:`carry` returns for a sync callable: ``fn`` run in the binding that was
    current when it was made. The binding is kept private: nothing public leads from here
    to the manager or to another scope."""

    __slots__ = ("__wrapped__", "_bound")

    def __init__(self, fn: Callable[..., Any], bound: Binding) -> None:
        self.__wrapped__ = fn
        self._bound = bound

    def __repr__(self) -> str:
        return f"carry({self.__wrapped__!r}, scope={self._bound.scope!r})"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        token = _binding.set(self._bound)
        try:
            return self.__wrapped__(*args, **kwargs)
        finally:
            _binding.reset(token)


class _AsyncCarried(_Carried):
    """:class:`_Carried` for an async callable: the scope is bound while it is awaited."""

    __slots__ = ()

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        token = _binding.set(self._bound)
        try:
            return await self.__wrapped__(*args, **kwargs)
        finally:
            _binding.reset(token)


def carry(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn``, bound to the scope current *now* wherever it is called later: in a thread
    (threads do not copy context variables), an executor, a callback of a library that
    keeps no context. The way plugin code takes its own scope along; it cannot name
    another (the host binds scopes with :func:`cachekit.host.scope`)::

        threading.Thread(target=cachekit.carry(warm_up)).start()
        executor.submit(cachekit.carry(rebuild_index), region)

    asyncio tasks need nothing: they copy the context of the code that creates them.

    :raises NoScopeError: no scope is bound here (nothing to carry).
    :raises TypeError: ``fn`` is a generator function.
    """
    bound = _binding.get()
    if bound is None:
        raise NoScopeError(NO_SCOPE_MESSAGE)
    _refuse_generator(fn, "carry() cannot wrap")
    cls = _AsyncCarried if _is_async_callable(fn) else _Carried
    return cls(fn, bound)
