"""``Registry``: which device of which group is connected, and what the others hear of it.

Pure bookkeeping over ``Connection`` objects: no I/O, no clock. A device is online while it
has a registered connection; a second connection of the same device replaces the first (which
is sent ``Bye(GOING_AWAY)``), so presence never flickers when a device reconnects before the
relay noticed its old connection die.

Presence can be *coalesced*: with ``on_pending`` set, announcements queue up (in order) and
go out when the owner calls ``send_presence`` (the relay does so a few milliseconds after the
first one queued). A round goes out as one ``Presences`` frame per group, encoded once and
written to each of its connections, with each device's last word of the round (a device that
left and came back is online; one that came and went is offline). So ``n`` devices joining a
group cost ``n`` frames per round instead of ``n**2 / 2`` frames (and as many encodings). A
device is never told about itself: a connection whose own device changed in the round gets
the round without it. Queued presence goes out before anything is forwarded (``forward``; the
relay does the same before a directed frame or a catch-up round), so a peer never gets a
device's events before it heard that the device is online.
"""

from __future__ import annotations

from collections.abc import Callable

from switchboard.errors import ByeCode
from switchboard.proto.frames import Envelope
from switchboard.proto.session import encode_presences
from switchboard.relay.connection import Connection


class Registry:
    """The authenticated connections of each group, one per device."""

    def __init__(self) -> None:
        self._groups: dict[str, dict[str, Connection]] = {}  # group -> device -> connection
        # Set by the owner to coalesce presence (module docstring): called when the first
        # announcement queues up; None sends each at once.
        self.on_pending: Callable[[], object] | None = None
        self._pending: list[tuple[Connection, bool]] = []

    def __len__(self) -> int:
        """Return how many devices are online, over all groups."""
        return sum(len(devices) for devices in self._groups.values())

    def others(self, conn: Connection) -> list[Connection]:
        """Return the open connections of ``conn``'s group, other than its device's."""
        devices = self._groups.get(conn.group, {})
        return [
            other
            for device, other in devices.items()
            if device != conn.device and other.session.is_open
        ]

    def device(self, group: str, device: str) -> Connection | None:
        """Return the connection of ``device`` in ``group``, if it is connected."""
        return self._groups.get(group, {}).get(device)

    def join(self, conn: Connection) -> Connection | None:
        """Register ``conn``; return the older connection of its device that it replaced.

        The others of the group hear ``Presence(device, True)``, unless the device was
        already online through the replaced connection.
        """
        devices = self._groups.setdefault(conn.group, {})
        older = devices.get(conn.device)
        devices[conn.device] = conn
        if older is not None:
            older.session.send_bye(ByeCode.GOING_AWAY, "replaced by a newer connection")
            older.flush()
            return older
        self._announce(conn, online=True)
        return None

    def leave(self, conn: Connection) -> bool:
        """Unregister ``conn``; return ``False`` if a newer connection had replaced it.

        The others of the group hear ``Presence(device, False)`` if the device went offline.
        """
        devices = self._groups.get(conn.group, {})
        if devices.get(conn.device) is not conn:
            return False
        del devices[conn.device]
        if not devices:
            del self._groups[conn.group]
        self._announce(conn, online=False)
        return True

    def forward(self, conn: Connection, envelopes: list[Envelope]) -> None:
        """Offer envelopes that ``conn`` brought to the rest of its group (presence first)."""
        if self._pending:
            self.send_presence()
        for other in self.others(conn):
            other.offer(envelopes)

    def send_pending_to(self, conn: Connection) -> None:
        """Tell ``conn`` alone the queued changes of its group, ahead of the round.

        For what goes to one connection (a catch-up round, a directed frame): it hears of a
        device before it gets that device's events, and the round is not cut short for the
        whole group (a device joining would otherwise send it to every connection at once).
        It hears the changes again with the round: presence is a state, saying it twice is
        harmless.
        """
        if not self._pending or not conn.session.is_open:
            return
        changes = _last_words(self._pending).get(conn.group)
        data = _encode(changes, conn.device) if changes else b""
        if data:
            conn.session.send_presences(data)
            conn.flush()

    def send_presence(self) -> int:
        """Send the queued announcements (module docstring); return the connections written.

        Each group with changes gets one ``Presences`` frame per connection, and each
        connection is flushed once.
        """
        pending, self._pending = self._pending, []
        touched = 0
        for group, changes in _last_words(pending).items():
            shared = _encode(changes, "")
            for device, other in self._groups.get(group, {}).items():
                if not other.session.is_open:
                    continue
                data = shared if device not in changes else _encode(changes, device)
                if data:
                    other.session.send_presences(data)
                    other.flush()
                    touched += 1
        return touched

    def _announce(self, conn: Connection, *, online: bool) -> None:
        self._pending.append((conn, online))
        if self.on_pending is None:
            self.send_presence()
        elif len(self._pending) == 1:
            self.on_pending()


def _last_words(pending: list[tuple[Connection, bool]]) -> dict[str, dict[str, bool]]:
    # group -> device -> its last word in the round, in the order of last words.
    rounds: dict[str, dict[str, bool]] = {}
    for conn, online in pending:
        changes = rounds.setdefault(conn.group, {})
        changes.pop(conn.device, None)
        changes[conn.device] = online
    return rounds


def _encode(changes: dict[str, bool], leave_out: str) -> bytes:
    # The round's Presences frame without ``leave_out`` (its recipient); b"" if nothing is left.
    online = [device for device, on in changes.items() if on and device != leave_out]
    offline = [device for device, on in changes.items() if not on and device != leave_out]
    return encode_presences(online, offline) if online or offline else b""
