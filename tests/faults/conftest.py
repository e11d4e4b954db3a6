"""The fault suite: what production does to a cache, each scenario with its invariant.

Every scenario states its invariant (no request of another plugin fails, no lost or doubled
increment, no stale read past a bound, no breaker opened by local contention), counts the
violations in an :class:`Outcome` and fails on any. ``CACHEKIT_FAULT_SCALE`` multiplies
the load (``scripts/soak`` runs the suite at a larger scale and prints the table of
scenarios x stores x violations from the outcomes written to ``CACHEKIT_FAULT_REPORT``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import pytest

SCALE = max(1.0, float(os.environ.get("CACHEKIT_FAULT_SCALE", "1")))


def scaled(n: int) -> int:
    """``n`` times the suite's scale (the soak runs bigger)."""
    return max(1, round(n * SCALE))


@dataclass
class Outcome:
    """What one scenario did on one store: the load it held and the violations it saw."""

    scenario: str
    store: str
    concurrency: int = 1
    requests: int = 0
    violations: int = 0
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic, repr=False)

    def ok(self, n: int = 1) -> None:
        """``n`` requests held the invariant."""
        self.requests += n

    def violated(self, what: str) -> None:
        """One request broke the invariant (the first few are kept for the message)."""
        self.requests += 1
        self.violations += 1
        if len(self.examples) < 5:
            self.examples.append(what)

    def check(self) -> None:
        """Fail the test on any violation, naming the first ones."""
        assert self.violations == 0, (
            f"{self.scenario} on {self.store}: {self.violations} of {self.requests} "
            f"requests broke the invariant, e.g. {self.examples}"
        )


@pytest.fixture
def outcome() -> Iterator[Callable[..., Outcome]]:
    """``outcome(scenario, store, concurrency=...)``: a new tally, reported after the test
    (to ``CACHEKIT_FAULT_REPORT`` when set)."""
    made: list[Outcome] = []

    def new(scenario: str, store: str, concurrency: int = 1) -> Outcome:
        tally = Outcome(scenario, store, concurrency)
        made.append(tally)
        return tally

    yield new
    report = os.environ.get("CACHEKIT_FAULT_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as out:
            for tally in made:
                tally.seconds = round(time.monotonic() - tally.started, 3)
                row = asdict(tally)
                del row["started"]
                out.write(json.dumps(row) + "\n")
