"""The log as users query it: ``events`` (filters and read-only SQL) and ``events.follow``.

Rows are the event shape of DESIGN.md §5 (``shapes.EventRow``), built by ``store/query.py``
from the ``events_view``; a reader sees public rooms and the rooms it is a member of.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec

from switchboard import ids
from switchboard.daemon.groups import settle
from switchboard.daemon.params import MAX_WAIT, LocalId, Rows, Seconds
from switchboard.daemon.registry import Feature
from switchboard.errors import UserError
from switchboard.store import query, rooms

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

# Rows a follower reads per query: a burst (a device catching up) streams page by page instead
# of hitting the row limit of one query, and no page holds the loop for long.
FOLLOW_PAGE = 500


class EventsParams(msgspec.Struct):
    # Events act for no one: ``agent`` here is a filter (a display address or a name).
    type: str | None = None
    agent: str | None = None
    where: str | None = None
    last: Rows | None = None
    after: LocalId | None = None
    wait: Seconds | None = None
    # Who reads (an agent of this device): events about rooms it may not read are left out
    # (issue #4); no reader reads as an outsider. ``all_rooms``: the device's whole log, for
    # the device's own tools and tests; agents' tools (CLI, MCP) name their reader.
    reader: str = ""
    all_rooms: bool = False


async def events(ctx: Context, p: EventsParams) -> list[dict[str, Any]]:
    """Query the log: filters and read-only SQL."""
    await settle(ctx)
    path = ctx.settings.db_path
    visible = await _visible_rooms(ctx, p)

    def run() -> list[dict[str, Any]]:
        return query.run_query(
            path, p.where, type=p.type, agent=p.agent, last=p.last, after=p.after,
            visible_rooms=visible,
        )  # fmt: skip

    rows: list[dict[str, Any]] = await asyncio.to_thread(run)
    return rows


async def _visible_rooms(ctx: Context, p: EventsParams) -> list[str] | None:
    """The rooms whose events ``p.reader`` may see now (``None``: all, for ``all_rooms``)."""
    if p.all_rooms:
        if p.reader:
            raise UserError("pass a reader or all_rooms, not both")
        return None
    name = ids.parse_name(p.reader) if p.reader else ""
    visible: list[str] = await ctx.read(rooms.readable_rooms, ctx.device_id, name)
    return visible


async def events_follow(ctx: Context, p: EventsParams) -> AsyncIterator[dict[str, Any]]:
    """Yield matching events as they are stored, from now (or after ``after``).

    One guarded connection serves the whole stream. Filters without ``where`` read only the
    new rows through indexes, a page at a time: that runs on the loop, as the projection reads
    do. User SQL may take long, so it runs in a worker thread.
    """
    guarded = query.GuardedQuery(ctx.settings.db_path, visible_rooms=None)
    try:
        guarded.show(await _visible_rooms(ctx, p))
        after = p.after
        if after is None:
            newest = guarded.run(last=1)
            after = newest[-1]["id"] if newest else 0
        loop = asyncio.get_running_loop()
        deadline = None if p.wait is None else loop.time() + min(p.wait, MAX_WAIT)
        while True:
            mark = ctx.changes
            guarded.show(await _visible_rooms(ctx, p))
            rows = await _follow_page(guarded, p, after)
            for row in rows:
                after = max(after, row["id"])
                yield row
            if len(rows) >= FOLLOW_PAGE:
                continue  # a burst: read on before waiting
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            await ctx.wait_advanced(60.0 if remaining is None else remaining, since=mark)
    finally:
        guarded.close()


async def _follow_page(
    guarded: query.GuardedQuery, p: EventsParams, after: int
) -> list[dict[str, Any]]:
    def run() -> list[dict[str, Any]]:
        return guarded.run(p.where, type=p.type, agent=p.agent, after=after, page=FOLLOW_PAGE)

    if p.where is None:
        return run()
    rows: list[dict[str, Any]] = await asyncio.to_thread(run)
    return rows


FEATURE = Feature(
    "events",
    methods={"events": events},
    streams={"events.follow": events_follow},
)
