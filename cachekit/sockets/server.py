"""The host's side of a binding socket: serve one plugin's binding on one Unix socket.

A :class:`BindingServer` is bound, host-side, to one :class:`SocketBinding` — the caches of
one plugin in one binding — so nothing a client sends can name another plugin or binding:
a frame carries a tenant (checked like at the HTTP edge, or pinned on the socket), a
namespace, an operation and its arguments (:mod:`cachekit.sockets.protocol`). Values cross
as the bytes the plugin's codec wrote; the host's :class:`~cachekit.Cache` stores them as
they are (:class:`BytesCodec`), under the plugin's policy and key layout.

A connection's requests run in the order they arrive (a memory binding answers them
inline, a network one in one task per connection), so a client may pipeline and still
read its own writes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from cachekit.cache import Cache
from cachekit.codec import Codec
from cachekit.errors import CacheValueError, ConfigError
from cachekit.keys import ANY
from cachekit.resolvers import DEFAULT_ID_PATTERN
from cachekit.sockets.protocol import (
    DEFAULT_MAX_FRAME,
    HEADER,
    PROTOCOL_VERSION,
    BadFrame,
    Code,
    Request,
    code_of,
    error_reply,
    parse_request,
    reply,
)

if TYPE_CHECKING:
    from cachekit.manager import CacheManager

__all__ = ["BindingServer", "BytesCodec", "SocketBinding", "socket_binding", "socket_bindings"]

log = logging.getLogger("cachekit")

_MAX_CACHES = 4096  # (tenant, namespace) caches kept per socket; forgotten all at once past it
_QUEUE_HIGH, _QUEUE_LOW = 1024, 64  # a connection's queued requests: pause / resume reading


class BytesCodec(Codec):
    """A codec for values that are already bytes: the host stores what a plugin process
    encoded and hands it back unchanged (the plugin decodes it)."""

    def __repr__(self) -> str:
        return "BytesCodec()"

    def encode(self, value: Any) -> bytes:
        """``value`` itself.

        :raises CacheValueError: ``value`` is not ``bytes``.
        """
        if type(value) is not bytes:
            raise CacheValueError(f"a binding socket stores bytes, got {type(value).__name__}")
        return value

    def decode(self, data: bytes) -> bytes:
        """``data`` itself."""
        return data


BYTES = BytesCodec()


@dataclass(frozen=True, slots=True)
class SocketBinding:
    """What one socket serves: the raw-bytes :class:`~cachekit.Cache` of one plugin in one
    binding, for a tenant (``None``: the platform scope).

    :ivar cache_for: builds the cache of a tenant (a :class:`BytesCodec` cache).
    :ivar inline: the store never blocks (in-process): calls run inline, not in a task.
    :ivar label: what logs call it (``"catalog on redis"``).
    """

    cache_for: Callable[[str | None], Cache]
    inline: bool = False
    label: str = "binding"


def socket_binding(manager: CacheManager, plugin: str, binding: str | None = None) -> SocketBinding:
    """The :class:`SocketBinding` of ``plugin`` on ``manager``'s binding ``binding``
    (``None``: the default binding).

    :raises ConfigError: no such binding, or one whose values are not cachekit's
        (``valueFormat: keyv-json``: a plugin process writes cachekit's codec bytes).
    :raises CachePolicyError: the host does not grant ``plugin`` that binding.
    """
    chosen = manager.binding(binding)
    if chosen.codec is not None:
        raise ConfigError(
            f"binding {chosen.name!r} stores values as {chosen.config.value_format}: a "
            "binding socket serves the bytes a plugin process encodes with cachekit's codec; "
            "serve the plugin another binding"
        )
    manager.for_plugin(plugin, binding=binding)  # the grant, checked now rather than per call
    return SocketBinding(
        partial(manager.for_plugin, plugin, binding=binding, codec=BYTES),
        inline=not getattr(chosen.store, "blocking", True),
        label=f"plugin {plugin!r}, binding {chosen.name!r} ({chosen.store_name})",
    )


def socket_bindings(manager: CacheManager, plugin: str) -> dict[str, SocketBinding]:
    """A :class:`SocketBinding` for every binding ``manager`` grants ``plugin`` (the
    default one first): what :func:`~cachekit.sockets.launch` serves a plugin process."""
    return {name: socket_binding(manager, plugin, name) for name in manager.granted(plugin)}


_SYNC: dict[str, Callable[..., Any]] = {
    op: getattr(Cache, op)
    for op in (
        "get",
        "get_many",
        "set",
        "set_many",
        "add",
        "delete",
        "delete_many",
        "touch",
        "incr",
        "expire",
        "clear",
    )
}
_ASYNC: dict[str, Callable[..., Any]] = {op: getattr(Cache, "a" + op) for op in _SYNC}


class BindingServer:
    """Serves one :class:`SocketBinding` on one Unix socket (mode 0600).

    :param binding: the plugin's caches in one binding.
    :param tenant: pin every call to this tenant (``None``: the platform scope): a frame
        must then name it or send ``nil``. By default (``ANY``) each frame names its
        tenant, checked against ``id_pattern``; ``nil`` is the platform scope.
    :param max_frame: the largest frame body accepted; a longer length prefix gets
        ``FRAME_TOO_LARGE`` and the connection is closed, without reading the body.
    :param id_pattern: the tenant ids accepted (whole match), as at the HTTP edge.
    """

    def __init__(
        self,
        binding: SocketBinding,
        *,
        tenant: str | Any | None = ANY,
        max_frame: int = DEFAULT_MAX_FRAME,
        id_pattern: re.Pattern[str] = DEFAULT_ID_PATTERN,
    ) -> None:
        self.binding = binding
        self.tenant = tenant
        self.max_frame = max_frame
        self.id_pattern = id_pattern
        self.path: str | None = None
        self._server: asyncio.Server | None = None
        self.connections: set[_Connection] = set()
        """The open client connections."""
        self._caches: dict[tuple[str | None, str | None], Cache] = {}

    def __repr__(self) -> str:
        pinned = "" if self.tenant is ANY else f", tenant={self.tenant!r}"
        return f"BindingServer({self.binding.label!r}, path={self.path!r}{pinned})"

    async def start(self, path: str) -> None:
        """Listen on ``path`` (a socket file created with mode 0600; an old one is replaced)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _Connection(self), path)
        os.chmod(path, 0o600)
        self.path = path

    async def close(self) -> None:
        """Stop listening, close every connection and remove the socket file."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for connection in list(self.connections):
            connection.close()
        if server is not None:
            await server.wait_closed()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def cache(self, tenant: str | None, namespace: str | None) -> Cache:
        """The cache a request for ``tenant`` and ``namespace`` uses.

        :raises BadFrame: the tenant is not valid here (``BAD_TENANT``) or the namespace
            is invalid (``BAD_ARGUMENT``).
        """
        cache = self._caches.get((tenant, namespace))
        if cache is not None:
            return cache
        scope_tenant = self._tenant(tenant)
        try:
            cache = self.binding.cache_for(scope_tenant)
        except ConfigError as exc:  # a tenant where the binding's layout has none
            raise BadFrame(Code.BAD_TENANT, str(exc)) from None
        if namespace is not None:
            cache = cache.namespace(namespace)
        if len(self._caches) >= _MAX_CACHES:
            self._caches.clear()
        self._caches[tenant, namespace] = cache
        return cache

    def _tenant(self, tenant: str | None) -> str | None:
        pinned = self.tenant
        if pinned is not ANY:
            if tenant is not None and tenant != pinned:
                raise BadFrame(Code.BAD_TENANT, f"this socket serves tenant {pinned!r} only")
            return pinned
        if tenant is not None and self.id_pattern.fullmatch(tenant) is None:
            raise BadFrame(
                Code.BAD_TENANT,
                f"bad tenant id {tenant!r:.80}: expected an id matching "
                f"{self.id_pattern.pattern}, or nil for the platform scope",
            )
        return tenant

    def ping(self, request: Request) -> dict[str, Any]:
        """The ``ping`` reply: the protocol version, the largest frame, the scope's
        tenant and default TTL."""
        cache = self.cache(request.tenant, request.namespace)
        return {
            "protocol": PROTOCOL_VERSION,
            "max_frame": self.max_frame,
            "tenant": cache.tenant,
            "default_ttl": cache.default_ttl,
        }

    def execute(self, request: Request) -> bytes:
        """Run ``request`` on the store's sync API; its reply frame."""
        try:
            if request.op == "ping":
                return reply(request.id, self.ping(request))
            cache = self.cache(request.tenant, request.namespace)
            return reply(request.id, _SYNC[request.op](cache, *request.args))
        except Exception as exc:  # every failure is the client's reply
            return self._failed(request, exc)

    async def aexecute(self, request: Request) -> bytes:
        """Run ``request`` on the store's async API; its reply frame."""
        try:
            if request.op == "ping":
                return reply(request.id, self.ping(request))
            cache = self.cache(request.tenant, request.namespace)
            return reply(request.id, await _ASYNC[request.op](cache, *request.args))
        except Exception as exc:  # every failure is the client's reply
            return self._failed(request, exc)

    def _failed(self, request: Request, exc: Exception) -> bytes:
        """The error reply for ``exc``. What the store said stays on the host: its
        messages name full keys and servers, which the plugin must not learn."""
        code = code_of(exc)
        message = _SAID.get(code)
        if message is None:
            message = str(exc) or type(exc).__name__
        elif code is Code.BAD_VALUE:
            message = message.format(key=request.args[0])
        elif code is Code.INTERNAL:
            log.exception("cachekit: %s failed on %r", self, request)
        return error_reply(request.id, code, message)


# What the host answers for errors raised below the cache API (the store's own messages
# name full keys and servers); refusals of the request keep their message.
_SAID: dict[Code, str] = {
    Code.BAD_VALUE: "the value at {key!r} is not an integer, or the result would leave the "
    "signed 64-bit range; it is unchanged",
    Code.STORE_UNAVAILABLE: "the store behind this binding is unavailable",
    Code.STORE_TIMEOUT: "the store behind this binding did not answer in time",
    Code.INTERNAL: "the host failed on this request (its log says why)",
}


class _Connection(asyncio.Protocol):
    """One client's connection: frames in, replies out, in order."""

    def __init__(self, server: BindingServer) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.queue: collections.deque[Request] = collections.deque()
        self.worker: asyncio.Task[None] | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        if self.worker is not None:
            self.worker.cancel()

    def pause_writing(self) -> None:  # the client reads slower than it asks: stop reading
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.paused:
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buffer, server = self.buffer, self.server
        buffer += data
        out: list[bytes] = []
        position, size = 0, len(buffer)
        inline = server.binding.inline
        while size - position >= HEADER:
            length = int.from_bytes(buffer[position : position + HEADER], "big")
            if length > server.max_frame:
                self._too_large(out, length)
                return
            end = position + HEADER + length
            if end > size:
                break
            body = bytes(buffer[position + HEADER : end])
            position = end
            try:
                request = parse_request(body)
            except BadFrame as exc:
                out.append(error_reply(exc.id, exc.code, str(exc)))
                continue
            if inline:
                out.append(server.execute(request))
            else:
                self.queue.append(request)
        del buffer[:position]
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
        if self.queue:
            self._work()

    def _too_large(self, out: list[bytes], length: int) -> None:
        """Answer a length prefix over the maximum and close: the stream cannot be read
        past a frame that is not read."""
        message = f"a frame of {length} bytes is over this socket's {self.server.max_frame}"
        out.append(error_reply(None, Code.FRAME_TOO_LARGE, message))
        self.buffer.clear()
        self.queue.clear()
        if self.transport is not None:
            self.transport.write(b"".join(out))
            self.transport.close()

    def _work(self) -> None:
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._drain())
        if not self.paused and len(self.queue) > _QUEUE_HIGH and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    async def _drain(self) -> None:
        queue, server = self.queue, self.server
        try:
            while queue and self.transport is not None:
                data = await server.aexecute(queue[0])
                queue.popleft()
                if self.transport is None:
                    break
                self.transport.write(data)
                if self.paused and len(queue) < _QUEUE_LOW:
                    self.paused = False
                    self.transport.resume_reading()
        finally:
            self.worker = None
