"""Integrations with other libraries, each behind its own extra:

* :mod:`cachekit.contrib.flask`: the ``CacheKit`` Flask extension (``cachekit[flask]``);
* :mod:`cachekit.contrib.starlette`: a FastAPI/Starlette dependency, a lifespan helper and
  ``install()`` (``cachekit[starlette]``);
* :mod:`cachekit.contrib.prometheus`: a collector exporting ``manager.stats()``
  (``cachekit[prometheus]``).

Importing this package imports none of them.
"""
