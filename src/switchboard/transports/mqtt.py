"""MQTT adapter (aiomqtt): broker connections with mapped errors.

Theory of operation
-------------------
Everything that touches aiomqtt/paho for Switchboard goes through this module, so their
exceptions stop here (``map_mqtt_errors``): ``connect`` returns an ``AiomqttClient``, the
``transports.brokers.MqttClient`` the MQTT link uses, and the links above see only that and
our ``TransportError`` tree (and ``AuthError`` for a refused login or certificate).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import aiomqtt
from paho.mqtt import client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from switchboard.errors import (
    AuthError,
    ConnectError,
    ConnectionLost,
    SwitchboardError,
    TransportTimeout,
)
from switchboard.transports import tls

if TYPE_CHECKING:
    from switchboard.transports.brokers import Deliver
    from switchboard.transports.options import LinkOptions

DEFAULT_PORTS: Final = {"mqtt": 1883, "mqtts": 8883}
# Seconds between MQTT PINGREQs; the broker fires our last will after 1.5x this of silence.
KEEPALIVE: Final = 15
# paho CONNACK codes (3.1.1) and reason codes (5) that mean "your login was refused".
_AUTH_CODES: Final = frozenset({4, 5, 134, 135})
# ... and "I do not speak this protocol version" (3.1.1's 1, MQTT 5's 132).
_VERSION_CODES: Final = frozenset({1, 132})
# Protocol levels: MQTT 5 and 3.1.1.
V5: Final = 5
V311: Final = 4
# Seconds an MQTT 5 broker keeps a persistent session (and queues QoS 1 messages for it)
# while the client is away; 3.1.1 sessions have no expiry. Brokers may cap it lower.
SESSION_EXPIRY: Final = 7 * 24 * 3600


def expiring(seconds: int, version: int) -> Properties | None:
    """PUBLISH properties that make an MQTT 5 broker drop the message after ``seconds`` if it
    is still queued for an offline subscriber (``None`` on 3.1.1, which has no expiry)."""
    if version != V5:
        return None
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.MessageExpiryInterval = seconds
    return properties


class VersionRefused(ConnectError):
    """The broker does not speak the MQTT version we asked for (try 3.1.1)."""


@dataclass(frozen=True)
class BrokerAddress:
    """Where an ``mqtt://`` or ``mqtts://`` URL points."""

    host: str
    port: int
    tls: bool

    @property
    def url(self) -> str:
        """The URL again, normalised (no credentials ever)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_url(url: str) -> BrokerAddress:
    """Parse ``mqtt://HOST[:PORT]`` or ``mqtts://HOST[:PORT]``.

    Raises:
        ConnectError: not such a URL, or it carries credentials (they belong in link options).
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    netloc = rest.split("/", 1)[0]
    if not sep or scheme not in DEFAULT_PORTS or not netloc:
        raise ConnectError(url, "expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    if "@" in netloc:
        raise ConnectError(scheme + "://...", "credentials go in --username/--password-file")
    host, _, port = netloc.rpartition(":") if netloc.count(":") == 1 else (netloc, "", "")
    try:
        number = int(port) if port else DEFAULT_PORTS[scheme]
    except ValueError:
        raise ConnectError(url, f"bad port {port!r}") from None
    return BrokerAddress(host=host.strip("[]"), port=number, tls=scheme == "mqtts")


def subscriptions(
    topics: list[str], version: int
) -> list[tuple[str, SubscribeOptions]] | list[tuple[str, int]]:
    """QoS 1 subscriptions to ``topics``; in MQTT 5 without our own messages (No Local)."""
    if version == V5:
        return [(topic, SubscribeOptions(qos=1, noLocal=True)) for topic in topics]
    return [(topic, 1) for topic in topics]


async def tls_refusal(url: str, options: LinkOptions, timeout: float = 3.0) -> AuthError | None:
    """Why a TLS broker that did not answer our CONNECT refused us, if its TLS layer says so.

    With TLS 1.3 the client's handshake completes before the server checks the client's
    certificate, so a broker that requires one we did not give answers with an alert that
    paho only logs: the connection then looks like a broker that never answers. Called after
    such a timeout, this opens a bare TLS connection, sends nothing and reads: a broker speaks
    only after CONNECT, so whatever arrives is that alert.
    """
    address = parse_url(url)
    context = tls.context(options, address.tls)
    if context is None:
        return None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(address.host, address.port, ssl=context)
    except (OSError, TimeoutError):  # ssl.SSLError is an OSError: not the case we explain
        return None
    try:
        async with asyncio.timeout(timeout):
            await reader.read(1)
    except ssl.SSLError as exc:
        return tls.refused(address.url, exc)
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(timeout):
                await writer.wait_closed()
    return None


@contextlib.contextmanager
def map_mqtt_errors(endpoint: str, *, connecting: bool = False) -> Iterator[None]:
    """Translate aiomqtt/paho exceptions raised inside the block into our tree.

    Raises:
        AuthError: the broker refused our login.
        ConnectError: connecting failed.
        TransportTimeout: the broker did not answer in time.
        ConnectionLost: an open connection broke.
    """
    try:
        yield
    except SwitchboardError:
        raise
    except aiomqtt.MqttCodeError as exc:
        code = getattr(exc.rc, "value", exc.rc)
        if connecting and code in _AUTH_CODES:
            raise AuthError(f"broker {endpoint} refused the login ({exc})") from exc
        if connecting and code in _VERSION_CODES:
            raise VersionRefused(endpoint, str(exc).lower()) from exc
        if connecting:
            raise ConnectError(endpoint, str(exc).lower()) from exc
        raise ConnectionLost(f"connection to {endpoint} broke: {exc}") from exc
    except aiomqtt.MqttError as exc:
        cause = exc.__context__  # aiomqtt raises `from None` over paho's socket errors
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise tls.untrusted_certificate(endpoint, cause) from exc
        if isinstance(cause, ssl.SSLError) and (refused := tls.refused(endpoint, cause)):
            raise refused from exc
        if "timed out" in str(exc):
            raise TransportTimeout(f"broker {endpoint} did not answer in time") from exc
        if connecting:
            raise ConnectError(endpoint, str(exc).lower()) from exc
        raise ConnectionLost(f"connection to {endpoint} broke: {exc}") from exc
    except ssl.SSLCertVerificationError as exc:
        raise tls.untrusted_certificate(endpoint, exc) from exc
    except (OSError, ssl.SSLError) as exc:
        if isinstance(exc, ssl.SSLError) and (refused := tls.refused(endpoint, exc)):
            raise refused from exc
        if connecting:
            raise ConnectError(endpoint, (exc.strerror or str(exc)).lower()) from exc
        raise ConnectionLost(f"connection to {endpoint} broke: {exc}") from exc


class AiomqttClient:
    """An open aiomqtt connection: the ``transports.brokers.MqttClient`` of the MQTT link.

    Every call maps aiomqtt's and paho's exceptions (``map_mqtt_errors``).
    """

    def __init__(self, client: aiomqtt.Client, endpoint: str, version: int) -> None:
        self.endpoint = endpoint
        self.version = version
        self._client = client

    async def subscribe(self, topics: list[str]) -> None:
        """QoS 1 subscriptions; in MQTT 5 without our own messages (No Local)."""
        with map_mqtt_errors(self.endpoint):
            await self._client.subscribe(subscriptions(topics, self.version))

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        expiry: int | None = None,
        acknowledged: bool = True,
    ) -> None:
        """Publish at QoS 1 and wait for the PUBACK (``expiry``: MQTT 5 message expiry), or
        at QoS 0 when not ``acknowledged``."""
        properties = None if expiry is None else expiring(expiry, self.version)
        with map_mqtt_errors(self.endpoint):
            await self._client.publish(
                topic, payload, qos=1 if acknowledged else 0, retain=retain,
                properties=properties,
            )  # fmt: skip

    async def wait_closed(self) -> None:
        """Wait until the connection ends (messages go to ``deliver``; see ``connect``)."""
        with map_mqtt_errors(self.endpoint):
            async for _ in self._client.messages:
                pass
        raise ConnectionLost("broker connection ended")

    async def aclose(self) -> None:
        """Disconnect; whatever the library says about a connection already gone is moot."""
        await _abandon(self._client)


async def connect(
    url: str,
    options: LinkOptions,
    *,
    identifier: str | None = None,
    will: tuple[str, bytes, bool] | None = None,
    clean_session: bool = True,
    timeout: float = 10.0,
    version: int = V311,
    deliver: Deliver | None = None,
) -> AiomqttClient:
    """Connect to an MQTT broker.

    Args:
        url: ``mqtt://`` or ``mqtts://`` broker.
        options: login and TLS files.
        identifier: MQTT client id; stable ids with ``clean_session=False`` keep a
            persistent session (the broker queues QoS 1 messages while we are away).
        will: ``(topic, payload, retain)`` the broker publishes if we vanish.
        clean_session: whether the broker forgets our session when we disconnect.
        timeout: seconds for connecting and for each acknowledged call.
        version: ``V311`` or ``V5``; an MQTT 5 persistent session lasts ``SESSION_EXPIRY``.
        deliver: called with ``(topic, payload)`` of each incoming message as paho reads it,
            on the loop; it must not raise or block. This spares each message aiomqtt's
            iterator, which starts a task and an ``asyncio.wait`` per message.

    Raises:
        AuthError: the broker refused the login, or its TLS layer our certificate.
        VersionRefused: the broker does not speak ``version``.
        ConnectError: connecting failed.
        TransportTimeout: the broker did not answer in time.
    """
    endpoint = parse_url(url).url
    client = _client(url, options, identifier=identifier, will=will, clean_session=clean_session,
                     timeout=timeout, version=version, deliver=deliver)  # fmt: skip
    try:
        with map_mqtt_errors(endpoint, connecting=True):
            await client.__aenter__()
    except BaseException as exc:
        await _abandon(client)  # aiomqtt leaves paho's socket open after a failure
        if isinstance(exc, TransportTimeout):
            refusal = await tls_refusal(url, options)
            if refusal is not None:
                raise refusal from None
        raise
    return AiomqttClient(client, endpoint, version)


async def _abandon(client: aiomqtt.Client) -> None:
    """Close what a connection left open (a late CONNACK would revive our session)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await client.__aexit__(None, None, None)


def _client(
    url: str,
    options: LinkOptions,
    *,
    identifier: str | None = None,
    will: tuple[str, bytes, bool] | None = None,
    clean_session: bool = True,
    timeout: float = 10.0,
    version: int = V311,
    deliver: Deliver | None = None,
) -> aiomqtt.Client:
    """Return an aiomqtt client for a broker URL (``connect`` enters it); see ``connect``.

    With ``deliver``, ``client.messages`` yields nothing: ``wait_closed`` iterates it only to
    learn that the connection ended.
    """
    address = parse_url(url)
    queue_type = None
    if deliver is not None:
        handler = deliver

        class Handoff(asyncio.Queue[aiomqtt.Message]):
            def put_nowait(self, item: aiomqtt.Message) -> None:
                payload = item.payload
                if isinstance(payload, bytes | bytearray):
                    handler(str(item.topic), bytes(payload))

        queue_type = Handoff
    properties = None
    if version == V5 and not clean_session:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY
    return aiomqtt.Client(
        address.host,
        address.port,
        username=options.username,
        password=options.password,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5 if version == V5 else aiomqtt.ProtocolVersion.V311,
        will=None if will is None else aiomqtt.Will(will[0], will[1], qos=1, retain=will[2]),
        clean_session=None if version == V5 else clean_session,
        clean_start=clean_session if version == V5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
        properties=properties,
        keepalive=KEEPALIVE,
        timeout=timeout,
        tls_context=tls.context(options, address.tls),
        queue_type=queue_type,
    )
