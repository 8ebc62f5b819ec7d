"""The ``Transport`` and ``Listener`` interfaces and their ``Guarantees``.

A transport carries whole frames (``bytes``) between two ends, one frame per message; it never
looks inside them. Every adapter translates the exceptions of the library it wraps into the
``TransportError`` family exactly once, where it calls the library (``websocket.py``
``map_websocket_errors``; the broker adapters' ``map_mqtt_errors`` and ``map_nats_errors``).

Close semantics, which the conformance suite (``tests/transports/conformance.py``) checks for
every implementation:

- ``receive()`` returns the frames the peer sent before closing, then raises ``ConnectionLost``;
- ``send()`` after the peer closed raises ``ConnectionLost``;
- ``send()`` and ``receive()`` after our own ``aclose()`` raise ``TransportClosed``, including a
  ``receive()`` that was waiting when ``aclose()`` was called;
- ``aclose()`` is idempotent;
- a frame longer than the receiver's ``max_frame_size`` breaks the connection for both ends.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Guarantees:
    """What a transport promises about the frames it carries.

    Attributes:
        ordered: frames arrive in the order they were sent.
        reliable: every frame sent while connected arrives exactly once.
    """

    ordered: bool = True
    reliable: bool = True


class Transport(Protocol):
    """One connection that carries whole frames both ways."""

    guarantees: Guarantees
    peer: str  # endpoint description for logs ("ws://127.0.0.1:7787")

    async def send(self, frame: bytes) -> None:
        """Send one frame.

        Raises:
            TransportClosed: we closed this transport.
            ConnectionLost: the peer or the network closed it.
        """

    def receive(self) -> Awaitable[bytes]:
        """Return the next frame (awaited: a coroutine, or a future where that is lighter).

        Raises:
            TransportClosed: we closed this transport (also while waiting).
            ConnectionLost: the peer closed it and every frame it sent was received, or the
                network broke.
        """

    async def aclose(self) -> None:
        """Close the connection. Idempotent."""


class Listener(Protocol):
    """A server accepting connections, each handed to a handler as a ``Transport``."""

    port: int

    async def aclose(self) -> None:
        """Stop accepting, close open connections and wait for their handlers."""
