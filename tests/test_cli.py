"""The ``cachekit`` command: check, stats, clear, get/set/delete, exit codes and messages.

The must-show cases (check against a good config, a typo'd store and an unreachable Redis;
clearing one scope on real Redis and real memcached) run the installed console script as
a subprocess; the rest call :func:`cachekit.cli.main` in-process, which is what the script
runs.
"""

from __future__ import annotations

import datetime
import decimal
import io
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from servers import MemcachedServer, RedisCluster, RedisServer, free_port, redis_command

from cachekit import MISS
from cachekit.cli import PROBE_PLUGIN, main
from cachekit.host import CacheManager

SCRIPT = Path(sys.executable).parent / "cachekit"


def run_script(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed console script."""
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_config(path: Path, cache: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"backend": {"cache": cache}}), encoding="utf-8")
    return path


def manager_for(cache: dict[str, Any]) -> CacheManager:
    return CacheManager.from_config({"backend": {"cache": cache}})


class FakeTerminal(io.StringIO):
    """A stdin that says it is a terminal, holding the user's answer."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def redis_cache(redis_server: RedisServer) -> dict[str, Any]:
    """A Redis config with a global prefix of its own, so tests on the shared server never
    see each other's keys."""
    prefix = f"cli{uuid.uuid4().hex[:10]}"
    return {
        "store": "redis",
        "connection": redis_server.url,
        "redis": {"client": {"namespace": prefix}},
    }


@pytest.fixture
def memcache_cache(memcached_server: MemcachedServer) -> dict[str, Any]:
    return {"store": "memcache", "connection": f"{memcached_server.host}:{memcached_server.port}"}


def fill(manager: CacheManager, plugin: str = "a") -> None:
    """One key in each of several scopes around (plugin, t1)."""
    manager.for_plugin(plugin, "t1").set("k", "a/t1")
    manager.for_plugin(plugin, "t1").namespace("n").set("k", "a/t1/n")
    manager.for_plugin(plugin, "t2").set("k", "a/t2")
    manager.for_plugin(plugin).set("k", "a/platform")
    manager.for_plugin("b", "t1").set("k", "b/t1")


def survivors(manager: CacheManager, plugin: str = "a") -> dict[str, Any]:
    caches = {
        "a/t1": manager.for_plugin(plugin, "t1"),
        "a/t1/n": manager.for_plugin(plugin, "t1").namespace("n"),
        "a/t2": manager.for_plugin(plugin, "t2"),
        "a/platform": manager.for_plugin(plugin),
        "b/t1": manager.for_plugin("b", "t1"),
    }
    return {
        name: cache.get("k", MISS)
        for name, cache in caches.items()
        if cache.get("k", MISS) is not MISS
    }


# --- the console script (must show) ---------------------------------------------------------


def test_check_on_a_good_redis_config_exits_0(tmp_path: Path, redis_cache: dict[str, Any]) -> None:
    """`cachekit check` on a good config prints the store, the server version and the probe
    latency, and exits 0."""
    write_config(tmp_path / "app-config.yaml", redis_cache)
    result = run_script("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "config   app-config.yaml: valid" in out
    assert f"store    redis store at {redis_cache['connection']}" in out
    assert re.search(r"^server   redis \d+\.\d+\.\d+ at redis://", out, re.MULTILINE)
    assert "probe    round trips: set " in out
    assert " ms, get " in out
    assert out.rstrip().endswith("ok")
    assert result.stderr == ""


def test_check_reports_a_typo_in_the_store_name(tmp_path: Path) -> None:
    """A typo'd store name exits 1 with the library's ConfigError message (path, did-you-mean,
    known stores) and no traceback."""
    config = write_config(tmp_path / "typo.yaml", {"store": "redsi"})
    result = run_script("check", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "cachekit check: config error: backend.cache.store: unknown store 'redsi'; "
        "did you mean 'redis'? known: memory, redis, valkey, memcache"
    )
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_check_reports_an_unreachable_redis(tmp_path: Path) -> None:
    """A Redis on a closed port exits 1 naming the store and address, the refusal, and what
    to check."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    config = write_config(tmp_path / "down.yaml", {"store": "redis", "connection": url})
    result = run_script("check", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert f"cachekit check: cannot reach the redis store at {url}: " in result.stderr
    assert "Connection refused" in result.stderr
    assert "Is the server running" in result.stderr
    assert "backend.cache.connection" in result.stderr
    assert "Traceback" not in result.stderr


def test_clear_one_scope_on_redis_removes_exactly_that_scope(
    tmp_path: Path, redis_cache: dict[str, Any]
) -> None:
    """`cachekit clear --plugin a --tenant t1` on Redis removes that scope (every namespace)
    and nothing of the other tenants, the platform scope or other plugins."""
    config = write_config(tmp_path / "app-config.yaml", redis_cache)
    with manager_for(redis_cache) as manager:
        fill(manager)
    result = run_script(
        "clear", "--plugin", "a", "--tenant", "t1", "--yes", "-c", str(config), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "cleared plugin 'a', tenant 't1', every namespace: 2 entries removed\n"
    with manager_for(redis_cache) as manager:
        assert survivors(manager) == {"a/t2": "a/t2", "a/platform": "a/platform", "b/t1": "b/t1"}


def test_clear_one_scope_on_memcached_removes_exactly_that_scope(
    tmp_path: Path, memcache_cache: dict[str, Any]
) -> None:
    """`cachekit clear --plugin a --tenant t1` on memcached removes that scope and nothing
    else, and says memcached cannot count what it removed."""
    config = write_config(tmp_path / "app-config.yaml", memcache_cache)
    with manager_for(memcache_cache) as manager:
        fill(manager)
        assert len(survivors(manager)) == 5
    result = run_script(
        "clear", "--plugin", "a", "--tenant", "t1", "--yes", "-c", str(config), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "cannot count" in result.stdout
    with manager_for(memcache_cache) as manager:  # a new process's view: no cached generations
        assert survivors(manager) == {"a/t2": "a/t2", "a/platform": "a/platform", "b/t1": "b/t1"}


def test_python_dash_m_cachekit_shows_help(tmp_path: Path) -> None:
    """`python -m cachekit --help` lists the subcommands and exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", "cachekit", "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: cachekit ")
    for command in ("check", "stats", "clear", "get", "set", "delete"):
        assert f"    {command} " in result.stdout


# --- usage and config ------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check", "stats", "clear", "get", "set", "delete"])
def test_every_subcommand_has_help_naming_the_config_option(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cachekit COMMAND --help` exits 0 and documents -c/--config."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: cachekit {command}" in out
    assert "-c FILE, --config FILE" in out


def test_unknown_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown subcommand exits 2 (argparse) with the usage on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(["flush"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'flush'" in capsys.readouterr().err


def test_missing_default_config_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without -c and without ./app-config.yaml, the command says so and how to point at a
    file."""
    monkeypatch.chdir(tmp_path)
    assert main(["check"]) == 1
    err = capsys.readouterr().err
    assert "./app-config.yaml does not exist" in err
    assert "-c/--config FILE" in err


def test_missing_named_config_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A -c file that does not exist exits 1 with the library's message."""
    assert main(["check", "-c", str(tmp_path / "absent.yaml")]) == 1
    assert "config error: " in capsys.readouterr().err


def test_default_config_in_the_working_directory_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without -c, ./app-config.yaml is used; the in-memory store passes check."""
    write_config(tmp_path / "app-config.yaml", {"store": "memory"})
    monkeypatch.chdir(tmp_path)
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "store    memory (in-process" in out
    assert out.rstrip().endswith("ok")


def test_config_files_are_merged_in_order(
    tmp_path: Path, redis_cache: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Repeated -c files are deep-merged, later ones winning (as CacheManager.from_yaml)."""
    base = write_config(tmp_path / "base.yaml", {"store": "memory", "defaultTtl": "5m"})
    override = write_config(tmp_path / "prod.yaml", redis_cache)
    assert main(["check", "-c", str(base), "-c", str(override)]) == 0
    assert f"redis store at {redis_cache['connection']}" in capsys.readouterr().out


def test_check_leaves_no_probe_key(redis_cache: dict[str, Any], tmp_path: Path) -> None:
    """The probe written by check is deleted again."""
    config = write_config(tmp_path / "c.yaml", redis_cache)
    assert main(["check", "-c", str(config)]) == 0
    with manager_for(redis_cache) as manager:
        assert manager.store.count_scopes(manager.keyspace.selector(PROBE_PLUGIN)) == {}  # type: ignore[attr-defined]


def test_check_reports_an_unreachable_memcached(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A memcached on a closed port fails check with exit 1 and the address."""
    address = f"127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "c.yaml", {"store": "memcache", "connection": address})
    assert main(["check", "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach the memcache store at {address}" in err


def test_check_on_memcached_prints_the_server_version(
    tmp_path: Path, memcache_cache: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """check on memcached prints memcached's version from `stats`."""
    config = write_config(tmp_path / "c.yaml", memcache_cache)
    assert main(["check", "-c", str(config)]) == 0
    assert "server   memcached 1." in capsys.readouterr().out


# --- stats -----------------------------------------------------------------------------------


def test_stats_on_redis_counts_keys_per_scope_with_ids_unescaped(
    tmp_path: Path, private_redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """stats --json lists key counts per (plugin, tenant, namespace), ids as given (not
    percent-encoded), and the server's own hits and misses."""
    cache = {"store": "redis", "connection": private_redis_server.url}
    with manager_for(cache) as manager:
        odd = manager.for_plugin("cat:alog", "ten ant")
        odd.set("x", 1)
        odd.namespace("50%").set("y", 2)
        odd.namespace("50%").set("z", 3)
        manager.for_plugin("reviews").set("x", 1)
        assert manager.for_plugin("reviews").get("x") == 1  # a hit
        assert manager.for_plugin("reviews").get("nope") is None  # a miss
    config = write_config(tmp_path / "c.yaml", cache)
    assert main(["stats", "--json", "-c", str(config)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["store"] == "redis"
    assert report["scopes"] == [
        {"plugin": "cat:alog", "tenant": "ten ant", "namespace": None, "keys": 1},
        {"plugin": "cat:alog", "tenant": "ten ant", "namespace": "50%", "keys": 2},
        {"plugin": "reviews", "tenant": None, "namespace": None, "keys": 1},
    ]
    assert report["total_keys"] == 4
    (server,) = report["servers"].values()
    assert (server["server"], server["hits"], server["misses"]) == ("redis", 1, 1)
    assert server["hit_ratio"] == 0.5


def test_stats_table_and_filters(
    tmp_path: Path, redis_cache: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The default output is a table; --plugin and --platform narrow what is counted."""
    with manager_for(redis_cache) as manager:
        fill(manager)
    config = str(write_config(tmp_path / "c.yaml", redis_cache))
    assert main(["stats", "-c", config, "--plugin", "a"]) == 0
    out = capsys.readouterr().out
    assert "keys per scope (SCAN):" in out
    lines = out.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("PLUGIN")))
    rows = [line.split() for line in lines[header + 1 : header + 6]]
    assert rows == [
        ["a", "(platform)", "(default)", "1"],
        ["a", "t1", "(default)", "1"],
        ["a", "t1", "n", "1"],
        ["a", "t2", "(default)", "1"],
        ["total", "4"],
    ]
    assert main(["stats", "-c", config, "--plugin", "a", "--platform", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scopes"] == [{"plugin": "a", "tenant": None, "namespace": None, "keys": 1}]


def test_stats_on_memcached_is_server_wide(
    tmp_path: Path, memcache_cache: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """On memcached, stats reports the server's hits, misses and items, and says it cannot
    count per scope."""
    with manager_for(memcache_cache) as manager:
        manager.for_plugin("a", "t1").set("k", 1)
        assert manager.for_plugin("a", "t1").get("k") == 1
    config = write_config(tmp_path / "c.yaml", memcache_cache)
    assert main(["stats", "--json", "-c", str(config)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scopes"] is None
    (server,) = report["servers"].values()
    assert server["server"] == "memcached"
    assert server["hits"] >= 1
    assert server["items"] >= 1
    assert any("cannot count keys per plugin" in note for note in report["notes"])


def test_stats_on_the_memory_store_explains_why_it_cannot_see_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On the in-memory store, stats explains it lives inside the app's process."""
    config = write_config(tmp_path / "c.yaml", {"store": "memory"})
    assert main(["stats", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "not visible from another process" in out
    assert "manager.stats()" in out


# --- clear -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "name what to clear"),
        (["--platform"], "--platform and --namespace need --plugin"),
        (["--plugin", "a", "--namespace", "n"], "--namespace needs --tenant T or --platform"),
    ],
)
def test_clear_refuses_incomplete_selections(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """clear refuses (exit 2) with neither plugin nor tenant, --platform without a plugin, or
    a namespace without a scope."""
    config = write_config(tmp_path / "c.yaml", {"store": "memory"})
    assert main(["clear", "-c", str(config), *args]) == 2
    assert message in capsys.readouterr().err


def test_clear_platform_and_tenant_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    """--tenant and --platform together are an argparse usage error."""
    with pytest.raises(SystemExit) as exit_info:
        main(["clear", "--plugin", "a", "--tenant", "t1", "--platform"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "removed", "left"),
    [
        (["--plugin", "a"], 4, {"b/t1"}),
        (["--tenant", "t1"], 3, {"a/t2", "a/platform"}),
        (["--plugin", "a", "--platform"], 1, {"a/t1", "a/t1/n", "a/t2", "b/t1"}),
        (
            ["--plugin", "a", "--tenant", "t1", "--namespace", "n"],
            1,
            {"a/t1", "a/t2", "a/platform", "b/t1"},
        ),
    ],
    ids=["plugin", "tenant", "platform", "namespace"],
)
def test_clear_selections_on_redis(
    args: list[str],
    removed: int,
    left: set[str],
    tmp_path: Path,
    redis_cache: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each clear form removes exactly its selection and reports the count."""
    with manager_for(redis_cache) as manager:
        fill(manager)
    config = write_config(tmp_path / "c.yaml", redis_cache)
    assert main(["clear", "-y", "-c", str(config), *args]) == 0
    captured = capsys.readouterr()
    assert captured.out.endswith(f": {removed} {'entry' if removed == 1 else 'entries'} removed\n")
    assert captured.err.startswith("clearing ")
    with manager_for(redis_cache) as manager:
        assert set(survivors(manager)) == left


def test_clear_without_yes_refuses_when_stdin_is_not_a_terminal(
    tmp_path: Path,
    redis_cache: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without --yes and without a terminal to ask on, clear refuses and removes nothing."""
    with manager_for(redis_cache) as manager:
        fill(manager)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    config = write_config(tmp_path / "c.yaml", redis_cache)
    assert main(["clear", "--plugin", "a", "-c", str(config)]) == 2
    assert "stdin is not a terminal; pass --yes" in capsys.readouterr().err
    with manager_for(redis_cache) as manager:
        assert len(survivors(manager)) == 5


@pytest.mark.parametrize(
    ("answer", "cleared"), [("y\n", True), ("yes\n", True), ("n\n", False), ("\n", False)]
)
def test_clear_asks_on_a_terminal_showing_the_count(
    answer: str,
    cleared: bool,
    tmp_path: Path,
    redis_cache: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On a terminal, clear shows what it will clear with the key count, and clears only on
    yes."""
    with manager_for(redis_cache) as manager:
        fill(manager)
    monkeypatch.setattr(sys, "stdin", FakeTerminal(answer))
    config = write_config(tmp_path / "c.yaml", redis_cache)
    code = main(["clear", "--plugin", "a", "--tenant", "t1", "-c", str(config)])
    err = capsys.readouterr().err
    assert (
        "This clears plugin 'a', tenant 't1', every namespace (2 keys now) in the redis store"
        in err
    )
    assert "Clear? [y/N]" in err
    with manager_for(redis_cache) as manager:
        if cleared:
            assert code == 0
            assert set(survivors(manager)) == {"a/t2", "a/platform", "b/t1"}
        else:
            assert code == 1
            assert "not confirmed; nothing was cleared" in err
            assert len(survivors(manager)) == 5


def test_clear_on_memcached_asks_without_a_count(
    tmp_path: Path,
    memcache_cache: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """memcached cannot count a scope before clearing: the prompt says so."""
    monkeypatch.setattr(sys, "stdin", FakeTerminal("n\n"))
    config = write_config(tmp_path / "c.yaml", memcache_cache)
    assert main(["clear", "--tenant", "t9", "-c", str(config)]) == 1
    assert "(the memcache store cannot count them first)" in capsys.readouterr().err


def test_commands_refuse_the_memory_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """clear and get on the in-memory store exit 1: the command cannot reach an app's
    process."""
    config = str(write_config(tmp_path / "c.yaml", {"store": "memory"}))
    assert main(["clear", "--plugin", "a", "--yes", "-c", config]) == 1
    assert "lives inside each app process" in capsys.readouterr().err
    assert main(["get", "--plugin", "a", "k", "-c", config]) == 1
    assert "`cachekit get` runs in its own process" in capsys.readouterr().err


def test_unreachable_store_during_clear_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store failure during clear is reported without a traceback, exit 1."""
    config = write_config(
        tmp_path / "c.yaml", {"store": "redis", "connection": f"redis://127.0.0.1:{free_port()}"}
    )
    assert main(["clear", "--tenant", "t1", "--yes", "-c", str(config)]) == 1
    assert "cannot reach the redis store" in capsys.readouterr().err


# --- get / set / delete -------------------------------------------------------------------


def test_set_get_delete_round_trip(
    tmp_path: Path, redis_cache: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """set parses JSON, get prints JSON, delete removes; each in the scope named."""
    config = str(write_config(tmp_path / "c.yaml", redis_cache))
    scope = ["--plugin", "a", "--tenant", "t1", "--namespace", "users", "-c", config]
    assert main(["set", *scope, "u:1", '{"name": "Zoë", "tags": [1, 2.5, null, true]}']) == 0
    assert capsys.readouterr().out == "stored 'u:1' (dict, default TTL)\n"
    with manager_for(redis_cache) as manager:
        assert manager.for_plugin("a", "t1").namespace("users").get("u:1") == {
            "name": "Zoë",
            "tags": [1, 2.5, None, True],
        }
    assert main(["get", *scope, "u:1"]) == 0
    assert json.loads(capsys.readouterr().out) == {"name": "Zoë", "tags": [1, 2.5, None, True]}
    assert main(["delete", *scope, "u:1"]) == 0
    assert capsys.readouterr().out == "deleted 'u:1'\n"
    assert main(["delete", *scope, "u:1"]) == 0
    assert "was not there" in capsys.readouterr().out
    assert main(["get", *scope, "u:1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "miss: no value under 'u:1'" in captured.err


@pytest.mark.parametrize(
    ("argv", "stored"),
    [
        (["42"], 42),
        (['"42"'], "42"),
        (["42", "--string"], "42"),
        (["hello world"], "hello world"),
        (['{"$bytes": "AP9yYXc="}'], b"\x00\xffraw"),
        (['[{"$bytes": "eA=="}, 1]'], [b"x", 1]),
    ],
)
def test_set_value_parsing(
    argv: list[str], stored: Any, tmp_path: Path, redis_cache: dict[str, Any]
) -> None:
    """VALUE is JSON when it parses (`{"$bytes": base64}` is bytes), else the plain string;
    --string keeps it a string."""
    config = str(write_config(tmp_path / "c.yaml", redis_cache))
    assert main(["set", "--plugin", "a", "-c", config, "k", *argv]) == 0
    with manager_for(redis_cache) as manager:
        assert manager.for_plugin("a").get("k") == stored


def test_get_prints_bytes_as_tagged_base64(
    tmp_path: Path, redis_cache: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Bytes (values and dict keys) print as base64 under a `$bytes` tag."""
    with manager_for(redis_cache) as manager:
        manager.for_plugin("a").set("k", {b"key": b"\x00\x01", "n": (1, b"x")})
    config = str(write_config(tmp_path / "c.yaml", redis_cache))
    assert main(["get", "--plugin", "a", "-c", config, "k"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "$bytes:a2V5": {"$bytes": "AAE="},
        "n": [1, {"$bytes": "eA=="}],
    }


def test_get_prints_the_codecs_built_in_types_tagged(
    tmp_path: Path, redis_cache: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """datetimes, dates, timedeltas, Decimals, UUIDs, sets and tuple dict keys print as tagged
    JSON instead of crashing json.dumps."""
    value = {
        "at": datetime.datetime(2026, 12, 3, 9, 30, tzinfo=datetime.UTC),
        "day": datetime.date(2026, 12, 3),
        "term": datetime.timedelta(minutes=90),
        "price": decimal.Decimal("1.10"),
        "id": uuid.UUID(int=1),
        "tags": {"a"},
        (1, 2): "pair",
    }
    with manager_for(redis_cache) as manager:
        manager.for_plugin("a").set("k", value)
    config = str(write_config(tmp_path / "c.yaml", redis_cache))
    assert main(["get", "--plugin", "a", "-c", config, "k"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "at": {"$datetime": "2026-12-03T09:30:00+00:00"},
        "day": {"$date": "2026-12-03"},
        "term": {"$timedelta": 5400.0},
        "price": {"$decimal": "1.10"},
        "id": {"$uuid": "00000000-0000-0000-0000-000000000001"},
        "tags": {"$set": ["a"]},
        "[1, 2]": "pair",
    }


def test_set_with_ttl_sets_an_expiry(
    tmp_path: Path, redis_server: RedisServer, redis_cache: dict[str, Any]
) -> None:
    """--ttl SECONDS becomes the key's TTL on the server."""
    config = str(write_config(tmp_path / "c.yaml", redis_cache))
    assert (
        main(["set", "--plugin", "a", "--tenant", "t1", "-c", config, "k", "1", "--ttl", "90"]) == 0
    )
    with manager_for(redis_cache) as manager:
        full_key = manager.full_key(manager.for_plugin("a", "t1"), "k")
    pttl = redis_command(redis_server.host, redis_server.port, "PTTL", full_key)
    assert isinstance(pttl, int)
    assert 80_000 < pttl <= 90_000


@pytest.mark.parametrize(
    ("ttl", "seconds"), [("1h30m", 5400), ("PT2M", 120), ("5 minutes", 300), ("90s", 90)]
)
def test_set_reads_a_duration_ttl(
    ttl: str,
    seconds: int,
    tmp_path: Path,
    redis_server: RedisServer,
    redis_cache: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--ttl takes the duration strings the Python API takes; the key's TTL on the server
    is that many seconds."""
    config = str(write_config(tmp_path / "c.yaml", redis_cache))
    assert main(["set", "--plugin", "a", "-c", config, "k", "1", f"--ttl={ttl}"]) == 0
    assert f"ttl {seconds}s" in capsys.readouterr().out
    with manager_for(redis_cache) as manager:
        full_key = manager.full_key(manager.for_plugin("a"), "k")
    pttl = redis_command(redis_server.host, redis_server.port, "PTTL", full_key)
    assert isinstance(pttl, int)
    assert (seconds - 10) * 1000 < pttl <= seconds * 1000


@pytest.mark.parametrize(
    ("ttl", "message"),
    [
        ("-1", "--ttl must be a finite duration >= 0"),
        ("nan", "--ttl must be a finite duration >= 0"),
        ("inf", "--ttl must be a finite duration >= 0"),
        ("soon", "--ttl: cannot read 'soon' as a duration"),
        ("1y", "--ttl: cannot read '1y': years and months have no fixed length"),
    ],
)
def test_set_refuses_a_bad_ttl(
    ttl: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A negative, non-finite or unreadable --ttl is a usage error naming --ttl."""
    config = str(write_config(tmp_path / "c.yaml", {"store": "memory"}))
    assert main(["set", "--plugin", "a", "-c", config, "k", "1", f"--ttl={ttl}"]) == 2
    assert message in capsys.readouterr().err


def test_set_refuses_bad_base64(
    tmp_path: Path, redis_cache: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """A `$bytes` object that is not base64 is a usage error."""
    config = str(write_config(tmp_path / "c.yaml", redis_cache))
    assert main(["set", "--plugin", "a", "-c", config, "k", '{"$bytes": "!!"}']) == 2
    assert "$bytes must hold base64" in capsys.readouterr().err


def test_empty_plugin_id_is_a_usage_error(
    tmp_path: Path, redis_cache: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty id is refused with the library's CacheKeyError message, exit 2."""
    config = str(write_config(tmp_path / "c.yaml", redis_cache))
    assert main(["get", "--plugin", "", "-c", config, "k"]) == 2
    assert "plugin id must not be empty" in capsys.readouterr().err


def test_check_on_valkey_names_the_server(
    tmp_path: Path, valkey_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """check on a Valkey server reports valkey and its version."""
    config = write_config(tmp_path / "c.yaml", {"store": "valkey", "connection": valkey_server.url})
    assert main(["check", "-c", str(config)]) == 0
    assert re.search(r"^server   valkey \d+\.", capsys.readouterr().out, re.MULTILINE)


def test_stats_on_a_redis_cluster_counts_every_primary(
    tmp_path: Path, redis_cluster: RedisCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a cluster, stats scans every primary and reports each primary's INFO."""
    prefix = f"cli{uuid.uuid4().hex[:10]}"
    cache = {
        "store": "redis",
        "redis": {
            "client": {"namespace": prefix},
            "cluster": {"rootNodes": [{"url": url} for url in redis_cluster.root_urls]},
        },
    }
    with manager_for(cache) as manager:
        for i in range(30):  # spread over the slots of every primary
            manager.for_plugin("a", f"t{i % 3}").set(f"k{i}", i)
    config = write_config(tmp_path / "c.yaml", cache)
    assert main(["stats", "--json", "-c", str(config)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scopes"] == [
        {"plugin": "a", "tenant": f"t{i}", "namespace": None, "keys": 10} for i in range(3)
    ]
    assert len(report["servers"]) == 3
    assert {s["server"] for s in report["servers"].values()} == {"redis"}
