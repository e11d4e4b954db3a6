"""The Infinispan store (``store: infinispan``), over Infinispan's REST API v2 with httpx.

Modules: :mod:`~cachekit.stores.infinispan.store` (the store: keys, generations, the
operations), :mod:`~cachekit.stores.infinispan.rest` (the REST requests and replies, no
I/O), :mod:`~cachekit.stores.infinispan.client` (the httpx clients, failover to backup
clusters, the breaker, errors), :mod:`~cachekit.stores.infinispan.locks` (the short locks
on strong counters behind ``incr`` and the other read-modify-writes).
"""

from cachekit.stores.infinispan.store import InfinispanStore

__all__ = ["InfinispanStore"]
