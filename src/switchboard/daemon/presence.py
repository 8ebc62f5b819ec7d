"""Presence rules: an agent's shown status, who is listed, who is reachable, who accepts.

(The methods that set and list them are daemon/agents.py.)

Visibility is enforced by the device that answers: ``agents`` and room member lists leave out
hidden agents and ghosts (except the asking agent itself), ``send`` reaches a hidden agent only
by its exact address ``name:DEV`` and a ghost not at all, and the device of a ghost holds back
direct messages that reach it anyway (sent before the sender's device learned of the change):
no ``delivered`` receipt, and its inbox shows them only once it is visible again.

A remote agent's shown status is its last ``status_changed`` while its device is connected;
``unreachable`` as soon as the link says the device went away (the relay's presence notice,
a broker's last will), with the time the device was last seen; and ``offline`` once the
device has been silent longer than ``offline_timeout``. It leaves listings once it has been
offline for ``expire_after`` seconds (its history stays). An agent that is offline and never
did anything but exist (``store.delivery.LIFECYCLE_TYPES``) is not listed either
(daemon/agents.py). A local agent whose harness process (its anchor) died is ``offline`` by its
own device's ``status_changed`` (daemon/coordination.py).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import TYPE_CHECKING, Any

from switchboard.store import projections, rooms

if TYPE_CHECKING:
    from switchboard.config import Settings


def _epoch(ts: str | None) -> float | None:
    if not ts:
        return None
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def effective_status(
    row: dict[str, Any], local_device: str, settings: Settings, now: float
) -> tuple[str, str | None]:
    """Return an agent's shown status and the time (ISO) it took it.

    Args:
        row: a ``projections.list_agents`` row.
        local_device: this device's id (local agents are never derived offline).
        settings: for ``offline_timeout``.
        now: the current time (epoch seconds).
    """
    status, since = row["status"] or "active", row["status_ts"]
    if row["device_id"] != local_device and not row.get("online"):
        seen = _epoch(row.get("device_last_seen"))
        if seen is None or now - seen > settings.offline_timeout:
            return "offline", row.get("device_last_seen") or since
        if status != "offline":
            return "unreachable", row.get("device_last_seen") or since
    return status, since


def is_expired(row: dict[str, Any], local_device: str, settings: Settings, now: float) -> bool:
    """Whether a remote agent has been offline for longer than ``expire_after``."""
    if row["device_id"] == local_device:
        return False
    status, since = effective_status(row, local_device, settings, now)
    if status != "offline":
        return False
    start = _epoch(since) or 0.0
    if since == row.get("device_last_seen") and row["status"] != "offline":
        start += settings.offline_timeout  # derived: offline from the end of the timeout
    return now - start > settings.expire_after


def gone(conn: sqlite3.Connection, address: str) -> bool:
    """Whether the agent at internal address ``name:<device_id>`` is offline (as last told)."""
    name, _, device = address.rpartition(":")
    rows = projections.find_agents(conn, name, device)
    return bool(rows) and rows[0]["status"] == "offline"


def reachable(conn: sqlite3.Connection, rows: list[dict[str, Any]], *, exact: bool) -> list[Any]:
    """Keep the agents a message may reach: no ghosts; hidden ones only by exact address."""
    shown = rooms.visibility_of(conn)
    allowed = ("visible", "hidden") if exact else ("visible",)
    return [r for r in rows if shown.get((r["device_id"], r["name"]), "visible") in allowed]


def ghost_since(conn: sqlite3.Connection, device: str, name: str) -> str | None:
    """The time an agent became a ghost, or ``None`` if it is not one."""
    row = conn.execute(
        "SELECT visibility, ts FROM visibility WHERE device_id = ? AND name = ?", (device, name)
    ).fetchone()
    return str(row[1]) if row and row[0] == "ghost" else None


def accepts(conn: sqlite3.Connection, recipient: str, event: Any) -> bool:
    """Whether a local agent accepts a message event: a ghost refuses those sent since."""
    name, _, device = recipient.rpartition(":")
    since = ghost_since(conn, device, name)
    return since is None or event.ts < since


def held_back(conn: sqlite3.Connection, device: str, name: str, rows: list[Any]) -> list[Any]:
    """Drop from inbox rows the messages a ghost does not accept (sent since it became one)."""
    since = ghost_since(conn, device, name)
    if since is None:
        return rows
    return [r for r in rows if not (r.get("sender") and r["ts"] >= since)]
