"""Client tracking (the near cache's invalidations): how fast they arrive and what they cost.

Run: .venv/bin/python bench/bench_tracking.py   (about a minute; needs redis-server and
redis-benchmark; BENCH_WRITES, BENCH_ROUNDS override the defaults)

On a redis-server of its own (loopback, no persistence), three measurements:

1. **Latency**: one process writes ``BENCH_WRITES`` keys under the tracked prefix, one after
   another, with a second client; for each, the time from the ``SET`` being acknowledged to
   ``sink.invalidate`` being called with its key by the tracker's thread (negative when the
   message was read before the acknowledgement): median, p99, max.
2. **Listener CPU**: a process running nothing but a tracker with a counting sink;
   ``redis-benchmark`` sends 200,000 ``SET`` under the prefix (1 client, then 50: the server
   batches the keys of one event-loop turn into one message); the listener's CPU time
   (``getrusage``) minus the same wall time idle, per message and per key.
3. **Server throughput**: ``redis-benchmark -t set`` (50 clients) with 0 and with 4 listening
   processes, alternated over ``BENCH_ROUNDS`` rounds: the median requests per second, and
   the server's own CPU time per ``SET`` (``INFO cpu``), which the listeners' CPU (on the same
   small machine) does not blur.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # servers.py
import redis
from servers import RedisServer

from cachekit.stores.redis import RedisStore
from cachekit.stores.redis.tracking import Tracker

WRITES = int(os.environ.get("BENCH_WRITES", "10000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
PREFIX = "key:"  # redis-benchmark's keys are key:__rand_int__
LISTENERS = 4


class CountingSink:
    """Counts messages and keys; optionally wakes a waiter on one key."""

    def __init__(self) -> None:
        self.messages = 0
        self.keys = 0
        self.ready = threading.Event()
        self.watched: str | None = None
        self.seen = threading.Event()
        self.at = 0.0

    def tracking_lost(self, source: str) -> None:
        self.ready.clear()

    def tracking_established(self, source: str) -> None:
        self.ready.set()

    def invalidate(self, keys: Sequence[str]) -> None:
        self.messages += 1
        self.keys += len(keys)
        if self.watched is not None and self.watched in keys:
            self.at = time.perf_counter()
            self.seen.set()

    def invalidate_all(self) -> None:
        self.messages += 1


def started(url: str, sink: CountingSink) -> Tracker:
    tracker = RedisStore.from_url(url).tracker(sink, PREFIX)
    assert tracker is not None
    tracker.start()
    if not sink.ready.wait(10):
        raise SystemExit(f"tracking never established: {tracker!r}")
    return tracker


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def listen(url: str) -> None:
    """A listening process: answers ``stats`` on stdin with ``cpu messages keys``."""
    sink = CountingSink()
    tracker = started(url, sink)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "stats":
            print(f"{cpu()} {sink.messages} {sink.keys}", flush=True)
    tracker.stop()


class Listener:
    def __init__(self, url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--listen", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise SystemExit("a listener did not start")

    def stats(self) -> tuple[float, int, int]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        seconds, messages, keys = self.process.stdout.readline().split()
        return float(seconds), int(messages), int(keys)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)


def server_cpu(server: RedisServer) -> float:
    """The server's CPU seconds so far (``INFO cpu``)."""
    info = server.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def benchmark(server: RedisServer, clients: int, requests: int = 200_000) -> tuple[float, float]:
    """``redis-benchmark -t set``: requests per second, and the server's CPU µs per request."""
    before = server_cpu(server)
    out = subprocess.run(
        [
            *("redis-benchmark", "-h", server.host, "-p", str(server.port), "-t", "set"),
            *("-n", str(requests), "-c", str(clients), "-r", "100000", "--csv", "-q"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    spent = server_cpu(server) - before
    row = next(line for line in out.splitlines() if line.startswith('"SET"'))
    return float(row.split(",")[1].strip('"')), spent / requests * 1e6


def latency(url: str) -> None:
    sink = CountingSink()
    tracker = started(url, sink)
    writer = redis.Redis.from_url(url, protocol=2)
    delays = []
    for i in range(WRITES):
        key = f"{PREFIX}lat{i}"
        sink.watched, sink.at = key, 0.0
        sink.seen.clear()
        writer.set(key, b"v")
        acked = time.perf_counter()
        if not sink.seen.wait(5):
            raise SystemExit(f"no invalidation for {key}")
        delays.append(sink.at - acked)
    tracker.stop()
    writer.close()
    delays.sort()
    us = [d * 1e6 for d in delays]
    print(
        f"ack -> sink.invalidate over {WRITES} writes: median {statistics.median(us):.0f} µs, "
        f"p99 {us[int(len(us) * 0.99) - 1]:.0f} µs, max {us[-1]:.0f} µs "
        f"(min {us[0]:.0f} µs)"
    )


def listener_cpu(server: RedisServer) -> None:
    listener = Listener(server.url)
    try:
        for clients in (1, 50):
            before, messages0, keys0 = listener.stats()
            started_at = time.monotonic()
            benchmark(server, clients)
            wall = time.monotonic() - started_at
            time.sleep(0.5)  # let the listener drain its socket
            busy, messages1, keys1 = listener.stats()
            idle0, _, _ = listener.stats()
            time.sleep(wall)
            idle1, _, _ = listener.stats()
            spent = (busy - before) - (idle1 - idle0)
            messages, keys = messages1 - messages0, keys1 - keys0
            print(
                f"listener CPU, {clients} writing client(s): {messages} messages, {keys} keys; "
                f"{spent / messages * 1e6:.1f} µs per message, {spent / keys * 1e6:.1f} µs per key"
                f" (idle for the same {wall:.1f} s: {(idle1 - idle0) * 1e3:.0f} ms)"
            )
    finally:
        listener.close()


def throughput(server: RedisServer) -> None:
    results: dict[int, list[tuple[float, float]]] = {0: [], LISTENERS: []}
    for _ in range(ROUNDS):
        results[0].append(benchmark(server, 50))
        listeners = [Listener(server.url) for _ in range(LISTENERS)]
        try:
            results[LISTENERS].append(benchmark(server, 50))
        finally:
            for listener in listeners:
                listener.close()
    for count, runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        cost = statistics.median(c for _, c in runs)
        print(
            f"redis-benchmark -t set -c 50, {count} BCAST listeners, median of {ROUNDS} rounds: "
            f"{rate:,.0f} req/s, server CPU {cost:.2f} µs per SET"
        )


def main() -> None:
    if shutil.which("redis-benchmark") is None:
        raise SystemExit("redis-benchmark is not on PATH")
    workdir = Path(tempfile.mkdtemp(prefix="cachekit-bench-"))
    server = RedisServer("redis-server", workdir=workdir).start()
    try:
        latency(server.url)
        listener_cpu(server)
        throughput(server)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--listen"]:
        listen(sys.argv[2])
    else:
        main()
