"""Handoffs: which agent handed its work to which successor, and what a brief reads.

Theory of operation: an ``agent_handed_off`` event (by the original's device) records the
successor of ``(origin, name)``; a later handoff of the same agent replaces it. Every device
holds the table, so whichever device sends a message to the original also offers it to the
successor (``daemon/messages.py``). The reads here gather what a handoff brief tells the
successor: the messages the original exchanged lately and the requests still open to it.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Final

from switchboard.events import AgentHandedOff, Event
from switchboard.store.local import Row, rows_of
from switchboard.store.search import message_rows


def agent_handed_off(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    """Record (or replace) the original's successor, and show the original as handed off."""
    assert isinstance(body, AgentHandedOff)
    conn.execute(
        "INSERT OR REPLACE INTO handoffs (device_id, name, successor, task, ts)"
        " VALUES (?, ?, ?, ?, ?)",
        (event.origin, body.name, body.successor, body.task, event.ts),
    )
    conn.execute(
        "UPDATE agents SET status = 'handed_off', status_ts = ?1"
        " WHERE device_id = ?2 AND name = ?3 AND (status_ts IS NULL OR status_ts <= ?1)",
        (event.ts, event.origin, body.name),
    )


HANDLERS: Final = {"agent_handed_off": agent_handed_off}


def successors(conn: sqlite3.Connection, addresses: list[str]) -> dict[str, str]:
    """``{original address: successor address}`` for those of ``addresses`` (internal
    ``name:<device_id>``) that were handed off."""
    out: dict[str, str] = {}
    for address in addresses:
        name, _, device = address.rpartition(":")
        row = conn.execute(
            "SELECT successor FROM handoffs WHERE device_id = ? AND name = ?", (device, name)
        ).fetchone()
        if row is not None and row[0] != address:
            out[address] = str(row[0])
    return out


def handoff_of(conn: sqlite3.Connection, device: str, name: str) -> Row | None:
    """The handoff of one agent (``successor``, ``task``, ``ts``), or ``None``."""
    rows = rows_of(
        conn.execute(
            "SELECT successor, task, ts FROM handoffs WHERE device_id = ? AND name = ?",
            (device, name),
        )
    )
    return rows[0] if rows else None


def conversation(conn: sqlite3.Connection, dev: str, name: str, last: int) -> list[Row]:
    """The last ``last`` messages the agent sent or received itself (no room traffic it only
    could read), oldest first."""
    sql = """SELECT e.id, e.origin || '/' || e.seq AS ref, e.ts, e.origin, e.agent AS sender,
        coalesce(d.short, '') AS sender_short, e.data
        FROM events AS e LEFT JOIN devices AS d ON d.device_id = e.origin
        WHERE e.type = 'message_posted' AND ((e.origin = :dev AND e.agent = :name)
            OR EXISTS (SELECT 1 FROM inbox AS i
                WHERE i.event_id = e.id AND i.device_id = :dev AND i.name = :name))
        ORDER BY e.id DESC LIMIT :last"""
    return message_rows(conn.execute(sql, {"dev": dev, "name": name, "last": last}))[::-1]


def open_requests(conn: sqlite3.Connection, dev: str, name: str) -> list[Row]:
    """Requests to the agent it has not answered yet (open request watches), oldest first."""
    return rows_of(
        conn.execute(
            "SELECT w.ref, w.sender_name, coalesce(d.short, '') AS sender_short, w.ts"
            " FROM watches AS w LEFT JOIN devices AS d ON d.device_id = w.sender_device"
            " WHERE w.device_id = ? AND w.name = ? AND w.state = 'open' ORDER BY w.event_id",
            (dev, name),
        )
    )
