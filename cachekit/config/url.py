"""One URL for the whole ``backend.cache`` section (:meth:`CacheManager.from_url
<cachekit.host.CacheManager.from_url>`)::

    redis://:pw@cache:6379/0?defaultTtl=5m&namespace=my-app&maxConnections=20
    rediss://cache:6380/0?ssl_ca_certs=/etc/ca.pem     valkey://cache:6379   valkeys://...
    unix:///run/redis.sock?db=0
    memcache://user:pass@h1:11211,h2:11211?maxValueSize=2097152
    memory://?maxEntries=10000

The scheme picks ``store``; the rest of the URL becomes ``connection`` and each query
parameter one ``backend.cache`` key (:data:`QUERY_KEYS`). Query values are read as YAML
reads a plain scalar (``20`` a number, ``false`` a boolean, ``5m`` a string), so a value
means what it means in ``app-config.yaml`` (a bare duration is milliseconds). The section
built here goes through :func:`~cachekit.config.parse_cache_section` like any other: one
parser, one set of checks.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from cachekit.config.masking import redact
from cachekit.config.schema import CacheConfig, config_origin, parse_cache_section
from cachekit.errors import ConfigError

__all__ = ["QUERY_KEYS", "SCHEME_STORES", "cache_section_from_url", "parse_cache_url"]

SCHEME_STORES: Final = {
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "valkey": "valkey",
    "valkeys": "valkey",
    "memcache": "memcache",
    "memcached": "memcache",
    "memory": "memory",
}
"""URL scheme -> ``backend.cache.store``."""

_TEXT: Final = frozenset({"namespace", "keyPrefixSeparator", "keyPrefix", "clientName", "auth"})
"""Query keys whose values stay strings (a namespace ``123`` is not a number)."""

_COMMON: Final = {
    "defaultTtl": ("defaultTtl",),
    "failOpen": ("failOpen",),
    "connectTimeout": ("timeouts", "connect"),
    "operationTimeout": ("timeouts", "operation"),
    "failureThreshold": ("circuitBreaker", "failureThreshold"),
    "cooldown": ("circuitBreaker", "cooldown"),
    "perTenant": ("metrics", "perTenant"),
    "maxSeries": ("metrics", "maxSeries"),
}

_POOL: Final = {  # the Redis/Valkey connection mapping's keys
    "maxConnections": ("connection", "maxConnections"),
    "clientName": ("connection", "clientName"),
}

QUERY_KEYS: Final[Mapping[str, Mapping[str, tuple[str, ...]]]] = {
    "redis": _COMMON
    | {
        "namespace": ("redis", "client", "namespace"),
        "keyPrefixSeparator": ("redis", "client", "keyPrefixSeparator"),
        "clearBatchSize": ("redis", "client", "clearBatchSize"),
        "useUnlink": ("redis", "client", "useUnlink"),
    }
    | _POOL,
    "valkey": _COMMON
    | {
        "keyPrefix": ("valkey", "keyPrefix"),
        "clearBatchSize": ("valkey", "client", "clearBatchSize"),
        "useUnlink": ("valkey", "client", "useUnlink"),
    }
    | _POOL,
    "memcache": _COMMON
    | {
        "auth": ("memcache", "auth"),
        "maxValueSize": ("memcache", "maxValueSize"),
        "generationRefresh": ("memcache", "generationRefresh"),
        "deadRetry": ("memcache", "deadRetry"),
        "maxConnections": ("memcache", "maxConnections"),
    },
    "memory": _COMMON
    | {"maxEntries": ("memory", "maxEntries"), "maxBytes": ("memory", "maxBytes")},
}
"""Per store: query key -> its ``backend.cache`` path."""

_HINTS: Final = {
    ("valkey", "namespace"): "valkey takes keyPrefix, used as given (keyPrefix=my-app:)",
    ("redis", "keyPrefix"): "redis takes namespace (namespace=my-app gives my-app:...)",
}

_INT: Final = re.compile(r"[-+]?[0-9]+")
_FLOAT: Final = re.compile(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


def _scalar(text: str) -> Any:
    """``text`` as YAML reads a plain scalar: null, a boolean, an int, a float or text."""
    lowered = text.lower()
    if lowered in ("", "null", "~"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def _driver_option(store: str, key: str) -> bool:
    """Query keys the Redis driver reads from the URL itself (TLS files, the database)."""
    return store in ("redis", "valkey") and (key == "db" or key.startswith("ssl_"))


def cache_section_from_url(url: object) -> dict[str, Any]:
    """The ``backend.cache`` mapping a URL stands for (not yet checked: see
    :func:`parse_cache_url`).

    :raises ConfigError: not a URL, an unknown scheme, an unknown or repeated query key.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(
            f"expected a URL such as redis://localhost:6379/0, got {url!r}", path="url"
        )
    shown = redact(url)
    scheme = url.partition("://")[0].lower()
    store = SCHEME_STORES.get(scheme)
    if store is None:
        raise ConfigError(
            f"unsupported URL {shown!r}: use {', '.join(f'{s}://' for s in SCHEME_STORES)}",
            path="url",
        )
    parts = urlsplit(url)
    keys = QUERY_KEYS[store]
    section: dict[str, Any] = {"store": store}
    given: set[str] = set()
    passthrough: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in given:
            raise ConfigError(f"{key!r} is given twice in {shown!r}", path=f"url?{key}")
        given.add(key)
        if _driver_option(store, key):
            passthrough.append((key, value))
            continue
        if key not in keys:
            raise _unknown_key(store, key, keys)
        *parents, last = keys[key]
        level = section
        for parent in parents:
            level = level.setdefault(parent, {})
        level[last] = value if key in _TEXT else _scalar(value)
    connection = _connection(store, scheme, parts.netloc, parts.path, passthrough, shown)
    if connection is not None:
        extra = section.pop("connection", None)
        section["connection"] = {"url": connection, **extra} if extra else connection
    return section


def _unknown_key(store: str, key: str, keys: Mapping[str, Any]) -> ConfigError:
    close = difflib.get_close_matches(key, list(keys), n=1)
    hint = _HINTS.get((store, key)) or (f"did you mean {close[0]!r}?" if close else "")
    driver = ", and the driver's db and ssl_* options" if store in ("redis", "valkey") else ""
    return ConfigError(
        f"unknown option {key!r} in a {store} URL{f' ({hint})' if hint else ''}; "
        f"known: {', '.join(keys)}{driver}",
        path=f"url?{key}",
    )


def _connection(
    store: str,
    scheme: str,
    netloc: str,
    path: str,
    passthrough: list[tuple[str, str]],
    shown: str,
) -> str | list[str] | None:
    """``backend.cache.connection`` for the URL's store (``None``: the memory store)."""
    if store == "memory":
        if netloc or path.strip("/"):
            raise ConfigError(f"memory:// takes no host or path, got {shown!r}", path="url")
        return None
    if store == "memcache":
        if path.strip("/"):
            raise ConfigError(f"a memcache URL has no path, got {shown!r}", path="url")
        credentials, at, hosts = netloc.rpartition("@")
        servers = hosts.split(",")
        if at:  # URL credentials apply to every server, percent-decoded as in any URL
            user, _, password = credentials.partition(":")
            prefix = f"{unquote(user)}:{unquote(password)}@"
            servers = [prefix + host if host.strip() else host for host in servers]
        return servers
    # redis, valkey: the driver reads a redis:// URL (valkey-py as well)
    base = {"valkey": "redis", "valkeys": "rediss"}.get(scheme, scheme)
    query = f"?{urlencode(passthrough, safe='/')}" if passthrough else ""
    return f"{base}://{netloc}{path}{query}"


def parse_cache_url(url: object) -> CacheConfig:
    """The :class:`~cachekit.config.CacheConfig` a URL stands for, checked as a
    ``backend.cache`` section is.

    :raises ConfigError: a bad URL or query key (see :func:`cache_section_from_url`), or a
        bad value, naming the ``backend.cache`` key it maps to and the URL (password
        masked).
    """
    section = cache_section_from_url(url)
    with config_origin(f"the URL {redact(str(url))!r}"):
        return parse_cache_section(section)
