"""The ``tasks`` projection: one row per task, folded from ``task_*`` events by the lifecycle table.

Theory of operation: every ``task_*`` event is written by the device that runs the task, so a
task's events arrive on every device in that device's order. ``task_requested`` opens the
row (``device_id`` = the event's origin); each later event applies only if it comes from the
same origin and ``tasks.lifecycle.step`` allows it from the row's state, so a buggy or forged
event from elsewhere cannot move a task.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Final

from switchboard.events import (
    Event,
    TaskAccepted,
    TaskBlocked,
    TaskEnded,
    TaskProgress,
    TaskRefused,
    TaskRequested,
    TaskStarted,
    TaskUnblocked,
)
from switchboard.store.local import Row, rows_of
from switchboard.tasks.lifecycle import LIVE, State, step

_COLUMNS: Final = (
    "task, device_id, requester, harness, text, dir, name, tags, terminal, state, reason, pid, "
    "started, window, requested_ts, started_ts, ended_ts, updated_ts, exit_status, result, "
    "diff_stat, progress, prompt, max_runtime, event_id"
)


def _requested(conn: sqlite3.Connection, local_id: int, event: Event, body: Any) -> None:
    assert isinstance(body, TaskRequested)
    conn.execute(
        """INSERT OR IGNORE INTO tasks (task, device_id, requester, harness, text, dir, name,
            tags, terminal, state, requested_ts, updated_ts, event_id)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'requested', ?, ?, ?)""",
        (body.task, event.origin, body.requester, body.harness, body.text, body.dir, body.name,
         json.dumps(body.tags), int(body.terminal), event.ts, event.ts, local_id),
    )  # fmt: skip


def _moved(conn: sqlite3.Connection, event: Event, task: str) -> bool:
    """Move the task's state by the event if the lifecycle allows it; say whether it did."""
    row = conn.execute("SELECT state, device_id FROM tasks WHERE task = ?", (task,)).fetchone()
    if row is None or row[1] != event.origin:
        return False
    new = step(State(row[0]), event.type, event.data)
    if new is None:
        return False
    conn.execute(
        "UPDATE tasks SET state = ?, updated_ts = ? WHERE task = ?", (new.value, event.ts, task)
    )
    return True


def _fields(conn: sqlite3.Connection, task: str, **values: Any) -> None:
    sets = ", ".join(f"{key} = ?" for key in values)
    conn.execute(f"UPDATE tasks SET {sets} WHERE task = ?", (*values.values(), task))  # noqa: S608


def _accepted(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, TaskAccepted)
    if _moved(conn, event, body.task):
        _fields(conn, body.task, name=body.agent, dir=body.dir, max_runtime=body.max_runtime)


def _refused(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, TaskRefused)
    if _moved(conn, event, body.task):
        _fields(conn, body.task, reason=body.reason[:500], ended_ts=event.ts)


def _started(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, TaskStarted)
    if _moved(conn, event, body.task):
        _fields(
            conn, body.task, pid=body.pid, started=body.started, name=body.agent,
            window=body.window, started_ts=event.ts,
        )  # fmt: skip


def _blocked(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, TaskBlocked)
    if _moved(conn, event, body.task):
        prompt = {"id": body.prompt, "tool": body.tool, "detail": body.detail, "ts": event.ts}
        _fields(conn, body.task, prompt=json.dumps(prompt))


def _unblocked(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, TaskUnblocked)
    if _moved(conn, event, body.task):
        _fields(conn, body.task, prompt=None)


def _progress(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, TaskProgress)
    if _moved(conn, event, body.task):
        _fields(conn, body.task, progress=body.text[:500])


def _interrupted(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    _moved(conn, event, str(event.data.get("task", "")))


def _ended(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, TaskEnded)
    if _moved(conn, event, body.task):
        _fields(
            conn, body.task, exit_status=body.exit_status, reason=body.reason[:500],
            result=body.result, diff_stat=body.diff_stat, ended_ts=event.ts, prompt=None,
        )  # fmt: skip


HANDLERS: Final = {
    "task_requested": _requested,
    "task_accepted": _accepted,
    "task_refused": _refused,
    "task_started": _started,
    "task_blocked": _blocked,
    "task_unblocked": _unblocked,
    "task_progress": _progress,
    "task_interrupted": _interrupted,
    "task_ended": _ended,
}


# -- reads ---------------------------------------------------------------------------------------


def _decoded(rows: list[Row]) -> list[Row]:
    for row in rows:
        row["tags"] = json.loads(row["tags"] or "[]")
        row["prompt"] = json.loads(row["prompt"]) if row["prompt"] else None
    return rows


def get_task(conn: sqlite3.Connection, task: str) -> Row | None:
    """One task by id, or by a unique prefix of its id; ``None`` if none or several match."""
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM tasks WHERE task >= ? AND task < ? LIMIT 2",  # noqa: S608
        (task, task + "\U0010ffff"),
    )
    rows = _decoded(rows_of(cursor))
    exact = [r for r in rows if r["task"] == task]
    if exact:
        return exact[0]
    return rows[0] if len(rows) == 1 else None


def list_tasks(conn: sqlite3.Connection, everything: bool, limit: int = 1000) -> list[Row]:
    """Tasks, newest first: the live ones, or with ``everything`` ended ones too."""
    where = "" if everything else "WHERE state IN ('requested', 'accepted', 'running', 'blocked')"
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM tasks {where} ORDER BY requested_ts DESC, task LIMIT ?",  # noqa: S608
        (limit,),
    )
    return _decoded(rows_of(cursor))


def live_tasks_of(conn: sqlite3.Connection, device_id: str) -> list[Row]:
    """The tasks a device runs (or was about to run): accepted, running or blocked."""
    states = tuple(state.value for state in LIVE)
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM tasks WHERE device_id = ? AND state IN (?, ?, ?)",  # noqa: S608
        (device_id, *states),
    )
    return _decoded(rows_of(cursor))


def task_of_agent(conn: sqlite3.Connection, device_id: str, name: str) -> Row | None:
    """The live task an agent of a device runs as, if any."""
    states = tuple(state.value for state in LIVE)
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM tasks WHERE device_id = ? AND name = ?"  # noqa: S608
        " AND state IN (?, ?, ?) ORDER BY requested_ts DESC LIMIT 1",
        (device_id, name, *states),
    )
    rows = _decoded(rows_of(cursor))
    return rows[0] if rows else None
