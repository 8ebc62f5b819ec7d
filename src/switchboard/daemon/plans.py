"""Plans (task graphs): ``plan.run``, ``plans``, ``plan.show``; the plan runner.

Theory of operation
-------------------
``plan.run`` checks a plan file (``tasks/plan.py``), resolves each task's device, and writes
``plan_started`` with the whole plan: from then on the log holds the plan and its progress
(``plan_step_started`` links a step to its task, ``plan_step_ended`` says how it ended or why
it was skipped, ``plan_ended`` closes it), folded into the ``plans`` projection
(``store/plans.py``) on every device. The tasks themselves are ordinary tasks
(``taskrequest.request_task`` here, ``task.request`` over the directed channel elsewhere), so
each device's spawn policy decides and their states replicate as ``task_*`` events.

Why events rather than a local table: a plan is a fact of the group like its tasks (DESIGN
§1); ``plans`` on any device shows it, and a restarted requester needs nothing but its own
log: its runner (``switchboard[plans].<id>.plan_loop``, one per running plan of this device,
started again by the feature's ``start``) re-reads the row and the states of the steps'
tasks, and carries on. Each loop is the scheduling rule of ``tasks/plan.next_steps`` applied
to those states, waiting on the log's changes in between.

A step's task carries the tag ``plan-<id>.<n>`` (``n``: the step's place in the file), so a
runner restarted between asking for a task and writing ``plan_step_started`` finds the task
it already asked for instead of asking twice (for a remote task, once its events arrived).

``dry_run`` starts nothing and writes nothing: each step gets its device's verdict, from
this device's policy or, over the channel, the other device's (``spawn.check``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import secrets
from typing import TYPE_CHECKING, Any, Final

import msgspec

from switchboard import ids
from switchboard.daemon import taskremote
from switchboard.daemon.agents import ensure_agent
from switchboard.daemon.params import AgentParams, Seconds
from switchboard.daemon.registry import Feature
from switchboard.daemon.taskrequest import TaskRequest, check_request, request_task
from switchboard.daemon.tasks import device_of
from switchboard.errors import NotFound, SwitchboardError, Unreachable, UserError
from switchboard.events import PlanEnded, PlanStarted, PlanStep, PlanStepEnded, PlanStepStarted
from switchboard.store import plans as plan_store
from switchboard.store import projections
from switchboard.store import tasks as task_store
from switchboard.tasks import plan as rules
from switchboard.tasks.lifecycle import FINAL, State

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

log = logging.getLogger("switchboard.daemon.plans")

# A runner looks at its plan on every log change, and at the latest this often (a remote
# task's end arrives as a log change; this only bounds a missed wake-up).
LOOK_INTERVAL: Final = 5.0
# How long a step waits for its device to be reachable before it fails: long enough for a
# restarted daemon's links to come up, short enough that a plan does not hang for a day.
MAX_UNREACHABLE: Final = 120.0
# The tail of a task's result a report carries.
RESULT_CHARS: Final = 1000


class RunParams(AgentParams):
    text: str = ""  # the plan file's text
    file: str = ""  # its path: the plan's default name, and the base of a local relative dir
    dry_run: bool = False


class PlanParams(AgentParams):
    plan: str = ""
    wait: Seconds = 0.0  # plan.show: until the plan ended, at most this long
    after: int = 0  # plan.show: or until its version passed this one (a follower's last)


def new_plan_id() -> str:
    """Eight random base32 characters, like a task's id."""
    return base64.b32encode(secrets.token_bytes(5)).decode().lower()


def step_tag(plan: str, index: int) -> str:
    """The tag of step ``index`` of ``plan``'s task."""
    return f"plan-{plan}.{index + 1}"


# -- methods -------------------------------------------------------------------------------------


async def plan_run(ctx: Context, p: RunParams) -> rules.PlanReport:
    """Check a plan and run it (``dry_run``: only ask each device's policy)."""
    name = await ensure_agent(ctx, p.agent)
    default = os.path.splitext(os.path.basename(p.file))[0] if p.file else "plan"
    plan = rules.parse(p.text, default_name=default or "plan")
    base = os.path.dirname(p.file) if os.path.isabs(p.file) else ""
    steps = []
    for step in plan.steps:
        try:
            device = await device_of(ctx, step.device) if step.device else ctx.device_id
        except UserError as exc:
            raise type(exc)(f"plan: task {step.name!r}: {exc}") from None
        if device == ctx.device_id:
            directory = rules.local_dir(step.dir, base)
        elif step.dir and not rules.is_remote_dir(step.dir):
            raise UserError(f"plan: task {step.name!r}: dir {step.dir[:80]!r} is on another "
                            "device: it must be absolute (or start with ~/)")  # fmt: skip
        else:
            directory = step.dir
        steps.append(msgspec.structs.replace(step, device=device, dir=directory))
    if p.dry_run:
        verdicts = await asyncio.gather(*(_verdict(ctx, name, s) for s in steps))
        shorts = await ctx.read(projections.device_shorts)
        return rules.PlanReport(
            id="", name=plan.name, state="dry_run",
            requester=ids.format_address(name, shorts.get(ctx.device_id, "")),
            steps=[
                rules.StepReport(
                    name=s.name, device=shorts.get(s.device, s.device[:4].upper()),
                    harness=s.harness, depends_on=s.depends_on, state=rules.PENDING,
                    dir=v.get("dir", s.dir), reason=v.get("reason", ""), verdict=v["verdict"],
                )
                for s, v in zip(steps, verdicts, strict=True)
            ],
        )  # fmt: skip
    plan_id = new_plan_id()
    await ctx.log.append(name, PlanStarted(plan=plan_id, name=plan.name, steps=steps))
    ctx.part(PlanRunner).drive(plan_id)
    return await _report_of(ctx, plan_id)


async def _verdict(ctx: Context, agent: str, step: PlanStep) -> dict[str, Any]:
    """A step's device's policy verdict (``allowed``, ``refused`` or ``unreachable``)."""
    if step.device == ctx.device_id:
        request = TaskRequest(device=ctx.device_id, local=True, requester=agent,
                              harness=step.harness, text=step.prompt, dir=step.dir)  # fmt: skip
        return await check_request(ctx, request)
    body = taskremote.SpawnBody(requester=agent, harness=step.harness, text=step.prompt,
                                dir=step.dir)  # fmt: skip
    try:
        return await taskremote.check_on(ctx, step.device, body)
    except SwitchboardError as exc:
        return {"verdict": "unreachable", "reason": str(exc)[:200]}


async def plans(ctx: Context, p: PlanParams) -> list[rules.PlanReport]:
    """Plans of every device, newest first."""
    rows = await ctx.read(plan_store.list_plans)
    return [await _report(ctx, row) for row in rows]


async def plan_show(ctx: Context, p: PlanParams) -> rules.PlanReport:
    """One plan's report; ``wait``: until it ended (``after``: or its version passed that),
    at most that many seconds."""
    if not p.plan:
        raise UserError("no plan id given")
    row = await ctx.read(plan_store.get_plan, p.plan.strip().lower())
    if row is None:
        raise NotFound(f"unknown plan {p.plan[:20]} (or several start with it)")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + p.wait

    def waiting(row: dict[str, Any]) -> bool:
        return row["state"] == "running" and not (p.after and row["version"] > p.after)

    while waiting(row):
        mark = ctx.changes
        row = await ctx.read(plan_store.get_plan, row["plan"])
        remaining = deadline - loop.time()
        if not waiting(row) or remaining <= 0:
            break
        await ctx.wait_advanced(remaining, since=mark)
    return await _report(ctx, row)


# -- reports -------------------------------------------------------------------------------------


async def _report_of(ctx: Context, plan_id: str) -> rules.PlanReport:
    row = await ctx.read(plan_store.get_plan, plan_id)
    assert row is not None, "the plan_started just appended folds at once"
    return await _report(ctx, row)


async def _report(ctx: Context, row: dict[str, Any]) -> rules.PlanReport:
    shorts = await ctx.read(projections.device_shorts)
    steps = []
    for step in row["steps"]:
        task = await ctx.read(task_store.get_task, step["task"]) if step["task"] else None
        task = task if task is not None and task["task"] == step["task"] else None
        device = step["device"]
        agent = ""
        if task is not None and task["name"]:
            agent = ids.format_address(task["name"], shorts.get(device, device[:4].upper()))
        state = step["state"]
        if state == rules.RUNNING and task is not None and task["state"] == "blocked":
            state = "blocked"
        steps.append(rules.StepReport(
            name=step["name"], device=shorts.get(device, device[:4].upper()),
            harness=step["harness"], depends_on=step["depends_on"], state=state,
            task=step["task"], agent=agent, dir=(task or {}).get("dir") or step["dir"],
            reason=step["reason"], result=((task or {}).get("result") or "")[-RESULT_CHARS:],
        ))  # fmt: skip
    device = row["device_id"]
    return rules.PlanReport(
        id=row["plan"], name=row["name"], state=row["state"],
        requester=ids.format_address(row["agent"], shorts.get(device, device[:4].upper())),
        started=row["started_ts"], ended=row["ended_ts"], version=row["version"], steps=steps,
    )  # fmt: skip


def _task_reason(task: dict[str, Any]) -> str:
    """Why a task ended the way it did, for its step."""
    parts = []
    if task["exit_status"] is not None and task["state"] != "completed":
        parts.append(f"exit status {task['exit_status']}")
    if task["reason"]:
        parts.append(str(task["reason"]))
    return "; ".join(parts)


# -- the runner ----------------------------------------------------------------------------------


class PlanRunner:
    """Runs this device's plans: one loop per running plan (``ctx.part(PlanRunner)``)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.loops: dict[str, asyncio.Task[None]] = {}
        self.unreachable_since: dict[tuple[str, str], float] = {}
        self._resume: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Carry on with the plans this device ran before a restart."""
        self._resume = asyncio.get_running_loop().create_task(
            self._resume_running(), name="switchboard[plans].resume"
        )

    async def _resume_running(self) -> None:
        for row in await self.ctx.read(plan_store.running_plans_of, self.ctx.device_id):
            log.info("= plan %s resumed", row["plan"])
            self.drive(row["plan"])

    def drive(self, plan_id: str) -> None:
        """Run the plan's loop (once)."""
        if plan_id in self.loops and not self.loops[plan_id].done():
            return
        self.loops[plan_id] = asyncio.get_running_loop().create_task(
            self._plan_loop(plan_id), name=f"switchboard[plans].{plan_id}.plan_loop"
        )

    async def stop(self) -> None:
        """Stop running plans here (they carry on at the next start)."""
        tasks = [t for t in (self._resume, *self.loops.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.loops.clear()

    async def _plan_loop(self, plan_id: str) -> None:
        try:
            while True:
                mark = self.ctx.changes
                if await self._advance(plan_id):
                    continue
                row = await self.ctx.read(plan_store.get_plan, plan_id)
                if row is None or row["state"] != "running":
                    return
                await self.ctx.wait_advanced(LOOK_INTERVAL, since=mark)
        except asyncio.CancelledError:
            raise
        except Exception:  # the supervisor of one plan: log, and look again at the next start
            log.exception("! plan %s stopped", plan_id)

    async def _advance(self, plan_id: str) -> bool:
        """One look at the plan: write what changed; ``True`` when something did."""
        ctx = self.ctx
        row = await ctx.read(plan_store.get_plan, plan_id)
        if row is None or row["state"] != "running" or row["device_id"] != ctx.device_id:
            return False
        agent = row["agent"]
        specs = row["steps"]
        steps = [msgspec.convert({k: s[k] for k in _STEP_FIELDS}, PlanStep) for s in specs]
        states = {s["name"]: rules.StepState(s["state"], s["reason"]) for s in specs}
        ended: list[tuple[str, Any]] = []
        for spec in specs:
            if spec["state"] != rules.RUNNING:
                continue
            task = await ctx.read(task_store.get_task, spec["task"])
            if task is not None and task["task"] == spec["task"] and State(task["state"]) in FINAL:
                ended.append((agent, PlanStepEnded(
                    plan=plan_id, step=spec["name"], state=task["state"], task=spec["task"],
                    reason=_task_reason(task),
                )))  # fmt: skip
        if ended:
            await ctx.log.append_many(ended)
            return True
        start, skip = rules.next_steps(steps, states)
        if skip:
            await ctx.log.append_many([
                (agent, PlanStepEnded(plan=plan_id, step=name, state=rules.SKIPPED,
                                      reason=reason))
                for name, reason in skip
            ])  # fmt: skip
            return True
        places = [next(i for i, s in enumerate(steps) if s.name == name) for name in start]
        started = await asyncio.gather(
            *(self._start_step(plan_id, agent, i, steps[i]) for i in places)
        )
        if any(started):
            return True
        if rules.is_finished(steps, states):
            state = rules.outcome(steps, states)
            await ctx.log.append(agent, PlanEnded(plan=plan_id, state=state))
            log.info("= plan %s %s", plan_id, state)
            return False
        return False

    async def _start_step(self, plan_id: str, agent: str, index: int, step: PlanStep) -> bool:
        """Ask the step's device for its task; write what came of it. ``True``: written."""
        ctx = self.ctx
        tag = step_tag(plan_id, index)
        found = await ctx.read(plan_store.task_tagged, step.device, tag)
        if found is not None:  # asked before a restart
            answer: dict[str, Any] = {"id": found["task"], "state": found["state"]}
        else:
            try:
                answer = await self._request(agent, step, tag)
            except Unreachable as exc:
                key = (plan_id, step.name)
                now = asyncio.get_running_loop().time()
                first = self.unreachable_since.setdefault(key, now)
                if now - first < MAX_UNREACHABLE:
                    return False  # its link may come up: look again at the next change
                answer = {"id": "", "state": "failed", "reason": str(exc)}
            except SwitchboardError as exc:
                answer = {"id": "", "state": "failed", "reason": f"could not ask: {exc}"[:300]}
        self.unreachable_since.pop((plan_id, step.name), None)
        task = str(answer.get("id", ""))
        body: PlanStepEnded | PlanStepStarted
        if answer["state"] in rules.ENDED:  # refused, or could not start
            body = PlanStepEnded(plan=plan_id, step=step.name, state=answer["state"], task=task,
                                 reason=str(answer.get("reason", "")))  # fmt: skip
        else:
            body = PlanStepStarted(plan=plan_id, step=step.name, task=task)
        await ctx.log.append(agent, body)
        return True

    async def _request(self, agent: str, step: PlanStep, tag: str) -> dict[str, Any]:
        ctx = self.ctx
        if step.device == ctx.device_id:
            request = TaskRequest(device=ctx.device_id, local=True, requester=agent,
                                  harness=step.harness, text=step.prompt, dir=step.dir,
                                  tags=(tag,))  # fmt: skip
            return await request_task(ctx, request)
        body = taskremote.SpawnBody(requester=agent, harness=step.harness, text=step.prompt,
                                    dir=step.dir, tags=[tag])  # fmt: skip
        return await taskremote.spawn_on(ctx, step.device, body)


_STEP_FIELDS: Final = ("name", "prompt", "harness", "dir", "device", "depends_on")


async def _stop(ctx: Context) -> None:
    await ctx.part(PlanRunner).stop()


FEATURE = Feature(
    "plans",
    methods={"plan.run": plan_run, "plans": plans, "plan.show": plan_show},
    start=lambda ctx: ctx.part(PlanRunner).start(),
    stop=_stop,
)
