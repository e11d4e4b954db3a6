"""pytest fixtures for testing plugin code that uses cachekit, with no server running.

Installed with cachekit (entry point ``pytest11``), so the fixtures are there in every
test suite of an environment where cachekit is installed::

    from cachekit import cached, current_cache

    def test_counts_visits(cachekit_scope):          # bound: plugin "test-plugin",
        current_cache().incr("visits")                #        tenant "test-tenant"
        assert cachekit_scope.get("visits") == 1      # the fixture is the bound Cache

    @pytest.mark.cachekit_scope(plugin="catalog", tenant=None)   # the platform scope
    def test_catalog(cachekit_scope, cachekit_manager):
        ...

Fixtures:

``cachekit_manager``
    A fresh in-memory :class:`~cachekit.host.CacheManager` per test, made the process default
    (:func:`cachekit.host.set_default_manager` with ``replace=True``) for the test; the previous
    default is restored after.
``cachekit_scope``
    Binds a plugin scope for the test (``"test-plugin"`` / ``"test-tenant"``; override
    with ``@pytest.mark.cachekit_scope(plugin=..., tenant=...)`` on a test, class or
    module, ``tenant=None`` for the platform scope) and yields its
    :class:`~cachekit.Cache`. It uses ``fake_redis_manager`` when the test asks for that
    fixture too, else ``cachekit_manager`` (override that fixture to use another manager).
``fake_redis_manager``
    A manager on the Redis store backed by fakeredis (in-process, no server), made the
    default like ``cachekit_manager``; skips the test when fakeredis is not installed.

The process default manager and tests: every test starts with the default it had before
the test — the manager an app registered when its module was imported, or a session fixture
— and whatever the test registers (an app built in the test or a function-scoped fixture
registers its manager) is undone after it, so no test inherits another test's manager. Test
an app together with its background code (``scope()`` without ``manager=``) without these
fixtures: the app's manager is then the default. ``cachekit_manager``, ``cachekit_scope``
and ``fake_redis_manager`` put a fresh manager in its place for the test: they are for
plugin code tested on its own.

To turn caching off in part of a test, use :func:`cachekit.testing.disabled` (importable
without pytest, like the rest of :mod:`cachekit.testing`); to check a custom store against
the semantics every store keeps, subclass :class:`cachekit.testing.contract.StoreContract`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import pytest

from cachekit.cache import Cache
from cachekit.context import get_default_manager, scope, set_default_manager
from cachekit.manager import CacheManager

__all__ = [
    "DEFAULT_PLUGIN",
    "DEFAULT_TENANT",
    "cachekit_default_manager_restored",
    "cachekit_manager",
    "cachekit_scope",
]

DEFAULT_PLUGIN: Final = "test-plugin"
DEFAULT_TENANT: Final = "test-tenant"
MARKER: Final = "cachekit_scope"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``cachekit_scope`` marker (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(plugin={DEFAULT_PLUGIN!r}, tenant={DEFAULT_TENANT!r}): the plugin and "
        "tenant the cachekit_scope fixture binds (tenant=None: the platform scope)",
    )


@pytest.fixture(autouse=True)
def cachekit_default_manager_restored() -> Iterator[None]:
    """Put the process default manager back, after each test, to what it was before it
    (a manager an app registered during the test does not outlive the test)."""
    # Read from its slot, not through active_manager(): that would create an in-memory
    # default where there was none (None means "created on first use").
    previous = get_default_manager()
    yield
    set_default_manager(previous, replace=True)


def _as_default(manager: CacheManager) -> Iterator[CacheManager]:
    previous = get_default_manager()
    set_default_manager(manager, replace=True)
    try:
        yield manager
    finally:
        set_default_manager(previous, replace=True)
        manager.close()


@pytest.fixture
def cachekit_manager() -> Iterator[CacheManager]:
    """A fresh in-memory manager, the process default for this test."""
    yield from _as_default(CacheManager())


@pytest.fixture
def fake_redis_manager() -> Iterator[CacheManager]:
    """A manager on the Redis store over fakeredis (no server), the process default for
    this test; the test is skipped when fakeredis is not installed."""
    fakeredis = pytest.importorskip(
        "fakeredis", reason="fake_redis_manager needs fakeredis: pip install fakeredis"
    )
    from cachekit.stores.redis import RedisStore

    server = fakeredis.FakeServer()
    store = RedisStore(
        lambda: fakeredis.FakeRedis(server=server),
        lambda: fakeredis.FakeAsyncRedis(server=server),
        target="fakeredis",
    )
    yield from _as_default(CacheManager(store=store))


@pytest.fixture
def cachekit_scope(request: pytest.FixtureRequest) -> Iterator[Cache]:
    """Bind a plugin scope (``test-plugin`` / ``test-tenant``, or what the
    ``cachekit_scope`` marker says) for the test; yields the bound cache."""
    plugin: str = DEFAULT_PLUGIN
    tenant: str | None = DEFAULT_TENANT
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        if marker.args:
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER} takes keywords: {MARKER}(plugin=..., tenant=...)"
            )
        unknown = set(marker.kwargs) - {"plugin", "tenant"}
        if unknown:
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER} got {sorted(unknown)}; it takes plugin= and tenant="
            )
        plugin = marker.kwargs.get("plugin", plugin)
        tenant = marker.kwargs.get("tenant", tenant)
    fixture = "fake_redis_manager" if "fake_redis_manager" in request.fixturenames else None
    manager: CacheManager = request.getfixturevalue(fixture or "cachekit_manager")
    with scope(plugin, tenant, manager=manager) as cache:
        yield cache
