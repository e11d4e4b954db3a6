"""Parsing `backend.cache`: defaults, every section, and a typed error for every bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from cachekit.config import (
    CacheConfig,
    load_app_config,
    parse_app_config,
    parse_cache_section,
)
from cachekit.errors import ConfigError
from cachekit.host import CacheManager


def test_defaults_are_the_memory_store() -> None:
    """No backend.cache section means the bounded in-memory store and no default TTL."""
    config = parse_app_config({"app": {"title": "x"}})
    assert config == CacheConfig()
    assert config.store == "memory"
    assert config.default_ttl is None
    assert config.memory.max_entries == 100_000
    assert config.timeouts.operation < 1
    assert config.timeouts.connect < 1


def test_full_section() -> None:
    """Every documented key is read into its typed field."""
    config = parse_cache_section(
        {
            "store": "memory",
            "connection": "redis://localhost:6379",
            "defaultTtl": "5m",
            "failOpen": False,
            "memory": {"maxEntries": 10, "maxBytes": None},
            "redis": {
                "client": {
                    "namespace": "my-app",
                    "keyPrefixSeparator": "/",
                    "clearBatchSize": 50,
                    "useUnlink": False,
                },
                "cluster": {"rootNodes": [{"url": "redis://a:1"}, "redis://b:2"]},
                "sentinel": {"sentinels": ["h1:26379", "h2:26379"], "masterName": "main"},
            },
            "valkey": {"keyPrefix": "flat:", "client": {"clearBatchSize": 7}},
            "memcache": {"auth": "ascii", "maxValueSize": 2048, "generationRefresh": 500},
            "timeouts": {"connect": 100, "operation": "2s"},
            "circuitBreaker": {"failureThreshold": 5, "cooldown": {"seconds": 3}},
            "infinispan": {"servers": [{"host": "ispn", "port": 11222}], "cacheName": "c"},
        }
    )
    assert config.default_ttl == 300.0
    assert config.fail_open is False
    assert (config.memory.max_entries, config.memory.max_bytes) == (10, None)
    assert config.redis.client.key_prefix == "my-app/"
    assert config.redis.client.clear_batch_size == 50
    assert config.redis.client.use_unlink is False
    assert config.redis.cluster is not None
    assert config.redis.cluster.root_nodes == ("redis://a:1", "redis://b:2")
    assert config.redis.sentinel is not None
    assert config.redis.sentinel.sentinels == ("h1:26379", "h2:26379")
    assert config.redis.sentinel.master_name == "main"
    assert config.valkey.effective_key_prefix == "flat:"
    assert config.valkey.client.clear_batch_size == 7
    assert config.memcache.generation_refresh == 0.5
    assert (config.timeouts.connect, config.timeouts.operation) == (0.1, 2.0)
    assert (config.circuit_breaker.failure_threshold, config.circuit_breaker.cooldown) == (5, 3.0)
    assert [(s.host, s.port) for s in config.infinispan.servers] == [("ispn", 11222)]
    assert config.infinispan.cache_name == "c"


def test_valkey_client_prefix_wins_over_flat() -> None:
    """valkey.client.keyPrefix is used when both forms are given."""
    config = parse_cache_section({"valkey": {"keyPrefix": "a:", "client": {"keyPrefix": "b:"}}})
    assert config.valkey.effective_key_prefix == "b:"


def test_redis_prefix_empty_without_namespace() -> None:
    """Without redis.client.namespace there is no global prefix."""
    assert parse_cache_section({}).redis.client.key_prefix == ""


def test_connection_forms() -> None:
    """connection may be a string, a list of servers or a mapping."""
    assert parse_cache_section({"connection": ["a:1", "b:2"]}).connection == ("a:1", "b:2")
    mapping = parse_cache_section({"connection": {"url": "redis://x"}}).connection
    assert dict(mapping) == {"url": "redis://x"}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        ({"stroe": "memory"}, "backend.cache.stroe", "did you mean 'store'"),
        ({"memory": {"maxEntry": 5}}, "backend.cache.memory.maxEntry", "did you mean 'maxEntries'"),
        ({"memory": {"maxEntries": 0}}, "backend.cache.memory.maxEntries", "at least 1"),
        ({"memory": {"maxEntries": "10"}}, "backend.cache.memory.maxEntries", "whole number"),
        ({"memory": []}, "backend.cache.memory", "mapping"),
        ({"defaultTtl": -1000}, "backend.cache.defaultTtl", ">= 0"),
        ({"defaultTtl": "soon"}, "backend.cache.defaultTtl", "cannot read"),
        ({"defaultTtl": {"weeks": 1000}}, "backend.cache.defaultTtl", "at most 10 years"),
        ({"failOpen": "yes"}, "backend.cache.failOpen", "true or false"),
        ({"redis": {"client": {"useUnlink": 1}}}, "backend.cache.redis.client.useUnlink", "true"),
        (
            {"redis": {"cluster": {"rootNodes": []}}},
            "backend.cache.redis.cluster.rootNodes",
            "list",
        ),
        ({"redis": {"cluster": {"rootNodes": [{"uri": "x"}]}}}, "rootNodes[0].uri", "'url'"),
        ({"timeouts": {"operation": 0}}, "backend.cache.timeouts.operation", "positive"),
        ({"connection": 5}, "backend.cache.connection", "URL string"),
        ({"store": 5}, "backend.cache.store", "string"),
    ],
)
def test_errors_name_the_path_and_the_fix(
    section: dict[str, object], path: str, message: str
) -> None:
    """Every bad value raises ConfigError starting with its config path."""
    with pytest.raises(ConfigError, match=message) as info:
        parse_cache_section(section)
    assert path in str(info.value)
    assert info.value.path.endswith(path)


def test_unknown_store_lists_known_ones_with_a_suggestion() -> None:
    """A typo'd store names the known stores and the closest match."""
    with pytest.raises(ConfigError) as info:
        parse_cache_section({"store": "redsi"})
    message = str(info.value)
    assert message.startswith("backend.cache.store: unknown store 'redsi'")
    assert "did you mean 'redis'" in message
    assert "memory, redis, valkey, memcache" in message


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """A store whose driver is not installed says which extra to install."""
    import cachekit.stores

    monkeypatch.setattr(cachekit.stores, "_installed", lambda module: False)
    with pytest.raises(ConfigError, match=r"pip install 'cachekit\[memcache\]'"):
        parse_cache_section({"store": "memcache"})
    with pytest.raises(ConfigError, match=r"pip install 'cachekit\[valkey\]'"):
        parse_cache_section({"store": "valkey"})


# --- memcache: the connection spec is parsed with the section ---------------------------


def test_memcache_connection_spec_is_parsed_with_the_section() -> None:
    """store: memcache reads servers, auth, memcache options, timeouts and the breaker
    threshold into one frozen MemcacheConnectionSpec when the section is parsed."""
    from cachekit.config.memcache import MemcacheConnectionSpec, MemcacheServer

    config = parse_cache_section(
        {
            "store": "memcache",
            "connection": ["u:p@a:1", "u:q@[::1]"],
            "memcache": {"auth": "ASCII", "maxValueSize": 2048, "deadRetry": "2s"},
            "timeouts": {"connect": 100, "operation": "2s"},
            "circuitBreaker": {"failureThreshold": 5},
        }
    )
    assert config.connection_spec == MemcacheConnectionSpec(
        (MemcacheServer("a", 1, "u", "p"), MemcacheServer("::1", 11211, "u", "q")),
        "ascii",
        max_value_size=2048,
        generation_refresh=1.0,
        dead_retry=2.0,
        connect_timeout=0.1,
        timeout=2.0,
        failure_threshold=5,
    )
    with pytest.raises(AttributeError):
        config.connection_spec.auth = "sasl"


def test_memcache_credentials_mean_sasl_unless_told_otherwise() -> None:
    """user:password@ without memcache.auth is SASL; without credentials, no auth."""
    sasl = parse_cache_section({"store": "memcache", "connection": "u:p@a:1"})
    plain = parse_cache_section({"store": "memcache", "connection": "a:1,b:2"})
    assert sasl.connection_spec.auth == "sasl"
    assert plain.connection_spec.auth == "none"
    assert [s.address for s in plain.connection_spec.servers] == ["a:1", "b:2"]


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        ({}, "backend.cache.connection", "needs a connection"),
        ({"connection": "a:1,a:1"}, "backend.cache.connection", "listed twice"),
        ({"connection": ["u:p@a:1", "b:2"]}, "backend.cache.connection", "every server or"),
        ({"connection": "a:x"}, "backend.cache.connection", "port 'x'"),
        (
            {"connection": "a:1", "memcache": {"auth": "ascii"}},
            "backend.cache.memcache.auth",
            "needs",
        ),
        (
            {"connection": "u:p@a:1", "memcache": {"auth": "krb"}},
            "backend.cache.memcache.auth",
            "unknown",
        ),
    ],
)
def test_bad_memcache_connection_fails_when_the_section_is_parsed(
    section: dict[str, object], path: str, message: str
) -> None:
    """A bad server list or auth fails at parse time (no store built), naming the path."""
    with pytest.raises(ConfigError, match=message) as info:
        parse_cache_section({"store": "memcache", **section})
    assert info.value.path == path


def test_other_stores_ignore_a_server_list() -> None:
    """The memcache spec is only built for store: memcache (memory has no spec)."""
    assert parse_cache_section({"connection": "not a server"}).connection_spec is None


def test_bad_dotted_path() -> None:
    """A dotted store path that does not import raises ConfigError."""
    with pytest.raises(ConfigError, match="cannot load store"):
        parse_cache_section({"store": "nowhere.module:Store"})


def test_env_substitution(monkeypatch: pytest.MonkeyPatch) -> None:
    """${VAR} references are replaced by environment variables."""
    monkeypatch.setenv("CACHE_NS", "prod-app")
    config = parse_cache_section({"redis": {"client": {"namespace": "${CACHE_NS}-x"}}})
    assert config.redis.client.namespace == "prod-app-x"


def test_unset_env_var_names_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset ${VAR} raises ConfigError naming the variable and the path."""
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE is not set") as info:
        parse_cache_section({"connection": "redis://${NOT_SET_ANYWHERE}:6379"})
    assert info.value.path == "backend.cache.connection"


def test_backend_must_be_a_mapping() -> None:
    """A non-mapping backend section is refused."""
    with pytest.raises(ConfigError, match="backend"):
        parse_app_config({"backend": "redis"})


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_from_yaml_deep_merges_later_files_winning(tmp_path: Path) -> None:
    """Later files override earlier ones key by key, keeping untouched siblings."""
    base = write(
        tmp_path,
        "app-config.yaml",
        "backend:\n  cache:\n    store: memory\n    defaultTtl: 1m\n"
        "    memory: {maxEntries: 10, maxBytes: 1000}\n",
    )
    prod = write(
        tmp_path, "app-config.production.yaml", "backend:\n  cache:\n    memory: {maxEntries: 20}\n"
    )
    manager = CacheManager.from_yaml(base, prod)
    assert manager.config.default_ttl == 60.0
    assert manager.config.memory.max_entries == 20
    assert manager.config.memory.max_bytes == 1000
    assert manager.for_plugin("p").default_ttl == 60.0


def test_from_yaml_missing_file(tmp_path: Path) -> None:
    """A missing file raises ConfigError naming it."""
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_app_config(tmp_path / "nope.yaml")


def test_from_yaml_invalid_yaml(tmp_path: Path) -> None:
    """Broken YAML raises ConfigError naming the file."""
    bad = write(tmp_path, "bad.yaml", "backend: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_app_config(bad)


def test_from_yaml_top_level_must_be_mapping(tmp_path: Path) -> None:
    """A YAML file whose top level is a list is refused."""
    with pytest.raises(ConfigError, match="mapping"):
        load_app_config(write(tmp_path, "list.yaml", "- a\n- b\n"))


def test_from_yaml_needs_a_path() -> None:
    """load_app_config() without files says what to pass."""
    with pytest.raises(ConfigError, match="at least one"):
        load_app_config()


def test_empty_yaml_file_gives_defaults(tmp_path: Path) -> None:
    """An empty config file means the defaults."""
    assert CacheManager.from_yaml(write(tmp_path, "empty.yaml", "")).config == CacheConfig()


def test_config_is_frozen() -> None:
    """Parsed config cannot be changed after start-up."""
    config = CacheConfig()
    with pytest.raises(AttributeError):
        config.store = "redis"  # type: ignore[misc]


# --- the Redis/Valkey connection spec (cachekit.config.redis) ---------------------------


def test_redis_connection_is_parsed_with_the_section() -> None:
    """store: redis parses connection, timeouts, breaker and client options into one typed
    spec when the section is parsed; the password stays out of its repr."""
    from cachekit.config.redis import RedisConnectionSpec

    config = parse_cache_section(
        {
            "store": "redis",
            "connection": {
                "url": "redis://cache.internal:6380",
                "username": "app",
                "password": "hunter2",
                "db": 2,
                "maxConnections": 9,
                "clientName": "web",
            },
            "timeouts": {"connect": "100ms", "operation": "300ms"},
            "circuitBreaker": {"failureThreshold": 5, "cooldown": "1s"},
            "redis": {"client": {"namespace": "app", "clearBatchSize": 10, "useUnlink": False}},
        }
    )
    spec = config.connection_spec
    assert isinstance(spec, RedisConnectionSpec)
    assert (spec.name, spec.mode, spec.url) == (
        "redis",
        "standalone",
        "redis://cache.internal:6380",
    )
    assert (spec.username, spec.password, spec.db) == ("app", "hunter2", 2)
    assert (spec.max_connections, spec.client_name) == (9, "web")
    assert (spec.connect_timeout, spec.operation_timeout) == (0.1, 0.3)
    assert (spec.failure_threshold, spec.cooldown) == (5, 1.0)
    assert (spec.key_prefix, spec.clear_batch_size, spec.use_unlink) == ("app:", 10, False)
    assert "hunter2" not in repr(spec)
    assert spec.target == "redis://cache.internal:6380"


def test_a_bad_redis_connection_fails_when_the_section_is_parsed() -> None:
    """A bad Redis URL is a ConfigError from parse_cache_section itself, before any store
    or manager is built."""
    with pytest.raises(ConfigError, match="unsupported URL") as info:
        parse_cache_section({"store": "redis", "connection": "http://localhost:6379"})
    assert info.value.path == "backend.cache.connection"


def test_cluster_spec_takes_credentials_and_tls_from_the_nodes() -> None:
    """A cluster's seed nodes become (host, port) pairs; the first node URL with
    credentials gives them to all nodes, and rediss:// turns TLS on."""
    config = parse_cache_section(
        {
            "store": "valkey",
            "valkey": {
                "cluster": {
                    "rootNodes": [{"url": "rediss://a:7000"}, "rediss://u:pw@b:7001"],
                },
                "keyPrefix": "v:",
            },
        }
    )
    spec = config.connection_spec
    assert (spec.name, spec.mode) == ("valkey", "cluster")
    assert spec.nodes == (("a", 7000), ("b", 7001))
    assert (spec.username, spec.password, spec.ssl) == ("u", "pw", True)
    assert spec.key_prefix == "v:"
    assert spec.target == "cluster a:7000,b:7001"
    assert "pw" not in repr(spec)


def test_sentinel_spec() -> None:
    """Sentinel addresses, master name and the sentinels' own password are parsed; the
    connection gives the master's credentials and database."""
    config = parse_cache_section(
        {
            "store": "redis",
            "connection": "redis://:masterpw@ignored:1/4",
            "redis": {
                "sentinel": {
                    "sentinels": ["s1:26379", "redis://s2:26380"],
                    "masterName": "main",
                    "password": "sentinelpw",
                }
            },
        }
    )
    spec = config.connection_spec
    assert spec.mode == "sentinel"
    assert spec.sentinels == (("s1", 26379), ("s2", 26380))
    assert (spec.master_name, spec.sentinel_password) == ("main", "sentinelpw")
    assert (spec.password, spec.db) == ("masterpw", 4)
    assert "sentinelpw" not in repr(spec)
    assert "masterpw" not in repr(spec)


def test_other_stores_have_no_redis_spec() -> None:
    """The memory store's section carries no connection spec."""
    assert parse_cache_section({}).connection_spec is None


def test_the_redis_config_module_imports_no_store() -> None:
    """cachekit.config.redis depends on no store module (the stores depend on it)."""
    import ast

    import cachekit.config.redis as module

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    imported = [
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ] + [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    assert imported
    assert not [name for name in imported if name.startswith("cachekit.stores")]


# --- the shape of the app config -------------------------------------------------------


@pytest.mark.parametrize(
    ("app_config", "path", "message"),
    [
        (
            {"store": "redis", "connection": "redis://cache:6379"},
            "<root>",
            r"looks like the backend.cache section itself .*"
            r"\{'backend': \{'cache': \{\.\.\.\}\}\}.*CacheManager.from_section",
        ),
        ({"defaultTtl": "5m"}, "<root>", "backend.cache section itself"),
        ({"cache": {"store": "redis"}}, "cache", "did you mean backend.cache"),
        ({"backend": {"caches": {"store": "redis"}}}, "backend.caches", "did you mean backend"),
        ({"backend": {"Cache": {"store": "redis"}}}, "backend.Cache", "did you mean backend"),
        ({"backend": {"store": "redis"}}, "backend", "move them under backend.cache"),
    ],
)
def test_an_app_config_of_the_wrong_shape_is_refused(
    app_config: dict[str, object], path: str, message: str
) -> None:
    """A mapping that holds a cache section anywhere but at backend.cache is a ConfigError
    naming the expected shape and the fix, not a silent in-memory store."""
    with pytest.raises(ConfigError, match=message) as info:
        parse_app_config(app_config)
    assert info.value.path == path
    assert "backend.cache" in str(info.value)


def test_a_backstage_app_config_without_a_cache_section_means_memory() -> None:
    """Other backend keys (Backstage's baseUrl, database, metrics) and other top-level
    sections are not mistaken for a misplaced cache section."""
    config = parse_app_config(
        {
            "app": {"title": "x"},
            "backend": {"baseUrl": "http://x", "database": {"client": "pg"}, "metrics": {}},
            "catalog": {"rules": []},
        }
    )
    assert config == CacheConfig()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("backend:\n  caches:\n    store: redis\n", "backend.caches: .*did you mean backend.cache"),
        ("cache:\n  store: redis\n", "cache: .*did you mean backend.cache"),
        ("store: redis\nconnection: redis://cache:6379\n", "backend.cache section itself"),
    ],
)
def test_a_yaml_file_of_the_wrong_shape_names_itself(
    tmp_path: Path, text: str, message: str
) -> None:
    """from_yaml refuses a file whose cache section is misplaced, naming the file."""
    path = write(tmp_path, "app-config.yaml", text)
    with pytest.raises(ConfigError, match=message) as info:
        CacheManager.from_yaml(path)
    assert str(path) in str(info.value)


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path: Path) -> None:
    """A YAML syntax error is reported as file:line:column with the parser's reason, not
    as '<unicode string>'."""
    path = write(tmp_path, "app-config.yaml", "backend:\n  cache:\n    store: [redis\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_app_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:4:1: not valid YAML: ")
    assert "line 3, column 12" in message  # where the unclosed sequence started
    assert "<unicode string>" not in message


def test_a_url_as_the_store_says_to_use_connection() -> None:
    """store: redis://... says to write store: redis and put the URL in connection (the
    password masked), not that module 'redis' has no attribute."""
    with pytest.raises(ConfigError) as info:
        parse_cache_section({"store": "redis://:hunter2@cache:6379/0"})
    message = str(info.value)
    assert info.value.path == "backend.cache.store"
    assert "write store: redis and put the URL in connection:" in message
    assert "redis://:***@cache:6379/0" in message
    assert "hunter2" not in message
    assert "has no attribute" not in message
    with pytest.raises(ConfigError, match="write store: valkey"):
        parse_cache_section({"store": "valkeys://cache:6379"})


# --- infinispan: Backstage's keys, checked ----------------------------------------------


def test_infinispan_section_is_read_with_backstage_keys() -> None:
    """Every Backstage infinispan key is read into its typed field; secrets stay out of
    the repr."""
    config = parse_cache_section(
        {
            "infinispan": {
                "version": 2.5,
                "cacheName": "backstage",
                "maxRetries": 5,
                "topologyUpdates": False,
                "mediaType": "application/json",
                "dataFormat": {"keyType": "text/plain", "valueType": "application/json"},
                "servers": [{"host": "a", "port": 11223}, {"host": "b"}],
                "authentication": {
                    "enabled": True,
                    "saslMechanism": "SCRAM-SHA-256",
                    "userName": "app",
                    "password": "hunter2",
                },
                "ssl": {"enabled": True, "trustCerts": ["/ca.pem"], "sniHostName": "ispn"},
                "clusters": [{"name": "site-b", "servers": [{"host": "c", "port": 1}]}],
            }
        }
    )
    ispn = config.infinispan
    assert (ispn.version, ispn.cache_name, ispn.max_retries) == ("2.5", "backstage", 5)
    assert ispn.media_type == "application/json"
    assert ispn.data_format.value_type == "application/json"
    assert [(s.host, s.port) for s in ispn.servers] == [("a", 11223), ("b", 11222)]
    assert ispn.authentication.sasl_mechanism == "SCRAM-SHA-256"
    assert ispn.authentication.password == "hunter2"
    assert ispn.ssl.trust_certs == ("/ca.pem",)
    assert ispn.clusters[0].name == "site-b"
    assert [(s.host, s.port) for s in ispn.clusters[0].servers] == [("c", 1)]
    assert "hunter2" not in repr(config)
    single = parse_cache_section({"infinispan": {"servers": {"port": 11999}}})
    assert [(s.host, s.port) for s in single.infinispan.servers] == [("127.0.0.1", 11999)]


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        ({"cachename": "x"}, "backend.cache.infinispan.cachename", "did you mean 'cacheName'"),
        ({"servers": "ispn:11222"}, "backend.cache.infinispan.servers", "list of {host, port}"),
        ({"servers": [{"port": 1}]}, "backend.cache.infinispan.servers[0]", "missing 'host'"),
        ({"servers": [{"host": "a", "prot": 1}]}, "servers[0].prot", "did you mean 'port'"),
        ({"servers": [{"host": "a", "port": 0}]}, "servers[0].port", "port number"),
        ({"mediaType": "text/html"}, "backend.cache.infinispan.mediaType", "text/plain"),
        ({"version": "3.0"}, "backend.cache.infinispan.version", "2.9, 2.5, 2.2"),
        (
            {"authentication": {"username": "x"}},
            "backend.cache.infinispan.authentication.username",
            "did you mean 'userName'",
        ),
        (
            {"authentication": {"saslMechanism": "MD5"}},
            "authentication.saslMechanism",
            "SCRAM-SHA-256",
        ),
        ({"clusters": [{"name": "b"}]}, "backend.cache.infinispan.clusters[0].servers", "missing"),
    ],
)
def test_infinispan_section_rejects_unknown_keys_and_bad_values(
    section: dict[str, object], path: str, message: str
) -> None:
    """An infinispan section is checked like every other: unknown keys with a did-you-mean,
    bad values naming their path."""
    with pytest.raises(ConfigError, match=message) as info:
        parse_cache_section({"infinispan": section})
    assert info.value.path.endswith(path)


def test_infinispan_section_is_parsed_into_the_stores_spec() -> None:
    """store: infinispan parses its section into the store's connection spec at start-up:
    servers, backup clusters, cacheName, authentication (PLAIN is HTTP Basic)."""
    config = parse_cache_section(
        {
            "store": "infinispan",
            "infinispan": {
                "servers": [{"host": "a"}],
                "cacheName": "c",
                "authentication": {
                    "enabled": True,
                    "userName": "u",
                    "password": "hunter2",
                    "saslMechanism": "PLAIN",
                },
                "clusters": [{"name": "b", "servers": [{"host": "x", "port": 1}]}],
            },
        }
    )
    spec = config.connection_spec
    assert [(e.address, e.cluster) for e in spec.endpoints] == [("a:11222", None), ("x:1", "b")]
    assert (spec.cache_name, spec.auth, spec.username) == ("c", "basic", "u")
    assert config.target == "http://a:11222 cache 'c' (basic as u); backup b: x:1"
    assert "hunter2" not in repr(spec)


# --- passwords never shown ---------------------------------------------------------------


@pytest.mark.parametrize(
    "section",
    [
        {"store": "redis", "connection": "redis://app:hunter2@cache:6379/0"},
        {"store": "redis", "connection": {"url": "redis://cache:6379", "password": "hunter2"}},
        {
            "store": "redis",
            "connection": "redis://:hunter2@x:1",
            "redis": {"sentinel": {"sentinels": ["s:26379"], "password": "hunter2"}},
        },
        {"store": "memcache", "connection": "app:hunter2@a:11211,app:hunter2@b:11211"},
        {"store": "memcache", "connection": ["app:hunter2@a", "app:hunter2@b"]},
        {"store": "memory", "connection": "redis://:hunter2@x"},
        {"store": "memory", "options": {"password": "hunter2"}},
    ],
)
def test_no_password_in_the_config_repr_or_target(section: dict[str, object]) -> None:
    """repr(CacheConfig), its connection spec and its target mask every password."""
    config = parse_cache_section(section)
    for shown in (repr(config), repr(config.connection_spec), config.target):
        assert "hunter2" not in shown
    assert "***" in repr(config)


def test_config_repr_shows_what_differs_from_the_defaults() -> None:
    """repr(CacheConfig) lists only the keys set away from their defaults."""
    assert repr(CacheConfig()) == "CacheConfig()"
    config = parse_cache_section({"store": "redis", "connection": "redis://h:1", "defaultTtl": 5})
    assert repr(config) == "CacheConfig(store='redis', connection='redis://h:1', default_ttl=0.005)"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("rediss://user:p@ss/w@h/0", "rediss://user:***@h/0"),
        ("u:pw@h1:11211,h2:11211", "u:***@h1:11211,h2:11211"),
        ("u:pa,ss@h1", "u:***@h1"),
        ("u:a@h1,v:b@h2", "u:***@h1,v:***@h2"),
        ("rediss://h/0?ssl_password=pw&db=1", "rediss://h/0?ssl_password=***&db=1"),
        ("unix:///run/a@b.sock?db=0", "unix:///run/a@b.sock?db=0"),
        ("redis://user@h", "redis://user@h"),
    ],
)
def test_redact_masks_every_password_form(text: str, shown: str) -> None:
    """redact() masks passwords in URLs, memcache server lists and password-like query
    parameters, and leaves everything else as it was."""
    from cachekit.config.masking import redact

    assert redact(text) == shown


# --- one URL for the whole section (cachekit.config.url) ---------------------------------


@pytest.mark.parametrize(
    ("url", "section"),
    [
        (
            "redis://:pw@cache:6379/2?defaultTtl=5m&maxConnections=20&namespace=my-app"
            "&failOpen=false&connectTimeout=100&cooldown=5s",
            {
                "store": "redis",
                "connection": {"url": "redis://:pw@cache:6379/2", "maxConnections": 20},
                "defaultTtl": "5m",
                "failOpen": False,
                "redis": {"client": {"namespace": "my-app"}},
                "timeouts": {"connect": 100},
                "circuitBreaker": {"cooldown": "5s"},
            },
        ),
        (
            "valkeys://cache:6380/0?keyPrefix=app:&ssl_ca_certs=/etc/ca.pem",
            {
                "store": "valkey",
                "connection": "rediss://cache:6380/0?ssl_ca_certs=/etc/ca.pem",
                "valkey": {"keyPrefix": "app:"},
            },
        ),
        ("valkey://cache:6379", {"store": "valkey", "connection": "redis://cache:6379"}),
        (
            "unix:///run/redis.sock?db=3",
            {"store": "redis", "connection": "unix:///run/redis.sock?db=3"},
        ),
        (
            "memcache://app:p%40ss@h1:11211,h2:11211?maxConnections=7&auth=ascii",
            {
                "store": "memcache",
                "connection": ["app:p@ss@h1:11211", "app:p@ss@h2:11211"],
                "memcache": {"maxConnections": 7, "auth": "ascii"},
            },
        ),
        ("memcached://h1", {"store": "memcache", "connection": ["h1"]}),
        ("memory://", {}),
        ("memory://?maxEntries=10&maxBytes=null", {"memory": {"maxEntries": 10, "maxBytes": None}}),
    ],
)
def test_a_url_builds_the_config_its_yaml_twin_builds(url: str, section: dict[str, object]) -> None:
    """parse_cache_url gives the same CacheConfig (and connection spec) as the equivalent
    backend.cache mapping: one parser for both."""
    from cachekit.config.url import parse_cache_url

    from_url, from_yaml = parse_cache_url(url), parse_cache_section(section)
    assert from_url == from_yaml
    assert from_url.connection_spec == from_yaml.connection_spec


@pytest.mark.parametrize(
    ("url", "path", "message"),
    [
        (
            "redis://h?namepsace=x",
            "url?namepsace",
            r"did you mean 'namespace'\?.*known: defaultTtl",
        ),
        ("valkey://h?namespace=x", "url?namespace", "valkey takes keyPrefix"),
        ("memory://?ssl_ca_certs=x", "url?ssl_ca_certs", "known: defaultTtl"),
        ("redis://h?defaultTtl=1s&defaultTtl=2s", "url?defaultTtl", "given twice"),
        ("http://:pw@h", "url", r"unsupported URL 'http://:\*\*\*@h': use redis://"),
        ("cache.internal:6379", "url", "expected a URL"),
        ("memory://somewhere", "url", "takes no host"),
        ("redis://h?maxConnections=0", "backend.cache.connection.maxConnections", "at least|>= 1"),
        ("redis://:pw@h?defaultTtl=soon", "backend.cache.defaultTtl", r"redis://:\*\*\*@h"),
    ],
)
def test_bad_urls_name_the_fix(url: str, path: str, message: str) -> None:
    """An unknown scheme or query key, or a bad value, is a ConfigError naming the known
    keys or the backend.cache key at fault, never showing the password."""
    from cachekit.config.url import parse_cache_url

    with pytest.raises(ConfigError, match=message) as info:
        parse_cache_url(url)
    assert info.value.path == path
    assert ":pw@" not in str(info.value)
