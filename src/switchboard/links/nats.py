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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

import nats.js.errors
from nats.js import api

from switchboard.errors import SwitchboardError, Unreachable
from switchboard.events import now_ts
from switchboard.links.broker import (
    CHUNK_EVENTS,
    SAVE_EVERY,
    BrokerLink,
    load_meta,
    save_meta,
)
from switchboard.links.mqtt_topics import group_hash
from switchboard.links.status import LinkState
from switchboard.links.supervisor import run_until_first_ends
from switchboard.proto.frames import MAX_VECTOR_ORIGINS, Batch, Direct, decode_frame, encode_frame
from switchboard.store import local
from switchboard.transports import nats as nats_transport
from switchboard.transports.nats import NoResponders, map_nats_errors

if TYPE_CHECKING:
    import sqlite3

    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

    from switchboard.store.log import Received

log = logging.getLogger("switchboard.link")

DUPLICATE_WINDOW: Final = 120.0  # seconds the stream remembers Nats-Msg-Id values
PRESENCE_TTL: Final = 15.0  # a device not heard of for this long is offline
HEARTBEAT: Final = 5.0  # presence puts; three fit in one TTL
RECEIVE_CHUNK: Final = 256  # stream messages stored per transaction
ACK_TOKENS: Final = 9  # tokens of a consumer's reply subject without domain and account
WRONG_LAST_SEQUENCE: Final = 10071  # JetStream's err_code for a failed expected-last check
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

    _nc: NatsClient | None = field(init=False, default=None)
    _kv: KeyValue | None = field(init=False, default=None)
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
        lost = asyncio.Event()

        async def on_lost() -> None:
            lost.set()

        endpoint = self.url.split("?", 1)[0]
        nc = await nats_transport.connect(self.url, self.options, on_lost=on_lost,
                                          name=f"switchboard-{self.device_id[:8]}")  # fmt: skip
        self._nc = nc
        try:
            js = nc.jetstream()
            with map_nats_errors(endpoint):
                created = await self._ensure_stream(js)
                self._kv = await self._ensure_bucket(js)
                await self._resync_own(js)
            start = await self._load_cursor(created)
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            with map_nats_errors(endpoint):
                await self._subscribe(js, start, created, failed)
                await nc.subscribe(f"{self.direct_prefix}.{self.device_id}", cb=self._on_direct)
                await self._kv.put(self.device_id, b"1")
            await self._connected(nc.connected_url.netloc if nc.connected_url else endpoint)
            self.status.protocol = "JetStream"
            await self._run_tasks(js, failed, lost, endpoint)
        finally:
            self._nc, self._kv = None, None
            with contextlib.suppress(Exception):
                await nc.close()

    async def _run_tasks(
        self, js: JetStreamContext, failed: asyncio.Future[None], lost: asyncio.Event,
        endpoint: str,
    ) -> None:  # fmt: skip
        await run_until_first_ends(
            {
                "nats.consume": _raised(failed),
                "nats.publish": self._publish_loop(js, endpoint),
                "nats.presence": self._presence_loop(endpoint),
                "nats.watch": self._watch_loop(endpoint),
                "nats.lost": lost.wait(),
            }
        )
        raise SwitchboardError(f"connection to {endpoint} ended")

    async def _ensure_stream(self, js: JetStreamContext) -> str:
        """Create the group's stream unless it exists; return its creation time (an id)."""
        try:
            info = await js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            config = api.StreamConfig(
                name=self.stream,
                subjects=[f"{self.prefix}.*"],
                storage=api.StorageType.FILE,
                duplicate_window=DUPLICATE_WINDOW,
                num_replicas=self.replicas,
                allow_direct=True,
                max_consumers=MAX_CONSUMERS,
            )
            info = await js.add_stream(config)
        if (info.config.max_consumers or 0) < MAX_CONSUMERS:  # made by an older Switchboard
            config = replace(info.config, max_consumers=MAX_CONSUMERS)
            with contextlib.suppress(nats.js.errors.APIError):  # servers before 2.12 refuse
                info = await js.update_stream(config)
        self._target = info.state.last_seq
        return str(info.created or "")

    async def _ensure_bucket(self, js: JetStreamContext) -> KeyValue:
        try:
            return await js.key_value(self.bucket)
        except nats.js.errors.BucketNotFoundError:
            config = api.KeyValueConfig(
                bucket=self.bucket, ttl=PRESENCE_TTL, history=1, replicas=self.replicas
            )
            return await js.create_key_value(config)

    async def _load_cursor(self, created: str) -> int:
        """Where to replay from: our stored cursor, unless the stream is not the one we read."""
        stored = await load_meta(self.log, self._meta_key)
        stream_id, _, cursor = (stored or "").rpartition("@")
        if stream_id != created or not cursor.isdigit():
            return 0
        self._cursor = int(cursor)
        return self._cursor if self._target is None or self._cursor <= self._target else 0

    async def _subscribe(
        self, js: JetStreamContext, start: int, created: str, failed: asyncio.Future[None]
    ) -> None:
        """Read the stream from ``start`` on; a failure to store ends the connection."""
        batch: list[Msg] = []
        sub: list[JetStreamContext.PushSubscription] = []

        async def deliver(msg: Msg) -> None:
            # nats-py calls this for one message at a time, in order, and buffers the rest:
            # while more are buffered (a replay), gather them to store in one transaction.
            if failed.done():
                return  # the connection is ending; what was not stored is read again
            batch.append(msg)
            if len(batch) < RECEIVE_CHUNK and sub and sub[0].pending_msgs:
                return
            msgs = batch[:]
            batch.clear()
            try:
                await self._consume(msgs, created)
            except Exception as exc:  # noqa: BLE001 - raised again in the link's task
                if not failed.done():
                    failed.set_exception(exc)

        if start:
            config = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start + 1
            )
        else:
            config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL)
        self._cursor, self._saved_at = start, 0.0
        sub.append(await js.subscribe(
            f"{self.prefix}.*", stream=self.stream, cb=deliver, ordered_consumer=True,
            config=config, idle_heartbeat=2.0,
        ))  # fmt: skip

    async def _goodbye(self) -> None:
        if self._kv is not None:
            with map_nats_errors(self.url):
                await self._kv.delete(self.device_id)

    # -- publishing our own events ---------------------------------------------------------------

    async def _resync_own(self, js: JetStreamContext) -> None:
        """Learn what the stream holds of us: its last message on our subject."""
        try:
            raw = await js.get_last_msg(self.stream, self.subject)
        except nats.js.errors.NotFoundError:
            self._last_subject_seq = self.published = 0
            return
        frame = decode_frame(raw.data or b"")
        assert isinstance(frame, Batch) and frame.envelopes, "our subject holds our batches"
        self._last_subject_seq = raw.seq or 0
        self.published = frame.envelopes[-1].seq

    async def _publish_loop(self, js: JetStreamContext, endpoint: str) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while pending := self.own_pending(self.published, 5 * CHUNK_EVENTS):
                with map_nats_errors(endpoint):
                    await self._publish(js, pending)

    async def _publish(self, js: JetStreamContext, pending: list[Any]) -> None:
        for chunk, frame in self.batches(pending):
            headers = {
                "Nats-Msg-Id": f"{self.device_id}/{chunk[0].seq}",
                "Nats-Expected-Last-Subject-Sequence": str(self._last_subject_seq),
            }
            try:
                ack = await js.publish(self.subject, frame, headers=headers)
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != WRONG_LAST_SEQUENCE:
                    raise
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

    async def _consume(self, msgs: list[Msg], created: str) -> None:
        """Store the events of stream messages (skipping our own) and advance the cursor."""
        events = []
        for msg in msgs:
            if msg.subject != self.subject:
                events.extend(self.open_batch(msg.data))
        cursor = max(self._cursor, _stream_seq(msgs[-1]))
        value = f"{created}@{cursor}"
        now = asyncio.get_running_loop().time()
        if events:
            replay = not self._replayed_all

            def save_cursor(conn: sqlite3.Connection, received: Received) -> None:
                # The cursor commits with the events it passed. A gap means it skipped
                # something (a stream replaced under the same creation time?): then the
                # whole stream is read again, once, and the log drops what it holds.
                at = 0 if received.gaps and replay else cursor
                local.set_meta(conn, self._meta_key, f"{created}@{at}")

            received = await self.store(events, save_cursor)
            self._saved_at = now
            if received.gaps and replay:
                self._replayed_all = True
                raise SwitchboardError("gap in the stream replay; replaying from the start")
        elif now - self._saved_at >= SAVE_EVERY:  # only our own messages: no hurry
            await save_meta(self.log, self._meta_key, value)
            self._saved_at = now
        self._cursor = cursor

    def _caught_up(self) -> bool:
        return self._target is not None and self._cursor >= self._target

    # -- directed frames -------------------------------------------------------------------------

    async def _send_direct(self, frame: Direct) -> None:
        nc = self._nc
        if nc is None:
            raise Unreachable(frame.recipient, f"link to {self.url} is not connected")
        subject, payload = f"{self.direct_prefix}.{frame.recipient}", encode_frame(frame)
        loop = asyncio.get_running_loop()
        for attempt in range(DIRECT_ATTEMPTS):
            wait = max(DIRECT_ACK_TIMEOUT, 4 * self._rtt) * 2**attempt
            started = loop.time()
            try:
                acked = await nats_transport.request(
                    nc, subject, payload, timeout=wait, endpoint=self.url
                )
            except NoResponders:
                raise Unreachable(frame.recipient, f"not connected to {self.url}") from None
            if acked:
                self._rtt = 0.8 * self._rtt + 0.2 * (loop.time() - started)
                return
            log.debug("x directed frame to %s unacknowledged; sending again", frame.recipient[:8])
        raise Unreachable(frame.recipient, f"acknowledged none of {DIRECT_ATTEMPTS} sends")

    async def _on_direct(self, msg: Msg) -> None:
        await nats_transport.acknowledge(msg)
        self.direct_received(msg.data)

    # -- presence --------------------------------------------------------------------------------

    async def _presence_loop(self, endpoint: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(HEARTBEAT)
            assert self._kv is not None
            with map_nats_errors(endpoint):
                await self._kv.put(self.device_id, b"1")
            now = loop.time()
            for device, heard in list(self._heard.items()):
                if now - heard > PRESENCE_TTL:
                    del self._heard[device]
                    await self._set_presence(device, False)

    async def _watch_loop(self, endpoint: str) -> None:
        assert self._kv is not None
        loop = asyncio.get_running_loop()
        with map_nats_errors(endpoint):
            watcher = await self._kv.watchall()
            async for entry in watcher:
                if entry is None or entry.key == self.device_id:
                    continue  # None: the initial values were all delivered
                online = entry.operation not in ("DEL", "PURGE")
                if online:
                    self._heard[entry.key] = loop.time()
                else:
                    self._heard.pop(entry.key, None)
                await self._set_presence(entry.key, online)


async def _raised(failed: asyncio.Future[None]) -> None:
    """Wait for the consumer to fail (it never ends otherwise) and raise its failure."""
    await failed


def _stream_seq(msg: Msg) -> int:
    """The stream sequence of a message a consumer delivered.

    It is the sixth token of the reply (ack) subject, ``$JS.ACK.<stream>.<consumer>.<delivered>.
    <stream seq>.<consumer seq>.<time>.<pending>``; ``msg.metadata`` parses the same and more
    (a timestamp) at several times the cost, and still reads any other form of that subject.
    """
    tokens = (msg.reply or "").split(".")
    if len(tokens) == ACK_TOKENS and tokens[5].isdigit():
        return int(tokens[5])
    return msg.metadata.sequence.stream
