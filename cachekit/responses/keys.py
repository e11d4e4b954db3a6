"""Keys of cached responses and of tags, within the request's scope.

A response's key is its path and its query in a normal form (parameters sorted, percent
encoding normalized, so ``?b=2&a=1`` and ``?a=1&b=2`` are one entry). ``GET`` and
``HEAD`` share it: a ``HEAD`` is served from the ``GET`` entry. The values of the ``Vary``
headers select one *variant* inside that entry (:mod:`cachekit.responses.entries`), as
Varnish does, so one read finds the response whatever headers it varies on. The scope
(plugin, tenant) is in the full key already (:mod:`cachekit.keys`), so two tenants never
share a response.
"""

from __future__ import annotations

import hashlib
from typing import Final
from urllib.parse import parse_qsl, urlencode

__all__ = ["NAMESPACE", "TAG_TTL", "normal_query", "path_tag", "response_key", "tag_key"]

NAMESPACE: Final = "cachekit.responses"
"""The namespace of the request's scope that holds responses and tag generations."""

TAG_TTL: Final = 7 * 24 * 3600.0
"""How long a tag's generation counter is kept from its creation. When it expires, the
responses it tagged count as invalidated: never stale data, only a miss."""

_MAX_KEY: Final = 200


def normal_query(query: str) -> str:
    """``query`` in a normal form: parameters sorted (by name, then value), blank values
    kept, encoding normalized."""
    if not query:
        return ""
    return urlencode(sorted(parse_qsl(query, keep_blank_values=True)))


def response_key(path: str, query: str) -> str:
    """The key of the responses to ``GET``/``HEAD`` ``path?query`` (hashed when long)."""
    key = f"r|{path}?{normal_query(query)}"
    if len(key) <= _MAX_KEY:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"r#{digest}:{key[:64]}"


def tag_key(tag: str) -> str:
    """The key of a tag's generation counter."""
    return f"t|{tag}"


def path_tag(path: str) -> str:
    """The tag every response of ``path`` carries (what :func:`invalidate_path` bumps)."""
    return f"path:{path}"
