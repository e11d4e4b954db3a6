"""The Infinispan store's HTTP transport: one sync and one async httpx client per event loop,
failover across servers and backup clusters, the circuit breaker, errors mapped.

Everything the store does is a generator of steps (:mod:`cachekit.steps`): a
:class:`~.rest.Request`, a :class:`~.rest.Batch` of them or a :class:`~.rest.Pause`.
:meth:`Transport.run` executes them on the sync client, :meth:`Transport.arun` on the
running loop's async client; the only difference is the I/O call.

Failover
    Requests go to the *active* server, at first the primary cluster's first. A server
    that cannot be reached (the connection is refused, or does not open within the connect
    timeout: the request never reached it, so sending it elsewhere is safe) is skipped and
    the next one tried: the primary cluster's other servers, then each backup cluster's
    (``infinispan.clusters``) in config order. The server that answers becomes the active
    one, and stays so until it fails in turn (the switch is logged once). A request that
    reached a server and then failed (a read timeout, a dropped connection) is not sent
    again: it may have been applied.

Errors
    ``StoreTimeout`` for timeouts; ``StoreUnavailable`` for everything else that stops an
    answer: no server reachable, ``401``/``403`` (saying that authentication failed), a
    ``5xx``. A full connection pool (``maxConnections`` busy for ``connect + operation``
    seconds) is ``StoreTimeout`` naming ``maxConnections``, and does not move the breaker.
    Statuses with a meaning for the operation (``404``, ``409``, ``412``, ...) go back to
    the operation, and answers never move the breaker either.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

import httpx

from cachekit.breaker import CircuitBreaker
from cachekit.config.infinispan import InfinispanConnectionSpec, InfinispanEndpoint
from cachekit.errors import StoreError, StoreTimeout, StoreUnavailable
from cachekit.steps import Steps, arun, run
from cachekit.stores.infinispan.rest import Batch, Free, Hold, Pause, Reply, Request

__all__ = ["STORE_NAME", "Transport"]

STORE_NAME: Final = "infinispan"

log = logging.getLogger("cachekit")

T = TypeVar("T")
Step = Request | Batch | Pause | Hold | Free
_Attempt = tuple[InfinispanEndpoint, Request]


class Transport:
    """The clients, the active server and the breaker of one store (see the module
    documentation). Nothing connects until the first request."""

    def __init__(self, spec: InfinispanConnectionSpec, breaker: CircuitBreaker) -> None:
        self.spec = spec
        self.breaker = breaker
        self.endpoints = spec.endpoints
        self.active = 0
        self._lock = threading.Lock()
        self._sync: httpx.Client | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._pool_wait = spec.connect_timeout + spec.timeout
        self._thread_locks: dict[str, threading.Lock] = {}
        self._loop_locks: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Lock]
        ] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return (
            f"Transport({self.spec.target}, active={self.endpoints[self.active].address}, "
            f"breaker={self.breaker.state!r})"
        )

    # --- clients --------------------------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        spec = self.spec
        options: dict[str, Any] = {
            "timeout": httpx.Timeout(
                spec.timeout, connect=spec.connect_timeout, pool=self._pool_wait
            ),
            "limits": httpx.Limits(
                max_connections=spec.max_connections * len(self.endpoints),
                max_keepalive_connections=spec.max_connections,
            ),
            "trust_env": False,
        }
        if spec.auth == "basic":
            options["auth"] = httpx.BasicAuth(spec.username or "", spec.password or "")
        elif spec.auth == "digest":
            options["auth"] = httpx.DigestAuth(spec.username or "", spec.password or "")
        elif spec.auth == "bearer":
            options["headers"] = {"Authorization": f"Bearer {spec.token}"}
        if any(e.scheme == "https" for e in self.endpoints):
            context = ssl.create_default_context()
            for path in spec.trust_certs:
                context.load_verify_locations(path)
            if spec.client_cert:
                context.load_cert_chain(spec.client_cert, spec.client_key, spec.client_key_password)
            options["verify"] = context
        return options

    def client(self) -> httpx.Client:
        """The sync client (created on first use, shared by every thread)."""
        client = self._sync
        if client is None:
            with self._lock:
                client = self._sync
                if client is None:
                    client = self._sync = httpx.Client(**self._options())
        return client

    def async_client(self) -> httpx.AsyncClient:
        """The running event loop's async client (created on first use there)."""
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            client = self._async[loop] = httpx.AsyncClient(**self._options())
        return client

    def close(self) -> None:
        """Close the sync client; forget the async ones (close them with :meth:`aclose`
        on their loops)."""
        with self._lock:
            client, self._sync = self._sync, None
        if client is not None:
            client.close()
        self._async = weakref.WeakKeyDictionary()

    async def aclose(self) -> None:
        """Close the running loop's async client."""
        client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    # --- one request: failover, breaker, errors -------------------------------------------

    def _failover(self, request: Request) -> Steps[_Attempt, Reply]:
        """Send ``request`` to the active server, then to the next ones while a server
        cannot be reached."""
        endpoints, start = self.endpoints, self.active
        unreachable: list[str] = []
        for offset in range(len(endpoints)):
            index = (start + offset) % len(endpoints)
            endpoint = endpoints[index]
            try:
                reply: Reply = yield endpoint, request
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                unreachable.append(f"{endpoint.address}: {_reason(exc)}")
                continue
            if index != self.active:
                self.active = index
                where = endpoint.cluster or "the primary cluster"
                log.warning(
                    "cachekit: infinispan: %s answers now (%s); sending requests there",
                    endpoint.address,
                    where,
                )
            return reply
        raise StoreUnavailable(
            f"no infinispan server could be reached ({'; '.join(unreachable)})", store=STORE_NAME
        )

    def _reply(self, endpoint: InfinispanEndpoint, response: httpx.Response) -> Reply:
        status = response.status_code
        if status in (401, 403):
            user = f" as {self.spec.username!r}" if self.spec.username else ""
            raise StoreUnavailable(
                f"infinispan server {endpoint.address} refused the request{user}: "
                f"authentication failed (HTTP {status}); check "
                "backend.cache.infinispan.authentication",
                store=STORE_NAME,
            )
        if status >= 500:
            text = response.content[:200].decode("utf-8", "replace")
            raise StoreUnavailable(
                f"infinispan server {endpoint.address} failed (HTTP {status}): {text}",
                store=STORE_NAME,
            )
        return Reply(status, response.headers, response.content)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """The block under the breaker, httpx errors mapped (sync and async alike)."""
        breaker = self.breaker
        if not breaker.healthy:
            breaker.before_call()
        try:
            yield
        except httpx.PoolTimeout:  # local contention, not an outage: the breaker stays
            raise self._pool_busy() from None
        except (StoreError, httpx.HTTPError) as exc:
            error = _mapped(exc)
            breaker.record_failure(error)
            raise error from exc
        if not breaker.healthy:
            breaker.record_success()

    def _pool_busy(self) -> StoreTimeout:
        return StoreTimeout(
            f"infinispan store: all {self.spec.max_connections} connections stayed busy for "
            f"{self._pool_wait:g}s; raise backend.cache.infinispan.maxConnections",
            store=STORE_NAME,
        )

    def send(self, request: Request) -> Reply:
        """One request on the sync client."""
        client = self._sync or self.client()

        def attempt(step: _Attempt) -> Reply:
            endpoint, req = step
            url = endpoint.base_url + req.path
            response = client.request(req.method, url, headers=req.headers, content=req.content)
            return self._reply(endpoint, response)

        with self._guard():
            return run(self._failover(request), attempt)

    async def asend(self, request: Request) -> Reply:
        """One request on the running loop's async client."""
        client = self.async_client()

        async def attempt(step: _Attempt) -> Reply:
            endpoint, req = step
            url = endpoint.base_url + req.path
            response = await client.request(
                req.method, url, headers=req.headers, content=req.content
            )
            return self._reply(endpoint, response)

        with self._guard():
            return await arun(self._failover(request), attempt)

    # --- operations -----------------------------------------------------------------------

    def _execute(self, step: Step) -> Any:
        if isinstance(step, Request):
            return self.send(step)
        if isinstance(step, Batch):
            return [self.send(request) for request in step.requests]
        if isinstance(step, Pause):
            time.sleep(step.seconds)
        elif isinstance(step, Hold):
            lock = self._thread_locks.get(step.name)
            if lock is None:
                with self._lock:
                    lock = self._thread_locks.setdefault(step.name, threading.Lock())
            if not lock.acquire(timeout=step.timeout):
                raise _held(step)
        else:
            self._thread_locks[step.name].release()
        return None

    async def _aexecute(self, step: Step) -> Any:
        if isinstance(step, Request):
            return await self.asend(step)
        if isinstance(step, Batch):
            return list(await asyncio.gather(*(self.asend(r) for r in step.requests)))
        if isinstance(step, Pause):
            await asyncio.sleep(step.seconds)
            return None
        locks = self._loop_locks.get(asyncio.get_running_loop())
        if locks is None:
            locks = self._loop_locks[asyncio.get_running_loop()] = {}
        if isinstance(step, Hold):
            lock = locks.setdefault(step.name, asyncio.Lock())
            try:
                async with asyncio.timeout(step.timeout):
                    await lock.acquire()
            except TimeoutError:
                raise _held(step) from None
        else:
            locks[step.name].release()
        return None

    def run(self, steps: Steps[Step, T]) -> T:
        """Run an operation on the sync client."""
        return run(steps, self._execute)

    async def arun(self, steps: Steps[Step, T]) -> T:
        """Run an operation on the running loop's async client."""
        return await arun(steps, self._aexecute)


def _held(step: Hold) -> StoreTimeout:
    return StoreTimeout(
        f"infinispan: lock {step.name!r} stayed taken in this process for {step.timeout:g}s",
        store=STORE_NAME,
    )


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _mapped(exc: BaseException) -> StoreError:
    """The cachekit error for an httpx error (a ``StoreError`` stays as it is)."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, httpx.TimeoutException):
        return StoreTimeout(
            f"infinispan server did not answer in time ({_reason(exc)})", store=STORE_NAME
        )
    return StoreUnavailable(f"infinispan request failed: {_reason(exc)}", store=STORE_NAME)
