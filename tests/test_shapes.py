"""Structured values by annotation (cachekit.shapes): dataclasses, NamedTuples, TypedDicts,
pydantic v2 models and enums, nested, through Cache.get/set(type=...) and @cached's return
annotation, on the memory store and a real Redis, sync and async; values stored by an
older version of a type read as misses."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import logging
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple, Optional, TypedDict

import pydantic
import pytest

from cachekit import MISS, cached
from cachekit.cache import Cache, unreadable_log
from cachekit.errors import CacheValueError
from cachekit.host import CacheManager, scope
from cachekit.shapes import ShapeMismatch, as_shape, returned_shape, shape_of
from cachekit.testing import FakeClock

# --- the types ------------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Address:
    city: str
    zip: int = 0


@dataclasses.dataclass
class User:
    name: str
    address: Address
    tags: tuple[str, ...] = ()
    color: Color = Color.RED
    friends: list[User] = dataclasses.field(default_factory=list)
    score: float = 0.0


@dataclasses.dataclass
class Counted:
    """A dataclass with a field its __post_init__ computes (init=False)."""

    items: list[int]
    total: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.total = sum(self.items)


@dataclasses.dataclass
class Span:
    bounds: tuple[int, int]


class Point(NamedTuple):
    x: int
    y: int = 0


class Row(TypedDict):
    id: int
    points: list[Point]
    level: Level


class Item(pydantic.BaseModel):
    id: int
    name: str
    color: Color = Color.BLUE
    address: Address | None = None
    sizes: list[int] = []


class Order(pydantic.BaseModel):
    items: list[Item]
    owner: User | None = None


@dataclasses.dataclass
class Invoice:
    """Fields of the codec's built-in types (datetime, date, timedelta, Decimal, UUID)."""

    id: uuid.UUID
    issued: datetime
    due: date
    term: timedelta
    total: Decimal


class Receipt(pydantic.BaseModel):
    id: uuid.UUID
    paid: datetime
    amount: Decimal
    lines: tuple[str, ...] = ()


INVOICE = Invoice(
    uuid.UUID(int=7),
    datetime(2026, 12, 3, 9, 30, 0, 123456, tzinfo=UTC),
    date(2027, 1, 2),
    timedelta(days=30),
    Decimal("19.90"),
)
RECEIPT = Receipt(
    id=uuid.UUID(int=8), paid=datetime(2026, 12, 3, 10, 0), amount=Decimal("1.10"), lines=("a",)
)

ANN = User("ann", Address("Oslo", 150), ("admin",), Color.BLUE, [User("bob", Address("Bergen"))])

# (id, annotation, value, plain form the codec stores)
CASES: list[tuple[str, Any, Any, Any]] = [
    ("enum", Color, Color.BLUE, "blue"),
    ("int-enum", Level, Level.HIGH, 2),
    ("dataclass", Address, Address("Oslo", 150), {"city": "Oslo", "zip": 150}),
    ("dataclass-nested-recursive", User, ANN, None),  # plain: test_plain_form_of_a_dataclass
    ("dataclass-init-false", Counted, Counted([1, 2]), {"items": [1, 2]}),
    ("namedtuple", Point, Point(3, 4), {"x": 3, "y": 4}),
    (
        "typeddict",
        Row,
        {"id": 1, "points": [Point(1)], "level": Level.LOW},
        {"id": 1, "points": [{"x": 1, "y": 0}], "level": 1},
    ),
    (
        "pydantic",
        Item,
        Item(id=1, name="a", address=Address("Oslo")),
        {
            "id": 1,
            "name": "a",
            "color": "blue",
            "address": {"city": "Oslo", "zip": 0},
            "sizes": [],
        },
    ),
    (
        "pydantic-nested",
        Order,
        Order(items=[Item(id=1, name="a"), Item(id=2, name="b", sizes=[3])], owner=ANN),
        None,
    ),
    ("list-of-dataclass", list[Address], [Address("a"), Address("b", 2)], None),
    ("dict-of-model", dict[str, Item], {"x": Item(id=1, name="x")}, None),
    ("dict-enum-keys", dict[Color, int], {Color.RED: 1}, {"red": 1}),
    ("optional-none", Optional[User], None, None),  # noqa: UP045  # the typing spelling too
    ("optional-value", User | None, ANN, None),
    ("union-first-fit", int | Address, Address("x"), {"city": "x", "zip": 0}),
    ("union-plain-arm", int | Address, 7, 7),
    ("fixed-plain-tuple-field", Span, Span((1, 5)), None),  # the codec's tuple form
    ("fixed-tuple", tuple[Point, Color], (Point(1, 2), Color.RED), [{"x": 1, "y": 2}, "red"]),
    ("set-of-enum", set[Color], {Color.RED, Color.BLUE}, None),
    ("list-of-optional-model", list[Item | None], [None, Item(id=3, name="c")], None),
    ("dataclass-builtin-types", Invoice, INVOICE, None),
    ("pydantic-builtin-types", Receipt, RECEIPT, None),
]
IDS = [case[0] for case in CASES]


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def manager(request: pytest.FixtureRequest) -> Iterator[CacheManager]:
    if request.param == "memory":
        m = CacheManager()
    else:
        url = request.getfixturevalue("redis_server").url
        m = CacheManager.from_config({"backend": {"cache": {"store": "redis", "connection": url}}})
    yield m
    m.close()


@pytest.fixture
def cache(manager: CacheManager) -> Cache:
    """A scope of its own (the Redis server is shared by the session)."""
    return manager.for_plugin("shapes", tenant=uuid.uuid4().hex)


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def call(manager: CacheManager, mode: str, cache: Cache, name: str, *args: Any) -> Any:
    """``cache.name(*args)``, or ``await cache.aname(*args)`` in a loop of its own."""
    if mode == "sync":
        return getattr(cache, name)(*args)

    async def run() -> Any:
        try:
            return await getattr(cache, "a" + name)(*args)
        finally:
            await manager.aclose()

    return asyncio.run(run())


def decorated(
    manager: CacheManager,
    mode: str,
    annotation: Any,
    results: Callable[[], Any],
    namespace: str,
    tenant: str | None = None,
) -> Callable[[int], Any]:
    """A @cached function returning ``results()`` annotated ``-> annotation``; calling the
    returned callable calls it in ``mode``, in ``tenant``'s scope (default: a new one)."""
    tenant = tenant or uuid.uuid4().hex

    def sync_fn(i: int) -> Any:
        return results()

    async def async_fn(i: int) -> Any:
        return results()

    fn: Any = sync_fn if mode == "sync" else async_fn
    fn.__annotations__["return"] = annotation
    wrapped = cached(namespace=namespace, ttl=60)(fn)

    def invoke(i: int) -> Any:
        with scope(plugin="shapes", tenant=tenant, manager=manager):
            if mode == "sync":
                return wrapped(i)

            async def run() -> Any:
                try:
                    return await wrapped(i)
                finally:
                    await manager.aclose()

            return asyncio.run(run())

    return invoke


def unreadable(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The unreadable-value log on a fake clock (its period does not pass mid-test)."""
    fake = FakeClock()
    monkeypatch.setattr(unreadable_log, "clock", fake)
    return fake


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize(("annotation", "value"), [c[1:3] for c in CASES], ids=IDS)
def test_cache_round_trip_by_type(
    manager: CacheManager, cache: Cache, mode: str, annotation: Any, value: Any
) -> None:
    """set(type=T) then get(type=T) gives back an equal value of the same type."""
    call(manager, mode, cache, "set", "k", value, None, annotation)
    back = call(manager, mode, cache, "get", "k", MISS, annotation)
    assert back == value
    assert type(back) is type(value)


@pytest.mark.parametrize(("annotation", "value"), [c[1:3] for c in CASES], ids=IDS)
def test_cached_rebuilds_the_return_annotation(
    manager: CacheManager, mode: str, annotation: Any, value: Any
) -> None:
    """A @cached function annotated -> T returns an equal T from its hit, computed once."""
    computed: list[int] = []

    def results() -> Any:
        computed.append(1)
        return value

    fn = decorated(manager, mode, annotation, results, namespace="round-trip")
    first, second = fn(1), fn(1)
    assert first == value
    assert second == value
    assert type(second) is type(value)
    assert computed == [1]


@pytest.mark.parametrize(
    ("annotation", "value", "plain"),
    [c[1:] for c in CASES if c[3] is not None],
    ids=[c[0] for c in CASES if c[3] is not None],
)
def test_plain_forms(cache: Cache, annotation: Any, value: Any, plain: Any) -> None:
    """What is stored is the documented plain form (a dict of fields, an enum's value, a
    pydantic model's python-mode dump), readable without the type."""
    cache.set("k", value, type=annotation)
    assert cache.get("k") == plain


def test_plain_form_of_a_dataclass(cache: Cache) -> None:
    """A dataclass is stored as the dict of its fields, nested ones as dicts, enums as their
    values (a tuple field is left to the codec's own tuple form)."""
    cache.set("k", ANN, type=User)
    stored = json.loads(json.dumps(cache.get("k")))  # a tuple, as the codec stores it, a list
    assert stored == {
        "name": "ann",
        "tags": ["admin"],
        "address": {"city": "Oslo", "zip": 150},
        "color": "blue",
        "friends": [
            {
                "name": "bob",
                "address": {"city": "Bergen", "zip": 0},
                "tags": [],
                "color": "red",
                "friends": [],
                "score": 0.0,
            }
        ],
        "score": 0.0,
    }


def test_get_many_and_set_many_by_type(manager: CacheManager, cache: Cache, mode: str) -> None:
    """get_many(type=T) rebuilds every value found and leaves out one that does not fit."""
    call(manager, mode, cache, "set_many", {"a": Address("a"), "b": Address("b")}, None, Address)
    cache.set("c", {"city": 3})  # a dict that is no Address
    found = call(manager, mode, cache, "get_many", ["a", "b", "c", "d"], Address)
    assert found == {"a": Address("a"), "b": Address("b")}


def test_get_or_set_and_add_by_type(manager: CacheManager, cache: Cache, mode: str) -> None:
    """get_or_set and add take the type as set and get do."""
    got = call(manager, mode, cache, "get_or_set", "k", lambda: Point(1, 2), None, Point)
    assert got == Point(1, 2)
    assert call(manager, mode, cache, "get", "k", MISS, Point) == Point(1, 2)
    assert call(manager, mode, cache, "add", "n", Color.RED, None, Color) is True
    assert cache.get("n", type=Color) is Color.RED


# --- what needs no shape --------------------------------------------------------------------


@pytest.mark.parametrize(
    "annotation",
    [
        int,
        str,
        bytes,
        dict,
        list,
        list[dict],
        dict[str, Any],
        Any,
        Optional[int],  # noqa: UP045  # the typing spelling too
        list[int],
        tuple[int, str],
        int | None,
    ],
)
def test_plain_annotations_have_no_shape(annotation: Any) -> None:
    """Annotations with no structured type in them produce no shape: @cached keeps its
    plain hit path."""

    def fn() -> None: ...

    fn.__annotations__["return"] = annotation
    assert returned_shape(fn) is None
    assert shape_of(annotation) is None


def test_no_return_annotation_has_no_shape() -> None:
    """A function without a return annotation has no shape."""

    def fn(): ...  # type: ignore[no-untyped-def]

    assert returned_shape(fn) is None


# --- nothing unsafe, nothing silent ---------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [ANN, Item(id=1, name="a"), [Item(id=1, name="a")], {"u": Address("x")}],
    ids=["dataclass", "pydantic", "list-of-models", "dict-of-dataclass"],
)
def test_structured_value_without_type_is_refused(cache: Cache, value: Any) -> None:
    """Setting a dataclass or model without its type is a CacheValueError naming the type
    and the fix, and writes nothing."""
    for setter in (cache.set, cache.add):
        with pytest.raises(CacheValueError, match=r"without its type.*type="):
            setter("k", value)
    with pytest.raises(CacheValueError, match="without its type"):
        asyncio.run(cache.aset("k", value))
    with pytest.raises(CacheValueError, match="without its type"):
        cache.set_many({"k": value})
    assert cache.get("k", MISS) is MISS


def test_value_of_another_type_is_refused(cache: Cache) -> None:
    """set(type=T) with a value that is not a T is a CacheValueError and writes nothing."""
    with pytest.raises(CacheValueError, match="expected Address, got dict"):
        cache.set("k", {"city": "x"}, type=Address)
    with pytest.raises(CacheValueError, match="expected Item, got Address"):
        cache.set("k", [Address("x")], type=list[Item])
    assert cache.get("k", MISS) is MISS


def test_no_class_comes_from_the_stored_bytes(cache: Cache) -> None:
    """Without a type, a stored dataclass reads back as its plain dict: the class comes only
    from the annotation."""
    cache.set("k", Address("x"), type=Address)
    assert cache.get("k") == {"city": "x", "zip": 0}


@pytest.mark.parametrize(
    ("stored", "annotation"),
    [
        ({"city": "x", "zip": "150"}, Address),  # a field of the wrong type
        ({"city": "x", "zip": 1, "country": "no"}, Address),  # a field the type lost
        ({"zip": 1}, Address),  # a required field missing
        (["x", 1], Address),  # not a dict
        ("green", Color),  # no member
        ({"x": True}, Point),  # bool is no int
        ({"id": 1, "points": [], "level": 3}, Row),
        ({"id": "one", "name": "a"}, Item),  # pydantic validation
        ([1, "green"], tuple[int, Color]),
        ([{"city": 1}], list[Address]),
    ],
)
def test_value_that_does_not_fit_is_a_miss(
    manager: CacheManager,
    cache: Cache,
    mode: str,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    stored: Any,
    annotation: Any,
) -> None:
    """A stored plain value that does not fit the annotation reads as a miss (never a
    half-built object) with one warning per key and period."""
    cache.set("k", stored)
    with caplog.at_level(logging.WARNING, logger="cachekit"):
        for _ in range(3):
            assert call(manager, mode, cache, "get", "k", MISS, annotation) is MISS
    assert len(unreadable(caplog)) == 1


def test_shape_mismatch_names_the_field() -> None:
    """The mismatch says which field of which type did not fit."""
    with pytest.raises(ShapeMismatch, match=r"User\.address: Address\.zip: expected int"):
        as_shape(User).load({"name": "a", "address": {"city": "x", "zip": "1"}})


# --- the type changed between deployments ---------------------------------------------------


def changed_types() -> tuple[type, type]:
    """Item as deployed, and Item after it gained a required field."""

    class Before(pydantic.BaseModel):
        id: int
        name: str

    class After(pydantic.BaseModel):
        id: int
        name: str
        price: float

    return Before, After


@dataclasses.dataclass
class AddressV2:
    city: str
    zip: int
    country: str  # the new required field


@pytest.mark.parametrize("kind", ["pydantic", "dataclass"])
def test_cached_entry_of_an_older_type_is_recomputed(
    manager: CacheManager,
    mode: str,
    kind: str,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An entry stored by the old version of the return type is a miss with one warning:
    @cached recomputes with the new type and overwrites it, and the next call is a hit."""
    before: Any
    after: Any
    if kind == "pydantic":
        before, after = changed_types()
        old, new = before(id=1, name="a"), after(id=1, name="a", price=2.5)
    else:
        before, after = Address, AddressV2
        old, new = Address("x", 1), AddressV2("x", 1, "no")
    tenant, namespace = uuid.uuid4().hex, f"changed-{kind}"
    computed: list[str] = []

    def results(value: Any) -> Callable[[], Any]:
        return lambda: computed.append(type(value).__name__) or value

    deployed = decorated(manager, mode, before, results(old), namespace, tenant)
    redeployed = decorated(manager, mode, after, results(new), namespace, tenant)
    assert deployed(1) == old
    assert deployed(1) == old
    with caplog.at_level(logging.WARNING, logger="cachekit"):
        assert redeployed(1) == new  # the old entry does not fit: recomputed
        assert redeployed(1) == new  # and overwritten: a hit
    assert computed == [type(old).__name__, type(new).__name__]
    assert len(unreadable(caplog)) == 1
    cache = manager.for_plugin("shapes", tenant=tenant).namespace(namespace)
    assert cache.get("1", type=after) == new


# --- annotations: resolved when applied, or on the first call ---------------------------------


@cached(namespace="later", ttl=60)
def later_value(i: int) -> Later:  # Later is defined below: resolved on the first call
    return Later(i)


@dataclasses.dataclass
class Later:
    n: int


def test_forward_reference_resolves_on_first_call(manager: CacheManager) -> None:
    """A return annotation naming a class defined after the function is resolved on the
    first call: the hit is a rebuilt instance."""
    with scope(plugin="shapes", tenant=uuid.uuid4().hex, manager=manager):
        assert later_value(1) == Later(1)
        assert later_value(1) == Later(1)
        assert type(later_value(1)) is Later


def test_unresolvable_annotation_is_a_clear_error_on_first_call(manager: CacheManager) -> None:
    """A return annotation that never resolves is a CacheValueError naming it, on the
    call (on a miss, before anything is stored)."""

    def fn(i: int) -> Any:
        return {"n": i}

    fn.__annotations__["return"] = "Nowhere"
    wrapped = cached(namespace="nowhere")(fn)
    tenant = uuid.uuid4().hex
    unresolved = pytest.raises(CacheValueError, match="cannot resolve its return annotation")
    with scope(plugin="shapes", tenant=tenant, manager=manager), unresolved:
        wrapped(1)
    assert manager.for_plugin("shapes", tenant).namespace("nowhere").get("1", MISS) is MISS


def test_get_with_an_unresolvable_type_raises_before_io(cache: Cache) -> None:
    """get(type=...) with a string that does not resolve is a CacheValueError."""
    with pytest.raises(CacheValueError, match="cannot read the annotation"):
        cache.get("k", type="Nowhere")


# --- pydantic: optional, v2 only ------------------------------------------------------------


def test_pydantic_model_without_pydantic_is_an_error_when_applied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With pydantic not importable, a pydantic return annotation is a CacheValueError
    naming the extra to install, raised when the decorator is applied."""
    monkeypatch.setitem(sys.modules, "pydantic", None)  # `import pydantic` raises ImportError

    class Fresh(Item):  # a model class the shape cache has not seen
        pass

    def fn() -> Any:
        return Fresh(id=1, name="a")

    fn.__annotations__["return"] = Fresh  # the class itself: a local name is no forward ref
    with pytest.raises(CacheValueError, match=r"pip install 'cachekit\[pydantic\]'"):
        cached()(fn)
    with pytest.raises(CacheValueError, match="pydantic cannot be imported"):
        shape_of(list[Fresh])


def test_pydantic_v1_model_is_an_error_when_applied() -> None:
    """A pydantic v1 model (pydantic.v1.BaseModel) is refused when the decorator is applied,
    naming v2."""
    import pydantic.v1

    class Legacy(pydantic.v1.BaseModel):
        id: int

    def fn() -> Any:
        return Legacy(id=1)

    fn.__annotations__["return"] = Legacy
    with pytest.raises(CacheValueError, match="pydantic v1 model"):
        cached()(fn)


# --- @cached's other modes keep the shape ---------------------------------------------------


def test_stale_while_revalidate_entries_are_rebuilt(manager: CacheManager, mode: str) -> None:
    """With stale_ttl, a fresh hit and a stale hit both return the annotated type."""
    now = [1000.0]
    computed: list[int] = []

    def fn(i: int) -> Any:
        computed.append(i)
        return Point(i, len(computed))

    async def afn(i: int) -> Any:
        return fn(i)

    target: Any = fn if mode == "sync" else afn
    target.__annotations__["return"] = Point
    wrapped = cached(namespace="swr", ttl=10, stale_ttl=60, clock=lambda: now[0])(target)

    async def twice() -> list[Any]:
        try:
            return [await wrapped(1), await wrapped(1)]
        finally:
            await manager.aclose()

    with scope(plugin="shapes", tenant=uuid.uuid4().hex, manager=manager):
        first = [wrapped(1), wrapped(1)] if mode == "sync" else asyncio.run(twice())
    assert first == [Point(1, 1), Point(1, 1)]
    assert all(type(p) is Point for p in first)


def test_method_return_annotation_is_rebuilt(manager: CacheManager) -> None:
    """A cached method (wrapt's wrapper) rebuilds its return annotation too."""

    class Repo:
        @cached(namespace="repo")
        def address(self, city: str) -> Address:
            return Address(city, 1)

    repo = Repo()
    with scope(plugin="shapes", tenant=uuid.uuid4().hex, manager=manager):
        assert repo.address("Oslo") == Address("Oslo", 1)
        hit = repo.address("Oslo")
    assert hit == Address("Oslo", 1)
    assert type(hit) is Address
