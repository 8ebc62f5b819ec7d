"""Pairing codes: ``invite --code | --words | --qr | --link`` on the inviting device, redeeming a
code on the joining one, and the device's LAN announcement (``docs/pairing.md``).

An invite of this kind is a nameplate held open on a relay's rendezvous (``relay.rendezvous``)
by a task of this daemon for the invite's lifetime, plus words drawn here: the code. Nothing of
it is stored: a daemon that stops ends its invites (the relay frees their nameplates). For
every joiner that claims the nameplate the task runs the host's side of ``pake``'s exchange:
only a joiner whose sealed hello opens (it knew the code) is shown, asked about when the
invite has ``confirm``, and sent the group's invite token and this device's key, sealed. A
wrong code ends that attempt with nothing sent; ``MAX_WRONG`` of them burn the invite.

Where a code meets: the group's relay when its link is one; otherwise (a broker link) the relay
given with ``--relay``, or the configured pairing relay (``[pairing] relay`` in config.toml or
``SWITCHBOARD_PAIRING_RELAY``). The joiner finds it in the link or QR code, from ``join
--relay URL|NAME``, from the same configuration, or on the LAN (``discover``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import msgspec

from switchboard import invites
from switchboard.config import load_pairing_settings
from switchboard.crypto import fingerprint
from switchboard.daemon.params import Seconds
from switchboard.daemon.registry import Feature
from switchboard.errors import InvalidInvite, NotFound, SwitchboardError, TransportError, UserError
from switchboard.events import now_ts
from switchboard.ids import device_id_from_public_key, short_id
from switchboard.links import rendezvous
from switchboard.links.rendezvous import Hello, RendezvousClient, Welcome
from switchboard.pake import HostSide
from switchboard.proto.pairing import PairBye, PairEnd, PairMsg, PairPeer, PairResult
from switchboard.store import projections
from switchboard.transports import options as link_options

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

logger = logging.getLogger("switchboard.daemon")

KINDS: Final = ("code", "words", "qr", "link")
DEFAULT_TTL: Final = 600.0
# Wrong codes an invite takes before it is burned: a guesser gets this many tries at one
# invite from all addresses together (the relay limits each address further).
MAX_WRONG: Final = 3
# How long a person has to answer ``invite --confirm``'s question.
CONFIRM_WAIT: Final = 120.0
# Ended invites kept for ``invite list``.
_KEEP_ENDED: Final = 20


class InviteParams(msgspec.Struct):
    kind: str = "code"
    ttl: Seconds = DEFAULT_TTL
    uses: int = 1
    confirm: bool = False
    relay: str | None = None
    group: str | None = None


class InviteIdParams(msgspec.Struct):
    id: str = ""


class PendingParams(msgspec.Struct):
    id: str | None = None
    wait: Seconds = 60.0


class AdmitParams(msgspec.Struct):
    id: str = ""
    attempt: int = 0
    admit: bool = False


@dataclass(eq=False)
class _Joiner:
    attempt: int
    name: str
    device: str
    fingerprint: str
    decision: asyncio.Future[bool]

    def shown(self, invite_id: str) -> dict[str, Any]:
        return {
            "id": invite_id, "attempt": self.attempt, "name": self.name,
            "device": short_id(self.device), "device_id": self.device,
            "fingerprint": self.fingerprint,
        }  # fmt: skip


@dataclass(eq=False)
class _Invite:
    id: str
    kind: str
    group: str
    relay: str
    code: invites.PairCode
    expires: float
    uses: int
    confirm: bool
    client: RendezvousClient
    wrong: int = 0
    state: str = "open"
    joined: list[dict[str, Any]] = field(default_factory=list)
    waiting: _Joiner | None = None
    task: asyncio.Task[None] | None = None

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "relay": self.relay, "state": self.state,
            "expires": _iso(self.expires), "uses_left": self.uses, "wrong": self.wrong,
            "confirm": self.confirm, "joined": list(self.joined),
        }  # fmt: skip


class Invites:
    """The daemon's open pairing invites (a ``ctx.part``)."""

    def __init__(self, ctx: Context) -> None:
        self.open: dict[str, _Invite] = {}
        self.ended: list[_Invite] = []
        self.changed = asyncio.Condition()
        self.attempts = 0
        self.announcement: Any = None

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


async def rendezvous_relay(ctx: Context, group: dict[str, Any], given: str | None) -> str:
    """Where the codes of ``group`` meet (module docstring)."""
    if given:
        return await resolve_relay(given)
    if str(group["relay_url"]).startswith(("ws://", "wss://")):
        return str(group["relay_url"])
    configured, _ = load_pairing_settings(ctx.settings.home)
    if configured:
        return configured
    raise UserError(
        "this group's link is a broker: give --relay URL of a relay where the code can meet "
        "(or set [pairing] relay in config.toml)"
    )


async def resolve_relay(given: str) -> str:
    """A relay URL as given, or the URL of the relay announced on the LAN by that name or id."""
    if given.startswith(("ws://", "wss://")):
        return given
    from switchboard.transports import mdns  # noqa: PLC0415 - only when discovery is used

    relays = await mdns.browse(kind="relay")
    chosen = [r for r in relays if given.lower() in (r.name.lower(), r.id.lower()) and r.url]
    if len(chosen) != 1:
        seen = ", ".join(f"{r.name} ({r.id})" for r in relays) or "none"
        raise NotFound(f"no single relay named {given!r} announced on the LAN (seen: {seen})")
    return chosen[0].url


async def render_invite(ctx: Context, group_id: str) -> str:
    """The group's invite token (its secret included)."""
    group = await ctx.read(projections.get_group, group_id)
    peer = ctx.links.get(group_id)
    relay_key = group["relay_key"] or (peer.relay_key if peer else None)
    options = link_options.invite_options(group.get("link_options"))
    secret, history = group["secret"], tuple[bytes, ...]()
    if peer is not None:  # the current key, and those before it (after ``device forget``)
        *older, current = peer.keys.known_secrets()
        secret, history = current, tuple(older)
    return invites.render(
        invites.Invite(
            group_id, group["name"], secret, group["relay_url"], relay_key, options, history
        )
    )


async def invite_create(ctx: Context, p: InviteParams) -> dict[str, Any]:
    """Open a pairing invite: a nameplate on a relay and words; return what to pass on."""
    if p.kind not in KINDS:
        raise UserError(f"unknown invite kind {p.kind!r} (code, words, qr or link)")
    if not 1 <= p.uses <= 100:
        raise UserError("--uses must be between 1 and 100")
    if not 1 <= p.ttl <= 24 * 3600:
        raise UserError("--ttl must be between 1 s and 24 h")
    groups = await ctx.read(projections.list_groups)
    chosen = [g for g in groups if p.group in (None, g["group_id"], g["name"])]
    if not chosen:
        raise NotFound("this device is in no group: run 'switchboard group create' first")
    group = chosen[0]
    relay = await rendezvous_relay(ctx, group, p.relay)
    client, nameplate, ttl = await rendezvous.open_nameplate(relay, p.ttl)
    count = invites.PHRASE_WORDS if p.kind == "words" else invites.CODE_WORDS
    code = invites.new_code(nameplate, [secrets.randbelow(256) for _ in range(count)])
    state = ctx.part(Invites)
    invite = _Invite(
        id=str(nameplate), kind=p.kind, group=group["group_id"], relay=relay, code=code,
        expires=time.time() + ttl, uses=p.uses, confirm=p.confirm, client=client,
    )  # fmt: skip
    state.open[invite.id] = invite
    invite.task = asyncio.create_task(_host(ctx, invite), name=f"switchboard[invite {invite.id}]")
    text = {"code": code.code, "words": code.phrase}.get(p.kind) or code.link(relay)
    logger.info("invite %s (%s) open on %s for %.0f s", invite.id, p.kind, relay, ttl)
    return {**invite.row(), "invite": text, "code": code.code}


async def invite_list(ctx: Context, p: InviteIdParams) -> list[dict[str, Any]]:
    """Open invites first, then the last ended ones."""
    state = ctx.part(Invites)
    return [i.row() for i in (*state.open.values(), *reversed(state.ended))]


async def invite_revoke(ctx: Context, p: InviteIdParams) -> dict[str, Any]:
    """End an open invite at once: its nameplate is freed, its code works no more."""
    state = ctx.part(Invites)
    invite = state.open.get(p.id)
    if invite is None:
        raise NotFound(f"no open invite {p.id!r} (see 'switchboard invite list')")
    invite.state = "revoked"
    if invite.task is not None:
        invite.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await invite.task
    return invite.row()


async def invite_pending(ctx: Context, p: PendingParams) -> dict[str, Any] | None:
    """Wait (up to ``wait`` s) for a joiner awaiting admission; ``None`` if none came, or
    ``{"id", "ended": true}`` once the invite chosen has ended."""
    state = ctx.part(Invites)
    deadline = time.monotonic() + p.wait
    async with state.changed:
        while True:
            for invite in state.open.values():
                if p.id in (None, invite.id) and invite.waiting is not None:
                    return invite.waiting.shown(invite.id)
            if p.id is not None and p.id not in state.open:
                return {"id": p.id, "ended": True}
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.changed.wait(), left)


async def invite_admit(ctx: Context, p: AdmitParams) -> dict[str, Any]:
    """Admit or refuse the joiner an invite with ``confirm`` is holding."""
    invite = ctx.part(Invites).open.get(p.id)
    joiner = invite.waiting if invite is not None else None
    if joiner is None or joiner.attempt != p.attempt or joiner.decision.done():
        raise NotFound(f"no joiner waiting on invite {p.id!r} (it left or was answered)")
    joiner.decision.set_result(p.admit)
    return {"id": p.id, "attempt": p.attempt, "admitted": p.admit}


# -- the host's side of the exchange -----------------------------------------------------------


async def _host(ctx: Context, invite: _Invite) -> None:
    state = ctx.part(Invites)
    client, side = invite.client, None
    try:
        async with asyncio.timeout_at(_loop_deadline(invite.expires)):
            while invite.uses > 0 and invite.wrong < MAX_WRONG:
                frame = await client.receive()
                if isinstance(frame, PairPeer):
                    side = HostSide(invite.code.code) if frame.present else None
                elif isinstance(frame, PairMsg) and side is not None:
                    side = await _step(ctx, invite, side, frame.body)
                elif isinstance(frame, PairBye):
                    invite.state = "closed by the relay"
                    break
        if invite.state == "open":
            invite.state = "used" if invite.uses == 0 else "burned (too many wrong codes)"
    except TimeoutError:
        invite.state = "expired"
    except (TransportError, SwitchboardError) as exc:
        invite.state = f"ended: {exc}"
    finally:
        await client.aclose()
        state.open.pop(invite.id, None)
        state.ended = [*state.ended, invite][-_KEEP_ENDED:]
        if invite.waiting is not None and not invite.waiting.decision.done():
            invite.waiting.decision.cancel()
        invite.waiting = None
        logger.info("invite %s %s", invite.id, invite.state)
        await state.notify()


def _loop_deadline(expires: float) -> float:
    return asyncio.get_running_loop().time() + max(expires - time.time(), 0.0)


async def _step(ctx: Context, invite: _Invite, side: HostSide, body: bytes) -> HostSide | None:
    """One message of a joiner's attempt; returns the attempt's state, ``None`` once over."""
    client = invite.client
    if not side.answered:
        try:
            await client.send(PairMsg(side.answer(body)))
        except InvalidInvite:
            await client.send(PairResult(int(PairEnd.WRONG_CODE)))
            return None
        return side
    try:
        hello = msgspec.msgpack.decode(side.open_hello(body), type=Hello)
        joiner_id = device_id_from_public_key(hello.key)
    except (InvalidInvite, msgspec.DecodeError, ValueError):
        invite.wrong += 1
        logger.info("invite %s: wrong code (%d of %d)", invite.id, invite.wrong, MAX_WRONG)
        await client.send(PairResult(int(PairEnd.WRONG_CODE)))
        return None
    state = ctx.part(Invites)
    state.attempts += 1
    loop = asyncio.get_running_loop()
    joiner = _Joiner(state.attempts, hello.name[:64], joiner_id, fingerprint(hello.key),
                     loop.create_future())  # fmt: skip
    logger.info("invite %s: %s (%s, key %s) is joining", invite.id, joiner.name,
                short_id(joiner_id), joiner.fingerprint)  # fmt: skip
    if invite.confirm and not await _ask(invite, joiner, state):
        await client.send(PairResult(int(PairEnd.REFUSED)))
        return None
    group = await ctx.read(projections.get_group, invite.group)
    if group is None:
        raise NotFound("the group of this invite is gone")
    name = await ctx.read(projections.get_meta, "device_name") or ""
    welcome = Welcome(await render_invite(ctx, invite.group), name, ctx.public_key)
    await client.send(PairMsg(side.welcome(msgspec.msgpack.encode(welcome))))
    await client.send(PairResult(int(PairEnd.DONE)))
    invite.uses -= 1
    invite.joined.append({**joiner.shown(invite.id), "ts": now_ts()})
    return None


async def _ask(invite: _Invite, joiner: _Joiner, state: Invites) -> bool:
    """Hold the joiner until the person answers (``invite.admit``), or it leaves."""
    invite.waiting = joiner
    await state.notify()
    gone = asyncio.ensure_future(invite.client.receive())
    try:
        waits: list[asyncio.Future[Any]] = [joiner.decision, gone]
        done, _ = await asyncio.wait(waits, timeout=CONFIRM_WAIT, return_when="FIRST_COMPLETED")
        if joiner.decision in done and not joiner.decision.cancelled():
            return joiner.decision.result()
        return False  # no answer in time, or the joiner left (PairPeer(False)) first
    finally:
        gone.cancel()
        invite.waiting = None
        await state.notify()


# -- the joiner's side ---------------------------------------------------------------------------


async def redeem(ctx: Context, code: invites.PairCode, relay: str | None) -> dict[str, Any]:
    """Run the joiner's exchange for ``code``; return ``{"invite": token, "inviter": {...}}``."""
    url = code.relay or (await resolve_relay(relay) if relay else None)
    if url is None:
        url, _ = load_pairing_settings(ctx.settings.home)
    if url is None:
        url = await _discovered_relay()
    name = await ctx.read(projections.get_meta, "device_name") or ""
    welcome = await rendezvous.redeem(url, code.code, code.nameplate, Hello(name, ctx.public_key))
    inviter = device_id_from_public_key(welcome.key)
    pinned = {"name": welcome.name[:64], "device": short_id(inviter), "device_id": inviter,
              "fingerprint": fingerprint(welcome.key)}  # fmt: skip
    await ctx.write(lambda conn: projections.set_meta(conn, "paired_with", welcome.key.hex()))
    return {"invite": welcome.invite, "inviter": pinned, "relay": url}


async def _discovered_relay() -> str:
    from switchboard.transports import mdns  # noqa: PLC0415 - only when discovery is used

    relays = [r for r in await mdns.browse(kind="relay") if r.url]
    if len(relays) != 1:
        seen = ", ".join(f"{r.name} ({r.id}) {r.url}" for r in relays) or "none announced"
        raise UserError(f"which relay does this code meet on? give --relay URL (LAN: {seen})")
    return relays[0].url


# -- the device's LAN announcement ---------------------------------------------------------------


def _start(ctx: Context) -> None:
    _, announce = load_pairing_settings(ctx.settings.home)
    if announce:
        asyncio.get_running_loop().create_task(_announce(ctx), name="switchboard[announce]")


async def _announce(ctx: Context) -> None:
    from switchboard.transports import mdns  # noqa: PLC0415 - only when announcing

    state = ctx.part(Invites)
    while True:  # until the name announced is the name (``init --name`` may race us)
        name = await ctx.read(projections.get_meta, "device_name") or ctx.short
        try:
            made = await mdns.announce("device", name, ctx.short, fingerprint(ctx.public_key))
        except TransportError as exc:
            logger.warning("cannot announce this device on the LAN: %s", exc)
            return
        if await ctx.read(projections.get_meta, "device_name") in (name, None):
            state.announcement = made
            return
        await made.aclose()


async def reannounce(ctx: Context) -> None:
    """Announce again (the device's name changed), if the device announces itself."""
    state = ctx.part(Invites)
    if state.announcement is not None:
        old, state.announcement = state.announcement, None
        await old.aclose()
        await _announce(ctx)


async def _stop(ctx: Context) -> None:
    state = ctx.part(Invites)
    for invite in list(state.open.values()):
        if invite.task is not None:
            invite.task.cancel()
    if state.announcement is not None:
        await state.announcement.aclose()


FEATURE = Feature(
    "pairing",
    methods={
        "invite.create": invite_create,
        "invite.list": invite_list,
        "invite.revoke": invite_revoke,
        "invite.pending": invite_pending,
        "invite.admit": invite_admit,
    },
    start=_start,
    stop=_stop,
)
