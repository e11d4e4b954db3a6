"""Rate-limit refusals as HTTP responses, for any framework.

:class:`~cachekit.errors.RateLimitExceeded` becomes a ``429 Too Many Requests`` with
``Retry-After`` and the IETF draft ``RateLimit-Limit`` / ``RateLimit-Remaining`` /
``RateLimit-Reset`` headers (whole seconds, rounded up) and a short JSON body. This module
builds the response as plain data, so the ASGI and WSGI middlewares and the framework
hooks share it without importing any framework.

Frameworks turn an endpoint's exception into a 500 before an outer middleware sees it, so
register the one-line hook of your framework as well:

* Starlette / FastAPI: ``app.add_exception_handler(RateLimitExceeded,
  cachekit.contrib.starlette.rate_limit_handler)`` (or
  :func:`cachekit.contrib.starlette.install`, which does it);
* Flask: ``app.register_error_handler(RateLimitExceeded,
  cachekit.contrib.flask.rate_limit_handler)`` (or the
  :class:`cachekit.contrib.flask.CacheKit` extension, which does it).
"""

from __future__ import annotations

import json
import math

from cachekit.errors import RateLimitExceeded

__all__ = ["STATUS", "rate_limit_headers", "rate_limit_response"]

STATUS = 429


def rate_limit_headers(exc: RateLimitExceeded) -> list[tuple[str, str]]:
    """The ``Retry-After`` and ``RateLimit-*`` headers for a refusal."""
    return [
        ("Retry-After", str(max(1, math.ceil(exc.retry_after)))),
        ("RateLimit-Limit", str(exc.limit)),
        ("RateLimit-Remaining", str(exc.remaining)),
        ("RateLimit-Reset", str(math.ceil(exc.reset_after))),
    ]


def rate_limit_response(exc: RateLimitExceeded) -> tuple[int, list[tuple[str, str]], bytes]:
    """``(status, headers, body)`` of the 429 response for ``exc``."""
    body = json.dumps({"error": "rate limit exceeded", "retry_after": exc.retry_after}).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        *rate_limit_headers(exc),
    ]
    return STATUS, headers, body
