"""Presence: status, summary and visibility of agents; who is listed, who is reachable.

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
did anything but exist (``delivery.LIFECYCLE_TYPES``) is not listed either. A local agent whose
harness process (its anchor) died is ``offline`` by its own device's ``status_changed``
(daemon/coordination.py).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import TYPE_CHECKING, Any

import msgspec

from switchboard.daemon.params import params_of
from switchboard.errors import NotFound, UserError
from switchboard.events import STATUSES, VISIBILITIES, StatusChanged, VisibilityChanged
from switchboard.store import delivery, projections, rooms

if TYPE_CHECKING:
    from switchboard.config import Settings
    from switchboard.daemon.service import Daemon


class PresenceParams(msgspec.Struct, forbid_unknown_fields=False):
    agent: str = ""
    status: str | None = None
    summary: str | None = None
    visibility: str | None = None


class AgentsParams(msgspec.Struct, forbid_unknown_fields=False):
    agent: str = ""
    all: bool = False


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


def held_back(conn: sqlite3.Connection, device: str, name: str, rows: list[Any]) -> list[Any]:
    """Drop from inbox rows the messages a ghost does not accept (sent since it became one)."""
    since = ghost_since(conn, device, name)
    if since is None:
        return rows
    return [r for r in rows if not (r.get("sender") and r["ts"] >= since)]


class PresenceHandlers:
    """API methods ``presence.set`` and the listing behind ``agents``."""

    d: Daemon

    if TYPE_CHECKING:

        async def ensure_agent(self, agent: str) -> str: ...

        def _agent_json(self, row: dict[str, Any]) -> dict[str, Any]: ...

    async def presence_set(self, params: Any) -> dict[str, Any]:
        """Set the acting agent's status, summary and/or visibility; return the agent."""
        p = params_of(PresenceParams, params)
        if p.status is None and p.summary is None and p.visibility is None:
            raise UserError("nothing to set: give a status, a summary or a visibility")
        if p.status is not None and p.status not in STATUSES:
            raise UserError(f"unknown status {p.status[:20]!r}: use {', '.join(STATUSES)}")
        if p.visibility is not None and p.visibility not in VISIBILITIES:
            raise UserError(
                f"unknown visibility {p.visibility[:20]!r}: use {', '.join(VISIBILITIES)}"
            )
        name = await self.ensure_agent(p.agent)
        items: list[tuple[str, Any]] = []
        if p.status is not None or p.summary is not None:
            status = p.status or (await self._own_row(name))["status"] or "active"
            summary = None if p.summary is None else " ".join(p.summary.split())[:200]
            items.append((name, StatusChanged(status=status, reason="set", summary=summary)))
        if p.visibility is not None:
            items.append((name, VisibilityChanged(visibility=p.visibility)))
        await self.d.log.append_many(items)
        return await self.agent_view(await self._own_row(name), name)

    async def _own_row(self, name: str) -> dict[str, Any]:
        rows = await self.d.read(projections.find_agents, name, self.d.device_id)
        if not rows:
            raise NotFound(f"unknown agent {name}")
        row: dict[str, Any] = rows[0]
        return row

    async def listed_agents(self, params: Any) -> list[dict[str, Any]]:
        """Agents of every device that are listed: visible and not expired (``all``: every one)."""
        p = params_of(AgentsParams, params)
        rows = await self.d.read(projections.list_agents)
        me = p.agent.lower()
        now = dt.datetime.now(dt.UTC).timestamp()
        shown = await self.d.read(rooms.visibility_of)
        out = []
        for row in rows:
            key = (row["device_id"], row["name"])
            itself = key == (self.d.device_id, me)
            if not p.all and not itself:
                if shown.get(key, "visible") != "visible":
                    continue
                if is_expired(row, self.d.device_id, self.d.settings, now):
                    continue
                if await self._never_active(row, now):
                    continue
            out.append(await self.agent_view(row, me, shown.get(key, "visible")))
        return out

    async def _never_active(self, row: dict[str, Any], now: float) -> bool:
        """An agent that is gone and never did anything (a harness's health check, a session
        opened and closed without a turn) is not listed; ``agents --all`` still shows it."""
        if effective_status(row, self.d.device_id, self.d.settings, now)[0] != "offline":
            return False
        cache: dict[tuple[str, str], tuple[str, bool]]
        cache = self.__dict__.setdefault("_activity_cache", {})
        key = (row["device_id"], row["name"])
        seen = str(row["last_seen"] or "")
        if key not in cache or cache[key][0] != seen:
            active = await self.d.read(delivery.has_activity, row["device_id"], row["name"])
            cache[key] = (seen, active)
        return not cache[key][1]

    async def agent_view(
        self, row: dict[str, Any], me: str = "", visibility: str | None = None
    ) -> dict[str, Any]:
        """The agent JSON of DESIGN.md §5 plus ``visibility`` and the effective status."""
        out = self._agent_json(row)
        now = dt.datetime.now(dt.UTC).timestamp()
        out["status"] = effective_status(row, self.d.device_id, self.d.settings, now)[0]
        if out["status"] == "unreachable":
            out["device_last_seen"] = row.get("device_last_seen")
        if visibility is None:
            shown = await self.d.read(rooms.visibility_of)
            visibility = shown.get((row["device_id"], row["name"]), "visible")
        out["visibility"] = visibility
        return out
