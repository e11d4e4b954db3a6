"""Client tracking for the near cache: the server tells us which keys changed.

A :class:`Tracker` keeps one dedicated connection per server node (a standalone server,
the current Sentinel master, every primary and replica of a Cluster), set up as::

    CLIENT SETNAME cachekit-near
    CLIENT ID                                        -> n
    CLIENT TRACKING on REDIRECT n BCAST [PREFIX p]   (the connection redirects to itself)
    SUBSCRIBE __redis__:invalidate

and reads it from a daemon thread: each message names keys under the prefix that were
written, deleted, expired or evicted (:meth:`InvalidationSink.invalidate`), or is empty when
the server flushed its data (:meth:`InvalidationSink.invalidate_all`).

Why broadcasting mode (``BCAST``) on a connection of its own, in RESP2:

* The default tracking mode remembers the keys *a connection read*, so every connection of
  the data pools would need ``CLIENT TRACKING on REDIRECT <id>`` as it connects: a hook into
  the driver's pool, which cachekit does not graft onto (it uses the drivers' public API).
* In RESP2 a tracked connection whose redirect target went away (the invalidation connection
  reconnected) is told so only by a RESP3 push (``tracking-redir-broken``): it keeps
  answering, silently stops producing invalidations (``CLIENT TRACKINGINFO`` shows
  ``broken_redirect``), and the near cache would serve stale entries for ever. The data
  clients stay on RESP2 (see :mod:`cachekit.stores.redis.store`).
* In ``BCAST`` mode the whole contract lives on one connection per node: while it is up every
  change under the prefix is announced on it; when it breaks the tracker reports the node
  lost (the near cache flushes and reads through), reconnects with backoff, sets tracking up
  again and reports it established. The price is that every write under the prefix is
  announced to every listening process, read or not: measured (``bench/bench_tracking.py``)
  about 2-7 µs of the listener's CPU per key and about 0.5 µs of the server's CPU per write
  per listening process; the server batches the keys of one event-loop turn into one
  message. Tracking ignores the database number: a write in another database is announced
  too, and any ``FLUSHDB``/``FLUSHALL`` flushes every near cache.

A quiet connection is not an error (a paused server cannot be written to either), but a
connection that stays silent is pinged, and one that does not answer a ping within
:data:`HEARTBEAT_TIMEOUT` seconds is treated as lost (a server paused that long too): a
half-open socket must not leave the near cache stale.

Sink calls come from the tracker's threads (one per node), so a sink must be thread safe.
A forked child never uses its parent's tracking connections: its trackers are dead and
:meth:`Tracker.start` starts new ones there.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from cachekit.stores.forks import close_in_children
from cachekit.stores.redis.clients import close_sync_client

if TYPE_CHECKING:
    from cachekit.near import InvalidationSink  # what the near cache is told

__all__ = [
    "CHANNEL",
    "CLIENT_NAME",
    "ClusterNodes",
    "Node",
    "SentinelMaster",
    "Tracker",
]

log = logging.getLogger("cachekit")

CHANNEL: Final = "__redis__:invalidate"
"""The channel a RESP2 connection receives its (redirected) invalidations on."""

CLIENT_NAME: Final = "cachekit-near"
"""The name of every tracking connection in ``CLIENT LIST``."""

POLL: Final = 0.1
"""Seconds a listener waits for a message before it looks at its stop flag again."""

HEARTBEAT: Final = 1.0
"""Seconds of silence after which a listener pings its connection."""

HEARTBEAT_TIMEOUT: Final = 3.0
"""Seconds a ping may stay unanswered before the connection counts as lost."""

BACKOFF: Final = (0.05, 1.0)
"""First and longest wait between reconnection attempts (doubling, with jitter)."""

CLUSTER_REFRESH: Final = 5.0
"""Seconds between two reads of a cluster's node list."""

SENTINEL_REFRESH: Final = 1.0
"""Seconds between two questions to the sentinels about where the master is."""


class Node(NamedTuple):
    """One server to track: its address and how to open a new sync client (its own pool)
    on it."""

    address: str
    connect: Callable[[], Any]


class _Lost(Exception):
    """The tracking connection cannot be trusted any more (a reply or message we did not
    expect, an unanswered ping)."""


class Tracker:
    """Listens to the servers' invalidations and tells ``sink``.

    Build one with :meth:`RedisStore.tracker <cachekit.stores.redis.RedisStore.tracker>`.

    :param sink: told what changed, and when tracking of a node is lost and established.
    :param prefix: only keys starting with it are announced (``""``: every key).
    :param nodes: returns ``{source: node}``, the servers to track now (clients speaking
        RESP2: a RESP3 connection gets invalidations as pushes). A new source is reported
        lost, then established once its listener is set up; a source that disappears is
        reported removed and its listener stopped; a source whose address changes (a
        Sentinel master that moved) is reported lost, then established on the new address.
    :param refresh: seconds between two calls of ``nodes`` (cluster nodes come and go, a
        Sentinel master moves); ``None``: ``nodes`` is called once, by :meth:`start`, and
        must not do I/O.
    :param catch: the exceptions of a failed connection (the driver's).
    :param target: where the clients connect, for ``repr``.
    :param heartbeat: seconds of silence before a listener pings its connection, and seconds
        the ping may stay unanswered before the connection counts as lost.
    """

    def __init__(
        self,
        sink: InvalidationSink,
        prefix: str,
        nodes: Callable[[], Mapping[str, Node]],
        *,
        refresh: float | None = None,
        catch: tuple[type[BaseException], ...] = (OSError,),
        target: str = "",
        heartbeat: tuple[float, float] = (HEARTBEAT, HEARTBEAT_TIMEOUT),
    ) -> None:
        self.sink = sink
        self.heartbeat = heartbeat
        self.prefix = prefix
        self.target = target
        self.refresh = refresh
        self.catch: tuple[type[BaseException], ...] = (*catch, _Lost)
        self._nodes = nodes
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()  # orders the sink's lost/established against stop()
        self._stopping = threading.Event()
        self._listeners: dict[str, _Listener] = {}
        self._supervisor: threading.Thread | None = None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        sources = self.sources
        return (
            f"Tracker({self.target!r}, prefix={self.prefix!r}, alive={self.alive}, "
            f"established={sum(sources.values())}/{len(sources)})"
        )

    @property
    def alive(self) -> bool:
        """Started, not stopped, in this process (a forked child's tracker is dead)."""
        if self._pid != os.getpid() or self._stopping.is_set():
            return False
        threads = [x.thread for x in list(self._listeners.values())]
        return any(t.is_alive() for t in (self._supervisor, *threads) if t is not None)

    @property
    def established(self) -> bool:
        """Every known node's invalidations flow (and there is at least one)."""
        sources = self.sources
        return self.alive and bool(sources) and all(sources.values())

    @property
    def sources(self) -> dict[str, bool]:
        """Each tracked node, and whether its invalidations flow."""
        return {source: x.established for source, x in list(self._listeners.items())}

    @property
    def client_ids(self) -> dict[str, int]:
        """The ``CLIENT ID`` of each established node's tracking connection."""
        listeners = list(self._listeners.items())
        return {s: x.client_id for s, x in listeners if x.established and x.client_id}

    def start(self) -> None:
        """Start tracking (returns at once; the tracker's threads connect).

        Each node is reported lost before its listener connects, and established once its
        tracking is set up. Does nothing on a running tracker; starts again after
        :meth:`stop`, and in a forked child.
        """
        if self._pid != os.getpid():  # a forked child: the parent's lock may be held
            self._reset()
        with self._lock:
            if self.alive:
                return
            if self._stopping.is_set():
                self._reset()
        if self.refresh is None:
            self._track(self._nodes())
            return
        self._supervisor = threading.Thread(
            target=self._supervise, name=f"cachekit-near {self.target}", daemon=True
        )
        self._supervisor.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop tracking: close the connections, join the threads (waiting at most
        ``timeout`` seconds in all) and report every node lost."""
        with self._lock:
            self._stopping.set()
            listeners = list(self._listeners.values())
            for listener in listeners:
                listener.halt.set()
        deadline = time.monotonic() + timeout
        threads = [x.thread for x in listeners]
        if self._supervisor is not None:
            threads.append(self._supervisor)
        for thread in threads:
            if thread.ident is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        for listener in listeners:
            self.sink.tracking_lost(listener.source)

    def _track(self, nodes: Mapping[str, Node]) -> None:
        """Stop the listeners of nodes that left or moved; start one on each new node."""
        with self._lock:
            if self._stopping.is_set():
                return
            listeners = self._listeners
            for source, listener in list(listeners.items()):
                node = nodes.get(source)
                if node is None or node.address != listener.node.address:
                    del listeners[source]
                    listener.halt.set()  # from now on it reports nothing
                    if node is None:
                        self.sink.tracking_removed(source)
            fresh = [source for source in nodes if source not in listeners]
            for source in fresh:
                self.sink.tracking_lost(source)
            for source in fresh:
                listener = listeners[source] = _Listener(self, source, nodes[source])
                listener.thread.start()

    def _supervise(self) -> None:
        """Re-read the node list every ``refresh`` seconds (sooner until the first read)."""
        assert self.refresh is not None
        delays = _backoff()
        while not self._stopping.is_set():
            try:
                nodes = self._nodes()
            except self.catch as exc:
                log.debug("cachekit near cache: cannot list the nodes of %s: %s", self.target, exc)
                wait = self.refresh if self._listeners else next(delays)
            else:
                self._track(nodes)
                wait = self.refresh
            self._stopping.wait(wait)

    def report(self, listener: _Listener, report: Callable[[str], None]) -> bool:
        """Call ``report(listener.source)`` (the sink's lost or established) unless the
        tracker is stopping or the listener was stopped (its node left or moved)."""
        with self._lock:
            if self._stopping.is_set() or listener.halt.is_set():
                return False
            report(listener.source)
            return True


class _Listener:
    """One node's tracking connection and the thread reading it."""

    def __init__(self, tracker: Tracker, source: str, node: Node) -> None:
        self.tracker = tracker
        self.source = source
        self.node = node
        self.pid = os.getpid()
        self.established = False
        self.client_id: int | None = None
        self.client: Any = None
        self.pubsub: Any = None
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self.run, name=f"cachekit-near {source}")
        self.thread.daemon = True
        close_in_children(self)

    def run(self) -> None:
        tracker, sink, source = self.tracker, self.tracker.sink, self.source
        delays = _backoff()
        while not self.halt.is_set():
            try:
                self.client = self.node.connect()
                self.pubsub = self.client.pubsub()
                self.client_id = self.set_up()
                if not tracker.report(self, sink.tracking_established):
                    break
                self.established = True
                delays = _backoff()
                self.listen()
            except tracker.catch as exc:
                log.debug("cachekit near cache: tracking on %s lost: %s", source, exc)
            except Exception:  # a failing sink must not end tracking silently
                log.exception("cachekit near cache: tracking on %s failed", source)
            finally:
                was_established, self.established = self.established, False
                self.disconnect()
            if was_established:
                tracker.report(self, sink.tracking_lost)
            self.halt.wait(next(delays))

    def command(self, *args: Any) -> Any:
        """One command on the (not yet subscribed) tracking connection: its reply."""
        pubsub = self.pubsub
        pubsub.execute_command(*args)
        reply = pubsub.parse_response(block=False, timeout=self.tracker.heartbeat[1])
        if reply is None:
            raise _Lost(f"no reply to {' '.join(map(str, args[:2]))}")
        return reply

    def set_up(self) -> int:
        """Name the connection, turn tracking on (redirected to itself), subscribe."""
        self.command("CLIENT", "SETNAME", CLIENT_NAME)
        client_id = int(self.command("CLIENT", "ID"))
        prefix = self.tracker.prefix
        options = ("PREFIX", prefix) if prefix else ()
        reply = self.command("CLIENT", "TRACKING", "on", "REDIRECT", client_id, "BCAST", *options)
        if reply not in (b"OK", "OK"):
            raise _Lost(f"CLIENT TRACKING answered {reply!r}")
        self.pubsub.subscribe(CHANNEL)
        message = self.pubsub.get_message(timeout=self.tracker.heartbeat[1])
        if message is None or message["type"] != "subscribe":
            raise _Lost(f"SUBSCRIBE answered {message!r}")
        return client_id

    def listen(self) -> None:
        """Hand every invalidation to the sink until halted or the connection fails."""
        sink, pubsub, halt = self.tracker.sink, self.pubsub, self.halt
        silence, patience = self.tracker.heartbeat
        heard = time.monotonic()
        pinged: float | None = None
        while not halt.is_set():
            message = pubsub.get_message(timeout=POLL)
            now = time.monotonic()
            if message is None:
                if pinged is None and now - heard > silence:
                    pubsub.ping()
                    pinged = now
                elif pinged is not None and now - pinged > patience:
                    raise _Lost(f"a ping stayed unanswered for {patience:g}s")
                continue
            heard, pinged = now, None
            kind = message["type"]
            if kind == "message":
                keys = message["data"]
                if keys is None:
                    sink.invalidate_all()
                else:
                    sink.invalidate([key.decode("utf-8", "surrogateescape") for key in keys])
            elif kind != "pong":
                raise _Lost(f"unexpected message {message!r}")

    def disconnect(self) -> None:
        """Close the tracking connection and its client."""
        pubsub, client, self.pubsub, self.client = self.pubsub, self.client, None, None
        if pubsub is not None:
            pubsub.close()
        if client is not None:
            close_sync_client(client)

    def close(self) -> None:
        """In a forked child: close the inherited socket without any I/O on it (the
        parent's threads, and the locks they held, are not here)."""
        pubsub = self.pubsub
        if pubsub is not None and self.pid != os.getpid():
            connection = pubsub.connection
            if connection is not None:
                connection.disconnect()  # closes the file descriptor only, in a child


class ClusterNodes:
    """A cluster's nodes, primaries and replicas, as ``CLUSTER NODES`` lists them now (a
    :class:`Tracker`'s ``nodes``): asked of the nodes seen last time, then of the seeds.
    A node the cluster marked failed is left out (its slots moved to a replica, or nobody
    can write them) until it is back.

    :param seeds: where to ask first (the configured root nodes).
    :param connect: returns a new sync client on ``(host, port)``.
    :param catch: the exceptions of a failed connection (the driver's).
    """

    def __init__(
        self,
        seeds: Sequence[tuple[str, int]],
        connect: Callable[[str, int], Any],
        catch: tuple[type[BaseException], ...],
    ) -> None:
        self.seeds = list(seeds)
        self.connect = connect
        self.catch = catch
        self.seen: list[tuple[str, int]] = []

    def __repr__(self) -> str:
        return f"ClusterNodes(seeds={self.seeds!r}, seen={len(self.seen)})"

    def __call__(self) -> dict[str, Node]:
        """``{"host:port": node}`` of every node with an address.

        :raises OSError: (or the driver's connection error) no node answered.
        """
        failure: BaseException = OSError("no cluster node to ask")
        for host, port in dict.fromkeys([*self.seen, *self.seeds]):
            client = self.connect(host, port)
            try:
                reply = client.execute_command("CLUSTER", "NODES")
            except self.catch as exc:
                failure = exc
                continue
            finally:
                close_sync_client(client)
            self.seen = _cluster_nodes(reply, host)
            return {f"{h}:{p}": Node(f"{h}:{p}", partial(self.connect, h, p)) for h, p in self.seen}
        raise failure


class SentinelMaster:
    """Where the sentinels say the master is now (a :class:`Tracker`'s ``nodes``), as the
    one source ``sentinel <name>``: when the master moves, its listener moves with it.

    :param sentinel: the driver's ``Sentinel`` (``discover_master``).
    :param name: the master's name.
    :param connect: returns a new sync client on ``(host, port)``.
    """

    def __init__(self, sentinel: Any, name: str, connect: Callable[[str, int], Any]) -> None:
        self.sentinel = sentinel
        self.name = name
        self.source = f"sentinel {name}"
        self.connect = connect

    def __repr__(self) -> str:
        return f"SentinelMaster({self.name!r})"

    def __call__(self) -> dict[str, Node]:
        """``{"sentinel <name>": the master}``.

        :raises ConnectionError: (the driver's) no sentinel knows the master.
        """
        host, port = self.sentinel.discover_master(self.name)
        return {self.source: Node(f"{host}:{port}", partial(self.connect, host, port))}


def _cluster_nodes(reply: bytes | str, asked: str) -> list[tuple[str, int]]:
    """The addresses in a ``CLUSTER NODES`` reply (``id ip:port@bus[,name] flags ...`` a
    line) but those failed, in handshake or without an address; a node that does not know
    its own ip is the one ``asked``."""
    text = reply.decode() if isinstance(reply, bytes) else reply
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or {"fail", "noaddr", "handshake"} & set(fields[2].split(",")):
            continue
        host, _, port = fields[1].split("@")[0].rpartition(":")
        if port.isdigit():
            nodes.append((host or asked, int(port)))
    return nodes


def _backoff() -> Iterator[float]:
    """Waits between reconnection attempts: :data:`BACKOFF` doubling, +-25% jitter."""
    delay, longest = BACKOFF
    while True:
        yield delay * random.uniform(0.75, 1.25)
        delay = min(delay * 2, longest)
