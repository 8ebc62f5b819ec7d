"""What a ``SyncSession`` reports (``events_received()``) and counts (``statistics()``).

These belong to ``proto.session``'s interface and are imported from there; they live here so
that ``session.py`` holds the state machine alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.errors import SwitchboardError
from switchboard.proto.frames import Direct, Envelope


@dataclass(frozen=True)
class HelloReceived:
    """Server side: a client asks to join ``group``; answer with ``accept_hello`` or ``reject``."""

    group: str
    device: str
    group_key: bytes
    create: bool


@dataclass(frozen=True)
class Established:
    """The handshake succeeded. ``peer`` is the other side's id, ``peer_key`` its proven
    identity key (the server's key on a client, the device's key on a server), ``online`` the
    devices the relay reported."""

    peer: str
    peer_key: bytes
    online: tuple[str, ...] = ()


@dataclass(frozen=True)
class HaveReceived:
    """The peer holds these seqs per origin; send it what it lacks."""

    vector: dict[str, int]


@dataclass(frozen=True)
class BatchReceived:
    """Envelopes arrived; store the new ones, then ``send_ack``."""

    envelopes: tuple[Envelope, ...]


@dataclass(frozen=True)
class AckReceived:
    """The peer has durably stored these seqs per origin."""

    vector: dict[str, int]


@dataclass(frozen=True)
class PresenceReceived:
    """A device of the group connected to or disconnected from the relay."""

    device: str
    online: bool


@dataclass(frozen=True)
class DirectReceived:
    """A sealed directed frame arrived: a relay forwards it to ``frame.recipient``; a device
    opens it (``crypto.GroupKeys.open_direct``)."""

    frame: Direct


@dataclass(frozen=True)
class UndeliveredReceived:
    """The relay could not deliver our ``Direct`` frame ``ref`` to ``recipient``."""

    recipient: str
    ref: int
    code: int
    reason: str


@dataclass(frozen=True)
class Closed:
    """The session ended; ``error`` is ``None`` for a normal close."""

    code: int
    reason: str
    error: SwitchboardError | None = None


SessionEvent = (
    HelloReceived
    | Established
    | HaveReceived
    | BatchReceived
    | AckReceived
    | PresenceReceived
    | DirectReceived
    | UndeliveredReceived
    | Closed
)


@dataclass(frozen=True)
class SessionStatistics:
    """Counters of one session."""

    frames_in: int
    frames_out: int
    bytes_in: int
    bytes_out: int
    envelopes_in: int
    envelopes_out: int
    directs_in: int = 0
    directs_out: int = 0
