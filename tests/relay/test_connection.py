"""``Connection``'s phase rules, on a real server session opened without any I/O."""

from __future__ import annotations

from relay_client import open_connection

from switchboard.crypto import GroupKeys, new_group_secret
from switchboard.proto.frames import Envelope
from switchboard.relay.connection import Connection, Phase, source_of

KEYS = GroupKeys.derive("group", new_group_secret())


def envelopes(first: int, last: int) -> list[Envelope]:
    """Return sealed envelopes ``first..last`` of one origin."""
    return [KEYS.seal("origin", seq, b"x" * 100) for seq in range(first, last + 1)]


def make_connection(max_pending_bytes: int = 1000) -> Connection:
    """Return a connection around an open session (its transport is never used)."""
    return open_connection(KEYS, "group", max_pending_bytes=max_pending_bytes)


def test_connection_offers_nothing_before_the_peer_said_what_it_holds() -> None:
    """Until the peer's Have, newly stored envelopes are not sent to it."""
    conn = make_connection()
    for phase in (Phase.HANDSHAKE, Phase.WAITING_HAVE):
        conn.move_to(phase)
        conn.offer(envelopes(1, 3))
        assert not conn.outbox and conn.phase is phase


def test_connection_forwards_live_until_outbox_is_full() -> None:
    """A live peer gets offers until its outbox passes the limit, then it must catch up."""
    conn = make_connection(max_pending_bytes=1000)
    conn.move_to(Phase.LIVE)
    conn.offer(envelopes(1, 20))
    assert conn.outbox and conn.forwarded == 20
    assert conn.outbox_bytes > 1000
    conn.offer(envelopes(21, 22))
    assert conn.phase is Phase.CATCHING_UP and conn.forwarded == 20


def test_connection_catch_up_continues_from_what_was_sent() -> None:
    """Catch-up rounds send only what the peer lacks; an empty round makes the peer live."""
    conn = make_connection()
    conn.move_to(Phase.CATCHING_UP)
    conn.session.peer_vector["origin"] = 2
    phases = []
    conn.catch_up_with(envelopes(1, 5))
    phases.append(conn.phase)
    assert conn.forwarded == 3
    conn.catch_up_with([])
    phases.append(conn.phase)
    assert phases == [Phase.CATCHING_UP, Phase.LIVE]


def test_connection_source_is_the_peer_host() -> None:
    """Rate limiting keys on the host of the transport's peer, whatever the scheme."""
    assert source_of("ws://10.0.0.5:4242") == "10.0.0.5"
    assert source_of("wss://[::1]:7787") == "::1"
    assert source_of("memory://relay#client-3") == "relay"
