"""Agents: register, tags, presence, the listing; and the shared ``ensure_agent`` & co.

The functions every feature uses to name its acting agent live here once: ``ensure_agent``
(registers on first use), ``local_agent`` (must exist already), ``own_row`` and ``agent_view``
(the agent shape of DESIGN.md §5 with its shown status and visibility). Who is listed and who
is reachable are the rules of daemon/presence.py.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import msgspec

from switchboard import ids
from switchboard.daemon.params import AgentParams, Pid
from switchboard.daemon.presence import effective_status, is_expired
from switchboard.daemon.registry import Feature
from switchboard.daemon.shapes import Agent
from switchboard.errors import NotFound, UserError
from switchboard.events import (
    STATUSES,
    VISIBILITIES,
    AgentRegistered,
    StatusChanged,
    VisibilityChanged,
)
from switchboard.store import delivery, projections, rooms

if TYPE_CHECKING:
    from switchboard.daemon.context import Context


class RegisterParams(AgentParams):
    harness: str = "shell"
    cwd: str = ""
    pid: Pid | None = None
    summary: str = ""
    tags: list[str] | None = None  # None: keep the agent's tags


class TagsParams(AgentParams):
    tags: list[str] = msgspec.field(default_factory=list)


class PresenceParams(AgentParams):
    status: str | None = None
    summary: str | None = None
    visibility: str | None = None


class AgentsParams(AgentParams):
    all: bool = False


# -- shared by every feature ----------------------------------------------------------------------


def agent_name(agent: str) -> str:
    """The acting agent's name, checked.

    Raises:
        UserError: none given, or not a valid name.
    """
    if not agent:
        raise UserError("no acting agent: pass --as NAME or set SWITCHBOARD_AGENT")
    return ids.parse_name(agent)


async def ensure_agent(ctx: Context, agent: str) -> str:
    """Return the acting agent's name, registering it on this device on first use."""
    name = agent_name(agent)
    found = await ctx.read(projections.find_agents, name, ctx.device_id)
    if not found:
        await ctx.log.append(name, AgentRegistered(name=name))
    return name


async def local_agent(ctx: Context, agent: str) -> str:
    """Return the name of an agent of this device that exists (``name`` or ``name:SHORT``).

    Raises:
        UserError: none given.
        NotFound: no such agent here.
    """
    if not agent:
        raise UserError("no acting agent: pass --as NAME or set SWITCHBOARD_AGENT")
    name, _, device = agent.partition(":")
    found = await ctx.read(projections.find_agents, name.lower(), ctx.device_id)
    if not found or (device and device.upper() != found[0]["short"]):
        raise NotFound(f"unknown local agent {agent[:60]}")
    return str(found[0]["name"])


async def own_row(ctx: Context, name: str) -> dict[str, Any]:
    """The ``projections.list_agents`` row of a local agent.

    Raises:
        NotFound: no such agent here.
    """
    rows = await ctx.read(projections.find_agents, name, ctx.device_id)
    if not rows:
        raise NotFound(f"unknown agent {name}")
    row: dict[str, Any] = rows[0]
    return row


def agent_json(ctx: Context, row: dict[str, Any]) -> Agent:
    """The agent shape of DESIGN.md §5 (with ``tags``) of a ``list_agents`` row."""
    now = dt.datetime.now(dt.UTC).timestamp()
    status, _ = effective_status(row, ctx.device_id, ctx.settings, now)
    return Agent(
        address=ids.format_address(row["name"], row["short"]),
        name=row["name"],
        device=row["short"],
        local=row["device_id"] == ctx.device_id,
        status=status,
        harness=row["harness"],
        cwd=row["cwd"],
        summary=row["summary"],
        tags=row["tags"],
        last_seen=row["last_seen"],
    )


async def agent_view(
    ctx: Context, row: dict[str, Any], me: str = "", visibility: str | None = None
) -> Agent:
    """The agent shape plus ``visibility`` (and, while unreachable, ``device_last_seen``)."""
    out = agent_json(ctx, row)
    if out.status == "unreachable":
        out.device_last_seen = row.get("device_last_seen")
    if visibility is None:
        shown = await ctx.read(rooms.visibility_of)
        visibility = shown.get((row["device_id"], row["name"]), "visible")
    out.visibility = visibility
    return out


async def listed_agents(ctx: Context, p: AgentsParams) -> list[Agent]:
    """Agents of every device that are listed: visible and not expired (``all``: every one)."""
    rows = await ctx.read(projections.list_agents)
    me = p.agent.lower()
    now = dt.datetime.now(dt.UTC).timestamp()
    shown = await ctx.read(rooms.visibility_of)
    out = []
    for row in rows:
        key = (row["device_id"], row["name"])
        itself = key == (ctx.device_id, me)
        if not p.all and not itself:
            if shown.get(key, "visible") != "visible":
                continue
            if is_expired(row, ctx.device_id, ctx.settings, now):
                continue
            if await _never_active(ctx, row, now):
                continue
        out.append(await agent_view(ctx, row, me, shown.get(key, "visible")))
    return out


class _Activity:
    """Whether an agent ever did anything, per ``(device, name)``, kept while its
    ``last_seen`` stays (the answer is a log scan; it changes only when that moves)."""

    def __init__(self, ctx: Context) -> None:
        self.known: dict[tuple[str, str], tuple[str, bool]] = {}


async def _never_active(ctx: Context, row: dict[str, Any], now: float) -> bool:
    """An agent that is gone and never did anything (a harness's health check, a session
    opened and closed without a turn) is not listed; ``agents --all`` still shows it."""
    if effective_status(row, ctx.device_id, ctx.settings, now)[0] != "offline":
        return False
    known = ctx.part(_Activity).known
    key = (row["device_id"], row["name"])
    seen = str(row["last_seen"] or "")
    if key not in known or known[key][0] != seen:
        active = await ctx.read(delivery.has_activity, row["device_id"], row["name"])
        known[key] = (seen, bool(active))
    return not known[key][1]


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


# -- API methods ----------------------------------------------------------------------------------


async def register(ctx: Context, p: RegisterParams) -> Agent:
    """Register (or update) a local agent; return it."""
    name = agent_name(p.agent)
    if p.tags is None:
        found = await ctx.read(projections.find_agents, name, ctx.device_id)
        tags = list(found[0]["tags"]) if found else []
    else:
        tags = _tags(p.tags)
    body = AgentRegistered(
        name=name, harness=p.harness, cwd=p.cwd, pid=p.pid, summary=p.summary, tags=tags
    )
    await ctx.log.append(name, body)
    return agent_json(ctx, await own_row(ctx, name))


async def tags_set(ctx: Context, p: TagsParams) -> Agent:
    """Set the acting agent's tags (replacing them; none clears them); return the agent.

    Tags are carried by ``agent_registered``, so the agent is registered again with what it
    had (harness, directory, summary) and the new tags; ``send +tag`` reaches it.
    """
    name = await ensure_agent(ctx, p.agent)
    row = await own_row(ctx, name)
    body = AgentRegistered(
        name=name, harness=row["harness"] or "shell", cwd=row["cwd"] or "", pid=row["pid"],
        summary=row["summary"] or "", tags=_tags(p.tags),
    )  # fmt: skip
    await ctx.log.append(name, body)
    return await agent_view(ctx, await own_row(ctx, name), name)


async def agents(ctx: Context, p: AgentsParams) -> list[Agent]:
    """Agents of every device of the group that are listed (daemon/presence.py)."""
    return await listed_agents(ctx, p)


async def presence_set(ctx: Context, p: PresenceParams) -> Agent:
    """Set the acting agent's status, summary and/or visibility; return the agent."""
    if p.status is None and p.summary is None and p.visibility is None:
        raise UserError("nothing to set: give a status, a summary or a visibility")
    if p.status is not None and p.status not in STATUSES:
        raise UserError(f"unknown status {p.status[:20]!r}: use {', '.join(STATUSES)}")
    if p.visibility is not None and p.visibility not in VISIBILITIES:
        raise UserError(f"unknown visibility {p.visibility[:20]!r}: use {', '.join(VISIBILITIES)}")
    name = await ensure_agent(ctx, p.agent)
    items: list[tuple[str, Any]] = []
    if p.status is not None or p.summary is not None:
        status = p.status or (await own_row(ctx, name))["status"] or "active"
        summary = None if p.summary is None else " ".join(p.summary.split())[:200]
        items.append((name, StatusChanged(status=status, reason="set", summary=summary)))
    if p.visibility is not None:
        items.append((name, VisibilityChanged(visibility=p.visibility)))
    await ctx.log.append_many(items)
    return await agent_view(ctx, await own_row(ctx, name), name)


FEATURE = Feature(
    "agents",
    methods={
        "register": register,
        "tags.set": tags_set,
        "agents": agents,
        "presence.set": presence_set,
    },
)
