"""Values to bytes and back, the same way on every store.

* Integers are written as ASCII decimal (``b"42"``, ``b"-7"``): the form Redis ``INCRBY``
  and memcached ``incr`` work on, so counters stay atomic in the store.
* Everything else is msgpack: ``None``, ``bool``, ``float``, ``str``, ``bytes``,
  ``list``/``tuple`` (read back as ``list``) and ``dict``. No msgpack encoding of these
  starts with ``-`` or a digit, so the two forms never collide.
* More types only through :meth:`Codec.register` (msgpack extension types).

Pickle is never used: with a shared store, unpickling lets one plugin's writes become
code execution in another.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from typing import Any, Final

import msgpack

from cachekit.errors import CacheValueError

__all__ = ["MISS", "Codec", "DecodeError", "format_int", "parse_int"]

_INT_FIRST: Final = frozenset(b"-0123456789")


class _Miss(enum.Enum):
    """The type of :data:`MISS`."""

    MISS = "MISS"

    def __repr__(self) -> str:
        return "cachekit.MISS"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return False


MISS: Final = _Miss.MISS
"""Pass as ``default`` to tell a cached ``None`` from a miss: ``cache.get(k, MISS)``."""


class DecodeError(ValueError):
    """Stored bytes are not a value this codec wrote (corruption or another writer)."""


def format_int(value: int) -> bytes:
    """The codec's integer form of ``value`` (ASCII decimal)."""
    return b"%d" % value


def parse_int(data: bytes) -> int | None:
    """The integer ``data`` holds in the codec's integer form, or ``None`` if it holds
    something else. Stores use it to implement ``incr`` on values they hold."""
    if data and data[0] in _INT_FIRST:
        try:
            return int(data)
        except ValueError:
            return None
    return None


class Codec:
    """Encodes cache values to bytes and decodes them back.

    Register extra types with :meth:`register`; a manager uses one codec for all its caches.
    """

    __slots__ = ("_decoders", "_encoders", "_hook", "_local")

    def __init__(self) -> None:
        self._encoders: dict[type, tuple[int, Callable[[Any], bytes]]] = {}
        self._decoders: dict[int, Callable[[bytes], Any]] = {}
        # A Packer per thread: packb() builds a new Packer per call, which costs more than the
        # packing of a small value.
        self._local = threading.local()
        self._hook = self._ext_hook  # bound once: decode() is on every read's path

    def __repr__(self) -> str:
        names = sorted(cls.__qualname__ for cls in self._encoders)
        return f"Codec(extra_types={names})"

    def register(
        self,
        cls: type,
        code: int,
        encode: Callable[[Any], bytes],
        decode: Callable[[bytes], Any],
    ) -> None:
        """Store instances of ``cls`` as msgpack extension ``code`` (0-127).

        :raises CacheValueError: ``code`` is out of range or already taken.
        """
        if not 0 <= code <= 127:
            raise CacheValueError(f"extension code must be in 0..127, got {code}")
        if code in self._decoders:
            raise CacheValueError(f"extension code {code} is already registered")
        self._encoders[cls] = (code, encode)
        self._decoders[code] = decode

    def encode(self, value: Any) -> bytes:
        """Encode ``value``.

        :raises CacheValueError: the value (or something inside it) has no encoding.
        """
        if type(value) is int:
            return b"%d" % value
        if isinstance(value, int) and not isinstance(value, bool):
            return b"%d" % int(value)
        try:
            packer = self._local.packer
        except AttributeError:
            packer = self._local.packer = msgpack.Packer(default=self._default, autoreset=True)
        try:
            return packer.pack(value)  # type: ignore[no-any-return]
        except CacheValueError:
            packer.reset()
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            packer.reset()  # drop what a failed pack left in the buffer
            raise CacheValueError(f"cannot cache {type(value).__name__} value: {exc}") from None

    def decode(self, data: bytes) -> Any:
        """Decode bytes written by :meth:`encode`.

        :raises DecodeError: the bytes are not a value this codec wrote.
        """
        if data and data[0] in _INT_FIRST:
            try:
                return int(data)
            except ValueError:
                raise DecodeError("not a valid integer") from None
        try:
            return msgpack.unpackb(data, strict_map_key=False, ext_hook=self._hook)  # raw=False
        except Exception as exc:  # msgpack raises a zoo of types on bad input
            raise DecodeError(str(exc) or type(exc).__name__) from None

    def _default(self, obj: Any) -> msgpack.ExtType:
        entry = self._encoders.get(type(obj))
        if entry is None:
            raise CacheValueError(
                f"cannot cache a value of type {type(obj).__qualname__!r}: cachekit stores None, "
                "bool, int, float, str, bytes, list, tuple and dict; register other types with "
                "manager.codec.register(cls, code, encode, decode)"
            )
        code, encode = entry
        return msgpack.ExtType(code, encode(obj))

    def _ext_hook(self, code: int, data: bytes) -> Any:
        decode = self._decoders.get(code)
        if decode is None:
            raise DecodeError(f"unknown extension type {code}")
        return decode(data)
