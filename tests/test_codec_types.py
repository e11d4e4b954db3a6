"""Built-in types (docs/values.md): round trips that keep the type, the documented test
vectors (read by cachekit and by an independent reader written from the doc with msgpack
alone), refusals that name the fix, and malformed payloads that read as DecodeError."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import re
import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import msgpack
import pytest
from hypothesis import given, settings
from typed_values import Color, assert_same, register_enums, values

from cachekit.codec import MAX_NESTING, DecodeError
from cachekit.errors import CacheValueError
from cachekit.host import Codec

DOC = (Path(__file__).resolve().parent.parent / "docs" / "values.md").read_text()
UTC = dt.UTC
NEW_YORK = ZoneInfo("America/New_York")
codec = register_enums(Codec())


class Vector(enum.Enum):  # the enum of the documented vectors
    RED = 1
    GREEN = "g"


vector_codec = Codec()
vector_codec.register_enum(Vector, name="Color")


@settings(max_examples=300)
@given(values)
def test_every_type_reads_back_equal_and_of_the_same_type(value: Any) -> None:
    """Nested values of every built-in type read back equal and of the same type, dict keys,
    set members, tzinfo, offset and fold included."""
    assert_same(codec.decode(codec.encode(value)), value)


# --- test vectors (docs/values.md) -------------------------------------------------------------

VECTORS: list[tuple[Any, str]] = [
    (42, "3432"),
    ({"id": 42, "tags": ["a"]}, "82a269642aa47461677391a161"),
    ({1: "a", b"k": 2, (1, 2): None}, "8301a161c4016b02c7036a920102c0"),
    (
        dt.datetime(2024, 2, 29, 12, 34, 56, 123456),
        "c71a64323032342d30322d32395431323a33343a35362e313233343536",
    ),
    (
        dt.datetime(2024, 2, 29, 12, 34, 56, tzinfo=UTC),
        "c71964323032342d30322d32395431323a33343a35362b30303a3030",
    ),
    (
        dt.datetime(2024, 2, 29, 12, 34, 56, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
        "c71964323032342d30322d32395431323a33343a35362b30353a3330",
    ),
    (
        dt.datetime(2024, 7, 1, 9, 0, tzinfo=ZoneInfo("Europe/Paris")),
        "c72764323032342d30372d30315430393a30303a30302b30323a30305b4575726f70652f50617269735d",
    ),
    (
        dt.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NEW_YORK),
        "c72b64323032342d31312d30335430313a33303a30302d30353a30305b416d65726963612f4e65775f596f726b5d",
    ),
    (dt.date(2024, 2, 29), "c70a65323032342d30322d3239"),
    (dt.time(12, 34, 56, 789), "c70f6631323a33343a35362e303030373839"),
    (
        dt.time(8, 0, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
        "c70e6630383a30303a30302d30333a3030",
    ),
    (dt.timedelta(days=-1, seconds=5, microseconds=7), "d66793ff0507"),
    (Decimal("1.10"), "d668312e3130"),
    (Decimal("-0"), "d5682d30"),
    (Decimal("NaN"), "c703684e614e"),
    (Decimal("-Infinity"), "c709682d496e66696e697479"),
    (Decimal("1E+5"), "d66831452b35"),
    (uuid.UUID("12345678-1234-5678-1234-567812345678"), "d86912345678123456781234567812345678"),
    ((1, "a"), "d66a9201a161"),
    ((), "d46a90"),
    ({1, 2}, "c7036b920102"),
    (frozenset({3}), "d56c9103"),
    (Vector.RED, "d76d92a5436f6c6f7201"),
    (Vector.GREEN, "c7096d92a5436f6c6f72a167"),
    (
        {"at": dt.date(2024, 1, 1), "tags": ("a",)},
        "82a26174c70a65323032342d30312d3031a474616773c7036a91a161",
    ),
]
vector_ids = [f"{type(v).__name__}-{h[:12]}" for v, h in VECTORS]


def reference_hook(code: int, data: bytes) -> Any:
    """An ext_hook written from docs/values.md alone (it does not use cachekit.codec)."""
    if code == 100:
        text = data.decode("ascii")
        if not text.endswith("]"):
            return dt.datetime.fromisoformat(text)
        stamp, key = text[:-1].split("[")
        written = dt.datetime.fromisoformat(stamp)
        for fold in (0, 1):  # the fold whose offset is the one written
            value = written.replace(tzinfo=ZoneInfo(key), fold=fold)
            if value.utcoffset() == written.utcoffset():
                return value
        raise ValueError(text)
    if code == 101:
        return dt.date.fromisoformat(data.decode("ascii"))
    if code == 102:
        return dt.time.fromisoformat(data.decode("ascii"))
    if code == 103:
        days, seconds, microseconds = msgpack.unpackb(data)
        return dt.timedelta(days=days, seconds=seconds, microseconds=microseconds)
    if code == 104:
        return Decimal(data.decode("ascii"))
    if code == 105:
        return uuid.UUID(bytes=data)
    items = msgpack.unpackb(data, ext_hook=reference_hook, strict_map_key=False)
    if code == 106:
        return tuple(items)
    if code == 107:
        return set(items)
    if code == 108:
        return frozenset(items)
    if code == 109:
        name, value = items
        return {"Color": Vector}[name](value)
    raise ValueError(f"unknown code {code}")


def reference_decode(data: bytes) -> Any:
    if data[:1].isdigit() or data[:1] == b"-":
        return int(data)
    return msgpack.unpackb(data, ext_hook=reference_hook, strict_map_key=False)


@pytest.mark.parametrize(("value", "hex_bytes"), VECTORS, ids=vector_ids)
def test_vector_is_what_cachekit_writes(value: Any, hex_bytes: str) -> None:
    """cachekit encodes each documented value to exactly the documented bytes."""
    assert vector_codec.encode(value).hex() == hex_bytes


@pytest.mark.parametrize(("value", "hex_bytes"), VECTORS, ids=vector_ids)
def test_vector_reads_back_in_cachekit(value: Any, hex_bytes: str) -> None:
    """cachekit decodes each documented byte string to the documented value, same type."""
    assert_same(vector_codec.decode(bytes.fromhex(hex_bytes)), value)


@pytest.mark.parametrize(("value", "hex_bytes"), VECTORS, ids=vector_ids)
def test_vector_reads_back_with_msgpack_alone(value: Any, hex_bytes: str) -> None:
    """A reader written from docs/values.md with only msgpack decodes each vector to the
    documented value, so another process or language can read cachekit's values."""
    assert_same(reference_decode(bytes.fromhex(hex_bytes)), value)


@pytest.mark.parametrize(("value", "hex_bytes"), VECTORS, ids=vector_ids)
def test_vector_is_in_the_doc(value: Any, hex_bytes: str) -> None:
    """Every vector tested here is the one docs/values.md lists."""
    assert f"| `{hex_bytes}` |" in DOC


def test_the_doc_lists_no_other_vectors() -> None:
    """docs/values.md lists no vector this file does not test."""
    documented = re.findall(r"\| `([0-9a-f]+)` \|$", DOC, flags=re.MULTILINE)
    assert sorted(documented) == sorted(h for _, h in VECTORS)


# --- choices: time zones, fold, enums, keys ---------------------------------------------------


@pytest.mark.parametrize("fold", [0, 1])
def test_zoneinfo_keeps_the_fold_of_a_repeated_wall_time(fold: int) -> None:
    """01:30 on the night New York leaves DST happens twice: each reads back as itself."""
    value = dt.datetime(2024, 11, 3, 1, 30, fold=fold, tzinfo=NEW_YORK)
    got = codec.decode(codec.encode(value))
    assert (got.fold, got.utcoffset(), got.tzinfo) == (fold, value.utcoffset(), NEW_YORK)


def test_fixed_offset_and_utc_keep_their_tzinfo() -> None:
    """An offset reads back as that offset, timezone.utc as timezone.utc."""
    plus = dt.timezone(dt.timedelta(hours=5, minutes=45))
    got = codec.decode(codec.encode([dt.datetime(2024, 1, 1, tzinfo=plus), dt.time(tzinfo=UTC)]))
    assert got[0].tzinfo == plus
    assert got[1].tzinfo is UTC


def test_dict_keys_of_every_hashable_type_round_trip() -> None:
    """int, bytes, tuple, date, Decimal and enum keys read back as themselves."""
    value = {1: "i", b"b": "b", (1, (2,)): "t", dt.date(2024, 1, 1): "d", Decimal("1.0"): "m"}
    value[Color.RED] = "e"
    assert_same(codec.decode(codec.encode(value)), value)


def test_bytearray_reads_back_as_bytes() -> None:
    """The one documented change of type: msgpack writes bytearray itself, as bytes."""
    assert codec.decode(codec.encode([bytearray(b"ab")])) == [b"ab"]


def test_text_holding_extension_marks_is_not_refused() -> None:
    """Non-ASCII text whose UTF-8 holds an extension's first byte (Hebrew, Arabic, Romanian)
    is plain text: it is stored and reads back."""
    value = {"he": "שלום", "ar": "سلام", "ro": "Ș", "n": [0xC7, 0xD4, -0x29]}
    assert codec.decode(codec.encode(value)) == value


def test_registered_enum_reads_back_as_its_member() -> None:
    """IntEnum and StrEnum members of registered enums read back as members, not ints."""
    got = codec.decode(codec.encode([Color.BLUE, enum_member("Level", "HIGH")]))
    assert got == [Color.BLUE, enum_member("Level", "HIGH")]
    assert type(got[1]).__name__ == "Level"


def enum_member(cls: str, name: str) -> enum.Enum:
    """A member of one of typed_values' registered enums."""
    import typed_values

    member: enum.Enum = getattr(typed_values, cls)[name]
    return member


def test_register_enum_defaults_to_the_qualname_and_returns_the_class() -> None:
    """register_enum names an enum by its __qualname__ unless told, and returns it."""

    class Size(enum.Enum):
        S = "s"

    local = Codec()
    assert local.register_enum(Size) is Size
    assert msgpack.unpackb(local.encode(Size.S)).data == msgpack.packb([Size.__qualname__, "s"])
    assert Size.__qualname__ in repr(local)


def test_register_enum_refuses_a_taken_name_and_a_second_name() -> None:
    """One name, one enum: a second enum under a taken name, or a second name for a
    registered enum, is refused."""

    class Other(enum.Enum):
        X = 1

    local = Codec()
    local.register_enum(Color, name="Color")
    local.register_enum(Color, name="Color")  # again, same name: fine
    with pytest.raises(CacheValueError, match=r"already registered for .*name="):
        local.register_enum(Other, name="Color")
    with pytest.raises(CacheValueError, match="already registered as 'Color'"):
        local.register_enum(Color, name="shop.Color")


@pytest.mark.parametrize("cls", [int, Color.RED, "Color"], ids=repr)
def test_register_enum_takes_only_enum_classes(cls: Any) -> None:
    """register_enum of something that is not an Enum class is a CacheValueError."""
    with pytest.raises(CacheValueError, match="takes an Enum class"):
        Codec().register_enum(cls)


def test_register_enum_refuses_an_uncacheable_member_value() -> None:
    """An enum whose member value could not be cached is refused when registered."""

    class Bad(enum.Enum):
        X = object()

    with pytest.raises(CacheValueError, match=r"cannot register enum .*Bad\.X"):
        Codec().register_enum(Bad)


# --- refusals naming the fix ------------------------------------------------------------------


class Point(NamedTuple):
    x: int


@dataclasses.dataclass
class User:
    name: str


class Name(str):
    pass


class Stamp(dt.datetime):
    pass


class Plain(enum.Enum):
    A = 1


class Flag(enum.IntEnum):
    ON = 1


class Tz(dt.tzinfo):
    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=1)


REFUSED: list[tuple[Any, str]] = [
    (collections.OrderedDict(a=1), r"'OrderedDict', a subclass of dict.*dict\(value\)"),
    (collections.defaultdict(list), r"'defaultdict', a subclass of dict"),
    (collections.Counter("ab"), r"'Counter', a subclass of dict"),
    ([Point(1)], r"'Point', a subclass of tuple.*annotate"),
    ({"n": Name("x")}, r"'Name', a subclass of str.*str\(value\)"),
    (Stamp(2024, 1, 1), r"'Stamp', a subclass of datetime.*codec\.register"),
    (User("a"), r"'User'.*codec\.register.*Cache\.get\(key, type=\.\.\.\)"),
    (Plain.A, r"register_enum\(Plain\)"),
    ([Flag.ON], r"register_enum\(Flag\)"),
    (dt.datetime(2024, 1, 1, tzinfo=Tz()), r"tzinfo .*Tz.*ZoneInfo"),
    (
        dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1), "CET")),
        r"'CET'.*its name would not read back",
    ),
    (
        dt.time(1, tzinfo=dt.timezone(dt.timedelta(microseconds=1))),
        r"offset with microseconds",
    ),
    (dt.time(1, tzinfo=NEW_YORK), r"a time keeps only a fixed offset"),
    ((msgpack.ExtType(100, b"2024-01-01T00:00:00"),), r"holds a msgpack ExtType"),
    ({msgpack.ExtType(106, b"\x90")}, r"holds a msgpack ExtType"),
    ((msgpack.Timestamp(1),), r"holds a msgpack Timestamp"),
]


@pytest.mark.parametrize(("value", "message"), REFUSED, ids=[repr(v)[:40] for v, _ in REFUSED])
def test_value_that_would_not_read_back_identically_is_refused(value: Any, message: str) -> None:
    """A value that would read back as another type (a subclass, an unregistered enum, a
    named or unknown tzinfo, a raw msgpack extension) is a CacheValueError naming the fix."""
    with pytest.raises(CacheValueError, match=message):
        codec.encode(value)


def test_zoneinfo_without_a_key_is_refused(tmp_path: Path) -> None:
    """A ZoneInfo read from a file has no key to store: refused, naming the fix."""
    with open("/usr/share/zoneinfo/Europe/Paris", "rb") as source:
        zone = ZoneInfo.from_file(source)
    with pytest.raises(CacheValueError, match="ZoneInfo"):
        codec.encode(dt.datetime(2024, 1, 1, tzinfo=zone))


def test_a_refused_value_leaves_the_codec_usable() -> None:
    """After a refusal deep inside nested payloads, the next encode is whole and correct."""
    with pytest.raises(CacheValueError):
        codec.encode((1, {2, (3, object())}))
    value = (1, {2, (3, 4)})
    assert codec.decode(codec.encode(value)) == value


# --- malformed payloads read as DecodeError (a miss in the cache) -----------------------------


def ext(code: int, payload: bytes) -> bytes:
    return msgpack.packb([msgpack.ExtType(code, payload)])


MALFORMED: list[tuple[str, bytes]] = [
    ("datetime text", ext(100, b"yesterday")),
    ("datetime zone as a path", ext(100, b"2024-01-01T00:00:00+00:00[../../etc/passwd]")),
    ("datetime unknown zone", ext(100, b"2024-01-01T00:00:00+00:00[Nowhere/Atlantis]")),
    ("datetime not ascii", ext(100, "2024-01-01T00:00:00[Ü]".encode())),
    ("date month 13", ext(101, b"2024-13-01")),
    ("time 25h", ext(102, b"25:00:00")),
    ("timedelta seconds", ext(103, msgpack.packb([0, 86400, 0]))),
    ("timedelta short", ext(103, msgpack.packb([0, 1]))),
    ("timedelta floats", ext(103, msgpack.packb([0.5, 1, 0]))),
    ("Decimal underscore", ext(104, b"1_0")),
    ("Decimal spaces", ext(104, b" 1")),
    ("Decimal garbage", ext(104, b"x")),
    ("UUID 15 bytes", ext(105, b"\x00" * 15)),
    ("tuple of a str", ext(106, msgpack.packb("abc"))),
    ("tuple trailing bytes", ext(106, msgpack.packb([1]) + b"\x01")),
    ("set unhashable", ext(107, msgpack.packb([[1]]))),
    ("frozenset not msgpack", ext(108, b"\xc1")),
    ("enum unregistered", ext(109, msgpack.packb(["os.system", 1]))),
    ("enum not a member", ext(109, msgpack.packb(["Color", 99]))),
    ("enum name not a str", ext(109, msgpack.packb([1, 1]))),
    ("enum three items", ext(109, msgpack.packb(["Color", 1, 2]))),
    ("reserved code", ext(110, b"")),
    ("user code unregistered", ext(5, b"")),
]


@pytest.mark.parametrize("data", [d for _, d in MALFORMED], ids=[n for n, _ in MALFORMED])
def test_malformed_payload_is_a_decode_error(data: bytes) -> None:
    """A built-in extension whose payload is not in its documented layout, an enum not in
    the registry, or an unknown code raises DecodeError (read as a miss), nothing else."""
    with pytest.raises(DecodeError):
        codec.decode(data)


def test_an_enum_the_reader_did_not_register_is_a_decode_error() -> None:
    """Bytes naming an enum the reading codec has not registered are a DecodeError: the
    class is never looked up anywhere but the registry."""
    with pytest.raises(DecodeError, match="not registered"):
        Codec().decode(codec.encode([Color.RED]))


def nested_tuples(depth: int) -> Any:
    value: Any = ()
    for _ in range(depth - 1):
        value = (value,)
    return value


def test_nesting_up_to_the_limit_round_trips_and_deeper_is_refused() -> None:
    """Tuples nested MAX_NESTING deep read back; one level more is a CacheValueError."""
    value = nested_tuples(MAX_NESTING)
    assert codec.decode(codec.encode(value)) == value
    with pytest.raises(CacheValueError, match=f"nested more than {MAX_NESTING} deep"):
        codec.encode([nested_tuples(MAX_NESTING + 1)])


def test_a_nesting_bomb_is_a_decode_error_even_on_a_small_thread_stack() -> None:
    """Stored bytes nesting tuples 3,000 deep read as DecodeError in a thread with a 1 MiB
    stack, where unbounded nesting would crash the process (each level is a C unpacker)."""
    payload = b"\x90"
    for _ in range(3000):
        payload = msgpack.packb([msgpack.ExtType(106, payload)])
    data = msgpack.packb(msgpack.ExtType(106, payload))
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            codec.decode(data)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)
        else:
            outcome.append(None)

    previous = threading.stack_size(1024 * 1024)
    try:
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
    finally:
        threading.stack_size(previous)
    assert len(outcome) == 1
    assert isinstance(outcome[0], DecodeError)
