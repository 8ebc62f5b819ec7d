"""API methods on messages by id: get one, acknowledge (read), wait for receipts.

Receipt states, per recipient, are those of daemon/delivery.py: ``queued`` < ``delivered`` <
``injected`` < ``read``; each implies the ones before it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

import msgspec

from switchboard.daemon.agents import local_agent
from switchboard.daemon.params import MAX_WAIT, AgentParams, LocalId, Seconds
from switchboard.daemon.registry import Feature
from switchboard.daemon.shapes import Acked, Receipt, ReceiptWait
from switchboard.errors import NotFound, UserError
from switchboard.events import MessageRead
from switchboard.store import delivery, projections

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

RECEIPT_STATES: Final = ("delivered", "injected", "read")


class MessageParams(AgentParams):
    id: LocalId = 0
    ids: list[LocalId] = msgspec.field(default_factory=list)
    state: str = "delivered"
    timeout: Seconds = 30.0


async def message_get(ctx: Context, p: MessageParams) -> dict[str, Any]:
    """One message by its local id, with its ``ref``, sender and recipients."""
    row = await ctx.read(delivery.get_message, p.id)
    if row is None:
        raise NotFound(f"no message #{p.id}")
    return dict(row)


async def message_ack(ctx: Context, p: MessageParams) -> Acked:
    """Mark messages of the acting agent read; return the ids that were unread."""
    name = await local_agent(ctx, p.agent)
    wanted = set(p.ids or [p.id])
    unread = await ctx.read(delivery.unread_messages, ctx.device_id, name, 10_000)
    rows = [row for row in unread if row["id"] in wanted]
    me = f"{name}:{ctx.device_id}"
    if rows:
        items = [(name, MessageRead(message=r["ref"], reader=me)) for r in rows]
        await ctx.log.append_many(items)
    return Acked(acked=[row["id"] for row in rows])


async def message_wait(ctx: Context, p: MessageParams) -> ReceiptWait:
    """Wait until every recipient of message ``id`` reached ``state``; report each one."""
    if p.state not in RECEIPT_STATES:
        raise UserError(f"unknown state {p.state[:20]!r}: expected one of {RECEIPT_STATES}")
    ref = await ctx.read(delivery.message_ref, p.id)
    if ref is None:
        raise NotFound(f"no message #{p.id}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(max(p.timeout, 0.0), MAX_WAIT)
    while True:
        mark = ctx.changes
        recipients = await ctx.read(_receipt_states, p.id, ref)
        complete = all(_rank(r.state) >= _rank(p.state) for r in recipients)
        remaining = deadline - loop.time()
        if complete or remaining <= 0:
            return ReceiptWait(id=p.id, state=p.state, complete=complete, recipients=recipients)
        await ctx.wait_advanced(remaining, since=mark)


def _rank(state: str) -> int:
    return {"queued": 0, "delivered": 1, "injected": 2, "read": 3}[state]


def _receipt_states(conn: Any, local_id: int, ref: str) -> list[Receipt]:
    injected = delivery.injections_of(conn, ref)
    out = []
    for address, row in projections.receipts_for(conn, local_id).items():
        injected_ts = injected.get(address)
        state = (
            "read"
            if row["read_ts"]
            else "injected"
            if injected_ts
            else "delivered"
            if row["delivered_ts"]
            else "queued"
        )
        receipt = Receipt(
            address=f"{row['name']}:{row['short']}", state=state,
            delivered_ts=row["delivered_ts"], injected_ts=injected_ts, read_ts=row["read_ts"],
        )  # fmt: skip
        out.append(receipt)
    return out


FEATURE = Feature(
    "receipts",
    methods={"message.get": message_get, "message.ack": message_ack, "message.wait": message_wait},
)
