"""Sealed envelopes: round trip, and every kind of tampering detected."""

from __future__ import annotations

import stat
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from pairing import GROUP, KEYS, OTHER_KEYS, SECRET, private_key

from switchboard import crypto
from switchboard.crypto import (
    GroupKeys,
    create_identity,
    header,
    load_identity,
    new_group_secret,
    public_bytes,
    verify_signature,
)
from switchboard.errors import ByeCode, TamperedDirect, TamperedEnvelope, UserError
from switchboard.ids import device_id_from_public_key
from switchboard.proto.frames import Direct, Envelope

ORIGIN = "a" * 26


@given(st.binary(max_size=200), st.integers(1, 2**62))
def test_crypto_seal_open_round_trip(plaintext: bytes, seq: int) -> None:
    """An envelope opens to the plaintext sealed into it."""
    env = KEYS.seal(ORIGIN, seq, plaintext)
    assert (env.origin, env.seq) == (ORIGIN, seq)
    assert env.nonce[:8] == seq.to_bytes(8, "big") and len(env.nonce) == 12
    assert KEYS.open(env) == plaintext


def test_crypto_derivation_is_deterministic() -> None:
    """The same secret gives the same auth key and opens the same envelopes."""
    again = GroupKeys.derive(GROUP, SECRET)
    assert again.auth_public == KEYS.auth_public
    assert again.open(KEYS.seal(ORIGIN, 1, b"x")) == b"x"
    assert OTHER_KEYS.auth_public != KEYS.auth_public


def test_crypto_derive_refuses_short_secret() -> None:
    """A secret that is not 32 bytes is a user error."""
    with pytest.raises(UserError, match="group secret of 31 bytes, expected 32"):
        GroupKeys.derive(GROUP, b"x" * 31)


def test_crypto_seal_hides_plaintext() -> None:
    """The box does not contain the plaintext."""
    env = KEYS.seal(ORIGIN, 1, b"a very secret message")
    assert b"secret" not in msgspec.msgpack.encode(env)


def moved(env: Envelope, **changes: object) -> Envelope:
    """Return ``env`` with some fields replaced."""
    return msgspec.structs.replace(env, **changes)


def flip(data: bytes, index: int) -> bytes:
    """Return ``data`` with one byte changed."""
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


TAMPERINGS = {
    "box byte flipped": lambda env: moved(env, box=flip(env.box, 0)),
    "tag byte flipped": lambda env: moved(env, box=flip(env.box, len(env.box) - 1)),
    "box truncated": lambda env: moved(env, box=env.box[:-1]),
    "random nonce bits changed": lambda env: moved(env, nonce=flip(env.nonce, 11)),
    "nonce seq bits changed": lambda env: moved(env, nonce=flip(env.nonce, 7)),
    "nonce too short": lambda env: moved(env, nonce=env.nonce[:11]),
    "moved to another seq": lambda env: moved(env, seq=env.seq + 1),
    "moved to another seq with a matching nonce": lambda env: moved(
        env, seq=env.seq + 1, nonce=(env.seq + 1).to_bytes(8, "big") + env.nonce[8:]
    ),
    "moved to another origin": lambda env: moved(env, origin="b" * 26),
}


@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_crypto_tampered_envelope_raises(tamper: object) -> None:
    """An altered or moved envelope fails to open with TamperedEnvelope."""
    env = KEYS.seal(ORIGIN, 5, b"hello")
    bad = tamper(env)  # type: ignore[operator]
    with pytest.raises(TamperedEnvelope) as info:
        KEYS.open(bad)
    assert info.value.bye_code is ByeCode.TAMPERED
    assert (info.value.origin, info.value.seq) == (bad.origin, bad.seq)
    assert "hello" not in str(info.value)


def test_crypto_envelope_moved_to_another_group_raises() -> None:
    """An envelope replayed into another group with the same secret fails to open."""
    env = KEYS.seal(ORIGIN, 1, b"hello")
    with pytest.raises(TamperedEnvelope):
        GroupKeys.derive("another-group", SECRET).open(env)


def test_crypto_envelope_from_another_secret_raises() -> None:
    """An envelope sealed with another group secret fails to open."""
    with pytest.raises(TamperedEnvelope):
        KEYS.open(OTHER_KEYS.seal(ORIGIN, 1, b"hello"))


def test_crypto_header_binds_group_origin_and_seq() -> None:
    """The associated data differs whenever group, origin or seq differs."""
    base = header("g", "o", 1)
    assert len({base, header("h", "o", 1), header("g", "p", 1), header("g", "o", 2)}) == 4


def test_crypto_verify_signature_rejects_bad_input() -> None:
    """verify_signature returns False for a wrong signature or a malformed key."""
    message = b"m"
    signature = KEYS.auth.sign(message)
    assert verify_signature(KEYS.auth_public, signature, message)
    assert not verify_signature(KEYS.auth_public, signature, b"other")
    assert not verify_signature(KEYS.auth_public[:31], signature, message)


def test_crypto_new_group_secret_is_fresh_and_derivable() -> None:
    """A new group secret is 32 random bytes that derive keys."""
    first, second = new_group_secret(), new_group_secret()
    assert len(first) == 32 and first != second
    assert GroupKeys.derive(GROUP, first).auth_public != KEYS.auth_public


def test_crypto_create_identity_persists_with_mode_0600(tmp_path: Path) -> None:
    """create_identity writes a 0600 key once; later calls and load_identity return the same key."""
    path = tmp_path / "identity"
    assert load_identity(path) is None
    key = create_identity(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_bytes(create_identity(path)) == public_bytes(key)
    loaded = load_identity(path)
    assert loaded is not None and public_bytes(loaded) == public_bytes(key)


def test_crypto_create_identity_race_returns_the_winner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If another process creates the identity first, create_identity returns that one."""
    path = tmp_path / "identity"
    winner = create_identity(path)
    real_load = crypto.load_identity
    calls = iter([None])  # the first look misses the file, as if the other process was late
    monkeypatch.setattr(crypto, "load_identity", lambda p: next(calls, real_load(p)))
    assert public_bytes(crypto.create_identity(path)) == public_bytes(winner)


def test_crypto_damaged_identity_is_a_user_error(tmp_path: Path) -> None:
    """An identity file of the wrong size is reported, not used."""
    path = tmp_path / "identity"
    path.write_bytes(b"short")
    with pytest.raises(UserError, match="is damaged \\(5 bytes, expected 32\\)"):
        load_identity(path)


SENDER_KEY = private_key("sender")
SENDER = device_id_from_public_key(public_bytes(SENDER_KEY))
RECIPIENT = "r" * 26


@given(st.binary(max_size=300), st.integers(0, 2**63 - 1))
def test_crypto_direct_round_trip(plaintext: bytes, ref: int) -> None:
    """A directed frame opens, for its recipient, to what was sealed, naming its sender."""
    frame = KEYS.seal_direct(SENDER_KEY, RECIPIENT, ref, plaintext)
    assert (frame.sender, frame.recipient, frame.ref) == (SENDER, RECIPIENT, ref)
    assert KEYS.open_direct(frame, RECIPIENT) == plaintext
    assert len(plaintext) < 8 or plaintext not in frame.box


def test_crypto_direct_nonces_are_fresh() -> None:
    """The same payload sealed twice gets two nonces and two boxes."""
    one, two = (KEYS.seal_direct(SENDER_KEY, RECIPIENT, 1, b"same") for _ in range(2))
    assert one.nonce != two.nonce and one.box != two.box


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda f: msgspec.structs.replace(f, box=_flip(f.box)), "signature is invalid"),
        (lambda f: msgspec.structs.replace(f, nonce=_flip(f.nonce)), "signature is invalid"),
        (lambda f: msgspec.structs.replace(f, ref=f.ref + 1), "signature is invalid"),
        (lambda f: msgspec.structs.replace(f, signature=_flip(f.signature)), "signature"),
        (lambda f: msgspec.structs.replace(f, recipient="x" * 26), "another device"),
        (lambda f: msgspec.structs.replace(f, sender="x" * 26), "forged"),
        (lambda f: msgspec.structs.replace(f, sender_key=b"\0" * 32), "forged"),
    ],
)
def test_crypto_direct_tampering_is_detected(tamper: object, reason: str) -> None:
    """Any change to a directed frame (box, nonce, ref, signature, recipient, sender) is
    refused with TamperedDirect naming what failed."""
    frame = KEYS.seal_direct(SENDER_KEY, RECIPIENT, 5, b"payload")
    bad = tamper(frame)  # type: ignore[operator]
    with pytest.raises(TamperedDirect, match=reason) as info:
        KEYS.open_direct(bad, RECIPIENT)
    assert info.value.bye_code == ByeCode.TAMPERED


def test_crypto_direct_forged_sender_is_detected() -> None:
    """A member that seals under another device's id, signed with its own key or another's
    re-signed frame, is found out; so is a box sealed under another group's secret."""
    victim = private_key("victim")
    victim_id = device_id_from_public_key(public_bytes(victim))
    mine = KEYS.seal_direct(SENDER_KEY, RECIPIENT, 5, b"pay me")
    # Claim the victim's id, keep our own key and signature: the id is not the key's.
    claimed = msgspec.structs.replace(mine, sender=victim_id)
    with pytest.raises(TamperedDirect, match="forged"):
        KEYS.open_direct(claimed, RECIPIENT)
    # Claim the victim's id and key: our signature does not verify under its key.
    posed = msgspec.structs.replace(mine, sender=victim_id, sender_key=public_bytes(victim))
    with pytest.raises(TamperedDirect, match="signature"):
        KEYS.open_direct(posed, RECIPIENT)
    outsider = OTHER_KEYS.seal_direct(SENDER_KEY, RECIPIENT, 5, b"hi")
    with pytest.raises(TamperedDirect, match="failed to open"):
        KEYS.open_direct(outsider, RECIPIENT)


def test_crypto_direct_header_binds_group_sender_recipient_and_ref() -> None:
    """The associated data names all four, so moving a frame anywhere fails."""
    headers = {
        crypto.direct_header(*args)
        for args in [(GROUP, "a", "b", 1), ("g2", "a", "b", 1), (GROUP, "b", "a", 1),
                     (GROUP, "a", "c", 1), (GROUP, "a", "b", 2)]
    }  # fmt: skip
    assert len(headers) == 5
    assert isinstance(KEYS.seal_direct(SENDER_KEY, RECIPIENT, 1, b""), Direct)


@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=300))
def test_crypto_libsodium_signs_the_same_bytes_as_openssl(seed: bytes, message: bytes) -> None:
    # Ed25519 is deterministic: libsodium (crypto.sign) and OpenSSL (the key's own sign) must
    # agree byte for byte, so keys, files and stored proofs are unchanged by the switch.
    key = Ed25519PrivateKey.from_private_bytes(seed)
    signature = crypto.sign(key, message)
    assert signature == key.sign(message)
    public = crypto.public_bytes(key)
    assert crypto.verify_signature(public, signature, message)
    assert not crypto.verify_signature(public, signature, message + b"x")
    assert not crypto.verify_signature(public, signature + b"\x00", message)
    key.public_key().verify(signature, message)  # OpenSSL accepts it too
