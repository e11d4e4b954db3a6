"""``@cached(lock=True)`` across processes when computations outlive their lock.

Several processes call one key in a loop; nothing is ever stored (``unless``), so every
call contends for the lock. Holders compute either well within the lock's timeout or
past it (and some raise), so locks expire under running computations and are taken by
the next caller while the late one is still busy. Each process traces, through
:class:`~cachekit.Cache`, when it took the lock and whether a release of its own deleted
a lock holding someone else's token.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Outcome, scaled

ROOT = Path(__file__).resolve().parents[2]
HEADROOM = {"timeouts": {"connect": 5000, "operation": 5000}}

CHILD = textwrap.dedent(
    """
    import json, random, sys, time
    from cachekit.host import CacheManager
    from cachekit.cache import Cache
    from cachekit.context import scope
    from cachekit.decorators import cached

    config, timeout, start_at, until, seed, tenant = json.loads(sys.argv[1])
    rng = random.Random(seed)
    state = {"token": None, "acquired": None}
    events = []
    add, delete = Cache.add, Cache.delete
    delete_if_equals = getattr(Cache, "delete_if_equals", None)

    def traced_add(self, key, value, ttl=None):
        got = add(self, key, value, ttl)
        if got and key.endswith("|lock"):
            state["token"], state["acquired"] = value, time.time()
        return got

    def traced(release):
        def run(self, key, *args):
            before = self.get(key)  # whose lock is about to be released
            deleted = release(self, key, *args)
            if deleted and key.endswith("|lock") and before != state["token"]:
                events.append({"kind": "foreign-delete", "at": time.time()})
            return deleted
        return run

    Cache.add, Cache.delete = traced_add, traced(delete)
    if delete_if_equals is not None:
        Cache.delete_if_equals = traced(delete_if_equals)

    @cached(namespace="race", lock=True, lock_timeout=timeout, unless=lambda result: True)
    def work() -> int:
        acquired, state["acquired"] = state["acquired"], None  # None: computing unlocked
        outlive = rng.random() < 0.4
        time.sleep(timeout * (1.5 if outlive else rng.uniform(0.1, 0.4)))
        if acquired is not None:
            events.append({"kind": "held", "acquired": acquired, "end": time.time()})
        if rng.random() < 0.3:
            raise RuntimeError("the computation failed")
        return 1

    manager = CacheManager.from_config({"backend": {"cache": config}})
    with scope(plugin="faults", tenant=tenant, manager=manager):
        manager.store.ping()
        time.sleep(max(0.0, start_at - time.time()))
        calls = 0
        while time.time() < until:
            calls += 1
            try:
                work()
            except RuntimeError:
                pass
    print(json.dumps({"calls": calls, "events": events}))
    """
)


def _config(request: pytest.FixtureRequest, store: str) -> dict[str, Any]:
    if store == "memcache":
        server = request.getfixturevalue("memcached_server")
        return {"store": "memcache", "connection": f"{server.host}:{server.port}", **HEADROOM}
    return {"store": "redis", "connection": request.getfixturevalue("redis_server").url, **HEADROOM}


# (lock timeout, how long a lock is surely still valid after it was taken): Redis expires
# to the millisecond; memcached counts whole seconds, so a 2 s item may go after 1 s.
TIMING = {"redis": (0.4, 0.35), "memcache": (2.0, 0.95)}


@pytest.mark.parametrize("store", ["redis", "memcache"])
def test_a_late_holder_never_frees_the_next_owners_lock(
    store: str, request: pytest.FixtureRequest, outcome: Callable[..., Outcome]
) -> None:
    """Invariant: no process takes the lock while another holds a lock that has not
    expired (and is still computing), and no release deletes a lock holding another
    owner's token — even when computations outlive their lock and raise."""
    processes = 3
    tally = outcome("cached lock=True: expiry races", store, concurrency=processes)
    timeout, valid = TIMING[store]
    config = _config(request, store)
    start_at = time.time() + 2.0  # after every child has imported and connected
    until = start_at + scaled(4) * max(timeout, 1.0)
    tenant = f"t{time.time_ns()}"
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                json.dumps([config, timeout, start_at, until, seed, tenant]),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed in range(processes)
    ]
    outputs = [json.loads(child.communicate(timeout=120)[0]) for child in children]
    assert [child.returncode for child in children] == [0] * processes

    held = sorted(
        (e["acquired"], e["end"]) for out in outputs for e in out["events"] if e["kind"] == "held"
    )
    for out in outputs:
        for event in out["events"]:
            if event["kind"] == "foreign-delete":
                tally.violated("a release deleted a lock holding another owner's token")
    for i, (acquired, end) in enumerate(held):
        owned_until = min(end, acquired + valid)
        overlapping = [a for a, _ in held[i + 1 :] if a < owned_until]
        for other in overlapping:
            tally.violated(f"lock taken {other - acquired:.3f}s after a holder that still owned it")
        if not overlapping:
            tally.ok()
    foreign = sum(e["kind"] == "foreign-delete" for out in outputs for e in out["events"])
    print(f"{store}: {len(held)} lock holders, {foreign} foreign deletes, {tally.violations} bad")
    assert len(held) >= 3, f"too few lock holders to show anything: {held}"
    tally.check()
