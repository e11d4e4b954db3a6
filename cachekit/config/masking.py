"""Passwords out of sight: what every ``repr``, message and log line of cachekit shows of a
connection string or a config mapping.

``redis://:***@cache:6379/0``, ``user:***@h1:11211,h2:11211``, ``{'password': '***'}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["MASK", "mask_mapping", "redact"]

MASK: Final = "***"

_SCHEME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SECRET_QUERY: Final = re.compile(r"((?:^|[?&])[^=&]*(?:password|passphrase|token)[^=&]*=)[^&]*")
_SECRET_KEYS: Final = ("password", "passphrase", "token", "secret")


def redact(text: str) -> str:
    """``text`` (a URL, ``user:pass@host:port`` or a comma-separated list of them) with
    every password replaced by ``***``; query parameters named like a password too."""
    match = _SCHEME.match(text)
    scheme, rest = (match[0], text[match.end() :]) if match else ("", text)
    rest, question, query = rest.partition("?")
    parts: list[str] = []
    for part in rest.split(","):
        credentials = part.rpartition("@")[0]
        if (
            parts
            and "@" not in parts[-1]
            and ":" in parts[-1]
            and "@" in part
            and ":" not in credentials
        ):
            parts[-1] += f",{part}"  # a password with a comma: "user:pa,ss@host"
        else:
            parts.append(part)
    for i, part in enumerate(parts):
        credentials, at, host = part.rpartition("@")  # a password may hold "@" and "/"
        if at and ":" in credentials:
            parts[i] = f"{credentials.partition(':')[0]}:{MASK}@{host}"
    if question:
        query = _SECRET_QUERY.sub(rf"\g<1>{MASK}", query)
    return f"{scheme}{','.join(parts)}{question}{query}"


def mask_mapping(value: Any) -> Any:
    """``value`` with secrets masked at any depth: values of keys named like a password
    become ``***`` and strings pass through :func:`redact`."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {
            key: MASK
            if isinstance(key, str) and any(word in key.lower() for word in _SECRET_KEYS)
            else mask_mapping(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(mask_mapping(item) for item in value)
    return value
