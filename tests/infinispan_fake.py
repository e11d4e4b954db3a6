"""A fake Infinispan server: the part of the REST API v2 the cachekit store uses, in a process.

Written from Infinispan's REST documentation ("REST v2 API": adding, replacing, retrieving,
checking and deleting entries; the ``timeToLiveSeconds`` / ``maxIdleTimeSeconds`` headers;
ETags; counters; BASIC and DIGEST authentication), and, where the documentation is silent,
from the server's request handlers (``BaseCacheResource``, ``CounterResource``), *not* from
the cachekit store. What it does, as the server does:

* ``PUT /rest/v2/caches/{cache}/{key}`` stores the body (``204``, with the new ``etag``);
  ``If-None-Match`` equal to the current ETag answers ``304`` and stores nothing, and
  **``If-Match`` is ignored**: the server checks preconditions on reads and deletes only, so
  a compare-and-set by ETag on ``PUT`` silently overwrites.
* ``POST`` is ``PUT`` that answers ``409 Conflict`` ("An entry already exists") when the key
  holds a value. Like the server, it looks the entry up and then writes in a second step, so
  two racing ``POST``s may both succeed: it is not an atomic create-if-absent.
* ``GET``/``HEAD`` answer ``200`` with ``ETag`` (a number, unquoted, as the server's
  MurmurHash3 of the value is), ``Last-Modified``, ``Expires`` (when the entry can expire),
  ``timeToLiveSeconds``, ``maxIdleTimeSeconds``; ``404`` for a missing entry; ``304`` when
  ``If-None-Match`` matches, ``412`` when ``If-Match`` does not.
* ``DELETE`` answers ``204``, ``404`` when missing, ``412`` when ``If-None-Match`` is given
  and differs from the entry's ETag (the server checks that header there, not ``If-Match``).
* TTL headers are whole seconds: absent or ``0``, the cache's default (no expiry here); a
  negative value, never.
* ``HEAD /rest/v2/caches/{cache}``: ``204`` when the cache exists, else ``404``; an entry
  request for a missing cache answers ``404`` too.
* Strong counters: ``POST /rest/v2/counters/{name}`` with ``{"strong-counter": {...}}``
  defines one (a no-op when it exists); ``GET`` its value; ``POST ...?action=add&delta=``,
  ``increment``, ``compareAndSet&expect=&update=`` (``true``/``false``) and
  ``compareAndSwap`` (the previous value), each atomic; an undefined counter answers ``404``
  to ``GET`` and ``400`` ("Strong counter 'x' not found") to the strong operations.
* A body over the endpoint's ``max-content-length`` (10 MiB unless told) answers ``413``.
* Authentication, when a user is configured: ``401`` with a ``WWW-Authenticate`` challenge
  per mechanism (``Digest`` with ``qop="auth"``, ``Basic``) to a request without valid
  credentials.

Run it as ``python tests/infinispan_fake.py --port 11222 [--user u --password p]
[--mechanisms digest,basic] [--caches cache,other]``; the suite starts it through
:class:`FakeInfinispan` (a :class:`servers.ServerProcess`: stop, kill, restart, pause by
PID). Standard library only; it does not import cachekit.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import socket
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

from servers import LOOPBACK, ServerProcess  # the script's directory is on sys.path

__all__ = ["TEST_PASSWORD", "TEST_USER", "FakeInfinispan", "serve"]

REALM = "default"
TEST_USER = "app"
TEST_PASSWORD = "s3cr3t:@/pw"  # the suite's credentials for an authenticating fake


@dataclass
class Entry:
    value: bytes
    content_type: str
    created: float
    lifespan: int  # seconds, -1: never
    max_idle: int  # seconds, -1: never
    last_used: float = 0.0

    @property
    def etag(self) -> str:
        return str(int.from_bytes(hashlib.blake2b(self.value, digest_size=4).digest(), "big"))

    def expires(self) -> float | None:
        return None if self.lifespan < 0 else self.created + self.lifespan

    def alive(self, now: float) -> bool:
        expires = self.expires()
        if expires is not None and now >= expires:
            return False
        return self.max_idle < 0 or now < self.last_used + self.max_idle


@dataclass
class State:
    caches: dict[str, dict[bytes, Entry]]
    counters: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    user: str | None = None
    password: str | None = None
    mechanisms: tuple[str, ...] = ("digest", "basic")
    nonces: set[str] = field(default_factory=set)
    max_content_length: int = 10 * 1024 * 1024  # the REST endpoint's default


def _ttl(value: str | None) -> int:
    """A TTL header: absent or 0 is the cache's default (no expiry here), negative never."""
    if value is None:
        return -1
    seconds = int(value)
    return -1 if seconds <= 0 else seconds


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the server
    disable_nagle_algorithm = True  # headers and body leave at once, as Netty sends them
    server_version = "FakeInfinispan"
    state: State

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    # --- plumbing --------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        send_body: bool = True,
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if "Content-Type" not in (headers or {}) and body:
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)

    def _authorized(self) -> bool:
        state = self.state
        if state.user is None:
            return True
        given = self.headers.get("Authorization", "")
        scheme, _, rest = given.partition(" ")
        if scheme.lower() == "basic" and "basic" in state.mechanisms:
            try:
                user, _, password = base64.b64decode(rest).decode().partition(":")
            except ValueError:
                return False
            return (user, password) == (state.user, state.password)
        if scheme.lower() == "digest" and "digest" in state.mechanisms:
            return self._digest_ok(rest)
        return False

    def _digest_ok(self, header: str) -> bool:
        fields: dict[str, str] = {}
        for part in urllib.request.parse_http_list(header):
            name, _, value = part.strip().partition("=")
            fields[name] = value.strip('"')
        state = self.state
        if fields.get("username") != state.user or fields.get("nonce") not in state.nonces:
            return False

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5(f"{state.user}:{REALM}:{state.password}")
        ha2 = md5(f"{self.command}:{fields.get('uri', '')}")
        expected = md5(
            f"{ha1}:{fields['nonce']}:{fields.get('nc', '')}:{fields.get('cnonce', '')}:"
            f"{fields.get('qop', '')}:{ha2}"
        )
        return fields.get("response") == expected

    def _challenge(self) -> None:
        self.send_response(401)
        for mechanism in self.state.mechanisms:
            if mechanism == "digest":
                nonce = base64.b64encode(os.urandom(12)).decode()
                self.state.nonces.add(nonce)
                self.send_header(
                    "WWW-Authenticate",
                    f'Digest realm="{REALM}", nonce="{nonce}", qop="auth", algorithm=MD5',
                )
            else:
                self.send_header("WWW-Authenticate", f'Basic realm="{REALM}"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _dispatch(self) -> None:
        body = self._body()
        if len(body) > self.state.max_content_length:
            self._reply(413, b"Request Entity Too Large")
            return
        if not self._authorized():
            self._challenge()
            return
        parts = urlsplit(self.path)
        segments = [unquote_to_bytes(s) for s in parts.path.split("/")]
        query = parse_qs(parts.query, keep_blank_values=True)
        if segments[:3] != [b"", b"rest", b"v2"] or len(segments) < 5:
            self._reply(404, b"no such resource")
            return
        kind, name = segments[3], segments[4].decode("utf-8", "surrogateescape")
        if kind == b"caches" and len(segments) == 5:
            self._cache_resource(name)
        elif kind == b"caches" and len(segments) == 6:
            self._entry(name, segments[5], body)
        elif kind == b"counters" and len(segments) == 5:
            self._counter(name, query, body)
        else:
            self._reply(404, b"no such resource")

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _dispatch

    # --- caches and entries ----------------------------------------------------------

    def _cache_resource(self, name: str) -> None:
        if self.command != "HEAD":
            self._reply(405, b"the fake serves HEAD on a cache only")
        else:
            self._reply(204 if name in self.state.caches else 404)

    def _lookup(self, entries: dict[bytes, Entry], key: bytes) -> Entry | None:
        now = time.time()
        with self.state.lock:
            entry = entries.get(key)
            if entry is not None and not entry.alive(now):
                del entries[key]
                return None
            if entry is not None:
                entry.last_used = now
            return entry

    def _entry(self, cache: str, key: bytes, body: bytes) -> None:
        entries = self.state.caches.get(cache)
        if entries is None:
            self._reply(404, f"cache '{cache}' does not exist".encode())
            return
        method = self.command
        if method in ("GET", "HEAD"):
            self._read(entries, key, send_body=method == "GET")
        elif method in ("PUT", "POST"):
            self._write(entries, key, body)
        elif method == "DELETE":
            self._delete(entries, key)
        else:
            self._reply(405)

    def _read(self, entries: dict[bytes, Entry], key: bytes, *, send_body: bool) -> None:
        entry = self._lookup(entries, key)
        if entry is None:
            self._reply(404)
            return
        etag = entry.etag
        if self.headers.get("If-None-Match") == etag:
            self._reply(304)
            return
        if_match = self.headers.get("If-Match")
        if if_match is not None and if_match != etag:
            self._reply(412)
            return
        headers = {
            "Content-Type": entry.content_type,
            "ETag": etag,
            "Last-Modified": formatdate(entry.created, usegmt=True),
            "timeToLiveSeconds": str(entry.lifespan),
            "maxIdleTimeSeconds": str(entry.max_idle),
        }
        expires = entry.expires()
        if expires is not None:
            headers["Expires"] = formatdate(expires, usegmt=True)
        self._reply(200, entry.value, headers, send_body=send_body)

    def _write(self, entries: dict[bytes, Entry], key: bytes, body: bytes) -> None:
        existing = self._lookup(entries, key)  # step 1: look the entry up ...
        if self.command == "POST" and existing is not None:
            self._reply(409, b"An entry already exists")
            return
        if existing is not None and self.headers.get("If-None-Match") == existing.etag:
            self._reply(304)
            return
        # (If-Match is not looked at: the server does not enforce it on writes)
        time.sleep(0)  # ... step 2, later: write (another request may run in between)
        now = time.time()
        entry = Entry(
            body,
            self.headers.get("Content-Type", "application/octet-stream"),
            now,
            _ttl(self.headers.get("timeToLiveSeconds")),
            _ttl(self.headers.get("maxIdleTimeSeconds")),
            now,
        )
        with self.state.lock:
            entries[key] = entry
        self._reply(204, headers={"etag": entry.etag})

    def _delete(self, entries: dict[bytes, Entry], key: bytes) -> None:
        entry = self._lookup(entries, key)
        if entry is None:
            self._reply(404)
            return
        expected = self.headers.get("If-None-Match")
        if expected is not None and expected != entry.etag:
            self._reply(412)
            return
        with self.state.lock:
            entries.pop(key, None)
        self._reply(204)

    # --- strong counters -------------------------------------------------------------

    def _counter(self, name: str, query: dict[str, list[str]], body: bytes) -> None:
        state = self.state
        action = (query.get("action") or [None])[0]
        if self.command == "POST" and action is None:
            if "strong-counter" not in json.loads(body or b"{}"):
                self._reply(400, b"Invalid configuration")
                return
            initial = int(json.loads(body)["strong-counter"].get("initial-value", 0))
            with state.lock:
                state.counters.setdefault(name, initial)
            self._reply(200)
            return
        if self.command == "GET" and action is None:
            with state.lock:
                value = state.counters.get(name)
            if value is None:
                self._reply(404)
            else:
                self._reply(200, str(value).encode())
            return
        if self.command == "DELETE":
            with state.lock:
                found = state.counters.pop(name, None) is not None
            self._reply(204 if found else 404)
            return
        if self.command != "POST" or action not in (
            "add",
            "increment",
            "compareAndSet",
            "compareAndSwap",
        ):
            self._reply(405)
            return
        try:
            numbers = {p: int(query[p][0]) for p in ("delta", "expect", "update") if p in query}
        except ValueError:
            self._reply(400, b"Param must be a number")
            return
        with state.lock:
            current = state.counters.get(name)
            if current is None:
                answer: object = None
            elif action == "increment":
                answer = state.counters[name] = current + 1
            elif action == "add":
                answer = state.counters[name] = current + numbers["delta"]
            else:
                swapped = current == numbers["expect"]
                if swapped:
                    state.counters[name] = numbers["update"]
                answer = swapped if action == "compareAndSet" else current
        if answer is None:
            self._reply(400, f"Strong counter '{name}' not found".encode())
        else:
            self._reply(200, json.dumps(answer).encode(), {"Content-Type": "application/json"})


def serve(
    port: int,
    *,
    host: str = LOOPBACK,
    user: str | None = None,
    password: str | None = None,
    mechanisms: tuple[str, ...] = ("digest", "basic"),
    caches: tuple[str, ...] = ("cache",),
    max_content_length: int = 10 * 1024 * 1024,
) -> ThreadingHTTPServer:
    """A fake server bound to ``host:port`` (not yet serving: call ``serve_forever``)."""
    state = State({name: {} for name in caches}, user=user, password=password)
    state.mechanisms = mechanisms
    state.max_content_length = max_content_length
    handler = type("BoundHandler", (Handler,), {"state": state})
    ThreadingHTTPServer.request_queue_size = 1024  # a burst of new connections is not dropped
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


@dataclass(eq=False)
class FakeInfinispan(ServerProcess):
    """The fake as a server process of the suite (see :mod:`servers`): ``.url``,
    ``.port``, ``.pid``, ``.stop()``, ``.kill()``, ``.start()`` (same port, empty data).
    ``user``/``password`` turn authentication on (``mechanisms``: ``digest``, ``basic``)."""

    user: str | None = None
    password: str | None = None
    mechanisms: str = "digest,basic"
    caches: str = "cache"
    max_content_length: int = 10 * 1024 * 1024

    @property
    def kind(self) -> str:
        """``infinispan-fake``."""
        return "infinispan-fake"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    def _command(self) -> list[str]:
        command = [sys.executable, os.path.abspath(__file__), "--port", str(self.port)]
        command += ["--mechanisms", self.mechanisms, "--caches", self.caches]
        command += ["--max-content-length", str(self.max_content_length)]
        if self.user is not None:
            command += ["--user", self.user, "--password", self.password or ""]
        return command

    def _is_ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--mechanisms", default="digest,basic")
    parser.add_argument("--caches", default="cache")
    parser.add_argument("--max-content-length", type=int, default=10 * 1024 * 1024)
    args = parser.parse_args()
    server = serve(
        args.port,
        host=args.host,
        user=args.user,
        password=args.password,
        mechanisms=tuple(args.mechanisms.split(",")),
        caches=tuple(args.caches.split(",")),
        max_content_length=args.max_content_length,
    )
    print(f"fake infinispan on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
