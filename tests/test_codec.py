"""Value encoding: msgpack plus native integers, no pickle, typed errors."""

from __future__ import annotations

import datetime as dt
from enum import IntEnum

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachekit.codec import INT_MAX, INT_MIN, MISS, Codec, DecodeError, format_int, parse_int
from cachekit.errors import CacheValueError

codec = Codec()

json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(json_like)
def test_round_trip(value: object) -> None:
    """Every supported value decodes to an equal value."""
    assert codec.decode(codec.encode(value)) == value


@given(st.integers(INT_MIN, INT_MAX))
def test_integers_use_the_native_form(value: int) -> None:
    """Integers of 64 bits are ASCII decimal, the form INCRBY and memcached incr use."""
    encoded = codec.encode(value)
    assert encoded == str(value).encode()
    assert parse_int(encoded) == value == codec.decode(encoded)
    assert format_int(value) == encoded


@given(json_like.filter(lambda v: not (isinstance(v, int) and not isinstance(v, bool))))
def test_non_integers_never_look_like_integers(value: object) -> None:
    """No other encoding starts like an integer, so the two forms never collide."""
    assert parse_int(codec.encode(value)) is None


def test_bool_is_not_an_integer() -> None:
    """True is stored as a boolean, not as 1 (so incr refuses it)."""
    assert codec.decode(codec.encode(True)) is True
    assert parse_int(codec.encode(True)) is None


def test_int_subclass_is_refused_naming_the_fix() -> None:
    """An int subclass (here an unregistered IntEnum) is refused, not stored as an int that
    would read back as another type; the message names register_enum."""

    class Color(IntEnum):
        RED = 3

    with pytest.raises(CacheValueError, match=r"register_enum\(Color\)"):
        codec.encode(Color.RED)


@pytest.mark.parametrize("value", [object(), {1j}, [object()], {"a": object()}], ids=repr)
def test_unencodable_values_raise_naming_the_type(value: object) -> None:
    """A value with no encoding raises CacheValueError (a TypeError) naming the type."""
    with pytest.raises(
        CacheValueError, match=r"cannot cache a value of type '(object|complex)'"
    ) as info:
        codec.encode(value)
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize(
    "value",
    [10**5000, 2**64, INT_MIN - 1, [2**70], {"a": [INT_MAX + 1]}],
    ids=["10**5000", "2**64", "INT_MIN-1", "[2**70]", "nested"],
)
def test_integer_beyond_64_bits_raises_the_same_top_level_and_nested(value: object) -> None:
    """One rule: an integer outside -2**63..2**64-1 is a CacheValueError saying what to do,
    at the top level (was a stored value, or a bare ValueError for 10**5000) as nested."""
    with pytest.raises(CacheValueError, match=r"-2\*\*63..2\*\*64-1 .* as a str"):
        codec.encode(value)


@given(st.integers(max_value=INT_MIN - 1) | st.integers(min_value=INT_MAX + 1))
def test_no_integer_beyond_64_bits_is_encoded(value: int) -> None:
    """No integer outside 64 bits is ever encoded (it could not be nested or counted)."""
    with pytest.raises(CacheValueError):
        codec.encode(value)


@pytest.mark.parametrize(
    "value",
    [
        msgpack.Timestamp(1),
        [msgpack.Timestamp(1, 5)],
        {"t": msgpack.Timestamp(2**40)},
        msgpack.ExtType(99, b"x"),
        [msgpack.ExtType(98, b"x")],
    ],
    ids=repr,
)
def test_value_that_would_not_read_back_is_refused(value: object) -> None:
    """What cannot be read back equal (a msgpack Timestamp or raw ExtType) is refused at
    encode with a CacheValueError saying why."""
    with pytest.raises(CacheValueError, match="cannot cache"):
        codec.encode(value)


def test_surrogate_in_a_str_value_says_what_to_do() -> None:
    """A str with a lone surrogate is a CacheValueError that says how to store it."""
    with pytest.raises(CacheValueError, match="surrogatepass"):
        codec.encode(["ok", "k\ud800"])


def test_bytes_that_look_like_a_timestamp_still_round_trip() -> None:
    """The Timestamp pre-filter has no false positives: bytes holding its marks read back."""
    value = {"raw": b"\xd6\xff\xd7\xff\xc7\x0c\xff", "list": [b"\xd6\xff"]}
    assert codec.decode(codec.encode(value)) == value


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",
        b"12x",
        b"-",
        b"\x92\x01",
        msgpack.packb(msgpack.ExtType(5, b"x")),
        b"4_2",
        b"42 ",
        b" 42",
        b"042",
        b"-0",
        b"-4_2",
        b"1" * 5000,
        b"18446744073709551616",  # 2**64: never written
        b"-9223372036854775809",
        msgpack.packb(msgpack.Timestamp(1)),
        msgpack.packb(7),
    ],
    ids=repr,
)
def test_corrupt_bytes_raise_decode_error(data: bytes) -> None:
    """Bytes this codec did not write raise DecodeError (the cache turns it into a miss):
    integers only in canonical decimal, no msgpack Timestamp or top-level msgpack int."""
    with pytest.raises(DecodeError):
        codec.decode(data)


def test_registered_type_round_trips() -> None:
    """A type registered with a code is stored as that msgpack extension and read back (a
    built-in type registered so replaces the built-in form for writes)."""
    local = Codec()
    local.register(
        dt.date, 1, lambda d: d.isoformat().encode(), lambda b: dt.date.fromisoformat(b.decode())
    )
    value = {"when": dt.date(2024, 2, 29)}
    encoded = local.encode(value)
    assert msgpack.unpackb(encoded) == {"when": msgpack.ExtType(1, b"2024-02-29")}
    assert local.decode(encoded) == value
    assert "date" in repr(local)


@pytest.mark.parametrize("code", [-1, 100, 127, 128])
def test_register_rejects_bad_codes(code: int) -> None:
    """Extension codes must be 0..99: 100..127 are the built-in types'."""
    with pytest.raises(CacheValueError, match=r"0\.\.99, got -?\d+: 100\.\.127 are reserved"):
        Codec().register(dt.date, code, bytes, bytes)


def test_register_rejects_duplicate_codes() -> None:
    """An extension code can be registered once."""
    local = Codec()
    local.register(dt.date, 1, bytes, bytes)
    with pytest.raises(CacheValueError, match="already"):
        local.register(dt.time, 1, bytes, bytes)


def test_miss_sentinel() -> None:
    """MISS is falsy, a singleton, and reads as cachekit.MISS."""
    assert not MISS
    assert repr(MISS) == str(MISS) == "cachekit.MISS"


_unpickled: list[str] = []


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_unpickled.append, ("code ran",))


def test_pickled_payload_is_not_executed() -> None:
    """A pickle written by another plugin is refused as corrupt, never unpickled."""
    import pickle

    with pytest.raises(DecodeError):
        codec.decode(pickle.dumps(_Payload()))
    assert _unpickled == []


@pytest.mark.parametrize("data", [b"4_2", b"42 ", b" 42", b"042", b"+42", b"-0", b"1" * 5000])
def test_parse_int_takes_only_the_canonical_form(data: bytes) -> None:
    """Stores' incr reads only the decimal form the codec writes."""
    assert parse_int(data) is None


class _Box:
    def __init__(self, content: object) -> None:
        self.content = content

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Box) and other.content == self.content

    __hash__ = None  # type: ignore[assignment]


def test_registered_encoder_may_call_the_codec_itself() -> None:
    """A registered type whose encode/decode use the codec for its content (re-entrant,
    mid-pack) reads back whole, and the codec stays usable."""
    local = Codec()
    local.register(_Box, 7, lambda box: local.encode(box.content), lambda b: _Box(local.decode(b)))
    value = [_Box({"at": dt.date(2024, 1, 1), "pair": (1, _Box("x"))}), (2, 3)]
    assert local.decode(local.encode(value)) == value
    assert local.decode(local.encode((4, 5))) == (4, 5)
