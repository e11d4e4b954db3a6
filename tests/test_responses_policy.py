"""The pure parts of response caching: RFC 9111 rules, keys, the stored variants, option
checks; and the engine driven directly (no server) where a rule needs a store state."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cachekit.errors import CacheKeyError, CacheValueError, ConfigError, NoScopeError
from cachekit.host import CacheManager, scope
from cachekit.responses import cache_response, entries, invalidate_tags, response_cache
from cachekit.responses.engine import Fetched, Served
from cachekit.responses.keys import NAMESPACE, normal_query, response_key, tag_key
from cachekit.responses.options import by_prefix, match
from cachekit.responses.policy import (
    Request,
    Rules,
    cache_control,
    matches_etag,
    not_modified_since,
    vary_names,
)
from cachekit.steps import run


def get(path: str = "/p", query: str = "", **headers: str) -> Request:
    return Request("GET", path, query, {k.replace("_", "-"): v for k, v in headers.items()})


def test_cache_control_parses_directives() -> None:
    """Names are lower-cased, arguments unquoted, the first of a repeated directive wins."""
    assert cache_control('Max-Age=60, private, s-maxage="30", max-age=5') == {
        "max-age": "60",
        "private": None,
        "s-maxage": "30",
    }
    assert cache_control(None) == {}


def test_vary_names_are_lower_case_and_unique() -> None:
    """Vary values are split, lower-cased and de-duplicated in order."""
    assert vary_names(["Accept-Encoding, accept-language", "ACCEPT-ENCODING"]) == [
        "accept-encoding",
        "accept-language",
    ]


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        ("GET", {}, (True, True, None)),
        ("HEAD", {}, (True, False, None)),
        ("POST", {}, None),
        ("GET", {"authorization": "Bearer x"}, None),
        ("GET", {"cache-control": "no-store"}, None),
        ("GET", {"cache-control": "no-cache"}, (False, True, None)),
        ("GET", {"cache-control": "max-age=0"}, (False, True, 0)),
        ("GET", {"cache-control": "max-age=30"}, (True, True, 30)),
        ("GET", {"pragma": "no-cache"}, (False, True, None)),
    ],
)
def test_what_a_request_allows(method: str, headers: dict[str, str], expected: object) -> None:
    """Only GET and HEAD; Authorization and no-store pass through; no-cache and max-age=0
    ask the app but store; HEAD serves but does not store."""
    lookup = Rules(ttl=60).lookup(Request(method, "/p", "", headers), "k", [])
    got = None if lookup is None else (lookup.serve, lookup.store, lookup.max_age)
    assert got == expected


def test_authorized_and_ignoring_the_client() -> None:
    """authorized=True serves requests with Authorization; honour_client=False ignores
    no-store and no-cache."""
    rules = Rules(ttl=60, authorized=True, honour_client=False)
    lookup = rules.lookup(get(authorization="x", cache_control="no-store, no-cache"), "k", [])
    assert lookup is not None
    assert lookup.serve


@pytest.mark.parametrize(
    ("status", "headers", "ttl"),
    [
        (200, {}, 60),
        (404, {}, 60),
        (500, {}, None),
        (206, {}, None),
        (200, {"set-cookie": "a=b"}, None),
        (200, {"vary": "Accept, *"}, None),
        (200, {"cache-control": "private"}, None),
        (200, {"cache-control": "no-store"}, None),
        (200, {"cache-control": "no-cache"}, None),
        (200, {"cache-control": "max-age=0"}, None),
        (200, {"cache-control": "max-age=10"}, 10),
        (200, {"cache-control": "max-age=10, s-maxage=20"}, 20),
        (200, {"cache-control": "max-age=600"}, 60),
        (200, {"cache-control": "max-age=ten"}, 60),
    ],
)
def test_which_responses_are_stored_and_for_how_long(
    status: int, headers: dict[str, str], ttl: int | None
) -> None:
    """Cacheable statuses only; never Set-Cookie, Vary: *, private, no-store, no-cache;
    s-maxage, else max-age, bounds the ttl (an invalid one is ignored)."""
    freshness = Rules(ttl=60).freshness(status, headers)
    assert (None if freshness is None else freshness.ttl) == ttl


def test_stale_windows_come_from_the_response_or_the_rules() -> None:
    """The response's stale-while-revalidate / stale-if-error win over the endpoint's;
    must-revalidate allows no stale serving."""
    rules = Rules(ttl=60, stale_while_revalidate=5, stale_if_error=7)
    own = rules.freshness(200, {"cache-control": "stale-while-revalidate=9"})
    assert own is not None
    assert (own.stale_while_revalidate, own.stale_if_error) == (9, 7)
    strict = rules.freshness(200, {"cache-control": "must-revalidate"})
    assert strict is not None
    assert (strict.stale_while_revalidate, strict.stale_if_error) == (0, 0)


def test_etag_matching_is_weak() -> None:
    """W/"a" matches "a"; * matches anything; a list is searched."""
    assert matches_etag('W/"a"', '"a"')
    assert matches_etag('"x", "a"', '"a"')
    assert matches_etag("*", None)
    assert not matches_etag('"b"', '"a"')


def test_if_modified_since_compares_last_modified_or_the_storing_time() -> None:
    """A date at or after Last-Modified (or, without one, the storing time) is not modified;
    an invalid date never is."""
    modified = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert not_modified_since(modified, modified, 0)
    assert not not_modified_since("Tue, 20 Oct 2015 07:28:00 GMT", modified, 0)
    assert not_modified_since("Wed, 21 Oct 2015 07:28:00 GMT", None, 1445412480.0)
    assert not not_modified_since("yesterday", modified, 0)


def test_the_query_has_a_normal_form() -> None:
    """Order and percent-encoding do not make two keys; values and repeats do."""
    assert normal_query("b=2&a=1") == normal_query("a=%31&b=2")
    assert normal_query("a=1&a=2") != normal_query("a=1")
    assert response_key("/p", "q=apple") != response_key("/p", "q=pear")
    assert len(response_key("/p", "x=" + "y" * 500)) < 200


def _variant(headers_in: dict[str, str], names: list[str], now: float) -> entries.Variant:
    return entries.variant(
        names, headers_in, 200, [], b"b", now, (now + 10, now + 20, now + 30), {}
    )


def test_select_picks_the_variant_of_the_request_headers_and_its_state() -> None:
    """The variant whose recorded Vary values equal the request's, fresh, then stale, then
    only in place of an error, then nothing."""
    de = _variant({"accept-language": "de"}, ["accept-language"], 0)
    fr = _variant({"accept-language": "fr"}, ["accept-language"], 0)
    entry = [de, fr]
    assert entries.select(entry, {"accept-language": "fr"}, {}, 5) == (fr, entries.FRESH)
    assert entries.select(entry, {"accept-language": "de"}, {}, 15) == (de, entries.STALE)
    assert entries.select(entry, {"accept-language": "de"}, {}, 25) == (de, entries.ERROR)
    assert entries.select(entry, {"accept-language": "de"}, {}, 35) == (None, None)
    assert entries.select(entry, {"accept-language": "it"}, {}, 5) == (None, None)
    assert entries.select("another writer's value", {}, {}, 5) == (None, None)


def test_a_variant_with_a_changed_or_missing_tag_generation_is_not_served() -> None:
    """A variant stored under generation 3 of a tag is served at 3, not at 4 nor when the
    counter is gone."""
    stored = entries.variant([], {}, 200, [], b"b", 0, (10, 10, 10), {"t|a": 3})
    assert entries.select([stored], {}, {"t|a": 3}, 1)[1] == entries.FRESH
    assert entries.select([stored], {}, {"t|a": 4}, 1) == (None, None)
    assert entries.select([stored], {}, {}, 1) == (None, None)


def test_merge_replaces_the_same_variant_and_drops_expired_ones() -> None:
    """A new variant replaces the one for the same values; expired ones go; at most
    MAX_VARIANTS are kept; the TTL lasts to the latest stale-if-error end."""
    old = _variant({"x": "1"}, ["x"], 0)
    gone = _variant({"x": "2"}, ["x"], -100)
    new = _variant({"x": "1"}, ["x"], 5)
    merged, keep = entries.merge([old, gone], new, 5)
    assert merged == [new]
    assert keep == 30
    many = [_variant({"x": str(i)}, ["x"], 5) for i in range(40)]
    assert len(entries.merge(many, new, 5)[0]) == entries.MAX_VARIANTS


def test_bad_options_fail_when_applied() -> None:
    """ttl=0, a bad max_body_bytes, an empty vary name or a bad prefix are typed errors
    when the decorator or the option is built."""
    with pytest.raises(CacheValueError, match="ttl > 0"):
        cache_response(ttl=0)
    with pytest.raises(CacheValueError, match="max_body_bytes"):
        response_cache(60, max_body_bytes=0)
    with pytest.raises(CacheValueError, match="vary="):
        cache_response(ttl=60, vary=("",))
    with pytest.raises(ConfigError, match="starts with '/'"):
        by_prefix({"api": 60})


def test_prefixes_match_whole_segments_longest_first() -> None:
    """/api/v2 wins over /api for its paths; /apiary is under neither; / is every path."""
    api, v2 = response_cache(60), response_cache(30)
    prefixes = by_prefix({"/api": api, "/api/v2": v2})
    assert match(prefixes, "/api/v2/x") is v2
    assert match(prefixes, "/api") is api
    assert match(prefixes, "/apiary") is None
    assert match(by_prefix({"/": api}), "/anything") is api


@pytest.fixture
def manager() -> Iterator[CacheManager]:
    manager = CacheManager()
    yield manager
    manager.close()


def _respond(engine: object, request: Request, body: bytes) -> Served | Fetched:
    from cachekit.responses.engine import ResponseCache

    assert isinstance(engine, ResponseCache)
    lookup = engine.lookup(request)
    assert lookup is not None

    def fetch() -> Fetched:
        return Fetched(200, [("content-type", "text/plain")], body)

    return run(engine.respond(engine.cache(), lookup, fetch, fetch))


def test_an_expired_tag_counter_invalidates_rather_than_revives(manager: CacheManager) -> None:
    """When a tag's counter is gone (expired, evicted) its responses are misses, and a new
    counter never starts at a generation they recorded."""
    engine = response_cache(60, tags=("t",))
    with scope(plugin="p", tenant="a", manager=manager):
        _respond(engine, get(), b"one")
        hit = _respond(engine, get(), b"two")
        assert isinstance(hit, Served)
        assert hit.body == b"one"
        manager.for_plugin("p", "a").namespace(NAMESPACE).delete(tag_key("t"))
        again = _respond(engine, get(), b"three")
        assert isinstance(again, Served)
        assert (again.body, dict(again.headers)["x-cache"]) == (b"three", "MISS")


def test_a_tag_template_naming_no_path_parameter_is_a_clear_error() -> None:
    """tags=("item:{item_id}",) on a request without that parameter names the fields."""
    engine = response_cache(60, tags=("item:{item_id}",))
    with pytest.raises(CacheKeyError, match="item_id"):
        engine.lookup(get())


def test_invalidate_tags_checks_its_input_and_needs_a_scope() -> None:
    """An empty tag is a CacheKeyError; outside a scope a NoScopeError."""
    with pytest.raises(CacheKeyError):
        invalidate_tags("")
    with pytest.raises(NoScopeError):
        invalidate_tags("x")
