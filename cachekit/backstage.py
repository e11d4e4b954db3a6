"""Sharing a Redis store with Backstage: its key layout and its value encoding, opt in.

``keyLayout: backstage`` writes and reads keys as Backstage's cache service does on Redis,
and ``valueFormat: keyv-json`` encodes values as its keyv stores do, so a Python host and a
Backstage backend can read each other's entries while a backend moves over. Both follow the
published source, not the docs:

* **Keys** (``packages/backend-defaults/src/entrypoints/cache/CacheManager.ts``,
  ``CacheClient.ts``; ``@keyv/redis`` ``src/index.ts``). The cache client first
  *normalizes* the key: the base64 of its UTF-8 bytes, or — when that is 200 characters or
  more — the base64 of its SHA-256 digest. The manager gives keyv the namespace
  ``{redis.client.namespace}{keyPrefixSeparator}{pluginId}`` (just ``{pluginId}`` without a
  namespace) with ``useKeyPrefix: false``, and ``@keyv/redis`` writes
  ``{namespace}{keyPrefixSeparator}{normalized key}``. So key ``test:key`` of plugin
  ``catalog`` under namespace ``my-app`` is ``my-app:catalog:dGVzdDprZXk=``.
* **Values** (keyv ``src/index.ts`` ``set``, ``@keyv/serialize`` ``src/index.ts``). keyv
  stores ``{"value": <value>, "expires": <ms since the epoch>}`` (``expires`` only with a
  TTL) as JSON, a ``Buffer`` as the string ``":base64:<base64>"`` and every other string
  that starts with ``:`` with one more ``:`` in front; ``@keyv/redis`` sets it with ``PX``.

What the layout gives up, checked at start-up rather than discovered later:

* **Tenants.** Backstage has none: every tenant of a plugin would share the plugin's keys,
  so a scope with a tenant is a :class:`~cachekit.errors.ConfigError` (a middleware with a
  tenant resolver, ``for_plugin(..., tenant=...)``, ``manager.clear(tenant=...)``).
* **Injective namespaces.** A namespace is part of the key, as a Backstage plugin would
  write it by hand: key ``42`` in namespace ``users`` is Backstage's key ``users:42``.
* **Integers as counters.** keyv-json writes ``5`` as ``{"value":5}``, which ``INCRBY``
  cannot add to: ``incr`` works on keys it creates (stored as cachekit's decimal form,
  which Backstage reads as a miss) and raises :class:`~cachekit.errors.CacheValueError` on
  a value written by ``set``.

**Clear** follows ``@keyv/redis``'s ``clear()`` for a plugin: ``SCAN MATCH
{namespace}{sep}{plugin}{sep}*`` and ``UNLINK`` (``DEL`` with ``useUnlink: false``) in
batches of ``clearBatchSize``. A namespace's clear decodes each of the plugin's keys and
removes those under ``{namespace}:``; a key long enough to have been hashed cannot be
read back and is left to expire.

cachekit writes ``{"value": ...}`` without ``expires``: Redis expires the entry by its
``PX`` TTL, the same moment keyv's ``expires`` names, and keyv reads an entry without one
as never expiring client-side. It reads ``expires`` back without checking it, for the same
reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

from cachekit.cache import Cache
from cachekit.codec import Codec, DecodeError, parse_int
from cachekit.errors import CacheKeyError, CacheValueError, ConfigError
from cachekit.keys import ANY, KeySelector, KeySpace, ScopeIds, check_key, escape_glob

if TYPE_CHECKING:
    from cachekit.config import CacheConfig
    from cachekit.durations import TTL
    from cachekit.keys import _Any

__all__ = [
    "BackstageCache",
    "BackstageKeySpace",
    "BackstageSelector",
    "KeyvJsonCodec",
    "normalize_key",
]

_HASHED_FROM: Final = 200  # CacheClient.getNormalizedKey: base64 this long or longer is hashed
# What a normalized key can be: base64 (standard alphabet, padded) shorter than 200
# characters, or the 44 characters of a base64 SHA-256 digest.
_NORMALIZED: Final = re.compile(r"[A-Za-z0-9+/]{0,196}={0,2}")
_MAX_SAFE_INTEGER: Final = 2**53 - 1  # a JavaScript number holds integers exactly up to here
_MAX_DEPTH: Final = 64
_NO_TENANTS: Final = (
    "keyLayout: backstage has no tenants (Backstage's keys are per plugin, so every tenant "
    "would share them): bind the platform scope (tenant=None), or use keyLayout: cachekit"
)


def normalize_key(text: str) -> str:
    """Backstage's cache key for ``text``: the base64 of its UTF-8 bytes, or of its
    SHA-256 digest when that base64 would be 200 characters or longer."""
    raw = text.encode()
    encoded = base64.b64encode(raw).decode("ascii")
    if len(encoded) < _HASHED_FROM:
        return encoded
    return base64.b64encode(hashlib.sha256(raw).digest()).decode("ascii")


def _key_text(namespace: str | None, key: str) -> str:
    """The normalized key of ``key``, a namespace's name and ``:`` in front when bound."""
    check_key(key)
    return normalize_key(key if namespace is None else f"{namespace}:{key}")


def _plugin_segment(plugin: str, separator: str) -> str:
    if type(plugin) is not str or not plugin:
        raise CacheKeyError(f"plugin id must be a non-empty str, got {plugin!r}")
    if separator in plugin:
        raise CacheKeyError(
            f"plugin id {plugin!r} holds the key separator {separator!r}: under keyLayout: "
            "backstage its keys could not be told from another plugin's"
        )
    return plugin


@dataclass(frozen=True, slots=True)
class BackstageKeySpace(KeySpace):
    """Keys as Backstage writes them: ``{prefix}{plugin}{separator}{normalized key}``.

    :param prefix: ``redis.client.namespace`` plus ``keyPrefixSeparator``, or empty.
    :param separator: ``keyPrefixSeparator``, between the plugin id and the key.
    """

    separator: str = ":"
    tenants: ClassVar[bool] = False
    """Scopes with a tenant are refused (cachekit's own layout has them)."""

    def scope_prefix(self, plugin: str, tenant: str | None, namespace: str | None) -> str:
        """The prefix of every key of ``plugin`` (a namespace goes into the key itself).

        :raises ConfigError: ``tenant`` is not ``None``.
        :raises CacheKeyError: the plugin id is empty or holds the separator.
        """
        if tenant is not None:
            raise ConfigError(_NO_TENANTS, path="backend.cache.keyLayout")
        return f"{self.prefix}{_plugin_segment(plugin, self.separator)}{self.separator}"

    def full_key(self, plugin: str, tenant: str | None, namespace: str | None, key: str) -> str:
        """The Redis key Backstage uses for ``key`` of ``plugin`` (``namespace:key`` when a
        namespace is bound)."""
        return self.scope_prefix(plugin, tenant, namespace) + _key_text(namespace, key)

    def selector(
        self,
        plugin: str | _Any = ANY,
        tenant: str | _Any | None = ANY,
        namespace: str | _Any | None = ANY,
    ) -> BackstageSelector:
        """The keys of ``plugin`` (every plugin's under the prefix with :data:`ANY`), of one
        namespace when ``namespace`` is a name.

        :raises ConfigError: a tenant is named.
        :raises CacheKeyError: ``namespace`` is ``None`` (the default namespace alone cannot
            be told apart in this layout), or a bad plugin id.
        """
        if tenant is not ANY and tenant is not None:
            raise ConfigError(_NO_TENANTS, path="backend.cache.keyLayout")
        if namespace is None:
            raise CacheKeyError(
                "under keyLayout: backstage the default namespace is not kept apart from the "
                "named ones: clear the whole plugin, or one named namespace"
            )
        return BackstageSelector(
            prefix=self.prefix,
            plugin=None if plugin is ANY else _plugin_segment(plugin, self.separator),
            tenant=None,
            namespace=None if namespace is ANY else namespace,
            separator=self.separator,
        )


@dataclass(frozen=True, slots=True)
class BackstageSelector(KeySelector):
    """Backstage-layout keys of one plugin (``plugin`` ``None``: of every plugin), and of
    one namespace (``namespace`` ``None``: all of them; ``tenant`` is always ``None``): the
    Redis store's clear matches keys against it as against any
    :class:`~cachekit.keys.KeySelector`."""

    separator: str = ":"

    def matches(self, full_key: str) -> bool:
        """Whether ``full_key`` is a Backstage-layout key this selector covers (a key of a
        named namespace only if its normalized key can be decoded: see the module)."""
        if not full_key.startswith(self.prefix):
            return False
        plugin, sep, key = full_key[len(self.prefix) :].partition(self.separator)
        if not plugin or not sep or not _NORMALIZED.fullmatch(key):
            return False
        if self.plugin is not None and plugin != self.plugin:
            return False
        if self.namespace is None:
            return True
        try:
            text = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            return False
        return text.startswith(f"{self.namespace}:".encode())

    def scope_of(self, full_key: str) -> str:
        """The plugin prefix of a key this selector matched: ``{prefix}{plugin}{sep}``."""
        plugin = full_key[len(self.prefix) :].partition(self.separator)[0]
        return f"{self.prefix}{plugin}{self.separator}"

    def parse_scope(self, scope: str) -> ScopeIds:
        """The plugin of a prefix :meth:`scope_of` returned (no tenant, no namespace)."""
        return ScopeIds(scope[len(self.prefix) : -len(self.separator)], None, None)

    def literal_prefix(self) -> str:
        """The longest prefix every selected key starts with."""
        if self.plugin is None:
            return self.prefix
        return f"{self.prefix}{self.plugin}{self.separator}"

    def glob(self) -> str:
        """The ``SCAN MATCH`` pattern of ``@keyv/redis``'s clear (glob characters of the ids
        escaped); confirm each key with :meth:`matches`."""
        return escape_glob(self.literal_prefix()) + "*"


class BackstageCache(Cache):
    """A :class:`~cachekit.cache.Cache` whose keys are Backstage's: the key (after
    ``{namespace}:`` when a namespace is bound) normalized as Backstage's cache client does,
    under the plugin's prefix. Built by the manager when ``keyLayout: backstage``; the
    normalization happens here, so caches of cachekit's own layout pay nothing for it."""

    __slots__ = ()

    def _normalized(self, key: str) -> str:
        return _key_text(self._namespace, key)

    def _key(self, key: str) -> str:
        return self._prefix + self._normalized(key)

    def _keys(self, keys: Any) -> tuple[list[str], list[str]]:
        keys = list(keys)
        return keys, [self._key(key) for key in keys]

    def get(self, key: str, default: Any = None, type: Any = None) -> Any:
        """As :meth:`Cache.get <cachekit.cache.Cache.get>`, at Backstage's key."""
        return super().get(self._normalized(key), default, type)

    def incr(self, key: str, delta: int = 1, ttl: TTL | None = None) -> int:
        """As :meth:`Cache.incr <cachekit.cache.Cache.incr>`, at Backstage's key."""
        return super().incr(self._normalized(key), delta, ttl)


# --- values: keyv's JSON ---------------------------------------------------------------


def _js_number(value: float) -> str:
    """``value`` as JavaScript's ``Number.prototype.toString`` writes it (what
    ``JSON.stringify`` uses): the shortest digits that read back, Python's ``repr`` gives
    the same digits, only the notation differs (``2`` for ``2.0``, ``1e-7`` for ``1e-07``,
    ``0.00001`` for ``1e-05``)."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    text = repr(abs(value))
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # value = 0.digits * 10**point
    point = len(whole.lstrip("0")) + int(exponent or 0)
    if not whole.lstrip("0"):  # 0.000123: the leading zeros of the fraction move the point
        point -= len(fraction) - len(fraction.lstrip("0"))
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= point <= 21:
        return sign + digits + "0" * (point - k)
    if 0 < point <= 21:
        return f"{sign}{digits[:point]}.{digits[point:]}"
    if -6 < point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    e = point - 1
    mark = "+" if e >= 0 else "-"
    head = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{sign}{head}e{mark}{abs(e)}"


_JSON_STRING = json.JSONEncoder(ensure_ascii=False).encode  # JSON.stringify's string form


def _index_key(key: str) -> bool:
    """Whether JavaScript orders ``key`` as an array index (such keys come first, in
    numeric order, whatever the insertion order)."""
    return (
        key.isdigit() and key.isascii() and (key == "0" or key[0] != "0") and int(key) < 2**32 - 1
    )


def _to_json(value: Any, depth: int) -> str:
    """``value`` as ``@keyv/serialize`` writes it (``escape`` strings starting with ``:``)."""
    cls = type(value)
    if cls is str:
        return _JSON_STRING(f":{value}" if value.startswith(":") else value)
    if value is None:
        return "null"
    if cls is bool:
        return "true" if value else "false"
    if cls is int:
        if -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
            return str(value)
        raise CacheValueError(
            f"cannot cache int {value} as keyv-json: a JavaScript number holds integers "
            "exactly only up to 2**53 - 1; store it as a str"
        )
    if cls is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise CacheValueError(f"cannot cache float {value} as keyv-json: JSON has no {value}")
        return _js_number(value)
    if cls is bytes:
        return _JSON_STRING(":base64:" + base64.b64encode(value).decode("ascii"))
    if depth >= _MAX_DEPTH:
        raise CacheValueError(f"cannot cache a value nested over {_MAX_DEPTH} levels as keyv-json")
    if cls is list:
        return "[" + ",".join(_to_json(item, depth + 1) for item in value) + "]"
    if cls is dict:
        for key in value:
            if type(key) is not str:
                raise CacheValueError(
                    f"cannot cache a dict with a {type(key).__name__} key as keyv-json: JSON "
                    "object keys are strings"
                )
        indices = sorted((k for k in value if _index_key(k)), key=int)
        keys = indices + [k for k in value if not _index_key(k)] if indices else list(value)
        items = (f"{_JSON_STRING(k)}:{_to_json(value[k], depth + 1)}" for k in keys)
        return "{" + ",".join(items) + "}"
    raise CacheValueError(
        f"cannot cache {cls.__name__} value as keyv-json: it holds JSON values (None, bool, "
        "int, float, str, list, dict with str keys) and bytes; convert it first"
    )


def _revive(value: Any) -> Any:
    """``@keyv/serialize``'s reviver: ``":base64:..."`` strings are bytes, other strings
    lose one leading ``:``."""
    cls = type(value)
    if cls is str:
        if value.startswith(":base64:"):
            return base64.b64decode(value[8:])
        return value[1:] if value.startswith(":") else value
    if cls is list:
        return [_revive(item) for item in value]
    if cls is dict:
        return {key: _revive(item) for key, item in value.items()}
    return value


class KeyvJsonCodec(Codec):
    """Values as Backstage's keyv stores write them (``valueFormat: keyv-json``): see the
    module docstring. Accepts ``None``, ``bool``, ``int`` (within ±2**53 - 1), finite
    ``float``, ``str``, ``bytes``, ``list`` and ``dict`` with ``str`` keys; reads back
    what keyv wrote, and the decimal integers of counters ``incr`` created."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "KeyvJsonCodec()"

    def register(self, *args: Any, **kwargs: Any) -> None:
        """Not available: keyv-json holds JSON values only.

        :raises CacheValueError: always.
        """
        raise CacheValueError(
            "valueFormat: keyv-json holds JSON values only: convert values to them "
            "(or annotate them: type=...) instead of registering a type"
        )

    register_enum = register  # type: ignore[assignment]

    def encode(self, value: Any) -> bytes:
        """``{"value": <value>}`` as keyv's JSON, UTF-8.

        :raises CacheValueError: the value (or something in it) has no keyv-json form.
        """
        try:
            return f'{{"value":{_to_json(value, 0)}}}'.encode()
        except UnicodeEncodeError as exc:
            raise CacheValueError(
                f"cannot cache a str holding a lone surrogate ({exc.object[exc.start : exc.end]!r})"
            ) from None

    def decode(self, data: bytes) -> Any:
        """The value of keyv's ``{"value": ..., "expires": ...}`` (``expires`` is left to
        Redis's TTL), or a counter's decimal integer.

        :raises DecodeError: anything else.
        """
        number = parse_int(data)
        if number is not None:
            return number
        try:
            envelope = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise DecodeError(f"not keyv JSON: {exc}") from None
        if type(envelope) is not dict or "value" not in envelope:
            raise DecodeError('not a keyv entry ({"value": ...})')
        try:
            return _revive(envelope["value"])
        except (binascii.Error, ValueError) as exc:
            raise DecodeError(f"bad :base64: string in a keyv entry: {exc}") from None


# --- the manager's choice, made once ----------------------------------------------------


def layout_for(config: CacheConfig, store_prefix: str) -> BackstageKeySpace:
    """The Backstage key space of a ``keyLayout: backstage`` config on a store whose global
    prefix is ``store_prefix``."""
    return BackstageKeySpace(store_prefix, config.redis.client.key_prefix_separator)
