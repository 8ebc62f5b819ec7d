"""Projections of file leases, request watches and file edits (for edit-conflict notices)."""

# Theory of operation: a ``lease_acquired`` adds one row per path or glob; a later acquire of
# the same pattern by the same agent supersedes the earlier row; ``lease_released`` ends rows.
# Expiry is not an event: a row is active while ``expires`` is in the future, so every device
# frees a lease at the same moment without anyone writing anything.
#
# A ``message_posted`` with intent ``request`` opens a watch per recipient; a reply by that
# recipient (``reply_to`` the request, or a message in the request's thread to its sender)
# closes it; a ``watch_fired`` notice marks it fired. ``file_edited`` events are kept keyed by
# repository and repository-relative path, so edits on two machines of one repository match.

from __future__ import annotations

import fnmatch
import json
import os.path
import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from switchboard.events import (
    Event,
    FileEdited,
    LeaseAcquired,
    LeaseReleased,
    MessagePosted,
    NoticePosted,
)
from switchboard.repos import folder_key
from switchboard.store.local import Row, rows_of
from switchboard.store.rooms import split_address

# -- leases --------------------------------------------------------------------------------------


def lease_acquired(conn: sqlite3.Connection, local_id: int, event: Event, body: Any) -> None:
    """Add a row per pattern, superseding the agent's earlier lease on the same pattern."""
    assert isinstance(body, LeaseAcquired)
    ref = f"{event.origin}/{event.seq}"
    for pattern in dict.fromkeys(body.paths):
        conn.execute(
            """UPDATE leases SET released_ts = ?1 WHERE device_id = ?2 AND name = ?3
            AND repo = ?4 AND pattern = ?5 AND released_ts IS NULL AND ts <= ?1""",
            (event.ts, event.origin, event.agent, body.repo, pattern),
        )
        conn.execute(
            """INSERT OR IGNORE INTO leases (ref, pattern, event_id, device_id, name, repo,
                exclusive, reason, ts, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                ref,
                pattern,
                local_id,
                event.origin,
                event.agent,
                body.repo,
                int(body.exclusive),
                body.reason[:500],
                event.ts,
                body.expires,
            ),
        )


def lease_released(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    """End the agent's leases on the named patterns (all of its leases in the repo if none)."""
    assert isinstance(body, LeaseReleased)
    patterns = list(body.paths)
    conn.execute(
        f"""UPDATE leases SET released_ts = ? WHERE device_id = ? AND name = ? AND repo = ?
        AND released_ts IS NULL AND ts <= ?
        {"AND pattern IN (" + ",".join("?" * len(patterns)) + ")" if patterns else ""}""",  # noqa: S608 - placeholders only
        (event.ts, event.origin, event.agent, body.repo, event.ts, *patterns),
    )


def active_leases(conn: sqlite3.Connection, repo: str | None, now: str) -> list[Row]:
    """Return unreleased, unexpired lease rows (of one repo, or all), oldest first, with the
    holder's device ``short``."""
    return rows_of(
        conn.execute(
            """SELECT l.*, coalesce(d.short, '') AS short FROM leases AS l
            LEFT JOIN devices AS d ON d.device_id = l.device_id
            WHERE (?1 IS NULL OR l.repo = ?1) AND l.released_ts IS NULL AND l.expires > ?2
            ORDER BY l.ts, l.pattern""",
            (repo, now),
        )
    )


def all_leases(conn: sqlite3.Connection, limit: int) -> list[Row]:
    """Return the newest ``limit`` lease rows, active or not, oldest first."""
    rows = rows_of(
        conn.execute(
            """SELECT l.*, coalesce(d.short, '') AS short FROM leases AS l
            LEFT JOIN devices AS d ON d.device_id = l.device_id
            ORDER BY l.event_id DESC, l.pattern LIMIT ?""",
            (limit,),
        )
    )
    return rows[::-1]


def covers(pattern: str, path: str) -> bool:
    """Whether a lease ``pattern`` covers ``path``: equal, a glob match, or a directory prefix."""
    base = pattern.rstrip("/")
    return (
        pattern == path
        or fnmatch.fnmatchcase(path, pattern)
        or (bool(base) and path.startswith(base + "/"))
    )


def overlaps(a: str, b: str) -> bool:
    """Whether two patterns may name a common path (conservative for two globs)."""
    return covers(a, b) or covers(b, a)


# -- watches -------------------------------------------------------------------------------------


def message_watched(conn: sqlite3.Connection, local_id: int, event: Event, body: Any) -> None:
    """Open watches for a request; close the watches a reply answers."""
    assert isinstance(body, MessagePosted)
    ref = f"{event.origin}/{event.seq}"
    sender = f"{event.agent}:{event.origin}"
    if body.intent == "request" and event.agent:
        rows = []
        for recipient in body.recipients:
            if recipient != sender:
                device, name = split_address(recipient)
                thread = body.thread or ref
                rows.append((ref, local_id, thread, event.origin, event.agent, device, name))
        conn.executemany(
            """INSERT OR IGNORE INTO watches (ref, event_id, thread, sender_device, sender_name,
                device_id, name, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            [(*row, event.ts) for row in rows],
        )
    if body.reply_to or body.thread:
        conn.execute(
            """UPDATE watches SET state = 'replied' WHERE state = 'open' AND device_id = :dev
            AND name = :name AND (ref = :reply_to OR (thread = :thread
                AND sender_name || ':' || sender_device IN (SELECT value FROM json_each(:to))))""",
            {
                "dev": event.origin,
                "name": event.agent,
                "reply_to": body.reply_to,
                "thread": body.thread,
                "to": json.dumps(body.recipients),
            },
        )


def notice_recorded(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    """A fired watch stops watching; an edit-conflict notice is remembered for de-duplication."""
    assert isinstance(body, NoticePosted)
    if body.kind == "watch_fired" and body.ref and body.subject:
        device, name = split_address(body.subject)
        conn.execute(
            "UPDATE watches SET state = 'fired' WHERE ref = ? AND device_id = ? AND name = ?"
            " AND state = 'open'",
            (body.ref, device, name),
        )
    elif body.kind == "edit_conflict":
        for recipient in body.recipients:
            device, name = split_address(recipient)
            conn.execute(
                "INSERT INTO edit_notices (device_id, name, other, path, ts) VALUES (?,?,?,?,?)",
                (device, name, body.subject, body.path, event.ts),
            )


def open_watches(conn: sqlite3.Connection, sender_device: str) -> list[Row]:
    """Return the open watches whose sender lives on ``sender_device``."""
    return rows_of(
        conn.execute(
            "SELECT * FROM watches WHERE state = 'open' AND sender_device = ? ORDER BY ts",
            (sender_device,),
        )
    )


# -- file edits ----------------------------------------------------------------------------------


def file_edited(conn: sqlite3.Connection, local_id: int, event: Event, body: Any) -> None:
    """Keep an edit under its repository and repository-relative path."""
    assert isinstance(body, FileEdited)
    row = conn.execute(
        "SELECT cwd FROM agents WHERE device_id = ? AND name = ?", (event.origin, event.agent)
    ).fetchone()
    if body.repo and body.repo_path:
        repo, path = body.repo, os.path.normpath(body.repo_path)
    else:  # an edit recorded before repositories were recognised
        repo, path = folder_key(body.path, row[0] if row else "")
    conn.execute(
        "INSERT OR IGNORE INTO file_edits (event_id, device_id, name, repo, path, ts)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (local_id, event.origin, event.agent, repo, path, event.ts),
    )


def file_edited_many(conn: sqlite3.Connection, run: Sequence[tuple[int, Event, Any]]) -> None:
    """``file_edited`` for a run of consecutive edits (``projections.apply_many``): nothing in
    the run changes an agent's folder, so each agent's is read once, and the rows go in with
    one ``executemany``."""
    cwds: dict[tuple[str, str], str] = {}
    rows = []
    for local_id, event, body in run:
        assert isinstance(body, FileEdited)
        if body.repo and body.repo_path:
            repo, path = body.repo, os.path.normpath(body.repo_path)
        else:  # an edit recorded before repositories were recognised
            agent = (event.origin, event.agent)
            cwd = cwds.get(agent)
            if cwd is None:
                row = conn.execute(
                    "SELECT cwd FROM agents WHERE device_id = ? AND name = ?", agent
                ).fetchone()
                cwd = cwds[agent] = row[0] if row else ""
            repo, path = folder_key(body.path, cwd)
        rows.append((local_id, event.origin, event.agent, repo, path, event.ts))
    conn.executemany(
        "INSERT OR IGNORE INTO file_edits (event_id, device_id, name, repo, path, ts)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )


def edits_near(
    conn: sqlite3.Connection, local_ids: Sequence[int], window: float, device: str
) -> list[Row]:
    """Return edits of the same path by other agents within ``window`` seconds of each edit in
    ``local_ids``, with that edit's own fields as ``my_*`` (one query for a whole batch).

    Only pairs with an agent of ``device`` on one side: nobody here is told of the others, and a
    batch of remote edits (a catch-up) is then matched against this device's edits only."""
    return rows_of(
        conn.execute(
            """SELECT o.device_id, o.name, o.ts, coalesce(d.short, '') AS short, me.path,
                me.device_id AS my_device, me.name AS my_name, me.ts AS my_ts
            FROM file_edits AS me JOIN file_edits AS o ON o.repo = me.repo AND o.path = me.path
                AND NOT (o.device_id = me.device_id AND o.name = me.name)
            LEFT JOIN devices AS d ON d.device_id = o.device_id
            WHERE me.event_id IN (SELECT value FROM json_each(?1))
                AND (me.device_id = ?3 OR o.device_id = ?3)
                AND abs(julianday(o.ts) - julianday(me.ts)) * 86400.0 <= ?2
            ORDER BY me.event_id, o.ts""",
            (json.dumps(list(local_ids)), window, device),
        )
    )


def last_edit_ts(conn: sqlite3.Connection, device: str) -> str:
    """Return the time of ``device``'s latest file edit, or ``""`` if it has made none."""
    row = conn.execute(
        "SELECT ts FROM events WHERE origin = ? AND type = 'file_edited' ORDER BY seq DESC LIMIT 1",
        (device,),
    ).fetchone()
    return str(row[0]) if row else ""


def recently_told(  # noqa: PLR0917 - the pair, the path and the window
    conn: sqlite3.Connection, device: str, name: str, other: str, path: str, since: str
) -> bool:
    """Whether the agent was told of an edit conflict with ``other`` on ``path`` since ``since``."""
    row = conn.execute(
        "SELECT 1 FROM edit_notices WHERE device_id = ? AND name = ? AND other = ? AND path = ?"
        " AND ts >= ? LIMIT 1",
        (device, name, other, path, since),
    ).fetchone()
    return row is not None


HANDLERS: Final = {
    "lease_acquired": lease_acquired,
    "lease_released": lease_released,
    "message_posted": message_watched,
    "notice_posted": notice_recorded,
    "file_edited": file_edited,
}
#: Event type -> a handler of a run of such events, equivalent to its ``HANDLERS`` in turn.
RUN_HANDLERS: Final = {"file_edited": file_edited_many}
