"""The ``plans`` projection: one row per plan (task graph), folded from ``plan_*`` events.

Theory of operation: the device that runs a plan writes all of its events, so they arrive
everywhere in that device's order. ``plan_started`` opens the row with every step
``pending``; a later event applies only if it comes from the row's device, and moves a step
only forward (pending -> running -> an end), so a replayed or forged event cannot rewind it.
``version`` counts the events applied: a follower waits for it to grow.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Final

import msgspec

from switchboard.events import Event, PlanEnded, PlanStarted, PlanStepEnded, PlanStepStarted
from switchboard.store.local import Row, rows_of
from switchboard.tasks.plan import ENDED, PENDING, RUNNING

_COLUMNS: Final = (
    "plan, device_id, agent, name, state, steps, started_ts, ended_ts, version, event_id"
)


def _started(conn: sqlite3.Connection, local_id: int, event: Event, body: Any) -> None:
    assert isinstance(body, PlanStarted)
    steps = [
        {**msgspec.to_builtins(step), "state": PENDING, "task": "", "reason": ""}
        for step in body.steps
    ]
    conn.execute(
        """INSERT OR IGNORE INTO plans (plan, device_id, agent, name, state, steps, started_ts,
            event_id) VALUES (?, ?, ?, ?, 'running', ?, ?, ?)""",
        (body.plan, event.origin, event.agent, body.name, json.dumps(steps), event.ts, local_id),
    )


def _own(conn: sqlite3.Connection, event: Event, plan: str) -> list[dict[str, Any]] | None:
    row = conn.execute("SELECT device_id, steps FROM plans WHERE plan = ?", (plan,)).fetchone()
    if row is None or row[0] != event.origin:
        return None
    steps: list[dict[str, Any]] = json.loads(row[1])
    return steps


def _save(conn: sqlite3.Connection, plan: str, steps: list[dict[str, Any]]) -> None:
    conn.execute(
        "UPDATE plans SET steps = ?, version = version + 1 WHERE plan = ?",
        (json.dumps(steps), plan),
    )


def _step_started(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, PlanStepStarted)
    steps = _own(conn, event, body.plan)
    for step in steps or ():
        if step["name"] == body.step and step["state"] == PENDING:
            step.update(state=RUNNING, task=body.task)
            _save(conn, body.plan, steps or [])


def _step_ended(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, PlanStepEnded)
    steps = _own(conn, event, body.plan)
    for step in steps or ():
        if step["name"] == body.step and step["state"] not in ENDED and body.state in ENDED:
            step.update(state=body.state, reason=body.reason[:500], task=body.task or step["task"])
            _save(conn, body.plan, steps or [])


def _ended(conn: sqlite3.Connection, _id: int, event: Event, body: Any) -> None:
    assert isinstance(body, PlanEnded)
    if _own(conn, event, body.plan) is not None:
        conn.execute(
            "UPDATE plans SET state = ?, ended_ts = ?, version = version + 1"
            " WHERE plan = ? AND state = 'running'",
            (body.state, event.ts, body.plan),
        )


HANDLERS: Final = {
    "plan_started": _started,
    "plan_step_started": _step_started,
    "plan_step_ended": _step_ended,
    "plan_ended": _ended,
}


# -- reads ---------------------------------------------------------------------------------------


def _decoded(rows: list[Row]) -> list[Row]:
    for row in rows:
        row["steps"] = json.loads(row["steps"])
    return rows


def get_plan(conn: sqlite3.Connection, plan: str) -> Row | None:
    """One plan by id, or by a unique prefix of it; ``None`` if none or several match."""
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM plans WHERE plan >= ? AND plan < ? LIMIT 2",  # noqa: S608
        (plan, plan + "\U0010ffff"),
    )
    rows = _decoded(rows_of(cursor))
    exact = [r for r in rows if r["plan"] == plan]
    if exact:
        return exact[0]
    return rows[0] if len(rows) == 1 else None


def list_plans(conn: sqlite3.Connection, limit: int = 200) -> list[Row]:
    """Plans of every device, newest first."""
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM plans ORDER BY started_ts DESC, plan LIMIT ?",  # noqa: S608
        (limit,),
    )
    return _decoded(rows_of(cursor))


def running_plans_of(conn: sqlite3.Connection, device_id: str) -> list[Row]:
    """The plans a device runs that have not ended."""
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM plans WHERE device_id = ? AND state = 'running'",  # noqa: S608
        (device_id,),
    )
    return _decoded(rows_of(cursor))


def task_tagged(conn: sqlite3.Connection, device_id: str, tag: str) -> Row | None:
    """The task of a device that carries ``tag`` (a plan step's), if it is known here."""
    cursor = conn.execute(
        "SELECT task, state FROM tasks WHERE device_id = ?"
        " AND EXISTS (SELECT 1 FROM json_each(tasks.tags) WHERE value = ?) LIMIT 1",
        (device_id, tag),
    )
    rows = rows_of(cursor)
    return rows[0] if rows else None
