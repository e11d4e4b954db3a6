"""The store's Lua scripts: the operations that must be atomic on the server.

Each is called by SHA (``EVALSHA``) and sent whole (``EVAL``, which also caches it) only
after a ``NOSCRIPT`` answer — after a server restart or a ``SCRIPT FLUSH``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

__all__ = ["DELETE_IF_EQUALS", "GCRA", "INCR_WITH_TTL", "PERSIST", "Script"]


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script and its SHA1 (what ``EVALSHA`` names it by)."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        object.__setattr__(self, "sha", digest)


INCR_WITH_TTL: Final = Script(
    "local created = redis.call('EXISTS', KEYS[1]) == 0\n"
    "local value = redis.call('INCRBY', KEYS[1], ARGV[1])\n"
    "if created then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
    "return value\n"
)
"""``INCRBY``, then ``PEXPIRE`` only when this call created the key: an existing key keeps
its TTL (or its lack of one). "The result equals delta" would be the wrong test: a counter
can come back to ``delta``."""

PERSIST: Final = Script(
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "redis.call('PERSIST', KEYS[1])\n"
    "return 1\n"
)
"""Remove the TTL of an existing key and say it exists (``PERSIST`` alone answers 0 for an
existing key that has no TTL)."""

GCRA: Final = Script(
    "local now, interval = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local period, cost = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1]) or '')\n"
    "local current = now\n"
    "if tat and tat > now then current = tat end\n"
    "local new_tat = current + interval * cost\n"
    "if new_tat - period > now then return {0, current} end\n"
    "local ms = math.max(1, math.ceil((new_tat - now) / 1000))\n"
    "redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', ms))\n"
    "return {1, new_tat}\n"
)
"""One GCRA step (:func:`cachekit.gcra.step`, in integer microseconds) on the TAT stored at
the key; the new TAT is stored (expiring when it is reached) only when the hit is allowed.
Lua numbers are doubles: exact for integers below 2**53 (microseconds until the year 2255)."""

DELETE_IF_EQUALS: Final = Script(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n"
)
"""Delete the key only if it holds ``ARGV[1]``: a lock's owner releases its own lock and
never one that expired and was taken by another (one key: fine on a cluster)."""
