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
from typing import TYPE_CHECKING, Any, Final

import msgspec

from switchboard import ids
from switchboard.daemon import tasklaunch
from switchboard.daemon.params import AgentParams, LocalId, params_of
from switchboard.daemon.taskrun import write_private
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
    from switchboard.daemon.service import Daemon

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


class TaskHandlers:
    """API methods of delegation over one daemon (``self.d``; runner: ``self.d.tasks``)."""

    d: Daemon

    if TYPE_CHECKING:

        async def ensure_agent(self, agent: str) -> str: ...
        async def send(self, params: Any) -> dict[str, Any]: ...

    # -- spawning --------------------------------------------------------------------------------

    async def spawn(self, params: Any) -> dict[str, Any]:
        """Ask a device (this one by default) to run a task; return its id and first state."""
        p = params_of(SpawnParams, params)
        name = await self.ensure_agent(p.agent)
        device = await self._device_of(p.on) if p.on else self.d.device_id
        request = TaskRequest(
            device=self.d.device_id, local=True, requester=name, harness=p.harness,
            text=p.text, dir=p.dir, name=p.name, tags=tuple(p.tags), terminal=p.terminal,
        )  # fmt: skip
        if device != self.d.device_id:
            answer: dict[str, Any] = await self._on_device(device, "spawning", p.on)
            return answer
        return await request_task(self.d, request)

    async def _device_of(self, text: str) -> str:
        """A device's id from its short id, full id or name (``local``: this one)."""
        if text.lower() in ("local", "self") or text == self.d.device_id:
            return self.d.device_id
        rows = await self.d.read(projections.list_devices)
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

    async def _on_device(self, device: str, what: str, shown: str) -> Any:
        # The directed channel (request/response between two devices) carries these; until a
        # link offers it, a remote task's process and files are out of reach from here.
        raise UserError(
            f"{what} on another device ({shown}) needs the device channel, which this "
            "version does not have yet"
        )

    # -- reading tasks ---------------------------------------------------------------------------

    async def _shorts(self) -> dict[str, str]:
        rows = await self.d.read(projections.list_devices)
        return {r["device_id"]: r["short"] for r in rows}

    async def _task(self, task: str) -> dict[str, Any]:
        if not task:
            raise UserError("no task id given")
        row = await self.d.read(task_store.get_task, task.strip().lower())
        if row is None:
            raise NotFound(f"unknown task {task[:20]} (or several start with it)")
        found: dict[str, Any] = row
        return found

    async def tasks(self, params: Any) -> list[dict[str, Any]]:
        """Tasks of every device: live ones and the last hour's (``all``: every one)."""
        p = params_of(TaskParams, params)
        rows = await self.d.read(task_store.list_tasks, True)
        now = dt.datetime.now(dt.UTC).timestamp()
        shorts = await self._shorts()
        out = []
        for row in rows:
            ended = _ts(row["ended_ts"])
            if p.all or ended is None or now - ended < RECENT_SECONDS:
                out.append(task_json(row, shorts, now))
        return out

    async def task_show(self, params: Any) -> dict[str, Any]:
        """One task, with the last lines of its output when it runs here."""
        p = params_of(TaskParams, params)
        row = await self._task(p.task)
        shown = task_json(row, await self._shorts(), dt.datetime.now(dt.UTC).timestamp())
        shown["output"] = None
        if row["device_id"] == self.d.device_id:
            text = await asyncio.to_thread(_tail_lines, self.d.tasks.folder(row["task"]))
            shown["output"] = text
        return shown

    async def task_patch(self, params: Any) -> dict[str, Any]:
        """The patch of what a task changed in its git directory (empty: none)."""
        p = params_of(TaskParams, params)
        row = await self._task(p.task)
        if row["device_id"] != self.d.device_id:
            answer: dict[str, Any] = await self._on_device(row["device_id"], "a patch", p.task)
            return answer
        path = self.d.tasks.folder(row["task"]) / "patch.diff"
        patch = await asyncio.to_thread(_read_text, path)
        return {"id": row["task"], "state": row["state"], "patch": patch}

    async def task_logs(self, params: Any) -> AsyncIterator[dict[str, Any]]:
        """Yield a task's output from ``offset`` in pieces; with ``follow``, until it ends."""
        p = params_of(TaskParams, params)
        row = await self._task(p.task)
        if row["device_id"] != self.d.device_id:
            await self._on_device(row["device_id"], "logs", p.task)
        path = self.d.tasks.folder(row["task"]) / "output.log"
        offset = p.offset
        while True:
            mark = self.d.changes
            piece = await asyncio.to_thread(_read_piece, path, offset)
            if piece:
                offset += len(piece)
                yield {"text": piece.decode("utf-8", "replace"), "offset": offset}
                continue
            current = await self._task(row["task"])
            if not p.follow or State(current["state"]) in FINAL:
                return
            # Output is not a log change: look again soon, or at once when the task moves.
            await self.d.wait_advanced(0.2, since=mark)

    # -- acting on tasks -------------------------------------------------------------------------

    async def task_nudge(self, params: Any) -> dict[str, Any]:
        """Send the task's agent a message, pushed into its context at its next tool call."""
        p = params_of(TaskParams, params)
        row = await self._task(p.task)
        if not row["name"] or State(row["state"]) in FINAL:
            raise UserError(f"task {row['task']} is {row['state']}: nobody to nudge")
        short = (await self._shorts()).get(row["device_id"], "")
        to = f"@{row['name']}:{short}"
        return await self.send({"agent": p.agent, "to": [to], "text": p.text, "priority": "urgent"})

    async def task_stop(self, params: Any) -> dict[str, Any]:
        """Stop a task: SIGTERM to its processes, SIGKILL after the policy's grace."""
        return await self._interrupt(params, "stop")

    async def task_kill(self, params: Any) -> dict[str, Any]:
        """Kill a task's processes at once."""
        return await self._interrupt(params, "kill")

    async def _interrupt(self, params: Any, how: str) -> dict[str, Any]:
        p = params_of(TaskParams, params)
        name = await self.ensure_agent(p.agent)
        row = await self._task(p.task)
        if State(row["state"]) in FINAL:
            raise UserError(f"task {row['task']} already ended ({row['state']})")
        if row["device_id"] != self.d.device_id:
            answer: dict[str, Any] = await self._on_device(row["device_id"], how, p.task)
            return answer
        if row["task"] not in self.d.tasks.runs:
            raise UserError(f"task {row['task']} is not running yet; try again in a moment")
        await self.d.tasks.interrupt(row["task"], how, by=f"{name}:{self.d.device_id}")
        return {"id": row["task"], "asked": how}

    # -- policy ----------------------------------------------------------------------------------

    @property
    def _policy_path(self) -> Any:
        return self.d.settings.home / "spawn.toml"

    async def spawn_policy(self, params: Any) -> dict[str, Any]:
        """This device's spawn policy (defaults filled in)."""
        return policyfile.policy_json(policy.load(self._policy_path), await self._shorts())

    async def spawn_allow(self, params: Any) -> dict[str, Any]:
        """Let a device (or ``local``) spawn here: harnesses and directories added."""
        p = params_of(GrantParams, params)
        for harness in p.harness:
            if harness not in HARNESSES:
                raise UserError(f"unknown harness {harness[:20]!r}: {', '.join(HARNESSES)}")
        device = await self._device_of(p.device or "local")
        local = device == self.d.device_id
        names = await self.d.read(projections.list_devices)
        name = next((r["name"] for r in names if r["device_id"] == device), "") or ""
        text = await asyncio.to_thread(_read_text, self._policy_path)
        new = policyfile.allow(
            text, device, local=local, name=name, harnesses=p.harness, dirs=p.dir
        )
        await asyncio.to_thread(write_private, self._policy_path, new.encode())
        return await self.spawn_policy({})

    async def spawn_deny(self, params: Any) -> dict[str, Any]:
        """Take a device's permission to spawn here away (``local``: this device's user's)."""
        p = params_of(GrantParams, params)
        device = await self._device_of(p.device or "local")
        text = await asyncio.to_thread(_read_text, self._policy_path)
        new, changed = policyfile.deny(text, device, local=device == self.d.device_id)
        if changed:
            await asyncio.to_thread(write_private, self._policy_path, new.encode())
        return {"changed": changed, "policy": await self.spawn_policy({})}


# -- the one request path ------------------------------------------------------------------------


async def request_task(daemon: Daemon, request: TaskRequest) -> dict[str, Any]:
    """Decide and (if allowed) start a task; every step an event. Returns the task's id and
    state (``accepted``/``running`` or ``refused`` with the reason)."""
    task = new_task_id()
    requester = f"{request.requester}:{request.device}"
    asked = TaskRequested(
        task=task, requester=requester, harness=request.harness, text=request.text,
        dir=request.dir, name=request.name, tags=list(request.tags), terminal=request.terminal,
    )  # fmt: skip
    async with daemon.tasks.lock:  # limits are counted and claimed as one step
        decision = await _decide(daemon, request)
        if isinstance(decision, policy.Refused):
            body = TaskRefused(task=task, reason=decision.reason)
            await daemon.log.append_many([("", asked), ("", body)])
            return {"id": task, "state": "refused", "reason": decision.reason}
        allowed, agent = decision
        accepted = TaskAccepted(
            task=task, agent=agent, dir=allowed.directory, max_runtime=allowed.max_runtime
        )
        await daemon.log.append_many([("", asked), ("", accepted)])
        launch = tasklaunch.Launch(
            task=task, agent=agent, harness=request.harness, text=request.text,
            cwd=allowed.directory, rule=allowed.rule, max_runtime=allowed.max_runtime,
            grace=allowed.grace, requester_device=request.device, terminal=request.terminal,
            tags=request.tags,
        )  # fmt: skip
        run = await tasklaunch.launch_task(daemon.tasks, launch)
        if isinstance(run, str):
            await daemon.log.append("", TaskEnded(task=task, state="failed", reason=run))
            return {"id": task, "state": "failed", "reason": run}
        daemon.tasks.watch(run)
    summary = " ".join(request.text.split())[:80]
    await daemon.log.append_many([
        ("", TaskStarted(task=task, pid=run.wrapper[0], started=run.wrapper[1], agent=agent,
                         window=run.window)),
        (agent, AgentRegistered(name=agent, harness=request.harness, cwd=allowed.directory,
                                pid=run.wrapper[0], summary=f"task {task}: {summary}",
                                tags=list(request.tags))),
    ])  # fmt: skip
    return {"id": task, "state": "running", "agent": agent, "dir": allowed.directory}


async def _decide(
    daemon: Daemon, request: TaskRequest
) -> policy.Refused | tuple[policy.Allowed, str]:
    if request.terminal and not tasklaunch.tmux_available():
        return policy.Refused("--terminal needs tmux, which is not installed on that device")
    runs = daemon.tasks.runs.values()
    asked = policy.SpawnRequest(
        device=request.device, local=request.local, harness=request.harness,
        directory=request.dir, text=request.text,
    )  # fmt: skip
    running = len(runs)
    of_device = sum(1 for r in runs if r.requester_device == request.device)
    path = daemon.settings.home / "spawn.toml"

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
    agents = await daemon.read(projections.list_agents)
    mine = {r["name"]: r for r in agents if r["device_id"] == daemon.device_id}
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
