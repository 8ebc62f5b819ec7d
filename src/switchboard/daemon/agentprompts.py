"""The permission prompts of agents that run no task: asked, settled, and the status between.

daemon/approvals.py is the feature (its docstring tells the whole story); this module keeps
what both kinds of prompts share (``Pending``, the ``Prompts`` part) and the path of an agent
started by hand: ``ask_agent`` writes ``permission_asked`` with the agent's ``blocked``
status and waits; whoever settles it (an answer, the wait running out, the agent's next
hook, a restart) writes ``permission_answered`` and gives the agent its status back.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from switchboard.daemon.agents import own_row
from switchboard.daemon.taskrequest import policy_path
from switchboard.errors import NotFound
from switchboard.events import PermissionAnswered, PermissionAsked, StatusChanged
from switchboard.store import prompts as prompt_store
from switchboard.tasks import policy

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

MAX_DETAIL: Final = 500
#: A status summary is one line of ``agents``.
MAX_SUMMARY: Final = 200


@dataclass
class Pending:
    """A prompt waiting for its answer."""

    prompt: str
    task: str  # "" for an agent that runs no task
    agent: str
    requested_by: str | None  # the device that started the task (None: no task)
    answered: asyncio.Future[tuple[str, str, str]] = field(repr=False)
    tool: str = ""
    detail: str = ""
    # The agent's status and summary before it blocked (an agent's prompt only).
    before: tuple[str, str] = ("busy", "")


class Prompts:
    """The prompts pending on this device (a Context part)."""

    def __init__(self, ctx: Context) -> None:
        self.pending: dict[str, Pending] = {}
        self.tasks: set[asyncio.Task[None]] = set()  # start-up work, kept from the collector

    def of_agent(self, name: str) -> list[Pending]:
        """The agent's pending prompts that belong to no task."""
        return [p for p in self.pending.values() if p.agent == name and not p.task]


def new_prompt_id() -> str:
    """A fresh prompt id (``p`` and 7 base32 characters)."""
    return "p" + base64.b32encode(secrets.token_bytes(5)).decode().lower()[:7]


def clean(text: str, limit: int = MAX_DETAIL) -> str:
    """One line, at most ``limit`` characters."""
    return " ".join(text.split())[:limit]


def _summary(tool: str, detail: str) -> str:
    asks = f"{tool}: {detail}" if detail else tool or "a permission"
    return clean(f"waiting for permission: {asks}", MAX_SUMMARY)


async def ask_agent(  # noqa: PLR0917 - who asks, for what, how long
    ctx: Context, name: str, harness: str, tool: str, detail: str, wait: float
) -> dict[str, Any]:
    """Block a local agent on a permission prompt until it is answered or settled otherwise.

    Returns:
        ``{"prompt", "task": "", "answer", "allowed", "by", "reason"}``; ``answer`` is
        ``allow``, ``deny``, ``timeout``, ``expired`` or ``none`` (nobody may answer: the
        prompt is not raised); all but the first two mean no decision.
    """
    rules = await asyncio.to_thread(policy.load, policy_path(ctx))
    if not policy.answerers(rules, name):
        reason = "this device's policy lets nobody answer its prompts"
        return {"prompt": "", "task": "", "answer": "none", "allowed": False, "by": "",
                "reason": reason}  # fmt: skip
    try:
        row = await own_row(ctx, name)
        before = (str(row.get("status") or "busy"), str(row.get("summary") or ""))
    except NotFound:
        before = ("busy", "")
    if before[0] in ("blocked", "offline"):
        before = ("busy", before[1])
    prompts = ctx.part(Prompts)
    prompt = new_prompt_id()
    tool, detail = clean(tool, 100), clean(detail)
    pending = Pending(prompt=prompt, task="", agent=name, requested_by=None,
                      answered=asyncio.get_running_loop().create_future(), tool=tool,
                      detail=detail, before=before)  # fmt: skip
    prompts.pending[prompt] = pending
    try:
        await ctx.log.append_many([
            (name, PermissionAsked(prompt=prompt, tool=tool, detail=detail, harness=harness[:40])),
            (name, StatusChanged(status="blocked", reason="permission",
                                 summary=_summary(tool, detail))),
        ])  # fmt: skip
        try:
            answer, by, reason = await asyncio.wait_for(asyncio.shield(pending.answered), wait)
        except TimeoutError:
            answer, by, reason = "timeout", "", f"no answer within {wait:g} s"
            if not pending.answered.done():
                pending.answered.set_result((answer, by, reason))
                await settle(ctx, pending, answer, by, reason)
            else:
                answer, by, reason = pending.answered.result()
    finally:
        prompts.pending.pop(prompt, None)
    return {"prompt": prompt, "task": "", "answer": answer, "allowed": answer == "allow",
            "by": by, "reason": reason}  # fmt: skip


async def settle(ctx: Context, pending: Pending, answer: str, by: str, reason: str) -> None:
    """Record an agent's prompt as settled, and give the agent its status back once none of
    its prompts waits any more. The caller has set ``pending.answered``."""
    items: list[tuple[str, Any]] = [
        ("", PermissionAnswered(prompt=pending.prompt, answer=answer, by=by, reason=reason))
    ]
    others = [p for p in ctx.part(Prompts).of_agent(pending.agent)
              if p is not pending and not p.answered.done()]  # fmt: skip
    if not others and await _still_blocked(ctx, pending.agent):
        status, summary = pending.before
        items.append((pending.agent, StatusChanged(status=status, reason="permission",
                                                   summary=summary)))  # fmt: skip
    await ctx.log.append_many(items)


async def _still_blocked(ctx: Context, name: str) -> bool:
    try:
        return (await own_row(ctx, name)).get("status") == "blocked"
    except NotFound:
        return False


async def expire_agent(
    ctx: Context, name: str, *, tool: str | None = None, detail: str | None = None
) -> int:
    """Settle the agent's pending prompts as ``expired``: its harness went on without us (the
    person answered at the terminal). With ``tool``, only prompts for that tool (and, with
    ``detail``, that command or path). Returns how many."""
    settled = 0
    for pending in ctx.part(Prompts).of_agent(name):
        if tool is not None and pending.tool.lower() != tool.lower():
            continue
        if detail is not None and pending.detail != clean(detail):
            continue
        if pending.answered.done():
            continue
        reason = "answered at the harness's own prompt"
        pending.answered.set_result(("expired", "", reason))
        await settle(ctx, pending, "expired", "", reason)
        settled += 1
    return settled


async def expire_after_restart(ctx: Context) -> None:
    """Settle the agent prompts this device held before a restart (their calls are gone)."""
    held = ctx.part(Prompts).pending
    rows = await ctx.read(prompt_store.pending, ctx.device_id)
    items: list[tuple[str, Any]] = []
    for row in rows:
        if row["prompt"] in held:
            continue
        reason = "the daemon restarted while it waited"
        items.append(("", PermissionAnswered(prompt=row["prompt"], answer="expired",
                                             reason=reason)))  # fmt: skip
    for name in sorted({row["name"] for row in rows if row["prompt"] not in held}):
        if await _still_blocked(ctx, name):
            items.append((name, StatusChanged(status="idle", reason="permission")))
    if items:
        await ctx.log.append_many(items)
