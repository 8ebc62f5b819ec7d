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
from switchboard.daemon.messages import ReceiptWaiters
from switchboard.daemon.params import (
    MAX_WAIT,
    AgentParams,
    LocalId,
    Pid,
    Rows,
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
from switchboard.harnesses import wrapping
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
    tags: list[str] | None = None  # None: keep the agent's tags


class TagsParams(AgentParams):
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
    limit: Rows = 100


class EventsParams(msgspec.Struct):
    # Events act for no one: ``agent`` here is a filter (a display address or a name).
    type: str | None = None
    agent: str | None = None
    where: str | None = None
    last: Rows | None = None
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
    GroupHandlers,
    DeliveryHandlers,
    RoomHandlers,
    PresenceHandlers,
    ThreadHandlers,
    LeaseHandlers,
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
        if p.tags is None:
            found = await self.d.read(projections.find_agents, name, self.d.device_id)
            tags = list(found[0]["tags"]) if found else []
        else:
            tags = _tags(p.tags)
        body = AgentRegistered(
            name=name, harness=p.harness, cwd=p.cwd, pid=p.pid, summary=p.summary, tags=tags
        )
        await self.d.log.append(name, body)
        return await self._agent(name)

    async def tags_set(self, params: Any) -> dict[str, Any]:
        """Set the acting agent's tags (replacing them; none clears them); return the agent.

        Tags are carried by ``agent_registered``, so the agent is registered again with what
        it had (harness, directory, summary) and the new tags; ``send +tag`` reaches it.
        """
        p = params_of(TagsParams, params)
        name = await self.ensure_agent(p.agent)
        [row] = await self.d.read(projections.find_agents, name, self.d.device_id)
        body = AgentRegistered(
            name=name, harness=row["harness"] or "shell", cwd=row["cwd"] or "", pid=row["pid"],
            summary=row["summary"] or "", tags=_tags(p.tags),
        )  # fmt: skip
        await self.d.log.append(name, body)
        return await self.agent_view(await self._own_row(name), name)

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
            raise UserError("no recipient: give @name, @name:DEVICE, #room, +tag or @all")
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
            elif isinstance(target, ids.TagTarget):
                rows = [
                    r
                    for r in projections.list_agents(conn)
                    if target.tag in r["tags"]
                    and not (r["name"] == sender and r["device_id"] == self.d.device_id)
                ]
                rows = reachable(conn, rows, exact=False)
                if not rows:
                    raise NotFound(f"no other agent tagged +{target.tag}")
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
            for peer in self.d.links.values():
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

        await self.d.part(ReceiptWaiters).wait(ref, done, wait)

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
        """Unread messages and notices of the acting agent, and the events its subscriptions
        matched (``events sub``) as notices, oldest first; marks them read (moves the
        subscriptions on) unless ``peek``."""
        p = params_of(InboxParams, params)
        name = await self.ensure_agent(p.agent)
        await self._settle()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(p.wait, 0.0), MAX_WAIT)
        limit = min(max(p.limit, 1), 1000)
        injector = self._dl.injector
        while True:
            mark = self.d.changes
            rows = await self.d.read(projections.inbox_unread, self.d.device_id, name, limit)
            rows = await self.d.read(held_back, self.d.device_id, name, rows)
            matched = await injector.take_events(name, limit=limit, advance=not p.peek)
            remaining = deadline - loop.time()
            if rows or matched or remaining <= 0:
                break
            await self.d.wait_advanced(remaining, since=mark)
        if rows and not p.peek:
            reader = f"{name}:{self.d.device_id}"
            items = [(name, MessageRead(message=row["ref"], reader=reader)) for row in rows]
            await self.d.log.append_many(items)
        shorts = await self.d.read(_device_shorts)
        me = ids.format_address(name, self.d.short)
        out = [self._message_json(row, shorts, me) for row in rows]
        out += [_event_notice(event, me) for event in matched]
        return sorted(out, key=lambda item: int(item["id"]))

    async def _settle(self) -> None:
        """On a daemon that has just started, let its links catch up before answering a read."""
        if time.time() - self.d.started < SETTLE_WINDOW:
            for peer in list(self.d.links.values()):
                await peer.wait_caught_up(SETTLE_WAIT)

    def _message_json(self, row: dict[str, Any], shorts: dict[str, str], me: str) -> dict[str, Any]:
        """The inbox message shape (DESIGN §5) plus ``intent``, ``reply_to`` and ``notice``.

        A notice (posted by a device, not an agent) comes ``from`` the device's short id, is
        addressed ``to`` its rooms or else to the reader, and says in ``notice`` what it is
        (``kind``) and whom it concerns (``subject``, a display address).
        """
        notice = row.get("notice")
        if notice is not None:
            notice = {**notice, "subject": _display(notice.get("subject") or "", shorts)}
        sender = row["sender"]
        return {
            "id": row["id"],
            "ts": row["ts"],
            "from": ids.format_address(sender, row["sender_short"]) if sender else row["from"],
            "to": row["to"] or ([me] if notice is not None else []),
            "text": row["text"],
            "thread": row["thread"],
            "intent": row.get("intent"),
            "reply_to": row.get("reply_to"),
            "notice": notice,
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


def _device_shorts(conn: Any) -> dict[str, str]:
    return {d["device_id"]: d["short"] for d in projections.list_devices(conn)}


def _display(address: str, shorts: dict[str, str]) -> str:
    """``name:<device id>`` as ``name:SHORT`` (an unknown device keeps its id)."""
    name, sep, device = address.rpartition(":")
    if not sep:
        return address
    return ids.format_address(name, shorts.get(device, device))


def _event_notice(event: dict[str, Any], me: str) -> dict[str, Any]:
    """An event a subscription of ``me`` matched, in the inbox message shape, as a notice."""
    return {
        "id": event["id"],
        "ts": event["ts"],
        "from": event["agent"] or event["device"],
        "to": [me],
        "text": wrapping.event_summary(event),
        "thread": None,
        "intent": None,
        "reply_to": None,
        "notice": {
            "kind": "event",
            "type": event["type"],
            "subject": event["agent"] or event["device"],
            "event": event,
        },
    }


def _tags(given: list[str]) -> list[str]:
    """Validated, de-duplicated tags in the order given (``a,b`` items split at commas)."""
    found: dict[str, None] = {}
    for item in given:
        for part in str(item).split(","):
            if part.strip():
                found[ids.parse_tag(part.lstrip().removeprefix("+"))] = None
    if len(found) > ids.MAX_TAGS:
        raise UserError(f"{len(found)} tags exceed the limit of {ids.MAX_TAGS}")
    return list(found)
