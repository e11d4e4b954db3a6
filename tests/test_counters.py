"""counter(), rate_limit() and @rate_limited on the memory store (fake clocks, no sleeps)."""

from __future__ import annotations

import asyncio
import contextvars
import decimal
import enum
import logging
import threading
import uuid
from collections.abc import Iterator

import pytest
from flaky_store import FlakyStore

from cachekit.context import current_cache, scope
from cachekit.counters import RateLimit, counter, rate_limit, rate_limited
from cachekit.errors import CacheValueError, RateLimitExceeded, StoreUnavailable
from cachekit.host import CacheManager
from cachekit.http import rate_limit_headers, rate_limit_response
from cachekit.stores.memory import MemoryStore
from cachekit.testing import FakeClock

ALGORITHMS = ["fixed", "sliding", "gcra"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def manager(clock: FakeClock) -> CacheManager:
    return CacheManager(store=MemoryStore(clock=clock))


@pytest.fixture
def bound(manager: CacheManager) -> Iterator[CacheManager]:
    with scope(plugin="api", tenant="acme", manager=manager):
        yield manager


def limit(
    clock: FakeClock, algorithm: str, n: int = 10, per: float = 1.0, **kw: object
) -> RateLimit:
    return RateLimit("search", n, per, algorithm=algorithm, clock=clock, **kw)  # type: ignore[arg-type]


# --- counter ----------------------------------------------------------------------------


def test_counter_operations(bound: CacheManager) -> None:
    """incr, decr, get, reset and expire act on one integer in the scope."""
    hits = counter("hits")
    assert hits.get() == 0
    assert [hits.incr(), hits.incr(4), hits.decr(10)] == [1, 5, -5]
    assert hits.get() == -5
    assert hits.expire(60) is True
    assert hits.reset() is True
    assert hits.get() == 0
    assert hits.expire(60) is False
    assert "hits" in repr(hits)


def test_counter_async_twins(bound: CacheManager) -> None:
    """aincr, adecr, aget, areset and aexpire mirror the sync methods."""
    hits = counter("hits")

    async def run() -> list[object]:
        return [await hits.aincr(2), await hits.adecr(), await hits.aget(),
                await hits.aexpire(5), await hits.areset(), await hits.aget()]  # fmt: skip

    assert asyncio.run(run()) == [2, 1, 1, True, True, 0]


def test_counter_ttl_is_set_on_creation(bound: CacheManager, clock: FakeClock) -> None:
    """A counter's TTL starts with its first increment and later ones keep it."""
    hits = counter("hits", ttl=10)
    hits.incr()
    clock.advance(8)
    hits.incr()
    clock.advance(3)
    assert hits.get() == 0


def test_counters_are_scoped(manager: CacheManager) -> None:
    """One module-level counter counts separately per tenant."""
    hits = counter("hits")
    for tenant in ("a", "b", "a"):
        with scope(plugin="p", tenant=tenant, manager=manager):
            hits.incr()
    with scope(plugin="p", tenant="a", manager=manager):
        assert hits.get() == 2


def test_counter_over_a_non_integer(bound: CacheManager) -> None:
    """A counter name holding a non-integer raises CacheValueError."""
    current_cache("counters").set("hits", "text")
    with pytest.raises(CacheValueError):
        counter("hits").get()
    with pytest.raises(CacheValueError):
        counter("hits").incr()


@pytest.mark.parametrize("name", ["", None, 5])
def test_counter_needs_a_name(name: object) -> None:
    """Counter names are non-empty strings."""
    with pytest.raises(CacheValueError):
        counter(name)  # type: ignore[arg-type]


# --- rate limits ------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_limit_allows_exactly_limit_hits(
    bound: CacheManager, clock: FakeClock, algorithm: str
) -> None:
    """10 per second: 10 hits are allowed, the 11th is refused with a retry time."""
    rl = limit(clock, algorithm)
    results = [rl.hit() for _ in range(11)]
    assert [r.allowed for r in results] == [True] * 10 + [False]
    assert [r.remaining for r in results[:10]] == list(range(9, -1, -1))
    assert results[10].retry_after > 0
    assert results[10].limit == 10


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_limit_recovers(bound: CacheManager, clock: FakeClock, algorithm: str) -> None:
    """After two periods the whole limit is available again."""
    rl = limit(clock, algorithm)
    for _ in range(12):
        rl.hit()
    clock.advance(2.0)
    assert [rl.hit().allowed for _ in range(10)] == [True] * 10


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_refused_hit_retry_after_is_honest(
    bound: CacheManager, clock: FakeClock, algorithm: str
) -> None:
    """Waiting retry_after after a refusal makes the next hit allowed."""
    rl = limit(clock, algorithm)
    for _ in range(10):
        rl.hit()
    refused = rl.hit()
    assert not refused.allowed
    clock.advance(refused.retry_after + 1e-6)
    assert rl.hit().allowed


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_other_tenant_and_other_key_unaffected(
    manager: CacheManager, clock: FakeClock, algorithm: str
) -> None:
    """A limit is per (plugin, tenant), and per key within it."""
    with scope(plugin="api", tenant="a", manager=manager):
        for _ in range(10):
            limit(clock, algorithm).hit()
        assert not limit(clock, algorithm).hit().allowed
        assert limit(clock, algorithm, key="user-2").hit().allowed
    with scope(plugin="api", tenant="b", manager=manager):
        assert limit(clock, algorithm).hit().allowed


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_peek_does_not_consume(bound: CacheManager, clock: FakeClock, algorithm: str) -> None:
    """peek reports what a hit would do without using it up."""
    rl = limit(clock, algorithm, n=3)
    assert rl.peek().remaining == 3
    rl.hit()
    for _ in range(5):
        assert rl.peek().allowed
    assert rl.peek().remaining == 2
    rl.hit()
    rl.hit()
    assert not rl.peek().allowed


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_reset(bound: CacheManager, clock: FakeClock, algorithm: str) -> None:
    """reset forgets the hits counted so far."""
    rl = limit(clock, algorithm, n=2)
    rl.hit()
    rl.hit()
    rl.reset()
    assert rl.hit().allowed


def test_sliding_window_weighs_the_previous_window(bound: CacheManager, clock: FakeClock) -> None:
    """Half-way into a window, half of the previous window's hits still count."""
    clock.now = 1_700_000_000.0  # a window boundary for per=10
    rl = limit(clock, "sliding", n=10, per=10.0)
    for _ in range(10):
        assert rl.hit().allowed
    clock.advance(15.0)  # 5 s into the next window: previous weighs 0.5 -> 5 used
    allowed = [rl.hit().allowed for _ in range(6)]
    assert allowed == [True] * 5 + [False]


def test_fixed_window_allows_a_burst_at_the_boundary(bound: CacheManager, clock: FakeClock) -> None:
    """The fixed window resets at its boundary (the trade-off sliding and GCRA avoid)."""
    clock.now = 1_700_000_009.9
    rl = limit(clock, "fixed", n=10, per=10.0)
    assert all(rl.hit().allowed for _ in range(10))
    clock.advance(0.2)
    assert all(rl.hit().allowed for _ in range(10))


def test_gcra_spaces_hits_after_a_burst(bound: CacheManager, clock: FakeClock) -> None:
    """After the burst, GCRA allows one hit per interval (per / limit)."""
    rl = limit(clock, "gcra", n=10, per=1.0)
    for _ in range(10):
        rl.hit()
    refused = rl.hit()
    assert refused.retry_after == pytest.approx(0.1, abs=1e-3)
    clock.advance(0.1)
    assert rl.hit().allowed
    assert not rl.hit().allowed


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_cost(bound: CacheManager, clock: FakeClock, algorithm: str) -> None:
    """A hit of cost 4 uses four of the limit."""
    rl = limit(clock, algorithm, n=10)
    assert rl.hit(cost=4).remaining == 6
    assert rl.hit(cost=6).allowed
    assert not rl.hit(cost=1).allowed


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_concurrent_asyncio_hits_are_exact(
    bound: CacheManager, clock: FakeClock, algorithm: str
) -> None:
    """100 concurrent async hits on a limit of 10: exactly 10 allowed."""
    rl = limit(clock, algorithm)

    async def run() -> list[bool]:
        return [r.allowed for r in await asyncio.gather(*(rl.ahit() for _ in range(100)))]

    assert asyncio.run(run()).count(True) == 10


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_concurrent_thread_hits_are_exact(
    bound: CacheManager, clock: FakeClock, algorithm: str
) -> None:
    """100 threads hitting a limit of 10: exactly 10 allowed."""
    rl = limit(clock, algorithm)
    allowed: list[bool] = []
    barrier = threading.Barrier(100)

    def worker() -> None:
        barrier.wait()
        allowed.append(rl.hit().allowed)

    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(worker,)) for _ in range(100)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert allowed.count(True) == 10


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_async_twins(bound: CacheManager, clock: FakeClock, algorithm: str) -> None:
    """ahit, apeek and areset behave like their sync forms."""
    rl = limit(clock, algorithm, n=1)

    async def run() -> list[bool]:
        first, second = await rl.ahit(), await rl.ahit()
        peek = await rl.apeek()
        await rl.areset()
        return [first.allowed, second.allowed, peek.allowed, (await rl.ahit()).allowed]

    assert asyncio.run(run()) == [True, False, False, True]


@pytest.mark.parametrize(("on_error", "allowed"), [("allow", True), ("deny", False)])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_store_outage_follows_on_error(
    clock: FakeClock, caplog: pytest.LogCaptureFixture, on_error: str, allowed: bool, algorithm: str
) -> None:
    """A dead store allows (default) or denies every hit, with one warning."""
    store = FlakyStore(clock=clock)
    store.down = True
    rl = limit(clock, algorithm, on_error=on_error)
    with scope(plugin="p", manager=CacheManager(store=store)), caplog.at_level(logging.WARNING):
        results = [rl.hit() for _ in range(5)] + [rl.peek()]
    assert {r.allowed for r in results} == {allowed}
    assert len([r for r in caplog.records if "while the store fails" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"limit": 0}, {"limit": 1.5}, {"per": 0}, {"per": -1}, {"algorithm": "leaky"},
     {"on_error": "maybe"}, {"key": ""}, {"name": ""}],
)  # fmt: skip
def test_bad_arguments(kwargs: dict[str, object]) -> None:
    """Bad limits, periods, algorithms, policies and names raise CacheValueError."""
    args: dict[str, object] = {"name": "x", "limit": 10, "per": 1} | kwargs
    with pytest.raises(CacheValueError):
        rate_limit(**args)  # type: ignore[arg-type]


# --- @rate_limited and the HTTP form ----------------------------------------------------


def test_rate_limited_raises_with_details(bound: CacheManager) -> None:
    """The decorated function runs while allowed; then RateLimitExceeded carries the numbers."""

    @rate_limited("export", 2, per=60)
    def export() -> str:
        return "ok"

    assert [export(), export()] == ["ok", "ok"]
    with pytest.raises(RateLimitExceeded) as info:
        export()
    assert (info.value.limit, info.value.remaining) == (2, 0)
    assert 0 < info.value.retry_after <= 60


def test_rate_limited_async_with_key_function(bound: CacheManager) -> None:
    """An async endpoint limited per key (the first argument here)."""

    @rate_limited("login", 1, per=60, key=lambda user: user)
    async def login(user: str) -> str:
        return user

    async def run() -> list[object]:
        out: list[object] = [await login("ann"), await login("bob")]
        try:
            await login("ann")
        except RateLimitExceeded as exc:
            out.append(exc.limit)
        return out

    assert asyncio.run(run()) == ["ann", "bob", 1]


def test_http_response_of_a_refusal() -> None:
    """A refusal becomes a 429 with Retry-After and RateLimit-* headers (rounded up)."""
    exc = RateLimitExceeded("x", limit=10, remaining=0, retry_after=0.2, reset_after=1.5)
    status, headers, body = rate_limit_response(exc)
    assert status == 429
    assert dict(rate_limit_headers(exc)) == {
        "Retry-After": "1",
        "RateLimit-Limit": "10",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "2",
    }
    assert ("Content-Type", "application/json") in headers
    assert b"rate limit exceeded" in body


class ReplyInFlight(MemoryStore):
    """A store whose async calls suspend, as a network store's do: an increment is applied
    before its reply arrives (a cancellation can land after the count changed) and a
    decrement waits before it is sent (a cancellation can land before it is applied)."""

    blocking = True

    async def aincr(self, key: str, delta: int, ttl: float | None) -> int:
        if delta < 0:
            await asyncio.sleep(0)  # waiting to be sent
            return self.incr(key, delta, ttl)
        value = self.incr(key, delta, ttl)
        await asyncio.sleep(0)  # the reply is on its way
        return value

    async def aget(self, key: str) -> bytes | None:
        value = self.get(key)
        await asyncio.sleep(0)
        return value

    async def agcra(
        self, key: str, now: int, interval: int, period: int, cost: int
    ) -> tuple[bool, int]:
        outcome = self.gcra(key, now, interval, period, cost)
        await asyncio.sleep(0)
        return outcome


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_cancelled_hits_are_not_counted(clock: FakeClock, algorithm: str) -> None:
    """Cancelled ``ahit`` calls, whether their hit was allowed or refused, leave the limit
    counting exactly the hits that returned allowed."""
    rl = limit(clock, algorithm, n=20)
    manager = CacheManager(store=ReplyInFlight(clock=clock))

    async def run() -> tuple[int, int]:
        tasks = [asyncio.create_task(rl.ahit()) for _ in range(30)]
        await asyncio.sleep(0)  # every hit sent, no reply read yet
        for task in tasks[::3]:
            task.cancel()  # allowed ones among the first ten, refused ones after
        await asyncio.sleep(0)  # refused hits are taking themselves back
        for task in tasks[1::3]:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        allowed = sum(1 for r in results if not isinstance(r, BaseException) and r.allowed)
        return allowed, (await rl.apeek()).remaining

    with scope(plugin="api", tenant="acme", manager=manager):
        allowed, remaining = asyncio.run(run())
    assert 0 < allowed == 20 - remaining


# --- rates as users write them ----------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "hits", "seconds"),
    [
        ("10/minute", 10, 60.0),
        ("10/Minute", 10, 60.0),
        ("100 per hour", 100, 3600.0),
        ("5/second", 5, 1.0),
        ("1 / Second", 1, 1.0),
        ("1000/day", 1000, 86400.0),
        ("10/5m", 10, 300.0),
        ("500/7days", 500, 604800.0),
        ("10 per 90 seconds", 10, 90.0),
        ("3/PT30S", 3, 30.0),
    ],
)
def test_rate_strings(rate: str, hits: int, seconds: float) -> None:
    """A rate written as limits and slowapi spell it means `hits` per `seconds`."""
    rl = rate_limit("search", rate)
    assert (rl.limit, rl.per) == (hits, seconds)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ten/minute",), "cannot read the rate 'ten/minute'; write it as '10/minute'"),
        (("10 minute",), "cannot read the rate '10 minute'"),
        (("10/fortnight",), r"rate: cannot read '1 fortnight'.*reading the rate '10/fortnight'"),
        (("10/month",), "no fixed length"),
        (("0/minute",), "allows nothing"),
        (("10/minute;100/day",), "several rates; a rate limit takes one"),
        (("10/minute", 60), "already says its period: drop per=60"),
        ((10,), r"per= is missing: 10 hits per what\?"),
        ((10, "1x"), r"^per: cannot read '1x'"),
        ((10, "0s"), "per must be a positive period"),
        ((1.5, 60), "limit must be an int >= 1 or a rate"),
    ],
)
def test_malformed_rates_name_the_forms(args: tuple[object, ...], message: str) -> None:
    """A malformed rate or period raises CacheValueError naming what is wrong and the forms
    (and a bad period names per=, not ttl=)."""
    with pytest.raises(CacheValueError, match=message):
        rate_limit("search", *args)  # type: ignore[arg-type]


def test_rate_limited_takes_a_rate_string(bound: CacheManager, clock: FakeClock) -> None:
    """@rate_limited("export", "2/minute") allows two calls a minute."""

    @rate_limited("export", "2/minute")
    def export() -> str:
        return "ok"

    assert [export(), export()] == ["ok", "ok"]
    with pytest.raises(RateLimitExceeded) as info:
        export()
    assert info.value.limit == 2


def test_rate_limited_checks_its_rate_when_applied() -> None:
    """A bad rate fails when the decorator is applied, not on the first request."""
    with pytest.raises(CacheValueError, match="cannot read the rate"):
        rate_limited("export", "lots")


# --- keys from user ids ---------------------------------------------------------------------


class Plan(enum.Enum):
    FREE = 1


@pytest.mark.parametrize(
    ("key", "other"),
    [
        (42, 43),
        (uuid.UUID(int=1), uuid.UUID(int=2)),
        (decimal.Decimal("1.5"), decimal.Decimal("2.5")),
        (Plan.FREE, "2"),
        (True, False),
    ],
)
def test_rate_limit_keys_take_scalars(
    bound: CacheManager, clock: FakeClock, key: object, other: object
) -> None:
    """An int, UUID, Decimal, Enum or bool key counts on its own; another key is unaffected."""
    first = rate_limit("login", 1, per=60, key=key)  # type: ignore[arg-type]
    second = rate_limit("login", 1, per=60, key=other)  # type: ignore[arg-type]
    assert [first.hit().allowed, first.hit().allowed, second.hit().allowed] == [True, False, True]


def test_an_int_key_and_its_text_share_a_count(bound: CacheManager) -> None:
    """key=42 and key="42" are the same key (the text of the id)."""
    assert rate_limit("login", 1, per=60, key=42).hit().allowed
    assert not rate_limit("login", 1, per=60, key="42").hit().allowed


@pytest.mark.parametrize("key", [object(), [1], "", 2.5j])
def test_rate_limit_refuses_keys_without_a_stable_text(key: object) -> None:
    """An object whose text is its address (or an empty or non-scalar key) is refused,
    naming key= and the accepted types."""
    with pytest.raises(CacheValueError, match="key must be a non-empty str, an int, a UUID"):
        rate_limit("login", 1, per=60, key=key)  # type: ignore[arg-type]


def test_rate_limited_key_function_may_return_an_int(bound: CacheManager) -> None:
    """A key callable returning an int user id limits per id."""

    @rate_limited("login", "1/minute", key=lambda user_id: user_id)
    def login(user_id: int) -> int:
        return user_id

    assert [login(1), login(2)] == [1, 2]
    with pytest.raises(RateLimitExceeded):
        login(1)


# --- counter(on_error=) -------------------------------------------------------------------


def test_counter_raises_on_an_outage_by_default(clock: FakeClock) -> None:
    """A direct counter call raises StoreUnavailable while the store is down (the default)."""
    store = FlakyStore(clock=clock)
    store.down = True
    with scope(plugin="p", manager=CacheManager(store=store)):
        with pytest.raises(StoreUnavailable):
            counter("hits").incr()
        with pytest.raises(StoreUnavailable):
            counter("hits").get()


def test_counter_ignoring_outages_answers_none_with_one_warning(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """With on_error="ignore", incr/decr/get and their async twins answer None while the
    store is down, with one warning per outage; the next outage warns again."""
    store = FlakyStore(clock=clock)
    hits = counter("hits", on_error="ignore")

    async def twins() -> list[int | None]:
        return [await hits.aincr(), await hits.adecr(), await hits.aget()]

    def warnings() -> int:
        return len([r for r in caplog.records if "counter 'hits' answers None" in r.getMessage()])

    with scope(plugin="p", manager=CacheManager(store=store)), caplog.at_level(logging.WARNING):
        assert hits.incr() == 1
        store.down = True
        assert [hits.incr(), hits.decr(), hits.get(), *asyncio.run(twins())] == [None] * 6
        assert warnings() == 1
        store.down = False
        assert hits.incr() == 2
        store.down = True
        assert hits.incr() is None
        assert warnings() == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"on_error": "allow"}, "on_error must be 'raise' or 'ignore'"),
        ({"ttl": "1 fortnight"}, "ttl: cannot read '1 fortnight'"),
        ({"ttl": -1}, "ttl must be a finite duration"),
    ],
)
def test_counter_checks_its_arguments_when_made(kwargs: dict[str, object], message: str) -> None:
    """A bad on_error or ttl fails when the counter is made, not on its first incr."""
    with pytest.raises(CacheValueError, match=message):
        counter("hits", **kwargs)  # type: ignore[call-overload]


def test_counter_ttl_takes_a_duration_string(bound: CacheManager, clock: FakeClock) -> None:
    """counter(ttl="1m") expires a minute after creation."""
    hits = counter("hits", ttl="1m")
    hits.incr()
    clock.advance(59)
    assert hits.get() == 1
    clock.advance(2)
    assert hits.get() == 0
