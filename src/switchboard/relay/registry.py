"""``Registry``: which device of which group is connected, and what the others hear of it.

Pure bookkeeping over ``Connection`` objects: no I/O, no clock. A device is online while it
has a registered connection; a second connection of the same device replaces the first (which
is sent ``Bye(GOING_AWAY)``), so presence never flickers when a device reconnects before the
relay noticed its old connection die.

Presence can be *coalesced*: with ``on_pending`` set, announcements queue up (in order) and
go out when the owner calls ``send_presence`` (the relay does so a few milliseconds after the
first one queued). Devices joining a group together then cost each of its connections one
write for all their ``Presence`` frames instead of one write (and one wake-up) each: a group
of ``n`` devices connecting costs ``n**2 / 2`` frames either way, but far fewer writes.
Queued presence goes out before anything is forwarded (``forward``; the relay does the same
before a directed frame or a catch-up round), so a peer never gets a device's events before
it heard that the device is online.
"""

from __future__ import annotations

from collections.abc import Callable

from switchboard.errors import ByeCode
from switchboard.proto.frames import Envelope
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

    def send_presence(self) -> None:
        """Send the queued announcements, in order; each connection is flushed once."""
        pending, self._pending = self._pending, []
        touched: dict[Connection, None] = {}
        for conn, online in pending:
            for other in self.others(conn):
                other.session.send_presence(conn.device, online)
                touched[other] = None
        for other in touched:
            other.flush()

    def _announce(self, conn: Connection, *, online: bool) -> None:
        self._pending.append((conn, online))
        if self.on_pending is None:
            self.send_presence()
        elif len(self._pending) == 1:
            self.on_pending()
