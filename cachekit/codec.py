"""Values to bytes and back, the same way on every store.

* Integers are written as ASCII decimal (``b"42"``, ``b"-7"``): the form Redis ``INCRBY``
  and memcached ``incr`` work on, so counters stay atomic in the store.
* Everything else is msgpack: ``None``, ``bool``, ``float``, ``str``, ``bytes``,
  ``list``/``tuple`` (read back as ``list``) and ``dict``. No msgpack encoding of these
  starts with ``-`` or a digit, so the two forms never collide.
* More types only through :meth:`Codec.register` (msgpack extension types).

What :meth:`Codec.encode` accepts reads back equal (tuples as lists), and nothing else is
written: integers outside msgpack's 64 bits (``-2**63`` to ``2**64 - 1``, top-level and
nested alike), dicts with tuple keys (read back as unhashable lists), ``msgpack.Timestamp``
and raw ``msgpack.ExtType`` values are refused with :class:`CacheValueError`. Reading is
as strict: integers only in the canonical decimal form :func:`format_int` writes (not
``b"4_2"``, ``b" 42"`` or ``b"042"``), and not as a top-level msgpack integer or
Timestamp, which cachekit never writes, so such bytes from another writer read as a miss
instead of as a lookalike value. (A Timestamp *nested* in another writer's bytes is not
looked for on reads, which would cost every hit: it reads back as ``msgpack.Timestamp``.)

Pickle is never used: with a shared store, unpickling lets one plugin's writes become
code execution in another.
"""

from __future__ import annotations

import enum
import re
import threading
from collections.abc import Callable
from typing import Any, Final

import msgpack

from cachekit.errors import CacheValueError

__all__ = ["INT_MAX", "INT_MIN", "MISS", "Codec", "DecodeError", "format_int", "parse_int"]

_INT_FIRST: Final = frozenset(b"-0123456789")
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**64 - 1  # msgpack's range: uint64 above, int64 below
_PLAIN: Final = frozenset({str, bytes, float, bool, type(None)})  # pack as themselves
_RANGE_HINT: Final = (
    "integers must be within -2**63..2**64-1 (64 bits) to be cached; store a larger number as a str"
)
# A msgpack Timestamp (ext type -1) as fixext4, fixext8 or ext8. Looked for only where a
# 0xff byte is (a memchr-fast test), and looked for in the decoded value only when found.
_TIMESTAMP_MARK: Final = re.compile(rb"[\xd6\xd7]\xff|\xc7\x0c\xff")


_NEVER_WRITTEN: Final = frozenset({int, msgpack.Timestamp})  # as a top-level msgpack value


def _may_hold_timestamp(data: bytes) -> bool:
    return b"\xff" in data and _TIMESTAMP_MARK.search(data) is not None


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
    """The integer ``data`` holds in the codec's integer form (canonical ASCII decimal,
    nothing else ``int()`` would accept), or ``None`` if it holds something else. Stores use
    it to implement ``incr`` on values they hold."""
    if data and data[0] in _INT_FIRST:
        try:
            number = int(data)
        except ValueError:
            return None
        return number if b"%d" % number == data else None
    return None


def _contains(value: Any, cls: type) -> bool:
    """Whether ``value`` is, or holds at any depth (dict keys too), an instance of ``cls``."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, cls):
            return True
        if isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
    return False


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
            if INT_MIN <= value <= INT_MAX:
                return b"%d" % value
            raise CacheValueError(f"cannot cache int value out of range: {_RANGE_HINT}")
        if isinstance(value, int) and not isinstance(value, bool):
            return self.encode(int(value))
        try:
            packer = self._local.packer
        except AttributeError:
            packer = self._local.packer = msgpack.Packer(default=self._default, autoreset=True)
        try:
            packed: bytes = packer.pack(value)
        except CacheValueError:
            packer.reset()
            raise
        except OverflowError:
            packer.reset()  # drop what a failed pack left in the buffer
            raise CacheValueError(
                f"cannot cache {type(value).__name__} value holding an int out of range: "
                f"{_RANGE_HINT}"
            ) from None
        except UnicodeEncodeError:
            packer.reset()
            raise CacheValueError(
                f"cannot cache {type(value).__name__} value holding a str that is not valid "
                "unicode (a lone surrogate such as '\\ud800'); encode it with "
                "errors='surrogatepass' and cache the bytes, or fix the text"
            ) from None
        except (TypeError, ValueError) as exc:
            packer.reset()
            raise CacheValueError(f"cannot cache {type(value).__name__} value: {exc}") from None
        if type(value) not in _PLAIN:  # a container (or a msgpack type): can it be read back?
            self._check_readable(value, packed)
        return packed

    def _check_readable(self, value: Any, packed: bytes) -> None:
        """Refuse a packed value that would not read back equal to ``value``."""
        problem = None
        if isinstance(value, msgpack.ExtType | msgpack.Timestamp):
            problem = f"a {type(value).__name__} is msgpack's, not a cacheable type"
        else:
            try:
                decoded = msgpack.unpackb(packed, strict_map_key=False, ext_hook=self._hook)
            except DecodeError as exc:  # a raw ExtType of an unregistered code
                problem = f"it holds {exc}; register the type with manager.codec.register"
            except TypeError:
                problem = (
                    "a dict key is a tuple, which would read back as an (unhashable) list; "
                    "use str, int, float, bool, None or bytes keys"
                )
            else:
                if _may_hold_timestamp(packed) and _contains(decoded, msgpack.Timestamp):
                    problem = "it holds a msgpack Timestamp; store a float or an ISO string"
        if problem is not None:
            raise CacheValueError(f"cannot cache {type(value).__name__} value: {problem}")

    def decode(self, data: bytes) -> Any:
        """Decode bytes written by :meth:`encode`.

        :raises DecodeError: the bytes are not a value this codec wrote.
        """
        if data and data[0] in _INT_FIRST:
            # Only the canonical decimal format_int writes: int() also takes b"4_2", b" 42",
            # b"042". Under 20 bytes every such decimal is within 64 bits.
            digits = data if data[0] != 45 else data[1:]  # 45: "-"
            if len(data) < 20 and digits.isdigit() and (digits[0] != 48 or data == b"0"):
                return int(data)
            number = parse_int(data) if len(data) <= 20 else None
            if number is None or not INT_MIN <= number <= INT_MAX:
                raise DecodeError("not an integer in the form cachekit writes")
            return number
        try:
            value = msgpack.unpackb(data, strict_map_key=False, ext_hook=self._hook)  # raw=False
        except Exception as exc:  # msgpack raises a zoo of types on bad input
            raise DecodeError(str(exc) or type(exc).__name__) from None
        if type(value) in _NEVER_WRITTEN:  # nested ones are not looked for: see the docstring
            raise DecodeError(f"a msgpack {type(value).__name__}, which cachekit never writes")
        return value

    def _default(self, obj: Any) -> msgpack.ExtType:
        entry = self._encoders.get(type(obj))
        if entry is None:
            if isinstance(obj, int):  # msgpack hands over the ints it cannot hold
                raise CacheValueError(
                    f"cannot cache a value holding an int out of range: {_RANGE_HINT}"
                )
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
