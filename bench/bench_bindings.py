"""Named bindings on the hot paths: this tree against the commit before bindings, one run.

Run: .venv/bin/python bench/bench_bindings.py [--base 7865da0] [--rounds 9] [--ops 200000]

``base`` is commit ``--base`` (default ``7865da0``, the branch point of the bindings work)
exported with ``git archive``; ``new`` is this working tree. Both import from their own
directory in child processes of this interpreter (same dependencies), pinned to one core,
alternating per round. Each child times, on the in-memory store: ``current_cache()``,
``current_cache("ns")``, and a sync ``@cached`` hit; the new tree also times the same on a
named binding (``current_cache(binding="s")``, ``@cached(binding="s")``). The table gives
each case's median ns per call and the median of per-round ratios new/base.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from harness import pin_to_cpu  # noqa: E402

CPU = os.environ.get("BENCH_CPU", str((os.cpu_count() or 1) - 1))

CHILD = r"""
import json, sys, timeit
from cachekit import cached, current_cache
from cachekit.host import CacheManager, scope

ops, named = int(sys.argv[1]), sys.argv[2] == "1"
section = {"bindings": {"s": {}}, "pluginDefaults": {"bindings": ["s"]}} if named else {}
manager = CacheManager.from_section(section)

@cached(namespace="bench")
def hit(x):
    return x

cases = {
    "current_cache()": lambda: current_cache(),
    'current_cache("ns")': lambda: current_cache("ns"),
    "@cached hit": lambda: hit(1),
}
if named:
    @cached(namespace="bench", binding="s")
    def hit_on(x):
        return x

    cases['current_cache(binding="s")'] = lambda: current_cache(binding="s")
    cases['@cached(binding="s") hit'] = lambda: hit_on(1)

out = {}
with scope("catalog", "acme", manager=manager):
    for name, fn in cases.items():
        fn(); fn()
        out[name] = min(timeit.repeat(fn, number=ops, repeat=3)) / ops * 1e9
print(json.dumps(out))
"""


def child(tree: Path, ops: int, named: bool) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(ops), "1" if named else "0"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(run.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="7865da0")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--ops", type=int, default=200_000)
    args = parser.parse_args()
    pin_to_cpu(CPU)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.base, "cachekit"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        rounds: list[tuple[dict[str, float], dict[str, float]]] = []
        for _ in range(args.rounds):
            old = child(base, args.ops, named=False)
            new = child(ROOT, args.ops, named=True)
            rounds.append((old, new))
    print(f"{'case':32} {'base ns':>8} {'new ns':>8} {'new/base':>9}")
    for name in rounds[0][1]:
        news = [new[name] for _, new in rounds]
        olds = [old[name] for old, _ in rounds if name in old]
        ratio = (
            f"{statistics.median(new[name] / old[name] for old, new in rounds):.3f}x"
            if olds
            else "-"
        )
        base_ns = f"{statistics.median(olds):.0f}" if olds else "-"
        print(f"{name:32} {base_ns:>8} {statistics.median(news):>8.0f} {ratio:>9}")


if __name__ == "__main__":
    main()
