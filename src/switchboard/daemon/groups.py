"""The local API's group and link methods: create, join, invite, and pause/resume/inspect links.

A mixin of ``daemon.handlers.Handlers``. One group per device for now: the log has no per-group
partition yet, so a second group is refused rather than leaking one group's events to another.
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any

import msgspec

from switchboard import ids, invites
from switchboard.crypto import new_group_secret
from switchboard.daemon.params import MAX_WAIT, AgentParams, Seconds, params_of
from switchboard.errors import AuthError, NotFound, Rejected, UserError
from switchboard.events import DeviceJoined, now_ts
from switchboard.links import base as links
from switchboard.store import projections

if TYPE_CHECKING:
    from switchboard.daemon.service import Daemon

# How long group create and join wait for the link's first connection.
LINK_WAIT = 10.0


# Meta key (plus the group id) of a link's lag and this device's newest seq when the link went
# off: ``link status`` then counts the events waiting to be pushed.
_HELD_KEY = "relay_held:"


class GroupParams(AgentParams):
    name: str | None = None
    relay: str | None = None
    group: str | None = None
    invite: str = ""
    on: bool = True
    options: dict[str, Any] | None = None  # broker login/TLS (links.base.LinkOptions)


class SyncParams(msgspec.Struct):
    group: str | None = None
    timeout: Seconds = LINK_WAIT


class GroupHandlers:
    """API methods ``group.create``, ``join``, ``invite`` and ``link.*``."""

    d: Daemon

    if TYPE_CHECKING:

        async def ensure_agent(self, agent: str) -> str: ...

    async def _group_status(self, group: dict[str, Any]) -> dict[str, Any]:
        peer = self.d.links.get(group["group_id"])
        link: dict[str, Any] = {"url": group["relay_url"], "enabled": bool(group["enabled"])}
        link["kind"] = links.kind_of(group["relay_url"])
        if peer is None:
            link.update(state="off", lag=await self._lag_while_off(group["group_id"]))
            link.update(last_push=None, last_error=None)
        else:
            link.update(
                state=peer.status.state,
                lag=peer.lag(),
                last_push=peer.status.last_push,
                last_error=peer.status.last_error,
                tampered=peer.status.tampered,
                protocol=peer.status.protocol or None,
            )
        return {"id": group["group_id"], "name": group["name"], "link": link}

    async def group_create(self, params: Any) -> dict[str, Any]:
        """Create a group on a relay; return it and its invite."""
        p = params_of(GroupParams, params)
        if not p.relay:
            raise UserError(
                "group create needs --relay URL (run 'switchboard relay serve' where every "
                "device can reach it)"
            )
        await self._one_group_only()
        options = links.options_from_params(p.options)
        group = {
            "group_id": ids.device_id_from_public_key(secrets.token_bytes(32)),
            "name": p.name or "default",
            "secret": new_group_secret(),
            "relay_url": await links.resolve_url(p.relay, options),
            "relay_key": None,
            "link_options": links.encode_options(options),
        }
        stored = await self._open_group(group, create=True)
        if p.agent:
            await self.ensure_agent(p.agent)
        return {
            "group": await self._group_status(stored),
            "invite": await self._invite(stored["group_id"]),
        }

    async def join(self, params: Any) -> dict[str, Any]:
        """Join a group from an invite."""
        p = params_of(GroupParams, params)
        invite = invites.parse(p.invite)
        existing = await self.d.read(projections.get_group, invite.group)
        if existing is not None:
            return {"group": await self._group_status(existing)}
        await self._one_group_only()
        options = links.decode_options(invite.link_options)
        options = options.merged(links.options_from_params(p.options))
        group = {
            "group_id": invite.group,
            "name": invite.name,
            "secret": invite.secret,
            "relay_url": invite.relay,
            "relay_key": invite.relay_key,
            "link_options": links.encode_options(options),
        }
        stored = await self._open_group(group, create=False)
        if p.agent:
            await self.ensure_agent(p.agent)
        return {"group": await self._group_status(stored)}

    async def _one_group_only(self) -> None:
        groups = await self.d.read(projections.list_groups)
        if groups:
            raise UserError(
                f"this device is already in group {groups[0]['name']!r}; one group per device "
                "for now (use another SWITCHBOARD_HOME for another group)"
            )

    async def _open_group(self, group: dict[str, Any], *, create: bool) -> dict[str, Any]:
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
            links.store_options(conn, group["group_id"], group.get("link_options"))

        await self.d.db.write(add)
        peer = self.d.start_link({**group, "enabled": 1}, create=create)
        failure = await peer.wait_established(LINK_WAIT)
        # A relay that refused us, or a group that never reached its relay, is not kept; a
        # joiner whose relay is merely unreachable keeps the group and its link retries.
        if failure is not None and (create or isinstance(failure, AuthError | Rejected)):
            await self.d.stop_link(group["group_id"])
            await self.d.db.write(lambda conn: projections.remove_group(conn, group["group_id"]))
            raise failure
        name = await self.d.read(projections.get_meta, "device_name")
        body = DeviceJoined(
            name=name or "", public_key=self.d.public_key.hex(), group=group["group_id"]
        )
        await self.d.log.append("", body)
        stored: dict[str, Any] = await self.d.read(projections.get_group, group["group_id"])
        return stored

    async def invite(self, params: Any) -> dict[str, Any]:
        """Return an invite for the group."""
        p = params_of(GroupParams, params)
        groups = await self.d.read(projections.list_groups)
        if not groups:
            raise NotFound("this device is in no group: run 'switchboard group create' first")
        chosen = [g for g in groups if p.group in (None, g["group_id"], g["name"])]
        if not chosen:
            raise NotFound(f"unknown group {p.group}")
        return {"invite": await self._invite(chosen[0]["group_id"])}

    async def _invite(self, group_id: str) -> str:
        group = await self.d.read(projections.get_group, group_id)
        peer = self.d.links.get(group_id)
        relay_key = group["relay_key"] or (peer.relay_key if peer else None)
        options = links.invite_options(group.get("link_options"))
        return invites.render(
            invites.Invite(
                group_id, group["name"], group["secret"], group["relay_url"], relay_key, options
            )
        )

    async def link_set(self, params: Any) -> list[dict[str, Any]]:
        """Pause or resume replication without forgetting the configuration."""
        p = params_of(GroupParams, params)
        for group in await self._groups(p.group):
            group_id: str = group["group_id"]

            def enable(conn: Any, group_id: str = group_id) -> None:
                projections.set_group_enabled(conn, group_id, p.on)

            await self.d.db.write(enable)
            if p.on and group["group_id"] not in self.d.links:
                self.d.start_link(group)
            elif not p.on:
                await self._remember_held(group_id)
                await self.d.stop_link(group_id)
        return await self.link_status(params)

    async def _remember_held(self, group_id: str) -> None:
        """Keep a link's lag and this device's newest seq as it goes off, so that its lag can
        still be told while it is off (``_lag_while_off``)."""
        peer = self.d.links.get(group_id)
        if peer is None:
            return
        seq = self.d.log.vector().get(self.d.device_id, 0)
        held = json.dumps({"lag": peer.lag(), "seq": seq})
        await self.d.db.write(lambda conn: projections.set_meta(conn, _HELD_KEY + group_id, held))

    async def _lag_while_off(self, group_id: str) -> int | None:
        """Events waiting to be pushed on a link that is off: its lag when it went off plus
        this device's events since (``None`` when it was never on in this home)."""
        held = await self.d.read(projections.get_meta, _HELD_KEY + group_id)
        if held is None:
            return None
        then = json.loads(held)
        since = self.d.log.vector().get(self.d.device_id, 0) - int(then["seq"])
        return int(then["lag"]) + max(since, 0)

    async def link_sync(self, params: Any) -> list[dict[str, Any]]:
        """Wait (up to ``timeout`` s) until every link is connected and its relay holds our log."""
        p = params_of(SyncParams, params)
        for group in await self._groups(p.group):
            peer = self.d.links.get(group["group_id"])
            if peer is not None:
                await peer.wait_synced(min(max(p.timeout, 0.0), MAX_WAIT))
        return await self.link_status({"group": p.group})

    async def link_status(self, params: Any) -> list[dict[str, Any]]:
        """Each group's link."""
        p = params_of(GroupParams, params)
        out = []
        for group in await self._groups(p.group):
            status = await self._group_status(group)
            out.append({"group": status["id"], "name": status["name"], **status["link"]})
        return out

    async def _groups(self, selector: str | None) -> list[dict[str, Any]]:
        groups = await self.d.read(projections.list_groups)
        chosen = [g for g in groups if selector in (None, g["group_id"], g["name"])]
        if selector is not None and not chosen:
            raise NotFound(f"unknown group {selector}")
        return chosen
