"""The example apps, served for real: uvicorn (Starlette) and waitress (Flask) in their own
processes on free loopback ports, driven over HTTP with httpx."""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


class ExampleServer:
    """An example app started as ``python -m <module>`` with ``PORT=0`` (the app binds a
    free loopback port and prints its URL); stopped by PID."""

    def __init__(self, *command: str, log: IO[bytes]) -> None:
        env = {**os.environ, "PORT": "0", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True
        )
        self.log = log
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else ""
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if match is None:
            self.stop()
            raise RuntimeError(f"{command} did not print its URL; got {line!r}; {self.errors()}")
        self.url = match.group(0).rstrip("/")
        with httpx.Client(base_url=self.url) as http:  # queued in the listen backlog if early
            assert http.get("/healthz", timeout=30).json() == {"ok": True}

    def errors(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> int:
        """SIGTERM by PID, then SIGKILL if it does not exit; returns the exit code."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def starlette_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with (tmp_path_factory.mktemp("starlette") / "stderr").open("w+b") as log:
        server = ExampleServer(sys.executable, "-m", "examples.starlette_app", log=log)
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture(scope="module")
def flask_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with (tmp_path_factory.mktemp("flask") / "stderr").open("w+b") as log:
        server = ExampleServer(sys.executable, "-m", "examples.flask_app", log=log)
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture(params=["starlette", "flask"])
def url(request: pytest.FixtureRequest) -> str:
    """Each example in turn."""
    return str(request.getfixturevalue(f"{request.param}_url"))


def tenant(name: str) -> dict[str, str]:
    return {"X-Tenant-ID": name}


# --- both examples ---------------------------------------------------------------------------


def test_plugins_and_tenants_are_isolated(url: str) -> None:
    """A value written by one plugin for one tenant is invisible to the other tenant, the
    other plugin and the platform scope."""
    with httpx.Client(base_url=url) as http:
        put = http.put("/api/catalog/items/iso", json={"color": "red"}, headers=tenant("acme"))
        assert put.status_code == 200
        mine = http.get("/api/catalog/items/iso", headers=tenant("acme"))
        assert mine.json() == {"key": "iso", "value": {"color": "red"}, "tenant": "acme"}
        assert http.get("/api/catalog/items/iso", headers=tenant("globex")).status_code == 404
        assert http.get("/api/reviews/items/iso", headers=tenant("acme")).status_code == 404
        assert http.get("/api/catalog/items/iso").status_code == 404  # platform scope


def unique_tenant(label: str) -> str:
    """A tenant id no other test (or earlier run against the same server) used."""
    return f"{label}-{os.getpid()}-{threading.get_ident() % 10_000}-{os.urandom(3).hex()}"


def test_cached_endpoint_computes_once_per_tenant(url: str) -> None:
    """The @cached product lookup runs once per (plugin, tenant); repeats are hits."""
    acme, globex = unique_tenant("acme"), unique_tenant("globex")
    with httpx.Client(base_url=url) as http:
        bodies = [
            http.get("/api/catalog/products/7", headers=tenant(acme)).json() for _ in range(3)
        ]
        assert {b["product"]["name"] for b in bodies} == {"product 7"}
        assert [b["lookups"] for b in bodies] == [1, 1, 1]
        other = http.get("/api/catalog/products/7", headers=tenant(globex)).json()
        assert other["lookups"] == 1  # its own lookup, its own counter
        reviews = http.get("/api/reviews/products/7", headers=tenant(acme)).json()
        assert reviews["lookups"] == 1


def test_hits_counter_counts_per_tenant(url: str) -> None:
    """counter("hits") increments atomically and separately per tenant."""
    acme, globex = unique_tenant("acme"), unique_tenant("globex")
    with httpx.Client(base_url=url) as http:
        counts = [
            http.post("/api/catalog/hits", headers=tenant(acme)).json()["hits"] for _ in range(3)
        ]
        assert counts == [1, 2, 3]
        assert http.post("/api/catalog/hits", headers=tenant(globex)).json() == {"hits": 1}


def test_rate_limited_endpoint_answers_429(url: str) -> None:
    """Five searches pass, the sixth gets a 429 with Retry-After and RateLimit-* headers;
    another tenant is unaffected."""
    acme, globex = unique_tenant("acme"), unique_tenant("globex")
    with httpx.Client(base_url=url) as http:
        codes = [
            http.get("/api/catalog/search?q=x", headers=tenant(acme)).status_code for _ in range(5)
        ]
        assert codes == [200] * 5
        refused = http.get("/api/catalog/search?q=x", headers=tenant(acme))
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 12
        assert refused.headers["ratelimit-limit"] == "5"
        assert refused.headers["ratelimit-remaining"] == "0"
        assert refused.json()["error"] == "rate limit exceeded"
        assert http.get("/api/catalog/search?q=x", headers=tenant(globex)).status_code == 200


def test_streaming_response_reads_the_cache_while_streaming(url: str) -> None:
    """The streaming endpoint reads each key from the request's cache as it streams."""
    with httpx.Client(base_url=url) as http:
        for name in ("acme", "globex"):
            for key in ("s1", "s2"):
                http.put(f"/api/reviews/items/{key}", json=f"{name}-{key}", headers=tenant(name))
        with http.stream(
            "GET", "/api/reviews/stream", params={"keys": "s1,s2,s3"}, headers=tenant("acme")
        ) as answer:
            lines = [line for line in answer.iter_lines() if line]
    assert [json.loads(line) for line in lines] == [
        {"key": "s1", "value": "acme-s1", "tenant": "acme"},
        {"key": "s2", "value": "acme-s2", "tenant": "acme"},
        {"key": "s3", "value": None, "tenant": "acme"},
    ]


@pytest.mark.parametrize("bad", ["../x", "x" * 500, "", "a b", "acme, globex"])
def test_bad_tenant_ids_get_400(url: str, bad: str) -> None:
    """Invalid tenant ids are refused with a 400 JSON error before any endpoint runs."""
    with httpx.Client(base_url=url) as http:
        answer = http.put("/api/catalog/items/bad", json=1, headers=tenant(bad))
        assert answer.status_code == 400
        assert answer.json()["error"] == "invalid tenant id"
        assert http.get("/api/catalog/stats", headers=tenant(bad)).status_code == 400


def test_control_characters_in_the_tenant_get_400(url: str) -> None:
    """A tenant header with a control character (sent raw: httpx refuses to) gets a 400,
    whichever layer refuses it first."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"GET /api/catalog/stats HTTP/1.1\r\nHost: x\r\nX-Tenant-ID: a\x01b\r\n"
            b"Connection: close\r\n\r\n"
        )
        head = sock.recv(4096)
    assert head.split(b"\r\n")[0].split()[1] == b"400"


def test_scope_does_not_carry_over_to_the_next_request(url: str) -> None:
    """On one keep-alive connection, a request without a tenant after one with a tenant
    runs in the platform scope, not the previous request's."""
    with httpx.Client(base_url=url) as http:
        assert http.get("/api/catalog/scope", headers=tenant("acme")).json()["tenant"] == "acme"
        assert http.get("/api/catalog/scope").json() == {"plugin": "catalog", "tenant": None}
        assert http.get("/api/reviews/scope", headers=tenant("b")).json()["tenant"] == "b"


# --- Starlette under uvicorn -----------------------------------------------------------------


@pytest.mark.anyio
async def test_100_interleaved_async_requests_see_only_their_tenant(starlette_url: str) -> None:
    """100 tenants' requests in flight at once (writes, reads and streams interleaving in
    the server) each read only their own tenant's data."""
    tenants = [f"async-{i}" for i in range(100)]
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=starlette_url, limits=limits, timeout=30) as http:
        await asyncio.gather(
            *(http.put("/api/catalog/items/secret", json=t, headers=tenant(t)) for t in tenants)
        )
        reads = await asyncio.gather(
            *(http.get("/api/catalog/items/secret", headers=tenant(t)) for t in tenants)
        )
        streams = await asyncio.gather(
            *(
                http.get("/api/catalog/stream", params={"keys": "secret"}, headers=tenant(t))
                for t in tenants
            )
        )
    cross_reads = [
        (t, read.json(), stream.json())
        for t, read, stream in zip(tenants, reads, streams, strict=True)
        if read.json()["value"] != t or stream.json() != {"key": "secret", "value": t, "tenant": t}
    ]
    assert cross_reads == []


def test_sync_and_async_endpoints_see_the_request_scope(starlette_url: str) -> None:
    """The async endpoint and the def endpoint (run in Starlette's thread pool) of the
    same app both see the request's plugin and tenant."""
    with httpx.Client(base_url=starlette_url) as http:
        assert http.get("/api/reviews/scope", headers=tenant("acme")).json() == {
            "plugin": "reviews",
            "tenant": "acme",
        }
        assert http.get("/api/reviews/scope/sync", headers=tenant("acme")).json() == {
            "plugin": "reviews",
            "tenant": "acme",
            "in_thread_pool": True,
        }


def test_background_task_counts_writes_in_the_request_scope(starlette_url: str) -> None:
    """The PUT endpoint's background task increments the writer's own counter."""
    with httpx.Client(base_url=starlette_url) as http:
        for value in range(3):
            http.put("/api/catalog/items/bg", json=value, headers=tenant("bg-tenant"))
        # The task runs after the response is sent: wait for it (a bounded wait, no timing
        # assertion).
        for _ in range(200):
            writes = http.get("/api/catalog/stats", headers=tenant("bg-tenant")).json()
            if writes == {"writes": 3}:
                break
            threading.Event().wait(0.01)
        assert writes == {"writes": 3}
        assert http.get("/api/reviews/stats", headers=tenant("bg-tenant")).json() == {"writes": 0}


def test_sync_delete_endpoint(starlette_url: str) -> None:
    """The sync DELETE endpoint removes the item from the request's scope only."""
    with httpx.Client(base_url=starlette_url) as http:
        for name in ("d1", "d2"):
            http.put("/api/catalog/items/gone", json=name, headers=tenant(name))
        assert http.delete("/api/catalog/items/gone", headers=tenant("d1")).status_code == 204
        assert http.delete("/api/catalog/items/gone", headers=tenant("d1")).status_code == 404
        assert http.get("/api/catalog/items/gone", headers=tenant("d2")).json()["value"] == "d2"


def test_starlette_example_shuts_down_cleanly(tmp_path: Path) -> None:
    """SIGTERM runs uvicorn's graceful shutdown through the middleware's lifespan
    handling (which closes the store after the app's shutdown) with no error logged."""
    with (tmp_path / "stderr").open("w+b") as log:
        server = ExampleServer(sys.executable, "-m", "examples.starlette_app", log=log)
        # uvicorn re-raises the signal after a graceful shutdown
        assert server.stop() in (0, -signal.SIGTERM)
        logged = server.errors()
    assert "Application startup complete." in logged
    assert "Application shutdown complete." in logged
    assert "error" not in logged.lower()


def test_scripts_example_serves_the_starlette_app(tmp_path: Path) -> None:
    """scripts/example (the README's run command) starts the Starlette example."""
    with (tmp_path / "stderr").open("w+b") as log:
        server = ExampleServer("bash", str(ROOT / "scripts" / "example"), log=log)
        try:
            with httpx.Client(base_url=server.url) as http:
                assert "Starlette example" in http.get("/").text
        finally:
            server.stop()


# --- Flask under waitress --------------------------------------------------------------------


def test_50_threads_under_waitress_see_only_their_tenant(flask_url: str) -> None:
    """50 client threads, one tenant each, write and read (plain and streamed) at once
    against waitress's worker threads: zero cross-tenant reads."""
    tenants = [f"thread-{i}" for i in range(50)]
    barrier = threading.Barrier(len(tenants))
    cross_reads: list[tuple[str, object]] = []
    done: list[str] = []

    def client(name: str) -> None:
        with httpx.Client(base_url=flask_url, timeout=30) as http:
            barrier.wait()
            http.put("/api/catalog/items/secret", json=name, headers=tenant(name))
            for _ in range(3):
                read = http.get("/api/catalog/items/secret", headers=tenant(name)).json()
                if read["value"] != name or read["tenant"] != name:
                    cross_reads.append((name, read))
                stream = http.get(
                    "/api/catalog/stream", params={"keys": "secret"}, headers=tenant(name)
                ).json()
                if stream != {"key": "secret", "value": name, "tenant": name}:
                    cross_reads.append((name, stream))
        done.append(name)

    threads = [threading.Thread(target=client, args=(name,)) for name in tenants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(done) == sorted(tenants)
    assert cross_reads == []


def test_flask_plugin_index_and_host_routes(flask_url: str) -> None:
    """Plugin routes run in their plugin's scope, the host's own routes in 'host'."""
    with httpx.Client(base_url=flask_url) as http:
        assert http.get("/api/reviews/", headers=tenant("a")).json()["plugin"] == "reviews"
        assert "Flask example" in http.get("/").text


# --- examples/README.md's curl lines, run for real -------------------------------------------


@dataclass(frozen=True)
class CurlAnswer:
    """What ``curl`` printed: the status, the headers (with ``-i``) and the body."""

    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def curl_lines() -> list[str]:
    """The ``curl`` commands of examples/README.md's ``sh`` blocks, as written, without
    their comments."""
    text = (ROOT / "examples" / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```sh\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    return [
        re.split(r"\s+# ", line)[0].strip()
        for block in blocks
        for line in block.splitlines()
        if line.startswith("curl ")
    ]


def run_curl(command: str, base: str) -> CurlAnswer:
    """Run a README curl command (``localhost:8000`` pointed at ``base``) with the real
    ``curl``; the status is appended with ``-w``."""
    args = shlex.split(command.replace("localhost:8000", base.removeprefix("http://")))
    done = subprocess.run(
        [*args, "-sS", "-w", "\n%{http_code}"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    output, _, status = done.stdout.rpartition("\n")
    headers: dict[str, str] = {}
    if "-i" in args:
        head, _, output = output.partition("\n\n")  # text mode: CRLF read as LF
        for line in head.splitlines()[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return CurlAnswer(int(status), headers, output)


Check = Callable[[CurlAnswer], None]


def expect_json(expected: object, status: int = 200) -> Check:
    def check(answer: CurlAnswer) -> None:
        assert (answer.status, answer.json()) == (status, expected)

    return check


def expect_value(value: object) -> Check:
    def check(answer: CurlAnswer) -> None:
        assert (answer.status, answer.json()["value"]) == (200, value)

    return check


def expect_404(answer: CurlAnswer) -> None:
    assert answer.status == 404, answer.body


def expect_stream(answer: CurlAnswer) -> None:
    lines = [json.loads(line) for line in answer.body.splitlines() if line]
    assert lines == [{"key": "color", "value": "red", "tenant": "acme"}]


def expect_bad_tenant(answer: CurlAnswer) -> None:
    assert (answer.status, answer.json()["error"]) == (400, "invalid tenant id")


def expect_cached(x_cache: str) -> Check:
    def check(answer: CurlAnswer) -> None:
        assert (answer.status, answer.headers["x-cache"], answer.json()["lookups"]) == (
            200,
            x_cache,
            1,
        )

    return check


def expect_429(answer: CurlAnswer) -> None:
    assert answer.status == 429, answer.body
    assert {"retry-after", "ratelimit-limit", "ratelimit-remaining"} <= answer.headers.keys()


BASE = "localhost:8000/api/catalog"
ACME = "-H 'X-Tenant-ID: acme'"
# examples/README.md's curl lines in order, each with what its comment says it answers and
# how many times in a row it is sent (the search line's comment speaks of the 6th)
CURL_EXPECTATIONS: list[tuple[str, Check, int]] = [
    (f"""curl -X PUT {BASE}/items/color {ACME} -d '"red"'""", expect_value("red"), 1),
    (f"curl {BASE}/items/color {ACME}", expect_value("red"), 1),
    (f"curl {BASE}/items/color -H 'X-Tenant-ID: globex'", expect_404, 1),
    (f"curl localhost:8000/api/reviews/items/color {ACME}", expect_404, 1),
    (f"curl '{BASE}/stream?keys=color' {ACME}", expect_stream, 1),
    (
        f"curl {BASE}/scope/sync {ACME}",
        expect_json({"plugin": "catalog", "tenant": "acme", "in_thread_pool": True}),
        1,
    ),
    (f"curl {BASE}/stats {ACME}", expect_json({"writes": 1}), 1),
    (f"curl -i {BASE}/stats -H 'X-Tenant-ID: ../x'", expect_bad_tenant, 1),
    (f"curl -i {BASE}/products/7 {ACME}", expect_cached("MISS"), 1),
    (f"curl -i {BASE}/products/7 {ACME}", expect_cached("HIT"), 1),
    (f"curl -X POST {BASE}/hits {ACME}", expect_json({"hits": 1}), 1),
    (f"curl -i '{BASE}/search?q=x' {ACME}", expect_429, 6),
]


def test_readme_curl_lines_are_all_checked() -> None:
    """The curl lines of examples/README.md are exactly the ones the next test runs, in
    order: a line added, changed or removed there fails here."""
    assert curl_lines() == [command for command, _, _ in CURL_EXPECTATIONS]


@pytest.mark.parametrize("kind", ["starlette", "flask"])
def test_readme_curl_lines_answer_as_their_comments_say(kind: str, tmp_path: Path) -> None:
    """Each curl line of examples/README.md, run in order with the real curl against a fresh
    server of the example, answers what its comment says (the @cached lines with
    X-Cache: MISS, then HIT)."""
    with (tmp_path / "stderr").open("w+b") as log:
        server = ExampleServer(sys.executable, "-m", f"examples.{kind}_app", log=log)
        try:
            for command, check, times in CURL_EXPECTATIONS:
                answers = [run_curl(command, server.url) for _ in range(times)]
                assert [a.status for a in answers[:-1]] == [200] * (times - 1), command
                check(answers[-1])
        finally:
            server.stop()
