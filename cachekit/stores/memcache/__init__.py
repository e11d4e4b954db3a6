"""The Memcache store: memcached servers (one, or several by consistent hashing), plain,
SASL- or ASCII-authenticated, behind one cachekit store.

Modules: :mod:`~cachekit.stores.memcache.store` (the store: routing, generations, counters,
failures), :mod:`~cachekit.stores.memcache.text` (pymemcache, text protocol, ASCII auth),
:mod:`~cachekit.stores.memcache.binary` (our binary protocol with SASL),
:mod:`~cachekit.stores.memcache.pool` (connections never reused after an error),
:mod:`~cachekit.stores.memcache.client` (the per-server interface and error mapping),
:mod:`~cachekit.stores.memcache.ring` (consistent hashing),
:mod:`~cachekit.stores.memcache.generations` (scope generations for ``clear``),
:mod:`~cachekit.stores.memcache.keys` (memcached keys) and
:mod:`~cachekit.stores.memcache.values` (biased integers, expiry). The connection options
are parsed by :mod:`cachekit.config.memcache`.
"""

from cachekit.config.memcache import MemcacheConnectionSpec, MemcacheServer, parse_servers
from cachekit.stores.memcache.store import MemcacheStore

__all__ = ["MemcacheConnectionSpec", "MemcacheServer", "MemcacheStore", "parse_servers"]
