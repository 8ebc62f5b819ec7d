"""Delegation: ``spawn``, ``tasks``, ``task.*`` and ``spawn.allow|deny|policy``.

Theory of operation
-------------------
A request to run a task enters at ``request_task``, the one path for both kinds of
requester: this device's own user (the local API: ``local=True``) and, over the directed
channel, another device of the group (``local=False``, ``device`` proved by that channel,
never taken from the request's body). It writes ``task_requested`` and, in the same
transaction, the policy's answer (``task_accepted`` or ``task_refused`` with the reason),
starts an accepted task (``daemon/tasklaunch.py``), and registers its agent with the task's
pid (``agent_registered``, so it is in the group and receives messages) beside
``task_started``. The runner (``daemon/taskrun.py``) watches it from there.

What reads the log (``tasks``, ``task show``, ``nudge``: a message to the task's agent) works
for the tasks of every device already; what acts on a task's process or reads its files
(``stop``, ``kill``, ``logs``, ``--patch``) runs on the task's device, and for a task of another
device waits for the directed channel (``_on_device``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from switchboard import ids
from switchboard.daemon import tasklaunch
from switchboard.daemon.params import AgentParams, LocalId, Seconds, params_of
from switchboard.daemon.registry import Feature
from switchboard.daemon.taskrun import TaskRunner, write_private
from switchboard.errors import NotFound, UserError
from switchboard.events import (
    AgentRegistered,
    TaskAccepted,
    TaskEnded,
    TaskRefused,
    TaskRequested,
    TaskStarted,
)
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
# One piece of ``task logs`` output; a follower gets the rest in further pieces.
LOG_PIECE: Final = 64 * 1024


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


class TaskRequest(msgspec.Struct, frozen=True):
    """A request to run a task, as ``request_task`` takes it (from either kind of requester)."""

    device: str  # the requesting device (proved by how the request came)
    local: bool
    requester: str  # the requesting agent's name on that device
    harness: str
    text: str
    dir: str = ""
    name: str = ""
    tags: tuple[str, ...] = ()
    terminal: bool = False


def new_task_id() -> str:
    """Eight random base32 characters: ``k7m2qx9a``."""
    return base64.b32encode(secrets.token_bytes(5)).decode().lower()


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


def runner(ctx: Context) -> TaskRunner:
    """The daemon's task runner (its one ``TaskRunner``)."""
    return ctx.part(TaskRunner)


def _legacy(ctx: Context) -> Any:
    # Transitional: ``ensure_agent`` and ``send`` are still the legacy handlers' until the
    # agents and messages features take them (daemon/features.py).
    from switchboard.daemon.features import _handlers  # noqa: PLC0415 - features imports us

    return ctx.part(_handlers)


async def _ensure_agent(ctx: Context, agent: str) -> str:
    name: str = await _legacy(ctx).ensure_agent(agent)
    return name


# -- spawning ------------------------------------------------------------------------------------


async def spawn(ctx: Context, params: Any) -> dict[str, Any]:
    """Ask a device (this one by default) to run a task; return its id and first state."""
    p = params_of(SpawnParams, params)
    name = await _ensure_agent(ctx, p.agent)
    device = await _device_of(ctx, p.on) if p.on else ctx.device_id
    request = TaskRequest(
        device=ctx.device_id, local=True, requester=name, harness=p.harness,
        text=p.text, dir=p.dir, name=p.name, tags=tuple(p.tags), terminal=p.terminal,
    )  # fmt: skip
    if device != ctx.device_id:
        answer: dict[str, Any] = await _on_device(device, "spawning", p.on)
        return answer
    return await request_task(ctx, request)


async def _device_of(ctx: Context, text: str) -> str:
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


async def _on_device(device: str, what: str, shown: str) -> Any:
    # The directed channel (request/response between two devices) carries these; until a
    # link offers it, a remote task's process and files are out of reach from here.
    raise UserError(
        f"{what} on another device ({shown}) needs the device channel, which this "
        "version does not have yet"
    )


# -- reading tasks -------------------------------------------------------------------------------


async def _shorts(ctx: Context) -> dict[str, str]:
    rows = await ctx.read(projections.list_devices)
    return {r["device_id"]: r["short"] for r in rows}


async def _task(ctx: Context, task: str) -> dict[str, Any]:
    if not task:
        raise UserError("no task id given")
    row = await ctx.read(task_store.get_task, task.strip().lower())
    if row is None:
        raise NotFound(f"unknown task {task[:20]} (or several start with it)")
    found: dict[str, Any] = row
    return found


async def tasks(ctx: Context, params: Any) -> list[dict[str, Any]]:
    """Tasks of every device: live ones and the last hour's (``all``: every one)."""
    p = params_of(TaskParams, params)
    rows = await ctx.read(task_store.list_tasks, True)
    now = dt.datetime.now(dt.UTC).timestamp()
    shorts = await _shorts(ctx)
    out = []
    for row in rows:
        ended = _ts(row["ended_ts"])
        if p.all or ended is None or now - ended < RECENT_SECONDS:
            out.append(task_json(row, shorts, now))
    return out


async def task_show(ctx: Context, params: Any) -> dict[str, Any]:
    """One task, with the last lines of its output when it runs here; ``wait``: until it
    ended, at most that many seconds."""
    p = params_of(TaskParams, params)
    row = await _task(ctx, p.task)
    deadline = asyncio.get_running_loop().time() + p.wait
    while State(row["state"]) not in FINAL:
        mark = ctx.changes
        row = await _task(ctx, row["task"])
        remaining = deadline - asyncio.get_running_loop().time()
        if State(row["state"]) in FINAL or remaining <= 0:
            break
        await ctx.wait_advanced(remaining, since=mark)
    shown = task_json(row, await _shorts(ctx), dt.datetime.now(dt.UTC).timestamp())
    shown["output"] = None
    if row["device_id"] == ctx.device_id:
        folder = runner(ctx).folder(row["task"])
        shown["output"] = await asyncio.to_thread(_tail_lines, folder)
    return shown


async def task_patch(ctx: Context, params: Any) -> dict[str, Any]:
    """The patch of what a task changed in its git directory (empty: none)."""
    p = params_of(TaskParams, params)
    row = await _task(ctx, p.task)
    if row["device_id"] != ctx.device_id:
        answer: dict[str, Any] = await _on_device(row["device_id"], "a patch", p.task)
        return answer
    path = runner(ctx).folder(row["task"]) / "patch.diff"
    patch = await asyncio.to_thread(_read_text, path)
    return {"id": row["task"], "state": row["state"], "patch": patch}


async def task_logs(ctx: Context, params: Any) -> AsyncIterator[dict[str, Any]]:
    """Yield a task's output from ``offset`` in pieces; with ``follow``, until it ends."""
    p = params_of(TaskParams, params)
    row = await _task(ctx, p.task)
    if row["device_id"] != ctx.device_id:
        await _on_device(row["device_id"], "logs", p.task)
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


async def task_nudge(ctx: Context, params: Any) -> dict[str, Any]:
    """Send the task's agent a message, pushed into its context at its next tool call."""
    p = params_of(TaskParams, params)
    row = await _task(ctx, p.task)
    if not row["name"] or State(row["state"]) in FINAL:
        raise UserError(f"task {row['task']} is {row['state']}: nobody to nudge")
    short = (await _shorts(ctx)).get(row["device_id"], "")
    message = {"agent": p.agent, "to": [f"@{row['name']}:{short}"], "text": p.text,
               "priority": "urgent"}  # fmt: skip
    sent: dict[str, Any] = await _legacy(ctx).send(message)
    return sent


async def task_stop(ctx: Context, params: Any) -> dict[str, Any]:
    """Stop a task: SIGTERM to its processes, SIGKILL after the policy's grace."""
    return await _interrupt(ctx, params, "stop")


async def task_kill(ctx: Context, params: Any) -> dict[str, Any]:
    """Kill a task's processes at once."""
    return await _interrupt(ctx, params, "kill")


async def _interrupt(ctx: Context, params: Any, how: str) -> dict[str, Any]:
    p = params_of(TaskParams, params)
    name = await _ensure_agent(ctx, p.agent)
    row = await _task(ctx, p.task)
    if State(row["state"]) in FINAL:
        raise UserError(f"task {row['task']} already ended ({row['state']})")
    if row["device_id"] != ctx.device_id:
        answer: dict[str, Any] = await _on_device(row["device_id"], how, p.task)
        return answer
    return await interrupt_task(ctx, row["task"], how, by=f"{name}:{ctx.device_id}")


async def interrupt_task(ctx: Context, task: str, how: str, by: str) -> dict[str, Any]:
    """Stop or kill a task of this device, for a local or (over the channel) remote asker."""
    run = runner(ctx)
    await run.ready.wait()
    if task not in run.runs:
        raise UserError(f"task {task} is not running here")
    await run.interrupt(task, how, by=by)
    return {"id": task, "asked": how}


# -- policy --------------------------------------------------------------------------------------


def _policy_path(ctx: Context) -> Path:
    return ctx.settings.home / "spawn.toml"


async def spawn_policy(ctx: Context, params: Any) -> dict[str, Any]:
    """This device's spawn policy (defaults filled in)."""
    rules = await asyncio.to_thread(policy.load, _policy_path(ctx))
    return policyfile.policy_json(rules, await _shorts(ctx))


async def spawn_allow(ctx: Context, params: Any) -> dict[str, Any]:
    """Let a device (or ``local``) spawn here: harnesses and directories added."""
    p = params_of(GrantParams, params)
    for harness in p.harness:
        if harness not in HARNESSES:
            raise UserError(f"unknown harness {harness[:20]!r}: {', '.join(HARNESSES)}")
    device = await _device_of(ctx, p.device or "local")
    local = device == ctx.device_id
    names = await ctx.read(projections.list_devices)
    name = next((r["name"] for r in names if r["device_id"] == device), "") or ""
    path = _policy_path(ctx)
    async with runner(ctx).lock:
        text = await asyncio.to_thread(_read_text, path)
        new = policyfile.allow(text, device, local=local, name=name, harnesses=p.harness,
                               dirs=p.dir)  # fmt: skip
        await asyncio.to_thread(write_private, path, new.encode())
    return await spawn_policy(ctx, {})


async def spawn_deny(ctx: Context, params: Any) -> dict[str, Any]:
    """Take a device's permission to spawn here away (``local``: this device's user's)."""
    p = params_of(GrantParams, params)
    device = await _device_of(ctx, p.device or "local")
    path = _policy_path(ctx)
    async with runner(ctx).lock:
        text = await asyncio.to_thread(_read_text, path)
        new, changed = policyfile.deny(text, device, local=device == ctx.device_id)
        if changed:
            await asyncio.to_thread(write_private, path, new.encode())
    return {"changed": changed, "policy": await spawn_policy(ctx, {})}


# -- the one request path ------------------------------------------------------------------------


async def request_task(ctx: Context, request: TaskRequest) -> dict[str, Any]:
    """Decide and (if allowed) start a task; every step an event. Returns the task's id and
    state (``accepted``/``running`` or ``refused`` with the reason)."""
    task = new_task_id()
    requester = f"{request.requester}:{request.device}"
    asked = TaskRequested(
        task=task, requester=requester, harness=request.harness, text=request.text,
        dir=request.dir, name=request.name, tags=list(request.tags), terminal=request.terminal,
    )  # fmt: skip
    tasks_here = runner(ctx)
    await tasks_here.ready.wait()
    async with tasks_here.lock:  # limits are counted and claimed as one step
        decision = await _decide(ctx, request)
        if isinstance(decision, policy.Refused):
            body = TaskRefused(task=task, reason=decision.reason)
            await ctx.log.append_many([("", asked), ("", body)])
            return {"id": task, "state": "refused", "reason": decision.reason}
        allowed, agent = decision
        accepted = TaskAccepted(
            task=task, agent=agent, dir=allowed.directory, max_runtime=allowed.max_runtime
        )
        await ctx.log.append_many([("", asked), ("", accepted)])
        launch = tasklaunch.Launch(
            task=task, agent=agent, harness=request.harness, text=request.text,
            cwd=allowed.directory, rule=allowed.rule, max_runtime=allowed.max_runtime,
            grace=allowed.grace, requester_device=request.device, terminal=request.terminal,
            tags=request.tags,
        )  # fmt: skip
        run = await tasklaunch.launch_task(tasks_here, launch)
        if isinstance(run, str):
            await ctx.log.append("", TaskEnded(task=task, state="failed", reason=run))
            return {"id": task, "state": "failed", "reason": run}
        tasks_here.watch(run)
    summary = " ".join(request.text.split())[:80]
    await ctx.log.append_many([
        ("", TaskStarted(task=task, pid=run.wrapper[0], started=run.wrapper[1], agent=agent,
                         window=run.window)),
        (agent, AgentRegistered(name=agent, harness=request.harness, cwd=allowed.directory,
                                pid=run.wrapper[0], summary=f"task {task}: {summary}",
                                tags=list(request.tags))),
    ])  # fmt: skip
    return {"id": task, "state": "running", "agent": agent, "dir": allowed.directory}


async def _decide(
    ctx: Context, request: TaskRequest
) -> policy.Refused | tuple[policy.Allowed, str]:
    if request.terminal and not tasklaunch.tmux_available():
        return policy.Refused("--terminal needs tmux, which is not installed on that device")
    runs = runner(ctx).runs.values()
    asked = policy.SpawnRequest(
        device=request.device, local=request.local, harness=request.harness,
        directory=request.dir, text=request.text,
    )  # fmt: skip
    running = len(runs)
    of_device = sum(1 for r in runs if r.requester_device == request.device)
    path = _policy_path(ctx)

    def decide() -> policy.Allowed | policy.Refused:  # reads files: in a thread
        try:
            rules = policy.load(path)
        except UserError as exc:
            return policy.Refused(str(exc))
        return policy.decide(
            rules, asked, running=running, running_of_device=of_device,
            home=os.path.expanduser("~"),
        )  # fmt: skip

    decision = await asyncio.to_thread(decide)
    if isinstance(decision, policy.Refused):
        return decision
    agents = await ctx.read(projections.list_agents)
    mine = {r["name"]: r for r in agents if r["device_id"] == ctx.device_id}
    if request.name:
        try:
            name = ids.parse_name(request.name)
        except UserError as exc:
            return policy.Refused(str(exc))
        if name in mine and mine[name]["status"] != "offline":
            return policy.Refused(f"agent name {name} is in use on that device")
    else:
        name = ids.pick_name(set(mine), secrets.randbelow(1 << 30))
    for tag in request.tags:
        try:
            ids.parse_tag(tag)
        except UserError as exc:
            return policy.Refused(str(exc))
    return decision, name


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
            return file.read(LOG_PIECE)
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
    from switchboard.harnesses.wrapping import clean  # noqa: PLC0415 - only for show

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
    start=lambda ctx: runner(ctx).start(),
    stop=_stop,
)
