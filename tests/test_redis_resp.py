"""The Redis store's faster RESP2 packing and array reading: the same bytes and the same
replies as the driver's own code, on a real server and on malformed replies."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from redis._parsers import _RESP2Parser
from redis._parsers.encoders import Encoder
from redis.connection import PythonRespSerializer
from redis.exceptions import DataError, ResponseError
from servers import RedisServer

from cachekit.errors import StoreError
from cachekit.stores.redis import RedisStore
from cachekit.stores.redis_resp import FastPacker, fast_packer, fast_parser_class, parser_class

ENCODER = Encoder("utf-8", "strict", False)
DRIVER_PACKER = PythonRespSerializer(6000, ENCODER.encode)
PACKER = FastPacker(ENCODER.encode)

argument = st.one_of(
    st.text(max_size=20),
    st.binary(max_size=20),
    st.binary(min_size=6001, max_size=7000),
    st.integers(),
    st.floats(allow_nan=False),
    st.binary(max_size=20).map(bytearray),
    st.binary(max_size=7000).map(memoryview),
)


def joined(buffers: list[Any]) -> bytes:
    return b"".join(bytes(b) for b in buffers)


@given(
    st.sampled_from(["GET", "MGET", "CONFIG GET", b"SET", b"CLIENT SETNAME"]),
    st.lists(argument, max_size=6),
)
def test_packer_writes_the_drivers_bytes(name: str | bytes, args: list[Any]) -> None:
    """Any command packs to exactly the bytes redis-py's own serializer writes."""
    assert joined(PACKER.pack(name, *args)) == joined(DRIVER_PACKER.pack(name, *args))


def test_packer_sends_big_and_zero_copy_arguments_on_their_own() -> None:
    """A value over the cutoff, or a memoryview, is its own buffer (not copied into one)."""
    big, view = b"x" * 7000, memoryview(b"abc")
    buffers = PACKER.pack("SET", "k", big)
    assert any(b is big for b in buffers)
    assert any(b is view for b in PACKER.pack("SET", "k", view))


@pytest.mark.parametrize("bad", [True, None, object(), 1j])
def test_packer_refuses_what_the_driver_refuses(bad: object) -> None:
    """bool, None and other types raise the driver's DataError."""
    with pytest.raises(DataError):
        PACKER.pack("SET", "k", bad)


def test_fast_path_is_used_exactly_when_the_driver_is_pure_python() -> None:
    """Without a C accelerator (hiredis) the store's sync connections use both; with one,
    neither."""
    pure = redis.connection.DefaultParser is _RESP2Parser
    assert (fast_parser_class("redis") is not None) is pure
    assert (fast_packer("redis") is not None) is pure
    store = RedisStore.from_url("redis://127.0.0.1:1")
    kwargs = store.client().connection_pool.connection_kwargs
    assert (kwargs.get("parser_class") is parser_class("redis")) is pure
    assert isinstance(kwargs.get("command_packer"), FastPacker) is pure


@pytest.fixture
def fast_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on the fast packer and parser, whatever the driver's default."""
    client = redis.Redis.from_url(
        redis_server.url,
        protocol=2,
        parser_class=parser_class("redis"),
        command_packer=FastPacker(ENCODER.encode),
    )
    yield client
    client.close()


@pytest.fixture
def plain_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on the driver's pure-Python parser and packer."""
    client = redis.Redis.from_url(redis_server.url, protocol=2, parser_class=_RESP2Parser)
    yield client
    client.close()


@pytest.mark.servers
def test_mget_reads_values_spanning_many_socket_reads(
    fast_client: redis.Redis, plain_client: redis.Redis
) -> None:
    """MGET of big values (several socket reads each), nils, empty values and values that
    look like RESP reads back byte for byte, as the driver's parser reads it."""
    values = {
        "resp:big": bytes(range(256)) * 1000,
        "resp:fake": b"\r\n$3\r\nabc\r\n*2\r\n-ERR no\r\n",
        "resp:empty": b"",
        **{f"resp:n{i}": f"{i}".encode() * 50 for i in range(500)},
    }
    plain_client.mset(values)
    keys = [*values, "resp:missing"]
    got = fast_client.mget(keys)
    assert got == [*values.values(), None]
    assert got == plain_client.mget(keys)


@pytest.mark.servers
def test_other_replies_read_as_the_driver_reads_them(
    fast_client: redis.Redis, plain_client: redis.Redis
) -> None:
    """Nested arrays, integers, statuses and nils inside arrays, errors inside a
    transaction and a nil array mean what they mean on the driver's parser."""
    script = "return {1, 'two', {3, {'four'}}, false, redis.status_reply('OK')}"
    for client in (fast_client, plain_client):
        client.set("resp:s", "v")
    assert fast_client.eval(script, 0) == plain_client.eval(script, 0)
    assert fast_client.scan(0, match="resp:s") == plain_client.scan(0, match="resp:s")
    results = []
    for client in (fast_client, plain_client):
        pipe = client.pipeline(transaction=True)
        pipe.set("resp:t", "text").incr("resp:t").get("resp:t")
        results.append(pipe.execute(raise_on_error=False))
    fast, plain = results
    assert fast[0] is True
    assert isinstance(fast[1], ResponseError)
    assert fast[2] == b"text"
    assert [type(r) for r in fast] == [type(r) for r in plain]
    assert fast_client.execute_command("BLPOP", "resp:none", 0.01) is None


@pytest.fixture
def bad_server() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server that acknowledges the client's handshake (CLIENT SETINFO) and answers
    each MGET with the next canned reply (the list is filled by the test)."""
    listener = socket.create_server(("127.0.0.1", 0))
    replies: list[bytes] = []
    conns: list[socket.socket] = []

    def answer(conn: socket.socket) -> None:
        while chunk := conn.recv(65536):
            out = b"+OK\r\n" * chunk.count(b"SETINFO")
            if b"MGET" in chunk:
                out += replies.pop(0) if replies else b"-ERR no more replies\r\n"
            conn.sendall(out)

    stop = threading.Event()
    listener.settimeout(0.05)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            conns.append(conn)
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], replies
    stop.set()
    thread.join(timeout=5)
    listener.close()
    for conn in conns:
        conn.close()


@pytest.mark.parametrize(
    "reply",
    [
        b"*2\r\n$3\r\nabcXY$1\r\nz\r\n",  # data longer than its length
        b"*2\r\n$x\r\nabc\r\n",  # a length that is not a number
        b"*z\r\n",  # a count that is not a number
    ],
)
def test_a_malformed_array_is_a_store_error(
    bad_server: tuple[int, list[bytes]], reply: bytes
) -> None:
    """A reply out of step with the protocol raises StoreError, never returns data."""
    port, replies = bad_server
    replies.append(reply)
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}")
    try:
        conn_kwargs = store.client().connection_pool.connection_kwargs
        conn_kwargs["parser_class"] = parser_class("redis")  # whatever the default
        with pytest.raises(StoreError):
            store.get_many(["a", "b"])
    finally:
        store.close()
