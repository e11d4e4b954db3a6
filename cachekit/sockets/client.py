"""The plugin's side of a binding socket: a :class:`~cachekit.stores.base.Store` that
speaks :mod:`cachekit.sockets.protocol` to the host.

A plugin process wraps it in a regular :class:`~cachekit.Cache` (:mod:`cachekit.plugin`
does), so ``@cached``, counters and rate limits work unchanged. The cache builds full keys
``{plugin}:{tenant}:{namespace}:{key}`` as on any store; this store reads the tenant and
the namespace back out of them and sends them, with the user key, in each frame: the host
puts them under the plugin's real prefix, which the plugin never sees.

Sync calls use one blocking connection (a lock serialises threads); async calls one
connection per event loop, pipelined: each request gets an id, replies are matched by id.
Every call goes through a circuit breaker; a lost connection fails the calls in flight
with :class:`~cachekit.errors.StoreUnavailable` and the next call reconnects.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack

from cachekit.breaker import CircuitBreaker
from cachekit.errors import (
    CacheKeyError,
    CacheValueError,
    StoreError,
    StoreTimeout,
    StoreUnavailable,
)
from cachekit.keys import PLATFORM_SEGMENT, SEPARATOR, KeySelector, unescape_segment
from cachekit.sockets.protocol import DEFAULT_MAX_FRAME, HEADER, error_of
from cachekit.stores.base import BaseStore

__all__ = ["SocketStore"]

Scope = tuple[str | None, str | None]  # (tenant, namespace) as the wire carries them


def _wire_ttl(ttl: float | None) -> float | int:
    """A store TTL on the wire: ``None`` (no expiry) is ``0``; the client's default TTL was
    applied by the cache already."""
    return 0 if ttl is None else ttl


class SocketStore(BaseStore):
    """A store reached through a binding socket at ``path``.

    :param path: the socket (``CACHEKIT_CACHE_SOCKET...``).
    :param binding: the binding's name, for messages and the breaker.
    :param timeout: seconds to wait for a reply (and to connect).
    :param breaker: the circuit breaker (default: 3 failures, 2 s cooldown).
    """

    name = "socket"

    def __init__(
        self,
        path: str,
        *,
        binding: str = "",
        timeout: float = 0.5,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.path = path
        self.binding = binding
        self.label = f"binding {binding!r}" if binding else "binding socket"
        self.timeout = timeout
        self.max_frame = DEFAULT_MAX_FRAME  # the host's, once a ping has said it
        self.breaker = breaker if breaker is not None else CircuitBreaker(self.label)
        self._scopes: dict[tuple[str, str], Scope] = {}
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._ids = 0
        self._channels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Channel]
        self._channels = weakref.WeakKeyDictionary()
        self._last: _Channel | None = None  # the channel used last (one loop: always)

    def __repr__(self) -> str:
        return (
            f"SocketStore({self.path!r}, binding={self.binding!r}, breaker={self.breaker.state!r})"
        )

    # --- keys: full keys back to (tenant, namespace, key) -------------------------------

    def _split(self, full_key: str) -> tuple[Scope, str, str]:
        """The scope, the user key and the scope's prefix of ``full_key``."""
        _plugin, tenant, namespace, key = full_key.split(SEPARATOR, 3)
        scope = self._scopes.get((tenant, namespace))
        if scope is None:
            scope = self._scope(tenant, namespace)
        return scope, key, full_key[: len(full_key) - len(key)]

    def _scope(self, tenant: str, namespace: str) -> Scope:
        scope = (
            None if tenant == PLATFORM_SEGMENT else unescape_segment(tenant),
            None if namespace == "" else unescape_segment(namespace),
        )
        if len(self._scopes) < 4096:
            self._scopes[tenant, namespace] = scope
        return scope

    def _one(self, full_key: str) -> tuple[str | None, str | None, str]:
        (tenant, namespace), key, _prefix = self._split(full_key)
        return tenant, namespace, key

    def _groups(self, full_keys: Sequence[str]) -> dict[Scope, tuple[str, list[str]]]:
        """Full keys by scope (one scope from a cache): the prefix and the user keys."""
        groups: dict[Scope, tuple[str, list[str]]] = {}
        for full in full_keys:
            scope, key, prefix = self._split(full)
            group = groups.get(scope)
            if group is None:
                group = groups[scope] = (prefix, [])
            group[1].append(key)
        return groups

    def _clear_scope(self, selector: KeySelector) -> Scope:
        if selector.tenant is None or selector.namespace == "":
            raise CacheKeyError(
                "a binding socket clears one tenant's scope or one named namespace of it"
            )
        return self._scope(
            selector.tenant, "" if selector.namespace is None else selector.namespace
        )

    # --- frames --------------------------------------------------------------------------

    def _request(
        self, op: str, tenant: str | None, namespace: str | None, args: tuple[Any, ...]
    ) -> tuple[int, bytes]:
        self._ids = ident = (self._ids + 1) & 0xFFFFFFFF
        body: bytes = msgpack.packb([ident, op, tenant, namespace, *args], use_bin_type=True)
        if len(body) > self.max_frame:
            raise CacheValueError(
                f"{op} needs a frame of {len(body)} bytes, over the {self.label}'s "
                f"{self.max_frame}: store less in one call"
            )
        return ident, len(body).to_bytes(HEADER, "big") + body

    def _result(self, ident: int, message: Any) -> Any:
        """The result of a reply, or its error raised."""
        if type(message) is not list or len(message) != 3:
            raise StoreUnavailable(
                f"{self.label}: the host sent a malformed reply", store=self.name
            )
        _id, code, result = message
        if code:
            raise error_of(code, str(result), self.name)
        return result

    # --- sync: one blocking connection ---------------------------------------------------

    def _call(self, op: str, tenant: str | None, namespace: str | None, *args: Any) -> Any:
        ident, data = self._request(op, tenant, namespace, args)
        with self.breaker, self._lock:
            message = self._exchange(ident, data)
            return self._result(ident, message)

    def _exchange(self, ident: int, data: bytes) -> Any:
        try:
            sock = self._sock
            if sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                try:
                    sock.connect(self.path)
                except BaseException:
                    sock.close()
                    raise
                self._sock = sock
            sock.sendall(data)
            while True:
                length = int.from_bytes(_read(sock, HEADER), "big")
                message = msgpack.unpackb(_read(sock, length), raw=False, strict_map_key=False)
                if type(message) is not list or not message or message[0] is None:
                    self._drop()  # the host closes a connection it answers with no id
                    return message
                if message[0] == ident:
                    return message  # (an earlier request's late reply is skipped)
        except TimeoutError:
            self._drop()
            raise StoreTimeout(
                f"{self.label} did not answer within {self.timeout}s", store=self.name
            ) from None
        except (OSError, EOFError, ValueError) as exc:
            self._drop()
            raise StoreUnavailable(
                f"{self.label} at {self.path} is unavailable: {exc or type(exc).__name__}",
                store=self.name,
            ) from exc

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    # --- async: a pipelined connection per event loop --------------------------------------

    async def _acall(self, op: str, tenant: str | None, namespace: str | None, *args: Any) -> Any:
        ident, data = self._request(op, tenant, namespace, args)
        breaker = self.breaker  # the breaker protocol written out: a hot path
        if not breaker.healthy:
            breaker.before_call()
        try:
            channel = self._last
            loop = asyncio.get_running_loop()
            if channel is None or channel.transport is None or channel.loop is not loop:
                channel = await self._channel(loop)
            result = self._result(ident, await channel.send(ident, data))
        except StoreError as exc:
            breaker.record_failure(exc)
            raise
        if not breaker.healthy:
            breaker.record_success()
        return result

    async def _channel(self, loop: asyncio.AbstractEventLoop) -> _Channel:
        """The running loop's connection, connected if it is not."""
        channel = self._channels.get(loop)
        if channel is None or channel.transport is None:
            channel = await self._connect(loop)
        self._last = channel
        return channel

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Channel:
        try:
            async with asyncio.timeout(self.timeout):
                _transport, channel = await loop.create_unix_connection(
                    lambda: _Channel(self), self.path
                )
        except TimeoutError:
            raise StoreTimeout(
                f"{self.label} did not accept within {self.timeout}s", store=self.name
            ) from None
        except OSError as exc:
            raise StoreUnavailable(
                f"{self.label} at {self.path} is unavailable: {exc}", store=self.name
            ) from exc
        old = self._channels.get(loop)
        if old is not None and old.transport is not None:  # another caller connected first
            channel.close()
            return old
        self._channels[loop] = channel
        return channel

    def close(self) -> None:
        with self._lock:
            self._drop()
        for channel in list(self._channels.values()):
            channel.close()

    async def aclose(self) -> None:
        self.close()

    # --- the store API: the same arguments for both families ------------------------------

    def ping(self) -> None:
        self._call("ping", None, None)

    async def aping(self) -> None:
        await self._acall("ping", None, None)

    def info(self, tenant: str | None) -> dict[str, Any]:
        """The host's ``ping`` reply for ``tenant``: ``protocol``, ``max_frame``,
        ``tenant`` and ``default_ttl``; the maximum frame is kept."""
        info: dict[str, Any] = self._call("ping", tenant, None)
        self.max_frame = int(info.get("max_frame", self.max_frame))
        return info

    def get(self, key: str) -> bytes | None:
        return self._call("get", *self._one(key))  # type: ignore[no-any-return]

    async def aget(self, key: str) -> bytes | None:
        return await self._acall("get", *self._one(key))  # type: ignore[no-any-return]

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for (tenant, namespace), (prefix, user) in self._groups(keys).items():
            got = self._call("get_many", tenant, namespace, user)
            found.update({prefix + key: value for key, value in got.items()})
        return found

    async def aget_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for (tenant, namespace), (prefix, user) in self._groups(keys).items():
            got = await self._acall("get_many", tenant, namespace, user)
            found.update({prefix + key: value for key, value in got.items()})
        return found

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self._call("set", *self._one(key), value, _wire_ttl(ttl))

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        await self._acall("set", *self._one(key), value, _wire_ttl(ttl))

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        for (tenant, namespace), (prefix, user) in self._groups(list(items)).items():
            batch = {key: items[prefix + key] for key in user}
            self._call("set_many", tenant, namespace, batch, _wire_ttl(ttl))

    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        for (tenant, namespace), (prefix, user) in self._groups(list(items)).items():
            batch = {key: items[prefix + key] for key in user}
            await self._acall("set_many", tenant, namespace, batch, _wire_ttl(ttl))

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        return bool(self._call("add", *self._one(key), value, _wire_ttl(ttl)))

    async def aadd(self, key: str, value: bytes, ttl: float | None) -> bool:
        return bool(await self._acall("add", *self._one(key), value, _wire_ttl(ttl)))

    def delete(self, key: str) -> bool:
        return bool(self._call("delete", *self._one(key)))

    async def adelete(self, key: str) -> bool:
        return bool(await self._acall("delete", *self._one(key)))

    def delete_many(self, keys: Sequence[str]) -> int:
        groups = self._groups(keys).items()
        return sum(self._call("delete_many", t, n, user) for (t, n), (_p, user) in groups)

    async def adelete_many(self, keys: Sequence[str]) -> int:
        groups = self._groups(keys).items()
        return sum([await self._acall("delete_many", t, n, user) for (t, n), (_p, user) in groups])

    def incr(self, key: str, delta: int, ttl: float | None) -> int:
        return int(self._call("incr", *self._one(key), delta, _wire_ttl(ttl)))

    async def aincr(self, key: str, delta: int, ttl: float | None) -> int:
        return int(await self._acall("incr", *self._one(key), delta, _wire_ttl(ttl)))

    def expire(self, key: str, ttl: float | None) -> bool:
        return bool(self._call("expire", *self._one(key), _wire_ttl(ttl)))

    async def aexpire(self, key: str, ttl: float | None) -> bool:
        return bool(await self._acall("expire", *self._one(key), _wire_ttl(ttl)))

    def touch(self, key: str, ttl: float | None) -> bool:
        return bool(self._call("touch", *self._one(key), _wire_ttl(ttl)))

    async def atouch(self, key: str, ttl: float | None) -> bool:
        return bool(await self._acall("touch", *self._one(key), _wire_ttl(ttl)))

    def clear(self, selector: KeySelector) -> int | None:
        return self._call("clear", *self._clear_scope(selector))  # type: ignore[no-any-return]

    async def aclear(self, selector: KeySelector) -> int | None:
        return await self._acall("clear", *self._clear_scope(selector))  # type: ignore[no-any-return]


def _read(sock: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes from ``sock``.

    :raises EOFError: the host closed the connection first.
    """
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("the host closed the connection")
        data += chunk
    return bytes(data)


class _Channel(asyncio.Protocol):
    """One pipelined async connection: requests out (written once per loop iteration),
    replies in, each settling the future of its id; a watchdog fails the overdue ones."""

    def __init__(self, store: SocketStore) -> None:
        self.store = store
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, tuple[asyncio.Future[Any], float]] = {}
        self.outgoing: list[bytes] = []
        self.buffer = bytearray()
        self.loop = asyncio.get_running_loop()
        self.watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def send(self, ident: int, data: bytes) -> asyncio.Future[Any]:
        future = self.loop.create_future()
        self.pending[ident] = (future, self.loop.time() + self.store.timeout)
        if not self.outgoing:
            self.loop.call_soon(self._flush)
        self.outgoing.append(data)
        if self.watchdog is None:
            self.watchdog = self.loop.call_later(self.store.timeout, self._overdue)
        return future

    def _flush(self) -> None:
        data, self.outgoing = b"".join(self.outgoing), []
        if self.transport is not None:
            self.transport.write(data)

    def _overdue(self) -> None:
        self.watchdog = None
        now, pending = self.loop.time(), self.pending
        for ident, (future, deadline) in list(pending.items()):
            if deadline > now:  # ids are in send order: the rest are not due either
                self.watchdog = self.loop.call_later(deadline - now, self._overdue)
                return
            del pending[ident]
            if not future.done():
                store = self.store
                future.set_exception(
                    StoreTimeout(
                        f"{store.label} did not answer within {store.timeout}s", store=store.name
                    )
                )

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        position, size = 0, len(buffer)
        pending = self.pending
        while size - position >= HEADER:
            end = position + HEADER + int.from_bytes(buffer[position : position + HEADER], "big")
            if end > size:
                break
            try:
                message = msgpack.unpackb(
                    buffer[position + HEADER : end], raw=False, strict_map_key=False
                )
            except Exception:  # a host that sends garbage is a broken host
                self._fail(
                    StoreUnavailable(
                        f"{self.store.label}: the host sent a bad frame", store=self.store.name
                    )
                )
                return
            position = end
            ident = message[0] if type(message) is list and message else None
            entry = pending.pop(ident, None) if ident is not None else None
            if entry is not None and not entry[0].done():
                entry[0].set_result(message)
            elif ident is None and type(message) is list and len(message) == 3:
                self._fail(error_of(message[1], str(message[2]), self.store.name))
                return
        del buffer[:position]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        reason = f": {exc}" if exc else ""
        self._fail(
            StoreUnavailable(
                f"{self.store.label}: the host closed the connection{reason}", store=self.store.name
            )
        )

    def _fail(self, error: Exception) -> None:
        pending, self.pending = self.pending, {}
        for future, _deadline in pending.values():
            if not future.done():
                future.set_exception(error)
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        self.close()
