"""Consistent hashing for several memcached servers: a ketama-style ring.

Each server gets 160 points on a 32-bit circle (MD5 of ``address-i``); a key belongs to
the first point at or after the CRC-32 of the key. Adding or removing a server moves about
``1/n`` of the keys. We route ourselves rather than use pymemcache's ``HashClient``: it
hashes in pure Python on every call (rendezvous hashing over every server), it answers a
miss, ``False`` or ``{}`` while a server is in its retry window (a direct call could not
raise), and it moves a dead server's keys to the survivors and back, serving stale values
when the server returns.
"""

from __future__ import annotations

import bisect
import hashlib
import zlib
from collections.abc import Sequence

__all__ = ["Ring"]


class Ring:
    """A ketama-style ring over ``names`` (the servers' addresses, in config order)."""

    __slots__ = ("_owners", "_points")

    def __init__(self, names: Sequence[str], points_per_server: int = 160) -> None:
        points: list[tuple[int, int]] = []
        for index, name in enumerate(names):
            for i in range(points_per_server // 4):
                digest = hashlib.md5(f"{name}-{i}".encode(), usedforsecurity=False).digest()
                for j in range(0, 16, 4):
                    points.append((int.from_bytes(digest[j : j + 4], "little"), index))
        points.sort()
        self._points = [p for p, _ in points]
        self._owners = [owner for _, owner in points]

    def index(self, key: str) -> int:
        """The index (in ``names``) of the server owning ``key``."""
        i = bisect.bisect(self._points, zlib.crc32(key.encode("utf-8", "surrogatepass")))
        return self._owners[i if i < len(self._owners) else 0]
