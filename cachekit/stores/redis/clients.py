"""Building the driver's clients from a :class:`~cachekit.config.redis.RedisConnectionSpec`:
standalone (a URL), Cluster (seed nodes) or Sentinel (sentinels and a master name), sync or
asyncio; and closing them.

Every client gets the spec's timeouts, no retries of its own (one failure is one
:class:`~cachekit.errors.StoreUnavailable`; the breaker and the caller decide what next),
raw ``bytes`` replies and :data:`PROTOCOL`.
"""

from __future__ import annotations

import importlib
from typing import Any, Final

from cachekit.config.redis import RedisConnectionSpec
from cachekit.stores.redis.driver import Driver

__all__ = ["PROTOCOL", "ClientFactory", "close_async_client", "close_sync_client"]

PROTOCOL: Final = 2
"""The RESP version the clients speak (see the store's module docstring for why)."""


class ClientFactory:
    """Builds new clients of one spec; each call is a new client with its own pool."""

    __slots__ = ("driver", "spec")

    def __init__(self, spec: RedisConnectionSpec, driver: Driver) -> None:
        self.spec = spec
        self.driver = driver

    def __repr__(self) -> str:
        return f"ClientFactory({self.spec.target!r}, driver={self.driver.module!r})"

    def sync_client(self) -> Any:
        """A new sync client (a sync cluster client discovers the cluster here)."""
        return self._build(asynchronous=False)

    def async_client(self) -> Any:
        """A new asyncio client (bound to the event loop that first uses it)."""
        return self._build(asynchronous=True)

    def node_client(self, host: str, port: int) -> Any:
        """A new sync client on one server (a cluster node), with the spec's credentials, TLS,
        timeouts and options."""
        d = self.driver
        return d.client(
            host=host, port=port, retry=d.no_retry(asynchronous=False), **self._common()
        )

    def _common(self) -> dict[str, Any]:
        spec = self.spec
        options: dict[str, Any] = {
            "socket_timeout": spec.operation_timeout,
            "socket_connect_timeout": spec.connect_timeout,
            "decode_responses": False,
            "protocol": PROTOCOL,
            "max_connections": spec.max_connections,
        }
        if spec.mode != "standalone":  # a URL carries these itself
            options |= {"username": spec.username, "password": spec.password}
            if spec.ssl:
                options["ssl"] = True
            if spec.mode == "sentinel":
                options["db"] = spec.db
        elif spec.username or spec.password or spec.db:  # from a {url: ...} mapping
            options |= {"username": spec.username, "password": spec.password, "db": spec.db}
        if spec.client_name is not None:
            options["client_name"] = spec.client_name
        return options | dict(spec.options)

    def _build(self, *, asynchronous: bool) -> Any:
        spec, d = self.spec, self.driver
        common = self._common()
        if spec.mode == "cluster":
            node = d.async_node if asynchronous else d.node
            cluster = d.async_cluster if asynchronous else d.cluster
            return cluster(
                startup_nodes=[node(host, port) for host, port in spec.nodes],
                **d.cluster_options(asynchronous=asynchronous),
                **(_replica_reads(d) if spec.replica_reads else {}),
                **common,
            )
        retry = d.no_retry(asynchronous=asynchronous)
        client_class = d.async_client if asynchronous else d.client
        if spec.mode == "standalone":
            return client_class.from_url(spec.url, retry=retry, **common)
        manager = self._sentinel(asynchronous=asynchronous)
        class_option = {f"{d.module}_class": client_class}  # redis_class / valkey_class
        return manager.master_for(spec.master_name, **class_option)

    def sentinel(self) -> Any:
        """A new sync ``Sentinel`` of the spec's sentinels (``discover_master``)."""
        return self._sentinel(asynchronous=False)

    def _sentinel(self, *, asynchronous: bool) -> Any:
        spec, d = self.spec, self.driver
        sentinel_class = d.async_sentinel if asynchronous else d.sentinel
        sentinel_options: dict[str, Any] = {
            "socket_timeout": spec.operation_timeout,
            "socket_connect_timeout": spec.connect_timeout,
            "retry": d.no_retry(asynchronous=asynchronous),
            "protocol": PROTOCOL,
        }
        if spec.sentinel_password is not None:
            sentinel_options["password"] = spec.sentinel_password
        return sentinel_class(
            list(spec.sentinels),
            sentinel_kwargs=sentinel_options,
            retry=d.no_retry(asynchronous=asynchronous),
            **self._common(),
        )


def _replica_reads(driver: Driver) -> dict[str, Any]:
    """Cluster-client arguments that spread reads over primaries and replicas (Backstage's
    ``useReplicas``): redis-py's load-balancing strategy, or valkey-py's older flag."""
    strategies = getattr(
        importlib.import_module(f"{driver.module}.cluster"), "LoadBalancingStrategy", None
    )
    if strategies is None:
        return {"read_from_replicas": True}
    return {"load_balancing_strategy": strategies.ROUND_ROBIN}


def close_sync_client(client: Any) -> None:
    """Close a sync client and the pool (and sentinel connections) behind it."""
    pool = getattr(client, "connection_pool", None)
    client.close()
    if pool is not None:  # a pool given to the client (Sentinel) is not closed by close()
        pool.disconnect()
        for sentinel in getattr(getattr(pool, "sentinel_manager", None), "sentinels", ()):
            sentinel.close()


async def close_async_client(client: Any) -> None:
    """Close an asyncio client and the pool (and sentinel connections) behind it."""
    pool = getattr(client, "connection_pool", None)
    await client.aclose()
    if pool is not None:
        await pool.disconnect()
        for sentinel in getattr(getattr(pool, "sentinel_manager", None), "sentinels", ()):
            await sentinel.aclose()
