"""cachekit.contrib: the Prometheus collector, the Starlette/FastAPI helpers and the Flask
extension, each exercised through a real registry or a real app in-process."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Mapping, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest
from flask import Flask
from prometheus_client import CollectorRegistry, generate_latest
from servers import free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cachekit import (
    Cache,
    CacheKeyError,
    ConfigError,
    NoScopeError,
    RateLimitExceeded,
    StoreUnavailable,
    current_cache,
    current_scope,
)
from cachekit.context import active_manager
from cachekit.contrib import flask as flask_contrib
from cachekit.contrib.flask import CacheKit
from cachekit.contrib.prometheus import CacheCollector, register
from cachekit.contrib.starlette import cache_dependency, install, lifespan, rate_limit_handler
from cachekit.host import CacheManager, scope
from cachekit.resolvers import header
from cachekit.stores.memory import MemoryStore
from cachekit.stores.redis import RedisStore

# --- Prometheus --------------------------------------------------------------------------


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_prometheus_exports_counters_per_plugin_namespace_and_store() -> None:
    """Hits, misses, sets, deletes and errors are exported per (plugin, namespace, store),
    without a tenant label by default."""
    manager = CacheManager()
    registry = CollectorRegistry()
    register(manager, registry)
    for tenant in ("t1", "t2"):  # two tenants add up: tenant is not a label
        cache = manager.for_plugin("catalog", tenant)
        cache.set("k", 1)
        cache.get("k")
        cache.get("absent")
        cache.delete("k")
    manager.for_plugin("catalog", "t1").namespace("users").get("absent")
    labels = {"plugin": "catalog", "namespace": "", "store": "memory"}
    assert sample(registry, "cachekit_hits_total", **labels) == 2
    assert sample(registry, "cachekit_misses_total", **labels) == 2
    assert sample(registry, "cachekit_sets_total", **labels) == 2
    assert sample(registry, "cachekit_deletes_total", **labels) == 2
    assert sample(registry, "cachekit_errors_total", **labels) == 0
    users = labels | {"namespace": "users"}
    assert sample(registry, "cachekit_misses_total", **users) == 1
    assert sample(registry, "cachekit_hits_total", **labels, tenant="t1") is None
    text = generate_latest(registry).decode()
    assert re.search(r"^# TYPE cachekit_hits(_total)? counter$", text, re.MULTILINE)
    assert 'cachekit_hits_total{namespace="",plugin="catalog",store="memory"} 2.0' in text
    assert "cachekit_store_latency_seconds_count" not in text  # the memory store is not timed


def test_prometheus_tenant_label_when_the_manager_counts_per_tenant() -> None:
    """With metrics.perTenant the tenant becomes a label (empty for the platform scope)."""
    manager = CacheManager.from_config({"backend": {"cache": {"metrics": {"perTenant": True}}}})
    registry = CollectorRegistry()
    register(manager, registry)
    manager.for_plugin("catalog", "t1").set("k", 1)
    manager.for_plugin("catalog", "t2").set("k", 1)
    manager.for_plugin("catalog", "t2").set("j", 1)
    manager.for_plugin("catalog").set("k", 1)
    labels = {"plugin": "catalog", "namespace": "", "store": "memory"}
    assert sample(registry, "cachekit_sets_total", **labels, tenant="t1") == 1
    assert sample(registry, "cachekit_sets_total", **labels, tenant="t2") == 2
    assert sample(registry, "cachekit_sets_total", **labels, tenant="") == 1
    assert sample(registry, "cachekit_sets_total", **labels) is None


def test_prometheus_series_are_bounded_by_max_series() -> None:
    """Past metrics.maxSeries, new plugins and tenants are exported under `other` labels:
    the scrape stays bounded however many ids requests bring."""
    manager = CacheManager.from_config(
        {"backend": {"cache": {"metrics": {"perTenant": True, "maxSeries": 3}}}}
    )
    registry = CollectorRegistry()
    register(manager, registry)
    for n in range(200):
        manager.for_plugin(f"p{n}", f"t{n}").get("k")
    text = generate_latest(registry).decode()
    assert text.count("cachekit_misses_total{") == 4
    other = {"plugin": "other", "namespace": "other", "store": "memory", "tenant": "other"}
    assert sample(registry, "cachekit_misses_total", **other) == 197
    assert sample(registry, "cachekit_misses_total", plugin="p0", namespace="", store="memory",
                  tenant="t0") == 1  # fmt: skip


def test_prometheus_latency_summary_for_a_network_store() -> None:
    """A network store's time in store calls is a summary (_count, _sum)."""
    server = fakeredis.FakeServer()
    store = RedisStore(
        lambda: fakeredis.FakeRedis(server=server),
        lambda: fakeredis.FakeAsyncRedis(server=server),
        target="fakeredis",
    )
    with CacheManager(store=store) as manager:
        registry = CollectorRegistry()
        register(manager, registry)
        cache = manager.for_plugin("catalog", "t1")
        cache.set("k", 1)
        cache.get("k")
        labels = {"plugin": "catalog", "namespace": "", "store": "redis"}
        assert sample(registry, "cachekit_store_latency_seconds_count", **labels) == 2
        total = sample(registry, "cachekit_store_latency_seconds_sum", **labels)
        assert total is not None
        assert total > 0


def test_prometheus_counts_store_errors() -> None:
    """A failing store call shows in cachekit_errors_total."""
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.1)
    with CacheManager(store=store) as manager:
        registry = CollectorRegistry()
        register(manager, registry)
        with pytest.raises(StoreUnavailable):
            manager.for_plugin("catalog", "t1").get("k")
        labels = {"plugin": "catalog", "namespace": "", "store": "redis"}
        assert sample(registry, "cachekit_errors_total", **labels) == 1


def test_prometheus_registration_detects_clashes_without_reading_stats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """register() describes the metric names without calling manager.stats(); a second
    manager in one registry needs another prefix."""
    manager = CacheManager()
    registry = CollectorRegistry()

    def no_stats() -> list[Any]:
        raise AssertionError("stats() read at registration")

    monkeypatch.setattr(manager, "stats", no_stats)
    collector = register(manager, registry)
    assert isinstance(collector, CacheCollector)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        register(CacheManager(), registry)
    other = CacheManager()
    register(other, registry, prefix="other_cache")
    registry.unregister(collector)  # its manager's stats() is booby-trapped
    other.for_plugin("p").set("k", 1)
    assert sample(registry, "other_cache_sets_total", plugin="p", namespace="", store="memory") == 1
    assert "CacheCollector(CacheManager(" in repr(collector)


# --- Starlette / FastAPI -------------------------------------------------------------------


class RecordingStore(MemoryStore):
    """A memory store that records pings and closes, and can fail its ping."""

    def __init__(self, *, ping_fails: bool = False) -> None:
        super().__init__()
        self.events: list[str] = []
        self.ping_fails = ping_fails

    def ping(self) -> None:
        self.events.append("ping")
        if self.ping_fails:
            raise StoreUnavailable("recording store is down", store=self.name)

    def close(self) -> None:
        self.events.append("close")


async def run_lifespan(app: Any) -> list[str]:
    """Drive an ASGI app through startup and shutdown; return the message types it sent."""
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> MutableMapping[str, Any]:
        return incoming.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message["type"])

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    await app(scope, receive, send)
    return sent


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def count_visit(request: Request) -> JSONResponse:
    visits = await current_cache().aincr("visits")
    bound = current_scope()
    return JSONResponse({"scope": [bound.plugin, bound.tenant], "visits": visits})


@pytest.mark.anyio
async def test_install_serves_the_app_in_the_resolved_scope() -> None:
    """install() adds the middleware: endpoints see the (plugin, tenant) of each request and
    count into that scope only."""
    manager = CacheManager()
    app = install(
        Starlette(routes=[Route("/visit", count_visit)]),
        manager,
        plugin="catalog",
        tenant=header("X-Tenant"),
    )
    async with client_for(app) as client:
        for tenant in ("acme", "acme", "globex"):
            response = await client.get("/visit", headers={"X-Tenant": tenant})
            assert response.status_code == 200
        assert response.json() == {"scope": ["catalog", "globex"], "visits": 1}
        refused = await client.get("/visit")
    assert refused.status_code == 400
    assert manager.for_plugin("catalog", "acme").get("visits") == 2
    assert manager.for_plugin("catalog", "globex").get("visits") == 1


@pytest.mark.anyio
async def test_install_turns_rate_limit_refusals_into_429() -> None:
    """install() registers the 429 handler: a RateLimitExceeded from an endpoint becomes a
    429 with Retry-After."""

    async def limited(request: Request) -> JSONResponse:
        raise RateLimitExceeded("slow down", limit=5, remaining=0, retry_after=2.5)

    app = install(Starlette(routes=[Route("/", limited)]), CacheManager(), plugin="catalog")
    assert app.exception_handlers[RateLimitExceeded] is rate_limit_handler
    async with client_for(app) as client:
        response = await client.get("/")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.headers["RateLimit-Limit"] == "5"


@pytest.mark.anyio
async def test_cache_dependency_returns_the_request_cache() -> None:
    """The dependency returns current_cache() (or its namespace) of the request's scope."""
    users = cache_dependency("users")
    default = cache_dependency()

    async def endpoint(request: Request) -> JSONResponse:
        cache = await users()
        await cache.aset("u1", "ann")
        assert await default() is current_cache()
        return JSONResponse({"namespace": cache.namespace_name, "tenant": cache.tenant})

    manager = CacheManager()
    app = install(
        Starlette(routes=[Route("/", endpoint)]),
        manager,
        plugin="catalog",
        tenant=header("X-Tenant"),
    )
    async with client_for(app) as client:
        response = await client.get("/", headers={"X-Tenant": "acme"})
    assert response.json() == {"namespace": "users", "tenant": "acme"}
    assert manager.for_plugin("catalog", "acme").namespace("users").get("u1") == "ann"


def test_cache_dependency_called_plainly() -> None:
    """Awaited outside a framework it returns the bound scope's cache, raises NoScopeError
    without one, and rejects an empty namespace when made."""
    dependency = cache_dependency("users")
    manager = CacheManager()
    with scope("catalog", "acme", manager=manager):
        cache = asyncio.run(dependency())
    assert isinstance(cache, Cache)
    assert (cache.plugin, cache.tenant, cache.namespace_name) == ("catalog", "acme", "users")
    with pytest.raises(NoScopeError):
        asyncio.run(dependency())
    with pytest.raises(CacheKeyError):
        cache_dependency("")


@pytest.mark.anyio
async def test_lifespan_pings_at_startup_and_closes_at_shutdown() -> None:
    """lifespan(manager) pings the store at startup, runs the app's own lifespan inside
    (with the manager active, its state passed on), and closes the store at shutdown."""
    store = RecordingStore()
    manager = CacheManager(store=store)
    seen: list[Any] = []

    @asynccontextmanager
    async def own(app: Any) -> AsyncIterator[Mapping[str, Any]]:
        seen.append(active_manager())
        store.events.append("app startup")
        yield {"answer": 42}
        store.events.append("app shutdown")

    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse({"answer": request.state.answer})

    app = Starlette(routes=[Route("/", endpoint)], lifespan=lifespan(manager, own))
    sent = await run_lifespan(app)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert store.events == ["ping", "app startup", "app shutdown", "close"]
    assert seen == [manager]


@pytest.mark.anyio
async def test_lifespan_logs_an_unreachable_store_and_starts_anyway(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A store that does not answer at startup is logged, not fatal: the cache is lossy."""
    store = RecordingStore(ping_fails=True)
    app = Starlette(lifespan=lifespan(CacheManager(store=store)))
    with caplog.at_level(logging.WARNING, logger="cachekit"):
        sent = await run_lifespan(app)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert "did not answer at startup: recording store is down" in caplog.text
    assert store.events == ["ping", "close"]


# --- Flask ---------------------------------------------------------------------------------


def flask_app(**config: Any) -> Flask:
    app = Flask("shop")
    app.config.update(config)

    @app.get("/visit")
    def visit() -> dict[str, Any]:
        bound = current_scope()
        return {"scope": [bound.plugin, bound.tenant], "visits": current_cache().incr("visits")}

    @app.get("/limited")
    def limited() -> dict[str, Any]:
        raise RateLimitExceeded("slow down", limit=5, remaining=0, retry_after=1.2)

    return app


def flask_client(app: Flask) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://test")


def test_flask_extension_reads_the_app_config() -> None:
    """CACHEKIT (the backend.cache section), CACHEKIT_PLUGIN and CACHEKIT_TENANT_HEADER set
    up the store and the scope of every request; the extension sits in app.extensions."""
    app = flask_app(
        CACHEKIT={"store": "memory", "defaultTtl": "5m"},
        CACHEKIT_PLUGIN="catalog",
        CACHEKIT_TENANT_HEADER="X-Tenant",
    )
    ext = CacheKit(app)
    assert app.extensions["cachekit"] is ext
    assert ext.manager.config.default_ttl == 300
    with flask_client(app) as client:
        assert client.get("/visit", headers={"X-Tenant": "acme"}).json() == {
            "scope": ["catalog", "acme"],
            "visits": 1,
        }
        assert client.get("/visit", headers={"X-Tenant": "acme"}).json()["visits"] == 2
        assert client.get("/visit").status_code == 400  # a tenant header is required
    assert ext.manager.for_plugin("catalog", "acme").get("visits") == 2


def test_flask_extension_defaults_to_memory_and_the_app_name() -> None:
    """Without config: the in-memory store, the plugin named after the app, the platform
    scope."""
    app = flask_app()
    ext = CacheKit(app)
    assert isinstance(ext.manager.store, MemoryStore)
    with flask_client(app) as client:
        assert client.get("/visit").json() == {"scope": ["shop", None], "visits": 1}


def test_flask_extension_reads_yaml_files(tmp_path: Path) -> None:
    """CACHEKIT_CONFIG names app-config files, merged in order."""
    base = tmp_path / "app-config.yaml"
    base.write_text("backend:\n  cache:\n    store: memory\n    defaultTtl: 1m\n")
    prod = tmp_path / "app-config.production.yaml"
    prod.write_text("backend:\n  cache:\n    defaultTtl: 2m\n")
    ext = CacheKit(flask_app(CACHEKIT_CONFIG=[str(base), prod]))
    assert ext.manager.config.default_ttl == 120
    single = CacheKit(flask_app(CACHEKIT_CONFIG=str(base)))
    assert single.manager.config.default_ttl == 60


def test_flask_extension_config_errors() -> None:
    """A bad CACHEKIT section raises ConfigError naming the key; setting both config keys
    is refused."""
    with pytest.raises(ConfigError, match=r"^CACHEKIT\.store: unknown store 'redsi'"):
        CacheKit(flask_app(CACHEKIT={"store": "redsi"}))
    with pytest.raises(ConfigError, match=r"not CACHEKIT_CONFIG and CACHEKIT$"):
        CacheKit(flask_app(CACHEKIT={}, CACHEKIT_CONFIG="app-config.yaml"))


def test_flask_extension_arguments_win_over_config() -> None:
    """A manager, plugin and tenant resolver given to CacheKit() win over app.config."""
    manager = CacheManager()
    app = flask_app(CACHEKIT={"store": "redsi"}, CACHEKIT_PLUGIN="ignored")
    CacheKit(app, manager=manager, plugin="reviews", tenant=header("X-Org"), cache_header=True)
    with flask_client(app) as client:
        response = client.get("/visit", headers={"X-Org": "acme"})
    assert response.json()["scope"] == ["reviews", "acme"]
    assert manager.for_plugin("reviews", "acme").get("visits") == 1


def test_flask_extension_turns_rate_limits_into_429() -> None:
    """The registered error handler answers a RateLimitExceeded with a 429."""
    app = flask_app()
    CacheKit(app)
    with flask_client(app) as client:
        response = client.get("/limited")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert app.error_handler_spec[None][None][RateLimitExceeded] is flask_contrib.rate_limit_handler


@pytest.mark.anyio
async def test_starlette_handler_refuses_other_exceptions() -> None:
    """The Starlette handler registered for another exception raises TypeError instead of
    answering a 429 for it."""
    with pytest.raises(TypeError, match="handles RateLimitExceeded"):
        await rate_limit_handler(None, ValueError("not a refusal"))  # type: ignore[arg-type]


def test_flask_init_app_per_app_managers() -> None:
    """One extension set up on two apps keeps a manager per app: .manager follows the app
    context, get_manager(app) names one, and outside a context .manager refuses to guess."""
    ext = CacheKit()
    first, second = flask_app(CACHEKIT_PLUGIN="one"), flask_app(CACHEKIT_PLUGIN="two")
    ext.init_app(first)
    ext.init_app(second)
    assert ext.get_manager(first) is not ext.get_manager(second)
    with second.app_context():
        assert ext.manager is ext.get_manager(second)
    with pytest.raises(RuntimeError, match="serves 2 apps"):
        _ = ext.manager
    with first.app_context(), ext.scope("jobs", "acme"):
        current_cache().set("k", 1)
    assert ext.get_manager(first).for_plugin("jobs", "acme").get("k") == 1
    assert repr(ext) == "CacheKit(apps=['shop', 'shop'])"


# --- the Flask extension's config keys ------------------------------------------------------


def test_flask_unknown_cachekit_keys_are_refused_with_the_closest_key() -> None:
    """A misspelt or unknown CACHEKIT_* key is a ConfigError suggesting the known key, or
    for a backend.cache setting spelt flat, where it goes; never silently ignored."""
    with pytest.raises(ConfigError, match="did you mean 'CACHEKIT_TENANT_HEADER'") as caught:
        CacheKit(flask_app(CACHEKIT_TENANT_HEDER="X-Tenant"))
    assert caught.value.path == "app.config.CACHEKIT_TENANT_HEDER"
    with pytest.raises(ConfigError, match=re.escape("CACHEKIT = {'store': ...}")):
        CacheKit(flask_app(CACHEKIT_STORE="redis"))
    with pytest.raises(ConfigError, match=re.escape("CACHEKIT = {'defaultTtl': ...}")):
        CacheKit(flask_app(CACHEKIT_DEFAULT_TTL=60))


@pytest.mark.parametrize(
    ("key", "value", "instead"),
    [
        ("CACHE_TYPE", "RedisCache", "CACHEKIT_URL = 'redis://...', or CACHEKIT = {'store'"),
        ("CACHE_REDIS_URL", "redis://localhost", "CACHEKIT_URL = 'redis://...'"),
        ("CACHE_DEFAULT_TIMEOUT", 300, "CACHEKIT = {'defaultTtl': ...}"),
        ("CACHE_KEY_PREFIX", "app:", "CACHEKIT = {'redis': {'client': {'namespace'"),
        ("CACHE_OPTIONS", {}, "CACHEKIT = {'store': ...} or CACHEKIT_URL"),
    ],
)
def test_flask_caching_keys_without_a_cachekit_store_are_refused(
    key: str, value: object, instead: str
) -> None:
    """Flask-Caching's CACHE_* keys in an app with no cachekit store config are a
    ConfigError naming the cachekit equivalent (the app would silently get memory)."""
    with pytest.raises(ConfigError, match=re.escape(instead)) as caught:
        CacheKit(flask_app(**{key: value}))
    assert caught.value.path == f"app.config.{key}"
    assert "Flask-Caching key" in str(caught.value)


def test_flask_caching_keys_are_left_alone_beside_a_cachekit_store() -> None:
    """With a cachekit store config, or Flask-Caching set up on the app first, CACHE_*
    keys belong to Flask-Caching and are not read."""
    CacheKit(flask_app(CACHEKIT={"store": "memory"}, CACHE_TYPE="SimpleCache"))
    CacheKit(flask_app(CACHEKIT={"store": "memory"}), manager=CacheManager())
    app = flask_app(CACHE_TYPE="SimpleCache")
    app.extensions["cache"] = {}  # what Flask-Caching's init_app registers
    assert isinstance(CacheKit(app).manager.store, MemoryStore)


def test_flask_exclude_from_config() -> None:
    """CACHEKIT_EXCLUDE lists paths served without a scope (no tenant asked for)."""
    app = flask_app(CACHEKIT_TENANT_HEADER="X-Tenant", CACHEKIT_EXCLUDE=["/healthz", "/static/*"])

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        try:
            current_scope()
        except NoScopeError:
            return {"scoped": False}
        return {"scoped": True}

    CacheKit(app)
    with flask_client(app) as client:
        assert client.get("/healthz").json() == {"scoped": False}
        refused = client.get("/visit")
        assert refused.status_code == 400
        assert refused.json() == {"error": "missing tenant id", "expected": "header X-Tenant"}


def test_flask_url_and_another_store_config_are_refused_together() -> None:
    """CACHEKIT_URL with CACHEKIT (or CACHEKIT_CONFIG) is refused, naming both."""
    with pytest.raises(ConfigError, match="not CACHEKIT and CACHEKIT_URL"):
        CacheKit(flask_app(CACHEKIT={}, CACHEKIT_URL="redis://localhost"))


def test_flask_url_builds_the_manager_through_from_url(redis_server: Any) -> None:
    """CACHEKIT_URL builds the manager with CacheManager.from_url: the app's writes land in
    that Redis."""
    import redis

    app = flask_app(CACHEKIT_URL=redis_server.url, CACHEKIT_PLUGIN="url-plugin")
    ext = CacheKit(app)
    try:
        with flask_client(app) as client:
            assert client.get("/visit").json()["visits"] == 1
        raw = redis.Redis.from_url(redis_server.url)
        [key] = raw.keys("url-plugin:*")
        assert raw.get(key) == b"1"
        raw.delete(key)
        raw.close()
    finally:
        ext.manager.close()
