"""Response caching of Flask views (``@cache_response``) and of a WSGI app's path prefixes
(``responses=`` of :class:`cachekit.wsgi.CacheMiddleware`), over HTTP from a real waitress
server."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, Response, request
from http_servers import waitress_serving
from responses_apps import Clock

from cachekit import current_scope
from cachekit.host import CacheManager, set_default_manager
from cachekit.resolvers import header
from cachekit.responses import cache_response, invalidate_tags, response_cache
from cachekit.wsgi import CacheMiddleware

TENANT = {"X-Tenant-ID": "acme"}


@pytest.fixture
def manager() -> Iterator[CacheManager]:
    manager = CacheManager()
    yield manager
    set_default_manager(None)
    manager.close()


def flask_app(manager: CacheManager, calls: Counter[str], clock: Clock) -> Flask:
    app = Flask(__name__)
    gate = threading.Event()

    @app.get("/items/<int:item_id>")
    @cache_response(ttl=60, tags=("item:{item_id}",), clock=clock)
    def item(item_id: int) -> dict[str, Any]:
        calls["item"] += 1
        return {"id": item_id, "q": request.args.get("q"), "tenant": current_scope().tenant}

    @app.get("/cookie")
    @cache_response(ttl=60, clock=clock)
    def cookie() -> Response:
        calls["cookie"] += 1
        response = Response(request.headers.get("X-User", ""))
        response.set_cookie("session", request.headers.get("X-User", ""))
        return response

    @app.get("/slow")
    @cache_response(ttl=60, clock=clock)
    def slow() -> str:
        calls["slow"] += 1
        gate.wait(0.3)
        return "slow"

    @app.get("/stream")
    @cache_response(ttl=60, clock=clock)
    def stream() -> Response:
        calls["stream"] += 1
        return Response((f"data: {i}\n\n" for i in range(3)), mimetype="text/event-stream")

    @app.post("/invalidate/<int:item_id>")
    def invalidate(item_id: int) -> str:
        invalidate_tags(f"item:{item_id}")
        return ""

    app.wsgi_app = CacheMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, manager, plugin="shop", tenant=header("X-Tenant-ID")
    )
    return app


@pytest.fixture
def served(manager: CacheManager) -> Iterator[tuple[httpx.Client, Counter[str], Clock]]:
    calls: Counter[str] = Counter()
    clock = Clock()
    with (
        waitress_serving(flask_app(manager, calls, clock), threads=8) as url,
        httpx.Client(base_url=url, headers=TENANT) as client,
    ):
        yield client, calls, clock


def test_a_flask_view_is_stored_keyed_by_query_and_tenant(
    served: tuple[httpx.Client, Counter[str], Clock],
) -> None:
    """The issue's symptom fixed: ?q=pear is not served apple's page; each tenant has its
    own entry; a repeat is a HIT with Age and an ETag."""
    http, calls, _ = served
    assert http.get("/items/1?q=apple").json()["q"] == "apple"
    pear = http.get("/items/1?q=pear")
    again = http.get("/items/1?q=pear")
    other = http.get("/items/1?q=pear", headers={"X-Tenant-ID": "globex"})
    assert pear.json()["q"] == "pear"
    assert (again.headers["x-cache"], again.headers["age"]) == ("HIT", "0")
    assert again.headers["etag"] == pear.headers["etag"]
    assert other.json()["tenant"] == "globex"
    assert calls["item"] == 3


def test_a_flask_304_and_a_head(served: tuple[httpx.Client, Counter[str], Clock]) -> None:
    """If-None-Match with the stored ETag gets a 304; a HEAD is served from the GET entry."""
    http, calls, _ = served
    etag = http.get("/items/1").headers["etag"]
    assert http.get("/items/1", headers={"If-None-Match": etag}).status_code == 304
    head = http.head("/items/1")
    assert (head.headers["x-cache"], head.content) == ("HIT", b"")
    assert calls["item"] == 1


def test_flask_tag_invalidation(served: tuple[httpx.Client, Counter[str], Clock]) -> None:
    """invalidate_tags in a view makes the tagged item run again, not the other one."""
    http, _calls, _ = served
    http.get("/items/1")
    http.get("/items/2")
    http.post("/invalidate/1")
    assert http.get("/items/1").headers["x-cache"] == "MISS"
    assert http.get("/items/2").headers["x-cache"] == "HIT"


def test_flask_set_cookie_is_never_shared(served: tuple[httpx.Client, Counter[str], Clock]) -> None:
    """Each user of a Set-Cookie view gets their own cookie from their own run."""
    http, calls, _ = served
    for user in ("u1", "u2", "u3"):
        answer = http.get("/cookie", headers={"X-User": user})
        assert (answer.text, answer.cookies["session"]) == (user, user)
    assert calls["cookie"] == 3


def test_flask_concurrent_cold_requests_run_the_view_once(
    served: tuple[httpx.Client, Counter[str], Clock],
) -> None:
    """Eight concurrent requests (waitress threads) for a cold view run it once."""
    http, calls, _ = served
    answers: list[str] = []

    def ask() -> None:
        answers.append(http.get("/slow").text)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == ["slow"] * 8
    assert calls["slow"] == 1


def test_a_flask_stream_passes_through(served: tuple[httpx.Client, Counter[str], Clock]) -> None:
    """A streamed text/event-stream view reaches the client whole, every time."""
    http, calls, _ = served
    for _ in range(2):
        assert http.get("/stream").text == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert calls["stream"] == 2


def test_wsgi_middleware_responses_caches_a_prefix(manager: CacheManager) -> None:
    """responses={"/api": ...} caches GETs under /api (not /apiary, not other paths) in the
    request's scope, with X-Cache; a successful POST to a path invalidates it."""
    calls: Counter[str] = Counter()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ["PATH_INFO"]
        calls[path] += 1
        body = f"{path} {current_scope().tenant} {calls[path]}".encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    wrapped = CacheMiddleware(
        app,
        manager,
        plugin="shop",
        tenant=header("X-Tenant-ID"),
        responses={"/api": response_cache(60)},
    )
    with waitress_serving(wrapped) as url, httpx.Client(base_url=url, headers=TENANT) as http:
        assert http.get("/api/items").headers["x-cache"] == "MISS"
        hit = http.get("/api/items")
        assert (hit.headers["x-cache"], hit.text) == ("HIT", "/api/items acme 1")
        other = http.get("/api/items", headers={"X-Tenant-ID": "globex"})
        assert other.text == "/api/items globex 2"
        http.get("/apiary")
        assert "x-cache" not in http.get("/apiary").headers
        assert calls["/apiary"] == 2
        http.post("/api/items")  # RFC 9111 section 4.4: a successful POST invalidates it
        assert http.get("/api/items").headers["x-cache"] == "MISS"
