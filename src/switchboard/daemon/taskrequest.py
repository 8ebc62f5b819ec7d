"""The one path a request to run a task takes, from this device's user or another device.

``request_task`` writes ``task_requested`` and, in the same transaction, the policy's answer
(``task_accepted`` or ``task_refused`` with the reason), starts an accepted task
(``daemon/tasklaunch.py``), and registers its agent with the task's pid (``agent_registered``,
so it is in the group and receives messages) beside ``task_started``. ``TaskRequest.device``
is the requester, proved by how the request came (the local API, or the directed channel),
never read from a request's body.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from switchboard import ids
from switchboard.daemon import tasklaunch
from switchboard.daemon.taskrun import TaskRunner, started_of
from switchboard.errors import UserError
from switchboard.events import (
    AgentRegistered,
    TaskAccepted,
    TaskEnded,
    TaskRefused,
    TaskRequested,
)
from switchboard.store import projections
from switchboard.tasks import policy

if TYPE_CHECKING:
    from switchboard.daemon.context import Context


def runner(ctx: Context) -> TaskRunner:
    """The daemon's task runner (its one ``TaskRunner``)."""
    return ctx.part(TaskRunner)


def policy_path(ctx: Context) -> Path:
    return ctx.settings.home / "spawn.toml"


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
    continues: str = ""  # "resume" or "fork" harness session ``session`` (daemon/resume.py)
    session: str = ""


def new_task_id() -> str:
    """Eight random base32 characters: ``k7m2qx9a``."""
    return base64.b32encode(secrets.token_bytes(5)).decode().lower()


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
        decision = await decide(ctx, request)
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
            tags=request.tags, continues=request.continues, session=request.session,
        )  # fmt: skip
        run = await tasklaunch.launch_task(tasks_here, launch)
        if isinstance(run, str):
            await ctx.log.append("", TaskEnded(task=task, state="failed", reason=run))
            return {"id": task, "state": "failed", "reason": run}
        tasks_here.save(run)  # first: a daemon restarted from here on finds the task
        summary = " ".join(request.text.split())[:80]
        await ctx.log.append_many([
            ("", started_of(run)),
            (agent, AgentRegistered(name=agent, harness=request.harness, cwd=allowed.directory,
                                    pid=run.wrapper[0], summary=f"task {task}: {summary}",
                                    tags=list(request.tags))),
        ])  # fmt: skip
        tasks_here.watch(run)  # only now may the monitor report its end
    return {"id": task, "state": "running", "agent": agent, "dir": allowed.directory}


async def check_request(ctx: Context, request: TaskRequest) -> dict[str, Any]:
    """What the policy would answer ``request`` now, starting nothing and writing no event:
    ``{"verdict": "allowed", "dir": ...}`` or ``{"verdict": "refused", "reason": ...}``."""
    await runner(ctx).ready.wait()
    decision = await decide(ctx, request)
    if isinstance(decision, policy.Refused):
        return {"verdict": "refused", "reason": decision.reason}
    return {"verdict": "allowed", "dir": decision[0].directory}


async def decide(ctx: Context, request: TaskRequest) -> policy.Refused | tuple[policy.Allowed, str]:
    """This device's policy's answer to ``request`` and the agent's name (``request_task``
    asks it again under the runner's lock; a caller may ask first, before preparing)."""
    if request.terminal and not tasklaunch.tmux_available():
        return policy.Refused("--terminal needs tmux, which is not installed on that device")
    runs = runner(ctx).runs.values()
    asked = policy.SpawnRequest(
        device=request.device, local=request.local, harness=request.harness,
        directory=request.dir, text=request.text,
    )  # fmt: skip
    running = len(runs)
    of_device = sum(1 for r in runs if r.requester_device == request.device)
    path = policy_path(ctx)

    def by_policy() -> policy.Allowed | policy.Refused:  # reads files: in a thread
        try:
            rules = policy.load(path)
        except UserError as exc:
            return policy.Refused(str(exc))
        return policy.decide(
            rules, asked, running=running, running_of_device=of_device,
            home=os.path.expanduser("~"),
        )  # fmt: skip

    decision = await asyncio.to_thread(by_policy)
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


async def interrupt_task(ctx: Context, task: str, how: str, by: str) -> dict[str, Any]:
    """Stop or kill a task of this device, for a local or (over the channel) remote asker."""
    run = runner(ctx)
    await run.ready.wait()
    if task not in run.runs:
        raise UserError(f"task {task} is not running here")
    await run.interrupt(task, how, by=by)
    return {"id": task, "asked": how}
