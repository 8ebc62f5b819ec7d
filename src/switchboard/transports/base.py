"""The ``Transport`` and ``Listener`` interfaces, their ``Guarantees``, and ``map_errors``.

A transport carries whole frames (``bytes``) between two ends, one frame per message; it never
looks inside them. Every adapter translates the exceptions of the library it wraps into the
``TransportError`` family exactly once, by running each library call inside ``map_errors``.

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

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from switchboard.errors import (
    ConnectError,
    ConnectionLost,
    SwitchboardError,
    TransportClosed,
    TransportError,
    TransportTimeout,
)

Phase = Literal["connect", "listen", "io"]


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

    async def receive(self) -> bytes:
        """Return the next frame.

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


def _close_detail(exc: BaseException) -> str:
    # websockets' ConnectionClosed carries the close frames; name the code, not the reason
    # text, which the peer chose and which we do not echo into our logs.
    for frame in (getattr(exc, "rcvd", None), getattr(exc, "sent", None)):
        code = getattr(frame, "code", None)
        if isinstance(code, int):
            return f" (close code {code})"
    return ""


@contextlib.contextmanager
def map_errors(
    endpoint: str, *, phase: Phase = "io", closed: Callable[[], bool] | None = None
) -> Iterator[None]:
    """Translate foreign exceptions raised inside the block into the ``TransportError`` tree.

    Args:
        endpoint: the peer or address, for messages ("ws://127.0.0.1:7787").
        phase: ``"connect"`` (errors mean we could not connect), ``"listen"`` (we could not
            bind) or ``"io"`` (an open connection broke).
        closed: tells whether *we* closed the transport, so that a closed connection is
            reported as ``TransportClosed`` rather than ``ConnectionLost``.

    Raises:
        ConnectError: connecting failed (refused, unreachable, TLS or WebSocket handshake).
        TransportError: binding a listener failed.
        TransportTimeout: the operation timed out.
        ConnectionLost: an open connection broke or the peer closed it.
        TransportClosed: the connection was used after we closed it.
    """
    # Imported here so that memory-only users never import websockets.
    from websockets.exceptions import (  # noqa: PLC0415 - lazy: see above
        ConnectionClosed,
        InvalidHandshake,
        InvalidURI,
        WebSocketException,
    )

    try:
        yield
    except SwitchboardError:
        raise
    except TimeoutError as exc:  # asyncio.TimeoutError is TimeoutError since Python 3.11
        raise TransportTimeout(f"{_verb(phase)} {endpoint} timed out") from exc
    except ConnectionClosed as exc:
        if closed is not None and closed():
            raise TransportClosed(f"connection to {endpoint} is closed") from exc
        if phase == "connect":
            raise ConnectError(endpoint, "connection closed during handshake") from exc
        raise ConnectionLost(f"connection to {endpoint} closed{_close_detail(exc)}") from exc
    except InvalidURI as exc:
        raise ConnectError(endpoint, "invalid websocket url") from exc
    except InvalidHandshake as exc:
        raise ConnectError(endpoint, f"websocket handshake failed: {exc}") from exc
    except WebSocketException as exc:
        raise ConnectionLost(f"connection to {endpoint} failed: {type(exc).__name__}") from exc
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if phase == "connect":
            raise ConnectError(endpoint, reason.lower()) from exc
        if phase == "listen":
            raise TransportError(f"cannot listen on {endpoint}: {reason.lower()}") from exc
        raise ConnectionLost(f"connection to {endpoint} broke: {reason.lower()}") from exc


def _verb(phase: Phase) -> str:
    return {"connect": "connecting to", "listen": "listening on", "io": "i/o with"}[phase]
