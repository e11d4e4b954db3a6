"""Backstage's configuration as its docs write it: every backend.cache snippet loads, and
each option either takes effect (shown here, on real servers where it acts on one) or is
logged once as ignored, with the reason."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from infinispan_fake import FakeInfinispan
from servers import RedisCluster, RedisServer

from cachekit import ConfigError
from cachekit.config import parse_cache_section
from cachekit.host import CacheManager

# The five backend.cache examples of Backstage's cache service docs
# (https://backstage.io/docs/backend-system/core-services/cache), in their wording.
MEMORY = """
backend:
  cache:
    store: memory
"""
MEMCACHE = """
backend:
  cache:
    store: memcache
    connection: user:pass@cache.example.com:11211
"""
REDIS = """
backend:
  cache:
    store: redis
    connection: redis://localhost:6379
    # Store-specific configuration (optional)
    redis:
      client:
        # Global namespace prefix for all cache keys
        namespace: 'my-app'
        # Separator used between namespace and plugin ID (default: ':')
        keyPrefixSeparator: ':'
        # Other Redis-specific options...
        clearBatchSize: 1000
        useUnlink: false
"""
VALKEY = """
backend:
  cache:
    store: valkey
    connection: redis://localhost:6379
    # Store-specific configuration (optional)
    valkey:
      # Global namespace prefix for all cache keys (including separator used between
      # namespace and plugin ID)
      keyPrefix: 'my-app:'
"""
INFINISPAN = """
backend:
  cache:
    store: infinispan
    # Store-specific configuration (optional)
    infinispan:
      servers:
        # IP address or hostname of the server (default: '127.0.0.1')
        - host: 127.0.0.1
          # Port number of the server (default: '11222')
          port: 11222
      # Name of the cache (default: 'cache')
      cacheName: cache
      mediaType: application/json
      authentication:
        # Whether authentication is enabled (default: 'false')
        enabled: true
        userName: yourusername
        password: yourpassword
        saslMechanism: PLAIN
"""
# Red Hat Developer Hub's (a Backstage distribution) Redis example, with the legacy key.
USE_REDIS_SETS = """
backend:
  cache:
    store: redis
    connection: redis://user:pass@cache.example.com:6379
    useRedisSets: true
"""


def load(text: str, **replace: Any) -> dict[str, Any]:
    """A snippet as a mapping, with ``backend.cache`` keys replaced (a test server's URL)."""
    config: dict[str, Any] = yaml.safe_load(text)
    config["backend"]["cache"].update(replace)
    return config


def call_counts(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    yield client
    client.close()


@pytest.mark.parametrize("snippet", [MEMORY, MEMCACHE, REDIS, VALKEY, INFINISPAN, USE_REDIS_SETS])
def test_backstages_documented_snippets_load(snippet: str) -> None:
    """Each example of Backstage's docs builds a manager (which connects to nothing yet)."""
    manager = CacheManager.from_config(yaml.safe_load(snippet))
    assert manager.store_name == yaml.safe_load(snippet)["backend"]["cache"]["store"]


def test_the_infinispan_snippet_works_with_its_authentication(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The Infinispan example (PLAIN authentication, cacheName, mediaType), pointed at the
    fake Infinispan server with the example's credentials, stores, reads and counts;
    mediaType, a Hot Rod option, is logged once as ignored."""
    fake = FakeInfinispan(
        user="yourusername", password="yourpassword", workdir=tmp_path / "infinispan"
    ).start()
    try:
        config = load(INFINISPAN)
        config["backend"]["cache"]["infinispan"]["servers"][0]["port"] = fake.port
        with caplog.at_level(logging.WARNING, logger="cachekit"):
            manager = CacheManager.from_config(config)
        ignored = [r.getMessage() for r in caplog.records if "Hot Rod" in r.getMessage()]
        assert len(ignored) == 1
        assert "backend.cache.infinispan.mediaType" in ignored[0]
        cache = manager.for_plugin("catalog", tenant="acme")
        cache.set("entity", {"kind": "Component"}, ttl=60)
        assert cache.get("entity") == {"kind": "Component"}
        assert cache.incr("hits") == 1
        manager.close()
    finally:
        fake.kill()


def test_the_redis_snippets_options_take_effect(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    """The Redis example on a real server: keys are under my-app:, clear deletes with DEL
    (useUnlink: false) in batches of clearBatchSize."""
    manager = CacheManager.from_config(load(REDIS, connection=redis_server.url))
    try:
        cache = manager.for_plugin(f"p{uuid.uuid4().hex[:8]}")
        cache.set("k", 1, ttl=60)
        assert raw.get(manager.full_key(cache, "k")) == b"1"
        assert manager.full_key(cache, "k").startswith("my-app:")
        assert manager.store.clear_batch_size == 1000  # type: ignore[attr-defined]
        before = call_counts(raw)
        assert cache.clear() == 1
        after = call_counts(raw)
        assert after.get("del", 0) == before.get("del", 0) + 1
        assert after.get("unlink", 0) == before.get("unlink", 0)
    finally:
        manager.close()


def test_the_valkey_snippets_prefix_takes_effect(valkey_server: RedisServer) -> None:
    """The Valkey example on a real server: keys start with keyPrefix my-app:."""
    manager = CacheManager.from_config(load(VALKEY, connection=valkey_server.url))
    client = redis.Redis.from_url(valkey_server.url, socket_timeout=5)
    try:
        cache = manager.for_plugin(f"p{uuid.uuid4().hex[:8]}")
        cache.set("k", "v", ttl=60)
        assert manager.full_key(cache, "k").startswith("my-app:")
        assert client.exists(manager.full_key(cache, "k")) == 1
    finally:
        client.close()
        manager.close()


def test_ignored_options_are_logged_once_each(caplog: pytest.LogCaptureFixture) -> None:
    """useRedisSets and options without a redis-py counterpart are logged once, at
    start-up, with the path and the reason; using the caches logs nothing more."""
    client = {"throwOnErrors": True, "noNamespaceAffectsAll": True}
    config = load(USE_REDIS_SETS, redis={"client": client})
    with caplog.at_level(logging.WARNING, logger="cachekit"):
        manager = CacheManager.from_config(config)
        manager.for_plugin("catalog").namespace("users")
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(lines) == [
        "cachekit: backend.cache.redis.client.noNamespaceAffectsAll: ignored (cachekit's "
        "clear is always scoped; it never flushes the database)",
        "cachekit: backend.cache.redis.client.throwOnErrors: ignored (cachekit's failure "
        "policy decides: direct calls raise StoreError, @cached and the middleware fail open)",
        "cachekit: backend.cache.useRedisSets: ignored (deprecated in Backstage; cachekit's "
        "scoped clear finds a scope's keys without a Redis set)",
    ]


def test_client_options_of_an_object_connection_reach_the_server(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    """node-redis options beside the url take effect on a real server: name is the
    connection's CLIENT name, database the database written to."""
    name = f"backstage-{uuid.uuid4().hex[:8]}"
    url = f"redis://{redis_server.host}:{redis_server.port}"
    manager = CacheManager(
        parse_cache_section(
            {"store": "redis", "connection": {"url": url, "name": name, "database": 5}}
        )
    )
    db5 = redis.Redis.from_url(f"{url}/5", socket_timeout=5)
    try:
        cache = manager.for_plugin("catalog")
        cache.set("k", 1, ttl=60)
        assert db5.get(manager.full_key(cache, "k")) == b"1"
        assert name in [client.get("name") for client in raw.client_list()]
    finally:
        db5.delete(manager.full_key(manager.for_plugin("catalog"), "k"))
        db5.close()
        manager.close()


def test_socket_and_timing_options_reach_the_driver(redis_server: RedisServer) -> None:
    """socket.keepAlive/keepAliveInitialDelay, pingInterval and connect timeouts become the
    driver's connection arguments (read from its pool's public connection_kwargs)."""
    import socket

    section = {
        "store": "redis",
        "connection": {
            "url": redis_server.url,
            "pingInterval": "30 seconds",
            "socket": {"keepAlive": True, "keepAliveInitialDelay": 5000, "connectTimeout": "PT2S"},
        },
    }
    manager = CacheManager(parse_cache_section(section))
    try:
        kwargs = manager.store.client().connection_pool.connection_kwargs  # type: ignore[attr-defined]
        assert kwargs["socket_keepalive"] is True
        assert kwargs["socket_keepalive_options"] == {socket.TCP_KEEPIDLE: 5}
        assert kwargs["health_check_interval"] == 30.0
        assert kwargs["socket_connect_timeout"] == 2.0
        manager.for_plugin("catalog").set("k", 1, ttl=1)  # the arguments connect fine
    finally:
        manager.close()


def test_tls_options_turn_tls_on_or_are_logged_without_it() -> None:
    """socket.tls turns a redis:// URL into TLS and carries rejectUnauthorized and ca; without
    TLS those two are logged as ignored rather than passed to a plain connection."""
    tls = parse_cache_section(
        {
            "store": "redis",
            "connection": {
                "url": "redis://h:6379",
                "socket": {"tls": True, "rejectUnauthorized": False, "ca": "PEM"},
            },
        }
    ).connection_spec
    assert tls.ssl
    assert tls.url == "rediss://h:6379"
    assert dict(tls.options) == {"ssl_cert_reqs": "none", "ssl_ca_data": "PEM"}
    plain = parse_cache_section(
        {"store": "redis", "connection": {"url": "redis://h", "socket": {"ca": "PEM"}}}
    )
    assert dict(plain.connection_spec.options) == {}
    assert plain.ignored_options == (
        "backend.cache.connection.socket.ca: ignored (TLS is off: use rediss:// or socket.tls)",
    )


def test_use_replicas_sends_reads_to_replicas(redis_cluster: RedisCluster) -> None:
    """cluster.useReplicas: reads reach the replicas of a real cluster; without it none do."""
    replicas = [n for n in redis_cluster.nodes if n.info("replication")["role"] == "slave"]

    def replica_gets() -> int:
        total = 0
        for node in replicas:
            stats = node.info("commandstats").get("cmdstat_get", "calls=0")
            total += int(stats.split(",")[0].removeprefix("calls="))
        return total

    def reads(use_replicas: bool) -> int:
        cluster: dict[str, Any] = {
            "rootNodes": [{"url": u} for u in redis_cluster.root_urls],
            "useReplicas": use_replicas,
        }
        manager = CacheManager(
            parse_cache_section({"store": "redis", "redis": {"cluster": cluster}})
        )
        try:
            cache = manager.for_plugin(f"p{uuid.uuid4().hex[:8]}")
            cache.set("k", 1, ttl=60)
            before = replica_gets()
            for _ in range(40):
                cache.get("k")
            return replica_gets() - before
        finally:
            manager.close()

    assert reads(False) == 0
    assert reads(True) > 0


def test_cluster_options_are_accepted(caplog: pytest.LogCaptureFixture) -> None:
    """Backstage's cluster keys load: defaults are mapped like client options,
    maxCommandRedirections and minimizeConnections are logged as ignored with the reason."""
    section = {
        "store": "redis",
        "redis": {
            "cluster": {
                "rootNodes": [{"url": "redis://h1:7000"}],
                "defaults": {"password": "pw", "socket": {"connectTimeout": 3000}},
                "useReplicas": True,
                "maxCommandRedirections": 8,
                "minimizeConnections": True,
            }
        },
    }
    spec = parse_cache_section(section).connection_spec
    assert spec.password == "pw"
    assert spec.connect_timeout == 3.0
    assert spec.replica_reads
    with caplog.at_level(logging.WARNING, logger="cachekit"):
        CacheManager(parse_cache_section(section))
    text = caplog.text
    assert "cluster.maxCommandRedirections: ignored (redis-py follows at most 16" in text
    assert "cluster.minimizeConnections: ignored (redis-py already connects" in text


@pytest.mark.parametrize(
    ("connection", "path", "message"),
    [
        ({"url": "redis://h", "pingIntreval": 5}, "connection.pingIntreval", "pingInterval"),
        ({"url": "redis://h", "socket": {"keepalive": True}}, "socket.keepalive", "keepAlive"),
        ({"url": "redis://h", "database": "one"}, "connection.database", "whole number"),
        ({"url": "redis://h/1", "database": 2}, "connection", "given twice"),
    ],
)
def test_unknown_or_bad_client_options_are_config_errors(
    connection: dict[str, Any], path: str, message: str
) -> None:
    """An option neither Backstage nor node-redis has is a ConfigError with the closest
    known key; a bad value or a value given twice differently names its path."""
    with pytest.raises(ConfigError, match=message) as info:
        parse_cache_section({"store": "redis", "connection": connection})
    assert info.value.path is not None
    assert info.value.path.endswith(path)


def test_redis_client_options_are_read_too() -> None:
    """redis.client takes Backstage's @keyv/redis options: connectionTimeout is the connect
    timeout, a typo is a ConfigError naming the closest option."""
    spec = parse_cache_section(
        {
            "store": "redis",
            "connection": "redis://h",
            "redis": {"client": {"connectionTimeout": "2 seconds"}},
        }
    ).connection_spec
    assert spec.connect_timeout == 2.0
    with pytest.raises(ConfigError, match="did you mean 'throwOnErrors'"):
        parse_cache_section(
            {"store": "redis", "connection": "redis://h", "redis": {"client": {"throwOnError": 1}}}
        )


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2 seconds", 2.0),
        ("PT1M", 60.0),
        ({"minutes": 5}, 300.0),
        (1500, 1.5),
        ("1.5 hours", 5400.0),
    ],
)
def test_durations_in_backstages_forms_are_read_everywhere(value: Any, seconds: float) -> None:
    """Backstage's duration forms mean the same in defaultTtl, timeouts, the circuit
    breaker's cooldown, a plugin's defaultTtl and the client's connect timeouts."""
    config = parse_cache_section(
        {
            "store": "redis",
            "connection": {"url": "redis://h", "socket": {"connectTimeout": value}},
            "defaultTtl": value,
            "timeouts": {"operation": value},
            "circuitBreaker": {"cooldown": value},
            "plugins": {"catalog": {"defaultTtl": value}},
            "redis": {"client": {"connectionTimeout": value}},
        }
    )
    assert config.default_ttl == seconds
    assert config.timeouts.operation == seconds
    assert config.circuit_breaker.cooldown == seconds
    assert config.connection_spec.connect_timeout == seconds
    manager = CacheManager(config)
    assert manager.for_plugin("catalog").default_ttl == seconds
