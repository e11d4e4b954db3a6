"""Short locks on Infinispan's strong counters: how the store makes ``incr``, ``add``,
``expire``/``touch``, ``delete_if_equals`` and rate limits atomic across processes.

Why not ETags or ``POST``
    The REST API has no atomic read-modify-write of an entry. ``PUT`` does not enforce
    ``If-Match`` (the server checks preconditions on reads and deletes only), so an ETag
    loop on ``PUT`` loses updates; and ``POST`` (create only if absent) looks the key up and
    then writes in a second step, so two racing ``POST``s can both succeed: neither is a
    lock. The counters API can't hold the values themselves either: counters have no TTL,
    are not entries (``set`` then ``incr``, ``get`` of a counter, a scoped ``clear``) and
    would pile up with every key ever counted. Its *strong* counters, though, have an
    atomic, cluster-wide ``compareAndSwap``: that is the lock.

The scheme
    A fixed set of ``stripes`` strong counters per cache (``cachekit-lock-{cache}-{i}``,
    volatile, defined on first use), each 0 when free. A key hashes to one stripe. To lock
    it a caller swaps 0 for a random token; on success it holds the stripe, reads and writes
    the entry (plain ``GET`` and ``PUT``), then swaps its token back for 0. Other callers
    retry after a short random pause that doubles with each try (up to 20 ms). A holder
    that died keeps its stripe for at most ``lease`` seconds: a waiter that sees the same
    token for that long (on its own monotonic clock: no clocks are compared across hosts)
    swaps it for its own. Within one process, callers of a stripe first queue on a local
    lock (a thread lock, or an asyncio lock per event loop), so only one of them at a time
    asks the server: contention costs round trips only between processes. The lease is
    several times a request's worst case, so a live holder is not overtaken; a caller that
    waits more than two leases gets :class:`~cachekit.errors.StoreTimeout`.

What it costs
    Two extra round trips per locked operation (acquire, release), more under contention:
    the price of exactness without server-side scripts. Plain ``get``/``set``/``delete``
    never lock; a ``set`` racing an ``incr`` of the same key is ordered by the server, as two
    ``set``s are, but an ``incr`` may then overwrite that ``set``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
from collections.abc import Callable
from typing import Final, TypeVar

from cachekit.errors import StoreError, StoreTimeout, StoreUnavailable
from cachekit.steps import Steps
from cachekit.stores.infinispan.client import STORE_NAME, Step
from cachekit.stores.infinispan.rest import Free, Hold, Pause, counter_define, counter_swap

__all__ = ["Locks"]

T = TypeVar("T")

_FIRST_PAUSE: Final = 0.0005
_MAX_PAUSE: Final = 0.02


class Locks:
    """The lock stripes of one cache.

    :param cache: the cache segment (percent-encoded name) the stripes are named after.
    :param stripes: how many counters; keys hashing to the same one share a lock.
    :param lease: seconds after which a token that has not changed may be taken over.
    :param clock: monotonic clock (inject one in tests).
    """

    def __init__(self, cache: str, stripes: int, lease: float, clock: Callable[[], float]) -> None:
        if stripes < 1 or lease <= 0:
            raise ValueError(f"stripes and lease must be positive, got {stripes}, {lease}")
        self.names = tuple(f"cachekit-lock-{cache}-{i}" for i in range(stripes))
        self.lease = lease
        self.clock = clock

    def __repr__(self) -> str:
        return f"Locks(stripes={len(self.names)}, lease={self.lease})"

    def stripe(self, key: str) -> str:
        """The counter guarding ``key``."""
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=4).digest()
        return self.names[int.from_bytes(digest, "big") % len(self.names)]

    def locked(self, key: str, body: Steps[Step, T]) -> Steps[Step, T]:
        """Run the steps of ``body`` holding ``key``'s stripe."""
        name = self.stripe(key)
        yield Hold(name, 2 * self.lease)  # callers of this process queue here, not on the server
        try:
            token = yield from self._acquire(name, key)
            try:
                return (yield from body)
            finally:
                with contextlib.suppress(StoreError):  # if the release fails, the lease frees it
                    yield counter_swap(name, token, 0)
        finally:
            yield Free(name)

    def _swap(self, name: str, expect: int, update: int) -> Steps[Step, int]:
        """``compareAndSwap``, defining the counter first when the server has none (the
        first use of a stripe, or a server restarted since)."""
        reply = yield counter_swap(name, expect, update)
        if reply.status == 400:
            defined = yield counter_define(name)
            if defined.status >= 300:
                raise StoreUnavailable(
                    f"infinispan refused to define lock counter {name!r} (HTTP "
                    f"{defined.status}): the store's locks need the counters API",
                    store=STORE_NAME,
                )
            reply = yield counter_swap(name, expect, update)
        if reply.status != 200:
            raise StoreUnavailable(
                f"infinispan answered HTTP {reply.status} to a swap of lock counter {name!r}: "
                f"{reply.body[:200]!r}",
                store=STORE_NAME,
            )
        return int(json.loads(reply.body))

    def _acquire(self, name: str, key: str) -> Steps[Step, int]:
        token = random.getrandbits(62) + 1
        clock = self.clock
        start = clock()
        holder, since = 0, start
        pause = _FIRST_PAUSE
        while True:
            previous = yield from self._swap(name, 0, token)
            if previous == 0:
                return token
            now = clock()
            if previous != holder:
                holder, since = previous, now
            elif (
                now - since >= self.lease and (yield from self._swap(name, holder, token)) == holder
            ):
                return token  # the holder was gone: its stripe is taken over
            if now - start > 2 * self.lease:
                raise StoreTimeout(
                    f"infinispan: {key!r} stayed locked for {now - start:.1f}s "
                    f"(lock counter {name!r})",
                    store=STORE_NAME,
                )
            yield Pause(random.uniform(0, pause))
            pause = min(pause * 2, _MAX_PAUSE)
