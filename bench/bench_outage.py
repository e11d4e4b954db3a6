"""Redis store under outages: how long a call takes to fail, with the default config.

Run: .venv/bin/python bench/bench_outage.py   (about 10 s; needs redis-server)

Defaults measured: ``timeouts: {connect: 250ms, operation: 500ms}``, ``circuitBreaker:
{failureThreshold: 3, cooldown: 2s}``, no client-side retries. Sync and async calls use two
stores (so each has its own breaker). Scenarios:

- healthy: a GET that hits, for reference;
- frozen: the server is SIGSTOPped (accepts connections, never answers): each call waits the
  operation timeout and fails with StoreTimeout, until the breaker opens;
- killed: the server is SIGKILLed (connections refused): the first calls fail with
  StoreUnavailable, then the breaker opens and calls fail without touching the network;
- restarted / resumed: the first calls once the server is back and the cooldown is over;
- connect hangs: the store points at a port whose accept queue is full, so connecting hangs
  until the connect timeout.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers import RedisServer

from cachekit import Cache, StoreError
from cachekit.host import CacheManager

COOLDOWN = 2.1  # a little over the default circuitBreaker.cooldown


def timed(call: Callable[[], Any]) -> tuple[float, str]:
    """Seconds one call took, and what it raised ("ok" if nothing)."""
    start = time.perf_counter()
    try:
        call()
        outcome = "ok"
    except StoreError as exc:
        outcome = type(exc).__name__ + (" (breaker open)" if "skipping" in str(exc) else "")
    return time.perf_counter() - start, outcome


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1e6:.0f} µs"


def measure(
    rows: list[list[str]], scenario: str, mode: str, call: Callable[[], Any], n: int
) -> None:
    """Time ``n`` calls; one row per run of identical outcomes."""
    runs: list[tuple[str, list[float]]] = []
    for _ in range(n):
        seconds, outcome = timed(call)
        if runs and runs[-1][0] == outcome:
            runs[-1][1].append(seconds)
        else:
            runs.append((outcome, [seconds]))
    for outcome, times in runs:
        median, worst = fmt(statistics.median(times)), fmt(max(times))
        rows.append([scenario, mode, outcome, str(len(times)), median, worst])


def cache_for(url: str) -> tuple[CacheManager, Cache]:
    config = {"backend": {"cache": {"store": "redis", "connection": url}}}
    manager = CacheManager.from_config(config)
    return manager, manager.for_plugin("outage", tenant="t")


class Pair:
    """A sync and an async cache on separate stores, measured side by side."""

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sync_manager, self.sync = cache_for(url)
        self.async_manager, self.async_ = cache_for(url)

    def measure(self, rows: list[list[str]], scenario: str, n: int) -> None:
        measure(rows, scenario, "sync", lambda: self.sync.get("k"), n)
        run = self.loop.run_until_complete
        measure(rows, scenario, "async", lambda: run(self.async_.aget("k")), n)

    def close(self) -> None:
        self.loop.run_until_complete(self.async_manager.aclose())
        self.sync_manager.close()


def scenarios(rows: list[list[str]], loop: asyncio.AbstractEventLoop, server: RedisServer) -> None:
    """Run every scenario (the server is paused, killed and started again on its port)."""
    pair = Pair(server.url, loop)
    pair.sync.set("k", 1)
    pair.measure(rows, "healthy", 200)

    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    pair.measure(rows, "frozen (SIGSTOP)", 6)
    os.kill(pid, signal.SIGCONT)
    time.sleep(COOLDOWN)
    pair.measure(rows, "resumed, after cooldown", 3)

    server.kill()
    pair.measure(rows, "killed (SIGKILL)", 200)
    server.start()
    time.sleep(COOLDOWN)
    pair.measure(rows, "restarted, after cooldown", 3)
    pair.close()

    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(0)
        fillers = [socket.socket() for _ in range(3)]  # fill the accept queue
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(blackhole.getsockname())
        pair = Pair(f"redis://127.0.0.1:{blackhole.getsockname()[1]}/0", loop)
        pair.measure(rows, "connect hangs (full backlog)", 5)
        pair.close()
        for filler in fillers:
            filler.close()


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="cachekit-outage-"))
    server = RedisServer("redis-server", workdir=workdir).start()
    loop = asyncio.new_event_loop()
    rows: list[list[str]] = []
    try:
        scenarios(rows, loop, server)
    finally:
        if server.pid is not None:
            os.kill(server.pid, signal.SIGCONT)
        server.stop()
        loop.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print("| scenario | mode | outcome | calls | median | max |")
    print("|---|---|---|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
