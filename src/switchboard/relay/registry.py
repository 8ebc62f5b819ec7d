"""``Registry``: which device of which group is connected, and what the others hear of it.

Pure bookkeeping over ``Connection`` objects: no I/O, no clock. A device is online while it
has a registered connection; a second connection of the same device replaces the first (which
is sent ``Bye(GOING_AWAY)``), so presence never flickers when a device reconnects before the
relay noticed its old connection die.
"""

from __future__ import annotations

from switchboard.errors import ByeCode
from switchboard.proto.frames import Envelope
from switchboard.relay.connection import Connection


class Registry:
    """The authenticated connections of each group, one per device."""

    def __init__(self) -> None:
        self._groups: dict[str, dict[str, Connection]] = {}  # group -> device -> connection

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
        """Offer envelopes that ``conn`` brought to the rest of its group."""
        for other in self.others(conn):
            other.offer(envelopes)

    def _announce(self, conn: Connection, *, online: bool) -> None:
        for other in self.others(conn):
            other.session.send_presence(conn.device, online)
            other.flush()
