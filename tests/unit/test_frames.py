"""Wire frames: round trips, limits, and a decoder that only ever raises RemoteProtocolError."""

from __future__ import annotations

import contextlib

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from strategies import (
    CANONICAL,
    FRAME_STRATEGIES,
    FRAME_TYPES,
    any_frame,
    envelopes,
    tagged_garbage,
)

from switchboard.errors import ByeCode, FrameTooLarge, RemoteProtocolError
from switchboard.proto import frames as f


def test_frames_strategies_cover_every_frame_type() -> None:
    """Every member of AnyFrame has a strategy and a canonical instance, so no test misses one."""
    assert set(FRAME_STRATEGIES) == set(FRAME_TYPES) == set(CANONICAL)


@settings(max_examples=300)
@given(any_frame)
def test_frames_round_trip_every_type(frame: f.Frame) -> None:
    """Every frame decodes to an equal frame of the same type."""
    decoded = f.decode_frame(f.encode_frame(frame))
    assert type(decoded) is type(frame)
    assert decoded == frame


@given(envelopes)
def test_frames_envelope_round_trips_inside_batch(env: f.Envelope) -> None:
    """An envelope keeps origin, seq, nonce and box through a Batch."""
    (decoded,) = f.decode_frame(f.encode_frame(f.Batch([env]))).envelopes  # type: ignore[union-attr]
    assert decoded == env


def test_frames_encoding_is_tag_first_array() -> None:
    """A frame is a MessagePack array whose first element is its tag."""
    raw = msgspec.msgpack.decode(f.encode_frame(f.Ping(7)))
    assert raw == ["ping", 7]


@pytest.mark.parametrize("cls", FRAME_TYPES, ids=lambda cls: cls.__name__)
def test_frames_frame_name_is_tag(cls: type[f.Frame]) -> None:
    """frame_name returns the wire tag, which is the lower-case class name."""
    assert f.frame_name(CANONICAL[cls]) == cls.__name__.lower()


@settings(max_examples=500)
@given(st.binary(max_size=300))
@example(b"")
@example(b"\xc1")  # never used in MessagePack
@example(b"\x92\xa4ping" + b"\x91" * 100_000 + b"\x00")  # too deep to skip
@example(b"\x93\xa4ping\x01" + b"\x91" * 100_000 + b"\x00")  # deep trailing field
@example(b"\x92\xa5have\x80")  # invalid UTF-8 in the tag
@example(b"\x93\xa3bye\x01\xa1\x80")  # invalid UTF-8 in a field
def test_frames_decode_random_bytes_raises_only_remote_errors(data: bytes) -> None:
    """Random bytes decode to a frame or raise RemoteProtocolError, nothing else."""
    try:
        frame = f.decode_frame(data)
    except RemoteProtocolError as exc:
        assert exc.bye_code in (ByeCode.PROTOCOL_ERROR, ByeCode.FRAME_TOO_LARGE)
    else:
        assert isinstance(frame, FRAME_TYPES)


@settings(max_examples=500)
@given(tagged_garbage)
def test_frames_decode_tagged_garbage_raises_only_remote_errors(data: bytes) -> None:
    """Well-formed MessagePack with a real tag and wrong fields raises only RemoteProtocolError."""
    with contextlib.suppress(RemoteProtocolError):
        f.decode_frame(data)


@settings(max_examples=300)
@given(any_frame, st.data())
def test_frames_decode_mutated_frame_raises_only_remote_errors(
    frame: f.Frame, data: st.DataObject
) -> None:
    """A valid frame with bytes flipped, cut or appended raises only RemoteProtocolError."""
    raw = bytearray(f.encode_frame(frame))
    index = data.draw(st.integers(0, len(raw) - 1))
    mutation = data.draw(st.sampled_from(["flip", "cut", "append"]))
    if mutation == "flip":
        raw[index] ^= data.draw(st.integers(1, 255))
    elif mutation == "cut":
        del raw[index:]
    else:
        raw += data.draw(st.binary(min_size=1, max_size=8))
    with contextlib.suppress(RemoteProtocolError):
        f.decode_frame(bytes(raw))


def test_frames_decode_oversized_raises_frame_too_large() -> None:
    """A frame longer than max_frame_size is refused before decoding, with its size and limit."""
    data = f.encode_frame(f.Bye(1000, "x" * 100))
    with pytest.raises(FrameTooLarge) as info:
        f.decode_frame(data, max_frame_size=len(data) - 1)
    assert (info.value.size, info.value.limit) == (len(data), len(data) - 1)
    assert info.value.bye_code is ByeCode.FRAME_TOO_LARGE
    assert f.decode_frame(data, max_frame_size=len(data)) == f.Bye(1000, "x" * 100)


def test_frames_default_limit_is_one_mebibyte() -> None:
    """The default frame limit is 1 MiB and a batch's envelopes stay inside it."""
    assert f.DEFAULT_MAX_FRAME_SIZE == 2**20
    assert f.MAX_ENVELOPE_SIZE * 4 == f.DEFAULT_MAX_FRAME_SIZE


@pytest.mark.parametrize(
    "frame",
    [
        ["ping", -1],
        ["ping", 2**62 + 1],
        ["batch", [["origin", 0, b"n" * 12, b""]]],
        ["batch", [["origin", 1, b"n" * 11, b""]]],
        ["batch", [["", 1, b"n" * 12, b""]]],
        ["batch", [["o" * 65, 1, b"n" * 12, b""]]],
        ["batch", [["origin", 1, b"n" * 12, b"b" * (f.MAX_ENVELOPE_SIZE + 1)]]],
        ["hello", 1, "g", "d", b"n" * 15, b"k" * 32, b"d" * 32, False],
        ["hello", 1, "g", "d", b"n" * 16, b"k" * 31, b"d" * 32, False],
        ["hello", 1, "g", "d", b"n" * 16, b"k" * 32, b"d" * 31, False],
        ["hello", 1, "g", "d", b"n" * 16, b"k" * 32],
        ["proof", b"s" * 64],
        ["proof", b"s" * 64, b"t" * 63],
        ["challenge", b"n" * 16, "s", b"k" * 32, b"s" * 63],
        ["bye", 1000, "r" * 1025],
        ["have", {"o": -1}],
        ["ack", {"": 1}],
        ["welcome", "not a list"],
        ["nope", 1],
        "ping",
    ],
    ids=lambda frame: str(frame)[:40],
)
def test_frames_decode_refuses_values_outside_limits(frame: object) -> None:
    """Fields outside their declared bounds make the frame malformed."""
    with pytest.raises(RemoteProtocolError, match="malformed frame"):
        f.decode_frame(msgspec.msgpack.encode(frame))


def test_frames_decode_refuses_oversized_batch() -> None:
    """A Batch of more than MAX_BATCH_ENVELOPES envelopes is malformed."""
    env = ["o", 1, b"n" * 12, b""]
    data = msgspec.msgpack.encode(["batch", [env] * (f.MAX_BATCH_ENVELOPES + 1)])
    with pytest.raises(RemoteProtocolError, match="malformed frame"):
        f.decode_frame(data)


def test_frames_hello_create_defaults_to_false() -> None:
    """A Hello without its trailing create flag decodes with create False."""
    data = msgspec.msgpack.encode(["hello", 1, "g", "d", b"n" * 16, b"k" * 32, b"d" * 32])
    frame = f.decode_frame(data)
    assert isinstance(frame, f.Hello) and frame.create is False
