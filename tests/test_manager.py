"""CacheManager: the ways to build one, the TypeError for the wrong one, its repr and its
one start-up log line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from servers import MemcachedServer, RedisServer

from cachekit.config import CacheConfig, parse_cache_section
from cachekit.errors import ConfigError
from cachekit.host import CacheManager


def startup_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "cachekit" and r.levelno == logging.INFO]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the wrong argument -------------------------------------------------------------------


def test_a_url_given_to_the_constructor_points_to_from_url() -> None:
    """CacheManager("redis://...") is a TypeError naming CacheManager.from_url (the password
    masked), not an AttributeError from deep inside."""
    with pytest.raises(TypeError, match=r"use CacheManager\.from_url\(") as info:
        CacheManager("redis://:hunter2@cache:6379/0")  # type: ignore[arg-type]
    assert "hunter2" not in str(info.value)
    assert "redis://:***@cache:6379/0" in str(info.value)


def test_a_file_name_given_to_the_constructor_points_to_from_yaml() -> None:
    """CacheManager("app-config.yaml") is a TypeError naming CacheManager.from_yaml."""
    with pytest.raises(TypeError, match=r"from_yaml\('app-config.yaml'\)"):
        CacheManager("app-config.yaml")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"from_yaml\('app-config.yaml'\)"):
        CacheManager(Path("app-config.yaml"))  # type: ignore[arg-type]


def test_a_mapping_given_to_the_constructor_points_to_from_config_and_from_section() -> None:
    """CacheManager({...}) is a TypeError naming both mapping classmethods."""
    with pytest.raises(TypeError, match=r"from_config\(app_config\).*from_section\(section\)"):
        CacheManager({"store": "redis"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got int"):
        CacheManager(5)  # type: ignore[arg-type]


# --- the ways to build one ---------------------------------------------------------------


def test_from_config_refuses_the_bare_section_and_from_section_takes_it() -> None:
    """The backend.cache section given to from_config is a ConfigError naming
    from_section, which builds the same config as the wrapped mapping."""
    section = {"store": "memory", "defaultTtl": "5m", "memory": {"maxEntries": 10}}
    with pytest.raises(ConfigError, match="from_section"):
        CacheManager.from_config(section)
    wrapped = CacheManager.from_config({"backend": {"cache": section}})
    bare = CacheManager.from_section(section)
    assert bare.config == wrapped.config == parse_cache_section(section)
    assert bare.config.default_ttl == 300.0


def test_from_section_errors_name_the_given_path() -> None:
    """from_section(path=...) names that path in its errors (for sections read from
    elsewhere, such as a framework's settings)."""
    with pytest.raises(ConfigError, match=r"^CACHEKIT\.stroe: unknown key"):
        CacheManager.from_section({"stroe": "redis"}, path="CACHEKIT")


def test_from_yaml_names_the_files_in_a_config_error(tmp_path: Path) -> None:
    """A bad value in merged files names the config path and every file it came from."""
    base = write(tmp_path, "app-config.yaml", "backend:\n  cache:\n    store: memory\n")
    prod = write(tmp_path, "app-config.production.yaml", "backend:\n  cache:\n    defaultTtl: x\n")
    with pytest.raises(ConfigError) as info:
        CacheManager.from_yaml(base, prod)
    assert info.value.path == "backend.cache.defaultTtl"
    assert str(info.value).endswith(f"(in {base}, {prod})")


def test_from_url_builds_the_same_config_as_yaml(tmp_path: Path) -> None:
    """from_url and from_yaml of the same settings give equal configs."""
    path = write(
        tmp_path,
        "app-config.yaml",
        "backend:\n  cache:\n    store: redis\n    connection: redis://cache:6379/0\n"
        "    defaultTtl: 5m\n    redis: {client: {namespace: my-app}}\n",
    )
    url = CacheManager.from_url("redis://cache:6379/0?defaultTtl=5m&namespace=my-app")
    assert url.config == CacheManager.from_yaml(path).config
    assert url.config.connection_spec == CacheManager.from_yaml(path).config.connection_spec


def test_from_url_errors_are_config_errors() -> None:
    """An unknown query key raises ConfigError naming the known keys."""
    with pytest.raises(ConfigError, match="known: defaultTtl, failOpen"):
        CacheManager.from_url("redis://cache:6379?ttl=5m")


# --- repr and the start-up line ----------------------------------------------------------


def test_startup_line_for_a_redis_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Building a manager logs one INFO line with the store, the target with its password
    masked, and the file the config came from; nothing connects."""
    path = write(
        tmp_path,
        "app-config.yaml",
        "backend:\n  cache:\n    store: redis\n    connection: redis://:hunter2@cache:6379/0\n",
    )
    with caplog.at_level(logging.INFO, logger="cachekit"):
        manager = CacheManager.from_yaml(path)
    (line,) = startup_lines(caplog)
    assert line.getMessage() == (
        f"cachekit: redis store at redis://:***@cache:6379/0; config from {path}"
    )
    assert "hunter2" not in caplog.text
    assert "hunter2" not in repr(manager)
    assert repr(manager) == (
        f"CacheManager(store='redis', target='redis://:***@cache:6379/0', source='{path}')"
    )


def test_startup_line_for_a_file_without_a_cache_section(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file without backend.cache still means the memory store, and the line says so and
    that the store is per process."""
    path = write(tmp_path, "app-config.yaml", "app:\n  title: x\nbackend:\n  baseUrl: x\n")
    with caplog.at_level(logging.INFO, logger="cachekit"):
        manager = CacheManager.from_yaml(path)
    assert manager.config == CacheConfig()
    (line,) = startup_lines(caplog)
    message = line.getMessage()
    assert message.startswith("cachekit: memory store (per process: each worker process")
    assert "set backend.cache.store for a shared cache" in message
    assert message.endswith(f"config from {path}, which has no backend.cache section: the defaults")


@pytest.mark.parametrize(
    ("build", "line"),
    [
        (
            lambda: CacheManager(),
            "memory store (per process: each worker process has its own; set "
            "backend.cache.store for a shared cache); config from the defaults (no config)",
        ),
        (
            lambda: CacheManager.from_config({"app": {}}),
            "; config from a mapping, which has no backend.cache section: the defaults",
        ),
        (
            lambda: CacheManager.from_section(
                {"store": "memcache", "connection": "u:pw@a:1,u:pw@b"}
            ),
            "memcache store at a:1,b:11211 (sasl as u); config from a backend.cache mapping",
        ),
        (
            lambda: CacheManager.from_url("rediss://u:pw@cache:6380/1?namespace=x"),
            "redis store at rediss://u:***@cache:6380/1; config from the URL "
            "rediss://u:***@cache:6380/1?namespace=x",
        ),
        (
            lambda: CacheManager.from_url("valkey://:pw@c:7000?keyPrefix=v:"),
            "valkey store at redis://:***@c:7000; config from the URL valkey://:***@c:7000",
        ),
        (
            lambda: CacheManager.from_section(
                {
                    "store": "redis",
                    "connection": "redis://:pw@x:1",
                    "redis": {
                        "cluster": {"rootNodes": [{"url": "redis://a:7000"}, "redis://b:7001"]}
                    },
                }
            ),
            "redis store at cluster a:7000,b:7001; config from",
        ),
        (
            lambda: CacheManager.from_section(
                {
                    "store": "redis",
                    "connection": "redis://:pw@x:1",
                    "redis": {"sentinel": {"sentinels": ["s1:26379"], "password": "pw"}},
                }
            ),
            "redis store at sentinel s1:26379 master mymaster; config from",
        ),
        (
            lambda: CacheManager(parse_cache_section({"defaultTtl": 1000})),
            "; config from a CacheConfig",
        ),
    ],
)
def test_startup_line_names_store_target_and_source(
    build: object, line: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each way of building a manager logs exactly one INFO line naming the store, where it
    connects (passwords masked) and where the config came from."""
    with caplog.at_level(logging.INFO, logger="cachekit"):
        build()  # type: ignore[operator]
    (record,) = startup_lines(caplog)
    assert line in record.getMessage()
    assert ":pw@" not in caplog.text
    assert "'pw'" not in caplog.text


def test_a_store_passed_in_is_described_by_its_own_target(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A manager given a store instance logs and shows that store's (masked) target."""
    pytest.importorskip("redis")
    from cachekit.stores.redis import RedisStore

    with caplog.at_level(logging.INFO, logger="cachekit"):
        manager = CacheManager(store=RedisStore.from_url("redis://:pw@cache:6379/0"))
    (record,) = startup_lines(caplog)
    assert record.getMessage() == (
        "cachekit: redis store at redis://:***@cache:6379/0; config from a store instance"
    )
    assert repr(manager).startswith("CacheManager(store='redis', target='redis://:***@cache")


# --- from_url on the real servers -----------------------------------------------------------


def test_from_url_on_a_real_redis_with_a_password(private_redis_server: RedisServer) -> None:
    """A redis:// URL with a password, a db and query options reaches a real server that
    requires the password, with the namespace and defaultTtl from the query applied."""
    import redis

    server = private_redis_server
    raw = redis.Redis(host=server.host, port=server.port)
    raw.config_set("requirepass", "s3cret")
    try:
        url = (
            f"redis://:s3cret@{server.host}:{server.port}/3"
            "?namespace=my-app&defaultTtl=5m&maxConnections=4"
        )
        with CacheManager.from_url(url) as manager:
            cache = manager.for_plugin("catalog", tenant="acme")
            cache.set("k", {"a": 1})
            assert cache.get("k") == {"a": 1}
        authed = redis.Redis(
            host=server.host,
            port=server.port,
            password="s3cret",
            db=3,
        )
        assert authed.exists("my-app:catalog:acme::k") == 1
        assert 290 < authed.ttl("my-app:catalog:acme::k") <= 300
        authed.close()
    finally:
        raw.close()


def test_from_url_on_a_real_valkey(valkey_server: RedisServer) -> None:
    """A valkey:// URL builds the valkey store and reaches a real valkey-server."""
    url = valkey_server.url.replace("redis://", "valkey://", 1)
    with CacheManager.from_url(f"{url}?keyPrefix=v-test:") as manager:
        assert manager.store_name == "valkey"
        cache = manager.for_plugin("p", tenant="t")
        cache.set("k", 1)
        assert cache.get("k") == 1
        cache.clear()


def test_from_url_on_real_memcached_with_sasl(memcached_sasl_server: MemcachedServer) -> None:
    """memcache://user:pass@host:port reaches a real SASL memcached with those
    credentials."""
    s = memcached_sasl_server
    url = f"memcache://{s.username}:{s.password}@{s.host}:{s.port}?maxConnections=3"
    with CacheManager.from_url(url) as manager:
        assert manager.config.connection_spec.auth == "sasl"
        cache = manager.for_plugin("p", tenant="t")
        cache.set("k", "v")
        assert cache.get("k") == "v"
        assert s.password is not None
        assert s.password not in repr(manager)
