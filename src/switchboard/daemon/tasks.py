"""Delegation: ``spawn``, ``tasks``, ``task.*`` and ``spawn.allow|deny|policy``.

Theory of operation
-------------------
A request to run a task enters at ``taskrequest.request_task``, the one path for both kinds
of requester: this device's own user (the local API: ``local=True``) and, over the directed
channel, another device of the group (``local=False``, ``device`` proved by that channel,
never taken from the request's body). The runner (``daemon/taskrun.py``) watches the task
from there.

What reads the log (``tasks``, ``task show``, ``nudge``: a message to the task's agent) works
for the tasks of every device; what acts on a task's process or reads its files (``spawn
--on``, ``stop``, ``kill``, ``logs``, ``--patch``) runs on the task's device, which a task of
another device reaches over the directed channel (``daemon/taskremote.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

import msgspec

from switchboard import ids
from switchboard.daemon import messages, taskremote
from switchboard.daemon.agents import ensure_agent
from switchboard.daemon.messages import SendParams
from switchboard.daemon.params import AgentParams, LocalId, Seconds
from switchboard.daemon.registry import Feature
from switchboard.daemon.taskrequest import (
    TaskRequest,
    interrupt_task,
    policy_path,
    request_task,
    runner,
)
from switchboard.daemon.taskrun import write_private
from switchboard.errors import NotFound, UserError
from switchboard.store import projections
from switchboard.store import tasks as task_store
from switchboard.tasks import policy, policyfile
from switchboard.tasks.commands import HARNESSES
from switchboard.tasks.lifecycle import FINAL, State

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

#: Ended tasks ``tasks`` still lists without ``--all``: the last hour's.
RECENT_SECONDS: Final = 3600.0
# Lines of output ``task show`` includes.
SHOW_LINES: Final = 20


class SpawnParams(AgentParams):
    on: str = ""
    harness: str = "claude"
    dir: str = ""
    name: str = ""
    tags: list[str] = msgspec.field(default_factory=list)
    terminal: bool = False
    text: str = ""


class TaskParams(AgentParams):
    task: str = ""
    text: str = ""
    follow: bool = False
    offset: LocalId = 0
    all: bool = False
    wait: Seconds = 0.0  # task.show: until the task ends, at most this long


class GrantParams(msgspec.Struct, forbid_unknown_fields=False):
    device: str = ""
    harness: list[str] = msgspec.field(default_factory=list)
    dir: list[str] = msgspec.field(default_factory=list)
    answer: list[str] = msgspec.field(default_factory=list)  # agent globs whose prompts
    term_read: list[str] = msgspec.field(default_factory=list)
    term_type: list[str] = msgspec.field(default_factory=list)


def _ts(text: str | None) -> float | None:
    return dt.datetime.fromisoformat(text).timestamp() if text else None


def task_json(row: dict[str, Any], shorts: dict[str, str], now: float) -> dict[str, Any]:
    """A task as ``tasks --json`` and ``task show --json`` print it."""
    device = shorts.get(row["device_id"], row["device_id"][:4].upper())
    name, _, req_device = row["requester"].rpartition(":")
    started, ended = _ts(row["started_ts"]), _ts(row["ended_ts"])
    runtime = None if started is None else round((ended or now) - started, 3)
    return {
        "id": row["task"],
        "device": device,
        "state": row["state"],
        "harness": row["harness"],
        "agent": ids.format_address(row["name"], device) if row["name"] else None,
        "requester": ids.format_address(name, shorts.get(req_device, req_device[:4].upper())),
        "dir": row["dir"],
        "text": row["text"],
        "tags": row["tags"],
        "terminal": bool(row["terminal"]),
        "window": row["window"],
        "pid": row["pid"],
        "requested": row["requested_ts"],
        "started": row["started_ts"],
        "ended": row["ended_ts"],
        "runtime": runtime,
        "exit_status": row["exit_status"],
        "reason": row["reason"],
        "progress": row["progress"],
        "prompt": row["prompt"],
        "result": row["result"],
        "diff_stat": row["diff_stat"],
    }


# -- spawning ------------------------------------------------------------------------------------


async def spawn(ctx: Context, p: SpawnParams) -> dict[str, Any]:
    """Ask a device (this one by default) to run a task; return its id and first state."""
    name = await ensure_agent(ctx, p.agent)
    device = await device_of(ctx, p.on) if p.on else ctx.device_id
    request = TaskRequest(
        device=ctx.device_id, local=True, requester=name, harness=p.harness,
        text=p.text, dir=p.dir, name=p.name, tags=tuple(p.tags), terminal=p.terminal,
    )  # fmt: skip
    if device != ctx.device_id:
        body = taskremote.SpawnBody(
            requester=name, harness=p.harness, text=p.text, dir=p.dir, name=p.name,
            tags=list(p.tags), terminal=p.terminal,
        )  # fmt: skip
        return await taskremote.spawn_on(ctx, device, body)
    return await request_task(ctx, request)


async def device_of(ctx: Context, text: str) -> str:
    """A device's id from its short id, full id or name (``local``: this one)."""
    if text.lower() in ("local", "self") or text == ctx.device_id:
        return ctx.device_id
    rows = await ctx.read(projections.list_devices)
    found = [
        r["device_id"]
        for r in rows
        if text.upper() == r["short"] or text.lower() == r["device_id"] or text == r["name"]
    ]
    if not found:
        raise NotFound(f"unknown device {text[:30]}")
    if len(set(found)) > 1:
        raise UserError(f"device name {text[:30]} is ambiguous: use its short id")
    return str(found[0])


# -- reading tasks -------------------------------------------------------------------------------


async def _task(ctx: Context, task: str) -> dict[str, Any]:
    if not task:
        raise UserError("no task id given")
    row = await ctx.read(task_store.get_task, task.strip().lower())
    if row is None:
        raise NotFound(f"unknown task {task[:20]} (or several start with it)")
    found: dict[str, Any] = row
    return found


async def tasks(ctx: Context, p: TaskParams) -> list[dict[str, Any]]:
    """Tasks of every device: live ones and the last hour's (``all``: every one)."""
    rows = await ctx.read(task_store.list_tasks, True)
    now = dt.datetime.now(dt.UTC).timestamp()
    shorts = await ctx.read(projections.device_shorts)
    out = []
    for row in rows:
        ended = _ts(row["ended_ts"])
        if p.all or ended is None or now - ended < RECENT_SECONDS:
            out.append(task_json(row, shorts, now))
    return out


async def task_show(ctx: Context, p: TaskParams) -> dict[str, Any]:
    """One task, with the last lines of its output when it runs here; ``wait``: until it
    ended, at most that many seconds."""
    row = await _task(ctx, p.task)
    deadline = asyncio.get_running_loop().time() + p.wait
    while State(row["state"]) not in FINAL:
        mark = ctx.changes
        row = await _task(ctx, row["task"])
        remaining = deadline - asyncio.get_running_loop().time()
        if State(row["state"]) in FINAL or remaining <= 0:
            break
        await ctx.wait_advanced(remaining, since=mark)
    shorts = await ctx.read(projections.device_shorts)
    shown = task_json(row, shorts, dt.datetime.now(dt.UTC).timestamp())
    shown["output"] = None
    if row["device_id"] == ctx.device_id:
        folder = runner(ctx).folder(row["task"])
        shown["output"] = await asyncio.to_thread(_tail_lines, folder)
    return shown


async def task_patch(ctx: Context, p: TaskParams) -> dict[str, Any]:
    """The patch of what a task changed in its git directory (empty: none)."""
    row = await _task(ctx, p.task)
    if row["device_id"] != ctx.device_id:
        body = taskremote.TaskBody(task=row["task"])
        return await taskremote.call_task(ctx, row["device_id"], "task.patch", body)
    path = runner(ctx).folder(row["task"]) / "patch.diff"
    patch = await asyncio.to_thread(_read_text, path)
    return {"id": row["task"], "state": row["state"], "patch": patch}


async def task_logs(ctx: Context, p: TaskParams) -> AsyncIterator[dict[str, Any]]:
    """Yield a task's output from ``offset`` in pieces; with ``follow``, until it ends."""
    row = await _task(ctx, p.task)
    if row["device_id"] != ctx.device_id:
        body = taskremote.TaskBody(task=row["task"], offset=p.offset, follow=p.follow)
        offset = p.offset
        async for chunk in taskremote.logs_from(ctx, row["device_id"], body):
            offset += len(chunk)
            yield {"text": chunk.decode("utf-8", "replace"), "offset": offset}
        return
    path = runner(ctx).folder(row["task"]) / "output.log"
    offset = p.offset
    while True:
        mark = ctx.changes
        piece = await asyncio.to_thread(_read_piece, path, offset)
        if piece:
            offset += len(piece)
            yield {"text": piece.decode("utf-8", "replace"), "offset": offset}
            continue
        current = await _task(ctx, row["task"])
        if not p.follow or State(current["state"]) in FINAL:
            return
        # Output is not a log change: look again soon, or at once when the task moves.
        await ctx.wait_advanced(0.2, since=mark)


# -- acting on tasks -----------------------------------------------------------------------------


async def task_nudge(ctx: Context, p: TaskParams) -> dict[str, Any]:
    """Send the task's agent a message, pushed into its context at its next tool call."""
    row = await _task(ctx, p.task)
    if not row["name"] or State(row["state"]) in FINAL:
        raise UserError(f"task {row['task']} is {row['state']}: nobody to nudge")
    short = (await ctx.read(projections.device_shorts)).get(row["device_id"], "")
    message = SendParams(agent=p.agent, to=[f"@{row['name']}:{short}"], text=p.text,
                         priority="urgent")  # fmt: skip
    sent: dict[str, Any] = msgspec.to_builtins(await messages.send(ctx, message))
    return sent


async def task_stop(ctx: Context, p: TaskParams) -> dict[str, Any]:
    """Stop a task: SIGTERM to its processes, SIGKILL after the policy's grace."""
    return await _interrupt(ctx, p, "stop")


async def task_kill(ctx: Context, p: TaskParams) -> dict[str, Any]:
    """Kill a task's processes at once."""
    return await _interrupt(ctx, p, "kill")


async def _interrupt(ctx: Context, p: TaskParams, how: str) -> dict[str, Any]:
    name = await ensure_agent(ctx, p.agent)
    row = await _task(ctx, p.task)
    if State(row["state"]) in FINAL:
        raise UserError(f"task {row['task']} already ended ({row['state']})")
    if row["device_id"] != ctx.device_id:
        body = taskremote.TaskBody(task=row["task"], how=how, by=name)
        return await taskremote.call_task(ctx, row["device_id"], "task.interrupt", body)
    return await interrupt_task(ctx, row["task"], how, by=f"{name}:{ctx.device_id}")


# -- policy --------------------------------------------------------------------------------------


async def spawn_policy(ctx: Context, p: GrantParams) -> dict[str, Any]:
    """This device's spawn policy (defaults filled in)."""
    rules = await asyncio.to_thread(policy.load, policy_path(ctx))
    return policyfile.policy_json(rules, await ctx.read(projections.device_shorts))


async def spawn_allow(ctx: Context, p: GrantParams) -> dict[str, Any]:
    """Let a device (or ``local``) spawn here: harnesses and directories added; and answer
    the prompts of the agents ``answer`` names."""
    for harness in p.harness:
        if harness not in HARNESSES:
            raise UserError(f"unknown harness {harness[:20]!r}: {', '.join(HARNESSES)}")
    for pattern in (*p.term_read, *p.term_type):
        if not pattern.strip() or len(pattern) > 100 or any(ord(c) < 32 for c in pattern):
            raise UserError(f"not an agent name or pattern: {pattern[:40]!r}")
    device = await device_of(ctx, p.device or "local")
    local = device == ctx.device_id
    names = await ctx.read(projections.list_devices)
    name = next((r["name"] for r in names if r["device_id"] == device), "") or ""
    path = policy_path(ctx)
    async with runner(ctx).lock:
        text = await asyncio.to_thread(_read_text, path)
        new = policyfile.allow(
            text, device, local=local, name=name, harnesses=p.harness, dirs=p.dir,
            answer=p.answer, term_read=p.term_read, term_type=p.term_type,
        )  # fmt: skip
        await asyncio.to_thread(write_private, path, new.encode())
    return await spawn_policy(ctx, GrantParams())


async def spawn_deny(ctx: Context, p: GrantParams) -> dict[str, Any]:
    """Take a device's permission to spawn here away (``local``: this device's user's)."""
    device = await device_of(ctx, p.device or "local")
    path = policy_path(ctx)
    async with runner(ctx).lock:
        text = await asyncio.to_thread(_read_text, path)
        new, changed = policyfile.deny(text, device, local=device == ctx.device_id)
        if changed:
            await asyncio.to_thread(write_private, path, new.encode())
    return {"changed": changed, "policy": await spawn_policy(ctx, GrantParams())}


def _read_text(path: Any) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except FileNotFoundError:
        return ""


def _read_piece(path: Any, offset: int) -> bytes:
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            return file.read(taskremote.LOG_PIECE)
    except OSError:
        return b""


def _tail_lines(folder: Any) -> str:
    path = os.path.join(folder, "output.log")
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as file:
            file.seek(max(0, size - 16 * 1024))
            text = file.read().decode("utf-8", "replace")
    except OSError:
        return ""
    from switchboard.wrapping import clean  # noqa: PLC0415 - only for show

    return "\n".join(clean(text).rstrip().splitlines()[-SHOW_LINES:])


async def _stop(ctx: Context) -> None:
    await runner(ctx).stop()


FEATURE = Feature(
    "tasks",
    methods={
        "spawn": spawn,
        "spawn.allow": spawn_allow,
        "spawn.deny": spawn_deny,
        "spawn.policy": spawn_policy,
        "tasks": tasks,
        "task.show": task_show,
        "task.patch": task_patch,
        "task.nudge": task_nudge,
        "task.stop": task_stop,
        "task.kill": task_kill,
    },
    streams={"task.logs": task_logs},
    requests=taskremote.REQUESTS,
    request_streams=taskremote.REQUEST_STREAMS,
    start=lambda ctx: runner(ctx).start(),
    stop=_stop,
)
