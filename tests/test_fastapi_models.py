"""A FastAPI app over a real uvicorn server whose @cached dependency returns a pydantic model,
on a real Redis: the second request is a hit with the same response, and after a redeploy
that adds a required field to the model the old entries are misses, not 500s.

FastAPI needs a newer Starlette than the oldest lane pins: this file runs in the main lane.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
import pydantic
import pytest
from fastapi import Depends, FastAPI
from http_servers import uvicorn_serving
from servers import RedisServer

from cachekit import cached
from cachekit.host import CacheManager, CacheMiddleware, set_default_manager
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


def redis_manager(server: RedisServer) -> CacheManager:
    return CacheManager.from_config(
        {"backend": {"cache": {"store": "redis", "connection": server.url}}}
    )


def deployment(
    server: RedisServer, model: type[pydantic.BaseModel], tenant: str
) -> tuple[list[httpx.Response], list[int]]:
    """Serve one deployment of the app (its own manager on ``server``, as another process
    would have) and request item 7 twice: the responses, and the ids its dependency
    computed."""
    loads: list[int] = []
    manager = redis_manager(server)
    with (
        uvicorn_serving(app_for(manager, model, loads), lifespan="on") as url,
        httpx.Client() as http,
    ):
        responses = [http.get(f"{url}/items/7", headers={"X-Tenant-ID": tenant}) for _ in "12"]
    set_default_manager(None)  # the middleware registered it: the next deployment is another
    manager.close()
    return responses, loads


def test_cached_pydantic_dependency_over_http(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The second request is a hit with an identical response; after a redeploy whose model
    gained a required field, the old entry is a miss (one warning), the response is the new
    model, and the next request is a hit again."""
    tenant = uuid.uuid4().hex
    (miss, hit), loads = deployment(redis_server, Item, tenant)
    assert miss.status_code == 200
    assert miss.json() == {"id": 7, "name": "item 7", "tags": ["a", "b"]}
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("MISS", "HIT")
    assert hit.content == miss.content
    assert loads == [7]

    # the redeploy: another app and manager, the same Redis, the same tenant and entries
    with caplog.at_level(logging.WARNING, logger="cachekit"):
        (stale, again), loads = deployment(redis_server, PricedItem, tenant)
    assert stale.status_code == 200
    assert stale.json() == {"id": 7, "name": "item 7", "tags": ["a", "b"], "price": 9.5}
    assert (stale.headers["X-Cache"], again.headers["X-Cache"]) == ("MISS", "HIT")
    assert again.content == stale.content
    assert loads == [7]
    warnings = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warnings) == 1
    assert "price" in warnings[0]
