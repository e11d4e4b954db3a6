"""Durations: TTL arguments at run time and duration values in config.

At run time a TTL is seconds (``int``, ``float``), a :class:`~datetime.timedelta` or
any other duration form below; ``0`` means "no expiry". Stores receive a positive
``float`` of seconds or ``None`` for "no expiry".

**One TTL range on every store.** A TTL is at most :data:`MAX_TTL` (10 years); a longer
one is refused with :class:`~cachekit.errors.CacheValueError` before any store is called,
the same way on every store (it is almost always a unit mistake, such as milliseconds
passed as seconds; ``ttl=0`` is how to ask for no expiry). Refusing rather than clamping
keeps a TTL meaning what the caller wrote. Each store maps every admitted TTL faithfully:
Redis in milliseconds; memcached, which reads an expiry over 30 days as a Unix time and
cannot represent one past 2038-01-19 (a signed 32-bit time), gets an absolute time capped
there, so from 2028 on a TTL that would end later ends then (a cache may drop an entry
early, never keep it late). See :func:`cachekit.stores.memcache.values.expiry`.

**One grammar, two number units.** Everywhere a duration is read — ``ttl=``,
``stale_ttl=``, ``lock_timeout=``, ``per=``, ``cachekit set --ttl`` and config keys such as
``defaultTtl`` — the same forms are accepted:

* a :class:`~datetime.timedelta`;
* a string of units, largest first: ``"500ms"``, ``"90s"``, ``"5m"``, ``"1h30m"``,
  ``"2d"``, ``"1w"``, or spelled out as Backstage's ``ms``-style strings are:
  ``"2 seconds"``, ``"1 minute"``, ``"5 minutes"``, ``"1.5 hours"``;
* an ISO 8601 duration: ``"PT1M30S"``, ``"P1D"``, ``"P1DT2H"``, ``"P2W"``;
* a mapping of units (Backstage's ``HumanDuration``): ``{"minutes": 5}``,
  ``{"hours": 1, "seconds": 30}``.

Years and months are refused (they have no fixed length; write days). A bare number is
**seconds** in Python (``ttl=60``) and **milliseconds** in config (``defaultTtl: 60000``), as
in Backstage. :func:`parse_duration` is the one parser; :func:`store_ttl` (the Python API)
and :func:`parse_config_duration` (config) both use it.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Final

from cachekit.errors import CacheValueError, ConfigError

__all__ = [
    "MAX_TTL",
    "PYTHON_FORMS",
    "TEXT_FORMS",
    "TTL",
    "parse_config_duration",
    "parse_duration",
    "store_ttl",
]

MAX_TTL: Final = 10 * 365 * 86400
"""The longest TTL a caller may ask for, in seconds (10 years); longer ones are refused."""

TTL = int | float | timedelta | str | Mapping[str, int | float]
"""What a ``ttl=`` (or any duration) argument accepts: see the module docstring."""

TEXT_FORMS: Final = (
    "a string such as '90s', '5m', '1h30m', '500ms', '5 minutes' or 'PT1M30S' (ISO 8601), "
    "or a mapping such as {minutes: 5}"
)
"""The duration forms shared by Python and config, for error messages."""
PYTHON_FORMS: Final = f"seconds (int or float), a timedelta, {TEXT_FORMS}"
"""Every form a Python duration argument takes, for error messages."""

_SECOND, _MINUTE, _HOUR, _DAY, _WEEK = 1.0, 60.0, 3600.0, 86400.0, 604800.0
_NO_FIXED_LENGTH: Final = "years and months have no fixed length; write days (e.g. '365d')"
# unit names as Backstage's `ms` strings spell them (case-insensitive)
_UNITS: Final = {
    **dict.fromkeys(("ms", "msec", "msecs", "millisecond", "milliseconds"), 0.001),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), _SECOND),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), _MINUTE),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), _HOUR),
    **dict.fromkeys(("d", "day", "days"), _DAY),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), _WEEK),
}
_UNFIXED: Final = frozenset(
    ("y", "yr", "yrs", "year", "years", "mo", "mon", "mons", "month", "months")
)
_MAPPING_UNITS: Final = {
    "milliseconds": 0.001,
    "seconds": _SECOND,
    "minutes": _MINUTE,
    "hours": _HOUR,
    "days": _DAY,
    "weeks": _WEEK,
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PART: Final = re.compile(rf"\s*({_NUMBER})\s*([a-z]+)\s*", re.IGNORECASE)
_PARTS: Final = re.compile(rf"(?:\s*{_NUMBER}\s*[a-z]+\s*)+", re.IGNORECASE)
_ISO_NUMBER = r"(\d+(?:[.,]\d+)?)"
_ISO: Final = re.compile(
    rf"P(?:{_ISO_NUMBER}Y)?(?:{_ISO_NUMBER}M)?(?:{_ISO_NUMBER}W)?(?:{_ISO_NUMBER}D)?"
    rf"(?:T(?:{_ISO_NUMBER}H)?(?:{_ISO_NUMBER}M)?(?:{_ISO_NUMBER}S)?)?",
    re.IGNORECASE,
)
_ISO_SCALES: Final = (None, None, _WEEK, _DAY, _HOUR, _MINUTE, _SECOND)


class _Unreadable(ValueError):
    """Why a duration cannot be read (callers add whose duration and the accepted forms).

    :ivar unit: the mapping key at fault, if any.
    """

    def __init__(self, reason: str, unit: str = "") -> None:
        super().__init__(reason)
        self.unit = unit


def parse_duration(value: str | Mapping[str, int | float]) -> float:
    """Seconds in a duration string or unit mapping (the one parser of every duration).

    :raises ValueError: the value is not a duration, or uses years or months.
    """
    if isinstance(value, str):
        return _from_text(value)
    if isinstance(value, Mapping):
        return _from_mapping(value)
    raise _Unreadable(f"got {type(value).__name__} {value!r}")


@functools.lru_cache(maxsize=256)  # an app writes few distinct strings, often per call
def _from_text(text: str) -> float:
    stripped = text.strip()
    if stripped[:1] in ("P", "p"):
        return _from_iso(stripped, text)
    if _PARTS.fullmatch(text) is None:
        if stripped and _PARTS.fullmatch(stripped + "s") is not None:
            raise _Unreadable(f"{text!r} has no unit (write '{stripped}s' or '{stripped}ms')")
        raise _Unreadable(f"cannot read {text!r} as a duration")
    seconds, last = 0.0, math.inf
    for amount, name in _PART.findall(text):
        unit = name.lower()
        if unit in _UNFIXED:
            raise _Unreadable(f"cannot read {text!r}: {_NO_FIXED_LENGTH}")
        scale = _UNITS.get(unit)
        if scale is None:
            raise _Unreadable(f"cannot read {text!r}: unknown unit {name!r}")
        if scale >= last:
            raise _Unreadable(f"cannot read {text!r}: give units largest first, each once")
        seconds, last = seconds + float(amount) * scale, scale
    return seconds


def _from_iso(text: str, original: str) -> float:
    match = _ISO.fullmatch(text)
    if match is None or match.lastindex is None or text.upper().endswith("T"):
        raise _Unreadable(f"cannot read {original!r} as an ISO 8601 duration (e.g. 'PT1M30S')")
    if match[1] is not None or match[2] is not None:
        raise _Unreadable(f"cannot read {original!r}: {_NO_FIXED_LENGTH}")
    return sum(
        float(amount.replace(",", ".")) * scale
        for amount, scale in zip(match.groups(), _ISO_SCALES, strict=True)
        if amount is not None and scale is not None
    )


def _from_mapping(value: Mapping[str, int | float]) -> float:
    seconds = 0.0
    for unit, amount in value.items():
        if unit in ("years", "months"):
            raise _Unreadable(_NO_FIXED_LENGTH, unit)
        scale = _MAPPING_UNITS.get(unit) if isinstance(unit, str) else None
        if scale is None:
            known = ", ".join(_MAPPING_UNITS)
            raise _Unreadable(f"unknown duration unit {unit!r}; known: {known}")
        if isinstance(amount, bool) or not isinstance(amount, int | float):
            raise _Unreadable(f"{unit} must be a number, got {amount!r}", unit)
        seconds += float(amount) * scale
    return seconds


def store_ttl(ttl: TTL, name: str = "ttl") -> float | None:
    """Normalise a duration argument: seconds as ``float``, or ``None`` for ``0`` (no
    expiry). ``name`` is the parameter named in errors (``"stale_ttl"``, ``"per"``).

    :raises CacheValueError: negative, NaN, infinite, above :data:`MAX_TTL`, or not a
        duration (the message names ``name`` and the accepted forms).
    """
    if type(ttl) is int or type(ttl) is float:  # the fast path: every set() passes here
        seconds = float(ttl)
    elif isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    else:
        seconds = _other_ttl(ttl, name)
    if not 0 <= seconds <= MAX_TTL:  # also false for NaN
        if seconds > MAX_TTL and math.isfinite(seconds):
            no_expiry = "; pass ttl=0 for no expiry" if name == "ttl" else ""
            raise CacheValueError(
                f"{name} must be at most {MAX_TTL} seconds (10 years), got {ttl!r}; "
                f"a number is seconds, not milliseconds{no_expiry}"
            )
        raise CacheValueError(
            f"{name} must be a finite duration >= 0 (0 means no expiry), got {ttl!r}"
        )
    return seconds or None


def _other_ttl(ttl: object, name: str) -> float:
    """Seconds in a duration argument that is not an ``int``, ``float`` or timedelta."""
    if isinstance(ttl, int | float) and not isinstance(ttl, bool):
        return float(ttl)  # subclasses of int and float
    if isinstance(ttl, str | Mapping):
        try:
            return parse_duration(ttl)
        except _Unreadable as exc:
            raise CacheValueError(f"{name}: {exc}; {name}= takes {PYTHON_FORMS}") from None
    raise CacheValueError(
        f"{name} must be a duration, got {type(ttl).__name__}: {ttl!r}; "
        f"{name}= takes {PYTHON_FORMS}"
    )


def parse_config_duration(value: object, path: str) -> float:
    """Parse a config duration into seconds (a bare number is milliseconds).

    :raises ConfigError: naming ``path`` when the value is not a valid duration.
    """
    hint = f"use milliseconds (30000), {TEXT_FORMS}"
    if isinstance(value, bool) or not isinstance(value, int | float | str | Mapping):
        raise ConfigError(f"expected a duration, got {type(value).__name__}; {hint}", path=path)
    if isinstance(value, int | float):
        seconds = float(value) / 1000.0
    else:
        try:
            seconds = parse_duration(value)
        except _Unreadable as exc:
            at = f"{path}.{exc.unit}" if exc.unit else path
            raise ConfigError(f"{exc}; {hint}", path=at) from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"a duration must be finite and >= 0, got {value!r}", path=path)
    return seconds
