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
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint, Flask, Response, jsonify, request

from cachekit import MISS, CacheManager, current_cache, current_scope
from cachekit.resolvers import header, path_segment
from cachekit.wsgi import CacheMiddleware

CONFIG = Path(__file__).with_name("app-config.yaml")
PLUGINS = ("catalog", "reviews")

# --- plugin code: one blueprint, registered once per plugin -------------------------------

plugin = Blueprint("plugin", __name__)


@plugin.get("/")
def index() -> Response:
    """The plugin's index; does not touch the cache."""
    return jsonify({"plugin": current_scope().plugin, "endpoints": ["items/<key>", "stream"]})


@plugin.get("/scope")
def scope_info() -> Response:
    """The scope this request runs in."""
    scope = current_scope()
    return jsonify({"plugin": scope.plugin, "tenant": scope.tenant})


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


# Issue 6 lands here: a view helper decorated with `@cached(namespace="items", ttl=60)`,
# `counter("hits").incr()` on every read, and a `rate_limit(...)`-protected endpoint.


# --- the host ---------------------------------------------------------------------------


def create_app(manager: CacheManager | None = None) -> Flask:
    """The host app, its WSGI entry point wrapped in ``CacheMiddleware``.

    :param manager: the cache manager (default: built from ``app-config.yaml``).
    """
    app = Flask(__name__)
    for name in PLUGINS:
        app.register_blueprint(plugin, url_prefix=f"/api/{name}", name=name)

    @app.get("/")
    def home() -> Response:
        plugins = ", ".join(f"/api/{p}/" for p in PLUGINS)
        return Response(f"cachekit Flask example. Plugins: {plugins}\n", mimetype="text/plain")

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"ok": True})

    app.wsgi_app = CacheMiddleware(  # type: ignore[method-assign]  # Flask's documented way
        app.wsgi_app,
        manager=manager if manager is not None else CacheManager.from_yaml(CONFIG),
        plugin=path_segment(1, known=PLUGINS, default="host"),  # /api/<plugin>/...
        # A client-chosen header is only acceptable behind authentication that checks the
        # caller belongs to the tenant. Without the header a request runs in the platform
        # scope (tenant None); drop tenant_required=False to answer 400 instead.
        tenant=header("X-Tenant-ID"),
        tenant_required=False,
    )
    return app


app = create_app()
