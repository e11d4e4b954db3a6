"""Scope generations on memcached: the shared scheme of :mod:`cachekit.stores.generations`,
with generation keys memcached would refuse hashed (:mod:`~cachekit.stores.memcache.keys`).
"""

from __future__ import annotations

from cachekit.keys import KeySelector
from cachekit.stores import generations
from cachekit.stores.generations import Heads, new_generation, tag
from cachekit.stores.memcache.keys import hashed, plain

__all__ = [
    "Heads",
    "generation_key",
    "new_generation",
    "scope_generation_keys",
    "selector_generation_key",
    "tag",
]


def _shape(key: str) -> str:
    return key if plain(key) else hashed(key, key)


def generation_key(kind: str, *segments: str) -> str:
    """The memcached key holding one generation (``kind``: ``p``, ``t``, ``pt``, ``ptn``)."""
    return generations.generation_key(kind, *segments, shape=_shape)


def scope_generation_keys(scope: str) -> list[str]:
    """The four generations that tag a scope's keys (``scope`` is ``plugin:tenant:ns:``)."""
    return generations.scope_generation_keys(scope, _shape)


def selector_generation_key(selector: KeySelector) -> str:
    """The one generation a clear of ``selector`` replaces.

    :raises NotImplementedError: a selector other than plugin, tenant, (plugin, tenant) or
        (plugin, tenant, namespace).
    """
    return generations.selector_generation_key(selector, "memcache", _shape)
