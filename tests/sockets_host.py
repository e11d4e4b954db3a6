"""A host for the socket tests: an asyncio loop in a thread serving binding sockets, so a
test can talk to it with blocking sockets, the sync client or a subprocess."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import msgpack

T = TypeVar("T")


class HostLoop:
    """An event loop running in a daemon thread; :meth:`run` runs a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_rest() -> None:
            current = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not current]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        self.run(cancel_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def connect(path: str | os.PathLike[str], timeout: float = 5.0) -> socket.socket:
    """A blocking connection to the socket at ``path``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(os.fspath(path))
    return sock


def read_frame(sock: socket.socket) -> Any:
    """One reply from ``sock``, decoded."""
    length = int.from_bytes(read_exactly(sock, 4), "big")
    return msgpack.unpackb(read_exactly(sock, length), raw=False, strict_map_key=False)


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def send(sock: socket.socket, message: Any) -> None:
    body = msgpack.packb(message, use_bin_type=True)
    sock.sendall(len(body).to_bytes(4, "big") + body)


def call(sock: socket.socket, message: Any) -> Any:
    """Send ``message`` as a frame and read the reply."""
    send(sock, message)
    return read_frame(sock)
