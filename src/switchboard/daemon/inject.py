"""``Injector``: choose what goes into an agent's context now, wrap it, and record it.

Theory of operation
-------------------
Every push path (a hook's ``additionalContext``, a Stop block, an MCP channel notification, the
unread block on an MCP tool result, a plugin's prompt) asks ``take(agent, context)`` what to
place into that model context *now*. The answer is:

- each unread message not yet injected into this context, in full (wrapped: switchboard/wrapping);
- a one-line reminder for unread messages injected here more than ``reoffer`` seconds ago (at
  most ``MAX_REMINDERS`` times each): "offered again" without placing the same message twice
  into one context;
- events matching the agent's subscriptions since its cursor.

What the block shows is recorded in the same step: a ``message_injected`` event per message (so
the sender sees it), the subscription cursors advance. A lock per agent makes the check and the
record one step, so two hooks of one session firing together never inject a message twice.
A new context (new session, ``/clear``, compaction) has no injections yet, so unread messages are
offered in full again there: the old context that held them is gone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import TYPE_CHECKING, Any, Final

from switchboard import ids, wrapping
from switchboard.events import MessageInjected, MessageRead
from switchboard.store import delivery, query, rooms

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

# A message placed in a context but not acknowledged is mentioned again (by id, not in full)
# after this long: long enough not to nag during a task, short enough that it is not forgotten.
DEFAULT_REOFFER_AFTER: Final = 600.0
# ... and at most this many times per context, so an agent that will not answer is left alone.
MAX_REMINDERS: Final = 2
# Unread messages considered per delivery; the rest wait for the next one.
MAX_UNREAD: Final = 50
# Events scanned per delivery for subscriptions; a burst beyond this is delivered next time.
MAX_SCAN: Final = 500


def _age(ts: str) -> float:
    moment = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return (dt.datetime.now(dt.UTC) - moment).total_seconds()


class Injector:
    """Delivery into agents' contexts for one daemon."""

    def __init__(self, ctx: Context) -> None:
        self.d = ctx
        self._locks: dict[str, asyncio.Lock] = {}
        self._reminded: dict[tuple[str, str, str], tuple[int, float]] = {}

    def lock(self, name: str) -> asyncio.Lock:
        """The lock that serialises deliveries to agent ``name``."""
        return self._locks.setdefault(name, asyncio.Lock())

    def address(self, name: str) -> str:
        """The display address of a local agent."""
        return ids.format_address(name, self.d.short)

    async def pending(self, name: str, context: str) -> bool:
        """Whether an unread message of ``name`` has not been injected into ``context`` yet."""

        def check(conn: Any) -> bool:
            return bool(delivery.unread_messages(conn, self.d.device_id, name, 1, context=context))

        result: bool = await self.d.read(check)
        return result

    async def take(
        self,
        name: str,
        context: str,
        *,
        via: str,
        everything: bool = False,
        ack: bool = False,
        events: bool = True,
        reoffer: float = DEFAULT_REOFFER_AFTER,
        mcp: bool = True,
        max_chars: int = wrapping.DEFAULT_MAX_CHARS,
    ) -> dict[str, Any]:
        """Place what is due into ``context`` of agent ``name``; return the wrapped block.

        Args:
            name: the local agent.
            context: the model context (``delivery.context_id``).
            via: the path, recorded on ``message_injected`` (``hook:claude:Stop``).
            everything: show every unread message in full, even those already injected here
                (an explicit ``inbox`` call).
            ack: mark the messages shown as read.
            events: include subscribed events.
            reoffer: seconds after which an injected, unread message is mentioned again.
            mcp: whether the agent has the MCP tools (changes the answering hint).
            max_chars: the size limit of the block.

        Returns:
            ``{"text", "messages", "events", "reminders", "left_out", "context"}``; ``text``
            is empty when nothing is due.
        """
        async with self.lock(name):
            fresh, shown = await self.d.read(self._unread, name, context, everything)
            done = {m["ref"]: m["injected_ts"] for m in fresh + shown if m["injected_ts"]}
            reminders = [] if everything else self._due(name, context, shown, reoffer)
            scanned, matched = await self._subscribed(name) if events else (0, [])
            rendered = wrapping.render(
                fresh,
                matched,
                reminders,
                recipient=self.address(name),
                mcp=mcp,
                max_chars=max_chars,
            )
            await self._record(name, context, via, rendered, done, ack=ack)
            await self._advance(name, rendered, scanned, matched)
        shown = set(rendered.messages)
        return {
            "text": rendered.text,
            "messages": [_public(m) for m in fresh if m["ref"] in shown],
            "events": rendered.events,
            "reminders": [m["id"] for m in reminders],
            "left_out": rendered.left_out,
            "context": context,
        }

    def _unread(
        self, conn: Any, name: str, context: str, everything: bool
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(unread messages to show in full, unread ones already shown in this context)."""
        device = self.d.device_id
        fresh = delivery.unread_messages(conn, device, name, MAX_UNREAD, context=context)
        shown = delivery.unread_messages(
            conn, device, name, MAX_UNREAD, context=context, injected=True
        )
        if everything:  # an explicit inbox call: all of them in full, oldest first
            return sorted(fresh + shown, key=lambda m: int(m["id"]))[:MAX_UNREAD], []
        return fresh, shown

    def _due(
        self, name: str, context: str, shown: list[dict[str, Any]], reoffer: float
    ) -> list[dict[str, Any]]:
        """The messages shown here earlier, still unread, that are due for a reminder."""
        due = []
        now = time.monotonic()
        for message in shown:
            if _age(message["injected_ts"]) < reoffer:
                continue
            key = (name, context, message["ref"])
            count, last = self._reminded.get(key, (0, -reoffer))
            if count < MAX_REMINDERS and now - last >= reoffer:
                self._reminded[key] = (count + 1, now)
                due.append(message)
        return due

    async def _record(
        self,
        name: str,
        context: str,
        via: str,
        rendered: wrapping.Rendered,
        done: dict[str, str],
        *,
        ack: bool,
    ) -> None:
        me = f"{name}:{self.d.device_id}"
        items: list[tuple[str, Any]] = [
            (name, MessageInjected(message=ref, recipient=me, context=context, via=via))
            for ref in rendered.messages
            if ref not in done
        ]
        if ack:
            items += [(name, MessageRead(message=ref, reader=me)) for ref in rendered.messages]
        if items:
            await self.d.log.append_many(items)

    async def take_events(self, name: str, *, limit: int, advance: bool) -> list[dict[str, Any]]:
        """Events matching agent ``name``'s subscriptions since their cursors (at most
        ``limit``), for ``inbox``; with ``advance``, the cursors move past what is returned,
        so neither ``inbox`` nor a harness context is told of them again."""
        async with self.lock(name):
            scanned, matched = await self._subscribed(name)
            shown = matched[:limit]
            if advance and scanned:
                cursor = scanned if len(shown) == len(matched) else shown[-1]["id"]
                await self.d.write(lambda conn: delivery.advance_subscriptions(conn, name, cursor))
        return shown

    async def _subscribed(self, name: str) -> tuple[int, list[dict[str, Any]]]:
        """Return (newest id scanned, matching events) for agent ``name``'s subscriptions."""
        subs = await self.d.read(delivery.list_subscriptions, name)
        if not subs:
            return 0, []
        start = min(s["cursor"] for s in subs)
        # Through the same query as `events`, so a subscriber never sees what its reader may
        # not (private and secret rooms it is not in).
        visible = await self.d.read(rooms.readable_rooms, self.d.device_id, name)
        rows = await asyncio.to_thread(
            query.run_query,
            self.d.settings.db_path,
            f"id <= {int(start) + MAX_SCAN}",
            after=start,
            visible_rooms=visible,
            max_rows=MAX_SCAN,
        )
        me = self.address(name)
        matched = [
            row
            for row in rows
            if row["agent"] != me
            and any(row["id"] > s["cursor"] and delivery.event_matches(s, row) for s in subs)
        ]
        return (rows[-1]["id"] if rows else start), matched

    async def _advance(
        self, name: str, rendered: wrapping.Rendered, scanned: int, matched: list[Any]
    ) -> None:
        if not scanned:
            return
        cursor = scanned
        if len(rendered.events) < len(matched):
            # Not all matching events fit: continue after the last one shown.
            cursor = rendered.events[-1] if rendered.events else matched[0]["id"] - 1
        await self.d.write(lambda conn: delivery.advance_subscriptions(conn, name, cursor))


def _public(message: dict[str, Any]) -> dict[str, Any]:
    """A message as tool results and clients see it (inbox JSON shape plus a few fields)."""
    keys = ("id", "ts", "from", "to", "text", "thread", "priority", "reply_to")
    return {key: message.get(key) for key in keys}
