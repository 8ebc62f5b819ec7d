"""``BrokerLink``: what the MQTT and NATS links share (reconnects, waits, sealing, presence).

Theory of operation
-------------------
A broker link keeps one broker connection alive per group; ``_run_once`` (per subclass)
connects, sets up, calls ``_connected()``, and returns when the connection ends. ``run_loop``
reconnects with the relay link's jittered exponential backoff (first retry within 100 ms, at
most 30 s apart; reset once a connection was established).

Everything a broker carries is an ``Envelope`` sealed with the group key, inside a
``proto.frames.Batch``: brokers, like the relay, only ever see ciphertext and the envelope
header ``(origin, seq)``. ``_store`` opens envelopes, counts and skips tampered ones (a public
broker lets anyone publish junk on our topics: it is reported, never applied), and stores the
rest in one ``log.receive`` transaction, which drops duplicates and gaps.

``published`` is the highest seq of this device's own origin that the broker acknowledged;
``lag()`` is what of our own origin the broker has not acknowledged yet.

Each broker link also carries the group's directed channel (``links.channel``) on a topic or
subject per device (subclasses: ``send_direct``); a device the link knows to be offline is
unreachable at once, a device that goes offline ends its calls, and so does the link going
down. Frames that arrive go to ``direct_received``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Final

import msgspec

from switchboard.errors import (
    AuthError,
    RemoteProtocolError,
    SwitchboardError,
    TamperedEnvelope,
    Unreachable,
)
from switchboard.events import Event, decode_event, encode_event, now_ts
from switchboard.links.backoff import FIRST_RETRY, MAX_RETRY
from switchboard.links.base import wait_first_connection
from switchboard.links.channel import DirectChannel, Handlers
from switchboard.links.status import LinkStatus
from switchboard.proto.frames import Batch, Direct, Envelope, decode_frame, encode_frame
from switchboard.store.log import Received

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterable

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from switchboard.crypto import GroupKeys
    from switchboard.links.base import OnPresence
    from switchboard.store.log import EventLog
    from switchboard.transports.options import LinkOptions

log = logging.getLogger("switchboard.link")

# Events per published Batch: large enough to amortise one broker round trip, small enough
# that a Batch of typical events stays far below brokers' payload limits (NATS: 1 MiB).
CHUNK_EVENTS: Final = 200
# Bytes of sealed envelopes per Batch; a single larger envelope travels alone.
CHUNK_BYTES: Final = 256 * 1024
# A link's bookkeeping that only saves work after a restart (MQTT's ``published``, NATS's
# cursor past our own messages) is saved at most this often, not once per message: after a
# crash at most the last second is sent or read again, and the log drops the duplicates.
SAVE_EVERY: Final = 1.0


@dataclass(eq=False)
class BrokerLink:
    """Base of the links that go through a broker instead of the embedded relay."""

    kind: ClassVar[str] = "broker"

    log: EventLog
    keys: GroupKeys
    url: str
    device_id: str
    options: LinkOptions
    create: bool = False
    on_presence: OnPresence | None = None
    status: LinkStatus = field(default_factory=LinkStatus)
    relay_key: bytes | None = None  # brokers have no identity key to pin
    identity: Ed25519PrivateKey | None = None  # this device's key: signs directed frames
    handlers: Handlers = field(default_factory=Handlers)
    channel: DirectChannel = field(init=False)

    published: int = field(init=False, default=0)
    online: set[str] = field(init=False, default_factory=set)
    _wake: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _established: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = field(init=False, default=None)
    _last_failure: SwitchboardError | None = field(init=False, default=None)
    _stopping: bool = field(init=False, default=False)
    _was_up: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        assert self.identity is not None, "a link needs the device key to sign directed frames"
        self.channel = DirectChannel(
            self.keys, self.identity, self.device_id, self, self.handlers, self.status
        )

    # -- the Link surface ------------------------------------------------------------------------

    def start(self) -> None:
        """Start keeping the link up, in the background."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self.run_loop(), name=f"switchboard[{self.url}]")

    async def stop(self) -> None:
        """Say goodbye to the broker (subclasses: ``_goodbye``) and stop."""
        self._stopping = True
        if self.status.state == "connected":
            with contextlib.suppress(SwitchboardError, OSError, TimeoutError):
                await asyncio.wait_for(self._goodbye(), 2.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.channel.aclose()
        self.status.state = "off"

    async def send_direct(self, frame: Direct) -> None:
        """Send a directed frame to its device (``links.channel.Carrier``).

        Raises:
            Unreachable: the device is not online on the broker, or we are not connected.
            TransportError: the connection broke while sending.
        """
        if self.status.state != "connected":
            raise Unreachable(frame.recipient, f"link to {self.url} is not connected")
        if frame.recipient not in self.online:
            raise Unreachable(frame.recipient, f"not connected to {self.url}")
        await self._send_direct(frame)

    def direct_received(self, payload: bytes) -> None:
        """A message arrived on our directed topic or subject: hand it to the channel."""
        try:
            frame = decode_frame(payload)
        except RemoteProtocolError as exc:
            self._tampered(f"directed message: {exc}")
            return
        if not isinstance(frame, Direct):
            self._tampered(f"unexpected {type(frame).__name__} frame on a directed subject")
            return
        self.channel.frame_received(frame)

    def notify(self) -> None:
        """The log advanced: wake the publisher."""
        self._wake.set()

    def lag(self) -> int:
        """Events of this device the broker has not acknowledged yet."""
        return max(0, self.log.vector().get(self.device_id, 0) - self.published)

    async def wait_established(self, timeout: float) -> SwitchboardError | None:
        """Wait for the first connection; return the failure that prevented it, if any."""
        return await wait_first_connection(
            self._established,
            lambda: self._last_failure,
            (AuthError,),
            f"broker {self.url}",
            timeout,
        )

    async def wait_synced(self, timeout: float) -> bool:
        """Wait until connected and the broker acknowledged every event of this device."""
        return await self._wait_until(
            lambda: self.status.state == "connected" and self.lag() == 0, timeout
        )

    async def wait_caught_up(self, timeout: float) -> bool:
        """Wait until this device holds what the group held when we connected."""
        if await self.wait_established(timeout) is not None:
            return False
        return await self._wait_until(self._caught_up, timeout)

    async def _wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    # -- for subclasses ---------------------------------------------------------------------------

    def _caught_up(self) -> bool:
        raise NotImplementedError

    async def _run_once(self) -> None:
        raise NotImplementedError

    async def _goodbye(self) -> None:
        """Tell the group we leave (presence), while still connected."""

    async def _send_direct(self, frame: Direct) -> None:
        raise NotImplementedError

    async def _connected(self, broker: str) -> None:
        log.info("= %s link to %s established", self.kind, broker)
        self.status.state = "connected"
        self.status.connected_since = now_ts()
        self.status.last_error = None
        self.status.relay = broker
        self._last_failure = None
        self._was_up = True
        self.create = False
        self._established.set()
        self._wake.set()

    async def _set_presence(self, device: str, online: bool) -> None:
        if device == self.device_id or (device in self.online) == online:
            return
        if online:
            self.online.add(device)
        else:
            self.online.discard(device)
            self.channel.peer_gone(device, f"it left {self.url}")
        if self.on_presence is not None:
            await self.on_presence(device, online)

    # -- the reconnect loop ----------------------------------------------------------------------

    async def run_loop(self) -> None:
        """Keep a broker connection up until stopped."""
        delay = FIRST_RETRY
        while not self._stopping:
            self._was_up = False
            try:
                await self._run_once()
            except SwitchboardError as exc:
                self._record_failure(exc)
            except Exception as exc:  # the one supervisor per link (STYLE.md error rule 5)
                log.error("! %s link to %s failed", self.kind, self.url, exc_info=True)
                self._record_failure(SwitchboardError(f"internal error: {type(exc).__name__}"))
            await self._down()
            if self._stopping:
                break
            if self._was_up:
                delay = FIRST_RETRY
            elif isinstance(self._last_failure, AuthError):
                delay = MAX_RETRY
            await asyncio.sleep(random.uniform(0, delay))
            delay = min(delay * 2, MAX_RETRY)

    async def _down(self) -> None:
        self.channel.link_down(f"link to {self.url} lost")
        if self.status.state != "off":
            self.status.state = "disconnected"
        if self.online:
            self.online.clear()
            if self.on_presence is not None:
                await self.on_presence("", False)  # we no longer know who is online

    def _record_failure(self, exc: SwitchboardError) -> None:
        self._last_failure = exc
        self.status.last_error = str(exc)
        log.info("x %s link to %s: %s", self.kind, self.url, exc)

    # -- envelopes -------------------------------------------------------------------------------

    def batches(self, events: Iterable[Event]) -> Iterable[tuple[list[Event], bytes]]:
        """Seal events into encoded ``Batch`` frames of at most ``CHUNK_EVENTS``/``CHUNK_BYTES``."""
        chunk: list[Event] = []
        envelopes: list[Envelope] = []
        size = 0
        for event in events:
            env = self.keys.seal(event.origin, event.seq, encode_event(event))
            if chunk and (len(chunk) >= CHUNK_EVENTS or size + len(env.box) > CHUNK_BYTES):
                yield chunk, encode_frame(Batch(envelopes=envelopes))
                chunk, envelopes, size = [], [], 0
            chunk.append(event)
            envelopes.append(env)
            size += len(env.box) + 64
        if chunk:
            yield chunk, encode_frame(Batch(envelopes=envelopes))

    def open_batch(self, payload: bytes) -> list[Event]:
        """Open every envelope of an encoded ``Batch``; skip (and count) what fails to open."""
        try:
            frame = decode_frame(payload)
        except RemoteProtocolError as exc:
            self._tampered(str(exc))
            return []
        if not isinstance(frame, Batch):
            self._tampered(f"unexpected {type(frame).__name__} frame on an envelope subject")
            return []
        events = []
        for env in frame.envelopes:
            try:
                events.append(self._open(env))
            except TamperedEnvelope as exc:
                self._tampered(str(exc))
        return events

    async def store(
        self,
        events: list[Event],
        also: Callable[[sqlite3.Connection, Received], None] | None = None,
    ) -> Received:
        """Store received events (duplicates and gaps are dropped by the log).

        ``also`` writes more in the same transaction (``EventLog.receive``).
        """
        if not events:
            return Received(accepted=[], duplicates=0, gaps=0)
        return await self.log.receive(events, also)

    def _tampered(self, reason: str) -> None:
        self.status.tampered += 1
        self.status.last_error = reason
        log.warning("! %s link: %s", self.kind, reason)

    def _open(self, env: Envelope) -> Event:
        plaintext = self.keys.open(env)
        try:
            event = decode_event(plaintext)
        except msgspec.DecodeError as exc:
            raise TamperedEnvelope(env.origin, env.seq) from exc
        if event.origin != env.origin or event.seq != env.seq:
            raise TamperedEnvelope(env.origin, env.seq)
        return event

    def own_pending(self, after: int, limit: int) -> list[Event]:
        """This device's own events after seq ``after``, at most ``limit``."""
        vector = dict(self.log.vector())
        vector[self.device_id] = after
        return [e for e in self.log.since(vector, limit) if e.origin == self.device_id]


async def load_meta(log_: EventLog, key: str) -> str | None:
    """Read a link's bookkeeping value from the store's ``meta`` table."""
    from switchboard.store import local  # noqa: PLC0415 - keeps this module's imports light

    return await asyncio.to_thread(lambda: local.get_meta(log_.db.reader(), key))


async def save_meta(log_: EventLog, key: str, value: str) -> None:
    """Write a link's bookkeeping value to the store's ``meta`` table."""
    from switchboard.store import local  # noqa: PLC0415 - keeps this module's imports light

    await log_.db.write(lambda conn: local.set_meta(conn, key, value))
