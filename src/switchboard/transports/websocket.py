"""WebSocket transport: the websockets asyncio client and server, one frame per binary message.

The WebSocket message limit (``max_size``) is the frame limit, so websockets refuses an
oversized frame (close code 1009) before buffering it. Compression is off: frames carry
ciphertext, which does not compress, and compression only adds work and memory per connection.

The client side is websockets' asyncio client. The server side (``serve``), built for many
idle peers (a relay holds one per device), is websockets' sans-IO ``ServerProtocol`` under an
``asyncio.Protocol`` (``transports.wsserver``): no keepalive of its own (every sync session
sends its own ``Ping`` frames and expires a silent peer, ``proto/session.py``), no reader task,
no stream buffers, a receive queue a few messages deep.
"""

from __future__ import annotations

import contextlib
import ssl as ssl_module
from collections.abc import Callable, Iterator
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidURI,
    WebSocketException,
)

from switchboard.errors import (
    ConnectError,
    ConnectionLost,
    SwitchboardError,
    TransportClosed,
    TransportError,
    TransportTimeout,
)
from switchboard.proto.frames import DEFAULT_MAX_FRAME_SIZE
from switchboard.transports.base import Guarantees
from switchboard.transports.wsserver import WebSocketListener, serve

__all__ = ["WebSocketListener", "WebSocketTransport", "connect", "map_websocket_errors", "serve"]

Phase = Literal["connect", "listen", "io"]


class WebSocketTransport:
    """One client WebSocket connection (the server side is ``wsserver.ServerTransport``).

    Args:
        connection: an open websockets asyncio connection.
        peer: the other end, for logs and messages.
    """

    guarantees = Guarantees(ordered=True, reliable=True)
    __slots__ = ("_closed", "_ws", "peer")  # a relay holds one per device: no __dict__ each

    def __init__(self, connection: ClientConnection, peer: str) -> None:
        self.peer = peer
        self._ws = connection
        self._closed = False

    def _is_closed(self) -> bool:
        return self._closed

    async def send(self, frame: bytes) -> None:
        """Send one frame as one binary message (see ``Transport.send``)."""
        with map_websocket_errors(self.peer, closed=self._is_closed):
            await self._ws.send(frame, text=False)

    async def send_many(self, frames: list[bytes]) -> None:
        """Send frames as one binary message each, in one socket write (one system call).

        Raises:
            TransportClosed: we closed this transport.
            ConnectionLost: the peer or the network closed it.
        """
        if len(frames) == 1:
            await self.send(frames[0])
            return
        ws = self._ws
        with map_websocket_errors(self.peer, closed=self._is_closed):
            async with ws.send_context():  # websockets' own write path: state, drain, errors
                for frame in frames:
                    ws.protocol.send_binary(frame)
                chunks = ws.protocol.data_to_send()
                ws.transport.write(b"".join(chunks))
                if not all(chunks):  # an end of stream was queued (closing): as websockets does
                    if ws.transport.can_write_eof():
                        ws.transport.write_eof()
                    else:
                        ws.transport.close()

    async def receive(self) -> bytes:
        """Return the next message as bytes (see ``Transport.receive``).

        A text message is returned as its UTF-8 bytes: it is not a valid frame, and saying so
        is the session's job, not the transport's.
        """
        # Not the context manager: a relay holds one receive waiting per device, and a
        # suspended ``with`` keeps its generator, frame and manager alive (~600 B) meanwhile.
        try:
            return await self._ws.recv(decode=False)
        except Exception:
            with map_websocket_errors(self.peer, closed=self._is_closed):
                raise

    async def aclose(self) -> None:
        """Run the WebSocket closing handshake. Idempotent."""
        self._closed = True
        with map_websocket_errors(self.peer, closed=self._is_closed):
            await self._ws.close()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed, by either end."""
        await self._ws.wait_closed()


async def connect(
    url: str,
    *,
    timeout: float = 10.0,
    ssl: ssl_module.SSLContext | None = None,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
) -> WebSocketTransport:
    """Open a WebSocket connection to ``url`` (``ws://`` or ``wss://``).

    Args:
        url: the server's URL.
        timeout: seconds allowed for the TCP, TLS and WebSocket handshakes together.
        ssl: TLS settings for ``wss://`` (default: the system's trust store).
        max_frame_size: security limit for incoming frames.

    Raises:
        ConnectError: the connection or a handshake failed, or ``ssl`` was given for ``ws://``.
        TransportTimeout: the handshakes did not finish within ``timeout``.
    """
    secure = url.lower().startswith("wss://")
    if ssl is not None and not secure:
        raise ConnectError(url, "a tls context was given for a ws:// url")
    options: dict[str, Any] = {"ssl": ssl} if secure and ssl is not None else {}
    with map_websocket_errors(url, phase="connect"):
        connection = await ws_connect(
            url,
            open_timeout=timeout,
            max_size=max_frame_size,
            compression=None,
            **options,
        )
    return WebSocketTransport(connection, url)


# -- errors ----------------------------------------------------------------------------------------


def _close_detail(exc: BaseException) -> str:
    # websockets' ConnectionClosed carries the close frames; name the code, not the reason
    # text, which the peer chose and which we do not echo into our logs.
    for frame in (getattr(exc, "rcvd", None), getattr(exc, "sent", None)):
        code = getattr(frame, "code", None)
        if isinstance(code, int):
            return f" (close code {code})"
    return ""


@contextlib.contextmanager
def map_websocket_errors(
    endpoint: str, *, phase: Phase = "io", closed: Callable[[], bool] | None = None
) -> Iterator[None]:
    """Translate websockets' exceptions raised inside the block into the ``TransportError`` tree.

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
