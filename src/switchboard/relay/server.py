"""``Relay``: the embedded relay. It authenticates devices per group, stores sealed envelopes
for offline devices and forwards them live. It never sees plaintext.

Theory of operation
-------------------
The relay follows ``docs/internals.md`` ("Relay"). Each connection runs a server-side
``SyncSession`` driven by the handler's receive loop, which feeds frames in and acts on what
the session reports, and by the connection's ``send_loop`` (``relay.connection``), the only
writer, a task only while it has something to do. Decisions the contract leaves open:

- A Hello is answered with a Challenge for the group key *it offers*, and that key is compared
  with the group's registered one only once the client proved it holds both it and its device
  key. So the relay says "wrong group secret" only to a client that proved its device key, and
  failures can be charged to that device (``relay.limits``): nobody learns anything about the
  secret while claiming a device whose key they lack, and nobody can lock out another's device.
  The cost is one signature and one check for a wrong-secret client, bounded by the handshake
  caps below.
- A Hello asking to create an unknown group is accepted with the key it offers, and the group
  is registered (trust on first use) only once the client *proved* it holds that key, so
  nobody can squat a group id with a Hello alone.
- Rate-limit refusals answer the Hello, so a client always gets a reason code.
- Handshakes are bounded three ways, so stalled ones cannot keep honest devices out: a short
  deadline (``handshake_timeout``), a cap per source address and a global cap. A newcomer is
  never refused for others' handshakes; at a cap the relay *displaces* one in progress instead
  (``Bye(OVERLOADED)``): at the per-source cap, that source's own; at the global cap, one of
  the source with the most in progress. Within a source, handshakes that have not sent a Hello
  go first (an honest client sends it right after the upgrade, so it spends one round trip in
  that state), then the oldest. A flood from one address thus churns its own connections and
  leaves other addresses alone; displacing rather than refusing means a device that gets its
  Hello in is never turned away because stalled connections filled the slots first, and the
  caps still bound the sockets and memory a flood holds (the deadline then only has to catch
  the few that fit under the caps).
- A second connection of one device replaces the first (``relay.registry``).
- A peer is sent nothing until its ``Have``; then it is served from the mailbox round by
  round, and offered new envelopes live only once caught up (``relay.connection``).
- A batch is offered to the group's live peers as soon as it is read, while it is being
  stored, and offered again once stored (the session sends nothing a peer is known to hold, so
  nobody gets it twice). The second offer serves a peer that was catching up meanwhile. Live
  forwarding waits for no disk; what makes forwarding early safe is the ack: the sender hears
  that the relay holds a batch only once it is committed, and a relay that dies before that
  gets it again from the sender on reconnect. Receivers store idempotently, so an envelope
  forwarded but never stored costs nothing.
- All mailbox calls run in order on one thread: the relay's single SQLite writer.
  Batches reach it through one relay-wide store loop (``relay.storing``), not one per
  connection; presence announcements are coalesced (``relay.registry``).
- A connection whose first frame is a rendezvous frame (``proto/pairing.py``) is handed to
  the rendezvous (``relay.rendezvous``): the nameplates where pairing codes meet. Until that
  first frame it is a handshake like any other (caps, deadline); then its session is set
  aside (``Connection.detach``) and the rendezvous owns the transport.
- A ``Direct`` frame (a sealed payload for one device: ``docs/protocol.md`` §9) is forwarded
  to the connection of its recipient in the sender's group and **never stored**: it does not
  touch the mailbox. It is refused with ``Undelivered`` when the recipient is not connected
  (``NOT_CONNECTED``), when its outbox is over ``max_pending_bytes`` (``BUSY``: dropped, the
  channel above resends), and when its ``sender`` is not the device this connection proved
  it is (``FORGED``). The relay cannot open or alter one undetected (``crypto``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl as ssl_module
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from switchboard.config import DEFAULT_RELAY_MAX_AGE, DEFAULT_RELAY_MAX_BYTES
from switchboard.crypto import public_bytes
from switchboard.errors import AuthError, ByeCode, TransportError
from switchboard.ids import device_id_from_public_key
from switchboard.proto.frames import DEFAULT_MAX_FRAME_SIZE, Direct, Envelope, UndeliveredCode
from switchboard.proto.pairing import is_pairing
from switchboard.proto.session import (
    BatchReceived,
    DirectReceived,
    Established,
    HaveReceived,
    HelloReceived,
    Role,
    State,
    SyncSession,
)
from switchboard.relay.connection import DEFAULT_MAX_PENDING_BYTES, Alarms, Connection, Phase
from switchboard.relay.limits import AuthLimiter
from switchboard.relay.mailbox import Mailbox, MailboxThread
from switchboard.relay.registry import Registry
from switchboard.relay.rekeys import apply_rekey
from switchboard.relay.rendezvous import Rendezvous
from switchboard.relay.storing import Storer
from switchboard.transports.base import Listener, Transport

logger = logging.getLogger("switchboard.relay")

# Connections that have not finished authenticating, at once: each costs a signature check
# and a slot; 64 covers a team reconnecting after a relay restart and bounds a flood. At the
# cap a handshake in progress is displaced, never the newcomer refused (module docstring).
DEFAULT_MAX_HANDSHAKES: Final = 64
# The same, per source address: a team behind one NAT reconnecting at once fits (handshakes
# take a round trip or two each); a flood from one address only displaces its own.
DEFAULT_MAX_HANDSHAKES_PER_SOURCE: Final = 16
# Seconds a connection may take from its WebSocket upgrade to the end of the handshake: an
# honest client needs two round trips and a mailbox lookup; a stalled one is dropped after
# this (the session's own default, 10 s, is for links between devices).
DEFAULT_RELAY_HANDSHAKE_TIMEOUT: Final = 5.0
# How often retention runs. Envelopes outlive max_age by at most this much.
DEFAULT_PRUNE_INTERVAL: Final = 600.0
# How long a closing connection may take to write its last frames before it is cut.
DEFAULT_CLOSE_TIMEOUT: Final = 5.0


# Seconds presence announcements wait to go out together (``relay.registry``): short beside
# a human's notice, long enough that devices connecting at once share their writes.
DEFAULT_PRESENCE_DELAY: Final = 0.02
# A round of presence costs one write per connection of the groups it concerns, so the wait
# grows with the connections the last round wrote to (200 us each: a round's writes then take
# a fifth of the time or less), up to half a second: 1,000 devices joining one group cost
# 1,000 writes every 0.2 s, not every 20 ms, and still hear of each other within a blink.
PRESENCE_DELAY_PER_CONNECTION: Final = 200e-6
MAX_PRESENCE_DELAY: Final = 0.5


@dataclass(frozen=True)
class RelayStatistics:
    """Counters of a running relay."""

    connections: int  # open transports, authenticated or not
    devices: int  # authenticated devices online
    groups: int  # groups registered
    envelopes_held: int
    bytes_held: int
    envelopes_stored: int  # accepted since start
    envelopes_forwarded: int  # queued to peers since start
    refused: int  # connections refused (rate limited) since start
    displaced: int  # handshakes in progress closed to make room for newer ones, since start
    handshakes: int  # connections authenticating now
    directs_forwarded: int = 0  # directed frames passed to their recipient since start
    directs_refused: int = 0  # directed frames answered with Undelivered since start


class Relay:
    """The embedded relay. See the module docstring.

    Args:
        data_dir: where the relay keeps ``relay.db``.
        identity: the relay's Ed25519 identity key, which clients pin.
        max_age: seconds an envelope is kept.
        max_bytes: bytes of envelopes kept per group (oldest dropped first).
        max_handshakes: connections allowed to be authenticating at once.
        max_handshakes_per_source: the same, per source address.
        handshake_timeout: seconds a connection may take to authenticate.
        max_frame_size: security limit for incoming frames.
        prune_interval: seconds between retention runs.
        limiter: failed-authentication bookkeeping (default: ``AuthLimiter()``).
        max_pending_bytes: bytes queued for one peer before it is served from the mailbox
            instead of live (see ``relay.connection``).
        clock: wall clock for storage times, retention and rate limiting (tests inject one).
        rendezvous: the nameplates of pairing codes (default: ``Rendezvous(clock=clock)``).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        identity: Ed25519PrivateKey,
        max_age: float = DEFAULT_RELAY_MAX_AGE,
        max_bytes: int = DEFAULT_RELAY_MAX_BYTES,
        max_handshakes: int = DEFAULT_MAX_HANDSHAKES,
        max_handshakes_per_source: int = DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
        handshake_timeout: float = DEFAULT_RELAY_HANDSHAKE_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        prune_interval: float = DEFAULT_PRUNE_INTERVAL,
        limiter: AuthLimiter | None = None,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        clock: Callable[[], float] = time.time,
        rendezvous: Rendezvous | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.rendezvous = rendezvous or Rendezvous(clock=clock)
        self.identity = identity
        self.relay_id = device_id_from_public_key(public_bytes(identity))
        self.max_age = max_age
        self.max_bytes = max_bytes
        assert max_handshakes >= 1 and max_handshakes_per_source >= 1 and handshake_timeout > 0
        self.max_handshakes = max_handshakes
        self.max_handshakes_per_source = max_handshakes_per_source
        self.handshake_timeout = handshake_timeout
        self.max_frame_size = max_frame_size
        self.prune_interval = prune_interval
        self.max_pending_bytes = max_pending_bytes
        self._limiter = limiter or AuthLimiter()
        self._clock = clock
        self._box = MailboxThread(data_dir / "relay.db")
        self._connections: set[Connection] = set()
        self._alarms = Alarms()  # the sessions' deadlines, one timer for all connections
        self._catch_up_round = self._catch_up  # one bound method for every connection
        self._handlers: set[asyncio.Task[None]] = set()
        self._registry = Registry()
        self._registry.on_pending = self._schedule_presence
        self._presence_timer: asyncio.TimerHandle | None = None
        self._presence_delay = DEFAULT_PRESENCE_DELAY
        self._storer = Storer(self._on_batch)
        # Connections authenticating, oldest first (a dict keeps insertion order).
        self._handshakes: dict[Connection, None] = {}
        self._stored = self._forwarded = self._refused = self._displaced = 0
        self._directs_forwarded = self._directs_refused = 0

    # -- life cycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the mailbox (``serve`` does this itself)."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self._box.open()

    async def aclose(self) -> None:
        """Say goodbye to every device, wait for connections to end, close the mailbox."""
        await self._goodbye()
        self._alarms.cancel()
        self._storer.stop()
        await self._box.close()

    async def serve(
        self,
        host: str,
        port: int,
        *,
        ready: Callable[[int], object] | None = None,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        """Serve WebSocket peers on ``host:port`` until cancelled.

        Args:
            host: address to bind.
            port: port to bind (0 picks a free one).
            ready: called with the bound port once the relay accepts connections (pass
                ``future.set_result`` to await it).
            ssl: serve ``wss://`` with these TLS settings.

        Raises:
            TransportError: the address could not be bound.
        """
        from switchboard.transports import websocket  # noqa: PLC0415 - lazy, like connect()

        await self.open()
        pruner = asyncio.create_task(self._prune_loop(), name="switchboard[relay].prune_loop")
        listener: Listener | None = None
        try:
            listener = await websocket.serve(
                self.handle, host, port, ssl=ssl, max_frame_size=self.max_frame_size
            )
            if ready is not None:
                ready(listener.port)
            await asyncio.Event().wait()  # until cancelled
        finally:
            pruner.cancel()
            await self._goodbye()
            if listener is not None:
                await listener.aclose()
            self._alarms.cancel()
            self._storer.stop()
            await self._box.close()

    async def _goodbye(self) -> None:
        # Bye(GOING_AWAY) to every peer, then wait (bounded) for the connections to end.
        for conn in list(self._connections):
            conn.session.send_bye(ByeCode.GOING_AWAY, "relay shutting down")
            conn.flush()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=DEFAULT_CLOSE_TIMEOUT)

    async def prune(self) -> int:
        """Apply retention now; return how many envelopes were dropped."""
        dropped = await self._box.call(
            Mailbox.prune, self._clock(), max_age=self.max_age, max_bytes=self.max_bytes
        )
        if dropped:
            logger.info("= retention dropped %d envelopes", dropped)
        return dropped

    async def _prune_loop(self) -> None:
        while True:
            await self.prune()
            await asyncio.sleep(self.prune_interval)

    def statistics(self) -> RelayStatistics:
        """Return the relay's counters."""
        held = self._box.statistics()
        return RelayStatistics(
            connections=len(self._connections),
            devices=len(self._registry),
            groups=held.groups,
            envelopes_held=held.envelopes,
            bytes_held=held.bytes,
            envelopes_stored=self._stored,
            envelopes_forwarded=self._forwarded + sum(c.forwarded for c in self._connections),
            refused=self._refused,
            displaced=self._displaced,
            handshakes=len(self._handshakes),
            directs_forwarded=self._directs_forwarded,
            directs_refused=self._directs_refused,
        )

    # -- one connection ----------------------------------------------------------------------

    async def handle(self, transport: Transport) -> None:
        """Serve one connection until it ends (``open`` or ``serve`` must have been called)."""
        # One coroutine frame waits per idle device (the receive loop is inline): setting up,
        # acting on what a frame brought and tearing down are helpers that live only meanwhile.
        conn = self._open(transport)
        session = conn.session
        first: bytes | None = None  # the first frame of a rendezvous connection (docstring)
        try:
            while not session.close_expected():
                try:
                    frame = await transport.receive()
                except TransportError:
                    session.receive_eof()
                    break
                if session.state is State.AWAIT_HELLO and is_pairing(frame):
                    self._handshakes.pop(conn, None)
                    conn.detach()
                    first = frame
                    break
                logger.debug("< %s %d bytes", conn.label, len(frame))
                session.receive_frame(frame)
                await self._on_events(conn)
                conn.flush()
        finally:
            await self._close(conn)
        if first is not None:
            await self.rendezvous.serve(transport, first)

    def _open(self, transport: Transport) -> Connection:
        loop = asyncio.get_running_loop()
        session = SyncSession(
            Role.SERVER,
            local_id=self.relay_id,
            nonce=os.urandom(32),
            now=loop.time(),
            identity=self.identity,
            max_frame_size=self.max_frame_size,
            handshake_timeout=self.handshake_timeout,
        )
        conn = Connection(transport, session, self.max_pending_bytes)
        self._make_room(conn.source)
        self._handshakes[conn] = None
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._connections.add(conn)
        conn.start(self._catch_up_round, self._alarms)
        return conn

    async def _on_events(self, conn: Connection) -> None:
        for event in conn.session.events_received():
            if isinstance(event, HelloReceived):
                await self._on_hello(conn, event)
            elif isinstance(event, Established):
                await self._on_established(conn)
            elif isinstance(event, HaveReceived):
                conn.move_to(Phase.CATCHING_UP)
            elif isinstance(event, BatchReceived):
                self._registry.forward(conn, list(event.envelopes))
                await self._storer.put(conn, event.envelopes)
            elif isinstance(event, DirectReceived) and event.frame.recipient == self.relay_id:
                await apply_rekey(self._box, self._registry, conn, event.frame)
            elif isinstance(event, DirectReceived):
                self.route_direct(conn, event.frame)
            # AckReceived: the session tracks it; Closed: handled by _forget.

    async def _close(self, conn: Connection) -> None:
        try:
            with contextlib.suppress(TimeoutError):  # store what was read, then go
                await asyncio.wait_for(self._storer.drain(conn), DEFAULT_CLOSE_TIMEOUT)
            self._storer.forget(conn)
            self._forget(conn)
            await conn.aclose(DEFAULT_CLOSE_TIMEOUT)  # a bug in the send loop raises here
        finally:
            task = asyncio.current_task()
            assert task is not None
            self._handlers.discard(task)

    async def _on_hello(self, conn: Connection, event: HelloReceived) -> None:
        # Refusals answer the Hello (the session's reject() is made for that state), so a
        # client always sees its Hello sent and a Bye with a reason code back.
        if self._limiter.is_refused(conn.source, event.device, self._clock()):
            self._refused += 1
            reason = "too many failed authentications, try again later"
            logger.info("x refused %s: %s", conn.source, reason)
            conn.session.reject(ByeCode.RATE_LIMITED, reason)
            return
        conn.group, conn.device, conn.offered_key = event.group, event.device, event.group_key
        conn.group_key = await self._box.call(Mailbox.lookup_group, event.group)
        if conn.session.close_expected():
            return
        if conn.group_key is None and not event.create:
            conn.session.reject(ByeCode.UNKNOWN_GROUP, "unknown group")
        else:
            # Challenge for the key the client offers; it is compared with the group's once
            # the client proved its device key (module docstring).
            conn.session.accept_hello(event.group_key)

    async def _on_established(self, conn: Connection) -> None:
        expected = conn.group_key
        if expected is None:  # the Hello asked to create the group
            expected = await self._box.call(
                Mailbox.register_group, conn.group, conn.offered_key, self._clock()
            )
            if expected == conn.offered_key:
                logger.info("= group %s registered", conn.group[:12])
            # else another creator won the race, with another key
        if conn.session.close_expected():
            return
        refusal = await self._box.call(Mailbox.admits, conn.group, conn.offered_key, conn.device)
        if conn.session.close_expected():
            return
        if refusal is not None:
            # Proven device, wrong group secret (or forgotten): the one failure charged to the
            # device too.
            refused = self._limiter.record_failure(conn.source, self._clock(), conn.device)
            conn.session.reject(ByeCode.AUTH_FAILED, refusal)
            logger.info(
                "connection from %s (device %s) failed: %s%s",
                conn.source,
                conn.label,
                refusal,
                " (address now refused)" if refused else "",
            )
            return
        vector = await self._box.call(Mailbox.vector, conn.group)
        if conn.session.close_expected():
            return
        self._limiter.record_success(conn.device, self._clock())
        self._handshakes.pop(conn, None)
        conn.move_to(Phase.WAITING_HAVE)
        conn.session.send_welcome(other.device for other in self._registry.others(conn))
        conn.session.send_have(vector)
        self._registry.join(conn)
        logger.info("device %s joined group %s from %s", conn.label, conn.group[:12], conn.source)

    # -- handshake slots ---------------------------------------------------------------------

    def _make_room(self, source: str) -> None:
        # At a cap, displace a handshake in progress rather than refuse the newcomer (module
        # docstring): first the source's own, else one of the busiest source's.
        mine = [conn for conn in self._handshakes if conn.source == source]
        if len(mine) >= self.max_handshakes_per_source:
            self._displace(_stalest(mine))
        elif len(self._handshakes) >= self.max_handshakes:
            by_source: dict[str, list[Connection]] = {}
            for conn in self._handshakes:
                by_source.setdefault(conn.source, []).append(conn)
            busiest = max(by_source.values(), key=len)  # ties: the one seen first (oldest)
            self._displace(_stalest(busiest))

    def _displace(self, conn: Connection) -> None:
        del self._handshakes[conn]
        self._displaced += 1
        logger.debug("x displacing handshake from %s", conn.source)
        conn.session.reject(ByeCode.OVERLOADED, "relay busy, handshake displaced, try again")
        conn.flush()

    def route_direct(self, conn: Connection, frame: Direct) -> None:
        """Forward a directed frame to its recipient's connection, or refuse it (never stored).

        Args:
            conn: the connection it came from (authenticated: its device is proven).
            frame: the frame, which the relay can neither open nor alter undetected.
        """
        target = self._registry.device(conn.group, frame.recipient)
        if target is not None:
            self._registry.send_pending_to(target)  # what is queued goes first (relay.registry)
        if frame.sender != conn.device:
            code, reason = UndeliveredCode.FORGED, "sender is not the device of this connection"
        elif target is None or not target.session.is_open:
            code, reason = UndeliveredCode.NOT_CONNECTED, "not connected to the relay"
        elif target.outbox_bytes > self.max_pending_bytes:
            code, reason = UndeliveredCode.BUSY, "not reading fast enough; frame dropped"
        else:
            target.session.send_direct(frame)
            target.flush()
            self._directs_forwarded += 1
            logger.debug("> direct %s -> %s (%d bytes)", conn.label, target.label, len(frame.box))
            return
        self._directs_refused += 1
        logger.debug("x direct from %s refused: %s", conn.label, reason)
        conn.session.send_undelivered(frame.recipient, frame.ref, code, reason)

    async def _on_batch(self, conn: Connection, envelopes: list[Envelope]) -> None:
        stored = await self._box.call(Mailbox.store, conn.group, envelopes, self._clock())
        self._stored += len(stored.accepted)
        if conn.session.is_open:
            conn.session.send_ack(stored.vector)
            if stored.gaps:
                conn.session.send_have(stored.vector)  # ask again from where we stand
        if stored.accepted:
            self._registry.forward(conn, stored.accepted)

    async def _catch_up(self, conn: Connection) -> None:
        self._registry.send_pending_to(conn)  # what is queued goes first (relay.registry)
        envelopes = await self._box.call(Mailbox.since, conn.group, dict(conn.session.peer_vector))
        conn.catch_up_with(envelopes)

    def _schedule_presence(self) -> None:
        if self._presence_timer is None:
            loop = asyncio.get_running_loop()
            self._presence_timer = loop.call_later(self._presence_delay, self._send_presence)

    def _send_presence(self) -> None:
        self._presence_timer = None
        touched = self._registry.send_presence()
        self._presence_delay = min(
            MAX_PRESENCE_DELAY, max(DEFAULT_PRESENCE_DELAY, touched * PRESENCE_DELAY_PER_CONNECTION)
        )

    def _forget(self, conn: Connection) -> None:
        self._connections.discard(conn)
        self._handshakes.pop(conn, None)
        self._forwarded += conn.forwarded
        conn.forwarded = 0
        if conn.detached:
            return
        cause = conn.session.cause
        reason = str(cause) if cause is not None else "closed normally"
        if conn.phase is Phase.HANDSHAKE:
            if isinstance(cause, AuthError):  # a proof failed: nothing proven, charge the source
                refused = self._limiter.record_failure(conn.source, self._clock())
                reason += " (address now refused)" if refused else ""
            logger.info("connection from %s closed before joining: %s", conn.source, reason)
            return
        if not self._registry.leave(conn):
            reason = "replaced by a newer connection"
        logger.info("device %s left group %s: %s", conn.label, conn.group[:12], reason)


def _stalest(handshakes: list[Connection]) -> Connection:
    """Return the handshake to displace first: one still awaiting its Hello, else the oldest."""
    for conn in handshakes:  # oldest first
        if conn.session.state is State.AWAIT_HELLO:
            return conn
    return handshakes[0]
