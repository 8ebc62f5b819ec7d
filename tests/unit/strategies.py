"""Hypothesis strategies for every wire frame, each value within the frame's declared limits."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import strategies as st

from switchboard.events import Event
from switchboard.proto import frames as f

device_ids = st.text(min_size=1, max_size=64)
seqs = st.integers(1, 2**62)
seqs_or_zero = st.integers(0, 2**62)
wire_ints = st.integers(-(2**63), 2**64 - 1)  # any integer MessagePack carries
refs = st.integers(0, 2**63 - 1)
vectors = st.dictionaries(device_ids, seqs_or_zero, max_size=5)

envelopes = st.builds(
    f.Envelope,
    origin=device_ids,
    seq=seqs,
    nonce=st.binary(min_size=12, max_size=12),
    box=st.binary(max_size=64),
)

FRAME_STRATEGIES: dict[type[f.Frame], st.SearchStrategy[Any]] = {
    f.Hello: st.builds(
        f.Hello,
        version=wire_ints,
        group=device_ids,
        device=device_ids,
        nonce=st.binary(min_size=16, max_size=64),
        group_key=st.binary(min_size=32, max_size=32),
        device_key=st.binary(min_size=32, max_size=32),
        create=st.booleans(),
    ),
    f.Challenge: st.builds(
        f.Challenge,
        nonce=st.binary(min_size=16, max_size=64),
        server=device_ids,
        server_key=st.binary(min_size=32, max_size=32),
        proof=st.binary(min_size=64, max_size=64),
    ),
    f.Proof: st.builds(
        f.Proof,
        proof=st.binary(min_size=64, max_size=64),
        device_proof=st.binary(min_size=64, max_size=64),
    ),
    f.Welcome: st.builds(f.Welcome, online=st.lists(device_ids, max_size=5)),
    f.Have: st.builds(f.Have, vector=vectors),
    f.Batch: st.builds(f.Batch, envelopes=st.lists(envelopes, max_size=5)),
    f.Ack: st.builds(f.Ack, vector=vectors),
    f.Ping: st.builds(f.Ping, n=seqs_or_zero),
    f.Pong: st.builds(f.Pong, n=seqs_or_zero),
    f.Presence: st.builds(f.Presence, device=device_ids, online=st.booleans()),
    f.Presences: st.builds(
        f.Presences,
        online=st.lists(device_ids, max_size=5),
        offline=st.lists(device_ids, max_size=5),
    ),
    f.Bye: st.builds(f.Bye, code=wire_ints, reason=st.text(max_size=1024)),
    f.Direct: st.builds(
        f.Direct,
        sender=device_ids,
        recipient=device_ids,
        ref=refs,
        sender_key=st.binary(min_size=32, max_size=32),
        nonce=st.binary(min_size=12, max_size=12),
        box=st.binary(max_size=64),
        signature=st.binary(min_size=64, max_size=64),
    ),
    f.Undelivered: st.builds(
        f.Undelivered,
        recipient=device_ids,
        ref=refs,
        code=wire_ints,
        reason=st.text(max_size=1024),
    ),
}

#: Every frame class, in the order of ``frames.AnyFrame``.
FRAME_TYPES: tuple[type[f.Frame], ...] = f.AnyFrame.__args__  # type: ignore[attr-defined]

any_frame = st.one_of(*FRAME_STRATEGIES.values())
frame_tags = st.sampled_from([f.frame_name(cls) for cls in FRAME_TYPES])  # type: ignore[arg-type]

# MessagePack values of any shape, for frames that are well-formed MessagePack but wrong.
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | wire_ints
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
tagged_garbage = st.builds(
    lambda tag, rest: msgspec.msgpack.encode([tag, *rest]),
    frame_tags,
    st.lists(msgpack_values, max_size=7),
)

# Event data as it round-trips through MessagePack: lists, string-keyed maps, no NaN.
json_values = st.recursive(
    st.none() | st.booleans() | wire_ints | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
events = st.builds(
    Event,
    origin=st.text(max_size=30),
    seq=st.integers(1, 2**62),
    ts=st.text(max_size=30),
    type=st.text(max_size=30),
    agent=st.text(max_size=30),
    data=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
)

#: One fixed, valid instance of every frame class.
CANONICAL: dict[type[f.Frame], f.Frame] = {
    f.Hello: f.Hello(1, "group", "device", b"n" * 32, b"k" * 32, b"d" * 32),
    f.Challenge: f.Challenge(b"n" * 32, "server", b"k" * 32, b"s" * 64),
    f.Proof: f.Proof(b"s" * 64, b"t" * 64),
    f.Welcome: f.Welcome(["device-b"]),
    f.Have: f.Have({"origin": 3}),
    f.Batch: f.Batch([f.Envelope("origin", 1, b"n" * 12, b"box")]),
    f.Ack: f.Ack({"origin": 1}),
    f.Ping: f.Ping(1),
    f.Pong: f.Pong(1),
    f.Presence: f.Presence("device-b", True),
    f.Presences: f.Presences(["device-b"], ["device-c"]),
    f.Bye: f.Bye(1000, "goodbye"),
    f.Direct: f.Direct("device-a", "device-b", 7, b"k" * 32, b"n" * 12, b"box", b"s" * 64),
    f.Undelivered: f.Undelivered("device-b", 7, 1, "not connected"),
}
