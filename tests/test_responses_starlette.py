"""Response caching (RFC 9111) of Starlette endpoints, over HTTP from a real uvicorn server,
on the memory store and, where the store matters, real Redis and memcached: each test
shows one behaviour of the conformance table in the README."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator

import httpx
import pytest
from http_servers import uvicorn_serving
from responses_apps import SCOPE_HEADERS, Clock, Shop, store_manager

from cachekit.host import CacheManager, set_default_manager

STORES = ["memory", "redis", "memcache"]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _manager(request: pytest.FixtureRequest, kind: str) -> CacheManager:
    redis_server = request.getfixturevalue("redis_server") if kind == "redis" else None
    memcached = request.getfixturevalue("memcached_server") if kind == "memcache" else None
    return store_manager(kind, redis_server, memcached)


@pytest.fixture
def shop(request: pytest.FixtureRequest, clock: Clock) -> Iterator[Shop]:
    """The shop app on the memory store (or the store a test parametrizes as ``store``)."""
    kind = request.param if hasattr(request, "param") else "memory"
    manager = _manager(request, kind)
    if kind != "memory":
        manager.for_plugin("shop", "acme").clear()
        manager.for_plugin("shop", "globex").clear()
        manager.for_plugin("blog", "acme").clear()
        manager.for_plugin("blog", "globex").clear()
    yield Shop(manager, clock)
    set_default_manager(None)
    manager.close()


@pytest.fixture
def http(shop: Shop) -> Iterator[httpx.Client]:
    with (
        uvicorn_serving(shop.app, lifespan="on") as url,
        httpx.Client(base_url=url, headers=SCOPE_HEADERS) as client,
    ):
        yield client


on_every_store = pytest.mark.parametrize("shop", STORES, indirect=True)


@on_every_store
def test_a_get_is_stored_and_served_with_age_and_x_cache(shop: Shop, http: httpx.Client) -> None:
    """The first GET runs the endpoint (X-Cache: MISS), the second is served from the store
    (X-Cache: HIT, Age, the same body and ETag) without running it."""
    first = http.get("/items/1")
    second = http.get("/items/1")
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    assert second.headers["age"] == "0"
    assert second.json() == first.json()
    assert second.headers["etag"] == first.headers["etag"]
    assert shop.calls["item"] == 1


def test_the_query_is_part_of_the_key_in_a_normal_form(shop: Shop, http: httpx.Client) -> None:
    """?q=pear is never served apple's response; ?a=1&b=2 and ?b=2&a=1 are one entry."""
    assert http.get("/items/1?q=apple").json()["q"] == "apple"
    assert http.get("/items/1?q=pear").json()["q"] == "pear"
    assert http.get("/items/1?q=pear").headers["x-cache"] == "HIT"
    http.get("/items/1?a=1&b=2")
    assert http.get("/items/1?b=2&a=1").headers["x-cache"] == "HIT"
    assert shop.calls["item"] == 3


def test_a_head_is_served_from_the_get_entry(shop: Shop, http: httpx.Client) -> None:
    """A HEAD after a GET is a HIT with the GET's headers and no body."""
    got = http.get("/items/1")
    head = http.head("/items/1")
    assert head.headers["x-cache"] == "HIT"
    assert head.headers["etag"] == got.headers["etag"]
    assert head.headers["content-length"] == got.headers["content-length"]
    assert head.content == b""
    assert shop.calls["item"] == 1


def test_other_methods_are_never_cached(shop: Shop, http: httpx.Client) -> None:
    """POSTs run the endpoint every time and carry no X-Cache."""
    for _ in range(2):
        assert "x-cache" not in http.post("/post").headers
    assert shop.calls["post-POST"] == 2


@pytest.mark.parametrize(
    ("code", "stored"),
    [(200, True), (404, True), (410, True), (500, False), (503, False), (206, False)],
)
def test_only_statuses_cacheable_by_default_are_stored(
    shop: Shop, http: httpx.Client, code: int, stored: bool
) -> None:
    """404 and 410 are stored like a 200; 5xx and 206 are not."""
    http.get(f"/status/{code}")
    second = http.get(f"/status/{code}")
    assert second.status_code == code
    assert second.headers["x-cache"] == ("HIT" if stored else "MISS")
    assert shop.calls[f"status{code}"] == (1 if stored else 2)


@pytest.mark.parametrize("directive", ["no-cache", "no-store", "max-age=0"])
def test_request_cache_control_makes_the_cache_ask_the_app(
    shop: Shop, http: httpx.Client, directive: str
) -> None:
    """A request's no-cache, no-store or max-age=0 is answered by the endpoint, not the
    store, though an entry is there."""
    http.get("/items/1")
    answer = http.get("/items/1", headers={"Cache-Control": directive})
    assert answer.json()["n"] == 2
    assert shop.calls["item"] == 2


def test_a_request_no_cache_still_stores_the_fresh_response(shop: Shop, http: httpx.Client) -> None:
    """no-cache refreshes the entry (the next plain request gets the new response);
    no-store leaves the store alone."""
    http.get("/items/1")
    http.get("/items/1", headers={"Cache-Control": "no-cache"})
    assert http.get("/items/1").json()["n"] == 2
    http.get("/items/1", headers={"Cache-Control": "no-store"})
    assert http.get("/items/1").json()["n"] == 2


def test_a_request_max_age_refuses_older_responses(
    shop: Shop, http: httpx.Client, clock: Clock
) -> None:
    """A request's max-age=5 is served a 3 s old response, not a 10 s old one."""
    http.get("/items/1")
    clock.now += 3
    assert http.get("/items/1", headers={"Cache-Control": "max-age=5"}).headers["x-cache"] == "HIT"
    clock.now += 7
    assert http.get("/items/1", headers={"Cache-Control": "max-age=5"}).headers["x-cache"] == "MISS"


def test_honour_client_false_ignores_the_request_cache_control(clock: Clock) -> None:
    """With honour_client=False a request's no-cache is served from the store."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from cachekit.asgi import CacheMiddleware
    from cachekit.responses import cache_response

    calls = []

    @cache_response(ttl=60, honour_client=False, clock=clock)
    async def page(request: Request) -> PlainTextResponse:
        calls.append(1)
        return PlainTextResponse("page")

    manager = CacheManager()
    app = CacheMiddleware(Starlette(routes=[Route("/", page)]), manager, plugin="p")
    with uvicorn_serving(app) as url, httpx.Client(base_url=url) as client:
        client.get("/")
        answer = client.get("/", headers={"Cache-Control": "no-cache"})
    assert answer.headers["x-cache"] == "HIT"
    assert len(calls) == 1
    set_default_manager(None)


@pytest.mark.parametrize("value", ["no-store", "private", "no-cache"])
def test_responses_that_forbid_storing_are_not_stored(
    shop: Shop, http: httpx.Client, value: str
) -> None:
    """A response with Cache-Control no-store, private or no-cache runs every time."""
    for _ in range(2):
        assert http.get(f"/directive/{value}").headers["x-cache"] == "MISS"
    assert shop.calls[value] == 2


def test_the_response_max_age_bounds_the_ttl(shop: Shop, http: httpx.Client, clock: Clock) -> None:
    """ttl=60 with the response's max-age=5: a HIT after 4 s, a MISS after 6 s; s-maxage
    wins over max-age."""
    http.get("/directive/max-age_5")
    clock.now += 4
    assert http.get("/directive/max-age_5").headers["x-cache"] == "HIT"
    clock.now += 2
    assert http.get("/directive/max-age_5").headers["x-cache"] == "MISS"
    http.get("/directive/s-maxage_2")
    clock.now += 3
    assert http.get("/directive/s-maxage_2").headers["x-cache"] == "MISS"


def test_a_set_cookie_response_is_never_served_to_another_request(
    shop: Shop, http: httpx.Client
) -> None:
    """Twenty users of /cookie each get their own cookie from their own run: a response with
    Set-Cookie is never stored."""
    for user in range(20):
        answer = http.get("/cookie", headers={"X-User": f"u{user}"})
        assert answer.cookies["session"] == f"u{user}"
        assert answer.json()["user"] == f"u{user}"
        assert answer.headers["x-cache"] == "MISS"
    assert shop.calls["cookie"] == 20


def test_concurrent_set_cookie_requests_never_share_a_response(shop: Shop) -> None:
    """Fifty concurrent requests for one cold Set-Cookie endpoint: the waiters run the
    endpoint themselves rather than take the first one's response."""

    async def main(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, headers=SCOPE_HEADERS) as client:
            return await asyncio.gather(
                *(client.get("/cookie", headers={"X-User": f"u{i}"}) for i in range(50))
            )

    with uvicorn_serving(shop.app, lifespan="on") as url:
        answers = asyncio.run(main(url))
    for i, answer in enumerate(answers):
        assert answer.cookies["session"] == f"u{i}"
        assert answer.json()["user"] == f"u{i}"
    assert shop.calls["cookie"] == 50


def test_a_request_with_authorization_is_never_served_from_or_stored_in_the_cache(
    shop: Shop, http: httpx.Client
) -> None:
    """Requests with Authorization run the endpoint and are not stored; a later anonymous
    request does not get an authorized response (RFC 9111 section 3.5)."""
    http.get("/who")  # an anonymous entry exists
    for user in ("alice", "bob"):
        answer = http.get("/who", headers={"Authorization": f"Bearer {user}"})
        assert answer.json()["auth"] == f"Bearer {user}"
        assert "x-cache" not in answer.headers
    anonymous = http.get("/who")
    assert anonymous.json()["auth"] is None
    assert anonymous.headers["x-cache"] == "HIT"
    assert shop.calls["who"] == 3


def test_authorized_true_opts_in(shop: Shop, http: httpx.Client) -> None:
    """authorized=True serves a response stored for one Authorization to another."""
    http.get("/shared", headers={"Authorization": "Bearer alice"})
    answer = http.get("/shared", headers={"Authorization": "Bearer bob"})
    assert answer.headers["x-cache"] == "HIT"
    assert shop.calls["shared"] == 1


def test_vary_selects_the_variant_by_the_request_header(shop: Shop, http: httpx.Client) -> None:
    """The response's own Vary: Accept-Language keeps one variant per language."""
    assert http.get("/language", headers={"Accept-Language": "de"}).json()["lang"] == "de"
    assert http.get("/language", headers={"Accept-Language": "fr"}).json()["lang"] == "fr"
    german = http.get("/language", headers={"Accept-Language": "de"})
    french = http.get("/language", headers={"Accept-Language": "fr"})
    assert (german.json()["lang"], german.headers["x-cache"]) == ("de", "HIT")
    assert (french.json()["lang"], french.headers["x-cache"]) == ("fr", "HIT")
    assert shop.calls["lang"] == 2


def test_the_decorator_vary_is_added_to_the_key_and_the_response(
    shop: Shop, http: httpx.Client
) -> None:
    """vary=("X-Region",) keeps one variant per region and is announced in Vary."""
    eu = http.get("/region", headers={"X-Region": "eu"})
    us = http.get("/region", headers={"X-Region": "us"})
    assert eu.headers["vary"] == "x-region"
    assert (eu.json()["region"], us.json()["region"]) == ("eu", "us")
    assert http.get("/region", headers={"X-Region": "eu"}).json()["region"] == "eu"
    assert shop.calls["region"] == 2


def test_vary_star_is_never_stored(shop: Shop, http: httpx.Client) -> None:
    """A response with Vary: * runs every time."""
    http.get("/vary-star")
    assert http.get("/vary-star").headers["x-cache"] == "MISS"
    assert shop.calls["star"] == 2


def test_encoded_bodies_are_stored_as_sent_and_keyed_by_accept_encoding(
    shop: Shop, http: httpx.Client
) -> None:
    """A gzip body is stored as sent and served only to clients that accept gzip; an
    identity client gets its own variant."""
    zipped = http.get("/gzip", headers={"Accept-Encoding": "gzip"})
    plain = http.get("/gzip", headers={"Accept-Encoding": "identity"})
    again = http.get("/gzip", headers={"Accept-Encoding": "gzip"})
    assert again.headers["x-cache"] == "HIT"
    assert again.headers["content-encoding"] == "gzip"
    assert again.json() == zipped.json() == {"n": 1}  # httpx decodes it
    assert "content-encoding" not in plain.headers
    assert plain.json() == {"n": 2}
    assert http.get("/gzip", headers={"Accept-Encoding": "identity"}).headers["x-cache"] == "HIT"
    with http.stream("GET", "/gzip", headers={"Accept-Encoding": "gzip"}) as hit:
        raw = b"".join(hit.iter_raw())
    assert json.loads(gzip.decompress(raw)) == {"n": 1}  # the gzip bytes, as the app sent them


def test_a_strong_etag_is_added_and_if_none_match_answers_304(
    shop: Shop, http: httpx.Client
) -> None:
    """The body's hash is the ETag; If-None-Match with it gets a 304 without a body, on a
    hit and on a miss; another tag gets the 200."""
    first = http.get("/items/1")
    etag = first.headers["etag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    cached = http.get("/items/1", headers={"If-None-Match": etag})
    assert (cached.status_code, cached.content, cached.headers["etag"]) == (304, b"", etag)
    assert cached.headers["x-cache"] == "HIT"
    assert http.get("/items/1", headers={"If-None-Match": '"other"'}).status_code == 200
    fresh = http.get("/items/2", headers={"If-None-Match": http.get("/items/2").headers["etag"]})
    assert fresh.status_code == 304
    assert http.get("/items/3", headers={"If-None-Match": "*"}).status_code == 304


def test_if_modified_since_answers_304(shop: Shop, http: httpx.Client) -> None:
    """If-Modified-Since at or after Last-Modified gets a 304; before it, the 200."""
    http.get("/modified")
    later = http.get("/modified", headers={"If-Modified-Since": "Thu, 22 Oct 2015 07:28:00 GMT"})
    earlier = http.get("/modified", headers={"If-Modified-Since": "Tue, 20 Oct 2015 07:28:00 GMT"})
    assert later.status_code == 304
    assert earlier.status_code == 200
    assert shop.calls["modified"] == 1


def test_cache_control_true_adds_max_age_when_the_app_sets_none(
    shop: Shop, http: httpx.Client
) -> None:
    """cache_control=True: the response says Cache-Control: max-age=60; without it none."""
    assert http.get("/advertised").headers["cache-control"] == "max-age=60"
    assert "cache-control" not in http.get("/items/1").headers


def test_age_counts_the_seconds_since_the_response_was_stored(
    shop: Shop, http: httpx.Client, clock: Clock
) -> None:
    """Age is the whole seconds the response has been stored."""
    http.get("/items/1")
    clock.now += 42.5
    assert http.get("/items/1").headers["age"] == "42"


def test_a_streaming_response_passes_through_uncached(shop: Shop, http: httpx.Client) -> None:
    """text/event-stream is sent as the endpoint writes it, every time."""
    for run in (1, 2):
        answer = http.get("/stream")
        assert answer.text == "".join(f"data: {run}-{i}\n\n" for i in range(3))
    assert shop.calls["stream"] == 2


def test_a_body_over_max_body_bytes_passes_through_unchanged(
    shop: Shop, http: httpx.Client
) -> None:
    """A 2 KB body over max_body_bytes=1024 reaches the client whole and is not stored."""
    first = http.get("/big")
    assert first.content == b"x" * 2000 + b"1"
    assert http.get("/big").content == b"x" * 2000 + b"2"


def test_stale_while_revalidate_serves_stale_and_refreshes_in_the_background(
    shop: Shop, http: httpx.Client, clock: Clock
) -> None:
    """Past its ttl but within stale-while-revalidate the old response is served (X-Cache:
    STALE) while one background run refreshes it."""
    http.get("/swr")
    clock.now += 11
    stale = http.get("/swr")
    assert (stale.headers["x-cache"], stale.json()["n"]) == ("STALE", 1)
    for _ in range(200):  # the refresh runs in a task of the server's loop
        answer = http.get("/swr")
        if answer.json()["n"] == 2:
            break
    assert answer.headers["x-cache"] == "HIT"
    assert shop.calls["swr"] == 2


@pytest.mark.parametrize("how", ["status", "raise"])
def test_stale_if_error_serves_the_stale_response_when_the_app_fails(
    shop: Shop, http: httpx.Client, clock: Clock, how: str
) -> None:
    """Past its ttl, within stale-if-error, a 503 or an exception of the endpoint is
    replaced by the stale response; past the window the failure shows."""
    http.get(f"/flaky?how={how}")
    shop.failing = True
    clock.now += 11
    stale = http.get(f"/flaky?how={how}")
    assert (stale.status_code, stale.headers["x-cache"], stale.json()) == (200, "STALE", {"n": 1})
    clock.now += 60
    assert http.get(f"/flaky?how={how}").status_code in (500, 503)


@on_every_store
def test_invalidate_tags_and_path(shop: Shop, http: httpx.Client) -> None:
    """invalidate_tags("item:1") makes /items/1 (every query) run again and leaves
    /items/2 cached; invalidate_path does the same by path."""
    http.get("/items/1")
    http.get("/items/1?q=x")
    http.get("/items/2")
    http.post("/invalidate", params={"tag": "item:1"})
    assert http.get("/items/1").headers["x-cache"] == "MISS"
    assert http.get("/items/1?q=x").headers["x-cache"] == "MISS"
    assert http.get("/items/2").headers["x-cache"] == "HIT"
    http.post("/invalidate", params={"path": "/items/2"})
    assert http.get("/items/2").headers["x-cache"] == "MISS"
    assert http.get("/items/1").headers["x-cache"] == "HIT"
    assert shop.calls["item"] == 6


def test_invalidation_is_per_scope(shop: Shop, http: httpx.Client) -> None:
    """Invalidating a tag for tenant acme leaves tenant globex's response cached."""
    http.get("/items/1")
    http.get("/items/1", headers={"X-Tenant-ID": "globex"})
    http.post("/invalidate", params={"tag": "item:1"})
    assert http.get("/items/1").headers["x-cache"] == "MISS"
    assert http.get("/items/1", headers={"X-Tenant-ID": "globex"}).headers["x-cache"] == "HIT"


@on_every_store
def test_100_concurrent_requests_for_a_cold_endpoint_run_it_once(shop: Shop) -> None:
    """One hundred concurrent requests for a cold key: the endpoint runs once and every
    request gets its response."""

    async def main(url: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=url, headers=SCOPE_HEADERS, limits=limits) as client:
            return await asyncio.gather(*(client.get("/slow") for _ in range(100)))

    with uvicorn_serving(shop.app, lifespan="on") as url:
        answers = asyncio.run(main(url))
    assert {answer.text for answer in answers} == {json.dumps({"n": 1}, separators=(",", ":"))}
    assert shop.calls["slow"] == 1


@on_every_store
def test_two_tenants_and_two_plugins_never_see_each_others_body(shop: Shop) -> None:
    """200 interleaved concurrent requests from two tenants of two plugins for one path:
    each gets its own scope's data, never another's."""
    scopes = [(plugin, tenant) for plugin in ("shop", "blog") for tenant in ("acme", "globex")]
    for plugin, tenant in scopes:
        shop.data[(plugin, tenant)] = f"secret of {tenant} in {plugin}"

    async def main(url: str) -> list[tuple[tuple[str, str], httpx.Response]]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=url, limits=limits) as client:
            asked = [scopes[i % 4] for i in range(200)]
            answers = await asyncio.gather(
                *(
                    client.get("/items/7", headers={"X-Plugin": p, "X-Tenant-ID": t})
                    for p, t in asked
                )
            )
            return list(zip(asked, answers, strict=True))

    with uvicorn_serving(shop.app, lifespan="on") as url:
        results = asyncio.run(main(url))
    for (plugin, tenant), answer in results:
        body = answer.json()
        assert (body["plugin"], body["tenant"]) == (plugin, tenant)
        assert body["data"] == f"secret of {tenant} in {plugin}"


def test_a_sync_endpoint_is_cached_too(shop: Shop, http: httpx.Client) -> None:
    """A def endpoint (run in Starlette's thread pool) is stored and served like an async one."""
    http.get("/sync")
    assert http.get("/sync").headers["x-cache"] == "HIT"
    assert shop.calls["sync"] == 1
