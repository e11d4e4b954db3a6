"""How a middleware finds the plugin and tenant of a request.

Both middlewares (:class:`cachekit.host.CacheMiddleware` for ASGI,
:class:`cachekit.wsgi.CacheMiddleware` for WSGI) see a request through one small
:class:`RequestView` — path, headers, host and the ``state`` an earlier (authentication)
layer left — and ask two resolvers for ids:

* **plugin**: a plain string (a fixed id), :func:`path_prefix`, :func:`path_segment`, or
  any callable ``(view) -> str | None``. ``None`` means "no such plugin": the request gets
  a 404.
* **tenant**: :func:`header`, :func:`subdomain`, :func:`state`, any callable, or ``None``
  for the platform scope. ``None`` from a resolver means "no tenant given": a 400 when the
  tenant is required (the default), else the platform scope.

Every id is validated before the app runs (default :data:`DEFAULT_ID_PATTERN`: 1-64
characters of ``A-Za-z0-9._-``); a bad one gets a 400 with a short JSON body
``{"error": "...", "expected": "..."}``: ``expected`` names where a built-in resolver looks
(``"header X-Tenant-ID"``, ``"path prefix /api/catalog or /api/reviews"``; absent for a
custom callable). Each refusal is logged at DEBUG (logger ``cachekit``) with its reason.

Paths that belong to no plugin or tenant — API docs, health probes, metrics — are listed in
the middleware's ``exclude=`` (see :data:`Exclude`): they run without a scope.

.. warning::

   A tenant id read from a client-controlled header, host or path is only a *claim*. Put an
   authentication layer in front of the middleware that checks the caller belongs to that
   tenant (and rejects the request otherwise), or better, let that layer put the verified
   tenant in the request state and resolve it with :func:`state`. The cache keeps tenants
   apart; it cannot know who is allowed to claim which tenant.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from cachekit.context import Binding, Scope
from cachekit.manager import CacheManager

__all__ = [
    "DEFAULT_ID_PATTERN",
    "Exclude",
    "PluginResolver",
    "Rejection",
    "RequestView",
    "ScopeResolver",
    "TenantResolver",
    "header",
    "path_prefix",
    "path_segment",
    "state",
    "subdomain",
]

DEFAULT_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""Plugin and tenant ids a middleware accepts unless told otherwise (whole-string match)."""

PluginResolver = Callable[["RequestView"], str | None]
"""Finds the plugin id of a request; ``None``: unknown plugin (404)."""
TenantResolver = Callable[["RequestView"], str | None]
"""Finds the tenant id of a request; ``None``: no tenant given."""
Exclude = str | Iterable[str] | Callable[[str], bool]
"""The requests a middleware passes to the app without a scope (``exclude=``): paths, or a
callable of the path inside the app returning ``True`` to exclude it.

* ``"/healthz"`` excludes that exact path only: not ``/healthzz``, not ``/healthz/``;
* ``"/docs/*"`` (a trailing ``/*``) excludes ``/docs`` and every path under ``/docs/``:
  whole segments, so not ``/docsearch``. ``*`` is a wildcard nowhere else.

The path is the one resolvers see (ASGI ``path`` without ``root_path``, WSGI ``PATH_INFO``).
"""

log = logging.getLogger("cachekit")


# --- reading a request: shared by the view and the built-in resolvers' direct paths ------

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


def _asgi_path(scope: Mapping[str, Any]) -> str:
    """The path inside the app: ASGI ``path`` without ``root_path`` (as Starlette routes)."""
    path: str = scope["path"]
    root_path: str | None = scope.get("root_path")
    if root_path and path.startswith(root_path):
        rest = path[len(root_path) :]
        if not rest or rest[0] == "/":
            return rest
    return path


def _wsgi_path(environ: Mapping[str, Any]) -> str:
    """``PATH_INFO``, decoded as UTF-8 from PEP 3333's latin-1 transport."""
    path: str = environ.get("PATH_INFO", "")
    if not path.isascii():
        # Not UTF-8: keep the raw characters (they match no id of the default pattern).
        with contextlib.suppress(UnicodeError):
            path = path.encode("latin-1").decode("utf-8")
    return path


@functools.lru_cache(maxsize=256)
def _asgi_header_name(name: str) -> bytes:
    return name.lower().encode("latin-1")


def _wsgi_header_key(name: str) -> str:
    key = name.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key


def _asgi_header(raw: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """One header of an ASGI ``headers`` list (names arrive in lower case, as the ASGI
    spec asks of servers); repeats are joined with ``", "`` as WSGI servers do, so a
    repeated tenant header fails validation instead of picking one."""
    found = None
    for key, value in raw:
        if key == name:
            found = value if found is None else found + b", " + value
    return None if found is None else found.decode("latin-1")


def _host(header: str | None, server_name: str) -> str:
    """The host name from a ``Host`` header (else the server's name): lower case, no
    port; IPv6 literals keep their brackets."""
    host = (header or server_name).strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    return host.rsplit(":", 1)[0] if ":" in host else host


def _asgi_server_name(scope: Mapping[str, Any]) -> str:
    server = scope.get("server")
    return str(server[0]) if server else ""


# --- the request view ------------------------------------------------------------------


class _AsgiHeaders(Mapping[str, str]):
    """Case-insensitive, read-only view of ASGI ``headers`` (repeats joined)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw

    def get(self, key: str, default: Any = None) -> Any:
        value = _asgi_header(self._raw, _asgi_header_name(key))
        return default if value is None else value

    def __getitem__(self, key: str) -> str:
        value = _asgi_header(self._raw, _asgi_header_name(key))
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k.decode("latin-1") for k, _ in self._raw))

    def __len__(self) -> int:
        return len({k for k, _ in self._raw})

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


class _WsgiHeaders(Mapping[str, str]):
    """Case-insensitive, read-only view of the ``HTTP_*`` keys of a WSGI environ."""

    __slots__ = ("_environ",)

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self._environ = environ

    def get(self, key: str, default: Any = None) -> Any:
        value = self._environ.get(_wsgi_header_key(key))
        return default if value is None else value

    def __getitem__(self, key: str) -> str:
        value: str | None = self._environ.get(_wsgi_header_key(key))
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        for key in self._environ:
            if key.startswith("HTTP_"):
                yield key[5:].replace("_", "-").lower()
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and self._environ[key]:
                yield key.replace("_", "-").lower()

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


class RequestView:
    """The parts of a request resolvers look at, the same for ASGI and WSGI.

    :ivar path: the path inside the app (ASGI ``path`` without ``root_path``; WSGI
        ``PATH_INFO``), percent-decoded.
    :ivar headers: the request headers, a case-insensitive read-only mapping.
    :ivar state: what earlier layers left for this request: the ASGI scope's ``state``
        dict (Starlette's ``request.state``), or the WSGI environ itself.
    :ivar raw: the ASGI scope or WSGI environ, for resolvers that need more.
    """

    __slots__ = ("_server_name", "headers", "path", "raw", "state")

    def __init__(
        self,
        path: str,
        headers: Mapping[str, str],
        state: Mapping[str, Any],
        raw: Mapping[str, Any],
        server_name: str = "",
    ) -> None:
        self.path = path
        self.headers = headers
        self.state = state
        self.raw = raw
        self._server_name = server_name

    @classmethod
    def from_asgi(cls, scope: Mapping[str, Any]) -> RequestView:
        """The view of an ASGI ``http`` or ``websocket`` scope."""
        return cls(
            _asgi_path(scope),
            _AsgiHeaders(scope["headers"]),
            scope.get("state") or _EMPTY,
            scope,
            _asgi_server_name(scope),
        )

    @classmethod
    def from_wsgi(cls, environ: Mapping[str, Any]) -> RequestView:
        """The view of a WSGI environ."""
        return cls(
            _wsgi_path(environ),
            _WsgiHeaders(environ),
            environ,
            environ,
            environ.get("SERVER_NAME", ""),
        )

    @property
    def host(self) -> str:
        """The requested host name: the ``Host`` header (else the server's name), in lower
        case, without port; IPv6 literals keep their brackets."""
        return _host(self.headers.get("host"), self._server_name)

    def __repr__(self) -> str:
        return f"RequestView(path={self.path!r}, host={self.host!r})"


# --- the built-in resolvers -------------------------------------------------------------


class _Builtin:
    """A built-in resolver. Called with a :class:`RequestView` like any resolver; the
    middlewares call :meth:`asgi` / :meth:`wsgi` instead, which read the one thing needed
    straight from the ASGI scope or WSGI environ (no view is built per request)."""

    __slots__ = ()

    def __call__(self, view: RequestView) -> str | None:
        raise NotImplementedError

    @property
    def source(self) -> str:
        """Where this resolver looks, for the ``expected`` of a refusal: ``header X-Tenant-ID``."""
        raise NotImplementedError

    def asgi(self, scope: Mapping[str, Any]) -> str | None:
        raise NotImplementedError

    def wsgi(self, environ: Mapping[str, Any]) -> str | None:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class _PathPrefix(_Builtin):
    prefixes: tuple[tuple[str, str, str], ...]  # (prefix, prefix + "/", plugin)
    default: str | None

    def match(self, path: str) -> str | None:
        for prefix, directory, plugin in self.prefixes:
            if path.startswith(directory) or path == prefix:
                return plugin
        return self.default

    def __call__(self, view: RequestView) -> str | None:
        return self.match(view.path)

    def asgi(self, scope: Mapping[str, Any]) -> str | None:
        return self.match(_asgi_path(scope))

    def wsgi(self, environ: Mapping[str, Any]) -> str | None:
        return self.match(_wsgi_path(environ))

    @property
    def source(self) -> str:
        return "path prefix " + " or ".join(sorted(prefix for prefix, _, _ in self.prefixes))

    def __repr__(self) -> str:
        prefixes = {prefix: plugin for prefix, _, plugin in self.prefixes}
        return f"path_prefix({prefixes!r}, default={self.default!r})"


def path_prefix(prefixes: Mapping[str, str], *, default: str | None = None) -> PluginResolver:
    """Plugin id by path prefix: ``path_prefix({"/api/catalog": "catalog"})``.

    A prefix matches whole path segments (``/api/catalog`` matches ``/api/catalog`` and
    ``/api/catalog/items``, not ``/api/catalogue``); the longest matching prefix wins.

    :param prefixes: path prefix -> plugin id.
    :param default: the plugin id for paths no prefix matches (for example ``"host"`` for
        the host's own routes); ``None``: such requests get a 404.
    :raises ValueError: a prefix does not start with ``/``, or is listed twice.
    """
    normalized: dict[str, str] = {}
    for prefix, plugin in prefixes.items():
        if not prefix.startswith("/"):
            raise ValueError(f"path prefixes start with '/', got {prefix!r}")
        key = prefix.rstrip("/") or "/"
        if key in normalized:
            raise ValueError(f"path prefix {prefix!r} is listed twice")
        normalized[key] = plugin
    ordered = sorted(normalized.items(), key=lambda item: len(item[0]), reverse=True)
    return _PathPrefix(
        tuple((p, p if p == "/" else p + "/", plugin) for p, plugin in ordered), default
    )


@dataclass(frozen=True, slots=True)
class _PathSegment(_Builtin):
    index: int
    known: frozenset[str] | None
    default: str | None

    def match(self, path: str) -> str | None:
        parts = path.split("/", self.index + 2)
        if len(parts) <= self.index + 1 or not parts[self.index + 1]:
            return self.default
        segment = parts[self.index + 1]
        if self.known is not None and segment not in self.known:
            return self.default
        return segment

    def __call__(self, view: RequestView) -> str | None:
        return self.match(view.path)

    def asgi(self, scope: Mapping[str, Any]) -> str | None:
        return self.match(_asgi_path(scope))

    def wsgi(self, environ: Mapping[str, Any]) -> str | None:
        return self.match(_wsgi_path(environ))

    @property
    def source(self) -> str:
        where = f"path segment {self.index}"
        return where if self.known is None else f"{where}: {' or '.join(sorted(self.known))}"

    def __repr__(self) -> str:
        known = None if self.known is None else sorted(self.known)
        return f"path_segment({self.index}, known={known!r}, default={self.default!r})"


def path_segment(
    index: int, *, known: Iterable[str] | None = None, default: str | None = None
) -> PluginResolver:
    """Plugin id from one path segment, counted from 0: ``path_segment(1)`` reads
    ``catalog`` in ``/api/catalog/items``.

    :param index: which segment.
    :param known: the plugin ids that exist; any other segment counts as no plugin.
        Without it, any valid segment names a plugin.
    :param default: the plugin id when the path has no such segment or names no known
        plugin (for example ``"host"`` for the host's own routes); ``None``: such requests
        get a 404.
    :raises ValueError: ``index`` is negative.
    """
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    return _PathSegment(index, None if known is None else frozenset(known), default)


@dataclass(frozen=True, slots=True)
class _Header(_Builtin):
    name: str
    asgi_name: bytes
    wsgi_key: str

    def __call__(self, view: RequestView) -> str | None:
        value: str | None = view.headers.get(self.name)
        return value

    def asgi(self, scope: Mapping[str, Any]) -> str | None:
        return _asgi_header(scope["headers"], self.asgi_name)

    def wsgi(self, environ: Mapping[str, Any]) -> str | None:
        value: str | None = environ.get(self.wsgi_key)
        return value

    @property
    def source(self) -> str:
        return f"header {self.name}"

    def __repr__(self) -> str:
        return f"header({self.name!r})"


def header(name: str) -> TenantResolver:
    """Tenant id from a request header: ``header("X-Tenant-ID")``.

    The client chooses this value. Only use it behind an authentication layer that
    verifies the caller may act for that tenant (or rejects the request).

    :param name: the header name (any case).
    """
    return _Header(name, _asgi_header_name(name), _wsgi_header_key(name))


@dataclass(frozen=True, slots=True)
class _Subdomain(_Builtin):
    base: str | None

    def match(self, host: str) -> str | None:
        if not host or host.startswith("["):
            return None
        if self.base is not None:
            suffix = "." + self.base
            if not host.endswith(suffix):
                return None
            label = host[: -len(suffix)]
            return label if label and "." not in label else None
        try:
            ipaddress.ip_address(host)
        except ValueError:
            labels = host.split(".")
            return labels[0] if len(labels) >= 3 else None
        return None

    def __call__(self, view: RequestView) -> str | None:
        return self.match(view.host)

    def asgi(self, scope: Mapping[str, Any]) -> str | None:
        host = _asgi_header(scope["headers"], b"host")
        return self.match(_host(host, _asgi_server_name(scope)))

    def wsgi(self, environ: Mapping[str, Any]) -> str | None:
        return self.match(_host(environ.get("HTTP_HOST"), environ.get("SERVER_NAME", "")))

    @property
    def source(self) -> str:
        return "subdomain" if self.base is None else f"subdomain of {self.base}"

    def __repr__(self) -> str:
        return f"subdomain({self.base!r})"


def subdomain(base: str | None = None) -> TenantResolver:
    """Tenant id from the first label of the host: ``acme`` in ``acme.example.com``.

    :param base: the domain tenants live under (``"example.com"``); then only hosts
        ``<tenant>.example.com`` name a tenant. Without it, the first label of any host with
        three or more labels does (IP addresses never do).
    """
    return _Subdomain(None if base is None else base.strip(".").lower())


@dataclass(frozen=True, slots=True)
class _State(_Builtin):
    key: str

    def convert(self, value: object) -> str | None:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int | uuid.UUID) and not isinstance(value, bool):
            return str(value)
        raise TypeError(
            f"request state {self.key!r} holds a {type(value).__name__}; "
            "a tenant id must be a str, an int or a UUID"
        )

    def __call__(self, view: RequestView) -> str | None:
        return self.convert(view.state.get(self.key))

    def asgi(self, scope: Mapping[str, Any]) -> str | None:
        return self.convert((scope.get("state") or _EMPTY).get(self.key))

    def wsgi(self, environ: Mapping[str, Any]) -> str | None:
        return self.convert(environ.get(self.key))

    @property
    def source(self) -> str:
        return f"request state {self.key}"

    def __repr__(self) -> str:
        return f"state({self.key!r})"


def state(key: str) -> TenantResolver:
    """Tenant id that an authentication layer stored for this request: ASGI
    ``scope["state"][key]`` (Starlette's ``request.state.<key>``), WSGI ``environ[key]``.

    The preferred resolver: the id comes from verified credentials, not from the client.
    ``str``, ``int`` and ``UUID`` values are accepted.

    :param key: the state key (for WSGI, conventionally dotted: ``"myauth.tenant"``).
    :raises TypeError: (when resolving) the state holds another type.
    """
    return _State(key)


# --- excluded paths ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ExcludedPaths:
    exact: frozenset[str]
    prefixes: tuple[tuple[str, str], ...]  # (prefix, prefix + "/")

    def __call__(self, path: str) -> bool:
        if path in self.exact:
            return True
        for prefix, directory in self.prefixes:
            if path.startswith(directory) or path == prefix:
                return True
        return False

    def __repr__(self) -> str:
        paths = sorted([*self.exact, *(prefix + "/*" for prefix, _ in self.prefixes)])
        return f"exclude({paths!r})"


def excluded_paths(exclude: Exclude | None) -> Callable[[str], bool] | None:
    """The test for ``exclude=`` (see :data:`Exclude`), or ``None`` when nothing is
    excluded, so a middleware without exclusions skips the check.

    :raises TypeError: ``exclude`` is neither paths nor a callable.
    :raises ValueError: a path does not start with ``/``, or has a ``*`` other than a
        trailing ``/*``.
    """
    if exclude is None:
        return None
    if isinstance(exclude, str):
        exclude = (exclude,)
    elif callable(exclude):
        return exclude
    elif not isinstance(exclude, Iterable):
        raise TypeError(f"exclude takes paths (str) or a callable, got {exclude!r}")
    exact: set[str] = set()
    prefixes: set[str] = set()
    for path in exclude:
        if not isinstance(path, str):
            raise TypeError(f"exclude takes paths (str) or a callable, got {path!r}")
        if not path.startswith("/"):
            raise ValueError(f"excluded paths start with '/', got {path!r}")
        prefix = path.endswith("/*")
        base = path[:-2] if prefix else path
        if "*" in base:
            raise ValueError(
                f"excluded path {path!r}: '*' is only allowed as a trailing '/*' (a prefix "
                "of whole segments); use a callable for other patterns"
            )
        (prefixes if prefix else exact).add(base)
    if not exact and not prefixes:
        return None
    ordered = tuple((prefix, prefix + "/") for prefix in sorted(prefixes))
    return _ExcludedPaths(frozenset(exact), ordered)


# --- the part both middlewares share ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a request was refused before the app ran: an HTTP status, a short message and,
    when known, what was expected, sent as ``{"error": message, "expected": expected}``."""

    status: int
    message: str
    expected: str | None = None
    body: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        body = {"error": self.message}
        if self.expected is not None:
            body["expected"] = self.expected
        object.__setattr__(self, "body", json.dumps(body).encode())


_MEMO_SIZE: Final = 1024


class ScopeResolver:
    """Resolves and validates the (plugin, tenant) of each request and hands back the
    :class:`~cachekit.context.Binding` to bind, a :class:`Rejection`, or ``None`` for an
    excluded path (run the app without a scope). Both middlewares are thin shells around
    one of these.

    The per-request path is kept short: built-in resolvers read the ASGI scope or WSGI
    environ directly (a :class:`RequestView` is built only for custom callables), and the
    bindings of recently seen scopes are kept (at most 1024), so a request of a known scope
    costs the resolver calls and one dict lookup; ids are validated once, when first seen.
    Without ``exclude``, no path is looked at for it.

    :param plugin: a fixed plugin id or a :data:`PluginResolver`.
    :param tenant: a :data:`TenantResolver`, or ``None`` for the platform scope.
    :param tenant_required: what a request gets when the tenant resolver finds no tenant:
        a 400 when ``True`` (the default with a tenant resolver), the platform scope when
        ``False``. A tenant that is found but invalid is refused either way.
    :param id_pattern: the ids to accept (whole-string match).
    :param exclude: paths that run without a scope (see :data:`Exclude`).
    :raises TypeError: ``tenant`` is a string (use ``header("...")`` or a callable), a
        resolver is not callable, or ``exclude`` is neither paths nor a callable.
    :raises ValueError: the fixed plugin id does not match ``id_pattern``,
        ``tenant_required=True`` without a tenant resolver, or a bad excluded path.
    """

    def __init__(
        self,
        plugin: str | PluginResolver,
        tenant: TenantResolver | None = None,
        *,
        tenant_required: bool | None = None,
        id_pattern: str | re.Pattern[str] = DEFAULT_ID_PATTERN,
        exclude: Exclude | None = None,
    ) -> None:
        self.id_pattern = re.compile(id_pattern) if isinstance(id_pattern, str) else id_pattern
        if isinstance(plugin, str):
            if not self._valid(plugin):
                raise ValueError(f"plugin id {plugin!r} does not match {self.id_pattern.pattern!r}")
        elif not callable(plugin):
            raise TypeError(f"plugin must be an id or a callable, got {plugin!r}")
        if isinstance(tenant, str):
            raise TypeError(
                f"tenant={tenant!r} is a string: use tenant=header({tenant!r}) to read a "
                "header, state(...) for a value set by authentication, or a callable"
            )
        if tenant is not None and not callable(tenant):
            raise TypeError(f"tenant must be a callable or None, got {tenant!r}")
        if tenant is None and tenant_required:
            raise ValueError("tenant_required=True needs a tenant resolver (tenant=...)")
        self.plugin = plugin
        self.tenant = tenant
        self.tenant_required = tenant is not None if tenant_required is None else tenant_required
        self.exclude = excluded_paths(exclude)
        self._fixed = plugin if isinstance(plugin, str) else None
        self._find_plugin = None if isinstance(plugin, str) else plugin
        self._builtin_plugin = plugin if isinstance(plugin, _Builtin) else None
        self._builtin_tenant = tenant if isinstance(tenant, _Builtin) else None
        # Both ids readable without a view: fixed or built-in plugin, no or built-in tenant.
        self._direct = (self._fixed is not None or self._builtin_plugin is not None) and (
            tenant is None or self._builtin_tenant is not None
        )
        # (plugin, tenant) -> binding; only checked ids get in, so lookups with None miss.
        self._memo: dict[tuple[str | None, str | None], Binding] = {}
        self._lock = threading.Lock()
        self._rejections = self._refusals(self._builtin_plugin, self._builtin_tenant)

    def _refusals(
        self, plugin: _Builtin | None, tenant: _Builtin | None
    ) -> tuple[Rejection, Rejection, Rejection, Rejection]:
        """The four refusals (unknown plugin, invalid plugin, missing tenant, invalid
        tenant), each naming what was expected where the resolver is a built-in one."""
        ids = f"an id matching {self.id_pattern.pattern}"
        plugin_from = None if plugin is None else plugin.source
        tenant_from = None if tenant is None else tenant.source
        return (
            Rejection(404, "unknown plugin", plugin_from),
            Rejection(400, "invalid plugin id", ids if plugin is None else f"{plugin_from}: {ids}"),
            Rejection(400, "missing tenant id", tenant_from),
            Rejection(400, "invalid tenant id", ids if tenant is None else f"{tenant_from}: {ids}"),
        )

    def __repr__(self) -> str:
        excluded = "" if self.exclude is None else f", exclude={self.exclude!r}"
        return (
            f"ScopeResolver(plugin={self.plugin!r}, tenant={self.tenant!r}, "
            f"tenant_required={self.tenant_required!r}, "
            f"id_pattern={self.id_pattern.pattern!r}{excluded})"
        )

    def _valid(self, value: object) -> bool:
        if type(value) is not str:
            raise TypeError(f"an id resolver returned {type(value).__name__} {value!r}, not str")
        return self.id_pattern.fullmatch(value) is not None

    def resolve(self, view: RequestView, manager: CacheManager) -> Binding | Rejection | None:
        """The binding for the request seen through ``view``, why it is refused, or
        ``None`` when its path is excluded (the app runs without a scope).

        :raises TypeError: a resolver returned something other than ``str`` or ``None``.
        """
        exclude = self.exclude
        if exclude is not None and exclude(view.path):
            return None
        find = self._find_plugin
        plugin = self._fixed if find is None else find(view)
        tenant = None if self.tenant is None else self.tenant(view)
        binding = self._memo.get((plugin, tenant))
        if binding is not None and binding.manager is manager:
            return binding
        return self._check_and_bind(plugin, tenant, manager, view.path)

    def resolve_asgi(
        self, scope: Mapping[str, Any], manager: CacheManager
    ) -> Binding | Rejection | None:
        """:meth:`resolve` for an ASGI ``http`` or ``websocket`` scope."""
        if not self._direct:
            return self.resolve(RequestView.from_asgi(scope), manager)
        exclude = self.exclude
        if exclude is not None and exclude(_asgi_path(scope)):
            return None
        builtin = self._builtin_plugin
        plugin = self._fixed if builtin is None else builtin.asgi(scope)
        tenant = None if self._builtin_tenant is None else self._builtin_tenant.asgi(scope)
        binding = self._memo.get((plugin, tenant))
        if binding is not None and binding.manager is manager:
            return binding
        return self._check_and_bind(plugin, tenant, manager, scope.get("path"))

    def resolve_wsgi(
        self, environ: Mapping[str, Any], manager: CacheManager
    ) -> Binding | Rejection | None:
        """:meth:`resolve` for a WSGI environ."""
        if not self._direct:
            return self.resolve(RequestView.from_wsgi(environ), manager)
        exclude = self.exclude
        if exclude is not None and exclude(_wsgi_path(environ)):
            return None
        builtin = self._builtin_plugin
        plugin = self._fixed if builtin is None else builtin.wsgi(environ)
        tenant = None if self._builtin_tenant is None else self._builtin_tenant.wsgi(environ)
        binding = self._memo.get((plugin, tenant))
        if binding is not None and binding.manager is manager:
            return binding
        return self._check_and_bind(plugin, tenant, manager, environ.get("PATH_INFO"))

    def _check_and_bind(
        self, plugin: str | None, tenant: str | None, manager: CacheManager, path: object
    ) -> Binding | Rejection:
        # ``path`` is only logged, with a refusal.
        # The memo missed. It only ever holds checked ids, so a hit needs no checks.
        unknown_plugin, invalid_plugin, missing_tenant, invalid_tenant = self._rejections
        if plugin is None:
            return _refused(unknown_plugin, path, plugin, tenant)
        if tenant is None and self.tenant_required:
            return _refused(missing_tenant, path, plugin, tenant)
        if self._fixed is None and not self._valid(plugin):
            return _refused(invalid_plugin, path, plugin, tenant)
        if tenant is not None and not self._valid(tenant):
            return _refused(invalid_tenant, path, plugin, tenant)
        binding = Binding(manager, Scope(plugin, tenant))
        with self._lock:
            if len(self._memo) >= _MEMO_SIZE:
                del self._memo[next(iter(self._memo))]
            self._memo[plugin, tenant] = binding
        return binding


def _refused(
    rejection: Rejection, path: object, plugin: str | None, tenant: str | None
) -> Rejection:
    log.debug(
        "cachekit: refused %.200r with %d: %s (expected: %s; plugin=%.80r, tenant=%.80r)",
        path,
        rejection.status,
        rejection.message,
        rejection.expected or "a custom resolver's id",
        plugin,
        tenant,
    )
    return rejection
