"""The local API's group and link methods: create, join, invite, and pause/resume/inspect links.

One group per device for now: the log has no per-group partition yet, so a second group is
refused rather than leaking one group's events to another. ``settle`` lets a daemon that has
just started catch up on its links before it answers a read.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import TYPE_CHECKING, Any

import msgspec

from switchboard import ids, invites
from switchboard.crypto import new_group_secret
from switchboard.daemon import pairing
from switchboard.daemon.agents import ensure_agent
from switchboard.daemon.params import MAX_WAIT, AgentParams, Seconds
from switchboard.daemon.registry import Feature
from switchboard.daemon.shapes import Group, GroupLink, LinkRow
from switchboard.errors import AuthError, NotFound, Rejected, UserError
from switchboard.events import DeviceJoined, now_ts
from switchboard.keyring import key_id
from switchboard.links import base as links
from switchboard.links.status import LinkState
from switchboard.store import keys as store_keys
from switchboard.store import projections
from switchboard.transports import options as link_options

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

# How long group create and join wait for the link's first connection.
LINK_WAIT = 10.0
# A read within this many seconds of the daemon's start first lets the links catch up (at most
# SETTLE_WAIT), so `inbox` right after a restart shows what arrived while we were down.
SETTLE_WINDOW = 15.0
SETTLE_WAIT = 3.0


# Meta key (plus the group id) of a link's lag and this device's newest seq when the link went
# off: ``link status`` then counts the events waiting to be pushed.
_HELD_KEY = "relay_held:"


class GroupParams(AgentParams):
    name: str | None = None
    relay: str | None = None
    group: str | None = None
    invite: str = ""
    on: bool = True
    options: dict[str, Any] | None = None  # broker login/TLS (transports.options.LinkOptions)


class SyncParams(msgspec.Struct):
    group: str | None = None
    timeout: Seconds = LINK_WAIT


async def settle(ctx: Context) -> None:
    """On a daemon that has just started, let its links catch up before answering a read."""
    if time.time() - ctx.started < SETTLE_WINDOW:
        for peer in list(ctx.links.values()):
            await peer.wait_caught_up(SETTLE_WAIT)


async def group_status(ctx: Context, group: dict[str, Any]) -> Group:
    """A group row (``projections.list_groups``) and the state of its link."""
    url, kind = group["relay_url"], links.kind_of(group["relay_url"])
    peer = ctx.links.get(group["group_id"])
    if peer is None:
        lag = await _lag_while_off(ctx, group["group_id"])
        link = GroupLink(
            url=url, enabled=bool(group["enabled"]), kind=kind, state=LinkState.OFF, lag=lag,
            last_push=None, last_error=None,
        )  # fmt: skip
    else:
        link = GroupLink(
            url=url, enabled=bool(group["enabled"]), kind=kind, state=peer.status.state,
            lag=peer.lag(), last_push=peer.status.last_push, last_error=peer.status.last_error,
            tampered=peer.status.tampered, forged=peer.status.forged,
            protocol=peer.status.protocol or None,
        )  # fmt: skip
    return Group(id=group["group_id"], name=group["name"], link=link)


async def group_create(ctx: Context, p: GroupParams) -> dict[str, Any]:
    """Create a group on a relay; return it and its invite."""
    if not p.relay:
        raise UserError(
            "group create needs --relay URL (run 'switchboard relay serve' where every "
            "device can reach it)"
        )
    await _one_group_only(ctx)
    options = link_options.options_from_params(p.options)
    group = {
        "group_id": ids.device_id_from_public_key(secrets.token_bytes(32)),
        "name": p.name or "default",
        "secret": new_group_secret(),
        "relay_url": await links.resolve_url(p.relay, options),
        "relay_key": None,
        "link_options": link_options.encode_options(options),
    }
    stored = await _open_group(ctx, group, create=True)
    if p.agent:
        await ensure_agent(ctx, p.agent)
    return {
        "group": await group_status(ctx, stored),
        "invite": await pairing.render_invite(ctx, stored["group_id"]),
    }


async def join(ctx: Context, p: GroupParams) -> dict[str, Any]:
    """Join a group from an invite: a token, or a pairing code, phrase or link."""
    code = invites.parse_pairing(p.invite)
    paired: dict[str, Any] = {}
    if code is not None:
        await _one_group_only(ctx)
        paired = await pairing.redeem(ctx, code, p.relay)
        token = paired.pop("invite")
    else:
        token = p.invite
    invite = invites.parse(token)
    existing = await ctx.read(projections.get_group, invite.group)
    if existing is not None:
        return {"group": await group_status(ctx, existing), **paired}
    await _one_group_only(ctx)
    options = link_options.decode_options(invite.link_options)
    options = options.merged(link_options.options_from_params(p.options))
    group = {
        "group_id": invite.group,
        "name": invite.name,
        "secret": invite.secret,
        "relay_url": invite.relay,
        "relay_key": invite.relay_key,
        "link_options": link_options.encode_options(options),
        "history": invite.history,
    }
    stored = await _open_group(ctx, group, create=False)
    if p.agent:
        await ensure_agent(ctx, p.agent)
    return {"group": await group_status(ctx, stored), **paired}


async def _one_group_only(ctx: Context) -> None:
    groups = await ctx.read(projections.list_groups)
    if groups:
        raise UserError(
            f"this device is already in group {groups[0]['name']!r}; one group per device "
            "for now (use another SWITCHBOARD_HOME for another group)"
        )


async def _open_group(ctx: Context, group: dict[str, Any], *, create: bool) -> dict[str, Any]:
    def add(conn: Any) -> None:
        projections.add_group(
            conn,
            group["group_id"],
            group["name"],
            group["secret"],
            group["relay_url"],
            group["relay_key"],
            now_ts(),
        )
        projections.set_group_link_options(conn, group["group_id"], group.get("link_options"))
        history = group.get("history", ())
        for number, old in enumerate(history):  # secrets before a rotation (keyring)
            store_keys.save_secret(conn, group["group_id"], key_id(old), old, root=number == 0)

    await ctx.write(add)
    peer = ctx.start_link({**group, "enabled": 1}, create=create)
    failure = await peer.wait_established(LINK_WAIT)
    # A relay that refused us, or a group that never reached its relay, is not kept; a
    # joiner whose relay is merely unreachable keeps the group and its link retries.
    if failure is not None and (create or isinstance(failure, AuthError | Rejected)):
        await ctx.stop_link(group["group_id"])
        await ctx.write(lambda conn: projections.remove_group(conn, group["group_id"]))
        raise failure
    name = await ctx.read(projections.get_meta, "device_name")
    body = DeviceJoined(name=name or "", public_key=ctx.public_key.hex(), group=group["group_id"])
    await ctx.log.append("", body)
    stored: dict[str, Any] = await ctx.read(projections.get_group, group["group_id"])
    return stored


async def invite(ctx: Context, p: GroupParams) -> dict[str, Any]:
    """Return an invite for the group."""
    groups = await ctx.read(projections.list_groups)
    if not groups:
        raise NotFound("this device is in no group: run 'switchboard group create' first")
    chosen = [g for g in groups if p.group in (None, g["group_id"], g["name"])]
    if not chosen:
        raise NotFound(f"unknown group {p.group}")
    return {"invite": await pairing.render_invite(ctx, chosen[0]["group_id"])}


async def link_set(ctx: Context, p: GroupParams) -> list[LinkRow]:
    """Pause or resume replication without forgetting the configuration."""
    for group in await _groups(ctx, p.group):
        group_id: str = group["group_id"]

        def enable(conn: Any, group_id: str = group_id) -> None:
            projections.set_group_enabled(conn, group_id, p.on)

        await ctx.write(enable)
        if p.on and group["group_id"] not in ctx.links:
            ctx.start_link(group)
        elif not p.on:
            await _remember_held(ctx, group_id)
            await ctx.stop_link(group_id)
    return await link_status(ctx, p)


async def _remember_held(ctx: Context, group_id: str) -> None:
    """Keep a link's lag and this device's newest seq as it goes off, so that its lag can
    still be told while it is off (``_lag_while_off``)."""
    peer = ctx.links.get(group_id)
    if peer is None:
        return
    seq = ctx.log.vector().get(ctx.device_id, 0)
    held = json.dumps({"lag": peer.lag(), "seq": seq})
    await ctx.write(lambda conn: projections.set_meta(conn, _HELD_KEY + group_id, held))


async def _lag_while_off(ctx: Context, group_id: str) -> int | None:
    """Events waiting to be pushed on a link that is off: its lag when it went off plus
    this device's events since (``None`` when it was never on in this home)."""
    held = await ctx.read(projections.get_meta, _HELD_KEY + group_id)
    if held is None:
        return None
    then = json.loads(held)
    since = ctx.log.vector().get(ctx.device_id, 0) - int(then["seq"])
    return int(then["lag"]) + max(since, 0)


async def link_sync(ctx: Context, p: SyncParams) -> list[LinkRow]:
    """Wait (up to ``timeout`` s) until every link is connected and its relay holds our log."""
    for group in await _groups(ctx, p.group):
        peer = ctx.links.get(group["group_id"])
        if peer is not None:
            await peer.wait_synced(min(max(p.timeout, 0.0), MAX_WAIT))
    return await link_status(ctx, GroupParams(group=p.group))


async def link_status(ctx: Context, p: GroupParams) -> list[LinkRow]:
    """Each group's link."""
    out = []
    for group in await _groups(ctx, p.group):
        status = await group_status(ctx, group)
        fields = {f: getattr(status.link, f) for f in status.link.__struct_fields__}
        out.append(LinkRow(group=status.id, name=status.name, **fields))
    return out


async def _groups(ctx: Context, selector: str | None) -> list[dict[str, Any]]:
    groups = await ctx.read(projections.list_groups)
    chosen = [g for g in groups if selector in (None, g["group_id"], g["name"])]
    if selector is not None and not chosen:
        raise NotFound(f"unknown group {selector}")
    return chosen


FEATURE = Feature(
    "groups",
    methods={
        "group.create": group_create,
        "join": join,
        "invite": invite,
        "link.set": link_set,
        "link.sync": link_sync,
        "link.status": link_status,
    },
)
