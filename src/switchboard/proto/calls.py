"""The vocabulary of calls between two devices: the messages sealed inside ``Direct`` frames,
and the events ``proto.channel.Channel`` reports.

Each message is a tagged, array-like msgspec Struct encoded as MessagePack, like the frames of
``proto.frames``; ``proto.channel`` says when each is sent (``docs/protocol.md`` §9). Every one
names its call by ``id``, which the caller chose; the same id travels in clear as the
``Direct`` frame's ``ref``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final

import msgspec
from msgspec import Meta

from switchboard.errors import RemoteProtocolError, SwitchboardError

# The largest body of a call, a reply or one chunk of a stream. A feature that moves more
# streams it in chunks; 256 KiB amortises the per-message cost (a signature, a seal, a broker
# round trip) and keeps a sealed message inside every link's payload limit.
MAX_BODY: Final = 256 * 1024
# The largest window a caller may ask for or grant, in chunks: bounds what one stream can
# make its responder hold for retransmission (64 x 256 KiB = 16 MiB at worst).
MAX_WINDOW: Final = 64

CallId = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Count = Annotated[int, Meta(ge=0, le=2**62)]
Kind = Annotated[str, Meta(min_length=1, max_length=64)]
Body = Annotated[bytes, Meta(max_length=MAX_BODY)]
Code = Annotated[str, Meta(min_length=1, max_length=64)]
Text = Annotated[str, Meta(max_length=1024)]
Window = Annotated[int, Meta(ge=1, le=MAX_WINDOW)]


class Message(msgspec.Struct, frozen=True, array_like=True, tag_field="t"):
    """Base of every call message."""


class Call(Message, frozen=True, tag="call"):
    """Caller: run ``kind`` with ``body``; with ``stream``, answer in chunks, ``window`` at a
    time. ``ts`` is the caller's wall clock, for the responder's replay window."""

    id: CallId
    kind: Kind
    body: Body
    stream: bool
    window: Window
    ts: float


class Reply(Message, frozen=True, tag="reply"):
    """Responder: the answer to a call that does not stream; ends the call."""

    id: CallId
    body: Body


class Chunk(Message, frozen=True, tag="chunk"):
    """Responder: chunk ``n`` (from 0) of a stream."""

    id: CallId
    n: Count
    data: Body


class End(Message, frozen=True, tag="end"):
    """Responder: the stream had ``count`` chunks, all sent."""

    id: CallId
    count: Count


class Credit(Message, frozen=True, tag="credit"):
    """Caller: I hold every chunk before ``next``; send those before ``limit``. With
    ``resend``, send again what you sent from ``next`` on (some was lost, or I heard nothing)."""

    id: CallId
    next: Count
    limit: Count
    resend: bool = False


class Progress(Message, frozen=True, tag="progress"):
    """Responder: I am still at it and have sent ``sent`` chunks (the answer to a repeated
    call or a ``resend`` credit when there is nothing to send again)."""

    id: CallId
    sent: Count


class Failure(Message, frozen=True, tag="failure"):
    """Responder: the call failed; ``code`` is an API error code, ``message`` says why."""

    id: CallId
    code: Code
    message: Text


class Cancel(Message, frozen=True, tag="cancel"):
    """Caller: I am done with the call (gave up, closed the stream, or hold all of it): stop
    and forget it."""

    id: CallId


AnyMessage = Call | Reply | Chunk | End | Credit | Progress | Failure | Cancel

_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(AnyMessage)


def encode_message(message: Message) -> bytes:
    """Encode a call message to bytes."""
    return _encoder.encode(message)


def decode_message(data: bytes) -> AnyMessage:
    """Decode one call message.

    Raises:
        RemoteProtocolError: ``data`` is not a valid message.
    """
    try:
        message: AnyMessage = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise RemoteProtocolError(f"malformed call message: {exc}") from exc
    except UnicodeDecodeError as exc:  # as proto.frames: some msgspec versions raise this
        raise RemoteProtocolError("malformed call message: invalid utf-8 in a string") from exc
    except RecursionError as exc:
        raise RemoteProtocolError("malformed call message: nested too deeply") from exc
    return message


def message_name(message: Message) -> str:
    """Return a message's tag, for logs."""
    tag = message.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


# -- what the channel reports ------------------------------------------------------------------


@dataclass(frozen=True)
class CallReceived:
    """Responder: run ``kind`` for ``peer``; answer with ``reply``/``fail``, or for a stream
    ``send_chunk`` (while ``can_send_chunk``) and ``end``."""

    peer: str
    id: int
    kind: str
    body: bytes
    stream: bool


@dataclass(frozen=True)
class CreditReceived:
    """Responder: the caller granted more chunks; ``can_send_chunk`` may be true again."""

    peer: str
    id: int


@dataclass(frozen=True)
class CallCancelled:
    """Responder: stop serving the call (the caller gave up, left, or went silent)."""

    peer: str
    id: int
    reason: str


@dataclass(frozen=True)
class ReplyReceived:
    """Caller: the answer to a call that does not stream."""

    peer: str
    id: int
    body: bytes


@dataclass(frozen=True)
class ChunkReceived:
    """Caller: the next chunk of a stream, in order; call ``consume`` once it is taken."""

    peer: str
    id: int
    data: bytes


@dataclass(frozen=True)
class StreamEnded:
    """Caller: every chunk of the stream arrived."""

    peer: str
    id: int


@dataclass(frozen=True)
class CallFailed:
    """Caller: the call failed; ``error`` says why (``RemoteError``, ``Unreachable``, ...)."""

    peer: str
    id: int
    error: SwitchboardError


@dataclass(frozen=True)
class MessageRejected:
    """A message from ``peer`` was malformed or broke the rules (report it; never raised)."""

    peer: str
    reason: str


ChannelEvent = (
    CallReceived
    | CreditReceived
    | CallCancelled
    | ReplyReceived
    | ChunkReceived
    | StreamEnded
    | CallFailed
    | MessageRejected
)


@dataclass(frozen=True)
class ChannelStatistics:
    """Counters of one channel."""

    calls_out: int  # calls made
    calls_in: int  # calls accepted
    resent: int  # messages sent again after a silence or a gap
    rejected: int  # messages rejected
    held_bytes: int  # responder: chunks sent, kept until acknowledged
    max_held_bytes: int  # the most ever held at once
    cached_bytes: int  # responder: finished answers kept for retries
