"""One orchestration, run by the sync and the async driver (cachekit.steps)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cachekit.steps import Step, Steps, arun, run, sleep, twin


class Box:
    """A sync/async twin pair that records which side ran."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def get(self, key: str) -> str:
        self.calls.append(f"get {key}")
        return key.upper()

    async def aget(self, key: str) -> str:
        self.calls.append(f"aget {key}")
        return key.upper()

    def fail(self) -> None:
        raise KeyError("sync")

    async def afail(self) -> None:
        raise KeyError("async")


def flow(box: Box, log: list[str]) -> Steps[Step, str]:
    first = yield twin(box, "get", "a")
    try:
        yield twin(box, "fail")
    except KeyError as exc:
        log.append(f"caught {exc.args[0]}")
    second = yield twin(box, "get", "b")
    return first + second


def run_either(mode: str, steps: Steps[Any, Any]) -> Any:
    return run(steps) if mode == "sync" else asyncio.run(arun(steps))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_one_orchestration_runs_on_either_side(mode: str) -> None:
    """Results are sent back into the generator, errors thrown in where it can catch them,
    and each side calls only its own functions."""
    box, log = Box(), []
    assert run_either(mode, flow(box, log)) == "AB"
    prefix = "get" if mode == "sync" else "aget"
    assert box.calls == [f"{prefix} a", f"{prefix} b"]
    assert log == [f"caught {mode}"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_uncaught_error_propagates_and_finally_runs(mode: str) -> None:
    """An exception the orchestration does not catch reaches the caller after its
    ``finally`` ran."""
    box, log = Box(), []

    def steps() -> Steps[Step, None]:
        try:
            yield twin(box, "fail")
        finally:
            log.append("cleaned up")

    with pytest.raises(KeyError, match=mode):
        run_either(mode, steps())
    assert log == ["cleaned up"]


def test_cancellation_reaches_the_orchestration() -> None:
    """A cancelled async caller: the step's CancelledError is thrown into the generator,
    whose cleanup runs, and the task ends cancelled."""
    log: list[str] = []

    def steps() -> Steps[Step, None]:
        try:
            yield sleep(10)
        finally:
            log.append("released")

    async def main() -> None:
        task = asyncio.create_task(arun(steps()))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert log == ["released"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_custom_executor_decides_what_a_step_means(mode: str) -> None:
    """Stores pass their own executor: here a step is a command name run on a dict."""
    data = {"k": 1}

    def steps() -> Steps[str, int]:
        value = yield "k"
        return value + 1

    if mode == "sync":
        assert run(steps(), data.__getitem__) == 2
    else:

        async def lookup(name: str) -> int:
            return data[name]

        assert asyncio.run(arun(steps(), lookup)) == 2


def test_no_step_at_all() -> None:
    """A generator that returns before yielding still gives its value."""

    def steps() -> Steps[Step, int]:
        return 7
        yield  # pragma: no cover

    assert run(steps()) == 7
    assert asyncio.run(arun(steps())) == 7
