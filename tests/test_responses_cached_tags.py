"""``@cached(tags=...)``: entries keyed by their tags' generations, invalidated by
:func:`cachekit.invalidate_tags` together with the responses of the same tags — on the
memory store, real Redis and real memcached, sync and async."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import pytest
from responses_apps import store_manager

from cachekit import ainvalidate_tags, cached, invalidate_tags
from cachekit.errors import CacheKeyError
from cachekit.host import CacheManager, scope


@pytest.fixture(params=["memory", "redis", "memcache"])
def manager(request: pytest.FixtureRequest) -> Iterator[CacheManager]:
    kind = request.param
    redis_server = request.getfixturevalue("redis_server") if kind == "redis" else None
    memcached = request.getfixturevalue("memcached_server") if kind == "memcache" else None
    manager = store_manager(kind, redis_server, memcached)
    for tenant in ("acme", "globex"):
        manager.for_plugin("shop", tenant).clear()
    yield manager
    manager.close()


def test_invalidate_tags_recomputes_only_the_tagged_entries(manager: CacheManager) -> None:
    """After invalidate_tags("product:1") the call for product 1 runs again; product 2's
    entry is still served."""
    calls: Counter[int] = Counter()

    @cached(ttl=60, tags=("product:{product_id}", "products"))
    def load(product_id: int) -> dict[str, int]:
        calls[product_id] += 1
        return {"id": product_id, "version": calls[product_id]}

    with scope(plugin="shop", tenant="acme", manager=manager):
        assert load(1) == load(1) == {"id": 1, "version": 1}
        assert load(2)["version"] == 1
        invalidate_tags("product:1")
        assert load(1) == {"id": 1, "version": 2}
        assert load(2)["version"] == 1
        invalidate_tags("products")
        assert (load(1)["version"], load(2)["version"]) == (3, 2)
    assert calls == {1: 3, 2: 2}


def test_async_tagged_functions_and_ainvalidate(manager: CacheManager) -> None:
    """The async twin: an async def with tags, invalidated by ainvalidate_tags."""
    calls: Counter[str] = Counter()

    @cached(ttl=60, tags=lambda user_id: [f"user:{user_id}"])
    async def profile(user_id: str) -> str:
        calls[user_id] += 1
        return f"{user_id} v{calls[user_id]}"

    async def main() -> list[str]:
        with scope(plugin="shop", tenant="acme", manager=manager):
            seen = [await profile("ann"), await profile("ann")]
            await ainvalidate_tags("user:ann")
            seen.append(await profile("ann"))
        await manager.aclose()  # the async connections belong to this loop
        return seen

    assert asyncio.run(main()) == ["ann v1", "ann v1", "ann v2"]


def test_tag_invalidation_is_per_scope(manager: CacheManager) -> None:
    """Invalidating a tag for tenant acme leaves tenant globex's entry served."""
    calls: Counter[str] = Counter()

    @cached(ttl=60, tags=("catalog",))
    def catalog() -> int:
        calls["any"] += 1
        return calls["any"]

    with scope(plugin="shop", tenant="acme", manager=manager):
        catalog()
    with scope(plugin="shop", tenant="globex", manager=manager):
        catalog()
    with scope(plugin="shop", tenant="acme", manager=manager):
        invalidate_tags("catalog")
        assert catalog() == 3
    with scope(plugin="shop", tenant="globex", manager=manager):
        assert catalog() == 2


def test_tags_on_methods_or_unknown_fields_are_refused() -> None:
    """tags= on a method is a TypeError, a template naming no parameter a CacheKeyError,
    both when applied; the tagged function has no invalidate() helper."""

    with pytest.raises(TypeError, match="plain functions"):

        class Service:
            @cached(ttl=60, tags=("x",))
            def method(self) -> int:
                return 1

    with pytest.raises(CacheKeyError, match="user_id"):

        @cached(ttl=60, tags=("user:{user_id}",))
        def other(product_id: int) -> int:
            return product_id

    @cached(ttl=60, tags=("x",))
    def plain() -> int:
        return 1

    assert not hasattr(plain, "invalidate")
    assert plain.uncached() == 1  # type: ignore[attr-defined]
