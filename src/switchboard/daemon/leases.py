"""File leases: agents announce the paths (or globs) of a repository they work on.

An acquire is checked, on the acquiring device, against every lease of the group that device
holds: a conflict with an exclusive lease (or any lease, for an exclusive acquire) is refused
naming the holder and its reason; overlapping shared leases are granted with a warning. Leases
expire at their ``expires`` time on every device at once, without an event. Two acquires made
at the same moment on devices that cannot reach each other can both succeed: leases are
announcements between cooperating agents, not locks.

Paths are relative to the repository's top directory and ``repo`` names the repository
(the CLI takes its ``origin`` URL, else the top directory's name), so the agents of one
repository on several machines see each other's leases.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import msgspec

from switchboard import ids
from switchboard.daemon.agents import ensure_agent
from switchboard.daemon.params import AgentParams
from switchboard.daemon.registry import Feature
from switchboard.daemon.shapes import Lease, LeaseCheck, LeaseConflict, LeaseGrant, LeaseRelease
from switchboard.errors import Forbidden, NotFound, UserError
from switchboard.events import LeaseAcquired, LeaseReleased, format_ts, now_ts
from switchboard.store import leases

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

# Default and longest lease: a lease outliving a day of work is a forgotten one.
DEFAULT_TTL = 30 * 60.0
MAX_TTL = 7 * 24 * 3600.0
# Paths one acquire or check names at most (a commit touching more is checked in chunks).
MAX_PATHS = 10_000


class LeaseParams(AgentParams):
    paths: list[str] = msgspec.field(default_factory=list)
    repo: str = ""
    ttl: float = DEFAULT_TTL
    reason: str = ""
    exclusive: bool = False
    all: bool = False


def _pattern(text: str) -> str:
    pattern = text.strip()
    while pattern.startswith("./"):
        pattern = pattern[2:]
    if not pattern or pattern in (".", "/"):
        raise UserError(f"invalid lease path {text[:60]!r}")
    return pattern


def lease_json(row: dict[str, Any], now: str) -> Lease:
    """One lease row: holder, path, repo, exclusive, reason, acquired, expires, state."""
    state = "released" if row["released_ts"] else "active" if row["expires"] > now else "expired"
    return Lease(
        ref=row["ref"], holder=ids.format_address(row["name"], row["short"]),
        path=row["pattern"], repo=row["repo"], exclusive=bool(row["exclusive"]),
        reason=row["reason"], acquired=row["ts"], expires=row["expires"], state=state,
    )  # fmt: skip


def _conflict_text(path: str, row: dict[str, Any], *, wanted_exclusive: bool) -> str:
    holder = ids.format_address(row["name"], row["short"])
    reason = f" ({row['reason']})" if row["reason"] else ""
    how = "exclusively " if row["exclusive"] else ""
    text = f"{path} is leased {how}by {holder}{reason} until {row['expires']}"
    if wanted_exclusive and not row["exclusive"]:
        text += "; an exclusive lease needs it free"
    return text


async def _lease_begin(ctx: Context, p: LeaseParams) -> str:
    if len(p.paths) > MAX_PATHS:
        raise UserError(f"{len(p.paths)} paths exceed the limit of {MAX_PATHS}")
    return await ensure_agent(ctx, p.agent)


async def _others(ctx: Context, repo: str, name: str) -> list[dict[str, Any]]:
    rows = await ctx.read(leases.active_leases, repo, now_ts())
    me = (ctx.device_id, name)
    return [r for r in rows if (r["device_id"], r["name"]) != me]


async def lease_acquire(ctx: Context, p: LeaseParams) -> LeaseGrant:
    """Lease paths for ``ttl`` seconds; refuse a conflict with an exclusive lease."""
    name = await _lease_begin(ctx, p)
    patterns = list(dict.fromkeys(_pattern(path) for path in p.paths))
    if not patterns:
        raise UserError("no path to lease")
    if not 0 < p.ttl <= MAX_TTL:
        raise UserError(f"lease ttl of {p.ttl:g} s is outside 0-{MAX_TTL:g} s")
    refused, warnings = [], []
    for row in await _others(ctx, p.repo, name):
        for pattern in patterns:
            if not leases.overlaps(pattern, row["pattern"]):
                continue
            if row["exclusive"] or p.exclusive:
                refused.append(_conflict_text(pattern, row, wanted_exclusive=p.exclusive))
            else:
                warnings.append(_conflict_text(pattern, row, wanted_exclusive=False))
    if refused:
        raise Forbidden("lease refused: " + "; ".join(refused))
    expires = format_ts(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=p.ttl))
    body = LeaseAcquired(
        paths=patterns, expires=expires, repo=p.repo, exclusive=p.exclusive,
        reason=" ".join(p.reason.split())[:500],
    )  # fmt: skip
    _, event = await ctx.log.append(name, body)
    held = await _held(ctx, p.repo, name)
    ref = f"{event.origin}/{event.seq}"
    return LeaseGrant(leases=[h for h in held if h.ref == ref], warnings=warnings)


async def lease_release(ctx: Context, p: LeaseParams) -> LeaseRelease:
    """Release the acting agent's leases on the given paths (none given: all in the repo)."""
    name = await _lease_begin(ctx, p)
    patterns = [_pattern(path) for path in p.paths]
    held = await _held(ctx, p.repo, name)
    released = [h for h in held if not patterns or h.path in patterns]
    if not released:
        raise NotFound("no such lease held" if patterns else "no lease held")
    await ctx.log.append(name, LeaseReleased(paths=patterns, repo=p.repo))
    return LeaseRelease(released=released)


async def _held(ctx: Context, repo: str, name: str) -> list[Lease]:
    now = now_ts()
    rows = await ctx.read(leases.active_leases, repo, now)
    me = (ctx.device_id, name)
    return [lease_json(r, now) for r in rows if (r["device_id"], r["name"]) == me]


async def lease_list(ctx: Context, p: LeaseParams) -> list[Lease]:
    """Active leases (of ``repo``, or every repository when it is empty); ``all`` adds
    expired and released ones."""
    now = now_ts()
    if p.all:
        rows = await ctx.read(leases.all_leases, 1000)
        rows = [r for r in rows if not p.repo or r["repo"] == p.repo]
    else:
        rows = await ctx.read(leases.active_leases, p.repo or None, now)
    return [lease_json(r, now) for r in rows]


async def lease_check(ctx: Context, p: LeaseParams) -> LeaseCheck:
    """Whether paths (e.g. a commit's) are free of other agents' exclusive leases."""
    name = await _lease_begin(ctx, p)
    now = now_ts()
    conflicts = []
    for row in await _others(ctx, p.repo, name):
        if not row["exclusive"]:
            continue
        for path in p.paths:
            if leases.covers(row["pattern"], _pattern(path)):
                conflicts.append(
                    LeaseConflict(path=path, lease=lease_json(row, now),
                                  message=_conflict_text(path, row, wanted_exclusive=False))
                )  # fmt: skip
    return LeaseCheck(ok=not conflicts, conflicts=conflicts)


FEATURE = Feature(
    "leases",
    methods={
        "lease.acquire": lease_acquire,
        "lease.release": lease_release,
        "lease.list": lease_list,
        "lease.check": lease_check,
    },
)
