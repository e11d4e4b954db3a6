"""The near cache's memory bound: push far more distinct values through it than it may hold
and watch the process's resident memory (issue 18).

Run: .venv/bin/python bench/near_memory.py [--total-mb 1024] [--near-mb 64] [--value-kb 16]
     [--url redis://...] [--json]      (without --url it starts its own redis-server)

One process, one cache on Redis with ``nearCache: {maxBytes: near-mb MB}``: for each of
``total-mb / value-kb`` keys it sets a distinct value, reads it back twice (the second read
must be a near hit: the value went into the near cache) and checks it. RSS comes from
/proc/self/status: VmRSS before the run (after connecting and a few warm-up values of the
same size), VmHWM (the peak, reset with /proc/self/clear_refs just before the run) and VmRSS
at the end. The claim: the peak stays within the near cache's ``maxBytes`` plus a stated
overhead (the near cache's bookkeeping per entry, the value being written and read, the
driver's read buffer and the allocator's free lists). The suite runs a small version
(tests/test_near_memory.py).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import near_serving, redis_url

from cachekit.host import CacheManager

MB = 1024 * 1024


@dataclass(frozen=True)
class MemoryReport:
    """RSS around one run, in bytes, and what the near cache did."""

    values: int
    value_bytes: int
    pushed_bytes: int
    near_max_bytes: int
    rss_before: int
    peak_growth: int  # VmHWM during the run - VmRSS before
    final_growth: int  # VmRSS at the end - VmRSS before
    near_hits: int
    near_evictions: int

    def table(self) -> str:
        """A markdown table of the run."""
        rows = [
            ("values pushed", f"{self.values:,} x {self.value_bytes // 1024} KB"),
            ("bytes pushed", f"{self.pushed_bytes / MB:,.0f} MB"),
            ("near cache maxBytes", f"{self.near_max_bytes / MB:,.0f} MB"),
            ("RSS before", f"{self.rss_before / MB:,.1f} MB"),
            ("peak RSS growth (VmHWM - before)", f"{self.peak_growth / MB:,.1f} MB"),
            ("final RSS growth", f"{self.final_growth / MB:,.1f} MB"),
            (
                "peak growth beyond maxBytes",
                f"{(self.peak_growth - self.near_max_bytes) / MB:,.1f} MB",
            ),
            ("near hits / evictions", f"{self.near_hits:,} / {self.near_evictions:,}"),
        ]
        return "\n".join(["| | |", "|---|---:|", *(f"| {k} | {v} |" for k, v in rows)])


def status_kb(field: str) -> int:
    """One ``kB`` field of /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def run(url: str, *, total_mb: int, near_mb: int, value_kb: int) -> MemoryReport:
    """Push ``total_mb`` of distinct ``value_kb`` values through a ``near_mb`` near cache."""
    near_bytes, value_bytes = near_mb * MB, value_kb * 1024
    count = total_mb * MB // value_bytes
    manager = CacheManager.from_config(
        {
            "backend": {
                "cache": {
                    "store": "redis",
                    "connection": url,
                    "nearCache": {"maxEntries": 10 * count, "maxBytes": near_bytes, "ttl": "600s"},
                }
            }
        }
    )
    cache = manager.for_plugin("memory-bound", tenant="acme")
    near_serving(manager, cache)
    filler = random.Random(18).randbytes(value_bytes - 8)
    for i in range(16):  # warm up: connections, the codec, the allocator at this size
        cache.set(f"warm{i}", i.to_bytes(8, "big") + filler, ttl=600)
        cache.get(f"warm{i}")
    gc.collect()
    before = status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    for i in range(count):
        key, value = f"v{i}", i.to_bytes(8, "big") + filler
        cache.set(key, value, ttl=600)
        if cache.get(key) != value or cache.get(key) != value:
            raise RuntimeError(f"{key} did not read back")
        del value
    peak, final = status_kb("VmHWM"), status_kb("VmRSS")
    rows = manager.stats()
    report = MemoryReport(
        values=count,
        value_bytes=value_bytes,
        pushed_bytes=count * value_bytes,
        near_max_bytes=near_bytes,
        rss_before=before,
        peak_growth=peak - before,
        final_growth=final - before,
        near_hits=sum(row.near_hits for row in rows),
        near_evictions=sum(row.near_evictions for row in rows),
    )
    cache.clear()
    manager.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total-mb", type=int, default=1024)
    parser.add_argument("--near-mb", type=int, default=64)
    parser.add_argument("--value-kb", type=int, default=16)
    parser.add_argument("--url", help="a running Redis (default: start one)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    with redis_url(args.url) as url:
        report = run(url, total_mb=args.total_mb, near_mb=args.near_mb, value_kb=args.value_kb)
    print(json.dumps(asdict(report)) if args.json else report.table())


if __name__ == "__main__":
    main()
