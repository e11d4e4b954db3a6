"""A @cached hit returning a 20-field pydantic model, against cashews and fastapi-cache2.

Run: .venv/bin/python bench/bench_models.py        (about a minute; needs redis-server, the
     `bench` extra and pydantic: pip install -e '.[bench,pydantic]')

One process, one run; this process and its own redis-server are pinned to the same core
(see bench/README.md); cases run round-robin and each ratio is the median of the per-round
ratios against the peer named in the table.

What each case does on a hit, every one of them an ``async def`` returning the model:

* cachekit ``@cached`` annotated ``-> Product``: one store read, msgpack decode, then
  ``Product.model_validate`` of the plain form: a validated, new model on every hit.
* cashews ``@cache`` (its defaults): ``mem://`` keeps the Python object itself and hands
  every caller the same instance (no copy, no validation); on Redis it pickles the model
  and unpickles it on a hit.
* fastapi-cache2 ``@cache`` with its ``JsonCoder`` (``FastAPICache.init`` with its
  ``InMemoryBackend`` / ``RedisBackend``), called as a plain function (no request): JSON
  encoded, and on a hit ``json.loads`` — its ``JsonCoder.decode_as_type`` returns the
  decoded dict, not the model (fastapi-cache2 0.2.x), so it skips the rebuild we pay for.
* the floor: ``Product.model_validate`` of an already decoded dict (no cache at all).

Target (issue 19): the cachekit hit faster than both peers on the same store.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pydantic
import redis.asyncio
from cashews import Cache as Cashews
from fastapi_cache import FastAPICache
from fastapi_cache.backends.inmemory import InMemoryBackend
from fastapi_cache.backends.redis import RedisBackend
from fastapi_cache.coder import JsonCoder
from fastapi_cache.decorator import cache as fastapi_cache

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness import Case, async_case, pin_to_cpu, report, run_rounds  # noqa: E402
from servers import RedisServer  # noqa: E402

from cachekit.context import scope  # noqa: E402
from cachekit.decorators import cached  # noqa: E402
from cachekit.host import CacheManager  # noqa: E402

CORE = "0"
BATCH = 200


class Product(pydantic.BaseModel):
    """20 fields of the kinds an API answers with."""

    id: int
    sku: str
    name: str
    description: str
    price: float
    currency: str
    in_stock: bool
    quantity: int
    weight: float
    width: float
    height: float
    depth: float
    category: str
    brand: str
    rating: float
    reviews: int
    tags: list[str]
    attributes: dict[str, str]
    supplier_id: int | None
    discontinued: bool


def product(item_id: int) -> Product:
    return Product(
        id=item_id,
        sku=f"SKU-{item_id:06d}",
        name="Widget",
        description="A widget of the finest kind, for every purpose.",
        price=19.99,
        currency="EUR",
        in_stock=True,
        quantity=42,
        weight=1.25,
        width=10.0,
        height=4.5,
        depth=2.0,
        category="tools",
        brand="Acme",
        rating=4.6,
        reviews=1289,
        tags=["new", "sale", "popular"],
        attributes={"color": "red", "material": "steel"},
        supplier_id=77,
        discontinued=False,
    )


async def load(item_id: int) -> Product:
    return product(item_id)


def cases(loop: asyncio.AbstractEventLoop, store: str, peers: Cashews) -> list[Case]:
    ours = cached(namespace=f"bench-models-{store}", ttl=300)(load)
    via_cashews = peers(ttl="5m", key=f"{store}:{{item_id}}")(load)
    via_fastapi_cache = fastapi_cache(expire=300, coder=JsonCoder, namespace=store)(load)
    for fn in (ours, via_cashews, via_fastapi_cache):  # fill the caches
        loop.run_until_complete(fn(1))
    hit = loop.run_until_complete(ours(1))
    assert type(hit) is Product, hit  # rebuilt by the return annotation
    assert hit == product(1)
    plain = product(1).model_dump(mode="python")

    async def floor() -> Product:
        return Product.model_validate(plain)

    peer = "cashews @cache"
    other = "fastapi-cache2 @cache (JsonCoder)"
    return [
        async_case(peer, loop, lambda: via_cashews(1), batch=BATCH),
        async_case(other, loop, lambda: via_fastapi_cache(1), batch=BATCH),
        async_case(
            "cachekit @cached -> Product", loop, lambda: ours(1), batch=BATCH, baseline=peer
        ),
        async_case(
            "cachekit @cached -> Product ", loop, lambda: ours(1), batch=BATCH, baseline=other
        ),
        async_case("floor: Product.model_validate(dict)", loop, floor, batch=BATCH, baseline=peer),
    ]


def main() -> None:
    pin_to_cpu(CORE)  # the redis-server started below inherits the pin
    results = []
    loop = asyncio.new_event_loop()
    memory = CacheManager()
    peers = Cashews()
    peers.setup("mem://")
    FastAPICache.init(InMemoryBackend(), prefix="bench")
    with scope(plugin="bench", tenant="acme", manager=memory):
        measured = cases(loop, "memory", peers)
        run_rounds(measured, rounds=15, ops=20_000)
    results.append(report("hit returning a 20-field pydantic model, in-process store", measured))
    server = RedisServer("redis-server", workdir=Path("/tmp/cachekit-bench-models-redis"))
    server.start()
    try:
        config = {"backend": {"cache": {"store": "redis", "connection": server.url}}}
        manager = CacheManager.from_config(config)
        peers = Cashews()
        peers.setup(server.url)  # cashews' Redis backend pickles values
        client = redis.asyncio.Redis.from_url(server.url)
        FastAPICache.reset()  # init() once per process otherwise: a second one is ignored
        FastAPICache.init(RedisBackend(client), prefix="bench")
        with scope(plugin="bench", tenant="acme", manager=manager):
            measured = cases(loop, "redis", peers)
            run_rounds(measured, rounds=15, ops=4_000)
        results.append(report("the same on Redis (same core as the server)", measured))
        loop.run_until_complete(manager.aclose())
        loop.run_until_complete(peers.close())
        loop.run_until_complete(client.aclose())
        manager.close()
    finally:
        server.stop()
    loop.close()
    print("\n\n".join(results))


if __name__ == "__main__":
    main()
