"""Device ids and event builders shared by the store tests."""

from __future__ import annotations

import sqlite3
from typing import Any

from switchboard.events import Body, Event, data_of, tag_of
from switchboard.ids import device_id_from_public_key

ME = device_id_from_public_key(bytes([1]) * 32)
PEER = device_id_from_public_key(bytes([2]) * 32)
OTHER = device_id_from_public_key(bytes([3]) * 32)


def remote(origin: str, seq: int, body: Body, *, agent: str = "nova", ts: str = "") -> Event:
    """Return an event of ``origin`` as a peer would send it."""
    return Event(
        origin=origin,
        seq=seq,
        ts=ts or f"2026-01-01T00:00:{seq % 60:02d}.000Z",
        type=tag_of(body),
        agent=agent,
        data=data_of(body),
    )


def raw(origin: str, seq: int, type_: str, data: dict[str, Any], *, agent: str = "nova") -> Event:
    """Return an event with arbitrary type and data (possibly invalid for its type)."""
    return Event(
        origin=origin, seq=seq, ts="2026-01-01T00:00:00.000Z", type=type_, agent=agent, data=data
    )


def count(conn: sqlite3.Connection, table: str) -> int:
    """Return the number of rows in ``table``."""
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
