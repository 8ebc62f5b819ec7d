"""``device.ping``: the round trip to another device of the group over its link's directed
channel (``switchboard ping DEV``), and the ``ping`` request every device answers."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from switchboard.daemon.params import Seconds
from switchboard.daemon.registry import Feature
from switchboard.daemon.shapes import Pong
from switchboard.errors import InvalidAddress, NotFound, TransportTimeout, Unreachable, UserError
from switchboard.ids import parse_device_id
from switchboard.store import projections

if TYPE_CHECKING:
    import sqlite3

    from switchboard.daemon.context import Context

# What a ping carries there and back: a few bytes, so the round trip measures the link.
PAYLOAD = b"ping"
# Most round trips one device.ping makes.
MAX_COUNT = 100

Count = Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)]
Interval = Annotated[float, msgspec.Meta(ge=0, le=60)]


class PingParams(msgspec.Struct):
    device: str
    """The device: its short id (``BOXE``), its name, or its full id."""
    count: Count = 1
    """How many round trips, one after the other."""
    interval: Interval = 0.2
    """Seconds between two round trips."""
    timeout: Seconds = 5.0
    """Seconds each round trip may take."""


async def device_ping(ctx: Context, p: PingParams) -> Pong:
    """Call ``ping`` on a device and time the answer.

    Raises:
        NotFound: no device of that short id or name is known here.
        Unreachable: it is not connected to any link of this device.
        TransportTimeout: no answer within ``timeout``.
    """
    device = await ctx.read(_resolve, p.device)
    rtts: list[float] = []
    for n in range(p.count):
        if n:
            await asyncio.sleep(p.interval)
        started = time.perf_counter()  # uvloop's clock ticks in whole milliseconds
        try:
            answer = await ctx.call_device(device["device_id"], "ping", PAYLOAD, timeout=p.timeout)
        except Unreachable as exc:  # say which device as the user named it
            raise Unreachable(device["short"], exc.reason) from exc
        except TransportTimeout as exc:
            raise TransportTimeout(
                f"device {device['short']} did not answer the ping within {p.timeout:g} s"
            ) from exc
        rtts.append(round((time.perf_counter() - started) * 1000, 3))
        if answer != PAYLOAD:
            raise UserError(f"device {device['short']} answered the ping with something else")
    link = ctx.device_link(device["device_id"])
    return Pong(device=device["short"], id=device["device_id"], name=device["name"] or "",
                link=link.url if link is not None else "", rtt_ms=rtts, min_ms=min(rtts),
                avg_ms=round(sum(rtts) / len(rtts), 3), max_ms=max(rtts))  # fmt: skip


async def answer_ping(ctx: Context, sender: str, payload: bytes) -> bytes:
    """Answer another device's ping with what it sent."""
    return payload


def _resolve(conn: sqlite3.Connection, text: str) -> dict[str, Any]:
    wanted = text.strip()
    rows = projections.list_devices(conn)
    by_id = [row for row in rows if row["device_id"] == wanted.lower()]
    by_short = [row for row in rows if str(row["short"] or "").upper() == wanted.upper()]
    if by_id or by_short:
        return dict((by_id or by_short)[0])
    named = [row for row in rows if row["name"] == wanted]
    if len(named) > 1:
        shorts = ", ".join(row["short"] for row in named)
        raise UserError(f"{len(named)} devices are named {wanted!r} ({shorts}): use a short id")
    if named:
        return dict(named[0])
    try:  # a full device id not seen yet: its link may still reach it
        device_id = parse_device_id(wanted.lower())
    except InvalidAddress:
        raise NotFound(f"no device {wanted[:40]!r} is known here") from None
    return {"device_id": device_id, "short": device_id[:4].upper(), "name": ""}


FEATURE = Feature("ping", methods={"device.ping": device_ping}, requests={"ping": answer_ping})
