"""The handshake: mutual authentication, its failures, and replay resistance."""

from __future__ import annotations

import msgspec
import pytest
from pairing import (
    GROUP,
    KEYS,
    OTHER_KEYS,
    RELAY_ID,
    RELAY_IDENTITY,
    LogHolder,
    SessionPair,
    client_session,
    device_id,
    private_key,
    server_session,
)

from switchboard.crypto import public_bytes
from switchboard.errors import AuthError, ByeCode, Rejected, RemoteProtocolError
from switchboard.proto import handshake
from switchboard.proto.frames import (
    PROTOCOL_VERSION,
    Bye,
    Challenge,
    Hello,
    Proof,
    decode_frame,
    encode_frame,
)
from switchboard.proto.session import (
    Closed,
    Established,
    HelloReceived,
    State,
    SyncSession,
)


def hello_of(
    label: str,
    *,
    device: str = "",
    device_key: bytes = b"",
    version: int = PROTOCOL_VERSION,
    nonce: bytes = b"n" * 32,
) -> Hello:
    """Return a Hello from the device of the key labelled ``label``, offering the group's key.

    ``device`` and ``device_key`` override what the Hello claims, to build impostors.
    """
    return Hello(
        version,
        GROUP,
        device or device_id(label),
        nonce,
        KEYS.auth_public,
        device_key or public_bytes(private_key(label)),
    )


def challenged(hello: Hello) -> tuple[SyncSession, Challenge, bytes]:
    """Return a server session that accepted ``hello``, its Challenge, and the transcript."""
    server = server_session()
    server.receive_frame(encode_frame(hello))
    server.accept_hello(KEYS.auth_public)
    challenge = only_frame(server)
    assert isinstance(challenge, Challenge)
    data = handshake.transcript(hello, challenge.nonce, challenge.server, challenge.server_key)
    return server, challenge, data


def only_frame(session: SyncSession) -> object:
    """Return the single frame ``session`` queued, decoded."""
    (data,) = session.frames_to_send()
    return decode_frame(data)


def bye_of(session: SyncSession) -> Bye:
    """Return the Bye that closed ``session`` (its last queued frame)."""
    frame = decode_frame(session.frames_to_send()[-1])
    assert isinstance(frame, Bye)
    assert session.state is State.CLOSED
    return frame


def test_handshake_success_opens_both_sides() -> None:
    """A member and a relay authenticate each other and both report Established."""
    relay = LogHolder.relay()
    relay_peer = LogHolder("device-b")
    network_pair = SessionPair(server=relay)
    other = network_pair.network.connect(relay_peer, relay)
    network_pair.pump()
    assert network_pair.client.is_open and network_pair.server.is_open
    assert other.client.is_open
    client_est = network_pair.client_holder.events_of(Established)
    assert client_est == [Established(RELAY_ID, public_bytes(RELAY_IDENTITY), ())]
    (late,) = relay_peer.events_of(Established)
    assert late == Established(RELAY_ID, public_bytes(RELAY_IDENTITY), (device_id("device-a"),))
    server_est = [event for session, event in relay.seen if isinstance(event, Established)]
    assert server_est == [
        Established(device_id("device-a"), public_bytes(private_key("device-a"))),
        Established(device_id("device-b"), public_bytes(private_key("device-b"))),
    ]


def test_handshake_hello_reports_group_device_key_and_create() -> None:
    """The server learns the group, the device, the group key and the create flag."""
    client = client_session(create=True)
    server = server_session()
    client.start()
    server.receive_frame(client.frames_to_send()[0])
    assert server.state is State.VERIFYING
    assert server.events_received() == [
        HelloReceived(GROUP, client.local_id, KEYS.auth_public, True)
    ]
    assert server.peer == client.local_id


def test_handshake_wrong_group_secret_fails_with_auth_error() -> None:
    """A client with another secret is refused, and both sides hold an AuthError saying why."""
    pair = SessionPair(LogHolder("device-a", keys=OTHER_KEYS))
    pair.pump()
    assert isinstance(pair.server.cause, AuthError)
    assert "wrong group secret" in str(pair.server.cause)
    assert isinstance(pair.client.cause, AuthError)
    assert "wrong group secret" in str(pair.client.cause)
    (closed,) = pair.client_holder.events_of(Closed)
    assert closed.code == ByeCode.AUTH_FAILED  # type: ignore[attr-defined]
    assert pair.link.is_dead


def test_handshake_forged_proof_fails_with_auth_error() -> None:
    """A client presenting the group's public key without its secret fails at Proof."""
    intruder = private_key("intruder")
    hello = hello_of("intruder")
    server, _, data = challenged(hello)
    forged = handshake.client_proof(OTHER_KEYS.auth, data)
    server.receive_frame(encode_frame(Proof(forged, handshake.device_proof(intruder, data))))
    assert isinstance(server.cause, AuthError)
    assert str(server.cause) == "authentication failed: wrong group secret"
    assert bye_of(server).code == ByeCode.AUTH_FAILED
    assert not any(isinstance(event, Established) for event in server.events_received())


def test_handshake_device_id_not_derived_from_device_key_is_refused() -> None:
    """A Hello claiming another device's id with its own key is refused before any lookup."""
    server = server_session()
    hello = hello_of("impostor", device=device_id("victim"))
    server.receive_frame(encode_frame(hello))
    assert isinstance(server.cause, AuthError)
    assert str(server.cause) == "authentication failed: device id does not match its key"
    assert bye_of(server).code == ByeCode.AUTH_FAILED
    (closed,) = server.events_received()  # no HelloReceived: the adapter never looks it up
    assert closed == Closed(ByeCode.AUTH_FAILED, str(server.cause), server.cause)
    assert server.peer == ""


def test_handshake_impersonation_refusal_reaches_the_client_as_auth_error() -> None:
    """A client whose Hello claims an id not derived from its key hears why it was refused."""
    client = client_session(private_key("impostor"))
    client.start()
    (data,) = client.frames_to_send()
    hello = decode_frame(data)
    assert isinstance(hello, Hello)
    server = server_session()
    server.receive_frame(encode_frame(msgspec.structs.replace(hello, device=device_id("victim"))))
    for data in server.frames_to_send():
        client.receive_frame(data)
    assert isinstance(client.cause, AuthError)
    assert str(client.cause) == (
        "relay refused: authentication failed: device id does not match its key"
    )


def test_handshake_forged_device_proof_fails_with_auth_error() -> None:
    """A member claiming another device's id and key, with a valid group proof, fails at Proof."""
    hello = hello_of("victim")  # the victim's id and public key, both public
    server, _, data = challenged(hello)
    assert server.events_received() == [
        HelloReceived(GROUP, device_id("victim"), KEYS.auth_public, False)
    ]
    forged = handshake.device_proof(private_key("impostor"), data)
    server.receive_frame(encode_frame(Proof(handshake.client_proof(KEYS.auth, data), forged)))
    assert isinstance(server.cause, AuthError)
    assert str(server.cause) == "authentication failed: device key proof is invalid"
    assert bye_of(server).code == ByeCode.AUTH_FAILED
    assert not any(isinstance(event, Established) for event in server.events_received())


def test_handshake_server_established_carries_device_key() -> None:
    """The server's Established names the client's device and the device key it proved."""
    identity = private_key("device-z")
    client, server = client_session(identity), server_session()
    run_handshake(client, server)
    established = [e for e in server.events_received() if isinstance(e, Established)]
    assert established == [Established(device_id("device-z"), public_bytes(identity))]
    assert server.peer == client.local_id == device_id("device-z")


def test_handshake_pinned_server_key_mismatch_fails() -> None:
    """A client pinned to another relay key refuses the Challenge and says so to the relay."""
    pinned = public_bytes(private_key("the real relay"))
    pair = SessionPair(pinned_server_key=pinned)
    pair.pump()
    assert isinstance(pair.client.cause, AuthError)
    assert "other than the pinned one" in str(pair.client.cause)
    assert isinstance(pair.server.cause, AuthError)  # the relay learns it was refused
    assert not pair.server_holder.events_of(Established)


def test_handshake_pinned_server_key_match_succeeds() -> None:
    """A client pinned to the relay's key connects."""
    pair = SessionPair(pinned_server_key=public_bytes(RELAY_IDENTITY))
    pair.pump()
    assert pair.client.is_open and pair.server.is_open


def test_handshake_forged_server_proof_fails() -> None:
    """A Challenge whose signature is not the server key's fails the client."""
    client = client_session()
    client.start()
    hello = only_frame(client)
    assert isinstance(hello, Hello)
    impostor = private_key("impostor")
    data = handshake.transcript(hello, b"m" * 32, RELAY_ID, public_bytes(RELAY_IDENTITY))
    challenge = Challenge(b"m" * 32, RELAY_ID, public_bytes(RELAY_IDENTITY), impostor.sign(data))
    client.receive_frame(encode_frame(challenge))
    assert isinstance(client.cause, AuthError)
    assert "relay proof of identity is invalid" in str(client.cause)
    assert bye_of(client).code == ByeCode.AUTH_FAILED


@pytest.mark.parametrize("version", [0, 2, -1, 2**40])
def test_handshake_unknown_version_fails_both_sides(version: int) -> None:
    """A Hello of another version is refused with UNSUPPORTED_VERSION, which the client sees."""
    server = server_session()
    hello = hello_of("device", version=version, device="not derived from the key")
    server.receive_frame(encode_frame(hello))
    assert isinstance(server.cause, RemoteProtocolError)
    assert f"unsupported protocol version {version}" in str(server.cause)
    bye = bye_of(server)
    assert bye.code == ByeCode.UNSUPPORTED_VERSION
    client = client_session()
    client.start()
    client.frames_to_send()
    client.receive_frame(encode_frame(bye))
    assert isinstance(client.cause, Rejected)
    assert client.cause.reason_code == ByeCode.UNSUPPORTED_VERSION


def test_handshake_unknown_group_is_rejected() -> None:
    """A relay that does not know the group refuses with UNKNOWN_GROUP; the client sees Rejected."""
    pair = SessionPair(server=LogHolder("relay", keys=None, registered={}))
    pair.pump()
    assert isinstance(pair.client.cause, Rejected)
    assert pair.client.cause.reason_code == ByeCode.UNKNOWN_GROUP
    assert isinstance(pair.server.cause, Rejected)
    assert pair.link.is_dead


def run_handshake(client: SyncSession, server: SyncSession) -> list[bytes]:
    """Run a handshake by hand; return every frame the client sent."""
    sent = []
    client.start()
    for _ in range(2):
        for data in client.frames_to_send():
            sent.append(data)
            server.receive_frame(data)
        if server.state is State.VERIFYING:
            server.accept_hello(KEYS.auth_public)
        if server.state is State.WELCOMING:
            server.send_welcome([])
        for data in server.frames_to_send():
            client.receive_frame(data)
    assert client.is_open and server.is_open
    return sent


def test_handshake_replayed_proof_fails() -> None:
    """An eavesdropper replaying a member's Hello and Proof to a new session is refused."""
    hello, proof = run_handshake(client_session(), server_session())
    victim = server_session()  # a new session draws a new server nonce
    victim.receive_frame(hello)
    victim.accept_hello(KEYS.auth_public)
    victim.frames_to_send()
    victim.receive_frame(proof)
    assert isinstance(victim.cause, AuthError)
    assert str(victim.cause) == "authentication failed: wrong group secret"
    assert victim.state is State.CLOSED


def test_handshake_replayed_device_proof_fails() -> None:
    """A member replaying another device's recorded Hello and device proof is refused.

    The member knows the group secret, so its group proof of the new session is valid; only the
    recorded device proof, which signed the old session's nonces, gives it away.
    """
    recorded_hello, recorded_proof = run_handshake(
        client_session(private_key("victim")), server_session()
    )
    hello = decode_frame(recorded_hello)
    old = decode_frame(recorded_proof)
    assert isinstance(hello, Hello) and isinstance(old, Proof)
    server, _, data = challenged(hello)
    replayed = Proof(handshake.client_proof(KEYS.auth, data), old.device_proof)
    server.receive_frame(encode_frame(replayed))
    assert isinstance(server.cause, AuthError)
    assert str(server.cause) == "authentication failed: device key proof is invalid"
    assert bye_of(server).code == ByeCode.AUTH_FAILED


def test_handshake_replayed_challenge_fails() -> None:
    """A Challenge recorded from another session fails a client with a new nonce."""
    client = client_session()
    server = server_session()
    client.start()
    server.receive_frame(client.frames_to_send()[0])
    server.accept_hello(KEYS.auth_public)
    recorded = server.frames_to_send()[0]
    fresh = client_session(private_key("client"))
    fresh.start()
    fresh.receive_frame(recorded)
    assert isinstance(fresh.cause, AuthError)
    assert "relay proof of identity is invalid" in str(fresh.cause)


@pytest.mark.parametrize(
    "field",
    [
        "version",
        "group",
        "device",
        "nonce",
        "group_key",
        "device_key",
        "create",
        "server_nonce",
        "server",
        "server_key",
    ],
)
def test_handshake_transcript_covers_every_field(field: str) -> None:
    """Changing any field of Hello or the server's half changes the signed transcript."""
    hello = Hello(1, "g", "d", b"n" * 32, b"k" * 32, b"d" * 32)
    args = {"nonce": b"m" * 32, "server": "s", "server_key": b"s" * 32}
    base = handshake.transcript(hello, **args)
    changed_hello = {
        "version": 2,
        "group": "h",
        "device": "e",
        "nonce": b"o" * 32,
        "group_key": b"l" * 32,
        "device_key": b"e" * 32,
        "create": True,
    }
    changed_args = {
        "server_nonce": ("nonce", b"x" * 32),
        "server": ("server", "t"),
        "server_key": ("server_key", b"t" * 32),
    }
    if field in changed_hello:
        other = handshake.transcript(
            Hello(
                **{
                    **{f: getattr(hello, f) for f in hello.__struct_fields__},
                    field: changed_hello[field],
                }
            ),
            **args,
        )
    else:
        name, value = changed_args[field]
        other = handshake.transcript(hello, **{**args, name: value})
    assert other != base


def test_handshake_proofs_are_not_interchangeable() -> None:
    """Server, group and device proofs of one transcript by one key never pass for each other."""
    key = private_key("both")
    hello = Hello(1, "g", "d", b"n" * 32, public_bytes(key), public_bytes(key))
    challenge_data = handshake.transcript(hello, b"m" * 32, "s", public_bytes(key))
    server_sig = handshake.server_proof(key, challenge_data)
    client_sig = handshake.client_proof(key, challenge_data)
    device_sig = handshake.device_proof(key, challenge_data)
    challenge = Challenge(b"m" * 32, "s", public_bytes(key), server_sig)
    assert handshake.check_server_proof(hello, challenge)
    assert handshake.check_client_proof(hello, challenge, client_sig)
    assert handshake.check_device_proof(hello, challenge, device_sig)
    assert not handshake.check_client_proof(hello, challenge, server_sig)
    assert not handshake.check_client_proof(hello, challenge, device_sig)
    assert not handshake.check_device_proof(hello, challenge, server_sig)
    assert not handshake.check_device_proof(hello, challenge, client_sig)
    for sig in (client_sig, device_sig):
        forged = Challenge(b"m" * 32, "s", public_bytes(key), sig)
        assert not handshake.check_server_proof(hello, forged)


def test_handshake_device_proof_checks_the_device_key() -> None:
    """A device proof verifies against Hello.device_key only, not the group key."""
    device, group = private_key("device"), private_key("group")
    hello = Hello(1, "g", "d", b"n" * 32, public_bytes(group), public_bytes(device))
    challenge = Challenge(b"m" * 32, "s", b"s" * 32, b"x" * 64)
    data = handshake.transcript(hello, challenge.nonce, challenge.server, challenge.server_key)
    assert handshake.check_device_proof(hello, challenge, handshake.device_proof(device, data))
    assert not handshake.check_device_proof(hello, challenge, handshake.device_proof(group, data))
