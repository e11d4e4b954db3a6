"""Scope generations: how a store without a keyspace scan clears a scope.

Every stored key embeds a *generation tag*: a hash of four generation values, those of the
key's plugin, its tenant, its (plugin, tenant) and its (plugin, tenant, namespace). A clear
writes a fresh random value into the one generation its selector names, which changes the
tag of every key below it, so the old entries can no longer be addressed and the server
drops them in time (eviction, or their TTL). A generation is a random 72-bit value, never a
counter: if the server loses a generation key, the recreated one empties its scope instead
of reviving entries an earlier clear removed.

The memcache and Infinispan stores share this module; each shapes the generation keys for
its server (memcached hashes keys it would refuse) and caches the tags in :class:`Heads`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Final

from cachekit.keys import SEPARATOR, KeySelector

__all__ = [
    "Heads",
    "generation_key",
    "new_generation",
    "scope_generation_keys",
    "selector_generation_key",
    "tag",
]

_GENERATION_PREFIX: Final = "%g:"
_MAX_CACHED_SCOPES: Final = 50_000  # the cache is dropped when it grows past this


def _same(key: str) -> str:
    return key


def generation_key(kind: str, *segments: str, shape: Callable[[str], str] = _same) -> str:
    """The key holding one generation (``kind``: ``p``, ``t``, ``pt``, ``ptn``), passed
    through ``shape`` (a store's rule for keys its server would refuse)."""
    return shape(_GENERATION_PREFIX + kind + SEPARATOR + SEPARATOR.join(segments))


def scope_generation_keys(scope: str, shape: Callable[[str], str] = _same) -> list[str]:
    """The four generations that tag a scope's keys (``scope`` is ``plugin:tenant:ns:``)."""
    plugin, tenant, namespace = scope[:-1].split(SEPARATOR)
    return [
        generation_key("p", plugin, shape=shape),
        generation_key("t", tenant, shape=shape),
        generation_key("pt", plugin, tenant, shape=shape),
        generation_key("ptn", plugin, tenant, namespace, shape=shape),
    ]


def selector_generation_key(
    selector: KeySelector, store: str, shape: Callable[[str], str] = _same
) -> str:
    """The one generation a clear of ``selector`` replaces.

    :raises NotImplementedError: a selector other than plugin, tenant, (plugin, tenant) or
        (plugin, tenant, namespace) (naming ``store``).
    """
    plugin, tenant, namespace = selector.plugin, selector.tenant, selector.namespace
    if plugin is not None and tenant is not None:
        if namespace is None:
            return generation_key("pt", plugin, tenant, shape=shape)
        return generation_key("ptn", plugin, tenant, namespace, shape=shape)
    if namespace is None and plugin is not None:
        return generation_key("p", plugin, shape=shape)
    if namespace is None and tenant is not None:
        return generation_key("t", tenant, shape=shape)
    raise NotImplementedError(
        f"the {store} store clears a plugin, a tenant, a (plugin, tenant) scope or one "
        f"namespace of a scope, not {selector!r}"
    )


def new_generation() -> bytes:
    """A fresh, random generation value."""
    return base64.urlsafe_b64encode(os.urandom(9))


def tag(generations: Sequence[bytes]) -> str:
    """The 12-character tag of a scope's four generation values."""
    digest = hashlib.blake2b(b"\x00".join(generations), digest_size=9).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


class Heads:
    """A process's cache of scope heads (``scope + tag + ":"``), each trusted for
    ``refresh`` seconds: the most a clear made by another process takes to show here.

    ``epoch`` counts this process's clears: a head worked out from generations read before
    a clear is not kept (:meth:`keep` compares the epoch the read started in).
    """

    __slots__ = ("_heads", "clock", "epoch", "refresh")

    def __init__(self, refresh: float, clock: Callable[[], float]) -> None:
        self.refresh = refresh
        self.clock = clock
        self.epoch = 0
        self._heads: dict[str, tuple[str, float]] = {}

    def __repr__(self) -> str:
        return f"Heads(scopes={len(self._heads)}, refresh={self.refresh}, epoch={self.epoch})"

    def lookup(self, scope: str) -> tuple[str, float] | None:
        """The cached head of ``scope`` and until when it is trusted, or ``None`` when
        absent or stale."""
        entry = self._heads.get(scope)
        if entry is None or entry[1] <= self.clock():
            return None
        return entry

    def keep(self, scope: str, generations: Sequence[bytes], epoch: int) -> tuple[str, float]:
        """The head of ``scope`` for its generation values and until when it is trusted;
        cached unless a clear happened since ``epoch``."""
        entry = (scope + tag(generations) + SEPARATOR, self.clock() + self.refresh)
        if epoch == self.epoch:
            if len(self._heads) >= _MAX_CACHED_SCOPES:
                self._heads.clear()
            self._heads[scope] = entry
        return entry

    def cleared(self, selector: KeySelector) -> None:
        """Forget the heads of the scopes a clear of ``selector`` changed (call it after
        writing the new generation: a read that saw the old value is then not kept)."""
        self.epoch += 1
        heads = self._heads
        for scope in list(heads):
            if selector.matches(scope):
                heads.pop(scope, None)
