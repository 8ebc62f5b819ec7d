"""Permission prompts that travel: a task's agent asks, any device its policy allows answers.

Theory of operation
-------------------
A spawned agent's harness asks for a permission through us (Claude Code's
``--permission-prompt-tool``, our MCP tool ``permission_prompt``; any harness whose hook can
decide could call ``prompt.ask`` the same way). ``prompt.ask`` writes ``task_blocked`` (the
prompt's id, the tool, the command or path), so the task shows ``blocked`` on every device,
and waits. ``approvals`` lists the prompts pending anywhere in the group (from the replicated
``tasks`` projection). ``prompt.answer`` (``approve``/``deny``) runs on the task's device:
asked here by this device's user, or by another device over the directed channel (request
``prompt.answer``, the sender proved by the channel). That device's policy decides
(``policy.may_answer``: the device that started the task, unless ``answer_own = false``, and
the agents named in ``answer``); the first answer wins and is recorded with who gave it
(``task_unblocked``). Unanswered within the wait, a prompt times out to ``deny``, the
headless default of every harness. Pending prompts live in memory: a daemon that restarts
answers the ones it held ``timeout`` (the asking harness lost its call anyway).

Only agents that run a task here can ask (an agent started by hand has a person at its
terminal to answer).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import msgspec

from switchboard import ids
from switchboard.daemon.agents import ensure_agent
from switchboard.daemon.params import AgentParams, Seconds
from switchboard.daemon.registry import Feature
from switchboard.daemon.taskrequest import policy_path
from switchboard.errors import Forbidden, NotFound, UserError
from switchboard.events import TaskBlocked, TaskUnblocked
from switchboard.store import projections
from switchboard.store import tasks as task_store
from switchboard.tasks import policy

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

# How long a prompt waits for an answer by default: a person reading a notification and
# deciding; the harness's own call times out not much later.
DEFAULT_PROMPT_WAIT: Final = 300.0
MAX_DETAIL: Final = 500
ANSWER_TIMEOUT: Final = 30.0


class AskParams(AgentParams):
    tool: str = ""
    detail: str = ""
    wait: Seconds = DEFAULT_PROMPT_WAIT


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


@dataclass
class Pending:
    """A prompt waiting for its answer."""

    prompt: str
    task: str
    agent: str
    requested_by: str  # the device that started the task
    answered: asyncio.Future[tuple[str, str, str]] = field(repr=False)


class Prompts:
    """The prompts pending on this device (a Context part)."""

    def __init__(self, ctx: Context) -> None:
        self.pending: dict[str, Pending] = {}


def _new_prompt_id() -> str:
    return "p" + base64.b32encode(secrets.token_bytes(5)).decode().lower()[:7]


# -- asking --------------------------------------------------------------------------------------


async def prompt_ask(ctx: Context, p: AskParams) -> dict[str, Any]:
    """Block the asking agent's task on a prompt until it is answered or times out."""
    name = await ensure_agent(ctx, p.agent)
    row = await ctx.read(task_store.task_of_agent, ctx.device_id, name)
    if row is None or row["state"] not in ("running", "blocked"):
        raise UserError(f"agent {name} runs no task here: its prompts are answered where it runs")
    prompts = ctx.part(Prompts)
    prompt = _new_prompt_id()
    loop = asyncio.get_running_loop()
    pending = Pending(prompt=prompt, task=row["task"], agent=name,
                      requested_by=row["requester"].rpartition(":")[2],
                      answered=loop.create_future())  # fmt: skip
    prompts.pending[prompt] = pending
    detail = " ".join(p.detail.split())[:MAX_DETAIL]
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
    reason = " ".join(reason.split())[:MAX_DETAIL]
    pending.answered.set_result((answer, by, reason))
    if not await _still_blocked(ctx, pending.task):
        raise UserError(f"task {pending.task} ended while its prompt was pending")
    await ctx.log.append("", TaskUnblocked(task=pending.task, prompt=prompt, answer=answer,
                                           by=by, reason=reason))  # fmt: skip
    return {"prompt": prompt, "task": pending.task, "answer": answer}


async def _still_blocked(ctx: Context, task: str) -> bool:
    row = await ctx.read(task_store.get_task, task)
    return row is not None and row["state"] == "blocked"


# -- listing and answering from anywhere ---------------------------------------------------------


def _blocked(conn: Any) -> list[dict[str, Any]]:
    rows = task_store.list_tasks(conn, False)
    return [r for r in rows if r["state"] == "blocked" and r["prompt"]]


async def approvals(ctx: Context, p: ApprovalsParams) -> list[dict[str, Any]]:
    """The permission prompts pending on every device, oldest first."""
    rows = await ctx.read(_blocked)
    shorts = {r["device_id"]: r["short"] for r in await ctx.read(projections.list_devices)}
    out = []
    for row in rows:
        device = shorts.get(row["device_id"], row["device_id"][:4].upper())
        out.append({
            "prompt": row["prompt"]["id"], "task": row["task"], "device": device,
            "agent": ids.format_address(row["name"], device), "tool": row["prompt"]["tool"],
            "detail": row["prompt"]["detail"], "asked": row["prompt"]["ts"],
        })  # fmt: skip
    return sorted(out, key=lambda item: str(item["asked"]))


async def prompt_answer(ctx: Context, p: AnswerParams) -> dict[str, Any]:
    """Approve or deny a prompt (its id, or its task's id) wherever its task runs."""
    name = await ensure_agent(ctx, p.agent)
    wanted = p.prompt.strip().lower()
    if not wanted:
        raise UserError("no prompt id given")
    found = [r for r in await ctx.read(_blocked)
             if r["prompt"]["id"] == wanted or r["task"].startswith(wanted)]  # fmt: skip
    if not found:
        raise NotFound(f"no pending prompt {wanted[:20]}")
    if len(found) > 1:
        raise UserError(f"{wanted[:20]} names {len(found)} prompts: give the prompt id")
    row = found[0]
    prompt = row["prompt"]["id"]
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


FEATURE = Feature(
    "approvals",
    methods={"prompt.ask": prompt_ask, "approvals": approvals, "prompt.answer": prompt_answer},
    requests={"prompt.answer": answer_request},
)
