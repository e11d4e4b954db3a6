"""Start a plugin in its own process with one socket per granted binding.

::

    from cachekit.sockets import launch, socket_bindings

    plugin = await launch(
        ["python", "-m", "reports_plugin"],
        plugin="reports",
        bindings=socket_bindings(manager, "reports"),   # every binding granted to it
    )
    ...
    await plugin.stop()            # or `async with await launch(...) as plugin:`

The sockets live in a private directory (mode 0700, each socket 0600) that is removed
when the process exits. The environment follows Gestalt's rule: with exactly one binding,
``CACHEKIT_CACHE_SOCKET`` and ``CACHEKIT_CACHE_SOCKET_<NAME>`` are both set; with several,
only the named ones. ``CACHEKIT_PLUGIN`` carries the plugin id (informational: the sockets
are bound to it host-side whatever the process does with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from cachekit.errors import ConfigError
from cachekit.keys import ANY
from cachekit.resolvers import DEFAULT_ID_PATTERN
from cachekit.sockets.protocol import DEFAULT_MAX_FRAME, SOCKET_VARIABLE, env_name
from cachekit.sockets.server import BindingServer, SocketBinding

__all__ = ["PluginProcess", "launch", "socket_environment"]


def socket_environment(sockets: Mapping[str, str]) -> dict[str, str]:
    """The variables announcing ``sockets`` (binding name -> path) to a plugin process.

    :raises ConfigError: no binding, or two names that spell the same variable.
    """
    if not sockets:
        raise ConfigError("a plugin process needs at least one binding")
    env: dict[str, str] = {}
    for name, path in sockets.items():
        variable = env_name(name)
        if variable in env:
            raise ConfigError(f"bindings {name!r} and another both map to {variable}: rename one")
        env[variable] = path
    if len(sockets) == 1:
        env[SOCKET_VARIABLE] = next(iter(sockets.values()))
    return env


class PluginProcess:
    """A running plugin process and the servers of its binding sockets.

    :ivar process: the subprocess.
    :ivar servers: binding name -> its :class:`~cachekit.sockets.server.BindingServer`.
    :ivar environment: the socket variables the process was given.
    """

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        servers: dict[str, BindingServer],
        directory: str,
        environment: dict[str, str],
    ) -> None:
        self.process = process
        self.servers = servers
        self.directory = directory
        self.environment = environment
        self._reaper = asyncio.get_running_loop().create_task(self._reap())

    def __repr__(self) -> str:
        return f"PluginProcess(pid={self.process.pid}, bindings={sorted(self.servers)})"

    async def _reap(self) -> None:
        try:
            await self.process.wait()
        finally:
            await close_all(self.servers.values(), self.directory)

    async def wait(self) -> int:
        """Wait for the process to exit (its sockets are removed); its return code."""
        await asyncio.shield(self._reaper)
        return self.process.returncode  # type: ignore[return-value]

    async def stop(self, grace: float = 5.0) -> int:
        """Terminate the process (SIGTERM, then SIGKILL after ``grace`` seconds) and wait."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                return await asyncio.wait_for(self.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
        return await self.wait()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def close_all(servers: Any, directory: str) -> None:
    """Close ``servers`` and remove their private ``directory``."""
    for server in servers:
        await server.close()
    shutil.rmtree(directory, ignore_errors=True)


async def launch(
    argv: Sequence[str],
    *,
    plugin: str,
    bindings: Mapping[str, SocketBinding],
    tenant: str | Any | None = ANY,
    env: Mapping[str, str] | None = None,
    max_frame: int = DEFAULT_MAX_FRAME,
    id_pattern: re.Pattern[str] = DEFAULT_ID_PATTERN,
    **popen: Any,
) -> PluginProcess:
    """Serve each of ``bindings`` on its own socket and start ``argv`` with them announced.

    :param plugin: the plugin id (``CACHEKIT_PLUGIN``; the bindings are already its own).
    :param bindings: binding name -> what its socket serves
        (:func:`~cachekit.sockets.server.socket_binding`).
    :param tenant: pin every socket to one tenant (a process per tenant), see
        :class:`~cachekit.sockets.server.BindingServer`.
    :param max_frame: the largest frame body the sockets accept.
    :param id_pattern: the tenant ids the sockets accept, as at the HTTP edge.
    :param env: the process's environment (default: this one's); socket variables in it
        are replaced by the bindings'.
    :param popen: passed to :func:`asyncio.create_subprocess_exec` (``stdout=``, ``cwd=``).
    :raises ConfigError: no binding, or two names that spell the same variable.
    """
    names = {name: f"{index}.sock" for index, name in enumerate(bindings)}
    directory = tempfile.mkdtemp(prefix="cachekit-")  # mode 0700
    servers: dict[str, BindingServer] = {}
    try:
        sockets = {name: os.path.join(directory, names[name]) for name in bindings}
        environment = socket_environment(sockets)
        for name, binding in bindings.items():
            server = BindingServer(
                binding, tenant=tenant, max_frame=max_frame, id_pattern=id_pattern
            )
            servers[name] = server
            await server.start(sockets[name])
        base = dict(os.environ if env is None else env)
        for variable in [v for v in base if v.startswith(SOCKET_VARIABLE)]:
            del base[variable]
        base |= environment | {"CACHEKIT_PLUGIN": plugin}
        process = await asyncio.create_subprocess_exec(*argv, env=base, **popen)
    except BaseException:
        await close_all(servers.values(), directory)
        raise
    return PluginProcess(process, servers, directory, environment)
