"""Response caching for WSGI apps: the ``responses=`` option of
:class:`cachekit.wsgi.CacheMiddleware` (:class:`CachedResponses`), and reading a WSGI
request, which the Flask view decorator shares."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Iterator
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from cachekit.context import caching_disabled
from cachekit.errors import NoScopeError
from cachekit.responses.engine import UNSAFE_METHODS, Fetched, ResponseCache, Served
from cachekit.responses.options import CachedPrefixes, match
from cachekit.responses.policy import Request
from cachekit.steps import run

__all__ = ["CachedResponses", "capture", "request_of"]

_STREAMING = "text/event-stream"


def request_of(environ: WSGIEnvironment, params: Any = None) -> Request:
    """The :class:`Request` of a WSGI environ (``params``: the route's path parameters)."""
    headers = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    return Request(
        environ["REQUEST_METHOD"], path or "/", environ.get("QUERY_STRING", ""), headers, params
    )


class _Closing:
    """The unbuffered rest of a response: ``head`` then ``rest``, closing the app's
    iterable when the server closes this one (PEP 3333)."""

    __slots__ = ("_chain", "_response")

    def __init__(self, head: list[bytes], rest: Iterator[bytes], response: Iterable[bytes]) -> None:
        self._chain = itertools.chain(head, rest)
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        return self._chain

    def close(self) -> None:
        close = getattr(self._response, "close", None)
        if close is not None:
            close()


def capture(app: WSGIApplication, environ: WSGIEnvironment, limit: int) -> Fetched:
    """Call the WSGI ``app`` and buffer its response. A streaming response
    (``text/event-stream``) or one over ``limit`` bytes is not buffered: the
    :class:`Fetched` has no body, and its ``passthrough`` is the iterable to return."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [status, headers]
        return _no_write

    response = app(environ, start_response)
    chunks: list[bytes] = []
    size = 0
    iterator = iter(response)
    try:
        for chunk in iterator:
            chunks.append(chunk)
            size += len(chunk)
            content_type = {n.lower(): v for n, v in started[1]}.get("content-type", "")
            if size > limit or content_type.startswith(_STREAMING):
                status, headers = started
                return Fetched(
                    int(status[:3]), headers, None, (status, _Closing(chunks, iterator, response))
                )
    except BaseException:
        _close(response)
        raise
    _close(response)
    status, headers = started
    return Fetched(int(status[:3]), list(headers), b"".join(chunks))


def _no_write(data: bytes) -> None:
    raise RuntimeError("response caching does not support the WSGI write() callable")


def _close(response: Iterable[bytes]) -> None:
    close = getattr(response, "close", None)
    if close is not None:
        close()


def _invalidating(engine: ResponseCache, path: str, start_response: StartResponse) -> Any:
    """``start_response``, invalidating ``path``'s responses when an unsafe request's
    response starts without an error status (RFC 9111 section 4.4)."""

    def start_and_invalidate(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
        try:
            cache = engine.cache()
        except NoScopeError:  # an excluded path: no scope, nothing cached
            pass
        else:
            run(engine.invalidate(cache, path, int(status[:3])))
        return start_response(status, headers, *exc_info)

    return start_and_invalidate


def reply(result: Served | Fetched, start_response: StartResponse) -> Iterable[bytes]:
    """Start and return the response the engine chose."""
    if isinstance(result, Served):
        start_response(result.status_line, result.headers)
        return [result.body]
    status, body = result.passthrough
    start_response(status, result.headers)
    return body  # type: ignore[no-any-return]


class CachedResponses(CachedPrefixes):
    """A WSGI app caching the responses of ``app`` under path prefixes (what
    :class:`cachekit.wsgi.CacheMiddleware` builds from ``responses=``; it runs inside
    the request's scope). A ``POST``, ``PUT``, ``PATCH`` or ``DELETE`` answered without an
    error invalidates its path's responses. Paths under no prefix and other methods pass
    through untouched, as do requests with no scope bound (excluded paths).

    :param app: the WSGI app.
    :param responses: path prefixes to response caches
        (:data:`~cachekit.responses.options.Responses`).
    """

    __slots__ = ()
    app: WSGIApplication

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one request, from the cache where a prefix says so."""
        request = request_of(environ)
        engine = match(self.prefixes, request.path)
        if engine is not None and request.method in UNSAFE_METHODS:
            return self.app(environ, _invalidating(engine, request.path, start_response))
        lookup = None if engine is None else engine.lookup(request)
        if engine is None or lookup is None or caching_disabled.get():
            return self.app(environ, start_response)
        try:
            cache = engine.cache()
        except NoScopeError:  # an excluded path: no scope, no cache
            return self.app(environ, start_response)
        app, limit = self.app, engine.rules.max_body_bytes

        def fetch() -> Fetched:
            return capture(app, environ, limit)

        def refetch() -> Fetched:
            copy = {**environ, "wsgi.input": io.BytesIO(b""), "CONTENT_LENGTH": "0"}
            fetched = capture(app, copy, limit)
            if fetched.body is None:
                _close(fetched.passthrough[1])
            return fetched

        return reply(run(engine.respond(cache, lookup, fetch, refetch)), start_response)
