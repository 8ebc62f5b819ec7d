"""Messages: ``send`` and ``inbox``, the delivered receipt of a received message, receipt waits.

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

from switchboard.daemon import presence
from switchboard.daemon.registry import Feature, after_commit, in_txn
from switchboard.events import Body, Event, MessageDelivered, MessagePosted, body_of

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

Stored = tuple[int, Event]


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
    reactions=[
        in_txn(deliver_received, "message_posted"),
        after_commit(_wake_receipt_waiters, "message_delivered", "message_read"),
    ],
)
