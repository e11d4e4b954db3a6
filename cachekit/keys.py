"""The key layout: how a (plugin, tenant, namespace, key) tuple becomes one store key.

A full key reads ``{prefix}{plugin}:{tenant}:{namespace}:{key}``:

* ``prefix`` is the store's global prefix (Redis ``redis.client.namespace`` plus its
  separator, Valkey ``keyPrefix``; empty elsewhere).
* ``plugin``, ``tenant`` and ``namespace`` are *segments*: the id with ``%``, ``:``,
  whitespace and control characters percent-encoded, so a segment never contains a raw
  ``:`` and the encoding can be undone. That makes the layout injective: two different
  tuples never produce the same full key, whatever ids, namespaces and keys are chosen.
* The platform scope (``tenant=None``) is written ``%platform``, which no encoded id can
  be (encoding only emits ``%`` followed by two hex digits).
* The default namespace (none bound) is the empty segment, which no named namespace can
  be (empty names are rejected).
* The user's key comes last and is stored as given.

So a key stays readable in ``redis-cli``: ``catalog:acme:users:42``,
``catalog:%platform::settings``.

:class:`KeySelector` describes a set of scopes (one plugin across tenants, one tenant
across plugins, one scope, one namespace) for clears: a store matches keys against it
exactly, and may pre-filter with :meth:`KeySelector.glob` (every glob character of the
ids escaped) or :meth:`KeySelector.literal_prefix`.

Reading a key back — which scope a full key belongs to — is this module's job too
(:func:`scope_of`, :func:`parse_scope`), so the layout is written in one place.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar, Final, NamedTuple
from urllib.parse import unquote
from uuid import UUID

from cachekit.errors import CacheKeyError

__all__ = [
    "ANY",
    "PLATFORM_SEGMENT",
    "SEPARATOR",
    "KeyPart",
    "KeySelector",
    "KeySpace",
    "ScopeIds",
    "check_key",
    "escape_glob",
    "escape_segment",
    "key_text",
    "parse_scope",
    "scope_of",
    "unencodable_key",
    "unescape_segment",
]

SEPARATOR: Final = ":"
PLATFORM_SEGMENT: Final = "%platform"
DEFAULT_NAMESPACE_SEGMENT: Final = ""

_ESCAPES: Final = {ord("%"): "%25", ord(":"): "%3A"} | {
    c: f"%{c:02X}" for c in (*range(0x21), 0x7F)
}
_GLOB_ESCAPES: Final = {ord(c): "\\" + c for c in "*?[]\\^"}


class _Any(enum.Enum):
    """Wildcard marker for :class:`KeySelector` fields."""

    ANY = "ANY"

    def __repr__(self) -> str:
        return "cachekit.keys.ANY"


ANY: Final = _Any.ANY


def escape_segment(value: str, what: str = "id") -> str:
    """Encode a plugin id, tenant id or namespace as one key segment.

    :raises CacheKeyError: ``value`` is not a non-empty ``str`` of valid unicode.
    """
    if type(value) is not str:
        raise CacheKeyError(f"{what} must be a str, got {type(value).__name__}: {value!r}")
    if not value:
        raise CacheKeyError(f"{what} must not be empty")
    if not value.isascii():
        _check_encodable(value, what)
    return _escape(value)


def _check_encodable(text: str, what: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise unencodable_key(exc, what) from None


def unencodable_key(exc: UnicodeEncodeError, what: str = "cache key") -> CacheKeyError:
    """The error for a key or id a store could not encode (a lone surrogate): stores
    encode keys as UTF-8, which has no form for one."""
    bad = exc.object[exc.start : exc.end]
    return CacheKeyError(
        f"{what} {exc.object!r} holds a lone surrogate ({bad!r} at {exc.start}), which is not "
        "valid unicode and no store can encode; fix the text where it is decoded (for "
        "example bytes.decode(errors='replace') instead of 'surrogateescape')"
    )


@functools.lru_cache(maxsize=4096)
def _escape(value: str) -> str:
    return value.translate(_ESCAPES)


def unescape_segment(segment: str) -> str:
    """The id (or namespace) a segment encodes: the inverse of :func:`escape_segment`.

    Never raises: a segment this module did not write decodes to its best reading
    (undecodable bytes as surrogate escapes).
    """
    return unquote(segment, errors="surrogateescape")


def _tenant_segment(tenant: str | None) -> str:
    return PLATFORM_SEGMENT if tenant is None else escape_segment(tenant, "tenant id")


def _namespace_segment(namespace: str | None) -> str:
    if namespace is None:
        return DEFAULT_NAMESPACE_SEGMENT
    return escape_segment(namespace, "namespace")


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid user key (a non-empty ``str`` of valid unicode).

    :raises CacheKeyError: otherwise.
    """
    if type(key) is not str:
        raise CacheKeyError(
            f"cache keys must be str, got {type(key).__name__}: {key!r}; "
            "convert it (for example str(key)) before calling the cache"
        )
    if not key:
        raise CacheKeyError("cache keys must not be empty")
    if not key.isascii():
        _check_encodable(key, "cache key")
    return key


KeyPart = str | int | float | Decimal | UUID | enum.Enum
"""A scalar that can stand for a key or a part of one (a user id, a UUID, a client
address): see :func:`key_text`."""

_TEXT_TYPES: Final = (str, int, float, Decimal, UUID)


def key_text(value: object) -> str | None:
    """The stable text of a scalar key part, or ``None`` when ``value`` has none.

    ``str``, ``int`` (and ``bool``), ``float``, ``Decimal`` and ``UUID`` give ``str(value)``;
    an ``Enum`` of those gives its value's text (an enum's own text changed across Python
    versions). Anything else, whose text may be its address, gives ``None``.
    """
    if isinstance(value, enum.Enum):
        value = value.value
    return str(value) if isinstance(value, _TEXT_TYPES) else None


def escape_glob(text: str) -> str:
    """Escape Redis glob characters (``* ? [ ] \\ ^``) so ``text`` matches only itself."""
    return text.translate(_GLOB_ESCAPES)


def scope_of(full_key: str, prefix_length: int = 0) -> str:
    """The scope part of a full key: everything up to and including the namespace's ``:``.

    :raises ValueError: ``full_key`` is not laid out by this module.
    """
    i = full_key.index(SEPARATOR, prefix_length)
    i = full_key.index(SEPARATOR, i + 1)
    return full_key[: full_key.index(SEPARATOR, i + 1) + 1]


class ScopeIds(NamedTuple):
    """The decoded (plugin, tenant, namespace) of a scope: ``tenant`` ``None`` is the
    platform scope, ``namespace`` ``None`` the default namespace."""

    plugin: str
    tenant: str | None
    namespace: str | None


def _segments(full_key: str, prefix: str) -> list[str] | None:
    """The encoded plugin, tenant and namespace segments and the rest of a full key (or of
    a scope prefix, whose rest is empty), or ``None`` when it is not laid out under
    ``prefix`` by this module."""
    if not full_key.startswith(prefix):
        return None
    parts = full_key[len(prefix) :].split(SEPARATOR, 3)
    return parts if len(parts) == 4 else None


def parse_scope(full_key: str, prefix: str = "") -> ScopeIds:
    """The scope a full key (or a scope prefix, as :func:`scope_of` returns) belongs to,
    its ids decoded.

    :param prefix: the store's global prefix the key starts with.
    :raises ValueError: ``full_key`` is not laid out by this module under ``prefix``.
    """
    parts = _segments(full_key, prefix)
    if parts is None:
        raise ValueError(f"not a cachekit key under prefix {prefix!r}: {full_key!r}")
    plugin, tenant, namespace, _ = parts
    return ScopeIds(
        unescape_segment(plugin),
        None if tenant == PLATFORM_SEGMENT else unescape_segment(tenant),
        unescape_segment(namespace) if namespace != DEFAULT_NAMESPACE_SEGMENT else None,
    )


@dataclass(frozen=True, slots=True)
class KeySpace:
    """Builds full keys and selectors under one global ``prefix``."""

    prefix: str = ""
    tenants: ClassVar[bool] = True
    """Scopes may have a tenant (not so in :class:`cachekit.backstage.BackstageKeySpace`)."""

    def scope_prefix(self, plugin: str, tenant: str | None, namespace: str | None) -> str:
        """The prefix shared by every key of one (plugin, tenant, namespace).

        :raises CacheKeyError: an id or the namespace is empty or not a ``str``.
        """
        return (
            f"{self.prefix}{escape_segment(plugin, 'plugin id')}{SEPARATOR}"
            f"{_tenant_segment(tenant)}{SEPARATOR}{_namespace_segment(namespace)}{SEPARATOR}"
        )

    def full_key(self, plugin: str, tenant: str | None, namespace: str | None, key: str) -> str:
        """The store key of ``key`` in one (plugin, tenant, namespace).

        :raises CacheKeyError: an id, the namespace or the key is invalid.
        """
        return self.scope_prefix(plugin, tenant, namespace) + check_key(key)

    def selector(
        self,
        plugin: str | _Any = ANY,
        tenant: str | _Any | None = ANY,
        namespace: str | _Any | None = ANY,
    ) -> KeySelector:
        """A selector of the scopes matching the given ids (:data:`ANY` matches all).

        ``tenant=None`` selects the platform scope, ``namespace=None`` the default namespace.
        """
        return KeySelector(
            prefix=self.prefix,
            plugin=None if plugin is ANY else escape_segment(plugin, "plugin id"),
            tenant=None if tenant is ANY else _tenant_segment(tenant),
            namespace=None if namespace is ANY else _namespace_segment(namespace),
        )


@dataclass(frozen=True, slots=True)
class KeySelector:
    """A set of scopes, as encoded segments; ``None`` in a field matches every segment."""

    prefix: str
    plugin: str | None
    tenant: str | None
    namespace: str | None

    def matches(self, full_key: str) -> bool:
        """Whether ``full_key`` (or a scope prefix) belongs to a selected scope."""
        parts = _segments(full_key, self.prefix)
        if parts is None:
            return False
        return (
            (self.plugin is None or parts[0] == self.plugin)
            and (self.tenant is None or parts[1] == self.tenant)
            and (self.namespace is None or parts[2] == self.namespace)
        )

    def scope_of(self, full_key: str) -> str:
        """The scope prefix of a key this selector matched (see :func:`scope_of`)."""
        return scope_of(full_key, len(self.prefix))

    def parse_scope(self, scope: str) -> ScopeIds:
        """The ids of a scope prefix :meth:`scope_of` returned (see :func:`parse_scope`)."""
        return parse_scope(scope, self.prefix)

    def literal_prefix(self) -> str:
        """The longest key prefix every selected key starts with."""
        out = self.prefix
        for segment in (self.plugin, self.tenant, self.namespace):
            if segment is None:
                return out
            out += segment + SEPARATOR
        return out

    def glob(self) -> str:
        """A Redis ``MATCH`` pattern covering every selected key (and possibly more:
        confirm each candidate with :meth:`matches`). Glob characters are escaped."""
        segments = [self.plugin, self.tenant, self.namespace]
        while segments and segments[-1] is None:
            segments.pop()  # a trailing wildcard segment is covered by the final '*'
        parts = [escape_glob(self.prefix)]
        parts += [("*" if s is None else escape_glob(s)) + SEPARATOR for s in segments]
        return "".join(parts) + "*"
