"""``Connection``: one peer of the relay, its session, its outbox and the loop that writes it.

The relay drives one ``SyncSession`` per connection. Anything may queue frames on a session
(its own receive loop, another device's batch being forwarded, a presence change); whoever does
calls ``flush()``, which moves the session's frames into this connection's outbox and wakes the
``send_loop``. The send loop is the only writer of the transport, the only caller of
``tick()``, and it closes the transport once the session says so (``close_expected``). It is
a task only while there is something to do: woken, it writes, ticks, serves catch-up rounds,
and ends once nothing is left, leaving an alarm for the session's next deadline (``Alarms``,
one event-loop timer for all connections). An idle device thus costs no task for writing.

What a connection is sent is decided by its ``Phase``:

==============  =====================================================================
HANDSHAKE       not authenticated yet: nothing of the group's is sent
WAITING_HAVE    authenticated, but the peer has not said what it holds: wait for Have
CATCHING_UP     served from the mailbox, one bounded round at a time, from what the
                session knows the peer holds (``peer_vector``)
LIVE            caught up: newly stored envelopes are offered as they arrive
==============  =====================================================================

A ``Have`` moves a connection to ``CATCHING_UP``; a round that finds nothing left moves it to
``LIVE``; a live connection whose outbox grows past ``max_pending_bytes`` (a slow reader) drops
back to ``CATCHING_UP``, so a slow peer costs the relay a cursor, not memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from switchboard.errors import TransportError
from switchboard.proto.frames import Envelope
from switchboard.proto.session import SyncSession
from switchboard.transports.base import Transport

logger = logging.getLogger("switchboard.relay")

# Bytes queued for one peer before live forwarding to it stops and it is served from the
# mailbox instead: eight full frames keep a fast link busy, and bound what a stalled one costs.
DEFAULT_MAX_PENDING_BYTES: Final = 8 * 1024 * 1024


# Bytes of queued frames written in one go at most (one system call where the transport can).
MAX_WRITE_BYTES: Final = 256 * 1024

SendMany = Callable[[list[bytes]], Awaitable[None]]


class Phase(enum.Enum):
    """What the relay sends a connection (see the module docstring)."""

    HANDSHAKE = "handshake"
    WAITING_HAVE = "waiting_have"
    CATCHING_UP = "catching_up"
    LIVE = "live"


def source_of(peer: str) -> str:
    """Return the source address of a transport's ``peer`` ("ws://10.0.0.5:4242" -> host)."""
    return urlsplit(peer).hostname or peer


@dataclass(eq=False, slots=True)  # a relay holds one per device: no __dict__ each
class Connection:
    """One peer of the relay. See the module docstring."""

    transport: Transport
    session: SyncSession
    max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES
    group: str = ""
    device: str = ""
    phase: Phase = Phase.HANDSHAKE
    offered_key: bytes = b""  # the group key the Hello offered (checked after its proof)
    group_key: bytes | None = None  # the group's registered key (None: the Hello creates it)
    forwarded: int = 0  # envelopes queued for this peer
    detached: bool = False  # a rendezvous took over the transport (``detach``)

    outbox: list[bytes] = field(default_factory=list, repr=False)  # a deque costs 600 B more
    outbox_bytes: int = 0
    # The send loop runs only while woken (a flag: an asyncio.Event would hold a deque per
    # connection for its whole life); between runs, a timer for the session's next deadline.
    woken: bool = field(default=False, repr=False)
    closed: bool = field(default=False, repr=False)  # the send loop is ending for good
    ended: bool = field(default=False, repr=False)  # ... and closed the transport (or let go)
    _catch_up: Callable[[Connection], Awaitable[None]] | None = field(default=None, repr=False)
    _sender: asyncio.Task[None] | None = field(default=None, repr=False)
    _failed: asyncio.Task[None] | None = field(default=None, repr=False)  # ended by a raise
    _alarms: Alarms | None = field(default=None, repr=False)
    _alarm: float | None = field(default=None, repr=False)  # when the alarms wake us next
    _done: asyncio.Future[None] | None = field(default=None, repr=False)  # for aclose()
    # Batches read but not yet stored, oldest first (the relay's ``Storer`` bounds them).
    unstored: list[tuple[Envelope, ...]] = field(default_factory=list, repr=False)
    # The peer's address, the unit of rate limiting and of handshake caps.
    source: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.source = source_of(self.transport.peer)

    @property
    def label(self) -> str:
        """A short name for log lines: the device if known, else the address."""
        return self.device[:8] if self.device else self.transport.peer

    def move_to(self, phase: Phase) -> None:
        """Change what this connection is sent (see the module docstring)."""
        if phase is not self.phase:
            logger.debug("= %s %s -> %s", self.label, self.phase.value, phase.value)
            self.phase = phase

    def flush(self) -> None:
        """Move the session's queued frames to the outbox and wake the send loop."""
        self._take_frames()
        self._wake()

    def _take_frames(self) -> None:
        for frame in self.session.frames_to_send():
            self.outbox.append(frame)
            self.outbox_bytes += len(frame)

    def detach(self) -> None:
        """Stop the send loop without closing the transport: the rendezvous has it now."""
        self.detached = True
        self._wake()

    def offer(self, envelopes: list[Envelope]) -> None:
        """Forward newly stored envelopes if this peer is live; otherwise it will catch up."""
        if not self.session.is_open or self.phase in (Phase.HANDSHAKE, Phase.WAITING_HAVE):
            return
        if self.phase is Phase.LIVE and self.outbox_bytes <= self.max_pending_bytes:
            self.forwarded += self.session.offer(envelopes)
            held = self.session.peer_vector
            if any(env.seq > held.get(env.origin, 0) for env in envelopes):
                self.move_to(Phase.CATCHING_UP)  # it lacks an earlier one: serve it in order
        else:
            self.move_to(Phase.CATCHING_UP)
        self.flush()

    def catch_up_with(self, envelopes: list[Envelope]) -> None:
        """Send one catch-up round; an empty round (nothing new for the peer) means live."""
        queued = self.session.offer(envelopes) if self.session.is_open else 0
        self.forwarded += queued
        if queued == 0:
            self.move_to(Phase.LIVE)
        self.flush()

    def start(self, catch_up: Callable[[Connection], Awaitable[None]], alarms: Alarms) -> None:
        """Start writing: from now on, whatever wakes this connection runs the send loop.

        Args:
            catch_up: fetches the next mailbox round for this connection and calls
                ``catch_up_with``.
            alarms: wake this connection at its session's deadlines.
        """
        self._catch_up = catch_up
        self._alarms = alarms
        self._wake()

    async def aclose(self, timeout: float) -> None:
        """Let the send loop write the last frames and close the transport, within ``timeout``.

        Raises:
            Exception: a bug in the send loop, raised here rather than lost in its task.
        """
        self.flush()
        if not self.ended:
            if self._done is None:
                self._done = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._done), timeout)
        sender = self._sender
        if sender is not None:  # still writing after the timeout: cut it short
            sender.cancel()
            await asyncio.wait({sender})
        failed = self._failed
        if failed is not None:
            await asyncio.wait({failed})
            if not failed.cancelled():
                failed.result()

    async def send_loop(self) -> None:
        """Write the outbox, keep the session's time, serve catch-up rounds; close at the end.

        It runs while there is something to do, then ends, leaving an alarm for the session's
        next deadline: an idle connection costs no task (``_wake`` starts it again).
        """
        loop = asyncio.get_running_loop()
        send_many: SendMany | None = getattr(self.transport, "send_many", None)
        end = False  # the last round: close the transport after it
        try:
            while self.woken and not self.detached:
                self.woken = False
                self.session.tick(loop.time())
                self._take_frames()
                while self.outbox:
                    await self._write_some(send_many)
                if self.session.close_expected():
                    end = True
                    break
                if self.phase is Phase.CATCHING_UP:
                    assert self._catch_up is not None
                    await self._catch_up(self)
            if not end and not self.detached:
                self._arm()
        except TransportError as exc:
            logger.debug("! %s send failed: %s", self.label, exc)
            self.session.receive_eof()
            end = True
        except BaseException:  # a bug (aclose() raises it in the handler) or cancellation
            self._failed = asyncio.current_task()
            end = True
            raise
        finally:
            self._sender = None
            if end or self.detached:
                await self._finish()

    async def _finish(self) -> None:
        self.closed = True  # nothing wakes the send loop again (a pending alarm is ignored)
        try:
            if not self.detached:
                logger.debug("x %s closing transport", self.label)
                with contextlib.suppress(TransportError):
                    await self.transport.aclose()
        finally:
            self.ended = True
            if self._done is not None and not self._done.done():
                self._done.set_result(None)

    def _arm(self) -> None:
        # The session's next deadline wakes the send loop, which ticks it. An alarm already
        # set for earlier stays: it wakes the loop early, which ticks and sets the next one.
        deadline = self.session.next_deadline()
        if deadline is not None and (self._alarm is None or deadline < self._alarm):
            assert self._alarms is not None
            self._alarm = deadline
            self._alarms.set(self, deadline)

    def ring(self, when: float) -> None:
        """Wake the send loop for the alarm set for ``when`` (``Alarms`` calls it)."""
        if when == self._alarm:  # else a stale alarm, replaced by an earlier one
            self._alarm = None
            self._wake()

    async def _write_some(self, send_many: SendMany | None) -> None:
        # Frames queued together go out in one write where the transport can (presence of
        # devices connecting together, a catch-up round); they count as pending until written.
        if send_many is None or len(self.outbox) == 1:
            frame = self.outbox[0]
            logger.debug("> %s %d bytes", self.label, len(frame))
            await self.transport.send(frame)
            del self.outbox[0]
            self.outbox_bytes -= len(frame)
            return
        count = size = 0
        for frame in self.outbox:
            if size >= MAX_WRITE_BYTES:
                break
            count += 1
            size += len(frame)
        frames = self.outbox[:count]
        del self.outbox[:count]
        logger.debug("> %s %d frames, %d bytes", self.label, len(frames), size)
        try:
            await send_many(frames)
        finally:
            self.outbox_bytes -= size

    def _wake(self) -> None:
        self.woken = True
        if self._sender is None and self._catch_up is not None and not self.closed:
            self._sender = asyncio.get_running_loop().create_task(
                self.send_loop(), name=f"switchboard[{self.label}].send_loop"
            )


class Alarms:
    """Wake-ups at given times for many connections, on one event-loop timer.

    A relay holds one for all its connections rather than a timer each (with uvloop, a timer
    is a handle and a libuv timer: some 700 B per idle connection). Each connection has at
    most one alarm pending (``Connection._arm``), so the heap holds about one entry each.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Connection]] = []
        self._order = itertools.count()  # ties: first set, first rung (never compares conns)
        self._timer: asyncio.TimerHandle | None = None
        self._when = 0.0  # when the timer rings (uvloop's handles do not say)

    def set(self, conn: Connection, when: float) -> None:
        """Call ``conn.ring(when)`` at ``when`` (on the event loop's clock)."""
        heapq.heappush(self._heap, (when, next(self._order), conn))
        if self._timer is None or when < self._when:
            self._schedule()

    def cancel(self) -> None:
        """Stop ringing (the relay is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap.clear()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        if self._heap:
            self._when = self._heap[0][0]
            self._timer = asyncio.get_running_loop().call_at(self._when, self._ring)

    def _ring(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, conn = heapq.heappop(heap)
            conn.ring(when)
        self._schedule()
