"""A FastAPI app over a real uvicorn server whose @cached dependency returns a pydantic model,
on a real Redis: the second request is a hit with the same response, and after a redeploy
that adds a required field to the model the old entries are misses, not 500s.

FastAPI needs a newer Starlette than the oldest lane pins: this file runs in the main lane.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pydantic
import pytest
import uvicorn
from fastapi import Depends, FastAPI
from servers import RedisServer

from cachekit import CacheManager, CacheMiddleware, cached
from cachekit.resolvers import header


class Item(pydantic.BaseModel):
    """The model as first deployed."""

    id: int
    name: str
    tags: list[str]


class PricedItem(pydantic.BaseModel):
    """The model after the redeploy: a new required field."""

    id: int
    name: str
    tags: list[str]
    price: float


def app_for(manager: CacheManager, model: type[pydantic.BaseModel], loads: list[int]) -> Any:
    """The catalog app of one deployment: ``GET /items/{item_id}`` answers the model a
    @cached dependency loads (``loads`` records each computation)."""

    async def load_item(item_id: int) -> Any:
        loads.append(item_id)
        fields: dict[str, Any] = {"id": item_id, "name": f"item {item_id}", "tags": ["a", "b"]}
        if "price" in model.model_fields:
            fields["price"] = 9.5
        return model(**fields)

    load_item.__annotations__["return"] = model  # -> Item, or -> PricedItem after the redeploy
    dependency = cached(namespace="items", ttl=300)(load_item)

    api = FastAPI()

    @api.get("/items/{item_id}")
    # a default, not Annotated[...]: this module's annotations are strings, and FastAPI
    # resolves them in the module, where the local `dependency` is not
    async def get_item(item: Any = Depends(dependency)) -> Any:  # noqa: B008
        assert isinstance(item, model)  # the dependency gave the model back, not a dict
        return item

    return CacheMiddleware(
        api, manager, plugin="catalog", tenant=header("X-Tenant-ID"), cache_header=True
    )


@contextlib.contextmanager
def uvicorn_serving(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn from a thread, lifespan on: the middleware closes the
    store's connections in the server's loop at shutdown (tests/test_asgi.py serves
    lifespan-less apps the same way)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.01)
            assert thread.is_alive(), "uvicorn did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def redis_manager(server: RedisServer) -> CacheManager:
    return CacheManager.from_config(
        {"backend": {"cache": {"store": "redis", "connection": server.url}}}
    )


def test_cached_pydantic_dependency_over_http(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The second request is a hit with an identical response; after a redeploy whose model
    gained a required field, the old entry is a miss (one warning), the response is the new
    model, and the next request is a hit again."""
    tenant = {"X-Tenant-ID": uuid.uuid4().hex}
    first_loads: list[int] = []
    manager = redis_manager(redis_server)
    with uvicorn_serving(app_for(manager, Item, first_loads)) as url, httpx.Client() as http:
        miss = http.get(f"{url}/items/7", headers=tenant)
        hit = http.get(f"{url}/items/7", headers=tenant)
    manager.close()
    assert miss.status_code == 200
    assert miss.json() == {"id": 7, "name": "item 7", "tags": ["a", "b"]}
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("MISS", "HIT")
    assert hit.content == miss.content
    assert first_loads == [7]

    # the redeploy: another app, another manager, the same Redis and the same entries
    second_loads: list[int] = []
    manager = redis_manager(redis_server)
    with (
        caplog.at_level(logging.WARNING, logger="cachekit"),
        uvicorn_serving(app_for(manager, PricedItem, second_loads)) as url,
        httpx.Client() as http,
    ):
        stale = http.get(f"{url}/items/7", headers=tenant)
        again = http.get(f"{url}/items/7", headers=tenant)
    manager.close()
    assert stale.status_code == 200
    assert stale.json() == {"id": 7, "name": "item 7", "tags": ["a", "b"], "price": 9.5}
    assert (stale.headers["X-Cache"], again.headers["X-Cache"]) == ("MISS", "HIT")
    assert again.content == stale.content
    assert second_loads == [7]
    warnings = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warnings) == 1
    assert "price" in warnings[0]
