"""Value encoding: msgpack plus native integers, no pickle, typed errors."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import IntEnum

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachekit.codec import MISS, Codec, DecodeError, format_int, parse_int
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


@given(st.integers())
def test_integers_use_the_native_form(value: int) -> None:
    """Integers of any size are ASCII decimal, the form INCRBY and memcached incr use."""
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


def test_int_subclass_is_stored_as_int() -> None:
    """An IntEnum member is stored as its integer value."""

    class Color(IntEnum):
        RED = 3

    assert codec.encode(Color.RED) == b"3"


@pytest.mark.parametrize("value", [object(), dt.date(2020, 1, 1), Decimal(1), {1, 2}, [object()]])
def test_unencodable_values_raise_naming_the_type(value: object) -> None:
    """A value with no encoding raises CacheValueError (a TypeError) naming the type."""
    with pytest.raises(CacheValueError, match="cannot cache") as info:
        codec.encode(value)
    assert isinstance(info.value, TypeError)


def test_oversized_integer_inside_a_list_raises() -> None:
    """msgpack cannot hold integers over 64 bits inside containers: a typed error says so."""
    with pytest.raises(CacheValueError):
        codec.encode([2**70])


@pytest.mark.parametrize(
    "data", [b"\xc1", b"12x", b"-", b"\x92\x01", msgpack.packb(msgpack.ExtType(5, b"x"))]
)
def test_corrupt_bytes_raise_decode_error(data: bytes) -> None:
    """Bytes this codec did not write raise DecodeError (the cache turns it into a miss)."""
    with pytest.raises(DecodeError):
        codec.decode(data)


def test_registered_type_round_trips() -> None:
    """A type registered with a code is stored as a msgpack extension and read back."""
    local = Codec()
    local.register(
        dt.date, 1, lambda d: d.isoformat().encode(), lambda b: dt.date.fromisoformat(b.decode())
    )
    value = {"when": dt.date(2024, 2, 29)}
    assert local.decode(local.encode(value)) == value
    assert "date" in repr(local)


@pytest.mark.parametrize("code", [-1, 128])
def test_register_rejects_bad_codes(code: int) -> None:
    """Extension codes must be 0..127."""
    with pytest.raises(CacheValueError, match=r"0\.\.127"):
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
