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
- **Catch-up**: the sans-IO ``proto.catchup.CatchUp`` decides when a device announces what it
  holds (``Have`` on ``have/<self>``) and whom it answers with what (a ``Batch`` on
  ``to/<asker>``): the rules, and why they converge, are in its docstring. This link feeds it
  what arrives and the loop's clock, draws its random delays with ``random.uniform``, and does
  what it asks (``catchup_loop``; each answer in a task of its own, capped at ``MAX_ANSWER``
  events: the asker's next ``Have`` asks for the rest).
- **Presence**: ``presence/<self>`` holds a retained ``1`` while we are connected; our last will
  (retained ``0``) marks us offline when our connection dies, and we publish ``0`` on a clean
  stop.
- **Directed frames** (``links.channel``) go to ``dm/<device>`` at **QoS 0**, only to a device
  that is online. The channel acknowledges and resends on its own, and QoS 1 cost a round
  trip of 40-90 ms here: a broker with Nagle's algorithm on (Mosquitto's default) holds the
  answer behind its PUBACK of the call until our delayed ACK (40 ms). At QoS 0 a broker
  queues nothing for a device that went away (and with MQTT 5 the frame would expire after
  ``DIRECT_EXPIRY`` anyway); a frame lost with a connection is sent again by the channel.

Convergence, with the relay's guarantee, holds for every device that is online together with
a holder of the events; an origin's events are unreachable only while the origin and every
holder are offline, as with any peer-to-peer log. "Caught up" (``wait_caught_up``) cannot be
exact here, since nobody knows the whole group's log (``CatchUp.is_caught_up``).

Every call to the broker goes through ``transports.brokers.MqttClient`` (aiomqtt behind it,
in ``transports.mqtt``); this module sees no library type and no library exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from switchboard.errors import ConnectError, RemoteProtocolError, SwitchboardError, Unreachable
from switchboard.events import now_ts
from switchboard.links.broker import CHUNK_EVENTS, SAVE_EVERY, BrokerLink, load_meta, save_meta
from switchboard.links.mqtt_topics import OFFLINE, ONLINE, Kind, Topics
from switchboard.links.status import LinkState
from switchboard.links.supervisor import log, run_until_first_ends
from switchboard.proto.catchup import CatchUp, SendAnswer, SendHave
from switchboard.proto.frames import Direct, Have, decode_frame, encode_frame
from switchboard.transports import mqtt as mqtt_transport
from switchboard.transports.mqtt import V5, V311, VersionRefused

if TYPE_CHECKING:
    from switchboard.transports.brokers import MqttClient
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
MAX_ANSWER: Final = 5 * CHUNK_EVENTS  # events per answer; the asker's next Have asks for more
DIRECT_EXPIRY: Final = 30  # seconds a directed frame may wait in a broker's queue (MQTT 5)

Inbox = asyncio.Queue[tuple[Kind, str, bytes]]


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
                client = await mqtt_transport.connect(url, options, timeout=timeout)
                await client.aclose()
                return client.endpoint
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
    _mqtt: MqttClient | None = field(init=False, default=None)
    # The catch-up protocol, kept across connections (what others hold outlives one).
    _catchup: CatchUp | None = field(init=False, default=None)
    _nudge: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _answers: dict[str, asyncio.Task[None]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._topics = Topics(self.keys.group, self.device_id)
        self._meta_key = f"link.mqtt.published.{self.keys.group}"

    def _core(self) -> CatchUp:
        if self._catchup is None:
            now = asyncio.get_running_loop().time()
            self._catchup = CatchUp(self.device_id, now, random.uniform)
        return self._catchup

    def _caught_up(self) -> bool:
        now = asyncio.get_running_loop().time()
        return self._catchup is not None and self._catchup.is_caught_up(now)

    # -- one connection --------------------------------------------------------------------------

    async def _run_once(self) -> None:
        self.status.state = LinkState.CONNECTING
        self.published = max(self.published, int(await load_meta(self.log, self._meta_key) or 0))
        inbox: Inbox = asyncio.Queue()
        client = await self._connect(inbox)
        try:
            await client.subscribe(self._topics.subscriptions)
            await client.publish(self._topics.of("presence", self.device_id), ONLINE, retain=True)
            self._mqtt = client
            self._core().connect(asyncio.get_running_loop().time())
            await self._connected(client.endpoint)
            self.status.protocol = "MQTT 5" if client.version == V5 else "MQTT 3.1.1"
            self._nudge.set()
            try:
                await run_until_first_ends(
                    {
                        "mqtt.receive_loop": self._receive_loop(inbox),
                        "mqtt.lost": client.wait_closed(),
                        "mqtt.publish_loop": self._publish_loop(client),
                        "mqtt.catchup_loop": self._catchup_loop(client),
                    }
                )
            except Exception:
                # paho acknowledged these to the broker: store them now, or they would wait
                # for a Have round (not when cancelled: stop() wants us gone).
                await self._drain(inbox)
                raise
        finally:
            self._mqtt = None
            for task in self._answers.values():
                task.cancel()
            self._answers.clear()
            await client.aclose()

    async def _connect(self, inbox: Inbox) -> MqttClient:
        """Connect with MQTT 5, or 3.1.1 from the first broker refusal of version 5 on.

        MQTT 5 lets us subscribe without our own messages (No Local): the broker does not
        send every batch back to its publisher.
        """

        def deliver(topic: str, payload: bytes) -> None:  # as paho reads it: filter, hand over
            parsed = self._topics.parse(topic)
            if parsed is not None:
                kind, device = parsed
                if device != self.device_id or kind in ("to", "dm"):
                    inbox.put_nowait((kind, device, payload))

        will = (self._topics.of("presence", self.device_id), OFFLINE, True)
        version = self.version
        while True:
            try:
                client: MqttClient = await mqtt_transport.connect(
                    self.url, self.options, identifier=self._topics.client_id(), will=will,
                    clean_session=False, version=version, deliver=deliver, timeout=TIMEOUT,
                )  # fmt: skip
            except ConnectError as exc:
                # Some brokers close the connection on an MQTT 5 CONNECT instead of refusing
                # it: until 5 has worked once, try 3.1.1 before giving up.
                if version == V5 and (isinstance(exc, VersionRefused) or not self._spoke_5):
                    version = V311
                    continue
                raise
            if version == V311 and self.version == V5:
                log.info("= mqtt broker %s speaks 3.1.1, not 5", client.endpoint)
            self.version = version
            self._spoke_5 = self._spoke_5 or version == V5
            return client

    async def _drain(self, inbox: Inbox) -> None:
        """Store the batches left in the inbox of a connection that ended."""
        while not inbox.empty():
            kind, _, payload = inbox.get_nowait()
            if kind in ("ev", "to"):
                await self.store(self.open_batch(payload))

    async def _goodbye(self) -> None:
        if self._mqtt is not None:
            await self._mqtt.publish(
                self._topics.of("presence", self.device_id), OFFLINE, retain=True
            )
        await save_meta(self.log, self._meta_key, str(self.published))

    # -- loops -----------------------------------------------------------------------------------

    async def _receive_loop(self, inbox: Inbox) -> None:
        while True:
            await self._on_message(*await inbox.get())

    async def _publish_loop(self, client: MqttClient) -> None:
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
                    await client.publish(topic, frame)
                    self.published = chunk[-1].seq
                    self.status.last_push = now_ts()
            if saved != self.published and loop.time() - saved_at >= SAVE_EVERY:
                saved, saved_at = self.published, loop.time()
                await save_meta(self.log, self._meta_key, str(saved))

    async def _catchup_loop(self, client: MqttClient) -> None:
        """Do what the catch-up core asks, when it asks (its deadline, or new input)."""
        loop, core = asyncio.get_running_loop(), self._core()
        topic = self._topics.of("have", self.device_id)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, core.next_deadline() - loop.time())):
                    await self._nudge.wait()
            self._nudge.clear()
            core.tick(loop.time(), self.log.vector())
            for action in core.actions_to_take():
                if isinstance(action, SendHave):
                    await client.publish(topic, encode_frame(Have(vector=self.log.vector())))
                elif isinstance(action, SendAnswer):
                    self._answers[action.device] = asyncio.create_task(
                        self._answer(client, action), name=f"mqtt.answer:{action.device}"
                    )

    async def _answer(self, client: MqttClient, action: SendAnswer) -> None:
        loop, core = asyncio.get_running_loop(), self._core()
        topic = self._topics.of("to", action.device)
        events = self.log.since({**self.log.vector(), **action.want}, MAX_ANSWER)
        try:
            for chunk, frame in self.batches(events):
                await client.publish(topic, frame)
                core.answer_sent(action.device, {e.origin: e.seq for e in chunk}, loop.time())
        except SwitchboardError:
            pass  # the connection broke: the link's loops notice and reconnect
        finally:
            core.answer_done(action.device)
            self._answers.pop(action.device, None)

    # -- what arrives ----------------------------------------------------------------------------

    async def _send_direct(self, frame: Direct) -> None:
        client = self._mqtt
        if client is None:
            raise Unreachable(frame.recipient, f"link to {self.url} is not connected")
        topic = self._topics.of("dm", frame.recipient)
        await client.publish(topic, encode_frame(frame), expiry=DIRECT_EXPIRY, acknowledged=False)

    async def _on_message(self, kind: Kind, device: str, payload: bytes) -> None:
        if kind == "dm":
            self.direct_received(payload)
            return
        loop, core = asyncio.get_running_loop(), self._core()
        deadline = core.next_deadline()
        if kind == "presence":
            online = payload == ONLINE
            core.receive_presence(device, online)
            await self._set_presence(device, online)
        elif kind == "have":
            vector = self._have_of(payload)
            if vector is not None:
                core.receive_have(device, vector, self.log.vector(), loop.time())
        else:
            received = await self.store(self.open_batch(payload))
            gaps, self.reask = received.gaps > 0 or self.reask, False
            core.receive_batch(answer=kind == "to", gaps=gaps, now=loop.time())
        if core.has_actions() or core.next_deadline() < deadline:
            self._nudge.set()  # not per live batch: most change nothing for the catch-up loop

    def _have_of(self, payload: bytes) -> dict[str, int] | None:
        try:
            frame = decode_frame(payload)
        except RemoteProtocolError as exc:
            self._tampered(str(exc))
            return None
        return dict(frame.vector) if isinstance(frame, Have) else None
