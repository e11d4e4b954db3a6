"""The Memcache store: one or more memcached servers behind one cachekit store.

Connection
    ``backend.cache.connection`` names one server (``host:port``; the port defaults to
    11211), several (a comma-separated string or a YAML list), each optionally with
    ``user:password@`` credentials (the password is everything between the first ``:`` and
    the last ``@``, taken literally). Config is checked when the store is built; nothing
    connects until the first call.

Authentication
    ``user:password@`` means SASL PLAIN over memcached's binary protocol (``memcached -S``:
    managed services, the Bitnami image), spoken by ``python-binary-memcached``. With
    ``memcache.auth: ascii`` the credentials go through memcached's text-protocol
    authentication instead (``memcached -Y authfile``). Without credentials the text
    protocol is used: ``pymemcache`` opens the connections and sends the less frequent
    commands, while ``get``, ``set``, ``incr`` and ``decr`` are written and read directly on
    its socket (pymemcache's general path costs ~7 µs a call, a third of a loopback round
    trip; the store only sends keys that need none of its checks). Either way the store talks to
    a thin adapter (``_TextClient`` / ``_BinaryClient``: get, set, add, incr, touch, ...) and
    every quirk below lives once, in :class:`MemcacheStore`. A rejected password raises
    :class:`~cachekit.errors.StoreUnavailable` saying that authentication failed.

Several servers
    Keys are spread by client-side consistent hashing: a ketama-style ring (160 points per
    server, MD5 for the ring, CRC-32 for the keys), so adding a server moves about ``1/n``
    of the keys. We route ourselves instead of using pymemcache's ``HashClient`` because
    ``HashClient`` (1) spends about 27 µs per key in its pure-Python rendezvous hash with
    three servers, as much as a loopback round trip; (2) silently returns defaults (a miss,
    ``False``, ``{}``) while a server is in its retry window, so a direct call could not
    raise; (3) moves a dead server's keys to the survivors and back, serving stale values
    when it returns. Each server has connections shared by every plugin of the process
    (text protocol: a pool, one connection per concurrently calling thread, up to 64 kept
    idle; SASL: one connection per calling thread, closed when the thread ends), connect
    and operation timeouts (``timeouts.connect``, ``timeouts.operation``), and its own
    :class:`~cachekit.breaker.CircuitBreaker`: after ``circuitBreaker.failureThreshold``
    failures in a row the server's keys fail fast with ``StoreUnavailable`` for
    ``memcache.deadRetry`` seconds, then one call probes it. Keys on the other servers are
    not affected. A batch call that spans a dead server raises after serving the live ones.

Clearing without ``flush_all``: generations
    Every stored key embeds a *generation tag*: a hash of four generation values, those of
    the key's plugin, its tenant, its (plugin, tenant) and its (plugin, tenant, namespace).
    ``clear`` writes a fresh random value into the one generation its selector names —
    ``manager.clear(plugin=)``, ``manager.clear(tenant=)``, ``Cache.clear()`` and a
    namespace's ``clear()`` — which changes the tag of every key below it, so the old
    entries can no longer be addressed and memcached evicts them in time. ``flush_all`` is
    never sent; ``clear`` returns ``None`` (memcached cannot count). Generations live on
    every server beside the keys they tag (a server's keys depend on no other server), and
    are cached in the process for ``memcache.generationRefresh`` (1 s by default), so the
    hot path stays one round trip. **A clear is visible at once in the process that made
    it and within ``generationRefresh`` in every other process.** A generation is created
    with a random 72-bit value, never a counter: if memcached evicts a generation key, the
    recreated one empties its scope instead of reviving entries an earlier clear removed.
    A clear that cannot reach every server raises ``StoreUnavailable`` after clearing the
    others. Other selectors (a namespace across scopes, everything) are not supported.

Keys
    A stored key reads ``{plugin}:{tenant}:{namespace}:{tag}:{key}``. When that is over
    250 bytes or holds anything but printable ASCII (spaces, control characters, unicode),
    the user key is replaced by a hash: ``{plugin}:{tenant}:{namespace}:{tag}%#{blake2b}``
    (truncated if the scope itself is long), so the scope stays readable in
    ``memcached-tool`` dumps and distinct keys stay distinct.

Values and counters: the biased integer form
    memcached's ``decr`` stops at zero and its ``incr`` works on unsigned 64-bit decimals,
    while cachekit's counters go negative. So an integer ``n`` (the codec writes integers
    as ASCII decimal) is stored as the decimal of ``n + 2**63``: ``incr``/``decr`` by
    ``delta`` then is memcached ``incr``/``decr`` of the biased value, atomic on the server,
    and an existing counter keeps its TTL. Reads subtract the bias from any value that
    starts with a digit. Other values are stored as given, except that values which would
    look biased (any value starting with a digit or ``-`` that is not a signed 64-bit
    integer in canonical form) or that start with ``~`` get a ``~`` in front, which reads
    strip; so every byte string round-trips, and ``incr`` of anything but a 64-bit integer
    is refused by memcached (``CacheValueError``, value unchanged). Counters saturate at
    ``-2**63`` and wrap past ``2**63 - 1``. ``incr`` of a missing key creates it with
    ``add`` (so the TTL is set once); a lost race (``add`` finds the key) goes back to
    ``incr``. Rate limits (:meth:`MemcacheStore.gcra`) read their timestamp with ``gets``
    and write it with ``add`` or ``cas``, retrying on a conflict: atomic across processes.

TTLs
    memcached counts whole seconds: a fractional TTL is rounded *up* (0.2 s becomes 1 s,
    never 0, which would mean "forever"). A TTL over 30 days is sent as an absolute Unix
    time (memcached reads larger relative values as dates), so the client's clock must be
    roughly right. memcached's clock ticks once a second, so an entry may expire up to a
    second before its TTL, never after. ``expire(key, None)`` is ``touch key 0``.

Values over the size limit
    memcached refuses items over its ``-I`` limit (1 MiB by default), and a refused ``set``
    also deletes the old value. The store checks first: a value whose item (value, key and
    memcached's 64-byte header) exceeds ``memcache.maxValueSize`` raises
    ``CacheValueError`` naming both sizes, and nothing is sent.

Async
    The async twins run the sync client in a worker thread (``asyncio.to_thread``, from
    :class:`~cachekit.stores.base.BaseStore`), so they never block the event loop. Measured by
    ``bench/bench_memcache.py`` (client and memcached pinned to one core, medians of
    interleaved rounds; absolute times move with machine load, the ratios hold across runs):
    one awaited ``get`` costs 86-106 µs through the worker thread, 66-76 µs with aiomcache
    0.8.2 (a native asyncio client) and 51-55 µs with bare asyncio streams (1.3-1.4x
    aiomcache); with 50 concurrent tasks, 64-68, 55-64 and 48-52 µs per get (1.13-1.14x).
    (Earlier runs, on a quieter machine and before the store spoke get directly: 100, 42 and
    28 µs, 2.3-2.5x.) A native client would save 20-60 µs per awaited call, but no
    maintained asyncio client speaks SASL or the binary
    protocol, and a second client stack would duplicate everything above (generations,
    biasing, key hashing, per-server failure handling) for the async side. So: the worker
    thread, one implementation for both. Worth revisiting for hosts whose cache traffic is
    mostly async on plain servers, with an asyncio text-protocol adapter generated from
    this one rather than written beside it.

Performance
    Against raw pymemcache sending the same commands to the same keys (``bench/
    bench_memcache.py``, several runs), ``Cache.get`` (msgpack decode included) takes
    0.89-0.98x, ``Cache.set`` (encode included) 1.01-1.07x, ``Cache.incr`` 1.03-1.06x and
    ``Cache.get_many`` of 100 keys 0.84-0.91x: the direct text protocol saves more than
    the cache layer adds. The per-key work (scope, generation tag, hashing) is cached per
    key while its generations are fresh, so the hot path is a dictionary lookup, the
    breaker, the pool and the socket.
"""

from __future__ import annotations

import base64
import bisect
import functools
import hashlib
import ipaddress
import math
import os
import re
import socket
import struct
import time
import weakref
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from pymemcache.client.base import Client as _PymemcacheClient
from pymemcache.exceptions import (
    MemcacheClientError,
    MemcacheServerError,
    MemcacheUnexpectedCloseError,
)

from cachekit import gcra
from cachekit.breaker import CircuitBreaker
from cachekit.codec import format_int, parse_int
from cachekit.errors import (
    CacheValueError,
    ConfigError,
    StoreError,
    StoreTimeout,
    StoreUnavailable,
)
from cachekit.keys import SEPARATOR, KeySelector, scope_of
from cachekit.stores.base import BaseStore

if TYPE_CHECKING:
    from cachekit.config import CacheConfig

__all__ = ["MemcacheServer", "MemcacheStore", "parse_servers"]

T = TypeVar("T")

STORE_NAME: Final = "memcache"
DEFAULT_PORT: Final = 11211
MAX_KEY_LENGTH: Final = 250
RELATIVE_TTL_LIMIT: Final = 30 * 24 * 3600  # memcached reads larger exptimes as Unix times
BIAS: Final = 2**63
ITEM_OVERHEAD: Final = 64  # memcached's item header, CAS and line ends

_DIGITS: Final = frozenset(b"0123456789")
_ENCODED_START: Final = frozenset(b"0123456789~")  # values decode_value changes
_INT_START: Final = frozenset(b"-0123456789")
_RAW_MARK: Final = b"~"
_HASH_MARK: Final = "%#"  # never in a key segment: '%' there is always followed by hex
_GENERATION_PREFIX: Final = "%g:"
_UNSCOPED_PREFIX: Final = "%u:"
_UNREADABLE: Final = re.compile(r"[^\x21-\x7e]")
_HOSTNAME: Final = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
_INCR_ATTEMPTS: Final = 8
_CAS_ATTEMPTS: Final = 32
_MAX_CACHED_SCOPES: Final = 50_000  # per server; the cache is dropped when it grows past this
_MAX_CACHED_KEYS: Final = 16_384  # locations of recently used keys, dropped likewise
_MAX_IDLE_CONNECTIONS: Final = 64
_RECV_SIZE: Final = 65536


# --- pure helpers: TTLs, values, keys -----------------------------------------------------


def expiry(ttl: float | None, now: Callable[[], float] = time.time) -> int:
    """memcached's ``exptime`` for a TTL in seconds: ``0`` for none, whole seconds rounded
    up, or an absolute Unix time when over 30 days."""
    if ttl is None:
        return 0
    seconds = math.ceil(ttl)
    if seconds > RELATIVE_TTL_LIMIT:
        return math.ceil(now() + ttl)
    return seconds or 1


def encode_value(value: bytes) -> bytes:
    """The bytes stored for ``value``: signed 64-bit integers biased by ``2**63``, values that
    would read as biased (or start with ``~``) escaped with ``~``, everything else as is."""
    if value:
        first = value[0]
        if first in _INT_START:
            number = parse_int(value)
            if number is not None and -BIAS <= number < BIAS and value == b"%d" % number:
                return b"%d" % (number + BIAS)
            return _RAW_MARK + value
        if first == 0x7E:  # "~"
            return _RAW_MARK + value
    return value


def decode_value(stored: bytes) -> bytes:
    """Undo :func:`encode_value` (memcached may pad an ``incr`` result with spaces)."""
    if stored:
        first = stored[0]
        if first in _DIGITS:
            try:
                return b"%d" % (int(stored) - BIAS)
            except ValueError:  # not written by us: let the codec report it
                return stored
        if first == 0x7E:
            return stored[1:]
    return stored


def _plain(key: str) -> bool:
    """Whether memcached takes ``key`` as is: at most 250 bytes of printable, non-space ASCII."""
    return len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable() and " " not in key


def _hashed(readable: str, original: str) -> str:
    """A valid memcached key for ``original``: ``readable`` (sanitised, truncated) and a hash."""
    digest = hashlib.blake2b(original.encode("utf-8", "surrogatepass"), digest_size=18).digest()
    suffix = _HASH_MARK + base64.urlsafe_b64encode(digest).decode("ascii")
    return _UNREADABLE.sub("_", readable)[: MAX_KEY_LENGTH - len(suffix)] + suffix


def _generation_key(kind: str, *segments: str) -> str:
    key = _GENERATION_PREFIX + kind + SEPARATOR + SEPARATOR.join(segments)
    return key if _plain(key) else _hashed(key, key)


def _scope_generation_keys(scope: str) -> list[str]:
    """The four generations that tag a scope's keys (``scope`` is ``plugin:tenant:ns:``)."""
    plugin, tenant, namespace = scope[:-1].split(SEPARATOR)
    return [
        _generation_key("p", plugin),
        _generation_key("t", tenant),
        _generation_key("pt", plugin, tenant),
        _generation_key("ptn", plugin, tenant, namespace),
    ]


def _selector_generation_key(selector: KeySelector) -> str:
    """The one generation a clear of ``selector`` bumps."""
    plugin, tenant, namespace = selector.plugin, selector.tenant, selector.namespace
    if plugin is not None and tenant is not None:
        if namespace is None:
            return _generation_key("pt", plugin, tenant)
        return _generation_key("ptn", plugin, tenant, namespace)
    if namespace is None and plugin is not None:
        return _generation_key("p", plugin)
    if namespace is None and tenant is not None:
        return _generation_key("t", tenant)
    raise NotImplementedError(
        f"the memcache store clears a plugin, a tenant, a (plugin, tenant) scope or one "
        f"namespace of a scope, not {selector!r}"
    )


def _new_generation() -> bytes:
    return base64.urlsafe_b64encode(os.urandom(9))


def _tag(generations: Sequence[bytes]) -> str:
    digest = hashlib.blake2b(b"\x00".join(generations), digest_size=9).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def _unscoped_key(key: str) -> str:
    # A key not laid out by cachekit.keys (a custom caller): no generation, own prefix.
    stored = _UNSCOPED_PREFIX + key
    return stored if _plain(stored) else _hashed(stored, stored)


# --- servers from config ------------------------------------------------------------------


@dataclass(frozen=True)
class MemcacheServer:
    """One memcached server of ``backend.cache.connection``.

    :param host: host name or IP address.
    :param port: TCP port.
    :param username: SASL / ASCII-auth user, or ``None``.
    :param password: its password (never shown in ``repr`` or messages).
    """

    host: str
    port: int = DEFAULT_PORT
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def parse(cls, spec: str, path: str = "connection") -> MemcacheServer:
        """Read ``[memcache://][user:password@]host[:port]``.

        :raises ConfigError: naming ``path`` (the password is masked in the message).
        """
        text = spec.strip()
        for scheme in ("memcache://", "memcached://"):
            if text.lower().startswith(scheme):
                text = text[len(scheme) :].rstrip("/")
                break
        credentials, at, hostport = text.rpartition("@")
        shown = f"***@{hostport}" if at else text

        def bad(reason: str) -> ConfigError:
            return ConfigError(
                f"{reason} in server {shown!r}; write host:port or user:password@host:port",
                path=path,
            )

        username = password = None
        if at:
            username, colon, password = credentials.partition(":")
            if not username or not colon or not password:
                raise bad("credentials must be user:password")
        if hostport.startswith("["):
            host, _, rest = hostport[1:].partition("]")
            if rest and not rest.startswith(":"):
                raise bad("unexpected text after the IPv6 address")
            port_text = rest[1:] if rest else None
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise bad(f"{host!r} is not an IPv6 address") from None
        else:
            if hostport.count(":") > 1:
                raise bad("an IPv6 address needs brackets, as in [::1]:11211,")
            host, colon, port_text_ = hostport.partition(":")
            port_text = port_text_ if colon else None
            if not host:
                raise bad("no host")
            if not _HOSTNAME.fullmatch(host):
                raise bad(f"{host!r} is not a host name")
        port = DEFAULT_PORT
        if port_text is not None:
            if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise bad(f"port {port_text!r} is not a number from 1 to 65535")
            port = int(port_text)
        return cls(host, port, username, password)


def parse_servers(value: object, path: str = "connection") -> tuple[MemcacheServer, ...]:
    """Read ``backend.cache.connection`` for the memcache store: a ``host:port`` string, a
    comma-separated string, or a list of strings (use a list when a password has a comma).

    :raises ConfigError: naming ``path`` for a missing, empty, malformed or repeated server.
    """
    if value is None:
        raise ConfigError(
            "the memcache store needs a connection: 'host:port', 'user:password@host:port', "
            "a comma-separated list or a YAML list of them",
            path=path,
        )
    if isinstance(value, str):
        items = [(path, part) for part in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [(f"{path}[{i}]", item) for i, item in enumerate(value)]
    else:
        raise ConfigError(
            f"expected a server address or a list of them, got {type(value).__name__}",
            path=path,
        )
    servers: list[MemcacheServer] = []
    for item_path, item in items:
        if not isinstance(item, str):
            raise ConfigError(f"expected 'host:port', got {type(item).__name__}", path=item_path)
        if not item.strip():
            raise ConfigError("empty server address", path=item_path)
        server = MemcacheServer.parse(item, item_path)
        if any(s.address == server.address for s in servers):
            raise ConfigError(f"server {server.address} is listed twice", path=item_path)
        servers.append(server)
    if not servers:
        raise ConfigError("no memcached server given", path=path)
    return tuple(servers)


def _auth_mode(
    auth: str | None,
    servers: Sequence[MemcacheServer],
    connection_path: str,
    auth_path: str,
) -> str:
    """``"none"``, ``"sasl"`` or ``"ascii"``, or ``ConfigError``."""
    with_credentials = sum(s.username is not None for s in servers)
    if with_credentials not in (0, len(servers)):
        raise ConfigError("give user:password@ for every server or for none", path=connection_path)
    if auth is None:
        mode = "sasl" if with_credentials else "none"
    else:
        mode = auth.strip().lower()
        if mode not in ("sasl", "ascii"):
            raise ConfigError(
                f"unknown auth {auth!r}; use 'sasl' (binary protocol, the default with "
                "user:password@) or 'ascii' (memcached -Y)",
                path=auth_path,
            )
        if not with_credentials:
            raise ConfigError(
                f"auth {mode!r} needs user:password@host:port in backend.cache.connection",
                path=auth_path,
            )
    if mode == "sasl" and find_spec("bmemcached") is None:
        raise ConfigError(
            "SASL authentication needs python-binary-memcached: pip install 'cachekit[memcache]'",
            path=connection_path,
        )
    return mode


# --- consistent hashing -------------------------------------------------------------------


class _Ring:
    """A ketama-style ring: 160 points per server, keys placed by CRC-32."""

    __slots__ = ("_owners", "_points")

    def __init__(self, names: Sequence[str], points_per_server: int = 160) -> None:
        points: list[tuple[int, int]] = []
        for index, name in enumerate(names):
            for i in range(points_per_server // 4):
                digest = hashlib.md5(f"{name}-{i}".encode(), usedforsecurity=False).digest()
                for j in range(0, 16, 4):
                    points.append((int.from_bytes(digest[j : j + 4], "little"), index))
        points.sort()
        self._points = [p for p, _ in points]
        self._owners = [owner for _, owner in points]

    def index(self, key: str) -> int:
        """The index of the server owning ``key``."""
        i = bisect.bisect(self._points, zlib.crc32(key.encode("utf-8", "surrogatepass")))
        return self._owners[i if i < len(self._owners) else 0]


# --- the thin client adapters -------------------------------------------------------------


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class _AuthFailed(Exception):
    """The server refused our credentials."""


class _Client(Protocol):
    """What the store needs from a memcached client for one server. Every method raises
    only ``StoreUnavailable``, ``StoreTimeout`` or ``CacheValueError``."""

    def get(self, key: str) -> bytes | None: ...
    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]: ...
    def set(self, key: str, value: bytes, exptime: int) -> None: ...
    def set_many(self, items: Mapping[str, bytes], exptime: int) -> list[str]: ...
    def add(self, key: str, value: bytes, exptime: int) -> bool: ...
    def delete(self, key: str) -> bool: ...
    def delete_many(self, keys: Sequence[str]) -> int: ...
    def incr(self, key: str, delta: int) -> int | None: ...
    def gets(self, key: str) -> tuple[bytes | None, Any]: ...
    def cas(self, key: str, value: bytes, token: Any, exptime: int) -> bool: ...
    def touch(self, key: str, exptime: int) -> bool: ...
    def ping(self) -> None: ...
    def stats(self) -> dict[str, str]: ...
    def close(self) -> None: ...


def _store_error(exc: Exception, address: str, timeout: float) -> Exception:
    """Map a driver or socket exception to a cachekit one."""
    if isinstance(exc, StoreError | CacheValueError):
        return exc
    if isinstance(exc, _AuthFailed):
        return StoreUnavailable(
            f"memcache server {address}: authentication failed ({exc}); check the user and "
            "password in backend.cache.connection",
            store=STORE_NAME,
        )
    if isinstance(exc, TimeoutError):
        return StoreTimeout(
            f"memcache server {address} did not answer within {timeout}s", store=STORE_NAME
        )
    if any(isinstance(a, bytes) for a in exc.args):  # pymemcache's server replies
        detail = " ".join(
            a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in exc.args
        )
    else:
        detail = str(exc)
    return StoreUnavailable(
        f"memcache server {address}: {detail or 'connection closed unexpectedly'}",
        store=STORE_NAME,
    )


class _TextProtocolClient(_PymemcacheClient):  # type: ignore[misc]  # pymemcache is untyped
    """pymemcache's client plus memcached's ASCII authentication on every new connection
    (``memcached -Y``) and a pipelined delete that counts."""

    credentials = b""

    def _connect(self) -> None:
        super()._connect()
        if self.credentials:
            sock = self.sock
            sock.sendall(b"set auth 0 0 %d\r\n%s\r\n" % (len(self.credentials), self.credentials))
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(512)
                if not chunk:
                    self.close()
                    raise ConnectionError("memcached closed the connection during authentication")
                reply += chunk
            if reply != b"STORED\r\n":
                self.close()
                raise _AuthFailed(reply.strip().decode(errors="replace"))

    def delete_count(self, keys: Sequence[str]) -> int:
        commands = [b"delete " + self.check_key(k, self.key_prefix) + b"\r\n" for k in keys]
        lines = self._misc_cmd(commands, b"delete", False)
        return sum(line == b"DELETED" for line in lines)

    # The hot commands (get, set, incr, decr) are spoken here directly on pymemcache's
    # socket: its general path (key checks, serde, line buffering) costs ~7 µs a call, as
    # much as a third of a loopback round trip. The store only ever sends plain keys (at
    # most 250 bytes of printable, non-space ASCII: _stored_key hashes anything else), so
    # pymemcache's key checks have nothing left to catch. Every reply is read to its end,
    # so the connection is clean for the next command; on any error the pool closes it.

    def _send(self, command: bytes) -> None:
        if self.sock is None:
            self._connect()
        self.sock.sendall(command)

    def _receive(self) -> bytes:
        chunk: bytes = self.sock.recv(_RECV_SIZE)
        if not chunk:
            raise MemcacheUnexpectedCloseError()
        return chunk

    def _reply_line(self) -> bytes:
        """A one-line reply, without its line end; error replies raise."""
        line = self._receive()
        while not line.endswith(b"\r\n"):
            line += self._receive()
        line = line[:-2]
        if line.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")):
            self._raise_errors(line, line.split(b" ", 1)[0])
        return line

    def get_value(self, key: str) -> bytes | None:
        """``get`` of one key: its value, or ``None``."""
        name = key.encode("ascii")
        self._send(b"get " + name + b"\r\n")
        buf = self._receive()
        if buf == b"END\r\n":
            return None
        end = buf.find(b"\r\n")
        if end > 0 and buf.startswith(b"VALUE ") and buf.endswith(b"\r\nEND\r\n"):
            start = end + 2  # the usual reply, whole in one read: VALUE k f n, data, END
            stop = start + int(buf[buf.rfind(b" ", 0, end) + 1 : end])
            if stop + 7 == len(buf):
                return buf[start:stop]
        return self._read_values(buf, {name: key}).get(key)

    def get_values(self, keys: Sequence[str]) -> dict[str, bytes]:
        """``get`` of several keys in one command: the values found, by key."""
        wanted = {key.encode("ascii"): key for key in keys}
        self._send(b"get " + b" ".join(wanted) + b"\r\n")
        return self._read_values(self._receive(), wanted)

    def _read_values(self, buf: bytes | bytearray, wanted: dict[bytes, str]) -> dict[str, bytes]:
        """The rest of a ``get`` reply whose start is ``buf``: VALUE blocks up to END."""
        found: dict[str, bytes] = {}
        pos = 0
        while True:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                buf = _grown(buf, self._receive())
                continue
            line = buf[pos:end]
            if line == b"END":
                if end + 2 != len(buf):
                    raise MemcacheUnexpectedCloseError()  # more than one reply: out of step
                return found
            if not line.startswith(b"VALUE "):
                self._raise_errors(bytes(line), b"get")
                raise MemcacheUnexpectedCloseError()  # not a reply to get
            _, key, _flags, size = line.split(b" ", 4)[:4]
            start = end + 2
            stop = start + int(size)
            while len(buf) < stop + 2:
                buf = _grown(buf, self._receive())
            if buf[stop : stop + 2] != b"\r\n":
                raise MemcacheUnexpectedCloseError()  # the data was not the length announced
            value = buf[start:stop]
            found[wanted[bytes(key)]] = value if type(value) is bytes else bytes(value)
            pos = stop + 2

    def set_value(self, key: str, value: bytes, exptime: int) -> None:
        """``set`` with flags 0 (what pymemcache's ``set`` sends for bytes)."""
        self._send(b"set %s 0 %d %d\r\n%s\r\n" % (key.encode("ascii"), exptime, len(value), value))
        self._reply_line()

    def count(self, key: str, delta: int) -> int | None:
        """``incr`` (``delta >= 0``) or ``decr``: the new value, or ``None`` if ``key`` is
        missing."""
        verb = b"incr" if delta >= 0 else b"decr"
        self._send(b"%s %s %d\r\n" % (verb, key.encode("ascii"), abs(delta)))
        line = self._reply_line()
        return None if line == b"NOT_FOUND" else int(line)


def _grown(buf: bytes | bytearray, chunk: bytes) -> bytearray:
    """``buf`` with ``chunk`` appended, as a bytearray (amortised appends for big replies)."""
    grown = buf if type(buf) is bytearray else bytearray(buf)
    grown += chunk
    return grown


class _TextClient:
    """One server over memcached's text protocol (pymemcache), with a connection pool."""

    def __init__(
        self,
        server: MemcacheServer,
        *,
        ascii_auth: bool,
        connect_timeout: float,
        timeout: float,
    ) -> None:
        self.address = server.address
        self._target = (server.host, server.port)
        self._credentials = f"{server.username} {server.password}".encode() if ascii_auth else b""
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._idle: list[_TextProtocolClient] = []

    def _new_client(self) -> _TextProtocolClient:
        client = _TextProtocolClient(
            self._target,
            connect_timeout=self._connect_timeout,
            timeout=self._timeout,
            no_delay=True,
            default_noreply=False,
        )
        client.credentials = self._credentials
        return client

    def _run(self, op: Callable[..., T], *args: Any) -> T:
        idle = self._idle
        client = idle.pop() if idle else self._new_client()
        try:
            result = op(client, *args)
        except BaseException as exc:
            raise self._failed(client, exc)  # noqa: B904  # the cause is set by _failed
        if len(idle) < _MAX_IDLE_CONNECTIONS:
            idle.append(client)
        else:
            client.close()
        return result

    def _error(self, exc: Exception) -> Exception:
        if isinstance(exc, MemcacheClientError | MemcacheServerError):
            text = bytes(exc.args[0]) if exc.args and isinstance(exc.args[0], bytes) else b""
            if b"non-numeric" in text:
                return CacheValueError("memcached cannot increment a non-numeric value")
            if b"too large" in text:
                return CacheValueError(
                    f"memcache server {self.address} refused the item as too large"
                )
            if b"auth" in text:
                return _store_error(_AuthFailed(text.decode(errors="replace")), self.address, 0)
        if isinstance(exc, MemcacheUnexpectedCloseError) and not self._credentials:
            return StoreUnavailable(
                f"memcache server {self.address} closed the connection; if it requires "
                "authentication (memcached -S), give user:password@ in backend.cache.connection",
                store=STORE_NAME,
            )
        return _store_error(exc, self.address, self._timeout)

    def _failed(self, client: Any, exc: BaseException) -> BaseException:
        """Put a failed connection back closed; the exception to raise in its place."""
        client.close()  # a half-read reply must not reach the next caller
        self._idle.append(client)
        if not isinstance(exc, Exception):
            return exc
        error = self._error(exc)
        error.__cause__ = exc
        return error

    def get(self, key: str) -> bytes | None:
        return self._run(_TextProtocolClient.get_value, key)

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return self._run(_TextProtocolClient.get_values, keys) if keys else {}

    def set(self, key: str, value: bytes, exptime: int) -> None:
        self._run(_TextProtocolClient.set_value, key, value, exptime)

    def set_many(self, items: Mapping[str, bytes], exptime: int) -> list[str]:
        return self._run(_PymemcacheClient.set_many, items, exptime, False)

    def add(self, key: str, value: bytes, exptime: int) -> bool:
        return bool(self._run(_PymemcacheClient.add, key, value, exptime, False))

    def delete(self, key: str) -> bool:
        return bool(self._run(_PymemcacheClient.delete, key, False))

    def delete_many(self, keys: Sequence[str]) -> int:
        return self._run(_TextProtocolClient.delete_count, keys)

    def incr(self, key: str, delta: int) -> int | None:
        return self._run(_TextProtocolClient.count, key, delta)

    def gets(self, key: str) -> tuple[bytes | None, Any]:
        value: tuple[bytes | None, Any] = self._run(_PymemcacheClient.gets, key)
        return value

    def cas(self, key: str, value: bytes, token: Any, exptime: int) -> bool:
        return bool(self._run(_PymemcacheClient.cas, key, value, token, exptime, False))

    def touch(self, key: str, exptime: int) -> bool:
        return bool(self._run(_PymemcacheClient.touch, key, exptime, False))

    def ping(self) -> None:
        self._run(_PymemcacheClient.version)

    def stats(self) -> dict[str, str]:
        raw: dict[Any, Any] = self._run(_PymemcacheClient.stats)
        return {_text(k): _text(v) for k, v in raw.items()}

    def close(self) -> None:
        idle = self._idle  # emptied in place: a call in flight puts its client back here
        while idle:
            try:
                client = idle.pop()
            except IndexError:
                break
            client.close()


class _ThreadConnection:
    """A socket owned by one thread's protocol state: closed quietly when that thread ends
    (its ``threading.local`` state is dropped) or when the store is closed."""

    __slots__ = ("__weakref__", "closed", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = False

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.closed = True
        self.sock.close()

    def __del__(self) -> None:
        self.sock.close()


@functools.cache
def _binary_protocol_class() -> Any:
    """python-binary-memcached's protocol, made to raise on connection errors (it reports a
    lost server as a miss), to store bytes untouched, to count deletes and to touch."""
    from bmemcached.exceptions import MemcachedException
    from bmemcached.protocol import Protocol as BinaryProtocol

    header = struct.Struct(BinaryProtocol.HEADER_STRUCT)
    disconnected = BinaryProtocol.STATUS["server_disconnected"]

    class _Protocol(BinaryProtocol):  # type: ignore[misc]  # bmemcached is untyped
        # A threading.local: each thread gets its own connection (and its own __init__).
        connection: Any

        def __init__(
            self,
            server: MemcacheServer,
            connect_timeout: float,
            timeout: float,
            connections: weakref.WeakSet[_ThreadConnection],
        ) -> None:
            super().__init__(
                server=server.address,
                username=server.username,
                password=server.password,
                socket_timeout=timeout,
            )
            self.connect_timeout = connect_timeout
            self.connections = connections  # shared by every thread, for close()
            self.error: BaseException | None = None

        def serialize(self, value: bytes, compress_level: int = -1) -> tuple[int, bytes]:
            return 0, value

        def deserialize(self, value: bytes, flags: int) -> bytes:
            return value

        def _open_connection(self) -> None:
            if self.connection is not None and not self.connection.closed:
                return
            self.authenticated = False
            sock = socket.create_connection((self.host, self.port), self.connect_timeout)
            sock.settimeout(self.socket_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connection = _ThreadConnection(sock)
            self.connections.add(self.connection)
            try:
                self._send_authentication()
            except MemcachedException as exc:
                self.disconnect()
                if exc.code in (0x08, 0x20) or "PLAIN" in str(exc):
                    raise _AuthFailed(exc.message) from exc
                raise
            except BaseException:
                self.disconnect()
                raise

        def _send(self, data: bytes) -> None:
            self._open_connection()
            try:
                self.connection.sendall(data)
            except BaseException:
                self.disconnect()
                raise

        def _connection_error(self, exception: BaseException) -> None:
            self.disconnect()
            self.error = exception

        def _get_response(self) -> tuple[Any, ...]:
            response: tuple[Any, ...] = super()._get_response()
            if response[5] == disconnected:
                error, self.error = self.error, None
                raise error or ConnectionError("memcached closed the connection")
            return response

        def _request(self, opcode: int, key: str, extras: bytes = b"") -> bytes:
            raw = key.encode()
            size = len(raw) + len(extras)
            return header.pack(0x80, opcode, len(raw), len(extras), 0, 0, size, 0, 0) + extras + raw

        def _reply(self, accept: tuple[int, ...]) -> tuple[int, bytes]:
            response = self._get_response()
            status = response[5]
            if status not in accept:
                raise MemcachedException(f"Code: {status} Message: {response[9]!r}", status)
            return status, response[9]

        def get_value(self, key: str) -> bytes | None:
            value: bytes | None = self.get(key)[0]
            return value

        def get_values(self, keys: Sequence[str]) -> dict[str, bytes]:
            return {k: v for k, (v, _) in self.get_multi(keys).items()}

        def delete_one(self, key: str) -> bool:
            self._send(self._request(0x04, key))
            return self._reply((0, 1))[0] == 0

        def delete_count(self, keys: Sequence[str]) -> int:
            self._send(b"".join(self._request(0x04, k) for k in keys))
            statuses = [self._get_response()[5] for _ in keys]  # read every reply first
            for status in statuses:
                if status not in (0, 1):
                    raise MemcachedException(f"Code: {status}", status)
            return statuses.count(0)

        def incr_existing(self, key: str, delta: int) -> int | None:
            # expiration 0xFFFFFFFF: fail on a missing key instead of creating it
            extras = struct.pack("!QQL", abs(delta), 0, 0xFFFFFFFF)
            self._send(self._request(0x05 if delta >= 0 else 0x06, key, extras))
            status, body = self._reply((0, 1))
            return int.from_bytes(body[:8], "big") if status == 0 else None

        def touch_key(self, key: str, exptime: int) -> bool:
            self._send(self._request(0x1C, key, struct.pack("!L", exptime)))
            return self._reply((0, 1))[0] == 0

        def ping(self) -> None:
            self._send(self._request(0x0A, ""))
            self._reply((0,))

    return _Protocol


class _BinaryClient:
    """One server over memcached's binary protocol with SASL (python-binary-memcached);
    one connection per calling thread."""

    def __init__(self, server: MemcacheServer, *, connect_timeout: float, timeout: float) -> None:
        self.address = server.address
        self._timeout = timeout
        self._connections: weakref.WeakSet[_ThreadConnection] = weakref.WeakSet()
        self._ops = _binary_protocol_class()  # its methods, called on this server's protocol
        self._protocol = self._ops(server, connect_timeout, timeout, self._connections)

    def _run(self, op: Callable[..., T], *args: Any) -> T:
        protocol = self._protocol
        try:
            return op(protocol, *args)
        except BaseException as exc:
            protocol.disconnect()
            if isinstance(exc, Exception):
                raise self._error(exc) from exc
            raise

    def _error(self, exc: Exception) -> Exception:
        from bmemcached.exceptions import MemcachedException

        if isinstance(exc, MemcachedException):
            if exc.code == 0x06:
                return CacheValueError("memcached cannot increment a non-numeric value")
            if exc.code == 0x03:
                return CacheValueError(
                    f"memcache server {self.address} refused the item as too large"
                )
            if exc.code in (0x08, 0x20):
                return _store_error(_AuthFailed(exc.message), self.address, 0)
        return _store_error(exc, self.address, self._timeout)

    def get(self, key: str) -> bytes | None:
        value: bytes | None = self._run(self._ops.get_value, key)
        return value

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return self._run(self._ops.get_values, keys)

    def set(self, key: str, value: bytes, exptime: int) -> None:
        self._run(self._ops.set, key, value, exptime)

    def set_many(self, items: Mapping[str, bytes], exptime: int) -> list[str]:
        return self._run(self._ops.set_multi, items, exptime)

    def add(self, key: str, value: bytes, exptime: int) -> bool:
        return bool(self._run(self._ops.add, key, value, exptime))

    def delete(self, key: str) -> bool:
        return bool(self._run(self._ops.delete_one, key))

    def delete_many(self, keys: Sequence[str]) -> int:
        return int(self._run(self._ops.delete_count, keys))

    def incr(self, key: str, delta: int) -> int | None:
        value: int | None = self._run(self._ops.incr_existing, key, delta)
        return value

    def gets(self, key: str) -> tuple[bytes | None, Any]:
        value: tuple[bytes | None, Any] = self._run(self._ops.get, key)
        return value

    def cas(self, key: str, value: bytes, token: Any, exptime: int) -> bool:
        return bool(self._run(self._ops.cas, key, value, token, exptime))

    def touch(self, key: str, exptime: int) -> bool:
        return bool(self._run(self._ops.touch_key, key, exptime))

    def ping(self) -> None:
        self._run(self._ops.ping)

    def stats(self) -> dict[str, str]:
        raw: dict[Any, Any] = self._run(self._ops.stats)
        return {_text(k): _text(v) for k, v in raw.items()}

    def close(self) -> None:
        for connection in list(self._connections):  # every thread's: each reopens on next use
            connection.close()


# --- the store ----------------------------------------------------------------------------


class _Node:
    """One server: its client, its breaker and its cached generation tags."""

    __slots__ = ("address", "breaker", "client", "epoch", "heads")

    def __init__(self, client: _Client, address: str, breaker: CircuitBreaker) -> None:
        self.address = address
        self.client = client
        self.breaker = breaker
        self.heads: dict[str, tuple[str, float]] = {}  # scope -> ("scope + tag + :", valid until)
        self.epoch = 0  # bumped by every clear, so a refresh racing a clear is not cached


# full key -> (server, memcached key, valid until, number of clears when worked out)
_Location = tuple[_Node, str, float, int]


class MemcacheStore(BaseStore):
    """memcached as a cachekit store: one server or several (consistent hashing), plain,
    SASL or ASCII-authenticated. See the module documentation for how it maps cachekit's
    semantics onto memcached.

    :param servers: ``"host:port"``, ``"user:password@host:port"`` or a comma-separated
        string of them, or a sequence with one server per item (a string or a
        :class:`MemcacheServer`).
    :param auth: ``None`` (SASL when credentials are given), ``"sasl"`` or ``"ascii"``.
    :param max_value_size: largest item (value + key + 64 bytes), as memcached's ``-I``.
    :param generation_refresh: seconds a scope's generations are cached in this process:
        the most a clear made by another process can take to show here.
    :param dead_retry: seconds a failing server is skipped before one call probes it.
    :param connect_timeout: seconds to open a connection.
    :param timeout: seconds to wait for a reply.
    :param failure_threshold: failures in a row that make a server skipped.
    :param clock: monotonic clock for the generation cache and the breakers.
    :raises ConfigError: a malformed server, mixed credentials, or an unknown ``auth``.
    """

    name = STORE_NAME

    def __init__(
        self,
        servers: str | Sequence[str | MemcacheServer],
        *,
        auth: str | None = None,
        max_value_size: int = 1024 * 1024,
        generation_refresh: float = 1.0,
        dead_retry: float = 5.0,
        connect_timeout: float = 0.25,
        timeout: float = 0.5,
        failure_threshold: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parsed = self._servers(servers)
        for label, number in (
            ("max_value_size", max_value_size),
            ("generation_refresh", generation_refresh),
            ("dead_retry", dead_retry),
            ("connect_timeout", connect_timeout),
            ("timeout", timeout),
        ):
            if not number > 0:
                raise ValueError(f"{label} must be positive, got {number!r}")
        self.auth = _auth_mode(auth, parsed, "servers", "auth")
        self.max_value_size = max_value_size
        self.generation_refresh = generation_refresh
        self._clock = clock
        nodes = []
        for server in parsed:
            client: _Client
            if self.auth == "sasl":
                client = _BinaryClient(server, connect_timeout=connect_timeout, timeout=timeout)
            else:
                client = _TextClient(
                    server,
                    ascii_auth=self.auth == "ascii",
                    connect_timeout=connect_timeout,
                    timeout=timeout,
                )
            breaker = CircuitBreaker(
                STORE_NAME, failure_threshold=failure_threshold, cooldown=dead_retry, clock=clock
            )
            nodes.append(_Node(client, server.address, breaker))
        self._nodes = tuple(nodes)
        self._ring = _Ring([n.address for n in nodes]) if len(nodes) > 1 else None
        self._located: dict[str, _Location] = {}
        self._clears = 0  # bumped by every clear: cached locations from before are stale
        _LIVE_STORES.add(self)

    @staticmethod
    def _servers(servers: str | Sequence[str | MemcacheServer]) -> tuple[MemcacheServer, ...]:
        if isinstance(servers, str):
            return parse_servers(servers, "servers")
        parsed = [
            s if isinstance(s, MemcacheServer) else MemcacheServer.parse(s, f"servers[{i}]")
            for i, s in enumerate(servers)
        ]
        if not parsed:
            raise ConfigError("no memcached server given", path="servers")
        if len({s.address for s in parsed}) != len(parsed):
            raise ConfigError("a server is listed twice", path="servers")
        return tuple(parsed)

    @classmethod
    def from_config(cls, config: CacheConfig) -> MemcacheStore:
        """Build from ``backend.cache`` (``connection``, ``memcache``, ``timeouts``,
        ``circuitBreaker``) without connecting.

        :raises ConfigError: naming the config path at fault.
        """
        servers = parse_servers(config.connection, "backend.cache.connection")
        options = config.memcache
        _auth_mode(options.auth, servers, "backend.cache.connection", "backend.cache.memcache.auth")
        return cls(
            servers,
            auth=options.auth,
            max_value_size=options.max_value_size,
            generation_refresh=options.generation_refresh,
            dead_retry=options.dead_retry,
            connect_timeout=config.timeouts.connect,
            timeout=config.timeouts.operation,
            failure_threshold=config.circuit_breaker.failure_threshold,
        )

    def __repr__(self) -> str:
        down = [n.address for n in self._nodes if n.breaker.state != "closed"]
        return (
            f"MemcacheStore(servers={list(self.servers)}, auth={self.auth!r}, "
            f"generation_refresh={self.generation_refresh}, down={down})"
        )

    @property
    def servers(self) -> tuple[str, ...]:
        """The servers' ``host:port`` addresses, in config order."""
        return tuple(n.address for n in self._nodes)

    def locate(self, key: str) -> tuple[str, str]:
        """Where ``key`` (a full key) lives: the server's address and the memcached key
        (generation tag included; fetching the tag may take a round trip).

        :raises StoreError: the generation could not be read.
        """
        node, stored = self._locate(key)
        return node.address, stored

    # --- keys and generations -------------------------------------------------------------

    def _locate(self, key: str) -> tuple[_Node, str]:
        """The server and memcached key for a full key."""
        entry = self._located.get(key)
        if entry is None or entry[3] != self._clears or entry[2] <= self._clock():
            entry = self._relocate(key)
        return entry[0], entry[1]

    def _relocate(self, key: str) -> _Location:
        """Work out (and cache) where ``key`` lives. The hot methods check the cache inline:
        a cached location holds while its generations are fresh and no clear happened."""
        clears = self._clears
        ring = self._ring
        node = self._nodes[0] if ring is None else self._nodes[ring.index(key)]
        stored, valid_until = self._stored_key(node, key)
        located = self._located
        if len(located) >= _MAX_CACHED_KEYS:
            located.clear()
        entry = located[key] = (node, stored, valid_until, clears)
        return entry

    def _stored_key(self, node: _Node, key: str) -> tuple[str, float]:
        """The memcached key on ``node`` and until when its generation tag is trusted."""
        try:
            scope = scope_of(key)
        except ValueError:
            return _unscoped_key(key), math.inf
        entry = node.heads.get(scope)
        if entry is None or entry[1] <= self._clock():
            entry = self._refresh(node, scope)
        head = entry[0]
        stored = head + key[len(scope) :]
        return (stored if _plain(stored) else _hashed(head[:-1], stored)), entry[1]

    def _refresh(self, node: _Node, scope: str) -> tuple[str, float]:
        """Read (or create) the scope's generations on ``node``; cache the key head."""
        epoch = node.epoch
        names = _scope_generation_keys(scope)
        found = node.breaker.call(node.client.get_many, names)
        values = [found.get(name) or self._create_generation(node, name) for name in names]
        entry = (scope + _tag(values) + SEPARATOR, self._clock() + self.generation_refresh)
        if node.epoch == epoch:
            heads = node.heads
            if len(heads) >= _MAX_CACHED_SCOPES:
                heads.clear()
            heads[scope] = entry
        return entry

    def _create_generation(self, node: _Node, name: str) -> bytes:
        for _ in range(_INCR_ATTEMPTS):
            value = _new_generation()
            if node.breaker.call(node.client.add, name, value, 0):
                return value
            existing = node.breaker.call(node.client.get, name)  # another process won the add
            if existing is not None:
                return existing
        raise StoreUnavailable(
            f"memcache server {node.address} keeps evicting generation {name!r}", store=self.name
        )

    def _encoded(self, key: str, stored_key: str, value: bytes) -> bytes:
        data = encode_value(value)
        size = len(data) + len(stored_key) + ITEM_OVERHEAD
        if size > self.max_value_size:
            raise CacheValueError(
                f"value for {key!r} takes {size} bytes as a memcached item (value {len(value)}, "
                f"key and header {size - len(data)}), over the limit of {self.max_value_size} "
                "bytes (backend.cache.memcache.maxValueSize, memcached -I); cache less"
            )
        return data

    def _group(self, keys: Sequence[str]) -> dict[_Node, dict[str, str]]:
        """Stored key -> full key, by server (``_locate``'s cache check inlined: batches
        are where its cost adds up)."""
        groups: dict[_Node, dict[str, str]] = {}
        located, clears, now = self._located, self._clears, self._clock()
        for key in keys:
            entry = located.get(key)
            if entry is None or entry[3] != clears or entry[2] <= now:
                entry = self._relocate(key)
            node = entry[0]
            batch = groups.get(node)
            if batch is None:
                batch = groups[node] = {}
            batch[entry[1]] = key
        return groups

    # --- reads ----------------------------------------------------------------------------

    # The single-key methods inline _locate's cache check: it is most of their own cost.

    def get(self, key: str) -> bytes | None:
        entry = self._located.get(key)
        if entry is None or entry[3] != self._clears or entry[2] <= self._clock():
            entry = self._relocate(key)
        node = entry[0]
        raw = node.breaker.call(node.client.get, entry[1])
        if raw and raw[0] in _ENCODED_START:
            return decode_value(raw)
        return raw

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        errors: list[StoreError] = []
        for node, batch in self._group(keys).items():
            try:
                values = node.breaker.call(node.client.get_many, list(batch))
            except StoreError as exc:
                errors.append(exc)
                continue
            for stored, raw in values.items():
                found[batch[stored]] = (
                    decode_value(raw) if raw and raw[0] in _ENCODED_START else raw
                )
        self._raise_first(errors, "get_many")
        return found

    # --- writes ---------------------------------------------------------------------------

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        entry = self._located.get(key)
        if entry is None or entry[3] != self._clears or entry[2] <= self._clock():
            entry = self._relocate(key)
        node, stored = entry[0], entry[1]
        node.breaker.call(node.client.set, stored, self._encoded(key, stored, value), expiry(ttl))

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        batches: dict[_Node, dict[str, bytes]] = {}
        for key, value in items.items():  # everything is checked before anything is sent
            node, stored = self._locate(key)
            batches.setdefault(node, {})[stored] = self._encoded(key, stored, value)
        exptime = expiry(ttl)
        errors: list[StoreError] = []
        for node, batch in batches.items():
            try:
                failed = node.breaker.call(node.client.set_many, batch, exptime)
            except StoreError as exc:
                errors.append(exc)
                continue
            if failed:
                errors.append(
                    StoreUnavailable(
                        f"memcache server {node.address} did not store {len(failed)} keys",
                        store=self.name,
                    )
                )
        self._raise_first(errors, "set_many")

    def add(self, key: str, value: bytes, ttl: float | None) -> bool:
        node, stored = self._locate(key)
        data = self._encoded(key, stored, value)
        return node.breaker.call(node.client.add, stored, data, expiry(ttl))

    def delete(self, key: str) -> bool:
        node, stored = self._locate(key)
        return node.breaker.call(node.client.delete, stored)

    def delete_many(self, keys: Sequence[str]) -> int:
        deleted = 0
        errors: list[StoreError] = []
        for node, batch in self._group(list(dict.fromkeys(keys))).items():
            try:
                deleted += node.breaker.call(node.client.delete_many, list(batch))
            except StoreError as exc:
                errors.append(exc)
        self._raise_first(errors, "delete_many")
        return deleted

    def incr(self, key: str, delta: int, ttl: float | None) -> int:
        if not -BIAS <= delta < BIAS:
            raise CacheValueError(f"delta {delta} is outside the 64-bit range memcached counts in")
        entry = self._located.get(key)
        if entry is None or entry[3] != self._clears or entry[2] <= self._clock():
            entry = self._relocate(key)
        node, stored = entry[0], entry[1]
        call, client = node.breaker.call, node.client
        try:
            for _ in range(_INCR_ATTEMPTS):
                current = call(client.incr, stored, delta)
                if current is not None:
                    return current - BIAS
                if call(client.add, stored, b"%d" % (delta + BIAS), expiry(ttl)):
                    return delta
                # lost a race: the key was created between our incr and add; incr again
        except CacheValueError:
            raise CacheValueError(
                f"cannot increment {key!r}: it holds a value that is not a 64-bit integer"
            ) from None
        raise StoreUnavailable(
            f"could not increment {key!r}: it kept appearing and disappearing", store=self.name
        )

    def touch(self, key: str, ttl: float | None) -> bool:
        node, stored = self._locate(key)
        return node.breaker.call(node.client.touch, stored, expiry(ttl))

    def gcra(self, key: str, now: int, interval: int, period: int, cost: int) -> tuple[bool, int]:
        """One :func:`cachekit.gcra.step`, atomic across processes: ``gets`` the TAT, then
        ``add`` (none yet) or ``cas`` the new one, retrying when another writer got there
        first.

        :raises StoreUnavailable: the key stayed contended through every retry.
        """
        node, stored = self._locate(key)
        call, client = node.breaker.call, node.client
        for _ in range(_CAS_ATTEMPTS):
            raw, token = call(client.gets, stored)
            tat = None if raw is None else parse_int(decode_value(raw))
            allowed, new_tat = gcra.step(tat, now, interval, period, cost)
            if not allowed:
                return allowed, new_tat
            data, exptime = encode_value(format_int(new_tat)), expiry((new_tat - now) / 1e6)
            if raw is None:
                done = call(client.add, stored, data, exptime)
            else:
                done = call(client.cas, stored, data, token, exptime)
            if done:
                return allowed, new_tat
        raise StoreUnavailable(
            f"rate limit {key!r} stayed contended through {_CAS_ATTEMPTS} compare-and-set attempts",
            store=self.name,
        )

    def clear(self, selector: KeySelector) -> None:
        """Start a new generation of the selected scopes on every server (see the module
        documentation); returns ``None``.

        :raises StoreUnavailable: a server could not be reached (the others are cleared).
        :raises NotImplementedError: a selector other than plugin, tenant, (plugin, tenant)
            or (plugin, tenant, namespace).
        """
        if selector.prefix != self.key_prefix:
            return
        name = _selector_generation_key(selector)
        errors: list[StoreError] = []
        for node in self._nodes:
            try:
                node.breaker.call(node.client.set, name, _new_generation(), 0)
            except StoreError as exc:
                errors.append(exc)
            node.epoch += 1  # after the write: a refresh that read the old value is not kept
            heads = node.heads
            for scope in list(heads):
                if selector.matches(scope):
                    heads.pop(scope, None)
        self._clears += 1
        self._raise_first(errors, "clear")

    # --- housekeeping ---------------------------------------------------------------------

    def ping(self) -> None:
        """Raise ``StoreError`` unless every server answers."""
        errors: list[StoreError] = []
        for node in self._nodes:
            try:
                node.breaker.call(node.client.ping)
            except StoreError as exc:
                errors.append(exc)
        self._raise_first(errors, "ping")

    def server_info(self) -> dict[str, dict[str, str]]:
        """What ``stats`` says about each server, by address: ``server`` (``memcached``),
        ``version``, the server-wide ``hits`` / ``misses`` (``get_hits`` / ``get_misses`` of
        every client) and ``items`` (``curr_items``). memcached cannot count per scope.

        :raises StoreError: a server could not be reached (after asking the others).
        """
        info: dict[str, dict[str, str]] = {}
        errors: list[StoreError] = []
        for node in self._nodes:
            try:
                stats = node.breaker.call(node.client.stats)
            except StoreError as exc:
                errors.append(exc)
                continue
            info[node.address] = {
                "server": "memcached",
                "version": stats.get("version", "unknown"),
                "hits": stats.get("get_hits", "0"),
                "misses": stats.get("get_misses", "0"),
                "items": stats.get("curr_items", "0"),
            }
        self._raise_first(errors, "stats")
        return info

    def close(self) -> None:
        for node in self._nodes:
            node.client.close()

    def _raise_first(self, errors: list[StoreError], operation: str) -> None:
        if not errors:
            return
        if len(self._nodes) == 1:
            raise errors[0]
        error = errors[0]
        raise type(error)(
            f"{operation} failed on {len(errors)} of {len(self._nodes)} memcache servers "
            f"(the others answered): {error}",
            store=self.name,
        ) from error


# A forked child must not share its parent's sockets: it closes its copies (the parent's
# connections stay open) and opens its own on first use.
_LIVE_STORES: weakref.WeakSet[MemcacheStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_LIVE_STORES):
        store.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
