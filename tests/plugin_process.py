"""A plugin process for the socket tests: it uses only cachekit's plugin surface and the
environment the host gave it.

It reads one JSON command per line on stdin and writes one JSON line per command on
stdout: ``{"ok": result}`` or ``{"error": "ExceptionName", "message": "..."}``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from cachekit import cached
from cachekit.plugin import cache, scope, socket_path

calls: dict[str, int] = {}
held: list[Any] = []  # connections kept open on purpose


@cached(namespace="reports", ttl=60)
def report(number: int) -> dict[str, int]:
    """A computation the plugin caches: counts how often it really ran."""
    calls["report"] = calls.get("report", 0) + 1
    return {"number": number, "runs": calls["report"]}


def run(command: dict[str, Any]) -> Any:
    what = command["cmd"]
    binding = command.get("binding", "")
    tenant = command.get("tenant")
    if what == "env":
        return {k: v for k, v in os.environ.items() if k.startswith("CACHEKIT_")}
    if what == "path":
        return socket_path(binding)
    if what == "set":
        return cache(binding, tenant).set(command["key"], command["value"], command.get("ttl"))
    if what == "get":
        return cache(binding, tenant).get(command["key"])
    if what == "incr":
        return cache(binding, tenant).incr(command["key"], command.get("delta", 1))
    if what == "report":
        with scope(tenant, binding):
            return report(command["number"])
    if what == "half-frame":  # a frame cut in the middle, then wait to be killed
        import socket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(socket_path(binding))
        sock.sendall((1000).to_bytes(4, "big") + b"\x95\x01\xa3get")
        held.append(sock)
        return "sent"
    raise ValueError(f"unknown command {what!r}")


def main() -> None:
    for line in sys.stdin:
        try:
            answer = {"ok": run(json.loads(line))}
        except Exception as exc:
            answer = {"error": type(exc).__name__, "message": str(exc)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
