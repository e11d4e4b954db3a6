"""Per-plugin policy: what a configured policy costs ``Cache`` calls, and what the policy
code costs a cache without one.

Run: .venv/bin/python bench/bench_policy.py [--base COMMIT]   (about a minute; needs
redis-server and taskset; BENCH_CPU, BENCH_ROUNDS, BENCH_OPS override the defaults)

The script re-executes itself under ``taskset`` and starts its own redis-server pinned to
the same core (see bench/README.md). Part one, in this process with interleaved rounds
(median of per-round ratios), on the memory store and on Redis, sync and async:

- ``plain``: a manager without a policy section (the default policy: ``maxValueBytes``
  1 MiB), the baseline;
- ``policy``: a plugin with every key set (``maxTtl``, ``defaultTtl``, ``maxValueBytes``,
  ``operations`` without ``clear``, ``failOpen``) and a tenant cap, so its cache holds the
  policy's store view, TTL rule and size-checking encoder [issue 14: ``Cache.get`` within
  1.03x of ``plain``];
- ``bare``: ``Cache(store, ...)`` built without any policy: the code path before issue 14,
  and the same code as ``plain`` (the ratio between them is the noise floor of the run).

Part two, with ``--base COMMIT``: the plain ``Cache.get`` of this tree against the tree at
COMMIT (exported with ``git archive``), in alternating child processes of this virtualenv
(``PYTHONPATH`` picks the tree), median of per-round ratios this/base.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, async_case, pin_to_cpu, ratio, report, run_rounds
from servers import RedisServer

from cachekit import Cache
from cachekit.host import CacheManager

HERE = Path(__file__).resolve().parent
CPU = os.environ.get("BENCH_CPU", str((os.cpu_count() or 1) - 1))  # the last core
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))
OPS = int(os.environ.get("BENCH_OPS", "4000"))
VALUE = {"id": 42, "name": "widget", "tags": ["a", "b"]}
TARGET = 1.03
POLICY = {
    "knownPlugins": ["catalog"],
    "plugins": {
        "catalog": {
            "maxTtl": "1h",
            "defaultTtl": "5m",
            "maxValueBytes": 65536,
            "operations": ["read", "write", "delete", "count", "expire"],
            "failOpen": True,
        }
    },
    "tenants": {"acme": {"maxValueBytes": 32768}},
}


def caches(store_section: dict[str, Any]) -> tuple[list[CacheManager], dict[str, Cache]]:
    """The managers (to close) and the three caches of one store, with the item written."""
    plain = CacheManager.from_config({"backend": {"cache": store_section}})
    policed = CacheManager.from_config({"backend": {"cache": {**store_section, **POLICY}}})
    built = {
        "plain": plain.for_plugin("catalog", "acme"),
        "policy": policed.for_plugin("catalog", "acme"),
        "bare": Cache(plain.store, plugin="catalog", tenant="acme"),
    }
    for cache in built.values():
        cache.set("item", VALUE, ttl=600)
    return [plain, policed], built


SYNC: dict[str, tuple[tuple[str, ...], Callable[[Cache], object]]] = {
    "get": (("plain", "policy", "bare"), lambda c: c.get("item")),
    "set": (("plain", "policy"), lambda c: c.set("w", VALUE, 300)),
    "incr": (("plain", "policy"), lambda c: c.incr("n", 1, 60)),
}


def cases_for(store: str, built: dict[str, Cache], loop: asyncio.AbstractEventLoop) -> list[Case]:
    """Each operation's cases, the plain cache first: every other is compared with it."""
    cases: list[Case] = []
    for op, (kinds, call) in SYNC.items():
        for kind in kinds:
            base = None if kind == "plain" else f"{store} Cache.{op} plain"
            cases.append(Case(f"{store} Cache.{op} {kind}", partial(call, built[kind]), base))
    for kind in ("plain", "policy"):
        base = None if kind == "plain" else f"{store} Cache.aget plain"
        aget = partial(built[kind].aget, "item")
        cases.append(async_case(f"{store} Cache.aget {kind}", loop, aget, baseline=base))
    return cases


def in_process(redis_url: str) -> None:
    loop = asyncio.new_event_loop()
    managers, memory = caches({})
    more, on_redis = caches({"store": "redis", "connection": redis_url})
    managers += more
    in_memory, over_redis = cases_for("memory", memory, loop), cases_for("redis", on_redis, loop)
    run_rounds(in_memory, rounds=ROUNDS, ops=OPS * 10)  # ~1 µs calls: longer runs per case
    run_rounds(over_redis, rounds=ROUNDS, ops=OPS)
    cases = [*in_memory, *over_redis]
    print(report(f"Policy cost (CPU {CPU}, {ROUNDS} rounds)", cases))
    by_name = {c.name: c for c in cases}
    for store in ("memory", "redis"):
        r = ratio(by_name[f"{store} Cache.get policy"], by_name)
        verdict = "ok" if r is not None and r <= TARGET else "OVER"
        print(f"\n{store}: Cache.get policy/plain {r:.3f}x (target <= {TARGET}x): {verdict}")
    for manager in managers:
        loop.run_until_complete(manager.aclose())
        manager.close()
    loop.close()


CHILD = r"""
import json, sys, time
import cachekit
from cachekit.host import CacheManager
from cachekit.stores.memory import MemoryStore
from cachekit.stores.redis import RedisStore

tree, url, ops = sys.argv[1], sys.argv[2], int(sys.argv[3])
assert cachekit.__file__.startswith(tree), (cachekit.__file__, tree)
out = {}
for name, store in (("memory", MemoryStore()), ("redis", RedisStore.from_url(url))):
    cache = CacheManager(store=store).for_plugin("catalog", tenant="acme")
    cache.set("item", {"id": 42, "name": "widget", "tags": ["a", "b"]}, ttl=600)
    n = ops * 20 if name == "memory" else ops
    for _ in range(n // 10):
        cache.get("item")
    start = time.perf_counter()
    for _ in range(n):
        cache.get("item")
    out[name] = (time.perf_counter() - start) / n * 1e9
    store.close()
print(json.dumps(out))
"""


def against_base(base: str, redis_url: str, tmp: Path) -> None:
    trees = {"base": tmp / "base", "this": HERE.parent}
    trees["base"].mkdir()
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", base], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(trees["base"])], input=archive, check=True)
    child = tmp / "child.py"
    child.write_text(CHILD, encoding="utf-8")
    results: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
    for n in range(ROUNDS):
        for side in ("base", "this") if n % 2 == 0 else ("this", "base"):
            env = {**os.environ, "PYTHONPATH": str(trees[side])}
            done = subprocess.run(
                [sys.executable, str(child), str(trees[side]), redis_url, str(OPS)],
                check=True,
                capture_output=True,
                text=True,
                env=env,
                cwd=tmp,
            )
            results[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"\n### Plain Cache.get: this tree vs {base} ({ROUNDS} rounds of one child per side)\n")
    print("| store | base median ns/op | this median ns/op | this/base (median of rounds) |")
    print("|---|---:|---:|---:|")
    for store in ("memory", "redis"):
        old = statistics.median(r[store] for r in results["base"])
        new = statistics.median(r[store] for r in results["this"])
        pairs = zip(results["base"], results["this"], strict=True)
        r = statistics.median(b[store] / a[store] for a, b in pairs)
        print(f"| {store} | {old:,.0f} | {new:,.0f} | {r:.3f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", help="also compare the plain Cache.get with this commit")
    args = parser.parse_args()
    pin_to_cpu(CPU)
    tmp = Path(tempfile.mkdtemp(prefix="cachekit-bench-policy-"))
    server = RedisServer("redis-server", workdir=tmp / "redis").start()
    try:
        in_process(server.url)
        if args.base:
            against_base(args.base, server.url, tmp)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
