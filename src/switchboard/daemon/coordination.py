"""The daemon's coordination loop: liveness, status notices, request watches, edit conflicts.

Theory of operation
-------------------
One task (``switchboard[coordination].run_loop``) wakes every ``LIVENESS_INTERVAL`` seconds,
and at once when the log stores something it cares about, and then in turn:

1. looks at each new ``file_edited`` for edits of the same path by another agent within
   ``edit_window`` seconds, and tells the local one of the two (``edit_conflict``);
2. checks the processes of local agents: the pid an agent registered with, else the harness
   processes (anchors: pid and start time) its hooks and MCP server run under; an agent whose
   processes all ended gets a ``status_changed`` to ``offline`` (reason ``process exited``),
   written by its own device, and its dead anchors are forgotten;
3. computes every agent's shown status (``presence.effective_status``: the last
   ``status_changed``, or offline once its device has been silent for ``offline_timeout``) and
   compares it with the previous round's;
4. tells of each change (``member_status``) the local agents that share a room with the agent;
5. fires each open watch whose sender is local and whose recipient went idle or offline after
   the request without replying (``watch_fired``, which also closes the watch in the log).

Who writes each of these notices, so that it is written exactly once: always the device of
the agent who is *told* (membership notices, in contrast, are written by the acting agent's
device with the change itself: daemon/rooms.py). A status change may be derived (a device
that stopped sending heartbeats writes nothing), so only observers can announce it, and each
observer announces it only to its own agents; a watch belongs to its sender; an edit conflict
is told to each of the two editors by that editor's own device. Nobody else writes a notice
for those recipients, and each device appends its notices from this one task, so there are no
duplicates. The price: a status change that happens while a device's daemon is down is not
announced to that device's agents later (statuses are compared from the daemon's start),
while open watches are kept in the log and still fire after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import sqlite3
import time
from typing import TYPE_CHECKING

from switchboard import ids
from switchboard.daemon import presence
from switchboard.daemon.presence import effective_status
from switchboard.daemon.registry import Feature, after_commit
from switchboard.events import (
    Body,
    Event,
    MessageDelivered,
    NoticePosted,
    StatusChanged,
    format_ts,
)
from switchboard.store import delivery, leases, projections, rooms

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

log = logging.getLogger("switchboard.daemon.coordination")

# How often local agents' processes and everyone's shown status are checked: "marked offline
# within a few seconds" without measurable cost (one small read per round).
LIVENESS_INTERVAL = 2.0
# A woken round waits this long first: a burst of events costs one round, and a message's own
# path (the follower that shows it, the link that passes it on) runs before the round, not
# behind it (each round reads every agent; it ran once per message, on that message's path).
ROUND_DELAY = 0.01
_WAKING = frozenset({"status_changed", "agent_registered", "message_posted", "file_edited"})
# Events by which a local agent is back: what it was sent while gone is delivered then.
_COMES_BACK = frozenset({"status_changed", "agent_registered"})
Key = tuple[str, str]


def process_alive(pid: int) -> bool:
    """Whether a local process runs (a zombie does not count)."""
    if pid <= 0:
        return True  # not a process we can check
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat(pid)
    return fields is None or fields[0] != "Z"


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), or ``None``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields or None


def anchor_alive(anchor: str) -> bool:
    """Whether the harness process of an anchor (``pid:start time``, or ``pid``) still runs.

    The start time (field 22 of ``/proc/PID/stat``) tells a recycled pid from the old process.
    """
    pid_text, _, started = anchor.partition(":")
    if not pid_text.isdigit():
        return True  # not an anchor we can follow
    if not started:
        # Where /proc exists, a pid without a start time is one the hook could not read
        # (``SWITCHBOARD_HARNESS_PID`` naming no process): nothing to follow. Elsewhere the
        # pid is all an anchor has.
        return os.path.isdir("/proc") or process_alive(int(pid_text))
    fields = _stat(int(pid_text))
    if fields is None:  # gone, or no /proc: then the pid is all there is to check
        return process_alive(int(pid_text))
    return fields[0] != "Z" and len(fields) > 19 and fields[19] == started


def room_mates(
    conn: sqlite3.Connection, device: str, name: str, local: str
) -> dict[str, list[str]]:
    """Local agents sharing a room with ``(device, name)``: internal address -> shared rooms."""
    shown = rooms.visibility_of(conn)
    mates: dict[str, list[str]] = {}
    for room in rooms.rooms_of(conn, device, name):
        for dev, mate in rooms.member_keys(conn, room):
            if dev == local and (dev, mate) != (device, name) and shown.get((dev, mate)) != "ghost":
                mates.setdefault(f"{mate}:{dev}", []).append(room)
    return mates


class Coordination:
    """Runs the coordination loop of one daemon."""

    def __init__(self, ctx: Context) -> None:
        self.d = ctx
        self._wake: asyncio.Event | None = None
        self._edits: list[int] = []
        self._local_edit: str | None = None  # ts of the latest edit here; None: not read yet
        self._statuses: dict[Key, str] | None = None
        self._back: set[str] = set()  # local agents that came back since the last round
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop on the running event loop."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._run_loop(), name="switchboard[coordination].run_loop"
        )

    async def stop(self) -> None:
        """Stop the loop (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def on_stored(self, stored: list[tuple[int, Event]]) -> None:
        """Note what a commit stored (called from the daemon's fan-out point)."""
        # An edit older than the window (a catch-up after a long absence) can no longer make a
        # "you both edited this just now" notice; skipping it keeps catch-up fast.
        cutoff = format_ts(
            dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.d.settings.edit_window)
        )
        for local_id, event in stored:
            if event.type == "file_edited" and event.ts >= cutoff:
                self._edits.append(local_id)
                if event.origin == self.d.device_id:
                    self._local_edit = max(self._local_edit or "", event.ts)
            if (
                event.type in _COMES_BACK
                and event.origin == self.d.device_id
                and event.agent
                and event.data.get("status") != "offline"
            ):
                self._back.add(event.agent)
            if event.type in _WAKING and self._wake is not None:
                self._wake.set()

    async def _run_loop(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), LIVENESS_INTERVAL)
            if self._wake.is_set():
                await asyncio.sleep(ROUND_DELAY)
            self._wake.clear()
            # Like a peer's supervisor (STYLE.md error rule 5): one failed round (a bug, a
            # locked database) must not end liveness for good; it is logged and retried.
            try:
                await self.tick()
            except Exception:
                log.exception("! coordination round failed")

    async def tick(self) -> None:
        """One round: edits, processes, statuses and watches."""
        await self._check_edits()
        await self._deliver_held()
        await self._check_processes()
        await self._check_statuses()

    # -- 1b. agents back -------------------------------------------------------------------------

    async def _deliver_held(self) -> None:
        # A local agent that comes back (registers again, or any status but offline) holds what
        # it was sent while gone, undelivered: it is delivered now.
        back, self._back = self._back, set()
        device = self.d.device_id
        for name in sorted(back):
            refs = await self.d.read(delivery.undelivered_refs, device, name)
            if refs and not await self.d.read(presence.gone, f"{name}:{device}"):
                me = [f"{name}:{device}"]
                await self.d.log.append_many(
                    [("", MessageDelivered(message=ref, recipients=me)) for ref in refs]
                )

    # -- 1. processes ----------------------------------------------------------------------------

    async def _check_processes(self) -> None:
        # An agent follows its process: the pid it registered with, else the harness processes
        # (anchors) its hooks and MCP server run under; it lives while any of them does. An
        # agent with neither (``--as`` from a shell) has no process to follow.
        rows = await self.d.read(projections.list_agents)
        anchors = await self.d.read(delivery.anchors_by_agent)
        dead: list[str] = []
        gone: list[str] = []
        for row in rows:
            if row["device_id"] != self.d.device_id or row["status"] == "offline":
                continue
            if row["pid"]:
                if not process_alive(int(row["pid"])):
                    dead.append(row["name"])
            elif row["name"] in anchors and not any(map(anchor_alive, anchors[row["name"]])):
                dead.append(row["name"])
                gone.extend(anchors[row["name"]])
        if dead:
            log.info("= agents offline, process exited: %s", ", ".join(dead))
            body = StatusChanged(status="offline", reason="process exited")
            await self.d.log.append_many([(name, body) for name in dead])
        if gone:
            await self.d.write(lambda conn: delivery.forget_anchors(conn, gone))

    # -- 2-4. statuses and watches ---------------------------------------------------------------

    async def _check_statuses(self) -> None:
        rows = await self.d.read(projections.list_agents)
        now = time.time()
        current = {
            (r["device_id"], r["name"]): effective_status(r, self.d.device_id, self.d.settings, now)
            for r in rows
        }
        shorts = {(r["device_id"], r["name"]): r["short"] for r in rows}
        # A device that is away for a moment (a link blip, a daemon restart) is not news for
        # room mates: ``unreachable`` is announced as the status it hides; ``offline`` is.
        told = {(r["device_id"], r["name"]): r["status"] or "active" for r in rows}
        previous, self._statuses = (
            self._statuses,
            {k: told[k] if v[0] == "unreachable" else v[0] for k, v in current.items()},
        )
        assert self._statuses is not None
        if previous is not None:
            for key, status in self._statuses.items():
                if key in previous and previous[key] != status:
                    await self._announce(key, status, shorts[key])
        await self._fire_watches(current, shorts)

    async def _announce(self, key: Key, status: str, short: str) -> None:
        device, name = key
        shown = await self.d.read(rooms.visibility_of)
        if shown.get(key, "visible") != "visible":
            return
        mates = await self.d.read(room_mates, device, name, self.d.device_id)
        if not mates:
            return
        shared = sorted({room for rs in mates.values() for room in rs})
        who = ids.format_address(name, short)
        notice = NoticePosted(
            kind="member_status", recipients=sorted(mates), text=f"{who} is now {status}",
            to=[f"#{room}" for room in shared], room=shared[0], subject=f"{name}:{device}",
        )  # fmt: skip
        await self.d.log.append("", notice)

    async def _fire_watches(
        self, current: dict[Key, tuple[str, str | None]], shorts: dict[Key, str]
    ) -> None:
        items: list[tuple[str, Body]] = []
        for watch in await self.d.read(leases.open_watches, self.d.device_id):
            key = (watch["device_id"], watch["name"])
            status, since = current.get(key, ("active", None))
            if status not in ("idle", "offline") or not since or since <= watch["ts"]:
                continue
            who = ids.format_address(watch["name"], shorts.get(key, "?"))
            text = f"{who} went {status} without replying to your request #{watch['event_id']}"
            notice = NoticePosted(
                kind="watch_fired", recipients=[f"{watch['sender_name']}:{self.d.device_id}"],
                text=text, subject=f"{watch['name']}:{watch['device_id']}", ref=watch["ref"],
            )  # fmt: skip
            items.append(("", notice))
        await self.d.log.append_many(items)

    # -- 5. edit conflicts -----------------------------------------------------------------------

    async def _check_edits(self) -> None:
        edits, self._edits = self._edits, []
        window = self.d.settings.edit_window
        if not edits or not await self._edited_here_since(2 * window):
            return

        for row in await self.d.read(leases.edits_near, edits, window, self.d.device_id):
            mine = (row["my_device"], row["my_name"])
            other = (row["device_id"], row["name"])
            if mine[0] == self.d.device_id:
                await self._tell(mine, other, row["short"], row["path"], window)
            if other[0] == self.d.device_id:
                await self._tell(other, mine, await self._short(mine[0]), row["path"], window)

    async def _edited_here_since(self, seconds: float) -> bool:
        # Every edit checked was made at most ``window`` ago (``on_stored``); it can pair with an
        # edit here only if this device edited within ``window`` of it, so within 2 x window of
        # now. Remote edits alone (a catch-up, a device with no agents editing) skip the query.
        if self._local_edit is None:
            self._local_edit = await self.d.read(leases.last_edit_ts, self.d.device_id)
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
        return self._local_edit >= format_ts(since)

    async def _tell(self, recipient: Key, other: Key, short: str, path: str, window: float) -> None:
        address, other_address = f"{recipient[1]}:{recipient[0]}", f"{other[1]}:{other[0]}"
        since = format_ts(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=window))
        told = await self.d.read(
            leases.recently_told, recipient[0], recipient[1], other_address, path, since
        )
        if told:
            return
        who = ids.format_address(other[1], short)
        text = f"{who} is editing {path} too (both within {window:g} s): coordinate with them"
        notice = NoticePosted(
            kind="edit_conflict", recipients=[address], text=text, subject=other_address,
            path=path,
        )  # fmt: skip
        await self.d.log.append("", notice)

    async def _short(self, device: str) -> str:
        for row in await self.d.read(projections.list_devices):
            if row["device_id"] == device:
                return str(row["short"])
        return "?"


def _start(ctx: Context) -> None:
    ctx.part(Coordination).start()


async def _stop(ctx: Context) -> None:
    await ctx.part(Coordination).stop()


def _on_stored(ctx: Context, stored: list[tuple[int, Event]]) -> None:
    ctx.part(Coordination).on_stored(stored)


FEATURE = Feature(
    "coordination",
    reactions=[after_commit(_on_stored, *(_WAKING | _COMES_BACK))],
    start=_start,
    stop=_stop,
)
