"""``RelayLink``: one group's link, a ``SyncSession`` over a ``Transport``, with reconnects.

Theory of operation
-------------------
A ``RelayLink`` keeps one client session to the group's relay alive. Three tasks share a session:

- ``receive_loop``: frames in; ``BatchReceived`` envelopes are opened, checked and stored in one
  transaction, then acknowledged;
- ``send_loop``: whenever the log advances or the relay says what it holds (``Have``), sends
  everything the relay is not known to hold, read from the log in chunks and sealed on the way
  out. Catch-up and live forwarding are the same loop, so there is one way to send;
- ``timer_loop``: calls ``tick()`` at the session's deadline (heartbeats, silent-peer timeout).

The session also carries the link's directed channel (``links.channel``): ``Direct`` frames go
out through ``send_direct`` and come in to ``channel.frame_received``; the relay's
``Undelivered`` answers and its ``Presence(device, False)`` end the calls they concern, and a
session that ends ends every call (a call does not wait out a reconnect).

Any of them ending ends the session; ``run_loop`` reconnects on the schedule of ``Backoff``:
quick, jittered retries while a relay restarts (the first within 50-100 ms of a drop, then at
most 200 ms apart for about ten seconds), then exponential up to 30 s for a relay that stays
away. Once a session is established the schedule starts again from its first step.
Authentication failures and rate limiting stop retrying fast: they back off to the cap at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import msgspec

from switchboard.crypto import GroupKeys
from switchboard.errors import (
    AuthError,
    ByeCode,
    Rejected,
    SwitchboardError,
    TamperedEnvelope,
    Unreachable,
)
from switchboard.events import Event, decode_event, encode_event, now_ts
from switchboard.links.backoff import Backoff
from switchboard.links.base import run_until_first_ends, wait_first_connection
from switchboard.links.channel import DirectChannel, Handlers
from switchboard.links.status import LinkStatus
from switchboard.proto import cursors
from switchboard.proto.frames import Direct, Envelope
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

    from switchboard.store.log import EventLog
    from switchboard.transports.base import Transport

log = logging.getLogger("switchboard.peer")

CONNECT_TIMEOUT: Final = 10.0
# Events read and sealed per batch when catching a peer up: large enough to amortise one read
# and one frame, small enough to keep a frame under the batch byte limit for typical events.
SEND_CHUNK: Final = 500
# Opened batches that may wait for the store before the receive loop stops reading (about
# 16 frames: enough to keep the writer busy, little enough to bound memory per link).
MAX_QUEUED_BATCHES: Final = 16
# Events stored in one transaction at most when batches queued up.
MAX_EVENTS_PER_COMMIT: Final = 20_000


@dataclass
class RelayLink:
    """The link of one group to its relay."""

    log: EventLog
    keys: GroupKeys
    url: str
    device_id: str
    identity: Ed25519PrivateKey
    relay_key: bytes | None
    create: bool = False
    on_presence: Callable[[str, bool], Awaitable[None]] | None = None
    on_established: Callable[[Established], Awaitable[None]] | None = None
    status: LinkStatus = field(default_factory=LinkStatus)
    handlers: Handlers = field(default_factory=Handlers)
    channel: DirectChannel = field(init=False)

    _session: SyncSession | None = field(init=False, default=None)
    _transport: Transport | None = field(init=False, default=None)
    _wake: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _established: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = field(init=False, default=None)
    _last_failure: SwitchboardError | None = field(init=False, default=None)
    _stopping: bool = field(init=False, default=False)
    _session_ok: bool = field(init=False, default=False)
    # Opened batches waiting for the store; bounded, so a fast relay waits for a slow disk.
    _received: asyncio.Queue[list[Event]] = field(init=False, default_factory=asyncio.Queue)
    # What the relay is known to hold: its Have, its Acks, and what it sent us.
    _relay_holds: dict[str, int] = field(init=False, default_factory=dict)
    # The relay's first Have of the current session: what "caught up" means.
    _relay_have: dict[str, int] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.channel = DirectChannel(
            self.keys, self.identity, self.device_id, self, self.handlers, self.status
        )

    # -- control -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start keeping the link up, in the background."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(
                self.run_loop(), name=f"switchboard[{self.url}].run_loop"
            )

    async def stop(self) -> None:
        """Say goodbye to the relay and stop."""
        self._stopping = True
        session, transport = self._session, self._transport
        if session is not None and transport is not None and session.is_open:
            session.send_bye()
            with contextlib.suppress(SwitchboardError, OSError):
                await asyncio.wait_for(self._flush(session, transport), 1.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.channel.aclose()
        self.status.state = "off"

    async def send_direct(self, frame: Direct) -> None:
        """Send a directed frame through the relay (``links.channel.Carrier``).

        Raises:
            Unreachable: the session to the relay is not open.
            TransportError: the connection broke while sending.
        """
        session, transport = self._session, self._transport
        if session is None or transport is None or not session.is_open:
            raise Unreachable(frame.recipient, f"link to {self.url} is not connected")
        session.send_direct(frame)
        await self._flush(session, transport)

    def notify(self) -> None:
        """The log advanced: wake the sender."""
        self._wake.set()

    async def wait_established(self, timeout: float) -> SwitchboardError | None:
        """Wait for the first established session; return the failure that prevented it, if any."""
        return await wait_first_connection(
            self._established,
            lambda: self._last_failure,
            (AuthError, Rejected),
            f"relay {self.url}",
            timeout,
        )

    async def wait_caught_up(self, timeout: float) -> bool:
        """Wait until this device holds everything the relay said it held when we connected."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if await self.wait_established(timeout) is not None:
            return False
        while self._relay_have is None or not cursors.dominates(
            self.log.vector(), self._relay_have
        ):
            if loop.time() >= deadline or self.status.state != "connected":
                return False
            await asyncio.sleep(0.01)
        return True

    async def wait_synced(self, timeout: float) -> bool:
        """Wait until the link is up and the relay holds everything this device holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (self.status.state == "connected" and self.lag() == 0):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def lag(self) -> int:
        """Events this device holds that the relay is not known to hold (``None``: unknown)."""
        return cursors.lag(self.log.vector(), self._relay_holds)

    # -- the reconnect loop ----------------------------------------------------------------------

    async def run_loop(self) -> None:
        """Keep a session up until stopped, retrying on the schedule of ``Backoff``."""
        backoff = Backoff()
        while not self._stopping:
            established = False
            failure: SwitchboardError | None = None
            try:
                established = await self._run_once()
            except SwitchboardError as exc:
                failure = exc
            except Exception as exc:  # the one supervisor per link (STYLE.md error rule 5)
                log.error("! link to %s failed", self.url, exc_info=True)
                failure = SwitchboardError(f"internal error: {type(exc).__name__}")
            if failure is not None:
                self._record_failure(failure)
            if self._stopping:
                break
            if established or self._session_ok:
                backoff.reset()
            if isinstance(failure, AuthError) or (
                isinstance(failure, Rejected) and failure.reason_code == ByeCode.RATE_LIMITED
            ):
                backoff.slow_down()
            self.status.state = "disconnected"
            await asyncio.sleep(backoff.next_delay())

    def _record_failure(self, exc: SwitchboardError) -> None:
        self._last_failure = exc
        self.status.last_error = str(exc)
        log.info("x link to %s: %s", self.url, exc)

    async def _run_once(self) -> bool:
        self.status.state = "connecting"
        # Only a session established by this attempt resets the backoff: a relay that stays
        # down is retried ever more slowly, not every 100 ms.
        self._session_ok = False
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
        self._received = asyncio.Queue(MAX_QUEUED_BATCHES)
        self._relay_have = None
        session.start()
        established = False
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
            established = self._session_ok
            if session.cause is not None:
                raise session.cause
        finally:
            self._session = self._transport = None
            self.channel.link_down(f"link to {self.url} lost")
            with contextlib.suppress(SwitchboardError, OSError):
                await transport.aclose()
            if self.on_presence is not None and self._session_ok:
                await self.on_presence("", False)  # link down: we no longer know who is online
        return established

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
                pending = self.log.since(session.peer_vector, SEND_CHUNK)
                if not pending:
                    break
                session.send_batch(self._seal(event) for event in pending)
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

    # -- handling what the session reports -------------------------------------------------------

    async def _handle(self, session: SyncSession, transport: Transport) -> None:
        for event in session.events_received():
            if isinstance(event, Established):
                await self._on_established(session, event)
            elif isinstance(event, BatchReceived):
                await self._on_batch(session, event.envelopes)
            elif isinstance(event, HaveReceived | AckReceived):
                if isinstance(event, HaveReceived) and self._relay_have is None:
                    self._relay_have = dict(event.vector)
                self._relay_holds = cursors.merge(self._relay_holds, event.vector)
                self._wake.set()
            elif isinstance(event, DirectReceived):
                self.channel.frame_received(event.frame)
            elif isinstance(event, UndeliveredReceived):
                self.channel.undelivered(event.recipient, event.ref, event.code, event.reason)
            elif isinstance(event, PresenceReceived):
                if not event.online:
                    self.channel.peer_gone(event.device, "it left the relay")
                if self.on_presence is not None:
                    await self.on_presence(event.device, event.online)
            elif isinstance(event, Closed):
                log.info("x link to %s closed: %s", self.url, event.reason)
        await self._flush(session, transport)

    async def _on_established(self, session: SyncSession, event: Established) -> None:
        log.info("= link to %s established (relay %s)", self.url, event.peer[:8])
        self.status.state = "connected"
        self.status.connected_since = now_ts()
        self.status.last_error = None
        self.status.relay = event.peer
        self._last_failure = None
        self.create = False  # registered now; a reconnect is an ordinary one
        if self.relay_key is None:
            self.relay_key = event.peer_key
        if self.on_established is not None:
            await self.on_established(event)
        session.send_have(self.log.vector())
        self._session_ok = True
        self._established.set()
        self._wake.set()

    async def _on_batch(self, session: SyncSession, envelopes: tuple[Envelope, ...]) -> None:
        self._relay_holds = cursors.merge(self._relay_holds, {e.origin: e.seq for e in envelopes})
        events: list[Event] = []
        for env in envelopes:
            try:
                event = self._open(env)
            except TamperedEnvelope as exc:
                # Reported, never applied. Later envelopes of that origin would be gaps anyway.
                self.status.tampered += 1
                self.status.last_error = str(exc)
                log.warning("! %s", exc)
                continue
            events.append(event)
        await self._received.put(events)

    async def _store_loop(self, session: SyncSession, transport: Transport) -> None:
        # Storing runs beside receiving: while the writer commits one transaction, the next
        # frames are read and opened, and everything that queued up meanwhile goes into the
        # following transaction (one fsync for many batches under load, one per batch when idle).
        while True:
            events = await self._received.get()
            while not self._received.empty() and len(events) < MAX_EVENTS_PER_COMMIT:
                events += self._received.get_nowait()
            received = await self.log.receive(events)
            if session.is_open:
                session.send_ack(self.log.vector())
                if received.gaps and not self.status.tampered:
                    session.send_have(self.log.vector())
                await self._flush(session, transport)

    def _seal(self, event: Event) -> Envelope:
        return self.keys.seal(event.origin, event.seq, encode_event(event))

    def _open(self, env: Envelope) -> Event:
        plaintext = self.keys.open(env)
        try:
            event = decode_event(plaintext)
        except msgspec.DecodeError as exc:
            raise TamperedEnvelope(env.origin, env.seq) from exc
        if event.origin != env.origin or event.seq != env.seq:
            raise TamperedEnvelope(env.origin, env.seq)
        return event

    async def _flush(self, session: SyncSession, transport: Transport) -> None:
        for frame in session.frames_to_send():
            await transport.send(frame)
