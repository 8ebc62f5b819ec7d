"""``BrokerLink``: what the MQTT and NATS links share (batches, presence, their bookkeeping).

Theory of operation
-------------------
A broker link keeps one broker connection alive per group; ``_run_once`` (per kind) connects,
sets up, calls ``_connected()``, and returns when the connection ends. The supervisor loop,
the waits and the envelope opener are every link's (``links.supervisor``).

Everything a broker carries is an ``Envelope`` sealed with the group key, inside a
``proto.frames.Batch``: brokers, like the relay, only ever see ciphertext and the envelope
header ``(origin, seq)``. ``open_batch`` decodes a message and opens its envelopes, counting
and skipping tampered ones (a public broker lets anyone publish junk on our topics: it is
reported, never applied); ``store`` stores the rest in one ``log.receive`` transaction, which
drops duplicates and gaps.

``published`` is the highest seq of this device's own origin that the broker acknowledged;
``lag()`` is what of our own origin the broker has not acknowledged yet.

The directed channel (``links.channel``) travels on a topic or subject per device (each kind's
``_send_direct``); a device the link knows to be offline is unreachable at once, a device
that goes offline ends its calls, and what arrives goes to ``direct_received``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Final

from switchboard.errors import RemoteProtocolError, Unreachable
from switchboard.links.status import LinkState
from switchboard.links.supervisor import SupervisedLink
from switchboard.proto.frames import Batch, Direct, Envelope, decode_frame, encode_frame
from switchboard.store import local
from switchboard.store.log import Received

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterable

    from switchboard.events import Event
    from switchboard.store.log import EventLog
    from switchboard.transports.options import LinkOptions

# Events per published Batch: large enough to amortise one broker round trip, small enough
# that a Batch of typical events stays far below brokers' payload limits (NATS: 1 MiB).
CHUNK_EVENTS: Final = 200
# Bytes of sealed envelopes per Batch; a single larger envelope travels alone.
CHUNK_BYTES: Final = 256 * 1024
# A link's bookkeeping that only saves work after a restart (MQTT's ``published``, NATS's
# cursor past our own messages) is saved at most this often, not once per message: after a
# crash at most the last second is sent or read again, and the log drops the duplicates.
SAVE_EVERY: Final = 1.0


@dataclass(eq=False, kw_only=True)
class BrokerLink(SupervisedLink):
    """Base of the links that go through a broker instead of the embedded relay."""

    kind: ClassVar[str] = "broker"
    far_end: ClassVar[str] = "broker"

    options: LinkOptions

    published: int = field(init=False, default=0)

    def lag(self) -> int:
        """Events of this device the broker has not acknowledged yet."""
        return max(0, self.log.vector().get(self.device_id, 0) - self.published)

    async def _down(self) -> None:
        await super()._down()
        await self._forget_online()

    async def stop(self) -> None:
        """Stop, and say that nobody is known to be online through this link any more."""
        await super().stop()
        await self._forget_online()

    async def _forget_online(self) -> None:
        if self.online:
            self.online.clear()
            if self.on_presence is not None:
                await self.on_presence("", False)  # we no longer know who is online

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

    # -- directed frames ------------------------------------------------------------------------

    async def send_direct(self, frame: Direct) -> None:
        """Send a directed frame to its device, if the broker has it online.

        Raises:
            Unreachable: the device is not online on the broker, or we are not connected.
            TransportError: the connection broke while sending.
        """
        if self.status.state is not LinkState.CONNECTED:
            raise Unreachable(frame.recipient, f"link to {self.url} is not connected")
        if frame.recipient not in self.online:
            raise Unreachable(frame.recipient, f"not connected to {self.url}")
        await self._send_direct(frame)

    async def _send_direct(self, frame: Direct) -> None:
        raise NotImplementedError

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

    # -- batches ---------------------------------------------------------------------------------

    def batches(self, events: Iterable[Event]) -> Iterable[tuple[list[Event], bytes]]:
        """Seal events into encoded ``Batch`` frames of at most ``CHUNK_EVENTS``/``CHUNK_BYTES``."""
        chunk: list[Event] = []
        envelopes: list[Envelope] = []
        size = 0
        events = list(events)
        for event, env in zip(events, self.seal(events), strict=True):
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
        return self.open_envelopes(frame.envelopes)

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
        return await self.log.receive(events, also, proofs=self.take_proofs(events))

    def own_pending(self, after: int, limit: int) -> list[Event]:
        """This device's own events after seq ``after``, at most ``limit``."""
        vector = dict(self.log.vector())
        vector[self.device_id] = after
        return [e for e in self.log.since(vector, limit) if e.origin == self.device_id]


async def load_meta(log_: EventLog, key: str) -> str | None:
    """Read a link's bookkeeping value from the store's ``meta`` table."""
    return await asyncio.to_thread(lambda: local.get_meta(log_.db.reader(), key))


async def save_meta(log_: EventLog, key: str, value: str) -> None:
    """Write a link's bookkeeping value to the store's ``meta`` table."""
    await log_.db.write(lambda conn: local.set_meta(conn, key, value))
