"""The Infinispan connection: Backstage's ``backend.cache.infinispan`` section (and an
optional ``connection`` URL), parsed into one frozen :class:`InfinispanConnectionSpec`.

The section is Backstage's, key for key (see :class:`~cachekit.config.schema.InfinispanConfig`)::

    store: infinispan
    infinispan:
      servers: [{host: ispn-1, port: 11222}, {host: ispn-2}]   # default 127.0.0.1:11222
      cacheName: cache                                         # the default
      authentication: {enabled: true, userName: app, password: ${ISPN_PASSWORD},
                       saslMechanism: DIGEST-MD5}
      clusters: [{name: site-b, servers: [{host: ispn-b, port: 11222}]}]   # backups, in order

``connection`` may instead name the primary servers as URLs, credentials and the cache
included: ``http://app:secret@ispn:11222/cache`` (``https://`` for TLS), a list of them
or a comma-separated string.

cachekit speaks Infinispan's REST API v2, which the server serves on its single port beside
Hot Rod, so the section's Hot Rod options that have no REST counterpart are *ignored*: they
are listed in :attr:`InfinispanConnectionSpec.ignored` and the store logs them once when it
is built. The SASL mechanism becomes an HTTP scheme: ``PLAIN`` is Basic, ``DIGEST-MD5`` and
the ``SCRAM-*`` mechanisms are Digest (REST has no SCRAM), ``OAUTHBEARER`` a bearer token,
``EXTERNAL`` the TLS client certificate of ``ssl.clientAuth``; without a mechanism,
Digest. Nothing here connects anywhere or imports a store or a driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import unquote, urlsplit

from cachekit.config.masking import redact
from cachekit.errors import ConfigError

if TYPE_CHECKING:
    from cachekit.config.schema import CacheConfig, InfinispanConfig, InfinispanServer

__all__ = [
    "DEFAULT_CACHE_NAME",
    "DEFAULT_PORT",
    "AuthScheme",
    "InfinispanConnectionSpec",
    "InfinispanEndpoint",
    "parse_infinispan_connection",
]

DEFAULT_PORT: Final = 11222
DEFAULT_CACHE_NAME: Final = "cache"
AuthScheme = Literal["none", "basic", "digest", "bearer", "client-cert"]

_SECTION: Final = "backend.cache"
_PATH: Final = f"{_SECTION}.infinispan"
_SCHEMES: Final = {
    None: "digest",
    "PLAIN": "basic",
    "DIGEST-MD5": "digest",
    "SCRAM-SHA-1": "digest",
    "SCRAM-SHA-256": "digest",
    "SCRAM-SHA-384": "digest",
    "SCRAM-SHA-512": "digest",
    "OAUTHBEARER": "bearer",
    "EXTERNAL": "client-cert",
}
# Hot Rod options of Backstage's section with no REST counterpart: (path, why)
_HOT_ROD_ONLY: Final = (
    ("version", "the Hot Rod protocol version"),
    ("maxRetries", "Hot Rod retries (cachekit fails over to the next server instead)"),
    ("topologyUpdates", "Hot Rod topology updates"),
    ("mediaType", "values are msgpack bytes, sent as application/octet-stream"),
    ("dataFormat", "values are msgpack bytes, sent as application/octet-stream"),
    ("authentication.authzid", "REST has no SASL authorization id"),
    ("ssl.secureProtocol", "the TLS version is negotiated"),
    ("ssl.sniHostName", "the SNI name is the server's host name"),
    ("ssl.cryptoStore", "give ssl.trustCerts and ssl.clientAuth as PEM files"),
)


@dataclass(frozen=True)
class InfinispanEndpoint:
    """One server the store may send requests to.

    :param scheme: ``http`` or ``https``.
    :param host: host name or IP address.
    :param port: the server's single port (REST beside Hot Rod).
    :param cluster: ``None`` for the primary cluster, else the backup cluster's name.
    """

    scheme: str
    host: str
    port: int = DEFAULT_PORT
    cluster: str | None = None

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``scheme://host:port``."""
        return f"{self.scheme}://{self.address}"


@dataclass(frozen=True)
class InfinispanConnectionSpec:
    """Everything the Infinispan store needs to reach its servers.

    :param endpoints: the primary cluster's servers, then each backup cluster's, in order.
    :param cache_name: the cache the entries live in (it must exist on the server).
    :param auth: how requests authenticate (see the module documentation).
    :param username: the user of ``basic`` / ``digest``.
    :param password: its password (never shown in ``repr``, messages or logs).
    :param token: the bearer token (never shown).
    :param trust_certs: PEM files of the CAs to trust (``https``; default: the system's).
    :param client_cert: PEM certificate for TLS client authentication.
    :param client_key: its PEM key.
    :param client_key_password: the key's passphrase (never shown).
    :param connect_timeout: seconds to open a connection.
    :param timeout: seconds to wait for an answer.
    :param failure_threshold: failures in a row that open the circuit breaker.
    :param cooldown: seconds the breaker stays open before one call probes the servers.
    :param max_connections: connections per server at most; callers beyond that wait for
        one, up to ``connect_timeout + timeout``.
    :param generation_refresh: seconds a scope's generations are trusted in a process.
    :param ignored: config paths given that cachekit's REST client does not use, each with
        the reason (logged once by the store).
    :raises ValueError: no endpoint, or a number that is not positive.
    """

    endpoints: tuple[InfinispanEndpoint, ...]
    cache_name: str = DEFAULT_CACHE_NAME
    auth: AuthScheme = "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    trust_certs: tuple[str, ...] = ()
    client_cert: str | None = None
    client_key: str | None = None
    client_key_password: str | None = field(default=None, repr=False)
    connect_timeout: float = 0.25
    timeout: float = 0.5
    failure_threshold: int = 3
    cooldown: float = 2.0
    max_connections: int = 50
    generation_refresh: float = 1.0
    ignored: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("an infinispan connection needs at least one server")
        if not self.cache_name:
            raise ValueError("cache_name must not be empty")
        for label, number in (
            ("connect_timeout", self.connect_timeout),
            ("timeout", self.timeout),
            ("failure_threshold", self.failure_threshold),
            ("cooldown", self.cooldown),
            ("max_connections", self.max_connections),
            ("generation_refresh", self.generation_refresh),
        ):
            if not number > 0:
                raise ValueError(f"{label} must be positive, got {number!r}")

    @property
    def target(self) -> str:
        """Where the store connects, for logs and ``repr`` (no secrets):
        ``http://a:11222,b:11222 cache 'cache' (digest as app); backup site-b: c:11222``."""
        primary = [e for e in self.endpoints if e.cluster is None]
        text = f"{primary[0].scheme}://{','.join(e.address for e in primary)}"
        text += f" cache {self.cache_name!r}"
        if self.auth in ("basic", "digest"):
            text += f" ({self.auth} as {self.username})"
        elif self.auth != "none":
            text += f" ({self.auth})"
        backups: dict[str, list[str]] = {}
        for endpoint in self.endpoints:
            if endpoint.cluster is not None:
                backups.setdefault(endpoint.cluster, []).append(endpoint.address)
        for name, addresses in backups.items():
            text += f"; backup {name}: {','.join(addresses)}"
        return text


def _endpoints(
    servers: tuple[InfinispanServer, ...], scheme: str, cluster: str | None
) -> list[InfinispanEndpoint]:
    return [InfinispanEndpoint(scheme, server.host, server.port, cluster) for server in servers]


def _url_endpoints(
    value: object, path: str
) -> tuple[list[InfinispanEndpoint], str | None, str | None, str | None]:
    """The endpoints, cache name and credentials of ``connection`` URLs."""
    if isinstance(value, str):
        items: list[tuple[str, object]] = [(path, part.strip()) for part in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [(f"{path}[{i}]", item) for i, item in enumerate(value)]
    else:
        raise ConfigError(
            "expected an http(s):// URL of an Infinispan server, or a list of them (or leave "
            "connection out and list infinispan.servers)",
            path=path,
        )
    endpoints: list[InfinispanEndpoint] = []
    cache = username = password = None
    for item_path, item in items:
        if not isinstance(item, str) or not item.startswith(("http://", "https://")):
            shown = redact(item) if isinstance(item, str) else repr(item)
            raise ConfigError(
                f"expected an http(s):// URL such as http://user:password@ispn:11222/cache, "
                f"got {shown!r}",
                path=item_path,
            )
        parts = urlsplit(item)
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ConfigError(f"invalid port in {redact(item)!r}", path=item_path) from None
        if not parts.hostname:
            raise ConfigError(f"{redact(item)!r} names no host", path=item_path)
        endpoints.append(InfinispanEndpoint(parts.scheme, parts.hostname, port))
        cache = unquote(parts.path.strip("/")) or cache
        if parts.username:
            username = unquote(parts.username)
            password = unquote(parts.password) if parts.password else None
    return endpoints, cache, username, password


def _ignored(section: InfinispanConfig) -> tuple[str, ...]:
    """The Hot Rod-only options ``section`` sets to something other than their default."""
    from cachekit.config.schema import InfinispanConfig

    default = InfinispanConfig()
    found = []
    for dotted, why in _HOT_ROD_ONLY:
        given, standard = section, default
        for part in dotted.split("."):
            name = next(f.name for f in fields(given) if f.metadata.get("key") == part)
            given, standard = getattr(given, name), getattr(standard, name)
        if given != standard:
            found.append(f"{_PATH}.{dotted} ({why})")
    return tuple(found)


def parse_infinispan_connection(config: CacheConfig) -> InfinispanConnectionSpec:
    """The Infinispan spec of a parsed ``backend.cache`` section (``infinispan``,
    ``connection``, ``timeouts``, ``circuitBreaker``).

    :raises ConfigError: naming the config path at fault.
    """
    section = config.infinispan
    auth = section.authentication
    ssl = section.ssl
    scheme = "https" if ssl.enabled else "http"
    cache = section.cache_name
    username, password = auth.user_name, auth.password
    if config.connection is not None:
        primary, url_cache, url_user, url_password = _url_endpoints(
            config.connection, f"{_SECTION}.connection"
        )
        cache = cache or url_cache
        if url_user is not None:
            username, password = url_user, url_password
    else:
        primary = _endpoints(section.servers, scheme, None) or [
            InfinispanEndpoint(scheme, "127.0.0.1")
        ]
    endpoints = list(primary)
    for i, cluster in enumerate(section.clusters):
        name = cluster.name or f"clusters[{i}]"
        endpoints += _endpoints(cluster.servers, scheme, name)
    scheme_of_auth: AuthScheme = "none"
    if auth.enabled or (config.connection is not None and username is not None):
        scheme_of_auth = _SCHEMES[auth.sasl_mechanism]  # type: ignore[assignment]
        _check_credentials(scheme_of_auth, username, password, auth.token, ssl.client_auth)
    client_auth = ssl.client_auth
    return InfinispanConnectionSpec(
        tuple(endpoints),
        cache or DEFAULT_CACHE_NAME,
        scheme_of_auth,
        username=username,
        password=password,
        token=auth.token,
        trust_certs=ssl.trust_certs,
        client_cert=client_auth.cert if client_auth else None,
        client_key=client_auth.key if client_auth else None,
        client_key_password=client_auth.passphrase if client_auth else None,
        connect_timeout=config.timeouts.connect,
        timeout=config.timeouts.operation,
        failure_threshold=config.circuit_breaker.failure_threshold,
        cooldown=config.circuit_breaker.cooldown,
        max_connections=section.max_connections,
        generation_refresh=section.generation_refresh,
        ignored=_ignored(section),
    )


def _check_credentials(
    scheme: AuthScheme,
    username: str | None,
    password: str | None,
    token: str | None,
    client_auth: object,
) -> None:
    path = f"{_PATH}.authentication"
    if scheme in ("basic", "digest") and (not username or password is None):
        raise ConfigError(
            f"authentication is enabled ({scheme}): give userName and password", path=path
        )
    if scheme == "bearer" and not token:
        raise ConfigError("saslMechanism OAUTHBEARER needs a token", path=f"{path}.token")
    if scheme == "client-cert" and client_auth is None:
        raise ConfigError(
            "saslMechanism EXTERNAL authenticates with the TLS client certificate: give "
            "ssl.enabled: true and ssl.clientAuth {cert, key}",
            path=f"{path}.saslMechanism",
        )
