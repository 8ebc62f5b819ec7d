"""Where this device's harness sessions keep their transcripts: the local ``transcript_sources``
table (never replicated; a path means nothing on another device), and the sessions to read."""

from __future__ import annotations

import sqlite3

from switchboard.store.local import Row, rows_of


def note_source(
    conn: sqlite3.Connection, *, harness: str, session: str, name: str, source: str, ts: str
) -> None:
    """Record that ``session`` of ``harness`` (agent ``name``) keeps its transcript at or
    under ``source``."""
    conn.execute(
        """INSERT INTO transcript_sources (harness, session, name, source, ts)
        VALUES (?1, ?2, ?3, ?4, ?5)
        ON CONFLICT (harness, session) DO UPDATE SET name = ?3, source = ?4, ts = ?5""",
        (harness, session, name, source, ts),
    )


def source_of(conn: sqlite3.Connection, harness: str, session: str) -> str:
    """The recorded source of a session, or ``""``."""
    row = conn.execute(
        "SELECT source FROM transcript_sources WHERE harness = ? AND session = ?",
        (harness, session),
    ).fetchone()
    return str(row[0]) if row else ""


def sessions_of(conn: sqlite3.Connection, device_id: str, name: str) -> list[Row]:
    """The harness sessions of an agent of ``device_id``, the most recently active first."""
    return rows_of(
        conn.execute(
            "SELECT harness, session, cwd, started_ts, last_ts, ended_ts FROM sessions"
            " WHERE device_id = ? AND name = ? ORDER BY last_ts DESC",
            (device_id, name),
        )
    )
