"""API methods on messages by id: get one, acknowledge (read), wait for receipts.

``ReceiptHandlers`` is a mixin of ``daemon.handlers.Handlers`` (through ``DeliveryHandlers``).
Receipt states, per recipient, are those of daemon/delivery.py: ``queued`` < ``delivered`` <
``injected`` < ``read``; each implies the ones before it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

import msgspec

from switchboard.daemon.params import MAX_WAIT, LocalId, Seconds, params_of
from switchboard.errors import NotFound, UserError
from switchboard.events import MessageRead
from switchboard.store import delivery, projections

if TYPE_CHECKING:
    from switchboard.daemon.service import Daemon

RECEIPT_STATES: Final = ("delivered", "injected", "read")


class MessageParams(msgspec.Struct, forbid_unknown_fields=False):
    agent: str = ""
    id: LocalId = 0
    ids: list[LocalId] = []
    state: str = "delivered"
    timeout: Seconds = 30.0


class ReceiptHandlers:
    """Messages by id and their receipts (a mixin of ``Handlers``)."""

    d: Daemon

    async def _local_agent(self, agent: str) -> str:
        if not agent:
            raise UserError("no acting agent: pass --as NAME or set SWITCHBOARD_AGENT")
        name, _, device = agent.partition(":")
        found = await self.d.read(projections.find_agents, name.lower(), self.d.device_id)
        if not found or (device and device.upper() != found[0]["short"]):
            raise NotFound(f"unknown local agent {agent[:60]}")
        return str(found[0]["name"])

    # -- messages ---------------------------------------------------------------------------

    async def message_get(self, params: Any) -> dict[str, Any]:
        """One message by its local id, with its ``ref``, sender and recipients."""
        p: MessageParams = params_of(MessageParams, params)
        row = await self.d.read(delivery.get_message, p.id)
        if row is None:
            raise NotFound(f"no message #{p.id}")
        return dict(row)

    async def message_ack(self, params: Any) -> dict[str, Any]:
        """Mark messages of the acting agent read; return the ids that were unread."""
        p: MessageParams = params_of(MessageParams, params)
        name = await self._local_agent(p.agent)
        wanted = set(p.ids or [p.id])
        unread = await self.d.read(delivery.unread_messages, self.d.device_id, name, 10_000)
        rows = [row for row in unread if row["id"] in wanted]
        me = f"{name}:{self.d.device_id}"
        if rows:
            items = [(name, MessageRead(message=r["ref"], reader=me)) for r in rows]
            await self.d.log.append_many(items)
        return {"acked": [row["id"] for row in rows]}

    async def message_wait(self, params: Any) -> dict[str, Any]:
        """Wait until every recipient of message ``id`` reached ``state``; report each one."""
        p: MessageParams = params_of(MessageParams, params)
        if p.state not in RECEIPT_STATES:
            raise UserError(f"unknown state {p.state[:20]!r}: expected one of {RECEIPT_STATES}")
        ref = await self.d.read(delivery.message_ref, p.id)
        if ref is None:
            raise NotFound(f"no message #{p.id}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(p.timeout, 0.0), MAX_WAIT)
        while True:
            mark = self.d.changes
            recipients = await self.d.read(_receipt_states, p.id, ref)
            complete = all(_rank(r["state"]) >= _rank(p.state) for r in recipients)
            remaining = deadline - loop.time()
            if complete or remaining <= 0:
                return {
                    "id": p.id,
                    "state": p.state,
                    "complete": complete,
                    "recipients": recipients,
                }
            await self.d.wait_advanced(remaining, since=mark)


def _rank(state: str) -> int:
    return {"queued": 0, "delivered": 1, "injected": 2, "read": 3}[state]


def _receipt_states(conn: Any, local_id: int, ref: str) -> list[dict[str, Any]]:
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
        out.append(
            {
                "address": f"{row['name']}:{row['short']}",
                "state": state,
                "delivered_ts": row["delivered_ts"],
                "injected_ts": injected_ts,
                "read_ts": row["read_ts"],
            }
        )
    return out
