"""``RelayLink``: one group's link to its relay, a ``SyncSession`` over a ``Transport``.

Theory of operation
-------------------
A ``RelayLink`` keeps one client session to the group's relay alive. Four tasks share a session:

- ``receive_loop``: frames in; ``BatchReceived`` envelopes are opened and checked
  (``SupervisedLink.open_envelopes``) and queued for the store;
- ``store_loop``: stores what queued up in one transaction, then acknowledges it;
- ``send_loop``: whenever the log advances or the relay says what it holds (``Have``), sends
  everything the relay is not known to hold, read from the log in chunks and sealed on the way
  out. Catch-up and live forwarding are the same loop, so there is one way to send;
- ``timer_loop``: calls ``tick()`` at the session's deadline (heartbeats, silent-peer timeout).

Any of them ending ends the session; the supervisor loop (``links.supervisor``) reconnects on
the schedule of ``links.backoff.Backoff``.

The session also carries the link's directed channel (``links.channel``): ``Direct`` frames go
out through ``send_direct`` and come in to ``channel.frame_received``; the relay's
``Undelivered`` answers and its ``Presence(device, False)`` end the calls they concern.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Final

from switchboard.crypto import public_bytes, sign
from switchboard.errors import ByeCode, Rejected, SwitchboardError, TransportTimeout, Unreachable
from switchboard.events import Event, now_ts
from switchboard.links.status import LinkState
from switchboard.links.supervisor import (
    OnEstablished,
    SupervisedLink,
    log,
    run_until_first_ends,
)
from switchboard.proto import cursors
from switchboard.proto.frames import Direct, Rekey, UndeliveredCode, encode_rekey
from switchboard.proto.handshake import rekey_message
from switchboard.proto.session import (
    AckReceived,
    BatchReceived,
    Closed,
    DirectReceived,
    Established,
    HaveReceived,
    PresenceReceived,
    Role,
    SyncSession,
    UndeliveredReceived,
)
from switchboard.transports import connect

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from switchboard.proto.frames import Envelope
    from switchboard.transports.base import Transport

CONNECT_TIMEOUT: Final = 10.0
# Events read and sealed per batch when catching a peer up: large enough to amortise one read
# and one frame, small enough to keep a frame under the batch byte limit for typical events.
SEND_CHUNK: Final = 500
# Opened batches that may wait for the store before the receive loop stops reading (about
# 16 frames: enough to keep the writer busy, little enough to bound memory per link).
MAX_QUEUED_BATCHES: Final = 16
# Events stored in one transaction at most when batches queued up.
MAX_EVENTS_PER_COMMIT: Final = 20_000


@dataclass(eq=False, kw_only=True)
class RelayLink(SupervisedLink):
    """The link of one group to its relay."""

    kind: ClassVar[str] = "relay"
    far_end: ClassVar[str] = "relay"
    goodbye_timeout: ClassVar[float] = 1.0

    on_established: OnEstablished | None = None

    _session: SyncSession | None = field(init=False, default=None)
    _transport: Transport | None = field(init=False, default=None)
    # Opened batches waiting for the store; bounded, so a fast relay waits for a slow disk.
    _received: asyncio.Queue[list[Event]] = field(init=False, default_factory=asyncio.Queue)
    # What the relay is known to hold: its Have, its Acks, and what it sent us.
    _relay_holds: dict[str, int] = field(init=False, default_factory=dict)
    # The relay's first Have of the current session: what "caught up" means.
    _relay_have: dict[str, int] | None = field(init=False, default=None)
    # The relay's device id (its answers to ``rekey`` come from it) and the rekeys waiting.
    _relay_id: str = field(init=False, default="")
    _rekeys: int = field(init=False, default=0)
    _session_key: bytes = field(init=False, default=b"")  # the group key this session used
    _rekey_answers: dict[int, asyncio.Future[tuple[int, str]]] = field(
        init=False, default_factory=dict
    )

    def lag(self) -> int:
        """Events this device holds that the relay is not known to hold."""
        return cursors.lag(self.log.vector(), self._relay_holds)

    def _caught_up(self) -> bool:
        """This device holds everything the relay said it held when we connected."""
        return self._relay_have is not None and cursors.dominates(
            self.log.vector(), self._relay_have
        )

    async def send_direct(self, frame: Direct) -> None:
        """Send a directed frame through the relay, which forwards it or says ``Undelivered``.

        Raises:
            Unreachable: the session to the relay is not open.
            TransportError: the connection broke while sending.
        """
        session, transport = self._session, self._transport
        if session is None or transport is None or not session.is_open:
            raise Unreachable(frame.recipient, f"link to {self.url} is not connected")
        session.send_direct(frame)
        await self._flush(session, transport)

    async def rekey(
        self, new_auth: Ed25519PrivateKey, members: list[str], forgotten: list[str], timeout: float
    ) -> None:
        """Have the relay replace the group's auth key by ``new_auth``'s (``frames.Rekey``).

        Raises:
            Unreachable: the link is not connected.
            Rejected: the relay refused (another device rotated the key first, ...).
            TransportTimeout: no answer within ``timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._session_key != self.keys.auth_public and self._transport is not None:
            # Logged in with a key replaced since: only the current key may replace it, so
            # log in again with it first.
            with contextlib.suppress(SwitchboardError, OSError):
                await self._transport.aclose()
            await self._wait_until(
                lambda: (
                    self.status.state is LinkState.CONNECTED
                    and self._session_key == self.keys.auth_public
                ),
                timeout,
            )
        session, transport, relay = self._session, self._transport, self._relay_id
        if session is None or transport is None or not session.is_open or not relay:
            raise Unreachable("relay", f"link to {self.url} is not connected")
        key = public_bytes(new_auth)
        message = rekey_message(self.keys.group, self._session_key, key, members, forgotten)
        box = encode_rekey(Rekey(key, members, forgotten, sign(new_auth, message)))
        self._rekeys += 1
        ref = self._rekeys
        frame = Direct(
            sender=self.device_id, recipient=relay, ref=ref, sender_key=public_bytes(self.identity),
            nonce=os.urandom(12), box=box, signature=sign(self.identity, box),
        )  # fmt: skip
        answer: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        self._rekey_answers[ref] = answer
        try:
            session.send_direct(frame)
            await self._flush(session, transport)
            try:
                code, reason = await asyncio.wait_for(answer, max(deadline - loop.time(), 0.1))
            except TimeoutError as exc:
                raise TransportTimeout(f"relay {self.url} did not answer the rekey") from exc
        finally:
            self._rekey_answers.pop(ref, None)
        if code != UndeliveredCode.REKEYED:
            raise Rejected(f"relay {self.url} refused the new key: {reason}", ByeCode.AUTH_FAILED)
        self._session_key = key

    async def _goodbye(self) -> None:
        session, transport = self._session, self._transport
        if session is not None and transport is not None and session.is_open:
            session.send_bye()
            await self._flush(session, transport)

    # -- one session -----------------------------------------------------------------------------

    async def _run_once(self) -> None:
        self.status.state = LinkState.CONNECTING
        loop = asyncio.get_running_loop()
        transport = await connect(self.url, timeout=CONNECT_TIMEOUT)
        session = SyncSession(
            Role.CLIENT,
            self.device_id,
            os.urandom(32),
            loop.time(),
            group=self.keys.group,
            group_auth=self.keys.auth,
            identity=self.identity,
            pinned_server_key=self.relay_key,
            create=self.create,
        )
        self._session, self._transport = session, transport
        self._session_key = self.keys.auth_public
        self._received = asyncio.Queue(MAX_QUEUED_BATCHES)
        self._relay_have = None
        session.start()
        try:
            await self._flush(session, transport)
            await run_until_first_ends(
                {
                    "receive_loop": self._receive_loop(session, transport),
                    "send_loop": self._send_loop(session, transport),
                    "timer_loop": self._timer_loop(session, transport),
                    "store_loop": self._store_loop(session, transport),
                }
            )
            if session.cause is not None:
                raise session.cause
        finally:
            self._session = self._transport = None
            self.online.clear()
            with contextlib.suppress(SwitchboardError, OSError):
                await transport.aclose()
            if self.on_presence is not None and self._up:
                await self.on_presence("", False)  # link down: we no longer know who is online

    # -- loops -----------------------------------------------------------------------------------

    async def _receive_loop(self, session: SyncSession, transport: Transport) -> None:
        while not session.close_expected():
            try:
                data = await transport.receive()
            except SwitchboardError:
                session.receive_eof()
                await self._handle(session, transport)
                return
            session.receive_frame(data)
            await self._handle(session, transport)
        await self._flush(session, transport)

    async def _send_loop(self, session: SyncSession, transport: Transport) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not session.is_open:
                continue
            while session.is_open:
                # Origins held without proofs (``unserved``) count as passed on: only what
                # can be served is read again.
                held = self.log.vector()
                view = cursors.merge(session.peer_vector, {o: held[o] for o in self.unserved})
                pending = self.log.since(view, SEND_CHUNK)
                if not pending:
                    break
                sealed = self.seal(pending)
                if sealed:
                    session.send_batch(sealed)
                self.status.last_push = now_ts()
                await self._flush(session, transport)

    async def _timer_loop(self, session: SyncSession, transport: Transport) -> None:
        loop = asyncio.get_running_loop()
        while not session.close_expected():
            deadline = session.next_deadline()
            if deadline is None:
                return
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            session.tick(loop.time())
            await self._flush(session, transport)

    async def _store_loop(self, session: SyncSession, transport: Transport) -> None:
        # Storing runs beside receiving: while the writer commits one transaction, the next
        # frames are read and opened, and everything that queued up meanwhile goes into the
        # following transaction (one fsync for many batches under load, one per batch when idle).
        while True:
            events = await self._received.get()
            while not self._received.empty() and len(events) < MAX_EVENTS_PER_COMMIT:
                events += self._received.get_nowait()
            received = await self.log.receive(events, proofs=self.take_proofs(events))
            if session.is_open:
                session.send_ack(self.log.vector())
                if (received.gaps and not self.status.tampered) or self.reask:
                    self.reask = False
                    session.send_have(self.log.vector())
                await self._flush(session, transport)

    # -- handling what the session reports -------------------------------------------------------

    async def _handle(self, session: SyncSession, transport: Transport) -> None:
        for event in session.events_received():
            if isinstance(event, Established):
                await self._on_established(session, event)
            elif isinstance(event, BatchReceived):
                await self._on_batch(event.envelopes)
            elif isinstance(event, HaveReceived | AckReceived):
                if isinstance(event, HaveReceived) and self._relay_have is None:
                    self._relay_have = dict(event.vector)
                self._relay_holds = cursors.merge(self._relay_holds, event.vector)
                self._wake.set()
            elif isinstance(event, DirectReceived):
                self.channel.frame_received(event.frame)
            elif isinstance(event, UndeliveredReceived) and event.recipient == self._relay_id:
                answer = self._rekey_answers.get(event.ref)
                if answer is not None and not answer.done():
                    answer.set_result((event.code, event.reason))
            elif isinstance(event, UndeliveredReceived):
                self.channel.undelivered(event.recipient, event.ref, event.code, event.reason)
            elif isinstance(event, PresenceReceived):
                if event.online:
                    self.online.add(event.device)
                else:
                    self.online.discard(event.device)
                    self.channel.peer_gone(event.device, "it left the relay")
                if self.on_presence is not None:
                    await self.on_presence(event.device, event.online)
            elif isinstance(event, Closed):
                log.info("x relay link to %s closed: %s", self.url, event.reason)
        await self._flush(session, transport)

    async def _on_established(self, session: SyncSession, event: Established) -> None:
        self.online = set(event.online)
        self._relay_id = event.peer
        if self.relay_key is None:
            self.relay_key = event.peer_key
        if self.on_established is not None:
            await self.on_established(event)
        session.send_have(self.log.vector())
        await self._connected(event.peer)

    async def _on_batch(self, envelopes: tuple[Envelope, ...]) -> None:
        self._relay_holds = cursors.merge(self._relay_holds, {e.origin: e.seq for e in envelopes})
        await self._received.put(self.open_envelopes(envelopes))

    async def _flush(self, session: SyncSession, transport: Transport) -> None:
        for frame in session.frames_to_send():
            await transport.send(frame)
