"""Permission prompts that travel: an agent asks, any device its device's policy allows answers.

Theory of operation
-------------------
Two kinds of agents ask:

- **A task's agent** (spawned): its harness asks through us (Claude Code's
  ``--permission-prompt-tool``, our MCP tool ``permission_prompt``; Gemini CLI and OpenCode
  through our ACP client, harnesses/acp.py). ``prompt.ask`` writes ``task_blocked`` (the
  prompt's id, the tool, the command or path), so the task shows ``blocked`` on every
  device. Unanswered within the wait, it times out to ``deny``, the headless default.
- **Any other agent** (started by hand, its harness's hook deciding: Claude Code's
  ``PermissionRequest``, harnesses/hook.py): ``prompt.ask`` (or ``agent.hook`` of kind
  ``permission``, daemon/delivery.py) writes ``permission_asked`` and the agent's
  ``status_changed`` to ``blocked`` (its summary says what it asks), so both show on every
  device. Unanswered within the wait it is settled ``timeout`` and the hook gives no
  decision: the harness falls back to its own default (an interactive session's own prompt
  at the terminal, which Claude Code shows beside the running hook; ``claude -p``'s deny).
  A prompt the person answered at the terminal meanwhile is settled ``expired`` at the
  agent's next hook (its turn moved on: the same tool ran, or a prompt, a stop, the end).

``approvals`` lists the prompts pending anywhere in the group (from the replicated ``tasks``
and ``permission_prompts`` projections). ``prompt.answer`` (``approve``/``deny``) runs on the
asking agent's device: asked here by this device's user, or by another device over the
directed channel (request ``prompt.answer``, the sender proved by the channel). That device's
policy decides (``policy.may_answer``: for a task, the device that started it unless
``answer_own = false``; for any agent, the devices whose ``answer`` patterns match its name;
by default only this device's own user); the first answer wins and is recorded with who gave
it (``task_unblocked`` / ``permission_answered``), and the agent's status goes back to what it
was. Pending prompts live in memory: a daemon that restarts settles the ones it held
(``timeout`` for a task, ``expired`` for an agent: the asking call died with it).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

import msgspec

from switchboard import ids
from switchboard.daemon.agentprompts import (
    Pending,
    Prompts,
    ask_agent,
    clean,
    expire_after_restart,
    new_prompt_id,
    settle,
)
from switchboard.daemon.agents import ensure_agent
from switchboard.daemon.params import AgentParams, Seconds
from switchboard.daemon.registry import Feature
from switchboard.daemon.taskrequest import policy_path
from switchboard.errors import Forbidden, NotFound, UserError
from switchboard.events import TaskBlocked, TaskUnblocked
from switchboard.store import projections
from switchboard.store import prompts as prompt_store
from switchboard.store import tasks as task_store
from switchboard.tasks import policy

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

# How long a task's prompt waits for an answer by default: a person reading a notification and
# deciding; the harness's own call times out not much later.
DEFAULT_PROMPT_WAIT: Final = 300.0
MAX_DETAIL: Final = 500
ANSWER_TIMEOUT: Final = 30.0


class AskParams(AgentParams):
    tool: str = ""
    detail: str = ""
    wait: Seconds = DEFAULT_PROMPT_WAIT
    harness: str = ""


class ApprovalsParams(msgspec.Struct, forbid_unknown_fields=False):
    pass


class AnswerParams(AgentParams):
    prompt: str = ""  # a prompt id, or a task id (its pending prompt)
    answer: str = "allow"  # or "deny"
    reason: str = ""


class AnswerBody(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """``prompt.answer`` over the channel; ``by`` is an agent name on the sender's device."""

    prompt: str
    answer: str
    by: str = ""
    reason: str = ""


# -- asking --------------------------------------------------------------------------------------


async def prompt_ask(ctx: Context, p: AskParams) -> dict[str, Any]:
    """Block the asking agent on a prompt until it is answered or times out: its task, if it
    runs one here, else the agent itself (daemon/agentprompts.py)."""
    name = await ensure_agent(ctx, p.agent)
    row = await ctx.read(task_store.task_of_agent, ctx.device_id, name)
    if row is None or row["state"] not in ("running", "blocked"):
        return await ask_agent(ctx, name, p.harness, p.tool, p.detail, p.wait)
    prompts = ctx.part(Prompts)
    prompt = new_prompt_id()
    loop = asyncio.get_running_loop()
    pending = Pending(prompt=prompt, task=row["task"], agent=name,
                      requested_by=row["requester"].rpartition(":")[2],
                      answered=loop.create_future())  # fmt: skip
    prompts.pending[prompt] = pending
    detail = clean(p.detail)
    try:
        await ctx.log.append("", TaskBlocked(task=row["task"], prompt=prompt, tool=p.tool[:100],
                                             detail=detail))  # fmt: skip
        try:
            answer, by, reason = await asyncio.wait_for(asyncio.shield(pending.answered), p.wait)
        except TimeoutError:
            answer, by, reason = "timeout", "", f"no answer within {p.wait:g} s"
            if await _still_blocked(ctx, row["task"]):
                await ctx.log.append("", TaskUnblocked(task=row["task"], prompt=prompt,
                                                       answer=answer, reason=reason))  # fmt: skip
    finally:
        prompts.pending.pop(prompt, None)
    allowed = answer == "allow"
    return {"prompt": prompt, "task": row["task"], "answer": answer, "allowed": allowed,
            "by": by, "reason": reason}  # fmt: skip


async def answer_prompt(  # noqa: PLR0917 - the prompt, the answer, and who gives it
    ctx: Context, prompt: str, answer: str, by: str, device: str, local: bool, reason: str = ""
) -> dict[str, Any]:
    """Answer a prompt pending on this device, if ``device`` may (first answer wins)."""
    if answer not in ("allow", "deny"):
        raise UserError(f"answer {answer[:20]!r}: allow or deny")
    pending = ctx.part(Prompts).pending.get(prompt)
    if pending is None:
        raise NotFound(f"prompt {prompt[:20]} is not pending here (answered, or timed out)")
    rules = await asyncio.to_thread(policy.load, policy_path(ctx))
    if not policy.may_answer(rules, device, local=local, agent=pending.agent,
                             requested_by=pending.requested_by):  # fmt: skip
        who = "this device's user" if local else f"device {device[:8]}"
        raise Forbidden(f"{who} may not answer the prompts of {pending.agent} here")
    if pending.answered.done():
        raise UserError(f"prompt {prompt} was answered already")
    reason = clean(reason)
    pending.answered.set_result((answer, by, reason))
    agent = ids.format_address(pending.agent, ctx.short)
    if not pending.task:
        await settle(ctx, pending, answer, by, reason)
        return {"prompt": prompt, "task": "", "agent": agent, "answer": answer}
    if not await _still_blocked(ctx, pending.task):
        raise UserError(f"task {pending.task} ended while its prompt was pending")
    await ctx.log.append("", TaskUnblocked(task=pending.task, prompt=prompt, answer=answer,
                                           by=by, reason=reason))  # fmt: skip
    return {"prompt": prompt, "task": pending.task, "agent": agent, "answer": answer}


async def _still_blocked(ctx: Context, task: str) -> bool:
    row = await ctx.read(task_store.get_task, task)
    return row is not None and row["state"] == "blocked"


# -- listing and answering from anywhere ---------------------------------------------------------


def _pending_everywhere(conn: Any) -> list[dict[str, Any]]:
    """Every pending prompt of the group: tasks' (``tasks``), agents' (``permission_prompts``)."""
    out = [
        {"prompt": r["prompt"]["id"], "task": r["task"], "device_id": r["device_id"],
         "name": r["name"], "harness": r["harness"], "tool": r["prompt"]["tool"],
         "detail": r["prompt"]["detail"], "asked": r["prompt"]["ts"]}
        for r in task_store.list_tasks(conn, False)
        if r["state"] == "blocked" and r["prompt"]
    ]  # fmt: skip
    out += [
        {"prompt": r["prompt"], "task": "", "device_id": r["device_id"], "name": r["name"],
         "harness": r["harness"], "tool": r["tool"], "detail": r["detail"],
         "asked": r["asked_ts"]}
        for r in prompt_store.pending(conn)
    ]  # fmt: skip
    return sorted(out, key=lambda item: str(item["asked"]))


async def approvals(ctx: Context, p: ApprovalsParams) -> list[dict[str, Any]]:
    """The permission prompts pending on every device, oldest first."""
    rows = await ctx.read(_pending_everywhere)
    shorts = {r["device_id"]: r["short"] for r in await ctx.read(projections.list_devices)}
    out = []
    for row in rows:
        device = shorts.get(row["device_id"], row["device_id"][:4].upper())
        out.append({
            "prompt": row["prompt"], "task": row["task"], "device": device,
            "agent": ids.format_address(row["name"], device), "harness": row["harness"],
            "tool": row["tool"], "detail": row["detail"], "asked": row["asked"],
        })  # fmt: skip
    return out


async def prompt_answer(ctx: Context, p: AnswerParams) -> dict[str, Any]:
    """Approve or deny a prompt (its id, or its task's id) wherever its agent runs."""
    name = await ensure_agent(ctx, p.agent)
    wanted = p.prompt.strip().lower()
    if not wanted:
        raise UserError("no prompt id given")
    found = [r for r in await ctx.read(_pending_everywhere)
             if r["prompt"] == wanted or (r["task"] and r["task"].startswith(wanted))]  # fmt: skip
    if not found:
        raise NotFound(f"no pending prompt {wanted[:20]}")
    if len(found) > 1:
        raise UserError(f"{wanted[:20]} names {len(found)} prompts: give the prompt id")
    row = found[0]
    prompt = row["prompt"]
    if row["device_id"] == ctx.device_id:
        by = f"{name}:{ctx.device_id}"
        return await answer_prompt(ctx, prompt, p.answer, by, ctx.device_id, True, p.reason)
    body = msgspec.json.encode(AnswerBody(prompt=prompt, answer=p.answer, by=name,
                                          reason=p.reason))  # fmt: skip
    answer = await ctx.call_device(row["device_id"], "prompt.answer", body,
                                   timeout=ANSWER_TIMEOUT)  # fmt: skip
    result: dict[str, Any] = msgspec.json.decode(answer)
    return result


async def answer_request(ctx: Context, sender: str, body: bytes) -> bytes:
    """``prompt.answer`` from another device (the channel proved ``sender``)."""
    try:
        asked = msgspec.json.decode(body, type=AnswerBody)
    except msgspec.DecodeError as exc:
        raise Forbidden(f"malformed request: {str(exc)[:100]}") from None
    by = f"{ids.parse_name(asked.by)}:{sender}" if asked.by else sender
    result = await answer_prompt(ctx, asked.prompt, asked.answer, by, sender, False,
                                 asked.reason)  # fmt: skip
    return msgspec.json.encode(result)


def _start(ctx: Context) -> None:
    # Settle the agent prompts a previous daemon held (a task's are settled by its runner).
    ctx.part(Prompts).tasks.add(asyncio.get_running_loop().create_task(
        expire_after_restart(ctx), name="switchboard[approvals].expire_after_restart"
    ))  # fmt: skip


FEATURE = Feature(
    "approvals",
    methods={"prompt.ask": prompt_ask, "approvals": approvals, "prompt.answer": prompt_answer},
    requests={"prompt.answer": answer_request},
    start=_start,
)
