"""The WSGI CacheMiddleware: binding per request and per response step, rejections,
thread safety under a real threaded server (waitress)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, Response
from http_servers import Waitress

from cachekit import NoScopeError, current_cache, current_scope
from cachekit.host import CacheManager
from cachekit.resolvers import header, path_prefix, state
from cachekit.wsgi import CacheMiddleware, ScopedResponse

Environ = dict[str, Any]
WSGIApp = Callable[[Environ, Any], Iterable[bytes]]


@pytest.fixture
def manager() -> CacheManager:
    return CacheManager()


def environ(path: str = "/", headers: dict[str, str] | None = None, **extra: Any) -> Environ:
    env: Environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        **extra,
    }
    for name, value in (headers or {}).items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


class StartResponse:
    def __init__(self) -> None:
        self.status = ""
        self.headers: list[tuple[str, str]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.status, self.headers = status, headers
        return lambda data: None


def run(app: WSGIApp, env: Environ) -> tuple[str, bytes]:
    """Call, iterate and close the response as a server does."""
    start = StartResponse()
    response = app(env, start)
    try:
        body = b"".join(response)
    finally:
        close = getattr(response, "close", None)
        if close is not None:
            close()
    return start.status, body


def scope_app(env: Environ, start_response: Any) -> list[bytes]:
    bound = current_scope()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"plugin": bound.plugin, "tenant": bound.tenant}).encode()]


class StreamingApp:
    """Returns a generator that reads the scope at each step and in its finally clause."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, env: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return self.body()

    def body(self) -> Iterator[bytes]:
        try:
            for key in ("a", "b"):
                value = current_cache().get(key)
                self.seen.append(f"{current_scope().tenant}:{value}")
                yield f"{current_scope().tenant}:{value}\n".encode()
        finally:
            self.seen.append(f"closed in {current_scope().tenant}")


# --- at the middleware level ---------------------------------------------------------------


def test_request_sees_its_scope_and_nothing_leaks_after(manager: CacheManager) -> None:
    """Each request sees its own scope, and none is bound on this thread afterwards."""
    app = CacheMiddleware(scope_app, manager, plugin="catalog", tenant=header("X-Tenant-ID"))
    for tenant in ("acme", "globex"):
        status, body = run(app, environ(headers={"X-Tenant-ID": tenant}))
        assert status == "200 OK"
        assert json.loads(body) == {"plugin": "catalog", "tenant": tenant}
        with pytest.raises(NoScopeError):
            current_scope()


def test_complete_responses_are_passed_through_unwrapped(manager: CacheManager) -> None:
    """A list response (nothing left to run) is returned as is, so servers keep their
    optimisations for it."""
    app = CacheMiddleware(scope_app, manager, plugin="catalog")
    response = app(environ(), StartResponse())
    assert isinstance(response, list)


def test_server_file_wrapper_is_passed_through(manager: CacheManager) -> None:
    """A response made with the server's wsgi.file_wrapper is returned as is, so the
    server keeps its fast path for sending files."""

    class FileWrapper:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def __iter__(self) -> Iterator[bytes]:
            yield self.data

    def app(env: Environ, start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [])
        return FileWrapper(b"file")

    middleware = CacheMiddleware(app, manager, plugin="catalog")
    env = environ()
    env["wsgi.file_wrapper"] = FileWrapper
    response = middleware(env, StartResponse())
    assert isinstance(response, FileWrapper)
    response = middleware(environ(), StartResponse())  # without the server's wrapper type
    assert isinstance(response, ScopedResponse)


def test_generator_body_and_close_run_in_the_scope(manager: CacheManager) -> None:
    """A generator response reads the cache while the server iterates it, after the app
    returned; its cleanup runs in the scope at close(); nothing stays bound after."""
    for tenant in ("acme", "globex"):
        manager.for_plugin("catalog", tenant).set_many({"a": f"{tenant}-a", "b": f"{tenant}-b"})
    inner = StreamingApp()
    app = CacheMiddleware(inner, manager, plugin="catalog", tenant=header("X-Tenant-ID"))
    response = app(environ(headers={"X-Tenant-ID": "acme"}), StartResponse())
    assert isinstance(response, ScopedResponse)
    with pytest.raises(NoScopeError):
        current_scope()  # between steps, the server's code sees no scope
    assert next(iter(response)) == b"acme:acme-a\n"
    with pytest.raises(NoScopeError):
        current_scope()
    assert list(response) == [b"acme:acme-b\n"]
    response.close()
    assert inner.seen == ["acme:acme-a", "acme:acme-b", "closed in acme"]
    with pytest.raises(NoScopeError):
        current_scope()


def test_response_iterated_on_another_thread_sees_the_scope(manager: CacheManager) -> None:
    """A server that iterates and closes the response on another thread (another context)
    still gives the body its scope."""
    inner = StreamingApp()
    app = CacheMiddleware(inner, manager, plugin="catalog", tenant=header("X-Tenant-ID"))
    response = app(environ(headers={"X-Tenant-ID": "acme"}), StartResponse())
    chunks: list[bytes] = []

    def serve() -> None:
        chunks.extend(response)
        response.close()  # type: ignore[attr-defined]

    worker = threading.Thread(target=serve)
    worker.start()
    worker.join()
    assert chunks == [b"acme:None\n", b"acme:None\n"]
    assert inner.seen[-1] == "closed in acme"


def test_closing_an_unstarted_response_runs_no_body(manager: CacheManager) -> None:
    """close() before any iteration (client gone) closes the app's iterable cleanly."""
    inner = StreamingApp()
    app = CacheMiddleware(inner, manager, plugin="catalog")
    response = app(environ(), StartResponse())
    response.close()  # type: ignore[attr-defined]
    assert inner.seen == []
    with pytest.raises(NoScopeError):
        current_scope()


def test_scope_is_unbound_when_the_app_or_the_body_raises(manager: CacheManager) -> None:
    """Exceptions from the app call or from a body step propagate and leave no scope."""

    def broken(env: Environ, start_response: Any) -> list[bytes]:
        raise RuntimeError("in app")

    def broken_body(env: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"x"
        raise RuntimeError("in body")

    with pytest.raises(RuntimeError, match="in app"):
        run(CacheMiddleware(broken, manager, plugin="p"), environ())
    with pytest.raises(NoScopeError):
        current_scope()
    with pytest.raises(RuntimeError, match="in body"):
        run(CacheMiddleware(broken_body, manager, plugin="p"), environ())
    with pytest.raises(NoScopeError):
        current_scope()


BAD = ["../x", "x" * 500, "", "a\x00b", "a\x01b", "a\x7f", "a b", "é"]


@pytest.mark.parametrize("bad", BAD)
def test_bad_tenant_ids_get_400_before_the_app_runs(bad: str, manager: CacheManager) -> None:
    """An invalid tenant id gets a 400 JSON error and the app is never called."""
    called: list[bool] = []

    def app(env: Environ, start_response: Any) -> list[bytes]:
        called.append(True)
        return scope_app(env, start_response)

    middleware = CacheMiddleware(app, manager, plugin="catalog", tenant=header("X-Tenant-ID"))
    start = StartResponse()
    body = b"".join(middleware(environ(headers={"X-Tenant-ID": bad}), start))
    assert start.status == "400 Bad Request"
    assert ("Content-Type", "application/json") in start.headers
    assert json.loads(body) == {
        "error": "invalid tenant id",
        "expected": "header X-Tenant-ID: an id matching [A-Za-z0-9._-]{1,64}",
    }
    assert called == []


def test_excluded_paths_reach_the_app_without_a_scope(manager: CacheManager) -> None:
    """exclude=: /healthz and what is under /static/ run with no scope bound and no tenant
    asked for; /healthzz is not excluded and is refused as before."""

    def app(env: Environ, start_response: Any) -> list[bytes]:
        try:
            tenant = str(current_scope().tenant)
        except NoScopeError:
            tenant = "none"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [tenant.encode()]

    middleware = CacheMiddleware(
        app, manager, plugin="p", tenant=header("X-Tenant-ID"), exclude=["/healthz", "/static/*"]
    )
    for path in ("/healthz", "/static", "/static/app.css"):
        assert run(middleware, environ(path)) == ("200 OK", b"none")
    assert run(middleware, environ("/healthzz")) == (
        "400 Bad Request",
        b'{"error": "missing tenant id", "expected": "header X-Tenant-ID"}',
    )
    assert run(middleware, environ("/api", {"X-Tenant-ID": "acme"})) == ("200 OK", b"acme")


def test_unknown_plugin_404_and_missing_tenant_400(manager: CacheManager) -> None:
    """No plugin -> 404; no tenant while required -> 400; optional -> platform scope."""
    app = CacheMiddleware(
        scope_app,
        manager,
        plugin=path_prefix({"/api/catalog": "catalog"}),
        tenant=header("X-Tenant-ID"),
    )
    assert run(app, environ("/api/reviews")) == (
        "404 Not Found",
        b'{"error": "unknown plugin", "expected": "path prefix /api/catalog"}',
    )
    assert run(app, environ("/api/catalog"))[0] == "400 Bad Request"
    lenient = CacheMiddleware(
        scope_app, manager, plugin="catalog", tenant=header("X"), tenant_required=False
    )
    assert json.loads(run(lenient, environ())[1]) == {"plugin": "catalog", "tenant": None}


def test_tenant_from_an_auth_layer_in_the_environ(manager: CacheManager) -> None:
    """state('auth.tenant') reads what an authentication middleware put in the environ."""
    inner = CacheMiddleware(scope_app, manager, plugin="p", tenant=state("auth.tenant"))

    def authenticate(env: Environ, start_response: Any) -> Iterable[bytes]:
        env["auth.tenant"] = "verified"
        return inner(env, start_response)

    assert json.loads(run(authenticate, environ())[1])["tenant"] == "verified"


def test_flask_streaming_without_stream_with_context(manager: CacheManager) -> None:
    """A Flask view returning a generator reads the cache while Flask's response streams,
    in process through Flask's test client."""
    flask_app = Flask(__name__)

    @flask_app.get("/stream")
    def stream() -> Response:
        def lines() -> Iterator[str]:
            for key in ("a", "b"):
                yield f"{current_scope().tenant}:{current_cache().get(key)}\n"

        return Response(lines())

    flask_app.wsgi_app = CacheMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app, manager, plugin="catalog", tenant=header("X-Tenant-ID")
    )
    manager.for_plugin("catalog", "acme").set_many({"a": 1, "b": 2})
    answer = flask_app.test_client().get("/stream", headers={"X-Tenant-ID": "acme"})
    assert answer.get_data(as_text=True) == "acme:1\nacme:2\n"


def test_close_closes_the_managers_store() -> None:
    """CacheMiddleware.close() closes the manager's store (WSGI has no shutdown hook)."""
    closed: list[bool] = []
    manager = CacheManager()
    manager.store.close = lambda: closed.append(True)  # type: ignore[method-assign]
    CacheMiddleware(scope_app, manager, plugin="p").close()
    assert closed == [True]


def test_repr_names_the_configuration(manager: CacheManager) -> None:
    """repr() of the middleware and of a scoped response name what they hold."""
    text = repr(CacheMiddleware(scope_app, manager, plugin="catalog", tenant=header("X")))
    assert "plugin='catalog'" in text
    assert "header('X')" in text
    response = CacheMiddleware(StreamingApp(), manager, plugin="c")(environ(), StartResponse())
    assert "Scope(plugin='c', tenant=None)" in repr(response)
    response.close()  # type: ignore[attr-defined]


# --- over HTTP: a real threaded server (waitress) -----------------------------------------


def probed(app: WSGIApp, probe: list[str]) -> WSGIApp:
    """Records, outside the middleware, whether a scope is visible on the server thread
    before each request and after its response was closed."""

    def visible() -> str:
        try:
            return str(current_scope().tenant)
        except NoScopeError:
            return "none"

    class Closing:
        def __init__(self, response: Iterable[bytes]) -> None:
            self.response = response

        def __iter__(self) -> Iterator[bytes]:
            return iter(self.response)

        def close(self) -> None:
            getattr(self.response, "close", lambda: None)()
            probe.append(f"after:{visible()}")

    def wrapper(env: Environ, start_response: Any) -> Iterable[bytes]:
        probe.append(f"before:{visible()}")
        return Closing(app(env, start_response))

    return wrapper


def test_no_scope_leaks_between_requests_on_one_server_thread(manager: CacheManager) -> None:
    """Under waitress with one worker thread, streaming requests for several tenants see
    their own data and no scope is visible on that thread between requests."""
    for tenant in ("acme", "globex"):
        manager.for_plugin("catalog", tenant).set_many({"a": f"{tenant}-a", "b": f"{tenant}-b"})
    probe: list[str] = []
    app = CacheMiddleware(StreamingApp(), manager, plugin="catalog", tenant=header("X-Tenant-ID"))
    server = Waitress(probed(app, probe), threads=1)
    try:
        with httpx.Client(base_url=server.url) as http:
            for tenant in ("acme", "globex", "acme"):
                body = http.get("/", headers={"X-Tenant-ID": tenant}).text
                assert body == f"{tenant}:{tenant}-a\n{tenant}:{tenant}-b\n"
    finally:
        server.stop()
    assert probe == ["before:none", "after:none"] * 3


def test_many_threads_under_waitress_see_only_their_tenant(manager: CacheManager) -> None:
    """50 client threads against waitress's worker threads, streaming bodies included:
    zero cross-tenant reads."""
    tenants = [f"t{i}" for i in range(50)]
    for tenant in tenants:
        manager.for_plugin("catalog", tenant).set_many({"a": tenant, "b": tenant})
    inner = StreamingApp()
    app = CacheMiddleware(inner, manager, plugin="catalog", tenant=header("X-Tenant-ID"))
    server = Waitress(app, threads=4)
    results: dict[str, list[str]] = {}
    barrier = threading.Barrier(len(tenants))

    def client(tenant: str) -> None:
        with httpx.Client(base_url=server.url) as http:
            barrier.wait()
            results[tenant] = [
                http.get("/", headers={"X-Tenant-ID": tenant}).text for _ in range(3)
            ]

    threads = [threading.Thread(target=client, args=(t,)) for t in tenants]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        server.stop()
    assert sorted(results) == sorted(tenants)
    cross = [
        (tenant, body)
        for tenant, bodies in results.items()
        for body in bodies
        if body != f"{tenant}:{tenant}\n{tenant}:{tenant}\n"
    ]
    assert cross == []
