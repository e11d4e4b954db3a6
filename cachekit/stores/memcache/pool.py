"""A bounded pool of connections to one server that never reuses a connection after a failure.

A connection is taken for one call (a whole command and its whole reply) and put back only
when the call returned normally: after any exception — a timeout half-way through a
reply, a server error, an interrupt — it is closed and dropped, so no later call can read
what was left of an earlier reply, and a client that would reconnect on its own (as
pymemcache's does) never gets the chance to open a connection that skipped
authentication. New connections are made (and authenticated) by ``connect``.

Bounded, with queueing
    At most ``max_connections`` calls run at once (so at most that many connections are
    open); a caller beyond that waits for a free slot, first come first served, at most
    ``wait`` seconds, then gets :class:`PoolBusy` — a
    :class:`~cachekit.errors.StoreTimeout` that says the pool, not the server, was busy, and
    that the store does not count towards its circuit breaker: local contention is not an
    outage. It also keeps a burst of callers from dialling hundreds of sockets at once.

Stale connections
    A pooled connection can die while idle: the server restarted, or closed it. Such a
    connection is not an outage, and is replaced, by one of two rules:

    * :meth:`Pool.run`, for commands that are safe to send twice (reads, ``set``,
      ``delete``, ``touch``, ``version``, ``stats``): when a *reused* connection fails
      because the server closed it (``closed`` exceptions: reset, broken pipe, end of
      stream), the call is sent once more on a new connection. A failure of a new
      connection is the server's and is raised.
    * :meth:`Pool.run_once`, for commands that must not run twice (``incr``/``decr``,
      ``add``, ``cas``): a reused connection that has been idle for more than
      :data:`CHECK_AFTER` is checked before the command is sent (the server has closed it
      when it is readable while no reply is due), and a stale one is replaced; the command
      itself is never resent, so a failed call may or may not have been applied, as with
      any network error. A connection in steady use skips the check (a system call): a
      server that closes it between two calls so close together fails calls in flight
      anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic
from typing import Any, Final, Generic, TypeVar

from cachekit.config.memcache import DEFAULT_MAX_CONNECTIONS
from cachekit.errors import StoreTimeout
from cachekit.stores.gate import Gate

__all__ = ["CHECK_AFTER", "DEFAULT_MAX_CONNECTIONS", "Pool", "PoolBusy"]

C = TypeVar("C")
T = TypeVar("T")

CHECK_AFTER: Final = 0.001
"""Seconds a connection may sit idle before :meth:`Pool.run_once` checks it is still open."""


class PoolBusy(StoreTimeout):
    """Every connection of a pool stayed busy for the whole wait: local contention, not a
    store failure (the store's circuit breaker does not count it)."""


class Pool(Generic[C]):
    """Connections of type ``C``: at most ``max_connections`` in use, each kept open for
    the next caller (see the module documentation).

    :param connect: opens (and authenticates) a new connection; may raise.
    :param close: closes a connection quietly.
    :param error: the exception to raise for an exception of a call (already mapped to
        cachekit's errors) and whether the connection was new; the original becomes its
        ``__cause__``.
    :param stale: whether an idle connection was closed by the server (checked before a
        :meth:`run_once` command is sent on it).
    :param closed: the exceptions that show the server closed a connection.
    :param max_connections: calls in flight at once.
    :param wait: seconds a caller waits for a free slot before :class:`PoolBusy`.
    :param name: the server, for messages.
    :raises ValueError: ``max_connections`` is not a positive int.
    """

    __slots__ = (
        "_close",
        "_closed",
        "_connect",
        "_error",
        "_gate",
        "_idle",
        "_stale",
        "check_after",
        "max_connections",
        "name",
        "wait",
    )

    def __init__(
        self,
        connect: Callable[[], C],
        close: Callable[[C], None],
        error: Callable[[Exception, bool], Exception],
        *,
        stale: Callable[[C], bool],
        closed: tuple[type[BaseException], ...] = (ConnectionError,),
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        wait: float = 0.75,
        name: str = "memcache server",
    ) -> None:
        if type(max_connections) is not int or max_connections < 1:
            raise ValueError(f"max_connections must be a positive int, got {max_connections!r}")
        self._connect = connect
        self._close = close
        self._error = error
        self._stale = stale
        self._closed = closed
        self._idle: list[tuple[C, float]] = []  # (connection, when it was put back)
        self._gate = Gate(max_connections)
        self.max_connections = max_connections
        self.check_after = CHECK_AFTER
        self.wait = wait
        self.name = name

    def run(self, op: Callable[..., T], *args: Any) -> T:
        """``op(connection, *args)`` on an idle connection or a new one; sent again, once,
        on a new connection when a reused one turns out closed. For commands that are safe
        to send twice."""
        self._enter()
        try:
            try:
                connection = self._idle.pop()[0]
            except IndexError:
                return self._fresh(op, *args)
            try:
                result = op(connection, *args)
            except BaseException as exc:
                self._close(connection)
                if isinstance(exc, self._closed):
                    return self._fresh(op, *args)
                if isinstance(exc, Exception):
                    raise self._error(exc, False) from exc
                raise
            self._idle.append((connection, monotonic()))
            return result
        finally:
            self._gate.leave()

    def run_once(self, op: Callable[..., T], *args: Any) -> T:
        """``op(connection, *args)`` on an idle connection that the server has not closed,
        or a new one; never sent twice. For commands that must not run twice."""
        self._enter()
        try:
            idle = self._idle
            while idle:
                try:
                    connection, used = idle.pop()
                except IndexError:
                    break
                if monotonic() - used > self.check_after and self._stale(connection):
                    self._close(connection)
                    continue
                try:
                    result = op(connection, *args)
                except BaseException as exc:
                    self._close(connection)
                    if isinstance(exc, Exception):
                        raise self._error(exc, False) from exc
                    raise
                idle.append((connection, monotonic()))
                return result
            return self._fresh(op, *args)
        finally:
            self._gate.leave()

    def _enter(self) -> None:
        """Take a slot, waiting at most ``wait`` seconds behind earlier callers."""
        if not self._gate.enter(self.wait):
            raise PoolBusy(
                f"{self.name}: all {self.max_connections} connections stayed busy for "
                f"{self.wait:g}s; raise backend.cache.memcache.maxConnections",
                store="memcache",
            )

    def _fresh(self, op: Callable[..., T], *args: Any) -> T:
        """``op`` on a new connection (the caller holds a slot)."""
        connection: C | None = None
        try:
            connection = self._connect()
            result = op(connection, *args)
        except BaseException as exc:
            if connection is not None:
                self._close(connection)
            if isinstance(exc, Exception):
                raise self._error(exc, True) from exc
            raise
        self._idle.append((connection, monotonic()))
        return result

    def close(self) -> None:
        """Close the idle connections; calls in flight put theirs back (the next call
        opens new ones as needed)."""
        idle = self._idle
        while True:
            try:
                connection = idle.pop()[0]
            except IndexError:
                return
            self._close(connection)
