"""Values to bytes and back, the same way on every store (wire forms: ``docs/values.md``).

* Integers are written as ASCII decimal (``b"42"``, ``b"-7"``): the form Redis ``INCRBY``
  and memcached ``incr`` work on, so counters stay atomic in the store.
* Everything else is msgpack: ``None``, ``bool``, ``float``, ``str``, ``bytes``, ``list``
  and ``dict`` (keys of any of these types, and of the types below) as themselves; and as
  msgpack extension types with codes 100-127, each with a documented layout: ``datetime``,
  ``date``, ``time``, ``timedelta``, ``Decimal``, ``UUID``, ``tuple``, ``set``,
  ``frozenset`` and members of enums registered with :meth:`Codec.register_enum`. No
  msgpack encoding starts with ``-`` or a digit, so the two forms never collide.
* More types through :meth:`Codec.register` (extension codes 0-99).

What :meth:`Codec.encode` accepts reads back equal and of the same type, and nothing else is
written: a subclass of a supported type (``OrderedDict``, an ``int`` or ``str`` subclass,
a ``NamedTuple``), an enum member of an unregistered enum, a tzinfo that cannot be named on
the wire, extension values nested more than :data:`MAX_NESTING` deep, integers outside
msgpack's 64 bits (``-2**63`` to ``2**64 - 1``, top-level and nested alike),
``msgpack.Timestamp`` and raw ``msgpack.ExtType`` values are refused with
:class:`CacheValueError` naming the fix. (``bytearray`` and ``memoryview``, which msgpack
writes itself, read back as ``bytes``.) Reading is as strict: integers only in the
canonical decimal form :func:`format_int` writes (not ``b"4_2"``, ``b" 42"`` or
``b"042"``), and not as a top-level msgpack integer or Timestamp, which cachekit never
writes; an extension payload that is not in its documented layout or nests too deep, or an
enum that is not registered, raises :class:`DecodeError` (the cache reads a miss), never a
half-built value. (A Timestamp *nested* in another writer's bytes is not looked for on
reads, which would cost every hit: it reads back as ``msgpack.Timestamp``.)

No class is ever looked up by a name found in stored bytes (an enum is found in this
codec's registry only), and pickle is never used: with a shared store, unpickling lets one
plugin's writes become code execution in another.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo

import msgpack

from cachekit.errors import CacheValueError

__all__ = [
    "BUILTIN_CODES",
    "INT_MAX",
    "INT_MIN",
    "MAX_NESTING",
    "MISS",
    "USER_CODES",
    "Codec",
    "DecodeError",
    "format_int",
    "parse_int",
]

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
# The first byte of every msgpack extension (fixext 1-16, ext 8/16/32). Packed bytes without
# one hold no extension value at all, so they need no check that they read back. The scan
# costs about 2.5 ns a byte, more than the check itself beyond _SCAN_LIMIT bytes.
_EXT_MARK: Final = re.compile(rb"[\xc7-\xc9\xd4-\xd8]")
_SCAN_LIMIT: Final = 512

USER_CODES: Final = range(0, 100)
"""Extension codes :meth:`Codec.register` takes."""
BUILTIN_CODES: Final = range(100, 128)
"""Extension codes reserved for cachekit's built-in types (``docs/values.md``)."""

# The built-in types' extension codes: a change to a layout takes a new code (docs/values.md).
DATETIME: Final = 100  # ISO 8601 text, + "[zone key]" for a ZoneInfo (RFC 9557)
DATE: Final = 101  # ISO 8601 text
TIME: Final = 102  # ISO 8601 text
TIMEDELTA: Final = 103  # msgpack [days, seconds, microseconds]
DECIMAL: Final = 104  # the text of str(Decimal)
UUID: Final = 105  # the 16 bytes
TUPLE: Final = 106  # msgpack array of the items
SET: Final = 107  # msgpack array of the items
FROZENSET: Final = 108  # msgpack array of the items
ENUM: Final = 109  # msgpack [registered name, member value]
_NESTED: Final = frozenset({TUPLE, SET, FROZENSET, ENUM})  # payloads holding encoded values
MAX_NESTING: Final = 16
"""How deep extension payloads may nest (a tuple in a tuple in ...): each level of reading
takes a msgpack unpacker on the C stack (tens of KiB), so hostile bytes nesting hundreds of
levels would overflow a thread's stack. Deeper values are refused on write, misses on read."""

_NEVER_WRITTEN: Final = frozenset({int, msgpack.Timestamp})  # as a top-level msgpack value
_UTC: Final = dt.UTC
_E = TypeVar("_E", bound=type[enum.Enum])


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
        if isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
    return False


# --- the built-in types' wire forms (docs/values.md) ------------------------------------------

_FIX = "a datetime.timezone(offset) without a name, datetime.timezone.utc or a zoneinfo.ZoneInfo"


def _fixed_offset(tz: dt.tzinfo) -> bool:
    """Whether ``tz`` is a ``datetime.timezone``, which reads back from its offset alone.

    :raises CacheValueError: it is one that would not: with a name of its own (such as
        ``timezone(timedelta(hours=1), "CET")``) or with microseconds in its offset.
    """
    if tz is _UTC:
        return True
    if type(tz) is not dt.timezone:
        return False
    offset = tz.utcoffset(None)
    if offset.microseconds:
        raise CacheValueError(
            f"cannot cache a datetime or time with tzinfo {tz!r}: an offset with microseconds "
            "has no ISO 8601 form that readers take; round it to seconds"
        )
    if tz.tzname(None) != dt.timezone(offset).tzname(None):
        raise CacheValueError(
            f"cannot cache a datetime or time with tzinfo {tz!r}: its name would not read "
            f"back; use {_FIX}"
        )
    return True


def _encode_datetime(value: dt.datetime, _writer: _Writer) -> bytes:
    tz = value.tzinfo
    if tz is None or _fixed_offset(tz):
        return value.isoformat().encode()
    if type(tz) is ZoneInfo and tz.key is not None:
        return f"{value.isoformat()}[{tz.key}]".encode()
    raise CacheValueError(
        f"cannot cache a datetime with tzinfo {tz!r}: it would not read back identically; "
        f"use {_FIX} (ZoneInfo(key) is stored by its key)"
    )


def _decode_datetime(data: bytes) -> dt.datetime:
    text = data.decode("ascii")
    if not text.endswith("]"):
        return dt.datetime.fromisoformat(text)
    text, _, key = text[:-1].partition("[")
    written = dt.datetime.fromisoformat(text)
    value = written.replace(tzinfo=ZoneInfo(key))  # ZoneInfo refuses keys that are paths
    offset = written.utcoffset()
    if offset is not None and value.utcoffset() != offset:
        later = value.replace(fold=1)  # the second of two same wall times (DST ends)
        if later.utcoffset() == offset:
            return later
    return value


def _encode_date(value: dt.date, _writer: _Writer) -> bytes:
    return value.isoformat().encode()


def _decode_date(data: bytes) -> dt.date:
    return dt.date.fromisoformat(data.decode("ascii"))


def _encode_time(value: dt.time, _writer: _Writer) -> bytes:
    tz = value.tzinfo
    if tz is None or _fixed_offset(tz):
        return value.isoformat().encode()
    raise CacheValueError(
        f"cannot cache a time with tzinfo {tz!r}: a time keeps only a fixed offset "
        "(datetime.timezone(offset)); store a datetime to keep a ZoneInfo"
    )


def _decode_time(data: bytes) -> dt.time:
    return dt.time.fromisoformat(data.decode("ascii"))


def _encode_timedelta(value: dt.timedelta, writer: _Writer) -> bytes:
    return writer.pack_nested([value.days, value.seconds, value.microseconds])


def _decode_timedelta(data: bytes) -> dt.timedelta:
    days, seconds, microseconds = msgpack.unpackb(data)
    if not (
        type(days) is int
        and type(seconds) is int
        and type(microseconds) is int
        and 0 <= seconds < 86400
        and 0 <= microseconds < 1_000_000
    ):
        raise ValueError("timedelta payload is not [days, 0..86399, 0..999999]")
    return dt.timedelta(days, seconds, microseconds)


def _encode_decimal(value: Decimal, _writer: _Writer) -> bytes:
    return str(value).encode()


def _decode_decimal(data: bytes) -> Decimal:
    text = data.decode("ascii")
    value = Decimal(text)  # exact, whatever the context's precision
    if str(value) != text:  # the one text str() writes (not " 1", "1_0", or "x" as NaN)
        raise ValueError("Decimal payload is not the text str(Decimal) writes")
    return value


def _encode_uuid(value: uuid.UUID, _writer: _Writer) -> bytes:
    return value.bytes


def _decode_uuid(data: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=data)


def _encode_items(value: tuple[Any, ...] | set[Any] | frozenset[Any], writer: _Writer) -> bytes:
    return writer.pack_nested(list(value))


_Encoder = Callable[[Any, "_Writer"], bytes]
_BUILTIN_ENCODERS: Final[dict[type, tuple[int, _Encoder]]] = {
    dt.datetime: (DATETIME, _encode_datetime),
    dt.date: (DATE, _encode_date),
    dt.time: (TIME, _encode_time),
    dt.timedelta: (TIMEDELTA, _encode_timedelta),
    Decimal: (DECIMAL, _encode_decimal),
    uuid.UUID: (UUID, _encode_uuid),
    tuple: (TUPLE, _encode_items),
    set: (SET, _encode_items),
    frozenset: (FROZENSET, _encode_items),
}
_BUILTIN_DECODERS: Final[dict[int, Callable[[bytes], Any]]] = {
    DATETIME: _decode_datetime,
    DATE: _decode_date,
    TIME: _decode_time,
    TIMEDELTA: _decode_timedelta,
    DECIMAL: _decode_decimal,
    UUID: _decode_uuid,
}
# Supported types whose subclasses msgpack or the table above would read back as the base.
_BASES: Final = (int, float, str, bytes, list, dict, *_BUILTIN_ENCODERS)
_SUPPORTED: Final = (
    "None, bool, int, float, str, bytes, list, tuple, dict, set, frozenset, datetime, date, "
    "time, timedelta, Decimal and UUID"
)
_ANNOTATE: Final = (
    "or annotate the type where it is read (a @cached function's return annotation, "
    "Cache.get(key, type=...))"
)


def _refusal(obj: Any) -> str:
    """Why ``obj`` cannot be cached, and the fix."""
    cls = type(obj)
    name = cls.__qualname__
    if isinstance(obj, enum.Enum):
        return (
            f"cannot cache {obj!r}: its enum {name} is not registered; register it with "
            f"manager.codec.register_enum({cls.__name__}) (stored as its name and the member's "
            f"value), {_ANNOTATE}"
        )
    if cls is int:  # msgpack hands over the ints it cannot hold
        return f"cannot cache a value holding an int out of range: {_RANGE_HINT}"
    for base in _BASES:
        if isinstance(obj, base):
            return (
                f"cannot cache a value of type {name!r}, a subclass of {base.__name__}: it would "
                f"read back as a plain {base.__name__}; convert it ({base.__name__}(value)), "
                f"register {name} with manager.codec.register(cls, code, encode, decode), "
                f"{_ANNOTATE}"
            )
    return (
        f"cannot cache a value of type {name!r}: cachekit stores {_SUPPORTED}; register other "
        "types with manager.codec.register(cls, code, encode, decode), enums with "
        f"manager.codec.register_enum(cls), {_ANNOTATE}"
    )


class _Writer:
    """One thread's packers (the top-level one, spares for nested payloads) and the number
    of extension values the current :meth:`Codec.encode` wrote."""

    __slots__ = (
        "count_hook",
        "depth",
        "emitted",
        "encoders",
        "enums",
        "packer",
        "seen",
        "spares",
    )

    def __init__(self, encoders: dict[type, tuple[int, _Encoder]], enums: dict[type, str]) -> None:
        self.encoders = encoders
        self.enums = enums
        self.emitted = self.seen = self.depth = 0
        self.spares: list[msgpack.Packer] = []
        self.packer = self.new_packer()
        self.count_hook = self.count_extension  # bound once

    def count_extensions(self, packed: bytes) -> int:
        """The number of extension values in ``packed``, those inside built-in payloads too
        (``msgpack.Timestamp`` aside)."""
        self.seen = 0
        msgpack.unpackb(packed, strict_map_key=False, ext_hook=self.count_hook)
        return self.seen

    def count_extension(self, code: int, data: bytes) -> None:
        self.seen += 1
        if code in _NESTED:
            msgpack.unpackb(data, strict_map_key=False, ext_hook=self.count_hook)

    def new_packer(self) -> msgpack.Packer:
        # strict_types: subclasses (and tuples) come to default() instead of being written
        # as their base type; datetime=False (the default) too, so datetimes come here.
        return msgpack.Packer(default=self.default, strict_types=True, autoreset=True)

    def pack_nested(self, value: Any) -> bytes:
        """Pack an extension's payload (a packer is busy at every level of nesting)."""
        if self.depth >= MAX_NESTING:
            raise CacheValueError(
                f"cannot cache a value with tuples, sets, frozensets, timedeltas or enum "
                f"members nested more than {MAX_NESTING} deep; use lists"
            )
        spares = self.spares
        packer = spares.pop() if spares else self.new_packer()
        self.depth += 1
        try:
            packed: bytes = packer.pack(value)
        finally:
            self.depth -= 1
        spares.append(packer)  # not after an error: that packer is dropped, not reused
        return packed

    def default(self, obj: Any) -> msgpack.ExtType:
        entry = self.encoders.get(type(obj))
        if entry is not None:
            code, encode = entry
            self.emitted += 1
            return msgpack.ExtType(code, encode(obj, self))
        name = self.enums.get(type(obj))
        if name is not None:
            self.emitted += 1
            return msgpack.ExtType(ENUM, self.pack_nested([name, obj.value]))
        raise CacheValueError(_refusal(obj))


class Codec:
    """Encodes cache values to bytes and decodes them back.

    Register extra types with :meth:`register` and enums with :meth:`register_enum`; a
    manager uses one codec for all its caches.
    """

    __slots__ = ("_decoders", "_encoders", "_enum_names", "_enums", "_hook", "_local", "_user")

    def __init__(self) -> None:
        self._encoders: dict[type, tuple[int, _Encoder]] = dict(_BUILTIN_ENCODERS)
        self._decoders: dict[int, Callable[[bytes], Any]] = {
            **_BUILTIN_DECODERS,
            TUPLE: self._decode_tuple,
            SET: self._decode_set,
            FROZENSET: self._decode_frozenset,
            ENUM: self._decode_enum,
        }
        self._user: dict[type, int] = {}  # registered types, for the repr
        self._enums: dict[type, str] = {}  # registered enum -> its name on the wire
        self._enum_names: dict[str, type[enum.Enum]] = {}
        # A writer (packers) per thread: packb() builds a new Packer per call, which costs
        # more than the packing of a small value.
        self._local = threading.local()
        self._hook = self._ext_hook  # bound once: decode() is on every read's path

    def __repr__(self) -> str:
        names = sorted(cls.__qualname__ for cls in self._user)
        enums = sorted(self._enum_names)
        return f"Codec(extra_types={names}, enums={enums})"

    def register(
        self,
        cls: type,
        code: int,
        encode: Callable[[Any], bytes],
        decode: Callable[[bytes], Any],
    ) -> None:
        """Store instances of exactly ``cls`` (not its subclasses) as msgpack extension
        ``code`` (0-99; 100-127 are the built-in types'). Registering a built-in type (say
        ``datetime``) replaces its built-in encoding for writes; both codes still read.

        :raises CacheValueError: ``code`` is out of range or already taken.
        """
        if code not in USER_CODES:
            raise CacheValueError(
                f"extension code must be in 0..99, got {code}: 100..127 are reserved for "
                "cachekit's built-in types (docs/values.md)"
            )
        if code in self._decoders:
            raise CacheValueError(f"extension code {code} is already registered")
        local = self._local

        def encode_registered(value: Any, writer: _Writer) -> bytes:
            del local.writer  # an encode() called by ``encode`` gets a writer of its own
            try:
                return encode(value)
            finally:
                local.writer = writer

        self._encoders[cls] = (code, encode_registered)
        self._decoders[code] = decode
        self._user[cls] = code

    def register_enum(self, cls: _E, name: str | None = None) -> _E:
        """Store members of the enum ``cls`` as extension 109: ``name`` (default: the
        class's ``__qualname__``) and the member's value, which must be cacheable. Stored
        bytes name an enum only through this registry: a name not registered reads as a
        miss. Returns ``cls``.

        :raises CacheValueError: ``cls`` is not an Enum, ``name`` is taken by another enum
            or ``cls`` is registered under another name, or a member's value is not
            cacheable.
        """
        if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
            raise CacheValueError(f"register_enum takes an Enum class, got {cls!r}")
        name = cls.__qualname__ if name is None else name
        if not isinstance(name, str) or not name:
            raise CacheValueError(f"an enum's name must be a non-empty str, got {name!r}")
        taken = self._enum_names.get(name)
        if taken is not None and taken is not cls:
            raise CacheValueError(
                f"enum name {name!r} is already registered for {taken.__module__}."
                f"{taken.__qualname__}; pass another: register_enum({cls.__qualname__}, "
                "name=...)"
            )
        current = self._enums.get(cls)
        if current is not None and current != name:
            raise CacheValueError(f"enum {cls.__qualname__} is already registered as {current!r}")
        for member in cls:
            try:
                self.encode([member.value])
            except CacheValueError as exc:
                raise CacheValueError(
                    f"cannot register enum {cls.__qualname__}: {member!r} has a value that "
                    f"cannot be cached ({exc})"
                ) from None
        self._enums[cls] = name
        self._enum_names[name] = cls
        return cls

    def encode(self, value: Any) -> bytes:
        """Encode ``value``.

        :raises CacheValueError: the value (or something inside it) has no encoding that
            reads back equal and of the same type; the message names the type and the fix.
        """
        if type(value) is int:
            if INT_MIN <= value <= INT_MAX:
                return b"%d" % value
            raise CacheValueError(f"cannot cache int value out of range: {_RANGE_HINT}")
        try:
            writer: _Writer = self._local.writer
        except AttributeError:
            writer = self._local.writer = _Writer(self._encoders, self._enums)
        writer.emitted = 0
        packer = writer.packer
        try:
            packed: bytes = packer.pack(value)
        except CacheValueError:
            packer.reset()  # drop what a failed pack left in the buffer
            raise
        except OverflowError:
            packer.reset()
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
        # A container or an extension: are there extension values we did not write? (Small
        # packed bytes without an extension's first byte hold none: they stop here.)
        if type(value) not in _PLAIN and (
            writer.emitted or len(packed) > _SCAN_LIMIT or _EXT_MARK.search(packed)
        ):
            self._check_readable(value, packed, writer)
        return packed

    def _check_readable(self, value: Any, packed: bytes, writer: _Writer) -> None:
        """Refuse a packed value holding extension values this codec did not write (a raw
        ``msgpack.ExtType`` or ``msgpack.Timestamp``, which msgpack packs by itself)."""
        problem = None
        if isinstance(value, msgpack.ExtType | msgpack.Timestamp):
            problem = f"a {type(value).__name__} is msgpack's, not a cacheable type"
        elif writer.count_extensions(packed) != writer.emitted:
            problem = (
                "it holds a msgpack ExtType, which would read back as another type or not at "
                "all; register the type with manager.codec.register"
            )
        elif _may_hold_timestamp(packed) and _contains(self.decode(packed), msgpack.Timestamp):
            problem = "it holds a msgpack Timestamp; store a datetime"
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

    def _ext_hook(self, code: int, data: bytes) -> Any:
        decode = self._decoders.get(code)
        if decode is None:
            raise DecodeError(f"unknown extension type {code}")
        return decode(data)

    def _items(self, data: bytes) -> list[Any]:
        local = self._local  # the nesting depth of this thread's decode
        depth = getattr(local, "depth", 0)
        if depth >= MAX_NESTING:
            raise DecodeError(f"extension values nested more than {MAX_NESTING} deep")
        local.depth = depth + 1
        try:
            items = msgpack.unpackb(data, strict_map_key=False, ext_hook=self._hook)
        finally:
            local.depth = depth
        if type(items) is not list:
            raise DecodeError("a tuple, set or frozenset payload is not an array")
        return items

    def _decode_tuple(self, data: bytes) -> tuple[Any, ...]:
        return tuple(self._items(data))

    def _decode_set(self, data: bytes) -> set[Any]:
        return set(self._items(data))

    def _decode_frozenset(self, data: bytes) -> frozenset[Any]:
        return frozenset(self._items(data))

    def _decode_enum(self, data: bytes) -> enum.Enum:
        name, value = self._items(data)
        cls = self._enum_names.get(name) if type(name) is str else None
        if cls is None:
            raise DecodeError(f"enum {name!r} is not registered (manager.codec.register_enum)")
        return cls(value)
