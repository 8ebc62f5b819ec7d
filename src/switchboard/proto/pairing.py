"""The rendezvous frames: how a pairing code's two devices meet on a relay (``docs/pairing.md``).

A connection to a relay whose first frame is one of these is a rendezvous connection, not a
sync session (``relay.rendezvous``). The inviting device (the *host*) opens a nameplate; a
joining device claims it; the relay passes ``PairMsg`` bodies between the two, which are the
SPAKE2 messages and sealed boxes of ``pake`` and mean nothing to it. The host tells the relay
how each attempt ended (``PairResult``), which is how the relay counts wrong codes per source
address without learning any code.
"""

from __future__ import annotations

import enum
from typing import Annotated, Final

import msgspec
from msgspec import Meta

from switchboard.errors import RemoteProtocolError

PAIRING_VERSION: Final = 1
# Rendezvous frames are small: SPAKE2 messages (33 bytes) and sealed invites (a few hundred).
MAX_PAIR_FRAME: Final = 20 * 1024
# The longest a nameplate may stay open, whatever the host asks.
MAX_PAIR_TTL: Final = 24 * 3600.0

Nameplate = Annotated[int, Meta(ge=1, le=256)]
Body = Annotated[bytes, Meta(max_length=MAX_PAIR_FRAME - 64)]
Reason = Annotated[str, Meta(max_length=256)]


class PairEnd(enum.IntEnum):
    """Why a rendezvous ended (``PairBye.code``)."""

    DONE = 1
    WRONG_CODE = 2
    REFUSED = 3  # the host's person said no (``invite --confirm``)
    UNKNOWN = 4  # no such nameplate: expired, used, revoked or never opened
    BUSY = 5  # another device is trying this nameplate now
    RATE_LIMITED = 6
    FULL = 7  # the relay has no nameplate left, or this address holds too many
    GONE = 8  # the host went away
    EXPIRED = 9
    PROTOCOL = 10


class PairFrame(msgspec.Struct, frozen=True, array_like=True, tag_field="t"):
    """Base of every rendezvous frame."""


class PairOpen(PairFrame, frozen=True, tag="pair_open"):
    """Host -> relay: allocate a nameplate for ``ttl`` seconds."""

    version: int
    ttl: Annotated[float, Meta(gt=0, le=MAX_PAIR_TTL)]


class PairOpened(PairFrame, frozen=True, tag="pair_opened"):
    """Relay -> host: the nameplate, open until ``ttl`` seconds from now."""

    nameplate: Nameplate
    ttl: float


class PairClaim(PairFrame, frozen=True, tag="pair_claim"):
    """Joiner -> relay: connect me to the host of this nameplate."""

    version: int
    nameplate: Nameplate


class PairClaimed(PairFrame, frozen=True, tag="pair_claimed"):
    """Relay -> joiner: the host is there; exchange messages."""


class PairPeer(PairFrame, frozen=True, tag="pair_peer"):
    """Relay -> host: a joiner arrived (``present``) or left, with the address it came from."""

    present: bool
    source: Reason = ""


class PairMsg(PairFrame, frozen=True, tag="pair_msg"):
    """Either way: one message of the exchange, passed on as it is."""

    body: Body


class PairResult(PairFrame, frozen=True, tag="pair_result"):
    """Host -> relay: how the current joiner's attempt ended; the relay then closes it."""

    code: int


class PairBye(PairFrame, frozen=True, tag="pair_bye"):
    """Relay -> either side: the rendezvous ends, and why."""

    code: int
    reason: Reason = ""


AnyPairFrame = PairOpen | PairOpened | PairClaim | PairClaimed | PairPeer | PairMsg
AnyPairFrame |= PairResult | PairBye
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AnyPairFrame)
_TAGS: Final = tuple(
    f"pair_{name}".encode()
    for name in ("open", "opened", "claim", "claimed", "peer", "msg", "result", "bye")
)


def encode_pair(frame: PairFrame) -> bytes:
    """Encode a rendezvous frame."""
    return _encoder.encode(frame)


def decode_pair(data: bytes) -> AnyPairFrame:
    """Decode a rendezvous frame.

    Raises:
        RemoteProtocolError: not a valid rendezvous frame, or too large.
    """
    if len(data) > MAX_PAIR_FRAME:
        raise RemoteProtocolError(f"rendezvous frame of {len(data)} bytes is too large")
    try:
        frame: AnyPairFrame = _decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise RemoteProtocolError(f"malformed rendezvous frame: {exc}") from exc
    return frame


def is_pairing(data: bytes) -> bool:
    """Return whether a connection's first frame opens a rendezvous (its tag is ours)."""
    # A MessagePack array whose first item is a short string: fixarray, fixstr header, tag.
    if len(data) < 3 or not 0x90 <= data[0] <= 0x9F or not 0xA0 <= data[1] <= 0xBF:
        return False
    size = data[1] - 0xA0
    return data[2 : 2 + size] in _TAGS
