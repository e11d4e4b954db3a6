"""A Flask host with two plugins, ``catalog`` and ``reviews``, each a blueprint registered
under ``/api/<plugin>/`` and each with its own tenant-scoped cache.

The plugins' code never names a plugin or tenant: the WSGI ``CacheMiddleware`` resolves
them per request (plugin from the second path segment, tenant from the ``X-Tenant-ID``
header) and ``current_cache()`` hands each request the cache of its own scope — also
inside a streamed response's generator, which Flask runs after the view has returned.

Try it (``python -m examples.flask_app``, then)::

    curl -X PUT localhost:8000/api/catalog/items/color -H 'X-Tenant-ID: acme' -d '"red"'
    curl localhost:8000/api/catalog/items/color -H 'X-Tenant-ID: acme'     # "red"
    curl localhost:8000/api/catalog/items/color -H 'X-Tenant-ID: globex'   # 404: other tenant
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint, Flask, Response, jsonify, request

from cachekit import (
    MISS,
    RateLimitExceeded,
    cached,
    counter,
    current_cache,
    current_scope,
    rate_limited,
)
from cachekit.contrib.flask import rate_limit_handler
from cachekit.host import CacheManager
from cachekit.resolvers import header, path_segment
from cachekit.wsgi import CacheMiddleware

CONFIG = Path(__file__).with_name("app-config.yaml")
PLUGINS = ("catalog", "reviews")

# --- plugin code: one blueprint, registered once per plugin -------------------------------

plugin = Blueprint("plugin", __name__)


@plugin.get("/")
def index() -> Response:
    """The plugin's index; does not touch the cache."""
    endpoints = ["items/<key>", "stream", "stats", "products/<id>", "hits", "search"]
    return jsonify({"plugin": current_scope().plugin, "endpoints": endpoints})


@plugin.get("/scope")
def scope_info() -> Response:
    """The scope this request runs in."""
    scope = current_scope()
    return jsonify({"plugin": scope.plugin, "tenant": scope.tenant})


@plugin.get("/scope/sync")
def scope_info_sync() -> Response:
    """The same, named as the Starlette example's ``def`` endpoint: every Flask view is a
    ``def``, run in one of waitress's worker threads."""
    scope = current_scope()
    return jsonify(
        {
            "plugin": scope.plugin,
            "tenant": scope.tenant,
            "in_thread_pool": threading.current_thread() is not threading.main_thread(),
        }
    )


@plugin.put("/items/<key>")
def put_item(key: str) -> Response | tuple[Response, int]:
    """Store the JSON body at ``key`` in this plugin's cache for this tenant."""
    try:
        value = json.loads(request.get_data())
    except ValueError:
        return jsonify({"error": "the body must be JSON"}), 400
    cache = current_cache()
    cache.set(key, value)
    cache.incr("writes")
    return jsonify({"key": key, "value": value})


@plugin.get("/items/<key>")
def get_item(key: str) -> Response | tuple[Response, int]:
    """The value at ``key``, or 404."""
    value = current_cache().get(key, MISS)
    if value is MISS:
        return jsonify({"error": f"no item {key!r}"}), 404
    return jsonify({"key": key, "value": value, "tenant": current_scope().tenant})


@plugin.delete("/items/<key>")
def delete_item(key: str) -> tuple[str, int]:
    """Delete ``key``."""
    return "", 204 if current_cache().delete(key) else 404


@plugin.get("/stream")
def stream_items() -> Response:
    """Stream ``?keys=a,b,c`` as JSON lines, reading the cache while the body streams.

    No ``stream_with_context`` is needed for the cache: the middleware keeps the scope
    bound while the server iterates the response."""
    keys = [k for k in request.args.get("keys", "").split(",") if k]

    def lines() -> Iterator[bytes]:
        for key in keys:
            value = current_cache().get(key)
            line = {"key": key, "value": value, "tenant": current_scope().tenant}
            yield json.dumps(line).encode() + b"\n"

    return Response(lines(), mimetype="application/x-ndjson")


@plugin.get("/stats")
def stats() -> Response:
    """How many writes this plugin saw for this tenant."""
    return jsonify({"writes": current_cache().get("writes", 0)})


lookups = counter("product-lookups", on_error="ignore")  # None during a store outage
hits = counter("hits")


@cached(namespace="products", ttl=60)
def load_product(product_id: int) -> dict[str, object]:
    """A slow lookup, memoized per plugin and tenant; counts how often it really runs."""
    lookups.incr()
    time.sleep(0.05)  # stands for a database or an upstream API
    return {"id": product_id, "name": f"product {product_id}"}


@plugin.get("/products/<int:product_id>")
def get_product(product_id: int) -> Response:
    """A @cached lookup: only the first request per tenant pays for it."""
    return jsonify({"product": load_product(product_id), "lookups": lookups.get()})


@plugin.post("/hits")
def count_hit() -> Response:
    """counter("hits"): an atomic counter of this plugin and tenant."""
    return jsonify({"hits": hits.incr()})


@plugin.get("/search")
@rate_limited("search", 5, per=60, algorithm="gcra")
def search() -> Response:
    """At most 5 searches per minute per plugin and tenant (GCRA: a burst of 5, then one
    every 12 s); the 6th in a row answers 429."""
    return jsonify({"query": request.args.get("q", ""), "results": []})


# --- the host ---------------------------------------------------------------------------


def create_app(manager: CacheManager | None = None, *, cache_middleware: bool = True) -> Flask:
    """The host app, its WSGI entry point wrapped in ``CacheMiddleware``.

    :param manager: the cache manager (default: built from ``app-config.yaml``).
    :param cache_middleware: wrap in ``CacheMiddleware`` (``False`` only for tests that wrap
        it themselves, as ``examples/README.md`` shows).
    """
    app = Flask(__name__)
    # Flask answers an endpoint's exception with a 500 itself: this turns a refused rate
    # limit into a 429 with Retry-After and RateLimit-* headers.
    app.register_error_handler(RateLimitExceeded, rate_limit_handler)
    for name in PLUGINS:
        app.register_blueprint(plugin, url_prefix=f"/api/{name}", name=name)

    @app.get("/")
    def home() -> Response:
        plugins = ", ".join(f"/api/{p}/" for p in PLUGINS)
        return Response(f"cachekit Flask example. Plugins: {plugins}\n", mimetype="text/plain")

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"ok": True})

    if not cache_middleware:
        return app
    app.wsgi_app = CacheMiddleware(  # type: ignore[method-assign]  # Flask's documented way
        app.wsgi_app,
        manager=manager if manager is not None else CacheManager.from_yaml(CONFIG),
        plugin=path_segment(1, known=PLUGINS, default="host"),  # /api/<plugin>/...
        # A client-chosen header is only acceptable behind authentication that checks the
        # caller belongs to the tenant. Without the header a request runs in the platform
        # scope (tenant None); drop tenant_required=False to answer 400 instead.
        tenant=header("X-Tenant-ID"),
        tenant_required=False,
        cache_header=True,  # X-Cache: HIT|MISS on responses that ran @cached functions
    )
    return app


app = create_app()
