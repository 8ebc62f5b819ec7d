"""Messages: ``send`` and ``inbox``, the delivered receipt of a received message, receipt waits.

``send`` resolves its targets (``@name``, ``@name:DEV``, ``#room``, ``+tag``, ``@all``) on this
device, appends the message (and the delivered receipt for recipients on this device), waits a
moment for the receipts of online devices and says per recipient ``delivered``, ``queued`` or
``offline``. ``inbox`` answers the acting agent's unread messages and notices, plus the events
its subscriptions matched, and marks them read unless ``peek``.

A message that reaches this device for one of its agents is *delivered* here: the
``message_delivered`` receipt is appended in the very transaction that stores the message
(``deliver_received``, an in-transaction reaction), so receiving a message costs one commit and
the receipt cannot be lost between two (DESIGN.md guarantee 4). A ghost refuses a message sent
since it became one; an agent that is gone holds it, undelivered, until it is back
(daemon/coordination.py delivers it then).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from switchboard import ids, wrapping
from switchboard.daemon import presence
from switchboard.daemon.agents import ensure_agent
from switchboard.daemon.delivery import DeliveryState
from switchboard.daemon.groups import LINK_WAIT, settle
from switchboard.daemon.params import MAX_WAIT, AgentParams, Rows, Seconds
from switchboard.daemon.registry import Feature, after_commit, in_txn
from switchboard.daemon.rooms import room_recipients
from switchboard.daemon.shapes import Message, Recipient, SendResult
from switchboard.daemon.threads import check_intent, reply_fields
from switchboard.errors import NotFound, UserError
from switchboard.events import (
    Body,
    Event,
    MessageDelivered,
    MessagePosted,
    MessageRead,
    body_of,
)
from switchboard.links.status import LinkState
from switchboard.store import handoffs, projections

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

Stored = tuple[int, Event]

# A message text longer than this is refused: messages are for coordination, files travel as
# files. It keeps every message well inside one envelope (frames.MAX_ENVELOPE_SIZE).
MAX_TEXT_LENGTH = 64 * 1024
# How long ``send`` waits for a receipt from an online recipient device before saying queued.
DEFAULT_SEND_WAIT = 2.0


class SendParams(AgentParams):
    to: list[str] = msgspec.field(default_factory=list)
    text: str = ""
    thread: str | None = None
    wait: Seconds = DEFAULT_SEND_WAIT
    priority: str = "normal"  # or "urgent" (daemon/delivery.py)
    intent: str | None = None  # request, inform or ack (daemon/threads.py)
    reply_to: str | int | None = None  # a message's local id or origin/seq


class InboxParams(AgentParams):
    peek: bool = False
    wait: Seconds = 0.0
    limit: Rows = 100


# -- send -----------------------------------------------------------------------------------------


async def send(ctx: Context, p: SendParams) -> SendResult:
    """Post a message; say per recipient whether it was delivered or queued."""
    check_intent(p.intent)
    if p.reply_to is not None:
        to, thread, parent = await reply_fields(ctx, p.agent, p.reply_to, p.to, p.thread)
        p = msgspec.structs.replace(p, to=to, thread=thread, reply_to=parent)
    if not p.to:
        raise UserError("no recipient: give @name, @name:DEVICE, #room, +tag or @all")
    if not p.text.strip():
        raise UserError("message text is empty")
    if len(p.text) > MAX_TEXT_LENGTH:
        raise UserError(f"message of {len(p.text)} characters exceeds limit of {MAX_TEXT_LENGTH}")
    targets = [ids.parse_target(t) for t in p.to]
    sender = await ensure_agent(ctx, p.agent)
    recipients = await ctx.read(_resolve, ctx.device_id, targets, sender)
    if p.priority not in ("normal", "urgent"):
        raise UserError(f"unknown priority {p.priority[:20]!r}: normal or urgent")
    body = MessagePosted(
        to=[str(t) for t in targets],
        recipients=recipients,
        text=p.text,
        thread=p.thread,
        priority=p.priority,
        intent=p.intent,
        reply_to=None if p.reply_to is None else str(p.reply_to),
    )
    gone = set(await ctx.read(_gone, recipients))
    local = [r for r in recipients if r.endswith(":" + ctx.device_id) and r not in gone]
    (msg_id, event), *_ = await ctx.log.append_many([(sender, body)])
    ref = f"{event.origin}/{event.seq}"
    if len(local) < len(recipients):
        # The commit woke the links (a small commit runs on the loop and wakes them before it
        # returns): one loop turn lets them pass the event on before this call goes on to
        # its reads and its reply, which would otherwise sit on the message's path.
        await asyncio.sleep(0)
    if local:
        await ctx.log.append("", MessageDelivered(message=ref, recipients=local))
    await _wait_remote(ctx, msg_id, ref, recipients, min(max(p.wait, 0.0), 30.0))
    states = await ctx.read(projections.receipts_for, msg_id)
    return _send_result(ctx, msg_id, recipients, states, gone)


def _gone(conn: Any, recipients: list[str]) -> list[str]:
    """Recipients that went offline (not merely on a device that is away): a message to them
    is held by their device, not delivered, until they are back."""
    return [address for address in recipients if presence.gone(conn, address)]


def _resolve(conn: Any, device_id: str, targets: list[ids.Target], sender: str) -> list[str]:
    found: dict[str, None] = {}
    for target in targets:
        if isinstance(target, ids.AllTarget):
            rows = [
                r
                for r in projections.list_agents(conn)
                if not (r["name"] == sender and r["device_id"] == device_id)
            ]
            rows = presence.reachable(conn, rows, exact=False)
            if not rows:
                raise NotFound("no other agent in the group to send to")
        elif isinstance(target, ids.RoomTarget):
            rows = room_recipients(conn, target.room, device_id, sender)
        elif isinstance(target, ids.TagTarget):
            rows = [
                r
                for r in projections.list_agents(conn)
                if target.tag in r["tags"]
                and not (r["name"] == sender and r["device_id"] == device_id)
            ]
            rows = presence.reachable(conn, rows, exact=False)
            if not rows:
                raise NotFound(f"no other agent tagged +{target.tag}")
        else:
            rows = projections.find_agents(conn, target.name, None)
            if target.device is not None:
                rows = [r for r in rows if r["short"] == target.device]
                if not rows:
                    _check_device(conn, target.device)
                    raise NotFound(f"unknown agent {target.name}:{target.device}")
            rows = presence.reachable(conn, rows, exact=target.device is not None)
            if not rows:
                raise NotFound(f"unknown agent @{target.name}")
        for row in rows:
            found[f"{row['name']}:{row['device_id']}"] = None
    me = f"{sender}:{device_id}"
    for successor in handoffs.successors(conn, list(found)).values():  # offered to them too
        if successor != me:
            found.setdefault(successor, None)
    return list(found)


def resolve_targets(conn: Any, device_id: str, targets: list[ids.Target], sender: str) -> list[str]:
    """The agent addresses ``targets`` resolve to, as ``send`` resolves them (``file.send``)."""
    return _resolve(conn, device_id, targets, sender)


def _check_device(conn: Any, short: str) -> None:
    if not any(d["short"] == short for d in projections.list_devices(conn)):
        raise NotFound(f"unknown device {short}")


async def _wait_remote(
    ctx: Context, msg_id: int, ref: str, recipients: list[str], wait: float
) -> None:
    remote = [r for r in recipients if not r.endswith(":" + ctx.device_id)]
    if not remote or wait <= 0:
        return  # nothing to wait for: no read of who is online
    # A daemon started by this very command is still connecting: give it a moment to learn
    # who is online before answering "queued".
    for peer in ctx.links.values():
        if peer.status.state is LinkState.CONNECTING:
            await peer.wait_established(min(wait, LINK_WAIT / 5))
    online = {
        row["device_id"]
        for row in await ctx.read(projections.list_devices)
        if row["online"] and row["device_id"] != ctx.device_id
    }
    waiting = {r for r in recipients if r.rsplit(":", 1)[1] in online}
    if not waiting:
        return
    conn_reader = ctx.db.reader

    def done() -> bool:
        states = projections.receipts_for(conn_reader(), msg_id)
        return all(states.get(r, {}).get("delivered_ts") for r in waiting)

    await ctx.part(ReceiptWaiters).wait(ref, done, wait)


def _send_result(
    ctx: Context,
    msg_id: int,
    recipients: list[str],
    states: dict[str, dict[str, Any]],
    gone: set[str],
) -> SendResult:
    shorts = projections.device_shorts(ctx.db.reader())
    out = []
    for r in recipients:
        name, device = r.rsplit(":", 1)
        state = states.get(r, {})
        label = (
            "read"
            if state.get("read_ts")
            else "delivered"
            if state.get("delivered_ts")
            else "offline"
            if r in gone
            else "queued"
        )
        address = ids.format_address(name, shorts.get(device, "?"))
        out.append(Recipient(address=address, state=label))
    labels = {o.state for o in out}
    overall = "queued" if "queued" in labels else "offline" if "offline" in labels else "delivered"
    return SendResult(id=msg_id, result=overall, recipients=out)


# -- inbox ----------------------------------------------------------------------------------------


async def inbox(ctx: Context, p: InboxParams) -> list[Message]:
    """Unread messages and notices of the acting agent, and the events its subscriptions
    matched (``events sub``) as notices, oldest first; marks them read (moves the
    subscriptions on) unless ``peek``."""
    name = await ensure_agent(ctx, p.agent)
    await settle(ctx)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(max(p.wait, 0.0), MAX_WAIT)
    limit = min(max(p.limit, 1), 1000)
    injector = ctx.part(DeliveryState).injector
    await injector.settled(name)  # a waiting take records what it showed just after it answers
    while True:
        mark = ctx.changes
        rows = await ctx.read(projections.inbox_unread, ctx.device_id, name, limit)
        rows = await ctx.read(presence.held_back, ctx.device_id, name, rows)
        matched = await injector.take_events(name, limit=limit, advance=not p.peek)
        remaining = deadline - loop.time()
        if rows or matched or remaining <= 0:
            break
        await ctx.wait_advanced(remaining, since=mark)
    if rows and not p.peek:
        reader = f"{name}:{ctx.device_id}"
        items = [(name, MessageRead(message=row["ref"], reader=reader)) for row in rows]
        await ctx.log.append_many(items)
    shorts = await ctx.read(projections.device_shorts)
    me = ids.format_address(name, ctx.short)
    out = [_message_json(row, shorts, me) for row in rows]
    out += [_event_notice(event, me) for event in matched]
    return sorted(out, key=lambda item: item.id)


def _message_json(row: dict[str, Any], shorts: dict[str, str], me: str) -> Message:
    """The inbox message shape (DESIGN §5) plus ``intent``, ``reply_to`` and ``notice``.

    A notice (posted by a device, not an agent) comes ``from`` the device's short id, is
    addressed ``to`` its rooms or else to the reader, and says in ``notice`` what it is
    (``kind``) and whom it concerns (``subject``, a display address).
    """
    notice = row.get("notice")
    if notice is not None:
        notice = {**notice, "subject": _display(notice.get("subject") or "", shorts)}
    sender = row["sender"]
    return Message(
        id=row["id"],
        ts=row["ts"],
        from_=ids.format_address(sender, row["sender_short"]) if sender else row["from"],
        to=row["to"] or ([me] if notice is not None else []),
        text=row["text"],
        thread=row["thread"],
        intent=row.get("intent"),
        reply_to=row.get("reply_to"),
        notice=notice,
    )


def _display(address: str, shorts: dict[str, str]) -> str:
    """``name:<device id>`` as ``name:SHORT`` (an unknown device keeps its id)."""
    name, sep, device = address.rpartition(":")
    if not sep:
        return address
    return ids.format_address(name, shorts.get(device, device))


def _event_notice(event: dict[str, Any], me: str) -> Message:
    """An event a subscription of ``me`` matched, in the inbox message shape, as a notice."""
    return Message(
        id=event["id"],
        ts=event["ts"],
        from_=event["agent"] or event["device"],
        to=[me],
        text=wrapping.event_summary(event),
        thread=None,
        notice={
            "kind": "event",
            "type": event["type"],
            "subject": event["agent"] or event["device"],
            "event": event,
        },
    )


# -- receipts -------------------------------------------------------------------------------------


class ReceiptWaiters:
    """Callers waiting for receipts of a message (``send --wait``), woken as receipts arrive."""

    def __init__(self, ctx: Context) -> None:
        self._waiters: dict[str, list[asyncio.Event]] = defaultdict(list)

    def on_stored(self, stored: list[Stored]) -> None:
        """Wake the waiters of each message a stored receipt is about."""
        for _, event in stored:
            for waiter in self._waiters.get(str(event.data.get("message")), ()):
                waiter.set()

    async def wait(self, ref: str, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``done()`` holds, re-checking at each receipt for message ``ref``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            waiter = asyncio.Event()
            self._waiters[ref].append(waiter)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wait(), remaining)
            finally:
                self._waiters[ref].remove(waiter)
                if not self._waiters[ref]:
                    del self._waiters[ref]
        return True


def deliver_received(
    ctx: Context, conn: sqlite3.Connection, stored: list[Stored]
) -> list[tuple[str, Body]]:
    """The ``message_delivered`` receipts for received messages to this device's agents."""
    suffix = ":" + ctx.device_id
    receipts: list[tuple[str, Body]] = []
    for _, event in stored:
        body = _safe_body(event)
        if not isinstance(body, MessagePosted):
            continue
        mine = [
            r
            for r in body.recipients
            if r.endswith(suffix)
            and presence.accepts(conn, r, event)
            and not presence.gone(conn, r)
        ]
        if mine:
            ref = f"{event.origin}/{event.seq}"
            receipts.append(("", MessageDelivered(message=ref, recipients=mine)))
    return receipts


def _wake_receipt_waiters(ctx: Context, stored: list[Stored]) -> None:
    ctx.part(ReceiptWaiters).on_stored(stored)


def _safe_body(event: Event) -> Any:
    try:
        return body_of(event)
    except Exception:  # noqa: BLE001 - bad data from a peer is ignored, never fatal
        return None


FEATURE = Feature(
    "messages",
    methods={"send": send, "inbox": inbox},
    reactions=[
        in_txn(deliver_received, "message_posted"),
        after_commit(_wake_receipt_waiters, "message_delivered", "message_read"),
    ],
)
