"""How one request goes through the response cache, written once for sync and async.

:meth:`ResponseCache.respond` is an orchestration (:mod:`cachekit.steps`): the WSGI and
Flask shells :func:`~cachekit.steps.run` it, the ASGI and Starlette shells
:func:`~cachekit.steps.arun` it, each passing ``fetch`` (run the app for this request and
capture its response) and ``refetch`` (the same, for a background refresh, whose
response goes nowhere).

* **Hit**: one store read (the entry and the generations of its tags, in one
  ``get_many``), pick the variant for the request's header values, serve it with ``Age``
  and ``X-Cache: HIT`` — or a 304 when the client's validators match.
* **Stale** (within ``stale-while-revalidate``): serve it with ``X-Cache: STALE`` and
  refresh it in the background, once per process.
* **Miss**: ``@cached``'s machinery (:class:`cachekit.decorators._Policy`) makes
  concurrent requests for one key run the app once per process, and once across
  processes with ``lock=True``; the response is stored if RFC 9111 allows it
  (:class:`~cachekit.responses.policy.Rules`). A request whose key another request just
  computed is served that response only if it is the variant it asks for; else it runs
  the app itself. A response that cannot be stored (``Set-Cookie``, ``private``...) is
  never handed to another request.
* **Error** (within ``stale-if-error``): the app raised or answered 5xx: the stale
  response is served instead.
* **Outage**: the app's own response, uncached (fail-open, one warning per outage).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, Final

from cachekit.cache import Cache
from cachekit.codec import MISS
from cachekit.context import current_cache
from cachekit.decorators import _Policy
from cachekit.errors import CacheKeyError, StoreError
from cachekit.responses import entries
from cachekit.responses.entries import ERROR, FRESH, STALE, Variant
from cachekit.responses.keys import NAMESPACE, path_tag, response_key, tag_key
from cachekit.responses.policy import (
    NOT_MODIFIED_FIELDS,
    Lookup,
    Request,
    Rules,
    etag_for,
    matches_etag,
    not_modified_since,
    vary_names,
)
from cachekit.responses.tags import bump, created
from cachekit.steps import Step, Steps, twin

__all__ = ["UNSAFE_METHODS", "Fetched", "ResponseCache", "Served"]

MISSED: Final = "MISS"
UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Fetched:
    """A response the app produced for one request: ``status``, ``headers`` (``str``
    pairs) and ``body`` (``None`` when it was not buffered — streaming or too large — and
    went to its own client; ``passthrough`` is then what the shell returns for it).
    ``stored`` is the variant to store (``None``: not storable)."""

    __slots__ = ("body", "headers", "owner", "passthrough", "status", "stored")

    def __init__(
        self,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes | None,
        passthrough: Any = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.passthrough = passthrough
        self.stored: Variant | None = None
        self.owner: object = None

    def __repr__(self) -> str:
        size = "streamed" if self.body is None else f"{len(self.body)} bytes"
        return f"Fetched({self.status}, {size}, stored={self.stored is not None})"


class Served:
    """A response to send: ``status``, ``headers`` (``str`` pairs), ``body``."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"Served({self.status}, {len(self.body)} bytes)"

    @property
    def status_line(self) -> str:
        """``"200 OK"``: the status as WSGI writes it."""
        try:
            return f"{self.status} {HTTPStatus(self.status).phrase}"
        except ValueError:
            return f"{self.status} Unknown"


Fetch = Callable[[], Any]
"""Runs the app for the request: returns a :class:`Fetched` (sync shells) or an awaitable
of one (async shells)."""


def header_map(headers: list[tuple[str, str]]) -> dict[str, str]:
    """Response headers by lower-case name (repeated fields joined with ``", "``)."""
    found: dict[str, str] = {}
    for name, value in headers:
        name = name.lower()
        found[name] = f"{found[name]}, {value}" if name in found else value
    return found


class _ResponsePolicy(_Policy):
    """``@cached``'s policy (in-process de-duplication, ``lock=True``, background
    refresh) for responses: what it stores is a :class:`Fetched`'s variant, merged into
    the entry's other variants, for as long as its stale windows last; and what a waiter
    re-reads counts only while some variant of it is fresh."""

    __slots__ = ()

    def read(self, cache: Cache, key: str) -> Steps[Step, Any]:
        entry = yield from super().read(cache, key)
        return entry if entries.any_fresh(entry, self.clock()) else MISS

    def store(self, cache: Cache, key: str, result: Any) -> Steps[Step, None]:
        stored = result.stored if isinstance(result, Fetched) else None
        if stored is None:
            return
        try:
            # without Vary the variant replaces the entry: no read needed
            entry = (yield twin(cache, "get", key)) if stored[entries.NAMES] else None
            merged, keep = entries.merge(entry, stored, self.clock())
            yield twin(cache, "set", key, merged, keep)
        except StoreError as exc:
            self.failed(cache, exc)


def _responses() -> None:
    """What a response cache's outage warnings name when it has no endpoint."""


class ResponseCache:
    """The response cache of one endpoint or path prefix: its :class:`Rules` and the
    ``@cached`` machinery that computes each response once.

    :param rules: the HTTP rules.
    :param name: what outage warnings name (the endpoint), for the logs.
    :param lock: compute a response once across processes (a lock in the store).
    :param lock_timeout: the longest a process waits for another's response.
    :param clock: the wall clock (seconds); inject a fake one in tests.
    """

    __slots__ = ("clock", "policy", "rules")

    def __init__(
        self,
        rules: Rules,
        *,
        name: str | None = None,
        lock: bool = False,
        lock_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rules = rules
        self.clock = clock
        fn: Callable[[], None] = _responses
        if name is not None:

            def named() -> None: ...

            named.__qualname__ = name
            fn = named
        self.policy = _ResponsePolicy(
            fn,
            namespace=NAMESPACE,
            ttl=None,
            key=None,
            ignore=(),
            unless=None,
            cache_none=True,
            lock=lock,
            lock_timeout=lock_timeout,
            stale_ttl=None,
            is_classmethod=False,
            clock=clock,
        )

    def __repr__(self) -> str:
        return f"ResponseCache({self.rules!r}, lock={self.policy.lock})"

    # -- pure steps --

    def lookup(self, request: Request) -> Lookup | None:
        """What the cache may do for ``request`` (``None``: pass it through)."""
        tags = [path_tag(request.path)]
        for template in self.rules.tags:
            try:
                tags.append(template.format_map(request.params))
            except (KeyError, IndexError, AttributeError, ValueError) as exc:
                raise CacheKeyError(
                    f"response tag {template!r} cannot be formatted: {exc!r}; its fields must "
                    f"name path parameters of the route (this request has "
                    f"{sorted(request.params)})"
                ) from None
        return self.rules.lookup(request, response_key(request.path, request.query), tags)

    def prepare(self, lookup: Lookup, generations: Mapping[str, int], fetched: Fetched) -> Fetched:
        """Complete the app's response (``ETag``, ``Vary``, ``Cache-Control``) and decide
        whether and for how long it is stored."""
        rules = self.rules
        if fetched.body is None:
            return fetched
        headers = header_map(fetched.headers)
        if rules.vary:
            names = vary_names([headers.get("vary", ""), *rules.vary])
            if "*" not in names:
                fetched.headers = [(n, v) for n, v in fetched.headers if n.lower() != "vary"]
                fetched.headers.append(("vary", ", ".join(names)))
                headers["vary"] = ", ".join(names)
        if fetched.status == 200 and "etag" not in headers:
            etag = etag_for(fetched.body)
            fetched.headers.append(("etag", etag))
            headers["etag"] = etag
        freshness = rules.freshness(fetched.status, headers)
        if rules.cache_control and "cache-control" not in headers and freshness is not None:
            fetched.headers.append(("cache-control", f"max-age={int(freshness.ttl)}"))
        if freshness is None or not lookup.store or len(fetched.body) > rules.max_body_bytes:
            return fetched
        now = self.clock()
        fresh_until = now + freshness.ttl
        fetched.stored = entries.variant(
            vary_names([headers.get("vary", "")]),
            lookup.request.headers,
            fetched.status,
            fetched.headers,
            fetched.body,
            now,
            (
                fresh_until,
                fresh_until + freshness.stale_while_revalidate,
                fresh_until + freshness.stale_if_error,
            ),
            {key: generations[key] for key in map(tag_key, lookup.tags)},
        )
        return fetched

    def serve(self, lookup: Lookup, stored: Variant, state: str) -> Served:
        """A stored variant as the response to ``lookup``'s request: a 304 when its
        validators match, the headers only for a ``HEAD``."""
        headers = entries.served_headers(stored, self.clock(), state)
        status = stored[entries.STATUS]
        if status == 200 and self._not_modified(
            lookup, stored[entries.HEADERS], stored[entries.STORED]
        ):
            return _not_modified_response(headers)
        return Served(
            status, headers, b"" if lookup.request.method == "HEAD" else stored[entries.BODY]
        )

    def fresh(self, lookup: Lookup, fetched: Fetched) -> Served | Fetched:
        """The app's own response to this request, with ``X-Cache: MISS`` (a 304 when the
        client's validators match what it just produced)."""
        if fetched.body is None:
            return fetched
        headers = [*fetched.headers, ("x-cache", MISSED)]
        if fetched.status == 200 and self._not_modified(lookup, fetched.headers, self.clock()):
            return _not_modified_response(headers)
        return Served(fetched.status, headers, fetched.body)

    def _not_modified(self, lookup: Lookup, headers: Any, stored_at: float) -> bool:
        """Whether the request's validators match a 200 with ``headers``, stored at
        ``stored_at`` (RFC 9111 section 4.3.2)."""
        request = lookup.request.headers
        if not _CONDITIONAL.intersection(request):  # the common case: nothing to compare
            return False
        response = header_map(headers)
        if_none_match = request.get("if-none-match")
        if if_none_match is not None:  # RFC 9110 section 13.1.3: it wins over the date
            return matches_etag(if_none_match, response.get("etag"))
        since = request["if-modified-since"]
        return not_modified_since(since, response.get("last-modified"), stored_at)

    # -- the orchestration --

    def respond(
        self, cache: Cache, lookup: Lookup, fetch: Fetch, refetch: Fetch
    ) -> Steps[Step, Served | Fetched]:
        """Answer ``lookup``'s request from the cache or the app (see the module
        docstring); a :class:`Fetched` whose body is ``None`` went to its client already."""
        policy, key = self.policy, lookup.key
        tag_keys = [tag_key(tag) for tag in lookup.tags]
        try:
            found = yield twin(cache, "get_many", [key, *tag_keys])
        except StoreError as exc:
            policy.failed(cache, exc)
            return self.fresh(lookup, (yield Step(fetch, fetch)))
        generations = {k: found[k] for k in tag_keys if k in found}
        stored, state = None, None
        if lookup.serve:
            headers = lookup.request.headers
            entry = found.get(key)
            stored, state = entries.select(
                entry, headers, generations, self.clock(), lookup.max_age
            )
        if state is FRESH:
            return self.serve(lookup, stored, FRESH)  # type: ignore[arg-type]
        if state is STALE:
            call = self.call(lookup, generations, refetch)
            yield Step(policy.revalidate_sync, self.revalidate_async, (cache, key, call))
            return self.serve(lookup, stored, STALE)  # type: ignore[arg-type]
        if not lookup.store:  # a HEAD: the GET entry is what is stored
            return self.fresh(lookup, (yield Step(fetch, fetch)))
        try:
            # a response is stored only under counters that exist (see tags.created)
            generations = yield from created(cache, tag_keys, generations)
        except StoreError as exc:
            policy.failed(cache, exc)
            return self.fresh(lookup, (yield Step(fetch, fetch)))
        call = self.call(lookup, generations, fetch)
        try:
            result = yield Step(policy.miss_sync, policy.miss_async, (cache, key, call))
            if not isinstance(result, Fetched) or result.owner is not call:
                shared = self.shared(lookup, generations, result)
                if shared is not None:
                    return shared
                result = yield Step(call, call)  # not the variant we need: run the app
                yield from policy.store(cache, key, result)
        except Exception:
            if state is ERROR:  # stale-if-error
                return self.serve(lookup, stored, STALE)  # type: ignore[arg-type]
            raise
        if result.status >= 500 and state is ERROR:
            return self.serve(lookup, stored, STALE)  # type: ignore[arg-type]
        return self.fresh(lookup, result)

    def shared(self, lookup: Lookup, generations: Mapping[str, int], result: Any) -> Served | None:
        """What another request's computation (or a re-read of the store) gives this one:
        the response if it holds this request's variant, else ``None``."""
        if isinstance(result, Fetched):
            result = [result.stored] if result.stored is not None else None
        stored, state = entries.select(result, lookup.request.headers, generations, self.clock())
        return self.serve(lookup, stored, FRESH) if state is FRESH else None  # type: ignore[arg-type]

    def call(self, lookup: Lookup, generations: Mapping[str, int], fetch: Fetch) -> Fetch:
        """``fetch``, its response completed by :meth:`prepare` and marked as this
        request's own (sync or async, as ``fetch`` is)."""

        def call() -> Any:
            made = fetch()
            if inspect.isawaitable(made):
                return _prepared(made, own)
            return own(made)

        def own(fetched: Fetched) -> Fetched:
            fetched.owner = call
            return self.prepare(lookup, generations, fetched)

        return call

    def invalidate(self, cache: Cache, path: str, status: int) -> Steps[Step, None]:
        """After an unsafe request (``POST``, ``PUT``, ``PATCH``, ``DELETE``) answered
        without an error, invalidate the responses of its path (RFC 9111 section 4.4).
        A store failure fails open."""
        if status >= 400:
            return
        try:
            yield from bump(cache, [path_tag(path)])
        except StoreError as exc:
            self.policy.failed(cache, exc)

    async def revalidate_async(self, cache: Cache, key: str, call: Fetch) -> None:
        """Start the background refresh of a stale response (an asyncio task)."""
        self.policy.revalidate_async(cache, key, call)

    def cache(self) -> Cache:
        """The request's response cache (raises ``NoScopeError`` outside a scope)."""
        return current_cache(NAMESPACE)


_SERVED: Final = frozenset({"age", "x-cache"})
_CONDITIONAL: Final = frozenset({"if-none-match", "if-modified-since"})


def _not_modified_response(headers: list[tuple[str, str]]) -> Served:
    """A 304 carrying the fields RFC 9110 section 15.4.5 keeps, with Age and X-Cache."""
    kept = [(n, v) for n, v in headers if n.lower() in NOT_MODIFIED_FIELDS or n in _SERVED]
    return Served(304, kept, b"")


async def _prepared(made: Any, own: Callable[[Fetched], Fetched]) -> Fetched:
    return own(await made)
