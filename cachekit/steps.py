"""Write an I/O orchestration once; run it sync or async.

cachekit has one API for both worlds (``get``/``aget``, ``hit``/``ahit``). An operation
that does more than one I/O call — a lock loop, a rate-limit hit, a Lua script with its
``NOSCRIPT`` fallback, a ``SCAN`` loop — is written once, as a generator that *yields* a
:class:`Step` for each I/O call and receives its result (or has its exception thrown in,
where ``try``/``except`` around the ``yield`` sees it). Two small drivers run it:
:func:`run` calls each step's sync function, :func:`arun` awaits its async twin. All the
logic between the calls — retries, branches, error handling — exists once::

    def _hit(self, cache, cost):                  # the orchestration, once
        count = yield twin(cache, "incr", key, cost)
        if count > limit:
            yield twin(cache, "decr", key, cost)
        return count

    def hit(self, cost=1):                        # the two shells
        return run(self._hit(current_cache(), cost))

    async def ahit(self, cost=1):
        return await arun(self._hit(current_cache(), cost))

A caller with its own notion of a step (a store that runs commands on a sync or an async
client) passes its own ``execute`` / ``aexecute`` to the drivers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, NamedTuple, TypeVar

__all__ = ["Step", "Steps", "arun", "run", "sleep", "twin"]

T = TypeVar("T")
S = TypeVar("S")

Steps = Generator[S, Any, T]
"""An orchestration: yields steps of type ``S``, receives their results, returns ``T``."""


class Step(NamedTuple):
    """One I/O call: ``sync(*args)`` in sync code, ``await asynchronous(*args)`` in async."""

    sync: Callable[..., Any]
    asynchronous: Callable[..., Awaitable[Any]]
    args: tuple[Any, ...] = ()


def twin(obj: object, name: str, *args: Any) -> Step:
    """The step calling ``obj.name(*args)`` or ``await obj.aname(*args)`` — cachekit's
    naming of sync and async twins (``get``/``aget``)."""
    return Step(getattr(obj, name), getattr(obj, "a" + name), args)


def sleep(seconds: float) -> Step:
    """The step that waits: ``time.sleep`` or ``asyncio.sleep``."""
    return Step(time.sleep, asyncio.sleep, (seconds,))


def _execute(step: Step) -> Any:
    return step.sync(*step.args)


async def _aexecute(step: Step) -> Any:
    return await step.asynchronous(*step.args)


def run(steps: Steps[Any, T], execute: Callable[[Any], Any] = _execute) -> T:
    """Run ``steps`` to its end, executing each step with ``execute``; its return value."""
    done, item = _resume(steps, None, None)
    while not done:
        done, item = _resume(steps, *_outcome(execute, item))
    return item  # type: ignore[no-any-return]


async def arun(steps: Steps[Any, T], aexecute: Callable[[Any], Awaitable[Any]] = _aexecute) -> T:
    """Async :func:`run`: each step is awaited with ``aexecute``."""
    done, item = _resume(steps, None, None)
    while not done:
        done, item = _resume(steps, *await _aoutcome(aexecute, item))
    return item  # type: ignore[no-any-return]


# The drivers differ only in how a step is executed; everything else is shared.


def _outcome(execute: Callable[[Any], Any], step: Any) -> tuple[Any, BaseException | None]:
    try:
        return execute(step), None
    except BaseException as exc:  # thrown into the orchestration, which decides
        return None, exc


async def _aoutcome(
    aexecute: Callable[[Any], Awaitable[Any]], step: Any
) -> tuple[Any, BaseException | None]:
    try:
        return await aexecute(step), None
    except BaseException as exc:  # cancellation too: the orchestration's finally runs
        return None, exc


def _resume(steps: Steps[Any, Any], result: Any, error: BaseException | None) -> tuple[bool, Any]:
    """Feed a step's outcome to ``steps``: ``(False, next step)`` or ``(True, return value)``.
    An exception the orchestration does not catch propagates from here."""
    try:
        step = steps.send(result) if error is None else steps.throw(error)
    except StopIteration as stop:
        return True, stop.value
    return False, step
