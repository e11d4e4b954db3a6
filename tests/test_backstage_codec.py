"""valueFormat: keyv-json and Backstage's key normalization, without a server: what the
codec accepts, refuses and reads, and the JavaScript number text it writes."""

from __future__ import annotations

import base64
import datetime as dt
import enum
import hashlib
from typing import Any

import pytest

from cachekit import CacheValueError
from cachekit.backstage import BackstageKeySpace, KeyvJsonCodec, _js_number, normalize_key
from cachekit.codec import DecodeError
from cachekit.keys import ANY

codec = KeyvJsonCodec()


class Color(enum.Enum):
    RED = "red"


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (2.0, "2"),
        (0.1, "0.1"),
        (-123.456, "-123.456"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (1e16, "10000000000000000"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.2345e22, "1.2345e+22"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (0.000123, "0.000123"),
        (123456.789, "123456.789"),
    ],
)
def test_floats_are_written_as_javascript_writes_them(number: float, text: str) -> None:
    """A float's text is Number.prototype.toString's (the values ECMAScript's spec lists)."""
    assert _js_number(number) == text


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**53 - 1),
        2**53 - 1,
        1.5,
        "",
        'text with "quotes", \\ and \n\t\x01 controls',
        "ünïcödé ✓ \u2028",
        ":leading colon",
        ":base64:not bytes",
        b"",
        b"\x00\x01\xff",
        [1, [2, [3]], {"a": None}],
        {"": 1, ":k": ":v", "nested": {"list": [b"x", ":y"]}},
    ],
)
def test_json_values_round_trip(value: Any) -> None:
    """Every JSON value (and bytes) reads back equal and of the same type."""
    decoded = codec.decode(codec.encode(value))
    assert decoded == value
    assert type(decoded) is type(value)


def test_an_integral_float_reads_back_as_an_int() -> None:
    """2.0 is written 2, as JavaScript writes it, and so reads back as the int 2."""
    assert codec.encode(2.0) == b'{"value":2}'
    assert codec.decode(b'{"value":2}') == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (2**53, "2\\*\\*53 - 1"),
        (-(2**53), "2\\*\\*53 - 1"),
        (float("nan"), "JSON has no nan"),
        (float("inf"), "JSON has no inf"),
        ((1, 2), "tuple"),
        ({1: "a"}, "int key"),
        (dt.date(2026, 1, 1), "date"),
        ({1, 2}, "set"),
        (Color.RED, "Color"),
        ("\ud800", "lone surrogate"),
    ],
)
def test_values_without_a_keyv_json_form_are_refused(value: Any, message: str) -> None:
    """A value JSON cannot hold exactly is a CacheValueError naming the problem."""
    with pytest.raises(CacheValueError, match=message):
        codec.encode(value)


def test_too_deep_a_value_is_refused() -> None:
    """A value nested deeper than the codec's limit is refused, not a RecursionError."""
    value: Any = []
    for _ in range(100):
        value = [value]
    with pytest.raises(CacheValueError, match="nested"):
        codec.encode(value)


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"[1]", b'{"other": 1}', b'"text"', b"\xff\xfe", b"[" * 100_000, b"042"],
)
def test_bytes_that_are_not_a_keyv_entry_are_a_decode_error(data: bytes) -> None:
    """Anything but a keyv entry or a counter's decimal is a DecodeError (a miss)."""
    with pytest.raises(DecodeError):
        codec.decode(data)


def test_a_counters_decimal_reads_as_an_int() -> None:
    """The decimal text incr leaves in Redis reads back as the int."""
    assert codec.decode(b"-12") == -12


def test_registering_types_is_refused() -> None:
    """register and register_enum raise: keyv-json holds JSON values only."""
    with pytest.raises(CacheValueError, match="JSON values only"):
        codec.register(int, 1, bytes, int)
    with pytest.raises(CacheValueError, match="JSON values only"):
        codec.register_enum(Color)


def test_keys_are_normalized_as_backstages_cache_client_does() -> None:
    """A key is the base64 of its UTF-8 bytes, or of its SHA-256 digest when that base64
    would be 200 characters or more (147 bytes encode to 196, 148 to 200)."""
    assert normalize_key("test:key") == "dGVzdDprZXk="
    short, long = "a" * 147, "a" * 148
    assert normalize_key(short) == base64.b64encode(short.encode()).decode()
    assert len(normalize_key(short)) == 196
    assert normalize_key(long) == base64.b64encode(hashlib.sha256(long.encode()).digest()).decode()
    unicode = "ü" * 74  # 148 UTF-8 bytes: hashed
    assert (
        normalize_key(unicode)
        == base64.b64encode(hashlib.sha256(unicode.encode()).digest()).decode()
    )


def test_the_selector_matches_only_backstage_layout_keys() -> None:
    """A plugin's selector matches its normalized keys only: not another plugin's, not a
    longer plugin id, not keys whose last part is not base64."""
    selector = BackstageKeySpace("app:", ":").selector("catalog")
    assert selector.glob() == "app:catalog:*"
    assert selector.matches("app:catalog:dGVzdDprZXk=")
    assert not selector.matches("app:catalog-x:dGVzdDprZXk=")
    assert not selector.matches("app:search:dGVzdDprZXk=")
    assert not selector.matches("app:catalog:acme::k")
    assert not selector.matches("other:catalog:dGVzdDprZXk=")
    every = BackstageKeySpace("app:", ":").selector(ANY)
    assert every.glob() == "app:*"
    assert every.matches("app:search:dGVzdDprZXk=")


def test_glob_characters_of_a_plugin_id_are_escaped() -> None:
    """A plugin id with glob characters matches only itself in the SCAN pattern."""
    assert BackstageKeySpace().selector("a*b").glob() == "a\\*b:*"
