"""Invalidation of cached responses by tag and by path, in the current scope.

Every tag has a generation counter in the scope's response namespace; a response records
the generations of its tags when it is stored and is served only while they are unchanged.
Invalidating a tag is one atomic increment on any store (Redis, Valkey, memcached and the
memory store alike): O(1) per tag, whatever the number of responses it tagged, and no scan
of the keyspace. The responses themselves are not deleted: they are never served again and
expire with their TTL. Every response carries the tag ``path:<path>`` too, which
:func:`invalidate_path` bumps (all its queries and variants).

Unlike :meth:`Cache.delete <cachekit.Cache.delete>`, which reports what it removed, these
report nothing: "invalidated" means no request of this scope is served a response stored
before the call. A store failure raises :class:`~cachekit.errors.StoreError`: an
invalidation that did not happen must not look as if it did.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from cachekit.cache import Cache
from cachekit.context import current_cache
from cachekit.errors import CacheKeyError
from cachekit.responses.engine import TAG_TTL
from cachekit.responses.keys import NAMESPACE, path_tag, tag_key
from cachekit.steps import Step, Steps, arun, run, twin

__all__ = ["ainvalidate_path", "ainvalidate_tags", "invalidate_path", "invalidate_tags"]


def _checked(tags: Iterable[str]) -> list[str]:
    found = list(tags)
    for tag in found:
        if not isinstance(tag, str) or not tag:
            raise CacheKeyError(f"a tag is a non-empty str, got {tag!r}")
    return found


def _bump(cache: Cache, tags: list[str]) -> Steps[Step, None]:
    """A new generation for each tag: created at a random start when missing (so a
    counter that expired never comes back at a value old responses recorded), then
    incremented."""
    for tag in tags:
        key = tag_key(tag)
        yield twin(cache, "add", key, secrets.randbits(48), TAG_TTL)
        yield twin(cache, "incr", key, 1)


def invalidate_tags(*tags: str) -> None:
    """Invalidate every response (and ``@cached`` entry) of the current scope stored
    under any of ``tags``.

    :raises CacheKeyError: a tag is not a non-empty ``str``.
    :raises NoScopeError: no scope is bound.
    :raises StoreError: the store failed: some tags may not be invalidated.
    """
    checked = _checked(tags)
    run(_bump(current_cache(NAMESPACE), checked))


async def ainvalidate_tags(*tags: str) -> None:
    """Async :func:`invalidate_tags`."""
    checked = _checked(tags)
    await arun(_bump(current_cache(NAMESPACE), checked))


def invalidate_path(path: str) -> None:
    """Invalidate every cached response of ``path`` (all its queries and variants) in the
    current scope.

    :raises CacheKeyError: ``path`` does not start with ``/``.
    :raises NoScopeError: no scope is bound.
    :raises StoreError: the store failed.
    """
    invalidate_tags(_path(path))


async def ainvalidate_path(path: str) -> None:
    """Async :func:`invalidate_path`."""
    await ainvalidate_tags(_path(path))


def _path(path: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise CacheKeyError(f"a path starts with '/', got {path!r}")
    return path_tag(path)
