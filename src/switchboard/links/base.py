"""The ``Link`` interface the daemon holds per group, link options, and ``make_link``.

Theory of operation
-------------------
The daemon does not care how a group's events travel; it starts a link, wakes it when the log
advances (``notify``), asks it how far behind the group it is (``lag``, ``status``) and waits on
it (``wait_established``, ``wait_synced``, ``wait_caught_up``). ``links.relay.RelayLink`` (a sync
session to the embedded relay) already had that surface; ``Link`` names it, so a group can be
linked through the relay, any MQTT broker, or NATS JetStream, chosen by the URL's scheme:

============================  =====================================  ==========================
scheme                        link                                   who keeps history
============================  =====================================  ==========================
``ws``, ``wss``, ``memory``   ``links.relay.RelayLink``              the relay's mailbox
``mqtt``, ``mqtts``           ``links.mqtt.MqttLink``                the online devices
``mqtt-public``               resolved at ``group create`` to one    the online devices
                              ``mqtt://`` broker of a short list
``nats``, ``tls``             ``links.nats.NatsLink``                the JetStream stream
============================  =====================================  ==========================

Every link also carries the group's **directed channel** (``channel``, ``links.channel``):
sealed frames to one device of the group, never stored, for calls between two devices.

Broker credentials (``LinkOptions``) live beside the group in ``groups.link_options`` (JSON,
in the 0600 database), never in the URL, so ``status`` can show the URL as is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, Protocol

from switchboard.crypto import GroupKeys
from switchboard.errors import SwitchboardError, UserError
from switchboard.transports.options import LinkOptions, decode_options

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from switchboard.errors import SwitchboardError
    from switchboard.links.channel import DirectChannel, Handlers
    from switchboard.links.status import LinkStatus
    from switchboard.proto.session import Established
    from switchboard.store.log import EventLog

OnPresence = Callable[[str, bool], Awaitable[None]]
OnEstablished = Callable[["Established"], Awaitable[None]]

RELAY_SCHEMES: Final = ("ws", "wss", "memory")
MQTT_SCHEMES: Final = ("mqtt", "mqtts")
NATS_SCHEMES: Final = ("nats", "tls")
PUBLIC_MQTT: Final = "mqtt-public"
CANCEL_AGAIN: Final = 0.1  # seconds before a connection's loop that did not end is cancelled again


class Link(Protocol):
    """One group's link, as the daemon uses it."""

    url: str
    status: LinkStatus
    # The embedded relay's pinned identity key; brokers have none, so broker links keep None.
    relay_key: bytes | None
    # Calls to and from the other devices of the group (``links.channel``).
    channel: DirectChannel

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


async def run_until_first_ends(coros: dict[str, Coroutine[Any, Any, Any]]) -> None:
    """Run the named loops of one connection until the first ends; cancel the others.

    Raises:
        BaseException: the first failure among the loops that ended.
    """
    tasks = [asyncio.create_task(coro, name=name) for name, coro in coros.items()]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Cancel until each has ended: one cancellation can be lost (Python 3.11's wait_for,
        # which nats-py uses, swallows it when its future completes at the same moment), and a
        # loop that goes on waiting would hold the link on a dead connection for good.
        pending = set(tasks)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=CANCEL_AGAIN)
        for task in tasks:  # mark their failures seen: they are the first one's fallout
            if not task.cancelled():
                task.exception()
    for task in done:
        exc = task.exception()
        if exc is not None:
            raise exc


async def wait_first_connection(
    established: asyncio.Event,
    failure: Callable[[], SwitchboardError | None],
    fatal: tuple[type[SwitchboardError], ...],
    what: str,
    timeout: float,
) -> SwitchboardError | None:
    """Wait until ``established`` is set; return the failure that prevented it, if any.

    Args:
        established: set once the link first connected.
        failure: returns the link's latest failure.
        fatal: failures that end the wait at once (a refused login, a wrong secret).
        what: names the far end in the timeout message ("relay ws://...").
        timeout: seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not established.is_set():
        last = failure()
        if isinstance(last, fatal):
            return last
        remaining = deadline - loop.time()
        if remaining <= 0:
            return last or SwitchboardError(f"{what} did not answer within {timeout:g} s")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(established.wait(), min(remaining, 0.05))
    return None


def scheme_of(url: str) -> str:
    """Return a link URL's scheme, lower-cased (``mqtt-public`` has none: it is its own)."""
    if url.strip().lower() == PUBLIC_MQTT:
        return PUBLIC_MQTT
    return url.split("://", 1)[0].lower() if "://" in url else ""


def kind_of(url: str) -> str:
    """Return the kind of link a URL selects: ``relay``, ``mqtt`` or ``nats``."""
    scheme = scheme_of(url)
    if scheme in MQTT_SCHEMES or scheme == PUBLIC_MQTT:
        return "mqtt"
    if scheme in NATS_SCHEMES:
        return "nats"
    return "relay"


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
    if scheme not in RELAY_SCHEMES + MQTT_SCHEMES + NATS_SCHEMES:
        known = ", ".join(s + "://" for s in RELAY_SCHEMES + MQTT_SCHEMES + NATS_SCHEMES)
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
            optionally ``link_options``.
        log: this device's event log.
        device_id: this device's id.
        identity: this device's key (the relay handshake proves it).
        create: the group is being created (the relay registers it; a broker link creates
            its stream).
        on_presence: called with ``(device, online)``; ``("", False)`` when the link drops.
        on_established: called once per relay session (relay links only).
        handlers: the directed calls this device serves (``links.channel.Handlers``; shared
            by every link of the daemon).

    Returns:
        A link, not started yet.
    """
    from switchboard.links.channel import Handlers  # noqa: PLC0415 - the links import it too

    keys = GroupKeys.derive(group["group_id"], group["secret"])
    url: str = group["relay_url"]
    served = handlers if handlers is not None else Handlers()
    kind = kind_of(url)
    if kind == "relay":
        from switchboard.links.relay import RelayLink  # noqa: PLC0415 - avoid an import cycle

        return RelayLink(
            log=log,
            keys=keys,
            url=url,
            device_id=device_id,
            identity=identity,
            relay_key=group.get("relay_key"),
            create=create,
            on_presence=on_presence,
            on_established=on_established,
            handlers=served,
        )
    options = decode_options(group.get("link_options"))
    if kind == "mqtt":
        from switchboard.links.mqtt import MqttLink  # noqa: PLC0415 - lazy: aiomqtt

        return MqttLink(log=log, keys=keys, url=url, device_id=device_id, options=options,
                        create=create, on_presence=on_presence, identity=identity,
                        handlers=served)  # fmt: skip
    from switchboard.links.nats import NatsLink  # noqa: PLC0415 - lazy: nats-py

    return NatsLink(log=log, keys=keys, url=url, device_id=device_id, options=options,
                    create=create, on_presence=on_presence, identity=identity,
                    handlers=served)  # fmt: skip
