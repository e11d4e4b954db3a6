"""Durations: TTL arguments at run time and duration values in config.

At run time a TTL is seconds (``int``, ``float``) or a :class:`~datetime.timedelta`;
``0`` means "no expiry". Stores receive a positive ``float`` of seconds or ``None`` for
"no expiry".

**One TTL range on every store.** A TTL is at most :data:`MAX_TTL` (10 years); a longer
one is refused with :class:`~cachekit.errors.CacheValueError` before any store is called,
the same way on every store (it is almost always a unit mistake, such as milliseconds
passed as seconds; ``ttl=0`` is how to ask for no expiry). Refusing rather than clamping
keeps a TTL meaning what the caller wrote. Each store maps every admitted TTL faithfully:
Redis in milliseconds; memcached, which reads an expiry over 30 days as a Unix time and
cannot represent one past 2038-01-19 (a signed 32-bit time), gets an absolute time capped
there, so from 2028 on a TTL that would end later ends then (a cache may drop an entry
early, never keep it late). See :func:`cachekit.stores.memcache.values.expiry`.

In config (as in Backstage) a bare number is **milliseconds**; strings such as ``"500ms"``,
``"30s"``, ``"5m"``, ``"1h"``, ``"1d"`` and mappings such as ``{minutes: 5}`` are accepted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Final

from cachekit.errors import CacheValueError, ConfigError

__all__ = ["MAX_TTL", "TTL", "parse_config_duration", "store_ttl"]

MAX_TTL: Final = 10 * 365 * 86400
"""The longest TTL a caller may ask for, in seconds (10 years); longer ones are refused."""

TTL = int | float | timedelta
"""What a ``ttl=`` argument accepts."""

_UNITS: Final = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_MAPPING_UNITS: Final = {
    "milliseconds": 0.001,
    "seconds": 1.0,
    "minutes": 60.0,
    "hours": 3600.0,
    "days": 86400.0,
    "weeks": 604800.0,
}
_DURATION_RE: Final = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d|w)\s*")


def store_ttl(ttl: TTL) -> float | None:
    """Normalise a ``ttl=`` argument: seconds as ``float``, or ``None`` for ``0`` (no expiry).

    :raises CacheValueError: negative, NaN, infinite, above :data:`MAX_TTL`, or not a
        number/timedelta.
    """
    if type(ttl) is int or type(ttl) is float:
        seconds = float(ttl)
    elif isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, int | float) and not isinstance(ttl, bool):
        seconds = float(ttl)
    else:
        raise CacheValueError(
            f"ttl must be seconds (int or float) or a timedelta, got {type(ttl).__name__}: {ttl!r}"
        )
    if not 0 <= seconds <= MAX_TTL:  # also false for NaN
        if seconds > MAX_TTL and math.isfinite(seconds):
            raise CacheValueError(
                f"ttl must be at most {MAX_TTL} seconds (10 years), got {ttl!r}; "
                "pass ttl=0 for no expiry, and seconds rather than milliseconds"
            )
        raise CacheValueError(
            f"ttl must be a finite number of seconds >= 0 (0 means no expiry), got {ttl!r}"
        )
    return seconds or None


def parse_config_duration(value: object, path: str) -> float:
    """Parse a config duration into seconds (a bare number is milliseconds).

    :raises ConfigError: naming ``path`` when the value is not a valid duration.
    """
    hint = "use milliseconds (30000), a string such as '30s', '5m', '1h', or {minutes: 5}"
    if isinstance(value, bool):
        raise ConfigError(f"expected a duration, got {value!r}; {hint}", path=path)
    if isinstance(value, int | float):
        seconds = float(value) / 1000.0
    elif isinstance(value, str):
        match = _DURATION_RE.fullmatch(value)
        if match is None:
            raise ConfigError(f"cannot read {value!r} as a duration; {hint}", path=path)
        seconds = float(match[1]) * _UNITS[match[2]]
    elif isinstance(value, Mapping):
        seconds = 0.0
        for unit, amount in value.items():
            if unit not in _MAPPING_UNITS:
                known = ", ".join(_MAPPING_UNITS)
                raise ConfigError(f"unknown duration unit {unit!r}; known: {known}", path=path)
            if isinstance(amount, bool) or not isinstance(amount, int | float):
                raise ConfigError(f"{unit} must be a number, got {amount!r}", path=f"{path}.{unit}")
            seconds += float(amount) * _MAPPING_UNITS[unit]
    else:
        raise ConfigError(f"expected a duration, got {type(value).__name__}; {hint}", path=path)
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"a duration must be finite and >= 0, got {value!r}", path=path)
    return seconds
