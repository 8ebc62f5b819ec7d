"""API methods for agents in harnesses: hooks, identity, context delivery, receipts, subscriptions.

The methods (``FEATURE`` below):

- ``agent.hook``: one call per harness hook: resolve the agent, record what the hook saw
  (session lifecycle, turn boundaries, file edits, commands) and return what to place into the
  context now (``text``), or, for a ``stop``, whether to block the stop with it.
- ``agent.identify``: who is the caller (the MCP server asks with its harness anchor).
- ``inbox.take``: the wrapped block of what is due for a context (tool results, channels,
  plugins), optionally waiting for something to arrive and marking it read.
- With ``hold``, ``agent.hook`` and ``inbox.take`` record nothing yet and answer a
  ``handover`` token; an ``agent.hook`` of kind ``injected`` (the harness took the block) or
  ``inject_failed`` (it did not: offered again, the failure reported) settles it
  (daemon/inject.py, "Held until taken").
- ``events.subscribe``, ``events.unsubscribe``, ``events.subscriptions``.

``message.get``, ``message.ack`` and ``message.wait`` (one message by local id; mark messages
read; wait until every recipient reached a state: ``switchboard send --wait``) are
daemon/receipts.py. Receipt states, precisely (what ``message.wait`` reports per recipient):

- ``queued``: posted; the recipient's device has not confirmed it holds the message.
- ``delivered``: the recipient's device holds it in the recipient's inbox (``message_delivered``;
  DESIGN.md guarantee 4, the ``send`` result).
- ``injected``: it was placed into the recipient agent's model context by a hook, a channel, a
  tool result or a plugin (``message_injected``). This is issue #3's "delivered to the agent".
- ``read``: the agent acknowledged it (``inbox``, ``reply``, ``message.ack``; ``message_read``).

Each state implies the ones before it (a read message counts as injected and delivered).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Final

import msgspec

from switchboard import ids, wrapping
from switchboard.daemon import agentprompts, term, transcripts
from switchboard.daemon.agents import local_agent
from switchboard.daemon.inject import DEFAULT_REOFFER_AFTER, Injector
from switchboard.daemon.params import (
    MAX_WAIT,
    AgentParams,
    Chars,
    ExitStatus,
    LocalId,
    Pid,
    Seconds,
)
from switchboard.daemon.registry import Feature
from switchboard.daemon.sessions import Identity, Sessions, check_kind
from switchboard.daemon.shapes import Subscription, Unsubscribed
from switchboard.errors import NotFound, UserError
from switchboard.events import StatusChanged, now_ts
from switchboard.store import delivery
from switchboard.store import tasks as task_store

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

#: What a hook call can be about (harnesses/payloads.py maps each harness event to one).
HOOK_KINDS: Final = frozenset(
    {"session_start", "prompt", "tool", "stop", "compact", "session_end", "poll", "idle_wait",
     "injected", "inject_failed", "permission", "permission_settled"}
)  # fmt: skip
# A stop is blocked to deliver messages at most this many times in a row without a new prompt
# or tool use, whatever the harness's own guard says (Claude Code's stop_hook_active has been
# seen staying false): a loop of blocks must end even if messages keep coming.
MAX_STOP_BLOCKS: Final = 3
# The longest an idle-wait hook may wait for a message: Claude Code re-arms it at every Stop.
MAX_IDLE_WAIT: Final = 3_600.0
# The longest a permission hook may wait for an answer from elsewhere (harnesses/hook.py
# asks for SWITCHBOARD_PROMPT_WAIT, 120 s by default); Claude Code's hook timeout is 600 s.
MAX_PROMPT_WAIT: Final = 600.0
_NEVER: Final = float("inf")


class HookParams(AgentParams):
    harness: str = ""
    kind: str = ""
    session: str = ""
    anchor: str = ""
    cwd: str = ""
    pid: Pid | None = None
    source: str = ""
    tool: str = ""
    files: list[str] = msgspec.field(default_factory=list)
    command: str | None = None
    exit: ExitStatus | None = None
    prompt: str | None = None
    deliver: bool = True
    wait: Seconds = 0.0
    mcp: bool = True
    reoffer: Seconds = DEFAULT_REOFFER_AFTER
    max_chars: Chars = wrapping.DEFAULT_MAX_CHARS
    hold: bool = False  # settle the answer's handover once the harness took it
    handover: str = ""  # injected / inject_failed: the token of the block handed over
    error: str = ""  # inject_failed: what went wrong
    transcript: str = ""  # the session's transcript file, as the harness's payload names it
    transcript_env: dict[str, str] = msgspec.field(default_factory=dict)  # its session root
    tmux: str = ""  # the tmux server's socket path, when the harness runs in tmux
    pane: str = ""  # its pane (``%N``): ``switchboard term`` finds the agent's terminal


class IdentifyParams(AgentParams):
    harness: str = ""
    session: str = ""
    anchor: str = ""
    hint: str = ""
    create: bool = True
    rename: str | None = None
    cwd: str = ""
    pid: Pid | None = None
    tmux: str = ""
    pane: str = ""


class TakeParams(AgentParams):
    context: str = ""
    hint: str = ""
    anchor: str = ""
    via: str = "tool"
    all: bool = False
    ack: bool = False
    events: bool = True
    wait: Seconds = 0.0
    reoffer: Seconds = DEFAULT_REOFFER_AFTER
    mcp: bool = True
    max_chars: Chars = wrapping.DEFAULT_MAX_CHARS
    hold: bool = False


class SubscribeParams(AgentParams):
    type: str | None = None
    of: str | None = None  # the acting agent glob ("agent" names the subscriber)
    file: str | None = None
    id: LocalId | None = None


class DeliveryState:
    """Per-daemon delivery state (in memory; losing it on restart only costs a reminder)."""

    def __init__(self, ctx: Context) -> None:
        self.injector = Injector(ctx)
        self.sessions = Sessions(ctx)
        self.stop_blocks: dict[str, int] = {}
        self.waiters: dict[str, int] = {}
        self.busy: dict[str, bool] = {}  # context -> in a turn (prompt/tool since the stop)


# -- hooks ------------------------------------------------------------------------------


async def agent_hook(ctx: Context, p: HookParams) -> dict[str, Any]:
    """Record one harness hook and return what to place into the agent's context."""
    kind = check_kind(p.kind, HOOK_KINDS)
    if not p.harness:
        raise UserError("a hook call needs its harness")
    st = ctx.part(DeliveryState)
    if kind in ("injected", "inject_failed"):
        # The harness took (or did not take) a block an earlier call handed over.
        error = p.error[:300] or f"{p.harness} did not take it"
        return await st.injector.settle(p.handover, taken=kind == "injected", error=error)
    # A session that ends without ever having been seen is no agent: harnesses fire
    # SessionEnd for their own short-lived processes too (``claude mcp list`` runs one per
    # health check), and registering a name for each would clutter ``agents``.
    ident = await st.sessions.identify(
        harness=p.harness, session=p.session, anchor=p.anchor, agent=p.agent,
        create=kind != "session_end",
    )  # fmt: skip
    if ident is None:
        return {"agent": "", "context": "", "text": ""}
    force = kind == "session_start"
    await st.sessions.ensure_registered(ident.name, p.harness, p.cwd, p.pid, force=force)
    if p.transcript or p.transcript_env:
        session = p.session or str((ident.session or {}).get("session") or "")
        await transcripts.note_source(ctx, ident.name, p.harness, session,
                                      path=p.transcript, env=p.transcript_env)  # fmt: skip
    if p.pane:
        await term.note_pane(ctx, ident.name, p.tmux, p.pane)
    if kind == "permission":
        return await _permission(ctx, ident, p)
    await _expire_prompts(ctx, ident.name, kind, p)
    if kind == "permission_settled":  # the harness's own prompt was answered
        return {"agent": st.injector.address(ident.name), "context": ident.context, "text": ""}
    items = st.sessions.activity_events(ident.name, kind, p, ident)
    if items:
        await ctx.log.append_many([(ident.name, body) for body in items])
    if kind in ("session_start", "compact") or (items and ident.session is None):
        ident = (
            await st.sessions.identify(
                harness=p.harness, session=p.session, anchor=p.anchor, agent=ident.name
            )
            or ident
        )
    result: dict[str, Any] = {
        "agent": st.injector.address(ident.name),
        "context": ident.context,
        "text": "",
    }
    if kind in ("prompt", "tool", "session_end"):
        # A new turn: the idle wait (if any) ends, and stops may block again.
        st.stop_blocks.pop(ident.context, None)
        st.waiters[ident.context] = st.waiters.get(ident.context, 0) + 1
        st.busy[ident.context] = kind != "session_end"
    elif kind == "stop":
        st.busy[ident.context] = False
    if kind == "idle_wait":
        return {**result, **await _idle_wait(ctx, ident, p)}
    if not p.deliver or kind == "session_end":
        return result
    if kind == "stop" and st.stop_blocks.get(ident.context, 0) >= MAX_STOP_BLOCKS:
        return {**result, "block": False}
    # A stop is blocked for messages only: events and reminders wait for the next turn.
    stop = kind == "stop"
    taken = await st.injector.take(
        ident.name, ident.context, via=f"hook:{p.harness}:{kind}", mcp=p.mcp,
        max_chars=p.max_chars, events=not stop, reoffer=_NEVER if stop else p.reoffer,
        hold=p.hold,
    )  # fmt: skip
    result.update(
        text=taken["text"],
        messages=[m["id"] for m in taken["messages"]],
        urgent=any(m["priority"] == "urgent" for m in taken["messages"]),
    )
    if "handover" in taken:
        result["handover"] = taken["handover"]
    if kind == "stop":
        block = bool(taken["messages"])
        st.stop_blocks[ident.context] = st.stop_blocks.get(ident.context, 0) + int(block)
        st.busy[ident.context] = block
        result["block"] = block
    return result


async def _permission(ctx: Context, ident: Identity, p: HookParams) -> dict[str, Any]:
    """A harness's hook asks to decide a permission prompt (daemon/agentprompts.py).

    A task's agent gets no decision at once: its prompts travel through the task
    (``--permission-prompt-tool``, the ACP client), which asks as the task and waits as long
    as the task's prompts do; asking here too would raise every prompt twice.
    """
    agent = ctx.part(DeliveryState).injector.address(ident.name)
    if await ctx.read(task_store.task_of_agent, ctx.device_id, ident.name) is not None:
        reason = "a task's prompts travel through its task"
        return {"agent": agent, "context": ident.context, "text": "", "prompt": "", "task": "",
                "answer": "none", "allowed": False, "by": "", "reason": reason}  # fmt: skip
    detail = p.command or (p.files[0] if p.files else "")
    asked = await agentprompts.ask_agent(
        ctx, ident.name, p.harness, p.tool, detail, min(max(p.wait, 0.0), MAX_PROMPT_WAIT)
    )
    return {"agent": agent, "context": ident.context, "text": "", **asked}


async def _expire_prompts(ctx: Context, name: str, kind: str, p: HookParams) -> None:
    """The agent's turn moved on while a prompt waited: the person answered it at the
    harness's own prompt (the same tool ran), or the turn ended or began anew."""
    if not ctx.part(agentprompts.Prompts).of_agent(name):
        return
    if kind == "tool":
        detail = p.command or (p.files[0] if p.files else None)
        await agentprompts.expire_agent(ctx, name, tool=p.tool, detail=detail)
    elif kind in ("prompt", "stop", "session_end", "permission_settled"):
        await agentprompts.expire_agent(ctx, name)


async def _idle_wait(ctx: Context, ident: Identity, p: HookParams) -> dict[str, Any]:
    """Wait (up to ``p.wait``) for a message for an idle agent; end early when superseded."""
    st = ctx.part(DeliveryState)
    if st.busy.get(ident.context):
        return {"text": "", "superseded": True}  # a new turn began before we got here
    token = st.waiters[ident.context] = st.waiters.get(ident.context, 0) + 1
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(max(p.wait, 0.0), MAX_IDLE_WAIT)
    while st.waiters.get(ident.context) == token:
        mark = ctx.changes
        if await st.injector.pending(ident.name, ident.context):
            taken = await st.injector.take(
                ident.name, ident.context, via=f"hook:{p.harness}:idle", mcp=p.mcp,
                events=False, reoffer=_NEVER, max_chars=p.max_chars, hold=p.hold,
            )  # fmt: skip
            if taken["messages"]:
                found = {"text": taken["text"], "messages": [m["id"] for m in taken["messages"]]}
                if "handover" in taken:
                    found["handover"] = taken["handover"]
                return found
        remaining = deadline - loop.time()
        if remaining <= 0:
            return {"text": "", "timeout": True}
        await ctx.wait_advanced(min(remaining, 30.0), since=mark)
    return {"text": "", "superseded": True}


# -- identity and delivery for MCP and plugins ------------------------------------------


async def agent_identify(ctx: Context, p: IdentifyParams) -> dict[str, Any] | None:
    """Who the caller is: its agent (registered on first use) and its current context."""
    st = ctx.part(DeliveryState)
    agent = p.rename or p.agent
    ident = await st.sessions.identify(
        harness=p.harness, session=p.session, anchor=p.anchor, agent=agent, hint=p.hint,
        create=p.create,
    )  # fmt: skip
    if ident is None:
        return None
    if p.rename and ident.session is not None and ident.session["name"] != ident.name:
        await st.sessions.rebind(ident)
    if p.rename and p.agent and p.agent != ident.name:
        # The old name was this agent until now: it is not coming back.
        gone = StatusChanged(status="offline", reason=f"renamed to {ident.name}")
        await ctx.log.append(ids.parse_name(p.agent), gone)
    await st.sessions.ensure_registered(ident.name, p.harness or "mcp", p.cwd, p.pid)
    if p.pane:
        await term.note_pane(ctx, ident.name, p.tmux, p.pane)
    context = await st.sessions.current_context(ident.name, p.hint or ident.context, p.anchor)
    return {"agent": st.injector.address(ident.name), "name": ident.name, "context": context}


async def inbox_take(ctx: Context, p: TakeParams) -> dict[str, Any]:
    """What is due for the caller's context, wrapped; optionally wait and mark it read."""
    st = ctx.part(DeliveryState)
    name = await local_agent(ctx, p.agent)
    context = p.context or await st.sessions.current_context(name, p.hint, p.anchor)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(max(p.wait, 0.0), MAX_WAIT)
    while True:
        mark = ctx.changes
        taken = await st.injector.take(
            name, context, via=p.via, everything=p.all, ack=p.ack, events=p.events,
            reoffer=p.reoffer, mcp=p.mcp, max_chars=p.max_chars, hold=p.hold,
            later=p.wait > 0,
        )  # fmt: skip
        remaining = deadline - loop.time()
        if taken["messages"] or taken["events"] or remaining <= 0:
            return {"agent": st.injector.address(name), **taken}
        with contextlib.suppress(TimeoutError):
            await ctx.wait_advanced(remaining, since=mark)


# -- subscriptions ----------------------------------------------------------------------


async def events_subscribe(ctx: Context, p: SubscribeParams) -> Subscription:
    """Tell the acting agent about future events matching type/agent/file globs."""
    name = await local_agent(ctx, p.agent)
    patterns = (p.type or "*", p.of or "*", p.file or None)
    if any(len(x or "") > 256 for x in patterns):
        raise UserError("a subscription pattern is longer than 256 characters")
    ts = now_ts()

    def add(conn: Any) -> int:
        cursor = delivery.newest_event_id(conn)
        return delivery.add_subscription(conn, name, patterns, cursor, ts)

    sub_id = await ctx.write(add)
    return Subscription(id=sub_id, type=patterns[0], agent=patterns[1], file=patterns[2])


async def events_unsubscribe(ctx: Context, p: SubscribeParams) -> Unsubscribed:
    """Remove one subscription of the acting agent (``id``), or all of them."""
    name = await local_agent(ctx, p.agent)
    removed = await ctx.write(lambda conn: delivery.remove_subscriptions(conn, name, p.id))
    if p.id is not None and not removed:
        raise NotFound(f"no subscription #{p.id}")
    return Unsubscribed(removed=removed)


async def events_subscriptions(ctx: Context, p: SubscribeParams) -> list[Subscription]:
    """The acting agent's subscriptions."""
    name = await local_agent(ctx, p.agent)
    rows = await ctx.read(delivery.list_subscriptions, name)
    return [
        Subscription(id=r["id"], type=r["type_glob"], agent=r["agent_glob"], file=r["file_glob"])
        for r in rows
    ]


FEATURE = Feature(
    "delivery",
    methods={
        "agent.hook": agent_hook,
        "agent.identify": agent_identify,
        "inbox.take": inbox_take,
        "events.subscribe": events_subscribe,
        "events.unsubscribe": events_unsubscribe,
        "events.subscriptions": events_subscriptions,
    },
)
