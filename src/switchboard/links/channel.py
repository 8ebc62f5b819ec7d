"""``DirectChannel``: a link's directed channel: call another device, serve its calls.

Theory of operation
-------------------
Every link (relay, MQTT, NATS) carries ``Direct`` frames to one device of its group and has
one ``DirectChannel``, which runs the sans-IO ``proto.channel.Channel`` on the event loop:

- **out**: what the core queues is sealed and signed here (``GroupKeys.seal_direct``) just
  before it is handed to the link (the ``Carrier``), one task per peer, in order. A link that
  knows a frame cannot arrive (the recipient is not connected, a NATS subject has no
  responders) raises ``Unreachable``, which ends that call at once;
- **in**: the link hands over each ``Direct`` frame it receives (``frame_received``); it is
  checked and opened here (``GroupKeys.open_direct``: recipient, sender key, signature,
  seal). A frame that fails is counted on the link's status (``tampered``) and logged without
  its content, never answered: its header cannot be trusted;
- **time**: one timer task ticks the core at its deadline (retries, idle timeouts).

Features register what they serve in ``Handlers``, one table shared by every link of the
daemon: a plain ``async def handler(request) -> bytes``, or for a stream an async generator
of chunks, which is pulled only while the caller's window has room, so it never runs ahead.
A handler's ``SwitchboardError`` reaches the caller as ``RemoteError`` with its code; any other
exception is logged here and reaches the caller as ``internal``. Payloads are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from switchboard.errors import (
    SwitchboardError,
    TamperedDirect,
    TransportError,
    TransportTimeout,
    Unreachable,
)
from switchboard.proto import calls
from switchboard.proto.channel import Channel, Side
from switchboard.proto.frames import Direct, UndeliveredCode

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from switchboard.keyring import Keyring
    from switchboard.links.status import LinkStatus

log = logging.getLogger("switchboard.channel")

# How long a call waits for its answer unless the caller says otherwise.
DEFAULT_CALL_TIMEOUT: Final = 30.0
_END: Final = object()  # a stream's queue: every chunk arrived


class Carrier(Protocol):
    """What a link does for its channel."""

    async def send_direct(self, frame: Direct) -> None:
        """Send one sealed frame towards ``frame.recipient``.

        Raises:
            Unreachable: the link knows the recipient cannot get it.
            TransportError: the link is down.
        """


@dataclass(frozen=True)
class Request:
    """A call another device made of this one.

    Attributes:
        sender: the calling device's id, proven by its signature.
        kind: what it asks for (the name a handler registered).
        body: its argument (at most ``proto.calls.MAX_BODY`` bytes).
    """

    sender: str
    kind: str
    body: bytes


UnaryHandler = Callable[[Request], Awaitable[bytes]]
StreamHandler = Callable[[Request], AsyncIterator[bytes]]


class Handlers:
    """The kinds of calls this device serves, and who serves them (one table per daemon)."""

    def __init__(self) -> None:
        self._table: dict[str, tuple[Any, bool]] = {}

    def register(
        self, kind: str, handler: UnaryHandler | StreamHandler, *, stream: bool = False
    ) -> None:
        """Serve ``kind`` with ``handler`` (with ``stream``: an async generator of chunks)."""
        assert kind not in self._table, f"{kind!r} is served already"
        self._table[kind] = (handler, stream)

    def lookup(self, kind: str) -> tuple[Any, bool] | None:
        """Return ``(handler, stream)`` for ``kind``, or ``None``."""
        return self._table.get(kind)


@dataclass(frozen=True)
class DirectStatistics:
    """What one channel holds and has done (``buffered_bytes``: chunks received and not yet
    taken, chunks sent and not yet acknowledged, and frames waiting for the link)."""

    calls_out: int
    calls_in: int
    resent: int
    rejected: int
    tampered: int
    buffered_bytes: int
    max_buffered_bytes: int


class Stream:
    """The chunks of a streamed call, in order. Iterate it; close it (or ``async with``)."""

    def __init__(self, channel: DirectChannel, peer: str, call_id: int, deadline: float | None):
        self._channel, self.peer, self.id, self._deadline = channel, peer, call_id, deadline
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self.queued_bytes = 0
        self._done = False

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        try:
            async with asyncio.timeout_at(self._deadline):
                item = await self._queue.get()
        except TimeoutError:
            await self.aclose()
            raise TransportTimeout(f"stream from device {self.peer[:12]} timed out") from None
        if item is _END:
            self._done = True
            raise StopAsyncIteration
        if isinstance(item, SwitchboardError):
            self._done = True
            raise item
        self.queued_bytes -= len(item)
        self._channel._consumed(self)
        return bytes(item)

    async def aclose(self) -> None:
        """Stop the stream; the other device is told to stop sending."""
        if not self._done:
            self._done = True
            self._channel._abandon(self.peer, self.id)

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


@dataclass(eq=False)
class DirectChannel:
    """One link's directed channel. See the module docstring.

    Args:
        keys: the group's keys (sealing).
        identity: this device's key (signing).
        device_id: this device's id.
        carrier: the link that carries the frames.
        handlers: what this device serves (shared by every link of the daemon).
        status: the link's status, where rejected frames are counted.
        core: the sans-IO channel (tests pass one with other limits).
    """

    keys: Keyring
    identity: Ed25519PrivateKey
    device_id: str
    carrier: Carrier
    handlers: Handlers = field(default_factory=Handlers)
    status: LinkStatus | None = None
    core: Channel = field(default=None)  # type: ignore[assignment]

    _waiting: dict[tuple[str, int], asyncio.Future[bytes]] = field(init=False, default_factory=dict)
    _streams: dict[tuple[str, int], Stream] = field(init=False, default_factory=dict)
    _serving: dict[tuple[str, int], asyncio.Task[None]] = field(init=False, default_factory=dict)
    _credit: dict[tuple[str, int], asyncio.Event] = field(init=False, default_factory=dict)
    _outboxes: dict[str, deque[tuple[int, bytes]]] = field(init=False, default_factory=dict)
    _senders: dict[str, asyncio.Task[None]] = field(init=False, default_factory=dict)
    _outbox_bytes: int = field(init=False, default=0)
    _max_buffered: int = field(init=False, default=0)
    _tampered: int = field(init=False, default=0)
    _timer: asyncio.Task[None] | None = field(init=False, default=None)
    _tick_due: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _ticking_at: float | None = field(init=False, default=None)  # what the timer waits for

    def __post_init__(self) -> None:
        if self.core is None:
            self.core = Channel(self.device_id)

    # -- calling -----------------------------------------------------------------------------

    async def call(
        self, device: str, kind: str, body: bytes = b"", *, timeout: float = DEFAULT_CALL_TIMEOUT
    ) -> bytes:
        """Call ``device`` and return its answer.

        Raises:
            Unreachable: the device is not connected to the link (or left during the call).
            RemoteError: the device answered with an error.
            TransportTimeout: no answer within ``timeout`` (or the device stopped answering).
            UserError: ``body`` is over ``proto.calls.MAX_BODY``.
        """
        call_id = self._start(device, kind, body, stream=False)
        future = self._waiting[(device, call_id)] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                answer: bytes = await future
                return answer
        except TimeoutError:
            raise TransportTimeout(
                f"device {device[:12]} did not answer {kind!r} within {timeout:g} s"
            ) from None
        finally:
            self._waiting.pop((device, call_id), None)
            self._abandon(device, call_id)

    def stream(
        self, device: str, kind: str, body: bytes = b"", *, timeout: float | None = None
    ) -> Stream:
        """Call ``device`` for a stream of chunks (``timeout``: for the whole stream).

        Raises:
            UserError: ``body`` is over ``proto.calls.MAX_BODY``.
        """
        call_id = self._start(device, kind, body, stream=True)
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        stream = self._streams[(device, call_id)] = Stream(self, device, call_id, deadline)
        return stream

    # -- what the link hands over ------------------------------------------------------------

    def frame_received(self, frame: Direct) -> None:
        """A directed frame arrived from the link: check it, open it, act on it."""
        try:
            plaintext = self.keys.open_direct(frame, self.device_id)
        except TamperedDirect as exc:
            self._tampered += 1
            if self.status is not None:
                self.status.tampered += 1
                self.status.last_error = str(exc)
            log.warning("! %s", exc)
            return
        self.core.receive(frame.sender, frame.ref, plaintext, _now(), time.time())
        self._pump()

    def undelivered(self, recipient: str, ref: int, code: int, reason: str) -> None:
        """The link could not deliver our frame ``ref`` to ``recipient``."""
        self.core.receive_undelivered(recipient, ref, code, reason)
        self._pump()

    def peer_gone(self, device: str, reason: str) -> None:
        """``device`` left the link: its calls end."""
        self.core.peer_gone(device, reason)
        self._pump()

    def link_down(self, reason: str) -> None:
        """The link went down: every call ends."""
        self.core.link_down(reason)
        self._pump()

    def statistics(self) -> DirectStatistics:
        """Return the channel's counters."""
        core = self.core.statistics()
        return DirectStatistics(
            calls_out=core.calls_out,
            calls_in=core.calls_in,
            resent=core.resent,
            rejected=core.rejected,
            tampered=self._tampered,
            buffered_bytes=self._buffered(),
            max_buffered_bytes=self._max_buffered,
        )

    async def aclose(self) -> None:
        """Stop serving and calling: every open call ends."""
        self.core.link_down("link stopped")
        self._pump()
        tasks = [*self._serving.values(), *self._senders.values()]
        if self._timer is not None:
            tasks.append(self._timer)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    # -- internals: calls ----------------------------------------------------------------------

    def _start(self, device: str, kind: str, body: bytes, *, stream: bool) -> int:
        call_id = secrets.randbits(63)
        while self.core.has_call(device, call_id):
            call_id = secrets.randbits(63)
        self.core.call(device, call_id, kind, body, now=_now(), wall=time.time(), stream=stream)
        self._pump()
        return call_id

    def _abandon(self, peer: str, call_id: int) -> None:
        self._streams.pop((peer, call_id), None)
        self.core.abandon(peer, call_id)
        self._pump()

    def _consumed(self, stream: Stream) -> None:
        self.core.consume(stream.peer, stream.id)
        self._pump()

    # -- internals: the core's output ----------------------------------------------------------

    def _pump(self) -> None:
        for peer, ref, data in self.core.messages_to_send():
            self._outboxes.setdefault(peer, deque()).append((ref, data))
            self._outbox_bytes += len(data)
            sender = self._senders.get(peer)
            if sender is None or sender.done():
                self._senders[peer] = asyncio.create_task(
                    self._send_loop(peer), name=f"switchboard[direct {peer[:8]}].send_loop"
                )
        for event in self.core.events_received():
            self._on(event)
        self._max_buffered = max(self._max_buffered, self._buffered())
        if self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._timer_loop(), name="switchboard[direct].timer")
        due = self.core.next_deadline()
        if due is not None and (self._ticking_at is None or due < self._ticking_at):
            self._tick_due.set()  # sooner than the timer waits for

    def _on(self, event: calls.ChannelEvent) -> None:
        key = (event.peer, getattr(event, "id", -1))
        if isinstance(event, calls.CallReceived):
            self._serve(event)
        elif isinstance(event, calls.CreditReceived):
            if key in self._credit:
                self._credit[key].set()
        elif isinstance(event, calls.CallCancelled):
            task = self._serving.pop(key, None)
            if task is not None:
                task.cancel()
        elif isinstance(event, calls.ReplyReceived):
            future = self._waiting.get(key)
            if future is not None and not future.done():
                future.set_result(event.body)
        elif isinstance(event, calls.ChunkReceived):
            stream = self._streams.get(key)
            if stream is not None:
                stream.queued_bytes += len(event.data)
                stream._queue.put_nowait(event.data)
        elif isinstance(event, calls.StreamEnded):
            stream = self._streams.pop(key, None)
            if stream is not None:
                stream._queue.put_nowait(_END)
        elif isinstance(event, calls.CallFailed):
            future = self._waiting.get(key)
            if future is not None and not future.done():
                future.set_exception(event.error)
            stream = self._streams.pop(key, None)
            if stream is not None:
                stream._queue.put_nowait(event.error)
        else:
            assert isinstance(event, calls.MessageRejected)
            log.warning("! call message from device %s rejected: %s", event.peer[:12], event.reason)

    def _buffered(self) -> int:
        queued = sum(stream.queued_bytes for stream in self._streams.values())
        return queued + self._outbox_bytes + self.core.statistics().held_bytes

    async def _send_loop(self, peer: str) -> None:
        outbox = self._outboxes[peer]
        while outbox:
            ref, data = outbox.popleft()
            self._outbox_bytes -= len(data)
            frame = self.keys.seal_direct(self.identity, peer, ref, data)
            if peer == self.device_id:  # a call of ourselves: no link needed (nor able: No Local)
                self.frame_received(frame)
                continue
            try:
                await self.carrier.send_direct(frame)
            except TransportError as exc:  # Unreachable, or the link is down
                reason = exc.reason if isinstance(exc, Unreachable) else str(exc)
                self.undelivered(peer, ref, UndeliveredCode.NOT_CONNECTED, reason)

    async def _timer_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._tick_due.clear()
            self._ticking_at = deadline = self.core.next_deadline()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):  # None: until woken
                    await self._tick_due.wait()
            if deadline is not None and loop.time() >= deadline:
                self.core.tick(loop.time())
                self._pump()

    # -- internals: serving --------------------------------------------------------------------

    def _serve(self, event: calls.CallReceived) -> None:
        found = self.handlers.lookup(event.kind)
        key = (event.peer, event.id)
        if found is None:
            message = f"device {self.device_id[:12]} serves no {event.kind!r} calls"
            self.core.fail(event.peer, event.id, "not_found", message, _now())
            return
        handler, streams = found
        if streams != event.stream:
            how = "streams" if streams else "does not stream"
            self.core.fail(event.peer, event.id, "bad_request", f"{event.kind!r} {how}", _now())
            return
        request = Request(event.peer, event.kind, event.body)
        run = self._serve_stream(request, event.id, handler) if streams else (
            self._serve_call(request, event.id, handler)
        )  # fmt: skip
        self._serving[key] = asyncio.create_task(run, name=f"switchboard[direct {event.kind}]")

    async def _serve_call(self, request: Request, call_id: int, handler: UnaryHandler) -> None:
        key = (request.sender, call_id)
        try:
            body = bytes(await handler(request))
            self.core.reply(request.sender, call_id, body, _now())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure answers the caller
            self._failed(request, call_id, exc)
        finally:
            self._serving.pop(key, None)
            self._pump()

    async def _serve_stream(self, request: Request, call_id: int, handler: StreamHandler) -> None:
        key = (request.sender, call_id)
        credit = self._credit[key] = asyncio.Event()
        chunks = handler(request)
        try:
            while True:
                while not self.core.can_send_chunk(request.sender, call_id):
                    if not self.core.has_call(request.sender, call_id, Side.RESPONDER):
                        return
                    credit.clear()
                    await credit.wait()
                try:
                    data = await anext(chunks)
                except StopAsyncIteration:
                    self.core.end(request.sender, call_id, _now())
                    return
                self.core.send_chunk(request.sender, call_id, bytes(data))
                self._pump()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure answers the caller
            self._failed(request, call_id, exc)
        finally:
            self._credit.pop(key, None)
            self._serving.pop(key, None)
            with contextlib.suppress(Exception):
                await chunks.aclose()  # type: ignore[attr-defined]
            self._pump()

    def _failed(self, request: Request, call_id: int, exc: Exception) -> None:
        if isinstance(exc, SwitchboardError):
            code, message = exc.code, str(exc)
        else:
            log.error("! handler for %r failed", request.kind, exc_info=True)
            code, message = "internal", f"internal error: {type(exc).__name__}"
        self.core.fail(request.sender, call_id, code, message, _now())


def _now() -> float:
    return asyncio.get_running_loop().time()
