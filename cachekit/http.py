"""Rate-limit refusals as HTTP responses, for the middlewares and framework hooks.

:class:`~cachekit.errors.RateLimitExceeded` becomes a ``429 Too Many Requests`` with
``Retry-After`` and the IETF draft ``RateLimit-Limit`` / ``RateLimit-Remaining`` /
``RateLimit-Reset`` headers (whole seconds, rounded up) and a short JSON body.

Frameworks turn an endpoint's exception into a 500 before an outer middleware sees it, so
register the one-line hook of your framework as well:

* Starlette / FastAPI: ``app.add_exception_handler(RateLimitExceeded,
  cachekit.http.starlette_handler)``
* Flask: ``app.register_error_handler(RateLimitExceeded, cachekit.http.flask_handler)``
"""

from __future__ import annotations

import json
import math
from typing import Any

from cachekit.errors import RateLimitExceeded

__all__ = ["flask_handler", "rate_limit_headers", "rate_limit_response", "starlette_handler"]

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


async def starlette_handler(request: Any, exc: Exception) -> Any:
    """Starlette/FastAPI exception handler turning ``RateLimitExceeded`` into a 429."""
    from starlette.responses import Response

    assert isinstance(exc, RateLimitExceeded)
    status, headers, body = rate_limit_response(exc)
    return Response(body, status_code=status, headers=dict(headers))


def flask_handler(exc: RateLimitExceeded) -> Any:
    """Flask error handler turning ``RateLimitExceeded`` into a 429."""
    status, headers, body = rate_limit_response(exc)
    return body, status, headers
