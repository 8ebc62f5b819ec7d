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
from switchboard.daemon.params import Count, params_of
from switchboard.daemon.sessions import located
from switchboard.errors import NotFound, UserError
from switchboard.events import BODY_TYPES, INTENTS, FileEdited
from switchboard.store import delivery, projections, search

if TYPE_CHECKING:
    from switchboard.daemon.service import Daemon

P = Any

# A listing longer than this is not read by a person or an agent: ask for fewer.
#: Event types ``event.record`` accepts: facts a harness reports about its agent.
RECORDABLE = ("file_edited", "command_run")


class ThreadParams(msgspec.Struct, forbid_unknown_fields=False):
    agent: str = ""
    id: str = ""
    limit: Count = 200


class SearchParams(msgspec.Struct, forbid_unknown_fields=False):
    agent: str = ""
    query: str = ""
    room: str | None = None
    sender: str | None = None
    limit: Count = 50


class SentParams(msgspec.Struct, forbid_unknown_fields=False):
    agent: str = ""
    last: Count = 20


class RecordParams(msgspec.Struct, forbid_unknown_fields=False):
    agent: str = ""
    type: str = ""
    data: dict[str, Any] = {}


def message_json(row: dict[str, Any]) -> dict[str, Any]:
    """The message shape of DESIGN.md §5 plus ``intent``, ``reply_to`` and ``ref``."""
    return {
        "id": row["id"],
        "ts": row["ts"],
        "from": ids.format_address(row["sender"], row["sender_short"]),
        "to": row["to"],
        "text": row["text"],
        "thread": row["thread"],
        "intent": row.get("intent"),
        "reply_to": row.get("reply_to"),
        "ref": row["ref"],
    }


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


class ThreadHandlers:
    """API methods ``thread.show``, ``search``, ``sent`` and ``event.record``."""

    d: Daemon

    if TYPE_CHECKING:

        async def ensure_agent(self, agent: str) -> str: ...

    async def with_reply(self, p: P) -> P:
        """Check a send's intent; for a reply, fill in its thread, ``reply_to`` and (when no
        target is given) its targets: the parent's rooms, else the parent's sender."""
        if p.intent is not None and p.intent not in INTENTS:
            raise UserError(f"unknown intent {str(p.intent)[:20]!r}: use {', '.join(INTENTS)}")
        if p.reply_to is None:
            return p
        name = await self.ensure_agent(p.agent)
        parent = await self._message(name, str(p.reply_to))
        to = list(p.to)
        if not to:
            rooms = [t for t in parent["to"] if t.startswith("#")]
            mine = parent["sender"] == name and parent["origin"] == self.d.device_id
            sender = f"@{ids.format_address(parent['sender'], parent['sender_short'])}"
            to = rooms or (parent["to"] if mine else [sender])
        thread = p.thread or parent["thread"] or parent["ref"]
        return msgspec.structs.replace(p, to=to, thread=thread, reply_to=parent["ref"])

    async def _message(self, name: str, text: str) -> dict[str, Any]:
        local = _local_id(text)
        if local is not None:
            row = await self.d.read(search.message_by_id, self.d.device_id, name, local)
        else:
            held = await self.d.read(search.message_by_ref, ids.parse_event_id(text))
            row = held and await self.d.read(
                search.message_by_id, self.d.device_id, name, held["id"]
            )
        if row is None:
            raise NotFound(f"unknown message {text[:40]}")
        found: dict[str, Any] = row
        return found

    async def thread_show(self, params: Any) -> list[dict[str, Any]]:
        """The messages of a thread, given a message's id (``42``) or a thread id."""
        p = params_of(ThreadParams, params)
        name = await self.ensure_agent(p.agent)
        if not p.id.strip():
            raise UserError("no thread: give a message id (42) or a thread id")
        thread_id = p.id.strip()
        if _local_id(thread_id) is not None:
            parent = await self._message(name, thread_id)
            thread_id = parent["thread"] or parent["ref"]
        rows = await self.d.read(search.thread, self.d.device_id, name, thread_id, p.limit)
        if not rows:
            raise NotFound(f"unknown thread {thread_id[:60]}")
        return [message_json(row) for row in rows]

    async def search(self, params: Any) -> list[dict[str, Any]]:
        """Messages the acting agent may see that match a query, best match first."""
        p = params_of(SearchParams, params)
        name = await self.ensure_agent(p.agent)
        room = ids.parse_room(p.room.removeprefix("#")) if p.room else None
        sender = await self._sender(p.sender) if p.sender else None
        rows = await self.d.read_in_thread(
            search.search, self.d.device_id, name, p.query, room, sender, p.limit
        )
        return [message_json(row) for row in rows]

    async def _sender(self, text: str) -> tuple[str | None, str]:
        target = ids.parse_target(text)
        if not isinstance(target, ids.AgentTarget):
            raise UserError(f"not an agent address: {text[:40]}")
        if target.device is None:
            return None, target.name
        devices = await self.d.read(projections.list_devices)
        for device in devices:
            if device["short"] == target.device:
                return device["device_id"], target.name
        raise NotFound(f"unknown device {target.device}")

    async def sent(self, params: Any) -> list[dict[str, Any]]:
        """The acting agent's last sent messages, each with its recipients' receipt states."""
        p = params_of(SentParams, params)
        name = await self.ensure_agent(p.agent)
        rows = await self.d.read(search.sent_by, self.d.device_id, name, p.last)
        out = []
        for row in rows:
            states = await self.d.read(projections.receipts_for, row["id"])
            injected = await self.d.read(delivery.injections_of, row["ref"])
            recipients = [
                {
                    "address": ids.format_address(s["name"], s["short"]),
                    "state": _receipt_state(s, injected.get(address)),
                    "delivered": s["delivered_ts"],
                    "injected": injected.get(address),
                    "read": s["read_ts"],
                }
                for address, s in states.items()
            ]
            out.append({**message_json(row), "recipients": recipients})
        return out

    async def event_record(self, params: Any) -> dict[str, Any]:
        """Record a harness fact (``file_edited``, ``command_run``) by the acting agent."""
        p = params_of(RecordParams, params)
        if p.type not in RECORDABLE:
            raise UserError(f"cannot record {p.type[:40]!r}: use {', '.join(RECORDABLE)}")
        name = await self.ensure_agent(p.agent)
        try:
            body = msgspec.convert(p.data, BODY_TYPES[p.type])
        except msgspec.ValidationError as exc:
            raise UserError(f"invalid {p.type} data: {exc}") from exc
        if isinstance(body, FileEdited) and not body.repo:
            rows = await self.d.read(projections.find_agents, name, self.d.device_id)
            body = located(body.path, body.tool, rows[0]["cwd"] if rows else "")
        local_id, event = await self.d.log.append(name, body)
        return {"id": local_id, "ref": f"{event.origin}/{event.seq}", "type": p.type}
