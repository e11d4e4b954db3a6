"""Real HTTP servers for the tests: uvicorn (ASGI) and waitress (WSGI), each serving an app
from a thread of the test process on a free loopback port."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn
import waitress  # type: ignore[import-untyped]  # waitress ships no type hints


@contextlib.contextmanager
def uvicorn_serving(app: Any, *, lifespan: str = "off") -> Iterator[str]:
    """Serve ``app`` with uvicorn from a thread of this process; yields its base URL; on
    exit, shut it down gracefully (in-flight requests finish first)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan, ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.01)
            assert thread.is_alive(), "uvicorn did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class Waitress:
    """waitress serving an app from a thread of this process."""

    def __init__(self, app: Any, threads: int) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = waitress.create_server(app, sockets=[self.sock], threads=threads)
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.server.run()
        except OSError:  # select() on the sockets stop() closed (EBADF), as WebTest allows
            if not self.stopping:
                raise

    def stop(self) -> None:
        self.stopping = True

        def close_all() -> None:  # runs on the server's loop thread
            for dispatcher in list(self.server._map.values()):
                dispatcher.close()

        try:
            self.server.trigger.pull_trigger(close_all)
        except OSError:  # the trigger's pipe is gone (EBADF, seen once in ~3,000 runs):
            close_all()  # close from here; the loop's select() then ends with EBADF
        self.thread.join(10)
        self.server.task_dispatcher.shutdown()


@contextlib.contextmanager
def waitress_serving(app: Any, threads: int = 4) -> Iterator[str]:
    """Serve ``app`` with waitress from a thread of this process; yields its base URL."""
    server = Waitress(app, threads)
    try:
        yield server.url
    finally:
        server.stop()
