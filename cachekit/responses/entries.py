"""The stored form of cached responses, and the pure choices made on it.

One entry per response key (:func:`cachekit.responses.keys.response_key`) holds the
*variants* of that resource: one per combination of the values of the headers it varies
on (its ``Vary`` plus the endpoint's ``vary=``), as Varnish keeps them. A lookup reads the
entry once and picks the variant whose recorded header values equal the request's (RFC
9111 section 4.1). Each variant is a plain list, so every store's codec keeps it::

    [vary names, their values, status, headers, body, stored at, fresh until,
     stale-while-revalidate until, stale-if-error until, {tag key: generation}]

A variant is served only while every tag it was stored under still has the generation it
had then (:mod:`cachekit.responses.tags`): bumping a tag's generation invalidates its
responses in one write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["ERROR", "FRESH", "STALE", "merge", "select", "served_headers", "usable"]

Variant = list[Any]
Entry = list[Variant]

NAMES, VALUES, STATUS, HEADERS, BODY, STORED, FRESH_UNTIL, STALE_UNTIL, ERROR_UNTIL, TAGS = range(
    10
)
MAX_VARIANTS: Final = 16

# how a variant may be served (its X-Cache value): fresh; stale while it is refreshed;
# stale only in place of an error
FRESH: Final = "HIT"
STALE: Final = "STALE"
ERROR: Final = "ERROR"

# not stored: hop-by-hop fields (RFC 9110 section 7.6.1) and those computed when served
_UNSTORED: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "age",
        "x-cache",
    }
)


def variant(
    names: list[str],
    headers_in: Mapping[str, str],
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    now: float,
    until: tuple[float, float, float],
    tags: dict[str, int],
) -> Variant:
    """A variant to store: the response, the request's values of the ``names`` it varies
    on, and when it stops being fresh / servable stale / servable in place of an error."""
    kept = [[name, value] for name, value in headers if name.lower() not in _UNSTORED]
    values = [headers_in.get(name) for name in names]
    return [names, values, status, kept, body, now, *until, tags]


def _matches(stored: Variant, headers_in: Mapping[str, str]) -> bool:
    return all(
        headers_in.get(name) == value
        for name, value in zip(stored[NAMES], stored[VALUES], strict=True)
    )


def usable(stored: Variant, generations: Mapping[str, int]) -> bool:
    """Whether no tag of ``stored`` was invalidated since it was stored (a tag whose
    counter is gone counts as invalidated)."""
    return all(generations.get(key) == gen for key, gen in stored[TAGS].items())


def select(
    entry: Any,
    headers_in: Mapping[str, str],
    generations: Mapping[str, int],
    now: float,
    max_age: int | None = None,
) -> tuple[Variant | None, str | None]:
    """The variant of ``entry`` for a request with ``headers_in``, and how it may be
    served (:data:`FRESH`, :data:`STALE`, :data:`ERROR`), or ``(None, None)``. Anything
    but a list of variants (another writer's value) is a miss."""
    if type(entry) is not list:
        return None, None
    for stored in entry:
        if not _matches(stored, headers_in) or not usable(stored, generations):
            continue
        if max_age is not None and now - stored[STORED] > max_age:
            return None, None
        if now < stored[FRESH_UNTIL]:
            return stored, FRESH
        if now < stored[STALE_UNTIL]:
            return stored, STALE
        if now < stored[ERROR_UNTIL]:
            return stored, ERROR
        return None, None
    return None, None


def any_fresh(entry: Any, now: float) -> bool:
    """Whether some variant of ``entry`` is fresh (what a process waiting for another's
    computation looks for)."""
    return type(entry) is list and any(now < stored[FRESH_UNTIL] for stored in entry)


def merge(entry: Any, new: Variant, now: float) -> tuple[Entry, float]:
    """``entry`` with ``new`` in place of the variant for the same header values and
    without expired ones (at most :data:`MAX_VARIANTS`, the newest kept), and the seconds
    the store should keep it."""
    kept = [new]
    if type(entry) is list:
        kept += [
            stored
            for stored in entry
            if stored[ERROR_UNTIL] > now
            and (stored[NAMES], stored[VALUES]) != (new[NAMES], new[VALUES])
        ][: MAX_VARIANTS - 1]
    keep = max(max(stored[FRESH_UNTIL : ERROR_UNTIL + 1]) for stored in kept) - now
    return kept, keep


def served_headers(stored: Variant, now: float, state: str) -> list[tuple[str, str]]:
    """The headers of a stored response served now: its own plus ``Age`` and
    ``X-Cache`` (``HIT`` or ``STALE``)."""
    age = max(0, int(now - stored[STORED]))
    x_cache = FRESH if state == FRESH else STALE
    return [
        *((name, value) for name, value in stored[HEADERS]),
        ("age", str(age)),
        ("x-cache", x_cache),
    ]
