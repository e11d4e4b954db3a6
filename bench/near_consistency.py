"""Consistency of the near cache under load: how long after a write is acknowledged can any
process still read the old value? (issue 18)

Run: .venv/bin/python bench/near_consistency.py [--seconds 30] [--url redis://...]
     (without --url it starts its own redis-server on a free loopback port)

Four processes read and write 1,000 keys on one Redis for ``--seconds``: processes 0-2 through
cachekit with the near cache, process 3 through a real ``redis-cli`` process fed one command
per line on stdin (it answers each line with one reply line, so every write has its own
acknowledgement). Key k has one writer, process k % 4, and holds an integer version that its
writer raises by one on every write, so versions of a key are comparable; every key starts at
version 0. Each process logs its writes (key, version, time the write was acknowledged) and
its reads (key, version read, time the read *started*) on ``time.monotonic()``, which is one
clock for every process on Linux.

A read is stale if a write of a newer version of its key was acknowledged before the read
started; its staleness is the read's start minus that write's acknowledgement (the oldest such
write: version read + 1). Half the reads and all writes fall in a window of 16 keys that
slides over the 1,000 keys, so reads land on keys written a moment ago and probe the window
in which an invalidation is on its way; the other half are spread over all keys.

Halfway through, the parent kills every connection named ``cachekit-near`` (the near cache's
tracking connections, found with ``CLIENT LIST``) with ``CLIENT KILL ID``; the report gives the
longest staleness before and after the kill, and the near hits served after it (tracking
re-established). The suite's test (tests/test_near_consistency.py) runs this harness for a few
seconds; ``--seconds 30`` is the run issue 18 asks for.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import subprocess
import sys
import time
from array import array
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import redis
from harness import near_serving, redis_url

from cachekit.host import CacheManager

KEYS = 1_000
WRITERS = 4  # key k is written by process k % 4
CLI_PROCESS = 3  # the process writing through redis-cli
WINDOW = 16  # keys in the sliding hot window
SLIDE = 200.0  # keys per second the window moves
WRITE_SHARE = 0.2  # of a process's operations
NEAR_TTL = "60s"  # long, so that a missed invalidation shows as seconds of staleness
PLUGIN, TENANT = "consistency", "acme"
TRACKING_NAME = "cachekit-near"


@dataclass
class Log:
    """One process's operations, in columns (compact for millions of reads)."""

    process: int
    write_keys: array[int] = field(default_factory=lambda: array("l"))
    write_versions: array[int] = field(default_factory=lambda: array("l"))
    write_acked: array[float] = field(default_factory=lambda: array("d"))
    read_keys: array[int] = field(default_factory=lambda: array("l"))
    read_versions: array[int] = field(default_factory=lambda: array("l"))
    read_started: array[float] = field(default_factory=lambda: array("d"))
    near_hits: int = 0
    near_hits_after_kill: int = 0

    def wrote(self, key: int, version: int, acked: float) -> None:
        self.write_keys.append(key)
        self.write_versions.append(version)
        self.write_acked.append(acked)

    def read(self, key: int, version: int, started: float) -> None:
        self.read_keys.append(key)
        self.read_versions.append(version)
        self.read_started.append(started)


@dataclass(frozen=True)
class Plan:
    """What every process needs to know: where, which keys, when to start, kill and stop."""

    url: str
    full_keys: tuple[str, ...]  # what redis-cli writes; cachekit processes use f"k{n}"
    start: float
    kill_at: float
    end: float


@dataclass(frozen=True)
class Report:
    """The outcome of one run (times in seconds)."""

    seconds: float
    reads: int
    writes: int
    reads_by_process: tuple[int, ...]
    writes_by_process: tuple[int, ...]
    near_hits: int
    near_hits_after_kill: int
    killed_connections: int
    stale_reads: int
    stale_reads_by_process: tuple[int, ...]
    longest_staleness: float
    stale_reads_after_kill: int
    longest_staleness_after_kill: float

    def table(self) -> str:
        """A markdown table of the run."""
        rows = [
            ("run", f"{self.seconds:.0f} s, {KEYS} keys, {WRITERS} processes"),
            (
                "reads (by process)",
                f"{self.reads:,} ({', '.join(map(str, self.reads_by_process))})",
            ),
            (
                "writes (by process)",
                f"{self.writes:,} ({', '.join(map(str, self.writes_by_process))})",
            ),
            ("near hits (processes 0-2)", f"{self.near_hits:,}"),
            ("tracking connections killed mid-run", str(self.killed_connections)),
            ("near hits after the kill", f"{self.near_hits_after_kill:,}"),
            (
                "stale reads (by process)",
                f"{self.stale_reads:,} ({', '.join(map(str, self.stale_reads_by_process))})",
            ),
            ("longest staleness", f"{self.longest_staleness * 1e3:.3f} ms"),
            ("stale reads after the kill", f"{self.stale_reads_after_kill:,}"),
            (
                "longest staleness after the kill",
                f"{self.longest_staleness_after_kill * 1e3:.3f} ms",
            ),
        ]
        lines = ["| | |", "|---|---:|", *(f"| {name} | {value} |" for name, value in rows)]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class Staleness:
    """Stale reads and the longest staleness, before and after a point in time."""

    stale: int = 0
    longest: float = 0.0
    stale_after: int = 0
    longest_after: float = 0.0
    stale_by_process: tuple[int, ...] = ()


def staleness(logs: Sequence[Log], initial_ack: float, after: float) -> Staleness:
    """Judge every read against every write: a read of version v started at t is stale if
    the write of version v + 1 of its key was acknowledged before t (a read of a missing key
    counts as version -1, older than the initial version 0 acknowledged at ``initial_ack``).
    Reads started at or after ``after`` are also counted on their own."""
    acked: dict[int, list[float]] = {}  # key -> ack time of version 0, 1, 2, ...
    for log in logs:
        for key, version, at in zip(
            log.write_keys, log.write_versions, log.write_acked, strict=True
        ):
            versions = acked.setdefault(key, [initial_ack])
            if version != len(versions):
                raise ValueError(f"key {key}: version {version} logged out of order")
            versions.append(at)
    stale = stale_after = 0
    longest = longest_after = 0.0
    by_process = []
    for log in logs:
        stale_before = stale
        for key, version, started in zip(
            log.read_keys, log.read_versions, log.read_started, strict=True
        ):
            versions = acked.get(key, [initial_ack])
            newer = version + 1
            if newer >= len(versions) or versions[newer] >= started:
                continue
            window = started - versions[newer]
            stale += 1
            longest = max(longest, window)
            if started >= after:
                stale_after += 1
                longest_after = max(longest_after, window)
        by_process.append(stale - stale_before)
    return Staleness(stale, longest, stale_after, longest_after, tuple(by_process))


# ---------------------------------------------------------------------------------- workload


def hot_window(now: float, start: float) -> int:
    """The first key of the sliding hot window at time ``now``."""
    return int((now - start) * SLIDE) % KEYS


def pick_read(rng: random.Random, first: int) -> int:
    """Half the reads in the hot window, half anywhere."""
    if rng.random() < 0.5:
        return (first + rng.randrange(WINDOW)) % KEYS
    return rng.randrange(KEYS)


def pick_write(rng: random.Random, first: int, process: int) -> int:
    """One of this process's keys in the hot window."""
    offset = (process - first) % WRITERS  # the first key k >= first with k % 4 == process
    return (first + offset + WRITERS * rng.randrange(WINDOW // WRITERS)) % KEYS


def wait_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def near_hits(manager: CacheManager) -> int:
    return sum(row.near_hits for row in manager.stats())


def cachekit_process(process: int, plan: Plan) -> Log:
    """Processes 0-2: read and write through cachekit with the near cache."""
    manager = CacheManager.from_config(
        {
            "backend": {
                "cache": {
                    "store": "redis",
                    "connection": plan.url,
                    "nearCache": {"maxEntries": 10 * KEYS, "ttl": NEAR_TTL},
                }
            }
        }
    )
    cache = manager.for_plugin(PLUGIN, tenant=TENANT)
    near_serving(manager, cache)
    names = [f"k{n}" for n in range(KEYS)]
    for name in names:  # fill the near cache
        cache.get(name)
    log, rng = Log(process), random.Random(process)
    version = dict.fromkeys(range(process, KEYS, WRITERS), 0)
    hits_at_kill = None
    wait_until(plan.start)
    while (now := time.monotonic()) < plan.end:
        if hits_at_kill is None and now >= plan.kill_at:
            hits_at_kill = near_hits(manager)
        first = hot_window(now, plan.start)
        if rng.random() < WRITE_SHARE:
            key = pick_write(rng, first, process)
            new = version[key] + 1
            cache.set(names[key], new, ttl=0)
            log.wrote(key, new, time.monotonic())
            version[key] = new
        else:
            key = pick_read(rng, first)
            started = time.monotonic()
            found = cache.get(names[key])
            log.read(key, -1 if found is None else found, started)
    log.near_hits = near_hits(manager)
    log.near_hits_after_kill = log.near_hits - (
        log.near_hits if hits_at_kill is None else hits_at_kill
    )
    manager.close()
    return log


@contextmanager
def redis_cli(url: str) -> Iterator[subprocess.Popen[str]]:
    """A real redis-cli process, fed one command per line (one reply line each)."""
    address = redis.connection.parse_url(url)
    cli = subprocess.Popen(
        ["redis-cli", "-h", address["host"], "-p", str(address["port"])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    try:
        yield cli
    finally:
        assert cli.stdin is not None
        cli.stdin.close()
        cli.wait(timeout=10)
        if cli.stdout is not None:
            cli.stdout.close()


def command(cli: subprocess.Popen[str], line: str) -> str:
    """Send one command line; return redis-cli's reply line."""
    assert cli.stdin is not None
    assert cli.stdout is not None
    cli.stdin.write(line + "\n")
    cli.stdin.flush()
    return cli.stdout.readline().rstrip("\n")


def cli_process(process: int, plan: Plan) -> Log:
    """Process 3: read and write through redis-cli (versions are plain integers, which is
    how cachekit stores an int, so the others read them as ints)."""
    log, rng = Log(process), random.Random(process)
    version = dict.fromkeys(range(process, KEYS, WRITERS), 0)
    with redis_cli(plan.url) as cli:
        if command(cli, "PING") != "PONG":
            raise RuntimeError("redis-cli did not answer PING")
        wait_until(plan.start)
        while (now := time.monotonic()) < plan.end:
            first = hot_window(now, plan.start)
            if rng.random() < WRITE_SHARE:
                key = pick_write(rng, first, process)
                new = version[key] + 1
                reply = command(cli, f"SET {plan.full_keys[key]} {new}")
                acked = time.monotonic()
                if reply != "OK":
                    raise RuntimeError(f"redis-cli SET answered {reply!r}")
                log.wrote(key, new, acked)
                version[key] = new
            else:
                key = pick_read(rng, first)
                started = time.monotonic()
                reply = command(cli, f"GET {plan.full_keys[key]}")
                log.read(key, int(reply) if reply else -1, started)
    return log


def worker(process: int, plan: Plan) -> Log:
    return (cli_process if process == CLI_PROCESS else cachekit_process)(process, plan)


# ---------------------------------------------------------------------------------------- run


def kill_tracking(client: redis.Redis) -> int:
    """``CLIENT KILL ID`` every connection named ``cachekit-near``; how many there were."""
    ids = [c["id"] for c in client.client_list() if c.get("name") == TRACKING_NAME]
    for client_id in ids:
        client.client_kill_filter(_id=client_id)
    return len(ids)


def run(url: str, seconds: float, *, warmup: float = 3.0) -> Report:
    """Run the four processes against the Redis at ``url`` for ``seconds`` (after a start-up
    allowance of ``warmup`` seconds) and judge every read."""
    manager = CacheManager.from_config(
        {"backend": {"cache": {"store": "redis", "connection": url}}}
    )
    cache = manager.for_plugin(PLUGIN, tenant=TENANT)
    full_keys = tuple(manager.full_key(cache, f"k{n}") for n in range(KEYS))
    manager.close()
    client = redis.Redis.from_url(url, decode_responses=True)
    client.mset(dict.fromkeys(full_keys, 0))
    initial_ack = time.monotonic()
    start = initial_ack + warmup
    plan = Plan(url, full_keys, start=start, kill_at=start + seconds / 2, end=start + seconds)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=WRITERS, mp_context=context) as pool:
        futures: list[Future[Log]] = [pool.submit(worker, p, plan) for p in range(WRITERS)]
        wait_until(plan.kill_at)
        killed = kill_tracking(client)
        logs = [future.result() for future in futures]
    client.delete(*full_keys)
    client.close()
    judged = staleness(logs, initial_ack, after=plan.kill_at)
    return Report(
        seconds=seconds,
        reads=sum(len(log.read_keys) for log in logs),
        writes=sum(len(log.write_keys) for log in logs),
        reads_by_process=tuple(len(log.read_keys) for log in logs),
        writes_by_process=tuple(len(log.write_keys) for log in logs),
        near_hits=sum(log.near_hits for log in logs),
        near_hits_after_kill=sum(log.near_hits_after_kill for log in logs),
        killed_connections=killed,
        stale_reads=judged.stale,
        stale_reads_by_process=judged.stale_by_process,
        longest_staleness=judged.longest,
        stale_reads_after_kill=judged.stale_after,
        longest_staleness_after_kill=judged.longest_after,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--url", help="a running Redis (default: start one)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    with redis_url(args.url) as url:
        report = run(url, args.seconds)
    print(json.dumps(asdict(report)) if args.json else report.table())


if __name__ == "__main__":
    main()
