"""The circuit breaker, on an injected clock."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cachekit.breaker import CircuitBreaker
from cachekit.errors import CacheValueError, StoreTimeout, StoreUnavailable
from cachekit.testing import FakeClock


class Flaky:
    """A callable that fails with a store error while `down` is set."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.down:
            raise StoreTimeout("no answer", store="test")
        return "ok"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker("test", failure_threshold=3, cooldown=2.0, clock=clock)


def test_opens_after_threshold_and_fails_fast(breaker: CircuitBreaker) -> None:
    """After 3 failures the breaker opens and later calls fail without calling the store."""
    flaky = Flaky()
    flaky.down = True
    for _ in range(3):
        with pytest.raises(StoreTimeout):
            breaker.call(flaky)
    assert breaker.state == "open"
    with pytest.raises(StoreUnavailable, match="skipping it"):
        breaker.call(flaky)
    assert flaky.calls == 3


def test_failures_below_threshold_are_forgotten_on_success(breaker: CircuitBreaker) -> None:
    """A success resets the count: failures must be consecutive to open the breaker."""
    flaky = Flaky()
    for _ in range(5):
        flaky.down = True
        for _ in range(2):
            with pytest.raises(StoreTimeout):
                breaker.call(flaky)
        flaky.down = False
        assert breaker.call(flaky) == "ok"
    assert breaker.state == "closed"


def test_healthy_flag_tracks_failures_since_the_last_success(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    """`healthy` (what hot paths check before calling the breaker) turns False at the first
    failure, stays False while open and half-open, and turns True again on a success."""
    flaky = Flaky()
    assert breaker.healthy
    flaky.down = True
    with pytest.raises(StoreTimeout):
        breaker.call(flaky)
    assert not breaker.healthy
    for _ in range(2):
        with pytest.raises(StoreTimeout):
            breaker.call(flaky)
    assert breaker.state == "open"
    assert not breaker.healthy
    clock.advance(2.0)
    assert breaker.state == "half-open"
    assert not breaker.healthy
    flaky.down = False
    assert breaker.call(flaky) == "ok"
    assert breaker.healthy
    assert breaker.state == "closed"


def test_half_open_probe_closes_on_success(breaker: CircuitBreaker, clock: FakeClock) -> None:
    """After the cooldown one probe goes through; its success closes the breaker."""
    flaky = Flaky()
    flaky.down = True
    for _ in range(3):
        with pytest.raises(StoreTimeout):
            breaker.call(flaky)
    flaky.down = False
    clock.advance(2.0)
    assert breaker.state == "half-open"
    assert breaker.call(flaky) == "ok"
    assert breaker.state == "closed"


def test_failed_probe_reopens_for_a_full_cooldown(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    """A failed probe re-opens the breaker at once, without three more failures."""
    flaky = Flaky()
    flaky.down = True
    for _ in range(3):
        with pytest.raises(StoreTimeout):
            breaker.call(flaky)
    clock.advance(2.5)
    with pytest.raises(StoreTimeout):
        breaker.call(flaky)
    assert breaker.state == "open"
    clock.advance(1.9)
    with pytest.raises(StoreUnavailable):
        breaker.call(flaky)
    assert flaky.calls == 4


def test_only_one_probe_while_half_open(breaker: CircuitBreaker, clock: FakeClock) -> None:
    """Once a probe is let through, other callers keep failing fast until it reports."""
    flaky = Flaky()
    flaky.down = True
    for _ in range(3):
        with pytest.raises(StoreTimeout):
            breaker.call(flaky)
    clock.advance(2.0)
    breaker.before_call()  # the probe
    with pytest.raises(StoreUnavailable):
        breaker.before_call()


def test_other_errors_do_not_count(breaker: CircuitBreaker) -> None:
    """Value errors are the caller's fault, not the store's: they never open the breaker."""

    def bad() -> None:
        raise CacheValueError("not an integer")

    for _ in range(10):
        with pytest.raises(CacheValueError):
            breaker.call(bad)
    assert breaker.state == "closed"


def test_logs_once_per_outage(
    breaker: CircuitBreaker, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """One warning when the store goes down and one line when it is back, not one per call."""
    flaky = Flaky()
    flaky.down = True
    with caplog.at_level(logging.INFO, logger="cachekit"):
        for _ in range(20):
            with pytest.raises((StoreTimeout, StoreUnavailable)):
                breaker.call(flaky)
        flaky.down = False
        clock.advance(2.0)
        breaker.call(flaky)
        breaker.call(flaky)
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "unavailable" in m]) == 1
    assert len([m for m in messages if "available again" in m]) == 1


def test_recovery_is_logged_at_the_outage_level_with_its_length_and_failed_calls(
    breaker: CircuitBreaker, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The line saying the store is back has the outage warning's level, the time since the
    first failure on the injected clock, and every call that failed or was skipped."""
    flaky = Flaky()
    flaky.down = True
    with caplog.at_level(logging.INFO, logger="cachekit"):
        for _ in range(3):  # fail for real: the breaker opens
            with pytest.raises(StoreTimeout):
                breaker.call(flaky)
            clock.advance(0.1)
        for _ in range(1_200):  # skipped by the open breaker
            with pytest.raises(StoreUnavailable):
                breaker.call(flaky)
        clock.advance(2.0)
        with pytest.raises(StoreTimeout):  # a failed probe re-opens it
            breaker.call(flaky)
        clock.advance(10.0)
        flaky.down = False
        assert breaker.call(flaky) == "ok"
    down, back = [r for r in caplog.records if r.name == "cachekit"]
    assert down.levelno == back.levelno == logging.WARNING
    assert back.getMessage() == (
        "cachekit: test store is available again after 12.3 s; 1,204 calls failed during "
        "the outage (1,200 of them skipped by the open breaker)"
    )


def test_each_outage_counts_afresh(
    breaker: CircuitBreaker, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A second outage reports its own length and calls, not the first one's, and failures
    that never opened the breaker log nothing."""
    flaky = Flaky()
    with caplog.at_level(logging.INFO, logger="cachekit"):
        for outage_calls in (5, 3):
            flaky.down = True
            for _ in range(outage_calls):
                with pytest.raises((StoreTimeout, StoreUnavailable)):
                    breaker.call(flaky)
            clock.advance(4.0)
            flaky.down = False
            breaker.call(flaky)
            clock.advance(100.0)
        flaky.down = True
        with pytest.raises(StoreTimeout):
            breaker.call(flaky)
        flaky.down = False
        breaker.call(flaky)
    back = [r.getMessage() for r in caplog.records if "available again" in r.getMessage()]
    assert back == [
        "cachekit: test store is available again after 4.0 s; 5 calls failed during the "
        "outage (2 of them skipped by the open breaker)",
        "cachekit: test store is available again after 4.0 s; 3 calls failed during the "
        "outage (0 of them skipped by the open breaker)",
    ]


def test_async_call(breaker: CircuitBreaker) -> None:
    """acall counts failures of awaited calls the same way."""

    async def down() -> None:
        raise StoreUnavailable("refused", store="test")

    async def run() -> None:
        for _ in range(3):
            with pytest.raises(StoreUnavailable, match="refused"):
                await breaker.acall(down)
        with pytest.raises(StoreUnavailable, match="skipping"):
            await breaker.acall(down)

    asyncio.run(run())
    assert breaker.state == "open"


def test_with_block_is_the_same_protocol(breaker: CircuitBreaker, clock: FakeClock) -> None:
    """``with breaker:`` around a store call (what stores use, sync or awaited) counts store
    errors, lets other errors pass uncounted, fails fast while open and closes on a
    successful probe."""
    for _ in range(2):
        with pytest.raises(CacheValueError), breaker:
            raise CacheValueError("not an integer")
    assert breaker.healthy
    for _ in range(3):
        with pytest.raises(StoreTimeout), breaker:
            raise StoreTimeout("no answer", store="test")
    assert breaker.state == "open"
    entered = []
    with pytest.raises(StoreUnavailable), breaker:
        entered.append(True)
    assert entered == []
    clock.advance(2.0)
    with breaker:
        entered.append(True)
    assert entered == [True]
    assert breaker.state == "closed"
    assert breaker.healthy


@pytest.mark.parametrize(("threshold", "cooldown"), [(0, 1.0), (1, 0.0)])
def test_rejects_bad_settings(threshold: int, cooldown: float) -> None:
    """A threshold below 1 or a non-positive cooldown is refused."""
    with pytest.raises(ValueError, match="must be"):
        CircuitBreaker("x", failure_threshold=threshold, cooldown=cooldown)
