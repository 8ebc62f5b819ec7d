"""Framer: length-prefixed frames over a byte stream, fuzzed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.errors import FrameTooLarge, RemoteProtocolError
from switchboard.proto.framing import PREFIX_SIZE, Framer, frame_bytes


def feed(framer: Framer, stream: bytes, cuts: list[int]) -> list[bytes]:
    """Feed ``stream`` to ``framer`` in pieces split at ``cuts``; return every frame out."""
    out: list[bytes] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        out += framer.receive_data(stream[start:cut])
        start = cut
    return out


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=40), max_size=8), st.data())
def test_framing_random_splits_reassemble_exactly(frames: list[bytes], data: st.DataObject) -> None:
    """However a valid stream is split, the framer returns exactly the frames, in order."""
    stream = b"".join(frame_bytes(frame) for frame in frames)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    framer = Framer()
    assert feed(framer, stream, cuts) == frames
    framer.receive_eof()  # ended on a frame boundary: no error


def test_framing_byte_at_a_time_reassembles() -> None:
    """Feeding one byte at a time yields each frame when its last byte arrives."""
    framer = Framer()
    stream = frame_bytes(b"abc") + frame_bytes(b"")
    outputs = [framer.receive_data(stream[i : i + 1]) for i in range(len(stream))]
    assert [out for out in outputs if out] == [[b"abc"], [b""]]


def test_framing_prefix_is_four_byte_big_endian() -> None:
    """frame_bytes prepends the length as four big-endian bytes."""
    assert PREFIX_SIZE == 4
    assert frame_bytes(b"xy") == b"\x00\x00\x00\x02xy"


@given(st.integers(11, 2**32 - 1), st.binary(max_size=8))
def test_framing_oversized_prefix_raises_frame_too_large(size: int, tail: bytes) -> None:
    """A prefix announcing more than max_frame_size fails before any body is buffered."""
    framer = Framer(max_frame_size=10)
    with pytest.raises(FrameTooLarge) as info:
        framer.receive_data(size.to_bytes(4, "big") + tail)
    assert (info.value.size, info.value.limit) == (size, 10)


def test_framing_frame_at_limit_is_accepted() -> None:
    """A frame of exactly max_frame_size bytes passes."""
    framer = Framer(max_frame_size=10)
    assert framer.receive_data(frame_bytes(b"x" * 10)) == [b"x" * 10]


@given(st.binary(min_size=1, max_size=40), st.data())
def test_framing_eof_mid_frame_raises_remote_error(frame: bytes, data: st.DataObject) -> None:
    """A stream that ends inside a frame (prefix or body) raises RemoteProtocolError at EOF."""
    stream = frame_bytes(frame)
    cut = data.draw(st.integers(1, len(stream) - 1))
    framer = Framer()
    assert framer.receive_data(stream[:cut]) == []
    with pytest.raises(RemoteProtocolError, match="stream ended inside a frame"):
        framer.receive_eof()


def test_framing_empty_stream_eof_is_clean() -> None:
    """EOF on an empty stream is a normal end."""
    Framer().receive_eof()


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=30), max_size=6))
def test_framing_random_bytes_raise_only_remote_errors(chunks: list[bytes]) -> None:
    """Arbitrary bytes then EOF yield frames or raise RemoteProtocolError, nothing else."""
    framer = Framer(max_frame_size=64)
    try:
        for chunk in chunks:
            for frame in framer.receive_data(chunk):
                assert len(frame) <= 64
        framer.receive_eof()
    except RemoteProtocolError:
        pass
