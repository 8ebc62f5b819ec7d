"""Message history: threads, full-text search (SQLite FTS5) and who may see which message."""

# Theory of operation: every ``message_posted`` is indexed in ``message_fts`` (rowid = its local
# id) and, when it belongs to a thread, in ``message_threads``. Reads take the reading agent and
# add ``VISIBLE``: an agent sees a message it sent, a message it received (an inbox row), and a
# message to a room it may read (a public room, or one it is a member of). So search, threads
# and room history never show a secret room's messages to a non-member, although the device
# holds them.

from __future__ import annotations

import re
import sqlite3
from typing import Any, Final

import msgspec

from switchboard.errors import UserError
from switchboard.events import Event, MessagePosted
from switchboard.ids import EventId
from switchboard.store.local import Row, rows_of

# A query longer than this is not a search a person or an agent types; it bounds FTS work.
MAX_QUERY_LENGTH: Final = 500

#: SQL condition: message ``e`` is visible to the agent ``(:dev, :name)``.
VISIBLE: Final = """(
    (e.origin = :dev AND e.agent = :name)
    OR EXISTS (SELECT 1 FROM inbox AS i
        WHERE i.event_id = e.id AND i.device_id = :dev AND i.name = :name)
    OR EXISTS (SELECT 1 FROM room_messages AS rm JOIN rooms AS r ON r.name = rm.room
        WHERE rm.event_id = e.id AND (r.kind = 'public' OR EXISTS (
            SELECT 1 FROM room_members AS m WHERE m.room = r.name AND m.joined
                AND m.device_id = :dev AND m.name = :name))))"""

_SELECT: Final = """SELECT e.id, e.origin || '/' || e.seq AS ref, e.ts, e.origin, e.agent AS sender,
    coalesce(d.short, '') AS sender_short, e.data
    FROM events AS e LEFT JOIN devices AS d ON d.device_id = e.origin"""

_TOKEN: Final = re.compile(r'"([^"]*)"|(\S+)')


# -- handlers ------------------------------------------------------------------------------------


def message_indexed(conn: sqlite3.Connection, local_id: int, event: Event, body: Any) -> None:
    """Index a message's text for search, and its thread."""
    assert isinstance(body, MessagePosted)
    conn.execute("INSERT INTO message_fts (rowid, text) VALUES (?, ?)", (local_id, body.text))
    if body.thread:
        conn.execute(
            "INSERT OR IGNORE INTO message_threads (event_id, thread, reply_to) VALUES (?, ?, ?)",
            (local_id, body.thread[:200], body.reply_to),
        )


HANDLERS: Final = {"message_posted": message_indexed}


# -- reads ---------------------------------------------------------------------------------------


def fts_query(text: str) -> str:
    """Turn what a user typed into an FTS5 query: words (all must match), ``"a phrase"`` and
    ``prefix*``; everything else is taken literally, so no input is a syntax error.

    Raises:
        UserError: the query is empty or too long.
    """
    if len(text) > MAX_QUERY_LENGTH:
        raise UserError(f"search query of {len(text)} characters exceeds {MAX_QUERY_LENGTH}")
    terms = []
    for phrase, word in _TOKEN.findall(text):
        if phrase.strip():
            terms.append('"' + phrase.replace('"', "") + '"')
        elif word and word.strip('"*'):
            prefix = word.endswith("*")
            quoted = '"' + word.strip('"*').replace('"', "") + '"'
            terms.append(quoted + ("*" if prefix else ""))
    if not terms:
        raise UserError("empty search query")
    return " ".join(terms)


def message_rows(cursor: sqlite3.Cursor) -> list[Row]:
    """Rows of ``_SELECT`` as message dicts: ``id, ref, ts, origin, sender, sender_short``
    plus ``to, text, thread, intent, reply_to`` from the data."""
    rows = rows_of(cursor)
    for row in rows:
        data = msgspec.json.decode(row.pop("data"))
        row.update(
            to=data.get("to", []),
            text=data.get("text", ""),
            thread=data.get("thread"),
            intent=data.get("intent"),
            reply_to=data.get("reply_to"),
            recipients=data.get("recipients", []),
        )
    return rows


def search(  # noqa: PLR0917 - the reader, the query and its filters
    conn: sqlite3.Connection,
    dev: str,
    name: str,
    query: str,
    room: str | None,
    sender: tuple[str | None, str] | None,
    limit: int,
) -> list[Row]:
    """Return up to ``limit`` messages visible to ``(dev, name)`` matching ``query``, best first.

    Args:
        conn: a reader.
        dev: the reader's device id.
        name: the reader's name.
        query: as the user typed it (see ``fts_query``).
        room: only messages to this room.
        sender: only messages by this ``(device_id or None for any device, name)``.
        limit: the most rows returned.
    """
    sql = f"""{_SELECT} JOIN (SELECT rowid, rank FROM message_fts WHERE message_fts MATCH :q) AS f
        ON f.rowid = e.id
        WHERE e.type = 'message_posted' AND {VISIBLE}
        AND (:room IS NULL OR EXISTS (SELECT 1 FROM room_messages AS x
            WHERE x.event_id = e.id AND x.room = :room))
        AND (:sname IS NULL OR (e.agent = :sname AND (:sdev IS NULL OR e.origin = :sdev)))
        ORDER BY f.rank, e.id LIMIT :limit"""  # noqa: S608 - constants only
    params = {
        "q": fts_query(query),
        "dev": dev,
        "name": name,
        "room": room,
        "sdev": sender[0] if sender else None,
        "sname": sender[1] if sender else None,
        "limit": limit,
    }
    return message_rows(conn.execute(sql, params))


def thread(conn: sqlite3.Connection, dev: str, name: str, thread_id: str, limit: int) -> list[Row]:
    """Return the visible messages of a thread (its root and replies), oldest first."""
    origin, _, seq = thread_id.rpartition("/")
    sql = f"""{_SELECT} WHERE e.type = 'message_posted' AND (
            e.id IN (SELECT event_id FROM message_threads WHERE thread = :thread)
            OR (e.origin = :origin AND e.seq = :seq)) AND {VISIBLE}
        ORDER BY e.id LIMIT :limit"""  # noqa: S608 - constants only
    params = {
        "thread": thread_id,
        "origin": origin,
        "seq": int(seq) if seq.isdigit() else -1,
        "dev": dev,
        "name": name,
        "limit": limit,
    }
    return message_rows(conn.execute(sql, params))


def message_by_id(conn: sqlite3.Connection, dev: str, name: str, local_id: int) -> Row | None:
    """Return the message with this local id if it is visible to the agent."""
    sql = f"{_SELECT} WHERE e.id = :id AND e.type = 'message_posted' AND {VISIBLE}"
    rows = message_rows(conn.execute(sql, {"id": local_id, "dev": dev, "name": name}))
    return rows[0] if rows else None


def message_by_ref(conn: sqlite3.Connection, ref: EventId) -> Row | None:
    """Return the message with this global id, visible or not (the daemon checks)."""
    sql = f"{_SELECT} WHERE e.origin = ? AND e.seq = ? AND e.type = 'message_posted'"
    rows = message_rows(conn.execute(sql, (ref.origin, ref.seq)))
    return rows[0] if rows else None


def room_history(  # noqa: PLR0917 - the room, the reader and the window
    conn: sqlite3.Connection, room: str, dev: str, name: str, after: int, last: int | None
) -> list[Row]:
    """Return a room's messages after local id ``after`` (or only the ``last`` ones), oldest
    first."""
    order = "DESC" if last is not None else "ASC"
    sql = f"""{_SELECT} WHERE e.id IN (SELECT event_id FROM room_messages WHERE room = :room)
        AND e.id > :after AND {VISIBLE} ORDER BY e.id {order} LIMIT :limit"""  # noqa: S608
    params = {"room": room, "after": after, "dev": dev, "name": name, "limit": last or 1000}
    rows = message_rows(conn.execute(sql, params))
    return rows[::-1] if last is not None else rows


def sent_by(conn: sqlite3.Connection, dev: str, name: str, last: int) -> list[Row]:
    """Return the last ``last`` messages the agent sent, oldest first."""
    sql = f"""{_SELECT} WHERE e.type = 'message_posted' AND e.origin = ? AND e.agent = ?
        ORDER BY e.id DESC LIMIT ?"""
    return message_rows(conn.execute(sql, (dev, name, last)))[::-1]
