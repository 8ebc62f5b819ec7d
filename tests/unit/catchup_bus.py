"""Devices running ``CatchUp`` over an in-memory broker with faults on demand.

This is the MQTT link (``links.mqtt``) with the broker and the store replaced by dictionaries,
nothing else: each ``BusDevice`` keeps a log per origin (``cursors.classify`` decides what is
new, a duplicate or after a gap), publishes its own events live on ``ev``, and does what its
``CatchUp`` says (``Have`` on ``have``, answers on ``to/<asker>``). The ``Bus`` plays a broker
with persistent sessions: every subscriber has an inbox that fills while it is away, presence
is retained, and a connection that breaks publishes its last will (offline). Messages in an
inbox can be dropped, duplicated or reordered; connections can be cut; devices can restart
(their ``CatchUp`` and what they had not saved are lost, their log is not).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from switchboard.proto.catchup import CatchUp, SendAnswer, SendHave
from switchboard.proto.cursors import Placement, classify

Kind = Literal["ev", "to", "have", "presence"]
Events = tuple[tuple[str, int], ...]  # (origin, seq) of each event of a batch


@dataclass(frozen=True)
class Message:
    """One message in a subscriber's inbox."""

    kind: Kind
    sender: str
    payload: Events | dict[str, int] | bool


CHUNK = 3  # events per published batch (the link's CHUNK_EVENTS, small to exercise chunking)
MAX_ANSWER = 8  # events per answer (the link's MAX_ANSWER): the asker's next Have asks for more


@dataclass
class BusDevice:
    """One device: its log, its live publishing, and its ``CatchUp``."""

    name: str
    bus: Bus
    log: dict[str, list[int]] = field(default_factory=dict)
    written: int = 0
    published: int = 0  # our last seq the broker acknowledged
    saved_published: int = 0  # ... as last saved (a restart starts from here)
    connected: bool = False
    gaps: int = 0
    core: CatchUp = field(init=False)

    def __post_init__(self) -> None:
        self.core = self.new_core()

    def new_core(self) -> CatchUp:
        return CatchUp(self.name, self.bus.clock, self.bus.rng.uniform)

    # -- the log ---------------------------------------------------------------------------------

    def vector(self) -> dict[str, int]:
        return {origin: len(seqs) for origin, seqs in self.log.items() if seqs}

    def since(self, bound: dict[str, int], limit: int) -> list[tuple[str, int]]:
        """Held events beyond ``bound``, per origin in order, at most ``limit``."""
        out = [
            (origin, seq)
            for origin in sorted(self.log)
            for seq in self.log[origin][bound.get(origin, 0) :]
        ]
        return out[:limit]

    def store(self, events: Events) -> int:
        """Store what is new; return how many were dropped for a gap."""
        gaps = 0
        for origin, seq in events:
            placement = classify(self.vector(), origin, seq)
            if placement is Placement.NEW:
                self.log.setdefault(origin, []).append(seq)
            elif placement is Placement.GAP:
                gaps += 1
        self.gaps += gaps
        return gaps

    def append(self, count: int) -> None:
        """Write ``count`` events of our own; publish them if connected."""
        for _ in range(count):
            self.written += 1
            self.log.setdefault(self.name, []).append(self.written)
        self.publish_own()

    # -- the link --------------------------------------------------------------------------------

    def publish_own(self) -> None:
        """Publish our events after ``published``, in chunks (the link's publish loop)."""
        if not self.connected:
            return
        pending = self.log.get(self.name, [])[self.published :]
        for start in range(0, len(pending), CHUNK):
            chunk = tuple((self.name, seq) for seq in pending[start : start + CHUNK])
            self.bus.publish(self, "ev", chunk)
            self.published = chunk[-1][1]

    def save(self) -> None:
        """Save ``published`` (the link does at most once a second)."""
        self.saved_published = self.published

    def connect(self) -> None:
        """Connect: subscribe (retained presence arrives), announce ourselves, catch up."""
        self.connected = True
        self.core.connect(self.bus.clock)
        for other, online in self.bus.retained.items():
            if other != self.name:
                self.bus.inboxes[self.name].append(Message("presence", other, online))
        self.bus.publish(self, "presence", True)
        self.publish_own()
        self.act()

    def cut(self) -> None:
        """The connection breaks: the broker publishes our last will."""
        self.connected = False
        self.bus.publish(self, "presence", False)

    def restart(self) -> None:
        """The device restarts: what it held in memory is gone; its log is not."""
        if self.connected:
            self.cut()
        self.core = self.new_core()
        self.published = self.saved_published

    def receive(self, message: Message) -> None:
        """Handle one message from the inbox (the link's ``_on_message``)."""
        now, core = self.bus.clock, self.core
        if message.kind == "presence":
            assert isinstance(message.payload, bool)
            core.receive_presence(message.sender, message.payload)
        elif message.kind == "have":
            assert isinstance(message.payload, dict)
            core.receive_have(message.sender, message.payload, self.vector(), now)
        else:
            assert isinstance(message.payload, tuple)
            gaps = self.store(message.payload)
            core.receive_batch(answer=message.kind == "to", gaps=gaps > 0, now=now)
        self.act()

    def tick(self) -> None:
        self.core.tick(self.bus.clock, self.vector())
        self.act()

    def act(self) -> None:
        """Do what the core asks (the link's catch-up loop)."""
        for action in self.core.actions_to_take():
            if isinstance(action, SendHave):
                self.bus.publish(self, "have", self.vector())
            elif isinstance(action, SendAnswer):
                self.answer(action)

    def answer(self, action: SendAnswer) -> None:
        bound = {**self.vector(), **action.want}
        events = self.since(bound, MAX_ANSWER)
        for start in range(0, len(events), CHUNK):
            chunk = tuple(events[start : start + CHUNK])
            self.bus.publish(self, "to", chunk, to=action.device)
            sent: dict[str, int] = {}
            for origin, seq in chunk:
                sent[origin] = max(seq, sent.get(origin, 0))
            self.core.answer_sent(action.device, sent, self.bus.clock)
        self.core.answer_done(action.device)


class Bus:
    """An MQTT broker in memory, with persistent sessions, retained presence and faults."""

    def __init__(self, names: list[str], seed: int = 0) -> None:
        self.clock = 0.0
        self.rng = random.Random(seed)
        self.inboxes: dict[str, list[Message]] = {name: [] for name in names}
        self.retained: dict[str, bool] = {}
        self.devices = {name: BusDevice(name, self) for name in names}
        self.lost = 0
        self.sent: list[tuple[str, Message]] = []  # (target, message) of every publish

    def publish(
        self, sender: BusDevice, kind: Kind, payload: object, to: str | None = None
    ) -> None:
        """Queue a message for every subscriber but its sender (MQTT 5 No Local)."""
        if not sender.connected and kind != "presence":
            return  # a last will is the broker's; anything else needs a connection
        message = Message(kind, sender.name, payload)  # type: ignore[arg-type]
        if kind == "presence":
            self.retained[sender.name] = bool(payload)
        targets = [to] if to is not None else [n for n in self.inboxes if n != sender.name]
        for target in targets:
            self.inboxes[target].append(message)
            self.sent.append((target, message))

    # -- moving messages -------------------------------------------------------------------------

    def deliver(self, name: str, index: int = 0) -> bool:
        """Hand one message of ``name``'s inbox to it (if it is connected)."""
        inbox, device = self.inboxes[name], self.devices[name]
        if not inbox or not device.connected:
            return False
        device.receive(inbox.pop(index % len(inbox)))
        return True

    def drop(self, name: str, index: int = 0) -> bool:
        inbox = self.inboxes[name]
        if not inbox:
            return False
        inbox.pop(index % len(inbox))
        self.lost += 1
        return True

    def duplicate(self, name: str, index: int = 0) -> bool:
        inbox = self.inboxes[name]
        if not inbox:
            return False
        index %= len(inbox)
        inbox.insert(index + 1, inbox[index])
        return True

    def reorder(self, name: str, index: int = 0) -> bool:
        inbox = self.inboxes[name]
        if len(inbox) < 2:
            return False
        inbox.append(inbox.pop(index % len(inbox)))
        return True

    def pump(self, max_steps: int = 100_000) -> int:
        """Deliver everything in order to connected devices until nothing moves."""
        for steps in range(max_steps):
            if not any(self.deliver(name) for name in self.inboxes):
                return steps
        raise AssertionError(f"no quiescence after {max_steps} messages: a livelock")

    # -- time ------------------------------------------------------------------------------------

    def advance(self, dt: float) -> None:
        """Move the clock by ``dt``, ticking each connected device when its deadline comes."""
        target = self.clock + dt
        for _ in range(10_000):
            due = [
                (device.core.next_deadline(), name)
                for name, device in self.devices.items()
                if device.connected
            ]
            if not due or min(due)[0] > target:
                break
            at, name = min(due)
            self.clock = max(self.clock, at)
            self.devices[name].tick()
        else:
            raise AssertionError("deadlines do not advance: a timer livelock")
        self.clock = target

    def settle(self, seconds: float, step: float = 0.25) -> None:
        """Let ``seconds`` pass in steps, delivering everything after each."""
        self.pump()
        for _ in range(int(seconds / step)):
            self.advance(step)
            self.pump()
