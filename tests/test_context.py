"""The request scope: Scope, scope(), current_scope(), current_cache(), default manager."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator

import pytest

import cachekit.host
from cachekit import CacheKeyError, NoScopeError, Scope, current_cache, current_scope
from cachekit.context import active_manager
from cachekit.host import CacheManager, scope, set_default_manager

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _fresh_default_manager() -> Iterator[None]:
    set_default_manager(None)
    yield
    set_default_manager(None)


@pytest.fixture
def manager() -> CacheManager:
    return CacheManager()


def test_outside_any_scope_current_cache_raises_with_how_to_bind() -> None:
    """Outside a scope, current_cache() and current_scope() raise NoScopeError naming both
    ways to bind one."""
    with pytest.raises(NoScopeError) as info:
        current_cache()
    message = str(info.value)
    assert "CacheMiddleware" in message
    assert "cachekit.host.scope(plugin=" in message
    with pytest.raises(NoScopeError):
        current_scope()
    assert isinstance(info.value, LookupError)


def test_with_scope_binds_plugin_and_tenant(manager: CacheManager) -> None:
    """Inside `with scope(...)` the scope and its cache are visible; the cache writes to
    that (plugin, tenant) only."""
    with scope(plugin="catalog", tenant="acme", manager=manager) as cache:
        assert current_scope() == Scope("catalog", "acme")
        assert current_cache() is cache
        cache.set("k", "acme's")
    assert manager.for_plugin("catalog", "acme").get("k") == "acme's"
    assert manager.for_plugin("catalog", "globex").get("k") is None
    assert manager.for_plugin("reviews", "acme").get("k") is None
    with pytest.raises(NoScopeError):
        current_scope()


def test_current_cache_is_the_same_object_on_every_call(manager: CacheManager) -> None:
    """current_cache() builds nothing per call: the bound scope's cache (and each
    namespace view) is one object."""
    with scope(plugin="catalog", manager=manager):
        assert current_cache() is current_cache()
        users = current_cache("users")
        assert users is current_cache("users")
        assert users.namespace_name == "users"
        assert users is not current_cache("orders")


def test_namespaces_of_one_scope_are_separate(manager: CacheManager) -> None:
    """current_cache(namespace) is a separate keyspace inside the same scope."""
    with scope(plugin="catalog", tenant="acme", manager=manager):
        current_cache("users").set("k", 1)
        assert current_cache().get("k") is None
        assert current_cache("orders").get("k") is None
        assert current_cache("users").get("k") == 1


def test_platform_scope_is_separate_from_every_tenant(manager: CacheManager) -> None:
    """tenant=None binds the platform scope, distinct from any tenant's data."""
    with scope(plugin="catalog", manager=manager) as cache:
        assert current_scope() == Scope("catalog", None)
        cache.set("k", "platform")
    with scope(plugin="catalog", tenant="acme", manager=manager) as cache:
        assert cache.get("k") is None


def test_nested_scopes_restore_the_outer_one(manager: CacheManager) -> None:
    """Leaving an inner scope restores the enclosing scope."""
    with scope(plugin="a", tenant="t1", manager=manager):
        with scope(plugin="b", tenant="t2", manager=manager):
            assert current_scope() == Scope("b", "t2")
        assert current_scope() == Scope("a", "t1")


def test_scope_is_reset_when_the_block_raises(manager: CacheManager) -> None:
    """An exception inside the block still unbinds the scope."""
    with pytest.raises(RuntimeError), scope(plugin="a", manager=manager):
        raise RuntimeError("boom")
    with pytest.raises(NoScopeError):
        current_scope()


def test_one_scope_object_can_be_reentered(manager: CacheManager) -> None:
    """The same scope(...) object nested in itself unbinds level by level."""
    outer = scope(plugin="a", manager=manager)
    with outer, scope(plugin="b", manager=manager), outer:
        assert current_scope().plugin == "a"
    with pytest.raises(NoScopeError):
        current_scope()


async def test_async_with_binds_across_awaits(manager: CacheManager) -> None:
    """`async with scope(...)` keeps the scope across awaits and unbinds on exit."""
    async with scope(plugin="catalog", tenant="acme", manager=manager) as cache:
        await asyncio.sleep(0)
        assert current_scope() == Scope("catalog", "acme")
        await cache.aset("k", 1)
    assert await manager.for_plugin("catalog", "acme").aget("k") == 1
    with pytest.raises(NoScopeError):
        current_scope()


def test_decorator_on_def_binds_each_call(manager: CacheManager) -> None:
    """@scope(...) on a def binds while the function runs, and not after."""

    @scope(plugin="jobs", tenant="acme", manager=manager)
    def job(x: int) -> tuple[Scope, int]:
        return current_scope(), x

    assert job(3) == (Scope("jobs", "acme"), 3)
    assert job.__name__ == "job"
    with pytest.raises(NoScopeError):
        current_scope()


async def test_decorator_on_async_def_binds_while_the_coroutine_runs(
    manager: CacheManager,
) -> None:
    """@scope(...) on an async def binds during the coroutine's body, after awaits too
    (a contextmanager-based decorator would already have reset it)."""

    @scope(plugin="jobs", tenant="acme", manager=manager)
    async def job() -> Scope:
        await asyncio.sleep(0)
        return current_scope()

    coroutine = job()
    with pytest.raises(NoScopeError):
        current_scope()  # calling it does not bind anything yet
    assert await coroutine == Scope("jobs", "acme")
    with pytest.raises(NoScopeError):
        current_scope()


def test_decorator_unbinds_when_the_function_raises(manager: CacheManager) -> None:
    """A decorated function that raises leaves no scope behind."""

    @scope(plugin="jobs", manager=manager)
    def job() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        job()
    with pytest.raises(NoScopeError):
        current_scope()


async def test_one_decorated_coroutine_runs_concurrently_in_many_tasks(
    manager: CacheManager,
) -> None:
    """Concurrent calls of decorated coroutines each see their own scope, whatever the
    interleaving."""

    def make(tenant: str) -> object:
        @scope(plugin="jobs", tenant=tenant, manager=manager)
        async def job() -> list[str | None]:
            seen = []
            for _ in range(5):
                await asyncio.sleep(0)
                seen.append(current_scope().tenant)
            return seen

        return job

    jobs = {f"t{i}": make(f"t{i}") for i in range(50)}
    results = await asyncio.gather(*(job() for job in jobs.values()))  # type: ignore[operator]
    for tenant, seen in zip(jobs, results, strict=True):
        assert seen == [tenant] * 5


def test_decorator_rejects_generator_functions(manager: CacheManager) -> None:
    """@scope(...) on a generator function raises TypeError instead of binding wrongly."""

    def gen() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        scope(plugin="a", manager=manager)(gen)


def test_invalid_ids_are_rejected_at_once() -> None:
    """Empty or non-str ids raise CacheKeyError when scope() is called."""
    with pytest.raises(CacheKeyError):
        scope(plugin="")
    with pytest.raises(CacheKeyError):
        scope(plugin="a", tenant="")
    with pytest.raises(CacheKeyError):
        scope(plugin=42)  # type: ignore[arg-type]


def test_default_manager_is_used_when_none_is_given(manager: CacheManager) -> None:
    """set_default_manager() makes scope() without a manager use that manager."""
    set_default_manager(manager)
    with scope(plugin="catalog", tenant="acme") as cache:
        cache.set("k", 1)
        assert active_manager() is manager
    assert manager.for_plugin("catalog", "acme").get("k") == 1


def test_without_any_manager_an_in_memory_one_is_created_once() -> None:
    """With no manager configured anywhere, one in-memory manager is created and reused."""
    with scope(plugin="catalog") as cache:
        cache.set("k", 1)
        first = active_manager()
    assert first.store.name == "memory"
    with scope(plugin="catalog") as cache:
        assert cache.get("k") == 1
        assert active_manager() is first


def test_default_manager_change_is_seen_by_an_existing_scope_object() -> None:
    """A scope() made before set_default_manager(..., replace=True) uses the new default on
    next entry."""
    job_scope = scope(plugin="catalog")
    first, second = CacheManager(), CacheManager()
    set_default_manager(first)
    with job_scope as cache:
        cache.set("k", "first")
    set_default_manager(second, replace=True)
    with job_scope as cache:
        assert cache.get("k") is None
    assert first.for_plugin("catalog").get("k") == "first"


def test_nested_scope_inherits_the_enclosing_manager(manager: CacheManager) -> None:
    """A scope without a manager inside one with a manager uses the enclosing manager."""
    with scope(plugin="a", manager=manager), scope(plugin="b") as inner:
        inner.set("k", 1)
    assert manager.for_plugin("b").get("k") == 1


async def test_scope_follows_into_worker_threads(manager: CacheManager) -> None:
    """Code run through asyncio.to_thread (as Starlette runs sync endpoints) sees the
    scope; a bare new thread, which copies no context, does not."""
    seen: list[object] = []

    def in_thread() -> None:
        try:
            seen.append(current_scope())
        except NoScopeError as exc:
            seen.append(exc)

    async with scope(plugin="a", tenant="t", manager=manager):
        await asyncio.to_thread(in_thread)
        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join()
    assert seen[0] == Scope("a", "t")
    assert isinstance(seen[1], NoScopeError)


def test_scope_does_not_leak_into_a_copied_context_after_exit(manager: CacheManager) -> None:
    """A context copied after the block ended carries no scope."""
    with scope(plugin="a", manager=manager):
        pass
    ctx = contextvars.copy_context()
    with pytest.raises(NoScopeError):
        ctx.run(current_scope)


def test_scope_is_a_frozen_value_with_a_readable_repr() -> None:
    """Scope compares by value, cannot be changed, and reads well in logs."""
    s = Scope("catalog", "acme")
    assert s == Scope(plugin="catalog", tenant="acme")
    assert repr(s) == "Scope(plugin='catalog', tenant='acme')"
    with pytest.raises(AttributeError):
        s.plugin = "x"  # type: ignore[misc]
    assert repr(scope(plugin="catalog", tenant="acme")) == (
        "scope(plugin='catalog', tenant='acme')"
    )


def test_public_names_are_exported() -> None:
    """The plugin's request-scope API is exported by cachekit, the host's by cachekit.host."""
    for name in ("Scope", "carry", "current_cache", "current_scope"):
        assert name in cachekit.__all__
        assert hasattr(cachekit, name)
    for name in ("CacheMiddleware", "WSGICacheMiddleware", "scope", "set_default_manager"):
        assert name in cachekit.host.__all__
        assert name not in cachekit.__all__
