"""WebSocket server connections: websockets' sans-IO ``ServerProtocol`` under ``asyncio.Protocol``.

A relay holds one server connection per device, most of them idle, so this side is built for
memory. websockets' asyncio connection costs about 8 KiB each before we do anything (its
``Assembler`` with queues and events, waiters, a ``ServerConnection`` per peer, a handler
coroutine wrapping ours). Here one object is the asyncio protocol *and* our ``Transport``:
bytes from the socket go straight into websockets' sans-IO ``ServerProtocol`` (the same
handshake, frame parser, limits and close codes as websockets' own server), whole messages
into a short list that ``receive()`` pops, and frames we send straight to the socket. There is
no reader task and no per-connection stream buffer; the only task is the handler's.

Theory of operation:

- ``data_received`` feeds the sans-IO protocol and acts on its events: the upgrade request is
  answered (``accept``; anything but a valid upgrade gets websockets' HTTP error response and
  a closed socket), and the handler task starts once the connection is open. Data frames
  become messages (fragments joined; ``max_frame_size`` bounds the whole message, which
  websockets checks before buffering: close code 1009). Pings are answered by the protocol.
- At ``max_queue`` messages received and not yet read, the socket stops being read (resumed
  at one): the backpressure websockets' ``max_queue`` gives.
- ``send`` writes at once and waits only while asyncio says the socket's buffer is full
  (``pause_writing``), as a stream's ``drain`` does.
- Closing follows the sans-IO protocol (``close_expected``): a timer cuts the socket if the
  peer does not finish the closing handshake within ``close_timeout``; a connection that does
  not finish its upgrade within ``open_timeout`` is cut too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Final, cast

from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from switchboard.errors import ConnectionLost, TransportClosed, TransportError
from switchboard.proto.frames import DEFAULT_MAX_FRAME_SIZE
from switchboard.transports.base import Guarantees, Transport

logger = logging.getLogger("switchboard.transports.websocket")

Handler = Callable[[Transport], Coroutine[Any, Any, None]]

# Messages held received but not yet read, per connection: above this the socket is not read
# (resumed at one). The relay's handler reads as messages come, so a few is plenty, and a full
# queue stops reading the socket, which is the backpressure we want.
DEFAULT_MAX_QUEUE: Final = 4
# Seconds from TCP accept to an open WebSocket (websockets' own default).
DEFAULT_OPEN_TIMEOUT: Final = 10.0
# Seconds the peer has to finish the closing handshake before the socket is cut (websockets').
DEFAULT_CLOSE_TIMEOUT: Final = 10.0
# asyncio's write buffer: send() waits above the high mark until below the low one
# (websockets' defaults, 32 KiB and a quarter of it).
WRITE_LIMIT_HIGH: Final = 32 * 1024
WRITE_LIMIT_LOW: Final = 8 * 1024

_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
# One id for every ServerProtocol instead of a fresh UUID each (some 150 B per connection).
_SHARED_ID: Final = uuid.UUID(int=0)


class ServerTransport(asyncio.Protocol):
    """One server-side WebSocket connection: an ``asyncio.Protocol`` and a ``Transport``.

    Args:
        listener: the server that accepted it (it starts the handler and tracks it).
    """

    guarantees = Guarantees(ordered=True, reliable=True)
    # A relay holds one per device: no __dict__ each (asyncio.Protocol has empty slots).
    __slots__ = (
        "_closed",
        "_closing",
        "_drain",
        "_fragments",
        "_lost",
        "_messages",
        "_read_paused",
        "_timer",
        "_transport",
        "_waiter",
        "_write_paused",
        "_ws",
        "listener",
        "peer",
    )

    def __init__(self, listener: WebSocketListener) -> None:
        self.listener = listener
        self.peer = ""
        self._ws = ServerProtocol(max_size=listener.max_frame_size)
        self._ws.id = _SHARED_ID  # only websockets' asyncio layer reads it (in its logs)
        self._transport: asyncio.Transport | None = None
        self._messages: list[bytes] = []
        self._fragments: list[bytes] | None = None  # a fragmented message being received
        self._waiter: asyncio.Future[bytes] | None = None  # receive() waiting for a message
        self._drain: asyncio.Future[None] | None = None  # send() waiting for the buffer
        self._closing: asyncio.Future[None] | None = None  # aclose() waiting for the end
        self._timer: asyncio.TimerHandle | None = None  # open or close deadline
        self._read_paused = self._write_paused = False
        self._closed = False  # we called aclose()
        self._lost = False  # the socket is gone

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports are not asyncio.Transport's.
        self._transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(WRITE_LIMIT_HIGH, WRITE_LIMIT_LOW)
        self.peer = _endpoint(transport.get_extra_info("peername"), self.listener.secure)
        self.listener.connections.add(self)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.listener.open_timeout, transport.abort)

    def data_received(self, data: bytes) -> None:
        self._ws.receive_data(data)
        self._process()

    def eof_received(self) -> None:
        # As websockets: the WebSocket closing handshake happens above TCP, so nothing is
        # written after the peer's EOF; returning None lets asyncio close the socket.
        self._ws.receive_eof()
        self._process()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._ws.receive_eof()  # idempotent: the protocol's state becomes CLOSED
        self._ws.events_received()
        self._ws.data_to_send()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake()
        self._wake_writer()
        if self._closing is not None and not self._closing.done():
            self._closing.set_result(None)
        self.listener.forget(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer()

    # -- the sans-IO protocol's events and output ----------------------------------------------

    def _process(self) -> None:
        ws = self._ws
        for event in ws.events_received():
            if isinstance(event, Frame):
                if event.opcode in _DATA:
                    self._message_part(event)
            elif isinstance(event, Request) and ws.state is State.CONNECTING:
                response = ws.accept(event)
                ws.send_response(response)
                event.headers.clear()  # the protocol's parser keeps the request for good
                if response.status_code == 101:  # the protocol is open now
                    self._opened()
        self._write_out()
        if ws.state is not State.OPEN and ws.state is not State.CONNECTING:
            self._wake()  # a waiting receive() raises now (after the messages before it)

    def _message_part(self, frame: Frame) -> None:
        if frame.fin and self._fragments is None:
            self._messages.append(bytes(frame.data))  # bytes already: no copy
        elif self._fragments is None:
            self._fragments = [bytes(frame.data)]
            return
        else:
            self._fragments.append(bytes(frame.data))
            if not frame.fin:
                return
            self._messages.append(b"".join(self._fragments))
            self._fragments = None
        self._wake()
        if len(self._messages) >= self.listener.max_queue and not self._read_paused:
            assert self._transport is not None
            self._read_paused = True
            self._transport.pause_reading()

    def _write_out(self) -> None:
        transport = self._transport
        assert transport is not None
        for data in self._ws.data_to_send():
            if self._lost:
                continue
            if data:
                transport.write(data)
            elif transport.can_write_eof():  # the end of the stream: half-close if we can
                with contextlib.suppress(OSError, RuntimeError):
                    transport.write_eof()
            else:  # TLS cannot half-close
                transport.close()
        if self._ws.close_expected() and self._timer is None and not self._lost:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.listener.close_timeout, transport.abort)

    def _opened(self) -> None:
        if self._timer is not None:  # the open deadline
            self._timer.cancel()
            self._timer = None
        self.listener.start(self)

    def _wake(self) -> None:
        # Settle a waiting receive(): the next message, else why there will be none.
        waiter = self._waiter
        if waiter is None:
            return
        if waiter.done():  # its caller was cancelled: the message stays queued
            self._waiter = None
        elif self._closed or (not self._messages and self._ws.state is not State.OPEN):
            self._waiter = None
            waiter.set_exception(self._broken())
        elif self._messages:
            self._waiter = None
            waiter.set_result(self._messages.pop(0))
            if self._read_paused and len(self._messages) <= 1 and not self._lost:
                assert self._transport is not None
                self._read_paused = False
                self._transport.resume_reading()

    def _wake_writer(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    async def _wait_writable(self) -> None:
        # Writers share one future (shielded: a cancelled writer must not cancel the others').
        if self._drain is None or self._drain.done():
            self._drain = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._drain)

    def _broken(self) -> TransportError:
        if self._closed:
            return TransportClosed(f"connection to {self.peer} is closed")
        ws = self._ws
        close = ws.close_rcvd or ws.close_sent
        detail = f" (close code {close.code})" if close is not None else ""
        return ConnectionLost(f"connection to {self.peer} closed{detail}")

    # -- Transport -----------------------------------------------------------------------------

    def receive(self) -> asyncio.Future[bytes]:
        """Return the next message as bytes, as a future (see ``Transport.receive``).

        A text message is returned as its UTF-8 bytes: it is not a valid frame, and saying so
        is the session's job, not the transport's. Not a coroutine: a relay holds one receive
        waiting per device, and a future is all it needs to wait on.
        """
        assert self._waiter is None or self._waiter.done(), "one receive at a time"
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        self._wake()
        return waiter

    async def send(self, frame: bytes) -> None:
        """Send one frame as one binary message (see ``Transport.send``)."""
        await self.send_many([frame])

    async def send_many(self, frames: list[bytes]) -> None:
        """Send frames as one binary message each, in one socket write.

        Raises:
            TransportClosed: we closed this transport.
            ConnectionLost: the peer or the network closed it.
        """
        if self._closed or self._lost or self._ws.state is not State.OPEN:
            raise self._broken()
        for frame in frames:
            self._ws.send_binary(frame)
        assert self._transport is not None
        self._transport.write(b"".join(self._ws.data_to_send()))
        while self._write_paused and not self._lost:
            await self._wait_writable()
        if self._lost and self._write_paused:
            raise self._broken()

    async def aclose(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Run the WebSocket closing handshake (bounded by the close timeout). Idempotent."""
        self._closed = True
        self._wake()
        if not self._lost and self._ws.state is State.OPEN:
            self._ws.send_close(code, reason)
            self._write_out()
        if self._lost:
            return
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._closing)

    def shut(self, code: int = CloseCode.GOING_AWAY) -> None:
        """Start closing without waiting: a close frame if open, else cut the socket."""
        if self._lost or self._transport is None:
            return
        if self._ws.state is State.OPEN:
            self._ws.send_close(code)
            self._write_out()
            self._wake()
        elif self._ws.state is State.CONNECTING:
            self._transport.abort()


class WebSocketListener:
    """A running WebSocket server (see ``serve``): its socket, options and connections."""

    def __init__(
        self,
        handler: Handler,
        *,
        secure: bool,
        max_frame_size: int,
        max_queue: int = DEFAULT_MAX_QUEUE,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        self.port = 0
        self.secure = secure
        self.max_frame_size = max_frame_size
        self.max_queue = max_queue
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self._handler = handler
        self._server: asyncio.Server | None = None
        # Each connection is in one of these at a time (a relay holds many: one entry each).
        self.connections: set[ServerTransport] = set()  # accepted, not open yet
        self._tasks: dict[asyncio.Task[None], ServerTransport] = {}  # open: handlers running
        self._on_done = self._handled  # one bound method for every task's done callback

    def start(self, conn: ServerTransport) -> None:
        """Run the handler for a connection that just opened."""
        # The handler's coroutine is the task's own (no wrapper coroutine per connection);
        # when it ends, ``_handled`` closes the connection, as websockets' server does.
        task = asyncio.get_running_loop().create_task(
            self._handler(conn), name=f"switchboard[{conn.peer}].handler"
        )
        self.connections.discard(conn)
        self._tasks[task] = conn
        task.add_done_callback(self._on_done)

    def forget(self, conn: ServerTransport) -> None:
        """Drop a connection whose socket is gone (before it opened)."""
        self.connections.discard(conn)

    def _handled(self, task: asyncio.Task[None]) -> None:
        conn = self._tasks.pop(task)
        code = CloseCode.NORMAL_CLOSURE
        if not task.cancelled() and task.exception() is not None:  # a bug: the peer gets 1011
            logger.error("! connection handler for %s failed", conn.peer, exc_info=task.exception())
            code = CloseCode.INTERNAL_ERROR
        conn.shut(code)

    async def aclose(self) -> None:
        """Stop accepting, close connections (code 1001) and wait for their handlers."""
        if self._server is not None:
            self._server.close()
        for conn in [*self.connections, *self._tasks.values()]:
            conn.shut()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        if self._server is not None:
            await self._server.wait_closed()


def _endpoint(address: Any, secure: bool) -> str:
    scheme = "wss" if secure else "ws"
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        if ":" in str(host):
            host = f"[{host}]"
        return f"{scheme}://{host}:{port}"
    return f"{scheme}://{address}"


async def serve(
    handler: Handler,
    host: str,
    port: int,
    ssl: ssl_module.SSLContext | None = None,
    *,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    max_queue: int = DEFAULT_MAX_QUEUE,
    open_timeout: float = DEFAULT_OPEN_TIMEOUT,
) -> WebSocketListener:
    """Listen for WebSocket connections; run ``handler(transport)`` for each one.

    The connection is closed when the handler returns. Port 0 picks a free port; the
    listener's ``port`` tells which.

    Args:
        handler: called with each accepted connection; it owns the connection until it returns.
        host: address to bind ("127.0.0.1", "0.0.0.0", "::").
        port: port to bind, or 0.
        ssl: serve ``wss://`` with these TLS settings.
        max_frame_size: security limit for incoming frames (whole messages).
        max_queue: messages held received but not yet read before the socket is not read.
        open_timeout: seconds from accepting a socket to an open WebSocket; then it is cut.

    Raises:
        TransportError: the address could not be bound.
    """
    listener = WebSocketListener(
        handler,
        secure=ssl is not None,
        max_frame_size=max_frame_size,
        max_queue=max_queue,
        open_timeout=open_timeout,
    )
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(lambda: ServerTransport(listener), host, port, ssl=ssl)
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        endpoint = _endpoint((host, port), ssl is not None)
        raise TransportError(f"cannot listen on {endpoint}: {reason}") from exc
    listener._server = server
    listener.port = int(server.sockets[0].getsockname()[1]) if server.sockets else port
    return listener
