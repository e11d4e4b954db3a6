"""Fault scenarios: one plugin's bad input stays its own (issue 12, faults 3, 6 and 7).

* A hostile plugin sends bad TTLs, values and keys from several threads while a neighbour
  plugin works on the same store: every hostile call gets its own typed error, the
  neighbour sees no failure, and no breaker records a failure.
* Hostile bytes are planted under a scope's keys by a raw client (another writer, a
  corruption): every read is a miss or the exact value those bytes encode, never an
  exception, and each unreadable key is logged once per period, not once per read.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote

import msgpack
import pytest
import redis
from faults.conftest import Outcome, scaled
from pymemcache.client.base import Client as MemcacheClient

from cachekit.breaker import CircuitBreaker
from cachekit.cache import Cache
from cachekit.codec import MISS, Codec
from cachekit.config import parse_cache_section
from cachekit.durations import MAX_TTL
from cachekit.errors import CacheKeyError, CacheValueError
from cachekit.host import CacheManager
from cachekit.stores.base import Store
from cachekit.stores.memcache import MemcacheStore
from cachekit.stores.memcache.values import encode_value
from cachekit.stores.redis import RedisStore

pytestmark = pytest.mark.servers

STORES = ["redis", "valkey", "memcached"]


class _Planted:
    """A store under test and a raw client writing bytes straight into its server."""

    def __init__(
        self,
        name: str,
        store: Store,
        plant: Callable[[CacheManager, Cache, str, bytes], None],
        close: Callable[[], None],
    ):
        self.name, self.store, self.plant, self.close = name, store, plant, close


def _redis_planter(
    url: str,
) -> tuple[Callable[[CacheManager, Cache, str, bytes], None], Callable[[], None]]:
    raw = redis.Redis.from_url(url)

    def plant(manager: CacheManager, cache: Cache, key: str, payload: bytes) -> None:
        raw.set(manager.full_key(cache, key), payload)

    return plant, raw.close


def _memcached_planter(
    host: str, port: int
) -> tuple[Callable[[CacheManager, Cache, str, bytes], None], Callable[[], None]]:
    """Overwrites the memcached item cachekit wrote for ``key`` (found with ``lru_crawler
    metadump``: the stored key carries the scope's generation tag)."""
    raw = MemcacheClient((host, port))

    def stored_keys() -> list[str]:
        with socket.create_connection((host, port), timeout=5) as conn:
            conn.sendall(b"lru_crawler metadump all\r\n")
            dump = b""
            while not dump.endswith(b"END\r\n"):
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                dump += chunk
        return [unquote(line.split()[0][4:]) for line in dump.decode().splitlines()[:-1]]

    def plant(manager: CacheManager, cache: Cache, key: str, payload: bytes) -> None:
        cache.set(key, "placeholder")  # an item under the scope's current generation
        prefix = manager.full_key(cache, key)[: -len(key)]
        mine = [k for k in stored_keys() if k.startswith(prefix) and k.endswith(":" + key)]
        assert len(mine) == 1, mine
        raw.set(mine[0], payload)

    return plant, raw.close


@pytest.fixture(params=STORES)
def planted(request: pytest.FixtureRequest) -> Iterator[_Planted]:
    """A network store (Redis, Valkey, memcached) and a raw planter for its server."""
    store: Store
    if request.param == "memcached":
        server = request.getfixturevalue("memcached_server")
        config = {"store": "memcache", "connection": f"{server.host}:{server.port}"}
        store = MemcacheStore.from_config(parse_cache_section(config))
        plant, close = _memcached_planter(server.host, server.port)
    else:
        server = request.getfixturevalue(f"{request.param}_server")
        store = RedisStore.from_config(
            parse_cache_section({"store": "redis", "connection": server.url})
        )
        plant, close = _redis_planter(server.url)
    yield _Planted(request.param, store, plant, close)
    close()
    store.close()


@pytest.fixture
def breaker_failures(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every failure any circuit breaker records during the test."""
    recorded: list[str] = []
    original = CircuitBreaker.record_failure

    def record_failure(self: CircuitBreaker, error: BaseException) -> None:
        recorded.append(f"{self.name}: {error}")
        original(self, error)

    monkeypatch.setattr(CircuitBreaker, "record_failure", record_failure)
    return recorded


# What the hostile plugin sends: (method, args, the error that caller must get).
HOSTILE: list[tuple[str, tuple[Any, ...], type[Exception]]] = [
    ("set", ("k", 1, 2**32), CacheValueError),  # memcached: stored for 1 s
    ("set", ("k", 1, 1e20), CacheValueError),  # memcached: "bad command line format"
    ("set", ("k", 1, MAX_TTL + 1), CacheValueError),
    ("set", ("k", 1, 2**31), CacheValueError),  # memcached: past 2038, read as a miss
    ("set", ("k", 1, -1), CacheValueError),
    ("set", ("k", 1, float("nan")), CacheValueError),
    ("add", ("k", 1, 1e20), CacheValueError),
    ("set_many", ({"a": 1, "b": 2}, 1e20), CacheValueError),
    ("incr", ("n", 1, 1e20), CacheValueError),
    ("expire", ("k", 1e20), CacheValueError),
    ("touch", ("k", 2**32), CacheValueError),
    ("set", ("k", 10**5000), CacheValueError),
    ("set", ("k", [2**64]), CacheValueError),
    ("set", ("k", {"a": OrderedDict()}), CacheValueError),  # reads back as a dict
    ("set", ("k", msgpack.Timestamp(1)), CacheValueError),
    ("set", ("k", msgpack.ExtType(99, b"x")), CacheValueError),
    ("set", ("k", "bad \ud800 text"), CacheValueError),
    ("set", ("k\ud800", 1), CacheKeyError),
    ("incr", ("\udfff",), CacheKeyError),
    ("delete", ("a\udc80b",), CacheKeyError),
    ("set", ("", 1), CacheKeyError),
    ("set", (None, 1), CacheKeyError),
    ("incr", ("top{n}", 1), CacheValueError),  # holds 2**63 - 1: overflow, unchanged
    ("incr", ("n", 2**63), CacheValueError),
]


def test_hostile_plugin_does_not_disturb_its_neighbour(
    planted: _Planted, outcome: Callable[..., Outcome], breaker_failures: list[str]
) -> None:
    """Invariant: while plugin A's threads send hostile TTLs, values and keys, every A call
    gets its own typed error (checked before any I/O), every get and set of plugin B on the
    same store succeeds with the exact value, and no breaker records a failure."""
    manager = CacheManager(store=planted.store)
    hostile = manager.for_plugin("hostile", tenant="acme")
    neighbour = manager.for_plugin("neighbour", tenant="acme")
    attackers, workers, rounds = 4, 2, scaled(300)
    hostile.set_many({f"top{n}": 2**63 - 1 for n in range(attackers)})
    tally = outcome("hostile plugin, neighbour works", planted.name, attackers + workers)
    lock = threading.Lock()

    def attack(n: int) -> None:
        for i in range(rounds):
            name, args, expected = HOSTILE[(n + i) % len(HOSTILE)]
            # each attacker its own full counter: memcached cannot tell two increments that
            # race across the 64-bit edge of one key (see MemcacheStore.incr)
            args = tuple(a.format(n=n) if a == "top{n}" else a for a in args)
            try:
                getattr(hostile, name)(*args)
            except expected:
                with lock:
                    tally.ok()
                continue
            except Exception as exc:  # any other outcome is the violation
                with lock:
                    tally.violated(f"A {name}{args!r:.60}: {type(exc).__name__}: {exc}")
                continue
            with lock:
                tally.violated(f"A {name}{args!r:.60}: no error")

    def work(n: int) -> None:
        for i in range(rounds * 3):
            key, value = f"w{n}-{i % 10}", {"n": n, "i": i, "s": "x" * (i % 50)}
            try:
                neighbour.set(key, value, ttl=60)
                got = neighbour.get(key, MISS)
                problem = None if got == value else f"B read {got!r:.60}, wrote {value!r:.60}"
            except Exception as exc:  # any failure of B is the violation
                problem = f"B failed: {type(exc).__name__}: {exc}"
            with lock:
                if problem is None:
                    tally.ok()
                else:
                    tally.violated(problem)

    threads = [threading.Thread(target=attack, args=(n,)) for n in range(attackers)]
    threads += [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for failure in breaker_failures:
        tally.violated(f"breaker recorded a failure: {failure}")
    for n in range(attackers):
        if hostile.get(f"top{n}") != 2**63 - 1:
            tally.violated(f"an overflowed counter changed: {hostile.get(f'top{n}')}")
    for key in ("k", "a", "b"):
        if hostile.get(key, MISS) is not MISS:
            tally.violated(f"a refused call wrote {key!r}")
    tally.check()


# Bytes another writer (or a corruption) could leave under a cachekit key.
PAYLOADS: list[bytes] = [
    pickle.dumps({"a": 1}),
    pickle.dumps(Exception("x"), protocol=0),
    msgpack.packb({"a": list(range(100))})[:-3],  # truncated
    msgpack.packb("text") + b"trailing",
    b"+OK\r\n",
    b"$5\r\nhello\r\n",
    b"*2\r\n$1\r\na\r\n$1\r\nb\r\n",
    b"-ERR wrong\r\n",
    b":42\r\n",
    b"VALUE k 0 5\r\nhello\r\nEND\r\n",
    b"STORED\r\n",
    b"4_2",
    b"42 ",
    b" 42",
    b"042",
    b"-0",
    b"+1",
    b"1" * 5000,
    b"99999999999999999999999",
    b"\xdb\xff\xff\xff\xffx",  # str32 claiming 4 GiB
    b"\xc6\xff\xff\xff\xffab",  # bin32 claiming 4 GiB
    b"\xdd\xff\xff\xff\xff",  # array32 claiming 4 Gi items
    b"\xdf\xff\xff\xff\xff",  # map32 claiming 4 Gi pairs
    b"\x91" * 100_000,  # nesting bomb
    msgpack.packb(msgpack.Timestamp(1)),
    msgpack.packb([msgpack.Timestamp(1, 2)]),
    msgpack.packb(msgpack.ExtType(5, b"x")),
    b"\xd4\xfe\x00",  # fixext1 of a reserved (negative) type
    msgpack.packb(5),
    b"\xa2\xff\xfe",  # a str that is not UTF-8
    b"\x81\x91\x01\x02",  # a map with a list key
    b"~",
    b"~~x",
    b"",
    # valid encodings read back as their value
    msgpack.packb("hello"),
    msgpack.packb({"a": [1, 2.5, None, True, b"x"]}),
    b"42",
    b"-7",
]


def _reencodes_to(store: str, value: Any, payload: bytes) -> bool:
    """Whether ``payload`` is exactly the codec's encoding of ``value``, or (memcached) what
    the store keeps for it: biased integers, ``~``-escapes, the padding of an ``incr``."""
    try:
        encoded = Codec().encode(value)
    except CacheValueError:  # a Timestamp nested in another writer's bytes (not looked for)
        encoded = msgpack.packb(value)
    if encoded == payload:
        return True
    return store == "memcached" and encode_value(encoded) == payload.rstrip(b" ")


def test_planted_bytes_read_as_a_miss_or_their_value(
    planted: _Planted,
    outcome: Callable[..., Outcome],
    caplog: pytest.LogCaptureFixture,
    breaker_failures: list[str],
) -> None:
    """Invariant: bytes planted under a scope's keys by a raw client read (get, get_many,
    aget, from several threads) as a miss or as exactly the value they encode, never as an
    exception; each unreadable key is logged once per period, not on every read."""
    manager = CacheManager(store=planted.store)
    cache = manager.for_plugin("victim", tenant="acme")
    keys = {f"p{i}": payload for i, payload in enumerate(PAYLOADS)}
    for key, payload in keys.items():
        planted.plant(manager, cache, key, payload)
    readers, rounds = 4, scaled(20)
    tally = outcome("planted hostile bytes", planted.name, readers)
    lock = threading.Lock()

    def judge(key: str, got: Any) -> str | None:
        if got is MISS or _reencodes_to(planted.name, got, keys[key]):
            return None
        return f"{key} ({keys[key][:20]!r}) read as {got!r:.60}"

    def record(problems: list[str | None]) -> None:
        with lock:
            for problem in problems:
                if problem is None:
                    tally.ok()
                else:
                    tally.violated(problem)

    def failed(key: str, exc: Exception) -> str:
        return f"{key} ({keys[key][:20]!r}): {type(exc).__name__}: {exc}"

    def read() -> None:
        for _ in range(rounds):
            for key in keys:
                try:
                    got = cache.get(key, MISS), cache.get_many([key]).get(key, MISS)
                    record([judge(key, value) for value in got])
                except Exception as exc:  # any exception is the violation
                    record([failed(key, exc)])

    async def aread() -> None:
        try:
            for _ in range(rounds):
                for key in keys:
                    try:
                        got = (
                            await cache.aget(key, MISS),
                            (await cache.aget_many([key])).get(key, MISS),
                        )
                        record([judge(key, value) for value in got])
                    except Exception as exc:  # any exception is the violation
                        record([failed(key, exc)])
        finally:
            await planted.store.aclose()

    with caplog.at_level(logging.WARNING, logger="cachekit"):
        threads = [threading.Thread(target=read) for _ in range(readers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        asyncio.run(aread())
    lines: dict[str, int] = {}
    for record in caplog.records:
        if "unreadable" in record.getMessage():
            full_key = str(record.args[0]) if isinstance(record.args, tuple) else ""
            lines[full_key] = lines.get(full_key, 0) + 1
    for full_key, count in lines.items():
        if count != 1:
            tally.violated(f"{full_key} logged {count} times in one period")
    for failure in breaker_failures:
        tally.violated(f"breaker recorded a failure: {failure}")
    tally.check()
