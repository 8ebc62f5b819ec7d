"""The ``Link`` interface the daemon holds per group, and ``make_link``, which picks the kind.

Theory of operation
-------------------
The daemon does not care how a group's events travel; it starts a link, wakes it when the log
advances (``notify``), asks it how far behind the group it is (``lag``, ``status``) and waits on
it (``wait_established``, ``wait_synced``, ``wait_caught_up``). A group can be linked through
the relay, any MQTT broker, or NATS JetStream, chosen by the URL's scheme (``SCHEMES``):

============================  =====================================  ==========================
scheme                        link                                   who keeps history
============================  =====================================  ==========================
``ws``, ``wss``, ``memory``   ``links.relay.RelayLink``              the relay's mailbox
``mqtt``, ``mqtts``           ``links.mqtt.MqttLink``                the online devices
``mqtt-public``               resolved at ``group create`` to one    the online devices
                              ``mqtt://`` broker of a short list
``nats``, ``tls``             ``links.nats.NatsLink``                the JetStream stream
============================  =====================================  ==========================

Every kind is a ``links.supervisor.SupervisedLink``: one supervisor loop, one way to wait and
to open envelopes, and one directed channel (``channel``, ``links.channel``): sealed frames to
one device of the group, never stored, for calls between two devices.

Broker credentials (``transports.options.LinkOptions``) live beside the group in
``groups.link_options`` (JSON, in the 0600 database), never in the URL, so ``status`` can show
the URL as is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from switchboard.errors import UserError
from switchboard.keyring import Keyring
from switchboard.links.relay import RelayLink
from switchboard.transports.options import LinkOptions, decode_options

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from switchboard.errors import SwitchboardError
    from switchboard.links.channel import DirectChannel, Handlers
    from switchboard.links.status import LinkStatus
    from switchboard.links.supervisor import OnEstablished, OnPresence
    from switchboard.store.log import EventLog

Kind = Literal["relay", "mqtt", "nats"]
PUBLIC_MQTT: Final = "mqtt-public"
# Which kind of link each URL scheme selects (``mqtt-public`` is resolved to ``mqtt://``).
SCHEMES: Final[dict[str, Kind]] = {
    "ws": "relay",
    "wss": "relay",
    "memory": "relay",
    "mqtt": "mqtt",
    "mqtts": "mqtt",
    PUBLIC_MQTT: "mqtt",
    "nats": "nats",
    "tls": "nats",
}


class Link(Protocol):
    """One group's link, as the daemon uses it."""

    url: str
    status: LinkStatus
    # The embedded relay's pinned identity key; brokers have none, so broker links keep None.
    relay_key: bytes | None
    # Calls to and from the other devices of the group (``links.channel``).
    channel: DirectChannel
    # The other devices of the group the link knows to be connected now.
    online: set[str]

    def start(self) -> None:
        """Start keeping the link up, in the background."""

    async def stop(self) -> None:
        """Say goodbye and stop."""

    def notify(self) -> None:
        """The log advanced: wake the sender."""

    def lag(self) -> int:
        """Events this device holds that the link is not known to have passed on."""

    async def wait_established(self, timeout: float) -> SwitchboardError | None:
        """Wait for the first connection; return the failure that prevented it, if any."""

    async def wait_synced(self, timeout: float) -> bool:
        """Wait until the link is up and has passed on everything this device holds."""

    async def wait_caught_up(self, timeout: float) -> bool:
        """Wait until this device holds what the group held when the link connected."""

    @property
    def keys(self) -> Keyring:
        """The group's keys (shared with the daemon: a rotation changes them in place)."""

    async def rekey(
        self, new_auth: Ed25519PrivateKey, members: list[str], forgotten: list[str], timeout: float
    ) -> None:
        """Have the far end admit the group's new key (a relay; brokers have no say)."""


def scheme_of(url: str) -> str:
    """Return a link URL's scheme, lower-cased (``mqtt-public`` has none: it is its own)."""
    if url.strip().lower() == PUBLIC_MQTT:
        return PUBLIC_MQTT
    return url.split("://", 1)[0].lower() if "://" in url else ""


def kind_of(url: str) -> Kind:
    """Return the kind of link a URL selects: ``relay``, ``mqtt`` or ``nats``."""
    return SCHEMES.get(scheme_of(url), "relay")


async def resolve_url(url: str, options: LinkOptions, timeout: float = 5.0) -> str:
    """Check a ``--relay`` URL and make it concrete before a group is created on it.

    ``mqtt-public`` becomes the first broker of ``links.mqtt.public_brokers()`` that accepts a
    connection, so every device of the group (the invite carries the URL) meets on that one.

    Raises:
        UserError: the scheme is not one we link through.
        ConnectError: no public broker answered.
    """
    scheme = scheme_of(url)
    if scheme == PUBLIC_MQTT:
        from switchboard.links import mqtt  # noqa: PLC0415 - brokers' libraries load lazily

        return await mqtt.first_public_broker(options, timeout)
    if scheme not in SCHEMES:
        known = ", ".join(s + "://" for s in SCHEMES if s != PUBLIC_MQTT)
        raise UserError(f"unsupported link URL {url!r}: use {known} or {PUBLIC_MQTT}")
    return url


def make_link(
    group: dict[str, Any],
    *,
    log: EventLog,
    device_id: str,
    identity: Ed25519PrivateKey,
    create: bool = False,
    on_presence: OnPresence | None = None,
    on_established: OnEstablished | None = None,
    handlers: Handlers | None = None,
) -> Link:
    """Build the link for a group row (``store.local`` ``groups``), chosen by its URL.

    Args:
        group: the group's row: ``group_id``, ``secret``, ``relay_url``, ``relay_key`` and
            optionally ``link_options`` and ``keyring`` (``keyring.Keyring``: every key of
            the group; default: its one secret).
        log: this device's event log.
        device_id: this device's id.
        identity: this device's key (the relay handshake proves it).
        create: the group is being created (the relay registers it; a broker link creates
            its stream).
        on_presence: called with ``(device, online)``; ``("", False)`` when the link drops.
        on_established: called once per relay session (relay links only).
        handlers: the directed calls this device serves (``links.channel.Handlers``; one
            table shared by every link of the daemon).

    Returns:
        A link, not started yet.
    """
    keys = group.get("keyring") or Keyring.single(group["group_id"], group["secret"])
    url: str = group["relay_url"]
    kind = kind_of(url)
    common: dict[str, Any] = {
        "log": log,
        "keys": keys,
        "url": url,
        "device_id": device_id,
        "identity": identity,
        "create": create,
        "on_presence": on_presence,
    }
    if handlers is not None:
        common["handlers"] = handlers
    if kind == "relay":
        return RelayLink(relay_key=group.get("relay_key"), on_established=on_established,
                         **common)  # fmt: skip
    options = decode_options(group.get("link_options"))
    if kind == "mqtt":
        from switchboard.links.mqtt import MqttLink  # noqa: PLC0415 - lazy: aiomqtt

        return MqttLink(options=options, **common)
    from switchboard.links.nats import NatsLink  # noqa: PLC0415 - lazy: nats-py

    return NatsLink(options=options, **common)
