"""Faster RESP2 packing and reading for the Redis store's sync connections.

Without ``hiredis`` (redis-py) or ``libvalkey`` (valkey-py), the drivers pack commands and
read replies in pure Python, one argument or one array element at a time through a chain
of calls: for ``MGET`` of 100 keys about 2 µs per key to pack and 2.5 µs per value to
read, together more than the loopback round trip. This module does the same work in one
loop each, through the drivers' own extension points:

* :class:`FastPacker` (the connections' ``command_packer``) writes a command in one
  pass, encoding arguments exactly as the driver's encoder does (``str`` in the
  connection's encoding, ``int`` and ``float`` as their ``repr``, ``bool`` refused) and
  sending big or zero-copy arguments as their own buffers, as the driver does;
* :func:`fast_parser_class` (the connections' ``parser_class``) reads an array whose
  elements are bulk strings or nils in one loop over the connection's read buffer;
  everything else (other replies, and any element that is not a bulk string: nested
  arrays, errors, integers) goes through the driver's own parser, so replies mean exactly
  what they meant.

Both are used only where the driver's default is its pure-Python code, and the parser only
while the driver's read buffer is laid out as expected (checked once); otherwise the store
runs on the driver's own code. Cluster clients do not accept either option and keep the
driver's code. Async connections keep it too (their reader awaits each element).
"""

from __future__ import annotations

import importlib
import io
from functools import cache
from typing import Any, Final

__all__ = [
    "FastPacker",
    "async_parser_class",
    "fast_async_parser_class",
    "fast_packer",
    "fast_parser_class",
    "parser_class",
]

_CRLF: Final = b"\r\n"
_OURS: Final = (b"+", b":", b"$", b"*")  # reply types read here; errors go to the driver
_BUFFER_CUTOFF: Final = 6000  # the drivers' cutoff for sending an argument on its own


class FastPacker:
    """Packs a command into RESP2 like the driver's pure-Python serializer, in one pass.

    :param encode: the driver's ``Encoder.encode`` (used for every argument that is not a
        plain ``str``, ``bytes`` or ``int``, so the rules stay the driver's).
    :param encoding: the connection's string encoding.
    :param errors: the connection's encoding error handler.
    """

    __slots__ = ("_encode", "_encoding", "_errors")

    def __init__(self, encode: Any, encoding: str = "utf-8", errors: str = "strict") -> None:
        self._encode = encode
        self._encoding = encoding
        self._errors = errors

    def __repr__(self) -> str:
        return f"FastPacker(encoding={self._encoding!r})"

    def pack(self, *args: Any) -> list[bytes | memoryview]:
        """The command ``args`` as buffers to send in order."""
        name = args[0]  # "CONFIG GET" is sent as two arguments, as the driver does
        if isinstance(name, str):
            args = (*name.encode().split(), *args[1:])
        elif b" " in name:
            args = (*name.split(), *args[1:])
        encoding, errors, encode = self._encoding, self._errors, self._encode
        output: list[bytes | memoryview] = []
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            kind = type(arg)
            if kind is str:
                arg = arg.encode(encoding, errors)
            elif kind is int:
                arg = b"%d" % arg
            elif kind is not bytes:
                arg = encode(arg)  # float, bytearray, memoryview; bool and others raise
            size = len(arg)
            if size > _BUFFER_CUTOFF or type(arg) is memoryview:
                parts.append(b"$%d\r\n" % size)
                output.append(b"".join(parts))
                output.append(arg)
                parts = [_CRLF]
            else:
                parts.append(b"$%d\r\n%b\r\n" % (size, arg))
        output.append(b"".join(parts))
        return output


@cache
def _modules(module: str) -> tuple[Any, Any, Any, Any]:
    imp = importlib.import_module
    return (
        imp(f"{module}.connection"),
        imp(f"{module}._parsers"),
        imp(f"{module}._parsers.socket").SocketBuffer,
        imp(f"{module}.exceptions").InvalidResponse,
    )


def _pure_python(module: str) -> bool:
    """Whether driver ``module`` packs and parses in Python (no C accelerator)."""
    connection, parsers, _, _ = _modules(module)
    return connection.DefaultParser in (parsers._RESP2Parser, parsers._RESP3Parser)


def fast_packer(module: str, encoding: str = "utf-8", errors: str = "strict") -> FastPacker | None:
    """A :class:`FastPacker` for driver ``module`` (``redis`` or ``valkey``) and the
    connection's encoding, or ``None`` when the driver's own packer should be kept."""
    if not _pure_python(module):
        return None
    encoder = _modules(module)[0].Encoder(encoding, errors, False)
    return FastPacker(encoder.encode, encoding, errors)


def fast_parser_class(module: str) -> type | None:
    """The fast RESP2 parser class for driver ``module``'s sync connections, or ``None``
    when the driver's default parser should be kept."""
    if not _pure_python(module) or not _has_bytes_buffer(_modules(module)[2]):
        return None
    return parser_class(module)


def fast_async_parser_class(module: str) -> type | None:
    """The fast RESP2 parser class for driver ``module``'s asyncio connections, or
    ``None`` when the driver's default parser should be kept."""
    default = importlib.import_module(f"{module}.asyncio.connection").DefaultParser
    parsers = _modules(module)[1]
    if default not in (parsers._AsyncRESP2Parser, parsers._AsyncRESP3Parser):
        return None
    return async_parser_class(module)


def _bulk_run(data: bytes, pos: int, count: int) -> tuple[list[bytes | None], int]:
    """Up to ``count`` array elements read from ``data`` at ``pos``: the run of bulk
    strings and nils that are whole in ``data``, and the position after them. Stops at
    the first element of another type or not all there.

    :raises ValueError: a length that is not a number, or data longer than its length.
    """
    items: list[bytes | None] = []
    append, find, end = items.append, data.find, len(data)
    while len(items) < count and data[pos : pos + 1] == b"$":
        eol = find(_CRLF, pos)
        if eol < 0:
            break
        size = int(data[pos + 1 : eol])
        if size < 0:
            append(None)
            pos = eol + 2
            continue
        stop = eol + 2 + size
        if stop + 2 > end:
            break
        if data[stop : stop + 2] != _CRLF:
            raise ValueError(f"bulk string longer than ${size}")
        append(data[eol + 2 : stop])
        pos = stop + 2
    return items, pos


@cache
def parser_class(module: str) -> type:
    """The fast RESP2 parser class for driver ``module``'s sync connections, whatever the
    driver's default (:func:`fast_parser_class` says whether to use it)."""
    _, parsers, _, invalid = _modules(module)

    class FastRESP2Parser(parsers._RESP2Parser):  # type: ignore[misc,name-defined]
        """The driver's RESP2 parser, reading bulk strings, and runs of them in arrays,
        in one loop."""

        def _read_response(self, disable_decoding: bool = False, **timeout: Any) -> Any:
            buffer = self._buffer
            head = buffer.readline(**timeout)  # reads the socket as needed
            data = buffer._buffer  # what has arrived: the rest of a reply is mostly here
            kind = head[:1]
            if kind not in _OURS or (not disable_decoding and self.encoder.decode_responses):
                data.seek(-len(head) - 2, io.SEEK_CUR)  # not ours: the line again, for the
                return super()._read_response(disable_decoding, **timeout)  # driver's parser
            try:
                if kind == b"+":
                    return head[1:]
                number = int(head[1:])
            except ValueError:
                raise invalid(f"Protocol Error: {head!r}") from None
            if kind == b":":
                return number
            if number < 0:
                return None
            if kind == b"$":
                return buffer.read(number, **timeout)  # as the driver reads a bulk string
            return self._elements(number, disable_decoding, timeout)

        def _elements(self, count: int, disable_decoding: bool, timeout: Any) -> list[Any]:
            """``count`` elements: runs of whole bulk strings at once, others one by one
            the driver's way (reading the socket)."""
            data = self._buffer._buffer
            items: list[Any] = []
            while len(items) < count:
                pos = data.tell()
                with data.getbuffer() as view:
                    unread = bytes(view[pos:])  # at most about one socket read
                try:
                    run, end = _bulk_run(unread, 0, count - len(items))
                except ValueError as exc:
                    raise invalid(f"Protocol Error: {exc}") from None
                data.seek(pos + end)
                items += run
                if len(items) < count:
                    items.append(super()._read_response(disable_decoding, **timeout))
            return items

    return FastRESP2Parser


@cache
def async_parser_class(module: str) -> type:
    """The fast RESP2 parser class for driver ``module``'s asyncio connections, whatever
    the driver's default (:func:`fast_async_parser_class` says whether to use it).

    The driver's asyncio parser awaits every element. This one takes, in one step, the
    run of whole bulk strings the stream has already buffered (``StreamReader._buffer``,
    which the driver itself reads in ``can_read``) and consumes exactly those bytes, so a
    pipelined next reply stays in the stream. What it consumed is kept in the parser's
    ``_chunks`` as the driver does, so a read cancelled half-way is replayed correctly.
    """
    _, parsers, _, invalid = _modules(module)

    class FastAsyncRESP2Parser(parsers._AsyncRESP2Parser):  # type: ignore[misc,name-defined]
        """The driver's asyncio RESP2 parser, taking runs of buffered bulk strings."""

        async def read_response(self, disable_decoding: bool = False) -> Any:
            stream, leftover = self._stream, self._buffer  # type: ignore[has-type]  # driver's
            if (
                leftover  # from a cancelled read: the driver replays it
                or self._chunks
                or not self._connected
                or (not disable_decoding and self.encoder.decode_responses)
                or not isinstance(getattr(stream, "_buffer", None), bytearray)
            ):
                return await super().read_response(disable_decoding)
            head = await stream.readline()
            self._buffer, self._pos = head, len(head)  # consumed: kept for a replay
            kind = head[:1]
            if kind in _OURS and head[-2:] == _CRLF:
                try:
                    response = await self._simple(kind, head[1:-2], disable_decoding)
                except ValueError as exc:
                    raise invalid(f"Protocol Error: {exc} in reply {head[:40]!r}") from None
                self._clear()
                return response
            self._pos = 0  # an error reply, or cut short: the driver's reader, from this line
            response = await self._read_response(disable_decoding=disable_decoding)
            self._clear()
            return response

        async def _simple(self, kind: bytes, rest: bytes, disable_decoding: bool) -> Any:
            """The reply a status, integer, bulk string or array header line starts."""
            if kind == b"+":
                return rest
            number = int(rest)
            if kind == b":":
                return number
            if number < 0:
                return None
            if kind == b"$":
                return await self._read(number)  # as the driver reads a bulk string
            return await self._elements(number, disable_decoding)

        async def _elements(self, count: int, disable_decoding: bool) -> list[Any]:
            """``count`` array elements: each run of bulk strings the stream holds whole
            is taken in one step, anything else read the driver's way."""
            stream = self._stream
            items: list[Any] = []
            while len(items) < count:
                run, end = _bulk_run(bytes(stream._buffer), 0, count - len(items))
                if run:
                    self._chunks.append(await stream.readexactly(end))  # no wait: it is there
                    self._pos += end
                    items += run
                else:  # another type, or not all here: one element the driver's way
                    items.append(await self._read_response(disable_decoding=disable_decoding))
            return items

    return FastAsyncRESP2Parser


def _has_bytes_buffer(socket_buffer: type) -> bool:
    """Whether the driver's socket buffer keeps what it read in a ``BytesIO`` named
    ``_buffer`` (what the fast path reads), checked on an instance."""
    try:
        probe = socket_buffer(None, 65536, None)
    except Exception:
        return False
    return isinstance(getattr(probe, "_buffer", None), io.BytesIO)
