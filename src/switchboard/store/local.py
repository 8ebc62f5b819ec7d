"""Local state that is never replicated: group link configuration and meta key-values."""

# The daemon writes these rows on ``group create``/``join``/``link`` and at start-up; they
# are not events. ``groups`` holds secrets: ``store/query.py`` never lets user SQL read it,
# and the database file is 0600.

from __future__ import annotations

import sqlite3
from typing import Any

from switchboard.events import now_ts

Row = dict[str, Any]


def rows_of(cursor: sqlite3.Cursor) -> list[Row]:
    """Return a cursor's rows as dicts keyed by column name."""
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


# -- groups --------------------------------------------------------------------------------------


def add_group(  # noqa: PLR0917 - the daemon passes a group's fields in table order
    conn: sqlite3.Connection,
    group_id: str,
    name: str,
    secret: bytes,
    relay_url: str,
    relay_key: bytes | None = None,
    created_ts: str | None = None,
    *,
    enabled: bool = True,
) -> None:
    """Add a group's link configuration, or replace it (keeping ``created_ts``) if present.

    Args:
        conn: the writer connection.
        group_id: the group's id.
        name: its display name.
        secret: the group secret (never logged).
        relay_url: where its link connects.
        relay_key: the relay's pinned public key, once known.
        created_ts: when the group was added here (default: now).
        enabled: whether its link runs.
    """
    conn.execute(
        """INSERT INTO groups (group_id, name, secret, relay_url, relay_key, enabled, created_ts)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (group_id) DO UPDATE SET name = excluded.name, secret = excluded.secret,
            relay_url = excluded.relay_url, relay_key = excluded.relay_key,
            enabled = excluded.enabled""",
        (group_id, name, secret, relay_url, relay_key, int(enabled), created_ts or now_ts()),
    )


def set_group_link_options(conn: sqlite3.Connection, group_id: str, raw: str | None) -> None:
    """Write a group's link options (``transports.options`` JSON, or ``None``; secret)."""
    conn.execute("UPDATE groups SET link_options = ? WHERE group_id = ?", (raw, group_id))


def list_groups(conn: sqlite3.Connection) -> list[Row]:
    """Return every group's configuration (secrets included: never show these rows as is)."""
    return rows_of(conn.execute("SELECT * FROM groups ORDER BY created_ts, group_id"))


def get_group(conn: sqlite3.Connection, group_id: str) -> Row | None:
    """Return one group's configuration, or ``None`` if it is not configured."""
    rows = rows_of(conn.execute("SELECT * FROM groups WHERE group_id = ?", (group_id,)))
    return rows[0] if rows else None


def set_group_enabled(conn: sqlite3.Connection, group_id: str, enabled: bool) -> bool:
    """Turn a group's link on or off; return whether the group exists."""
    cursor = conn.execute(
        "UPDATE groups SET enabled = ? WHERE group_id = ?", (int(enabled), group_id)
    )
    return cursor.rowcount > 0


def set_group_relay_key(conn: sqlite3.Connection, group_id: str, relay_key: bytes) -> bool:
    """Pin the relay's public key for a group; return whether the group exists."""
    cursor = conn.execute(
        "UPDATE groups SET relay_key = ? WHERE group_id = ?", (relay_key, group_id)
    )
    return cursor.rowcount > 0


def remove_group(conn: sqlite3.Connection, group_id: str) -> bool:
    """Forget a group's configuration (its events stay in the log); return whether it existed."""
    return conn.execute("DELETE FROM groups WHERE group_id = ?", (group_id,)).rowcount > 0


# -- meta ----------------------------------------------------------------------------------------


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    """Return the meta value stored under ``key``, or ``None``."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    """Store ``value`` under ``key`` in meta, replacing any previous value."""
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


# -- terminals: the tmux pane of each local agent (daemon/term.py) -------------------------------


def set_terminal(  # noqa: PLR0917 - a row's fields in table order
    conn: sqlite3.Connection, name: str, socket: str, pane: str, pane_pid: int, pane_started: str
) -> None:
    """Record (or replace) the tmux pane local agent ``name`` runs in."""
    conn.execute(
        """INSERT INTO terminals (name, socket, pane, pane_pid, pane_started, ts)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6)
        ON CONFLICT (name) DO UPDATE SET socket = ?2, pane = ?3, pane_pid = ?4,
            pane_started = ?5, ts = ?6""",
        (name, socket, pane, pane_pid, pane_started, now_ts()),
    )


def get_terminal(conn: sqlite3.Connection, name: str) -> Row | None:
    """The tmux pane recorded for local agent ``name``, or ``None``."""
    rows = rows_of(conn.execute("SELECT * FROM terminals WHERE name = ?", (name,)))
    return rows[0] if rows else None
