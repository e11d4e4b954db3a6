"""FastAPI behind cachekit, served by a real uvicorn server: exclude= lets /docs,
/openapi.json and a health probe through without a tenant while the API still refuses a
request without one, naming the header. (Not in scripts/test's oldest lane: it has no
FastAPI.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from http_servers import uvicorn_serving

from cachekit import Cache, current_scope
from cachekit.contrib.starlette import cache_dependency, install
from cachekit.host import CacheManager, set_default_manager
from cachekit.resolvers import header

DOCS = ["/docs/*", "/redoc", "/openapi.json", "/healthz"]
Visits = Annotated[Cache, Depends(cache_dependency("visits"))]  # module level: FastAPI reads it


@pytest.fixture
def manager() -> Iterator[CacheManager]:
    manager = CacheManager()
    yield manager
    set_default_manager(None)
    manager.close()


def fastapi_app(manager: CacheManager, **options: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/api/items")
    async def items(visits: Visits) -> dict[str, Any]:
        return {"tenant": current_scope().tenant, "visits": await visits.aincr("items")}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    install(app, manager, plugin="shop", tenant=header("X-Tenant-ID"), **options)
    return app


def test_docs_and_health_answer_200_with_exclude_while_the_api_wants_a_tenant(
    manager: CacheManager,
) -> None:
    """With exclude=, /docs, /docs/oauth2-redirect, /openapi.json and /healthz answer 200
    over HTTP; /api/items without a tenant is a 400 naming the header, with one a 200."""
    with (
        uvicorn_serving(fastapi_app(manager, exclude=DOCS)) as url,
        httpx.Client(base_url=url) as http,
    ):
        docs = http.get("/docs")
        assert docs.status_code == 200
        assert "swagger-ui" in docs.text
        assert http.get("/docs/oauth2-redirect").status_code == 200
        schema = http.get("/openapi.json")
        assert schema.status_code == 200
        assert "/api/items" in schema.json()["paths"]
        assert http.get("/healthz").json() == {"status": "ok"}
        refused = http.get("/api/items")
        assert refused.status_code == 400
        assert refused.json() == {"error": "missing tenant id", "expected": "header X-Tenant-ID"}
        served = http.get("/api/items", headers={"X-Tenant-ID": "acme"})
        assert served.json() == {"tenant": "acme", "visits": 1}
    assert manager.for_plugin("shop", "acme").namespace("visits").get("items") == 1


def test_without_exclude_the_docs_are_refused_naming_the_header(manager: CacheManager) -> None:
    """Without exclude=, the issue's symptom: /docs and /openapi.json are 400s (now naming
    the header a request lacks)."""
    with uvicorn_serving(fastapi_app(manager)) as url, httpx.Client(base_url=url) as http:
        for path in ("/docs", "/openapi.json"):
            answer = http.get(path)
            assert answer.status_code == 400
            assert answer.json()["expected"] == "header X-Tenant-ID"


def test_tenant_required_false_serves_the_platform_scope(manager: CacheManager) -> None:
    """tenant_required=False: a request without a tenant runs in the platform scope; one
    with a malformed tenant is still a 400."""
    app = fastapi_app(manager, exclude=DOCS, tenant_required=False)
    with uvicorn_serving(app) as url, httpx.Client(base_url=url) as http:
        assert http.get("/api/items").json() == {"tenant": None, "visits": 1}
        bad = http.get("/api/items", headers={"X-Tenant-ID": "../x"})
        assert bad.status_code == 400
        assert bad.json()["error"] == "invalid tenant id"
