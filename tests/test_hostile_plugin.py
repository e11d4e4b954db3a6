"""A hostile plugin: everything plugin code can reach from the plugin surface stays in its
own scope, on the memory store, Redis and memcached.

Plugin code here uses only what ``import cachekit`` gives — ``current_cache()``, ``Cache``
and its namespaces, ``@cached``, ``counter()``, ``rate_limit()``, ``@rate_limited``,
``carry()`` — and the objects they return. It tries to read, write and clear other
plugins' and tenants' data with crafted keys, namespaces, ids and key templates (``{``,
``:``, ``*``, ``%``, ``..``, non-ASCII), and walks the returned objects through their
public attributes, ``dir()``, ``__dict__``/``vars()``, ``__wrapped__``, ``__self__``,
``__func__`` and closure cells, looking for a store, a manager, a key space, a binding
or a host function that names a scope. The host checks every other scope through its own
view (``cachekit.host``, raw clients).

The documented limit (README, "What plugins can reach"): Python cannot hide anything in
one process. Underscore-private attributes (``cache._store``, a wrapper's ``_self_policy``),
``__globals__``, ``sys.modules`` and ``cachekit``'s submodules (an import of a host module),
``gc`` and ``contextvars.copy_context()`` all reach the host's objects; a plugin that uses
them on purpose is not stopped, it is made explicit and greppable. This module proves that
nothing *public* leads there. The hard boundary is a plugin in its own process.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import types
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymemcache.client.base import Client as MemcacheClient

import cachekit
from cachekit import context as host_context
from cachekit.host import Cache, CacheManager, ScopeContext, scope
from cachekit.keys import KeySelector, KeySpace, parse_scope
from cachekit.stores.base import BaseStore
from cachekit.stores.memory import MemoryStore

Ids = tuple[str, str | None]
T = TypeVar("T")

# Keys, namespaces and ids a hostile plugin crafts: glob, separator, percent-escapes, path
# tricks, format braces, the layout itself, non-ASCII.
CRAFTED = [
    "*",
    "?",
    "[a-z]*",
    ":",
    "::",
    "%",
    "%3A",
    "%2A",
    "..",
    "../globex",
    "{tenant}",
    "{0}",
    "acme:*",
    "globex",
    "*:*:*:*",
    "\\*",
    "ü:ß",
    "users:1",
]


# --- the host's side: managers on three stores, and its view of every other scope ----------


class Host:
    """A manager on one store, the victims' scopes it wrote, and its snapshot of them."""

    def __init__(self, manager: CacheManager, raw_keys: Callable[[], dict[str, bytes]]) -> None:
        self.manager = manager
        self.raw_keys = raw_keys  # every full key in the store and its bytes ({} if unknown)
        run = uuid.uuid4().hex[:8]
        self.plugin = f"catalog-{run}"
        self.hostile: Ids = (self.plugin, "acme")
        self.victims: list[Ids] = [
            (f"billing-{run}", "acme"),  # another plugin, same tenant
            (self.plugin, "globex"),  # same plugin, another tenant
            (self.plugin, None),  # the platform scope
            (self.plugin, "acme:x"),  # ids that look like the hostile scope's layout
            (self.plugin, "*"),
            (self.plugin, "acm%"),
            (self.plugin, "acme%3A"),
            (f"{self.plugin}:acme", None),
            (f"{self.plugin}:acme", "acme"),
        ]

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run plugin code's coroutine in an event loop of the host's, closing the store's
        async clients of that loop after it."""

        async def main() -> T:
            try:
                return await coroutine
            finally:
                await self.manager.aclose()

        return asyncio.run(main())

    def cache(self, ids: Ids, namespace: str | None = None) -> Cache:
        cache = self.manager.for_plugin(*ids)
        return cache if namespace is None else cache.namespace(namespace)

    def plant(self) -> None:
        """Write what a hostile plugin would like to read, change or clear, in every victim."""
        for ids in self.victims:
            cache = self.cache(ids)
            cache.set("secret", f"secret of {ids}", ttl=0)
            cache.set("users:1", f"user 1 of {ids}", ttl=0)
            cache.namespace("users").set("1", f"cached user of {ids}", ttl=0)
            cache.namespace("counters").incr("hits", 7, ttl=0)
            for crafted in CRAFTED:
                cache.set(crafted, f"{crafted} of {ids}", ttl=0)
                cache.namespace(crafted).set(crafted, f"{crafted} in {crafted} of {ids}", ttl=0)
            with scope(*ids, manager=self.manager):  # an exhausted limit: the host's own call
                limit = cachekit.rate_limit("api", 1, per=600, key="user-1")
                limit.hit()
                assert not limit.hit().allowed

    def victim_keys(self) -> list[tuple[str | None, str]]:
        pairs = [(None, "secret"), (None, "users:1"), ("users", "1"), ("counters", "hits")]
        return pairs + [(None, c) for c in CRAFTED] + [(c, c) for c in CRAFTED]

    def snapshot(self) -> dict[Any, Any]:
        """Every victim's known entries through host caches, its rate limit as a peek, and
        (memory, Redis) every raw key outside the hostile scope."""
        seen: dict[Any, Any] = {}
        for ids in self.victims:
            for namespace, key in self.victim_keys():
                seen[ids, namespace, key] = self.cache(ids, namespace).get(key)
            with scope(*ids, manager=self.manager):
                peek = cachekit.rate_limit("api", 1, per=600, key="user-1").peek()
                seen[ids, "limit"] = peek.allowed
        for full, raw in self.raw_keys().items():
            ids = parse_scope(full, self.manager.store.key_prefix)
            if (ids.plugin, ids.tenant) != self.hostile:
                seen[full] = raw
        return seen

    def own_full_keys(self) -> list[str]:
        """The victims' full keys, as a plugin that guessed the layout would type them."""
        return [
            self.manager.full_key(self.cache(ids, namespace), key)
            for ids in self.victims
            for namespace, key in self.victim_keys()[:4]
        ]


def memory_host() -> Host:
    store = MemoryStore()
    manager = CacheManager(store=store)

    def raw_keys() -> dict[str, bytes]:
        return {key: raw for key in list(store._data) if (raw := store.get(key)) is not None}

    return Host(manager, raw_keys)


def redis_host(url: str) -> Host:
    """A Redis manager on database 9 of the suite's server, emptied first: its raw keys are
    this test's alone."""
    db9 = url.rsplit("/", 1)[0] + "/9"
    raw = redis.Redis.from_url(db9)
    raw.flushdb()
    manager = CacheManager.from_section({"store": "redis", "connection": db9})

    def raw_keys() -> dict[str, bytes]:
        found = {key.decode(): raw.get(key) for key in raw.scan_iter(count=1000)}
        return {key: value for key, value in found.items() if value is not None}

    return Host(manager, raw_keys)


@pytest.fixture(params=["memory", "redis", "memcache"])
def host(request: pytest.FixtureRequest) -> Iterator[Host]:
    if request.param == "memory":
        made = memory_host()
    elif request.param == "redis":
        made = redis_host(request.getfixturevalue("redis_server").url)
    else:
        server = request.getfixturevalue("memcached_server")
        manager = CacheManager.from_section(
            {"store": "memcache", "connection": f"{server.host}:{server.port}"}
        )
        made = Host(manager, dict)  # memcached cannot list keys: the known entries only
    made.plant()
    yield made
    made.manager.close()


# --- the plugin's side: only `cachekit` ---------------------------------------------------


def plugin_reads(guessed: list[str]) -> list[Any]:
    """Everything the plugin can read with crafted keys and namespaces: none of it may be a
    victim's value."""
    cache = cachekit.current_cache()
    found: list[Any] = []
    keys = ["secret", "users:1", "hits", *CRAFTED, *guessed]
    for key in keys:
        found.append(cache.get(key))
        found.append(cachekit.current_cache("users").get(key))
        for namespace in CRAFTED:
            found.append(cachekit.current_cache(namespace).get(key))
            found.append(cache.namespace(namespace).get(key))
    found.extend(cache.get_many(keys).values())
    found.append(cachekit.counter("hits").get())
    return found


def plugin_writes(guessed: list[str]) -> None:
    """Writes, deletes, increments, expiries and clears with crafted keys and namespaces."""
    cache = cachekit.current_cache()
    for key in ["secret", "users:1", *CRAFTED, *guessed]:
        for target in [cache, cache.with_options(default_ttl=5), *map(cache.namespace, CRAFTED)]:
            target.set(key, "hostile")
            target.add(key + "-add", "hostile")
            target.incr(key + "-n", 5)
            target.expire(key, 1)
            target.touch(key, 1)
            target.delete_if_equals(key, "anything")
            target.delete(key)
        cache.set_many({key: "hostile", key + "2": "hostile"})
        cache.delete_many([key, key + "2"])
    for namespace in CRAFTED:
        cachekit.current_cache(namespace).clear()
        cache.namespace(namespace).clear()
    cache.clear()


def plugin_helpers(run: Callable[[Coroutine[Any, Any, Any]], Any]) -> list[Any]:
    """``@cached`` with crafted namespaces and key templates, counters and rate limits with
    crafted names, namespaces and keys; returns what the cached functions answered. ``run``
    runs a coroutine in the host's event loop."""
    answers: list[Any] = []
    for namespace in ["users", *CRAFTED]:

        @cachekit.cached(namespace=namespace, key="{user_id}", ttl=60)
        def load(user_id: str) -> str:
            return "computed"

        @cachekit.cached(namespace=namespace, key=lambda user_id: user_id, ttl=60)
        async def aload(user_id: str) -> str:
            return "computed"

        user_ids = ["1", *CRAFTED]
        for user_id in user_ids:
            answers.append(load(user_id))
            load.invalidate(user_id)  # type: ignore[attr-defined]
            load.refresh(user_id)  # type: ignore[attr-defined]

        async def load_all(aload: Any = aload, user_ids: list[str] = user_ids) -> list[Any]:
            return [await aload(user_id) for user_id in user_ids]

        answers.extend(run(load_all()))

        hits = cachekit.counter("hits", namespace=namespace)
        answers.append(hits.get())
        hits.incr(3)
        hits.expire(1)
        hits.reset()
    for key in ["user-1", *CRAFTED]:
        for algorithm in ("fixed", "sliding", "gcra"):
            limit = cachekit.rate_limit("api", 1, per=600, key=key, algorithm=algorithm)
            limit.hit()
            limit.reset()

    @cachekit.rate_limited("api", 1000, per=600, key=lambda who: who)
    def endpoint(who: str) -> str:
        return who

    for key in ["user-1", *CRAFTED]:
        endpoint(key)
    cachekit.counter("hits").incr()
    return answers


# --- the attempts ----------------------------------------------------------------------------


def test_crafted_reads_see_no_other_scope(host: Host) -> None:
    """Reads with crafted keys and namespaces, and with the victims' full keys as a plugin
    that guessed the layout would type them, find nothing of another scope."""
    with scope(*host.hostile, manager=host.manager):
        found = plugin_reads(host.own_full_keys())
    assert [value for value in found if value not in (None, 0)] == []


def test_crafted_writes_and_clears_leave_other_scopes_unchanged(host: Host) -> None:
    """Every write, delete, increment, expiry and clear the plugin can make with crafted
    keys and namespaces leaves every other scope as the host wrote it."""
    before = host.snapshot()
    with scope(*host.hostile, manager=host.manager):
        plugin_writes(host.own_full_keys())
    assert host.snapshot() == before


def test_helpers_with_crafted_templates_stay_in_scope(host: Host) -> None:
    """@cached with crafted namespaces and key templates computes instead of reading a
    victim's entry; counters, rate limits and @rate_limited with crafted names and keys
    change nothing outside the plugin's scope."""
    before = host.snapshot()
    with scope(*host.hostile, manager=host.manager):
        answers = plugin_helpers(host.run)
    assert set(answers) == {"computed", 0}
    assert host.snapshot() == before
    assert host.cache(host.hostile, "counters").get("hits") == 1  # what the plugin wrote


def test_clear_clears_only_its_own_scope(host: Host) -> None:
    """The plugin's clear() empties its own scope and nothing else; a namespace's clear()
    only that namespace."""
    own = host.cache(host.hostile)
    own.set("mine", 1)
    own.namespace("users").set("1", "mine")
    before = host.snapshot()
    with scope(*host.hostile, manager=host.manager):
        cachekit.current_cache("users").clear()
        assert cachekit.current_cache().get("mine") == 1
        cachekit.current_cache().clear()
    assert (own.get("mine"), own.namespace("users").get("1")) == (None, None)
    assert host.snapshot() == before


# --- what the returned objects lead to ------------------------------------------------------

ATOMS = (str, bytes, int, float, bool, type(None), complex, range, types.ModuleType)


def _edges(obj: Any) -> Iterator[tuple[str, Any]]:
    """What plugin code reaches from ``obj`` without an underscore name: public attributes,
    ``__dict__`` entries, ``__wrapped__``, ``__self__``, ``__func__``, closure cells and
    container items."""
    if isinstance(obj, list | tuple | set | frozenset):
        yield from ((f"[{i}]", item) for i, item in enumerate(obj))
        return
    if isinstance(obj, dict):
        for key, value in list(obj.items()):
            yield f"[{key!r}]", value
            yield f"<key {key!r}>", key
        return
    for name in dir(obj):
        if not name.startswith("_"):
            try:
                yield f".{name}", getattr(obj, name)
            except Exception:  # a property that needs a scope, say: nothing reached
                continue
    namespace = getattr(obj, "__dict__", None)
    if isinstance(namespace, dict | types.MappingProxyType):
        for name, value in list(namespace.items()):
            if not str(name).startswith("_") or name == "__wrapped__":
                yield f".__dict__[{name!r}]", value
    for name in ("__wrapped__", "__self__", "__func__"):
        try:
            yield f".{name}", getattr(obj, name)
        except Exception:
            continue
    for i, cell in enumerate(getattr(obj, "__closure__", None) or ()):
        try:
            yield f".<cell {i}>", cell.cell_contents
        except ValueError:  # an empty cell
            continue


def reachable(roots: dict[str, Any], depth: int = 6) -> list[tuple[str, Any]]:
    """Every object reachable from ``roots`` through :func:`_edges`, with its path."""
    found: list[tuple[str, Any]] = []
    seen: set[int] = set()
    level = list(roots.items())
    for _ in range(depth):
        following: list[tuple[str, Any]] = []
        for path, obj in level:
            if id(obj) in seen or isinstance(obj, ATOMS):
                continue
            seen.add(id(obj))
            found.append((path, obj))  # kept alive: ids stay unique
            following.extend((path + step, child) for step, child in _edges(obj))
        level = following
    return found


def _forbidden(obj: Any) -> str | None:
    """Why ``obj`` would let plugin code out of its scope, or ``None``."""
    if isinstance(obj, BaseStore | CacheManager | KeySpace | KeySelector | ScopeContext):
        return type(obj).__name__
    if isinstance(obj, host_context.Binding):
        return "a Binding (it holds the manager)"
    if type(obj).__module__.split(".")[0] in {"redis", "valkey", "pymemcache"}:
        return f"a driver object ({type(obj).__module__}.{type(obj).__qualname__})"
    host_functions = {
        "scope": host_context.scope,
        "active_manager": host_context.active_manager,
        "set_default_manager": host_context.set_default_manager,
        "get_default_manager": host_context.get_default_manager,
        "activate_manager": host_context.activate_manager,
        "bind": host_context.bind,
        "unbind": host_context.unbind,
    }
    for name, function in host_functions.items():
        if obj is function:
            return f"the host's {name}()"
    if isinstance(obj, contextvars.ContextVar) and obj.name in {
        "cachekit.binding",
        "cachekit.manager",
    }:
        return f"the context variable {obj.name}"
    if isinstance(obj, type) and issubclass(obj, CacheManager | BaseStore | ScopeContext):
        return f"the class {obj.__name__}"
    return None


class Service:
    """Plugin code with a cached method, classmethod and staticmethod."""

    @cachekit.cached(namespace="svc")
    def method(self, x: int) -> int:
        return x

    @cachekit.cached(namespace="svc")
    async def amethod(self, x: int) -> int:
        return x

    @classmethod
    @cachekit.cached(namespace="svc")
    def klass(cls, x: int) -> int:
        return x

    @staticmethod
    @cachekit.cached(namespace="svc")
    def static(x: int) -> int:
        return x


def plugin_objects(run: Callable[[Coroutine[Any, Any, Any]], Any]) -> dict[str, Any]:
    """Everything the plugin surface hands plugin code, called inside a scope (``run``
    runs a coroutine in the host's event loop)."""

    @cachekit.cached(namespace="n", key="{x}", ttl=60, lock=True, stale_ttl=5)
    def cached_sync(x: int) -> int:
        return x

    @cachekit.cached(namespace="n")
    async def cached_async(x: int) -> int:
        return x

    @cachekit.rate_limited("api", 10, per=60, key=lambda who: who)
    def limited(who: str) -> str:
        return who

    @cachekit.rate_limited("api", 10, per=60)
    async def alimited() -> None:
        return None

    cached_sync(1)  # fill the decorators' bookkeeping before the walk
    run(cached_async(1))
    service = Service()
    service.method(1)
    cache = cachekit.current_cache()
    objects: dict[str, Any] = {
        "current_cache()": cache,
        "current_cache('n')": cachekit.current_cache("n"),
        "cache.namespace('x')": cache.namespace("x"),
        "cache.with_options()": cache.with_options(default_ttl=5),
        "current_scope()": cachekit.current_scope(),
        "@cached sync": cached_sync,
        "@cached async": cached_async,
        "@cached method": service.method,
        "@cached async method": service.amethod,
        "@cached classmethod": Service.klass,
        "@cached staticmethod": Service.static,
        "Service.method": Service.method,
        "cached(...)": cachekit.cached(namespace="n"),
        "counter()": cachekit.counter("hits"),
        "rate_limit()": cachekit.rate_limit("api", 10, per=60, key="k", algorithm="gcra"),
        "@rate_limited": limited,
        "@rate_limited async": alimited,
        "carry()": cachekit.carry(cached_sync),
        "carry(async)": cachekit.carry(cached_async),
    }
    objects.update((f"cachekit.{name}", getattr(cachekit, name)) for name in cachekit.__all__)
    return objects


def test_nothing_public_leads_to_a_store_a_manager_or_another_scope(host: Host) -> None:
    """Walking every object the plugin surface returns through public attributes,
    ``__dict__``, ``__wrapped__``, ``__self__``, ``__func__``, closure cells and container
    items reaches no store, manager, key space, binding, driver or host function, and
    every Cache it reaches is the plugin's own scope."""
    with scope(*host.hostile, manager=host.manager):
        found = reachable(plugin_objects(host.run))
    assert len(found) > 200  # the walk went deep enough to mean something
    leaks = [(path, why) for path, obj in found if (why := _forbidden(obj)) is not None]
    assert leaks == []
    scopes = {(obj.plugin, obj.tenant) for _, obj in found if isinstance(obj, Cache)}
    assert scopes == {host.hostile}


def test_the_walk_finds_what_it_looks_for() -> None:
    """The walk is not blind: from a host's object it reaches the store and the manager."""
    manager = CacheManager()
    with scope("p", "t", manager=manager):
        found = reachable({"binding": cachekit.carry(len), "manager": manager})
    reasons = {why for _, obj in found if (why := _forbidden(obj)) is not None}
    assert {"CacheManager", "MemoryStore", "KeySpace"} <= reasons
    assert all(reason != "a Binding (it holds the manager)" for reason in reasons)


def test_cache_shows_no_store_no_manager_and_no_key_layout(host: Host) -> None:
    """A plugin's Cache has no store, manager or full_key, and its repr names only ids."""
    with scope(*host.hostile, manager=host.manager):
        cache = cachekit.current_cache("users")
    for name in ("store", "manager", "full_key", "keyspace", "for_plugin"):
        assert not hasattr(cache, name), name
    shown = repr(cache)
    assert host.plugin in shown
    assert host.manager.full_key(cache, "k")[: -len("k")] not in shown


def test_no_plugin_call_takes_a_scope() -> None:
    """No callable of the plugin surface has a parameter that names a plugin, a tenant, a
    scope, a manager or a store: plugin code cannot ask for another scope. (``binding=``
    names one of the host's bindings, checked against the plugin's grant and always in its
    own scope: tests/test_bindings.py.)"""
    named = {"plugin", "plugin_id", "tenant", "scope", "manager", "store"}
    callables: dict[str, Any] = {
        name: getattr(cachekit, name)
        for name in cachekit.__all__
        if inspect.isfunction(getattr(cachekit, name))
    }
    for made in (cachekit.current_cache, lambda: cachekit.counter("x")):
        cls = type(made()) if made is not cachekit.current_cache else Cache
        callables.update(
            (f"{cls.__name__}.{attr}", getattr(cls, attr))
            for attr in dir(cls)
            if not attr.startswith("_") and inspect.isfunction(getattr(cls, attr))
        )
    rate_limit = type(cachekit.rate_limit("x", 1, per=1))
    callables["RateLimit"] = rate_limit
    callables.update(
        (f"RateLimit.{attr}", getattr(rate_limit, attr))
        for attr in dir(rate_limit)
        if not attr.startswith("_") and inspect.isfunction(getattr(rate_limit, attr))
    )
    assert len(callables) > 40
    offending = {
        name: sorted(named & set(inspect.signature(fn).parameters))
        for name, fn in callables.items()
    }
    assert {name: params for name, params in offending.items() if params} == {}


@pytest.mark.parametrize(
    "name",
    [
        "CacheManager",
        "CacheMiddleware",
        "scope",
        "set_default_manager",
        "get_default_manager",
        "active_manager",
        "CacheConfig",
        "Codec",
    ],
)
def test_host_names_are_not_in_the_plugin_package(name: str) -> None:
    """The host's names are not in `cachekit`: importing one says it is host-side and
    where it went."""
    with pytest.raises(ImportError, match=rf"use `from cachekit.host import {name}`"):
        exec(f"from cachekit import {name}", {})
    with pytest.raises(ImportError, match=rf"cachekit.{name} is host-side"):
        getattr(cachekit, name)
    assert not hasattr(cachekit, "no_such_name")


def test_plugin_package_exports_only_the_plugin_surface() -> None:
    """Apart from its submodules (imports, which a review greps for), `cachekit` has no
    public attribute beyond `__all__`."""
    public = {
        name
        for name in dir(cachekit)
        if not name.startswith("_") and not isinstance(getattr(cachekit, name), types.ModuleType)
    }
    assert public == set(cachekit.__all__) - {"__version__"}


# --- carry(): the plugin takes its own scope along, and only that ----------------------------


def test_carry_takes_the_current_scope_into_a_thread(host: Host) -> None:
    """A thread started by plugin code has no scope; one running carry(fn) has the scope
    carry() was called in, and writes there."""
    seen: list[Any] = []

    def work() -> None:
        try:
            seen.append(cachekit.current_scope())
            cachekit.current_cache().set("from-thread", 1)
        except cachekit.NoScopeError as exc:
            seen.append(type(exc))

    with scope(*host.hostile, manager=host.manager):
        bare = threading.Thread(target=work)
        carried = threading.Thread(target=cachekit.carry(work))
    for thread in (bare, carried):
        thread.start()
        thread.join()
    assert seen == [cachekit.NoScopeError, cachekit.Scope(*host.hostile)]
    assert host.cache(host.hostile).get("from-thread") == 1


def test_carry_of_an_async_function_binds_while_awaited(host: Host) -> None:
    """carry() of an async function binds its scope while the coroutine runs, in a loop
    that never saw the scope."""

    async def work() -> cachekit.Scope:
        await cachekit.current_cache().aset("from-loop", 2)
        return cachekit.current_scope()

    with scope(*host.hostile, manager=host.manager):
        carried = cachekit.carry(work)
    assert host.run(carried()) == cachekit.Scope(*host.hostile)
    assert host.cache(host.hostile).get("from-loop") == 2


def test_carry_outside_a_scope_and_of_a_generator_is_refused() -> None:
    """carry() outside a scope raises NoScopeError; of a generator function, TypeError."""

    def numbers() -> Iterator[int]:
        yield 1

    with pytest.raises(cachekit.NoScopeError, match=r"cachekit\.carry"):
        cachekit.carry(len)
    with scope("p", manager=CacheManager()), pytest.raises(TypeError, match="generator"):
        cachekit.carry(numbers)


def test_carry_restores_the_callers_scope() -> None:
    """A carried call made inside another scope binds the carried scope only for the call."""
    manager = CacheManager()
    with scope("p", "a", manager=manager):
        carried = cachekit.carry(cachekit.current_scope)
    with scope("p", "b", manager=manager):
        assert carried() == cachekit.Scope("p", "a")
        assert cachekit.current_scope() == cachekit.Scope("p", "b")


# --- hypothesis: any ids, keys and namespaces -------------------------------------------------

SPECIAL = [*"*?[]^!{}:%\\./ -_", "ü", "ß", "✓", "日", "\u00a0", "%3A", "%25", ".."]
texts = st.lists(st.sampled_from([*SPECIAL, "a", "b", "acme"]), min_size=1, max_size=4).map("".join)
tenants = st.none() | texts


def _plant(manager: CacheManager, others: list[Ids], key: str, namespace: str) -> None:
    """The host writes, in every other scope, the keys a plugin with these inputs touches."""
    for ids in others:
        cache = manager.for_plugin(*ids)
        for target in (cache, cache.namespace(namespace), cache.namespace("counters")):
            target.set(key, f"of {ids}")
            target.set(f"{key}|0", 41)
        cache.namespace("ratelimits").set(f"{key}|{key}", 1000)


def _known(manager: CacheManager, others: list[Ids], key: str, namespace: str) -> list[Any]:
    """The host's view of what :func:`_plant` wrote."""
    seen = []
    for ids in others:
        cache = manager.for_plugin(*ids)
        for target in (cache, cache.namespace(namespace), cache.namespace("counters")):
            seen += [target.get(key), target.get(f"{key}|0")]
        seen.append(cache.namespace("ratelimits").get(f"{key}|{key}"))
    return seen


def _plugin_calls(key: str, namespace: str) -> list[Any]:
    """Plugin code: every kind of plugin-surface call with these inputs; what it read."""
    cache = cachekit.current_cache()

    @cachekit.cached(namespace=namespace, key=lambda x: x)
    def load(x: str) -> str:
        return "computed"

    read = [cache.get(key), cachekit.current_cache(namespace).get(key), load(key)]
    load.invalidate(key)  # type: ignore[attr-defined]
    cache.set(key, "mine")
    cache.incr(f"{key}-n")
    cache.namespace(namespace).set(key, "mine")
    cache.delete(f"{key}|0")
    read.append(cachekit.counter(key).get())
    cachekit.counter(key).incr()
    cachekit.counter(key, namespace=namespace).reset()
    limit = cachekit.rate_limit(key, 1, per=60, key=key)
    read.append(limit.hit().allowed)
    limit.reset()
    cachekit.current_cache(namespace).clear()
    cache.namespace(namespace).clear()
    cache.clear()
    return read


hypothesis_inputs = given(
    hostile=st.tuples(texts, tenants),
    others=st.lists(st.tuples(texts, tenants), min_size=1, max_size=3),
    key=texts,
    namespace=texts,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@hypothesis_inputs
def test_no_plugin_call_changes_another_scope(
    hostile: Ids, others: list[Ids], key: str, namespace: str
) -> None:
    """For any plugin and tenant ids, keys and namespaces (glob, colon, percent, non-ASCII),
    no plugin-surface call — get, set, delete, incr, clear, a namespace's clear, @cached,
    counter(), rate_limit() — reads or changes another scope: the host's snapshot of every
    key outside the plugin's scope is unchanged and the plugin reads none of their values."""
    others = [ids for ids in others if ids != hostile]
    store = MemoryStore()
    manager = CacheManager(store=store)
    _plant(manager, others, key, namespace)

    def snapshot() -> dict[str, bytes | None]:
        keys = list(store._data)
        return {k: store.get(k) for k in keys if parse_scope(k)[:2] != hostile}

    before = snapshot()
    with scope(*hostile, manager=manager):
        read = _plugin_calls(key, namespace)
    assert read == [None, None, "computed", 0, True]
    assert snapshot() == before


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@hypothesis_inputs
def test_no_plugin_call_changes_another_scope_on_memcached(
    private_memcached_server: Any, hostile: Ids, others: list[Ids], key: str, namespace: str
) -> None:
    """The same on memcached (whose clear() starts a new generation of a scope): every
    other scope's entries read back unchanged through the host."""
    others = [ids for ids in others if ids != hostile]
    server = private_memcached_server
    raw = MemcacheClient((server.host, server.port))
    raw.flush_all()  # a private server: each example starts empty
    raw.close()
    with CacheManager.from_section(
        {"store": "memcache", "connection": f"{server.host}:{server.port}"}
    ) as manager:
        _plant(manager, others, key, namespace)
        before = _known(manager, others, key, namespace)
        with scope(*hostile, manager=manager):
            read = _plugin_calls(key, namespace)
        assert read == [None, None, "computed", 0, True]
        assert _known(manager, others, key, namespace) == before


@pytest.fixture(scope="module")
def redis_db9(redis_server: Any) -> Iterator[tuple[CacheManager, redis.Redis]]:
    db9 = redis_server.url.rsplit("/", 1)[0] + "/9"
    manager = CacheManager.from_section({"store": "redis", "connection": db9})
    raw = redis.Redis.from_url(db9)
    yield manager, raw
    manager.close()
    raw.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(hostile=st.tuples(texts, tenants), other=st.tuples(texts, tenants), namespace=texts)
def test_no_plugin_clear_reaches_another_scope_on_redis(
    redis_db9: tuple[CacheManager, redis.Redis], hostile: Ids, other: Ids, namespace: str
) -> None:
    """On Redis (where clear() is a SCAN MATCH pattern built from the ids), a plugin's
    clear() and a namespace's clear() remove nothing of another scope, whatever glob,
    colon, percent or non-ASCII characters the ids and the namespace hold."""
    manager, raw = redis_db9
    raw.flushdb()
    if other == hostile:
        return
    victim = manager.for_plugin(*other)
    for target in (victim, victim.namespace(namespace), victim.namespace("*")):
        target.set("k", 1)
    before = {key: raw.get(key) for key in raw.scan_iter()}
    with scope(*hostile, manager=manager):
        cachekit.current_cache().set("k", "mine")
        cachekit.current_cache(namespace).clear()
        cachekit.current_cache("*").clear()
        cachekit.current_cache().clear()
    assert {key: raw.get(key) for key in raw.scan_iter()} == before
