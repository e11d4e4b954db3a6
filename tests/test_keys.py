"""The key layout: injective, escaped, readable; selectors and glob patterns."""

from __future__ import annotations

import fnmatch
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cachekit.errors import CacheKeyError
from cachekit.keys import (
    ANY,
    KeySpace,
    ScopeIds,
    check_key,
    escape_glob,
    escape_segment,
    parse_scope,
    scope_of,
    unescape_segment,
)

ids = st.text(min_size=1, max_size=12)
# Bias towards the characters that matter: separators, escapes, globs.
tricky = st.text(alphabet=":%*?[]\\^ \x00\x7fa", min_size=1, max_size=6)
segment_ids = st.one_of(ids, tricky)
keys = st.one_of(st.text(min_size=1, max_size=12), st.text(alphabet=":%*a", min_size=1))
scopes = st.tuples(
    segment_ids, st.one_of(st.none(), segment_ids), st.one_of(st.none(), segment_ids)
)


def full_key(space: KeySpace, scope: tuple[str, str | None, str | None], key: str) -> str:
    plugin, tenant, namespace = scope
    return space.scope_prefix(plugin, tenant, namespace) + key


@settings(max_examples=500)
@given(scopes, keys, scopes, keys)
@example(("a:b", "c", None), "k", ("a", "b:c", None), "k")
@example(("a", "b", "c:d"), "k", ("a", "b", "c"), "d:k")
@example(("a", "%platform", None), "k", ("a", None, None), "k")
@example(("a", "t", None), ":k", ("a", "t", ":"), "k")
def test_layout_is_injective(
    a: tuple[str, str | None, str | None], ka: str, b: tuple[str, str | None, str | None], kb: str
) -> None:
    """Two different (plugin, tenant, namespace, key) tuples never share a full key."""
    space = KeySpace("app:")
    if (a, ka) != (b, kb):
        assert full_key(space, a, ka) != full_key(space, b, kb)


@given(segment_ids)
def test_segments_never_contain_a_separator(value: str) -> None:
    """An escaped id has no raw ':', so segment boundaries are unambiguous."""
    assert ":" not in escape_segment(value)


@given(segment_ids)
def test_escaping_can_be_undone(value: str) -> None:
    """Percent-decoding an escaped id gives the id back."""
    decoded = re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m[1], 16)), escape_segment(value))
    assert decoded == value
    assert unescape_segment(escape_segment(value)) == value


@given(segment_ids)
def test_platform_marker_is_no_tenant_segment(tenant: str) -> None:
    """No tenant id encodes to the platform marker."""
    space = KeySpace()
    assert space.scope_prefix("p", tenant, None) != space.scope_prefix("p", None, None)


def test_keys_stay_readable() -> None:
    """Ordinary ids read as-is in redis-cli."""
    space = KeySpace("my-app:")
    assert space.scope_prefix("catalog", "acme", "users") + "42" == "my-app:catalog:acme:users:42"
    assert space.scope_prefix("catalog", None, None) == "my-app:catalog:%platform::"


@pytest.mark.parametrize("bad", ["", None, 3, b"x"])
@pytest.mark.parametrize("part", ["plugin", "tenant", "namespace"])
def test_bad_ids_raise(part: str, bad: object) -> None:
    """Empty or non-str plugin ids, tenant ids and namespaces raise CacheKeyError."""
    args: dict[str, object] = {"plugin": "p", "tenant": "t", "namespace": "n", part: bad}
    if part != "plugin" and bad is None:
        return  # None is the platform tenant / the default namespace
    with pytest.raises(CacheKeyError, match=part.replace("plugin", "plugin id")):
        KeySpace().scope_prefix(args["plugin"], args["tenant"], args["namespace"])  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", None, 1, b"k"])
def test_bad_user_keys_raise(bad: object) -> None:
    """check_key accepts only non-empty str."""
    with pytest.raises(CacheKeyError):
        check_key(bad)  # type: ignore[arg-type]


def test_scope_of() -> None:
    """scope_of cuts a full key after its namespace segment, past any global prefix."""
    assert scope_of("p:t:ns:key:with:colons") == "p:t:ns:"
    assert scope_of("a:b:p:t::k", prefix_length=4) == "a:b:p:t::"


@settings(max_examples=300)
@given(scopes, keys)
@example(("a:b", "%platform", "c%3Ad"), "x:y")
def test_parse_scope_reads_back_the_ids(
    scope: tuple[str, str | None, str | None], key: str
) -> None:
    """parse_scope gives back the (plugin, tenant, namespace) a full key, or its scope
    prefix, was built from, under a global prefix."""
    space = KeySpace("app:")
    full = full_key(space, scope, key)
    assert parse_scope(full, "app:") == ScopeIds(*scope)
    assert parse_scope(scope_of(full, len("app:")), "app:") == ScopeIds(*scope)


@pytest.mark.parametrize(
    ("full", "prefix"), [("p:t:ns", ""), ("p:t", ""), ("other:p:t:ns:k", "app:"), ("", "")]
)
def test_parse_scope_rejects_foreign_keys(full: str, prefix: str) -> None:
    """A key not laid out by cachekit under the prefix is a ValueError, not a wrong scope."""
    with pytest.raises(ValueError, match="not a cachekit key"):
        parse_scope(full, prefix)


@given(st.text(max_size=10), st.text(max_size=10))
def test_escaped_glob_matches_only_itself(text: str, other: str) -> None:
    """An escaped pattern matches exactly its own text (checked with a glob model)."""
    pattern = escape_glob(text)
    assert _redis_glob(pattern, text)
    if other != text:
        assert not _redis_glob(pattern, other)


def _redis_glob(pattern: str, text: str) -> bool:
    """A model of Redis glob matching with backslash escapes (enough for this test)."""
    regex, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            regex += re.escape(pattern[i + 1])
            i += 2
            continue
        regex += {"*": ".*", "?": "."}.get(c, re.escape(c))
        i += 1
    return re.fullmatch(regex, text, re.DOTALL) is not None


class TestSelector:
    space = KeySpace("app:")

    def key(self, plugin: str, tenant: str | None, ns: str | None = None) -> str:
        return self.space.scope_prefix(plugin, tenant, ns) + "k"

    def test_plugin_selector(self) -> None:
        """A plugin selector takes every tenant and the platform scope of that plugin."""
        sel = self.space.selector("a")
        assert sel.matches(self.key("a", "t1"))
        assert sel.matches(self.key("a", None, "ns"))
        assert not sel.matches(self.key("ab", "t1"))
        assert sel.literal_prefix() == "app:a:"

    def test_tenant_selector_is_exact(self) -> None:
        """A tenant selector takes that tenant in every plugin, not a namespace of that name."""
        sel = self.space.selector(tenant="acme")
        assert sel.matches(self.key("a", "acme"))
        assert sel.matches(self.key("b", "acme", "x"))
        assert not sel.matches(self.key("a", "t1", "acme"))
        assert not sel.matches(self.key("a", None))

    def test_glob_covers_every_selected_key(self) -> None:
        """The MATCH pattern is a superset filter: every selected key matches it."""
        for sel, key in [
            (self.space.selector("a*", "[t]"), self.key("a*", "[t]", "n")),
            (self.space.selector(tenant="?"), self.key("x", "?")),
            (self.space.selector("p", None, None), self.key("p", None)),
        ]:
            assert sel.matches(key)
            assert _redis_glob(sel.glob(), key)

    def test_glob_escapes_ids(self) -> None:
        """A tenant called '*' yields an escaped pattern that cannot match other tenants."""
        pattern = self.space.selector("p", "*").glob()
        assert pattern == "app:p:\\*:*"
        assert not _redis_glob(pattern, self.key("p", "other"))

    def test_namespace_selector(self) -> None:
        """Selecting the default namespace excludes named ones, and the reverse."""
        default = self.space.selector("p", "t", None)
        named = self.space.selector("p", "t", "ns")
        assert default.matches(self.key("p", "t"))
        assert not default.matches(self.key("p", "t", "ns"))
        assert named.matches(self.key("p", "t", "ns"))
        assert not named.matches(self.key("p", "t"))

    def test_selector_rejects_foreign_keys(self) -> None:
        """Keys outside the prefix or not in the layout never match."""
        sel = self.space.selector(ANY, ANY, ANY)
        assert not sel.matches("other:p:t::k")
        assert not sel.matches("app:no-separators")


def test_fnmatch_sanity() -> None:
    """The glob model agrees with fnmatch on unescaped patterns (guards the model itself)."""
    for pattern, text in [("a*b", "axxb"), ("a?c", "abc"), ("a*", "b")]:
        assert _redis_glob(pattern, text) == fnmatch.fnmatchcase(text, pattern)


@pytest.mark.parametrize("text", ["k\ud800", "\udfff", "ok\udc80ok"], ids=repr)
def test_lone_surrogates_are_cache_key_errors(text: str) -> None:
    """A key or id with a lone surrogate (no store can encode it) is a CacheKeyError saying
    where to fix the text, not a UnicodeEncodeError from a driver."""
    with pytest.raises(CacheKeyError, match=r"lone surrogate .* decode"):
        check_key(text)
    for what in ("plugin id", "tenant id", "namespace"):
        with pytest.raises(CacheKeyError, match=what):
            escape_segment(text, what)
    with pytest.raises(CacheKeyError, match="surrogate"):
        KeySpace().scope_prefix("p", text, None)


def test_valid_unicode_keys_pass() -> None:
    """Non-ASCII keys and ids that are valid unicode (astral characters too) are accepted."""
    assert check_key("ü∂ñí 🎉") == "ü∂ñí 🎉"
    assert escape_segment("tënant🎉")
