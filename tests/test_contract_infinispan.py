"""The store contract on the Infinispan store: on the in-repo fake of Infinispan's REST API
(plain, with Digest authentication, and failing over from a closed primary port to a backup
cluster), and on a real server when ``CACHEKIT_INFINISPAN_URL`` names one.

No Infinispan server can be installed where the suite runs, so the real-server lane is opt
in: ``CACHEKIT_INFINISPAN_URL=http://user:password@host:11222/cache`` runs the same contract
there (the cache must exist); unset, its tests are skipped with that reason, never passed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from infinispan_fake import TEST_PASSWORD, TEST_USER
from servers import LOOPBACK, free_port

from cachekit.config import parse_cache_section
from cachekit.stores.infinispan import InfinispanStore
from cachekit.testing.contract import StoreContract

REAL_URL = os.environ.get("CACHEKIT_INFINISPAN_URL")
REAL_LANE_SKIP = (
    "CACHEKIT_INFINISPAN_URL is not set: the contract did not run on a real Infinispan server "
    "(set it to http://user:password@host:11222/cache to run it)"
)
HEADROOM = {"timeouts": {"connect": "2s", "operation": "2s"}}  # a busy machine


def _plain(request: pytest.FixtureRequest) -> dict[str, Any]:
    fake = request.getfixturevalue("infinispan_fake")
    return {"infinispan": {"servers": [{"host": fake.host, "port": fake.port}]}}


def _digest(request: pytest.FixtureRequest) -> dict[str, Any]:
    fake = request.getfixturevalue("infinispan_fake_auth")
    authentication = {
        "enabled": True,
        "userName": TEST_USER,
        "password": TEST_PASSWORD,
        "saslMechanism": "DIGEST-MD5",
    }
    servers = [{"host": fake.host, "port": fake.port}]
    return {"infinispan": {"servers": servers, "authentication": authentication}}


def _failover(request: pytest.FixtureRequest) -> dict[str, Any]:
    fake = request.getfixturevalue("infinispan_fake")
    closed = free_port()  # reserved for this run and never bound: connections are refused
    cluster = {"name": "site-b", "servers": [{"host": fake.host, "port": fake.port}]}
    return {"infinispan": {"servers": [{"host": LOOPBACK, "port": closed}], "clusters": [cluster]}}


def _real(request: pytest.FixtureRequest) -> dict[str, Any]:
    if not REAL_URL:
        pytest.skip(REAL_LANE_SKIP)
    return {"connection": REAL_URL}


CONFIGS: dict[str, Callable[[pytest.FixtureRequest], dict[str, Any]]] = {
    "fake": _plain,
    "fake-digest": _digest,
    "fake-failover": _failover,
    "real": _real,
}


class TestInfinispanStoreContract(StoreContract):
    @pytest.fixture(params=list(CONFIGS))
    def store(self, request: pytest.FixtureRequest) -> Iterator[InfinispanStore]:
        section = {"store": "infinispan", **CONFIGS[request.param](request), **HEADROOM}
        store = InfinispanStore.from_config(parse_cache_section(section))
        yield store
        store.close()
