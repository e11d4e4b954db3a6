"""Hypothesis strategies over every type the codec stores, nested, and a recursive check
that a value read back is the same value *of the same type* (tzinfo and offsets too)."""

from __future__ import annotations

import datetime as dt
import enum
import math
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from cachekit.codec import MAX_NESTING
from cachekit.host import Codec


class Color(enum.Enum):
    RED = 1
    GREEN = "g"
    BLUE = (2, 3)


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    READ = "r"
    WRITE = "w"


ENUMS = (Color, Level, Mode)


def register_enums(codec: Codec) -> Codec:
    """``codec`` with the enums of these strategies registered."""
    for cls in ENUMS:
        codec.register_enum(cls)
    return codec


# timezone() takes offsets strictly within a day; the codec, whole seconds (ISO 8601)
_offsets = st.integers(-86399, 86399).map(lambda s: dt.timezone(dt.timedelta(seconds=s)))
_fixed = st.none() | st.just(dt.UTC) | _offsets
datetimes = st.datetimes(timezones=_fixed | st.timezones())
times = st.times(timezones=_fixed)
decimals = st.decimals(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [Decimal("-0"), Decimal("1.10"), Decimal("sNaN"), Decimal("-NaN5"), Decimal("1E+5")]
)

# hashable leaves (set members, dict keys): no NaN Decimal (sNaN cannot even be hashed)
hashable_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | datetimes
    | st.dates()
    | times
    | st.timedeltas()
    | st.decimals(allow_nan=False)
    | st.uuids()
    | st.sampled_from([m for cls in ENUMS for m in cls])
)
hashables = st.recursive(
    hashable_leaves,
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)


def nesting(value: Any) -> int:
    """How deep tuples, sets and frozensets nest in ``value`` (the codec's MAX_NESTING)."""
    if isinstance(value, dict):
        return max((max(nesting(k), nesting(v)) for k, v in value.items()), default=0)
    inner = max((nesting(item) for item in value), default=0) if _iterable(value) else 0
    return inner + 1 if isinstance(value, tuple | set | frozenset) else inner


def _iterable(value: Any) -> bool:
    return isinstance(value, list | tuple | set | frozenset)


values = st.recursive(
    hashable_leaves | decimals,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(hashables, inner, max_size=4)
        | st.sets(hashables, max_size=4)
        | st.frozensets(hashables, max_size=4)
    ),
    max_leaves=16,
).filter(lambda value: nesting(value) <= MAX_NESTING - 2)  # room for an enum or timedelta


def assert_same(got: Any, want: Any) -> None:
    """``got`` equals ``want`` and has its type, recursively (dict keys and set members too;
    a datetime's tzinfo, offset and, where it matters, fold; a Decimal's text; a float's
    sign of zero)."""
    assert type(got) is type(want), f"{got!r} is not a {type(want).__name__} like {want!r}"
    if isinstance(want, Decimal):
        assert str(got) == str(want)  # exponent, sign and NaN payload kept
    elif isinstance(want, float):
        assert got == want
        assert math.copysign(1, got) == math.copysign(1, want)
    elif isinstance(want, list | tuple):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same(g, w)
    elif isinstance(want, dict):
        assert len(got) == len(want)
        for (gk, gv), (wk, wv) in zip(got.items(), want.items(), strict=True):  # order kept
            assert_same(gk, wk)
            assert_same(gv, wv)
    elif isinstance(want, set | frozenset):
        assert got == want
        members = {member: member for member in got}
        for member in want:
            assert_same(members[member], member)
    elif isinstance(want, dt.datetime | dt.time):
        assert got == want
        assert (got.replace(tzinfo=None), got.tzinfo) == (want.replace(tzinfo=None), want.tzinfo)
        assert type(got.tzinfo) is type(want.tzinfo)
        if isinstance(want.tzinfo, ZoneInfo):
            assert isinstance(got, dt.datetime)
            assert isinstance(want, dt.datetime)
            assert got.tzinfo is want.tzinfo
            assert got.utcoffset() == want.utcoffset()
            if want.replace(fold=0).utcoffset() != want.replace(fold=1).utcoffset():
                assert got.fold == want.fold
        elif want.tzinfo is not None:
            assert got.tzinfo.utcoffset(None) == want.tzinfo.utcoffset(None)
            assert got.tzinfo.tzname(None) == want.tzinfo.tzname(None)
    else:
        assert got == want
