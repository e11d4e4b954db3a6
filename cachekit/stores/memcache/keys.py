"""memcached keys for cachekit's full keys: as they are when memcached takes them, hashed
when not.

memcached takes keys of at most 250 bytes of printable ASCII without spaces. A key over
that, or holding spaces, control characters or unicode, keeps a readable, sanitised and
truncated head and ends in a hash of the whole key (``...%#{blake2b}``), so the scope
stays readable in ``memcached-tool`` dumps and distinct keys stay distinct (``%#`` never
occurs in a key segment: ``%`` there is always followed by two hex digits).
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final

__all__ = ["MAX_KEY_LENGTH", "hashed", "plain", "unscoped_key"]

MAX_KEY_LENGTH: Final = 250

_HASH_MARK: Final = "%#"
_UNSCOPED_PREFIX: Final = "%u:"
_UNREADABLE: Final = re.compile(r"[^\x21-\x7e]")


def plain(key: str) -> bool:
    """Whether memcached takes ``key`` as is: at most 250 bytes of printable, non-space ASCII."""
    return len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable() and " " not in key


def hashed(readable: str, original: str) -> str:
    """A valid memcached key for ``original``: ``readable`` (sanitised, truncated) and a hash."""
    digest = hashlib.blake2b(original.encode("utf-8", "surrogatepass"), digest_size=18).digest()
    suffix = _HASH_MARK + base64.urlsafe_b64encode(digest).decode("ascii")
    return _UNREADABLE.sub("_", readable)[: MAX_KEY_LENGTH - len(suffix)] + suffix


def unscoped_key(key: str) -> str:
    """The memcached key for a key not laid out by :mod:`cachekit.keys` (a custom caller's):
    no generation, a prefix of its own."""
    stored = _UNSCOPED_PREFIX + key
    return stored if plain(stored) else hashed(stored, stored)
