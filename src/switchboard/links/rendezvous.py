"""The devices' side of a relay's rendezvous (``relay.rendezvous``): open a nameplate, or redeem
a pairing code through one. The cryptography is ``pake``'s; this module carries its messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final, TypeVar

import msgspec

from switchboard import transports
from switchboard.errors import InvalidInvite, ProtocolError, Rejected, TransportError
from switchboard.pake import JoinSide
from switchboard.proto.pairing import (
    MAX_PAIR_FRAME,
    PAIRING_VERSION,
    AnyPairFrame,
    PairBye,
    PairClaim,
    PairClaimed,
    PairEnd,
    PairFrame,
    PairMsg,
    PairOpen,
    PairOpened,
    decode_pair,
    encode_pair,
)
from switchboard.transports.base import Transport

_F = TypeVar("_F", bound=PairFrame)

CONNECT_TIMEOUT: Final = 10.0
# How long a joiner waits for the host's welcome: a person may be asked first (--confirm).
DEFAULT_WELCOME_WAIT: Final = 150.0

_ENDINGS: Final = {
    PairEnd.WRONG_CODE: "wrong pairing code (the inviting device counts wrong codes and "
    "closes the invite after a few)",
    PairEnd.REFUSED: "the inviting device refused this device",
    PairEnd.UNKNOWN: "no such pairing code on this relay: it expired, was used up or revoked, "
    "or is mistyped",
    PairEnd.BUSY: "another device is using this code right now: try again in a moment",
    PairEnd.RATE_LIMITED: "too many wrong pairing codes from this address: wait a minute",
    PairEnd.FULL: "the relay has no room for another pairing code now",
    PairEnd.GONE: "the inviting device went away (its invite ended or its daemon stopped)",
    PairEnd.EXPIRED: "the pairing code expired",
}


class Hello(msgspec.Struct, frozen=True):
    """What a joiner tells the host, sealed: its name and device key."""

    name: str
    key: bytes


class Welcome(msgspec.Struct, frozen=True):
    """What the host gives a proven joiner, sealed: the invite and the host's device key."""

    invite: str
    name: str
    key: bytes


def ended(bye: PairBye) -> InvalidInvite:
    """The error a rendezvous's end stands for."""
    try:
        text = _ENDINGS[PairEnd(bye.code)]
    except (ValueError, KeyError):
        text = f"pairing failed ({bye.reason or bye.code})"
    return InvalidInvite(text)


class RendezvousClient:
    """One rendezvous connection to a relay."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    @classmethod
    async def connect(cls, url: str) -> RendezvousClient:
        """Connect to the relay at ``url``."""
        if not url.startswith(("ws://", "wss://")):
            raise InvalidInvite(f"pairing codes meet on a relay (ws:// or wss://), not {url}")
        transport = await transports.connect(
            url, timeout=CONNECT_TIMEOUT, max_frame_size=MAX_PAIR_FRAME
        )
        return cls(transport)

    async def send(self, frame: PairFrame) -> None:
        await self.transport.send(encode_pair(frame))

    async def receive(self, timeout: float | None = None) -> AnyPairFrame:
        """The next frame (``TimeoutError`` after ``timeout`` seconds)."""
        async with asyncio.timeout(timeout):
            return decode_pair(await self.transport.receive())

    async def aclose(self) -> None:
        with contextlib.suppress(TransportError):
            await self.transport.aclose()


async def open_nameplate(url: str, ttl: float) -> tuple[RendezvousClient, int, float]:
    """Open a nameplate on the relay at ``url``; return the connection, nameplate and ttl."""
    client = await RendezvousClient.connect(url)
    try:
        await client.send(PairOpen(PAIRING_VERSION, ttl))
        answer = await client.receive(CONNECT_TIMEOUT)
        if isinstance(answer, PairBye):
            raise Rejected(ended(answer).args[0], int(answer.code))
        if not isinstance(answer, PairOpened):
            raise InvalidInvite(f"the relay answered {type(answer).__name__} to pair_open")
    except BaseException:
        await client.aclose()
        raise
    return client, answer.nameplate, answer.ttl


async def redeem(
    url: str, code: str, nameplate: int, hello: Hello, *, wait: float = DEFAULT_WELCOME_WAIT
) -> Welcome:
    """Run the joiner's side of the exchange on the relay at ``url``; return the welcome.

    Raises:
        InvalidInvite: wrong, unknown, expired or refused code (the message says which).
        TransportError: the relay could not be reached.
    """
    return await redeem_on(await RendezvousClient.connect(url), code, nameplate, hello, wait=wait)


async def redeem_on(
    client: RendezvousClient,
    code: str,
    nameplate: int,
    hello: Hello,
    *,
    wait: float = DEFAULT_WELCOME_WAIT,
) -> Welcome:
    """``redeem`` over a connection already open (closed at the end)."""
    side = JoinSide(code)
    try:
        await client.send(PairClaim(PAIRING_VERSION, nameplate))
        async with asyncio.timeout(wait):
            await _expect(client, PairClaimed)
            await client.send(PairMsg(side.start()))
            spake = await _expect(client, PairMsg)
            sealed = side.hello(spake.body, msgspec.msgpack.encode(hello))
            await client.send(PairMsg(sealed))
            box = await _expect(client, PairMsg)
        welcome = msgspec.msgpack.decode(side.open_welcome(box.body), type=Welcome)
    except TimeoutError:
        raise InvalidInvite("the inviting device did not answer in time") from None
    except (msgspec.DecodeError, ProtocolError) as exc:
        raise InvalidInvite(f"pairing failed: {exc}") from None
    finally:
        await client.aclose()
    return welcome


async def _expect(client: RendezvousClient, kind: type[_F]) -> _F:
    try:
        frame = await client.receive()
    except TransportError:
        raise InvalidInvite("the relay closed the pairing connection") from None
    if isinstance(frame, PairBye):
        raise ended(frame)
    if not isinstance(frame, kind):
        raise InvalidInvite(f"pairing failed: unexpected {type(frame).__name__}")
    return frame
