"""keyLayout: backstage with valueFormat: keyv-json on a real Redis: the keys and bytes
cachekit writes are the ones Backstage's cache writes (tests/fixtures/backstage), cachekit
reads Backstage's entries back, clears follow @keyv/redis's, and what the layout gives up
(tenants) is refused at start-up."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from servers import RedisServer

from cachekit import CacheKeyError, CacheValueError, ConfigError, cached, current_cache
from cachekit.cli import main
from cachekit.config import parse_cache_section
from cachekit.host import CacheManager, CacheMiddleware, scope
from cachekit.resolvers import header

FIXTURES = json.loads(
    (Path(__file__).parent / "fixtures" / "backstage" / "redis_entries.json").read_text("utf-8")
)
CASES = FIXTURES["cases"]


def case_value(case: dict[str, Any]) -> Any:
    return base64.b64decode(case["value_base64"]) if "value_base64" in case else case["value"]


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture
def db(redis_server: RedisServer, raw: redis.Redis) -> Iterator[int]:
    """A database of the shared server of this test's own, emptied before and after (the
    fixtures' keys have no namespace of their own to keep tests apart)."""
    number = 7
    client = db_client(redis_server, number)
    client.flushdb()
    yield number
    client.flushdb()
    client.close()


async def app(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app for the middlewares under test (never called)."""


def backstage_manager(url: str, client: dict[str, Any] | None = None, **more: Any) -> CacheManager:
    section = {
        "store": "redis",
        "connection": url,
        "keyLayout": "backstage",
        "valueFormat": "keyv-json",
        "redis": {"client": client or {}},
        **more,
    }
    return CacheManager(parse_cache_section(section))


def db_url(redis_server: RedisServer, number: int) -> str:
    return f"redis://{redis_server.host}:{redis_server.port}/{number}"


def db_client(redis_server: RedisServer, number: int) -> redis.Redis:
    return redis.Redis.from_url(db_url(redis_server, number), socket_timeout=5)


@pytest.mark.parametrize(
    "case", [c for c in CASES if c["cachekit_writes_same_bytes"]], ids=lambda case: case["name"]
)
def test_cachekit_writes_the_key_and_bytes_backstage_writes(
    redis_server: RedisServer, db: int, case: dict[str, Any]
) -> None:
    """For each fixture, cachekit's set writes exactly Backstage's Redis key and value bytes."""
    manager = backstage_manager(db_url(redis_server, db), case["redis_client"])
    client = db_client(redis_server, db)
    try:
        manager.for_plugin(case["plugin"]).set(case["key"], case_value(case), ttl=0)
        assert client.keys("*") == [case["redis_key"].encode()]
        assert client.get(case["redis_key"]) == case["redis_value"].encode()
        assert client.pttl(case["redis_key"]) == -1  # no TTL asked, none set
    finally:
        client.close()
        manager.close()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case["name"])
def test_cachekit_reads_what_backstage_wrote(
    redis_server: RedisServer, db: int, case: dict[str, Any]
) -> None:
    """An entry as Backstage stores it (key and bytes from the fixture) reads back as its value."""
    manager = backstage_manager(db_url(redis_server, db), case["redis_client"])
    client = db_client(redis_server, db)
    try:
        client.set(case["redis_key"], case["redis_value"].encode(), px=60_000)
        cache = manager.for_plugin(case["plugin"])
        value = cache.get(case["key"], "MISSING")
        assert value == case_value(case)
        assert type(value) is type(case_value(case))
        assert cache.get_many([case["key"]]) == {case["key"]: case_value(case)}
    finally:
        client.close()
        manager.close()


@pytest.mark.anyio
async def test_async_calls_use_the_same_keys_and_bytes(redis_server: RedisServer, db: int) -> None:
    """aset/aget write and read Backstage's key and bytes as the sync calls do."""
    case = next(c for c in CASES if c["name"] == "namespace")
    manager = backstage_manager(db_url(redis_server, db), case["redis_client"])
    client = db_client(redis_server, db)
    try:
        cache = manager.for_plugin(case["plugin"])
        await cache.aset(case["key"], case_value(case), ttl=0)
        assert client.get(case["redis_key"]) == case["redis_value"].encode()
        assert await cache.aget(case["key"]) == case_value(case)
        await manager.aclose()
    finally:
        client.close()


def test_a_ttl_is_the_entrys_px(redis_server: RedisServer, db: int) -> None:
    """A set with a TTL writes the value without keyv's expires and gives the key that TTL
    in Redis, as @keyv/redis's SET ... PX does."""
    manager = backstage_manager(db_url(redis_server, db))
    client = db_client(redis_server, db)
    try:
        manager.for_plugin("catalog").set("test:key", "bob", ttl=60)
        assert client.get("catalog:dGVzdDprZXk=") == b'{"value":"bob"}'
        assert 59_000 < client.pttl("catalog:dGVzdDprZXk=") <= 60_000
    finally:
        client.close()
        manager.close()


def test_a_namespace_is_part_of_the_key(redis_server: RedisServer, db: int) -> None:
    """Key 42 in namespace users is Backstage's key users:42, so either side reads it."""
    manager = backstage_manager(db_url(redis_server, db))
    try:
        catalog = manager.for_plugin("catalog")
        catalog.namespace("users").set("42", {"name": "ada"})
        assert catalog.get("users:42") == {"name": "ada"}
        assert manager.full_key(catalog.namespace("users"), "42") == (
            "catalog:" + base64.b64encode(b"users:42").decode()
        )
    finally:
        manager.close()


def test_cached_functions_work_under_the_layout(redis_server: RedisServer, db: int) -> None:
    """@cached computes once and then reads its result from the Backstage-layout entry."""
    manager = backstage_manager(db_url(redis_server, db))
    calls: list[int] = []

    @cached(namespace="users", ttl=60)
    def load(user_id: int) -> dict[str, Any]:
        calls.append(user_id)
        return {"id": user_id}

    try:
        with scope(plugin="catalog", manager=manager):
            assert load(7) == {"id": 7}
            assert load(7) == {"id": 7}
            assert calls == [7]
    finally:
        manager.close()


def test_plugin_clear_removes_that_plugins_keys_only(
    redis_server: RedisServer, db: int, raw: redis.Redis
) -> None:
    """A plugin's clear removes its keys, as @keyv/redis's clear does, and leaves other
    plugins' keys, a plugin whose id it prefixes, and keys of other layouts."""
    manager = backstage_manager(db_url(redis_server, db))
    client = db_client(redis_server, db)
    try:
        catalog = manager.for_plugin("catalog")
        catalog.set_many({"a": 1, "b": 2}, ttl=60)
        catalog.namespace("users").set("1", "x", ttl=60)
        manager.for_plugin("catalog-extra").set("a", 1, ttl=60)
        manager.for_plugin("search").set("a", 1, ttl=60)
        client.set("catalog:not base64!", b"other writer")
        assert catalog.clear() == 3
        assert sorted(client.keys("*")) == sorted(
            [b"catalog:not base64!", b"catalog-extra:YQ==", b"search:YQ=="]
        )
        assert manager.clear(plugin="search") == 1
    finally:
        client.close()
        manager.close()


def test_namespace_clear_removes_the_namespaces_readable_keys(
    redis_server: RedisServer, db: int
) -> None:
    """A namespace's clear removes the plugin's keys under namespace:, not the others; a key
    long enough to be hashed cannot be attributed and stays until its TTL."""
    manager = backstage_manager(db_url(redis_server, db))
    client = db_client(redis_server, db)
    try:
        catalog = manager.for_plugin("catalog")
        users = catalog.namespace("users")
        users.set_many({"1": "a", "2": "b", "x" * 200: "long"}, ttl=60)
        catalog.set("plain", 1, ttl=60)
        catalog.namespace("teams").set("1", "t", ttl=60)
        assert users.clear() == 2
        assert users.get("1") is None
        assert users.get("x" * 200) == "long"
        assert catalog.get("plain") == 1
        assert catalog.namespace("teams").get("1") == "t"
    finally:
        client.close()
        manager.close()


def test_incr_creates_counters_but_cannot_add_to_keyv_json(
    redis_server: RedisServer, db: int
) -> None:
    """incr works on a counter it creates; on a value set as keyv JSON it raises
    CacheValueError and leaves the value as it was."""
    manager = backstage_manager(db_url(redis_server, db))
    try:
        cache = manager.for_plugin("catalog")
        assert cache.incr("hits") == 1
        assert cache.incr("hits", 4) == 5
        assert cache.get("hits") == 5
        cache.set("total", 5)
        with pytest.raises(CacheValueError):
            cache.incr("total")
        assert cache.get("total") == 5
    finally:
        manager.close()


def test_a_tenant_is_refused_everywhere(redis_server: RedisServer, db: int) -> None:
    """Under the layout a tenant scope, a tenant clear and a middleware with a tenant
    resolver are ConfigErrors naming keyLayout; the platform scope works."""
    manager = backstage_manager(db_url(redis_server, db))
    try:
        with pytest.raises(ConfigError, match="keyLayout: backstage has no tenants") as info:
            manager.for_plugin("catalog", tenant="acme")
        assert info.value.path == "backend.cache.keyLayout"
        with pytest.raises(ConfigError, match="keyLayout"):
            manager.clear(tenant="acme")
        with pytest.raises(ConfigError, match="tenant resolver"):
            CacheMiddleware(app, manager=manager, plugin="catalog", tenant=header("X-T"))
        with (
            pytest.raises(ConfigError, match="keyLayout"),
            scope(plugin="catalog", tenant="acme", manager=manager),
        ):
            current_cache().get("k")
        CacheMiddleware(app, manager=manager, plugin="catalog")  # no tenant: fine
        assert manager.tenants is False
    finally:
        manager.close()


def test_a_plugin_id_holding_the_separator_is_refused(redis_server: RedisServer, db: int) -> None:
    """A plugin id containing keyPrefixSeparator is a CacheKeyError: its keys would mix
    with another plugin's."""
    manager = backstage_manager(db_url(redis_server, db))
    try:
        with pytest.raises(CacheKeyError, match="separator"):
            manager.for_plugin("cat:alog")
    finally:
        manager.close()


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        ({"store": "memory", "keyLayout": "backstage"}, "backend.cache.keyLayout", "store: redis"),
        (
            {"store": "memcache", "connection": "h:11211", "valueFormat": "keyv-json"},
            "backend.cache.valueFormat",
            "store: redis",
        ),
        (
            {"store": "valkey", "connection": "redis://h", "keyLayout": "backstage"},
            "backend.cache.keyLayout",
            "@keyv/valkey",
        ),
        ({"store": "redis", "connection": "redis://h", "keyLayout": "keyv"}, "keyLayout", "one of"),
    ],
)
def test_the_layout_is_checked_at_start_up(
    section: dict[str, Any], path: str, message: str
) -> None:
    """keyLayout and valueFormat other than cachekit's need store: redis (Backstage's Valkey
    store keys entries differently), and unknown values are refused, naming the path."""
    with pytest.raises(ConfigError, match=message) as info:
        parse_cache_section(section)
    assert info.value.path is not None
    assert info.value.path.endswith(path)


def test_a_codec_with_keyv_json_is_refused() -> None:
    """valueFormat: keyv-json with codec= is a ConfigError: the format is the codec."""
    from cachekit.host import Codec

    config = parse_cache_section(
        {"store": "redis", "connection": "redis://h", "valueFormat": "keyv-json"}
    )
    with pytest.raises(ConfigError, match="codec="):
        CacheManager(config, codec=Codec())


def test_the_plain_layout_is_unchanged(redis_server: RedisServer, raw: redis.Redis) -> None:
    """Without the options a manager keeps cachekit's layout and msgpack/decimal values."""
    namespace = uuid.uuid4().hex
    manager = CacheManager(
        parse_cache_section(
            {
                "store": "redis",
                "connection": redis_server.url,
                "redis": {"client": {"namespace": namespace}},
            }
        )
    )
    try:
        manager.for_plugin("catalog", tenant="acme").set("k", 5)
        assert raw.get(f"{namespace}:catalog:acme::k") == b"5"
        assert manager.tenants is True
    finally:
        manager.close()


def test_the_command_lines_stats_and_clear_read_the_layout(
    tmp_path: Path, redis_server: RedisServer, db: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """cachekit stats counts keys per plugin under the layout, and cachekit clear --plugin
    removes one plugin's keys."""
    section = {
        "store": "redis",
        "connection": db_url(redis_server, db),
        "keyLayout": "backstage",
        "valueFormat": "keyv-json",
    }
    config = tmp_path / "app-config.yaml"
    config.write_text(yaml.safe_dump({"backend": {"cache": section}}))
    manager = CacheManager(parse_cache_section(section))
    try:
        manager.for_plugin("catalog").set_many({"a": 1, "b": 2}, ttl=60)
        manager.for_plugin("search").set("a", 1, ttl=60)
    finally:
        manager.close()
    assert main(["stats", "--json", "-c", str(config)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scopes"] == [
        {"plugin": "catalog", "tenant": None, "namespace": None, "keys": 2},
        {"plugin": "search", "tenant": None, "namespace": None, "keys": 1},
    ]
    assert main(["clear", "--plugin", "catalog", "--yes", "-c", str(config)]) == 0
    assert "2 entries removed" in capsys.readouterr().out
    client = db_client(redis_server, db)
    try:
        assert client.keys("*") == [b"search:YQ=="]
    finally:
        client.close()


def test_an_unreadable_entry_is_a_miss_logged_with_its_redis_key(
    redis_server: RedisServer, db: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Bytes that are not a keyv entry read as a miss (get and get_many), and the warning
    names the Redis key that holds them."""
    manager = backstage_manager(db_url(redis_server, db))
    client = db_client(redis_server, db)
    try:
        client.set("catalog:YQ==", b"not keyv json")
        cache = manager.for_plugin("catalog")
        with caplog.at_level("WARNING", logger="cachekit"):
            assert cache.get_many(["a"]) == {}
        assert "'catalog:YQ=='" in caplog.text
        assert cache.get("a", "miss") == "miss"
    finally:
        client.close()
        manager.close()
