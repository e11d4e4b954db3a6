"""A pool of connections to one server that never reuses a connection after a failure.

A connection is taken for one call (a whole command and its whole reply) and put back only
when the call returned normally: after any exception — a timeout half-way through a
reply, a server error, an interrupt — it is closed and dropped, so no later call can read
what was left of an earlier reply, and a client that would reconnect on its own (as
pymemcache's does) never gets the chance to open a connection that skipped
authentication. New connections are made (and authenticated) by ``connect``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Concatenate, Final, Generic, ParamSpec, TypeVar

__all__ = ["Pool"]

C = TypeVar("C")
P = ParamSpec("P")
T = TypeVar("T")

MAX_IDLE: Final = 64


class Pool(Generic[C]):
    """Connections of type ``C``, one per concurrent caller, up to ``max_idle`` kept open.

    :param connect: opens (and authenticates) a new connection; may raise.
    :param close: closes a connection quietly.
    :param error: the exception to raise for an exception of a call (already mapped to
        cachekit's errors); the original becomes its ``__cause__``.
    """

    __slots__ = ("_close", "_connect", "_error", "_idle", "max_idle")

    def __init__(
        self,
        connect: Callable[[], C],
        close: Callable[[C], None],
        error: Callable[[Exception], Exception],
        max_idle: int = MAX_IDLE,
    ) -> None:
        self._connect = connect
        self._close = close
        self._error = error
        self._idle: list[C] = []
        self.max_idle = max_idle

    def run(self, op: Callable[Concatenate[C, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``op(connection, *args)`` on an idle connection or a new one."""
        idle = self._idle
        try:
            connection: C | None = idle.pop()
        except IndexError:
            connection = None
        try:
            if connection is None:
                connection = self._connect()
            result = op(connection, *args, **kwargs)
        except BaseException as exc:
            if connection is not None:
                self._close(connection)
            if isinstance(exc, Exception):
                raise self._error(exc) from exc
            raise
        if len(idle) < self.max_idle:
            idle.append(connection)
        else:
            self._close(connection)
        return result

    def close(self) -> None:
        """Close the idle connections; calls in flight put theirs back (the next call
        opens new ones as needed)."""
        idle = self._idle
        while True:
            try:
                connection = idle.pop()
            except IndexError:
                return
            self._close(connection)
