"""The binding socket protocol (cachekit.sockets.protocol) against docs/protocol.md: the
test vectors in both directions, and every refusal a request can get."""

from __future__ import annotations

import math
from pathlib import Path

import msgpack
import pytest
from sockets_host import HostLoop, connect, read_exactly

from cachekit.errors import ConfigError
from cachekit.host import CacheManager
from cachekit.sockets import BindingServer, socket_binding, socket_environment
from cachekit.sockets.protocol import BadFrame, Code, env_name, frame, parse_request

DOC = Path(__file__).parent.parent / "docs" / "protocol.md"


def vectors() -> list[tuple[str, bytes, bytes]]:
    """The document's test vectors: (comment, request bytes, reply bytes), in order."""
    out, comment, request = [], "", b""
    for line in DOC.read_text().split("## Test vectors", 1)[1].splitlines():
        if line.startswith("# ") and not line.startswith("#  "):
            comment = line[2:]
        elif line.startswith("> "):
            request = bytes.fromhex(line[2:])
        elif line.startswith("< "):
            out.append((comment, request, bytes.fromhex(line[2:])))
    return out


def test_the_document_has_vectors_for_every_op_and_error_the_host_answers() -> None:
    """The vectors cover the ops and the errors a client most needs (a check on the doc)."""
    replies = [msgpack.unpackb(reply[4:]) for _c, _q, reply in vectors()]
    codes = {reply[1] for reply in replies}
    assert {0, Code.BAD_FRAME, Code.FRAME_TOO_LARGE, Code.UNKNOWN_OP, Code.BAD_TENANT} <= codes
    assert len(replies) >= 14


def test_requests_of_the_vectors_encode_and_parse_as_documented() -> None:
    """Each vector's request is exactly what frame() makes of its decoded form, and parses
    (or is refused) with the code its reply carries."""
    for comment, request, reply in vectors():
        expected = msgpack.unpackb(reply[4:], raw=False)
        if len(request) <= 4:  # the length-only vector
            continue
        message = msgpack.unpackb(request[4:], raw=False)
        assert frame(message) == request, comment
        if expected[1] == Code.OK or expected[1] > Code.BAD_ARGUMENT:  # refused by the host
            assert parse_request(request[4:]).id == expected[0], comment
            continue
        with pytest.raises(BadFrame) as caught:
            parse_request(request[4:])
        assert (caught.value.id, caught.value.code) == (expected[0], expected[1]), comment


def test_the_host_answers_every_vector_byte_for_byte(host: HostLoop, tmp_path: Path) -> None:
    """A real BindingServer on a memory binding answers the document's session with
    exactly the documented bytes, and closes after the over-long frame."""
    server = BindingServer(socket_binding(CacheManager(), "catalog"))
    host.run(server.start(str(tmp_path / "v.sock")))
    sock = connect(tmp_path / "v.sock")
    try:
        for comment, request, reply in vectors():
            sock.sendall(request)
            length = int.from_bytes(read_exactly(sock, 4), "big")
            got = length.to_bytes(4, "big") + read_exactly(sock, length)
            assert got.hex(" ") == reply.hex(" "), comment
        assert sock.recv(1) == b""  # the host closed the connection
    finally:
        sock.close()
        host.run(server.close())


def test_a_reply_frame_is_its_documented_bytes() -> None:
    """frame() writes a 4-byte big-endian length and msgpack with bin for bytes."""
    assert frame([3, 0, b"\xa2hi"]) == bytes.fromhex("00000008 93 03 00 c4 03 a2 68 69")


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (7, Code.BAD_FRAME),
        ([1, "get", None], Code.BAD_FRAME),
        ([-1, "get", None, None, "k"], Code.BAD_FRAME),
        (["1", "get", None, None, "k"], Code.BAD_FRAME),
        ({"id": 1, "op": "get", "plugin": "other"}, Code.BAD_FRAME),
        ([1, "flushall", None, None], Code.UNKNOWN_OP),
        ([1, b"get", None, None, "k"], Code.UNKNOWN_OP),
        ([1, "get", None, None], Code.BAD_ARGUMENT),
        ([1, "get", "acme", None, "k", "other-plugin"], Code.BAD_ARGUMENT),
        ([1, "get", None, None, ""], Code.BAD_ARGUMENT),
        ([1, "get", None, None, 42], Code.BAD_ARGUMENT),
        ([1, "get", None, "", "k"], Code.BAD_ARGUMENT),
        ([1, "get", 7, None, "k"], Code.BAD_TENANT),
        ([1, "set", None, None, "k", "text, not bin", 0], Code.BAD_ARGUMENT),
        ([1, "set", None, None, "k", b"v", -1], Code.BAD_ARGUMENT),
        ([1, "set", None, None, "k", b"v", math.nan], Code.BAD_ARGUMENT),
        ([1, "set", None, None, "k", b"v", "5m"], Code.BAD_ARGUMENT),
        ([1, "set", None, None, "k", b"v", 10**10], Code.BAD_ARGUMENT),
        ([1, "incr", None, None, "k", True, None], Code.BAD_ARGUMENT),
        ([1, "incr", None, None, "k", 1.5, None], Code.BAD_ARGUMENT),
        ([1, "expire", None, None, "k", None], Code.BAD_ARGUMENT),
        ([1, "get_many", None, None, "k"], Code.BAD_ARGUMENT),
        ([1, "set_many", None, None, {"k": 1}, 0], Code.BAD_ARGUMENT),
    ],
)
def test_a_malformed_request_is_refused_with_its_code(message: object, code: Code) -> None:
    """Every shape, type and arity error is a BadFrame with the documented code (and the
    id, when it could be read)."""
    with pytest.raises(BadFrame) as caught:
        parse_request(msgpack.packb(message, use_bin_type=True))
    assert caught.value.code == code
    readable = isinstance(message, list) and len(message) >= 4 and type(message[0]) is int
    assert caught.value.id == (message[0] if readable and message[0] >= 0 else None)  # type: ignore[index]


def test_bytes_that_are_not_msgpack_are_a_bad_frame() -> None:
    """Garbage bodies are BAD_FRAME with no id."""
    for body in (b"", b"\xc1", b"\x95\x01", b"\xff" * 50):
        with pytest.raises(BadFrame) as caught:
            parse_request(body)
        assert (caught.value.code, caught.value.id) == (Code.BAD_FRAME, None)


@pytest.mark.parametrize(
    ("binding", "variable"),
    [
        ("sessions", "CACHEKIT_CACHE_SOCKET_SESSIONS"),
        ("rate-limits", "CACHEKIT_CACHE_SOCKET_RATE_LIMITS"),
        ("a.b c", "CACHEKIT_CACHE_SOCKET_A_B_C"),
        ("Default", "CACHEKIT_CACHE_SOCKET_DEFAULT"),
    ],
)
def test_a_binding_name_becomes_its_variable_by_gestalts_rule(binding: str, variable: str) -> None:
    """Upper-cased, every character but A-Z and 0-9 as an underscore."""
    assert env_name(binding) == variable


def test_one_binding_sets_both_variables_several_only_the_named_ones() -> None:
    """Gestalt's rule: CACHEKIT_CACHE_SOCKET only when there is exactly one binding."""
    assert socket_environment({"default": "/s/0"}) == {
        "CACHEKIT_CACHE_SOCKET": "/s/0",
        "CACHEKIT_CACHE_SOCKET_DEFAULT": "/s/0",
    }
    assert socket_environment({"default": "/s/0", "sessions": "/s/1"}) == {
        "CACHEKIT_CACHE_SOCKET_DEFAULT": "/s/0",
        "CACHEKIT_CACHE_SOCKET_SESSIONS": "/s/1",
    }


def test_two_names_spelling_one_variable_are_a_config_error() -> None:
    """``rate-limits`` and ``rate_limits`` would share a variable: refused, not overwritten."""
    with pytest.raises(ConfigError, match="CACHEKIT_CACHE_SOCKET_RATE_LIMITS"):
        socket_environment({"rate-limits": "/a", "rate_limits": "/b"})
    with pytest.raises(ConfigError, match="at least one binding"):
        socket_environment({})
