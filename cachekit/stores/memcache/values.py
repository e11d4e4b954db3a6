"""What memcached stores for a cachekit value, and when it expires.

memcached's ``decr`` stops at zero and its ``incr`` works on unsigned 64-bit decimals,
while cachekit's counters go negative. So an integer ``n`` of the counter range
(:data:`COUNTER_MIN` to :data:`COUNTER_MAX`, ±2**62) is stored as the decimal of
``n + 2**62``: ``incr`` by ``delta`` then is memcached ``incr`` of the biased value, atomic
on the server. Reads subtract the bias from any value that starts with a digit. Other
values are stored as given, except that values which would look biased (any value
starting with a digit or ``-`` that is not a counter-range integer in canonical form) or
that start with ``~`` get a ``~`` in front, which reads strip; so every byte string
round-trips, and ``incr`` of anything else is refused by memcached.

Why ±2**62 and not the whole signed 64-bit range (a bias of 2**63): memcached parses the
value to increment in place with ``safe_strtoull``, which, for a number at or above 2**63
only, looks for a ``-`` sign with ``strchr`` — and an item's data is not NUL-terminated, so
the scan runs past the digits into whatever an earlier item left in the slab chunk, and
now and then refuses a valid counter as "non-numeric". Stored counters stay below 2**63.

memcached counts TTLs in whole seconds and reads a relative TTL over 30 days as a Unix
time: :func:`expiry` rounds up (never to 0, which means "forever") and sends long TTLs as
absolute times. memcached holds that time in a signed 32-bit integer (a later one is
refused, or read as long past), so absolute times are capped at 2038-01-19 03:14:07 UTC:
an entry may then expire before its TTL (the cache is lossy), never after it and never
at once. From 2038-01-19 on no absolute time can be sent, and TTLs over 30 days become
30 days. (:data:`cachekit.durations.MAX_TTL` bounds the TTLs that reach here.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final

from cachekit.codec import parse_int

__all__ = [
    "BIAS",
    "COUNTER_MAX",
    "COUNTER_MIN",
    "ENCODED_START",
    "ITEM_OVERHEAD",
    "LATEST_EXPTIME",
    "RELATIVE_TTL_LIMIT",
    "decode_value",
    "encode_value",
    "expiry",
]

BIAS: Final = 2**62
COUNTER_MIN: Final = -BIAS
"""The smallest counter memcached holds (stored as ``0``)."""
COUNTER_MAX: Final = BIAS - 1
"""The largest counter memcached holds (stored as ``2**63 - 1``)."""
RELATIVE_TTL_LIMIT: Final = 30 * 24 * 3600  # memcached reads larger exptimes as Unix times
LATEST_EXPTIME: Final = 2**31 - 1  # memcached's exptime is a signed 32-bit Unix time
ITEM_OVERHEAD: Final = 64  # memcached's item header, CAS and line ends
ENCODED_START: Final = frozenset(b"0123456789~")
"""First bytes of the stored values :func:`decode_value` changes (a cheap check first)."""

_DIGITS: Final = frozenset(b"0123456789")
_INT_START: Final = frozenset(b"-0123456789")
_RAW_MARK: Final = b"~"


def expiry(ttl: float | None, now: Callable[[], float] = time.time) -> int:
    """memcached's ``exptime`` for a TTL in seconds: ``0`` for none, whole seconds rounded
    up, or an absolute Unix time when over 30 days (capped at :data:`LATEST_EXPTIME`; 30
    days when even that cap is less than 30 days away)."""
    if ttl is None:
        return 0
    seconds = math.ceil(ttl)
    if seconds > RELATIVE_TTL_LIMIT:
        current = now()
        if current + RELATIVE_TTL_LIMIT >= LATEST_EXPTIME:
            return RELATIVE_TTL_LIMIT
        return min(math.ceil(current + ttl), LATEST_EXPTIME)
    return seconds or 1


def encode_value(value: bytes) -> bytes:
    """The bytes stored for ``value``: counter-range integers biased by ``2**62``, values
    that would read as biased (or start with ``~``) escaped with ``~``, everything else as
    is."""
    if value:
        first = value[0]
        if first in _INT_START:
            number = parse_int(value)
            if number is not None and -BIAS <= number < BIAS and value == b"%d" % number:
                return b"%d" % (number + BIAS)
            return _RAW_MARK + value
        if first == 0x7E:  # "~"
            return _RAW_MARK + value
    return value


def decode_value(stored: bytes) -> bytes:
    """Undo :func:`encode_value` (memcached may pad an ``incr`` result with spaces). Only
    the unsigned decimals memcached and :func:`encode_value` write are unbiased; other
    bytes (``b"4_2"`` from another writer) pass as they are, for the codec to refuse."""
    if stored:
        first = stored[0]
        if first in _DIGITS:
            digits = stored.rstrip(b" ")
            number = parse_int(digits)
            if number is not None and number < 2 * BIAS:
                return b"%d" % (number - BIAS)
            return stored  # not written by us: let the codec report it
        if first == 0x7E:
            return stored[1:]
    return stored
