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

``--on`` another device (Claude Code only): the session's JSONL file travels with the request
(``resume.start`` over the directed channel, at most ``MAX_SESSION`` bytes); the target decides
with its spawn policy first, then writes the file where its Claude Code looks for the sessions
of the task's directory (``<config dir>/projects/<slug of the dir>/<session>.jsonl``, never over
an existing file) and starts the task there, the agent named as here.

Refused, with the reason: an agent still running (a live task, or a status other than
offline), one whose harness has no resume (or fork) in the table, or that has no recorded
session; ``--on`` another device for a harness other than Claude Code (docs/harnesses.md).
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from switchboard import ids
from switchboard.daemon.agents import agent_name, ensure_agent
from switchboard.daemon.params import AgentParams
from switchboard.daemon.registry import Feature
from switchboard.daemon.shapes import Resumed
from switchboard.daemon.taskrequest import TaskRequest, decide, request_task, runner
from switchboard.daemon.tasks import device_of
from switchboard.errors import Forbidden, NotFound, UserError
from switchboard.events import MessageRead
from switchboard.proto.calls import MAX_BODY
from switchboard.store import projections
from switchboard.store import transcripts as sources
from switchboard.tasks import policy
from switchboard.tasks.commands import BUILTIN, check_session
from switchboard.transcripts import locate

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

# Unread messages a resumed agent is given in its first prompt, at most.
MESSAGES: Final = 50
# The biggest session file a resume on another device carries (one directed-channel body).
MAX_SESSION: Final = MAX_BODY - 64 * 1024
START_TIMEOUT: Final = 60.0
# Claude Code's project folder of a directory (its own rule; longer ones get a hash we lack).
_SLUG: Final = re.compile(r"[^a-zA-Z0-9]")
MAX_SLUG: Final = 200


class StartBody(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """``resume.start``: continue a session here, its file carried along."""

    requester: str
    harness: str
    how: str
    session: str
    text: str
    dir: str
    name: str
    file: str = ""
    short: str = ""  # (not sent) the device it runs on, for the answer


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
    target = await device_of(ctx, p.on) if p.on else ctx.device_id
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
    check_session(session["session"])
    if target != ctx.device_id:
        return await _elsewhere(ctx, target, StartBody(
            requester=acting, harness=harness, how=how, session=session["session"], text=text,
            dir=(p.dir if how == "fork" else "") or session["cwd"] or row["cwd"], name=name,
            file=await _session_file(ctx, who, harness, session["session"], how),
        ), who, read)  # fmt: skip
    request = TaskRequest(
        device=ctx.device_id, local=True, requester=acting, harness=harness, text=text,
        dir=(p.dir if how == "fork" else "") or session["cwd"] or row["cwd"], name=name,
        terminal=p.terminal, continues=how, session=session["session"],
    )  # fmt: skip
    answer = await request_task(ctx, request)
    asked = StartBody(requester=acting, harness=harness, how=how, session=session["session"],
                      text="", dir="", name=name, short=ctx.short)  # fmt: skip
    return await _answered(ctx, answer, asked, who, read)


async def _answered(
    ctx: Context, answer: dict[str, Any], body: StartBody, who: str, read: list[str]
) -> Resumed:
    """The result; the messages the prompt carried are read once the task runs."""
    running = answer.get("state") == "running"
    if running and read:
        reader = f"{who}:{ctx.device_id}"
        await ctx.log.append_many([(who, MessageRead(message=r, reader=reader)) for r in read])
    return Resumed(
        id=answer.get("id", ""), state=answer.get("state", "failed"),
        reason=answer.get("reason", ""), how=body.how, session=body.session,
        agent=ids.format_address(answer["agent"], body.short) if running else "",
        messages=len(read) if running else 0,
    )  # fmt: skip


# -- on another device: the session file travels ----------------------------------------------


async def _session_file(ctx: Context, who: str, harness: str, session: str, how: str) -> str:
    if harness != "claude":
        raise UserError(
            f"{how} --on another device works for Claude Code sessions only; {who} runs "
            f"{harness}: {how} it on its own device, or hand it off (switchboard handoff)"
        )
    source = await ctx.read(sources.source_of, harness, session)

    def read() -> bytes:  # file I/O: in a thread
        path = locate.find(harness, session, source)
        if path.stat().st_size > MAX_SESSION:
            raise UserError(
                f"{who}'s session file is over the {MAX_SESSION // 1024} KiB a resume on "
                f"another device carries: {how} it here, or hand it off"
            )
        return path.read_bytes()

    data = await asyncio.to_thread(read)
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise UserError(f"{who}'s session file is not UTF-8 text") from None


async def _elsewhere(
    ctx: Context, target: str, body: StartBody, who: str, read: list[str]
) -> Resumed:
    payload = msgspec.json.encode(body)
    if len(payload) > MAX_BODY:  # the file's quotes are escaped in JSON
        raise UserError(
            f"{who}'s session file, with the request, is over the {MAX_BODY // 1024} KiB a "
            f"resume on another device carries: {body.how} it here, or hand it off"
        )
    raw = await ctx.call_device(target, "resume.start", payload, timeout=START_TIMEOUT)
    answer = msgspec.json.decode(raw)
    rows = await ctx.read(projections.list_devices)
    short = next((r["short"] for r in rows if r["device_id"] == target), target[:4].upper())
    return await _answered(ctx, answer, msgspec.structs.replace(body, short=short), who, read)


async def answer_start(ctx: Context, sender: str, body: bytes) -> bytes:
    """``resume.start`` from another device: the spawn policy here decides, then the session
    file is put where Claude Code finds it, then the task starts."""
    try:
        asked = msgspec.json.decode(body, type=StartBody)
    except msgspec.DecodeError as exc:
        raise Forbidden(f"malformed resume: {str(exc)[:100]}") from None
    if asked.harness != "claude" or asked.how not in ("resume", "fork"):
        raise Forbidden("a resume from another device carries a Claude Code session only")
    request = TaskRequest(
        device=sender, local=False, requester=ids.parse_name(asked.requester),
        harness=asked.harness, text=asked.text, dir=asked.dir, name=asked.name,
        continues=asked.how, session=check_session(asked.session),
    )  # fmt: skip
    decision = await decide(ctx, request)
    if isinstance(decision, policy.Refused):
        refused = {"id": "", "state": "refused", "reason": decision.reason}
        return msgspec.json.encode(refused)
    allowed, _ = decision
    env = dict(os.environ)
    env.update(allowed.rule.env)
    problem = await asyncio.to_thread(_place, env, allowed.directory, asked)
    if problem:
        return msgspec.json.encode({"id": "", "state": "failed", "reason": problem})
    return msgspec.json.encode(await request_task(ctx, request))


def _place(env: dict[str, str], directory: str, asked: StartBody) -> str:
    """Write the session file for Claude Code in ``directory``; ``""``, or why not."""
    slug = _SLUG.sub("-", directory)
    root = locate.roots("claude", env)
    if root is None or len(slug) > MAX_SLUG:
        return f"cannot place a Claude Code session for {directory[:80]}"
    path = Path(root) / slug / f"{asked.session}.jsonl"
    if path.exists():
        return ""  # the session is here already (never overwritten)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(asked.file)
    return ""


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


FEATURE = Feature(
    "resume",
    methods={"resume": resume, "fork": fork},
    requests={"resume.start": answer_start},
)
