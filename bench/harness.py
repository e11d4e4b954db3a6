"""A tiny benchmark harness: interleaved rounds, medians, per-round ratios.

The machines are small and shared (see bench/README.md): cases are run round-robin in
one process so drift hits every case alike, and each case is compared with a baseline
*within the same round*; the report gives the median per-op time and the median of the
per-round ratios.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# tests/servers.py starts real servers on free loopback ports (standard library only).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers import RedisServer


@contextmanager
def redis_url(url: str | None = None, *, binary: str = "redis-server") -> Iterator[str]:
    """``url`` when given, else the URL of a ``binary`` started for the block on a free
    loopback port (stopped, and its directory removed, afterwards)."""
    if url is not None:
        yield url
        return
    workdir = Path(tempfile.mkdtemp(prefix="cachekit-bench-"))
    server = RedisServer(binary, workdir=workdir).start()
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def pin_to_cpu(cpu: str) -> None:
    """Re-execute this script under ``taskset -c cpu`` unless already pinned there; the
    servers it then starts inherit the pin, so client and server share one core."""
    if os.environ.get("CACHEKIT_BENCH_PINNED") == cpu:
        return
    if shutil.which("taskset") is None:
        sys.exit("taskset not found (util-linux)")
    os.environ["CACHEKIT_BENCH_PINNED"] = cpu
    os.execvp("taskset", ["taskset", "-c", cpu, sys.executable, *sys.argv])


@dataclass
class Case:
    """One measured operation. ``op()`` performs ``batch`` operations (an async case runs a
    loop of ``batch`` awaits inside one ``run_until_complete``, so loop start-up is spread
    thin and paid alike by every async case)."""

    name: str
    op: Callable[[], object]
    baseline: str | None = None  # the case this one's ratio is taken against
    batch: int = 1
    times: list[float] = field(default_factory=list)  # seconds per op, one per round


def async_case(
    name: str,
    loop: asyncio.AbstractEventLoop,
    op: Callable[[], Awaitable[Any]],
    *,
    batch: int = 100,
    baseline: str | None = None,
) -> Case:
    """A case awaiting ``op()`` ``batch`` times per loop turn."""

    async def many() -> None:
        for _ in range(batch):
            await op()

    return Case(name, lambda: loop.run_until_complete(many()), baseline=baseline, batch=batch)


def run_rounds(cases: Sequence[Case], *, rounds: int = 15, ops: int = 20_000) -> None:
    """Run every case ``rounds`` times, round-robin, recording seconds per op."""
    for case in cases:  # warm-up
        for _ in range(max(1, ops // 10 // case.batch)):
            case.op()
    for _ in range(rounds):
        for case in cases:
            op, calls = case.op, max(1, ops // case.batch)
            start = time.perf_counter()
            for _ in range(calls):
                op()
            case.times.append((time.perf_counter() - start) / (calls * case.batch))


def ratio(case: Case, by_name: dict[str, Case]) -> float | None:
    """Median of this case's per-round time divided by its baseline's."""
    if case.baseline is None:
        return None
    base = by_name[case.baseline]
    return statistics.median(t / b for t, b in zip(case.times, base.times, strict=True))


def near_serving(manager: Any, cache: Any, *, timeout: float = 10.0) -> None:
    """Wait until ``cache``'s near cache serves hits: it holds nothing until its tracking
    connection is established, so a run that starts earlier measures the store instead."""
    probe = f"near-probe-{os.getpid()}"  # one per process: another's write would drop it
    cache.set(probe, 1, ttl=60)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = sum(row.near_hits for row in manager.stats())
        cache.get(probe)
        cache.get(probe)
        if sum(row.near_hits for row in manager.stats()) > before:
            cache.delete(probe)
            return
        time.sleep(0.01)
    raise RuntimeError(f"the near cache did not serve a hit within {timeout:g} s")


def report(title: str, cases: Sequence[Case]) -> str:
    """A markdown table: median ns/op and median ratio to the baseline."""
    by_name = {c.name: c for c in cases}
    lines = [f"### {title}", "", "| case | median ns/op | ratio | vs |", "|---|---:|---:|---|"]
    for case in cases:
        r = ratio(case, by_name)
        median_ns = statistics.median(case.times) * 1e9
        cells = f"{r:.2f}x | {case.baseline}" if r is not None else "— | —"
        lines.append(f"| {case.name} | {median_ns:,.0f} | {cells} |")
    return "\n".join(lines)
