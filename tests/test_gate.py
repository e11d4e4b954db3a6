"""The fair thread gate the network stores bound their pools with (cachekit.stores.gate)."""

from __future__ import annotations

import threading
import time

import pytest

from cachekit.stores.gate import Gate


def test_at_most_size_holders_and_a_timeout_when_full() -> None:
    """``size`` callers get in at once; the next one waits and, with nothing freed, gets
    ``False`` after its timeout; a freed place lets the next caller in."""
    gate = Gate(2)
    assert gate.enter(0)
    assert gate.enter(0)
    assert not gate.enter(0.01)
    gate.leave()
    assert gate.enter(0)
    assert repr(gate) == "Gate(size=2, free=0, waiting=0)"


def test_waiters_are_served_first_come_first_served() -> None:
    """A freed place goes to the oldest waiter, never to a caller that comes later (a plain
    token queue lets the releasing thread take it straight back, starving waiters)."""
    gate = Gate(1)
    assert gate.enter(0)
    order: list[int] = []

    def wait(n: int) -> None:
        assert gate.enter(5)
        order.append(n)
        gate.leave()

    threads = []
    for n in range(5):
        thread = threading.Thread(target=wait, args=(n,))
        thread.start()
        threads.append(thread)
        while len(gate._waiters) < n + 1:  # queued in this order
            time.sleep(0.001)
    gate.leave()
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_a_waiter_that_times_out_leaves_the_queue() -> None:
    """A waiter whose time ran out is no longer queued: a later leave() frees the place."""
    gate = Gate(1)
    assert gate.enter(0)
    assert not gate.enter(0.01)
    assert len(gate._waiters) == 0
    gate.leave()
    assert gate.enter(0)


@pytest.mark.parametrize("size", [0, -1, 1.5, True])
def test_bad_sizes_are_refused(size: object) -> None:
    """A gate needs a positive int size."""
    with pytest.raises(ValueError, match="positive int"):
        Gate(size)  # type: ignore[arg-type]
