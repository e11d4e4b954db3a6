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

import functools
import inspect
import secrets
import string
from collections.abc import Callable, Collection, Iterable, Mapping
from contextvars import ContextVar
from typing import Any

from cachekit.cache import Cache
from cachekit.context import caching_disabled, current_cache
from cachekit.errors import CacheKeyError, StoreError
from cachekit.responses.keys import NAMESPACE, TAG_TTL, path_tag, tag_key
from cachekit.steps import Step, Steps, arun, run, twin

__all__ = [
    "ainvalidate_path",
    "ainvalidate_tags",
    "bump",
    "created",
    "invalidate_path",
    "invalidate_tags",
    "keyed_by_generations",
    "tagged",
]


def _checked(tags: Iterable[str]) -> list[str]:
    found = list(tags)
    for tag in found:
        if not isinstance(tag, str) or not tag:
            raise CacheKeyError(f"a tag is a non-empty str, got {tag!r}")
    return found


def created(cache: Cache, keys: list[str], found: dict[str, int]) -> Steps[Step, dict[str, int]]:
    """``found`` (generations read) plus those of the ``keys`` it lacks, whose counters are
    created first at a random start. Entries are stored only under counters that exist,
    so a counter that expires or is evicted invalidates them, and one created again
    never starts at a generation they recorded."""
    missing = [key for key in keys if key not in found]
    if not missing:
        return found
    for key in missing:
        yield twin(cache, "add", key, secrets.randbits(48), TAG_TTL)
    return {**found, **(yield twin(cache, "get_many", missing))}


def bump(cache: Cache, tags: list[str]) -> Steps[Step, None]:
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
    run(bump(current_cache(NAMESPACE), checked))


async def ainvalidate_tags(*tags: str) -> None:
    """Async :func:`invalidate_tags`."""
    checked = _checked(tags)
    await arun(bump(current_cache(NAMESPACE), checked))


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


# --- @cached(tags=...): the generations of a call's tags are part of its key --------------

_generations: ContextVar[str | None] = ContextVar("cachekit_tag_generations", default=None)


def _generations_of(cache: Cache, keys: list[str]) -> Steps[Step, str]:
    """The key suffix naming the current generation of each tag (see :func:`created`)."""
    found = yield from created(cache, keys, (yield twin(cache, "get_many", keys)))
    return "|g" + ".".join(str(found.get(key, "-")) for key in keys)


def keyed_by_generations(keys: Callable[..., str]) -> Callable[..., str]:
    """A ``@cached`` key maker whose keys end with the generations of the call's tags (set
    by :func:`tagged` around the call)."""

    def tagged_key(bound: bool, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        suffix = _generations.get()
        if suffix is None:
            raise CacheKeyError(
                "a @cached function with tags= has no invalidate()/refresh() helpers: "
                "invalidate its entries with cachekit.invalidate_tags(...)"
            )
        return keys(bound, args, kwargs) + suffix

    return tagged_key


def tagged(
    fn: Callable[..., Any],
    tags: Collection[str] | Callable[..., Iterable[str]],
    wrapper: Callable[..., Any],
    failed: Callable[[Cache, StoreError], object],
) -> Callable[..., Any]:
    """``@cached(tags=...)``: before each call of the ``@cached`` ``wrapper``, read the
    generations of the call's tags (one ``get_many`` in the scope's tag namespace) and key
    the entry by them, so :func:`invalidate_tags` orphans it in O(1). A store failure
    calls ``fn`` directly (``failed`` logs it once per outage, or raises with
    ``failOpen: false``).

    :raises TypeError: ``tags`` is neither a callable nor strings.
    :raises CacheKeyError: a template names no parameter of ``fn``.
    """
    signature = inspect.signature(fn)
    tags_of: Callable[..., Iterable[str]]
    if callable(tags):
        tags_of = tags
    else:
        templates = _checked([tags] if isinstance(tags, str) else tags)
        fields = {
            field.split(".")[0].split("[")[0]
            for template in templates
            for _, field, _, _ in string.Formatter().parse(template)
            if field
        }
        unknown = fields - set(signature.parameters)
        if unknown:
            raise CacheKeyError(
                f"tags= of {fn.__qualname__} name no parameter: {sorted(unknown)} (fields "
                "name the function's parameters, as in 'user:{user_id}')"
            )

        def formatted(*args: Any, **kwargs: Any) -> list[str]:
            if not fields:
                return templates
            call = signature.bind(*args, **kwargs)
            call.apply_defaults()
            return [template.format_map(call.arguments) for template in templates]

        tags_of = formatted

    def keys_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
        return sorted({tag_key(tag) for tag in _checked(tags_of(*args, **kwargs))})

    async def acall(*args: Any, **kwargs: Any) -> Any:
        if caching_disabled.get():
            return await fn(*args, **kwargs)
        cache = current_cache(NAMESPACE)
        try:
            suffix = await arun(_generations_of(cache, keys_of(args, kwargs)))
        except StoreError as exc:
            failed(cache, exc)
            return await fn(*args, **kwargs)
        token = _generations.set(suffix)
        try:
            return await wrapper(*args, **kwargs)
        finally:
            _generations.reset(token)

    def call(*args: Any, **kwargs: Any) -> Any:
        if caching_disabled.get():
            return fn(*args, **kwargs)
        cache = current_cache(NAMESPACE)
        try:
            suffix = run(_generations_of(cache, keys_of(args, kwargs)))
        except StoreError as exc:
            failed(cache, exc)
            return fn(*args, **kwargs)
        token = _generations.set(suffix)
        try:
            return wrapper(*args, **kwargs)
        finally:
            _generations.reset(token)

    chosen: Any = acall if inspect.iscoroutinefunction(fn) else call
    functools.update_wrapper(chosen, fn)
    chosen.uncached = fn
    return chosen  # type: ignore[no-any-return]
