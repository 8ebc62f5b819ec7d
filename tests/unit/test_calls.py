"""Call messages: round trips, limits, and a decoder that only ever raises RemoteProtocolError."""

from __future__ import annotations

import contextlib

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from switchboard.errors import RemoteProtocolError
from switchboard.proto import calls as m

ids = st.integers(0, 2**63 - 1)
counts = st.integers(0, 2**62)
bodies = st.binary(max_size=64)
messages = st.one_of(
    st.builds(m.Call, ids, st.text(min_size=1, max_size=64), bodies, st.booleans(),
              st.integers(1, m.MAX_WINDOW), st.floats(allow_nan=False)),
    st.builds(m.Reply, ids, bodies),
    st.builds(m.Chunk, ids, counts, bodies),
    st.builds(m.End, ids, counts),
    st.builds(m.Credit, ids, counts, counts, st.booleans()),
    st.builds(m.Progress, ids, counts),
    st.builds(m.Failure, ids, st.text(min_size=1, max_size=64), st.text(max_size=1024)),
    st.builds(m.Cancel, ids),
)  # fmt: skip


@given(messages)
def test_calls_every_message_round_trips(message: m.Message) -> None:
    """Every message decodes to an equal message, tag first."""
    data = m.encode_message(message)
    assert m.decode_message(data) == message
    assert msgspec.msgpack.decode(data)[0] == m.message_name(message)


@settings(max_examples=500)
@given(st.binary(max_size=200))
@example(b"\x92\xa5reply\x01")  # a field missing
@example(b"\x94\xa7failure\x01\xa1k\xa3\xff\xfe\xfd")  # invalid utf-8 in a string
@example(b"\x93\xa6cancel\x01" + b"\x91" * 100_000 + b"\xc0")  # a skipped field nested deep
def test_calls_decoder_raises_only_remote_protocol_errors(data: bytes) -> None:
    """Garbage never escapes the decoder as anything but RemoteProtocolError."""
    with contextlib.suppress(RemoteProtocolError):
        m.decode_message(data)


@pytest.mark.parametrize(
    "message",
    [
        m.Reply(1, b"x" * (m.MAX_BODY + 1)),
        m.Call(1, "", b"", False, 1, 0.0),
        m.Call(1, "k", b"", True, m.MAX_WINDOW + 1, 0.0),
        m.Chunk(-1, 0, b""),
    ],
    ids=["body over MAX_BODY", "empty kind", "window over MAX_WINDOW", "negative id"],
)
def test_calls_limits_are_enforced_on_decoding(message: m.Message) -> None:
    """A message outside the declared limits is malformed."""
    with pytest.raises(RemoteProtocolError, match="malformed call message"):
        m.decode_message(m.encode_message(message))
