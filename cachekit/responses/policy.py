"""The HTTP rules of response caching (RFC 9111, for a shared cache), as pure functions.

Nothing here does I/O or knows a framework: :mod:`cachekit.responses.engine` asks these
functions what a request allows, whether a response may be stored and for how long, and
how a stored response is served (``Age``, ``X-Cache``, 304s). Header names are lower case
throughout; a request's headers are a ``Mapping[str, str]`` with lower-case names.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Final

__all__ = [
    "CACHEABLE_STATUSES",
    "cache_control",
    "delta_seconds",
    "etag_for",
    "matches_etag",
    "not_modified_since",
    "vary_names",
]

# RFC 9110 section 15.1: statuses cacheable by default (206 left out: no range support)
CACHEABLE_STATUSES: Final = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})

# the fields a 304 carries over from the stored response (RFC 9110 section 15.4.5)
NOT_MODIFIED_FIELDS: Final = frozenset(
    {"cache-control", "content-location", "date", "etag", "expires", "vary", "last-modified"}
)


def cache_control(value: str | None) -> dict[str, str | None]:
    """The directives of a ``Cache-Control`` value: lower-case names, unquoted arguments
    (``None`` for a directive without one). ``"max-age=60, private"`` ->
    ``{"max-age": "60", "private": None}``."""
    directives: dict[str, str | None] = {}
    if not value:
        return directives
    for part in value.split(","):
        name, sep, argument = part.strip().partition("=")
        if name:
            directives.setdefault(
                name.strip().lower(), argument.strip().strip('"') if sep else None
            )
    return directives


def delta_seconds(directives: Mapping[str, str | None], name: str) -> int | None:
    """A directive's delta-seconds argument (``max-age=60`` -> 60); ``None`` when absent or
    not a non-negative integer (RFC 9111 section 1.2.2: an invalid value is ignored)."""
    argument = directives.get(name)
    if argument is None or not argument.isdigit():
        return None
    return int(argument)


def vary_names(values: Iterable[str]) -> list[str]:
    """The lower-case field names of ``Vary`` values, in order, each once (``*`` kept)."""
    names: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip().lower()
            if name and name not in names:
                names.append(name)
    return names


def etag_for(body: bytes) -> str:
    """A strong ``ETag`` from the body's hash (RFC 9110 section 8.8.3)."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def matches_etag(if_none_match: str, etag: str | None) -> bool:
    """Whether ``If-None-Match`` matches ``etag`` by the weak comparison (RFC 9110 section
    13.1.2): ``*`` matches any stored response."""
    if if_none_match.strip() == "*":
        return True
    if etag is None:
        return False
    mine = _opaque(etag)
    return any(_opaque(tag) == mine for tag in if_none_match.split(","))


def http_date(value: str | None) -> float | None:
    """An HTTP-date as a POSIX timestamp, ``None`` when absent or invalid."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def not_modified_since(if_modified_since: str, last_modified: str | None, stored_at: float) -> bool:
    """Whether the stored response is unmodified since ``If-Modified-Since`` (RFC 9111
    section 4.3.2): its ``Last-Modified``, else the time it was stored, is not later."""
    since = http_date(if_modified_since)
    if since is None:
        return False
    modified = http_date(last_modified)
    return (modified if modified is not None else math.floor(stored_at)) <= since


class Request:
    """What response caching reads of a request: method, path, raw query string, headers
    (lower-case names) and the route's path parameters (for tag templates)."""

    __slots__ = ("headers", "method", "params", "path", "query")

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        params: Mapping[str, object] | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.params = params if params is not None else {}

    def __repr__(self) -> str:
        query = f"?{self.query}" if self.query else ""
        return f"Request({self.method} {self.path}{query})"


class Lookup:
    """What the cache may do for one request (:meth:`Rules.lookup`): ``serve`` from the
    cache (no: the client asked for a fresh response), ``store`` the response (no: a
    ``HEAD``), ``max_age`` the oldest stored response the client accepts, the entry's
    ``key`` and the ``tags`` it carries."""

    __slots__ = ("key", "max_age", "request", "serve", "store", "tags")

    def __init__(
        self,
        request: Request,
        key: str,
        tags: list[str],
        *,
        serve: bool,
        store: bool,
        max_age: int | None,
    ) -> None:
        self.request = request
        self.key = key
        self.tags = tags
        self.serve = serve
        self.store = store
        self.max_age = max_age

    def __repr__(self) -> str:
        return f"Lookup({self.key!r}, serve={self.serve}, store={self.store})"


class Freshness:
    """How long a stored response is served: ``ttl`` seconds fresh, then
    ``stale_while_revalidate`` seconds stale while it is refreshed, and
    ``stale_if_error`` seconds stale when refreshing fails (RFC 5861)."""

    __slots__ = ("stale_if_error", "stale_while_revalidate", "ttl")

    def __init__(self, ttl: float, stale_while_revalidate: float, stale_if_error: float) -> None:
        self.ttl = ttl
        self.stale_while_revalidate = stale_while_revalidate
        self.stale_if_error = stale_if_error

    def __repr__(self) -> str:
        return (
            f"Freshness(ttl={self.ttl}, stale_while_revalidate={self.stale_while_revalidate}, "
            f"stale_if_error={self.stale_if_error})"
        )


# request headers that make a stored response unsafe to share (RFC 9111 section 3.5)
_AUTHORIZATION: Final = "authorization"
_SAFE_METHODS: Final = frozenset({"GET", "HEAD"})


class Rules:
    """The caching rules of one endpoint (or one ``responses=`` prefix): which requests
    may be served from the cache, which responses are stored, for how long, and with
    which headers. Built by :func:`cachekit.responses.cache_response` and the
    middlewares' ``responses=`` option, which check the values first.

    :param ttl: seconds a response stays fresh (bounded by its own ``s-maxage`` or
        ``max-age``).
    :param vary: request header names the response varies on, besides its own ``Vary``.
    :param tags: tags of every response, as ``str.format`` templates over the route's
        path parameters (``"product:{item_id}"``).
    :param stale_while_revalidate: seconds an expired response is served while it is
        refreshed in the background (the response's own directive wins).
    :param stale_if_error: seconds an expired response is served when the app fails
        (raises, or answers 5xx) (the response's own directive wins).
    :param max_body_bytes: the largest body stored; larger ones pass through.
    :param authorized: serve and store responses to requests with ``Authorization``
        (they must not depend on who asks).
    :param honour_client: obey the request's ``Cache-Control`` (``no-store``, ``no-cache``,
        ``max-age``); ``False`` for hosts that ignore clients.
    :param cache_control: add ``Cache-Control: max-age=<ttl>`` when the app sets none.
    """

    __slots__ = (
        "authorized",
        "cache_control",
        "honour_client",
        "max_body_bytes",
        "stale_if_error",
        "stale_while_revalidate",
        "tags",
        "ttl",
        "vary",
    )

    def __init__(
        self,
        *,
        ttl: float,
        vary: tuple[str, ...] = (),
        tags: tuple[str, ...] = (),
        stale_while_revalidate: float = 0.0,
        stale_if_error: float = 0.0,
        max_body_bytes: int = 1 << 20,
        authorized: bool = False,
        honour_client: bool = True,
        cache_control: bool = False,
    ) -> None:
        self.ttl = ttl
        self.vary = vary_names(vary)
        self.tags = tags
        self.stale_while_revalidate = stale_while_revalidate
        self.stale_if_error = stale_if_error
        self.max_body_bytes = max_body_bytes
        self.authorized = authorized
        self.honour_client = honour_client
        self.cache_control = cache_control

    def __repr__(self) -> str:
        return f"Rules(ttl={self.ttl}, vary={self.vary!r}, tags={self.tags!r})"

    def lookup(self, request: Request, key: str, tags: list[str]) -> Lookup | None:
        """What the cache may do for ``request``; ``None``: nothing (not a ``GET`` or
        ``HEAD``, an ``Authorization`` header not opted in, or ``no-store`` asked)."""
        if request.method not in _SAFE_METHODS:
            return None
        headers = request.headers
        if not self.authorized and _AUTHORIZATION in headers:
            return None
        serve, max_age = True, None
        if self.honour_client:
            value = headers.get("cache-control")
            if value is None and "no-cache" in headers.get("pragma", ""):
                value = "no-cache"  # RFC 9111 section 5.4
            if value is not None:
                directives = cache_control(value)
                if "no-store" in directives:
                    return None
                max_age = delta_seconds(directives, "max-age")
                serve = "no-cache" not in directives and max_age != 0
        return Lookup(
            request, key, tags, serve=serve, store=request.method == "GET", max_age=max_age
        )

    def freshness(self, status: int, headers: Mapping[str, str]) -> Freshness | None:
        """How long a response is kept, or ``None`` when it must not be stored: an
        uncacheable status, ``no-store``, ``no-cache`` or ``private``, a ``Set-Cookie``,
        ``Vary: *``, or a lifetime of 0."""
        if status not in CACHEABLE_STATUSES or "set-cookie" in headers:
            return None
        if "*" in vary_names([headers.get("vary", "")]):
            return None
        directives = cache_control(headers.get("cache-control"))
        if "no-store" in directives or "no-cache" in directives or "private" in directives:
            return None
        own = delta_seconds(directives, "s-maxage")
        if own is None:
            own = delta_seconds(directives, "max-age")
        ttl = self.ttl if own is None else min(self.ttl, own)
        if ttl <= 0:
            return None
        if "must-revalidate" in directives or "proxy-revalidate" in directives:
            return Freshness(ttl, 0.0, 0.0)
        swr = delta_seconds(directives, "stale-while-revalidate")
        sie = delta_seconds(directives, "stale-if-error")
        return Freshness(
            ttl,
            self.stale_while_revalidate if swr is None else swr,
            self.stale_if_error if sie is None else sie,
        )
