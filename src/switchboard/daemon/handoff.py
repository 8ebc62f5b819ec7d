"""Handoff: an agent's work moves to a successor on another device, git state and all.

Theory of operation
-------------------
``handoff`` runs on the original agent's device (its transcript, messages and checkout are
there). It gathers the brief (``tasks/handoff.py``: the agent's summary, the last exchanges of
its transcript, its recent messages, the requests still open to it, its branch and last commit)
and the uncommitted changes of its checkout as a binary patch (``taskgit.uncommitted``: staged,
unstaged and untracked files, the user's index untouched). It sends both to the target in one
``handoff.start`` request over the directed channel (or runs it here for ``--to`` this device).

The target decides with its spawn policy, exactly as for ``spawn`` (device, harness,
directory). Then, if there are changes, it applies them to its own checkout of the same
repository (same ``repos.identity``) with ``git apply``, refusing, with nothing changed, when a
file they touch has local changes there or the patch does not apply: a conflict is reported,
never resolved by overwriting. Only then does it start the successor (``request_task``), so
the agent starts on the changed tree.

Back on the original's device an ``agent_handed_off`` event records the successor: the
original shows ``handed_off`` everywhere, and a message to it is offered to the successor by
whichever device sends it (``daemon/messages.py``, ``store/handoffs.py``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from switchboard import ids, repos
from switchboard.daemon import taskgit
from switchboard.daemon.agents import agent_name, ensure_agent
from switchboard.daemon.params import AgentParams, Count
from switchboard.daemon.registry import Feature
from switchboard.daemon.shapes import Handoff
from switchboard.daemon.taskrequest import TaskRequest, decide, request_task
from switchboard.daemon.tasks import device_of
from switchboard.daemon.transcripts import recent_exchanges
from switchboard.errors import Forbidden, NotFound, SwitchboardError, UserError
from switchboard.events import AgentHandedOff
from switchboard.proto.calls import MAX_BODY
from switchboard.store import handoffs, projections
from switchboard.tasks import handoff as brief_of
from switchboard.tasks import policy
from switchboard.tasks.commands import HARNESSES

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

# The successor's start includes a git snapshot of a big tree there.
START_TIMEOUT: Final = 90.0
# Room in one directed-channel body for the brief and the frame around the patch.
MAX_PATCH: Final = MAX_BODY - 80 * 1024
MESSAGES: Final = 30


class HandoffParams(AgentParams):
    who: str = ""
    """The agent handed off (an agent of this device); ``""``: the acting agent itself."""
    to: str = ""
    """The target device: short id, name or full id."""
    dir: str = ""
    harness: str = ""
    """The successor's harness; ``""``: the original's, when it can be spawned."""
    name: str = ""
    """The successor's name; ``""``: the original's."""
    note: str = ""
    last: Count = 20
    """How many transcript exchanges the brief quotes."""


class StartBody(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """``handoff.start``: start a successor here, its checkout changed first."""

    requester: str
    harness: str
    text: str
    dir: str = ""
    name: str = ""
    repo: str = ""
    patch: str = ""


async def handoff(ctx: Context, p: HandoffParams) -> Handoff:
    """Hand an agent of this device over to a successor on ``to``."""
    acting = await ensure_agent(ctx, p.agent)
    who = agent_name(p.who) if p.who else acting
    row = await _original(ctx, who)
    if not p.to:
        raise UserError("handoff needs --to DEVICE")
    target = await device_of(ctx, p.to)
    harness = p.harness or (row["harness"] if row["harness"] in HARNESSES else "claude")
    git, patch = await asyncio.to_thread(_git_state, row["cwd"])
    name = p.name or who
    if target == ctx.device_id:  # here: the changes are in place already, the name is taken
        name = p.name
        same = await asyncio.to_thread(_same_checkout, row["cwd"], p.dir or row["cwd"])
        patch = "" if same else patch
    if len(patch) > MAX_PATCH:
        raise UserError(
            f"the uncommitted changes are {len(patch) // 1024} KiB, over the {MAX_PATCH // 1024}"
            " KiB a handoff carries: commit and push them first"
        )
    text = brief_of.brief(await _brief(ctx, row, git, p))
    body = StartBody(
        requester=acting, harness=harness, text=text, dir=p.dir or row["cwd"],
        name=name, repo=git.repo, patch=patch,
    )  # fmt: skip
    if target == ctx.device_id:
        answer = await start(ctx, ctx.device_id, body, local=True)
    else:
        raw = await ctx.call_device(
            target, "handoff.start", msgspec.json.encode(body), timeout=START_TIMEOUT
        )
        answer = msgspec.json.decode(raw)
    short = (await ctx.read(projections.device_shorts)).get(target, target[:4].upper())
    if answer.get("state") != "running":
        return Handoff(
            id=answer.get("id", ""), state=answer.get("state", "failed"),
            reason=answer.get("reason", ""), device=short, successor="", applied="",
        )  # fmt: skip
    successor = f"{answer['agent']}:{target}"
    event = AgentHandedOff(name=who, successor=successor, task=answer["id"], applied=git.stat)
    await ctx.log.append(who, event)
    return Handoff(
        id=answer["id"], state="running", reason="", device=short,
        successor=ids.format_address(answer["agent"], short), applied=git.stat,
    )  # fmt: skip


async def answer_start(ctx: Context, sender: str, body: bytes) -> bytes:
    """``handoff.start`` from another device: the spawn policy here decides."""
    try:
        asked = msgspec.json.decode(body, type=StartBody)
    except msgspec.DecodeError as exc:
        raise Forbidden(f"malformed handoff: {str(exc)[:100]}") from None
    return msgspec.json.encode(await start(ctx, sender, asked, local=False))


async def start(ctx: Context, sender: str, body: StartBody, *, local: bool) -> dict[str, Any]:
    """Check the policy, apply the changes, start the successor; a refusal is an answer."""
    request = TaskRequest(
        device=sender, local=local, requester=ids.parse_name(body.requester),
        harness=body.harness, text=body.text, dir=body.dir, name=body.name,
    )  # fmt: skip
    refused = await _refusal(ctx, request, body)
    if refused:
        return {"id": "", "state": "refused", "reason": refused}
    return await request_task(ctx, request)


async def _refusal(ctx: Context, request: TaskRequest, body: StartBody) -> str:
    """Why the successor may not start here (``""``: it may, and the changes are applied)."""
    decision = await decide(ctx, request)  # the spawn policy's own answer
    if isinstance(decision, policy.Refused):
        return decision.reason
    directory = decision[0].directory

    def apply() -> str:  # runs git: in a thread
        if not body.patch:
            return ""
        root = taskgit.top_level(directory)
        if root is None:
            return f"{directory} is not a git checkout here: the changes need one"
        mine = repos.identity(Path(root))
        if body.repo and mine != body.repo:
            return f"{root} holds {mine}, not {body.repo}"
        conflict = taskgit.apply(root, body.patch)
        return f"conflict: {conflict}; nothing was changed here" if conflict else ""

    return await asyncio.to_thread(apply)


# -- gathering the brief ---------------------------------------------------------------------


async def _original(ctx: Context, who: str) -> dict[str, Any]:
    rows = await ctx.read(projections.find_agents, who, None)
    here = [r for r in rows if r["device_id"] == ctx.device_id]
    if here:
        found: dict[str, Any] = here[0]
        return found
    if rows:
        raise UserError(
            f"{who} runs on {rows[0]['short']}: hand it off from there (its transcript and "
            "checkout are on that device)"
        )
    raise NotFound(f"unknown agent {who[:40]}")


def _git_state(cwd: str) -> tuple[brief_of.GitState, str]:
    root = taskgit.top_level(cwd) if cwd and Path(cwd).is_dir() else None
    if root is None:
        return brief_of.GitState(), ""
    branch, commit, subject = taskgit.head(root)
    stat, patch = taskgit.uncommitted(root)
    state = brief_of.GitState(
        repo=repos.identity(Path(root)), branch=branch, commit=commit, subject=subject,
        stat=stat, applied=bool(patch),
    )  # fmt: skip
    return state, patch


def _same_checkout(one: str, other: str) -> bool:
    return Path(other).is_dir() and taskgit.top_level(one) == taskgit.top_level(other)


async def _brief(
    ctx: Context, row: dict[str, Any], git: brief_of.GitState, p: HandoffParams
) -> brief_of.Brief:
    name = row["name"]
    messages = await ctx.read(handoffs.conversation, ctx.device_id, name, MESSAGES)
    requests = await ctx.read(handoffs.open_requests, ctx.device_id, name)
    return brief_of.Brief(
        original=ids.format_address(name, row["short"]), harness=row["harness"] or "?",
        cwd=row["cwd"], summary=row["summary"] or "",
        exchanges=await _exchanges(ctx, row, p.last),
        messages=[
            (m["ts"], ids.format_address(m["sender"], m["sender_short"]), ", ".join(m["to"]),
             m["text"]) for m in messages
        ],
        requests=[(r["ref"], ids.format_address(r["sender_name"], r["sender_short"]))
                  for r in requests],
        git=git, note=p.note,
    )  # fmt: skip


async def _exchanges(ctx: Context, row: dict[str, Any], last: int) -> list[tuple[int, str, str]]:
    """The last exchanges of the original's transcript: its prompt and its answer each (none
    when its harness keeps no transcript we read)."""
    try:
        exchanges = await recent_exchanges(ctx, row, last)
    except SwitchboardError:
        return []
    out: list[tuple[int, str, str]] = []
    for exchange in exchanges:
        if exchange.prompt:
            out.append((exchange.n, "prompt", exchange.prompt))
        if exchange.reply:
            out.append((exchange.n, "answer", exchange.reply))
    return out


FEATURE = Feature(
    "handoff",
    methods={"handoff": handoff},
    requests={"handoff.start": answer_start},
)
