"""The broker clients the links use: one small protocol for MQTT, one for NATS JetStream.

Theory of operation
-------------------
A broker link (``links.mqtt``, ``links.nats``) sees only these protocols and our error tree;
``transports.mqtt`` (aiomqtt) and ``transports.nats`` (nats-py) implement them, and every call
into those libraries, with the translation of what they raise, happens there. The protocols
say what a link needs of a broker, not what the libraries offer: publish and subscribe with
QoS 1 for MQTT; a stream with exact per-subject ordering, a consumer that replays it from a
sequence, and a key-value bucket for presence, for JetStream.

This module imports neither library, so the links' types load without them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from switchboard.errors import TransportError

#: Called with ``(topic, payload)`` for each MQTT message, on the loop, as it is read; it must
#: not block or raise.
Deliver = Callable[[str, bytes], None]


class MqttClient(Protocol):
    """One open connection to an MQTT broker, QoS 1 throughout."""

    endpoint: str  # the broker's URL, normalised ("mqtt://host:1883")
    version: int  # the protocol level spoken: ``transports.mqtt.V5`` or ``V311``

    async def subscribe(self, topics: list[str]) -> None:
        """Subscribe to ``topics`` (in MQTT 5 without our own messages: No Local).

        Raises:
            ConnectionLost: the connection broke.
        """

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        expiry: int | None = None,
        acknowledged: bool = True,
    ) -> None:
        """Publish one message and wait for the broker's acknowledgement (PUBACK).

        ``expiry``: seconds the broker may keep it queued for an offline subscriber (MQTT 5;
        3.1.1 has no expiry). ``acknowledged=False`` publishes at QoS 0 instead: no PUBACK,
        nothing queued for an offline subscriber, lost only with the connection.

        Raises:
            ConnectionLost: the connection broke.
            TransportTimeout: the broker did not acknowledge in time.
        """

    async def wait_closed(self) -> None:
        """Wait until the connection ends.

        Raises:
            ConnectionLost: always, once it has ended.
        """

    async def aclose(self) -> None:
        """Disconnect. Idempotent; never raises."""


@dataclass(frozen=True)
class StreamInfo:
    """What a link needs to know of its group's stream when it connects.

    Attributes:
        created: when the stream was created; it tells one incarnation from the next.
        last_seq: the stream sequence of its last message (0: empty).
    """

    created: str
    last_seq: int


@dataclass(frozen=True)
class StreamMessage:
    """One message of a stream, as a consumer delivered it or as last on a subject."""

    subject: str
    data: bytes
    stream_seq: int


@dataclass(frozen=True)
class PublishAck:
    """The stream's answer to a publish: where it stored the message, or that it had it."""

    stream: str
    seq: int
    duplicate: bool


class NoResponders(TransportError):
    """Nobody is subscribed to the subject a core NATS request went to."""


class PresenceBucket(Protocol):
    """A key-value bucket with a TTL: a key per device that is online."""

    async def put(self, key: str, value: bytes) -> None:
        """Put ``key`` (refreshes its TTL)."""

    async def delete(self, key: str) -> None:
        """Delete ``key``."""

    def watch(self) -> AsyncIterator[tuple[str, bool]]:
        """Yield ``(key, present)`` for every key now and every change from then on."""


class JetStreamClient(Protocol):
    """One open connection to a NATS server or cluster, with JetStream."""

    @property
    def server(self) -> str:
        """The server that answered (``host:4222``), for ``status``."""

    async def ensure_stream(
        self, name: str, subjects: list[str], *, replicas: int, duplicate_window: float,
        max_consumers: int,
    ) -> StreamInfo:  # fmt: skip
        """Create the stream unless it exists (raising an older one's consumer limit)."""

    async def ensure_bucket(self, name: str, *, ttl: float, replicas: int) -> PresenceBucket:
        """Open the key-value bucket, creating it unless it exists."""

    async def last_message(self, stream: str, subject: str) -> StreamMessage | None:
        """The stream's last message on ``subject`` (``None``: it has none)."""

    async def publish(
        self, subject: str, payload: bytes, *, msg_id: str, expected_last_subject_seq: int
    ) -> PublishAck | None:
        """Publish to the stream if its last message on ``subject`` is the one expected.

        Returns:
            The stream's acknowledgement, or ``None`` when the stream refused the publish
            because its last message on ``subject`` is another one (someone published first).
        """

    async def consume(
        self,
        stream: str,
        subjects: str,
        *,
        after: int,
        on_batch: Callable[[list[StreamMessage]], Awaitable[None]],
        max_batch: int,
    ) -> None:
        """Read ``stream`` in order from the message after sequence ``after`` (0: all), live.

        ``on_batch`` gets messages one call at a time, several (up to ``max_batch``) when more
        are waiting. If it raises, delivery stops and ``wait_closed`` raises that error.
        """

    async def request(self, subject: str, payload: bytes, *, timeout: float) -> bool:
        """Send a core NATS request (outside any stream); ``True`` once it is answered.

        Returns:
            ``False`` when no answer came within ``timeout``: core NATS can lose a message,
            so a caller that needs it delivered sends it again.

        Raises:
            NoResponders: nobody is subscribed to ``subject`` (the server says so at once).
            ConnectionLost: the connection broke.
        """

    async def serve_requests(self, subject: str, on_request: Callable[[bytes], None]) -> None:
        """Subscribe to ``subject`` with core NATS: answer each request at once (its
        acknowledgement), then hand its payload to ``on_request`` (which must not block)."""

    async def wait_closed(self) -> None:
        """Wait until the connection ends or a consumer failed.

        Raises:
            SwitchboardError: the consumer's failure, or ``ConnectionLost``.
        """

    async def aclose(self) -> None:
        """Close the connection. Idempotent; never raises."""
