"""Transports: thin adapters that carry whole frames, behind one ``Transport`` interface.

``connect(url)`` picks the adapter from the URL's scheme and imports it only then, so a
process that never opens a WebSocket never imports websockets.
"""

from __future__ import annotations

import ssl as ssl_module
from urllib.parse import urlsplit

from switchboard.errors import ConnectError
from switchboard.proto.frames import DEFAULT_MAX_FRAME_SIZE
from switchboard.transports.base import Guarantees, Listener, Transport

__all__ = ["SCHEMES", "Guarantees", "Listener", "Transport", "connect"]

SCHEMES = ("memory", "ws", "wss")


async def connect(
    url: str,
    *,
    timeout: float = 10.0,
    ssl: ssl_module.SSLContext | None = None,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
) -> Transport:
    """Connect to ``url``: ``memory://NAME``, ``ws://HOST:PORT`` or ``wss://HOST:PORT``.

    Args:
        url: where to connect.
        timeout: seconds allowed for connecting (handshakes included).
        ssl: TLS settings for ``wss://`` (default: the system's trust store).
        max_frame_size: security limit for incoming frames.

    Returns:
        An open transport.

    Raises:
        ConnectError: the scheme is unsupported, or connecting failed.
        TransportTimeout: connecting took longer than ``timeout``.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from switchboard.transports import memory  # noqa: PLC0415 - lazy: see module docstring

        return await memory.connect(url, timeout=timeout)
    if scheme in ("ws", "wss"):
        from switchboard.transports import websocket  # noqa: PLC0415 - lazy: see module docstring

        return await websocket.connect(url, timeout=timeout, ssl=ssl, max_frame_size=max_frame_size)
    raise ConnectError(
        url, f"unsupported scheme {scheme!r}: use {', '.join(s + '://' for s in SCHEMES)}"
    )
