"""Two ``Channel``s paired in memory over a scripted faulty link, on a virtual clock.

Nothing here is a mock: a ``Channel``'s real input is opened messages, so the link passes the
very bytes one channel produced to the other (h11's ``ConnectionPair``). It can drop, duplicate
and reorder messages, by script (a predicate over what is sent) or at random from a seeded
``random.Random``. The responder side plays a feature: ``echo`` replies with the body upper-
cased; ``count`` streams ``int(body)`` chunks of ``CHUNK`` bytes, pulled only while the window
allows; ``slow`` is left for the test to answer. The caller side consumes what arrives
unless ``consuming`` is off.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from switchboard.proto.calls import (
    AnyMessage,
    CallCancelled,
    CallFailed,
    CallReceived,
    ChunkReceived,
    CreditReceived,
    MessageRejected,
    ReplyReceived,
    StreamEnded,
    decode_message,
)
from switchboard.proto.channel import Channel, Side

A, B = "device-a", "device-b"
CHUNK = 1000
WALL0 = 1_700_000_000.0


def chunk_data(n: int) -> bytes:
    """The ``n``-th chunk ``count`` streams: recognisable, so order and content are checked."""
    return n.to_bytes(4, "big") * (CHUNK // 4)


@dataclass
class Outcome:
    """What the caller learnt of one call."""

    reply: bytes | None = None
    chunks: list[bytes] = field(default_factory=list)
    ended: bool = False
    error: Exception | None = None


Fault = Callable[[str, AnyMessage], bool]  # (sender, message) -> drop it?


@dataclass
class ChannelPair:
    """A caller ``a`` and a responder ``b`` (either may also play the other part)."""

    a: Channel = field(default_factory=lambda: Channel(A))
    b: Channel = field(default_factory=lambda: Channel(B))
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    drop_if: Fault | None = None
    consuming: bool = True  # False: the caller's application takes nothing (a slow one)
    now: float = 0.0
    wall: float = WALL0
    cut: bool = False

    outcomes: dict[int, Outcome] = field(default_factory=dict)
    served: dict[int, int] = field(default_factory=dict)  # responder: call -> chunks to go
    runs: dict[int, int] = field(default_factory=dict)  # responder: times each call ran
    cancelled: list[CallCancelled] = field(default_factory=list)
    rejected: list[MessageRejected] = field(default_factory=list)
    wire: list[tuple[str, str, int, bytes]] = field(default_factory=list)  # everything sent
    unconsumed: dict[int, int] = field(default_factory=dict)
    max_unconsumed: int = 0
    _flight: list[tuple[str, str, int, bytes]] = field(default_factory=list)
    _next_id: int = 1

    def channel(self, name: str) -> Channel:
        """The channel of device ``name``."""
        return self.a if name == A else self.b

    # -- the caller --------------------------------------------------------------------------

    def call(self, kind: str, body: bytes = b"", *, stream: bool = False) -> int:
        """Start a call of ``b`` by ``a``; return its id."""
        call_id = self._next_id
        self._next_id += 1
        self.outcomes[call_id] = Outcome()
        self.a.call(B, call_id, kind, body, now=self.now, wall=self.wall, stream=stream)
        return call_id

    # -- running -----------------------------------------------------------------------------

    def step(self) -> bool:
        """Collect output, deliver what is in flight, react; return whether anything moved."""
        moved = self._collect()
        flight, self._flight = self._flight, []
        if self.reorder and len(flight) > 1 and self.rng.random() < self.reorder:
            self.rng.shuffle(flight)
        for src, dst, ref, data in flight:
            self.channel(dst).receive(src, ref, data, self.now, self.wall)
            moved = True
        moved = self._react() or moved
        return self._collect() or moved

    def run(self, max_seconds: float = 120.0) -> None:
        """Run until nothing is in flight and no timer is due within ``max_seconds``."""
        deadline = self.now + max_seconds
        while True:
            while self.step():
                pass
            due = [t for t in (self.a.next_deadline(), self.b.next_deadline()) if t is not None]
            if not due or min(due) > deadline:
                return
            self.advance(max(0.0, min(due) - self.now))
            self.a.tick(self.now)
            self.b.tick(self.now)

    def advance(self, seconds: float) -> None:
        """Move both clocks on."""
        self.now += seconds
        self.wall += seconds

    # -- internals ---------------------------------------------------------------------------

    def _collect(self) -> bool:
        moved = False
        for src, channel in ((A, self.a), (B, self.b)):
            for dst, ref, data in channel.messages_to_send():
                moved = True
                self.wire.append((src, dst, ref, data))
                if self.cut or self.rng.random() < self.loss:
                    continue
                if self.drop_if is not None and self.drop_if(src, decode_message(data)):
                    continue
                self._flight.append((src, dst, ref, data))
                if self.rng.random() < self.duplicate:
                    self._flight.append((src, dst, ref, data))
        return moved

    def _react(self) -> bool:
        moved = False
        for event in self.b.events_received() + self.a.events_received():
            moved = True
            self._on(event)
        moved = self._produce() or moved
        return self._consume() or moved

    def _on(self, event: object) -> None:
        if isinstance(event, CallReceived):
            self.runs[event.id] = self.runs.get(event.id, 0) + 1
            if event.kind == "echo":
                self.b.reply(event.peer, event.id, event.body.upper(), self.now)
            elif event.kind == "count":
                self.served[event.id] = int(event.body)
            elif event.kind == "slow":
                pass  # the test answers it, when it likes
            else:
                self.b.fail(event.peer, event.id, "not_found", f"no {event.kind}", self.now)
        elif isinstance(event, CallCancelled):
            self.cancelled.append(event)
            self.served.pop(event.id, None)
        elif isinstance(event, ReplyReceived):
            self.outcomes[event.id].reply = event.body
        elif isinstance(event, ChunkReceived):
            self.outcomes[event.id].chunks.append(event.data)
            self.unconsumed[event.id] = self.unconsumed.get(event.id, 0) + 1
            self.max_unconsumed = max(self.max_unconsumed, self.unconsumed[event.id])
        elif isinstance(event, StreamEnded):
            self.outcomes[event.id].ended = True
        elif isinstance(event, CallFailed):
            self.outcomes.setdefault(event.id, Outcome()).error = event.error
        elif isinstance(event, MessageRejected):
            self.rejected.append(event)
        else:
            assert isinstance(event, CreditReceived)

    def _produce(self) -> bool:
        moved = False
        for call_id, total in list(self.served.items()):
            if not self.b.has_call(A, call_id, side=Side.RESPONDER):
                del self.served[call_id]
                continue
            while self.b.can_send_chunk(A, call_id) and self._sent(call_id) < total:
                self.b.send_chunk(A, call_id, chunk_data(self._sent(call_id)))
                moved = True
            if self._sent(call_id) >= total:
                self.b.end(A, call_id, self.now)
                del self.served[call_id]
                moved = True
        return moved

    def _sent(self, call_id: int) -> int:
        return self.b._in[(A, call_id)].sent  # the responder's own count

    def _consume(self) -> bool:
        moved = False
        if not self.consuming:
            return False
        for call_id, waiting in list(self.unconsumed.items()):
            if waiting:
                self.unconsumed[call_id] = 0
                self.a.consume(B, call_id, waiting)
                moved = True
        return moved
