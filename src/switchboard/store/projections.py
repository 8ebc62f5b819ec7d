"""Projections: fold each stored event into devices, agents and inboxes, in its transaction."""

# Theory of operation: ``EventLog`` calls ``apply_many`` inside the transaction that stores the
# events, so these tables (created by ``migrations.py``) always match the log. A table of
# handlers keyed by tag folds each event inside a SAVEPOINT: an event whose data does not fit
# its type is rolled back out of the projections and ignored, but stays stored and replicated.
# Events of unknown types only bump their agent's ``last_seen``. Receipts count only from the
# recipient's own device: a device vouches for its own agents, never for another's.

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec

from switchboard.errors import InvalidAddress, SwitchboardError
from switchboard.events import (
    STATUSES,
    AgentRegistered,
    DeviceJoined,
    Event,
    MessageDelivered,
    MessagePosted,
    MessageRead,
    StatusChanged,
    body_of,
)
from switchboard.ids import parse_event_id, short_ids
from switchboard.store import coordination, delivery

# Group configuration and meta live in store/local.py; the daemon reaches them through here too.
from switchboard.store.local import (
    Row,
    add_group,
    get_group,
    get_meta,
    list_groups,
    remove_group,
    rows_of,
    set_group_enabled,
    set_group_link_options,
    set_group_relay_key,
    set_meta,
)  # fmt: skip

__all__ = [
    "Row", "add_group", "apply", "apply_many", "ensure_device", "find_agents", "get_group",
    "get_meta", "inbox_unread", "list_agents", "list_devices", "list_groups",
    "parse_internal_address", "receipts_for", "remove_group", "rows_of", "set_group_enabled",
    "set_group_link_options", "set_group_relay_key", "set_meta", "set_presence",
]  # fmt: skip

logger = logging.getLogger(__name__)

Stored = tuple[int, Event]

# Data that does not fit its type surfaces as one of these; anything else is a bug or a broken
# database and propagates (rolling back the whole write).
_IGNORED: Final = (ValueError, OverflowError, SwitchboardError, sqlite3.IntegrityError)


# -- folding events ------------------------------------------------------------------------------


def apply(conn: sqlite3.Connection, local_id: int, event: Event) -> None:
    """Fold one just-stored event into the projections (inside the storing transaction)."""
    apply_many(conn, [(local_id, event)])


def apply_many(conn: sqlite3.Connection, stored: Sequence[Stored]) -> None:
    """Fold just-stored events, in order, into the projections (inside the storing transaction).

    Equivalent to ``apply`` for each event in turn, with per-batch work (device rows,
    ``last_seen`` bumps) done once per batch.
    """
    first_seen: dict[str, str] = {}
    for _, event in stored:
        first_seen.setdefault(event.origin, event.ts)
    _add_devices(conn, first_seen)
    # Optimistic: the whole batch under one savepoint. Only if some event's data is bad (rare:
    # a buggy or newer peer) is the batch folded again with a savepoint per event, so that the
    # bad one is skipped and the others still count. Two statements per batch, not per event.
    conn.execute("SAVEPOINT projections")
    try:
        _apply_runs(conn, stored)
    except _IGNORED:
        conn.execute("ROLLBACK TO projections")
        for local_id, event in stored:
            _apply_event(conn, local_id, event, guarded=True)
    conn.execute("RELEASE projections")
    _bump_last_seen(conn, stored)


def _apply_runs(conn: sqlite3.Connection, stored: Sequence[Stored]) -> None:
    # Unguarded, in order; a run of consecutive events of a type with a run handler
    # (``coordination.RUN_HANDLERS``: a catch-up of file edits) is folded in one call.
    run: list[tuple[int, Event, Any]] = []
    run_type = ""
    for local_id, event in stored:
        if run and event.type != run_type:
            coordination.RUN_HANDLERS[run_type](conn, run)
            run = []
        if event.type in coordination.RUN_HANDLERS:
            run_type = event.type
            run.append((local_id, event, body_of(event)))
        else:
            _apply_event(conn, local_id, event, guarded=False)
    if run:
        coordination.RUN_HANDLERS[run_type](conn, run)


def _apply_event(conn: sqlite3.Connection, local_id: int, event: Event, *, guarded: bool) -> None:
    handlers = coordination.HANDLERS.get(event.type, ())  # rooms, search, leases
    main = _HANDLERS.get(event.type)
    if main is not None:
        handlers = (main, *handlers)
    if not handlers:
        return
    if not guarded:
        body = body_of(event)
        for handler in handlers:
            handler(conn, local_id, event, body)
        return
    conn.execute("SAVEPOINT projection")
    try:
        body = body_of(event)
        for handler in handlers:
            handler(conn, local_id, event, body)
    except _IGNORED as exc:
        conn.execute("ROLLBACK TO projection")
        logger.debug("! projections ignore %s/%s %s: %s", event.origin, event.seq, event.type, exc)
    conn.execute("RELEASE projection")


def _add_devices(conn: sqlite3.Connection, first_seen: dict[str, str]) -> None:
    # A row for each device not yet known (first seen at the given ts); new shorts for all.
    current = dict(conn.execute("SELECT device_id, short FROM devices").fetchall())
    new = [(device, ts) for device, ts in first_seen.items() if device not in current]
    if not new:
        return
    conn.executemany("INSERT INTO devices (device_id, first_seen) VALUES (?, ?)", new)
    shorts = short_ids(set(current) | {device for device, _ in new})
    changed = [(short, device) for device, short in shorts.items() if current.get(device) != short]
    conn.executemany("UPDATE devices SET short = ? WHERE device_id = ?", changed)


def _bump_last_seen(conn: sqlite3.Connection, stored: Sequence[Stored]) -> None:
    latest: dict[tuple[str, str], str] = {}
    for _, event in stored:
        key = (event.origin, event.agent)
        if event.agent and event.ts > latest.get(key, ""):
            latest[key] = event.ts
    conn.executemany(
        "UPDATE agents SET last_seen = ?1 WHERE device_id = ?2 AND name = ?3"
        " AND (last_seen IS NULL OR last_seen < ?1)",
        [(ts, device, name) for (device, name), ts in latest.items()],
    )


# -- handlers, one per event type --------------------------------------------------------------


def _device_joined(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, DeviceJoined)
    ensure_device(conn, event.origin, body.name, body.public_key, event.ts)


def _agent_registered(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, AgentRegistered)
    tags = msgspec.json.encode(body.tags).decode()
    conn.execute(
        """INSERT INTO agents (device_id, name, harness, cwd, pid, summary, tags, status,
            status_ts, registered_ts, last_seen)
        VALUES (:device, :name, :harness, :cwd, :pid, :summary, :tags, 'active', :ts, :ts, :ts)
        ON CONFLICT (device_id, name) DO UPDATE SET harness = :harness, cwd = :cwd, pid = :pid,
            summary = :summary, tags = :tags,
            status = iif(status_ts IS NULL OR status_ts <= :ts, 'active', status),
            status_ts = iif(status_ts IS NULL OR status_ts <= :ts, :ts, status_ts),
            registered_ts = coalesce(registered_ts, :ts),
            last_seen = iif(last_seen IS NULL OR last_seen < :ts, :ts, last_seen)""",
        {**msgspec.structs.asdict(body), "tags": tags, "device": event.origin, "ts": event.ts},
    )


def _status_changed(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, StatusChanged)
    if body.status not in STATUSES or not event.agent:
        raise ValueError(f"status {body.status[:20]!r} for agent {event.agent[:40]!r}")
    # Newer ts wins: an older status_changed arriving late is ignored.
    conn.execute(
        """INSERT INTO agents (device_id, name, status, status_ts, summary, last_seen)
        VALUES (:device, :name, :status, :ts, coalesce(:summary, ''), :ts)
        ON CONFLICT (device_id, name) DO UPDATE SET status = :status, status_ts = :ts,
            summary = coalesce(:summary, summary)
        WHERE status_ts IS NULL OR status_ts <= :ts""",
        {
            **msgspec.structs.asdict(body),
            "device": event.origin,
            "name": event.agent,
            "ts": event.ts,
        },
    )


def _message_posted(conn: sqlite3.Connection, local_id: int, event: Event, body: Any) -> None:
    assert isinstance(body, MessagePosted)
    rows = [(local_id, *recipient) for recipient in _recipients(body.recipients)]
    conn.executemany(
        "INSERT OR IGNORE INTO inbox (event_id, device_id, name) VALUES (?, ?, ?)", rows
    )
    message = f"{event.origin}/{event.seq}"
    pending = conn.execute(
        "SELECT kind, device_id, name, ts FROM pending_receipts WHERE message = ?", (message,)
    ).fetchall()
    for kind, device, name, ts in pending:
        _set_receipt(conn, local_id, kind, [(device, name)], ts)
    conn.execute("DELETE FROM pending_receipts WHERE message = ?", (message,))


def _message_delivered(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, MessageDelivered)
    _receipt(conn, event, body.message, "delivered", _recipients(body.recipients))


def _message_read(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, MessageRead)
    _receipt(conn, event, body.message, "read", _recipients([body.reader]))


_Handler = Callable[[sqlite3.Connection, int, Event, Any], None]

_HANDLERS: Final[dict[str, _Handler]] = {
    "device_joined": _device_joined,
    "agent_registered": _agent_registered,
    "status_changed": _status_changed,
    "message_posted": _message_posted,
    "message_delivered": _message_delivered,
    "message_read": _message_read,
    **delivery.HANDLERS,
}


# -- receipts ----------------------------------------------------------------------------------


def parse_internal_address(address: str) -> tuple[str, str]:
    """Split an internal address ``name:<device_id>`` into ``(device_id, name)``.

    Raises:
        InvalidAddress: no ``:``, or an empty name or device.
    """
    name, sep, device = address.rpartition(":")
    if not sep or not name or not device:
        raise InvalidAddress(f"invalid internal address {address[:60]!r}")
    return device, name


def _recipients(addresses: list[str]) -> list[tuple[str, str]]:
    """Parse internal addresses, skipping (and logging) any that are malformed."""
    parsed = []
    for address in addresses:
        try:
            parsed.append(parse_internal_address(address))
        except InvalidAddress as exc:
            logger.debug("! projections skip recipient: %s", exc)
    return parsed


def _receipt(
    conn: sqlite3.Connection,
    event: Event,
    message: str,
    kind: str,
    recipients: list[tuple[str, str]],
) -> None:
    mine = [(device, name) for device, name in recipients if device == event.origin]
    message_id = parse_event_id(message)
    row = conn.execute(
        "SELECT id FROM events WHERE origin = ? AND seq = ?", (message_id.origin, message_id.seq)
    ).fetchone()
    if row is not None:
        _set_receipt(conn, row[0], kind, mine, event.ts)
        return
    conn.executemany(
        "INSERT OR IGNORE INTO pending_receipts (message, kind, device_id, name, ts)"
        " VALUES (?, ?, ?, ?, ?)",
        [(str(message_id), kind, device, name, event.ts) for device, name in mine],
    )


def _set_receipt(
    conn: sqlite3.Connection, local_id: int, kind: str, recipients: list[tuple[str, str]], ts: str
) -> None:
    # The first receipt wins: a later duplicate never moves a timestamp.
    rows = [(ts, local_id, device, name) for device, name in recipients]
    conn.executemany(_RECEIPT_SQL[kind], rows)


_RECEIPT_SQL: Final = {
    "read": "UPDATE inbox SET read_ts = coalesce(read_ts, ?1), delivered_ts ="
    " coalesce(delivered_ts, ?1) WHERE event_id = ?2 AND device_id = ?3 AND name = ?4",
    "delivered": "UPDATE inbox SET delivered_ts = coalesce(delivered_ts, ?1)"
    " WHERE event_id = ?2 AND device_id = ?3 AND name = ?4",
}


# -- devices and presence (the daemon writes these too) -------------------------------------------


def ensure_device(
    conn: sqlite3.Connection, device_id: str, name: str, public_key: str, ts: str
) -> None:
    """Add or update a device's row with its name and public key (hex).

    Adding a device recomputes every short id.
    """
    _add_devices(conn, {device_id: ts})
    conn.execute(
        "UPDATE devices SET name = ?, public_key = ? WHERE device_id = ?",
        (name, public_key, device_id),
    )


def set_presence(conn: sqlite3.Connection, device_id: str, online: bool, ts: str) -> None:
    """Record that a device came online or went offline at ``ts`` (adding it if unknown)."""
    _add_devices(conn, {device_id: ts})
    conn.execute(
        "UPDATE devices SET online = ?, last_seen = ? WHERE device_id = ?",
        (int(online), ts, device_id),
    )


# -- reads ---------------------------------------------------------------------------------------


_AGENTS_SQL: Final = """SELECT a.device_id, coalesce(d.short, '') AS short, a.name, a.harness,
    a.cwd, a.summary, a.tags, a.status, a.status_ts, a.registered_ts, a.last_seen, a.pid,
    coalesce(d.online, 0) AS online, d.last_seen AS device_last_seen
    FROM agents AS a LEFT JOIN devices AS d ON d.device_id = a.device_id"""


def _agent_rows(cursor: sqlite3.Cursor) -> list[Row]:
    rows = rows_of(cursor)
    for row in rows:
        row["tags"] = msgspec.json.decode(row["tags"])
    return rows


def list_agents(conn: sqlite3.Connection) -> list[Row]:
    """Return every known agent of every device, ordered by device short id and name.

    Each row has the ``agents`` columns (``tags`` as a list), the device's ``short``, and its
    presence as ``online`` and ``device_last_seen``.
    """
    return _agent_rows(conn.execute(f"{_AGENTS_SQL} ORDER BY short, a.name"))


def find_agents(conn: sqlite3.Connection, name: str, device: str | None = None) -> list[Row]:
    """Return the agents called ``name``, like ``list_agents``.

    Args:
        conn: any connection.
        name: the agent name.
        device: only on this device: its device id or its short id (``None``: any device).
    """
    sql = (
        f"{_AGENTS_SQL} WHERE a.name = ?1 AND (?2 IS NULL OR a.device_id = ?2 OR d.short = ?2)"
        " ORDER BY short"
    )
    return _agent_rows(conn.execute(sql, (name, device)))


def list_devices(conn: sqlite3.Connection) -> list[Row]:
    """Return every known device (all ``devices`` columns), ordered by short id."""
    return rows_of(conn.execute("SELECT * FROM devices ORDER BY short, device_id"))


def device_shorts(conn: sqlite3.Connection) -> dict[str, str]:
    """Every known device's short id, by device id."""
    return dict(conn.execute("SELECT device_id, short FROM devices").fetchall())


def inbox_unread(conn: sqlite3.Connection, device_id: str, name: str, limit: int) -> list[Row]:
    """Return up to ``limit`` unread messages of agent ``name`` on ``device_id``, oldest first.

    Each row has ``id`` (local), ``ref`` (``origin/seq``), ``ts``, ``type``
    (``message_posted`` or ``notice_posted``), ``origin``, ``sender`` (agent name; empty for a
    notice, which its device posts), ``sender_short``, ``from`` (display address, or the
    device's short id for a notice), ``to``, ``text``, ``thread``, ``intent``, ``reply_to``,
    and for a notice ``notice``: its ``kind``, ``subject`` (internal address), ``room``,
    ``path`` and ``ref`` (``None`` for a message).
    """
    cursor = conn.execute(
        """SELECT e.id, e.origin || '/' || e.seq AS ref, e.ts, e.type, e.origin,
            e.agent AS sender, coalesce(d.short, '') AS sender_short, e.data
        FROM inbox AS i JOIN events AS e ON e.id = i.event_id
            LEFT JOIN devices AS d ON d.device_id = e.origin
        WHERE i.device_id = ? AND i.name = ? AND i.read_ts IS NULL
        ORDER BY i.event_id LIMIT ?""",
        (device_id, name, limit),
    )
    rows = rows_of(cursor)
    for row in rows:
        data = msgspec.json.decode(row.pop("data"))
        sender, short = row["sender"], row["sender_short"]
        row["from"] = f"{sender}:{short}" if sender else short
        row.update(to=data.get("to", []), text=data.get("text", ""), thread=data.get("thread"))
        row.update(intent=data.get("intent"), reply_to=data.get("reply_to"), notice=None)
        if row["type"] == "notice_posted":
            keys = ("kind", "subject", "room", "path", "ref")
            row["notice"] = {key: data.get(key) for key in keys}
    return rows


def receipts_for(conn: sqlite3.Connection, event_id: int) -> dict[str, Row]:
    """Return the receipt state of each recipient of message ``event_id`` (a local id).

    Returns:
        Internal address (``name:<device_id>``) -> row with ``device_id``, ``short``,
        ``name``, ``delivered_ts`` and ``read_ts`` (``None`` until that receipt arrives).
    """
    cursor = conn.execute(
        """SELECT i.device_id, coalesce(d.short, '') AS short, i.name, i.delivered_ts, i.read_ts
        FROM inbox AS i LEFT JOIN devices AS d ON d.device_id = i.device_id
        WHERE i.event_id = ? ORDER BY short, i.name""",
        (event_id,),
    )
    return {f"{row['name']}:{row['device_id']}": row for row in rows_of(cursor)}


assert not set(coordination.RUN_HANDLERS) & set(_HANDLERS), "a run handler replaces all of a type's"
