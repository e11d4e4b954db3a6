"""Which client library speaks to the server, and what its exceptions mean to cachekit.

``store: redis`` uses redis-py; ``store: valkey`` uses valkey-py when it is installed, else
redis-py. The two share one API (valkey-py is a fork): only the module and a few class
names differ, so the store loads the classes it needs by name, once per library, through
the libraries' public modules.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from cachekit.errors import (
    CachekitError,
    CacheValueError,
    StoreError,
    StoreTimeout,
    StoreUnavailable,
)

__all__ = ["Driver", "load_driver", "module_for"]

_VALUE_ERROR_TEXT: Final = ("not an integer", "overflow")


@dataclass(frozen=True)
class Driver:
    """The classes of one client library (redis-py or valkey-py) that the store uses, and
    its exception classes sorted by what they mean to cachekit."""

    module: str
    client: Any
    async_client: Any
    cluster: Any
    async_cluster: Any
    node: Any
    async_node: Any
    sentinel: Any
    async_sentinel: Any
    retry: Any
    async_retry: Any
    no_backoff: Any
    catch: tuple[type[BaseException], ...]
    """Everything a call may raise that the store maps (the library's root errors, OSError)."""
    timeout: tuple[type[BaseException], ...]
    auth: tuple[type[BaseException], ...]
    unavailable: tuple[type[BaseException], ...]
    response: type[BaseException]
    no_script: type[BaseException]

    def no_retry(self, *, asynchronous: bool) -> Any:
        """A retry policy that does not retry (the breaker and the caller decide)."""
        retry_class = self.async_retry if asynchronous else self.retry
        return retry_class(self.no_backoff(), 0)

    def cluster_options(self, *, asynchronous: bool) -> dict[str, Any]:
        """Cluster-client arguments that switch the library's own retries off."""
        options: dict[str, Any] = {"retry": self.no_retry(asynchronous=asynchronous)}
        if self.module == "valkey":  # valkey-py still counts retries in these
            # ...but its asyncio cluster pipeline runs range(attempts) times: 0 would never
            # send anything, so it gets 1 (one retry after a topology refresh).
            options["cluster_error_retry_attempts"] = 1 if asynchronous else 0
            if asynchronous:
                options["connection_error_retry_attempts"] = 0
        return options

    def translate(self, exc: BaseException, store: str) -> CachekitError:
        """The cachekit error for one of this library's exceptions.

        Timeouts become :class:`StoreTimeout`; refused or lost connections, authentication
        failures, cluster-down and read-only replicas (a Sentinel failover in progress)
        :class:`StoreUnavailable`; the server refusing an increment of a non-integer
        :class:`CacheValueError`; anything else a plain :class:`StoreError`.
        """
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, self.timeout):
            return StoreTimeout(f"{store} store did not answer in time: {detail}", store=store)
        if isinstance(exc, self.auth):
            return StoreUnavailable(
                f"{store} store: authentication failed ({detail}); check the username and "
                "password in backend.cache.connection",
                store=store,
            )
        if isinstance(exc, self.unavailable):
            return StoreUnavailable(f"{store} store is unavailable: {detail}", store=store)
        if isinstance(exc, self.response) and any(t in detail for t in _VALUE_ERROR_TEXT):
            return CacheValueError(f"{store} store refused the value: {detail}")
        return StoreError(f"{store} store failed: {detail}", store=store)


@cache
def load_driver(module: str) -> Driver:
    """Load ``redis`` or ``valkey`` (the class names differ only by that word)."""
    title = "Valkey" if module == "valkey" else "Redis"
    imp = importlib.import_module
    ex = imp(f"{module}.exceptions")
    cluster_exception = getattr(ex, f"{title}ClusterException")
    return Driver(
        module=module,
        client=getattr(imp(module), title),
        async_client=getattr(imp(f"{module}.asyncio"), title),
        cluster=getattr(imp(f"{module}.cluster"), f"{title}Cluster"),
        async_cluster=getattr(imp(f"{module}.asyncio.cluster"), f"{title}Cluster"),
        node=imp(f"{module}.cluster").ClusterNode,
        async_node=imp(f"{module}.asyncio.cluster").ClusterNode,
        sentinel=imp(f"{module}.sentinel").Sentinel,
        async_sentinel=imp(f"{module}.asyncio.sentinel").Sentinel,
        retry=imp(f"{module}.retry").Retry,
        async_retry=imp(f"{module}.asyncio.retry").Retry,
        no_backoff=imp(f"{module}.backoff").NoBackoff,
        catch=(getattr(ex, f"{title}Error"), cluster_exception, OSError),
        timeout=(ex.TimeoutError, TimeoutError),
        auth=(ex.AuthenticationError, ex.AuthenticationWrongNumberOfArgsError),
        unavailable=(
            ex.ConnectionError,
            ex.ClusterError,
            ex.TryAgainError,
            ex.ReadOnlyError,
            cluster_exception,
            OSError,
        ),
        response=ex.ResponseError,
        no_script=ex.NoScriptError,
    )


def module_for(store_name: str) -> str:
    """The library a store name uses: ``valkey`` for ``store: valkey`` when installed."""
    if store_name == "valkey" and importlib.util.find_spec("valkey") is not None:
        return "valkey"
    return "redis"
