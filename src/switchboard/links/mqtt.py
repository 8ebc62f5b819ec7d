"""``MqttLink``: a group's log replicated through any MQTT 3.1.1/5 broker.

Theory of operation
-------------------
An MQTT broker forwards live and keeps no history, so the devices of the group keep it: the
topic layout is in ``links.mqtt_topics``. With one persistent session per device (stable client
id, ``clean_session=False``, every subscription at QoS 1), the broker also queues what is
published while a device is briefly away, up to its own limit.

- **Live**: each device publishes its own new events, sealed, as ``Batch`` frames on
  ``ev/<self>``; the highest seq the broker acknowledged (PUBACK) is ``published``, saved in
  the store's meta (at most once a second, and on a clean stop), so events appended offline or
  before a crash go out on the next connection.
- **MQTT 5 where the broker speaks it** (3.1.1 from its first refusal on, or when it closes
  the connection on our MQTT 5 CONNECT before 5 ever worked there): subscriptions with
  *No Local*, so the broker does not send our own batches back to us; a persistent session
  that the broker keeps for ``transports.mqtt.SESSION_EXPIRY``.
- **Receiving**: paho's read callback hands each message to the connection's inbox (aiomqtt's
  ``queue_type``), and one task handles the inbox in order. paho has acknowledged a message
  once it is there, so when a connection breaks its inbox is stored before the link
  reconnects.
- **Catch-up**: a device announces what it holds (``Have`` on ``have/<self>``) on connecting,
  after each answer it receives, on a gap, and every ``HAVE_PERIOD``. A device that holds more
  of an origin *O* answers on ``to/<asker>`` when *O* is itself (at once) or *O* is offline
  (after a random delay of up to ``ANSWER_SPREAD``). Before answering it re-reads the asker's
  latest ``Have``: the asker announces each answer it received, so when several devices could
  answer, the first one's answer is visible on the bus and the others send only what is still
  missing (usually nothing). Answers are capped at ``MAX_ANSWER`` events; the asker's next
  ``Have`` asks for the rest.
- **Learning what we lack**: a ``Have`` showing a device ahead of us makes us announce our own
  ``Have`` (after the same kind of delay, and only if we are still behind then), which makes it
  answer us.
- **Presence**: ``presence/<self>`` holds a retained ``1`` while we are connected; our last will
  (retained ``0``) marks us offline when our connection dies, and we publish ``0`` on a clean
  stop.
- **Directed frames** (``links.channel``) go to ``dm/<device>`` at QoS 1, only to a device
  that is online; with MQTT 5 they expire after ``DIRECT_EXPIRY`` in a queue, so a broker does
  not keep them for a device that went away (3.1.1 brokers may queue them for its session:
  stale frames are then dropped by the device's channel).

Convergence, with the relay's guarantee: the log drops duplicates and gaps, so any order and
any repetition of batches is safe; a device behind on an origin keeps announcing (gaps,
periodic ``Have``) until the origin, or while it is offline any device holding more of it,
answers. Exactly what the relay guarantees holds for every device that is online together with
a holder of the events; an origin's events are unreachable only while the origin and every
holder are offline, as with any peer-to-peer log.

"Caught up" (``wait_caught_up``) cannot be exact here, since nobody knows the whole group's
log: it means our ``Have`` went out, the answer window passed, and batches stopped arriving.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from switchboard.errors import (
    ConnectError,
    RemoteProtocolError,
    SwitchboardError,
    TransportTimeout,
    Unreachable,
)
from switchboard.events import now_ts
from switchboard.links.broker import (
    CHUNK_EVENTS,
    SAVE_EVERY,
    BrokerLink,
    load_meta,
    save_meta,
)
from switchboard.links.mqtt_topics import OFFLINE, ONLINE, Kind, Topics
from switchboard.links.status import LinkState
from switchboard.links.supervisor import log, run_until_first_ends
from switchboard.proto import cursors
from switchboard.proto.frames import Direct, Have, decode_frame, encode_frame
from switchboard.transports import mqtt as mqtt_transport
from switchboard.transports.mqtt import V5, V311, VersionRefused, expiring, map_mqtt_errors

if TYPE_CHECKING:
    from collections.abc import Awaitable

    import aiomqtt

    from switchboard.transports.options import LinkOptions

# Tried in order by `group create --relay mqtt-public`; the first that accepts us is kept.
# Safe only because brokers see ciphertext (crypto.py); anyone may read these topics.
PUBLIC_BROKERS: Final = (
    "mqtt://broker.emqx.io:1883",
    "mqtt://test.mosquitto.org:1883",
    "mqtt://broker.hivemq.com:1883",
)
PUBLIC_ENV: Final = "SWITCHBOARD_MQTT_PUBLIC"  # comma-separated list that replaces the above
# Seconds for connecting and for each acknowledged call; under ``group create``'s wait for
# the link (10 s), so that what a refused TLS session says (``tls_refusal``) reaches the user.
TIMEOUT: Final = 5.0
HAVE_PERIOD: Final = 30.0  # every device announces what it holds this often (convergence)
ANSWER_SPREAD: Final = 1.0  # longest random delay before answering for an offline origin
HAVE_DEBOUNCE: Final = 0.05  # announcements asked for within this window go out as one
QUIET: Final = 0.5  # no batch for this long after the answer window: caught up
SENT_MEMORY: Final = 5.0  # what we answered counts as held by the asker for this long
MAX_ANSWER: Final = 5 * CHUNK_EVENTS  # events per answer; the asker's next Have asks for more
DIRECT_EXPIRY: Final = 30  # seconds a directed frame may wait in a broker's queue (MQTT 5)


def public_brokers() -> list[str]:
    """The public brokers ``mqtt-public`` tries, in order (``SWITCHBOARD_MQTT_PUBLIC`` wins)."""
    override = os.environ.get(PUBLIC_ENV, "").strip()
    if override:
        return [url.strip() for url in override.split(",") if url.strip()]
    return list(PUBLIC_BROKERS)


async def first_public_broker(options: LinkOptions, timeout: float) -> str:
    """Return the first public broker that accepts a connection.

    Raises:
        ConnectError: none did.
    """
    tried = []
    for url in public_brokers():
        try:
            async with asyncio.timeout(timeout):
                with map_mqtt_errors(url, connecting=True):
                    async with mqtt_transport.client(url, options, timeout=timeout):
                        return mqtt_transport.parse_url(url).url
        except (SwitchboardError, TimeoutError) as exc:
            tried.append(f"{url} ({exc})")
    raise ConnectError("mqtt-public", "no public broker answered: " + "; ".join(tried))


@dataclass(eq=False, kw_only=True)
class MqttLink(BrokerLink):
    """The link of one group through an MQTT broker."""

    kind = "mqtt"

    version: int = V5  # MQTT 5 until the broker refuses it (then 3.1.1 for good)
    _spoke_5: bool = field(init=False, default=False)
    _topics: Topics = field(init=False)
    _mqtt: aiomqtt.Client | None = field(init=False, default=None)
    _haves: dict[str, dict[str, int]] = field(init=False, default_factory=dict)
    _sent: dict[str, tuple[float, dict[str, int]]] = field(init=False, default_factory=dict)
    _pending: dict[str, asyncio.Task[None]] = field(init=False, default_factory=dict)
    _have_due: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _asked_at: float | None = field(init=False, default=None)
    _last_batch_at: float = field(init=False, default=0.0)
    _caught: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._topics = Topics(self.keys.group, self.device_id)
        self._meta_key = f"link.mqtt.published.{self.keys.group}"

    # -- one connection --------------------------------------------------------------------------

    async def _run_once(self) -> None:
        self.status.state = LinkState.CONNECTING
        endpoint = mqtt_transport.parse_url(self.url).url
        self.published = max(self.published, int(await load_meta(self.log, self._meta_key) or 0))
        inbox: asyncio.Queue[tuple[Kind, str, bytes]] = asyncio.Queue()
        client = await self._connect(endpoint, inbox)
        try:
            me = self._topics.of("presence", self.device_id)
            with map_mqtt_errors(endpoint):
                await client.subscribe(
                    mqtt_transport.subscriptions(self._topics.subscriptions, self.version)
                )
                await client.publish(me, ONLINE, qos=1, retain=True)
            self._mqtt = client
            self._asked_at, self._caught = None, False
            await self._connected(endpoint)
            self.status.protocol = "MQTT 5" if self.version == V5 else "MQTT 3.1.1"
            self._have_due.set()
            try:
                await self._run_tasks(client, endpoint, inbox)
            except Exception:
                # paho acknowledged these to the broker: store them now, or they would wait
                # for a Have round (not when cancelled: stop() wants us gone).
                await self._drain(inbox)
                raise
        finally:
            self._mqtt = None
            for task in self._pending.values():
                task.cancel()
            self._pending.clear()
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)

    async def _connect(
        self, endpoint: str, inbox: asyncio.Queue[tuple[Kind, str, bytes]]
    ) -> aiomqtt.Client:
        """Connect with MQTT 5, or 3.1.1 from the first broker refusal of version 5 on.

        MQTT 5 lets us subscribe without our own messages (No Local): the broker does not
        send every batch back to its publisher.
        """
        me = self._topics.of("presence", self.device_id)

        def deliver(message: aiomqtt.Message) -> None:  # as paho reads it: filter, hand over
            parsed = self._topics.parse(str(message.topic))
            payload = message.payload
            if parsed is not None and isinstance(payload, bytes | bytearray):
                kind, device = parsed
                if device != self.device_id or kind in ("to", "dm"):
                    inbox.put_nowait((kind, device, bytes(payload)))

        version = self.version
        while True:
            client = mqtt_transport.client(
                self.url, self.options, identifier=self._topics.client_id(),
                will=(me, OFFLINE, True), clean_session=False, version=version,
                deliver=deliver, timeout=TIMEOUT,
            )  # fmt: skip
            try:
                with map_mqtt_errors(endpoint, connecting=True):
                    await client.__aenter__()
            except (ConnectError, TransportTimeout) as exc:
                await _abandon(client)  # aiomqtt leaves paho's socket open after a failure
                if isinstance(exc, TransportTimeout):
                    refusal = await mqtt_transport.tls_refusal(self.url, self.options)
                    if refusal is not None:
                        raise refusal from None
                # Some brokers close the connection on an MQTT 5 CONNECT instead of refusing
                # it: until 5 has worked once, try 3.1.1 before giving up.
                refused = isinstance(exc, VersionRefused)
                if (
                    version == V5
                    and isinstance(exc, ConnectError)
                    and (refused or not self._spoke_5)
                ):
                    version = V311
                    continue
                raise
            if version == V311 and self.version == V5:
                log.info("= mqtt broker %s speaks 3.1.1, not 5", endpoint)
            self.version = version
            self._spoke_5 = self._spoke_5 or version == V5
            return client

    async def _drain(self, inbox: asyncio.Queue[tuple[Kind, str, bytes]]) -> None:
        """Store the batches left in the inbox of a connection that ended."""
        while not inbox.empty():
            kind, _, payload = inbox.get_nowait()
            if kind in ("ev", "to"):
                await self.store(self.open_batch(payload))

    async def _run_tasks(
        self, client: aiomqtt.Client, endpoint: str, inbox: asyncio.Queue[tuple[Kind, str, bytes]]
    ) -> None:
        await run_until_first_ends(
            {
                "mqtt.receive": self._receive_loop(inbox),
                "mqtt.lost": self._lost(client, endpoint),
                "mqtt.publish": self._publish_loop(client, endpoint),
                "mqtt.have": self._have_loop(client, endpoint),
            }
        )

    async def _goodbye(self) -> None:
        if self._mqtt is not None:
            me = self._topics.of("presence", self.device_id)
            with map_mqtt_errors(self.url):
                await self._mqtt.publish(me, OFFLINE, qos=1, retain=True)
        await save_meta(self.log, self._meta_key, str(self.published))

    # -- loops -----------------------------------------------------------------------------------

    async def _receive_loop(self, inbox: asyncio.Queue[tuple[Kind, str, bytes]]) -> None:
        while True:
            await self._on_message(*await inbox.get())

    async def _lost(self, client: aiomqtt.Client, endpoint: str) -> None:
        """Raise when the connection ends (messages go to the inbox; see ``_connect``)."""
        with map_mqtt_errors(endpoint):
            async for _ in client.messages:
                pass
        raise SwitchboardError("broker connection ended")

    async def _publish_loop(self, client: aiomqtt.Client, endpoint: str) -> None:
        topic = self._topics.of("ev", self.device_id)
        loop = asyncio.get_running_loop()
        saved, saved_at = self.published, 0.0
        while True:
            # Whatever is left unsaved is saved within SAVE_EVERY, even if nothing new comes.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SAVE_EVERY if saved != self.published else None):
                    await self._wake.wait()
            self._wake.clear()
            while pending := self.own_pending(self.published, MAX_ANSWER):
                for chunk, frame in self.batches(pending):
                    with map_mqtt_errors(endpoint):
                        await client.publish(topic, frame, qos=1)
                    self.published = chunk[-1].seq
                    self.status.last_push = now_ts()
            if saved != self.published and loop.time() - saved_at >= SAVE_EVERY:
                saved, saved_at = self.published, loop.time()
                await save_meta(self.log, self._meta_key, str(saved))

    async def _have_loop(self, client: aiomqtt.Client, endpoint: str) -> None:
        topic = self._topics.of("have", self.device_id)
        loop = asyncio.get_running_loop()
        while True:
            period = HAVE_PERIOD * random.uniform(0.8, 1.2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._have_due.wait(), period)
            await asyncio.sleep(HAVE_DEBOUNCE)
            self._have_due.clear()
            frame = encode_frame(Have(vector=self.log.vector()))
            with map_mqtt_errors(endpoint):
                await client.publish(topic, frame, qos=1)
            if self._asked_at is None:
                self._asked_at = loop.time()

    # -- what arrives ----------------------------------------------------------------------------

    async def _send_direct(self, frame: Direct) -> None:
        client = self._mqtt
        if client is None:
            raise Unreachable(frame.recipient, f"link to {self.url} is not connected")
        topic = self._topics.of("dm", frame.recipient)
        with map_mqtt_errors(self.url):
            await client.publish(topic, encode_frame(frame), qos=1,
                                 properties=expiring(DIRECT_EXPIRY, self.version))  # fmt: skip

    async def _on_message(self, kind: Kind, device: str, payload: bytes) -> None:
        if kind == "dm":
            self.direct_received(payload)
        elif kind == "presence":
            online = payload == ONLINE
            if online and device not in self.online:
                self._sent.pop(device, None)  # a new session: trust its next Have as is
            await self._set_presence(device, online)
        elif kind == "have":
            self._on_have(device, payload)
        else:
            received = await self.store(self.open_batch(payload))
            self._last_batch_at = asyncio.get_running_loop().time()
            if received.gaps or kind == "to":
                self._have_due.set()  # ask for the rest / show the group we were answered

    def _on_have(self, device: str, payload: bytes) -> None:
        try:
            frame = decode_frame(payload)
        except RemoteProtocolError as exc:
            self._tampered(str(exc))
            return
        if not isinstance(frame, Have):
            return
        self._haves[device] = dict(frame.vector)
        mine = self.log.vector()
        if self._servable(device) and device not in self._pending:
            delay = 0.0 if mine.get(self.device_id, 0) > frame.vector.get(self.device_id, 0) else (
                random.uniform(HAVE_DEBOUNCE, ANSWER_SPREAD)
            )  # fmt: skip
            self._later(device, delay, self._answer(device))
        if _ahead(frame.vector, mine) and f"have:{device}" not in self._pending:
            delay = random.uniform(HAVE_DEBOUNCE, ANSWER_SPREAD / 2)
            self._later(f"have:{device}", delay, self._announce_if_behind(device))

    def _later(self, key: str, delay: float, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await asyncio.sleep(delay)
                await coro
            finally:
                self._pending.pop(key, None)

        self._pending[key] = asyncio.create_task(run(), name=f"mqtt.{key}")

    async def _announce_if_behind(self, device: str) -> None:
        if _ahead(self._haves.get(device, {}), self.log.vector()):
            self._have_due.set()

    def _held_by(self, device: str) -> dict[str, int]:
        """What ``device`` is known to hold: its last Have and what we recently sent it."""
        held = self._haves.get(device, {})
        sent_at, sent = self._sent.get(device, (0.0, {}))
        if asyncio.get_running_loop().time() - sent_at < SENT_MEMORY:
            held = cursors.merge(held, sent)
        return held

    def _servable(self, device: str) -> dict[str, int]:
        """Per origin we should answer ``device`` for: the seq it holds."""
        held, mine = self._held_by(device), self.log.vector()
        return {
            origin: held.get(origin, 0)
            for origin, seq in mine.items()
            if seq > held.get(origin, 0)
            and origin != device
            and (origin == self.device_id or origin not in self.online)
        }

    async def _answer(self, device: str) -> None:
        client, want = self._mqtt, self._servable(device)
        if client is None or not want:
            return
        bound = {**self.log.vector(), **want}
        events = self.log.since(bound, MAX_ANSWER)
        topic = self._topics.of("to", device)
        for chunk, frame in self.batches(events):
            with map_mqtt_errors(self.url):
                await client.publish(topic, frame, qos=1)
            sent = cursors.merge(self._held_by(device), {e.origin: e.seq for e in chunk})
            self._sent[device] = (asyncio.get_running_loop().time(), sent)

    def _caught_up(self) -> bool:
        if self._caught:
            return True
        now = asyncio.get_running_loop().time()
        if self._asked_at is None or now - self._asked_at < ANSWER_SPREAD + QUIET:
            return False
        self._caught = now - self._last_batch_at >= QUIET
        return self._caught


def _ahead(theirs: dict[str, int], mine: dict[str, int]) -> bool:
    return any(seq > mine.get(origin, 0) for origin, seq in theirs.items())


async def _abandon(client: aiomqtt.Client) -> None:
    """Close what a failed connect left open (a late CONNACK would revive our session)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await client.__aexit__(None, None, None)
