"""Reply integrity on real Redis and a real Redis Cluster: under heavy concurrency every reply
a caller gets is its own value, never another caller's — even when the values look like
protocol replies (RESP and memcached) and some are large enough to arrive in many reads."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from cachekit.config import parse_cache_section
from cachekit.stores.redis import RedisStore

TASKS = 200
THREADS = 20
ROUNDS = 15
KEYS_PER_CALLER = 6

# Values that a confused reader could take for a reply of its own, or for the end of one.
LOOKALIKES = [
    b"+OK\r\n",
    b"$5\r\nhello\r\n",
    b"*2\r\n$1\r\na\r\n",
    b"VALUE k 0 3\r\nabc\r\nEND\r\n",
    b"-ERR x\r\n",
    b":42\r\n",
    b"$-1\r\n",
    b"\r\n",
]
BIG = b"*3\r\n$5\r\nhello\r\n" * 12_000  # ~200 KB: many socket reads per reply


def value_for(caller: str, i: int) -> bytes:
    """A value unique to (caller, i), made of reply look-alikes (some large)."""
    tag = f"[{caller}/{i}]".encode()
    body = BIG if i == 0 and caller.endswith(("0", "5")) else LOOKALIKES[i % len(LOOKALIKES)]
    return body + tag + body


def _store(request: pytest.FixtureRequest, topology: str) -> RedisStore:
    # Generous timeouts: on a loaded 2-core machine a slow answer must not fail the test.
    timeouts = {"connect": "5s", "operation": "5s"}
    section: dict[str, Any]
    if topology == "redis":
        server = request.getfixturevalue("redis_server")
        section = {"store": "redis", "connection": server.url, "timeouts": timeouts}
    else:
        cluster = request.getfixturevalue("redis_cluster")
        nodes = [{"url": url} for url in cluster.root_urls]
        section = {"store": "redis", "redis": {"cluster": {"rootNodes": nodes}}}
        section["timeouts"] = timeouts
    return RedisStore.from_config(parse_cache_section(section))


@pytest.mark.parametrize("topology", ["redis", "cluster"])
def test_every_reply_is_the_callers_own_value(
    request: pytest.FixtureRequest, topology: str
) -> None:
    """200 asyncio tasks and 20 threads at once, each getting its own keys (get and
    get_many, many rounds): the number of replies that are not the caller's own value is 0,
    and no call fails."""
    store = _store(request, topology)
    callers = [f"t{n}" for n in range(TASKS)] + [f"s{n}" for n in range(THREADS)]
    expected = {
        caller: {f"integrity:{caller}:{i}": value_for(caller, i) for i in range(KEYS_PER_CALLER)}
        for caller in callers
    }
    for own in expected.values():
        store.set_many(own, 300)
    wrong: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS + 1)

    checked: list[int] = []

    def check(caller: str, key: str, got: bytes | None) -> None:
        checked.append(1)
        if got != expected[caller][key]:
            wrong.append(f"{caller} {key}: {got[:40] if got else got!r}")

    def sync_caller(caller: str) -> None:
        own = expected[caller]
        start.wait()
        try:
            for _ in range(ROUNDS):
                for key in own:
                    check(caller, key, store.get(key))
                found = store.get_many(list(own))
                for key in own:
                    check(caller, key, found.get(key))
        except BaseException as exc:  # counted, and the test fails on it
            errors.append(exc)

    async def async_caller(caller: str) -> None:
        own = expected[caller]
        try:
            for _ in range(ROUNDS):
                for key in own:
                    check(caller, key, await store.aget(key))
                found = await store.aget_many(list(own))
                for key in own:
                    check(caller, key, found.get(key))
        except BaseException as exc:
            errors.append(exc)

    async def all_tasks() -> None:
        start.wait()  # the threads run while the tasks do
        await asyncio.gather(*(async_caller(c) for c in callers if c.startswith("t")))
        await store.aclose()

    threads = [
        threading.Thread(target=sync_caller, args=(c,)) for c in callers if c.startswith("s")
    ]
    for thread in threads:
        thread.start()
    asyncio.run(all_tasks())
    for thread in threads:
        thread.join()
    store.delete_many([key for own in expected.values() for key in own])
    store.close()
    assert errors == []
    assert wrong == []
    assert len(checked) == len(callers) * ROUNDS * KEYS_PER_CALLER * 2  # every reply seen
