"""``Channel``: calls between two devices of a group over a link's directed channel, without I/O.

Theory of operation
-------------------
A device holds one ``Channel`` per link. It plays both parts: the **caller** of the calls it
makes and the **responder** to the calls other devices make of it. Like ``SyncSession`` it
does no I/O and reads no clock:

- messages come in through ``receive(peer, data, now, wall)``, opened and with their sender
  checked by the adapter (``crypto.GroupKeys.open_direct``); what the link says comes in
  through ``receive_undelivered``, ``peer_gone`` and ``link_down``;
- messages to seal and send come out of ``messages_to_send()`` as ``(peer, ref, bytes)``;
- what happened comes out of ``events_received()``;
- the adapter calls ``tick(now)`` no later than ``next_deadline()``; ``now`` is a monotonic
  clock, ``wall`` the wall clock (calls carry it, for the replay window).

The rules are ``docs/protocol.md`` §9. In short: a ``Call`` is answered by a ``Reply`` or a
``Failure``, or for a stream by ``Chunk``s and an ``End``. **Credit** bounds a stream: the
responder sends chunk ``n`` only while ``n < limit``, the caller raises ``limit`` to
``consumed + window`` as its application takes chunks, and the adapter pulls its producer
only while ``can_send_chunk``; so each side holds at most a window of a stream, however long.
**Losses** are repaired by the caller: silence for ``retry_interval`` (doubling) sends the
``Call`` again, then ``Credit(resend=True)``, which the responder answers with what it holds
from ``next`` on, or ``Progress``; chunks reach the application once each, in order. Silence
for ``idle_timeout`` ends a call on either side. A responder keeps finished answers for
``linger`` (a repeated call is answered, not run again) and refuses calls outside its replay
window (``proto.replay``), so a replayed call never runs twice.

Peer input never raises out of ``receive``: a malformed message or one that breaks the rules
is reported (``MessageRejected``) and, when it names one of our calls, fails that call.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from switchboard.errors import (
    LocalProtocolError,
    RemoteError,
    RemoteProtocolError,
    SwitchboardError,
    TransportTimeout,
    Unreachable,
    UserError,
)
from switchboard.proto.calls import (
    MAX_BODY,
    MAX_WINDOW,
    Call,
    CallCancelled,
    CallFailed,
    CallReceived,
    Cancel,
    ChannelEvent,
    ChannelStatistics,
    Chunk,
    ChunkReceived,
    Credit,
    CreditReceived,
    End,
    Failure,
    Message,
    MessageRejected,
    Progress,
    Reply,
    ReplyReceived,
    StreamEnded,
    decode_message,
    encode_message,
    message_name,
)
from switchboard.proto.frames import UndeliveredCode
from switchboard.proto.replay import ReplayWindow

# Chunks a caller lets a stream run ahead of its consumer. 16 chunks of the usual 64 KiB
# keep a loopback or LAN link busy (1 MiB in flight) and bound what a stream costs either side.
DEFAULT_WINDOW: Final = 16
# Silence on a call after which the caller sends again. A round trip is well under this on
# any link we run; the first retry comes quickly because core NATS loses a message in ~300.
DEFAULT_RETRY_INTERVAL: Final = 0.5
# Retries slow down to this, so a responder busy for long is asked about once every 4 s.
DEFAULT_MAX_RETRY_INTERVAL: Final = 4.0
# Silence on a call after which either side gives it up. A live peer answers every retry, so
# this is only reached when the peer (or the link) is gone: then the caller hears of it in
# this long at the latest, even where the link cannot tell (a crashed MQTT device).
DEFAULT_IDLE_TIMEOUT: Final = 15.0
# How long a responder keeps a finished call's answer for a caller that did not get it: the
# caller asks again within max_retry_interval, so a few of those are plenty.
DEFAULT_LINGER: Final = 20.0
# Bytes of finished answers kept for callers that may ask again; beyond it the oldest go (a
# caller that then asks again gets "expired", not a second run).
DEFAULT_MAX_CACHED_BYTES: Final = 8 * 1024 * 1024
# The replay window: a call stamped further than this from the responder's wall clock is
# refused. Ten minutes absorb ordinary clock drift between devices.
DEFAULT_MAX_CALL_AGE: Final = 600.0
# Call ids remembered for the replay window; past it the oldest are forgotten and calls not
# newer than them refused (stale), so a flood of calls cannot reopen the window for replays.
DEFAULT_MAX_REMEMBERED: Final = 65_536
# Calls served at once, from all peers; beyond it a call is refused as busy.
DEFAULT_MAX_INCOMING: Final = 256


class Side(enum.Enum):
    """Whether a call is one we make or one we serve."""

    CALLER = "caller"
    RESPONDER = "responder"


@dataclass
class _Outgoing:
    """A call we made."""

    peer: str
    id: int
    call: Call
    heard_at: float  # last message from the peer about this call (or the call's start)
    retry_at: float
    interval: float
    answered: bool = False  # the peer said anything about it: stop sending the Call
    next: int = 0  # stream: chunks received in order
    consumed: int = 0  # stream: chunks the application took
    granted: int = 0  # stream: the limit we last sent
    count: int | None = None  # stream: from End
    asked_from: int = -1  # stream: the ``next`` we last asked to resend from


@dataclass
class _Incoming:
    """A call we serve."""

    peer: str
    id: int
    kind: str
    stream: bool
    heard_at: float
    limit: int = 0  # stream: may send chunks before this
    acked: int = 0  # stream: the caller holds every chunk before this
    sent: int = 0  # stream: chunks sent
    held: deque[bytes] = field(default_factory=deque)  # chunks acked..sent
    held_bytes: int = 0
    answer: Message | None = None  # Reply, Failure or End once finished
    done_at: float | None = None


@dataclass
class Channel:
    """Calls between this device and the others of one link. See the module docstring.

    Args:
        local_id: this device's id.
        window: chunks a stream we call may run ahead of our consumer.
        retry_interval: silence on a call before we send again.
        max_retry_interval: the longest the retries grow to.
        idle_timeout: silence on a call before we give it up.
        linger: seconds a finished answer is kept for a repeated call.
        max_cached_bytes: bytes of finished answers kept.
        max_call_age: the replay window, in seconds of wall clock either way.
        max_remembered: call ids kept for the replay window.
        max_incoming: calls served at once.
    """

    local_id: str
    window: int = DEFAULT_WINDOW
    retry_interval: float = DEFAULT_RETRY_INTERVAL
    max_retry_interval: float = DEFAULT_MAX_RETRY_INTERVAL
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    linger: float = DEFAULT_LINGER
    max_cached_bytes: int = DEFAULT_MAX_CACHED_BYTES
    max_call_age: float = DEFAULT_MAX_CALL_AGE
    max_remembered: int = DEFAULT_MAX_REMEMBERED
    max_incoming: int = DEFAULT_MAX_INCOMING

    _out: dict[tuple[str, int], _Outgoing] = field(init=False, default_factory=dict)
    _in: dict[tuple[str, int], _Incoming] = field(init=False, default_factory=dict)
    _seen: ReplayWindow = field(init=False)
    # Calls being served (no answer yet): the ones that count against max_incoming.
    _running: dict[tuple[str, int], _Incoming] = field(init=False, default_factory=dict)
    # Finished calls in the order they finished, with the bytes of their answer: forgotten
    # ``linger`` after finishing, oldest first, or earlier when over max_cached_bytes.
    _finished: dict[tuple[str, int], int] = field(init=False, default_factory=dict)
    _cached_bytes: int = field(init=False, default=0)
    _held_bytes: int = field(init=False, default=0)
    _max_held_bytes: int = field(init=False, default=0)
    _queue: list[tuple[str, int, bytes]] = field(init=False, default_factory=list)
    _events: list[ChannelEvent] = field(init=False, default_factory=list)
    _counts: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        assert 1 <= self.window <= MAX_WINDOW, f"window must be 1..{MAX_WINDOW}"
        self._counts = dict.fromkeys(("calls_out", "calls_in", "resent", "rejected"), 0)
        self._seen = ReplayWindow(self.max_call_age, self.max_remembered)

    # -- output drains ---------------------------------------------------------------------

    def messages_to_send(self) -> list[tuple[str, int, bytes]]:
        """Return and forget the messages to seal and send: ``(peer, ref, data)``."""
        out, self._queue = self._queue, []
        return out

    def events_received(self) -> list[ChannelEvent]:
        """Return and forget what happened since the last call."""
        events, self._events = self._events, []
        return events

    def statistics(self) -> ChannelStatistics:
        """Return this channel's counters."""
        return ChannelStatistics(
            held_bytes=self._held_bytes,
            max_held_bytes=self._max_held_bytes,
            cached_bytes=self._cached_bytes,
            **self._counts,
        )

    def has_call(self, peer: str, call_id: int, side: Side = Side.CALLER) -> bool:
        """Whether a call is still open on our side (made by us, or served)."""
        table = self._out if side is Side.CALLER else self._in
        return (peer, call_id) in table

    # -- the caller's calls ----------------------------------------------------------------

    def call(
        self,
        peer: str,
        call_id: int,
        kind: str,
        body: bytes,
        *,
        now: float,
        wall: float,
        stream: bool = False,
    ) -> None:
        """Start a call of ``peer``; its answer comes as events naming ``call_id``.

        Args:
            peer: the device called.
            call_id: a fresh random id from the adapter (unique among our open calls).
            kind: what to run there (a handler's name, ``ping``).
            body: its argument, at most ``MAX_BODY`` bytes.
            now: the adapter's monotonic clock.
            wall: the wall clock (the responder checks it against its own).
            stream: ask for the answer in chunks.

        Raises:
            UserError: ``body`` or ``kind`` is too long.
        """
        if len(body) > MAX_BODY:
            raise UserError(f"call body of {len(body)} bytes exceeds limit of {MAX_BODY} bytes")
        if not 1 <= len(kind) <= 64:
            raise UserError(f"call kind must be 1 to 64 characters, got {len(kind)}")
        key = (peer, call_id)
        assert key not in self._out, "call ids must be fresh"
        message = Call(call_id, kind, body, stream, self.window, wall)
        out = _Outgoing(peer, call_id, message, now, now + self.retry_interval,
                        self.retry_interval, granted=self.window if stream else 0)  # fmt: skip
        self._out[key] = out
        self._counts["calls_out"] += 1
        self._send(peer, call_id, message)

    def consume(self, peer: str, call_id: int, n: int = 1) -> None:
        """Caller: the application took ``n`` chunks of a stream; grant as many more."""
        out = self._out.get((peer, call_id))
        if out is None or not out.call.stream:
            return
        out.consumed += n
        limit = out.consumed + self.window
        # Grant in steps of half a window: one credit per few chunks, never a stall.
        if limit - out.granted >= max(1, self.window // 2) and out.count is None:
            out.granted = limit
            self._send(peer, call_id, Credit(call_id, out.next, limit))

    def abandon(self, peer: str, call_id: int) -> None:
        """Caller: give up on a call (timed out, stream closed); the peer is told to stop."""
        if self._out.pop((peer, call_id), None) is not None:
            self._send(peer, call_id, Cancel(call_id))

    # -- the responder's answers -----------------------------------------------------------

    def reply(self, peer: str, call_id: int, body: bytes, now: float) -> None:
        """Responder: answer a call that does not stream.

        Raises:
            UserError: ``body`` is over ``MAX_BODY``.
        """
        if len(body) > MAX_BODY:
            raise UserError(f"reply of {len(body)} bytes exceeds limit of {MAX_BODY} bytes")
        served = self._serving(peer, call_id)
        if served is not None:
            self._finish(served, Reply(call_id, body), now)

    def fail(self, peer: str, call_id: int, code: str, message: str, now: float) -> None:
        """Responder: answer a call with an error (``code``: an API error code)."""
        served = self._serving(peer, call_id)
        if served is not None:
            failure = Failure(call_id, code[:64] or "error", message[:1024])
            served.held.clear()
            self._held_bytes -= served.held_bytes
            served.held_bytes = 0
            self._finish(served, failure, now)

    def can_send_chunk(self, peer: str, call_id: int) -> bool:
        """Responder: whether the stream's window lets one more chunk go now."""
        served = self._in.get((peer, call_id))
        return (
            served is not None
            and served.stream
            and served.answer is None
            and served.sent < served.limit
        )

    def send_chunk(self, peer: str, call_id: int, data: bytes) -> None:
        """Responder: send the stream's next chunk (only while ``can_send_chunk``).

        Raises:
            UserError: ``data`` is over ``MAX_BODY``.
        """
        if len(data) > MAX_BODY:
            raise UserError(f"chunk of {len(data)} bytes exceeds limit of {MAX_BODY} bytes")
        if not self.can_send_chunk(peer, call_id):
            raise LocalProtocolError("cannot send a chunk: no credit, or the call is over")
        served = self._in[(peer, call_id)]
        served.held.append(data)
        served.held_bytes += len(data)
        self._held_bytes += len(data)
        self._max_held_bytes = max(self._max_held_bytes, self._held_bytes)
        self._send(peer, call_id, Chunk(call_id, served.sent, data))
        served.sent += 1

    def end(self, peer: str, call_id: int, now: float) -> None:
        """Responder: the stream is complete."""
        served = self._serving(peer, call_id)
        if served is not None:
            self._finish(served, End(call_id, served.sent), now)

    # -- input -------------------------------------------------------------------------------

    def receive(self, peer: str, ref: int, data: bytes, now: float, wall: float) -> None:
        """Take one opened message from ``peer`` (its sender already checked). Never raises.

        Args:
            peer: the sender, as the adapter checked it.
            ref: the ``Direct`` frame's ``ref``, which must be the message's call id.
            data: the opened message.
            now: the monotonic clock.
            wall: the wall clock.
        """
        try:
            message = decode_message(data)
        except RemoteProtocolError as exc:
            self._reject(peer, str(exc))
            return
        if message.id != ref:
            self._reject(peer, f"message for call {message.id} in a frame for call {ref}")
            return
        if isinstance(message, Call):
            self._on_call(peer, message, now, wall)
        elif isinstance(message, Credit | Cancel):
            self._on_caller_message(peer, message, now)
        else:
            self._on_responder_message(peer, message, now)

    def receive_undelivered(self, peer: str, call_id: int, code: int, reason: str) -> None:
        """The link could not deliver a message of call ``call_id`` to ``peer``.

        ``BUSY`` is a loss like any other (retries repair it); anything else ends the call.
        """
        if code == UndeliveredCode.BUSY:
            return
        if (peer, call_id) in self._out:
            self._fail_out(self._out[(peer, call_id)], Unreachable(peer, reason))
        served = self._in.get((peer, call_id))
        if served is not None and served.answer is None:
            self._cancel_in(served, f"caller unreachable: {reason}")

    def peer_gone(self, peer: str, reason: str) -> None:
        """The link says ``peer`` left: every call with it ends."""
        for out in [o for o in self._out.values() if o.peer == peer]:
            self._fail_out(out, Unreachable(peer, reason))
        for served in [s for s in self._in.values() if s.peer == peer]:
            self._cancel_in(served, reason)

    def link_down(self, reason: str) -> None:
        """The link itself is down: every call ends."""
        for peer in {key[0] for key in (*self._out, *self._in)}:
            self.peer_gone(peer, reason)

    def tick(self, now: float) -> None:
        """Learn the time: retry silent calls, give up on dead ones, drop old answers."""
        for out in list(self._out.values()):
            if now - out.heard_at >= self.idle_timeout:
                self._send(out.peer, out.id, Cancel(out.id))
                error = TransportTimeout(
                    f"device {out.peer[:12]} stopped answering {out.call.kind!r} "
                    f"(nothing for {self.idle_timeout:g} s)"
                )
                self._fail_out(out, error)
            elif now >= out.retry_at:
                self._retry(out, now)
        for served in [s for s in self._running.values() if s.stream]:
            if now - served.heard_at >= self.idle_timeout:
                self._cancel_in(served, f"caller silent for {self.idle_timeout:g} s")
        while self._finished:
            oldest = self._in.get(next(iter(self._finished)))
            assert oldest is not None and oldest.done_at is not None, "finished calls are held"
            if now - oldest.done_at < self.linger:
                break
            self._forget_in(oldest)

    def next_deadline(self) -> float | None:
        """When ``tick`` must next be called, on the monotonic clock (``None``: nothing due)."""
        times = [min(o.retry_at, o.heard_at + self.idle_timeout) for o in self._out.values()]
        times += [s.heard_at + self.idle_timeout for s in self._running.values() if s.stream]
        if self._finished:
            oldest = self._in[next(iter(self._finished))]
            assert oldest.done_at is not None
            times.append(oldest.done_at + self.linger)
        return min(times, default=None)

    # -- handlers: what a responder hears ----------------------------------------------------

    def _on_call(self, peer: str, message: Call, now: float, wall: float) -> None:
        key = (peer, message.id)
        served = self._in.get(key)
        if served is not None:  # a repeated call: it did not hear from us
            served.heard_at = now
            self._resend_from(served, served.acked)
            return
        fresh = self._seen.is_fresh(message.ts, wall)
        if key in self._seen:  # accepted before, and its answer is gone
            self._send(peer, message.id, Failure(message.id, "expired", "answer expired"))
            return
        if not fresh:
            reason = f"call stamped {wall - message.ts:.0f} s from our clock (replay or skew)"
            self._send(peer, message.id, Failure(message.id, "stale", reason))
            return
        if len(self._running) >= self.max_incoming:
            reason = f"device {self.local_id[:12]} is serving {self.max_incoming} calls"
            self._send(peer, message.id, Failure(message.id, "busy", reason))
            return
        self._seen.remember(key, message.ts)
        served = _Incoming(peer, message.id, message.kind, message.stream, now,
                           limit=message.window if message.stream else 0)  # fmt: skip
        self._in[key] = self._running[key] = served
        self._counts["calls_in"] += 1
        self._events.append(
            CallReceived(peer, message.id, message.kind, message.body, message.stream)
        )

    def _on_caller_message(self, peer: str, message: Credit | Cancel, now: float) -> None:
        served = self._in.get((peer, message.id))
        if isinstance(message, Cancel):
            if served is not None:
                self._cancel_in(served, "the caller gave up")
            return
        if served is None:
            if message.resend and (peer, message.id) in self._seen:
                self._send(peer, message.id, Failure(message.id, "expired", "stream expired"))
            return  # else the last acknowledgement of a stream we already forgot
        if not served.stream or message.next > served.sent:
            self._reject(peer, f"credit for chunk {message.next} of {served.sent} sent")
            self.fail(peer, served.id, "protocol_error", "credit out of order", now)
            return
        served.heard_at = now
        self._ack(served, message.next)
        # Never more than MAX_WINDOW ahead of what the caller holds: bounds what we keep.
        served.limit = max(served.limit, min(message.limit, served.acked + MAX_WINDOW))
        if message.resend:
            self._resend_from(served, served.acked)
        if self.can_send_chunk(peer, served.id):
            self._events.append(CreditReceived(peer, served.id))

    # -- handlers: what a caller hears -------------------------------------------------------

    def _on_responder_message(self, peer: str, message: Message, now: float) -> None:
        call_id: int = getattr(message, "id", -1)
        out = self._out.get((peer, call_id))
        if out is None:
            return  # late, duplicated, or for a call we gave up: not an error
        out.heard_at, out.interval = now, self.retry_interval
        out.retry_at = now + out.interval
        if isinstance(message, Failure):
            self._fail_out(out, RemoteError(peer, message.code, message.message))
        elif isinstance(message, Reply):
            if out.call.stream:
                self._break(out, "a reply to a stream")
                return
            del self._out[(peer, call_id)]
            self._events.append(ReplyReceived(peer, call_id, message.body))
        elif not out.call.stream:
            if isinstance(message, Progress):
                out.answered = True
            else:
                self._break(out, f"a {message_name(message)} to a call that does not stream")
        elif isinstance(message, Chunk):
            self._on_chunk(out, message)
        elif isinstance(message, End):
            if message.count < out.next or message.count > out.granted:
                self._break(out, f"end after {message.count} chunks, {out.next} received")
                return
            out.answered, out.count = True, message.count
            self._maybe_ended(out)
        elif isinstance(message, Progress):
            out.answered = True
            if message.sent > out.next:
                self._ask_resend(out)

    def _on_chunk(self, out: _Outgoing, message: Chunk) -> None:
        out.answered = True
        if message.n >= out.granted or (out.count is not None and message.n >= out.count):
            self._break(out, f"chunk {message.n} beyond the {out.granted} granted")
        elif message.n > out.next:
            self._ask_resend(out)  # a gap: go back to the first one missing
        elif message.n == out.next:
            out.next += 1
            self._events.append(ChunkReceived(out.peer, out.id, message.data))
            self._maybe_ended(out)
        # else: a duplicate

    def _maybe_ended(self, out: _Outgoing) -> None:
        if out.count is None:
            return
        if out.next == out.count:
            del self._out[(out.peer, out.id)]
            self._send(out.peer, out.id, Cancel(out.id))  # all held: the responder may forget
            self._events.append(StreamEnded(out.peer, out.id))
        else:
            self._ask_resend(out)

    def _ask_resend(self, out: _Outgoing) -> None:
        if out.asked_from != out.next:  # once per hole; the retry timer asks again
            out.asked_from = out.next
            self._send(out.peer, out.id, Credit(out.id, out.next, out.granted, resend=True))

    # -- internals ---------------------------------------------------------------------------

    def _send(self, peer: str, call_id: int, message: Message) -> None:
        self._queue.append((peer, call_id, encode_message(message)))

    def _retry(self, out: _Outgoing, now: float) -> None:
        self._counts["resent"] += 1
        if not out.answered:
            self._send(out.peer, out.id, out.call)
        elif out.call.stream:
            out.asked_from = out.next
            self._send(out.peer, out.id, Credit(out.id, out.next, out.granted, resend=True))
        else:  # a long-running call: ask again (the responder answers with Progress)
            self._send(out.peer, out.id, out.call)
        out.interval = min(out.interval * 2, self.max_retry_interval)
        out.retry_at = now + out.interval

    def _resend_from(self, served: _Incoming, start: int) -> None:
        # Everything held from ``start`` on, then the answer; or Progress if nothing is due.
        resent = 0
        for offset, data in enumerate(served.held):
            n = served.acked + offset
            if n >= start:
                self._send(served.peer, served.id, Chunk(served.id, n, data))
                resent += 1
        if served.answer is not None:
            self._send(served.peer, served.id, served.answer)
            resent += 1
        elif not resent:
            self._send(served.peer, served.id, Progress(served.id, served.sent))
        self._counts["resent"] += resent

    def _ack(self, served: _Incoming, upto: int) -> None:
        while served.acked < upto and served.held:
            data = served.held.popleft()
            served.held_bytes -= len(data)
            self._held_bytes -= len(data)
            served.acked += 1
        served.acked = max(served.acked, upto)

    def _serving(self, peer: str, call_id: int) -> _Incoming | None:
        served = self._in.get((peer, call_id))
        return served if served is not None and served.answer is None else None

    def _finish(self, served: _Incoming, answer: Message, now: float) -> None:
        key = (served.peer, served.id)
        served.answer, served.done_at = answer, now
        del self._running[key]
        self._send(served.peer, served.id, answer)
        size = len(getattr(answer, "body", b"")) + len(getattr(answer, "message", ""))
        self._finished[key] = size
        self._cached_bytes += size
        while self._cached_bytes > self.max_cached_bytes:
            self._forget_in(self._in[next(iter(self._finished))])

    def _forget_in(self, served: _Incoming) -> None:
        key = (served.peer, served.id)
        self._in.pop(key, None)
        self._running.pop(key, None)
        self._cached_bytes -= self._finished.pop(key, 0)
        self._held_bytes -= served.held_bytes
        served.held.clear()
        served.held_bytes = 0

    def _cancel_in(self, served: _Incoming, reason: str) -> None:
        was_running = served.answer is None
        self._forget_in(served)
        if was_running:
            self._events.append(CallCancelled(served.peer, served.id, reason))

    def _fail_out(self, out: _Outgoing, error: SwitchboardError) -> None:
        if self._out.pop((out.peer, out.id), None) is not None:
            self._events.append(CallFailed(out.peer, out.id, error))

    def _break(self, out: _Outgoing, what: str) -> None:
        reason = f"device {out.peer[:12]} sent {what}"
        self._reject(out.peer, reason)
        self._send(out.peer, out.id, Cancel(out.id))
        self._fail_out(out, RemoteProtocolError(reason))

    def _reject(self, peer: str, reason: str) -> None:
        self._counts["rejected"] += 1
        self._events.append(MessageRejected(peer, reason))
