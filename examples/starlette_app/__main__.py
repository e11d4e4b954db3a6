"""Serve the example with uvicorn on 127.0.0.1 (port ``$PORT``, default 8000; ``0``
picks a free one)."""

from __future__ import annotations

import os
import socket

import uvicorn

from examples.starlette_app.app import app


def main() -> None:
    """Bind the port, print the URL to open, serve until Ctrl-C / SIGTERM."""
    # proto=IPPROTO_TCP: asyncio only sets TCP_NODELAY on sockets that say they are TCP;
    # without it every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(os.environ.get("PORT", "8000"))))
    sock.listen(128)  # from here on, connections queue until the server accepts them
    port = sock.getsockname()[1]
    print(f"cachekit Starlette example: open http://127.0.0.1:{port}/", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="info", access_log=False))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
