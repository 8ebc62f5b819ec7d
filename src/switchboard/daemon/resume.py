"""Resume and fork: a stopped agent's harness session continued, through the spawn path.

Theory of operation
-------------------
``resume AGENT`` runs on the agent's device: its harness session files are there, and the
``sessions`` projection (filled by the harness's hooks: ``session_started``) says which session
it last ran. The session is continued with the harness's own resume (the ``resume`` argv of the
command table, ``tasks/commands.py``) as a task of ``request_task``, so the spawn policy of this
device decides it like any other start; the task's agent has the original's name (the same
identity: its inbox, rooms and address), its directory is the session's. The task text is the
agent's unread messages, quoted (marked read: they are delivered now), or a short note when there
are none.

``fork AGENT --dir PATH`` continues a copy of the session instead (the harness's fork flag) as a
new agent (``--name``, default ``<name>-fork``) in ``PATH``; the original's messages stay its own.

Refused, with the reason: an agent still running (a live task, or a status other than
offline), one whose harness has no resume (or fork) in the table, or that has no recorded
session; ``--on`` another device (the session files would have to be copied there first, which
is not done yet: docs/harnesses.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from switchboard import ids
from switchboard.daemon.agents import agent_name, ensure_agent
from switchboard.daemon.params import AgentParams
from switchboard.daemon.registry import Feature
from switchboard.daemon.shapes import Resumed
from switchboard.daemon.taskrequest import TaskRequest, request_task, runner
from switchboard.daemon.tasks import device_of
from switchboard.errors import NotFound, UserError
from switchboard.events import MessageRead
from switchboard.store import projections
from switchboard.store import transcripts as sources
from switchboard.tasks.commands import BUILTIN, check_session

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

# Unread messages a resumed agent is given in its first prompt, at most.
MESSAGES: Final = 50


class ResumeParams(AgentParams):
    who: str = ""
    """The agent resumed or forked (an agent of this device)."""
    on: str = ""
    """Where it continues: only its own device for now."""
    dir: str = ""
    """``fork``: the new agent's directory (``""``: the session's)."""
    name: str = ""
    """``fork``: the new agent's name (``""``: ``<who>-fork``)."""
    terminal: bool = False


async def resume(ctx: Context, p: ResumeParams) -> Resumed:
    """Continue a stopped agent's last harness session as the same agent."""
    return await _continue(ctx, p, "resume")


async def fork(ctx: Context, p: ResumeParams) -> Resumed:
    """Continue a copy of an agent's last harness session as a new agent."""
    return await _continue(ctx, p, "fork")


async def _continue(ctx: Context, p: ResumeParams, how: str) -> Resumed:
    acting = await ensure_agent(ctx, p.agent)
    if not p.who:
        raise UserError(f"{how} needs the agent to {how}")
    who = agent_name(p.who)
    if p.on and await device_of(ctx, p.on) != ctx.device_id:
        raise UserError(
            f"{how} --on another device is not supported: {who}'s session files are on this "
            f"device; {how} it here, or hand it off (switchboard handoff {who} --to DEVICE)"
        )
    row = await _agent_here(ctx, who)
    harness = row["harness"] or ""
    command = BUILTIN.get(harness)
    if command is None or not command.continued(how, terminal=p.terminal):
        raise UserError(f"{who}'s harness ({harness or 'unknown'}) has no {how} of its sessions")
    if how == "resume" and _running(ctx, row):
        raise UserError(f"{who} is still running ({row['status']}): stop it before resuming it")
    session = await _last_session(ctx, who, harness)
    if session is None:
        raise NotFound(f"no {harness} session of {who} is known on this device")
    name = who if how == "resume" else (p.name or f"{who}-fork")
    text, read = await _prompt(ctx, who, how)
    request = TaskRequest(
        device=ctx.device_id, local=True, requester=acting, harness=harness, text=text,
        dir=(p.dir if how == "fork" else "") or session["cwd"] or row["cwd"], name=name,
        terminal=p.terminal, continues=how, session=check_session(session["session"]),
    )  # fmt: skip
    answer = await request_task(ctx, request)
    if answer.get("state") == "running" and read:
        reader = f"{who}:{ctx.device_id}"
        await ctx.log.append_many([(who, MessageRead(message=r, reader=reader)) for r in read])
    return Resumed(
        id=answer.get("id", ""), state=answer.get("state", "failed"),
        reason=answer.get("reason", ""), how=how, session=session["session"],
        agent=ids.format_address(name, ctx.short) if answer.get("state") == "running" else "",
        messages=len(read) if answer.get("state") == "running" else 0,
    )  # fmt: skip


async def _agent_here(ctx: Context, who: str) -> dict[str, Any]:
    rows = await ctx.read(projections.find_agents, who, None)
    here = [r for r in rows if r["device_id"] == ctx.device_id]
    if here:
        found: dict[str, Any] = here[0]
        return found
    if rows:
        raise UserError(f"{who} ran on {rows[0]['short']}: its session is there; resume it there")
    raise NotFound(f"unknown agent {who[:40]}")


def _running(ctx: Context, row: dict[str, Any]) -> bool:
    live = any(r.agent == row["name"] for r in runner(ctx).runs.values())
    return live or row["status"] != "offline"


async def _last_session(ctx: Context, who: str, harness: str) -> dict[str, Any] | None:
    rows = await ctx.read(sources.sessions_of, ctx.device_id, who)
    return next((dict(r) for r in rows if r["harness"] == harness), None)


async def _prompt(ctx: Context, who: str, how: str) -> tuple[str, list[str]]:
    """The continued session's first prompt: the unread messages (resume), and their refs."""
    rows = []
    if how == "resume":
        rows = await ctx.read(projections.inbox_unread, ctx.device_id, who, MESSAGES)
    rows = [r for r in rows if r["type"] == "message_posted"]
    if not rows:
        what = "resumed" if how == "resume" else "forked from an earlier session"
        return f"[switchboard] You were {what}; carry on where you left off.", []
    lines = [f"[switchboard] You were resumed; {len(rows)} message(s) came while you were away:"]
    for r in rows:
        lines.append(f"- from {r['from']} ({r['ts']}): {r['text']}")
    return "\n".join(lines), [r["ref"] for r in rows]


FEATURE = Feature("resume", methods={"resume": resume, "fork": fork})
