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

**Held until taken.** A message counts as injected only once the harness has taken it. A path
that hands the block over after we answer (a hook's stdout, a plugin's ``sendUserMessage`` or
``promptAsync``, a channel notification) takes with ``hold``: nothing is recorded yet, the
block's messages are held for that context (not offered there again meanwhile) under a
*handover* token, and ``settle(token, ok)`` records them (``ok``) or releases them to be offered
again and reports the failure once (an ``injection_failed`` event and a log line). A hold that
is never settled (the hook was killed) lapses after ``HOLD_TTL`` seconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from switchboard import ids, wrapping
from switchboard.events import InjectionFailed, MessageInjected, MessageRead
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
# A hold not settled in this time lapses (its hook or plugin died): longer than the slowest
# hand-over we wait for (a plugin gives a harness 60 s to start the turn), short enough that a
# lost confirmation delays a message by minutes, not for good.
HOLD_TTL: Final = 180.0
# Holds kept at most, all agents together; the oldest lapse first beyond this.
MAX_HOLDS: Final = 1_000

log = logging.getLogger("switchboard.inject")


@dataclass
class _Held:
    """A block handed to a harness, not yet known to be taken."""

    name: str
    context: str
    via: str
    refs: list[str]  # messages shown in full, not injected here before
    cursor: int | None  # where the subscription cursors move once it is taken
    since: float


def _age(ts: str) -> float:
    moment = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return (dt.datetime.now(dt.UTC) - moment).total_seconds()


class Injector:
    """Delivery into agents' contexts for one daemon."""

    def __init__(self, ctx: Context) -> None:
        self.d = ctx
        self._locks: dict[str, asyncio.Lock] = {}
        self._settling: set[asyncio.Task[None]] = set()  # ``take(later=True)``'s records
        self._reminded: dict[tuple[str, str, str], tuple[int, float]] = {}
        self._held: dict[str, _Held] = {}
        self._failed: dict[tuple[str, str], str] = {}  # (agent, context) -> last error told

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
        hold: bool = False,
        later: bool = False,
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
            hold: record nothing yet; the caller settles the returned ``handover`` once the
                harness took the block (or failed to).
            later: record what is shown (and read, with ``ack``) in a task that starts once
                this returns, still under the agent's lock: for a waiting take, whose answer
                is on a message's path (``wait_for_message``); its records need no fsync
                before the answer, since a call that looks at them waits for them.

        Returns:
            ``{"text", "messages", "events", "reminders", "left_out", "context"}``, and
            ``handover`` with ``hold`` when something is shown; ``text`` is empty when
            nothing is due.
        """
        lock: asyncio.Lock | None = self.lock(name)
        assert lock is not None
        await lock.acquire()
        try:
            fresh, shown = await self.d.read(self._unread, name, context, everything)
            if not everything:
                pending = self._held_refs(name, context)
                fresh = [m for m in fresh if m["ref"] not in pending]
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
            cursor = _cursor(rendered, scanned, matched)
            token = ""
            if hold and not ack and rendered.text:
                refs = [ref for ref in rendered.messages if ref not in done]
                token = self._hold(_Held(name, context, via, refs, cursor, time.monotonic()))
            elif later and rendered.text:
                # Settled right after the answer leaves, under the agent's lock: whoever looks
                # next (a take, ``inbox``: ``settled``) sees it recorded.
                task = asyncio.create_task(
                    self._settle(
                        lock,
                        name,
                        context=context,
                        via=via,
                        refs=rendered.messages,
                        done=done,
                        ack=ack,
                        cursor=cursor,
                    ),
                    name=f"switchboard[inject:{name}].settle",
                )
                self._settling.add(task)
                task.add_done_callback(self._settling.discard)
                lock = None
            else:
                await self._record(name, context, via, rendered.messages, done, ack=ack)
                await self._advance(name, cursor)
        finally:
            if lock is not None:
                lock.release()
        shown = set(rendered.messages)
        result = {
            "text": rendered.text,
            "messages": [_public(m) for m in fresh if m["ref"] in shown],
            "events": rendered.events,
            "reminders": [m["id"] for m in reminders],
            "left_out": rendered.left_out,
            "context": context,
        }
        if token:
            result["handover"] = token
        return result

    async def settled(self, name: str) -> None:
        """Return once agent ``name``'s deliveries so far are recorded (see ``take``)."""
        async with self.lock(name):
            return

    async def _settle(
        self,
        lock: asyncio.Lock,
        name: str,
        *,
        context: str,
        via: str,
        refs: list[str],
        done: dict[str, str],
        ack: bool,
        cursor: int | None,
    ) -> None:
        try:
            await self._record(name, context, via, refs, done, ack=ack)
            await self._advance(name, cursor)
        except Exception:  # nothing recorded: the messages are offered again, as unread
            log.exception("! recording a delivery to %s failed", name)
        finally:
            lock.release()

    # -- holds: handed over, not yet taken -------------------------------------------------

    def _hold(self, held: _Held) -> str:
        self._lapse()
        token = secrets.token_hex(8)
        self._held[token] = held
        return token

    def _lapse(self) -> None:
        """Forget holds older than HOLD_TTL (and the oldest beyond MAX_HOLDS)."""
        now = time.monotonic()
        for token, held in list(self._held.items()):
            if now - held.since > HOLD_TTL or len(self._held) >= MAX_HOLDS:
                del self._held[token]

    def _held_refs(self, name: str, context: str) -> set[str]:
        self._lapse()
        return {
            ref
            for held in self._held.values()
            if held.name == name and held.context == context
            for ref in held.refs
        }

    async def settle(self, token: str, *, taken: bool, error: str = "") -> dict[str, Any]:
        """The harness took the block handed over under ``token`` (record it as injected), or
        did not (release it, so it is offered again, and report the failure).

        Returns:
            ``{"settled": False}`` for a token we do not hold (lapsed, or the daemon
            restarted: the block is offered again), else ``{"settled": True, "messages": N}``.
        """
        held = self._held.pop(token, None)
        if held is None:
            return {"settled": False}
        async with self.lock(held.name):
            if taken:
                self._failed.pop((held.name, held.context), None)
                await self._record(held.name, held.context, held.via, held.refs, {}, ack=False)
                await self._advance(held.name, held.cursor)
            else:
                await self._report(held, " ".join(error.split())[:300] or "no reason given")
        return {"settled": True, "messages": len(held.refs)}

    async def _report(self, held: _Held, error: str) -> None:
        """Tell of a failed hand-over: in the log each time, as an event once per error (a
        harness that fails at every poll must not flood the log every device keeps)."""
        key = (held.name, held.context)
        new = self._failed.get(key) != error
        level = logging.WARNING if new else logging.DEBUG
        log.log(level, "! %s could not take %d message(s) (%s): %s",
                self.address(held.name), len(held.refs), held.via, error)  # fmt: skip
        if not new or not held.refs:
            return
        self._failed[key] = error
        me = f"{held.name}:{self.d.device_id}"
        body = InjectionFailed(
            messages=held.refs, recipient=me, context=held.context, via=held.via, error=error
        )
        await self.d.log.append(held.name, body)

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
        refs: list[str],
        done: dict[str, str],
        *,
        ack: bool,
    ) -> None:
        me = f"{name}:{self.d.device_id}"
        items: list[tuple[str, Any]] = [
            (name, MessageInjected(message=ref, recipient=me, context=context, via=via))
            for ref in refs
            if ref not in done
        ]
        if ack:
            items += [(name, MessageRead(message=ref, reader=me)) for ref in refs]
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

    async def _advance(self, name: str, cursor: int | None) -> None:
        if cursor is None:
            return
        await self.d.write(lambda conn: delivery.advance_subscriptions(conn, name, cursor))


def _cursor(rendered: wrapping.Rendered, scanned: int, matched: list[Any]) -> int | None:
    """Where subscription cursors move after this block (``None``: nothing was scanned)."""
    if not scanned:
        return None
    if len(rendered.events) < len(matched):
        # Not all matching events fit: continue after the last one shown.
        return rendered.events[-1] if rendered.events else int(matched[0]["id"]) - 1
    return scanned


def _public(message: dict[str, Any]) -> dict[str, Any]:
    """A message as tool results and clients see it (inbox JSON shape plus a few fields)."""
    keys = ("id", "ts", "from", "to", "text", "thread", "priority", "reply_to")
    return {key: message.get(key) for key in keys}
