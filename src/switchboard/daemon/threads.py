"""Threads, replies and intents, full-text search, sent messages with receipts, and
``event.record`` (harness facts such as ``file_edited``, for hooks and tests).

A thread id is a string: the ``origin/seq`` of the thread's first message when it was started
by ``--reply-to``, or any name given with ``--thread``. A reply carries the thread of the
message it answers (or starts one at it) and ``reply_to``, that message's ``origin/seq``.
Users name messages by their local id (``#42``); every read here shows only the messages the
acting agent may see (``store/search.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from switchboard import ids
from switchboard.daemon.agents import ensure_agent
from switchboard.daemon.params import AgentParams, Count
from switchboard.daemon.registry import Feature
from switchboard.daemon.sessions import located
from switchboard.daemon.shapes import HistoryMessage, Recorded, SentMessage, SentRecipient
from switchboard.errors import NotFound, UserError
from switchboard.events import BODY_TYPES, INTENTS, FileEdited
from switchboard.store import delivery, projections, search

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

#: Event types ``event.record`` accepts: facts a harness reports about its agent.
RECORDABLE = ("file_edited", "command_run")


class ThreadParams(AgentParams):
    id: str = ""
    limit: Count = 200


class SearchParams(AgentParams):
    query: str = ""
    room: str | None = None
    sender: str | None = None
    limit: Count = 50


class SentParams(AgentParams):
    last: Count = 20


class RecordParams(AgentParams):
    type: str = ""
    data: dict[str, Any] = msgspec.field(default_factory=dict)


def message_json(row: dict[str, Any]) -> HistoryMessage:
    """The message shape of DESIGN.md §5 plus ``intent``, ``reply_to`` and ``ref``."""
    return HistoryMessage(**_history_fields(row))


def _history_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "ts": row["ts"],
        "from_": ids.format_address(row["sender"], row["sender_short"]),
        "to": row["to"], "text": row["text"], "thread": row["thread"],
        "intent": row.get("intent"), "reply_to": row.get("reply_to"), "ref": row["ref"],
    }  # fmt: skip


def _local_id(text: str) -> int | None:
    body = text.strip().removeprefix("#")
    return int(body) if body.isascii() and body.isdigit() and len(body) < 19 else None


def _receipt_state(row: dict[str, Any], injected_ts: str | None) -> str:
    """queued < delivered < injected < read (daemon/delivery.py); each implies those before."""
    if row["read_ts"]:
        return "read"
    if injected_ts:
        return "injected"
    return "delivered" if row["delivered_ts"] else "queued"


def check_intent(intent: str | None) -> None:
    """Refuse an unknown intent (``request``, ``inform``, ``ack``)."""
    if intent is not None and intent not in INTENTS:
        raise UserError(f"unknown intent {str(intent)[:20]!r}: use {', '.join(INTENTS)}")


async def reply_fields(
    ctx: Context, agent: str, reply_to: str | int, to: list[str], thread: str | None
) -> tuple[list[str], str, str]:
    """For a reply: its targets (when none are given, the parent's rooms, else the parent's
    sender), its thread and the parent's ``origin/seq``."""
    name = await ensure_agent(ctx, agent)
    parent = await _message(ctx, name, str(reply_to))
    to = list(to)
    if not to:
        rooms = [t for t in parent["to"] if t.startswith("#")]
        mine = parent["sender"] == name and parent["origin"] == ctx.device_id
        sender = f"@{ids.format_address(parent['sender'], parent['sender_short'])}"
        to = rooms or (parent["to"] if mine else [sender])
    return to, thread or parent["thread"] or parent["ref"], parent["ref"]


async def _message(ctx: Context, name: str, text: str) -> dict[str, Any]:
    local = _local_id(text)
    if local is not None:
        row = await ctx.read(search.message_by_id, ctx.device_id, name, local)
    else:
        held = await ctx.read(search.message_by_ref, ids.parse_event_id(text))
        row = held and await ctx.read(search.message_by_id, ctx.device_id, name, held["id"])
    if row is None:
        raise NotFound(f"unknown message {text[:40]}")
    found: dict[str, Any] = row
    return found


async def thread_show(ctx: Context, p: ThreadParams) -> list[HistoryMessage]:
    """The messages of a thread, given a message's id (``42``) or a thread id."""
    name = await ensure_agent(ctx, p.agent)
    if not p.id.strip():
        raise UserError("no thread: give a message id (42) or a thread id")
    thread_id = p.id.strip()
    if _local_id(thread_id) is not None:
        parent = await _message(ctx, name, thread_id)
        thread_id = parent["thread"] or parent["ref"]
    rows = await ctx.read(search.thread, ctx.device_id, name, thread_id, p.limit)
    if not rows:
        raise NotFound(f"unknown thread {thread_id[:60]}")
    return [message_json(row) for row in rows]


async def search_messages(ctx: Context, p: SearchParams) -> list[HistoryMessage]:
    """Messages the acting agent may see that match a query, best match first."""
    name = await ensure_agent(ctx, p.agent)
    room = ids.parse_room(p.room.removeprefix("#")) if p.room else None
    sender = await _sender(ctx, p.sender) if p.sender else None
    rows = await ctx.read_in_thread(
        search.search, ctx.device_id, name, p.query, room, sender, p.limit
    )
    return [message_json(row) for row in rows]


async def _sender(ctx: Context, text: str) -> tuple[str | None, str]:
    target = ids.parse_target(text)
    if not isinstance(target, ids.AgentTarget):
        raise UserError(f"not an agent address: {text[:40]}")
    if target.device is None:
        return None, target.name
    devices = await ctx.read(projections.list_devices)
    for device in devices:
        if device["short"] == target.device:
            return device["device_id"], target.name
    raise NotFound(f"unknown device {target.device}")


async def sent(ctx: Context, p: SentParams) -> list[SentMessage]:
    """The acting agent's last sent messages, each with its recipients' receipt states."""
    name = await ensure_agent(ctx, p.agent)
    rows = await ctx.read(search.sent_by, ctx.device_id, name, p.last)
    out = []
    for row in rows:
        states = await ctx.read(projections.receipts_for, row["id"])
        injected = await ctx.read(delivery.injections_of, row["ref"])
        recipients = [_sent_to(address, s, injected.get(address)) for address, s in states.items()]
        out.append(SentMessage(**_history_fields(row), recipients=recipients))
    return out


def _sent_to(address: str, row: dict[str, Any], injected_ts: str | None) -> SentRecipient:
    return SentRecipient(
        address=ids.format_address(row["name"], row["short"]),
        state=_receipt_state(row, injected_ts), delivered=row["delivered_ts"],
        injected=injected_ts, read=row["read_ts"],
    )  # fmt: skip


async def event_record(ctx: Context, p: RecordParams) -> Recorded:
    """Record a harness fact (``file_edited``, ``command_run``) by the acting agent."""
    if p.type not in RECORDABLE:
        raise UserError(f"cannot record {p.type[:40]!r}: use {', '.join(RECORDABLE)}")
    name = await ensure_agent(ctx, p.agent)
    try:
        body = msgspec.convert(p.data, BODY_TYPES[p.type])
    except msgspec.ValidationError as exc:
        raise UserError(f"invalid {p.type} data: {exc}") from exc
    if isinstance(body, FileEdited) and not body.repo:
        rows = await ctx.read(projections.find_agents, name, ctx.device_id)
        body = located(body.path, body.tool, rows[0]["cwd"] if rows else "")
    local_id, event = await ctx.log.append(name, body)
    return Recorded(id=local_id, ref=f"{event.origin}/{event.seq}", type=p.type)


FEATURE = Feature(
    "threads",
    methods={
        "thread.show": thread_show,
        "search": search_messages,
        "sent": sent,
        "event.record": event_record,
    },
)
