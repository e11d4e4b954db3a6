"""Provider manifests: a custom store's ``manifest.yaml`` and the JSON Schema of its
options, the built-in stores' manifests, and ``cachekit providers``.

The custom providers are real packages written to a temporary directory and imported
from there; the entry-point provider is installed the way pip would leave it (a
``.dist-info`` directory on the path), and the console script is run as a subprocess.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

import cachekit
from cachekit.errors import ConfigError
from cachekit.host import CacheManager
from cachekit.manifests import load_manifest, providers
from cachekit.stores import builtin_stores

SCRIPT = Path(sys.executable).parent / "cachekit"
ROOT = Path(cachekit.__file__).parent.parent

# A provider that connects to its server when it is built, as many drivers do: a
# connection that reached the listener proves the store was built.
PROVIDER = """
import socket

from cachekit.stores import BaseStore


class SocketStore(BaseStore):
    name = "socketstore"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, mode: str = "fast") -> None:
        self.conn = socket.create_connection((host, port))
        self.mode = mode

    def get(self, key): return None
    def set(self, key, value, ttl=None): return None
    def delete(self, key): return False
    def touch(self, key, ttl=None): return False
    def incr(self, key, delta=1, ttl=None): return delta
    def close(self): self.conn.close()
"""

MANIFEST = """\
kind: cache
source: github.com/acme/cachekit-socketstore
version: 1.2.0
displayName: Socket store
description: A store that connects when it is built.
spec:
  configSchemaPath: schema.json
"""

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "host": {"type": "string"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "mode": {"enum": ["fast", "safe"]},
    },
    "required": ["port"],
    "additionalProperties": False,
}


def write_provider(
    root: Path,
    package: str,
    manifest: str | None = MANIFEST,
    schema: object = SCHEMA,
) -> Path:
    """Write package ``package`` (the provider, its manifest and schema) under ``root``."""
    directory = root / package
    directory.mkdir(parents=True)
    (directory / "__init__.py").write_text("")
    (directory / "store.py").write_text(PROVIDER)
    if manifest is not None:
        (directory / "manifest.yaml").write_text(manifest)
    if schema is not None:
        (directory / "schema.json").write_text(json.dumps(schema))
    return directory


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening TCP socket standing in for the provider's server."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        yield server


def connections(server: socket.socket) -> int:
    """Connections that reached ``server`` (accepted and closed here; never waits)."""
    count = 0
    while True:
        try:
            conn, _ = server.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


@pytest.fixture
def provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A provider package with a manifest, importable as ``socketprov.store``."""
    write_provider(tmp_path, "socketprov")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "socketprov.store:SocketStore"


def test_a_bad_option_is_a_config_error_quoting_the_schema_before_any_connection(
    provider: str, listener: socket.socket
) -> None:
    """An option the provider's schema rejects raises a ConfigError that quotes the
    schema's message at the option's path, and the store never connects."""
    port = listener.getsockname()[1]
    with pytest.raises(ConfigError) as caught:
        CacheManager.from_section({"store": provider, "options": {"port": str(port)}})
    error = caught.value
    assert error.path == "backend.cache.options.port"
    assert f"'{port}' is not of type 'integer'" in str(error)
    assert "Socket store provider's schema" in str(error)
    assert str(error).startswith("backend.cache.options.port: ")
    assert connections(listener) == 0


def test_good_options_pass_and_the_store_is_built_with_them(
    provider: str, listener: socket.socket
) -> None:
    """Options the schema accepts reach the class, which then connects."""
    port = listener.getsockname()[1]
    manager = CacheManager.from_section(
        {"store": provider, "options": {"port": port, "mode": "safe"}}
    )
    with manager:
        assert manager.store.mode == "safe"  # type: ignore[attr-defined]
        assert connections(listener) == 1


@pytest.mark.parametrize(
    ("options", "path", "message"),
    [
        ({}, "backend.cache.options", "'port' is a required property"),
        ({"port": 1, "mode": "slow"}, "backend.cache.options.mode", "'slow' is not one of"),
        ({"port": 70000}, "backend.cache.options.port", "70000 is greater than the maximum"),
        ({"port": 1, "hots": "h"}, "backend.cache.options", "('hots' was unexpected)"),
    ],
)
def test_each_schema_violation_names_its_path(
    provider: str, options: dict[str, object], path: str, message: str
) -> None:
    """Missing, unknown, out-of-range and not-enumerated options each get the schema's
    message at their path."""
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        CacheManager.from_section({"store": provider, "options": options})
    assert e.value.path == path


def test_a_bindings_options_are_checked_at_the_bindings_path(
    provider: str, listener: socket.socket
) -> None:
    """A named binding's custom store is checked the same way, its path naming the
    binding; nothing connects."""
    with pytest.raises(ConfigError, match="is not of type 'integer'") as caught:
        CacheManager.from_section(
            {"bindings": {"sessions": {"store": provider, "options": {"port": "x"}}}}
        )
    assert caught.value.path == "backend.cache.bindings.sessions.options.port"
    assert connections(listener) == 0


def test_a_provider_without_a_manifest_gets_its_options_unchecked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listener: socket.socket
) -> None:
    """No manifest beside the module: the options go to the class as they are."""
    write_provider(tmp_path, "plainprov", manifest=None, schema=None)
    monkeypatch.syspath_prepend(str(tmp_path))
    port = listener.getsockname()[1]
    with CacheManager.from_section(
        {"store": "plainprov.store:SocketStore", "options": {"port": port, "mode": "any"}}
    ) as manager:
        assert manager.store.mode == "any"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("manifest", "schema", "message"),
    [
        (MANIFEST.replace("kind: cache", "kind: database"), SCHEMA, "kind must be 'cache'"),
        (
            MANIFEST.replace("configSchemaPath", "configSchemaPaht"),
            SCHEMA,
            "unknown manifest key spec.'configSchemaPaht'; did you mean 'configSchemaPath'",
        ),
        (MANIFEST.replace("displayName", "title"), SCHEMA, "unknown manifest key 'title'"),
        (MANIFEST, None, "names 'schema.json', which does not exist"),
        (MANIFEST, {"type": "objekt"}, "is not a valid JSON Schema"),
        (MANIFEST, ["not", "a", "mapping"], "a JSON Schema must be a mapping"),
        ("kind: [cache", SCHEMA, "not valid YAML"),
    ],
)
def test_a_broken_manifest_is_a_config_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    manifest: str,
    schema: object,
    message: str,
) -> None:
    """A manifest of another kind, with a misspelt key (which would skip the schema), a
    missing or invalid schema, or bad YAML stops the manager with a ConfigError."""
    package = f"broken{abs(hash((manifest, repr(schema))))}"
    write_provider(tmp_path, package, manifest=manifest, schema=schema)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=re.escape(message)):
        CacheManager.from_section({"store": f"{package}.store:SocketStore", "options": {}})


def test_without_jsonschema_a_schema_is_a_config_error_naming_the_extra(
    provider: str, monkeypatch: pytest.MonkeyPatch, listener: socket.socket
) -> None:
    """A provider schema cannot be skipped silently: without jsonschema the manager says
    which extra to install, and nothing connects."""
    monkeypatch.setitem(sys.modules, "jsonschema.exceptions", None)
    with pytest.raises(ConfigError, match=r"pip install 'cachekit\[manifests\]'"):
        CacheManager.from_section(
            {"store": provider, "options": {"port": listener.getsockname()[1]}}
        )
    assert connections(listener) == 0


@pytest.mark.parametrize(
    ("store", "connection"),
    [("memory", None), ("redis", "redis://h"), ("valkey", "redis://h"), ("memcache", "h")],
)
def test_built_in_stores_take_no_options(store: str, connection: str | None) -> None:
    """Options given to a built-in store (which reads keys of its own) are refused, not
    silently ignored."""
    section = {"store": store, "connection": connection, "options": {"host": "x"}}
    with pytest.raises(ConfigError, match=f"the built-in '{store}' store takes no options") as e:
        CacheManager.from_section(section)
    assert e.value.path == "backend.cache.options"


def test_built_in_manifests_ship_with_the_package() -> None:
    """Every built-in store has a manifest of kind cache whose schema exists, and
    pyproject's package data includes them."""
    for provider in providers()[: len(builtin_stores())]:
        assert provider.origin == "built-in"
        assert provider.manifest is not None
        assert provider.manifest.kind == "cache"
        assert provider.manifest.version == cachekit.__version__
        assert provider.manifest.config_schema is not None
        assert provider.manifest.config_schema.is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["cachekit"]
    shipped = {p for g in globs for p in (ROOT / "cachekit").glob(g)}
    manifests = (ROOT / "cachekit" / "stores" / "manifests").iterdir()
    assert set(manifests) <= shipped


def test_the_built_in_schema_agrees_with_the_built_in_check() -> None:
    """The built-in manifests' schema says what cachekit's own check enforces: no options."""
    from jsonschema import Draft202012Validator

    manifest = load_manifest(ROOT / "cachekit" / "stores" / "manifests" / "redis.yaml")
    validator = Draft202012Validator(dict(manifest.schema()))
    assert validator.is_valid({})
    assert not validator.is_valid({"host": "x"})


def install_entry_point(site: Path, name: str, target: str) -> None:
    """Install a distribution with one cachekit.stores entry point, as pip leaves it."""
    dist = site / "acme_stores-1.2.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-stores\nVersion: 1.2.0\n")
    with (dist / "entry_points.txt").open("a") as out:
        out.write(f"[cachekit.stores]\n{name} = {target}\n")


def test_cachekit_providers_lists_built_ins_and_entry_points(tmp_path: Path) -> None:
    """`cachekit providers` lists the built-in stores and every installed entry point with
    its manifest fields, and one that cannot load with the reason."""
    write_provider(tmp_path, "socketprov")
    install_entry_point(tmp_path, "socketstore", "socketprov.store:SocketStore")
    install_entry_point(tmp_path, "ghost", "nowhere.store:Ghost")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    text = subprocess.run(
        [str(SCRIPT), "providers"], capture_output=True, text=True, check=True, env=env
    ).stdout
    for name in ("memory", "redis", "valkey", "memcache"):
        assert f"\n{name}  (built-in, " in f"\n{text}"
    assert "socketstore  (entry point (acme-stores 1.2.0), socketprov.store:SocketStore)" in text
    assert "displayName            Socket store" in text
    assert "source                 github.com/acme/cachekit-socketstore" in text
    assert "ghost  (entry point (acme-stores 1.2.0), nowhere.store:Ghost)" in text
    assert re.search(r"\n  problem +cannot load: No module named 'nowhere'\n", text)

    listed = json.loads(
        subprocess.run(
            [str(SCRIPT), "providers", "--json"], capture_output=True, text=True, env=env
        ).stdout
    )
    by_name = {p["name"]: p for p in listed}
    assert [p["name"] for p in listed][:4] == ["memory", "redis", "valkey", "memcache"]
    socketstore = by_name["socketstore"]["manifest"]
    assert socketstore["version"] == "1.2.0"
    assert socketstore["kind"] == "cache"
    assert socketstore["description"] == "A store that connects when it is built."
    assert socketstore["spec.configSchemaPath"].endswith("socketprov/schema.json")
    assert by_name["ghost"]["manifest"] is None
    assert by_name["memory"]["problem"] is None


def test_an_entry_point_provider_is_checked_by_its_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listener: socket.socket
) -> None:
    """A provider named by its entry point is checked against the manifest beside the
    class the entry point loads."""
    write_provider(tmp_path, "epprov")
    install_entry_point(tmp_path, "epstore", "epprov.store:SocketStore")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="'x' is not one of") as caught:
        CacheManager.from_section({"store": "epstore", "options": {"port": 1, "mode": "x"}})
    assert caught.value.path == "backend.cache.options.mode"
    assert connections(listener) == 0


def test_providers_reports_a_broken_manifest_instead_of_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One provider's invalid manifest is listed as its problem; the others still list."""
    write_provider(tmp_path, "badprov", manifest=MANIFEST.replace("cache", "queue", 1))
    install_entry_point(tmp_path, "badstore", "badprov.store:SocketStore")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = {p.name: p for p in providers()}
    assert found["badstore"].manifest is None
    assert "invalid manifest" in found["badstore"].problem
    assert "kind must be 'cache'" in found["badstore"].problem
    assert found["memory"].manifest is not None
