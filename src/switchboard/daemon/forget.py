"""``device forget DEV``: remove a device from the group and rotate the group's keys.

Theory of operation
-------------------
The forgetting device draws a new group secret, has the relay switch to its auth key
(``RelayLink.rekey``: from then on the forgotten device is refused, whatever key it holds,
and the devices kept may still log in with the old key to learn the new one), keeps the
secret (``store.keys.save_secret``) and writes ``group_rekeyed``: the new secret sealed to
each remaining device's key, the forgotten devices with their last seq kept. The event is
sealed under the key it replaces, so a device that was offline meanwhile opens it on return
with the key it has, and its link opens what follows (``keyring``). Everything sealed after
the rotation uses the new key; old events stay readable under the old ones.

On a received ``group_rekeyed`` the link has already taken the secret sealed to this device
(``keyring.learn_rotation``); ``_keep_secret`` stores it in the transaction that stores the
event, so a restart finds the same keys. ``_after_rotation`` then handles the two outcomes
that need more: this device was itself forgotten (its link stops), or a rotation this device
made lost to a concurrent one (the smallest key id wins) and the winner still keeps a device
it forgot (it forgets them again, from the winner).

Concurrent forgets through a relay are ordered by the relay: the second rotation of one key is
refused, and its device retries from the winner once it holds it (``_rotate_retrying``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import msgspec

from switchboard.crypto import GroupKeys, new_group_secret
from switchboard.daemon.params import MAX_WAIT, Seconds
from switchboard.daemon.registry import Feature, after_commit, in_txn
from switchboard.errors import NotFound, Rejected, SwitchboardError, UserError
from switchboard.events import ForgottenHeld, GroupRekeyed
from switchboard.keyring import Keyring, Rotation, key_id, seal_secret
from switchboard.store import keys as store_keys
from switchboard.store import projections

if TYPE_CHECKING:
    from switchboard.daemon.context import Context
    from switchboard.daemon.registry import Stored
    from switchboard.events import Body
    from switchboard.links.base import Link

log = logging.getLogger(__name__)

# How long a forget waits for the relay's answer, and for a concurrent rotation to arrive.
FORGET_WAIT: Final = 10.0
# Rotations tried when concurrent ones keep winning at the relay.
ATTEMPTS: Final = 4


class ForgetParams(msgspec.Struct):
    device: str = ""
    timeout: Seconds = FORGET_WAIT


@dataclass
class Rotations:
    """The feature's state: one rotation at a time, and follow-ups already scheduled."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def _rotations(ctx: Context) -> Rotations:
    return Rotations()


async def device_forget(ctx: Context, p: ForgetParams) -> dict[str, Any]:
    """Forget a device of the group: rotate the keys so it reads nothing written afterwards."""
    group, peer = await _group_and_link(ctx)
    rows = await ctx.read(projections.list_devices)
    target = _resolve(rows, p.device)
    if target["device_id"] == ctx.device_id:
        raise UserError("cannot forget this device itself; run 'device forget' on another one")
    timeout = min(max(p.timeout, 0.1), MAX_WAIT)
    already = target["device_id"] in peer.keys.forgotten
    if not already:
        async with ctx.part(_rotations).lock:
            await _rotate_retrying(ctx, group, peer, {target["device_id"]}, timeout)
    return {
        "device": target["device_id"],
        "short": target["short"],
        "name": target["name"] or "",
        "forgotten": True,
        "already": already,
        "key": peer.keys.current.hex(),
    }


async def _group_and_link(ctx: Context) -> tuple[dict[str, Any], Link]:
    groups = await ctx.read(projections.list_groups)
    if not groups:
        raise NotFound("this device is in no group")
    group = groups[0]
    peer = ctx.links.get(group["group_id"])
    if peer is None:
        raise UserError("the group's link is off: run 'switchboard link on' first")
    return group, peer


def _resolve(rows: list[dict[str, Any]], selector: str) -> dict[str, Any]:
    wanted = selector.strip()
    if not wanted:
        raise UserError("name the device to forget (its short id, name or id)")
    for column, value in (
        ("device_id", wanted.lower()),
        ("short", wanted.upper()),
        ("name", wanted),
    ):
        found = [r for r in rows if (r[column] or "") == value]
        if len(found) > 1:
            raise UserError(f"{wanted!r} names {len(found)} devices; use its short id")
        if found:
            return found[0]
    raise NotFound(f"no device {wanted!r} in the group (see 'switchboard devices')")


async def _rotate_retrying(
    ctx: Context, group: dict[str, Any], peer: Link, forget: set[str], timeout: float
) -> None:
    for attempt in range(ATTEMPTS):
        before = peer.keys.current
        try:
            await _rotate(ctx, group, peer, forget, timeout)
            return
        except Rejected:
            if attempt == ATTEMPTS - 1:
                raise
        # Another device rotated first: wait until its rotation reaches us, then go again.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while peer.keys.current == before and loop.time() < deadline:
            mark = ctx.changes
            await ctx.wait_advanced(deadline - loop.time(), since=mark)
        forget = {d for d in forget if d not in peer.keys.forgotten} or forget


async def _rotate(
    ctx: Context, group: dict[str, Any], peer: Link, forget: set[str], timeout: float
) -> None:
    ring = peer.keys
    previous = ring.current
    rows = await ctx.read(projections.list_devices)
    gone = forget | set(ring.forgotten)
    members = {
        row["device_id"]: bytes.fromhex(row["public_key"])
        for row in rows
        if row["device_id"] not in gone and row["public_key"]
    }
    members[ctx.device_id] = ctx.public_key
    held = ctx.log.vector()
    cutoffs = {device: held.get(device, 0) for device in sorted(forget)}
    secret = new_group_secret()
    kid = key_id(secret)
    new_keys = GroupKeys.derive(group["group_id"], secret)
    await peer.rekey(new_keys.auth, sorted(members), sorted(gone), timeout)
    body = GroupRekeyed(
        group=group["group_id"],
        key=kid.hex(),
        previous=previous.hex(),
        secrets={device: seal_secret(key, secret).hex() for device, key in members.items()},
        forgotten=cutoffs,
    )
    # The secret first: a crash before the event leaves an unused key, never a rotation
    # whose key this device lacks.
    await ctx.write(lambda conn: store_keys.save_secret(conn, group["group_id"], kid, secret))
    ring.add(secret)
    # The event and the switch in one step of the loop, where the link seals: every event of
    # ours after it goes under the new key, and those before it under the one it replaces
    # (``Keyring.sealing_key``), whenever the link gets to them. This blocks the loop for one
    # commit, once per rotation.
    stored = ctx.log.append_sync([("", body)])
    cut = tuple(cutoffs.items())
    ring.learn(Rotation(kid, previous, ctx.device_id, frozenset(members), cut, stored[0][1].seq))
    # Its reactions ran on the commit, before the keyring knew it: a rotation that already
    # lost to a concurrent one must still be followed up (``needs_rotation``).
    _after_rotation(ctx, stored)
    log.info("= group %s rekeyed, %d device(s) forgotten", group["group_id"][:12], len(forget))


def _keyring_of(ctx: Context, group: str) -> Keyring | None:
    peer = ctx.links.get(group)
    return peer.keys if peer is not None else None


def _keep_secret(
    ctx: Context, conn: sqlite3.Connection, stored: list[Stored]
) -> list[tuple[str, Body]]:
    """Store the secrets the link took from received rotations, with the events; say how far
    this device held a forgotten device's events before it learned (``forgotten_held``), so
    that every device keeps those too."""
    held: list[tuple[str, Body]] = []
    for _, event in stored:
        if event.type != "group_rekeyed":
            continue
        cut = event.data.get("forgotten")
        if isinstance(cut, dict) and isinstance(event.data.get("group"), str):
            beyond = store_keys.held_beyond(
                conn, {str(d): int(s) for d, s in cut.items() if isinstance(s, int)}
            )
            held += [
                ("", ForgottenHeld(group=event.data["group"], device=d, seq=s))
                for d, s in beyond.items()
            ]
        group, key = event.data.get("group"), event.data.get("key")
        if not isinstance(group, str) or not isinstance(key, str):
            continue
        ring = _keyring_of(ctx, group)
        try:
            kid = bytes.fromhex(key)
        except ValueError:
            continue
        secret = ring.secret(kid) if ring is not None else None
        if secret is not None:
            store_keys.save_secret(conn, group, kid, secret)
    return held


def _after_rotation(ctx: Context, stored: list[Stored]) -> None:
    for group in {str(e.data.get("group", "")) for _, e in stored}:
        ring = _keyring_of(ctx, group)
        if ring is None:
            continue
        state = ctx.part(_rotations)
        if ring.is_forgotten(ctx.device_id):
            log.warning("! this device was forgotten from group %s; its link stops", group[:12])
            _spawn(state, _leave(ctx, group))
        elif ring.needs_rotation(ctx.device_id):
            _spawn(state, _follow_up(ctx, group))


def _spawn(state: Rotations, coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    state.tasks.add(task)
    task.add_done_callback(state.tasks.discard)


async def _leave(ctx: Context, group: str) -> None:
    await ctx.write(lambda conn: projections.set_group_enabled(conn, group, False))
    await ctx.stop_link(group)


async def _follow_up(ctx: Context, group_id: str) -> None:
    # A rotation of ours lost to a concurrent one that keeps devices we forgot: forget them
    # again, from the winner.
    async with ctx.part(_rotations).lock:
        peer = ctx.links.get(group_id)
        group = await ctx.read(projections.get_group, group_id)
        if peer is None or group is None:
            return
        again = set(peer.keys.needs_rotation(ctx.device_id))
        if not again:
            return
        try:
            await _rotate_retrying(ctx, group, peer, again, FORGET_WAIT)
        except SwitchboardError as exc:
            log.warning("! follow-up rotation of group %s failed: %s", group_id[:12], exc)


FEATURE = Feature(
    "forget",
    methods={"device.forget": device_forget},
    reactions=[
        in_txn(_keep_secret, "group_rekeyed"),
        after_commit(_after_rotation, "group_rekeyed"),
    ],
)
