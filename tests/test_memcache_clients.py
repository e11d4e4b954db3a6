"""The memcache store's per-server clients: the pool that never reuses a failed connection,
ASCII authentication on every new connection, and our binary protocol (SASL) refusing
replies that do not answer the request, raising for a lost server, counting deletes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import MemcachedServer, memcached_ascii_auth, memcached_sasl

from cachekit.errors import StoreError, StoreTimeout, StoreUnavailable
from cachekit.manager import CacheManager
from cachekit.stores.memcache import MemcacheStore
from cachekit.stores.memcache.binary import HEADER, RESPONSE, Opcode, Status
from cachekit.stores.memcache.pool import Pool, PoolBusy

USER, PASSWORD = "cacheuser", "s3cret"


# --- the pool ---------------------------------------------------------------------------


class Conn:
    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False
        self.stale = False  # the server closed it while it sat idle


class Interrupted(BaseException):
    """Stands for KeyboardInterrupt / SystemExit half-way through a reply."""


def make_pool(**options: Any) -> tuple[Pool[Conn], list[Conn]]:
    made: list[Conn] = []

    def connect() -> Conn:
        made.append(Conn(len(made)))
        return made[-1]

    def close(conn: Conn) -> None:
        conn.closed = True

    pool: Pool[Conn] = Pool(
        connect,
        close,
        lambda exc, fresh: StoreUnavailable(f"mapped {exc}"),
        stale=lambda conn: conn.stale,
        **options,
    )
    return pool, made


def test_pool_reuses_a_connection_after_a_normal_return() -> None:
    """Calls one after another share one connection."""
    pool, made = make_pool()
    assert [pool.run(lambda c: c.number) for _ in range(3)] == [0, 0, 0]
    assert len(made) == 1


@pytest.mark.parametrize("failure", [OSError("reset"), Interrupted()], ids=["error", "interrupt"])
def test_pool_closes_and_drops_a_connection_after_any_exception(failure: BaseException) -> None:
    """An exception (mapped to a cachekit error) or an interrupt closes the connection, and
    the next call gets a new one."""

    def fail(conn: Conn) -> None:
        raise failure

    pool, made = make_pool()
    pool.run(lambda c: None)
    with pytest.raises((StoreUnavailable, Interrupted)) as info:
        pool.run(fail)
    if isinstance(failure, Exception):
        assert info.value.__cause__ is failure
    assert made[0].closed
    assert pool.run(lambda c: c.number) == 1


def test_pool_maps_connect_failures() -> None:
    """A connection that cannot be opened raises the mapped error; nothing is kept."""

    def refuse() -> Conn:
        raise ConnectionRefusedError("refused")

    pool: Pool[Conn] = Pool(
        refuse, lambda c: None, lambda exc, fresh: StoreUnavailable(str(exc)), stale=lambda c: False
    )
    with pytest.raises(StoreUnavailable, match="refused"):
        pool.run(lambda c: None)


def closed_by_server(conn: Conn) -> int:
    """An op on a connection the server closed: fails as a send on a dead socket does."""
    if conn.stale:
        raise ConnectionResetError("reset by peer")
    return conn.number


def test_run_sends_again_once_on_a_new_connection_when_a_pooled_one_was_closed() -> None:
    """run(): a reused connection that the server closed is dropped and the call succeeds
    on a new one; a new connection that fails is the server's failure and is raised."""
    pool, made = make_pool()
    pool.run(closed_by_server)
    made[0].stale = True
    assert pool.run(closed_by_server) == 1
    assert made[0].closed

    def always_reset(conn: Conn) -> None:
        raise ConnectionResetError("reset by peer")

    with pytest.raises(StoreUnavailable, match="reset"):
        pool.run(always_reset)
    assert len(made) == 3  # the pooled one, then one new: not a loop


def test_run_once_checks_a_pooled_connection_first_and_never_sends_twice() -> None:
    """run_once(): an idle connection the server closed is replaced before anything is
    sent; a reused connection failing during the call is raised, not sent again."""
    pool, made = make_pool()
    pool.check_after = -1.0  # check every reused connection, however recently it was used
    pool.run_once(closed_by_server)
    made[0].stale = True
    calls: list[int] = []

    def counted(conn: Conn) -> int:
        calls.append(conn.number)
        return closed_by_server(conn)

    assert pool.run_once(counted) == 1
    assert calls == [1]
    assert made[0].closed

    def reset_once(conn: Conn) -> None:
        calls.append(conn.number)
        raise ConnectionResetError("reset by peer")

    calls.clear()
    with pytest.raises(StoreUnavailable):
        pool.run_once(reset_once)
    assert calls == [1]


def test_pool_bounds_calls_in_flight_and_times_out_a_waiter() -> None:
    """With max_connections calls in flight, a caller waits; after ``wait`` seconds it gets
    PoolBusy (a StoreTimeout naming maxConnections); when a slot frees, calls go on."""
    pool, made = make_pool(max_connections=2, wait=0.05)
    inside, release = threading.Barrier(3), threading.Event()

    def hold(conn: Conn) -> None:
        inside.wait(5)
        release.wait(5)

    holders = [threading.Thread(target=pool.run, args=(hold,)) for _ in range(2)]
    for t in holders:
        t.start()
    inside.wait(5)
    with pytest.raises(PoolBusy, match="maxConnections"):
        pool.run(lambda c: None)
    with pytest.raises(StoreTimeout):
        pool.run_once(lambda c: None)
    release.set()
    for t in holders:
        t.join()
    assert pool.run(lambda c: c.number) in (0, 1)
    assert len(made) == 2


def test_pool_close_closes_idle_connections() -> None:
    """close() closes what is idle; the next call opens a new connection."""
    pool, made = make_pool()
    pool.run(lambda c: None)
    pool.close()
    assert made[0].closed
    assert pool.run(lambda c: c.number) == 1


# --- ASCII authentication ---------------------------------------------------------------


@pytest.fixture
def private_ascii_server(tmp_path: Path) -> Iterator[MemcachedServer]:
    server = memcached_ascii_auth(USER, PASSWORD, workdir=tmp_path / "ascii").start()
    yield server
    server.kill()


@pytest.fixture
def private_sasl_server(tmp_path: Path) -> Iterator[MemcachedServer]:
    server = memcached_sasl(USER, PASSWORD, workdir=tmp_path / "sasl").start()
    yield server
    server.kill()


def recovers(call: Callable[[], object], attempts: int = 3) -> object:
    """``call()``, retried while it raises StoreUnavailable (the stale pooled connection
    fails once; a new one must then succeed)."""
    for _ in range(attempts - 1):
        try:
            return call()
        except StoreUnavailable:
            continue
    return call()


@pytest.mark.servers
def test_ascii_auth_authenticates_every_new_connection(
    private_ascii_server: MemcachedServer,
) -> None:
    """After the server restarts (every connection lost), the store's next connections
    authenticate again: memcached -Y would refuse an unauthenticated one."""
    server = private_ascii_server
    store = MemcacheStore(f"{USER}:{PASSWORD}@{server.host}:{server.port}", auth="ascii")
    try:
        cache = CacheManager(store=store).for_plugin("p", tenant="t")
        cache.set("k", "before")
        server.kill()
        server.start()
        recovers(lambda: cache.set("k", "after"))
        assert cache.get("k") == "after"
        assert cache.incr("n") == 1
    finally:
        store.close()


# --- the binary protocol ----------------------------------------------------------------


@pytest.mark.servers
def test_sasl_lost_server_raises_instead_of_reading_as_a_miss(
    private_sasl_server: MemcachedServer,
) -> None:
    """A killed SASL server makes get raise StoreUnavailable (python-binary-memcached's
    client would answer None), and the store recovers when it is back."""
    server = private_sasl_server
    store = MemcacheStore(f"{USER}:{PASSWORD}@{server.host}:{server.port}")
    try:
        cache = CacheManager(store=store).for_plugin("p", tenant="t")
        cache.set("k", "v")
        server.kill()
        with pytest.raises(StoreUnavailable):
            cache.get("k")
        with pytest.raises(StoreUnavailable):
            cache.get_many(["k", "j"])
        server.start()
        assert recovers(lambda: cache.get("k")) is None  # a new, empty server
        cache.set("k", "back")
        assert cache.get("k") == "back"
    finally:
        store.close()


@pytest.mark.servers
def test_sasl_delete_many_counts_and_touch_refreshes(
    memcached_sasl_server: MemcachedServer,
) -> None:
    """delete_many counts the keys that existed (repeats once), touch answers whether the
    key exists."""
    server = memcached_sasl_server
    store = MemcacheStore(f"{server.username}:{server.password}@{server.host}:{server.port}")
    try:
        cache = CacheManager(store=store).for_plugin("p-sasl-count", tenant="t")
        cache.set_many({"a": 1, "b": 2, "c": 3})
        assert cache.delete_many(["a", "b", "missing", "a"]) == 2
        assert cache.touch("c", 60) is True
        assert cache.touch("a", 60) is False
    finally:
        store.close()


def _reply(
    opcode: int,
    opaque: int,
    status: int = 0,
    key: bytes = b"",
    value: bytes = b"",
    extras: bytes = b"",
) -> bytes:
    body = len(extras) + len(key) + len(value)
    header = HEADER.pack(RESPONSE, opcode, len(key), len(extras), 0, status, body, opaque, 0)
    return header + extras + key + value


class FakeBinaryServer:
    """Accepts connections one after another; answers SASL auth with OK and every other
    request with ``answer(opcode, opaque, connection number)``."""

    def __init__(self, answer: Callable[[int, int, int], bytes]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.answer = answer
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self.handle, args=(conn, len(self.connections) - 1)).start()

    def handle(self, conn: socket.socket, number: int) -> None:
        buffer = b""
        try:
            while True:
                while len(buffer) < HEADER.size:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                fields = HEADER.unpack(buffer[: HEADER.size])
                opcode, body, opaque = fields[1], fields[6], fields[7]
                while len(buffer) < HEADER.size + body:
                    buffer += conn.recv(65536)
                buffer = buffer[HEADER.size + body :]
                if opcode == Opcode.SASL_AUTH:
                    conn.sendall(_reply(opcode, opaque, value=b"Authenticated"))
                else:
                    conn.sendall(self.answer(opcode, opaque, number))
        except OSError:
            return

    def close(self) -> None:
        self.listener.close()
        for conn in self.connections:
            conn.close()


@pytest.mark.parametrize(
    "bad_reply",
    [
        lambda opcode, opaque: _reply(opcode, opaque + 1, extras=b"\0\0\0\0", value=b"other"),
        lambda opcode, opaque: _reply(Opcode.SET, opaque),
        lambda opcode, opaque: b"\x80" + _reply(opcode, opaque)[1:],
    ],
    ids=["another request's opaque", "another command's reply", "not a response"],
)
def test_binary_reply_out_of_step_drops_the_connection(
    bad_reply: Callable[[int, int], bytes],
) -> None:
    """A reply that does not answer the request raises StoreUnavailable and the connection
    is closed: the next call is answered on a new one."""

    def answer(opcode: int, opaque: int, number: int) -> bytes:
        if number == 0:
            return bad_reply(opcode, opaque)
        return _reply(opcode, opaque, status=Status.KEY_NOT_FOUND)

    server = FakeBinaryServer(answer)
    store = MemcacheStore(f"u:p@127.0.0.1:{server.port}")
    try:
        with pytest.raises(StoreUnavailable, match="out of step"):
            store.get("%u:k")
        assert store.get("%u:k") is None
        assert len(server.connections) == 2
    finally:
        store.close()
        server.close()


def test_binary_get_many_refuses_a_hit_for_a_key_not_asked() -> None:
    """In a getkq pipeline, a hit whose key is not the one its opaque asked for raises."""

    def answer(opcode: int, opaque: int, number: int) -> bytes:
        if opcode == Opcode.GETKQ:
            return _reply(
                opcode, opaque, key=b"%u:someone-else", extras=b"\0\0\0\0", value=b"secret"
            )
        return _reply(opcode, opaque)

    server = FakeBinaryServer(answer)
    store = MemcacheStore(f"u:p@127.0.0.1:{server.port}")
    try:
        with pytest.raises(StoreError, match="out of step"):
            store.get_many(["%u:mine"])
    finally:
        store.close()
        server.close()


@pytest.mark.servers
def test_sasl_big_values_and_big_batches_round_trip(
    memcached_sasl_server: MemcachedServer,
) -> None:
    """Over the binary protocol: a ~1 MB value, values holding protocol-looking bytes, and a
    get_many of 1000 x 2 KB values read back byte for byte."""
    server = memcached_sasl_server
    store = MemcacheStore(
        f"{server.username}:{server.password}@{server.host}:{server.port}", timeout=5
    )
    try:
        cache = CacheManager(store=store).for_plugin("p-sasl-big", tenant="t")
        values = {
            "big": bytes(range(256)) * 4000,
            "header": b"\x81\x00\x00\x00" + b"\x00" * 20 + b"\r\nEND\r\n",
            "empty": b"",
        }
        cache.set_many(values)
        assert {k: cache.get(k) for k in values} == values
        items = {f"k{i}": f"{i}:".encode() + b"x" * 2000 for i in range(1000)}
        cache.set_many(items)
        assert cache.get_many([*items, "nope"]) == items
        assert cache.delete_many(list(items)) == 1000
    finally:
        store.close()


def _read_request(conn: socket.socket, binary: bool) -> bytes:
    """One whole request (a text line, or a binary header and body)."""
    data = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
        if not binary and data.endswith(b"\r\n"):
            return data
        if (
            binary
            and len(data) >= HEADER.size
            and len(data) >= HEADER.size + HEADER.unpack(data[: HEADER.size])[6]
        ):
            return data


@pytest.mark.parametrize("protocol", ["text", "binary"])
def test_a_reply_cut_by_a_timeout_is_never_read_by_the_next_call(protocol: str) -> None:
    """The server sends half a reply and stalls: the call raises StoreTimeout, the client
    closes that connection (the server sees it hang up), and the next call reads its own
    whole reply on a new connection."""
    binary = protocol == "binary"
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    hung_up: list[bool] = []
    accepted: list[socket.socket] = []

    def reply_to(conn: socket.socket, whole: bool) -> None:
        request = _read_request(conn, binary)
        if binary:
            opcode, opaque = request[1], HEADER.unpack(request[: HEADER.size])[7]
            full = _reply(opcode, opaque, extras=b"\0\0\0\0", value=b"abcdefghij")
        else:
            full = b"VALUE %u:k 0 10\r\nabcdefghij\r\nEND\r\n"
        conn.sendall(full if whole else full[: len(full) // 2])

    def serve() -> None:
        for number in range(2):
            conn, _ = listener.accept()
            accepted.append(conn)
            if binary:  # SASL auth first
                auth = _read_request(conn, True)
                conn.sendall(_reply(Opcode.SASL_AUTH, HEADER.unpack(auth[: HEADER.size])[7]))
            reply_to(conn, whole=number == 1)
            if number == 0:
                hung_up.append(conn.recv(1024) == b"")  # blocks until the client closes

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    credentials = "u:p@" if binary else ""
    store = MemcacheStore(f"{credentials}127.0.0.1:{port}", timeout=0.2)
    try:
        with pytest.raises(StoreTimeout):
            store.get("k")
        assert store.get("k") == b"abcdefghij"
        thread.join(timeout=10)  # a liveness guard, not a timing assertion
        assert hung_up == [True]
        assert len(accepted) == 2
    finally:
        store.close()
        listener.close()
        for conn in accepted:
            conn.close()


def test_run_once_skips_the_check_on_a_connection_in_steady_use() -> None:
    """A connection put back less than ``check_after`` ago is reused without the check (a
    system call); one idle for longer is checked and, closed by the server, replaced."""
    pool, made = make_pool()
    pool.check_after = 3600.0
    assert pool.run_once(number) == 0
    made[0].stale = True
    assert pool.run_once(number) == 0  # not checked: reused as it is
    pool.check_after = -1.0
    assert pool.run_once(number) == 1  # checked, found closed, replaced
    assert made[0].closed


def number(conn: Conn) -> int:
    return conn.number
