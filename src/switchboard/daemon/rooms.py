"""Rooms: create, join, leave, invite, kick, list, members, read (with per-reader cursors).

Rules, enforced here on the device that accepts an action or answers a read:

=========  ===================  ========================  ======================
kind       listed to            may join                  may read / post
=========  ===================  ========================  ======================
public     everyone             everyone                  everyone / members
private    everyone             invited agents            members
secret     members only         invited agents            members
=========  ===================  ========================  ======================

To an outsider a secret room does not exist: every answer is "unknown room".

Member notices (``member_joined``, ``member_left``, ``invited``) are written by the device of
the acting agent, in the same transaction as the membership event they announce. That device
is the one place that knows the change happened, so the notice is written exactly once, is
never seen without its cause, and reaches every member in the order of the changes (one origin
replicates in order). Its recipients are the members that device knows of at that moment.
Agents that are hidden or ghosts are not announced and ghosts are not told.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from switchboard import ids
from switchboard.daemon.agents import agent_view, ensure_agent
from switchboard.daemon.params import AgentParams, Count, LocalId, Seconds
from switchboard.daemon.registry import Feature
from switchboard.daemon.shapes import Agent, HistoryMessage, Room, RoomJoin
from switchboard.daemon.threads import message_json
from switchboard.errors import Forbidden, NotFound, UserError
from switchboard.events import (
    ROOM_KINDS,
    Body,
    MessageRead,
    NoticePosted,
    RoomCreated,
    RoomInvited,
    RoomJoined,
    RoomKicked,
    RoomLeft,
    RoomRead,
)
from switchboard.store import projections, rooms, search

if TYPE_CHECKING:
    from switchboard.daemon.context import Context


class RoomParams(AgentParams):
    name: str = ""
    kind: str = "public"
    description: str = ""
    member: str = ""
    last: Count | None = None
    since: LocalId | None = None
    wait: Seconds | None = None


def _room(text: str) -> str:
    if not text.strip():
        raise UserError("no room name given")
    return ids.parse_room(text.strip().removeprefix("#"))


def check_room(conn: sqlite3.Connection, room: str, dev: str, name: str) -> dict[str, Any]:
    """Return the room's row with the agent's ``member``/``invited`` flags; a secret room the
    agent is neither in nor invited to is unknown.

    Raises:
        NotFound: no such room, or a secret one the agent may not know of.
    """
    row = rooms.get_room(conn, room)
    member = rooms.is_member(conn, room, dev, name)
    invited = rooms.is_invited(conn, room, dev, name)
    if row is None or (row["kind"] == "secret" and not member and not invited):
        raise NotFound(f"unknown room #{room}")
    return {**row, "member": member, "invited": invited}


def check_readable(conn: sqlite3.Connection, room: str, dev: str, name: str) -> dict[str, Any]:
    """Like ``check_room``, and refuse a non-member a private or secret room's history."""
    row = check_room(conn, room, dev, name)
    if row["kind"] != "public" and not row["member"]:
        raise Forbidden(f"#{room} is {row['kind']}: only its members read it")
    return row


def room_recipients(conn: sqlite3.Connection, room: str, dev: str, sender: str) -> list[Any]:
    """The agents a message from ``sender`` to ``#room`` reaches: the other members, no ghosts.

    Raises:
        NotFound: the room is unknown to the sender.
        Forbidden: the sender is not a member.
    """
    row = check_room(conn, room, dev, sender)
    if not row["member"]:
        raise Forbidden(f"not a member of #{room}: join it first")
    shown = rooms.visibility_of(conn)
    return [
        {"device_id": device, "name": name}
        for device, name in rooms.member_keys(conn, room)
        if (device, name) != (dev, sender) and shown.get((device, name)) != "ghost"
    ]


async def _room_begin(ctx: Context, p: RoomParams) -> tuple[str, str]:
    return await ensure_agent(ctx, p.agent), _room(p.name)


async def room_create(ctx: Context, p: RoomParams) -> Room:
    """Create a room; the acting agent is its first member."""
    name, room = await _room_begin(ctx, p)
    if p.kind not in ROOM_KINDS:
        raise UserError(f"unknown room kind {p.kind[:20]!r}: use {', '.join(ROOM_KINDS)}")
    if await ctx.read(rooms.get_room, room) is not None:
        raise UserError(f"room name #{room} is taken")
    body = RoomCreated(room=room, kind=p.kind, description=" ".join(p.description.split()))
    await ctx.log.append(name, body)
    return await _view(ctx, room, name)


async def room_join(ctx: Context, p: RoomParams) -> RoomJoin:
    """Join a room (private and secret rooms: by invitation); return it and its members."""
    name, room = await _room_begin(ctx, p)
    row = await ctx.read(check_room, room, ctx.device_id, name)
    if not row["member"]:
        if row["kind"] != "public" and not row["invited"]:
            raise Forbidden(f"#{room} is {row['kind']}: join by invitation only")
        notice = await _notice(ctx, room, name, "member_joined", f"joined #{room}")
        await ctx.log.append_many([(name, RoomJoined(room=room)), *notice])
    return RoomJoin(room=await _view(ctx, room, name), members=await _members(ctx, room, name))


async def room_leave(ctx: Context, p: RoomParams) -> Room:
    """Leave a room."""
    name, room = await _room_begin(ctx, p)
    row = await ctx.read(check_room, room, ctx.device_id, name)
    if not row["member"]:
        raise UserError(f"not a member of #{room}")
    notice = await _notice(ctx, room, name, "member_left", f"left #{room}")
    await ctx.log.append_many([(name, RoomLeft(room=room)), *notice])
    return await _view(ctx, room, name)


async def room_invite(ctx: Context, p: RoomParams) -> Room:
    """Invite an agent into a room (a member invites); the invitee is told."""
    name, room = await _room_begin(ctx, p)
    row = await ctx.read(check_room, room, ctx.device_id, name)
    if not row["member"]:
        raise Forbidden(f"only members of #{room} invite")
    invitee = await _agent_address(ctx, p.member)
    text = (
        f"{_display(ctx, name)} invited you to #{room} ({row['kind']}); "
        f"join with: switchboard room join {room}"
    )
    notice = NoticePosted(
        kind="invited", recipients=[invitee], text=text, to=[f"#{room}"], room=room,
        subject=f"{name}:{ctx.device_id}",
    )  # fmt: skip
    await ctx.log.append_many([(name, RoomInvited(room=room, invitee=invitee)), ("", notice)])
    return await _view(ctx, room, name)


async def room_kick(ctx: Context, p: RoomParams) -> Room:
    """Remove a member and its invitation (the room's creator only)."""
    name, room = await _room_begin(ctx, p)
    row = await ctx.read(check_room, room, ctx.device_id, name)
    if (row["creator_device"], row["creator_name"]) != (ctx.device_id, name):
        raise Forbidden(f"only the creator of #{room} removes members")
    member = await _agent_address(ctx, p.member)
    device, member_name = rooms.split_address(member)
    is_in = await ctx.read(rooms.is_member, room, device, member_name)
    if not is_in and not await ctx.read(rooms.is_invited, room, device, member_name):
        raise NotFound(f"{p.member} is not in #{room}")
    told = NoticePosted(
        kind="member_left", recipients=[member], text=f"you were removed from #{room}",
        to=[f"#{room}"], room=room, subject=member,
    )  # fmt: skip
    others = await _notice(ctx, room, member_name, "member_left", f"was removed from #{room}",
                                device=device, skip=member)  # fmt: skip
    items = [(name, RoomKicked(room=room, member=member)), ("", told), *others]
    await ctx.log.append_many(items)
    return await _view(ctx, room, name)


async def room_list(ctx: Context, p: RoomParams) -> list[Room]:
    """Rooms the acting agent may know of: public and private ones, and its secret ones."""
    name = await ensure_agent(ctx, p.agent)
    rows = await ctx.read(rooms.list_rooms, ctx.device_id, name)
    return [_room_json(r) for r in rows if r["kind"] != "secret" or r["member"]]


async def room_members(ctx: Context, p: RoomParams) -> list[Agent]:
    """A room's listed members, each with its status (members only, public rooms: all)."""
    name, room = await _room_begin(ctx, p)
    await ctx.read(check_readable, room, ctx.device_id, name)
    return await _members(ctx, room, name)


async def room_read(ctx: Context, p: RoomParams) -> list[HistoryMessage]:
    """A room's messages from the reader's cursor (or ``since`` an id, or the ``last`` N);
    moves the cursor past what it returns and marks those messages read."""
    name, room = await _room_begin(ctx, p)
    await ctx.read(check_readable, room, ctx.device_id, name)
    if p.since is not None:
        after = p.since
    elif p.last is not None:
        after = 0
    else:
        after = await ctx.read(rooms.cursor_of, room, ctx.device_id, name)
    rows = await ctx.read(search.room_history, room, ctx.device_id, name, after, p.last)
    await _advance(ctx, room, name, rows)
    return [message_json(row) for row in rows]


async def room_follow(ctx: Context, p: RoomParams) -> AsyncIterator[HistoryMessage]:
    """Yield a room's messages as they arrive, from the reader's cursor (or ``since``)."""
    name, room = await _room_begin(ctx, p)
    await ctx.read(check_readable, room, ctx.device_id, name)
    after = p.since
    if after is None:
        after = await ctx.read(rooms.cursor_of, room, ctx.device_id, name)
    loop_time = _clock()
    deadline = None if p.wait is None else loop_time() + max(p.wait, 0.0)
    while True:
        mark = ctx.changes
        rows = await ctx.read(search.room_history, room, ctx.device_id, name, after, None)
        await _advance(ctx, room, name, rows)
        for row in rows:
            after = max(after, row["id"])
            yield message_json(row)
        remaining = None if deadline is None else deadline - loop_time()
        if remaining is not None and remaining <= 0:
            return
        await ctx.wait_advanced(60.0 if remaining is None else remaining, since=mark)


# -- helpers -------------------------------------------------------------------------------


async def _advance(ctx: Context, room: str, name: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    newest = rows[-1]
    items: list[tuple[str, Body]] = []
    cursor = await ctx.read(rooms.cursor_of, room, ctx.device_id, name)
    if newest["id"] > cursor:
        items.append((name, RoomRead(room=room, last=newest["ref"])))
    unread = await ctx.read(_unread_of, [r["id"] for r in rows], ctx.device_id, name)
    reader = f"{name}:{ctx.device_id}"
    items += [(name, MessageRead(message=r["ref"], reader=reader)) for r in rows
              if r["id"] in unread]  # fmt: skip
    await ctx.log.append_many(items)


async def _notice(
    ctx: Context,
    room: str,
    subject: str,
    kind: str,
    what: str,
    *,
    device: str | None = None,
    skip: str | None = None,
) -> list[tuple[str, Body]]:
    """A notice to the room's members (not the subject) that ``subject`` did ``what``."""
    device = device or ctx.device_id
    shown = await ctx.read(rooms.visibility_of)
    if shown.get((device, subject), "visible") != "visible":
        return []
    members = await ctx.read(rooms.member_keys, room)
    recipients = [
        f"{n}:{dev}"
        for dev, n in members
        if (dev, n) != (device, subject) and shown.get((dev, n)) != "ghost"
    ]
    recipients = [r for r in recipients if r != skip]
    if not recipients:
        return []
    who = ids.format_address(subject, await _short(ctx, device))
    text = f"{who} {what}"
    body = NoticePosted(kind=kind, recipients=recipients, text=text, to=[f"#{room}"],
                        room=room, subject=f"{subject}:{device}")  # fmt: skip
    return [("", body)]


async def _short(ctx: Context, device: str) -> str:
    devices = await ctx.read(projections.list_devices)
    return next((d["short"] for d in devices if d["device_id"] == device), "?")


def _display(ctx: Context, name: str) -> str:
    return ids.format_address(name, ctx.short)


async def _agent_address(ctx: Context, text: str) -> str:
    """Resolve ``@name`` or ``name:DEV`` to one reachable agent's internal address."""
    target = ids.parse_target(text or "")
    if not isinstance(target, ids.AgentTarget):
        raise UserError(f"not an agent: {text[:40]}")
    found = await ctx.read(projections.find_agents, target.name, target.device)
    found = [r for r in found if target.device in (None, r["short"])]
    shown = await ctx.read(rooms.visibility_of)
    found = [r for r in found if shown.get((r["device_id"], r["name"])) != "ghost"]
    if not found:
        raise NotFound(f"unknown agent {text[:40]}")
    if len(found) > 1:
        raise UserError(f"@{target.name} is on several devices: say name:DEVICE")
    return f"{found[0]['name']}:{found[0]['device_id']}"


async def _view(ctx: Context, room: str, name: str) -> Room:
    rows = await ctx.read(rooms.list_rooms, ctx.device_id, name)
    return _room_json(next(r for r in rows if r["name"] == room))


async def _members(ctx: Context, room: str, me: str) -> list[Agent]:
    keys = set(await ctx.read(rooms.member_keys, room))
    shown = await ctx.read(rooms.visibility_of)
    out = []
    for row in await ctx.read(projections.list_agents):
        key = (row["device_id"], row["name"])
        if key not in keys:
            continue
        visibility = shown.get(key, "visible")
        if visibility != "visible" and key != (ctx.device_id, me):
            continue
        out.append(await agent_view(ctx, row, me, visibility))
    return out


def _room_json(row: dict[str, Any]) -> Room:
    return Room(
        name=row["name"], kind=row["kind"], description=row["description"],
        creator=row["creator"], created=row["created_ts"], members=row["members"],
        member=bool(row["member"]), invited=bool(row["invited"]),
    )  # fmt: skip


def _unread_of(conn: sqlite3.Connection, event_ids: list[int], dev: str, name: str) -> set[int]:
    marks = ",".join("?" * len(event_ids))  # placeholders only: no text is interpolated
    cursor = conn.execute(
        f"SELECT event_id FROM inbox WHERE event_id IN ({marks}) AND device_id = ?"  # noqa: S608
        " AND name = ? AND read_ts IS NULL",
        (*event_ids, dev, name),
    )
    return {int(row[0]) for row in cursor}


def _clock() -> Any:
    import asyncio  # noqa: PLC0415 - the daemon's loop clock

    return asyncio.get_running_loop().time


FEATURE = Feature(
    "rooms",
    methods={
        "room.create": room_create,
        "room.join": room_join,
        "room.leave": room_leave,
        "room.invite": room_invite,
        "room.kick": room_kick,
        "room.list": room_list,
        "room.members": room_members,
        "room.read": room_read,
    },
    streams={"room.follow": room_follow},
)
