"""Real cache servers for the test suite, started on free loopback ports.

Every server runs in the foreground as a child process of the test run, bound to 127.0.0.1,
with its files (log, configs) in a work directory and no persistence. Handles stop servers by
PID (SIGTERM, then SIGKILL after a timeout), always reap them, and can start them again on the
same port, so tests can simulate outages::

    server = RedisServer().start()
    server.stop()   # the port now refuses connections
    server.start()  # same port, empty data set

Binaries are looked up on PATH, then in the repository's ``.cachekit-servers/bin`` (where
``scripts/install-servers`` links binaries it could not install system-wide), then in the sbin
directories (``saslpasswd2`` lives in ``/usr/sbin``).

Servers still running when the interpreter exits are stopped by an ``atexit`` hook, and on
Linux each server also gets SIGTERM if the thread that started it dies (``PR_SET_PDEATHSIG``),
so a killed test run does not leave servers behind.

This module needs nothing but the standard library; it must not import ``cachekit``.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TypeAlias

__all__ = [
    "LOOPBACK",
    "MemcachedServer",
    "RedisCluster",
    "RedisSentinel",
    "RedisServer",
    "RespError",
    "SentinelServer",
    "ServerError",
    "ServerProcess",
    "find_binary",
    "free_port",
    "memcached_ascii_auth",
    "memcached_sasl",
    "pid_alive",
    "redis_command",
    "redis_info",
    "running_servers",
    "stop_all",
]

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_BIN = REPO_ROOT / ".cachekit-servers" / "bin"
_EXTRA_BIN_DIRS = (LOCAL_BIN, Path("/usr/local/sbin"), Path("/usr/sbin"), Path("/sbin"))

START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
_POLL = 0.02

RespValue: TypeAlias = "int | str | bytes | list[RespValue] | None"


class ServerError(RuntimeError):
    """A server could not be started, or did not reach the expected state in time."""


class RespError(Exception):
    """An error reply (``-ERR ...``) from a Redis-protocol server."""


# ------------------------------------------------------------------------- binaries and ports


def find_binary(name: str) -> str | None:
    """Return the path of executable *name*, or None when it is nowhere to be found."""
    if os.sep in name:
        return name if os.access(name, os.X_OK) else None
    found = shutil.which(name)
    if found is None:
        extra = os.pathsep.join(str(d) for d in _EXTRA_BIN_DIRS)
        found = shutil.which(name, path=extra)
    return found


def _require_binary(name: str) -> str:
    path = find_binary(name)
    if path is None:
        raise ServerError(f"{name} not on PATH: run scripts/install-servers")
    return path


_reserved_ports: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _claim(port: int, bus_offset: int | None) -> bool:
    ports = [port] if bus_offset is None else [port, port + bus_offset]
    if any(p > 65535 or p in _reserved_ports or not _bindable(p) for p in ports):
        return False
    _reserved_ports.update(ports)
    return True


def free_port(*, bus_offset: int | None = None) -> int:
    """Pick a free loopback port that no server of this process has been given yet.

    The port is checked by binding a socket to it. Ports come from below the kernel's ephemeral
    range, so an outgoing connection's source port cannot grab a stopped server's port before
    the server starts again. With *bus_offset* (Redis Cluster's bus: 10000) ``port +
    bus_offset`` must be free too, and both are reserved.
    """
    low, high = 15000, _ephemeral_low() - (bus_offset or 0)
    if high - low >= 100:
        for _ in range(1000):
            port = random.randrange(low, high)
            if _claim(port, bus_offset):
                return port
    for _ in range(1000):  # odd kernel settings: let the kernel choose
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if _claim(port, bus_offset):
            return port
    raise ServerError("no free loopback port found")


# ------------------------------------------------------------------------------- wire helpers


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _exchange(host: str, port: int, payload: bytes, timeout: float = 1.0) -> bytes:
    """Send *payload* on a new connection and return the reply's first line (b"" on error)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(payload)
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data
    except OSError:
        return b""


def _encode(args: Iterable[str | bytes | int]) -> bytes:
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class _RespReader:
    """Reads one RESP2 reply from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        self._buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self._buf:
            self._fill()
        line, _, self._buf = self._buf.partition(b"\r\n")
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self._buf) < size + 2:
            self._fill()
        data, self._buf = self._buf[:size], self._buf[size + 2 :]
        return data

    def read(self) -> RespValue:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._exactly(size)
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self.read() for _ in range(size)]
        raise ConnectionError(f"not a RESP2 reply: {line!r}")


def redis_command(
    host: str, port: int, *args: str | bytes | int, timeout: float = 2.0
) -> RespValue:
    """Run one command on a new connection. Bulk strings come back as bytes.

    Raises RespError for an error reply and OSError when the server is unreachable.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_encode(args))
        return _RespReader(sock).read()


def redis_info(host: str, port: int, section: str = "") -> dict[str, str]:
    """Return ``INFO [section]`` as a dict of its ``key:value`` lines."""
    reply = redis_command(host, port, "INFO", *([section] if section else []))
    if not isinstance(reply, bytes):
        raise RespError(f"unexpected INFO reply: {reply!r}")
    info: dict[str, str] = {}
    for line in reply.decode().splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            info[key] = value
    return info


def _pairs(reply: RespValue) -> dict[str, str]:
    """A flat [k1, v1, k2, v2, ...] RESP array as a dict of str."""
    if not isinstance(reply, list):
        return {}
    texts = [v.decode() if isinstance(v, bytes) else str(v) for v in reply]
    return dict(zip(texts[::2], texts[1::2], strict=False))


def _address(reply: RespValue) -> tuple[str, int] | None:
    if isinstance(reply, list) and len(reply) == 2:
        host, port = reply
        if isinstance(host, bytes) and isinstance(port, bytes):
            return host.decode(), int(port)
    return None


def _wait_for(
    condition: Callable[[], bool], timeout: float, what: str, detail: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (OSError, RespError):
            pass
        if time.monotonic() > deadline:
            raise ServerError(f"timed out after {timeout:.0f}s waiting for {what}\n{detail()}")
        time.sleep(_POLL)


def pause_process(pid: int, timeout: float = 5.0) -> None:
    """SIGSTOP *pid* and wait until the kernel shows it stopped: the signal is delivered
    asynchronously, and a server's thread can still answer a request in between."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while _state(pid) not in {"T", "t"}:
        if time.monotonic() > deadline:
            raise ServerError(f"process {pid} did not stop within {timeout:.0f}s")
        time.sleep(0.001)


def resume_process(pid: int) -> None:
    """SIGCONT *pid* (undo :func:`pause_process`)."""
    os.kill(pid, signal.SIGCONT)


def _state(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    return ""


def pid_alive(pid: int) -> bool:
    """True when process *pid* exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return not any(
        line.startswith("State:") and "Z" in line.split()[1:2] for line in status.splitlines()
    )


# ---------------------------------------------------------------------------- child processes


def _make_die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when the starting thread dies."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def die_with_parent() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return die_with_parent


_DIE_WITH_PARENT = _make_die_with_parent()
_live: set[ServerProcess] = set()
_temp_dirs: list[Path] = []


@atexit.register
def _cleanup_at_exit() -> None:
    stop_all(list(_live), timeout=STOP_TIMEOUT)
    for path in _temp_dirs:
        shutil.rmtree(path, ignore_errors=True)


def running_servers() -> list[ServerProcess]:
    """Every server started by this process and not stopped yet."""
    return [server for server in _live if server.running]


def stop_all(servers: Iterable[ServerProcess], timeout: float = STOP_TIMEOUT) -> None:
    """Stop several servers at once: SIGTERM to all, then wait (SIGKILL stragglers)."""
    servers = list(servers)
    for server in servers:
        server.terminate()
    deadline = time.monotonic() + timeout
    for server in servers:
        server.stop(timeout=max(0.0, deadline - time.monotonic()))


@dataclass(eq=False, kw_only=True)
class ServerProcess:
    """One server process on a loopback port, owned (started, stopped, reaped) by us.

    ``port`` 0 means "pick a free one at first start"; later starts reuse it. ``workdir`` holds
    the log and config files (a temporary directory when None, removed at exit).
    """

    port: int = 0
    workdir: Path | None = None
    host: str = LOOPBACK
    bus_offset: int | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _started: bool = field(default=False, init=False, repr=False)

    # -- hooks for subclasses

    def _command(self) -> list[str]:
        """The argv that runs the server in the foreground."""
        raise NotImplementedError

    def _environment(self) -> Mapping[str, str]:
        """Extra environment variables for the server process."""
        return {}

    def _prepare(self) -> None:
        """Write config files; called before the first start (and before retries of it)."""

    def _is_ready(self) -> bool:
        """Whether the server answers; polled during start-up."""
        raise NotImplementedError

    # -- public API

    @property
    def kind(self) -> str:
        """A short name for messages, log and directory names."""
        return type(self).__name__.lower()

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``."""
        return (self.host, self.port)

    @property
    def url(self) -> str:
        """A client URL for this server."""
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """PID of the running server process, None when it is not running."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether our server process is alive (a process that exited gets reaped here)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def directory(self) -> Path:
        """The work directory (created on first use)."""
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"cachekit-{self.kind}-"))
            _temp_dirs.append(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self.workdir

    @property
    def log_path(self) -> Path:
        """The file receiving the server's stdout and stderr (appended to on restarts)."""
        return self.directory / f"{self.kind}.log"

    def log_tail(self, lines: int = 25) -> str:
        """The last lines of the server's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        """Start the server (on the same port as before, if it ran before); wait until ready."""
        if self.running:
            raise ServerError(f"{self} is already running")
        first = not self._started
        for attempt in range(3 if first and self.port == 0 else 1):
            if first and (self.port == 0 or attempt > 0):
                self.port = free_port(bus_offset=self.bus_offset)
            if first:
                self._prepare()
            self._launch()
            try:
                self._wait_ready(timeout)
            except ServerError:
                exited = self._proc is not None and self._proc.poll() is not None
                self.kill()
                if exited and first and "in use" in self.log_tail(5):
                    continue  # someone else took the port between our check and the bind
                raise
            self._started = True
            return self
        raise ServerError(f"{self.kind}: no usable port after 3 attempts\n{self.log_tail()}")

    def terminate(self) -> None:
        """Send SIGTERM without waiting; stop() (or stop_all) still has to reap the process."""
        if self.running and self._proc is not None:
            self._proc.terminate()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the server and wait for it to exit; SIGKILL it after *timeout* seconds."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None
        _live.discard(self)

    def kill(self) -> None:
        """SIGKILL the server (a crash, as far as clients can tell) and reap it."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        self._proc = None
        _live.discard(self)

    def restart(self, timeout: float = START_TIMEOUT) -> Self:
        """stop() then start() on the same port."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __str__(self) -> str:
        return f"{self.kind} on {self.host}:{self.port}"

    # -- internals

    def _launch(self) -> None:
        env = {**os.environ, **self._environment()}
        with self.log_path.open("ab") as log:
            log.write(f"---- {time.strftime('%H:%M:%S')} starting {self}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self._command(),
                cwd=self.directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_DIE_WITH_PARENT,
            )
        _live.add(self)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._is_ready():
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise ServerError(
                    f"{self} exited during start-up (code {code}); log tail:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self} not ready after {timeout:.0f}s; log tail:\n{self.log_tail()}"
                )
            time.sleep(_POLL)


# ------------------------------------------------------------------------------ Redis / Valkey


@dataclass(eq=False)
class RedisServer(ServerProcess):
    """A standalone redis-server (or valkey-server: pass its binary), no persistence."""

    binary: str = "redis-server"
    extra_args: Sequence[str] = ()
    db: int = 0

    @property
    def kind(self) -> str:
        """The binary's name: redis-server or valkey-server."""
        return Path(self.binary).name

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/DB``."""
        return f"redis://{self.host}:{self.port}/{self.db}"

    def command(self, *args: str | bytes | int, timeout: float = 2.0) -> RespValue:
        """Run one command on this server (see redis_command)."""
        return redis_command(self.host, self.port, *args, timeout=timeout)

    def info(self, section: str = "") -> dict[str, str]:
        """``INFO [section]`` as a dict."""
        return redis_info(self.host, self.port, section)

    def _command(self) -> list[str]:
        return [
            _require_binary(self.binary),
            *("--port", str(self.port), "--bind", self.host, "--dir", str(self.directory)),
            *("--daemonize", "no", "--save", "", "--appendonly", "no"),
            *("--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1"),
            *self.extra_args,
        ]

    def _is_ready(self) -> bool:
        return _exchange(self.host, self.port, b"PING\r\n").startswith(b"+PONG")


@dataclass(eq=False)
class RedisCluster:
    """A Redis Cluster of 3 primaries with 1 replica each, on loopback, no persistence.

    ``nodes`` are RedisServer handles: stop/kill/start single nodes to simulate outages, then
    call ``wait_ok()`` to wait for the cluster to settle.
    """

    binary: str = "redis-server"
    cli: str = "redis-cli"
    primaries: int = 3
    replicas: int = 1
    workdir: Path | None = None
    node_timeout_ms: int = 2000
    nodes: list[RedisServer] = field(default_factory=list, init=False)

    @property
    def root_urls(self) -> list[str]:
        """``redis://127.0.0.1:PORT`` of every node (startup nodes for cluster clients)."""
        return [f"redis://{n.host}:{n.port}" for n in self.nodes]

    @property
    def url(self) -> str:
        """The first node's root URL."""
        return self.root_urls[0]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node."""
        return [n.address for n in self.nodes]

    def start(self, timeout: float = 30.0) -> Self:
        """Create the cluster (first call) or start its stopped nodes again; wait until ok."""
        if self.nodes:
            for node in self.nodes:
                if not node.running:
                    node.start()
            self.wait_ok(timeout)
            return self
        base = self.workdir
        if base is None:
            base = Path(tempfile.mkdtemp(prefix="cachekit-cluster-"))
            _temp_dirs.append(base)
        args = (
            *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            *("--cluster-node-timeout", str(self.node_timeout_ms)),
        )
        try:
            for i in range(self.primaries * (1 + self.replicas)):
                node_dir = base / f"node{i}"
                (node_dir / "nodes.conf").unlink(missing_ok=True)
                node = RedisServer(self.binary, args, workdir=node_dir, bus_offset=10000)
                self.nodes.append(node)
                node.start()
            self._create(timeout)
            self.wait_ok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop every node (their cluster state is kept for a later start)."""
        stop_all(self.nodes, timeout)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every running node reports cluster_state:ok and lists all running nodes
        (replicas included) in CLUSTER SLOTS."""
        running = [n for n in self.nodes if n.running]
        want = {n.port for n in running}

        def settled() -> bool:
            for node in running:
                state = node.command("CLUSTER", "INFO")
                if not isinstance(state, bytes) or b"cluster_state:ok" not in state:
                    return False
                if _slot_ports(node.command("CLUSTER", "SLOTS")) != want:
                    return False
            return True

        _wait_for(settled, timeout, "the cluster to be ok", self._describe)

    def _create(self, timeout: float) -> None:
        cmd = [
            _require_binary(self.cli),
            "--cluster",
            "create",
            *(f"{n.host}:{n.port}" for n in self.nodes),
            *("--cluster-replicas", str(self.replicas), "--cluster-yes"),
        ]
        result = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if self.nodes:
            (self.nodes[0].directory.parent / "create.log").write_text(
                result.stdout + result.stderr
            )
        if result.returncode != 0:
            raise ServerError(f"{' '.join(cmd)} failed:\n{result.stdout}{result.stderr}")

    def _describe(self) -> str:
        for node in self.nodes:
            if node.running:
                try:
                    nodes = node.command("CLUSTER", "NODES")
                except (OSError, RespError) as exc:
                    return f"CLUSTER NODES failed: {exc}"
                return nodes.decode() if isinstance(nodes, bytes) else repr(nodes)
        return "(no node running)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _slot_ports(reply: RespValue) -> set[int]:
    """The ports of all nodes (primaries and replicas) that a CLUSTER SLOTS reply names."""
    ports: set[int] = set()
    if isinstance(reply, list):
        for slot_range in reply:
            if isinstance(slot_range, list):
                for node in slot_range[2:]:
                    if isinstance(node, list) and len(node) >= 2 and isinstance(node[1], int):
                        ports.add(node[1])
    return ports


@dataclass(eq=False)
class SentinelServer(ServerProcess):
    """A redis-server in sentinel mode monitoring one master; rewrites its own config file."""

    binary: str = "redis-server"
    master_name: str = "mymaster"
    master_port: int = 0
    down_after_ms: int = 1000
    failover_timeout_ms: int = 3000

    @property
    def kind(self) -> str:
        """``sentinel``."""
        return "sentinel"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT`` (the sentinel itself)."""
        return f"redis://{self.host}:{self.port}"

    def command(self, *args: str | bytes | int, timeout: float = 2.0) -> RespValue:
        """Run one command on the sentinel."""
        return redis_command(self.host, self.port, *args, timeout=timeout)

    @property
    def config_path(self) -> Path:
        """The sentinel's config file (it must be writable: sentinel rewrites it)."""
        return self.directory / "sentinel.conf"

    def _prepare(self) -> None:
        name = self.master_name
        self.config_path.write_text(
            f"port {self.port}\n"
            f"bind {self.host}\n"
            "daemonize no\n"
            f'dir "{self.directory}"\n'
            f"sentinel monitor {name} {self.host} {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}\n"
        )

    def _command(self) -> list[str]:
        return [_require_binary(self.binary), str(self.config_path), "--sentinel"]

    def _is_ready(self) -> bool:
        return _exchange(self.host, self.port, b"PING\r\n").startswith(b"+PONG")


@dataclass(eq=False)
class RedisSentinel:
    """A master, a replica and one sentinel watching them, on loopback.

    ``nodes[0]`` is the initial master; after a failover use ``current_master()``.
    """

    binary: str = "redis-server"
    master_name: str = "mymaster"
    workdir: Path | None = None
    nodes: list[RedisServer] = field(default_factory=list, init=False)
    sentinel: SentinelServer | None = field(default=None, init=False)

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """``(host, port)`` of the sentinels, as sentinel clients take them."""
        return [] if self.sentinel is None else [self.sentinel.address]

    def start(self, timeout: float = 30.0) -> Self:
        """Start master, replica and sentinel (first call) or whatever is stopped; wait."""
        if self.sentinel is not None:
            for server in (*self.nodes, self.sentinel):
                if not server.running:
                    server.start()
            self.wait_settled(timeout)
            return self
        base = self.workdir
        if base is None:
            base = Path(tempfile.mkdtemp(prefix="cachekit-sentinel-"))
            _temp_dirs.append(base)
        try:
            master = RedisServer(self.binary, workdir=base / "master")
            self.nodes.append(master)
            master.start()
            replica_of = ("--replicaof", master.host, str(master.port))
            replica = RedisServer(self.binary, replica_of, workdir=base / "replica")
            self.nodes.append(replica)
            replica.start()
            self.sentinel = SentinelServer(
                self.binary,
                self.master_name,
                master_port=master.port,
                workdir=base / "sentinel",
            )
            self.sentinel.start()
            self.wait_settled(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the sentinel and both data nodes."""
        stop_all([*([self.sentinel] if self.sentinel else []), *self.nodes], timeout)

    def master_address(self) -> tuple[str, int]:
        """The master's address according to the sentinel."""
        sentinel = self._sentinel()
        reply = sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        address = _address(reply)
        if address is None:
            raise ServerError(f"sentinel does not know {self.master_name!r}: {reply!r}")
        return address

    def current_master(self) -> RedisServer:
        """The node the sentinel currently names as master."""
        _, port = self.master_address()
        return next(n for n in self.nodes if n.port == port)

    def current_replica(self) -> RedisServer:
        """The node that is not the current master."""
        _, port = self.master_address()
        return next(n for n in self.nodes if n.port != port)

    def failover(self, timeout: float = 20.0) -> tuple[str, int]:
        """Force a failover (SENTINEL FAILOVER), wait until the master moved and the old
        master (if running) replicates from the new one; return the new master's address."""
        sentinel = self._sentinel()
        old = self.master_address()
        sentinel.command("SENTINEL", "FAILOVER", self.master_name)

        def moved() -> bool:
            return self.master_address() != old

        _wait_for(moved, timeout, "the sentinel failover", self._describe)
        self.wait_settled(timeout)
        return self.master_address()

    def wait_settled(self, timeout: float = 30.0) -> None:
        """Wait until the sentinel's master answers as master and the running replica has a
        live link to it that the sentinel also sees."""
        sentinel = self._sentinel()

        def settled() -> bool:
            master = self.current_master()
            replica = self.current_replica()
            if not master.running or master.info("replication").get("role") != "master":
                return False
            if not replica.running:
                return True
            info = replica.info("replication")
            if info.get("role") != "slave" or info.get("master_port") != str(master.port):
                # the sentinel reconfigures a returning old master only after ~8s: speed it up
                replica.command("REPLICAOF", master.host, master.port)
                return False
            if info.get("master_link_status") != "up":
                return False
            seen = sentinel.command("SENTINEL", "REPLICAS", self.master_name)
            for entry in seen if isinstance(seen, list) else []:
                fields = _pairs(entry)
                if (
                    fields.get("port") == str(replica.port)
                    and fields.get("flags") == "slave"
                    and fields.get("master-link-status") == "ok"
                    and fields.get("master-port") == str(master.port)
                ):
                    return True
            return False

        _wait_for(settled, timeout, "sentinel topology to settle", self._describe)

    def _sentinel(self) -> SentinelServer:
        if self.sentinel is None:
            raise ServerError("the sentinel setup has not been started")
        return self.sentinel

    def _describe(self) -> str:
        parts = []
        for server in [*self.nodes, *([self.sentinel] if self.sentinel else [])]:
            parts.append(f"== {server} (running={server.running})\n{server.log_tail(8)}")
        return "\n".join(parts)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------------------- memcached


@dataclass(eq=False)
class MemcachedServer(ServerProcess):
    """A memcached server (TCP only, 64 MB), optionally with SASL or ASCII authentication.

    Use memcached_sasl() / memcached_ascii_auth() for the authenticated variants. memcached
    acts on SIGTERM at its next clock tick, so stop() takes up to a second: kill() is instant.
    """

    extra_args: Sequence[str] = ()
    binary: str = "memcached"
    auth: Literal["none", "sasl", "ascii"] = "none"
    username: str | None = None
    password: str | None = None

    @property
    def kind(self) -> str:
        """``memcached``."""
        return "memcached"

    @property
    def url(self) -> str:
        """``memcached://127.0.0.1:PORT``."""
        return f"memcached://{self.host}:{self.port}"

    @property
    def sasl_dir(self) -> Path:
        """Directory with the SASL config (memcached.conf) and password db (sasldb2)."""
        return self.directory / "sasl"

    @property
    def authfile(self) -> Path:
        """The ``-Y`` authfile of an ASCII-auth server."""
        return self.directory / "authfile"

    def _prepare(self) -> None:
        if self.auth == "none":
            return
        if not self.username or self.password is None:
            raise ServerError(f"memcached auth={self.auth} needs a username and a password")
        if self.auth == "ascii":
            self.authfile.write_text(f"{self.username}:{self.password}\n")
            self.authfile.chmod(0o600)
            return
        self.sasl_dir.mkdir(exist_ok=True)
        sasldb = self.sasl_dir / "sasldb2"
        sasldb.unlink(missing_ok=True)
        result = subprocess.run(
            [
                *(_require_binary("saslpasswd2"), "-p", "-a", "memcached"),
                *("-f", str(sasldb), "-c", self.username),
            ],
            input=self.password.encode(),
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServerError(f"saslpasswd2 failed: {result.stderr.decode(errors='replace')}")
        (self.sasl_dir / "memcached.conf").write_text(f"mech_list: plain\nsasldb_path: {sasldb}\n")

    def _environment(self) -> Mapping[str, str]:
        return {"SASL_CONF_PATH": str(self.sasl_dir)} if self.auth == "sasl" else {}

    def _command(self) -> list[str]:
        cmd = [_require_binary(self.binary), "-l", self.host, "-p", str(self.port)]
        cmd += ["-U", "0", "-m", "64"]
        if os.geteuid() == 0:
            cmd += ["-u", "root"]
        if self.auth == "sasl":
            cmd += ["-S"]
        elif self.auth == "ascii":
            cmd += ["-Y", str(self.authfile)]
        return cmd + list(self.extra_args)

    def _is_ready(self) -> bool:
        if self.auth != "none":
            return _port_open(self.host, self.port)
        return _exchange(self.host, self.port, b"version\r\n").startswith(b"VERSION")


def memcached_sasl(user: str, password: str, *, workdir: Path | None = None) -> MemcachedServer:
    """A (not yet started) memcached requiring SASL PLAIN auth (binary protocol only)."""
    return MemcachedServer(auth="sasl", username=user, password=password, workdir=workdir)


def memcached_ascii_auth(
    user: str, password: str, *, workdir: Path | None = None
) -> MemcachedServer:
    """A (not yet started) memcached requiring ASCII-protocol auth (``-Y authfile``): clients
    first send ``set <any> 0 0 <n>\\r\\n<user> <password>\\r\\n``."""
    return MemcachedServer(auth="ascii", username=user, password=password, workdir=workdir)
