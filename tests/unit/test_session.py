"""SyncSession once open: heartbeats, timeouts, offers, acks, closing and local misuse."""

from __future__ import annotations

import pytest
from pairing import KEYS, SessionPair, client_session, device_id, private_key, server_session

from switchboard.errors import (
    AuthError,
    ByeCode,
    ConnectionLost,
    LocalProtocolError,
    Rejected,
    RemoteProtocolError,
    TransportTimeout,
)
from switchboard.proto.frames import (
    MAX_BATCH_ENVELOPES,
    Ack,
    Batch,
    Bye,
    Direct,
    Envelope,
    Have,
    Ping,
    Pong,
    Presence,
    Presences,
    Undelivered,
    decode_frame,
    encode_frame,
)
from switchboard.proto.session import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_PING_INTERVAL,
    AckReceived,
    BatchReceived,
    Closed,
    DirectReceived,
    HaveReceived,
    PresenceReceived,
    Role,
    SessionStatistics,
    State,
    SyncSession,
    UndeliveredReceived,
    encode_presences,
    transition_table,
)


def env(seq: int, origin: str = "origin", size: int = 3) -> Envelope:
    """Return a (not really sealed) envelope; sessions never look inside."""
    return Envelope(origin, seq, seq.to_bytes(8, "big") + b"rand", b"b" * size)


def sent(session: SyncSession) -> list[object]:
    """Drain and decode what ``session`` queued."""
    return [decode_frame(data) for data in session.frames_to_send()]


def open_pair() -> tuple[SyncSession, SyncSession]:
    """Return an open client and server session, with their queues drained."""
    pair = SessionPair()
    pair.pump()
    for session in (pair.client, pair.server):
        session.frames_to_send()
        session.events_received()
    return pair.client, pair.server


# -- heartbeats and timeouts -------------------------------------------------------------------


def test_session_defaults_are_documented_numbers() -> None:
    """The heartbeat and timeout defaults are 5 s, 15 s and 10 s, and batches 512 KiB."""
    assert (DEFAULT_PING_INTERVAL, DEFAULT_IDLE_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT) == (
        5.0,
        15.0,
        10.0,
    )
    assert DEFAULT_MAX_BATCH_BYTES == 512 * 1024


def test_session_tick_pings_after_interval() -> None:
    """An open session that sent nothing for ping_interval sends Ping, numbered from 1."""
    client, _ = open_pair()
    client.tick(0.0)
    client.tick(DEFAULT_PING_INTERVAL - 0.1)
    assert sent(client) == []
    client.tick(DEFAULT_PING_INTERVAL)
    assert sent(client) == [Ping(1)]
    assert client.next_deadline() == 2 * DEFAULT_PING_INTERVAL
    client.tick(2 * DEFAULT_PING_INTERVAL)
    assert sent(client) == [Ping(2)]


def test_session_sending_postpones_ping() -> None:
    """A frame sent since the last tick counts as traffic, so no Ping is due yet."""
    client, _ = open_pair()
    client.tick(3.0)
    client.send_have({})
    client.frames_to_send()
    client.tick(4.0)  # the Have was sent "at" 4.0
    client.tick(4.0 + DEFAULT_PING_INTERVAL - 0.1)
    assert sent(client) == []


def test_session_ping_is_answered_with_pong() -> None:
    """A Ping gets a Pong with the same number; a Pong is taken silently."""
    client, server = open_pair()
    server.receive_frame(encode_frame(Ping(41)))
    assert sent(server) == [Pong(41)]
    client.receive_frame(encode_frame(Pong(41)))
    assert client.is_open and sent(client) == [] and client.events_received() == []


def test_session_idle_timeout_closes() -> None:
    """A peer silent for idle_timeout fails the session with TIMEOUT, even while we ping."""
    client, _ = open_pair()
    client.tick(0.0)
    for now in range(1, int(DEFAULT_IDLE_TIMEOUT)):
        client.tick(float(now))
        assert client.is_open
    client.frames_to_send()
    client.tick(DEFAULT_IDLE_TIMEOUT)
    assert client.state is State.CLOSED
    assert isinstance(client.cause, TransportTimeout)
    assert sent(client) == [Bye(ByeCode.TIMEOUT, "no frame from peer for 15 s")]
    assert client.next_deadline() is None


def test_session_receiving_keeps_session_alive() -> None:
    """Any frame from the peer resets the idle timer at the next tick."""
    client, _ = open_pair()
    client.tick(0.0)
    client.receive_frame(encode_frame(Pong(1)))
    client.tick(10.0)
    client.tick(10.0 + DEFAULT_IDLE_TIMEOUT - 0.1)
    assert client.is_open
    client.tick(10.0 + DEFAULT_IDLE_TIMEOUT)
    assert isinstance(client.cause, TransportTimeout)


def test_session_handshake_timeout_closes() -> None:
    """A handshake unfinished after handshake_timeout fails with TIMEOUT on either side."""
    for session in (client_session(now=100.0), server_session(now=100.0)):
        if session.role is Role.CLIENT:
            session.start()
        assert session.next_deadline() == 100.0 + DEFAULT_HANDSHAKE_TIMEOUT
        session.tick(100.0 + DEFAULT_HANDSHAKE_TIMEOUT - 0.1)
        assert session.state is not State.CLOSED
        session.tick(100.0 + DEFAULT_HANDSHAKE_TIMEOUT)
        assert session.state is State.CLOSED
        assert isinstance(session.cause, TransportTimeout)
        assert sent(session)[-1] == Bye(ByeCode.TIMEOUT, "handshake did not finish in time")


def test_session_tick_after_close_does_nothing() -> None:
    """A closed session ignores the clock."""
    client, _ = open_pair()
    client.send_bye()
    client.frames_to_send()
    client.tick(1000.0)
    assert sent(client) == []


def test_session_limits_are_keyword_arguments() -> None:
    """Custom intervals change when pings and timeouts happen."""
    session = client_session(ping_interval=1.0, idle_timeout=2.0, handshake_timeout=0.5)
    session.start()
    session.tick(0.5)
    assert isinstance(session.cause, TransportTimeout)


# -- replication bookkeeping ---------------------------------------------------------------------


def test_session_offer_does_not_resend_what_peer_has() -> None:
    """offer sends only envelopes beyond peer_vector, which sending advances."""
    client, _ = open_pair()
    assert client.offer([env(1), env(2)]) == 2
    assert sent(client) == [Batch([env(1), env(2)])]
    assert client.peer_vector == {"origin": 2}
    assert client.offer([env(1), env(2), env(3)]) == 1
    assert sent(client) == [Batch([env(3)])]
    assert client.offer([env(3)]) == 0
    assert sent(client) == []


def test_session_offer_stops_at_a_hole() -> None:
    """offer never sends past a seq the peer lacks: that envelope could not be stored there."""
    client, _ = open_pair()
    assert client.offer([env(2), env(3)]) == 0
    assert sent(client) == []
    assert client.offer([env(1), env(2), env(4), env(5)]) == 2
    assert sent(client) == [Batch([env(1), env(2)])]
    assert client.offer([env(2, "a"), env(3)]) == 1  # origins are independent
    assert sent(client) == [Batch([env(3)])]
    assert client.peer_vector == {"origin": 3}


def test_session_have_resets_peer_vector_and_lower_have_resends() -> None:
    """A Have replaces peer_vector, so a lower one makes offer send again."""
    client, _ = open_pair()
    client.offer([env(1), env(2), env(3)])
    client.frames_to_send()
    client.receive_frame(encode_frame(Have({"origin": 1})))
    assert client.events_received() == [HaveReceived({"origin": 1})]
    assert client.peer_vector == {"origin": 1}
    assert client.offer([env(1), env(2), env(3)]) == 2
    assert sent(client) == [Batch([env(2), env(3)])]


def test_session_send_have_and_ack_queue_a_copy_of_the_vector() -> None:
    """send_have and send_ack queue their frame with the vector as it was at the call."""
    client, _ = open_pair()
    vector = {"a": 2}
    client.send_have(vector)
    client.send_ack(vector)
    vector["a"] = 9
    assert sent(client) == [Have({"a": 2}), Ack({"a": 2})]


def test_session_ack_raises_vectors_only() -> None:
    """An Ack raises acked_vector and peer_vector per origin, never lowers them."""
    client, _ = open_pair()
    client.receive_frame(encode_frame(Ack({"a": 3, "b": 1})))
    client.receive_frame(encode_frame(Ack({"a": 2, "c": 4})))
    assert client.acked_vector == {"a": 3, "b": 1, "c": 4}
    assert client.peer_vector == {"a": 3, "b": 1, "c": 4}
    assert client.events_received() == [
        AckReceived({"a": 3, "b": 1}),
        AckReceived({"a": 2, "c": 4}),
    ]
    assert client.offer([env(3, "a"), env(4, "a")]) == 1


def test_session_send_batch_splits_by_bytes() -> None:
    """Envelopes are packed into frames of at most max_batch_bytes, in order."""
    client, _ = open_pair()
    client.max_batch_bytes = 200
    envs = [env(seq, size=100) for seq in range(1, 6)]
    client.send_batch(envs)
    batches = sent(client)
    assert [len(b.envelopes) for b in batches] == [1, 1, 1, 1, 1]  # type: ignore[attr-defined]
    client.max_batch_bytes = 300
    client.send_batch(envs)
    assert [len(b.envelopes) for b in sent(client)] == [2, 2, 1]  # type: ignore[attr-defined]


def test_session_send_batch_splits_by_count() -> None:
    """No frame carries more than MAX_BATCH_ENVELOPES envelopes."""
    client, _ = open_pair()
    client.send_batch([env(seq, size=0) for seq in range(1, MAX_BATCH_ENVELOPES + 2)])
    assert [len(b.envelopes) for b in sent(client)] == [MAX_BATCH_ENVELOPES, 1]  # type: ignore[attr-defined]
    assert client.statistics().envelopes_out == MAX_BATCH_ENVELOPES + 1


def test_session_send_batch_of_nothing_sends_nothing() -> None:
    """An empty batch queues no frame."""
    client, _ = open_pair()
    client.send_batch([])
    assert client.offer([]) == 0
    assert sent(client) == []


def test_session_batch_reports_envelopes() -> None:
    """A Batch in per-origin order is reported as it came, interleaved origins allowed."""
    _, server = open_pair()
    batch = [env(1, "a"), env(5, "b"), env(3, "a")]
    server.receive_frame(encode_frame(Batch(batch)))
    assert server.events_received() == [BatchReceived(tuple(batch))]
    assert server.statistics().envelopes_in == 3


@pytest.mark.parametrize("seqs", [[2, 1], [1, 1]])
def test_session_batch_out_of_order_fails(seqs: list[int]) -> None:
    """A Batch that goes back or repeats within one origin fails the session."""
    _, server = open_pair()
    server.receive_frame(encode_frame(Batch([env(seq) for seq in seqs])))
    assert isinstance(server.cause, RemoteProtocolError)
    assert "batch out of order" in str(server.cause)
    assert sent(server)[-1].code == ByeCode.PROTOCOL_ERROR  # type: ignore[attr-defined]
    assert [type(e) for e in server.events_received()] == [Closed]


def test_session_presence_reaches_client() -> None:
    """The relay's Presence is reported to the client."""
    client, server = open_pair()
    server.send_presence("device-b", True)
    for data in server.frames_to_send():
        client.receive_frame(data)
    assert client.events_received() == [PresenceReceived("device-b", True)]


def test_session_presence_to_server_fails() -> None:
    """Only a relay sends Presence; a client sending one breaks the protocol."""
    _, server = open_pair()
    server.receive_frame(encode_frame(Presence("x", True)))
    assert isinstance(server.cause, RemoteProtocolError)
    assert "unexpected presence frame in state open" in str(server.cause)


def test_session_presences_reach_client_one_event_per_device() -> None:
    """A relay's Presences frame, encoded once for many sessions, is one event per device."""
    client, server = open_pair()
    data = encode_presences(["device-b", "device-c"], ["device-d"])
    server.send_presences(data)
    frames = server.frames_to_send()
    assert frames == [data] and decode_frame(data) == Presences(
        online=["device-b", "device-c"], offline=["device-d"]
    )
    client.receive_frame(frames[0])
    assert client.events_received() == [
        PresenceReceived("device-b", True),
        PresenceReceived("device-c", True),
        PresenceReceived("device-d", False),
    ]
    assert server.statistics().bytes_out >= len(data)


def test_session_presences_to_server_fails_clearly() -> None:
    """Only a relay sends Presences; a server receiving one says which frame broke the rules."""
    _, server = open_pair()
    server.receive_frame(encode_presences(["x"], []))
    assert isinstance(server.cause, RemoteProtocolError)
    assert "unexpected presences frame in state open" in str(server.cause)
    assert sent(server)[-1].code == ByeCode.PROTOCOL_ERROR  # type: ignore[attr-defined]


def test_session_presences_before_open_is_refused() -> None:
    """send_presences is a call of an open server session, like send_presence."""
    server = server_session()
    with pytest.raises(LocalProtocolError):
        server.send_presences(encode_presences(["x"], []))


def test_session_statistics_count_both_directions() -> None:
    """statistics() counts frames, bytes and envelopes in and out."""
    client, server = open_pair()
    before = client.statistics()
    client.offer([env(1), env(2)])
    frames = client.frames_to_send()
    for data in frames:
        server.receive_frame(data)
    after = client.statistics()
    assert after.frames_out == before.frames_out + 1
    assert after.bytes_out == before.bytes_out + sum(map(len, frames))
    assert after.envelopes_out == 2
    assert isinstance(after, SessionStatistics)
    assert server.statistics().envelopes_in == 2


def direct(sender: str = "device-a", recipient: str = "device-b", ref: int = 7) -> Direct:
    """Return a (not really sealed) directed frame; sessions never look inside."""
    return Direct(sender, recipient, ref, b"k" * 32, b"n" * 12, b"box", b"s" * 64)


def test_session_direct_frames_travel_both_ways() -> None:
    """Direct frames go from client to server and back, reported as DirectReceived, counted."""
    client, server = open_pair()
    client.send_direct(direct())
    for data in client.frames_to_send():
        server.receive_frame(data)
    server.send_direct(direct("device-b", "device-a"))
    for data in server.frames_to_send():
        client.receive_frame(data)
    assert server.events_received() == [DirectReceived(direct())]
    assert client.events_received() == [DirectReceived(direct("device-b", "device-a"))]
    assert client.statistics().directs_out == client.statistics().directs_in == 1
    assert server.statistics().directs_in == server.statistics().directs_out == 1


def test_session_undelivered_reaches_client_only() -> None:
    """A relay's Undelivered is reported to the client; a client sending one breaks the rules."""
    client, server = open_pair()
    server.send_undelivered("device-b", 7, 1, "not connected")
    for data in server.frames_to_send():
        client.receive_frame(data)
    assert client.events_received() == [UndeliveredReceived("device-b", 7, 1, "not connected")]
    server.receive_frame(encode_frame(Undelivered("device-b", 7, 1, "x")))
    assert "unexpected undelivered frame in state open" in str(server.cause)


def test_session_direct_before_open_fails() -> None:
    """A Direct frame during the handshake is out of turn, and sending one raises locally."""
    pair = SessionPair()  # started: the client sent its Hello
    with pytest.raises(LocalProtocolError):
        pair.client.send_direct(direct())
    pair.server.receive_frame(encode_frame(direct()))
    assert "unexpected direct frame in state await_hello" in str(pair.server.cause)


# -- closing -----------------------------------------------------------------------------------


def test_session_send_bye_closes_normally() -> None:
    """send_bye queues Bye, closes, reports Closed without error, and is idempotent."""
    client, _ = open_pair()
    client.send_bye()
    assert client.close_expected() and not client.is_open
    assert sent(client) == [Bye(ByeCode.NORMAL, "goodbye")]
    assert client.events_received() == [Closed(ByeCode.NORMAL, "goodbye")]
    client.send_bye()
    assert sent(client) == []


@pytest.mark.parametrize("code", [ByeCode.NORMAL, ByeCode.GOING_AWAY])
def test_session_peer_bye_normal_has_no_cause(code: ByeCode) -> None:
    """A normal Bye from the peer closes without an error."""
    client, _ = open_pair()
    client.receive_frame(encode_frame(Bye(code, "bye")))
    assert client.state is State.CLOSED and client.cause is None
    assert client.events_received() == [Closed(code, "bye", None)]
    assert sent(client) == []  # no Bye in answer to a Bye


def test_session_peer_bye_error_becomes_rejected_or_auth_error() -> None:
    """A Bye with an error code is kept as Rejected, or AuthError for AUTH_FAILED."""
    client, _ = open_pair()
    client.receive_frame(encode_frame(Bye(ByeCode.RATE_LIMITED, "slow down")))
    assert isinstance(client.cause, Rejected) and client.cause.reason_code == ByeCode.RATE_LIMITED
    client, _ = open_pair()
    client.receive_frame(encode_frame(Bye(ByeCode.AUTH_FAILED, "no")))
    assert isinstance(client.cause, AuthError)


def test_session_eof_without_bye_is_connection_lost() -> None:
    """EOF before any Bye records ConnectionLost; EOF after close changes nothing."""
    client, _ = open_pair()
    client.receive_eof()
    assert isinstance(client.cause, ConnectionLost)
    (closed,) = client.events_received()
    assert closed == Closed(ByeCode.GOING_AWAY, "connection lost", client.cause)
    client.receive_eof()
    assert client.events_received() == []


def test_session_frames_after_close_are_discarded() -> None:
    """A closed session ignores input: no output, no events, no counting."""
    client, _ = open_pair()
    client.send_bye()
    client.frames_to_send()
    client.events_received()
    frames_in = client.statistics().frames_in
    client.receive_frame(encode_frame(Have({})))
    client.receive_frame(b"garbage")
    assert sent(client) == [] and client.events_received() == []
    assert client.statistics().frames_in == frames_in


def test_session_oversized_frame_fails_with_frame_too_large() -> None:
    """A frame over max_frame_size fails the session with FRAME_TOO_LARGE."""
    client, _ = open_pair()
    client.max_frame_size = 10
    client.receive_frame(encode_frame(Have({"o" * 20: 1})))
    assert sent(client)[-1].code == ByeCode.FRAME_TOO_LARGE  # type: ignore[attr-defined]


def test_session_garbage_fails_with_protocol_error() -> None:
    """Undecodable input fails the session with PROTOCOL_ERROR and a reason without payload."""
    client, _ = open_pair()
    client.receive_frame(b"\x92\xa4ping\xa6secret")
    bye = sent(client)[-1]
    assert bye.code == ByeCode.PROTOCOL_ERROR  # type: ignore[attr-defined]
    assert "secret" not in bye.reason  # type: ignore[attr-defined]


def test_session_reject_closes_with_code() -> None:
    """reject refuses a client with the given code, and the session keeps Rejected as cause."""
    server = server_session()
    server.reject(ByeCode.OVERLOADED, "too many handshakes")
    assert sent(server) == [Bye(ByeCode.OVERLOADED, "too many handshakes")]
    assert isinstance(server.cause, Rejected)
    server.reject(ByeCode.OVERLOADED, "again")
    assert sent(server) == []


def test_session_local_error_while_handling_input_becomes_remote(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A LocalProtocolError raised while handling peer input fails the session as a remote error."""
    client, _ = open_pair()

    def broken(self: SyncSession, frame: Ping) -> None:
        raise LocalProtocolError("cannot do that now")

    monkeypatch.setattr(SyncSession, "_on_ping", broken)
    client.receive_frame(encode_frame(Ping(1)))
    assert type(client.cause) is RemoteProtocolError
    assert str(client.cause) == "cannot do that now"


# -- local misuse ------------------------------------------------------------------------------

MISUSES = {
    "send_have before open": lambda s: s.send_have({}),
    "send_ack before open": lambda s: s.send_ack({}),
    "offer before open": lambda s: s.offer([]),
    "send_batch before open": lambda s: s.send_batch([]),
    "send_presence before open": lambda s: s.send_presence("x", True),
    "accept_hello before hello": lambda s: s.accept_hello(KEYS.auth_public),
    "send_welcome before proof": lambda s: s.send_welcome([]),
}


@pytest.mark.parametrize("misuse", MISUSES.values(), ids=MISUSES.keys())
def test_session_local_misuse_raises_local_protocol_error(misuse: object) -> None:
    """Calling a method in a state that forbids it raises LocalProtocolError, a RuntimeError."""
    for session in (client_session(), server_session()):
        with pytest.raises(LocalProtocolError, match=r"cannot .* in state") as info:
            misuse(session)  # type: ignore[operator]
        assert isinstance(info.value, RuntimeError)


def test_session_start_twice_raises() -> None:
    """start is allowed once, on a client."""
    client = client_session()
    client.start()
    with pytest.raises(LocalProtocolError, match="cannot start in state hello_sent"):
        client.start()
    with pytest.raises(LocalProtocolError, match="cannot start in state await_hello"):
        server_session().start()


def test_session_send_after_close_raises() -> None:
    """A closed session refuses further sends."""
    client, _ = open_pair()
    client.send_bye()
    with pytest.raises(LocalProtocolError, match="cannot open in state closed"):
        client.send_have({})


def test_session_constructor_requires_role_material() -> None:
    """A client needs its group, auth key and device key, a server its identity, both a nonce."""
    device, identity = device_id("device"), private_key("device")
    with pytest.raises(AssertionError, match="needs its group"):
        SyncSession(Role.CLIENT, device, b"n" * 32, 0.0, identity=identity)
    with pytest.raises(AssertionError, match="needs its device identity key"):
        SyncSession(Role.CLIENT, device, b"n" * 32, 0.0, group="g", group_auth=KEYS.auth)
    with pytest.raises(AssertionError, match="needs its identity key"):
        SyncSession(Role.SERVER, "s", b"n" * 32, 0.0)
    with pytest.raises(AssertionError, match="nonce"):
        SyncSession(
            Role.CLIENT, device, b"n" * 8, 0.0, group="g", group_auth=KEYS.auth, identity=identity
        )
    client = SyncSession(
        Role.CLIENT, device, b"n" * 32, 0.0, group="g", group_auth=KEYS.auth, identity=identity
    )
    assert client.state is State.IDLE


def test_session_client_local_id_must_be_derived_from_its_key() -> None:
    """A client whose local_id is not its identity key's device id is a bug in the adapter."""
    with pytest.raises(AssertionError, match="device id of its identity key"):
        SyncSession(
            Role.CLIENT,
            device_id("someone else"),
            b"n" * 32,
            0.0,
            group="g",
            group_auth=KEYS.auth,
            identity=private_key("device"),
        )


def test_session_transition_table_names_real_handlers() -> None:
    """Every handler in the table exists, and the table speaks in wire tags and state names."""
    table = transition_table()
    assert all(callable(getattr(SyncSession, handler)) for handler in table.values())
    assert table[("server", "await_hello", "hello")] == "_on_hello"
    assert ("server", "open", "presence") not in table
    assert {state for _, state, _ in table} <= {state.value for state in State}
