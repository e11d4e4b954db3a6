"""counter(), rate_limit() and @rate_limited on the memory store (fake clocks, no sleeps)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Iterator

import pytest
from flaky_store import FlakyStore

from cachekit.context import current_cache, scope
from cachekit.counters import RateLimit, counter, rate_limit, rate_limited
from cachekit.errors import CacheValueError, RateLimitExceeded
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
