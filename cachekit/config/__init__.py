"""Config: the ``backend.cache`` section of ``app-config.yaml`` as frozen, typed dataclasses.

:mod:`cachekit.config.schema` holds the section's schema and the parser that walks it;
each store's connection options are parsed into a typed spec by a module of their own
beside it (:mod:`cachekit.config.redis`, :mod:`cachekit.config.memcache`,
:mod:`cachekit.config.infinispan`). Nothing here
connects anywhere or imports a store.
"""

from cachekit.config import schema
from cachekit.config.schema import *  # noqa: F403  # the schema's public names, as listed there

__all__ = schema.__all__
