"""A second client of the binding socket protocol, written from docs/protocol.md alone:
the standard library and msgpack, nothing of cachekit.

It is deliberately plain — a blocking socket, frames in and out, pipelining by id — to
show what an author in another language needs from the document.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import struct
from typing import Any

import msgpack

ERRORS = {
    1: "BAD_FRAME",
    2: "FRAME_TOO_LARGE",
    3: "UNKNOWN_OP",
    4: "BAD_ARGUMENT",
    5: "BAD_TENANT",
    6: "VALUE_TOO_LARGE",
    7: "POLICY",
    8: "BAD_VALUE",
    9: "STORE_UNAVAILABLE",
    10: "STORE_TIMEOUT",
    11: "INTERNAL",
}


class ProtocolError(Exception):
    """An error reply: ``code`` and its ``name`` from the document's table."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{ERRORS.get(code, code)}: {message}")
        self.code = code
        self.name = ERRORS.get(code, str(code))


def socket_from_environment(binding: str = "") -> str:
    """The socket path the host announced (``""``: the only binding)."""
    if not binding:
        return os.environ["CACHEKIT_CACHE_SOCKET"]
    return os.environ["CACHEKIT_CACHE_SOCKET_" + re.sub(r"[^A-Z0-9]", "_", binding.upper())]


def encode_frame(message: Any) -> bytes:
    """A 4-byte big-endian length, then one msgpack value (bin for bytes, str for text)."""
    body: bytes = msgpack.packb(message, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def decode_frames(data: bytes) -> list[Any]:
    """Every whole frame in ``data``, decoded."""
    out, position = [], 0
    while len(data) - position >= 4:
        (length,) = struct.unpack_from(">I", data, position)
        end = position + 4 + length
        if end > len(data):
            break
        out.append(msgpack.unpackb(data[position + 4 : end], raw=False, strict_map_key=False))
        position = end
    return out


class Client:
    """Requests ``[id, op, tenant, namespace, *args]``, replies ``[id, code, result]``."""

    def __init__(self, path: str, tenant: str | None = None, namespace: str | None = None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(path)
        self.tenant, self.namespace = tenant, namespace
        self.ids = itertools.count(1)

    def close(self) -> None:
        self.sock.close()

    def _read_exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("the host closed the connection")
            data += chunk
        return data

    def read_reply(self) -> list[Any]:
        (length,) = struct.unpack(">I", self._read_exactly(4))
        reply: list[Any] = msgpack.unpackb(
            self._read_exactly(length), raw=False, strict_map_key=False
        )
        return reply

    def send(self, op: str, *args: Any) -> int:
        """Send one request without waiting; its id."""
        request_id = next(self.ids)
        message = [request_id, op, self.tenant, self.namespace, *args]
        self.sock.sendall(encode_frame(message))
        return request_id

    def call(self, op: str, *args: Any) -> Any:
        """One request and its result; an error reply raises :class:`ProtocolError`."""
        request_id = self.send(op, *args)
        reply_id, code, result = self.read_reply()
        assert reply_id == request_id, (reply_id, request_id)
        if code:
            raise ProtocolError(code, result)
        return result

    def pipeline(self, requests: list[tuple[Any, ...]]) -> dict[int, list[Any]]:
        """Send every ``(op, *args)`` first, then read every reply; replies by id."""
        data = b""
        ids = []
        for op, *args in requests:
            request_id = next(self.ids)
            ids.append(request_id)
            data += encode_frame([request_id, op, self.tenant, self.namespace, *args])
        self.sock.sendall(data)
        replies = {}
        for _ in ids:
            reply = self.read_reply()
            replies[reply[0]] = reply
        return replies
