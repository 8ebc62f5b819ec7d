"""The local API's methods: each takes a params dict and returns a JSON-able result.

Params are validated into Structs at the door (``_params``), so every method below works on
typed input and bad input gets one clear ``UserError``. Results follow DESIGN.md §5 shapes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from switchboard import ids
from switchboard.daemon.delivery import DeliveryHandlers
from switchboard.daemon.groups import LINK_WAIT, GroupHandlers
from switchboard.daemon.leases import LeaseHandlers
from switchboard.daemon.params import (
    MAX_WAIT,
    AgentParams,
    Count,
    EventCount,
    LocalId,
    Pid,
    Seconds,
    params_of,
)
from switchboard.daemon.presence import (
    PresenceHandlers,
    effective_status,
    held_back,
    reachable,
)
from switchboard.daemon.presence import gone as agent_gone
from switchboard.daemon.rooms import RoomHandlers, room_recipients
from switchboard.daemon.threads import ThreadHandlers
from switchboard.errors import NotFound, UserError
from switchboard.events import (
    AgentRegistered,
    MessageDelivered,
    MessagePosted,
    MessageRead,
    now_ts,
)
from switchboard.store import projections, query, rooms

if TYPE_CHECKING:
    from switchboard.daemon.service import Daemon

P = TypeVar("P", bound=msgspec.Struct)

# A message text longer than this is refused: messages are for coordination, files travel as
# files. It keeps every message well inside one envelope (frames.MAX_ENVELOPE_SIZE).
MAX_TEXT_LENGTH = 64 * 1024
# How long ``send`` waits for a receipt from an online recipient device before saying queued.
DEFAULT_SEND_WAIT = 2.0
# A read within this many seconds of the daemon's start first lets the links catch up (at most
# SETTLE_WAIT), so `inbox` right after a restart shows what arrived while we were down.
SETTLE_WINDOW = 15.0
SETTLE_WAIT = 3.0
# Rows a follower reads per query: a burst (a device catching up) streams page by page instead
# of hitting the row limit of one query, and no page holds the loop for long.
FOLLOW_PAGE = 500


class RegisterParams(AgentParams):
    harness: str = "shell"
    cwd: str = ""
    pid: Pid | None = None
    summary: str = ""
    tags: list[str] = msgspec.field(default_factory=list)


class SendParams(AgentParams):
    to: list[str] = msgspec.field(default_factory=list)
    text: str = ""
    thread: str | None = None
    wait: Seconds = DEFAULT_SEND_WAIT
    priority: str = "normal"  # or "urgent" (daemon/delivery.py)
    intent: str | None = None  # request, inform or ack (daemon/threads.py)
    reply_to: str | int | None = None  # a message's local id or origin/seq


class InboxParams(AgentParams):
    peek: bool = False
    wait: Seconds = 0.0
    limit: Count = 100


class EventsParams(msgspec.Struct):
    # Events act for no one: ``agent`` here is a filter (a display address or a name).
    type: str | None = None
    agent: str | None = None
    where: str | None = None
    last: EventCount | None = None
    after: LocalId | None = None
    wait: Seconds | None = None
    # Who reads (an agent of this device): events about rooms it may not read are left out
    # (issue #4); no reader reads as an outsider. ``all_rooms``: the device's whole log, for
    # the device's own tools and tests; agents' tools (CLI, MCP) name their reader.
    reader: str = ""
    all_rooms: bool = False


class InitParams(msgspec.Struct):
    name: str | None = None


class Handlers(
    GroupHandlers, DeliveryHandlers, RoomHandlers, PresenceHandlers, ThreadHandlers, LeaseHandlers
):
    """API methods over one ``Daemon``."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    # -- device ----------------------------------------------------------------------------------

    async def ping(self, params: Any) -> dict[str, Any]:
        """Answer with the daemon's pid and version."""
        return self.d.status_of_daemon()

    async def init(self, params: Any) -> dict[str, Any]:
        """Name this device (optional) and return its ids."""
        p = params_of(InitParams, params)
        if p.name:
            name = p.name.strip()[:64]
            if not name:
                raise UserError("device name is empty")

            def write(conn: Any) -> None:
                projections.set_meta(conn, "device_name", name)
                projections.ensure_device(
                    conn, self.d.device_id, name, self.d.public_key.hex(), now_ts()
                )

            await self.d.db.write(write)
        return await self._device()

    async def _device(self) -> dict[str, Any]:
        name = await self.d.read(projections.get_meta, "device_name")
        return {"id": self.d.device_id, "short": self.d.short, "name": name or ""}

    async def status(self, params: Any) -> dict[str, Any]:
        """The device, the daemon, each group's link, and the agents."""
        return {
            "device": await self._device(),
            "daemon": self.d.status_of_daemon(),
            "groups": [
                await self._group_status(g) for g in await self.d.read(projections.list_groups)
            ],
            "agents": await self.agents({}),
        }

    async def shutdown(self, params: Any) -> dict[str, Any]:
        """Stop the daemon after answering."""
        asyncio.get_running_loop().call_later(0.05, self.d.shutdown)
        return {"stopping": True}

    # -- agents ----------------------------------------------------------------------------------

    async def register(self, params: Any) -> dict[str, Any]:
        """Register (or update) a local agent; return it."""
        p = params_of(RegisterParams, params)
        name = self._agent_name(p.agent)
        body = AgentRegistered(
            name=name, harness=p.harness, cwd=p.cwd, pid=p.pid, summary=p.summary, tags=p.tags
        )
        await self.d.log.append(name, body)
        return await self._agent(name)

    async def ensure_agent(self, agent: str) -> str:
        """Return the acting agent's name, registering it on first use."""
        name = self._agent_name(agent)
        found = await self.d.read(projections.find_agents, name, self.d.device_id)
        if not found:
            await self.d.log.append(name, AgentRegistered(name=name))
        return name

    def _agent_name(self, agent: str) -> str:
        if not agent:
            raise UserError("no acting agent: pass --as NAME or set SWITCHBOARD_AGENT")
        return ids.parse_name(agent)

    async def agents(self, params: Any) -> list[dict[str, Any]]:
        """Agents of every device of the group that are listed (daemon/presence.py)."""
        return await self.listed_agents(params)

    async def _agent(self, name: str) -> dict[str, Any]:
        rows = await self.d.read(projections.find_agents, name, self.d.device_id)
        return self._agent_json(rows[0])

    def _agent_json(self, row: dict[str, Any]) -> dict[str, Any]:
        local = row["device_id"] == self.d.device_id
        status, _ = effective_status(row, self.d.device_id, self.d.settings, time.time())
        return {
            "address": ids.format_address(row["name"], row["short"]),
            "name": row["name"],
            "device": row["short"],
            "local": local,
            "status": status,
            "harness": row["harness"],
            "cwd": row["cwd"],
            "summary": row["summary"],
            "tags": row["tags"],
            "last_seen": row["last_seen"],
        }

    # -- messages --------------------------------------------------------------------------------

    async def send(self, params: Any) -> dict[str, Any]:
        """Post a message; say per recipient whether it was delivered or queued."""
        p = await self.with_reply(params_of(SendParams, params))
        if not p.to:
            raise UserError("no recipient: give @name, @name:DEVICE, #room or @all")
        if not p.text.strip():
            raise UserError("message text is empty")
        if len(p.text) > MAX_TEXT_LENGTH:
            raise UserError(
                f"message of {len(p.text)} characters exceeds limit of {MAX_TEXT_LENGTH}"
            )
        targets = [ids.parse_target(t) for t in p.to]
        sender = await self.ensure_agent(p.agent)
        recipients = await self.d.read(self._resolve, targets, sender)
        if p.priority not in ("normal", "urgent"):
            raise UserError(f"unknown priority {p.priority[:20]!r}: normal or urgent")
        body = MessagePosted(
            to=[str(t) for t in targets],
            recipients=recipients,
            text=p.text,
            thread=p.thread,
            priority=p.priority,
            intent=p.intent,
            reply_to=None if p.reply_to is None else str(p.reply_to),
        )
        gone = set(await self.d.read(self._gone, recipients))
        local = [r for r in recipients if r.endswith(":" + self.d.device_id) and r not in gone]
        items: list[tuple[str, Any]] = [(sender, body)]
        (msg_id, event), *_ = await self.d.log.append_many(items)
        ref = f"{event.origin}/{event.seq}"
        if local:
            await self.d.log.append("", MessageDelivered(message=ref, recipients=local))
        await self._wait_remote(msg_id, ref, recipients, min(max(p.wait, 0.0), 30.0))
        states = await self.d.read(projections.receipts_for, msg_id)
        return self._send_result(msg_id, recipients, states, gone)

    @staticmethod
    def _gone(conn: Any, recipients: list[str]) -> list[str]:
        """Recipients that went offline (not merely on a device that is away): a message to
        them is held by their device, not delivered, until they are back."""
        return [address for address in recipients if agent_gone(conn, address)]

    def _resolve(self, conn: Any, targets: list[ids.Target], sender: str) -> list[str]:
        found: dict[str, None] = {}
        for target in targets:
            if isinstance(target, ids.AllTarget):
                rows = [
                    r
                    for r in projections.list_agents(conn)
                    if not (r["name"] == sender and r["device_id"] == self.d.device_id)
                ]
                rows = reachable(conn, rows, exact=False)
                if not rows:
                    raise NotFound("no other agent in the group to send to")
            elif isinstance(target, ids.RoomTarget):
                rows = room_recipients(conn, target.room, self.d.device_id, sender)
            else:
                rows = projections.find_agents(conn, target.name, None)
                if target.device is not None:
                    rows = [r for r in rows if r["short"] == target.device]
                    if not rows:
                        self._check_device(conn, target.device)
                        raise NotFound(f"unknown agent {target.name}:{target.device}")
                rows = reachable(conn, rows, exact=target.device is not None)
                if not rows:
                    raise NotFound(f"unknown agent @{target.name}")
            for row in rows:
                found[f"{row['name']}:{row['device_id']}"] = None
        return list(found)

    def _check_device(self, conn: Any, short: str) -> None:
        if not any(d["short"] == short for d in projections.list_devices(conn)):
            raise NotFound(f"unknown device {short}")

    async def _wait_remote(self, msg_id: int, ref: str, recipients: list[str], wait: float) -> None:
        remote = [r for r in recipients if not r.endswith(":" + self.d.device_id)]
        if remote and wait > 0:
            # A daemon started by this very command is still connecting: give it a moment to
            # learn who is online before answering "queued".
            for peer in self.d.peers.values():
                if peer.status.state == "connecting":
                    await peer.wait_established(min(wait, LINK_WAIT / 5))
        online = {
            row["device_id"]
            for row in await self.d.read(projections.list_devices)
            if row["online"] and row["device_id"] != self.d.device_id
        }
        waiting = {r for r in recipients if r.rsplit(":", 1)[1] in online}
        if not waiting or wait <= 0:
            return
        conn_reader = self.d.db.reader

        def done() -> bool:
            states = projections.receipts_for(conn_reader(), msg_id)
            return all(states.get(r, {}).get("delivered_ts") for r in waiting)

        await self.d.wait_receipt(ref, done, wait)

    def _send_result(
        self,
        msg_id: int,
        recipients: list[str],
        states: dict[str, dict[str, Any]],
        gone: set[str],
    ) -> dict[str, Any]:
        shorts = {d["device_id"]: d["short"] for d in projections.list_devices(self.d.db.reader())}
        out = []
        for r in recipients:
            name, device = r.rsplit(":", 1)
            state = states.get(r, {})
            label = (
                "read"
                if state.get("read_ts")
                else "delivered"
                if state.get("delivered_ts")
                else "offline"
                if r in gone
                else "queued"
            )
            out.append(
                {"address": ids.format_address(name, shorts.get(device, "?")), "state": label}
            )
        labels = {o["state"] for o in out}
        overall = (
            "queued" if "queued" in labels else "offline" if "offline" in labels else ("delivered")
        )
        return {"id": msg_id, "result": overall, "recipients": out}

    async def inbox(self, params: Any) -> list[dict[str, Any]]:
        """Unread messages of the acting agent; marks them read unless ``peek``."""
        p = params_of(InboxParams, params)
        name = await self.ensure_agent(p.agent)
        await self._settle()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(p.wait, 0.0), MAX_WAIT)
        while True:
            mark = self.d.changes
            rows = await self.d.read(projections.inbox_unread, self.d.device_id, name, p.limit)
            rows = await self.d.read(held_back, self.d.device_id, name, rows)
            remaining = deadline - loop.time()
            if rows or remaining <= 0:
                break
            await self.d.wait_advanced(remaining, since=mark)
        if rows and not p.peek:
            reader = f"{name}:{self.d.device_id}"
            items = [(name, MessageRead(message=row["ref"], reader=reader)) for row in rows]
            await self.d.log.append_many(items)
        return [self._message_json(row) for row in rows]

    async def _settle(self) -> None:
        """On a daemon that has just started, let its links catch up before answering a read."""
        if time.time() - self.d.started < SETTLE_WINDOW:
            for peer in list(self.d.peers.values()):
                await peer.wait_caught_up(SETTLE_WAIT)

    def _message_json(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": row["id"],
            "ts": row["ts"],
            "from": ids.format_address(row["sender"], row["sender_short"]),
            "to": row["to"],
            "text": row["text"],
            "thread": row["thread"],
        }

    # -- events ----------------------------------------------------------------------------------

    async def events(self, params: Any) -> list[dict[str, Any]]:
        """Query the log: filters and read-only SQL."""
        p = params_of(EventsParams, params)
        await self._settle()
        return await self._query(p, p.after)

    async def _query(self, p: EventsParams, after: int | None) -> list[dict[str, Any]]:
        path = self.d.settings.db_path
        visible = await self._visible_rooms(p)

        def run() -> list[dict[str, Any]]:
            return query.run_query(
                path, p.where, type=p.type, agent=p.agent, last=p.last, after=after,
                visible_rooms=visible,
            )  # fmt: skip

        rows: list[dict[str, Any]] = await asyncio.to_thread(run)
        return rows

    async def _visible_rooms(self, p: EventsParams) -> list[str] | None:
        """The rooms whose events ``p.reader`` may see now (``None``: all, for ``all_rooms``)."""
        if p.all_rooms:
            if p.reader:
                raise UserError("pass a reader or all_rooms, not both")
            return None
        name = ids.parse_name(p.reader) if p.reader else ""
        visible: list[str] = await self.d.read(rooms.readable_rooms, self.d.device_id, name)
        return visible

    async def events_follow(self, params: Any) -> AsyncIterator[dict[str, Any]]:
        """Yield matching events as they are stored, from now (or after ``after``).

        One guarded connection serves the whole stream. Filters without ``where`` read only
        the new rows through indexes, a page at a time: that runs on the loop, as the
        projection reads do. User SQL may take long, so it runs in a worker thread.
        """
        p = params_of(EventsParams, params)
        guarded = query.GuardedQuery(self.d.settings.db_path, visible_rooms=None)
        try:
            guarded.show(await self._visible_rooms(p))
            after = p.after
            if after is None:
                newest = guarded.run(last=1)
                after = newest[-1]["id"] if newest else 0
            loop = asyncio.get_running_loop()
            deadline = None if p.wait is None else loop.time() + min(p.wait, MAX_WAIT)
            while True:
                mark = self.d.changes
                guarded.show(await self._visible_rooms(p))
                rows = await self._follow_page(guarded, p, after)
                for row in rows:
                    after = max(after, row["id"])
                    yield row
                if len(rows) >= FOLLOW_PAGE:
                    continue  # a burst: read on before waiting
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return
                await self.d.wait_advanced(60.0 if remaining is None else remaining, since=mark)
        finally:
            guarded.close()

    async def _follow_page(
        self, guarded: query.GuardedQuery, p: EventsParams, after: int
    ) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            return guarded.run(p.where, type=p.type, agent=p.agent, after=after, page=FOLLOW_PAGE)

        if p.where is None:
            return run()
        rows: list[dict[str, Any]] = await asyncio.to_thread(run)
        return rows
