"""A real plugin process (tests/plugin_process.py, using only cachekit's plugin surface
and its environment) started by cachekit.sockets.launch with its bindings on Unix sockets:
isolation per tenant and binding, Gestalt's environment rule, @cached in the plugin."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import redis
from servers import RedisServer
from sockets_host import HostLoop

from cachekit import CachePolicyError, ConfigError
from cachekit.host import CacheManager
from cachekit.sockets import PluginProcess, SocketBinding, launch, socket_binding, socket_bindings

SCRIPT = str(Path(__file__).parent / "plugin_process.py")


class Plugin:
    """A launched plugin_process.py and the host loop it was launched on."""

    def __init__(self, host: HostLoop, process: PluginProcess) -> None:
        self.host, self.process = host, process

    def ask(self, **command: Any) -> dict[str, Any]:
        """Send one command, return its answer (``{"ok": ...}`` or ``{"error": ...}``)."""

        async def exchange() -> dict[str, Any]:
            stdin, stdout = self.process.process.stdin, self.process.process.stdout
            assert stdin is not None
            assert stdout is not None
            stdin.write(json.dumps(command).encode() + b"\n")
            await stdin.drain()
            answer: dict[str, Any] = json.loads(await stdout.readline())
            return answer

        return self.host.run(exchange())

    def ok(self, **command: Any) -> Any:
        answer = self.ask(**command)
        assert "ok" in answer, answer
        return answer["ok"]

    def finish(self) -> int:
        """Close its stdin (it exits) and wait; its return code."""

        async def close() -> int:
            assert self.process.process.stdin is not None
            self.process.process.stdin.close()
            return await self.process.wait()

        return self.host.run(close())

    def stop(self) -> int:
        return self.host.run(self.process.stop())


def start_plugin(
    host: HostLoop,
    plugin: str,
    bindings: Mapping[str, SocketBinding],
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> Plugin:
    """Launch plugin_process.py as ``plugin`` with ``bindings``."""
    process = host.run(
        launch(
            [sys.executable, SCRIPT],
            plugin=plugin,
            bindings=bindings,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            **options,
        )
    )
    return Plugin(host, process)


@pytest.fixture
def manager(host: HostLoop, redis_server: RedisServer) -> Iterator[CacheManager]:
    """The host's manager: ``backend.cache`` in memory, a named binding ``sessions`` on
    Redis (default TTL 1 hour), granted to plugin ``reports``. Its async Redis client
    lives on the host loop (closed there)."""
    manager = CacheManager.from_section(
        {
            "bindings": {
                "sessions": {
                    "store": "redis",
                    "connection": redis_server.url,
                    "defaultTtl": "1h",
                    "redis": {"client": {"namespace": "sockets-test"}},
                }
            },
            "plugins": {"reports": {"bindings": ["sessions"]}},
            "knownPlugins": ["reports", "catalog"],
        }
    )
    yield manager
    manager.clear(plugin="reports")
    host.run(manager.binding("sessions").store.aclose())
    manager.close()


@pytest.fixture
def two_bindings(host: HostLoop, manager: CacheManager) -> Iterator[Plugin]:
    """Plugin ``reports`` launched with every binding it is granted (memory ``default``,
    Redis ``sessions``); its environment holds a stale CACHEKIT_CACHE_SOCKET the launcher
    must not pass on."""
    env = dict(os.environ, CACHEKIT_CACHE_SOCKET="/nonexistent/stale.sock")
    plugin = start_plugin(host, "reports", socket_bindings(manager, "reports"), env=env)
    yield plugin
    plugin.stop()


def test_each_tenant_sees_only_its_own_data_in_each_binding(
    two_bindings: Plugin, manager: CacheManager
) -> None:
    """Writes for acme and globex through the memory and the Redis binding read back per
    tenant and binding, and land in the host's scope of (reports, tenant) of that binding."""
    plugin = two_bindings
    for binding in ("default", "sessions"):
        for tenant in ("acme", "globex"):
            value = {"tenant": tenant, "binding": binding}
            plugin.ok(cmd="set", binding=binding, tenant=tenant, key="profile", value=value)
    for binding in ("default", "sessions"):
        for tenant in ("acme", "globex"):
            expected = {"tenant": tenant, "binding": binding}
            assert plugin.ok(cmd="get", binding=binding, tenant=tenant, key="profile") == expected
            host_side = manager.for_plugin("reports", tenant, binding=binding)
            assert host_side.get("profile") == expected
        assert plugin.ok(cmd="get", binding=binding, tenant="initech", key="profile") is None
        assert plugin.ok(cmd="get", binding=binding, key="profile") is None  # platform scope
        assert manager.for_plugin("catalog", "acme").get("profile") is None


def test_a_named_bindings_default_ttl_applies_to_the_plugins_writes(
    two_bindings: Plugin, manager: CacheManager, redis_server: RedisServer
) -> None:
    """A write without a TTL through ``sessions`` gets that binding's defaultTtl (1 hour),
    as the host's own caches do."""
    two_bindings.ok(cmd="set", binding="sessions", tenant="acme", key="s", value=1)
    key = manager.full_key(manager.for_plugin("reports", "acme", binding="sessions"), "s")
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        assert 3500 < client.ttl(key) <= 3600
    finally:
        client.close()


def test_socket_bindings_are_the_granted_ones_and_checked(manager: CacheManager) -> None:
    """socket_bindings serves what the host grants; a binding not granted, or one that
    stores another value format, is refused when the host builds it."""
    assert list(socket_bindings(manager, "reports")) == ["default", "sessions"]
    assert list(socket_bindings(manager, "catalog")) == ["default"]
    with pytest.raises(CachePolicyError, match="sessions"):
        socket_binding(manager, "catalog", "sessions")
    bs = {"store": "redis", "connection": "redis://127.0.0.1:1", "valueFormat": "keyv-json"}
    keyv = CacheManager.from_section({"bindings": {"bs": bs}})  # connects to nothing
    with pytest.raises(ConfigError, match="keyv-json"):
        socket_binding(keyv, "reports", "bs")


def test_with_two_bindings_only_the_named_variables_are_set(
    two_bindings: Plugin,
) -> None:
    """The plugin sees CACHEKIT_CACHE_SOCKET_DEFAULT and _SESSIONS and no
    CACHEKIT_CACHE_SOCKET (not even the stale one of the host's environment), so asking
    for "the" cache is an error naming both."""
    plugin = two_bindings
    env = plugin.ok(cmd="env")
    sockets = sorted(k for k in env if k.startswith("CACHEKIT_CACHE_SOCKET"))
    assert sockets == ["CACHEKIT_CACHE_SOCKET_DEFAULT", "CACHEKIT_CACHE_SOCKET_SESSIONS"]
    assert env["CACHEKIT_PLUGIN"] == "reports"
    answer = plugin.ask(cmd="get", key="k")
    assert answer["error"] == "ConfigError"
    assert "CACHEKIT_CACHE_SOCKET_DEFAULT, CACHEKIT_CACHE_SOCKET_SESSIONS" in answer["message"]
    assert plugin.ask(cmd="get", binding="other", key="k")["error"] == "ConfigError"


def test_with_one_binding_both_variables_name_its_socket(host: HostLoop) -> None:
    """One binding: CACHEKIT_CACHE_SOCKET and CACHEKIT_CACHE_SOCKET_<NAME> are the same
    path, and cache() with no name uses it."""
    manager = CacheManager()
    plugin = start_plugin(host, "reports", {"sessions": socket_binding(manager, "reports")})
    try:
        env = plugin.ok(cmd="env")
        assert env["CACHEKIT_CACHE_SOCKET"] == env["CACHEKIT_CACHE_SOCKET_SESSIONS"]
        plugin.ok(cmd="set", tenant="acme", key="k", value=[1, 2])
        assert plugin.ok(cmd="get", binding="sessions", tenant="acme", key="k") == [1, 2]
        assert manager.for_plugin("reports", "acme").get("k") == [1, 2]
    finally:
        plugin.stop()


def test_sockets_are_private_and_removed_when_the_plugin_exits(host: HostLoop) -> None:
    """Each socket is mode 0600 in a 0700 directory; both are gone after the process
    exits."""
    plugin = start_plugin(host, "reports", {"default": socket_binding(CacheManager(), "reports")})
    path = Path(plugin.ok(cmd="path"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert plugin.finish() == 0
    assert not path.exists()
    assert not path.parent.exists()


def test_cached_works_in_the_plugin_process_per_tenant(
    two_bindings: Plugin,
) -> None:
    """@cached under cachekit.plugin.scope computes once per tenant and binding, then hits."""
    plugin = two_bindings
    first = plugin.ok(cmd="report", binding="sessions", tenant="acme", number=7)
    assert plugin.ok(cmd="report", binding="sessions", tenant="acme", number=7) == first
    other = plugin.ok(cmd="report", binding="sessions", tenant="globex", number=7)
    assert other["runs"] == first["runs"] + 1
    assert plugin.ok(cmd="report", binding="default", tenant="acme", number=7)["runs"] == 3


def test_a_pinned_socket_serves_its_tenant_only(host: HostLoop) -> None:
    """A process per tenant: the plugin's platform-scope calls land in the pinned tenant's
    scope, and naming another tenant is refused."""
    manager = CacheManager()
    bindings = {"default": socket_binding(manager, "reports")}
    plugin = start_plugin(host, "reports", bindings, tenant="acme")
    try:
        plugin.ok(cmd="set", key="k", value="for acme")
        assert manager.for_plugin("reports", "acme").get("k") == "for acme"
        assert manager.for_plugin("reports").get("k") is None
        answer = plugin.ask(cmd="get", tenant="globex", key="k")
        assert answer["error"] == "CacheKeyError"
        assert "serves tenant 'acme' only" in answer["message"]
    finally:
        plugin.stop()
