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

__all__ = ["FastPacker", "fast_packer", "fast_parser_class", "parser_class"]

_CRLF: Final = b"\r\n"
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
    return connection.DefaultParser is parsers._RESP2Parser


def fast_packer(module: str, encoding: str = "utf-8", errors: str = "strict") -> FastPacker | None:
    """A :class:`FastPacker` for driver ``module`` (``redis`` or ``valkey``) and the
    connection's encoding, or ``None`` when the driver's own packer should be kept."""
    if not _pure_python(module):
        return None
    encoder = _modules(module)[0].Encoder(encoding, errors, False)
    return FastPacker(encoder.encode, encoding, errors)


def fast_parser_class(module: str) -> type | None:
    """The fast RESP2 parser class for driver ``module``, or ``None`` when the driver's
    default parser should be kept."""
    if not _pure_python(module) or not _has_bytes_buffer(_modules(module)[2]):
        return None
    return parser_class(module)


@cache
def parser_class(module: str) -> type:
    """The fast RESP2 parser class for driver ``module``, whatever the driver's default
    (:func:`fast_parser_class` says whether to use it)."""
    _, parsers, _, invalid = _modules(module)

    class FastRESP2Parser(parsers._RESP2Parser):  # type: ignore[misc,name-defined]
        """The driver's RESP2 parser, reading arrays of bulk strings in one loop."""

        def _read_response(self, disable_decoding: bool = False, **timeout: Any) -> Any:
            buffer = self._buffer
            head = buffer.readline(**timeout)  # reads the socket as needed
            data = buffer._buffer  # what has arrived: the rest of a reply is mostly here
            if head[:1] != b"*" or (not disable_decoding and self.encoder.decode_responses):
                data.seek(-len(head) - 2, io.SEEK_CUR)  # not ours: the inherited parser
                return super()._read_response(disable_decoding, **timeout)
            items: list[Any] = []
            append, readline, read = items.append, data.readline, data.read
            try:
                count = int(head[1:])
                for _ in range(count):
                    line = readline()
                    if line[:1] != b"$" or line[-2:] != _CRLF:
                        data.seek(-len(line), io.SEEK_CUR)  # another type, or not all here
                        append(super()._read_response(disable_decoding, **timeout))
                        continue
                    size = int(line[1:-2])
                    if size < 0:
                        append(None)
                        continue
                    value = read(size + 2)
                    if len(value) < size + 2:  # the rest is still on the socket
                        data.seek(-len(value), io.SEEK_CUR)
                        append(buffer.read(size, **timeout))
                    elif value[-2:] == _CRLF:
                        append(value[:-2])
                    else:
                        raise invalid(f"Protocol Error: bulk string longer than ${size}")
            except ValueError:  # a length that is not a number
                raise invalid(f"Protocol Error: bad length in an array reply {head!r}") from None
            return items if count >= 0 else None

    return FastRESP2Parser


def _has_bytes_buffer(socket_buffer: type) -> bool:
    """Whether the driver's socket buffer keeps what it read in a ``BytesIO`` named
    ``_buffer`` (what the fast path reads), checked on an instance."""
    try:
        probe = socket_buffer(None, 65536, None)
    except Exception:
        return False
    return isinstance(getattr(probe, "_buffer", None), io.BytesIO)
