"""The framework halves of :func:`cachekit.responses.cache_response`: how a Starlette or
FastAPI endpoint's and a Flask view's request is read, how their return values become a
:class:`~cachekit.responses.engine.Fetched`, and how a stored response becomes their
response object again. Frameworks are imported when first used, never at import time."""

from __future__ import annotations

import functools
from typing import Any

from cachekit.responses.asgi import request_of as asgi_request
from cachekit.responses.engine import Fetched, Served
from cachekit.responses.policy import Request
from cachekit.responses.wsgi import request_of as wsgi_request

__all__ = [
    "flask_fetched",
    "flask_request",
    "flask_response",
    "starlette_fetched",
    "starlette_request",
    "starlette_response",
]


# --- Starlette and FastAPI -------------------------------------------------------------


def starlette_request(request: Any) -> Request:
    """The :class:`Request` of a Starlette request."""
    return asgi_request(request.scope)


def starlette_fetched(value: Any) -> Fetched:
    """An endpoint's return value as a :class:`Fetched`: a ``Response`` with a body as it
    is, a streaming or file response unbuffered (returned as it is), anything else
    encoded as FastAPI encodes JSON (``jsonable_encoder``)."""
    from starlette.responses import JSONResponse, Response

    if not isinstance(value, Response):
        from fastapi.encoders import jsonable_encoder

        value = JSONResponse(jsonable_encoder(value))
    headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in value.raw_headers]
    body = getattr(value, "body", None)
    if type(body) is not bytes:  # StreamingResponse, FileResponse
        return Fetched(value.status_code, headers, None, value)
    return Fetched(value.status_code, headers, body, value)


@functools.cache
def _stored_response_class() -> Any:
    """A Starlette ``Response`` made of a stored status, headers and body as they are
    (``Response.__init__`` would work out headers the stored response has already)."""
    from starlette.responses import Response

    class StoredResponse(Response):
        def __init__(self, served: Served) -> None:
            self.status_code = served.status
            self.body = served.body
            self.background = None
            self.raw_headers = [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in served.headers
            ]

    return StoredResponse


def starlette_response(result: Served | Fetched) -> Any:
    """The Starlette response to return for what the engine chose."""
    if isinstance(result, Fetched):
        return result.passthrough
    return _stored_response_class()(result)


# --- Flask ------------------------------------------------------------------------------


def flask_request() -> Request:
    """The :class:`Request` of Flask's current request."""
    from flask import request

    return wsgi_request(request.environ, request.view_args)


def flask_fetched(value: Any) -> Fetched:
    """A view's return value (anything Flask accepts) as a :class:`Fetched`; a streamed
    response is not buffered (returned as it is)."""
    from flask import make_response

    response = make_response(value)
    headers = list(response.headers.items())
    if response.is_streamed:
        return Fetched(response.status_code, headers, None, response)
    return Fetched(response.status_code, headers, response.get_data(), response)


def flask_response(result: Served | Fetched) -> Any:
    """The Flask response to return for what the engine chose."""
    from flask import Response

    if isinstance(result, Fetched):
        return result.passthrough
    response = Response(result.body, status=result.status)
    response.headers.clear()
    for name, value in result.headers:
        response.headers.add(name, value)
    return response
