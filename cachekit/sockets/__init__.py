"""Out-of-process plugins: a Unix socket per cache binding (the host's side).

- :mod:`cachekit.sockets.protocol` — the wire protocol, pure (``docs/protocol.md``);
- :mod:`cachekit.sockets.server` — :class:`BindingServer`, one plugin's binding on one socket;
- :mod:`cachekit.sockets.launcher` — :func:`launch`, a plugin process with its sockets;
- :mod:`cachekit.sockets.client` — the plugin's store over a socket (used by
  :mod:`cachekit.plugin`, the plugin's side).
"""

from cachekit.sockets.launcher import PluginProcess, launch, socket_environment
from cachekit.sockets.protocol import Code
from cachekit.sockets.server import (
    BindingServer,
    BytesCodec,
    SocketBinding,
    socket_binding,
    socket_bindings,
)

__all__ = [
    "BindingServer",
    "BytesCodec",
    "Code",
    "PluginProcess",
    "SocketBinding",
    "launch",
    "socket_binding",
    "socket_bindings",
    "socket_environment",
]
