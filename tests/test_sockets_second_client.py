"""A second client, written from docs/protocol.md alone (tests/protocol_client.py: the
standard library and msgpack), against a real host: the document is enough."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import test_sockets_protocol
from protocol_client import Client, ProtocolError, decode_frames, encode_frame
from sockets_host import HostLoop

from cachekit.host import CacheManager
from cachekit.sockets import BindingServer, socket_binding


@pytest.fixture
def served(host: HostLoop, tmp_path: Path) -> Iterator[tuple[CacheManager, str]]:
    """A memory manager whose plugin ``reports`` is served on a socket."""
    manager = CacheManager()
    server = BindingServer(socket_binding(manager, "reports"))
    path = str(tmp_path / "reports.sock")
    host.run(server.start(path))
    yield manager, path
    host.run(server.close())


def test_the_second_client_encodes_and_decodes_every_vector() -> None:
    """Its frame encoder writes each documented request byte for byte, and its decoder
    reads each documented reply."""
    for comment, request, reply in test_sockets_protocol.vectors():
        if len(request) > 4:
            assert encode_frame(msgpack.unpackb(request[4:], raw=False)) == request, comment
        (decoded,) = decode_frames(reply)
        assert type(decoded) is list, comment
        assert len(decoded) == 3, comment


def test_the_second_client_passes_the_vectors_against_the_host(
    served: tuple[CacheManager, str],
) -> None:
    """Sent through the second client's socket, every vector request gets the documented
    reply from a real host."""
    _manager, path = served
    client = Client(path)
    try:
        for comment, request, reply in test_sockets_protocol.vectors():
            client.sock.sendall(request)
            assert client.read_reply() == decode_frames(reply)[0], comment
    finally:
        client.close()


def test_the_second_client_shares_data_with_the_host_in_its_scope(
    served: tuple[CacheManager, str],
) -> None:
    """What it writes for tenant acme is the plugin's data for acme on the host (read with
    the ordinary codec), and nothing another tenant or plugin sees."""
    manager, path = served
    client = Client(path, tenant="acme")
    try:
        client.call("set", "greeting", msgpack.packb("hello"), 0)  # the codec's bytes for a str
        assert client.call("incr", "hits", 2, None) == 2
        assert client.call("get", "hits") == b"2"
    finally:
        client.close()
    assert manager.for_plugin("reports", "acme").get("greeting") == "hello"
    assert manager.for_plugin("reports", "acme").get("hits") == 2
    assert manager.for_plugin("reports", "globex").get("greeting") is None
    assert manager.for_plugin("catalog", "acme").get("greeting") is None


def test_the_second_client_pipelines_and_gets_replies_in_order(
    served: tuple[CacheManager, str],
) -> None:
    """A hundred requests sent before any reply is read are answered, in order, by id."""
    _manager, path = served
    client = Client(path, tenant="acme", namespace="batch")
    try:
        requests: list[tuple[object, ...]] = [("set", f"k{i}", b"%d" % i, 0) for i in range(50)]
        requests += [("incr", f"k{i}", 1, None) for i in range(50)]
        replies = client.pipeline(requests)
        assert list(replies) == list(range(1, 101))
        assert [r[2] for r in replies.values()][50:] == [i + 1 for i in range(50)]
    finally:
        client.close()


def test_the_second_client_reads_documented_error_codes(
    served: tuple[CacheManager, str],
) -> None:
    """Errors arrive as the codes the document names, and the connection stays usable."""
    _manager, path = served
    client = Client(path, tenant="acme")
    try:
        client.call("set", "text", msgpack.packb("not a number"), 0)
        with pytest.raises(ProtocolError) as caught:
            client.call("incr", "text", 1, None)
        assert caught.value.name == "BAD_VALUE"
        with pytest.raises(ProtocolError) as caught:
            client.call("expire", "text")
        assert caught.value.name == "BAD_ARGUMENT"
        assert client.call("ping")["tenant"] == "acme"
    finally:
        client.close()
