"""This device: ``ping``, ``init`` (name it), ``status``, ``devices`` and ``shutdown``."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import msgspec

from switchboard.crypto import fingerprint
from switchboard.daemon import pairing
from switchboard.daemon.agents import AgentsParams, listed_agents
from switchboard.daemon.clocks import clocks_of
from switchboard.daemon.groups import group_status
from switchboard.daemon.params import AgentParams, NoParams
from switchboard.daemon.registry import Feature
from switchboard.daemon.shapes import DaemonInfo, Device, GroupDevice, Status
from switchboard.errors import UserError
from switchboard.events import now_ts
from switchboard.ids import device_id_from_public_key
from switchboard.store import projections

if TYPE_CHECKING:
    from switchboard.daemon.context import Context


class InitParams(msgspec.Struct):
    name: str | None = None


async def ping(ctx: Context, p: AgentParams) -> DaemonInfo:
    """Answer with the daemon's pid and version.

    ``agent`` is accepted and ignored: a surface acting for an agent (the MCP server) names it
    on every call, ``ping`` too.
    """
    return _daemon(ctx)


async def init(ctx: Context, p: InitParams) -> Device:
    """Name this device (optional) and return its ids."""
    if p.name:
        name = p.name.strip()[:64]
        if not name:
            raise UserError("device name is empty")

        def write(conn: Any) -> None:
            projections.set_meta(conn, "device_name", name)
            projections.ensure_device(conn, ctx.device_id, name, ctx.public_key.hex(), now_ts())

        await ctx.write(write)
        await pairing.reannounce(ctx)  # the LAN sees the new name
    return await _device(ctx)


async def status(ctx: Context, p: NoParams) -> Status:
    """The device, the daemon, each group's link, and the agents."""
    from switchboard.daemon.files import transfers_of  # noqa: PLC0415 - files imports messages

    groups = await ctx.read(projections.list_groups)
    transfers, counters = transfers_of(ctx)
    return Status(
        device=await _device(ctx),
        daemon=_daemon(ctx),
        groups=[await group_status(ctx, group) for group in groups],
        agents=await listed_agents(ctx, AgentsParams()),
        clock=clocks_of(ctx).report(await ctx.read(projections.list_devices), time.time()),
        transfers=transfers,
        files=counters,
    )


async def devices(ctx: Context, p: NoParams) -> list[GroupDevice]:
    """Every device of the group: name, ids, key fingerprint, presence and link."""
    rows = await ctx.read(projections.list_devices)
    urls = [link.url for link in ctx.links.values()]
    found = []
    for row in rows:
        if row.get("forgotten") is not None:
            continue  # removed by ``device forget``
        this = row["device_id"] == ctx.device_id
        key = bytes.fromhex(row["public_key"]) if row["public_key"] else b""
        online = this or bool(row["online"])
        found.append(
            GroupDevice(
                id=row["device_id"],
                short=row["short"],
                name=row["name"],
                fingerprint=fingerprint(key) if len(key) == 32 else "",
                key_ok=len(key) == 32 and device_id_from_public_key(key) == row["device_id"],
                this=this,
                online=online,
                last_seen=now_ts() if this else row["last_seen"],
                link="this device" if this else (urls[0] if urls and online else None),
            )
        )
    return found


async def shutdown(ctx: Context, p: NoParams) -> dict[str, Any]:
    """Stop the daemon after answering."""
    asyncio.get_running_loop().call_later(0.05, ctx.shutdown)
    return {"stopping": True}


async def _device(ctx: Context) -> Device:
    name = await ctx.read(projections.get_meta, "device_name")
    return Device(id=ctx.device_id, short=ctx.short, name=name or "")


def _daemon(ctx: Context) -> DaemonInfo:
    return msgspec.convert(ctx.status_of_daemon(), DaemonInfo)


FEATURE = Feature(
    "device",
    methods={
        "ping": ping,
        "init": init,
        "status": status,
        "devices": devices,
        "shutdown": shutdown,
    },
)
