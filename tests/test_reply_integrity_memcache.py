"""Reply integrity on real memcached (one server, three, SASL): under load from 200
asyncio tasks and 20 threads at once, every ``get`` and ``get_many`` answers the caller's
own keys with the caller's own values — including values that look like memcached and RESP
replies, and big ones."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import pytest
from servers import MemcachedServer

from cachekit.config import parse_cache_section
from cachekit.keys import KeySpace
from cachekit.stores.memcache import MemcacheStore

pytestmark = pytest.mark.servers

TASKS = 200
THREADS = 20
TASK_ROUNDS = 3  # the callers run at once; the rounds only repeat the mix
THREAD_ROUNDS = 20

LOOKALIKES = [
    b"VALUE k 0 3\r\nabc\r\nEND\r\n",
    b"END\r\n",
    b"STORED\r\n",
    b"+OK\r\n",
    b"$5\r\nhello\r\n",
    b"VALUE",
    b"\r\nEND\r\nVALUE x 0 5\r\n",
    b"NOT_FOUND\r\nDELETED\r\n",
    b"*2\r\n$1\r\na\r\n$1\r\nb\r\n",
    b"42",
    b"",
]


@pytest.fixture(params=["single", "three", "sasl"])
def store(request: pytest.FixtureRequest) -> Iterator[MemcacheStore]:
    """One server (pymemcache), three (the ring), one SASL server (our binary protocol)."""
    if request.param == "single":
        server: MemcachedServer = request.getfixturevalue("memcached_server")
        connection: str | list[str] = f"{server.host}:{server.port}"
    elif request.param == "sasl":
        server = request.getfixturevalue("memcached_sasl_server")
        connection = f"{server.username}:{server.password}@{server.host}:{server.port}"
    else:
        servers: list[MemcachedServer] = request.getfixturevalue("memcached_servers")
        connection = [f"{s.host}:{s.port}" for s in servers]
    built = MemcacheStore.from_config(
        parse_cache_section(
            {
                "store": "memcache",
                "connection": connection,
                "timeouts": {"connect": "5s", "operation": "5s"},  # 220 callers on 2 busy cores
            }
        )
    )
    yield built
    built.close()


def owned_values(owner: str) -> dict[str, bytes]:
    """One caller's keys (full keys) and values: every lookalike on its own and wrapped in
    the owner's name, and a 64 KB value (220 callers' values fit in the test server's 64 MB
    without evictions)."""
    prefix = KeySpace().scope_prefix(f"ri{uuid.uuid4().hex[:8]}", owner, None)
    tag = owner.encode()
    values = {f"{prefix}bare{i}": value for i, value in enumerate(LOOKALIKES)}
    values |= {f"{prefix}wrapped{i}": tag + v + tag for i, v in enumerate(LOOKALIKES)}
    values[f"{prefix}big"] = tag + bytes(range(256)) * 256 + b"END\r\n" + tag
    return values


def test_every_reply_is_the_callers_own_value(store: MemcacheStore) -> None:
    """200 tasks and 20 threads, each reading its own keys over and over with get and
    get_many: zero replies carry a value other than the caller's own."""
    owners = [f"task{i}" for i in range(TASKS)] + [f"thread{i}" for i in range(THREADS)]
    expected = {owner: owned_values(owner) for owner in owners}
    for values in expected.values():
        store.set_many(values, 300)
    foreign: list[tuple[str, str]] = []  # a value that is not the caller's own
    missing: list[tuple[str, str]] = []  # nothing evicts these values: a miss is a bug too
    checked = [0]
    lock = threading.Lock()

    def record(owner: str, want: dict[str, bytes], got: dict[str, bytes]) -> None:
        with lock:
            checked[0] += len(want)
            foreign.extend((owner, k) for k, v in got.items() if want.get(k, v + b"!") != v)
            missing.extend((owner, k) for k in want if k not in got)

    def thread_work(owner: str, start: threading.Barrier) -> None:
        want = expected[owner]
        start.wait()
        for _ in range(THREAD_ROUNDS):
            record(owner, want, {k: v for k in want if (v := store.get(k)) is not None})
            record(owner, want, store.get_many(list(want)))

    async def task_work(owner: str) -> None:
        want = expected[owner]
        for _ in range(TASK_ROUNDS):
            got = {}
            for key in want:
                value = await store.aget(key)
                if value is not None:
                    got[key] = value
            record(owner, want, got)
            record(owner, want, await store.aget_many(list(want)))

    async def all_tasks() -> None:
        await asyncio.gather(*(task_work(f"task{i}") for i in range(TASKS)))

    start = threading.Barrier(THREADS + 1)
    threads = [
        threading.Thread(target=thread_work, args=(f"thread{i}", start)) for i in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    start.wait()
    asyncio.run(all_tasks())
    for thread in threads:
        thread.join()

    per_owner = len(LOOKALIKES) * 2 + 1
    assert checked[0] == per_owner * 2 * (TASKS * TASK_ROUNDS + THREADS * THREAD_ROUNDS)
    assert foreign == []
    assert missing == []
