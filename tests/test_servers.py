"""The test-server fixtures really start servers that answer, and stop them without leftovers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import bmemcached
import pytest
from bmemcached.exceptions import MemcachedException
from pymemcache.client.base import Client as PymemcacheClient
from pymemcache.exceptions import MemcacheClientError
from servers import (
    MemcachedServer,
    RedisCluster,
    RedisSentinel,
    RedisServer,
    pid_alive,
    redis_command,
)

pytestmark = pytest.mark.servers


def exchange(address: tuple[str, int], payload: bytes) -> bytes:
    """Send raw bytes on a new connection, return the first reply line(s)."""
    with socket.create_connection(address, timeout=2) as sock:
        sock.sendall(payload)
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def refuses_connections(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def assert_reaped(pid: int) -> None:
    assert not pid_alive(pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_redis_server_answers_ping(redis_server: RedisServer) -> None:
    assert exchange(redis_server.address, b"PING\r\n") == b"+PONG\r\n"
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.info("server")["tcp_port"] == str(redis_server.port)


def test_redis_server_has_no_persistence(redis_server: RedisServer) -> None:
    assert redis_server.command("CONFIG", "GET", "save") == [b"save", b""]
    assert redis_server.command("CONFIG", "GET", "appendonly") == [b"appendonly", b"no"]


def test_valkey_server_is_valkey(valkey_server: RedisServer) -> None:
    assert exchange(valkey_server.address, b"PING\r\n") == b"+PONG\r\n"
    assert valkey_server.info("server").get("server_name") == "valkey"


def test_redis_cluster_is_ok(redis_cluster: RedisCluster) -> None:
    assert len(redis_cluster.nodes) == 6
    assert redis_cluster.root_urls == [f"redis://127.0.0.1:{n.port}" for n in redis_cluster.nodes]
    for node in redis_cluster.nodes:
        info = node.command("CLUSTER", "INFO")
        assert isinstance(info, bytes)
        assert b"cluster_state:ok" in info
    roles = [node.info("replication")["role"] for node in redis_cluster.nodes]
    assert sorted(roles) == ["master"] * 3 + ["slave"] * 3


def test_redis_sentinel_names_the_master(redis_sentinel: RedisSentinel) -> None:
    [(host, port)] = redis_sentinel.sentinels
    reply = redis_command(host, port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
    assert redis_sentinel.master_name == "mymaster"
    master = redis_sentinel.current_master()
    assert reply == [b"127.0.0.1", str(master.port).encode()]
    assert master.info("replication")["role"] == "master"


def test_redis_sentinel_failover_moves_the_master(redis_sentinel: RedisSentinel) -> None:
    before = redis_sentinel.master_address()
    after = redis_sentinel.failover()
    assert after != before
    new_master = redis_sentinel.current_master()
    assert new_master.address == after
    assert new_master.command("SET", "after-failover", "1") == "OK"
    old_master = redis_sentinel.current_replica()
    assert old_master.address == before
    assert old_master.info("replication")["master_port"] == str(after[1])


def test_memcached_server_answers_version(memcached_server: MemcachedServer) -> None:
    assert exchange(memcached_server.address, b"version\r\n").startswith(b"VERSION ")
    assert memcached_server.url == f"memcached://127.0.0.1:{memcached_server.port}"


def test_memcached_servers_are_three_distinct_servers(
    memcached_servers: list[MemcachedServer],
) -> None:
    assert len({server.port for server in memcached_servers}) == 3
    for server in memcached_servers:
        assert exchange(server.address, b"version\r\n").startswith(b"VERSION ")


def test_memcached_sasl_server_needs_the_password(
    memcached_sasl_server: MemcachedServer,
) -> None:
    address = f"{memcached_sasl_server.host}:{memcached_sasl_server.port}"
    user, password = memcached_sasl_server.username, memcached_sasl_server.password
    client = bmemcached.Client((address,), user, password)
    try:
        assert client.set("greeting", "hello")
        assert client.get("greeting") == "hello"
    finally:
        client.disconnect_all()
    intruder = bmemcached.Client((address,), user, "wrong password")
    try:
        with pytest.raises(MemcachedException, match=r"[Aa]uth"):
            intruder.set("greeting", "bye")
    finally:
        intruder.disconnect_all()


def test_memcached_ascii_server_needs_the_password(
    memcached_ascii_server: MemcachedServer,
) -> None:
    address = memcached_ascii_server.address
    anonymous = PymemcacheClient(address, connect_timeout=2, timeout=2)
    try:
        with pytest.raises(MemcacheClientError):
            anonymous.set("greeting", b"hello", noreply=False)
    finally:
        anonymous.close()

    token = f"{memcached_ascii_server.username} {memcached_ascii_server.password}".encode()
    with socket.create_connection(address, timeout=2) as sock:
        sock.sendall(b"set auth x 0 %d\r\n%s\r\n" % (len(token), token))
        assert sock.recv(100) == b"STORED\r\n"
        sock.sendall(b"set greeting 0 0 5\r\nhello\r\n")
        assert sock.recv(100) == b"STORED\r\n"
        sock.sendall(b"get greeting\r\n")
        assert sock.recv(100) == b"VALUE greeting 0 5\r\nhello\r\nEND\r\n"


def test_stop_then_start_reuses_the_port(private_redis_server: RedisServer) -> None:
    server = private_redis_server
    port, pid = server.port, server.pid
    assert pid is not None
    assert server.command("SET", "k", "v") == "OK"

    server.stop()
    assert server.pid is None
    assert not server.running
    assert_reaped(pid)
    assert refuses_connections(server.address)

    server.start()
    assert server.port == port
    assert server.pid not in (None, pid)
    assert exchange(server.address, b"PING\r\n") == b"+PONG\r\n"
    assert server.command("GET", "k") is None  # no persistence


def test_kill_is_a_crash_and_start_recovers(private_redis_server: RedisServer) -> None:
    server = private_redis_server
    pid = server.pid
    assert pid is not None
    server.kill()
    assert_reaped(pid)
    assert refuses_connections(server.address)
    server.restart()
    assert exchange(server.address, b"PING\r\n") == b"+PONG\r\n"


def test_memcached_kill_then_start(private_memcached_server: MemcachedServer) -> None:
    server = private_memcached_server
    pid = server.pid
    assert pid is not None
    server.kill()  # stop() works too, but memcached takes up to 1s to act on SIGTERM
    assert_reaped(pid)
    assert refuses_connections(server.address)
    server.start()
    assert server.pid not in (None, pid)
    assert exchange(server.address, b"version\r\n").startswith(b"VERSION ")


def test_no_server_outlives_its_process(require_servers: Callable[..., None]) -> None:
    """Servers a process forgot to stop are stopped (and reaped) when it exits."""
    require_servers("redis-server")
    script = textwrap.dedent(
        """
        import servers
        print(servers.RedisServer().start().pid)
        print(servers.RedisServer().start().pid)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    pids = [int(line) for line in result.stdout.split()]
    assert len(pids) == 2
    for pid in pids:
        assert not pid_alive(pid)
