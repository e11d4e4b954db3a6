"""Resolvers: the request view, plugin and tenant resolvers, and id validation."""

from __future__ import annotations

import json
import logging
import re
import string
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachekit import Scope
from cachekit.context import Binding
from cachekit.host import CacheManager
from cachekit.resolvers import (
    DEFAULT_ID_PATTERN,
    Rejection,
    RequestView,
    ScopeResolver,
    excluded_paths,
    header,
    path_prefix,
    path_segment,
    state,
    subdomain,
)


def asgi_view(
    path: str = "/",
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    **extra: Any,
) -> RequestView:
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    scope = {
        "type": "http",
        "path": path,
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in items],
        **extra,
    }
    return RequestView.from_asgi(scope)


def wsgi_view(
    path: str = "/", headers: Mapping[str, str] | None = None, extra: Mapping[str, Any] = {}
) -> RequestView:
    environ: dict[str, Any] = {"PATH_INFO": path, "SERVER_NAME": "server.local", **extra}
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    return RequestView.from_wsgi(environ)


VIEWS: list[Callable[..., RequestView]] = [asgi_view, wsgi_view]


@pytest.fixture
def manager() -> CacheManager:
    return CacheManager()


# --- the request view -----------------------------------------------------------------------


@pytest.mark.parametrize("make", VIEWS)
def test_headers_are_case_insensitive(make: Any) -> None:
    """Both views look headers up in any case and list them in lower case."""
    view = make("/", {"X-Tenant-ID": "acme", "Content-Type": "text/plain"})
    assert view.headers["x-tenant-id"] == "acme"
    assert view.headers.get("X-TENANT-ID") == "acme"
    assert view.headers.get("missing") is None
    assert "content-type" in set(view.headers)
    assert "x-tenant-id" in set(view.headers)
    with pytest.raises(KeyError):
        view.headers["missing"]


def test_repeated_asgi_headers_are_joined_so_they_fail_validation() -> None:
    """Two X-Tenant-ID headers read as one comma-joined value, as WSGI servers give it."""
    view = asgi_view("/", [("X-Tenant-ID", "acme"), ("x-tenant-id", "globex")])
    assert view.headers["x-tenant-id"] == "acme, globex"
    assert len(view.headers) == 1


def test_asgi_path_is_taken_inside_root_path() -> None:
    """The ASGI view's path excludes the app's root_path, like WSGI's PATH_INFO."""
    assert asgi_view("/prefix/api/x", root_path="/prefix").path == "/api/x"
    assert asgi_view("/prefixed/api", root_path="/prefix").path == "/prefixed/api"
    assert asgi_view("/api/x", root_path="/prefix").path == "/api/x"


def test_wsgi_path_is_decoded_as_utf8() -> None:
    """PATH_INFO's latin-1 transport of UTF-8 bytes is decoded to the real characters."""
    raw = "/api/café".encode().decode("latin-1")
    assert wsgi_view(raw).path == "/api/café"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("Acme.Example.com:8000", "acme.example.com"),
        ("example.com", "example.com"),
        ("[::1]:8000", "[::1]"),
    ],
)
@pytest.mark.parametrize("make", VIEWS)
def test_host_is_lowercased_without_port(make: Any, host: str, expected: str) -> None:
    """view.host is the Host header, lower case, port removed."""
    assert make("/", {"Host": host}).host == expected


def test_host_falls_back_to_the_server_name() -> None:
    """Without a Host header, the server's name is used."""
    assert wsgi_view("/").host == "server.local"
    assert asgi_view("/", server=("10.0.0.1", 80)).host == "10.0.0.1"


def test_state_is_the_asgi_state_or_the_wsgi_environ() -> None:
    """view.state reads what an auth layer left: ASGI scope['state'], the WSGI environ."""
    assert asgi_view("/", state={"tenant": "acme"}).state["tenant"] == "acme"
    assert asgi_view("/").state == {}
    assert wsgi_view("/", extra={"auth.tenant": "acme"}).state["auth.tenant"] == "acme"


# --- plugin resolvers -----------------------------------------------------------------------


def test_path_prefix_matches_whole_segments_longest_first() -> None:
    """path_prefix picks the longest prefix ending at a segment boundary."""
    resolve = path_prefix({"/api": "api", "/api/catalog/": "catalog"})
    assert resolve(asgi_view("/api/catalog")) == "catalog"
    assert resolve(asgi_view("/api/catalog/items/1")) == "catalog"
    assert resolve(asgi_view("/api/catalogue")) == "api"
    assert resolve(asgi_view("/apix")) is None
    assert resolve(asgi_view("/")) is None


def test_path_prefix_default_and_root_prefix() -> None:
    """A default names the plugin of unmatched paths; '/' matches every path."""
    assert path_prefix({"/api/a": "a"}, default="host")(asgi_view("/other")) == "host"
    assert path_prefix({"/": "root", "/api/a": "a"})(asgi_view("/anything")) == "root"
    with pytest.raises(ValueError, match="start with"):
        path_prefix({"api": "a"})
    with pytest.raises(ValueError, match="twice"):
        path_prefix({"/api": "a", "/api/": "b"})


def test_path_segment_reads_one_segment() -> None:
    """path_segment(1) reads the plugin in /api/{plugin}/...; missing or empty -> None."""
    resolve = path_segment(1)
    assert resolve(wsgi_view("/api/catalog/items")) == "catalog"
    assert resolve(wsgi_view("/api/catalog")) == "catalog"
    assert resolve(wsgi_view("/api")) is None
    assert resolve(wsgi_view("/api//items")) is None
    assert path_segment(0)(wsgi_view("/catalog")) == "catalog"
    with pytest.raises(ValueError, match=">= 0"):
        path_segment(-1)


def test_path_segment_known_and_default() -> None:
    """With known ids, other segments name no plugin (or the default)."""
    resolve = path_segment(1, known={"catalog"})
    assert resolve(asgi_view("/api/catalog/x")) == "catalog"
    assert resolve(asgi_view("/api/reviews/x")) is None
    resolve = path_segment(1, known={"catalog"}, default="host")
    assert resolve(asgi_view("/api/reviews/x")) == "host"
    assert resolve(asgi_view("/")) == "host"


# --- tenant resolvers -----------------------------------------------------------------------


@pytest.mark.parametrize("make", VIEWS)
def test_header_resolver(make: Any) -> None:
    """header(name) returns the header's value, or None when it is absent."""
    resolve = header("X-Tenant-ID")
    assert resolve(make("/", {"x-tenant-id": "acme"})) == "acme"
    assert resolve(make("/")) is None
    assert repr(resolve) == "header('X-Tenant-ID')"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("acme.example.com", "acme"),
        ("ACME.example.com:443", "acme"),
        ("example.com", None),
        ("a.b.example.com", None),
        ("acme.example.org", None),
        ("evil-example.com", None),
    ],
)
def test_subdomain_with_base(host: str, expected: str | None) -> None:
    """subdomain(base) names a tenant only for <one label>.<base>."""
    assert subdomain("example.com")(asgi_view("/", {"Host": host})) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [("acme.example.com", "acme"), ("example.com", None), ("10.1.2.3", None), ("[::1]", None)],
)
def test_subdomain_without_base(host: str, expected: str | None) -> None:
    """subdomain() takes the first label of hosts with 3+ labels, never of an IP."""
    assert subdomain()(wsgi_view("/", {"Host": host})) == expected


def test_state_resolver_accepts_str_int_and_uuid() -> None:
    """state(key) reads the auth layer's value; ints and UUIDs become their str."""
    tenant_uuid = uuid.uuid4()
    assert state("tenant")(asgi_view("/", state={"tenant": "acme"})) == "acme"
    assert state("tenant")(asgi_view("/", state={"tenant": 42})) == "42"
    assert state("tenant")(asgi_view("/", state={"tenant": tenant_uuid})) == str(tenant_uuid)
    assert state("tenant")(asgi_view("/")) is None
    assert state("auth.tenant")(wsgi_view("/", extra={"auth.tenant": "acme"})) == "acme"
    with pytest.raises(TypeError, match="tenant id must be"):
        state("tenant")(asgi_view("/", state={"tenant": True}))


# --- ScopeResolver: resolution + validation ------------------------------------------------


def resolve(resolver: ScopeResolver, view: RequestView, manager: CacheManager) -> Scope:
    result = resolver.resolve(view, manager)
    assert isinstance(result, Binding), result
    return result.scope


IDS = "an id matching [A-Za-z0-9._-]{1,64}"
BAD_IDS = ["../x", "x" * 500, "", "a\x00b", "a\nb", "a\x7fb", "a b", "é", "a:b", "a/b"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_tenant_ids_are_rejected_with_400(bad: str, manager: CacheManager) -> None:
    """Invalid tenant ids (traversal, 500 chars, empty, control characters, ...) -> 400."""
    resolver = ScopeResolver("catalog", header("X-Tenant-ID"))
    result = resolver.resolve(asgi_view("/", {"X-Tenant-ID": bad}), manager)
    expected = f"header X-Tenant-ID: {IDS}"
    assert result == Rejection(400, "invalid tenant id", expected)
    assert json.loads(result.body) == {"error": "invalid tenant id", "expected": expected}


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_plugin_ids_are_rejected_with_400(bad: str, manager: CacheManager) -> None:
    """A custom resolver returning an invalid plugin id -> 400 naming the accepted ids."""
    resolver = ScopeResolver(lambda view: bad)
    assert resolver.resolve(asgi_view("/"), manager) == Rejection(400, "invalid plugin id", IDS)


def test_unknown_plugin_is_404_and_missing_tenant_400(manager: CacheManager) -> None:
    """No plugin -> 404; no tenant while required -> 400; each names what was expected."""
    resolver = ScopeResolver(path_prefix({"/api/b": "b", "/api/a": "a"}), header("X-Tenant-ID"))
    assert resolver.resolve(asgi_view("/b"), manager) == Rejection(
        404, "unknown plugin", "path prefix /api/a or /api/b"
    )
    assert resolver.resolve(asgi_view("/api/a"), manager) == Rejection(
        400, "missing tenant id", "header X-Tenant-ID"
    )
    view = asgi_view("/api/a", {"X-Tenant-ID": "acme"})
    assert resolve(resolver, view, manager) == Scope("a", "acme")


def test_optional_tenant_falls_back_to_the_platform_scope(manager: CacheManager) -> None:
    """tenant_required=False: no tenant -> platform scope; a bad one is still a 400."""
    resolver = ScopeResolver("a", header("X-Tenant-ID"), tenant_required=False)
    assert resolve(resolver, asgi_view("/"), manager) == Scope("a", None)
    bad = asgi_view("/", {"X-Tenant-ID": "../x"})
    assert resolver.resolve(bad, manager) == Rejection(
        400, "invalid tenant id", f"header X-Tenant-ID: {IDS}"
    )


def test_fixed_plugin_without_tenant_reads_nothing_from_the_request(
    manager: CacheManager,
) -> None:
    """A fixed plugin and no tenant resolver resolve even from a bare scope or environ."""
    resolver = ScopeResolver("catalog")
    for result in (
        resolver.resolve_asgi({"type": "http"}, manager),
        resolver.resolve_wsgi({}, manager),
        resolver.resolve(asgi_view("/"), manager),
    ):
        assert isinstance(result, Binding)
        assert result.scope == Scope("catalog", None)


def test_custom_callables_get_a_view_from_either_protocol(manager: CacheManager) -> None:
    """Custom resolvers receive a RequestView whether the request came over ASGI or WSGI."""
    resolver = ScopeResolver(
        lambda view: view.path.strip("/"), lambda view: view.headers.get("x-org")
    )
    asgi_scope = {"type": "http", "path": "/catalog", "headers": [(b"x-org", b"acme")]}
    environ = {"PATH_INFO": "/catalog", "HTTP_X_ORG": "acme"}
    for result in (
        resolver.resolve_asgi(asgi_scope, manager),
        resolver.resolve_wsgi(environ, manager),
    ):
        assert isinstance(result, Binding)
        assert result.scope == Scope("catalog", "acme")


PATHS = st.lists(st.sampled_from(["api", "catalog", "reviews", "", "x.y", "é"]), max_size=4).map(
    lambda parts: "/" + "/".join(parts)
)
VALUES = st.one_of(st.none(), st.sampled_from(["acme", "", "a b", "../x", "é"]))
HOSTS = st.one_of(
    st.none(),
    st.sampled_from(["acme.example.com", "Acme.Example.com:80", "example.com", "[::1]:80"]),
)
BUILTIN_PLUGINS = [
    path_prefix({"/api/catalog": "catalog", "/api": "api"}),
    path_prefix({"/api/catalog": "catalog"}, default="host"),
    path_segment(1),
    path_segment(1, known={"catalog"}, default="host"),
    "catalog",
]
BUILTIN_TENANTS = [
    None,
    header("X-Tenant-ID"),
    subdomain(),
    subdomain("example.com"),
    state("tenant"),
]


@given(
    plugin=st.sampled_from(BUILTIN_PLUGINS),
    tenant=st.sampled_from(BUILTIN_TENANTS),
    path=PATHS,
    value=VALUES,
    host=HOSTS,
)
def test_direct_paths_agree_with_the_view(
    plugin: Any, tenant: Any, path: str, value: str | None, host: str | None
) -> None:
    """Built-in resolvers reading the ASGI scope or WSGI environ directly give the same
    result as the same resolvers called with a RequestView."""
    resolver = ScopeResolver(plugin, tenant, tenant_required=False)
    asgi_headers = [(b"host", host.encode())] if host is not None else []
    environ: dict[str, Any] = {
        "PATH_INFO": path.encode().decode("latin-1"),
        "SERVER_NAME": "server.local",
    }
    if host is not None:
        environ["HTTP_HOST"] = host
    if value is not None:
        asgi_headers.append((b"x-tenant-id", value.encode()))
        environ["HTTP_X_TENANT_ID"] = value.encode().decode("latin-1")
        environ["tenant"] = value
    scope = {
        "type": "http",
        "path": path,
        "headers": asgi_headers,
        "server": ("server.local", 80),
        "state": {} if value is None else {"tenant": value},
    }

    def outcome(result: Binding | Rejection) -> object:
        return result.scope if isinstance(result, Binding) else result

    by_view = outcome(resolver.resolve(RequestView.from_asgi(scope), CACHE_MANAGER))
    assert outcome(resolver.resolve_asgi(scope, CACHE_MANAGER)) == by_view
    by_wsgi_view = outcome(resolver.resolve(RequestView.from_wsgi(environ), CACHE_MANAGER))
    assert outcome(resolver.resolve_wsgi(environ, CACHE_MANAGER)) == by_wsgi_view


def test_bindings_are_reused_per_scope_and_manager(manager: CacheManager) -> None:
    """The same scope resolves to the same binding; another manager gets its own."""
    resolver = ScopeResolver("catalog", header("X-Tenant-ID"))
    view = asgi_view("/", {"X-Tenant-ID": "acme"})
    first = resolver.resolve(view, manager)
    assert resolver.resolve(view, manager) is first
    other = CacheManager()
    rebound = resolver.resolve(view, other)
    assert isinstance(rebound, Binding)
    assert rebound is not first
    assert rebound.manager is other


def test_binding_memo_is_bounded(manager: CacheManager) -> None:
    """Many distinct tenants do not grow the memo without bound."""
    resolver = ScopeResolver("catalog", header("X-Tenant-ID"))
    for i in range(3000):
        resolver.resolve(asgi_view("/", {"X-Tenant-ID": f"t{i}"}), manager)
    assert len(resolver._memo) <= 1024


def test_custom_id_pattern(manager: CacheManager) -> None:
    """id_pattern replaces the default rule, as a string or compiled pattern."""
    resolver = ScopeResolver("catalog", header("X"), id_pattern=r"[a-z0-9]{4,8}")
    assert resolve(resolver, asgi_view("/", {"X": "deadbeef"}), manager).tenant == "deadbeef"
    assert isinstance(resolver.resolve(asgi_view("/", {"X": "ACME"}), manager), Rejection)
    assert isinstance(resolver.resolve(asgi_view("/", {"X": "abc"}), manager), Rejection)
    resolver = ScopeResolver("Catalog.v2", id_pattern=re.compile(r"[A-Za-z0-9.]+"))
    assert resolve(resolver, asgi_view("/"), manager).plugin == "Catalog.v2"


def test_configuration_mistakes_fail_at_construction() -> None:
    """A string tenant (likely meant as a header name), a non-callable resolver, an
    invalid fixed plugin id or a required tenant without a resolver fail when the
    middleware is built."""
    with pytest.raises(TypeError, match=r"header\('X-Tenant-ID'\)"):
        ScopeResolver("a", "X-Tenant-ID")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ScopeResolver("a", 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ScopeResolver(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not match"):
        ScopeResolver("../x")
    with pytest.raises(ValueError, match="needs a tenant resolver"):
        ScopeResolver("a", tenant_required=True)


def test_resolver_returning_a_non_str_is_a_programming_error(manager: CacheManager) -> None:
    """A resolver returning neither str nor None raises TypeError (a 500, not a 400)."""
    resolver = ScopeResolver(lambda view: 42)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="not str"):
        resolver.resolve(asgi_view("/"), manager)


ALLOWED = string.ascii_letters + string.digits + "._-"


@given(st.text(min_size=0, max_size=80))
def test_accepted_ids_are_exactly_the_default_pattern(candidate: str) -> None:
    """Any string is accepted as a tenant id iff it is 1-64 chars of A-Za-z0-9._-."""
    resolver = ScopeResolver("catalog", lambda view: candidate)
    result = resolver.resolve(asgi_view("/"), CACHE_MANAGER)
    expected = 1 <= len(candidate) <= 64 and all(c in ALLOWED for c in candidate)
    assert isinstance(result, Binding) is expected
    assert (DEFAULT_ID_PATTERN.fullmatch(candidate) is not None) is expected


CACHE_MANAGER = CacheManager()


def test_reprs_name_the_configuration() -> None:
    """Resolvers and the ScopeResolver show their configuration in repr()."""
    assert "path_prefix({'/api/a': 'a'}" in repr(path_prefix({"/api/a": "a"}))
    assert repr(path_segment(1)) == "path_segment(1, known=None, default=None)"
    assert repr(subdomain("example.com")) == "subdomain('example.com')"
    assert repr(state("tenant")) == "state('tenant')"
    text = repr(ScopeResolver("a", header("X")))
    assert "header('X')" in text
    assert "tenant_required=True" in text
    assert repr(asgi_view("/p", {"Host": "h"})) == "RequestView(path='/p', host='h')"


# --- exclude= -------------------------------------------------------------------------------


def test_an_excluded_path_is_exact_and_a_trailing_star_is_a_prefix_of_whole_segments() -> None:
    """ "/healthz" excludes only itself; "/docs/*" excludes /docs and what is under /docs/,
    never a longer name such as /healthzz or /docsearch."""
    excluded = excluded_paths(["/healthz", "/docs/*", "/openapi.json"])
    assert excluded is not None
    for path in ("/healthz", "/docs", "/docs/", "/docs/oauth2-redirect", "/openapi.json"):
        assert excluded(path), path
    for path in ("/healthzz", "/healthz/", "/healthz/x", "/docsearch", "/", "/api/docs"):
        assert not excluded(path), path
    assert excluded_paths("/metrics") is not None
    assert excluded_paths("/metrics")("/metrics")  # type: ignore[misc]
    assert excluded_paths("/*")("/anything/at/all")  # type: ignore[misc]
    assert repr(excluded) == "exclude(['/docs/*', '/healthz', '/openapi.json'])"


def test_exclude_takes_a_callable_of_the_path_and_nothing_means_no_check() -> None:
    """A callable is used as given; None or no paths mean no exclusion check at all."""

    def probes(path: str) -> bool:
        return path.startswith("/-/")

    assert excluded_paths(probes) is probes
    assert excluded_paths(None) is None
    assert excluded_paths([]) is None
    assert ScopeResolver("p").exclude is None


@pytest.mark.parametrize(
    ("exclude", "error", "message"),
    [
        (["healthz"], ValueError, "start with '/'"),
        (["/api/*/health"], ValueError, "trailing '/\\*'"),
        (["/docs*"], ValueError, "trailing '/\\*'"),
        ([b"/healthz"], TypeError, "paths \\(str\\) or a callable"),
        (42, TypeError, "paths \\(str\\) or a callable, got 42"),
    ],
)
def test_bad_exclusions_are_refused_at_construction(
    exclude: Any, error: type[Exception], message: str
) -> None:
    """A relative path, a '*' other than a trailing '/*' or a non-string is refused."""
    with pytest.raises(error, match=message):
        ScopeResolver("p", exclude=exclude)


def test_an_excluded_request_resolves_to_none_on_every_path(manager: CacheManager) -> None:
    """resolve, resolve_asgi and resolve_wsgi give None for an excluded path (the app runs
    without a scope) and still refuse the others, matching the path inside the app."""
    resolver = ScopeResolver("p", header("X-Tenant-ID"), exclude=["/healthz"])
    custom = ScopeResolver(lambda view: "p", exclude=["/healthz"])
    asgi = {"type": "http", "path": "/app/healthz", "root_path": "/app", "headers": []}
    assert resolver.resolve_asgi(asgi, manager) is None
    assert custom.resolve_asgi(asgi, manager) is None
    assert resolver.resolve_wsgi({"PATH_INFO": "/healthz"}, manager) is None
    assert resolver.resolve(asgi_view("/healthz"), manager) is None
    refused = resolver.resolve_wsgi({"PATH_INFO": "/healthzz"}, manager)
    assert refused == Rejection(400, "missing tenant id", "header X-Tenant-ID")


def test_rejections_name_their_source_for_every_builtin_resolver(manager: CacheManager) -> None:
    """Each built-in resolver names where it looks; a custom callable names nothing."""
    cases: list[tuple[ScopeResolver, str | None]] = [
        (ScopeResolver("p", subdomain("example.com")), "subdomain of example.com"),
        (ScopeResolver("p", subdomain()), "subdomain"),
        (ScopeResolver("p", state("tenant")), "request state tenant"),
        (ScopeResolver("p", lambda view: None), None),
    ]
    for resolver, expected in cases:
        assert resolver.resolve(asgi_view("/"), manager) == Rejection(
            400, "missing tenant id", expected
        )
    known = ScopeResolver(path_segment(1, known={"reviews", "catalog"}))
    assert known.resolve(asgi_view("/api/x"), manager) == Rejection(
        404, "unknown plugin", "path segment 1: catalog or reviews"
    )
    assert json.loads(Rejection(404, "unknown plugin").body) == {"error": "unknown plugin"}


def test_each_refusal_is_logged_at_debug_with_its_reason(
    manager: CacheManager, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused request logs, at DEBUG on logger cachekit, its path, status, reason and
    what was expected."""
    resolver = ScopeResolver("p", header("X-Tenant-ID"))
    with caplog.at_level(logging.DEBUG, logger="cachekit"):
        resolver.resolve_wsgi({"PATH_INFO": "/api/items"}, manager)
    [record] = [r for r in caplog.records if r.name == "cachekit"]
    assert record.levelno == logging.DEBUG
    assert record.getMessage() == (
        "cachekit: refused '/api/items' with 400: missing tenant id "
        "(expected: header X-Tenant-ID; plugin='p', tenant=None)"
    )
