"""What the HTTP benchmarks share (bench_middleware.py, bench_responses.py): a uvicorn
server subprocess on a free loopback port, pinned to a CPU and stopped by PID, and a
minimal HTTP/1.1 keep-alive client that sends one request line and reads one response."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def serve_uvicorn(app: Any) -> None:
    """Serve ``app`` with uvicorn on a free loopback port, after printing the port (what
    :class:`ServerProcess` reads)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


class ServerProcess:
    """``script --serve ARG`` as a subprocess, optionally pinned to a CPU; stopped by PID."""

    def __init__(self, script: str, arg: str, cpu: str) -> None:
        command = [sys.executable, script, "--serve", arg]
        if cpu != "none" and shutil.which("taskset"):
            command = ["taskset", "-c", cpu, *command]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not re.fullmatch(r"\d+\n", line):
            self.stop()
            raise RuntimeError(f"the {arg} server did not start (printed {line!r})")
        self.port = int(line)

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Client:
    """A minimal HTTP/1.1 keep-alive client for one request line: send it, read one response
    and check its status."""

    def __init__(self, port: int, path: str, status: int = 200, headers: str = "") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.status = f"HTTP/1.1 {status} ".encode()
        self.line = f"GET {path} HTTP/1.1\r\nHost: bench\r\n{headers}\r\n".encode()
        self.head = b""

    def request(self) -> None:
        self.sock.sendall(self.line)
        data = self.buffer
        while (end := data.find(b"\r\n\r\n")) == -1:
            data += self._recv()
        head = data[:end]
        if not head.startswith(self.status):
            raise RuntimeError(f"unexpected response: {head!r}")
        match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        length = int(match.group(1)) if match and not head.startswith(b"HTTP/1.1 304") else 0
        total = end + 4 + length
        while len(data) < total:
            data += self._recv()
        self.head, self.buffer = head, data[total:]

    def header(self, name: str) -> str:
        """A header of the last response."""
        match = re.search(rb"(?i)\r\n" + name.encode() + rb": *([^\r]*)", self.head)
        assert match is not None, (name, self.head)
        return match.group(1).decode()

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise RuntimeError("server closed the connection")
        return chunk

    def close(self) -> None:
        self.sock.close()
