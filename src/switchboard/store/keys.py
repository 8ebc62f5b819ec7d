"""A group's keys across rotations (``keyring``) and the forgotten devices, in the store.

``group_keys`` has a row per key id of a group: its rotation (``previous``, ``author``,
``members``, ``forgotten``, and ``seq``: the event's place in its author's log), folded from
``group_rekeyed`` by ``HANDLERS`` like any projection, and its secret once this device holds it
(``save_secret``: written by the daemon, never from an event's data, which carries only sealed
copies). The root row (the group's first secret) has no ``previous``. Like ``groups``, the
table holds secrets: user SQL never reads it.

A ``group_rekeyed`` also marks its forgotten devices in ``devices.forgotten`` (the last seq of
each kept in the log) and removes their agents.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Final

from switchboard.events import Event, ForgottenHeld, GroupRekeyed, now_ts

KeyRow = tuple[bytes, bytes | None, bytes | None, str, list[str], dict[str, int], int]


def save_secret(
    conn: sqlite3.Connection, group: str, kid: bytes, secret: bytes, *, root: bool = False
) -> None:
    """Keep a secret of the group (idempotent); ``root`` marks the group's first one."""
    conn.execute(
        """INSERT INTO group_keys (group_id, kid, secret, root, added_ts) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (group_id, kid) DO UPDATE SET secret = excluded.secret,
            root = max(group_keys.root, excluded.root)""",
        (group, kid, secret, int(root), now_ts()),
    )


def key_rows(conn: sqlite3.Connection, group: str) -> tuple[list[KeyRow], bytes | None]:
    """The group's key rows (``keyring.load``) and the root's key id (``None``: none stored)."""
    rows, root = [], None
    for kid, secret, previous, author, members, forgotten, seq, is_root in conn.execute(
        "SELECT kid, secret, previous, author, members, forgotten, seq, root FROM group_keys"
        " WHERE group_id = ? ORDER BY added_ts, kid",
        (group,),
    ):
        cut = json.loads(forgotten)
        rows.append((kid, secret, previous, author, json.loads(members), cut, seq))
        if is_root:
            root = kid
    return rows, root


def cutoffs(conn: sqlite3.Connection) -> dict[str, int]:
    """Each forgotten device and the last seq of it kept in the log."""
    rows = conn.execute("SELECT device_id, forgotten FROM devices WHERE forgotten IS NOT NULL")
    return {device: int(seq) for device, seq in rows}


def held_beyond(conn: sqlite3.Connection, cut: dict[str, int]) -> dict[str, int]:
    """Of ``cut`` (device -> cut-off), the devices of which more is stored, and how far."""
    out = {}
    for device, seq in cut.items():
        row = conn.execute("SELECT max(seq) FROM events WHERE origin = ?", (device,)).fetchone()
        if row[0] is not None and row[0] > seq:
            out[device] = int(row[0])
    return out


def _group_rekeyed(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, GroupRekeyed)
    if event.origin in body.forgotten:
        return  # a device cannot forget itself into the keys (keyring.rotation_of)
    kid, previous = bytes.fromhex(body.key), bytes.fromhex(body.previous)
    conn.execute(
        """INSERT INTO group_keys
            (group_id, kid, previous, author, members, forgotten, seq, added_ts)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (group_id, kid) DO UPDATE SET previous = excluded.previous,
            author = excluded.author, members = excluded.members,
            forgotten = excluded.forgotten, seq = excluded.seq""",
        (
            body.group,
            kid,
            previous,
            event.origin,
            json.dumps(sorted(body.secrets)),
            json.dumps({d: int(s) for d, s in body.forgotten.items()}),
            event.seq,
            event.ts,
        ),
    )
    for device, seq in body.forgotten.items():
        conn.execute(
            "UPDATE devices SET forgotten = max(coalesce(forgotten, 0), ?) WHERE device_id = ?",
            (int(seq), device),
        )
        conn.execute("DELETE FROM agents WHERE device_id = ?", (device,))


def _forgotten_held(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, ForgottenHeld)
    conn.execute(
        "UPDATE devices SET forgotten = max(forgotten, ?) WHERE device_id = ?"
        " AND forgotten IS NOT NULL",
        (body.seq, body.device),
    )


HANDLERS: Final = {"group_rekeyed": _group_rekeyed, "forgotten_held": _forgotten_held}
