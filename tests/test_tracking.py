"""Client tracking for the near cache (cachekit.stores.redis.tracking) on the real servers the
suite starts: raw writes reach the sink, a lost tracking connection is reported and set up
again, on standalone Redis and Valkey, Sentinel and Cluster, across forks."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from itertools import count
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster as RawCluster
from servers import RedisCluster, RedisSentinel, RedisServer, pause_process, resume_process

from cachekit.config import parse_cache_section
from cachekit.stores.redis import RedisStore
from cachekit.stores.redis.tracking import CLIENT_NAME, Node, Tracker, _cluster_nodes

WAIT = 15.0  # generous: a slow CI machine, a reconnection backoff of up to a second
_prefixes = count()

Event = tuple[Any, ...]


class RecordingSink:
    """Records what a tracker tells it, and lets a test wait for an event."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.changed = threading.Condition()

    def _record(self, event: Event) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def tracking_lost(self, source: str) -> None:
        self._record(("lost", source))

    def tracking_established(self, source: str) -> None:
        self._record(("established", source))

    def tracking_removed(self, source: str) -> None:
        self._record(("removed", source))

    def invalidate(self, keys: Sequence[str]) -> None:
        self._record(("invalidate", *keys))

    def invalidate_all(self) -> None:
        self._record(("invalidate_all",))

    def wait_for(self, wanted: Callable[[Event], bool], after: int = 0) -> int:
        """Wait until an event from index ``after`` on is ``wanted``: the index after it."""
        with self.changed:
            found: list[int] = []

            def seen() -> bool:
                found[:] = [i for i in range(after, len(self.events)) if wanted(self.events[i])]
                return bool(found)

            assert self.changed.wait_for(seen, WAIT), f"not seen in {self.events[after:]}"
            return found[0] + 1

    def wait_event(self, *event: Any, after: int = 0) -> int:
        """Wait for ``event`` itself (from index ``after`` on)."""
        return self.wait_for(lambda e: e == event, after)

    def wait_key(self, key: str, after: int = 0) -> int:
        """Wait for an invalidation naming ``key``."""
        return self.wait_for(lambda e: e[0] == "invalidate" and key in e[1:], after)

    def mark(self) -> int:
        with self.changed:
            return len(self.events)


def new_prefix() -> str:
    return f"trk{os.getpid()}-{next(_prefixes)}:"


def start(tracker: Tracker | None, sink: RecordingSink) -> Tracker:
    """Start ``tracker`` and wait until every node of it is established."""
    assert tracker is not None
    tracker.start()
    with sink.changed:
        assert sink.changed.wait_for(lambda: tracker.established, WAIT), repr(tracker)
    return tracker


def eventually(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` until it holds (at most WAIT seconds)."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


def tracking_clients(server: RedisServer) -> list[dict[str, str]]:
    """The server's ``CLIENT LIST`` entries of tracking connections."""
    listing = server.command("CLIENT", "LIST")
    assert isinstance(listing, bytes)
    entries = [
        dict(f.split("=", 1) for f in line.split()) for line in listing.decode().splitlines()
    ]
    return [e for e in entries if e.get("name") == CLIENT_NAME]


@pytest.fixture(params=["redis_server", "valkey_server"])
def server(request: pytest.FixtureRequest) -> RedisServer:
    """The shared redis-server, then the shared valkey-server."""
    found: RedisServer = request.getfixturevalue(request.param)
    return found


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture
def tracked(server: RedisServer) -> Iterator[tuple[Tracker, RecordingSink, RedisStore]]:
    """A started tracker of a fresh prefix on ``server``, established."""
    store = RedisStore.from_url(server.url, name="valkey" if "valkey" in server.kind else "redis")
    sink = RecordingSink()
    tracker = start(store.tracker(sink, new_prefix()), sink)
    yield tracker, sink, store
    tracker.stop()
    store.close()


def test_raw_writes_under_the_prefix_reach_the_sink(
    tracked: tuple[Tracker, RecordingSink, RedisStore], raw: redis.Redis
) -> None:
    """SET, DEL, UNLINK, an expiry and a FLUSHDB by another client each reach the sink
    (keys decoded, a flush as invalidate_all), and the store's own pool is never opened."""
    tracker, sink, store = tracked
    p = tracker.prefix
    raw.set(f"{p}set", 1)
    at = sink.wait_key(f"{p}set")
    raw.set(f"{p}del", 1)
    raw.delete(f"{p}del")
    at = sink.wait_key(f"{p}del", sink.wait_key(f"{p}del", at))
    raw.set(f"{p}unlink", 1)
    raw.unlink(f"{p}unlink")
    at = sink.wait_key(f"{p}unlink", sink.wait_key(f"{p}unlink", at))
    raw.set(f"{p}expires", 1)
    at = sink.wait_key(f"{p}expires", at)
    raw.pexpire(f"{p}expires", 1)  # the server's expiry cycle removes it: announced again
    at = sink.wait_key(f"{p}expires", at)
    raw.set(f"{p}caf\xe9", 1)
    at = sink.wait_key(f"{p}caf\xe9", at)
    with redis.Redis.from_url(server_url(raw, db=9)) as other_db:
        other_db.flushdb()  # any flush is announced, whichever database it empties
    sink.wait_event("invalidate_all", after=at)
    assert store._sync is None  # the tracker never used the store's clients


def server_url(client: redis.Redis, db: int) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{db}"


def test_keys_outside_the_prefix_are_not_announced(
    tracked: tuple[Tracker, RecordingSink, RedisStore], raw: redis.Redis
) -> None:
    """A write on a key outside the prefix sends nothing: the next message is the write
    under the prefix that followed it (messages keep the server's order)."""
    tracker, sink, _ = tracked
    at = sink.mark()
    raw.set(f"other-{tracker.prefix}", 1)
    raw.set(f"{tracker.prefix}inside", 1)
    sink.wait_key(f"{tracker.prefix}inside", at)
    assert sink.events[at:] == [("invalidate", f"{tracker.prefix}inside")]


def test_killed_tracking_connection_is_lost_then_established_again(
    tracked: tuple[Tracker, RecordingSink, RedisStore], server: RedisServer, raw: redis.Redis
) -> None:
    """CLIENT KILL of the cachekit-near connection is reported lost, then established on a
    new connection (new CLIENT ID, redirecting to itself, BCAST), and invalidations flow."""
    tracker, sink, _ = tracked
    (source, old_id), *_ = tracker.client_ids.items()
    (listed,) = [e for e in tracking_clients(server) if e["id"] == str(old_id)]
    assert listed["redir"] == str(old_id)
    assert "B" in listed["flags"]  # broadcasting mode
    at = sink.mark()
    raw.execute_command("CLIENT", "KILL", "ID", old_id)
    at = sink.wait_event("established", source, after=sink.wait_event("lost", source, after=at))
    new_id = tracker.client_ids[source]
    assert new_id != old_id
    assert str(new_id) in {e["id"] for e in tracking_clients(server)}
    raw.set(f"{tracker.prefix}after-kill", 1)
    sink.wait_key(f"{tracker.prefix}after-kill", at)


def test_server_restart_is_lost_then_established(private_redis_server: RedisServer) -> None:
    """A killed server is reported lost at once; after it restarts tracking is established
    again and a write on it reaches the sink."""
    sink = RecordingSink()
    tracker = start(RedisStore.from_url(private_redis_server.url).tracker(sink, "r:"), sink)
    (source,) = tracker.sources
    at = sink.mark()
    private_redis_server.kill()
    at = sink.wait_event("lost", source, after=at)
    assert not tracker.established
    private_redis_server.start()
    at = sink.wait_event("established", source, after=at)
    private_redis_server.command("SET", "r:back", "1")
    sink.wait_key("r:back", at)
    tracker.stop()


def test_stop_joins_while_the_server_is_paused(private_redis_server: RedisServer) -> None:
    """stop(timeout=1) ends every tracking thread even while the server is SIGSTOPped (a
    hung socket), and reports the node lost."""
    sink = RecordingSink()
    tracker = start(RedisStore.from_url(private_redis_server.url).tracker(sink, "p:"), sink)
    (source,) = tracker.sources
    assert private_redis_server.pid is not None
    pause_process(private_redis_server.pid)
    try:
        at = sink.mark()
        tracker.stop(timeout=1.0)
        mine = {f"cachekit-near {source}", f"cachekit-near {tracker.target}"}
        assert not [t for t in threading.enumerate() if t.name in mine]
        assert sink.events[at:] == [("lost", source)]
        assert not tracker.alive
    finally:
        resume_process(private_redis_server.pid)


def test_unanswered_ping_is_lost_then_established(private_redis_server: RedisServer) -> None:
    """A connection that stays silent and does not answer a ping (a half-open socket; here a
    SIGSTOPped server) is reported lost; once the server answers again tracking is
    established again and a write reaches the sink."""
    sink = RecordingSink()
    store = RedisStore.from_url(private_redis_server.url)
    factory = store.connection
    assert factory is not None
    node = Node(private_redis_server.url, factory.sync_client)
    tracker = Tracker(sink, "h:", lambda: {"node": node}, heartbeat=(0.1, 0.3))
    start(tracker, sink)
    assert private_redis_server.pid is not None
    at = sink.mark()
    pause_process(private_redis_server.pid)
    try:
        at = sink.wait_event("lost", "node", after=at)
    finally:
        resume_process(private_redis_server.pid)
    at = sink.wait_event("established", "node", after=at)
    private_redis_server.command("SET", "h:resumed", "1")
    sink.wait_key("h:resumed", at)
    tracker.stop()


def test_sentinel_failover_is_followed(redis_sentinel: RedisSentinel) -> None:
    """After a Sentinel failover the tracker reports the master lost, is established on the
    new master, and a write there reaches the sink."""
    sentinels = [f"{host}:{port}" for host, port in redis_sentinel.sentinels]
    section = {"sentinel": {"sentinels": sentinels, "masterName": redis_sentinel.master_name}}
    store = RedisStore.from_config(parse_cache_section({"store": "redis", "redis": section}))
    sink = RecordingSink()
    tracker = start(store.tracker(sink, "s:"), sink)
    source = f"sentinel {redis_sentinel.master_name}"
    assert tracker.sources == {source: True}
    at = sink.mark()
    redis_sentinel.failover()
    at = sink.wait_event("established", source, after=sink.wait_event("lost", source, after=at))
    master = redis_sentinel.current_master()
    eventually(lambda: bool(tracking_clients(master)))  # (it may reach the old master first)
    master.command("SET", "s:after-failover", "1")
    sink.wait_key("s:after-failover", at)
    tracker.stop()


def test_cluster_tracks_every_node(redis_cluster: RedisCluster) -> None:
    """On a cluster every primary and replica is a source; writes on keys of different slots
    (different primaries) each reach the sink, from the primary and from its replica."""
    nodes = [{"url": url} for url in redis_cluster.root_urls]
    config = parse_cache_section({"store": "redis", "redis": {"cluster": {"rootNodes": nodes}}})
    store = RedisStore.from_config(config)
    sink = RecordingSink()
    tracker = start(store.tracker(sink, "c:"), sink)
    assert set(tracker.sources) == {f"{host}:{port}" for host, port in redis_cluster.addresses}
    raw = RawCluster.from_url(redis_cluster.url)
    keys = [f"c:{{{tag}}}k" for tag in ("a", "b", "c", "d", "e", "f")]
    primaries = {raw.get_node_from_key(key).name for key in keys}
    assert len(primaries) == 3  # the keys live on every primary
    at = sink.mark()
    for key in keys:
        raw.set(key, 1)
    for key in keys:  # once from its primary, once from that primary's replica
        sink.wait_key(key, sink.wait_key(key, at))
    raw.close()
    tracker.stop()


def test_nodes_that_join_leave_or_move_are_followed(
    redis_server: RedisServer, valkey_server: RedisServer
) -> None:
    """When the node list changes, a new node is reported lost then established, a node that
    left is reported removed and its connection closed, and a source whose address moved (a
    Sentinel master) is lost, then established on the new address."""

    def node(server: RedisServer) -> Node:
        return Node(server.url, partial(redis.Redis.from_url, server.url, protocol=2))

    listed = {"a": node(redis_server)}
    sink = RecordingSink()
    prefix = new_prefix()
    tracker = start(Tracker(sink, prefix, lambda: dict(listed), refresh=0.05), sink)
    at = sink.mark()
    listed["b"] = node(valkey_server)
    at = sink.wait_event("established", "b", after=sink.wait_event("lost", "b", after=at))
    assert tracker.established
    valkey_server.command("SET", f"{prefix}on-b", "1")
    at = sink.wait_key(f"{prefix}on-b", at)
    del listed["a"]
    at = sink.wait_event("removed", "a", after=at)
    eventually(lambda: not tracking_clients(redis_server))
    assert tracker.sources == {"b": True}
    listed["b"] = node(redis_server)  # "b" moves to the other server
    at = sink.wait_event("established", "b", after=sink.wait_event("lost", "b", after=at))
    eventually(lambda: not tracking_clients(valkey_server))
    redis_server.command("SET", f"{prefix}moved", "1")
    sink.wait_key(f"{prefix}moved", at)
    tracker.stop()


def test_cluster_nodes_reply_is_read_with_every_address() -> None:
    """The node list keeps primaries and replicas (those only suspected of failing too),
    skips nodes the cluster marked failed, without an address or in handshake, and names a
    node that does not know its own ip after the node asked."""
    reply = (
        b"a1 10.0.0.1:7000@17000 master - 0 0 1 connected 0-5460\n"
        b"a2 10.0.0.2:7001@17001,host-b slave a1 0 0 1 connected\n"
        b"a3 :7002@17002 myself,master - 0 0 2 connected 5461-16383\n"
        b"a4 10.0.0.4:7003@17003 master,fail? - 0 0 3 connected\n"
        b"a7 10.0.0.7:7006@17006 master,fail - 0 0 3 disconnected\n"
        b"a5 :0@0 master,noaddr - 0 0 4 disconnected\n"
        b"a6 10.0.0.6:7005@17005 handshake - 0 0 0 connected\n"
    )
    assert _cluster_nodes(reply, "10.0.0.3") == [
        ("10.0.0.1", 7000),
        ("10.0.0.2", 7001),
        ("10.0.0.3", 7002),
        ("10.0.0.4", 7003),
    ]


def test_store_without_connection_spec_has_no_tracker() -> None:
    """A store built from bare client factories (fakeredis, a caller's pool) cannot be
    tracked: tracker() says so with None."""
    store = RedisStore(lambda: None, lambda: None)
    assert store.tracker(RecordingSink(), "x:") is None


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_does_not_share_the_tracking_connection(
    tracked: tuple[Tracker, RecordingSink, RedisStore], raw: redis.Redis
) -> None:
    """In a forked child the tracker is dead and start() sets up the child's own
    connection, which receives invalidations; the parent's connection is unaffected."""
    tracker, sink, _ = tracked
    parent_ids = tracker.client_ids
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        status = 1
        try:
            verdict = [not tracker.alive, not tracker.established]
            child_sink = RecordingSink()
            tracker.sink = child_sink
            start(tracker, child_sink)
            verdict.append(tracker.client_ids != parent_ids)
            raw.set(f"{tracker.prefix}from-child", 1)
            child_sink.wait_key(f"{tracker.prefix}from-child")
            tracker.stop()
            status = 0 if all(verdict) else 2
            os.write(writer, repr(verdict).encode())
        finally:
            os._exit(status)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        told = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, told
    sink.wait_key(f"{tracker.prefix}from-child")  # the parent heard the child's write too
    assert tracker.client_ids == parent_ids
    at = sink.mark()
    raw.set(f"{tracker.prefix}after-child", 1)
    sink.wait_key(f"{tracker.prefix}after-child", at)
