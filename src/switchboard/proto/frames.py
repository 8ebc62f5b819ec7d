"""The wire frames of the sync protocol, and their encoding.

Every frame is a tagged, array-like msgspec Struct encoded as MessagePack: the tag comes first,
then the fields in order. One class serves both directions. ``docs/protocol.md`` describes
when each frame may be sent.
"""

from __future__ import annotations

import enum
from typing import Annotated, Final

import msgspec
from msgspec import Meta

from switchboard.errors import FrameTooLarge, RemoteProtocolError

PROTOCOL_VERSION: Final = 1

# A frame carries at most one batch; 1 MiB keeps a batch of several hundred typical events
# while bounding what a peer can make us buffer before we have checked anything.
DEFAULT_MAX_FRAME_SIZE: Final = 1024 * 1024
# One sealed event. Messages are small; 256 KiB leaves room for long texts and file metadata
# and keeps any single envelope well inside one frame.
MAX_ENVELOPE_SIZE: Final = 256 * 1024
# Envelopes in one batch: bounds per-frame work for the receiver's single writer.
MAX_BATCH_ENVELOPES: Final = 2048
# One sealed directed payload (``proto.channel``): a call, a reply or a chunk of at most
# ``channel.MAX_BODY`` (256 KiB) plus its own framing. Inside one frame (1 MiB) with room to
# spare, and under nats-server's default ``max_payload`` (1 MB) and common MQTT limits.
MAX_DIRECT_BOX: Final = 256 * 1024 + 1024
# Origins in a version vector: a group larger than this is not one relay's job.
MAX_VECTOR_ORIGINS: Final = 100_000

Seq = Annotated[int, Meta(ge=1, le=2**62)]
SeqOrZero = Annotated[int, Meta(ge=0, le=2**62)]
DeviceId = Annotated[str, Meta(min_length=1, max_length=64)]
Nonce = Annotated[bytes, Meta(min_length=16, max_length=64)]
Key = Annotated[bytes, Meta(min_length=32, max_length=32)]
Signature = Annotated[bytes, Meta(min_length=64, max_length=64)]
Ref = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Text = Annotated[str, Meta(max_length=1024)]
Vector = Annotated[dict[DeviceId, SeqOrZero], Meta(max_length=MAX_VECTOR_ORIGINS)]


class Envelope(msgspec.Struct, frozen=True, array_like=True):
    """One sealed event: its header in clear, its body sealed (see ``crypto``)."""

    origin: DeviceId
    seq: Seq
    nonce: Annotated[bytes, Meta(min_length=12, max_length=12)]
    box: Annotated[bytes, Meta(max_length=MAX_ENVELOPE_SIZE)]


class Frame(msgspec.Struct, frozen=True, array_like=True, tag_field="t"):
    """Base of every frame."""


class Hello(Frame, frozen=True, tag="hello"):
    """Client opens: who it is, which group, a fresh nonce, and two public keys.

    ``group_key`` is the group's auth public key; ``device_key`` is the device's own Ed25519
    public key, from which ``device`` is derived (``ids.device_id_from_public_key``).
    ``create`` asks a relay to register the group (only the creating device sets it).
    """

    version: int
    group: DeviceId
    device: DeviceId
    nonce: Nonce
    group_key: Key
    device_key: Key
    create: bool = False


class Challenge(Frame, frozen=True, tag="challenge"):
    """Server answers: its nonce, its identity key, and its signature over the transcript."""

    nonce: Nonce
    server: DeviceId
    server_key: Key
    proof: Signature


class Proof(Frame, frozen=True, tag="proof"):
    """Client proves group membership and its device: two signatures over the transcript.

    ``proof`` is the group auth key's signature, ``device_proof`` the device key's.
    """

    proof: Signature
    device_proof: Signature


class Welcome(Frame, frozen=True, tag="welcome"):
    """Server accepts the client; ``online`` lists the group's other connected devices."""

    online: Annotated[list[DeviceId], Meta(max_length=MAX_VECTOR_ORIGINS)]


class Have(Frame, frozen=True, tag="have"):
    """The sender holds every event of each origin up to the given seq (and asks for the rest)."""

    vector: Vector


class Batch(Frame, frozen=True, tag="batch"):
    """Envelopes in per-origin order."""

    envelopes: Annotated[list[Envelope], Meta(max_length=MAX_BATCH_ENVELOPES)]


class Ack(Frame, frozen=True, tag="ack"):
    """The sender has durably stored every event of each origin up to the given seq."""

    vector: Vector


class Ping(Frame, frozen=True, tag="ping"):
    """Heartbeat; the peer answers with ``Pong`` carrying the same number."""

    n: SeqOrZero


class Pong(Frame, frozen=True, tag="pong"):
    """Answer to ``Ping``."""

    n: SeqOrZero


class Presence(Frame, frozen=True, tag="presence"):
    """Ephemeral signal from a relay: a device of the group connected or disconnected."""

    device: DeviceId
    online: bool


class Presences(Frame, frozen=True, tag="presences"):
    """From a relay: devices of the group that connected and that left, since the last word.

    One frame for a whole round of changes (``docs/protocol.md`` §1): devices connecting
    together cost each connection one frame, not one per device. A device is in at most one
    list; ``Presence`` says the same for one device.
    """

    online: Annotated[list[DeviceId], Meta(max_length=MAX_VECTOR_ORIGINS)]
    offline: Annotated[list[DeviceId], Meta(max_length=MAX_VECTOR_ORIGINS)]


class Bye(Frame, frozen=True, tag="bye"):
    """The sender closes the session, with a reason code and a short reason."""

    code: int
    reason: Text


class Direct(Frame, frozen=True, tag="direct"):
    """A sealed payload for one device of the group, never stored (``docs/protocol.md`` §9).

    ``ref`` names the call the payload belongs to, so an ``Undelivered`` answer can name it;
    ``sender_key`` is the sender's device key (the sender id is derived from it) and
    ``signature`` its signature over the header and the box (``crypto.GroupKeys.seal_direct``).
    """

    sender: DeviceId
    recipient: DeviceId
    ref: Ref
    sender_key: Key
    nonce: Annotated[bytes, Meta(min_length=12, max_length=12)]
    box: Annotated[bytes, Meta(max_length=MAX_DIRECT_BOX)]
    signature: Signature


class UndeliveredCode(enum.IntEnum):
    """Why a relay (or a broker link) could not deliver a ``Direct`` frame."""

    NOT_CONNECTED = 1  # the recipient is not connected to the group's link
    BUSY = 2  # the recipient's queue is full: the frame was dropped (a loss, retried above)
    FORGED = 3  # the frame's sender is not the device of the connection that sent it
    REKEYED = 4  # from the relay itself: it replaced the group's auth key (``Rekey``)
    REFUSED = 5  # from the relay itself: it did not (``reason`` says why)


class Rekey(msgspec.Struct, frozen=True, array_like=True):
    """A device asks its relay to replace the group's auth key (``device forget``).

    It travels as the box of a ``Direct`` frame addressed to the relay itself, in clear: it
    holds only public keys and device ids. ``key`` is the new group auth public key,
    ``members`` the devices that may still log in with a replaced key (to learn the new one
    from the log), ``forgotten`` the devices refused from now on, and ``proof`` the new key's
    signature of ``handshake.rekey_message`` (whoever asks holds the new key). The relay
    answers with ``Undelivered`` from itself: ``REKEYED`` or ``REFUSED``.
    """

    key: Key
    members: Annotated[list[DeviceId], Meta(max_length=MAX_VECTOR_ORIGINS)]
    forgotten: Annotated[list[DeviceId], Meta(max_length=MAX_VECTOR_ORIGINS)]
    proof: Signature


_rekey_decoder: Final = msgspec.msgpack.Decoder(Rekey)


def encode_rekey(rekey: Rekey) -> bytes:
    """Encode a ``Rekey`` request (the box of its ``Direct`` frame)."""
    return msgspec.msgpack.encode(rekey)


def decode_rekey(data: bytes) -> Rekey:
    """Decode a ``Rekey`` request.

    Raises:
        msgspec.DecodeError: it is not one.
    """
    return _rekey_decoder.decode(data)


class Undelivered(Frame, frozen=True, tag="undelivered"):
    """From a relay: the ``Direct`` frame for ``recipient`` with ``ref`` was not delivered."""

    recipient: DeviceId
    ref: Ref
    code: int
    reason: Text


AnyFrame = (
    Hello
    | Challenge
    | Proof
    | Welcome
    | Have
    | Batch
    | Ack
    | Ping
    | Pong
    | Presence
    | Presences
    | Bye
    | Direct
    | Undelivered
)

_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(AnyFrame)


def encode_frame(frame: Frame) -> bytes:
    """Encode a frame to bytes."""
    return _encoder.encode(frame)


def decode_frame(data: bytes, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> AnyFrame:
    """Decode one frame.

    Raises:
        FrameTooLarge: ``data`` is longer than ``max_frame_size``.
        RemoteProtocolError: ``data`` is not a valid frame.
    """
    if len(data) > max_frame_size:
        raise FrameTooLarge(len(data), max_frame_size)
    try:
        frame: AnyFrame = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        # msgspec's message names the field and the rule, never the payload.
        raise RemoteProtocolError(f"malformed frame: {exc}") from exc
    except UnicodeDecodeError as exc:
        # msgspec reports invalid UTF-8 in a string this way, not as a DecodeError.
        raise RemoteProtocolError("malformed frame: invalid utf-8 in a string") from exc
    except RecursionError as exc:
        # Trailing fields are skipped without a type, so a peer can nest them past the
        # interpreter's limit well inside max_frame_size; that is malformed input, not our bug.
        raise RemoteProtocolError("malformed frame: nested too deeply") from exc
    return frame


def frame_name(frame: Frame) -> str:
    """Return a frame's tag, for logs."""
    tag = frame.__struct_config__.tag
    assert isinstance(tag, str)
    return tag
