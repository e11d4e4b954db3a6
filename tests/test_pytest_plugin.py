"""The pytest plugin (cachekit_manager, cachekit_scope, fake_redis_manager, the
cachekit_scope marker) and cachekit.testing.disabled()."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from cachekit import Scope, cached, current_cache, current_scope
from cachekit.cache import Cache
from cachekit.context import active_manager
from cachekit.host import CacheManager, scope
from cachekit.stores.memory import MemoryStore
from cachekit.testing import caching_disabled, disabled

pytest_plugins = ["pytester"]

# In-process runs skip entry-point autoloading (hypothesis and friends cost ~0.7 s per run)
# and load the plugin by name; the must-show test runs a subprocess with autoloading on.
FAST = ("-p", "cachekit.pytest_plugin", "-p", "no:cacheprovider")


@pytest.fixture
def fast_pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


PLUGIN_MODULE = """
from cachekit import cached, current_cache

CALLS = []


@cached(namespace="greetings", ttl=60)
def greet(name):
    CALLS.append(name)
    return f"hello {name}"


def record_visit():
    return current_cache().incr("visits")
"""

PLUGIN_TESTS = """
import socket

import asyncio
import subprocess
import sys
import textwrap

import pytest

import myplugin
from cachekit import Scope, current_scope


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("no network in this test run")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_cached_function_runs_once(cachekit_scope):
    assert myplugin.greet("ann") == "hello ann"
    assert myplugin.greet("ann") == "hello ann"
    assert myplugin.CALLS == ["ann"]


def test_counter_in_the_bound_scope(cachekit_scope, cachekit_manager):
    assert myplugin.record_visit() == 1
    assert myplugin.record_visit() == 2
    assert cachekit_manager.for_plugin("test-plugin", "test-tenant").get("visits") == 2
    assert cachekit_scope.get("visits") == 2


def test_each_test_gets_a_fresh_manager(cachekit_scope):
    assert myplugin.record_visit() == 1


@pytest.mark.cachekit_scope(plugin="catalog", tenant=None)
def test_marker_picks_the_scope(cachekit_scope):
    assert current_scope() == Scope("catalog", None)
    assert myplugin.record_visit() == 1
"""


def test_a_plugins_tests_pass_with_only_the_fixtures_and_no_server(
    pytester: pytest.Pytester,
) -> None:
    """A plugin module tested through cachekit_scope / cachekit_manager alone passes in a
    fresh pytest process (plugin loaded from the installed entry point) with every network
    connection refused."""
    pytester.makepyfile(myplugin=PLUGIN_MODULE, test_myplugin=PLUGIN_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:valkey", "-W", "error", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=4)


def test_the_plugin_loads_with_dash_p_when_autoload_is_off(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With plugin autoload disabled, `-p cachekit.pytest_plugin` provides the fixtures."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(myplugin=PLUGIN_MODULE, test_myplugin=PLUGIN_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "cachekit.pytest_plugin", "-W", "error", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=4)


def test_fake_redis_manager_backs_the_scope_with_fakeredis(fast_pytester: pytest.Pytester) -> None:
    """fake_redis_manager is a Redis-store manager on fakeredis; cachekit_scope binds it
    when a test asks for both, sync and async, without warnings."""
    fast_pytester.makepyfile(
        """
        import pytest
        from cachekit import current_cache
        from cachekit.stores.redis import RedisStore


        def test_sync(fake_redis_manager, cachekit_scope):
            assert isinstance(fake_redis_manager.store, RedisStore)
            current_cache().set("k", {"a": 1})
            assert fake_redis_manager.for_plugin("test-plugin", "test-tenant").get("k") == {"a": 1}


        @pytest.mark.anyio
        async def test_async(fake_redis_manager, cachekit_scope):
            await current_cache().aset("k", 1)
            assert await current_cache().aincr("k") == 2
            await fake_redis_manager.aclose()


        def test_data_does_not_leak_between_tests(fake_redis_manager, cachekit_scope):
            assert current_cache().get("k") is None
        """
    )
    result = fast_pytester.runpytest(*FAST, "-p", "anyio", "-W", "error")
    result.assert_outcomes(passed=3)


def test_fake_redis_manager_skips_without_fakeredis(fast_pytester: pytest.Pytester) -> None:
    """Without fakeredis the fixture skips the test, saying what to install."""
    fast_pytester.makeconftest(
        """
        import sys
        import pytest

        @pytest.fixture(autouse=True)
        def hide_fakeredis(monkeypatch):
            monkeypatch.setitem(sys.modules, "fakeredis", None)
        """
    )
    fast_pytester.makepyfile("def test_it(fake_redis_manager):\n    raise AssertionError\n")
    result = fast_pytester.runpytest(*FAST, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*fake_redis_manager needs fakeredis: pip install fakeredis*"])


def test_cachekit_manager_restores_the_previous_default(fast_pytester: pytest.Pytester) -> None:
    """cachekit_manager is the default manager during the test, and the previous default
    is back afterwards."""
    fast_pytester.makeconftest(
        """
        import pytest
        from cachekit.host import CacheManager, set_default_manager

        HOST = CacheManager()


        @pytest.fixture(scope="session", autouse=True)
        def host_default():
            set_default_manager(HOST)
            yield
            set_default_manager(None)
        """
    )
    fast_pytester.makepyfile(
        """
        from conftest import HOST
        from cachekit.context import active_manager


        def test_during(cachekit_manager):
            assert active_manager() is cachekit_manager
            assert cachekit_manager is not HOST


        def test_after():
            assert active_manager() is HOST
        """
    )
    result = fast_pytester.runpytest(*FAST)
    result.assert_outcomes(passed=2)


def test_an_apps_manager_is_the_default_in_its_tests_and_none_leaks(
    fast_pytester: pytest.Pytester,
) -> None:
    """A manager an app registered on import is the default in every test (scope() without
    a manager uses it); one registered inside a test is gone in the next; cachekit_manager
    takes its place for its test only."""
    fast_pytester.makepyfile(
        app="""
        from cachekit.host import CacheManager, CacheMiddleware

        async def inner(scope, receive, send): ...

        MANAGER = CacheManager()
        app = CacheMiddleware(inner, MANAGER, plugin="shop")
        """
    )
    fast_pytester.makepyfile(
        """
        from app import MANAGER
        from cachekit import current_cache
        from cachekit.host import CacheManager, CacheMiddleware, scope
        from cachekit.context import active_manager


        def test_1_background_code_uses_the_apps_manager():
            with scope(plugin="jobs"):
                current_cache().set("k", 1)
            assert MANAGER.for_plugin("jobs").get("k") == 1


        def test_2_a_test_registers_its_own_app():
            from cachekit.host import set_default_manager
            own = CacheManager()
            set_default_manager(own, replace=True)
            assert active_manager() is own


        def test_3_the_apps_manager_is_back():
            assert active_manager() is MANAGER


        def test_4_cachekit_manager_is_fresh(cachekit_manager, cachekit_scope):
            assert active_manager() is cachekit_manager is not MANAGER
            assert cachekit_scope.get("k") is None


        def test_5_and_the_apps_manager_is_back_again():
            assert active_manager() is MANAGER
        """
    )
    result = fast_pytester.runpytest(*FAST)
    result.assert_outcomes(passed=5)


def test_a_middleware_built_in_a_test_does_not_outlive_it(fast_pytester: pytest.Pytester) -> None:
    """With no app registered on import, each test's middleware manager is the default in
    that test only, and the next test's middleware registers without a refusal."""
    fast_pytester.makepyfile(
        """
        import logging
        import pytest
        from cachekit.host import CacheManager, CacheMiddleware
        from cachekit.context import get_default_manager


        async def inner(scope, receive, send): ...


        @pytest.mark.parametrize("run", [1, 2])
        def test_builds_an_app(run, caplog):
            manager = CacheManager()
            CacheMiddleware(inner, manager, plugin="shop")
            assert get_default_manager() is manager
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        """
    )
    result = fast_pytester.runpytest(*FAST)
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('cachekit_scope("catalog")', "takes keywords"),
        ('cachekit_scope(plugn="catalog")', "got *plugn*; it takes plugin= and tenant="),
    ],
)
def test_a_malformed_marker_is_a_usage_error(
    fast_pytester: pytest.Pytester, marker: str, message: str
) -> None:
    """The marker takes only plugin= and tenant=; anything else errors the test, saying so."""
    fast_pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.{marker}
        def test_it(cachekit_scope):
            pass
        """
    )
    result = fast_pytester.runpytest(*FAST)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{message}*"])


def test_the_marker_is_registered_for_strict_markers(fast_pytester: pytest.Pytester) -> None:
    """--strict-markers accepts @pytest.mark.cachekit_scope, on a class too."""
    fast_pytester.makepyfile(
        """
        import pytest
        from cachekit import current_scope


        @pytest.mark.cachekit_scope(tenant="acme")
        class TestAcme:
            def test_it(self, cachekit_scope):
                assert (current_scope().plugin, current_scope().tenant) == ("test-plugin", "acme")
        """
    )
    result = fast_pytester.runpytest(*FAST, "--strict-markers")
    result.assert_outcomes(passed=1)


# --- the fixtures in this suite (the plugin is installed here too) -------------------------


def test_cachekit_manager_is_a_fresh_in_memory_default(cachekit_manager: CacheManager) -> None:
    """cachekit_manager is an empty in-memory manager, active for the test."""
    assert isinstance(cachekit_manager.store, MemoryStore)
    assert active_manager() is cachekit_manager
    assert cachekit_manager.for_plugin("p", "t").get("k") is None


def test_cachekit_scope_defaults(cachekit_scope: Cache) -> None:
    """cachekit_scope binds test-plugin / test-tenant and yields the bound cache."""
    assert current_scope() == Scope("test-plugin", "test-tenant")
    assert current_cache() is cachekit_scope


# --- disabled() ------------------------------------------------------------------------------


def test_disabled_hides_the_real_store_and_drops_writes(cachekit_manager: CacheManager) -> None:
    """Inside disabled(), current_cache() of the bound scope reads a throwaway store; what
    it writes is gone after the block and never reached the real store."""
    with scope("p", "t", manager=cachekit_manager) as real:
        real.set("k", "real")
        with disabled() as throwaway:
            assert current_scope() == Scope("p", "t")
            assert current_cache().get("k") is None
            current_cache().set("k", "inside")
            assert current_cache().get("k") == "inside"
            assert throwaway is not cachekit_manager
        assert current_cache() is real
        assert real.get("k") == "real"


def test_disabled_applies_to_scopes_opened_inside(cachekit_manager: CacheManager) -> None:
    """A scope bound inside disabled() without a manager uses the throwaway store."""
    with disabled(), scope("p", "t"):
        current_cache().set("k", 1)
        assert current_cache().incr("n") == 1
    assert cachekit_manager.for_plugin("p", "t").get("k") is None


def test_disabled_blocks_are_separate_and_nest() -> None:
    """Each block has its own throwaway store; the flag is set inside and reset after."""
    assert caching_disabled.get() is False
    with disabled(), scope("p"):
        current_cache().set("k", "outer")
        with disabled():
            assert caching_disabled.get() is True
            assert current_cache().get("k") is None
        assert current_cache().get("k") == "outer"
    with disabled(), scope("p"):
        assert current_cache().get("k") is None
    assert caching_disabled.get() is False


def test_cached_calls_through_under_disabled(cachekit_scope: Cache) -> None:
    """@cached calls the function every time inside disabled(), and caches again after."""
    calls: list[int] = []

    @cached(namespace="f", ttl=60)
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    with disabled():
        assert double(2) == 4
        assert double(2) == 4
        assert calls == [2, 2]
    assert double(2) == 4
    assert double(2) == 4
    assert calls == [2, 2, 2]


def test_cached_async_calls_through_under_disabled(cachekit_scope: Cache) -> None:
    """An async @cached function is awaited every time inside disabled()."""
    calls: list[int] = []

    @cached(namespace="g", ttl=60)
    async def triple(x: int) -> int:
        calls.append(x)
        return 3 * x

    async def twice() -> list[int]:
        return [await triple(1), await triple(1)]

    with disabled():
        assert asyncio.run(twice()) == [3, 3]
    assert calls == [1, 1]
    assert asyncio.run(twice()) == [3, 3]
    assert calls == [1, 1, 1]


# pytest is made unimportable (None in sys.modules) before anything of cachekit is imported.
WITHOUT_PYTEST = """
import sys
sys.modules["pytest"] = None
from cachekit.testing import FakeClock, disabled
from cachekit import cached
calls = []

@cached(namespace="n")
def f():
    calls.append(1)
    return len(calls)

with disabled() as manager:
    f(), f()
clock = FakeClock(5.0)
clock.advance(1.5)
try:
    import cachekit.testing.contract
except ImportError:
    contract = "needs pytest"
else:
    contract = "imported"
print(len(calls), clock(), contract)
"""


def test_cachekit_testing_imports_without_pytest() -> None:
    """cachekit.testing (disabled, FakeClock) works with pytest unimportable; only the
    contract kit, cachekit.testing.contract, needs it."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(WITHOUT_PYTEST)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "6.5", "needs", "pytest"]
