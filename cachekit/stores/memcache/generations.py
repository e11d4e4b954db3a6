"""Scope generations: how the memcache store clears a scope without ``flush_all``.

Every stored key embeds a *generation tag*: a hash of four generation values, those of the
key's plugin, its tenant, its (plugin, tenant) and its (plugin, tenant, namespace). A clear
writes a fresh random value into the one generation its selector names, which changes the
tag of every key below it, so the old entries can no longer be addressed and memcached
evicts them in time. A generation is a random 72-bit value, never a counter: if memcached
evicts a generation key, the recreated one empties its scope instead of reviving entries
an earlier clear removed.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence
from typing import Final

from cachekit.keys import SEPARATOR, KeySelector
from cachekit.stores.memcache.keys import hashed, plain

__all__ = [
    "generation_key",
    "new_generation",
    "scope_generation_keys",
    "selector_generation_key",
    "tag",
]

_GENERATION_PREFIX: Final = "%g:"


def generation_key(kind: str, *segments: str) -> str:
    """The memcached key holding one generation (``kind``: ``p``, ``t``, ``pt``, ``ptn``)."""
    key = _GENERATION_PREFIX + kind + SEPARATOR + SEPARATOR.join(segments)
    return key if plain(key) else hashed(key, key)


def scope_generation_keys(scope: str) -> list[str]:
    """The four generations that tag a scope's keys (``scope`` is ``plugin:tenant:ns:``)."""
    plugin, tenant, namespace = scope[:-1].split(SEPARATOR)
    return [
        generation_key("p", plugin),
        generation_key("t", tenant),
        generation_key("pt", plugin, tenant),
        generation_key("ptn", plugin, tenant, namespace),
    ]


def selector_generation_key(selector: KeySelector) -> str:
    """The one generation a clear of ``selector`` replaces.

    :raises NotImplementedError: a selector other than plugin, tenant, (plugin, tenant) or
        (plugin, tenant, namespace).
    """
    plugin, tenant, namespace = selector.plugin, selector.tenant, selector.namespace
    if plugin is not None and tenant is not None:
        if namespace is None:
            return generation_key("pt", plugin, tenant)
        return generation_key("ptn", plugin, tenant, namespace)
    if namespace is None and plugin is not None:
        return generation_key("p", plugin)
    if namespace is None and tenant is not None:
        return generation_key("t", tenant)
    raise NotImplementedError(
        f"the memcache store clears a plugin, a tenant, a (plugin, tenant) scope or one "
        f"namespace of a scope, not {selector!r}"
    )


def new_generation() -> bytes:
    """A fresh, random generation value."""
    return base64.urlsafe_b64encode(os.urandom(9))


def tag(generations: Sequence[bytes]) -> str:
    """The 12-character tag of a scope's four generation values."""
    digest = hashlib.blake2b(b"\x00".join(generations), digest_size=9).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")
