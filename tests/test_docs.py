"""Every ```python block of README.md and examples/README.md, run by the suite.

A block runs as written, in a fresh namespace, with a temporary directory as the working
directory whose ``app-config.yaml`` points at the suite's Redis (database 7, apart from the
other tests); ``redis://localhost:6379`` (with or without ``/db``) in a block is replaced by
that server's URL. A block with a top-level ``await`` runs in an event loop. The managers a
block leaves in its namespace are closed after it. An HTML comment on the last non-blank
line before a block's fence changes how it runs:

- ``<!-- doc-test: fragment -->``: the block is only compiled (``compile()``), not run;
- ``<!-- doc-test: setup=NAME -->``: the block runs under the setup ``NAME`` (``SETUPS``
  below): names it uses without defining them, a bound scope, or a check of what it built.

At the end of the session the suite prints how many blocks ran and how many were only
compiled, per file.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import os
import re
import runpy
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from servers import RedisServer

from cachekit.host import CacheManager, scope

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "examples/README.md")
REDIS_DB = 7
LOCAL_REDIS = re.compile(r"redis://localhost:6379(/\d+)?")
FENCE = re.compile(r"^(`{3,})\s*(\S*)")
MARKER = re.compile(r"<!--\s*doc-test:\s*(.*?)\s*-->")
T = TypeVar("T")


@dataclass(frozen=True)
class Block:
    """One fenced ```python block: where it is and how it runs."""

    path: str  # relative to the repository root
    heading: str  # the nearest heading above it
    line: int  # the line of its opening fence (1-based)
    source: str
    marker: str | None  # the text of its doc-test comment, if any

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"{self.path}#{slug}:{self.line}"

    @property
    def fragment(self) -> bool:
        return self.marker == "fragment"

    @property
    def setup(self) -> str | None:
        if self.marker is None or not self.marker.startswith("setup="):
            return None
        return self.marker.removeprefix("setup=")


def read_blocks(path: str) -> tuple[list[Block], list[tuple[int, str]]]:
    """The python blocks of ``path``, and the doc-test markers not followed by one
    (``(line, text)``)."""
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    orphans: list[tuple[int, str]] = []
    heading = "top"
    marker: tuple[int, str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if fence:
            end = i + 1
            while end < len(lines) and not lines[end].startswith(fence.group(1)):
                end += 1
            if fence.group(2) == "python":
                source = "\n".join(lines[i + 1 : end]) + "\n"
                blocks.append(Block(path, heading, i + 1, source, marker and marker[1]))
            elif marker is not None:
                orphans.append(marker)
            marker = None
            i = end + 1
            continue
        found = MARKER.fullmatch(line.strip())
        if found:
            if marker is not None:
                orphans.append(marker)
            marker = (i + 1, found.group(1))
        elif line.strip():
            if marker is not None:
                orphans.append(marker)
            marker = None
            if line.startswith("#"):
                heading = line.lstrip("#").strip()
        i += 1
    if marker is not None:
        orphans.append(marker)
    return blocks, orphans


BLOCKS = [block for path in DOCS for block in read_blocks(path)[0]]
TALLY: Counter[tuple[str, str]] = Counter()  # (path, "ran" | "compiled") -> blocks


def compile_block(block: Block, source: str | None = None) -> Any:
    """The block's code object; top-level ``await`` allowed."""
    return compile(
        block.source if source is None else source,
        f"{block.path}:{block.line}",
        "exec",
        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
        dont_inherit=True,
    )


# --- setups --------------------------------------------------------------------------------


@dataclass
class Env:
    """What a setup can use: the Redis URL blocks get, and the working directory."""

    redis_url: str
    workdir: Path
    managers: list[CacheManager] = field(default_factory=list)

    def manager(self) -> CacheManager:
        """A manager on the suite's Redis, as the block's ``app-config.yaml`` configures,
        closed (sync and async) after the block like the block's own."""
        manager = CacheManager.from_yaml(self.workdir / "app-config.yaml")
        self.managers.append(manager)
        return manager


Setup = Callable[[Env], contextlib.AbstractContextManager[dict[str, Any]]]
SETUPS: dict[str, Setup] = {}


def setup(name: str) -> Callable[[Setup], Setup]:
    def register(fn: Setup) -> Setup:
        SETUPS[name] = fn
        return fn

    return register


@contextlib.contextmanager
def plain(env: Env) -> Iterator[dict[str, Any]]:
    """No marker: an empty namespace."""
    yield {}


@setup("scope")
@contextlib.contextmanager
def bound_scope(env: Env) -> Iterator[dict[str, Any]]:
    """The block runs in the scope (plugin ``docs``, tenant ``acme``) on the suite's Redis, as
    plugin code does inside a request."""
    with scope(plugin="docs", tenant="acme", manager=env.manager()):
        yield {}


@setup("asgi")
@contextlib.contextmanager
def asgi_app(env: Env) -> Iterator[dict[str, Any]]:
    """``app``: any ASGI app (a bare Starlette app)."""
    from starlette.applications import Starlette

    yield {"app": Starlette()}


@setup("flask")
@contextlib.contextmanager
def flask_app(env: Env) -> Iterator[dict[str, Any]]:
    """``app``: a bare Flask app."""
    from flask import Flask

    yield {"app": Flask("docs")}


def served(requests: Callable[[httpx.AsyncClient], Awaitable[None]] | None = None) -> Setup:
    """The block builds ``app``; then the app starts (its lifespan runs: the store is pinged),
    answers ``requests`` (which assert what they get), and stops (the store is closed)."""

    @contextlib.contextmanager
    def serve(env: Env) -> Iterator[dict[str, Any]]:
        namespace: dict[str, Any] = {}
        yield namespace
        asyncio.run(in_lifespan(namespace["app"], requests or (lambda client: asyncio.sleep(0))))

    return serve


async def items_cached_docs_open(client: httpx.AsyncClient) -> None:
    """The fastapi-cache2 block's app: a @cached endpoint answers X-Cache MISS, then HIT;
    the excluded /docs and /openapi.json answer without a tenant."""
    tenant = {"X-Tenant-ID": f"docs-{uuid.uuid4().hex}"}
    answers = [await client.get("/items/1", headers=tenant) for _ in range(2)]
    assert [(a.status_code, a.json()) for a in answers] == [(200, {"id": 1})] * 2
    assert [a.headers["X-Cache"] for a in answers] == ["MISS", "HIT"]
    assert (await client.get("/docs")).status_code == 200
    assert (await client.get("/openapi.json")).status_code == 200


async def sixth_search_refused(client: httpx.AsyncClient) -> None:
    """The slowapi block's app: five searches a minute pass, the sixth answers 429."""
    tenant = {"X-Tenant-ID": f"docs-{uuid.uuid4().hex}"}
    codes = [(await client.get("/search", headers=tenant)).status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]


setup("served")(served())
setup("fastapi-cache2-app")(served(items_cached_docs_open))
setup("slowapi-app")(served(sixth_search_refused))


async def in_lifespan(app: Any, requests: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    """Start ``app`` (ASGI lifespan), run ``requests`` against it, shut it down."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    lifespan = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(lifespan, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    assert (await from_app.get())["type"] == "lifespan.startup.complete"
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://docs") as client:
            return await requests(client)
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        assert (await from_app.get())["type"] == "lifespan.shutdown.complete"
        await task


@setup("prometheus")
@contextlib.contextmanager
def prometheus(env: Env) -> Iterator[dict[str, Any]]:
    """``manager`` on the suite's Redis; the ``collector`` the block registers is removed
    from prometheus_client's registry after it, and it scrapes."""
    from prometheus_client import REGISTRY, generate_latest

    manager = env.manager()
    manager.for_plugin("docs", tenant="acme").get("k")
    namespace: dict[str, Any] = {"manager": manager}
    yield namespace
    try:
        assert b'cachekit_misses_total{namespace="",plugin="docs"' in generate_latest(REGISTRY)
    finally:
        REGISTRY.unregister(namespace["collector"])


def example_setup(kind: str) -> Setup:
    """The example app's module namespace (its imports and ``create_app``) with ``app`` the
    host app without its ``CacheMiddleware``: the block wraps it. Then a ``@cached`` endpoint
    answers ``X-Cache: MISS`` and ``HIT`` through the wrapped app."""

    @contextlib.contextmanager
    def example(env: Env) -> Iterator[dict[str, Any]]:
        namespace = runpy.run_path(str(ROOT / f"examples/{kind}_app/app.py"))
        namespace["app"] = namespace["create_app"](cache_middleware=False)
        yield namespace
        path, headers = "/api/catalog/products/7", {"X-Tenant-ID": f"docs-{uuid.uuid4().hex}"}
        if kind == "flask":
            client = namespace["app"].test_client()
            answers = [client.get(path, headers=headers) for _ in range(2)]
        else:

            async def twice(client: httpx.AsyncClient) -> list[httpx.Response]:
                return [await client.get(path, headers=headers) for _ in range(2)]

            answers = asyncio.run(in_lifespan(namespace["app"], twice))
        assert [a.status_code for a in answers] == [200, 200]
        assert [a.headers["X-Cache"] for a in answers] == ["MISS", "HIT"]

    return example


setup("starlette-example")(example_setup("starlette"))
setup("flask-example")(example_setup("flask"))


# Blocks that are test modules: written to a file after a prelude and run by pytest in a
# subprocess, with warnings as errors; every test in them must pass.
TEST_MODULES: dict[str, str] = {
    "pytest": "",
    # the README's contract block tests "MyStore": the suite's own minimal provider stands in
    "contract": "from custom_store import DictStore as MyStore\n\n",
}


def run_test_module(source: str, prelude: str, env: Env) -> None:
    """Run ``prelude + source`` as a test module in a pytest subprocess; all must pass."""
    test_file = env.workdir / "test_block.py"
    test_file.write_text(prelude + source, encoding="utf-8")
    command = [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider"]
    command += ["-p", "no:valkey", str(test_file)]
    variables = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    result = subprocess.run(command, cwd=env.workdir, capture_output=True, text=True, env=variables)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\d+ passed", result.stdout), result.stdout
    assert "skipped" not in result.stdout, result.stdout


# --- running a block -------------------------------------------------------------------------


def managers_in(namespace: dict[str, Any], env: Env) -> list[CacheManager]:
    """The managers of the block's setup, and those it left in its namespace, directly or
    inside an app or extension."""
    found: list[CacheManager] = list(env.managers)
    for value in list(namespace.values()):
        candidates = [value]
        # Flask's proxies (request, current_app) and CacheKit.manager raise RuntimeError
        # outside a request or app context
        with contextlib.suppress(RuntimeError):
            candidates.append(getattr(value, "manager", None))
            candidates.append(getattr(getattr(value, "wsgi_app", None), "manager", None))
        for candidate in candidates:
            if isinstance(candidate, CacheManager) and candidate not in found:
                found.append(candidate)
    return found


def run_block(block: Block, env: Env) -> None:
    """Run ``block`` under its setup and close the managers it built."""
    source = LOCAL_REDIS.sub(env.redis_url, block.source)
    code = compile_block(block, source)
    if block.setup in TEST_MODULES:
        run_test_module(source, TEST_MODULES[block.setup], env)
        return
    make = plain if block.setup is None else SETUPS[block.setup]
    with make(env) as namespace:
        namespace.setdefault("__name__", "docs_block")
        try:
            if code.co_flags & inspect.CO_COROUTINE:

                async def main() -> None:
                    try:
                        await eval(code, namespace)
                    finally:
                        for manager in managers_in(namespace, env):
                            await manager.aclose()

                asyncio.run(main())
            else:
                exec(code, namespace)
        finally:
            for manager in managers_in(namespace, env):
                manager.close()


@pytest.fixture(scope="module", autouse=True)
def report_count(request: pytest.FixtureRequest) -> None:
    """Print the number of blocks run and compiled at the end of the session."""
    plugins = request.config.pluginmanager
    if not plugins.has_plugin("cachekit-doc-blocks"):
        plugins.register(BlockSummary(), "cachekit-doc-blocks")


class BlockSummary:
    """A pytest plugin, registered by the module: the terminal summary's line."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        ran = sum(n for (_, kind), n in TALLY.items() if kind == "ran")
        compiled = sum(n for (_, kind), n in TALLY.items() if kind == "compiled")
        per_file = ", ".join(
            f"{path} {TALLY[path, 'ran']} run + {TALLY[path, 'compiled']} compiled" for path in DOCS
        )
        terminalreporter.write_line(
            f"docs: {ran} python blocks executed, {compiled} fragments compiled "
            f"of {len(BLOCKS)} ({per_file})"
        )


@pytest.fixture
def env(
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cachekit_manager: CacheManager,
) -> Env:
    """A working directory with an ``app-config.yaml`` on the suite's Redis (database 7);
    the default manager is the pytest plugin's fresh one, restored after the block."""
    url = f"redis://{redis_server.host}:{redis_server.port}/{REDIS_DB}"
    (tmp_path / "app-config.yaml").write_text(
        f"backend:\n  cache:\n    store: redis\n    connection: {url}\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    return Env(redis_url=url, workdir=tmp_path)


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_block(block: Block, env: Env) -> None:
    """The python block runs to its end without an exception (and passes its setup's
    check); a block marked as a fragment is at least valid Python."""
    if block.fragment:
        compile_block(block)
        TALLY[block.path, "compiled"] += 1
    else:
        run_block(block, env)
        TALLY[block.path, "ran"] += 1


@pytest.mark.parametrize("path", DOCS)
def test_every_marker_is_known_and_on_a_python_block(path: str) -> None:
    """Each doc-test marker is ``fragment`` or a known setup and sits right before a python
    block, so no block is skipped by a typo."""
    blocks, orphans = read_blocks(path)
    assert blocks, f"{path} has no python blocks"
    assert orphans == []
    unknown = [
        (block.line, block.marker)
        for block in blocks
        if block.marker is not None
        and not block.fragment
        and block.setup not in {*SETUPS, *TEST_MODULES}
    ]
    assert unknown == []


def test_a_broken_block_fails() -> None:
    """The runner is not a no-op: a block that raises fails, and one with a syntax error
    fails to compile."""
    env = Env(redis_url="redis://127.0.0.1:1/0", workdir=ROOT)
    broken = Block("README.md", "test", 1, "x = 1\nraise LookupError('broken')\n", None)
    with pytest.raises(LookupError, match="broken"):
        run_block(broken, env)
    with pytest.raises(SyntaxError):
        compile_block(Block("README.md", "test", 1, "def f(:\n", "fragment"))
    awaiting = Block("README.md", "test", 1, "import asyncio\nawait asyncio.sleep(0)\n1/0\n", None)
    with pytest.raises(ZeroDivisionError):
        run_block(awaiting, env)
