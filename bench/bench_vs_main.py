"""The default install of this tree against an older commit, in absolute time, one run.

Run: .venv/bin/python bench/bench_vs_main.py [--base 809899e] [--rounds 9] [--ops 2000]
     (a few minutes: it builds two virtualenvs first; needs git, redis-server and taskset)

Issue 11 replaced cachekit's own RESP reader (``stores/redis_resp.py``, used when the
driver had no C parser) with the drivers' public API plus their C parsers, which
``cachekit[redis]`` now installs. This script answers "what does a user who runs
``pip install 'cachekit[redis]'`` get, compared with before?":

* ``old``: commit ``--base`` (default ``809899e``, the last commit with the own reader),
  exported with ``git archive`` into a temporary directory and installed with its own
  ``[redis]`` extra (redis-py without hiredis: its own reader did the parsing);
* ``new``: this working tree installed with its ``[redis]`` extra (redis-py with hiredis).

Each gets a fresh virtualenv in the temporary directory (nothing of the old code is kept).
One redis-server serves both; this process, the server and every child are pinned to one
core. Rounds alternate ``old`` and ``new`` child processes; each child measures
``Cache.get`` and ``Cache.get_many(100)`` (sync and async) and prints its times. The table
gives the median of each side and the median of per-round ratios new/old.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from harness import pin_to_cpu  # noqa: E402
from servers import RedisServer  # noqa: E402

CPU = os.environ.get("BENCH_CPU", str((os.cpu_count() or 1) - 1))

CHILD = r"""
import asyncio, importlib.util, json, sys, time
try:
    from cachekit.host import CacheManager
except ImportError:  # the older commit: before cachekit.host (0.1)
    from cachekit import CacheManager
from cachekit.stores.redis import RedisStore

url, ops = sys.argv[1], int(sys.argv[2])
store = RedisStore.from_url(url)
manager = CacheManager(store=store)
cache = manager.for_plugin("catalog", tenant="acme")
value = {"id": 42, "name": "widget", "tags": ["a", "b"]}
keys = [f"item:{i}" for i in range(100)]
cache.set("item", value, ttl=600)
cache.set_many(dict.fromkeys(keys, value), ttl=600)


def timed(op, n):
    for _ in range(max(1, n // 10)):
        op()
    start = time.perf_counter()
    for _ in range(n):
        op()
    return (time.perf_counter() - start) / n * 1e9


loop = asyncio.new_event_loop()


def atimed(op, n):
    async def many(count):
        for _ in range(count):
            await op()

    loop.run_until_complete(many(max(1, n // 10)))
    start = time.perf_counter()
    loop.run_until_complete(many(n))
    return (time.perf_counter() - start) / n * 1e9


out = {
    "hiredis": importlib.util.find_spec("hiredis") is not None,
    "Cache.get": timed(lambda: cache.get("item"), ops),
    "Cache.get_many(100)": timed(lambda: cache.get_many(keys), ops // 4),
    "Cache.aget": atimed(lambda: cache.aget("item"), ops),
    "Cache.aget_many(100)": atimed(lambda: cache.aget_many(keys), ops // 4),
}
loop.run_until_complete(manager.aclose())
manager.close()
print(json.dumps(out))
"""

CASES = ("Cache.get", "Cache.get_many(100)", "Cache.aget", "Cache.aget_many(100)")


def run(*args: str | Path, cwd: Path | None = None) -> str:
    return subprocess.run(
        [str(a) for a in args], check=True, capture_output=True, text=True, cwd=cwd
    ).stdout


def venv_with(tmp: Path, name: str, source: Path) -> Path:
    """A fresh virtualenv with ``source[redis]`` installed (not editable); its python."""
    env = tmp / f"{name}-venv"
    run(sys.executable, "-m", "venv", env)
    python = env / "bin" / "python"
    run(
        python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{source}[redis]"
    )
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="809899e", help="the older commit (default 809899e)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--ops", type=int, default=2000)
    args = parser.parse_args()
    pin_to_cpu(CPU)
    tmp = Path(tempfile.mkdtemp(prefix="cachekit-vs-main-"))
    try:
        old_tree = tmp / "old"
        old_tree.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.base], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive, check=True)
        print(f"building virtualenvs in {tmp} ...", file=sys.stderr)
        pythons = {"old": venv_with(tmp, "old", old_tree), "new": venv_with(tmp, "new", ROOT)}
        child = tmp / "child.py"
        child.write_text(CHILD, encoding="utf-8")
        server = RedisServer("redis-server", workdir=tmp / "redis").start()
        try:
            results: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
            for n in range(args.rounds):
                for side in ("old", "new") if n % 2 == 0 else ("new", "old"):
                    out = run(pythons[side], child, server.url, str(args.ops), cwd=tmp)
                    results[side].append(json.loads(out.strip().splitlines()[-1]))
        finally:
            server.stop()
        report(args.base, results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(base: str, results: dict[str, list[dict[str, float]]]) -> None:
    old, new = results["old"], results["new"]
    print(f"CPU {CPU}; {len(old)} rounds of one child process per side, alternating")
    print(f"old = {base} [redis] (hiredis installed: {bool(old[0]['hiredis'])}); ", end="")
    print(f"new = this tree [redis] (hiredis installed: {bool(new[0]['hiredis'])})\n")
    print("| case | old median ns/op | new median ns/op | new/old (median of rounds) |")
    print("|---|---:|---:|---:|")
    for case in CASES:
        o = statistics.median(r[case] for r in old)
        w = statistics.median(r[case] for r in new)
        ratio = statistics.median(b[case] / a[case] for a, b in zip(old, new, strict=True))
        print(f"| {case} | {o:,.0f} | {w:,.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
