"""The memcache store's connection options, parsed and checked into a frozen spec.

``backend.cache.connection`` names one memcached server (``host:port``; the port defaults
to 11211) or several (a comma-separated string or a YAML list), each optionally with
``user:password@`` credentials: the password is everything between the first ``:`` and
the last ``@``, taken literally, and never shown in a message or a ``repr``.
``backend.cache.memcache.auth`` picks how credentials are used: ``sasl`` (the default with
credentials: the binary protocol, ``memcached -S``) or ``ascii`` (the text protocol's
``set auth``, ``memcached -Y``).

:func:`parse_memcache_connection` reads the whole section into a
:class:`MemcacheConnectionSpec` when the section is parsed, so a bad server list fails at
start-up with its config path. This module imports no store and no driver: the store
imports it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from cachekit.errors import ConfigError

if TYPE_CHECKING:
    from cachekit.config.schema import CacheConfig

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_PORT",
    "AuthMode",
    "MemcacheConnectionSpec",
    "MemcacheServer",
    "auth_mode",
    "parse_memcache_connection",
    "parse_servers",
]

DEFAULT_PORT: Final = 11211
DEFAULT_MAX_CONNECTIONS: Final = 50
"""Connections per server at most unless ``memcache.maxConnections`` says otherwise (as the
Redis store's default)."""
AuthMode = Literal["none", "sasl", "ascii"]

_HOSTNAME: Final = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
_SECTION: Final = "backend.cache"


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
    comma-separated string, or a list whose items are strings (use a list when a password
    has a comma) or :class:`MemcacheServer` objects.

    :raises ConfigError: naming ``path`` for a missing, empty, malformed or repeated server.
    """
    if value is None:
        raise ConfigError(
            "the memcache store needs a connection: 'host:port', 'user:password@host:port', "
            "a comma-separated list or a YAML list of them",
            path=path,
        )
    if isinstance(value, str):
        items: list[tuple[str, object]] = [(path, part) for part in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [(f"{path}[{i}]", item) for i, item in enumerate(value)]
    else:
        raise ConfigError(
            f"expected a server address or a list of them, got {type(value).__name__}",
            path=path,
        )
    servers: list[MemcacheServer] = []
    for item_path, item in items:
        if isinstance(item, MemcacheServer):
            server = item
        elif not isinstance(item, str):
            raise ConfigError(f"expected 'host:port', got {type(item).__name__}", path=item_path)
        elif not item.strip():
            raise ConfigError("empty server address", path=item_path)
        else:
            server = MemcacheServer.parse(item, item_path)
        if any(s.address == server.address for s in servers):
            raise ConfigError(f"server {server.address} is listed twice", path=item_path)
        servers.append(server)
    if not servers:
        raise ConfigError("no memcached server given", path=path)
    return tuple(servers)


def auth_mode(
    auth: str | None,
    servers: Sequence[MemcacheServer],
    connection_path: str = "connection",
    auth_path: str = "auth",
) -> AuthMode:
    """How the store authenticates: ``"none"`` (no credentials), ``"sasl"`` (credentials,
    and ``auth`` unset or ``sasl``) or ``"ascii"``.

    :raises ConfigError: credentials on some servers only (naming ``connection_path``), an
        unknown ``auth``, or an ``auth`` without credentials (naming ``auth_path``).
    """
    with_credentials = sum(s.username is not None for s in servers)
    if with_credentials not in (0, len(servers)):
        raise ConfigError("give user:password@ for every server or for none", path=connection_path)
    if auth is None:
        return "sasl" if with_credentials else "none"
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
    return "sasl" if mode == "sasl" else "ascii"


@dataclass(frozen=True)
class MemcacheConnectionSpec:
    """Everything the memcache store needs to reach its servers.

    :param servers: the servers, in config order (at least one, no address twice).
    :param auth: ``"none"``, ``"sasl"`` or ``"ascii"`` (see :func:`auth_mode`).
    :param max_value_size: largest item (value + key + memcached's header), as ``-I``.
    :param generation_refresh: seconds a scope's generations are trusted in a process.
    :param dead_retry: seconds a failing server is skipped before one call probes it.
    :param connect_timeout: seconds to open a connection.
    :param timeout: seconds to wait for a reply.
    :param failure_threshold: failures in a row that make a server skipped.
    :param max_connections: connections per server at most (``memcache.maxConnections``);
        callers beyond that wait for one, up to ``connect_timeout + timeout``.
    :raises ValueError: a number that is not positive, or no server.
    """

    servers: tuple[MemcacheServer, ...]
    auth: AuthMode = "none"
    max_value_size: int = 1024 * 1024
    generation_refresh: float = 1.0
    dead_retry: float = 5.0
    connect_timeout: float = 0.25
    timeout: float = 0.5
    failure_threshold: int = 3
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    @property
    def target(self) -> str:
        """The servers, for logs and ``repr`` (no passwords): ``h1:11211,h2:11211``, with
        ``(sasl as user)`` when credentials are used."""
        addresses = ",".join(server.address for server in self.servers)
        if self.auth == "none":
            return addresses
        return f"{addresses} ({self.auth} as {self.servers[0].username})"

    def __post_init__(self) -> None:
        if not self.servers:
            raise ValueError("a memcache connection needs at least one server")
        for label, number in (
            ("max_value_size", self.max_value_size),
            ("generation_refresh", self.generation_refresh),
            ("dead_retry", self.dead_retry),
            ("connect_timeout", self.connect_timeout),
            ("timeout", self.timeout),
            ("failure_threshold", self.failure_threshold),
            ("max_connections", self.max_connections),
        ):
            if not number > 0:
                raise ValueError(f"{label} must be positive, got {number!r}")


def parse_memcache_connection(config: CacheConfig) -> MemcacheConnectionSpec:
    """The memcache spec of a parsed ``backend.cache`` section (``connection``,
    ``memcache``, ``timeouts``, ``circuitBreaker``).

    :raises ConfigError: naming the config path at fault.
    """
    connection_path = f"{_SECTION}.connection"
    servers = parse_servers(config.connection, connection_path)
    options = config.memcache
    return MemcacheConnectionSpec(
        servers,
        auth_mode(options.auth, servers, connection_path, f"{_SECTION}.memcache.auth"),
        max_value_size=options.max_value_size,
        generation_refresh=options.generation_refresh,
        dead_retry=options.dead_retry,
        connect_timeout=config.timeouts.connect,
        timeout=config.timeouts.operation,
        failure_threshold=config.circuit_breaker.failure_threshold,
        max_connections=options.max_connections,
    )
