"""One memcached server over the text protocol, through pymemcache's public ``Client``.

A :class:`~cachekit.stores.memcache.pool.Pool` holds one ``Client`` per concurrent caller
(at most ``max_connections``).
With ASCII authentication (``memcached -Y``) each new ``Client`` sends ``set auth`` with
``user password`` before its first command, and the pool drops a ``Client`` after any
error, so pymemcache's silent reconnect (a ``Client`` reopens its socket on the next call
after a failure) never hands out an unauthenticated connection.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from typing import Any

from pymemcache.client.base import Client
from pymemcache.exceptions import (
    MemcacheClientError,
    MemcacheServerError,
    MemcacheUnexpectedCloseError,
)

from cachekit.config.memcache import MemcacheServer
from cachekit.errors import CacheValueError, StoreUnavailable
from cachekit.stores.memcache.client import (
    STORE_NAME,
    AuthenticationFailed,
    closed_by_peer,
    store_error,
)
from cachekit.stores.memcache.pool import DEFAULT_MAX_CONNECTIONS, Pool

__all__ = ["TextClient"]


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _delete_each(client: Client, keys: Sequence[str]) -> int:
    # pymemcache's delete_many answers True whatever existed: one delete per key counts.
    return sum(bool(client.delete(key, noreply=False)) for key in keys)


def _stale(client: Client) -> bool:
    return closed_by_peer(client.sock)


class TextClient:
    """One server over memcached's text protocol (see the module documentation)."""

    def __init__(
        self,
        server: MemcacheServer,
        *,
        ascii_auth: bool,
        connect_timeout: float,
        timeout: float,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_wait: float | None = None,
    ) -> None:
        self.address = server.address
        self._target = (server.host, server.port)
        self._credentials = f"{server.username} {server.password}".encode() if ascii_auth else b""
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._pool: Pool[Client] = Pool(
            self._connect,
            Client.close,
            self._error,
            stale=_stale,
            closed=(ConnectionError, MemcacheUnexpectedCloseError),
            max_connections=max_connections,
            wait=connect_timeout + timeout if pool_wait is None else pool_wait,
            name=f"memcache server {self.address}",
        )

    def _connect(self) -> Client:
        client = Client(
            self._target,
            connect_timeout=self._connect_timeout,
            timeout=self._timeout,
            no_delay=True,
            default_noreply=False,
        )
        if self._credentials:
            try:
                stored = client.set("auth", self._credentials, 0, noreply=False)
            except MemcacheClientError as exc:
                client.close()
                raise AuthenticationFailed(_text(exc.args[0] if exc.args else exc)) from exc
            except BaseException:
                client.close()
                raise
            if not stored:
                client.close()
                raise AuthenticationFailed("the server did not accept the credentials")
        return client

    def _error(self, exc: Exception, fresh: bool) -> Exception:
        if isinstance(exc, MemcacheClientError | MemcacheServerError):
            text = _text(exc.args[0]) if exc.args else ""
            if "non-numeric" in text:
                return CacheValueError("memcached cannot increment a non-numeric value")
            if "too large" in text:
                return CacheValueError(
                    f"memcache server {self.address} refused the item as too large"
                )
            if "auth" in text:
                return store_error(AuthenticationFailed(text), self.address, 0)
        if isinstance(exc, MemcacheUnexpectedCloseError):
            # memcached -S hangs up on a text connection at its first command, and keeps
            # accepting new ones; a server going down hangs up once and then refuses. Only
            # the first can be missing credentials.
            hint = (
                "; if it requires authentication (memcached -S), give user:password@ in "
                "backend.cache.connection"
                if fresh and not self._credentials and self._accepts_connections()
                else " (it restarted or went down)"
            )
            return StoreUnavailable(
                f"memcache server {self.address} closed the connection before answering{hint}",
                store=STORE_NAME,
            )
        return store_error(exc, self.address, self._timeout)

    def _accepts_connections(self) -> bool:
        try:
            socket.create_connection(self._target, self._connect_timeout).close()
        except OSError:
            return False
        return True

    def get(self, key: str) -> bytes | None:
        value: bytes | None = self._pool.run(Client.get, key)
        return value

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        if not keys:
            return {}
        found: dict[str, bytes] = self._pool.run(Client.get_many, keys)
        return found

    def set(self, key: str, value: bytes, exptime: int) -> None:
        self._pool.run(Client.set, key, value, exptime, False)

    def set_many(self, items: Mapping[str, bytes], exptime: int) -> list[str]:
        failed: list[str] = self._pool.run(Client.set_many, items, exptime, False)
        return failed

    def add(self, key: str, value: bytes, exptime: int) -> bool:
        return bool(self._pool.run_once(Client.add, key, value, exptime, False))

    def delete(self, key: str) -> bool:
        return bool(self._pool.run(Client.delete, key, False))

    def delete_many(self, keys: Sequence[str]) -> int:
        return self._pool.run(_delete_each, keys) if keys else 0

    def incr(self, key: str, delta: int) -> int | None:
        value: int | None
        if delta >= 0:
            value = self._pool.run_once(Client.incr, key, delta)
        else:
            value = self._pool.run_once(Client.decr, key, -delta)
        return value

    def gets(self, key: str) -> tuple[bytes | None, Any]:
        value: tuple[bytes | None, Any] = self._pool.run(Client.gets, key)
        return value

    def cas(self, key: str, value: bytes, token: Any, exptime: int) -> bool:
        return bool(self._pool.run_once(Client.cas, key, value, token, exptime, False))

    def touch(self, key: str, exptime: int) -> bool:
        return bool(self._pool.run(Client.touch, key, exptime, False))

    def ping(self) -> None:
        self._pool.run(Client.version)

    def stats(self) -> dict[str, str]:
        raw: dict[Any, Any] = self._pool.run(Client.stats)
        return {_text(k): _text(v) for k, v in raw.items()}

    def close(self) -> None:
        self._pool.close()
