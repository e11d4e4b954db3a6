"""Infinispan's REST API v2 as the store uses it: requests built and replies read, no I/O;
and the steps the store's operations yield (a request, a batch, a pause, a local lock).

Entries (``/rest/v2/caches/{cache}/{key}``)
    ``GET`` reads (``200`` with the value and its ``Expires``, ``404`` for a miss), ``PUT``
    writes (``204``), ``POST`` writes only into an absent key (``409`` otherwise; *not*
    atomic on the server: it looks the key up, then writes), ``DELETE`` removes (``204``,
    ``404`` when absent; ``412`` when an ``If-None-Match`` ETag differs). Values go as
    ``application/octet-stream``. TTLs go in whole seconds in ``timeToLiveSeconds``
    (rounded up, never 0: 0 would mean the cache's default), ``-1`` for none, and
    ``maxIdleTimeSeconds: -1`` so a cache's default idle time never shortens an entry.
    The server does not enforce ``If-Match`` on ``PUT``: nothing here relies on it.

Keys
    A key travels percent-encoded in one path segment (``/`` included). A key over
    :data:`MAX_KEY_BYTES` keeps a readable head and ends in a hash of the whole key, so
    request lines stay well inside the server's limit.

Strong counters (``/rest/v2/counters/{name}``)
    The store's locks (:mod:`~cachekit.stores.infinispan.locks`): defined with ``POST``
    and a JSON configuration, swapped with ``?action=compareAndSwap&expect=&update=``
    (atomic; answers the previous value; ``400`` while the counter is undefined).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Final, NamedTuple
from urllib.parse import quote

__all__ = [
    "MAX_KEY_BYTES",
    "OCTETS",
    "Batch",
    "Free",
    "Hold",
    "Pause",
    "Reply",
    "Request",
    "cache_exists",
    "cache_path",
    "counter_define",
    "counter_swap",
    "delete",
    "expires_in",
    "get",
    "shape_key",
    "write",
]

OCTETS: Final = "application/octet-stream"
MAX_KEY_BYTES: Final = 1024
_HASH_MARK: Final = "%#"
_NO_EXPIRY: Final = "-1"
_READ: Final = {"Accept": OCTETS}
_COUNTER_CONFIG: Final = json.dumps({"strong-counter": {"initial-value": 0, "storage": "VOLATILE"}})


class Request(NamedTuple):
    """One HTTP request, relative to a server's base URL."""

    method: str
    path: str
    headers: Mapping[str, str] = {}
    content: bytes | None = None


class Reply(NamedTuple):
    """What the server answered (``headers`` is case-insensitive)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Batch(NamedTuple):
    """Several independent requests: sent concurrently on the async client, one after
    the other on the sync one; answered by a list of :class:`Reply` in order."""

    requests: tuple[Request, ...]


class Pause(NamedTuple):
    """Wait ``seconds`` (``time.sleep`` or ``asyncio.sleep``)."""

    seconds: float


class Hold(NamedTuple):
    """Take this process's lock called ``name`` (a thread lock, or an asyncio lock of the
    running loop), waiting at most ``timeout`` seconds; answered by ``None``."""

    name: str
    timeout: float


class Free(NamedTuple):
    """Release this process's lock called ``name`` (taken by :class:`Hold`)."""

    name: str


def shape_key(key: str) -> str:
    """``key`` as stored: itself, or over :data:`MAX_KEY_BYTES` a readable head and a hash."""
    data = key.encode("utf-8", "surrogatepass")
    if len(data) <= MAX_KEY_BYTES:
        return key
    digest = base64.urlsafe_b64encode(hashlib.blake2b(data, digest_size=18).digest()).decode()
    return key[: MAX_KEY_BYTES // 2] + _HASH_MARK + digest


def _entry(cache: str, key: str) -> str:
    return f"/rest/v2/caches/{cache}/{quote(key, safe='', errors='surrogatepass')}"


def cache_path(cache_name: str) -> str:
    """The percent-encoded cache segment, worked out once per store."""
    return quote(cache_name, safe="")


def _ttl_headers(ttl: float | None) -> dict[str, str]:
    seconds = _NO_EXPIRY if ttl is None else str(max(1, math.ceil(ttl)))
    return {
        "Content-Type": OCTETS,
        "timeToLiveSeconds": seconds,
        "maxIdleTimeSeconds": _NO_EXPIRY,
    }


def get(cache: str, key: str) -> Request:
    """Read an entry (``cache`` from :func:`cache_path`)."""
    return Request("GET", _entry(cache, key), _READ)


def write(
    cache: str, key: str, value: bytes, ttl: float | None, *, create: bool = False
) -> Request:
    """Write an entry (``PUT``), or with ``create`` only into an absent key (``POST``)."""
    return Request("POST" if create else "PUT", _entry(cache, key), _ttl_headers(ttl), value)


def delete(cache: str, key: str, etag: str | None = None) -> Request:
    """Remove an entry; with ``etag``, only while it still has that ETag."""
    return Request("DELETE", _entry(cache, key), {} if etag is None else {"If-None-Match": etag})


def cache_exists(cache: str) -> Request:
    """Ask whether the cache exists (``204``/``200``, else ``404``)."""
    return Request("HEAD", f"/rest/v2/caches/{cache}")


def counter_define(name: str) -> Request:
    """Define a strong counter at 0 (a no-op when it exists)."""
    headers = {"Content-Type": "application/json"}
    return Request("POST", f"/rest/v2/counters/{name}", headers, _COUNTER_CONFIG.encode())


def counter_swap(name: str, expect: int, update: int) -> Request:
    """Set a strong counter to ``update`` if it holds ``expect``; answers the previous value."""
    query = f"action=compareAndSwap&expect={expect}&update={update}"
    return Request("POST", f"/rest/v2/counters/{name}?{query}")


def expires_in(reply: Reply, now: float | None = None) -> float | None:
    """Seconds until the entry of a ``GET`` reply expires (by its ``Expires`` header and
    this host's clock: the server writes whole seconds), or ``None`` when it never does."""
    header = reply.headers.get("Expires")
    if not header:
        return None
    try:
        expires = parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError):
        return None
    return expires - (time.time() if now is None else now)
