"""The Redis store's faster RESP2 packing and array reading: the same bytes and the same
replies as the driver's own code, on a real server and on malformed replies."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from hypothesis import given
from hypothesis import strategies as st
from redis._parsers import _AsyncRESP2Parser, _RESP2Parser
from redis._parsers.encoders import Encoder
from redis.connection import PythonRespSerializer
from redis.exceptions import DataError, ResponseError
from redis.utils import HIREDIS_AVAILABLE
from servers import RedisServer

from cachekit.errors import StoreError
from cachekit.stores.redis import RedisStore
from cachekit.stores.redis_resp import (
    FastPacker,
    async_parser_class,
    fast_async_parser_class,
    fast_packer,
    fast_parser_class,
    parser_class,
)

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
    """Without a C accelerator (hiredis) the store's connections use the fast packer
    (sync) and parsers (sync and async); with one, the driver's own code."""
    pure = not HIREDIS_AVAILABLE
    assert (fast_parser_class("redis") is not None) is pure
    assert (fast_async_parser_class("redis") is not None) is pure
    assert (fast_packer("redis") is not None) is pure
    store = RedisStore.from_url("redis://127.0.0.1:1")
    kwargs = store.client().connection_pool.connection_kwargs
    assert (kwargs.get("parser_class") is parser_class("redis")) is pure
    assert isinstance(kwargs.get("command_packer"), FastPacker) is pure

    async def async_kwargs() -> dict[str, Any]:
        client = store.async_client()
        return client.connection_pool.connection_kwargs  # type: ignore[no-any-return]

    parser = asyncio.run(async_kwargs()).get("parser_class")
    assert (parser is async_parser_class("redis")) is pure


def test_resp3_keeps_the_drivers_code() -> None:
    """A client asked for RESP3 (protocol=3 in the options) gets the driver's own parser and
    packer: the fast path reads RESP2 only."""
    store = RedisStore.from_url("redis://127.0.0.1:1", protocol=3)
    kwargs = store.client().connection_pool.connection_kwargs
    assert "parser_class" not in kwargs
    assert "command_packer" not in kwargs


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


def async_clients(url: str) -> tuple[redis.asyncio.Redis, redis.asyncio.Redis]:
    """An asyncio client on the fast parser and one on the driver's pure-Python parser."""
    fast = redis.asyncio.Redis.from_url(url, protocol=2, parser_class=async_parser_class("redis"))
    plain = redis.asyncio.Redis.from_url(url, protocol=2, parser_class=_AsyncRESP2Parser)
    return fast, plain


@pytest.mark.servers
def test_async_mget_and_pipelines_read_as_the_driver_reads_them(
    redis_server: RedisServer,
) -> None:
    """asyncio: MGET of big values, nils and RESP look-alikes, and a pipeline whose replies
    arrive together (an MGET between other replies: nothing of the next one is taken)."""
    values = {
        "aresp:big": bytes(range(256)) * 1000,
        "aresp:fake": b"\r\n$3\r\nabc\r\n*2\r\n",
        "aresp:empty": b"",
        **{f"aresp:n{i}": f"{i}".encode() * 50 for i in range(500)},
    }
    keys = [*values, "aresp:missing"]
    script = "return {1, 'two', {3, {'four'}}, false, redis.status_reply('OK')}"

    async def run() -> None:
        fast, plain = async_clients(redis_server.url)
        try:
            await plain.mset(values)
            got = await fast.mget(keys)
            assert got == [*values.values(), None]
            assert got == await plain.mget(keys)
            replies = []
            for client in (fast, plain):
                pipe = client.pipeline(transaction=False)
                pipe.mget(keys[:3]).get("aresp:fake").mget(["aresp:n1", "aresp:none"]).incr("x")
                pipe.eval(script, 0)
                replies.append(await pipe.execute(raise_on_error=False))
            assert replies[0][:3] == [
                [values["aresp:big"], values["aresp:fake"], b""],
                values["aresp:fake"],
                [values["aresp:n1"], None],
            ]
            assert replies[0][4] == replies[1][4]
        finally:
            await fast.aclose()
            await plain.aclose()

    asyncio.run(run())


@pytest.mark.servers
def test_single_values_read_as_the_driver_reads_them(
    redis_server: RedisServer, fast_client: redis.Redis, plain_client: redis.Redis
) -> None:
    """GET of a big value (many socket reads), an empty one, a missing one, and a GET
    that fails (WRONGTYPE), sync and asyncio, as the driver's parser reads them."""
    plain_client.set("one:big", bytes(range(256)) * 2000)
    plain_client.set("one:empty", b"")
    plain_client.rpush("one:list", "x")
    keys = ["one:big", "one:empty", "one:missing"]
    assert [fast_client.get(k) for k in keys] == [plain_client.get(k) for k in keys]
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        fast_client.get("one:list")

    async def run() -> None:
        fast, plain = async_clients(redis_server.url)
        try:
            assert [await fast.get(k) for k in keys] == [await plain.get(k) for k in keys]
            with pytest.raises(ResponseError, match="WRONGTYPE"):
                await fast.get("one:list")
            assert await fast.get("one:empty") == b""
        finally:
            await fast.aclose()
            await plain.aclose()

    asyncio.run(run())


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
    """A reply out of step with the protocol raises StoreError, never returns data, on
    sync and asyncio connections."""
    port, replies = bad_server
    replies.extend([reply, reply])
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}")

    async def async_get_many() -> None:
        pool = store.async_client().connection_pool
        pool.connection_kwargs["parser_class"] = async_parser_class("redis")
        with pytest.raises(StoreError):
            await store.aget_many(["a", "b"])
        await store.aclose()

    try:
        conn_kwargs = store.client().connection_pool.connection_kwargs
        conn_kwargs["parser_class"] = parser_class("redis")  # whatever the default
        with pytest.raises(StoreError):
            store.get_many(["a", "b"])
        asyncio.run(async_get_many())
    finally:
        store.close()
