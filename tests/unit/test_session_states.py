"""Every (role, state, frame type) either makes a valid transition or fails with Bye.

After h2's ``test_state_machines.py``: sessions are driven into every state they can reach,
then fed each frame type, valid and random. ``receive_frame`` must never raise, and the result
must be one of: the table's transition, a Bye that closes the session, or (once closed) nothing.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pairing import KEYS, client_session, server_session
from strategies import CANONICAL, FRAME_STRATEGIES, FRAME_TYPES, any_frame

from switchboard.errors import ByeCode, RemoteProtocolError
from switchboard.proto import frames as f
from switchboard.proto.session import Closed, Role, State, SyncSession, transition_table

TABLE = transition_table()

# Where a table entry leads when the frame is valid; failing instead always means CLOSED.
SUCCESS = {
    ("server", "await_hello", "hello"): State.VERIFYING,
    ("client", "hello_sent", "challenge"): State.PROOF_SENT,
    ("server", "challenge_sent", "proof"): State.WELCOMING,
    ("client", "proof_sent", "welcome"): State.OPEN,
    **{key: State.OPEN for key in TABLE if key[1] == "open"},
}

# The states each role passes through; the other states are never reached by that role.
REACHABLE = {
    Role.CLIENT: [State.IDLE, State.HELLO_SENT, State.PROOF_SENT, State.OPEN, State.CLOSED],
    Role.SERVER: [
        State.AWAIT_HELLO,
        State.VERIFYING,
        State.CHALLENGE_SENT,
        State.WELCOMING,
        State.OPEN,
        State.CLOSED,
    ],
}
ALL_PAIRS = [(role, state) for role in Role for state in State]


def drive(role: Role, state: State) -> tuple[SyncSession, dict[type[f.Frame], bytes]]:
    """Return a session of ``role`` in ``state`` and the real handshake frames sent so far.

    Reachable states are reached by a real handshake; unreachable ones are forced, which is
    fine because the table has no entry for them.
    """
    client, server = client_session(), server_session()
    frames: dict[type[f.Frame], bytes] = {}
    mine = client if role is Role.CLIENT else server
    if state not in REACHABLE[role]:
        mine.state = state
        return mine, frames

    # (session acted on, action); once ``mine`` is in ``state``, the peer's own steps still run
    # so that the frame ``mine`` expects next is a real one.
    steps = [
        (client, client.start),
        (server, lambda: server.receive_frame(frames[f.Hello])),
        (server, lambda: server.accept_hello(KEYS.auth_public)),
        (client, lambda: client.receive_frame(frames[f.Challenge])),
        (server, lambda: server.receive_frame(frames[f.Proof])),
        (server, lambda: server.send_welcome([])),
        (client, lambda: client.receive_frame(frames[f.Welcome])),
    ]
    outputs = [(client, [f.Hello, f.Proof]), (server, [f.Challenge, f.Welcome])]
    target = State.OPEN if state is State.CLOSED else state
    reached = mine.state is target
    for actor, action in steps:
        if reached and actor is mine:
            break
        action()
        for session, kinds in outputs:
            for data in session.frames_to_send():
                frames[kinds.pop(0)] = data
        reached = reached or mine.state is target
    if state is State.CLOSED:
        mine.send_bye()
    mine.frames_to_send()
    mine.events_received()
    assert mine.state is state
    return mine, frames


def frame_for(kind: type[f.Frame], frames: dict[type[f.Frame], bytes]) -> bytes:
    """The real handshake frame of ``kind`` when there is one, else the canonical one."""
    return frames.get(kind) or f.encode_frame(CANONICAL[kind])


def check_outcome(session: SyncSession, before: State, kind: type[f.Frame]) -> State:
    """Assert the session reacted to one ``kind`` frame as the table allows; return its state."""
    out = [f.decode_frame(data) for data in session.frames_to_send()]
    events = session.events_received()
    tag = f.frame_name(CANONICAL[kind])
    key = (session.role.value, before.value, tag)
    if before is State.CLOSED:
        assert (session.state, out, events) == (State.CLOSED, [], [])
    elif kind is f.Bye:
        assert session.state is State.CLOSED and out == []
        assert [type(event) for event in events] == [Closed]
    elif session.state is State.CLOSED:
        assert isinstance(out[-1], f.Bye), "a failed session says Bye"
        assert not any(isinstance(frame, f.Bye) for frame in out[:-1])
        assert session.cause is not None
        assert events[-1] == Closed(out[-1].code, out[-1].reason, session.cause)
        if key not in TABLE:
            assert isinstance(session.cause, RemoteProtocolError)
            assert out[-1].code == ByeCode.PROTOCOL_ERROR
            assert f"unexpected {tag} frame in state {before.value}" in out[-1].reason
    else:
        assert key in TABLE, f"{key} changed nothing but is not in the table"
        assert session.state is SUCCESS[key]
        assert not any(isinstance(frame, f.Bye) for frame in out)
    return session.state


@pytest.mark.parametrize("kind", FRAME_TYPES, ids=lambda kind: kind.__name__)
@pytest.mark.parametrize(("role", "state"), ALL_PAIRS, ids=lambda x: x.value)
def test_session_states_valid_frame_follows_table(
    role: Role, state: State, kind: type[f.Frame]
) -> None:
    """A valid frame makes the table's transition where the table has one, else fails with Bye."""
    session, frames = drive(role, state)
    session.receive_frame(frame_for(kind, frames))
    after = check_outcome(session, state, kind)
    key = (role.value, state.value, f.frame_name(CANONICAL[kind]))
    if key in TABLE:
        assert after is SUCCESS[key]


def test_session_states_unreachable_states_have_no_entries() -> None:
    """The table only has entries for states the role can reach."""
    for role_name, state_name, _ in TABLE:
        assert State(state_name) in REACHABLE[Role(role_name)]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(ALL_PAIRS), st.lists(any_frame, min_size=1, max_size=4))
def test_session_states_random_frames_never_raise(
    pair: tuple[Role, State], frames: list[f.Frame]
) -> None:
    """Random frames in any state make table transitions or close with Bye, never raise."""
    role, state = pair
    session, _ = drive(role, state)
    for frame in frames:
        before = session.state
        session.receive_frame(f.encode_frame(frame))
        check_outcome(session, before, type(frame))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALL_PAIRS), st.binary(max_size=64))
def test_session_states_random_bytes_never_raise(pair: tuple[Role, State], data: bytes) -> None:
    """Random bytes in any state are a frame the table handles, or close the session with Bye."""
    role, state = pair
    session, _ = drive(role, state)
    session.receive_frame(data)
    try:
        kind = type(f.decode_frame(data))
    except RemoteProtocolError:
        out = [f.decode_frame(frame) for frame in session.frames_to_send()]
        assert session.state is State.CLOSED
        if state is not State.CLOSED:
            assert isinstance(out[-1], f.Bye) and out[-1].code == ByeCode.PROTOCOL_ERROR
    else:
        check_outcome(session, state, kind)


@pytest.mark.parametrize("kind", FRAME_TYPES, ids=lambda kind: kind.__name__)
def test_session_states_strategies_reach_every_kind(kind: type[f.Frame]) -> None:
    """Each frame strategy builds frames of its own class (so the random tests cover all)."""
    assert kind in FRAME_STRATEGIES
