"""The results that cross the local API, as msgspec Structs: the JSON shapes of DESIGN.md §5.

The daemon builds its answers from these, the API server encodes them, and the typed clients
(``switchboard.Client``, ``switchboard.AsyncClient``) decode into them, so the CLI's ``--json``,
the MCP tools and the dashboard share one definition of each shape. Fields may be added, never
renamed or removed (DESIGN.md §5). A field that is ``UNSET`` is left out of the JSON: the shape
has it only sometimes (``device_last_seen`` of an agent that is not unreachable).

This module imports msgspec and nothing of Switchboard, so a client may import it cheaply.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType


class Agent(msgspec.Struct, kw_only=True):
    """An agent of some device of the group (``agents``, ``register``, ``status``)."""

    address: str
    """Display address ``name:SHORT``."""
    name: str
    device: str
    """Its device's short id."""
    local: bool
    """On this device."""
    status: str
    """``active``, ``idle``, ``busy``, ``blocked``, ``unreachable`` or ``offline``."""
    harness: str
    cwd: str
    summary: str
    tags: list[str]
    last_seen: str | None
    device_last_seen: str | UnsetType | None = UNSET
    """When its device was last seen; only while it is ``unreachable``."""
    visibility: str | UnsetType = UNSET
    """``visible``, ``hidden`` or ``ghost`` (listings; not in ``register``'s answer)."""


class Recipient(msgspec.Struct, kw_only=True):
    """One recipient of a sent message and how far the message got."""

    address: str
    state: str
    """``delivered``, ``queued``, ``offline`` or ``read``."""


class SendResult(msgspec.Struct, kw_only=True):
    """What ``send`` answers."""

    id: int
    """The message's local id."""
    result: str
    """``delivered`` (every recipient), ``queued`` (some device has not confirmed) or
    ``offline`` (some recipient is gone)."""
    recipients: list[Recipient]


class Message(msgspec.Struct, kw_only=True):
    """A message or notice in an inbox (``inbox``)."""

    id: int
    ts: str
    from_: str = msgspec.field(name="from")
    """The sender's display address; a notice's device short id."""
    to: list[str]
    text: str
    thread: str | None
    intent: str | None = None
    reply_to: str | None = None
    notice: dict[str, Any] | None = None
    """What a notice is (``kind``) and whom it concerns (``subject``); ``None``: a message."""


class EventRow(msgspec.Struct, kw_only=True):
    """One event of the log as users see it (``events``, ``events.follow``)."""

    id: int
    """Its local id on this device."""
    ts: str
    type: str
    agent: str
    """The acting agent's display address; ``""``: the device itself."""
    device: str
    """The origin device's short id."""
    origin: str
    seq: int
    data: dict[str, Any]


class Device(msgspec.Struct, kw_only=True):
    """This device (``init``, ``status``)."""

    id: str
    short: str
    name: str


class GroupDevice(msgspec.Struct, kw_only=True):
    """A device of the group (``devices``)."""

    id: str
    short: str
    name: str
    fingerprint: str
    """Of its Ed25519 key (``crypto.fingerprint``); empty while its ``device_joined`` is unseen."""
    key_ok: bool
    """Its key derives to its id (as the signatures of its events are checked)."""
    this: bool
    """It is this device."""
    online: bool
    last_seen: str | None
    """When it last came online or went offline; for this device, now."""
    link: str | None
    """The link it is reached by: ``this device``, the URL of the group's link, or ``None``."""


class Pong(msgspec.Struct, kw_only=True):
    """A device's answer to ``device.ping`` (``switchboard ping DEV``)."""

    device: str
    """Its short id."""
    id: str
    """Its full device id."""
    name: str
    link: str
    """The URL of the link the pings went through."""
    rtt_ms: list[float]
    """Each round trip, in milliseconds: sealing, the link both ways, and opening."""
    min_ms: float
    avg_ms: float
    max_ms: float


class DaemonInfo(msgspec.Struct, kw_only=True):
    """The daemon (``ping``, ``status``)."""

    running: bool
    pid: int
    version: str


class GroupLink(msgspec.Struct, kw_only=True):
    """A group's link as ``status`` shows it."""

    url: str
    enabled: bool
    kind: str
    """``relay``, ``mqtt`` or ``nats``."""
    state: str
    """``connecting``, ``connected``, ``disconnected`` or ``off``."""
    lag: int | None
    """This device's events the relay or broker does not hold yet (``None``: unknown)."""
    last_push: str | None
    last_error: str | None
    tampered: int | UnsetType = UNSET
    """Envelopes refused as tampered (a running link only)."""
    forged: int | UnsetType = UNSET
    """Of those, events that opened but were not signed by their origin device."""
    protocol: str | UnsetType | None = UNSET


class Group(msgspec.Struct, kw_only=True):
    """A group this device is in."""

    id: str
    name: str
    link: GroupLink


class PeerClock(msgspec.Struct, kw_only=True):
    """How far a peer's clock is from ours: bounds in seconds (``None``: not measured yet)."""

    device: str
    name: str
    skew_min: float | None
    skew_max: float | None
    samples: int


class Status(msgspec.Struct, kw_only=True):
    """What ``status`` answers."""

    device: Device
    daemon: DaemonInfo
    groups: list[Group]
    agents: list[Agent]
    clock: list[PeerClock] = []
    transfers: list[dict[str, Any]] = []
    """Shared files being fetched: hash, name, size, chunks, held, bytes, from, state."""
    files: dict[str, int] = {}
    """Chunks fetched, served and refused (bad hash) since the daemon started."""


class HistoryMessage(msgspec.Struct, kw_only=True):
    """A message as history shows it (``thread.show``, ``search``, ``room.read``/``follow``)."""

    id: int
    ts: str
    from_: str = msgspec.field(name="from")
    """The sender's display address."""
    to: list[str]
    text: str
    thread: str | None
    intent: str | None
    reply_to: str | None
    """The parent's ``origin/seq``, for a reply."""
    ref: str
    """Its global id ``origin/seq``: what a reply or a citation names."""


class SentRecipient(msgspec.Struct, kw_only=True):
    """A recipient of a sent message and when each receipt came (``sent``)."""

    address: str
    state: str
    """``queued``, ``delivered``, ``injected`` or ``read``."""
    delivered: str | None
    injected: str | None
    read: str | None


class SentMessage(HistoryMessage, kw_only=True):
    """One of an agent's sent messages with its receipts (``sent``)."""

    recipients: list[SentRecipient]


class Recorded(msgspec.Struct, kw_only=True):
    """A harness fact recorded by an agent (``event.record``)."""

    id: int
    ref: str
    type: str


class Room(msgspec.Struct, kw_only=True):
    """A room as the acting agent sees it (``room.list``, ``room.create`` and the like)."""

    name: str
    kind: str
    """``public``, ``private`` or ``secret``."""
    description: str
    creator: str
    created: str
    members: int
    member: bool
    """The acting agent is a member."""
    invited: bool


class RoomJoin(msgspec.Struct, kw_only=True):
    """What ``room.join`` answers: the room and its members."""

    room: Room
    members: list[Agent]


class Lease(msgspec.Struct, kw_only=True):
    """An advisory lease on a path (``lease.*``)."""

    ref: str
    holder: str
    """The holding agent's display address."""
    path: str
    repo: str
    exclusive: bool
    reason: str
    acquired: str
    expires: str
    state: str
    """``active``, ``expired`` or ``released``."""


class LeaseGrant(msgspec.Struct, kw_only=True):
    """What ``lease.acquire`` answers: the leases taken and the shared ones they overlap."""

    leases: list[Lease]
    warnings: list[str]


class LeaseRelease(msgspec.Struct, kw_only=True):
    """What ``lease.release`` answers."""

    released: list[Lease]


class LeaseConflict(msgspec.Struct, kw_only=True):
    """A path another agent holds exclusively (``lease.check``)."""

    path: str
    lease: Lease
    message: str


class LeaseCheck(msgspec.Struct, kw_only=True):
    """What ``lease.check`` answers."""

    ok: bool
    conflicts: list[LeaseConflict]


class LinkRow(GroupLink, kw_only=True):
    """A group's link in the ``link`` listings (``link.status``, ``link.set``, ``link.sync``)."""

    group: str
    """The group's id."""
    name: str
    """The group's name."""


class Receipt(msgspec.Struct, kw_only=True):
    """How far a message got with one recipient (``message.wait``)."""

    address: str
    state: str
    """``queued``, ``delivered``, ``injected`` or ``read``."""
    delivered_ts: str | None
    injected_ts: str | None
    read_ts: str | None


class ReceiptWait(msgspec.Struct, kw_only=True):
    """What ``message.wait`` answers: whether every recipient reached ``state`` in time."""

    id: int
    state: str
    complete: bool
    recipients: list[Receipt]


class Acked(msgspec.Struct, kw_only=True):
    """What ``message.ack`` answers: the ids that were unread and are read now."""

    acked: list[int]


class Subscription(msgspec.Struct, kw_only=True):
    """An agent's subscription to events (``events.subscribe``, ``events.subscriptions``)."""

    id: int
    type: str
    """A glob over event types."""
    agent: str
    """A glob over acting agents."""
    file: str | None
    """A glob over edited paths, or ``None``."""


class Unsubscribed(msgspec.Struct, kw_only=True):
    """What ``events.unsubscribe`` answers: how many subscriptions went."""

    removed: int


#: The shape each API method answers with (streams: each item's), by method name, for the
#: typed clients (``Client.typed``). A method annotated with a shape is listed with exactly
#: that annotation (``tests/unit/test_shapes.py``); ``events`` is built as JSON rows by the
#: store and is checked against ``EventRow`` where it is used.
RESULTS: dict[str, str] = {
    "ping": "DaemonInfo",
    "init": "Device",
    "status": "Status",
    "devices": "list[GroupDevice]",
    "device.ping": "Pong",
    "register": "Agent",
    "tags.set": "Agent",
    "presence.set": "Agent",
    "agents": "list[Agent]",
    "send": "SendResult",
    "inbox": "list[Message]",
    "events": "list[EventRow]",
    "events.follow": "EventRow",
    "events.subscribe": "Subscription",
    "events.unsubscribe": "Unsubscribed",
    "events.subscriptions": "list[Subscription]",
    "message.ack": "Acked",
    "message.wait": "ReceiptWait",
    "thread.show": "list[HistoryMessage]",
    "search": "list[HistoryMessage]",
    "sent": "list[SentMessage]",
    "event.record": "Recorded",
    "room.create": "Room",
    "room.join": "RoomJoin",
    "room.leave": "Room",
    "room.invite": "Room",
    "room.kick": "Room",
    "room.list": "list[Room]",
    "room.members": "list[Agent]",
    "room.read": "list[HistoryMessage]",
    "room.follow": "HistoryMessage",
    "lease.acquire": "LeaseGrant",
    "lease.release": "LeaseRelease",
    "lease.list": "list[Lease]",
    "lease.check": "LeaseCheck",
    "link.set": "list[LinkRow]",
    "link.sync": "list[LinkRow]",
    "link.status": "list[LinkRow]",
    "handoff": "Handoff",
    "resume": "Resumed",
    "fork": "Resumed",
}


class Handoff(msgspec.Struct, kw_only=True):
    """What ``handoff`` answers: the successor's task, or why the target refused."""

    id: str
    """The successor's task id (as ``spawn`` answers)."""
    state: str
    """``running``, or ``refused``/``failed`` with the ``reason``."""
    reason: str
    device: str
    """The target's short id."""
    successor: str
    """The successor's display address (``""`` unless it runs)."""
    applied: str
    """``diff --stat`` of the uncommitted changes applied on the target (``""``: none)."""


class Resumed(msgspec.Struct, kw_only=True):
    """What ``resume`` and ``fork`` answer: the continuing task, or why it did not start."""

    id: str
    """The task's id (as ``spawn`` answers)."""
    state: str
    """``running``, or ``refused``/``failed`` with the ``reason``."""
    reason: str
    how: str
    """``resume`` or ``fork``."""
    session: str
    """The harness session continued."""
    agent: str
    """The agent's display address (``""`` unless it runs)."""
    messages: int
    """How many unread messages its first prompt carried."""
