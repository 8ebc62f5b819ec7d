"""Sessions paired in memory: a scripted faulty link, a log holder and ``SessionPair``.

Nothing here is a mock: a ``SyncSession``'s real input is frames, so the link passes the very
bytes one session produced to the other (h11 ``tests/helpers.py`` ``ConnectionPair``). The link
can drop, duplicate, reorder or cut frames on demand. ``LogHolder`` plays the daemon or the
relay: it keeps envelopes per origin in order (``cursors.classify`` decides), answers ``Have``
with what the peer lacks, stores and acks batches, asks again with ``Have`` after a gap, and
forwards what it newly stored to its other sessions (the relay's hub pattern).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from switchboard.crypto import public_bytes
from switchboard.errors import ByeCode
from switchboard.events import Event, decode_event, encode_event
from switchboard.ids import device_id_from_public_key
from switchboard.keyring import Keyring
from switchboard.proto.cursors import Placement, classify
from switchboard.proto.frames import Envelope
from switchboard.proto.session import (
    BatchReceived,
    Closed,
    Established,
    HaveReceived,
    HelloReceived,
    Role,
    SessionEvent,
    SyncSession,
)

GROUP = "testgroup"
SECRET = bytes(range(32))
KEYS = Keyring.single(GROUP, SECRET)
OTHER_KEYS = Keyring.single(GROUP, bytes(range(1, 33)))


def private_key(label: str) -> Ed25519PrivateKey:
    """Return a deterministic Ed25519 key for ``label``."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


def device_id(label: str) -> str:
    """Return the device id of the deterministic key for ``label``."""
    return device_id_from_public_key(public_bytes(private_key(label)))


RELAY_IDENTITY = private_key("relay")
RELAY_ID = device_id("relay")

_nonce_counter: Iterator[int] = itertools.count()


def fresh_nonce() -> bytes:
    """Return 32 bytes never returned before in this process (the adapter's random source)."""
    return hashlib.sha256(b"nonce %d" % next(_nonce_counter)).digest()


def client_session(
    identity: Ed25519PrivateKey | None = None,
    *,
    now: float = 0.0,
    keys: Keyring = KEYS,
    **kwargs: object,
) -> SyncSession:
    """Return a client session of ``keys``'s group for the device of ``identity``, not started.

    The device id is the one derived from ``identity`` (default: the key labelled "client").
    """
    identity = identity or private_key("client")
    return SyncSession(
        Role.CLIENT,
        device_id_from_public_key(public_bytes(identity)),
        fresh_nonce(),
        now,
        group=keys.group,
        group_auth=keys.auth,
        identity=identity,
        **kwargs,  # type: ignore[arg-type]
    )


def server_session(
    server: str = RELAY_ID,
    *,
    now: float = 0.0,
    identity: Ed25519PrivateKey = RELAY_IDENTITY,
    **kwargs: object,
) -> SyncSession:
    """Return a server session."""
    return SyncSession(Role.SERVER, server, fresh_nonce(), now, identity=identity, **kwargs)  # type: ignore[arg-type]


# -- the link ----------------------------------------------------------------------------------


@dataclass
class Wire:
    """Frames in flight in one direction, then possibly the end of the stream."""

    frames: list[bytes] = field(default_factory=list)
    eof: bool = False  # the end of the stream is in flight, after the frames
    ended: bool = False  # the sender closed: nothing more enters this wire

    def __bool__(self) -> bool:
        return bool(self.frames) or self.eof


UP = "up"  # client -> server
DOWN = "down"  # server -> client


class ScriptedLink:
    """Two one-way wires between a client session and a server session, with faults on demand.

    The link moves whatever a session queued into the wire towards the other side. When a
    session expects to be closed (``close_expected()``), its wire ends with an EOF after its
    last frame, as a real adapter closes the transport after writing the ``Bye``.
    """

    def __init__(self, client: Endpoint, server: Endpoint) -> None:
        self.ends = {UP: (client, server), DOWN: (server, client)}
        self.wires = {UP: Wire(), DOWN: Wire()}
        self.is_cut = False
        self.lost = 0  # frames dropped while the sessions were alive

    @property
    def client(self) -> SyncSession:
        return self.ends[UP][0].session

    @property
    def server(self) -> SyncSession:
        return self.ends[UP][1].session

    @property
    def is_dead(self) -> bool:
        """Both sessions are closed and nothing is left in flight."""
        return (
            self.client.close_expected()
            and self.server.close_expected()
            and not (self.wires[UP] or self.wires[DOWN])
        )

    @property
    def is_quiet(self) -> bool:
        return not (self.wires[UP] or self.wires[DOWN])

    def collect(self) -> None:
        """Move every queued frame from both sessions onto the wires."""
        for direction, (source, _) in self.ends.items():
            frames = source.session.frames_to_send()
            wire = self.wires[direction]
            if self.is_cut or wire.ended:
                continue
            wire.frames.extend(frames)
            if source.session.close_expected():
                wire.eof = wire.ended = True

    def deliver(self, direction: str, index: int = 0) -> bool:
        """Hand the frame at ``index`` (or the EOF once no frame is left) to its receiver."""
        wire = self.wires[direction]
        target = self.ends[direction][1]
        if wire.frames:
            data = wire.frames.pop(index % len(wire.frames))
            target.session.receive_frame(data)
        elif wire.eof:
            wire.eof = False
            target.session.receive_eof()
        else:
            return False
        target.holder.react(target.session)
        return True

    def drop(self, direction: str, index: int = 0) -> bool:
        """Lose one frame in flight."""
        wire = self.wires[direction]
        if not wire.frames:
            return False
        wire.frames.pop(index % len(wire.frames))
        self.lost += 1
        return True

    def duplicate(self, direction: str, index: int = 0) -> bool:
        """Deliver one frame in flight twice (the copy follows the original)."""
        wire = self.wires[direction]
        if not wire.frames:
            return False
        index %= len(wire.frames)
        wire.frames.insert(index + 1, wire.frames[index])
        return True

    def reorder(self, direction: str, index: int = 0) -> bool:
        """Move one frame in flight behind all the others."""
        wire = self.wires[direction]
        if len(wire.frames) < 2:
            return False
        wire.frames.append(wire.frames.pop(index % len(wire.frames)))
        return True

    def cut(self) -> None:
        """Break the connection: everything in flight is lost and both sides see EOF."""
        self.is_cut = True
        for direction, (_, target) in self.ends.items():
            self.wires[direction] = Wire(ended=True)
            target.session.receive_eof()
            target.holder.react(target.session)


# -- the log holder ----------------------------------------------------------------------------


@dataclass
class Endpoint:
    """One session and the log holder that drives it."""

    holder: LogHolder
    session: SyncSession


class LogHolder:
    """A device's or a relay's log of envelopes, playing the daemon or relay side of sessions.

    Args:
        name: label for deterministic keys and ids.
        keys: the group keys of a device; ``None`` for a relay, which never opens envelopes.
        registered: server side: group id -> group auth public key it accepts.
    """

    def __init__(
        self,
        name: str,
        *,
        keys: Keyring | None = KEYS,
        registered: dict[str, bytes] | None = None,
    ) -> None:
        self.name = name
        self.identity = private_key(name)
        self.id = device_id(name)
        self.keys = keys
        self.registered = {GROUP: KEYS.auth_public} if registered is None else registered
        self.log: dict[str, list[Envelope]] = {}
        self.plain: dict[str, list[Event]] = {}  # devices only: the opened events
        self.sessions: list[SyncSession] = []
        self.established: set[int] = set()  # id() of sessions past the handshake
        self.seen: list[tuple[SyncSession, SessionEvent]] = []
        self.gaps = 0

    @classmethod
    def relay(cls, name: str = "relay") -> LogHolder:
        """Return a relay: it stores and forwards envelopes it cannot open."""
        return cls(name, keys=None)

    # -- the log -------------------------------------------------------------------------------

    def vector(self) -> dict[str, int]:
        """Per origin, the highest seq held (contiguously from 1)."""
        return {origin: len(envs) for origin, envs in self.log.items() if envs}

    def since(self, vector: dict[str, int]) -> list[Envelope]:
        """Every held envelope beyond ``vector``, in per-origin order."""
        return [env for origin, envs in self.log.items() for env in envs[vector.get(origin, 0) :]]

    def append(self, text: str) -> Envelope:
        """Write a new local event, seal it, and offer it to every open session."""
        assert self.keys is not None, "a relay writes no events"
        seq = len(self.log.get(self.id, [])) + 1
        event = Event(
            origin=self.id,
            seq=seq,
            ts="2025-01-01T00:00:00.000Z",
            type="message_posted",
            agent="luna",
            data={"text": text},
        )
        env = self.keys.seal(self.id, seq, encode_event(event))
        self.log.setdefault(self.id, []).append(env)
        self.plain.setdefault(self.id, []).append(event)
        for session in self.sessions:
            if session.is_open:
                session.offer([env])
        return env

    def receive(self, envelopes: tuple[Envelope, ...]) -> list[Envelope]:
        """Store the new envelopes in order; return them. Counts gaps in ``self.gaps``."""
        new = []
        for env in envelopes:
            placement = classify(self.vector(), env.origin, env.seq)
            if placement is Placement.GAP:
                self.gaps += 1
            if placement is not Placement.NEW:
                continue
            if self.keys is not None:
                event = decode_event(self.keys.open(env))
                assert event.key == (env.origin, env.seq)
                self.plain.setdefault(env.origin, []).append(event)
            self.log.setdefault(env.origin, []).append(env)
            new.append(env)
        return new

    # -- the adapter's reactions ---------------------------------------------------------------

    def attach(self, session: SyncSession) -> None:
        self.sessions.append(session)

    def react(self, session: SyncSession) -> None:
        """Drain ``session``'s events and act on them as a daemon or relay would."""
        for event in session.events_received():
            self.seen.append((session, event))
            self._handle(session, event)

    def _handle(self, session: SyncSession, event: SessionEvent) -> None:
        if isinstance(event, HelloReceived):
            key = self.registered.get(event.group)
            if key is None:
                session.reject(ByeCode.UNKNOWN_GROUP, f"unknown group {event.group[:40]}")
            else:
                session.accept_hello(key)
        elif isinstance(event, Established):
            self.established.add(id(session))
            if session.role is Role.SERVER:
                others = self._open_others(session)
                session.send_welcome(s.peer for s in others)
                for other in others:
                    other.send_presence(session.peer, True)
            session.send_have(self.vector())
        elif isinstance(event, HaveReceived):
            session.offer(self.since(event.vector))
        elif isinstance(event, BatchReceived):
            gaps_before = self.gaps
            new = self.receive(event.envelopes)
            session.send_ack(self.vector())
            if self.gaps > gaps_before:
                session.send_have(self.vector())
            for other in self._open_others(session):
                other.offer(new)
        elif isinstance(event, Closed) and id(session) in self.established:
            self.established.discard(id(session))
            if session.role is Role.SERVER:
                for other in self._open_others(session):
                    if other.role is Role.SERVER:
                        other.send_presence(session.peer, False)

    def _open_others(self, session: SyncSession) -> list[SyncSession]:
        return [s for s in self.sessions if s is not session and s.is_open]

    def events_of(self, kind: type) -> list[object]:
        """Every session event of type ``kind`` this holder saw, in order."""
        return [event for _, event in self.seen if isinstance(event, kind)]


# -- many links --------------------------------------------------------------------------------


class Network:
    """Log holders joined by scripted links, with one shared clock."""

    def __init__(self) -> None:
        self.clock = 0.0
        self.links: list[ScriptedLink] = []

    def connect(
        self, client: LogHolder, server: LogHolder, *, start: bool = True, **client_kwargs: object
    ) -> ScriptedLink:
        """Open a new connection from ``client`` to ``server`` (new sessions on both ends)."""
        keys = client.keys or KEYS
        csession = client_session(client.identity, now=self.clock, keys=keys, **client_kwargs)
        ssession = server_session(server.id, now=self.clock, identity=server.identity)
        client.attach(csession)
        server.attach(ssession)
        link = ScriptedLink(Endpoint(client, csession), Endpoint(server, ssession))
        self.links.append(link)
        if start:
            csession.start()
            self.flush()
        return link

    def reconnect(self, link: ScriptedLink) -> ScriptedLink:
        """Replace a link by a fresh connection between the same two holders."""
        if not link.is_cut:
            link.cut()
        client, server = link.ends[UP][0].holder, link.ends[UP][1].holder
        index = self.links.index(link)
        self.links.pop(index)
        fresh = self.connect(client, server)
        self.links.remove(fresh)
        self.links.insert(index, fresh)
        return fresh

    def flush(self) -> None:
        """Move every session's queued frames onto the wires."""
        for link in self.links:
            link.collect()

    def tick(self, dt: float) -> None:
        """Advance the clock and let every session learn the time."""
        self.clock += dt
        for link in self.links:
            for endpoint, _ in link.ends.values():
                endpoint.session.tick(self.clock)
                endpoint.holder.react(endpoint.session)
        self.flush()

    def step(self) -> bool:
        """Deliver the oldest frame on the first busy wire; return whether anything moved."""
        self.flush()
        for link in self.links:
            for direction in (UP, DOWN):
                if link.deliver(direction):
                    self.flush()
                    return True
        return False

    def pump(self, max_steps: int = 100_000) -> int:
        """Deliver everything in order until no frame is in flight; return the steps taken."""
        for steps in range(max_steps):
            if not self.step():
                return steps
        raise AssertionError(f"no quiescence after {max_steps} frames: a livelock")


class SessionPair:
    """A client and a server session joined by one scripted link (h11 ``ConnectionPair``).

    By default the client is a device and the server a relay, each driven by a ``LogHolder``.
    """

    def __init__(
        self,
        client: LogHolder | None = None,
        server: LogHolder | None = None,
        *,
        start: bool = True,
        **client_kwargs: object,
    ) -> None:
        self.network = Network()
        self.client_holder = client or LogHolder("device-a")
        self.server_holder = server or LogHolder.relay()
        self.link = self.network.connect(
            self.client_holder, self.server_holder, start=start, **client_kwargs
        )

    @property
    def client(self) -> SyncSession:
        return self.link.client

    @property
    def server(self) -> SyncSession:
        return self.link.server

    def pump(self) -> int:
        """Deliver everything in flight, in order."""
        return self.network.pump()

    def reconnect(self) -> None:
        """Cut the link and open a new connection between the same holders."""
        self.link = self.network.reconnect(self.link)
