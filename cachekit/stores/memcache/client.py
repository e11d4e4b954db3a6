"""What the memcache store needs from the client of one server, and how client failures
become cachekit errors.

Two clients implement :class:`ServerClient`: :class:`~cachekit.stores.memcache.text.TextClient`
(pymemcache, memcached's text protocol, optionally with ASCII authentication) and
:class:`~cachekit.stores.memcache.binary.BinaryClient` (our binary protocol with SASL).
Every quirk of the store (biased integers, generations, key hashing, size limits, TTL
rules) lives once, above this interface, in :class:`~cachekit.stores.memcache.MemcacheStore`.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from cachekit.errors import CacheValueError, StoreError, StoreTimeout, StoreUnavailable

__all__ = ["STORE_NAME", "AuthenticationFailed", "ServerClient", "closed_by_peer", "store_error"]

STORE_NAME: Final = "memcache"


class AuthenticationFailed(Exception):
    """The server refused our credentials."""


class ServerClient(Protocol):
    """One memcached server. Keys are valid memcached keys (at most 250 bytes of printable
    ASCII); values are stored and returned byte for byte. Every method raises only
    ``StoreUnavailable``, ``StoreTimeout`` or ``CacheValueError``."""

    address: str

    def get(self, key: str) -> bytes | None: ...
    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]: ...
    def set(self, key: str, value: bytes, exptime: int) -> None: ...
    def set_many(self, items: Mapping[str, bytes], exptime: int) -> list[str]:
        """Store every item; the keys the server did not store."""
        ...

    def add(self, key: str, value: bytes, exptime: int) -> bool: ...
    def delete(self, key: str) -> bool: ...
    def delete_many(self, keys: Sequence[str]) -> int:
        """Delete ``keys`` (no repeats); how many existed."""
        ...

    def incr(self, key: str, delta: int) -> int | None:
        """``incr`` (``delta >= 0``) or ``decr`` of the stored decimal; ``None`` if missing."""
        ...

    def gets(self, key: str) -> tuple[bytes | None, Any]: ...
    def cas(self, key: str, value: bytes, token: Any, exptime: int) -> bool: ...
    def touch(self, key: str, exptime: int) -> bool: ...
    def ping(self) -> None: ...
    def stats(self) -> dict[str, str]: ...
    def close(self) -> None: ...


def closed_by_peer(sock: socket.socket | None) -> bool:
    """Whether an idle connection's socket was closed by the server: memcached never
    speaks unasked, so an idle socket with something to read (end of stream, a reset) is
    dead. ``poll`` rather than ``select``: it takes descriptors above 1024."""
    if sock is None:
        return False
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def store_error(exc: Exception, address: str, timeout: float) -> Exception:
    """The cachekit exception for a connection-level failure ``exc`` on ``address``."""
    if isinstance(exc, StoreError | CacheValueError):
        return exc
    if isinstance(exc, AuthenticationFailed):
        return StoreUnavailable(
            f"memcache server {address}: authentication failed ({exc}); check the user and "
            "password in backend.cache.connection",
            store=STORE_NAME,
        )
    if isinstance(exc, TimeoutError):
        return StoreTimeout(
            f"memcache server {address} did not answer within {timeout}s", store=STORE_NAME
        )
    if isinstance(exc, OSError):
        detail = str(exc) or "connection lost"
    else:  # a driver's or our protocol's complaint about a reply
        text = " ".join(
            a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in exc.args
        )
        detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return StoreUnavailable(f"memcache server {address}: {detail}", store=STORE_NAME)
