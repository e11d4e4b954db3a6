"""The binding socket's wire protocol, pure (no I/O): frames, requests, replies, error codes.

Shared by the host's server (:mod:`cachekit.sockets.server`) and the plugin's client
(:mod:`cachekit.sockets.client`); ``docs/protocol.md`` is its specification, with test
vectors that ``tests/test_sockets_protocol.py`` checks against this module both ways.

A frame is a 4-byte big-endian length ``n`` then ``n`` bytes of one msgpack value:

- a request ``[id, op, tenant, namespace, *args]``;
- a reply ``[id, code, result]``: ``code`` 0 and the op's result, or an error code
  (:class:`Code`) and a message.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Any, Final

import msgpack

from cachekit.durations import MAX_TTL
from cachekit.errors import (
    CacheKeyError,
    CachekitError,
    CachePolicyError,
    CacheValueError,
    StoreError,
    StoreTimeout,
    StoreUnavailable,
    ValueTooLarge,
)

__all__ = [
    "DEFAULT_MAX_FRAME",
    "OPS",
    "PROTOCOL_VERSION",
    "BadFrame",
    "Code",
    "Request",
    "code_of",
    "env_name",
    "error_of",
    "frame",
    "parse_request",
    "reply",
]

PROTOCOL_VERSION: Final = 1
DEFAULT_MAX_FRAME: Final = 16 * 1024 * 1024
"""The largest frame body a host accepts by default (16 MiB), length prefix excluded."""
HEADER: Final = 4
MAX_ID: Final = 2**64 - 1


SOCKET_VARIABLE: Final = "CACHEKIT_CACHE_SOCKET"
"""The socket of a plugin's only binding; ``SOCKET_VARIABLE + "_" + env_name(binding)``
names each binding's."""


def env_name(binding: str) -> str:
    """The variable naming ``binding``'s socket, as Gestalt spells it: the name upper-cased,
    every character but ``A-Z`` and ``0-9`` as ``_`` (``sessions`` ->
    ``CACHEKIT_CACHE_SOCKET_SESSIONS``, ``rate-limits`` -> ``..._RATE_LIMITS``)."""
    return f"{SOCKET_VARIABLE}_{re.sub(r'[^A-Z0-9]', '_', binding.upper())}"


class Code(enum.IntEnum):
    """A reply's status: 0 is success, every other value an error (``docs/protocol.md``)."""

    OK = 0
    BAD_FRAME = 1
    """The body is not msgpack, or not a request array of the documented shape."""
    FRAME_TOO_LARGE = 2
    """The length prefix is over the host's maximum: the host answers, then closes."""
    UNKNOWN_OP = 3
    BAD_ARGUMENT = 4
    """Wrong number or types of arguments, an empty or invalid key or namespace."""
    BAD_TENANT = 5
    """Not a valid tenant id, or not the tenant this socket is pinned to."""
    VALUE_TOO_LARGE = 6
    """Over the plugin's ``maxValueBytes``: nothing was written."""
    POLICY = 7
    """The plugin's policy refuses the operation (or the plugin is disabled)."""
    BAD_VALUE = 8
    """``incr`` of a value that is not an integer, or past the signed 64-bit range."""
    STORE_UNAVAILABLE = 9
    STORE_TIMEOUT = 10
    INTERNAL = 11


class BadFrame(Exception):
    """A request that cannot be served; ``code`` says why, ``id`` is the request's id
    when it could be read (``None`` otherwise)."""

    def __init__(self, code: Code, message: str, id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.id = id


# --- argument checks: one per kind of argument -------------------------------------------


def _key(value: Any) -> str:
    if type(value) is not str or not value:
        raise BadFrame(Code.BAD_ARGUMENT, f"a key must be a non-empty str, got {value!r:.80}")
    return value


def _keys(value: Any) -> list[str]:
    if type(value) is not list:
        raise BadFrame(Code.BAD_ARGUMENT, f"keys must be an array, got {type(value).__name__}")
    for key in value:
        _key(key)
    return value


def _value(value: Any) -> bytes:
    if type(value) is not bytes:
        raise BadFrame(
            Code.BAD_ARGUMENT, f"a value must be msgpack bin, got {type(value).__name__}"
        )
    return value


def _items(value: Any) -> dict[str, bytes]:
    if type(value) is not dict:
        raise BadFrame(Code.BAD_ARGUMENT, f"items must be a map, got {type(value).__name__}")
    for key, item in value.items():
        _key(key)
        _value(item)
    return value


def _ttl(value: Any) -> float | int | None:
    """``nil``: the binding's default TTL; ``0``: no expiry; else seconds."""
    if value is None or (type(value) in (int, float) and 0 <= value <= MAX_TTL):
        return value  # type: ignore[no-any-return]
    raise BadFrame(
        Code.BAD_ARGUMENT,
        f"a ttl must be nil or a number of seconds from 0 to {MAX_TTL}, got {value!r:.80}",
    )


def _required_ttl(value: Any) -> float | int:
    if value is None:
        raise BadFrame(Code.BAD_ARGUMENT, "expire needs a ttl (0 clears the expiry)")
    return _ttl(value)  # type: ignore[return-value]


def _delta(value: Any) -> int:
    if type(value) is not int:
        raise BadFrame(Code.BAD_ARGUMENT, f"a delta must be an integer, got {value!r:.80}")
    return value


OPS: Final[dict[str, tuple[Callable[[Any], Any], ...]]] = {
    "ping": (),
    "get": (_key,),
    "get_many": (_keys,),
    "set": (_key, _value, _ttl),
    "set_many": (_items, _ttl),
    "add": (_key, _value, _ttl),
    "delete": (_key,),
    "delete_many": (_keys,),
    "touch": (_key, _ttl),
    "incr": (_key, _delta, _ttl),
    "expire": (_key, _required_ttl),
    "clear": (),
}
"""Every operation and the check of each of its arguments, in order."""


class Request:
    """A parsed, checked request."""

    __slots__ = ("args", "id", "namespace", "op", "tenant")

    def __init__(
        self, id: int, op: str, tenant: str | None, namespace: str | None, args: list[Any]
    ) -> None:
        self.id, self.op, self.tenant, self.namespace, self.args = id, op, tenant, namespace, args

    def __repr__(self) -> str:
        return (
            f"Request(id={self.id}, op={self.op!r}, tenant={self.tenant!r}, "
            f"namespace={self.namespace!r})"
        )


def parse_request(body: bytes) -> Request:
    """The request in a frame's body.

    :raises BadFrame: the body is not a request, names an unknown op, or an argument is
        of the wrong type (with the id when it could be read).
    """
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception:  # msgpack raises a zoo of types on bad input
        raise BadFrame(Code.BAD_FRAME, "the frame is not a msgpack value") from None
    if type(message) is not list or len(message) < 4:
        raise BadFrame(Code.BAD_FRAME, "a request is an array [id, op, tenant, namespace, *args]")
    id, op, tenant, namespace, *args = message
    if type(id) is not int or not 0 <= id <= MAX_ID:
        raise BadFrame(Code.BAD_FRAME, "a request id is an unsigned integer")
    checks = OPS.get(op) if type(op) is str else None
    if checks is None:
        raise BadFrame(Code.UNKNOWN_OP, f"unknown op {op!r:.40}; known: {', '.join(OPS)}", id)
    if tenant is not None and type(tenant) is not str:
        raise BadFrame(Code.BAD_TENANT, "a tenant is a str or nil (the platform scope)", id)
    if namespace is not None and (type(namespace) is not str or not namespace):
        raise BadFrame(Code.BAD_ARGUMENT, "a namespace is a non-empty str or nil", id)
    if len(args) != len(checks):
        raise BadFrame(
            Code.BAD_ARGUMENT, f"{op} takes {len(checks)} arguments, got {len(args)}", id
        )
    try:
        args = [check(arg) for check, arg in zip(checks, args, strict=True)]
    except BadFrame as exc:
        exc.id = id
        raise
    return Request(id, op, tenant, namespace, args)


def frame(message: Any) -> bytes:
    """``message`` packed as one frame (length prefix included)."""
    body: bytes = msgpack.packb(message, use_bin_type=True)
    return len(body).to_bytes(HEADER, "big") + body


def reply(id: int | None, result: Any) -> bytes:
    """A success reply's frame."""
    return frame([id, 0, result])


def error_reply(id: int | None, code: Code, message: str) -> bytes:
    """An error reply's frame."""
    return frame([id, int(code), message])


def code_of(exc: BaseException) -> Code:
    """The error code the host answers for an exception a cache call raised."""
    if isinstance(exc, BadFrame):
        return exc.code
    if isinstance(exc, ValueTooLarge):
        return Code.VALUE_TOO_LARGE
    if isinstance(exc, CachePolicyError):
        return Code.POLICY
    if isinstance(exc, CacheKeyError):
        return Code.BAD_ARGUMENT
    if isinstance(exc, CacheValueError):
        return Code.BAD_VALUE
    if isinstance(exc, StoreTimeout):
        return Code.STORE_TIMEOUT
    if isinstance(exc, StoreError):
        return Code.STORE_UNAVAILABLE
    return Code.INTERNAL


def error_of(code: int, message: str, store: str) -> CachekitError:
    """The exception a client raises for an error reply (``store`` names the binding).

    Store failures are the store errors they were on the host; refusals of what the caller
    asked are the caller's errors; a broken exchange (bad frame, unknown op, a host
    failure) is a :class:`~cachekit.errors.StoreUnavailable`.
    """
    if code == Code.STORE_TIMEOUT:
        return StoreTimeout(message, store=store)
    if code in (Code.BAD_ARGUMENT, Code.BAD_TENANT):
        return CacheKeyError(message)
    if code == Code.VALUE_TOO_LARGE:  # the host's message names the plugin and the limit
        return ValueTooLarge(message, plugin="", tenant=None, limit="maxValueBytes", value=None)
    if code == Code.POLICY:
        return CachePolicyError(message, plugin="", tenant=None, limit="", value=None)
    if code == Code.BAD_VALUE:
        return CacheValueError(message)
    return StoreUnavailable(f"{message} (error {code} from the host)", store=store)
