"""``NatsLink``: a group's log replicated through NATS JetStream (a server or a cluster).

Theory of operation
-------------------
JetStream keeps history, so it plays the relay's mailbox and the devices only talk to it.

- **One stream per group**, ``SB_<g>``, with one subject per device, ``sb.<g>.ev.<device>``
  (``<g>``: the group hash of ``links.mqtt_topics``; nothing readable reaches the server).
  Each message is a ``Batch`` of a device's own sealed events, in seq order. The stream's
  duplicate window de-duplicates re-sent messages by ``Nats-Msg-Id`` = ``<origin>/<first seq>``.
- **Per-origin order without gaps, enforced by the server**: every publish carries
  ``Nats-Expected-Last-Subject-Sequence`` = the stream sequence of our subject's last message,
  so a publish that does not follow exactly what the stream holds of us is refused. On
  connecting, and whenever a publish is refused or reported duplicate, we read our subject's
  last message (``get_last_msg``) to learn ``published`` (our last seq the stream holds) and
  carry on from there. A stream that lost our events (recreated, purged) therefore gets them
  again from our own log.
- **Durable replay**: each device reads the whole stream with an *ordered consumer* (server
  side, an ephemeral in-memory consumer: nothing per device to replicate in a cluster) from
  the last stream sequence it stored, kept in the store's meta (``cursor``), together with
  the stream's creation time so a recreated stream is replayed from its start. Messages are
  stored in chunks, one ``log.receive`` transaction each, which also saves the cursor: it
  never runs ahead of what is stored, and a chunk that meets a gap saves it as 0 (the stream
  is read again, once per run). Past our own messages (which we skip) it is saved at most
  once a second: after a crash we read a few of them again.
- **Presence** lives in a KV bucket ``SB_<g>_presence`` with a TTL: every device puts its key
  every ``HEARTBEAT`` seconds and deletes it on a clean stop; a watcher turns puts into
  "online" and deletes into "offline", and a device not heard of for ``PRESENCE_TTL`` is
  offline (a crashed device deletes nothing).
- ``wait_caught_up`` is exact: the stream's last sequence when we connected, reached.
- **Directed frames** (``links.channel``) are core NATS requests to ``sb.<g>.dm.<device>``,
  outside the stream (never stored); the device's subscription answers each at once. Core
  NATS can lose a message (docs/links.md), so a frame whose answer does not come within
  ``DIRECT_ACK_TIMEOUT`` (or four round trips, if more) is sent again, up to ``DIRECT_ATTEMPTS``
  times; the channel drops duplicates. "No responders" means the device is not connected.

Options in the URL's query: ``replicas=N`` (stream and bucket replicas in a cluster, default 1).

Every call to the server goes through ``transports.brokers.JetStreamClient`` (nats-py behind
it, in ``transports.nats``); this module sees no library type and no library exception.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qs

from switchboard.errors import SwitchboardError, Unreachable
from switchboard.events import Event, now_ts
from switchboard.links.broker import CHUNK_EVENTS, SAVE_EVERY, BrokerLink, load_meta, save_meta
from switchboard.links.mqtt_topics import group_hash
from switchboard.links.status import LinkState
from switchboard.links.supervisor import log, run_until_first_ends
from switchboard.proto.frames import MAX_VECTOR_ORIGINS, Batch, Direct, decode_frame, encode_frame
from switchboard.store import local
from switchboard.transports import nats as nats_transport
from switchboard.transports.brokers import NoResponders

if TYPE_CHECKING:
    import sqlite3

    from switchboard.store.log import Received
    from switchboard.transports.brokers import JetStreamClient, PresenceBucket, StreamMessage

DUPLICATE_WINDOW: Final = 120.0  # seconds the stream remembers Nats-Msg-Id values
PRESENCE_TTL: Final = 15.0  # a device not heard of for this long is offline
HEARTBEAT: Final = 5.0  # presence puts; three fit in one TTL
RECEIVE_CHUNK: Final = 256  # stream messages stored per transaction
# Every device reads the stream with its own consumer. nats-server 2.15 caps a stream at 1,000
# consumers unless the stream names its own limit: ours is the protocol's largest group.
MAX_CONSUMERS: Final = MAX_VECTOR_ORIGINS
# A directed frame's first wait for its acknowledgement: a loopback or LAN round trip is a
# millisecond or less, so a lost message (1 in ~300 on nats-server 2.15) costs a quarter second.
DIRECT_ACK_TIMEOUT: Final = 0.25
# Sends of one directed frame before the device counts as unreachable (the wait doubles each
# time: 0.25 + 0.5 + 1 + 2 s, or more on a slow link).
DIRECT_ATTEMPTS: Final = 4


@dataclass(eq=False, kw_only=True)
class NatsLink(BrokerLink):
    """The link of one group through NATS JetStream."""

    kind = "nats"

    _js: JetStreamClient | None = field(init=False, default=None)
    _kv: PresenceBucket | None = field(init=False, default=None)
    _last_subject_seq: int = field(init=False, default=0)
    _cursor: int = field(init=False, default=0)
    _target: int | None = field(init=False, default=None)
    _heard: dict[str, float] = field(init=False, default_factory=dict)
    _replayed_all: bool = field(init=False, default=False)
    _saved_at: float = field(init=False, default=0.0)
    _rtt: float = field(init=False, default=0.0)  # smoothed round trip of directed frames

    def __post_init__(self) -> None:
        super().__post_init__()
        gh = group_hash(self.keys.group)
        self.stream, self.bucket = f"SB_{gh}", f"SB_{gh}_presence"
        self.prefix = f"sb.{gh}.ev"
        self.subject = f"{self.prefix}.{self.device_id}"
        self.direct_prefix = f"sb.{gh}.dm"
        query = parse_qs(self.url.partition("?")[2])
        self.replicas = int(query.get("replicas", ["1"])[0])
        self._meta_key = f"link.nats.cursor.{self.keys.group}"

    # -- one connection --------------------------------------------------------------------------

    async def _run_once(self) -> None:
        self.status.state = LinkState.CONNECTING
        js: JetStreamClient = await nats_transport.connect(self.url, self.options,
                                          name=f"switchboard-{self.device_id[:8]}")  # fmt: skip
        self._js = js
        try:
            info = await js.ensure_stream(
                self.stream, [f"{self.prefix}.*"], replicas=self.replicas,
                duplicate_window=DUPLICATE_WINDOW, max_consumers=MAX_CONSUMERS,
            )  # fmt: skip
            self._target = info.last_seq
            self._kv = kv = await js.ensure_bucket(
                self.bucket, ttl=PRESENCE_TTL, replicas=self.replicas
            )
            await self._resync_own(js)
            start = await self._load_cursor(info.created)
            self._cursor, self._saved_at = start, 0.0

            async def consume(msgs: list[StreamMessage]) -> None:
                await self._consume(msgs, info.created)

            await js.consume(self.stream, f"{self.prefix}.*", after=start, on_batch=consume,
                             max_batch=RECEIVE_CHUNK)  # fmt: skip
            await js.serve_requests(f"{self.direct_prefix}.{self.device_id}", self.direct_received)
            await kv.put(self.device_id, b"1")
            await self._connected(js.server)
            self.status.protocol = "JetStream"
            await run_until_first_ends(
                {
                    "nats.lost": js.wait_closed(),
                    "nats.publish_loop": self._publish_loop(js),
                    "nats.presence_loop": self._presence_loop(kv),
                    "nats.watch_loop": self._watch_loop(kv),
                }
            )
            raise SwitchboardError(f"connection to {self.url.split('?', 1)[0]} ended")
        finally:
            self._js, self._kv = None, None
            await js.aclose()

    async def _send_direct(self, frame: Direct) -> None:
        js = self._js
        if js is None:
            raise Unreachable(frame.recipient, f"link to {self.url} is not connected")
        subject, payload = f"{self.direct_prefix}.{frame.recipient}", encode_frame(frame)
        loop = asyncio.get_running_loop()
        for attempt in range(DIRECT_ATTEMPTS):
            wait = max(DIRECT_ACK_TIMEOUT, 4 * self._rtt) * 2**attempt
            started = loop.time()
            try:
                acked = await js.request(subject, payload, timeout=wait)
            except NoResponders:
                raise Unreachable(frame.recipient, f"not connected to {self.url}") from None
            if acked:
                self._rtt = 0.8 * self._rtt + 0.2 * (loop.time() - started)
                return
            log.debug("x directed frame to %s unacknowledged; sending again", frame.recipient[:8])
        raise Unreachable(frame.recipient, f"acknowledged none of {DIRECT_ATTEMPTS} sends")

    async def _load_cursor(self, created: str) -> int:
        """Where to replay from: our stored cursor, unless the stream is not the one we read."""
        stored = await load_meta(self.log, self._meta_key)
        stream_id, _, cursor = (stored or "").rpartition("@")
        if stream_id != created or not cursor.isdigit():
            return 0
        self._cursor = int(cursor)
        return self._cursor if self._target is None or self._cursor <= self._target else 0

    async def _goodbye(self) -> None:
        if self._kv is not None:
            await self._kv.delete(self.device_id)

    # -- publishing our own events ---------------------------------------------------------------

    async def _resync_own(self, js: JetStreamClient) -> None:
        """Learn what the stream holds of us: its last message on our subject."""
        last = await js.last_message(self.stream, self.subject)
        if last is None:
            self._last_subject_seq = self.published = 0
            return
        frame = decode_frame(last.data)
        assert isinstance(frame, Batch) and frame.envelopes, "our subject holds our batches"
        self._last_subject_seq = last.stream_seq
        self.published = frame.envelopes[-1].seq

    async def _publish_loop(self, js: JetStreamClient) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while pending := self.own_pending(self.published, 5 * CHUNK_EVENTS):
                await self._publish(js, pending)

    async def _publish(self, js: JetStreamClient, pending: list[Event]) -> None:
        for chunk, frame in self.batches(pending):
            ack = await js.publish(
                self.subject, frame, msg_id=f"{self.device_id}/{chunk[0].seq}",
                expected_last_subject_seq=self._last_subject_seq,
            )  # fmt: skip
            if ack is None:
                await self._resync_own(js)  # someone (an earlier us) published first
                return
            if ack.stream != self.stream:  # cheaper than an expected-stream header on each
                raise SwitchboardError(f"stream {ack.stream} holds our subject, not {self.stream}")
            if ack.duplicate:
                before = self.published
                await self._resync_own(js)
                if self.published == before:
                    raise SwitchboardError("stream reports a duplicate it does not hold")
                return
            self._last_subject_seq = ack.seq
            self.published = chunk[-1].seq
            self.status.last_push = now_ts()

    # -- replay and live delivery ----------------------------------------------------------------

    async def _consume(self, msgs: list[StreamMessage], created: str) -> None:
        """Store the events of stream messages (skipping our own) and advance the cursor."""
        events = []
        for msg in msgs:
            if msg.subject != self.subject:
                events.extend(self.open_batch(msg.data))
        cursor = max(self._cursor, msgs[-1].stream_seq)
        value = f"{created}@{cursor}"
        now = asyncio.get_running_loop().time()
        if events:
            replay = not self._replayed_all

            def save_cursor(conn: sqlite3.Connection, received: Received) -> None:
                # The cursor commits with the events it passed. A gap means it skipped
                # something (a stream replaced under the same creation time?): then the
                # whole stream is read again, once, and the log drops what it holds.
                at = 0 if (received.gaps or self.reask) and replay else cursor
                local.set_meta(conn, self._meta_key, f"{created}@{at}")

            received = await self.store(events, save_cursor)
            self._saved_at = now
            if (received.gaps or self.reask) and replay:
                self._replayed_all, self.reask = True, False
                raise SwitchboardError("gap in the stream replay; replaying from the start")
        elif now - self._saved_at >= SAVE_EVERY:  # only our own messages: no hurry
            await save_meta(self.log, self._meta_key, value)
            self._saved_at = now
        self._cursor = cursor

    def _caught_up(self) -> bool:
        return self._target is not None and self._cursor >= self._target

    # -- presence --------------------------------------------------------------------------------

    async def _presence_loop(self, kv: PresenceBucket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(HEARTBEAT)
            await kv.put(self.device_id, b"1")
            now = loop.time()
            for device, heard in list(self._heard.items()):
                if now - heard > PRESENCE_TTL:
                    del self._heard[device]
                    await self._set_presence(device, False)

    async def _watch_loop(self, kv: PresenceBucket) -> None:
        loop = asyncio.get_running_loop()
        async for key, online in kv.watch():
            if key == self.device_id:
                continue
            if online:
                self._heard[key] = loop.time()
            else:
                self._heard.pop(key, None)
            await self._set_presence(key, online)
