"""The Redis and Valkey store (standalone, Cluster, Sentinel; sync and async).

* :mod:`.store` — :class:`RedisStore`, each operation written once for both halves;
* :mod:`.scripts` — the Lua scripts (counter with TTL, persist, GCRA step);
* :mod:`.driver` — which client library (redis-py or valkey-py) and what its exceptions mean;
* :mod:`.clients` — building the library's clients from a connection spec.

The connection options themselves are parsed by :mod:`cachekit.config.redis`.
"""

from cachekit.stores.redis.store import RedisStore

__all__ = ["RedisStore"]
