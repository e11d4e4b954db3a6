"""One memcached server over the binary protocol with SASL PLAIN (``memcached -S``).

memcached accepts SASL only on its binary protocol. python-binary-memcached's public
``Client`` speaks it, but cannot give the store's contract: it reports a lost server as a
miss (``get`` answers ``None``), has no ``touch``, and its ``delete_multi`` does not count.
So this module is a complete, small client of our own that owns its sockets end to end:
the 24-byte header, SASL PLAIN, ``get``, ``getkq`` pipelines ended by ``noop``, ``set``,
``add``, ``cas``, ``delete``, ``incr``/``decr``, ``touch``, ``version`` and ``stat``
(the opcodes and statuses of memcached's ``protocol_binary.h``).

Every request carries an *opaque* number that the server echoes; a reply whose magic,
opcode, opaque or key is not the one expected raises :class:`ProtocolError`, and the pool
closes the connection, so a reply can never be handed to a command it does not answer.
Values are stored with flags 0 and returned byte for byte.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Mapping, Sequence
from enum import IntEnum
from typing import Any, Final, NamedTuple

from cachekit.config.memcache import MemcacheServer
from cachekit.errors import CacheValueError
from cachekit.stores.memcache.client import AuthenticationFailed, closed_by_peer, store_error
from cachekit.stores.memcache.pool import DEFAULT_MAX_CONNECTIONS, Pool

__all__ = ["BinaryClient", "BinaryConnection", "Opcode", "ProtocolError", "ServerStatus", "Status"]

# magic, opcode, key length, extras length, data type, vbucket (request) or status
# (response), total body length, opaque, cas
HEADER: Final = struct.Struct("!BBHBBHIIQ")
REQUEST: Final = 0x80
RESPONSE: Final = 0x81

_STORE_EXTRAS: Final = struct.Struct("!II")  # flags, expiration
_COUNTER_EXTRAS: Final = struct.Struct("!QQI")  # delta, initial value, expiration
_TOUCH_EXTRAS: Final = struct.Struct("!I")  # expiration
_NO_CREATE: Final = 0xFFFFFFFF  # incr/decr expiration meaning "fail if the key is missing"
_RECV_SIZE: Final = 65536


class Opcode(IntEnum):
    """The binary protocol commands this client sends."""

    GET = 0x00
    SET = 0x01
    ADD = 0x02
    DELETE = 0x04
    INCREMENT = 0x05
    DECREMENT = 0x06
    NOOP = 0x0A
    VERSION = 0x0B
    GETKQ = 0x0D
    STAT = 0x10
    TOUCH = 0x1C
    SASL_AUTH = 0x21


class Status(IntEnum):
    """Response statuses (others are reported by number)."""

    OK = 0x00
    KEY_NOT_FOUND = 0x01
    KEY_EXISTS = 0x02
    VALUE_TOO_LARGE = 0x03
    INVALID_ARGUMENTS = 0x04
    NOT_STORED = 0x05
    NON_NUMERIC = 0x06
    AUTH_ERROR = 0x20
    AUTH_CONTINUE = 0x21
    UNKNOWN_COMMAND = 0x81
    OUT_OF_MEMORY = 0x82


class ProtocolError(Exception):
    """A reply that does not answer the request it should: the connection is out of step."""


class ConnectionClosed(Exception):
    """The server closed the connection."""


class ServerStatus(Exception):
    """The server answered a request with an error status.

    :ivar status: the status number.
    """

    def __init__(self, status: int, message: bytes) -> None:
        try:
            name = Status(status).name
        except ValueError:
            name = hex(status)
        text = message.decode(errors="replace")
        super().__init__(f"status {name}" + (f": {text}" if text else ""))
        self.status = status


class Reply(NamedTuple):
    """One response: its status, CAS token and body split into extras, key and value."""

    status: int
    cas: int
    extras: bytes
    key: bytes
    value: bytes


def _request(
    opcode: int,
    opaque: int,
    key: bytes = b"",
    extras: bytes = b"",
    value: bytes = b"",
    cas: int = 0,
) -> bytes:
    body = len(key) + len(extras) + len(value)
    header = HEADER.pack(REQUEST, opcode, len(key), len(extras), 0, 0, body, opaque, cas)
    return header + extras + key + value if value else header + extras + key


class BinaryConnection:
    """One socket to a memcached server, authenticated with SASL PLAIN when a user is
    given. Not thread-safe: one caller at a time (the pool sees to it).

    :raises AuthenticationFailed: the server refused the credentials or has no SASL.
    :raises OSError: the server could not be reached.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        connect_timeout: float,
        timeout: float,
    ) -> None:
        self._sock = socket.create_connection((host, port), connect_timeout)
        self._unread = bytearray()
        self._opaque = 0
        try:
            self._sock.settimeout(timeout)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if username is not None:
                self._authenticate(username, password or "")
        except BaseException:
            self._sock.close()
            raise

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()

    def stale(self) -> bool:
        """Whether the server closed this idle connection (nothing is unread between
        calls, so anything to read means end of stream or a reset)."""
        return bool(self._unread) or closed_by_peer(self._sock)

    # --- framing --------------------------------------------------------------------------

    def _next_opaque(self) -> int:
        self._opaque = (self._opaque + 1) & 0xFFFFFFFF
        return self._opaque

    def _read(self, size: int) -> bytes:
        buffer = self._unread
        while len(buffer) < size:
            chunk = self._sock.recv(max(_RECV_SIZE, size - len(buffer)))
            if not chunk:
                raise ConnectionClosed("memcached closed the connection")
            buffer += chunk
        data = bytes(buffer[:size])
        del buffer[:size]
        return data

    def _reply(self, opcode: int, opaque: int) -> Reply:
        """The next reply, which must answer request ``opaque`` of ``opcode``."""
        magic, got_opcode, keylen, extlen, _, status, bodylen, got_opaque, cas = HEADER.unpack(
            self._read(HEADER.size)
        )
        if (
            magic != RESPONSE
            or got_opcode != opcode
            or got_opaque != opaque
            or keylen + extlen > bodylen
        ):
            raise ProtocolError(
                f"reply out of step: expected opcode {opcode:#x} #{opaque}, got magic "
                f"{magic:#x} opcode {got_opcode:#x} #{got_opaque}"
            )
        body = self._read(bodylen) if bodylen else b""
        return Reply(
            status, cas, body[:extlen], body[extlen : extlen + keylen], body[extlen + keylen :]
        )

    def _call(
        self, opcode: int, key: str = "", extras: bytes = b"", value: bytes = b"", cas: int = 0
    ) -> Reply:
        opaque = self._next_opaque()
        self._sock.sendall(_request(opcode, opaque, key.encode(), extras, value, cas))
        return self._reply(opcode, opaque)

    def _pipeline(self, opcode: int, requests: Iterable[tuple[str, bytes, bytes]]) -> list[Reply]:
        """Send one ``opcode`` request per ``(key, extras, value)`` at once; read every reply
        (in order) before any error status is raised."""
        first = self._opaque + 1
        packets = [
            _request(opcode, self._next_opaque(), key.encode(), extras, value)
            for key, extras, value in requests
        ]
        self._sock.sendall(b"".join(packets))
        return [self._reply(opcode, (first + i) & 0xFFFFFFFF) for i in range(len(packets))]

    @staticmethod
    def _check(reply: Reply, *accepted: int) -> int:
        if reply.status not in accepted:
            raise ServerStatus(reply.status, reply.value)
        return reply.status

    def _authenticate(self, username: str, password: str) -> None:
        credentials = b"\x00" + username.encode() + b"\x00" + password.encode()
        reply = self._call(Opcode.SASL_AUTH, "PLAIN", value=credentials)
        if reply.status == Status.AUTH_ERROR:
            raise AuthenticationFailed("the server refused the user name or password")
        if reply.status == Status.UNKNOWN_COMMAND:
            raise AuthenticationFailed("the server does not support SASL (memcached -S)")
        if reply.status != Status.OK:
            raise AuthenticationFailed(str(ServerStatus(reply.status, reply.value)))

    # --- commands ---------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The value of ``key``, or ``None``."""
        reply = self._call(Opcode.GET, key)
        return reply.value if self._check(reply, Status.OK, Status.KEY_NOT_FOUND) == 0 else None

    def gets(self, key: str) -> tuple[bytes | None, int | None]:
        """The value of ``key`` and its CAS token, or ``(None, None)``."""
        reply = self._call(Opcode.GET, key)
        if self._check(reply, Status.OK, Status.KEY_NOT_FOUND):
            return None, None
        return reply.value, reply.cas

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The values found, by key: quiet ``getkq`` for every key, then ``noop``, in one
        write; the server answers the hits and the ``noop``."""
        wanted: dict[int, str] = {}
        packets = []
        for key in keys:
            opaque = self._next_opaque()
            wanted[opaque] = key
            packets.append(_request(Opcode.GETKQ, opaque, key.encode()))
        end = self._next_opaque()
        packets.append(_request(Opcode.NOOP, end))
        self._sock.sendall(b"".join(packets))
        found: dict[str, bytes] = {}
        error: ServerStatus | None = None
        while True:
            magic, opcode, keylen, extlen, _, status, bodylen, opaque, _ = HEADER.unpack(
                self._read(HEADER.size)
            )
            if magic != RESPONSE or keylen + extlen > bodylen:
                raise ProtocolError(f"reply out of step: magic {magic:#x} opcode {opcode:#x}")
            body = self._read(bodylen) if bodylen else b""
            if opcode == Opcode.NOOP and opaque == end:
                if error is not None:
                    raise error
                return found
            key = wanted.pop(opaque, "")  # each hit answers one request, once
            if opcode != Opcode.GETKQ or not key or body[extlen : extlen + keylen] != key.encode():
                raise ProtocolError(f"reply out of step: opcode {opcode:#x} #{opaque}")
            if status == Status.OK:
                found[key] = body[extlen + keylen :]
            elif status != Status.KEY_NOT_FOUND and error is None:
                error = ServerStatus(status, body[extlen + keylen :])

    def store(self, opcode: int, key: str, value: bytes, exptime: int, cas: int = 0) -> bool:
        """``set``, ``add`` or ``cas`` (``set`` with a token): whether it was stored."""
        reply = self._call(opcode, key, _STORE_EXTRAS.pack(0, exptime), value, cas)
        status = self._check(
            reply, Status.OK, Status.KEY_EXISTS, Status.KEY_NOT_FOUND, Status.NOT_STORED
        )
        if status != Status.OK and opcode == Opcode.SET and not cas:
            raise ServerStatus(status, reply.value)
        return status == Status.OK

    def set_many(self, items: Mapping[str, bytes], exptime: int) -> list[str]:
        """``set`` every item in one write; the keys not stored."""
        extras = _STORE_EXTRAS.pack(0, exptime)
        replies = self._pipeline(Opcode.SET, ((k, extras, v) for k, v in items.items()))
        for reply in replies:
            self._check(reply, Status.OK, Status.NOT_STORED)
        return [key for key, reply in zip(items, replies, strict=True) if reply.status != 0]

    def delete(self, key: str) -> bool:
        """Delete ``key``; whether it existed."""
        return self._check(self._call(Opcode.DELETE, key), Status.OK, Status.KEY_NOT_FOUND) == 0

    def delete_many(self, keys: Sequence[str]) -> int:
        """Delete ``keys`` in one write; how many existed."""
        replies = self._pipeline(Opcode.DELETE, ((key, b"", b"") for key in keys))
        return sum(self._check(r, Status.OK, Status.KEY_NOT_FOUND) == 0 for r in replies)

    def incr(self, key: str, delta: int) -> int | None:
        """``incr`` (``delta >= 0``) or ``decr`` of an existing key: the new value, or
        ``None`` if the key is missing (it is not created)."""
        opcode = Opcode.INCREMENT if delta >= 0 else Opcode.DECREMENT
        reply = self._call(opcode, key, _COUNTER_EXTRAS.pack(abs(delta), 0, _NO_CREATE))
        if self._check(reply, Status.OK, Status.KEY_NOT_FOUND):
            return None
        if len(reply.value) != 8:
            raise ProtocolError(f"incr answered {len(reply.value)} bytes, not 8")
        return int.from_bytes(reply.value, "big")

    def touch(self, key: str, exptime: int) -> bool:
        """Give ``key`` a new expiry; whether it existed."""
        reply = self._call(Opcode.TOUCH, key, _TOUCH_EXTRAS.pack(exptime))
        return self._check(reply, Status.OK, Status.KEY_NOT_FOUND) == 0

    def version(self) -> str:
        """The server's version."""
        reply = self._call(Opcode.VERSION)
        self._check(reply, Status.OK)
        return reply.value.decode(errors="replace")

    def stats(self) -> dict[str, str]:
        """The server's ``stat`` table (one reply per statistic, then an empty one)."""
        opaque = self._next_opaque()
        self._sock.sendall(_request(Opcode.STAT, opaque))
        stats: dict[str, str] = {}
        while True:
            reply = self._reply(Opcode.STAT, opaque)
            self._check(reply, Status.OK)
            if not reply.key:
                return stats
            stats[reply.key.decode(errors="replace")] = reply.value.decode(errors="replace")


class BinaryClient:
    """One server over the binary protocol with SASL PLAIN, one pooled
    :class:`BinaryConnection` per concurrent caller (at most ``max_connections``)."""

    def __init__(
        self,
        server: MemcacheServer,
        *,
        connect_timeout: float,
        timeout: float,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_wait: float | None = None,
    ) -> None:
        self.address = server.address
        self._server = server
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._pool: Pool[BinaryConnection] = Pool(
            self._connect,
            BinaryConnection.close,
            self._error,
            stale=BinaryConnection.stale,
            closed=(ConnectionError, ConnectionClosed),
            max_connections=max_connections,
            wait=connect_timeout + timeout if pool_wait is None else pool_wait,
            name=f"memcache server {self.address}",
        )

    def _connect(self) -> BinaryConnection:
        server = self._server
        return BinaryConnection(
            server.host,
            server.port,
            username=server.username,
            password=server.password,
            connect_timeout=self._connect_timeout,
            timeout=self._timeout,
        )

    def _error(self, exc: Exception, fresh: bool) -> Exception:
        if isinstance(exc, ServerStatus):
            if exc.status == Status.NON_NUMERIC:
                return CacheValueError("memcached cannot increment a non-numeric value")
            if exc.status == Status.VALUE_TOO_LARGE:
                return CacheValueError(
                    f"memcache server {self.address} refused the item as too large"
                )
            if exc.status == Status.AUTH_ERROR:
                return store_error(AuthenticationFailed(str(exc)), self.address, 0)
        return store_error(exc, self.address, self._timeout)

    def get(self, key: str) -> bytes | None:
        return self._pool.run(BinaryConnection.get, key)

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return self._pool.run(BinaryConnection.get_many, keys) if keys else {}

    def set(self, key: str, value: bytes, exptime: int) -> None:
        self._pool.run(BinaryConnection.store, Opcode.SET, key, value, exptime)

    def set_many(self, items: Mapping[str, bytes], exptime: int) -> list[str]:
        return self._pool.run(BinaryConnection.set_many, items, exptime) if items else []

    def add(self, key: str, value: bytes, exptime: int) -> bool:
        return self._pool.run_once(BinaryConnection.store, Opcode.ADD, key, value, exptime)

    def delete(self, key: str) -> bool:
        return self._pool.run(BinaryConnection.delete, key)

    def delete_many(self, keys: Sequence[str]) -> int:
        return self._pool.run(BinaryConnection.delete_many, keys) if keys else 0

    def incr(self, key: str, delta: int) -> int | None:
        return self._pool.run_once(BinaryConnection.incr, key, delta)

    def gets(self, key: str) -> tuple[bytes | None, Any]:
        return self._pool.run(BinaryConnection.gets, key)

    def cas(self, key: str, value: bytes, token: Any, exptime: int) -> bool:
        return self._pool.run_once(BinaryConnection.store, Opcode.SET, key, value, exptime, token)

    def touch(self, key: str, exptime: int) -> bool:
        return self._pool.run(BinaryConnection.touch, key, exptime)

    def ping(self) -> None:
        self._pool.run(BinaryConnection.version)

    def stats(self) -> dict[str, str]:
        return self._pool.run(BinaryConnection.stats)

    def close(self) -> None:
        self._pool.close()
