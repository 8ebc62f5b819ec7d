"""Projections of rooms, membership, invitations, room cursors, visibility and notices."""

# Theory of operation: the handlers below run inside the transaction that stores their event,
# called from ``projections.apply_many`` through ``store/coordination.py``. They must give the
# same tables on every device whatever order events of *different* origins arrive in, so:
#
# - a room name belongs to its earliest creation (smallest ``(ts, origin)``); a later
#   ``room_created`` of the same name (two devices racing) changes nothing;
# - membership, invitations and visibility are last-writer-wins on the event's ``ts``;
# - a cursor only moves forward.
#
# Rules of who may do what (only invited agents join a private room ...) are enforced by the
# device that accepts the action (``daemon/rooms.py``) and by the device that answers a read;
# a projection records what happened.

from __future__ import annotations

import sqlite3
from typing import Any, Final

from switchboard.errors import InvalidAddress
from switchboard.events import (
    ROOM_KINDS,
    VISIBILITIES,
    Event,
    MessagePosted,
    NoticePosted,
    RoomCreated,
    RoomInvited,
    RoomJoined,
    RoomKicked,
    RoomLeft,
    RoomRead,
    VisibilityChanged,
)
from switchboard.ids import parse_event_id, parse_room
from switchboard.store.local import Row, rows_of


def split_address(address: str) -> tuple[str, str]:
    """Split an internal address ``name:<device_id>`` into ``(device_id, name)``.

    Raises:
        InvalidAddress: no ``:``, or an empty part.
    """
    name, sep, device = address.rpartition(":")
    if not sep or not name or not device:
        raise InvalidAddress(f"invalid internal address {address[:60]!r}")
    return device, name


# -- handlers ------------------------------------------------------------------------------------


def room_created(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    """Add a room unless an earlier creation holds its name; its creator joins it."""
    assert isinstance(body, RoomCreated)
    room = parse_room(body.room)
    if body.kind not in ROOM_KINDS or not event.agent:
        raise ValueError(f"room kind {body.kind[:20]!r}")
    held = conn.execute(
        "SELECT created_ts, creator_device FROM rooms WHERE name = ?", (room,)
    ).fetchone()
    if held is not None and tuple(held) <= (event.ts, event.origin):
        return
    conn.execute(
        """INSERT INTO rooms (name, kind, description, creator_device, creator_name, created_ts)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO UPDATE SET kind = ?2,
            description = ?3, creator_device = ?4, creator_name = ?5, created_ts = ?6""",
        (room, body.kind, body.description[:500], event.origin, event.agent, event.ts),
    )
    _set_member(conn, room, event.origin, event.agent, True, event.ts)


def room_joined(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    """The acting agent becomes a member."""
    assert isinstance(body, RoomJoined)
    _set_member(conn, parse_room(body.room), event.origin, event.agent, True, event.ts)


def room_left(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    """The acting agent is no longer a member."""
    assert isinstance(body, RoomLeft)
    _set_member(conn, parse_room(body.room), event.origin, event.agent, False, event.ts)


def room_invited(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    """The invitee may join (private and secret rooms)."""
    assert isinstance(body, RoomInvited)
    device, name = split_address(body.invitee)
    inviter = f"{event.agent}:{event.origin}"
    _set_invited(conn, parse_room(body.room), device, name, True, inviter, event.ts)


def room_kicked(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    """The member leaves and loses its invitation."""
    assert isinstance(body, RoomKicked)
    room = parse_room(body.room)
    device, name = split_address(body.member)
    _set_member(conn, room, device, name, False, event.ts)
    _set_invited(conn, room, device, name, False, f"{event.agent}:{event.origin}", event.ts)


def room_read(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    """Move the acting agent's cursor in a room forward to a held message."""
    assert isinstance(body, RoomRead)
    ref = parse_event_id(body.last)
    row = conn.execute(
        "SELECT id FROM events WHERE origin = ? AND seq = ?", (ref.origin, ref.seq)
    ).fetchone()
    if row is None:
        return  # only the reader's own device needs its cursor, and it holds the message
    conn.execute(
        """INSERT INTO room_cursors (room, device_id, name, event_id) VALUES (?1, ?2, ?3, ?4)
        ON CONFLICT (room, device_id, name) DO UPDATE SET event_id = max(event_id, ?4)""",
        (parse_room(body.room), event.origin, event.agent, row[0]),
    )


def visibility_changed(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    """Record the acting agent's visibility (newest ts wins)."""
    assert isinstance(body, VisibilityChanged)
    if body.visibility not in VISIBILITIES or not event.agent:
        raise ValueError(f"visibility {body.visibility[:20]!r}")
    conn.execute(
        """INSERT INTO visibility (device_id, name, visibility, ts) VALUES (?1, ?2, ?3, ?4)
        ON CONFLICT (device_id, name) DO UPDATE SET visibility = ?3, ts = ?4 WHERE ts <= ?4""",
        (event.origin, event.agent, body.visibility, event.ts),
    )


def notice_posted(conn: sqlite3.Connection, local_id: int, event: Event, body: Any) -> None:
    """A notice lands in its recipients' inboxes like a message from the device."""
    assert isinstance(body, NoticePosted)
    rows = []
    for address in body.recipients:
        device, name = split_address(address)
        rows.append((local_id, device, name))
    conn.executemany(
        "INSERT OR IGNORE INTO inbox (event_id, device_id, name) VALUES (?, ?, ?)", rows
    )


def message_to_rooms(conn: sqlite3.Connection, local_id: int, event: Event, body: Any) -> None:
    """Index a message under each room it was sent to."""
    assert isinstance(body, MessagePosted)
    rooms = {parse_room(target[1:]) for target in body.to if target.startswith("#")}
    conn.executemany(
        "INSERT OR IGNORE INTO room_messages (event_id, room) VALUES (?, ?)",
        [(local_id, room) for room in rooms],
    )


def _set_member(  # noqa: PLR0917 - one row's columns
    conn: sqlite3.Connection, room: str, device: str, name: str, joined: bool, ts: str
) -> None:
    conn.execute(
        """INSERT INTO room_members (room, device_id, name, joined, ts) VALUES (?1, ?2, ?3, ?4, ?5)
        ON CONFLICT (room, device_id, name) DO UPDATE SET joined = ?4, ts = ?5 WHERE ts <= ?5""",
        (room, device, name, int(joined), ts),
    )


def _set_invited(  # noqa: PLR0917 - one row's columns
    conn: sqlite3.Connection, room: str, device: str, name: str, invited: bool, by: str, ts: str
) -> None:
    conn.execute(
        """INSERT INTO room_invites (room, device_id, name, invited, inviter, ts)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (room, device_id, name)
        DO UPDATE SET invited = ?4, inviter = ?5, ts = ?6 WHERE ts <= ?6""",
        (room, device, name, int(invited), by, ts),
    )


# -- reads ---------------------------------------------------------------------------------------


def get_room(conn: sqlite3.Connection, room: str) -> Row | None:
    """Return a room's row (``name, kind, description, creator_device, creator_name,
    created_ts``) with its creator's short id as ``creator_short``, or ``None``."""
    rows = rows_of(
        conn.execute(
            """SELECT r.*, coalesce(d.short, '') AS creator_short FROM rooms AS r
            LEFT JOIN devices AS d ON d.device_id = r.creator_device WHERE r.name = ?""",
            (room,),
        )
    )
    return rows[0] if rows else None


def list_rooms(conn: sqlite3.Connection, device: str, name: str) -> list[Row]:
    """Return every room with its member count and the reader's ``member``/``invited`` flags."""
    return rows_of(
        conn.execute(
            """SELECT r.name, r.kind, r.description, r.created_ts,
                r.creator_name || ':' || coalesce(d.short, '') AS creator,
                (SELECT count(*) FROM room_members AS m WHERE m.room = r.name AND m.joined)
                    AS members,
                EXISTS (SELECT 1 FROM room_members AS m WHERE m.room = r.name AND m.joined
                    AND m.device_id = ?1 AND m.name = ?2) AS member,
                EXISTS (SELECT 1 FROM room_invites AS i WHERE i.room = r.name AND i.invited
                    AND i.device_id = ?1 AND i.name = ?2) AS invited
            FROM rooms AS r LEFT JOIN devices AS d ON d.device_id = r.creator_device
            ORDER BY r.name""",
            (device, name),
        )
    )


def is_member(conn: sqlite3.Connection, room: str, device: str, name: str) -> bool:
    """Whether the agent is a member of the room."""
    row = conn.execute(
        "SELECT joined FROM room_members WHERE room = ? AND device_id = ? AND name = ?",
        (room, device, name),
    ).fetchone()
    return bool(row and row[0])


def is_invited(conn: sqlite3.Connection, room: str, device: str, name: str) -> bool:
    """Whether the agent holds an invitation to the room."""
    row = conn.execute(
        "SELECT invited FROM room_invites WHERE room = ? AND device_id = ? AND name = ?",
        (room, device, name),
    ).fetchone()
    return bool(row and row[0])


def member_keys(conn: sqlite3.Connection, room: str) -> list[tuple[str, str]]:
    """Return ``(device_id, name)`` of each member of the room."""
    cursor = conn.execute(
        "SELECT device_id, name FROM room_members WHERE room = ? AND joined ORDER BY ts", (room,)
    )
    return [(str(device), str(name)) for device, name in cursor]


def rooms_of(conn: sqlite3.Connection, device: str, name: str) -> list[str]:
    """Return the names of the rooms the agent is a member of."""
    cursor = conn.execute(
        "SELECT room FROM room_members WHERE device_id = ? AND name = ? AND joined ORDER BY room",
        (device, name),
    )
    return [str(row[0]) for row in cursor]


def readable_rooms(conn: sqlite3.Connection, device: str, name: str) -> list[str]:
    """Return the names of the rooms whose history the agent may read: every public room and
    the private and secret ones it is a member of (``daemon/rooms.check_readable``)."""
    cursor = conn.execute(
        """SELECT r.name FROM rooms AS r WHERE r.kind = 'public' OR EXISTS (
            SELECT 1 FROM room_members AS m WHERE m.room = r.name AND m.joined
                AND m.device_id = ? AND m.name = ?) ORDER BY r.name""",
        (device, name),
    )
    return [str(row[0]) for row in cursor]


def visibility_of(conn: sqlite3.Connection) -> dict[tuple[str, str], str]:
    """Return ``(device_id, name) -> visibility`` for every agent that ever changed it."""
    cursor = conn.execute("SELECT device_id, name, visibility FROM visibility")
    return {(str(device), str(name)): str(vis) for device, name, vis in cursor}


def cursor_of(conn: sqlite3.Connection, room: str, device: str, name: str) -> int:
    """Return the local id of the last message the agent read in the room (0: none)."""
    row = conn.execute(
        "SELECT event_id FROM room_cursors WHERE room = ? AND device_id = ? AND name = ?",
        (room, device, name),
    ).fetchone()
    return int(row[0]) if row else 0


HANDLERS: Final = {
    "room_created": room_created,
    "room_joined": room_joined,
    "room_left": room_left,
    "room_invited": room_invited,
    "room_kicked": room_kicked,
    "room_read": room_read,
    "visibility_changed": visibility_changed,
    "notice_posted": notice_posted,
    "message_posted": message_to_rooms,
}
