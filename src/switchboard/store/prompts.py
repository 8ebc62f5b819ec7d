"""The ``permission_prompts`` projection: the permission prompts of agents that run no task.

A spawned task's prompts live on its ``tasks`` row (store/tasks.py). An agent started by hand
asks through its harness's hook instead: ``permission_asked`` (written by the agent's device,
the asker as its agent) opens a ``pending`` row, ``permission_answered`` from the same device
settles it (``allow``, ``deny``, ``timeout``, ``expired``). An answer from any other origin,
or for a row already settled, changes nothing.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Final

from switchboard.events import Event, PermissionAnswered, PermissionAsked
from switchboard.store.local import Row, rows_of

_COLUMNS: Final = (
    "prompt, device_id, name, harness, tool, detail, asked_ts, state, answered_by, reason, "
    "answered_ts"
)


def _asked(conn: sqlite3.Connection, local_id: int, event: Event, body: Any) -> None:
    assert isinstance(body, PermissionAsked)
    if not event.agent:
        raise ValueError("permission_asked without an asking agent")
    conn.execute(
        """INSERT OR IGNORE INTO permission_prompts (prompt, device_id, name, harness, tool,
            detail, asked_ts, state, event_id)
        VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)""",
        (body.prompt, event.origin, event.agent, body.harness[:40], body.tool[:100],
         body.detail[:500], event.ts, local_id),
    )  # fmt: skip


def _answered(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, PermissionAnswered)
    conn.execute(
        """UPDATE permission_prompts SET state = ?, answered_by = ?, reason = ?, answered_ts = ?
        WHERE prompt = ? AND device_id = ? AND state = 'pending'""",
        (body.answer[:20], body.by[:200], body.reason[:500], event.ts, body.prompt,
         event.origin),
    )  # fmt: skip


HANDLERS: Final = {"permission_asked": _asked, "permission_answered": _answered}


def pending(conn: sqlite3.Connection, device_id: str | None = None) -> list[Row]:
    """The prompts still waiting, oldest first (of one device, or of every device)."""
    where, args = ("AND device_id = ?", (device_id,)) if device_id else ("", ())
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM permission_prompts WHERE state = 'pending' {where}"  # noqa: S608
        " ORDER BY asked_ts, prompt LIMIT 1000",
        args,
    )
    return rows_of(cursor)


def get(conn: sqlite3.Connection, prompt: str) -> Row | None:
    """One prompt by id, or ``None``."""
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM permission_prompts WHERE prompt = ?",  # noqa: S608
        (prompt,),
    )
    rows = rows_of(cursor)
    return rows[0] if rows else None
