"""Serve the example with waitress on 127.0.0.1 (port ``$PORT``, default 8000; ``0``
picks a free one)."""

from __future__ import annotations

import os
import socket

import waitress  # type: ignore[import-untyped]  # waitress ships no type hints

from examples.flask_app.app import app


def main() -> None:
    """Bind the port, print the URL to open, serve until Ctrl-C / SIGTERM."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(os.environ.get("PORT", "8000"))))
    sock.listen(128)  # from here on, connections queue until the server accepts them
    port = sock.getsockname()[1]
    print(f"cachekit Flask example: open http://127.0.0.1:{port}/", flush=True)
    waitress.serve(app, sockets=[sock], threads=8, _quiet=True)


if __name__ == "__main__":
    main()
