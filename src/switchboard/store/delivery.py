"""Delivery into agents' contexts: injections, harness sessions, anchors and subscriptions.

Theory of operation
-------------------
A message moves through three states per recipient (docs/internals.md, "Delivery"):
``queued`` (posted, not yet on the recipient's device), ``delivered`` (in the recipient's inbox
on its device: ``inbox.delivered_ts``, from ``message_delivered``), and ``read`` (acknowledged:
``inbox.read_ts``, from ``message_read``). Beside them runs *injection*: the message was placed
into one model context of the recipient (``injections``, from ``message_injected``). A context
is one harness session in one compaction generation, so a message is offered in full once per
context and never twice into the same one.

Two tables here are projections of events (``injections``, ``sessions``), folded by
``projections.apply_many`` through ``HANDLERS`` in the storing transaction. Two are local state
that is never replicated (``harness_anchors``: which harness process is which agent;
``subscriptions``: what events an agent asked to be told about). Like receipts, an injection
counts only when the recipient's own device vouches for it.
"""

from __future__ import annotations

import fnmatch
import json
import sqlite3
from collections.abc import Callable
from typing import Any, Final

from switchboard.events import (
    ContextCompacted,
    Event,
    MessageInjected,
    SessionStarted,
    SessionStopped,
)
from switchboard.store.local import Row, rows_of

# -- projections --------------------------------------------------------------------------------


def _message_injected(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, MessageInjected)
    name, sep, device = body.recipient.rpartition(":")
    if not sep or not name or device != event.origin:
        raise ValueError(f"injection for {body.recipient[:60]!r} not vouched by its device")
    conn.execute(
        "INSERT OR IGNORE INTO injections (message, device_id, name, context, via, ts)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (body.message, device, name, body.context, body.via, event.ts),
    )


def _session_started(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, SessionStarted)
    if not event.agent:
        raise ValueError("a session belongs to an agent")
    conn.execute(
        """INSERT INTO sessions (device_id, harness, session, name, generation, source, cwd,
            started_ts, last_ts)
        VALUES (:device, :harness, :session, :name, 0, :source, :cwd, :ts, :ts)
        ON CONFLICT (device_id, harness, session) DO UPDATE SET name = :name, source = :source,
            cwd = iif(:cwd = '', cwd, :cwd), last_ts = :ts, ended_ts = NULL,
            generation = generation + iif(:source = 'clear', 1, 0)""",
        {
            "device": event.origin,
            "harness": body.harness,
            "session": body.session,
            "name": event.agent,
            "source": body.source,
            "cwd": body.cwd,
            "ts": event.ts,
        },
    )


def _session_stopped(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, SessionStopped)
    conn.execute(
        "UPDATE sessions SET ended_ts = ?, last_ts = ? WHERE device_id = ? AND harness = ?"
        " AND session = ?",
        (event.ts, event.ts, event.origin, body.harness, body.session),
    )


def _context_compacted(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, ContextCompacted)
    conn.execute(
        "UPDATE sessions SET generation = generation + 1, last_ts = ? WHERE device_id = ?"
        " AND harness = ? AND session = ?",
        (event.ts, event.origin, body.harness, body.session),
    )


_Handler = Callable[[sqlite3.Connection, int, Event, Any], None]

#: Projection handlers by event tag; ``projections._HANDLERS`` includes them.
HANDLERS: Final[dict[str, _Handler]] = {
    "message_injected": _message_injected,
    "session_started": _session_started,
    "session_stopped": _session_stopped,
    "context_compacted": _context_compacted,
}


# -- reads ----------------------------------------------------------------------------------------


def context_id(harness: str, session: str, generation: int) -> str:
    """Name one model context: a harness session in one compaction generation."""
    return f"{harness}:{session}#{generation}"


def find_session(
    conn: sqlite3.Connection, device_id: str, harness: str, session: str
) -> Row | None:
    """Return the ``sessions`` row of a harness session on a device, or ``None``."""
    rows = rows_of(
        conn.execute(
            "SELECT * FROM sessions WHERE device_id = ? AND harness = ? AND session = ?",
            (device_id, harness, session),
        )
    )
    return rows[0] if rows else None


def latest_session(conn: sqlite3.Connection, device_id: str, name: str) -> Row | None:
    """Return the most recently active open session of an agent, or ``None``."""
    rows = rows_of(
        conn.execute(
            "SELECT * FROM sessions WHERE device_id = ? AND name = ? AND ended_ts IS NULL"
            " ORDER BY last_ts DESC LIMIT 1",
            (device_id, name),
        )
    )
    return rows[0] if rows else None


def injections_of(conn: sqlite3.Connection, ref: str) -> dict[str, str]:
    """Return ``internal address -> first injection ts`` for each recipient of message ``ref``."""
    cursor = conn.execute(
        "SELECT name || ':' || device_id, min(ts) FROM injections WHERE message = ?"
        " GROUP BY device_id, name",
        (ref,),
    )
    return dict(cursor.fetchall())


# -- anchors: which harness process is which agent (local) ---------------------------------------


def bind_anchor(
    conn: sqlite3.Connection, anchor: str, name: str, *, harness: str, session: str, ts: str
) -> None:
    """Record that the harness process ``anchor`` acts as agent ``name`` (in ``session``)."""
    conn.execute(
        """INSERT INTO harness_anchors (anchor, name, harness, session, ts)
        VALUES (?1, ?2, ?3, ?4, ?5)
        ON CONFLICT (anchor) DO UPDATE SET name = ?2, harness = iif(?3 = '', harness, ?3),
            session = iif(?4 = '', session, ?4), ts = ?5""",
        (anchor, name, harness, session, ts),
    )


def find_anchor(conn: sqlite3.Connection, anchor: str) -> Row | None:
    """Return the agent bound to a harness process, or ``None``."""
    rows = rows_of(conn.execute("SELECT * FROM harness_anchors WHERE anchor = ?", (anchor,)))
    return rows[0] if rows else None


def undelivered_refs(conn: sqlite3.Connection, device_id: str, name: str) -> list[str]:
    """Refs (``origin/seq``) of messages this agent holds unread with no delivered receipt."""
    cursor = conn.execute(
        """SELECT e.origin || '/' || e.seq FROM inbox AS i JOIN events AS e ON e.id = i.event_id
        WHERE i.device_id = ? AND i.name = ? AND i.delivered_ts IS NULL AND i.read_ts IS NULL
        ORDER BY i.event_id LIMIT 1000""",
        (device_id, name),
    )
    return [str(row[0]) for row in cursor]


def anchors_by_agent(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """Every bound harness process, by the agent it acts as."""
    found: dict[str, list[str]] = {}
    for anchor, name in conn.execute("SELECT anchor, name FROM harness_anchors"):
        found.setdefault(str(name), []).append(str(anchor))
    return found


def forget_anchors(conn: sqlite3.Connection, anchors: list[str]) -> None:
    """Drop bindings of harness processes that have ended."""
    conn.executemany("DELETE FROM harness_anchors WHERE anchor = ?", [(a,) for a in anchors])


#: Events that only say an agent exists (a session began or ended, its status changed): an
#: agent with nothing but these, registered under a picked name, never did anything.
LIFECYCLE_TYPES: Final = (
    "status_changed", "session_started", "session_stopped", "context_compacted",
    "visibility_changed",
)  # fmt: skip


def has_activity(conn: sqlite3.Connection, device_id: str, name: str) -> bool:
    """Whether agent ``name`` of ``device_id`` was ever more than a picked name that exists:
    an event beyond ``LIFECYCLE_TYPES``, or a registration under a chosen name.

    A scan of the log for an agent that never did anything: callers cache the answer (it
    changes only when the agent's ``last_seen`` does).
    """
    marks = ", ".join("?" * len(LIFECYCLE_TYPES))
    row = conn.execute(
        f"""SELECT 1 FROM events WHERE origin = ? AND agent = ? AND type NOT IN ({marks})
        AND NOT (type = 'agent_registered' AND json_extract(data, '$.picked') = 1)
        LIMIT 1""",  # noqa: S608 - placeholders only
        (device_id, name, *LIFECYCLE_TYPES),
    ).fetchone()
    return row is not None


# -- subscriptions (local) -------------------------------------------------------------------------


def add_subscription(
    conn: sqlite3.Connection,
    name: str,
    patterns: tuple[str, str, str | None],
    cursor: int,
    ts: str,
) -> int:
    """Subscribe agent ``name`` to events matching ``(type, agent, file)`` globs after ``cursor``.

    Returns:
        The subscription's id.
    """
    type_glob, agent_glob, file_glob = patterns
    row = conn.execute(
        "INSERT INTO subscriptions (name, type_glob, agent_glob, file_glob, cursor, created_ts)"
        " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (name, type_glob, agent_glob, file_glob, cursor, ts),
    ).fetchone()
    return int(row[0])


def remove_subscriptions(conn: sqlite3.Connection, name: str, sub_id: int | None) -> int:
    """Remove one subscription of ``name`` (or all of them, ``sub_id=None``); return how many."""
    cursor = conn.execute(
        "DELETE FROM subscriptions WHERE name = ? AND (?2 IS NULL OR id = ?2)", (name, sub_id)
    )
    return cursor.rowcount


def list_subscriptions(conn: sqlite3.Connection, name: str) -> list[Row]:
    """Return the subscriptions of agent ``name``, oldest first."""
    return rows_of(conn.execute("SELECT * FROM subscriptions WHERE name = ? ORDER BY id", (name,)))


def advance_subscriptions(conn: sqlite3.Connection, name: str, cursor: int) -> None:
    """Move every subscription cursor of ``name`` forward to ``cursor``."""
    conn.execute(
        "UPDATE subscriptions SET cursor = ? WHERE name = ? AND cursor < ?", (cursor, name, cursor)
    )


def event_matches(row: Row, event: dict[str, Any]) -> bool:
    """Whether an event (DESIGN §5 JSON shape) matches a subscription row's globs.

    ``type`` and ``agent`` globs match the event type and the acting agent's display address
    (``luna:BOXE``; a bare-name glob also matches the name alone); the file glob matches
    ``data.path`` (``file_edited``) against the whole path and its base name.
    """
    if not fnmatch.fnmatchcase(event.get("type", ""), row["type_glob"] or "*"):
        return False
    agent = str(event.get("agent") or "")
    agent_glob = row["agent_glob"] or "*"
    if not (
        fnmatch.fnmatchcase(agent, agent_glob)
        or fnmatch.fnmatchcase(agent.partition(":")[0], agent_glob)
    ):
        return False
    file_glob = row["file_glob"]
    if file_glob:
        path = (event.get("data") or {}).get("path")
        if not isinstance(path, str):
            return False
        base = path.rsplit("/", 1)[-1]
        return fnmatch.fnmatchcase(path, file_glob) or fnmatch.fnmatchcase(base, file_glob)
    return True


def newest_event_id(conn: sqlite3.Connection) -> int:
    """Return the local id of the newest stored event (0 for an empty log)."""
    return int(conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])


def message_ref(conn: sqlite3.Connection, local_id: int) -> str | None:
    """Return ``origin/seq`` of the ``message_posted`` event with local id ``local_id``."""
    row = conn.execute(
        "SELECT origin || '/' || seq FROM events WHERE id = ? AND type = 'message_posted'",
        (local_id,),
    ).fetchone()
    return str(row[0]) if row else None


def unread_messages(
    conn: sqlite3.Connection,
    device_id: str,
    name: str,
    limit: int,
    *,
    context: str | None = None,
    injected: bool = False,
) -> list[Row]:
    """Return up to ``limit`` unread messages of agent ``name`` on ``device_id``, oldest first.

    Each row is the inbox JSON shape (DESIGN §5: ``id``, ``ts``, ``from``, ``to``, ``text``,
    ``thread``) plus ``ref`` (``origin/seq``), ``device`` (the sender's short id),
    ``priority``, ``reply_to`` and ``recipients``.

    Args:
        conn: any connection.
        device_id: the recipient's device.
        name: the recipient agent.
        limit: at most this many rows.
        context: only those not yet injected into this context (with ``injected``: only those
            already injected there, each with its ``injected_ts``).
        injected: see ``context``.
    """
    where = ""
    if context is not None:
        where = f"AND {'' if injected else 'NOT '}EXISTS ({_INJECTED_HERE})"
    cursor = conn.execute(
        f"""SELECT e.id, e.origin || '/' || e.seq AS ref, e.ts, e.agent AS sender,
            coalesce(d.short, '') AS device, e.data,
            (SELECT min(j.ts) FROM injections AS j WHERE j.message = e.origin || '/' || e.seq
                AND j.device_id = i.device_id AND j.name = i.name AND j.context = :context
            ) AS injected_ts
        FROM inbox AS i JOIN events AS e ON e.id = i.event_id
            LEFT JOIN devices AS d ON d.device_id = e.origin
        WHERE i.device_id = :device AND i.name = :name AND i.read_ts IS NULL {where}
        ORDER BY i.event_id LIMIT :limit""",  # noqa: S608 - only our fixed clauses
        {"device": device_id, "name": name, "context": context, "limit": limit},
    )
    return [_message_row(row) for row in rows_of(cursor)]


_INJECTED_HERE = """SELECT 1 FROM injections AS j WHERE j.message = e.origin || '/' || e.seq
    AND j.device_id = i.device_id AND j.name = i.name AND j.context = :context"""


def get_message(conn: sqlite3.Connection, local_id: int) -> Row | None:
    """Return one ``message_posted`` event as a message row (like ``unread_messages``)."""
    cursor = conn.execute(
        """SELECT e.id, e.origin || '/' || e.seq AS ref, e.ts, e.agent AS sender,
            coalesce(d.short, '') AS device, e.data
        FROM events AS e LEFT JOIN devices AS d ON d.device_id = e.origin
        WHERE e.id = ? AND e.type = 'message_posted'""",
        (local_id,),
    )
    rows = [_message_row(row) for row in rows_of(cursor)]
    return rows[0] if rows else None


def _message_row(row: Row) -> Row:
    data = json.loads(row.pop("data"))
    sender = row.pop("sender")
    row["from"] = f"{sender}:{row['device']}" if sender else row["device"]
    row.update(
        to=data.get("to", []),
        text=data.get("text", ""),
        thread=data.get("thread"),
        priority=data.get("priority") or "normal",
        reply_to=data.get("reply_to"),
        recipients=data.get("recipients", []),
    )
    return row
