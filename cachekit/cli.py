"""The ``cachekit`` command: check the config, read store statistics, clear scopes, and
read or write single keys, from the host's ``app-config.yaml``.

::

    cachekit check                                   # validate, connect, round-trip a probe
    cachekit stats [--json]                          # what the store can count
    cachekit clear --plugin catalog --tenant acme    # one scope (asks first; --yes to skip)
    cachekit clear --tenant acme --yes               # offboard a tenant across plugins
    cachekit get --plugin catalog --tenant acme item:1
    cachekit set --plugin catalog --tenant acme item:1 '{"name": "widget"}' --ttl 60
    cachekit delete --plugin catalog --tenant acme item:1
    cachekit providers [--json]                      # installed stores and their manifests

Every subcommand reads ``-c/--config FILE`` (repeatable, deep-merged in order like
:meth:`CacheManager.from_yaml <cachekit.host.CacheManager.from_yaml>`; default
``./app-config.yaml``). Exit status: 0 success, 1 failure (bad config, store unreachable,
a miss for ``get``, a declined confirmation), 2 bad usage. Errors go to stderr, without a
traceback.

``check`` writes its probe in the reserved plugin scope ``cachekit-check`` (platform
scope) and deletes it again. ``stats``, ``clear`` and ``get``/``set``/``delete`` act on a
network store shared with the app; the in-memory store lives inside each app process, so
the command cannot see it and says so.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime
import decimal
import enum
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn, TextIO

from cachekit.cache import Cache
from cachekit.codec import MISS
from cachekit.durations import TTL, store_ttl
from cachekit.errors import (
    CacheKeyError,
    CacheValueError,
    ConfigError,
    StoreError,
    StoreTimeout,
    StoreUnavailable,
)
from cachekit.keys import ANY, KeySelector
from cachekit.manager import CacheManager
from cachekit.near import REPORT_INTERVAL, REPORT_PLUGIN, merge_reports
from cachekit.policy import configured
from cachekit.stores.base import CountingStore, InfoStore, Store
from cachekit.stores.memory import MemoryStore

# InfoStore and CountingStore live in cachekit.stores.base; named here too because this
# module exported them first.
__all__ = ["DEFAULT_CONFIG", "PROBE_PLUGIN", "CountingStore", "InfoStore", "build_parser", "main"]

DEFAULT_CONFIG: Final = "app-config.yaml"
PROBE_PLUGIN: Final = "cachekit-check"

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2

_BYTES_TAG: Final = "$bytes"


class CommandError(Exception):
    """An expected failure: its message is printed without a traceback.

    :ivar code: the exit status (1 failure, 2 usage).
    """

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


# --- the parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``cachekit`` argument parser (every subcommand has ``--help``)."""
    from cachekit import __version__

    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "-c",
        "--config",
        action="append",
        metavar="FILE",
        help=(
            "app-config YAML file with a backend.cache section; repeat to merge several "
            f"(later files win, as CacheManager.from_yaml); default: ./{DEFAULT_CONFIG}"
        ),
    )
    parser = argparse.ArgumentParser(
        prog="cachekit",
        description="Check, inspect and clear the cachekit cache a host configures in "
        "app-config.yaml (backend.cache).",
        epilog="Exit status: 0 ok, 1 failure (config, store, a miss for get), 2 bad usage.",
    )
    parser.add_argument("--version", action="version", version=f"cachekit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = commands.add_parser(
        "check",
        parents=[config],
        help="validate the config, connect, and round-trip a probe key",
        description="Validate the config (the library's own checks), connect to the store, "
        f"write, read and delete a probe key in the reserved plugin scope {PROBE_PLUGIN!r}, "
        "and print the store, the server version and the round-trip latency.",
    )
    check.set_defaults(run=_check)

    stats = commands.add_parser(
        "stats",
        parents=[config],
        help="key counts per scope and server-wide hits/misses, from the store",
        description="What the store itself can count. Redis/Valkey: keys per (plugin, "
        "tenant, namespace) by SCAN, and the server's keyspace hits and misses. memcached: "
        "server-wide hits, misses and items (it cannot count per scope). The in-memory "
        "store lives inside each app process: read manager.stats() there, or export it "
        "with cachekit.contrib.prometheus.",
    )
    stats.add_argument("--plugin", metavar="P", help="count only this plugin's keys")
    stats_tenant = stats.add_mutually_exclusive_group()
    stats_tenant.add_argument("--tenant", metavar="T", help="count only this tenant's keys")
    stats_tenant.add_argument(
        "--platform", action="store_true", help="count only platform-scope keys"
    )
    stats.add_argument("--json", action="store_true", help="print JSON instead of tables")
    stats.set_defaults(run=_stats)

    clear = commands.add_parser(
        "clear",
        parents=[config],
        help="clear a plugin, a tenant, one scope or one namespace",
        description="The host's scoped clears. --plugin P: that plugin for every tenant and "
        "the platform scope (uninstall). --tenant T: that tenant in every plugin "
        "(offboarding). Both: one (plugin, tenant) scope. --plugin P --platform: the "
        "plugin's platform scope. Add --namespace N (with --tenant or --platform) for one "
        "namespace. Shows what will be cleared (with a key count when the store can count) "
        "and asks first, unless --yes.",
    )
    clear.add_argument("--plugin", metavar="P", help="the plugin id")
    clear_tenant = clear.add_mutually_exclusive_group()
    clear_tenant.add_argument("--tenant", metavar="T", help="the tenant id")
    clear_tenant.add_argument(
        "--platform", action="store_true", help="the platform scope (no tenant) of --plugin"
    )
    clear.add_argument("--namespace", metavar="N", help="only this namespace of the scope")
    clear.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    clear.set_defaults(run=_clear)

    scope_options = argparse.ArgumentParser(add_help=False)
    scope_options.add_argument("--plugin", metavar="P", required=True, help="the plugin id")
    scope_options.add_argument(
        "--tenant", metavar="T", help="the tenant id (default: the platform scope)"
    )
    scope_options.add_argument("--namespace", metavar="N", help="a namespace in the scope")

    get = commands.add_parser(
        "get",
        parents=[config, scope_options],
        help="print one key's value as JSON",
        description="Print the value stored under KEY in the scope, as JSON. Bytes are "
        f'printed as {{"{_BYTES_TAG}": "<base64>"}}. A miss prints nothing and exits 1.',
    )
    get.add_argument("key", metavar="KEY")
    get.set_defaults(run=_get)

    set_ = commands.add_parser(
        "set",
        parents=[config, scope_options],
        help="store one value (JSON, else a plain string)",
        description="Store VALUE under KEY in the scope. VALUE is parsed as JSON (so 42 is "
        "an integer, '\"42\"' a string, {...} a dict), falling back to the plain string; "
        f'{{"{_BYTES_TAG}": "<base64>"}} stores bytes.',
    )
    set_.add_argument("key", metavar="KEY")
    set_.add_argument("value", metavar="VALUE")
    set_.add_argument(
        "--ttl",
        metavar="DURATION",
        help="expire after DURATION: seconds (90) or '90s', '5m', '1h30m', '2 days', "
        "'PT1M30S' (0: never; default: the config's defaultTtl)",
    )
    set_.add_argument(
        "--string", action="store_true", help="store VALUE as a string, without parsing JSON"
    )
    set_.set_defaults(run=_set)

    delete = commands.add_parser(
        "delete",
        parents=[config, scope_options],
        help="delete one key",
        description="Delete KEY from the scope (deleting a missing key is not an error).",
    )
    delete.add_argument("key", metavar="KEY")
    delete.set_defaults(run=_delete)

    providers = commands.add_parser(
        "providers",
        help="list the installed store providers and their manifests",
        description="List every store provider installed here — the built-in stores and "
        "the entry points of the cachekit.stores group — with the fields of its manifest "
        "(kind, source, version, displayName, description, spec.configSchemaPath). Reads "
        "no config.",
    )
    providers.add_argument("--json", action="store_true", help="print JSON")
    providers.set_defaults(run=_providers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cachekit`` command; returns the exit status (the console script exits
    with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except CommandError as exc:
        return _fail(args.command, str(exc), exc.code)
    except ConfigError as exc:
        return _fail(args.command, f"config error: {exc}")
    except CacheKeyError as exc:
        return _fail(args.command, str(exc), EXIT_USAGE)
    except CacheValueError as exc:
        return _fail(args.command, str(exc))
    except StoreError as exc:
        return _fail(args.command, _store_failure(exc, getattr(args, "store", "")))
    except KeyboardInterrupt:
        return _fail(args.command, "interrupted", 130)


def _fail(command: str, message: str, code: int = EXIT_FAILURE) -> int:
    print(f"cachekit {command}: {message}", file=sys.stderr)
    return code


def _store_failure(exc: StoreError, store: str) -> str:
    if isinstance(exc, StoreUnavailable | StoreTimeout):
        return (
            f"cannot reach the {store or 'cache store'}: {exc}\n"
            "  Is the server running and reachable from here? Check backend.cache.connection "
            "(host, port, credentials) and backend.cache.timeouts in the config."
        )
    return f"the {store or 'cache store'} failed: {exc}"


# --- shared helpers -------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> tuple[CacheManager, list[str]]:
    """The manager the config files describe (nothing connects yet)."""
    files: list[str] = args.config or []
    if not files:
        if not Path(DEFAULT_CONFIG).is_file():
            raise CommandError(
                f"no config: ./{DEFAULT_CONFIG} does not exist in {Path.cwd()}; pass "
                "-c/--config FILE (a YAML file with a backend.cache section)"
            )
        files = [DEFAULT_CONFIG]
    manager = CacheManager.from_yaml(*files)
    args.store = _describe(manager.store)  # for error messages
    return manager, files


def _describe(store: Store) -> str:
    """``redis store at redis://host:6379/0``: the store's name and where it connects."""
    where = getattr(store, "target", "")
    servers = getattr(store, "servers", ())
    if not where and isinstance(servers, tuple):
        where = ", ".join(servers)
    return f"{store.name} store at {where}" if where else f"{store.name} store"


def _network_store(manager: CacheManager, command: str) -> Store:
    store = manager.store
    if isinstance(store, MemoryStore):
        raise CommandError(
            "the config uses the in-memory store, which lives inside each app process; "
            f"`cachekit {command}` runs in its own process and cannot reach it. Use the "
            "manager in the app (manager.clear(...), manager.for_plugin(...)), or restart "
            "the app to empty it."
        )
    return store


def _scope_words(plugin: str | None, tenant: str | None, platform: bool, ns: str | None) -> str:
    if plugin is None:
        return f"tenant {tenant!r} in every plugin"
    if tenant is None and not platform:
        return f"plugin {plugin!r}: every tenant and the platform scope"
    who = f"plugin {plugin!r}, " + ("the platform scope" if platform else f"tenant {tenant!r}")
    return f"{who}, namespace {ns!r}" if ns is not None else f"{who}, every namespace"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for line in (headers, *rows):
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip(),
            file=out,
        )


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def _ratio(hits: int, misses: int) -> float | None:
    return hits / (hits + misses) if hits + misses else None


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1%}"


# --- check ----------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    out = sys.stdout
    manager, files = _load(args)
    print(f"config   {', '.join(files)}: valid", file=out)
    with manager:
        store = manager.store
        if isinstance(store, MemoryStore):
            print("store    memory (in-process: each app process has its own)", file=out)
        else:
            print(f"store    {_describe(store)}", file=out)
        store.ping()
        if isinstance(store, InfoStore):
            for address, info in store.server_info().items():
                where = f" at {address}" if address else ""
                print(f"server   {info['server']} {info['version']}{where}", file=out)
        for what, policy in configured(manager.config):
            print(f"policy   {what}: {policy.describe()}", file=out)
        # the probe bypasses plugin policy: a disabled pluginDefaults must not fail it
        cache = Cache(store, plugin=PROBE_PLUGIN, codec=manager.codec, keyspace=manager.keyspace)
        key, value = f"probe:{uuid.uuid4().hex}", {"probe": uuid.uuid4().hex}
        started = time.perf_counter()
        cache.set(key, value, ttl=60)  # expires by itself if the delete below fails
        written = time.perf_counter()
        found = cache.get(key, MISS)
        read = time.perf_counter()
        cache.delete(key)
        if found != value:
            raise CommandError(
                f"the probe key read back {found!r} instead of what was written: another "
                "writer, a full store evicting at once, or a store that drops writes"
            )
        print(
            f"probe    round trips: set {_ms(written - started)}, get {_ms(read - written)} "
            f"(key in plugin {PROBE_PLUGIN!r}, deleted again)",
            file=out,
        )
    print("ok", file=out)
    return EXIT_OK


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# --- stats ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ScopeCount:
    plugin: str
    tenant: str | None
    namespace: str | None
    keys: int


def _stats(args: argparse.Namespace) -> int:
    manager, _ = _load(args)
    with manager:
        report = _collect_stats(manager, args)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print(file=sys.stdout)
    else:
        _print_stats(report, sys.stdout)
    return EXIT_OK


def _collect_stats(manager: CacheManager, args: argparse.Namespace) -> dict[str, Any]:
    store = manager.store
    report: dict[str, Any] = {
        "store": store.name,
        "target": "" if isinstance(store, MemoryStore) else _describe(store),
        "servers": None,
        "scopes": None,
        "total_keys": None,
        "notes": [],
    }
    notes: list[str] = report["notes"]
    if isinstance(store, MemoryStore):
        notes.append(
            "the in-memory store lives inside each app process and is not visible from "
            "another process: read manager.stats() in the app, or export it with "
            "cachekit.contrib.prometheus"
        )
        return report
    if isinstance(store, InfoStore):
        servers = {}
        for address, info in store.server_info().items():
            hits, misses = _int(info.get("hits", "0")), _int(info.get("misses", "0"))
            entry: dict[str, Any] = {
                "server": info.get("server", store.name),
                "version": info.get("version", "unknown"),
                "hits": hits,
                "misses": misses,
                "hit_ratio": _ratio(hits, misses),
            }
            if "items" in info:
                entry["items"] = _int(info["items"])
            servers[address] = entry
        report["servers"] = servers
        notes.append(
            "hits and misses are server-wide (every client of the server, since it started "
            "or its stats were reset), not only cachekit's"
        )
    if isinstance(store, CountingStore):
        tenant: Any = None if args.platform else (ANY if args.tenant is None else args.tenant)
        selector = manager.keyspace.selector(
            ANY if args.plugin is None else args.plugin, tenant, ANY
        )
        counts = [
            _ScopeCount(*selector.parse_scope(scope), keys=n)
            for scope, n in store.count_scopes(selector).items()
        ]
        counts.sort(key=lambda c: (c.plugin, c.tenant or "", c.namespace or ""))
        report["scopes"] = [
            {"plugin": c.plugin, "tenant": c.tenant, "namespace": c.namespace, "keys": c.keys}
            for c in counts
        ]
        report["total_keys"] = sum(c.keys for c in counts)
    else:
        notes.append(
            f"the {store.name} store cannot count keys per plugin, tenant or namespace"
            + (" (cachekit clears memcached by generations)" if store.name == "memcache" else "")
        )
    if not isinstance(store, InfoStore | CountingStore):
        notes.append(f"the {store.name} store offers no statistics to the command line")
    report["near"] = _near_reports(manager, store)
    return report


def _near_reports(manager: CacheManager, store: Store) -> list[dict[str, Any]] | None:
    """The near-cache counters the app processes reported into the store (summed per
    scope), or ``None`` when the store cannot be scanned for reports."""
    scope_keys = getattr(store, "scope_keys", None)
    if scope_keys is None:
        return None
    keys = scope_keys(manager.keyspace.selector(REPORT_PLUGIN, ANY, ANY))
    return merge_reports(store.get_many(keys).values()) if keys else []


def _print_stats(report: dict[str, Any], out: TextIO) -> None:
    print(f"store: {report['target'] or report['store']}", file=out)
    servers: dict[str, dict[str, Any]] | None = report["servers"]
    if servers:
        print("\nserver-wide:", file=out)
        headers = ["SERVER", "VERSION", "HITS", "MISSES", "HIT RATIO"]
        with_items = any("items" in s for s in servers.values())
        rows = []
        for address, s in servers.items():
            row = [address, f"{s['server']} {s['version']}", str(s["hits"]), str(s["misses"])]
            row.append(_percent(s["hit_ratio"]))
            if with_items:
                row.append(str(s.get("items", "-")))
            rows.append(row)
        _table(headers + (["ITEMS"] if with_items else []), rows, out)
    scopes: list[dict[str, Any]] | None = report["scopes"]
    if scopes is not None:
        print("\nkeys per scope (SCAN):", file=out)
        if scopes:
            rows = [
                [
                    s["plugin"],
                    "(platform)" if s["tenant"] is None else s["tenant"],
                    "(default)" if s["namespace"] is None else s["namespace"],
                    str(s["keys"]),
                ]
                for s in scopes
            ]
            rows.append(["total", "", "", str(report["total_keys"])])
            _table(["PLUGIN", "TENANT", "NAMESPACE", "KEYS"], rows, out)
        else:
            print("  no cachekit keys", file=out)
    near: list[dict[str, Any]] | None = report.get("near")
    if near:
        processes = max(r["processes"] for r in near)
        print(
            f"\nnear cache (reported by up to {processes} app process(es), every "
            f"{REPORT_INTERVAL:g}s):",
            file=out,
        )
        rows = [
            [
                r["plugin"],
                "(platform)" if r["tenant"] is None else r["tenant"],
                "(default)" if r["namespace"] is None else r["namespace"],
                str(r["near_hits"]),
                str(r["near_misses"]),
                _percent(_ratio(r["near_hits"], r["near_misses"])),
                str(r["near_evictions"]),
                str(r["near_invalidations"]),
            ]
            for r in near
        ]
        headers = ["PLUGIN", "TENANT", "NAMESPACE", "HITS", "MISSES", "HIT RATIO"]
        _table([*headers, "EVICTIONS", "INVALIDATIONS"], rows, out)
    for note in report["notes"]:
        print(f"\nnote: {note}", file=out)


# --- clear ----------------------------------------------------------------------------------


def _usage(message: str) -> NoReturn:
    raise CommandError(message, EXIT_USAGE)


def _clear(args: argparse.Namespace) -> int:
    plugin: str | None = args.plugin
    tenant: str | None = args.tenant
    platform: bool = args.platform
    namespace: str | None = args.namespace
    if plugin is None and (platform or namespace is not None):
        _usage("--platform and --namespace need --plugin")
    if plugin is None and tenant is None:
        _usage(
            "name what to clear: --plugin P (a plugin, every tenant), --tenant T (a tenant, "
            "every plugin), or both (one scope); refusing to clear everything"
        )
    if namespace is not None and tenant is None and not platform:
        _usage("--namespace needs --tenant T or --platform (a namespace of one scope)")
    manager, _ = _load(args)
    with manager:
        store = _network_store(manager, "clear")
        what = _scope_words(plugin, tenant, platform, namespace)
        if not args.yes:
            selector = manager.keyspace.selector(
                ANY if plugin is None else plugin,
                None if platform else (ANY if tenant is None else tenant),
                ANY if namespace is None else namespace,
            )
            _confirm(store, selector, what)
        print(f"clearing {what} in the {_describe(store)} ...", file=sys.stderr)
        if plugin is not None and (platform or namespace is not None):
            cache = manager.for_plugin(plugin, None if platform else tenant)
            removed = (cache.namespace(namespace) if namespace is not None else cache).clear()
        else:
            removed = manager.clear(plugin=plugin, tenant=tenant)
    if removed is None:
        print(f"cleared {what} (the {store.name} store cannot count removed entries)")
    else:
        print(f"cleared {what}: {removed} {'entry' if removed == 1 else 'entries'} removed")
    return EXIT_OK


def _confirm(store: Store, selector: KeySelector, what: str) -> None:
    """Show what will be cleared and ask on the terminal.

    :raises CommandError: stdin is not a terminal, or the answer is not yes.
    """
    if not sys.stdin.isatty():
        raise CommandError(
            "refusing to clear without confirmation: stdin is not a terminal; pass --yes to "
            "clear non-interactively",
            EXIT_USAGE,
        )
    if isinstance(store, CountingStore):
        keys = sum(store.count_scopes(selector).values())
        count = f" ({keys} {'key' if keys == 1 else 'keys'} now)"
    else:
        count = f" (the {store.name} store cannot count them first)"
    print(f"This clears {what}{count} in the {_describe(store)}.", file=sys.stderr)
    print("Clear? [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise CommandError("not confirmed; nothing was cleared")


# --- get / set / delete ---------------------------------------------------------------------


def _scoped_cache(args: argparse.Namespace, manager: CacheManager) -> Cache:
    _network_store(manager, args.command)
    cache = manager.for_plugin(args.plugin, args.tenant)
    return cache.namespace(args.namespace) if args.namespace is not None else cache


def _get(args: argparse.Namespace) -> int:
    manager, _ = _load(args)
    with manager:
        value = _scoped_cache(args, manager).get(args.key, MISS)
    if value is MISS:
        raise CommandError(f"miss: no value under {args.key!r} in this scope")
    print(json.dumps(_to_json(value), ensure_ascii=False))
    return EXIT_OK


def _set(args: argparse.Namespace) -> int:
    seconds = None if args.ttl is None else _duration(args.ttl)
    value = args.value if args.string else _parse_value(args.value)
    manager, _ = _load(args)
    with manager:
        _scoped_cache(args, manager).set(args.key, value, ttl=seconds)
    ttl = (
        "default TTL" if seconds is None else ("no expiry" if seconds == 0 else f"ttl {seconds:g}s")
    )
    print(f"stored {args.key!r} ({type(value).__name__}, {ttl})")
    return EXIT_OK


def _duration(text: str) -> float:
    """A ``--ttl`` in seconds (``0.0``: no expiry), read as the Python API reads a ``ttl=``
    (a bare number is seconds)."""
    try:
        number = float(text)
    except ValueError:
        ttl: TTL = text
    else:
        ttl = number
    try:
        return store_ttl(ttl, "--ttl") or 0.0
    except CacheValueError as exc:
        _usage(str(exc))


def _delete(args: argparse.Namespace) -> int:
    manager, _ = _load(args)
    with manager:
        deleted = _scoped_cache(args, manager).delete(args.key)
    print(f"deleted {args.key!r}" if deleted else f"{args.key!r} was not there (nothing deleted)")
    return EXIT_OK


def _to_json(value: Any) -> Any:
    """A cached value as JSON-ready data: bytes become ``{"$bytes": "<base64>"}`` (bytes
    dict keys ``"$bytes:<base64>"``), tuples lists, the codec's other built-in types a
    tagged text (``{"$datetime": "<ISO 8601>"}``, ``$date``, ``$time``, ``$decimal``,
    ``$uuid``, ``{"$timedelta": seconds}``, ``{"$set": [...]}``, ``{"$enum": "Cls.NAME"}``);
    other dict keys their JSON text; everything else as is."""
    if isinstance(value, bytes):
        return {_BYTES_TAG: base64.b64encode(value).decode("ascii")}
    if isinstance(value, list | tuple):
        return [_to_json(item) for item in value]
    if isinstance(value, dict):
        return {_json_key(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return {"$set": [_to_json(item) for item in value]}
    if isinstance(value, enum.Enum):
        return {"$enum": f"{type(value).__qualname__}.{value.name}"}
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return {f"${type(value).__name__}": value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {"$timedelta": value.total_seconds()}
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return {f"${type(value).__name__.lower()}": str(value)}
    return value


def _json_key(key: Any) -> Any:
    if isinstance(key, bytes):
        return f"{_BYTES_TAG}:{base64.b64encode(key).decode('ascii')}"
    if key is None or isinstance(key, str | int | float):
        return key  # json.dumps writes these keys itself
    return json.dumps(_to_json(key), ensure_ascii=False, sort_keys=True)


def _parse_value(text: str) -> Any:
    """A ``set`` VALUE: JSON if it parses (``{"$bytes": "<base64>"}`` objects become
    bytes), else the string itself."""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    return _from_json(data)


def _from_json(data: Any) -> Any:
    if isinstance(data, list):
        return [_from_json(item) for item in data]
    if isinstance(data, dict):
        if set(data) == {_BYTES_TAG} and isinstance(data[_BYTES_TAG], str):
            try:
                return base64.b64decode(data[_BYTES_TAG], validate=True)
            except binascii.Error:
                _usage(f"{_BYTES_TAG} must hold base64, got {data[_BYTES_TAG]!r}")
        return {k: _from_json(v) for k, v in data.items()}
    return data


# --- providers --------------------------------------------------------------------------------


def _providers(args: argparse.Namespace) -> int:
    from cachekit.manifests import providers

    found = providers()
    out = sys.stdout
    if args.json:
        report = [
            {
                "name": p.name,
                "origin": p.origin,
                "target": p.target,
                "manifest": None
                if p.manifest is None
                else {"file": str(p.manifest.file), **p.manifest.fields()},
                "problem": p.problem or None,
            }
            for p in found
        ]
        json.dump(report, out, indent=2)
        print(file=out)
        return EXIT_OK
    for i, p in enumerate(found):
        if i:
            print(file=out)
        print(f"{p.name}  ({p.origin}, {p.target})", file=out)
        rows = list(p.manifest.fields().items()) if p.manifest is not None else []
        rows.append(("manifest", "none" if p.manifest is None else str(p.manifest.file)))
        if p.problem:
            rows.append(("problem", p.problem))
        width = max(len(key) for key, _ in rows)
        for key, value in rows:
            if value:
                print(f"  {key.ljust(width)}  {value}", file=out)
    return EXIT_OK
